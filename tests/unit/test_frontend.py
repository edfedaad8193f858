"""The ONNX frontend on tiny models built with onnx.helper, checked against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from codegen import passes, reference
from codegen.errors import ModelError, UnsupportedOpsError
from codegen.frontends.onnx import import_model
from codegen.ir import Graph


def make_model(nodes: list[onnx.NodeProto], inputs: dict[str, tuple], outputs: list[str],
               inits: dict[str, np.ndarray] | None = None, opset: int = 13,
               extra_opsets: tuple[tuple[str, int], ...] = ()) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in (inits or {}).items()],
    )
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in extra_opsets]
    ir_version = helper.find_min_ir_version_for(opsets[:1])
    return helper.make_model(graph, opset_imports=opsets, ir_version=max(ir_version, 7))


def feeds_for(model: onnx.ModelProto, input_shapes: dict[str, tuple] | None = None, seed: int = 0,
              scale: float = 1.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in model.graph.input:
        if input_shapes and value.name in input_shapes:
            shape = input_shapes[value.name]
        else:
            shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        feeds[value.name] = (scale * rng.standard_normal(shape)).astype(np.float32)
    return feeds


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in model.graph.output]
    return dict(zip(names, sess.run(names, feeds), strict=True))


def check(model: onnx.ModelProto, input_shapes: dict[str, tuple] | None = None, scale: float = 1.0,
          tol: float = 1e-5) -> Graph:
    """Import `model`; its reference outputs (raw and simplified) equal onnxruntime's. Returns the raw graph."""
    graph = import_model(model, input_shapes=input_shapes)
    assert graph.outputs == [o.name for o in model.graph.output]
    feeds = feeds_for(model, input_shapes, scale=scale)
    want = run_ort(model, feeds)
    for g in (graph, passes.simplify(graph)):
        got = reference.run(g, feeds)
        for name, value in want.items():
            assert got[name].shape == value.shape, name
            bound = tol * max(1.0, float(np.abs(value).max(initial=0.0)))
            np.testing.assert_allclose(got[name], value, rtol=0, atol=bound, err_msg=name)
    return graph


def kinds(graph: Graph) -> list[str]:
    return [layer.kind for layer in graph.layers]


def rand(*shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# -- unsupported operators ------------------------------------------------------------------------

def test_every_unsupported_op_is_listed_with_its_nodes():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Acos", ["a"], ["b"], name="acos_1"),
        helper.make_node("Elu", ["b"], ["c"]),  # no name: known by its type and output
        helper.make_node("Acos", ["c"], ["d"], name="acos_2"),
        helper.make_node("Frob", ["d"], ["y"], name="frob", domain="com.example"),
    ]
    model = make_model(nodes, {"x": (1, 4)}, ["y"], extra_opsets=(("com.example", 1),))
    with pytest.raises(UnsupportedOpsError) as info:
        import_model(model)
    err = info.value
    assert isinstance(err, ModelError)
    assert err.unsupported == {"Acos": ["acos_1", "acos_2"], "Elu": ["Elu_c"], "com.example.Frob": ["frob"]}
    message = str(err)
    assert "3 unsupported operator type(s)" in message
    for text in ("Acos", "'acos_1'", "'acos_2'", "Elu", "'Elu_c'", "com.example.Frob", "'frob'"):
        assert text in message
    assert "Relu" not in message


def test_many_nodes_of_one_unsupported_op_are_summarised():
    nodes = [helper.make_node("Acos", [f"t{i}"], [f"t{i + 1}"], name=f"acos{i}") for i in range(5)]
    model = make_model(nodes, {"t0": (3,)}, ["t5"])
    with pytest.raises(UnsupportedOpsError, match=r"Acos: node 'acos0', 'acos1', 'acos2' and 2 more") as info:
        import_model(model)
    assert info.value.unsupported["Acos"] == [f"acos{i}" for i in range(5)]


# -- shape computations ---------------------------------------------------------------------------

