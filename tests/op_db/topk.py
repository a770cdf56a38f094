"""op_db entries of the top-k ops (TopKV2, InTopKV2, InTopK).

References: TopKV2 by repeated selection (scan for the largest remaining entry, the first one
on ties); InTopK by counting, per row, the predictions strictly above the target's.
"""

from __future__ import annotations

import math

import numpy as np

from opgraph import dtypes as dt
from opgraph import errors
from tests.op_db import REALS, ErrorCase, OpInfo, Sample, ShapeCase, rand

_F = np.float32
_I = np.int32
TOPK_DTYPES = REALS + (dt.DT_BFLOAT16, dt.DT_INT8, dt.DT_INT16, dt.DT_UINT8, dt.DT_UINT16)


def _top_k_ref(x, k, *, sorted=True, index_type=dt.DT_INT32):  # noqa: A002 (TF's attr name)
    k = int(k)
    rows = x.reshape(-1, x.shape[-1])
    values = np.zeros((rows.shape[0], k), x.dtype)
    indices = np.zeros((rows.shape[0], k), index_type.as_numpy_dtype)
    for r, row in enumerate(rows):
        taken = set()
        for j in range(k):
            best = None
            for i, v in enumerate(row.tolist()):
                if i in taken:
                    continue
                if best is None or _greater(v, row[best].item()):
                    best = i
            taken.add(best)
            values[r, j], indices[r, j] = row[best], best
    shape = (*x.shape[:-1], k)
    return values.reshape(shape), indices.reshape(shape)


def _greater(a, b):
    """a ranks strictly above b: NaN above everything, else numeric order."""
    if isinstance(a, float) and math.isnan(a):
        return not (isinstance(b, float) and math.isnan(b))
    return not (isinstance(b, float) and math.isnan(b)) and a > b


def _top_k_samples(rng, t):
    lo, hi = (-4, 4) if np.issubdtype(t.as_numpy_dtype, np.integer) else (-2, 2)
    samples = [
        Sample((rand(rng, (3, 6), t, lo, hi), np.array(3, _I)), name="matrix"),
        Sample((rand(rng, (7,), t, lo, hi), np.array(7, _I)), name="vector_all"),
        Sample((rand(rng, (2, 2, 5), t, lo, hi), np.array(1, _I)), name="k1"),
        Sample((rand(rng, (2, 4), t, lo, hi), np.array(0, _I)), name="k0"),
        Sample((rand(rng, (0, 4), t, lo, hi), np.array(2, _I)), name="empty_rows"),
        Sample((np.array([[1, 3, 1, 3, 2, 3]], t.as_numpy_dtype), np.array(4, np.int64)),
               {"index_type": dt.DT_INT64}, name="ties"),
        Sample((rand(rng, (2, 5), t, lo, hi), np.array(2, np.int16)),
               {"index_type": dt.DT_INT16, "sorted": False}, name="int16"),
    ]
    if t.is_floating:
        nan = np.array([[1.0, np.nan, 3.0, np.nan, -np.inf, np.inf]], t.as_numpy_dtype)
        samples.append(Sample((nan, np.array(4, _I)), name="nan_inf"))
    return samples


def _in_top_k_ref(predictions, targets, k):
    out = np.zeros(len(targets), np.bool_)
    for b, target in enumerate(targets.tolist()):
        row = [float(v) for v in predictions[b]]
        if not all(math.isfinite(v) for v in row):
            continue
        above = sum(1 for v in row if v > row[target])
        out[b] = above < int(k)
    return out


def _in_top_k_inputs(rng, t):
    n = t.as_numpy_dtype
    preds = rand(rng, (4, 5), dt.DT_FLOAT)
    preds[1, 3] = preds[1, 0]                 # a tie at the boundary counts as in
    ties = np.array([[1, 2, 2, 2, 0]], _F)
    bad = np.array([[1, np.nan, 0], [np.inf, 1, 2], [0.5, 1, 2]], _F)
    return [((preds, np.array([0, 3, 4, 2], n)), 2, "random"),
            ((ties, np.array([3], n)), 1, "ties"),
            ((bad, np.array([0, 1, 2], n)), 3, "non_finite"),
            ((np.zeros((0, 3), _F), np.zeros(0, n)), 1, "empty"),
            ((preds, np.array([1, 1, 1, 1], n)), 0, "k0")]


