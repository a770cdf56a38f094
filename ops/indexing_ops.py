"""Indexing ops: GatherV2, GatherNd, OneHot, Where, and the scatters their gradients need:
UnsortedSegmentSum (TF math_ops.cc) and ScatterNd.

Shape functions follow TF's (tensorflow/core/ops/array_ops.cc) and add the kernels' checks:
axis and batch_dims ranges, matching batch dims, and, when the indices are known (a
build-time constant, or the actual value when the executor re-checks a node), indices out of
range with the kernels' messages. The kernels check the indices themselves too, so a value
that only becomes known at run time is refused the same way.

Gradients follow TF's array_grad.py / math_grad.py, except that TF's IndexedSlices (sparse
gradients of GatherV2 and GatherNd) are dense here: UnsortedSegmentSum and ScatterNd add the
upstream gradient's slices back at their indices, repeated indices accumulating.
"""

from __future__ import annotations

import numpy as np

from opgraph import dtypes as dt
from opgraph import errors
from opgraph.gradients import gradient
from opgraph.graph import Output
from opgraph.shapes import TensorShape, make_shape
from opgraph.wrappers import declare

__all__ = ["GatherV2", "GatherNd", "OneHot", "Where", "UnsortedSegmentSum", "ScatterNd"]

_MAX_VALUE_ELEMENTS = 1024      # the largest value a value function materialises


def _prod(dims) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def _known_array(c, i):
    """Input i's value when it is a fully known array, without making the shape function
    depend on it (only validity checks and value functions read it)."""
    v = c.input_value(i)
    if isinstance(v, TensorShape):
        return np.array(v.dims, dtype=np.int64) if v.is_fully_defined() else None
    return v


def _dims_text(dims) -> str:
    """TF's TensorShape::DebugString: ``[2,3]`` (``?`` for an unknown dim)."""
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


# ---- gradient helpers -----------------------------------------------------------------------
def _static_value(t: Output):
    """t's value when it is fully known at build time (an array), else None."""
    values = t.op.output_values
    v = values[t.index] if values else None
    return np.asarray(v) if isinstance(v, np.ndarray) else None


def _const(scope, value, dtype) -> Output:
    import ops  # noqa: PLC0415  (ops modules use each other's wrappers lazily)
    return ops.Const(scope, np.asarray(value, dtype=dtype.as_numpy_dtype)).output


def _index_dtype_at_least_int32(scope, indices: Output) -> Output:
    """int16 indices cast to int32 (Shape, Range and the segment ops take int32/int64)."""
    import ops  # noqa: PLC0415
    if indices.dtype is dt.DT_INT16:
        return ops.Cast(scope, indices, dt.DT_INT32).output
    return indices


def _shape_vector(scope, x: Output, dims: list, dtype) -> Output:
    """The 1-D vector [x.shape[d] for d in dims] of ``dtype``: a Const when those dims are
    known at build time, else gathered from Shape(x)."""
    import ops  # noqa: PLC0415
    known = x.shape.dims
    if known is not None and all(known[d] is not None for d in dims):
        return _const(scope, [known[d] for d in dims], dtype)
    shape = ops.Shape(scope, x, out_type=dtype).output
    return ops.GatherV2(scope, shape, _const(scope, dims, dt.DT_INT32),
                        _const(scope, 0, dt.DT_INT32)).output


def _shape_of(scope, x: Output, dtype) -> Output:
    """x's shape as a 1-D ``dtype`` vector: a Const when fully known, else Shape(x)."""
    import ops  # noqa: PLC0415
    if x.shape.is_fully_defined():
        return _const(scope, x.shape.dims, dtype)
    return ops.Shape(scope, x, out_type=dtype).output


def _shape_dim(scope, x: Output, d: int, dtype) -> Output:
    """The scalar x.shape[d] of ``dtype``: a Const when known at build time."""
    import ops  # noqa: PLC0415
    known = x.shape.dims
    if known is not None and known[d] is not None:
        return _const(scope, known[d], dtype)
    shape = ops.Shape(scope, x, out_type=dtype).output
    return ops.GatherV2(scope, shape, _const(scope, d, dt.DT_INT32),
                        _const(scope, 0, dt.DT_INT32)).output


