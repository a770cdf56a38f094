"""Slicing arithmetic shared by the slicing ops' shape functions and their kernels.

``strided_slice_spec`` canonicalises StridedSlice's begin/end/strides and five masks into
one spec (TF's ValidateStridedSliceOp), used at build time on static dims and at run time on
the actual shape, so both give the same answers and messages.
"""

from __future__ import annotations

import attrs
import numpy as np

from opgraph import errors

__all__ = ["StridedSliceSpec", "strided_slice_spec", "strided_slice_index",
           "apply_strided_slice", "slice_input"]

_MASK32 = 0xFFFFFFFF
_NEW_AXIS = -1
_SHRINK = -2


@attrs.frozen
class StridedSliceSpec:
    """The canonical form of a strided slice over an input of known rank.

    ``begin``/``end``/``strides``/``shrink`` have one entry per input dim: a canonical,
    clamped range (begin/end None when not known), ``processing_shape`` the shape of the
    dense slice (shrunk dims kept as 1), ``final_shape`` the op's output shape (shrunk dims
    dropped, new axes inserted as 1). Dims are int or None.
    """

    begin: tuple
    end: tuple
    strides: tuple
    shrink: tuple
    processing_shape: tuple
    final_shape: tuple


def _slice_size(begin: int, end: int, stride: int) -> int:
    interval = end - begin
    if interval == 0 or (interval < 0) != (stride < 0):
        return 0
    return (abs(interval) + abs(stride) - 1) // abs(stride)


