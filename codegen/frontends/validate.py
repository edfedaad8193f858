"""Checks on an ONNX model before any conversion: the ONNX checker's full check, the graph's structure,
every node's attributes against its operator schema, and every constant's element type, size and data.

Everything here reads hostile data: each problem becomes one ModelError naming the node (and op type)
or tensor, what was expected and what was found; no exception from onnx or numpy escapes.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..errors import ModelError
from ..ir import MAX_BYTES, MAX_DIM

# Element types a constant may have (what the IR holds); the others are refused by name.
NUMPY_OF_ONNX: dict[int, np.dtype] = {
    TensorProto.FLOAT: np.dtype(np.float32),
    TensorProto.FLOAT16: np.dtype(np.float16),
    TensorProto.INT8: np.dtype(np.int8),
    TensorProto.INT32: np.dtype(np.int32),
    TensorProto.INT64: np.dtype(np.int64),
    TensorProto.BOOL: np.dtype(np.bool_),
}
NAMED_TYPES = frozenset(v for v in TensorProto.DataType.values() if v != TensorProto.UNDEFINED)
# The typed field each element type keeps its values in when it has no raw_data (onnx.proto3).
_FIELD_OF: dict[int, str] = {TensorProto.FLOAT: "float_data", TensorProto.FLOAT16: "int32_data",
                             TensorProto.INT8: "int32_data", TensorProto.INT32: "int32_data",
                             TensorProto.BOOL: "int32_data", TensorProto.INT64: "int64_data"}
_VALUE_FIELDS = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data")
PROTOBUF_LIMIT = 2**31 - 1  # bytes: a larger ModelProto cannot be serialised, so the checker reads the file
_MESSAGE_CHARS = 400


def shorten(text: str, lines: int = 2) -> str:
    """The first lines of a (long, multi-line) message from onnx, cut to a readable length."""
    kept = [line.strip() for line in str(text).splitlines() if line.strip()][:lines]
    short = " ".join(kept) or type(text).__name__
    return short if len(short) <= _MESSAGE_CHARS else short[:_MESSAGE_CHARS] + " ..."


def type_name(data_type: int) -> str:
    """An ONNX element type's name (FLOAT, INT8 ...), or what it is when the number is not one."""
    try:
        return TensorProto.DataType.Name(int(data_type))
    except ValueError:
        return f"unknown element type {int(data_type)}"


def node_label(node: onnx.NodeProto) -> str:
    name = node.name or f"{node.op_type}_{node.output[0] if node.output else ''}"  # as onnx.node_name
    return f"node '{name}' ({node.op_type})"


# -- the ONNX checker ----------------------------------------------------------------------------

def _checker_copy(model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]]) -> onnx.ModelProto:
    """The model as neurogen compiles it, for the checker: inputs at the shapes they compile with; no
    value_info and no graph outputs. Those declare shapes that onnxruntime takes as hints (it runs a model
    whose declared shapes are stale, or missing where the checker insists on one); check_graph and the
    frontend check the outputs' names and types."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for value in copy.graph.input:
        shape = input_shapes.get(value.name)
        if shape is not None and value.type.HasField("tensor_type"):
            dims = value.type.tensor_type.shape
            dims.Clear()
            for d in shape:
                dims.dim.add().dim_value = int(d)
    del copy.graph.value_info[:]
    del copy.graph.output[:]
    return copy


def run_checker(model: onnx.ModelProto, source: str, input_shapes: Mapping[str, tuple[int, ...]],
                path: Path | None = None) -> None:
    """onnx.checker.check_model with full_check (strict shape and type inference) on the model; its
    first complaint becomes a ModelError. A model over protobuf's 2 GiB is checked from its file."""
    try:
        size = model.ByteSize()
    except Exception:  # a broken message: the checks below say what is wrong
        size = 0
    try:
        if size < PROTOBUF_LIMIT:
            onnx.checker.check_model(_checker_copy(model, input_shapes), full_check=True)
        elif path is not None:
            onnx.checker.check_model(str(path), full_check=True)
        # else: an in-memory model over 2 GiB cannot be handed to the checker; neurogen's own checks run.
    except Exception as exc:  # ValidationError, InferenceError, and protobuf's own errors
        message = shorten(str(exc))
        if size >= PROTOBUF_LIMIT and "Field 'shape' of 'type' is required" in message:
            return  # the file's own outputs lack shapes (see _checker_copy); the rest was not reachable
        raise ModelError(f"{source}: the ONNX checker refuses the model: {message}") from None


