"""A few lines to write small ONNX models layer by layer (float32, NCHW, random weights), and to build,
run and measure the projects compiled from them."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


@dataclass
class OnnxBuilder:
    """Appends nodes to one graph; every method returns the name of the tensor it made."""

    name: str
    seed: int = 0
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    weights: list[onnx.TensorProto] = field(default_factory=list)
    inputs: list[onnx.ValueInfoProto] = field(default_factory=list)
    count: int = 0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def input(self, name: str, shape: tuple[int, ...]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        return name

    def weight(self, shape: tuple[int, ...], scale: float) -> str:
        name = self.fresh("w")
        self.weights.append(numpy_helper.from_array((self.rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def op(self, kind: str, inputs: list[str], **attrs: object) -> str:
        out = self.fresh(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, *, stride: int = 1, pad: int = 0, relu: bool = True) -> str:
        w = self.weight((cout, cin, k, k), (2.0 / (cin * k * k)) ** 0.5)
        b = self.weight((cout,), 0.1)
        y = self.op("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)
        return self.op("Relu", [y]) if relu else y

    def gemm(self, x: str, fin: int, fout: int, *, relu: bool = False) -> str:
        w = self.weight((fout, fin), (2.0 / fin) ** 0.5)
        b = self.weight((fout,), 0.1)
        y = self.op("Gemm", [x, w, b], transB=1)
        return self.op("Relu", [y]) if relu else y

    def model(self, *outputs: str) -> onnx.ModelProto:
        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
        graph = helper.make_graph(self.nodes, self.name, self.inputs, outs, self.weights)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        return onnx.shape_inference.infer_shapes(model)


def section_size(library: Path, section: str = ".text") -> int:
    """Bytes of one section of a built object or library, as `size -A` reports them."""
    out = subprocess.run(["size", "-A", str(library)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == section:
            return int(parts[1])
    raise AssertionError(f"{library}: no {section} section in\n{out}")


def routine_symbols(library: Path, name: str) -> list[str]:
    """The routine functions defined in a built model (`nm`): specialised `{name}_NNN_routine` ones and
    shared `{name}_routine_N` ones; the API (`{name}_run` ...) is left out."""
    out = subprocess.run(["nm", "--defined-only", str(library)], capture_output=True, text=True, check=True).stdout
    pattern = re.compile(rf"^{re.escape(name)}_(\d{{3}}_f32_\w+|f32_\w+_\d+)$")
    symbols = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "Tt" and pattern.match(parts[2]):
            symbols.append(parts[2])
    return sorted(symbols)
