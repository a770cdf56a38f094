"""op_db entries of the fused batch-norm ops (FusedBatchNorm, V2, V3) and of
FusedBatchNormGradV3.

The forward reference loops over channels and elements in float64 with Python arithmetic:
the batch mean, the biased variance for y, Bessel's correction and the running average for
batch_variance, exactly as TF's CPU functor defines them. The gradient reference is central
finite differences in float64 of <y, y_backprop> through the whole normalization, the
statistics recomputed from x in training (so it checks the closed form the kernel uses).

No entry here sets grad_tol: these ops exist for half, bfloat16 and float only, and the
gradient suite's finite differences (delta 1e-6, tolerance 1e-6) need float64; their
gradients are checked against float64 finite differences in
tests/ops/test_pooling_gradients.py instead.
"""

from __future__ import annotations

import math

import numpy as np

from opgraph import dtypes as dt
from opgraph import errors
from tests.op_db import ErrorCase, OpInfo, Sample, ShapeCase, rand

_F = np.float32


def _batch_norm_ref(with_reserve_space_3):
    def ref(x, scale, offset, mean, variance, *, epsilon=1e-4, exponential_avg_factor=1.0,
            data_format="NHWC", is_training=True):
        axis = 1 if data_format.startswith("NC") else x.ndim - 1
        channels = x.shape[axis]
        per_channel = [[] for _ in range(channels)]
        for idx in np.ndindex(*x.shape):
            per_channel[idx[axis]].append(float(x[idx]))
        stats = [np.zeros(channels) for _ in range(4)]
        used = []
        for ch, vals in enumerate(per_channel):
            if not vals:
                for s in stats:
                    s[ch] = math.nan
                used.append((math.nan, math.nan))
                continue
            if is_training:
                m = sum(vals) / len(vals)
                v = sum((a - m) ** 2 for a in vals) / len(vals)
                unbiased = v * len(vals) / max(len(vals) - 1, 1)
                f = exponential_avg_factor
                if f != 1.0:
                    run_m = (1 - f) * float(mean[ch]) + f * m
                    run_v = (1 - f) * float(variance[ch]) + f * unbiased
                else:
                    run_m, run_v = m, unbiased
                stats[0][ch], stats[1][ch], stats[2][ch], stats[3][ch] = run_m, run_v, m, v
            else:
                m, v = float(mean[ch]), float(variance[ch])
                stats[0][ch], stats[1][ch], stats[2][ch], stats[3][ch] = m, v, m, v
            used.append((m, v))
        y = np.zeros(x.shape)
        if x.size:
            for idx in np.ndindex(*x.shape):
                ch = idx[axis]
                m, v = used[ch]
                y[idx] = (float(x[idx]) - m) / math.sqrt(v + epsilon) * float(scale[ch]) \
                    + float(offset[ch])
        outs = [y.astype(x.dtype)] + [s.astype(_F) for s in stats]
        if with_reserve_space_3:
            outs.append(np.zeros((), _F))
        return tuple(outs)
    return ref


def _samples(u_is_t, three_d):
    def samples(rng, t):
        u = t if u_is_t else dt.DT_FLOAT

        def vec(n, lo=-1.0, hi=1.0):
            return rand(rng, (n,), u, lo, hi)

        def case(shape, fmt, training, factor=1.0, stats=True, name=""):
            c = shape[1] if fmt.startswith("NC") else shape[-1]
            k = c if stats else 0
            inputs = (rand(rng, shape, t), vec(c, 0.5, 1.5), vec(c), vec(k), vec(k, 0.5, 2.0))
            attrs = {"data_format": fmt, "is_training": training, "epsilon": 1e-3}
            if factor != 1.0:
                attrs["exponential_avg_factor"] = factor
            tol = (2e-2, 3e-2) if t.name == "float16" else (1e-5, 1e-5)
            return Sample(inputs, attrs, name=name, tol=tol)

        out = [case((2, 3, 3, 4), "NHWC", True, stats=False, name="train_nhwc"),
               case((2, 3, 2, 2), "NCHW", True, factor=0.3, name="train_nchw_running"),
               case((1, 2, 2, 3), "NHWC", False, name="infer_nhwc"),
               case((2, 2, 3, 1), "NCHW", False, name="infer_nchw"),
               case((0, 2, 2, 3), "NHWC", True, stats=False, name="empty_train"),
               case((0, 2, 2, 3), "NHWC", False, name="empty_infer"),
               case((1, 1, 1, 2), "NHWC", True, stats=False, name="one_element")]
        if three_d:
            out += [case((1, 2, 2, 2, 3), "NDHWC", True, stats=False, name="train_ndhwc"),
                    case((2, 3, 1, 2, 2), "NCDHW", False, name="infer_ncdhw")]
        return out
    return samples


