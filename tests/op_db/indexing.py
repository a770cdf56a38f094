"""op_db entries of the indexing ops: GatherV2, GatherNd, OneHot, Where, UnsortedSegmentSum,
ScatterNd.

References loop over np.ndindex element by element; they share nothing with the kernels.
"""

from __future__ import annotations

import numpy as np

from opgraph import dtypes as dt
from opgraph import errors
from tests.op_db import FLOATS, INTS, ErrorCase, OpInfo, Sample, ShapeCase, rand

TYPES = FLOATS + INTS + (dt.DT_BOOL, dt.DT_UINT8, dt.DT_COMPLEX64)
I16, I32, I64, F32 = np.int16, np.int32, np.int64, np.float32


def _a(v, dtype=I32):
    return np.array(v, dtype=dtype)


def _z(*shape):
    return np.zeros(shape, F32)


# ---- references -----------------------------------------------------------------------------
def _gather_v2_ref(params, indices, axis, *, batch_dims=0):
    params, indices = np.asarray(params), np.asarray(indices)
    axis = int(axis) % params.ndim
    b = batch_dims % indices.ndim if batch_dims < 0 else batch_dims
    n_ind = indices.ndim - b
    shape = params.shape[:axis] + indices.shape[b:] + params.shape[axis + 1:]
    out = np.empty(shape, dtype=params.dtype)
    for idx in np.ndindex(*shape):
        batch, outer = idx[:b], idx[b:axis]
        position, inner = idx[axis:axis + n_ind], idx[axis + n_ind:]
        k = int(indices[batch + position])
        out[idx] = params[batch + outer + (k,) + inner]
    return out


def _gather_nd_ref(params, indices):
    params, indices = np.asarray(params), np.asarray(indices)
    nd = indices.shape[-1]
    shape = indices.shape[:-1] + params.shape[nd:]
    out = np.empty(shape, dtype=params.dtype)
    for outer in np.ndindex(*indices.shape[:-1]):
        where = tuple(int(indices[outer + (j,)]) for j in range(nd))
        for inner in np.ndindex(*params.shape[nd:]):
            out[outer + inner] = params[where + inner]
    return out


def _one_hot_ref(indices, depth, on_value, off_value, *, axis=-1):
    indices = np.asarray(indices)
    depth = int(depth)
    pos = indices.ndim if axis == -1 else axis
    shape = indices.shape[:pos] + (depth,) + indices.shape[pos:]
    out = np.empty(shape, dtype=np.asarray(on_value).dtype)
    for idx in np.ndindex(*shape):
        j, rest = idx[pos], idx[:pos] + idx[pos + 1:]
        out[idx] = on_value if int(indices[rest]) == j else off_value
    return out


def _where_ref(x):
    x = np.asarray(x)
    rows = [list(idx) for idx in np.ndindex(*x.shape) if x[idx] != 0]
    return np.array(rows, dtype=I64).reshape(len(rows), x.ndim)


def _unsorted_segment_sum_ref(data, segment_ids, num_segments):
    data, ids = np.asarray(data), np.asarray(segment_ids)
    n = int(num_segments)
    inner = data.shape[ids.ndim:]
    out = np.zeros((n,) + inner, dtype=np.complex128 if data.dtype.kind == "c" else
                   np.float64 if data.dtype.kind == "f" else np.int64)
    for where in np.ndindex(*ids.shape):
        k = int(ids[where])
        if k < 0:
            continue
        for rest in np.ndindex(*inner):
            out[(k,) + rest] += data[where + rest]
    return out.astype(data.dtype)