def _slice_debug_string(shape, flat: int) -> str:
    """TF's SliceDebugString: the multi-index of flat position ``flat`` in ``shape``, as
    ``[i,j]`` (``[i]`` for a vector, empty for a scalar)."""
    if len(shape) == 0:
        return ""
    idx = np.unravel_index(flat, tuple(shape))
    return "[" + ",".join(str(int(i)) for i in idx) + "]"


# ---- GatherV2 -------------------------------------------------------------------------------
def _gather_index_error(indices: np.ndarray, limit: int):
    """The kernel's message for the first index outside [0, limit), or None."""
    flat = indices.reshape(-1)
    bad = np.flatnonzero((flat < 0) | (flat >= limit))
    if not bad.size:
        return None
    k = int(bad[0])
    msg = (f"indices{_slice_debug_string(indices.shape, k)} = {int(flat[k])} is not in "
           f"[0, {limit})")
    return errors.InvalidArgumentError(msg)


def _gather_v2_shape(c):
    params = c.with_rank_at_least(0, 1)
    indices = c.input(1)
    c.with_rank(2, 0)
    axis = c.scalar_value(2, "axis")
    batch_dims = c.attr("batch_dims")
    p_rank = params.rank
    # The kernel's order of checks: axis, batch_dims, then how they relate.
    if axis is not None and p_rank is not None:
        if not -p_rank <= axis < p_rank:
            msg = f"Expected axis in the range [{-p_rank}, {p_rank}), but got {axis}"
            raise errors.InvalidArgumentError(msg)
        if axis < 0:
            axis += p_rank
    if indices.dims is not None:
        rank = len(indices.dims)
        if not -rank <= batch_dims <= rank:
            msg = (f"Expected batch_dims in the range [{-rank}, {rank}], but got "
                   f"{batch_dims}")
            raise errors.InvalidArgumentError(msg)
        if batch_dims < 0:
            batch_dims += rank
    elif batch_dims < 0:
        return [c.unknown_shape()]
    if p_rank is not None and batch_dims >= p_rank:
        msg = f"batch_dims ({batch_dims}) must be less than rank(params) ({p_rank})."
        raise errors.InvalidArgumentError(msg)
    if axis is None:
        if p_rank is None or indices.dims is None:
            return [c.unknown_shape()]
        return [c.unknown_shape(p_rank + len(indices.dims) - 1 - batch_dims)]
    if p_rank is None:
        return [c.unknown_shape()]
    if axis < batch_dims:
        msg = f"batch_dims ({batch_dims}) must be less than or equal to axis ({axis})."
        raise errors.InvalidArgumentError(msg)
    if indices.dims is None:
        return [c.unknown_shape()]
    batch = []
    for i in range(batch_dims):
        p, q = params.dims[i], indices.dims[i]
        if p is not None and q is not None and p != q:
            msg = f"params.shape[{i}]: {p} should be equal to indices.shape[{i}]: {q}"
            raise errors.InvalidArgumentError(msg)
        batch.append(p if p is not None else q)
    value = _known_array(c, 1)
    limit = params.dims[axis]
    if value is not None and limit is not None and np.size(value) and \
            0 not in params.dims[:axis] and 0 not in params.dims[axis + 1:]:
        # (as TF, only when the output is not empty; an unknown dim may be non-zero)
        err = _gather_index_error(np.asarray(value), limit)
        if err is not None:
            raise err
    dims = (*batch, *params.dims[batch_dims:axis], *indices.dims[batch_dims:],
            *params.dims[axis + 1:])
    return [make_shape(tuple(dims))]


