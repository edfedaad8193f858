"""The benchmark harness: many routine instances in one program, built once, run on the target.

Each `Item` is one routine instance on one layer (or one adapt on one tensor shape).
Items with the same layer signature form a group; the group's reference routine runs
first and every other instance's output is checked against it before its time counts.
The program reads its weights from a file, so it can be copied to a board and run there.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..build import WARNINGS, compile_and_link
from ..emit import environment, lower, routine_sources
from ..errors import NeurogenError
from ..ir import Graph, Layer, Layout, Tensor
from ..paths import RUNTIME_C
from ..record import canonical
from ..routines import RoutineInstance
from ..routines.registry import THREADS
from ..selection import Selection, adapt_routine, reference_selection
from ..targets import Target
from .runners import Runner, RunnerError, RunResult, Session, failure_message

TOLERANCE = 1e-4  # max |error| / max |reference| for an instance's time to count


@dataclass(frozen=True)
class Settings:
    min_reps: int = 5
    max_reps: int = 200
    min_seconds: float = 0.01
    # Bytes written between timed runs to flush the core's private caches, so a layer's weights
    # come in from the shared cache or memory, as they do inside a model. With the vector kernels
    # on ResNet50 here, 4 MiB brought the predicted total within 13% of the measured one (none:
    # 46% under) and picked a path 27% faster; 32 MiB predicted closer (4%) but chose worse on
    # MobileNetV2. 0 turns it off.
    evict_bytes: int = 4 << 20
    # Also flush each instance's own weights out to memory before a timed run: right for a model
    # whose weights do not stay cached from one run to the next (ResNet50's 100 MB here: without
    # it the last stage's layers were predicted at half the time they take in the model). None:
    # decided per model by tuning, from the target's weights_cache_bytes.
    cold_weights: bool | None = None
    # Threads of the benchmark program, as of the model: an instance of a routine that splits its work runs on
    # its `threads` parameter's count of them (all without one), the others wait at the barrier after it.
    threads: int = 1
    # Items per benchmark program (whole layers: a layer's candidates share one). Each program's results
    # are stored as soon as it ends, so a fault loses at most one batch.
    batch_items: int = 160


@dataclass(frozen=True)
class Item:
    """One thing to time: `layer` (whose tensors live in `graph`) run as `selection` says."""

    layer: Layer
    selection: Selection
    graph: Graph

    @property
    def signature(self) -> str:
        return layer_signature(self.layer, self.graph)

    @property
    def key(self) -> str:
        return f"{self.selection.key}|{self.signature}"

    def layouts(self) -> tuple[list[Layout], Layout]:
        """Physical layouts of the run-time inputs and of the output."""
        if self.layer.kind == "layout":
            return [self.layer.attrs["src"]], self.layer.attrs["dst"]
        return (self.selection.input_layouts(self.layer, self.graph),
                self.selection.output_layout(self.layer, self.graph))


@dataclass(frozen=True)
class Measurement:
    key: str
    ok: bool
    error: float
    median_us: float
    min_us: float
    max_us: float
    mad_us: float
    reps: int


def layer_signature(layer: Layer, graph: Graph) -> str:
    """What a routine's speed depends on: kind, attributes and shapes (not names, not weight values)."""
    inputs = [[list(graph.shape(n)), graph.is_constant(n)] if n else None for n in layer.inputs]
    item = [layer.kind, canonical(layer.attrs), inputs, [list(graph.shape(n)) for n in layer.outputs]]
    return hashlib.sha256(json.dumps(item, sort_keys=True).encode()).hexdigest()[:20]


def adapt_item(shape: tuple[int, ...], src: Layout, dst: Layout) -> Item:
    """Converting a tensor of `shape` from `src` to `dst`, on its own."""
    graph = Graph("adapt", {"x": Tensor("x", shape), "y": Tensor("y", shape)}, [], ["x"], ["y"])
    layer = Layer(f"adapt {'x'.join(map(str, shape))} {src.value}->{dst.value}", "layout", ["x"], ["y"],
                  {"src": src, "dst": dst})
    graph.layers.append(layer)
    return Item(layer, Selection(adapt_routine(src, dst)), graph)


def _view(shape: tuple[int, ...], layout: Layout) -> str:
    """The C `view` of a buffer: rank, logical shape, strides, channel block and element count.

    A blocked layout (NCHW16C ...) gives the stride of a block of channels and the block size; its
    element count includes the padding lanes (which the harness zeroes)."""
    from ..routines.loops import blocked_strides, logical_strides, physical_size

    blocked = layout.is_blocked and len(shape) == 4
    strides = blocked_strides(shape, layout) if blocked else logical_strides(shape, layout)
    return (f"{len(shape)}, {{{', '.join(map(str, shape)) or 0}}}, {{{', '.join(map(str, strides)) or 0}}}, "
            f"{layout.block if blocked else 1}, {physical_size(shape, layout)}")


