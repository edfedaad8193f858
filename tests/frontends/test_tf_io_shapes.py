"""TensorFlow models: the generated header, C tables, record and runtime give NHWC shapes in memory
order; ZeroPadding2D folds into the convolution; --input-shape is checked against the model."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from keras_kit import save_keras
from support import relative_error

import codegen
from codegen.compiler import import_model
from codegen.errors import ModelError, NeurogenError

H, W, C = 9, 7, 3  # all different, so that a permuted shape shows


@pytest.fixture(scope="module")
def padded(tf_modules, tmp_path_factory):
    _, keras = tf_modules
    keras.utils.set_random_seed(4)
    layers = keras.layers
    x = keras.Input((H, W, C), name="image")
    y = layers.ZeroPadding2D(((1, 0), (0, 1)))(x)
    y = layers.Conv2D(5, 3, strides=2, padding="valid", activation="relu")(y)
    y = layers.ZeroPadding2D(1)(y)
    y = layers.DepthwiseConv2D(3, padding="valid", name="features")(y)
    return save_keras(keras.Model(x, y, name="padded"), tmp_path_factory.mktemp("padded"), seed=4)


def test_zero_padding_folds_into_the_convolutions(padded):
    graph = import_model(padded.keras_file)
    assert [layer.kind for layer in graph.layers] == ["conv2d", "conv2d"]
    assert [layer.attrs["pads"] for layer in graph.layers] == [(1, 0, 0, 1), (1, 1, 1, 1)]


def test_header_tables_record_and_runtime_show_memory_order(padded, tmp_path):
    project = codegen.compile_model(padded.keras_file, tmp_path / "project", name="padded", reference=True)
    out_shape = list(padded.expected.shape)  # NHWC, as Keras gives it
    header = (project / "include" / "padded.h").read_text()
    assert re.search(rf"input 0: 'image', f32 \[1, {H}, {W}, {C}\], nhwc", header), header
    assert f"f32 [{', '.join(map(str, out_shape))}], nhwc" in header
    source = (project / "src" / "padded.c").read_text()
    assert f'{{"image", 4, {{1, {H}, {W}, {C}}}, {H * W * C}u}}' in source
    io = json.loads((project / "tuning.json").read_text())["io"]
    assert io["inputs"][0]["shape"] == [1, H, W, C] and io["inputs"][0]["layout"] == "nhwc"
    assert io["outputs"][0]["shape"] == out_shape

    compiled = codegen.load(project, werror=True)
    assert compiled.inputs[0].shape == (1, H, W, C)
    assert list(compiled.outputs[0].shape) == out_shape
    (got,) = compiled.run(padded.x).values()
    assert got.shape == padded.expected.shape
    assert relative_error(padded.expected, got) < 1e-5
    nchw = np.ascontiguousarray(padded.x.transpose(0, 3, 1, 2))  # same size, the wrong order
    with pytest.raises(NeurogenError, match=rf"input 'image': axis 1 is {C}, expected {H}; "
                                            rf"expected shape \(1, {H}, {W}, {C}\)"):
        compiled.run(nchw)


def test_input_shape_is_checked_in_the_model_order(padded):
    with pytest.raises(ModelError, match=rf"--input-shape image=1,{H},{W} has rank 3, but input 'image' has "
                                         rf"rank 4: \(\?, {H}, {W}, {C}\) \(in the model's own NHWC order\)"):
        import_model(padded.keras_file, input_shapes={"image": (1, H, W)})
    with pytest.raises(ModelError, match=f"sets axis 3 to 4, but the model fixes it at {C}"):
        import_model(padded.keras_file, input_shapes={"image": (1, H, W, 4)})
    with pytest.raises(ModelError, match=r"--input-shape names \['img'\], but the model's inputs are \['image'\]"):
        import_model(padded.keras_file, input_shapes={"img": (1, H, W, C)})
    graph = import_model(padded.keras_file, input_shapes={"image": (2, H, W, C)})
    assert graph.shape("image") == (2, C, H, W)  # the IR's logical NCHW


def test_tflite_input_shape_checks(padded, tf_modules, tmp_path):
    tf, _ = tf_modules
    path = tmp_path / "padded.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(padded.model).convert())
    graph = import_model(path)
    (name,) = graph.inputs
    assert graph.shape(name) == (1, C, H, W)
    assert "pad" not in [layer.kind for layer in graph.layers]
    with pytest.raises(ModelError, match=rf"--input-shape {name}=1,{H},{W},{C},1 has rank 5, but input "
                                         rf"'{name}' has rank 4: \(\?, {H}, {W}, {C}\) \(NHWC\)"):
        import_model(path, input_shapes={name: (1, H, W, C, 1)})
    with pytest.raises(ModelError, match=rf"the model's inputs are \['{name}'\]"):
        import_model(path, input_shapes={"nope": (1, H, W, C)})
    # The signature leaves the batch free, though the file's shape says 1.
    assert import_model(path, input_shapes={name: (2, H, W, C)}).shape(name) == (2, C, H, W)
