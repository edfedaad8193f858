"""Static arena planning: every intermediate tensor and scratch buffer gets a fixed offset.

Buffers whose lifetimes overlap never share bytes; the rest are packed greedily,
largest first, each into the tightest gap that holds it (TFLite Micro's greedy
planner works the same way). The plan is exact: its size is the arena the C needs.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def align_up(value: int, alignment: int = ALIGNMENT) -> int:
    return -(-value // alignment) * alignment


def plan(buffers: list[Buffer], alignment: int = ALIGNMENT) -> ArenaPlan:
    """Offsets for `buffers` such that buffers alive at the same step never overlap."""
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
