"""LocalRunner with real programs: built with gcc, and for aarch64 run under qemu."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from codegen.profile.runners import LocalRunner, RunnerError, make_runner


def test_put_and_run(hello):
    runner = LocalRunner()
    with runner.session() as session:
        program = session.put(hello, executable=True)
        assert os.access(program, os.X_OK) and Path(program).parent == Path(session.workdir)
        result = session.check(session.run([program, "a b", "it's", "$HOME"]), "hello")
        assert json.loads(result.stdout) == {"arch": "host", "cwd": session.workdir, "args": ["a b", "it's", "$HOME"]}
        assert result.returncode == 0 and result.seconds > 0
        workdir = session.workdir
    assert not Path(workdir).exists()


def test_folder_removed_after_an_error(hello):
    with pytest.raises(ValueError), LocalRunner().session() as session:
        session.put(hello)
        workdir = session.workdir
        raise ValueError("boom")
    assert not Path(workdir).exists()


@pytest.mark.parametrize("how, signal_name", [("segv", "SIGSEGV"), ("abort", "SIGABRT"), ("ill", "SIGILL")])
def test_crash_names_the_signal(crash, how, signal_name):
    with LocalRunner().session() as session:
        result = session.run([session.put(crash, executable=True), how])
        with pytest.raises(RunnerError, match=f"crash test failed on local: crashed with {signal_name}"):
            session.check(result, "crash test")


def test_exit_code_and_stderr_tail(crash):
    with LocalRunner().session() as session:
        result = session.run([session.put(crash, executable=True), "exit"])
        with pytest.raises(RunnerError, match="exited with code 3") as error:
            session.check(result, "bench")
    assert "diagnostic line 20" in str(error.value) and "diagnostic line 5\n" not in str(error.value)


def test_timeout_kills_the_program():
    with LocalRunner().session() as session:
        result = session.run(["sh", "-c", "sleep 30 & echo started; wait"], timeout=0.5)
        assert result.timed_out and result.seconds < 5 and result.stdout == "started\n"
        with pytest.raises(RunnerError, match="timed out after"):
            session.check(result, "bench")


def test_missing_program_and_foreign_binary(tmp_path, hello_arm64):
    with LocalRunner().session() as session, pytest.raises(RunnerError, match="no such program"):
        session.run(["./absent"])
    with LocalRunner(["no-such-emulator"]).session() as session, pytest.raises(RunnerError, match="not found"):
        session.run(["./x"])
    with LocalRunner().session() as session, pytest.raises(RunnerError, match="built for another CPU"):
        session.run([session.put(hello_arm64, executable=True)])


def test_qemu_runs_an_aarch64_program(hello_arm64, crash_arm64, qemu_prefix):
    runner = make_runner({"kind": "qemu", "prefix": qemu_prefix})
    with runner.session() as session:
        result = session.check(session.run([session.put(hello_arm64, executable=True), "x y"]), "hello")
        assert json.loads(result.stdout)["arch"] == "aarch64"
        assert json.loads(result.stdout)["args"] == ["x y"]
        crashed = session.run([session.put(crash_arm64, executable=True), "segv"])
        with pytest.raises(RunnerError, match="local via qemu-aarch64: crashed with SIGSEGV"):
            session.check(crashed, "crash")
