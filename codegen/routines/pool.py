"""Pooling and reduction routines."""

from __future__ import annotations

import math
from typing import Any

from ..ir import Graph, Layer, Layout
from .loops import broadcast_strides, collapse, strides_of
from .registry import ContextFn, Params, Routine, register
from .simd import AVX2, AVX512, NEON, Vector


def pool2d_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    n, c, h, w = graph.shape(layer.inputs[0])
    _, _, oh, ow = graph.shape(layer.outputs[0])
    a = layer.attrs
    (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = a["kernel"], a["strides"], a["pads"], a["dilations"]
    return dict(N=n, C=c, H=h, W=w, OH=oh, OW=ow, KH=kh, KW=kw, SH=sh, SW=sw, PT=pt, PL=pl, PB=pb, PR=pr,
                DH=dh, DW=dw, mode=a["mode"], count_include_pad=a["count_include_pad"])


def global_avgpool_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    shape = graph.shape(layer.inputs[0])
    return dict(N=shape[0], C=shape[1], P=shape[0] * shape[1], S=math.prod(shape[2:]))


def reduce_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    x = graph.shape(layer.inputs[0])
    axes = layer.attrs["axes"]
    kept = tuple(1 if i in axes else d for i, d in enumerate(x))
    shape, (x_st, y_st) = collapse(x, strides_of(x), broadcast_strides(kept, x))
    return dict(shape=shape, x_strides=x_st, y_strides=y_st, axes=axes, OUT_SIZE=math.prod(kept),
                COUNT=math.prod(x) // math.prod(kept))


# The context values the reference templates can take as arguments (shapes=args).
POOL2D_SHAPES = ("N", "C", "H", "W", "OH", "OW", "KH", "KW", "SH", "SW", "PT", "PL", "PB", "PR", "DH", "DW")

register(Routine(kind="pool2d", algorithm="ref", layouts=(Layout.NCHW,),
                 template="pool/pool2d-ref-scalar-nchw.c.j2", context=pool2d_context, roles=("x",),
                 shape_args=POOL2D_SHAPES))
register(Routine(kind="global_avgpool", algorithm="ref", layouts=(Layout.NCHW,),
                 template="pool/globalavgpool-ref-scalar-nchw.c.j2", context=global_avgpool_context,
                 roles=("x",), shape_args=("P", "S")))
register(Routine(kind="pool2d", algorithm="ref", layouts=(Layout.NHWC,),
                 template="pool/pool2d-ref-scalar-nhwc.c.j2", context=pool2d_context, roles=("x",), parallel=True,
                 shape_args=POOL2D_SHAPES))
register(Routine(kind="global_avgpool", algorithm="ref", layouts=(Layout.NHWC,),
                 template="pool/globalavgpool-ref-scalar-nhwc.c.j2", context=global_avgpool_context,
                 roles=("x",), accepts=lambda layer, graph: len(graph.shape(layer.inputs[0])) == 4,
                 shape_args=("N", "C", "S")))
register(Routine(kind="reduce", algorithm="ref", template="pool/reduce-ref-scalar.c.j2",
                 accepts=lambda layer, graph: layer.attrs["op"] == "mean", context=reduce_context,
                 roles=("x",)))


# -- vector routines: NHWC, across channels; one template, one instance per ISA ------------------------

def _with_vector(vector: Vector, base: ContextFn) -> ContextFn:
    def context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
        return dict(base(layer, graph, params), v=vector)
    return context


for _vector in (AVX512, AVX2, NEON):
    register(Routine(kind="pool2d", algorithm="simd", layouts=(Layout.NHWC,), **_vector.routine_fields,
                     template="pool/pool2d-simd-nhwc.c.j2", context=_with_vector(_vector, pool2d_context),
                     roles=("x",), parallel=True))
    register(Routine(kind="global_avgpool", algorithm="simd", layouts=(Layout.NHWC,), **_vector.routine_fields,
                     template="pool/globalavgpool-simd-nhwc.c.j2",
                     context=_with_vector(_vector, global_avgpool_context), roles=("x",), parallel=True,
                     accepts=lambda layer, graph: len(graph.shape(layer.inputs[0])) == 4))
