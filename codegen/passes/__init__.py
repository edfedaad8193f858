"""Graph -> Graph simplifications. Each pass is pure: it returns a new graph.

`simplify` runs the default pipeline; each pass is also usable (and tested) alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..ir import Activation, Graph, Layer, Tensor
from ..reference import evaluate_layer
from ..shapes import conv_output_size
from .edits import bypass, sole_consumer, spatial_zero_pads
from .fusion import fold_channel_affine, fuse_decomposed_activations
from .transpose import sink_transposes

Pass = Callable[[Graph], Graph]

# Layers that can apply an activation in their epilogue.
FUSES_ACTIVATION = frozenset({"conv2d", "dense", "binary", "scale_shift"})


def fold_constants(graph: Graph) -> Graph:
    """Evaluate every layer whose inputs are all constants."""
    g = graph.copy()
    kept = []
    for layer in g.layers:
        present = layer.present_inputs()
        if present and all(g.is_constant(n) for n in present) and not set(layer.outputs) & set(g.outputs):
            args = [g.tensor(n).data if n else None for n in layer.inputs]
            dtypes = [g.tensor(o).dtype for o in layer.outputs]
            for out, value in zip(layer.outputs, evaluate_layer(layer, args, dtypes)):
                g.tensors[out] = Tensor(out, tuple(value.shape), dtypes[0], value)
        else:
            kept.append(layer)
    g.layers = kept
    return g.prune()


def _neutral_operand(graph: Graph, layer: Layer) -> str | None:
    """The other operand of x * 1, x / 1, x + 0, x - 0 (constants of ones or zeros that broadcast to x's
    shape), and of a scale_shift by ones and zeros: Keras 3 writes swish as x * sigmoid(1.0 * x)."""
    if layer.kind == "scale_shift":
        scale, shift = (graph.tensor(n) for n in layer.inputs[1:3])
        if layer.activation.is_identity and scale.is_constant and shift.is_constant \
                and np.all(scale.data == 1) and np.all(shift.data == 0):
            return layer.inputs[0]
        return None
    if layer.kind != "binary" or not layer.activation.is_identity or len(layer.present_inputs()) != 2:
        return None
    neutral = {"mul": 1, "div": 1, "add": 0, "sub": 0}.get(layer.attrs["op"])
    if neutral is None:
        return None
    a, b = layer.inputs
    sides = [(a, b), (b, a)] if layer.attrs["op"] in ("mul", "add") else [(a, b)]
    for x, c in sides:
        if graph.is_constant(c) and not graph.is_constant(x) and np.all(graph.tensor(c).data == neutral) \
                and graph.shape(x) == graph.shape(layer.outputs[0]):
            return x
    return None


def remove_identities(graph: Graph) -> Graph:
    """Drop layers that compute nothing: copies, same-shape reshapes, identity activations, x * 1 and x + 0."""
    g = graph.copy()
    producers = g.producers()
    for layer in list(g.layers):
        if layer.kind == "reshape" and layer.inputs[0] in producers and producers[layer.inputs[0]].kind == "reshape":
            layer.inputs = [producers[layer.inputs[0]].inputs[0]]  # a reshape of a reshape is one reshape
        x = layer.inputs[0] if layer.inputs else ""
        neutral = _neutral_operand(g, layer)
        if neutral is not None:
            x = neutral
        noop = (
            neutral is not None
            or layer.kind == "copy"
            or (layer.kind == "reshape" and g.shape(x) == g.shape(layer.outputs[0]))
            or (layer.kind == "activation" and layer.activation.is_identity)
            or (layer.kind == "transpose" and tuple(layer.attrs["perm"]) == tuple(range(len(g.shape(x)))))
        )
        if not noop:
            continue
        # An output must keep a producing layer of its own; inputs and constants cannot stand in.
        if layer.outputs[0] in g.outputs and (x in g.inputs or g.is_constant(x) or x in g.outputs
                                              or x not in g.producers()):
            continue
        bypass(g, layer, x)
        producers = g.producers()
    return g.prune()


def fold_batchnorm(graph: Graph) -> Graph:
    """Fold a per-channel scale and shift (BatchNorm at inference) into the conv or dense before it."""
    g = graph.copy()
    producers = g.producers()
    for bn in list(g.layers):
        if bn.kind != "scale_shift" or not bn.activation.is_identity:
            continue
        x = bn.inputs[0]
        prev = producers.get(x)
        if prev is None or prev.kind not in ("conv2d", "dense") or not prev.activation.is_identity:
            continue
        if len(prev.inputs) > 3 and prev.inputs[3]:
            continue  # a fused residual would need the scale too
        if sole_consumer(g, x) is not bn or not all(g.is_constant(n) for n in (prev.inputs[1], *bn.inputs[1:])):
            continue
        if prev.kind == "dense" and len(g.shape(x)) != 2:
            continue
        scale = g.tensor(bn.inputs[1]).data.astype(np.float64)
        shift = g.tensor(bn.inputs[2]).data.astype(np.float64)
        w = g.tensor(prev.inputs[1]).data.astype(np.float64)
        w_new = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
        bias_name = prev.inputs[2] if len(prev.inputs) > 2 else ""
        bias = g.tensor(bias_name).data.astype(np.float64) if bias_name else np.zeros(w.shape[0])
        b_new = bias * scale + shift
        w_name = g.unique_name(f"{prev.name}/w_bn")
        b_name = g.unique_name(f"{prev.name}/b_bn")
        g.tensors[w_name] = Tensor(w_name, w.shape, data=w_new.astype(np.float32))
        g.tensors[b_name] = Tensor(b_name, b_new.shape, data=b_new.astype(np.float32))
        prev.inputs = [prev.inputs[0], w_name, b_name]
        bypass(g, bn, x)
        producers = g.producers()
    return g.prune()


def fuse_hard_swish(graph: Graph) -> Graph:
    """x * HardSigmoid(x; 1/6, 1/2) -> HardSwish(x): the form older exporters write."""
    g = graph.copy()
    for hs in list(g.layers):
        act = hs.activation
        if hs.kind != "activation" or act.kind != "hard_sigmoid":
            continue
        if not (np.isclose(act.alpha, 1 / 6, rtol=1e-6) and np.isclose(act.beta, 0.5)):
            continue
        mul = sole_consumer(g, hs.outputs[0])
        x = hs.inputs[0]
        if mul is None or mul.kind != "binary" or mul.attrs["op"] != "mul" or not mul.activation.is_identity:
            continue
        if sorted(mul.inputs) != sorted([x, hs.outputs[0]]):
            continue
        g.layers.remove(hs)
        del g.tensors[hs.outputs[0]]
        mul.kind, mul.inputs = "activation", [x]
        mul.attrs = {"activation": Activation("hard_swish")}
    return g


def fuse_activations(graph: Graph) -> Graph:
    """Move an activation into the epilogue of the layer that produces its input."""
    g = graph.copy()
    producers = g.producers()
    for act_layer in list(g.layers):
        if act_layer.kind != "activation":
            continue
        x = act_layer.inputs[0]
        prev = producers.get(x)
        if prev is None or prev.kind not in FUSES_ACTIVATION or not prev.activation.is_identity:
            continue
        if sole_consumer(g, x) is not act_layer:
            continue
        prev.attrs["activation"] = act_layer.activation
        bypass(g, act_layer, x)
        producers = g.producers()
    return g


def fuse_residual_add(graph: Graph) -> Graph:
    """conv(x) + r -> conv(x; residual r): the add runs in the convolution's epilogue, saving a pass over memory.

    The add's activation (a ReLU after a ResNet block) moves with it. Of two convolutions feeding the add,
    the later one takes it; the fused layer takes the add's place in the order, where r is computed.
    """
    g = graph.copy()
    for add in list(g.layers):
        if add.kind != "binary" or add.attrs["op"] != "add" or len(add.present_inputs()) != 2:
            continue
        out_shape = g.shape(add.outputs[0])
        if len(out_shape) != 4 or any(g.is_constant(n) or g.shape(n) != out_shape for n in add.inputs):
            continue
        producers = g.producers()
        order = {id(layer): i for i, layer in enumerate(g.layers)}
        fusable = [(order[id(producers[n])], n) for n in add.inputs
                   if n in producers and producers[n].kind == "conv2d" and producers[n].activation.is_identity
                   and len(producers[n].inputs) <= 3 and sole_consumer(g, n) is add]
        if not fusable:
            continue
        _, conv_out = max(fusable)
        conv = producers[conv_out]
        (residual,) = [n for n in add.inputs if n != conv_out] or [conv_out]
        if residual == conv_out:
            continue  # conv(x) + conv(x): nothing else to add
        g.layers.remove(conv)
        conv.inputs = [*conv.inputs[:3], *[""] * (3 - len(conv.inputs)), residual]
        conv.outputs = list(add.outputs)
        conv.attrs["activation"] = add.activation
        g.layers[g.layers.index(add)] = conv
        del g.tensors[conv_out]
    return g


def _never_negative(graph: Graph, name: str) -> bool:
    """Whether `name` is the output of an activation that cannot be negative (ReLU, ReLU6, Clip[>=0, ...], sigmoids)."""
    producer = graph.producers().get(name)
    if producer is None or producer.kind not in FUSES_ACTIVATION | {"activation"}:
        return False
    act = producer.activation
    return act.kind in ("relu", "sigmoid", "hard_sigmoid") or (act.kind == "clip" and act.alpha >= 0.0)


def _windows_see_input(size: int, kernel: int, stride: int, dilation: int, pad_begin: int, out: int) -> bool:
    """Whether each of the `out` windows along one axis has a tap inside the input, not only in padding."""
    return all(any(0 <= o * stride - pad_begin + k * dilation < size for k in range(kernel)) for o in range(out))


def _conv_pads(graph: Graph, conv: Layer, extra: tuple[int, int, int, int]) -> dict[str, object] | None:
    """The convolution's attributes once it also pads by `extra`, while each side stays below the kernel span."""
    pt, pl, pb, pr = (p + q for p, q in zip(conv.attrs["pads"], extra))
    kh, kw = graph.shape(conv.inputs[1])[2:]
    dh, dw = conv.attrs["dilations"]
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if max(pt, pb) >= span_h or max(pl, pr) >= span_w:
        return None
    return {"pads": (pt, pl, pb, pr)}


