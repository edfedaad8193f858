"""ONNX -> IR. One op table (`OPS`); each converter is a small function of (context, node).

Nodes whose inputs are all constants are evaluated while converting (with the
reference semantics), so shape computations (Shape -> Gather -> Concat -> Reshape)
fold away and only layers on real data reach the graph.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..errors import ModelError, NeurogenError, UnsupportedOpsError
from ..ir import MAX_BYTES, NO_ACTIVATION, Activation, DType, Graph, Layer, Layout, Tensor, format_shape, size_problem
from ..reference import evaluate_layer
from ..shapes import infer, output_dtype
from . import inputs as io_shapes
from . import validate

MIN_OPSET, MAX_OPSET = 9, 25  # 22 to 25 only widened the element types of these ops

Converter = Callable[["Context", onnx.NodeProto], None]


@dataclass
class Context:
    """Conversion state: the graph being built and the ONNX name -> IR name aliases."""

    graph: Graph
    opset: int
    source: str
    aliases: dict[str, str] = field(default_factory=dict)

    # -- reading ----------------------------------------------------------------
    def name(self, onnx_name: str) -> str:
        return self.aliases.get(onnx_name, onnx_name)

    def tensor(self, onnx_name: str) -> Tensor:
        return self.graph.tensor(self.name(onnx_name))

    def shape(self, onnx_name: str) -> tuple[int, ...]:
        return self.tensor(onnx_name).shape

    def constant(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray | None:
        """Value of a constant input, None when the input is absent; an error when it varies."""
        if index >= len(node.input) or not node.input[index]:
            return None
        tensor = self.tensor(node.input[index])
        if tensor.data is None:
            raise self.error(node, f"{what} (input {index}, '{node.input[index]}') must be a constant "
                             "initializer; neurogen compiles weights and shapes into the code")
        return tensor.data

    def float_constant(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray | None:
        """A constant input that the op computes with in float32: onnxruntime refuses any other type."""
        value = self.constant(node, index, what)
        if value is not None and value.dtype != np.float32:
            raise self.error(node, f"{what} ('{node.input[index]}') is {value.dtype}; it must be float32 like "
                             "the op's data input")
        return value

    def error(self, node: onnx.NodeProto, message: str) -> ModelError:
        return ModelError(f"{self.source}: node '{node_name(node)}' ({node.op_type}): {message}")

    # -- writing ----------------------------------------------------------------
    def add_constant(self, base: str, value: np.ndarray) -> str:
        name = self.graph.unique_name(base)
        value = np.ascontiguousarray(value)
        self.graph.tensors[name] = Tensor(name, tuple(value.shape), DType.from_numpy(value.dtype), value)
        return name

    def add(self, node: onnx.NodeProto, kind: str, inputs: list[str], attrs: dict[str, Any] | None = None,
            outputs: list[str] | None = None, suffix: str = "") -> str:
        """Append a layer (or fold it when its inputs are constant); returns its first output name."""
        g = self.graph
        base = node_name(node) + suffix
        layer_name = g.unique_name(base)
        if outputs is None:
            outputs = [g.unique_name(f"{base}:out")]
        layer = Layer(layer_name, kind, [self.name(i) if i else "" for i in inputs], outputs, attrs or {})
        shapes = infer(layer, g)
        dtype = output_dtype(layer, g)
        for shape in shapes:  # before a folded value is allocated, or any code is planned for it
            problem = size_problem(shape, dtype.numpy.itemsize)
            if problem:
                raise self.error(node, f"output {problem}")
        present = layer.present_inputs()
        if present and all(g.is_constant(i) for i in present):
            args = [g.tensor(i).data if i else None for i in layer.inputs]
            values = evaluate_layer(layer, args, [dtype] * len(outputs))
            for out, value in zip(outputs, values):
                g.tensors[out] = Tensor(out, tuple(value.shape), dtype, value)
            return outputs[0]
        if dtype not in (DType.F32,):
            raise self.error(node, f"computes {dtype.value} values at run time; only float32 is supported")
        self._check_runtime(node, layer, shapes)
        layout = g.tensor(present[0]).layout if len(shapes[0]) == len(g.shape(present[0])) else Layout.ANY
        for out, shape in zip(outputs, shapes):
            g.tensors[out] = Tensor(out, shape, dtype, layout=layout)
        g.layers.append(layer)
        return outputs[0]

    def _check_runtime(self, node: onnx.NodeProto, layer: Layer, shapes: list[tuple[int, ...]]) -> None:
        """A layer that runs in the generated code reads float32 operands and no empty tensor."""
        for name in layer.present_inputs():
            tensor = self.graph.tensor(name)
            if tensor.dtype != DType.F32:
                raise self.error(node, f"operand '{name}' is {tensor.dtype.numpy.name}; the op computes in "
                                 "float32 and takes float32 operands only")
            if tensor.size == 0:
                raise self.error(node, f"operand '{name}' has shape {format_shape(tensor.shape)} with no elements; "
                                 "empty tensors are not supported")
        for shape in shapes:
            if math.prod(shape) == 0:
                raise self.error(node, f"the output would have shape {shape} with no elements; empty tensors are "
                                 "not supported")

    def alias(self, onnx_name: str, existing: str) -> None:
        self.aliases[onnx_name] = self.name(existing)


def node_name(node: onnx.NodeProto) -> str:
    return node.name or f"{node.op_type}_{node.output[0] if node.output else ''}"


def attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


# -- helpers shared by converters ------------------------------------------------

def _spatial_attrs(ctx: Context, node: onnx.NodeProto, x_shape: tuple[int, ...],
                   kernel: tuple[int, ...]) -> dict[str, Any]:
    """strides, pads (begins then ends) and dilations over the spatial axes, auto_pad resolved."""
    a = attributes(node)
    rank = len(kernel)
    if rank not in (1, 2) or len(x_shape) != rank + 2:
        raise ctx.error(node, f"only 1-D and 2-D spatial operators are supported (input shape {x_shape}, "
                        f"kernel {list(kernel)})")
    strides = _positive_ints(ctx, node, a, "strides", rank)
    dilations = _positive_ints(ctx, node, a, "dilations", rank)
    auto_pad = _decode(a.get("auto_pad", "NOTSET"))
    if auto_pad not in AUTO_PADS:
        raise ctx.error(node, f"auto_pad '{str(auto_pad)[:40]}' is not one of {', '.join(AUTO_PADS)}")
    if auto_pad != "NOTSET" and "pads" in a:
        raise ctx.error(node, f"has both auto_pad {auto_pad} and pads {list(a['pads'])}; give one of them")
    if any(k < 1 for k in kernel):
        raise ctx.error(node, f"kernel {list(kernel)} must have positive sizes")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for size, k, s, d in zip(x_shape[2:], kernel, strides, dilations):
            out = -(-size // s)
            total = max(0, (out - 1) * s + d * (k - 1) + 1 - size)
            small, large = total // 2, total - total // 2
            begins.append(small if auto_pad == "SAME_UPPER" else large)
            ends.append(large if auto_pad == "SAME_UPPER" else small)
        pads = (*begins, *ends)
    elif auto_pad == "VALID":
        pads = (0,) * (2 * rank)
    else:
        pads = tuple(int(p) for p in a.get("pads", (0,) * (2 * rank)))
        if len(pads) != 2 * rank or any(p < 0 for p in pads):
            raise ctx.error(node, f"pads {list(pads)} must be {2 * rank} non-negative values (begins, then ends)")
    return {"strides": strides, "pads": pads, "dilations": dilations}


AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def _positive_ints(ctx: Context, node: onnx.NodeProto, a: dict[str, Any], name: str, rank: int) -> tuple[int, ...]:
    """A per-spatial-axis attribute (strides, dilations): `rank` positive values, 1 when absent."""
    values = tuple(int(v) for v in a.get(name, (1,) * rank))
    if len(values) != rank or any(v < 1 for v in values):
        raise ctx.error(node, f"{name} {list(values)} must be {rank} positive values, one per spatial axis")
    return values


def _as_2d(attrs: dict[str, Any]) -> dict[str, Any]:
    """1-D spatial attributes as 2-D ones over a height of 1."""
    if len(attrs["strides"]) == 2:
        return attrs
    out = dict(attrs)
    out["strides"] = (1, attrs["strides"][0])
    out["dilations"] = (1, attrs["dilations"][0])
    out["pads"] = (0, attrs["pads"][0], 0, attrs["pads"][1])
    if "kernel" in attrs:
        out["kernel"] = (1, attrs["kernel"][0])
    return out


def _spatial_layer(ctx: Context, node: onnx.NodeProto, kind: str, inputs: list[str],
                   attrs: dict[str, Any]) -> None:
    """Add a 2-D spatial layer; a 1-D one runs as 2-D with a height of 1, between two reshapes."""
    x_shape = ctx.shape(inputs[0])
    if len(x_shape) == 4:
        ctx.add(node, kind, inputs, attrs, outputs=[node.output[0]])
        return
    x = ctx.add(node, "reshape", [inputs[0]], {"shape": (x_shape[0], x_shape[1], 1, x_shape[2])}, suffix="/2d")
    y = ctx.add(node, kind, [x, *inputs[1:]], _as_2d(attrs))
    y_shape = ctx.graph.shape(y)
    ctx.add(node, "reshape", [y], {"shape": (y_shape[0], y_shape[1], y_shape[3])},
            outputs=[node.output[0]], suffix="/1d")


def _axis(ctx: Context, node: onnx.NodeProto, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ctx.error(node, f"axis {axis} is out of range for rank {rank}")
    return axis % rank


def _unique_axes(ctx: Context, node: onnx.NodeProto, axes: list[int], rank: int) -> set[int]:
    unique = {_axis(ctx, node, ax, rank) for ax in axes}
    if len(unique) != len(axes):
        raise ctx.error(node, f"axes {list(axes)} name an axis twice")
    return unique


def _axes_input_or_attr(ctx: Context, node: onnx.NodeProto, since: int) -> list[int] | None:
    if ctx.opset >= since:
        value = ctx.constant(node, 1, "axes")
        return None if value is None else [int(v) for v in value.reshape(-1)]
    axes = attributes(node).get("axes")
    return None if axes is None else list(axes)


# -- converters --------------------------------------------------------------------

def conv(ctx: Context, node: onnx.NodeProto) -> None:
    w = ctx.float_constant(node, 1, "weights")
    x_shape = ctx.shape(node.input[0])
    a = attributes(node)
    if w.ndim != len(x_shape) or w.ndim < 3:
        raise ctx.error(node, f"weights '{node.input[1]}' {w.shape} must have the rank of the input {x_shape}")
    if "kernel_shape" in a and tuple(a["kernel_shape"]) != tuple(w.shape[2:]):
        raise ctx.error(node, f"kernel_shape {list(a['kernel_shape'])} differs from the weights' kernel "
                        f"{list(w.shape[2:])} (weights '{node.input[1]}' {w.shape})")
    attrs = _spatial_attrs(ctx, node, x_shape, tuple(w.shape[2:]))
    attrs["group"] = int(a.get("group", 1))
    if attrs["group"] < 1:
        raise ctx.error(node, f"group {attrs['group']} must be positive")
    attrs["activation"] = NO_ACTIVATION
    w_name = node.input[1]
    if w.ndim == 3:
        w_name = ctx.add_constant(f"{node_name(node)}/w2d", w.reshape(w.shape[0], w.shape[1], 1, w.shape[2]))
    bias = ctx.float_constant(node, 2, "bias")
    if bias is not None and bias.shape != (w.shape[0],):
        raise ctx.error(node, f"bias '{node.input[2]}' has shape {bias.shape}; it must be ({w.shape[0]},), one "
                        "value per output channel")
    _spatial_layer(ctx, node, "conv2d", [node.input[0], w_name, node.input[2] if bias is not None else ""],
                   attrs)


def gemm(ctx: Context, node: onnx.NodeProto) -> None:
    a = attributes(node)
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    b = ctx.float_constant(node, 1, "B (weights)")
    c = ctx.float_constant(node, 2, "C (bias)")
    x = node.input[0]
    x_shape = ctx.shape(x)
    if len(x_shape) != 2 or b.ndim != 2:
        raise ctx.error(node, f"A {x_shape} and B {b.shape} must be matrices")
    rows, inner = x_shape[::-1] if a.get("transA", 0) else x_shape
    b_inner, cols = b.shape[::-1] if a.get("transB", 0) else b.shape
    if inner != b_inner:
        raise ctx.error(node, f"A {x_shape} and B {b.shape} do not multiply (transA={a.get('transA', 0)}, "
                        f"transB={a.get('transB', 0)})")
    if c is not None and not _broadcasts_to(c.shape, (rows, cols)):
        raise ctx.error(node, f"C '{node.input[2]}' {c.shape} does not broadcast to the output ({rows}, {cols})")
    if a.get("transA", 0):
        x = ctx.add(node, "transpose", [x], {"perm": (1, 0)}, suffix="/transA")
    w = b if a.get("transB", 0) else b.T
    with np.errstate(over="ignore", invalid="ignore"):  # alpha 1e30 gives inf, as onnxruntime computes it
        w = (w.astype(np.float64) * alpha).astype(np.float32)
    m = w.shape[0]
    ins = [x, ctx.add_constant(f"{node_name(node)}/w", w), ""]
    c_after = None
    if c is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            c = (c.astype(np.float64) * beta).astype(np.float32)
        if c.size == m and (c.ndim < 2 or c.shape[0] == 1):
            ins[2] = ctx.add_constant(f"{node_name(node)}/b", c.reshape(m))
        else:
            c_after = c
    out = node.output[0] if c_after is None else None
    y = ctx.add(node, "dense", ins, {"activation": NO_ACTIVATION}, outputs=[out] if out else None)
    if c_after is not None:
        ctx.add(node, "binary", [y, ctx.add_constant(f"{node_name(node)}/c", c_after)],
                {"op": "add", "activation": NO_ACTIVATION}, outputs=[node.output[0]], suffix="/c")


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether `shape` broadcasts one way to `target` (numpy rules, the target unchanged)."""
    if len(shape) > len(target):
        return False
    return all(d in (1, t) for d, t in zip(shape[::-1], target[::-1]))


