"""Winograd convolution F(m x m, 3 x 3), NHWC, on the vector GEMM micro-kernel.

Each (m+2) x (m+2) input tile d becomes V = B^T d B; the weights are transformed at compile time
into U = G g G^T; the alpha^2 = (m+2)^2 element-wise products, summed over input channels, are
alpha^2 GEMMs [tiles][C] x [C][M]; Y = A^T M A gives each m x m output tile. Multiplications per
output fall from 9 to alpha^2 / m^2: 4 for F(2x2), 2.25 for F(4x4).

Tiles are processed in blocks small enough that a block's transformed input and products stay in
the core's cache (the `block_kib` parameter, tuned by profiling); each thread works on its own
blocks with its own scratch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir import Graph, Layer, Layout
from .conv import _vector_context, conv2d_context
from .packing import panels
from .registry import ContextFn, PackFn, Params, Routine, ScratchFn, register
from .simd import AVX2, AVX512, NEON, Vector


@dataclass(frozen=True)
class Transform:
    """The matrices of F(m, 3): input B^T (alpha x alpha), weights G (alpha x 3), output A^T (m x alpha)."""

    m: int
    bt: np.ndarray
    g: np.ndarray
    at: np.ndarray

    @property
    def alpha(self) -> int:
        return self.m + 2


# Interpolation points 0, 1, -1 and infinity.
F2 = Transform(
    2,
    bt=np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
    g=np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64),
    at=np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64),
)
# Points 0, 1, -1, 2, -2 and infinity (Lavin and Gray, 2016): small coefficients keep f32 error low.
F4 = Transform(
    4,
    bt=np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                 [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64),
    g=np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64),
    at=np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], np.float64),
)
TRANSFORMS = (F2, F4)
# Error bound per output tile size, relative to the largest output: F(4x4)'s transform coefficients
# (up to 8 and 1/24) round more; measured ~1e-4 over 512 channels, within the 1e-3 Winograd may use.
TOLERANCE = {2: None, 4: 5e-4}


def correlate_1d(tf: Transform, d: np.ndarray, g: np.ndarray) -> np.ndarray:
    """m outputs of the 3-tap correlation of d (alpha values) with g, through the transform (for tests)."""
    return tf.at @ ((tf.g @ g) * (tf.bt @ d))


def applies(layer: Layer, graph: Graph) -> bool:
    a = layer.attrs
    return (a["group"] == 1 and tuple(graph.shape(layer.inputs[1])[2:]) == (3, 3)
            and tuple(a["strides"]) == (1, 1) and tuple(a["dilations"]) == (1, 1))


def _tiles(tf: Transform, layer: Layer, graph: Graph) -> tuple[int, int]:
    _, _, oh, ow = graph.shape(layer.outputs[0])
    return -(-oh // tf.m), -(-ow // tf.m)


def _block(tf: Transform, mr: int, layer: Layer, graph: Graph, params: Params) -> int:
    """Tiles per block: a multiple of MR whose transformed inputs and products fit in `block_kib`
    (0: every tile in one block, so each transformed weight is read once, for maps with few tiles)."""
    c, m = graph.shape(layer.inputs[0])[1], graph.shape(layer.inputs[1])[0]
    th, tw = _tiles(tf, layer, graph)
    every = -(-th * tw // mr) * mr
    if not params["block_kib"]:
        return every
    per_tile = tf.alpha ** 2 * (c + m) * 4
    return min(max(1, params["block_kib"] * 1024 // per_tile // mr) * mr, every)


def _scratch(tf: Transform, mr: int) -> ScratchFn:
    def scratch(layer: Layer, graph: Graph, params: Params) -> int:
        c, m = graph.shape(layer.inputs[0])[1], graph.shape(layer.inputs[1])[0]
        return 4 * tf.alpha ** 2 * _block(tf, mr, layer, graph, params) * (c + m)
    return scratch


def _context(tf: Transform, vector: Vector, mr: int, nr: int) -> ContextFn:
    def context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
        ctx = conv2d_context(layer, graph, params)
        th, tw = _tiles(tf, layer, graph)
        block = _block(tf, mr, layer, graph, params)
        ctx.update(_vector_context(vector, layer, graph), MR=mr, NR=nr, NV=nr // vector.width,
                   ROWS=block, TH=th, TW=tw, T=th * tw, BT=block, PANELS=-(-ctx["M"] // nr),
                   TM=tf.m, ALPHA=tf.alpha, A2=tf.alpha ** 2, BTM=tf.bt.tolist(), ATM=tf.at.tolist(),
                   SCRATCH=_scratch(tf, mr)(layer, graph, params))
        return ctx
    return context


def _pack(tf: Transform, nr: int) -> PackFn:
    """U = G g G^T for every (m, c): [alpha^2][C][M] in NR-wide panels [alpha^2][M/NR][C][NR]; bias as is."""
    def pack(layer: Layer, graph: Graph, params: Params) -> list[np.ndarray | None]:
        w = graph.tensor(layer.inputs[1]).data.astype(np.float64)
        m, c = w.shape[:2]
        u = np.einsum("ik,mckl,jl->ijcm", tf.g, w, tf.g).reshape(tf.alpha ** 2, c, m)
        return [None, panels(u, nr), None]
    return pack


for _tf in TRANSFORMS:
    for _vector, _tiles_of in ((AVX512, ((12, 32), (6, 64))), (AVX2, ((6, 16),)), (NEON, ((6, 16),))):
        for _mr, _nr in _tiles_of:
            register(Routine(
                kind="conv2d", algorithm=f"winograd{_tf.m}x{_tf.m}-gemm{_mr}x{_nr}", layouts=(Layout.NHWC,),
                **_vector.compute_fields, template="conv2d/winograd-nhwc-simd.c.j2",
                params={"block_kib": (0, 1024)}, accepts=applies, context=_context(_tf, _vector, _mr, _nr),
                scratch=_scratch(_tf, _mr), pack=_pack(_tf, _nr), roles=("x", "w", "b"), parallel=True,
                scratch_per_part=True, tolerance=TOLERANCE[_tf.m],
            ))
