"""keras.applications networks at 224x224 from SavedModel and .keras, against TensorFlow itself.

Logits are compared (classifier_activation=None): with random weights the softmax
easily saturates and would hide errors. BatchNorm statistics are calibrated first
(see keras_kit.calibrate_batchnorm) so that activations neither blow up nor vanish.
Every network is whole, VGG16's 120M-parameter classifier included (Flatten of an
NHWC map into Dense). 4-D NHWC outputs are checked by the small model of test_formats.
"""

from __future__ import annotations

import numpy as np
import pytest
from keras_kit import calibrate_batchnorm, save_keras
from support import relative_error

import codegen
from codegen.compiler import import_model
from codegen.ir import Layout

NETWORKS = {
    "vgg16": ("VGG16", {"classifier_activation": None}),
    "resnet50": ("ResNet50", {"classifier_activation": None}),
    "mobilenet_v2": ("MobileNetV2", {"classifier_activation": None}),
    "mobilenet_v3_large": ("MobileNetV3Large", {"classifier_activation": None}),
    "mobilenet_v3_small": ("MobileNetV3Small", {"classifier_activation": None}),
}


@pytest.fixture(scope="module", params=sorted(NETWORKS))
def network(request, tf_modules, tmp_path_factory):
    _, keras = tf_modules
    constructor, kwargs = NETWORKS[request.param]
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, constructor)(weights=None, input_shape=(224, 224, 3), **kwargs)
    calibrate_batchnorm(model, keras, seed=0)
    saved = save_keras(model, tmp_path_factory.mktemp(request.param))
    assert np.isfinite(saved.expected).all() and saved.expected.std() > 0.05 * np.abs(saved.expected).max(), \
        "degenerate outputs"
    return request.param, saved


@pytest.mark.parametrize("fmt", ["savedmodel", "keras"])
def test_matches_tensorflow(network, fmt, tmp_path):
    name, saved = network
    path = saved.saved_model if fmt == "savedmodel" else saved.keras_file
    graph = import_model(path)
    kinds = {layer.kind for layer in graph.layers}
    # NHWC conv/pool chains need no transposes; VGG16's Flatten of an NHWC image, which reorders it, becomes
    # a reordering of its classifier's weight columns (passes.transpose.flatten_through_dense).
    assert "transpose" not in kinds
    # Every BatchNorm folds into its convolution. MobileNetV3's Rescaling (x * a + b on the input) stays one
    # scale_shift: its shift cannot cross the zero padding of the first convolution.
    for layer in graph.layers:
        if layer.kind == "scale_shift":
            assert layer.inputs[0] in graph.inputs and name.startswith("mobilenet_v3"), layer.name
    # ZeroPadding2D folds into the convolution after it, and ResNet50's (after a ReLU) into its max pool.
    assert "pad" not in kinds, "every ZeroPadding2D folds into the layer after it"
    if name == "resnet50":
        (pool,) = [layer for layer in graph.layers if layer.kind == "pool2d"]
        assert pool.attrs["mode"] == "max" and pool.attrs["pads"] == (1, 1, 1, 1)
    assert graph.tensor(graph.inputs[0]).layout is Layout.NHWC

    project = codegen.compile_model(path, tmp_path / name, name=name, reference=True)
    model = codegen.load(project, werror=True)
    assert model.inputs[0].shape == saved.x.shape, "the C API takes the NHWC input as TensorFlow does"
    (actual,) = model.run(saved.x).values()
    assert actual.shape == saved.expected.shape
    error = relative_error(saved.expected, actual)
    print(f"{name} {fmt}: max relative error {error:.2e}")
    assert error <= 1e-4
