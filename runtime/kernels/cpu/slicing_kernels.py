"""CPU kernels of the slicing, joining and padding ops, and StridedSlice's canonicalisation.

``strided_slice_spec`` is TF's ValidateStridedSliceOp in Python: it turns the sparse slice
spec (begin/end/strides vectors plus the five masks) into one canonical (begin, end, stride)
per input dim and the output shape. The shape function of StridedSlice (ops/slicing_ops.py)
calls it on partial dims and values, the kernel on the actual ones, so both agree exactly.
The shape functions have already checked every rule on the actual inputs; the kernels only
compute. Results never alias an input (slices are copied).
"""

from __future__ import annotations

import numpy as np

from opgraph.slicing import (StridedSliceSpec, apply_strided_slice, slice_input,
                             strided_slice_index, strided_slice_spec)
from runtime.kernel_registry import register_kernel


def _copy(view: np.ndarray) -> np.ndarray:
    return np.array(view, copy=True)


def _outputs(parts: tuple):
    """A list output's arrays as the executor takes them: one array alone, else a tuple."""
    return parts[0] if len(parts) == 1 else parts


# ---- kernels ---------------------------------------------------------------------------

@register_kernel("ConcatV2")
def concat_v2(*values_and_axis):
    *values, axis = values_and_axis
    axis = int(axis)
    return np.concatenate(values, axis=axis + values[0].ndim if axis < 0 else axis)


@register_kernel("Pack")
def pack(*values, axis):
    return np.stack(values, axis=axis)


@register_kernel("Unpack")
def unpack(value, *, num, axis):
    axis = axis + value.ndim if axis < 0 else axis
    # np.asarray: taking from a 1-D object (string) array gives a bare Python object
    return _outputs(tuple(np.asarray(np.take(value, i, axis=axis), dtype=value.dtype)
                          for i in range(num)))


def _split_at(value, axis: int, sizes) -> tuple:
    axis = axis + value.ndim if axis < 0 else axis
    cuts = np.cumsum(sizes)[:-1].tolist()
    return _outputs(tuple(_copy(part) for part in np.split(value, cuts, axis=axis)))


@register_kernel("Split")
def split(axis, value, *, num_split):
    axis = int(axis)
    dim = value.shape[axis]
    return _split_at(value, axis, [dim // num_split] * num_split)


@register_kernel("SplitV")
def split_v(value, size_splits, axis, *, num_split):  # noqa: ARG001  (shape-checked)
    axis = int(axis)
    axis = axis + value.ndim if axis < 0 else axis
    sizes = np.asarray(size_splits).astype(np.int64).tolist()
    if -1 in sizes:
        sizes[sizes.index(-1)] = value.shape[axis] - (sum(sizes) + 1)
    return _split_at(value, axis, sizes)


@register_kernel("Slice")
def slice_(input, begin, size):  # noqa: A002  (TF's input name)
    return _copy(slice_input(input, begin, size))


def _spec(shape, begin, end, strides, masks: tuple) -> StridedSliceSpec:
    names = ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")
    return strided_slice_spec(shape, np.asarray(begin).tolist(), np.asarray(end).tolist(),
                              np.asarray(strides).tolist(), **dict(zip(names, masks)))


@register_kernel("StridedSlice")
def strided_slice(input, begin, end, strides, *, begin_mask, end_mask,  # noqa: A002
                  ellipsis_mask, new_axis_mask, shrink_axis_mask):
    spec = _spec(input.shape, begin, end, strides, (
        begin_mask, end_mask, ellipsis_mask, new_axis_mask, shrink_axis_mask))
    return _copy(apply_strided_slice(input, spec))


@register_kernel("StridedSliceGrad")
def strided_slice_grad(shape, begin, end, strides, dy, *, begin_mask, end_mask,
                       ellipsis_mask, new_axis_mask, shrink_axis_mask):
    dims = tuple(np.asarray(shape).tolist())
    spec = _spec(dims, begin, end, strides, (
        begin_mask, end_mask, ellipsis_mask, new_axis_mask, shrink_axis_mask))
    out = np.full(dims, _zero(dy.dtype), dtype=dy.dtype)
    out[strided_slice_index(spec)] = dy.reshape(spec.processing_shape)
    return out


@register_kernel("ReverseV2")
def reverse_v2(tensor, axis):
    axes = tuple(sorted(a + tensor.ndim if a < 0 else a for a in np.asarray(axis).tolist()))
    return _copy(np.flip(tensor, axis=axes) if axes else tensor)


@register_kernel("Tile")
def tile(input, multiples):  # noqa: A002  (TF's input name)
    reps = tuple(np.asarray(multiples).tolist())
    if input.ndim == 0:
        return _copy(input)
    return np.tile(input, reps)


def _constant_pad(x, paddings, value):
    pads = np.asarray(paddings).tolist()
    shape = tuple(d + b + a for d, (b, a) in zip(x.shape, pads))
    out = np.full(shape, value, dtype=x.dtype)
    out[tuple(slice(b, b + d) for d, (b, _) in zip(x.shape, pads))] = x
    return out


def _zero(dtype: np.dtype):
    return "" if dtype == np.dtype(object) else np.zeros((), dtype)


@register_kernel("Pad")
def pad(input, paddings):  # noqa: A002  (TF's input name)
    return _constant_pad(input, paddings, _zero(input.dtype))


@register_kernel("PadV2")
def pad_v2(input, paddings, constant_values):  # noqa: A002  (TF's input name)
    return _constant_pad(input, paddings, np.asarray(constant_values).reshape(()))


@register_kernel("MirrorPad")
def mirror_pad(input, paddings, *, mode):  # noqa: A002  (TF's input name)
    pads = [tuple(p) for p in np.asarray(paddings).tolist()]
    if input.ndim == 0:
        return _copy(input)
    return np.pad(input, pads, mode="reflect" if mode == "REFLECT" else "symmetric")


@register_kernel("MirrorPadGrad")
def mirror_pad_grad(input, paddings, *, mode):  # noqa: A002  (TF's input name)
    """Folds the gradient of MirrorPad's padded border back onto the entries it copied."""
    out = input
    edge = 1 if mode == "REFLECT" else 0     # REFLECT skips the edge entry
    for axis, (before, after) in enumerate(np.asarray(paddings).tolist()):
        dim = out.shape[axis] - before - after
        moved = np.moveaxis(out, axis, 0)
        center = np.array(moved[before:before + dim], copy=True)
        if before:
            center[edge:edge + before] += moved[before - 1::-1]
        if after:
            stop = dim - edge
            center[stop - after:stop] += moved[:before + dim - 1:-1]
        out = np.moveaxis(center, 0, axis)
    return out if out is not input else _copy(input)
