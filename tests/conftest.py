"""Fixtures shared by the test folders: a small model on disk, its inputs and onnxruntime's outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from support import onnxruntime_outputs

from codegen import zoo


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
