"""Direct convolution in the blocked channel layouts (oneDNN's and TVM's NCHWxc): NCHW16C for AVX-512,
NCHW8C for AVX2, NCHW4C for NEON, the block being one vector of channels.

Activations are [N][C/b][H][W][b] (codegen.ir.Layout), weights are packed at compile time into
[M/b][C/b][KH][KW][b_in][b_out], so the micro-kernel keeps OW_T output pixels x b output channels in
OW_T vector accumulators and, per input channel, broadcasts one input value per pixel against one
weight vector: no patch matrix, no scratch, and consecutive layers in the same layout need no adapt.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ir import NO_ACTIVATION, Activation, Graph, Layer, Layout
from .conv import conv2d_context
from .packing import padded_bias
from .registry import ContextFn, PackFn, Params, Routine, register
from .simd import AVX2, AVX512, NEON, VECTOR_ACTIVATIONS, Vector

BLOCKED = {16: Layout.NCHW16C, 8: Layout.NCHW8C, 4: Layout.NCHW4C}

# Output pixels per register tile: OW_T accumulators + one weight vector + one broadcast must fit the
# register file (32 on AVX-512 and NEON, 16 on AVX2). 7, 14 and 28 divide ResNet's 56/28/14/7 widths.
OW_TILES = {AVX512: (7, 14, 28), AVX2: (4, 7, 14), NEON: (4, 7, 14)}


def keeps_zero(act: Activation) -> bool:
    """Whether the activation maps 0 to 0 (then padding channels stay zero without being masked)."""
    from ..reference import apply_activation

    return float(apply_activation(np.zeros(1), act)[0]) == 0.0


def segments(ow_total: int, lo: int, hi: int, tile: int) -> tuple[list[tuple[int, int]], int, int]:
    """Split output columns [0, ow_total) into edge chunks placed at compile time and a run of full tiles.

    Columns [lo, hi) have every kernel tap inside the input. Returns (chunks, start, count): `count`
    full tiles of `tile` columns from `start` (no bounds checks), and (first column, width) chunks of
    at most `tile` columns covering the rest, whose out-of-input taps are left out when generated."""
    count = max(hi - lo, 0) // tile
    start = lo
    chunks = []
    for begin, end in ((0, lo), (lo + count * tile, ow_total)):
        for c in range(begin, end, tile):
            chunks.append((c, min(tile, end - c)))
    return chunks, start, count


def _context(vector: Vector) -> ContextFn:
    def context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
        ctx = conv2d_context(layer, graph, params)
        b, tile = vector.width, params["ow_tile"]
        ow, w, pl, sw, kw, dw = ctx["OW"], ctx["W"], ctx["PL"], ctx["SW"], ctx["KW"], ctx["DW"]
        lo = min(-(-pl // sw), ow)  # first column whose leftmost tap is inside
        last = w - 1 + pl - (kw - 1) * dw  # columns ow with ow*SW <= last have their rightmost tap inside
        hi = max(lo, min(ow, last // sw + 1)) if last >= 0 else lo
        chunks, start, count = segments(ow, lo, hi, tile)
        act = layer.activation
        ctx.update(v=vector, B=b, T=tile, CB=-(-ctx["C"] // b), MB=-(-ctx["M"] // b), chunks=chunks,
                   tile_start=start, tile_count=count,
                   vector_activation=act.kind in VECTOR_ACTIVATIONS, none_activation=NO_ACTIVATION,
                   zero_padding=ctx["M"] % b != 0 and not keeps_zero(act))
        return ctx
    return context


def _pack(block: int) -> PackFn:
    """[M][C][KH][KW] -> [M/b][C/b][KH][KW][b_in][b_out], both channel counts zero-padded; bias padded."""
    def pack(layer: Layer, graph: Graph, params: Params) -> list[np.ndarray | None]:
        w = graph.tensor(layer.inputs[1]).data
        m, c, kh, kw = w.shape
        mb, cb = -(-m // block), -(-c // block)
        full = np.zeros((mb * block, cb * block, kh, kw), np.float32)
        full[:m, :c] = w
        packed = full.reshape(mb, block, cb, block, kh, kw).transpose(0, 2, 4, 5, 3, 1)
        return [None, np.ascontiguousarray(packed), padded_bias(layer, graph, block)]
    return pack


def _accepts(layer: Layer, graph: Graph) -> bool:
    return layer.attrs["group"] == 1 and len(graph.shape(layer.inputs[0])) == 4


for _vector, _tiles in OW_TILES.items():
    register(Routine(
        kind="conv2d", algorithm="direct", layouts=(BLOCKED[_vector.width],), **_vector.compute_fields,
        template="conv2d/direct-nchwc-simd.c.j2", params={"ow_tile": _tiles}, accepts=_accepts,
        context=_context(_vector), pack=_pack(_vector.width), roles=("x", "w", "b"), parallel=True,
    ))
