"""Helpers that turn N-d index arithmetic into a few constant-bound C loops."""

from __future__ import annotations

from ..ir import Layout


def strides_of(shape: tuple[int, ...]) -> tuple[int, ...]:
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return tuple(reversed(out))


def broadcast_strides(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Strides of `shape` read as `out_shape` under numpy broadcasting (0 on broadcast axes)."""
    padded = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    own = strides_of(padded)
    return tuple(0 if d == 1 and o != 1 else s for d, o, s in zip(padded, out_shape, own))


def collapse(shape: tuple[int, ...], *strides: tuple[int, ...]) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """Merge adjacent axes that every operand walks contiguously; drop size-1 axes.

    Returns the collapsed shape and each operand's strides over it. A shape of
    (2, 3, 4) that all operands read densely becomes (24,).
    """
    axes = [i for i, d in enumerate(shape) if d != 1]
    if not axes:
        return (1,), [(0,) for _ in strides]
    dims = [shape[axes[0]]]
    st = [[s[axes[0]]] for s in strides]
    for i in axes[1:]:
        if all(cur[-1] == s[i] * shape[i] for cur, s in zip(st, strides)):
            dims[-1] *= shape[i]
            for cur, s in zip(st, strides):
                cur[-1] = s[i]
        else:
            dims.append(shape[i])
            for cur, s in zip(st, strides):
                cur.append(s[i])
    return tuple(dims), [tuple(s) for s in st]


# Axis order of each layout, as indices into the logical NCHW shape.
AXES = {Layout.NCHW: (0, 1, 2, 3), Layout.NHWC: (0, 2, 3, 1)}


def physical_shape(shape: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    return tuple(shape[a] for a in AXES[layout]) if layout in AXES and len(shape) == 4 else shape


def physical_order(shape: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    """The logical axes in the order they are stored (outermost first)."""
    return AXES[layout] if layout in AXES and len(shape) == 4 else tuple(range(len(shape)))


def logical_strides(shape: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    """Element strides of each logical (NCHW) axis of a tensor stored in `layout`."""
    if layout not in AXES or len(shape) != 4:
        return strides_of(shape)
    axes = AXES[layout]
    phys = strides_of(physical_shape(shape, layout))
    out = [0] * 4
    for position, axis in enumerate(axes):
        out[axis] = phys[position]
    return tuple(out)
