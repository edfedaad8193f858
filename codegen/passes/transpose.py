"""Transposes become layout decisions.

Exporters that keep a framework's NHWC order (tf2onnx above all) wrap every convolution in a Transpose
pair: NHWC -> NCHW before it, NCHW -> NHWC after it, with the batch-norm, activation, pad and reduce
layers in between working on NHWC tensors. In neurogen the layout of a tensor is the routine's business
(DPRS picks it, adapts priced), so these transposes are no work at all: this pass moves each one below
the layers that do not care about axis order (element-wise layers, pad, reduce, softmax, concat: their
axes and constants remapped), where it meets its inverse and both vanish. A 4-D graph input that is
only transposed to NCHW becomes an NCHW tensor stored NHWC (the same bytes: the API is unchanged), and
a graph output that is a transposed NCHW tensor likewise. What is left, DPRS prices as it does any
routine.

Every rewrite keeps the graph's values (tests/unit/test_transpose_pass.py checks each against the
unrewritten graph), and a rewrite is kept only where it leaves fewer transposes than it found.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import GraphError
from ..ir import Graph, Layer, Layout, Tensor
from ..shapes import infer

# Layers whose every output element depends only on the input elements at the same index (with numpy
# broadcasting for binary ones): a transpose commutes with them.
UNARY = frozenset({"activation", "copy"})
BINARY = frozenset({"binary"})
TO_NCHW = (0, 3, 1, 2)  # NHWC -> NCHW
TO_NHWC = (0, 2, 3, 1)  # NCHW -> NHWC


def _inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(perm))


def _compose(first: tuple[int, ...], then: tuple[int, ...]) -> tuple[int, ...]:
    """The one permutation equal to transposing by `first`, then by `then`."""
    return tuple(first[i] for i in then)


def _is_identity(perm: tuple[int, ...]) -> bool:
    return perm == tuple(range(len(perm)))


def _perm(layer: Layer) -> tuple[int, ...]:
    return tuple(layer.attrs["perm"])


class _Rewriter:
    """One graph being rewritten in place (the pass works on a copy)."""

    def __init__(self, graph: Graph) -> None:
        self.g = graph

    # -- small graph edits -------------------------------------------------------------------------

    def readers(self, name: str) -> list[Layer]:
        return [layer for layer in self.g.layers if name in layer.inputs]

    def new_tensor(self, base: str, shape: tuple[int, ...], like: str) -> str:
        name = self.g.unique_name(base)
        self.g.tensors[name] = Tensor(name, tuple(shape), self.g.tensor(like).dtype,
                                      layout=Layout.NCHW if len(shape) == 4 else Layout.ANY)
        return name

    def insert_after(self, anchor: Layer, layer: Layer) -> None:
        self.g.layers.insert(self.g.layers.index(anchor) + 1, layer)

    def transpose_layer(self, base: str, x: str, y: str, perm: tuple[int, ...]) -> Layer:
        return Layer(self.g.unique_name(base), "transpose", [x], [y], {"perm": tuple(perm)})

    def constant_through(self, name: str, perm: tuple[int, ...], rank: int) -> str:
        """The constant that broadcasts against X as `name` broadcasts against transpose(X, perm)."""
        data = self.g.tensor(name).data
        if data.ndim == 0 or data.size == 1 and data.ndim <= rank:
            return name  # a scalar (of any rank up to X's) broadcasts the same in every order
        padded = data.reshape((1,) * (rank - data.ndim) + data.shape)
        moved = np.ascontiguousarray(padded.transpose(_inverse(perm)))
        new = self.g.unique_name(f"{name}/perm")
        self.g.tensors[new] = Tensor(new, moved.shape, self.g.tensor(name).dtype, moved)
        return new

    # -- one transpose, one reader -----------------------------------------------------------------

    def sink_into(self, t: Layer, reader: Layer) -> bool:
        """Move transpose `t` below `reader` (one of its readers); False where that cannot be done."""
        perm, x, y = _perm(t), t.inputs[0], t.outputs[0]
        rank = len(perm)
        if reader.kind == "transpose":
            composed = _compose(perm, _perm(reader))
            reader.inputs = [x]
            reader.attrs = {**reader.attrs, "perm": composed}
            return True
        if reader.kind in UNARY and reader.inputs[0] == y:
            return self.move_below(reader, [x], {}, perm)
        if reader.kind in BINARY:
            return self.sink_binary(t, reader)
        if reader.kind == "pad" and reader.inputs[0] == y:
            pads = tuple(reader.attrs["pads"])
            begins, ends = [0] * rank, [0] * rank
            for i, axis in enumerate(perm):
                begins[axis], ends[axis] = pads[i], pads[i + rank]
            return self.move_below(reader, [x, *reader.inputs[1:]], {"pads": (*begins, *ends)}, perm)
        if reader.kind == "reduce":
            return self.sink_reduce(t, reader)
        if reader.kind == "softmax":
            return self.move_below(reader, [x], {"axis": perm[reader.attrs["axis"]]}, perm)
        if reader.kind == "concat":
            return self.sink_concat(t, reader)
        return False

    def move_below(self, reader: Layer, inputs: list[str], attrs: dict, perm: tuple[int, ...]) -> bool:
        """`reader` now reads `inputs` (untransposed) with `attrs`; its output is transposed back by `perm`."""
        old_inputs, old_attrs = reader.inputs, reader.attrs
        reader.inputs, reader.attrs = list(inputs), {**reader.attrs, **attrs}
        try:
            (shape,) = infer(reader, self.g)
        except GraphError:  # the remapped layer is not valid (a broadcast that no longer lines up)
            reader.inputs, reader.attrs = old_inputs, old_attrs
            return False
        out = reader.outputs[0]
        if _is_identity(perm):
            self.g.tensors[out].shape = tuple(shape)
            return True
        inner = self.new_tensor(f"{out}/untransposed", shape, out)
        reader.outputs = [inner]
        self.insert_after(reader, self.transpose_layer(f"{reader.name}/transpose", inner, out, perm))
        return True

    def sink_binary(self, t: Layer, reader: Layer) -> bool:
        """Both operands lose the transpose: one is `t`'s output, the other a constant or the same transpose."""
        perm = _perm(t)
        producers = self.g.producers()
        inputs = []
        for name in reader.inputs:
            if self.g.is_constant(name):
                if len(self.g.shape(name)) > len(perm):
                    return False
                inputs.append(self.constant_through(name, perm, len(perm)))
                continue
            source = producers.get(name)
            if source is None or source.kind != "transpose" or _perm(source) != perm:
                return False
            inputs.append(source.inputs[0])
        return self.move_below(reader, inputs, {}, perm)

    def sink_reduce(self, t: Layer, reader: Layer) -> bool:
        perm = _perm(t)
        axes = tuple(sorted(perm[a] for a in reader.attrs["axes"]))
        if reader.attrs["keepdims"]:
            return self.move_below(reader, [t.inputs[0]], {"axes": axes}, perm)
        # The kept axes of transpose(X) in their order are X's kept axes in some order: that is the permutation.
        kept_y = [perm[i] for i in range(len(perm)) if i not in reader.attrs["axes"]]
        kept_x = sorted(kept_y)
        return self.move_below(reader, [t.inputs[0]], {"axes": axes}, tuple(kept_x.index(a) for a in kept_y))

    def sink_concat(self, t: Layer, reader: Layer) -> bool:
        perm = _perm(t)
        producers = self.g.producers()
        inputs = []
        for name in reader.inputs:
            source = producers.get(name)
            if source is None or source.kind != "transpose" or _perm(source) != perm:
                return False
            inputs.append(source.inputs[0])
        return self.move_below(reader, inputs, {"axis": perm[reader.attrs["axis"]]}, perm)

    # -- the whole graph ---------------------------------------------------------------------------

    def sink_all(self) -> None:
        """Sink every transpose as far as its readers let it, until nothing moves."""
        moved = True
        while moved:
            moved = False
            for t in [layer for layer in self.g.layers if layer.kind == "transpose"]:
                if t not in self.g.layers:
                    continue
                y = t.outputs[0]
                readers = self.readers(y)
                if y in self.g.outputs or not readers:
                    continue
                ready = [r for r in readers if self.can_sink(t, r)]
                # A transpose kept for one reader and copied below the others adds work, unless the others are
                # binary (or concat) layers that may take it later: their other operand may be on its way down
                # (hard-swish's x * relu6(x + 3) / 6 reads x twice; a squeeze-excite multiply reads x and a scale
                # made from x).
                waiting = [r for r in readers if r not in ready]
                if not ready or not all(r.kind in BINARY | {"concat"} for r in waiting):
                    continue
                for reader in ready:
                    self.sink_into(t, reader)
                moved = True
            self.drop_identities()
            self.g.prune()

    def can_sink(self, t: Layer, reader: Layer) -> bool:
        """Whether `sink_into(t, reader)` would succeed, tried on a copy."""
        trial = _Rewriter(self.g.copy())
        copy_t = next(x for x in trial.g.layers if x.name == t.name)
        copy_r = next(x for x in trial.g.layers if x.name == reader.name)
        return trial.sink_into(copy_t, copy_r)

    def drop_identities(self) -> None:
        for layer in [x for x in self.g.layers if x.kind == "transpose" and _is_identity(_perm(x))]:
            x, y = layer.inputs[0], layer.outputs[0]
            if y in self.g.outputs:
                continue  # an output keeps its producer; remove_identities settles it
            self.g.layers.remove(layer)
            for reader in self.g.layers:
                reader.inputs = [x if n == y else n for n in reader.inputs]
            del self.g.tensors[y]


