"""The routine registry: every implementation of every layer kind, declared once.

A `Routine` is data plus a template. Tests, the profiler, DPRS and the docs all
iterate over `REGISTRY`; adding a routine is one `register(Routine(...))` call in
the module of its layer family.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
import jinja2.meta
import numpy as np

from ..errors import RoutineError
from ..ir import DType, Graph, Layer, Layout
from ..paths import TEMPLATES
from .specialize import SHAPE_MODES, SHAPES, ShapeArgs

Params = Mapping[str, Any]
Predicate = Callable[[Layer, Graph], bool]
ContextFn = Callable[[Layer, Graph, Params], dict[str, Any]]
ScratchFn = Callable[[Layer, Graph, Params], int]
PackFn = Callable[[Layer, Graph, Params], list[np.ndarray | None]]


def _always(layer: Layer, graph: Graph) -> bool:
    return True


def _no_scratch(layer: Layer, graph: Graph, params: Params) -> int:
    return 0


def _no_context(layer: Layer, graph: Graph, params: Params) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Routine:
    """One implementation of a layer kind. Its name is built from its fields."""

    kind: str
    algorithm: str
    template: str  # path under templates/
    dtype: DType = DType.F32
    # Layouts its 4-D activations may be in (one instance per layout); ANY means row-major
    # (which is NCHW for 4-D tensors) and is what routines on flat tensors declare.
    layouts: tuple[Layout, ...] = (Layout.ANY,)
    isa: str = "scalar"  # the instruction set it is written for (in its name)
    requires: frozenset[str] = frozenset()  # target features it needs (default: {isa})
    headers: tuple[str, ...] = ()  # system headers its code includes (intrinsics)
    device: str = "cpu"
    params: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # tunable space
    accepts: Predicate = _always  # which layers it can implement
    context: ContextFn = _no_context  # template variables beyond the kind's own
    scratch: ScratchFn = _no_scratch  # arena bytes it needs while it runs
    pack: PackFn | None = None  # compile-time transform of its constant inputs
    roles: tuple[str, ...] = ()  # C argument names of its inputs ('x0', 'x1'... when empty)
    # Splits its work: takes (int part, int parts) and computes its share, so a model built for
    # several threads runs it on all of them (the others run on one).
    parallel: bool = False
    # Each part needs its own `scratch` bytes (a model for N threads keeps N copies, the routine
    # finds its own at scratch + part * bytes).
    scratch_per_part: bool = False
    # Its error bound (max |error| / max |reference|) when looser than the profiler's and the tests'
    # defaults: Winograd F(4x4)'s transforms round more than a direct sum does.
    tolerance: float | None = None
    # Adds a residual operand (a conv2d's 4th input, from passes.fuse_residual_add) before the activation.
    # Layers with one only get routines that do.
    fuses_residual: bool = False
    # Context keys (whole numbers: loop bounds, index arithmetic) its template can take as `size_t`
    # arguments instead of constants. Declaring any adds the parameter `shapes` ("const", "args"):
    # see codegen.routines.specialize.
    shape_args: tuple[str, ...] = ()
    # Target features under which another routine does the same work strictly faster (a 256-bit GEMM on a
    # core with 512-bit FMAs): tuning does not measure it there; the routine tests still run it.
    superseded_by: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.shape_args and SHAPES not in self.params:
            object.__setattr__(self, "params", {**self.params, SHAPES: SHAPE_MODES})

    @property
    def name(self) -> str:
        parts = [self.dtype.value, self.kind.replace("_", "")]
        if len(self.layouts) == 1 and self.layouts[0] is not Layout.ANY:
            parts.append(self.layouts[0].value)
        parts += [self.algorithm, self.isa]
        if self.device != "cpu":
            parts.append(self.device)
        return "-".join(parts)

    def parameter_space(self) -> Iterator[dict[str, Any]]:
        keys = sorted(self.params)
        for values in itertools.product(*(self.params[k] for k in keys)):
            yield dict(zip(keys, values))

    def default_params(self) -> dict[str, Any]:
        """The first value of every parameter: the instance that stands in for the routine (its reference)."""
        return {k: values[0] for k, values in sorted(self.params.items())}

    @property
    def has_shape_switch(self) -> bool:
        """Whether it has the `shapes` parameter (shapes as constants or as arguments)."""
        return bool(self.shape_args)

    def template_source(self) -> str:
        return (TEMPLATES / self.template).read_text()

    def template_hash(self) -> str:
        """The hash of its template and of every template that one imports or includes (the profile cache's
        key: a change to a shared macro must measure again)."""
        digest = hashlib.sha256()
        for name in template_closure(self.template):
            digest.update(name.encode() + b"\0" + (TEMPLATES / name).read_bytes() + b"\0")
        return digest.hexdigest()[:16]


@functools.cache
def template_closure(name: str) -> tuple[str, ...]:
    """`name` and the templates it imports or includes, transitively, sorted."""
    env = jinja2.Environment(extensions=["jinja2.ext.do"])  # the tags emit.environment() allows
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        ast = env.parse((TEMPLATES / current).read_text())
        todo += [ref for ref in jinja2.meta.find_referenced_templates(ast) if ref is not None]
    return tuple(sorted(seen))


@dataclass(frozen=True)
class Argument:
    role: str  # the C parameter name
    tensor: str  # the graph tensor bound to it
    is_output: bool = False


@dataclass
class RoutineInstance:
    """A routine with its parameters bound, applied to one layer of one graph."""

    routine: Routine
    layer: Layer
    params: dict[str, Any]

    def arguments(self, graph: Graph) -> list[Argument]:
        roles = self.routine.roles
        args = []
        for i, name in enumerate(self.layer.inputs):
            if name:
                role = roles[i] if i < len(roles) else f"x{i}"
                args.append(Argument(role, name))
        outs = ("y",) if len(self.layer.outputs) == 1 else tuple(f"y{i}" for i in range(len(self.layer.outputs)))
        args += [Argument(role, name, True) for role, name in zip(outs, self.layer.outputs)]
        return args

    def scratch_bytes(self, graph: Graph) -> int:
        return int(self.routine.scratch(self.layer, graph, self.params))

    def packed_constants(self, graph: Graph) -> dict[str, np.ndarray]:
        """Constant inputs as the routine wants them in the weight blob, keyed by tensor name."""
        values = {n: graph.tensor(n).data for n in self.layer.present_inputs() if graph.is_constant(n)}
        if self.routine.pack is not None:
            for name, packed in zip(self.layer.inputs, self.routine.pack(self.layer, graph, self.params)):
                if name and packed is not None:
                    values[name] = packed
        return values

    @property
    def shapes_as_args(self) -> bool:
        return self.routine.has_shape_switch and self.params.get(SHAPES, SHAPE_MODES[0]) == "args"

    def shape_args(self, graph: Graph) -> ShapeArgs | None:
        """With shapes=args: the shape values it takes as arguments (None: all are constants)."""
        if not self.shapes_as_args:
            return None
        return ShapeArgs(self.routine.context(self.layer, graph, self.params), self.routine.shape_args)

    def template_context(self, graph: Graph, shape_args: ShapeArgs | None = None) -> dict[str, Any]:
        """The template's variables; with `shape_args`, its shape values are symbols (C identifiers)."""
        ctx: dict[str, Any] = dict(self.params)
        ctx.update(self.routine.context(self.layer, graph, self.params))
        if shape_args is not None:
            ctx.update(shape_args.symbols)
        ctx["layer"] = self.layer
        ctx["activation"] = self.layer.activation
        ctx["in_shapes"] = [graph.shape(n) for n in self.layer.present_inputs()]
        ctx["out_shapes"] = [graph.shape(n) for n in self.layer.outputs]
        return ctx


