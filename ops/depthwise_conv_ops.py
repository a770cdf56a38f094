"""Depthwise 2-D convolution: DepthwiseConv2dNative, its backward ops
(DepthwiseConv2dNativeBackpropInput, DepthwiseConv2dNativeBackpropFilter) and their gradients.

Each input channel c is convolved with its own ``channel_multiplier`` filters; output channel
``c * channel_multiplier + k`` is input channel c under filter ``[:, :, c, k]``. The attrs are
validated as for Conv2D (``opgraph.windows.conv_params``) plus TF's depthwise-kernel rule that
the row and column strides are equal. Dilations are honoured (TF's own CPU kernel ignores
them even though its shape function uses them).
"""

from __future__ import annotations

import numpy as np

from opgraph import errors
from opgraph.gradients import gradient
from opgraph.shape_inference import InferenceContext
from opgraph.windows import ConvParams, conv_params
from opgraph.wrappers import declare

__all__ = ["DepthwiseConv2dNative", "DepthwiseConv2dNativeBackpropInput",
           "DepthwiseConv2dNativeBackpropFilter"]


def _depthwise_params(c: InferenceContext) -> ConvParams:
    """Conv2D's attr checks plus the depthwise kernels' equal row and column strides."""
    p = conv_params(c.attrs)
    if p.strides[0] != p.strides[1]:
        msg = (f"Current implementation only supports equal length strides in the row and "
               f"column dimensions, but got strides {list(c.attr('strides'))}")
        raise errors.InvalidArgumentError(msg)
    return p


def _depthwise_shape(c: InferenceContext):
    p = _depthwise_params(c)
    x = c.with_rank(0, 4)
    f = c.with_rank(1, 4)
    n, h, w, depth = p.split(x)
    kh, kw, f_depth, multiplier = f.dims
    if depth is not None and f_depth is not None and depth != f_depth:
        msg = (f"input and filter must have the same depth: {depth} vs {f_depth} (filter dim 2 "
               f"is the input depth)")
        raise errors.InvalidArgumentError(msg)
    depth = depth if depth is not None else f_depth
    out_depth = None if depth is None or multiplier is None else depth * multiplier
    return [p.join(n, p.out_size(0, h, kh), p.out_size(1, w, kw), out_depth)]


DepthwiseConv2dNative = declare(
    "DepthwiseConv2dNative",
    inputs=["input: T  # [batch, height, width, in_channels] (NHWC) or NCHW",
            "filter: T  # [filter_height, filter_width, in_channels, channel_multiplier]"],
    outputs=["output: T  # in_channels * channel_multiplier channels"],
    attrs=["T: {half, bfloat16, float, double}",
           "strides: list(int)  # 4 ints in data_format order; batch and depth strides must "
           "be 1, row and column strides equal",
           "padding: {'SAME', 'VALID', 'EXPLICIT'}",
           "explicit_paddings: list(int) = []  # 8 ints (before/after per dim) iff padding is "
           "EXPLICIT",
           "data_format: {'NHWC', 'NCHW'} = 'NHWC'",
           "dilations: list(int) = [1, 1, 1, 1]  # 4 ints in data_format order"],
    shape_fn=_depthwise_shape,
    doc="Depthwise 2-D convolution: every input channel is convolved with its own "
        "channel_multiplier filters and the results are concatenated, so output channel "
        "c * channel_multiplier + k comes from input channel c and filter[:, :, c, k].")


def _conv_attrs(op) -> dict:
    """The optional attrs of a depthwise op, forwarded to the ops of its gradient."""
    a = op.attrs
    return {"explicit_paddings": a["explicit_paddings"], "data_format": a["data_format"],
            "dilations": a["dilations"]}


