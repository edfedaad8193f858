"""Each pass of codegen.passes alone, on small hand-built graphs, checked structurally and numerically."""

from __future__ import annotations

import numpy as np
import pytest
from graphkit import GraphBuilder, assert_same_outputs, identity_layer, kinds, random_inputs, small_net

from codegen import passes, reference
from codegen.ir import Activation, Graph
from codegen.record import graph_hash

ACTIVATIONS = [
    Activation("relu"),
    Activation("clip", 0.0, 6.0),
    Activation("clip", -0.5, 0.25),
    Activation("leaky_relu", 0.1),
    Activation("sigmoid"),
    Activation("hard_sigmoid", 0.2, 0.5),
    Activation("hard_swish"),
]


def act_id(act: Activation) -> str:
    return act.describe()


def check_pure(pass_fn, graph: Graph) -> Graph:
    """Run `pass_fn`, checking that it leaves its input graph (and its weights) untouched."""
    before = graph_hash(graph)
    layer_attrs = [(x.name, x.kind, list(x.inputs), list(x.outputs), dict(x.attrs)) for x in graph.layers]
    result = pass_fn(graph)
    assert graph_hash(graph) == before, f"{pass_fn.__name__} modified its input graph"
    assert [(x.name, x.kind, x.inputs, x.outputs, x.attrs) for x in graph.layers] == layer_attrs
    assert result is not graph
    result.validate()
    return result


# -- fold_batchnorm ------------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("group", [1, 2, 6])
def test_fold_batchnorm_into_conv(bias, group):
    b = GraphBuilder()
    x = b.input("x", (2, 6, 7, 7))
    y = b.conv(x, 6, bias=bias, group=group, strides=(2, 2), name="conv")
    z = b.scale_shift(y, name="bn")
    b.act(z, "relu", out="out")
    g = b.output("out")
    folded = check_pure(passes.fold_batchnorm, g)
    assert kinds(folded) == ["conv2d", "activation"]
    conv = folded.layers[0]
    assert len(conv.present_inputs()) == 3  # a bias appears even when the conv had none
    assert all(folded.is_constant(n) for n in conv.present_inputs()[1:])
    assert_same_outputs(g, folded, random_inputs(g))


def test_fold_batchnorm_whose_output_is_a_graph_output():
    b = GraphBuilder()
    y = b.conv(b.input("x", (1, 3, 5, 5)), 4, name="conv")
    b.scale_shift(y, name="bn", out="result")
    g = b.output("result")
    folded = check_pure(passes.fold_batchnorm, g)
    assert kinds(folded) == ["conv2d"]
    assert folded.layers[0].outputs == ["result"]
    assert "conv:out" not in folded.tensors
    assert_same_outputs(g, folded, random_inputs(g))


@pytest.mark.parametrize("bias", [True, False])
def test_fold_batchnorm_into_dense(bias):
    b = GraphBuilder()
    y = b.dense(b.input("x", (3, 10)), 7, bias=bias, name="fc")
    b.scale_shift(y, name="bn", out="out")
    g = b.output("out")
    folded = check_pure(passes.fold_batchnorm, g)
    assert kinds(folded) == ["dense"]
    assert_same_outputs(g, folded, random_inputs(g))


def test_fold_batchnorm_keeps_shared_weights_intact():
    # Two convs share one weight tensor; folding the BN of one must not change the other.
    b = GraphBuilder()
    x = b.input("x", (1, 3, 6, 6))
    w = b.const("shared_w", (4, 3, 3, 3))
    attrs = dict(strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=1, activation=Activation())
    y1 = b.layer("conv2d", [x, w, ""], name="c1", **attrs)
    y2 = b.layer("conv2d", [x, w, ""], name="c2", **attrs)
    z1 = b.scale_shift(y1, name="bn")
    b.binary("add", z1, y2, out="out")
    g = b.output("out")
    original_w = g.tensor("shared_w").data.copy()
    folded = check_pure(passes.fold_batchnorm, g)
    assert kinds(folded) == ["conv2d", "conv2d", "binary"]
    np.testing.assert_array_equal(g.tensor("shared_w").data, original_w)
    assert_same_outputs(g, folded, random_inputs(g))


