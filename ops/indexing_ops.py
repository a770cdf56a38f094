"""Indexing ops: GatherV2, GatherNd, OneHot, Where.

Shape functions follow TF's (tensorflow/core/ops/array_ops.cc) and add the kernels' checks:
axis and batch_dims ranges, matching batch dims, and, when the indices are known (a
build-time constant, or the actual value when the executor re-checks a node), indices out of
range with the kernels' messages. The kernels check the indices themselves too, so a value
that only becomes known at run time is refused the same way.
"""

from __future__ import annotations

import numpy as np

from opgraph import errors
from opgraph.shapes import TensorShape, make_shape
from opgraph.wrappers import declare

__all__ = ["GatherV2", "GatherNd", "OneHot", "Where"]

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
