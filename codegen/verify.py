"""What `neurogen run` and `neurogen verify` check before running a project, and the frameworks they compare with.

A project's tuning.json says what it was compiled from (model hash, inputs, outputs) and for which target
(ISA features, devices). These are checked first, so that a wrong pairing or a foreign target gives one
clear message instead of an onnxruntime shape error or a build / exec format error.
The reference of a model is its own framework: onnxruntime, Keras, a SavedModel's serving signature,
TensorFlow for a frozen GraphDef, the TFLite interpreter. Inputs and outputs are in the model's own
layout (NHWC for TensorFlow), which is the project's memory order.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError, NeurogenError
from .targets import Target

Arrays = dict[str, np.ndarray]


class ProjectError(NeurogenError):
    """A project folder is not a neurogen project, belongs to another model, or cannot run here."""


@dataclass(frozen=True)
class Port:
    name: str
    shape: tuple[int, ...]  # memory order: what the caller's buffer holds


@dataclass(frozen=True)
class Project:
    path: Path
    record: dict[str, Any]
    inputs: list[Port]
    outputs: list[Port]


def _port(entry: Any, where: str) -> Port:
    try:
        shape = tuple(int(d) for d in entry["shape"])
        # Records before `order` was written held the logical NCHW shape of an NHWC buffer.
        if entry.get("order") != "memory" and entry.get("layout") == "nhwc" and len(shape) == 4:
            shape = (shape[0], shape[2], shape[3], shape[1])
        return Port(str(entry["name"]), shape)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ProjectError(f"{where}: a malformed input/output entry; compile the project again") from None


def read_project(folder: str | os.PathLike) -> Project:
    """The project's tuning record, or a ProjectError that says why the folder is not a project."""
    path = Path(folder)
    record_path = path / "tuning.json"
    if not path.is_dir():
        raise ProjectError(f"{path}: no such project folder; give a folder written by 'neurogen compile'")
    try:
        record = json.loads(record_path.read_text())
    except FileNotFoundError:
        raise ProjectError(f"{path}: not a neurogen project (it has no tuning.json); "
                           "give a folder written by 'neurogen compile'") from None
    except OSError as exc:
        raise ProjectError(f"{record_path}: cannot read it ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProjectError(f"{record_path}: not valid JSON ({exc}); compile the project again") from None
    io = record.get("io") if isinstance(record, dict) else None
    if not isinstance(io, dict) or not isinstance(io.get("inputs"), list) or not isinstance(io.get("outputs"), list):
        raise ProjectError(f"{record_path}: has no list of inputs and outputs; compile the project again")
    return Project(path, record, [_port(e, str(record_path)) for e in io["inputs"]],
                   [_port(e, str(record_path)) for e in io["outputs"]])


def check_runs_here(project: Project, target: Target) -> None:
    """Refuse a project compiled for ISA features or devices that `target` (this machine) lacks."""
    made_for = project.record.get("target")
    if not isinstance(made_for, dict):
        return  # an old record: the build will tell
    name = str(made_for.get("name", "?"))
    needs = {str(f) for f in made_for.get("isa", ())} - set(target.isa)
    needs |= {str(d) for d in made_for.get("devices", ())} - set(target.devices)
    if needs:
        raise ProjectError(
            f"{project.path} was compiled for target '{name}', which needs {', '.join(sorted(needs))}; this machine "
            f"({platform.machine()}, target '{target.name}') lacks {'it' if len(needs) == 1 else 'them'}, so it "
            f"cannot run the project. Run it on a machine of target '{name}', or compile the model again "
            "for this one (--target host)")


def check_loads_here(target: Target) -> None:
    """Refuse a target whose compiler builds for another CPU: the library is loaded into this process."""
    from .profile.runners import compiler_machine, cpu_family

    triple = compiler_machine(target.compiler)
    here = platform.machine()
    if triple and here and cpu_family(triple.split("-")[0]) != cpu_family(here):
        raise ProjectError(f"target '{target.name}' builds for {triple}; this machine ({here}) cannot load "
                           "that code: run the project on the device (its Makefile builds it there)")


# -- does the project belong to the model? ----------------------------------------------------

def _memory_shape(graph: Any, name: str) -> tuple[int, ...]:
    from .ir import memory_shape

    return memory_shape(graph.tensor(name))


def _ports(ports: Sequence[Port]) -> str:
    return ", ".join(f"'{p.name}' {list(p.shape)}" for p in ports) or "none"


def check_belongs(model: str | os.PathLike, project: Project) -> None:
    """Refuse a project compiled from another model: compare inputs, outputs and the graph hash."""
    from . import __version__
    from .compiler import import_model
    from .record import graph_hash

    # The project's shapes settle the model's free sizes; in the model's order, which is the memory order.
    shapes = {p.name: p.shape for p in project.inputs}
    try:
        graph = import_model(model)
    except ModelError:
        graph = None
    if graph is None or {n: _memory_shape(graph, n) for n in graph.inputs} != shapes:
        try:
            graph = import_model(model, input_shapes=shapes)
        except ModelError as exc:
            if graph is None:
                raise ProjectError(f"{project.path} does not fit {model}: the project's inputs are "
                                   f"{_ports(project.inputs)}, which the model does not take ({exc})") from None
    theirs_in = [Port(n, _memory_shape(graph, n)) for n in graph.inputs]
    theirs_out = [Port(n, _memory_shape(graph, n)) for n in graph.outputs]
    hint = "verify it against the model it was compiled from, or compile this model"
    if theirs_in != project.inputs or theirs_out != project.outputs:
        raise ProjectError(f"{project.path} was not compiled from {model}: the project has inputs "
                           f"{_ports(project.inputs)} and outputs {_ports(project.outputs)}; the model has inputs "
                           f"{_ports(theirs_in)} and outputs {_ports(theirs_out)}; {hint}")
    made_from = project.record.get("model", {})
    if isinstance(made_from, dict) and made_from.get("graph_sha256") != graph_hash(graph):
        tool = project.record.get("tool", {})
        if isinstance(tool, dict) and tool.get("version") == __version__:
            raise ProjectError(f"{project.path} was compiled from another model ('{made_from.get('name')}') with "
                               f"the same inputs and outputs as {model} but other layers or weights; {hint}")


# -- inputs ------------------------------------------------------------------------------------

def check_inputs(arrays: Arrays, project: Project, sources: dict[str, str]) -> Arrays:
    """Inputs as float32 arrays of exactly the project's shapes; `sources` names the file of each."""
    result = {}
    for port in project.inputs:
        if port.name not in arrays:
            continue
        array, where = arrays[port.name], sources.get(port.name, f"input '{port.name}'")
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise ProjectError(f"{where}: holds {array.dtype} values; input '{port.name}' takes float32 numbers")
        if tuple(array.shape) != port.shape:
            raise ProjectError(f"{where}: has shape {list(array.shape)}, but input '{port.name}' of "
                               f"{project.path} has shape {list(port.shape)} (in the model's own axis order)")
        result[port.name] = np.ascontiguousarray(array, dtype=np.float32)
    return result


# -- the framework's own answer ----------------------------------------------------------------

@dataclass
class Reference:
    """A model run by its own framework, taking and giving arrays by the project's names."""

    engine: str  # "onnxruntime", "TensorFlow", ...
    run: Callable[[Arrays], Arrays]
    single_thread: Callable[[], Callable[[Arrays], Arrays]] | None = None  # for timing against one thread


def _match(what: str, ours: Sequence[str], theirs: Sequence[str], model: str) -> list[int]:
    """For each of our names, the index of the framework's: by name when the sets agree, else by position."""
    if sorted(ours) == sorted(theirs):
        return [list(theirs).index(n) for n in ours]
    if len(ours) == len(theirs):
        return list(range(len(ours)))
    raise ProjectError(f"{model} has {len(theirs)} {what}(s) ({', '.join(theirs)}), the project "
                       f"{len(ours)} ({', '.join(ours)}): the project was not compiled from this model")


def _wrap(engine: str, model: str, project: Project, in_names: Sequence[str], out_names: Sequence[str],
          call: Callable[[list[np.ndarray]], Sequence[Any]]) -> Callable[[Arrays], Arrays]:
    """A run function over `call` (positional framework inputs -> framework outputs) by project names."""
    ins = _match("input", [p.name for p in project.inputs], in_names, model)
    outs = _match("output", [p.name for p in project.outputs], out_names, model)

    def run(arrays: Arrays) -> Arrays:
        feeds: list[np.ndarray] = [np.empty(0)] * len(ins)
        for port, j in zip(project.inputs, ins):
            feeds[j] = arrays[port.name]
        try:
            results = list(call(feeds))
        except NeurogenError:
            raise
        except Exception as exc:  # each framework raises its own types
            raise ProjectError(f"{engine} failed to run {model}: {type(exc).__name__}: {exc}") from None
        return {port.name: np.asarray(results[j]) for port, j in zip(project.outputs, outs)}

    return run


def reference(model: str | os.PathLike, project: Project) -> Reference:
    from .compiler import model_format

    fmt = model_format(model)
    path = Path(model)
    if fmt == "onnx":
        return _onnx(path, project)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter hides our report
    if fmt == "tflite":
        return _tflite(path, project)
    if path.is_dir():
        return _saved_model(path, project)
    if path.suffix.lower() == ".pb":
        return _graph_def(path, project)
    return _keras(path, project)


def _onnx(path: Path, project: Project) -> Reference:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ProjectError("verify needs onnxruntime for .onnx models: pip install 'neurogen[test]'") from None

    def session(threads: int = 0) -> Any:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads
        try:
            return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"{path}: onnxruntime cannot load it ({exc})") from None

    def runner(sess: Any) -> Callable[[Arrays], Arrays]:
        names = [i.name for i in sess.get_inputs()]
        return _wrap("onnxruntime", str(path), project, names, [o.name for o in sess.get_outputs()],
                     lambda feeds: sess.run(None, dict(zip(names, feeds))))

    return Reference("onnxruntime", runner(session()), lambda: runner(session(1)))


