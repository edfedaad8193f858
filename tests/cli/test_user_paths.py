"""The paths a new user walks into with the real `neurogen` command: output files, wrong pairings,
foreign targets, pipes, start-up cost, targets that cannot run programs."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_bad_inputs import assert_clean_failure, neurogen

from codegen.targets import detect_isa


def _two_output_model(size: int = 8, seed: int = 0) -> onnx.ModelProto:
    """x -> conv -> relu (output b) and -> sigmoid (output s)."""
    w = numpy_helper.from_array(np.random.default_rng(seed).standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["b"], name="relu0"),
             helper.make_node("Sigmoid", ["a"], ["s"], name="sig0")]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("b", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("s", TensorProto.FLOAT, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> tuple[Path, Path]:
    """A two-output model and its project (reference routines: no tuning needed)."""
    folder = tmp_path_factory.mktemp("two")
    model = folder / "two.onnx"
    onnx.save(_two_output_model(), str(model))
    proc = neurogen("compile", str(model), "-o", str(folder / "proj"), "--reference", "-q")
    assert proc.returncode == 0, proc.stderr
    return model, folder / "proj"


def test_compile_force_replaces_its_own_project(two, tmp_path):
    model, _ = two
    assert "a folder it did not write is never replaced" in " ".join(neurogen("compile", "--help").stdout.split())
    out = tmp_path / "p"
    assert neurogen("compile", str(model), "-o", str(out), "--reference", "-q").returncode == 0
    again = neurogen("compile", str(model), "-o", str(out), "--reference", "-q", "--force")
    assert again.returncode == 0, again.stderr
    assert (out / "tuning.json").is_file()


def test_run_writes_exactly_the_files_asked_for(two, tmp_path):
    _, project = two
    refused = neurogen("run", str(project), "--random", "-q", "--output", str(tmp_path / "y.npy"))
    assert_clean_failure(refused, "2 outputs (b, s)", ".npz", "--output NAME=FILE.npy")
    assert list(tmp_path.iterdir()) == []  # refused before running: not y.npy, and no silent y.npz
    no_suffix = neurogen("run", str(project), "--random", "-q", "--output", str(tmp_path / "y"))
    assert_clean_failure(no_suffix, ".npy", ".npz")
    assert list(tmp_path.iterdir()) == []

    ok = neurogen("run", str(project), "--random", "-q", "--output", str(tmp_path / "all.npz"),
                  "--output", f"s={tmp_path / 'sig.npy'}")
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.npz", "sig.npy"]
    archive = np.load(tmp_path / "all.npz")
    assert sorted(archive.files) == ["b", "s"] and archive["b"].shape == (1, 4, 8, 8)
    np.testing.assert_array_equal(np.load(tmp_path / "sig.npy"), archive["s"])
    assert archive["b"].min() >= 0 and 0 < archive["s"].min() <= archive["s"].max() < 1  # relu, sigmoid


def test_verify_refuses_a_wrong_input_before_running(two, tmp_path):
    model, project = two
    np.save(tmp_path / "small.npy", np.zeros((1, 3, 4, 4), np.float32))
    proc = neurogen("verify", str(model), str(project), "--input", str(tmp_path / "small.npy"))
    assert_clean_failure(proc, "small.npy", "[1, 3, 4, 4]", "[1, 3, 8, 8]")
    np.savez(tmp_path / "x.npz", x=np.zeros((1, 3, 8, 8), np.float32))
    assert_clean_failure(neurogen("verify", str(model), str(project), "--input", str(tmp_path / "x.npz")),
                         ".npz archive", "one .npy file per input")
    run = neurogen("run", str(project), "--input", f"x={tmp_path / 'small.npy'}")
    assert_clean_failure(run, "[1, 3, 4, 4]", "[1, 3, 8, 8]")


def test_verify_refuses_a_project_of_another_model(two, tmp_path):
    model, project = two
    bigger = tmp_path / "bigger.onnx"
    onnx.save(_two_output_model(size=16), str(bigger))
    assert_clean_failure(neurogen("verify", str(bigger), str(project)),
                         "was not compiled from", "'x' [1, 3, 16, 16]", "'x' [1, 3, 8, 8]")
    retrained = tmp_path / "retrained.onnx"  # same inputs and outputs, other weights
    onnx.save(_two_output_model(seed=1), str(retrained))
    assert_clean_failure(neurogen("verify", str(retrained), str(project)), "other layers or weights")
    ok = neurogen("verify", str(model), str(project), "-q")
    assert ok.returncode == 0 and "PASS" in ok.stdout and "against onnxruntime" in ok.stdout, ok.stderr
    assert_clean_failure(neurogen("verify", str(model), str(tmp_path)), "not a neurogen project")


@pytest.mark.skipif("neon" in detect_isa(), reason="this machine runs ARM code")
def test_verify_and_run_say_when_the_project_is_for_another_target(two, tmp_path):
    model, _ = two
    out = tmp_path / "arm"
    assert neurogen("compile", str(model), "-o", str(out), "--target", "aarch64-linux", "--reference",
                    "-q").returncode == 0
    for proc in (neurogen("verify", str(model), str(out)), neurogen("run", str(out), "--random")):
        assert_clean_failure(proc, "compiled for target 'aarch64-linux'", "neon", "cannot run the project")
        assert "build failed" not in proc.stderr


def test_a_closed_pipe_ends_quietly():
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written: every write fails
    proc = subprocess.run([sys.executable, "-m", "codegen", "routines"], stdout=write, stderr=subprocess.PIPE,
                          text=True)
    os.close(write)
    assert proc.returncode == 141, proc.stderr  # as a program killed by SIGPIPE, in a shell
    assert proc.stderr == ""


def test_start_up_imports_only_what_the_command_needs():
    probe = ("import sys, contextlib, io\n"
             "import codegen.cli as cli\n"
             "print(sorted(m for m in ('onnx', 'numpy', 'jinja2') if m in sys.modules))\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    cli.main(['targets'])\n"
             "print(sorted(m for m in ('onnx', 'numpy', 'jinja2') if m in sys.modules))\n"
             "with contextlib.redirect_stdout(io.StringIO()):\n"
             "    cli.main(['routines'])\n"
             "print('onnx' in sys.modules)\n")
    lines = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split("\n")
    assert lines[:3] == ["[]", "[]", "False"], lines
    import codegen

    assert callable(codegen.compile_model) and callable(codegen.load)  # the lazy API still resolves


def _bare_target(tmp_path: Path, runner: str) -> Path:
    path = tmp_path / "board.toml"
    path.write_text(f'name = "board"\n[toolchain]\ncc = "cc"\ncflags = ["-O2"]\n{runner}')
    return path


def test_a_target_without_a_runner_stops_before_profiling(two, tmp_path):
    model, _ = two
    target = _bare_target(tmp_path, '[runner]\nkind = "none"\n')
    out = tmp_path / "out"
    message = ("target 'board' has no runner: it cannot run benchmark programs", "--reference",
               "--record a tuning record made on the device")
    proc = neurogen("compile", str(model), "-o", str(out), "--target", str(target))
    assert_clean_failure(proc, *message)
    assert "profiling" not in proc.stderr and not out.exists()
    assert_clean_failure(neurogen("tune", str(model), "-o", str(tmp_path / "t.json"), "--target", str(target)),
                         *message)
    ok = neurogen("compile", str(model), "-o", str(out), "--target", str(target), "--reference", "-q")
    assert ok.returncode == 0, ok.stderr


def test_a_cross_compiler_without_a_runner_table_stops_before_profiling(two, tmp_path):
    cross = shutil.which("aarch64-linux-gnu-gcc")
    if cross is None or platform.machine() != "x86_64":
        pytest.skip("needs an aarch64 cross compiler on an x86-64 machine")
    model, _ = two
    target = tmp_path / "cross.toml"
    target.write_text('name = "cross"\n[toolchain]\ncc = "aarch64-linux-gnu-gcc"\n')
    assert_clean_failure(neurogen("tune", str(model), "-o", str(tmp_path / "t.json"), "--target", str(target)),
                         "target 'cross' has no runner", "aarch64-linux-gnu", "x86_64")


def test_inspect_and_compile_refuse_a_file_that_is_no_record(two, tmp_path):
    model, _ = two
    for text in ("[]", "{}", '{"path": [{"x": 1}]}'):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        assert_clean_failure(neurogen("inspect", "--record", str(bad)), "not a neurogen tuning record")
        assert_clean_failure(neurogen("compile", str(model), "-o", str(tmp_path / "o"), "--record", str(bad)),
                             "not a neurogen tuning record")
    usage = neurogen("verify", str(model), "proj", "--rtol", "nan")
    assert usage.returncode == 2 and "--rtol" in usage.stderr and "Traceback" not in usage.stderr


# -- TensorFlow models are verified against TensorFlow -------------------------------------------

@pytest.fixture(scope="module")
def keras_files(tmp_path_factory) -> dict[str, Path]:
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    folder = tmp_path_factory.mktemp("keras")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), batch_size=1, name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Flatten()(x)), name="small")
    files = {"keras": folder / "small.keras", "savedmodel": folder / "small_savedmodel",
             "tflite": folder / "small.tflite"}
    model.save(files["keras"])
    model.export(files["savedmodel"], verbose=False)
    files["tflite"].write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return files


@pytest.mark.parametrize(("kind", "engine"), [("keras", "Keras"), ("savedmodel", "TensorFlow"),
                                              ("tflite", "TFLite")])
def test_verify_a_tensorflow_model_against_its_framework(keras_files, tmp_path, kind, engine):
    model = keras_files[kind]
    out = tmp_path / "proj"
    compiled = neurogen("compile", str(model), "-o", str(out), "--reference", "-q")
    assert compiled.returncode == 0, compiled.stderr
    shape = json.loads((out / "tuning.json").read_text())["io"]["inputs"][0]["shape"]
    assert shape == [1, 8, 8, 3]  # the model's own NHWC order
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(3).standard_normal((1, 8, 8, 3)).astype(np.float32))
    proc = neurogen("verify", str(model), str(out), "--input", str(x), "-q")
    assert proc.returncode == 0, proc.stderr
    assert "PASS: max relative error" in proc.stdout and f"against {engine}" in proc.stdout
    np.save(x, np.zeros((1, 3, 8, 8), np.float32))  # NCHW by mistake
    assert_clean_failure(neurogen("verify", str(model), str(out), "--input", str(x)), "[1, 3, 8, 8]", "[1, 8, 8, 3]")