def _gather_v2_value(c):
    params, indices, axis = c.input_value(0), _known_array(c, 1), _known_array(c, 2)
    if params is None or indices is None or axis is None or c.attr("batch_dims") != 0:
        return [None]
    axis = int(np.asarray(axis).reshape(()))
    if isinstance(params, TensorShape):         # an element or a part of a shape vector
        where = [int(i) for i in np.asarray(indices).reshape(-1)]
        if axis not in (0, -1) or np.ndim(indices) > 1 or \
                any(not 0 <= i < len(params.dims) for i in where):
            return [None]
        dims = [params.dims[i] for i in where]
        if np.ndim(indices) == 0:
            return [None if dims[0] is None else np.array(dims[0], c.input_dtype(0)
                                                          .as_numpy_dtype)]
        if None in dims:
            return [make_shape(tuple(dims))]
        return [np.array(dims, dtype=c.input_dtype(0).as_numpy_dtype)]
    out = _gather_v2_shape(c)[0]
    if not out.is_fully_defined() or out.num_elements() > _MAX_VALUE_ELEMENTS or \
            out.num_elements() == 0:
        return [None]
    return [np.take(params, np.asarray(indices), axis=axis)]


GatherV2 = declare(
    "GatherV2",
    inputs=["params: Tparams  # at least 1-D",
            "indices: Tindices  # entries in [0, params.shape[axis])",
            "axis: Taxis  # scalar, in [-rank(params), rank(params))"],
    outputs=["output: Tparams"],
    attrs=["batch_dims: int = 0  # leading dims shared by params and indices",
           "Tparams: type", "Tindices: {int16, int32, int64}", "Taxis: {int32, int64}"],
    shape_fn=_gather_v2_shape, value_fn=_gather_v2_value,
    doc="Slices of `params` along `axis` at `indices`: output shape params.shape[:axis] + "
        "indices.shape[batch_dims:] + params.shape[axis + 1:]. With batch_dims b, the first "
        "b dims of params and indices are batch dims gathered independently. An index "
        "outside [0, params.shape[axis]) is an InvalidArgumentError (TF's CPU behaviour).")


def _batch_offsets(scope, params: Output, indices: Output, batch_dims: int, limit: Output):
    """``(offsets, count)``: offsets[b...] = (row-major position of batch b...) * limit, shaped
    [batch dims..., 1, ...] to broadcast against indices, and count = batch size * limit (TF's
    _GetBatchIndices, with the batch dims flattened into one segment range)."""
    import ops  # noqa: PLC0415
    idt = indices.dtype
    rank = indices.shape.rank
    dims = [params.shape.dims[i] if params.shape.dims[i] is not None else indices.shape.dims[i]
            for i in range(batch_dims)]
    n = _static_value(limit)
    if None not in dims and n is not None:
        size = int(np.prod(dims, dtype=np.int64))
        positions = np.arange(size, dtype=np.int64).reshape(dims + [1] * (rank - batch_dims))
        return (_const(scope, positions * int(n), idt), _const(scope, size * int(n), idt))
    batch_shape = _shape_vector(scope, params, list(range(batch_dims)), idt)
    size = ops.Prod(scope, batch_shape, _const(scope, [0], dt.DT_INT32)).output
    positions = ops.Range(scope, _const(scope, 0, idt), size, _const(scope, 1, idt)).output
    shape = ops.ConcatV2(scope, [batch_shape, _const(scope, [1] * (rank - batch_dims), idt)],
                         _const(scope, 0, dt.DT_INT32)).output
    offsets = ops.Mul(scope, ops.Reshape(scope, positions, shape), limit).output
    return offsets, ops.Mul(scope, size, limit).output


