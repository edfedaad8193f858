"""Models built for several threads: the pool in runtime_c/ng_threads.h, the schedule's barriers, routines
that split their work. Checked against onnxruntime, under ThreadSanitizer, and for what a one-thread build
leaves out (pthreads)."""

from __future__ import annotations

import copy
import itertools
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from support import relative_error, require_tool

import codegen
from codegen.build import build
from codegen.compiler import import_model, tune_model
from codegen.profile.harness import Measurement, Settings
from codegen.routines.registry import THREADS, thread_counts
from codegen.selection import Selection
from codegen.targets import load as load_target
from codegen.tune import (
    THREADS_MARGIN_US,
    RecordError,
    candidates,
    near_fastest,
    on_all_threads,
    selections_from_record,
    threads_of,
    where_fewer_won,
    with_references,
)

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


def assert_clean_under_thread_sanitizer(project, tmp_path, inputs) -> None:
    """Build `project` as a program with ThreadSanitizer and run it five times on `inputs`: no report."""
    require_tool("gcc")
    program = build(project, kind="program", werror=True, extra_cflags=("-fsanitize=thread", "-g"))
    paths = []
    for i, value in enumerate(inputs.values()):
        paths.append(tmp_path / f"in{i}.bin")
        value.astype("<f4").tofile(paths[-1])
    outs = [tmp_path / "out0.bin", tmp_path / "out1.bin"]
    proc = subprocess.run([str(program), "-n", "5", *map(str, paths), *map(str, outs)], capture_output=True,
                          text=True, timeout=300, env={"TSAN_OPTIONS": "halt_on_error=1"})
    assert proc.returncode == 0 and "ThreadSanitizer" not in proc.stderr, proc.stderr[-4000:]


def test_threaded_model_is_clean_under_thread_sanitizer(threaded, tmp_path, tiny_inputs, tiny_expected):
    assert_clean_under_thread_sanitizer(threaded[3], tmp_path, tiny_inputs)


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


# -- threads per layer: the `threads` parameter of a parallel routine's instance ------------------------------

def _parallel_layers(record, graph) -> list[str]:
    selections = selections_from_record(record, graph, load_target("host"))
    return [entry["layer"] for entry in record["path"] if selections[entry["layer"]].routine.parallel]


def _forced(record: dict, graph, threads: int, pattern: tuple[int, ...]) -> dict:
    """`record` for a `threads`-thread build whose parallel layers run on the counts of `pattern` in turn."""
    forced = copy.deepcopy(record)
    forced["threads"] = threads
    counts = itertools.cycle(pattern)
    parallel = set(_parallel_layers(record, graph))
    for entry in forced["path"]:
        if entry["layer"] in parallel:
            entry["instance"] += f",{THREADS}={next(counts)}"
    return forced


# Each pattern has two one-thread layers in a row (no barrier between them where nothing else runs between).
PATTERNS = {2: (1, 1, 2), 3: (1, 2, 3, 1)}


@pytest.fixture(scope="module")
def tiny_graph(tiny_model_path):
    return import_model(tiny_model_path)


@pytest.fixture(scope="module")
def mixed(tiny_model_path, tiny_record, tiny_graph, tmp_path_factory):
    """Builds for 2 and 3 threads whose record runs some layers on one thread and others on several."""
    root = tmp_path_factory.mktemp("mixed")
    return {n: codegen.compile_model(tiny_model_path, root / f"m{n}", name="tiny", threads=n,
                                     record=_forced(tiny_record, tiny_graph, n, PATTERNS[n]))
            for n in PATTERNS}


def test_thread_counts():
    assert thread_counts(1) == ()
    assert thread_counts(2) == (1, 2)
    assert thread_counts(4) == (1, 2, 3, 4)
    assert thread_counts(6) == (1, 2, 4, 6)
    assert thread_counts(8) == (1, 2, 4, 8)