def _in_top_k_v2_samples(rng, t):
    n = t.as_numpy_dtype
    return [Sample((*ins, np.array(k, n)), name=name)
            for ins, k, name in _in_top_k_inputs(rng, t)]


def _in_top_k_samples(rng, t):
    return [Sample(ins, {"k": k}, name=name) for ins, k, name in _in_top_k_inputs(rng, t)]


_X = np.zeros((2, 3), _F)
_TOP_K_ERRORS = [
    ErrorCase((_X, np.array(4, _I)), regex=r"input must have at least k columns. Had 3, "
              r"needed 4", name="k_too_large"),
    ErrorCase((_X, np.array(-1, _I)), regex=r"Need k >= 0, got -1", name="negative_k"),
    ErrorCase((np.zeros((), _F), np.array(0, _I)), regex="must be at least rank 1",
              name="scalar_input"),
    ErrorCase((_X, np.array([1], _I)), regex="must be rank 0.*'k'", name="vector_k"),
]

_P = np.zeros((2, 3), _F)
_IN_TOP_K_V2_ERRORS = [
    ErrorCase((_P, np.array([0, 1, 2], _I), np.array(1, _I)),
              regex="First dimension of predictions 2 must match length of targets 3",
              name="batch"),
    ErrorCase((_P, np.array([0, 3], _I), np.array(1, _I)), regex=r"targets\[1\] is out of "
              r"range", name="target_range"),
    ErrorCase((_P, np.array([-1, 0], np.int64), np.array(1, np.int64)),
              regex=r"targets\[0\] is out of range", name="negative_target"),
    ErrorCase((np.zeros(3, _F), np.array([0], _I), np.array(1, _I)),
              regex="must be rank 2.*'predictions'", name="rank"),
    ErrorCase((_P, np.array([0, 1], _I), np.array([1], _I)), regex="must be rank 0.*'k'",
              name="vector_k"),
]

ENTRIES = [
    OpInfo("TopKV2", ref=_top_k_ref, dtypes=TOPK_DTYPES, samples=_top_k_samples,
           errors=_TOP_K_ERRORS, value_inputs=("k",), grad_tol=1e-6, grad_inputs=(0,)),
    OpInfo("InTopKV2", ref=_in_top_k_ref, dtypes=(dt.DT_INT32, dt.DT_INT64),
           samples=_in_top_k_v2_samples, errors=_IN_TOP_K_V2_ERRORS,
           shapes=[ShapeCase("[?,5];[3];[]", "[3]", dtype=dt.DT_INT32),
                   ShapeCase("?;?;?", "[?]", dtype=dt.DT_INT32),
                   ShapeCase("[4,?];[?];[]", "[4]", dtype=dt.DT_INT32),
                   ShapeCase("[2,5];=[0,7];[]", r"targets\[1\] is out of range",
                             error=errors.InvalidArgumentError, dtype=dt.DT_INT32)]),
    OpInfo("InTopK", ref=lambda p, t, *, k: _in_top_k_ref(p, t, k),
           dtypes=(dt.DT_INT32, dt.DT_INT64), samples=_in_top_k_samples,
           errors=[ErrorCase((_P, np.array([0, 5], _I)), {"k": 1},
                             regex=r"targets\[1\] is out of range", name="target_range"),
                   ErrorCase((_P, np.array([0], _I)), {"k": 1},
                             regex="First dimension of predictions 2 must match",
                             name="batch")],
           shapes=[ShapeCase("[?,5];[3]", "[3]", {"k": 2}, dtype=dt.DT_INT32)]),
]