@pytest.mark.parametrize("opset", [11, 13])
def test_shape_gather_unsqueeze_concat_reshape_folds_to_one_reshape(opset):
    unsqueeze = (helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]) if opset < 13
                 else helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]))
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "idx"], ["n"], axis=0),
        unsqueeze,
        helper.make_node("Concat", ["n1", "minus_one"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Relu", ["r"], ["y"]),
    ]
    inits = {"idx": np.array(0, np.int64), "minus_one": np.array([-1], np.int64)}
    if opset >= 13:
        inits["axes0"] = np.array([0], np.int64)
    model = make_model(nodes, {"x": (2, 3, 4, 5)}, ["y"], inits, opset=opset)
    graph = check(model)
    assert kinds(graph) == ["reshape", "activation"]
    assert tuple(graph.layers[0].attrs["shape"]) == (2, 60)
    assert graph.shape("y") == (2, 60)
    assert not any(t.dtype.value == "i64" for t in graph.tensors.values())


# -- Gemm ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("c_shape", [None, (5,), (1, 5), (3, 5), (), (3, 1)], ids=str)
@pytest.mark.parametrize("alpha, beta", [(1.0, 1.0), (0.5, 2.0)])
@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("trans_a", [0, 1])
def test_gemm(trans_a, trans_b, alpha, beta, c_shape):
    n, k, m = 3, 4, 5
    inits = {"B": rand(*((m, k) if trans_b else (k, m)), seed=2)}
    ins = ["A", "B"]
    if c_shape is not None:
        inits["C"] = rand(*c_shape, seed=3)
        ins.append("C")
    node = helper.make_node("Gemm", ins, ["y"], transA=trans_a, transB=trans_b, alpha=alpha, beta=beta)
    model = make_model([node], {"A": (k, n) if trans_a else (n, k)}, ["y"], inits)
    graph = check(model)
    assert "dense" in kinds(graph)
    assert kinds(graph).count("transpose") == trans_a


# -- opset-dependent forms -------------------------------------------------------------------------

CLIP_BOUNDS = [(0.0, 6.0), (-0.5, None), (None, 0.25), (None, None), (0.0, None)]


@pytest.mark.parametrize("lo, hi", CLIP_BOUNDS, ids=str)
@pytest.mark.parametrize("opset", [9, 10, 11, 12, 13])
def test_clip(opset, lo, hi):
    inits = {}
    if opset < 11:
        attrs = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
        node = helper.make_node("Clip", ["x"], ["y"], **attrs)
    else:
        ins = ["x", "", ""]
        if lo is not None:
            inits["lo"], ins[1] = np.array(lo, np.float32), "lo"
        if hi is not None:
            inits["hi"], ins[2] = np.array(hi, np.float32), "hi"
        while ins[-1] == "":
            ins.pop()
        node = helper.make_node("Clip", ins, ["y"])
    model = make_model([node], {"x": (2, 3, 4)}, ["y"], inits, opset=opset)
    graph = check(model, scale=4.0)
    assert kinds(graph) == ["activation"]
    act = graph.layers[0].activation
    if (lo, hi) == (0.0, None):
        assert act.kind == "relu"
    else:
        assert act.kind == "clip"
        assert act.alpha == (-np.inf if lo is None else lo)
        assert act.beta == (np.inf if hi is None else hi)


@pytest.mark.parametrize("axes", [[0], [2], [-1], [0, 2], None], ids=str)
@pytest.mark.parametrize("opset", [11, 12, 13])
def test_squeeze(opset, axes):
    inits = {}
    if axes is None:
        node = helper.make_node("Squeeze", ["x"], ["y"])
    elif opset < 13:
        node = helper.make_node("Squeeze", ["x"], ["y"], axes=axes)
    else:
        inits["axes"] = np.array(axes, np.int64)
        node = helper.make_node("Squeeze", ["x", "axes"], ["y"])
    model = make_model([node, helper.make_node("Relu", ["y"], ["z"])], {"x": (1, 3, 1, 1)}, ["z"], inits,
                       opset=opset)
    graph = check(model)
    assert kinds(graph) == ["reshape", "activation"]
    expected = np.squeeze(np.zeros((1, 3, 1, 1)), axis=None if axes is None else tuple(axes)).shape
    assert graph.shape("z") == expected


@pytest.mark.parametrize("axes", [[0], [3], [-1], [1, 3], [0, -1]], ids=str)
@pytest.mark.parametrize("opset", [11, 13])
def test_unsqueeze(opset, axes):
    inits = {}
    if opset < 13:
        node = helper.make_node("Unsqueeze", ["x"], ["y"], axes=axes)
    else:
        inits["axes"] = np.array(axes, np.int64)
        node = helper.make_node("Unsqueeze", ["x", "axes"], ["y"])
    model = make_model([node, helper.make_node("Sigmoid", ["y"], ["z"])], {"x": (2, 3, 4)}, ["z"], inits,
                       opset=opset)
    graph = check(model)
    assert kinds(graph) == ["reshape", "activation"]
    assert len(graph.shape("z")) == 3 + len(axes)


@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("axes", [[2, 3], [1], [-1, 0], None], ids=str)
@pytest.mark.parametrize("opset", [13, 18])
def test_reduce_mean(opset, axes, keepdims):
    inits = {}
    if axes is None:
        node = helper.make_node("ReduceMean", ["x"], ["y"], keepdims=keepdims)
    elif opset < 18:
        node = helper.make_node("ReduceMean", ["x"], ["y"], axes=axes, keepdims=keepdims)
    else:
        inits["axes"] = np.array(axes, np.int64)
        node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=keepdims)
    model = make_model([node], {"x": (2, 3, 4, 5)}, ["y"], inits, opset=opset)
    graph = check(model)
    assert kinds(graph) == ["reduce"]
    simple = passes.simplify(graph)
    expect_pool = axes == [2, 3] and keepdims
    assert kinds(simple) == ["global_avgpool" if expect_pool else "reduce"]


