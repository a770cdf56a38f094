"""Neural-net ops (TF's nn_ops.cc): BiasAdd, BiasAddV1, L2Loss, LRN,
SoftmaxCrossEntropyWithLogits and SparseSoftmaxCrossEntropyWithLogits, the backward ops
BiasAddGrad and LRNGrad, and the gradients of all of them (TF's nn_grad.py).

Every rule the TF CPU kernels enforce is checked by the shape functions whenever the dims
(or, for sparse labels, the values) it needs are known at build time; the executor runs the
same functions again on the actual inputs for whatever was unknown.
"""

from __future__ import annotations

import numpy as np

from opgraph import errors
from opgraph.common_shapes import scalar_shape
from opgraph.gradients import gradient
from opgraph.shapes import TensorShape
from opgraph.wrappers import declare

_INT_MAX = 2**31 - 1
_FLOAT_TYPES = "T: {half, bfloat16, float, double}"


# ---------------------------------------------------------------------------- BiasAdd
def _bias_add_shape_for(c, data_format: str):
    nchw = data_format == "NCHW"
    value = c.with_rank_at_least(0, 3 if nchw else 2)
    bias = c.with_rank(1, 1)
    if value.dims is None:
        return [c.unknown_shape()]
    axis = 1 if nchw else len(value.dims) - 1
    channels, size = value.dims[axis], bias.dims[0]
    if channels is not None and size is not None and channels != size:
        msg = (f"Must provide as many biases as the channel dimension of value: bias has "
               f"{size} elements but value's channel dim {axis} ({data_format}) is {channels}")
        raise errors.InvalidArgumentError(msg)
    return [c.replace_dim(value, axis, channels if channels is not None else size)]


def _bias_add_shape(c):
    return _bias_add_shape_for(c, c.attr("data_format"))


def _bias_add_v1_shape(c):
    return _bias_add_shape_for(c, "NHWC")


BiasAdd = declare(
    "BiasAdd",
    inputs=["value: T  # rank >= 2 (NHWC) or >= 3 (NCHW)",
            "bias: T  # 1-D, as long as value's channel dim"],
    outputs=["output: T  # value's shape"],
    attrs=["T: numbertype",
           "data_format: {'NHWC', 'NCHW'} = 'NHWC'  # channel dim: last (NHWC) or 1 (NCHW)"],
    shape_fn=_bias_add_shape,
    doc="value + bias, with the 1-D bias broadcast along value's channel dim (the last dim "
        "for NHWC, dim 1 for NCHW).")


@gradient("BiasAdd")
def _bias_add_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    return [grads[0], ops.BiasAddGrad(scope, grads[0], data_format=op.attrs["data_format"])]

BiasAddV1 = declare(
    "BiasAddV1",
    inputs=["value: T  # rank >= 2", "bias: T  # 1-D, as long as value's last dim"],
    outputs=["output: T  # value's shape"],
    attrs=["T: numbertype"],
    shape_fn=_bias_add_v1_shape,
    doc="Deprecated form of BiasAdd without data_format: value + bias along the last dim.")


@gradient("BiasAddV1")
def _bias_add_v1_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    return [grads[0], ops.BiasAddGrad(scope, grads[0])]


def _bias_add_grad_shape(c):
    """TF's BiasAddGradShape: a vector as long as out_backprop's channel dim."""
    nchw = c.attr("data_format") == "NCHW"
    out_backprop = c.with_rank_at_least(0, 3 if nchw else 2)
    if out_backprop.dims is None:
        return [c.vector(None)]
    return [c.vector(out_backprop.dims[1 if nchw else -1])]


BiasAddGrad = declare(
    "BiasAddGrad",
    inputs=["out_backprop: T  # rank >= 2 (NHWC) or >= 3 (NCHW): the gradient of BiasAdd's "
            "output"],
    outputs=["output: T  # 1-D, as long as out_backprop's channel dim"],
    attrs=["T: numbertype",
           "data_format: {'NHWC', 'NCHW'} = 'NHWC'  # channel dim: last (NHWC) or 1 (NCHW)"],
    shape_fn=_bias_add_grad_shape,
    doc="BiasAdd's gradient w.r.t. bias: out_backprop summed over every dim but the channel "
        "dim (the last for NHWC, dim 1 for NCHW). half and bfloat16 accumulate in float32; "
        "integers wrap around.")


