"""op_db entries of the array ops (Const, Placeholder, ..., Reshape, Transpose, Range, ...).

References are written independently of the kernels: element-by-element loops over
np.ndindex, Python arithmetic for sizes and ranges.
"""

from __future__ import annotations

import math

import numpy as np

from opgraph import dtypes as dt
from opgraph import errors
from tests.op_db import FLOATS, INTS, ErrorCase, OpInfo, Sample, ShapeCase, rand

ALL_NUMERIC = FLOATS + INTS + (dt.DT_BOOL, dt.DT_UINT8, dt.DT_COMPLEX64)

I32, I64, F32 = np.int32, np.int64, np.float32


def _i32(v):
    return np.array(v, dtype=I32)


def _i64(v):
    return np.array(v, dtype=I64)


def _elements(x) -> list:
    """x's elements in row-major order, by explicit iteration."""
    x = np.asarray(x)
    return [x[idx] for idx in np.ndindex(*x.shape)]


def _from_elements(items, shape, dtype) -> np.ndarray:
    out = np.empty(tuple(shape), dtype=dtype)
    for k, idx in enumerate(np.ndindex(*out.shape)):
        out[idx] = items[k]
    return out


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


# ---- references -----------------------------------------------------------------------------
def _reshape_ref(tensor, shape):
    x = np.asarray(tensor)
    sizes = [int(d) for d in np.asarray(shape).reshape(-1)]
    if -1 in sizes:
        rest = [d for d in sizes if d != -1]
        if 0 in rest:   # TF leaves the zero sizes (and the input's zero dims) out
            known = _numel([d for d in rest if d > 0])
            n_in = _numel([d for d in x.shape if d > 0])
        else:
            known, n_in = _numel(rest), x.size
        sizes[sizes.index(-1)] = n_in // known
    return _from_elements(_elements(x), sizes, x.dtype)


def _transpose_ref(x, perm):
    x = np.asarray(x)
    perm = [int(p) for p in np.asarray(perm).reshape(-1)]
    out = np.empty(tuple(x.shape[p] for p in perm), dtype=x.dtype)
    for idx in np.ndindex(*out.shape):
        src = [0] * x.ndim
        for k, p in enumerate(perm):
            src[p] = idx[k]
        out[idx] = x[tuple(src)]
    return out


def _expand_dims_ref(x, dim):
    x = np.asarray(x)
    d = int(np.asarray(dim).reshape(-1)[0])
    shape = list(x.shape)
    shape.insert(d if d >= 0 else len(shape) + 1 + d, 1)
    return _from_elements(_elements(x), shape, x.dtype)


def _squeeze_ref(x, *, squeeze_dims=()):
    x = np.asarray(x)
    axes = {d % x.ndim for d in squeeze_dims}
    shape = [n for i, n in enumerate(x.shape) if not (n == 1 and (not axes or i in axes))]
    return _from_elements(_elements(x), shape, x.dtype)


def _broadcast_to_ref(x, shape):
    x = np.asarray(x)
    shape = [int(d) for d in np.asarray(shape).reshape(-1)]
    out = np.empty(tuple(shape), dtype=x.dtype)
    lead = len(shape) - x.ndim
    for idx in np.ndindex(*out.shape):
        src = tuple(0 if x.shape[k] == 1 else idx[lead + k] for k in range(x.ndim))
        out[idx] = x[src]
    return out


def _fill_ref(dims, value):
    dims = [int(d) for d in np.asarray(dims).reshape(-1)]
    value = np.asarray(value)
    return _from_elements([value.item()] * _numel(dims), dims, value.dtype)


def _constant_like(x, v):
    x = np.asarray(x)
    return _from_elements([v] * x.size, x.shape, x.dtype)


