"""Static arena planning: every intermediate tensor and scratch buffer gets a fixed offset.

Buffers whose lifetimes overlap never share bytes; the rest are packed greedily,
largest first, each into the tightest gap that holds it (TFLite Micro's greedy
planner works the same way). The plan is exact: its size is the arena the C needs.

An `Alias` places a buffer inside another instead of on its own (a concat's input written straight
into its chunk of the concat's output): the outermost buffer of a chain of aliases is placed, alive
from the first step that touches any of them to the last.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from .errors import GraphError
from .ir import MAX_BYTES

ALIGNMENT = 64  # a cache line; also enough for any SIMD load


@dataclass(frozen=True)
class Buffer:
    name: str
    size: int  # bytes
    first: int  # first step that touches it (inclusive)
    last: int  # last step that touches it (inclusive)

    def overlaps(self, other: Buffer) -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class ArenaPlan:
    offsets: dict[str, int]
    size: int
    alignment: int = ALIGNMENT

    def end(self, buffer: Buffer) -> int:
        return self.offsets[buffer.name] + buffer.size


@dataclass(frozen=True)
class Alias:
    """Buffer `name` lives `offset` bytes into buffer `base` (which may itself be an alias)."""

    name: str
    base: str
    offset: int


def align_up(value: int, alignment: int = ALIGNMENT) -> int:
    return -(-value // alignment) * alignment


def resolve(aliases: Mapping[str, Alias], name: str) -> tuple[str, int]:
    """The buffer that holds `name` after following its aliases, and `name`'s byte offset in it."""
    offset, seen = 0, {name}
    while name in aliases:
        alias = aliases[name]
        offset += alias.offset
        name = alias.base
        if name in seen:
            raise ValueError(f"aliases form a cycle through '{name}'")
        seen.add(name)
    return name, offset


def fold_aliases(buffers: list[Buffer], aliases: Iterable[Alias]) -> tuple[list[Buffer], dict[str, tuple[str, int]]]:
    """The buffers left to place once each alias is merged into the buffer that holds it (whose lifetime grows
    to cover the alias's), and where each alias lies: (holding buffer, byte offset)."""
    by_alias = {a.name: a for a in aliases}
    by_name = {b.name: b for b in buffers}
    inside = {name: resolve(by_alias, name) for name in by_alias}
    roots = {b.name: b for b in buffers if b.name not in inside}
    for name, (root, offset) in sorted(inside.items()):
        if name not in by_name or root not in roots:
            raise ValueError(f"alias '{name}': it or the buffer holding it ('{root}') is not a buffer to place")
        buf, holder = by_name[name], roots[root]
        if offset < 0 or offset + buf.size > holder.size:
            raise ValueError(f"alias '{name}' ({buf.size} bytes at {offset}) does not fit in '{root}' "
                             f"({holder.size} bytes)")
        roots[root] = replace(holder, first=min(holder.first, buf.first), last=max(holder.last, buf.last))
    return list(roots.values()), inside


def plan(buffers: list[Buffer], alignment: int = ALIGNMENT, aliases: Iterable[Alias] = ()) -> ArenaPlan:
    """Offsets for `buffers` such that buffers alive at the same step never overlap; each alias is placed
    inside the buffer that holds it."""
    placed_buffers, inside = fold_aliases(buffers, aliases)
    result = _place(placed_buffers, alignment)
    if result.size > MAX_BYTES:
        biggest = max(placed_buffers, key=lambda b: b.size)
        raise GraphError(f"the arena needs {result.size} bytes (largest buffer '{biggest.name}': {biggest.size} "
                         f"bytes), more than a 32-bit size_t addresses ({MAX_BYTES}); the model is too large "
                         "for the generated code")
    offsets = dict(result.offsets)
    for name, (root, offset) in inside.items():
        offsets[name] = offsets[root] + offset
    return ArenaPlan(offsets, result.size, alignment)


def _place(buffers: list[Buffer], alignment: int) -> ArenaPlan:
    order = sorted(buffers, key=lambda b: (-b.size, b.first, b.name))
    placed: list[tuple[int, Buffer]] = []
    offsets: dict[str, int] = {}
    for buf in order:
        if buf.size == 0:
            offsets[buf.name] = 0
            continue
        busy = sorted((off, off + other.size) for off, other in placed if other.overlaps(buf))
        best, best_gap, cursor = None, None, 0
        for start, end in busy:
            gap = start - cursor
            if gap >= buf.size and (best_gap is None or gap < best_gap):
                best, best_gap = cursor, gap
            cursor = max(cursor, align_up(end, alignment))
        offset = best if best is not None else cursor
        offsets[buf.name] = offset
        placed.append((offset, buf))
    size = max((off + b.size for off, b in placed), default=0)
    return ArenaPlan(offsets, size, alignment)


def peak_live_bytes(buffers: list[Buffer]) -> int:
    """A lower bound on any plan's size: the most bytes alive at one step."""
    steps = {b.first for b in buffers} | {b.last for b in buffers}
    return max((sum(b.size for b in buffers if b.first <= s <= b.last) for s in steps), default=0)