@gradient("GatherV2")
def _gather_v2_grad(scope, op, grads):
    """TF's _GatherV2Grad, dense: the gradient's slices summed back into params' shape at their
    indices by UnsortedSegmentSum, after moving the indices' dims to the front (past the batch
    dims); batch_dims > 0 offsets each batch's indices into its own segment range."""
    import ops  # noqa: PLC0415
    params, indices, axis_input = op.inputs
    grad = grads[0]
    indices = _index_dtype_at_least_int32(scope, indices)
    idt = indices.dtype
    axis_value = _static_value(axis_input)
    p, q = params.shape.rank, indices.shape.rank
    b = op.attrs["batch_dims"]
    if b < 0 and q is not None:
        b += q
    axis = None if axis_value is None else int(axis_value.reshape(()))
    if axis == 0 and b == 0:            # no rank needed: [indices..., inner...] -> [N, inner...]
        limit = _shape_dim(scope, params, 0, idt)
        return [ops.UnsortedSegmentSum(scope, grad, indices, limit).output, None, None]
    if axis is None or p is None or q is None:
        msg = (f"GatherV2's gradient needs a constant axis and params and indices of known "
               f"rank unless axis is 0 (axis {'unknown' if axis is None else axis}, params "
               f"{params.shape}, indices {indices.shape})")
        raise errors.UnimplementedError(msg, op.name, op.type, op.site)
    axis %= p
    # grad is [batch, outer, indices (past batch), inner]; move the indices' dims before outer.
    g_rank = p + q - 1 - b
    perm = [*range(b), *range(axis, axis + q - b), *range(b, axis), *range(axis + q - b, g_rank)]
    if perm != sorted(perm):
        grad = ops.Transpose(scope, grad, _const(scope, perm, dt.DT_INT32)).output
    limit = _shape_dim(scope, params, axis, idt)
    if b:
        offsets, count = _batch_offsets(scope, params, indices, b, limit)
        indices = ops.Add(scope, indices, offsets).output
    else:
        count = limit
    summed = ops.UnsortedSegmentSum(scope, grad, indices, count).output   # [.., outer, inner]
    # params with the gathered dim moved in front of outer: [batch, N, outer, inner].
    moved = [*range(b), axis, *range(b, axis), *range(axis + 1, p)]
    if b:
        summed = ops.Reshape(scope, summed, _shape_vector(scope, params, moved, idt)).output
    if moved != sorted(moved):
        inverse = np.argsort(moved).astype(np.int32)
        summed = ops.Transpose(scope, summed, _const(scope, inverse, dt.DT_INT32)).output
    return [summed, None, None]


# ---- GatherNd -------------------------------------------------------------------------------
def _gather_nd_index_error(params_shape, indices: np.ndarray):
    """The kernel's checks of known indices against ``params_shape``: None when fine."""
    nd = indices.shape[-1]
    rows = indices.reshape(_prod(indices.shape[:-1]), nd)
    if rows.shape[0] and _prod(params_shape) == 0:
        msg = (f"Requested more than 0 entries, but params is empty.  Params shape: "
               f"[{','.join(str(d) for d in params_shape)}]")
        return errors.InvalidArgumentError(msg)
    limits = np.asarray(params_shape[:nd], dtype=np.int64)
    bad = np.flatnonzero(((rows < 0) | (rows >= limits)).any(axis=1))
    if not bad.size:
        return None
    k = int(bad[0])
    where = _slice_debug_string(indices.shape[:-1], k)
    values = ", ".join(str(int(v)) for v in rows[k])
    msg = (f"indices{where} = [{values}] does not index into param shape "
           f"[{','.join(str(d) for d in params_shape)}]")
    return errors.InvalidArgumentError(msg)


def _gather_nd_shape(c):
    params = c.with_rank_at_least(0, 1)
    indices = c.with_rank_at_least(1, 1)
    if indices.dims is None:
        return [c.unknown_shape()]
    nd = indices.dims[-1]
    if params.dims is None or nd is None:
        return [c.unknown_shape()]
    if nd > len(params.dims):
        msg = (f"indices.shape[-1] must be <= params.rank, but saw indices shape: "
               f"{indices.compact()} and params shape: {params.compact()}")
        raise errors.InvalidArgumentError(msg)
    value = _known_array(c, 1)
    if value is not None and params.is_fully_defined():
        err = _gather_nd_index_error(params.dims, np.asarray(value))
        if err is not None:
            raise err
    return [make_shape(indices.dims[:-1] + params.dims[nd:])]