@gradient("BiasAddGrad")
def _bias_add_grad_grad(scope, op, grads):
    # The upstream [C] gradient broadcast back along out_backprop's channel dim, i.e.
    # BiasAdd(zeros, grad): TF's reshape-and-tile, differentiable again (to BiasAddGrad).
    import ops  # noqa: PLC0415
    out_backprop = op.inputs[0]
    return [ops.BiasAdd(scope, ops.ZerosLike(scope, out_backprop), grads[0],
                        data_format=op.attrs["data_format"])]


# ---------------------------------------------------------------------------- L2Loss
L2Loss = declare(
    "L2Loss",
    inputs=["t: T  # any shape"], outputs=["output: T  # scalar"],
    attrs=[_FLOAT_TYPES],
    shape_fn=scalar_shape,
    doc="Half the squared L2 norm of t, without the sqrt: sum(t ** 2) / 2 (0 for an empty "
        "t).")


@gradient("L2Loss")
def _l2_loss_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    return [ops.Mul(scope, op.inputs[0], grads[0])]


# ---------------------------------------------------------------------------- LRN
def _check_lrn_radius(c):
    radius = c.attr("depth_radius")
    if not 0 <= radius < _INT_MAX:
        msg = f"depth_radius must be in [0, {_INT_MAX}), but is {radius}"
        raise errors.InvalidArgumentError(msg)
    return radius


def _check_lrn_size(x: TensorShape, radius: int, op: str):
    depth = x.dims[3]
    if depth is not None and depth + radius > _INT_MAX:
        msg = f"depth {depth} + depth_radius {radius} exceeds int max ({_INT_MAX})"
        raise errors.InvalidArgumentError(msg)
    if x.is_fully_defined() and int(np.prod(x.dims)) >= _INT_MAX:
        msg = (f"argument to {op} too large: {int(np.prod(x.dims))} elements, expected "
               f"fewer than {_INT_MAX}")
        raise errors.InvalidArgumentError(msg)


def _lrn_shape(c):
    radius = _check_lrn_radius(c)
    x = c.with_rank(0, 4)
    _check_lrn_size(x, radius, "LRN")
    return [x]


LRN = declare(
    "LRN",
    inputs=["input: T  # 4-D [batch, height, width, depth]"],
    outputs=["output: T  # input's shape"],
    attrs=["depth_radius: int = 5  # half-width of the window along depth; >= 0",
           "bias: float = 1.0  # offset, usually positive to avoid dividing by 0",
           "alpha: float = 1.0  # scale of the squared sum",
           "beta: float = 0.5  # exponent",
           "T: {half, bfloat16, float} = DT_FLOAT"],
    shape_fn=_lrn_shape,
    doc="Local response normalisation across depth: output = input / (bias + alpha * "
        "sqr_sum) ** beta, where sqr_sum[a, b, c, d] = sum(input[a, b, c, d - depth_radius : "
        "d + depth_radius + 1] ** 2) (the window clipped to the depth).")


def _lrn_attrs(op) -> dict:
    return {k: op.attrs[k] for k in ("depth_radius", "bias", "alpha", "beta")}


@gradient("LRN")
def _lrn_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    return [ops.LRNGrad(scope, grads[0], op.inputs[0], op.output(0), **_lrn_attrs(op))]


def _lrn_grad_shape(c):
    """TF's LRNGrad kernel: three 4-D tensors of one shape."""
    radius = _check_lrn_radius(c)
    shapes = [c.with_rank(i, 4) for i in range(3)]
    known = [s.dims for s in shapes]
    for axis in range(4):
        dims = {d[axis] for d in known if d[axis] is not None}
        if len(dims) > 1:
            msg = ("input_grads, input_image, and output_image should have the same shape, "
                   f"but have shapes {shapes[0].compact()}, {shapes[1].compact()} and "
                   f"{shapes[2].compact()}")
            raise errors.InvalidArgumentError(msg)
    out = c.merge(c.merge(shapes[0], shapes[1]), shapes[2])
    _check_lrn_size(out, radius, "LRNGrad")
    return [out]


