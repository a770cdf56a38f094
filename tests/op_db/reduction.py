"""op_db entries of the reductions, ArgMax/ArgMin, Cumsum and Cumprod.

The references walk every output element with np.ndindex and combine its reduced elements
in plain Python: math.fsum for floats, exact ints wrapped to the dtype, complex parts summed
separately.
"""

from __future__ import annotations

import math

import numpy as np

from opgraph import dtypes as dt
from opgraph import errors
from tests.op_db import NUMBERS, REALS, ErrorCase, OpInfo, Sample, ShapeCase, rand

F32, I32, I64 = np.float32, np.int32, np.int64
_SMALL_INTS = (dt.DT_INT8, dt.DT_UINT8)


# ---- references --------------------------------------------------------------------------
def _wrap(v: int, dtype) -> int:
    """A Python int wrapped to ``dtype``'s range, as C++ integer arithmetic does."""
    info = np.iinfo(dtype)
    span = int(info.max) - int(info.min) + 1
    return (v - int(info.min)) % span + int(info.min)


def _groups(x, axes, keep_dims):
    """(output shape, [list of reduced elements, one per output element in C order])."""
    nd = x.ndim
    reduced = sorted({a + nd if a < 0 else a for a in np.ravel(axes).tolist()})
    kept = [i for i in range(nd) if i not in reduced]
    groups = []
    for out_index in np.ndindex(*[x.shape[i] for i in kept]):
        elems = []
        for red_index in np.ndindex(*[x.shape[i] for i in reduced]):
            full = [0] * nd
            for i, v in zip(kept, out_index):
                full[i] = v
            for i, v in zip(reduced, red_index):
                full[i] = v
            elems.append(x[tuple(full)].item())
        groups.append(elems)
    shape = [1 if i in reduced else x.shape[i] for i in range(nd)] if keep_dims else \
        [x.shape[i] for i in kept]
    return shape, groups


def _reduce_ref(combine):
    def ref(x, axes, *, keep_dims=False):
        shape, groups = _groups(x, axes, keep_dims)
        values = [combine(g, x.dtype) for g in groups]
        out = np.empty(len(values), x.dtype)
        for i, v in enumerate(values):
            out[i] = v
        return out.reshape(shape)
    return ref


def _fsum_complex(elems) -> complex:
    return complex(math.fsum(e.real for e in elems), math.fsum(e.imag for e in elems))


def _sum(elems, dtype):
    if dtype.kind in "iu":
        return _wrap(sum(elems), dtype)
    return _fsum_complex(elems) if dtype.kind == "c" else math.fsum(elems)


def _prod(elems, dtype):
    if dtype.kind in "iu":
        return _wrap(math.prod(elems), dtype)
    p = complex(1) if dtype.kind == "c" else 1.0
    for e in elems:
        p *= e
    return p


def _mean(elems, dtype):
    n = len(elems)
    if dtype.kind in "iu":
        if n == 0:
            return 0
        s = sum(elems)
        q = abs(s) // n                   # truncation toward zero
        return q if s >= 0 else -q
    if n == 0:
        return 0 if dtype.kind == "c" else math.nan
    return _fsum_complex(elems) / n if dtype.kind == "c" else math.fsum(elems) / n


def _extreme(pick, empty_float, empty_int):
    def combine(elems, dtype):
        if not elems:
            return empty_int(np.iinfo(dtype)) if dtype.kind in "iu" else empty_float
        if dtype.kind == "f" and any(math.isnan(e) for e in elems):
            return math.nan
        return pick(elems)
    return combine


_REFS = {
    "Sum": _reduce_ref(_sum),
    "Prod": _reduce_ref(_prod),
    "Mean": _reduce_ref(_mean),
    "Max": _reduce_ref(_extreme(max, -math.inf, lambda i: i.min)),
    "Min": _reduce_ref(_extreme(min, math.inf, lambda i: i.max)),
    "All": _reduce_ref(lambda elems, _: all(elems)),
    "Any": _reduce_ref(lambda elems, _: any(elems)),
}


def _arg_ref(better):
    def ref(x, dimension, *, output_type=dt.DT_INT64):
        d = int(dimension)
        axis = d + x.ndim if d < 0 else d
        moved = np.moveaxis(x, axis, -1)
        out = np.zeros(moved.shape[:-1], output_type.as_numpy_dtype)
        for idx in np.ndindex(*moved.shape[:-1]):
            line = moved[idx]
            best = 0
            for k in range(1, line.shape[0]):
                if better(line[k], line[best]):   # strict: the first index wins ties
                    best = k
            out[idx] = best
        return out
    return ref


