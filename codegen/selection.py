"""From a routine choice per layer to a concrete graph: physical layouts and adapt layers.

A `Selection` says how one layer runs: routine, parameters, and the layout of its
4-D activations. `materialize` applies a selection to every layer and returns a
graph in which every tensor has one physical layout and every conversion is an
explicit `layout` layer (an adapt routine), made once per tensor and format and
shared by every reader that wants it. The emitter then needs no notion of formats.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import RoutineError
from .ir import Graph, Layer, Layout, Tensor
from .routines import Routine, RoutineInstance, candidates, reference_routine
from .routines.specialize import SHAPES

# The layouts graph inputs and outputs come in, and the blocked ones (NCHW16C ...) that only live between
# routines; every 4-D layout is one of them.
NATIVE_LAYOUTS = (Layout.NCHW, Layout.NHWC)
BLOCKED_LAYOUTS = tuple(layout for layout in Layout if layout.is_blocked)
SPATIAL_LAYOUTS = NATIVE_LAYOUTS + BLOCKED_LAYOUTS


def bind(layout: Layout, rank: int) -> Layout:
    """The physical layout of a tensor of `rank` under a routine bound to `layout` (ANY: row-major, NCHW)."""
    if rank != 4:
        return Layout.ANY
    return Layout.NCHW if layout is Layout.ANY else layout


def native_layout(tensor: Tensor) -> Layout:
    """The layout a graph input arrives in, or a graph output must leave in (never a blocked one)."""
    layout = bind(tensor.layout, len(tensor.shape))
    return Layout.NCHW if layout.is_blocked else layout


@dataclass(frozen=True)
class Selection:
    routine: Routine
    layout: Layout = Layout.ANY
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Names the routine instance: routine, layout binding and parameters."""
        params = "".join(f",{k}={v}" for k, v in sorted(self.params.items()))
        layout = "" if self.layout is Layout.ANY else f"@{self.layout.value}"
        return f"{self.routine.name}{layout}{params}"

    def input_layouts(self, layer: Layer, graph: Graph) -> list[Layout]:
        """Physical layout wanted for each run-time input of `layer` (constants are packed instead)."""
        if layer.kind == "layout":  # an adapt: its attributes say both sides
            return [layer.attrs["src"]]
        return [bind(self.layout, len(graph.shape(n))) for n in activation_inputs(layer, graph)]

    def output_layout(self, layer: Layer, graph: Graph) -> Layout:
        if layer.kind == "layout":
            return layer.attrs["dst"]
        return bind(self.layout, len(graph.shape(layer.outputs[0])))


def activation_inputs(layer: Layer, graph: Graph) -> list[str]:
    return [n for n in layer.present_inputs() if not graph.is_constant(n)]


def selections_for(layer: Layer, graph: Graph, isa: frozenset[str] = frozenset({"scalar"}),
                   devices: frozenset[str] = frozenset({"cpu"}), code_size: str = "fast",
                   superseded: bool = False) -> list[Selection]:
    """Every (routine, layout, parameters) that can implement `layer` on such a target (with `code_size`
    "small", routines that can take their shapes as arguments only do; with `superseded`, also routines
    another one outdoes there, which tuning skips)."""
    result = []
    for routine in candidates(layer, graph, isa, devices, superseded):
        for layout in routine.layouts:
            for params in routine.parameter_space():
                if fits_code_size(routine, params, code_size):
                    result.append(Selection(routine, layout, params))
    return result


# What `--code-size` trades: "fast" lets DPRS pick, for routines with the `shapes` switch, whichever of
# shapes as constants and shapes as arguments is faster (normally constants: one function per layer);
# "small" takes shapes as arguments wherever a routine can, so layers that differ only in shape share code.
CODE_SIZES = ("fast", "small")


def check_code_size(code_size: str) -> str:
    if code_size not in CODE_SIZES:
        raise RoutineError(f"unknown code size '{code_size}' (choose from {', '.join(CODE_SIZES)})")
    return code_size


def fits_code_size(routine: Routine, params: Mapping[str, Any], code_size: str) -> bool:
    """Whether an instance with `params` may be chosen under `code_size`."""
    return check_code_size(code_size) == "fast" or not routine.has_shape_switch or params.get(SHAPES) == "args"