def bench_graph(items: list[Item]) -> tuple[Graph, list[RoutineInstance]]:
    """One graph holding every item as an isolated layer between graph inputs and outputs."""
    g = Graph("bench", {}, [], [], [])
    instances = []
    for i, item in enumerate(items):
        in_layouts, out_layout = item.layouts()
        layouts = iter(in_layouts)
        renamed: dict[str, str] = {}
        for name in item.layer.present_inputs():
            if name in renamed:
                continue
            source = item.graph.tensor(name)
            new = f"c{i}:{name}"
            renamed[name] = new
            if source.is_constant:
                g.tensors[new] = Tensor(new, source.shape, source.dtype, source.data)
            else:
                g.tensors[new] = Tensor(new, source.shape, source.dtype, layout=next(layouts))
                g.inputs.append(new)
        outputs = []
        for name in item.layer.outputs:
            new = f"c{i}:{name}"
            g.tensors[new] = Tensor(new, item.graph.shape(name), layout=out_layout)
            g.outputs.append(new)
            outputs.append(new)
        layer = Layer(f"c{i}", item.layer.kind, [renamed.get(n, "") for n in item.layer.inputs], outputs,
                      dict(item.layer.attrs))
        g.layers.append(layer)
        instances.append(RoutineInstance(item.selection.routine, layer, dict(item.selection.params)))
    return g.validate(), instances


def _ordered(items: Iterable[Item]) -> list[list[Item]]:
    """Items grouped by layer signature, each group's reference routine first."""
    groups: dict[str, list[Item]] = {}
    for item in items:
        groups.setdefault(item.signature, []).append(item)
    ordered = []
    for members in groups.values():
        members.sort(key=lambda it: (not _is_reference(it), it.key))
        ordered.append(members)
    return ordered


def _is_reference(item: Item) -> bool:
    """The layer's reference instance (shapes as constants), on all threads or on one (`threads` 1, which
    tuning for several threads measures): the one the others are checked against."""
    if item.layer.kind == "layout" or item.selection.routine.algorithm != "ref":
        return False
    params = dict(item.selection.params)
    if params.pop(THREADS, 1) != 1:
        return False
    return Selection(item.selection.routine, item.selection.layout, params).key == \
        reference_selection(item.layer, item.graph).key


def bench_sources(items: list[Item], name: str = "bench", threads: int = 1) -> tuple[dict[str, str], bytes]:
    """The C sources of a benchmark program for `items` (each run on `threads` threads), and the weights
    file it reads."""
    groups = _ordered(items)
    flat = [item for group in groups for item in group]
    graph, instances = bench_graph(flat)
    program = lower(graph, instances, name, threads)
    env = environment()
    _, files = routine_sources(program, env)
    inputs = {n: i for i, n in enumerate(graph.inputs)}
    outputs = {n: i for i, n in enumerate(graph.outputs)}
    rendered_groups, index = [], 0
    for group in groups:
        cases = []
        for position, item in enumerate(group):
            step, layer = program.steps[index], graph.layers[index]
            index += 1
            salts = {}
            case_inputs = []
            for name_ in layer.present_inputs():
                if graph.is_constant(name_) or name_ in salts:
                    continue
                salts[name_] = 17 + 31 * len(salts)
                tensor = graph.tensor(name_)
                case_inputs.append({"slot": inputs[name_], "salt": salts[name_],
                                    "view": _view(tensor.shape, tensor.layout)})
            out = graph.tensor(layer.outputs[0])
            cases.append({"key": item.key, "call": f"{step.symbol}({', '.join(step.args)})", "weights": step.weights,
                          "index": index - 1, "parallel": step.parallel, "parts": step.parts,
                          "tolerance": max(TOLERANCE, item.selection.routine.tolerance or 0.0),
                          # One reference a group (it may hold the instance on all threads and on one).
                          "inputs": case_inputs, "is_reference": position == 0 and _is_reference(item),
                          "output": {"slot": outputs[out.name], "view": _view(out.shape, out.layout)}})
        has_reference = any(c["is_reference"] for c in cases)
        if not has_reference and group[0].layer.kind != "layout":
            raise NeurogenError(f"profiling: no reference routine among the candidates of {group[0].layer.name}")
        rendered_groups.append({"cases": cases, "identity_salt": 17,
                                "comment": f"{group[0].layer.kind} {group[0].layer.name}"})
    files[f"src/{name}_main.c"] = env.get_template("bench/main.c.j2").render(
        name=name, groups=rendered_groups, cases=flat, weights_size=len(program.weights),
        max_case_inputs=max([len(c["inputs"]) for g in rendered_groups for c in g["cases"]] + [1]),
        arena_size=program.arena.size, num_inputs=max(1, len(graph.inputs)), num_outputs=max(1, len(graph.outputs)),
        threads=threads)
    if threads > 1:
        files["src/ng_threads.h"] = (RUNTIME_C / "ng_threads.h").read_text()
    return files, program.weights


