"""Edge-shape cases for every layer family and the machinery to check them against codegen.reference.

Each family's cases become ONE graph with many independent paths, one per case and routine instance
(every registered routine that accepts the case's layer, at every point of its parameter space),
generated, compiled and run once; every path's output is then compared with the reference. Every
other path reads its inputs from (and writes its result to) arena buffers via copies, so routines are
checked on arena memory as well as on caller-owned input and output buffers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from codegen import build, compiler, emit, routines, runtime, shapes, targets
from codegen.ir import NO_ACTIVATION, Activation, DType, Graph, Layer, Tensor
from codegen.selection import Selection, selections_for
from codegen.targets import Target

RTOL = 1e-5  # relative to the largest |reference| value of the case
COMPILERS = ("gcc", "clang")


# -- case descriptions --------------------------------------------------------------------------

@dataclass(frozen=True)
class In:
    """A run-time input of the case: random normal values times `scale`, or kept away from zero."""

    shape: tuple[int, ...]
    scale: float = 1.0
    away_from_zero: bool = False


@dataclass(frozen=True)
class Const:
    """A constant (weight) input with random normal values; `positive` keeps them in [0.5, 1.5)."""

    shape: tuple[int, ...]
    positive: bool = False


@dataclass(frozen=True)
class Ref:
    """The same tensor as the case's input number `index` (e.g. x * x)."""

    index: int


@dataclass
class Case:
    id: str
    kind: str
    inputs: list[Any]  # In | Const | Ref | tuple (an In of that shape) | "" (an absent optional input)
    attrs: dict[str, Any] = field(default_factory=dict)
    xfail: str = ""  # a known bug: the case is expected to fail (strictly)

    def __post_init__(self):
        self.inputs = [In(tuple(s)) if isinstance(s, tuple) else s for s in self.inputs]


def case_ids(cases: list[Case]) -> list[str]:
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return ids


# -- graph building ------------------------------------------------------------------------------

@dataclass
class Variant:
    """One routine instance applied to one case: its own path through the family graph."""

    label: str  # routine name and parameters
    layer: str
    output: str  # graph output name


@dataclass
class FamilyGraph:
    graph: Graph
    inputs: dict[str, np.ndarray]
    variants: dict[str, list[Variant]]  # case id -> every routine instance that implements it
    chosen: dict[str, Selection]  # layer name -> the routine, layout and parameters its path was made for


def _value(spec: In | Const, rng: np.random.Generator) -> np.ndarray:
    if isinstance(spec, Const):
        if spec.positive:
            return (0.5 + rng.random(spec.shape)).astype(np.float32)
        return rng.standard_normal(spec.shape).astype(np.float32)
    value = rng.standard_normal(spec.shape) * spec.scale
    if spec.away_from_zero:
        value = np.sign(value + 1e-9) * (0.5 + np.abs(value))
    return np.asarray(value, np.float32)


def build_family(name: str, cases: list[Case], seed: int = 0, target: Target | None = None) -> FamilyGraph:
    """One graph holding a path per (case, routine instance): every routine of the registry that accepts
    the case's layer on `target` (the host by default), in each of its layouts, with every point of its
    parameter space. Paths in another layout than the graph's get adapt layers on both sides."""
    target = target or targets.load("host")
    rng = np.random.default_rng(seed)
    g = Graph(name, {}, [], [], [])
    feeds: dict[str, np.ndarray] = {}
    variants: dict[str, list[Variant]] = {}
    chosen: dict[str, Selection] = {}
    paths = 0

    def add_tensor(tname: str, shape: tuple[int, ...], data: np.ndarray | None = None) -> str:
        assert tname not in g.tensors, tname
        g.tensors[tname] = Tensor(tname, tuple(shape), DType.F32, data)
        return tname

    def add_path(case: Case, prefix: str) -> tuple[Layer, str]:
        """input(s) -> layer -> output; every other path goes through arena copies on both sides."""
        nonlocal paths
        via_arena = paths % 2 == 1
        paths += 1
        names: list[str] = []
        for j, spec in enumerate(case.inputs):
            if spec == "":
                names.append("")
            elif isinstance(spec, Ref):
                names.append(names[spec.index])
            elif isinstance(spec, Const):
                names.append(add_tensor(f"{prefix}/c{j}", spec.shape, _value(spec, rng)))
            else:
                tname = add_tensor(f"{prefix}/in{j}", spec.shape)
                g.inputs.append(tname)
                feeds[tname] = _value(spec, rng)
                if via_arena:
                    staged = add_tensor(f"{prefix}/in{j}/staged", spec.shape)
                    g.layers.append(Layer(f"{prefix}/stage{j}", "copy", [tname], [staged]))
                    tname = staged
                names.append(tname)
        out = f"{prefix}/out"
        result = f"{prefix}/result" if via_arena else out
        layer = Layer(prefix, case.kind, names, [result], dict(case.attrs))
        (shape,) = shapes.infer(layer, g)
        add_tensor(result, shape)
        g.layers.append(layer)
        if via_arena:
            add_tensor(out, shape)
            g.layers.append(Layer(f"{prefix}/unstage", "copy", [result], [out]))
        g.outputs.append(out)
        return layer, out

    for case in cases:
        layer, out = add_path(case, case.id)
        selections = selections_for(layer, g, target.isa, target.devices, superseded=True)
        assert selections, f"{case.id}: no routine accepts this layer"
        variants[case.id] = []
        for i, selection in enumerate(selections):
            if i:
                layer, out = add_path(case, f"{case.id}@{selection.key}")
            chosen[layer.name] = selection
            variants[case.id].append(Variant(selection.key, layer.name, out))
    g.validate()
    return FamilyGraph(g, feeds, variants, chosen)