@gradient("DepthwiseConv2dNative")
def _depthwise_conv2d_native_grad(scope, op, grads):
    """TF's _DepthwiseConv2dNativeGrad: both backprops, with every attr of the forward op."""
    import ops  # noqa: PLC0415  (ops modules use each other's wrappers lazily)
    x, f = op.inputs
    a = op.attrs
    return [ops.DepthwiseConv2dNativeBackpropInput(scope, ops.Shape(scope, x), f, grads[0],
                                                   a["strides"], a["padding"],
                                                   **_conv_attrs(op)),
            ops.DepthwiseConv2dNativeBackpropFilter(scope, x, ops.Shape(scope, f), grads[0],
                                                    a["strides"], a["padding"],
                                                    **_conv_attrs(op))]


# ---- backward ops ----------------------------------------------------------------------------

def _sizes_shape(c: InferenceContext, i: int, label: str, what: str, tensor: str):
    """Input i, a shape vector of 4 non-negative dims (TF's kernel checks), as a partial
    rank-4 shape."""
    vec = c.input(i)
    if vec.rank is not None and vec.rank != 1:
        msg = f"{label}: {what} input must be 1-dim, not {vec.rank}"
        raise errors.InvalidArgumentError(msg)
    if vec.rank == 1 and vec.dims[0] is not None and vec.dims[0] != 4:
        msg = f"{label}: {tensor} must be 4-dimensional, but {what} has {vec.dims[0]} values"
        raise errors.InvalidArgumentError(msg)
    values = c.input_tensor(i)
    if values is not None:
        for k, v in enumerate(np.ravel(values).tolist()):
            if v < 0:
                msg = f"{label}: dimension {k} of {what} must be >= 0, but is {v}"
                raise errors.InvalidArgumentError(msg)
    shape = c.input_as_shape(i)
    return c.unknown_shape(4) if shape.rank is None else shape


