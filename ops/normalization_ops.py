"""Fused batch normalization: FusedBatchNorm, FusedBatchNormV2 and FusedBatchNormV3, their
backward op FusedBatchNormGradV3 and the gradients.

The shape function checks what TF's kernel checks (TF's own shape function checks less):
x has rank 4 (5 for the 3-D formats of V3), scale/offset/mean/variance are vectors, scale
and offset have one element per channel, and so do mean and variance when they are used
(inference, or a running average with exponential_avg_factor != 1); in plain training they
may be empty, as TF allows.
"""

from __future__ import annotations

import numpy as np

from opgraph import errors
from opgraph.gradients import gradient
from opgraph.shape_inference import InferenceContext
from opgraph.wrappers import declare

__all__ = ["FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3", "FusedBatchNormGradV3"]

_RANK = {"NHWC": 4, "NCHW": 4, "NDHWC": 5, "NCDHW": 5}


def _channels(c: InferenceContext, x):
    """The channel count: x's channel dim merged with the vectors that must match it."""
    fmt = c.attr("data_format")
    axis = 1 if fmt.startswith("NC") else _RANK[fmt] - 1
    vectors = [c.with_rank(i, 1).dims[0] for i in range(1, 5)]
    channels = x.dims[axis]
    checked = [("scale", "", vectors[0]), ("offset", "", vectors[1])]
    training, factor = c.attr("is_training"), c.attr("exponential_avg_factor")
    if not training or factor != 1.0:
        prefix = "When exponential_avg_factor != 1, " if training else \
            "When is_training=false, "
        checked += [("mean", prefix, vectors[2]), ("variance", prefix, vectors[3])]
    for name, prefix, size in checked:
        if channels is not None and size is not None and size != channels:
            msg = (f"{prefix}{name} must have the same number of elements as the channels "
                   f"of x, got {size} and {channels}")
            raise errors.InvalidArgumentError(msg)
        channels = channels if channels is not None else size
    return axis, channels


def _fused_batch_norm_shape(c: InferenceContext):
    x = c.with_rank(0, _RANK[c.attr("data_format")])
    axis, channels = _channels(c, x)
    vector = c.vector(channels)
    return [c.replace_dim(x, axis, channels), vector, vector, vector, vector]


def _fused_batch_norm_v3_shape(c: InferenceContext):
    return [*_fused_batch_norm_shape(c), c.scalar()]


_INPUTS = ("x: T  # 4-D input (5-D for NDHWC / NCDHW)",
           "scale: {u}  # [C]: multiplies the normalized x",
           "offset: {u}  # [C]: added to the scaled x",
           "mean: {u}  # [C] population mean (inference or running average); may be empty "
           "in training",
           "variance: {u}  # [C] population variance; may be empty in training")
_OUTPUTS = ("y: T",
            "batch_mean: {u}  # training: the batch mean, or its running average with "
            "exponential_avg_factor != 1; inference: mean",
            "batch_variance: {u}  # training: the unbiased (Bessel-corrected) batch variance, "
            "or its running average; inference: variance",
            "reserve_space_1: {u}  # the mean used for y (for the gradient)",
            "reserve_space_2: {u}  # the (biased) variance used for y (for the gradient)")
_ATTRS = ("epsilon: float = 0.0001  # added to the variance",
          "exponential_avg_factor: float = 1.0  # running average weight of the batch "
          "statistics (training)",
          "data_format: {formats} = 'NHWC'",
          "is_training: bool = true  # batch statistics (true) or mean/variance (false)")
_FORMATS_2D = "{'NHWC', 'NCHW'}"
_FORMATS_3D = "{'NHWC', 'NCHW', 'NDHWC', 'NCDHW'}"
_DOC = ("Batch normalization over every dim but the channel dim of data_format: "
        "y = (x - m) / sqrt(v + epsilon) * scale + offset, where (m, v) are the batch mean "
        "and biased variance when is_training, else the given mean and variance. Statistics "
        "are computed in float32; an empty x gives NaN batch statistics, as TF.")


def _specs(specs, u, **fmt):
    return [s.format(u=u, **fmt) for s in specs]


FusedBatchNorm = declare(
    "FusedBatchNorm",
    inputs=_specs(_INPUTS, "T"), outputs=_specs(_OUTPUTS, "T"),
    attrs=["T: {float}", *_specs(_ATTRS, "T", formats=_FORMATS_2D)],
    shape_fn=_fused_batch_norm_shape, doc=_DOC)