LRNGrad = declare(
    "LRNGrad",
    inputs=["input_grads: T  # 4-D [batch, height, width, depth]: the gradient of LRN's "
            "output",
            "input_image: T  # LRN's input; input_grads' shape",
            "output_image: T  # LRN's output; input_grads' shape"],
    outputs=["output: T  # the gradient w.r.t. LRN's input"],
    attrs=["depth_radius: int = 5  # LRN's depth_radius; >= 0",
           "bias: float = 1.0  # LRN's bias",
           "alpha: float = 1.0  # LRN's alpha",
           "beta: float = 0.5  # LRN's beta",
           "T: {half, bfloat16, float} = DT_FLOAT"],
    shape_fn=_lrn_grad_shape,
    doc="LRN's gradient: with norm = bias + alpha * sqr_sum(input_image) (LRN's window sum), "
        "output[k] = input_grads[k] * norm[k] ** -beta - 2 * alpha * beta * input_image[k] "
        "* sum over the depth window around k of input_grads[j] * output_image[j] / "
        "norm[j].")


def _depth_window_sum(scope, v, radius: int):
    """sum(v[..., d - radius : d + radius + 1]) over the last dim of a 4-D v (the window
    clipped to the depth): a product with a [depth, depth] 0/1 band matrix, so that it is
    differentiable again."""
    import ops  # noqa: PLC0415
    v = getattr(v, "output", v)                     # an op wrapper's single Output
    depth = None if v.shape.dims is None else v.shape.dims[3]
    if depth is not None:
        k = np.arange(depth)
        band_values = np.abs(k[:, None] - k[None, :]) <= radius
        band = ops.Const(scope, band_values.astype(v.dtype.as_numpy_dtype))
        flat_shape = ops.Const(scope, np.array([-1, depth], np.int32))
    else:
        depth_vector = ops.Slice(scope, ops.Shape(scope, v), [3], [1])
        k = ops.Range(scope, 0, ops.Reshape(scope, depth_vector, np.zeros(0, np.int32)), 1)
        distance = ops.Abs(scope, ops.Sub(scope, ops.ExpandDims(scope, k, 1),
                                          ops.ExpandDims(scope, k, 0)))
        band = ops.Cast(scope, ops.LessEqual(scope, distance, np.int32(radius)), v.dtype)
        flat_shape = ops.ConcatV2(scope, [np.array([-1], np.int32), depth_vector], 0)
    product = ops.MatMul(scope, ops.Reshape(scope, v, flat_shape), band)
    return ops.Reshape(scope, product, ops.Shape(scope, v))


@gradient("LRNGrad")
def _lrn_grad_grad(scope, op, grads):
    # TF registers none. LRNGrad(g, x, y)[k] = g[k] N[k]^-b + c x[k] W(g y / N)[k], with
    # N = bias + alpha W(x^2), c = -2 alpha b and W the depth window sum (symmetric). For an
    # upstream h, with S = W(x h) and q = g y / N:
    #   d/dg = h N^-b + c S y / N,   d/dy = c S g / N,
    #   d/dx = c (x W((g h N^-b - 2 alpha q S) / N) + h W(q)).
    import ops  # noqa: PLC0415
    g, x, y = op.inputs
    h = grads[0]
    radius, alpha, beta = op.attrs["depth_radius"], op.attrs["alpha"], op.attrs["beta"]

    def const(value):
        return ops.Const(scope, np.asarray(value, x.dtype.as_numpy_dtype))

    def window(v):
        return _depth_window_sum(scope, v, radius)

    def mul(a, b):
        return ops.Mul(scope, a, b)

    def add(a, b):
        return ops.AddV2(scope, a, b)

    def div(a, b):
        return ops.RealDiv(scope, a, b)

    norm = add(const(op.attrs["bias"]), mul(const(alpha), window(ops.Square(scope, x))))
    norm_pow = ops.Pow(scope, norm, const(-beta))
    coeff = const(-2.0 * alpha * beta)
    s = window(mul(x, h))
    q = div(mul(g, y), norm)
    d_g = add(mul(h, norm_pow), mul(coeff, div(mul(s, y), norm)))
    d_y = mul(coeff, div(mul(s, g), norm))
    inner = div(ops.Sub(scope, mul(mul(g, h), norm_pow), mul(const(2.0 * alpha), mul(q, s))),
                norm)
    d_x = mul(coeff, add(mul(x, window(inner)), mul(h, window(q))))
    return [d_g, d_x, d_y]