GatherNd = declare(
    "GatherNd",
    inputs=["params: Tparams  # at least 1-D",
            "indices: Tindices  # [..., N]: N-tuples indexing params' first N dims"],
    outputs=["output: Tparams"],
    attrs=["Tparams: type", "Tindices: {int16, int32, int64}"],
    shape_fn=_gather_nd_shape,
    doc="Slices of `params` at N-dimensional indices: output shape indices.shape[:-1] + "
        "params.shape[indices.shape[-1]:]. An index tuple outside params' shape is an "
        "InvalidArgumentError (TF's CPU behaviour).")


@gradient("GatherNd")
def _gather_nd_grad(scope, op, grads):
    """TF's _GatherNdGrad, dense: ScatterNd(indices, grad, Shape(params)), repeated index tuples
    accumulating. A 1-D indices (one tuple) becomes [1, N] so the updates have a leading dim."""
    import ops  # noqa: PLC0415
    params, indices = op.inputs
    grad = grads[0]
    indices = _index_dtype_at_least_int32(scope, indices)
    shape = _shape_of(scope, params, indices.dtype)
    if indices.shape.rank == 1:
        zero = _const(scope, 0, dt.DT_INT32)
        indices = ops.ExpandDims(scope, indices, zero).output
        grad = ops.ExpandDims(scope, grad, zero).output
    return [ops.ScatterNd(scope, indices, grad, shape).output, None]


# ---- OneHot ---------------------------------------------------------------------------------
def _one_hot_shape(c):
    axis = c.attr("axis")
    if axis < -1:
        msg = f"axis must be >= -1, but got {axis}"
        raise errors.InvalidArgumentError(msg)
    c.with_rank(1, 0)
    depth = c.scalar_value(1, "depth")
    if depth is not None and depth < 0:
        msg = f"depth must be non-negative, got: {depth}"
        raise errors.InvalidArgumentError(msg)
    c.with_rank(2, 0)
    c.with_rank(3, 0)
    indices = c.input(0)
    if indices.dims is None:
        return [c.unknown_shape()]
    rank = len(indices.dims)
    if axis > rank:
        msg = f"Expected axis to be -1 or between [0, {rank}].  But received: {axis}"
        raise errors.InvalidArgumentError(msg)
    pos = rank if axis == -1 else axis
    return [make_shape(indices.dims[:pos] + (depth,) + indices.dims[pos:])]


OneHot = declare(
    "OneHot",
    inputs=["indices: TI", "depth: int32  # scalar >= 0: the size of the new dim",
            "on_value: T  # scalar", "off_value: T  # scalar"],
    outputs=["output: T"],
    attrs=["axis: int = -1  # where the new dim goes; -1: last", "T: type",
           "TI: {uint8, int8, int32, int64} = int64"],
    shape_fn=_one_hot_shape,
    doc="A new dim of size `depth` inserted at `axis`: output[..., j, ...] is on_value "
        "where indices[...] == j, else off_value (indices outside [0, depth) give a row of "
        "off_value).")


# ---- Where ----------------------------------------------------------------------------------
Where = declare(
    "Where",
    inputs=["input: T"], outputs=["index: int64  # [num_true, rank(input)]"],
    attrs=["T: {half, bfloat16, float, double, int8, int16, int32, int64, uint8, uint16, "
           "complex64, complex128, bool} = bool"],
    shape_fn=lambda c: [make_shape((None, c.input(0).rank))],
    doc="The coordinates of the true (non-zero) elements of `input`, in row-major order: "
        "an int64 matrix with one row per true element and one column per dim.")


# ---- UnsortedSegmentSum ---------------------------------------------------------------------
def _segment_error(ids: np.ndarray, num_segments: int):
    """The kernel's message for the first segment id >= num_segments, or None (negative ids
    are dropped, not errors)."""
    flat = ids.reshape(-1)
    bad = np.flatnonzero(flat >= num_segments)
    if not bad.size:
        return None
    k = int(bad[0])
    msg = (f"segment_ids{_slice_debug_string(ids.shape, k)} = {int(flat[k])} is out of range "
           f"[0, {num_segments})")
    return errors.InvalidArgumentError(msg)