def matmul(ctx: Context, node: onnx.NodeProto) -> None:
    a_shape = ctx.shape(node.input[0])
    b_tensor = ctx.tensor(node.input[1])
    if b_tensor.is_constant and b_tensor.data.ndim == 2 and len(a_shape) >= 2:
        w = ctx.add_constant(f"{node_name(node)}/w", np.ascontiguousarray(b_tensor.data.T))
        x = node.input[0]
        rows = math.prod(a_shape[:-1])
        if len(a_shape) != 2:
            x = ctx.add(node, "reshape", [x], {"shape": (rows, a_shape[-1])}, suffix="/flat")
            y = ctx.add(node, "dense", [x, w, ""], {"activation": NO_ACTIVATION})
            out_shape = (*a_shape[:-1], b_tensor.data.shape[1])
            ctx.add(node, "reshape", [y], {"shape": out_shape}, outputs=[node.output[0]], suffix="/unflat")
        else:
            ctx.add(node, "dense", [x, w, ""], {"activation": NO_ACTIVATION}, outputs=[node.output[0]])
        return
    ctx.add(node, "matmul", [node.input[0], node.input[1]], outputs=[node.output[0]])


def batch_norm(ctx: Context, node: onnx.NodeProto) -> None:
    if any(node.output[1:]) or attributes(node).get("training_mode", 0):
        raise ctx.error(node, "training-mode BatchNormalization (with running statistics outputs) is not "
                              "supported; export the model in inference mode")
    channels = ctx.shape(node.input[0])[1:2]
    scale, bias, mean, var = (ctx.float_constant(node, i, n) for i, n in
                              enumerate(("scale", "B", "mean", "var"), start=1))
    for what, value in zip(("scale", "B", "mean", "var"), (scale, bias, mean, var)):
        if value.shape != channels:
            raise ctx.error(node, f"{what} has shape {value.shape}; it must be {channels}, one value per channel "
                            f"of the input {ctx.shape(node.input[0])}")
    eps = float(attributes(node).get("epsilon", 1e-5))
    with np.errstate(invalid="ignore", divide="ignore"):  # a negative variance gives NaN, as in onnxruntime
        mul = scale.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    add = bias.astype(np.float64) - mean.astype(np.float64) * mul
    name = node_name(node)
    ins = [node.input[0], ctx.add_constant(f"{name}/scale", mul.astype(np.float32)),
           ctx.add_constant(f"{name}/shift", add.astype(np.float32))]
    ctx.add(node, "scale_shift", ins, {"activation": NO_ACTIVATION}, outputs=[node.output[0]])


