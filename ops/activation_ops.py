"""Activation ops (TF's nn_ops.cc): Relu, Relu6, LeakyRelu, Elu, Selu, Softplus, Softsign,
Softmax and LogSoftmax, their backward ops (ReluGrad ... SoftsignGrad) and the gradients of
both (TF's nn_grad.py), so that second derivatives work.

The elementwise activations keep their input's shape; Softmax and LogSoftmax normalise over
the last axis and need logits of rank >= 1. Sigmoid and Tanh are math ops. A backward op
takes the upstream ``gradients`` and the forward op's ``features`` (or ``outputs``), both of
one shape.
"""

from __future__ import annotations

import numpy as np

from opgraph.common_shapes import unchanged_shape
from opgraph.gradients import gradient
from opgraph.wrappers import declare

_FLOAT_TYPES = "T: {half, bfloat16, float, double}"


def _unchanged_shape_rank_at_least_1(c):
    return [c.with_rank_at_least(0, 1)]


def _activation(name: str, doc: str, type_attr: str = _FLOAT_TYPES, attrs=()):
    return declare(
        name,
        inputs=["features: T"], outputs=["activations: T  # same shape as features"],
        attrs=[*attrs, type_attr],
        shape_fn=unchanged_shape,
        doc=doc)


def _merge_both_shape(c):
    """TF's MergeBothInputsShapeFn: the two inputs have one shape, which is the output's."""
    what = f"'{c.input_name(0)}' and '{c.input_name(1)}' (which must have one shape)"
    return [c.merge(c.input(0), c.input(1), what=what)]


def _activation_grad(name: str, forward: str, second: str, doc: str,
                     type_attr: str = _FLOAT_TYPES, attrs=()):
    """A backward op ``name(gradients, second)`` of the activation ``forward``."""
    second_doc = {"features": f"the features passed to the corresponding {forward}",
                  "outputs": f"the outputs of the corresponding {forward}"}[second]
    return declare(
        name,
        inputs=[f"gradients: T  # backpropagated gradients of {forward}'s output",
                f"{second}: T  # {second_doc}; gradients' shape"],
        outputs=[f"backprops: T  # the gradient w.r.t. {forward}'s input"],
        attrs=[*attrs, type_attr],
        shape_fn=_merge_both_shape,
        doc=doc)


def _const_like(scope, value, like):
    """A scalar constant ``value`` of ``like``'s dtype."""
    import ops  # noqa: PLC0415  (ops modules use each other's wrappers lazily)
    return ops.Const(scope, np.asarray(value, like.dtype.as_numpy_dtype))


def _linear_in_gradients(grad_op: str) -> None:
    """Register the gradient of a mask-style grad op (ReluGrad, Relu6Grad, LeakyReluGrad):
    it is linear in ``gradients`` (the same op again on the upstream gradient) and flat in
    ``features`` almost everywhere (zeros)."""
    @gradient(grad_op)
    def _grad(scope, op, grads):
        import ops  # noqa: PLC0415
        features = op.inputs[1]
        attrs = {k: v for k, v in op.attrs.items() if k not in op.op_def.inferred_attrs}
        again = getattr(ops, grad_op)(scope, grads[0], features, **attrs)
        return [again, ops.ZerosLike(scope, features)]


def _where_negative(scope, outputs, value):
    """``value`` where ``outputs < 0``, else 0 (TF's where(outputs < 0, value, zeros))."""
    import ops  # noqa: PLC0415
    negative = ops.Less(scope, outputs, _const_like(scope, 0, outputs))
    return ops.SelectV2(scope, negative, value, ops.ZerosLike(scope, outputs))


Relu = _activation(
    "Relu", "Rectified linear: max(features, 0), elementwise.",
    type_attr="T: realnumbertype")


@gradient("Relu")
def _relu_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    return [ops.ReluGrad(scope, grads[0], op.output(0))]


ReluGrad = _activation_grad(
    "ReluGrad", "Relu", "features",
    "Relu's gradient: gradients * (features > 0). features may be Relu's input or its "
    "output (the same result).",
    type_attr="T: realnumbertype")

_linear_in_gradients("ReluGrad")

Relu6 = _activation(
    "Relu6", "Rectified linear 6: min(max(features, 0), 6), elementwise.",
    type_attr="T: realnumbertype")


@gradient("Relu6")
def _relu6_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    return [ops.Relu6Grad(scope, grads[0], op.output(0))]


Relu6Grad = _activation_grad(
    "Relu6Grad", "Relu6", "features",
    "Relu6's gradient: gradients * (features > 0) * (features < 6). features may be Relu6's "
    "input or its output (the same result).",
    type_attr="T: realnumbertype")

_linear_in_gradients("Relu6Grad")

LeakyRelu = _activation(
    "LeakyRelu",
    "Leaky rectified linear: features where features > 0, else features * alpha "
    "(alpha is rounded to T first; alpha > 1 or < 0 is allowed).",
    type_attr="T: {half, bfloat16, float, double} = DT_FLOAT",
    attrs=["alpha: float = 0.2  # slope for features <= 0"])


@gradient("LeakyRelu")
def _leaky_relu_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    return [ops.LeakyReluGrad(scope, grads[0], op.inputs[0], alpha=op.attrs["alpha"])]


LeakyReluGrad = _activation_grad(
    "LeakyReluGrad", "LeakyRelu", "features",
    "LeakyRelu's gradient: gradients where features > 0, else gradients * alpha (alpha "
    "rounded to T first).",
    type_attr="T: {half, bfloat16, float, double} = DT_FLOAT",
    attrs=["alpha: float = 0.2  # LeakyRelu's slope for features <= 0"])

_linear_in_gradients("LeakyReluGrad")


