"""Small helpers to build IR graphs by hand for the unit tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from codegen import passes, reference, shapes
from codegen.ir import NO_ACTIVATION, Activation, DType, Graph, Layer, Layout, Tensor

RNG_SEED = 1234


class GraphBuilder:
    """Builds a `Graph` layer by layer, inferring each output shape with codegen.shapes."""

    def __init__(self, name: str = "g", seed: int = RNG_SEED):
        self.graph = Graph(name, {}, [], [], [])
        self.rng = np.random.default_rng(seed)

    def input(self, name: str, shape: tuple[int, ...], layout: Layout = Layout.ANY) -> str:
        self.graph.tensors[name] = Tensor(name, tuple(shape), layout=layout)
        self.graph.inputs.append(name)
        return name

    def const(self, name: str, value: np.ndarray | tuple[int, ...]) -> str:
        if isinstance(value, tuple):
            value = self.rng.standard_normal(value).astype(np.float32)
        value = np.asarray(value)
        self.graph.tensors[name] = Tensor(name, value.shape, DType.from_numpy(value.dtype), data=value)
        return name

    def layer(self, kind: str, inputs: list[str], out: str | None = None, name: str | None = None,
              **attrs: Any) -> str:
        g = self.graph
        name = name or g.unique_name(kind)
        out = out or g.unique_name(f"{name}:out")
        layer = Layer(name, kind, list(inputs), [out], dict(attrs))
        (shape,) = shapes.infer(layer, g)
        g.tensors[out] = Tensor(out, shape, shapes.output_dtype(layer, g))
        g.layers.append(layer)
        return out

    # -- shorthands for the common layers --------------------------------------------
    def conv(self, x: str, m: int, k: int = 3, *, bias: bool = True, group: int = 1,
             strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), activation: Activation = NO_ACTIVATION,
             name: str | None = None, out: str | None = None) -> str:
        c = self.graph.shape(x)[1]
        name = name or self.graph.unique_name("conv")
        w = self.const(f"{name}/w", (m, c // group, k, k))
        b = self.const(f"{name}/b", (m,)) if bias else ""
        return self.layer("conv2d", [x, w, b], out=out, name=name, strides=tuple(strides), pads=tuple(pads),
                          dilations=tuple(dilations), group=group, activation=activation)

    def dense(self, x: str, m: int, *, bias: bool = True, activation: Activation = NO_ACTIVATION,
              name: str | None = None, out: str | None = None) -> str:
        k = self.graph.shape(x)[1]
        name = name or self.graph.unique_name("dense")
        w = self.const(f"{name}/w", (m, k))
        b = self.const(f"{name}/b", (m,)) if bias else ""
        return self.layer("dense", [x, w, b], out=out, name=name, activation=activation)

    def scale_shift(self, x: str, *, name: str | None = None, out: str | None = None) -> str:
        c = self.graph.shape(x)[1]
        name = name or self.graph.unique_name("bn")
        scale = self.const(f"{name}/scale", (0.5 + self.rng.random(c)).astype(np.float32))
        shift = self.const(f"{name}/shift", (c,))
        return self.layer("scale_shift", [x, scale, shift], out=out, name=name, activation=NO_ACTIVATION)

    def act(self, x: str, kind: str, alpha: float = 0.0, beta: float = 0.0, *, name: str | None = None,
            out: str | None = None) -> str:
        return self.layer("activation", [x], out=out, name=name, activation=Activation(kind, alpha, beta))

    def binary(self, op: str, a: str, b: str, *, name: str | None = None, out: str | None = None) -> str:
        return self.layer("binary", [a, b], out=out, name=name, op=op, activation=NO_ACTIVATION)

    def output(self, *names: str) -> Graph:
        self.graph.outputs.extend(names)
        return self.graph.validate()


def random_inputs(graph: Graph, seed: int = 0, scale: float = 1.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: (scale * rng.standard_normal(graph.shape(n))).astype(np.float32) for n in graph.inputs}


def assert_same_outputs(before: Graph, after: Graph, inputs: dict[str, np.ndarray], tol: float = 1e-5) -> None:
    """Both graphs compute the same outputs (same names) on `inputs`, to `tol` relative to the largest value."""
    assert after.outputs == before.outputs
    want = reference.run(before, inputs)
    got = reference.run(after, inputs)
    for name in before.outputs:
        assert got[name].shape == want[name].shape, name
        scale = max(1.0, float(np.abs(want[name]).max(initial=0.0)))
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=tol * scale, err_msg=name)


def kinds(graph: Graph) -> list[str]:
    return [layer.kind for layer in graph.layers]


def identity_layer(b: GraphBuilder, kind: str, x: str, out: str | None = None) -> str:
    rank = len(b.graph.shape(x))
    if kind == "copy":
        return b.layer("copy", [x], out=out)
    if kind == "reshape":
        return b.layer("reshape", [x], out=out, shape=b.graph.shape(x))
    if kind == "activation":
        return b.layer("activation", [x], out=out, activation=Activation())
    if kind == "transpose":
        return b.layer("transpose", [x], out=out, perm=tuple(range(rank)))
    raise AssertionError(kind)


def small_net() -> Graph:
    b = GraphBuilder("small_net")
    x = b.input("x", (1, 3, 9, 9))
    y = b.scale_shift(b.conv(x, 8, strides=(2, 2), name="stem"), name="stem_bn")
    y = b.act(y, "relu")
    y = b.scale_shift(b.conv(y, 8, group=8, name="dw"), name="dw_bn")
    y = b.act(y, "clip", 0.0, 6.0)
    y = identity_layer(b, "copy", y)
    y = b.scale_shift(b.conv(y, 6, k=1, pads=(0, 0, 0, 0), bias=False, name="pw"), name="pw_bn")
    hs = b.act(y, "hard_sigmoid", 1 / 6, 0.5)
    y = b.binary("mul", y, hs)
    y = b.layer("reduce", [y], op="mean", axes=(2, 3), keepdims=True)
    y = b.layer("reshape", [y], shape=(1, 6))
    y = identity_layer(b, "reshape", y)
    w = b.layer("transpose", [b.const("fc_w_t", (6, 5))], perm=(1, 0))
    y = b.layer("dense", [y, w, b.const("fc_b", (5,))], activation=Activation())
    b.act(y, "sigmoid", out="probs")
    return b.output("probs")


def varied_graph() -> Graph:
    """A simplified small net plus layers from most other families, so most templates render."""
    g = passes.simplify(small_net())
    b = GraphBuilder("varied")
    b.graph = g
    y = b.layer("pad", ["x"], mode="reflect", pads=(0, 0, 1, 2, 0, 0, 2, 1), value=0.0)
    y = b.layer("pool2d", [y], mode="avg", kernel=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1), dilations=(1, 1),
                ceil_mode=True, count_include_pad=False)
    y = b.layer("lrn", [y], size=3, alpha=1e-3, beta=0.75, bias=1.0)
    t = b.layer("transpose", [y], perm=(0, 2, 3, 1))
    s = b.layer("softmax", [t], axis=3)
    m = b.layer("matmul", [s, b.const("mm_b", (3, 4))])
    c = b.layer("concat", [m, m], axis=1)
    r = b.layer("reduce", [c], op="mean", axes=(1,), keepdims=False)
    b.layer("binary", [r, b.const("k", np.array(0.5, np.float32))], out="extra", op="div",
            activation=Activation("leaky_relu", 0.1))
    return b.output("extra")