def _range_ref(start, limit, delta):
    dtype = np.asarray(start).dtype
    a, b, d = (np.asarray(v).item() for v in (start, limit, delta))
    if dtype.kind in "iu":
        n = max(0, -((a - b) // d))                 # ceil((b - a) / d) in exact integers
    else:
        n = max(0, math.ceil((b - a) / d))
    return np.array([a + i * d for i in range(n)], dtype=np.float64).astype(dtype)


# ---- samples --------------------------------------------------------------------------------
def _reshape_samples(rng, t):
    return [Sample((rand(rng, (2, 3, 4), t), _i32([4, -1])), name="infer"),
            Sample((rand(rng, (2, 3, 4), t), _i64([6, 4])), name="int64"),
            Sample((rand(rng, (), t), _i32([1, 1])), name="from_scalar"),
            Sample((rand(rng, (1, 1), t), _i32([])), name="to_scalar"),
            Sample((rand(rng, (0, 3), t), _i32([3, 0])), name="empty"),
            Sample((rand(rng, (0, 6), t), _i32([0, -1])), name="empty_infer")]


def _transpose_samples(rng, t):
    return [Sample((rand(rng, (2, 3, 4), t), _i32([2, 0, 1])), name="3d"),
            Sample((rand(rng, (2, 3), t), _i64([1, 0])), name="int64"),
            Sample((rand(rng, (), t), _i32([])), name="scalar"),
            Sample((rand(rng, (3,), t), _i32([0])), name="vector"),
            Sample((rand(rng, (0, 3), t), _i32([1, 0])), name="empty")]


def _expand_dims_samples(rng, t):
    return [Sample((rand(rng, (2, 3), t), _i32(0)), name="front"),
            Sample((rand(rng, (2, 3), t), _i64(-1)), name="back"),
            Sample((rand(rng, (2, 3), t), _i32([1])), name="one_element"),
            Sample((rand(rng, (), t), _i32(0)), name="scalar"),
            Sample((rand(rng, (0, 2), t), _i32(-2)), name="empty")]


def _squeeze_samples(rng, t):
    x = rand(rng, (1, 2, 1, 3), t)
    return [Sample((x,), name="all"),
            Sample((x,), {"squeeze_dims": [0, -2]}, name="listed"),
            Sample((x,), {"squeeze_dims": [2]}, name="one"),
            Sample((rand(rng, (), t),), name="scalar"),
            Sample((rand(rng, (0, 1), t),), name="empty")]


def _shape_like_samples(rng, t):
    return [Sample((rand(rng, (2, 3), t),)), Sample((rand(rng, (), t),), name="scalar"),
            Sample((rand(rng, (0, 4, 1), t),), name="empty")]


def _size_samples(rng, t):
    return [*_shape_like_samples(rng, t),
            Sample((rand(rng, (3, 2), t),), {"out_type": dt.DT_INT64}, name="int64")]


def _shape_n_samples(rng, t):
    xs = [rand(rng, (2, 3), t), rand(rng, (), t), rand(rng, (0, 4), t)]
    return [Sample((xs,)), Sample((xs[:1],), {"out_type": dt.DT_INT64}, name="int64")]


def _broadcast_to_samples(rng, t):
    return [Sample((rand(rng, (3,), t), _i32([2, 3])), name="leading"),
            Sample((rand(rng, (2, 1), t), _i64([2, 4])), name="stretch"),
            Sample((rand(rng, (), t), _i32([2, 2])), name="scalar"),
            Sample((rand(rng, (2, 3), t), _i32([2, 3])), name="same"),
            Sample((rand(rng, (0, 1), t), _i32([0, 3])), name="empty"),
            Sample((rand(rng, (3,), t), _i32([0, 3])), name="to_empty")]


def _fill_samples(rng, t):
    return [Sample((_i32([2, 3]), rand(rng, (), t))),
            Sample((_i64([0, 2]), rand(rng, (), t)), name="empty"),
            Sample((_i32([]), rand(rng, (), t)), name="scalar")]


def _range_samples(rng, t):
    npd = t.as_numpy_dtype

    def s(*v, name=""):
        return Sample(tuple(np.array(x, npd) for x in v), name=name)

    out = [s(0, 5, 1, name="up"), s(5, 0, -2, name="down"), s(3, 3, 1, name="empty"),
           s(-4, 7, 3, name="remainder")]
    if npd.kind == "f":
        out.append(s(0, 1, 0.25, name="fraction"))
    return out


def _invert_permutation_ref(x):
    x = np.asarray(x)
    out = [0] * x.size
    for i in range(x.size):             # y[x[i]] = i, one element at a time
        out[int(x[i])] = i
    return np.array(out, dtype=np.int64).astype(x.dtype)


def _invert_permutation_samples(rng, t):
    npd = t.as_numpy_dtype
    return [Sample((np.array([3, 4, 0, 2, 1], npd),), name="five"),
            Sample((np.array([0], npd),), name="one"),
            Sample((np.array([], npd),), name="empty"),
            Sample((rng.permutation(7).astype(npd),), name="random")]


def _identity_n_samples(rng, t):
    return [Sample(([rand(rng, (2, 3), t), rand(rng, (), t), rand(rng, (0, 2), t)],)),
            Sample(([rand(rng, (4,), t)],), name="one"),
            Sample(([rand(rng, (2,), t), rand(rng, (3,), np.int32), rand(rng, (1,), np.bool_)],),
                   name="mixed dtypes")]


def _z(*shape):
    return np.zeros(shape, F32)


ENTRIES = [
    OpInfo("Const", skip_generic="no inputs to vary; typing, fill form and copying are "
                                 "tested in tests/ops/test_wrappers.py and test_const_fill"),
    OpInfo("Placeholder", skip_generic="no inputs; feeding is tested in "
                                       "tests/runtime/test_session.py"),
    OpInfo("PlaceholderWithDefault",
           ref=lambda x, *, shape=None: x,
           dtypes=ALL_NUMERIC,
           samples=lambda rng, t: [Sample((rand(rng, (2, 3), t),),
                                          {"shape": [None, 3]}),
                                   Sample((rand(rng, (3,), t),), {"shape": [3]}, name="known")],
           exact_from_constants=False,
           shapes=[ShapeCase("[2,3]", "[?,3]", {"shape": [None, 3]}),
                   ShapeCase("[2,3]", "not compatible", {"shape": [4]},
                             error=__import__("opgraph").errors.InvalidArgumentError)],
           grad_tol=1e-6),
    OpInfo("Identity",
           ref=lambda x: x, dtypes=ALL_NUMERIC,
           samples=lambda rng, t: [Sample((rand(rng, (2, 3), t),)),
                                   Sample((rand(rng, (), t),), name="scalar"),
                                   Sample((rand(rng, (0, 4), t),), name="empty")],
           shapes=[ShapeCase("[?,3]", "[d0_0,3]"), ShapeCase("?", "?")],
           grad_tol=1e-6),
    OpInfo("Shape",
           ref=lambda x, *, out_type=dt.DT_INT32: np.array(np.shape(x),
                                                           out_type.as_numpy_dtype),
           dtypes=(dt.DT_FLOAT, dt.DT_INT32, dt.DT_BOOL),
           samples=lambda rng, t: [Sample((rand(rng, (2, 3, 1), t),)),
                                   Sample((rand(rng, (), t),), name="scalar"),
                                   Sample((rand(rng, (0, 5), t),), {"out_type": dt.DT_INT64},
                                          name="int64")],
           shapes=[ShapeCase("[?,3]", "[2]"), ShapeCase("?", "[?]")]),
]

ENTRIES += [
    OpInfo("Reshape", ref=_reshape_ref, dtypes=ALL_NUMERIC, samples=_reshape_samples,
           value_inputs=("shape",),
           errors=[ErrorCase((_z(2, 3), _i32([4])), name="count",
                             regex=r"Cannot reshape a tensor with 6 elements to shape \[4\] "
                                   r"\(4 elements\)"),
                   ErrorCase((_z(2, 3), _i32([-1, 4])), name="multiple",
                             regex=r"tensor with 6 values, but the requested shape requires "
                                   r"a multiple of 4"),
                   ErrorCase((_z(2, 3), _i32([-1, -1])), name="two_unknown",
                             regex=r"Only one input size may be -1, not both 0 and 1"),
                   ErrorCase((_z(6), _i32([2, -2])), name="negative",
                             regex=r"Size 1 must be non-negative, not -2"),
                   ErrorCase((_z(4), _i32([[2, 2]])), name="shape_rank",
                             regex=r"Shape must be rank 1 but is rank 2 for input 'shape'")],
           shapes=[ShapeCase("[2,3];=[3,-1]", "[3,2]", dtype=dt.DT_INT32),
                   ShapeCase("[?,3];=[-1]", "[?]", dtype=dt.DT_INT32),
                   ShapeCase("[?,3];=[3,-1]", "[3,?]", dtype=dt.DT_INT32),
                   ShapeCase("[2,?];=[3,4]", "[3,4]", dtype=dt.DT_INT32),
                   ShapeCase("[4,243];shape_of:[?,9,9,3]", "[4,9,9,3]", dtype=dt.DT_INT32),
                   ShapeCase("[?,243];shape_of:[?,9,9,3]", "[?,9,9,3]", dtype=dt.DT_INT32),
                   ShapeCase("[2,3];[2]", "[?,?]", dtype=dt.DT_INT32),
                   ShapeCase("?;[3]", "[?,?,?]", dtype=dt.DT_INT32),
                   ShapeCase("[2,3];?", "?", dtype=dt.DT_INT32),
                   ShapeCase("[2,5];=[3,-1]", "requires a multiple of 3", dtype=dt.DT_INT32,
                             error=errors.InvalidArgumentError),
                   ShapeCase("[?,5];=[3,4]", "12 is not a multiple of the 5 elements",
                             dtype=dt.DT_INT32, error=errors.InvalidArgumentError),
                   ShapeCase("[7,3];shape_of:[?,2]", "requires a multiple of 2",
                             dtype=dt.DT_INT32, error=errors.InvalidArgumentError)],
           grad_tol=1e-6),
    OpInfo("Transpose", ref=_transpose_ref, dtypes=ALL_NUMERIC, samples=_transpose_samples,
           value_inputs=("perm",),
           errors=[ErrorCase((_z(2, 3), _i32([0])), name="size",
                             regex=r"transpose expects a vector of size 2. But input\(1\) is "
                                   r"a vector of size 1"),
                   ErrorCase((_z(2, 3), _i32([0, 2])), name="range",
                             regex=r"2 is out of range \[0 \.\. 2\)"),
                   ErrorCase((_z(2, 3), _i32([-1, 0])), name="negative",
                             regex=r"-1 is out of range \[0 \.\. 2\)"),
                   ErrorCase((_z(2, 3, 4), _i32([0, 1, 1])), name="duplicate",
                             regex=r"2 is missing from \{0,1,1\}\.")],
           shapes=[ShapeCase("[2,?,4];=[2,0,1]", "[4,2,?]", dtype=dt.DT_INT32),
                   ShapeCase("?;=[1,0,2]", "[?,?,?]", dtype=dt.DT_INT32),
                   ShapeCase("[2,3];[2]", "[?,?]", dtype=dt.DT_INT32),
                   ShapeCase("?;[?]", "?", dtype=dt.DT_INT32),
                   ShapeCase("[2,3];[3]", "vector of size 2. But input\\(1\\) is a vector "
                             "of size 3", dtype=dt.DT_INT32,
                             error=errors.InvalidArgumentError),
                   ShapeCase("[2,3];=[0,0]", "1 is missing from", dtype=dt.DT_INT32,
                             error=errors.InvalidArgumentError)],
           grad_tol=1e-6),
    OpInfo("ExpandDims", ref=_expand_dims_ref, dtypes=ALL_NUMERIC,
           samples=_expand_dims_samples, value_inputs=("dim",),
           errors=[ErrorCase((_z(2, 3), _i32(3)), name="range",
                             regex=r"dim 3 not in the interval \[-3, 2\]\."),
                   ErrorCase((_z(2, 3), _i32([0, 1])), name="two_values",
                             regex=r"'dim' input must be a tensor with a single value")],
           shapes=[ShapeCase("[2,?];=0", "[1,2,?]", dtype=dt.DT_INT32),
                   ShapeCase("[2,3];=-1", "[2,3,1]", dtype=dt.DT_INT32),
                   ShapeCase("?;=0", "?", dtype=dt.DT_INT32),
                   ShapeCase("[2,3];[]", "[?,?,?]", dtype=dt.DT_INT32),
                   ShapeCase("[2,3];[2]", "single value", dtype=dt.DT_INT32,
                             error=errors.InvalidArgumentError)],
           grad_tol=1e-6),
    OpInfo("Squeeze", ref=_squeeze_ref, dtypes=ALL_NUMERIC, samples=_squeeze_samples,
           errors=[ErrorCase((_z(2, 1, 3),), {"squeeze_dims": [0]}, name="not_one",
                             regex=r"Can not squeeze dim\[0\], expected a dimension of 1, "
                                   r"got 2"),
                   ErrorCase((_z(2, 1),), {"squeeze_dims": [2]}, name="range",
                             regex=r"squeeze_dims\[0\] not in \[-2,2\)\.")],
           shapes=[ShapeCase("[1,?,3,1]", "?"),
                   ShapeCase("[1,?,3,1]", "[?,3,1]", {"squeeze_dims": [0]}),
                   ShapeCase("[1,?,3]", "[1,3]", {"squeeze_dims": [1]}),
                   ShapeCase("[2,1]", "[2]", {"squeeze_dims": [-1]}),
                   ShapeCase("?", "?", {"squeeze_dims": [3]})],
           grad_tol=1e-6),
    OpInfo("Rank", ref=lambda x: np.array(len(np.shape(x)), I32), dtypes=ALL_NUMERIC,
           samples=_shape_like_samples,
           shapes=[ShapeCase("?", "[]"), ShapeCase("[?,2]", "[]")]),
    OpInfo("Size",
           ref=lambda x, *, out_type=dt.DT_INT32: np.array(_numel(np.shape(x)),
                                                           out_type.as_numpy_dtype),
           dtypes=ALL_NUMERIC, samples=_size_samples,
           shapes=[ShapeCase("?", "[]"), ShapeCase("[?,2]", "[]")]),
    OpInfo("ShapeN",
           ref=lambda xs, *, out_type=dt.DT_INT32: tuple(
               np.array(list(np.shape(x)), out_type.as_numpy_dtype) for x in xs),
           dtypes=(dt.DT_FLOAT, dt.DT_INT32, dt.DT_BOOL), samples=_shape_n_samples),
    OpInfo("BroadcastTo", ref=_broadcast_to_ref, dtypes=ALL_NUMERIC,
           samples=_broadcast_to_samples, value_inputs=("shape",),
           errors=[ErrorCase((_z(3), _i32([4])), name="incompatible",
                             regex=r"Incompatible shapes: \[3\] vs. \[4\]"),
                   ErrorCase((_z(2, 3), _i32([3])), name="rank",
                             regex=r"Rank of input \(2\) must be no greater than rank of "
                                   r"output shape \(1\)\."),
                   ErrorCase((_z(3), _i32([1])), name="to_one",
                             regex=r"Unable to broadcast tensor of shape \[3\] to tensor of "
                                   r"shape \[1\]"),
                   ErrorCase((_z(3), _i32([-1, 3])), name="negative",
                             regex=r"Dimension -1 must be >= 0")],
           shapes=[ShapeCase("[3];=[2,3]", "[2,3]", dtype=dt.DT_INT32),
                   ShapeCase("[3];shape_of:[?,?]", "[?,3]", dtype=dt.DT_INT32),
                   ShapeCase("[1,3];[?]", "?", dtype=dt.DT_INT32),
                   ShapeCase("?;[2]", "[?,?]", dtype=dt.DT_INT32),
                   ShapeCase("[2,3];=[3]", "Rank of input", dtype=dt.DT_INT32,
                             error=errors.InvalidArgumentError),
                   ShapeCase("[2,3];shape_of:[4,?]", "Incompatible shapes: \\[2,3\\] vs. "
                             "\\[4,\\?\\]", dtype=dt.DT_INT32,
                             error=errors.InvalidArgumentError)],
           grad_tol=1e-6),
    OpInfo("Fill", ref=_fill_ref, dtypes=ALL_NUMERIC, samples=_fill_samples,
           value_inputs=("dims",),
           errors=[ErrorCase((_i32([2, -1]), np.float32(1)), name="negative",
                             regex=r"Fill dimensions must be >= 0"),
                   ErrorCase((_i32([2]), np.ones(2, F32)), name="value_rank",
                             regex=r"Shape must be rank 0 but is rank 1 for input 'value'"),
                   ErrorCase((_i32([[2]]), np.float32(1)), name="dims_rank",
                             regex=r"Shape must be rank 1 but is rank 2 for input 'dims'")],
           shapes=[ShapeCase("=[2,3];[]", "[2,3]", dtype=dt.DT_INT32),
                   ShapeCase("shape_of:[?,4];[]", "[?,4]", dtype=dt.DT_INT32),
                   ShapeCase("[2];[]", "[?,?]", dtype=dt.DT_INT32),
                   ShapeCase("[?];[]", "?", dtype=dt.DT_INT32),
                   ShapeCase("=[2,-1];[]", "Fill dimensions must be >= 0", dtype=dt.DT_INT32,
                             error=errors.InvalidArgumentError)],
           grad_tol=1e-6),
    OpInfo("ZerosLike", ref=lambda x: _constant_like(x, 0), dtypes=ALL_NUMERIC,
           samples=_shape_like_samples,
           shapes=[ShapeCase("[?,3]", "[d0_0,3]"), ShapeCase("?", "?")]),
    OpInfo("OnesLike", ref=lambda x: _constant_like(x, 1), dtypes=ALL_NUMERIC,
           samples=_shape_like_samples,
           shapes=[ShapeCase("[?,3]", "[d0_0,3]"), ShapeCase("?", "?")]),
    OpInfo("Range", ref=_range_ref,
           dtypes=(dt.DT_HALF, dt.DT_FLOAT, dt.DT_DOUBLE, dt.DT_INT8, dt.DT_INT16,
                   dt.DT_INT32, dt.DT_INT64),
           samples=_range_samples,
           errors=[ErrorCase((_i32(0), _i32(5), _i32(0)), name="zero_delta",
                             regex=r"Requires delta != 0: 0"),
                   ErrorCase((_i32(5), _i32(1), _i32(1)), name="up",
                             regex=r"Requires start <= limit when delta > 0: 5/1"),
                   ErrorCase((np.float32(1), np.float32(5.5), np.float32(-0.5)), name="down",
                             regex=r"Requires start >= limit when delta < 0: 1/5\.5"),
                   ErrorCase((_i32([0]), _i32(5), _i32(1)), name="rank",
                             regex=r"Shape must be rank 0 but is rank 1 for input 'start'")],
           shapes=[ShapeCase("=0;=5;=2", "[3]", dtype=dt.DT_INT32),
                   ShapeCase("=0.0;=1.0;=0.3", "[4]"),
                   ShapeCase("[];=5;=1", "[?]", dtype=dt.DT_INT32),
                   ShapeCase("?;?;?", "[?]", dtype=dt.DT_INT32),
                   ShapeCase("=5;=1;=1", "Requires start <= limit", dtype=dt.DT_INT32,
                             error=errors.InvalidArgumentError)]),
    OpInfo("StopGradient", ref=lambda x: x, dtypes=ALL_NUMERIC, samples=_shape_like_samples,
           shapes=[ShapeCase("[?,3]", "[d0_0,3]"), ShapeCase("?", "?")]),
    OpInfo("NoOp", ref=lambda: (), dtypes=(dt.DT_FLOAT,),
           samples=lambda rng, t: [Sample(())]),
    OpInfo("IdentityN", ref=lambda xs: tuple(xs), dtypes=ALL_NUMERIC,
           samples=_identity_n_samples, grad_tol=1e-6),
    OpInfo("InvertPermutation", ref=_invert_permutation_ref, dtypes=INTS,
           samples=_invert_permutation_samples,
           errors=[ErrorCase((_i32([0, 3, 1]),), name="range",
                             regex=r"^3 is not between 0 and 3"),
                   ErrorCase((_i64([1, -1, 0]),), name="negative",
                             regex=r"^-1 is not between 0 and 3"),
                   ErrorCase((_i32([2, 0, 2, 1]),), name="duplicate",
                             regex=r"^2 is duplicated in the input\."),
                   ErrorCase((_i32([1, 1, 7]),), name="first_wins",
                             regex=r"^1 is duplicated in the input\."),
                   ErrorCase((_i32(0),), name="rank",
                             regex=r"Shape must be rank 1 but is rank 0 for input 'x'")],
           shapes=[ShapeCase("[5]", "[5]", dtype=dt.DT_INT32),
                   ShapeCase("?", "[?]", dtype=dt.DT_INT32),
                   ShapeCase("=[1,0,2]", "[3]", dtype=dt.DT_INT32),
                   ShapeCase("=[1,1]", "duplicated", dtype=dt.DT_INT32,
                             error=errors.InvalidArgumentError),
                   ShapeCase("[2,2]", "rank 1", dtype=dt.DT_INT32,
                             error=errors.InvalidArgumentError)]),
]
