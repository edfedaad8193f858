"""passes.transpose: Transpose layers sink below layout-free layers until inverse pairs cancel, NHWC graph
inputs and outputs become NCHW tensors stored NHWC (the same bytes). Each rewrite is checked against
onnxruntime on the ONNX model (tf2onnx's NHWC islands between transposed convolutions), fed the same bytes;
with the cases where a transpose must stay, and one model compiled and run end to end."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from graphkit import GraphBuilder, assert_same_outputs, kinds, random_inputs
from onnx import TensorProto, helper, numpy_helper

import codegen
from codegen import passes, reference
from codegen.frontends.onnx import import_model
from codegen.ir import Graph, Layout, memory_shape
from codegen.passes.transpose import count_transposes, sink_transposes, transposes_to_reshapes

sys.path.insert(0, str(Path(__file__).parents[1]))
from support import onnxruntime_outputs, relative_error  # noqa: E402

TO_NCHW = [0, 3, 1, 2]
TO_NHWC = [0, 2, 3, 1]

# -- ONNX models as tf2onnx writes them -----------------------------------------------------------------

def const(name: str, value) -> onnx.TensorProto:
    value = np.asarray(value)
    return numpy_helper.from_array(value if value.dtype == np.int64 else value.astype(np.float32), name)


def node(op: str, ins: list[str], out: str, **attrs) -> onnx.NodeProto:
    return helper.make_node(op, ins, [out], **attrs)


def make_model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], inputs: dict[str, tuple[int, ...]],
               outputs: list[str], opset: int = 13) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info(k, TensorProto.FLOAT, v)
                                           for k, v in inputs.items()],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def weights(seed: int, *specs: tuple[str, tuple[int, ...]]) -> list[onnx.TensorProto]:
    rng = np.random.default_rng(seed)
    return [const(name, rng.standard_normal(shape)) for name, shape in specs]


def mobile_block(h: int = 6, w: int = 6, c: int = 4, m: int = 8, act: str = "Relu",
                 opset: int = 13) -> onnx.ModelProto:
    """NHWC x -> Mul/Add scalars -> T -> Conv -> T -> Add(per-channel) -> act -> hard-swish -> Pad(NHWC) -> T ->
    depthwise Conv -> T -> squeeze-excite (ReduceMean keepdims 1) -> Concat(axis 3) -> Softmax(axis 3) -> y,
    and a ReduceMean(axes 1, 2, keepdims 0) -> pooled."""
    inits = [const("scale", 2.0), const("shift", -0.5), const("three", 3.0), const("zero", 0.0),
             const("six", 6.0), const("sixth", 1 / 6), const("pads", np.array([0, 1, 1, 0, 0, 1, 1, 0], np.int64)),
             *weights(3, ("w1", (m, c, 3, 3)), ("b1", (m,)), ("bias", (m,)), ("w2", (m, 1, 3, 3)), ("b2", (m,)))]
    activation = [node("Relu", ["a1"], "r1")] if act == "Relu" else [node("Clip", ["a1", "zero", "six"], "r1")]
    axes_in: list[str] = []
    axes_attr: dict = {"axes": [1, 2]}
    if opset >= 18:  # ReduceMean's axes became an input
        inits.append(const("axes", np.array([1, 2], np.int64)))
        axes_in, axes_attr = ["axes"], {}
    nodes = [
        node("Mul", ["x", "scale"], "x1"), node("Add", ["x1", "shift"], "x2"),
        node("Transpose", ["x2"], "t1", perm=TO_NCHW), node("Conv", ["t1", "w1", "b1"], "c1", pads=[1, 1, 1, 1]),
        node("Transpose", ["c1"], "n1", perm=TO_NHWC), node("Add", ["n1", "bias"], "a1"), *activation,
        node("Add", ["r1", "three"], "h1"), node("Clip", ["h1", "zero", "six"], "h2"),
        node("Mul", ["h2", "sixth"], "h3"), node("Mul", ["r1", "h3"], "hs"),
        node("Pad", ["hs", "pads"], "p"),
        node("Transpose", ["p"], "t2", perm=TO_NCHW), node("Conv", ["t2", "w2", "b2"], "c2", group=m),
        node("Transpose", ["c2"], "n2", perm=TO_NHWC),
        node("ReduceMean", ["n2", *axes_in], "se", keepdims=1, **axes_attr), node("Sigmoid", ["se"], "sg"),
        node("Mul", ["n2", "sg"], "sx"),
        node("ReduceMean", ["sx", *axes_in], "pooled", keepdims=0, **axes_attr),
        node("Relu", ["n2"], "rn"), node("Concat", ["sx", "rn"], "cat", axis=3),
        node("Softmax", ["cat"], "y", axis=3),
    ]
    return make_model(nodes, inits, {"x": (1, h, w, c)}, ["y", "pooled"], opset)


# -- checks -----------------------------------------------------------------------------------------------

def feeds_for(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal([d.dim_value for d in v.type.tensor_type.shape.dim]).astype(np.float32)
            for v in model.graph.input}


def reference_outputs(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """codegen.reference on `graph` fed the API's bytes: an input stored NHWC is logically its NCHW transpose;
    the outputs come back as their buffers hold them."""
    logical = {}
    for name in graph.inputs:
        tensor = graph.tensor(name)
        assert memory_shape(tensor) == feeds[name].shape, name  # the API shape is unchanged
        nhwc = tensor.layout is Layout.NHWC and len(tensor.shape) == 4
        logical[name] = feeds[name].transpose(0, 3, 1, 2) if nhwc else feeds[name]
    values = reference.run(graph, logical)
    result = {}
    for name, value in values.items():
        tensor = graph.tensor(name)
        result[name] = value.transpose(0, 2, 3, 1) if tensor.layout is Layout.NHWC and value.ndim == 4 else value
    return result


def assert_matches_onnxruntime(model: onnx.ModelProto, graph: Graph, feeds: dict[str, np.ndarray],
                               tol: float = 1e-5) -> None:
    want = onnxruntime_outputs(model, feeds)
    got = reference_outputs(graph, feeds)
    assert sorted(got) == sorted(want)
    for name, w in want.items():
        assert got[name].shape == w.shape, name
        assert relative_error(w, got[name]) <= tol, name


def rewritten(model: onnx.ModelProto, seed: int = 0) -> tuple[Graph, Graph, Graph]:
    """The imported graph, it after sink_transposes, and after the whole pipeline; all three checked against
    onnxruntime, and no rewrite leaves more transposes than the model had."""
    g = import_model(model)
    feeds = feeds_for(model, seed)
    sunk = sink_transposes(g)
    simple = passes.simplify(g)
    for graph in (g, sunk, simple):
        assert_matches_onnxruntime(model, graph, feeds)
        assert count_transposes(graph) <= count_transposes(g)
    return g, sunk, simple


# -- the tf2onnx form: every transpose goes ----------------------------------------------------------------

@pytest.mark.parametrize("act,opset", [("Relu", 13), ("Clip", 13), ("Relu", 18)])
def test_tf2onnx_block_loses_every_transpose(act, opset):
    g, sunk, simple = rewritten(mobile_block(act=act, opset=opset))
    assert count_transposes(g) == 4
    assert count_transposes(sunk) == 0, kinds(sunk)
    assert count_transposes(simple) == 0, kinds(simple)
    for graph in (sunk, simple):
        x, y = graph.tensor("x"), graph.tensor("y")
        assert x.shape == (1, 4, 6, 6) and x.layout is Layout.NHWC and memory_shape(x) == (1, 6, 6, 4)
        assert y.shape == (1, 16, 6, 6) and y.layout is Layout.NHWC and memory_shape(y) == (1, 6, 6, 16)
        assert graph.tensor("pooled").shape == (1, 8)
    # the layers between the convolutions now work on NCHW: the pipeline folds them as in an NCHW model
    assert kinds(simple).count("conv2d") == 2 and "pad" not in kinds(simple)


def test_nhwc_input_relabel_keeps_the_bytes():
    """x -> Transpose(NCHW) -> Conv -> Transpose(NHWC) -> y: both transposes become layouts."""
    model = make_model([node("Transpose", ["x"], "t", perm=TO_NCHW),
                        node("Conv", ["t", "w", "b"], "c", pads=[1, 1, 1, 1]),
                        node("Transpose", ["c"], "y", perm=TO_NHWC)],
                       weights(1, ("w", (5, 3, 3, 3)), ("b", (5,))), {"x": (1, 7, 5, 3)}, ["y"])
    g, sunk, simple = rewritten(model)
    for graph in (sunk, simple):
        assert kinds(graph) == ["conv2d"]
        assert graph.tensor("x").layout is Layout.NHWC and memory_shape(graph.tensor("x")) == (1, 7, 5, 3)
        assert graph.tensor("y").layout is Layout.NHWC and memory_shape(graph.tensor("y")) == (1, 7, 5, 5)


def test_binary_of_two_same_perm_transposes_sinks():
    """Transpose(conv1) + Transpose(conv2), both NHWC: the add moves above the transpose, which then cancels."""
    model = make_model([node("Conv", ["x", "w1"], "c1", pads=[1, 1, 1, 1]),
                        node("Conv", ["x", "w2"], "c2", pads=[1, 1, 1, 1]),
                        node("Transpose", ["c1"], "n1", perm=TO_NHWC), node("Transpose", ["c2"], "n2", perm=TO_NHWC),
                        node("Add", ["n1", "n2"], "s"), node("Sub", ["s", "k"], "d"),
                        node("Transpose", ["d"], "t", perm=TO_NCHW), node("Conv", ["t", "w3"], "y")],
                       [*weights(2, ("w1", (4, 3, 3, 3)), ("w2", (4, 3, 3, 3)), ("w3", (2, 4, 1, 1)),
                                 ("k", (1, 1, 4)))],
                       {"x": (1, 3, 5, 5)}, ["y"])
    _, sunk, simple = rewritten(model)
    assert count_transposes(sunk) == 0 and count_transposes(simple) == 0


@pytest.mark.parametrize("keepdims", [1, 0])
@pytest.mark.parametrize("axes", [[1, 2], [3], [2]])
def test_reduce_with_either_keepdims(axes, keepdims):
    """NHWC x -> T -> Conv -> T -> ReduceMean over NHWC axes: the input's transpose cancels, the reduce's axes
    are remapped; a reduce keeping a permuted 3-D result keeps one transpose after it."""
    nodes = [node("Transpose", ["x"], "t", perm=TO_NCHW), node("Conv", ["t", "w"], "c", pads=[1, 1, 1, 1]),
             node("Transpose", ["c"], "n", perm=TO_NHWC),
             node("ReduceMean", ["n"], "r", axes=axes, keepdims=keepdims), node("Relu", ["r"], "y")]
    model = make_model(nodes, weights(4, ("w", (6, 3, 3, 3))), {"x": (1, 4, 5, 3)}, ["y"])
    g, sunk, simple = rewritten(model)
    left = 1 if (axes, keepdims) == ([2], 0) else 0  # (N, H, C) kept of an NCHW tensor: a 3-D transpose
    assert count_transposes(sunk) == count_transposes(simple) == left
    assert sunk.tensor("x").layout is Layout.NHWC


@pytest.mark.parametrize("tail", ["ReduceMean", "Softmax"])
def test_transpose_sunk_to_an_output_becomes_its_layout(tail):
    """NCHW x -> Conv -> T(NHWC) -> ReduceMean(keepdims)/Softmax(axis 3) -> Relu -> y: the transpose sinks to y
    (Relu(reduce(conv))) and y becomes the conv branch's NCHW tensor stored NHWC; no transpose is left.
    (Found: sink_transposes keeps the graph as it was, the transpose between the conv and the reduce.)"""
    attrs = {"axes": [1, 2], "keepdims": 1} if tail == "ReduceMean" else {"axis": 3}
    nodes = [node("Conv", ["x", "w"], "c", pads=[1, 1, 1, 1]), node("Transpose", ["c"], "n", perm=TO_NHWC),
             node(tail, ["n"], "r", **attrs), node("Relu", ["r"], "y")]
    model = make_model(nodes, weights(4, ("w", (6, 3, 3, 3))), {"x": (1, 3, 4, 5)}, ["y"])
    g, sunk, _ = rewritten(model)
    assert count_transposes(sunk) == 0, kinds(sunk)


def test_softmax_and_concat_on_the_channel_axis():
    nodes = [node("Transpose", ["x"], "t", perm=TO_NCHW),
             node("Conv", ["t", "w1"], "c1"), node("Conv", ["t", "w2"], "c2"),
             node("Transpose", ["c1"], "n1", perm=TO_NHWC), node("Transpose", ["c2"], "n2", perm=TO_NHWC),
             node("Concat", ["n1", "n2"], "cat", axis=-1), node("Softmax", ["cat"], "sm", axis=-1),
             node("Transpose", ["sm"], "ts", perm=TO_NCHW), node("Conv", ["ts", "w3"], "c3"),
             node("Transpose", ["c3"], "y", perm=TO_NHWC)]
    model = make_model(nodes, weights(5, ("w1", (3, 2, 1, 1)), ("w2", (4, 2, 1, 1)), ("w3", (2, 7, 1, 1))),
                       {"x": (1, 4, 4, 2)}, ["y"])
    _, sunk, simple = rewritten(model)
    assert count_transposes(sunk) == 0 and count_transposes(simple) == 0
    assert "concat" in kinds(simple) and "softmax" in kinds(simple)


# -- where a transpose must stay ---------------------------------------------------------------------------

def test_transpose_that_is_also_a_graph_output_stays():
    """n = Transpose(conv) is an output and is read on: its transpose cannot go below its other reader."""
    nodes = [node("Conv", ["x", "w1"], "c1", pads=[1, 1, 1, 1]), node("Transpose", ["c1"], "n", perm=TO_NHWC),
             node("Relu", ["n"], "r"), node("Transpose", ["r"], "t", perm=TO_NCHW), node("Conv", ["t", "w2"], "y")]
    model = make_model(nodes, weights(6, ("w1", (4, 3, 3, 3)), ("w2", (2, 4, 1, 1))), {"x": (1, 3, 5, 6)},
                       ["y", "n"])
    g, sunk, simple = rewritten(model)
    assert memory_shape(simple.tensor("n")) == (1, 5, 6, 4)


def test_transpose_output_read_by_a_binary_is_kept_with_its_reader():
    """n = Transpose(conv) is a graph output and also added to a constant: the add may not see an NCHW n."""
    nodes = [node("Conv", ["x", "w1"], "c1"), node("Transpose", ["c1"], "n", perm=TO_NHWC),
             node("Add", ["n", "k"], "y")]
    model = make_model(nodes, weights(7, ("w1", (4, 3, 1, 1)), ("k", (4,))), {"x": (1, 3, 2, 5)}, ["n", "y"])
    rewritten(model)


def test_binary_with_a_computed_nhwc_operand_keeps_the_transpose():
    """z (a flat input reshaped to NHWC) + Transpose(conv): z is neither constant nor the same transpose."""
    nodes = [node("Conv", ["x", "w"], "c", pads=[1, 1, 1, 1]), node("Transpose", ["c"], "n", perm=TO_NHWC),
             node("Reshape", ["z", "shape"], "zr"), node("Add", ["zr", "n"], "s"), node("Relu", ["s"], "r"),
             node("Transpose", ["r"], "t", perm=TO_NCHW), node("Conv", ["t", "w2"], "y")]
    inits = [*weights(8, ("w", (4, 3, 3, 3)), ("w2", (2, 4, 1, 1))),
             const("shape", np.array([1, 5, 5, 4], np.int64))]
    model = make_model(nodes, inits, {"x": (1, 3, 5, 5), "z": (1, 100)}, ["y"])
    g, sunk, simple = rewritten(model)
    assert count_transposes(sunk) == count_transposes(g) == 2


def test_second_nhwc_input_added_to_a_transposed_conv_is_relabelled():
    """x_nhwc_2 + Transpose(conv(x)): a 4-D input read in NHWC semantics is relabelled too, and all cancel."""
    nodes = [node("Conv", ["x", "w"], "c", pads=[1, 1, 1, 1]), node("Transpose", ["c"], "n", perm=TO_NHWC),
             node("Add", ["z", "n"], "s"), node("Relu", ["s"], "r"),
             node("Transpose", ["r"], "t", perm=TO_NCHW), node("Conv", ["t", "w2"], "y")]
    model = make_model(nodes, weights(9, ("w", (4, 3, 3, 3)), ("w2", (2, 4, 1, 1))),
                       {"x": (1, 3, 5, 5), "z": (1, 5, 5, 4)}, ["y"])
    g, sunk, simple = rewritten(model)
    assert count_transposes(sunk) < count_transposes(g)
    assert sunk.tensor("x").layout is Layout.NCHW


@pytest.mark.parametrize("reader", ["Flatten", "Reshape"])
@pytest.mark.parametrize("hw", [(1, 1), (3, 2)])
def test_transpose_flattened_into_a_dense_layer_goes(reader, hw):
    """Conv -> Transpose(NHWC) -> Flatten/Reshape(1, -1) -> Gemm (Keras's classifier head): the flatten order is
    NHWC's; the dense layer's weight columns are permuted instead (or, at H = W = 1, nothing moves at all)."""
    h, w = hw
    c = 4
    flat = [node("Flatten", ["n"], "f")] if reader == "Flatten" else [node("Reshape", ["n", "shape"], "f")]
    nodes = [node("Conv", ["x", "w"], "c"), node("Transpose", ["c"], "n", perm=TO_NHWC), *flat,
             node("Gemm", ["f", "fc", "fb"], "y")]
    inits = [*weights(10, ("w", (c, 3, 1, 1)), ("fc", (h * w * c, 5)), ("fb", (5,))),
             const("shape", np.array([1, -1], np.int64))]
    model = make_model(nodes, inits, {"x": (1, 3, h, w)}, ["y"])
    g, sunk, simple = rewritten(model)
    assert count_transposes(sunk) == 0 and count_transposes(simple) == 0


@pytest.mark.parametrize("shape", [[1, -1], [1, 6, 4], [1, 3, 8]])
def test_transpose_feeding_a_reshape_that_no_dense_reads_stays(shape):
    """Conv -> Transpose(NHWC) -> Reshape -> Relu -> y: the reshape sees NHWC order and nothing undoes it."""
    nodes = [node("Conv", ["x", "w"], "c"), node("Transpose", ["c"], "n", perm=TO_NHWC),
             node("Reshape", ["n", "shape"], "f"), node("Relu", ["f"], "y")]
    inits = [*weights(10, ("w", (4, 3, 1, 1))), const("shape", np.array(shape, np.int64))]
    model = make_model(nodes, inits, {"x": (1, 3, 3, 2)}, ["y"])
    g, sunk, simple = rewritten(model)
    assert count_transposes(sunk) == count_transposes(simple) == 1


def test_nhwc_input_also_flattened_is_not_relabelled():
    """x is transposed to NCHW for a conv and also flattened in NHWC order: relabelling would keep a transpose
    for the flatten, so x stays as it is."""
    nodes = [node("Transpose", ["x"], "t", perm=TO_NCHW), node("Conv", ["t", "w"], "c"),
             node("Flatten", ["x"], "f"), node("Gemm", ["f", "fc"], "y2"), node("Relu", ["c"], "y1")]
    model = make_model(nodes, weights(11, ("w", (2, 3, 1, 1)), ("fc", (4 * 4 * 3, 2))), {"x": (1, 4, 4, 3)},
                       ["y1", "y2"])
    g, sunk, simple = rewritten(model)
    assert count_transposes(sunk) == 1


def test_nhwc_input_read_directly_in_nhwc_semantics():
    """y = x + Transpose(Conv(Transpose(x))): the residual reads x as NHWC; it and the conv's output cancel.
    (Found: relabelling x sinks everything to two output transposes, which _relabel_outputs would remove, but
    2 is not fewer than the 2 it found, so x is left NCHW with both transposes.)"""
    nodes = [node("Transpose", ["x"], "t", perm=TO_NCHW), node("Conv", ["t", "w", "b"], "c", pads=[1, 1, 1, 1]),
             node("Transpose", ["c"], "n", perm=TO_NHWC), node("Add", ["x", "n"], "y"),
             node("ReduceMean", ["x"], "m", axes=[3], keepdims=1)]
    model = make_model(nodes, weights(12, ("w", (3, 3, 3, 3)), ("b", (3,))), {"x": (1, 5, 4, 3)}, ["y", "m"])
    g, sunk, simple = rewritten(model)
    assert count_transposes(sunk) == 0 and count_transposes(simple) == 0
    assert sunk.tensor("x").layout is Layout.NHWC


def test_two_inputs_only_one_transposed():
    """x NHWC (transposed for the conv) and z NCHW (added to the conv's output): only x is relabelled."""
    nodes = [node("Transpose", ["x"], "t", perm=TO_NCHW), node("Conv", ["t", "w"], "c", pads=[1, 1, 1, 1]),
             node("Add", ["c", "z"], "y")]
    model = make_model(nodes, weights(13, ("w", (4, 3, 3, 3))), {"x": (1, 5, 6, 3), "z": (1, 4, 5, 6)}, ["y"])
    g, sunk, simple = rewritten(model)
    assert count_transposes(sunk) == 0
    assert sunk.tensor("x").layout is Layout.NHWC and sunk.tensor("z").layout is Layout.NCHW
    assert memory_shape(sunk.tensor("z")) == (1, 4, 5, 6)


@pytest.mark.parametrize("perms,shape", [
    (([0, 2, 1, 3, 4], [0, 1, 3, 4, 2]), (1, 2, 3, 4, 5)),   # 5-D, composed into one
    (([1, 0, 2], [0, 2, 1]), (2, 3, 4)),                      # 3-D, composed into one
    (([0, 2, 1, 3, 4], [0, 2, 1, 3, 4]), (1, 2, 3, 4, 5)),   # 5-D, cancels
])
def test_other_ranks(perms, shape):
    """Transpose -> Add(const broadcast from the right) -> Relu -> Transpose -> Mul(per-last-axis const)."""
    p1, p2 = perms
    t_shape = tuple(shape[i] for i in p1)
    rng = np.random.default_rng(14)
    inits = [const("k1", rng.standard_normal(t_shape[-2:-1] + (1,))),
             const("k2", rng.standard_normal(tuple(t_shape[i] for i in p2)[-1:]))]
    nodes = [node("Transpose", ["x"], "t1", perm=p1), node("Add", ["t1", "k1"], "a"), node("Relu", ["a"], "r"),
             node("Transpose", ["r"], "t2", perm=p2), node("Mul", ["t2", "k2"], "y")]
    model = make_model(nodes, inits, {"x": shape}, ["y"])
    g, sunk, _ = rewritten(model)
    composed = [p1[i] for i in p2]
    assert count_transposes(sunk) == (0 if composed == sorted(composed) else 1)


def test_nhwc_input_read_directly_by_a_waiting_binary():
    """As above, with the sum transposed back for a conv: here the relabelling pays off before the outputs."""
    nodes = [node("Transpose", ["x"], "t", perm=TO_NCHW), node("Conv", ["t", "w", "b"], "c", pads=[1, 1, 1, 1]),
             node("Transpose", ["c"], "n", perm=TO_NHWC), node("Add", ["x", "n"], "s"),
             node("Transpose", ["s"], "ts", perm=TO_NCHW), node("Conv", ["ts", "w2"], "y")]
    model = make_model(nodes, weights(12, ("w", (3, 3, 3, 3)), ("b", (3,)), ("w2", (2, 3, 1, 1))),
                       {"x": (1, 5, 4, 3)}, ["y"])
    g, sunk, simple = rewritten(model)
    assert count_transposes(sunk) == 0 and count_transposes(simple) == 0
    assert sunk.tensor("x").layout is Layout.NHWC


def test_concat_of_a_transpose_and_a_tensor_made_from_it():
    """n = T(conv(x)); Concat(n * sigmoid(n), n) -> T(NCHW) -> Conv: the transpose should sink through the
    sigmoid, then the mul, then the concat, and cancel. (Found: it stays below the conv, and one after the
    concat: the concat is a reader that may not wait, so nothing moves. Without the concat, all cancel.)"""
    nodes = [node("Conv", ["x", "w"], "c"), node("Transpose", ["c"], "n", perm=TO_NHWC),
             node("Sigmoid", ["n"], "s"), node("Mul", ["n", "s"], "m"), node("Concat", ["m", "n"], "cat", axis=3),
             node("Transpose", ["cat"], "t", perm=TO_NCHW), node("Conv", ["t", "w2"], "y")]
    model = make_model(nodes, weights(1, ("w", (4, 3, 1, 1)), ("w2", (2, 8, 1, 1))), {"x": (1, 3, 4, 5)}, ["y"])
    g, sunk, _ = rewritten(model)
    assert count_transposes(sunk) == 0, kinds(sunk)


def test_transpose_read_by_a_conv_directly_stays():
    """Conv -> Transpose(swap H, W) -> Conv: nothing to cancel it against."""
    nodes = [node("Conv", ["x", "w1"], "c1"), node("Transpose", ["c1"], "t", perm=[0, 1, 3, 2]),
             node("Conv", ["t", "w2"], "y", pads=[1, 1, 1, 1])]
    model = make_model(nodes, weights(15, ("w1", (4, 3, 1, 1)), ("w2", (2, 4, 3, 3))), {"x": (1, 3, 4, 6)}, ["y"])
    g, sunk, simple = rewritten(model)
    assert count_transposes(sunk) == count_transposes(simple) == 1


def test_a_transpose_that_would_be_copied_to_many_readers_stays():
    """Transpose(conv) read by a Relu and a Flatten: sinking below the Relu alone would add a transpose."""
    nodes = [node("Conv", ["x", "w"], "c"), node("Transpose", ["c"], "n", perm=TO_NHWC), node("Relu", ["n"], "y1"),
             node("Flatten", ["n"], "f"), node("Gemm", ["f", "fc"], "y2")]
    model = make_model(nodes, weights(16, ("w", (3, 2, 1, 1)), ("fc", (3 * 3 * 3, 2))), {"x": (1, 2, 3, 3)},
                       ["y1", "y2"])
    g, sunk, _ = rewritten(model)
    assert count_transposes(sunk) == 1


# -- transposes_to_reshapes ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,becomes_reshape", [
    ((1, 8, 1, 1), True), ((1, 1, 3, 4), True), ((1, 8, 3, 1), False), ((1, 8, 3, 4), False)])
