"""Tuning: profile every candidate on the target (cached), choose the routine path with DPRS.

The result is a tuning record (a JSON-able dict): the chosen routine instance of every
layer with its time and runner-up, the adapts, every alternative's time, the predicted
totals of the DPRS path and of the baselines, the target fingerprint, the model hash
and the tool version. `selections_from_record` turns a record back into the path, so
generation from a record needs no profiling.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

from . import __version__, dprs
from .errors import NeurogenError, NoRunnerError
from .ir import Graph, Layout
from .profile.cache import ProfileCache
from .profile.harness import Item, Measurement, Settings, adapt_item, profile
from .profile.runners import RunnerError, make_runner, no_runner_reason
from .progress import SILENT, Progress
from .record import RECORD_FORMAT, RECORD_VERSION, graph_hash
from .routines.registry import MAX_THREADS, THREADS, thread_counts
from .selection import (
    CODE_SIZES,
    SPATIAL_LAYOUTS,
    Selection,
    activation_inputs,
    adapt_needs,
    native_layout,
    reference_selection,
    selections_for,
)
from .targets import Target, fingerprint

DEFAULT_SETTINGS = Settings()


class RecordError(NeurogenError):
    """A tuning record does not fit the model or target it is used with."""


@dataclass
class Candidates:
    """Everything that could be measured for a graph on a target."""

    by_layer: dict[str, list[Item]]
    adapts: dict[tuple[tuple[int, ...], Layout, Layout], Item]

    def items(self) -> list[Item]:
        unique: dict[str, Item] = {}
        for item in [*(i for items in self.by_layer.values() for i in items), *self.adapts.values()]:
            unique.setdefault(item.key, item)
        return list(unique.values())


def candidates(graph: Graph, target: Target, code_size: str = "fast", threads: int = 1) -> Candidates:
    """`threads`: the build's thread count; above 1, each instance of a routine that splits its work comes
    once per value of its `threads` parameter (registry.thread_counts)."""
    by_layer = {layer.name: [Item(layer, s, graph) for s in with_threads(
                    selections_for(layer, graph, target.isa, target.devices, code_size), threads)]
                for layer in graph.layers}
    options = {name: [item.selection for item in items] for name, items in by_layer.items()}
    adapts = {(shape, a, b): adapt_item(shape, a, b) for shape, a, b in adapt_needs(graph, options)}
    return Candidates(by_layer, adapts)


def with_threads(selections: list[Selection], threads: int) -> list[Selection]:
    """`selections` with the `threads` parameter bound, in a build for `threads` (none for one thread: such a
    build's instances are the same as before the parameter existed)."""
    result = []
    for s in selections:
        if s.routine.parallel and threads > 1:
            result += [dataclasses.replace(s, params={**s.params, THREADS: k}) for k in thread_counts(threads)]
        else:
            result.append(s)
    return result


def reference_for(item: Item, threads: int = 1) -> Selection:
    """The reference instance the other candidates of `item`'s layer are checked against: on one thread, in
    a build for several, where the reference routine splits its work (the instance tuning measures)."""
    selection = reference_selection(item.layer, item.graph)
    if threads > 1 and selection.routine.parallel:
        return dataclasses.replace(selection, params={**selection.params, THREADS: 1})
    return selection


def measure(items: list[Item], target: Target, *, cache: ProfileCache | None, reprofile: bool,
            settings: Settings, progress: Progress,
            what: str = "routine instance(s)") -> tuple[dict[str, Measurement], int]:
    """Times of `items`: from the cache, the rest measured on the target. Returns (times, number measured)."""
    fp = f"{fingerprint(target)}|evict={settings.evict_bytes}"  # flushing changes what is measured
    if settings.cold_weights:
        fp += "|cold-weights"
    if settings.threads > 1:
        # Timed as in the model since the `threads` parameter: the pool awake, a barrier after each run.
        fp += f"|threads={settings.threads}|in-pool"
    known = {} if reprofile or cache is None else cache.lookup(fp, items)
    todo = with_references([item for item in items if item.key not in known], settings.threads)
    if todo:
        check_can_run(target)
        runner = make_runner(target.runner)
        progress.note(f"profiling {len(todo)} {what} on {target.name} ({runner.description}); "
                      f"{len(known)} from the cache")
        bar = progress.bar("profiling", len(todo))
        stored: dict[str, Measurement] = {}

        def keep(batch: dict[str, Measurement]) -> None:
            # Stored as each batch ends (one transaction each): a fault later loses none of it.
            if cache is not None:
                cache.store(fp, todo, batch)
            stored.update(batch)

        try:
            measured = profile(todo, target, runner, settings=settings, on_batch=lambda done, total, b: bar(done),
                               on_measured=keep)
        except RunnerError as e:
            if cache is None or not stored:
                raise
            raise RunnerError(f"{e}\n{len(stored)} of the {len(todo)} measurement(s) were stored in the profile "
                              "cache before that; tuning again measures only the rest.") from None
        finally:
            bar.close()
        known.update(measured)
    else:
        progress.note(f"all {len(items)} {what} found in the profile cache")
    return known, len(todo)


# A layer's instances on fewer threads than the build's are measured only where they could win: beside
# the layer's fastest instance on all threads, and those within this margin of it (a run on fewer threads
# saves at most the pool's wake-up and barrier, a few µs, unless splitting itself is what costs).
THREADS_MARGIN_US = 8.0
THREADS_MARGIN = 0.1  # of the fastest instance's time


def measure_by_threads(found: Candidates, target: Target, *, cache: ProfileCache | None, reprofile: bool,
                       settings: Settings, progress: Progress) -> tuple[Candidates, dict[str, Measurement], int]:
    """Times of `found`'s items, in a build for several threads without measuring every instance at every
    `threads` value: first each instance on all the build's threads (and the serial routines); then, per
    layer, the same instance on fewer threads for the fastest and those near it (`near_fastest`); and where
    fewer threads won, the layer's other instances on fewer threads too (`where_fewer_won`). Returns the
    candidates that were measured (what DPRS chooses from), their times and the number measured."""
    top = settings.threads  # one thread: no instance has the parameter, so all are measured at once
    times, measured = measure([i for i in found.items() if threads_of(i, top) == top], target, cache=cache,
                              reprofile=reprofile, settings=settings, progress=progress)
    for pick in (near_fastest, where_fewer_won):
        todo = {i.key: i for items in found.by_layer.values() for i in pick(items, times, top) if i.key not in times}
        if todo:
            more, n = measure(list(todo.values()), target, cache=cache, reprofile=reprofile, settings=settings,
                              progress=progress, what=f"routine instance(s) on fewer than {top} threads")
            times.update(more)
            measured += n
    by_layer = {name: [i for i in items if i.key in times] for name, items in found.by_layer.items()}
    return Candidates(by_layer, found.adapts), times, measured


def threads_of(item: Item, top: int) -> int:
    """How many of a `top`-thread build's threads `item` runs on."""
    return int(item.selection.params.get(THREADS, top))


def on_all_threads(item: Item, top: int) -> str:
    """The key of `item`'s instance on all of a `top`-thread build's threads."""
    params = item.selection.params
    if THREADS not in params:
        return item.key
    return Item(item.layer, dataclasses.replace(item.selection, params={**params, THREADS: top}), item.graph).key


def fastest_us(items: list[Item], times: dict[str, Measurement]) -> float:
    return min((times[i.key].median_us for i in items if i.key in times and times[i.key].ok), default=math.inf)


def near_fastest(items: list[Item], times: dict[str, Measurement], top: int) -> list[Item]:
    """A layer's instances on fewer threads whose all-threads instance is the fastest measured, or near it."""
    best = fastest_us(items, times)
    limit = best + max(THREADS_MARGIN_US, THREADS_MARGIN * best)
    return [i for i in items if threads_of(i, top) < top and (m := times.get(on_all_threads(i, top))) is not None
            and m.ok and m.median_us <= limit]


def where_fewer_won(items: list[Item], times: dict[str, Measurement], top: int) -> list[Item]:
    """All of a layer's instances on fewer threads, if one measured on fewer beat every one on all threads."""
    fewer = [i for i in items if threads_of(i, top) < top]
    if fastest_us(fewer, times) < fastest_us([i for i in items if threads_of(i, top) == top], times):
        return fewer
    return []


def check_can_run(target: Target) -> None:
    """Stop before profiling on a target that cannot run the benchmark programs (bare metal, a cross
    compiler without an emulator), instead of failing to build or start them."""
    reason = no_runner_reason(target.runner, target.compiler)
    if reason:
        raise NoRunnerError(f"target '{target.name}' has no runner: it cannot run benchmark programs ({reason}); "
                            "compile with --reference, or with --record a tuning record made on the device")


def with_references(items: list[Item], threads: int = 1) -> list[Item]:
    """`items` plus, for each layer among them, its reference routine, which checks the others' results
    (it may be cached already, when only new routines are measured). `threads`: the build's."""
    present = {item.key for item in items}
    extra = []
    for item in items:
        if item.layer.kind == "layout":
            continue
        reference = Item(item.layer, reference_for(item, threads), item.graph)
        if reference.key not in present:
            present.add(reference.key)
            extra.append(reference)
    return items + extra


def problem(graph: Graph, found: Candidates, times: dict[str, Measurement],
            progress: Progress = SILENT) -> dprs.Problem:
    choices: dict[str, list[dprs.Choice]] = {}
    for layer in graph.layers:
        options = []
        for item in found.by_layer[layer.name]:
            m = times[item.key]
            if not m.ok:
                progress.note(f"warning: {item.selection.key} gave wrong results on layer '{layer.name}' "
                              f"(relative error {m.error:.2g}); not used")
                continue
            wanted = tuple(layout.value for layout in item.selection.input_layouts(layer, graph))
            options.append(dprs.Choice(item.selection.key, wanted, item.selection.output_layout(layer, graph).value,
                                       m.median_us))
        if not options:
            raise NeurogenError(f"layer '{layer.name}': no routine gave correct results on this target")
        choices[layer.name] = options

    def adapt_cost(tensor: str, src: str, dst: str) -> float:
        item = found.adapts.get((graph.shape(tensor), Layout(src), Layout(dst)))
        m = times.get(item.key) if item else None
        return m.median_us if m and m.ok else math.inf

    return dprs.Problem(
        layers=[layer.name for layer in graph.layers],
        inputs_of={layer.name: activation_inputs(layer, graph) for layer in graph.layers},
        outputs_of={layer.name: list(layer.outputs) for layer in graph.layers},
        choices=choices,
        source_formats={n: native_layout(graph.tensor(n)).value for n in graph.inputs},
        sink_formats={n: native_layout(graph.tensor(n)).value for n in graph.outputs},
        adapt_cost=adapt_cost,
    )


@dataclass
class Paths:
    """The DPRS path and the baselines it is compared with, over one measured problem."""

    problem: dprs.Problem
    best: dprs.Solution
    baselines: dict[str, dprs.Solution]
    instances: int
    measured: int
    settings: Settings
    code_size: str = "fast"

    def all(self) -> dict[str, dprs.Solution]:
        return {"dprs": self.best, **self.baselines}


def tune_paths(graph: Graph, target: Target, *, cache: ProfileCache | None = None, reprofile: bool = False,
               settings: Settings = DEFAULT_SETTINGS, progress: Progress = SILENT, code_size: str = "fast") -> Paths:
    """Profile (what the cache lacks), then solve for the DPRS path, the greedy one and each single layout.
    `code_size` "small": only instances that take their shapes as arguments, where a routine can."""
    settings = settings_for(graph, target, settings)
    found = candidates(graph, target, code_size, settings.threads)
    found, times, measured = measure_by_threads(found, target, cache=cache, reprofile=reprofile,
                                                settings=settings, progress=progress)
    prob = problem(graph, found, times, progress)
    with progress.step("selecting the routine path (DPRS)"):
        best = dprs.solve(prob)
    baselines = {"greedy": dprs.greedy(prob)}
    for layout in SPATIAL_LAYOUTS:
        single = single_layout(prob, layout)
        if single is not None:
            baselines[f"all-{layout.value}"] = single
    return Paths(prob, best, baselines, len(found.items()), measured, settings, code_size)


def weights_bytes(graph: Graph) -> int:
    return sum(t.nbytes for t in graph.tensors.values() if t.is_constant)


def settings_for(graph: Graph, target: Target, settings: Settings) -> Settings:
    """`settings` with cold_weights decided, when left open: flush weights when the model's do not stay cached."""
    if settings.cold_weights is not None:
        return settings
    return dataclasses.replace(settings, cold_weights=weights_bytes(graph) > target.weights_cache_bytes)


def tune(graph: Graph, target: Target, *, cache: ProfileCache | None = None, reprofile: bool = False,
         settings: Settings = DEFAULT_SETTINGS, progress: Progress = SILENT, code_size: str = "fast") -> dict[str, Any]:
    """Profile (what the cache lacks) and select the routine path; returns the tuning record."""
    start = time.perf_counter()
    paths = tune_paths(graph, target, cache=cache, reprofile=reprofile, settings=settings, progress=progress,
                       code_size=code_size)
    return make_tuning_record(graph, target, paths.problem, paths.best, paths.baselines, measured=paths.measured,
                              profiled=paths.instances, seconds=time.perf_counter() - start,
                              cold_weights=bool(paths.settings.cold_weights), threads=paths.settings.threads,
                              code_size=code_size)


def selections_of(solution: dprs.Solution, graph: Graph, target: Target) -> dict[str, Selection]:
    """A solved path as selections of the graph's layers."""
    return _selections({name: choice.key for name, choice in solution.choice.items()}, graph, target)


def single_layout(prob: dprs.Problem, layout: Layout) -> dprs.Solution | None:
    """The best path that keeps every 4-D tensor in `layout` (flat tensors are row-major anyway)."""
    allowed = {layout.value, Layout.ANY.value}
    choices = {name: [c for c in options if {*c.in_formats, c.out_format} <= allowed]
               for name, options in prob.choices.items()}
    if not all(choices.values()):
        return None
    try:
        return dprs.solve(dataclasses.replace(prob, choices=choices))
    except ValueError:  # no feasible path keeps to this layout (an input or output cannot be converted)
        return None


def make_tuning_record(graph: Graph, target: Target, prob: dprs.Problem, best: dprs.Solution,
                       baselines: dict[str, dprs.Solution], *, measured: int, profiled: int,
                       seconds: float, cold_weights: bool = False, threads: int = 1,
                       code_size: str = "fast") -> dict[str, Any]:
    layers = []
    for name in prob.layers:
        chosen = best.choice[name]
        ranked = sorted(prob.choices[name], key=lambda c: (c.cost, c.key))
        runner_up = next((c for c in ranked if c.key != chosen.key), None)
        layers.append({
            "layer": name, "instance": chosen.key, "time_us": round(chosen.cost, 3),
            "runner_up": None if runner_up is None else {"instance": runner_up.key,
                                                         "time_us": round(runner_up.cost, 3)},
            "alternatives": {c.key: round(c.cost, 3) for c in ranked},
        })
    adapts = [{"tensor": a.tensor, "src": a.src, "dst": a.dst, "time_us": round(a.cost, 3)} for a in best.adapts]
    predicted = {"dprs": round(best.total, 3), **{k: round(v.total, 3) for k, v in baselines.items()}}
    return {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "tool": {"name": "neurogen", "version": __version__},
        "model": {"name": graph.name, "graph_sha256": graph_hash(graph)},
        "target": {**target.describe(), "fingerprint": fingerprint(target)},
        "path": layers,
        "adapts": adapts,
        "predicted_us": predicted,
        "optimal": best.optimal,
        "threads": threads,
        "code_size": code_size,
        "profiling": {"instances": profiled, "measured": measured, "seconds": round(seconds, 2),
                      "weights": "flushed to memory" if cold_weights else "cached"},
    }


def check_record(record: dict[str, Any], graph: Graph, target: Target, source: str = "tuning record") -> None:
    """Refuse a record made for another model or target, saying which and what to do."""
    if record.get("format") != RECORD_FORMAT or "path" not in record:
        raise RecordError(f"{source}: not a neurogen tuning record")
    if record.get("version") != RECORD_VERSION:
        raise RecordError(f"{source}: record version {record.get('version')} is not {RECORD_VERSION}; tune again")
    if record.get("model", {}).get("graph_sha256") != graph_hash(graph):
        raise RecordError(f"{source}: made for another model ('{record.get('model', {}).get('name')}'), or for "
                          "this one with other input shapes; run `neurogen tune` for this model")
    made_for = record.get("target", {})
    if made_for.get("name") != target.name or made_for.get("cflags") != list(target.cflags):
        raise RecordError(f"{source}: made for target '{made_for.get('name')}' "
                          f"(flags {made_for.get('cflags')}), not '{target.name}' (flags {list(target.cflags)}); "
                          "tune for this target or pass --target " + str(made_for.get("name")))


def record_code_size(record: dict[str, Any]) -> str:
    """The --code-size a record was tuned with (records from before the option: fast)."""
    code_size = record.get("code_size", "fast")
    if code_size not in CODE_SIZES:
        raise RecordError(f"tuning record: unknown code size '{code_size}' (known: {', '.join(CODE_SIZES)})")
    return code_size


def selections_from_record(record: dict[str, Any], graph: Graph, target: Target) -> dict[str, Selection]:
    """The routine path a record holds, as selections of this graph's layers."""
    return _selections({entry["layer"]: entry["instance"] for entry in record["path"]}, graph, target,
                       record_code_size(record))


def _selections(chosen: dict[str, str], graph: Graph, target: Target, code_size: str = "fast"
                ) -> dict[str, Selection]:
    result = {}
    for layer in graph.layers:
        key = chosen.get(layer.name)
        # Superseded routines too: tuning skips them, but a record that chose one (an older version's) still holds.
        options = {s.key: s for s in selections_for(layer, graph, target.isa, target.devices, code_size,
                                                    superseded=True)}
        base, threads = _threads_of(key)
        selection = options.get(base)
        if selection is None or (threads is not None and not selection.routine.parallel):
            how = f" with --code-size {code_size}" if code_size != "fast" else ""
            raise RecordError(f"tuning record: layer '{layer.name}' uses '{key}', which this version of neurogen "
                              f"does not offer for it{how}; tune again")
        if threads is not None:  # tuned for several threads; a build for fewer runs it on at most those
            selection = dataclasses.replace(selection, params={**selection.params, THREADS: threads})
        result[layer.name] = selection
    return result


def _threads_of(key: str | None) -> tuple[str | None, int | None]:
    """An instance key without its `threads` parameter, and that parameter's value (None: it has none, or the
    value is not a thread count, which leaves the key unknown)."""
    if key is None:
        return None, None
    fields = key.split(",")
    values = [f.removeprefix(f"{THREADS}=") for f in fields[1:] if f.startswith(f"{THREADS}=")]
    if len(values) != 1:
        return key, None
    if not values[0].isdigit() or not 1 <= int(values[0]) <= MAX_THREADS:
        return None, None
    return ",".join(f for f in fields if not f.startswith(f"{THREADS}=")), int(values[0])
