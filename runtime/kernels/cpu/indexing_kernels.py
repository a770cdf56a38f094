"""CPU kernels of the indexing ops: GatherV2, GatherNd, OneHot, Where, UnsortedSegmentSum,
ScatterNd.

Indices are checked here as TF's CPU kernels check them (an index out of range is an
InvalidArgumentError naming its position), so values only known at run time are refused
with the same messages the shape functions give for known ones.
"""

from __future__ import annotations

import numpy as np

from opgraph import dtypes as dt
from opgraph import errors
from runtime.kernel_registry import register_kernel


def _prod(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _position(shape, flat: int) -> str:
    """TF's SliceDebugString: ``[i,j]`` for position ``flat`` of ``shape`` ("" for [])."""
    if len(shape) == 0:
        return ""
    return "[" + ",".join(str(int(i)) for i in np.unravel_index(flat, tuple(shape))) + "]"


@register_kernel("GatherV2")
def gather_v2(params, indices, axis, *, batch_dims):
    axis = int(np.asarray(axis).reshape(()))
    if axis < 0:
        axis += params.ndim
    if batch_dims < 0:
        batch_dims += indices.ndim
    limit = params.shape[axis]
    out_shape = (params.shape[:axis] + indices.shape[batch_dims:] + params.shape[axis + 1:])
    if indices.size and _prod(params.shape[:axis]) and _prod(params.shape[axis + 1:]):
        flat = indices.reshape(-1)
        bad = np.flatnonzero((flat < 0) | (flat >= limit))
        if bad.size:
            k = int(bad[0])
            msg = (f"indices{_position(indices.shape, k)} = {int(flat[k])} is not in "
                   f"[0, {limit})")
            raise errors.InvalidArgumentError(msg)
    if _prod(out_shape) == 0:
        return np.empty(out_shape, dtype=params.dtype)
    if batch_dims == 0:
        return np.take(params, indices, axis=axis)
    # [batch, outer, limit, inner] gathered at [batch, n] -> [batch, outer, n, inner]
    batch = _prod(params.shape[:batch_dims])
    outer = _prod(params.shape[batch_dims:axis])
    p = params.reshape(batch, outer, limit, -1)
    idx = indices.reshape(batch, -1)
    out = p[np.arange(batch)[:, None, None], np.arange(outer)[None, :, None], idx[:, None, :]]
    return out.reshape(out_shape)


@register_kernel("GatherNd")
def gather_nd(params, indices):
    nd = indices.shape[-1]
    rows = indices.reshape(_prod(indices.shape[:-1]), nd)
    params_text = "[" + ",".join(str(d) for d in params.shape) + "]"
    if rows.shape[0] and params.size == 0:
        msg = f"Requested more than 0 entries, but params is empty.  Params shape: {params_text}"
        raise errors.InvalidArgumentError(msg)
    limits = np.asarray(params.shape[:nd], dtype=np.int64)
    bad = np.flatnonzero(((rows < 0) | (rows >= limits)).any(axis=1))
    if bad.size:
        k = int(bad[0])
        values = ", ".join(str(int(v)) for v in rows[k])
        msg = (f"indices{_position(indices.shape[:-1], k)} = [{values}] does not index into "
               f"param shape {params_text}")
        raise errors.InvalidArgumentError(msg)
    out_shape = indices.shape[:-1] + params.shape[nd:]
    if nd == 0:                         # every index tuple selects all of params
        return np.array(np.broadcast_to(params, (rows.shape[0],) + params.shape)
                        ).reshape(out_shape)
    return params[tuple(rows.T)].reshape(out_shape)


@register_kernel("OneHot")
def one_hot(indices, depth, on_value, off_value, *, axis):
    depth = int(np.asarray(depth).reshape(()))
    hot = indices.astype(np.int64)[..., None] == np.arange(depth, dtype=np.int64)
    out = np.where(hot, on_value.reshape(()), off_value.reshape(()))
    if axis != -1 and axis != indices.ndim:
        out = np.ascontiguousarray(np.moveaxis(out, -1, axis))
    return out


@register_kernel("Where")
def where(x):
    return np.argwhere(x).astype(np.int64, copy=False)


def _shape_text(shape) -> str:
    return "[" + ",".join(str(int(d)) for d in shape) + "]"


@register_kernel("UnsortedSegmentSum")
def unsorted_segment_sum(data, segment_ids, num_segments):
    n = int(np.asarray(num_segments).reshape(()))
    rank = segment_ids.ndim
    inner = data.shape[rank:]
    out = np.zeros((n,) + inner, dtype=data.dtype)
    if data.size == 0:                  # as TF: nothing to add, nothing checked
        return out
    ids = segment_ids.reshape(-1).astype(np.int64, copy=False)
    bad = np.flatnonzero(ids >= n)
    if bad.size:
        k = int(bad[0])
        msg = (f"segment_ids{_position(segment_ids.shape, k)} = {int(ids[k])} is out of range "
               f"[0, {n})")
        raise errors.InvalidArgumentError(msg)
    rows = data.reshape((ids.size,) + inner)
    kept = ids >= 0
    if not kept.all():
        ids, rows = ids[kept], rows[kept]
    np.add.at(out, ids, rows)           # repeated ids accumulate
    return out


_SCATTER_TYPES = {"T": tuple(dt.TYPE_SETS["numbertype"]) + (dt.DT_BOOL,)}


@register_kernel("ScatterNd", "CPU", _SCATTER_TYPES)
def scatter_nd(indices, updates, shape):
    shape = tuple(int(d) for d in np.asarray(shape).reshape(-1))
    nd = indices.shape[-1]
    count = _prod(indices.shape[:-1])
    rows = indices.reshape(count, nd).astype(np.int64, copy=False)
    limits = np.asarray(shape[:nd], dtype=np.int64)
    bad = np.flatnonzero(((rows < 0) | (rows >= limits)).any(axis=1))
    if bad.size:
        k = int(bad[0])
        values = ", ".join(str(int(v)) for v in rows[k])
        msg = (f"indices{_position(indices.shape[:-1], k)} = [{values}] does not index into "
               f"shape {_shape_text(shape)}")
        raise errors.InvalidArgumentError(msg)
    out = np.zeros(shape, dtype=updates.dtype)
    if count == 0 or out.size == 0:
        return out
    # Row-major position of each tuple among the output's first nd dims (0 when nd == 0).
    strides = np.ones(nd, dtype=np.int64)
    for k in range(nd - 2, -1, -1):     # (a loop over dims, not elements)
        strides[k] = strides[k + 1] * shape[k + 1]
    positions = rows @ strides
    slices = out.reshape((_prod(shape[:nd]),) + shape[nd:])
    np.add.at(slices, positions, updates.reshape((count,) + shape[nd:]))
    return out
