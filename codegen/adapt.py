"""Adapt routines: conversions of a tensor between formats, inserted on edges by the routine path.

For now layout changes: NCHW <-> NHWC, and each native layout <-> each blocked one (NCHW16C, NCHW8C,
NCHW4C). They are registry entries like any routine (kind `layout`), so they are tested, profiled and
emitted the same way.
"""

from __future__ import annotations

from typing import Any

from .errors import RoutineError
from .ir import Graph, Layer, Layout
from .routines.loops import AXES, blocked_strides, collapse, logical_strides, physical_shape, strides_of
from .routines.registry import REGISTRY, Params, Routine, register

NATIVE = (Layout.NCHW, Layout.NHWC)
BLOCKED = tuple(layout for layout in Layout if layout.is_blocked)


def layout_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    """Walk the output in its physical order, gathering from the input's layout."""
    src, dst = layer.attrs["src"], layer.attrs["dst"]
    logical = graph.shape(layer.inputs[0])
    order = AXES[dst]
    x_st = logical_strides(logical, src)
    shape, (x_strides, y_strides) = collapse(tuple(logical[a] for a in order), tuple(x_st[a] for a in order),
                                             strides_of(physical_shape(logical, dst)))
    return dict(shape=shape, x_strides=x_strides, y_strides=y_strides)


def blocked_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    """Between a native layout and a blocked one: the blocked side's block size and the native side."""
    src, dst = layer.attrs["src"], layer.attrs["dst"]
    blocked, native = (dst, src) if dst.is_blocked else (src, dst)
    n, c, h, w = graph.shape(layer.inputs[0])
    return dict(N=n, C=c, H=h, W=w, B=blocked.block, CB=-(-c // blocked.block), native=native.value)


def _strides(shape: tuple[int, ...], layout: Layout) -> dict[str, int]:
    """Where element (n, c, h, w) lives: n*n + (c // b)*block + (c % b) + h*h + w*w (unblocked: b = 1, c*block)."""
    if layout.is_blocked:
        sn, sb, sh, sw = blocked_strides(shape, layout)
        return dict(n=sn, block=sb, b=layout.block, h=sh, w=sw)
    sn, sc, sh, sw = logical_strides(shape, layout)
    return dict(n=sn, block=sc, b=1, h=sh, w=sw)


def reference_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    src, dst = layer.attrs["src"], layer.attrs["dst"]
    shape = graph.shape(layer.inputs[0])
    n, c, h, w = shape
    return dict(N=n, C=c, H=h, W=w, CP=-(-c // dst.block) * dst.block, src=src.value, dst=dst.value,
                xs=_strides(shape, src), ys=_strides(shape, dst))


def _spatial(layer: Layer, graph: Graph) -> bool:
    return len(graph.shape(layer.inputs[0])) == 4 and Layout.ANY not in (layer.attrs["src"], layer.attrs["dst"])


def _converts(src: Layout, dst: Layout):
    return lambda layer, graph: layer.attrs["src"] is src and layer.attrs["dst"] is dst


def _declare(src: Layout, dst: Layout) -> Routine:
    if dst.is_blocked or src.is_blocked:
        template = "data/to-nchwc-ref-scalar.c.j2" if dst.is_blocked else "data/from-nchwc-ref-scalar.c.j2"
        context = blocked_context
    else:
        template, context = "data/transpose-ref-scalar.c.j2", layout_context
    return register(Routine(
        kind="layout", algorithm=f"{src.value}2{dst.value}", template=template,
        accepts=_converts(src, dst), context=context, roles=("x",), parallel=True,
    ))


# The portable one, for any pair: the C-level oracle of the others (and the layer kind's `ref` routine).
register(Routine(kind="layout", algorithm="ref", template="data/layout-ref-scalar.c.j2", accepts=_spatial,
                 context=reference_context, roles=("x",), parallel=True))
for _src, _dst in ((Layout.NCHW, Layout.NHWC), (Layout.NHWC, Layout.NCHW)):
    _declare(_src, _dst)
for _blocked in BLOCKED:
    for _native in NATIVE:
        _declare(_native, _blocked)
        _declare(_blocked, _native)


def layout_adapt(src: Layout, dst: Layout) -> Routine:
    for routine in REGISTRY:
        if routine.kind == "layout" and routine.algorithm == f"{src.value}2{dst.value}":
            return routine
    raise RoutineError(f"no adapt routine converts {src.value} to {dst.value}")


def has_adapt(src: Layout, dst: Layout) -> bool:
    return any(r.kind == "layout" and r.algorithm == f"{src.value}2{dst.value}" for r in REGISTRY)
