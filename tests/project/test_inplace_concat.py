"""Concatenation in place: where each input of a concat is one contiguous chunk of its output and only the
concat reads it, its producer writes it straight into the output; the concat step disappears.

SqueezeNet's fire modules (squeeze 1x1 -> expand 1x1 and 3x3 -> channel concat, NCHW, batch 1) are the
case it is for; NHWC channel concats and inputs with other readers are copied as before.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx_kit import OnnxBuilder
from support import onnxruntime_outputs, relative_error, require_tool

import codegen
from codegen import build, emit, targets
from codegen.compiler import generate, import_model
from codegen.ir import Layout
from codegen.selection import materialize, reference_selection, selections_for

TOLERANCE = 1e-5


def fire(b: OnnxBuilder, x: str, cin: int, squeeze: int, expand: int) -> str:
    s = b.conv(x, cin, squeeze, 1)
    return b.op("Concat", [b.conv(s, squeeze, expand, 1), b.conv(s, squeeze, expand, 3, pad=1)], axis=1)


def squeezenet_like(batch: int = 1) -> onnx.ModelProto:
    """conv -> fire -> fire -> maxpool -> fire -> conv -> global average: three in-place concats."""
    b = OnnxBuilder("fire_chain", seed=5)
    x = b.input("image", (batch, 3, 24, 24))
    x = b.conv(x, 3, 16, 3, stride=2)  # 11x11
    x = fire(b, x, 16, 8, 16)
    x = fire(b, x, 32, 8, 16)
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2])  # 5x5
    x = fire(b, x, 32, 12, 24)
    x = b.conv(x, 48, 10, 1)
    return b.model(b.op("GlobalAveragePool", [x]))


def two_readers() -> onnx.ModelProto:
    """A concat input that another layer also reads, and one that is a graph input: both copied."""
    b = OnnxBuilder("two_readers", seed=6)
    x = b.input("image", (1, 4, 8, 8))
    a = b.conv(x, 4, 6, 3, pad=1)
    c = b.conv(a, 6, 6, 1)
    y = b.op("Concat", [a, c, x], axis=1)
    return b.model(b.conv(y, 16, 8, 1), b.op("Add", [a, c]))


def concat_output() -> onnx.ModelProto:
    """The model's output is the concat: its inputs are written into the caller's buffer."""
    b = OnnxBuilder("to_output", seed=7)
    x = b.input("image", (1, 3, 6, 6))
    return b.model(b.op("Concat", [b.conv(x, 3, 4, 3, pad=1), b.conv(x, 3, 2, 1), b.conv(x, 3, 3, 3, pad=1)], axis=1))


def inputs_for(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
            for i in model.graph.input}


def target_for(cc: str) -> targets.Target:
    return dataclasses.replace(targets.load("host"), name=f"host-{cc}", cc=cc)


def run_program(project: Path, cc: str, inputs: dict[str, np.ndarray], outputs: int, work: Path) -> list[np.ndarray]:
    """Build the example program with -Werror, ASan and UBSan, run it on the inputs, read its outputs."""
    program = build.build(project, kind="program", target=target_for(cc), werror=True, sanitize=True)
    paths = []
    for i, value in enumerate(inputs.values()):
        paths.append(work / f"in{i}.bin")
        value.astype("<f4").tofile(paths[-1])
    outs = [work / f"out{i}.bin" for i in range(outputs)]
    proc = subprocess.run([str(program), *map(str, paths), *map(str, outs)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "runtime error" not in proc.stderr, proc.stderr[-4000:]
    return [np.fromfile(out, dtype="<f4") for out in outs]


def check(project: Path, model: onnx.ModelProto, cc: str, work: Path) -> None:
    inputs = inputs_for(model)
    expected = onnxruntime_outputs(model, inputs)
    got = run_program(project, require_tool(cc), inputs, len(expected), work)
    for value, (name, want) in zip(got, expected.items(), strict=True):
        assert value.size == want.size, name
        assert relative_error(want, value.reshape(want.shape)) < TOLERANCE, name


def compile_reference(model: onnx.ModelProto, out: Path, **kwargs) -> Path:
    return codegen.compile_model(model, out, name="fire", reference=True, **kwargs)


def concat_calls(project: Path) -> list[str]:
    """The concat routine calls of the schedule."""
    return [line for line in (project / "src" / "fire.c").read_text().splitlines() if "_concat_ref_scalar(" in line]


@pytest.fixture(scope="module")
def fire_project(tmp_path_factory) -> Path:
    return compile_reference(squeezenet_like(), tmp_path_factory.mktemp("inplace") / "fire")


def test_fire_module_concats_disappear_from_the_schedule(fire_project):
    assert concat_calls(fire_project) == []
    assert not (fire_project / "src" / "routines" / "f32_concat_ref_scalar.c").exists()
    record = json.loads((fire_project / "tuning.json").read_text())
    in_place = [e["layer"] for e in record["emitted"] if e.get("in_place")]
    assert len(in_place) == 3 and all(e["routine"] == "f32-concat-ref-scalar" for e in record["emitted"]
                                      if e.get("in_place"))
    schedule = (fire_project / "src" / "fire.c").read_text()
    assert "Concatenated in place" in schedule


def test_fire_module_arena_is_smaller_than_with_copies():
    graph = import_model(squeezenet_like())
    lowered, instances = materialize(graph, {layer.name: reference_selection(layer, graph) for layer in graph.layers})
    in_place = emit.lower(lowered, instances, "fire")
    copied = emit.lower(lowered, instances, "fire", in_place_concat=False)
    assert len(in_place.in_place) == 3
    assert len(copied.steps) - len(in_place.steps) == 3
    assert in_place.arena.size < copied.arena.size
    # The first fire module's concat output (16 + 16 channels of 11x11) holds both expand outputs.
    assert copied.arena.size - in_place.arena.size >= 16 * 11 * 11 * 4


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_fire_modules_match_onnxruntime(fire_project, compiler, tmp_path):
    check(fire_project, squeezenet_like(), compiler, tmp_path)


def test_fire_modules_in_place_on_several_threads(tmp_path):
    model = squeezenet_like()
    project = compile_reference(model, tmp_path / "threads", threads=3)
    assert concat_calls(project) == []
    inputs = inputs_for(model)
    with codegen.load(project, werror=True) as compiled:
        got = compiled.run(inputs)
    for name, want in onnxruntime_outputs(model, inputs).items():
        assert relative_error(want, got[name]) < TOLERANCE, name


def test_small_code_size_and_in_place_together(tmp_path):
    model = squeezenet_like()
    project = compile_reference(model, tmp_path / "small", code_size="small")
    assert concat_calls(project) == []
    check(project, model, "gcc", tmp_path)


def test_nhwc_channel_concat_is_copied(tmp_path):
    """In NHWC each pixel's channels interleave the inputs: no input is one chunk of the output."""
    model = squeezenet_like()
    graph = import_model(model)
    nhwc = {}
    for layer in graph.layers:
        options = [s for s in selections_for(layer, graph) if s.layout is Layout.NHWC and s.routine.isa == "scalar"]
        nhwc[layer.name] = options[0] if options else reference_selection(layer, graph)
    files = generate(graph, targets.load("host"), name="fire", selections=nhwc)
    project = emit.write_project(files, tmp_path / "nhwc")
    assert len(concat_calls(project)) == 3
    check(project, model, "gcc", tmp_path)


def test_batch_two_concat_is_copied(tmp_path):
    model = squeezenet_like(batch=2)
    project = compile_reference(model, tmp_path / "batch2")
    assert len(concat_calls(project)) == 3
    check(project, model, "clang", tmp_path)


def test_inputs_read_elsewhere_or_from_the_caller_are_copied(tmp_path):
    model = two_readers()
    project = compile_reference(model, tmp_path / "readers")
    assert len(concat_calls(project)) == 1
    check(project, model, "gcc", tmp_path)


def test_concat_into_the_models_output(tmp_path):
    model = concat_output()
    project = compile_reference(model, tmp_path / "output")
    schedule = (project / "src" / "fire.c").read_text()
    assert concat_calls(project) == [] and "outputs[0] + 144);" in schedule
    assert json.loads((project / "tuning.json").read_text())["arena_bytes"] == 0
    check(project, model, "clang", tmp_path)