def count_transposes(graph: Graph) -> int:
    return sum(layer.kind == "transpose" for layer in graph.layers)


def _relabel_input(graph: Graph, name: str) -> Graph:
    """The graph with 4-D input `name` (NHWC data, row-major) seen as an NCHW tensor stored NHWC, followed by
    the transpose that gives the old value: the same bytes in, one transpose that can sink and cancel."""
    g = graph.copy()
    old = g.tensor(name)
    inner = g.unique_name(f"{name}/nhwc")
    g.tensors[inner] = Tensor(inner, old.shape, old.dtype, layout=Layout.NCHW)
    g.tensors[name] = Tensor(name, tuple(old.shape[i] for i in TO_NCHW), old.dtype, layout=Layout.NHWC)
    for layer in g.layers:
        layer.inputs = [inner if n == name else n for n in layer.inputs]
    g.outputs = [inner if n == name else n for n in g.outputs]
    g.layers.insert(0, Layer(g.unique_name(f"{name}/to_nhwc"), "transpose", [name], [inner], {"perm": TO_NHWC}))
    return g


def _relabel_outputs(graph: Graph) -> Graph:
    """A 4-D graph output computed as transpose(X, NCHW -> NHWC) becomes X stored NHWC (the same bytes)."""
    g = graph.copy()
    producers = g.producers()
    for out in list(g.outputs):
        t = producers.get(out)
        if t is None or t.kind != "transpose" or _perm(t) != TO_NHWC or g.outputs.count(out) != 1:
            continue
        x = t.inputs[0]
        source = producers.get(x)
        if source is None or x in g.outputs or len(g.consumers().get(x, [])) != 1:
            continue  # X must be an internal tensor this transpose alone reads
        if g.consumers().get(out):
            continue  # layers inside the graph read the output in its transposed order
        shape = g.shape(x)
        g.layers.remove(t)
        source.outputs = [out if n == x else n for n in source.outputs]
        g.tensors[out] = Tensor(out, shape, g.tensor(x).dtype, layout=Layout.NHWC)
        del g.tensors[x]
        producers = g.producers()
    return g


