"""The pure parts: classifying ssh's error output, failure messages, and make_runner's checks."""

from __future__ import annotations

import pytest

from codegen.errors import TargetError
from codegen.profile.runners import (
    LocalRunner,
    RunResult,
    SshRunner,
    classify_ssh_error,
    failure_message,
    make_runner,
    ssh_error_message,
)

# Real texts from OpenSSH 9, coreutils and dash.
SAMPLES = {
    "ssh: connect to host 127.0.0.1 port 2222: Connection refused": "unreachable",
    "ssh: connect to host 10.0.0.2 port 22: No route to host": "unreachable",
    "ssh: connect to host 10.9.9.9 port 22: Connection timed out": "unreachable",
    "ssh: connect to host 10.9.9.9 port 22: Network is unreachable": "unreachable",
    "Connection timed out during banner exchange\nConnection to 10.0.0.2 port 22 timed out": "unreachable",
    "ssh: Could not resolve hostname boardx: Name or service not known": "unknown_host",
    "ssh: Could not resolve hostname board: Temporary failure in name resolution": "unknown_host",
    "root@127.0.0.1: Permission denied (publickey).": "key_refused",
    "board@10.0.0.2: Permission denied (publickey,password).": "key_refused",
    "Host key verification failed.": "host_key",
    "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @": "host_key",
    "cat: write error: No space left on device": "disk_full",
    "sh: 1: cannot create /tmp/neurogen.x/b: No space left on device": "disk_full",
    "cat: write error: Disk quota exceeded": "disk_full",
    "Connection closed by 10.0.0.2 port 22": "connection_lost",
    "client_loop: send disconnect: Broken pipe": "connection_lost",
    "Connection to 10.0.0.2 closed by remote host.": "connection_lost",
    "mux_client_request_session: read from master failed: Broken pipe": "connection_lost",
    "Timeout, server 10.0.0.2 not responding.": "connection_lost",
}


@pytest.mark.parametrize("stderr, kind", SAMPLES.items())
def test_classify_ssh_error(stderr, kind):
    found = classify_ssh_error("Warning: some banner\n" + stderr)
    assert found is not None and found[0] == kind


@pytest.mark.parametrize("stderr", ["", "cat: /x: Permission denied", "segfault at 0\nAborted", "Exit request sent."])
def test_classify_leaves_other_errors_alone(stderr):
    assert classify_ssh_error(stderr) is None


def test_ssh_messages_say_what_to_do():
    unreachable = ssh_error_message("unreachable", "ssh: connect to host 10.0.0.2 port 2200: Connection refused",
                                    host="board", port=None)
    assert "10.0.0.2 port 2200" in unreachable and "up" in unreachable
    assert "port 22 unless ~/.ssh/config" in ssh_error_message("unreachable", "x", host="board", port=None)
    refused = ssh_error_message("key_refused", "Permission denied (publickey).", host="board", port=22)
    assert "refused the SSH key" in refused and "identity_file" in refused and "authorized_keys" in refused
    full = ssh_error_message("disk_full", "No space left on device", host="board", port=22, remote_dir="/tmp/n.1")
    assert "disk is full" in full and "/tmp/n.1" in full and "remote_tmp" in full


def test_failure_messages():
    assert failure_message(RunResult(0, "{}", "", 0.1), "bench", "local") is None
    ill = failure_message(RunResult(-4, "", "", 0.1), "conv2d bench", "ssh board")
    assert ill.startswith("conv2d bench failed on ssh board: crashed with SIGILL")
    assert "the CPU lacks an instruction the code uses: check the target's ISA features" in ill
    assert "SIGBUS" in failure_message(RunResult(-7, "", "", 0.1), "b", "local")
    assert "signal 99" in failure_message(RunResult(-99, "", "", 0.1), "b", "local")
    stderr = "\n".join(f"line {i}" for i in range(30))
    code = failure_message(RunResult(3, "", stderr, 0.1), "b", "local")
    assert "exited with code 3" in code and "line 29" in code and "line 19" not in code
    slow = failure_message(RunResult(-9, "", "", 2.0, timed_out=True), "b", "local")
    assert "timed out after 2.0 s" in slow


def test_make_runner_kinds():
    assert make_runner({"kind": "local"}).description == "local"
    qemu = make_runner({"kind": "qemu", "prefix": ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"]})
    assert isinstance(qemu, LocalRunner) and qemu.description == "local via qemu-aarch64"
    ssh = make_runner({"kind": "ssh", "host": "10.0.0.2", "user": "board", "prefix": ["/usr/bin/qemu-aarch64"],
                       "port": 2222, "options": ["-o", "Compression=no"], "remote_tmp": "/data/local/tmp"})
    assert isinstance(ssh, SshRunner) and ssh.description == "ssh board@10.0.0.2:2222 via qemu-aarch64"
    assert ssh.remote_tmp == "/data/local/tmp"


@pytest.mark.parametrize("spec, named", [
    ({"kind": "adb"}, "kind"),
    ({"kind": "ssh"}, "host"),
    ({"kind": "ssh", "host": ""}, "host"),
    ({"kind": "qemu"}, "prefix"),
    ({"kind": "local", "host": "x"}, "'host'"),
    ({"kind": "ssh", "host": "b", "hots": "x"}, "'hots'"),
    ({"kind": "ssh", "host": "b", "port": "22"}, "port"),
    ({"kind": "ssh", "host": "b", "port": 70000}, "port"),
    ({"kind": "ssh", "host": "b", "options": "-v"}, "options"),
    ({"kind": "qemu", "prefix": "qemu-aarch64"}, "prefix"),
    ({"kind": "ssh", "host": "b", "user": 3}, "user"),
    ({"kind": "ssh", "host": "b", "connect_timeout": 0}, "connect_timeout"),
])
def test_make_runner_rejects_bad_specs(spec, named):
    with pytest.raises(TargetError, match=r"\[runner\]") as error:
        make_runner(spec)
    assert named in str(error.value)