def test_parameter_space_has_threads_only_for_several_threads(tiny_graph):
    host = load_target("host")
    one = candidates(tiny_graph, host, threads=1)
    assert not any(THREADS in item.selection.params for item in one.items())
    two = candidates(tiny_graph, host, threads=2)
    parallel = non_parallel = 0
    for layer, items in two.by_layer.items():
        plain = {item.selection.key for item in one.by_layer[layer]}
        for item in items:
            params = dict(item.selection.params)
            if item.selection.routine.parallel:
                parallel += 1
                assert params.pop(THREADS) in (1, 2)
                assert Selection(item.selection.routine, item.selection.layout, params).key in plain
            else:
                non_parallel += 1
                assert THREADS not in params and item.selection.key in plain
        # every instance of the one-thread space comes once per thread count (or once, not splitting its work)
        assert len(items) == sum(2 if item.selection.routine.parallel else 1 for item in one.by_layer[layer])
    assert parallel and non_parallel
    # At 2 threads a parallel reference is measured on one thread; it is among the candidates already.
    items = two.items()
    assert len(with_references(items, 2)) == len(items)
    assert all(THREADS not in i.selection.params for i in with_references(one.items(), 1))


def timed(items, us) -> dict[str, Measurement]:
    return {i.key: Measurement(i.key, True, 0.0, t, t, t, 0.0, 5) for i, t in zip(items, us)}


def test_fewer_threads_are_measured_only_where_they_could_win(tiny_graph):
    """In a 2-thread build, an instance on 1 thread is measured beside the layer's fastest on 2 threads and
    those within the margin of it; all of the layer's 1-thread instances once one of them won."""
    two = candidates(tiny_graph, load_target("host"), threads=2)
    layer, items = max(two.by_layer.items(), key=lambda kv: sum(threads_of(i, 2) == 2 for i in kv[1]))
    on_two = [i for i in items if threads_of(i, 2) == 2 and THREADS in i.selection.params]
    assert len(on_two) >= 3, layer
    # the fastest at 100 µs, one 5 µs behind (inside the margin), the rest far behind
    us = [100.0, 100.0 + THREADS_MARGIN_US - 3] + [400.0] * (len(on_two) - 2)
    times = timed(on_two, us)
    picked = near_fastest(items, times, 2)
    assert all(threads_of(i, 2) == 1 for i in picked)
    assert {on_all_threads(i, 2) for i in picked} == {on_two[0].key, on_two[1].key}
    assert where_fewer_won(items, times, 2) == []  # nothing on fewer threads measured yet
    # the 1-thread twin of the fastest measured slower: the others on 1 thread are not worth measuring
    twin = next(i for i in picked if on_all_threads(i, 2) == on_two[0].key)
    assert where_fewer_won(items, {**times, **timed([twin], [150.0])}, 2) == []
    # it won (the pool costs more than the split saves): every 1-thread instance of the layer is measured
    won = where_fewer_won(items, {**times, **timed([twin], [60.0])}, 2)
    assert won and {i.key for i in won} == {i.key for i in items if threads_of(i, 2) == 1}


def test_record_threads_are_read_back_and_checked(tiny_record, tiny_graph):
    host = load_target("host")
    forced = _forced(tiny_record, tiny_graph, 2, (1, 2))
    selections = selections_from_record(forced, tiny_graph, host)
    counts = [selections[n].params[THREADS] for n in _parallel_layers(tiny_record, tiny_graph)]
    assert counts[:2] == [1, 2]
    for entry in forced["path"]:  # what is read back names the same instance as the record
        assert set(selections[entry["layer"]].key.split(",")) == set(entry["instance"].split(","))
    for bad in ("0", "x", "65"):
        broken = copy.deepcopy(forced)
        entry = next(e for e in broken["path"] if "threads=" in e["instance"])
        entry["instance"] = entry["instance"].rsplit("=", 1)[0] + "=" + bad
        with pytest.raises(RecordError, match="does not offer"):
            selections_from_record(broken, tiny_graph, host)
    serial = next(e for e in tiny_record["path"] if e["layer"] not in _parallel_layers(tiny_record, tiny_graph))
    broken = copy.deepcopy(tiny_record)
    next(e for e in broken["path"] if e["layer"] == serial["layer"])["instance"] += ",threads=1"
    with pytest.raises(RecordError, match=serial["layer"]):
        selections_from_record(broken, tiny_graph, host)


