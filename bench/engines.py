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

    python bench/engines.py --source export --models mobilenet_v3_small --threads 1 --rounds 3

`--source export` measures the models users bring instead (bench/exports.py: Keras applications
saved as .keras, their tf2onnx export, and the torchvision networks' torch.onnx exports): neurogen
compiles each file; onnxruntime and OpenVINO run the ONNX export, TFLite (and TensorFlow) the
original Keras model. Writes DIR/engines-export.md and DIR/engines-export.json.
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

ZOO_ENGINES = ("neurogen", "onnxruntime", "tflite", "tensorflow")  # the --source zoo default
# Run beside the peers, not counted as peers: OpenVINO at its default precision (bf16 where the CPU has
# it), and onnxruntime on an int8 quantisation of the export. Their errors are reported, never failed.
REFERENCE_ENGINES = ("openvino-default", "onnxruntime-int8")
ENGINES = (*ZOO_ENGINES, "openvino", *REFERENCE_ENGINES)
EXPORT_ENGINES = ("neurogen", "onnxruntime", "tflite", "openvino", *REFERENCE_ENGINES)  # --source export default
PEERS = ("onnxruntime", "tflite", "openvino", "tensorflow")  # what neurogen is compared with, in table order
DEFAULT_MODELS = ("vgg16", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small")
TOLERANCE = 1e-4  # max|err| / max|ref| against onnxruntime
NEEDS_TF = ("tflite", "tensorflow")
# Which ONNX file the ONNX engines run for a row of each source (the Keras row's is its tf2onnx export).
ONNX_OF = {"keras": "tf2onnx", "tf2onnx": "tf2onnx", "torch": "torch", "dynamo": "dynamo"}
INT8_METHOD = ("int8: onnxruntime.quantization.quantize_static, QDQ, per-channel s8 weights, s8 activations, "
               "MinMax calibration on 8 seeded random images, Softmax left in float")
INT8_CALIBRATION_IMAGES = 8
# ISA extensions worth naming in the table, from /proc/cpuinfo (x86 "flags", Arm "Features").
ISA_PREFIXES = ("sse4_2", "avx", "fma", "f16c", "amx", "asimd", "neon", "sve", "i8mm", "bf16", "fphp", "dotprod")
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
    # --source export: the original Keras model, which TFLite and TensorFlow run (not the twin); every
    # engine then takes its input as given, in its own model's layout.
    keras_path: str | None = None


@dataclass
class Row:
    """One line of the table: an engine on a model at a thread count."""

    model: str
    threads: int
    engine: str
    times_ms: list[float] = field(default_factory=list)
    source: str = ""  # --source export: the file the engine ran (keras, tf2onnx, torch, dynamo)
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
    source: str = ""  # --source export: the file neurogen compiled
    predicted_ms: float | None = None  # the tuning record's predicted total for the DPRS path


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
    source: str = "zoo"  # zoo: codegen.zoo's graphs; export: bench/exports.py's user-style exports
    exports: Path | None = None  # --source export: the export cache folder
    seed: int = 0  # --source export: the weights' seed
    settle_ms: float = 20.0  # idle time before each burst: the previous engine's spinning threads stop


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
        self.note = f"onnxruntime {ort.__version__}" + (f", {INT8_METHOD}" if spec.engine == "onnxruntime-int8" else "")

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


def _original_keras(spec: WorkerSpec):
    """--source export: the user's Keras model itself, as saved."""
    import keras

    return keras.saving.load_model(spec.keras_path, compile=False)


def _as_given(x: np.ndarray) -> np.ndarray:
    return x


class _TensorFlowRunner(_Runner):
    def __init__(self, spec: WorkerSpec):
        import tensorflow as tf

        # Only possible before TensorFlow runs anything: hence one process per thread count.
        tf.config.threading.set_intra_op_parallelism_threads(spec.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        if spec.keras_path:
            self.layout, model = _as_given, _original_keras(spec)
        else:
            twin, model = _keras_twin(spec)
            self.layout = twin.to_nhwc
        self.call = tf.function(lambda t: model(t, training=False))
        self.note = f"TensorFlow {tf.__version__}"

    def run(self, x):
        outputs = self.call(self.layout(x))
        return [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


class _TFLiteRunner(_Runner):
    def __init__(self, spec: WorkerSpec):
        import tensorflow as tf

        sys.path.insert(0, str(BENCH_DIR))
        import keras_twin

        self.layout = _as_given if spec.keras_path else keras_twin.to_nhwc
        path = Path(spec.tflite_path)
        if not path.exists():
            model = _original_keras(spec) if spec.keras_path else _keras_twin(spec)[1]
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
        shape = self.interpreter.get_input_details()[0]["shape"]
        self.run(np.zeros(shape if spec.keras_path else shape[[0, 3, 1, 2]], np.float32))
        sys.stderr.flush()
        with open(spec.log_path, errors="replace") as log:
            log.seek(mark)
            said = log.read()
        self.note = _xnnpack_note(said, self.interpreter)

    def run(self, x):
        self.interpreter.set_tensor(self.input, self.layout(x))
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


class _OpenVinoRunner(_Runner):
    """OpenVINO's CPU plugin on the ONNX model: one stream, latency hint, N inference threads; "openvino" pins
    f32, "openvino-default" leaves the precision to the plugin (bf16 on CPUs that have it)."""

    def __init__(self, spec: WorkerSpec):
        import openvino as ov

        core = ov.Core()
        config = {"NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(spec.threads)}
        if spec.engine == "openvino":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        self.compiled = core.compile_model(core.read_model(spec.onnx_path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        precision = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # what the plugin runs: f32, bf16 ...
        precision = precision.get_type_name() if hasattr(precision, "get_type_name") else str(precision)
        threads = self.compiled.get_property("INFERENCE_NUM_THREADS")
        self.note = f"OpenVINO {ov.__version__.split('-')[0]}, CPU plugin, {precision}, {threads} thread(s)"

    def run(self, x):
        results = self.request.infer({0: x})  # copies the outputs out, as the other engines return them
        return [np.asarray(results[o]) for o in self.compiled.outputs]


_RUNNERS = {"onnxruntime": _OrtRunner, "neurogen": _NeurogenRunner, "tensorflow": _TensorFlowRunner,
            "tflite": _TFLiteRunner, "openvino": _OpenVinoRunner, "openvino-default": _OpenVinoRunner,
            "onnxruntime-int8": _OrtRunner}


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


def tune_neurogen(config: Config, name: str, onnx_path: Path, threads: int,
                  label: str | None = None) -> tuple[Tuning, str | None, str]:
    """Tune from an empty cache, then from the warm one, compile and build: (tuning, project, note).

    `onnx_path` is any model file neurogen reads (.onnx, .keras ...); `label` names its cache and project
    (default: the model name)."""
    import codegen
    from codegen.compiler import tune_model
    from codegen.profile.cache import ProfileCache
    from codegen.progress import Progress

    label = label or name
    cache = ProfileCache(config.work / f"cache-{label}-t{threads}" / "profiles.sqlite")
    kwargs: dict[str, Any] = {"cache": cache, "settings": _tune_settings(config.quick_tune)}
    if threads > 1:  # older neurogen without threads: the column says n/a
        kwargs["threads"] = threads
    _say(f"{label}: tuning neurogen for {threads} thread(s) (cold cache)")
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
    _say(f"{label}: tuned in {cold:.1f} s, {warm:.2f} s from the warm cache; compiling and building")
    project = codegen.compile_model(str(onnx_path), config.work / f"{label}-t{threads}", name=f"{label}_t{threads}",
                                    record=record)
    codegen.load(project)  # builds the shared library here, so the worker only loads it
    predicted = record.get("predicted_us", {}).get("dprs")
    return Tuning(name, threads, cold, warm, predicted_ms=None if predicted is None else predicted / 1e3), \
        str(project), ""


def _summarize(row: Row, ort_median: float | None, macs: int | None) -> None:
    if not row.times_ms:
        return
    row.median_ms = statistics.median(row.times_ms)
    row.min_ms, row.max_ms = min(row.times_ms), max(row.times_ms)
    row.gflops = 2 * macs / (row.median_ms * 1e6) if macs else None
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
    _time_rounds(config, name, workers, rows)
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
        worker = _start_checked(spec, x, row, reference, strict=True)
        if worker is not None:
            workers[engine, threads] = worker
    return workers


def _start_checked(spec: WorkerSpec, x: np.ndarray, row: Row, reference: list[np.ndarray],
                   strict: bool) -> _Worker | None:
    """Start one worker and check its outputs on `x` against `reference`; None (row failed) if it could not
    start. `strict`: an error above TOLERANCE fails the row (reference rows only report it)."""
    what = f"{spec.model}: {spec.engine}" + (f" on {row.source}" if row.source else "") + f", {spec.threads} thread(s)"
    converting = spec.engine == "tflite" and not Path(spec.tflite_path).exists()
    _say(f"{what}: starting" + (" (converting to TFLite first)" if converting else ""))
    worker = _start_worker(spec, x)
    try:
        status, payload, note = worker.receive()
    except RuntimeError as exc:
        status, payload, note = "error", str(exc), ""
    if status == "error":
        _say(f"{what}: failed:\n{payload}")
        row.note, row.failed = f"failed: {payload.strip().splitlines()[-1]}", True
        worker.stop()
        return None
    row.error, row.note = relative_error(payload, reference), note
    if row.error > TOLERANCE and strict:
        row.failed = True
        _say(f"{what}: outputs differ from onnxruntime's (relative error {row.error:.2e} > {TOLERANCE:g})")
    return worker


def _key_text(key: tuple) -> str:
    """(engine, threads) or (engine, source, threads), for messages."""
    *what, threads = key
    return f"{' on '.join(map(str, what))}, {threads} thread(s)"


def _time_rounds(config: Config, name: str, workers: dict[tuple[str, int], _Worker], rows: dict) -> None:
    """Time every worker in interleaved rounds, then stop them all (also when timing fails)."""
    try:
        _interleave(config, name, workers, rows)
    finally:
        for worker in workers.values():
            worker.stop()


def _interleave(config: Config, name: str, workers: dict[tuple[str, int], _Worker], rows: dict) -> None:
    order = random.Random(0)
    keys = list(workers)
    dead: set[tuple[str, int]] = set()
    _say(f"{name}: timing {len(keys)} engine/thread workers, {config.rounds} rounds of {config.burst} runs")
    for _ in range(config.rounds):
        order.shuffle(keys)  # nobody always runs first, or right after the same neighbour
        for key in keys:
            if key in dead:
                continue
            time.sleep(config.settle_ms / 1e3)
            try:
                workers[key].conn.send(("burst", config.burst))
                status, times, _ = workers[key].receive()
            except (RuntimeError, OSError) as exc:  # a worker that dies drops out; the others go on
                _say(f"{name}: {_key_text(key)} failed while timed: {exc}")
                rows[key].times_ms, rows[key].failed, rows[key].note = [], True, f"failed: {exc}"
                dead.add(key)
                continue
            rows[key].times_ms.extend(1e3 * t for t in times)


# ---- --source export: the models users bring --------------------------------------------------


@dataclass
class ExportRow:
    """One line of the export table: neurogen compiling one file of a model, and the peers on that model."""

    model: str
    source: str  # the file neurogen compiled: keras, tf2onnx, torch, dynamo
    threads: int
    neurogen_ms: float | None = None
    predicted_ms: float | None = None  # the tuning record's total for the DPRS path
    predicted_over_measured: float | None = None
    tuning_s: float | None = None  # from an empty profile cache
    # engine -> {"file": what it ran, "median_ms", "ratio": its median / neurogen's (> 1: neurogen faster), ...}
    peers: dict[str, dict[str, Any]] = field(default_factory=dict)
    fastest_peer: str | None = None
    fastest_peer_ratio: float | None = None
    error: float | None = None  # neurogen's, against onnxruntime on the same file (the tf2onnx one for keras)
    note: str = ""
    failed: bool = False


def _exports_module():
    sys.path.insert(0, str(BENCH_DIR))
    import exports

    return exports


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def engine_files(engine: str, available: list[str]) -> list[str]:
    """The files of a model an engine runs: neurogen each of them, TFLite and TensorFlow the Keras model,
    the ONNX engines each ONNX export."""
    if engine == "neurogen":
        return list(available)
    if engine in NEEDS_TF:
        return [s for s in available if s == "keras"]
    return [s for s in available if s != "keras"]


def peer_file(engine: str, source: str) -> str | None:
    """Which file a peer runs for neurogen's row of `source`: None where it has none (TFLite on a torch export)."""
    if engine in NEEDS_TF:
        return "keras" if source in ("keras", "tf2onnx") else None
    return ONNX_OF[source]


def quantize_int8(onnx_path: Path, out: Path, images: np.ndarray) -> Path:
    """The onnxruntime int8 model of the reference rows (INT8_METHOD); calibrated on `images`, one at a time."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    input_name = graph.input[0].name
    # A quantized softmax output rounds the near-uniform probabilities of random weights to zero: keep it float.
    softmax = [node.name for node in graph.node if node.op_type == "Softmax"]

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = [{input_name: image[None]} for image in images]

        def get_next(self):
            return self.left.pop(0) if self.left else None

    tmp = out.with_name(out.name + ".tmp.onnx")
    quantize_static(str(onnx_path), str(tmp), Images(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, nodes_to_exclude=softmax)
    tmp.replace(out)
    return out


def bench_export_model(config: Config, name: str) -> tuple[list[Row], list[Tuning], list[ExportRow], dict]:
    """Every engine on every file of one exported model: (engine rows, tunings, table rows, the export manifest)."""
    import onnxruntime as ort

    exports = _exports_module()
    exported = exports.export_model(name, config.exports, config.seed, config.resolution, say=_say)
    available = [s for s in exports.SOURCES if exported.path(s)]
    inputs = {s: exports.example_input(name, s, config.seed, config.resolution) for s in available}
    references = {}  # ONNX file -> onnxruntime's outputs on it: what every engine is checked against
    for source in available:
        if source != "keras":
            session = ort.InferenceSession(str(exported.path(source)), providers=["CPUExecutionProvider"])
            outputs = session.run(None, {session.get_inputs()[0].name: inputs[source]})
            references[source] = [np.asarray(r, np.float64) for r in outputs]
    if "keras" in available and "tf2onnx" not in available:  # no ONNX file: TensorFlow on the Keras model
        references["keras"] = _keras_reference(exported.path("keras"), inputs["keras"])
    rows = {(engine, source, threads): Row(name, threads, engine, source=source)
            for threads in config.threads for engine in config.engines for source in engine_files(engine, available)}
    tunings: dict[tuple[str, int], Tuning] = {}
    projects: dict[tuple[str, int], str | None] = {}
    for (engine, source, threads), row in rows.items():
        if engine != "neurogen":
            continue
        try:
            tuning, projects[source, threads], row.note = tune_neurogen(
                config, name, exported.path(source), threads, label=f"{name}_{source}")
        except Exception as exc:  # e.g. an op neurogen does not import: the row says so, the bench goes on
            _say(f"{name}: neurogen on {source}, {threads} thread(s) failed:\n{traceback.format_exc()}")
            row.note, row.failed = f"failed: {_first_line(exc)}", True
            tuning, projects[source, threads] = Tuning(name, threads, None, None, row.note), None
        tuning.source = source
        tunings[source, threads] = tuning
    workers = _start_export_workers(config, name, exported, rows, projects, inputs, references)
    _time_rounds(config, name, workers, rows)
    for row in rows.values():
        _summarize(row, None, None)
    table = [export_row(config, name, source, threads, rows, tunings, exported.notes.get(source, ""),
                        source in available) for threads in config.threads for source in exports.SOURCES]
    return list(rows.values()), list(tunings.values()), table, asdict(exported)


def _keras_reference(path: Path, x: np.ndarray) -> list[np.ndarray]:
    """Where tf2onnx could not export the model, the Keras rows are checked against TensorFlow itself."""
    import keras

    outputs = keras.saving.load_model(str(path), compile=False)(x, training=False)
    return [np.asarray(o, np.float64) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


def _start_export_workers(config: Config, name: str, exported, rows: dict, projects: dict, inputs: dict,
                          references: dict) -> dict[tuple[str, str, int], _Worker]:
    workers = {}
    int8: dict[str, Path | str] = {}  # ONNX file -> its int8 model, or why there is none
    exports = _exports_module()
    keras_path = exported.path("keras")
    for key, row in rows.items():
        engine, source, threads = key
        if row.note:  # neurogen failed to compile this file
            continue
        reference = references.get(ONNX_OF[source], references.get(source))
        onnx_path = exported.path(ONNX_OF[source])
        if engine == "onnxruntime-int8":
            if source not in int8:
                _say(f"{name}: quantizing the {source} export to int8 for onnxruntime")
                images = exports.calibration_inputs(name, source, config.seed + 1, config.resolution,
                                                    INT8_CALIBRATION_IMAGES)
                try:
                    int8[source] = quantize_int8(onnx_path, config.work / f"{name}.{source}.int8.onnx", images)
                except Exception as exc:
                    _say(f"{name}: int8 quantization of {source} failed:\n{traceback.format_exc()}")
                    int8[source] = f"failed: quantization: {_first_line(exc)}"
            if isinstance(int8[source], str):
                row.note = str(int8[source])  # a reference row: reported, not failed
                continue
            onnx_path = int8[source]
        spec = WorkerSpec(engine, name, threads, str(onnx_path), projects.get((source, threads)),
                          str(config.work / f"{name}.keras.tflite"),
                          str(config.work / f"{name}-{engine}-{source}-t{threads}.log"),
                          keras_path=str(keras_path) if keras_path else None)
        worker = _start_checked(spec, inputs[source], row, reference, strict=engine not in REFERENCE_ENGINES)
        if worker is not None:
            workers[key] = worker
    return workers


def export_row(config: Config, name: str, source: str, threads: int, rows: dict, tunings: dict,
               export_note: str, available: bool) -> ExportRow:
    """neurogen on one file against each peer on the same model: ratios peer median / neurogen median."""
    out = ExportRow(name, source, threads)
    if not available:
        out.note = f"skipped: {export_note}"
        return out
    neurogen = rows.get(("neurogen", source, threads))
    if neurogen is not None:
        out.neurogen_ms, out.error, out.failed = neurogen.median_ms, neurogen.error, neurogen.failed
        out.note = neurogen.note
    tuning = tunings.get((source, threads))
    if tuning is not None:
        out.tuning_s, out.predicted_ms = tuning.cold_s, tuning.predicted_ms
    if out.predicted_ms is not None and out.neurogen_ms:
        out.predicted_over_measured = out.predicted_ms / out.neurogen_ms
    for engine in (e for e in PEERS if e in config.engines):
        file = peer_file(engine, source)
        peer = rows.get((engine, file, threads)) if file else None
        if peer is None:
            out.peers[engine] = {"file": file, "median_ms": None, "ratio": None,
                                 "note": "no Keras model for a torch export" if file is None else "not run"}
            continue
        ratio = peer.median_ms / out.neurogen_ms if peer.median_ms and out.neurogen_ms else None
        out.peers[engine] = {"file": file, "median_ms": peer.median_ms, "ratio": ratio, "error": peer.error,
                             "failed": peer.failed, "note": peer.note}
    timed = {e: p for e, p in out.peers.items() if p["median_ms"] is not None and not p.get("failed")}
    if timed and out.neurogen_ms:
        out.fastest_peer = min(timed, key=lambda e: timed[e]["median_ms"])
        out.fastest_peer_ratio = timed[out.fastest_peer]["median_ms"] / out.neurogen_ms
    if export_note:
        out.note = "; ".join(n for n in (out.note, export_note) if n)
    return out


def cpu_description() -> tuple[str, list[str]]:
    """The CPU's model name and the ISA extensions that matter to these engines, from /proc/cpuinfo."""
    name, flags = None, []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware") and name is None:
            name = value.strip()
        elif key in ("flags", "features") and not flags:  # x86 says flags, Arm features
            flags = sorted(f for f in value.split() if f.startswith(ISA_PREFIXES))
    return name or platform.processor() or platform.machine(), flags


def library_versions() -> dict[str, str]:
    exports = _exports_module()
    import codegen

    out = {"neurogen": getattr(codegen, "__version__", "?"), "python": platform.python_version()}
    for package in ("numpy", "onnx", "onnxruntime", "tensorflow", "keras", "tf2onnx", "openvino", "torch",
                    "torchvision", "onnxscript"):
        out[package] = exports.package_version(package) or "not installed"
    problem = exports.torchvision_problem()
    if problem and out["torchvision"] != "not installed":
        out["torchvision"] += " (not importable)"
    return out


def _cell(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def markdown_export(config: Config, rows: list[Row], table: list[ExportRow], cpu: tuple[str, list[str]],
                    versions: dict[str, str]) -> str:
    peers = [e for e in PEERS if e in config.engines]
    lines = [
        "# neurogen on the models users bring: Keras applications, tf2onnx and torch.onnx exports",
        "",
        f"Batch 1, {config.resolution}x{config.resolution}, float32, seeded random weights (seed {config.seed}, "
        f"BatchNorm statistics from random images); {config.rounds} rounds x {config.burst} runs per engine, "
        f"interleaved, each burst after {config.settle_ms:g} ms idle.",
        "",
        f"CPU: {cpu[0]}, {os.cpu_count()} logical CPUs; ISA extensions: {' '.join(cpu[1]) or 'n/a'}.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "",
        "`source`: the file neurogen compiled (keras: the .keras file through neurogen's TensorFlow import; "
        "tf2onnx, torch, dynamo: the ONNX exports). onnxruntime and OpenVINO (CPU plugin, f32, 1 stream, latency "
        "hint) run the row's ONNX export (the tf2onnx one for the keras row), TFLite (XNNPACK) and TensorFlow the "
        "original Keras model. `ratio` = peer median / neurogen median (> 1: neurogen faster); `fastest peer` = "
        "the fastest peer's median / neurogen's. `predicted` = the tuning record's total for the DPRS path; "
        "`tuning s` = tuning from an empty profile cache. `rel err` = max|out - ort| / max|ort| against "
        f"onnxruntime on the row's ONNX file (tolerance {TOLERANCE:g}).",
        "",
        "| model | source | threads | neurogen ms | predicted ms | predicted/measured | tuning s | "
        + " | ".join(f"{e} ms | ratio" for e in peers) + " | fastest peer | rel err | note |",
        "|---|---|---:|---:|---:|---:|---:|" + "---:|---:|" * len(peers) + "---:|---:|---|",
    ]
    for r in table:
        cells = [r.model, r.source, str(r.threads), _cell(r.neurogen_ms, ".2f"), _cell(r.predicted_ms, ".2f"),
                 _cell(r.predicted_over_measured, ".2f"), _cell(r.tuning_s, ".1f")]
        for engine in peers:
            peer = r.peers.get(engine, {})
            failed = " (failed)" if peer.get("failed") else ""
            cells += [_cell(peer.get("median_ms"), ".2f") + failed, _cell(peer.get("ratio"), ".2f")]
        fastest = f"{r.fastest_peer_ratio:.2f} ({r.fastest_peer})" if r.fastest_peer_ratio is not None else ""
        cells += [fastest, _cell(r.error, ".1e"), r.note]
        lines.append("| " + " | ".join(cells) + " |")
    neurogen = {(r.model, r.source, r.threads): r.median_ms for r in rows if r.engine == "neurogen"}
    references = [r for r in rows if r.engine in REFERENCE_ENGINES]
    if references:
        lines += ["", "Reference rows, not peers: OpenVINO at its default inference precision (`openvino-default`: "
                  "bf16 on CPUs that have it), and onnxruntime on an int8 model (" + INT8_METHOD + "). `ratio` = "
                  "their median / neurogen's on the same file; their `rel err` is reported, not checked.", "",
                  "| model | file | threads | engine | median ms | ratio | rel err | note |",
                  "|---|---|---:|---|---:|---:|---:|---|"]
        for r in references:
            base = neurogen.get((r.model, r.source, r.threads))
            ratio = r.median_ms / base if r.median_ms and base else None
            lines.append(f"| {r.model} | {r.source} | {r.threads} | {r.engine} | {_cell(r.median_ms, '.2f')} | "
                         f"{_cell(ratio, '.2f')} | {_cell(r.error, '.1e')} | {r.note} |")
    lines += ["", "Every engine, every file:", "",
              "| model | file | threads | engine | median ms | min-max ms | rel err | note |",
              "|---|---|---:|---|---:|---:|---:|---|"]
    for r in rows:
        spread = f"{r.min_ms:.2f}-{r.max_ms:.2f}" if r.min_ms is not None else ""
        lines.append(f"| {r.model} | {r.source} | {r.threads} | {r.engine} | {_cell(r.median_ms, '.2f')} | {spread} | "
                     f"{_cell(r.error, '.1e')} | {r.note} |")
    return "\n".join(lines) + "\n"


def main_export(config: Config) -> int:
    """--source export: every model's files, every engine; writes engines-export.md and .json."""
    rows: list[Row] = []
    tunings: list[Tuning] = []
    table: list[ExportRow] = []
    manifests: dict[str, Any] = {}
    exports = _exports_module()
    for name in config.models:
        try:
            model_rows, model_tunings, model_table, manifests[name] = bench_export_model(config, name)
        except Exception as exc:  # the export itself failed: that model's rows say so, the others go on
            _say(f"{name}: failed:\n{traceback.format_exc()}")
            note = f"failed: {_first_line(exc)}"
            model_rows, model_tunings = [], []
            model_table = [ExportRow(name, source, threads, note=note, failed=True)
                           for threads in config.threads for source in exports.SOURCES]
        order = {e: i for i, e in enumerate(config.engines)}
        rows += sorted(model_rows, key=lambda r: (r.threads, order[r.engine], exports.SOURCES.index(r.source)))
        tunings += model_tunings
        table += model_table
    cpu, versions = cpu_description(), library_versions()
    config.out.mkdir(parents=True, exist_ok=True)
    text = markdown_export(config, rows, table, cpu, versions)
    _write(config.out / "engines-export.md", text)
    _write(config.out / "engines-export.json", json.dumps({
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "machine": {"cpu": cpu[0], "isa": cpu[1], "logical_cpus": os.cpu_count()}, "versions": versions,
        "int8": INT8_METHOD, "exports": manifests, "table": [asdict(r) for r in table],
        "rows": [asdict(r) for r in rows], "tuning": [asdict(t) for t in tunings]}, indent=1))
    sys.stdout.write(text)
    failed = any(r.failed for r in table) or any(r.failed for r in rows if r.engine not in REFERENCE_ENGINES)
    if failed or config.keep_work:
        _say(f"wrote {config.out / 'engines-export.md'} and engines-export.json (worker logs in {config.work})")
    else:
        shutil.rmtree(config.work, ignore_errors=True)
        _say(f"wrote {config.out / 'engines-export.md'} and engines-export.json")
    return 1 if failed else 0



# ---- reporting -------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str, missing: str = "n/a") -> str:
    return missing if value is None else format(value, spec)


def markdown(config: Config, rows: list[Row], tunings: list[Tuning]) -> str:
    lines = [
        "# neurogen against onnxruntime, TFLite (XNNPACK) and TensorFlow",
        "",
        f"Batch 1, {config.resolution}x{config.resolution}, float32; {config.rounds} rounds x {config.burst} runs "
        f"per engine, interleaved, each burst after {config.settle_ms:g} ms idle. {_machine()}. "
        "`vs ORT` = onnxruntime median / engine median (> 1: faster "
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

    exports = _exports_module()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=("zoo", "export"), default="zoo",
                        help="zoo: codegen.zoo's ONNX graphs (and Keras twins); export: what users bring, "
                        "bench/exports.py's Keras applications, tf2onnx and torch.onnx exports (default zoo)")
    parser.add_argument("--models", nargs="+", choices=sorted(set(zoo.MODELS) | set(exports.MODELS)),
                        help=f"default: {' '.join(DEFAULT_MODELS)} (zoo), {' '.join(exports.MODELS)} (export)")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--engines", nargs="+", choices=ENGINES,
                        help=f"default: {' '.join(ZOO_ENGINES)} (zoo), {' '.join(EXPORT_ENGINES)} (export)")
    parser.add_argument("--rounds", type=int, default=30,
                        help="timing rounds; each asks every worker for a burst, in a fresh random order (default 30)")
    parser.add_argument("--burst", type=int, default=5,
                        help="timed back-to-back runs per worker per round, after one untimed run (default 5)")
    parser.add_argument("--settle", type=float, default=20.0, metavar="MS",
                        help="idle milliseconds before each burst, so that the threads a previous engine leaves "
                        "spinning after its run (XNNPACK's, onnxruntime's, TBB's) have gone to sleep (default 20)")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results",
                        help="where engines.md, engines.json and engines.png go (default bench/results)")
    parser.add_argument("--work", type=Path, help="folder for models, projects, caches and worker logs "
                        "(default: a fresh temporary one)")
    parser.add_argument("--quick-tune", action="store_true",
                        help="tune neurogen with few repetitions (for smoke tests: faster, less exact choices)")
    parser.add_argument("--exports", type=Path, default=exports.DEFAULT_CACHE,
                        help=f"--source export: the export cache folder (default {exports.DEFAULT_CACHE})")
    parser.add_argument("--seed", type=int, default=0, help="--source export: the weights' seed (default 0)")
    args = parser.parse_args(argv)
    if min(args.threads) < 1 or args.rounds < 1 or args.burst < 1:
        parser.error("--threads, --rounds and --burst must be positive")
    if args.settle < 0:
        parser.error("--settle must not be negative")
    known = zoo.MODELS if args.source == "zoo" else list(exports.MODELS)
    models = args.models or list(DEFAULT_MODELS if args.source == "zoo" else exports.MODELS)
    if any(m not in known for m in models):
        parser.error(f"--source {args.source} has the models {', '.join(known)}")
    engines = args.engines or list(ZOO_ENGINES if args.source == "zoo" else EXPORT_ENGINES)
    if args.source == "zoo" and any(e in REFERENCE_ENGINES for e in engines):
        parser.error(f"{' and '.join(REFERENCE_ENGINES)} run with --source export only")
    work = args.work or Path(tempfile.mkdtemp(prefix="neurogen-engines-"))
    work.mkdir(parents=True, exist_ok=True)
    return Config(models, args.threads, engines, args.rounds, args.burst, args.resolution, args.out,
                  work.resolve(), args.quick_tune, keep_work=args.work is not None, source=args.source,
                  exports=args.exports.resolve(), seed=args.seed, settle_ms=args.settle)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    # On SIGTERM, unwind like on Ctrl-C, so that the workers are stopped rather than left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    missing_tf = importlib.util.find_spec("tensorflow") is None
    if config.source == "export":
        if missing_tf:  # the exports are Keras models: nothing to measure without it
            _say(f"error: --source export needs TensorFlow (Keras builds the models; {INSTALL_HINT})")
            return 2
        return main_export(config)
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
