"""The generated C project itself: compilers, sanitizers, build systems, weights modes, bytes.

TVM's AOT tests are the model: write a main.c (here, the project's own example),
build it, run it on input files, compare the output files with onnxruntime.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from support import relative_error, require_tool

import codegen
from codegen.build import build
from codegen.compiler import generate, import_model
from codegen.targets import load as load_target

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def projects(tiny_model_path, tiny_record, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("projects")
    """The tuned path (layouts mixed, adapts inserted) in both weight forms."""
    return {mode: codegen.compile_model(tiny_model_path, root / mode, name="tiny", weights=mode, record=tiny_record)
            for mode in ("incbin", "c-array")}


def run_example(program: Path, inputs: dict[str, np.ndarray], workdir: Path,
                runner: tuple[str, ...] = ()) -> list[np.ndarray]:
    in_files = []
    for i, value in enumerate(inputs.values()):
        path = workdir / f"in{i}.bin"
        value.astype("<f4").tofile(path)
        in_files.append(str(path))
    out_files = [str(workdir / f"out{i}.bin") for i in range(2)]
    proc = subprocess.run([*runner, str(program), *in_files, *out_files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return [np.fromfile(f, dtype="<f4") for f in out_files]


def check_outputs(outputs: list[np.ndarray], expected: dict[str, np.ndarray]) -> None:
    for got, (name, want) in zip(outputs, expected.items()):
        assert got.size == want.size, name
        assert relative_error(want, got.reshape(want.shape)) < TOLERANCE, name


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
@pytest.mark.parametrize("mode", ["incbin", "c-array"])
def test_builds_clean_and_matches_under_sanitizers(projects, compiler, mode, monkeypatch, tmp_path,
                                                   tiny_inputs, tiny_expected):
    """-std=c99 -Wall -Wextra -Werror with ASan and UBSan, for both compilers and both weight forms."""
    monkeypatch.setenv("CC", require_tool(compiler))
    program = build(projects[mode], kind="program", werror=True, sanitize=True)
    check_outputs(run_example(program, tiny_inputs, tmp_path), tiny_expected)


def test_makefile_builds_library_and_example(projects, tmp_path, tiny_inputs, tiny_expected):
    project = projects["incbin"]
    proc = subprocess.run(["make", "-s", "-C", str(project), "example", "shared", "CFLAGS=-O2 -Werror"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (project / "build" / "libtiny.a").is_file() and (project / "build" / "libtiny.so").is_file()
    check_outputs(run_example(project / "build" / "tiny_example", tiny_inputs, tmp_path), tiny_expected)


def _cmake_build(project: Path, build_dir: Path, *extra: str) -> None:
    cmake = require_tool("cmake")
    configure = subprocess.run([cmake, "-S", str(project), "-B", str(build_dir), "-DTINY_BUILD_EXAMPLE=ON",
                                "-DCMAKE_C_FLAGS=-Werror", *extra], capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    proc = subprocess.run([cmake, "--build", str(build_dir)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cmake_builds_for_the_host(projects, tmp_path, tiny_inputs, tiny_expected):
    _cmake_build(projects["incbin"], tmp_path / "build")
    check_outputs(run_example(tmp_path / "build" / "tiny_example", tiny_inputs, tmp_path), tiny_expected)


def test_cmake_cross_builds_for_aarch64_with_a_toolchain_file(tiny_model_path, tmp_path, tiny_inputs, tiny_expected):
    """The path an Android NDK build takes: CMAKE_TOOLCHAIN_FILE, with the aarch64 target's flags;
    the result runs under qemu-aarch64."""
    cc = require_tool("aarch64-linux-gnu-gcc")
    qemu = require_tool("qemu-aarch64")
    toolchain = tmp_path / "aarch64.cmake"
    toolchain.write_text(
        "set(CMAKE_SYSTEM_NAME Linux)\nset(CMAKE_SYSTEM_PROCESSOR aarch64)\n"
        f"set(CMAKE_C_COMPILER {cc})\n"
        "set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)\n"
        "set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)\nset(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)\n")
    project = codegen.compile_model(tiny_model_path, tmp_path / "arm", name="tiny", target="aarch64-linux",
                                    reference=True)
    assert '"-O2 -march=armv8.2-a+dotprod+fp16"' in (project / "CMakeLists.txt").read_text()
    _cmake_build(project, tmp_path / "build", f"-DCMAKE_TOOLCHAIN_FILE={toolchain}")
    program = tmp_path / "build" / "tiny_example"
    check_outputs(run_example(program, tiny_inputs, tmp_path, (qemu, "-L", "/usr/aarch64-linux-gnu")),
                  tiny_expected)


def test_generation_is_byte_for_byte_reproducible(tiny_model_path, tiny_record, tmp_path, monkeypatch):
    """Compiling from a tuning record twice, from other folders, gives the same bytes."""
    record_file = tmp_path / "tuning.json"
    record_file.write_text(json.dumps(tiny_record))
    first = codegen.compile_model(tiny_model_path, tmp_path / "a", name="tiny", record=record_file)
    monkeypatch.chdir(tmp_path)
    second = codegen.compile_model(str(tiny_model_path), "b", name="tiny", record="tuning.json")
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
        if rel.suffix != ".bin":
            text = (first / rel).read_text()
            assert str(tmp_path) not in text and str(tiny_model_path.parent) not in text, rel


def test_generated_code_never_allocates(projects):
    """No allocator calls in the sources, and none among the library's undefined symbols."""
    project = projects["incbin"]
    for source in (project / "src").rglob("*.c"):
        assert not re.search(r"\b(malloc|calloc|realloc|free)\s*\(", source.read_text()), source
    library = build(project, kind="shared", werror=True)
    symbols = subprocess.run(["nm", "-u", "-D", str(library)], capture_output=True, text=True, check=True).stdout
    undefined = {line.split()[-1].split("@")[0] for line in symbols.splitlines() if line.strip()}
    assert not undefined & {"malloc", "calloc", "realloc", "free", "aligned_alloc", "posix_memalign"}


