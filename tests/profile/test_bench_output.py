"""The benchmark program's output read back through real wrappers (prefix scripts) that do to it what a
board's shell or a cut connection does: banners, cut lines, altered fields, lost lines. Each malformed
output is one RunnerError naming the routine instance and showing what was received."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from runner_kit import script

from codegen import zoo
from codegen.compiler import import_model
from codegen.profile.harness import (
    Item,
    Settings,
    batches,
    bench_sources,
    build_bench,
    parse,
    parse_line,
    profile,
    run_bench,
)
from codegen.profile.runners import LocalRunner, RunnerError
from codegen.targets import load as load_target
from codegen.tune import candidates, with_references

QUICK = Settings(min_reps=1, max_reps=2, min_seconds=0.0, evict_bytes=0)


@pytest.fixture(scope="module")
def sub_items() -> list[Item]:
    """The candidates of one small layer of the example CNN, its reference first (as the program runs them)."""
    graph = import_model(zoo.build("tiny_cnn", resolution=16))
    [items] = batches(with_references(candidates(graph, load_target("host")).by_layer["Sub_0"]), 100)
    assert len(items) >= 3
    return items


@pytest.fixture(scope="module")
def bench(sub_items, tmp_path_factory) -> tuple[Path, Path]:
    return build_bench(sub_items, load_target("host"), tmp_path_factory.mktemp("bench"))


def run_through(wrapper_body: str, bench, tmp_path: Path) -> tuple[str, str]:
    """Run the benchmark program under a prefix script; (its stdout, the runner's description)."""
    wrapper = script(tmp_path / "wrapper", wrapper_body)
    with LocalRunner([str(wrapper)]).session() as session:
        result = session.check(run_bench(session, *bench, QUICK), "the profiling program")
        return result.stdout, session.where


def test_clean_output_and_a_banner_before_it(sub_items, bench, tmp_path):
    stdout, where = run_through('exec "$@"', bench, tmp_path)
    assert set(parse(stdout, sub_items, where)) == {item.key for item in sub_items}
    banner, where = run_through('echo "Welcome to board-7 (BusyBox v1.36)"; echo; echo "{not ours}"; exec "$@"',
                                bench, tmp_path)
    measured = parse(banner, sub_items, where)
    assert set(measured) == {item.key for item in sub_items}
    assert all(m.ok and m.reps >= 1 and m.median_us >= 0 for m in measured.values())


def test_banner_glued_to_the_first_result_is_a_missing_result(sub_items, bench, tmp_path):
    stdout, where = run_through("printf 'board$ '; exec \"$@\"", bench, tmp_path)
    with pytest.raises(RunnerError) as error:
        parse(stdout, sub_items, where)
    message = str(error.value)
    assert f"reported no result for {sub_items[0].selection.key} on layer 'Sub_0'" in message
    assert "on local via wrapper" in message and "Its output begins 'board$ {\"key\": " in message


def test_output_cut_mid_line(sub_items, bench, tmp_path):
    """The connection drops after 300 bytes: the second line ends half way."""
    stdout, where = run_through('"$@" | head -c 300', bench, tmp_path)
    with pytest.raises(RunnerError) as error:
        parse(stdout, sub_items, where)
    message = str(error.value)
    assert f"the result of {sub_items[1].selection.key} on layer 'Sub_0' (output line 2)" in message
    assert "is not complete JSON" in message and "The line begins '{\"key\": " in message


def test_altered_and_missing_fields_name_the_routine(sub_items, bench, tmp_path):
    stdout, where = run_through('"$@" | sed \'2s/"reps": [0-9]*/"reps": "many"/\'', bench, tmp_path)
    with pytest.raises(RunnerError, match=f"the result of {sub_items[1].selection.key} on layer 'Sub_0'.*"
                                          "\"reps\" is 'many', not a positive whole number"):
        parse(stdout, sub_items, where)
    stdout, where = run_through('"$@" | sed \'1s/, "mad_us": [^,]*//\'', bench, tmp_path)
    with pytest.raises(RunnerError, match=f"the result of {sub_items[0].selection.key} .* is missing mad_us"):
        parse(stdout, sub_items, where)


def test_a_lost_line_is_a_missing_result_naming_the_last_one_read(sub_items, bench, tmp_path):
    stdout, where = run_through('"$@" | sed \'$d\'', bench, tmp_path)
    with pytest.raises(RunnerError) as error:
        parse(stdout, sub_items, where)
    message = str(error.value)
    assert f"no result for {sub_items[-1].selection.key} on layer 'Sub_0'" in message
    assert f"the last result read was that of {sub_items[-2].selection.key}" in message


def test_junk_in_a_result_line_through_profile(sub_items, tmp_path):
    """Through the whole profiling path: bytes a serial console mangled are shown escaped, and nothing of
    the unreadable batch reaches the caller's store."""
    wrapper = script(tmp_path / "mangle", '"$@" | sed \'3s/"ok": [01]/"ok": \\x01\\xff/\'')
    stored: list[dict] = []
    with pytest.raises(RunnerError) as error:
        profile(sub_items, load_target("host"), LocalRunner([str(wrapper)]), settings=QUICK,
                on_measured=stored.append)
    message = str(error.value)
    assert f"the result of {sub_items[2].selection.key} on layer 'Sub_0' (output line 3)" in message
    assert "\\x01" in message and stored == []


@pytest.mark.parametrize("line, problem", [
    ('{"key": "k", "ok": 1, "error": 0.0, "median_us": 2.0, "min_us": 1.0, "max_us": 3.0, "mad_us": 0.1}',
     "missing reps"),
    ('{"key": 7, "ok": 1, "error": 0.0, "median_us": 2.0, "min_us": 1.0, "max_us": 3.0, "mad_us": 0.1, "reps": 3}',
     '"key" is 7'),
    ('{"key": "k", "ok": 2, "error": 0, "median_us": 2.0, "min_us": 1.0, "max_us": 3.0, "mad_us": 0.1, "reps": 3}',
     '"ok" is 2'),
    ('{"key": "k", "ok": 1, "error": nan, "median_us": 2, "min_us": 1, "max_us": 3, "mad_us": 0, "reps": 3}',
     '"error" is nan'),
    ('{"key": "k", "ok": 1, "error": 0, "median_us": 9.0, "min_us": 1.0, "max_us": 3.0, "mad_us": 0, "reps": 3}',
     "not 0 <= min_us <= median_us <= max_us"),
    ('{"key": "k", "ok": 1, "error": 0, "median_us": true, "min_us": 1.0, "max_us": 3.0, "mad_us": 0, "reps": 3}',
     '"median_us" is True, not a number'),
    ('["key"]', "not a JSON object"),
])
def test_parse_line_says_what_is_wrong(line, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(")):
        parse_line(line)


def test_parse_line_reads_printfs_infinity():
    """A routine that outputs NaN gets error = INFINITY, which printf writes as `inf`."""
    m = parse_line('{"key": "k", "ok": 0, "error": inf, "median_us": 2.0, "min_us": 1.0, "max_us": 3.0, '
                   '"mad_us": 0.5, "reps": 3}')
    assert not m.ok and m.error == float("inf") and (m.min_us, m.median_us, m.max_us) == (1.0, 2.0, 3.0)


def test_instances_that_differ_outside_their_micro_kernels_share_them(tmp_path):
    """A conv layer's GEMM instances (row blocks, thread counts) reuse one definition of each identical tile
    function (gemm-tile.j2's shared_tile), and the program built from them still checks out."""
    graph = import_model(zoo.build("tiny_cnn", resolution=32))
    target = load_target("host")
    by_layer = candidates(graph, target).by_layer
    conv = next(name for name, items in by_layer.items()
                if sum("gemm" in item.selection.key for item in items) >= 2)
    items = with_references(by_layer[conv])
    files, _ = bench_sources(items)
    gemm = [text for path, text in files.items() if "gemm" in path and "scalar" not in path]
    assert gemm, sorted(files)
    shared = 0
    for text in gemm:
        guards = re.findall(r"^#ifndef (NG_TILE_[0-9A-F]+)$", text, re.M)
        defined = re.findall(r"^static void (ng_tile_[0-9a-f]+)\(", text, re.M)
        assert sorted(set(guards)) == sorted(name.upper() for name in set(defined))
        assert len(defined) == len(guards)  # each guard wraps exactly one definition
        shared += len(guards) - len(set(guards))
        for name in set(defined):
            assert text.count(f"#define {name.upper()}") == len([g for g in guards if g == name.upper()])
    assert shared > 0, "no two instances shared a tile: the check above proves nothing"
    program, weights = build_bench(items, target, tmp_path)
    with LocalRunner().session() as session:
        result = session.check(run_bench(session, program, weights, QUICK), "the profiling program")
    measured = parse(result.stdout, items, session.where)
    assert all(m.ok for m in measured.values())