def _unsorted_segment_sum_shape(c):
    data, ids = c.input(0), c.input(1)
    c.with_rank(2, 0)
    n = c.scalar_value(2, "num_segments")
    if n is not None and n < 0:
        msg = f"Input num_segments == {n} must not be negative."
        raise errors.InvalidArgumentError(msg)
    if ids.dims is None or data.dims is None:
        return [c.unknown_shape()]
    r = len(ids.dims)
    prefix = data.dims[:r]
    if len(data.dims) < r or any(a is not None and b is not None and a != b
                                 for a, b in zip(prefix, ids.dims)):
        msg = (f"data.shape = {_dims_text(data.dims)} does not start with segment_ids.shape = "
               f"{_dims_text(ids.dims)}")
        raise errors.InvalidArgumentError(msg)
    value = _known_array(c, 1)
    if value is not None and n is not None and 0 not in data.dims:
        err = _segment_error(np.asarray(value), n)     # (as TF, only when data is not empty)
        if err is not None:
            raise err
    return [make_shape((n,) + data.dims[r:])]


UnsortedSegmentSum = declare(
    "UnsortedSegmentSum",
    inputs=["data: T",
            "segment_ids: Tindices  # shape a prefix of data's; ids < num_segments",
            "num_segments: Tnumsegments  # scalar >= 0"],
    outputs=["output: T  # [num_segments] + data.shape[rank(segment_ids):]"],
    attrs=["T: numbertype", "Tindices: {int32, int64}",
           "Tnumsegments: {int32, int64} = DT_INT32"],
    shape_fn=_unsorted_segment_sum_shape,
    doc="output[i] = the sum of the slices data[j...] with segment_ids[j...] == i (0 where "
        "there are none). The ids need not be sorted or cover the range; negative ids are "
        "dropped; an id >= num_segments is an InvalidArgumentError (TF's CPU behaviour). "
        "GatherV2's (dense) gradient.")


@gradient("UnsortedSegmentSum")
def _unsorted_segment_sum_grad(scope, op, grads):
    """TF's _UnsortedSegmentSumGrad: the gradient gathered at the segment ids, zero where an id
    is negative (its slice was dropped)."""
    import ops  # noqa: PLC0415
    data, ids = op.inputs[0], op.inputs[1]
    grad = grads[0]
    zero = _const(scope, 0, ids.dtype)
    value = _static_value(ids)
    if value is not None and (value >= 0).all():
        return [ops.GatherV2(scope, grad, ids, zero).output, None, None]
    gathered = ops.GatherV2(scope, grad, ops.Maximum(scope, ids, zero), zero).output
    kept = ops.GreaterEqual(scope, ids, zero).output
    if data.shape.rank is not None and ids.shape.rank is not None:
        for _ in range(data.shape.rank - ids.shape.rank):
            kept = ops.ExpandDims(scope, kept, _const(scope, -1, dt.DT_INT32)).output
    else:                               # kept reshaped to ids.shape + [1] * (rank gap)
        gap = ops.Sub(scope, ops.Rank(scope, data), ops.Rank(scope, ids))
        ones = ops.Fill(scope, ops.Reshape(scope, gap, _const(scope, [1], dt.DT_INT32)),
                        _const(scope, 1, dt.DT_INT32))
        shape = ops.ConcatV2(scope, [ops.Shape(scope, ids), ones],
                             _const(scope, 0, dt.DT_INT32))
        kept = ops.Reshape(scope, kept, shape).output
    return [ops.SelectV2(scope, kept, gathered, _const(scope, 0, grad.dtype)).output, None, None]


