"""Exporters' decompositions, put back together: per-channel affine ops folded into weights, activations
written as several element-wise ops replaced by the one activation they compute.

tf2onnx and torch.onnx write a BatchNorm as Mul + Add (Sub, Div) by per-channel constants, and HardSwish,
GELU, SiLU, Mish ... as chains of Add/Mul/Div/Clip/Erf/Tanh/Softplus/Sigmoid. Both passes run on the IR
(after the transpose pass has put the constants in NCHW-logical form), so every frontend benefits.

fuse_decomposed_activations does not match op sequences: it finds a cone of element-wise layers that read
one tensor x and scalar constants only, with private intermediate results, and evaluates the cone on probe
values of x in float64. If it computes one of the known activations (within float32 rounding of the
constants) the cone becomes that activation. Every operand order, Div vs Mul by the reciprocal, x*x*x vs
x*(x*x) ... is then the same case, and a wrong constant (Add 2 instead of 3) cannot match.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from ..ir import Activation, DType, Graph, Layer, Tensor
from ..reference import REFERENCE, apply_activation
from .edits import bypass, spatial_zero_pads

# -- shared helpers ----------------------------------------------------------------------------------


def _readers(graph: Graph, name: str) -> list[Layer]:
    return graph.consumers().get(name, [])


def _sole_reader(graph: Graph, name: str) -> Layer | None:
    """The one layer reading `name` (once), when it is the only reader and `name` is no graph output."""
    if name in graph.outputs:
        return None
    readers = _readers(graph, name)
    if len(readers) != 1 or readers[0].present_inputs().count(name) != 1:
        return None
    return readers[0]


def _is_f32(graph: Graph, name: str) -> bool:
    return graph.tensor(name).dtype == DType.F32


# -- fuse_decomposed_activations ---------------------------------------------------------------------

# What a decomposition may compute, in the order they are tried (none equals another on the probes).
KNOWN_ACTIVATIONS: tuple[Activation, ...] = (
    Activation("hard_swish"),
    Activation("hard_sigmoid", 1 / 6, 0.5),  # relu6(x + 3) / 6: Keras 3 and torch
    Activation("hard_sigmoid", 0.2, 0.5),  # Keras 2
    Activation("silu"),
    Activation("gelu_erf"),
    Activation("gelu_tanh"),
    Activation("mish"),
    Activation("clip", 0.0, 6.0),  # relu6 as Min(Max(x, 0), 6)
    Activation("relu"),
    Activation("sigmoid"),
    Activation("softplus"),
    Activation("tanh"),
)

# Probe values: a dense grid where the activations bend, small values, and far tails on both sides.
_GRID = np.arange(-10.0, 10.0, 1 / 32)
_PROBES = np.concatenate([
    _GRID, _GRID + 1 / 97, [0.0, 1e-6, -1e-6, 1e-3, -1e-3],
    np.array([12.0, 15.0, 20.0, 30.0, 50.0, 100.0, 1e3]), -np.array([12.0, 15.0, 20.0, 30.0, 50.0, 100.0, 1e3]),
])
# Float32 constants (1/6, sqrt(2/pi), 0.044715 ...) put the decomposition ~1e-7 away from the exact function;
# a different constant or form is far further away on some probe.
_RTOL, _ATOL = 1e-5, 1e-6
_MAX_CONE = 24  # the longest decomposition (tanh GELU) has 9 layers


def _scalar(graph: Graph, name: str) -> bool:
    """Whether `name` is a float constant holding one value."""
    t = graph.tensor(name)
    return t.is_constant and t.size == 1 and t.dtype == DType.F32


def _elementwise_on(graph: Graph, layer: Layer, inside: set[str], shape: tuple[int, ...]) -> bool:
    """Whether `layer` computes element by element on tensors of `inside` and scalar constants, keeping `shape`."""
    if layer.kind not in ("activation", "binary") or len(layer.outputs) != 1:
        return False
    out = layer.outputs[0]
    if graph.shape(out) != shape or not _is_f32(graph, out):
        return False
    ins = layer.present_inputs()
    computed = [n for n in ins if not graph.is_constant(n)]
    return bool(computed) and all(n in inside for n in computed) and all(
        _scalar(graph, n) for n in ins if graph.is_constant(n))


def _cone(graph: Graph, x: str, order: dict[int, int], consumers: dict[str, list[Layer]]) -> list[Layer]:
    """The element-wise layers that depend on `x` and scalar constants only, in graph order.

    Visited in graph (topological) order: when a layer comes up, every layer before it that could join has.
    """
    shape = graph.shape(x)
    inside, cone = {x}, []
    heap = [(order[id(r)], id(r), r) for r in consumers.get(x, [])]
    heapq.heapify(heap)
    seen: set[int] = set()
    while heap and len(cone) < _MAX_CONE:
        _, key, layer = heapq.heappop(heap)
        if key in seen:
            continue
        seen.add(key)
        if not _elementwise_on(graph, layer, inside, shape):
            continue
        cone.append(layer)
        inside.add(layer.outputs[0])
        for r in consumers.get(layer.outputs[0], []):
            if id(r) not in seen:
                heapq.heappush(heap, (order[id(r)], id(r), r))
    return cone


def _sub_cone(graph: Graph, x: str, cone: list[Layer], sink: Layer,
              consumers: dict[str, list[Layer]]) -> list[Layer] | None:
    """The layers of `cone` that `sink` depends on, when every result but the sink's is read only by them."""
    by_output = {layer.outputs[0]: layer for layer in cone}
    needed, stack = set(), [sink]
    while stack:
        layer = stack.pop()
        if id(layer) in needed:
            continue
        needed.add(id(layer))
        stack.extend(by_output[n] for n in layer.present_inputs() if n in by_output)
    sub = [layer for layer in cone if id(layer) in needed]
    for layer in sub:
        out = layer.outputs[0]
        if layer is sink:
            continue
        if out in graph.outputs or any(id(r) not in needed for r in consumers.get(out, [])):
            return None  # an intermediate result someone else reads must stay computed
    return sub