def _errors():
    x = np.zeros((2, 2, 2, 3), _F)
    v3, v0, v4 = np.ones(3, _F), np.ones(0, _F), np.ones(4, _F)
    return [
        ErrorCase((np.zeros((2, 2, 3), _F), v3, v3, v3, v3), regex="must be rank 4",
                  name="rank"),
        ErrorCase((x, v4, v3, v0, v0), regex="scale must have the same number of elements as "
                  r"the channels of x, got 4 and 3", name="scale_size"),
        ErrorCase((x, v3, v4, v0, v0), regex="offset must have the same number", name="offset"),
        ErrorCase((x, v3, v3, v0, v3), {"is_training": False},
                  regex="When is_training=false, mean must have the same number of elements",
                  name="infer_mean"),
        ErrorCase((x, v3, v3, v3, v0), {"exponential_avg_factor": 0.5},
                  regex="When exponential_avg_factor != 1, variance must have the same number",
                  name="running_variance"),
        ErrorCase((x, np.ones((1, 3), _F), v3, v0, v0), regex="must be rank 1.*'scale'",
                  name="scale_rank"),
    ]


def _channel_axis(x, data_format):
    return 1 if data_format.startswith("NC") else x.ndim - 1


def _grad_ref(dy, x, scale, reserve_space_1, reserve_space_2, reserve_space_3, *,
              epsilon=1e-4, data_format="NHWC", is_training=True):
    """Finite differences (float64, central, h = 1e-6) of L = sum(y * dy) with respect to
    each element of x, scale and offset, y the normalization of x."""
    axis = _channel_axis(x, data_format)
    c = x.shape[axis]
    dy64, x64, s64 = (a.astype(np.float64) for a in (dy, x, scale))
    o64 = np.zeros(c)
    bshape = [1] * x.ndim
    bshape[axis] = c
    others = tuple(i for i in range(x.ndim) if i != axis)

    def loss(xv, sv, ov):
        if is_training:
            m = xv.mean(axis=others, keepdims=True)
            v = ((xv - m) ** 2).mean(axis=others, keepdims=True)
        else:
            m = reserve_space_1.astype(np.float64).reshape(bshape)
            v = reserve_space_2.astype(np.float64).reshape(bshape)
        y = (xv - m) / np.sqrt(v + epsilon) * sv.reshape(bshape) + ov.reshape(bshape)
        return float(np.sum(y * dy64))

    def fd(k):
        args = [x64, s64, o64]
        out = np.zeros(args[k].shape)
        h = 1e-6
        for idx in np.ndindex(*args[k].shape):
            vals = []
            for sign in (1, -1):
                moved = [a.copy() for a in args]
                moved[k][idx] += sign * h
                vals.append(loss(*moved))
            out[idx] = (vals[0] - vals[1]) / (2 * h)
        return out

    empty = np.zeros(0, _F)
    if x.size == 0:
        return (np.zeros(x.shape, x.dtype), np.zeros(c, _F), np.zeros(c, _F), empty, empty)
    return (fd(0).astype(x.dtype), fd(1).astype(_F), fd(2).astype(_F), empty, empty)


