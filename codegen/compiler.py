"""The pipeline as plain functions: import, simplify, select routines, lower, render, write."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx

from . import passes, record
from .emit import check_output_folder, lower, render, write_project
from .errors import ModelError, NeurogenError
from .escape import c_identifier, reserved_name
from .frontends import onnx as onnx_frontend
from .ir import Graph
from .profile.cache import ProfileCache
from .profile.harness import Settings
from .progress import SILENT, Progress
from .selection import Selection, check_code_size, materialize, reference_selection
from .targets import Target, isa_need
from .targets import load as load_target
from .tune import RecordError, check_record, record_code_size, selections_from_record, tune

ModelSource = str | os.PathLike | onnx.ModelProto
MAX_THREADS = 64  # runtime_c/ng_threads.h NG_MAX_THREADS


def check_threads(threads: int) -> int:
    if not 1 <= threads <= MAX_THREADS:
        raise NeurogenError(f"threads must be between 1 and {MAX_THREADS}, not {threads}")
    return threads


def import_model(model: ModelSource, *, input_shapes: dict[str, tuple[int, ...]] | None = None,
                 simplify: bool = True) -> Graph:
    """Read a model into the IR (and simplify it, by default)."""
    fmt = model_format(model)
    if fmt == "onnx":
        graph = onnx_frontend.import_model(model, input_shapes=input_shapes)
    elif fmt == "tflite":
        from .frontends import tflite
        graph = tflite.import_model(model, input_shapes=input_shapes)
    else:
        from .frontends import tensorflow
        graph = tensorflow.import_model(model, input_shapes=input_shapes)
    return passes.own_outputs(passes.simplify(graph)) if simplify else graph


MODEL_FORMATS = ("a .onnx file, a TensorFlow SavedModel folder, a .keras, .h5 or frozen GraphDef .pb file, "
                 "or a float .tflite file")


def model_format(model: ModelSource) -> str:
    """The format of a model from its path: onnx, tensorflow (SavedModel, Keras, GraphDef) or tflite."""
    if isinstance(model, onnx.ModelProto):
        return "onnx"
    path = Path(model)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".tflite":
        return "tflite"
    if path.is_dir() or suffix in (".keras", ".h5", ".hdf5", ".pb"):
        return "tensorflow"
    if not path.exists():
        raise ModelError(f"{model}: no such model file or folder")
    raise ModelError(f"{model}: unknown model format '{suffix or path.name}' (expected {MODEL_FORMATS})")


def generate(graph: Graph, target: Target, *, name: str, weights: str = "incbin",
             selections: Mapping[str, Selection] | None = None,
             tuning: dict[str, Any] | None = None, threads: int = 1, code_size: str = "fast") -> dict[str, bytes]:
    """Every file of the C project for `graph`, as relative path -> bytes.

    `selections` fixes each layer's routine, layout and parameters (the routine path);
    layers without one run their portable reference routine (taking its shapes as arguments where
    it can, with `code_size` "small"). `tuning`, the record the path came from, is written into the
    project as tuning.json. `threads`: how many threads the model runs on (1: no threads, no pthreads).
    """
    check_threads(threads)
    check_code_size(code_size)
    check_name(name)
    graph = passes.own_outputs(graph)
    chosen = dict(selections or {})
    for layer in graph.layers:
        chosen.setdefault(layer.name, reference_selection(layer, graph, code_size))
    lowered, instances = materialize(graph, chosen)
    program = lower(lowered, instances, name, threads)
    rec = dict(tuning) if tuning is not None else reference_record(graph, target, chosen, code_size)
    in_place = set(program.in_place)
    rec.update(threads=threads, io=program.io, arena_bytes=program.arena.size, weights_bytes=len(program.weights),
               emitted=[{"layer": i.layer.name, "routine": i.routine.name,
                         **({"in_place": True} if i.layer.name in in_place else {})} for i in instances])
    need = isa_need(set().union(*(i.routine.requires or {i.routine.isa} for i in instances)))
    # What a build of this project must enable (the generated code stops with an #error without it).
    rec["isa_need"] = None if need is None else {"features": list(need.features), "level": need.level,
                                                 "flags": need.flags}
    return render(program, record.dumps(rec), weights, target.cflags)


def reference_record(graph: Graph, target: Target, chosen: Mapping[str, Selection],
                     code_size: str = "fast") -> dict[str, Any]:
    """The record of an untuned path: which instance runs each layer, no times."""
    path = [{"layer": layer.name, "instance": chosen[layer.name].key, "time_us": None} for layer in graph.layers]
    return {**record.make_record(graph, target.describe(), path), "code_size": code_size}


def default_name(model: ModelSource) -> str:
    """The project name from the model's file name (or graph name), made a C identifier that collides
    with nothing (`math.onnx` gives `math_model`, not a header that hides <math.h>)."""
    stem = (model.graph.name or "model") if isinstance(model, onnx.ModelProto) else Path(model).stem
    ident = c_identifier(stem)
    return f"{ident}_model" if reserved_name(ident) else ident


def project_name(name: str | None, model: ModelSource) -> str:
    """The C prefix of the project's API: `name` (from --name) made an identifier, else the default."""
    if not name:
        return default_name(model)
    ident = c_identifier(name)
    reason = reserved_name(ident)
    if reason:
        raise NeurogenError(f"--name {name!r}: {reason}; choose another name")
    return ident


