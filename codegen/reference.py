"""numpy semantics of every layer kind: the oracle for routines and constant folding.

Floating-point layers compute in float64 and round once, so the oracle is more
accurate than any f32 routine it judges.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .errors import GraphError
from .ir import Activation, DType, Graph, Layer

Arrays = list[np.ndarray]


def apply_activation(x: np.ndarray, act: Activation) -> np.ndarray:
    k = act.kind
    if k == "none":
        return x
    if k == "relu":
        return np.maximum(x, 0)
    if k == "clip":
        return np.clip(x, act.alpha, act.beta)
    if k == "leaky_relu":
        return np.where(x >= 0, x, x * act.alpha)
    if k == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if k == "hard_sigmoid":
        return np.clip(x * act.alpha + act.beta, 0, 1)
    if k == "hard_swish":
        return x * np.clip(x / 6.0 + 0.5, 0, 1)
    if k == "silu":
        return x / (1.0 + np.exp(-x))
    if k == "gelu_erf":  # erfc(-z) = 1 + erf(z), without the cancellation for negative x
        return 0.5 * x * _erfc(-x / np.sqrt(2.0))
    if k == "gelu_tanh":  # 0.5 (1 + tanh(z)) = sigmoid(2z), the same without cancellation
        return x / (1.0 + np.exp(-2.0 * np.sqrt(2.0 / np.pi) * (x + 0.044715 * x * x * x)))
    if k == "mish":
        return x * np.tanh(np.logaddexp(0.0, x))
    if k == "tanh":
        return np.tanh(x)
    if k == "erf":
        return _erf(x)
    if k == "softplus":
        return np.logaddexp(0.0, x)
    raise GraphError(f"unknown activation '{k}'")


# numpy has no erf; math's, element by element, is exact to double precision (and keeps NaN).
_erf_scalar = np.frompyfunc(math.erf, 1, 1)
_erfc_scalar = np.frompyfunc(math.erfc, 1, 1)


def _erf(x: np.ndarray) -> np.ndarray:
    return np.asarray(_erf_scalar(np.asarray(x, np.float64)), np.float64)


def _erfc(x: np.ndarray) -> np.ndarray:
    return np.asarray(_erfc_scalar(np.asarray(x, np.float64)), np.float64)


def _conv2d(layer: Layer, xs: Arrays) -> Arrays:
    x, w = xs[0].astype(np.float64), xs[1].astype(np.float64)
    a = layer.attrs
    (sh, sw), (pt, pl, pb, pr), (dh, dw), g = a["strides"], a["pads"], a["dilations"], a["group"]
    n, c, _, _ = x.shape
    m, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (span_h, span_w), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # n c oh ow kh kw
    oh, ow = win.shape[2], win.shape[3]
    out = np.empty((n, m, oh, ow))
    mg = m // g
    for gi in range(g):
        xg = win[:, gi * cg:(gi + 1) * cg]
        wg = w[gi * mg:(gi + 1) * mg]
        out[:, gi * mg:(gi + 1) * mg] = np.einsum("nchwij,mcij->nmhw", xg, wg, optimize=True)
    if len(xs) > 2 and xs[2] is not None:
        out += xs[2].astype(np.float64).reshape(1, m, 1, 1)
    if len(xs) > 3 and xs[3] is not None:  # a residual add fused into the convolution
        out += xs[3].astype(np.float64)
    return [apply_activation(out, layer.activation)]


def _dense(layer: Layer, xs: Arrays) -> Arrays:
    out = xs[0].astype(np.float64) @ xs[1].astype(np.float64).T
    if len(xs) > 2 and xs[2] is not None:
        out = out + xs[2].astype(np.float64)
    return [apply_activation(out, layer.activation)]


def _matmul(layer: Layer, xs: Arrays) -> Arrays:
    return [np.matmul(xs[0].astype(np.float64), xs[1].astype(np.float64))]


def _scale_shift(layer: Layer, xs: Arrays) -> Arrays:
    x, scale, shift = (v.astype(np.float64) for v in xs)
    bshape = (1, -1) + (1,) * (x.ndim - 2)
    return [apply_activation(x * scale.reshape(bshape) + shift.reshape(bshape), layer.activation)]


_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


def _binary(layer: Layer, xs: Arrays) -> Arrays:
    a, b = xs
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":  # shape arithmetic
        op = np.floor_divide if layer.attrs["op"] == "div" else _BINARY[layer.attrs["op"]]
        return [op(a, b)]
    out = _BINARY[layer.attrs["op"]](a.astype(np.float64), b.astype(np.float64))
    return [apply_activation(out, layer.activation)]


def _pool2d(layer: Layer, xs: Arrays) -> Arrays:
    x = xs[0].astype(np.float64)
    a = layer.attrs
    (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = a["kernel"], a["strides"], a["pads"], a["dilations"]
    from .shapes import conv_output_size

    oh = conv_output_size(x.shape[2], kh, sh, pt, pb, dh, a.get("ceil_mode", False))
    ow = conv_output_size(x.shape[3], kw, sw, pl, pr, dw, a.get("ceil_mode", False))
    # Pad generously so ceil-mode windows that run past the end stay in bounds.
    extra_h = max(0, (oh - 1) * sh + dh * (kh - 1) + 1 - (x.shape[2] + pt + pb))
    extra_w = max(0, (ow - 1) * sw + dw * (kw - 1) + 1 - (x.shape[3] + pl + pr))
    pad_h, pad_w = (pt, pb + extra_h), (pl, pr + extra_w)
    valid = np.pad(np.ones(x.shape[2:]), (pad_h, pad_w))
    # count_include_pad counts the explicit padding, but not what ceil mode runs past it.
    inside = np.pad(np.ones((x.shape[2] + pt + pb, x.shape[3] + pl + pr)), ((0, extra_h), (0, extra_w)))
    fill = -np.inf if a["mode"] == "max" else 0.0
    xp = np.pad(x, ((0, 0), (0, 0), pad_h, pad_w), constant_values=fill)
    out = np.empty(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
            cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
            window = xp[:, :, rows, cols]
            if a["mode"] == "max":
                out[:, :, i, j] = window.max(axis=(2, 3))
            else:
                count = inside[rows, cols].sum() if a["count_include_pad"] else valid[rows, cols].sum()
                out[:, :, i, j] = window.sum(axis=(2, 3)) / count
    return [out]


def _global_avgpool(layer: Layer, xs: Arrays) -> Arrays:
    x = xs[0].astype(np.float64)
    return [x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)]


def _reduce(layer: Layer, xs: Arrays) -> Arrays:
    axes = tuple(layer.attrs["axes"])
    return [xs[0].astype(np.float64).mean(axis=axes, keepdims=layer.attrs["keepdims"])]


def _softmax(layer: Layer, xs: Arrays) -> Arrays:
    x = xs[0].astype(np.float64)
    axis = layer.attrs["axis"]
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return [e / e.sum(axis=axis, keepdims=True)]


def _pad(layer: Layer, xs: Arrays) -> Arrays:
    x = xs[0]
    pads = layer.attrs["pads"]
    rank = x.ndim
    widths = [(pads[i], pads[i + rank]) for i in range(rank)]
    mode = layer.attrs["mode"]
    if mode == "constant":
        return [np.pad(x, widths, constant_values=layer.attrs["value"])]
    return [np.pad(x, widths, mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])]


def _lrn(layer: Layer, xs: Arrays) -> Arrays:
    x = xs[0].astype(np.float64)
    a = layer.attrs
    size = a["size"]
    sq = np.square(x)
    c = x.shape[1]
    acc = np.zeros_like(x)
    for ch in range(c):
        lo = max(0, ch - (size - 1) // 2)
        hi = min(c - 1, ch + int(np.ceil((size - 1) / 2)))
        acc[:, ch] = sq[:, lo:hi + 1].sum(axis=1)
    return [x / np.power(a["bias"] + a["alpha"] / size * acc, a["beta"])]


def _gather(layer: Layer, xs: Arrays) -> Arrays:
    data, idx = xs
    axis = layer.attrs["axis"]
    idx = np.where(idx < 0, idx + data.shape[axis], idx)
    return [np.take(data, idx, axis=axis)]


REFERENCE: dict[str, Callable[[Layer, Arrays], Arrays]] = {
    "conv2d": _conv2d,
    "dense": _dense,
    "matmul": _matmul,
    "scale_shift": _scale_shift,
    "activation": lambda layer, xs: [apply_activation(xs[0].astype(np.float64), layer.activation)],
    "binary": _binary,
    "concat": lambda layer, xs: [np.concatenate(xs, axis=layer.attrs["axis"])],
    "pool2d": _pool2d,
    "global_avgpool": _global_avgpool,
    "reduce": _reduce,
    "reshape": lambda layer, xs: [xs[0].reshape(layer.attrs["shape"])],
    "transpose": lambda layer, xs: [np.transpose(xs[0], layer.attrs["perm"])],
    "softmax": _softmax,
    "pad": _pad,
    "lrn": _lrn,
    "copy": lambda layer, xs: [xs[0].copy()],
    "layout": lambda layer, xs: [xs[0].copy()],  # an adapt: same values, another memory order
    "gather": _gather,
    "cast": lambda layer, xs: [xs[0].astype(layer.attrs["to"].numpy)],
    "shape_of": lambda layer, xs: [np.array(xs[0].shape, dtype=np.int64)],
}


def evaluate_layer(layer: Layer, inputs: Arrays, out_dtypes: list[DType]) -> Arrays:
    try:
        fn = REFERENCE[layer.kind]
    except KeyError:
        raise GraphError(f"layer '{layer.name}': no reference semantics for kind '{layer.kind}'") from None
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        outputs = fn(layer, inputs)
    return [np.asarray(o).astype(d.numpy) for o, d in zip(outputs, out_dtypes)]


def run(graph: Graph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Evaluate a whole graph in numpy; returns every graph output."""
    values: dict[str, np.ndarray] = {t.name: t.data for t in graph.constants()}
    for name in graph.inputs:
        if name not in inputs:
            raise GraphError(f"no value given for graph input '{name}'")
        values[name] = np.asarray(inputs[name], dtype=graph.tensor(name).dtype.numpy)
    for layer in graph.layers:
        args = [values[n] if n else None for n in layer.inputs]
        out_dtypes = [graph.tensor(o).dtype for o in layer.outputs]
        for name, value in zip(layer.outputs, evaluate_layer(layer, args, out_dtypes)):
            values[name] = value
    return {name: values[name] for name in graph.outputs}
