"""Reference CNNs built with ``onnx.helper``, for tests, benchmarks and examples.

Every model has one float32 input ``"input"`` of shape ``[batch, 3, R, R]``
(NCHW) and two outputs: ``"logits"`` ``[batch, 1000]`` and
``"probs" = Softmax(logits, axis=1)``.

Weights are random but deterministic in ``seed``, and chosen so that outputs
are not degenerate (they depend on the input; the softmax is neither uniform
nor one-hot), which keeps comparisons against onnxruntime meaningful. Random
BatchNormalization statistics alone would let the activation scale drift
exponentially with depth, so the graph is evaluated on a small calibration
batch while it is built (with ``onnx.reference``) and each BatchNormalization
gets statistics near those of its actual input, as a trained network would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

__all__ = ["MODELS", "build", "example_input"]

MODELS: tuple[str, ...] = (
    "vgg16",
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "tiny_cnn",
)

NUM_CLASSES = 1000
MIN_OPSET = 9

# BatchNormalization statistics are calibrated on standard-normal images of
# size min(resolution, S), enough of them to cover about S x S pixels, so that
# the smallest feature maps still give a usable number of samples. MobileNetV3
# needs S = 224 (on smaller maps its 5x5 depthwise kernels mostly see padding
# and the statistics do not carry over); the others are cheaper and insensitive.
_CALIBRATION_SIZE = {
    "resnet50": 112,
    "mobilenet_v2": 112,
    "mobilenet_v3_large": 224,
    "mobilenet_v3_small": 224,
    "tiny_cnn": 32,
}

# Weights are normal with std = sqrt(gain / fan_in): He (gain 2) for inputs that
# went through a ReLU-like activation, gain 1 for the raw image.
_GAIN_RELU = 2.0
_GAIN_LINEAR = 1.0
# Gain of the squeeze-excite conv feeding HardSigmoid, so the gate spreads over
# (0, 1) instead of sitting at 0.5.
_SE_GATE_GAIN = 10.0
# Final Gemm gains, tuned so that logits have a std of a few units.
_LOGIT_GAIN = {
    "vgg16": 1.5,
    "resnet50": 20.0,
    "mobilenet_v2": 4.0,
    "mobilenet_v3_large": 16.0,
    "mobilenet_v3_small": 12.0,
    "tiny_cnn": 16.0,
}

# BatchNormalization gamma multipliers. The last BN of a residual branch is
# scaled down so that the additions do not blow up the residual stream; BNs
# feeding Clip(0, 6) or hard-swish are scaled up so that inputs reach the kinks
# at 6 (Clip) and at +-3 (hard-swish) often enough to be tested.
_RESIDUAL_GAMMA = 0.2
_CLIP_GAMMA = 3.0
_HSWISH_GAMMA = 2.0


class _Graph:
    """Accumulates nodes and initializers and hands out unique names.

    With a calibration input, every node is also evaluated as it is added.
    """

    def __init__(self, seed: int, opset: int, calibration: np.ndarray | None) -> None:
        self.rng = np.random.default_rng(seed)
        self.opset = opset
        # Built in place: copying a ~550 MB VGG16 proto around would cost seconds.
        self.proto = onnx.ModelProto()
        self.graph = self.proto.graph
        self.values = None if calibration is None else {"input": calibration}
        self._counts: dict[str, int] = {}
        self._consts: dict[tuple[str, tuple[int, ...], bytes], str] = {}

    # -- names, tensors, nodes -------------------------------------------------

    def fresh(self, prefix: str) -> str:
        n = self._counts.get(prefix, 0)
        self._counts[prefix] = n + 1
        return f"{prefix}_{n}"

    def initializer(self, name: str, array: np.ndarray) -> str:
        tensor = self.graph.initializer.add()
        tensor.name = name
        tensor.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
        tensor.dims.extend(array.shape)
        tensor.raw_data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        if self.values is not None:
            self.values[name] = array
        return name

    def const(self, values: npt.ArrayLike, dtype: npt.DTypeLike = np.float32) -> str:
        """A shared (deduplicated) constant initializer."""
        arr = np.asarray(values, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self.initializer(self.fresh("const"), arr)
        return self._consts[key]

    def op(
        self,
        op_type: str,
        inputs: Sequence[str],
        *,
        name: str | None = None,
        output: str | None = None,
        **attrs: object,
    ) -> str:
        """Append a single-output node and return its output name."""
        name = name or self.fresh(op_type)
        output = output or f"{name}_out"
        node = helper.make_node(op_type, list(inputs), [output], name=name, **attrs)
        self.graph.node.append(node)
        self._evaluate(node)
        return output

    def _evaluate(self, node: onnx.NodeProto) -> None:
        if self.values is None:
            return

        def infos(names: Sequence[str]) -> list[onnx.ValueInfoProto]:
            return [helper.make_empty_tensor_value_info(n) for n in names]

        # onnx.reference's BatchNormalization-9 is wrong; inference semantics are the
        # same in every version, so evaluate it as the current one.
        opset = max(self.opset, 15) if node.op_type == "BatchNormalization" else self.opset
        step = helper.make_graph([node], "step", infos(node.input), infos(node.output))
        feeds = {n: self.values[n] for n in node.input}
        outputs = ReferenceEvaluator(step, opsets={"": opset}).run(None, feeds)
        self.values.update(zip(node.output, outputs, strict=True))

    # -- random parameters -----------------------------------------------------

    def normal(self, shape: Sequence[int], std: float) -> np.ndarray:
        arr = self.rng.standard_normal(tuple(shape), dtype=np.float32)
        arr *= np.float32(std)
        return arr

    def uniform(self, shape: Sequence[int], low: float, high: float) -> np.ndarray:
        return self.rng.uniform(low, high, tuple(shape)).astype(np.float32)

    # -- layers ----------------------------------------------------------------

    def conv(
        self,
        x: str,
        cin: int,
        cout: int,
        k: int,
        *,
        stride: int = 1,
        group: int = 1,
        bias: bool = False,
        gain: float = _GAIN_RELU,
    ) -> str:
        """Square conv with "same" padding and weights of std ``sqrt(gain / fan_in)``."""
        name = self.fresh("Conv")
        fan_in = cin // group * k * k
        weight = self.normal((cout, cin // group, k, k), (gain / fan_in) ** 0.5)
        inputs = [x, self.initializer(f"{name}.weight", weight)]
        if bias:
            inputs.append(self.initializer(f"{name}.bias", self.normal((cout,), 0.01)))
        pad = k // 2
        return self.op(
            "Conv",
            inputs,
            name=name,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad] * 4,
            dilations=[1, 1],
            group=group,
        )

    def batch_norm(self, x: str, c: int, *, gamma_scale: float = 1.0) -> str:
        """BatchNormalization; mean/var are random around the calibrated input statistics."""
        name = self.fresh("BatchNormalization")
        if self.values is None:
            mean, var = np.zeros(c), np.ones(c)
        else:
            sample = self.values[x].astype(np.float64)
            mean, var = sample.mean(axis=(0, 2, 3)), sample.var(axis=(0, 2, 3))
            # Shrink towards the layer average: a channel that barely varies on the
            # small calibration batch must not be amplified without bound.
            var = 0.5 * var + 0.5 * var.mean() + 1e-12
        params = {
            "scale": self.uniform((c,), 0.5, 1.5) * np.float32(gamma_scale),
            "bias": self.normal((c,), 0.1),
            "mean": (mean + self.normal((c,), 0.1) * np.sqrt(var)).astype(np.float32),
            "var": (var * self.uniform((c,), 0.5, 1.5)).astype(np.float32),
        }
        inputs = [x] + [self.initializer(f"{name}.{k}", v) for k, v in params.items()]
        return self.op("BatchNormalization", inputs, name=name, epsilon=1e-5)

    def conv_bn(
        self,
        x: str,
        cin: int,
        cout: int,
        k: int,
        *,
        stride: int = 1,
        group: int = 1,
        gamma_scale: float = 1.0,
    ) -> str:
        y = self.conv(x, cin, cout, k, stride=stride, group=group)
        return self.batch_norm(y, cout, gamma_scale=gamma_scale)

    def gemm(self, x: str, fin: int, fout: int, *, gain: float = _GAIN_RELU, output: str | None = None) -> str:
        """Fully connected layer, PyTorch layout (weight ``[fout, fin]``, transB=1)."""
        name = self.fresh("Gemm")
        weight = self.normal((fout, fin), (gain / fin) ** 0.5)
        bias = self.normal((fout,), 0.01)
        inputs = [
            x,
            self.initializer(f"{name}.weight", weight),
            self.initializer(f"{name}.bias", bias),
        ]
        return self.op("Gemm", inputs, name=name, output=output, alpha=1.0, beta=1.0, transB=1)

    # -- activations and shape ops ---------------------------------------------

    def relu(self, x: str) -> str:
        return self.op("Relu", [x])

    def relu6(self, x: str) -> str:
        if self.opset >= 11:
            return self.op("Clip", [x, self.const(0.0), self.const(6.0)])
        return self.op("Clip", [x], min=0.0, max=6.0)

    def hard_sigmoid(self, x: str) -> str:
        return self.op("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)

    def hard_swish_decomposed(self, x: str) -> str:
        """Hard-swish the way older exporters wrote it: ``x * HardSigmoid(x)``."""
        return self.op("Mul", [x, self.hard_sigmoid(x)])

    def hard_swish(self, x: str) -> str:
        if self.opset >= 14:
            return self.op("HardSwish", [x])
        return self.hard_swish_decomposed(x)

    def reduce_mean(self, x: str, axes: Sequence[int]) -> str:
        if self.opset >= 18:
            return self.op("ReduceMean", [x, self.const(list(axes), np.int64)], keepdims=1)
        return self.op("ReduceMean", [x], axes=list(axes), keepdims=1)

    def unsqueeze(self, x: str, axes: Sequence[int]) -> str:
        if self.opset >= 13:
            return self.op("Unsqueeze", [x, self.const(list(axes), np.int64)])
        return self.op("Unsqueeze", [x], axes=list(axes))

    def flatten(self, x: str) -> str:
        return self.op("Flatten", [x], axis=1)

    def torch_flatten(self, x: str) -> str:
        """``x.reshape(x.size(0), -1)`` as the PyTorch exporter writes it."""
        shape = self.op("Shape", [x])
        n = self.op("Gather", [shape, self.const(0, np.int64)], axis=0)
        new_shape = self.op("Concat", [self.unsqueeze(n, [0]), self.const([-1], np.int64)], axis=0)
        return self.op("Reshape", [x, new_shape])

    def global_avg_pool(self, x: str) -> str:
        return self.op("GlobalAveragePool", [x])

    def dropout(self, x: str) -> str:
        return self.op("Dropout", [x])

    # -- model -----------------------------------------------------------------

    def classifier_outputs(self, x: str, fin: int, *, logit_gain: float) -> None:
        """Final Gemm to ``"logits"`` plus ``"probs" = Softmax(logits)``."""
        self.gemm(x, fin, NUM_CLASSES, gain=logit_gain, output="logits")
        self.op("Softmax", ["logits"], output="probs", axis=1)

    def model(self, name: str, batch: int, resolution: int) -> onnx.ModelProto:
        """Declare the graph I/O and return the finished model."""

        def value_info(tensor: str, shape: Sequence[int]) -> onnx.ValueInfoProto:
            return helper.make_tensor_value_info(tensor, TensorProto.FLOAT, list(shape))

        self.graph.name = name
        self.graph.input.append(value_info("input", [batch, 3, resolution, resolution]))
        for output in ("logits", "probs"):
            self.graph.output.append(value_info(output, [batch, NUM_CLASSES]))
        opset = helper.make_opsetid("", self.opset)
        self.proto.opset_import.append(opset)
        self.proto.ir_version = helper.find_min_ir_version_for([opset])
        self.proto.producer_name = "neurogen.zoo"
        self.proto.doc_string = f"{name} with random weights (reference model for neurogen)"
        return self.proto


# -- VGG16 ---------------------------------------------------------------------

_VGG16_CFG: tuple[int | None, ...] = (
    64, 64, None, 128, 128, None, 256, 256, 256, None, 512, 512, 512, None, 512, 512, 512, None,
)  # fmt: skip


def _vgg16(g: _Graph, resolution: int) -> None:
    x, c, size, gain = "input", 3, resolution, _GAIN_LINEAR
    for width in _VGG16_CFG:
        if width is None:
            x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
            size //= 2
        else:
            x = g.relu(g.conv(x, c, width, 3, bias=True, gain=gain))
            c, gain = width, _GAIN_RELU
    x = g.flatten(x)
    x = g.dropout(g.relu(g.gemm(x, c * size * size, 4096)))
    x = g.dropout(g.relu(g.gemm(x, 4096, 4096)))
    g.classifier_outputs(x, 4096, logit_gain=_LOGIT_GAIN["vgg16"])


# -- ResNet50 ------------------------------------------------------------------


def _bottleneck(g: _Graph, x: str, cin: int, width: int, stride: int) -> tuple[str, int]:
    cout = width * 4
    y = g.relu(g.conv_bn(x, cin, width, 1))
    y = g.relu(g.conv_bn(y, width, width, 3, stride=stride))
    y = g.conv_bn(y, width, cout, 1, gamma_scale=_RESIDUAL_GAMMA)
    shortcut = x
    if stride != 1 or cin != cout:
        shortcut = g.conv_bn(x, cin, cout, 1, stride=stride)
    return g.relu(g.op("Add", [y, shortcut])), cout


def _resnet50(g: _Graph) -> None:
    x = g.relu(g.conv_bn("input", 3, 64, 7, stride=2))
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512), strict=True)):
        for i in range(blocks):
            stride = 2 if stage > 0 and i == 0 else 1
            x, c = _bottleneck(g, x, c, width, stride)
    x = g.flatten(g.global_avg_pool(x))
    g.classifier_outputs(x, c, logit_gain=_LOGIT_GAIN["resnet50"])


# -- MobileNetV2 ---------------------------------------------------------------

# (expansion t, output channels c, repeats n, first stride s)
_MOBILENET_V2_CFG = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _inverted_residual_v2(g: _Graph, x: str, cin: int, cout: int, t: int, stride: int) -> str:
    residual = stride == 1 and cin == cout
    hidden = cin * t
    y = x
    if t != 1:
        y = g.relu6(g.conv_bn(y, cin, hidden, 1, gamma_scale=_CLIP_GAMMA))
    y = g.relu6(g.conv_bn(y, hidden, hidden, 3, stride=stride, group=hidden, gamma_scale=_CLIP_GAMMA))
    # Linear bottleneck: no activation after the projection.
    y = g.conv_bn(y, hidden, cout, 1, gamma_scale=_RESIDUAL_GAMMA if residual else 1.0)
    return g.op("Add", [x, y]) if residual else y


def _mobilenet_v2(g: _Graph) -> None:
    x = g.relu6(g.conv_bn("input", 3, 32, 3, stride=2, gamma_scale=_CLIP_GAMMA))
    c = 32
    for t, cout, n, s in _MOBILENET_V2_CFG:
        for i in range(n):
            x = _inverted_residual_v2(g, x, c, cout, t, s if i == 0 else 1)
            c = cout
    x = g.relu6(g.conv_bn(x, c, 1280, 1, gamma_scale=_CLIP_GAMMA))
    x = g.dropout(g.torch_flatten(g.global_avg_pool(x)))
    g.classifier_outputs(x, 1280, logit_gain=_LOGIT_GAIN["mobilenet_v2"])


# -- MobileNetV3 ---------------------------------------------------------------

# (kernel, expanded channels, output channels, squeeze-excite, hard-swish, stride)
_V3Block = tuple[int, int, int, bool, bool, int]

_MOBILENET_V3_LARGE_CFG: tuple[_V3Block, ...] = (
    (3, 16, 16, False, False, 1),
    (3, 64, 24, False, False, 2),
    (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2),
    (5, 120, 40, True, False, 1),
    (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2),
    (3, 200, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 480, 112, True, True, 1),
    (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2),
    (5, 960, 160, True, True, 1),
    (5, 960, 160, True, True, 1),
)

_MOBILENET_V3_SMALL_CFG: tuple[_V3Block, ...] = (
    (3, 16, 16, True, False, 2),
    (3, 72, 24, False, False, 2),
    (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2),
    (5, 240, 40, True, True, 1),
    (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1),
    (5, 144, 48, True, True, 1),
    (5, 288, 96, True, True, 2),
    (5, 576, 96, True, True, 1),
    (5, 576, 96, True, True, 1),
)


def _make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` (never down by more than 10%)."""
    rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


