"""2-D pooling ops: MaxPool and AvgPool, their backward ops (MaxPoolGrad, MaxPoolGradGrad,
AvgPoolGrad) and their gradients.

The attrs are validated as TF's CPU pooling kernels validate them (ksize and strides of 4
positive ints in data_format order, no pooling over the batch or depth dim, explicit paddings
smaller than the window), at build time; output sizes follow TF's windowed-output rules with
C++ truncating division (``opgraph.windows``).
"""

from __future__ import annotations

import numpy as np

from opgraph import errors
from opgraph.gradients import gradient
from opgraph.shape_inference import InferenceContext
from opgraph.windows import explicit_paddings, windowed_output_size
from opgraph.wrappers import declare

__all__ = ["MaxPool", "AvgPool", "MaxPoolGrad", "MaxPoolGradGrad", "AvgPoolGrad"]

_DIMS = {"NHWC": (0, 1, 2, 3), "NCHW": (0, 2, 3, 1)}   # positions of N, H, W, C
_SIDES = (("Top", "Bottom"), ("Left", "Right"))


class PoolParams:
    """Validated pooling attrs: data_format, (kh, kw), (sh, sw), padding, explicit pads
    ((top, bottom), (left, right))."""

    __slots__ = ("data_format", "ksize", "strides", "padding", "explicit")

    def __init__(self, data_format, ksize, strides, padding, explicit):
        self.data_format, self.ksize, self.strides = data_format, ksize, strides
        self.padding, self.explicit = padding, explicit

    def split(self, dims):
        """(N, H, W, C) of a 4-tuple of dims in this data format."""
        n, h, w, c = _DIMS[self.data_format]
        return dims[n], dims[h], dims[w], dims[c]

    def join(self, n, h, w, c) -> tuple:
        return (n, h, w, c) if self.data_format == "NHWC" else (n, c, h, w)

    def window(self, axis: int, in_size: int) -> tuple[int, int, int]:
        """(output size, pad before, pad after) along spatial axis 0 (rows) or 1 (cols)."""
        before, after = self.explicit[axis]
        return windowed_output_size(in_size, self.ksize[axis], self.strides[axis], 1,
                                    self.padding, before, after)

    def out_size(self, axis: int, in_size):
        return None if in_size is None else self.window(axis, in_size)[0]


def pool_params(attrs: dict) -> PoolParams:
    """Validate MaxPool/AvgPool attrs as TF's CPU kernel constructors do."""
    fmt = attrs["data_format"]
    ksize, strides = attrs["ksize"], attrs["strides"]
    if len(ksize) != 4:
        msg = (f"Sliding window ksize field must specify 4 dimensions, but got {len(ksize)}: "
               f"{list(ksize)}")
        raise errors.InvalidArgumentError(msg)
    if len(strides) != 4:
        msg = (f"Sliding window stride field must specify 4 dimensions, but got "
               f"{len(strides)}: {list(strides)}")
        raise errors.InvalidArgumentError(msg)
    for i, k in enumerate(ksize):
        if k <= 0:
            msg = (f"Sliding window ksize for dimension {i} must be positive, but got "
                   f"{list(ksize)}")
            raise errors.InvalidArgumentError(msg)
    n, h, w, c = _DIMS[fmt]
    if ksize[n] != 1 or strides[n] != 1:
        msg = (f"Pooling is not yet supported on the batch dimension: ksize and strides must "
               f"be 1 at position {n} for {fmt}, but got ksize {list(ksize)} and strides "
               f"{list(strides)}")
        raise errors.UnimplementedError(msg)
    if ksize[c] != 1 or strides[c] != 1:
        msg = (f"Pooling is not yet supported on the depth dimension: ksize and strides must "
               f"be 1 at position {c} for {fmt}, but got ksize {list(ksize)} and strides "
               f"{list(strides)}")
        raise errors.UnimplementedError(msg)
    if strides[h] < 1 or strides[w] < 1:
        msg = f"Row and column strides should be larger than 0, but got {list(strides)}"
        raise errors.InvalidArgumentError(msg)
    padding = attrs["padding"]
    window = (ksize[h], ksize[w])
    explicit = explicit_paddings(padding, attrs.get("explicit_paddings", ()), fmt)
    if padding == "EXPLICIT":
        for axis in (0, 1):
            for side, pad in zip(_SIDES[axis], explicit[axis]):
                if pad >= window[axis]:
                    msg = (f"{side} padding {pad} needs to be smaller than the window size "
                           f"{window[axis]}")
                    raise errors.InvalidArgumentError(msg)
    return PoolParams(fmt, window, (strides[h], strides[w]), padding, explicit)


