"""DTypes: constants importable from opgraph, numpy mapping, as_dtype."""

from __future__ import annotations

import importlib.util
import pickle

import numpy as np
import pytest

import opgraph
import ops
from opgraph import (
    DT_BFLOAT16, DT_BOOL, DT_DOUBLE, DT_FLOAT, DT_HALF, DT_INT8, DT_INT16, DT_INT32, DT_INT64,
    DT_UINT8, DType, Scope, as_dtype, errors,
)

HAS_ML_DTYPES = importlib.util.find_spec("ml_dtypes") is not None

NUMPY_OF = [
    (DT_HALF, np.float16), (DT_FLOAT, np.float32), (DT_DOUBLE, np.float64),
    (DT_INT8, np.int8), (DT_INT16, np.int16), (DT_INT32, np.int32), (DT_INT64, np.int64),
    (DT_UINT8, np.uint8), (DT_BOOL, np.bool_),
]


@pytest.mark.parametrize(("dt", "np_type"), NUMPY_OF, ids=[d.name for d, _ in NUMPY_OF])
def test_numpy_mapping_round_trips(dt, np_type):
    assert isinstance(dt, DType)
    assert dt.as_numpy_dtype == np.dtype(np_type)
    assert as_dtype(np_type) is dt
    assert as_dtype(np.dtype(np_type)) is dt
    assert as_dtype(dt) is dt
    assert as_dtype(dt.name) is dt
    assert as_dtype(dt.tf_name) is dt
    assert dt.is_available


def test_constants_are_importable_from_the_package():
    names = ["DT_HALF", "DT_BFLOAT16", "DT_FLOAT", "DT_DOUBLE", "DT_INT8", "DT_INT16",
             "DT_INT32", "DT_INT64", "DT_UINT8", "DT_BOOL"]
    for n in names:
        assert isinstance(getattr(opgraph, n), DType)
        assert getattr(opgraph, n).tf_name == n
    assert len({getattr(opgraph, n) for n in names}) == len(names)


@pytest.mark.parametrize(("name", "dt"), [
    ("float32", DT_FLOAT), ("float", DT_FLOAT), ("DT_FLOAT", DT_FLOAT), ("double", DT_DOUBLE),
    ("float64", DT_DOUBLE), ("half", DT_HALF), ("float16", DT_HALF), ("int32", DT_INT32),
    ("int64", DT_INT64), ("uint8", DT_UINT8), ("bool", DT_BOOL), ("bfloat16", DT_BFLOAT16),
    ("DT_BFLOAT16", DT_BFLOAT16),
])
def test_as_dtype_names(name, dt):
    assert as_dtype(name) is dt


@pytest.mark.parametrize("bad", ["float33", "", "Float32x", 3, 1.5, None, object(), [1],
                                 np.dtype(np.uint32)])
def test_as_dtype_rejects_with_type_error(bad):
    with pytest.raises(TypeError, match="Cannot convert"):
        as_dtype(bad)


def test_tf_enum_values_and_printing():
    assert (DT_FLOAT.enum, DT_DOUBLE.enum, DT_INT32.enum, DT_HALF.enum,
            DT_BFLOAT16.enum) == (1, 2, 3, 19, 14)
    assert str(DT_FLOAT) == "float32"
    assert repr(DT_DOUBLE) == "tf.float64"
    assert DT_FLOAT.is_floating and DT_HALF.is_floating and not DT_INT32.is_floating
    assert DT_INT8.is_integer and DT_UINT8.is_integer and not DT_BOOL.is_integer


def test_dtypes_are_singletons_through_pickle():
    assert pickle.loads(pickle.dumps(DT_HALF)) is DT_HALF
    assert pickle.loads(pickle.dumps([DT_INT64, DT_BOOL])) == [DT_INT64, DT_BOOL]


@pytest.mark.skipif(HAS_ML_DTYPES, reason="ml_dtypes is installed")
def test_bfloat16_without_ml_dtypes_is_unimplemented_when_used():
    assert not DT_BFLOAT16.is_available
    with pytest.raises(errors.UnimplementedError, match="install 'ml_dtypes' for bfloat16"):
        DT_BFLOAT16.as_numpy_dtype  # noqa: B018
    with pytest.raises(NotImplementedError):
        DT_BFLOAT16.as_numpy_dtype  # noqa: B018
    # Declaring a bfloat16 graph needs no numpy type ...
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_BFLOAT16, shape=[2])
    y = ops.Identity(root, x)
    assert root.ok() and y.output.dtype is DT_BFLOAT16
    # ... but materialising a bfloat16 constant does, and says why.
    ops.Const(root, [1.0, 2.0], dtype=DT_BFLOAT16)
    (err,) = root.status().errors
    assert isinstance(err, errors.UnimplementedError)
    assert "bfloat16" in str(err) and "ml_dtypes" in str(err)
    assert err.op_type == "Const"


@pytest.mark.skipif(not HAS_ML_DTYPES, reason="needs ml_dtypes")
def test_bfloat16_with_ml_dtypes():
    import ml_dtypes  # noqa: PLC0415

    assert DT_BFLOAT16.as_numpy_dtype == np.dtype(ml_dtypes.bfloat16)
    assert as_dtype(ml_dtypes.bfloat16) is DT_BFLOAT16
    root = Scope.NewRootScope()
    c = ops.Const(root, [1.0, 2.0], dtype=DT_BFLOAT16)
    assert root.ok() and c.output.dtype is DT_BFLOAT16


def test_string_dtype_from_numpy_strings():
    assert as_dtype(np.dtype("U3")) is opgraph.DT_STRING
    assert as_dtype("string") is opgraph.DT_STRING


@pytest.mark.parametrize(("py_type", "expected"), [
    (float, "float32"), (int, "int32"), (bool, "bool"), (complex, "complex128"), (str, "string")])
def test_as_dtype_of_python_types_follows_tf(py_type, expected):
    # TF's tf.as_dtype(float) is float32, not numpy's float64.
    assert as_dtype(py_type).name == expected