def _evaluate(graph: Graph, x: str, sub: list[Layer], probes: np.ndarray) -> np.ndarray:
    """The sub-cone's output for x = each probe, in float64 (the layers' numpy semantics, no f32 rounding)."""
    values = {x: probes}
    with np.errstate(all="ignore"):
        for layer in sub:
            args = [values[n] if n in values else np.float64(graph.tensor(n).data.reshape(())) if n else None
                    for n in layer.inputs]
            values[layer.outputs[0]] = np.asarray(REFERENCE[layer.kind](layer, args)[0], np.float64).reshape(-1)
    return values[sub[-1].outputs[0]]


def _computes(got: np.ndarray, act: Activation) -> bool:
    with np.errstate(all="ignore"):
        want = apply_activation(_PROBES, act)
    return bool(np.array_equal(np.isnan(got), np.isnan(want)) and
                np.allclose(got, want, rtol=_RTOL, atol=_ATOL, equal_nan=True))


def identify(got: np.ndarray) -> Activation | None:
    """The known activation whose values on the probes are `got`, if any."""
    return next((act for act in KNOWN_ACTIVATIONS if _computes(got, act)), None)


@dataclass(frozen=True)
class ActivationMatch:
    x: str
    layers: list[Layer]  # the decomposition, the sink (whose output stays) last
    activation: Activation


def _match_at(graph: Graph, x: str, order: dict[int, int],
              consumers: dict[str, list[Layer]]) -> ActivationMatch | None:
    cone = _cone(graph, x, order, consumers)
    for sink in reversed(cone):  # the largest decomposition first: x * hard_sigmoid(x) before hard_sigmoid(x)
        sub = _sub_cone(graph, x, cone, sink, consumers)
        if sub is None or len(sub) < 2:
            continue
        act = identify(_evaluate(graph, x, sub, _PROBES))
        if act is not None:
            return ActivationMatch(x, sub, act)
    return None