def _scan_ref(combine):
    def ref(x, axis, *, exclusive=False, reverse=False):
        a = int(axis)
        a = a + x.ndim if a < 0 else a
        moved = np.moveaxis(x, a, -1)
        out = np.zeros(moved.shape, x.dtype)
        for idx in np.ndindex(*moved.shape[:-1]):
            line = [v.item() for v in moved[idx]]
            order = range(len(line) - 1, -1, -1) if reverse else range(len(line))
            seen = []
            for k in order:
                before = list(seen)
                seen.append(line[k])
                out[idx + (k,)] = combine(before if exclusive else seen, x.dtype)
        return np.moveaxis(out, -1, a)
    return ref


_cumsum_ref = _scan_ref(_sum)
_cumprod_ref = _scan_ref(_prod)


def _case(inputs, expected, attrs=None, *, error=None):
    """A ShapeCase built with int32 placeholders/constants (the axis inputs are Tidx)."""
    return ShapeCase(inputs, expected, attrs or {}, error=error, dtype=dt.DT_INT32)


# ---- samples -----------------------------------------------------------------------------
def _reduction_samples(rng, t):
    x = rand(rng, (2, 3, 4), t)
    return [Sample((x, np.array([1], I32)), name="one_axis"),
            Sample((x, np.array([0, 2], I32)), {"keep_dims": True}, name="keep_dims"),
            Sample((x, np.array([-1, 0], I64)), name="negative_int64"),
            Sample((x, np.array(1, I32)), name="scalar_axis"),
            Sample((x, np.array([], I32)), name="no_axes"),
            Sample((x, np.array([2, 0, 1], I32)), name="all_axes"),
            Sample((rand(rng, (5,), t), np.array([0], I32)), {"keep_dims": True},
                   name="vector"),
            Sample((rand(rng, (), t), np.array([], I32)), name="scalar"),
            Sample((rand(rng, (0, 3), t), np.array([0], I32)), name="empty_reduced"),
            Sample((rand(rng, (0, 3), t), np.array([1], I32)), {"keep_dims": True},
                   name="empty_kept"),
            Sample((rand(rng, (3, 0), t), np.array([0, 1], I32)), name="empty_all")]


def _wrapping_samples(rng, t):
    """int8/uint8: values large enough to wrap the sums and products."""
    x = rand(rng, (3, 8), t, low=-100, high=120)
    return [Sample((x, np.array([1], I32)), name="wraps"),
            Sample((x, np.array([0, 1], I32)), {"keep_dims": True}, name="wraps_all")]


def _samples_for(small_ints):
    def samples(rng, t):
        if t in small_ints:
            return _reduction_samples(rng, t)[:3] + _wrapping_samples(rng, t)
        return _reduction_samples(rng, t)
    return samples


def _nan_samples(rng, t):
    base = _reduction_samples(rng, t)
    if t.is_floating:
        x = rand(rng, (2, 3), t)
        x[1, 2] = np.nan
        base.append(Sample((x, np.array([1], I32)), name="nan_propagates"))
    return base


def _bool_samples(rng, t):
    x = rng.random((2, 3, 4)) < 0.6
    ones = np.ones((2, 3), bool)
    return [Sample((x, np.array([1], I32)), name="one_axis"),
            Sample((x, np.array([0, -1], I64)), {"keep_dims": True}, name="keep_dims"),
            Sample((ones, np.array([0, 1], I32)), name="all_true"),
            Sample((~ones, np.array(0, I32)), name="all_false"),
            Sample((x, np.array([], I32)), name="no_axes"),
            Sample((np.zeros((0, 2), bool), np.array([0], I32)), name="empty")]