def _activation(kind: str, alpha: Callable[[dict], float] = lambda a: 0.0,
                beta: Callable[[dict], float] = lambda a: 0.0) -> Converter:
    def convert(ctx: Context, node: onnx.NodeProto) -> None:
        a = attributes(node)
        act = Activation(kind, float(alpha(a)), float(beta(a)))
        ctx.add(node, "activation", [node.input[0]], {"activation": act}, outputs=[node.output[0]])
    return convert


def clip(ctx: Context, node: onnx.NodeProto) -> None:
    if ctx.opset >= 11:
        lo, hi = ctx.float_constant(node, 1, "min"), ctx.float_constant(node, 2, "max")
        for what, value in (("min", lo), ("max", hi)):
            if value is not None and value.size != 1:  # a scalar; onnxruntime also takes any one-value shape
                raise ctx.error(node, f"{what} must be a scalar, not shape {value.shape}")
        lo = -np.inf if lo is None else float(lo.reshape(-1)[0])
        hi = np.inf if hi is None else float(hi.reshape(-1)[0])
    else:
        a = attributes(node)
        lo, hi = float(a.get("min", -np.inf)), float(a.get("max", np.inf))
    act = Activation("relu") if lo == 0 and hi == np.inf else Activation("clip", lo, hi)
    ctx.add(node, "activation", [node.input[0]], {"activation": act}, outputs=[node.output[0]])