def _pool_pads(graph: Graph, pool: Layer, x: str, extra: tuple[int, int, int, int]) -> dict[str, object] | None:
    """The pool's attributes once it also pads `x` by `extra` zeros, where that computes the same values.

    A max pool's own padding is ignored, not zero: the same only if x >= 0 (so the zeros never win) and
    every window still has a tap on x. An average pool's must count as zeros do: count_include_pad, and
    only if the pool had no padding of its own or counted it already.
    """
    a = pool.attrs
    pads = tuple(p + q for p, q in zip(a["pads"], extra))
    if a["mode"] == "max" and _never_negative(graph, x):
        changes: dict[str, object] = {"pads": pads}
    elif a["mode"] == "avg" and (a["count_include_pad"] or not any(a["pads"])):
        changes = {"pads": pads, "count_include_pad": True}
    else:
        return None
    # An average needs no tap on x to be exact, but the routines are tested in that regime.
    ceil = a.get("ceil_mode", False)
    for axis in (0, 1):
        size, out = graph.shape(x)[2 + axis], graph.shape(pool.outputs[0])[2 + axis]
        kernel, stride, dilation = a["kernel"][axis], a["strides"][axis], a["dilations"][axis]
        begin, end = pads[axis], pads[axis + 2]
        # Ceil mode drops a last window that starts in the end padding: it must drop the same ones.
        if conv_output_size(size, kernel, stride, begin, end, dilation, ceil) != out:
            return None
        if not _windows_see_input(size, kernel, stride, dilation, begin, out):
            return None
    return changes


