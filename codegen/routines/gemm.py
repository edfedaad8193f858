"""Fully connected and matrix-product routines."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ir import NO_ACTIVATION, Graph, Layer
from .loops import broadcast_strides, collapse
from .packing import padded_bias, panels
from .registry import ContextFn, PackFn, Params, Routine, register
from .simd import AVX2, AVX512, NEON, VECTOR_ACTIVATIONS, Vector


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
                 context=dense_context, roles=("x", "w", "b"), shape_args=("N", "K", "M")))
register(Routine(kind="matmul", algorithm="ref", template="matmul/ref-scalar.c.j2",
                 context=matmul_context, roles=("a", "b"), shape_args=("M", "K", "N")))


# -- vector micro-kernels: a dense layer is a 1x1 convolution over N rows ----------------------------

def _dense_as_conv(vector: Vector, mr: int, nr: int) -> ContextFn:
    def context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
        n, k = graph.shape(layer.inputs[0])
        m = graph.shape(layer.inputs[1])[0]
        return dict(N=1, H=n, W=1, C=k, P=n, K=k, M=m, direct=True, MR=mr, NR=nr, NV=nr // vector.width,
                    ROWS=mr * params["row_tiles"], v=vector, has_bias=len(layer.inputs) > 2 and bool(layer.inputs[2]),
                    has_residual=False, KC=k,
                    vector_activation=layer.activation.kind in VECTOR_ACTIVATIONS, none_activation=NO_ACTIVATION)
    return context


def _pack_dense_panels(nr: int) -> PackFn:
    """[M][K] -> panels [M/NR][K][NR] (M zero-padded); bias padded alike."""
    def pack(layer: Layer, graph: Graph, params: Params) -> list[np.ndarray | None]:
        w = graph.tensor(layer.inputs[1]).data
        return [None, panels(w.T, nr), padded_bias(layer, graph, nr)]
    return pack


for _vector, _tiles in ((AVX512, ((4, 64), (1, 64))), (AVX2, ((4, 24), (1, 32))), (NEON, ((4, 16), (1, 16)))):
    for _mr, _nr in _tiles:
        register(Routine(
            kind="dense", algorithm=f"gemm{_mr}x{_nr}", **_vector.routine_fields,
            template="conv2d/gemm-nhwc-simd.c.j2", params={"row_tiles": (8,)},
            context=_dense_as_conv(_vector, _mr, _nr), pack=_pack_dense_panels(_nr), roles=("x", "w", "b"),
            parallel=True,
        ))