def _scatter_nd_ref(indices, updates, shape):
    indices, updates = np.asarray(indices), np.asarray(updates)
    shape = tuple(int(d) for d in np.asarray(shape).reshape(-1))
    nd = indices.shape[-1]
    kind = updates.dtype.kind
    acc = np.complex128 if kind == "c" else np.float64 if kind == "f" else \
        np.bool_ if kind == "b" else np.int64
    out = np.zeros(shape, dtype=acc)
    for outer in np.ndindex(*indices.shape[:-1]):
        where = tuple(int(indices[outer + (j,)]) for j in range(nd))
        for inner in np.ndindex(*shape[nd:]):
            if kind == "b":
                out[where + inner] = out[where + inner] or updates[outer + inner]
            else:
                out[where + inner] += updates[outer + inner]
    return out.astype(updates.dtype)


# ---- samples --------------------------------------------------------------------------------
def _gather_v2_samples(rng, t):
    return [Sample((rand(rng, (5, 3), t), _a([[0, 4], [2, 2]]), _a(0)), name="matrix_rows"),
            Sample((rand(rng, (2, 3, 4), t), _a([3, 0, 1], I64), _a(-1, I64)), name="last"),
            Sample((rand(rng, (2, 3), t), _a([[2, 0], [1, 1]], I16), _a(1)), name="axis1"),
            Sample((rand(rng, (4,), t), _a(2), _a(0)), name="scalar_index"),
            Sample((rand(rng, (2, 3, 4), t), _a([[0, 2, 2, 1, 0], [1, 1, 0, 2, 2]], I16),
                    _a(1)), {"batch_dims": 1}, name="batch"),
            Sample((rand(rng, (2, 3, 4), t), _a([[3, 0], [1, 1]]), _a(2)),
                   {"batch_dims": -1}, name="batch_negative"),
            Sample((rand(rng, (3, 4), t), _a([], I32), _a(0)), name="no_indices"),
            Sample((rand(rng, (0, 3), t), _a([5, 1]), _a(1)), name="empty_params")]


def _gather_nd_samples(rng, t):
    return [Sample((rand(rng, (3, 4), t), _a([[0, 1], [2, 3]])), name="elements"),
            Sample((rand(rng, (3, 4), t), _a([[1], [0], [1]], I64)), name="rows"),
            Sample((rand(rng, (2, 3, 4), t), _a([[[0, 2], [1, 0]], [[1, 1], [0, 0]]], I16)),
                   name="batch"),
            Sample((rand(rng, (3, 4), t), _a([2, 1])), name="scalar_out"),
            Sample((rand(rng, (3, 4), t), np.zeros((0, 2), I32)), name="no_indices"),
            Sample((rand(rng, (0, 3), t), np.zeros((0, 1), I64)), name="empty_params"),
            Sample((rand(rng, (2, 3), t), np.zeros((4, 0), I32)), name="whole")]


def _unsorted_segment_sum_samples(rng, t):
    return [Sample((rand(rng, (5, 3), t), _a([2, 0, 2, 2, 1]), _a(4)), name="rows"),
            Sample((rand(rng, (2, 3, 2), t), _a([[0, 1, 0], [3, -1, 1]], I64), _a(4, I64)),
                   name="matrix_ids_dropped"),
            Sample((rand(rng, (4,), t), _a([1, 1, 1, 0]), _a(2)), name="vector"),
            Sample((rand(rng, (3, 2), t), _a(1), _a(3)), name="scalar_id"),
            Sample((rand(rng, (0, 3), t), _a([], I32), _a(2)), name="empty_data"),
            Sample((rand(rng, (2, 0), t), _a([5, -3]), _a(3)), name="empty_rows_unchecked"),
            Sample((rand(rng, (3,), t), _a([0, 1, 0]), _a(2)), name="two")]


def _scatter_nd_samples(rng, t):
    return [Sample((_a([[0, 1], [2, 3], [0, 1]]), rand(rng, (3,), t), _a([3, 4])),
                   name="elements_repeated"),
            Sample((_a([[1], [0], [1]], I64), rand(rng, (3, 4), t), _a([3, 4], I64)),
                   name="rows"),
            Sample((_a([[[0, 2], [1, 0]], [[1, 1], [0, 0]]], I16), rand(rng, (2, 2, 4), t),
                    _a([2, 3, 4], I16)), name="batch"),
            Sample((_a([1]), rand(rng, (4,), t), _a([3, 4])), name="one_tuple"),
            Sample((np.zeros((0, 2), I32), rand(rng, (0,), t), _a([3, 4])),
                   name="no_indices"),
            Sample((np.zeros((3, 0), I32), rand(rng, (3, 2), t), _a([2])), name="whole"),
            Sample((np.zeros((0, 1), I64), rand(rng, (0, 3), t), _a([0, 3], I64)),
                   name="empty_output")]


