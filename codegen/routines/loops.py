"""Helpers that turn N-d index arithmetic into a few constant-bound C loops."""

from __future__ import annotations

import math

from ..ir import Layout, Tensor


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


# Axis order of each layout, as indices into the logical NCHW shape. A blocked layout (NCHW16C ...) names
# the channel axis twice: its block (outer) and its lane within the block (innermost).
AXES = {Layout.NCHW: (0, 1, 2, 3), Layout.NHWC: (0, 2, 3, 1),
        **{layout: (0, 1, 2, 3, 1) for layout in Layout if layout.is_blocked}}


def _spatial(shape: tuple[int, ...], layout: Layout) -> bool:
    return layout in AXES and len(shape) == 4


def physical_shape(shape: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    """The dimensions as stored, outermost first: NCHW16C's (N, ceil(C/16), H, W, 16)."""
    if not _spatial(shape, layout):
        return shape
    if layout.is_blocked:
        n, c, h, w = shape
        return (n, -(-c // layout.block), h, w, layout.block)
    return tuple(shape[a] for a in AXES[layout])


def physical_size(shape: tuple[int, ...], layout: Layout) -> int:
    """Elements the buffer holds: the logical count, or more where a blocked layout pads the channels."""
    return math.prod(physical_shape(shape, layout))


def physical_nbytes(tensor: Tensor) -> int:
    """Bytes of the tensor's buffer in its own layout (its padding included)."""
    return physical_size(tensor.shape, tensor.layout) * tensor.dtype.numpy.itemsize


def physical_order(shape: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    """The logical axes in the order they are stored (outermost first); see AXES for blocked layouts."""
    return AXES[layout] if _spatial(shape, layout) else tuple(range(len(shape)))


def logical_strides(shape: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    """Element strides of each logical (NCHW) axis of a tensor stored in `layout`.

    A blocked layout has no single channel stride: use blocked_strides for those."""
    if not _spatial(shape, layout):
        return strides_of(shape)
    if layout.is_blocked:
        raise ValueError(f"a tensor in {layout.value} has no channel stride (see blocked_strides)")
    axes = AXES[layout]
    phys = strides_of(physical_shape(shape, layout))
    out = [0] * 4
    for position, axis in enumerate(axes):
        out[axis] = phys[position]
    return tuple(out)


def blocked_strides(shape: tuple[int, ...], layout: Layout) -> tuple[int, ...]:
    """Strides of (n, channel block, h, w) of a 4-D tensor in a blocked layout: channel c of pixel
    (n, h, w) is at n*s0 + (c // b)*s1 + h*s2 + w*s3 + c % b."""
    if not (_spatial(shape, layout) and layout.is_blocked):
        raise ValueError(f"{layout.value} is not a blocked layout of a 4-D tensor")
    return strides_of(physical_shape(shape, layout))[:4]
