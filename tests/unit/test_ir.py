"""The IR graph (validate, topological order, prune) and codegen.shapes."""

from __future__ import annotations

import itertools

import numpy as np
import onnxruntime as ort
import pytest
from graphkit import GraphBuilder
from onnx import TensorProto, helper

from codegen import reference, shapes
from codegen.errors import GraphError
from codegen.ir import NO_ACTIVATION, DType, Graph, Layer, Tensor


def chain() -> Graph:
    b = GraphBuilder()
    x = b.input("x", (1, 2, 5, 5))
    y = b.act(x, "relu", name="first", out="y")
    b.act(y, "sigmoid", name="second", out="z")
    return b.output("z")


# -- validate ----------------------------------------------------------------------------------

def test_valid_graph_validates():
    g = chain()
    assert g.validate() is g


def test_reading_an_unknown_tensor_names_the_layer():
    g = chain()
    g.layers[1].inputs = ["nowhere"]
    with pytest.raises(GraphError, match=r"layer 'second' \(activation\) reads unknown tensor 'nowhere'"):
        g.validate()


def test_reading_before_computing_names_the_layer():
    g = chain()
    g.layers.reverse()
    with pytest.raises(GraphError, match=r"layer 'second' \(activation\) reads 'y' before it is computed"):
        g.validate()


def test_redefining_a_tensor_names_the_layer():
    g = chain()
    g.layers[1].outputs = ["y"]
    with pytest.raises(GraphError, match=r"layer 'second' \(activation\) redefines tensor 'y'"):
        g.validate()


def test_writing_an_input_names_the_layer():
    g = chain()
    g.layers[0].outputs = ["x"]
    with pytest.raises(GraphError, match=r"layer 'first'.*redefines tensor 'x'"):
        g.validate()


def test_output_without_shape_names_the_layer():
    g = chain()
    del g.tensors["z"]
    with pytest.raises(GraphError, match=r"layer 'second' \(activation\) has no shape for output 'z'"):
        g.validate()


def test_negative_dimension_names_the_layer():
    g = chain()
    g.tensors["y"].shape = (1, -1, 5, 5)
    with pytest.raises(GraphError, match=r"layer 'first' \(activation\) output 'y' has shape"):
        g.validate()


def test_duplicate_layer_names():
    g = chain()
    g.layers[1].name = "first"
    with pytest.raises(GraphError, match="two layers are named 'first'"):
        g.validate()


def test_output_never_computed():
    g = chain()
    g.outputs.append("ghost")
    g.tensors["ghost"] = Tensor("ghost", (1,))
    with pytest.raises(GraphError, match="graph output 'ghost' is never computed"):
        g.validate()


def test_input_without_description():
    g = chain()
    g.inputs.append("mystery")
    with pytest.raises(GraphError, match="graph input 'mystery'"):
        g.validate()


def test_absent_optional_input_is_fine():
    b = GraphBuilder()
    x = b.input("x", (1, 3, 4, 4))
    b.conv(x, 2, bias=False, out="y")
    g = b.output("y")
    assert g.layers[0].inputs[2] == ""
    assert g.layers[0].present_inputs() == ["x", "conv/w"]


# -- topological order -------------------------------------------------------------------------

def diamond() -> Graph:
    b = GraphBuilder()
    x = b.input("x", (2, 3))
    left = b.act(x, "relu", name="left")
    right = b.act(x, "sigmoid", name="right")
    b.binary("add", left, right, name="join", out="y")
    return b.output("y")


def test_topological_layers_sorts_shuffled_layers():
    g = diamond()
    names = [layer.name for layer in g.layers]
    for perm in itertools.permutations(g.layers):
        g.layers = list(perm)
        order = [layer.name for layer in g.topological_layers()]
        assert sorted(order) == sorted(names)
        assert order[-1] == "join"
        position = {n: i for i, n in enumerate(order)}
        for layer in g.layers:
            for name in layer.present_inputs():
                producer = g.producers().get(name)
                if producer is not None:
                    assert position[producer.name] < position[layer.name]
        g.layers = g.topological_layers()
        g.validate()


def test_topological_layers_keeps_the_given_order_of_independent_layers():
    g = diamond()
    assert [x.name for x in g.topological_layers()] == ["left", "right", "join"]
    g.layers = [g.layers[1], g.layers[0], g.layers[2]]
    assert [x.name for x in g.topological_layers()] == ["right", "left", "join"]


