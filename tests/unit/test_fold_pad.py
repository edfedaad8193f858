"""passes.fold_pad: zero padding of H and W moves into the following convolution, or pool where that is exact."""

from __future__ import annotations

import numpy as np
import pytest
from graphkit import GraphBuilder, assert_same_outputs, kinds, random_inputs
from test_passes import check_pure

from codegen import passes, reference
from codegen.ir import Activation, Graph


def assert_not_folded(g: Graph, inputs: dict[str, np.ndarray]) -> None:
    """fold_pad leaves `g` as it is (same layer kinds, same outputs)."""
    folded = check_pure(passes.fold_pad, g)
    assert kinds(folded) == kinds(g)
    assert_same_outputs(g, folded, inputs)


def pad_conv(pads: tuple[int, ...], *, mode: str = "constant", value: float = 0.0, group: int = 1,
             strides: tuple[int, int] = (1, 1), dilations: tuple[int, int] = (1, 1),
             conv_pads: tuple[int, int, int, int] = (0, 0, 0, 0), k: int = 3) -> Graph:
    b = GraphBuilder()
    x = b.input("x", (2, 4, 9, 8))
    p = b.layer("pad", [x], name="pad", pads=pads, mode=mode, value=value)
    y = b.conv(p, 4, k=k, group=group, strides=strides, pads=conv_pads, dilations=dilations, name="conv")
    b.act(y, "relu", out="out")
    return b.output("out")


FOLDABLE = {
    "symmetric": dict(pads=(0, 0, 1, 1, 0, 0, 1, 1)),
    "asymmetric": dict(pads=(0, 0, 0, 1, 0, 0, 2, 0), strides=(2, 2)),  # MobileNet's stride-2 ZeroPadding2D
    "onto_conv_pads": dict(pads=(0, 0, 1, 0, 0, 0, 0, 1), conv_pads=(1, 1, 0, 1)),
    "depthwise": dict(pads=(0, 0, 1, 1, 0, 0, 1, 1), group=4, strides=(2, 2)),
    "grouped": dict(pads=(0, 0, 2, 1, 0, 0, 1, 2), group=2),
    "dilated": dict(pads=(0, 0, 3, 4, 0, 0, 4, 3), dilations=(2, 2), conv_pads=(1, 0, 0, 0)),
    "stem_7x7": dict(pads=(0, 0, 3, 3, 0, 0, 3, 3), k=7, strides=(2, 2)),  # Keras ResNet50
}


@pytest.mark.parametrize("case", FOLDABLE, ids=list(FOLDABLE))
def test_zero_padding_folds_into_the_convolution(case):
    args = FOLDABLE[case]
    g = pad_conv(**args)
    folded = check_pure(passes.fold_pad, g)
    assert kinds(folded) == ["conv2d", "activation"]
    conv = folded.layers[0]
    assert conv.inputs[0] == "x"
    p, own = args["pads"], args.get("conv_pads", (0, 0, 0, 0))
    assert conv.attrs["pads"] == (own[0] + p[2], own[1] + p[3], own[2] + p[6], own[3] + p[7])
    assert folded.shape("out") == g.shape("out")
    assert_same_outputs(g, folded, random_inputs(g))


NOT_FOLDABLE = {
    "nonzero_value": dict(pads=(0, 0, 1, 1, 0, 0, 1, 1), value=0.5),
    "reflect": dict(pads=(0, 0, 1, 1, 0, 0, 1, 1), mode="reflect"),
    "edge": dict(pads=(0, 0, 1, 1, 0, 0, 1, 1), mode="edge"),
    "batch_axis": dict(pads=(1, 0, 1, 1, 0, 0, 1, 1)),
    "channel_axis": dict(pads=(0, 0, 1, 1, 0, 1, 1, 1)),
    "wider_than_the_kernel": dict(pads=(0, 0, 3, 0, 0, 0, 0, 0)),  # a 3x3 window could lie wholly in padding
}