def _squeeze_excite(g: _Graph, x: str, c: int) -> str:
    squeezed = _make_divisible(c / 4)
    s = g.reduce_mean(x, [2, 3])
    s = g.relu(g.conv(s, c, squeezed, 1, bias=True))
    s = g.hard_sigmoid(g.conv(s, squeezed, c, 1, bias=True, gain=_SE_GATE_GAIN))
    return g.op("Mul", [x, s])


def _inverted_residual_v3(g: _Graph, x: str, cin: int, block: _V3Block) -> str:
    k, hidden, cout, use_se, use_hs, stride = block
    act: Callable[[str], str] = g.hard_swish if use_hs else g.relu
    gamma = _HSWISH_GAMMA if use_hs else 1.0
    residual = stride == 1 and cin == cout
    y = x
    if hidden != cin:
        y = act(g.conv_bn(y, cin, hidden, 1, gamma_scale=gamma))
    y = act(g.conv_bn(y, hidden, hidden, k, stride=stride, group=hidden, gamma_scale=gamma))
    if use_se:
        y = _squeeze_excite(g, y, hidden)
    y = g.conv_bn(y, hidden, cout, 1, gamma_scale=_RESIDUAL_GAMMA if residual else 1.0)
    return g.op("Add", [x, y]) if residual else y


