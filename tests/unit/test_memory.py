"""codegen.memory.plan: buffers alive at the same step never share bytes; the arena is tight."""

from __future__ import annotations

import itertools
import random

import pytest
from graphkit import GraphBuilder

from codegen import emit
from codegen.ir import Layout
from codegen.memory import ALIGNMENT, Alias, ArenaPlan, Buffer, align_up, fold_aliases, peak_live_bytes, plan, resolve
from codegen.selection import materialize, reference_selection, selections_for


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


# -- aliases: a buffer placed inside another (in-place concatenation) -------------------------------------

def assert_valid_with_aliases(buffers: list[Buffer], aliases: list[Alias], result: ArenaPlan) -> None:
    """Each alias lies at its offset inside the buffer holding it; buffers of different holders never share
    bytes while the holders (alive from the first step any of their aliases is touched to the last) live."""
    by_name = {b.name: b for b in buffers}
    table = {a.name: a for a in aliases}
    holders = {b.name: resolve(table, b.name) for b in buffers}
    span: dict[str, tuple[int, int]] = {}
    for b in buffers:
        root = holders[b.name][0]
        first, last = span.get(root, (b.first, b.last))
        span[root] = (min(first, b.first), max(last, b.last))
    for b in buffers:
        root, offset = holders[b.name]
        assert result.offsets[b.name] == result.offsets[root] + offset
        assert offset + b.size <= by_name[root].size
    roots = [Buffer(r, by_name[r].size, *span[r]) for r in span]
    assert_valid(roots, ArenaPlan({r.name: result.offsets[r.name] for r in roots}, result.size, result.alignment))


def test_aliases_lie_inside_their_holder_which_lives_for_all_of_them():
    # Two producers write their halves of a concat's output at steps 0 and 1; the concat itself (step 2)
    # disappears; the output is read at step 3. `early` dies at step 0, `late` is born at step 4.
    buffers = [Buffer("a", 100, 0, 2), Buffer("b", 156, 1, 2), Buffer("out", 256, 2, 3),
               Buffer("early", 512, 0, 0), Buffer("late", 512, 4, 4)]
    aliases = [Alias("a", "out", 0), Alias("b", "out", 100)]
    result = plan(buffers, aliases=aliases)
    assert result.offsets["a"] == result.offsets["out"]
    assert result.offsets["b"] == result.offsets["out"] + 100
    assert_valid_with_aliases(buffers, aliases, result)
    assert result.size == 512 + 256  # `out` is alive at step 0, next to `early`
    placed, inside = fold_aliases(buffers, aliases)
    assert {b.name: (b.first, b.last) for b in placed}["out"] == (0, 3)
    assert inside == {"a": ("out", 0), "b": ("out", 100)}


def test_aliasing_a_concat_needs_less_than_copying_it():
    copy = [Buffer("a", 4096, 0, 2), Buffer("b", 4096, 1, 2), Buffer("out", 8192, 2, 3)]
    in_place = plan(copy, aliases=[Alias("a", "out", 0), Alias("b", "out", 4096)])
    assert plan(copy).size == 16384 and in_place.size == 8192


def test_alias_chains_add_their_offsets():
    buffers = [Buffer("inner", 16, 0, 1), Buffer("mid", 64, 1, 2), Buffer("outer", 256, 2, 3),
               Buffer("other", 64, 0, 3)]
    aliases = [Alias("inner", "mid", 16), Alias("mid", "outer", 128)]
    result = plan(buffers, aliases=aliases)
    assert resolve({a.name: a for a in aliases}, "inner") == ("outer", 144)
    assert result.offsets["inner"] == result.offsets["outer"] + 144
    assert_valid_with_aliases(buffers, aliases, result)


@pytest.mark.parametrize("aliases, message", [
    ([Alias("a", "out", 200)], "does not fit"),
    ([Alias("a", "nowhere", 0)], "not a buffer"),
    ([Alias("a", "out", 0), Alias("out", "a", 0)], "cycle"),
])
def test_impossible_aliases_are_refused(aliases, message):
    with pytest.raises(ValueError, match=message):
        plan([Buffer("a", 100, 0, 1), Buffer("out", 256, 1, 2)], aliases=aliases)


@pytest.mark.parametrize("seed", range(150))
def test_random_concats_in_place_never_overlap(seed):
    """Random buffers, some of them holders with a few aliases packed one after another inside them."""
    rng = random.Random(seed)
    steps = rng.randrange(2, 20)
    buffers = random_buffers(rng, rng.randrange(0, 20), steps)
    aliases = []
    for h in range(rng.randrange(1, 5)):
        parts = [rng.choice([1, 4, 60, 64, 100, 1000]) for _ in range(rng.randrange(1, 4))]
        at = rng.randrange(steps)
        offset = 0
        for i, size in enumerate(parts):
            first = rng.randrange(0, at + 1)
            buffers.append(Buffer(f"h{h}.{i}", size, first, at))
            aliases.append(Alias(f"h{h}.{i}", f"h{h}", offset))
            offset += size
        buffers.append(Buffer(f"h{h}", offset, at, min(steps - 1, at + rng.randrange(3))))
    if rng.random() < 0.3:  # a holder concatenated into another
        aliases.append(Alias("h0", "nest", 8))
        buffers.append(Buffer("nest", next(b.size for b in buffers if b.name == "h0") + 8, 0, steps))
    result = plan(buffers, aliases=aliases)
    assert_valid_with_aliases(buffers, aliases, result)