def test_transposes_to_reshapes(shape, becomes_reshape):
    b = GraphBuilder()
    x = b.input("x", shape)
    r = b.act(x, "relu")
    b.layer("transpose", [r], out="t", perm=(0, 2, 3, 1))
    b.act("t", "sigmoid", out="y")
    g = b.output("y")
    out = transposes_to_reshapes(g)
    assert kinds(out) == ["activation", "reshape" if becomes_reshape else "transpose", "activation"]
    assert out.shape("t") == tuple(shape[i] for i in (0, 2, 3, 1))
    assert_same_outputs(g, out, random_inputs(g))
    if becomes_reshape:
        assert count_transposes(passes.simplify(g)) == 0


# -- end to end through the public API ---------------------------------------------------------------------

def test_compiled_tf2onnx_model_takes_and_gives_nhwc_bytes(tmp_path):
    """The mobile block through compile_model (reference path) and codegen.load: the same bytes in and out as
    onnxruntime's, with no transpose in the schedule."""
    model = mobile_block(h=5, w=6, c=3, m=8)
    feeds = feeds_for(model, seed=3)
    project = codegen.compile_model(model, tmp_path / "p", name="m", reference=True)
    header = (project / "include" / "m.h").read_text()
    assert "'x', f32 [1, 5, 6, 3], nhwc" in header, header  # the NHWC bytes the ONNX model takes
    assert "'y', f32 [1, 5, 6, 16], nhwc" in header, header
    assert "transpose" not in (project / "tuning.json").read_text()
    got = codegen.load(project, werror=True).run({"x": feeds["x"]})
    want = onnxruntime_outputs(model, feeds)
    for name, w in want.items():
        assert relative_error(w, got[name].reshape(w.shape)) <= 1e-4, name
        assert got[name].shape == w.shape, name