def _mobilenet_v3(g: _Graph, name: str, cfg: Sequence[_V3Block], last: int, head: int) -> None:
    # The stem uses the decomposed x * HardSigmoid(x) form, to exercise fusion passes.
    x = g.conv_bn("input", 3, 16, 3, stride=2, gamma_scale=_HSWISH_GAMMA)
    x = g.hard_swish_decomposed(x)
    c = 16
    for block in cfg:
        x = _inverted_residual_v3(g, x, c, block)
        c = block[2]
    x = g.hard_swish(g.conv_bn(x, c, last, 1, gamma_scale=_HSWISH_GAMMA))
    x = g.global_avg_pool(x)
    x = g.hard_swish(g.conv(x, last, head, 1, bias=True))
    x = g.dropout(g.flatten(x))
    g.classifier_outputs(x, head, logit_gain=_LOGIT_GAIN[name])


# -- tiny CNN ------------------------------------------------------------------


def _tiny_cnn(g: _Graph) -> None:
    # Per-channel input normalisation, written with Sub/Div by constants.
    x = g.op("Sub", ["input", g.const(np.full((1, 3, 1, 1), 0.1))])
    x = g.op("Div", [x, g.const(np.full((1, 3, 1, 1), 1.2))])
    x = g.relu(g.conv_bn(x, 3, 16, 3, stride=2))
    x = g.op("LeakyRelu", [g.conv(x, 16, 16, 3, group=16, bias=True)], alpha=0.1)
    # Two branches joined by Concat.
    a = g.relu(g.conv(x, 16, 16, 1, bias=True))
    b = g.op("Sigmoid", [g.conv(x, 16, 16, 3, bias=True)])
    x = g.op("Concat", [a, b], axis=1)
    # Residual block.
    y = g.conv_bn(x, 32, 32, 1, gamma_scale=_RESIDUAL_GAMMA)
    x = g.relu(g.op("Add", [x, y]))
    x = g.op(
        "AveragePool",
        [x],
        kernel_shape=[3, 3],
        strides=[2, 2],
        pads=[1, 1, 1, 1],
        count_include_pad=0,
    )
    x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    x = g.relu(g.conv(x, 32, 24, 3, stride=2, bias=True))
    x = g.flatten(g.global_avg_pool(x))
    g.classifier_outputs(x, 24, logit_gain=_LOGIT_GAIN["tiny_cnn"])