def test_fold_batchnorm_not_when_the_conv_output_has_two_readers():
    b = GraphBuilder()
    y = b.conv(b.input("x", (1, 3, 5, 5)), 4, name="conv")
    z = b.scale_shift(y, name="bn")
    b.binary("add", y, z, out="out")
    g = b.output("out")
    result = check_pure(passes.fold_batchnorm, g)
    assert kinds(result) == ["conv2d", "scale_shift", "binary"]
    assert_same_outputs(g, result, random_inputs(g))


def test_fold_batchnorm_not_when_the_conv_output_is_a_graph_output():
    b = GraphBuilder()
    y = b.conv(b.input("x", (1, 3, 5, 5)), 4, name="conv", out="features")
    b.scale_shift(y, name="bn", out="out")
    g = b.output("features", "out")
    result = check_pure(passes.fold_batchnorm, g)
    assert kinds(result) == ["conv2d", "scale_shift"]
    assert_same_outputs(g, result, random_inputs(g))


def test_fold_batchnorm_not_after_a_conv_with_an_activation():
    b = GraphBuilder()
    y = b.conv(b.input("x", (1, 3, 5, 5)), 4, name="conv", activation=Activation("relu"))
    b.scale_shift(y, name="bn", out="out")
    g = b.output("out")
    result = check_pure(passes.fold_batchnorm, g)
    assert kinds(result) == ["conv2d", "scale_shift"]
    assert result.layers[0].activation == Activation("relu")
    assert_same_outputs(g, result, random_inputs(g))


def test_fold_batchnorm_not_when_the_bn_has_an_activation():
    b = GraphBuilder()
    y = b.conv(b.input("x", (1, 3, 5, 5)), 4, name="conv")
    z = b.scale_shift(y, name="bn", out="out")
    b.graph.layers[-1].attrs["activation"] = Activation("relu")
    assert z == "out"
    g = b.output("out")
    result = check_pure(passes.fold_batchnorm, g)
    assert kinds(result) == ["conv2d", "scale_shift"]
    assert_same_outputs(g, result, random_inputs(g))


def test_fold_batchnorm_not_after_other_layers_or_inputs():
    b = GraphBuilder()
    x = b.input("x", (1, 3, 6, 6))
    z = b.scale_shift(x, name="bn_on_input")
    p = b.layer("pool2d", [z], mode="max", kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0),
                dilations=(1, 1), ceil_mode=False, count_include_pad=False)
    b.scale_shift(p, name="bn_after_pool", out="out")
    g = b.output("out")
    result = check_pure(passes.fold_batchnorm, g)
    assert kinds(result) == kinds(g)
    assert_same_outputs(g, result, random_inputs(g))


def test_fold_batchnorm_not_when_conv_weights_are_computed_at_run_time():
    b = GraphBuilder()
    x = b.input("x", (1, 3, 5, 5))
    w = b.input("w", (4, 3, 3, 3))
    y = b.layer("conv2d", [x, w, ""], strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1,
                activation=Activation())
    b.scale_shift(y, name="bn", out="out")
    g = b.output("out")
    result = check_pure(passes.fold_batchnorm, g)
    assert kinds(result) == ["conv2d", "scale_shift"]
    assert_same_outputs(g, result, random_inputs(g))


def test_fold_batchnorm_not_when_scale_is_computed_at_run_time():
    b = GraphBuilder()
    y = b.conv(b.input("x", (1, 3, 5, 5)), 4, name="conv")
    scale = b.input("scale", (4,))
    shift = b.const("shift", (4,))
    b.layer("scale_shift", [y, scale, shift], name="bn", out="out", activation=Activation())
    g = b.output("out")
    result = check_pure(passes.fold_batchnorm, g)
    assert kinds(result) == ["conv2d", "scale_shift"]
    assert_same_outputs(g, result, random_inputs(g))


# -- fuse_activations ------------------------------------------------------------------------------