def _moves_no_data(perm: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """Whether transposing `shape` by `perm` keeps every element at its row-major offset: the axes longer than
    one stay in their order (a (1, C, 1, 1) -> (1, 1, 1, C) transpose is a reshape)."""
    moved = [axis for axis in perm if shape[axis] != 1]
    return moved == sorted(moved)


def transposes_to_reshapes(graph: Graph) -> Graph:
    """A transpose that moves no data becomes a reshape (which the rest of the pipeline may drop)."""
    g = graph.copy()
    for layer in g.layers:
        if layer.kind == "transpose" and _moves_no_data(_perm(layer), g.shape(layer.inputs[0])):
            layer.kind, layer.attrs = "reshape", {"shape": g.shape(layer.outputs[0])}
    return g


def _flatten_reader(graph: Graph, t: Layer) -> tuple[Layer, Layer] | None:
    """(reshape, dense) where transpose `t` is only flattened per batch item and fed to a dense layer with
    constant weights (a Keras Flatten of an NHWC image before its classifier)."""
    perm, y = _perm(t), t.outputs[0]
    readers = graph.consumers().get(y, [])
    if perm[0] != 0 or len(readers) != 1 or y in graph.outputs or readers[0].kind != "reshape":
        return None
    reshape = readers[0]
    flat = reshape.outputs[0]
    dense_readers = graph.consumers().get(flat, [])
    if graph.shape(flat) != (graph.shape(y)[0], math.prod(graph.shape(y)[1:])) or flat in graph.outputs:
        return None
    if len(dense_readers) != 1 or dense_readers[0].kind != "dense" or dense_readers[0].inputs[0] != flat:
        return None
    dense = dense_readers[0]
    if not graph.is_constant(dense.inputs[1]) or dense.inputs.count(flat) != 1:
        return None
    return reshape, dense


def flatten_through_dense(graph: Graph) -> Graph:
    """transpose -> flatten -> dense becomes flatten -> dense with the weight's columns permuted: the dense
    layer is linear, so reading the untransposed elements in their own order with the columns reordered
    to match computes the same sums, and no data moves (the flatten of an NHWC-stored tensor is a copy)."""
    g = graph.copy()
    for t in [layer for layer in g.layers if layer.kind == "transpose"]:
        found = _flatten_reader(g, t)
        if found is None:
            continue
        reshape, dense = found
        perm, x = _perm(t), t.inputs[0]
        inner = g.shape(x)[1:]
        # column j of the old weight multiplies the element of x whose flat (untransposed) index is order[j]
        order = np.arange(math.prod(inner)).reshape(inner).transpose([p - 1 for p in perm[1:]]).reshape(-1)
        w = g.tensor(dense.inputs[1]).data
        moved = np.empty_like(w)
        moved[:, order] = w
        name = g.unique_name(f"{dense.inputs[1]}/unpermuted")
        g.tensors[name] = Tensor(name, moved.shape, g.tensor(dense.inputs[1]).dtype, moved)
        dense.inputs = [dense.inputs[0], name, *dense.inputs[2:]]
        reshape.inputs = [x]
    return g.prune()


def sink_transposes(graph: Graph) -> Graph:
    """Move transposes below layout-free layers until pairs cancel; relabel NHWC inputs and outputs."""
    def left(candidate: Graph) -> int:  # the transposes a candidate keeps once its outputs are relabelled
        return count_transposes(_relabel_outputs(candidate))

    rewriter = _Rewriter(graph.copy())
    rewriter.sink_all()
    g = rewriter.g if left(rewriter.g) < left(graph) else graph.copy()
    for name in list(g.inputs):
        tensor = g.tensor(name)
        if len(tensor.shape) != 4 or tensor.layout is Layout.NHWC or tensor.is_constant:
            continue
        trial = _Rewriter(_relabel_input(g, name))
        trial.sink_all()
        if left(trial.g) < left(g):
            g = trial.g
    return transposes_to_reshapes(flatten_through_dense(_relabel_outputs(g).prune()))
