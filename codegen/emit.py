"""Lowering (memory plan, weight blob, call schedule) and the project writer.

All C comes from Jinja templates under templates/; this module only computes the
values they need. The output is a dict of relative path -> bytes, identical for
identical inputs, written atomically by `write_project`.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from . import __version__
from .errors import OutputError
from .ir import DType, Graph, format_shape
from .memory import ALIGNMENT, ArenaPlan, Buffer, align_up, plan
from .paths import RUNTIME_C, TEMPLATES
from .routines import RoutineInstance

WEIGHT_MODES = ("incbin", "c-array")


# -- Jinja ------------------------------------------------------------------------------------

def c_float(value: float) -> str:
    """An exact C literal for the float32 nearest `value`."""
    v = np.float32(value)
    if np.isnan(v):
        return "NAN"
    if np.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    text = str(v)
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def c_string(value: str) -> str:
    """The body of a C string literal: printable ASCII as is, everything else as octal UTF-8 bytes.

    '?' is escaped too, so no trigraph can form; octal escapes are always three digits.
    """
    safe = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _-.:/()[]<>=+,;#@!'")
    return "".join(chr(b) if chr(b) in safe else f"\\{b:03o}" for b in value.encode("utf-8"))


def c_comment(value: str) -> str:
    return str(value).replace("*/", "* /").replace("/*", "/ *").replace("??", "?\\?").replace("\n", " ")


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.do"],
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(cf=c_float, cstring=c_string, comment=c_comment)
    env.globals.update({"inf": math.inf, "raise": _raise})
    return env


# -- lowering ---------------------------------------------------------------------------------

@dataclass
class Step:
    """One call in the schedule."""

    instance: RoutineInstance
    symbol: str
    head: str  # the C function head: return type, name and parameters
    args: list[str]  # the C expressions passed
    comment: str
    body: str = ""
    weights: list[tuple[int, int]] = field(default_factory=list)  # (offset, bytes) of the constants it reads
    parallel: bool = False  # takes (part, parts) and runs on every thread
    barrier_after: bool = False  # threads meet after it (it or the next step runs on several)


@dataclass
class Program:
    name: str
    graph: Graph
    steps: list[Step]
    arena: ArenaPlan
    weights: bytes
    io: dict[str, list[dict[str, Any]]]
    threads: int = 1


def c_identifier(text: str) -> str:
    ident = re.sub(r"[^0-9a-zA-Z_]", "_", text).strip("_").lower() or "model"
    ident = re.sub(r"_+", "_", ident)
    return f"m_{ident}" if ident[0].isdigit() else ident


def _io(graph: Graph, names: list[str]) -> list[dict[str, Any]]:
    return [{"name": n, "shape": list(graph.shape(n)) or [1], "size": graph.tensor(n).size,
             "dtype": graph.tensor(n).dtype.value, "layout": graph.tensor(n).layout.value} for n in names]


def _weight_blob(graph: Graph, instances: list[RoutineInstance]
                 ) -> tuple[bytes, dict[tuple[int, str], tuple[int, int]]]:
    """Concatenate every instance's packed constants; identical arrays are stored once.

    Returns the blob and, per (instance index, tensor), the (offset, bytes) of its packed copy."""
    chunks: list[bytes] = []
    offsets: dict[tuple[int, str], tuple[int, int]] = {}
    by_digest: dict[str, int] = {}
    size = 0
    for index, inst in enumerate(instances):
        for name, array in sorted(inst.packed_constants(graph).items()):
            data = np.ascontiguousarray(array).tobytes()
            digest = hashlib.sha256(data).hexdigest() + str(array.dtype)
            if digest not in by_digest:
                start = align_up(size)
                chunks.append(b"\0" * (start - size))
                chunks.append(data)
                by_digest[digest] = start
                size = start + len(data)
            offsets[(index, name)] = (by_digest[digest], len(data))
    return b"".join(chunks), offsets


def _buffers(graph: Graph, instances: list[RoutineInstance], threads: int = 1) -> list[Buffer]:
    """Arena buffers: intermediate tensors from producer to last reader, scratch for one step."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    external = set(graph.inputs) | set(graph.outputs)
    scratch = []
    for step, inst in enumerate(instances):
        for name in inst.layer.outputs:
            if name not in external:
                first.setdefault(name, step)
                last[name] = max(last.get(name, step), step)
        for name in inst.layer.present_inputs():
            if name in first:
                last[name] = step
        nbytes = inst.scratch_bytes(graph)
        if inst.routine.scratch_per_part and inst.routine.parallel:
            nbytes *= threads
        if nbytes:
            scratch.append(Buffer(f"scratch:{step}", nbytes, step, step))
    tensors = [Buffer(n, graph.tensor(n).nbytes, first[n], last[n]) for n in first]
    return tensors + scratch


