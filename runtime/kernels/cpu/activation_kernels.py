"""CPU kernels of the activation ops (Relu ... LogSoftmax) and their backward ops (ReluGrad
... SoftsignGrad).

Transcendental kernels compute half (and bfloat16) in float32 and round once at the end;
float and double compute in their own type. No kernel warns on overflow or invalid values:
infinities and NaNs propagate as IEEE arithmetic gives them.
"""

from __future__ import annotations

import numpy as np

from runtime.kernel_registry import register_kernel

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _work(x: np.ndarray) -> np.ndarray:
    """x in the type to compute in: float32 for 16-bit floats, else x itself."""
    return x.astype(np.float32) if x.dtype.itemsize < 4 else x


def _as(result: np.ndarray, like: np.ndarray) -> np.ndarray:
    """A freshly computed ``result`` in ``like``'s dtype (no copy when it already is)."""
    return result.astype(like.dtype, copy=False)


@register_kernel("Relu")
def relu(features):
    return np.maximum(features, features.dtype.type(0))


@register_kernel("Relu6")
def relu6(features):
    t = features.dtype.type
    return np.minimum(np.maximum(features, t(0)), t(6))


@register_kernel("LeakyRelu")
def leaky_relu(features, *, alpha):
    # where(), not maximum(): alpha may be > 1 or negative. TF's alpha is a float32 attr.
    with np.errstate(over="ignore", invalid="ignore"):
        scale = features.dtype.type(np.float32(alpha))
        return np.where(features > 0, features, features * scale)


@register_kernel("Elu")
def elu(features):
    x = _work(features)
    with np.errstate(over="ignore", invalid="ignore"):
        return _as(np.where(x < 0, np.expm1(np.minimum(x, 0)), x), features)


@register_kernel("Selu")
def selu(features):
    x = _work(features)
    t = x.dtype.type
    with np.errstate(over="ignore", invalid="ignore"):
        neg = t(_SELU_SCALE * _SELU_ALPHA) * np.expm1(np.minimum(x, 0))
        return _as(np.where(x < 0, neg, t(_SELU_SCALE) * x), features)


@register_kernel("Softplus")
def softplus(features):
    # log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)): exp never overflows.
    x = _work(features)
    with np.errstate(over="ignore", invalid="ignore"):
        return _as(np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))), features)


@register_kernel("Softsign")
def softsign(features):
    x = _work(features)
    with np.errstate(over="ignore", invalid="ignore"):
        return _as(x / (np.abs(x) + 1), features)


def _shifted_and_log_sum(logits):
    """(logits - max, log(sum(exp(logits - max)))) over the last axis, in the work type."""
    x = _work(logits)
    shifted = x - np.max(x, axis=-1, keepdims=True)
    return shifted, np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


@register_kernel("Softmax")
def softmax(logits):
    if logits.size == 0:
        return np.empty(logits.shape, logits.dtype)
    x = _work(logits)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        e = np.exp(x - np.max(x, axis=-1, keepdims=True))
        return _as(e / np.sum(e, axis=-1, keepdims=True), logits)


@register_kernel("LogSoftmax")
def log_softmax(logits):
    if logits.size == 0:
        return np.empty(logits.shape, logits.dtype)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        shifted, log_sum = _shifted_and_log_sum(logits)
        return _as(shifted - log_sum, logits)


# ---------------------------------------------------------------------------- backward ops
@register_kernel("ReluGrad")
def relu_grad(gradients, features):
    # A product, as TF's kernel: a NaN gradient stays NaN where features <= 0.
    with np.errstate(over="ignore", invalid="ignore"):
        return gradients * (features > 0).astype(gradients.dtype)


@register_kernel("Relu6Grad")
def relu6_grad(gradients, features):
    inside = (features > 0) & (features < 6)
    with np.errstate(over="ignore", invalid="ignore"):
        return gradients * inside.astype(gradients.dtype)


@register_kernel("LeakyReluGrad")
def leaky_relu_grad(gradients, features, *, alpha):
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = gradients * gradients.dtype.type(np.float32(alpha))
        return np.where(features > 0, gradients, scaled)


@register_kernel("EluGrad")
def elu_grad(gradients, outputs):
    g, y = _work(gradients), _work(outputs)
    with np.errstate(over="ignore", invalid="ignore"):
        return _as(np.where(y < 0, g * (y + 1), g), gradients)


@register_kernel("SeluGrad")
def selu_grad(gradients, outputs):
    g, y = _work(gradients), _work(outputs)
    t = g.dtype.type
    with np.errstate(over="ignore", invalid="ignore"):
        negative = g * (y + t(_SELU_SCALE * _SELU_ALPHA))
        return _as(np.where(y < 0, negative, g * t(_SELU_SCALE)), gradients)


@register_kernel("SoftplusGrad")
def softplus_grad(gradients, features):
    g, x = _work(gradients), _work(features)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _as(g / (np.exp(-x) + 1), gradients)


@register_kernel("SoftsignGrad")
def softsign_grad(gradients, features):
    g, x = _work(gradients), _work(features)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _as(g / np.square(np.abs(x) + 1), gradients)