FusedBatchNormV2 = declare(
    "FusedBatchNormV2",
    inputs=_specs(_INPUTS, "U"), outputs=_specs(_OUTPUTS, "U"),
    attrs=["T: {half, bfloat16, float}", "U: {float}",
           *_specs(_ATTRS, "U", formats=_FORMATS_2D)],
    shape_fn=_fused_batch_norm_shape, doc=_DOC + " scale, offset, mean and variance are U.")

FusedBatchNormV3 = declare(
    "FusedBatchNormV3",
    inputs=_specs(_INPUTS, "U"),
    outputs=[*_specs(_OUTPUTS, "U"),
             "reserve_space_3: U  # a scalar placeholder on CPU (0)"],
    attrs=["T: {half, bfloat16, float}", "U: {float}",
           *_specs(_ATTRS, "U", formats=_FORMATS_3D)],
    shape_fn=_fused_batch_norm_v3_shape,
    doc=_DOC + " scale, offset, mean and variance are U; also accepts 5-D x (NDHWC, NCDHW).")


def _fused_batch_norm_grad(scope, op, grads, reserve_space_3=None):
    """TF's _BaseFusedBatchNormGrad, for every version through FusedBatchNormGradV3. Training:
    the batch statistics saved in reserve_space_1/2; inference: the given mean and variance.
    As in TF, only y's gradient is propagated (batch_mean, batch_variance and the reserve
    spaces are treated as constants) and mean and variance get none."""
    import ops  # noqa: PLC0415  (ops modules use each other's wrappers lazily)
    a = op.attrs
    x, scale = op.inputs[0], op.inputs[1]
    if a["is_training"]:
        mean, variance = op.output(3), op.output(4)
    else:
        mean, variance = op.inputs[3], op.inputs[4]
    if reserve_space_3 is None:
        reserve_space_3 = ops.Const(scope, np.zeros((), np.float32))
    g = ops.FusedBatchNormGradV3(scope, grads[0], x, scale, mean, variance, reserve_space_3,
                                 epsilon=a["epsilon"], data_format=a["data_format"],
                                 is_training=a["is_training"])
    return [g.x_backprop, g.scale_backprop, g.offset_backprop, None, None]


@gradient("FusedBatchNorm")
def _fused_batch_norm_v1_grad(scope, op, grads):
    return _fused_batch_norm_grad(scope, op, grads)


@gradient("FusedBatchNormV2")
def _fused_batch_norm_v2_grad(scope, op, grads):
    return _fused_batch_norm_grad(scope, op, grads)


@gradient("FusedBatchNormV3")
def _fused_batch_norm_v3_grad(scope, op, grads):
    return _fused_batch_norm_grad(scope, op, grads, op.output(5))


def _fused_batch_norm_grad_shape(c: InferenceContext):
    fmt = c.attr("data_format")
    rank = _RANK[fmt]
    dy, x = c.with_rank(0, rank), c.with_rank(1, rank)
    if not x.is_compatible_with(dy):
        msg = (f"x and y_backprop must have same shape, but x has shape {x.compact()} and "
               f"y_backprop has shape {dy.compact()}")
        raise errors.InvalidArgumentError(msg)
    x = x.merge_with(dy)
    axis = 1 if fmt.startswith("NC") else rank - 1
    channels = x.dims[axis]
    for i in (2, 3, 4):
        size = c.with_rank(i, 1).dims[0]
        if channels is not None and size is not None and size != channels:
            msg = (f"{c.input_name(i)} must have the same number of elements as the channels "
                   f"of x, got {size} and {channels}")
            raise errors.InvalidArgumentError(msg)
        channels = channels if channels is not None else size
    vector = c.vector(channels)
    return [c.replace_dim(x, axis, channels), vector, vector, c.vector(0), c.vector(0)]


FusedBatchNormGradV3 = declare(
    "FusedBatchNormGradV3",
    inputs=["y_backprop: T  # gradient w.r.t. y",
            "x: T  # the forward op's x",
            "scale: float  # [C]",
            "reserve_space_1: U  # [C] the mean used for y (training: the batch mean; "
            "inference: the population mean)",
            "reserve_space_2: U  # [C] the variance used for y (training: the biased batch "
            "variance; inference: the population variance)",
            "reserve_space_3: U  # the forward op's reserve_space_3 (unused on CPU)"],
    outputs=["x_backprop: T", "scale_backprop: U  # [C]", "offset_backprop: U  # [C]",
             "reserve_space_4: U  # [0] (unused)", "reserve_space_5: U  # [0] (unused)"],
    attrs=["T: {half, bfloat16, float}", "U: {float}",
           "epsilon: float = 0.0001",
           "data_format: {'NHWC', 'NCHW', 'NDHWC', 'NCDHW'} = 'NHWC'",
           "is_training: bool = true"],
    shape_fn=_fused_batch_norm_grad_shape,
    doc="Gradient of FusedBatchNorm(V2/V3), per channel over every other dim (N elements), "
        "with r = rsqrt(reserve_space_2 + epsilon) and xh = (x - reserve_space_1) * r: "
        "offset_backprop = sum(dy), scale_backprop = sum(dy * xh), and x_backprop = scale * r "
        "* (dy - mean(dy) - xh * mean(dy * xh)) in training (the statistics depend on x) or "
        "dy * scale * r in inference. Computed in float32; an empty x gives zero "
        "scale/offset gradients, as TF.")


