"""Lowering (memory plan, weight blob, call schedule) and the project writer.

All C comes from Jinja templates under templates/; this module only computes the
values they need. The output is a dict of relative path -> bytes, identical for
identical inputs, written atomically by `write_project`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from . import __version__
from .errors import OutputError
from .escape import c_comment, c_string, cmake_words, json_text, make_words, name_comment
from .ir import DType, Graph, Layer, Layout, format_shape, memory_shape
from .memory import ALIGNMENT, Alias, ArenaPlan, Buffer, align_up, plan, resolve
from .paths import RUNTIME_C, TEMPLATES
from .routines import RoutineInstance
from .routines.data import concat_context
from .routines.loops import physical_nbytes
from .routines.registry import step_parts
from .routines.specialize import CExpr, ShapeArgs, as_float, signed, unsigned
from .targets import isa_need

WEIGHT_MODES = ("incbin", "c-array")


# -- Jinja ------------------------------------------------------------------------------------

def c_float(value: float | CExpr) -> str:
    """An exact C literal for the float32 nearest `value` (for a shape argument, a conversion)."""
    if isinstance(value, CExpr):
        return as_float(value)
    v = np.float32(value)
    if np.isnan(v):
        return "NAN"
    if np.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    text = str(v)
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def digest(text: str) -> str:
    """A short name-safe hash of generated text (identical text, identical name, on every machine)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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
    env.filters.update(cf=c_float, cstring=c_string, comment=c_comment, name_comment=name_comment,
                       make_words=make_words, cmake_words=cmake_words, signed=signed, unsigned=unsigned, digest=digest)
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
    parallel: bool = False  # takes (part, parts) and runs on several threads (`parts` of them)
    barrier_after: bool = False  # threads meet after it (it or the next step runs on several)
    params: list[str] = field(default_factory=list)  # the C parameters of its head
    shared: bool = False  # takes its shapes as arguments; one function serves every step with the same code
    parts: int = 1  # the threads it runs on: 0 .. parts - 1 call it (registry.step_parts); 1 is thread 0 alone


@dataclass(frozen=True)
class Function:
    """One C function of a routine file: a step's own, or one that several steps share."""

    symbol: str
    head: str
    body: str
    comment: str


@dataclass
class Program:
    name: str
    graph: Graph
    steps: list[Step]
    arena: ArenaPlan
    weights: bytes
    io: dict[str, list[dict[str, Any]]]
    threads: int = 1
    in_place: list[str] = field(default_factory=list)  # concat layers whose inputs were written into their output


def _io(graph: Graph, names: list[str]) -> list[dict[str, Any]]:
    """The caller's view of each buffer: `shape` in memory order (N, H, W, C for an NHWC tensor).

    The IR's shapes are logical NCHW; the header, the C tables, tuning.json and codegen.runtime all
    show what the caller's buffer holds. `order` tells readers of older records, whose shape was NCHW.
    """
    def entry(name: str) -> dict[str, Any]:
        tensor = graph.tensor(name)
        return {"name": name, "shape": list(memory_shape(tensor)), "size": tensor.size, "dtype": tensor.dtype.value,
                "layout": tensor.layout.value, "order": "memory"}

    return [entry(n) for n in names]


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


