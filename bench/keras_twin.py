"""The Keras twin of a neurogen IR graph: the same network, with the same weights, in NHWC.

TensorFlow and the TFLite interpreter run this twin in the side-by-side benchmark
(bench/engines.py), so that every engine computes the same function: the twin is built from
the graph *after* neurogen's import and simplification (BatchNorm folded into convolution
weights, activations fused), and the benchmark checks its outputs against onnxruntime's on
the original ONNX model.

It is written the way a Keras user would write the model, so that TF and TFLite get the
graph they are tuned for: Conv2D/DepthwiseConv2D with "same" padding where that is the
padding the model asks for (an explicit ZeroPadding2D otherwise, as keras.applications do
for stride-2 convolutions), activations as separate layers (the TFLite converter fuses
relu/relu6 into the convolution), and the flatten before a Dense layer done in NHWC order
with the Dense weights permuted to match, rather than a transpose at run time.

Supported layer kinds: conv2d (any groups, dilation with stride 1, a fused residual), dense, pool2d (max/avg,
floor mode), global_avgpool, binary (add sub mul div, broadcasting, constant operands),
concat, softmax, reshape, activation, and fused activations relu, clip (relu6), leaky_relu,
sigmoid, hard_sigmoid, hard_swish.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from codegen.ir import Activation, Graph, Layer
from codegen.shapes import conv_output_size

# NCHW axis -> NHWC axis, for 4-D tensors.
_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}


class TwinError(Exception):
    """The graph uses something the twin builder does not translate."""


@dataclass
class _Value:
    """A Keras tensor and how its elements map to the IR tensor's.

    `flat_perm` is set on a flattened image (a 4-D -> 2-D reshape done in NHWC order):
    Keras element j is logical (NCHW-order) element flat_perm[j]. Dense layers absorb it
    into their weights; anything else gets the logical order back with a transpose.
    """

    tensor: Any
    flat_perm: np.ndarray | None = None


def build_keras_model(graph: Graph, name: str = "twin"):
    """A keras.Model taking NHWC inputs and returning the graph outputs (in graph.outputs order)."""
    import keras

    values: dict[str, _Value] = {}
    inputs = []
    for input_name in graph.inputs:
        shape = graph.shape(input_name)
        nhwc = (shape[2], shape[3], shape[1]) if len(shape) == 4 else shape[1:]
        tensor = keras.Input(shape=nhwc, batch_size=shape[0], name=_keras_name(input_name))
        inputs.append(tensor)
        values[input_name] = _Value(tensor)
    consumers = graph.consumers()
    for layer in graph.layers:
        try:
            convert = _CONVERTERS[layer.kind]
        except KeyError:
            raise TwinError(f"layer '{layer.name}': no Keras translation for kind '{layer.kind}'") from None
        out = convert(layer, graph, values, consumers)
        values[layer.outputs[0]] = out
    outputs = [_logical(values[o]) for o in graph.outputs]
    # Identity layers named after the graph outputs, so TFLite's signature names them too.
    outputs = [keras.layers.Identity(name=_keras_name(o))(t) for o, t in zip(graph.outputs, outputs)]
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, outputs, name=name)


def to_nhwc(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array.transpose(0, 2, 3, 1)) if array.ndim == 4 else array


def from_nhwc(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array.transpose(0, 3, 1, 2)) if array.ndim == 4 else array


def _keras_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name)


def _logical(value: _Value):
    """The Keras tensor with its elements in the IR's order (undoes an NHWC-order flatten)."""
    if value.flat_perm is None:
        return value.tensor
    import keras

    inverse = np.argsort(value.flat_perm)
    return keras.layers.Lambda(lambda t: keras.ops.take(t, inverse, axis=1))(value.tensor)


def _input(values: dict[str, _Value], graph: Graph, name: str):
    return _logical(values[name])


# ---- activations -----------------------------------------------------------------------------


def _activation(act: Activation, x):
    import keras

    kind = act.kind
    if kind == "none":
        return x
    if kind == "relu":
        return keras.layers.ReLU()(x)
    if kind == "clip" and act.alpha == 0.0:
        return keras.layers.ReLU(max_value=act.beta)(x)  # relu6: TFLite fuses it into the conv
    if kind == "clip":
        lo, hi = act.alpha, act.beta
        return keras.layers.Lambda(lambda t: keras.ops.clip(t, lo, hi))(x)
    if kind == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=act.alpha)(x)
    if kind == "sigmoid":
        return keras.layers.Activation("sigmoid")(x)
    if kind == "hard_swish":
        return keras.layers.Activation("hard_swish")(x)  # x * relu6(x + 3) / 6, as ONNX HardSwish
    if kind == "hard_sigmoid":
        alpha, beta = act.alpha, act.beta
        return keras.layers.Lambda(lambda t: keras.ops.clip(t * alpha + beta, 0.0, 1.0))(x)
    raise TwinError(f"no Keras translation for activation '{kind}'")


# ---- padding ---------------------------------------------------------------------------------


