"""The intermediate representation: tensors, layers and the graph.

A layer says *what* is computed (its kind, attributes and input/output tensors);
how it is computed is a routine's business (codegen.routines). Shapes are static.
Weights are tensors that carry data; everything else is an activation.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import GraphError

# The generated API holds each dimension in an `int` (model.h's `int shape[]`), and a board's size_t may
# be 32 bits: the arena, the weights and each tensor must be addressable with it.
MAX_DIM = 2**31 - 1
MAX_BYTES = 2**32 - 1


class DType(enum.Enum):
    F32 = "f32"
    F16 = "f16"
    QS8 = "qs8"
    I64 = "i64"  # only in constants that compute shapes; folded away before codegen
    I32 = "i32"
    BOOL = "bool"

    @property
    def numpy(self) -> np.dtype:
        return np.dtype(_NUMPY_OF[self])

    @property
    def c_type(self) -> str:
        return _C_TYPE_OF[self]

    @classmethod
    def from_numpy(cls, dtype: np.dtype) -> DType:
        for member, name in _NUMPY_OF.items():
            if np.dtype(name) == dtype:
                return member
        raise GraphError(f"unsupported element type {dtype}")


_NUMPY_OF = {
    DType.F32: "float32",
    DType.F16: "float16",
    DType.QS8: "int8",
    DType.I64: "int64",
    DType.I32: "int32",
    DType.BOOL: "bool",
}
_C_TYPE_OF = {
    DType.F32: "float",
    DType.F16: "uint16_t",
    DType.QS8: "int8_t",
    DType.I64: "int64_t",
    DType.I32: "int32_t",
    DType.BOOL: "uint8_t",
}


class Layout(enum.Enum):
    """How a tensor's elements are ordered in memory.

    ANY is for tensors whose layout nobody reinterprets (flat vectors, the
    operands of element-wise layers that accept any order).
    The blocked layouts NCHW16C, NCHW8C, NCHW4C (oneDNN's and TVM's NCHWxc) store a 4-D
    tensor as [N][ceil(C/b)][H][W][b]: channels in blocks of b = one vector register, the
    last block zero-padded. They live only between routines; graph inputs and outputs are
    never blocked.
    """

    ANY = "any"
    NCHW = "nchw"
    NHWC = "nhwc"
    NCHW16C = "nchw16c"
    NCHW8C = "nchw8c"
    NCHW4C = "nchw4c"

    @property
    def block(self) -> int:
        """Channels per block (16 for NCHW16C); 1 for a layout that does not block them."""
        return _BLOCK_OF.get(self.value, 1)

    @property
    def is_blocked(self) -> bool:
        return self.block > 1


_BLOCK_OF = {"nchw16c": 16, "nchw8c": 8, "nchw4c": 4}


@dataclass(frozen=True)
class Activation:
    """An element-wise activation fused into the epilogue of a layer."""

    # none relu clip leaky_relu sigmoid hard_sigmoid hard_swish; silu (x * sigmoid(x)), gelu_erf
    # (0.5x(1 + erf(x/sqrt2))), gelu_tanh (tanh approximation), mish (x * tanh(softplus(x))); and the
    # elementary tanh, erf, softplus that the decomposed forms of those are written with
    # (passes.fusion.fuse_decomposed_activations turns the decompositions into the one kind).
    kind: str = "none"
    alpha: float = 0.0  # clip: min; leaky_relu: slope; hard_sigmoid: alpha
    beta: float = 0.0  # clip: max; hard_sigmoid: beta

    @property
    def is_identity(self) -> bool:
        return self.kind == "none"

    def describe(self) -> str:
        if self.kind == "clip":
            return f"clip[{self.alpha:g},{self.beta:g}]"
        if self.kind in ("leaky_relu", "hard_sigmoid"):
            return f"{self.kind}[{self.alpha:g}]"
        return self.kind


NO_ACTIVATION = Activation()


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: DType = DType.F32
    data: np.ndarray | None = None  # set for constants (weights)
    layout: Layout = Layout.ANY  # the layout the model gave it (NCHW for ONNX images)

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.numpy.itemsize


@dataclass
class Layer:
    """One operation. `inputs`/`outputs` name tensors; an empty input name means absent."""

    name: str
    kind: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def activation(self) -> Activation:
        return self.attrs.get("activation", NO_ACTIVATION)

    def present_inputs(self) -> list[str]:
        return [name for name in self.inputs if name]


@dataclass
class Graph:
    name: str
    tensors: dict[str, Tensor]
    layers: list[Layer]
    inputs: list[str]
    outputs: list[str]

    def tensor(self, name: str) -> Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise GraphError(f"graph '{self.name}': no tensor named '{name}'") from None

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensor(name).shape

    def is_constant(self, name: str) -> bool:
        return self.tensor(name).is_constant

    def producers(self) -> dict[str, Layer]:
        return {out: layer for layer in self.layers for out in layer.outputs}

    def consumers(self) -> dict[str, list[Layer]]:
        result: dict[str, list[Layer]] = {}
        for layer in self.layers:
            for name in layer.present_inputs():
                result.setdefault(name, []).append(layer)
        return result

    def constants(self) -> Iterator[Tensor]:
        return (t for t in self.tensors.values() if t.is_constant)

    def copy(self) -> Graph:
        """A copy whose layer and tensor lists can be edited; weight arrays are shared."""
        return Graph(
            name=self.name,
            tensors={k: _copy_tensor(t) for k, t in self.tensors.items()},
            layers=[Layer(x.name, x.kind, list(x.inputs), list(x.outputs), dict(x.attrs)) for x in self.layers],
            inputs=list(self.inputs),
            outputs=list(self.outputs),
        )

    def unique_name(self, base: str) -> str:
        taken = set(self.tensors) | {layer.name for layer in self.layers}
        if base not in taken:
            return base
        n = 1
        while f"{base}_{n}" in taken:
            n += 1
        return f"{base}_{n}"

    def prune(self) -> Graph:
        """Drop layers and tensors that no graph output depends on."""
        producers = self.producers()
        needed: set[str] = set()
        stack = list(self.outputs)
        while stack:
            name = stack.pop()
            if name in needed:
                continue
            needed.add(name)
            layer = producers.get(name)
            if layer is not None:
                stack.extend(layer.present_inputs())
        self.layers = [x for x in self.layers if any(o in needed for o in x.outputs)]
        keep = needed | set(self.inputs) | {o for x in self.layers for o in x.outputs}
        self.tensors = {k: t for k, t in self.tensors.items() if k in keep}
        return self

    def validate(self) -> Graph:
        """Check structural invariants; every message names the offending layer."""
        defined = set(self.inputs) | {t.name for t in self.constants()}
        for name in self.inputs:
            if name not in self.tensors:
                raise GraphError(f"graph input '{name}' has no tensor description")
        seen_layers: set[str] = set()
        for layer in self.layers:
            if layer.name in seen_layers:
                raise GraphError(f"two layers are named '{layer.name}'")
            seen_layers.add(layer.name)
            for name in layer.present_inputs():
                if name not in self.tensors:
                    raise GraphError(f"layer '{layer.name}' ({layer.kind}) reads unknown tensor '{name}'")
                if name not in defined:
                    raise GraphError(
                        f"layer '{layer.name}' ({layer.kind}) reads '{name}' before it is computed "
                        "(the graph is not in topological order or has a cycle)"
                    )
            for name in layer.outputs:
                if name in defined:
                    raise GraphError(f"layer '{layer.name}' ({layer.kind}) redefines tensor '{name}'")
                if name not in self.tensors:
                    raise GraphError(f"layer '{layer.name}' ({layer.kind}) has no shape for output '{name}'")
                tensor = self.tensors[name]
                if any(d < 0 for d in tensor.shape):
                    raise GraphError(
                        f"layer '{layer.name}' ({layer.kind}) output '{name}' has shape {tensor.shape}"
                    )
                defined.add(name)
        for name in self.outputs:
            if name not in defined:
                raise GraphError(f"graph output '{name}' is never computed")
        return self

    def topological_layers(self) -> list[Layer]:
        import networkx as nx

        dag = nx.DiGraph()
        producers = self.producers()
        order = {layer.name: i for i, layer in enumerate(self.layers)}
        for layer in self.layers:
            dag.add_node(layer.name)
            for name in layer.present_inputs():
                if name in producers:
                    dag.add_edge(producers[name].name, layer.name)
        by_name = {layer.name: layer for layer in self.layers}
        try:
            names = nx.lexicographical_topological_sort(dag, key=order.__getitem__)
            return [by_name[n] for n in names]
        except nx.NetworkXUnfeasible:
            raise GraphError(f"graph '{self.name}' has a cycle") from None

    def macs(self) -> dict[str, int]:
        from .shapes import macs

        return {layer.name: macs(layer, self) for layer in self.layers}


def size_problem(shape: tuple[int, ...], itemsize: int) -> str | None:
    """Why a tensor of `shape` cannot be held by the generated code (None when it can)."""
    big = [d for d in shape if d > MAX_DIM]
    if big:
        return f"dimension {big[0]} of shape {tuple(shape)} does not fit the C API's int ({MAX_DIM} at most)"
    nbytes = math.prod(shape) * itemsize
    if nbytes > MAX_BYTES:
        return (f"shape {tuple(shape)} needs {nbytes} bytes, more than a 32-bit size_t addresses "
                f"({MAX_BYTES})")
    return None


def _copy_tensor(t: Tensor) -> Tensor:
    return Tensor(t.name, t.shape, t.dtype, t.data, t.layout)


def memory_shape(tensor: Tensor) -> tuple[int, ...]:
    """The shape of `tensor` as its buffer holds it: N, H, W, C for an NHWC image (the IR's shapes are
    logical NCHW); (1,) for a scalar. What the header, the C tables, tuning.json and the runtime show."""
    shape = tuple(tensor.shape) or (1,)
    if tensor.layout == Layout.NHWC and len(shape) == 4:
        return (shape[0], shape[2], shape[3], shape[1])
    return shape


def format_shape(shape: Iterable[int]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"