def producer(b: GraphBuilder, kind: str) -> str:
    if kind == "conv2d":
        return b.conv(b.input("x", (1, 3, 6, 6)), 4, name="prod")
    if kind == "dense":
        return b.dense(b.input("x", (2, 9)), 5, name="prod")
    if kind == "binary":
        return b.binary("mul", b.input("x", (2, 3, 4)), b.input("x2", (3, 1)), name="prod")
    if kind == "scale_shift":
        return b.scale_shift(b.input("x", (2, 3, 4, 4)), name="prod")
    raise AssertionError(kind)


@pytest.mark.parametrize("act", ACTIVATIONS, ids=act_id)
@pytest.mark.parametrize("kind", ["conv2d", "dense", "binary", "scale_shift"])
def test_fuse_activation_into_producer(kind, act):
    b = GraphBuilder()
    y = producer(b, kind)
    b.layer("activation", [y], name="act", out="out", activation=act)
    g = b.output("out")
    fused = check_pure(passes.fuse_activations, g)
    assert kinds(fused) == [kind]
    assert fused.layers[0].activation == act
    assert fused.layers[0].outputs == ["out"]
    assert_same_outputs(g, fused, random_inputs(g, scale=4.0))


def test_fuse_activation_whose_output_feeds_more_layers():
    b = GraphBuilder()
    y = b.conv(b.input("x", (1, 3, 6, 6)), 4, name="conv")
    z = b.act(y, "relu", name="relu")
    a = b.act(z, "sigmoid", name="s")
    b.binary("add", z, a, out="out")
    g = b.output("out")
    fused = check_pure(passes.fuse_activations, g)
    # The relu fuses into the conv; the sigmoid has no fusable producer (an activation layer) and stays.
    assert kinds(fused) == ["conv2d", "activation", "binary"]
    assert fused.layers[0].activation == Activation("relu")
    assert_same_outputs(g, fused, random_inputs(g))


def test_no_fusion_when_the_pre_activation_tensor_has_two_readers():
    b = GraphBuilder()
    y = b.conv(b.input("x", (1, 3, 6, 6)), 4, name="conv")
    z = b.act(y, "relu")
    b.binary("add", y, z, out="out")
    g = b.output("out")
    result = check_pure(passes.fuse_activations, g)
    assert kinds(result) == ["conv2d", "activation", "binary"]
    assert result.layers[0].activation.is_identity
    assert_same_outputs(g, result, random_inputs(g))


def test_no_fusion_when_the_pre_activation_tensor_is_a_graph_output():
    b = GraphBuilder()
    y = b.dense(b.input("x", (2, 5)), 3, name="fc", out="logits")
    b.act(y, "sigmoid", out="probs")
    g = b.output("logits", "probs")
    result = check_pure(passes.fuse_activations, g)
    assert kinds(result) == ["dense", "activation"]
    assert result.layers[0].activation.is_identity
    assert_same_outputs(g, result, random_inputs(g))


def test_no_fusion_into_a_layer_that_already_has_an_activation():
    b = GraphBuilder()
    y = b.conv(b.input("x", (1, 3, 6, 6)), 4, name="conv", activation=Activation("relu"))
    b.act(y, "sigmoid", out="out")
    g = b.output("out")
    result = check_pure(passes.fuse_activations, g)
    assert kinds(result) == ["conv2d", "activation"]
    assert result.layers[0].activation == Activation("relu")
    assert_same_outputs(g, result, random_inputs(g))


def test_no_fusion_into_layers_without_an_epilogue_or_into_inputs():
    b = GraphBuilder()
    x = b.input("x", (1, 3, 6, 6))
    r = b.act(x, "relu", name="on_input")
    p = b.layer("pool2d", [r], mode="avg", kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0),
                dilations=(1, 1), ceil_mode=False, count_include_pad=False)
    b.act(p, "sigmoid", out="out")
    g = b.output("out")
    result = check_pure(passes.fuse_activations, g)
    assert kinds(result) == ["activation", "pool2d", "activation"]
    assert_same_outputs(g, result, random_inputs(g))


# -- fuse_hard_swish -------------------------------------------------------------------------------

