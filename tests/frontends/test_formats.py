"""Every TensorFlow format (.keras, .h5, frozen .pb, SavedModel, .tflite), PyTorch through ONNX, and the errors.

A small Keras model uses most supported layer kinds (including Flatten of an NHWC
image and a 4-D output); it is compiled from each format and compared with
TensorFlow, or with the TFLite interpreter for the .tflite file.
"""

from __future__ import annotations

import builtins

import numpy as np
import pytest
from keras_kit import calibrate_batchnorm, save_keras
from support import relative_error

import codegen
from codegen.cli import main
from codegen.compiler import import_model
from codegen.errors import ModelError, UnsupportedOpsError


def small_model(keras):
    layers = keras.layers
    x = keras.Input((32, 32, 3), name="image")
    y = layers.Rescaling(1 / 127.5, offset=-1.0)(x)
    y = layers.Normalization(mean=[0.1, -0.2, 0.3], variance=[1.5, 0.5, 2.0])(y)
    y = layers.ZeroPadding2D(((1, 0), (1, 0)))(y)
    y = layers.Conv2D(16, 3, strides=2, padding="valid")(y)
    y = layers.BatchNormalization()(y)
    y = layers.ReLU(6.0)(y)
    a = layers.DepthwiseConv2D(3, padding="same")(y)
    a = layers.BatchNormalization()(a)
    a = layers.Activation("hard_swish")(a)
    b = layers.SeparableConv2D(16, 3, padding="same", activation="relu")(y)
    y = layers.Add()([a, b])
    gate = layers.GlobalAveragePooling2D(keepdims=True)(y)
    gate = layers.Conv2D(16, 1, activation="sigmoid")(gate)
    y = layers.Multiply()([y, gate])
    y = layers.Concatenate()([layers.MaxPooling2D(2)(y), layers.AveragePooling2D(3, 2, padding="same")(y)])
    features = layers.Conv2D(8, 1, name="features")(y)
    z = layers.Flatten()(features)
    z = layers.Dropout(0.5)(z)
    z = layers.Dense(20, activation="relu")(z)
    z = layers.Reshape((4, 5))(z)
    z = layers.Reshape((20,))(z)
    pooled = layers.GlobalAveragePooling2D()(y)
    z = layers.Concatenate()([z, pooled])
    probs = layers.Dense(10, activation="softmax", name="probs")(z)
    return keras.Model(x, [features, probs], name="small")


@pytest.fixture(scope="module")
def small(tf_modules, tmp_path_factory):
    _, keras = tf_modules
    keras.utils.set_random_seed(1)
    model = small_model(keras)
    calibrate_batchnorm(model, keras, seed=1)
    return save_keras(model, tmp_path_factory.mktemp("small"), seed=1)


def frozen_pb(tf, model, path):
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = tf.function(lambda x: model(x, training=False))
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function(tf.TensorSpec((1, 32, 32, 3), tf.float32)))
    path.write_bytes(frozen.graph.as_graph_def().SerializeToString())
    return path


def run_project(path, x, tmp_path, **kwargs):
    project = codegen.compile_model(path, tmp_path / "project", name="small", reference=True, **kwargs)
    return list(codegen.load(project, werror=True).run(x).values())


def check_outputs(expected, actual):
    for ref, out in zip(expected, actual):
        assert out.shape == ref.shape, "4-D outputs leave in NHWC, as TensorFlow gives them"
        assert relative_error(ref, out) <= 1e-4


@pytest.mark.parametrize("fmt", ["keras", "h5", "pb", "savedmodel"])
def test_small_model_formats(small, fmt, tf_modules, tmp_path):
    tf, _ = tf_modules
    if fmt == "keras":
        path = small.keras_file
    elif fmt == "savedmodel":
        path = small.saved_model
    elif fmt == "h5":
        path = tmp_path / "small.h5"
        small.model.save(path)
    else:
        path = frozen_pb(tf, small.model, tmp_path / "small.pb")
    graph = import_model(path)
    # The Flatten of the NHWC feature map, which reorders it, becomes a reorder of the dense weights' columns.
    assert not [layer for layer in graph.layers if layer.kind == "transpose"]
    expected = [np.asarray(t) for t in small.model(small.x, training=False)]
    actual = run_project(path, small.x, tmp_path)
    if fmt == "savedmodel":  # the signature lists outputs by name: output_0 (features), output_1 (probs)
        assert len(actual) == 2
    check_outputs(expected, actual)