def _binary(op: str) -> Converter:
    def convert(ctx: Context, node: onnx.NodeProto) -> None:
        ctx.add(node, "binary", [node.input[0], node.input[1]],
                {"op": op, "activation": NO_ACTIVATION}, outputs=[node.output[0]])
    return convert


def gelu(ctx: Context, node: onnx.NodeProto) -> None:
    approximate = _decode(attributes(node).get("approximate", "none"))
    if approximate not in ("none", "tanh"):
        raise ctx.error(node, f"approximate='{approximate}' is not an ONNX Gelu mode (none or tanh)")
    act = Activation("gelu_tanh" if approximate == "tanh" else "gelu_erf")
    ctx.add(node, "activation", [node.input[0]], {"activation": act}, outputs=[node.output[0]])


def sum_(ctx: Context, node: onnx.NodeProto) -> None:
    if len(node.input) == 1:
        ctx.add(node, "copy", [node.input[0]], outputs=[node.output[0]])
        return
    acc = node.input[0]
    for i, other in enumerate(node.input[1:], start=1):
        last = i == len(node.input) - 1
        acc = ctx.add(node, "binary", [acc, other], {"op": "add", "activation": NO_ACTIVATION},
                      outputs=[node.output[0]] if last else None, suffix="" if last else f"/{i}")


def concat(ctx: Context, node: onnx.NodeProto) -> None:
    rank = len(ctx.shape(node.input[0]))
    axis = _axis(ctx, node, int(attributes(node)["axis"]), rank)
    inputs = [i for i in node.input if i and ctx.tensor(i).size > 0 or rank == 0]
    ctx.add(node, "concat", inputs or list(node.input[:1]), {"axis": axis}, outputs=[node.output[0]])


