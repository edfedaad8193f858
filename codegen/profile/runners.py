"""Runners: where a benchmark program runs (this machine, an emulator, an SSH host), behind one small interface.

A runner opens a session: a fresh work folder on the target (and for SSH one multiplexed connection). The
session copies files into it, runs programs there and removes everything at the end, also when an error
interrupts it. Failures become RunnerError with a message that says what went wrong and what to do.
"""

from __future__ import annotations

import math
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from codegen.errors import NeurogenError, TargetError


class RunnerError(NeurogenError):
    """A program could not be copied to the target, or failed there."""


@dataclass
class RunResult:
    returncode: int  # negative: killed by that signal, as subprocess reports it
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False


# What a crash by each signal usually means for generated numeric code.
_SIGNAL_HINTS = {
    "SIGILL": "the CPU lacks an instruction the code uses: check the target's ISA features",
    "SIGSEGV": "invalid memory access: a bug in the code, or a stack too small for its buffers",
    "SIGBUS": "misaligned or unmapped memory access: check the alignment the code assumes",
    "SIGFPE": "arithmetic fault such as an integer division by zero",
    "SIGABRT": "the program aborted itself (a failed assert() or a call to abort())",
    "SIGKILL": "killed from outside, often by the out-of-memory killer",
    "SIGXFSZ": "a file grew past the file-size limit",
}
_STDERR_LINES = 10


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def failure_message(result: RunResult, what: str, where: str) -> str | None:
    """Why `result` is a failure, as a sentence for the user; None when it succeeded."""
    if result.timed_out:
        reason = (f"timed out after {result.seconds:.1f} s; raise the timeout if the target is slow "
                  "(an emulator is), or look for a hang")
    elif result.returncode < 0:
        name = signal_name(-result.returncode)
        hint = _SIGNAL_HINTS.get(name)
        reason = f"crashed with {name}" + (f" ({hint})" if hint else "")
    elif result.returncode != 0:
        reason = f"exited with code {result.returncode}"
    else:
        return None
    message = f"{what} failed on {where}: {reason}."
    tail = result.stderr.strip().splitlines()[-_STDERR_LINES:]
    if tail:
        message += "\nLast lines of its error output:\n" + "\n".join("  " + line for line in tail)
    return message


class Session(ABC):
    """An open work folder on the target."""

    workdir: str  # the work folder, as a path on the target
    where: str  # the runner's description, for messages

    @abstractmethod
    def put(self, local: Path, executable: bool = False) -> str:
        """Copy a file into the work folder; returns its path on the target."""

    @abstractmethod
    def run(self, argv: list[str], *, timeout: float = 600) -> RunResult:
        """Run argv in the work folder (under the runner's prefix). A failing program is a result, not an error."""

    def check(self, result: RunResult, what: str) -> RunResult:
        """Return `result` if the program succeeded, else raise RunnerError saying why `what` failed."""
        message = failure_message(result, what, self.where)
        if message:
            raise RunnerError(message)
        return result


class Runner(ABC):
    @property
    @abstractmethod
    def description(self) -> str:
        """Where programs run, for messages: "local", "ssh board@10.0.0.2 via qemu-aarch64"."""

    @abstractmethod
    @contextmanager
    def session(self) -> Iterator[Session]:
        """Open a work folder (and connection) on the target; cleaned up on exit, even on error."""


def _via(prefix: Sequence[str]) -> str:
    return f" via {os.path.basename(prefix[0])}" if prefix else ""


# ---------------------------------------------------------------------------------------------- local