def test_reduce_mean_noop_with_empty_axes():
    node = helper.make_node("ReduceMean", ["x"], ["y"], noop_with_empty_axes=1)
    model = make_model([node, helper.make_node("Relu", ["y"], ["z"])], {"x": (2, 3)}, ["z"], opset=18)
    graph = check(model)
    assert kinds(graph) == ["activation"]


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, None], ids=str)
@pytest.mark.parametrize("opset", [11, 13])
def test_softmax_axis_semantics(opset, axis):
    # Before opset 13 Softmax flattens the input to 2-D at `axis` (default 1); from 13 it works on one axis
    # (default -1). onnxruntime implements both; the imported graph must match it either way.
    attrs = {} if axis is None else {"axis": axis}
    model = make_model([helper.make_node("Softmax", ["x"], ["y"], **attrs)], {"x": (2, 3, 4)}, ["y"],
                       opset=opset)
    graph = check(model, scale=3.0)
    assert graph.shape("y") == (2, 3, 4)
    assert "softmax" in kinds(graph)


def test_softmax_semantics_really_differ_between_opsets():
    x = {"x": (2, 3, 4)}
    old = make_model([helper.make_node("Softmax", ["x"], ["y"], axis=1)], x, ["y"], opset=11)
    new = make_model([helper.make_node("Softmax", ["x"], ["y"], axis=1)], x, ["y"], opset=13)
    feeds = feeds_for(old)
    a = reference.run(import_model(old), feeds)["y"]
    b = reference.run(import_model(new), feeds)["y"]
    np.testing.assert_allclose(a.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(b.sum(axis=1), 1.0, rtol=1e-5)


# -- input shapes ----------------------------------------------------------------------------------

def dynamic_model() -> onnx.ModelProto:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    return make_model(nodes, {"x": ("batch", 3, 5, 5)}, ["y"], {"w": rand(4, 3, 3, 3)})


def test_free_batch_dimension_compiles_as_one():
    graph = check(dynamic_model())
    assert graph.shape("x") == (1, 3, 5, 5)


def test_free_spatial_dimension_needs_input_shape():
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    model = make_model(nodes, {"x": ("batch", 3, "height", 5)}, ["y"])
    with pytest.raises(ModelError, match="--input-shape") as info:
        import_model(model)
    message = str(info.value)
    assert "'x'" in message and "axis 2 ('height')" in message and "x=1,3,N,5" in message
    assert "axis 0" not in message  # the batch size is settled


def test_dynamic_dimension_with_input_shape():
    graph = check(dynamic_model(), input_shapes={"x": (2, 3, 5, 5)})
    assert graph.shape("x") == (2, 3, 5, 5)
    assert graph.shape("y") == (2, 4, 5, 5)


def test_input_shape_for_an_unknown_input():
    with pytest.raises(ModelError, match="--input-shape names"):
        import_model(dynamic_model(), input_shapes={"x": (1, 3, 5, 5), "nope": (1,)})


def test_unsupported_opset():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": (2,)}, ["y"], opset=7)
    with pytest.raises(ModelError, match="opset 7 is not supported"):
        import_model(model)


# -- layers that compute nothing -------------------------------------------------------------------

@pytest.mark.parametrize("opset", [9, 13])
def test_dropout_and_identity_disappear(opset):
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Identity", ["a"], ["b"]),
        helper.make_node("Dropout", ["b"], ["c"]),
        helper.make_node("Identity", ["c"], ["d"]),
        helper.make_node("Sigmoid", ["d"], ["y"]),
    ]
    model = make_model(nodes, {"x": (2, 5)}, ["y"], opset=opset)
    graph = check(model)
    assert kinds(graph) == ["activation", "activation"]
    assert graph.layers[1].inputs == graph.layers[0].outputs