def _buffers(graph: Graph, instances: list[RoutineInstance], threads: int = 1,
             outside: frozenset[str] = frozenset()) -> list[Buffer]:
    """Arena buffers: intermediate tensors from producer to last reader, scratch for one step.

    `outside`: intermediate tensors that live in a caller's buffer (in place inside a graph output)."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    external = set(graph.inputs) | set(graph.outputs) | outside
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
            nbytes *= step_parts(inst, threads)
        if nbytes:
            scratch.append(Buffer(f"scratch:{step}", nbytes, step, step))
    # A tensor in a blocked layout (NCHW16C ...) takes its padded size.
    tensors = [Buffer(n, physical_nbytes(graph.tensor(n)), first[n], last[n]) for n in first]
    return tensors + scratch


def _pointer(dtype: DType, const: bool) -> str:
    return f"{'const ' if const else ''}{dtype.c_type} *restrict"


# Arena bytes kept for the thread pool of a model built for several threads (runtime_c/ng_threads.h:
# the pool and its workers; the C code checks that they fit).
THREAD_POOL_BYTES = 4096


# -- in-place concatenation -------------------------------------------------------------------

@dataclass
class InPlace:
    """Concatenations done in place: their inputs are written straight into their output."""

    aliases: dict[str, Alias] = field(default_factory=dict)  # each input -> where in the concat's output it is
    elided: dict[int, str] = field(default_factory=dict)  # instance index -> name of the concat layer dropped


def in_place_concats(graph: Graph, instances: list[RoutineInstance]) -> InPlace:
    """The concats the planner can do without a copy: each input is one contiguous chunk of the output (every
    axis before the concat axis, in memory order, has extent 1) and an intermediate tensor that only the
    concat reads, so its producer may as well write it where the concat would have copied it."""
    readers = Counter(name for inst in instances for name in inst.layer.present_inputs())
    produced = {name for inst in instances for name in inst.layer.outputs}
    external = set(graph.inputs) | set(graph.outputs)

    def private(name: str) -> bool:  # one reading slot: a tensor concatenated twice is not private either
        return name in produced and name not in external and readers[name] == 1

    result = InPlace()
    for index, inst in enumerate(instances):
        layer = inst.layer
        if layer.kind != "concat" or not all(map(private, layer.inputs)) or not _contiguous_chunks(layer, graph):
            continue
        out = layer.outputs[0]
        itemsize = graph.tensor(out).dtype.numpy.itemsize
        for name, chunk in zip(layer.inputs, concat_context(layer, graph, inst.params)["chunks"], strict=True):
            result.aliases[name] = Alias(name, out, chunk["offset"] * itemsize)
        result.elided[index] = layer.name
    return result


def _contiguous_chunks(layer: Layer, graph: Graph) -> bool:
    """Whether each input of a concat is one contiguous run of its output's memory."""
    out = graph.tensor(layer.outputs[0])
    if out.layout not in (Layout.ANY, Layout.NCHW, Layout.NHWC):  # the layouts concat_context understands
        return False
    if any(graph.tensor(n).layout != out.layout or graph.tensor(n).dtype != out.dtype for n in layer.inputs):
        return False
    return concat_context(layer, graph, {})["outer"] == 1


# -- the schedule -----------------------------------------------------------------------------

@dataclass
class _Places:
    """Where the tensors of a lowered graph are: the caller's input and output buffers, the weights, the arena."""

    graph: Graph
    arena: ArenaPlan
    weights: dict[tuple[int, str], tuple[int, int]]
    in_place: dict[str, tuple[str, int]]  # tensors inside another tensor: (that tensor, byte offset)

    def pointer(self, name: str, index: int) -> tuple[str, tuple[int, int] | None]:
        """The C expression of tensor `name` as step `index` passes it, and the weight span it reads."""
        tensor = self.graph.tensor(name)
        macro = tensor.dtype.value.upper()
        root, offset = self.in_place.get(name, (name, 0))
        if root in self.graph.outputs or root in self.graph.inputs:
            slot = f"outputs[{self.graph.outputs.index(root)}]" if root in self.graph.outputs \
                else f"inputs[{self.graph.inputs.index(root)}]"
            return (f"{slot} + {offset // tensor.dtype.numpy.itemsize}" if offset else slot), None
        if tensor.is_constant:
            start, nbytes = self.weights[(index, name)]
            return f"{macro}_WEIGHTS({start})", (start, nbytes)
        return f"{macro}_ARENA({self.arena.offsets[name]})", None


def _step(inst: RoutineInstance, index: int, places: _Places, name: str, threads: int) -> Step:
    graph = places.graph
    params, args, spans = [], [], []
    for arg in inst.arguments(graph):
        tensor = graph.tensor(arg.tensor)
        params.append(f"{_pointer(tensor.dtype, not arg.is_output)} {arg.role}")
        pointer, span = places.pointer(arg.tensor, index)
        args.append(pointer)
        if span:
            spans.append(span)
    if inst.scratch_bytes(graph):
        params.append("void *restrict scratch")
        args.append(f"arena + {places.arena.offsets[f'scratch:{index}']}")
    parts = step_parts(inst, threads)
    if inst.routine.parallel:
        params += ["int part", "int parts"]
        args += _part_args(parts, threads)
    layer = inst.layer
    symbol = f"{name}_{index:03d}_{_ident(inst.routine.name)}"
    shapes = " ".join(format_shape(graph.shape(n)) for n in layer.present_inputs() if not graph.is_constant(n))
    act = "" if layer.activation.is_identity else f" +{layer.activation.describe()}"
    comment = (f"{name_comment(layer.name)}: {layer.kind}{act} {shapes or '-'} -> "
               f"{' '.join(format_shape(graph.shape(n)) for n in layer.outputs)}")
    return Step(inst, symbol, _head(symbol, params), args, comment, weights=spans,
                parallel=parts > 1, params=params, parts=parts)