# ---------------------------------------------------------------------------- softmax xent
def _xent_shape(c):
    # The kernel broadcasts features against labels; the result must be a matrix, so an
    # input of unknown rank can be taken as [?, ?] (lower ranks broadcast like ?s of 1).
    shapes = [c.unknown_shape(2) if c.input(i).dims is None else c.input(i) for i in (0, 1)]
    out = c.broadcast(*shapes)
    if len(out.dims) != 2:
        msg = (f"logits and labels must be either 2-dimensional, or broadcast to be "
               f"2-dimensional, but broadcast to rank {len(out.dims)} (shape {out.compact()})")
        raise errors.InvalidArgumentError(msg)
    return [c.vector(out.dims[0]), out]


SoftmaxCrossEntropyWithLogits = declare(
    "SoftmaxCrossEntropyWithLogits",
    inputs=["features: T  # [batch, classes] logits (broadcast against labels)",
            "labels: T  # [batch, classes] probabilities (broadcast against features)"],
    outputs=["loss: T  # [batch] per-example loss",
             "backprop: T  # [batch, classes]: softmax(features) - labels"],
    attrs=[_FLOAT_TYPES],
    shape_fn=_xent_shape,
    doc="Softmax cross entropy per example: loss[i] = -sum_j labels[i, j] * "
        "log_softmax(features)[i, j], and its gradient backprop = softmax(features) - "
        "labels. features and labels broadcast to one [batch, classes] matrix.")


@gradient("SoftmaxCrossEntropyWithLogits")
def _softmax_cross_entropy_with_logits_grad(scope, op, grads):
    # features: grad_loss * backprop (+ the backprop output's share); labels:
    # -grad_loss * log_softmax(features) (- grad_grad, which TF's Python omits), each summed
    # back to its input's shape when the two were broadcast.
    import ops  # noqa: PLC0415
    features, labels = op.inputs
    backprop = op.output(1)
    logits = features
    if not (features.shape.is_fully_defined() and features.shape == backprop.shape):
        logits = ops.BroadcastTo(scope, features, ops.Shape(scope, backprop))
    d_features = _xent_features_grad(scope, op, grads, logits)
    neg_log_softmax = ops.Neg(scope, ops.LogSoftmax(scope, logits))
    d_labels = ops.Mul(scope, ops.ExpandDims(scope, grads[0], -1), neg_log_softmax)
    if not _is_zeros(grads[1]):
        d_labels = ops.Sub(scope, d_labels, grads[1])
    return [_sum_to_shape(scope, d_features, features), _sum_to_shape(scope, d_labels, labels)]


def _sum_to_shape(scope, grad, target):
    """grad, of the broadcast shape of target and another input, summed back to target's
    shape (TF's Reshape(Sum(grad, BroadcastGradientArgs(...)), Shape(target)))."""
    import ops  # noqa: PLC0415
    grad = getattr(grad, "output", grad)            # an op wrapper's single Output
    have, want = grad.shape, target.shape
    if have.is_fully_defined() and want.is_fully_defined():
        if have.dims == want.dims:
            return grad
        lead = len(have.dims) - len(want.dims)
        axes = list(range(lead)) + [lead + i for i, d in enumerate(want.dims)
                                    if d == 1 and have.dims[lead + i] != 1]
        if axes:
            grad = ops.Sum(scope, grad, np.array(axes, np.int32))
        return ops.Reshape(scope, grad, np.array(want.dims, np.int32))
    args = getattr(ops, "BroadcastGradientArgs", None)
    if args is not None:
        axes = list(args(scope, ops.Shape(scope, target), ops.Shape(scope, grad)))[0]
        return ops.Reshape(scope, ops.Sum(scope, grad, axes), ops.Shape(scope, target))
    # Without BroadcastGradientArgs only the missing leading dims can be summed here; the
    # Reshape is then exact when nothing else was broadcast, and a run-time error (not a
    # wrong gradient) when something was.
    if have.rank is not None and want.rank is not None and have.rank > want.rank:
        grad = ops.Sum(scope, grad, np.arange(have.rank - want.rank, dtype=np.int32))
    return ops.Reshape(scope, grad, ops.Shape(scope, target))


