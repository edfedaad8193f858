"""Shapes as compile-time constants or as arguments (the `shapes` routine parameter, `--code-size`).

A model with several layers of one kind and different shapes is compiled both ways: with shapes as
arguments, layers that differ only in shape share one C function, so the built library has fewer
routine functions and less code, and computes the same thing.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx_kit import OnnxBuilder, routine_symbols, section_size
from support import onnxruntime_outputs, relative_error, require_tool

import codegen
from codegen import build, emit, targets
from codegen.compiler import generate, import_model, tune_model
from codegen.profile.harness import Settings, bench_sources
from codegen.routines import REGISTRY, by_name
from codegen.routines.specialize import ShapeArgs, signed, unsigned
from codegen.selection import reference_selection, selections_for
from codegen.tune import RecordError, candidates

TOLERANCE = 1e-5
NAME = "spec"
QUICK = Settings(min_reps=1, max_reps=3, min_seconds=0.0)


def several_shapes_model() -> onnx.ModelProto:
    """Convolutions, poolings and fully connected layers, each kind at several shapes."""
    b = OnnxBuilder("several_shapes")
    x = b.input("image", (1, 3, 20, 20))
    x = b.conv(x, 3, 8, 3, pad=1)
    x = b.conv(x, 8, 12, 3, stride=2, pad=1)  # 10x10
    x = b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])  # 5x5
    x = b.conv(x, 12, 16, 1)
    x = b.conv(x, 16, 16, 3, pad=1)
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    x = b.conv(x, 16, 24, 1)
    x = b.conv(x, 24, 16, 3, pad=1)
    x = b.conv(x, 16, 24, 1)
    x = b.conv(x, 24, 20, 3)  # 3x3
    x = b.op("GlobalAveragePool", [x])
    x = b.op("Flatten", [x], axis=1)
    x = b.gemm(x, 20, 12, relu=True)
    x = b.gemm(x, 12, 8, relu=True)
    x = b.gemm(x, 8, 5)
    return b.model(x)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("specialization") / "several_shapes.onnx"
    onnx.save(several_shapes_model(), str(path))
    return path


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    return {"image": np.random.default_rng(3).standard_normal((1, 3, 20, 20)).astype(np.float32)}


@pytest.fixture(scope="module")
def expected(model_path, inputs) -> dict[str, np.ndarray]:
    return onnxruntime_outputs(model_path, inputs)


@pytest.fixture(scope="module")
def projects(model_path, tmp_path_factory) -> dict[str, Path]:
    """The reference routine path with shapes as constants (fast) and as arguments (small)."""
    root = tmp_path_factory.mktemp("code-size")
    return {size: codegen.compile_model(model_path, root / size, name=NAME, reference=True, code_size=size)
            for size in ("fast", "small")}


def target_for(cc: str) -> targets.Target:
    return dataclasses.replace(targets.load("host"), name=f"host-{cc}", cc=cc)


# -- the shape symbols ----------------------------------------------------------------------------------

def test_shape_symbols_print_c_expressions_and_record_what_was_printed():
    args = ShapeArgs({"H": 7, "W": 5, "PB": 1, "mode": "max"}, ("H", "W", "PB"))
    h, w, pb = (args.symbols[k] for k in ("H", "W", "PB"))
    assert str(h * w) == "H * W"
    assert str((h + pb) * w) == "(H + PB) * W"
    assert str(h - (w - 1)) == "H - (W - 1)"
    assert str(3 * h + 1) == "3 * H + 1"
    assert str(h // (w * 2)) == "H / (W * 2)"
    assert signed(h - 1) == "(ptrdiff_t)(H - 1)" and signed(w) == "(ptrdiff_t)W" and signed(4) == 4
    assert unsigned(h * w) == "(H * W)" and unsigned(9) == "9u"
    assert emit.c_float(h) == "(float)H" and emit.c_float(2) == "2.0f"
    assert args.names() == ["H", "W", "PB"]  # everything above was printed
    fresh = ShapeArgs({"H": 7, "W": 5}, ("H", "W"))
    _ = fresh.symbols["H"] * fresh.symbols["W"]  # built but never printed: no argument
    str(fresh.symbols["W"])
    assert fresh.parameters() == ["size_t W"] and fresh.arguments() == ["5"]


@pytest.mark.parametrize("use", [lambda s: s == 1, lambda s: s > 1, lambda s: bool(s), lambda s: range(s),
                                 lambda s: s / 2, lambda s: -s, lambda s: s + 0.5, lambda s: s - (-1)])
def test_a_template_cannot_branch_on_a_shape_argument(use):
    with pytest.raises(TypeError):
        use(ShapeArgs({"K": 3}, ("K",)).symbols["K"])


def test_routines_with_the_switch_have_the_shapes_parameter_and_default_to_constants():
    switched = [r for r in REGISTRY if r.shape_args]
    names = {r.name for r in switched}
    for expected_name in ("f32-activation-ref-scalar", "f32-copy-ref-scalar", "f32-conv2d-nchw-ref-scalar",
                          "f32-dense-ref-scalar", "f32-pool2d-nchw-ref-scalar", "f32-pool2d-nhwc-ref-scalar",
                          "f32-globalavgpool-nchw-ref-scalar", "f32-globalavgpool-nhwc-ref-scalar"):
        assert expected_name in names
    for routine in switched:
        assert routine.params["shapes"] == ("const", "args"), routine.name
        assert routine.default_params()["shapes"] == "const"
        assert "simd" not in routine.template and routine.isa == "scalar", "only portable templates opt in"


def test_small_code_size_offers_only_shapes_as_arguments(model_path):
    graph = import_model(model_path)
    conv = next(layer for layer in graph.layers if layer.kind == "conv2d")
    fast = {s.key for s in selections_for(conv, graph)}
    small = {s.key for s in selections_for(conv, graph, code_size="small")}
    assert "f32-conv2d-nchw-ref-scalar@nchw,shapes=const" in fast - small
    assert "f32-conv2d-nchw-ref-scalar@nchw,shapes=args" in small
    assert any("im2col" in key for key in small), "routines without the switch stay"
    assert reference_selection(conv, graph).params == {"shapes": "const"}
    assert reference_selection(conv, graph, "small").params == {"shapes": "args"}
    host = targets.load("host")
    found = candidates(graph, host, "small")
    assert all("shapes=const" not in item.key for items in found.by_layer.values() for item in items)


# -- the generated code ---------------------------------------------------------------------------------

def test_small_build_shares_functions_and_passes_shapes_at_the_call(projects):
    small = projects["small"]
    conv_c = (small / "src" / "routines" / "f32_conv2d_nchw_ref_scalar.c").read_text()
    assert conv_c.count(f"void {NAME}_f32_conv2d_nchw_ref_scalar_") == 1, "every conv here has the same code"
    assert "size_t KH" in conv_c and "size_t OW" in conv_c
    schedule = (small / "src" / f"{NAME}.c").read_text()
    calls = [line.strip() for line in schedule.splitlines() if f"{NAME}_f32_conv2d_nchw_ref_scalar_0(" in line]
    assert len(calls) == 8
    assert len(set(calls)) == 8, "each call passes its own shapes"
    assert calls[0].endswith(", 1, 3, 20, 20, 8, 3, 8, 3, 3, 20, 20, 1, 1, 1, 1, 1, 1);")
    fast_conv = (projects["fast"] / "src" / "routines" / "f32_conv2d_nchw_ref_scalar.c").read_text()
    assert "size_t KH" not in fast_conv and fast_conv.count("\nvoid ") == 8


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_small_build_has_fewer_functions_and_less_code(projects, compiler, capsys):
    cc = require_tool(compiler)
    require_tool("nm")
    require_tool("size")
    libraries = {size: build.build(project, kind="shared", target=target_for(cc), werror=True)
                 for size, project in projects.items()}
    symbols = {size: routine_symbols(lib, NAME) for size, lib in libraries.items()}
    text = {size: section_size(lib) for size, lib in libraries.items()}
    with capsys.disabled():
        print(f"\n[code size] {compiler}: fast {len(symbols['fast'])} routine functions, .text {text['fast']} bytes; "
              f"small {len(symbols['small'])} functions, .text {text['small']} bytes")
    assert len(symbols["fast"]) == 15  # one per layer (flatten included)
    assert len(symbols["small"]) == 6  # one conv, one pool, one gap, one reshape, dense +relu and plain
    assert text["small"] < text["fast"]


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
@pytest.mark.parametrize("size", ["fast", "small"])
def test_both_builds_are_warning_free_sanitizer_clean_and_match_onnxruntime(projects, size, compiler, inputs,
                                                                            expected, tmp_path):
    cc = require_tool(compiler)
    program = build.build(projects[size], kind="program", target=target_for(cc), werror=True, sanitize=True)
    args = []
    for i, value in enumerate(inputs.values()):
        args.append(tmp_path / f"in{i}.bin")
        value.astype("<f4").tofile(args[-1])
    out = tmp_path / "out0.bin"
    proc = subprocess.run([str(program), *map(str, args), str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "runtime error" not in proc.stderr, proc.stderr[-4000:]
    (want,) = expected.values()
    assert relative_error(want, np.fromfile(out, dtype="<f4").reshape(want.shape)) < TOLERANCE


@pytest.mark.parametrize("size", ["fast", "small"])
def test_regenerating_gives_identical_bytes(model_path, size):
    graph = import_model(model_path)
    host = targets.load("host")
    first = generate(graph, host, name=NAME, code_size=size)
    assert generate(import_model(model_path), host, name=NAME, code_size=size) == first
    assert json.loads(first["tuning.json"])["code_size"] == size


def test_the_record_carries_the_code_size_and_reproduces_the_project(projects, model_path, tmp_path):
    record = json.loads((projects["small"] / "tuning.json").read_text())
    assert record["code_size"] == "small"
    assert all("shapes=const" not in entry["instance"] for entry in record["path"])
    again = codegen.compile_model(model_path, tmp_path / "again", name=NAME, record=projects["small"] / "tuning.json")
    files = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(projects["small"]) for p in projects["small"].rglob("*")
                           if p.is_file() and "build" not in p.relative_to(projects["small"]).parts)
    for rel in files:
        assert (again / rel).read_bytes() == (projects["small"] / rel).read_bytes(), rel
    with pytest.raises(RecordError, match="--code-size small"):
        codegen.compile_model(model_path, tmp_path / "other", name=NAME, record=record, code_size="fast")


def test_tuning_small_profiles_arguments_and_records_them(model_path, tmp_path):
    """The profiler builds and times shapes=args instances (checked against the constant reference)."""
    record = tune_model(model_path, settings=QUICK, code_size="small")
    assert record["code_size"] == "small"
    measured = [key for entry in record["path"] for key in entry["alternatives"]]
    assert not any("shapes=const" in key for key in measured)
    switched = [key for key in measured if by_name(key.split("@")[0].split(",")[0]).shape_args]
    assert len(switched) >= 12, "every layer's reference routine was measured with its shapes as arguments"
    assert all(key.endswith("shapes=args") for key in switched)
    record_file = tmp_path / "tuning.json"
    record_file.write_text(json.dumps(record))
    first = codegen.compile_model(model_path, tmp_path / "a", name=NAME, record=record_file)
    second = codegen.compile_model(model_path, tmp_path / "b", name=NAME, record=record_file)
    for path in sorted(p for p in first.rglob("*") if p.is_file()):
        assert path.read_bytes() == (second / path.relative_to(first)).read_bytes(), path


def test_profiling_harness_passes_the_shapes_of_an_argument_instance(model_path):
    """Both instances of the first convolution's reference routine in one benchmark program: the argument one
    is called with its shapes, and checked against the constant one (the group's reference)."""
    graph = import_model(model_path)
    conv = next(layer for layer in graph.layers if layer.kind == "conv2d")
    items = [i for i in candidates(graph, targets.load("host")).by_layer[conv.name] if "nchw-ref-scalar" in i.key]
    assert sorted(i.selection.params["shapes"] for i in items) == ["args", "const"]
    files, _ = bench_sources(items)
    main = files["src/bench_main.c"]
    assert "bench_f32_conv2d_nchw_ref_scalar_0(inputs[1], F32_WEIGHTS(" in main
    assert ", 1, 3, 20, 20, 8, 3, 8, 3, 3, 20, 20, 1, 1, 1, 1, 1, 1);" in main
    assert "size_t KH" in files["src/routines/f32_conv2d_nchw_ref_scalar.c"]


def test_cli_help_explains_the_option():
    for command in ("compile", "tune"):
        proc = subprocess.run([sys.executable, "-m", "codegen", command, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0
        assert "--code-size {fast,small}" in proc.stdout and "share one C function" in " ".join(proc.stdout.split())
