"""Tuning on the host: the profile cache, tuning records and what they refuse, reports, targets."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import onnx
import pytest
from support import host_target_toml

import codegen
from codegen import zoo
from codegen.compiler import import_model, tune_model
from codegen.errors import TargetError
from codegen.ir import DType, Graph, Layer, Layout, Tensor
from codegen.profile.cache import ProfileCache
from codegen.profile.harness import Settings, adapt_item, batches
from codegen.profile.runners import RunnerError
from codegen.routines import REGISTRY
from codegen.routines.registry import template_closure
from codegen.selection import selections_for
from codegen.targets import fingerprint
from codegen.targets import load as load_target
from codegen.tune import RecordError, candidates, settings_for, tune, weights_bytes, with_references

QUICK = Settings(min_reps=1, max_reps=3, min_seconds=0.0)


def neurogen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codegen", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def small_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tune") / "small.onnx"
    onnx.save(zoo.build("tiny_cnn", resolution=16), str(path))
    return path


def test_second_tune_measures_nothing_and_reprofile_measures_again(small_path, tmp_path):
    cache = ProfileCache(tmp_path / "cache.sqlite")
    first = tune_model(small_path, cache=cache, settings=QUICK)
    instances = first["profiling"]["instances"]
    assert first["profiling"]["measured"] == instances > 20
    assert cache.count() == instances
    second = tune_model(small_path, cache=cache, settings=QUICK)
    assert second["profiling"]["measured"] == 0
    assert [e["instance"] for e in second["path"]] == [e["instance"] for e in first["path"]]
    third = tune_model(small_path, cache=cache, reprofile=True, settings=QUICK)
    assert third["profiling"]["measured"] == instances


def test_weights_are_flushed_when_the_model_outgrows_the_targets_weight_cache(small_path, tmp_path):
    graph = import_model(small_path)
    host = load_target("host")
    assert host.weights_cache_bytes == 32 << 20  # targets/host.toml
    assert settings_for(graph, host, QUICK).cold_weights is False
    small_cache = dataclasses.replace(host, weights_cache_bytes=weights_bytes(graph) - 1)
    assert settings_for(graph, small_cache, QUICK).cold_weights is True
    assert settings_for(graph, small_cache, dataclasses.replace(QUICK, cold_weights=False)).cold_weights is False
    cache = ProfileCache(tmp_path / "cache.sqlite")
    warm = tune(graph, host, cache=cache, settings=QUICK)
    cold = tune(graph, small_cache, cache=cache, settings=QUICK)
    assert (warm["profiling"]["weights"], cold["profiling"]["weights"]) == ("cached", "flushed to memory")
    assert cold["profiling"]["measured"] == cold["profiling"]["instances"], "times with flushed weights are keyed apart"
    assert all(entry["time_us"] > 0 for entry in cold["path"])


def test_record_describes_the_choice(tiny_record):
    predicted = tiny_record["predicted_us"]
    assert predicted["dprs"] <= predicted["greedy"] + 1e-6
    assert predicted["dprs"] <= min(predicted["all-nchw"], predicted["all-nhwc"]) + 1e-6
    assert tiny_record["optimal"] is True
    for entry in tiny_record["path"]:
        assert entry["alternatives"][entry["instance"]] == entry["time_us"]
        if entry["runner_up"]:
            assert entry["runner_up"]["instance"] != entry["instance"]
    chosen = sum(e["time_us"] for e in tiny_record["path"]) + sum(a["time_us"] for a in tiny_record["adapts"])
    assert chosen == pytest.approx(predicted["dprs"], rel=1e-3)


def test_candidates_mix_layouts_and_cover_adapts(tiny_model_path):
    graph = import_model(tiny_model_path)
    found = candidates(graph, load_target("host"))
    convs = [layer for layer in graph.layers if layer.kind == "conv2d"]
    layouts = {item.selection.layout for item in found.by_layer[convs[0].name]}
    assert {Layout.NCHW, Layout.NHWC} <= layouts  # and the blocked ones the host's vector ISAs have
    for blocked in layouts - {Layout.NCHW, Layout.NHWC}:
        assert (graph.shape(convs[0].inputs[0]), Layout.NCHW, blocked) in found.adapts
    assert any(item.selection.params for item in found.by_layer[convs[0].name]), "tile sizes are tuned"
    shape = graph.shape(convs[0].outputs[0])
    assert (shape, Layout.NCHW, Layout.NHWC) in found.adapts
    assert found.adapts[(shape, Layout.NCHW, Layout.NHWC)].key == adapt_item(shape, Layout.NCHW, Layout.NHWC).key


def test_tuning_skips_avx2_convolutions_where_avx512_runs_them(tiny_model_path):
    """A 256-bit GEMM on a core with 512-bit FMAs is never the fastest: it is not measured there, but it is
    on an AVX2-only core, and the routine tests (superseded=True) still get it everywhere."""
    graph = import_model(tiny_model_path)
    conv = next(layer for layer in graph.layers if layer.kind == "conv2d")
    avx2 = frozenset({"scalar", "avx", "avx2", "fma"})
    avx512 = avx2 | {"avx512f"}

    def isas(isa: frozenset[str], superseded: bool = False) -> set[str]:
        return {s.routine.isa for s in selections_for(conv, graph, isa, superseded=superseded)}

    assert isas(avx2) == {"scalar", "avx2"}
    assert isas(avx512) == {"scalar", "avx512f"}
    assert isas(avx512, superseded=True) == {"scalar", "avx2", "avx512f"}
    dense = [s.routine.isa for s in selections_for(Layer("fc", "dense", ["x", "w"], ["y"], {}),
                                                    _dense_graph(), avx512)]
    assert "avx2" in dense, "memory-bound routines keep their AVX2 instances (they can win there)"


def test_profile_cache_key_covers_the_templates_a_routine_imports():
    """Editing a shared macro (the patch gather, the GEMM tile) must measure the routines using it again."""
    gemm = next(r for r in REGISTRY if r.kind == "conv2d" and r.algorithm.startswith("gemm") and r.isa == "avx2")
    assert {"conv2d/gemm-nhwc-simd.c.j2", "conv2d/nhwc-patches.j2", "conv2d/gemm-tile.j2",
            "common.j2"} <= set(template_closure(gemm.template))
    dense = next(r for r in REGISTRY if r.kind == "dense" and r.algorithm == "ref")
    assert gemm.template_hash() != dense.template_hash()


def _dense_graph() -> Graph:
    g = Graph("fc", {}, ["x"], ["y"], [])
    g.tensors["x"] = Tensor("x", (1, 40), DType.F32)
    g.tensors["w"] = Tensor("w", (24, 40), DType.F32, np.ones((24, 40), np.float32))
    g.tensors["y"] = Tensor("y", (1, 24), DType.F32)
    return g


def test_record_round_trip_on_the_command_line(small_path, tmp_path):
    record = tmp_path / "tuning.json"
    proc = neurogen("tune", str(small_path), "-o", str(record))
    assert proc.returncode == 0, proc.stderr
    assert "profiling [" in proc.stderr and "predicted" in proc.stdout
    report = neurogen("inspect", "--record", str(record))
    assert report.returncode == 0, report.stderr
    for phrase in ("chosen instance", "runner-up", "dprs", "greedy", "all-nchw", "all-nhwc", "proven optimal"):
        assert phrase in report.stdout, phrase
    out = tmp_path / "project"
    compiled = neurogen("compile", str(small_path), "-o", str(out), "--record", str(record))
    assert compiled.returncode == 0 and "profiling" not in compiled.stderr, compiled.stderr
    check = neurogen("verify", str(small_path), str(out), "-q")
    assert check.returncode == 0, check.stdout + check.stderr
    embedded = json.loads((out / "tuning.json").read_text())
    assert embedded["path"] == json.loads(record.read_text())["path"]


def test_records_for_another_model_or_target_are_refused(small_path, tiny_model_path, tiny_record, tmp_path):
    with pytest.raises(RecordError, match="another model"):
        codegen.compile_model(small_path, tmp_path / "a", record=tiny_record)
    with pytest.raises(RecordError, match="target 'host'"):
        codegen.compile_model(tiny_model_path, tmp_path / "b", record=tiny_record, target="generic-c99")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    proc = neurogen("compile", str(tiny_model_path), "-o", str(tmp_path / "c"), "--record", str(broken))
    assert proc.returncode == 1 and "not a tuning record" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "c").exists()
    missing = neurogen("compile", str(tiny_model_path), "-o", str(tmp_path / "d"), "--record", str(tmp_path / "no"))
    assert missing.returncode == 1 and "cannot read the tuning record" in missing.stderr


def test_targets_unknown_malformed_and_user_files(tmp_path):
    with pytest.raises(TargetError, match="unknown target 'mars'.*host"):
        load_target("mars")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\n[toolchain\ncc = 'cc'\n")
    with pytest.raises(TargetError, match="malformed TOML"):
        load_target(str(bad))
    incomplete = tmp_path / "incomplete.toml"
    incomplete.write_text("name = 'x'\n")
    with pytest.raises(TargetError, match="missing key 'toolchain'"):
        load_target(str(incomplete))
    mine = tmp_path / "mine.toml"
    mine.write_text("name = 'mine'\n[toolchain]\ncc = 'gcc'\ncflags = ['-O1']\n")
    assert load_target(str(mine)).cflags == ("-O1",)
    listed = neurogen("targets").stdout
    for name in ("host", "x86_64-avx2", "x86_64-avx512", "generic-c99", "aarch64-linux", "android-arm64"):
        assert name in listed
    assert "scalar" in load_target("host").isa


def test_android_target_generates_a_project_without_the_ndk(tiny_model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("ANDROID_NDK_HOME", "/opt/android-ndk")
    project = codegen.compile_model(tiny_model_path, tmp_path / "android", target="android-arm64", reference=True)
    assert "armv8.2-a+dotprod" in (project / "CMakeLists.txt").read_text()
    target = load_target("android-arm64")
    assert target.cc.startswith("/opt/android-ndk/toolchains/llvm/")


def _store(path: str, worker: int) -> None:
    graph = import_model(zoo.build("tiny_cnn", resolution=16))
    found = candidates(graph, load_target("host"))
    items = found.items()
    from codegen.profile.harness import Measurement

    cache = ProfileCache(path)
    for _ in range(20):
        cache.store(f"target-{worker}", items, {i.key: Measurement(i.key, True, 0.0, 1.0 + worker, 1.0, 1.0, 0.0, 3)
                                               for i in items})


def test_cache_is_safe_under_concurrent_writers(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    ProfileCache(path)
    workers = [multiprocessing.get_context("spawn").Process(target=_store, args=(path, w)) for w in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    cache = ProfileCache(path)
    per_target = cache.count("target-0")
    assert per_target > 20 and cache.count() == 3 * per_target


def test_new_routines_are_measured_with_their_reference_when_the_rest_is_cached(small_path, tmp_path):
    """A cache that already holds a layer's reference still gets the reference re-run beside new routines,
    since it is what their results are checked against."""
    cache = ProfileCache(tmp_path / "cache.sqlite")
    record = tune_model(small_path, cache=cache, settings=QUICK)
    keys = {k for e in record["path"] for k in e["alternatives"]}
    victim = next(k for k in sorted(keys) if "gemm" in k)
    with closing(sqlite3.connect(cache.path)) as db, db:
        db.execute("DELETE FROM measurements WHERE instance = ?", (victim.split("|")[0],))
    again = tune_model(small_path, cache=cache, settings=QUICK)
    assert 2 <= again["profiling"]["measured"] < record["profiling"]["measured"]



def _wrapped_host(folder: Path, wrapper: Path) -> Path:
    """The host target, its benchmark programs run under `wrapper` (a real program, as an emulator is)."""
    path = folder / "wrapped.toml"
    path.write_text(host_target_toml("host-wrapped", f'kind = "local"\nprefix = ["{wrapper}"]'))
    return path


def test_a_run_that_fails_in_its_second_batch_keeps_the_first_and_tuning_again_measures_the_rest(small_path,
                                                                                                tmp_path):
    """The second benchmark program dies after printing a few results (its output cut, as a connection
    drops): the first batch, and the whole layers the second one finished, are in the cache; the next
    tune measures only the rest, in fewer programs."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "profile"))
    from runner_kit import calls, on_call

    graph, host = import_model(small_path), load_target("host")
    items = with_references(candidates(graph, host).items())
    first, second, *more = batches(items, 50)
    assert more, "three batches or more"
    layer = sum(1 for item in second if item.signature == second[0].signature)
    counter = tmp_path / "calls"
    # The second program dies; its output stops 40 bytes short of the end of the second line after its first
    # layer's results (a cut line, as when a connection drops).
    wrapper = on_call(tmp_path / "wrapper", counter, 2, f'"$@" | head -n {layer + 2} | head -c -40; exit 1')
    target = _wrapped_host(tmp_path, wrapper)
    host = load_target(str(target))
    settings = dataclasses.replace(QUICK, batch_items=50)
    cache = ProfileCache(tmp_path / "cache.sqlite")
    with pytest.raises(RunnerError, match=r"(?s)the profiling program failed on local via wrapper: exited with "
                                          r"code 1.*\d+ of the \d+ measurement\(s\) were stored in the profile cache"):
        tune_model(small_path, target=str(target), cache=cache, settings=settings)
    stored = cache.count()
    assert calls(counter) == 2 and stored == len(first) + layer, "batch 1 and the layer batch 2 finished"
    fp = f"{fingerprint(host)}|evict={settings.evict_bytes}"
    rest = [item for item in items if item.key not in cache.lookup(fp, items)]
    record = tune_model(small_path, target=str(target), cache=cache, settings=settings)
    assert record["profiling"]["measured"] == len(rest) == len(items) - stored
    assert calls(counter) == 2 + len(batches(rest, 50)), "one program per batch of what was missing"
    assert cache.count() == len(items)
