"""Constant conversion under arbitrary Python objects: to_ndarray, op inputs and feeds.

Properties (hypothesis, bounded): only an OpError escapes (TypeError only for a wrong
dtype argument); whatever is accepted has a TF dtype, the requested dtype and shape, and
round-trips exactly (ints, bools and strings equal; floats equal to the value rounded to the
dtype; NaN stays NaN); a constant never aliases the caller's array. Then one regression test
per conversion fault found and fixed.
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ops
from opgraph import Input, Scope, dtypes, errors
from opgraph import inputs
from opgraph.inputs import to_ndarray
from runtime import ClientSession

IA = errors.InvalidArgumentError
MAX_NESTING = getattr(inputs, "MAX_NESTING", 64)
describe_value = getattr(inputs, "describe_value", repr)
FUZZ = settings(max_examples=250, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))

# Every DType usable with numpy here, plus None (TF's default typing).
USABLE = [t for t in dtypes.ALL_TYPES if t.is_available]
DTYPES = st.sampled_from([None, *USABLE])

# ---- strategies ---------------------------------------------------------------------------
huge_ints = st.one_of(st.integers(-(2**31), 2**31 - 1), st.integers(-(2**70), 2**70),
                      st.sampled_from([2**31, -(2**31) - 1, 2**63 - 1, 2**63, 2**64 - 1,
                                       2**64, -(2**63), -(2**63) - 1, 2**1000, -(2**1000)]),
                       st.just(5000).map(lambda n: 10**n))   # too long for repr()
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0.5, -0.0, 1e300, -1e300, 3.4e38, 3.5e38, 65504.0, 65520.0,
                                    2.0**63, 2.0**64, float("nan"), float("inf")]))
scalars = st.one_of(
    st.booleans(), huge_ints, floats, st.complex_numbers(allow_nan=True, allow_infinity=True),
    st.text(max_size=5), st.binary(max_size=5),
    st.sampled_from(["", "a\x00", "\n", "1.5", "é", b"\xff", b"", "abc"]))
odd_leaves = st.one_of(
    st.none(), st.just(object()), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.sets(st.integers(), max_size=2), st.frozensets(st.integers(), max_size=2),
    st.datetimes(), st.dates(), st.timedeltas(), st.fractions(), st.decimals(allow_nan=True),
    st.just(range(3)), st.just(b"x".decode), st.just(bytearray(b"ab")), st.just(memoryview(b"ab")),
    st.just(Ellipsis), st.just(type), st.just(np.float64), st.just(np.ma.masked_array([1, 2])))
scalar_dtypes = st.one_of(hnp.scalar_dtypes(), hnp.byte_string_dtypes(max_len=3),
                          hnp.unicode_string_dtypes(max_len=3))
np_dtypes = st.one_of(
    scalar_dtypes, scalar_dtypes.map(lambda d: d.newbyteorder(">")),
    st.just(np.dtype(object)), hnp.array_dtypes(max_size=2),        # structured
    st.sampled_from([np.dtype("M8[D]"), np.dtype("m8[s]"), np.dtype("V4"), np.dtype("f16"),
                     np.dtype("c32"), np.dtype("uint32"), np.dtype("uint64"), np.dtype("int8")]))


@st.composite
def numpy_values(draw):
    """Arrays of any dtype and layout: views, steps, transposes, zero strides, read-only,
    numpy scalars and 0-d arrays."""
    dt = draw(np_dtypes)
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    if dt == object:
        arr = np.empty(shape, object)
        for idx in np.ndindex(shape):
            arr[idx] = draw(st.one_of(st.text(max_size=3), st.binary(max_size=3), scalars,
                                      odd_leaves))
    elif dt.kind == "V" and dt.names is None:
        # raw void: hypothesis cannot generate elements for it (newer versions refuse it)
        arr = np.frombuffer(draw(st.binary(min_size=int(np.prod(shape)) * dt.itemsize,
                                           max_size=int(np.prod(shape)) * dt.itemsize)),
                            dtype=dt).reshape(shape).copy()
    else:
        arr = draw(hnp.arrays(dt, shape))
    layout = draw(st.sampled_from(["plain", "step", "transpose", "broadcast", "readonly",
                                   "scalar", "fortran"]))
    if layout == "step" and arr.ndim:
        arr = arr[::2]
    elif layout == "transpose":
        arr = arr.T
    elif layout == "broadcast":
        arr = np.broadcast_to(arr, (2, *arr.shape))
    elif layout == "readonly":
        arr.setflags(write=False)
    elif layout == "scalar" and arr.size:
        return arr.reshape(-1)[0]
    elif layout == "fortran":
        arr = np.asfortranarray(arr)
    return arr


@st.composite
def rectangular(draw):
    """A nested list of one kind of leaf (what a user means to convert)."""
    shape = draw(st.lists(st.integers(0, 3), max_size=3))
    leaf = draw(st.sampled_from([st.booleans(), st.integers(-(2**31), 2**31 - 1), huge_ints,
                                 floats, st.complex_numbers(), st.text(max_size=3),
                                 st.binary(max_size=3), st.one_of(st.integers(-9, 9), floats)]))
    seq = draw(st.sampled_from([list, tuple]))

    def build(dims):
        if not dims:
            return draw(leaf)
        return seq(build(dims[1:]) for _ in range(dims[0]))
    return build(shape)


nested = st.recursive(st.one_of(scalars, odd_leaves, numpy_values()),
                      lambda kids: st.one_of(st.lists(kids, max_size=3),
                                             st.tuples(kids, kids)), max_leaves=8)
any_value = st.one_of(rectangular(), nested, numpy_values(), scalars, odd_leaves)


# ---- the oracle ---------------------------------------------------------------------------
def _leaves(value):
    """Flat leaves and shape of an accepted value, independently of opgraph."""
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        return list(arr.reshape(-1).tolist()) if arr.dtype.kind not in "US" else \
            [x for x in arr.reshape(-1).tolist()], arr.shape
    if isinstance(value, (list, tuple)):
        if not value:
            return [], (0,)
        parts = [_leaves(v) for v in value]
        flat = [x for p, _ in parts for x in p]
        return flat, (len(value), *parts[0][1])
    return [value], ()


def _same(expected, got, dtype) -> bool:
    kind = np.dtype(dtype).kind
    if kind == "O":
        return type(got) is type(expected) and got == expected or (
            isinstance(expected, str) and got == expected)
    if kind == "b":
        return isinstance(expected, (bool, np.bool_)) and bool(expected) == got
    if kind in "iu":
        if isinstance(expected, float):
            return math.isfinite(expected) and expected == got
        return int(expected) == got
    if kind == "c":
        e = complex(expected)
        return _same(e.real, got.real, np.float64) and _same(e.imag, got.imag, np.float64) \
            if dtype == np.complex128 else _close(e.real, got.real, dtype) and \
            _close(e.imag, got.imag, dtype)
    return _close(expected, got, dtype)


def _close(expected, got, dtype) -> bool:
    """``got`` is ``expected`` rounded to ``dtype`` (within one rounding step)."""
    ftype = np.dtype(dtype)
    ftype = np.dtype(np.float32) if ftype.kind == "c" and ftype.itemsize == 8 else \
        np.dtype(np.float64) if ftype.kind == "c" else ftype
    if isinstance(expected, complex):
        if expected.imag:
            return False
        expected = expected.real
    e = float(expected) if not isinstance(expected, int) or abs(expected) < 2**1023 else None
    if e is None:
        return False
    if math.isnan(e):
        return math.isnan(got)
    if math.isinf(e):
        return got == e
    if not math.isfinite(got):
        return False
    eps = np.finfo(ftype).eps
    tiny = np.finfo(ftype).smallest_subnormal
    return abs(got - e) <= abs(e) * eps + tiny


def _check_accepted(value, dtype, arr):
    """An accepted value: a TF dtype, the asked dtype, the nesting shape and its values."""
    assert isinstance(arr, np.ndarray)
    tf_type = dtypes.as_dtype(arr.dtype)                 # has a TF DType
    assert arr.dtype.isnative
    if dtype is not None:
        assert tf_type is dtype
    flat, shape = _leaves(value)
    assert arr.shape == tuple(shape), (arr.shape, shape)
    got = arr.reshape(-1).tolist()
    for e, g in zip(flat, got):
        if isinstance(e, (bytes, str)) and isinstance(g, (bytes, str)):
            assert e == g, (e, g)
            continue
        assert _same(e, g, arr.dtype), (describe_value(value), dtype, e, g, arr.dtype)


def _convert(value, dtype):
    try:
        return to_ndarray(value, dtype)
    except errors.OpError as e:
        assert not isinstance(e, errors.InternalError), e
        assert isinstance(str(e), str) and len(str(e)) < 2000
        return None


# ---- properties ---------------------------------------------------------------------------
@FUZZ
@given(value=any_value, dtype=DTYPES)
def test_to_ndarray_only_op_errors_and_exact_round_trips(value, dtype):
    arr = _convert(value, dtype)
    if arr is not None:
        _check_accepted(value, dtype, arr)


@FUZZ
@given(value=rectangular(), dtype=DTYPES)
def test_rectangular_lists_round_trip(value, dtype):
    arr = _convert(value, dtype)
    if arr is not None:
        _check_accepted(value, dtype, arr)


@settings(FUZZ, max_examples=150)
@given(value=any_value, dtype=DTYPES)
def test_op_inputs_record_op_errors_and_never_alias(value, dtype):
    root = Scope.NewRootScope()
    ident = ops.Identity(root, Input(value, dtype) if dtype is not None else value)
    if not root.ok():
        assert ident.operation.failed
        assert all(isinstance(e, errors.OpError) and not isinstance(e, errors.InternalError)
                   for e in root.status().errors), root.status()
        return
    expected = to_ndarray(value, dtype)
    sess = ClientSession(root)
    got = sess.Run(ident)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tobytes() == expected.tobytes() if got.dtype != object else \
        got.tolist() == expected.tolist()
    if isinstance(value, np.ndarray):
        assert not np.may_share_memory(got, value)
        assert not np.may_share_memory(ident.operation.inputs[0].op.attrs["value"], value)


@settings(FUZZ, max_examples=150)
@given(value=any_value, dtype=st.sampled_from(USABLE))
def test_feeds_raise_only_op_errors_and_never_alias(value, dtype):
    root = Scope.NewRootScope()
    p = ops.Placeholder(root, dtype)
    y = ops.Identity(root, p)
    sess = ClientSession(root)
    try:
        got_p, got_y = sess.Run({p: value}, [p, y])
    except errors.OpError as e:
        assert not isinstance(e, errors.InternalError), e
        return
    assert got_p.dtype == dtype.as_numpy_dtype == got_y.dtype
    if isinstance(value, np.ndarray):
        assert not np.may_share_memory(got_p, value) and not np.may_share_memory(got_y, value)
    else:
        _check_accepted(value, dtype, got_y)


# ---- regression tests: one per fault ------------------------------------------------------
@pytest.mark.parametrize(("value", "dtype", "regex"), [
    (1 + 2j, dtypes.DT_FLOAT, "complex values to float32: the imaginary part would be lost"),
    (np.array([1 + 2j]), dtypes.DT_DOUBLE, "imaginary part would be lost"),
    ([1j], dtypes.DT_INT32, "imaginary part"),
    ("1.5", dtypes.DT_FLOAT, "TF does not parse strings"),
    (["1.5"], dtypes.DT_FLOAT, "TF does not parse strings"),
    ("1", dtypes.DT_INT32, "TF does not parse strings"),
    (np.array(["1"]), dtypes.DT_INT64, "TF does not parse strings"),
    (["abc"], dtypes.DT_INT32, "TF does not parse strings"),        # was numpy's ValueError
    (0.5, dtypes.DT_BOOL, "float values to bool"),
    ([0.0, 2.0], dtypes.DT_BOOL, "float values to bool"),
    (1, dtypes.DT_BOOL, "int values to bool"),
    (1, dtypes.DT_STRING, "int values to string"),
    (datetime.datetime(2020, 1, 1), dtypes.DT_FLOAT, "Cannot convert datetime"),
    (np.datetime64("2020-01-01"), dtypes.DT_INT64, "no datetime types"),
    (np.array([1, 2], "m8[s]"), None, "no datetime types"),
    (np.zeros(2, [("a", "i4")]), dtypes.DT_INT32, "structured numpy array"),  # was silent
    (np.zeros(2, [("a", "i4")]), None, "structured numpy array"),
    (1e300, None, "out of range for float32"),
    (np.float64(1e300), dtypes.DT_FLOAT, "out of range for float32"),
    (70000, dtypes.DT_HALF, "out of range for float16"),
    (2**70, dtypes.DT_INT64, "out of range for int64"),
    (np.ma.masked_array([1, 2], [0, 1]), None, "masked"),
    (fractions.Fraction(1, 3), dtypes.DT_FLOAT, "Cannot convert Fraction"),
    (decimal.Decimal("1.5"), None, "Cannot convert Decimal"),
    (np.array([object()]), None, "dtype object"),
    ([np.zeros(1, np.int64), np.zeros(1, np.uint64)], None, "promote to float64"),
])
def test_lossy_or_foreign_conversions_are_invalid_argument(value, dtype, regex):
    with pytest.raises(IA, match=regex):
        to_ndarray(value, dtype)
    root = Scope.NewRootScope()
    ops.Identity(root, value if dtype is None else Input(value, dtype))
    assert re.search(regex, root.status().message)


@pytest.mark.parametrize(("value", "dtype", "expected"), [
    (1, dtypes.DT_FLOAT, np.float32(1)), (2.0, dtypes.DT_INT32, np.int32(2)),
    (True, dtypes.DT_INT32, np.int32(1)), ([True, False], dtypes.DT_BOOL, [True, False]),
    (np.array([True]), dtypes.DT_BOOL, [True]), (2**70, dtypes.DT_DOUBLE, 2.0**70),
    (3, dtypes.DT_COMPLEX64, np.complex64(3)), (np.arange(3, dtype=np.uint32), dtypes.DT_INT64,
                                                [0, 1, 2]),
    ([np.array([1, 2]), [3, 4]], None, [[1, 2], [3, 4]]),
    (np.array([1.5], ">f8"), None, [1.5]), ([], dtypes.DT_STRING, []),
])
def test_legitimate_conversions_are_kept(value, dtype, expected):
    arr = to_ndarray(value, dtype)
    np.testing.assert_array_equal(arr, np.asarray(expected, dtype=arr.dtype))
    if dtype is not None:
        assert arr.dtype == dtype.as_numpy_dtype
    assert arr.dtype.isnative


@pytest.mark.parametrize("value", [b"\xff", "a\x00", b"a\x00", "é"])
def test_strings_keep_their_exact_bytes_and_type(value):
    arr = to_ndarray([value, value])
    assert arr.dtype == object and arr.tolist() == [value, value]
    assert to_ndarray(np.array([value], dtype=object)).tolist() == [value]


def _self_containing():
    a = [1]
    a.append(a)
    return a


def _deep(n):
    v = 1.0
    for _ in range(n):
        v = [v]
    return v


def _shared_exponential():
    x = [0.0, 0.0]
    for _ in range(60):
        x = [x, x]          # 2**61 logical elements in 61 small lists
    return x


@pytest.mark.parametrize(("make", "error", "regex"), [
    (_self_containing, IA, "a list contains itself|ragged"),
    (lambda: [_self_containing()], IA, "contains itself|ragged"),
    (lambda: (lambda a: (a.append(a), a)[1])([]), IA, "contains itself|nests deeper"),
    (lambda: _deep(100_000), IA, f"nests deeper than {MAX_NESTING} levels"),
    (lambda: _deep(MAX_NESTING + 1), IA, "nests deeper"),
    (_shared_exponential, errors.ResourceExhaustedError, "more than .* elements"),
])
def test_recursive_and_huge_lists_are_op_errors(make, error, regex):
    value = make()
    with pytest.raises(error, match=regex):          # was RecursionError / MemoryError
        to_ndarray(value)
    root = Scope.NewRootScope()
    ops.Identity(root, value)                         # recorded, message formatted safely
    assert isinstance(root.status().errors[0], error)
    assert len(root.status().message) < 1000


def test_max_nesting_itself_is_fine():
    assert to_ndarray(_deep(MAX_NESTING - 1)).shape == (1,) * (MAX_NESTING - 1)


def test_messages_survive_evil_reprs_and_huge_ints():
    class Evil:
        def __repr__(self):
            raise RuntimeError("no repr")

    with pytest.raises(IA, match="Cannot convert Evil <Evil "):
        to_ndarray([Evil()])
    with pytest.raises(IA, match="int of 16610 bits"):
        to_ndarray(10**5000)
    with pytest.raises(IA, match="out of range"):
        to_ndarray([1.5, 2**2000], dtypes.DT_DOUBLE)


def test_implicit_numpy_constants_are_copied():
    a = np.zeros(3, np.float32)
    root = Scope.NewRootScope()
    y = ops.Identity(root, a)
    z = ops.Identity(root, Input(a[::2], dtypes.DT_FLOAT))
    a[:] = 7                                    # the caller changes its array afterwards
    sess = ClientSession(root)
    np.testing.assert_array_equal(sess.Run(y), [0, 0, 0])
    np.testing.assert_array_equal(sess.Run(z), [0, 0])
    const = y.operation.inputs[0].op.attrs["value"]
    assert not const.flags.writeable and not np.may_share_memory(const, a)


def test_unknown_dtype_in_input_is_recorded():
    root = Scope.NewRootScope()
    with pytest.raises(TypeError):
        Input(1, "nope")
    i = Input(1)
    i.dtype = "nope"              # bypassing the constructor's check
    ops.Identity(root, i)
    assert isinstance(root.status().errors[0], errors.OpError)