def build_bench(items: list[Item], target: Target, workdir: Path, threads: int = 1) -> tuple[Path, Path]:
    """Write and compile the benchmark program for `items`; returns (program, weights file)."""
    files, weights = bench_sources(items, threads=threads)
    for rel, text in files.items():
        path = workdir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    weights_path = workdir / "weights.bin"
    weights_path.write_bytes(weights)
    sources = sorted(p for p in (workdir / "src").rglob("*.c"))
    pthread = ["-pthread"] if threads > 1 else []
    program = compile_and_link(target.cc, [*WARNINGS, *target.cflags, *pthread], [], sources, workdir / "obj",
                               workdir / "bench", link=list(target.ldflags), libs=(*target.libs, *pthread),
                               cwd=workdir)
    return program, weights_path


# A line of ours starts like this (main.c.j2's report()); any other line is someone else's (a board's
# login banner, a shell's message) and is skipped: results are matched by key, so one it hides is missing.
_RESULT_LINE = re.compile(r'\s*\{\s*"key"\s*:')
_KEY = re.compile(r'"key"\s*:\s*"([^"\\]*)"')
# printf's %e writes inf and nan, which JSON spells Infinity and NaN (a routine that outputs NaN has error inf).
_C_SPECIAL = re.compile(r'(:\s*)(-?)(inf(?:inity)?|nan)\b', re.IGNORECASE)
_TIMES = ("median_us", "min_us", "max_us", "mad_us")
SHOWN_CHARS = 200  # of a malformed line or of the output, in an error message


def describe(item: Item) -> str:
    """An item for messages: the routine instance and its layer (a model's name, so quoted and cut)."""
    name = item.layer.name
    return f"{item.selection.key} on layer {(name[:80] + '...' if len(name) > 80 else name)!r}"


def shown(text: str) -> str:
    """The start of what the program printed, escaped (a cut line or binary junk stays readable)."""
    return repr(text[:SHOWN_CHARS]) + (f" ... ({len(text)} characters in all)" if len(text) > SHOWN_CHARS else "")


def _number(data: dict[str, Any], field: str) -> float:
    value = data[field]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f'"{field}" is {value!r}, not a number')
    return float(value)