def _sources(graph: Graph) -> list[str]:
    return [*graph.inputs, *(o for layer in graph.layers for o in layer.outputs)]


def find_decomposed_activation(graph: Graph, start: int = 0) -> tuple[int, ActivationMatch] | None:
    """The first decomposition of a known activation in `graph` reading the `start`-th tensor or a later one
    (graph inputs, then layer outputs in order), with that tensor's index; None when there is none."""
    order = {id(layer): i for i, layer in enumerate(graph.layers)}
    consumers = graph.consumers()
    sources = _sources(graph)
    for i in range(start, len(sources)):
        x = sources[i]
        if graph.is_constant(x) or not _is_f32(graph, x) or x not in consumers:
            continue
        match = _match_at(graph, x, order, consumers)
        if match is not None:
            return i, match
    return None


def fuse_decomposed_activations(graph: Graph) -> Graph:
    """Element-wise decompositions of HardSwish, HardSigmoid, ReLU6, SiLU, GELU (erf and tanh), Mish -> one
    activation layer (which fuse_activations then moves into its producer's epilogue).

    Matched by value, not by op sequence (see the module's docstring): e.g. tf2onnx's HardSwish
    Add(x, 3) -> Clip(0, 6) -> Mul(1/6) -> Mul(x, .), torch's GELU Div(x, sqrt2) -> Erf -> Add(1) -> Mul(x, .)
    -> Mul(0.5), the tanh GELU with x*x*x, Mul(x, Sigmoid(x)), Mul(x, Tanh(Softplus(x))).
    """
    g = graph.copy()
    start = 0
    # A rewrite changes only layers reading its x: the tensors before x had no match and still have none.
    while (found := find_decomposed_activation(g, start)) is not None:
        start, match = found
        sink = match.layers[-1]
        g.layers[g.layers.index(sink)] = Layer(sink.name, "activation", [match.x], [sink.outputs[0]],
                                               {"activation": match.activation})
        for layer in match.layers[:-1]:
            g.layers.remove(layer)
            del g.tensors[layer.outputs[0]]
        # Removed layers shift the later tensors' indices back; x's own index stays (only later layers go).
    return g.prune()


# -- fold_channel_affine -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Affine:
    """A layer computing y = scale * x + shift with one value per channel (axis 1), or one for all."""

    layer: Layer
    x: str
    scale: np.ndarray  # (C,) float64
    shift: np.ndarray  # (C,) float64

    @property
    def scales_only(self) -> bool:
        return not self.shift.any()


