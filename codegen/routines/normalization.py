"""Softmax and local response normalisation."""

from __future__ import annotations

import math
from typing import Any

from ..ir import Graph, Layer, Layout
from .loops import physical_order, physical_shape
from .registry import Params, Routine, register


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
                 layouts=(Layout.NCHW, Layout.NHWC), context=softmax_context, roles=("x",)))
register(Routine(kind="lrn", algorithm="ref", layouts=(Layout.NCHW,),
                 template="normalization/lrn-ref-scalar-nchw.c.j2", context=lrn_context, roles=("x",),
                 accepts=lambda layer, graph: len(graph.shape(layer.inputs[0])) >= 2))