# -- the graph's structure -------------------------------------------------------------------------

def _texts(model: onnx.ModelProto) -> Iterator[tuple[str, object]]:
    """Every name neurogen reads from the model, with where it is."""
    g = model.graph
    yield "the graph's name", g.name
    for entry in model.opset_import:
        yield "an opset domain", entry.domain
    for index, node in enumerate(g.node):
        where = f"node {index} (counting from 0)"
        yield from ((where, v) for v in (node.name, node.op_type, node.domain, *node.input, *node.output))
        yield from ((where, a.name) for a in node.attribute)
    for tensor in g.initializer:
        yield "an initializer", tensor.name
        yield from (("an initializer's external data", v) for e in tensor.external_data for v in (e.key, e.value))
    for value in (*g.input, *g.output, *g.value_info):
        yield "a graph value", value.name
        if value.type.HasField("tensor_type"):
            yield from (("a dimension", d.dim_param) for d in value.type.tensor_type.shape.dim)


def check_text(model: onnx.ModelProto, source: str) -> None:
    """Every name is text: protobuf hands a string field that is not valid UTF-8 back as bytes."""
    for where, value in _texts(model):
        if not isinstance(value, str):
            raise ModelError(f"{source}: {where} has a name that is not UTF-8 text ({bytes(value)[:40]!r}); "
                             "is the file corrupt?")


def check_graph(model: onnx.ModelProto, source: str) -> None:
    """Outputs exist; every tensor name is defined once; every graph output is computed or given."""
    g = model.graph
    if not g.output:
        raise ModelError(f"{source}: the model has no outputs; there is nothing to compute")
    initializers: set[str] = set()
    for init in g.initializer:
        if not init.name:
            raise ModelError(f"{source}: an initializer has no name")
        if init.name in initializers:
            raise ModelError(f"{source}: two initializers are named '{init.name}'; names must be unique "
                             "(onnxruntime keeps one of them, neurogen cannot guess which)")
        initializers.add(init.name)
    defined = set(initializers)
    for value in g.input:
        if value.name in defined and value.name not in initializers:
            raise ModelError(f"{source}: two graph inputs are named '{value.name}'")
        defined.add(value.name)
    for node in g.node:
        for out in node.output:
            if not out:
                continue
            if out in defined:
                raise ModelError(f"{source}: {node_label(node)} computes '{out}', which is already defined "
                                 "(an input, an initializer or another node's output); names must be unique")
            defined.add(out)
    for value in g.value_info:  # hints only, but onnxruntime refuses one whose element type is not one
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type not in NAMED_TYPES:
            raise ModelError(f"{source}: value_info '{value.name}' declares element type "
                             f"{type_name(value.type.tensor_type.elem_type)}")
    seen: set[str] = set()
    for value in g.output:
        if not value.type.HasField("tensor_type") or value.type.tensor_type.elem_type != TensorProto.FLOAT:
            found = (type_name(value.type.tensor_type.elem_type) if value.type.HasField("tensor_type")
                     else "not a tensor")
            raise ModelError(f"{source}: graph output '{value.name}' is declared {found}; the generated code "
                             "computes FLOAT (float32) outputs only")
        if value.name not in defined:
            raise ModelError(f"{source}: graph output '{value.name}' is not computed by any node, nor an input "
                             "or initializer")
        if value.name in seen:
            raise ModelError(f"{source}: graph output '{value.name}' is listed twice")
        seen.add(value.name)


# -- attributes --------------------------------------------------------------------------------

def _schema(node: onnx.NodeProto, opset: int) -> onnx.defs.OpSchema | None:
    try:
        return onnx.defs.get_schema(node.op_type, opset, node.domain or "")
    except Exception:  # no schema at this opset: the checker says so
        return None


