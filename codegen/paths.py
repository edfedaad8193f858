"""Where the data folders live: beside the package in a source tree, inside it when installed."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    installed = _PACKAGE / f"_{name}"
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / name


TEMPLATES = _data_dir("templates")
RUNTIME_C = _data_dir("runtime_c")
TARGETS = _data_dir("targets")
