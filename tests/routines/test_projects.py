"""Properties of generated projects that need a C compiler: the C API contract, poisoned memory,
compiler selection, weight embedding modes, I/O names and float literals."""

from __future__ import annotations

import ctypes
import re
import subprocess

import numpy as np
import pytest
from routine_cases import FAMILIES
from routine_kit import COMPILERS, assert_close, build_family, family_failures, target_for, tolerance_of, write

from codegen import build, compiler, emit, reference, runtime, targets
from codegen.emit import c_float
from codegen.errors import NeurogenError
from codegen.ir import NO_ACTIVATION, Activation, Graph, Layer, Tensor

OK, ERR_NULL, ERR_ARENA_SIZE, ERR_ARENA_ALIGN, ERR_NOT_READY = 0, -1, -2, -3, -4


class Ctx(ctypes.Structure):
    _fields_ = [("arena", ctypes.c_void_p), ("ready", ctypes.c_uint)]


class Api:
    """Direct ctypes access to a built project's init/run and tensor tables (no codegen.runtime)."""

    def __init__(self, library, name: str):
        self.lib = ctypes.CDLL(str(library))
        self.init = getattr(self.lib, f"{name}_init")
        self.init.argtypes = [ctypes.POINTER(Ctx), ctypes.c_void_p, ctypes.c_size_t]
        self.init.restype = ctypes.c_int
        self.run = getattr(self.lib, f"{name}_run")
        self.run.argtypes = [ctypes.POINTER(Ctx), ctypes.c_void_p, ctypes.c_void_p]
        self.run.restype = ctypes.c_int
        self.name = name

    def tensor_names(self, which: str, count: int, max_rank: int) -> list[bytes]:
        class Info(ctypes.Structure):
            _fields_ = [("name", ctypes.c_char_p), ("rank", ctypes.c_int), ("shape", ctypes.c_int * max_rank),
                        ("size", ctypes.c_size_t)]
        table = (Info * count).in_dll(self.lib, f"{self.name}_{which}")
        return [entry.name for entry in table]


def arena_size(project) -> int:
    header = next((project / "include").glob("*.h")).read_text()
    return int(re.search(r"_ARENA_SIZE \(\(size_t\)(\d+)u\)", header).group(1))


def pointers(arrays) -> ctypes.Array:
    return (ctypes.c_void_p * len(arrays))(*(a.ctypes.data for a in arrays))


def simple_graph(name: str = "tiny", with_intermediate: bool = True, x: str = "x", y: str = "y") -> Graph:
    g = Graph(name, {}, [], [x], [y])
    g.tensors[x] = Tensor(x, (2, 3))
    g.tensors[y] = Tensor(y, (2, 3))
    if with_intermediate:
        g.tensors["t"] = Tensor("t", (2, 3))
        g.layers.append(Layer("a", "activation", [x], ["t"], {"activation": Activation("relu")}))
        g.layers.append(Layer("b", "binary", ["t", x], [y], {"op": "mul", "activation": NO_ACTIVATION}))
    else:
        g.layers.append(Layer("a", "activation", [x], [y], {"activation": Activation("sigmoid")}))
    return g.validate()


# -- poisoned memory ---------------------------------------------------------------------------

@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_routines_do_not_read_stale_arena_or_output_memory(builds, family):
    """Arena and output buffers start as NaN (and keep the first run's values for the second run)."""
    fg = builds.graph(family)
    project = builds.project(family, "gcc")
    api = Api(build.build(project, kind="shared", target=target_for("gcc"), werror=True), project.name)
    size = arena_size(project)
    storage = np.full(size + 64, 0xFF, dtype=np.uint8)  # every float in it is a NaN
    base = storage.ctypes.data + (-storage.ctypes.data) % 64
    ctx = Ctx()
    assert api.init(ctypes.byref(ctx), base, size) == OK
    inputs = [np.ascontiguousarray(fg.inputs[n]) for n in fg.graph.inputs]
    want = builds.reference(family)
    for _ in range(2):
        outputs = [np.full(fg.graph.shape(n), np.nan, np.float32) for n in fg.graph.outputs]
        assert api.run(ctypes.byref(ctx), pointers(inputs), pointers(outputs)) == OK
        failures = []
        for case in FAMILIES[family]:
            for variant in fg.variants[case.id]:
                index = fg.graph.outputs.index(variant.output)
                try:
                    assert_close(f"{case.id} [{variant.label}]", outputs[index], want[variant.output],
                                 tolerance_of(variant.label))
                except AssertionError as exc:
                    if not case.xfail:
                        failures.append(str(exc).splitlines()[0])
        assert not failures, "\n".join(failures)
    # The inputs are read-only for the model.
    for name, array in zip(fg.graph.inputs, inputs, strict=True):
        np.testing.assert_array_equal(array, fg.inputs[name])