def test_topological_layers_finds_a_cycle():
    g = chain()
    g.layers[0].inputs = ["z"]  # first reads what second writes
    with pytest.raises(GraphError, match="cycle"):
        g.topological_layers()


# -- prune -----------------------------------------------------------------------------------

def test_prune_drops_dead_layers_and_their_constants():
    b = GraphBuilder()
    x = b.input("x", (1, 3, 6, 6))
    unused = b.input("unused", (4,))
    live = b.conv(x, 4, name="live")
    b.conv(x, 5, name="dead")  # nobody reads its output
    b.act(live, "relu", name="act", out="y")
    g = b.output("y")
    g.prune()
    assert [x.name for x in g.layers] == ["live", "act"]
    assert "dead/w" not in g.tensors and "dead/b" not in g.tensors and "dead:out" not in g.tensors
    assert "live/w" in g.tensors and "live/b" in g.tensors
    assert unused in g.tensors and g.inputs == ["x", "unused"]
    g.validate()


def test_prune_keeps_a_layer_any_of_whose_outputs_is_needed():
    g = chain()
    g.tensors["extra"] = Tensor("extra", (1, 2, 5, 5))
    g.layers[0].outputs.append("extra")
    g.prune()
    assert len(g.layers) == 2 and "extra" in g.tensors


def test_copy_is_independent():
    g = chain()
    c = g.copy()
    c.layers[0].inputs[0] = "other"
    c.layers[0].attrs["activation"] = NO_ACTIVATION
    c.tensors["x"].shape = (9,)
    c.outputs.append("y")
    assert g.layers[0].inputs == ["x"]
    assert g.layers[0].activation.kind == "relu"
    assert g.tensors["x"].shape == (1, 2, 5, 5)
    assert g.outputs == ["z"]


def test_unique_name():
    g = chain()
    assert g.unique_name("fresh") == "fresh"
    assert g.unique_name("y") == "y_1"
    g.tensors["y_1"] = Tensor("y_1", (1,))
    assert g.unique_name("y") == "y_2"
    assert g.unique_name("first") == "first_1"  # layer names are taken too


def test_tensor_sizes():
    t = Tensor("t", (2, 3, 4), DType.F32)
    assert t.size == 24 and t.nbytes == 96
    assert Tensor("s", ()).size == 1
    assert Tensor("h", (5,), DType.F16).nbytes == 10
    with pytest.raises(GraphError):
        DType.from_numpy(np.dtype(np.complex64))


# -- shapes.infer -------------------------------------------------------------------------------

def conv_out(size, k, s, pb, pe, d):
    """The textbook formula: floor((size + pads - effective kernel) / stride) + 1."""
    return (size + pb + pe - (d * (k - 1) + 1)) // s + 1


CONV_CASES = [
    # H, W, KH, KW, strides, pads (t, l, b, r), dilations
    (7, 7, 3, 3, (1, 1), (0, 0, 0, 0), (1, 1)),
    (7, 13, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1)),
    (13, 7, 3, 5, (2, 3), (0, 2, 1, 0), (1, 1)),
    (9, 9, 3, 3, (1, 1), (2, 2, 2, 2), (2, 2)),
    (1, 1, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1)),
    (3, 3, 5, 5, (1, 1), (2, 2, 2, 2), (1, 1)),
    (8, 11, 2, 4, (3, 2), (1, 0, 0, 3), (2, 3)),
    (224, 224, 7, 7, (2, 2), (3, 3, 3, 3), (1, 1)),
]


@pytest.mark.parametrize("h, w, kh, kw, strides, pads, dilations", CONV_CASES)
def test_conv_output_shape(h, w, kh, kw, strides, pads, dilations):
    b = GraphBuilder()
    x = b.input("x", (2, 4, h, w))
    wt = b.const("w", (6, 2, kh, kw))
    layer = Layer("c", "conv2d", [x, wt, ""], ["y"],
                  dict(strides=strides, pads=pads, dilations=dilations, group=2, activation=NO_ACTIVATION))
    (shape,) = shapes.infer(layer, b.graph)
    expected = (2, 6, conv_out(h, kh, strides[0], pads[0], pads[2], dilations[0]),
                conv_out(w, kw, strides[1], pads[1], pads[3], dilations[1]))
    assert shape == expected
    # The reference implementation computes its output size independently (sliding windows).
    xs = [np.zeros((2, 4, h, w), np.float32), np.zeros((6, 2, kh, kw), np.float32)]
    assert reference.evaluate_layer(layer, xs, [DType.F32])[0].shape == expected