def parse_line(line: str) -> Measurement:
    """One result line; ValueError saying what is wrong with it."""
    try:
        data = json.loads(_C_SPECIAL.sub(lambda m: m.group(1) + ("NaN" if m.group(3).lower() == "nan" else
                                                                  m.group(2) + "Infinity"), line))
    except json.JSONDecodeError as e:
        raise ValueError(f"not complete JSON ({e.msg}, character {e.pos})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    absent = [f for f in ("key", "ok", "error", *_TIMES, "reps") if f not in data]
    if absent:
        raise ValueError(f"missing {', '.join(absent)}")
    key, ok, reps = data["key"], data["ok"], data["reps"]
    if not isinstance(key, str):
        raise ValueError(f'"key" is {key!r}, not a string')
    if ok not in (0, 1) or isinstance(ok, float):
        raise ValueError(f'"ok" is {ok!r}, not 0 or 1')
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ValueError(f'"reps" is {reps!r}, not a positive whole number')
    error = _number(data, "error")
    if not error >= 0:  # also NaN
        raise ValueError(f'"error" is {error!r}, not a relative error')
    median, low, high, mad = (_number(data, f) for f in _TIMES)
    if not all(math.isfinite(t) and t >= 0 for t in (median, low, high, mad)) or not low <= median <= high:
        raise ValueError(f"its times are not 0 <= min_us <= median_us <= max_us (min {low}, median {median}, "
                         f"max {high}, mad {mad})")
    return Measurement(key, bool(ok), error, median, low, high, mad, reps)


def _read(stdout: str, by_key: dict[str, Item]) -> Iterator[tuple[int, str, Measurement | str]]:
    """(line number, line, its measurement or what is wrong with it) for each line of ours."""
    for number, line in enumerate(stdout.splitlines(), 1):
        if not _RESULT_LINE.match(line):
            continue
        try:
            m = parse_line(line)
        except ValueError as e:
            yield number, line, str(e)
            continue
        yield number, line, m if m.key in by_key else f"the result of {m.key!r}, which this program does not measure"


def parse(stdout: str, batch: Sequence[Item], where: str = "the target") -> dict[str, Measurement]:
    """The measurement of every item of `batch` from its program's output; RunnerError naming the routine
    instance and showing what was received when a line of ours cannot be read or a result is missing."""
    by_key = {item.key: item for item in batch}
    results: dict[str, Measurement] = {}
    last: Item | None = None
    for number, line, got in _read(stdout, by_key):
        if isinstance(got, str):
            found = _KEY.search(line)
            item = by_key.get(found.group(1)) if found else None
            whose = (f"the result of {describe(item)}" if item else
                     f"the line after the result of {describe(last)}" if last else "the first result line")
            raise RunnerError(f"the profiling program's output on {where} cannot be read: {whose} (output line "
                              f"{number}) is {got}. The line begins {shown(line)}. Something cut or altered the "
                              "output (a dropped connection, a shell printing into it); run again, and if it "
                              "persists, run the program by hand on the target.")
        results[got.key] = got
        last = by_key[got.key]
    missing = [item for item in batch if item.key not in results]
    if missing:
        more = f" and {len(missing) - 1} other routine instance(s)" if len(missing) > 1 else ""
        after = f" (the last result read was that of {describe(last)})" if last else " (it reported none)"
        raise RunnerError(f"the profiling program on {where} reported no result for {describe(missing[0])}{more}"
                          f"{after}. Its output begins {shown(stdout)}.")
    return results


def readable(stdout: str, batch: Sequence[Item]) -> dict[str, Measurement]:
    """The results of the whole layers that could be read from the output of a program that failed part
    way. A layer that lacks some is left out: measuring its rest again needs its reference again."""
    by_key = {item.key: item for item in batch}
    found = {got.key: got for _, _, got in _read(stdout, by_key) if not isinstance(got, str)}
    complete = {}
    for group in _ordered(batch):
        if all(item.key in found for item in group):
            complete.update({item.key: found[item.key] for item in group})
    return complete


def run_bench(session: Session, program: Path, weights: Path, settings: Settings,
              timeout: float = 1800) -> RunResult:
    """Copy a benchmark program and its weights to the target and run it there (a failure is a result)."""
    remote_program = session.put(program, executable=True)
    remote_weights = session.put(weights)
    return session.run([remote_program, remote_weights, str(settings.min_reps), str(settings.max_reps),
                        str(settings.min_seconds), str(settings.evict_bytes), str(int(bool(settings.cold_weights)))],
                       timeout=timeout)


def batches(items: list[Item], max_items: int) -> list[list[Item]]:
    """Split into batches of whole groups (a group's reference must share its program)."""
    result: list[list[Item]] = [[]]
    for group in _ordered(items):
        if result[-1] and len(result[-1]) + len(group) > max_items:
            result.append([])
        result[-1].extend(group)
    return [b for b in result if b]


def profile(items: list[Item], target: Target, runner: Runner, *, settings: Settings | None = None,
            on_batch: Callable[[int, int, int], Any] | None = None,
            on_measured: Callable[[dict[str, Measurement]], Any] | None = None) -> dict[str, Measurement]:
    """Build and run benchmark programs for `items` on the target, `settings.batch_items` per program;
    measurements by item key.

    `on_measured(measurements)` gets each batch's measurements as soon as they are read (to store them, so
    a fault in a later batch loses none), and the readable ones of a batch whose program failed before
    the error is raised. `on_batch(done_items, total_items, batch_index)` is called after each batch.
    """
    settings = settings or Settings()
    results: dict[str, Measurement] = {}
    todo = batches(items, settings.batch_items)
    done = 0
    with tempfile.TemporaryDirectory(prefix="neurogen-bench-") as tmp, runner.session() as session:
        for b, batch in enumerate(todo):
            workdir = Path(tmp) / f"batch{b}"
            program, weights = build_bench(batch, target, workdir, settings.threads)
            result = run_bench(session, program, weights, settings)
            if failure_message(result, "the profiling program", session.where):
                partial = readable(result.stdout, batch)
                if partial and on_measured:
                    on_measured(partial)
                session.check(result, "the profiling program")
            measured = parse(result.stdout, batch, session.where)
            if on_measured:
                on_measured(measured)
            results.update(measured)
            done += len(batch)
            if on_batch:
                on_batch(done, len(items), b)
    return results