def _same_pads(size: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int],
               dilations: tuple[int, int]) -> tuple[int, int, int, int]:
    """The (top, left, bottom, right) padding TensorFlow's "same" uses for this window."""
    before, after = [], []
    for n, k, s, d in zip(size, kernel, strides, dilations):
        out = -(-n // s)
        total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
        before.append(total // 2)
        after.append(total - total // 2)
    return before[0], before[1], after[0], after[1]


def _padding(x, pads: tuple[int, ...], kernel, strides, dilations, fill: float = 0.0) -> tuple[Any, str]:
    """("same", x) where TF's "same" is the model's padding, else (explicitly padded x, "valid")."""
    import keras

    size = tuple(x.shape[1:3])
    if tuple(pads) == _same_pads(size, kernel, strides, dilations) and any(pads):
        return x, "same"
    if not any(pads):
        return x, "valid"
    top, left, bottom, right = pads
    if fill == 0.0:
        return keras.layers.ZeroPadding2D(((top, bottom), (left, right)))(x), "valid"
    widths = ((0, 0), (top, bottom), (left, right), (0, 0))
    return keras.layers.Lambda(lambda t: keras.ops.pad(t, widths, constant_values=fill))(x), "valid"


# ---- layers ----------------------------------------------------------------------------------


def _conv2d(layer: Layer, graph: Graph, values, consumers) -> _Value:
    import keras

    a = layer.attrs
    w = graph.tensor(layer.inputs[1]).data
    bias = graph.tensor(layer.inputs[2]).data if len(layer.inputs) > 2 and layer.inputs[2] else None
    m, cg, kh, kw = w.shape
    groups = a["group"]
    if tuple(a["dilations"]) != (1, 1) and tuple(a["strides"]) != (1, 1):
        raise TwinError(f"layer '{layer.name}': Keras has no strided dilated convolution")
    x, padding = _padding(values[layer.inputs[0]].tensor, a["pads"], (kh, kw), a["strides"], a["dilations"])
    common = dict(kernel_size=(kh, kw), strides=a["strides"], padding=padding, dilation_rate=a["dilations"],
                  use_bias=bias is not None)
    if groups > 1 and cg == 1:  # depthwise: Keras kernel (kh, kw, C, multiplier)
        conv = keras.layers.DepthwiseConv2D(depth_multiplier=m // groups, **common)
        conv.build(x.shape)
        kernel = w.reshape(groups, m // groups, kh, kw).transpose(2, 3, 0, 1)
    else:  # Keras kernel (kh, kw, C/groups, M)
        conv = keras.layers.Conv2D(filters=m, groups=groups, **common)
        conv.build(x.shape)
        kernel = w.transpose(2, 3, 1, 0)
    conv.set_weights([kernel] + ([bias] if bias is not None else []))
    y = conv(x)
    if len(layer.inputs) > 3 and layer.inputs[3]:  # a fused residual: Keras adds it as its own layer
        y = keras.layers.Add()([y, values[layer.inputs[3]].tensor])
    return _Value(_activation(layer.activation, y))


def _dense(layer: Layer, graph: Graph, values, consumers) -> _Value:
    import keras

    x = values[layer.inputs[0]]
    w = graph.tensor(layer.inputs[1]).data  # (out, in)
    bias = graph.tensor(layer.inputs[2]).data if len(layer.inputs) > 2 and layer.inputs[2] else None
    if x.flat_perm is not None:
        w = w[:, x.flat_perm]  # the input arrives in NHWC-flatten order: permute the weights to match
    dense = keras.layers.Dense(w.shape[0], use_bias=bias is not None)
    dense.build(x.tensor.shape)
    dense.set_weights([np.ascontiguousarray(w.T)] + ([bias] if bias is not None else []))
    return _Value(_activation(layer.activation, dense(x.tensor)))


def _pool2d(layer: Layer, graph: Graph, values, consumers) -> _Value:
    import keras

    a = layer.attrs
    if a.get("ceil_mode") or tuple(a["dilations"]) != (1, 1):
        raise TwinError(f"layer '{layer.name}': ceil-mode or dilated pooling has no Keras translation")
    kernel, strides, pads = tuple(a["kernel"]), tuple(a["strides"]), tuple(a["pads"])
    x = values[layer.inputs[0]].tensor
    size = tuple(x.shape[1:3])
    if a["mode"] == "max":
        x, padding = _padding(x, pads, kernel, strides, (1, 1), fill=-np.inf)
        return _Value(keras.layers.MaxPooling2D(kernel, strides, padding=padding)(x))
    # TF's "same" average excludes the padding, as count_include_pad=0 does.
    if not a["count_include_pad"] and pads == _same_pads(size, kernel, strides, (1, 1)):
        return _Value(keras.layers.AveragePooling2D(kernel, strides, padding="same")(x))
    x, _ = _padding(x, pads, kernel, strides, (1, 1)) if any(pads) else (x, "valid")
    y = keras.layers.AveragePooling2D(kernel, strides, padding="valid")(x)
    if a["count_include_pad"] or not any(pads):
        return _Value(y)
    # Zero padding counted in the average: rescale each output by window size / valid count.
    scale = _valid_count_scale(size, kernel, strides, pads)
    return _Value(keras.layers.Lambda(lambda t: t * scale)(y))


def _valid_count_scale(size, kernel, strides, pads) -> np.ndarray:
    (h, w), (kh, kw), (sh, sw), (pt, pl, pb, pr) = size, kernel, strides, pads
    oh = conv_output_size(h, kh, sh, pt, pb, 1, False)
    ow = conv_output_size(w, kw, sw, pl, pr, 1, False)
    valid = np.pad(np.ones((h, w)), ((pt, pb), (pl, pr)))
    counts = np.array([[valid[i * sh:i * sh + kh, j * sw:j * sw + kw].sum() for j in range(ow)] for i in range(oh)])
    return (kh * kw / counts).astype(np.float32)[None, :, :, None]


def _global_avgpool(layer: Layer, graph: Graph, values, consumers) -> _Value:
    import keras

    return _Value(keras.layers.GlobalAveragePooling2D(keepdims=True)(values[layer.inputs[0]].tensor))


def _binary(layer: Layer, graph: Graph, values, consumers) -> _Value:
    import keras

    ops = {"add": keras.ops.add, "sub": keras.ops.subtract, "mul": keras.ops.multiply, "div": keras.ops.divide}
    op = ops[layer.attrs["op"]]
    a_name, b_name = layer.inputs[:2]
    rank = len(graph.shape(layer.outputs[0]))
    operands = []
    for name in (a_name, b_name):
        if graph.is_constant(name):
            data = graph.tensor(name).data.astype(np.float32)
            data = data.reshape((1,) * (rank - data.ndim) + data.shape)  # numpy broadcasting, made explicit
            operands.append(to_nhwc(data))
        else:
            operands.append(values[name].tensor if rank == 4 else _input(values, graph, name))
    a, b = operands
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        raise TwinError(f"layer '{layer.name}': both operands constant (should have been folded)")
    if isinstance(b, np.ndarray):
        y = keras.layers.Lambda(lambda t: op(t, b))(a)
    elif isinstance(a, np.ndarray):
        y = keras.layers.Lambda(lambda t: op(a, t))(b)
    elif layer.attrs["op"] == "add" and tuple(a.shape) == tuple(b.shape):
        y = keras.layers.Add()([a, b])
    elif layer.attrs["op"] == "mul" and tuple(a.shape) == tuple(b.shape):
        y = keras.layers.Multiply()([a, b])
    else:  # broadcasting (the squeeze-excite gate): Keras merge layers want equal shapes
        y = keras.layers.Lambda(lambda ts: op(ts[0], ts[1]))([a, b])
    return _Value(_activation(layer.activation, y))


def _concat(layer: Layer, graph: Graph, values, consumers) -> _Value:
    import keras

    rank = len(graph.shape(layer.outputs[0]))
    axis = layer.attrs["axis"] % rank
    if rank == 4:
        return _Value(keras.layers.Concatenate(axis=_NHWC_AXIS[axis])([values[n].tensor for n in layer.inputs]))
    return _Value(keras.layers.Concatenate(axis=axis)([_input(values, graph, n) for n in layer.inputs]))


def _softmax(layer: Layer, graph: Graph, values, consumers) -> _Value:
    import keras

    rank = len(graph.shape(layer.outputs[0]))
    axis = layer.attrs["axis"] % rank
    x = values[layer.inputs[0]].tensor if rank == 4 else _input(values, graph, layer.inputs[0])
    return _Value(keras.layers.Softmax(axis=_NHWC_AXIS[axis] if rank == 4 else axis)(x))


def _activation_layer(layer: Layer, graph: Graph, values, consumers) -> _Value:
    value = values[layer.inputs[0]]
    return _Value(_activation(layer.activation, value.tensor), value.flat_perm)  # element-wise: order kept


def _reshape(layer: Layer, graph: Graph, values, consumers) -> _Value:
    import keras

    src, dst = graph.shape(layer.inputs[0]), graph.shape(layer.outputs[0])
    x = values[layer.inputs[0]]
    users = consumers.get(layer.outputs[0], [])
    is_output = layer.outputs[0] in graph.outputs
    if len(src) == 4 and len(dst) == 2 and users and not is_output and all(u.kind == "dense" for u in users):
        # Flatten in NHWC order, as a Keras model would; the Dense weights take the permutation.
        n, c, h, w = src
        perm = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
        return _Value(keras.layers.Flatten()(x.tensor), perm)
    # General case: back to the logical order, reshape, and to NHWC again if the result is an image.
    t = x.tensor
    if len(src) == 4:
        t = keras.layers.Permute((3, 1, 2))(t)
    elif x.flat_perm is not None:
        t = _logical(x)
    t = keras.layers.Reshape(dst[1:])(t)
    if len(dst) == 4:
        t = keras.layers.Permute((2, 3, 1))(t)
    return _Value(t)


_CONVERTERS: dict[str, Callable[..., _Value]] = {
    "conv2d": _conv2d,
    "dense": _dense,
    "pool2d": _pool2d,
    "global_avgpool": _global_avgpool,
    "binary": _binary,
    "concat": _concat,
    "softmax": _softmax,
    "activation": _activation_layer,
    "reshape": _reshape,
}