def _pool_shape(c: InferenceContext):
    p = pool_params(c.attrs)
    x = c.with_rank(0, 4)
    n, h, w, depth = p.split(x.dims)
    return [c.make_shape(p.join(n, p.out_size(0, h), p.out_size(1, w), depth))]


_POOL_ATTRS = (
    "ksize: list(int) >= 4  # window size per dim of the input, in data_format order",
    "strides: list(int) >= 4  # window stride per dim of the input, in data_format order",
)

MaxPool = declare(
    "MaxPool",
    inputs=["input: T  # 4-D [batch, height, width, channels] (NHWC) or NCHW"],
    outputs=["output: T"],
    attrs=["T: {half, bfloat16, float, double, int32, int64, uint8, int16, int8, uint16} = "
           "float",
           *_POOL_ATTRS,
           "padding: {'SAME', 'VALID', 'EXPLICIT'}",
           "explicit_paddings: list(int) = []  # 8 ints (before/after per dim) iff padding is "
           "EXPLICIT; each must be smaller than the window",
           "data_format: {'NHWC', 'NCHW'} = 'NHWC'"],
    shape_fn=_pool_shape,
    doc="Max over each ksize window of `input` (spatial dims only). Padded positions never "
        "win; as TF's CPU kernel, the result is at least the dtype's lowest finite value.")

def _pool_attrs(op, explicit=True) -> dict:
    """The window attrs of a pooling op, to forward to its backward ops."""
    a = op.attrs
    out = {"data_format": a["data_format"]}
    if explicit:
        out["explicit_paddings"] = a["explicit_paddings"]
    return out


@gradient("MaxPool")
def _max_pool_grad(scope, op, grads):
    """TF's _MaxPoolGrad: MaxPoolGrad routes each gradient to its window's first maximum."""
    import ops  # noqa: PLC0415  (ops modules use each other's wrappers lazily)
    a = op.attrs
    return [ops.MaxPoolGrad(scope, op.inputs[0], op.output(0), grads[0], a["ksize"],
                            a["strides"], a["padding"], **_pool_attrs(op))]


AvgPool = declare(
    "AvgPool",
    inputs=["value: T  # 4-D [batch, height, width, channels] (NHWC) or NCHW"],
    outputs=["output: T"],
    attrs=[*_POOL_ATTRS,
           "padding: {'SAME', 'VALID'}",
           "data_format: {'NHWC', 'NCHW'} = 'NHWC'",
           "T: {half, bfloat16, float, double}"],
    shape_fn=_pool_shape,
    doc="Mean over each ksize window of `value` (spatial dims only). With SAME padding each "
        "mean divides by the number of non-padded elements in its window, as TF does.")


@gradient("AvgPool")
def _avg_pool_grad(scope, op, grads):
    """TF's _AvgPoolGrad: AvgPoolGrad of the upstream gradient for Shape(value)."""
    import ops  # noqa: PLC0415
    a = op.attrs
    return [ops.AvgPoolGrad(scope, ops.Shape(scope, op.inputs[0]), grads[0], a["ksize"],
                            a["strides"], a["padding"], data_format=a["data_format"])]


# ---- backward ops ----------------------------------------------------------------------------

