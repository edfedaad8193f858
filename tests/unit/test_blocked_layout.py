"""The blocked channel layouts (NCHW16C, NCHW8C, NCHW4C): shapes, sizes and orders of their buffers, the
bindings and adapts that materialize them, the weight packing of the blocked convolution, and one chain of
blocked convolutions run end to end (the only test here that compiles)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from graphkit import GraphBuilder

from codegen import compiler, emit, reference, runtime, targets
from codegen.adapt import has_adapt, layout_adapt
from codegen.ir import Activation, DType, Graph, Layer, Layout, Tensor
from codegen.profile.harness import _view
from codegen.routines import by_name
from codegen.routines.blocked import BLOCKED, keeps_zero, segments
from codegen.routines.loops import (
    blocked_strides,
    logical_strides,
    physical_nbytes,
    physical_order,
    physical_shape,
    physical_size,
)
from codegen.selection import (
    BLOCKED_LAYOUTS,
    NATIVE_LAYOUTS,
    SPATIAL_LAYOUTS,
    Selection,
    adapt_needs,
    bind,
    materialize,
    native_layout,
    selections_for,
)

SHAPE = (2, 20, 3, 5)  # 20 channels: a partial last block for every block size


def to_blocked(x: np.ndarray, b: int) -> np.ndarray:
    """numpy's NCHW -> [N][C/b][H][W][b], the padding channels zero."""
    n, c, h, w = x.shape
    cb = -(-c // b)
    padded = np.zeros((n, cb * b, h, w), x.dtype)
    padded[:, :c] = x
    return np.ascontiguousarray(padded.reshape(n, cb, b, h, w).transpose(0, 1, 3, 4, 2))


def test_block_sizes():
    assert [(layout, layout.block) for layout in Layout if layout.is_blocked] == [
        (Layout.NCHW16C, 16), (Layout.NCHW8C, 8), (Layout.NCHW4C, 4)]
    assert not any(layout.is_blocked for layout in (Layout.ANY, Layout.NCHW, Layout.NHWC))
    assert Layout("nchw16c") is Layout.NCHW16C and Layout.NCHW4C.value == "nchw4c"
    assert set(BLOCKED_LAYOUTS) == {Layout.NCHW16C, Layout.NCHW8C, Layout.NCHW4C}
    assert SPATIAL_LAYOUTS == NATIVE_LAYOUTS + BLOCKED_LAYOUTS


@pytest.mark.parametrize("layout", BLOCKED_LAYOUTS)
def test_physical_shape_pads_the_channels_to_whole_blocks(layout):
    b = layout.block
    assert physical_shape(SHAPE, layout) == (2, -(-20 // b), 3, 5, b)
    assert physical_size(SHAPE, layout) == 2 * math.ceil(20 / b) * b * 15
    assert physical_shape((1, b, 7, 7), layout) == (1, 1, 7, 7, b)  # whole blocks: no padding
    assert physical_size((1, b, 7, 7), layout) == b * 49
    assert physical_shape((1, 1, 1, 1), layout) == (1, 1, 1, 1, b)  # one channel still takes a block
    assert physical_shape((3, 20), layout) == (3, 20)  # only 4-D tensors are blocked


def test_physical_shape_of_the_native_layouts_is_unchanged():
    assert physical_shape(SHAPE, Layout.NCHW) == SHAPE
    assert physical_shape(SHAPE, Layout.NHWC) == (2, 3, 5, 20)
    assert physical_shape(SHAPE, Layout.ANY) == SHAPE
    assert all(physical_size(SHAPE, layout) == math.prod(SHAPE) for layout in (Layout.ANY, *NATIVE_LAYOUTS))


def test_physical_nbytes_includes_the_padding():
    t = Tensor("t", SHAPE, layout=Layout.NCHW16C)
    assert t.nbytes == 4 * 600 and physical_nbytes(t) == 4 * 2 * 2 * 16 * 15
    assert physical_nbytes(Tensor("u", SHAPE, DType.F16, layout=Layout.NCHW8C)) == 2 * 2 * 3 * 8 * 15
    assert physical_nbytes(Tensor("v", SHAPE, layout=Layout.NHWC)) == Tensor("v", SHAPE).nbytes


def test_physical_order():
    assert physical_order(SHAPE, Layout.NCHW) == (0, 1, 2, 3)
    assert physical_order(SHAPE, Layout.NHWC) == (0, 2, 3, 1)
    for layout in BLOCKED_LAYOUTS:  # the channel axis twice: its block, then its lane
        assert physical_order(SHAPE, layout) == (0, 1, 2, 3, 1)
    assert physical_order((4, 5), Layout.NCHW16C) == (0, 1)


@pytest.mark.parametrize("layout", BLOCKED_LAYOUTS)
def test_blocked_strides_find_every_element(layout):
    b = layout.block
    x = np.arange(math.prod(SHAPE), dtype=np.float32).reshape(SHAPE) + 1
    flat = to_blocked(x, b).reshape(-1)
    assert flat.size == physical_size(SHAPE, layout)
    s0, s1, s2, s3 = blocked_strides(SHAPE, layout)
    for n, c, h, w in itertools.product(*map(range, SHAPE)):
        assert flat[n * s0 + c // b * s1 + h * s2 + w * s3 + c % b] == x[n, c, h, w]
    assert np.count_nonzero(flat) == x.size  # and nothing else: the padding lanes are zero
    with pytest.raises(ValueError, match="channel stride"):
        logical_strides(SHAPE, layout)
    with pytest.raises(ValueError):
        blocked_strides(SHAPE, Layout.NHWC)


def test_harness_views_say_block_and_padded_size():
    assert _view(SHAPE, Layout.NCHW) == "4, {2, 20, 3, 5}, {300, 15, 5, 1}, 1, 600"
    assert _view(SHAPE, Layout.NCHW8C) == "4, {2, 20, 3, 5}, {360, 120, 40, 8}, 8, 720"
    assert _view((3, 4), Layout.ANY) == "2, {3, 4}, {4, 1}, 1, 12"


def test_bind_and_native_layouts():
    for layout in SPATIAL_LAYOUTS:
        assert bind(layout, 4) is layout
        assert bind(layout, 2) is Layout.ANY
    assert bind(Layout.ANY, 4) is Layout.NCHW
    assert native_layout(Tensor("x", SHAPE, layout=Layout.NHWC)) is Layout.NHWC
    assert native_layout(Tensor("x", SHAPE, layout=Layout.NCHW16C)) is Layout.NCHW  # graph I/O is never blocked
    assert native_layout(Tensor("x", (3, 4), layout=Layout.NCHW)) is Layout.ANY


def test_adapts_connect_every_blocked_layout_with_the_native_ones():
    for blocked in BLOCKED_LAYOUTS:
        for native in NATIVE_LAYOUTS:
            assert layout_adapt(native, blocked).name == f"f32-layout-{native.value}2{blocked.value}-scalar"
            assert layout_adapt(blocked, native).parallel
        for other in BLOCKED_LAYOUTS:
            assert not has_adapt(blocked, other)  # one adapt per edge: through a native layout costs two
    assert by_name("f32-layout-ref-scalar")  # the portable oracle of them all


def chain(c: int = 20, m: int = 21, hw: int = 9) -> Graph:
    """conv -> conv -> conv, odd channel counts, a non-zero-keeping activation in the middle."""
    gb = GraphBuilder("blocked_chain")
    x = gb.input("x", (2, c, hw, hw + 4))
    y = gb.conv(x, m, 3, name="c1", activation=Activation("relu"))
    y = gb.conv(y, 19, 3, name="c2", strides=(2, 1), activation=Activation("hard_sigmoid", 0.2, 0.5))
    gb.graph.outputs.append(gb.conv(y, 6, 1, name="c3", pads=(0, 0, 0, 0), activation=Activation("sigmoid")))
    return gb.graph.validate()


def blocked_selection(graph: Graph, layer: str, layout: Layout, isa=frozenset({"scalar", "avx2", "fma", "avx512f",
                                                                                 "neon"})) -> Selection:
    found = [s for s in selections_for(next(x for x in graph.layers if x.name == layer), graph, isa, superseded=True)
             if s.layout is layout]
    assert found, layout
    return found[0]


def test_materialize_keeps_blocked_tensors_between_blocked_layers_and_sizes_their_buffers():
    g = chain()
    chosen = {name: blocked_selection(g, name, Layout.NCHW8C) for name in ("c1", "c2")}
    chosen["c3"] = blocked_selection(g, "c3", Layout.NCHW)
    lowered, instances = materialize(g, chosen)
    adapts = [(i.layer.attrs["src"], i.layer.attrs["dst"]) for i in instances if i.layer.kind == "layout"]
    assert adapts == [(Layout.NCHW, Layout.NCHW8C), (Layout.NCHW8C, Layout.NCHW)]  # none between c1 and c2
    between = next(i.layer.outputs[0] for i in instances if i.layer.name == "c1")
    assert lowered.tensor(between).layout is Layout.NCHW8C
    sizes = {b.name: b.size for b in emit._buffers(lowered, instances)}
    assert sizes[between] == 4 * 2 * 3 * 8 * 9 * 13 > lowered.tensor(between).nbytes  # 21 channels take 24


def test_adapt_needs_follow_the_candidates():
    g = chain()
    avx2 = frozenset({"scalar", "avx2", "fma"})
    options = {layer.name: selections_for(layer, g, avx2) for layer in g.layers}
    needs = adapt_needs(g, options)
    shape = g.shape("x")
    assert (shape, Layout.NCHW, Layout.NHWC) in needs and (shape, Layout.NHWC, Layout.NCHW) in needs
    assert {(shape, Layout.NCHW, Layout.NCHW8C), (shape, Layout.NHWC, Layout.NCHW8C),
            (shape, Layout.NCHW8C, Layout.NCHW), (shape, Layout.NCHW8C, Layout.NHWC)} <= set(needs)
    assert not any(Layout.NCHW16C in (a, b) or Layout.NCHW4C in (a, b) for _, a, b in needs)  # no such routine
    scalar = adapt_needs(g, {layer.name: selections_for(layer, g) for layer in g.layers})
    assert all(a in NATIVE_LAYOUTS and b in NATIVE_LAYOUTS for _, a, b in scalar)


@pytest.mark.parametrize("block", [16, 8, 4])
def test_weights_are_packed_in_blocks_of_input_and_output_channels(block):
    g = chain(c=5, m=block + 3)
    layer = g.layers[0]
    routine = next(r for r in (s.routine for s in selections_for(layer, g, frozenset(
        {"scalar", "avx2", "fma", "avx512f", "neon"}), superseded=True)) if r.layouts == (BLOCKED[block],))
    _, w, bias = routine.pack(layer, g, {"ow_tile": 4})
    original = g.tensor(layer.inputs[1]).data
    m, c, kh, kw = original.shape
    assert w.shape == (2, -(-c // block), kh, kw, block, block) and w.dtype == np.float32
    for mo, ci, i, j, bi, bo in itertools.product(*map(range, w.shape)):
        o, k = mo * block + bo, ci * block + bi
        assert w[mo, ci, i, j, bi, bo] == (original[o, k, i, j] if o < m and k < c else 0.0)
    assert bias.shape == (2 * block,) and not bias[m:].any()


def test_column_segments_cover_each_output_column_once():
    for total, lo, hi, tile in itertools.product(range(1, 12), range(0, 4), range(0, 12), (1, 3, 4, 7)):
        lo, hi = min(lo, total), max(min(hi, total), min(lo, total))
        chunks, start, count = segments(total, lo, hi, tile)
        columns = [c for c0, width in chunks for c in range(c0, c0 + width)]
        columns += list(range(start, start + count * tile))
        assert sorted(columns) == list(range(total)), (total, lo, hi, tile)
        assert all(0 < width <= tile for _, width in chunks) and start + count * tile <= hi


def test_which_activations_keep_zero():
    assert keeps_zero(Activation("none")) and keeps_zero(Activation("relu")) and keeps_zero(Activation("hard_swish"))
    assert keeps_zero(Activation("clip", 0.0, 6.0)) and not keeps_zero(Activation("clip", 0.5, 6.0))
    assert not keeps_zero(Activation("sigmoid")) and not keeps_zero(Activation("hard_sigmoid", 0.2, 0.5))


def test_a_chain_of_blocked_convolutions_matches_the_reference(tmp_path):
    """Blocked tensors passed from conv to conv through the arena (padding lanes and all), then NHWC."""
    target = targets.load("host")
    layouts = [layout for layout in BLOCKED_LAYOUTS
               if any(s.layout is layout for s in selections_for(chain().layers[0], chain(), target.isa))]
    if not layouts:
        pytest.skip("the host has no vector ISA with a blocked convolution")
    g = chain()
    layout = layouts[0]
    chosen = {name: blocked_selection(g, name, layout, target.isa) for name in ("c1", "c2")}
    chosen["c3"] = next(s for s in selections_for(g.layers[2], g, target.isa) if s.layout is Layout.NHWC)
    project = emit.write_project(compiler.generate(g, target, name="blocked_chain", selections=chosen, threads=1),
                                 tmp_path / "p")
    x = np.random.default_rng(3).standard_normal(g.shape("x")).astype(np.float32)
    got = runtime.load(project, werror=True).run({"x": x})
    want = reference.run(g, {"x": x})
    (name,) = g.outputs
    assert np.abs(got[name] - want[name]).max() <= 1e-5 * np.abs(want[name]).max()
    emitted = (project / "tuning.json").read_text()
    assert f"nchw2{layout.value}" in emitted and f"{layout.value}2nhwc" in emitted


def test_layout_layers_have_reference_semantics():
    g = Graph("g", {"x": Tensor("x", SHAPE), "y": Tensor("y", SHAPE)},
              [Layer("a", "layout", ["x"], ["y"], {"src": Layout.NCHW, "dst": Layout.NCHW16C})], ["x"], ["y"])
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    assert np.array_equal(reference.run(g, {"x": x})["y"], x)  # the same tensor, only stored otherwise
