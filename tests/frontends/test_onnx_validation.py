"""The ONNX frontend checks the whole model before converting it: each invalid model (one that
onnxruntime refuses) gets one ModelError naming the node or tensor, what was expected and what was found;
valid edge cases still import and agree with onnxruntime."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from codegen.errors import GraphError, ModelError
from codegen.frontends import validate
from codegen.frontends.onnx import import_model
from codegen.ir import MAX_BYTES
from codegen.memory import Buffer, plan
from codegen.reference import run as run_graph


def _model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], x_shape: list[int] | None = None,
           opset: int = 17) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape or [1, 3, 8, 8])
    graph = helper.make_graph(nodes, "v", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _w(name: str = "w", shape: tuple[int, ...] = (4, 3, 3, 3), dtype: type = np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones(shape, dtype), name)


def _conv(**attrs: object) -> onnx.ModelProto:
    return _model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv0", **attrs)], [_w()])


def _conv_bias(length: int) -> onnx.ModelProto:
    return _model([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv0")], [_w(), _w("b", (length,))])


def _edit(model: onnx.ModelProto, change: Callable[[onnx.ModelProto], None]) -> onnx.ModelProto:
    change(model)
    return model


def _init_field(**fields: object) -> Callable[[onnx.ModelProto], None]:
    def change(model: onnx.ModelProto) -> None:
        init = model.graph.initializer[0]
        for key, value in fields.items():
            if value is None:
                init.ClearField(key)
            elif key in ("dims", "float_data"):
                getattr(init, key)[:] = value
            else:
                setattr(init, key, value)
    return change


INVALID = {
    "misspelt attribute": (_conv(stride=[2, 2]), ["node 'conv0' (Conv)", "unknown attribute 'stride'",
                                                  "did you mean 'strides'"]),
    "attribute of the wrong type": (_conv(strides=[1.0, 1.0]), ["node 'conv0'", "'strides' must be INTS, not FLOATS"]),
    "zero stride": (_conv(strides=[0, 1]), ["strides", "positive"]),
    "kernel_shape off the weights": (_conv(kernel_shape=[2, 2]), ["node 'conv0'", "kernel_shape [2, 2]",
                                                                 "weights' kernel [3, 3]"]),
    "auto_pad with pads": (_conv(auto_pad="SAME_UPPER", pads=[1, 1, 1, 1]), ["node 'conv0'", "both auto_pad"]),
    "unknown auto_pad": (_conv(auto_pad="MIDDLE"), ["auto_pad 'MIDDLE'"]),
    "negative pads": (_conv(pads=[-1, 0, 0, 0]), ["pads", "negative"]),
    "group 0": (_conv(group=0), ["group"]),
    "short bias": (_conv_bias(2), ["node 'conv0' (Conv)", "bias 'b'", "(2,)", "(4,)"]),
    "long bias": (_conv_bias(5), ["node 'conv0' (Conv)", "bias 'b'", "(5,)", "(4,)"]),
    "int8 weights": (_model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv0")], [_w(dtype=np.int8)]),
                     ["int8"]),
    "f16 weights": (_model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv0")], [_w(dtype=np.float16)]),
                    ["float16"]),
    "perm not a permutation": (_model([helper.make_node("Transpose", ["x"], ["y"], name="t0", perm=[0, 0, 1, 2])],
                                      []), ["perm"]),
    "flatten axis 99": (_model([helper.make_node("Flatten", ["x"], ["y"], name="f0", axis=99)], []), ["axis", "99"]),
    "flag out of range": (_model([helper.make_node("ReduceMean", ["x"], ["y"], name="m0", keepdims=2)], []),
                          ["node 'm0' (ReduceMean)", "'keepdims' is a flag", "not 2"]),
    "pool pads over the kernel": (_model([helper.make_node("MaxPool", ["x"], ["y"], name="p0", kernel_shape=[2, 2],
                                                           pads=[2, 2, 2, 2])], []), ["node 'p0'", "smaller than"]),
    "no outputs": (_edit(_conv(), lambda m: m.graph.ClearField("output")), ["no outputs"]),
    "duplicate initializers": (_edit(_conv(), lambda m: m.graph.initializer.append(_w())),
                               ["two initializers are named 'w'"]),
    "unknown output": (_edit(_conv(), lambda m: setattr(m.graph.output[0], "name", "z")), ["'z'", "not computed"]),
    "dims disagree with the data": (_edit(_conv(), _init_field(dims=[4, 3, 3, 4])), ["'w'", "432"]),
    "data_type changed": (_edit(_conv(), _init_field(data_type=TensorProto.INT64)), ["'w'"]),
    "claims 2 GiB": (_edit(_conv(), _init_field(dims=[2**29, 4])), ["'w'"]),
    "UNDEFINED element type": (_edit(_conv(), _init_field(data_type=TensorProto.UNDEFINED)), ["'w'", "UNDEFINED"]),
    "unknown element type": (_edit(_conv(), _init_field(data_type=77)), ["77"]),
    "negative dims": (_edit(_conv(), _init_field(dims=[-4, 3, 3, 3])), ["'w'"]),
    "empty input": (_model([helper.make_node("Relu", ["x"], ["y"])], [], [1, 0, 8, 8]),
                    ["input 'x'", "empty tensors are not supported"]),
    "input dim over 2^31": (_model([helper.make_node("Relu", ["x"], ["y"])], [], [1, 2**31]),
                            ["input 'x'", str(2**31), str(2**31 - 1)]),
    "output element type": (_edit(_conv(), lambda m: setattr(m.graph.output[0].type.tensor_type, "elem_type",
                                                             TensorProto.INT64)), ["output 'y'", "INT64"]),
    "gemm bias too wide": (_model([helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="g0", transB=1)],
                                  [_w("w", (4, 6)), _w("c", (3, 4))], [2, 6]), ["node 'g0'", "C 'c'", "(2, 4)"]),
    "batchnorm scale length": (_model([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"],
                                                        name="bn0")],
                                      [_w("s", (2,)), _w("b", (3,)), _w("m", (3,)), _w("v", (3,))]),
                               ["bn0", "BatchNormalization"]),
    "value_info of another type": (_edit(_model([helper.make_node("Relu", ["x"], ["r"]),
                                                 helper.make_node("Relu", ["r"], ["y"])], []),
                                         lambda m: m.graph.value_info.append(
                                             helper.make_tensor_value_info("r", TensorProto.INT64, None))),
                                   ["value_info 'r'", "INT64"]),
    "shape inference refuses": (_model([helper.make_node("Add", ["x", "c"], ["y"], name="a0")], [_w("c", (5,))]),
                                ["ONNX checker"]),
}


def _ort_refuses(model: onnx.ModelProto) -> bool:
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        session.run(None, {"x": np.ones(shape, np.float32)})
    except Exception:
        return True
    return False


@pytest.mark.parametrize("case", sorted(INVALID))
def test_an_invalid_model_gets_one_clear_error(case):
    model, phrases = INVALID[case]
    with pytest.raises(ModelError) as info:
        import_model(model, source="m.onnx")
    message = str(info.value)
    assert message.startswith("m.onnx: ") and "Traceback" not in message
    for phrase in phrases:
        assert phrase in message, (phrase, message)


# Refused by neurogen although onnxruntime runs them: neurogen is stricter (the spec's rules, or sizes the
# generated C cannot hold), never more lenient.
# (onnxruntime reads keepdims=2 as 0: a flag out of range has no one meaning.)
ORT_RUNS = {"duplicate initializers", "empty input", "input dim over 2^31",
            "flag out of range"}


@pytest.mark.parametrize("case", sorted(set(INVALID) - ORT_RUNS))
def test_onnxruntime_refuses_them_too(case):
    assert _ort_refuses(INVALID[case][0])


def _external_model(tmp_path: Path, **info: str) -> Path:
    model = _conv()
    onnx.save(model, str(tmp_path / "m.onnx"), save_as_external_data=True, location="w.bin", size_threshold=0)
    if info:
        model = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
        entries = model.graph.initializer[0].external_data
        for key, value in info.items():
            found = [e for e in entries if e.key == key]
            if found:
                found[0].value = value
            else:
                entries.add(key=key, value=value)
        onnx.save(model, str(tmp_path / "m.onnx"))
    return tmp_path / "m.onnx"


@pytest.mark.parametrize("info, phrase", [
    ({"offset": "-5"}, "offset '-5' is not a non-negative integer"),
    ({"length": "abc"}, "length 'abc' is not a non-negative integer"),
    ({"length": "9999"}, "has only 432 bytes"),
    ({"location": "../w.bin"}, "outside the model's folder"),
    ({"location": "/etc/hostname"}, "outside the model's folder"),
])
def test_bad_external_data_info(tmp_path, info, phrase):
    path = _external_model(tmp_path, **info)
    with pytest.raises(ModelError, match="tensor 'w'") as err:
        import_model(path)
    assert phrase in str(err.value)


def test_short_external_data_file(tmp_path):
    path = _external_model(tmp_path)
    data = tmp_path / "w.bin"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(ModelError, match="'w'"):
        import_model(path)
    (tmp_path / "ok").mkdir()
    assert import_model(_external_model(tmp_path / "ok")).layers  # the same model, its data whole, imports


def test_an_unloaded_external_tensor_in_memory_is_refused(tmp_path):
    path = _external_model(tmp_path)
    with pytest.raises(ModelError, match="external file that was not loaded"):
        import_model(onnx.load(str(path), load_external_data=False), source="m")


VALID = {
    "scalar clip bounds as one-value tensors": _model(
        [helper.make_node("Clip", ["x", "lo", "hi"], ["y"])],
        [_w("lo", (1,)) , numpy_helper.from_array(np.array(2.0, np.float32), "hi")]),
    "flatten axis at the rank": _model([helper.make_node("Flatten", ["x"], ["y"], axis=4)], []),
    "flatten axis negative": _model([helper.make_node("Flatten", ["x"], ["y"], axis=-4)], []),
    "pool pads one under the kernel": _model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2],
                                                               pads=[1, 1, 1, 1])], []),
    "conv with auto_pad and no pads": _conv(auto_pad="SAME_LOWER", strides=[2, 2]),
    "gemm bias broadcast over rows": _model([helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=1)],
                                            [_w("w", (4, 6)), _w("c", (1, 4))], [2, 6]),
    "output without a declared shape": _conv(),
    "stale value_info shape": _edit(
        _model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Relu", ["r"], ["y"])], []),
        lambda m: m.graph.value_info.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [9]))),
}


@pytest.mark.parametrize("case", sorted(VALID))
def test_valid_edge_cases_import_and_agree_with_onnxruntime(case):
    model = VALID[case]
    graph = import_model(model, source="m.onnx")
    shape = graph.shape(graph.inputs[0])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    ours = run_graph(graph, {graph.inputs[0]: x})[graph.outputs[0]]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    theirs = session.run(None, {"x": x})[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_an_arena_over_a_32_bit_size_t_is_refused():
    with pytest.raises(GraphError, match=f"{MAX_BYTES + 1} bytes.*'big'"):
        plan([Buffer("big", MAX_BYTES + 1, 0, 1)])
    assert plan([Buffer("fits", 1 << 20, 0, 1)]).size == 1 << 20


def _tensor(**fields: object) -> onnx.TensorProto:
    model = onnx.ModelProto(graph=onnx.GraphProto(initializer=[_w("t", (2, 3))]))
    _init_field(**fields)(model)
    return model.graph.initializer[0]


@pytest.mark.parametrize("tensor, phrase", [
    (_w("t", (2, 3)), None),
    (_w("t", (0, 3)), None),  # an empty constant is legal (a Reshape to a scalar uses one)
    (_tensor(dims=[2, 4]), "needs 32 bytes of data; it has 24"),
    (_tensor(data_type=TensorProto.INT64), "needs 48 bytes of data; it has 24"),
    (_tensor(dims=[2**30, 2**30]), "more than the 4294967295 a 32-bit board can address"),
    (_tensor(dims=[2, -3]), "each must be between 0 and 2147483647"),
    (_tensor(data_type=TensorProto.UNDEFINED), "element type UNDEFINED, which is not supported"),
    (_tensor(data_type=77), "unknown element type 77"),
    (_tensor(data_type=TensorProto.DOUBLE), "element type DOUBLE, which is not supported"),
    (_tensor(raw_data=b""), "needs 24 bytes of data; it has 0"),
    (_tensor(raw_data=None), "must keep its values in one field; it has none"),
    (_tensor(float_data=[1.0, 2.0]), "must keep its values in one field; it has ['float_data', 'raw_data']"),
    (_tensor(raw_data=None, float_data=[1.0, 2.0]), "needs 6 values in float_data; it has 2"),
])
def test_every_constant_is_checked_before_it_is_read(tensor, phrase):
    """tensor_array on its own: the checks hold where the ONNX checker cannot run (a model over 2 GiB)."""
    if phrase is None:
        assert validate.tensor_array(tensor, "m.onnx").shape == tuple(tensor.dims)
        return
    with pytest.raises(ModelError, match="m.onnx: tensor 't'") as info:
        validate.tensor_array(tensor, "m.onnx")
    assert phrase in str(info.value)


def test_a_dimension_over_the_c_int_is_refused_where_a_layer_makes_it():
    """A Pad of a constant to 2^31 rows is refused before anything is allocated for it."""
    pads = numpy_helper.from_array(np.array([0, 0, 2**31, 0], np.int64), "pads")
    model = _model([helper.make_node("Pad", ["c", "pads"], ["p"], name="pad0"),
                    helper.make_node("Add", ["x", "p"], ["y"])], [_w("c", (1, 1)), pads], [1, 1])
    with pytest.raises(ModelError, match="node 'pad0' \\(Pad\\)") as info:
        import_model(model, source="m.onnx")
    assert str(2**31 - 1) in str(info.value) or "checker" in str(info.value)


def test_a_name_that_is_not_utf8_is_refused(tmp_path):
    """A flipped byte in an op type: protobuf gives the field back as bytes; one message, no TypeError."""
    data = _conv().SerializeToString()
    path = tmp_path / "m.onnx"
    path.write_bytes(data.replace(b"Conv", b"C\xefnv", 1))
    with pytest.raises(ModelError, match="node 0 .* not UTF-8 text"):
        import_model(path)