def _one_hot_samples(rng, t):
    npd = t.as_numpy_dtype
    on, off = np.array(1, npd), np.array(0, npd)
    vals = (rand(rng, (), t), rand(rng, (), t))
    return [Sample((_a([0, 2, -1, 5], I64), _a(3), on, off), name="vector"),
            Sample((_a([[0, 1], [2, 0]]), _a(3), *vals), {"axis": 0}, name="axis0"),
            Sample((_a([[0, 1], [2, 0]]), _a(3), on, off), {"axis": 1}, name="axis1"),
            Sample((_a(1, np.uint8), _a(4), on, off), name="scalar"),
            Sample((_a([0, 1, 2], np.int8), _a(0), on, off), name="depth0"),
            Sample((_a([], np.int8), _a(2), on, off), name="empty")]


def _where_samples(rng, t):
    x = rand(rng, (2, 3), t)
    x[0, 1] = 0
    y = rand(rng, (2, 2, 3), t)
    y[1, :, 0] = 0
    return [Sample((x,), name="matrix"), Sample((y,), name="3d"),
            Sample((rand(rng, (4,), t),), name="vector"),
            Sample((np.array(rand(rng, (), t)),), name="scalar"),
            Sample((np.zeros((), t.as_numpy_dtype),), name="scalar_zero"),
            Sample((rand(rng, (0, 3), t),), name="empty")]


