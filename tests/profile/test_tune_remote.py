"""Tuning for aarch64-linux over SSH: the profiling programs are cross-compiled here, copied to the
(loopback) board by a real sshd, and run there under qemu-aarch64; the chosen path is then built
and checked against onnxruntime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from runner_kit import calls, kill_my_ssh_session, on_call, require
from support import host_target_toml

import codegen
from codegen import zoo
from codegen.profile.cache import ProfileCache
from codegen.profile.harness import Settings, batches
from codegen.profile.runners import RunnerError
from codegen.targets import load as load_target
from codegen.tune import candidates, with_references


def _target_file(folder: Path, sshd, *, port: int | None = None) -> Path:
    options = ", ".join(json.dumps(o) for o in sshd.options)
    path = folder / "board.toml"
    path.write_text(f"""
name = "aarch64-board"
description = "an aarch64 board over SSH (loopback, emulated)"
[toolchain]
cc = "aarch64-linux-gnu-gcc"
cflags = ["-O2", "-march=armv8.2-a+dotprod+fp16"]
[features]
isa = ["scalar", "neon"]
[runner]
kind = "ssh"
host = "127.0.0.1"
port = {port or sshd.port}
identity_file = "{sshd.key}"
options = [{options}]
prefix = ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"]
""")
    return path


def test_tune_over_ssh_under_qemu_and_run_the_result(sshd, tmp_path):
    cc = require("aarch64-linux-gnu-gcc")
    qemu = require("qemu-aarch64")
    model = zoo.build("tiny_cnn", resolution=16)
    model_path = tmp_path / "tiny.onnx"
    onnx.save(model, str(model_path))
    target = _target_file(tmp_path, sshd)
    logins = sshd.logins()
    cache = ProfileCache(tmp_path / "cache.sqlite")
    # Weights flushed before each timed run: `dc civac` on the board (under qemu here).
    settings = Settings(min_reps=1, max_reps=2, min_seconds=0.0, cold_weights=True)
    record = codegen.compiler.tune_model(model_path, target=str(target), cache=cache, settings=settings)
    assert sshd.logins() == logins + 1, "one multiplexed connection for the whole profiling run"
    assert record["profiling"]["measured"] == record["profiling"]["instances"] > 10
    assert record["target"]["name"] == "aarch64-board"
    assert "ssh:127.0.0.1" in record["target"]["fingerprint"]
    assert record["profiling"]["weights"] == "flushed to memory"

    again = codegen.compiler.tune_model(model_path, target=str(target), cache=cache, settings=settings)
    assert again["profiling"]["measured"] == 0 and sshd.logins() == logins + 1, "the cache answers everything"

    project = codegen.compile_model(model_path, tmp_path / "out", name="tiny", target=str(target), record=record)
    sources = sorted(str(p) for p in (project / "src").rglob("*.c")) + [str(project / "example" / "main.c")]
    program = tmp_path / "tiny_arm"
    subprocess.run([cc, "-O2", "-std=c99", "-I", str(project / "include"), f"-Wa,-I{project / 'src'}", *sources,
                    "-o", str(program), "-lm"], check=True)
    inputs = zoo.example_input(model, seed=2)
    inputs["input"].astype("<f4").tofile(tmp_path / "in.bin")
    subprocess.run([qemu, "-L", "/usr/aarch64-linux-gnu", str(program), str(tmp_path / "in.bin"),
                    str(tmp_path / "logits.bin"), str(tmp_path / "probs.bin")], check=True)
    import onnxruntime as ort

    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        ["logits"], inputs)[0]
    got = np.fromfile(tmp_path / "logits.bin", dtype="<f4").reshape(expected.shape)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_unreachable_board_is_a_clear_error(sshd, tmp_path):
    from runner_kit import free_port

    model_path = tmp_path / "tiny.onnx"
    onnx.save(zoo.build("tiny_cnn", resolution=16), str(model_path))
    target = _target_file(tmp_path, sshd, port=free_port())
    proc = subprocess.run([sys.executable, "-m", "codegen", "tune", str(model_path), "--target", str(target),
                           "-o", str(tmp_path / "t.json")], capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "127.0.0.1" in proc.stderr and "neurogen: error:" in proc.stderr
    assert not (tmp_path / "t.json").exists()


def _host_over_ssh(folder: Path, sshd, wrapper: Path) -> Path:
    """This machine as an SSH board: built with the host compiler, run over loopback SSH under `wrapper`."""
    options = ", ".join(json.dumps(o) for o in sshd.options)
    path = folder / "ssh-host.toml"
    path.write_text(host_target_toml("ssh-host", f"""
kind = "ssh"
host = "127.0.0.1"
port = {sshd.port}
identity_file = "{sshd.key}"
options = [{options}]
prefix = ["{wrapper}"]
"""))
    return path


def test_connection_killed_in_the_second_batch_then_tuning_again_measures_only_the_rest(sshd, tmp_path):
    """The board's sshd session is killed while the second benchmark program runs (the connection drops):
    the first batch is already in the cache, the error says the connection was lost, and tuning again
    measures only what the first run had not stored."""
    model_path = tmp_path / "tiny.onnx"
    onnx.save(zoo.build("tiny_cnn", resolution=16), str(model_path))
    counter = tmp_path / "calls"
    wrapper = on_call(tmp_path / "wrapper", counter, 2, kill_my_ssh_session(int(sshd.pid_file.read_text())))
    toml = str(_host_over_ssh(tmp_path, sshd, wrapper))
    target = load_target(toml)
    settings = Settings(min_reps=1, max_reps=2, min_seconds=0.0, batch_items=50)
    items = with_references(candidates(codegen.compiler.import_model(model_path), target).items())
    first, *more = batches(items, 50)
    assert len(more) >= 2
    cache = ProfileCache(tmp_path / "cache.sqlite")
    with pytest.raises(RunnerError, match=rf"(?s)the SSH connection to 127\.0\.0\.1 port {sshd.port} was lost while "
                                          rf"running bench on ssh 127\.0\.0\.1:{sshd.port} via wrapper: .*"
                                          rf"{len(first)} of the {len(items)} measurement\(s\) were stored"):
        codegen.compiler.tune_model(model_path, target=toml, cache=cache, settings=settings)
    assert calls(counter) == 2 and cache.count() == len(first)
    logins = sshd.logins()
    record = codegen.compiler.tune_model(model_path, target=toml, cache=cache, settings=settings)
    assert record["profiling"]["measured"] == len(items) - len(first)
    stored = {item.key for item in first}
    rest = [item for item in items if item.key not in stored]
    assert calls(counter) == 2 + len(batches(rest, 50)) and sshd.logins() == logins + 1
    assert cache.count() == len(items)
