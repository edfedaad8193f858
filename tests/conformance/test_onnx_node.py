"""The ONNX backend node tests (onnx.backend.test) run through neurogen's backend.

Selected: every node test whose operators are all in neurogen's op table and whose
run-time inputs and outputs are float32. Each must match the expected outputs, or,
if it is a known unsupported variant, fail with a clear neurogen error.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import onnx
import pytest
from neurogen_backend import NeurogenBackend, parameter_inputs

from codegen.errors import NeurogenError
from codegen.frontends.onnx import SUPPORTED_OPS

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the case generators overflow casts on purpose
    from onnx.backend.test.case.node import collect_testcases

    ALL_CASES = [c for c in collect_testcases(None) if c.model is not None]

# Variants outside the supported subset: neurogen must reject them with a clear message.
UNSUPPORTED = {
    r"test_(averagepool|maxpool)_3d_": "3-D pooling (1-D and 2-D are supported)",
    r"test_maxpool_with_argmax_": "MaxPool's Indices output",
    r"test_batchnorm_.*_training_mode$": "training-mode BatchNormalization",
    r"test_training_dropout": "training-mode Dropout",
    r"test_gather_": "Gather on run-time data (only shape computations fold)",
    r"test_reshape_allowzero_reordered$": "a dynamic input dimension with no size given",
}


def _float_io(model: onnx.ModelProto) -> bool:
    frozen = parameter_inputs(model)
    runtime_inputs = [v for v in model.graph.input if v.name not in frozen]
    return bool(runtime_inputs) and all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
               for v in [*runtime_inputs, *model.graph.output])


def _selected(case) -> bool:
    if case.name.startswith("test_cast"):
        return False  # Cast folds shape arithmetic only; its tests convert non-float data
    ops = {n.op_type for n in case.model.graph.node if n.domain in ("", "ai.onnx")}
    foreign = any(n.domain not in ("", "ai.onnx") for n in case.model.graph.node)
    return not foreign and ops <= set(SUPPORTED_OPS) and _float_io(case.model)


def _unsupported_reason(name: str) -> str | None:
    return next((why for pattern, why in UNSUPPORTED.items() if re.search(pattern, name)), None)


SELECTED = [c for c in ALL_CASES if _selected(c)]
RESULTS: dict[str, str] = {}


@pytest.mark.parametrize("case", SELECTED, ids=[c.name for c in SELECTED])
def test_node(case, tmp_path):
    reason = _unsupported_reason(case.name)
    rep = NeurogenBackend.prepare(case.model, workdir=tmp_path)
    if reason:
        with pytest.raises(NeurogenError) as info:
            rep.run(case.data_sets[0][0])
        assert "Traceback" not in str(info.value)
        RESULTS[case.name] = "rejected"
        return
    for inputs, expected in case.data_sets:
        outputs = rep.run(inputs)
        assert len(outputs) == len(expected)
        for got, want in zip(outputs, expected):
            np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol)
    RESULTS[case.name] = "passed"


def test_selection_covers_every_supported_op():
    """Every operator in the op table has node tests in the selection (or is fold-only)."""
    covered = {n.op_type for c in SELECTED for n in c.model.graph.node}
    fold_only = {"Shape", "Cast", "Constant"}  # their tests produce integer outputs
    missing = set(SUPPORTED_OPS) - covered - fold_only
    assert not missing, f"no node tests selected for {sorted(missing)}"