@pytest.mark.parametrize("case", NOT_FOLDABLE, ids=list(NOT_FOLDABLE))
def test_other_padding_stays(case):
    args = NOT_FOLDABLE[case]
    if case == "channel_axis":  # the convolution then reads 5 channels
        b = GraphBuilder()
        p = b.layer("pad", [b.input("x", (1, 4, 6, 6))], pads=args["pads"], mode="constant", value=0.0)
        b.conv(p, 3, pads=(0, 0, 0, 0), out="out")
        g = b.output("out")
    else:
        g = pad_conv(**args)
    folded = check_pure(passes.fold_pad, g)
    assert kinds(folded) == kinds(g)
    assert folded.layers[1].attrs["pads"] == g.layers[1].attrs["pads"]
    assert_same_outputs(g, folded, random_inputs(g))


def test_negative_pads_stay():
    b = GraphBuilder()
    p = b.layer("pad", [b.input("x", (1, 2, 6, 6))], pads=(0, 0, -1, 0, 0, 0, 1, 0), mode="constant", value=0.0)
    b.conv(p, 2, pads=(0, 0, 0, 0), out="out")
    g = b.output("out")
    assert kinds(check_pure(passes.fold_pad, g)) == ["pad", "conv2d"]


def test_not_when_the_padded_tensor_has_another_reader():
    b = GraphBuilder()
    x = b.input("x", (1, 3, 6, 6))
    p = b.layer("pad", [x], pads=(0, 0, 1, 1, 0, 0, 1, 1), mode="constant", value=0.0)
    y = b.conv(p, 3, pads=(0, 0, 0, 0))
    z = b.act(p, "sigmoid")
    b.layer("concat", [b.conv(z, 3, pads=(0, 0, 0, 0)), y], out="out", axis=1)
    g = b.output("out")
    assert_not_folded(g, random_inputs(g))


def test_not_when_the_padded_tensor_is_a_graph_output():
    b = GraphBuilder()
    p = b.layer("pad", [b.input("x", (1, 3, 6, 6))], out="padded", pads=(0, 0, 1, 1, 0, 0, 1, 1),
                mode="constant", value=0.0)
    b.conv(p, 3, pads=(0, 0, 0, 0), out="out")
    g = b.output("out", "padded")
    assert kinds(check_pure(passes.fold_pad, g)) == ["pad", "conv2d"]


def test_not_when_the_padded_tensor_is_the_residual_operand():
    b = GraphBuilder()
    x = b.input("x", (1, 3, 6, 6))
    p = b.layer("pad", [b.input("r", (1, 3, 4, 4))], pads=(0, 0, 1, 1, 0, 0, 1, 1), mode="constant", value=0.0)
    w = b.const("w", (3, 3, 1, 1))
    b.layer("conv2d", [x, w, "", p], out="out", strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1,
            activation=Activation())
    g = b.output("out")
    folded = check_pure(passes.fold_pad, g)
    assert kinds(folded) == ["pad", "conv2d"]
    assert_same_outputs(g, folded, random_inputs(g))


# -- into pooling ---------------------------------------------------------------------------------

RELU = Activation("relu")


def pad_pool(pads: tuple[int, ...], *, mode: str = "max", producer: Activation | None = RELU,
             standalone: bool = False, kernel: int = 3, strides: int = 2, dilations: int = 1,
             pool_pads: tuple[int, int, int, int] = (0, 0, 0, 0), ceil_mode: bool = False,
             count_include_pad: bool = False, size: tuple[int, int] = (9, 8)) -> Graph:
    """conv (activation fused, or a separate layer when `standalone`) -> Pad -> pool; None: no activation."""
    b = GraphBuilder()
    x = b.input("x", (2, 4, *size))
    fused = producer if producer is not None and not standalone else Activation()
    y = b.conv(x, 5, activation=fused, name="conv")
    if standalone and producer is not None:
        y = b.act(y, producer.kind, producer.alpha, producer.beta, name="act")
    p = b.layer("pad", [y], name="pad", pads=pads, mode="constant", value=0.0)
    b.layer("pool2d", [p], out="out", name="pool", mode=mode, kernel=(kernel, kernel), strides=(strides, strides),
            pads=pool_pads, dilations=(dilations, dilations), ceil_mode=ceil_mode,
            count_include_pad=count_include_pad)
    return b.output("out")


def negative_heavy_inputs(g: Graph) -> dict[str, np.ndarray]:
    """Inputs with a strong negative offset, so many pre-activations are negative (and clamped)."""
    x = random_inputs(g)["x"]
    return {"x": x - 1.0}


