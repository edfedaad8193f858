"""Element-wise routines: activations, broadcasting binary operators, per-channel affine."""

from __future__ import annotations

import math
from typing import Any

from ..ir import Graph, Layer, Layout
from .loops import collapse, logical_strides, physical_order, strides_of
from .registry import Params, Routine, register

SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def activation_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    return dict(SIZE=math.prod(graph.shape(layer.inputs[0])))


def binary_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    """Walk the output in its physical order; each operand is read through its own layout's strides."""
    out_name = layer.outputs[0]
    out = graph.shape(out_name)
    order = physical_order(out, graph.tensor(out_name).layout)

    def operand(name: str) -> tuple[int, ...]:
        tensor = graph.tensor(name)
        padded = (1,) * (len(out) - len(tensor.shape)) + tensor.shape
        own = logical_strides(padded, tensor.layout) if len(tensor.shape) == len(out) else strides_of(padded)
        return tuple(0 if d == 1 and o != 1 else s for d, o, s in zip(padded, out, own))

    strides = [operand(layer.inputs[0]), operand(layer.inputs[1]), logical_strides(out, graph.tensor(out_name).layout)]
    shape, (a_st, b_st, y_st) = collapse(tuple(out[a] for a in order), *(tuple(s[a] for a in order) for s in strides))
    return dict(shape=shape, a_strides=a_st, b_strides=b_st, y_strides=y_st, operator=SYMBOLS[layer.attrs["op"]])


def scale_shift_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    shape = graph.shape(layer.inputs[0])
    return dict(N=shape[0], C=shape[1], S=math.prod(shape[2:]))


BOTH = (Layout.NCHW, Layout.NHWC)

register(Routine(kind="activation", algorithm="ref", template="elementwise/activation-ref-scalar.c.j2",
                 layouts=BOTH, context=activation_context, roles=("x",), parallel=True))
register(Routine(kind="binary", algorithm="ref", template="elementwise/binary-ref-scalar.c.j2",
                 layouts=BOTH, context=binary_context, roles=("a", "b"), parallel=True))
register(Routine(kind="scale_shift", algorithm="ref", layouts=(Layout.NCHW,),
                 template="elementwise/scaleshift-ref-scalar-nchw.c.j2",
                 accepts=lambda layer, graph: len(graph.shape(layer.inputs[0])) >= 2,
                 context=scale_shift_context, roles=("x", "scale", "shift")))