def _part_args(parts: int, threads: int) -> list[str]:
    """The (part, parts) a parallel routine is called with when it runs on `parts` of the build's `threads`.

    One part: thread 0 calls it alone. All: `parts`, the pool's count (fewer than `threads` where the system
    refused threads). Some: that many, or the pool's count where that is less (threads `part` < it call)."""
    if parts <= 1:
        return ["0", "1"]
    if parts >= threads:
        return ["part", "parts"]
    return ["part", f"({parts} < parts ? {parts} : parts)"]


def _ident(routine_name: str) -> str:
    return routine_name.replace("-", "_")


def _head(symbol: str, params: list[str]) -> str:
    return f"void {symbol}({', '.join(params)})"


def lower(graph: Graph, instances: list[RoutineInstance], name: str, threads: int = 1, *,
          in_place_concat: bool = True, env: jinja2.Environment | None = None) -> Program:
    """The schedule of `instances` on `graph`: arena plan, weight blob, and every step's call and C code.

    `in_place_concat`: let producers write a concat's inputs straight into its output where they can
    (`in_place_concats`); the concat then emits nothing."""
    in_place = in_place_concats(graph, instances) if in_place_concat else InPlace()
    roots = {n: resolve(in_place.aliases, n) for n in in_place.aliases}
    external = set(graph.inputs) | set(graph.outputs)
    outside = frozenset(n for n, (root, _) in roots.items() if root in external)
    buffers = _buffers(graph, instances, threads, outside)
    if threads > 1:
        buffers.append(Buffer("thread-pool", THREAD_POOL_BYTES, 0, len(instances)))
    arena = plan(buffers, ALIGNMENT, [a for n, a in in_place.aliases.items() if n not in outside])
    weights, weight_offsets = _weight_blob(graph, instances)
    places = _Places(graph, arena, weight_offsets, roots)
    steps = [_step(inst, index, places, name, threads) for index, inst in enumerate(instances)
             if index not in in_place.elided]
    # Threads meet where a step may read what another thread wrote, or write what another still reads: on
    # either side of a step that runs on several. A run of one-thread steps all runs on thread 0, in order.
    for step, after in zip(steps, steps[1:]):
        step.barrier_after = step.parallel or after.parallel
    _render_steps(steps, graph, name, env or environment())
    io = {"inputs": _io(graph, graph.inputs), "outputs": _io(graph, graph.outputs)}
    return Program(name, graph, steps, arena, weights, io, threads, in_place=list(in_place.elided.values()))


# Stand-ins for a shared function's name and head while its code is rendered (they are not known until
# the code is compared with the other functions').
_SYMBOL_MARK, _SIGNATURE_MARK = "@ng-symbol@", "@ng-signature@"


def _render_body(env: jinja2.Environment, inst: RoutineInstance, graph: Graph, signature: str, symbol: str,
                 shape_args: ShapeArgs | None = None) -> str:
    ctx = inst.template_context(graph, shape_args)
    ctx["signature"] = signature
    ctx["symbol"] = symbol
    return env.get_template(inst.routine.template).render(ctx).strip("\n")


def _render_steps(steps: list[Step], graph: Graph, name: str, env: jinja2.Environment) -> None:
    """Every step's C code. A step with shapes=args gets its shape values as `size_t` arguments, and steps of
    one routine whose code comes out the same share one function, `{name}_{routine}_{n}` (n numbered by
    first use), called with their own values."""
    shared: dict[tuple[str, tuple[str, ...], str], str] = {}
    numbers: Counter[str] = Counter()
    for step in steps:
        shape_args = step.instance.shape_args(graph)
        if shape_args is None:
            step.body = _render_body(env, step.instance, graph, step.head, step.symbol)
            continue
        body = _render_body(env, step.instance, graph, _SIGNATURE_MARK, _SYMBOL_MARK, shape_args)
        routine = step.instance.routine.name
        params = [*step.params, *shape_args.parameters()]
        key = (routine, tuple(params), body)
        if key not in shared:
            shared[key] = f"{name}_{_ident(routine)}_{numbers[routine]}"
            numbers[routine] += 1
        step.symbol, step.params, step.shared = shared[key], params, True
        step.head = _head(step.symbol, params)
        step.args = [*step.args, *shape_args.arguments()]
        step.body = body.replace(_SIGNATURE_MARK, step.head).replace(_SYMBOL_MARK, step.symbol)


# -- rendering --------------------------------------------------------------------------------

def _weights_rows(blob: bytes) -> str:
    rows = []
    for start in range(0, len(blob), 16):
        rows.append("    " + ", ".join(f"0x{b:02x}" for b in blob[start:start + 16]) + ",")
    return "\n".join(rows)


