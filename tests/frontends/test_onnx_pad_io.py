"""ONNX end to end: Pad folded into the convolution after it, a free batch size, and the input checks
of CompiledModel.run, against onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from support import onnxruntime_outputs, relative_error

import codegen
from codegen.compiler import import_model
from codegen.errors import NeurogenError


def pad_conv_model(pads: list[int], *, mode: str = "constant", value: float = 0.0, group: int = 1,
                   stride: int = 2, batch: str | int = "batch") -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    weights = {
        "pads": np.array(pads, np.int64),
        "value": np.array(value, np.float32),
        "w": rng.standard_normal((6, 6 // group, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(6).astype(np.float32),
    }
    nodes = [
        helper.make_node("Pad", ["x", "pads", "value"], ["p"], mode=mode),
        helper.make_node("Conv", ["p", "w", "b"], ["c"], kernel_shape=[3, 3], strides=[stride, stride],
                         group=group),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "pad_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                 [batch, 6, 11, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def compile_and_run(model: onnx.ModelProto, tmp_path, x: np.ndarray):
    path = tmp_path / "pad_conv.onnx"
    onnx.save(model, str(path))
    project = codegen.compile_model(path, tmp_path / "project", reference=True)
    compiled = codegen.load(project, werror=True)
    return project, compiled, compiled.run({"x": x})["y"]


@pytest.mark.parametrize("group", [1, 6], ids=["conv", "depthwise"])
def test_pad_then_conv_folds_and_matches_onnxruntime(tmp_path, group):
    model = pad_conv_model([0, 0, 1, 0, 0, 0, 2, 1], group=group)
    graph = import_model(model)
    assert [layer.kind for layer in graph.layers] == ["conv2d"]
    assert graph.layers[0].attrs["pads"] == (1, 0, 2, 1)
    x = np.random.default_rng(0).standard_normal((1, 6, 11, 10)).astype(np.float32)
    project, _, got = compile_and_run(model, tmp_path, x)
    want = onnxruntime_outputs(model, {"x": x})["y"]
    assert got.shape == want.shape
    assert relative_error(want, got) < 1e-5
    emitted = json.loads((project / "tuning.json").read_text())["emitted"]
    assert [e["routine"].split("-")[1] for e in emitted] == ["conv2d"]


@pytest.mark.parametrize("mode, value", [("reflect", 0.0), ("constant", 0.5)])
def test_pad_that_cannot_fold_still_matches_onnxruntime(tmp_path, mode, value):
    model = pad_conv_model([0, 0, 1, 1, 0, 0, 1, 1], mode=mode, value=value)
    assert [layer.kind for layer in import_model(model).layers] == ["pad", "conv2d"]
    x = np.random.default_rng(1).standard_normal((1, 6, 11, 10)).astype(np.float32)
    _, _, got = compile_and_run(model, tmp_path, x)
    assert relative_error(onnxruntime_outputs(model, {"x": x})["y"], got) < 1e-5


def test_free_batch_compiles_as_one_and_run_checks_the_whole_shape(tmp_path):
    model = pad_conv_model([0, 0, 1, 1, 0, 0, 1, 1], stride=1)
    x = np.random.default_rng(2).standard_normal((1, 6, 11, 10)).astype(np.float32)
    project, compiled, got = compile_and_run(model, tmp_path, x)
    io = json.loads((project / "tuning.json").read_text())["io"]
    assert io["inputs"][0]["shape"] == [1, 6, 11, 10]
    assert compiled.inputs[0].shape == (1, 6, 11, 10)

    # Same element count, other order: refused, naming the first axis that differs.
    with pytest.raises(NeurogenError, match=r"input 'x': axis 2 is 10, expected 11; "
                                            r"expected shape \(1, 6, 11, 10\)"):
        compiled.run({"x": np.ascontiguousarray(x.transpose(0, 1, 3, 2))})
    with pytest.raises(NeurogenError, match=r"input 'x' has shape \(6, 11, 10\) \(rank 3\)"):
        compiled.run(x[0])
    with pytest.raises(NeurogenError, match="input 'x' holds int64"):
        compiled.run(np.ones((1, 6, 11, 10), np.int64))
    # Another float type is cast.
    np.testing.assert_array_equal(compiled.run(x.astype(np.float64))["y"], got)


def test_wrong_rank_input_shape_is_refused():
    model = pad_conv_model([0, 0, 1, 1, 0, 0, 1, 1])
    with pytest.raises(NeurogenError, match=r"--input-shape x=1,6,11 has rank 3, but input 'x' has rank 4: "
                                            r"\(batch, 6, 11, 10\)"):
        import_model(model, input_shapes={"x": (1, 6, 11)})
    with pytest.raises(NeurogenError, match="sets axis 1 to 3, but the model fixes it at 6"):
        import_model(model, input_shapes={"x": (1, 3, 11, 10)})
    assert import_model(model, input_shapes={"x": (2, 6, 11, 10)}).shape("x") == (2, 6, 11, 10)


# -- Pad folded into the pool after it --------------------------------------------------------------

def conv_relu_pad_pool_model(pool: str = "MaxPool", **pool_attrs: int) -> onnx.ModelProto:
    """x -> Conv 3x3 -> Relu -> Pad(zeros, 1 around H and W) -> pool 3x3 stride 2: Keras ResNet50's stem."""
    rng = np.random.default_rng(4)
    weights = {
        "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
        "w": rng.standard_normal((8, 8, 3, 3)).astype(np.float32) / 8,
        "b": rng.standard_normal(8).astype(np.float32) - 1.0,  # many windows clamp to 0 wholly
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Pad", ["r", "pads"], ["p"], mode="constant"),
        helper.make_node(pool, ["p"], ["y"], kernel_shape=[3, 3], strides=[2, 2], **pool_attrs),
    ]
    graph = helper.make_graph(nodes, "conv_relu_pad_pool",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("pool, attrs", [("MaxPool", {}), ("AveragePool", {"count_include_pad": 0})],
                         ids=["max", "avg"])
def test_pad_then_pool_folds_and_matches_onnxruntime(tmp_path, pool, attrs):
    model = conv_relu_pad_pool_model(pool, **attrs)
    graph = import_model(model)
    assert [layer.kind for layer in graph.layers] == ["conv2d", "pool2d"]
    assert graph.layers[1].attrs["pads"] == (1, 1, 1, 1)
    # The explicit zeros count in the average: the folded pool counts its padding.
    assert graph.layers[1].attrs["count_include_pad"] == (pool == "AveragePool")
    x = np.random.default_rng(5).standard_normal((1, 8, 16, 16)).astype(np.float32)
    want = onnxruntime_outputs(model, {"x": x})["y"]
    assert (want == 0).any() and (want > 0).any()
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    project = codegen.compile_model(path, tmp_path / "project", reference=True)
    got = codegen.load(project, werror=True).run({"x": x})["y"]
    assert got.shape == want.shape
    assert relative_error(want, got) < 1e-5
    emitted = json.loads((project / "tuning.json").read_text())["emitted"]
    assert [e["routine"].split("-")[1] for e in emitted] == ["conv2d", "pool2d"]


def test_pad_then_max_pool_tuned_matches_onnxruntime(tmp_path):
    # Tuning picks the fast routines on this machine; they must read the folded pads as padding.
    model = conv_relu_pad_pool_model()
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    project = codegen.compile_model(path, tmp_path / "project")
    x = np.random.default_rng(6).standard_normal((1, 8, 16, 16)).astype(np.float32)
    got = codegen.load(project, werror=True).run({"x": x})["y"]
    want = onnxruntime_outputs(model, {"x": x})["y"]
    assert got.shape == want.shape
    assert relative_error(want, got) < 1e-5
    routines = [e["routine"] for e in json.loads((project / "tuning.json").read_text())["emitted"]]
    print("tuned path:", routines)
    assert [r.split("-")[1] for r in routines if r.split("-")[1] != "layout"] == ["conv2d", "pool2d"]
