"""Hostile strings in a model, on the command line or in a target file never become code.

Each name of the corpus is put everywhere a model carries names (graph, nodes, inputs, outputs,
initializers); the project is compiled, built with -Werror by gcc (and checked by clang), loaded and run.
It must export nothing beyond the documented API, import nothing beyond the C library's maths and memory
functions, run no constructor (the payloads would create a file), keep each name exact in the C tables,
and agree with onnxruntime."""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from support import onnxruntime_outputs

import codegen
from codegen import targets
from codegen.build import build

# Valid C that runs a shell command when the library is loaded, if it ever escapes into code.
PAYLOAD = 'int system(const char *); __attribute__((constructor)) static void pwn(void) { system("touch PWNED"); }'
CORPUS = {
    "cr-splice": "y*\\\r/ " + PAYLOAD + " /*",  # the reported attack: `*\<CR>/` closes the comment
    "comment-end": "*/ " + PAYLOAD + " /*",
    "lf-crlf": "a\n" + PAYLOAD + "\r\nb",
    "backslash-newline": "x \\\n" + PAYLOAD,
    "trigraph": "x ??/\n" + PAYLOAD + " ??= ??' ??!",
    "quotes": "say \"hi\" it's " + PAYLOAD,
    "include": '#include "/etc/passwd"\n#include <stdlib.h>\n' + PAYLOAD,
    "format": "%s%n%x%p%%",
    "shell": "$(touch PWNED) `touch PWNED` ; touch PWNED | & > x",
    "keyword": "int",
    "long": "n" * 10_000,
    "non-ascii": "模型/ünïcödé 🙂 \u202e\u200b",
    "spaces": " ",
}


def _model(name: str) -> onnx.ModelProto:
    """Conv -> Relu with two outputs whose names collide once sanitised ('/1' and '_1')."""
    rng = np.random.default_rng(0)
    x, w, b = f"{name}:in", f"{name}:w", f"{name}:b"
    out_a, out_b, hidden = f"{name}/1", f"{name}_1", f"{name}.conv"
    nodes = [helper.make_node("Conv", [x, w, b], [hidden], name=name, pads=[1, 1, 1, 1]),
             helper.make_node("Relu", [hidden], [out_a], name=f"{name}#relu"),
             helper.make_node("Sigmoid", [hidden], [out_b], name=f"{name}*/")]
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), w),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), b)]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 6, 6]) for n in (out_a, out_b)]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 3, 6, 6])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def api_symbols(name: str) -> set[str]:
    return {f"{name}_{s}" for s in ("init", "run", "deinit", "inputs", "outputs")}


# What the generated code may call: the C library's maths and memory functions (and the sanitizer-free
# toolchain's own helpers). A call to system(), popen(), exec*() ... would show here.
ALLOWED_IMPORTS = {"memcpy", "memset", "memmove", "expf", "exp", "tanhf", "erff", "sqrtf", "logf", "powf",
                   "floorf", "ceilf", "roundf", "fmaxf", "fminf", "fabsf", "__stack_chk_fail", "__cxa_finalize",
                   "_ITM_deregisterTMCloneTable", "_ITM_registerTMCloneTable", "__gmon_start__", "nearbyintf",
                   "rintf", "lrintf"}


def symbols(library: Path, *flags: str) -> set[str]:
    out = subprocess.run(["nm", "-D", *flags, str(library)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}


def tensor_names(library: Path, name: str, table: str, count: int, max_rank: int = 4) -> list[bytes]:
    """The `name` fields of the C table `<name>_inputs` / `_outputs` (`<name>_tensor_info`), read from the
    built library."""

    class Info(ctypes.Structure):
        _fields_ = [("name", ctypes.c_char_p), ("rank", ctypes.c_int), ("shape", ctypes.c_int * max_rank),
                    ("size", ctypes.c_size_t)]

    lib = ctypes.CDLL(str(library))
    array = (Info * count).in_dll(lib, f"{name}_{table}")
    return [array[i].name for i in range(count)]


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_hostile_model_names_stay_data(case, tmp_path, monkeypatch):
    hostile = CORPUS[case]
    model = _model(hostile)
    onnx.checker.check_model(model)
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    monkeypatch.chdir(tmp_path)  # where a payload's `touch PWNED` would land
    project = codegen.compile_model(path, tmp_path / "out", reference=True)
    name = "model"
    library = build(project, kind="shared", werror=True)
    exported = symbols(library, "--defined-only")
    assert exported <= api_symbols(name) | {"_init", "_fini"}, exported - api_symbols(name)
    imported = symbols(library, "--undefined-only")
    assert imported <= ALLOWED_IMPORTS, imported - ALLOWED_IMPORTS
    if shutil.which("clang"):
        for source in sorted((project / "src").rglob("*.c")):
            subprocess.run(["clang", "-std=c99", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
                            "-I", str(project / "include"), str(source)], check=True, capture_output=True)
    x = np.random.default_rng(1).standard_normal((1, 3, 6, 6)).astype(np.float32)
    with codegen.load(project) as compiled:
        actual = compiled.run(x)
        assert tensor_names(library, name, "inputs", 1) == [f"{hostile}:in".encode()]
        assert tensor_names(library, name, "outputs", 2) == [f"{hostile}/1".encode(), f"{hostile}_1".encode()]
    expected = onnxruntime_outputs(path, {f"{hostile}:in": x})
    assert list(actual) == list(expected)
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=1e-5, atol=1e-5)
    assert not (tmp_path / "PWNED").exists()
    assert not Path("PWNED").exists()