POOL_FOLDABLE = {
    # Keras ResNet50's pool1_pad: conv1 -> BN -> ReLU -> ZeroPadding2D(1) -> MaxPooling2D(3, 2).
    "max_relu": dict(pads=(0, 0, 1, 1, 0, 0, 1, 1)),
    "max_relu_standalone": dict(pads=(0, 0, 1, 1, 0, 0, 1, 1), standalone=True),
    "max_relu6": dict(pads=(0, 0, 1, 0, 0, 0, 1, 2), producer=Activation("clip", 0.0, 6.0)),
    "max_clip_positive_min": dict(pads=(0, 0, 2, 1, 0, 0, 0, 2), producer=Activation("clip", 0.5, 2.0),
                                  standalone=True),
    "max_sigmoid": dict(pads=(0, 0, 1, 1, 0, 0, 1, 1), producer=Activation("sigmoid"), standalone=True),
    "max_onto_own_pads": dict(pads=(0, 0, 0, 1, 0, 0, 1, 0), pool_pads=(1, 0, 0, 1)),
    "max_ceil_mode": dict(pads=(0, 0, 1, 1, 0, 0, 0, 0), ceil_mode=True, size=(8, 8)),
    "max_dilated": dict(pads=(0, 0, 2, 2, 0, 0, 2, 1), dilations=2, strides=1),
    "avg_no_own_pads": dict(pads=(0, 0, 1, 1, 0, 0, 1, 1), mode="avg", producer=None),
    "avg_counting_own_pads": dict(pads=(0, 0, 1, 0, 0, 0, 0, 1), mode="avg", producer=None,
                                  pool_pads=(1, 1, 1, 1), count_include_pad=True),
    "avg_ceil_mode": dict(pads=(0, 0, 1, 1, 0, 0, 1, 1), mode="avg", producer=None, ceil_mode=True,
                          size=(8, 9)),
}


@pytest.mark.parametrize("case", POOL_FOLDABLE, ids=list(POOL_FOLDABLE))
def test_zero_padding_folds_into_the_pool(case):
    args = POOL_FOLDABLE[case]
    g = pad_pool(**args)
    folded = check_pure(passes.fold_pad, g)
    assert "pad" not in kinds(folded)
    (pool,) = [layer for layer in folded.layers if layer.kind == "pool2d"]
    assert pool.inputs[0] == next(layer for layer in g.layers if layer.kind == "pad").inputs[0]
    p, own = args["pads"], args.get("pool_pads", (0, 0, 0, 0))
    assert pool.attrs["pads"] == (own[0] + p[2], own[1] + p[3], own[2] + p[6], own[3] + p[7])
    assert pool.attrs["count_include_pad"] == (args.get("mode", "max") == "avg" or args.get("count_include_pad", False))
    assert folded.shape("out") == g.shape("out")
    inputs = negative_heavy_inputs(g)
    want = reference.run(g, inputs)["out"]
    if args.get("mode", "max") == "max" and args.get("producer", RELU) == RELU:
        assert (want == 0).any() and (want > 0).any(), "some windows are all clamped negatives: the case bites"
    assert_same_outputs(g, folded, inputs)


POOL_NOT_FOLDABLE = {
    # max(0, negatives) is 0 with explicit zeros, but negative over ignored padding.
    "max_no_activation": dict(pads=(0, 0, 1, 1, 0, 0, 1, 1), producer=None),
    "max_leaky_relu": dict(pads=(0, 0, 1, 1, 0, 0, 1, 1), producer=Activation("leaky_relu", 0.1)),
    "max_clip_negative_min": dict(pads=(0, 0, 1, 1, 0, 0, 1, 1), producer=Activation("clip", -1.0, 6.0),
                                  standalone=True),
    "max_hard_swish": dict(pads=(0, 0, 1, 1, 0, 0, 1, 1), producer=Activation("hard_swish"), standalone=True),
    # A 3x3 window wholly in padding: its max is 0 over explicit zeros, -inf over ignored padding.
    "max_window_in_padding_only": dict(pads=(0, 0, 3, 0, 0, 0, 0, 0), strides=1),
    # The average divides by the real taps only: explicit zeros would have counted.
    "avg_not_counting_own_pads": dict(pads=(0, 0, 1, 1, 0, 0, 1, 1), mode="avg", producer=None,
                                      pool_pads=(1, 1, 1, 1), count_include_pad=False),
    # With the pad folded, ceil mode would drop a last window that starts in the explicit zeros.
    "avg_ceil_mode_window_in_zeros": dict(pads=(0, 0, 0, 0, 0, 0, 2, 0), mode="avg", producer=None, ceil_mode=True,
                                          kernel=2, size=(8, 8)),
}