def _pool(mode: str) -> Converter:
    def convert(ctx: Context, node: onnx.NodeProto) -> None:
        if len(node.output) > 1 and node.output[1]:
            raise ctx.error(node, "the Indices output of MaxPool is not supported")
        a = attributes(node)
        kernel = tuple(int(k) for k in a["kernel_shape"])
        attrs = _spatial_attrs(ctx, node, ctx.shape(node.input[0]), kernel)
        pads = attrs["pads"]
        if "pads" in a and any(p >= kernel[i % len(kernel)] for i, p in enumerate(pads)):
            raise ctx.error(node, f"pads {list(pads)} must be smaller than the kernel {list(kernel)} "
                            "(a window would lie wholly in the padding)")
        if mode == "avg" and ctx.opset < 19:
            attrs["dilations"] = (1,) * len(kernel)
        attrs.update(mode=mode, kernel=kernel, ceil_mode=bool(a.get("ceil_mode", 0)),
                     count_include_pad=bool(a.get("count_include_pad", 0)))
        _spatial_layer(ctx, node, "pool2d", [node.input[0]], attrs)
    return convert


def global_avgpool(ctx: Context, node: onnx.NodeProto) -> None:
    ctx.add(node, "global_avgpool", [node.input[0]], outputs=[node.output[0]])


def reduce_mean(ctx: Context, node: onnx.NodeProto) -> None:
    a = attributes(node)
    rank = len(ctx.shape(node.input[0]))
    axes = _axes_input_or_attr(ctx, node, since=18)
    if axes is None or not axes:
        if a.get("noop_with_empty_axes", 0):
            ctx.alias(node.output[0], node.input[0])
            return
        axes = list(range(rank))
    axes = sorted({_axis(ctx, node, ax, rank) for ax in axes})
    ctx.add(node, "reduce", [node.input[0]], {"op": "mean", "axes": tuple(axes),
                                                "keepdims": bool(a.get("keepdims", 1))},
            outputs=[node.output[0]])


def _reshape_to(ctx: Context, node: onnx.NodeProto, shape: tuple[int, ...]) -> None:
    if shape == ctx.shape(node.input[0]):
        ctx.alias(node.output[0], node.input[0])
        return
    ctx.add(node, "reshape", [node.input[0]], {"shape": shape}, outputs=[node.output[0]])


def reshape(ctx: Context, node: onnx.NodeProto) -> None:
    target = [int(v) for v in ctx.constant(node, 1, "shape").reshape(-1)]
    x_shape = ctx.shape(node.input[0])
    allow_zero = attributes(node).get("allowzero", 0)
    if any(d < -1 for d in target) or (allow_zero and 0 in target and -1 in target):
        raise ctx.error(node, f"shape {target} is invalid (sizes are >= 0, or -1 once; with allowzero not both "
                        "0 and -1)")
    if any(d == 0 and not allow_zero and i >= len(x_shape) for i, d in enumerate(target)):
        raise ctx.error(node, f"shape {target} copies (0) an axis the input {x_shape} does not have")
    out = [x_shape[i] if d == 0 and not allow_zero else d for i, d in enumerate(target)]
    if out.count(-1) > 1:
        raise ctx.error(node, f"shape {target} has more than one -1")
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        out[out.index(-1)] = math.prod(x_shape) // known if known else 0
    if math.prod(out) != math.prod(x_shape):
        raise ctx.error(node, f"cannot reshape {x_shape} to {target}")
    _reshape_to(ctx, node, tuple(out))


def flatten(ctx: Context, node: onnx.NodeProto) -> None:
    x_shape = ctx.shape(node.input[0])
    axis = int(attributes(node).get("axis", 1))
    if not -len(x_shape) <= axis <= len(x_shape):
        raise ctx.error(node, f"axis {axis} is out of range for rank {len(x_shape)} "
                        f"(-{len(x_shape)} to {len(x_shape)})")
    axis = axis + len(x_shape) if axis < 0 else axis
    _reshape_to(ctx, node, (math.prod(x_shape[:axis]), math.prod(x_shape[axis:])))


def squeeze(ctx: Context, node: onnx.NodeProto) -> None:
    x_shape = ctx.shape(node.input[0])
    axes = _axes_input_or_attr(ctx, node, since=13)
    if axes is None:
        axes = [i for i, d in enumerate(x_shape) if d == 1]
    axes = _unique_axes(ctx, node, axes, len(x_shape))
    if any(x_shape[ax] != 1 for ax in axes):
        raise ctx.error(node, f"cannot squeeze axes {sorted(axes)} of shape {x_shape}")
    _reshape_to(ctx, node, tuple(d for i, d in enumerate(x_shape) if i not in axes))


def unsqueeze(ctx: Context, node: onnx.NodeProto) -> None:
    x_shape = ctx.shape(node.input[0])
    axes = _axes_input_or_attr(ctx, node, since=13)
    if axes is None:
        raise ctx.error(node, "axes are missing")
    rank = len(x_shape) + len(axes)
    axes = sorted(_unique_axes(ctx, node, axes, rank))
    out = list(x_shape)
    for ax in axes:
        out.insert(ax, 1)
    _reshape_to(ctx, node, tuple(out))


def transpose(ctx: Context, node: onnx.NodeProto) -> None:
    rank = len(ctx.shape(node.input[0]))
    perm = tuple(int(p) for p in attributes(node).get("perm", range(rank - 1, -1, -1)))
    if sorted(perm) != list(range(rank)):
        raise ctx.error(node, f"perm {list(perm)} is not a permutation of the {rank} axes of "
                        f"{ctx.shape(node.input[0])}")
    if perm == tuple(range(rank)):
        ctx.alias(node.output[0], node.input[0])
        return
    ctx.add(node, "transpose", [node.input[0]], {"perm": perm}, outputs=[node.output[0]])


