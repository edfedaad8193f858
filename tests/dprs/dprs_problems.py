"""Problem builders for the DPRS tests: seeded random small DAGs and ResNet50 / DenseNet121 shaped graphs."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from codegen.dprs import Choice, Problem

FORMATS = ("nchw", "nhwc", "nchw8c")


class Builder:
    """Adds layers one by one; choices get keys `<layer>/<n>` so that ties break the same way everywhere."""

    def __init__(self, sources: dict[str, str]):
        self.problem = Problem([], {}, {}, {}, dict(sources), {}, self.adapt_cost)
        self.adapt_table: dict[tuple[str, str, str], float] = {}
        self.default_adapt: Callable[[str, str, str], float] = lambda t, a, b: 1.0

    def layer(self, name: str, inputs: list[str], outputs: list[str] | int = 1,
              choices: list[tuple[tuple[str, ...], str, float]] = ()) -> list[str]:
        if isinstance(outputs, int):
            outputs = [name] if outputs == 1 else [f"{name}:{i}" for i in range(outputs)]
        p = self.problem
        p.layers.append(name)
        p.inputs_of[name] = list(inputs)
        p.outputs_of[name] = list(outputs)
        p.choices[name] = [Choice(f"{name}/{i}", tuple(ins), out, cost) for i, (ins, out, cost) in enumerate(choices)]
        return outputs

    def adapt_cost(self, t: str, a: str, b: str) -> float:
        assert a != b, "adapt_cost called with a == b"
        return self.adapt_table.get((t, a, b), self.default_adapt(t, a, b))


def random_problem(seed: int, n_layers: tuple[int, int] = (2, 6), limit: int | None = 1500) -> Problem:
    """A random DAG with every feature the DP must handle; at most `limit` assignments (brute force stays cheap)."""
    rng = random.Random(seed)
    fmts = FORMATS[: rng.choice((2, 2, 3))]
    sources = {f"in{i}": rng.choice(fmts) for i in range(rng.choice((1, 1, 2, 3)))}
    b = Builder(sources)
    tensors = list(sources)
    for i in range(rng.randint(*n_layers)):
        n_in = rng.choice((0, 1, 1, 1, 2, 2, 3, 4)) if i else rng.choice((1, 2))
        # Favour recent tensors (deep graphs) but allow any (fan-out, skips); repeats give double reads.
        inputs = [tensors[-1 - min(int(rng.expovariate(0.7)), len(tensors) - 1)] for _ in range(n_in)]
        n_choices = rng.randint(1, 4)
        integer = seed % 5 == 0  # integer costs make ties
        choices = [(tuple(rng.choice(fmts) for _ in inputs), rng.choice(fmts),
                    float(rng.randint(0, 6)) if integer else rng.uniform(0.0, 10.0)) for _ in range(n_choices)]
        tensors += b.layer(f"L{i}", inputs, rng.choice((1, 1, 1, 2, 3)), choices)
    p = b.problem
    read = {t for ins in p.inputs_of.values() for t in ins}
    for t in tensors:  # unread layer outputs are graph outputs; some read tensors (and inputs) are too
        if (t not in read and t not in sources) or rng.random() < 0.15:
            p.sink_formats[t] = rng.choice(fmts)
    inf_rate = rng.choice((0.0, 0.0, 0.1, 0.3))
    for t in tensors:
        for a in fmts:
            for c in fmts:
                if a != c:
                    b.adapt_table[t, a, c] = math.inf if rng.random() < inf_rate else rng.uniform(0.1, 6.0)
    while limit and math.prod(len(c) for c in p.choices.values()) > limit:
        longest = max(p.layers, key=lambda layer: len(p.choices[layer]))
        p.choices[longest].pop()
    return p


def _conv_choices(rng: random.Random, fmts: tuple[str, ...], size: float, n_in: int = 1):
    """3-6 routines: one per format, then extras that mostly keep a format and sometimes convert on the fly."""
    out = []
    for i in range(rng.randint(3, 6)):
        fin = fmts[i] if i < len(fmts) else rng.choice(fmts)
        fout = fin if i < len(fmts) or rng.random() < 0.7 else rng.choice(fmts)
        out.append(((fin,) * n_in, fout, size * rng.uniform(0.5, 2.0)))
    return out


def _same_format_choices(rng: random.Random, fmts: tuple[str, ...], size: float, n_in: int):
    """Element-wise / concat routines: one per format, all inputs and the output in it."""
    return [((f,) * n_in, f, size * rng.uniform(0.8, 1.2)) for f in fmts]


def _sized_adapts(b: Builder, rng: random.Random, sizes: dict[str, float]) -> None:
    factor = {(a, c): rng.uniform(0.2, 0.6) for a in FORMATS for c in FORMATS if a != c}
    b.default_adapt = lambda t, a, c: sizes[t] * factor[a, c]


def resnet50_problem(seed: int = 0, n_formats: int = 3) -> Problem:
    """ResNet50's topology: stem, 16 bottlenecks (3-4-6-3) with projection shortcuts and adds, pool, fc."""
    rng = random.Random(seed)
    fmts = FORMATS[:n_formats]
    b = Builder({"image": "nchw"})
    sizes = {"image": 3.0}

    def conv(name: str, x: str, size: float) -> str:
        (y,) = b.layer(name, [x], 1, _conv_choices(rng, fmts, size))
        sizes[y] = size
        return y

    x = conv("conv1", "image", 8.0)
    x = conv("pool1", x, 2.0)
    size = 4.0
    for stage, blocks in enumerate((3, 4, 6, 3)):
        for block in range(blocks):
            name = f"s{stage}b{block}"
            y = conv(f"{name}.conv1", x, size)
            y = conv(f"{name}.conv2", y, size * 2)
            y = conv(f"{name}.conv3", y, size)
            short = conv(f"{name}.proj", x, size) if block == 0 else x
            (x,) = b.layer(f"{name}.add", [y, short], 1, _same_format_choices(rng, fmts, size / 4, 2))
            sizes[x] = size
        size *= 0.8
    x = conv("gap", x, 0.5)
    x = conv("fc", x, 1.0)
    b.problem.sink_formats[x] = "nchw"
    _sized_adapts(b, rng, sizes)
    return b.problem


