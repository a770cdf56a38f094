"""Input and InputList: what an op accepts as an input, and constant conversion.

An input is an Output, an op wrapper with one output, or a constant value: a Python scalar,
a (nested) list, or a numpy array. Constants become Const nodes, typed as TF's Python API
types them:

=================  ===========================================================
value              dtype
=================  ===========================================================
numpy array/scalar its own dtype (str/bytes arrays: string)
bool               bool
int                int32 (an int outside int32's range needs an explicit dtype)
float              float32
complex            complex64
str / bytes        string
nested list        by its elements: all bool -> bool; ints -> int32; any float ->
                   float32; mixing bools or strings with numbers is an error
=================  ===========================================================

An explicit dtype converts only without silent loss, as TF refuses such values: bools only
to bool; bools, ints and integral floats to integer types (range-checked); bools, ints and
floats to floating types and complex numbers too to complex types (a finite value that
would overflow to inf is refused); only strings to string. A ragged or self-containing
list, an object array of non-strings, a datetime, a structured array or an unsupported
element is an InvalidArgumentError.
"""

from __future__ import annotations

import itertools
import numbers
import reprlib

import numpy as np

from opgraph import dtypes, errors

__all__ = ["Input", "InputList", "to_ndarray", "describe_value"]

_INT32 = np.iinfo(np.int32)
_F32_MAX = float(np.finfo(np.float32).max)
_INT64 = np.iinfo(np.int64)
_UINT64 = np.iinfo(np.uint64)
#: numpy's maximum rank: a list nested deeper is refused (it is also how a list that
#: contains itself is caught)
MAX_NESTING = 64
#: a nested Python list with more logical elements than this is refused (shared sub-lists
#: could otherwise describe an astronomically large tensor in a few bytes)
MAX_LIST_ELEMENTS = 1 << 26

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxstring = 4, 8, 8, 60
_REPR.maxother = 60


