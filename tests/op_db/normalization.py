"""op_db entries of the fused batch-norm ops (FusedBatchNorm, V2, V3).

The reference loops over channels and elements in float64 with Python arithmetic: the batch
mean, the biased variance for y, Bessel's correction and the running average for
batch_variance, exactly as TF's CPU functor defines them.
"""

from __future__ import annotations

import math

import numpy as np

from opgraph import dtypes as dt
from tests.op_db import ErrorCase, OpInfo, Sample, rand

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


ENTRIES = [
    OpInfo("FusedBatchNorm", ref=_batch_norm_ref(False), dtypes=(dt.DT_FLOAT,),
           samples=_samples(True, False), errors=_errors(), grad_tol=1e-6,
           grad_inputs=(0, 1, 2)),
    OpInfo("FusedBatchNormV2", ref=_batch_norm_ref(False),
           dtypes=(dt.DT_HALF, dt.DT_BFLOAT16, dt.DT_FLOAT), samples=_samples(False, False),
           errors=_errors(), grad_tol=1e-6, grad_inputs=(0, 1, 2)),
    OpInfo("FusedBatchNormV3", ref=_batch_norm_ref(True),
           dtypes=(dt.DT_HALF, dt.DT_BFLOAT16, dt.DT_FLOAT), samples=_samples(False, True),
           errors=_errors() + [
               ErrorCase((np.zeros((1, 2, 2, 2), _F), np.ones(2, _F), np.ones(2, _F),
                          np.ones(0, _F), np.ones(0, _F)), {"data_format": "NDHWC"},
                         regex="must be rank 5", name="rank5")],
           grad_tol=1e-6, grad_inputs=(0, 1, 2)),
]