def _check_backprop(c: InferenceContext, p: ConvParams, x, f, dy, label: str):
    """TF's depthwise backprop checks on the (partial) input, filter and out_backprop
    shapes; returns (input shape, filter shape) refined with what the others know."""
    n, h, w, depth = p.split(x)
    kh, kw, f_depth, multiplier = f.dims
    dn, dh, dw, d_depth = p.split(dy)
    if n is not None and dn is not None and n != dn:
        msg = (f"{label}: input and out_backprop must have the same batch size, but input "
               f"batch is {n} and out_backprop batch is {dn}")
        raise errors.InvalidArgumentError(msg)
    if depth is not None and f_depth is not None and depth != f_depth:
        msg = (f"{label}: input and filter must have the same in_depth, but input depth is "
               f"{depth} and filter in_depth (dim 2) is {f_depth}")
        raise errors.InvalidArgumentError(msg)
    depth = depth if depth is not None else f_depth
    if d_depth is not None and (depth, multiplier).count(None) == 1:
        known = depth if depth is not None else multiplier
        if known and d_depth % known == 0:      # the other factor follows from out_depth
            depth, multiplier = (depth, d_depth // known) if depth is not None else \
                (d_depth // known, multiplier)
        elif known or d_depth:
            msg = (f"{label}: depth_multiplier * in_depth not equal to out_depth: out_depth "
                   f"{d_depth} is not a multiple of "
                   f"{'in_depth' if depth is not None else 'depth_multiplier'} {known}")
            raise errors.InvalidArgumentError(msg)
    if None not in (depth, multiplier, d_depth) and depth * multiplier != d_depth:
        msg = (f"{label}: depth_multiplier * in_depth not equal to out_depth: {multiplier} * "
               f"{depth} != {d_depth}")
        raise errors.InvalidArgumentError(msg)
    for axis, (size, k, out) in enumerate(((h, kh, dh), (w, kw, dw))):
        computed = p.out_size(axis, size, k)
        if computed is not None and out is not None and computed != out:
            what = ("rows", "cols")[axis]
            msg = (f"{label}: Number of {what} of out_backprop doesn't match computed: actual "
                   f"= {out}, computed = {computed}")
            raise errors.InvalidArgumentError(msg)
    n = n if n is not None else dn
    return p.join(n, h, w, depth), c.make_shape((kh, kw, depth, multiplier))


def _backprop_input_shape(c: InferenceContext):
    label = "DepthwiseConv2DBackpropInput"
    p = _depthwise_params(c)
    x = _sizes_shape(c, 0, label, "input_sizes", "input")
    f, dy = c.with_rank(1, 4), c.with_rank(2, 4)
    return [_check_backprop(c, p, x, f, dy, label)[0]]


def _backprop_filter_shape(c: InferenceContext):
    label = "DepthwiseConv2DBackpropFilter"
    p = _depthwise_params(c)
    x = c.with_rank(0, 4)
    f = _sizes_shape(c, 1, label, "filter_sizes", "filter")
    dy = c.with_rank(2, 4)
    return [_check_backprop(c, p, x, f, dy, label)[1]]


_BACKPROP_ATTRS = ("T: {half, bfloat16, float, double}",
                   "strides: list(int)  # DepthwiseConv2dNative's strides",
                   "padding: {'SAME', 'VALID', 'EXPLICIT'}",
                   "explicit_paddings: list(int) = []",
                   "data_format: {'NHWC', 'NCHW'} = 'NHWC'",
                   "dilations: list(int) = [1, 1, 1, 1]")
_FILTER = "filter: T  # [filter_height, filter_width, in_channels, channel_multiplier]"
_OUT_BACKPROP = ("out_backprop: T  # gradient w.r.t. DepthwiseConv2dNative's output "
                 "(in_channels * channel_multiplier channels)")

DepthwiseConv2dNativeBackpropInput = declare(
    "DepthwiseConv2dNativeBackpropInput",
    inputs=["input_sizes: int32  # [4]: the shape of DepthwiseConv2dNative's input",
            _FILTER, _OUT_BACKPROP],
    outputs=["output: T  # gradient w.r.t. the input, shaped input_sizes"],
    attrs=_BACKPROP_ATTRS,
    shape_fn=_backprop_input_shape,
    doc="Gradient of DepthwiseConv2dNative with respect to its input (the adjoint of the "
        "forward op, dilations included). When input_sizes is known at build time it gives "
        "the static shape; the attrs and out_backprop's size are checked as for the forward "
        "op.")


@gradient("DepthwiseConv2dNativeBackpropInput")
def _depthwise_backprop_input_grad(scope, op, grads):
    """TF's gradient: bilinear in (filter, out_backprop)."""
    import ops  # noqa: PLC0415
    _, f, dy = op.inputs
    a = op.attrs
    return [None,
            ops.DepthwiseConv2dNativeBackpropFilter(scope, grads[0], ops.Shape(scope, f), dy,
                                                    a["strides"], a["padding"],
                                                    **_conv_attrs(op)),
            ops.DepthwiseConv2dNative(scope, grads[0], f, a["strides"], a["padding"],
                                      **_conv_attrs(op))]


DepthwiseConv2dNativeBackpropFilter = declare(
    "DepthwiseConv2dNativeBackpropFilter",
    inputs=["input: T  # DepthwiseConv2dNative's input",
            "filter_sizes: int32  # [4]: the shape of the filter",
            _OUT_BACKPROP],
    outputs=["output: T  # gradient w.r.t. the filter, shaped filter_sizes"],
    attrs=_BACKPROP_ATTRS,
    shape_fn=_backprop_filter_shape,
    doc="Gradient of DepthwiseConv2dNative with respect to its filter: "
        "output[di, dj, c, q] = sum over batch and output pixels of the input value tap "
        "(di, dj) reads times out_backprop[..., c * channel_multiplier + q].")


@gradient("DepthwiseConv2dNativeBackpropFilter")
def _depthwise_backprop_filter_grad(scope, op, grads):
    """TF's gradient: bilinear in (input, out_backprop)."""
    import ops  # noqa: PLC0415
    x, _, dy = op.inputs
    a = op.attrs
    return [ops.DepthwiseConv2dNativeBackpropInput(scope, ops.Shape(scope, x), grads[0], dy,
                                                   a["strides"], a["padding"],
                                                   **_conv_attrs(op)),
            None,
            ops.DepthwiseConv2dNative(scope, x, grads[0], a["strides"], a["padding"],
                                      **_conv_attrs(op))]
