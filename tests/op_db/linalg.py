"""op_db entries of the matrix products.

The reference multiplies with explicit Python loops over the batch index and the three
matrix indices, in float64 / complex128 / exact Python ints (wrapped to the dtype).
"""

from __future__ import annotations

import numpy as np

from opgraph import dtypes as dt
from opgraph import errors
from tests.op_db import FLOATS, INTS, ErrorCase, OpInfo, Sample, ShapeCase, rand

F32 = np.float32
_MATMUL_TYPES = FLOATS + INTS + (dt.DT_COMPLEX64, dt.DT_COMPLEX128)


def _wrap(v: int, dtype) -> int:
    info = np.iinfo(dtype)
    span = int(info.max) - int(info.min) + 1
    return (v - int(info.min)) % span + int(info.min)


def _element(m, transpose: bool, conjugate: bool):
    """m[i, j] of op(m) as a Python number (op: transpose and optionally conjugate)."""
    def get(i, j):
        v = (m[j, i] if transpose else m[i, j]).item()
        return v.conjugate() if conjugate and isinstance(v, complex) else v
    return get


def _matrix_product(a, b, ta, tb, conj_a, conj_b, dtype):
    """Triple loop over op(a) [r, k] and op(b) [k, c]."""
    r = a.shape[1 if ta else 0]
    k = a.shape[0 if ta else 1]
    c = b.shape[0 if tb else 1]
    ga, gb = _element(a, ta, conj_a), _element(b, tb, conj_b)
    out = np.zeros((r, c), dtype)
    for i in range(r):
        for j in range(c):
            total = sum(ga(i, p) * gb(p, j) for p in range(k))
            out[i, j] = _wrap(total, dtype) if dtype.kind in "iu" else total
    return out


def _mat_mul_ref(a, b, *, transpose_a=False, transpose_b=False):
    return _matrix_product(a, b, transpose_a, transpose_b, False, False, a.dtype)


def _batch_ref(x, y, *, adj_x=False, adj_y=False):
    """Loops over the broadcast batch index; a size-1 batch dim repeats its one matrix."""
    bx, by = x.shape[:-2], y.shape[:-2]
    n = max(len(bx), len(by))
    px, py = (1,) * (n - len(bx)) + bx, (1,) * (n - len(by)) + by
    batch = tuple(max(i, j) if min(i, j) != 0 else 0 for i, j in zip(px, py))
    xs, ys = x.reshape(px + x.shape[-2:]), y.reshape(py + y.shape[-2:])
    rows = x.shape[-1] if adj_x else x.shape[-2]
    cols = y.shape[-2] if adj_y else y.shape[-1]
    out = np.zeros(batch + (rows, cols), x.dtype)
    for index in np.ndindex(*batch):
        ix = tuple(0 if d == 1 else i for i, d in zip(index, px))
        iy = tuple(0 if d == 1 else i for i, d in zip(index, py))
        out[index] = _matrix_product(xs[ix], ys[iy], adj_x, adj_y, adj_x, adj_y, x.dtype)
    return out


def _mat_mul_samples(rng, t):
    def r(*shape):
        return rand(rng, shape, t)
    return [Sample((r(2, 3), r(3, 4)), name="plain"),
            Sample((r(3, 2), r(3, 4)), {"transpose_a": True}, name="transpose_a"),
            Sample((r(2, 3), r(4, 3)), {"transpose_b": True}, name="transpose_b"),
            Sample((r(3, 2), r(4, 3)), {"transpose_a": True, "transpose_b": True},
                   name="both"),
            Sample((r(1, 1), r(1, 5)), name="one_by_one"),
            Sample((r(0, 3), r(3, 2)), name="empty_rows"),
            Sample((r(2, 0), r(0, 3)), name="empty_inner"),
            Sample((np.asfortranarray(r(4, 3)), r(3, 2)[::-1]), name="strided")]


_MAT_MUL_ERRORS = [
    ErrorCase((np.zeros((2, 3), F32), np.zeros((4, 5), F32)),
              regex=r"Matrix size-incompatible: In\[0\]: \[2,3\], In\[1\]: \[4,5\]",
              name="inner"),
    ErrorCase((np.zeros((2, 3), F32), np.zeros((3, 2), F32)), {"transpose_b": True},
              regex=r"Matrix size-incompatible: In\[0\]: \[2,3\], In\[1\]: \[3,2\]: the "
                    r"contracted dims must be equal, but a's dim 1 is 3 and b's dim 1 is 2",
              name="inner_transposed"),
    ErrorCase((np.zeros((2, 2, 3), F32), np.zeros((3, 4), F32)),
              regex=r"Shape must be rank 2 but is rank 3 for input 'a'", name="rank"),
    ErrorCase((np.zeros((2, 3), F32), np.zeros((3,), F32)),
              regex=r"Shape must be rank 2 but is rank 1 for input 'b'", name="rank_b"),
]
_MAT_MUL_SHAPES = [
    ShapeCase("[2,?];[?,5]", "[2,5]"),
    ShapeCase("[?,3];[3,?]", "[?,?]"),
    ShapeCase("[3,2];[5,3]", "[2,5]", {"transpose_a": True, "transpose_b": True}),
    ShapeCase("?;[3,4]", "[?,4]"),
    ShapeCase("?;?", "[?,?]"),
    ShapeCase("[2,3];[4,?]", r"Matrix size-incompatible: In\[0\]: \[2,3\], In\[1\]: \[4,\?\]",
              error=errors.InvalidArgumentError),
    ShapeCase("[2,3,4];?", "must be rank 2", error=errors.InvalidArgumentError),
]


