"""Input shapes: merging the model's with --input-shape (frontends.inputs), the io description
(emit._io, memory order) and how codegen.runtime reads and checks it."""

from __future__ import annotations

import numpy as np
import pytest
from graphkit import GraphBuilder

from codegen.emit import _io
from codegen.errors import ModelError, NeurogenError
from codegen.frontends.inputs import check_names, resolve
from codegen.ir import Layout
from codegen.runtime import TensorInfo, _io_info, check_input


def test_a_free_leading_dimension_compiles_as_one():
    assert resolve("m.onnx", "x", ["batch", 3, 8, 8], None) == (1, 3, 8, 8)
    assert resolve("m.onnx", "x", ["?", 10], None) == (1, 10)
    assert resolve("m.onnx", "x", [2, 3], None) == (2, 3)


def test_other_free_dimensions_name_input_and_axis():
    with pytest.raises(ModelError) as info:
        resolve("m.onnx", "x", ["batch", 3, "h", "?"], None, " (NHWC)")
    message = str(info.value)
    assert "input 'x' (batch, 3, h, ?) has a free size at axis 2 ('h'), axis 3 ('?')" in message
    assert "give its size (NHWC) with --input-shape x=1,3,N,N" in message


def test_a_hostile_dimension_name_is_printed_safely():
    with pytest.raises(ModelError) as info:
        resolve("m.onnx", "x", [1, "\x1b[2J" + "h" * 100], None)
    assert "\x1b" not in str(info.value) and "h" * 40 not in str(info.value)


def test_given_shape_of_the_wrong_rank():
    with pytest.raises(ModelError, match=r"m.onnx: --input-shape x=1,3,64 has rank 3, but input 'x' has rank 4: "
                                         r"\(N, 3, 64, 64\)"):
        resolve("m.onnx", "x", ["N", 3, 64, 64], (1, 3, 64))


def test_given_shape_that_contradicts_a_fixed_dimension():
    with pytest.raises(ModelError, match="--input-shape x=1,4,64,64 sets axis 1 to 4, but the model fixes it at 3"):
        resolve("m.onnx", "x", ["N", 3, 64, 64], (1, 4, 64, 64))
    assert resolve("m.onnx", "x", ["N", 3, "h", 64], (5, 3, 32, 64)) == (5, 3, 32, 64)


def test_given_shape_without_a_declared_one():
    assert resolve("m.pb", "x", None, (1, 2)) == (1, 2)
    with pytest.raises(ModelError, match="input 'x' has no shape; give one with --input-shape x=D0,D1"):
        resolve("m.pb", "x", None, None)
    with pytest.raises(ModelError, match="sizes must be positive"):
        resolve("m.pb", "x", None, (1, 0))


def test_an_empty_dimension_is_refused():
    with pytest.raises(ModelError, match=r"input 'x' \(0, 3, 4\) has size 0 at axis 0; empty tensors"):
        resolve("m.onnx", "x", [0, 3, 4], None)


def test_names_that_are_no_input():
    check_names("m.onnx", {"x": (1,)}, ["x", "y"])
    with pytest.raises(ModelError, match=r"--input-shape names \['z'\], but the model's inputs are \['x', 'y'\]"):
        check_names("m.onnx", {"z": (1,), "x": (1,)}, ["x", "y"])


# -- the io description and the runtime ----------------------------------------------------------

def test_io_description_is_in_memory_order():
    b = GraphBuilder()
    x = b.input("x", (1, 3, 9, 7), layout=Layout.NHWC)
    y = b.input("y", (1, 3, 9, 7), layout=Layout.NCHW)
    v = b.input("v", (2, 5))
    g = b.output(x, y, v)
    io = {e["name"]: e for e in _io(g, g.inputs)}
    assert io["x"]["shape"] == [1, 9, 7, 3] and io["x"]["layout"] == "nhwc"
    assert io["y"]["shape"] == [1, 3, 9, 7]
    assert io["v"]["shape"] == [2, 5]
    assert {e["size"] for e in io.values()} == {189, 10}
    assert all(e["order"] == "memory" for e in io.values())
    assert _io_info(io["x"]).shape == (1, 9, 7, 3)


def test_runtime_reads_records_from_before_memory_order():
    old = {"name": "x", "shape": [1, 3, 9, 7], "size": 189, "dtype": "f32", "layout": "nhwc"}
    assert _io_info(old).shape == (1, 9, 7, 3)
    assert _io_info({**old, "layout": "nchw"}).shape == (1, 3, 9, 7)


INFO = TensorInfo("x", (1, 3, 32, 32))


def test_check_input_accepts_the_exact_shape_and_casts_floats():
    x = np.random.default_rng(0).standard_normal(INFO.shape)
    got = check_input(INFO, x)
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == INFO.shape
    np.testing.assert_array_equal(got, x.astype(np.float32))
    fortran = np.asfortranarray(x.astype(np.float16))
    assert check_input(INFO, fortran).flags.c_contiguous


def test_check_input_takes_a_scalar_for_a_one_element_vector():
    assert check_input(TensorInfo("s", (1,)), np.float64(2.5)).tolist() == [2.5]


@pytest.mark.parametrize("shape, message", [
    ((1, 32, 3, 32), r"input 'x': axis 1 is 32, expected 3; expected shape \(1, 3, 32, 32\)"),
    ((1, 32, 32, 3), r"input 'x': axis 1 is 32, expected 3"),
    ((3, 32, 32), r"input 'x' has shape \(3, 32, 32\) \(rank 3\); expected shape \(1, 3, 32, 32\)"),
    ((1, 1, 3, 32, 32), r"rank 5"),
    ((2, 3, 32, 32), r"axis 0 is 2, expected 1"),
])
def test_check_input_refuses_another_shape(shape, message):
    with pytest.raises(NeurogenError, match=message):
        check_input(INFO, np.zeros(shape, np.float32))


@pytest.mark.parametrize("value", [np.zeros(INFO.shape, np.int32), np.zeros(INFO.shape, bool),
                                   np.full(INFO.shape, "a")])
def test_check_input_refuses_non_float_data(value):
    with pytest.raises(NeurogenError, match=f"input 'x' holds {value.dtype} values; give floats"):
        check_input(INFO, value)


def test_check_input_refuses_a_ragged_list():
    with pytest.raises(NeurogenError, match="input 'x' is not an array"):
        check_input(INFO, [[1.0, 2.0], [3.0]])
