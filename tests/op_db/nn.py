"""op_db entries of the neural-net ops: BiasAdd(V1), BiasAddGrad, L2Loss, LRN, LRNGrad and
the softmax cross entropies.

References compute in float64 (complex128 for complex inputs) with Python's math module and
explicit loops over elements or rows.
"""

from __future__ import annotations

import math

import numpy as np

from opgraph import dtypes as dt
from opgraph.errors import InvalidArgumentError
from tests.op_db import NUMBERS, ErrorCase, OpInfo, Sample, ShapeCase, rand

F32 = np.float32
I32, I64 = np.int32, np.int64


def _wide(x: np.ndarray):
    """The float64 / complex128 / Python-int type a reference computes x's values in."""
    return np.complex128 if x.dtype.kind == "c" else np.float64 if x.dtype.kind == "f" else None


# ---------------------------------------------------------------------------- BiasAdd
def _bias_add_ref(value, bias, *, data_format="NHWC"):
    value, bias = np.asarray(value), np.asarray(bias)
    axis = 1 if data_format == "NCHW" else value.ndim - 1
    out = np.empty(value.shape, _wide(value) or value.dtype)
    for idx in np.ndindex(value.shape):
        out[idx] = value[idx].item() + bias[idx[axis]].item()
    return out


def _bias_add_samples(rng, t):
    npd = t.as_numpy_dtype
    return [Sample((rand(rng, (2, 3), t), rand(rng, (3,), t)), name="matrix"),
            Sample((rand(rng, (2, 2, 3, 4), t), rand(rng, (4,), t)), name="nhwc"),
            Sample((rand(rng, (2, 4, 3), t), rand(rng, (4,), t)), {"data_format": "NCHW"},
                   name="nchw_rank3"),
            Sample((rand(rng, (2, 3, 2, 2), t), rand(rng, (3,), t)), {"data_format": "NCHW"},
                   name="nchw"),
            Sample((rand(rng, (1, 2, 2, 1, 3), t), rand(rng, (2,), t)),
                   {"data_format": "NCHW"}, name="nchw_rank5"),
            Sample((np.zeros((0, 3), npd), rand(rng, (3,), t)), name="empty_batch"),
            Sample((np.zeros((2, 0), npd), np.zeros((0,), npd)), name="no_channels")]


def _bias_add_v1_samples(rng, t):
    return [s for s in _bias_add_samples(rng, t) if not s.attrs]


_BIAS_ADD_ERRORS = [
    ErrorCase((np.zeros((2, 3), F32), np.zeros(4, F32)), name="bias_too_long",
              regex=r"Must provide as many biases as the channel dimension of value: bias has "
                    r"4 elements but value's channel dim 1 \(NHWC\) is 3"),
    ErrorCase((np.zeros((2, 3, 4), F32), np.zeros(4, F32)), {"data_format": "NCHW"},
              name="nchw_bias_sized_like_last_dim",
              regex=r"bias has 4 elements but value's channel dim 1 \(NCHW\) is 3"),
    ErrorCase((np.zeros(3, F32), np.zeros(3, F32)), name="value_vector",
              regex=r"Shape must be at least rank 2 but is rank 1 for input 'value'"),
    ErrorCase((np.zeros((2, 3), F32), np.zeros(3, F32)), {"data_format": "NCHW"},
              name="nchw_matrix",
              regex=r"Shape must be at least rank 3 but is rank 2 for input 'value'"),
    ErrorCase((np.zeros((2, 3), F32), np.zeros((1, 3), F32)), name="bias_matrix",
              regex=r"Shape must be rank 1 but is rank 2 for input 'bias'"),
    ErrorCase((np.zeros((2, 3), F32), np.zeros(3, np.float64)), when="build",
              name="mixed_dtypes", regex=r"Inconsistent values for attr 'T'"),
]
_BIAS_ADD_SHAPES = [
    ShapeCase("[?,3,4];[4]", "[d0_0,3,4]"),
    ShapeCase("[2,3,?];[5]", "[2,3,5]"),
    ShapeCase("[2,?,4,4];[7]", "[2,7,4,4]", {"data_format": "NCHW"}),
    ShapeCase("?;[3]", "?"),
    ShapeCase("[?,?];?", "[?,?]"),
    ShapeCase("[2,3];[4]", "Must provide as many biases", error=InvalidArgumentError),
    ShapeCase("[2,3,4];[4]", "channel dim 1 \\(NCHW\\) is 3", {"data_format": "NCHW"},
              error=InvalidArgumentError),
]