def test_conv_channel_mismatch_names_the_layer():
    b = GraphBuilder()
    x = b.input("x", (1, 4, 5, 5))
    wt = b.const("w", (6, 3, 3, 3))
    layer = Layer("bad_conv", "conv2d", [x, wt, ""], ["y"],
                  dict(strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1, activation=NO_ACTIVATION))
    with pytest.raises(GraphError, match="layer 'bad_conv' .*input channels 4"):
        shapes.infer(layer, b.graph)


def ort_pool_shape(op, shape, kernel, strides, pads, ceil_mode, dilations=None):
    attrs = dict(kernel_shape=kernel, strides=strides, pads=pads, ceil_mode=int(ceil_mode))
    if dilations is not None:
        attrs["dilations"] = dilations
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    graph = helper.make_graph([node], "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": np.zeros(shape, np.float32)})[0].shape


POOL_CASES = [
    # H, W, kernel, strides, pads (t, l, b, r)
    (8, 8, (3, 3), (2, 2), (0, 0, 0, 0)),
    (7, 7, (2, 2), (2, 2), (0, 0, 0, 0)),
    (7, 8, (3, 3), (2, 2), (1, 1, 1, 1)),
    (6, 6, (3, 3), (2, 2), (1, 1, 1, 1)),  # ceil would start a window in the right padding only
    (5, 5, (2, 2), (3, 3), (1, 0, 1, 0)),
    (1, 1, (1, 1), (2, 2), (0, 0, 0, 0)),
    (13, 11, (3, 2), (3, 2), (0, 1, 2, 0)),
    (112, 112, (3, 3), (2, 2), (0, 0, 0, 0)),
]


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("h, w, kernel, strides, pads", POOL_CASES)
def test_pool_output_shape_matches_onnxruntime(op, ceil_mode, h, w, kernel, strides, pads):
    b = GraphBuilder()
    x = b.input("x", (1, 2, h, w))
    layer = Layer("p", "pool2d", [x], ["y"], dict(mode="max" if op == "MaxPool" else "avg", kernel=kernel,
                                                  strides=strides, pads=pads, dilations=(1, 1),
                                                  ceil_mode=ceil_mode, count_include_pad=False))
    (shape,) = shapes.infer(layer, b.graph)
    assert shape == ort_pool_shape(op, (1, 2, h, w), kernel, strides, pads, ceil_mode)


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_dilated_max_pool_shape_matches_onnxruntime(ceil_mode):
    b = GraphBuilder()
    x = b.input("x", (1, 1, 10, 9))
    layer = Layer("p", "pool2d", [x], ["y"], dict(mode="max", kernel=(3, 2), strides=(2, 2), pads=(1, 0, 0, 1),
                                                  dilations=(2, 3), ceil_mode=ceil_mode,
                                                  count_include_pad=False))
    (shape,) = shapes.infer(layer, b.graph)
    assert shape == ort_pool_shape("MaxPool", (1, 1, 10, 9), (3, 2), (2, 2), (1, 0, 0, 1), ceil_mode, (2, 3))


def test_pool_ceil_mode_adds_a_window_only_when_one_is_left_over():
    b = GraphBuilder()
    x = b.input("x", (1, 1, 8, 9))
    attrs = dict(mode="max", kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0), dilations=(1, 1),
                 count_include_pad=False)
    floor = shapes.infer(Layer("p", "pool2d", [x], ["y"], dict(attrs, ceil_mode=False)), b.graph)[0]
    ceil = shapes.infer(Layer("p", "pool2d", [x], ["y"], dict(attrs, ceil_mode=True)), b.graph)[0]
    assert floor == (1, 1, 4, 4)
    assert ceil == (1, 1, 4, 5)


MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (4, 5)),
    ((3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)),
    ((1, 3, 4), (7, 4, 1)),
    ((4,), (2, 4, 3)),
    ((2, 3, 4), (4,)),
    ((6, 1, 1, 2, 3), (1, 5, 1, 3, 2)),
]


@pytest.mark.parametrize("a, b", MATMUL_SHAPES)
def test_matmul_broadcasting_matches_numpy(a, b):
    g = GraphBuilder()
    layer = Layer("mm", "matmul", [g.input("a", a), g.input("b", b)], ["y"])
    assert shapes.infer(layer, g.graph) == [np.matmul(np.zeros(a), np.zeros(b)).shape]