# -- the C API contract ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_api(tmp_path_factory):
    out = tmp_path_factory.mktemp("api")
    project = emit.write_project(compiler.generate(simple_graph(), targets.load("host"), name="tiny"), out / "tiny")
    return project, Api(build.build(project, kind="shared", target=target_for("gcc"), werror=True), "tiny")


def test_init_checks_its_arguments(tiny_api):
    project, api = tiny_api
    size = arena_size(project)
    assert size > 0
    storage = np.zeros(size + 128, np.uint8)
    aligned = storage.ctypes.data + (-storage.ctypes.data) % 64
    ctx = Ctx()
    assert api.init(None, aligned, size) == ERR_NULL
    assert api.init(ctypes.byref(ctx), None, size) == ERR_NULL
    assert api.init(ctypes.byref(ctx), aligned, size - 1) == ERR_ARENA_SIZE
    assert api.init(ctypes.byref(ctx), aligned + 4, size) == ERR_ARENA_ALIGN
    x = np.ones((2, 3), np.float32)
    y = np.zeros((2, 3), np.float32)
    assert api.run(ctypes.byref(ctx), pointers([x]), pointers([y])) == ERR_NOT_READY  # failed init: not ready
    assert api.init(ctypes.byref(ctx), aligned, size + 64) == OK  # a larger arena is fine
    assert api.run(ctypes.byref(ctx), pointers([x]), pointers([y])) == OK
    np.testing.assert_array_equal(y, x)
    assert api.run(None, pointers([x]), pointers([y])) == ERR_NULL
    assert api.run(ctypes.byref(ctx), None, pointers([y])) == ERR_NULL
    assert api.run(ctypes.byref(ctx), pointers([x]), None) == ERR_NULL
    assert api.run(ctypes.byref(ctx), (ctypes.c_void_p * 1)(None), pointers([y])) == ERR_NULL
    assert api.run(ctypes.byref(ctx), pointers([x]), (ctypes.c_void_p * 1)(None)) == ERR_NULL


def test_two_contexts_run_independently(tiny_api):
    project, api = tiny_api
    size = arena_size(project)
    runs = []
    for seed in (1, 2):
        storage = np.zeros(size + 64, np.uint8)
        ctx = Ctx()
        assert api.init(ctypes.byref(ctx), storage.ctypes.data + (-storage.ctypes.data) % 64, size) == OK
        runs.append((storage, ctx, np.random.default_rng(seed).standard_normal((2, 3)).astype(np.float32)))
    for _, ctx, x in runs + runs[::-1]:
        y = np.empty((2, 3), np.float32)
        assert api.run(ctypes.byref(ctx), pointers([x]), pointers([y])) == OK
        np.testing.assert_allclose(y, np.maximum(x, 0) * x, rtol=1e-6)


@pytest.mark.parametrize("cc", COMPILERS)
def test_model_without_intermediates_builds_warning_free(tmp_path, cc):
    # Nothing lives in the arena: its size is 0 and init must accept NULL.
    g = simple_graph("noarena", with_intermediate=False)
    project = emit.write_project(compiler.generate(g, targets.load("host"), name="noarena"), tmp_path / "p")
    assert arena_size(project) == 0
    api = Api(build.build(project, kind="shared", target=target_for(cc), werror=True), "noarena")
    ctx = Ctx()
    assert api.init(ctypes.byref(ctx), None, 0) == OK
    x = np.linspace(-3, 3, 6, dtype=np.float32).reshape(2, 3)
    y = np.empty_like(x)
    assert api.run(ctypes.byref(ctx), pointers([x]), pointers([y])) == OK
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-x)), rtol=1e-6)


# -- compilers and weight modes ------------------------------------------------------------------

def test_cc_environment_variable_picks_the_host_compiler(tmp_path, monkeypatch):
    project = emit.write_project(compiler.generate(simple_graph(), targets.load("host"), name="tiny"), tmp_path / "p")
    for cc in ("clang", "gcc"):
        monkeypatch.setenv("CC", cc)
        assert targets.load("host").compiler == cc
        library = build.build(project, kind="shared", werror=True)
        # The .comment section names the compiler of every object ("clang version ..." for clang).
        assert (b"clang version" in library.read_bytes()) == (cc == "clang"), f"{library} was not built by {cc}"
    monkeypatch.delenv("CC")
    assert targets.load("host").compiler == targets.load("host").cc
    # Other targets use their own compiler whatever $CC says.
    monkeypatch.setenv("CC", "clang")
    assert targets.load("generic-c99").compiler == targets.load("generic-c99").cc


