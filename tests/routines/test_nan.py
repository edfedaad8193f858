"""NaN and infinities go through activations, max pooling and softmax as onnxruntime sends them (issue 17).

A corrupt weight must not look plausible: ReLU, Clip, HardSigmoid ... of NaN is NaN, not 0, and a max pool
over NaN is NaN, not -inf. Two checks: every registered routine (scalar, AVX2, AVX-512; NEON under qemu)
forced onto each case, against codegen.reference; and whole models, compiled with the reference path and
tuned, against onnxruntime itself. NaN positions must match exactly, other values closely (infinities
exactly).

Max pooling: numpy's max, the NEON max and ours are NaN where any tap is. onnxruntime (1.32) is not
consistent: whether a NaN tap survives depends on the kernel and on the tap's place in the window (see the
last test), so there its NaNs must be a subset of ours, ours exactly the windows holding a NaN, and the
rest is compared as values.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from routine_kit import ACTIVATIONS, Case, FamilyGraph, build_family, pool, run_program, run_shared, write
from support import onnxruntime_outputs, require_tool

import codegen
from codegen import build, compiler, emit, reference, targets

SPECIALS = (math.nan, math.inf, -math.inf, -0.0)


def laced(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random values with NaN, +-inf and -0.0 in about a tenth of the places each, and at least one of each."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4.0).astype(np.float32)
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, size=max(4, flat.size * 2 // 5), replace=False)
    for i, p in enumerate(picks):
        flat[p] = SPECIALS[i % len(SPECIALS)]
    return x


def assert_same(label: str, got: np.ndarray, want: np.ndarray, nan_superset: bool = False) -> None:
    """NaN exactly where `want` has NaN (or, with `nan_superset`, at least there); values equal elsewhere."""
    got = np.asarray(got, np.float64).reshape(want.shape)
    want = np.asarray(want, np.float64)
    if nan_superset:
        assert not (np.isnan(want) & ~np.isnan(got)).any(), f"{label}: a NaN of the oracle is lost"
        keep = ~np.isnan(got)
    else:
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{label}: NaN positions differ")
        keep = ~np.isnan(want)
    np.testing.assert_allclose(got[keep], want[keep], rtol=1e-5, atol=1e-6, err_msg=label)


# -- every routine against the reference ---------------------------------------------------------

def nan_cases() -> list[Case]:
    cases = [Case(f"act_{name}_{size}", "activation", [(size,)], dict(activation=act))
             for name, act in ACTIVATIONS.items() for size in (7, 75)]
    cases += [pool("max_3x3_s1_pad1", "max", (1, 75, 5, 5), (3, 3), (1, 1), (1, 1, 1, 1)),
              pool("max_2x2_s2", "max", (2, 19, 6, 6), (2, 2), (2, 2)),
              Case("softmax_rows_37", "softmax", [(6, 37)], dict(axis=1)),
              Case("softmax_channels_21", "softmax", [(1, 21, 3, 3)], dict(axis=1))]
    return cases


def laced_family(target: targets.Target | None = None) -> tuple[FamilyGraph, dict[str, np.ndarray]]:
    fg = build_family("nan", nan_cases(), target=target)
    for i, name in enumerate(fg.graph.inputs):
        fg.inputs[name] = laced(fg.inputs[name].shape, seed=i)
    return fg, reference.run(fg.graph, fg.inputs)


def family_mismatches(fg: FamilyGraph, got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> list[str]:
    failures = []
    for variants in fg.variants.values():
        for variant in variants:
            try:
                assert_same(variant.label, got[variant.output], want[variant.output])
            except AssertionError as exc:
                failures.append(str(exc).strip().splitlines()[0] + f" [{variant.label}]")
    return failures


def test_every_host_routine_keeps_nan_as_the_reference(tmp_path: Path):
    fg, want = laced_family()
    labels = {v.label.split("@")[0] for vs in fg.variants.values() for v in vs}
    assert any("avx" in label for label in labels), f"no SIMD routine on this host: {sorted(labels)}"
    got = run_shared(write(fg, tmp_path, "nan_host"), "gcc", fg)
    failures = family_mismatches(fg, got, want)
    assert not failures, "\n".join(failures)


def test_every_neon_routine_keeps_nan_as_the_reference(tmp_path: Path):
    require_tool("aarch64-linux-gnu-gcc")
    qemu = require_tool("qemu-aarch64")
    target = targets.load("aarch64-linux")
    fg, want = laced_family(target)
    files = compiler.generate(fg.graph, target, name="nan_neon", selections=fg.chosen)
    program = build.build(emit.write_project(files, tmp_path / "neon"), kind="program", target=target, werror=True)
    got = run_program(program, fg, tmp_path / "io", prefix=(qemu, "-L", "/usr/aarch64-linux-gnu"))
    assert any("neon" in v.label for vs in fg.variants.values() for v in vs)
    failures = family_mismatches(fg, got, want)
    assert not failures, "\n".join(failures)


# -- whole models against onnxruntime ------------------------------------------------------------

SHAPE = (1, 75, 5, 5)


def scalar(name: str, value: float) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.FLOAT, [], [value])


def nan_model() -> onnx.ModelProto:
    """One input, one output per op, each straight off the input (nothing to fuse into)."""
    nodes = [
        helper.make_node("Relu", ["x"], ["relu"]),
        helper.make_node("Clip", ["x", "zero", "six"], ["relu6"]),
        helper.make_node("Clip", ["x", "lo", "hi"], ["clip"]),
        helper.make_node("LeakyRelu", ["x"], ["leaky_relu"], alpha=0.1),
        helper.make_node("Sigmoid", ["x"], ["sigmoid"]),
        helper.make_node("HardSigmoid", ["x"], ["hard_sigmoid"], alpha=0.3, beta=0.4),
        helper.make_node("HardSwish", ["x"], ["hard_swish"]),
        helper.make_node("Softmax", ["x"], ["softmax"], axis=1),
        helper.make_node("MaxPool", ["x"], ["maxpool_3x3"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("MaxPool", ["x"], ["maxpool_2x2_s2"], kernel_shape=[2, 2], strides=[2, 2]),
    ]
    inits = [scalar("zero", 0.0), scalar("six", 6.0), scalar("lo", -0.5), scalar("hi", 0.5)]
    outputs = [helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, None) for n in nodes]
    graph = helper.make_graph(nodes, "nan", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def window_has_nan(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    """Per max pool output: whether its window holds a NaN (the same pool, by onnxruntime, over isnan(x))."""
    pools = onnx.ModelProto()
    pools.CopyFrom(model)
    keep = [n for n in pools.graph.node if n.op_type == "MaxPool"]
    del pools.graph.node[:]
    pools.graph.node.extend(keep)
    del pools.graph.output[:]
    pools.graph.output.extend(helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, None) for n in keep)
    return {k: v > 0 for k, v in onnxruntime_outputs(pools, {"x": np.isnan(x).astype(np.float32)}).items()}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("nan_model") / "nan.onnx"
    onnx.save(nan_model(), path)
    return path


@pytest.mark.parametrize("tuned", [False, True], ids=["reference", "tuned"])
def test_model_keeps_nan_as_onnxruntime(model_path: Path, tmp_path: Path, tuned: bool):
    x = laced(SHAPE, seed=17)
    want = onnxruntime_outputs(model_path, {"x": x})
    project = codegen.compile_model(model_path, tmp_path / "p", name="nan", reference=not tuned)
    got = codegen.load(project, werror=True).run({"x": x})
    used = {step["routine"] for step in json.loads((project / "tuning.json").read_text())["emitted"]}
    assert not tuned or any("avx" in r or "neon" in r for r in used), f"tuning chose no SIMD routine: {used}"
    nan_windows = window_has_nan(nan_model(), x)
    assert set(got) == set(want)
    for name, expected in want.items():
        if name in nan_windows:
            # onnxruntime's NaNs are a subset of ours; ours are exactly the windows holding a NaN
            assert_same(name, got[name], expected, nan_superset=True)
            np.testing.assert_array_equal(np.isnan(got[name]), nan_windows[name], err_msg=name)
        else:
            assert_same(name, got[name], expected)
    assert np.isnan(want["relu"]).any() and np.isinf(got["relu"]).any()


def test_onnxruntime_still_behaves_as_this_file_says():
    """The facts the tests above rely on, measured: if onnxruntime changes, this says which."""
    model = nan_model()
    kept = [n for n in model.graph.node if n.op_type not in ("MaxPool", "Softmax")]
    graph = helper.make_graph(kept, "elementwise", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [6])],
                              [helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, None) for n in kept],
                              initializer=list(model.graph.initializer))
    x = np.array([math.nan, math.inf, -math.inf, -0.0, 1.0, -1.0], np.float32)
    out = onnxruntime_outputs(helper.make_model(graph, opset_imports=model.opset_import), {"x": x})
    for name, y in out.items():
        assert np.isnan(y[0]), f"{name}(NaN) is no longer NaN in onnxruntime"
    assert out["relu"][1] == math.inf and out["relu"][2] == 0.0
    assert math.isnan(out["hard_swish"][2])  # -inf * 0
    # the max pool drops a NaN tap in some kernels (1x2) and keeps a 2x2 window's last one
    assert not np.isnan(ort_max_pool([[math.nan, 1.0]])).any() and not np.isnan(ort_max_pool([[1.0, math.nan]])).any()
    assert np.isnan(ort_max_pool([[1.0, 2.0], [3.0, math.nan]])).all()
    assert not np.isnan(ort_max_pool([[math.nan, 2.0], [3.0, 4.0]])).any()


def ort_max_pool(window: list[list[float]]) -> np.ndarray:
    """onnxruntime's max pool of one window, the input's size."""
    x = np.array([[window]], np.float32)
    pool = helper.make_graph([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=list(x.shape[2:]))], "pool",
                             [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return onnxruntime_outputs(helper.make_model(pool, opset_imports=[helper.make_opsetid("", 17)]), {"x": x})["y"]