def adapt_needs(graph: Graph, options: Mapping[str, Iterable[Selection]]
                ) -> list[tuple[tuple[int, ...], Layout, Layout]]:
    """(shape, src, dst) of every conversion a path through `options` (layer -> its candidate selections)
    could need: for each 4-D activation shape, between the native layouts and every layout a candidate reads
    or writes a tensor of that shape in, wherever an adapt routine exists (none converts between two
    blocked layouts)."""
    from .adapt import has_adapt

    wanted: dict[tuple[int, ...], set[Layout]] = {}
    for layer in graph.layers:
        names = [*activation_inputs(layer, graph), *layer.outputs]
        for name in names:
            if len(graph.shape(name)) == 4:
                wanted.setdefault(graph.shape(name), set(NATIVE_LAYOUTS))
        for sel in options.get(layer.name, ()):
            layouts = [*sel.input_layouts(layer, graph), *(sel.output_layout(layer, graph) for _ in layer.outputs)]
            for name, layout in zip(names, layouts):
                if len(graph.shape(name)) == 4:
                    wanted[graph.shape(name)].add(layout)
    return [(shape, a, b) for shape in sorted(wanted) for a in SPATIAL_LAYOUTS for b in SPATIAL_LAYOUTS
            if a is not b and a in wanted[shape] and b in wanted[shape] and has_adapt(a, b)]


def reference_selection(layer: Layer, graph: Graph, code_size: str = "fast") -> Selection:
    """The portable choice: the layer's reference routine in its first layout, with its default parameters
    (shapes as constants; as arguments for `code_size` "small", where it can)."""
    routine = reference_routine(layer, graph)
    params = routine.default_params()
    if check_code_size(code_size) == "small" and routine.has_shape_switch:
        params[SHAPES] = "args"
    return Selection(routine, routine.layouts[0], params)


def adapt_routine(src: Layout, dst: Layout) -> Routine:
    from .adapt import layout_adapt

    return layout_adapt(src, dst)


def adapt_layer_name(tensor: str, src: str, dst: str) -> str:
    """The name of the layer that converts `tensor` from layout `src` to `dst` (made unique in its graph)."""
    return f"adapt:{tensor}:{src}->{dst}"


def materialize(graph: Graph, selections: Mapping[str, Selection]) -> tuple[Graph, list[RoutineInstance]]:
    """The graph with physical layouts and adapt layers, and the routine instance of every layer."""
    g = graph.copy()
    missing = [layer.name for layer in g.layers if layer.name not in selections]
    if missing:
        raise RoutineError(f"no routine selected for layer(s) {', '.join(missing[:5])}")
    layout_of: dict[str, Layout] = {n: native_layout(g.tensor(n)) for n in g.inputs}
    for t in g.constants():
        layout_of[t.name] = Layout.ANY
    for layer in g.layers:
        sel = selections[layer.name]
        for out in layer.outputs:
            layout_of[out] = layer.attrs["dst"] if layer.kind == "layout" else bind(sel.layout, len(g.shape(out)))

    # An output whose producer writes another layout keeps its name on the adapted copy.
    internal: dict[str, str] = {}
    for out in g.outputs:
        if layout_of[out] != native_layout(g.tensor(out)):
            inner = g.unique_name(f"{out}@{layout_of[out].value}")
            internal[inner] = out
            layout_of[inner] = layout_of[out]
            layout_of[out] = native_layout(g.tensor(out))
            g.tensors[inner] = Tensor(inner, g.shape(out), g.tensor(out).dtype)
            for layer in g.layers:
                layer.outputs = [inner if n == out else n for n in layer.outputs]
                layer.inputs = [inner if n == out else n for n in layer.inputs]

    layers: list[Layer] = []
    instances: list[RoutineInstance] = []
    copies: dict[tuple[str, Layout], str] = {}

    def adapt(name: str, want: Layout, target: str | None = None) -> str:
        have = layout_of[name]
        if have == want:
            return name
        if (name, want) in copies:
            return copies[(name, want)]
        out = target or g.unique_name(f"{name}@{want.value}")
        if target is None:
            g.tensors[out] = Tensor(out, g.shape(name), g.tensor(name).dtype)
        layout_of[out] = want
        layer = Layer(g.unique_name(adapt_layer_name(name, have.value, want.value)), "layout", [name], [out],
                      {"src": have, "dst": want})
        layers.append(layer)
        instances.append(RoutineInstance(adapt_routine(have, want), layer, {}))
        copies[(name, want)] = out
        return out

    for layer in g.layers:
        sel = selections[layer.name]
        wanted = iter(sel.input_layouts(layer, g))
        layer.inputs = [adapt(n, next(wanted)) if n and not g.is_constant(n) else n for n in layer.inputs]
        layers.append(layer)
        instances.append(RoutineInstance(sel.routine, layer, dict(sel.params)))
        for out in layer.outputs:
            if out in internal:
                adapt(out, layout_of[internal[out]], target=internal[out])
    for name, tensor in g.tensors.items():
        tensor.layout = layout_of.get(name, Layout.ANY)
    g.layers = layers
    return g.validate(), instances