# -- public API ----------------------------------------------------------------


def build(name: str, *, resolution: int = 224, batch: int = 1, seed: int = 0, opset: int = 17) -> onnx.ModelProto:
    """Build reference model ``name`` (one of :data:`MODELS`) with random weights."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    max_opset = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= max_opset:
        raise ValueError(f"opset must be in [{MIN_OPSET}, {max_opset}], got {opset}")
    min_resolution = 8 if name == "tiny_cnn" else 32
    if resolution < min_resolution:
        raise ValueError(f"{name} needs resolution >= {min_resolution}, got {resolution}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")

    calibration = None
    if name in _CALIBRATION_SIZE:  # VGG16 has no BatchNormalization to calibrate
        size = min(resolution, _CALIBRATION_SIZE[name])
        images = -(-(_CALIBRATION_SIZE[name] ** 2) // size**2)  # ceil division
        shape = (images, 3, size, size)
        calibration = np.random.default_rng([seed, 1]).standard_normal(shape, dtype=np.float32)
    g = _Graph(seed, opset, calibration)
    if name == "vgg16":
        _vgg16(g, resolution)
    elif name == "resnet50":
        _resnet50(g)
    elif name == "mobilenet_v2":
        _mobilenet_v2(g)
    elif name == "mobilenet_v3_large":
        _mobilenet_v3(g, name, _MOBILENET_V3_LARGE_CFG, last=960, head=1280)
    elif name == "mobilenet_v3_small":
        _mobilenet_v3(g, name, _MOBILENET_V3_SMALL_CFG, last=576, head=1024)
    else:
        _tiny_cnn(g)
    return g.model(name, batch, resolution)


def example_input(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal float32 arrays for every (non-initializer) graph input."""
    rng = np.random.default_rng(seed)
    initializers = {t.name for t in model.graph.initializer}
    feeds: dict[str, np.ndarray] = {}
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        tensor_type = inp.type.tensor_type
        if tensor_type.elem_type != TensorProto.FLOAT:
            raise ValueError(f"input {inp.name!r} is not float32")
        dims = tensor_type.shape.dim
        if not all(d.HasField("dim_value") for d in dims):
            raise ValueError(f"input {inp.name!r} has a non-static shape")
        feeds[inp.name] = rng.standard_normal([d.dim_value for d in dims], dtype=np.float32)
    return feeds