# One case per kind of weight packing (Winograd-transformed, GEMM panels, K-blocked panels, blocked layouts,
# depthwise, a residual operand) rather than the whole conv family, whose weights make a C array of 160 MB.
C_ARRAY_CASES = ("odd_7x13", "depthwise_stride2", "blocked_wide_stride2_dilation2", "residual_1x1_relu",
                 "k_blocks_1x1_800")


def test_weights_as_a_c_array_give_the_reference_results(tmp_path):
    cases = [c for c in FAMILIES["conv"] if c.id in C_ARRAY_CASES]
    fg = build_family("conv", cases, seed=1)
    assert set(fg.variants) == set(C_ARRAY_CASES)
    project = write(fg, tmp_path, "conv_array", weights="c-array")
    assert not (project / "src" / "conv_array_weights.bin").exists()
    got = runtime.load(project, target=target_for("clang"), werror=True).run(fg.inputs)
    failures = family_failures(cases, fg, got, reference.run(fg.graph, fg.inputs))
    assert not failures, "\n".join(failures)


# -- names -------------------------------------------------------------------------------------

ODD_NAMES = ['in"quoted"', "back\\slash", "new\nline", "close */ comment", "tab\there", "é模型", "a:b/c.d"]


@pytest.mark.parametrize("cc", COMPILERS)
def test_odd_tensor_names_survive_into_the_c_tables(tmp_path, cc):
    g = Graph("names", {}, [], [], [])
    for i, name in enumerate(ODD_NAMES):
        out = f"{name} out"
        g.tensors[name] = Tensor(name, (3,))
        g.tensors[out] = Tensor(out, (3,))
        g.layers.append(Layer(f"l{i}", "activation", [name], [out], {"activation": Activation("relu")}))
        g.inputs.append(name)
        g.outputs.append(out)
    g.validate()
    project = emit.write_project(compiler.generate(g, targets.load("host"), name="names"), tmp_path / "p")
    api = Api(build.build(project, kind="shared", target=target_for(cc), werror=True), "names")
    assert api.tensor_names("inputs", len(ODD_NAMES), 1) == [n.encode() for n in ODD_NAMES]
    assert api.tensor_names("outputs", len(ODD_NAMES), 1) == [f"{n} out".encode() for n in ODD_NAMES]


@pytest.mark.parametrize("name", ["what??=", "x??/"])
def test_trigraph_like_names_build(tmp_path, name):
    g = simple_graph("trigraph", x=name)
    project = emit.write_project(compiler.generate(g, targets.load("host"), name="trigraph"), tmp_path / "p")
    api = Api(build.build(project, kind="shared", target=target_for("gcc"), werror=True), "trigraph")
    assert api.tensor_names("inputs", 1, 2) == [name.encode()]


# -- float literals ------------------------------------------------------------------------------

@pytest.mark.parametrize("cc", COMPILERS)
def test_c_float_literals_compile_to_the_exact_float(tmp_path, cc):
    rng = np.random.default_rng(11)
    bits = rng.integers(0, 2**32, size=3000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    specials = np.array([0.0, -0.0, 1.0, 0.1, 1 / 3, 3.4028235e38, 1e-45, 1.1754944e-38, 16777217.0, 1e20,
                         np.inf, -np.inf], np.float32)
    values = np.concatenate([values[np.isfinite(values)], specials])
    body = ",\n".join(f"    {c_float(v)}" for v in values)
    source = tmp_path / "literals.c"
    source.write_text("#include <math.h>\n#include <stdio.h>\n#include <string.h>\n"
                      f"static const float values[] = {{\n{body}\n}};\n"
                      "int main(void)\n{\n    unsigned int bits;\n"
                      "    for (size_t i = 0; i < sizeof values / sizeof values[0]; ++i) {\n"
                      "        memcpy(&bits, &values[i], sizeof bits);\n        printf(\"%u\\n\", bits);\n    }\n"
                      "    return 0;\n}\n")
    program = tmp_path / "literals"
    subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O0", str(source), "-o", str(program)],
                   check=True, capture_output=True)
    got = np.array(subprocess.run([str(program)], check=True, capture_output=True, text=True).stdout.split(),
                   dtype=np.uint64).astype(np.uint32)
    np.testing.assert_array_equal(got, values.view(np.uint32))



# -- graph outputs that no layer of their own writes ------------------------------------------------