def _check_shape(expected, got, what: str):
    """``expected`` merged with ``got``; TF's kernel message when they are incompatible."""
    if not expected.is_compatible_with(got):
        msg = f"Expected {what} shape to be {expected.compact()}, but got {got.compact()}"
        raise errors.InvalidArgumentError(msg)
    return expected.merge_with(got)


def _pooled(c: InferenceContext, p: PoolParams, x):
    """The (partial) forward output shape of pooling an input of shape ``x``."""
    n, h, w, depth = p.split(x.dims)
    return c.make_shape(p.join(n, p.out_size(0, h), p.out_size(1, w), depth))


def _with_batch_and_depth(c: InferenceContext, p: PoolParams, x, pooled):
    """x with the batch and depth dims that the pooled shape knows."""
    n, h, w, _ = p.split(x.dims)
    pn, _, _, depth = p.split(pooled.dims)
    return c.make_shape(p.join(pn, h, w, depth))


def _max_pool_grad_shape(c: InferenceContext):
    p = pool_params(c.attrs)
    x, y, g = c.with_rank(0, 4), c.with_rank(1, 4), c.with_rank(2, 4)
    pooled = _check_shape(_pooled(c, p, x), y, "orig_output")
    pooled = _check_shape(pooled, g, "grad")
    return [_with_batch_and_depth(c, p, x, pooled)]


def _max_pool_grad_grad_shape(c: InferenceContext):
    p = pool_params(c.attrs)
    x, y, g = c.with_rank(0, 4), c.with_rank(1, 4), c.with_rank(2, 4)
    _check_shape(_pooled(c, p, x), y, "orig_output")
    x = _check_shape(x, g, "grad")
    return [_check_shape(_pooled(c, p, x), y, "orig_output")]


def _avg_pool_grad_shape(c: InferenceContext):
    p = pool_params(c.attrs)
    sizes = c.input(0)
    if sizes.rank is not None and (sizes.rank != 1 or sizes.dims[0] not in (None, 4)):
        msg = (f"orig_input_shape must be 1-dimensional and 4 elements, but has shape "
               f"{sizes.compact()}")
        raise errors.InvalidArgumentError(msg)
    values = c.input_tensor(0)
    if values is not None and np.any(np.asarray(values) < 0):
        msg = f"orig_input_shape must be non-negative, but got {np.asarray(values).tolist()}"
        raise errors.InvalidArgumentError(msg)
    x = c.input_as_shape(0)
    x = c.unknown_shape(4) if x.rank is None else x
    g = c.with_rank(1, 4)
    pooled = _check_shape(_pooled(c, p, x), g, "grad")
    return [_with_batch_and_depth(c, p, x, pooled)]


_FIRST_MAX = ("the first maximal element of its window (row-major window order; NaN only "
              "when it comes first), as TF's CPU kernel")

MaxPoolGrad = declare(
    "MaxPoolGrad",
    inputs=["orig_input: T  # MaxPool's input",
            "orig_output: T  # MaxPool's output; its shape is checked, its values are not "
            "used (TF's CPU kernel recomputes the maxima from orig_input)",
            "grad: T  # gradient w.r.t. MaxPool's output"],
    outputs=["output: T  # gradient w.r.t. orig_input"],
    attrs=[*_POOL_ATTRS,
           "padding: {'SAME', 'VALID', 'EXPLICIT'}",
           "explicit_paddings: list(int) = []  # 8 ints iff padding is EXPLICIT",
           "data_format: {'NHWC', 'NCHW'} = 'NHWC'",
           "T: realnumbertype = float"],
    shape_fn=_max_pool_grad_shape,
    doc="Gradient of MaxPool: each grad element is added to the position of " + _FIRST_MAX
        + "; every other position gets 0.")