def describe_value(value) -> str:
    """A short, always-succeeding repr of ``value`` for error messages (bounded in length
    and depth, safe for self-containing lists, huge ints and objects whose repr raises)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"<int of {value.bit_length()} bits>"
    try:
        text = _REPR.repr(value)
    except Exception:  # noqa: BLE001  (a user's __repr__ may raise anything)
        return f"<{type(value).__name__} object>"
    return text if len(text) <= 200 else text[:197] + "..."


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


# ---- classification -----------------------------------------------------------------------
_KIND_OF_NUMPY = {"b": "bool", "i": "int", "u": "int", "f": "float", "c": "complex",
                  "U": "str", "S": "str"}


def _unsupported(value) -> errors.InvalidArgumentError:
    what = "numbers" if not isinstance(value, numbers.Number) else "Python or numpy numbers"
    msg = (f"Cannot convert {type(value).__name__} {describe_value(value)} to a tensor: "
           f"expected {what}, bools or strings")
    return errors.InvalidArgumentError(msg)


def _numpy_kind(arr: np.ndarray) -> str:
    """The element kind of a numpy array, refusing arrays no tensor can hold."""
    kind = arr.dtype.kind
    found = _KIND_OF_NUMPY.get(kind)
    if found is not None:
        return found
    if kind == "O":                        # strings (TF's string tensors) or nothing
        if all(isinstance(x, (str, bytes)) for x in arr.flat):
            return "str"
        msg = ("Cannot convert a numpy array of dtype object to a tensor; give it a numeric, "
               "bool or string dtype")
        raise errors.InvalidArgumentError(msg)
    if kind in "mM":
        msg = (f"Cannot convert a numpy {arr.dtype} value to a tensor: TF has no datetime "
               f"types; convert it explicitly, e.g. with .astype('int64')")
        raise errors.InvalidArgumentError(msg)
    try:                                   # e.g. ml_dtypes' bfloat16 (kind 'V')
        dtypes.as_dtype(arr.dtype)
    except TypeError:
        pass
    else:
        return "float"
    if arr.dtype.fields is not None or kind == "V":
        msg = (f"Cannot convert a structured numpy array (dtype {arr.dtype}) to a tensor; "
               f"convert its fields separately")
    else:
        msg = f"numpy dtype {arr.dtype} has no TensorFlow DType"
    raise errors.InvalidArgumentError(msg)


def _normalized_numpy(value) -> tuple[np.ndarray, str]:
    """``value`` (ndarray or numpy scalar) as a plain ndarray a tensor can hold, plus its
    kind: native byte order, strings as object arrays; never a copy unless needed."""
    if isinstance(value, np.ma.MaskedArray):
        msg = "Cannot convert a masked numpy array to a tensor; fill it first (a.filled(...))"
        raise errors.InvalidArgumentError(msg)
    arr = np.asarray(value)
    kind = _numpy_kind(arr)
    if arr.dtype.kind in "US":
        arr = arr.astype(object)
    elif not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr, kind


def _walk(value):
    """Shape, leaf kinds, (min, max) of the ints and whether numpy arrays occur, of a
    (nested) list value. Iterative, a few C-speed passes per level over its distinct
    objects, so deep, self-containing or widely shared lists cannot exhaust the stack or
    memory."""
    shape = []
    level = [value]
    seen_lists: set = set()      # ids of the lists of earlier levels (one depth each)
    keep_alive = []
    logical = 1
    while True:
        types = set(map(type, level))
        if not any(issubclass(t, (list, tuple)) for t in types):
            break
        if not all(issubclass(t, (list, tuple)) for t in types):
            # numpy arrays next to lists at one level: look at their rows as lists
            if not all(isinstance(v, (list, tuple)) or (isinstance(v, np.ndarray) and v.ndim)
                       for v in level):
                raise _ragged(value)
            level = [v if isinstance(v, (list, tuple)) else list(v) for v in level]
            keep_alive.append(level)          # so their ids stay unique during the walk
        if len(shape) >= MAX_NESTING:
            msg = (f"Cannot convert {describe_value(value)} to a tensor: it nests deeper than "
                   f"{MAX_NESTING} levels (the maximum rank){_cycle_hint(value)}")
            raise errors.InvalidArgumentError(msg)
        unique = {id(s): s for s in level}   # shared sub-lists are looked at once
        if not seen_lists.isdisjoint(unique):
            msg = f"Cannot convert {describe_value(value)} to a tensor: a list contains itself"
            raise errors.InvalidArgumentError(msg)
        seen_lists.update(unique)
        lengths = set(map(len, unique.values()))
        if len(lengths) > 1:
            raise _ragged(value)
        length = lengths.pop()
        shape.append(length)
        logical *= length
        if logical > MAX_LIST_ELEMENTS:
            msg = (f"Cannot convert a nested list of shape {describe_value(shape)} to a "
                   f"tensor: more than {MAX_LIST_ELEMENTS} elements; pass a numpy array")
            raise errors.ResourceExhaustedError(msg)
        if length == 0:
            return tuple(shape), set(), None, False
        level = list(itertools.chain.from_iterable(unique.values()))
    kinds: set = set()
    lo = hi = None
    has_arrays = False
    leaf_shape = ()
    numpy_leaves = False
    for t in types:
        if issubclass(t, (np.ndarray, np.generic)):
            numpy_leaves = True
            continue
        kind = _TYPE_KINDS.get(t) or _python_leaf_kind_of_type(t)
        if kind is None:
            raise _unsupported(next(v for v in level if type(v) is t))
        kinds.add(kind)
        if kind == "int":
            ints = [v for v in level if type(v) is t]
            lo, hi = _bounds(lo, hi, int(min(ints)))
            lo, hi = _bounds(lo, hi, int(max(ints)))
    if numpy_leaves:
        shapes = set()
        for v in level:
            if not isinstance(v, (np.ndarray, np.generic)):
                shapes.add(())
                continue
            arr, kind = _normalized_numpy(v)
            if kind in ("float", "complex") and arr.dtype.itemsize > (8 if kind == "float"
                                                                     else 16):
                msg = f"numpy dtype {arr.dtype} has no TensorFlow DType"
                raise errors.InvalidArgumentError(msg)
            has_arrays = has_arrays or isinstance(v, np.ndarray)
            if kind == "int" and arr.size:
                lo, hi = _bounds(lo, hi, int(arr.min()))
                lo, hi = _bounds(lo, hi, int(arr.max()))
            shapes.add(arr.shape)
            kinds.add(kind)
        if len(shapes) > 1:
            raise _ragged(value)
        leaf_shape = shapes.pop()
    shape.extend(leaf_shape)
    for d in leaf_shape:
        logical *= d
    if leaf_shape and logical > MAX_LIST_ELEMENTS:
        msg = (f"Cannot convert a nested list of shape {describe_value(shape)} to a tensor: "
               f"more than {MAX_LIST_ELEMENTS} elements; pass a numpy array")
        raise errors.ResourceExhaustedError(msg)
    return tuple(shape), kinds, (lo, hi) if lo is not None else None, has_arrays


_TYPE_KINDS = {bool: "bool", int: "int", float: "float", complex: "complex", str: "str",
               bytes: "str"}


def _python_leaf_kind_of_type(t):
    if issubclass(t, (bool, np.bool_)):
        return "bool"
    if issubclass(t, (int, np.integer)):
        return "int"
    if issubclass(t, (float, np.floating)):
        return "float"
    if issubclass(t, (complex, np.complexfloating)):
        return "complex"
    if issubclass(t, (str, bytes)):
        return "str"
    return None


def _bounds(lo, hi, v):
    return (v if lo is None or v < lo else lo), (v if hi is None or v > hi else hi)


def _ragged(value) -> errors.InvalidArgumentError:
    msg = f"Cannot convert a ragged nested list to a tensor: {describe_value(value)}"
    return errors.InvalidArgumentError(msg)


def _cycle_hint(value) -> str:
    return " (does a list contain itself?)" if isinstance(value, (list, tuple)) else ""


# ---- conversion ---------------------------------------------------------------------------
def to_ndarray(value, dtype=None) -> np.ndarray:
    """``value`` as a numpy array with TF's dtype rules (see module doc).

    A numpy array that needs no conversion is returned as is (not copied). Raises
    InvalidArgumentError for ragged or self-containing lists, object arrays of non-strings,
    unsupported elements, lossy explicit conversions and ints that do not fit in int32 when
    no dtype is given; TypeError for an unknown ``dtype``.
    """
    if dtype is None:
        # Fast paths for what graph code passes most (axes, shapes, scalars): the same
        # results as the general path below, without walking the value.
        cls = value.__class__
        if cls is int:
            if _INT32.min <= value <= _INT32.max:
                return np.array(value, np.int32)
        elif cls is float:
            if -_F32_MAX <= value <= _F32_MAX or value != value:   # in range, or NaN
                return np.array(value, np.float32)
        elif cls is list and value and len(value) <= 64 and \
                all(v.__class__ is int and _INT32.min <= v <= _INT32.max for v in value):
            return np.array(value, np.int32)
    want = None if dtype is None else dtypes.as_dtype(dtype)
    if isinstance(value, (np.ndarray, np.generic)):
        arr, _ = _normalized_numpy(value)
        if want is None:
            if arr.dtype != object:
                try:
                    dtypes.as_dtype(arr.dtype)
                except TypeError:
                    msg = (f"numpy dtype {arr.dtype} has no TensorFlow DType; pass an explicit "
                           f"dtype")
                    raise errors.InvalidArgumentError(msg) from None
            return arr
        return _cast_checked(arr, want)
    shape, kinds, int_range, has_arrays = _walk(value)
    if want is None:
        return _default_array(value, shape, kinds, int_range, has_arrays)
    if not kinds:                     # an empty list takes any dtype
        return np.zeros(shape, want.as_numpy_dtype)
    return _cast_checked(_build(value, shape, kinds, int_range, want), want)


def _default_array(value, shape, kinds, int_range, has_arrays) -> np.ndarray:
    if not kinds:                     # [] or [[]]: TF gives float32
        return np.zeros(shape, np.float32)
    if "bool" in kinds and len(kinds) > 1:
        msg = f"Cannot convert {describe_value(value)} to a tensor: it mixes bools with other kinds"
        raise errors.InvalidArgumentError(msg)
    if "str" in kinds and len(kinds) > 1:
        msg = (f"Cannot convert {describe_value(value)} to a tensor: it mixes strings with "
               f"other kinds")
        raise errors.InvalidArgumentError(msg)
    if has_arrays:                    # numpy arrays inside a list: numpy's promotion
        arr = _build(value, shape, kinds, int_range, None)
        try:
            dtypes.as_dtype(arr.dtype)
        except TypeError:
            msg = f"Cannot convert {describe_value(value)} to a tensor: numpy gives {arr.dtype}"
            raise errors.InvalidArgumentError(msg) from None
        return arr
    if kinds == {"int"}:
        lo, hi = int_range
        if lo < _INT32.min or hi > _INT32.max:
            bad = hi if hi > _INT32.max else lo
            msg = (f"Python int {describe_value(bad)} does not fit in int32 (the default dtype "
                   f"for Python ints); pass an explicit dtype such as DT_INT64")
            raise errors.InvalidArgumentError(msg)
        return np.array(value, dtype=np.int32)
    target = {"bool": dtypes.DT_BOOL, "str": dtypes.DT_STRING, "int": dtypes.DT_FLOAT,
              "float": dtypes.DT_FLOAT, "complex": dtypes.DT_COMPLEX64}
    want = dtypes.DT_COMPLEX64 if "complex" in kinds else target[next(iter(kinds))]
    return _cast_checked(_build(value, shape, kinds, int_range, want), want)


def _build(value, shape, kinds, int_range, want) -> np.ndarray:
    """The nested list ``value`` as an exact intermediate array: bool, int64/uint64,
    float64, complex128 or object (strings); with ``want`` None and numpy arrays inside,
    numpy's own promotion (checked not to change the kind of the values)."""
    if not kinds:
        return np.zeros(shape, np.float64)
    if "str" in kinds:
        if kinds != {"str"}:
            target = "string" if want is None else want.name
            msg = (f"Cannot convert {describe_value(value)} to {target}: it mixes strings "
                   f"with other kinds")
            raise errors.InvalidArgumentError(msg)
        arr = np.array(value, dtype=object)
        if arr.shape != shape:
            raise _ragged(value)
        return arr
    if "complex" in kinds:
        category, np_type = "c", np.complex128
    elif "float" in kinds:
        category, np_type = "f", np.float64
    elif "int" in kinds:
        category = "iu"
        lo, hi = int_range
        if lo >= _INT64.min and hi <= _INT64.max:
            np_type = np.int64
        elif lo >= 0 and hi <= _UINT64.max:
            np_type = np.uint64
        elif want is not None and _target_category(want) in ("float", "complex"):
            np_type = np.float64            # int -> float: rounding, as any int -> float
        else:
            bad = hi if hi > _INT64.max else lo
            name = "int64" if want is None or not want.is_integer else want.name
            msg = f"Value {describe_value(bad)} out of range for {name}"
            raise errors.InvalidArgumentError(msg)
    else:
        category, np_type = "b", np.bool_
    if want is not None:
        category = np.dtype(np_type).kind
    try:
        arr = np.array(value, dtype=None if want is None else np_type)
    except OverflowError:
        msg = f"Cannot convert {describe_value(value)} to a tensor: a value is out of range"
        raise errors.InvalidArgumentError(msg) from None
    except (ValueError, TypeError) as e:
        msg = f"Cannot convert {describe_value(value)} to a tensor: {e}"
        raise errors.InvalidArgumentError(msg) from None
    if arr.shape != shape:
        raise _ragged(value)
    if arr.dtype.kind not in category:     # numpy promoted e.g. int64 with uint64 to float
        msg = (f"Cannot convert {describe_value(value)} to a tensor: its arrays promote to "
               f"{arr.dtype}, which would change their values; pass an explicit dtype")
        raise errors.InvalidArgumentError(msg)
    return arr