def softmax(ctx: Context, node: onnx.NodeProto) -> None:
    x_shape = ctx.shape(node.input[0])
    rank = len(x_shape)
    default = -1 if ctx.opset >= 13 else 1
    axis = _axis(ctx, node, int(attributes(node).get("axis", default)), rank)
    if ctx.opset >= 13 or axis == rank - 1:
        ctx.add(node, "softmax", [node.input[0]], {"axis": axis}, outputs=[node.output[0]])
        return
    # Before opset 13 the input is seen as a matrix [prod(:axis), prod(axis:)].
    flat = ctx.add(node, "reshape", [node.input[0]],
                   {"shape": (math.prod(x_shape[:axis]), math.prod(x_shape[axis:]))}, suffix="/2d")
    y = ctx.add(node, "softmax", [flat], {"axis": 1})
    ctx.add(node, "reshape", [y], {"shape": x_shape}, outputs=[node.output[0]], suffix="/nd")


def pad(ctx: Context, node: onnx.NodeProto) -> None:
    a = attributes(node)
    rank = len(ctx.shape(node.input[0]))
    mode = _decode(a.get("mode", "constant"))
    if ctx.opset >= 11:
        pads_value = ctx.constant(node, 1, "pads")
        if pads_value.dtype != np.int64:
            raise ctx.error(node, f"pads must be int64, not {pads_value.dtype}")
        pads = [int(v) for v in pads_value.reshape(-1)]
        value = ctx.float_constant(node, 2, "constant_value")
        value = 0.0 if value is None else float(value.reshape(-1)[0]) if value.size else 0.0
        axes = ctx.constant(node, 3, "axes") if ctx.opset >= 18 else None
        if axes is not None:
            full = [0] * (2 * rank)
            ax_list = [_axis(ctx, node, int(v), rank) for v in axes.reshape(-1)]
            _unique_axes(ctx, node, ax_list, rank)
            if len(pads) != 2 * len(ax_list):
                raise ctx.error(node, f"pads {pads} must hold two values per axis of {ax_list}")
            for i, ax in enumerate(ax_list):
                full[ax], full[ax + rank] = pads[i], pads[i + len(ax_list)]
            pads = full
    else:
        pads, value = list(a.get("pads", a.get("paddings", []))), float(a.get("value", 0.0))
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise ctx.error(node, f"pad mode '{mode}' is not supported (constant, reflect, edge, wrap are)")
    if any(p < 0 for p in pads):
        raise ctx.error(node, f"negative pads {pads} are not supported")
    if len(pads) != 2 * rank:
        raise ctx.error(node, f"pads {pads} do not match rank {rank}")
    if not any(pads):
        ctx.alias(node.output[0], node.input[0])
        return
    ctx.add(node, "pad", [node.input[0]], {"pads": tuple(pads), "mode": mode, "value": value},
            outputs=[node.output[0]])


def lrn(ctx: Context, node: onnx.NodeProto) -> None:
    a = attributes(node)
    if int(a["size"]) < 1:
        raise ctx.error(node, f"size {a['size']} must be positive")
    attrs = {"size": int(a["size"]), "alpha": float(a.get("alpha", 1e-4)),
             "beta": float(a.get("beta", 0.75)), "bias": float(a.get("bias", 1.0))}
    ctx.add(node, "lrn", [node.input[0]], attrs, outputs=[node.output[0]])


def identity(ctx: Context, node: onnx.NodeProto) -> None:
    ctx.alias(node.output[0], node.input[0])


def dropout(ctx: Context, node: onnx.NodeProto) -> None:
    training = ctx.constant(node, 2, "training_mode") if ctx.opset >= 12 else None
    if training is not None and bool(training.reshape(-1)[0]):
        raise ctx.error(node, "training-mode Dropout is random; export the model in inference mode")
    if len(node.output) > 1 and node.output[1]:
        ctx.graph.tensors[node.output[1]] = Tensor(
            node.output[1], ctx.shape(node.input[0]), DType.BOOL,
            np.ones(ctx.shape(node.input[0]), dtype=bool))
    ctx.alias(node.output[0], node.input[0])


def constant(ctx: Context, node: onnx.NodeProto) -> None:
    a = attributes(node)
    if len(a) != 1:
        raise ctx.error(node, f"must have exactly one value attribute, not {sorted(a)}")
    if "value" in a:
        value = validate.tensor_array(a["value"], ctx.source, f"node '{node_name(node)}' value")
    elif "value_float" in a:
        value = np.array(a["value_float"], dtype=np.float32)
    elif "value_floats" in a:
        value = np.array(a["value_floats"], dtype=np.float32)
    elif "value_int" in a:
        value = np.array(a["value_int"], dtype=np.int64)
    elif "value_ints" in a:
        value = np.array(a["value_ints"], dtype=np.int64)
    else:
        raise ctx.error(node, f"constant kind {sorted(a)} is not supported")
    ctx.graph.tensors[node.output[0]] = Tensor(node.output[0], tuple(value.shape),
                                               _dtype(ctx.source, value.dtype, node.output[0]), value)


