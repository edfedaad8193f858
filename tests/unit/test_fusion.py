"""passes.fusion: per-channel affine folding and decomposed activations, each rewrite against the unrewritten
graph (codegen.reference) on random inputs, the cases that must not fire, and the new activation kinds in C
(every host routine forced onto them, and ONNX models end to end against onnxruntime)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from graphkit import GraphBuilder, assert_same_outputs, kinds, random_inputs
from onnx import TensorProto, helper

import codegen
from codegen import passes, reference
from codegen.frontends import onnx as onnx_frontend
from codegen.ir import Activation, Graph
from codegen.passes.fusion import fold_channel_affine, fuse_decomposed_activations

sys.path.insert(0, str(Path(__file__).parents[1] / "routines"))
sys.path.insert(0, str(Path(__file__).parents[1]))

NEW_KINDS = ("silu", "gelu_erf", "gelu_tanh", "mish", "tanh", "erf", "softplus")


# -- ONNX models of the exporters' forms ---------------------------------------------------------------

def scalar(name: str, value: float) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.FLOAT, [], [value])


def onnx_model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], conv: bool = True,
               shape: tuple[int, ...] = (1, 3, 6, 6), opset: int = 17) -> onnx.ModelProto:
    """x -> Conv(3->4, 3x3, pad 1) -> 'c' -> nodes -> 'y' (without the conv the nodes read x as 'c')."""
    rng = np.random.default_rng(7)
    inits = list(inits)
    if conv:
        w = rng.standard_normal((4, shape[1], 3, 3)).astype(np.float32)
        b = rng.standard_normal(4).astype(np.float32)
        inits += [onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(b, "b")]
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), *nodes]
    else:
        nodes = [helper.make_node("Identity", ["x"], ["c"]), *nodes]
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def n(op: str, ins: list[str], out: str, **attrs) -> onnx.NodeProto:
    return helper.make_node(op, ins, [out], **attrs)


CONSTS = [scalar("three", 3.0), scalar("two", 2.0), scalar("six", 6.0), scalar("zero", 0.0),
          scalar("sixth", 1 / 6), scalar("half", 0.5), scalar("one", 1.0), scalar("sqrt2", math.sqrt(2.0)),
          scalar("inv_sqrt2", 1 / math.sqrt(2.0)), scalar("kappa", 0.044715),
          scalar("beta", math.sqrt(2 / math.pi))]

# name -> (nodes computing y from c, the activation expected)
FORMS: dict[str, tuple[list[onnx.NodeProto], Activation]] = {
    # tf2onnx (Keras hard_silu / hard_swish): Add(x, 3) -> Clip(0, 6) -> Mul(1/6) -> Mul(x, that)
    "hard_swish_tf2onnx": ([n("Add", ["c", "three"], "a"), n("Clip", ["a", "zero", "six"], "r"),
                            n("Mul", ["r", "sixth"], "h"), n("Mul", ["c", "h"], "y")], Activation("hard_swish")),
    # x * relu6(x + 3) / 6, constants first, Div by 6
    "hard_swish_div": ([n("Add", ["three", "c"], "a"), n("Clip", ["a", "zero", "six"], "r"),
                        n("Mul", ["r", "c"], "m"), n("Div", ["m", "six"], "y")], Activation("hard_swish")),
    # x * clip(x + 3, 0, 6) * (1/6), multiplied in the other association
    "hard_swish_assoc": ([n("Add", ["c", "three"], "a"), n("Clip", ["a", "zero", "six"], "r"),
                          n("Mul", ["sixth", "c"], "s"), n("Mul", ["s", "r"], "y")], Activation("hard_swish")),
    # x * HardSigmoid(x) (older torch exports)
    "hard_swish_hardsigmoid": ([n("HardSigmoid", ["c"], "h", alpha=1 / 6, beta=0.5), n("Mul", ["h", "c"], "y")],
                               Activation("hard_swish")),
    "hard_sigmoid_relu6": ([n("Add", ["c", "three"], "a"), n("Clip", ["a", "zero", "six"], "r"),
                            n("Div", ["r", "six"], "y")], Activation("hard_sigmoid", 1 / 6, 0.5)),
    "hard_sigmoid_relu_min": ([n("Add", ["c", "three"], "a"), n("Relu", ["a"], "r"),
                               n("Clip", ["r", "", "six"], "q"), n("Mul", ["q", "sixth"], "y")],
                              Activation("hard_sigmoid", 1 / 6, 0.5)),
    "silu": ([n("Sigmoid", ["c"], "s"), n("Mul", ["c", "s"], "y")], Activation("silu")),
    "silu_swapped": ([n("Sigmoid", ["c"], "s"), n("Mul", ["s", "c"], "y")], Activation("silu")),
    # torch.onnx (TorchScript, opset < 20): Div(x, sqrt2) -> Erf -> Add(1) -> Mul(x, .) -> Mul(0.5)
    "gelu_erf_torch": ([n("Div", ["c", "sqrt2"], "d"), n("Erf", ["d"], "e"), n("Add", ["e", "one"], "p"),
                        n("Mul", ["c", "p"], "m"), n("Mul", ["m", "half"], "y")], Activation("gelu_erf")),
    # tf.nn.gelu / the dynamo exporter: 0.5 * x first, Mul by 1/sqrt2, 1 + erf
    "gelu_erf_tf": ([n("Mul", ["half", "c"], "h"), n("Mul", ["c", "inv_sqrt2"], "d"), n("Erf", ["d"], "e"),
                     n("Add", ["one", "e"], "p"), n("Mul", ["h", "p"], "y")], Activation("gelu_erf")),
    # torch's tanh GELU: x * (x * x) cube, kappa * cube, + x, * beta, Tanh, + 1, * x, * 0.5
    "gelu_tanh_torch": ([n("Mul", ["c", "c"], "sq"), n("Mul", ["c", "sq"], "cube"), n("Mul", ["kappa", "cube"], "kc"),
                         n("Add", ["c", "kc"], "inner"), n("Mul", ["beta", "inner"], "z"), n("Tanh", ["z"], "t"),
                         n("Add", ["one", "t"], "p"), n("Mul", ["c", "p"], "xp"), n("Mul", ["half", "xp"], "y")],
                        Activation("gelu_tanh")),
    "mish": ([n("Softplus", ["c"], "sp"), n("Tanh", ["sp"], "t"), n("Mul", ["c", "t"], "y")], Activation("mish")),
    "relu6_relu_clip": ([n("Relu", ["c"], "r"), n("Clip", ["r", "", "six"], "y")], Activation("clip", 0.0, 6.0)),
}

# Near misses that must stay as they are (no activation computes them).
NOT_FORMS: dict[str, list[onnx.NodeProto]] = {
    "hard_swish_add_2": [n("Add", ["c", "two"], "a"), n("Clip", ["a", "zero", "six"], "r"),
                         n("Mul", ["r", "sixth"], "h"), n("Mul", ["c", "h"], "y")],
    "gelu_without_half": [n("Div", ["c", "sqrt2"], "d"), n("Erf", ["d"], "e"), n("Add", ["e", "one"], "p"),
                          n("Mul", ["c", "p"], "y")],
    "silu_of_another_tensor": [n("Relu", ["c"], "r"), n("Sigmoid", ["r"], "s"), n("Mul", ["c", "s"], "y")],
    "tanh_of_softplus_only": [n("Softplus", ["c"], "sp"), n("Tanh", ["sp"], "t"), n("Add", ["c", "t"], "y")],
}


def imported(model: onnx.ModelProto) -> Graph:
    return onnx_frontend.import_model(model)


def activation_layers(g: Graph) -> list[Activation]:
    return [layer.activation for layer in g.layers if layer.kind == "activation"]


@pytest.mark.parametrize("form", sorted(FORMS))
def test_each_decomposed_form_becomes_its_activation(form):
    nodes, want = FORMS[form]
    g = imported(onnx_model(nodes, CONSTS))
    fused = fuse_decomposed_activations(g)
    assert kinds(fused) == ["conv2d", "activation"], kinds(fused)
    (act,) = activation_layers(fused)
    assert act.kind == want.kind and math.isclose(act.alpha, want.alpha) and math.isclose(act.beta, want.beta)
    assert_same_outputs(g, fused, random_inputs(g, scale=4.0))
    # and the pipeline puts it into the convolution's epilogue
    simple = passes.simplify(g)
    assert kinds(simple) == ["conv2d"] and simple.layers[0].activation.kind == want.kind
    assert_same_outputs(g, simple, random_inputs(g, seed=1, scale=4.0))


@pytest.mark.parametrize("form", sorted(NOT_FORMS))
def test_near_misses_are_left_alone(form):
    g = imported(onnx_model(NOT_FORMS[form], CONSTS))
    fused = fuse_decomposed_activations(g)
    assert kinds(fused) == kinds(g)
    assert_same_outputs(g, passes.simplify(g), random_inputs(g, scale=4.0))


def test_an_intermediate_with_another_reader_stays():
    """sigmoid(x) is also a graph output: x * sigmoid(x) cannot swallow it."""
    b = GraphBuilder()
    x = b.input("x", (1, 4, 3, 3))
    s = b.act(x, "sigmoid", out="s")
    b.binary("mul", x, s, out="y")
    g = b.output("y", "s")
    assert kinds(fuse_decomposed_activations(g)) == ["activation", "binary"]


def test_mul_by_a_computed_tensor_or_per_channel_constant_is_no_activation():
    b = GraphBuilder()
    x = b.input("x", (1, 4, 3, 3))
    z = b.input("z", (1, 4, 3, 3))
    s = b.act(z, "sigmoid")
    b.binary("mul", x, s, out="y1")  # x * sigmoid(z)
    a = b.binary("add", x, b.const("per_channel", np.full((1, 4, 1, 1), 3.0, np.float32)))
    r = b.act(a, "clip", 0.0, 6.0)
    b.binary("mul", b.binary("mul", x, r), b.const("sixth", np.float32(1 / 6)), out="y2")
    g = b.output("y1", "y2")
    assert kinds(fuse_decomposed_activations(g)) == kinds(g)


def test_min_max_relu6_and_chained_forms_on_ir():
    """Min(Max(x, 0), 6) as the frontends write it (clip from below, then from above), after a dense."""
    b = GraphBuilder()
    x = b.input("x", (2, 5))
    d = b.dense(x, 6)
    lo = b.act(d, "clip", 0.0, math.inf)
    b.act(lo, "clip", -math.inf, 6.0, out="y")
    g = b.output("y")
    simple = passes.simplify(g)
    assert kinds(simple) == ["dense"] and simple.layers[0].activation == Activation("clip", 0.0, 6.0)
    assert_same_outputs(g, simple, random_inputs(g, scale=8.0))


def test_onnx_gelu_and_mish_ops_import_as_the_activation():
    for op, attrs, kind in (("Gelu", {}, "gelu_erf"), ("Gelu", {"approximate": "tanh"}, "gelu_tanh"),
                            ("Mish", {}, "mish")):
        g = imported(onnx_model([n(op, ["c"], "y", **attrs)], [], opset=20))
        assert [a.kind for a in activation_layers(g)] == [kind]


# -- fold_channel_affine ---------------------------------------------------------------------------

def const4(b: GraphBuilder, name: str, c: int, shape: tuple[int, ...] | None = None, positive: bool = False) -> str:
    v = b.rng.standard_normal(c).astype(np.float32)
    if positive:
        v = (0.5 + np.abs(v)).astype(np.float32)
    return b.const(name, v.reshape(shape or (1, c, 1, 1)))


@pytest.mark.parametrize("group", [1, 2, 6])
@pytest.mark.parametrize("shape", [(1, 6, 1, 1), (6, 1, 1), ()])
def test_mul_add_sub_div_after_a_conv_fold_into_it(group, shape):
    b = GraphBuilder()
    x = b.input("x", (1, 6, 5, 5))
    y = b.conv(x, 6, group=group)
    for op, positive in (("mul", False), ("add", False), ("div", True), ("sub", False)):
        v = b.rng.standard_normal(6 if shape else 1).astype(np.float32)
        v = (0.5 + np.abs(v)) if positive else v
        y = b.binary(op, y, b.const(f"{op}_k", v.astype(np.float32).reshape(shape)))
    y = b.binary("sub", b.const("k_first", np.float32(0.25)), y)  # k - y: a scale of -1 and a shift
    b.act(y, "relu", out="y")
    g = b.output("y")
    folded = fold_channel_affine(g)
    assert kinds(folded) == ["conv2d", "activation"]
    assert_same_outputs(g, folded, random_inputs(g))
    assert kinds(passes.simplify(g)) == ["conv2d"]


def test_affine_after_dense_folds_and_a_batchnorm_scale_shift_too():
    b = GraphBuilder()
    x = b.input("x", (3, 5))
    y = b.binary("mul", b.dense(x, 4, bias=False), b.const("s", (4,)))
    y = b.scale_shift(b.binary("add", y, b.const("t", (1, 4))))
    g = b.output(y)
    folded = fold_channel_affine(g)
    assert kinds(folded) == ["dense"]
    assert_same_outputs(g, folded, random_inputs(g))


@pytest.mark.parametrize("group", [1, 3])
def test_rescaling_before_an_unpadded_conv_folds_into_its_weights_and_bias(group):
    """Keras Rescaling x * a + b (per channel), then a convolution without padding."""
    b = GraphBuilder()
    x = b.input("x", (1, 3, 7, 7))
    y = b.binary("add", b.binary("mul", x, const4(b, "a", 3)), const4(b, "b", 3, (3, 1, 1)))
    b.conv(y, 6, group=group, pads=(0, 0, 0, 0), strides=(2, 2), out="y")
    g = b.output("y")
    folded = fold_channel_affine(g)
    assert kinds(folded) == ["conv2d"]
    assert_same_outputs(g, folded, random_inputs(g))


def test_before_a_dense_scale_and_shift_fold():
    b = GraphBuilder()
    x = b.input("x", (2, 5))
    y = b.binary("sub", b.binary("div", x, b.const("d", np.float32(4.0))), b.const("m", (5,)))
    b.dense(y, 3, out="y")
    g = b.output("y")
    folded = fold_channel_affine(g)
    assert kinds(folded) == ["dense"]
    assert_same_outputs(g, folded, random_inputs(g))


def test_before_a_padded_conv_only_the_scale_folds_and_through_a_zero_pad():
    b = GraphBuilder()
    x = b.input("x", (1, 3, 6, 6))
    y = b.binary("mul", x, const4(b, "a", 3))
    y = b.layer("pad", [y], pads=(0, 0, 1, 1, 0, 0, 1, 1), mode="constant", value=0.0)
    b.conv(y, 4, pads=(0, 0, 0, 0), out="y1")
    z = b.binary("add", x, const4(b, "t", 3))
    b.conv(z, 4, out="y2")  # padded: x + t then zero-padded is not conv(x) + shift
    g = b.output("y1", "y2")
    folded = fold_channel_affine(g)
    assert kinds(folded) == ["pad", "conv2d", "binary", "conv2d"]
    assert_same_outputs(g, folded, random_inputs(g))
    # the shift through a pad does not fold either; Mul-then-Add becomes one scale_shift
    b = GraphBuilder()
    x = b.input("x", (1, 3, 6, 6))
    y = b.binary("add", b.binary("mul", x, const4(b, "a", 3)), const4(b, "t", 3))
    y = b.layer("pad", [y], pads=(0, 0, 1, 1, 0, 0, 1, 1), mode="constant", value=0.0)
    b.conv(y, 4, pads=(0, 0, 0, 0), out="y")
    g = b.output("y")
    folded = fold_channel_affine(g)
    assert kinds(folded) == ["scale_shift", "pad", "conv2d"]
    assert_same_outputs(g, folded, random_inputs(g))


def test_mul_then_add_with_nothing_to_fold_into_is_one_scale_shift():
    b = GraphBuilder()
    x = b.input("x", (1, 4, 3, 3))
    y = b.binary("mul", b.act(x, "relu"), const4(b, "s", 4))
    y = b.binary("add", y, const4(b, "t", 4))
    b.binary("div", y, b.const("d", np.float32(3.0)), out="y")
    g = b.output("y")
    folded = fold_channel_affine(g)
    assert kinds(folded) == ["activation", "scale_shift"]
    assert_same_outputs(g, folded, random_inputs(g))


def _affine_after_conv(mutate) -> tuple[Graph, Graph]:
    b = GraphBuilder()
    x = b.input("x", (1, 4, 5, 5))
    mutate(b, x)
    g = b.graph.validate()
    return g, fold_channel_affine(g)


def test_cases_that_must_not_fold():
    def not_per_channel(b, x):  # varies along W
        y = b.binary("mul", b.conv(x, 4), b.const("k", (1, 1, 1, 5)))
        b.graph.outputs.append(y)

    def vector_on_the_last_axis(b, x):  # (C,) broadcasts along W for a 4-D tensor, not along C
        y = b.binary("mul", b.conv(x, 5, pads=(1, 1, 1, 1)), b.const("k", (5,)))
        b.graph.outputs.append(y)

    def two_readers(b, x):
        c = b.conv(x, 4)
        y = b.binary("mul", c, const4(b, "k", 4))
        b.graph.outputs.extend([y, b.act(c, "relu")])

    def activation_fused(b, x):
        y = b.binary("add", b.conv(x, 4, activation=Activation("relu")), const4(b, "k", 4))
        b.graph.outputs.append(y)

    def residual_fused(b, x):
        w, bias = b.const("w", (4, 4, 3, 3)), b.const("bias", (4,))
        c = b.layer("conv2d", [x, w, bias, x], strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=1,
                    activation=Activation())
        b.graph.outputs.append(b.binary("mul", c, const4(b, "k", 4)))

    def mul_by_computed(b, x):
        b.graph.outputs.append(b.binary("mul", b.conv(x, 4), b.act(x, "sigmoid")))

    def div_by_zero(b, x):
        k = np.array([1.0, 0.0, 2.0, 3.0], np.float32).reshape(1, 4, 1, 1)
        b.graph.outputs.append(b.binary("div", b.conv(x, 4), b.const("k", k)))

    def constant_divided(b, x):  # k / y is no affine map
        b.graph.outputs.append(b.binary("div", const4(b, "k", 4), b.conv(x, 4)))

    for mutate in (not_per_channel, vector_on_the_last_axis, two_readers, activation_fused, residual_fused,
                   mul_by_computed, div_by_zero, constant_divided):
        g, folded = _affine_after_conv(mutate)
        assert kinds(folded) == kinds(g), mutate.__name__
        with np.errstate(all="ignore"):
            assert_same_outputs(g, folded, random_inputs(g))


def test_a_scale_in_front_of_the_residual_operand_does_not_fold():
    b = GraphBuilder()
    x = b.input("x", (1, 4, 5, 5))
    s = b.binary("mul", x, const4(b, "k", 4))
    w, bias = b.const("w", (4, 4, 3, 3)), b.const("bias", (4,))
    b.layer("conv2d", [x, w, bias, s], out="y", strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=1,
            activation=Activation())
    g = b.output("y")
    assert kinds(fold_channel_affine(g)) == kinds(g)


def test_an_affine_op_writing_a_graph_output_keeps_its_name():
    b = GraphBuilder()
    x = b.input("x", (1, 3, 4, 4))
    b.binary("add", b.conv(x, 4), const4(b, "k", 4), out="y")
    g = b.output("y")
    folded = fold_channel_affine(g)
    assert kinds(folded) == ["conv2d"] and folded.layers[0].outputs == ["y"]
    assert_same_outputs(g, folded, random_inputs(g))


def test_tf2onnx_style_batchnorm_and_hard_swish_after_a_conv_end_in_one_layer():
    """Conv -> Mul(C,1,1) -> Add(1,C,1,1) -> Add 3 -> Clip -> Mul 1/6 -> Mul x: one conv with a hard_swish."""
    rng = np.random.default_rng(3)
    scale = onnx.numpy_helper.from_array((0.5 + rng.random((4, 1, 1))).astype(np.float32), "bn_s")
    shift = onnx.numpy_helper.from_array(rng.standard_normal((1, 4, 1, 1)).astype(np.float32), "bn_t")
    nodes = [n("Mul", ["c", "bn_s"], "bn1"), n("Add", ["bn1", "bn_t"], "bn"),
             n("Add", ["bn", "three"], "a"), n("Clip", ["a", "zero", "six"], "r"), n("Mul", ["r", "sixth"], "h"),
             n("Mul", ["bn", "h"], "y")]
    g = imported(onnx_model(nodes, [*CONSTS, scale, shift]))
    simple = passes.simplify(g)
    assert kinds(simple) == ["conv2d"] and simple.layers[0].activation.kind == "hard_swish"
    assert_same_outputs(g, simple, random_inputs(g, scale=3.0))


# -- the new activation kinds in C -----------------------------------------------------------------

def test_reference_of_the_new_kinds():
    x = np.linspace(-9, 9, 181)
    erf = np.array([math.erf(v) for v in x])
    want = {
        "silu": x / (1 + np.exp(-x)),
        "gelu_erf": 0.5 * x * (1 + np.array([math.erf(v / math.sqrt(2)) for v in x])),
        "gelu_tanh": 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
        "mish": x * np.tanh(np.log1p(np.exp(x))),
        "tanh": np.tanh(x), "erf": erf, "softplus": np.log1p(np.exp(x)),
    }
    for kind, values in want.items():
        np.testing.assert_allclose(reference.apply_activation(x, Activation(kind)), values, rtol=1e-12, atol=1e-15,
                                   err_msg=kind)
    with np.errstate(invalid="ignore"):
        assert all(np.isnan(reference.apply_activation(np.array([np.nan]), Activation(k)))[0] for k in NEW_KINDS)


def test_every_host_routine_computes_the_new_kinds(tmp_path):
    """Activation (scalar and vector), binary and conv epilogues, forced onto every routine the host has:
    within 1e-5 of numpy element by element (not only relative to the largest value), and NaN kept."""
    from routine_kit import Case, In, build_family, run_shared, write
    from routine_kit import conv as conv_case

    cases = []
    for kind in NEW_KINDS:
        act = Activation(kind)
        cases += [Case(f"act_{kind}_67", "activation", [In((1, 67, 3, 1), scale=6.0)], dict(activation=act)),
                  Case(f"act_{kind}_wide", "activation", [In((75,), scale=40.0)], dict(activation=act)),
                  Case(f"bin_{kind}", "binary", [In((2, 19)), In((2, 19))], dict(op="add", activation=act))]
        if kind in ("silu", "gelu_erf", "gelu_tanh", "mish"):
            cases.append(conv_case(f"conv_{kind}", (1, 5, 6, 6), 17, 3, pads=(1, 1, 1, 1), act=act))
    fg = build_family("newacts", cases)
    for name in fg.graph.inputs:  # some NaN among the values (not into convolutions: Winograd spreads them)
        if not name.startswith("conv_"):
            fg.inputs[name].reshape(-1)[::29] = np.nan
    want = reference.run(fg.graph, fg.inputs)
    got = run_shared(write(fg, tmp_path, "newacts"), "gcc", fg)
    labels = {v.label for vs in fg.variants.values() for v in vs}
    assert any("avx512" in label for label in labels) and any("avx2" in label for label in labels)
    for case_id, variants in fg.variants.items():
        for v in variants:
            label = f"{case_id} [{v.label}]"
            g, w = got[v.output].reshape(-1).astype(np.float64), want[v.output].reshape(-1).astype(np.float64)
            np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=label)
            keep = ~np.isnan(w)
            # A convolution's sum is rounded differently by each routine: its error scales with the largest value.
            atol = 1e-6 if not case_id.startswith("conv_") else 1e-5 * float(np.abs(w[keep]).max())
            np.testing.assert_allclose(g[keep], w[keep], rtol=1e-5, atol=atol, err_msg=label)


@pytest.mark.parametrize("form", ["silu", "gelu_erf_torch", "gelu_tanh_torch", "mish"])
def test_conv_with_a_decomposed_activation_against_onnxruntime(form, tmp_path):
    from support import onnxruntime_outputs

    nodes, _ = FORMS[form]
    model = onnx_model(nodes, CONSTS, shape=(1, 3, 8, 8))
    x = (np.random.default_rng(5).standard_normal((1, 3, 8, 8)) * 2).astype(np.float32)
    project = codegen.compile_model(model, tmp_path / "p", name="m", reference=True)
    got = codegen.load(project, werror=True).run({"x": x})
    want = onnxruntime_outputs(model, {"x": x})
    (g,), (w,) = got.values(), want.values()
    np.testing.assert_allclose(g.reshape(w.shape), w, rtol=1e-4, atol=1e-5)
