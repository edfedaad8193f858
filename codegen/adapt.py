"""Adapt routines: conversions of a tensor between formats, inserted on edges by the routine path.

For now the layout changes between NCHW and NHWC. They are registry entries like any
routine (kind `layout`), so they are tested, profiled and emitted the same way.
"""

from __future__ import annotations

from typing import Any

from .errors import RoutineError
from .ir import Graph, Layer, Layout
from .routines.loops import AXES, collapse, logical_strides, physical_shape, strides_of
from .routines.registry import REGISTRY, Params, Routine, register


def layout_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    """Walk the output in its physical order, gathering from the input's layout."""
    src, dst = layer.attrs["src"], layer.attrs["dst"]
    logical = graph.shape(layer.inputs[0])
    order = AXES[dst]
    x_st = logical_strides(logical, src)
    shape, (x_strides, y_strides) = collapse(tuple(logical[a] for a in order), tuple(x_st[a] for a in order),
                                             strides_of(physical_shape(logical, dst)))
    return dict(shape=shape, x_strides=x_strides, y_strides=y_strides)


def _declare(src: Layout, dst: Layout) -> Routine:
    return register(Routine(
        kind="layout", algorithm=f"{src.value}2{dst.value}", template="data/transpose-ref-scalar.c.j2",
        accepts=lambda layer, graph: layer.attrs["src"] is src and layer.attrs["dst"] is dst,
        context=layout_context, roles=("x",), parallel=True,
    ))


for _src, _dst in ((Layout.NCHW, Layout.NHWC), (Layout.NHWC, Layout.NCHW)):
    _declare(_src, _dst)


def layout_adapt(src: Layout, dst: Layout) -> Routine:
    for routine in REGISTRY:
        if routine.kind == "layout" and routine.algorithm == f"{src.value}2{dst.value}":
            return routine
    raise RoutineError(f"no adapt routine converts {src.value} to {dst.value}")
