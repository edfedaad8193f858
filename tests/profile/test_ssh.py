"""SshRunner against a real sshd on 127.0.0.1: one master connection, clean-up, composition, real failures."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from runner_kit import drop_connections, free_port, keygen, running, start_sshd

from codegen.profile.runners import RunnerError, SshRunner, make_runner


def test_put_and_run_over_one_connection(sshd, hello):
    runner = sshd.runner()
    logins = sshd.logins()
    with runner.session() as session:
        assert stat.S_ISSOCK(os.stat(session.control_path).st_mode)  # the master's socket
        program = session.put(hello, executable=True)
        assert program == f"{session.workdir}/hello" and session.workdir.startswith("/tmp/neurogen.")
        for i in range(5):
            result = session.check(session.run([program, f"run {i}", "it's", "$HOME", "a;b"]), "hello")
            assert json.loads(result.stdout) == {"arch": "host", "cwd": session.workdir,
                                                 "args": [f"run {i}", "it's", "$HOME", "a;b"]}
        workdir, control_path = session.workdir, session.control_path
    assert sshd.logins() - logins == 1  # put, five runs and the clean-up shared one TCP connection
    assert not Path(workdir).exists() and not Path(control_path).parent.exists()


def test_make_runner_ssh(sshd, hello):
    runner = make_runner({"kind": "ssh", "host": "127.0.0.1", "port": sshd.port, "identity_file": str(sshd.key),
                          "options": sshd.options, "user": os.environ.get("USER", "root")})
    with runner.session() as session:
        session.check(session.run([session.put(hello, executable=True)]), "hello")


def test_host_alias_from_an_ssh_config(sshd, hello, tmp_path):
    """Address, port and key come from the ssh config (here given with -F; a user's ~/.ssh/config works the same)."""
    config = tmp_path / "ssh_config"
    config.write_text(f"Host testboard\n  HostName 127.0.0.1\n  Port {sshd.port}\n  IdentityFile {sshd.key}\n"
                      f"  UserKnownHostsFile {sshd.folder / 'known_hosts'}\n  StrictHostKeyChecking accept-new\n")
    runner = SshRunner("testboard", options=["-F", str(config)])
    assert runner.description == "ssh testboard"
    with runner.session() as session:
        session.check(session.run([session.put(hello, executable=True)]), "hello")


def test_work_folder_removed_after_an_error(sshd, hello):
    with pytest.raises(KeyError), sshd.runner().session() as session:
        session.put(hello)
        workdir = session.workdir
        assert Path(workdir, "hello").exists()
        raise KeyError("boom")
    assert not Path(workdir).exists()


def test_remote_crash_names_the_signal(sshd, crash):
    with sshd.runner().session() as session:
        program = session.put(crash, executable=True)
        with pytest.raises(RunnerError, match=r"crash test failed on ssh 127\.0\.0\.1:\d+: crashed with SIGSEGV"):
            session.check(session.run([program, "segv"]), "crash test")
        with pytest.raises(RunnerError, match="SIGILL.*ISA features"):
            session.check(session.run([program, "ill"]), "crash test")
        with pytest.raises(RunnerError, match="exited with code 3(.|\n)*diagnostic line 20"):
            session.check(session.run([program, "exit"]), "crash test")


def test_remote_timeout_kills_the_program(sshd):
    with sshd.runner().session() as session:
        result = session.run(["sleep", "30"], timeout=1)
        with pytest.raises(RunnerError, match="timed out"):
            session.check(result, "sleep")
        pid = int(Path(session.workdir, ".run.pid").read_text())  # loopback: the remote folder is local
        deadline = time.monotonic() + 5
        while running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(pid)
        session.check(session.run(["true"]), "the connection still works")


def test_ssh_with_qemu_prefix(sshd, hello_arm64, crash_arm64, qemu_prefix):
    runner = sshd.runner(prefix=qemu_prefix)
    assert runner.description.endswith("via qemu-aarch64")
    with runner.session() as session:
        result = session.check(session.run([session.put(hello_arm64, executable=True), "q"]), "hello")
        assert json.loads(result.stdout)["arch"] == "aarch64"
        with pytest.raises(RunnerError, match="crashed with SIGSEGV"):
            session.check(session.run([session.put(crash_arm64, executable=True), "segv"]), "crash")


def test_unreachable_host():
    port = free_port()  # nothing listens there
    runner = SshRunner("127.0.0.1", port=port, connect_timeout=5)
    with pytest.raises(RunnerError, match=f"cannot reach 127.0.0.1 port {port} over SSH.*Connection refused"), \
            runner.session():
        pass


def test_refused_key(sshd, tmp_path):
    stranger = keygen(tmp_path / "stranger")
    with pytest.raises(RunnerError, match=r"refused the SSH key(.|\n)*identity_file"), \
            sshd.runner(identity_file=str(stranger)).session():
        pass


def test_bad_remote_tmp(sshd):
    with pytest.raises(RunnerError, match="cannot create a work folder under /no/such/dir"), \
            sshd.runner(remote_tmp="/no/such/dir").session():
        pass


def test_full_disk_on_a_tiny_tmpfs(sshd, tiny_fs, tmp_path):
    big = tmp_path / "weights.bin"
    big.write_bytes(os.urandom(256 * 1024))
    with sshd.runner(remote_tmp=str(tiny_fs)).session() as session:
        with pytest.raises(RunnerError, match=r"remote disk is full .*: no space left in " + session.workdir):
            session.put(big)
        assert not Path(session.workdir, big.name).exists()  # the partial file is gone
        (tmp_path / "small").write_text("fits")
        session.put(tmp_path / "small")  # the session is still usable


def test_full_disk_by_file_size_limit(tmp_path_factory, tmp_path):
    """Where mounting is not allowed: an sshd whose sessions may not write files over 64 KiB."""
    server = start_sshd(tmp_path_factory.mktemp("sshd-fsize"), ["prlimit", "--fsize=65536"])
    try:
        big = tmp_path / "weights.bin"
        big.write_bytes(os.urandom(256 * 1024))
        with server.runner().session() as session, pytest.raises(RunnerError, match="remote disk is full"):
            session.put(big)
    finally:
        server.stop()


def test_lost_connection_is_named_at_every_step(tmp_path_factory, hello):
    """The board goes away mid-session (sshd stopped, its connections cut): upload, run and clean-up each
    say the connection to that host was lost and what they were doing, not `exit code 255`."""
    server = start_sshd(tmp_path_factory.mktemp("sshd-drop"))
    lost = rf"the SSH connection to 127\.0\.0\.1 port {server.port} was lost while "
    try:
        with pytest.warns(UserWarning, match=lost + "removing the work folder /tmp/neurogen"), \
                server.runner().session() as session:
            program = session.put(hello, executable=True)
            session.check(session.run([program]), "hello")
            drop_connections(server)
            with pytest.raises(RunnerError, match=lost + rf"uploading hello \(\d+ bytes\) to {session.workdir} on "
                               rf"ssh 127\.0\.0\.1:{server.port}: .*Check the host and the network") as error:
                session.put(hello)
            assert "exit code 255" not in str(error.value)
            with pytest.raises(RunnerError, match=lost + "running hello on ssh 127"):
                session.run([program])
    finally:
        server.stop()


def test_a_program_that_exits_255_is_not_a_lost_connection(sshd):
    with sshd.runner().session() as session:
        result = session.run(["sh", "-c", "echo oops >&2; exit 255"])
        assert (result.returncode, result.stderr) == (255, "oops\n")
        with pytest.raises(RunnerError, match="exited with code 255(.|\n)*oops"):
            session.check(result, "the program")
