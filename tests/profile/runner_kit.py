"""Helpers for the runner tests: small C programs, tool checks, and a real sshd on loopback."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from codegen.profile.runners import SshRunner

# Prints its architecture, work folder and arguments as JSON (arguments must not hold '"' or '\').
HELLO_C = textwrap.dedent(r"""
    #include <stdio.h>
    #include <unistd.h>
    int main(int argc, char **argv) {
        char cwd[4096];
    #if defined(__aarch64__)
        const char *arch = "aarch64";
    #else
        const char *arch = "host";
    #endif
        if (!getcwd(cwd, sizeof cwd)) return 2;
        printf("{\"arch\": \"%s\", \"cwd\": \"%s\", \"args\": [", arch, cwd);
        for (int i = 1; i < argc; i++) printf("%s\"%s\"", i > 1 ? ", " : "", argv[i]);
        printf("]}\n");
        return 0;
    }
""")

# Fails in the way its argument names.
CRASH_C = textwrap.dedent(r"""
    #include <signal.h>
    #include <stdio.h>
    #include <stdlib.h>
    #include <string.h>
    int main(int argc, char **argv) {
        const char *how = argc > 1 ? argv[1] : "segv";
        if (!strcmp(how, "segv")) { volatile int *p = (volatile int *)0; *p = 1; }
        if (!strcmp(how, "abort")) abort();
        if (!strcmp(how, "ill")) raise(SIGILL);
        if (!strcmp(how, "bus")) raise(SIGBUS);
        for (int i = 1; i <= 20; i++) fprintf(stderr, "diagnostic line %d\n", i);
        return 3;
    }
""")


def require(tool: str) -> str:
    """The path of `tool`; a missing tool skips the test, or fails it under CI where everything must run."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (see the Makefile's apt packages)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Sshd:
    """A running sshd on 127.0.0.1 that accepts `key` for the current user."""

    folder: Path
    port: int
    key: Path
    log: Path
    pid_file: Path

    @property
    def options(self) -> list[str]:
        return ["-o", f"UserKnownHostsFile={self.folder / 'known_hosts'}", "-o", "StrictHostKeyChecking=accept-new"]

    def runner(self, **kwargs) -> SshRunner:
        kwargs.setdefault("identity_file", str(self.key))
        return SshRunner("127.0.0.1", port=self.port, options=self.options, **kwargs)

    def logins(self) -> int:
        """How many SSH connections have logged in so far."""
        return self.log.read_text().count("Accepted publickey")

    def stop(self) -> None:
        if self.pid_file.exists():
            pid = int(self.pid_file.read_text())
            os.kill(pid, signal.SIGTERM)
            for _ in range(250):
                if not running(pid):
                    break
                time.sleep(0.02)


def running(pid: int) -> bool:
    """False once the process is gone or a zombie (a container's init may be slow to reap the daemon)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def start_sshd(folder: Path, wrapper: Sequence[str] = ()) -> Sshd:
    """Start sshd (under `wrapper`, e.g. prlimit) with its own keys and config in `folder`; wait until it listens."""
    sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
    if sshd is None:
        message = "sshd is not installed: apt-get install openssh-server openssh-client"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    require("ssh")
    folder.mkdir(parents=True, exist_ok=True)
    host_key, client_key = keygen(folder / "host_key"), keygen(folder / "client_key")
    shutil.copyfile(f"{client_key}.pub", folder / "authorized_keys")
    port = free_port()
    server = Sshd(folder, port, client_key, folder / "sshd.log", folder / "sshd.pid")
    (folder / "sshd_config").write_text(textwrap.dedent(f"""\
        Port {port}
        ListenAddress 127.0.0.1
        HostKey {host_key}
        AuthorizedKeysFile {folder / 'authorized_keys'}
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        StrictModes no
        UsePAM no
        PidFile {server.pid_file}
    """))
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation folder
    subprocess.run([*wrapper, sshd, "-f", str(folder / "sshd_config"), "-E", str(server.log)], check=True)
    deadline = time.monotonic() + 10
    while not server.pid_file.exists():  # written once the socket listens
        if time.monotonic() > deadline:
            pytest.fail(f"sshd did not start: {server.log.read_text() if server.log.exists() else 'no log'}")
        time.sleep(0.02)
    return server


def script(path: Path, body: str) -> Path:
    """An executable sh script: a real program to name as a runner's prefix (it ends with `exec "$@"` or
    runs "$@" itself)."""
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body).lstrip())
    path.chmod(0o755)
    return path


def on_call(path: Path, counter: Path, n: int, action: str) -> Path:
    """A prefix that counts its calls (one per benchmark program run) in `counter` and on call `n` runs the
    sh commands `action` instead of the program; every other call runs it."""
    return script(path, f"""
        n=$(( $(cat {shlex.quote(str(counter))} 2>/dev/null || echo 0) + 1 ))
        echo "$n" > {shlex.quote(str(counter))}
        if [ "$n" -eq {n} ]; then {action}; fi
        exec "$@"
    """)


def calls(counter: Path) -> int:
    return int(counter.read_text()) if counter.exists() else 0


def kill_my_ssh_session(listener: int) -> str:
    """sh commands, run on the (loopback) SSH host under sshd, that kill the sshd processes serving this
    connection (not the listener), as a dropped network or a rebooting board would end it."""
    return (f'p=$$; while [ "$p" -gt 1 ]; do case "$(cat /proc/$p/comm)" in sshd*) [ "$p" = {listener} ] || '
            'kill -KILL "$p";; esac; p=$(cut -d" " -f4 /proc/$p/stat); done; sleep 2; exit 1')


def drop_connections(server: Sshd) -> None:
    """Stop `server` and cut every connection it serves: what a board that goes away looks like."""
    listener = int(server.pid_file.read_text())
    children = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/stat")
                if _parent(p) == listener]
    server.stop()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _parent(stat: Path) -> int | None:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None