@pytest.mark.parametrize("given, expected", [("$(touch PWNED)", "touch_pwned"), ("a\r\n*/b", "a_b"),
                                             ("模型", "model"), ("x" * 500, "x" * 40), ("1st", "m_1st")])
def test_hostile_name_option_becomes_an_identifier(given, expected, tiny_model_path, tmp_path):
    project = codegen.compile_model(tiny_model_path, tmp_path / "p", name=given, reference=True)
    assert (project / "include" / f"{expected}.h").is_file()


@pytest.mark.parametrize("given", ["math", "string", "stdint", "stdio", "ng_threads", "int"])
def test_a_name_that_would_shadow_a_header_or_keyword_is_refused(given, tiny_model_path, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "codegen", "compile", str(tiny_model_path), "-o",
                           str(tmp_path / "p"), "--reference", "--name", given], capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"--name '{given}'" in proc.stderr and "choose another name" in proc.stderr
    assert not (tmp_path / "p").exists()


def test_a_model_file_named_like_a_system_header_gets_a_safe_default_name(tiny_model_path, tmp_path):
    model = tmp_path / "math.onnx"
    model.write_bytes(tiny_model_path.read_bytes())
    project = codegen.compile_model(model, tmp_path / "p", reference=True)
    assert (project / "include" / "math_model.h").is_file()
    build(project, kind="shared", werror=True)


def test_a_hostile_output_path_is_only_a_path(tiny_model_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out $(touch PWNED) `touch PWNED`; 'q' \"d\" #x" / "p,q=r"
    project = codegen.compile_model(tiny_model_path, out, reference=True)
    with codegen.load(project) as compiled:
        compiled.run(np.zeros(compiled.inputs[0].shape, np.float32))
    subprocess.run(["make", "-s"], cwd=project, check=True, capture_output=True)
    if shutil.which("cmake"):  # CMake passes absolute paths to -Wa,: a comma is refused with what to do
        proc = subprocess.run(["cmake", "-S", str(project), "-B", str(tmp_path / "cmake-build")],
                              capture_output=True, text=True)
        assert proc.returncode != 0 and "holds a comma" in proc.stderr, proc.stderr
    assert not (tmp_path / "PWNED").exists()


HOSTILE_FLAGS = ["-O2", "-DNG_A=$(shell touch PWNED)", "-DNG_B=`touch PWNED`", "-DNG_C='a b'#c",
                 '-DNG_D="q"&&touch PWNED', "-DNG_E=50%\\x"]


def hostile_target(tmp_path: Path) -> Path:
    flags = ", ".join(json.dumps(f) for f in HOSTILE_FLAGS)  # JSON strings are TOML basic strings
    path = tmp_path / "evil.toml"
    path.write_text(f"name = \"evil\\\"; touch PWNED\"\ndescription = \"$(touch PWNED)\"\n"
                    f"[toolchain]\ncc = \"cc\"\ncflags = [{flags}]\n[features]\nisa = [\"scalar\"]\n")
    return path


def words_the_shell_sees(command: str, cwd: Path) -> list[str]:
    """The argument words of a compile command as a POSIX shell splits them: the command runs with its
    compiler replaced by printf (so a flag that escaped its quoting would run here, and be caught)."""
    compiler, _, rest = command.strip().partition(" ")
    out = subprocess.run(["sh", "-c", "printf '%s\\n' " + rest], cwd=cwd, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_hostile_target_flags_reach_make_and_cmake_as_words(tiny_model_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = targets.load(str(hostile_target(tmp_path)))
    assert list(target.cflags) == HOSTILE_FLAGS
    project = codegen.compile_model(tiny_model_path, tmp_path / "p", target=target, reference=True)
    dry = subprocess.run(["make", "-n"], cwd=project, capture_output=True, text=True, check=True).stdout
    line = next(line for line in dry.splitlines() if " -c src/tiny_cnn.c " in line)
    words = words_the_shell_sees(line, tmp_path)
    assert [w for w in words if w in HOSTILE_FLAGS] == HOSTILE_FLAGS, words
    subprocess.run(["make", "-s"], cwd=project, check=True, capture_output=True)
    if shutil.which("cmake"):
        build_dir = tmp_path / "cmake-build"
        subprocess.run(["cmake", "-S", str(project), "-B", str(build_dir)], check=True, capture_output=True)
        subprocess.run(["cmake", "--build", str(build_dir)], check=True, capture_output=True)
        commands = subprocess.run(["cmake", "--build", str(build_dir), "--", "-B", "-n"], capture_output=True,
                                  text=True, check=True).stdout
        line = next(line for line in commands.splitlines() if "tiny_cnn.c.o" in line and " -c " in line)
        words = words_the_shell_sees(line, tmp_path)
        assert [w for w in words if w in HOSTILE_FLAGS] == HOSTILE_FLAGS, words
    assert not (tmp_path / "PWNED").exists()
    assert not (project / "PWNED").exists()


@pytest.mark.parametrize("flag, problem", [("-O2\n\tall: ; touch PWNED", "control character"),
                                           ("-DX=a;b", "list separator"), ("-DX=$<CONFIG>", "generator expression")])
def test_a_target_flag_that_cannot_be_written_safely_is_refused(flag, problem, tiny_model_path, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(f'name = "bad"\n[toolchain]\ncc = "cc"\ncflags = [{json.dumps(flag)}]\n')
    proc = subprocess.run([sys.executable, "-m", "codegen", "compile", str(tiny_model_path), "-o",
                           str(tmp_path / "p"), "--reference", "--target", str(path)], capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert problem in proc.stderr
    assert not (tmp_path / "p").exists()