def _pointer(dtype: DType, const: bool) -> str:
    return f"{'const ' if const else ''}{dtype.c_type} *restrict"


# Arena bytes kept for the thread pool of a model built for several threads (runtime_c/ng_threads.h:
# the pool and its workers; the C code checks that they fit).
THREAD_POOL_BYTES = 4096


def lower(graph: Graph, instances: list[RoutineInstance], name: str, threads: int = 1) -> Program:
    buffers = _buffers(graph, instances, threads)
    if threads > 1:
        buffers.append(Buffer("thread-pool", THREAD_POOL_BYTES, 0, len(instances)))
    arena = plan(buffers, ALIGNMENT)
    weights, weight_offsets = _weight_blob(graph, instances)
    inputs = {n: i for i, n in enumerate(graph.inputs)}
    outputs = {n: i for i, n in enumerate(graph.outputs)}
    steps = []
    for index, inst in enumerate(instances):
        params, args, spans = [], [], []
        for arg in inst.arguments(graph):
            tensor = graph.tensor(arg.tensor)
            macro = tensor.dtype.value.upper()
            params.append(f"{_pointer(tensor.dtype, not arg.is_output)} {arg.role}")
            if arg.tensor in outputs:
                args.append(f"outputs[{outputs[arg.tensor]}]")
            elif arg.tensor in inputs:
                args.append(f"inputs[{inputs[arg.tensor]}]")
            elif tensor.is_constant:
                offset, nbytes = weight_offsets[(index, arg.tensor)]
                args.append(f"{macro}_WEIGHTS({offset})")
                spans.append((offset, nbytes))
            else:
                args.append(f"{macro}_ARENA({arena.offsets[arg.tensor]})")
        if inst.scratch_bytes(graph):
            params.append("void *restrict scratch")
            args.append(f"arena + {arena.offsets[f'scratch:{index}']}")
        if inst.routine.parallel:
            params += ["int part", "int parts"]
            args += ["part", "parts"] if threads > 1 else ["0", "1"]
        layer = inst.layer
        symbol = f"{name}_{index:03d}_{inst.routine.name.replace('-', '_')}"
        shapes = " ".join(format_shape(graph.shape(n)) for n in layer.present_inputs()
                          if not graph.is_constant(n))
        act = "" if layer.activation.is_identity else f" +{layer.activation.describe()}"
        comment = (f"{layer.name}: {layer.kind}{act} {shapes or '-'} -> "
                   f"{' '.join(format_shape(graph.shape(n)) for n in layer.outputs)}")
        steps.append(Step(inst, symbol, f"void {symbol}({', '.join(params)})", args, comment, weights=spans,
                          parallel=inst.routine.parallel and threads > 1))
    for step, after in zip(steps, steps[1:]):
        step.barrier_after = step.parallel or after.parallel
    io = {"inputs": _io(graph, graph.inputs), "outputs": _io(graph, graph.outputs)}
    return Program(name, graph, steps, arena, weights, io, threads)


# -- rendering --------------------------------------------------------------------------------

def _weights_rows(blob: bytes) -> str:
    rows = []
    for start in range(0, len(blob), 16):
        rows.append("    " + ", ".join(f"0x{b:02x}" for b in blob[start:start + 16]) + ",")
    return "\n".join(rows)


