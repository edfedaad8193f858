"""Fully connected and matrix-product routines."""

from __future__ import annotations

from typing import Any

from ..ir import Graph, Layer
from .loops import broadcast_strides, collapse
from .registry import Params, Routine, register


def dense_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    n, k = graph.shape(layer.inputs[0])
    m = graph.shape(layer.inputs[1])[0]
    return dict(N=n, K=k, M=m, has_bias=len(layer.inputs) > 2 and bool(layer.inputs[2]))


def matmul_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    a, b = graph.shape(layer.inputs[0]), graph.shape(layer.inputs[1])
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    m, k, n = a2[-2], a2[-1], b2[-1]
    rank = max(len(a2), len(b2)) - 2
    batch = tuple(max(x, y) for x, y in zip((1,) * (rank - len(a2) + 2) + a2[:-2],
                                              (1,) * (rank - len(b2) + 2) + b2[:-2]))
    a_st = tuple(s * m * k for s in broadcast_strides(a2[:-2], batch))
    b_st = tuple(s * k * n for s in broadcast_strides(b2[:-2], batch))
    y_st = tuple(s * m * n for s in broadcast_strides(batch, batch))
    shape, (a_st, b_st, y_st) = collapse(batch, a_st, b_st, y_st) if batch else ((), [(), (), ()])
    if shape == (1,):
        shape, a_st, b_st, y_st = (), (), (), ()
    return dict(M=m, K=k, N=n, batch=shape, a_strides=a_st, b_strides=b_st, y_strides=y_st)


register(Routine(kind="dense", algorithm="ref", template="dense/ref-scalar.c.j2",
                 context=dense_context, roles=("x", "w", "b")))
register(Routine(kind="matmul", algorithm="ref", template="matmul/ref-scalar.c.j2",
                 context=matmul_context, roles=("a", "b")))