@pytest.mark.parametrize("order", ["x_first", "hs_first"])
def test_fuse_hard_swish(order):
    b = GraphBuilder()
    x = b.input("x", (2, 3, 4))
    hs = b.act(x, "hard_sigmoid", 1 / 6, 0.5, name="hs")
    b.binary("mul", *((x, hs) if order == "x_first" else (hs, x)), name="mul", out="out")
    g = b.output("out")
    fused = check_pure(passes.fuse_hard_swish, g)
    assert kinds(fused) == ["activation"]
    assert fused.layers[0].activation == Activation("hard_swish")
    assert fused.layers[0].inputs == ["x"] and fused.layers[0].outputs == ["out"]
    assert_same_outputs(g, fused, random_inputs(g, scale=5.0))


def test_fuse_hard_swish_with_float32_alpha():
    # Exporters store 1/6 as float32; the pattern must still match.
    b = GraphBuilder()
    x = b.input("x", (5,))
    hs = b.act(x, "hard_sigmoid", float(np.float32(1 / 6)), 0.5)
    b.binary("mul", x, hs, out="out")
    g = b.output("out")
    assert kinds(passes.fuse_hard_swish(g)) == ["activation"]


@pytest.mark.parametrize("alpha, beta", [(0.2, 0.5), (1 / 6, 0.4), (1 / 3, 0.5)])
def test_fuse_hard_swish_leaves_other_hard_sigmoids(alpha, beta):
    b = GraphBuilder()
    x = b.input("x", (2, 3, 4))
    hs = b.act(x, "hard_sigmoid", alpha, beta)
    b.binary("mul", x, hs, out="out")
    g = b.output("out")
    result = check_pure(passes.fuse_hard_swish, g)
    assert kinds(result) == ["activation", "binary"]
    assert result.layers[0].activation.kind == "hard_sigmoid"
    assert_same_outputs(g, result, random_inputs(g, scale=5.0))


def test_fuse_hard_swish_not_for_a_gate_of_another_tensor():
    b = GraphBuilder()
    x = b.input("x", (2, 3))
    other = b.input("other", (2, 3))
    hs = b.act(other, "hard_sigmoid", 1 / 6, 0.5)
    b.binary("mul", x, hs, out="out")
    g = b.output("out")
    assert kinds(check_pure(passes.fuse_hard_swish, g)) == ["activation", "binary"]


def test_fuse_hard_swish_not_when_the_gate_is_read_twice_or_an_output():
    b = GraphBuilder()
    x = b.input("x", (2, 3))
    hs = b.act(x, "hard_sigmoid", 1 / 6, 0.5, out="gate")
    b.binary("mul", x, hs, out="out")
    g = b.output("out", "gate")
    assert kinds(check_pure(passes.fuse_hard_swish, g)) == ["activation", "binary"]

    b = GraphBuilder()
    x = b.input("x", (2, 3))
    hs = b.act(x, "hard_sigmoid", 1 / 6, 0.5)
    m = b.binary("mul", x, hs)
    b.binary("add", m, hs, out="out")
    g = b.output("out")
    result = check_pure(passes.fuse_hard_swish, g)
    assert kinds(result) == ["activation", "binary", "binary"]
    assert_same_outputs(g, result, random_inputs(g, scale=5.0))


def test_fuse_hard_swish_not_for_other_operators():
    b = GraphBuilder()
    x = b.input("x", (2, 3))
    hs = b.act(x, "hard_sigmoid", 1 / 6, 0.5)
    b.binary("add", x, hs, out="out")
    g = b.output("out")
    assert kinds(check_pure(passes.fuse_hard_swish, g)) == ["activation", "binary"]


def test_hard_swish_then_fuses_into_a_conv():
    b = GraphBuilder()
    y = b.conv(b.input("x", (1, 3, 6, 6)), 4, name="conv")
    hs = b.act(y, "hard_sigmoid", 1 / 6, 0.5)
    b.binary("mul", y, hs, out="out")
    g = b.output("out")
    result = passes.fuse_activations(passes.fuse_hard_swish(g))
    assert kinds(result) == ["conv2d"]
    assert result.layers[0].activation == Activation("hard_swish")
    assert_same_outputs(g, result, random_inputs(g, scale=3.0))


# -- remove_identities -----------------------------------------------------------------------------

IDENTITY_KINDS = ["copy", "reshape", "activation", "transpose"]


