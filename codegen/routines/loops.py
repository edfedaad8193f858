"""Helpers that turn N-d index arithmetic into a few constant-bound C loops."""

from __future__ import annotations

import math


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


def size(shape: tuple[int, ...]) -> int:
    return math.prod(shape)
