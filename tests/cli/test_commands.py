"""The commands a user runs, end to end, on the small example model."""

from __future__ import annotations

import numpy as np
import pytest
from test_bad_inputs import neurogen


@pytest.fixture(scope="module")
def project(tiny_model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "tiny"
    proc = neurogen("compile", str(tiny_model_path), "-o", str(out), "--build")
    assert proc.returncode == 0, proc.stderr
    assert "importing and simplifying" in proc.stderr and "building the shared library" in proc.stderr
    return out


def test_verify_passes_and_fails_on_tolerance(tiny_model_path, project):
    ok = neurogen("verify", str(tiny_model_path), str(project), "-q", "--repeat", "3")
    assert ok.returncode == 0, ok.stderr
    assert "PASS" in ok.stdout and "logits" in ok.stdout and "onnxruntime" in ok.stdout
    strict = neurogen("verify", str(tiny_model_path), str(project), "-q", "--rtol", "1e-30")
    assert strict.returncode == 1 and "FAIL" in strict.stdout


def test_run_saves_outputs_that_match_the_python_api(project, tmp_path, tiny_inputs, tiny_expected):
    np.save(tmp_path / "x.npy", tiny_inputs["input"])
    proc = neurogen("run", str(project), "--input", f"input={tmp_path / 'x.npy'}", "--output",
                    str(tmp_path / "y.npz"), "--repeat", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "latency: median" in proc.stdout
    saved = np.load(tmp_path / "y.npz")
    np.testing.assert_allclose(saved["logits"], tiny_expected["logits"], rtol=1e-4, atol=1e-4)


def test_inspect_shows_the_simplified_graph(tiny_model_path):
    proc = neurogen("inspect", str(tiny_model_path))
    assert proc.returncode == 0, proc.stderr
    assert "conv2d+relu" in proc.stdout and "MACs" in proc.stdout
    raw = neurogen("inspect", str(tiny_model_path), "--raw")
    assert "scale_shift" in raw.stdout and "scale_shift" not in proc.stdout  # BatchNorm folded


def test_targets_and_routines_list_the_registry():
    assert "host" in neurogen("targets").stdout
    routines = neurogen("routines").stdout
    assert "f32-conv2d-nchw-ref-scalar" in routines and "f32-dense-ref-scalar" in routines
