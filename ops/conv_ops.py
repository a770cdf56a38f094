"""Convolution ops: Conv2D, its input gradients (Conv2DBackpropInput V1 and V2), its filter
gradients (Conv2DBackpropFilter V1 and V2) and the gradients of all five.

Every rule TF's kernels enforce is checked here, at build time, whenever the dims it needs
are known (TF's own shape functions for the V2 ops check none of them); the same shape
functions run again on the actual shapes at run time for whatever was unknown. Filters are
always HWIO ``[filter_height, filter_width, in_depth / groups, out_depth]``; ``strides``,
``dilations`` and the pairs of ``explicit_paddings`` are read in ``data_format`` order.

Gradients follow TF's formulas (cc/gradients/nn_grad.cc, python/ops/nn_grad.py): the five ops
are bilinear, so each gradient is one of the others with the same attrs. Unlike TF's C++
Conv2D gradient, EVERY attr is forwarded (dilations and explicit_paddings included), and the V2
forms are used where the shape-giving tensor is at hand (no Shape nodes).
"""

from __future__ import annotations

import numpy as np

from opgraph import errors
from opgraph.gradients import gradient
from opgraph.shape_inference import InferenceContext
from opgraph.shapes import TensorShape
from opgraph.windows import ConvParams, conv_params, effective_filter_size
from opgraph.wrappers import declare

__all__ = ["Conv2D", "Conv2DBackpropInput", "Conv2DBackpropInputV2", "Conv2DBackpropFilter",
           "Conv2DBackpropFilterV2"]

CONV_ATTRS = (
    "T: {half, bfloat16, float, double, int32}",
    "strides: list(int)  # 4 ints in data_format order; batch and depth strides must be 1",
    "use_cudnn_on_gpu: bool = true  # accepted for compatibility; no effect",
    "padding: {'SAME', 'VALID', 'EXPLICIT'}",
    "explicit_paddings: list(int) = []  # 8 ints (before/after per dim) iff padding is "
    "EXPLICIT",
    "data_format: {'NHWC', 'NCHW'} = 'NHWC'  # layout of input, output and out_backprop",
    "dilations: list(int) = [1, 1, 1, 1]  # 4 ints in data_format order",
)
#: The filter gradients' attrs: Conv2D's, with TF's floating-point types only.
FILTER_GRAD_ATTRS = ("T: {half, bfloat16, float, double}",) + CONV_ATTRS[1:]


def _groups(in_depth, filter_in_depth):
    """Number of groups, checking divisibility; None when unknown."""
    if filter_in_depth is not None and filter_in_depth <= 0:
        msg = (f"filter in_depth (dim 2) must be strictly greater than zero, but is "
               f"{filter_in_depth}")
        raise errors.InvalidArgumentError(msg)
    if in_depth is None or filter_in_depth is None:
        return None
    if in_depth % filter_in_depth:
        msg = (f"input depth must be evenly divisible by filter in_depth (grouped convolution)"
               f": input depth {in_depth}, filter in_depth {filter_in_depth}")
        raise errors.InvalidArgumentError(msg)
    return in_depth // filter_in_depth


def _check_out_depth(out_depth, groups):
    if out_depth is not None and groups and out_depth % groups:
        msg = (f"filter out_depth must be divisible by the number of groups: out_depth "
               f"{out_depth}, groups {groups}")
        raise errors.InvalidArgumentError(msg)


_FILTER_DIMS = ("filter_height", "filter_width", "in_depth", "out_depth")


def check_conv2d_filter_not_empty(dims):
    """TF's Conv2D kernel: ``filter must not have zero elements``. A filter height or width of
    0 would otherwise give an output larger than the input (effective size (0 - 1) * d + 1);
    an out_depth of 0 is refused as well. ``dims``: the filter's dims, None where unknown."""
    for i, d in enumerate(dims):
        if d == 0:
            msg = (f"filter must not have zero elements (i.e. all dimensions must be non-zero),"
                   f" but filter dim {i} ({_FILTER_DIMS[i]}) is 0")
            raise errors.InvalidArgumentError(msg)


def _conv2d_shape(c: InferenceContext):
    p = conv_params(c.attrs)
    x = c.with_rank(0, 4)
    f = c.with_rank(1, 4)
    n, h, w, depth = p.split(x)
    kh, kw, f_in, f_out = f.dims
    _check_out_depth(f_out, _groups(depth, f_in))
    check_conv2d_filter_not_empty(f.dims)
    return [p.join(n, p.out_size(0, h, kh), p.out_size(1, w, kw), f_out)]


