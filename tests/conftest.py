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

# Tests `make test-quick` leaves out: each takes minutes on a 2-core machine (the conv family's builds with two
# compilers and under sanitizers, qemu runs, full-size networks, TensorFlow applications, engine benchmarks).
# (path, test name or "" for every test of the file, parameter id or "" for all)
SLOW: tuple[tuple[str, str, str], ...] = (
    ("tests/models/", "", ""),
    ("tests/bench/", "", ""),
    ("tests/frontends/test_keras_applications.py", "", ""),
    ("tests/routines/test_neon.py", "", ""),
    ("tests/routines/test_routines.py", "test_conv", ""),
    ("tests/routines/test_routines.py", "test_family_under_sanitizers", ""),
    ("tests/routines/test_projects.py", "test_routines_do_not_read_stale_arena_or_output_memory", "conv"),
)


def is_slow(nodeid: str) -> bool:
    path, _, rest = nodeid.partition("::")
    name, _, param = rest.partition("[")
    return any(path.startswith(p) and (not n or name == n) and (not i or param.rstrip("]") == i)
               for p, n, i in SLOW)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if is_slow(item.nodeid):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def profile_cache_dir(tmp_path_factory) -> Path:
    """Profiles measured by the tests go to a cache of their own (child processes inherit it). Under
    pytest-xdist every worker has its own base temp folder, hence its own cache: no test sees profiles
    that another worker measured at the same time (the sqlite cache is safe to share, but test
    expectations such as "0 from the cache" would then depend on scheduling)."""
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