@pytest.mark.parametrize("kind", IDENTITY_KINDS)
def test_remove_identity_in_the_middle(kind):
    b = GraphBuilder()
    y = b.act(b.input("x", (2, 3, 4)), "relu", name="first")
    z = identity_layer(b, kind, y)
    b.act(z, "sigmoid", name="last", out="out")
    g = b.output("out")
    result = check_pure(passes.remove_identities, g)
    assert [x.name for x in result.layers] == ["first", "last"]
    assert result.layers[1].inputs == result.layers[0].outputs
    assert_same_outputs(g, result, random_inputs(g))


@pytest.mark.parametrize("kind", IDENTITY_KINDS)
def test_remove_identity_that_writes_a_graph_output(kind):
    b = GraphBuilder()
    y = b.act(b.input("x", (2, 3, 4)), "relu", name="first")
    identity_layer(b, kind, y, out="out")
    g = b.output("out")
    result = check_pure(passes.remove_identities, g)
    assert [x.name for x in result.layers] == ["first"]
    assert result.layers[0].outputs == ["out"]
    assert_same_outputs(g, result, random_inputs(g))


@pytest.mark.parametrize("kind", IDENTITY_KINDS)
def test_identity_from_an_input_to_an_output_stays(kind):
    # The output buffer must be written by some layer; the input cannot stand in for it.
    b = GraphBuilder()
    identity_layer(b, kind, b.input("x", (2, 3, 4)), out="out")
    g = b.output("out")
    result = check_pure(passes.remove_identities, g)
    assert kinds(result) == [kind]
    assert_same_outputs(g, result, random_inputs(g))


def test_identity_from_a_constant_to_an_output_stays():
    b = GraphBuilder()
    x = b.input("x", (3,))
    b.layer("copy", [b.const("c", (3,))], out="out")
    b.act(x, "relu", out="other")
    g = b.output("out", "other")
    result = check_pure(passes.remove_identities, g)
    assert kinds(result) == ["copy", "activation"]


def test_identity_between_two_outputs_stays():
    b = GraphBuilder()
    y = b.act(b.input("x", (4,)), "relu", out="a")
    b.layer("copy", [y], out="b")
    g = b.output("a", "b")
    result = check_pure(passes.remove_identities, g)
    assert kinds(result) == ["activation", "copy"]
    assert_same_outputs(g, result, random_inputs(g))


def test_layers_that_change_something_stay():
    b = GraphBuilder()
    x = b.input("x", (2, 3, 4))
    r = b.layer("reshape", [x], shape=(6, 4))
    t = b.layer("transpose", [r], perm=(1, 0))
    b.act(t, "relu", out="out")
    g = b.output("out")
    result = check_pure(passes.remove_identities, g)
    assert kinds(result) == ["reshape", "transpose", "activation"]


def test_chain_of_identities_collapses():
    b = GraphBuilder()
    y = b.act(b.input("x", (2, 3)), "relu", name="first")
    for kind in IDENTITY_KINDS:
        y = identity_layer(b, kind, y)
    identity_layer(b, "copy", y, out="out")
    g = b.output("out")
    result = check_pure(passes.remove_identities, g)
    assert kinds(result) == ["activation"]
    assert result.layers[0].outputs == ["out"]
    assert_same_outputs(g, result, random_inputs(g))


# -- fold_constants --------------------------------------------------------------------------------

def test_fold_constants_evaluates_constant_subgraphs():
    b = GraphBuilder()
    x = b.input("x", (1, 4, 5, 5))
    w_t = b.const("w_t", (3, 3, 4, 6))  # stored HWIO; transposed to OIHW by a layer
    w = b.layer("transpose", [w_t], name="to_oihw", perm=(3, 2, 0, 1))
    bias = b.binary("mul", b.const("b0", (6,)), b.const("two", np.array(2.0, np.float32)), name="scale_bias")
    b.layer("conv2d", [x, w, bias], name="conv", out="out", strides=(1, 1), pads=(1, 1, 1, 1),
            dilations=(1, 1), group=1, activation=Activation())
    g = b.output("out")
    folded = check_pure(passes.fold_constants, g)
    assert [x.name for x in folded.layers] == ["conv"]
    conv_w = folded.tensor(folded.layers[0].inputs[1])
    np.testing.assert_array_equal(conv_w.data, np.transpose(g.tensor("w_t").data, (3, 2, 0, 1)))
    np.testing.assert_allclose(folded.tensor(folded.layers[0].inputs[2]).data, 2 * g.tensor("b0").data)
    assert "w_t" not in folded.tensors  # pruned once nothing reads it
    assert_same_outputs(g, folded, random_inputs(g))