def _check_backprop_input(c: InferenceContext, p: ConvParams, x: TensorShape,
                          f: TensorShape, dy: TensorShape) -> TensorShape:
    """The rules shared by both backprop-input ops; returns the (refined) input shape."""
    n, h, w, depth = p.split(x)
    kh, kw, f_in, f_out = f.dims
    dn, dh, dw, d_depth = p.split(dy)
    if n is not None and dn is not None and n != dn:
        msg = (f"input and out_backprop must have the same batch size, but input batch is {n} "
               f"and out_backprop batch is {dn}")
        raise errors.InvalidArgumentError(msg)
    n = n if n is not None else dn
    groups = _groups(depth, f_in)
    if f_out is not None and d_depth is not None and f_out != d_depth:
        msg = (f"filter and out_backprop must have the same out_depth, but filter out_depth "
               f"(dim 3) is {f_out} and out_backprop depth is {d_depth}")
        raise errors.InvalidArgumentError(msg)
    _check_out_depth(f_out if f_out is not None else d_depth, groups)
    spatial = []
    for axis, (size, k, out) in enumerate(((h, kh, dh), (w, kw, dw))):
        if size is None and out is not None and p.strides[axis] == 1 and \
                (k is not None or p.padding == "SAME"):
            # Stride 1 makes the input size recoverable from the output size.
            if p.padding == "SAME":
                size = out
            else:
                eff = effective_filter_size(k, p.dilations[axis])
                size = out + eff - 1 - sum(p.explicit[axis])
                size = size if size >= 0 else None
        computed = p.out_size(axis, size, k)
        if computed is not None and out is not None and computed != out:
            name = ("height", "width")[axis]
            msg = (f"Size of out_backprop doesn't match computed: actual = {out}, computed = "
                   f"{computed} for {name} (input {size}, filter {k}, stride "
                   f"{p.strides[axis]}, dilation {p.dilations[axis]}, padding {p.padding})")
            raise errors.InvalidArgumentError(msg)
        spatial.append(size)
    return p.join(n, spatial[0], spatial[1], depth)


def _conv2d_backprop_input_v2_shape(c: InferenceContext):
    p = conv_params(c.attrs)
    x, f, dy = c.with_rank(0, 4), c.with_rank(1, 4), c.with_rank(2, 4)
    return [_check_backprop_input(c, p, x, f, dy)]


def _conv2d_backprop_input_shape(c: InferenceContext):
    p = conv_params(c.attrs)
    sizes_shape = c.input(0)
    if sizes_shape.rank not in (None, 1):
        msg = f"input_sizes must be 1-D, but has shape {sizes_shape}"
        raise errors.InvalidArgumentError(msg)
    f, dy = c.with_rank(1, 4), c.with_rank(2, 4)
    count = sizes_shape.dims[0] if sizes_shape.rank == 1 else None
    if count is not None and count not in (2, 4):
        msg = (f"Conv2DBackpropInput requires input_sizes to contain 4 values or 2 values, but "
               f"got: {count}")
        raise errors.InvalidArgumentError(msg)
    sizes = c.input_tensor(0)
    if sizes is not None and any(int(v) < 0 for v in np.ravel(sizes)):
        msg = f"All elements of input_sizes must be >= 0, but got {np.ravel(sizes).tolist()}"
        raise errors.InvalidArgumentError(msg)
    x = c.input_as_shape(0)         # partial when it is Shape() of a partially known tensor
    if x.rank is not None and x.rank not in (2, 4):
        msg = (f"Conv2DBackpropInput requires input_sizes to contain 4 values or 2 values, but "
               f"got: {x.rank}")
        raise errors.InvalidArgumentError(msg)
    if x.rank is None:
        x = c.unknown_shape(4)
    elif x.rank == 2:   # [H, W]: batch from out_backprop, depth from the filter
        x = p.join(p.split(dy)[0], x.dims[0], x.dims[1], f.dims[2])
    return [_check_backprop_input(c, p, x, f, dy)]


_FILTER = "filter: T  # [filter_height, filter_width, in_depth / groups, out_depth]"
_OUT_BACKPROP = "out_backprop: T  # gradient w.r.t. Conv2D's output"