def shape(ctx: Context, node: onnx.NodeProto) -> None:
    a = attributes(node)
    dims = np.array(ctx.shape(node.input[0]), dtype=np.int64)
    start, end = int(a.get("start", 0)), a.get("end")
    value = dims[start:] if end is None else dims[start:int(end)]
    ctx.graph.tensors[node.output[0]] = Tensor(node.output[0], value.shape, DType.I64, value)


def gather(ctx: Context, node: onnx.NodeProto) -> None:
    rank = len(ctx.shape(node.input[0]))
    axis = _axis(ctx, node, int(attributes(node).get("axis", 0)), rank)
    ctx.add(node, "gather", [node.input[0], node.input[1]], {"axis": axis}, outputs=[node.output[0]])


def cast(ctx: Context, node: onnx.NodeProto) -> None:
    to = validate.element_dtype(int(attributes(node)["to"]), ctx.source, f"node '{node_name(node)}' (Cast) 'to'")
    dtype = _dtype(ctx.source, to, node.output[0])
    if dtype == ctx.tensor(node.input[0]).dtype:
        ctx.alias(node.output[0], node.input[0])
        return
    ctx.add(node, "cast", [node.input[0]], {"to": dtype}, outputs=[node.output[0]])


OPS: dict[str, Converter] = {
    "Conv": conv,
    "Gemm": gemm,
    "MatMul": matmul,
    "BatchNormalization": batch_norm,
    "Relu": _activation("relu"),
    "Clip": clip,
    "LeakyRelu": _activation("leaky_relu", alpha=lambda a: a.get("alpha", 0.01)),
    "Sigmoid": _activation("sigmoid"),
    "HardSigmoid": _activation("hard_sigmoid", alpha=lambda a: a.get("alpha", 0.2),
                               beta=lambda a: a.get("beta", 0.5)),
    "HardSwish": _activation("hard_swish"),
    "Tanh": _activation("tanh"),
    "Erf": _activation("erf"),
    "Softplus": _activation("softplus"),
    "Mish": _activation("mish"),
    "Gelu": gelu,
    "Add": _binary("add"),
    "Sub": _binary("sub"),
    "Mul": _binary("mul"),
    "Div": _binary("div"),
    "Sum": sum_,
    "Concat": concat,
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": global_avgpool,
    "ReduceMean": reduce_mean,
    "Reshape": reshape,
    "Flatten": flatten,
    "Transpose": transpose,
    "Squeeze": squeeze,
    "Unsqueeze": unsqueeze,
    "Softmax": softmax,
    "Pad": pad,
    "LRN": lrn,
    "Dropout": dropout,
    "Identity": identity,
    "Constant": constant,
    "Shape": shape,
    "Gather": gather,
    "Cast": cast,
}

SUPPORTED_OPS = tuple(sorted(OPS))


# -- loading ---------------------------------------------------------------------------

def _dtype(source: str, np_dtype: Any, what: str) -> DType:
    try:
        return DType.from_numpy(np.dtype(np_dtype))
    except Exception:
        raise ModelError(f"{source}: '{what}' has element type {np_dtype}, which is not supported") from None


def read_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Read an .onnx file and its external-data files, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several types for corrupt input
        raise ModelError(f"{path}: not a valid ONNX file ({type(exc).__name__}: {exc}); "
                         "is it truncated or another format?") from None
    if not model.graph.node and not model.graph.output:
        raise ModelError(f"{path}: the file holds no ONNX graph; is it truncated or another format?")
    validate.check_text(model, str(path))
    base = path.resolve().parent
    try:
        tensors = list(onnx.external_data_helper._get_all_tensors(model))
    except Exception as exc:
        raise ModelError(f"{path}: cannot read the model's tensors ({type(exc).__name__}: {exc})") from None
    external = [t for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL]
    for tensor in external:
        validate.check_external_info(tensor, base, str(path))
    if external:
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(base))
        except Exception as exc:
            raise ModelError(f"{path}: cannot read external data ({type(exc).__name__}: {exc})") from None
    return model


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 1


def unsupported_ops(model: onnx.ModelProto) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for node in model.graph.node:
        key = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        if key not in OPS:
            found.setdefault(key, []).append(node_name(node))
    return found


def _declared_shape(value: onnx.ValueInfoProto) -> list[io_shapes.Dim] | None:
    """The input's dims as the model declares them: sizes, or names (or "?") for free ones."""
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or io_shapes.UNKNOWN)
            for d in tensor_type.shape.dim]


def _input_shape(source: str, value: onnx.ValueInfoProto, given: tuple[int, ...] | None) -> tuple[int, ...]:
    """A run-time input's shape as it compiles (float32 only), every size in the C API's range."""
    what = f"input '{value.name}'"
    if not value.type.HasField("tensor_type"):
        raise ModelError(f"{source}: {what} is not a tensor; only float32 tensor inputs are supported")
    dtype = validate.element_dtype(value.type.tensor_type.elem_type, source, what)
    if dtype != np.float32:
        raise ModelError(f"{source}: {what} is {dtype.name}; only float32 inputs are supported")
    shape = io_shapes.resolve(source, value.name, _declared_shape(value), given)
    problem = size_problem(shape, 4)
    if problem:
        raise ModelError(f"{source}: {what}: {problem}")
    return shape