@pytest.mark.parametrize("a, b", [((3, 4), (5, 6)), ((2, 3, 4), (3, 4, 5)), ((4,), (5,))])
def test_matmul_mismatch_names_the_layer(a, b):
    g = GraphBuilder()
    layer = Layer("mm_bad", "matmul", [g.input("a", a), g.input("b", b)], ["y"])
    with pytest.raises(GraphError, match="layer 'mm_bad'"):
        shapes.infer(layer, g.graph)


@pytest.mark.parametrize("axis, shapes_in, expected", [
    (0, [(1, 3), (4, 3)], (5, 3)),
    (1, [(2, 3, 4), (2, 1, 4), (2, 5, 4)], (2, 9, 4)),
    (3, [(1, 2, 3, 4), (1, 2, 3, 1)], (1, 2, 3, 5)),
])
def test_concat_shape(axis, shapes_in, expected):
    g = GraphBuilder()
    names = [g.input(f"x{i}", s) for i, s in enumerate(shapes_in)]
    assert shapes.infer(Layer("cat", "concat", names, ["y"], {"axis": axis}), g.graph) == [expected]


@pytest.mark.parametrize("axis, shapes_in", [
    (1, [(2, 3, 4), (2, 3, 5)]),  # differs off the axis
    (0, [(2, 3), (2, 3, 1)]),  # different rank
])
def test_concat_mismatch_names_the_layer(axis, shapes_in):
    g = GraphBuilder()
    names = [g.input(f"x{i}", s) for i, s in enumerate(shapes_in)]
    with pytest.raises(GraphError, match=r"layer 'my_concat' \(concat\)"):
        shapes.infer(Layer("my_concat", "concat", names, ["y"], {"axis": axis}), g.graph)


def test_binary_that_does_not_broadcast_names_the_layer():
    g = GraphBuilder()
    layer = Layer("adder", "binary", [g.input("a", (2, 3)), g.input("b", (4, 3))], ["y"],
                  {"op": "add", "activation": NO_ACTIVATION})
    with pytest.raises(GraphError, match=r"layer 'adder' \(binary\).*do not broadcast"):
        shapes.infer(layer, g.graph)


def test_reshape_to_a_different_size_names_the_layer():
    g = GraphBuilder()
    with pytest.raises(GraphError, match=r"layer 'rs' \(reshape\)"):
        shapes.infer(Layer("rs", "reshape", [g.input("x", (2, 3))], ["y"], {"shape": (4, 2)}), g.graph)


def test_unknown_kind_names_the_layer():
    g = GraphBuilder()
    with pytest.raises(GraphError, match="layer 'odd': unknown layer kind 'frobnicate'"):
        shapes.infer(Layer("odd", "frobnicate", [g.input("x", (2,))], ["y"]), g.graph)


@pytest.mark.parametrize("x, axes, keepdims, expected", [
    ((2, 3, 4, 5), (2, 3), True, (2, 3, 1, 1)),
    ((2, 3, 4, 5), (2, 3), False, (2, 3)),
    ((2, 3, 4), (0, 2), True, (1, 3, 1)),
    ((7,), (0,), False, ()),
])
def test_reduce_shape(x, axes, keepdims, expected):
    g = GraphBuilder()
    layer = Layer("r", "reduce", [g.input("x", x)], ["y"], {"op": "mean", "axes": axes, "keepdims": keepdims})
    assert shapes.infer(layer, g.graph) == [expected]
    assert np.zeros(x).mean(axis=axes, keepdims=keepdims).shape == expected


def test_pad_and_transpose_shapes():
    g = GraphBuilder()
    x = g.input("x", (2, 3, 4))
    pad = Layer("p", "pad", [x], ["y"], {"pads": (0, 1, 2, 3, 0, 1), "mode": "constant", "value": 0.0})
    assert shapes.infer(pad, g.graph) == [(5, 4, 7)]
    tr = Layer("t", "transpose", [x], ["y"], {"perm": (2, 0, 1)})
    assert shapes.infer(tr, g.graph) == [(4, 2, 3)]


def test_macs():
    b = GraphBuilder()
    x = b.input("x", (1, 4, 8, 8))
    y = b.conv(x, 6, k=3, group=2, name="c")  # 6 outputs x 64 positions x (2 x 3 x 3)
    f = b.layer("reshape", [y], shape=(1, 384))
    b.dense(f, 10, name="d", out="z")
    g = b.output("z")
    macs = g.macs()
    assert macs["c"] == 6 * 64 * 2 * 9
    assert macs["d"] == 10 * 384

