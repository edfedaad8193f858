"""Data-movement routines: copies (reshape), transposes, concatenation, padding."""

from __future__ import annotations

import math
from typing import Any

from ..ir import Graph, Layer
from .loops import collapse, strides_of
from .registry import Params, Routine, register


def copy_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    return dict(SIZE=math.prod(graph.shape(layer.inputs[0])))


def transpose_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    perm = layer.attrs["perm"]
    x_strides = strides_of(graph.shape(layer.inputs[0]))
    out = graph.shape(layer.outputs[0])
    shape, (x_st, y_st) = collapse(out, tuple(x_strides[p] for p in perm), strides_of(out))
    return dict(shape=shape, x_strides=x_st, y_strides=y_st)


def concat_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    axis = layer.attrs["axis"]
    out = graph.shape(layer.outputs[0])
    chunks, offset = [], 0
    for name in layer.inputs:
        size = math.prod(graph.shape(name)[axis:])
        chunks.append({"offset": offset, "size": size})
        offset += size
    return dict(axis=axis, outer=math.prod(out[:axis]), total=offset, chunks=chunks)


def pad_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    in_shape = graph.shape(layer.inputs[0])
    out_shape = graph.shape(layer.outputs[0])
    rank = len(in_shape)
    return dict(rank=rank, in_shape=in_shape, out_shape=out_shape, begins=layer.attrs["pads"][:rank],
                in_strides=strides_of(in_shape), out_strides=strides_of(out_shape),
                mode=layer.attrs["mode"], value=layer.attrs["value"])


def _reflect_fits(layer: Layer, graph: Graph) -> bool:
    """Reflection needs pads smaller than the axis (ONNX requires it too)."""
    if layer.attrs["mode"] != "reflect":
        return True
    shape, pads = graph.shape(layer.inputs[0]), layer.attrs["pads"]
    return all(pads[i] < d and pads[i + len(shape)] < d for i, d in enumerate(shape))


for kind in ("copy", "reshape"):
    register(Routine(kind=kind, algorithm="ref", template="data/copy-ref-scalar.c.j2",
                     context=copy_context, roles=("x",)))
register(Routine(kind="transpose", algorithm="ref", template="data/transpose-ref-scalar.c.j2",
                 context=transpose_context, roles=("x",)))
register(Routine(kind="concat", algorithm="ref", template="data/concat-ref-scalar.c.j2",
                 context=concat_context))
register(Routine(kind="pad", algorithm="ref", template="data/pad-ref-scalar.c.j2",
                 accepts=_reflect_fits, context=pad_context, roles=("x",)))
