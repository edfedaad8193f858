"""TensorFlow / Keras -> IR. Every format becomes a frozen GraphDef; one op table (`OPS`) converts it.

Layout: TensorFlow images are NHWC; IR layer semantics are logical NCHW. Every 4-D
run-time tensor of the TF graph is held in the IR as the NCHW view of the same data,
and the graph's 4-D inputs and outputs are marked `Layout.NHWC`, so the generated C
reads and writes NHWC and conv/pool chains need no transposes. Converters map NHWC
axes (concat, mean, pad, softmax) and weights (HWIO -> OIHW); only reshapes that
really reorder data (Flatten of an NHWC image) become transpose layers.

Constants stay in TensorFlow's own order (numpy arrays) until a converter turns them
into IR weights. A node whose inputs are all constant is evaluated while converting
(numpy for the arithmetic of folded BatchNorms, TensorFlow itself for anything else),
so shape computations and Keras's BatchNorm arithmetic never reach the graph.

TensorFlow is imported lazily: `import codegen` does not need it.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, NeurogenError, UnsupportedOpsError
from ..ir import NO_ACTIVATION, Activation, DType, Graph, Layer, Layout, Tensor
from ..shapes import infer
from . import inputs as io_shapes
from .onnx import _name_outputs

INSTALL_HINT = "pip install 'neurogen[tf]'"
TF_SUFFIXES = (".keras", ".h5", ".hdf5", ".pb")

# TF axis of a 4-D NHWC tensor -> IR (NCHW) axis, and the permutations between the two orders.
NHWC_AXIS_TO_IR = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)
NCHW_TO_NHWC = (0, 2, 3, 1)


def tensorflow() -> Any:
    """The tensorflow module, or a ModelError that says which extra to install."""
    try:
        import tensorflow as tf
    except ImportError:
        raise ModelError(f"TensorFlow is not installed; TensorFlow and Keras models need it: {INSTALL_HINT}") \
            from None
    return tf


# -- loading: every format -> a frozen GraphDef ---------------------------------------

@dataclass
class FrozenGraph:
    """A GraphDef without variables, and the public names of its inputs and outputs."""

    graph_def: Any  # tf.compat.v1.GraphDef
    inputs: list[str]  # Placeholder node names
    outputs: list[tuple[str, str]]  # (public name, TF tensor name)


def _freeze(function: Any, output_names: list[str] | None) -> FrozenGraph:
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(function)
    inputs = [t.name.split(":")[0] for t in frozen.inputs if t.dtype.name != "resource"]
    tensors = [t.name for t in frozen.outputs]
    names = output_names if output_names and len(output_names) == len(tensors) else \
        [f"output_{i}" for i in range(len(tensors))]
    return FrozenGraph(frozen.graph.as_graph_def(), inputs, list(zip(names, tensors)))


def _load_keras(path: Path) -> FrozenGraph:
    tf = tensorflow()
    import keras

    try:
        model = keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # keras raises many types for unreadable files
        raise ModelError(f"{path}: Keras cannot load it ({type(exc).__name__}: {exc})") from None
    specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name) for t in model.inputs]
    fn = tf.function(lambda *xs: model(xs[0] if len(xs) == 1 else list(xs), training=False))
    return _freeze(fn.get_concrete_function(*specs), None)


def saved_model_signature(path: Path) -> tuple[Any, Any]:
    """The loaded SavedModel and the function it serves: its `serving_default` signature, else its first
    one. Keep the first alive while the function is used: it owns the variables the function reads."""
    tf = tensorflow()
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise ModelError(f"{path}: not a readable SavedModel ({type(exc).__name__}: {exc})") from None
    signatures = dict(loaded.signatures)
    if not signatures:
        raise ModelError(f"{path}: the SavedModel has no signatures; export it with model.export() "
                         "or tf.saved_model.save(..., signatures=...)")
    return loaded, signatures.get("serving_default") or signatures[sorted(signatures)[0]]


def _load_saved_model(path: Path) -> FrozenGraph:
    loaded, function = saved_model_signature(path)
    structured = function.structured_outputs
    names = sorted(structured) if isinstance(structured, dict) else None  # flattened in key order
    frozen = _freeze(function, names)
    del loaded  # frozen: the variables are constants now
    return frozen


def _load_pb(path: Path) -> FrozenGraph:
    tf = tensorflow()
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception as exc:
        raise ModelError(f"{path}: not a frozen GraphDef ({type(exc).__name__}: {exc}); "
                         "for a SavedModel, give its folder") from None
    if not graph_def.node:
        raise ModelError(f"{path}: the GraphDef holds no nodes")
    if any(n.op in ("VarHandleOp", "VariableV2", "ReadVariableOp") for n in graph_def.node):
        raise ModelError(f"{path}: the GraphDef still has variables; freeze it first "
                         "(convert_variables_to_constants_v2) or give the SavedModel folder")
    consumed = {_tensor_name(i).split(":")[0] for n in graph_def.node for i in n.input}
    inputs = [n.name for n in graph_def.node if n.op == "Placeholder"]
    outputs = [(n.name, f"{n.name}:0") for n in graph_def.node
               if n.name not in consumed and n.op not in ("Const", "NoOp", "Placeholder", "Assert")]
    return FrozenGraph(graph_def, inputs, outputs)


def load(path: str | os.PathLike) -> FrozenGraph:
    """Read a SavedModel folder, .keras/.h5 file or frozen .pb as a frozen GraphDef."""
    path = Path(path)
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ModelError(f"{path}: a folder is read as a SavedModel, but it has no saved_model.pb")
        return _load_saved_model(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    if path.suffix.lower() in (".keras", ".h5", ".hdf5"):
        return _load_keras(path)
    return _load_pb(path)


# -- conversion state -------------------------------------------------------------------

def _tensor_name(name: str) -> str:
    """'node' and 'node:0' are the same tensor; '^node' (a control input) is not data."""
    return name if ":" in name else f"{name}:0"


def data_inputs(node: Any) -> list[str]:
    return [_tensor_name(i) for i in node.input if not i.startswith("^")]


def _attr(node: Any, key: str, default: Any = None) -> Any:
    if key not in node.attr:
        return default
    value = node.attr[key]
    kind = value.WhichOneof("value")
    if kind == "list":
        return list(value.list.i) or list(value.list.f) or [s.decode() for s in value.list.s]
    if kind == "s":
        return value.s.decode()
    return getattr(value, kind) if kind else default


@dataclass
class Context:
    """The graph being built; TF tensor name -> IR tensor name (run time) or numpy value (constant)."""

    graph: Graph
    source: str
    nodes: dict[str, Any]
    names: dict[str, str] = field(default_factory=dict)
    consts: dict[str, np.ndarray] = field(default_factory=dict)

    def error(self, node: Any, message: str) -> ModelError:
        return ModelError(f"{self.source}: node '{node.name}' ({node.op}): {message}")

    def const(self, tf_name: str) -> np.ndarray | None:
        return self.consts.get(tf_name)

    def need_const(self, node: Any, index: int, what: str) -> np.ndarray:
        value = self.const(data_inputs(node)[index])
        if value is None:
            raise self.error(node, f"{what} (input {index}) must be a constant; neurogen compiles weights "
                                   "and shapes into the code")
        return value

    def runtime(self, node: Any, index: int) -> str:
        """IR name of a run-time input (a 4-D one is the NCHW view of TF's NHWC tensor)."""
        tf_name = data_inputs(node)[index]
        if tf_name in self.names:
            return self.names[tf_name]
        if tf_name in self.consts:
            return self.weight(node.name, self.consts[tf_name])
        raise self.error(node, f"input '{tf_name}' is never computed")

    def shape(self, ir_name: str) -> tuple[int, ...]:
        return self.graph.shape(ir_name)

    def weight(self, base: str, value: np.ndarray) -> str:
        """A TF-order constant as an IR weight (4-D ones as the NCHW view)."""
        value = np.asarray(value)
        if value.ndim == 4:
            value = value.transpose(NHWC_TO_NCHW)
        if value.dtype != np.float32 and value.dtype.kind == "f":
            value = value.astype(np.float32)
        name = self.graph.unique_name(f"{base}/const")
        value = np.ascontiguousarray(value)
        self.graph.tensors[name] = Tensor(name, tuple(value.shape), DType.from_numpy(value.dtype), value)
        return name

    def add(self, node: Any, kind: str, inputs: list[str], attrs: dict[str, Any] | None = None,
            output: bool = True, suffix: str = "") -> str:
        """Append a layer; with `output`, it computes the node's first output."""
        g = self.graph
        layer_name = g.unique_name(node.name + suffix)
        out = g.unique_name(f"{node.name}{suffix}:0")
        layer = Layer(layer_name, kind, inputs, [out], attrs or {})
        shape = infer(layer, g)[0]
        layout = Layout.NHWC if len(shape) == 4 else Layout.ANY
        g.tensors[out] = Tensor(out, shape, DType.F32, layout=layout)
        g.layers.append(layer)
        if output:
            self.names[f"{node.name}:0"] = out
        return out

    def alias(self, node: Any, ir_name: str) -> None:
        self.names[f"{node.name}:0"] = ir_name


# -- layout helpers -------------------------------------------------------------------------

def ir_axis(axis: int, rank: int) -> int:
    axis = axis % rank
    return NHWC_AXIS_TO_IR[axis] if rank == 4 else axis


def tf_shape(ir_shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(ir_shape[p] for p in NCHW_TO_NHWC) if len(ir_shape) == 4 else ir_shape


def _moves_data(shape: tuple[int, ...], perm: tuple[int, ...]) -> bool:
    """Whether transposing changes the element order (it does not when only size-1 axes move)."""
    kept = [p for p in perm if shape[p] != 1]
    return kept != sorted(kept)


def to_tf_order(ctx: Context, node: Any, x: str) -> str:
    """A tensor whose logical shape is TF's: 4-D views become NHWC (a transpose only if data moves)."""
    shape = ctx.shape(x)
    if len(shape) != 4:
        return x
    nhwc = tf_shape(shape)
    if _moves_data(shape, NCHW_TO_NHWC):
        return ctx.add(node, "transpose", [x], {"perm": NCHW_TO_NHWC}, output=False, suffix="/to_nhwc")
    return ctx.add(node, "reshape", [x], {"shape": nhwc}, output=False, suffix="/to_nhwc")


def from_tf_order(ctx: Context, node: Any, x: str, shape: tuple[int, ...]) -> str:
    """Reshape a TF-order tensor to TF shape `shape` and take the IR view of it; computes the node."""
    if len(shape) != 4:
        if shape == ctx.shape(x):
            ctx.alias(node, x)
            return x
        return ctx.add(node, "reshape", [x], {"shape": shape})
    nchw = tuple(shape[p] for p in NHWC_TO_NCHW)
    if not _moves_data(shape, NHWC_TO_NCHW):
        if nchw == ctx.shape(x):
            ctx.alias(node, x)
            return x
        return ctx.add(node, "reshape", [x], {"shape": nchw})
    if ctx.shape(x) != shape:
        x = ctx.add(node, "reshape", [x], {"shape": shape}, output=False, suffix="/nhwc")
    return ctx.add(node, "transpose", [x], {"perm": NHWC_TO_NCHW})


def reshape_to(ctx: Context, node: Any, x: str, target: tuple[int, ...]) -> str:
    """TF's reshape of run-time tensor `x` (an IR name) to TF shape `target`."""
    x_shape = ctx.shape(x)
    if len(x_shape) == 4 and len(target) == 4 and tf_shape(x_shape) == target:
        ctx.alias(node, x)
        return x
    return from_tf_order(ctx, node, to_tf_order(ctx, node, x), target)


def _resolve_shape(ctx: Context, node: Any, target: list[int], size: int) -> tuple[int, ...]:
    out = list(target)
    if out.count(-1) > 1:
        raise ctx.error(node, f"shape {target} has more than one -1")
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        out[out.index(-1)] = size // known if known else 0
    if math.prod(out) != size:
        raise ctx.error(node, f"cannot reshape {size} elements to {target}")
    return tuple(out)


# -- converters ----------------------------------------------------------------------------

Converter = Callable[[Context, Any], None]


def same_pads(x_shape: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, ...],
              dilations: tuple[int, ...]) -> tuple[int, int, int, int]:
    """TF's SAME padding (t, l, b, r) of an IR (NCHW) shape: the odd pixel goes at the end."""
    begins, ends = [], []
    for size, k, s, d in zip(x_shape[2:], kernel, strides, dilations):
        total = max(0, (-(-size // s) - 1) * s + d * (k - 1) + 1 - size)
        begins.append(total // 2)
        ends.append(total - total // 2)
    return (begins[0], begins[1], ends[0], ends[1])


def _spatial(ctx: Context, node: Any, x_shape: tuple[int, ...], kernel: tuple[int, int]) -> dict[str, Any]:
    """strides, pads (t, l, b, r) and dilations of an NHWC op; SAME puts the odd pixel at the end."""
    if _attr(node, "data_format", "NHWC") != "NHWC":
        raise ctx.error(node, "only data_format NHWC is supported")
    strides = tuple(_attr(node, "strides", [1, 1, 1, 1])[1:3])
    dilations = tuple(_attr(node, "dilations", [1, 1, 1, 1])[1:3])
    padding = _attr(node, "padding", "VALID")
    if padding == "SAME":
        pads = same_pads(x_shape, kernel, strides, dilations)
    elif padding == "EXPLICIT":
        p = _attr(node, "explicit_paddings")
        pads = (p[2], p[4], p[3], p[5])
    else:
        pads = (0, 0, 0, 0)
    return {"strides": strides, "pads": pads, "dilations": dilations}


def conv2d(ctx: Context, node: Any) -> None:
    x = ctx.runtime(node, 0)
    w = ctx.need_const(node, 1, "filter")  # HWIO
    attrs = _spatial(ctx, node, ctx.shape(x), w.shape[:2])
    group = ctx.shape(x)[1] // w.shape[2]  # TF infers grouped convolutions from the filter
    attrs.update(group=group, activation=NO_ACTIVATION)
    w_ir = _oihw(ctx, node, w.transpose(3, 2, 0, 1))
    ctx.add(node, "conv2d", [x, w_ir, ""], attrs)


def _oihw(ctx: Context, node: Any, w: np.ndarray) -> str:
    name = ctx.graph.unique_name(f"{node.name}/w")
    w = np.ascontiguousarray(w.astype(np.float32))
    ctx.graph.tensors[name] = Tensor(name, tuple(w.shape), DType.F32, w)
    return name


def depthwise_conv2d(ctx: Context, node: Any) -> None:
    x = ctx.runtime(node, 0)
    w = ctx.need_const(node, 1, "filter")  # H, W, C, multiplier; output channel c*M + m
    kh, kw, c, m = w.shape
    attrs = _spatial(ctx, node, ctx.shape(x), (kh, kw))
    attrs.update(group=c, activation=NO_ACTIVATION)
    w_ir = _oihw(ctx, node, w.reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None])
    ctx.add(node, "conv2d", [x, w_ir, ""], attrs)


def matmul(ctx: Context, node: Any) -> None:
    if _attr(node, "transpose_a", False) or _attr(node, "adj_x", False):
        raise ctx.error(node, "a transposed first operand is not supported")
    x = ctx.runtime(node, 0)
    w = ctx.need_const(node, 1, "weights")
    if w.ndim != 2 or len(ctx.shape(x)) != 2:
        raise ctx.error(node, f"only 2-D matrix products are supported (shapes {ctx.shape(x)} and {w.shape})")
    transposed = _attr(node, "transpose_b", False) or _attr(node, "adj_y", False)
    ctx.add(node, "dense", [x, _oihw(ctx, node, w if transposed else w.T), ""], {"activation": NO_ACTIVATION})


def fused_batch_norm(ctx: Context, node: Any) -> None:
    if _attr(node, "is_training", False):
        raise ctx.error(node, "training-mode batch normalization is not supported; save the model for inference")
    if _attr(node, "data_format", "NHWC") != "NHWC":
        raise ctx.error(node, "only data_format NHWC is supported")
    x = ctx.runtime(node, 0)
    gamma, beta, mean, var = (ctx.need_const(node, i, n).astype(np.float64)
                              for i, n in enumerate(("scale", "offset", "mean", "variance"), start=1))
    scale = gamma / np.sqrt(var + float(_attr(node, "epsilon", 1e-3)))
    _scale_shift(ctx, node, x, scale, beta - mean * scale)


def _scale_shift(ctx: Context, node: Any, x: str, scale: np.ndarray, shift: np.ndarray) -> None:
    c = ctx.shape(x)[1]
    scale = np.broadcast_to(scale, (c,)).astype(np.float32)
    shift = np.broadcast_to(shift, (c,)).astype(np.float32)
    ctx.add(node, "scale_shift", [x, _oihw(ctx, node, scale), _oihw(ctx, node, shift)],
            {"activation": NO_ACTIVATION})


def _activation(kind: str, alpha: float = 0.0, beta: float = 0.0) -> Converter:
    def convert(ctx: Context, node: Any) -> None:
        a = float(_attr(node, "alpha", alpha)) if kind == "leaky_relu" else alpha
        ctx.add(node, "activation", [ctx.runtime(node, 0)], {"activation": Activation(kind, a, beta)})
    return convert


def _channel_vector(value: np.ndarray, x_shape: tuple[int, ...]) -> np.ndarray | None:
    """The per-channel vector a TF-order constant is, when it broadcasts along the channel axis only."""
    if len(x_shape) < 2 or value.ndim > len(x_shape) or value.size not in (1, x_shape[1]):
        return None
    tf_x = tf_shape(x_shape)
    padded = (1,) * (len(tf_x) - value.ndim) + value.shape
    channel = len(tf_x) - 1 if len(tf_x) == 4 else 1
    if any(d != 1 for i, d in enumerate(padded) if i != channel):
        return None
    return value.reshape(-1).astype(np.float64)


def _const_operand(ctx: Context, node: Any, value: np.ndarray, x_shape: tuple[int, ...]) -> str:
    """A TF-order constant broadcast against IR tensor shape `x_shape`, as an IR weight."""
    if len(x_shape) == 4 and value.ndim < 4:
        value = value.reshape((1,) * (4 - value.ndim) + value.shape)
    return ctx.weight(node.name, value)


def _hard_sigmoid_input(ctx: Context, node: Any) -> str | None:
    """TF name of x when `node` is relu6(x + 3) / 6 or relu6(x + 3) * (1/6): Keras's hard sigmoid."""
    scale = {"Mul": 6.0, "RealDiv": 1 / 6}.get(node.op)
    names = data_inputs(node)
    if scale is None or len(names) != 2:
        return None
    for relu_name, c_name in (names, names[::-1]):
        c, relu = ctx.const(c_name), ctx.nodes.get(relu_name.split(":")[0])
        if c is None or c.size != 1 or not np.isclose(float(c.reshape(-1)[0]) * scale, 1.0) or relu is None:
            continue
        if relu.op != "Relu6" or (node.op == "RealDiv" and relu_name != names[0]):
            continue
        add = ctx.nodes.get(data_inputs(relu)[0].split(":")[0])
        if add is None or add.op not in ("AddV2", "Add"):
            continue
        for x_name, three in (data_inputs(add), data_inputs(add)[::-1]):
            t = ctx.const(three)
            if t is not None and t.size == 1 and float(t.reshape(-1)[0]) == 3.0 and x_name in ctx.names:
                return x_name
    return None


BINARY_OPS = {"AddV2": "add", "Add": "add", "BiasAdd": "add", "Sub": "sub", "Mul": "mul", "RealDiv": "div"}


def binary(ctx: Context, node: Any) -> None:
    hs_input = _hard_sigmoid_input(ctx, node)
    if hs_input is not None:
        ctx.add(node, "activation", [ctx.names[hs_input]], {"activation": Activation("hard_sigmoid", 1 / 6, 0.5)})
        return
    binary_op(ctx, node, BINARY_OPS[node.op])


def binary_op(ctx: Context, node: Any, op: str) -> None:
    """An element-wise add/sub/mul/div; a per-channel constant after a conv becomes a scale_shift."""
    a_name, b_name = data_inputs(node)
    a_const, b_const = ctx.const(a_name), ctx.const(b_name)
    if a_const is None and b_const is None:
        a, b = ctx.runtime(node, 0), ctx.runtime(node, 1)
        a, b = _same_rank(ctx, node, a, b)
        ctx.add(node, "binary", [a, b], {"op": op, "activation": NO_ACTIVATION})
        return
    x, value, x_first = (ctx.runtime(node, 0), b_const, True) if b_const is not None \
        else (ctx.runtime(node, 1), a_const, False)
    if _fold_as_scale_shift(ctx, node, op, x, value, x_first):
        return
    c = _const_operand(ctx, node, value, ctx.shape(x))
    ctx.add(node, "binary", [x, c] if x_first else [c, x], {"op": op, "activation": NO_ACTIVATION})


def _same_rank(ctx: Context, node: Any, a: str, b: str) -> tuple[str, str]:
    """A lower-rank run-time operand broadcast against a 4-D one: make it a 4-D view too."""
    ra, rb = len(ctx.shape(a)), len(ctx.shape(b))
    if ra == rb or 4 not in (ra, rb):
        return a, b
    low = a if ra < rb else b
    shape = ctx.shape(low)
    nhwc = (1,) * (4 - len(shape)) + shape
    name = ctx.add(node, "reshape", [low], {"shape": nhwc}, output=False, suffix="/rank4")
    name = ctx.add(node, "transpose", [name], {"perm": NHWC_TO_NCHW}, output=False, suffix="/view")
    return (name, b) if low == a else (a, name)


def _fold_as_scale_shift(ctx: Context, node: Any, op: str, x: str, value: np.ndarray, x_first: bool) -> bool:
    """A per-channel constant after a conv or dense becomes a scale_shift, which folds into it."""
    producer = next((layer for layer in ctx.graph.layers if x in layer.outputs), None)
    if producer is None or producer.kind not in ("conv2d", "dense", "scale_shift"):
        return False
    vec = _channel_vector(value, ctx.shape(x))
    if vec is None or (op == "div" and not x_first) or np.any(vec == 0) and op == "div":
        return False
    one, zero = np.ones_like(vec), np.zeros_like(vec)
    scale, shift = {
        "add": (one, vec),
        "sub": (one, -vec) if x_first else (-one, vec),
        "mul": (vec, zero),
        "div": (1.0 / vec if op == "div" else one, zero),
    }[op]
    _scale_shift(ctx, node, x, scale, shift)
    return True


def _pool(mode: str) -> Converter:
    def convert(ctx: Context, node: Any) -> None:
        x = ctx.runtime(node, 0)
        kernel = tuple(_attr(node, "ksize")[1:3])
        attrs = _spatial(ctx, node, ctx.shape(x), kernel)
        attrs.update(mode=mode, kernel=kernel, ceil_mode=False, count_include_pad=False)
        ctx.add(node, "pool2d", [x], attrs)
    return convert


def mean(ctx: Context, node: Any) -> None:
    x = ctx.runtime(node, 0)
    rank = len(ctx.shape(x))
    axes = tuple(sorted({ir_axis(int(a), rank) for a in ctx.need_const(node, 1, "axes").reshape(-1)}))
    if _attr(node, "keep_dims", False) or rank != 4:
        ctx.add(node, "reduce", [x], {"op": "mean", "axes": axes, "keepdims": bool(_attr(node, "keep_dims"))})
        return
    # Reduce keeping the axes (a 4-D view, a global pool for H, W), then drop them in TF's order.
    kept = ctx.add(node, "reduce", [x], {"op": "mean", "axes": axes, "keepdims": True}, output=False)
    tf_axes = {int(a) % 4 for a in ctx.need_const(node, 1, "axes").reshape(-1)}
    target = tuple(d for i, d in enumerate(tf_shape(ctx.shape(kept))) if i not in tf_axes)
    reshape_to(ctx, node, kept, target)


def reshape(ctx: Context, node: Any) -> None:
    x = ctx.runtime(node, 0)
    target = [int(d) for d in ctx.need_const(node, 1, "shape").reshape(-1)]
    reshape_to(ctx, node, x, _resolve_shape(ctx, node, target, math.prod(ctx.shape(x))))


def squeeze(ctx: Context, node: Any) -> None:
    x = ctx.runtime(node, 0)
    shape = tf_shape(ctx.shape(x))
    axes = {int(a) % len(shape) for a in _attr(node, "squeeze_dims", [])} or \
        {i for i, d in enumerate(shape) if d == 1}
    reshape_to(ctx, node, x, tuple(d for i, d in enumerate(shape) if i not in axes))


def expand_dims(ctx: Context, node: Any) -> None:
    x = ctx.runtime(node, 0)
    shape = list(tf_shape(ctx.shape(x)))
    axis = int(ctx.need_const(node, 1, "axis").reshape(-1)[0])
    shape.insert(axis % (len(shape) + 1), 1)
    reshape_to(ctx, node, x, tuple(shape))


def concat(ctx: Context, node: Any) -> None:
    count = len(data_inputs(node)) - 1
    axis = int(ctx.need_const(node, count, "axis").reshape(-1)[0])
    xs = [ctx.runtime(node, i) for i in range(count)]
    ctx.add(node, "concat", xs, {"axis": ir_axis(axis, len(ctx.shape(xs[0])))})


def pad(ctx: Context, node: Any) -> None:
    x = ctx.runtime(node, 0)
    pads = ctx.need_const(node, 1, "paddings").astype(int)
    if pads.ndim != 2 or pads.shape[1] != 2:
        raise ctx.error(node, f"paddings of shape {pads.shape} are not supported")
    if pads.shape[0] == 4:
        pads = pads[list(NHWC_TO_NCHW)]
    value = float(ctx.const(data_inputs(node)[2]).reshape(-1)[0]) if node.op == "PadV2" else 0.0
    mode = {"REFLECT": "reflect", "SYMMETRIC": None}.get(_attr(node, "mode", ""), "constant")
    if mode is None:
        raise ctx.error(node, "SYMMETRIC mirror padding is not supported (REFLECT is)")
    ctx.add(node, "pad", [x], {"pads": tuple(int(p) for p in (*pads[:, 0], *pads[:, 1])), "mode": mode,
                               "value": value})


def softmax(ctx: Context, node: Any) -> None:
    x = ctx.runtime(node, 0)
    rank = len(ctx.shape(x))
    ctx.add(node, "softmax", [x], {"axis": ir_axis(-1, rank)})


def transpose(ctx: Context, node: Any) -> None:
    x = to_tf_order(ctx, node, ctx.runtime(node, 0))
    perm = tuple(int(p) for p in ctx.need_const(node, 1, "perm").reshape(-1))
    shape = ctx.shape(x)
    y = x if perm == tuple(range(len(perm))) else \
        ctx.add(node, "transpose", [x], {"perm": perm}, output=False, suffix="/tf")
    from_tf_order(ctx, node, y, tuple(shape[p] for p in perm))


def identity(ctx: Context, node: Any) -> None:
    ctx.alias(node, ctx.runtime(node, 0))


def identity_n(ctx: Context, node: Any) -> None:
    """Output i is input i (Keras 3 writes its swish, a custom gradient, as an IdentityN)."""
    for i, tf_name in enumerate(data_inputs(node)):
        if tf_name in ctx.consts:
            ctx.consts[f"{node.name}:{i}"] = ctx.consts[tf_name]
        else:
            ctx.names[f"{node.name}:{i}"] = ctx.runtime(node, i)


def shape_of(ctx: Context, node: Any) -> None:
    dtype = np.int64 if _attr(node, "out_type") == 9 else np.int32  # 9 is DT_INT64
    ctx.consts[f"{node.name}:0"] = np.array(tf_shape(ctx.shape(ctx.runtime(node, 0))), dtype=dtype)


def fold_only(ctx: Context, node: Any) -> None:
    """Ops neurogen runs only on constants (shape arithmetic); here an input varies at run time."""
    raise ctx.error(node, "is supported only on constant inputs (shape computations), but an input varies "
                          "at run time")


def no_op(ctx: Context, node: Any) -> None:
    pass


OPS: dict[str, Converter] = {
    "Conv2D": conv2d,
    "DepthwiseConv2dNative": depthwise_conv2d,
    "MatMul": matmul,
    "BatchMatMulV2": matmul,
    "FusedBatchNorm": fused_batch_norm,
    "FusedBatchNormV3": fused_batch_norm,
    "Relu": _activation("relu"),
    "Relu6": _activation("clip", 0.0, 6.0),
    "LeakyRelu": _activation("leaky_relu", 0.2),
    "Sigmoid": _activation("sigmoid"),
    "Tanh": _activation("tanh"),
    "Erf": _activation("erf"),
    "Softplus": _activation("softplus"),
    **{op: binary for op in BINARY_OPS},
    "MaxPool": _pool("max"),
    "AvgPool": _pool("avg"),
    "Mean": mean,
    "Reshape": reshape,
    "Squeeze": squeeze,
    "ExpandDims": expand_dims,
    "ConcatV2": concat,
    "Pad": pad,
    "PadV2": pad,
    "MirrorPad": pad,
    "Softmax": softmax,
    "Transpose": transpose,
    "Identity": identity,
    "IdentityN": identity_n,
    "StopGradient": identity,
    "Snapshot": identity,
    "Shape": shape_of,
    "NoOp": no_op,
    **{op: fold_only for op in ("StridedSlice", "Pack", "Prod", "Cast", "Rsqrt", "Sqrt", "Maximum", "Minimum",
                                "Fill", "Range", "Slice", "GatherV2", "Unpack", "Floor", "Sum", "Square")},
}

SUPPORTED_OPS = tuple(sorted(OPS))

# Constant arithmetic evaluated with numpy (Keras writes every BatchNorm this way); the rest runs in TF.
NUMPY_FOLDS: dict[str, Callable[..., np.ndarray]] = {
    "AddV2": np.add, "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "RealDiv": np.divide,
    "Rsqrt": lambda x: (1 / np.sqrt(x)).astype(x.dtype), "Sqrt": np.sqrt, "Maximum": np.maximum,
    "Minimum": np.minimum, "Identity": lambda x: x, "Square": np.square,
}


def _evaluate(node: Any, values: list[np.ndarray]) -> list[np.ndarray]:
    """Outputs of a node whose inputs are all known, computed by numpy or a one-node TF graph."""
    if node.op in NUMPY_FOLDS and all(v.dtype.kind == "f" for v in values):
        return [np.asarray(NUMPY_FOLDS[node.op](*values))]
    tf = tensorflow()
    graph_def = tf.compat.v1.GraphDef()
    for i, value in enumerate(values):
        const = graph_def.node.add(name=f"in{i}", op="Const")
        const.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
        const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    op = graph_def.node.add()
    op.CopyFrom(node)
    op.name = "op"
    op.ClearField("device")
    del op.input[:]
    op.input.extend(f"in{i}" for i in range(len(values)))
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        outputs = graph.get_operation_by_name("op").outputs
        with tf.compat.v1.Session(graph=graph) as session:
            return [np.asarray(v) for v in session.run(outputs)]


# -- import ---------------------------------------------------------------------------------

def unsupported_ops(graph_def: Any) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for node in graph_def.node:
        if node.op not in OPS and node.op not in ("Const", "Placeholder"):
            found.setdefault(node.op, []).append(node.name)
    return found


def _declared_shape(node: Any) -> list[io_shapes.Dim] | None:
    """A Placeholder's dims as the model declares them (-1 is free); None without a known rank."""
    if "shape" not in node.attr or node.attr["shape"].shape.unknown_rank:
        return None
    return [int(d.size) if d.size >= 0 else io_shapes.UNKNOWN for d in node.attr["shape"].shape.dim]


def _input_shape(ctx: Context, node: Any, given: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
    return io_shapes.resolve(ctx.source, node.name, _declared_shape(node), given.get(node.name),
                             " (in the model's own NHWC order)")


def _add_input(ctx: Context, node: Any, given: dict[str, tuple[int, ...]]) -> None:
    dtype = _attr(node, "dtype")
    if dtype != 1:  # DT_FLOAT
        raise ModelError(f"{ctx.source}: input '{node.name}' is not float32; only float32 inputs are supported")
    shape = _input_shape(ctx, node, given)
    ir_shape = tuple(shape[p] for p in NHWC_TO_NCHW) if len(shape) == 4 else shape
    layout = Layout.NHWC if len(shape) == 4 else Layout.ANY
    ctx.graph.tensors[node.name] = Tensor(node.name, ir_shape, DType.F32, layout=layout)
    ctx.graph.inputs.append(node.name)
    ctx.names[f"{node.name}:0"] = node.name


def _convert_node(ctx: Context, node: Any) -> None:
    if node.op == "Const":
        tf = tensorflow()
        ctx.consts[f"{node.name}:0"] = tf.make_ndarray(node.attr["value"].tensor)
        return
    names = data_inputs(node)
    if names and node.op != "Shape" and all(n in ctx.consts for n in names):
        for i, value in enumerate(_evaluate(node, [ctx.consts[n] for n in names])):
            ctx.consts[f"{node.name}:{i}"] = value
        return
    OPS[node.op](ctx, node)


def _topological(graph_def: Any) -> list[Any]:
    """Nodes in an order where every input comes first (GraphDefs need not be ordered)."""
    by_name = {n.name: n for n in graph_def.node}
    order: list[Any] = []
    state: dict[str, int] = {}
    for root in by_name:
        stack = [(root, False)]
        while stack:
            name, done = stack.pop()
            if done:
                state[name] = 2
                order.append(by_name[name])
                continue
            if state.get(name) or name not in by_name:
                continue
            state[name] = 1
            stack.append((name, True))
            stack.extend((i.lstrip("^").split(":")[0], False) for i in reversed(by_name[name].input))
    return order


def import_graph_def(frozen: FrozenGraph, *, source: str,
                     input_shapes: dict[str, tuple[int, ...]] | None = None) -> Graph:
    """Convert a frozen TF graph to an IR graph; its 4-D inputs and outputs are NHWC."""
    missing = unsupported_ops(frozen.graph_def)
    if missing:
        raise UnsupportedOpsError(source, missing)
    given = dict(input_shapes or {})
    io_shapes.check_names(source, given, frozen.inputs)
    graph = Graph(name=Path(source).stem or "model", tensors={}, layers=[], inputs=[], outputs=[])
    nodes = {n.name: n for n in frozen.graph_def.node}
    ctx = Context(graph, source, nodes)
    for name in frozen.inputs:
        _add_input(ctx, nodes[name], given)
    for node in _topological(frozen.graph_def):
        if node.op == "Placeholder":
            continue
        with converting(ctx, node):
            _convert_node(ctx, node)
    graph.outputs = [_output(ctx, public, tf_name) for public, tf_name in frozen.outputs]
    _name_outputs(graph, [public for public, _ in frozen.outputs])
    return graph.prune().validate()


@contextlib.contextmanager
def converting(ctx: Any, node: Any) -> Iterator[None]:
    """Errors while converting `node` become ModelErrors that name it (and the model file)."""
    try:
        yield
    except ModelError:
        raise
    except NeurogenError as exc:
        raise ctx.error(node, str(exc)) from None
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
        raise ctx.error(node, f"cannot convert ({type(exc).__name__}: {exc})") from None


def _output(ctx: Context, public: str, tf_name: str) -> str:
    if tf_name in ctx.names:
        return ctx.names[tf_name]
    if tf_name in ctx.consts:
        return ctx.weight(public, ctx.consts[tf_name])
    raise ModelError(f"{ctx.source}: output '{public}' ({tf_name}) is never computed")


def import_model(path: str | os.PathLike, *, input_shapes: dict[str, tuple[int, ...]] | None = None) -> Graph:
    """Convert a SavedModel folder, .keras/.h5 file or frozen .pb to an IR graph."""
    return import_graph_def(load(path), source=str(path), input_shapes=input_shapes)
