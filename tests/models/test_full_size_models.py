"""The paper's networks at full size (224x224, batch 1, seeded random weights) against onnxruntime.

The logits are compared before softmax, and checked for spread: random weights
easily make every output equal, and a uniform softmax would hide any bug.
"""

from __future__ import annotations

import numpy as np
import pytest
from support import onnxruntime_outputs, relative_error

import codegen
from codegen import zoo
from codegen.compiler import import_model

NETWORKS = ["vgg16", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"]


@pytest.mark.parametrize("name", NETWORKS)
def test_matches_onnxruntime(name, tmp_path):
    model = zoo.build(name, resolution=224, batch=1, seed=0)
    inputs = zoo.example_input(model, seed=0)
    expected = onnxruntime_outputs(model, inputs)

    graph = import_model(model)
    kinds = {layer.kind for layer in graph.layers}
    assert "scale_shift" not in kinds, "every BatchNormalization folds into its convolution"
    assert "activation" not in kinds, "every activation fuses into the layer before it"

    project = codegen.compile_model(model, tmp_path / name, name=name, reference=True)
    actual = codegen.load(project, werror=True).run(inputs)

    logits, probs = expected["logits"], expected["probs"]
    assert np.isfinite(logits).all() and logits.std() > 0.1, "degenerate logits"
    assert 1.5 / logits.size < probs.max() < 0.99, "softmax is uniform or one-hot"
    assert relative_error(logits, actual["logits"]) <= 1e-4
    assert relative_error(probs, actual["probs"]) <= 1e-4
    assert int(actual["logits"].argmax()) == int(logits.argmax())


@pytest.mark.parametrize("opset", [9, 11, 13, 18, 21])
def test_opsets_of_a_full_network(opset, tmp_path):
    """MobileNetV3-Small written at several opsets: Clip, Squeeze, ReduceMean and HardSwish change form."""
    model = zoo.build("mobilenet_v3_small", opset=opset)
    inputs = zoo.example_input(model, seed=3)
    expected = onnxruntime_outputs(model, inputs)
    actual = codegen.load(codegen.compile_model(model, tmp_path / "p", name="v3s", reference=True)).run(inputs)
    assert relative_error(expected["logits"], actual["logits"]) <= 1e-4
