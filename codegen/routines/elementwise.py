"""Element-wise routines: activations, broadcasting binary operators, per-channel affine."""

from __future__ import annotations

import math
from typing import Any

from ..ir import Graph, Layer, Layout
from .loops import broadcast_strides, collapse, strides_of
from .registry import Params, Routine, register

SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def activation_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    return dict(SIZE=math.prod(graph.shape(layer.inputs[0])))


def binary_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    out = graph.shape(layer.outputs[0])
    a_st = broadcast_strides(graph.shape(layer.inputs[0]), out)
    b_st = broadcast_strides(graph.shape(layer.inputs[1]), out)
    shape, (a_st, b_st, y_st) = collapse(out, a_st, b_st, strides_of(out))
    return dict(shape=shape, a_strides=a_st, b_strides=b_st, y_strides=y_st,
                symbol=SYMBOLS[layer.attrs["op"]])


def scale_shift_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    shape = graph.shape(layer.inputs[0])
    return dict(N=shape[0], C=shape[1], S=math.prod(shape[2:]))


register(Routine(kind="activation", algorithm="ref", template="elementwise/activation-ref-scalar.c.j2",
                 context=activation_context, roles=("x",)))
register(Routine(kind="binary", algorithm="ref", template="elementwise/binary-ref-scalar.c.j2",
                 context=binary_context, roles=("a", "b")))
register(Routine(kind="scale_shift", algorithm="ref", layout=Layout.NCHW,
                 template="elementwise/scaleshift-ref-scalar-nchw.c.j2",
                 accepts=lambda layer, graph: len(graph.shape(layer.inputs[0])) >= 2,
                 context=scale_shift_context, roles=("x", "scale", "shift")))