def _bias_add_grad_ref(out_backprop, *, data_format="NHWC"):
    out_backprop = np.asarray(out_backprop)
    axis = 1 if data_format == "NCHW" else out_backprop.ndim - 1
    totals = [0] * out_backprop.shape[axis]
    for idx in np.ndindex(out_backprop.shape):
        totals[idx[axis]] += out_backprop[idx].item()
    return np.array(totals, _wide(out_backprop) or out_backprop.dtype)


def _bias_add_grad_samples(rng, t):
    npd = t.as_numpy_dtype
    return [Sample((rand(rng, (2, 3), t),), name="matrix"),
            Sample((rand(rng, (2, 2, 3, 4), t),), name="nhwc"),
            Sample((rand(rng, (2, 4, 3), t),), {"data_format": "NCHW"}, name="nchw_rank3"),
            Sample((rand(rng, (2, 3, 2, 2), t),), {"data_format": "NCHW"}, name="nchw"),
            Sample((rand(rng, (1, 2, 2, 1, 3), t),), {"data_format": "NCHW"},
                   name="nchw_rank5"),
            Sample((rand(rng, (3, 2, 2), t),), name="rank3"),
            Sample((np.zeros((0, 3), npd),), name="empty_batch"),
            Sample((np.zeros((0, 3, 2), npd),), {"data_format": "NCHW"}, name="nchw_empty"),
            Sample((np.zeros((2, 0), npd),), name="no_channels")]


_BIAS_ADD_GRAD_ERRORS = [
    ErrorCase((np.zeros(3, F32),), name="vector",
              regex=r"Shape must be at least rank 2 but is rank 1 for input 'out_backprop'"),
    ErrorCase((np.zeros((2, 3), F32),), {"data_format": "NCHW"}, name="nchw_matrix",
              regex=r"Shape must be at least rank 3 but is rank 2 for input 'out_backprop'"),
    ErrorCase((np.zeros((2, 3), F32),), {"data_format": "NCW"}, when="build",
              name="bad_data_format",
              regex=r"Value for attr .data_format. of \"NCW\" is not in the list of allowed "
                    r"values"),
    ErrorCase((np.zeros((2, 3), np.bool_),), when="build", name="bool_refused",
              regex=r"has DataType bool not in list of allowed values"),
]
_BIAS_ADD_GRAD_SHAPES = [
    ShapeCase("[?,3,4]", "[4]"), ShapeCase("[2,?]", "[?]"), ShapeCase("?", "[?]"),
    ShapeCase("[2,5,?]", "[5]", {"data_format": "NCHW"}),
    ShapeCase("[2,?,4,4]", "[?]", {"data_format": "NCHW"}),
    ShapeCase("[3]", "must be at least rank 2", error=InvalidArgumentError),
    ShapeCase("[2,3]", "must be at least rank 3", {"data_format": "NCHW"},
              error=InvalidArgumentError),
]


# ---------------------------------------------------------------------------- L2Loss
def _l2_loss_ref(t):
    t = np.asarray(t)
    return np.float64(math.fsum(v * v for v in t.reshape(-1).tolist()) / 2)


def _l2_loss_samples(rng, t):
    npd = t.as_numpy_dtype
    return [Sample((rand(rng, (3, 4), t),), name="matrix"),
            Sample((rand(rng, (5,), t),), name="vector"),
            Sample((rand(rng, (2, 1, 3), t),), name="rank3"),
            Sample((np.asarray(rand(rng, (), t)),), name="scalar"),
            Sample((np.zeros((0, 4), npd),), name="empty")]


# ---------------------------------------------------------------------------- LRN
def _lrn_ref(x, *, depth_radius=5, bias=1.0, alpha=1.0, beta=0.5):
    x = np.asarray(x)
    depth = x.shape[3]
    out = np.empty(x.shape, np.float64)
    for n, h, w in np.ndindex(x.shape[:3]):
        row = [x[n, h, w, d].item() for d in range(depth)]
        for d in range(depth):
            window = row[max(0, d - depth_radius):min(depth, d + depth_radius + 1)]
            sqr_sum = math.fsum(v * v for v in window)
            out[n, h, w, d] = row[d] / math.pow(bias + alpha * sqr_sum, beta)
    return out


