"""The NEON routines, cross-compiled for aarch64-linux and run under qemu-aarch64 (correctness, not speed).

Each family that has NEON routines is generated for the aarch64-linux target (so its candidates are the
scalar and NEON ones), built with the cross compiler at -Werror, run on 2 threads under the emulator on
raw float32 files, and every variant compared with the numpy reference, as on the host."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from routine_cases import FAMILIES
from routine_kit import FamilyGraph, build_family, family_failures, run_program
from support import require_tool

from codegen import build, compiler, emit, reference, targets
from codegen.routines import REGISTRY

NEON_FAMILIES = ("conv", "gemm", "elementwise", "normalization", "pool")
# Families whose NEON code clang also cross-builds (conv is left to gcc: it is the slowest to compile).
CLANG_FAMILIES = ("gemm", "elementwise", "normalization", "pool")


@pytest.fixture(scope="module")
def aarch64(tmp_path_factory) -> dict[str, tuple[FamilyGraph, dict[str, np.ndarray], set[str]]]:
    require_tool("aarch64-linux-gnu-gcc")
    qemu = require_tool("qemu-aarch64")
    target = targets.load("aarch64-linux")
    root = tmp_path_factory.mktemp("neon")
    results = {}
    for family in NEON_FAMILIES:
        fg = build_family(family, FAMILIES[family], seed=len(family), target=target)
        files = compiler.generate(fg.graph, target, name=f"{family}_neon", selections=fg.chosen, threads=2)
        project = emit.write_project(files, root / family)
        program = build.build(project, kind="program", target=target, werror=True)
        got = run_program(program, fg, root / f"{family}_io", prefix=(qemu, "-L", "/usr/aarch64-linux-gnu"))
        used = {step["routine"] for step in json.loads((project / "tuning.json").read_text())["emitted"]}
        results[family] = (fg, got, used)
    return results


@pytest.mark.parametrize("family", NEON_FAMILIES)
def test_neon_family_matches_the_reference_under_qemu(aarch64, family):
    fg, got, _ = aarch64[family]
    failures = family_failures(FAMILIES[family], fg, got, reference.run(fg.graph, fg.inputs))
    assert not failures, "\n".join(failures)


def test_every_neon_routine_is_exercised(aarch64):
    used = set().union(*(u for _, _, u in aarch64.values()))
    neon = {r.name for r in REGISTRY if "neon" in r.requires}
    assert neon and not neon - used, f"NEON routines no case reaches: {sorted(neon - used)}"


@pytest.mark.parametrize("family", CLANG_FAMILIES)
def test_project_cross_builds_with_neon_for_the_board(aarch64, family, tmp_path: Path):
    """The generated C of a NEON path is plain C99 with arm_neon.h: clang cross-builds it too."""
    clang = require_tool("clang")
    fg, _, _ = aarch64[family]
    project = emit.write_project(compiler.generate(fg.graph, targets.load("aarch64-linux"), name=f"{family}_neon",
                                                   selections=fg.chosen), tmp_path / "p")
    sources = sorted(str(p) for p in (project / "src").rglob("*.c"))
    flags = ["--target=aarch64-linux-gnu", "-march=armv8.2-a", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]
    proc = subprocess.run([clang, *flags, "-I", str(project / "include"), f"-Wa,-I{project / 'src'}", "-c", *sources],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
