"""Convolution routines."""

from __future__ import annotations

from typing import Any

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


register(Routine(
    kind="conv2d", algorithm="ref", layout=Layout.NCHW, template="conv2d/ref-scalar-nchw.c.j2",
    context=conv2d_context, roles=("x", "w", "b"),
))