def _grad_samples(rng, t):
    def case(shape, fmt, training, name, eps=1e-3):
        x = rand(rng, shape, t)
        axis = _channel_axis(x, fmt)
        c = shape[axis]
        others = tuple(i for i in range(len(shape)) if i != axis)
        if training and x.size:
            x64 = x.astype(np.float64)
            mean = x64.mean(axis=others)
            var = ((x64 - np.expand_dims(mean, others)) ** 2).mean(axis=others)
            mean, var = mean.astype(_F), var.astype(_F)
        else:
            mean, var = rand(rng, (c,), _F, -1, 1), rand(rng, (c,), _F, 0.5, 2.0)
        inputs = (rand(rng, shape, t), x, rand(rng, (c,), _F, 0.5, 1.5), mean, var,
                  np.zeros((), _F))
        tol = (2e-2, 3e-2) if t.name == "float16" else None
        attrs = {"data_format": fmt, "is_training": training, "epsilon": eps}
        return Sample(inputs, attrs, name=name, tol=tol)

    return [case((2, 3, 3, 4), "NHWC", True, "train_nhwc"),
            case((2, 3, 2, 2), "NCHW", True, "train_nchw"),
            case((1, 2, 2, 3), "NHWC", False, "infer_nhwc"),
            case((2, 2, 3, 1), "NCHW", False, "infer_nchw"),
            case((1, 2, 2, 2, 3), "NDHWC", True, "train_ndhwc"),
            case((2, 3, 1, 2, 2), "NCDHW", False, "infer_ncdhw"),
            case((0, 2, 2, 3), "NHWC", True, "empty_train"),
            case((1, 1, 1, 2), "NHWC", True, "one_element")]


def _grad_errors():
    x = np.zeros((2, 2, 2, 3), _F)
    v3, v2, s = np.ones(3, _F), np.ones(2, _F), np.zeros((), _F)
    return [
        ErrorCase((np.zeros((2, 2, 2, 2), _F), x, v3, v3, v3, s),
                  regex=r"x and y_backprop must have same shape, but x has shape \[2,2,2,3\] "
                  r"and y_backprop has shape \[2,2,2,2\]", name="shapes"),
        ErrorCase((x, x, v2, v3, v3, s), regex="scale must have the same number of elements "
                  "as the channels of x, got 2 and 3", name="scale"),
        ErrorCase((x, x, v3, v2, v3, s), regex="reserve_space_1 must have the same number",
                  name="reserve_space_1"),
        ErrorCase((x, x, v3, v3, v2, s), {"is_training": False},
                  regex="reserve_space_2 must have the same number", name="reserve_space_2"),
        ErrorCase((x[0], x[0], v3, v3, v3, s), regex="must be rank 4", name="rank"),
        ErrorCase((x, x, v3, v3, v3, s), {"data_format": "NCDHW"}, regex="must be rank 5",
                  name="rank5"),
        ErrorCase((x, x, np.ones((1, 3), _F), v3, v3, s), regex="must be rank 1.*'scale'",
                  name="scale_rank"),
    ]


ENTRIES = [
    OpInfo("FusedBatchNorm", ref=_batch_norm_ref(False), dtypes=(dt.DT_FLOAT,),
           samples=_samples(True, False), errors=_errors()),
    OpInfo("FusedBatchNormV2", ref=_batch_norm_ref(False),
           dtypes=(dt.DT_HALF, dt.DT_BFLOAT16, dt.DT_FLOAT), samples=_samples(False, False),
           errors=_errors()),
    OpInfo("FusedBatchNormV3", ref=_batch_norm_ref(True),
           dtypes=(dt.DT_HALF, dt.DT_BFLOAT16, dt.DT_FLOAT), samples=_samples(False, True),
           errors=_errors() + [
               ErrorCase((np.zeros((1, 2, 2, 2), _F), np.ones(2, _F), np.ones(2, _F),
                          np.ones(0, _F), np.ones(0, _F)), {"data_format": "NDHWC"},
                         regex="must be rank 5", name="rank5")]),
    OpInfo("FusedBatchNormGradV3", ref=_grad_ref, dtypes=(dt.DT_HALF, dt.DT_BFLOAT16, dt.DT_FLOAT),
           samples=_grad_samples, errors=_grad_errors(),
           shapes=[ShapeCase("[?,4,4,3];[2,?,?,?];[?];[?];[?];[]", "[2,4,4,3]"),
                   ShapeCase("[?,4,4,?];?;[?];[3];?;?", "[3]", output=1),
                   ShapeCase("?;?;?;?;?;?", "[?,?,?,?]", {"data_format": "NCHW"}),
                   ShapeCase("?;?;?;?;?;?", "[?,?,?,?,?]", {"data_format": "NDHWC"}),
                   ShapeCase("?;?;[?];[?];[?];?", "[0]", output=4),
                   ShapeCase("[2,3,4,4];[2,3,4,?];[3];[4];[3];[]",
                             "reserve_space_1 must have the same number of elements",
                             {"data_format": "NCHW"}, error=errors.InvalidArgumentError)]),
]