# INT attributes that are flags: onnxruntime reads some as `!= 0` and others as `== 1`, so no other value
# has one meaning.
FLAGS = frozenset({"keepdims", "ceil_mode", "count_include_pad", "transA", "transB", "allowzero",
                   "noop_with_empty_axes", "training_mode", "select_last_index"})


def check_node(node: onnx.NodeProto, opset: int, source: str) -> None:
    """The node's inputs, outputs and attributes against its operator's schema at the model's opset:
    every attribute known (a misspelt `stride` is not silently ignored), of its type, given once, and
    every required one present."""
    schema = _schema(node, opset)
    where = f"{source}: {node_label(node)}"
    if schema is None:
        raise ModelError(f"{where}: the operator has no definition at opset {opset}")
    if not schema.min_input <= len(node.input) <= schema.max_input:
        raise ModelError(f"{where}: has {len(node.input)} inputs; the operator takes {schema.min_input} to "
                         f"{schema.max_input} at opset {opset}")
    if not schema.min_output <= len(node.output) <= schema.max_output or not node.output[0]:
        raise ModelError(f"{where}: has {len(node.output)} outputs; the operator gives {schema.min_output} to "
                         f"{schema.max_output} at opset {opset}, the first one named")
    known = schema.attributes
    seen: set[str] = set()
    for attr in node.attribute:
        if attr.name in seen:
            raise ModelError(f"{where}: attribute '{attr.name}' is given twice")
        seen.add(attr.name)
        if attr.name not in known:
            close = difflib.get_close_matches(attr.name, list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ModelError(f"{where}: unknown attribute '{attr.name}'{hint}; the operator's attributes at "
                             f"opset {opset} are {sorted(known) or 'none'}")
        want = int(known[attr.name].type)
        if attr.ref_attr_name:
            raise ModelError(f"{where}: attribute '{attr.name}' refers to a function attribute; only values "
                             "are supported")
        if int(attr.type) != want:
            raise ModelError(f"{where}: attribute '{attr.name}' must be "
                             f"{onnx.AttributeProto.AttributeType.Name(want)}, not "
                             f"{_attr_type_name(attr.type)}")
        if attr.name in FLAGS and attr.i not in (0, 1):
            raise ModelError(f"{where}: attribute '{attr.name}' is a flag, 0 or 1, not {attr.i}")
    missing = sorted(n for n, a in known.items() if a.required and n not in seen)
    if missing:
        raise ModelError(f"{where}: required attribute(s) {missing} are missing")


def _attr_type_name(value: int) -> str:
    try:
        return onnx.AttributeProto.AttributeType.Name(int(value))
    except ValueError:
        return f"unknown type {int(value)}"


# -- constants -----------------------------------------------------------------------------------

def _external(tensor: TensorProto) -> bool:
    return tensor.data_location == TensorProto.EXTERNAL or bool(tensor.external_data)


def check_external_info(tensor: TensorProto, base: Path, source: str) -> Path:
    """Where an external tensor's data lies, checked: a file inside the model's folder that holds
    offset + length bytes."""
    where = f"{source}: tensor '{tensor.name}'"
    entries = {e.key: e.value for e in tensor.external_data}
    location = entries.get("location", "")
    if not location:
        raise ModelError(f"{where} keeps its data outside the model but names no file")
    numbers: dict[str, int] = {}
    for key in ("offset", "length"):
        if key in entries:
            text = entries[key]
            if not text.isdigit():
                raise ModelError(f"{where}: external data {key} {text[:40]!r} is not a non-negative integer")
            numbers[key] = int(text)
    data_path = (base / location)
    try:
        resolved = data_path.resolve()
        inside = resolved.is_relative_to(base.resolve())
        size = resolved.stat().st_size if resolved.is_file() else None
    except (OSError, ValueError):
        inside, size = False, None
    if not inside:
        raise ModelError(f"{where} keeps its data in '{location}', outside the model's folder; external data "
                         "must lie next to the model")
    if size is None:
        raise ModelError(f"{where} keeps its data in '{location}', which is missing (looked for {data_path}); "
                         "copy it next to the model")
    offset = numbers.get("offset", 0)
    length = numbers.get("length", size - offset)
    if offset + length > size:
        raise ModelError(f"{where}: its external data is {length} bytes at offset {offset} of '{location}', "
                         f"but the file has only {size} bytes; is it truncated?")
    return data_path


def _element_count(tensor: TensorProto, where: str) -> int:
    dims = [int(d) for d in tensor.dims]
    bad = [d for d in dims if d < 0 or d > MAX_DIM]
    if bad:
        raise ModelError(f"{where} has dims {dims}: each must be between 0 and {MAX_DIM}")
    return math.prod(dims)


def tensor_array(tensor: TensorProto, source: str, what: str = "tensor") -> np.ndarray:
    """A constant's values, after checking that its element type is one neurogen holds and that its
    data has exactly the size its dims and type claim (before anything is allocated for it)."""
    where = f"{source}: {what} '{tensor.name}'"
    data_type = int(tensor.data_type)
    dtype = NUMPY_OF_ONNX.get(data_type)
    if dtype is None:
        raise ModelError(f"{where} has element type {type_name(data_type)}, which is not supported "
                         f"(supported: {', '.join(type_name(t) for t in NUMPY_OF_ONNX)})")
    if _external(tensor):
        raise ModelError(f"{where} keeps its data in an external file that was not loaded; compile the model "
                         "from its path, with its data files next to it")
    if tensor.HasField("segment"):
        raise ModelError(f"{where} is a segment of a larger tensor, which is not supported")
    count = _element_count(tensor, where)
    nbytes = count * dtype.itemsize
    if nbytes > MAX_BYTES:
        raise ModelError(f"{where} holds {nbytes} bytes, more than the {MAX_BYTES} a 32-bit board can address")
    fields = [f for f in _VALUE_FIELDS if len(getattr(tensor, f))]
    if tensor.HasField("raw_data"):
        fields.append("raw_data")
    if count == 0 and not fields:
        return np.zeros([int(d) for d in tensor.dims], dtype)
    if len(fields) != 1:
        raise ModelError(f"{where} ({type_name(data_type)}, dims {list(tensor.dims)}) must keep its values in "
                         f"one field; it has {fields or 'none'}")
    if fields[0] == "raw_data":
        if len(tensor.raw_data) != nbytes:
            raise ModelError(f"{where} ({type_name(data_type)}, dims {list(tensor.dims)}) needs {nbytes} bytes "
                             f"of data; it has {len(tensor.raw_data)}")
    else:
        expected = _FIELD_OF[data_type]
        found = len(getattr(tensor, fields[0]))
        if fields[0] != expected or found != count:
            raise ModelError(f"{where} ({type_name(data_type)}, dims {list(tensor.dims)}) needs {count} values "
                             f"in {expected}; it has {found} in {fields[0]}")
    try:
        value = numpy_helper.to_array(tensor)
    except Exception as exc:
        raise ModelError(f"{where}: cannot read its data ({shorten(str(exc), 1)})") from None
    if value.dtype != dtype or value.size != count:
        raise ModelError(f"{where}: its data reads as {value.dtype} with {value.size} values, not {dtype} with "
                         f"{count}")
    return value


def check_value_info_types(model: onnx.ModelProto, dtype_of: Mapping[str, np.dtype], source: str) -> None:
    """A value_info's element type must be the type the tensor has (onnxruntime refuses a mismatch);
    its shape is a hint and may be stale. `dtype_of` maps ONNX names to the converted tensors' types."""
    for value in model.graph.value_info:
        found = dtype_of.get(value.name)
        if found is None or not value.type.HasField("tensor_type"):
            continue
        declared = NUMPY_OF_ONNX.get(int(value.type.tensor_type.elem_type))
        if declared != found:
            raise ModelError(f"{source}: value_info '{value.name}' declares element type "
                             f"{type_name(value.type.tensor_type.elem_type)}, but the tensor is {found}")


def element_dtype(elem_type: int, source: str, what: str) -> np.dtype:
    """A graph input's or output's element type, refused by name when the IR does not hold it."""
    dtype = NUMPY_OF_ONNX.get(int(elem_type))
    if dtype is None:
        raise ModelError(f"{source}: {what} has element type {type_name(elem_type)}, which is not supported")
    return dtype
