"""Fixtures shared by the test folders: small models on disk and onnxruntime as the oracle."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from codegen import zoo


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


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """The small example CNN (wide op coverage) at 32x32, saved as .onnx."""
    path = tmp_path_factory.mktemp("models") / "tiny_cnn.onnx"
    onnx.save(zoo.build("tiny_cnn", resolution=32), str(path))
    return path


@pytest.fixture(scope="session")
def tiny_inputs(tiny_model_path) -> dict[str, np.ndarray]:
    return zoo.example_input(onnx.load(str(tiny_model_path)), seed=1)


@pytest.fixture(scope="session")
def tiny_expected(tiny_model_path, tiny_inputs) -> dict[str, np.ndarray]:
    return onnxruntime_outputs(tiny_model_path, tiny_inputs)
