"""neurogen against onnxruntime, the TFLite interpreter (XNNPACK) and TensorFlow, side by side.

    python bench/engines.py                       # all five models, 1 and 2 threads, 30 rounds
    python bench/engines.py --models mobilenet_v3_small --threads 1 --rounds 5

For every model (zoo models, seeded random weights, batch 1, f32) and thread count:
neurogen is tuned on this machine (from an empty profile cache, then again from the warm
one: the tuning times), compiled and built; TensorFlow and TFLite run the Keras twin of
the same network (bench/keras_twin.py, same weights, NHWC). Each (engine, threads) runs in
a worker process of its own (TensorFlow's thread pools are fixed when it starts), and the
workers are timed in interleaved rounds: every round asks each worker, in a fresh random
order, for one untimed run and then a burst of timed back-to-back runs, so that the noise
of this machine hits every engine alike. Every engine's outputs are checked against
onnxruntime's (max|err| / max|ref| <= 1e-4).

Writes DIR/engines.md (the table), DIR/engines.json (the numbers) and DIR/engines.png (the
chart); DIR is bench/results by default. bench/README.md explains the method.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ENGINES = ("neurogen", "onnxruntime", "tflite", "tensorflow")
DEFAULT_MODELS = ("vgg16", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")
TOLERANCE = 1e-4  # max|err| / max|ref| against onnxruntime
NEEDS_TF = ("tflite", "tensorflow")
INSTALL_HINT = "pip install 'neurogen[bench]'"
BENCH_DIR = Path(__file__).resolve().parent


# ---- what the parent tells a worker, and what comes back --------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    """One (engine, model, threads) worker: everything it needs to set itself up."""

    engine: str
    model: str
    threads: int
    onnx_path: str
    project: str | None  # neurogen: the compiled project
    tflite_path: str | None  # tflite: the converted model (converted by the first tflite worker)
    log_path: str


@dataclass
class Row:
    """One line of the table: an engine on a model at a thread count."""

    model: str
    threads: int
    engine: str
    times_ms: list[float] = field(default_factory=list)
    error: float | None = None  # max over outputs of max|err| / max|ref| against onnxruntime
    note: str = ""  # why there is no measurement, or what the engine said about itself
    failed: bool = False  # an error, as opposed to "not available"
    median_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    vs_ort: float | None = None  # onnxruntime median / this median: > 1 is faster than onnxruntime
    gflops: float | None = None


@dataclass
class Tuning:
    model: str
    threads: int
    cold_s: float | None
    warm_s: float | None
    note: str = ""


@dataclass
class Config:
    models: list[str]
    threads: list[int]
    engines: list[str]
    rounds: int
    burst: int
    resolution: int
    out: Path
    work: Path
    quick_tune: bool
    keep_work: bool  # --work given: keep it; else the temporary folder goes unless something failed


# ---- workers (child processes) ----------------------------------------------------------------


class _Runner:
    """An engine ready to run: `run(x)` takes the NCHW input and returns the outputs in graph order."""

    note = ""

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError


class _OrtRunner(_Runner):
    def __init__(self, spec: WorkerSpec):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = spec.threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(spec.onnx_path, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.note = f"onnxruntime {ort.__version__}"

    def run(self, x):
        return self.session.run(None, {self.input: x})


class _NeurogenRunner(_Runner):
    def __init__(self, spec: WorkerSpec):
        import codegen

        self.model = codegen.load(spec.project)  # built by the parent already: a cache hit
        self.input = self.model.inputs[0].name
        # What the project was generated for: shows the thread count reached the generated code.
        threads = json.loads((Path(spec.project) / "tuning.json").read_text()).get("threads", 1)
        self.note = f"generated for {threads} thread{'s' if threads > 1 else ''}"

    def run(self, x):
        return list(self.model.run({self.input: x}).values())


def _keras_twin(spec: WorkerSpec):
    sys.path.insert(0, str(BENCH_DIR))
    import keras_twin

    from codegen.compiler import import_model

    return keras_twin, keras_twin.build_keras_model(import_model(spec.onnx_path), name=spec.model)


class _TensorFlowRunner(_Runner):
    def __init__(self, spec: WorkerSpec):
        import tensorflow as tf

        # Only possible before TensorFlow runs anything: hence one process per thread count.
        tf.config.threading.set_intra_op_parallelism_threads(spec.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        self.twin, model = _keras_twin(spec)
        self.call = tf.function(lambda t: model(t, training=False))
        self.note = f"TensorFlow {tf.__version__}"

    def run(self, x):
        return [np.asarray(o) for o in self.call(self.twin.to_nhwc(x))]


class _TFLiteRunner(_Runner):
    def __init__(self, spec: WorkerSpec):
        import tensorflow as tf

        sys.path.insert(0, str(BENCH_DIR))
        import keras_twin

        self.twin = keras_twin
        path = Path(spec.tflite_path)
        if not path.exists():
            _, model = _keras_twin(spec)
            content = tf.lite.TFLiteConverter.from_keras_model(model).convert()  # float32: no optimizations
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(content)
            tmp.replace(path)
        mark = Path(spec.log_path).stat().st_size
        # Default op resolver: the XNNPACK delegate is applied to float models; it logs that it was.
        self.interpreter = tf.lite.Interpreter(model_content=path.read_bytes(), num_threads=spec.threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.outputs = _tflite_output_indices(self.interpreter)
        self.run(np.zeros(self.interpreter.get_input_details()[0]["shape"][[0, 3, 1, 2]], np.float32))
        sys.stderr.flush()
        with open(spec.log_path, errors="replace") as log:
            log.seek(mark)
            said = log.read()
        self.note = _xnnpack_note(said, self.interpreter)

    def run(self, x):
        self.interpreter.set_tensor(self.input, self.twin.to_nhwc(x))
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(i) for i in self.outputs]


def _tflite_output_indices(interpreter) -> list[int]:
    """Output tensor indices in the Keras model's output order (TFLite's own order is not that)."""
    signatures = interpreter._get_full_signature_list()  # private, but the only map from names to indices
    outputs = next(iter(signatures.values()))["outputs"]  # output_0, output_1, ...: Keras output order
    return [outputs[k] for k in sorted(outputs, key=lambda k: int(k.rsplit("_", 1)[-1]))]


def _xnnpack_note(log: str, interpreter) -> str:
    """What shows XNNPACK runs the model: its creation message, and the DELEGATE nodes it put in the graph."""
    created = "XNNPACK delegate for CPU" in log
    partitions = sum(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())
    if created and partitions:
        return f"XNNPACK ({partitions} delegated partition{'s' if partitions > 1 else ''})"
    return "no XNNPACK delegate" if not created else "XNNPACK created, but no node delegated"


_RUNNERS = {"onnxruntime": _OrtRunner, "neurogen": _NeurogenRunner, "tensorflow": _TensorFlowRunner,
            "tflite": _TFLiteRunner}


def _worker_main(conn, spec: WorkerSpec, x: np.ndarray) -> None:
    """Set up one engine, send back its outputs on `x`, then time bursts on request until told to stop."""
    log = os.open(spec.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(log, 1)  # the engines' chatter (TF, the TFLite converter) goes to the log, not the table
    os.dup2(log, 2)
    try:
        runner = _RUNNERS[spec.engine](spec)
        conn.send(("ready", [np.asarray(o) for o in runner.run(x)], runner.note))
    except BaseException:
        conn.send(("error", traceback.format_exc(), ""))
        return
    while True:
        message = conn.recv()
        if message[0] == "stop":
            return
        runner.run(x)  # untimed: the caches and thread pools warm up after the other engines ran
        times = []
        for _ in range(message[1]):
            start = time.perf_counter()
            runner.run(x)
            times.append(time.perf_counter() - start)
        conn.send(("times", times, ""))


@dataclass
class _Worker:
    spec: WorkerSpec
    process: Any
    conn: Any

    def receive(self) -> tuple:
        try:
            while not self.conn.poll(0.5):
                if not self.process.is_alive():
                    break
            return self.conn.recv()
        except (EOFError, OSError):
            self.process.join(timeout=5)
            raise RuntimeError(f"worker died (exit code {self.process.exitcode}); see {self.spec.log_path}") from None

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):  # it may be on its way out already
                self.conn.send(("stop", 0))
            self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()  # our own child, by its handle
            self.process.join()


def _start_worker(spec: WorkerSpec, x: np.ndarray) -> _Worker:
    context = multiprocessing.get_context("spawn")  # no fork: TF and thread pools do not survive one
    parent, child = context.Pipe()
    process = context.Process(target=_worker_main, args=(child, spec, x), daemon=True)
    process.start()
    child.close()
    return _Worker(spec, process, parent)


# ---- the parent: per model, tune and build neurogen, start workers, time rounds ------------------


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def relative_error(outputs: list[np.ndarray], reference: list[np.ndarray]) -> float:
    errors = [float(np.abs(np.asarray(o, np.float64).reshape(r.shape) - r).max() / max(np.abs(r).max(), 1e-30))
              for o, r in zip(outputs, reference)]
    return max(errors)


def model_macs(graph) -> int:
    """Multiply-accumulates of the convolution and dense layers (what GFLOP/s figures usually count)."""
    from codegen.shapes import macs

    return sum(macs(layer, graph) for layer in graph.layers if layer.kind in ("conv2d", "dense", "matmul"))


def _tune_settings(quick: bool):
    if not quick:
        return None
    from codegen.profile.harness import Settings

    return Settings(min_reps=2, max_reps=5, min_seconds=0.0)


def tune_neurogen(config: Config, name: str, onnx_path: Path, threads: int) -> tuple[Tuning, str | None, str]:
    """Tune from an empty cache, then from the warm one, compile and build: (tuning, project, note)."""
    import codegen
    from codegen.compiler import tune_model
    from codegen.profile.cache import ProfileCache
    from codegen.progress import Progress

    cache = ProfileCache(config.work / f"cache-{name}-t{threads}" / "profiles.sqlite")
    kwargs: dict[str, Any] = {"cache": cache, "settings": _tune_settings(config.quick_tune)}
    if threads > 1:  # older neurogen without threads: the column says n/a
        kwargs["threads"] = threads
    _say(f"{name}: tuning neurogen for {threads} thread(s) (cold cache)")
    start = time.perf_counter()
    try:
        record = tune_model(str(onnx_path), progress=Progress(), **kwargs)
    except TypeError as exc:
        if "threads" not in str(exc):
            raise
        return Tuning(name, threads, None, None, "n/a: no threads in this neurogen"), None, \
            "n/a: tune_model() has no threads"
    cold = time.perf_counter() - start
    start = time.perf_counter()
    tune_model(str(onnx_path), **kwargs)
    warm = time.perf_counter() - start
    _say(f"{name}: tuned in {cold:.1f} s, {warm:.2f} s from the warm cache; compiling and building")
    project = codegen.compile_model(str(onnx_path), config.work / f"{name}-t{threads}", name=f"{name}_t{threads}",
                                    record=record)
    codegen.load(project)  # builds the shared library here, so the worker only loads it
    return Tuning(name, threads, cold, warm), str(project), ""


def _summarize(row: Row, ort_median: float | None, macs: int) -> None:
    if not row.times_ms:
        return
    row.median_ms = statistics.median(row.times_ms)
    row.min_ms, row.max_ms = min(row.times_ms), max(row.times_ms)
    row.gflops = 2 * macs / (row.median_ms * 1e6)
    row.vs_ort = ort_median / row.median_ms if ort_median else None


def bench_model(config: Config, name: str) -> tuple[list[Row], list[Tuning]]:
    import onnx
    import onnxruntime as ort

    from codegen import zoo
    from codegen.compiler import import_model

    model = zoo.build(name, resolution=config.resolution)
    onnx_path = config.work / f"{name}.onnx"
    onnx.save(model, str(onnx_path))
    x = next(iter(zoo.example_input(model, 0).values()))
    reference = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    reference = [np.asarray(r, np.float64) for r in reference]
    macs = model_macs(import_model(model))
    rows = {(e, t): Row(name, t, e) for t in config.threads for e in config.engines}
    tunings, projects = [], {}
    if "neurogen" in config.engines:
        for threads in config.threads:
            try:
                tuning, projects[threads], note = tune_neurogen(config, name, onnx_path, threads)
            except Exception as exc:  # the other engines still run
                _say(f"{name}: neurogen on {threads} thread(s) failed:\n{traceback.format_exc()}")
                note = f"failed: {type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc) else ''}"
                tuning, projects[threads] = Tuning(name, threads, None, None, note), None
                rows["neurogen", threads].failed = True
            tunings.append(tuning)
            rows["neurogen", threads].note = note
    workers = _start_workers(config, name, onnx_path, x, rows, projects, reference)
    try:
        _time_rounds(config, name, workers, rows)
    finally:
        for worker in workers.values():
            worker.stop()
    for threads in config.threads:
        ort_row = rows.get(("onnxruntime", threads))
        ort_median = statistics.median(ort_row.times_ms) if ort_row and ort_row.times_ms else None
        for engine in config.engines:
            _summarize(rows[engine, threads], ort_median, macs)
    return list(rows.values()), tunings


def _start_workers(config: Config, name: str, onnx_path: Path, x: np.ndarray, rows: dict, projects: dict,
                   reference: list[np.ndarray]) -> dict[tuple[str, int], _Worker]:
    """One at a time (set-up is heavy, and the machine has few cores); each checks its outputs."""
    workers = {}
    for (engine, threads), row in rows.items():
        if row.note:  # n/a already
            continue
        spec = WorkerSpec(engine, name, threads, str(onnx_path), projects.get(threads),
                          str(config.work / f"{name}.tflite"), str(config.work / f"{name}-{engine}-t{threads}.log"))
        _say(f"{name}: starting {engine} on {threads} thread(s)"
             + (" (converting to TFLite first)" if engine == "tflite" and not Path(spec.tflite_path).exists() else ""))
        worker = _start_worker(spec, x)
        try:
            status, payload, note = worker.receive()
        except RuntimeError as exc:
            status, payload, note = "error", str(exc), ""
        if status == "error":
            _say(f"{name}: {engine} on {threads} thread(s) failed:\n{payload}")
            row.note, row.failed = f"failed: {payload.strip().splitlines()[-1]}", True
            worker.stop()
            continue
        row.error, row.note = relative_error(payload, reference), note
        if row.error > TOLERANCE:
            row.failed = True
            _say(f"{name}: {engine} on {threads} thread(s): outputs differ from onnxruntime's "
                 f"(relative error {row.error:.2e} > {TOLERANCE:g})")
        workers[engine, threads] = worker
    return workers


def _time_rounds(config: Config, name: str, workers: dict[tuple[str, int], _Worker], rows: dict) -> None:
    order = random.Random(0)
    keys = list(workers)
    dead: set[tuple[str, int]] = set()
    _say(f"{name}: timing {len(keys)} engine/thread workers, {config.rounds} rounds of {config.burst} runs")
    for _ in range(config.rounds):
        order.shuffle(keys)  # nobody always runs first, or right after the same neighbour
        for key in keys:
            if key in dead:
                continue
            try:
                workers[key].conn.send(("burst", config.burst))
                status, times, _ = workers[key].receive()
            except (RuntimeError, OSError) as exc:  # a worker that dies drops out; the others go on
                _say(f"{name}: {key[0]} on {key[1]} thread(s) failed while timed: {exc}")
                rows[key].times_ms, rows[key].failed, rows[key].note = [], True, f"failed: {exc}"
                dead.add(key)
                continue
            rows[key].times_ms.extend(1e3 * t for t in times)


# ---- reporting -------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str, missing: str = "n/a") -> str:
    return missing if value is None else format(value, spec)


def markdown(config: Config, rows: list[Row], tunings: list[Tuning]) -> str:
    lines = [
        "# neurogen against onnxruntime, TFLite (XNNPACK) and TensorFlow",
        "",
        f"Batch 1, {config.resolution}x{config.resolution}, float32; {config.rounds} rounds x {config.burst} runs "
        f"per engine, interleaved. {_machine()}. `vs ORT` = onnxruntime median / engine median (> 1: faster "
        f"than onnxruntime); GFLOP/s counts 2 FLOPs per multiply-accumulate of the convolution and dense "
        f"layers; `rel err` = max|out - ort| / max|ort| over the outputs (tolerance {TOLERANCE:g}).",
        "",
        "| model | threads | engine | median ms | min-max ms | vs ORT | GFLOP/s | rel err | note |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        spread = f"{r.min_ms:.2f}-{r.max_ms:.2f}" if r.min_ms is not None else "n/a"
        lines.append(f"| {r.model} | {r.threads} | {r.engine} | {_fmt(r.median_ms, '.2f')} | {spread} | "
                     f"{_fmt(r.vs_ort, '.2f')} | {_fmt(r.gflops, '.1f')} | {_fmt(r.error, '.1e')} | {r.note} |")
    if tunings:
        lines += ["", "neurogen tuning time (profiling every candidate routine on this machine, and DPRS):", "",
                  "| model | threads | cold cache s | warm cache s | note |", "|---|---:|---:|---:|---|"]
        lines += [f"| {t.model} | {t.threads} | {_fmt(t.cold_s, '.1f')} | {_fmt(t.warm_s, '.2f')} | {t.note} |"
                  for t in tunings]
    return "\n".join(lines) + "\n"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"


def chart(config: Config, rows: list[Row], path: Path) -> None:
    """Speed relative to onnxruntime, one panel per thread count (stacked), one bar group per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r.model for r in rows))
    fig, axes = plt.subplots(len(config.threads), 1, figsize=(1.5 + 1.7 * len(models), 0.6 + 3.2 * len(config.threads)),
                             squeeze=False, sharey=True)
    width = 0.8 / len(config.engines)
    for ax, threads in zip(axes[:, 0], config.threads):
        for i, engine in enumerate(config.engines):
            by_model = {r.model: r for r in rows if r.engine == engine and r.threads == threads}
            xs = [m + (i - (len(config.engines) - 1) / 2) * width for m in range(len(models))]
            ys = [by_model[m].vs_ort or 0.0 for m in models]
            bars = ax.bar(xs, ys, width, label=engine)
            for bar, m in zip(bars, models):
                median = by_model[m].median_ms
                ax.annotate("n/a" if median is None else f"{median:.3g}", (bar.get_x() + bar.get_width() / 2,
                            bar.get_height()), ha="center", va="bottom", fontsize=6, rotation=90)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xticks(range(len(models)), models, rotation=20, fontsize=8)
        ax.set_title(f"{threads} thread{'s' if threads > 1 else ''}")
        ax.margins(y=0.15)  # room for the labels above the tallest bar
    for ax in axes[:, 0]:
        ax.set_ylabel("speed vs onnxruntime\n(ORT time / time)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.suptitle(f"batch 1, {config.resolution}x{config.resolution}, f32 (bar labels: median ms)", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=130)
    plt.close(fig)
    tmp.replace(path)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# ---- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> Config:
    from codegen import zoo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=zoo.MODELS, default=list(DEFAULT_MODELS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--rounds", type=int, default=30,
                        help="timing rounds; each asks every worker for a burst, in a fresh random order (default 30)")
    parser.add_argument("--burst", type=int, default=5,
                        help="timed back-to-back runs per worker per round, after one untimed run (default 5)")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results",
                        help="where engines.md, engines.json and engines.png go (default bench/results)")
    parser.add_argument("--work", type=Path, help="folder for models, projects, caches and worker logs "
                        "(default: a fresh temporary one)")
    parser.add_argument("--quick-tune", action="store_true",
                        help="tune neurogen with few repetitions (for smoke tests: faster, less exact choices)")
    args = parser.parse_args(argv)
    if min(args.threads) < 1 or args.rounds < 1 or args.burst < 1:
        parser.error("--threads, --rounds and --burst must be positive")
    work = args.work or Path(tempfile.mkdtemp(prefix="neurogen-engines-"))
    work.mkdir(parents=True, exist_ok=True)
    return Config(args.models, args.threads, args.engines, args.rounds, args.burst, args.resolution, args.out,
                  work.resolve(), args.quick_tune, keep_work=args.work is not None)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    # On SIGTERM, unwind like on Ctrl-C, so that the workers are stopped rather than left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    missing_tf = importlib.util.find_spec("tensorflow") is None
    rows: list[Row] = []
    tunings: list[Tuning] = []
    if missing_tf and any(e in NEEDS_TF for e in config.engines):
        _say(f"error: TensorFlow is not installed, so the tflite and tensorflow engines cannot run "
             f"({INSTALL_HINT}); the other engines still run")
    for name in config.models:
        runnable = [e for e in config.engines if not (missing_tf and e in NEEDS_TF)]
        model_rows, model_tunings = bench_model(Config(**{**asdict(config), "engines": runnable}), name)
        for engine in config.engines:
            if engine not in runnable:
                model_rows += [Row(name, t, engine, note=f"failed: TensorFlow not installed ({INSTALL_HINT})",
                                   failed=True) for t in config.threads]
        order = {e: i for i, e in enumerate(config.engines)}
        rows += sorted(model_rows, key=lambda r: (r.threads, order[r.engine]))
        tunings += model_tunings
    config.out.mkdir(parents=True, exist_ok=True)
    table = markdown(config, rows, tunings)
    _write(config.out / "engines.md", table)
    _write(config.out / "engines.json", json.dumps({
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "rows": [asdict(r) for r in rows], "tuning": [asdict(t) for t in tunings]}, indent=1))
    chart(config, rows, config.out / "engines.png")
    sys.stdout.write(table)
    failed = any(r.failed for r in rows)
    if failed or config.keep_work:
        _say(f"wrote {config.out / 'engines.md'}, engines.json and engines.png (worker logs in {config.work})")
    else:  # the models, TFLite files and projects take gigabytes at 224x224
        shutil.rmtree(config.work, ignore_errors=True)
        _say(f"wrote {config.out / 'engines.md'}, engines.json and engines.png")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