def _schedule_steps(model_c: str) -> list[str]:
    """The threaded schedule's code, one block a step (from its comment to the next)."""
    body = model_c.split("_schedule(void *opaque, int part, int parts)", 1)[1].split("\n}\n", 1)[0]
    return re.split(r"\n    /\* ", body)[1:]


@pytest.mark.parametrize("threads", sorted(PATTERNS))
def test_steps_run_on_their_threads_and_meet_only_where_needed(mixed, threads, tiny_record, tiny_graph):
    steps = _schedule_steps((mixed[threads] / "src" / "tiny.c").read_text())
    assert len(steps) >= len(_parallel_layers(tiny_record, tiny_graph))
    parts = []
    for block in steps:
        call = re.search(r"\n\s+(tiny_\d{3}_\w+)\((.*)\);", block)
        assert call, block
        args = call.group(2)
        if args.endswith(", part, parts"):
            parts.append(threads)
            assert "if (part <" not in block.split(call.group(1))[0]
        elif m := re.search(r", part, \((\d+) < parts \? \1 : parts\)$", args):
            parts.append(int(m.group(1)))
            assert f"if (part < {m.group(1)}) {{\n        {call.group(1)}(" in block
        else:  # thread 0 alone (a parallel routine called as its only part, or one that does not split)
            parts.append(1)
            assert f"if (part == 0) {{\n        {call.group(1)}(" in block
            assert not args.endswith("part, parts") and ", part" not in args
    assert set(parts) == set(range(1, threads + 1))
    barriers = ["ng_barrier(pool);" in block for block in steps]
    for i in range(len(steps) - 1):
        # A barrier after a step where it or the next runs on several threads, and nowhere else.
        assert barriers[i] == (parts[i] > 1 or parts[i + 1] > 1), (i, parts[i], parts[i + 1])
    assert any(p == q == 1 and not b for p, q, b in zip(parts, parts[1:], barriers)), "two one-thread steps meet"


@pytest.mark.parametrize("threads", sorted(PATTERNS))
def test_layers_on_some_threads_give_the_one_thread_outputs(mixed, threaded, threads, tiny_inputs, tiny_expected):
    with codegen.load(threaded[1]) as single:
        want = single.run(tiny_inputs)
    with codegen.load(mixed[threads], werror=True) as model:
        assert model.threads == threads
        for _ in range(3):
            got = model.run(tiny_inputs)
            for name, reference in tiny_expected.items():
                assert relative_error(reference, got[name]) < TOLERANCE, name
                np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6 * np.abs(want[name]).max())


def test_layers_on_some_threads_are_clean_under_thread_sanitizer(mixed, tmp_path, tiny_inputs):
    assert_clean_under_thread_sanitizer(mixed[3], tmp_path, tiny_inputs)


def test_two_thread_tuning_measures_thread_counts_and_the_record_reproduces(tiny_model_path, tmp_path):
    """Tuning for 2 threads measures each parallel instance on 1 and on 2 (in the 2-thread benchmark program),
    writes the chosen count in the record, and compiling from the record gives the same bytes again."""
    record = tune_model(tiny_model_path, threads=2, settings=Settings(min_reps=2, max_reps=3, min_seconds=0.0))
    assert record["threads"] == 2
    keys = [k for entry in record["path"] for k in entry["alternatives"]]
    assert any(k.endswith(f",{THREADS}=1") for k in keys) and any(k.endswith(f",{THREADS}=2") for k in keys)
    assert any(f"{THREADS}=" in entry["instance"] for entry in record["path"])
    first = codegen.compile_model(tiny_model_path, tmp_path / "a", name="tiny", record=record)
    again = codegen.compile_model(tiny_model_path, tmp_path / "b", name="tiny", record=record)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (again / f).read_bytes() for f in files)
    written = json.loads((first / "tuning.json").read_text())
    assert [e["instance"] for e in written["path"]] == [e["instance"] for e in record["path"]]
