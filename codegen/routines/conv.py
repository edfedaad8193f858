"""Convolution routines."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..ir import NO_ACTIVATION, Graph, Layer, Layout
from .packing import padded_bias, panels
from .registry import ContextFn, PackFn, Params, Routine, ScratchFn, has_residual, register
from .simd import AVX2, AVX512, NEON, VECTOR_ACTIVATIONS, Vector


def conv2d_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    n, c, h, w = graph.shape(layer.inputs[0])
    m, cg, kh, kw = graph.shape(layer.inputs[1])
    _, _, oh, ow = graph.shape(layer.outputs[0])
    a = layer.attrs
    (sh, sw), (pt, pl, _, _), (dh, dw) = a["strides"], a["pads"], a["dilations"]
    group = a["group"]
    return dict(N=n, C=c, H=h, W=w, M=m, CG=cg, MG=m // group, KH=kh, KW=kw, OH=oh, OW=ow,
                SH=sh, SW=sw, PT=pt, PL=pl, DH=dh, DW=dw, G=group,
                has_bias=len(layer.inputs) > 2 and bool(layer.inputs[2]), has_residual=has_residual(layer))


def direct_nhwc_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    ctx = conv2d_context(layer, graph, params)
    ctx["depthwise"] = ctx["CG"] == 1 and ctx["MG"] == 1
    return ctx


def pack_kkcm(layer: Layer, graph: Graph, params: Params) -> list[np.ndarray | None]:
    """[M][C/g][KH][KW] -> [KH][KW][C/g][M]: output channels innermost."""
    w = graph.tensor(layer.inputs[1]).data
    return [None, np.ascontiguousarray(w.transpose(2, 3, 1, 0)), None]


def im2col_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    ctx = conv2d_context(layer, graph, params)
    ctx.update(P=ctx["OH"] * ctx["OW"], K=ctx["C"] * ctx["KH"] * ctx["KW"], direct=_is_pointwise(layer, graph))
    return ctx


def pack_kcm_nhwc(layer: Layer, graph: Graph, params: Params) -> list[np.ndarray | None]:
    """[M][C][KH][KW] -> [KH*KW*C][M], the row order of the NHWC patch matrix."""
    w = graph.tensor(layer.inputs[1]).data
    return [None, np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0])), None]


def _is_pointwise(layer: Layer, graph: Graph) -> bool:
    """1x1, stride 1, no padding: the input already is the GEMM operand."""
    a = layer.attrs
    kh, kw = graph.shape(layer.inputs[1])[2:]
    return (kh, kw) == (1, 1) and tuple(a["strides"]) == (1, 1) and not any(a["pads"])


def patch_bytes(layer: Layer, graph: Graph, rows: int) -> int:
    """Bytes of `rows` rows of the layer's patch matrix (none for a plain 1x1, which reads its input)."""
    if _is_pointwise(layer, graph):
        return 0
    _, c, kh, kw = graph.shape(layer.inputs[1])
    return 4 * c * layer.attrs["group"] * kh * kw * rows


def im2col_scratch(layer: Layer, graph: Graph, params: Params) -> int:
    """The whole patch matrix: one row per output pixel."""
    return patch_bytes(layer, graph, math.prod(graph.shape(layer.outputs[0])[2:]))


def _ungrouped(layer: Layer, graph: Graph) -> bool:
    return layer.attrs["group"] == 1


TILES = {"tile_n": (64, 512), "tile_k": (32, 256)}