# -- targets, projects, builds ---------------------------------------------------------------------

def target_for(cc: str) -> Target:
    """The host target with an explicit compiler (independent of $CC)."""
    return dataclasses.replace(targets.load("host"), name=f"host-{cc}", cc=cc)


def generate(fg: FamilyGraph, name: str, weights: str = "incbin", threads: int = 1) -> dict[str, bytes]:
    """The project with the routine of every case path forced; the reference routine elsewhere."""
    return compiler.generate(fg.graph, targets.load("host"), name=name, weights=weights, selections=fg.chosen,
                             threads=threads)


def write(fg: FamilyGraph, out_dir: Path, name: str, weights: str = "incbin", threads: int = 1) -> Path:
    return emit.write_project(generate(fg, name, weights, threads), out_dir / name)


def routines_used(project: Path) -> set[str]:
    rec = json.loads((project / "tuning.json").read_text())
    return {step["routine"] for step in rec["emitted"]}  # every routine instance emitted, adapts included


def run_shared(project: Path, cc: str, fg: FamilyGraph) -> dict[str, np.ndarray]:
    model = runtime.load(project, target=target_for(cc), werror=True)
    return model.run({n: fg.inputs[n] for n in fg.graph.inputs})


def run_program(program: Path, fg: FamilyGraph, work: Path, prefix: tuple[str, ...] = (),
                env: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Run a built example/main.c (under `prefix`, an emulator say) on raw float32 files; read the outputs."""
    work.mkdir(parents=True, exist_ok=True)
    args = []
    for i, name in enumerate(fg.graph.inputs):
        path = work / f"in{i}.bin"
        fg.inputs[name].astype("<f4").tofile(path)
        args.append(str(path))
    out_paths = [work / f"out{i}.bin" for i in range(len(fg.graph.outputs))]
    proc = subprocess.run([*prefix, str(program), *args, *map(str, out_paths)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"{program.name} exited with {proc.returncode}:\n{proc.stderr[-4000:]}"
    assert "runtime error" not in proc.stderr and "Sanitizer" not in proc.stderr, proc.stderr[-4000:]
    results = {}
    for name, path in zip(fg.graph.outputs, out_paths, strict=True):
        shape = fg.graph.shape(name)
        data = np.fromfile(path, dtype="<f4")
        assert data.size == math.prod(shape), name
        results[name] = data.reshape(shape)
    return results


def run_sanitized_program(project: Path, cc: str, fg: FamilyGraph, work: Path) -> dict[str, np.ndarray]:
    """Build example/main.c with ASan and UBSan, run it on raw float32 files, read the output files."""
    program = build.build(project, kind="program", target=target_for(cc), sanitize=True, werror=True)
    return run_program(program, fg, work, env={"ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"})


def family_failures(family_cases: list[Case], fg: FamilyGraph, got: dict[str, np.ndarray],
                    want: dict[str, np.ndarray]) -> list[str]:
    """The first line of every variant's mismatch (cases marked xfail excepted)."""
    failures = []
    for case in family_cases:
        for variant in fg.variants[case.id]:
            try:
                assert_close(f"{case.id} [{variant.label}]", got[variant.output], want[variant.output],
                             tolerance_of(variant.label))
            except AssertionError as exc:
                if not case.xfail:
                    failures.append(str(exc).splitlines()[0])
    return failures


def tolerance_of(label: str) -> float:
    """The bound a variant (labelled by its selection key, 'routine-name@layout,params') is held to: RTOL, or
    its routine's own looser one."""
    routine = routines.by_name(label.split("@")[0].split(",")[0])
    return max(RTOL, routine.tolerance or 0.0)


def assert_close(case_id: str, got: np.ndarray, want: np.ndarray, rtol: float = RTOL) -> None:
    assert got.size == want.size, f"{case_id}: {got.shape} vs {want.shape}"
    got = got.reshape(want.shape).astype(np.float64)
    want = want.astype(np.float64)
    assert np.isfinite(want).all(), f"{case_id}: the reference has non-finite values; fix the case"
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-30)
    err = np.abs(got - want)
    worst = np.unravel_index(int(np.argmax(err)), err.shape) if err.size else ()
    assert err.max(initial=0.0) <= rtol * scale, (
        f"{case_id}: max error {err.max():.3g} at {worst} (got {got[worst]!r}, want {want[worst]!r}), "
        f"allowed {rtol * scale:.3g}")


