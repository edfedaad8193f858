"""Mutants of small ONNX models for the fuzz test: byte-level damage (truncations, flips) and structural
mutations of the protobuf (attributes, dims, data types, names, nodes, inputs and outputs).

`mutants(seed, count)` yields (label, file bytes, extra files) deterministically from the seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from codegen import zoo

Extra = dict[str, bytes]  # files to write next to the model (external data)


def _model(name: str, nodes: list[onnx.NodeProto], inputs: list[tuple[str, list[int]]], outputs: list[str],
           inits: list[onnx.TensorProto], opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def _w(rng: np.random.Generator, name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.5).astype(np.float32), name)


def _dense_seed() -> onnx.ModelProto:
    """Transpose -> Flatten -> Gemm -> Relu -> Gemm (transposed B) -> Softmax."""
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], name="t0", perm=[0, 2, 3, 1]),
             helper.make_node("Flatten", ["t"], ["f"], name="f0", axis=1),
             helper.make_node("Gemm", ["f", "w1", "b1"], ["g1"], name="g1", transB=1, alpha=0.5),
             helper.make_node("Relu", ["g1"], ["r"], name="r0"),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["g2"], name="g2", beta=2.0),
             helper.make_node("Softmax", ["g2"], ["y"], name="s0", axis=1)]
    return _model("dense", nodes, [("x", [1, 2, 3, 4])], ["y"],
                  [_w(rng, "w1", 10, 24), _w(rng, "b1", 10), _w(rng, "w2", 10, 6), _w(rng, "b2", 1, 6)])


def _pool_seed() -> onnx.ModelProto:
    """Conv -> MaxPool / AveragePool branches -> Concat -> BatchNormalization -> Clip -> GlobalAveragePool."""
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="c0", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                              strides=[1, 1]),
             helper.make_node("MaxPool", ["c"], ["m"], name="m0", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("AveragePool", ["c"], ["a"], name="a0", kernel_shape=[3, 3], strides=[2, 2],
                              pads=[1, 1, 1, 1], count_include_pad=1),
             helper.make_node("Concat", ["m", "a"], ["k"], name="k0", axis=1),
             helper.make_node("BatchNormalization", ["k", "s", "o", "mu", "var"], ["n"], name="n0", epsilon=1e-3),
             helper.make_node("Clip", ["n", "lo", "hi"], ["p"], name="p0"),
             helper.make_node("GlobalAveragePool", ["p"], ["y"], name="g0")]
    inits = [_w(rng, "w", 4, 3, 3, 3), _w(rng, "b", 4), _w(rng, "s", 8), _w(rng, "o", 8), _w(rng, "mu", 8),
             numpy_helper.from_array(rng.uniform(0.5, 2, 8).astype(np.float32), "var"),
             numpy_helper.from_array(np.array(-1.0, np.float32), "lo"),
             numpy_helper.from_array(np.array(1.5, np.float32), "hi")]
    return _model("pool", nodes, [("x", [1, 3, 8, 8])], ["y"], inits)


def _shape_seed() -> onnx.ModelProto:
    """Reshape / Unsqueeze / Squeeze / Pad / ReduceMean / Concat with two outputs."""
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"], name="r0"),
             helper.make_node("Unsqueeze", ["r", "ax0"], ["u"], name="u0"),
             helper.make_node("Pad", ["u", "pads"], ["p"], name="p0", mode="constant"),
             helper.make_node("Mul", ["p", "scale"], ["q"], name="q0"),
             helper.make_node("Squeeze", ["q", "ax0"], ["s"], name="s0"),
             helper.make_node("Concat", ["s", "s"], ["k"], name="k0", axis=-1),
             helper.make_node("ReduceMean", ["k", "ax1"], ["y"], name="m0", keepdims=1),
             helper.make_node("Transpose", ["k"], ["z"], name="t0", perm=[1, 0, 2])]
    inits = [numpy_helper.from_array(np.array([2, 3, 4], np.int64), "shape"),
             numpy_helper.from_array(np.array([0], np.int64), "ax0"),
             numpy_helper.from_array(np.array([1], np.int64), "ax1"),
             numpy_helper.from_array(np.array([0, 0, 1, 0, 0, 0, 1, 2], np.int64), "pads"),
             _w(rng, "scale", 1, 1, 1, 6)]
    return _model("shapes", nodes, [("x", [1, 24])], ["y", "z"], inits, opset=18)


def seed_models() -> dict[str, onnx.ModelProto]:
    return {"tiny_cnn": zoo.build("tiny_cnn", resolution=16), "dense": _dense_seed(), "pool": _pool_seed(),
            "shapes": _shape_seed()}


# -- structural mutations --------------------------------------------------------------------------------

@dataclass
class Mutant:
    model: onnx.ModelProto
    rng: random.Random
    extra: Extra = field(default_factory=dict)

    def node(self) -> onnx.NodeProto | None:
        nodes = self.model.graph.node
        return self.rng.choice(nodes) if nodes else None

    def attr(self) -> tuple[onnx.NodeProto, AttributeProto] | None:
        pairs = [(n, a) for n in self.model.graph.node for a in n.attribute]
        return self.rng.choice(pairs) if pairs else None

    def init(self) -> onnx.TensorProto | None:
        inits = self.model.graph.initializer
        return self.rng.choice(inits) if inits else None


BAD_INTS = [0, -1, -2, 1, 2, 3, 5, 99, -99, 2**31, 2**31 - 1, 2**40, -(2**40)]
BAD_NAMES = {"strides": "stride", "pads": "padding", "kernel_shape": "kernel", "axis": "axes", "perm": "perms",
             "transB": "transb", "dilations": "dilation", "group": "groups", "epsilon": "eps"}


def attr_remove(m: Mutant) -> str:
    pick = m.attr()
    if pick is None:
        return "noop"
    node, attr = pick
    node.attribute.remove(attr)
    return f"remove {node.op_type}.{attr.name}"


def attr_rename(m: Mutant) -> str:
    pick = m.attr()
    if pick is None:
        return "noop"
    node, attr = pick
    old = attr.name
    attr.name = BAD_NAMES.get(old, old + m.rng.choice(["s", "_", "X"]))
    return f"rename {node.op_type}.{old} -> {attr.name}"


def attr_retype(m: Mutant) -> str:
    pick = m.attr()
    if pick is None:
        return "noop"
    node, attr = pick
    values = list(attr.ints) or [attr.i]
    name = attr.name
    node.attribute.remove(attr)
    choice = m.rng.randrange(4)
    if choice == 0:
        new = helper.make_attribute(name, [float(v) for v in values])
    elif choice == 1:
        new = helper.make_attribute(name, int(values[0]))
    elif choice == 2:
        new = helper.make_attribute(name, "1")
    else:
        new = helper.make_attribute(name, [int(v) for v in values] * 2)
    node.attribute.append(new)
    return f"retype {node.op_type}.{name} to {AttributeProto.AttributeType.Name(new.type)}"


def attr_value(m: Mutant) -> str:
    pick = m.attr()
    if pick is None:
        return "noop"
    node, attr = pick
    if attr.type == AttributeProto.INTS and attr.ints:
        i = m.rng.randrange(len(attr.ints))
        attr.ints[i] = m.rng.choice(BAD_INTS)
        return f"value {node.op_type}.{attr.name}[{i}] = {attr.ints[i]}"
    if attr.type == AttributeProto.INT:
        attr.i = m.rng.choice(BAD_INTS)
        return f"value {node.op_type}.{attr.name} = {attr.i}"
    if attr.type == AttributeProto.FLOAT:
        attr.f = m.rng.choice([0.0, -1.0, 1e30, float("nan"), 3.0])
        return f"value {node.op_type}.{attr.name} = {attr.f}"
    if attr.type == AttributeProto.STRING:
        attr.s = m.rng.choice([b"", b"SAME_UPPER", b"VALID", b"bogus", b"reflect"])
        return f"value {node.op_type}.{attr.name} = {attr.s!r}"
    return "noop"


SPATIAL = ("Conv", "MaxPool", "AveragePool")


def spatial_attr(m: Mutant) -> str:
    """strides 0, negative or huge pads, auto_pad with pads, kernel_shape off the weights, dilations."""
    nodes = [n for n in m.model.graph.node if n.op_type in SPATIAL]
    if not nodes:
        return "noop"
    node = m.rng.choice(nodes)
    kind = m.rng.choice(["strides0", "pads-", "pads+", "auto_pad", "kernel", "dilations", "ceil", "lengths"])
    keep = [a for a in node.attribute if a.name not in {"strides0": "strides", "pads-": "pads", "pads+": "pads",
                                                        "kernel": "kernel_shape", "dilations": "dilations",
                                                        "ceil": "ceil_mode", "lengths": "strides"}.get(kind, "")]
    del node.attribute[:]
    node.attribute.extend(keep)
    new = {"strides0": ("strides", [0, 1]), "pads-": ("pads", [-1, 0, 0, 1]), "pads+": ("pads", [4, 4, 4, 4]),
           "auto_pad": ("auto_pad", m.rng.choice(["SAME_UPPER", "SAME_LOWER", "VALID"])),
           "kernel": ("kernel_shape", [m.rng.choice([1, 2, 5]), 3]), "dilations": ("dilations", [2, 2]),
           "ceil": ("ceil_mode", 1), "lengths": ("strides", [1, 1, 1])}[kind]
    if node.op_type == "AveragePool" and kind == "dilations":
        return "noop"
    node.attribute.append(helper.make_attribute(*new))
    return f"{node.op_type} {kind}"


def perm_axis(m: Mutant) -> str:
    """Transpose perms that are not permutations, axes out of range, Flatten axis 99."""
    nodes = [n for n in m.model.graph.node if n.op_type in ("Transpose", "Flatten", "Concat", "Softmax")]
    if not nodes:
        return "noop"
    node = m.rng.choice(nodes)
    name = "perm" if node.op_type == "Transpose" else "axis"
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep)
    if name == "perm":
        value = m.rng.choice([[0, 0, 1, 2], [0, 1, 2, 3, 4], [3, 2, 1, 0], [1, 0], [0, 2, 1], [0, 1, 2, 5]])
    else:
        value = m.rng.choice([99, -99, 4, -5, 0, 3, 2, -1])
    node.attribute.append(helper.make_attribute(name, value))
    return f"{node.op_type}.{name} = {value}"


def init_dtype(m: Mutant) -> str:
    init = m.init()
    if init is None:
        return "noop"
    init.data_type = m.rng.choice([0, 2, 3, 6, 7, 9, 10, 11, 16, 77, TensorProto.INT64, TensorProto.FLOAT16])
    return f"initializer {init.name} data_type = {init.data_type}"


def init_retype_consistently(m: Mutant) -> str:
    """A weight converted to int8/int64/f16/bool with matching data: valid protobuf, a type mismatch."""
    init = m.init()
    if init is None:
        return "noop"
    value = numpy_helper.to_array(init)
    dtype = m.rng.choice([np.int8, np.int64, np.float16, np.bool_, np.float64])
    init.CopyFrom(numpy_helper.from_array(value.astype(dtype), init.name))
    return f"initializer {init.name} as {np.dtype(dtype).name}"


def init_dims(m: Mutant) -> str:
    init = m.init()
    if init is None:
        return "noop"
    if not init.dims:
        init.dims.append(m.rng.choice([0, 1, 2]))
    else:
        i = m.rng.randrange(len(init.dims))
        init.dims[i] = m.rng.choice([0, -1, init.dims[i] + 1, max(init.dims[i] - 1, 0), 2**31, 2**29, 1])
    return f"initializer {init.name} dims = {list(init.dims)}"


def init_data(m: Mutant) -> str:
    """raw_data truncated, extended, bytes flipped (valid: compares), NaN, or values scaled."""
    init = m.init()
    if init is None or not init.raw_data:
        return "noop"
    raw = bytearray(init.raw_data)
    kind = m.rng.choice(["short", "long", "flip", "flip", "scale", "empty"])
    if kind == "short":
        raw = raw[: m.rng.randrange(len(raw))]
    elif kind == "long":
        raw += b"\0" * m.rng.choice([1, 4, 64])
    elif kind == "flip":
        i = m.rng.randrange(len(raw))
        raw[i] ^= 1 << m.rng.randrange(7)  # not the top bit of a float's last byte: keeps magnitudes sane
    elif kind == "scale" and init.data_type == TensorProto.FLOAT:
        raw = bytearray((numpy_helper.to_array(init) * m.rng.choice([0.0, -1.0, 3.0])).astype(np.float32).tobytes())
    elif kind == "empty":
        raw = bytearray()
    init.raw_data = bytes(raw)
    return f"initializer {init.name} raw_data {kind}"


def init_external(m: Mutant) -> str:
    """External data info: hostile location, negative offset, non-numeric or long length, short file."""
    init = m.init()
    if init is None or not init.raw_data:
        return "noop"
    data = init.raw_data
    init.ClearField("raw_data")
    init.data_location = TensorProto.EXTERNAL
    kind = m.rng.choice(["ok", "offset-", "length?", "length+", "short", "../", "/abs", "missing"])
    info = {"location": "w.bin", "offset": "0", "length": str(len(data))}
    m.extra["w.bin"] = data
    if kind == "offset-":
        info["offset"] = "-5"
    elif kind == "length?":
        info["length"] = "abc"
    elif kind == "length+":
        info["length"] = str(len(data) + 8)
    elif kind == "short":
        m.extra["w.bin"] = data[: len(data) // 2]
    elif kind == "../":
        info["location"] = "../w.bin"
    elif kind == "/abs":
        info["location"] = "/etc/hostname"
    elif kind == "missing":
        info["location"] = "nope.bin"
    for key, value in info.items():
        init.external_data.add(key=key, value=value)
    return f"initializer {init.name} external {kind}"


def value_dims(m: Mutant) -> str:
    """A graph input's or output's dims: 0, negative, huge, off by one, symbolic; or its element type."""
    values = list(m.model.graph.input) + list(m.model.graph.output)
    value = m.rng.choice(values)
    tensor_type = value.type.tensor_type
    if m.rng.random() < 0.2:
        tensor_type.elem_type = m.rng.choice([0, 7, 10, 11, 99])
        return f"{value.name} elem_type = {tensor_type.elem_type}"
    dims = tensor_type.shape.dim
    if not dims:
        return "noop"
    d = m.rng.choice(dims)
    choice = m.rng.choice([0, -1, 2**31, 2**31 - 1, 3, 5, 1, "N"])
    if choice == "N":
        d.dim_param = "N"
    else:
        d.dim_value = choice
    return f"{value.name} dim = {choice}"


def io_names(m: Mutant) -> str:
    g = m.model.graph
    kind = m.rng.choice(["drop-output", "drop-all-outputs", "rename-output", "rename-input", "drop-input",
                         "dup-output"])
    if kind == "drop-output" and len(g.output) > 1:
        del g.output[m.rng.randrange(len(g.output))]
    elif kind == "drop-all-outputs":
        del g.output[:]
    elif kind == "rename-output":
        m.rng.choice(g.output).name = "renamed"
    elif kind == "rename-input":
        m.rng.choice(g.input).name = "renamed"
    elif kind == "drop-input":
        del g.input[m.rng.randrange(len(g.input))]
    elif kind == "dup-output":
        g.output.append(g.output[0])
    return kind


def nodes(m: Mutant) -> str:
    g = m.model.graph
    if not g.node:
        return "noop"
    i = m.rng.randrange(len(g.node))
    node = g.node[i]
    kind = m.rng.choice(["duplicate", "duplicate-fresh", "remove", "rename-input", "swap-inputs", "op-type",
                         "reverse", "rename-output", "domain", "drop-input", "extra-input"])
    if kind == "duplicate":
        g.node.insert(i + 1, node)
    elif kind == "duplicate-fresh":
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name += "_dup"
        for j, out in enumerate(copy.output):
            copy.output[j] = out + "_dup"
        g.node.insert(i + 1, copy)
    elif kind == "remove":
        del g.node[i]
    elif kind == "rename-input" and node.input:
        node.input[m.rng.randrange(len(node.input))] = "nowhere"
    elif kind == "swap-inputs" and len(node.input) > 1:
        node.input[0], node.input[1] = node.input[1], node.input[0]
    elif kind == "op-type":
        node.op_type = m.rng.choice(["Relu", "Sigmoid", "Conv", "Gemm", "Add", "Transpose", "Flatten", "MaxPool",
                                     "Identity", "Softmax", "Concat", "Celu", "NoSuchOp"])
    elif kind == "reverse":
        g.node.reverse()
    elif kind == "rename-output":
        node.output[0] = m.rng.choice([node.input[0] if node.input else "x", "fresh"])
    elif kind == "domain":
        node.domain = m.rng.choice(["com.microsoft", "ai.onnx.ml", "bogus"])
    elif kind == "drop-input" and node.input:
        del node.input[-1]
    elif kind == "extra-input":
        node.input.append(node.input[0] if node.input else "x")
    return f"node {node.op_type} {kind}"


def initializers(m: Mutant) -> str:
    g = m.model.graph
    if not g.initializer:
        return "noop"
    kind = m.rng.choice(["duplicate", "duplicate-different", "remove", "rename", "as-input"])
    init = m.rng.choice(g.initializer)
    if kind == "duplicate":
        g.initializer.append(init)
    elif kind == "duplicate-different":
        other = onnx.TensorProto()
        other.CopyFrom(init)
        if other.raw_data:
            other.raw_data = bytes(len(other.raw_data))
        g.initializer.append(other)
    elif kind == "remove":
        g.initializer.remove(init)
    elif kind == "rename":
        init.name = init.name + "_x"
    elif kind == "as-input":
        g.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    return f"initializer {kind}"


def opset_ir(m: Mutant) -> str:
    kind = m.rng.choice(["opset", "ir", "no-opset"])
    if kind == "opset":
        m.model.opset_import[0].version = m.rng.choice([1, 8, 10, 13, 30, 99])
    elif kind == "ir":
        m.model.ir_version = m.rng.choice([0, 2, 3, 99])
    else:
        del m.model.opset_import[:]
    return kind


def node_values(m: Mutant) -> str:
    """Values that reach attributes through constants: Reshape shapes, Pad pads, axes, Clip bounds."""
    inits = [t for t in m.model.graph.initializer if t.data_type == TensorProto.INT64 or not t.dims]
    if not inits:
        return "noop"
    init = m.rng.choice(inits)
    value = numpy_helper.to_array(init).copy().reshape(-1)
    if value.size == 0:
        return "noop"
    i = m.rng.randrange(value.size)
    value[i] = m.rng.choice([0, -1, -2, 7, 99, 2**31]) if value.dtype == np.int64 else m.rng.choice([np.nan, -5, 5])
    init.CopyFrom(numpy_helper.from_array(value.reshape([int(d) for d in init.dims]), init.name))
    return f"constant {init.name}[{i}] = {value[i]}"


STRUCTURAL: list[tuple[Callable[[Mutant], str], int]] = [
    (attr_remove, 3), (attr_rename, 4), (attr_retype, 3), (attr_value, 6), (spatial_attr, 6), (perm_axis, 4),
    (init_dtype, 3), (init_retype_consistently, 3), (init_dims, 4), (init_data, 6), (init_external, 3),
    (value_dims, 4), (io_names, 3), (nodes, 6), (initializers, 3), (opset_ir, 2), (node_values, 4),
]


def _apply(fn: Callable[[Mutant], str], mutant: Mutant) -> str:
    try:
        return fn(mutant)
    except Exception:  # an earlier mutation broke what this one reads (to_array on bad data): skip it
        return f"{fn.__name__} skipped"


def _structural(model: onnx.ModelProto, rng: random.Random) -> tuple[str, bytes, Extra]:
    mutant = Mutant(onnx.ModelProto(), rng)
    mutant.model.CopyFrom(model)
    fns, weights = zip(*STRUCTURAL)
    labels = [_apply(fn, mutant) for fn in rng.choices(fns, weights, k=rng.choice([1, 1, 1, 2, 3]))]
    return "; ".join(labels), mutant.model.SerializeToString(), mutant.extra


def _bytes(data: bytes, rng: random.Random) -> tuple[str, bytes, Extra]:
    raw = bytearray(data)
    kind = rng.choice(["truncate", "flip", "flip", "zero-run", "insert"])
    if kind == "truncate":
        at = rng.randrange(len(raw))
        return f"truncate at {at}", bytes(raw[:at]), {}
    if kind == "flip":
        spots = [rng.randrange(len(raw)) for _ in range(rng.choice([1, 1, 2, 4, 16]))]
        for i in spots:
            raw[i] ^= 1 << rng.randrange(8)
        return f"flip {len(spots)} byte(s)", bytes(raw), {}
    if kind == "zero-run":
        at = rng.randrange(len(raw))
        raw[at:at + 8] = bytes(len(raw[at:at + 8]))
        return f"zero 8 bytes at {at}", bytes(raw), {}
    at = rng.randrange(len(raw))
    return f"insert at {at}", bytes(raw[:at] + bytes([rng.randrange(256)]) + raw[at:]), {}


def mutants(seed: int, count: int, bytes_share: float = 0.3) -> Iterator[tuple[str, bytes, Extra]]:
    """`count` mutants from the seed models, the same ones for the same seed."""
    models = seed_models()
    serialized = {name: m.SerializeToString() for name, m in models.items()}
    names = sorted(models)
    rng = random.Random(seed)
    for _ in range(count):
        name = rng.choice(names)
        if rng.random() < bytes_share:
            label, data, extra = _bytes(serialized[name], rng)
        else:
            label, data, extra = _structural(models[name], rng)
        yield f"{name}: {label}", data, extra
