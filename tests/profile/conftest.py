"""Fixtures for the runner tests: programs built for the host and for aarch64, a real sshd, a tiny filesystem."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from runner_kit import CRASH_C, HELLO_C, Sshd, require, start_sshd


@pytest.fixture(scope="session")
def compile_c(tmp_path_factory) -> Callable[..., Path]:
    """compile_c(source, name, compiler="gcc") -> the built program (built once per name)."""
    folder = tmp_path_factory.mktemp("programs")

    def build(source: str, name: str, compiler: str = "gcc", *flags: str) -> Path:
        binary = folder / name
        if not binary.exists():
            require(compiler)
            (folder / f"{name}.c").write_text(source)
            subprocess.run([compiler, "-O1", *flags, str(folder / f"{name}.c"), "-o", str(binary)], check=True)
        return binary

    return build


@pytest.fixture(scope="session")
def hello(compile_c) -> Path:
    return compile_c(HELLO_C, "hello")


@pytest.fixture(scope="session")
def crash(compile_c) -> Path:
    return compile_c(CRASH_C, "crash")


@pytest.fixture(scope="session")
def qemu_prefix() -> list[str]:
    require("qemu-aarch64")
    return ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"]


@pytest.fixture(scope="session")
def hello_arm64(compile_c) -> Path:
    require("qemu-aarch64")
    return compile_c(HELLO_C, "hello-arm64", "aarch64-linux-gnu-gcc")


@pytest.fixture(scope="session")
def crash_arm64(compile_c) -> Path:
    require("qemu-aarch64")
    return compile_c(CRASH_C, "crash-arm64", "aarch64-linux-gnu-gcc")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory) -> Iterator[Sshd]:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture
def tiny_fs(tmp_path) -> Iterator[Path]:
    """A real 64 KiB tmpfs; skips where this sandbox may not mount (the file-size-limit test still runs)."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)