def routine_sources(program: Program, env: jinja2.Environment) -> tuple[dict[str, Any], dict[str, str]]:
    """The routine files and the internal header of a program, with the template values they used."""
    name = program.name
    for step in program.steps:
        ctx = step.instance.template_context(program.graph)
        ctx["signature"] = step.head
        ctx["symbol"] = step.symbol
        step.body = env.get_template(step.instance.routine.template).render(ctx).strip("\n")
    routines: dict[str, list[Step]] = {}
    for step in program.steps:
        routines.setdefault(step.instance.routine.name, []).append(step)
    groups = [{"name": r, "file": f"src/routines/{r.replace('-', '_')}.c", "steps": s,
               "headers": s[0].instance.routine.headers} for r, s in sorted(routines.items())]
    common = dict(name=name, NAME=name.upper(), version=__version__, routines=groups,
                  weights_size=len(program.weights), weights_align=ALIGNMENT)
    files = {g["file"]: env.get_template("project/routines.c.j2").render(common, routine=g) for g in groups}
    files[f"src/{name}_internal.h"] = env.get_template("project/internal.h.j2").render(common)
    return common, files


def render(program: Program, record_json: str, weights_mode: str = "incbin",
           cflags: tuple[str, ...] = ("-O2",)) -> dict[str, bytes]:
    """Every file of the project, as relative path -> bytes. `cflags`: the target's, the build files' default."""
    if weights_mode not in WEIGHT_MODES:
        raise OutputError(f"unknown weights mode '{weights_mode}' (choose from {', '.join(WEIGHT_MODES)})")
    env = environment()
    name = program.name
    common, routine_files = routine_sources(program, env)
    common.update(
        model_name=program.graph.name, steps=program.steps, arena_size=program.arena.size,
        arena_align=program.arena.alignment, weights_mode=weights_mode, target_cflags=" ".join(cflags),
        inputs=program.io["inputs"], outputs=program.io["outputs"],
        max_rank=max(len(io["shape"]) for io in program.io["inputs"] + program.io["outputs"]),
        threads=program.threads,
        pool_offset=program.arena.offsets.get("thread-pool", 0), pool_bytes=THREAD_POOL_BYTES,
    )
    sources = [f"src/{name}.c"] + [g["file"] for g in common["routines"]]
    if program.weights:
        sources.append(f"src/{name}_weights.c")
    common["sources"] = sources

    files: dict[str, str | bytes] = {
        f"include/{name}.h": env.get_template("project/model.h.j2").render(common),
        f"src/{name}.c": env.get_template("project/model.c.j2").render(common),
        "Makefile": env.get_template("project/Makefile.j2").render(common),
        "CMakeLists.txt": env.get_template("project/CMakeLists.txt.j2").render(common),
        "example/main.c": env.get_template("project/example_main.c.j2").render(common),
        "tuning.json": record_json,
        **routine_files,
    }
    if program.threads > 1:
        files["src/ng_threads.h"] = (RUNTIME_C / "ng_threads.h").read_text()
    if program.weights:
        if weights_mode == "incbin":
            files[f"src/{name}_weights.c"] = env.get_template("project/weights_incbin.c.j2").render(common)
            files[f"src/{name}_weights.bin"] = program.weights
        else:
            files[f"src/{name}_weights.c"] = env.get_template("project/weights_array.c.j2").render(
                common, weights_rows=_weights_rows(program.weights))
    return {path: data if isinstance(data, bytes) else data.encode() for path, data in files.items()}


# -- writing ----------------------------------------------------------------------------------

def write_project(files: dict[str, bytes], out_dir: str | os.PathLike) -> Path:
    """Write the project to `out_dir` all at once: a sibling temporary folder, then a rename.

    An existing `out_dir` is replaced only after the new one is complete, so a failure
    leaves either the old project or nothing, never a half-written one.
    """
    out = Path(out_dir).absolute()
    parent = out.parent
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; choose another output path")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the output folder ({exc.strerror}); "
                          "choose a writable location with -o") from None
    try:
        for rel, data in sorted(files.items()):
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        os.chmod(tmp, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=parent))
            os.rename(out, old / "project")
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"{out}: cannot write the project ({exc.strerror or exc})") from None
    return out
