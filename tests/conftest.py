"""Fixtures shared by the test folders: a small model on disk, its inputs and onnxruntime's outputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from support import onnxruntime_outputs

from codegen import zoo
from codegen.compiler import tune_model
from codegen.profile.harness import Settings


@pytest.fixture(scope="session", autouse=True)
def profile_cache_dir(tmp_path_factory) -> Path:
    """Profiles measured by the tests go to a cache of their own (child processes inherit it)."""
    path = tmp_path_factory.mktemp("profile-cache")
    os.environ["NEUROGEN_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_record(tiny_model_path) -> dict:
    """The tuning record of the small example CNN on the host (profiled once per test session)."""
    return tune_model(tiny_model_path, settings=Settings(min_reps=2, max_reps=5, min_seconds=0.0))


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