def _keras(path: Path, project: Project) -> Reference:
    from .frontends.tensorflow import tensorflow

    tf = tensorflow()
    import keras

    try:
        model = keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # keras raises many types for unreadable files
        raise ModelError(f"{path}: Keras cannot load it ({type(exc).__name__}: {exc})") from None

    def call(feeds: list[np.ndarray]) -> list[Any]:
        out = model(feeds[0] if len(feeds) == 1 else feeds, training=False)
        return tf.nest.flatten(out)

    names = [str(t.name) for t in model.inputs]
    count = len(tf.nest.flatten(model.outputs))
    return Reference("Keras", _wrap("Keras", str(path), project, names, [f"output_{i}" for i in range(count)], call))


def _saved_model(path: Path, project: Project) -> Reference:
    from .frontends.tensorflow import saved_model_signature, tensorflow

    tf = tensorflow()
    loaded, function = saved_model_signature(path)
    in_names = sorted(function.structured_input_signature[1])
    structured = function.structured_outputs
    out_names = sorted(structured) if isinstance(structured, dict) else \
        [f"output_{i}" for i in range(len(tf.nest.flatten(structured)))]

    def call(feeds: list[np.ndarray]) -> list[Any]:
        assert loaded is not None  # the function reads the loaded model's variables: keep it alive
        out = function(**{n: tf.constant(x) for n, x in zip(in_names, feeds)})
        return [out[n] for n in out_names] if isinstance(out, dict) else tf.nest.flatten(out)

    return Reference("TensorFlow", _wrap("TensorFlow", str(path), project, in_names, out_names, call))


