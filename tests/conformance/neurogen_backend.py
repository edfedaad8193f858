"""An ONNX backend (onnx.backend.base) whose prepare compiles with neurogen and whose run runs the built C.

neurogen compiles weights and shape arguments into the code. Node tests feed them
as graph inputs, so `run` first turns those inputs (parameter positions such as a
Conv's W and B, and every non-float input) into initializers, then compiles.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.base import Backend, BackendRep

import codegen

# Inputs that neurogen requires to be constant, by operator and input position.
PARAMETER_INPUTS: dict[str, frozenset[int]] = {
    "Conv": frozenset({1, 2}),
    "Gemm": frozenset({1, 2}),
    "BatchNormalization": frozenset({1, 2, 3, 4}),
    "Clip": frozenset({1, 2}),
    "Reshape": frozenset({1}),
    "Pad": frozenset({1, 2, 3}),
    "Squeeze": frozenset({1}),
    "Unsqueeze": frozenset({1}),
    "ReduceMean": frozenset({1}),
    "Dropout": frozenset({1, 2}),
}


def parameter_inputs(model: onnx.ModelProto) -> set[str]:
    names = set()
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if i in PARAMETER_INPUTS.get(node.op_type, ()):
                names.add(name)
    for value in model.graph.input:
        if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            names.add(value.name)
    return names


def freeze(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of `model` where the inputs in `values` are initializers."""
    frozen = onnx.ModelProto()
    frozen.CopyFrom(model)
    keep = [v for v in frozen.graph.input if v.name not in values]
    del frozen.graph.input[:]
    frozen.graph.input.extend(keep)
    for name, value in values.items():
        frozen.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    return frozen


class NeurogenRep(BackendRep):
    def __init__(self, model: onnx.ModelProto, workdir: Path):
        self.model = model
        self.workdir = workdir
        self.graph_inputs = [v.name for v in model.graph.input
                             if v.name not in {i.name for i in model.graph.initializer}]
        self.frozen_names = parameter_inputs(model) & set(self.graph_inputs)

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if isinstance(inputs, dict):
            values = dict(inputs)
        else:
            values = dict(zip(self.graph_inputs, inputs if isinstance(inputs, Sequence) else [inputs]))
        frozen = freeze(self.model, {n: values[n] for n in self.frozen_names if n in values})
        project = codegen.compile_model(frozen, self.workdir / "project", name="node", reference=True)
        compiled = codegen.load(project, werror=True)
        runtime_inputs = {i.name: values[i.name] for i in compiled.inputs}
        outputs = compiled.run(runtime_inputs)
        return tuple(outputs[o.name] for o in compiled.outputs)


class NeurogenBackend(Backend):
    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> NeurogenRep:
        super().prepare(model, device, **kwargs)
        workdir = Path(kwargs.get("workdir") or tempfile.mkdtemp(prefix="neurogen-node-"))
        return NeurogenRep(model, workdir)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() == "CPU"