def test_fold_constants_handles_integer_shape_arithmetic():
    # dims[0] and dims[1] * dims[2], computed from constants: the gathers and the product fold away.
    b = GraphBuilder()
    x = b.input("x", (2, 3, 4))
    dims = b.const("dims", np.array([2, 3, 4], np.int64))
    picked = b.layer("gather", [dims, b.const("idx", np.array([0], np.int64))], axis=0)
    rest = b.binary("mul", b.layer("gather", [dims, b.const("i1", np.array([1], np.int64))], axis=0),
                    b.layer("gather", [dims, b.const("i2", np.array([2], np.int64))], axis=0))
    b.layer("concat", [picked, rest], axis=0, out="shape")
    b.act(x, "relu", out="out")
    g = b.output("shape", "out")
    folded = check_pure(passes.fold_constants, g)
    assert kinds(folded) == ["concat", "activation"]  # the concat writes a graph output, so it stays
    assert all(folded.is_constant(n) for n in folded.layers[0].inputs)
    got = reference.run(folded, random_inputs(folded))["shape"]
    assert got.dtype == np.int64 and got.tolist() == [2, 12]


def test_fold_constants_keeps_a_layer_that_writes_a_graph_output():
    b = GraphBuilder()
    x = b.input("x", (3,))
    b.binary("add", b.const("a", (3,)), b.const("c", (3,)), out="const_out")
    b.act(x, "relu", out="out")
    g = b.output("const_out", "out")
    result = check_pure(passes.fold_constants, g)
    assert kinds(result) == ["binary", "activation"]
    assert_same_outputs(g, result, random_inputs(g))


def test_fold_constants_leaves_run_time_layers():
    b = GraphBuilder()
    x = b.input("x", (2, 3))
    y = b.binary("add", x, b.const("c", (3,)))
    b.act(y, "relu", out="out")
    g = b.output("out")
    result = check_pure(passes.fold_constants, g)
    assert kinds(result) == ["binary", "activation"]


# -- canonicalize ----------------------------------------------------------------------------------

def test_spatial_mean_with_keepdims_becomes_global_avgpool():
    b = GraphBuilder()
    x = b.input("x", (2, 3, 5, 7))
    b.layer("reduce", [x], out="out", op="mean", axes=(2, 3), keepdims=True)
    g = b.output("out")
    result = check_pure(passes.canonicalize, g)
    assert kinds(result) == ["global_avgpool"]
    assert result.shape("out") == (2, 3, 1, 1)
    assert_same_outputs(g, result, random_inputs(g))


@pytest.mark.parametrize("shape, axes, keepdims", [
    ((2, 3, 5, 7), (2, 3), False),
    ((2, 3, 5, 7), (1, 2), True),
    ((2, 3, 5, 7), (3,), True),
    ((2, 3, 5), (2,), True),
    ((2, 3, 5, 7, 2), (2, 3), True),
])
def test_other_means_stay_reduce(shape, axes, keepdims):
    b = GraphBuilder()
    b.layer("reduce", [b.input("x", shape)], out="out", op="mean", axes=axes, keepdims=keepdims)
    g = b.output("out")
    result = check_pure(passes.canonicalize, g)
    assert kinds(result) == ["reduce"]


# -- the whole pipeline ----------------------------------------------------------------------------

def test_simplify_preserves_numerics_and_simplifies():
    g = small_net()
    simple = check_pure(passes.simplify, g)
    assert kinds(simple) == ["conv2d", "conv2d", "conv2d", "global_avgpool", "reshape", "dense"]
    assert [x.activation.kind for x in simple.layers] == ["relu", "clip", "hard_swish", "none", "none", "sigmoid"]
    for seed in range(3):
        assert_same_outputs(g, simple, random_inputs(g, seed=seed, scale=2.0))