def test_identity_to_an_output_still_writes_the_output():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Identity", ["a"], ["y"])]
    graph = check(make_model(nodes, {"x": (2, 5)}, ["y"]))
    assert graph.outputs == ["y"]
    assert graph.producers()["y"] is not None


def test_input_passed_straight_to_output_gets_a_copy():
    model = make_model([helper.make_node("Identity", ["x"], ["y"])], {"x": (3,)}, ["y"])
    graph = check(model)
    assert kinds(graph) == ["copy"]


# -- a small network end to end --------------------------------------------------------------------

def test_conv_batchnorm_relu_pool_gemm_softmax():
    c = 4
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["n"], epsilon=1e-3),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        helper.make_node("GlobalAveragePool", ["p"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    inits = {"w": rand(c, 3, 3, 3), "b": rand(c), "gamma": rand(c, seed=4), "beta": rand(c, seed=5),
             "mean": rand(c, seed=6), "var": np.abs(rand(c, seed=7)) + 0.5, "fc_w": rand(6, c), "fc_b": rand(6)}
    model = make_model(nodes, {"x": (2, 3, 9, 9)}, ["logits", "probs"], inits)
    graph = check(model)
    assert kinds(passes.simplify(graph)) == ["conv2d", "pool2d", "global_avgpool", "reshape", "dense", "softmax"]


# -- the reference semantics of more operators, against onnxruntime ----------------------------------

POOL_WINDOWS = [
    ((1, 2, 8, 8), [3, 3], [2, 2], [1, 1, 1, 1]),
    ((1, 2, 7, 6), [2, 2], [2, 2], [0, 0, 0, 0]),
    ((2, 1, 7, 9), [3, 2], [2, 3], [1, 0, 0, 1]),
    ((1, 1, 1, 1), [1, 1], [1, 1], [0, 0, 0, 0]),
    ((1, 3, 5, 5), [5, 5], [1, 1], [2, 2, 2, 2]),
]
def pool_params():
    for op in ("MaxPool", "AveragePool"):
        for window in POOL_WINDOWS:
            for ceil_mode in (0, 1):
                for count_include_pad in ((0, 1) if op == "AveragePool" else (None,)):
                    yield pytest.param(op, *window, ceil_mode, count_include_pad,
                                       id=f"{op}-{window}-ceil{ceil_mode}-cip{count_include_pad}")


@pytest.mark.parametrize("op, shape, kernel, strides, pads, ceil_mode, count_include_pad", list(pool_params()))
def test_pooling(op, shape, kernel, strides, pads, ceil_mode, count_include_pad):
    attrs = dict(kernel_shape=kernel, strides=strides, pads=pads, ceil_mode=ceil_mode)
    if count_include_pad is not None:
        attrs["count_include_pad"] = count_include_pad
    model = make_model([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": shape}, ["y"], opset=13)
    assert kinds(check(model)) == ["pool2d"]


def test_dilated_max_pool():
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 1], dilations=[2, 3],
                            pads=[1, 0, 1, 1])
    check(make_model([node], {"x": (1, 2, 9, 8)}, ["y"], opset=13))


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("strides", [[1, 1], [2, 2], [2, 1]], ids=str)
def test_conv_auto_pad(auto_pad, strides):
    node = helper.make_node("Conv", ["x", "w"], ["y"], auto_pad=auto_pad, strides=strides)
    model = make_model([node], {"x": (1, 2, 7, 8)}, ["y"], {"w": rand(3, 2, 4, 3)})
    check(model)


@pytest.mark.parametrize("group, dilations", [(1, [2, 2]), (2, [1, 1]), (4, [1, 2])], ids=str)
def test_grouped_dilated_conv(group, dilations):
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], group=group, dilations=dilations, pads=[1, 2, 0, 1],
                            strides=[1, 2])
    model = make_model([node], {"x": (2, 4, 9, 9)}, ["y"], {"w": rand(8, 4 // group, 3, 3), "b": rand(8)})
    check(model)


@pytest.mark.parametrize("size", [1, 3, 5])  # onnxruntime accepts odd sizes only
def test_lrn(size):
    node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=1e-2, beta=0.75, bias=2.0)
    check(make_model([node], {"x": (1, 6, 3, 3)}, ["y"]))


@pytest.mark.parametrize("op, attrs", [
    ("Relu", {}), ("Sigmoid", {}), ("LeakyRelu", {}), ("LeakyRelu", {"alpha": 0.3}),
    ("HardSigmoid", {}), ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}), ("HardSwish", {}),
], ids=str)
def test_activations(op, attrs):
    check(make_model([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": (3, 7)}, ["y"], opset=14), scale=5.0)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("opset", [9, 13])
def test_pad(opset, mode):
    pads = [0, 1, 2, 0, 2, 1]
    if opset < 11:
        node = helper.make_node("Pad", ["x"], ["y"], mode=mode, pads=pads, value=1.5)
        inits = {}
    else:
        ins = ["x", "pads"] + (["value"] if mode == "constant" else [])
        node = helper.make_node("Pad", ins, ["y"], mode=mode)
        inits = {"pads": np.array(pads, np.int64), "value": np.array(1.5, np.float32)}
    graph = check(make_model([node], {"x": (2, 3, 4)}, ["y"], inits, opset=opset))
    assert kinds(graph) == ["pad"]


@pytest.mark.parametrize("a_shape, b_shape, b_const", [
    ((2, 3, 4), (4, 5), True),
    ((3, 4), (4, 5), True),
    ((4,), (4, 5), True),
    ((2, 3, 4), (2, 4, 5), False),
    ((2, 1, 3, 4), (5, 4, 2), False),
    ((3, 4), (4,), False),
], ids=str)
def test_matmul(a_shape, b_shape, b_const):
    inputs = {"a": a_shape}
    inits = {}
    if b_const:
        inits["b"] = rand(*b_shape)
    else:
        inputs["b"] = b_shape
    graph = check(make_model([helper.make_node("MatMul", ["a", "b"], ["y"])], inputs, ["y"], inits))
    assert graph.shape("y") == np.matmul(np.zeros(a_shape), np.zeros(b_shape)).shape


@pytest.mark.parametrize("perm", [None, [0, 2, 1], [2, 0, 1]], ids=str)
def test_transpose(perm):
    attrs = {} if perm is None else {"perm": perm}
    check(make_model([helper.make_node("Transpose", ["x"], ["y"], **attrs)], {"x": (2, 3, 4)}, ["y"]))


def test_sum_concat_and_binary_broadcasting():
    nodes = [
        helper.make_node("Sum", ["a", "b", "c"], ["s"]),
        helper.make_node("Sub", ["s", "k"], ["d"]),
        helper.make_node("Div", ["d", "two"], ["e"]),
        helper.make_node("Concat", ["e", "a"], ["y"], axis=-1),
    ]
    model = make_model(nodes, {"a": (2, 3, 4), "b": (3, 1), "c": (4,)}, ["y"],
                       {"k": rand(2, 1, 1), "two": np.array(2.0, np.float32)})
    check(model)


@pytest.mark.parametrize("target, allowzero", [([0, -1], 0), ([-1, 4], 0), ([2, 0, 4], 0), ([6, 4], 1)], ids=str)
def test_reshape_special_values(target, allowzero):
    attrs = {"allowzero": allowzero} if allowzero else {}
    node = helper.make_node("Reshape", ["x", "shape"], ["r"], **attrs)
    model = make_model([node, helper.make_node("Relu", ["r"], ["y"])], {"x": (2, 3, 4)}, ["y"],
                       {"shape": np.array(target, np.int64)}, opset=14)
    check(model)  # shapes and values equal onnxruntime's


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_flatten(axis):
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=axis), helper.make_node("Relu", ["f"], ["y"])]
    check(make_model(nodes, {"x": (2, 3, 4)}, ["y"]))


def test_pad_with_axes_input():
    node = helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"], mode="edge")
    model = make_model([node], {"x": (2, 3, 4)}, ["y"],
                       {"pads": np.array([1, 0, 2, 3], np.int64), "axes": np.array([1, -1], np.int64)}, opset=18)
    graph = check(model)
    assert graph.shape("y") == (2, 6, 7)


def test_shape_with_start_and_constant_nodes():
    nodes = [
        helper.make_node("Shape", ["x"], ["hw"], start=2),
        helper.make_node("Constant", [], ["lead"], value=numpy_helper.from_array(np.array([2, 3], np.int64))),
        helper.make_node("Concat", ["lead", "hw"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Constant", [], ["half"], value_float=0.5),
        helper.make_node("Mul", ["r", "half"], ["y"]),
    ]
    graph = check(make_model(nodes, {"x": (2, 3, 4, 5)}, ["y"], opset=15))
    assert kinds(graph) == ["binary"]


def test_initializers_listed_as_inputs_are_constants():
    nodes = [helper.make_node("Add", ["x", "bias"], ["y"])]
    graph = helper.make_graph(
        nodes, "old",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("bias", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(rand(3), "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=3)
    imported = import_model(model)
    assert imported.inputs == ["x"]
    assert imported.is_constant("bias")
    x = rand(2, 3, seed=9)
    np.testing.assert_allclose(reference.run(imported, {"x": x})["y"], x + numpy_helper.to_array(
        model.graph.initializer[0]), rtol=1e-6)


@pytest.mark.parametrize("op, attrs", [
    ("Conv", dict(pads=[1, 2], strides=[2], dilations=[2])),
    ("Conv", dict(auto_pad="SAME_UPPER")),
    ("MaxPool", dict(kernel_shape=[3], strides=[2], pads=[1, 1], ceil_mode=1)),
    ("AveragePool", dict(kernel_shape=[2], strides=[2])),
], ids=str)
def test_one_dimensional_spatial_ops(op, attrs):
    inits = {}
    ins = ["x"]
    if op == "Conv":
        inits = {"w": rand(4, 3, 3), "b": rand(4)}
        ins = ["x", "w", "b"]
    model = make_model([helper.make_node(op, ins, ["y"], **attrs)], {"x": (2, 3, 11)}, ["y"], inits)
    check(model)


# -- graph outputs that alias other tensors --------------------------------------------------------

RELU_A = helper.make_node("Relu", ["x"], ["a"])


@pytest.mark.parametrize("nodes, outputs", [
    pytest.param([RELU_A, helper.make_node("Identity", ["a"], ["y1"])], ["a", "y1"], id="tensor_then_alias"),
    pytest.param([helper.make_node("Identity", ["x"], ["y1"]), helper.make_node("Identity", ["x"], ["y2"])],
                 ["y1", "y2"], id="two_aliases_of_an_input"),
    pytest.param([RELU_A, helper.make_node("Identity", ["a"], ["y1"]), helper.make_node("Sigmoid", ["a"], ["z"])],
                 ["y1", "z"], id="alias_also_read_inside"),
    pytest.param([RELU_A, helper.make_node("Identity", ["a"], ["y1"])], ["y1", "a"], id="alias_then_tensor"),
    pytest.param([RELU_A, helper.make_node("Identity", ["a"], ["y1"]), helper.make_node("Identity", ["a"], ["y2"])],
                 ["y1", "y2"], id="two_aliases_of_a_layer_output"),
    pytest.param([RELU_A, helper.make_node("Identity", ["a"], ["y1"]), helper.make_node("Sigmoid", ["y1"], ["z"])],
                 ["z", "y1", "a"], id="alias_read_inside_and_tensor"),
])
def test_outputs_that_alias_each_other(nodes, outputs):
    graph = check(make_model(nodes, {"x": (2, 3)}, outputs))
    producers = graph.producers()
    assert all(name in producers for name in graph.outputs)  # every output buffer is written by a layer
    assert len(set(graph.outputs)) == len(outputs)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pool_auto_pad(op, auto_pad):
    node = helper.make_node(op, ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 2], auto_pad=auto_pad)
    check(make_model([node], {"x": (1, 2, 7, 8)}, ["y"]))


def test_average_pool_with_dilations_at_opset_19():
    node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], dilations=[2, 2], pads=[1, 1, 0, 0],
                            count_include_pad=1)
    check(make_model([node], {"x": (1, 2, 6, 6)}, ["y"], opset=19))


def test_concat_skips_empty_inputs():
    nodes = [helper.make_node("Concat", ["x", "empty", "x"], ["y"], axis=1)]
    graph = check(make_model(nodes, {"x": (2, 3)}, ["y"], {"empty": np.zeros((2, 0), np.float32)}))
    assert graph.shape("y") == (2, 6)


def test_dropout_with_ratio_and_inference_mode_inputs():
    nodes = [helper.make_node("Dropout", ["x", "ratio", "training"], ["d"]), helper.make_node("Relu", ["d"], ["y"])]
    inits = {"ratio": np.array(0.3, np.float32), "training": np.array(False)}
    graph = check(make_model(nodes, {"x": (2, 3)}, ["y"], inits, opset=13))
    assert kinds(graph) == ["activation"]