Conv2D = declare(
    "Conv2D",
    inputs=["input: T  # [batch, height, width, in_depth] (NHWC) or NCHW",
            _FILTER],
    outputs=["output: T"],
    attrs=CONV_ATTRS,
    shape_fn=_conv2d_shape,
    doc="2-D convolution (cross-correlation) of `input` with `filter`. An input depth that is "
        "a multiple of the filter's in_depth is a grouped convolution.")


def _forwarded_attrs(op) -> dict:
    """The optional attrs of a conv op, forwarded to every op of its gradient."""
    a = op.attrs
    return {"use_cudnn_on_gpu": a["use_cudnn_on_gpu"],
            "explicit_paddings": list(a["explicit_paddings"]),
            "data_format": a["data_format"], "dilations": list(a["dilations"])}


def _conv(scope, name, op, *inputs):
    """ops.<name>(scope, *inputs) with every attr of the conv op ``op``."""
    import ops  # noqa: PLC0415  (ops modules use each other's wrappers lazily)
    a = op.attrs
    return getattr(ops, name)(scope, *inputs, list(a["strides"]), a["padding"],
                              **_forwarded_attrs(op))


@gradient("Conv2D")
def _conv2d_grad(scope, op, grads):
    """TF's _Conv2DGrad: dx = Conv2DBackpropInput(Shape(x), w, g), dw =
    Conv2DBackpropFilter(x, Shape(w), g); here their V2 forms, which read the shapes of x and
    w themselves."""
    x, w = op.inputs
    return [_conv(scope, "Conv2DBackpropInputV2", op, x, w, grads[0]),
            _conv(scope, "Conv2DBackpropFilterV2", op, x, w, grads[0])]

Conv2DBackpropInput = declare(
    "Conv2DBackpropInput",
    inputs=["input_sizes: int32  # shape of Conv2D's input: 4 values, or 2 values [H, W]",
            _FILTER, _OUT_BACKPROP],
    outputs=["output: T  # gradient w.r.t. Conv2D's input, shaped by input_sizes"],
    attrs=CONV_ATTRS,
    shape_fn=_conv2d_backprop_input_shape,
    doc="Gradient of Conv2D with respect to its input, whose shape is given as a tensor. "
        "When input_sizes is a build-time constant its value gives the static output shape.")


@gradient("Conv2DBackpropInput")
def _conv2d_backprop_input_grad(scope, op, grads):
    """TF's _Conv2DBackpropInputGrad: none for input_sizes; filter: the filter gradient of
    (g, out_backprop); out_backprop: Conv2D(g, filter)."""
    _, w, dy = op.inputs
    return [None, _conv(scope, "Conv2DBackpropFilterV2", op, grads[0], w, dy),
            _conv(scope, "Conv2D", op, grads[0], w)]

Conv2DBackpropInputV2 = declare(
    "Conv2DBackpropInputV2",
    inputs=["input: T  # Conv2D's input; only its shape is used",
            _FILTER, _OUT_BACKPROP],
    outputs=["output: T  # gradient w.r.t. Conv2D's input (shape of `input`)"],
    attrs=CONV_ATTRS,
    shape_fn=_conv2d_backprop_input_v2_shape,
    doc="Gradient of Conv2D with respect to its input (the transposed convolution). Every "
        "kernel-time rule is checked at build time where the dims are known: ranks, "
        "strides/dilations/paddings, depth divisibility, batch and out_depth agreement, and "
        "out_backprop's spatial size against Conv2D's output size for `input`.")


@gradient("Conv2DBackpropInputV2")
def _conv2d_backprop_input_v2_grad(scope, op, grads):
    """V1's formulas; ``input`` gets none (only its shape is used)."""
    _, w, dy = op.inputs
    return [None, _conv(scope, "Conv2DBackpropFilterV2", op, grads[0], w, dy),
            _conv(scope, "Conv2D", op, grads[0], w)]


def _check_backprop_filter(c: InferenceContext, p: ConvParams, x: TensorShape,
                           f: TensorShape, dy: TensorShape) -> TensorShape:
    """The rules of the input gradient (batch, depths, groups, out_backprop's spatial size
    against Conv2D's output size); returns the (refined) filter shape."""
    _check_backprop_input(c, p, x, f, dy)
    kh, kw, f_in, f_out = f.dims
    return c.make_shape((kh, kw, f_in, f_out if f_out is not None else p.split(dy)[3]))