def test_simplify_is_idempotent():
    once = passes.simplify(small_net())
    twice = passes.simplify(once)
    assert graph_hash(once) == graph_hash(twice)


@pytest.mark.parametrize("step", passes.DEFAULT_PIPELINE, ids=lambda p: p.__name__)
def test_every_pass_alone_preserves_numerics(step):
    g = small_net()
    result = check_pure(step, g)
    assert_same_outputs(g, result, random_inputs(g, scale=2.0))


# -- fuse_residual_add ------------------------------------------------------------------------------

def test_fuse_residual_add_then_its_relu():
    """ResNet's block end: conv + shortcut, ReLU -> one conv with a residual operand and the ReLU."""
    b = GraphBuilder()
    x = b.input("x", (1, 4, 6, 6))
    shortcut = b.conv(x, 8, 1, pads=(0, 0, 0, 0), name="shortcut", activation=Activation("relu"))
    y = b.conv(x, 8, 3, name="conv")
    s = b.binary("add", y, shortcut, name="add")
    b.act(s, "relu", out="out")
    g = b.output("out")
    fused = passes.fuse_activations(check_pure(passes.fuse_residual_add, g))
    assert kinds(fused) == ["conv2d", "conv2d"]
    conv = fused.layers[1]
    assert conv.name == "conv" and conv.inputs[3] == shortcut and conv.outputs == ["out"]
    assert conv.activation.kind == "relu"
    assert_same_outputs(g, fused, random_inputs(g))


def test_fuse_residual_add_takes_the_later_conv_and_moves_it_after_the_residual():
    b = GraphBuilder()
    x = b.input("x", (1, 4, 5, 5))
    first = b.conv(x, 6, 1, pads=(0, 0, 0, 0), name="first")
    second = b.conv(x, 6, 3, name="second")
    b.binary("add", first, second, out="out")
    g = b.output("out")
    fused = check_pure(passes.fuse_residual_add, g)
    assert [layer.name for layer in fused.layers] == ["first", "second"]
    assert fused.layers[1].inputs[3] == first
    assert_same_outputs(g, fused, random_inputs(g))

    # the conv is written before the layer computing the residual: it moves to the add's place
    b = GraphBuilder()
    x = b.input("x", (1, 4, 5, 5))
    y = b.conv(x, 4, 3, name="conv")
    r = b.act(x, "sigmoid", name="later")
    b.binary("add", y, r, out="out")
    g = b.output("out")
    fused = check_pure(passes.fuse_residual_add, g)
    assert [layer.name for layer in fused.layers] == ["later", "conv"]
    assert_same_outputs(g, fused, random_inputs(g))


def test_no_residual_fusion_for_broadcasts_constants_shared_or_activated_convs():
    b = GraphBuilder()
    x = b.input("x", (1, 4, 5, 5))
    per_channel = b.input("per_channel", (1, 4, 1, 1))
    y1 = b.conv(x, 4, 3, name="broadcast")
    b.binary("add", y1, per_channel, out="o1")
    y2 = b.conv(x, 4, 3, name="constant")
    b.binary("add", y2, b.const("k", (1, 4, 5, 5)), out="o2")
    y3 = b.conv(x, 4, 3, name="shared")
    b.binary("add", y3, x, out="o3")
    b.act(y3, "relu", out="o4")
    y4 = b.conv(x, 4, 3, name="activated", activation=Activation("relu"))
    b.binary("add", y4, x, out="o5")
    y5 = b.conv(x, 4, 3, name="sub")
    b.binary("sub", y5, x, out="o6")
    g = b.output("o1", "o2", "o3", "o4", "o5", "o6")
    assert check_pure(passes.fuse_residual_add, g).layers == g.layers


# -- remove_identities: neutral operands, reshapes of reshapes ---------------------------------------

@pytest.mark.parametrize("op, value, const_first", [("mul", 1.0, False), ("mul", 1.0, True), ("div", 1.0, False),
                                                     ("add", 0.0, True), ("sub", 0.0, False)])