def fold_pad(graph: Graph) -> Graph:
    """Pad(zeros, H/W only) -> conv2d or pool2d: the reader pads its input itself (no padded copy, no NCHW detour).

    Into a convolution, with each side kept below the kernel's span, the regime every convolution routine is
    tested in; into a pool only where its padding computes what explicit zeros do (see _pool_pads).
    """
    g = graph.copy()
    for pad in list(g.layers):
        if pad.kind != "pad":
            continue
        extra = spatial_zero_pads(g, pad)
        reader = sole_consumer(g, pad.outputs[0])
        if extra is None or reader is None:
            continue
        if reader.inputs[0] != pad.outputs[0] or reader.inputs.count(pad.outputs[0]) != 1:
            continue  # the padded tensor is the residual operand, not the convolved one
        if reader.kind == "conv2d":
            changes = _conv_pads(g, reader, extra)
        elif reader.kind == "pool2d":
            changes = _pool_pads(g, reader, pad.inputs[0], extra)
        else:
            continue
        if changes is None:
            continue
        reader.attrs.update(changes)
        reader.inputs[0] = pad.inputs[0]
        g.layers.remove(pad)
        del g.tensors[pad.outputs[0]]
    return g


def canonicalize(graph: Graph) -> Graph:
    """Rewrite equivalent forms to the one the routines know: spatial means -> global_avgpool."""
    g = graph.copy()
    for layer in g.layers:
        if layer.kind == "reduce" and layer.attrs["op"] == "mean":
            shape = g.shape(layer.inputs[0])
            if len(shape) == 4 and tuple(layer.attrs["axes"]) == (2, 3) and layer.attrs["keepdims"]:
                layer.kind, layer.attrs = "global_avgpool", {}
    return g


def own_outputs(graph: Graph) -> Graph:
    """Give every graph output a producing layer of its own.

    The generated code writes each output buffer from the layer that computes it, so an
    output that is a graph input, a constant, or listed twice gets a copy layer.
    """
    g = graph.copy()
    producers = g.producers()
    claimed: set[str] = set()
    for i, name in enumerate(g.outputs):
        if name in producers and name not in claimed:
            claimed.add(name)
            continue
        source = g.tensor(name)
        copy = g.unique_name(f"{name}_copy" if name in claimed else name + "_out")
        g.tensors[copy] = Tensor(copy, source.shape, source.dtype, layout=source.layout)
        g.layers.append(Layer(g.unique_name(f"output:{copy}"), "copy", [name], [copy]))
        g.outputs[i] = copy
        claimed.add(copy)
    return g


DEFAULT_PIPELINE: tuple[Pass, ...] = (
    fold_constants,
    remove_identities,
    sink_transposes,  # first: the passes below see NCHW layers, not NHWC islands between transposes
    remove_identities,
    canonicalize,
    fuse_decomposed_activations,
    fold_channel_affine,
    fold_pad,
    fold_batchnorm,
    fuse_hard_swish,
    fuse_residual_add,
    fuse_activations,
    remove_identities,
)


def simplify(graph: Graph, pipeline: tuple[Pass, ...] = DEFAULT_PIPELINE) -> Graph:
    for step in pipeline:
        graph = step(graph)
    return graph.validate()
