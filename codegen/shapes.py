"""Output shapes and multiply-accumulate counts of every layer kind.

Layer kinds and their attributes (all frontends produce these):

  conv2d          x[N,C,H,W] w[M,C/group,KH,KW] b[M]?  strides pads(t,l,b,r) dilations group activation
                  r[N,M,OH,OW]? a residual added before the activation (passes.fuse_residual_add)
  dense           x[N,K] w[M,K] b[M]?                   activation
  matmul          a[...,M,K] b[...,K,N]                 numpy matmul with batch broadcasting
  scale_shift     x[N,C,...] scale[C] shift[C]          y = x*scale[c] + shift[c] (a BatchNorm that could not be folded)
  activation      x                                     activation
  binary          a b (numpy broadcasting)              op: add sub mul div; activation
  concat          x0..xn                                axis
  pool2d          x[N,C,H,W]                            mode: max avg; kernel strides pads dilations count_include_pad
  global_avgpool  x[N,C,H,W] -> [N,C,1,1]
  reduce          x                                     op: mean; axes keepdims
  reshape         x                                     shape (the output's, every dim known)
  transpose       x                                     perm
  softmax         x                                     axis
  pad             x                                     pads(begins..., ends...) mode: constant reflect edge; value
  lrn             x[N,C,...]                            size alpha beta bias
  copy            x
  gather, cast, shape_of   constant folding only (shape computations)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .errors import GraphError
from .ir import DType, Graph, Layer

Shape = tuple[int, ...]


def conv_output_size(size: int, kernel: int, stride: int, pad_begin: int, pad_end: int,
                     dilation: int, ceil_mode: bool = False) -> int:
    if stride < 1 or dilation < 1 or kernel < 1:
        raise GraphError(f"stride {stride}, dilation {dilation} and kernel {kernel} must all be positive")
    span = dilation * (kernel - 1) + 1
    numerator = size + pad_begin + pad_end - span
    out = (-(-numerator // stride) if ceil_mode else numerator // stride) + 1
    # With ceil mode the last window must start inside the input or left padding (ONNX, PyTorch).
    if ceil_mode and (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


def _window_outputs(layer: Layer, x: Shape, kernel: tuple[int, int], attrs: dict, ceil: bool = False
                    ) -> tuple[int, int]:
    """Output height and width of a windowed layer; an error naming the layer when a size is not positive."""
    (sh, sw), (pt, pl, pb, pr), (dh, dw) = attrs["strides"], attrs["pads"], attrs["dilations"]
    if min(pt, pl, pb, pr) < 0:
        raise GraphError(f"layer '{layer.name}' ({layer.kind}): pads {attrs['pads']} must not be negative")
    try:
        oh = conv_output_size(x[2], kernel[0], sh, pt, pb, dh, ceil)
        ow = conv_output_size(x[3], kernel[1], sw, pl, pr, dw, ceil)
    except GraphError as exc:
        raise GraphError(f"layer '{layer.name}' ({layer.kind}): {exc}") from None
    if oh < 1 or ow < 1:
        raise GraphError(f"layer '{layer.name}' ({layer.kind}): the output would be {oh}x{ow} (input {x[2]}x{x[3]}, "
                         f"kernel {kernel[0]}x{kernel[1]}, strides {sh},{sw}, pads {attrs['pads']}, dilations "
                         f"{dh},{dw}); empty tensors are not supported")
    return oh, ow


def _vector_operand(layer: Layer, what: str, shape: Shape, length: int, for_what: str) -> None:
    """A per-channel operand (bias, scale) must hold exactly one value per channel: the routines read
    `length` of them."""
    if tuple(shape) != (length,):
        raise GraphError(f"layer '{layer.name}' ({layer.kind}): {what} has shape {tuple(shape)}; it must be "
                         f"({length},), one value per {for_what}")


def broadcast_shapes(layer: Layer, *shapes: Shape) -> Shape:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise GraphError(
            f"layer '{layer.name}' ({layer.kind}): shapes {' and '.join(map(str, shapes))} do not broadcast"
        ) from None


def _conv2d(layer: Layer, s: list[Shape]) -> list[Shape]:
    x, w = s[0], s[1]
    if len(x) != 4 or len(w) != 4:
        raise GraphError(f"layer '{layer.name}' (conv2d): expects 4-D input and weights, got {x} and {w}")
    a = layer.attrs
    group = a["group"]
    if group < 1 or x[1] != w[1] * group or w[0] % group:
        raise GraphError(
            f"layer '{layer.name}' (conv2d): input channels {x[1]} do not match weights {w} with group={group}"
        )
    if len(layer.inputs) > 2 and layer.inputs[2]:
        _vector_operand(layer, "the bias", s[2], w[0], "output channel")
    oh, ow = _window_outputs(layer, x, (w[2], w[3]), a)
    out = (x[0], w[0], oh, ow)
    if len(layer.inputs) > 3 and layer.inputs[3] and s[-1] != out:
        raise GraphError(f"layer '{layer.name}' (conv2d): residual operand {s[-1]} differs from the output {out}")
    return [out]


def _dense(layer: Layer, s: list[Shape]) -> list[Shape]:
    x, w = s[0], s[1]
    if len(x) != 2 or len(w) != 2 or x[1] != w[1]:
        raise GraphError(f"layer '{layer.name}' (dense): input {x} does not match weights {w} ([M,K])")
    if len(layer.inputs) > 2 and layer.inputs[2]:
        _vector_operand(layer, "the bias", s[2], w[0], "output")
    return [(x[0], w[0])]


def _matmul(layer: Layer, s: list[Shape]) -> list[Shape]:
    a, b = s[0], s[1]
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise GraphError(f"layer '{layer.name}' (matmul): inner dimensions of {a} and {b} differ")
    batch = broadcast_shapes(layer, a2[:-2], b2[:-2])
    out = (*batch, a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return [out]


def _pool2d(layer: Layer, s: list[Shape]) -> list[Shape]:
    x = s[0]
    if len(x) != 4:
        raise GraphError(f"layer '{layer.name}' (pool2d): expects a 4-D input, got {x}")
    a = layer.attrs
    oh, ow = _window_outputs(layer, x, a["kernel"], a, a.get("ceil_mode", False))
    return [(x[0], x[1], oh, ow)]


def _concat(layer: Layer, s: list[Shape]) -> list[Shape]:
    axis = layer.attrs["axis"]
    first = s[0]
    for other in s[1:]:
        if len(other) != len(first) or any(
            d != e for i, (d, e) in enumerate(zip(first, other)) if i != axis
        ):
            raise GraphError(f"layer '{layer.name}' (concat): shapes {s} differ off axis {axis}")
    total = sum(shape[axis] for shape in s)
    return [first[:axis] + (total,) + first[axis + 1:]]


def _reduce(layer: Layer, s: list[Shape]) -> list[Shape]:
    axes, keep = layer.attrs["axes"], layer.attrs["keepdims"]
    x = s[0]
    if keep:
        return [tuple(1 if i in axes else d for i, d in enumerate(x))]
    return [tuple(d for i, d in enumerate(x) if i not in axes)]


def _pad(layer: Layer, s: list[Shape]) -> list[Shape]:
    x, pads = s[0], layer.attrs["pads"]
    rank = len(x)
    if len(pads) != 2 * rank:
        raise GraphError(f"layer '{layer.name}' (pad): pads {list(pads)} do not match rank {rank}")
    out = tuple(d + pads[i] + pads[i + rank] for i, d in enumerate(x))
    if any(d < 0 for d in out):
        raise GraphError(f"layer '{layer.name}' (pad): pads {list(pads)} make {x} into {out}")
    return [out]


def _transpose(layer: Layer, s: list[Shape]) -> list[Shape]:
    perm = tuple(layer.attrs["perm"])
    if sorted(perm) != list(range(len(s[0]))):
        raise GraphError(f"layer '{layer.name}' (transpose): perm {list(perm)} is not a permutation of the "
                         f"{len(s[0])} axes of {s[0]}")
    return [tuple(s[0][p] for p in perm)]


def _scale_shift(layer: Layer, s: list[Shape]) -> list[Shape]:
    x = s[0]
    if len(x) < 2:
        raise GraphError(f"layer '{layer.name}' (scale_shift): expects an input with channels, got {x}")
    for what, shape in zip(("the scale", "the shift"), s[1:3]):
        _vector_operand(layer, what, shape, x[1], "channel")
    return [x]


def _same(layer: Layer, s: list[Shape]) -> list[Shape]:
    return [s[0]]


def _binary(layer: Layer, s: list[Shape]) -> list[Shape]:
    return [broadcast_shapes(layer, s[0], s[1])]


def _reshape(layer: Layer, s: list[Shape]) -> list[Shape]:
    shape = tuple(layer.attrs["shape"])
    if any(d < 0 for d in shape) or math.prod(shape) != math.prod(s[0]):
        raise GraphError(f"layer '{layer.name}' (reshape): cannot reshape {s[0]} to {shape}")
    return [shape]


def _global_avgpool(layer: Layer, s: list[Shape]) -> list[Shape]:
    return [s[0][:2] + (1,) * (len(s[0]) - 2)]


def _gather(layer: Layer, s: list[Shape]) -> list[Shape]:
    axis = layer.attrs["axis"]
    return [s[0][:axis] + s[1] + s[0][axis + 1:]]


def _shape_of(layer: Layer, s: list[Shape]) -> list[Shape]:
    return [(len(s[0]),)]


SHAPE_FUNCTIONS: dict[str, Callable[[Layer, list[Shape]], list[Shape]]] = {
    "conv2d": _conv2d,
    "dense": _dense,
    "matmul": _matmul,
    "scale_shift": _scale_shift,
    "activation": _same,
    "binary": _binary,
    "concat": _concat,
    "pool2d": _pool2d,
    "global_avgpool": _global_avgpool,
    "reduce": _reduce,
    "reshape": _reshape,
    "transpose": _transpose,
    "softmax": _same,
    "pad": _pad,
    "lrn": _same,
    "copy": _same,
    "layout": _same,  # an adapt (selection.materialize): the same tensor in another layout
    "gather": _gather,
    "cast": _same,
    "shape_of": _shape_of,
}

KINDS = frozenset(SHAPE_FUNCTIONS)


def infer(layer: Layer, graph: Graph) -> list[Shape]:
    try:
        fn = SHAPE_FUNCTIONS[layer.kind]
    except KeyError:
        raise GraphError(f"layer '{layer.name}': unknown layer kind '{layer.kind}'") from None
    return fn(layer, [graph.shape(n) for n in layer.present_inputs()])


def output_dtype(layer: Layer, graph: Graph) -> DType:
    if layer.kind == "cast":
        return layer.attrs["to"]
    if layer.kind == "shape_of":
        return DType.I64
    return graph.tensor(layer.inputs[0]).dtype


def macs(layer: Layer, graph: Graph) -> int:
    """Multiply-accumulates (or element operations for layers without any)."""
    out = graph.shape(layer.outputs[0])
    if layer.kind == "conv2d":
        w = graph.shape(layer.inputs[1])
        return math.prod(out) * w[1] * w[2] * w[3]
    if layer.kind == "dense":
        return math.prod(out) * graph.shape(layer.inputs[1])[1]
    if layer.kind == "matmul":
        a = graph.shape(layer.inputs[0])
        return math.prod(out) * a[-1]
    if layer.kind == "pool2d":
        kh, kw = layer.attrs["kernel"]
        return math.prod(out) * kh * kw
    return max(math.prod(graph.shape(layer.inputs[0])), math.prod(out))