def test_neutral_operands_are_dropped(op, value, const_first):
    b = GraphBuilder()
    x = b.input("x", (1, 3, 4, 4))
    one = b.const("c", np.full((3, 1, 1), value, np.float32))
    y = b.binary(op, *((one, x) if const_first else (x, one)))
    b.act(y, "sigmoid", out="out")
    g = b.output("out")
    out = check_pure(passes.remove_identities, g)
    assert kinds(out) == ["activation"]
    assert_same_outputs(g, out, random_inputs(g))


@pytest.mark.parametrize("case", ["not_neutral", "const_minus_x", "broadcasts_x", "activation_fused"])
def test_operands_that_are_not_neutral_stay(case):
    b = GraphBuilder()
    x = b.input("x", (1, 3, 4, 4) if case != "broadcasts_x" else (1, 1, 4, 4))
    value = 0.0 if case == "const_minus_x" else 1.0
    c = b.const("c", np.full((3, 1, 1) if case == "broadcasts_x" else (1,),
                             1.0001 if case == "not_neutral" else value, np.float32))
    op = "sub" if case == "const_minus_x" else "mul"
    y = b.binary(op, *((c, x) if case == "const_minus_x" else (x, c)))
    if case == "activation_fused":
        b.graph.layers[-1].attrs["activation"] = Activation("relu")
    b.act(y, "sigmoid", out="out")
    g = b.output("out")
    out = check_pure(passes.remove_identities, g)
    assert kinds(out) == ["binary", "activation"]
    assert_same_outputs(g, out, random_inputs(g))


def test_a_reshape_of_a_reshape_is_one_reshape():
    b = GraphBuilder()
    x = b.input("x", (1, 8, 1, 1))
    flat = b.layer("reshape", [x], shape=(1, 8))
    back = b.layer("reshape", [flat], shape=(1, 8, 1, 1))
    b.act(back, "relu", out="out")
    g = b.output("out")
    out = check_pure(passes.remove_identities, g)
    assert kinds(out) == ["activation"]  # (1, 8, 1, 1) -> (1, 8, 1, 1): nothing left to do
    assert_same_outputs(g, out, random_inputs(g))


# -- transpose -> flatten -> dense: the weight columns are reordered instead --------------------------

@pytest.mark.parametrize("perm", [(0, 2, 3, 1), (0, 3, 1, 2), (0, 1, 3, 2)])
def test_flatten_of_a_transpose_moves_into_the_dense_weights(perm):
    from codegen.passes.transpose import flatten_through_dense

    b = GraphBuilder()
    x = b.input("x", (2, 3, 4, 5))
    t = b.layer("transpose", [x], perm=perm)
    flat = b.layer("reshape", [t], shape=(2, 60))
    b.dense(flat, 7, out="out")
    g = b.output("out")
    out = check_pure(flatten_through_dense, g)
    assert kinds(out) == ["reshape", "dense"]
    assert_same_outputs(g, out, random_inputs(g))


@pytest.mark.parametrize("case", ["two_readers", "weights_computed", "batch_moved", "not_a_flatten"])
def test_flatten_through_dense_needs_a_sole_flatten_and_constant_weights(case):
    from codegen.passes.transpose import flatten_through_dense

    b = GraphBuilder()
    x = b.input("x", (2, 3, 4, 5))
    t = b.layer("transpose", [x], perm=(1, 0, 2, 3) if case == "batch_moved" else (0, 2, 3, 1))
    shape = (3, 40) if case == "batch_moved" else (4, 30) if case == "not_a_flatten" else (2, 60)
    flat = b.layer("reshape", [t], shape=shape)
    outputs = []
    if case == "weights_computed":
        w_in = b.input("w", (7, 60))
        outputs.append(b.layer("dense", [flat, w_in, ""], activation=Activation()))
    else:
        outputs.append(b.dense(flat, 7))
    if case == "two_readers":
        outputs.append(b.act(t, "relu"))
    g = b.output(*outputs)
    out = check_pure(flatten_through_dense, g)
    assert "transpose" in kinds(out)
    assert_same_outputs(g, out, random_inputs(g))