def _batch_samples(rng, t):
    def r(*shape):
        return rand(rng, shape, t)
    return [Sample((r(2, 2, 3), r(2, 3, 4)), name="batch"),
            Sample((r(2, 3, 2), r(2, 3, 4)), {"adj_x": True}, name="adj_x"),
            Sample((r(2, 2, 3), r(2, 4, 3)), {"adj_y": True}, name="adj_y"),
            Sample((r(1, 3, 2), r(1, 4, 3)), {"adj_x": True, "adj_y": True}, name="both"),
            Sample((r(2, 3), r(3, 4)), name="matrices"),
            Sample((r(2, 1, 2, 3), r(2, 1, 3, 4)), name="rank4"),
            Sample((r(0, 2, 3), r(0, 3, 1)), name="empty_batch"),
            Sample((r(2, 2, 0), r(2, 0, 3)), name="empty_inner")]


def _broadcast_samples(rng, t):
    def r(*shape):
        return rand(rng, shape, t)
    return _batch_samples(rng, t) + [
        Sample((r(2, 1, 2, 3), r(3, 3, 2)), name="broadcast"),
        Sample((r(2, 3), r(4, 3, 2)), name="broadcast_matrix"),
        Sample((r(3, 1, 2, 4), r(5, 2, 4)), {"adj_y": True}, name="broadcast_adj"),
        Sample((r(1, 2, 3), r(0, 3, 2)), name="broadcast_to_empty")]


_BATCH_V2_ERRORS = [
    ErrorCase((np.zeros((2, 2, 3), F32), np.zeros((3, 3, 4), F32)),
              regex=r"In\[0\] and In\[1\] must have compatible batch dimensions: "
                    r"\[2,2,3\] vs. \[3,3,4\]", name="batch"),
    ErrorCase((np.zeros((2, 2, 3), F32), np.zeros((2, 4, 5), F32)),
              regex=r"Matrix size-incompatible: In\[0\]: \[2,2,3\], In\[1\]: \[2,4,5\]",
              name="inner"),
    ErrorCase((np.zeros((2, 3, 2), F32), np.zeros((2, 3, 4), F32)), {"adj_y": True},
              regex=r"x's dim 2 is 2 and y's dim 2 is 4", name="inner_adjoint"),
    ErrorCase((np.zeros((3,), F32), np.zeros((3, 4), F32)),
              regex=r"Shape must be at least rank 2 but is rank 1 for input 'x'", name="rank"),
]
_BATCH_V2_SHAPES = [
    ShapeCase("[2,1,?,3];[4,3,5]", "[2,4,?,5]"),
    ShapeCase("[?,2,3];[3,4]", "[?,2,4]"),
    ShapeCase("[?,2,3];[1,3,4]", "[?,2,4]"),
    ShapeCase("[?,2,3];[5,3,4]", "[5,2,4]"),
    ShapeCase("[3,2];[5,4,3]", "[5,2,4]", {"adj_x": True, "adj_y": True}),
    ShapeCase("?;[3,4]", "?"),
    ShapeCase("[2,?,3];[3,?,4]", r"must have compatible batch dimensions: \[2,\?,3\] vs. "
              r"\[3,\?,4\]", error=errors.InvalidArgumentError),
    ShapeCase("[2,3];[2,4]", r"Matrix size-incompatible", error=errors.InvalidArgumentError),
]

_BATCH_V1_ERRORS = [
    ErrorCase((np.zeros((2, 2, 3), F32), np.zeros((3, 4), F32)),
              regex=r"In\[0\] and In\[1\] has different ndims: \[2,2,3\] vs. \[3,4\]",
              name="rank"),
    ErrorCase((np.zeros((2, 2, 3), F32), np.zeros((1, 3, 4), F32)),
              regex=r"In\[0\]\.dim\(0\) and In\[1\]\.dim\(0\) must be the same: "
                    r"\[2,2,3\] vs \[1,3,4\]", name="batch"),
    ErrorCase((np.zeros((2, 2, 3), F32), np.zeros((2, 4, 5), F32)),
              regex=r"Matrix size-incompatible: In\[0\]: \[2,2,3\], In\[1\]: \[2,4,5\]",
              name="inner"),
]
_BATCH_V1_SHAPES = [
    ShapeCase("[2,?,3];[?,3,4]", "[2,?,4]"),
    ShapeCase("?;[5,3,4]", "[5,?,4]"),
    ShapeCase("[5,2,3];?", "[5,2,?]"),
    ShapeCase("?;?", "?"),
    ShapeCase("[2,2,3];[3,3,4]", r"In\[0\]\.dim\(0\) and In\[1\]\.dim\(0\) must be the same",
              error=errors.InvalidArgumentError),
]

ENTRIES = [
    OpInfo("MatMul", ref=_mat_mul_ref, dtypes=_MATMUL_TYPES, samples=_mat_mul_samples,
           errors=_MAT_MUL_ERRORS, shapes=_MAT_MUL_SHAPES, grad_tol=1e-6),
    OpInfo("BatchMatMulV2", ref=_batch_ref, dtypes=_MATMUL_TYPES + (dt.DT_INT16,),
           samples=_broadcast_samples, errors=_BATCH_V2_ERRORS, shapes=_BATCH_V2_SHAPES,
           grad_tol=1e-6),
    OpInfo("BatchMatMul", ref=_batch_ref, dtypes=_MATMUL_TYPES, samples=_batch_samples,
           errors=_BATCH_V1_ERRORS, shapes=_BATCH_V1_SHAPES, grad_tol=1e-6),
]