Elu = _activation(
    "Elu", "Exponential linear: exp(features) - 1 where features < 0, else features.")


@gradient("Elu")
def _elu_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    return [ops.EluGrad(scope, grads[0], op.output(0))]


EluGrad = _activation_grad(
    "EluGrad", "Elu", "outputs",
    "Elu's gradient from its outputs: gradients * (outputs + 1) where outputs < 0, else "
    "gradients.")


@gradient("EluGrad")
def _elu_grad_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    gradients, outputs = op.inputs
    return [ops.EluGrad(scope, grads[0], outputs),
            _where_negative(scope, outputs, ops.Mul(scope, grads[0], gradients))]

Selu = _activation(
    "Selu",
    "Scaled exponential linear: scale * alpha * (exp(features) - 1) where features < 0, "
    "else scale * features, with alpha = 1.6732632423543772 and scale = 1.0507009873554805.")


@gradient("Selu")
def _selu_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    return [ops.SeluGrad(scope, grads[0], op.output(0))]


SeluGrad = _activation_grad(
    "SeluGrad", "Selu", "outputs",
    "Selu's gradient from its outputs: gradients * (outputs + scale * alpha) where outputs "
    "< 0, else gradients * scale (Selu's alpha and scale).")


@gradient("SeluGrad")
def _selu_grad_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    gradients, outputs = op.inputs
    return [ops.SeluGrad(scope, grads[0], outputs),
            _where_negative(scope, outputs, ops.Mul(scope, grads[0], gradients))]


Softplus = _activation(
    "Softplus", "log(exp(features) + 1), elementwise, computed without overflow.")


@gradient("Softplus")
def _softplus_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    return [ops.SoftplusGrad(scope, grads[0], op.inputs[0])]


SoftplusGrad = _activation_grad(
    "SoftplusGrad", "Softplus", "features",
    "Softplus's gradient: gradients / (1 + exp(-features)), i.e. gradients * "
    "sigmoid(features).")


@gradient("SoftplusGrad")
def _softplus_grad_grad(scope, op, grads):
    # backprops = g / (1 + exp(-x)): d/dg = SoftplusGrad(., x); d/dx = g * sigmoid'(x)
    # = g / (exp(-x) + 2 + exp(x)) (TF's _SoftplusGradGrad).
    import ops  # noqa: PLC0415
    gradients, features = op.inputs
    denominator = ops.AddV2(scope, ops.AddV2(scope, ops.Exp(scope, ops.Neg(scope, features)),
                                             _const_like(scope, 2, features)),
                            ops.Exp(scope, features))
    d_features = ops.RealDiv(scope, ops.Mul(scope, grads[0], gradients), denominator)
    return [ops.SoftplusGrad(scope, grads[0], features), d_features]


Softsign = _activation(
    "Softsign", "features / (abs(features) + 1), elementwise.")


@gradient("Softsign")
def _softsign_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    return [ops.SoftsignGrad(scope, grads[0], op.inputs[0])]


SoftsignGrad = _activation_grad(
    "SoftsignGrad", "Softsign", "features",
    "Softsign's gradient: gradients / (1 + abs(features)) ** 2.")


@gradient("SoftsignGrad")
def _softsign_grad_grad(scope, op, grads):
    # TF registers none; backprops = g / (1 + |x|)^2 is smooth away from x = 0:
    # d/dg = SoftsignGrad(., x); d/dx = -2 sign(x) g / (1 + |x|)^3.
    import ops  # noqa: PLC0415
    gradients, features = op.inputs
    one_plus_abs = ops.AddV2(scope, ops.Abs(scope, features), _const_like(scope, 1, features))
    scaled = ops.SoftsignGrad(scope, ops.Mul(scope, grads[0], gradients), features)
    factor = ops.Mul(scope, _const_like(scope, -2, features), ops.Sign(scope, features))
    d_features = ops.RealDiv(scope, ops.Mul(scope, scaled, factor), one_plus_abs)
    return [ops.SoftsignGrad(scope, grads[0], features), d_features]

Softmax = declare(
    "Softmax",
    inputs=["logits: T  # rank >= 1; normalised over the last axis"],
    outputs=["softmax: T  # same shape as logits"],
    attrs=[_FLOAT_TYPES],
    shape_fn=_unchanged_shape_rank_at_least_1,
    doc="softmax[..., j] = exp(logits[..., j]) / sum_k exp(logits[..., k]) over the last "
        "axis (computed after subtracting the row maximum, so large logits do not "
        "overflow).")


@gradient("Softmax")
def _softmax_grad(scope, op, grads):
    # (grad - sum(grad * softmax, -1)) * softmax
    import ops  # noqa: PLC0415
    softmax = op.output(0)
    dot = ops.Sum(scope, ops.Mul(scope, grads[0], softmax), -1, keep_dims=True)
    return [ops.Mul(scope, ops.Sub(scope, grads[0], dot), softmax)]


LogSoftmax = declare(
    "LogSoftmax",
    inputs=["logits: T  # rank >= 1; normalised over the last axis"],
    outputs=["logsoftmax: T  # same shape as logits"],
    attrs=[_FLOAT_TYPES],
    shape_fn=_unchanged_shape_rank_at_least_1,
    doc="logsoftmax[..., j] = logits[..., j] - log(sum_k exp(logits[..., k])) over the last "
        "axis (computed after subtracting the row maximum).")


@gradient("LogSoftmax")
def _log_softmax_grad(scope, op, grads):
    # grad - sum(grad, -1) * softmax, with softmax = exp(logsoftmax)
    import ops  # noqa: PLC0415
    softmax = ops.Exp(scope, op.output(0))
    total = ops.Sum(scope, grads[0], -1, keep_dims=True)
    return [ops.Sub(scope, grads[0], ops.Mul(scope, total, softmax))]