def _lrn_samples(rng, t):
    npd = t.as_numpy_dtype
    return [Sample((rand(rng, (1, 2, 2, 7), t),), name="defaults"),
            Sample((rand(rng, (2, 1, 3, 6), t),),
                   {"depth_radius": 2, "bias": 2.0, "alpha": 0.5, "beta": 0.75}, name="attrs"),
            Sample((rand(rng, (1, 2, 1, 4), t),), {"depth_radius": 0}, name="radius0"),
            Sample((rand(rng, (1, 1, 2, 3), t),), {"depth_radius": 100, "beta": 1.0},
                   name="radius_beyond_depth"),
            Sample((rand(rng, (1, 1, 1, 5), t, 0.5, 3.0),), {"bias": 0.0, "beta": 2.0},
                   name="no_bias"),
            Sample((np.zeros((0, 2, 2, 3), npd),), name="empty_batch"),
            Sample((np.zeros((1, 2, 2, 0), npd),), name="no_depth")]


_LRN_ERRORS = [
    ErrorCase((np.zeros((2, 3, 4), F32),), name="rank3",
              regex=r"Shape must be rank 4 but is rank 3 for input 'input'"),
    ErrorCase((np.zeros((1, 1, 1, 2), F32),), {"depth_radius": -1}, when="build",
              name="negative_radius", regex=r"depth_radius must be in \[0, 2147483647\), but "
                                            r"is -1"),
    ErrorCase((np.zeros((1, 1, 1, 2), np.float64),), when="build", name="double_refused",
              regex=r"has DataType float64 not in list of allowed values"),
]
_LRN_SHAPES = [ShapeCase("[?,3,?,5]", "[d0_0,3,?,5]"), ShapeCase("?", "[?,?,?,?]"),
               ShapeCase("[1,2,3]", "must be rank 4", error=InvalidArgumentError)]


def _lrn_grad_ref(grads, image, output, *, depth_radius=5, bias=1.0, alpha=1.0, beta=0.5):
    """The analytic derivative, term by term: output[k] = sum over j whose window holds k
    of grads[j] * d output_image[j] / d input_image[k], with output_image[j] =
    x[j] * norm[j] ** -beta and d norm[j] / d x[k] = 2 alpha x[k]."""
    grads, image, output = (np.asarray(a) for a in (grads, image, output))
    depth = image.shape[3]
    out = np.zeros(image.shape, np.float64)
    for n, h, w in np.ndindex(image.shape[:3]):
        x = [image[n, h, w, d].item() for d in range(depth)]
        y = [output[n, h, w, d].item() for d in range(depth)]
        g = [grads[n, h, w, d].item() for d in range(depth)]
        for j in range(depth):
            lo, hi = max(0, j - depth_radius), min(depth, j + depth_radius + 1)
            norm = bias + alpha * math.fsum(v * v for v in x[lo:hi])
            for k in range(lo, hi):
                d_norm = 2 * alpha * x[k]
                # d/dx[k] of x[j] * norm ** -beta, with x[j] * norm ** -beta = y[j]
                derivative = -beta * y[j] / norm * d_norm
                if k == j:
                    derivative += math.pow(norm, -beta)
                out[n, h, w, k] += g[j] * derivative
    return out


def _lrn_grad_samples(rng, t):
    npd = t.as_numpy_dtype

    def triple(shape, low=-2.0, high=2.0, **attrs):
        x = rand(rng, shape, t, low, high)
        return (rand(rng, shape, t), x, _lrn_ref(x, **attrs).astype(npd))

    attrs = {"depth_radius": 2, "bias": 2.0, "alpha": 0.5, "beta": 0.75}
    return [Sample(triple((1, 2, 2, 7)), name="defaults"),
            Sample(triple((2, 1, 3, 6), **attrs), attrs, name="attrs"),
            Sample(triple((1, 2, 1, 4), depth_radius=0), {"depth_radius": 0}, name="radius0"),
            Sample(triple((1, 1, 2, 3), depth_radius=100, beta=1.0),
                   {"depth_radius": 100, "beta": 1.0}, name="radius_beyond_depth"),
            Sample(triple((1, 1, 1, 5), 0.5, 3.0, bias=0.0, beta=2.0),
                   {"bias": 0.0, "beta": 2.0}, name="no_bias"),
            Sample((np.zeros((0, 2, 2, 3), npd),) * 3, name="empty_batch"),
            Sample((np.zeros((1, 2, 2, 0), npd),) * 3, name="no_depth")]