def _bn_layout(fmt: str, rank: int):
    """(reduction axes, shape of a per-channel vector that broadcasts against x)."""
    if fmt.startswith("NC"):
        return [0, *range(2, rank)], [1, -1] + [1] * (rank - 2)
    return list(range(rank - 1)), [-1]


@gradient("FusedBatchNormGradV3")
def _fused_batch_norm_grad_v3_grad(scope, op, grads):
    """TF's _FusedBatchNormGradGrad in closed form (the derivative of the x_backprop,
    scale_backprop and offset_backprop formulas, computed in float32). As in TF, training
    mode recomputes the statistics from x, so they are differentiated as functions of x; the
    reserve spaces get no gradient."""
    import ops  # noqa: PLC0415
    a = op.attrs
    dy, x, scale, mean, variance = op.inputs[:5]
    gdx, gds, gdo = grads[0], grads[1], grads[2]
    rank = x.shape.rank if x.shape.rank is not None else _RANK[a["data_format"]]
    axes, vec_shape = _bn_layout(a["data_format"], rank)
    f32 = "float32"
    t = x.dtype.name
    if t != f32:
        dy, x, gdx = (ops.Cast(scope, v, f32).output for v in (dy, x, gdx))

    def const(v):
        return ops.Const(scope, np.asarray(v, np.float32))

    axes_c = ops.Const(scope, np.array(axes, np.int32))
    shape_c = ops.Const(scope, np.array(vec_shape, np.int32))
    flat = ops.Const(scope, np.array([-1], np.int32))

    def mean_of(v):
        return ops.Mean(scope, v, axes_c, keep_dims=True)

    def sum_to_vector(v):
        return ops.Reshape(scope, ops.Sum(scope, v, axes_c), flat)

    def vec(v):
        return v if len(vec_shape) == 1 else ops.Reshape(scope, v, shape_c)

    mul, sub, add = ops.Mul, ops.Sub, ops.AddV2
    s, gs, go = vec(scale), vec(gds), vec(gdo)
    if a["is_training"]:
        xc = sub(scope, x, mean_of(x))
        r = ops.Rsqrt(scope, add(scope, mean_of(ops.Square(scope, xc)), const(a["epsilon"])))
        xh = mul(scope, xc, r)
        dyc = sub(scope, dy, mean_of(dy))
        gdxc = sub(scope, gdx, mean_of(gdx))
        p = mean_of(mul(scope, gdx, xh))        # mean(gdx * xh)
        q = mean_of(mul(scope, dy, xh))         # mean(dy * xh)
        cross = mean_of(mul(scope, gdxc, dy))   # mean((gdx - mean(gdx)) * dy)
        sr = mul(scope, s, r)
        g_dy = add(scope, add(scope, mul(scope, sr, sub(scope, gdxc, mul(scope, xh, p))),
                              mul(scope, gs, xh)), go)
        dyc_q = sub(scope, dyc, mul(scope, xh, q))      # dy - mean(dy) - xh * mean(dy * xh)
        inner = sub(scope, mul(scope, xh, sub(scope, mul(scope, const(3.0), mul(scope, p, q)),
                                              cross)),
                    add(scope, mul(scope, gdxc, q), mul(scope, dyc, p)))
        g_x = add(scope, mul(scope, mul(scope, sr, r), inner), mul(scope, mul(scope, gs, r),
                                                                    dyc_q))
        g_scale = mul(scope, ops.Reshape(scope, r, flat), sum_to_vector(mul(scope, gdx, dyc_q)))
    else:
        r = ops.Rsqrt(scope, add(scope, vec(variance), const(a["epsilon"])))
        xc = sub(scope, x, vec(mean))
        g_dy = add(scope, add(scope, mul(scope, gdx, mul(scope, s, r)),
                              mul(scope, gs, mul(scope, xc, r))), go)
        g_x = mul(scope, gs, mul(scope, dy, r))
        g_scale = sum_to_vector(mul(scope, gdx, mul(scope, dy, r)))
    if t != f32:
        g_dy, g_x = ops.Cast(scope, g_dy, t), ops.Cast(scope, g_x, t)
    return [g_dy, g_x, g_scale, None, None, None]
