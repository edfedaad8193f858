"""Targets: what machine the code is for, the toolchain that builds it, and how to run it there."""

from __future__ import annotations

import os
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

    @property
    def compiler(self) -> str:
        """The C compiler: $CC when set, as build systems do, else the target's."""
        return os.environ.get("CC") or self.cc if self.name == "host" else self.cc

    def describe(self) -> dict[str, Any]:
        """What a tuning record stores about the target (no machine-specific paths)."""
        return {"name": self.name, "isa": sorted(self.isa), "devices": sorted(self.devices),
                "cflags": list(self.cflags)}


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
        return Target(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            cc=str(tool["cc"]),
            cflags=tuple(tool.get("cflags", ())),
            ldflags=tuple(tool.get("ldflags", ())),
            libs=tuple(tool.get("libs", ("-lm",))),
            isa=frozenset(feats.get("isa", ("scalar",))),
            devices=frozenset(feats.get("devices", ("cpu",))),
            runner=dict(data.get("runner", {"kind": "local"})),
            source=str(path),
        )
    except KeyError as exc:
        raise TargetError(f"{path}: missing key {exc} (a target needs name and [toolchain] cc)") from None