class LocalRunner(Runner):
    """Runs programs in a temporary folder on this machine, optionally under a prefix such as qemu-aarch64."""

    def __init__(self, prefix: Sequence[str] = ()):
        self.prefix = list(prefix)

    @property
    def description(self) -> str:
        return "local" + _via(self.prefix)

    @contextmanager
    def session(self) -> Iterator[Session]:
        workdir = tempfile.mkdtemp(prefix="neurogen-run-")
        try:
            yield _LocalSession(self, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


class _LocalSession(Session):
    def __init__(self, runner: LocalRunner, workdir: str):
        self.runner = runner
        self.workdir = workdir
        self.where = runner.description

    def put(self, local: Path, executable: bool = False) -> str:
        target = Path(self.workdir) / Path(local).name
        try:
            shutil.copyfile(local, target)
            if executable:
                target.chmod(0o755)
        except OSError as e:
            raise RunnerError(f"cannot copy {local} to the work folder {self.workdir}: {e.strerror}.") from None
        return str(target)

    def run(self, argv: list[str], *, timeout: float = 600) -> RunResult:
        command = [*self.runner.prefix, *argv]
        start = time.monotonic()
        try:
            # A new session so that a timeout kills the whole process group (an emulator and its children).
            proc = subprocess.Popen(command, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True)
        except OSError as e:
            raise RunnerError(_start_failure(command, e, self.runner.prefix, self.where)) from None
        timed_out = False
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        return RunResult(proc.returncode, stdout, stderr, time.monotonic() - start, timed_out)


def _start_failure(command: list[str], error: OSError, prefix: list[str], where: str) -> str:
    if isinstance(error, FileNotFoundError):
        if prefix:
            return (f"cannot start {command[0]!r} on {where}: not found. Install it (qemu-aarch64 is in the "
                    "qemu-user package) or fix the prefix in the target's [runner] table.")
        return f"cannot start {command[0]!r} on {where}: no such program. Copy it with put() first."
    if error.errno == 8:  # ENOEXEC: a binary for another CPU, run without an emulator
        return (f"cannot execute {command[0]!r} on {where}: exec format error. It was built for another CPU: "
                "set a prefix such as [\"qemu-aarch64\", \"-L\", \"/usr/aarch64-linux-gnu\"] in the [runner] table.")
    return f"cannot start {command[0]!r} on {where}: {error.strerror}."


# ---------------------------------------------------------------------------------------------- ssh

SshProblem = Literal["disk_full", "unknown_host", "unreachable", "key_refused", "host_key", "connection_lost"]

# First match wins: a disk-full text can come with other noise, so it is looked for first.
_SSH_PATTERNS: list[tuple[SshProblem, re.Pattern[str]]] = [
    ("disk_full", re.compile(r"No space left on device|Disk quota exceeded|File too large|File size limit exceeded")),
    ("unknown_host", re.compile(r"Could not resolve hostname|Name or service not known|"
                                r"Temporary failure in name resolution|nodename nor servname")),
    ("unreachable", re.compile(r"Connection refused|No route to host|Network is unreachable|"
                               r"Connection timed out|Operation timed out|timed out during banner exchange")),
    ("key_refused", re.compile(r"Permission denied \([^)]*\)")),  # the auth-method list tells it from file errors
    ("host_key", re.compile(r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED")),
    ("connection_lost", re.compile(r"Connection (closed|reset) by|Connection to \S+ closed|Broken pipe|"
                                   r"client_loop: send disconnect|read from master failed|"
                                   r"Connection (reset|timed out)|Timeout, server \S+ not responding")),
]


def classify_ssh_error(stderr: str) -> tuple[SshProblem, str] | None:
    """The kind of SSH-level problem the stderr of ssh shows, with the line that shows it; None if none."""
    for kind, pattern in _SSH_PATTERNS:
        for line in stderr.splitlines():
            if pattern.search(line):
                return kind, line.strip()
    return None


def ssh_error_message(kind: SshProblem, line: str, *, host: str, port: int | None,
                      remote_dir: str | None = None, doing: str | None = None) -> str:
    """A message for a classified SSH problem that says what to do about it."""
    line = line.rstrip(".")  # it becomes part of our sentence
    found = re.search(r"connect to host (\S+) port (\d+)", line)
    if found:
        host, port = found.group(1), int(found.group(2))
    at = f"{host} port {port}" if port else f"{host} (port 22 unless ~/.ssh/config sets another)"
    if kind == "unreachable":
        return (f"cannot reach {at} over SSH: {line}. Check that the host is up, that sshd listens on that port "
                "and that this machine can reach it (network, firewall, VPN).")
    if kind == "unknown_host":
        return (f"cannot resolve the host name {host!r}: {line}. Check the spelling, DNS, "
                "or the Host alias in ~/.ssh/config.")
    if kind == "key_refused":
        return (f"{at} refused the SSH key: {line}. Give the right key with identity_file in the target's "
                "[runner] table, load it into ssh-agent (ssh-add), or add its public key to "
                "~/.ssh/authorized_keys on the target.")
    if kind == "host_key":
        return (f"the SSH host key of {at} is unknown or has changed: {line}. Connect once by hand to accept it "
                "(or add it with ssh-keyscan to known_hosts); if it changed, find out why before trusting it.")
    if kind == "disk_full":
        return (f"the remote disk is full (or a quota or file-size limit applies): no space left in "
                f"{remote_dir or 'the work folder'} on {host} ({line}). Free space on the target or set remote_tmp "
                "in the [runner] table to a folder with room.")
    while_ = f" while {doing}" if doing else ""
    return f"the SSH connection to {at} was lost{while_}: {line}. Check the host and the network, then run again."


class SshRunner(Runner):
    """Runs programs on an SSH host with the OpenSSH client, honouring ~/.ssh/config and the ssh-agent."""

    def __init__(self, host: str, *, user: str | None = None, port: int | None = None,
                 identity_file: str | os.PathLike[str] | None = None, options: Sequence[str] = (),
                 prefix: Sequence[str] = (), remote_tmp: str = "/tmp", connect_timeout: float = 10):
        if not host or host.startswith("-"):
            raise RunnerError(f"invalid SSH host {host!r}: give an address or a Host alias from ~/.ssh/config.")
        self.host = host
        self.user = user
        self.port = port
        self.identity_file = os.path.expanduser(identity_file) if identity_file else None
        self.options = list(options)
        self.prefix = list(prefix)
        self.remote_tmp = remote_tmp.rstrip("/") or "/"
        self.connect_timeout = connect_timeout

    @property
    def description(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"ssh {user}{self.host}{port}" + _via(self.prefix)

    def ssh_args(self, control_path: str) -> list[str]:
        """Options for every ssh call of a session. ssh keeps the first value it sees, so ours come first."""
        args = ["-o", "BatchMode=yes",  # never prompt: a benchmark run has nobody at the keyboard
                "-o", "ControlMaster=auto", "-o", f"ControlPath={control_path}",
                # Persist only as a safety net: the session ends it with -O exit.
                "-o", "ControlPersist=300"]
        if self.user:
            args += ["-l", self.user]
        if self.port:
            args += ["-p", str(self.port)]
        if self.identity_file:
            # Only this key: otherwise agent keys are tried first and may exhaust the server's MaxAuthTries.
            args += ["-i", self.identity_file, "-o", "IdentitiesOnly=yes"]
        # ConnectTimeout goes after the user's options: a value they give there wins.
        return [*args, *self.options, "-o", f"ConnectTimeout={math.ceil(self.connect_timeout)}"]

    @contextmanager
    def session(self) -> Iterator[Session]:
        # Unix socket paths are limited to ~100 bytes, so the control folder sits in a short temp folder.
        control_dir = tempfile.mkdtemp(prefix="ngssh-", dir="/tmp" if len(tempfile.gettempdir()) > 40 else None)
        session = _SshSession(self, os.path.join(control_dir, "master"))
        try:
            session.open()
            yield session
        finally:
            session.close()
            shutil.rmtree(control_dir, ignore_errors=True)


# Run the program as a background job so its pid can be written down and a timed-out program killed; `wait`
# then gives 128+N for a death by signal N. Positional parameters carry the words, so no quoting is needed.
# ssh exits with 255 for its own errors: a program that exits with 255 itself says so on a last stderr line.
_EXIT_255 = "neurogen: the program exited with code 255"
_RUN_SCRIPT = ('cd "$1" && shift && { "$@" & echo $! > .run.pid; wait $!; s=$?; '
               f'[ $s -ne 255 ] || echo "{_EXIT_255}" >&2; exit $s; }}')
# `|| exit` keeps the shell from exec'ing cat, so a death by SIGXFSZ shows as status 128+25; a partial file is removed.
_PUT_SCRIPT = 'export LC_ALL=C; cat > "$1" || { s=$?; rm -f "$1"; exit $s; }; [ -z "$2" ] || chmod +x "$1"'


class _SshSession(Session):
    def __init__(self, runner: SshRunner, control_path: str):
        self.runner = runner
        self.control_path = control_path
        self.where = runner.description
        self.workdir = ""

    def _argv(self, words: Sequence[str]) -> list[str]:
        # ssh joins the command words with spaces for the remote shell: join them quoted ourselves.
        return ["ssh", *self.runner.ssh_args(self.control_path), self.runner.host, shlex.join(words)]

    def _raise_if_ssh_failed(self, proc: subprocess.CompletedProcess[str], doing: str) -> None:
        """Raise for an SSH-level failure: exit status 255, which ssh gives for its own errors. `doing` says
        what the call was for ("uploading weights.bin ..."), for the message."""
        if proc.returncode != 255:
            return
        problem = classify_ssh_error(proc.stderr)
        # Inside a session that was open, a connection that ends or is refused was lost (sshd stopped, the
        # board rebooted, the network dropped); ssh may also die without a word.
        if problem is None or problem[0] == "connection_lost" or (self.workdir and problem[0] == "unreachable"):
            lines = proc.stderr.strip().splitlines()
            line = lines[-1].strip() if lines else "ssh exited with code 255 and no message"
            raise RunnerError(ssh_error_message("connection_lost", line, host=self.runner.host,
                                                port=self.runner.port, doing=f"{doing} on {self.where}"))
        raise RunnerError(f"{doing} on {self.where} failed: " +
                          ssh_error_message(*problem, host=self.runner.host, port=self.runner.port,
                                            remote_dir=self.workdir or self.runner.remote_tmp))

    def _ssh(self, words: Sequence[str], *, timeout: float, stdin: Any = subprocess.DEVNULL,
             ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(self._argv(words), stdin=stdin, capture_output=True, text=True, errors="replace",
                                  timeout=timeout)
        except FileNotFoundError:
            raise RunnerError("the OpenSSH client `ssh` is not installed: install openssh-client.") from None

    def open(self) -> None:
        # The first call becomes the master connection; ControlPersist backgrounds it with its output on
        # /dev/null. Its stdout and stderr go to files anyway: an older ssh could keep a pipe open and hang us.
        mktemp = ["sh", "-c", 'LC_ALL=C mktemp -d "$1/neurogen.XXXXXX"', "sh", self.runner.remote_tmp]
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            try:
                proc = subprocess.run(self._argv(mktemp), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                      timeout=self.runner.connect_timeout + 60)
            except FileNotFoundError:
                raise RunnerError("the OpenSSH client `ssh` is not installed: install openssh-client.") from None
            except subprocess.TimeoutExpired:
                raise RunnerError(f"cannot connect to {self.where}: no answer within "
                                  f"{self.runner.connect_timeout + 60:.0f} s. Check that the host is up.") from None
            out.seek(0)
            err.seek(0)
            result = subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
        self._raise_if_ssh_failed(result, f"creating a work folder under {self.runner.remote_tmp}")
        lines = result.stdout.strip().splitlines()
        workdir = lines[-1].strip() if lines else ""  # the last line: login scripts may print banners first
        if result.returncode != 0 or not workdir.startswith(self.runner.remote_tmp.rstrip("/") + "/neurogen."):
            problem = classify_ssh_error(result.stderr)
            if problem and problem[0] == "disk_full":
                raise RunnerError(ssh_error_message(*problem, host=self.runner.host, port=self.runner.port,
                                                    remote_dir=self.runner.remote_tmp))
            raise RunnerError(f"cannot create a work folder under {self.runner.remote_tmp} on {self.where}: "
                              f"{result.stderr.strip() or 'mktemp printed ' + repr(result.stdout)}. "
                              "Set remote_tmp in the [runner] table to a writable folder.")
        self.workdir = workdir

    def close(self) -> None:
        """Best effort: remove the work folder and end the master connection; never raises."""
        if self.workdir:
            try:
                proc = self._ssh(["rm", "-rf", "--", self.workdir], timeout=60)
                self._raise_if_ssh_failed(proc, f"removing the work folder {self.workdir}")
                if proc.returncode != 0:
                    warnings.warn(f"could not remove {self.workdir} on {self.where}: {proc.stderr.strip()}",
                                  stacklevel=3)
            except (subprocess.TimeoutExpired, RunnerError) as e:
                warnings.warn(f"could not remove {self.workdir} on {self.where}: {e}", stacklevel=3)
        with suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={self.control_path}", self.runner.host],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)

    def put(self, local: Path, executable: bool = False) -> str:
        local = Path(local)
        remote = f"{self.workdir}/{local.name}"
        uploading = f"uploading {local.name} ({local.stat().st_size} bytes) to {self.workdir}"
        doing = f"cannot upload {local.name} ({local.stat().st_size} bytes) to {self.workdir} on {self.where}"
        # `cat` over the master connection: needs no sftp-server or scp on the board, and errors are plain errno text.
        with open(local, "rb") as data:
            try:
                proc = self._ssh(["sh", "-c", _PUT_SCRIPT, "sh", remote, "x" if executable else ""], stdin=data,
                                 timeout=600)
            except subprocess.TimeoutExpired:
                raise RunnerError(f"{doing}: no end within 600 s; the connection is stalled or very slow. Check "
                                  "the network and the host, then run again.") from None
        if proc.returncode == 0:
            return remote
        self._raise_if_ssh_failed(proc, uploading)
        problem = classify_ssh_error(proc.stderr)
        if proc.returncode == 128 + signal.SIGXFSZ:  # the shell's code for cat killed by the file-size limit
            problem = ("disk_full", "file size limit exceeded")
        if problem and problem[0] == "disk_full":
            raise RunnerError(f"{doing}: " + ssh_error_message(*problem, host=self.runner.host, port=self.runner.port,
                                                               remote_dir=self.workdir))
        raise RunnerError(f"{doing}: exit code {proc.returncode}: {proc.stderr.strip()}")

    def run(self, argv: list[str], *, timeout: float = 600) -> RunResult:
        start = time.monotonic()
        words = ["sh", "-c", _RUN_SCRIPT, "sh", self.workdir, *self.runner.prefix, *argv]
        try:
            proc = self._ssh(words, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            self._kill_remote()
            return RunResult(-signal.SIGKILL, _text(e.stdout), _text(e.stderr), time.monotonic() - start, True)
        seconds = time.monotonic() - start
        stderr = proc.stderr
        if proc.returncode == 255 and stderr.rstrip().endswith(_EXIT_255):
            stderr = stderr.rstrip()[: -len(_EXIT_255)]  # the program's own code, not ssh's
        else:
            self._raise_if_ssh_failed(proc, f"running {os.path.basename(argv[0])}")
        returncode = proc.returncode
        if 128 < returncode <= 128 + 64:
            # The remote shell reports a death by signal N as 128+N. A program that exits with such a code
            # itself reads the same; like shells, take it as the signal.
            returncode = 128 - returncode
        return RunResult(returncode, proc.stdout, stderr, seconds)

    def _kill_remote(self) -> None:
        """Stop a timed-out program: closing our ssh client leaves it running on the target."""
        with suppress(subprocess.TimeoutExpired, RunnerError):
            self._ssh(["sh", "-c", 'kill -KILL "$(cat "$1/.run.pid")"', "sh", self.workdir], timeout=30)


def _text(output: str | bytes | None) -> str:
    # TimeoutExpired carries bytes even when the call asked for text.
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


# ---------------------------------------------------------------------------------------------- from TOML

_COMMON_KEYS = {"kind", "prefix"}
_SSH_KEYS = _COMMON_KEYS | {"host", "user", "port", "identity_file", "options", "remote_tmp", "connect_timeout"}


# CPU families whose programs run on each other's machines (a 64-bit x86 runs i686 code, and so on).
_FAMILIES = {"x86_64": "x86", "amd64": "x86", "x64": "x86", "i386": "x86", "i486": "x86", "i586": "x86",
             "i686": "x86", "aarch64": "arm64", "arm64": "arm64"}


def cpu_family(arch: str) -> str:
    """x86, arm64, arm, or the architecture's own name: what runs the same programs."""
    arch = arch.lower()
    return _FAMILIES.get(arch, "arm" if arch.startswith("arm") else arch)


def compiler_machine(cc: str) -> str | None:
    """The target triple `cc -dumpmachine` prints (gcc and clang), or None when it cannot tell."""
    try:
        proc = subprocess.run([cc, "-dumpmachine"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    triple = proc.stdout.strip()
    return triple if proc.returncode == 0 and triple else None


def no_runner_reason(spec: dict[str, Any], cc: str) -> str | None:
    """Why a target with this [runner] table and compiler cannot run benchmark programs; None when it can.

    kind = "none" says so. A local runner without a prefix (also what a target without a [runner] table
    gets) runs programs on this machine, which a compiler for another CPU or for bare metal cannot feed."""
    kind = spec.get("kind", "local")
    if kind == "none":
        return 'its [runner] kind is "none"'
    if kind != "local" or spec.get("prefix"):
        return None
    triple = compiler_machine(cc)
    here = platform.machine()
    if triple is None or not here or cpu_family(triple.split("-")[0]) == cpu_family(here):
        return None  # a missing compiler is reported by the build, with its own message
    return (f"its compiler {os.path.basename(cc)} builds for {triple}, which this machine ({here}) cannot run, "
            "and its [runner] table names no emulator (prefix) or device (ssh)")


def make_runner(spec: dict[str, Any]) -> Runner:
    """A runner from a target's [runner] table, e.g. {"kind": "ssh", "host": "board", "prefix": ["qemu-aarch64"]}."""
    kind = spec.get("kind", "local")
    if kind == "none":
        raise TargetError('[runner] kind "none": this target cannot run programs, so nothing can be '
                          "profiled on it; compile with --reference, or with --record a tuning record made on the "
                          "device")
    if kind not in ("local", "qemu", "ssh"):
        raise TargetError(f"[runner] kind {kind!r} is unknown: use \"local\", \"qemu\", \"ssh\" or \"none\" "
                          "(a target that cannot run programs).")
    allowed = _SSH_KEYS if kind == "ssh" else _COMMON_KEYS
    for key in spec:
        if key not in allowed:
            raise TargetError(f"[runner] key {key!r} is not used by a {kind} runner; it takes {sorted(allowed)}.")
    prefix = _strings(spec, "prefix")
    if kind == "qemu" and not prefix:
        raise TargetError('[runner] prefix is missing: a qemu runner needs the emulator command, e.g. '
                          'prefix = ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"].')
    if kind != "ssh":
        return LocalRunner(prefix)
    host = spec.get("host")
    if not isinstance(host, str) or not host or host.startswith("-"):
        raise TargetError("[runner] host is missing or invalid: an ssh runner needs the host to connect to "
                          "(an address or a Host alias from ~/.ssh/config).")
    port = spec.get("port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
        raise TargetError(f"[runner] port must be a number from 1 to 65535, not {port!r}.")
    for key in ("user", "identity_file", "remote_tmp"):
        if key in spec and not isinstance(spec[key], str):
            raise TargetError(f"[runner] {key} must be a string, not {spec[key]!r}.")
    timeout = spec.get("connect_timeout", 10)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise TargetError(f"[runner] connect_timeout must be a positive number of seconds, not {timeout!r}.")
    return SshRunner(host, user=spec.get("user"), port=port, identity_file=spec.get("identity_file"),
                     options=_strings(spec, "options"), prefix=prefix, remote_tmp=spec.get("remote_tmp", "/tmp"),
                     connect_timeout=timeout)


def _strings(spec: dict[str, Any], key: str) -> list[str]:
    value = spec.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TargetError(f"[runner] {key} must be a list of strings, not {value!r}.")
    return value
