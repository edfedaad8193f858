"""Data-movement routines: copies (reshape), transposes, concatenation, padding."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..ir import Graph, Layer, Layout
from .loops import AXES, collapse, logical_strides, physical_order, physical_shape, strides_of
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
    """Each input contributes one contiguous chunk per outer index of the (physical) concat axis."""
    out = graph.tensor(layer.outputs[0])
    order = physical_order(out.shape, out.layout)
    axis = order.index(layer.attrs["axis"])  # the concat axis's position in memory order
    chunks, offset = [], 0
    for name in layer.inputs:
        size = math.prod(physical_shape(graph.shape(name), out.layout)[axis:])
        chunks.append({"offset": offset, "size": size})
        offset += size
    return dict(axis=layer.attrs["axis"], outer=math.prod(physical_shape(out.shape, out.layout)[:axis]),
                total=offset, chunks=chunks)


def pack_to_layout(layer: Layer, graph: Graph, params: Params) -> list[np.ndarray | None]:
    """Constant 4-D inputs stored in the layout the routine runs in (they arrive row-major)."""
    layout = graph.tensor(layer.outputs[0]).layout
    packed: list[np.ndarray | None] = []
    for name in layer.inputs:
        tensor = graph.tensor(name) if name else None
        if tensor is not None and tensor.is_constant and len(tensor.shape) == 4 and layout is Layout.NHWC:
            packed.append(np.ascontiguousarray(tensor.data.transpose(AXES[Layout.NHWC])))
        else:
            packed.append(None)
    return packed


def flatten_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    """Reshape of an NHWC tensor: walk the output (row-major) and gather through the input's layout."""
    x = graph.tensor(layer.inputs[0])
    shape, (x_st, y_st) = collapse(x.shape, logical_strides(x.shape, x.layout), strides_of(x.shape))
    return dict(shape=shape, x_strides=x_st, y_strides=y_st)


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


BOTH = (Layout.NCHW, Layout.NHWC)

register(Routine(kind="copy", algorithm="ref", template="data/copy-ref-scalar.c.j2", layouts=BOTH,
                 context=copy_context, roles=("x",), shape_args=("SIZE",)))
register(Routine(kind="reshape", algorithm="ref", template="data/copy-ref-scalar.c.j2",
                 context=copy_context, roles=("x",), shape_args=("SIZE",)))
# An NHWC tensor flattened (to a rank other than 4) is reordered into the row-major result.
register(Routine(kind="reshape", algorithm="gather", template="data/transpose-ref-scalar.c.j2",
                 layouts=(Layout.NHWC,), context=flatten_context, roles=("x",), parallel=True,
                 accepts=lambda layer, graph: len(graph.shape(layer.inputs[0])) == 4
                 and len(graph.shape(layer.outputs[0])) != 4))
register(Routine(kind="transpose", algorithm="ref", template="data/transpose-ref-scalar.c.j2",
                 context=transpose_context, roles=("x",), parallel=True))
register(Routine(kind="concat", algorithm="ref", template="data/concat-ref-scalar.c.j2", layouts=BOTH,
                 context=concat_context, pack=pack_to_layout))
register(Routine(kind="pad", algorithm="ref", template="data/pad-ref-scalar.c.j2",
                 accepts=_reflect_fits, context=pad_context, roles=("x",)))