ENTRIES = [
    OpInfo("GatherV2", ref=_gather_v2_ref, dtypes=TYPES, samples=_gather_v2_samples,
           value_inputs=("axis",),
           errors=[ErrorCase((_z(3, 2), _a([0, 3]), _a(0)), name="out_of_range",
                             regex=r"indices\[1\] = 3 is not in \[0, 3\)"),
                   ErrorCase((_z(3, 2), _a([[0], [-1]], I64), _a(0)), name="negative",
                             regex=r"indices\[1,0\] = -1 is not in \[0, 3\)"),
                   ErrorCase((_z(2, 3), _a(5), _a(1)), name="scalar_index",
                             regex=r"indices = 5 is not in \[0, 3\)"),
                   ErrorCase((_z(2, 3), _a([0]), _a(2)), name="axis",
                             regex=r"Expected axis in the range \[-2, 2\), but got 2"),
                   ErrorCase((_z(2, 3), _a([[0], [1], [0]]), _a(1)), {"batch_dims": 1},
                             name="batch_mismatch",
                             regex=r"params.shape\[0\]: 2 should be equal to "
                                   r"indices.shape\[0\]: 3"),
                   ErrorCase((_z(2, 3, 4), _a([[0], [1]]), _a(0)), {"batch_dims": 1},
                             name="batch_after_axis",
                             regex=r"batch_dims \(1\) must be less than or equal to axis "
                                   r"\(0\)\."),
                   ErrorCase((_z(2, 3), _a([0, 1]), _a(1)), {"batch_dims": 2},
                             name="batch_range",
                             regex=r"Expected batch_dims in the range \[-1, 1\], but got 2"),
                   ErrorCase((_z(2), _a([[0], [1]]), _a(0)), {"batch_dims": 1},
                             name="batch_rank",
                             regex=r"batch_dims \(1\) must be less than rank\(params\) "
                                   r"\(1\)\."),
                   ErrorCase((np.float32(1), _a([0]), _a(0)), name="scalar_params",
                             regex=r"Shape must be at least rank 1 but is rank 0 for input "
                                   r"'params'"),
                   ErrorCase((_z(2), _a([0]), _a([0])), name="axis_rank",
                             regex=r"Shape must be rank 0 but is rank 1 for input 'axis'")],
           shapes=[ShapeCase("[5,3];[2,4];=0", "[2,4,3]", dtype=dt.DT_INT32),
                   ShapeCase("[5,3];[2,4];=1", "[5,2,4]", dtype=dt.DT_INT32),
                   ShapeCase("[5,3];[2,4];[]", "[?,?,?]", dtype=dt.DT_INT32),
                   ShapeCase("?;[2];=0", "?", dtype=dt.DT_INT32),
                   ShapeCase("[5,?];?;=-1", "?", dtype=dt.DT_INT32),
                   ShapeCase("[2,3,4];[2,5];=2", "[2,3,5]", {"batch_dims": 1},
                             dtype=dt.DT_INT32),
                   ShapeCase("[?,3,4];[2,5];=1", "[2,5,4]", {"batch_dims": 1},
                             dtype=dt.DT_INT32),
                   ShapeCase("[5,3];[2];=2", "Expected axis in the range", dtype=dt.DT_INT32,
                             error=errors.InvalidArgumentError),
                   ShapeCase("[5,3];=[7];=0", r"indices\[0\] = 7 is not in \[0, 5\)",
                             dtype=dt.DT_INT32, error=errors.InvalidArgumentError)],
           grad_tol=1e-6),
    OpInfo("GatherNd", ref=_gather_nd_ref, dtypes=TYPES, samples=_gather_nd_samples,
           errors=[ErrorCase((_z(3, 4), _a([[0, 1], [3, 0]])), name="out_of_range",
                             regex=r"indices\[1\] = \[3, 0\] does not index into param "
                                   r"shape \[3,4\]"),
                   ErrorCase((_z(3), _a([[[0], [-1]]], I64)), name="negative",
                             regex=r"indices\[0,1\] = \[-1\] does not index into param "
                                   r"shape \[3\]"),
                   ErrorCase((_z(3), _a([[0, 1]])), name="too_deep",
                             regex=r"indices.shape\[-1\] must be <= params.rank, but saw "
                                   r"indices shape: \[1,2\] and params shape: \[3\]"),
                   ErrorCase((_z(0, 3), _a([[0, 0]])), name="empty_params",
                             regex=r"Requested more than 0 entries, but params is empty\.  "
                                   r"Params shape: \[0,3\]"),
                   ErrorCase((_z(3), _a(0)), name="scalar_indices",
                             regex=r"Shape must be at least rank 1 but is rank 0 for input "
                                   r"'indices'"),
                   ErrorCase((np.float32(1), _a([0])), name="scalar_params",
                             regex=r"Shape must be at least rank 1 but is rank 0 for input "
                                   r"'params'")],
           shapes=[ShapeCase("[3,4];[5,2]", "[5]", dtype=dt.DT_INT32),
                   ShapeCase("[3,4];[5,1]", "[5,4]", dtype=dt.DT_INT32),
                   ShapeCase("[3,?];[?,1]", "[?,?]", dtype=dt.DT_INT32),
                   ShapeCase("?;[5,2]", "?", dtype=dt.DT_INT32),
                   ShapeCase("[3,4];[5,?]", "?", dtype=dt.DT_INT32),
                   ShapeCase("[3];[5,2]", "must be <= params.rank", dtype=dt.DT_INT32,
                             error=errors.InvalidArgumentError)],
           grad_tol=1e-6),
    OpInfo("OneHot", ref=_one_hot_ref, dtypes=TYPES, samples=_one_hot_samples,
           value_inputs=("depth",),
           errors=[ErrorCase((_a([0, 1]), _a(-1), np.float32(1), np.float32(0)),
                             name="negative_depth", regex=r"depth must be non-negative, got: -1"),
                   ErrorCase((_a([0, 1]), _a(2), np.float32(1), np.float32(0)), {"axis": -2},
                             name="axis_attr", when="build", regex=r"axis must be >= -1"),
                   ErrorCase((_a([0, 1]), _a(2), np.float32(1), np.float32(0)), {"axis": 2},
                             name="axis_rank",
                             regex=r"Expected axis to be -1 or between \[0, 1\]\.  But "
                                   r"received: 2"),
                   ErrorCase((_a([0, 1]), _a(2), np.ones(2, F32), np.float32(0)),
                             name="on_value_rank",
                             regex=r"Shape must be rank 0 but is rank 1 for input 'on_value'"),
                   ErrorCase((_a([0, 1]), _a([2]), np.float32(1), np.float32(0)),
                             name="depth_rank",
                             regex=r"Shape must be rank 0 but is rank 1 for input 'depth'")],
           shapes=[ShapeCase("[2,?];=3;[];[]", "[2,?,3]", dtype=dt.DT_INT32),
                   ShapeCase("[2,?];=3;[];[]", "[3,2,?]", {"axis": 0}, dtype=dt.DT_INT32),
                   ShapeCase("?;=3;[];[]", "?", dtype=dt.DT_INT32),
                   ShapeCase("[2];[];[];[]", "[2,?]", dtype=dt.DT_INT32),
                   ShapeCase("[2];[];[];[]", "axis must be >= -1", {"axis": -3},
                             dtype=dt.DT_INT32, error=errors.InvalidArgumentError)]),
    OpInfo("Where", ref=_where_ref,
           dtypes=TYPES + (dt.DT_INT8, dt.DT_INT16, dt.DT_COMPLEX128),
           samples=_where_samples, exact_from_constants=False,
           shapes=[ShapeCase("[2,3]", "[?,2]"), ShapeCase("?", "[?,?]"),
                   ShapeCase("[]", "[?,0]")]),
    OpInfo("UnsortedSegmentSum", ref=_unsorted_segment_sum_ref,
           dtypes=FLOATS + INTS + (dt.DT_UINT8, dt.DT_INT16, dt.DT_COMPLEX64),
           samples=_unsorted_segment_sum_samples, value_inputs=("num_segments",),
           errors=[ErrorCase((_z(3, 2), _a([0, 3, 1]), _a(3)), name="out_of_range",
                             regex=r"segment_ids\[1\] = 3 is out of range \[0, 3\)"),
                   ErrorCase((_z(2, 2, 2), _a([[0, 0], [1, 9]], I64), _a(2)), name="matrix",
                             regex=r"segment_ids\[1,1\] = 9 is out of range \[0, 2\)"),
                   ErrorCase((_z(3), _a([0, 0, 0]), _a(-1)), name="negative_count",
                             regex=r"Input num_segments == -1 must not be negative\."),
                   ErrorCase((_z(3, 2), _a([0, 1]), _a(2)), name="prefix",
                             regex=r"data.shape = \[3,2\] does not start with "
                                   r"segment_ids.shape = \[2\]"),
                   ErrorCase((_z(3), _a([[0, 1, 2]]), _a(3)), name="ids_rank",
                             regex=r"data.shape = \[3\] does not start with "
                                   r"segment_ids.shape = \[1,3\]"),
                   ErrorCase((_z(3), _a([0, 1, 2]), _a([3])), name="count_rank",
                             regex=r"Shape must be rank 0 but is rank 1 for input "
                                   r"'num_segments'")],
           shapes=[ShapeCase("[5,3];[5];=4", "[4,3]", dtype=(dt.DT_FLOAT, dt.DT_INT32,
                                                              dt.DT_INT32)),
                   ShapeCase("[?,3,2];[4,?];=7", "[7,2]", dtype=(dt.DT_FLOAT, dt.DT_INT32,
                                                                 dt.DT_INT32)),
                   ShapeCase("[5,3];[5];[]", "[?,3]", dtype=(dt.DT_FLOAT, dt.DT_INT32,
                                                             dt.DT_INT32)),
                   ShapeCase("?;[5];=2", "?", dtype=(dt.DT_FLOAT, dt.DT_INT32, dt.DT_INT32)),
                   ShapeCase("[5,3];?;=2", "?", dtype=(dt.DT_FLOAT, dt.DT_INT32, dt.DT_INT32)),
                   ShapeCase("[5,3];[4];=2", "does not start with", dtype=(
                       dt.DT_FLOAT, dt.DT_INT32, dt.DT_INT32), error=errors.InvalidArgumentError),
                   ShapeCase("[5,3];[5];=-2", "must not be negative", dtype=(
                       dt.DT_FLOAT, dt.DT_INT32, dt.DT_INT32), error=errors.InvalidArgumentError)],
           grad_tol=1e-6),
    OpInfo("ScatterNd", ref=_scatter_nd_ref, dtypes=TYPES, samples=_scatter_nd_samples,
           value_inputs=("shape",),
           errors=[ErrorCase((_a([[0, 1], [3, 0]]), _z(2), _a([3, 4])), name="out_of_range",
                             regex=r"indices\[1\] = \[3, 0\] does not index into shape "
                                   r"\[3,4\]"),
                   ErrorCase((_a([[[0], [-1]]], I64), _z(1, 2), _a([3], I64)),
                             name="negative",
                             regex=r"indices\[0,1\] = \[-1\] does not index into shape "
                                   r"\[3\]"),
                   ErrorCase((_a([[0], [1]]), _z(2, 3), _a([3, 4])), name="updates_shape",
                             regex=r"Must have updates.shape = indices.shape\[:batch_dim\] "
                                   r"\+ params_shape\[slice_dim:\], got updates.shape: "
                                   r"\[2,3\], indices.shape: \[2,1\], params_shape: "
                                   r"\[3,4\], slice_dim: 1, and batch_dim: 1"),
                   ErrorCase((_a([[0, 1, 2]]), _z(1), _a([3, 4])), name="too_deep",
                             regex=r"Must have updates.shape = .*slice_dim: 3, and "
                                   r"batch_dim: 1"),
                   ErrorCase((_a([[0]]), _z(1, 2), _a([-1, 2])), name="negative_dim",
                             regex=r"Dimension -1 must be >= 0"),
                   ErrorCase((_a([[0]]), _z(1, 0), _a([2, 0])), name="empty_output",
                             regex=r"Indices and updates specified for empty output\.  "
                                   r"indices shape: \[1,1\]"),
                   ErrorCase((np.zeros((2, 0), I32), _z(2), _a([], I32)), name="scalar_output",
                             regex=r"Output must be at least 1-D, got shape: \[\]"),
                   ErrorCase((_a(0), _z(1), _a([3])), name="scalar_indices",
                             regex=r"Shape must be at least rank 1 but is rank 0 for input "
                                   r"'indices'"),
                   ErrorCase((_a([[0]]), np.float32(1), _a([3])), name="scalar_updates",
                             regex=r"Shape must be at least rank 1 but is rank 0 for input "
                                   r"'updates'")],
           shapes=[ShapeCase("[5,2];[5];=[3,4]", "[3,4]",
                             dtype=(dt.DT_INT32, dt.DT_FLOAT, dt.DT_INT32)),
                   ShapeCase("[5,1];[5,4];[2]", "[?,4]",
                             dtype=(dt.DT_INT32, dt.DT_FLOAT, dt.DT_INT32)),
                   ShapeCase("[5,?];[5,4];[2]", "[?,?]",
                             dtype=(dt.DT_INT32, dt.DT_FLOAT, dt.DT_INT32)),
                   ShapeCase("[5,2];[5];?", "?", dtype=(dt.DT_INT32, dt.DT_FLOAT, dt.DT_INT32)),
                   ShapeCase("[5,1];[5,3];=[3,4]", "Must have updates.shape",
                             dtype=(dt.DT_INT32, dt.DT_FLOAT, dt.DT_INT32),
                             error=errors.InvalidArgumentError)],
           grad_tol=1e-6),
]