def _conv2d_backprop_filter_v2_shape(c: InferenceContext):
    p = conv_params(c.attrs)
    x, f, dy = c.with_rank(0, 4), c.with_rank(1, 4), c.with_rank(2, 4)
    return [_check_backprop_filter(c, p, x, f, dy)]


def _conv2d_backprop_filter_shape(c: InferenceContext):
    p = conv_params(c.attrs)
    x, dy = c.with_rank(0, 4), c.with_rank(2, 4)
    sizes_shape = c.input(1)
    if sizes_shape.rank not in (None, 1):
        msg = f"filter_sizes must be 1-D, but has shape {sizes_shape.compact()}"
        raise errors.InvalidArgumentError(msg)
    count = sizes_shape.dims[0] if sizes_shape.rank == 1 else None
    if count is not None and count != 4:
        msg = (f"Conv2DBackpropFilter requires filter_sizes to contain 4 values, but got: "
               f"{count}")
        raise errors.InvalidArgumentError(msg)
    sizes = c.input_tensor(1)
    if sizes is not None and any(int(v) < 0 for v in np.ravel(sizes)):
        msg = f"All elements of filter_sizes must be >= 0, but got {np.ravel(sizes).tolist()}"
        raise errors.InvalidArgumentError(msg)
    f = c.input_as_shape(1)         # partial when it is Shape() of a partially known tensor
    if f.rank is None:
        f = c.unknown_shape(4)
    elif f.rank != 4:
        msg = (f"Conv2DBackpropFilter requires filter_sizes to contain 4 values, but got: "
               f"{f.rank}")
        raise errors.InvalidArgumentError(msg)
    return [_check_backprop_filter(c, p, x, f, dy)]


_INPUT = "input: T  # Conv2D's input: [batch, height, width, in_depth] (NHWC) or NCHW"

Conv2DBackpropFilter = declare(
    "Conv2DBackpropFilter",
    inputs=[_INPUT,
            "filter_sizes: int32  # shape of Conv2D's filter: 4 values [kh, kw, in_depth / "
            "groups, out_depth]",
            _OUT_BACKPROP],
    outputs=["output: T  # gradient w.r.t. Conv2D's filter, shaped by filter_sizes (HWIO)"],
    attrs=FILTER_GRAD_ATTRS,
    shape_fn=_conv2d_backprop_filter_shape,
    doc="Gradient of Conv2D with respect to its filter, whose shape is given as a tensor: "
        "output[di, dj, c, o] = sum over the batch and the output pixels of the input value "
        "that tap (di, dj) reads for channel c of o's group, times out_backprop[..., o]. When "
        "filter_sizes is a build-time constant its value gives the static output shape.")


@gradient("Conv2DBackpropFilter")
def _conv2d_backprop_filter_grad(scope, op, grads):
    """TF's _Conv2DBackpropFilterGrad: input: the input gradient of (g, out_backprop); none
    for filter_sizes; out_backprop: Conv2D(input, g)."""
    x, _, dy = op.inputs
    return [_conv(scope, "Conv2DBackpropInputV2", op, x, grads[0], dy), None,
            _conv(scope, "Conv2D", op, x, grads[0])]


Conv2DBackpropFilterV2 = declare(
    "Conv2DBackpropFilterV2",
    inputs=[_INPUT,
            "filter: T  # Conv2D's filter; only its shape is used",
            _OUT_BACKPROP],
    outputs=["output: T  # gradient w.r.t. Conv2D's filter (shape of `filter`)"],
    attrs=FILTER_GRAD_ATTRS,
    shape_fn=_conv2d_backprop_filter_v2_shape,
    doc="Gradient of Conv2D with respect to its filter, shaped like `filter` (whose values are "
        "not read). The rules of Conv2DBackpropInputV2 are checked at build time where the "
        "dims are known: ranks, strides/dilations/paddings, depth divisibility, batch and "
        "out_depth agreement, and out_backprop's spatial size against Conv2D's output size.")


@gradient("Conv2DBackpropFilterV2")
def _conv2d_backprop_filter_v2_grad(scope, op, grads):
    """V1's formulas; ``filter`` gets none (only its shape is used)."""
    x, _, dy = op.inputs
    return [_conv(scope, "Conv2DBackpropInputV2", op, x, grads[0], dy), None,
            _conv(scope, "Conv2D", op, x, grads[0])]
