"""op_db entries of the elementwise math ops."""

from __future__ import annotations

import numpy as np

from opgraph import dtypes as dt
from tests.op_db import NUMBERS, ErrorCase, OpInfo, Sample, ShapeCase, rand


def _binary_samples(rng, t):
    return [Sample((rand(rng, (2, 3), t), rand(rng, (2, 3), t)), name="same"),
            Sample((rand(rng, (2, 1, 4), t), rand(rng, (3, 1), t)), name="broadcast"),
            Sample((rand(rng, (), t), rand(rng, (0, 2), t)), name="empty"),
            Sample((rand(rng, (3,), t), rand(rng, (), t)), name="scalar")]


_BINARY_ERRORS = [ErrorCase((np.zeros((2, 3), np.float32), np.zeros((4,), np.float32)),
                            regex=r"Incompatible shapes for broadcasting: \[2, 3\] and \[4\]")]
_BINARY_SHAPES = [ShapeCase("[2,?,4];[3,1]", "[2,3,4]"), ShapeCase("?;[3]", "?"),
                  ShapeCase("[?];[5]", "[5]")]

ENTRIES = [
    OpInfo("AddV2", ref=np.add, dtypes=NUMBERS + (dt.DT_INT8, dt.DT_UINT8),
           samples=_binary_samples, errors=_BINARY_ERRORS, shapes=_BINARY_SHAPES,
           grad_tol=1e-6),
]