def outputs_graph(kind: str) -> Graph:
    g = Graph("outs", {}, [], ["x"], [])
    for name in ("x", "t", "y", "z"):
        g.tensors[name] = Tensor(name, (2, 3))
    g.tensors["c"] = Tensor("c", (2, 3), data=np.arange(6, dtype=np.float32).reshape(2, 3))
    g.layers.append(Layer("a", "activation", ["x"], ["t"], {"activation": Activation("relu")}))
    g.layers.append(Layer("b", "binary", ["t", "x"], ["y"], {"op": "add", "activation": NO_ACTIVATION}))
    if kind == "read_later":
        g.layers.append(Layer("c", "activation", ["y"], ["z"], {"activation": Activation("sigmoid")}))
    g.outputs = {"input": ["y", "x"], "constant": ["y", "c"], "twice": ["y", "y"], "read_later": ["y", "z"]}[kind]
    return g


@pytest.mark.parametrize("kind", ["input", "constant", "twice", "read_later"])
def test_every_output_buffer_is_written(tmp_path, kind):
    """Each output buffer receives its values, or the graph is refused with an error naming the output."""
    g = outputs_graph(kind)
    try:
        files = compiler.generate(g.validate(), targets.load("host"), name="outs")
    except NeurogenError as exc:
        assert any(f"'{name}'" in str(exc) for name in g.outputs[1:]), exc
        return
    project = emit.write_project(files, tmp_path / "p")
    api = Api(build.build(project, kind="shared", target=target_for("gcc"), werror=True), "outs")
    size = arena_size(project)
    storage = np.zeros(size + 64, np.uint8)
    ctx = Ctx()
    assert api.init(ctypes.byref(ctx), storage.ctypes.data + (-storage.ctypes.data) % 64, size) == OK
    x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    outputs = [np.full((2, 3), np.nan, np.float32) for _ in g.outputs]
    assert api.run(ctypes.byref(ctx), pointers([x]), pointers(outputs)) == OK
    want = reference.run(g, {"x": x})
    for name, got in zip(g.outputs, outputs, strict=True):
        np.testing.assert_allclose(got, want[name], rtol=1e-6, err_msg=name)


# -- arena sharing under pressure ------------------------------------------------------------------

def random_dag(seed: int, layers: int = 40) -> Graph:
    """A random DAG of element-wise layers and global pools whose tensors live long and overlap in time."""
    rng = np.random.default_rng(seed)
    g = Graph(f"dag{seed}", {}, [], [], [])
    full, pooled = (1, 8, 5, 5), (1, 8, 1, 1)

    def tensor(shape) -> str:
        name = f"t{len(g.tensors)}"
        g.tensors[name] = Tensor(name, shape)
        return name

    x = tensor(full)
    g.inputs.append(x)
    made = [x]
    bounded = Activation("clip", -4.0, 4.0)
    for i in range(layers):
        choice = rng.integers(3)
        a = made[rng.integers(len(made))]
        if choice == 0:
            act = [Activation("sigmoid"), Activation("hard_swish"), Activation("relu"), bounded][rng.integers(4)]
            y = tensor(g.shape(a))
            g.layers.append(Layer(f"l{i}", "activation", [a], [y], {"activation": act}))
        elif choice == 1:
            b = made[rng.integers(len(made))]
            shape = tuple(np.broadcast_shapes(g.shape(a), g.shape(b)))
            y = tensor(shape)
            op = ["add", "sub", "mul"][rng.integers(3)]
            g.layers.append(Layer(f"l{i}", "binary", [a, b], [y], {"op": op, "activation": bounded}))
        else:
            if g.shape(a) != full:
                continue
            y = tensor(pooled)
            g.layers.append(Layer(f"l{i}", "global_avgpool", [a], [y]))
        made.append(y)
    produced = made[1:]
    picks = {produced[-1], *(produced[int(k)] for k in rng.integers(len(produced), size=3))}
    g.outputs = sorted(picks, key=produced.index)
    return g.validate()


@pytest.mark.parametrize("seed", range(4))
def test_long_lived_intermediates_do_not_clobber_each_other(tmp_path, seed):
    g = random_dag(seed)
    project = emit.write_project(compiler.generate(g, targets.load("host"), name="dag"), tmp_path / "p")
    intermediates = set(g.tensors) - set(g.inputs) - set(g.outputs)
    assert arena_size(project) >= max(g.tensor(n).nbytes for n in intermediates)
    model = runtime.load(project, target=target_for("gcc"), werror=True)
    x = np.random.default_rng(seed).standard_normal(g.shape(g.inputs[0])).astype(np.float32)
    got = model.run({g.inputs[0]: x})
    want = reference.run(g, {g.inputs[0]: x})
    for name in g.outputs:
        assert_close(name, got[name], want[name])
