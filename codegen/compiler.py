"""The pipeline as plain functions: import, simplify, select routines, lower, render, write."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import onnx

from . import passes, record
from .emit import c_identifier, lower, render, write_project
from .errors import ModelError
from .frontends import onnx as onnx_frontend
from .ir import Graph
from .progress import SILENT, Progress
from .selection import Selection, materialize, reference_selection
from .targets import Target
from .targets import load as load_target

ModelSource = str | os.PathLike | onnx.ModelProto


def import_model(model: ModelSource, *, input_shapes: dict[str, tuple[int, ...]] | None = None,
                 simplify: bool = True) -> Graph:
    """Read a model into the IR (and simplify it, by default)."""
    if isinstance(model, onnx.ModelProto) or Path(model).suffix.lower() == ".onnx":
        graph = onnx_frontend.import_model(model, input_shapes=input_shapes)
    else:
        raise ModelError(f"{model}: unknown model format (expected a .onnx file)")
    return passes.simplify(graph) if simplify else graph


def generate(graph: Graph, target: Target, *, name: str, weights: str = "incbin",
             selections: Mapping[str, Selection] | None = None) -> dict[str, bytes]:
    """Every file of the C project for `graph`, as relative path -> bytes.

    `selections` fixes each layer's routine, layout and parameters (the routine path);
    by default every layer runs its portable reference routine.
    """
    graph = passes.own_outputs(graph)
    chosen = dict(selections or {})
    for layer in graph.layers:
        chosen.setdefault(layer.name, reference_selection(layer, graph))
    lowered, instances = materialize(graph, chosen)
    program = lower(lowered, instances, name)
    path = [{"layer": i.layer.name, "kind": i.layer.kind, "routine": i.routine.name, "params": i.params,
             "layout": chosen[i.layer.name].layout.value if i.layer.name in chosen else "adapt",
             "template_sha256": i.routine.template_hash(), "time_us": None} for i in instances]
    rec = record.make_record(graph, target.describe(), path, program.io)
    rec["arena_bytes"] = program.arena.size
    rec["weights_bytes"] = len(program.weights)
    return render(program, record.dumps(rec), weights)


def default_name(model: ModelSource) -> str:
    if isinstance(model, onnx.ModelProto):
        return c_identifier(model.graph.name or "model")
    return c_identifier(Path(model).stem)


def compile_model(model: ModelSource, out_dir: str | os.PathLike, *, name: str | None = None,
                  target: str | Target = "host", input_shapes: dict[str, tuple[int, ...]] | None = None,
                  weights: str = "incbin", progress: Progress = SILENT) -> Path:
    """Compile a model into a standalone C project in `out_dir`; returns the folder."""
    tgt = target if isinstance(target, Target) else load_target(target)
    name = c_identifier(name) if name else default_name(model)
    with progress.step("importing and simplifying"):
        graph = import_model(model, input_shapes=input_shapes)
    with progress.step(f"generating C for {len(graph.layers)} layers"):
        files = generate(graph, tgt, name=name, weights=weights)
    with progress.step(f"writing {out_dir}"):
        return write_project(files, out_dir)
