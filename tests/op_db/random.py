"""op_db entries of the random ops: their values are tested statistically and for seeding in
tests/runtime/test_random.py; the generic suites check shapes, dtypes and errors."""

from __future__ import annotations

import numpy as np

from opgraph import dtypes as dt
from tests.op_db import ErrorCase, OpInfo, Sample, ShapeCase

_FLOATS = (dt.DT_HALF, dt.DT_FLOAT, dt.DT_DOUBLE)


def _float_samples(rng, t):
    return [Sample((np.array([2, 3], np.int32),), {"dtype": t, "seed": 7}),
            Sample((np.array([0, 4], np.int64),), {"dtype": t}, name="empty")]


_NEG = ErrorCase((np.array([2, -3], np.int32),), {"dtype": dt.DT_FLOAT},
                 regex="must be non-negative")
_SHAPES = [ShapeCase("=[2,5]", "[2,5]", {"dtype": dt.DT_FLOAT}, dtype=dt.DT_INT32),
           ShapeCase("[3]", "[?,?,?]", {"dtype": dt.DT_FLOAT}, dtype=dt.DT_INT32),
           ShapeCase("shape_of:[?,4]", "[?,4]", {"dtype": dt.DT_FLOAT}, dtype=dt.DT_INT32)]

ENTRIES = [OpInfo(name, dtypes=_FLOATS, samples=_float_samples, errors=[_NEG], shapes=_SHAPES)
           for name in ("RandomUniform", "RandomStandardNormal", "TruncatedNormal")] + [
    OpInfo("RandomUniformInt", dtypes=(dt.DT_INT32, dt.DT_INT64),
           samples=lambda rng, t: [Sample((np.array([3, 2], np.int32),
                                           np.array(-5, t.as_numpy_dtype),
                                           np.array(5, t.as_numpy_dtype)), {"seed2": 3})],
           errors=[ErrorCase((np.array([2], np.int32), np.int32(5), np.int32(5)),
                             regex="Need minval < maxval")]),
    OpInfo("RandomShuffle", dtypes=(dt.DT_FLOAT, dt.DT_INT32),
           samples=lambda rng, t: [Sample((np.arange(12).reshape(4, 3).astype(
               t.as_numpy_dtype),), {"seed": 1})]),
]
