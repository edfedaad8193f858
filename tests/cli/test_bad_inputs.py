"""Bad input gets a clear error naming the file, node or input, exit status 1, no traceback,
and no output folder (not even a half-written one)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def neurogen(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codegen", *args], capture_output=True, text=True, cwd=cwd)


def assert_clean_failure(proc: subprocess.CompletedProcess, *phrases: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "neurogen: error:" in proc.stderr
    for phrase in phrases:
        assert phrase in proc.stderr, (phrase, proc.stderr)


def assert_no_output(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "temporary left behind"


def _model(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "bad", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _conv_model(batch: int | str = 1, height: int | str = 8) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    return _model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv0")],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, height, 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])


def test_truncated_model(tiny_model_path, tmp_path):
    data = tiny_model_path.read_bytes()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    assert_clean_failure(neurogen("compile", str(bad), "-o", str(out)), str(bad), "truncated")
    assert_no_output(out)


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "notes.onnx"
    bad.write_text("this is not a model\n" * 10)
    out = tmp_path / "out"
    assert_clean_failure(neurogen("compile", str(bad), "-o", str(out)), str(bad))
    assert_no_output(out)


def test_missing_model_file(tmp_path):
    out = tmp_path / "out"
    assert_clean_failure(neurogen("compile", str(tmp_path / "nope.onnx"), "-o", str(out)), "no such model file")
    assert_no_output(out)


def test_unknown_ops_are_all_listed_before_any_work(tmp_path):
    model = _model(
        [helper.make_node("Relu", ["x"], ["a"], name="ok"),
         helper.make_node("Einsum", ["a", "a"], ["b"], name="mix0", equation="ij,ij->ij"),
         helper.make_node("Celu", ["b"], ["c"], name="celu0"),
         helper.make_node("Celu", ["c"], ["y"], name="celu1")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])])
    path = tmp_path / "unknown.onnx"
    onnx.save(model, str(path))
    out = tmp_path / "out"
    proc = neurogen("compile", str(path), "-o", str(out))
    assert_clean_failure(proc, "2 unsupported operator type(s)", "Einsum: node 'mix0'", "Celu: node 'celu0', 'celu1'")
    assert "importing" in proc.stderr  # progress shows the step that failed
    assert_no_output(out)


def test_dynamic_shape_needs_a_size(tmp_path):
    path = tmp_path / "dynamic.onnx"
    onnx.save(_conv_model(batch="N", height="H"), str(path))  # a free batch compiles as 1; a free height cannot
    out = tmp_path / "out"
    assert_clean_failure(neurogen("compile", str(path), "-o", str(out)),
                         "input 'x'", "axis 2 ('H')", "--input-shape x=1,3,N,8")
    assert_no_output(out)
    ok = neurogen("compile", str(path), "-o", str(out), "--input-shape", "x=2,3,8,8", "-q")
    assert ok.returncode == 0, ok.stderr
    assert json.loads((out / "tuning.json").read_text())["io"]["inputs"][0]["shape"] == [2, 3, 8, 8]


def test_bad_input_shape_flag(tmp_path):
    path = tmp_path / "dynamic.onnx"
    onnx.save(_conv_model(batch="N"), str(path))
    assert_clean_failure(neurogen("compile", str(path), "-o", str(tmp_path / "o"), "--input-shape", "x=1,a"),
                         "--input-shape 'x=1,a'")
    assert_clean_failure(neurogen("compile", str(path), "-o", str(tmp_path / "o"), "--input-shape", "z=1,3,8,8"),
                         "--input-shape names ['z']")


def test_missing_external_data_file(tmp_path):
    model = _conv_model()
    path = tmp_path / "external.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.data", size_threshold=0)
    ok = neurogen("compile", str(path), "-o", str(tmp_path / "fine"), "-q")
    assert ok.returncode == 0, ok.stderr  # external data is read when present
    (tmp_path / "weights.data").unlink()
    out = tmp_path / "out"
    assert_clean_failure(neurogen("compile", str(path), "-o", str(out)), "weights.data", "missing")
    assert_no_output(out)


def test_parameter_fed_at_run_time_is_refused(tmp_path):
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv0")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
                    helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3, 3, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "w_input.onnx"
    onnx.save(model, str(path))
    assert_clean_failure(neurogen("compile", str(path), "-o", str(tmp_path / "out")),
                         "node 'conv0' (Conv)", "weights", "must be a constant")


@pytest.mark.parametrize("where", ["under_a_file", "read_only_filesystem"])
def test_unwritable_output_folder(tiny_model_path, tmp_path, where):
    if where == "under_a_file":
        blocker = tmp_path / "a_file"
        blocker.write_text("x")
        out = blocker / "project"
    else:
        out = Path("/proc/neurogen-cannot-write-here")
    proc = neurogen("compile", str(tiny_model_path), "-o", str(out))
    assert_clean_failure(proc, str(out), "cannot")
    assert not out.exists()


def test_failed_compile_keeps_the_previous_project(tiny_model_path, tmp_path):
    out = tmp_path / "out"
    assert neurogen("compile", str(tiny_model_path), "-o", str(out), "-q").returncode == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(tiny_model_path.read_bytes()[:100])
    assert_clean_failure(neurogen("compile", str(bad), "-o", str(out)))
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_unknown_target_and_usage_errors(tiny_model_path, tmp_path):
    assert_clean_failure(neurogen("compile", str(tiny_model_path), "-o", str(tmp_path / "o"), "--target", "mars"),
                         "unknown target 'mars'", "host")
    usage = neurogen("compile", str(tiny_model_path))
    assert usage.returncode == 2 and "-o/--output" in usage.stderr and "Traceback" not in usage.stderr


def test_every_command_has_help():
    for command in ("compile", "run", "verify", "inspect", "targets", "routines"):
        proc = neurogen(command, "--help")
        assert proc.returncode == 0 and "usage: neurogen" in proc.stdout, command


def _conv_attrs_model(**attrs) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    b = numpy_helper.from_array(np.ones(attrs.pop("bias", 4), np.float32), "b")
    return _model([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv0", **attrs)],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, b])


@pytest.mark.parametrize("model, phrases", [
    (_conv_attrs_model(stride=[2, 2]), ["node 'conv0' (Conv)", "unknown attribute 'stride'", "'strides'"]),
    (_conv_attrs_model(bias=2), ["node 'conv0' (Conv)", "bias 'b'", "(2,)", "(4,)"]),
    (_conv_attrs_model(strides=[0, 1]), ["strides", "positive"]),
    (_conv_attrs_model(auto_pad="VALID", pads=[1, 1, 1, 1]), ["node 'conv0' (Conv)", "both auto_pad"]),
], ids=["misspelt-attribute", "short-bias", "zero-stride", "auto_pad-and-pads"])
def test_an_invalid_model_is_refused_before_any_work(tmp_path, model, phrases):
    path = tmp_path / "invalid.onnx"
    onnx.save(model, str(path))
    out = tmp_path / "out"
    assert_clean_failure(neurogen("compile", str(path), "-o", str(out)), str(path), *phrases)
    assert_no_output(out)


def test_hostile_external_data_info_is_refused(tmp_path):
    path = tmp_path / "external.onnx"
    onnx.save(_conv_model(), str(path), save_as_external_data=True, location="w.bin", size_threshold=0)
    model = onnx.load(str(path), load_external_data=False)
    offset = [e for e in model.graph.initializer[0].external_data if e.key == "offset"]
    (offset[0] if offset else model.graph.initializer[0].external_data.add(key="offset")).value = "-8"
    onnx.save(model, str(path))
    out = tmp_path / "out"
    assert_clean_failure(neurogen("compile", str(path), "-o", str(out)), "tensor 'w'", "offset '-8'")
    assert_no_output(out)