def densenet121_problem(seed: int = 0, n_formats: int = 3) -> Problem:
    """DenseNet121 as ONNX exports it: every dense layer has its own Concat of all earlier outputs of its block."""
    rng = random.Random(seed)
    fmts = FORMATS[:n_formats]
    b = Builder({"image": "nchw"})
    sizes = {"image": 3.0}

    def layer(name: str, inputs: list[str], size: float, same_format: bool = False) -> str:
        maker = _same_format_choices if same_format else _conv_choices
        (y,) = b.layer(name, inputs, 1, maker(rng, fmts, size, len(inputs)))
        sizes[y] = size
        return y

    x = layer("conv0", ["image"], 8.0)
    x = layer("pool0", [x], 2.0)
    size = 4.0
    for block, n in enumerate((6, 12, 24, 16)):
        features = [x]
        for i in range(n):
            name = f"b{block}l{i}"
            cat = layer(f"{name}.concat", features, size * (1 + i / 4), same_format=True)
            y = layer(f"{name}.conv1", [cat], size)
            features.append(layer(f"{name}.conv2", [y], size / 2))
        x = layer(f"t{block}.concat", features, size * 2, same_format=True)
        if block < 3:
            x = layer(f"t{block}.conv", [x], size)
            x = layer(f"t{block}.pool", [x], size / 2)
        size *= 0.7
    x = layer("gap", [x], 0.5)
    x = layer("fc", [x], 1.0)
    b.problem.sink_formats[x] = "nchw"
    _sized_adapts(b, rng, sizes)
    return b.problem
