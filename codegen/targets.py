"""Targets: what machine the code is for, the toolchain that builds it, and how to run it there."""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import tomllib
from collections.abc import Iterable
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
        cflags = tuple(os.path.expandvars(str(f)) for f in tool.get("cflags", ()))
        check_portable(cflags, path)
        if "detect" in isa:
            isa, cflags = sorted(set(isa) - {"detect"} | detect_isa()), with_detected_flags(cflags, path)
        return Target(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            cc=os.path.expandvars(str(tool["cc"])),
            cflags=cflags,
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


def check_portable(cflags: tuple[str, ...], path: Path) -> None:
    """Refuse -march=native and its kin: the project would hold flags (and code) for this machine only,
    which another machine's or a cross compiler rejects (`unknown value 'native'`)."""
    for flag in cflags:
        if flag.split("=", 1)[0] in ("-march", "-mcpu", "-mtune") and flag.endswith("=native"):
            raise TargetError(f"{path}: cflags {flag!r} makes projects that build only with this machine's "
                              "compiler; name the ISA (e.g. -march=x86-64-v3, -march=armv8.2-a+dotprod), "
                              'or set [features] isa = ["detect"] to have it chosen from this CPU')


def with_detected_flags(cflags: tuple[str, ...], path: Path) -> tuple[str, ...]:
    """A detecting target's flags: its own, then those that enable the detected ISA (-march=x86-64-v4 ...)."""
    for flag in cflags:
        if flag.startswith(("-march=", "-mcpu=")):
            raise TargetError(f"{path}: cflags {flag!r} with isa = [\"detect\"]: detection chooses -march "
                              "itself; remove the flag, or list the ISA features instead of \"detect\"")
    return (*cflags, *detect_cflags())


# -- ISA features: what /proc/cpuinfo calls them, the compiler flags that enable them, their macros --------

@dataclass(frozen=True)
class Feature:
    cpuinfo: str  # the /proc/cpuinfo flag that says the CPU has it
    flag: str  # x86: the -m flag that enables it alone; ARM: the -march extension ("+dotprod"), "" for none
    macro: str  # what the compiler defines when it is enabled


# Only the features routines declare (Routine.requires): a feature the flags do not enable must not reach
# Target.isa, or a routine needing it could be chosen and fail to compile. Add a row with a routine that needs it.
X86_FEATURES = {
    "sse2": Feature("sse2", "-msse2", "__SSE2__"),
    "avx": Feature("avx", "-mavx", "__AVX__"),
    "avx2": Feature("avx2", "-mavx2", "__AVX2__"),
    "fma": Feature("fma", "-mfma", "__FMA__"),
    "f16c": Feature("f16c", "-mf16c", "__F16C__"),
    "avx512f": Feature("avx512f", "-mavx512f", "__AVX512F__"),
    "avx512bw": Feature("avx512bw", "-mavx512bw", "__AVX512BW__"),
    "avx512dq": Feature("avx512dq", "-mavx512dq", "__AVX512DQ__"),
    "avx512vl": Feature("avx512vl", "-mavx512vl", "__AVX512VL__"),
}
ARM_FEATURES = {
    "neon": Feature("asimd", "", "__ARM_NEON"),
    "dotprod": Feature("asimddp", "+dotprod", "__ARM_FEATURE_DOTPROD"),
    "fp16": Feature("asimdhp", "+fp16", "__ARM_FEATURE_FP16_VECTOR_ARITHMETIC"),
}

# The x86-64 micro-architecture levels (x86-64 psABI), each with the /proc/cpuinfo flags it adds to the one
# below and the features above that it enables. A level is named only when the CPU has all of its flags:
# the compiler may use any instruction of the level, not only those the routines ask for.
X86_LEVELS = (
    ("x86-64-v2", frozenset({"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"}), frozenset({"sse2"})),
    ("x86-64-v3", frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}),
     frozenset({"avx", "avx2", "fma", "f16c"})),
    ("x86-64-v4", frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
     frozenset({"avx512f", "avx512bw", "avx512dq", "avx512vl"})),
)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The flags of this machine's CPU (the first `flags` or `Features` line of /proc/cpuinfo; none elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def isa_for_cpu(flags: frozenset[str]) -> tuple[frozenset[str], tuple[str, ...]]:
    """The ISA features routines may use on a CPU with these /proc/cpuinfo flags, and the compiler flags
    that enable them: a named level (-march=x86-64-v4, -march=armv8.2-a+dotprod) and, on x86, -m flags for
    the features beyond it. Never -march=native: the project must build on other machines and compilers."""
    if "asimd" in flags:
        features = {name for name, f in ARM_FEATURES.items() if f.cpuinfo in flags}
        return frozenset({"scalar", *features}), (arm_march(features),)
    if "sse2" not in flags:
        return frozenset({"scalar"}), ()
    features = {name for name, f in X86_FEATURES.items() if f.cpuinfo in flags}
    level, implied, cpu_needs = "", set(), set()
    for name, needs, enables in X86_LEVELS:
        cpu_needs |= needs
        if not cpu_needs <= flags:
            break
        level, implied = name, implied | enables
    extra = [f.flag for name, f in X86_FEATURES.items() if name in features - implied]
    return frozenset({"scalar", *features}), tuple([f"-march={level}"] * bool(level) + extra)