def _graph_def(path: Path, project: Project) -> Reference:
    from .frontends.tensorflow import load, tensorflow

    tf = tensorflow()
    frozen = load(path)
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(frozen.graph_def, name=""), [])
    graph = wrapped.graph
    try:
        fn = wrapped.prune([graph.get_tensor_by_name(f"{n}:0") for n in frozen.inputs],
                           [graph.get_tensor_by_name(t) for _, t in frozen.outputs])
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{path}: TensorFlow cannot run the GraphDef ({exc})") from None

    def call(feeds: list[np.ndarray]) -> list[Any]:
        return tf.nest.flatten(fn(*(tf.constant(x) for x in feeds)))

    return Reference("TensorFlow", _wrap("TensorFlow", str(path), project, frozen.inputs,
                                         [name for name, _ in frozen.outputs], call))


def _tflite(path: Path, project: Project) -> Reference:
    from .frontends.tensorflow import tensorflow

    tf = tensorflow()
    try:
        interpreter = tf.lite.Interpreter(model_path=str(path))
    except Exception as exc:
        raise ModelError(f"{path}: the TFLite interpreter cannot load it ({type(exc).__name__}: {exc})") from None
    ins, outs = interpreter.get_input_details(), interpreter.get_output_details()
    # The names the frontend gives the tensors (see frontends.tflite._key).
    in_names = [str(d["name"]).replace(":", "_") for d in ins]
    out_names = [str(d["name"]).replace(":", "_") for d in outs]
    by_name = {p.name: p.shape for p in project.inputs}
    for d, name in zip(ins, in_names):  # free sizes take the project's
        if name in by_name and tuple(d["shape"]) != by_name[name]:
            interpreter.resize_tensor_input(d["index"], list(by_name[name]))
    interpreter.allocate_tensors()

    def call(feeds: list[np.ndarray]) -> list[Any]:
        for d, x in zip(ins, feeds):
            interpreter.set_tensor(d["index"], x)
        interpreter.invoke()
        return [interpreter.get_tensor(d["index"]).copy() for d in outs]

    return Reference("TFLite", _wrap("TFLite", str(path), project, in_names, out_names, call))
