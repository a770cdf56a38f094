"""CPU kernels of the neural-net ops: BiasAdd(V1), BiasAddGrad, L2Loss, LRN, LRNGrad and the
softmax cross entropies.

The shape functions (ops/nn_ops.py), re-run on the actual inputs whenever something was
unknown at build time, have already checked ranks, sizes and attrs. Half (and bfloat16)
compute in float32 and round once at the end.
"""

from __future__ import annotations

import numpy as np

from opgraph import errors
from runtime.kernel_registry import register_kernel
from runtime.memory import check_allocation


def _work(x: np.ndarray) -> np.ndarray:
    """x in the type to compute in: float32 for 16-bit floats, else x itself."""
    return x.astype(np.float32) if x.dtype.itemsize < 4 else x


def _as(result: np.ndarray, like: np.ndarray) -> np.ndarray:
    return result.astype(like.dtype, copy=False)


# ---------------------------------------------------------------------------- BiasAdd
@register_kernel("BiasAdd")
def bias_add(value, bias, *, data_format):
    if data_format == "NCHW":
        bias = bias.reshape((-1,) + (1,) * (value.ndim - 2))
    with np.errstate(over="ignore", invalid="ignore"):
        return np.add(value, bias)


@register_kernel("BiasAddV1")
def bias_add_v1(value, bias):
    with np.errstate(over="ignore", invalid="ignore"):
        return np.add(value, bias)


@register_kernel("BiasAddGrad")
def bias_add_grad(out_backprop, *, data_format):
    channel = 1 if data_format == "NCHW" else out_backprop.ndim - 1
    axes = tuple(a for a in range(out_backprop.ndim) if a != channel)
    # 16-bit floats accumulate in float32 (TF's accumulator type); others in their own type,
    # so integers wrap as in C++.
    accumulator = np.float32 if out_backprop.dtype.itemsize < 4 and \
        out_backprop.dtype.kind not in "iub" else out_backprop.dtype
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.sum(out_backprop, axis=axes, dtype=accumulator)
    return _as(np.asarray(total), out_backprop)


# ---------------------------------------------------------------------------- L2Loss
@register_kernel("L2Loss")
def l2_loss(t):
    x = _work(t).reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        return _as(np.asarray(np.dot(x, x) / 2), t)


# ---------------------------------------------------------------------------- LRN
def _depth_window_sum(values, depth_radius, what):
    """sum(values[..., d - depth_radius : d + depth_radius + 1]) over the last (depth) axis,
    the window clipped to the depth; values is 4-D and not empty."""
    depth = values.shape[3]
    radius = min(depth_radius, depth - 1)        # beyond depth - 1 the window is clipped
    width = 2 * radius + 1
    padded_shape = (*values.shape[:3], depth + 2 * radius)
    check_allocation(padded_shape, values.dtype.itemsize, what)
    padded = np.zeros(padded_shape, values.dtype)
    padded[..., radius:radius + depth] = values
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=3)
    return windows.sum(axis=4)


@register_kernel("LRN")
def lrn(x, *, depth_radius, bias, alpha, beta):
    if x.size == 0:
        return np.empty(x.shape, x.dtype)
    work = _work(x)
    t = work.dtype.type
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        sqr_sum = _depth_window_sum(np.square(work), depth_radius, "LRN squares")
        scale = t(bias) + t(alpha) * sqr_sum
        return _as(work * scale ** t(-beta), x)


@register_kernel("LRNGrad")
def lrn_grad(input_grads, input_image, output_image, *, depth_radius, bias, alpha, beta):
    # output[k] = g[k] * norm[k]^-beta - 2 alpha beta x[k] * sum_{j near k} g[j] y[j] / norm[j]
    # (the window is symmetric: k is in j's window exactly when j is in k's).
    if input_grads.size == 0:
        return np.empty(input_grads.shape, input_grads.dtype)
    g, x, y = _work(input_grads), _work(input_image), _work(output_image)
    t = g.dtype.type
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        norm = t(bias) + t(alpha) * _depth_window_sum(np.square(x), depth_radius,
                                                      "LRNGrad squares")
        spread = _depth_window_sum(g * y / norm, depth_radius, "LRNGrad products")
        result = g * norm ** t(-beta) - t(2 * alpha * beta) * x * spread
    return _as(result, input_grads)


# ---------------------------------------------------------------------------- xent
def _softmax_parts(logits):
    """(exp(logits - max), sum of it, log of the sum) over axis 1, for classes >= 1."""
    shifted = logits - np.max(logits, axis=1, keepdims=True)
    e = np.exp(shifted)
    total = np.sum(e, axis=1, keepdims=True)
    return shifted, e, total, np.log(total)


@register_kernel("SoftmaxCrossEntropyWithLogits")
def softmax_cross_entropy_with_logits(features, labels):
    f, y = np.broadcast_arrays(_work(features), _work(labels))
    batch, classes = f.shape
    if classes == 0:        # nothing to sum: zero loss, an empty gradient
        return (np.zeros(batch, features.dtype), np.empty(f.shape, features.dtype))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        shifted, e, total, log_total = _softmax_parts(f)
        loss = np.sum(y * (log_total - shifted), axis=1)
        backprop = e / total - y
    return _as(loss, features), _as(backprop, features)


def _check_labels(labels, classes):
    """TF's CheckInvalidLabelIndex (the shape function checks it too; this guards indexing)."""
    if labels.size == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo >= 0 and hi < classes:
        return
    bad = lo if lo < 0 else hi
    shown = " ".join(str(v) for v in labels[:10].tolist()) + (" ..." if labels.size > 10 else "")
    msg = (f"Received a label value of {bad} which is outside the valid range of "
           f"[0, {classes}).  Label values: {shown}")
    raise errors.InvalidArgumentError(msg)


@register_kernel("SparseSoftmaxCrossEntropyWithLogits")
def sparse_softmax_cross_entropy_with_logits(features, labels):
    batch, classes = features.shape
    _check_labels(labels, classes)
    rows = np.arange(batch)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        shifted, e, total, log_total = _softmax_parts(_work(features))
        loss = log_total[:, 0] - shifted[rows, labels]
        backprop = e / total
        backprop[rows, labels] -= 1
    return _as(loss, features), _as(backprop, features)