def tflite_file(tf, model, path):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    path.write_bytes(converter.convert())
    return path


def tflite_outputs(tf, path, x):
    interpreter = tf.lite.Interpreter(str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def test_mobilenet_v3_small_tflite(tf_modules, tmp_path):
    """A full-size network through TFLiteConverter (float32), against the TFLite interpreter."""
    tf, keras = tf_modules
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV3Small(weights=None, input_shape=(224, 224, 3), classifier_activation=None)
    calibrate_batchnorm(model, keras, seed=0)
    path = tflite_file(tf, model, tmp_path / "mobilenet_v3_small.tflite")
    x = np.random.default_rng(0).standard_normal((1, 224, 224, 3)).astype(np.float32)
    (expected,) = tflite_outputs(tf, path, x)
    assert expected.std() > 1e-2, "degenerate outputs"
    (actual,) = run_project(path, x, tmp_path)
    error = relative_error(expected, actual)
    print(f"mobilenet_v3_small tflite: max relative error {error:.2e}")
    assert error <= 1e-4


def test_small_model_tflite(small, tf_modules, tmp_path):
    tf, _ = tf_modules
    path = tflite_file(tf, small.model, tmp_path / "small.tflite")
    expected = tflite_outputs(tf, path, small.x)
    actual = run_project(path, small.x, tmp_path)
    by_size = {o.size: o for o in actual}  # the interpreter may list outputs in another order
    for ref in expected:
        assert relative_error(ref, by_size[ref.size].reshape(ref.shape)) <= 1e-4


def test_pytorch_through_onnx(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, c: int):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(c, 2 * c, 1, bias=False), nn.BatchNorm2d(2 * c), nn.ReLU6(),
                nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c, bias=False), nn.BatchNorm2d(2 * c), nn.ReLU6(),
                nn.Conv2d(2 * c, c, 1, bias=False), nn.BatchNorm2d(c))

        def forward(self, x):
            return x + self.body(x)

    class TinyMobileNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16),
                                      nn.ReLU6())
            self.blocks = nn.Sequential(Block(16), Block(16))
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))

    torch.manual_seed(0)
    net = TinyMobileNet()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # trained-looking statistics instead of 0 / 1
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    net.eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "tiny_mobilenet.onnx"
    torch.onnx.export(net, (x,), str(path), input_names=["input"], output_names=["logits"], dynamo=False)
    with torch.no_grad():
        expected = net(x).numpy()
    project = codegen.compile_model(path, tmp_path / "project", reference=True)
    actual = codegen.load(project, werror=True).run(x.numpy())["logits"]
    assert relative_error(expected, actual) <= 1e-4


# -- errors ---------------------------------------------------------------------------------------

def test_missing_tensorflow_names_the_extra(small, monkeypatch, tmp_path, capsys):
    real_import = builtins.__import__

    def no_tensorflow(name, *args, **kwargs):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("No module named 'tensorflow'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorflow)
    with pytest.raises(ModelError, match=r"pip install 'neurogen\[tf\]'"):
        import_model(small.keras_file)
    assert main(["compile", str(small.saved_model), "-o", str(tmp_path / "p"), "--reference", "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("neurogen: error: ") and "neurogen[tf]" in err and "Traceback" not in err


def test_unknown_format(tmp_path, capsys):
    path = tmp_path / "model.caffemodel"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(ModelError, match="unknown model format"):
        import_model(path)
    assert main(["compile", str(path), "-o", str(tmp_path / "p"), "-q"]) == 1
    assert "unknown model format" in capsys.readouterr().err


def test_unsupported_ops_are_listed_by_name(tf_modules, tmp_path):
    tf, keras = tf_modules
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, activation="softsign", name="conv_softsign")(x)
    y = keras.layers.Activation("elu", name="act_elu")(y)
    y = keras.layers.Activation("softsign", name="act_softsign")(y)
    model = keras.Model(x, y)
    path = tmp_path / "unsupported.keras"
    model.save(path)
    with pytest.raises(UnsupportedOpsError) as info:
        import_model(path)
    assert set(info.value.unsupported) >= {"Softsign", "Elu"}
    message = str(info.value)
    assert "conv_softsign" in message and "act_softsign" in message and "act_elu" in message
