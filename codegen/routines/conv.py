"""Convolution routines."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ir import Graph, Layer, Layout
from .registry import Params, Routine, register


def conv2d_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    n, c, h, w = graph.shape(layer.inputs[0])
    m, cg, kh, kw = graph.shape(layer.inputs[1])
    _, _, oh, ow = graph.shape(layer.outputs[0])
    a = layer.attrs
    (sh, sw), (pt, pl, _, _), (dh, dw) = a["strides"], a["pads"], a["dilations"]
    group = a["group"]
    return dict(N=n, C=c, H=h, W=w, M=m, CG=cg, MG=m // group, KH=kh, KW=kw, OH=oh, OW=ow,
                SH=sh, SW=sw, PT=pt, PL=pl, DH=dh, DW=dw, G=group,
                has_bias=len(layer.inputs) > 2 and bool(layer.inputs[2]))


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


def im2col_scratch(layer: Layer, graph: Graph, params: Params) -> int:
    if _is_pointwise(layer, graph):
        return 0
    ctx = conv2d_context(layer, graph, params)
    return 4 * ctx["C"] * ctx["KH"] * ctx["KW"] * ctx["OH"] * ctx["OW"]


def _ungrouped(layer: Layer, graph: Graph) -> bool:
    return layer.attrs["group"] == 1


TILES = {"tile_n": (64, 512), "tile_k": (32, 256)}

register(Routine(
    kind="conv2d", algorithm="ref", layouts=(Layout.NCHW,), template="conv2d/ref-scalar-nchw.c.j2",
    context=conv2d_context, roles=("x", "w", "b"),
))
register(Routine(
    kind="conv2d", algorithm="direct", layouts=(Layout.NHWC,), template="conv2d/direct-scalar-nhwc.c.j2",
    context=direct_nhwc_context, pack=pack_kkcm, roles=("x", "w", "b"),
))
register(Routine(
    kind="conv2d", algorithm="im2col", layouts=(Layout.NCHW,), template="conv2d/im2col-gemm-scalar-nchw.c.j2",
    params=TILES, accepts=_ungrouped, context=im2col_context, scratch=im2col_scratch, roles=("x", "w", "b"),
))
register(Routine(
    kind="conv2d", algorithm="im2col", layouts=(Layout.NHWC,), template="conv2d/im2col-gemm-scalar-nhwc.c.j2",
    params=TILES, accepts=_ungrouped, context=im2col_context, scratch=im2col_scratch, pack=pack_kcm_nhwc,
    roles=("x", "w", "b"),
))