def _reduction_errors(x_dtype):
    x = np.zeros((2, 3), x_dtype)
    return [ErrorCase((x, np.array([2], I32)),
                      regex=r"Invalid reduction dimension 2 for input with 2 dimensions",
                      name="out_of_range"),
            ErrorCase((x, np.array([-3], I64)),
                      regex=r"Invalid reduction dimension -3 for input with 2 dimensions",
                      name="negative_out_of_range"),
            ErrorCase((x, np.array([1, -1], I32)),
                      regex=r"Axes contains duplicate dimension: 1", name="duplicate"),
            ErrorCase((x, np.array([[0]], I32)),
                      regex=r"Shape must be at most rank 1 but is rank 2 for input "
                            r"'reduction_indices'", name="axes_rank"),
            ErrorCase((np.zeros((), x_dtype), np.array(0, I32)),
                      regex=r"Invalid reduction dimension 0 for input with 0 dimensions",
                      name="scalar_input")]


_REDUCTION_SHAPES = [
    _case("[2,?,4];=[1]", "[2,4]"),
    _case("[2,?,4];=[1]", "[2,1,4]", {"keep_dims": True}),
    _case("[2,?,4];=[-1, 0]", "[d0_1]"),
    _case("[2,?,4];=1", "[2,4]"),
    _case("[2,?,4];=[]", "[2,?,4]"),
    _case("[2,3];[1]", "?"),
    _case("[2,3];[1]", "[?,?]", {"keep_dims": True}),
    _case("[2,3];[?]", "[?,?]", {"keep_dims": True}),
    _case("?;=[0]", "?"),
    _case("?;[2]", "?", {"keep_dims": True}),
    _case("[2,3];=[-3]", "Invalid reduction dimension -3 for input with 2 dimensions",
              error=errors.InvalidArgumentError),
    _case("?;=[1, 1]", "Axes contains duplicate dimension: 1",
              error=errors.InvalidArgumentError),
    _case("[2,3];[3]", "reduction_indices has 3 entries but the input has rank 2",
              error=errors.InvalidArgumentError),
    _case("[2,3];[1,1]", "Shape must be at most rank 1",
              error=errors.InvalidArgumentError),
]

_BOOL_SHAPES = [_case("[2,?,4];=[1]", "[2,4]"),
                _case("[2,?];[1]", "[?,?]", {"keep_dims": True}),
                _case("?;[1]", "?")]


def _reduction(op, dtypes, samples, *, differentiable=True, x_dtype=F32, shapes=None):
    return OpInfo(op, ref=_REFS[op], dtypes=dtypes, samples=samples,
                  errors=_reduction_errors(x_dtype),
                  shapes=_REDUCTION_SHAPES if shapes is None else shapes,
                  value_inputs=("reduction_indices",),
                  grad_tol=1e-6 if differentiable else None)


# ---- ArgMax / ArgMin ----------------------------------------------------------------------
def _arg_samples(rng, t):
    x = rand(rng, (3, 4), t, low=-2, high=3)        # small ints: ties are likely
    return [Sample((x, np.array(0, I32)), name="axis0"),
            Sample((x, np.array(1, I32)), {"output_type": dt.DT_INT32}, name="axis1_int32"),
            Sample((x, np.array(-1, I64)), name="negative_int64"),
            Sample((rand(rng, (2, 3, 4), t), np.array(1, I32)), name="rank3"),
            Sample((rand(rng, (5,), t), np.array(0, I32)), name="vector"),
            Sample((rand(rng, (0, 3), t), np.array(1, I32)), name="empty_kept"),
            Sample((np.full((2, 3), rand(rng, (), t)), np.array(1, I32)), name="all_tied")]


_ARG_ERRORS = [
    ErrorCase((np.zeros((2, 3), F32), np.array(2, I32)),
              regex=r"Dimension \(2\) must be in the range \[-2, 2\)", name="out_of_range"),
    ErrorCase((np.zeros((0, 3), F32), np.array(0, I32)),
              regex=r"Reduction axis 0 is empty in shape \[0,3\]", name="empty_axis"),
    ErrorCase((np.zeros((), F32), np.array(0, I32)),
              regex=r"Dimension \(0\) must be in the range \[0, 0\)", name="scalar_input"),
    ErrorCase((np.zeros((2, 3), F32), np.array([0], I32)),
              regex=r"Shape must be rank 0 but is rank 1 for input 'dimension'",
              name="dimension_not_scalar"),
]
_ARG_SHAPES = [
    _case("[2,?,4];=1", "[2,4]"),
    _case("[2,?,4];=-3", "[d0_1,4]"),
    _case("[2,?,4];[]", "[?,?]"),
    _case("[?];[]", "[]"),
    _case("?;[]", "?"),
    _case("[2,3];=2", r"Dimension \(2\) must be in the range",
              error=errors.InvalidArgumentError),
    _case("[];[]", r"a scalar has no dimension to reduce",
              error=errors.InvalidArgumentError),
    _case("[0];[]", r"Reduction axis is empty in shape \[0\]",
              error=errors.InvalidArgumentError),
]