# ---- ScatterNd ------------------------------------------------------------------------------
def _scatter_update_error(updates, indices, shape) -> errors.InvalidArgumentError:
    """The kernel's message for updates not of shape indices.shape[:-1] + shape[N:]."""
    msg = (f"Must have updates.shape = indices.shape[:batch_dim] + params_shape[slice_dim:], "
           f"got updates.shape: {_dims_text(updates)}, indices.shape: {_dims_text(indices)}, "
           f"params_shape: {_dims_text(shape)}, slice_dim: {indices[-1]}, and batch_dim: "
           f"{len(indices) - 1}")
    return errors.InvalidArgumentError(msg)


def _scatter_nd_index_error(indices: np.ndarray, shape):
    """The kernel's message for the first index tuple outside ``shape``, or None."""
    nd = indices.shape[-1]
    rows = indices.reshape(_prod(indices.shape[:-1]), nd).astype(np.int64)
    limits = np.asarray(shape[:nd], dtype=np.int64)
    bad = np.flatnonzero(((rows < 0) | (rows >= limits)).any(axis=1))
    if not bad.size:
        return None
    k = int(bad[0])
    values = ", ".join(str(int(v)) for v in rows[k])
    msg = (f"indices{_slice_debug_string(indices.shape[:-1], k)} = [{values}] does not index "
           f"into shape {_dims_text(shape)}")
    return errors.InvalidArgumentError(msg)


def _scatter_nd_shape(c):
    indices = c.with_rank_at_least(0, 1)
    updates = c.with_rank_at_least(1, 1)
    c.with_rank(2, 1)
    sizes = c.input_tensor(2)
    for d in () if sizes is None else np.asarray(sizes).reshape(-1).tolist():
        if d < 0:
            msg = f"Dimension {int(d)} must be >= 0"
            raise errors.InvalidArgumentError(msg)
    out = c.input_as_shape(2)
    if out.dims is None:
        return [out]
    if not out.dims:
        msg = "Output must be at least 1-D, got shape: []"
        raise errors.InvalidArgumentError(msg)
    if 0 in out.dims and (indices.num_elements() or updates.num_elements()):
        msg = (f"Indices and updates specified for empty output.  indices shape: "
               f"{_dims_text(indices.dims)}")
        raise errors.InvalidArgumentError(msg)
    if indices.dims is None or updates.dims is None or indices.dims[-1] is None:
        return [out]
    nd = indices.dims[-1]
    expected = indices.dims[:-1] + out.dims[nd:]
    if nd > len(out.dims) or len(updates.dims) != len(expected) or any(
            a is not None and b is not None and a != b for a, b in zip(updates.dims, expected)):
        raise _scatter_update_error(updates.dims, indices.dims, out.dims)
    value = _known_array(c, 0)
    if value is not None and out.is_fully_defined() and np.size(value):
        err = _scatter_nd_index_error(np.asarray(value), out.dims)
        if err is not None:
            raise err
    inner = updates.dims[len(indices.dims) - 1:]        # fills in dims the shape left unknown
    dims = out.dims[:nd] + tuple(o if o is not None else u for o, u in zip(out.dims[nd:], inner))
    return [make_shape(dims)]


ScatterNd = declare(
    "ScatterNd",
    inputs=["indices: Tindices  # [..., N]: N-tuples indexing the output's first N dims",
            "updates: T  # indices.shape[:-1] + shape[N:]",
            "shape: Tindices  # 1-D: the output shape"],
    outputs=["output: T"],
    attrs=["T: type", "Tindices: {int16, int32, int64}"],
    shape_fn=_scatter_nd_shape,
    doc="A zero tensor of shape `shape` with each slice of `updates` added at its index tuple "
        "(repeated tuples accumulate): GatherNd's inverse and (dense) gradient. A tuple "
        "outside `shape` is an InvalidArgumentError (TF's CPU behaviour).")


@gradient("ScatterNd")
def _scatter_nd_grad(scope, op, grads):
    """TF's _ScatterNdGrad: the updates' gradient is GatherNd(grad, indices)."""
    import ops  # noqa: PLC0415
    return [None, ops.GatherNd(scope, grads[0], op.inputs[0]).output, None]
