"""codegen.memory.plan: buffers alive at the same step never share bytes; the arena is tight."""

from __future__ import annotations

import itertools
import random

import pytest

from codegen.memory import ALIGNMENT, ArenaPlan, Buffer, align_up, peak_live_bytes, plan


def assert_valid(buffers: list[Buffer], result: ArenaPlan, alignment: int = ALIGNMENT) -> None:
    """Every buffer placed, aligned, inside the arena, and disjoint from every buffer alive with it."""
    assert set(result.offsets) == {b.name for b in buffers}
    for b in buffers:
        off = result.offsets[b.name]
        assert off >= 0
        if b.size:
            assert off % alignment == 0, (b, off)
            assert off + b.size <= result.size, (b, off, result.size)
    live = [b for b in buffers if b.size]
    for a, b in itertools.combinations(live, 2):
        lifetimes_meet = a.first <= b.last and b.first <= a.last
        if lifetimes_meet:
            a0, b0 = result.offsets[a.name], result.offsets[b.name]
            assert a0 + a.size <= b0 or b0 + b.size <= a0, f"{a} at {a0} overlaps {b} at {b0}"
    assert result.size >= peak_live_bytes(buffers)
    assert result.size <= sum(align_up(b.size, alignment) for b in buffers)


def random_buffers(rng: random.Random, count: int, steps: int) -> list[Buffer]:
    buffers = []
    for i in range(count):
        first = rng.randrange(steps)
        last = min(steps - 1, first + rng.choice([0, 0, 1, 1, 2, 3, rng.randrange(steps)]))
        size = rng.choice([0, 1, 4, 63, 64, 65, 100, 128, 1000, 4096, rng.randrange(1, 5000)])
        buffers.append(Buffer(f"t{i}", size, first, last))
    return buffers


@pytest.mark.parametrize("seed", range(300))
def test_random_buffer_sets_never_overlap(seed):
    rng = random.Random(seed)
    buffers = random_buffers(rng, rng.randrange(1, 40), rng.randrange(1, 25))
    assert_valid(buffers, plan(buffers))


@pytest.mark.parametrize("alignment", [1, 4, 16, 64, 256])
def test_other_alignments(alignment):
    rng = random.Random(alignment)
    for _ in range(30):
        buffers = random_buffers(rng, 25, 12)
        result = plan(buffers, alignment)
        assert result.alignment == alignment
        assert_valid(buffers, result, alignment)


def test_plan_does_not_depend_on_the_order_of_the_list():
    rng = random.Random(7)
    buffers = random_buffers(rng, 30, 10)
    reference = plan(buffers)
    for _ in range(10):
        shuffled = list(buffers)
        rng.shuffle(shuffled)
        assert plan(shuffled) == reference


@pytest.mark.parametrize("size", [1, 64, 100, 4096])
@pytest.mark.parametrize("length", [2, 3, 10])
def test_chain_of_equal_buffers_needs_exactly_two_slots(size, length):
    # Layer i reads buffer i-1 and writes buffer i: neighbours overlap, the rest do not.
    buffers = [Buffer(f"t{i}", size, i, i + 1) for i in range(length)]
    result = plan(buffers)
    assert_valid(buffers, result)
    assert len(set(result.offsets.values())) == 2
    assert result.size == align_up(size) + size


def test_disjoint_lifetimes_share_one_slot():
    buffers = [Buffer(f"t{i}", 256, i, i) for i in range(8)]
    result = plan(buffers)
    assert set(result.offsets.values()) == {0}
    assert result.size == 256 == peak_live_bytes(buffers)


def test_all_alive_together_stack_up():
    sizes = [10, 200, 64, 65, 1]
    buffers = [Buffer(f"t{i}", s, 0, 3) for i, s in enumerate(sizes)]
    result = plan(buffers)
    assert_valid(buffers, result)
    # Each buffer but the topmost fills an aligned slot; the best choice of top wastes the most padding.
    optimum = sum(align_up(s) for s in sizes) - max(align_up(s) - s for s in sizes)
    assert result.size == optimum == 513


def test_small_buffer_reuses_a_freed_gap():
    # A big buffer dies at step 1; a later small buffer fits in its place.
    buffers = [Buffer("big", 1024, 0, 1), Buffer("keep", 64, 0, 3), Buffer("small", 512, 2, 3)]
    result = plan(buffers)
    assert_valid(buffers, result)
    assert result.size == 1024 + 64


def test_peak_live_bytes_is_the_largest_step_total():
    buffers = [Buffer("a", 10, 0, 2), Buffer("b", 20, 1, 1), Buffer("c", 30, 2, 4), Buffer("d", 5, 4, 4)]
    # step 0: 10, step 1: 30, step 2: 40, step 3: 30, step 4: 35
    assert peak_live_bytes(buffers) == 40


@pytest.mark.parametrize("buffers", [
    [],
    [Buffer("empty", 0, 0, 5)],
    [Buffer("e0", 0, 0, 1), Buffer("e1", 0, 0, 1)],
])
def test_zero_size_buffers_take_no_space(buffers):
    result = plan(buffers)
    assert result.size == 0
    assert_valid(buffers, result)


def test_zero_size_buffer_among_others():
    buffers = [Buffer("a", 100, 0, 1), Buffer("zero", 0, 0, 1), Buffer("b", 100, 1, 2)]
    result = plan(buffers)
    assert_valid(buffers, result)
    assert result.size == align_up(100) + 100
    assert "zero" in result.offsets


def test_end_and_align_up():
    result = plan([Buffer("a", 100, 0, 0)])
    assert result.end(Buffer("a", 100, 0, 0)) == result.offsets["a"] + 100
    assert [align_up(v) for v in (0, 1, 64, 65, 128)] == [0, 64, 64, 128, 128]
    assert align_up(5, 4) == 8


def test_buffer_overlaps_is_inclusive():
    a = Buffer("a", 1, 0, 2)
    assert a.overlaps(Buffer("b", 1, 2, 3))
    assert not a.overlaps(Buffer("c", 1, 3, 4))
    assert Buffer("d", 1, 5, 5).overlaps(Buffer("e", 1, 5, 5))
