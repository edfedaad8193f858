"""The benchmark harness: many routine instances in one program, built once, run on the target.

Each `Item` is one routine instance on one layer (or one adapt on one tensor shape).
Items with the same layer signature form a group; the group's reference routine runs
first and every other instance's output is checked against it before its time counts.
The program reads its weights from a file, so it can be copied to a board and run there.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Iterable
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
from ..selection import Selection, adapt_routine, reference_selection
from ..targets import Target
from .runners import Runner, Session

TOLERANCE = 1e-4  # max |error| / max |reference| for an instance's time to count


@dataclass(frozen=True)
class Settings:
    min_reps: int = 5
    max_reps: int = 200
    min_seconds: float = 0.05
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
    # Threads each instance runs on (routines that split their work use them all).
    threads: int = 1


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
    """The layer's reference instance (shapes as constants): the one the others are checked against."""
    if item.layer.kind == "layout" or item.selection.routine.algorithm != "ref":
        return False
    return item.selection.key == reference_selection(item.layer, item.graph).key


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
        for item in group:
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
                          "index": index - 1, "parallel": step.parallel,
                          "tolerance": max(TOLERANCE, item.selection.routine.tolerance or 0.0),
                          "inputs": case_inputs, "is_reference": _is_reference(item),
                          "output": {"slot": outputs[out.name], "view": _view(out.shape, out.layout)}})
        has_reference = any(c["is_reference"] for c in cases)
        if not has_reference and group[0].layer.kind != "layout":
            raise NeurogenError(f"profiling: no reference routine among the candidates of {group[0].layer.name}")
        rendered_groups.append({"cases": cases, "identity_salt": 17,
                                "comment": f"{group[0].layer.kind} {group[0].layer.name}"})
    files[f"src/{name}_main.c"] = env.get_template("bench/main.c.j2").render(
        name=name, groups=rendered_groups, cases=flat, weights_size=len(program.weights),
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


def parse(stdout: str) -> dict[str, Measurement]:
    results = {}
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        data = json.loads(line)
        results[data["key"]] = Measurement(data["key"], bool(data["ok"]), float(data["error"]),
                                           float(data["median_us"]), float(data["min_us"]),
                                           float(data["max_us"]), float(data["mad_us"]), int(data["reps"]))
    return results


def run_bench(session: Session, program: Path, weights: Path, settings: Settings,
              timeout: float = 1800) -> dict[str, Measurement]:
    remote_program = session.put(program, executable=True)
    remote_weights = session.put(weights)
    result = session.run([remote_program, remote_weights, str(settings.min_reps), str(settings.max_reps),
                          str(settings.min_seconds), str(settings.evict_bytes), str(int(bool(settings.cold_weights)))],
                         timeout=timeout)
    session.check(result, "the profiling program")
    return parse(result.stdout)


def batches(items: list[Item], max_items: int) -> list[list[Item]]:
    """Split into batches of whole groups (a group's reference must share its program)."""
    result: list[list[Item]] = [[]]
    for group in _ordered(items):
        if result[-1] and len(result[-1]) + len(group) > max_items:
            result.append([])
        result[-1].extend(group)
    return [b for b in result if b]


def profile(items: list[Item], target: Target, runner: Runner, *, settings: Settings | None = None,
            max_items: int = 160, on_batch: Callable[[int, int, int], Any] | None = None,
            ) -> dict[str, Measurement]:
    """Build and run benchmark programs for `items` on the target; measurements by item key.

    `on_batch(done_items, total_items, batch_index)` is called after each batch (for progress).
    """
    settings = settings or Settings()
    results: dict[str, Measurement] = {}
    todo = batches(items, max_items)
    done = 0
    with tempfile.TemporaryDirectory(prefix="neurogen-bench-") as tmp, runner.session() as session:
        for b, batch in enumerate(todo):
            workdir = Path(tmp) / f"batch{b}"
            program, weights = build_bench(batch, target, workdir, settings.threads)
            measured = run_bench(session, program, weights, settings)
            missing = [it.key for it in batch if it.key not in measured]
            if missing:
                raise NeurogenError(f"the profiling program reported no result for {missing[0]}")
            results.update(measured)
            done += len(batch)
            if on_batch:
                on_batch(done, len(items), b)
    return results