def import_model(model: onnx.ModelProto | str | os.PathLike, *,
                 input_shapes: dict[str, tuple[int, ...]] | None = None,
                 source: str | None = None) -> Graph:
    """Convert an ONNX model (a path or a ModelProto) to an IR graph.

    The whole model is checked first (validate: the ONNX checker's full check and neurogen's own), so a
    model that onnxruntime refuses as invalid is refused here too, with one message saying why."""
    path = None
    if not isinstance(model, onnx.ModelProto):
        source = source or str(model)
        path = Path(model)
        model = read_model(model)
    source = source or (model.graph.name if isinstance(model.graph.name, str) and model.graph.name else "model")
    validate.check_text(model, source)
    given = dict(input_shapes or {})
    opset = default_opset(model)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ModelError(f"{source}: opset {opset} is not supported (opsets {MIN_OPSET} to {MAX_OPSET} are); "
                         "convert it with onnx.version_converter")
    missing = unsupported_ops(model)
    if missing:
        raise UnsupportedOpsError(source, missing)

    g = model.graph
    validate.check_graph(model, source)
    for node in g.node:
        validate.check_node(node, opset, source)
    # Constants first: their checks say more than the checker's (which name the tensor only).
    values = {init.name: validate.tensor_array(init, source, "initializer") for init in g.initializer}
    runtime_inputs = [v for v in g.input if v.name not in values]  # IR < 4 lists initializers too
    io_shapes.check_names(source, given, [v.name for v in runtime_inputs])
    shapes = {v.name: _input_shape(source, v, given.get(v.name)) for v in runtime_inputs}
    validate.run_checker(model, source, shapes, path)

    graph = Graph(name=g.name or "model", tensors={}, layers=[], inputs=[], outputs=[])
    for name, value in values.items():
        graph.tensors[name] = Tensor(name, tuple(value.shape), _dtype(source, value.dtype, name), value)
    for value in runtime_inputs:
        shape = shapes[value.name]
        layout = Layout.NCHW if len(shape) == 4 else Layout.ANY
        graph.tensors[value.name] = Tensor(value.name, shape, DType.F32, layout=layout)
        graph.inputs.append(value.name)

    ctx = Context(graph, opset, source)
    for node in g.node:
        try:
            OPS[node.op_type](ctx, node)
        except ModelError:
            raise
        except NeurogenError as exc:  # e.g. a shape check in the IR: give it the node's name
            raise ctx.error(node, str(exc)) from None
        except (KeyError, IndexError, ValueError, TypeError, ArithmeticError) as exc:
            # A check this converter lacks: still one message naming the node, never a traceback.
            raise ctx.error(node, f"cannot convert ({type(exc).__name__}: {validate.shorten(str(exc))})") from None
    validate.check_value_info_types(model, {v.name: graph.tensors[ctx.name(v.name)].dtype.numpy for v in g.value_info
                                            if ctx.name(v.name) in graph.tensors}, source)
    graph.outputs = [ctx.name(v.name) for v in g.output]
    for value, name in zip(g.output, graph.outputs):
        dtype = graph.tensor(name).dtype
        if dtype != DType.F32:
            raise ModelError(f"{source}: output '{value.name}' is {dtype.numpy.name}; the generated code computes "
                             "float32 outputs only")
    _name_outputs(graph, [v.name for v in g.output])
    graph.prune().validate()
    weights = sum(t.nbytes for t in graph.constants())
    if weights > MAX_BYTES:
        raise ModelError(f"{source}: the model's constants take {weights} bytes, more than a 32-bit size_t "
                         f"addresses ({MAX_BYTES}); the model is too large for the generated code")
    return graph


def _name_outputs(graph: Graph, onnx_names: list[str]) -> None:
    """Give every graph output its ONNX name and its own producing layer.

    An output that a layer computes takes the ONNX name (its producer is renamed);
    one that is a graph input, a constant, or the same tensor as an earlier output
    gets a copy layer, so that the generated code writes each output buffer.
    """
    producers = graph.producers()
    claimed: set[str] = set()
    for i, wanted in enumerate(onnx_names):
        current = graph.outputs[i]  # re-read: an earlier rename may have changed it
        if current == wanted and current in producers and current not in claimed:
            claimed.add(current)
            continue
        tensor = graph.tensor(current)
        target = wanted if wanted not in graph.tensors else graph.unique_name(wanted)
        graph.tensors[target] = Tensor(target, tensor.shape, tensor.dtype, layout=tensor.layout)
        if current in producers and current not in claimed and current not in graph.inputs:
            layer = producers.pop(current)
            layer.outputs[layer.outputs.index(current)] = target
            del graph.tensors[current]
            for other in graph.layers:
                other.inputs = [target if n == current else n for n in other.inputs]
            graph.outputs = [target if n == current else n for n in graph.outputs]
            producers[target] = layer
        else:
            graph.layers.append(Layer(graph.unique_name(f"output:{wanted}"), "copy", [current], [target]))
            graph.outputs[i] = target
        claimed.add(target)