_Z4 = np.zeros((1, 2, 2, 3), F32)
_LRN_GRAD_ERRORS = [
    ErrorCase((np.zeros((2, 2, 3), F32),) * 3, name="rank3",
              regex=r"Shape must be rank 4 but is rank 3 for input 'input_grads'"),
    ErrorCase((_Z4, _Z4, np.zeros((1, 2, 3), F32)), name="output_image_rank3",
              regex=r"Shape must be rank 4 but is rank 3 for input 'output_image'"),
    ErrorCase((_Z4, np.zeros((1, 2, 2, 4), F32), _Z4), name="image_shape_differs",
              regex=r"input_grads, input_image, and output_image should have the same shape, "
                    r"but have shapes \[1,2,2,3\], \[1,2,2,4\] and \[1,2,2,3\]"),
    ErrorCase((_Z4,) * 3, {"depth_radius": -1}, when="build", name="negative_radius",
              regex=r"depth_radius must be in \[0, 2147483647\), but is -1"),
    ErrorCase((np.zeros((1, 1, 1, 2), np.float64),) * 3, when="build", name="double_refused",
              regex=r"has DataType float64 not in list of allowed values"),
]
_LRN_GRAD_SHAPES = [ShapeCase("[?,3,?,5];[2,?,?,5];?", "[2,3,?,5]"),
                    ShapeCase("?;?;?", "[?,?,?,?]"),
                    ShapeCase("[1,2,3,4];[1,2,3,5];?", "should have the same shape",
                              error=InvalidArgumentError)]


# ---------------------------------------------------------------------------- xent
def _log_sum_exp(row):
    top = max(row)
    return top + math.log(math.fsum(math.exp(v - top) for v in row))


def _xent_ref(features, labels):
    f, y = np.broadcast_arrays(np.asarray(features), np.asarray(labels))
    batch, classes = f.shape
    loss = np.zeros(batch, np.float64)
    backprop = np.empty(f.shape, np.float64)
    for i in range(batch):
        row = [f[i, j].item() for j in range(classes)]
        if not row:
            continue
        lse = _log_sum_exp(row)
        loss[i] = math.fsum(y[i, j].item() * (lse - row[j]) for j in range(classes))
        for j in range(classes):
            backprop[i, j] = math.exp(row[j] - lse) - y[i, j].item()
    return loss, backprop


def _distribution(rng, shape, npd):
    p = rng.uniform(0.0, 1.0, shape)
    return (p / np.maximum(p.sum(axis=-1, keepdims=True), 1e-300)).astype(npd)


def _xent_samples(rng, t):
    npd = t.as_numpy_dtype
    big = 1000.0 if npd != np.float16 else 3e4
    return [Sample((rand(rng, (3, 4), t), _distribution(rng, (3, 4), npd)), name="matrix"),
            Sample((np.array([[big, 0.0, -big], [-big, -big, -big]], npd),
                    np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]], npd)), name="large_logits"),
            Sample((rand(rng, (2, 5), t), _distribution(rng, (5,), npd)),
                   name="labels_broadcast"),
            Sample((rand(rng, (1, 3), t), _distribution(rng, (4, 3), npd)),
                   name="features_broadcast"),
            Sample((rand(rng, (3,), t), _distribution(rng, (2, 1), npd)),
                   name="both_broadcast"),
            Sample((np.zeros((0, 3), npd), np.zeros((0, 3), npd)), name="empty_batch"),
            Sample((np.zeros((2, 0), npd), np.zeros((2, 0), npd)), name="no_classes")]


_XENT_ERRORS = [
    ErrorCase((np.zeros((2, 3), F32), np.zeros((2, 4), F32)), name="classes_differ",
              regex=r"Incompatible shapes for broadcasting: \[2, 3\] and \[2, 4\]"),
    ErrorCase((np.zeros((2, 3, 4), F32), np.zeros((2, 3, 4), F32)), name="rank3",
              regex=r"logits and labels must be either 2-dimensional, or broadcast to be "
                    r"2-dimensional, but broadcast to rank 3"),
    ErrorCase((np.zeros(3, F32), np.zeros(3, F32)), name="vectors",
              regex=r"broadcast to be 2-dimensional, but broadcast to rank 1"),
]
# No ShapeCase rows for the cross entropies: the shape DSL reads ``wrapper.output``, which
# two-output wrappers lack; the generic suites still build every sample from placeholders
# of unknown dims and unknown rank.


def _sparse_xent_ref(features, labels):
    features, labels = np.asarray(features), np.asarray(labels)
    batch, classes = features.shape
    loss = np.zeros(batch, np.float64)
    backprop = np.empty(features.shape, np.float64)
    for i in range(batch):
        row = [features[i, j].item() for j in range(classes)]
        lse = _log_sum_exp(row)
        label = int(labels[i])
        loss[i] = lse - row[label]
        for j in range(classes):
            backprop[i, j] = math.exp(row[j] - lse) - (1.0 if j == label else 0.0)
    return loss, backprop


