"""CPU kernels of the array ops.

Reshape, ExpandDims and Squeeze return read-only views of their input (no copy, as TF shares
the buffer); the shape functions have validated everything before these run.
"""

from __future__ import annotations

import numpy as np

from opgraph import errors
from opgraph.dtypes import ALL_TYPES
from runtime.executor import unfed_placeholder_error
from runtime.kernel_registry import Kernel, register_kernel

_ANY = {"T": ALL_TYPES}


@register_kernel("Const", "CPU", {"dtype": ALL_TYPES})
class ConstCpu(Kernel):
    def __init__(self, node):
        super().__init__(node)
        value = node.attrs["value"]
        self.value = value if not value.flags.writeable else value.copy()
        self.value.setflags(write=False)   # fetched results must not alias-mutate the graph

    def compute(self):
        return self.value


@register_kernel("Placeholder", "CPU", {"dtype": ALL_TYPES})
class PlaceholderCpu(Kernel):
    foldable = False

    def compute(self):   # the executor refuses unfed placeholders before running; defensive
        raise unfed_placeholder_error(self.node)


@register_kernel("PlaceholderWithDefault", "CPU", {"dtype": ALL_TYPES})
class PlaceholderWithDefaultCpu(Kernel):
    foldable = False   # it may be fed in another run

    def compute(self, x):
        return x


@register_kernel("Identity", "CPU", _ANY)
class IdentityCpu(Kernel):
    def compute(self, x):
        return x


@register_kernel("Shape", "CPU", _ANY)
class ShapeCpu(Kernel):
    def __init__(self, node):
        super().__init__(node)
        self.out_dtype = node.attrs["out_type"].as_numpy_dtype

    def compute(self, x):
        shape = np.asarray(x).shape
        if self.out_dtype == np.int32 and any(d > np.iinfo(np.int32).max for d in shape):
            msg = f"Shape {list(shape)} does not fit in int32; use out_type int64"
            raise errors.InvalidArgumentError(msg)
        return np.array(shape, dtype=self.out_dtype)


# ---- reshaping views ------------------------------------------------------------------------
def _read_only_view(a: np.ndarray, shape) -> np.ndarray:
    """``a`` reshaped without copying when possible; read-only, so neither a caller nor a
    later kernel can write through it into ``a``."""
    out = np.reshape(a, shape)
    if out is a:
        out = a.view()
    out.flags.writeable = False
    return out


def _int_list(value) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1).tolist()]


@register_kernel("Reshape")
def reshape(tensor, shape):
    # The shape function (re-run on the actual inputs when needed) validated `shape` and
    # resolved its -1; numpy resolves it the same way, except around zero-size dims.
    sizes = _int_list(shape)
    if -1 in sizes and 0 in sizes:
        known = [d for d in sizes if d > 0]
        n_in = int(np.prod([d for d in tensor.shape if d > 0], dtype=np.int64))
        sizes[sizes.index(-1)] = n_in // max(int(np.prod(known, dtype=np.int64)), 1)
    return _read_only_view(tensor, sizes)


@register_kernel("Transpose")
def transpose(x, perm):
    perm = _int_list(perm)
    if x.ndim < 2 or perm == sorted(perm):
        return x
    return np.ascontiguousarray(np.transpose(x, perm))


@register_kernel("InvertPermutation")
def invert_permutation(x):
    # The shape function (re-run on the actual value) checked that x is a permutation.
    return np.argsort(x, kind="stable").astype(x.dtype, copy=False)


@register_kernel("ExpandDims")
def expand_dims(x, dim):
    axis = _int_list(dim)[0]
    if axis < 0:
        axis += x.ndim + 1
    return _read_only_view(x, x.shape[:axis] + (1,) + x.shape[axis:])


@register_kernel("Squeeze")
def squeeze(x, *, squeeze_dims):
    axes = tuple(d % x.ndim for d in squeeze_dims) if squeeze_dims else None
    if axes is None:
        shape = tuple(d for d in x.shape if d != 1)
    else:
        for d in axes:
            if x.shape[d] != 1:
                msg = f"Can not squeeze dim[{d}], expected a dimension of 1, got {x.shape[d]}"
                raise errors.InvalidArgumentError(msg)
        shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return _read_only_view(x, shape)


# ---- shapes and sizes -----------------------------------------------------------------------
@register_kernel("Rank", "CPU", _ANY)
def rank(x):
    return np.array(np.ndim(x), dtype=np.int32)


@register_kernel("Size")
def size(x, *, out_type):
    n = int(np.size(x))
    if out_type.name == "int32" and n > np.iinfo(np.int32).max:
        msg = "Number of elements was larger than representable by 32-bit output type"
        raise errors.InvalidArgumentError(msg)
    return np.array(n, dtype=out_type.as_numpy_dtype)


@register_kernel("ShapeN")
def shape_n(*xs, out_type):
    out = []
    for x in xs:
        shape = np.shape(x)
        if out_type.name == "int32" and any(d > np.iinfo(np.int32).max for d in shape):
            msg = f"Shape {list(shape)} does not fit in int32; use out_type int64"
            raise errors.InvalidArgumentError(msg)
        out.append(np.array(shape, dtype=out_type.as_numpy_dtype))
    return out[0] if len(out) == 1 else tuple(out)     # one output: one array


# ---- broadcasting and filling ---------------------------------------------------------------
@register_kernel("BroadcastTo")
def broadcast_to(x, shape):
    return np.array(np.broadcast_to(x, _int_list(shape)))


@register_kernel("Fill")
def fill(dims, value):
    return np.full(_int_list(dims), value, dtype=value.dtype)


@register_kernel("ZerosLike")
def zeros_like(x):
    if x.dtype == object:               # strings: the empty string
        return np.full(x.shape, "", dtype=object)
    return np.zeros(x.shape, dtype=x.dtype)


@register_kernel("OnesLike")
def ones_like(x):
    return np.ones(x.shape, dtype=x.dtype)


@register_kernel("Range")
def range_(start, limit, delta):
    start, limit, delta = (np.asarray(v).reshape(()) for v in (start, limit, delta))
    if start.dtype.kind in "iu":
        span, step = abs(int(limit) - int(start)), abs(int(delta))
        n = (span + step - 1) // step          # delta != 0 and the signs: checked before
    else:
        n = int(np.ceil(np.abs((limit - start) / delta)))
    return start + np.arange(n).astype(start.dtype) * delta


# ---- identities -----------------------------------------------------------------------------
@register_kernel("StopGradient", "CPU", _ANY)
class StopGradientCpu(Kernel):
    def compute(self, x):
        return x


@register_kernel("NoOp")
def no_op():
    return ()


@register_kernel("IdentityN", "CPU", _ANY)
class IdentityNCpu(Kernel):
    def compute(self, *xs):
        return xs[0] if len(xs) == 1 else xs       # one output: one array, not a tuple