def test_arena_size_is_exact_and_checked(projects, tmp_path):
    """init refuses a short or misaligned arena; run refuses an uninitialised context; the exact size works."""
    project = projects["incbin"]
    main = tmp_path / "api_main.c"
    main.write_text("""
#include <stdio.h>
#include <stdint.h>
#include "tiny.h"
static union { double d; unsigned char b[TINY_ARENA_SIZE + 2 * TINY_ARENA_ALIGN]; } storage;
static float in0[TINY_INPUT0_SIZE], out0[TINY_OUTPUT0_SIZE], out1[TINY_OUTPUT1_SIZE];
int main(void) {
    unsigned char *arena = storage.b + (TINY_ARENA_ALIGN - (uintptr_t)storage.b % TINY_ARENA_ALIGN);
    const float *ins[1] = {in0};
    float *outs[2] = {out0, out1};
    tiny_ctx ctx = {0, 0};
    if (tiny_run(&ctx, ins, outs) != TINY_ERR_NOT_READY) return 1;
    if (tiny_init(&ctx, arena, TINY_ARENA_SIZE - 1) != TINY_ERR_ARENA_SIZE) return 2;
    if (tiny_init(&ctx, arena + 1, TINY_ARENA_SIZE) != TINY_ERR_ARENA_ALIGN) return 3;
    if (tiny_init(NULL, arena, TINY_ARENA_SIZE) != TINY_ERR_NULL) return 4;
    if (tiny_init(&ctx, arena, TINY_ARENA_SIZE) != TINY_OK) return 5;
    outs[1] = NULL;
    if (tiny_run(&ctx, ins, outs) != TINY_ERR_NULL) return 6;
    outs[1] = out1;
    if (tiny_run(&ctx, ins, outs) != TINY_OK) return 7;
    if (tiny_inputs[0].rank != 4 || tiny_inputs[0].shape[3] != 32) return 8;
    printf("ok\\n");
    return 0;
}
""")
    program = build(project, kind="program", main=main, werror=True, sanitize=True)
    proc = subprocess.run([str(program)], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == "ok\n", (proc.returncode, proc.stderr)


def test_arena_plan_is_smaller_than_keeping_every_tensor(tiny_model_path):
    graph = import_model(tiny_model_path)
    record = generate(graph, load_target("host"), name="tiny")["tuning.json"]
    import json

    arena = json.loads(record)["arena_bytes"]
    every_tensor = sum(graph.tensor(o).nbytes for layer in graph.layers for o in layer.outputs
                       if o not in graph.outputs)
    assert 0 < arena < every_tensor


STEP_COUNTER = """
#include <stdio.h>
#include "tiny.h"
static int steps_seen, last_step = -1, in_order = 1;
void count_step(int step) { in_order &= step == last_step + 1; last_step = step; ++steps_seen; }
static _Alignas(64) unsigned char arena[TINY_ARENA_SIZE];
static float input[TINY_INPUT0_SIZE], logits[TINY_OUTPUT0_SIZE], probs[TINY_OUTPUT1_SIZE];
int main(void)
{
    tiny_ctx ctx;
    const float *inputs[1] = {input};
    float *outputs[2] = {logits, probs};
    if (tiny_init(&ctx, arena, sizeof arena) != TINY_OK || tiny_run(&ctx, inputs, outputs) != TINY_OK) {
        return 1;
    }
    printf("%d %d\\n", steps_seen, in_order);
    return 0;
}
"""


def test_step_hook_is_called_after_every_routine_call(projects, tmp_path):
    """-DTINY_STEP_HOOK=fn: per-step timing without touching the generated sources."""
    project = projects["incbin"]
    main = tmp_path / "steps.c"
    main.write_text(STEP_COUNTER)
    program = build(project, kind="program", main=main, werror=True, extra_cflags=("-DTINY_STEP_HOOK=count_step",))
    output = subprocess.run([str(program)], capture_output=True, text=True, check=True).stdout
    steps, in_order = map(int, output.split())
    emitted = json.loads((project / "tuning.json").read_text())["emitted"]
    assert (steps, in_order) == (len(emitted), 1)
