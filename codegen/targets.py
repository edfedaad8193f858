"""Targets: what machine the code is for, the toolchain that builds it, and how to run it there."""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import TargetError
from .paths import TARGETS


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    cc: str
    cflags: tuple[str, ...]
    ldflags: tuple[str, ...] = ()
    libs: tuple[str, ...] = ("-lm",)
    isa: frozenset[str] = frozenset({"scalar"})
    devices: frozenset[str] = frozenset({"cpu"})
    runner: dict[str, Any] = field(default_factory=lambda: {"kind": "local"})
    source: str = ""
    # How many bytes of weights stay cached from one run of a model to the next; a model with more
    # is profiled with each layer's weights flushed to memory (TOML: [profile] weights_cache_mib).
    weights_cache_bytes: int = 4 << 20

    @property
    def compiler(self) -> str:
        """The C compiler: $CC when set, as build systems do, else the target's."""
        return os.environ.get("CC") or self.cc if self.name == "host" else self.cc

    def describe(self) -> dict[str, Any]:
        """What a tuning record stores about the target (no machine-specific paths)."""
        return {"name": self.name, "isa": sorted(self.isa), "devices": sorted(self.devices),
                "cflags": list(self.cflags)}


@functools.cache
def compiler_version(cc: str) -> str:
    """The first line of `cc --version`, or 'unknown' when it cannot be run."""
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.splitlines()[0].strip() if out else "unknown"


def local_cpu() -> str:
    """This machine's CPU model (Linux /proc/cpuinfo), else the platform's description."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("model name", "Model", "Hardware"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(target: Target) -> str:
    """What measured times depend on: the CPU, the compiler and its flags, the runner.

    A local runner (with or without an emulator) names this machine's CPU; a remote one
    names its host, since asking the board would mean touching it on every lookup.
    """
    runner = dict(target.runner)
    where = local_cpu() if runner.get("kind", "local") in ("local", "qemu") else f"ssh:{runner.get('host')}"
    data = {"target": target.name, "cpu": where, "prefix": runner.get("prefix", []),
            "compiler": compiler_version(target.compiler), "cflags": list(target.cflags)}
    return json.dumps(data, sort_keys=True)


def available() -> list[str]:
    return sorted(p.stem for p in TARGETS.glob("*.toml"))


def load(name_or_path: str) -> Target:
    """A target by name (targets/NAME.toml) or by the path of a user's TOML file."""
    path = Path(name_or_path)
    if not (path.suffix == ".toml" and path.is_file()):
        path = TARGETS / f"{name_or_path}.toml"
        if not path.is_file():
            raise TargetError(f"unknown target '{name_or_path}'; known targets: {', '.join(available())} "
                              "(or give the path of a .toml file)")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"{path}: malformed TOML ({exc})") from None
    try:
        tool = data["toolchain"]
        feats = data.get("features", {})
        isa = [str(f) for f in feats.get("isa", ("scalar",))]
        if "detect" in isa:
            isa = sorted(set(isa) - {"detect"} | detect_isa())
        return Target(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            cc=os.path.expandvars(str(tool["cc"])),
            cflags=tuple(os.path.expandvars(str(f)) for f in tool.get("cflags", ())),
            ldflags=tuple(os.path.expandvars(str(f)) for f in tool.get("ldflags", ())),
            libs=tuple(tool.get("libs", ("-lm",))),
            isa=frozenset(isa),
            devices=frozenset(feats.get("devices", ("cpu",))),
            runner=dict(data.get("runner", {"kind": "local"})),
            source=str(path),
            weights_cache_bytes=int(float(data.get("profile", {}).get("weights_cache_mib", 4)) * (1 << 20)),
        )
    except KeyError as exc:
        raise TargetError(f"{path}: missing key {exc} (a target needs name and [toolchain] cc)") from None
    except (TypeError, AttributeError, ValueError) as exc:
        raise TargetError(f"{path}: a value has the wrong type ({exc})") from None


# /proc/cpuinfo flag -> the feature name routines declare
_X86_FLAGS = {"sse2": "sse2", "avx": "avx", "avx2": "avx2", "fma": "fma", "avx512f": "avx512f",
              "avx512bw": "avx512bw", "avx512dq": "avx512dq", "avx512vl": "avx512vl",
              "avx512_vnni": "avx512vnni", "avx512_bf16": "avx512bf16", "f16c": "f16c"}
_ARM_FLAGS = {"asimd": "neon", "asimddp": "dotprod", "fphp": "fp16", "asimdhp": "fp16", "i8mm": "i8mm"}


@functools.cache
def detect_isa() -> frozenset[str]:
    """ISA features of this machine, from /proc/cpuinfo (just 'scalar' elsewhere)."""
    features = {"scalar"}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset(features)
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            for flag in value.split():
                if flag in _X86_FLAGS:
                    features.add(_X86_FLAGS[flag])
                elif flag in _ARM_FLAGS:
                    features.add(_ARM_FLAGS[flag])
            break
    return frozenset(features)