_CATEGORY = {"b": "bool", "i": "int", "u": "int", "f": "float", "c": "complex", "O": "str"}
_ACCEPTS = {
    "bool": ("bool",),
    "int": ("bool", "int", "float"),
    "float": ("bool", "int", "float"),
    "complex": ("bool", "int", "float", "complex"),
    "str": ("str",),
}
_WHY = {
    ("complex", "float"): "the imaginary part would be lost",
    ("complex", "int"): "the imaginary part would be lost",
    ("str", "int"): "TF does not parse strings; convert them explicitly",
    ("str", "float"): "TF does not parse strings; convert them explicitly",
    ("str", "complex"): "TF does not parse strings; convert them explicitly",
    ("str", "bool"): "TF does not parse strings; convert them explicitly",
}


def _target_category(want) -> str:
    if want is dtypes.DT_STRING:
        return "str"
    if want is dtypes.DT_BOOL:
        return "bool"
    if want.is_integer:
        return "int"
    if want.is_floating:
        return "float"
    if want.name.startswith("complex"):
        return "complex"
    return "other"


def _cast_checked(arr: np.ndarray, want) -> np.ndarray:
    """``arr`` (a normalized array) converted to ``want`` only when nothing is lost."""
    target = want.as_numpy_dtype
    src = _CATEGORY.get(arr.dtype.kind, "float")      # bfloat16 & co. are floats
    dst = _target_category(want)
    if src not in _ACCEPTS.get(dst, ()):
        why = _WHY.get((src, dst), f"TF converts only {' and '.join(_ACCEPTS.get(dst, ('?',)))} "
                                   f"values to {want.name}")
        msg = f"Cannot convert {src} values to {want.name}: {why}"
        raise errors.InvalidArgumentError(msg)
    if arr.dtype == target:
        return arr
    if dst == "int" and src in ("int", "float") and arr.size:
        info = np.iinfo(target)
        if src == "float" and not np.all(np.isfinite(arr)):
            msg = f"Cannot convert non-finite values to {want.name}"
            raise errors.InvalidArgumentError(msg)
        lo, hi = arr.min(), arr.max()
        lo, hi = (int(lo), int(hi)) if src == "int" else (float(lo), float(hi))
        if lo < info.min or hi > info.max:
            msg = (f"Value out of range for {want.name}: min {lo:g}, max {hi:g} "
                   f"(allowed [{info.min}, {info.max}])" if src == "float" else
                   f"Value out of range for {want.name}: min {lo}, max {hi} "
                   f"(allowed [{info.min}, {info.max}])")
            raise errors.InvalidArgumentError(msg)
        if src == "float" and not np.array_equal(arr, np.trunc(arr)):
            msg = f"Cannot convert non-integer values to {want.name} without loss"
            raise errors.InvalidArgumentError(msg)
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(target)
    if dst in ("float", "complex") and src in ("int", "float", "complex") and arr.size:
        overflow = np.isfinite(arr) & ~np.isfinite(out)
        if overflow.any():
            bad = arr[overflow].flat[0]
            msg = (f"Value {describe_value(bad.item())} out of range for {want.name} (it would "
                   f"become inf); pass a wider dtype")
            raise errors.InvalidArgumentError(msg)
    return out
