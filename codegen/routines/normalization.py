"""Softmax and local response normalisation."""

from __future__ import annotations

import math
from typing import Any

from ..ir import Graph, Layer, Layout
from .loops import physical_order, physical_shape
from .registry import ContextFn, Params, Predicate, Routine, register
from .simd import AVX2, AVX512, NEON, Vector


def softmax_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    x = graph.tensor(layer.inputs[0])
    shape = physical_shape(x.shape, x.layout)
    axis = physical_order(x.shape, x.layout).index(layer.attrs["axis"])
    return dict(OUTER=math.prod(shape[:axis]), AXIS=shape[axis], INNER=math.prod(shape[axis + 1:]))


def lrn_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    shape, a = graph.shape(layer.inputs[0]), layer.attrs
    size = a["size"]
    return dict(N=shape[0], C=shape[1], S=math.prod(shape[2:]), SIZE=size, BEFORE=(size - 1) // 2,
                AFTER=math.ceil((size - 1) / 2), alpha=a["alpha"], beta=a["beta"], bias=a["bias"])


register(Routine(kind="softmax", algorithm="ref", template="normalization/softmax-ref-scalar.c.j2",
                 layouts=(Layout.NCHW, Layout.NHWC), context=softmax_context, roles=("x",),
                 shape_args=("OUTER", "AXIS", "INNER")))
register(Routine(kind="lrn", algorithm="ref", layouts=(Layout.NCHW,),
                 template="normalization/lrn-ref-scalar-nchw.c.j2", context=lrn_context, roles=("x",),
                 accepts=lambda layer, graph: len(graph.shape(layer.inputs[0])) >= 2))


# -- vector routines: one template, one instance per ISA -------------------------------------------

def _with_vector(vector: Vector, base: ContextFn) -> ContextFn:
    def context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
        return dict(base(layer, graph, params), v=vector)
    return context


def _softmax_axis(layout: Layout, contiguous: bool) -> Predicate:
    """Softmax whose axis, with the input in `layout`, is the innermost physical one (`contiguous`: rows) or not
    (columns). NHWC only claims 4-D inputs (elsewhere it is the row-major one)."""
    def accepts(layer: Layer, graph: Graph) -> bool:
        shape = graph.shape(layer.inputs[0])
        if layout is Layout.NHWC and len(shape) != 4:
            return False
        innermost = physical_order(shape, layout)[-1] == layer.attrs["axis"]
        return innermost == contiguous
    return accepts


for _vector in (AVX512, AVX2, NEON):
    for _layout in (Layout.ANY, Layout.NHWC):
        register(Routine(kind="softmax", algorithm="rows", template="normalization/softmax-rows-simd.c.j2",
                         layouts=(_layout,), **_vector.routine_fields, accepts=_softmax_axis(_layout, True),
                         context=_with_vector(_vector, softmax_context), roles=("x",), parallel=True))
        register(Routine(kind="softmax", algorithm="cols", template="normalization/softmax-cols-simd.c.j2",
                         layouts=(_layout,), **_vector.routine_fields, accepts=_softmax_axis(_layout, False),
                         context=_with_vector(_vector, softmax_context), roles=("x",), parallel=True))