# The parameter a parallel routine's instance gets in a model built for several threads: how many of them
# it runs on (its parts). A small layer is faster on one than split, which costs a barrier; tuning measures
# each value like a tile size. Absent (references, one-thread builds): all of the build's threads.
THREADS = "threads"
MAX_THREADS = 64  # runtime_c/ng_threads.h NG_MAX_THREADS (codegen.compiler checks --threads against it)


def thread_counts(threads: int) -> tuple[int, ...]:
    """The values of the `threads` parameter in a build for `threads` threads (none for one): every count up to
    4, then the powers of two below it and the count itself."""
    if threads <= 1:
        return ()
    if threads <= 4:
        return tuple(range(1, threads + 1))
    return (*(1 << i for i in range(threads.bit_length()) if 1 << i < threads), threads)


def step_parts(instance: RoutineInstance, threads: int) -> int:
    """The threads an instance runs on in a build for `threads`: its `threads` parameter (at most the build's),
    all of them without one, and 1 for a routine that does not split its work."""
    if not instance.routine.parallel or threads <= 1:
        return 1
    return max(1, min(int(instance.params.get(THREADS, threads)), threads))


REGISTRY: list[Routine] = []


def register(routine: Routine) -> Routine:
    if any(r.name == routine.name for r in REGISTRY):
        raise ValueError(f"routine {routine.name} is declared twice")
    REGISTRY.append(routine)
    return routine


def by_name(name: str) -> Routine:
    for routine in REGISTRY:
        if routine.name == name:
            return routine
    raise RoutineError(f"no routine named '{name}'; see `neurogen routines` for the list")


def candidates(layer: Layer, graph: Graph, isa: frozenset[str] = frozenset({"scalar"}),
               devices: frozenset[str] = frozenset({"cpu"}), superseded: bool = False) -> list[Routine]:
    """Routines that can implement `layer` on a target with these ISA features and devices (with
    `superseded`, also those another routine outdoes there)."""
    dtypes = {graph.tensor(n).dtype for n in [*layer.present_inputs(), *layer.outputs] if not graph.is_constant(n)}
    return [r for r in REGISTRY
            if r.kind == layer.kind and (r.requires or {r.isa}) <= isa and r.device in devices
            and (superseded or not r.superseded_by or not r.superseded_by <= isa)
            and dtypes <= {r.dtype} and (r.fuses_residual or not has_residual(layer)) and r.accepts(layer, graph)]


def has_residual(layer: Layer) -> bool:
    """A conv2d with a residual operand fused into it (its 4th input)."""
    return layer.kind == "conv2d" and len(layer.inputs) > 3 and bool(layer.inputs[3])


def reference_routine(layer: Layer, graph: Graph) -> Routine:
    """The portable `*-ref-scalar` routine for a layer: the fallback on any C99 compiler."""
    for routine in candidates(layer, graph):
        if routine.algorithm == "ref" and (Layout.ANY in routine.layouts or Layout.NCHW in routine.layouts):
            return routine
    kinds = sorted({r.kind for r in REGISTRY})
    if layer.kind in ("gather", "cast", "shape_of"):
        raise RoutineError(
            f"layer '{layer.name}' ({layer.kind}) works on values only known at run time; neurogen "
            "supports this operator only where it computes shapes from constants")
    raise RoutineError(f"layer '{layer.name}' ({layer.kind}) has no routine that accepts it; "
                       f"layer kinds with routines: {', '.join(kinds)}")