def arm_march(features: set[str] | frozenset[str]) -> str:
    """The -march of AArch64 with these features: ARMv8-A (NEON is part of it), v8.2-A for its extensions."""
    extensions = "".join(f.flag for name, f in ARM_FEATURES.items() if name in features and f.flag)
    return f"-march=armv8.2-a{extensions}" if extensions else "-march=armv8-a"


def detect_isa() -> frozenset[str]:
    """ISA features of this machine, those routines use (just 'scalar' where /proc/cpuinfo says nothing)."""
    return isa_for_cpu(cpu_flags())[0]


def detect_cflags() -> tuple[str, ...]:
    """The compiler flags that enable exactly `detect_isa()`."""
    return isa_for_cpu(cpu_flags())[1]


@dataclass(frozen=True)
class IsaNeed:
    """The ISA features a generated project's routines use: the macros that show a build enables them,
    and the flags that do."""

    features: tuple[str, ...]
    macros: tuple[str, ...]
    level: str  # "x86-64-v3", "armv8.2-a+dotprod"; "" when no level holds them all
    flags: str  # the flags of the level, else the exact ones
    exact: str  # x86: the -m flags of just these features ("" on ARM, where -march is the only way)

    def message(self, name: str) -> str:
        """The text of the #error that stops a build without the flags."""
        what = f"the {self.level} ISA ({', '.join(self.features)})" if self.level else \
            f"the ISA features {', '.join(self.features)}"
        alternative = f" (or {self.exact})" if self.exact and self.exact != self.flags else ""
        return f"{name} needs {what}: build with {self.flags}{alternative}"


def isa_need(features: Iterable[str]) -> IsaNeed | None:
    """What a project whose routines require `features` needs from its build (None: portable C only)."""
    wanted = set(features) - {"scalar"}
    if not wanted:
        return None
    unknown = wanted - set(X86_FEATURES) - set(ARM_FEATURES)
    if unknown:
        raise ValueError(f"ISA feature(s) {', '.join(sorted(unknown))} have no entry in codegen/targets.py")
    x86 = [name for name in X86_FEATURES if name in wanted]
    arm = [name for name in ARM_FEATURES if name in wanted]
    macros = [X86_FEATURES[n].macro for n in x86] + [ARM_FEATURES[n].macro for n in arm]
    exact = " ".join(X86_FEATURES[n].flag for n in x86)
    level, flags = "", exact
    implied: set[str] = set()
    for name, _, enables in X86_LEVELS if x86 else ():
        implied |= enables
        if set(x86) <= implied:
            level, flags = name, f"-march={name}"
            break
    if arm:
        march = arm_march(set(arm))
        level, flags = (march.removeprefix("-march="), march) if not x86 else ("", f"{flags} {march}")
    return IsaNeed(tuple(x86 + arm), tuple(macros), level, flags, exact)
