"""Input and InputList: what an op accepts as an input, and constant conversion.

An input is an Output, an op wrapper with one output, or a constant value: a Python scalar,
a (nested) list, or a numpy array. Constants become Const nodes, typed as TF's Python API
types them:

=================  ===========================================================
value              dtype
=================  ===========================================================
numpy array/scalar its own dtype
bool               bool
int                int32 (an int outside int32's range needs an explicit dtype)
float              float32
str / bytes        string
nested list        by its elements: all bool -> bool; ints -> int32; any float ->
                   float32; mixing bools with numbers is an error
=================  ===========================================================

A ragged list, an object array or an unsupported element is an InvalidArgumentError.
"""

from __future__ import annotations

import numbers

import numpy as np

from opgraph import dtypes, errors

__all__ = ["Input", "InputList", "to_ndarray"]

_INT32 = np.iinfo(np.int32)


class Input:
    """Explicit wrapper for one op input (an Output, op wrapper or constant value).

    Passing the value directly works everywhere; ``Input(value, dtype=...)`` forces the
    dtype of a constant.
    """

    __slots__ = ("value", "dtype")

    def __init__(self, value, dtype=None):
        self.value = value.value if isinstance(value, Input) else value
        self.dtype = None if dtype is None else dtypes.as_dtype(dtype)


class InputList(list):
    """A list input (``N * T`` args): a sequence of inputs."""


def _python_leaf_kind(v):
    if isinstance(v, (bool, np.bool_)):
        return "bool"
    if isinstance(v, numbers.Integral):
        return "int"
    if isinstance(v, numbers.Real):
        return "float"
    if isinstance(v, (str, bytes)):
        return "str"
    if isinstance(v, numbers.Complex):
        return "complex"
    return None


def _leaf_kinds(value, kinds: set) -> None:
    if isinstance(value, (list, tuple)):
        for v in value:
            _leaf_kinds(v, kinds)
    elif isinstance(value, np.ndarray):
        kinds.add(f"np:{value.dtype}")
    else:
        k = _python_leaf_kind(value)
        if k is None:
            msg = (f"Cannot convert {type(value).__name__} {value!r} to a tensor: expected "
                   f"numbers, bools or strings")
            raise errors.InvalidArgumentError(msg)
        kinds.add(k)


def to_ndarray(value, dtype=None) -> np.ndarray:
    """``value`` as a numpy array with TF's dtype rules (see module doc).

    Raises InvalidArgumentError for ragged lists, object arrays, unsupported elements, and
    ints that do not fit in int32 when no dtype is given.
    """
    want = None if dtype is None else dtypes.as_dtype(dtype)
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.dtype == object:
            msg = ("Cannot convert a numpy array of dtype object to a tensor; give it a "
                   "numeric, bool or string dtype")
            raise errors.InvalidArgumentError(msg)
        if want is None:
            try:
                dtypes.as_dtype(arr.dtype)
            except TypeError:
                msg = f"numpy dtype {arr.dtype} has no TensorFlow DType"
                raise errors.InvalidArgumentError(msg) from None
            return arr
        return _cast_checked(arr, want)
    kinds: set = set()
    _leaf_kinds(value, kinds)
    try:
        arr = np.array(value, dtype=np.str_ if kinds == {"str"} else None)
    except (ValueError, OverflowError) as e:
        if "inhomogeneous" in str(e) or "sequence" in str(e):
            msg = f"Cannot convert a ragged nested list to a tensor: {value!r}"
        else:
            msg = f"Cannot convert {value!r} to a tensor: {e}"
        raise errors.InvalidArgumentError(msg) from None
    if arr.dtype == object:
        msg = (f"Cannot convert {value!r} to a tensor: the elements do not form a "
               "rectangular array of one kind")
        raise errors.InvalidArgumentError(msg)
    if want is not None:
        return _cast_checked(arr, want)
    if not kinds:                     # [] or [[]]: TF gives float32
        return arr.astype(np.float32)
    if "bool" in kinds and len(kinds) > 1:
        msg = f"Cannot convert {value!r} to a tensor: it mixes bools with other kinds"
        raise errors.InvalidArgumentError(msg)
    if "str" in kinds and len(kinds) > 1:
        msg = f"Cannot convert {value!r} to a tensor: it mixes strings with other kinds"
        raise errors.InvalidArgumentError(msg)
    if kinds <= {"int"}:
        if arr.dtype.kind not in "iu" or (arr.size and (arr.min() < _INT32.min or
                                                        arr.max() > _INT32.max)):
            msg = (f"Python int {value!r} does not fit in int32 (the default dtype for "
                   f"Python ints); pass an explicit dtype such as DT_INT64")
            raise errors.InvalidArgumentError(msg)
        return arr.astype(np.int32)
    if kinds <= {"int", "float"}:
        return arr.astype(np.float32)
    if kinds == {"bool"}:
        return arr.astype(np.bool_)
    if kinds == {"str"}:
        return arr.astype(object)
    if "complex" in kinds:
        return arr.astype(np.complex64)
    return arr


def _cast_checked(arr: np.ndarray, want) -> np.ndarray:
    target = want.as_numpy_dtype
    if arr.dtype == target:
        return arr
    if target.kind in "iu" and arr.dtype.kind in "iuf" and arr.size:
        info = np.iinfo(target)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            msg = f"Cannot convert non-finite values to {want.name}"
            raise errors.InvalidArgumentError(msg)
        if arr.min() < info.min or arr.max() > info.max:
            msg = (f"Value out of range for {want.name}: min {arr.min()}, max {arr.max()} "
                   f"(allowed [{info.min}, {info.max}])")
            raise errors.InvalidArgumentError(msg)
    if target.kind in "iu" and arr.dtype.kind == "f" and arr.size and \
            not np.array_equal(arr, np.trunc(arr)):
        msg = f"Cannot convert non-integer values to {want.name} without loss"
        raise errors.InvalidArgumentError(msg)
    return arr.astype(target)