def _sparse_xent_samples(rng, t):
    npd = t.as_numpy_dtype
    big = 1000.0 if npd != np.float16 else 3e4
    return [Sample((rand(rng, (4, 3), t), rng.integers(0, 3, 4).astype(I32)), name="int32"),
            Sample((rand(rng, (3, 5), t), rng.integers(0, 5, 3).astype(I64)), name="int64"),
            Sample((rand(rng, (2, 1), t), np.zeros(2, I64)), name="one_class"),
            Sample((np.array([[big, 0.0, -big], [-big, -big, big]], npd),
                    np.array([1, 2], I32)), name="large_logits"),
            Sample((np.zeros((0, 3), npd), np.zeros(0, I64)), name="empty_batch")]


_SPARSE_XENT_ERRORS = [
    ErrorCase((np.zeros((3, 3), F32), np.array([0, 5, 1], I32)), name="label_too_large",
              regex=r"Received a label value of 5 which is outside the valid range of "
                    r"\[0, 3\)\.  Label values: 0 5 1"),
    ErrorCase((np.zeros((2, 4), F32), np.array([-1, 3], I64)), name="negative_label",
              regex=r"Received a label value of -1 which is outside the valid range of "
                    r"\[0, 4\)"),
    ErrorCase((np.zeros((2, 3), F32), np.array([0, 1, 2], I64)), name="batch_differs",
              regex=r"logits and labels must have the same first dimension, but logits have "
                    r"2 rows and labels have 3 entries"),
    ErrorCase((np.zeros((2, 0), F32), np.array([0, 0], I64)), name="no_classes",
              regex=r"Must have at least one class, but got logits shape \[2,0\]"),
    ErrorCase((np.zeros(3, F32), np.array([0], I64)), name="features_vector",
              regex=r"Shape must be rank 2 but is rank 1 for input 'features'"),
    ErrorCase((np.zeros((2, 3), F32), np.zeros((2, 1), I64)), name="labels_matrix",
              regex=r"Shape must be rank 1 but is rank 2 for input 'labels'"),
    ErrorCase((np.zeros((2, 3), F32), np.zeros(2, np.float32)), when="build",
              name="float_labels", regex=r"has DataType float32 not in list of allowed values"),
]


ENTRIES = [
    OpInfo("BiasAdd", ref=_bias_add_ref, dtypes=NUMBERS + (dt.DT_INT8, dt.DT_UINT8),
           samples=_bias_add_samples, errors=_BIAS_ADD_ERRORS, shapes=_BIAS_ADD_SHAPES,
           grad_tol=1e-6),
    OpInfo("BiasAddV1", ref=_bias_add_ref, dtypes=NUMBERS, samples=_bias_add_v1_samples,
           errors=[e for e in _BIAS_ADD_ERRORS if not e.attrs],
           shapes=[s for s in _BIAS_ADD_SHAPES if not s.attrs], grad_tol=1e-6),
    OpInfo("L2Loss", ref=_l2_loss_ref, samples=_l2_loss_samples,
           errors=[ErrorCase((np.zeros(2, I32),), when="build", name="int32_refused",
                             regex=r"has DataType int32 not in list of allowed values")],
           shapes=[ShapeCase("?", "[]"), ShapeCase("[?,3]", "[]")], grad_tol=1e-6),
    OpInfo("BiasAddGrad", ref=_bias_add_grad_ref, dtypes=NUMBERS + (dt.DT_INT8, dt.DT_UINT8),
           samples=_bias_add_grad_samples, errors=_BIAS_ADD_GRAD_ERRORS,
           shapes=_BIAS_ADD_GRAD_SHAPES, grad_tol=1e-6),
    # No grad_tol for LRN and LRNGrad: they have no float64 kernel (as in TF), and the generic
    # gradient suite needs float64. tests/ops/test_nn_gradients.py checks their float32
    # gradients against float64 finite differences of the references instead.
    OpInfo("LRN", ref=_lrn_ref, dtypes=(dt.DT_FLOAT, dt.DT_HALF), samples=_lrn_samples,
           errors=_LRN_ERRORS, shapes=_LRN_SHAPES),
    OpInfo("LRNGrad", ref=_lrn_grad_ref, dtypes=(dt.DT_FLOAT, dt.DT_HALF),
           samples=_lrn_grad_samples, errors=_LRN_GRAD_ERRORS, shapes=_LRN_GRAD_SHAPES),
    OpInfo("SoftmaxCrossEntropyWithLogits", ref=_xent_ref, samples=_xent_samples,
           errors=_XENT_ERRORS, grad_tol=1e-6),
    OpInfo("SparseSoftmaxCrossEntropyWithLogits", ref=_sparse_xent_ref,
           samples=_sparse_xent_samples, errors=_SPARSE_XENT_ERRORS, grad_tol=1e-6,
           grad_inputs=(0,)),
]