def check_name(name: str) -> str:
    """`name` as `generate` takes it: already a C identifier from `project_name`, not a reserved one."""
    if c_identifier(name) != name or reserved_name(name):
        raise NeurogenError(f"project name {name!r}: not usable as a C prefix "
                            f"({reserved_name(name) or 'use letters, digits and single underscores'})")
    return name


def compile_model(model: ModelSource, out_dir: str | os.PathLike, *, name: str | None = None,
                  target: str | Target = "host", input_shapes: dict[str, tuple[int, ...]] | None = None,
                  weights: str = "incbin", record: str | os.PathLike | dict[str, Any] | None = None,
                  reference: bool = False, reprofile: bool = False, cache: ProfileCache | None = None,
                  threads: int | None = None, code_size: str | None = None, force: bool = False,
                  progress: Progress = SILENT) -> Path:
    """Compile a model into a standalone C project in `out_dir`; returns the folder.

    The routine path comes from `record` (a tuning record: no profiling, reproducible
    bytes), or is the portable reference path with `reference=True`, or else is tuned
    on the target first (measurements come from the profile cache where it has them).
    `threads`: the model's thread count (default: the record's, else 1); tuning profiles with it.
    `code_size`: "fast" (routines specialised to each layer's shapes unless taking them as
    arguments measures faster) or "small" (shapes as arguments wherever a routine can, so layers
    of one kind share code); default: the record's, else "fast". A record is used as tuned.
    An existing `out_dir` is replaced only if neurogen wrote it, and only the files neurogen wrote
    (`force`: also those edited since); see `emit.write_project`.
    """
    tgt = target if isinstance(target, Target) else load_target(target)
    name = project_name(name, model)
    check_output_folder(out_dir, force=force)
    with progress.step("importing and simplifying"):
        graph = import_model(model, input_shapes=input_shapes)
    selections, tuning = None, None
    if record is not None:
        tuning = load_record(record)
        source = str(record) if not isinstance(record, dict) else "tuning record"
        check_record(tuning, graph, tgt, source=source)
        code_size = _record_code_size(tuning, code_size, source)
        selections = selections_from_record(tuning, graph, tgt)
        tuned_for = int(tuning.get("threads", 1))
        if threads is not None and threads != tuned_for:
            progress.note(f"note: the record's path was tuned on {tuned_for} thread(s); it runs on {threads} "
                          "(tune with --threads for a path chosen for that)")
        threads = threads or tuned_for
    elif not reference:
        tuning = tune(graph, tgt, cache=cache or ProfileCache(), reprofile=reprofile, progress=progress,
                      settings=Settings(threads=threads or 1), code_size=check_code_size(code_size or "fast"))
        selections = selections_from_record(tuning, graph, tgt)
    with progress.step(f"generating C for {len(graph.layers)} layers"):
        files = generate(graph, tgt, name=name, weights=weights, selections=selections, tuning=tuning,
                         threads=threads or 1, code_size=code_size or "fast")
    with progress.step(f"writing {out_dir}"):
        return write_project(files, out_dir, force=force)


def tune_model(model: ModelSource, *, target: str | Target = "host",
               input_shapes: dict[str, tuple[int, ...]] | None = None, reprofile: bool = False,
               cache: ProfileCache | None = None, settings: Settings | None = None, threads: int | None = None,
               code_size: str = "fast", progress: Progress = SILENT) -> dict[str, Any]:
    """Profile a model's candidate routines on the target and select its routine path: the tuning record.

    `threads`: the thread count to profile with and to record (overrides the settings' own).
    `code_size`: "fast" (DPRS picks shapes as constants or as arguments, whichever is faster) or
    "small" (only shapes as arguments, where a routine can: less code); recorded."""
    tgt = target if isinstance(target, Target) else load_target(target)
    settings = settings or Settings()
    if threads is not None:
        settings = dataclasses.replace(settings, threads=check_threads(threads))
    with progress.step("importing and simplifying"):
        graph = import_model(model, input_shapes=input_shapes)
    return tune(graph, tgt, cache=cache or ProfileCache(), reprofile=reprofile, progress=progress,
                settings=settings, code_size=check_code_size(code_size))


def _record_code_size(tuning: dict[str, Any], wanted: str | None, source: str) -> str:
    """The record's code size; asking for another is an error (its path was chosen under its own)."""
    recorded = record_code_size(tuning)
    if wanted is not None and check_code_size(wanted) != recorded:
        raise RecordError(f"{source}: tuned with --code-size {recorded}, not {wanted}; tune again with "
                          f"--code-size {wanted}, or leave the option out to use the record as it is")
    return recorded


def load_record(record: str | os.PathLike | dict[str, Any]) -> dict[str, Any]:
    if isinstance(record, dict):
        return record
    path = Path(record)
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise RecordError(f"{path}: cannot read the tuning record ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise RecordError(f"{path}: not a tuning record (a binary file, not JSON text)") from None
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not a tuning record (invalid JSON: {exc})") from None
