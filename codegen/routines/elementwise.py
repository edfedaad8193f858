"""Element-wise routines: activations, broadcasting binary operators, per-channel affine."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..ir import Graph, Layer, Layout
from .loops import collapse, logical_strides, physical_order, strides_of
from .registry import ContextFn, PackFn, Params, Predicate, Routine, register
from .simd import AVX2, AVX512, NEON, Vector

SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def activation_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    return dict(SIZE=math.prod(graph.shape(layer.inputs[0])))


def _binary_loops(layer: Layer, graph: Graph, layout_of: Callable[[str], Layout]
                  ) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """The collapsed loop nest (shape; a, b, y strides) with each tensor stored in layout_of(name)."""
    out_name = layer.outputs[0]
    out = graph.shape(out_name)
    order = physical_order(out, layout_of(out_name))

    def operand(name: str) -> tuple[int, ...]:
        tensor = graph.tensor(name)
        padded = (1,) * (len(out) - len(tensor.shape)) + tensor.shape
        own = logical_strides(padded, layout_of(name)) if len(tensor.shape) == len(out) else strides_of(padded)
        return tuple(0 if d == 1 and o != 1 else s for d, o, s in zip(padded, out, own))

    strides = [operand(layer.inputs[0]), operand(layer.inputs[1]), logical_strides(out, layout_of(out_name))]
    return collapse(tuple(out[a] for a in order), *(tuple(s[a] for a in order) for s in strides))


def binary_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    """Walk the output in its physical order; each operand is read through its own layout's strides."""
    shape, (a_st, b_st, y_st) = _binary_loops(layer, graph, lambda name: graph.tensor(name).layout)
    return dict(shape=shape, a_strides=a_st, b_strides=b_st, y_strides=y_st, operator=SYMBOLS[layer.attrs["op"]])


def scale_shift_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    shape = graph.shape(layer.inputs[0])
    return dict(N=shape[0], C=shape[1], S=math.prod(shape[2:]))


def scale_shift_nhwc_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    shape = graph.shape(layer.inputs[0])
    return dict(P=shape[0] * math.prod(shape[2:]), C=shape[1])


BOTH = (Layout.NCHW, Layout.NHWC)

register(Routine(kind="activation", algorithm="ref", template="elementwise/activation-ref-scalar.c.j2",
                 layouts=BOTH, context=activation_context, roles=("x",), parallel=True, shape_args=("SIZE",)))
register(Routine(kind="binary", algorithm="ref", template="elementwise/binary-ref-scalar.c.j2",
                 layouts=BOTH, context=binary_context, roles=("a", "b"), parallel=True))
register(Routine(kind="scale_shift", algorithm="ref", layouts=(Layout.NCHW,),
                 template="elementwise/scaleshift-ref-scalar-nchw.c.j2",
                 accepts=lambda layer, graph: len(graph.shape(layer.inputs[0])) >= 2,
                 context=scale_shift_context, roles=("x", "scale", "shift"), shape_args=("N", "C", "S")))
register(Routine(kind="scale_shift", algorithm="ref", layouts=(Layout.NHWC,),
                 template="elementwise/scaleshift-ref-scalar-nhwc.c.j2",
                 accepts=lambda layer, graph: len(graph.shape(layer.inputs[0])) == 4,
                 context=scale_shift_nhwc_context, roles=("x", "scale", "shift"), shape_args=("P", "C")))


# -- vector routines: one template, one instance per ISA -------------------------------------------

def _with_vector(vector: Vector, base: ContextFn) -> ContextFn:
    def context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
        return dict(base(layer, graph, params), v=vector)
    return context


PERIOD_LIMIT = 1024  # floats of one packed channel period (lcm of C and the vector width): 4 KB per operand


def _period(channels: int, vector: Vector) -> int:
    return math.lcm(channels, vector.width)


def _periodic_scale_shift(vector: Vector) -> Predicate:
    """NHWC scale_shift layers with constant per-channel scale and shift whose period fits PERIOD_LIMIT."""
    def accepts(layer: Layer, graph: Graph) -> bool:
        shape = graph.shape(layer.inputs[0])
        return (len(shape) == 4 and _period(shape[1], vector) <= PERIOD_LIMIT
                and all(graph.is_constant(name) and graph.tensor(name).data.size == shape[1]
                        for name in layer.inputs[1:3]))
    return accepts


def _periodic_context(vector: Vector) -> ContextFn:
    def context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
        base = scale_shift_nhwc_context(layer, graph, params)
        return dict(base, v=vector, Q=_period(base["C"], vector))
    return context


def _pack_periodic(vector: Vector) -> PackFn:
    def pack(layer: Layer, graph: Graph, params: Params) -> list[np.ndarray | None]:
        channels = graph.shape(layer.inputs[0])[1]
        repeats = _period(channels, vector) // channels
        return [None, *(np.tile(graph.tensor(name).data.reshape(-1).astype(np.float32), repeats)
                        for name in layer.inputs[1:3])]
    return pack


def _vector_binary(layout: Layout) -> Predicate:
    """Binary layers whose innermost physical axis (tensors bound to `layout` as the routine will have them;
    constants stay row-major) every operand reads contiguously or broadcasts: same shapes, a per-channel or
    per-row operand along that axis, a scalar. NHWC only claims 4-D outputs (elsewhere it is the flat one)."""
    def accepts(layer: Layer, graph: Graph) -> bool:
        out = graph.shape(layer.outputs[0])
        if layout is Layout.NHWC and len(out) != 4:
            return False

        def layout_of(name: str) -> Layout:
            return layout if len(graph.shape(name)) == 4 and not graph.is_constant(name) else Layout.ANY

        shape, (a_st, b_st, y_st) = _binary_loops(layer, graph, layout_of)
        return shape[-1] == 1 or (y_st[-1] == 1 and a_st[-1] in (0, 1) and b_st[-1] in (0, 1))
    return accepts


for _vector in (AVX512, AVX2, NEON):
    register(Routine(kind="activation", algorithm="simd", template="elementwise/activation-simd.c.j2",
                     layouts=BOTH, **_vector.routine_fields, context=_with_vector(_vector, activation_context),
                     roles=("x",), parallel=True))
    for _layout in (Layout.ANY, Layout.NHWC):
        register(Routine(kind="binary", algorithm="simd", template="elementwise/binary-simd.c.j2",
                         layouts=(_layout,), **_vector.routine_fields, accepts=_vector_binary(_layout),
                         context=_with_vector(_vector, binary_context), roles=("a", "b"), parallel=True))
    register(Routine(kind="scale_shift", algorithm="simd", template="elementwise/scaleshift-simd-nhwc.c.j2",
                     layouts=(Layout.NHWC,), **_vector.routine_fields, accepts=_periodic_scale_shift(_vector),
                     context=_periodic_context(_vector), pack=_pack_periodic(_vector), roles=("x", "scale", "shift"),
                     parallel=True))