def strided_slice_spec(input_dims, begin, end, strides, *, begin_mask=0, end_mask=0,
                       ellipsis_mask=0, new_axis_mask=0, shrink_axis_mask=0):
    """TF's StridedSlice canonicalisation (tensorflow/core/util/strided_slice_op.cc).

    Args:
      input_dims: the input's dims (int or None each); its rank must be known.
      begin, end: sequences of int|None (None: that entry is unknown) or None (all unknown).
      strides: a sequence of ints (all known).
      masks: the op's attrs (32-bit masks, as TF reads them).

    Returns a StridedSliceSpec. Raises InvalidArgumentError for every rule decidable from
    what is known: more than one ellipsis, more indices than dims, a zero stride, a
    non-positive stride on a shrunk axis, a shrunk index out of bounds.
    """
    strides = [int(s) for s in strides]
    n = len(strides)
    begin = [None] * n if begin is None else [None if b is None else int(b) for b in begin]
    end = [None] * n if end is None else [None if e is None else int(e) for e in end]
    begin_mask &= _MASK32
    end_mask &= _MASK32
    ellipsis_mask &= _MASK32
    new_axis_mask &= _MASK32
    shrink_axis_mask &= _MASK32
    if ellipsis_mask & (ellipsis_mask - 1):
        msg = f"Multiple ellipses in slice spec not allowed (ellipsis_mask {ellipsis_mask})"
        raise errors.InvalidArgumentError(msg)

    # Step 1: count the new axes after the ellipsis; add an implicit ellipsis at the end.
    ellipsis_seen = False
    new_axes_after_ellipsis = 0
    for i in range(n):
        if ellipsis_seen and (new_axis_mask >> i) & 1:
            new_axes_after_ellipsis += 1
        if (ellipsis_mask >> i) & 1:
            ellipsis_seen = True
    sparse_dims = n
    if not ellipsis_seen:
        ellipsis_mask |= 1 << n
        sparse_dims = n + 1

    # Step 2: the sparse spec becomes one entry per input dim.
    rank = len(input_dims)
    d_begin, d_end = [None] * rank, [None] * rank
    d_strides = [1] * rank
    d_begin_masked, d_end_masked, d_shrink = [False] * rank, [False] * rank, [False] * rank
    gather = []       # per output dim: a dense index, _NEW_AXIS or _SHRINK
    full = 0
    for i in range(sparse_dims):
        if (ellipsis_mask >> i) & 1:
            stop = min(rank - (sparse_dims - i) + 1 + new_axes_after_ellipsis, rank)
            while full < stop:
                d_begin_masked[full] = d_end_masked[full] = True
                gather.append(full)
                full += 1
        elif (new_axis_mask >> i) & 1:
            gather.append(_NEW_AXIS)
        else:
            if full == rank:
                msg = (f"Index out of range using input dim {full}; input has only {rank} "
                       f"dims (the slice spec indexes more dims than the input has)")
                raise errors.InvalidArgumentError(msg)
            d_begin[full], d_end[full], d_strides[full] = begin[i], end[i], strides[i]
            d_begin_masked[full] = bool((begin_mask >> i) & 1)
            d_end_masked[full] = bool((end_mask >> i) & 1)
            if (shrink_axis_mask >> i) & 1:
                d_shrink[full] = True
                gather.append(_SHRINK)
            else:
                gather.append(full)
            full += 1

    # Step 3: canonical ranges, bounds checks and the dense (processing) shape.
    c_begin, c_end, processing = [None] * rank, [None] * rank, []
    for i in range(rank):
        stride, dim = d_strides[i], input_dims[i]
        if stride == 0:
            msg = f"strides[{i}] must be non-zero"
            raise errors.InvalidArgumentError(msg)
        if d_shrink[i]:
            if stride <= 0:
                msg = (f"only stride 1 allowed on non-range indexing (dim {i} is indexed by "
                       f"a single index with stride {stride})")
                raise errors.InvalidArgumentError(msg)
            b = d_begin[i]
            if b is not None and dim is not None:
                fwd = b + dim if b < 0 else b
                if not 0 <= fwd < dim:
                    msg = (f"slice index {b} of dimension {i} out of bounds (the dimension "
                           f"has size {dim})")
                    raise errors.InvalidArgumentError(msg)
                c_begin[i], c_end[i] = fwd, fwd + 1
            processing.append(1)
            continue
        if dim is None:
            processing.append(None)
            continue
        lo, hi = (0, dim) if stride > 0 else (-1, dim - 1)

        def canonical(x, masked, which, lo=lo, hi=hi, stride=stride, dim=dim):
            if masked:   # the whole range in the stride's direction
                return (lo if which == 0 else hi) if stride > 0 else \
                    (hi if which == 0 else lo)
            if x is None:
                return None
            fwd = x + dim if x < 0 else x
            return min(max(fwd, lo), hi)

        b = canonical(d_begin[i], d_begin_masked[i], 0)
        e = canonical(d_end[i], d_end_masked[i], 1)
        c_begin[i], c_end[i] = b, e
        processing.append(None if b is None or e is None else _slice_size(b, e, stride))

    # Step 4: the final shape: shrunk dims dropped, new axes inserted.
    final = tuple(1 if g == _NEW_AXIS else processing[g] for g in gather if g != _SHRINK)
    return StridedSliceSpec(tuple(c_begin), tuple(c_end), tuple(d_strides), tuple(d_shrink),
                            tuple(processing), final)


def strided_slice_index(spec: StridedSliceSpec) -> tuple:
    """The numpy index (one slice per input dim) of a fully known spec; indexing with it
    gives the processing shape."""
    index = []
    for b, e, s, size in zip(spec.begin, spec.end, spec.strides, spec.processing_shape):
        if size == 0:
            index.append(slice(0, 0))
        elif e < 0:             # a negative stride running past index 0
            index.append(slice(b, None, s))
        else:
            index.append(slice(b, e, s))
    return tuple(index)


def apply_strided_slice(x: np.ndarray, spec: StridedSliceSpec) -> np.ndarray:
    """``x`` sliced by a fully known spec (a view; copy before returning it from a kernel)."""
    return x[strided_slice_index(spec)].reshape(spec.final_shape)


def slice_input(x: np.ndarray, begin, size) -> np.ndarray:
    """TF's Slice on actual values (size -1: to the end of the dim); a view."""
    index = []
    for b, s, d in zip(np.asarray(begin).tolist(), np.asarray(size).tolist(), x.shape):
        index.append(slice(b, d if s == -1 else b + s))
    return x[tuple(index)]
