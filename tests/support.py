"""Helpers shared by the test folders: onnxruntime as the oracle, error measures, tool lookup."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest


def onnxruntime_outputs(model: onnx.ModelProto | str | Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))


def relative_error(reference: np.ndarray, actual: np.ndarray) -> float:
    """max |actual - reference| / max |reference|: the figure `neurogen verify` prints."""
    scale = float(np.max(np.abs(reference)))
    return float(np.max(np.abs(actual.astype(np.float64) - reference))) / scale


def require_tool(name: str) -> str:
    """The path of a command-line tool; a missing tool fails under CI (which installs it) and skips elsewhere."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; .ci/run should install it")
        pytest.skip(f"{name} is not installed")
    return path


def host_target_toml(name: str, runner: str) -> str:
    """A target file for this machine (host compiler, detected ISA) whose [runner] table is `runner`: the
    host profiled through a wrapper program, over SSH ..."""
    return f"""name = "{name}"
[toolchain]
cc = "cc"
cflags = ["-O2"]
libs = ["-lm"]
[features]
isa = ["detect"]
[runner]
{runner.strip()}
"""
