"""CPU kernels of the reductions, ArgMax/ArgMin, Cumsum and Cumprod.

The shape functions have already checked the axes (in range, not repeated) on the actual
values; the kernels only canonicalise them. half and bfloat16 accumulate in float32.
"""

from __future__ import annotations

import numpy as np

from opgraph import dtypes as dt
from runtime.kernel_registry import register_kernel

_REAL_TYPES = dt.TYPE_SETS["realnumbertype"]


def _accumulator(dtype: np.dtype):
    """The dtype to accumulate in: float32 for the 16-bit floats, else None (the input's)."""
    return np.dtype(np.float32) if dtype.name in ("float16", "bfloat16") else None


def _axes(reduction_indices, ndim: int) -> tuple:
    return tuple(sorted(a + ndim if a < 0 else a
                        for a in np.asarray(reduction_indices).reshape(-1).tolist()))


def _count(shape, axes) -> int:
    n = 1
    for a in axes:
        n *= shape[a]
    return n


@register_kernel("Sum")
def sum_(input, reduction_indices, *, keep_dims):  # noqa: A002  (TF's input name)
    axes = _axes(reduction_indices, input.ndim)
    acc = _accumulator(input.dtype)
    out = np.sum(input, axis=axes, dtype=acc or input.dtype, keepdims=keep_dims)
    return np.asarray(out, dtype=input.dtype)


@register_kernel("Prod")
def prod(input, reduction_indices, *, keep_dims):  # noqa: A002
    axes = _axes(reduction_indices, input.ndim)
    acc = _accumulator(input.dtype)
    out = np.prod(input, axis=axes, dtype=acc or input.dtype, keepdims=keep_dims)
    return np.asarray(out, dtype=input.dtype)


@register_kernel("Mean")
def mean(input, reduction_indices, *, keep_dims):  # noqa: A002
    axes = _axes(reduction_indices, input.ndim)
    n = _count(input.shape, axes)
    kind = input.dtype.kind
    if kind in "iu":
        total = np.sum(input, axis=axes, dtype=np.int64 if kind == "i" else np.uint64,
                       keepdims=keep_dims)
        if n == 0:
            return np.zeros(np.shape(total), input.dtype)
        quotient = total // n
        if kind == "i":          # C++ division truncates toward zero
            quotient = quotient + ((total % n != 0) & (total < 0))
        return np.asarray(quotient, dtype=input.dtype)
    acc = _accumulator(input.dtype) or input.dtype
    total = np.sum(input, axis=axes, dtype=acc, keepdims=keep_dims)
    if n == 0:                   # TF's identity: NaN for real floats, 0 for complex
        return np.full(np.shape(total), 0 if kind == "c" else np.nan, input.dtype)
    return np.asarray(np.divide(total, n, dtype=acc), dtype=input.dtype)


def _extreme(input, reduction_indices, keep_dims, ufunc, largest_first: bool):
    axes = _axes(reduction_indices, input.ndim)
    if input.dtype.kind in "iu":
        info = np.iinfo(input.dtype)
        identity = info.min if largest_first else info.max
    else:
        identity = -np.inf if largest_first else np.inf
    out = ufunc.reduce(input, axis=axes, keepdims=keep_dims,
                       initial=np.asarray(identity, input.dtype))
    return np.asarray(out, dtype=input.dtype)


@register_kernel("Max", "CPU", {"T": _REAL_TYPES})
def max_(input, reduction_indices, *, keep_dims):  # noqa: A002
    return _extreme(input, reduction_indices, keep_dims, np.maximum, True)


@register_kernel("Min", "CPU", {"T": _REAL_TYPES})
def min_(input, reduction_indices, *, keep_dims):  # noqa: A002
    return _extreme(input, reduction_indices, keep_dims, np.minimum, False)


@register_kernel("All")
def all_(input, reduction_indices, *, keep_dims):  # noqa: A002
    axes = _axes(reduction_indices, input.ndim)
    return np.asarray(np.logical_and.reduce(input, axis=axes, keepdims=keep_dims),
                      dtype=np.bool_)


@register_kernel("Any")
def any_(input, reduction_indices, *, keep_dims):  # noqa: A002
    axes = _axes(reduction_indices, input.ndim)
    return np.asarray(np.logical_or.reduce(input, axis=axes, keepdims=keep_dims),
                      dtype=np.bool_)


_ARG_TYPES = (*_REAL_TYPES, dt.DT_BOOL)     # TF registers no complex ArgMax/ArgMin kernel


@register_kernel("ArgMax", "CPU", {"T": _ARG_TYPES})
def arg_max(input, dimension, *, output_type):  # noqa: A002
    axis = int(dimension)
    out = np.argmax(input, axis=axis + input.ndim if axis < 0 else axis)
    return np.asarray(out, dtype=output_type.as_numpy_dtype)


@register_kernel("ArgMin", "CPU", {"T": _ARG_TYPES})
def arg_min(input, dimension, *, output_type):  # noqa: A002
    axis = int(dimension)
    out = np.argmin(input, axis=axis + input.ndim if axis < 0 else axis)
    return np.asarray(out, dtype=output_type.as_numpy_dtype)


def _scan(x, axis, exclusive, reverse, accumulate, identity):
    """np.cumsum / np.cumprod along axis with TF's exclusive and reverse flags."""
    ax = int(axis)
    ax = ax + x.ndim if ax < 0 else ax
    acc = _accumulator(x.dtype) or x.dtype
    src = np.flip(x, ax) if reverse else x
    if exclusive:
        out = np.empty(x.shape, acc)
        lead = (slice(None),) * ax
        out[lead + (slice(0, 1),)] = identity
        accumulate(src[lead + (slice(0, -1),)], axis=ax, dtype=acc,
                   out=out[lead + (slice(1, None),)])
    else:
        out = accumulate(src, axis=ax, dtype=acc)
    if reverse:
        out = np.flip(out, ax)
    return np.ascontiguousarray(out, dtype=x.dtype)


@register_kernel("Cumsum")
def cumsum(x, axis, *, exclusive, reverse):
    return _scan(x, axis, exclusive, reverse, np.cumsum, 0)


@register_kernel("Cumprod")
def cumprod(x, axis, *, exclusive, reverse):
    return _scan(x, axis, exclusive, reverse, np.cumprod, 1)