def _is_zeros(t) -> bool:
    """The gradient is the framework's ZerosLike stand-in (TF's _is_zeros_tensor)."""
    return t.op.type == "ZerosLike"


def _backprop_grad(scope, grad_grad, logits):
    """The gradient through the ``backprop`` output (softmax(logits) - labels) w.r.t.
    logits: (grad_grad - sum(grad_grad * softmax, 1)) * softmax."""
    import ops  # noqa: PLC0415
    softmax = ops.Softmax(scope, logits)
    dot = ops.Sum(scope, ops.Mul(scope, grad_grad, softmax), 1, keep_dims=True)
    return ops.Mul(scope, ops.Sub(scope, grad_grad, dot), softmax)


def _xent_features_grad(scope, op, grads, logits):
    """The gradient w.r.t. the [batch, classes] logits: grad_loss[:, None] * backprop plus
    the backprop output's share."""
    import ops  # noqa: PLC0415
    grad_loss, grad_grad = grads
    d_logits = ops.Mul(scope, ops.ExpandDims(scope, grad_loss, -1), op.output(1))
    if not _is_zeros(grad_grad):
        d_logits = ops.AddV2(scope, d_logits, _backprop_grad(scope, grad_grad, logits))
    return d_logits


def _label_values_summary(labels: np.ndarray) -> str:
    flat = labels.reshape(-1)
    shown = " ".join(str(v) for v in flat[:10].tolist())
    return shown + (" ..." if flat.size > 10 else "")


def _check_label_range(labels: np.ndarray, num_classes):
    """TF's CheckInvalidLabelIndex: labels in [0, num_classes) (only the lower bound when
    num_classes is unknown)."""
    if labels.size == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    bad = lo if lo < 0 else hi if num_classes is not None and hi >= num_classes else None
    if bad is None:
        return
    upper = "?" if num_classes is None else num_classes
    msg = (f"Received a label value of {bad} which is outside the valid range of "
           f"[0, {upper}).  Label values: {_label_values_summary(labels)}")
    raise errors.InvalidArgumentError(msg)


def _sparse_xent_shape(c):
    features = c.with_rank(0, 2)
    labels = c.with_rank(1, 1)
    rows, entries = features.dims[0], labels.dims[0]
    if rows is not None and entries is not None and rows != entries:
        msg = (f"logits and labels must have the same first dimension, but logits have "
               f"{rows} rows and labels have {entries} entries")
        raise errors.InvalidArgumentError(msg)
    batch = rows if rows is not None else entries
    classes = features.dims[1]
    if classes == 0:
        msg = (f"Must have at least one class, but got logits shape "
               f"{TensorShape([batch, 0]).compact()}")
        raise errors.InvalidArgumentError(msg)
    values = c.input_tensor(1)
    if values is not None:
        _check_label_range(np.asarray(values), classes)
    return [c.vector(batch), c.make_shape([batch, classes])]


SparseSoftmaxCrossEntropyWithLogits = declare(
    "SparseSoftmaxCrossEntropyWithLogits",
    inputs=["features: T  # [batch, classes] logits, classes >= 1",
            "labels: Tlabels  # [batch] class indices in [0, classes)"],
    outputs=["loss: T  # [batch] per-example loss",
             "backprop: T  # [batch, classes]: softmax(features) - one_hot(labels)"],
    attrs=[_FLOAT_TYPES, "Tlabels: {int32, int64} = DT_INT64"],
    shape_fn=_sparse_xent_shape,
    doc="Softmax cross entropy against class indices: loss[i] = -log_softmax(features)[i, "
        "labels[i]] and backprop = softmax(features) - one_hot(labels). A label outside "
        "[0, classes) is an InvalidArgumentError (at build time when labels are constant).")


@gradient("SparseSoftmaxCrossEntropyWithLogits")
def _sparse_softmax_cross_entropy_with_logits_grad(scope, op, grads):
    return [_xent_features_grad(scope, op, grads, op.inputs[0]), None]