# -- which concats the emitter does in place -----------------------------------------------------------

def fire_graph(batch: int = 1, *, shared_squeeze: bool = False):
    """squeeze conv -> (1x1 conv, 3x3 conv) -> channel concat -> conv, NCHW."""
    b = GraphBuilder("fire")
    x = b.input("x", (batch, 3, 8, 8), Layout.NCHW)
    s = b.conv(x, 4, k=1, pads=(0, 0, 0, 0), name="squeeze")
    e1 = b.conv(s, 6, k=1, pads=(0, 0, 0, 0), name="expand1")
    e3 = b.conv(s, 5, k=3, name="expand3")
    parts = [e1, e3, s] if shared_squeeze else [e1, e3]
    cat = b.layer("concat", parts, name="cat", axis=1)
    b.conv(cat, 4, k=1, pads=(0, 0, 0, 0), name="head", out="y")
    return b.output("y")


def lowered(graph, layout: Layout = Layout.NCHW):
    chosen = {}
    for layer in graph.layers:
        options = [s for s in selections_for(layer, graph) if s.layout in (layout, Layout.ANY)]
        chosen[layer.name] = reference_selection(layer, graph) if layout is Layout.NCHW else options[0]
    return materialize(graph, chosen)


def test_a_fire_modules_concat_is_done_in_place():
    graph, instances = lowered(fire_graph())
    found = emit.in_place_concats(graph, instances)
    cat = next(i for i, inst in enumerate(instances) if inst.layer.kind == "concat")
    assert found.elided == {cat: "cat"}
    out = instances[cat].layer.outputs[0]
    e1, e3 = instances[cat].layer.inputs
    assert found.aliases == {e1: Alias(e1, out, 0), e3: Alias(e3, out, 6 * 8 * 8 * 4)}
    program = emit.lower(graph, instances, "fire")
    assert [s.instance.layer.name for s in program.steps] == ["squeeze", "expand1", "expand3", "head"]
    assert program.in_place == ["cat"]
    assert program.arena.offsets[e3] == program.arena.offsets[out] + 6 * 8 * 8 * 4
    copied = emit.lower(graph, instances, "fire", in_place_concat=False)
    assert program.arena.size < copied.arena.size
    assert len(copied.steps) == 5


@pytest.mark.parametrize("case", ["batch 2", "nhwc", "two readers", "graph input", "graph output"])
def test_concats_that_must_be_copied(case):
    if case == "batch 2":  # every input is two chunks of the output, one per image
        graph, instances = lowered(fire_graph(batch=2))
    elif case == "nhwc":  # channels are innermost: each pixel interleaves the inputs
        graph, instances = lowered(fire_graph(), Layout.NHWC)
        assert any(inst.routine.layouts == (Layout.NCHW, Layout.NHWC) for inst in instances)
    elif case == "two readers":  # the squeeze output is also read by both expand convolutions
        graph, instances = lowered(fire_graph(shared_squeeze=True))
    else:
        b = GraphBuilder("io")
        x = b.input("x", (1, 2, 4, 4), Layout.NCHW)
        c = b.conv(x, 3, name="conv")
        parts = [x, c] if case == "graph input" else [c, b.conv(x, 2, name="conv2")]
        y = b.layer("concat", parts, name="cat", axis=1, out="y")
        graph, instances = lowered(b.output(y, c) if case == "graph output" else b.output(y))
    assert emit.in_place_concats(graph, instances).elided == {}
    program = emit.lower(graph, instances, "m")
    assert "concat" in [s.instance.layer.kind for s in program.steps] and program.in_place == []


def test_a_concat_into_a_graph_output_writes_the_callers_buffer():
    b = GraphBuilder("to_output")
    x = b.input("x", (1, 2, 4, 4), Layout.NCHW)
    parts = [b.conv(x, 3, name="left"), b.conv(x, 5, name="right")]
    graph, instances = lowered(b.output(b.layer("concat", parts, name="cat", axis=1, out="y")))
    program = emit.lower(graph, instances, "m")
    assert [s.args[-1] for s in program.steps] == ["outputs[0]", "outputs[0] + 48"]
    assert program.arena.size == 0


def test_nested_concats_resolve_to_the_outermost_buffer():
    b = GraphBuilder("nested")
    x = b.input("x", (1, 2, 4, 4), Layout.NCHW)
    inner = b.layer("concat", [b.conv(x, 3, name="a"), b.conv(x, 1, name="b")], name="inner", axis=1)
    outer = b.layer("concat", [b.conv(x, 2, name="c"), inner], name="outer", axis=1)
    graph, instances = lowered(b.output(b.conv(outer, 1, name="head", out="y")))
    program = emit.lower(graph, instances, "m")
    assert program.in_place == ["inner", "outer"]
    offsets = program.arena.offsets
    a_out, b_out = (graph.layers[i].outputs[0] for i in range(2))
    assert offsets[a_out] == offsets[outer] + 2 * 16 * 4 and offsets[b_out] == offsets[outer] + 5 * 16 * 4