def routine_sources(program: Program, env: jinja2.Environment) -> tuple[dict[str, Any], dict[str, str]]:
    """The routine files and the internal header of a program, with the template values they used."""
    name = program.name
    routines: dict[str, list[Step]] = {}
    for step in program.steps:
        routines.setdefault(step.instance.routine.name, []).append(step)
    groups = [{"name": r, "file": f"src/routines/{_ident(r)}.c", "steps": s, "functions": _functions(s),
               "shared": any(step.shared for step in s), "headers": s[0].instance.routine.headers}
              for r, s in sorted(routines.items())]
    needs = [step.instance.routine.requires or {step.instance.routine.isa} for step in program.steps]
    common = dict(name=name, NAME=name.upper(), version=__version__, routines=groups,
                  weights_size=len(program.weights), weights_align=ALIGNMENT, isa=isa_need(set().union(*needs)))
    files = {g["file"]: env.get_template("project/routines.c.j2").render(common, routine=g) for g in groups}
    files[f"src/{name}_internal.h"] = env.get_template("project/internal.h.j2").render(common)
    return common, files


def _functions(steps: list[Step]) -> list[Function]:
    """The C functions the steps of one routine call, in order of first call."""
    calls: dict[str, list[Step]] = {}
    for step in steps:
        calls.setdefault(step.symbol, []).append(step)
    functions = []
    for symbol, callers in calls.items():
        first = callers[0]
        comment = first.comment if not first.shared else \
            f"shapes as arguments; called for {'; '.join(step.comment for step in callers)}"
        functions.append(Function(symbol, first.head, first.body, comment))
    return functions


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
        arena_align=program.arena.alignment, weights_mode=weights_mode,
        target_flags=list(cflags),  # each build file quotes them its own way (make_words, cmake_words)
        inputs=program.io["inputs"], outputs=program.io["outputs"],
        max_rank=max(len(io["shape"]) for io in program.io["inputs"] + program.io["outputs"]),
        threads=program.threads, in_place=[name_comment(n) for n in program.in_place],
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

MANIFEST = ".neurogen-manifest.json"
MANIFEST_FORMAT = "neurogen-manifest"


def manifest_bytes(files: dict[str, bytes]) -> bytes:
    """The manifest neurogen keeps in every project it writes: each file it wrote, with its SHA-256.
    It is how a later compile tells neurogen's files from the user's."""
    digests = {rel: hashlib.sha256(data).hexdigest() for rel, data in sorted(files.items())}
    return json_text({"format": MANIFEST_FORMAT, "version": 1, "tool": f"neurogen {__version__}",
                      "files": digests}).encode() + b"\n"


def read_manifest(folder: Path) -> dict[str, str] | None:
    """The files (relative path -> SHA-256) the manifest in `folder` lists, or None without a valid one."""
    path = folder / MANIFEST
    try:
        if path.is_symlink() or not path.is_file():
            return None
        data = json.loads(path.read_text())
        files = data["files"]
        if data.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            return None
        return {str(k): str(v) for k, v in files.items() if _safe_relative(str(k))}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _safe_relative(rel: str) -> bool:
    parts = Path(rel).parts
    return bool(parts) and not Path(rel).is_absolute() and ".." not in parts


@dataclass
class _Survey:
    """What is in an existing output folder, measured against its manifest."""

    ours: list[str] = field(default_factory=list)  # files neurogen wrote, unchanged since
    edited: list[str] = field(default_factory=list)  # files neurogen wrote, changed (or replaced) since
    kept: list[str] = field(default_factory=list)  # the user's entries (files, links, folders): moved over


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _survey(out: Path, manifest: dict[str, str]) -> _Survey:
    listed_dirs = {str(p) for rel in manifest for p in Path(rel).parents}  # folders holding neurogen's files
    survey = _Survey()

    def visit(folder: Path, rel_folder: str) -> None:
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            rel = f"{rel_folder}/{entry.name}" if rel_folder else entry.name
            if rel == MANIFEST:
                continue
            if entry.is_symlink():
                (survey.edited if rel in manifest else survey.kept).append(rel)
            elif entry.is_dir():
                if rel in listed_dirs:
                    visit(Path(entry.path), rel)
                else:
                    survey.kept.append(rel)  # a folder of the user's (or a build folder): moved whole
            elif rel in manifest:
                (survey.ours if _sha256(Path(entry.path)) == manifest[rel] else survey.edited).append(rel)
            else:
                survey.kept.append(rel)

    visit(out, "")
    return survey