@gradient("MaxPoolGrad")
def _max_pool_grad_grad(scope, op, grads):
    """TF's _MaxPoolGradGrad: zeros for orig_input and orig_output, MaxPoolGradGrad for grad.
    MaxPoolGradGrad has no EXPLICIT padding, so then the windows are made VALID ones by
    padding orig_input with the lowest value (which never wins a window that has a larger
    element) and the upstream gradient with zeros."""
    import ops  # noqa: PLC0415
    a = op.attrs
    orig_input, orig_output = op.inputs[0], op.inputs[1]
    upstream, padding = grads[0], a["padding"]
    if padding == "EXPLICIT":
        npd = orig_input.dtype.as_numpy_dtype
        pads = ops.Const(scope, np.array(a["explicit_paddings"], np.int32).reshape(4, 2))
        lowest = ops.Const(scope, np.array(_lowest_value(npd), npd))
        orig_input = ops.PadV2(scope, orig_input, pads, lowest)
        upstream = ops.Pad(scope, upstream, pads)
        padding = "VALID"
    return [ops.ZerosLike(scope, op.inputs[0]), ops.ZerosLike(scope, op.inputs[1]),
            ops.MaxPoolGradGrad(scope, orig_input, orig_output, upstream, a["ksize"],
                                a["strides"], padding, data_format=a["data_format"])]


def _lowest_value(npd):
    try:
        return np.finfo(npd).min
    except (TypeError, ValueError):     # bfloat16 (ml_dtypes) is not known to np.finfo
        import ml_dtypes  # noqa: PLC0415
        return ml_dtypes.finfo(npd).min


MaxPoolGradGrad = declare(
    "MaxPoolGradGrad",
    inputs=["orig_input: T  # MaxPool's input",
            "orig_output: T  # MaxPool's output",
            "grad: T  # gradient w.r.t. MaxPoolGrad's output (shape of orig_input)"],
    outputs=["output: T  # gradient w.r.t. MaxPoolGrad's grad (shape of orig_output)"],
    attrs=[*_POOL_ATTRS,
           "padding: {'SAME', 'VALID'}",
           "data_format: {'NHWC', 'NCHW'} = 'NHWC'",
           "T: realnumbertype"],
    shape_fn=_max_pool_grad_grad_shape,
    doc="Gradient of MaxPoolGrad w.r.t. its grad input: each output element is grad at the "
        "first element of its window (row-major) equal to orig_output, or 0 when none is, "
        "as TF's CPU kernel.")


@gradient("MaxPoolGradGrad")
def _max_pool_grad_grad_grad(scope, op, grads):
    """TF's _MaxPoolGradGradGrad: zeros for orig_input and orig_output, MaxPoolGrad for grad."""
    import ops  # noqa: PLC0415
    a = op.attrs
    orig_input, orig_output = op.inputs[0], op.inputs[1]
    return [ops.ZerosLike(scope, orig_input), ops.ZerosLike(scope, orig_output),
            ops.MaxPoolGrad(scope, orig_input, orig_output, grads[0], a["ksize"], a["strides"],
                            a["padding"], data_format=a["data_format"])]


AvgPoolGrad = declare(
    "AvgPoolGrad",
    inputs=["orig_input_shape: int32  # [4]: the shape of AvgPool's input",
            "grad: T  # gradient w.r.t. AvgPool's output"],
    outputs=["output: T  # gradient w.r.t. AvgPool's input, shaped orig_input_shape"],
    attrs=[*_POOL_ATTRS,
           "padding: {'SAME', 'VALID'}",
           "data_format: {'NHWC', 'NCHW'} = 'NHWC'",
           "T: {half, bfloat16, float, double}"],
    shape_fn=_avg_pool_grad_shape,
    doc="Gradient of AvgPool: each grad element, divided by the number of non-padded "
        "elements of its window (as AvgPool averages), is added to every element of that "
        "window. When orig_input_shape is known at build time it gives the static shape.")


@gradient("AvgPoolGrad")
def _avg_pool_grad_grad(scope, op, grads):
    """TF's _AvgPoolGradGrad: AvgPool of the upstream gradient (linear in grad)."""
    import ops  # noqa: PLC0415
    a = op.attrs
    return [None, ops.AvgPool(scope, grads[0], a["ksize"], a["strides"], a["padding"],
                              data_format=a["data_format"])]