def _arg_info(op, better):
    return OpInfo(op, ref=_arg_ref(better), dtypes=REALS + (dt.DT_UINT8, dt.DT_BOOL),
                  samples=_arg_samples, errors=_ARG_ERRORS, shapes=_ARG_SHAPES,
                  value_inputs=("dimension",))


# ---- Cumsum --------------------------------------------------------------------------------
def _cumsum_samples(rng, t):
    x = rand(rng, (2, 3, 4), t)
    out = [Sample((x, np.array(2, I32)), name="last"),
           Sample((x, np.array(0, I32)), {"exclusive": True}, name="exclusive"),
           Sample((x, np.array(-2, I64)), {"reverse": True}, name="reverse"),
           Sample((x, np.array(1, I32)), {"exclusive": True, "reverse": True}, name="both"),
           Sample((rand(rng, (6,), t), np.array(0, I32)), name="vector"),
           Sample((rand(rng, (0, 3), t), np.array(0, I32)), {"exclusive": True},
                  name="empty_axis"),
           Sample((rand(rng, (2, 0), t), np.array(0, I32)), {"reverse": True},
                  name="empty_other")]
    if t in _SMALL_INTS:
        out.append(Sample((rand(rng, (2, 8), t, low=-100, high=120), np.array(1, I32)),
                          name="wraps"))
    return out


_CUMSUM_ERRORS = [
    ErrorCase((np.zeros((2, 3), F32), np.array(2, I32)),
              regex=r"Expected scan axis in the range \[-2, 2\), but got 2", name="range"),
    ErrorCase((np.zeros((2, 3), F32), np.array([0], I32)),
              regex=r"Shape must be rank 0 but is rank 1 for input 'axis'", name="not_scalar"),
    ErrorCase((np.zeros((), F32), np.array(0, I32)),
              regex=r"Expected scan axis in the range \[0, 0\)", name="scalar_input"),
]
_CUMSUM_SHAPES = [_case("[2,?];[]", "[2,?]"), _case("?;[]", "?"),
                  _case("[2,?];=-3", r"Expected scan axis in the range \[-2, 2\)",
                            error=errors.InvalidArgumentError),
                  _case("[];[]", "a scalar has no axis to scan along",
                            error=errors.InvalidArgumentError)]


ENTRIES = [
    _reduction("Sum", NUMBERS + _SMALL_INTS, _samples_for(_SMALL_INTS)),
    _reduction("Prod", NUMBERS + _SMALL_INTS, _samples_for(_SMALL_INTS)),
    _reduction("Mean", NUMBERS + _SMALL_INTS, _samples_for(_SMALL_INTS)),
    _reduction("Max", REALS + (dt.DT_UINT8,), _nan_samples),
    _reduction("Min", REALS + (dt.DT_UINT8,), _nan_samples),
    _reduction("All", (dt.DT_BOOL,), _bool_samples, differentiable=False, x_dtype=bool,
               shapes=_BOOL_SHAPES),
    _reduction("Any", (dt.DT_BOOL,), _bool_samples, differentiable=False, x_dtype=bool,
               shapes=_BOOL_SHAPES),
    _arg_info("ArgMax", lambda a, b: a > b),
    _arg_info("ArgMin", lambda a, b: a < b),
    OpInfo("Cumsum", ref=_cumsum_ref, dtypes=NUMBERS + _SMALL_INTS, samples=_cumsum_samples,
           errors=_CUMSUM_ERRORS, shapes=_CUMSUM_SHAPES, value_inputs=("axis",),
           grad_tol=1e-6),
    # Cumprod's gradient divides by x (as TF's): the samples are random, never exactly 0.
    OpInfo("Cumprod", ref=_cumprod_ref, dtypes=NUMBERS + _SMALL_INTS, samples=_cumsum_samples,
           errors=_CUMSUM_ERRORS, shapes=_CUMSUM_SHAPES, value_inputs=("axis",),
           grad_tol=1e-6),
]