def channel_vector(graph: Graph, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """The constant `name` as one value per channel of a tensor of `shape`, when it broadcasts along axis 1 only
    (a scalar, (C, 1, 1), (1, C, 1, 1); (C,) or (1, C) for a 2-D tensor)."""
    t = graph.tensor(name)
    if not t.is_constant or t.dtype != DType.F32 or len(t.shape) > len(shape):
        return None
    padded = (1,) * (len(shape) - len(t.shape)) + tuple(t.shape)
    if any(d != 1 for i, d in enumerate(padded) if i != 1) or padded[1] not in (1, shape[1]):
        return None
    values = t.data.astype(np.float64).reshape(-1)
    return np.broadcast_to(values, (shape[1],)).copy()


def as_affine(graph: Graph, layer: Layer) -> Affine | None:
    """`layer` as a per-channel scale and shift of one computed tensor, when it is one."""
    if len(layer.outputs) != 1:
        return None
    out = layer.outputs[0]
    shape = graph.shape(out)
    if len(shape) < 2 or not _is_f32(graph, out):
        return None
    c = shape[1]
    if layer.kind == "scale_shift":
        x, scale, shift = layer.inputs
        if graph.is_constant(x) or not (graph.is_constant(scale) and graph.is_constant(shift)):
            return None
        s, t = (np.broadcast_to(graph.tensor(n).data.astype(np.float64).reshape(-1), (c,)).copy()
                for n in (scale, shift))
    elif layer.kind == "binary" and layer.attrs["op"] in ("add", "sub", "mul", "div"):
        a, b = layer.inputs
        if graph.is_constant(a) == graph.is_constant(b):
            return None  # two computed operands (or two constants, which fold_constants evaluates)
        constant_first = graph.is_constant(a)
        x, k = (b, a) if constant_first else (a, b)
        v = channel_vector(graph, k, shape)
        if v is None:
            return None
        op = layer.attrs["op"]
        ones, zeros = np.ones(c), np.zeros(c)
        if op == "mul":
            s, t = v, zeros
        elif op == "add":
            s, t = ones, v
        elif op == "sub":
            s, t = (-ones, v) if constant_first else (ones, -v)
        elif constant_first or not v.all():
            return None  # c / x is no affine map; x / 0 keeps its infinities and NaNs only unfolded
        else:
            s, t = 1.0 / v, zeros
    else:
        return None
    if graph.is_constant(x) or graph.shape(x) != shape or not (np.isfinite(s).all() and np.isfinite(t).all()):
        return None
    return Affine(layer, x, s, t)


def _add_weight(graph: Graph, base: str, value: np.ndarray) -> str:
    name = graph.unique_name(base)
    graph.tensors[name] = Tensor(name, tuple(value.shape), data=value.astype(np.float32))
    return name


def _bias(graph: Graph, layer: Layer, m: int) -> np.ndarray:
    name = layer.inputs[2] if len(layer.inputs) > 2 else ""
    return graph.tensor(name).data.astype(np.float64) if name else np.zeros(m)


def _weights_constant(graph: Graph, layer: Layer) -> bool:
    bias = layer.inputs[2] if len(layer.inputs) > 2 else ""
    return graph.is_constant(layer.inputs[1]) and (not bias or graph.is_constant(bias))


def _set_weights(graph: Graph, layer: Layer, w: np.ndarray, b: np.ndarray, why: str) -> None:
    """Give `layer` new weight and bias tensors (the old ones may be shared with another layer)."""
    layer.inputs[1] = _add_weight(graph, f"{layer.name}/w_{why}", w)
    bias = _add_weight(graph, f"{layer.name}/b_{why}", b)
    if len(layer.inputs) > 2:
        layer.inputs[2] = bias
    else:
        layer.inputs.append(bias)


def _fold_into_producer(graph: Graph, aff: Affine) -> bool:
    """conv2d/dense -> scale, shift: each output channel's weights and bias scaled, its bias shifted."""
    producer = graph.producers().get(aff.x)
    if producer is None or producer.kind not in ("conv2d", "dense") or not producer.activation.is_identity:
        return False
    if len(producer.inputs) > 3 and producer.inputs[3]:
        return False  # a fused residual is added before the scale could apply: it would need scaling too
    if _sole_reader(graph, aff.x) is not aff.layer or not _weights_constant(graph, producer):
        return False
    if producer.kind == "dense" and len(graph.shape(aff.x)) != 2:
        return False
    w = graph.tensor(producer.inputs[1]).data.astype(np.float64)
    if w.shape[0] != aff.scale.shape[0]:
        return False
    b = _bias(graph, producer, w.shape[0])
    _set_weights(graph, producer, w * aff.scale.reshape((-1,) + (1,) * (w.ndim - 1)), b * aff.scale + aff.shift,
                 "affine")
    producer.attrs["activation"] = aff.layer.activation  # an activation after the affine op now follows the conv
    bypass(graph, aff.layer, aff.x)
    return True


def _fold_into_reader(graph: Graph, aff: Affine) -> bool:
    """scale, shift -> conv2d/dense: each input channel's weights scaled; the shift, through the weights, moves
    into the bias. A shift only where nothing pads the shifted tensor: zeros padded around x + t are no
    x-padded-then-shifted. A scale commutes with zero padding, so it may also cross a Pad layer of zeros."""
    if not aff.layer.activation.is_identity:
        return False
    out = aff.layer.outputs[0]
    reader = _sole_reader(graph, out)
    pad = None
    if reader is not None and reader.kind == "pad" and aff.scales_only and spatial_zero_pads(graph, reader) is not None:
        pad, reader = reader, _sole_reader(graph, reader.outputs[0])
    if reader is None or reader.kind not in ("conv2d", "dense") or not _weights_constant(graph, reader):
        return False
    fed = pad.outputs[0] if pad is not None else out
    if reader.inputs[0] != fed:
        return False  # the scaled tensor is the residual operand, not the one convolved
    w = graph.tensor(reader.inputs[1]).data.astype(np.float64)
    m = w.shape[0]
    if reader.kind == "conv2d":
        if not aff.scales_only and any(reader.attrs["pads"]):
            return False
        groups, cg = reader.attrs["group"], w.shape[1]
        if groups * cg != aff.scale.shape[0]:
            return False
        # Output channel o reads input channels [group(o) * cg, group(o) * cg + cg).
        group_of = np.arange(m) // (m // groups)
        s = aff.scale.reshape(groups, cg)[group_of][:, :, None, None]
        t = aff.shift.reshape(groups, cg)[group_of][:, :, None, None]
        b = _bias(graph, reader, m) + (w * t).sum(axis=(1, 2, 3))
    else:
        if len(graph.shape(fed)) != 2 or w.shape[1] != aff.scale.shape[0]:
            return False
        s = aff.scale[None, :]
        b = _bias(graph, reader, m) + w @ aff.shift
    _set_weights(graph, reader, w * s, b, "affine")
    (pad if pad is not None else reader).inputs[0] = aff.x
    graph.layers.remove(aff.layer)
    del graph.tensors[out]
    return True


def _merge_pair(graph: Graph, first: Affine) -> bool:
    """Two affine layers in a row -> one scale_shift: one pass over the tensor instead of two."""
    if not first.layer.activation.is_identity:
        return False
    out = first.layer.outputs[0]
    reader = _sole_reader(graph, out)
    second = as_affine(graph, reader) if reader is not None else None
    if second is None or second.x != out or second.scale.shape != first.scale.shape:
        return False
    scale = second.scale * first.scale
    shift = second.scale * first.shift + second.shift
    layer = second.layer
    ins = [first.x, _add_weight(graph, f"{layer.name}/scale", scale), _add_weight(graph, f"{layer.name}/shift", shift)]
    merged = Layer(layer.name, "scale_shift", ins, list(layer.outputs), {"activation": layer.activation})
    graph.layers[graph.layers.index(layer)] = merged
    graph.layers.remove(first.layer)
    del graph.tensors[out]
    return True


def _rewrite_once(graph: Graph) -> bool:
    """One rewrite, the folds before the merges (a fold removes the pass a merge would only shorten)."""
    affines = [a for a in (as_affine(graph, layer) for layer in graph.layers) if a is not None]
    for step in (_fold_into_producer, _fold_into_reader, _merge_pair):
        for aff in affines:
            if step(graph, aff):
                return True
    return False


def fold_channel_affine(graph: Graph) -> Graph:
    """Per-channel (or scalar) Mul/Add/Sub/Div by constants and scale_shift layers, folded into the weights of
    the conv2d (any group count) or dense before them (Mul/Div scale the output channel, Add/Sub shift its
    bias) or after them (a scale of an input channel; a shift only into an unpadded convolution), and, where
    neither applies, two in a row merged into one scale_shift layer.

    Not folded: a constant that varies along any other axis, a producer whose output has another reader or
    that has an activation or a residual fused already, an activation between (fold_batchnorm's rule), a
    Div by zero, Mul by a computed tensor.
    """
    g = graph.copy()
    while _rewrite_once(g):
        pass
    return g.prune()

