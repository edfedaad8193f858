"""Models built for several threads: the pool in runtime_c/ng_threads.h, the schedule's barriers, routines
that split their work. Checked against onnxruntime, under ThreadSanitizer, and for what a one-thread build
leaves out (pthreads)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import relative_error, require_tool

import codegen
from codegen.build import build

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def threaded(tiny_model_path, tiny_record, tmp_path_factory):
    root = tmp_path_factory.mktemp("threads")
    return {n: codegen.compile_model(tiny_model_path, root / f"t{n}", name="tiny", record=tiny_record, threads=n)
            for n in (1, 3)}


def test_the_threaded_schedule_splits_work_and_meets_at_barriers(threaded):
    model_c = (threaded[3] / "src" / "tiny.c").read_text()
    assert "ng_pool_run(" in model_c and "ng_barrier(pool);" in model_c
    assert ", part, parts);" in model_c, "at least one routine of the tuned path splits its work"
    assert (threaded[3] / "src" / "ng_threads.h").is_file()
    single = (threaded[1] / "src" / "tiny.c").read_text()
    assert "pthread" not in single and "ng_threads" not in single
    assert not (threaded[1] / "src" / "ng_threads.h").exists()


@pytest.mark.parametrize("threads", [1, 3])
def test_threaded_model_matches_onnxruntime(threaded, threads, tiny_inputs, tiny_expected):
    with codegen.load(threaded[threads], werror=True) as model:
        assert model.threads == threads
        for _ in range(3):  # the pool is reused from run to run
            got = model.run(tiny_inputs)
            for name, want in tiny_expected.items():
                assert relative_error(want, got[name]) < TOLERANCE, name


def test_threaded_model_is_clean_under_thread_sanitizer(threaded, tmp_path, tiny_inputs, tiny_expected):
    require_tool("gcc")
    program = build(threaded[3], kind="program", werror=True, extra_cflags=("-fsanitize=thread", "-g"))
    paths = []
    for i, value in enumerate(tiny_inputs.values()):
        paths.append(tmp_path / f"in{i}.bin")
        value.astype("<f4").tofile(paths[-1])
    outs = [tmp_path / "out0.bin", tmp_path / "out1.bin"]
    proc = subprocess.run([str(program), "-n", "5", *map(str, paths), *map(str, outs)], capture_output=True,
                          text=True, timeout=300, env={"TSAN_OPTIONS": "halt_on_error=1"})
    assert proc.returncode == 0 and "ThreadSanitizer" not in proc.stderr, proc.stderr[-4000:]


def test_one_thread_library_needs_no_pthreads(threaded):
    library = build(threaded[1], kind="shared")
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(library)], capture_output=True, text=True,
                               check=True).stdout
    assert "pthread" not in undefined
    threaded_lib = build(threaded[3], kind="shared")
    assert "pthread_create" in subprocess.run(["nm", "-D", "--undefined-only", str(threaded_lib)],
                                              capture_output=True, text=True, check=True).stdout


def test_threads_option_is_checked(tiny_model_path, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "codegen", "compile", str(tiny_model_path), "-o", str(tmp_path / "x"),
                           "--reference", "--threads", "0"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--threads: expected a whole number from 1 to 64, not '0'" in proc.stderr
    assert "Traceback" not in proc.stderr
