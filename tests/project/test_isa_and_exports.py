"""Release builds: explicit ISA flags (never -march=native), a project that refuses to build without the
flags its routines need, and shared libraries that export exactly the API.

The compilers are real: `cc -dM -E` says which feature macros a set of flags defines, and the projects
are built with gcc, clang, make and cmake."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from support import require_tool
from test_generated_project import check_outputs, run_example

import codegen
from codegen import emit, targets
from codegen.build import build
from codegen.compiler import generate, import_model
from codegen.errors import TargetError
from codegen.routines import REGISTRY
from codegen.selection import Selection, selections_for

API = {"tiny_init", "tiny_run", "tiny_deinit", "tiny_inputs", "tiny_outputs"}

# /proc/cpuinfo flags of a few machines (only those that matter here).
V2 = "sse sse2 cx16 lahf_lm popcnt pni sse4_1 sse4_2 ssse3"
V3 = f"{V2} avx avx2 bmi1 bmi2 f16c fma abm movbe xsave"
V4 = f"{V3} avx512f avx512bw avx512cd avx512dq avx512vl avx512_vnni"
CPUS = {
    "zen4": (V4, ("-march=x86-64-v4",)),
    "haswell": (V3, ("-march=x86-64-v3",)),
    # A VM that hides MOVBE: no level above v2 may be named, the features it does have are listed one by one.
    "vm-without-movbe": (V4.replace(" movbe", ""),
                         ("-march=x86-64-v2", "-mavx", "-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw",
                          "-mavx512dq", "-mavx512vl")),
    "sandy-bridge": (f"{V2} avx", ("-march=x86-64-v2", "-mavx")),
    "cortex-a55": ("fp asimd evtstrm aes crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp",
                   ("-march=armv8.2-a+dotprod+fp16",)),
    "cortex-a53": ("fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid", ("-march=armv8-a",)),
    "riscv": ("", ()),
}


def defined_macros(cc: str, flags: tuple[str, ...] | list[str]) -> set[str]:
    out = subprocess.run([cc, *flags, "-dM", "-E", "-x", "c", "-"], input="", capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return {line.split()[1] for line in out.stdout.splitlines() if line.startswith("#define ")}


def feature_macros(features: frozenset[str] | set[str]) -> set[str]:
    known = {**targets.X86_FEATURES, **targets.ARM_FEATURES}
    return {known[f].macro for f in features if f in known}


def compiler_for(features: frozenset[str]) -> str | None:
    """A compiler that can check these flags here (None: none installed)."""
    arm = bool(features & set(targets.ARM_FEATURES))
    return shutil.which("aarch64-linux-gnu-gcc" if arm else "gcc")


# -- the flags the host target gets -----------------------------------------------------------------

@pytest.mark.parametrize("cpu", sorted(CPUS))
def test_detected_flags_name_the_level_and_enable_every_detected_feature(cpu):
    cpuinfo, expected = CPUS[cpu]
    features, flags = targets.isa_for_cpu(frozenset(cpuinfo.split()))
    assert flags == expected
    assert not any("native" in flag for flag in flags)
    assert "avx512vnni" not in features  # no routine uses it, so no flag enables it, so it is not offered
    cc = compiler_for(features)
    if cc is None:
        pytest.skip("no compiler for this ISA here")
    macros = defined_macros(cc, flags)
    missing = feature_macros(features) - macros
    assert not missing, f"{flags} leave {missing} undefined, yet routines needing them could be chosen"


def test_the_host_target_is_explicit_and_its_flags_enable_its_isa():
    host = targets.load("host")
    assert host.cflags[0] == "-O2" and not any("native" in f for f in host.cflags)
    assert host.cflags[1:] == targets.detect_cflags()
    missing = feature_macros(host.isa) - defined_macros(require_tool("gcc"), host.cflags)
    assert not missing
    assert host.describe()["cflags"] == list(host.cflags)  # what the record stores, and a record must match


@pytest.mark.parametrize("name", targets.available())
def test_every_bundled_target_enables_the_features_it_lists(name):
    target = targets.load(name)
    cc = target.cc if name != "host" else "gcc"
    if "${" in target.cc or shutil.which(cc) is None:
        pytest.skip(f"{cc} is not installed")
    missing = feature_macros(target.isa) - defined_macros(cc, target.cflags)
    assert not missing, f"{name}: {list(target.cflags)} do not define {missing}"


def test_march_native_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\n[toolchain]\ncc = "cc"\ncflags = ["-O2", "-march=native"]\n')
    with pytest.raises(TargetError, match=r"mine.toml: cflags '-march=native'.*name the ISA.*detect"):
        targets.load(str(path))
    path.write_text('name = "mine"\n[toolchain]\ncc = "cc"\ncflags = ["-march=x86-64-v3"]\n'
                    '[features]\nisa = ["detect"]\n')
    with pytest.raises(TargetError, match=r"detection chooses -march itself"):
        targets.load(str(path))


def test_every_feature_a_routine_requires_has_a_guard():
    need = targets.isa_need(set().union(*(r.requires for r in REGISTRY)))
    assert need is not None and set(need.features) == set().union(*(r.requires for r in REGISTRY))
    assert targets.isa_need({"scalar"}) is None
    with pytest.raises(ValueError, match="sve"):
        targets.isa_need({"sve"})
    assert targets.isa_need({"avx2", "fma"}).message("m") == \
        "m needs the x86-64-v3 ISA (avx2, fma): build with -march=x86-64-v3 (or -mavx2 -mfma)"
    assert targets.isa_need({"neon", "dotprod"}).message("m") == \
        "m needs the armv8.2-a+dotprod ISA (neon, dotprod): build with -march=armv8.2-a+dotprod"


# -- the ISA guard of a generated project -----------------------------------------------------------

def simd_selections(graph, target: targets.Target) -> dict[str, Selection]:
    """AVX-512 and AVX2 routines, alternately, wherever a layer has them (the reference elsewhere)."""
    chosen: dict[str, Selection] = {}
    for layer in graph.layers:
        options = selections_for(layer, graph, target.isa, target.devices, superseded=True)
        order = ("avx512f", "avx2") if len(chosen) % 2 == 0 else ("avx2", "avx512f")
        for isa in order:
            picks = [s for s in options if isa in s.routine.requires]
            if picks:
                chosen[layer.name] = picks[0]
                break
    return chosen


@pytest.fixture(scope="module")
def simd_project(tiny_model_path, tmp_path_factory) -> Path:
    graph = import_model(tiny_model_path)
    target = targets.load("x86_64-avx512")
    chosen = simd_selections(graph, target)
    isas = {s.routine.isa for s in chosen.values()}
    assert isas == {"avx512f", "avx2"}, isas
    files = generate(graph, target, name="tiny", selections=chosen)
    return emit.write_project(files, tmp_path_factory.mktemp("simd") / "tiny")


GUARD = "tiny needs the x86-64-v4 ISA (avx2, fma, avx512f): build with -march=x86-64-v4 (or -mavx2 -mfma -mavx512f)"


def compile_sources(project: Path, cc: str, flags: list[str], out: Path) -> subprocess.CompletedProcess[str]:
    sources = [str(p) for p in [project / "src" / "tiny.c", *sorted((project / "src" / "routines").glob("*.c"))]]
    out.mkdir(exist_ok=True)
    return subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", *flags, "-I", str(project / "include"),
                           "-c", *sources], cwd=out, capture_output=True, text=True)


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_a_simd_project_built_without_its_flags_stops_with_the_flags_to_use(simd_project, compiler, tmp_path):
    proc = compile_sources(simd_project, require_tool(compiler), ["-O2"], tmp_path)
    assert proc.returncode != 0
    first_error = next(line for line in proc.stderr.splitlines() if "error" in line)
    assert GUARD in first_error, proc.stderr[:2000]


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
@pytest.mark.parametrize("flags", [["-O2", "-march=x86-64-v4"], ["-O2", "-mavx2", "-mfma", "-mavx512f"]])
def test_a_simd_project_builds_with_the_flags_its_guard_names(simd_project, compiler, flags, tmp_path):
    proc = compile_sources(simd_project, require_tool(compiler), flags, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_simd_project_names_its_isa_and_holds_no_native_flag(simd_project):
    assert GUARD in (simd_project / "include" / "tiny.h").read_text()
    assert GUARD in (simd_project / "Makefile").read_text() and GUARD in (simd_project / "CMakeLists.txt").read_text()
    for path in simd_project.rglob("*"):
        if path.is_file() and path.suffix != ".bin":
            assert "native" not in path.read_text(), path


def test_the_makefile_builds_a_simd_project_with_its_target_flags(simd_project, tmp_path):
    proc = subprocess.run(["make", "-s", "-C", str(simd_project), "CFLAGS=-Werror"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_reference_project_needs_no_isa(tiny_model_path, tmp_path):
    project = codegen.compile_model(tiny_model_path, tmp_path / "p", name="tiny", reference=True)
    assert "#error" not in (project / "src" / "tiny_internal.h").read_text()
    assert "Portable C99" in (project / "include" / "tiny.h").read_text()
    assert compile_sources(project, require_tool("gcc"), ["-O2"], tmp_path / "o").returncode == 0


# -- shared libraries export the API and nothing else -----------------------------------------------

@pytest.fixture(scope="module")
def reference_project(tiny_model_path, tmp_path_factory) -> Path:
    return codegen.compile_model(tiny_model_path, tmp_path_factory.mktemp("shared") / "tiny", name="tiny",
                                 reference=True)


def exported(library: Path) -> set[str]:
    out = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True, check=True)
    return {line.split()[-1] for line in out.stdout.splitlines() if line.strip()}


def test_cmake_shared_library_exports_the_api_and_the_example_runs_against_it(reference_project, tmp_path,
                                                                           tiny_inputs, tiny_expected):
    cmake = require_tool("cmake")
    build_dir = tmp_path / "build"
    configure = subprocess.run([cmake, "-S", str(reference_project), "-B", str(build_dir), "-DBUILD_SHARED_LIBS=ON",
                                "-DTINY_BUILD_EXAMPLE=ON", "-DCMAKE_C_FLAGS=-Werror"], capture_output=True, text=True)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    proc = subprocess.run([cmake, "--build", str(build_dir)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    library = build_dir / "libtiny.so"
    assert exported(library) == API
    needed = subprocess.run(["readelf", "-d", str(build_dir / "tiny_example")], capture_output=True, text=True,
                            check=True).stdout
    assert "[libtiny.so]" in needed  # linked against the shared library, not a copy of the objects
    check_outputs(run_example(build_dir / "tiny_example", tiny_inputs, tmp_path), tiny_expected)


def test_make_shared_exports_the_api_and_hides_the_routines(reference_project, tmp_path):
    project = tmp_path / "tiny"
    subprocess.run(["cp", "-r", str(reference_project), str(project)], check=True)
    proc = subprocess.run(["make", "-s", "-C", str(project), "shared", "CFLAGS=-O2 -Werror"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert exported(project / "build" / "libtiny.so") == API


def test_built_shared_library_exports_the_api(reference_project):
    library = build(reference_project, kind="shared", werror=True)
    assert exported(library) == API
    with codegen.load(reference_project) as model:  # and codegen.runtime still finds what it calls
        outputs = model.run(np.zeros(model.inputs[0].shape, np.float32))
    assert len(outputs) == 2
