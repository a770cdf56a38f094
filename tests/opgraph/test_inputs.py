"""Input conversion: Python/numpy values become Const nodes with TF-Python dtype rules."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import ops
from opgraph import (
    DT_BOOL, DT_DOUBLE, DT_FLOAT, DT_HALF, DT_INT8, DT_INT32, DT_INT64, DT_STRING, DT_UINT8,
    Input, InputList, Scope, errors,
)
from opgraph.inputs import to_ndarray

IA = errors.InvalidArgumentError


@pytest.mark.parametrize(("value", "dtype", "shape"), [
    (1.5, DT_FLOAT, []), (2, DT_INT32, []), (True, DT_BOOL, []), (-(2**31), DT_INT32, []),
    (2**31 - 1, DT_INT32, []),
    ([1, 2, 3], DT_INT32, [3]), ([1.0, 2], DT_FLOAT, [2]), ([[1, 2], [3, 4]], DT_INT32, [2, 2]),
    ([[True], [False]], DT_BOOL, [2, 1]), ([], DT_FLOAT, [0]), ([[], []], DT_FLOAT, [2, 0]),
    ((1, 2), DT_INT32, [2]), ([(1.5,), [2.5]], DT_FLOAT, [2, 1]),
    (np.float64(1.5), DT_DOUBLE, []), (np.int64(3), DT_INT64, []),
    (np.zeros((2, 3)), DT_DOUBLE, [2, 3]), (np.zeros(4, np.int8), DT_INT8, [4]),
    (np.zeros((0, 2), np.float16), DT_HALF, [0, 2]), (np.array(True), DT_BOOL, []),
    (np.arange(3, dtype=np.uint8), DT_UINT8, [3]), ([np.float32(1), 2.0], DT_FLOAT, [2]),
    ("abc", DT_STRING, []), (["a", "bc"], DT_STRING, [2]),
])
def test_constant_dtype_rules(value, dtype, shape):
    root = Scope.NewRootScope()
    ident = ops.Identity(root, value)
    assert root.ok(), root.status()
    const = ident.operation.inputs[0].op
    assert const.type == "Const" and const.name == "Const/Const"
    assert ident.output.dtype is dtype and const.attrs["dtype"] is dtype
    assert ident.output.shape.as_list() == shape
    assert const.output_values[0].shape == tuple(shape)
    if dtype is not DT_STRING:
        np.testing.assert_array_equal(const.attrs["value"], np.asarray(value))


def test_numpy_value_is_kept_not_copied_into_a_new_dtype():
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    root = Scope.NewRootScope()
    c = ops.Const(root, a)
    assert c.output.dtype is DT_INT64
    np.testing.assert_array_equal(c.operation.attrs["value"], a)


@pytest.mark.parametrize(("value", "regex"), [
    ([1, [2, 3]], r"Cannot convert a ragged nested list to a tensor: \[1, \[2, 3\]\]"),
    ([[1, 2], [3]], r"ragged"),
    ([[1.0], [2.0, 3.0]], r"ragged"),
    (np.array([object(), 1], dtype=object), r"numpy array of dtype object"),
    (np.array([[1, 2]], dtype=object), r"dtype object"),
    (2**31, r"Python int 2147483648 does not fit in int32 .*pass an explicit dtype such as "
            r"DT_INT64"),
    (-(2**31) - 1, r"does not fit in int32"),
    ([1, 2**40], r"does not fit in int32"),
    (2**70, r"does not fit in int32|Cannot convert"),
    ([True, 1], r"mixes bools with other kinds"),
    ([1.0, False], r"mixes bools"),
    (None, r"Cannot convert NoneType None to a tensor"),
    ([1, None], r"Cannot convert NoneType"),
    ({"a": 1}, r"Cannot convert dict"),
    (object(), r"Cannot convert object"),
    ([1, "a"], r"mixes strings with other kinds"),
    ([["a"], [2.5]], r"mixes strings with other kinds"),
])
def test_bad_constants_are_invalid_argument(value, regex):
    root = Scope.NewRootScope()
    ident = ops.Identity(root.WithOpName("ident"), value)
    assert ident.operation.failed
    (err,) = root.status().errors
    assert type(err) is IA
    assert err.op_name == "ident" and err.op_type == "Identity"
    assert "(input 'input') for node 'ident' (op: 'Identity') created at " in str(err)
    assert err.site.startswith(os.path.abspath(__file__) + ":")
    assert re.search(regex, str(err)), str(err)
    assert root.graph().num_ops() == 0


@pytest.mark.parametrize(("value", "dtype", "expected"), [
    (2**40, DT_INT64, 2**40), ([1, 2], DT_DOUBLE, [1.0, 2.0]), (3.0, DT_INT32, 3),
    (1, DT_HALF, 1.0), (255, DT_UINT8, 255), ([1.5, 2.5], DT_FLOAT, [1.5, 2.5]),
    (np.arange(3, dtype=np.int64), DT_INT32, [0, 1, 2]), (True, DT_BOOL, True),
])
def test_explicit_dtype(value, dtype, expected):
    root = Scope.NewRootScope()
    via_const = ops.Const(root, value, dtype=dtype)
    via_input = ops.Identity(root, Input(value, dtype=dtype))
    assert root.ok(), root.status()
    for w in (via_const, via_input):
        assert w.output.dtype is dtype
    np.testing.assert_array_equal(via_const.operation.attrs["value"], expected)


@pytest.mark.parametrize(("value", "dtype", "regex"), [
    (300, DT_UINT8, r"Value out of range for uint8: min 300, max 300"),
    (-1, DT_UINT8, r"out of range for uint8"),
    (2**40, DT_INT32, r"out of range for int32"),
    (1.5, DT_INT32, r"Cannot convert non-integer values to int32 without loss"),
    (float("nan"), DT_INT64, r"Cannot convert non-finite values to int64"),
])
def test_explicit_dtype_out_of_range(value, dtype, regex):
    root = Scope.NewRootScope()
    ops.Const(root.WithOpName("c"), value, dtype=dtype)
    ops.Identity(root.WithOpName("i"), Input(value, dtype=dtype))
    e1, e2 = root.status().errors
    assert (e1.op_name, e1.op_type) == ("c", "Const") and (e2.op_name, e2.op_type) == (
        "i", "Identity")
    assert re.search(regex, str(e1)) and re.search(regex, str(e2))


def test_dtype_mismatch_with_python_float_is_an_input_error():
    # C++ users hit this with Add(x_double, 1.0); Python floats are float32.
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_DOUBLE, shape=[2])
    ops.AddV2(root.WithOpName("add"), x, 1.0)
    assert "Inconsistent values for attr 'T': float64 (from input 'x') vs. float32 (from input " \
           "'y')" in root.status().message
    assert ops.AddV2(root, x, Input(1.0, DT_DOUBLE)).output.dtype is DT_DOUBLE


def test_wrappers_outputs_and_operations_as_inputs():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[2])
    a = ops.Identity(root, x)                       # a wrapper
    b = ops.Identity(root, a.output)                # an Output
    c = ops.Identity(root, b.operation)             # a single-output Operation
    d = ops.AddV2(root, Input(c), InputList([1.0])[0])   # Input around a wrapper
    assert root.ok(), root.status()
    assert [w.operation.inputs[0].op for w in (a, b, c)] == [x.operation, a.operation,
                                                            b.operation]
    assert d.operation.inputs[0] == c.output
    assert d.output.shape.as_list() == [2]


def test_input_wrapper_and_input_list():
    i = Input(Input(3, DT_INT64))
    assert i.value == 3 and i.dtype is None
    assert Input(1, "int64").dtype is DT_INT64
    assert isinstance(InputList([1, 2]), list)
    with pytest.raises(TypeError):
        Input(1, "notatype")


def test_to_ndarray_directly():
    assert to_ndarray(1.0).dtype == np.float32
    assert to_ndarray([[1, 2]]).dtype == np.int32
    assert to_ndarray(np.float16(1)).dtype == np.float16
    assert to_ndarray(1 + 2j).dtype == np.complex64
    with pytest.raises(IA, match="ragged"):
        to_ndarray([[1], 2])
    with pytest.raises(ValueError, match="does not fit in int32"):
        to_ndarray([2**33])


def test_const_with_unknown_dtype_is_recorded_like_any_build_error():
    import ops
    from opgraph import Scope, errors

    root = Scope.NewRootScope()
    c = ops.Const(root, [1, 2], dtype="nope")
    assert c.operation.failed and not root.ok()
    err = root.status().errors[0]
    assert isinstance(err, errors.InvalidArgumentError)
    assert "nope" in str(err) and err.op_type == "Const" and "test_inputs.py" in err.site