register(Routine(
    kind="conv2d", algorithm="ref", layouts=(Layout.NCHW,), template="conv2d/ref-scalar-nchw.c.j2",
    shape_args=("N", "C", "H", "W", "M", "CG", "MG", "KH", "KW", "OH", "OW", "SH", "SW", "PT", "PL", "DH", "DW"),
    context=conv2d_context, roles=("x", "w", "b", "r"), fuses_residual=True,
))
register(Routine(
    kind="conv2d", algorithm="direct", layouts=(Layout.NHWC,), template="conv2d/direct-scalar-nhwc.c.j2",
    context=direct_nhwc_context, pack=pack_kkcm, roles=("x", "w", "b"),
))
# On x86 with AVX2 the vector GEMMs below take every layer these do (any pixel count) at several times the
# speed: tuning skips them there (their four tile points per layout were a third of a MobileNet's profiling).
register(Routine(
    kind="conv2d", algorithm="im2col", layouts=(Layout.NCHW,), template="conv2d/im2col-gemm-scalar-nchw.c.j2",
    params=TILES, accepts=_ungrouped, context=im2col_context, scratch=im2col_scratch, roles=("x", "w", "b"),
    superseded_by=AVX2.requires,
))
register(Routine(
    kind="conv2d", algorithm="im2col", layouts=(Layout.NHWC,), template="conv2d/im2col-gemm-scalar-nhwc.c.j2",
    params=TILES, accepts=_ungrouped, context=im2col_context, scratch=im2col_scratch, pack=pack_kcm_nhwc,
    roles=("x", "w", "b"), superseded_by=AVX2.requires,
))


# -- vector micro-kernels ------------------------------------------------------------------------

def _vector_context(vector: Vector, layer: Layer, graph: Graph) -> dict[str, Any]:
    return dict(v=vector, vector_activation=layer.activation.kind in VECTOR_ACTIVATIONS,
                none_activation=NO_ACTIVATION)


def _gemm_context(vector: Vector, mr: int, nr: int) -> ContextFn:
    def context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
        ctx = im2col_context(layer, graph, params)
        ctx.update(_vector_context(vector, layer, graph), MR=mr, NR=nr, NV=nr // vector.width,
                   ROWS=mr * params["row_tiles"], KC=k_block(ctx["K"], nr), PREFETCH=PREFETCH_STEPS)
        return ctx
    return context


# How many k steps ahead the GEMM micro-kernel prefetches its weights: about 400 cycles of FMAs at 6x64,
# a memory latency. Measured on ResNet50's 14x14 and 7x7 1x1 layers with weights flushed to memory:
# 9-16% faster; no change where the weights are cached.
PREFETCH_STEPS = 32

# Bytes of one weight panel's K block that should stay in L1 while a block of rows passes over it.
PANEL_BLOCK_BYTES = 32 * 1024