# -- shorthands ----------------------------------------------------------------------------------

ACTIVATIONS = {
    "relu": Activation("relu"),
    "relu6": Activation("clip", 0.0, 6.0),
    "clip_sym": Activation("clip", -0.5, 0.5),
    "clip_max_only": Activation("clip", -math.inf, 0.25),
    "clip_min_only": Activation("clip", -0.25, math.inf),
    "leaky_relu": Activation("leaky_relu", 0.1),
    "sigmoid": Activation("sigmoid"),
    "hard_sigmoid": Activation("hard_sigmoid", 0.2, 0.5),
    "hard_sigmoid_custom": Activation("hard_sigmoid", 0.3, 0.4),
    "hard_swish": Activation("hard_swish"),
}
# Epilogue activations tested on convolutions, not with the NaN-laced inputs of test_nan: the vector SiLU gives
# -inf at -inf where the reference's x / (1 + e^-x) gives NaN.
EPILOGUE_ONLY = {"silu": Activation("silu"), "mish": Activation("mish"), "gelu_tanh": Activation("gelu_tanh")}


def conv(cid: str, x: tuple[int, ...], m: int, k: int | tuple[int, int], *, strides=(1, 1), pads=(0, 0, 0, 0),
         dilations=(1, 1), group: int = 1, bias: bool = True, act: Activation = NO_ACTIVATION,
         scale: float = 1.0, residual: bool = False) -> Case:
    """With `residual`, a fused residual operand (the output's shape) is added before the activation."""
    kh, kw = (k, k) if isinstance(k, int) else k
    w = Const((m, x[1] // group, kh, kw))
    inputs: list[Any] = [In(x, scale), w, Const((m,)) if bias else ""]
    if residual:
        oh = shapes.conv_output_size(x[2], kh, strides[0], pads[0], pads[2], dilations[0])
        ow = shapes.conv_output_size(x[3], kw, strides[1], pads[1], pads[3], dilations[1])
        inputs.append(In((x[0], m, oh, ow), scale))
    return Case(cid, "conv2d", inputs,
                dict(strides=strides, pads=pads, dilations=dilations, group=group, activation=act))


def dense(cid: str, x: tuple[int, int], m: int, *, bias: bool = True, act: Activation = NO_ACTIVATION) -> Case:
    return Case(cid, "dense", [In(x), Const((m, x[1])), Const((m,)) if bias else ""], dict(activation=act))


def binary(cid: str, op: str, a: Any, b: Any, act: Activation = NO_ACTIVATION) -> Case:
    if op == "div" and isinstance(b, tuple):
        b = In(b, away_from_zero=True)
    if op == "div" and isinstance(b, Const):
        b = Const(b.shape, positive=True)
    return Case(cid, "binary", [a, b], dict(op=op, activation=act))


def pool(cid: str, mode: str, x: tuple[int, ...], kernel, strides, pads=(0, 0, 0, 0), *, dilations=(1, 1),
         ceil_mode: bool = False, count_include_pad: bool = False) -> Case:
    return Case(cid, "pool2d", [x], dict(mode=mode, kernel=kernel, strides=strides, pads=pads, dilations=dilations,
                                         ceil_mode=ceil_mode, count_include_pad=count_include_pad))