@pytest.mark.parametrize("case", POOL_NOT_FOLDABLE, ids=list(POOL_NOT_FOLDABLE))
def test_pool_padding_that_is_not_the_same_stays(case):
    args = POOL_NOT_FOLDABLE[case]
    g = pad_pool(**args)
    folded = check_pure(passes.fold_pad, g)
    assert kinds(folded) == kinds(g)
    assert "pad" in kinds(folded)
    pool = folded.layers[-1]
    assert pool.attrs["pads"] == args.get("pool_pads", (0, 0, 0, 0))
    assert pool.attrs["count_include_pad"] == args.get("count_include_pad", False)
    assert_same_outputs(g, folded, negative_heavy_inputs(g))


def test_the_cases_that_stay_would_be_wrong_if_folded():
    # The guard is needed: forcing the fold changes the outputs (ignoring the pass's conditions).
    for case in ("max_no_activation", "max_window_in_padding_only", "avg_not_counting_own_pads"):
        args = POOL_NOT_FOLDABLE[case]
        g = pad_pool(**args)
        forced = g.copy()
        pad, pool = forced.layers[-2], forced.layers[-1]
        p, own = pad.attrs["pads"], pool.attrs["pads"]
        pool.attrs["pads"] = (own[0] + p[2], own[1] + p[3], own[2] + p[6], own[3] + p[7])
        pool.inputs[0] = pad.inputs[0]
        forced.layers.remove(pad)
        del forced.tensors[pad.outputs[0]]
        inputs = negative_heavy_inputs(g)
        want, got = reference.run(g, inputs)["out"], reference.run(forced, inputs)["out"]
        assert want.shape == got.shape and not np.allclose(want, got), case


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_not_into_a_pool_when_the_padded_tensor_has_another_reader(mode):
    b = GraphBuilder()
    y = b.conv(b.input("x", (1, 3, 6, 6)), 3, activation=Activation("relu"))
    p = b.layer("pad", [y], pads=(0, 0, 1, 1, 0, 0, 1, 1), mode="constant", value=0.0)
    q = b.layer("pool2d", [p], mode=mode, kernel=(3, 3), strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1),
                ceil_mode=False, count_include_pad=False)
    b.binary("add", q, b.conv(p, 3, pads=(0, 0, 0, 0)), out="out")
    g = b.output("out")
    assert_not_folded(g, negative_heavy_inputs(g))


def test_simplify_folds_the_resnet_stem():
    # conv1 -> BN -> ReLU -> ZeroPadding2D(1) -> MaxPooling2D(3, 2), as Keras ResNet50 writes it.
    b = GraphBuilder()
    y = b.conv(b.input("x", (1, 3, 17, 17)), 8, k=7, strides=(2, 2), pads=(0, 0, 0, 0), name="conv1")
    y = b.act(b.scale_shift(y, name="bn"), "relu")
    p = b.layer("pad", [y], pads=(0, 0, 1, 1, 0, 0, 1, 1), mode="constant", value=0.0)
    b.layer("pool2d", [p], out="out", mode="max", kernel=(3, 3), strides=(2, 2), pads=(0, 0, 0, 0),
            dilations=(1, 1), ceil_mode=False, count_include_pad=False)
    g = b.output("out")
    simple = passes.simplify(g)
    assert kinds(simple) == ["conv2d", "pool2d"]
    assert simple.layers[0].activation.kind == "relu"
    assert simple.layers[1].attrs["pads"] == (1, 1, 1, 1)
    assert_same_outputs(g, simple, negative_heavy_inputs(g))


def test_simplify_folds_padding():
    g = pad_conv((0, 0, 1, 1, 0, 0, 1, 1), group=4)
    simple = passes.simplify(g)
    assert kinds(simple) == ["conv2d"]  # the ReLU fused too
    assert simple.layers[0].attrs["pads"] == (1, 1, 1, 1)
    assert_same_outputs(g, simple, random_inputs(g))
