"""Helpers for the frontend tests: BatchNorm calibration, saving a Keras model in its formats."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class SavedKeras:
    model: object  # keras.Model
    keras_file: Path
    saved_model: Path
    x: np.ndarray  # one NHWC input
    expected: np.ndarray | list[np.ndarray]  # TensorFlow's output(s) for x


def calibrate_batchnorm(model, keras, seed: int) -> None:
    """Give every BatchNorm the statistics of its own input, as a trained network has.

    Random init leaves mean 0 / variance 1, which makes deep networks blow up or die
    out; one training-mode pass with momentum 0 stores each layer's batch statistics
    (every layer already sees normalised inputs), then gamma/beta are drawn at random.
    """
    rng = np.random.default_rng(seed)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    model(rng.standard_normal((4, *model.input_shape[1:])).astype(np.float32), training=True)
    for layer in norms:
        c = layer.gamma.shape[0]
        layer.gamma.assign(rng.uniform(0.8, 1.2, c).astype(np.float32))
        layer.beta.assign(rng.normal(0.0, 0.05, c).astype(np.float32))
        layer.momentum = 0.99


def save_keras(model, folder: Path, seed: int = 0) -> SavedKeras:
    folder.mkdir(parents=True, exist_ok=True)
    keras_file = folder / f"{model.name}.keras"
    saved_model = folder / f"{model.name}_savedmodel"
    model.save(keras_file)
    model.export(saved_model, verbose=False)
    x = np.random.default_rng(seed).standard_normal((1, *model.input_shape[1:])).astype(np.float32)
    out = model(x, training=False)
    expected = [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else np.asarray(out)
    return SavedKeras(model, keras_file, saved_model, x, expected)