def k_block(k: int, nr: int) -> int:
    """K steps per block of a GEMM with NR-wide panels: all of K when it fits (or nearly), else what fits L1."""
    kc = max(8, PANEL_BLOCK_BYTES // (4 * nr) // 8 * 8)
    return k if k <= kc + kc // 2 else kc


def _pack_panels(nr: int) -> PackFn:
    """[M][C][KH][KW] -> panels [M/NR][KH*KW*C][NR] (M zero-padded to a multiple of NR; block-major when the
    sum is K-blocked, see packing.panels); bias padded alike."""
    def pack(layer: Layer, graph: Graph, params: Params) -> list[np.ndarray | None]:
        w = graph.tensor(layer.inputs[1]).data
        k = w[0].size
        return [None, panels(w.transpose(2, 3, 1, 0).reshape(k, w.shape[0]), nr, k_block(k, nr)),
                padded_bias(layer, graph, nr)]
    return pack


def _patch_block_scratch(mr: int) -> ScratchFn:
    """Per part: the patches of one block of MR * row_tiles output pixels (none for a plain 1x1)."""
    def scratch(layer: Layer, graph: Graph, params: Params) -> int:
        return patch_bytes(layer, graph, params["row_tiles"] * mr)
    return scratch


def _conv_vector_context(vector: Vector, extra: Callable[[dict[str, Any], Params], dict[str, Any]]) -> ContextFn:
    """conv2d_context with the vector's fields and what `extra` derives from it and the parameters."""
    def context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
        ctx = conv2d_context(layer, graph, params)
        ctx.update(_vector_context(vector, layer, graph))
        ctx.update(extra(ctx, params))
        return ctx
    return context


def _dw_context(vector: Vector) -> ContextFn:
    return _conv_vector_context(vector, lambda ctx, params: dict(CP=-(-ctx["C"] // vector.width) * vector.width))


def _pack_depthwise(width: int) -> PackFn:
    """[C][1][KH][KW] -> [KH*KW][C padded to the vector width]."""
    def pack(layer: Layer, graph: Graph, params: Params) -> list[np.ndarray | None]:
        w = graph.tensor(layer.inputs[1]).data
        c = w.shape[0]
        padded = -(-c // width) * width
        taps = np.zeros((w.shape[2] * w.shape[3], padded), np.float32)
        taps[:, :c] = w.reshape(c, -1).T
        return [None, taps, padded_bias(layer, graph, width)]
    return pack


def _depthwise(layer: Layer, graph: Graph) -> bool:
    m, cg = graph.shape(layer.inputs[1])[:2]
    return cg == 1 and layer.attrs["group"] == m


STEM_CHANNELS = 8  # at most this many input channels: direct-nhwc unrolls taps x channels x pixels


def _few_channels_in(layer: Layer, graph: Graph) -> bool:
    """An ungrouped convolution of an image with few channels (a stem), where the GEMM's patch matrix would
    copy the image KH x KW times over for a short K."""
    return _ungrouped(layer, graph) and graph.shape(layer.inputs[0])[1] <= STEM_CHANNELS


def _direct_nhwc_context(vector: Vector) -> ContextFn:
    return _conv_vector_context(vector, lambda ctx, params: dict(OWB=params["pixels"]))


def _pack_output_blocks(width: int) -> PackFn:
    """[M][C][KH][KW] -> [M/width][KH][KW][C][width] (M zero-padded to a multiple of width); bias padded alike."""
    def pack(layer: Layer, graph: Graph, params: Params) -> list[np.ndarray | None]:
        w = graph.tensor(layer.inputs[1]).data
        m = w.shape[0]
        padded = np.zeros((-(-m // width) * width, *w.shape[1:]), np.float32)
        padded[:m] = w
        blocks = padded.reshape(-1, width, *w.shape[1:]).transpose(0, 3, 4, 2, 1)
        return [None, np.ascontiguousarray(blocks), padded_bias(layer, graph, width)]
    return pack


def _few_pixels(layer: Layer, graph: Graph) -> bool:
    """An ungrouped convolution with at most two output pixels: a matrix-vector product (a squeeze-excite or
    classifier 1x1 after global pooling), where a tile of several rows would compute mostly padding."""
    return _ungrouped(layer, graph) and math.prod(graph.shape(layer.outputs[0])[2:]) <= 2


def _many_pixels(layer: Layer, graph: Graph) -> bool:
    return _ungrouped(layer, graph) and not _few_pixels(layer, graph)


# (MR, NR) register tiles per ISA: MR*NR/width accumulators + NR/width weights + 1 broadcast fit the register file.
# The 1-row tiles only take layers of one or two pixels (_few_pixels), the others only the rest.
GEMM_TILES = {AVX512: ((6, 64), (12, 32), (8, 32), (1, 64)), AVX2: ((6, 16), (4, 24), (1, 32)),
              NEON: ((6, 16), (8, 8), (1, 16))}

for _vector, _tiles in GEMM_TILES.items():
    for _mr, _nr in _tiles:
        register(Routine(
            kind="conv2d", algorithm=f"gemm{_mr}x{_nr}", layouts=(Layout.NHWC,), **_vector.compute_fields,
            template="conv2d/gemm-nhwc-simd.c.j2", params={"row_tiles": (8, 32) if _mr > 1 else (1,)},
            accepts=_few_pixels if _mr == 1 else _many_pixels, context=_gemm_context(_vector, _mr, _nr),
            scratch=_patch_block_scratch(_mr), scratch_per_part=True, pack=_pack_panels(_nr),
            roles=("x", "w", "b", "r"), parallel=True, fuses_residual=True,
        ))
    register(Routine(
        kind="conv2d", algorithm="dwconv", layouts=(Layout.NHWC,), **_vector.routine_fields,
        template="conv2d/dwconv-rows-nhwc-simd.c.j2", accepts=_depthwise,
        context=_dw_context(_vector), pack=_pack_depthwise(_vector.width), roles=("x", "w", "b"), parallel=True,
    ))
    register(Routine(
        kind="conv2d", algorithm="direct", layouts=(Layout.NHWC,), **_vector.compute_fields,
        template="conv2d/direct-nhwc-simd.c.j2", params={"pixels": (4, 8)}, accepts=_few_channels_in,
        context=_direct_nhwc_context(_vector), pack=_pack_output_blocks(_vector.width), roles=("x", "w", "b"),
        parallel=True,
    ))
