"""Float TFLite flatbuffer -> IR. One op table (`OPS`) over the builtin operators.

The file is read with the schema module TensorFlow ships (and the flatbuffers
package). TFLite tensors are NHWC like TensorFlow's, so the layout conventions and
helpers of the TensorFlow frontend apply unchanged: 4-D run-time tensors are NCHW
views, 4-D graph inputs and outputs are marked NHWC. Fused activations become
activation layers, which the simplification passes fuse back.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError, UnsupportedOpsError
from ..ir import NO_ACTIVATION, Activation, DType, Graph, Layout, Tensor
from . import inputs as io_shapes
from . import tensorflow as tfe
from .onnx import _name_outputs

FLOAT32, INT32, INT64 = 0, 2, 4  # schema TensorType values this frontend reads
NUMPY_OF = {FLOAT32: np.float32, INT32: np.int32, INT64: np.int64}
FUSED = {0: None, 1: Activation("relu"), 3: Activation("clip", 0.0, 6.0), 2: Activation("clip", -1.0, 1.0)}


@dataclass
class Node:
    """One TFLite operator, shaped like the TF NodeDefs the shared helpers read (name, op, input)."""

    name: str  # its first output tensor's name: converters store the output under it
    op: str
    input: list[str]
    options: Any
    index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def schema() -> Any:
    tfe.tensorflow()
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def _key(tensor: Any, index: int) -> str:
    name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name or f"t{index}")
    return name.replace(":", "_") or f"t{index}"


def _option(node: Node, key: str, default: Any = None) -> Any:
    return getattr(node.options, key, default) if node.options is not None else default


def _fused(ctx: tfe.Context, node: Node, kind: str, inputs: list[str], attrs: dict[str, Any]) -> None:
    code = int(_option(node, "fusedActivationFunction", 0))
    if code not in FUSED:
        raise ctx.error(node, f"fused activation {code} is not supported")
    act = FUSED[code]
    if act is None:
        ctx.add(node, kind, inputs, attrs)
        return
    y = ctx.add(node, kind, inputs, attrs, output=False, suffix="/op")
    ctx.add(node, "activation", [y], {"activation": act})


def _spatial(ctx: tfe.Context, node: Node, x: str, kernel: tuple[int, int]) -> dict[str, Any]:
    strides = (int(_option(node, "strideH", 1)), int(_option(node, "strideW", 1)))
    dilations = (int(_option(node, "dilationHFactor", 1)), int(_option(node, "dilationWFactor", 1)))
    same = int(_option(node, "padding", 0)) == 0  # Padding.SAME
    pads = tfe.same_pads(ctx.shape(x), kernel, strides, dilations) if same else (0, 0, 0, 0)
    return {"strides": strides, "pads": pads, "dilations": dilations}


def _bias(ctx: tfe.Context, node: Node, index: int) -> str:
    if index >= len(node.input) or not node.input[index]:
        return ""
    return tfe._oihw(ctx, node, ctx.need_const(node, index, "bias"))


def conv2d(ctx: tfe.Context, node: Node) -> None:
    x = ctx.runtime(node, 0)
    w = ctx.need_const(node, 1, "filter")  # O, H, W, I
    attrs = _spatial(ctx, node, x, w.shape[1:3])
    attrs.update(group=ctx.shape(x)[1] // w.shape[3], activation=NO_ACTIVATION)
    _fused(ctx, node, "conv2d", [x, tfe._oihw(ctx, node, w.transpose(0, 3, 1, 2)), _bias(ctx, node, 2)], attrs)


def depthwise_conv2d(ctx: tfe.Context, node: Node) -> None:
    x = ctx.runtime(node, 0)
    w = ctx.need_const(node, 1, "filter")  # 1, H, W, C*M
    attrs = _spatial(ctx, node, x, w.shape[1:3])
    attrs.update(group=ctx.shape(x)[1], activation=NO_ACTIVATION)
    w_ir = tfe._oihw(ctx, node, w[0].transpose(2, 0, 1)[:, None])
    _fused(ctx, node, "conv2d", [x, w_ir, _bias(ctx, node, 2)], attrs)


def fully_connected(ctx: tfe.Context, node: Node) -> None:
    x = ctx.runtime(node, 0)
    w = ctx.need_const(node, 1, "weights")  # O, I
    size = int(np.prod(ctx.shape(x)))
    if len(ctx.shape(x)) != 2 or ctx.shape(x)[1] != w.shape[1]:
        x = tfe.reshape_to(ctx, Node(node.name + "/flat", "RESHAPE", [], None), x, (size // w.shape[1], w.shape[1]))
    _fused(ctx, node, "dense", [x, tfe._oihw(ctx, node, w), _bias(ctx, node, 2)], {"activation": NO_ACTIVATION})


def _binary(op: str) -> Callable[[tfe.Context, Node], None]:
    def convert(ctx: tfe.Context, node: Node) -> None:
        code = int(_option(node, "fusedActivationFunction", 0))
        if FUSED.get(code, 0) is None:
            tfe.binary_op(ctx, node, op)
            return
        inner = Node(node.name + "/op", node.op, node.input, None)
        tfe.binary_op(ctx, inner, op)
        ctx.add(node, "activation", [ctx.names[f"{inner.name}:0"]], {"activation": FUSED[code]})
    return convert


def _pool(mode: str) -> Callable[[tfe.Context, Node], None]:
    def convert(ctx: tfe.Context, node: Node) -> None:
        x = ctx.runtime(node, 0)
        kernel = (int(node.options.filterHeight), int(node.options.filterWidth))
        attrs = _spatial(ctx, node, x, kernel)
        attrs.update(mode=mode, kernel=kernel, ceil_mode=False, count_include_pad=False)
        _fused(ctx, node, "pool2d", [x], attrs)
    return convert


def _activation(act: Activation) -> Callable[[tfe.Context, Node], None]:
    def convert(ctx: tfe.Context, node: Node) -> None:
        ctx.add(node, "activation", [ctx.runtime(node, 0)], {"activation": act})
    return convert


def mean(ctx: tfe.Context, node: Node) -> None:
    x = ctx.runtime(node, 0)
    axes = ctx.need_const(node, 1, "axes").reshape(-1)
    keep = bool(_option(node, "keepDims", False))
    rank = len(ctx.shape(x))
    ir_axes = tuple(sorted({tfe.ir_axis(int(a), rank) for a in axes}))
    kept = ctx.add(node, "reduce", [x], {"op": "mean", "axes": ir_axes, "keepdims": True}, output=keep)
    if not keep:
        tf_axes = {int(a) % rank for a in axes}
        target = tuple(d for i, d in enumerate(tfe.tf_shape(ctx.shape(kept))) if i not in tf_axes)
        tfe.reshape_to(ctx, node, kept, target)


def reshape(ctx: tfe.Context, node: Node) -> None:
    x = ctx.runtime(node, 0)
    shape = ctx.const(f"{node.input[1]}:0") if len(node.input) > 1 and node.input[1] else None
    target = [int(d) for d in (shape.reshape(-1) if shape is not None else _option(node, "newShape"))]
    size = int(np.prod(ctx.shape(x)))
    tfe.reshape_to(ctx, node, x, tfe._resolve_shape(ctx, node, target, size))


def concatenation(ctx: tfe.Context, node: Node) -> None:
    xs = [ctx.runtime(node, i) for i in range(len(node.input))]
    axis = tfe.ir_axis(int(node.options.axis), len(ctx.shape(xs[0])))
    _fused(ctx, node, "concat", xs, {"axis": axis})


def pad(ctx: tfe.Context, node: Node) -> None:
    x = ctx.runtime(node, 0)
    pads = ctx.need_const(node, 1, "paddings").astype(int)
    if pads.shape[0] == 4:
        pads = pads[list(tfe.NHWC_TO_NCHW)]
    value = float(ctx.need_const(node, 2, "value").reshape(-1)[0]) if node.op == "PADV2" else 0.0
    ctx.add(node, "pad", [x], {"pads": tuple(int(p) for p in (*pads[:, 0], *pads[:, 1])), "mode": "constant",
                               "value": value})


def softmax(ctx: tfe.Context, node: Node) -> None:
    x = ctx.runtime(node, 0)
    if float(_option(node, "beta", 1.0)) != 1.0:
        raise ctx.error(node, "softmax with beta != 1 is not supported")
    ctx.add(node, "softmax", [x], {"axis": tfe.ir_axis(-1, len(ctx.shape(x)))})


def shape_of(ctx: tfe.Context, node: Node) -> None:
    ctx.consts[f"{node.name}:0"] = np.array(tfe.tf_shape(ctx.shape(ctx.runtime(node, 0))), dtype=np.int32)


def fold_only(ctx: tfe.Context, node: Node) -> None:
    raise ctx.error(node, "is supported only on constant inputs (shape computations), but an input varies "
                          "at run time")


OPS: dict[str, Callable[[tfe.Context, Node], None]] = {
    "CONV_2D": conv2d,
    "DEPTHWISE_CONV_2D": depthwise_conv2d,
    "FULLY_CONNECTED": fully_connected,
    "ADD": _binary("add"),
    "SUB": _binary("sub"),
    "MUL": _binary("mul"),
    "DIV": _binary("div"),
    "AVERAGE_POOL_2D": _pool("avg"),
    "MAX_POOL_2D": _pool("max"),
    "MEAN": mean,
    "RESHAPE": reshape,
    "SQUEEZE": lambda ctx, node: tfe.reshape_to(ctx, node, ctx.runtime(node, 0), _squeezed(ctx, node)),
    "SOFTMAX": softmax,
    "CONCATENATION": concatenation,
    "PAD": pad,
    "PADV2": pad,
    "RELU": _activation(Activation("relu")),
    "RELU6": _activation(Activation("clip", 0.0, 6.0)),
    "LOGISTIC": _activation(Activation("sigmoid")),
    "HARD_SWISH": _activation(Activation("hard_swish")),
    "LEAKY_RELU": lambda ctx, node: ctx.add(node, "activation", [ctx.runtime(node, 0)], {
        "activation": Activation("leaky_relu", float(node.options.alpha))}),
    "SHAPE": shape_of,
    "STRIDED_SLICE": fold_only,
    "PACK": fold_only,
}


def _squeezed(ctx: tfe.Context, node: Node) -> tuple[int, ...]:
    shape = tfe.tf_shape(ctx.shape(ctx.runtime(node, 0)))
    dims = {int(d) % len(shape) for d in (_option(node, "squeezeDims") or [])}
    dims = dims or {i for i, d in enumerate(shape) if d == 1}
    return tuple(d for i, d in enumerate(shape) if i not in dims)


def _fold(node: Node, values: list[np.ndarray]) -> np.ndarray:
    """Shape arithmetic on constants (Keras's Flatten writes SHAPE -> STRIDED_SLICE -> PACK)."""
    if node.op == "PACK":
        return np.stack(values, axis=int(node.options.axis))
    if node.op == "STRIDED_SLICE":
        tf = tfe.tensorflow()
        o = node.options
        return np.asarray(tf.strided_slice(values[0], values[1], values[2], values[3], begin_mask=o.beginMask,
                                           end_mask=o.endMask, ellipsis_mask=o.ellipsisMask,
                                           new_axis_mask=o.newAxisMask, shrink_axis_mask=o.shrinkAxisMask))
    raise KeyError(node.op)


# -- import ---------------------------------------------------------------------------------

def _read(path: Path) -> Any:
    fb = schema()
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelError(f"{path}: not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        return fb.ModelT.InitFromPackedBuf(data, 0)
    except Exception as exc:
        raise ModelError(f"{path}: cannot read the TFLite file ({type(exc).__name__}: {exc})") from None


def _nodes(model: Any, subgraph: Any, keys: list[str]) -> list[Node]:
    fb = schema()
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    nodes = []
    for i, op in enumerate(subgraph.operators):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        kind = names.get(builtin, str(builtin)) if builtin != fb.BuiltinOperator.CUSTOM else \
            f"CUSTOM:{code.customCode.decode() if code.customCode else '?'}"
        inputs = [keys[t] if t >= 0 else "" for t in op.inputs]
        nodes.append(Node(keys[op.outputs[0]], kind, inputs, op.builtinOptions, i))
    return nodes


def _tensor_value(model: Any, tensor: Any) -> np.ndarray | None:
    buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
    if buffer is None or buffer.data is None or len(buffer.data) == 0:
        return None
    if tensor.type not in NUMPY_OF:
        raise ModelError(f"tensor '{_key(tensor, 0)}' has element type {tensor.type}; only float32 models "
                         "are supported (convert without quantization)")
    return np.frombuffer(bytes(bytearray(buffer.data)), dtype=NUMPY_OF[tensor.type]).reshape(tuple(tensor.shape))


def import_model(path: str | os.PathLike, *, input_shapes: dict[str, tuple[int, ...]] | None = None) -> Graph:
    """Convert a float32 .tflite file to an IR graph; its 4-D inputs and outputs are NHWC."""
    path = Path(path)
    source = str(path)
    model = _read(path)
    sg = model.subgraphs[0]
    keys = [_key(t, i) for i, t in enumerate(sg.tensors)]
    nodes = _nodes(model, sg, keys)
    missing: dict[str, list[str]] = {}
    for node in nodes:
        if node.op not in OPS:
            missing.setdefault(node.op, []).append(node.name)
    if missing:
        raise UnsupportedOpsError(source, missing)

    graph = Graph(name=path.stem or "model", tensors={}, layers=[], inputs=[], outputs=[])
    ctx = tfe.Context(graph, source, {n.name: n for n in nodes})
    given = dict(input_shapes or {})
    io_shapes.check_names(source, given, [keys[t] for t in sg.inputs])
    for i, tensor in enumerate(sg.tensors):
        try:
            value = _tensor_value(model, tensor)
        except ModelError as exc:
            raise ModelError(f"{source}: {exc}") from None
        if value is not None:
            ctx.consts[f"{keys[i]}:0"] = value
    for t in sg.inputs:
        _add_input(ctx, keys[t], sg.tensors[t], given)
    for node in nodes:
        with tfe.converting(ctx, node):
            values = [ctx.consts.get(f"{n}:0") for n in node.input if n]
            if node.op in ("PACK", "STRIDED_SLICE") and all(v is not None for v in values):
                ctx.consts[f"{node.name}:0"] = _fold(node, values)
            else:
                OPS[node.op](ctx, node)
    outputs = [(keys[t], f"{keys[t]}:0") for t in sg.outputs]
    graph.outputs = [tfe._output(ctx, public, name) for public, name in outputs]
    _name_outputs(graph, [public for public, _ in outputs])
    return graph.prune().validate()


def _declared_shape(tensor: Any) -> list[io_shapes.Dim]:
    """An input's dims: the signature marks free ones -1 where `shape` holds a placeholder 1."""
    shape = [int(d) for d in (tensor.shape if tensor.shape is not None else ())]
    signature = tensor.shapeSignature
    if signature is not None and len(signature) == len(shape):
        shape = [int(d) for d in signature]
    return [d if d > 0 else io_shapes.UNKNOWN for d in shape]


def _add_input(ctx: tfe.Context, key: str, tensor: Any, given: dict[str, tuple[int, ...]]) -> None:
    if tensor.type != FLOAT32:
        raise ModelError(f"{ctx.source}: input '{key}' is not float32; only float32 models are supported")
    shape = io_shapes.resolve(ctx.source, key, _declared_shape(tensor), given.get(key), " (NHWC)")
    ir_shape = tuple(shape[p] for p in tfe.NHWC_TO_NCHW) if len(shape) == 4 else shape
    layout = Layout.NHWC if len(shape) == 4 else Layout.ANY
    ctx.graph.tensors[key] = Tensor(key, ir_shape, DType.F32, layout=layout)
    ctx.graph.inputs.append(key)
    ctx.names[f"{key}:0"] = key