def _examples(paths: list[str], limit: int = 5) -> str:
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more


def write_project(files: dict[str, bytes], out_dir: str | os.PathLike, *, force: bool = False) -> Path:
    """Write the project to `out_dir` all at once: a sibling temporary folder, then a rename.

    Nothing neurogen did not write is ever deleted or overwritten:
    - a new or empty `out_dir` is simply written;
    - an existing `out_dir` without neurogen's manifest (a folder of the user's: `-o .`, the folder of the
      model, a source tree) is refused;
    - in a project neurogen wrote, the files it wrote are replaced, and everything else in the folder (the
      user's files, build folders) is moved into the new project untouched. Files neurogen wrote that were
      edited since are replaced only with `force`; a file of the user's where the new project has one is
      always refused.
    A failure leaves either the old project or the new one, never a half-written one.
    """
    out = _output_path(out_dir)
    parent = out.parent
    files = {**files, MANIFEST: manifest_bytes(files)}
    survey = _check_existing(out, files, force) if out.exists() else _Survey()
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name[:40]}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the output folder ({exc.strerror}); "
                          "choose a writable location with -o") from None
    moved: list[str] = []
    old: Path | None = None
    try:
        for rel, data in sorted(files.items()):
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        os.chmod(tmp, 0o755)
        if not out.exists():
            os.rename(tmp, out)
            return out
        for rel in survey.kept:  # the user's entries go into the new project, as they are
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            os.rename(out / rel, tmp / rel)
            moved.append(rel)
        old = Path(tempfile.mkdtemp(prefix=f".{out.name[:40]}.", suffix=".old", dir=parent))
        os.rename(out, old / "project")
        os.rename(tmp, out)
        moved.clear()  # they are in the new project now
        shutil.rmtree(old, ignore_errors=True)  # only files neurogen wrote are left in it
    except BaseException as exc:  # Ctrl-C too: put the old project and the user's entries back
        if old is not None and not out.exists() and (old / "project").exists():
            with contextlib.suppress(OSError):
                os.rename(old / "project", out)
                old.rmdir()
        restored = True
        for rel in reversed(moved):
            try:
                os.rename(tmp / rel, out / rel)
            except OSError:
                restored = False
        if restored:  # never delete the temporary folder while it may still hold a file of the user's
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise OutputError(f"{out}: cannot write the project ({exc.strerror or exc})") from None
        raise
    return out


def check_output_folder(out_dir: str | os.PathLike, *, force: bool = False) -> None:
    """Refuse early (before any tuning) an output folder that `write_project` would refuse."""
    out = _output_path(out_dir)
    if out.exists():
        _check_existing(out, {}, force)


NAME_MAX_BYTES = 255  # a path component, on Linux, macOS and Windows file systems alike


def _output_path(out_dir: str | os.PathLike) -> Path:
    """The absolute output path, refused when it cannot name a folder of ours."""
    out = Path(out_dir).absolute()
    for part in out.parts:
        if len(os.fsencode(part)) > NAME_MAX_BYTES:
            raise OutputError(f"{out}: the path component {part[:40]!r}... is {len(os.fsencode(part))} bytes; "
                              f"file systems allow {NAME_MAX_BYTES}. Choose a shorter output path")
    try:
        if out.is_symlink() or (out.exists() and not out.is_dir()):
            raise OutputError(f"{out}: exists and is not a folder; choose another output path")
    except OSError as exc:
        raise OutputError(f"{out}: cannot use this output path ({exc.strerror})") from None
    return out


def _check_existing(out: Path, files: dict[str, bytes], force: bool) -> _Survey:
    """Whether an existing `out` may be replaced (see write_project); what to keep of it."""
    try:
        empty = not any(os.scandir(out))
    except OSError as exc:
        raise OutputError(f"{out}: cannot read the existing folder ({exc.strerror})") from None
    if empty:
        return _Survey()
    manifest = read_manifest(out)
    if manifest is None:
        raise OutputError(f"{out}: the folder exists and was not written by neurogen (it has no {MANIFEST}); "
                          "nothing in it is touched. Give -o a new or empty folder")
    survey = _survey(out, manifest)
    clashes = [rel for rel in survey.kept if rel in files or any(f.startswith(rel + "/") for f in files)]
    if clashes:
        raise OutputError(f"{out}: {_examples(clashes)} would be overwritten but neurogen did not write "
                          "it; move it away, or give -o another folder")
    if survey.edited and not force:
        raise OutputError(f"{out}: {_examples(survey.edited)} changed since neurogen wrote it; "
                          "--force replaces it (the files neurogen did not write are kept either way)")
    return survey
