"""op_db entries: Const, Placeholder, PlaceholderWithDefault, Identity, Shape."""

from __future__ import annotations

import numpy as np

from opgraph import dtypes as dt
from tests.op_db import FLOATS, INTS, OpInfo, Sample, ShapeCase, rand

ALL_NUMERIC = FLOATS + INTS + (dt.DT_BOOL, dt.DT_UINT8, dt.DT_COMPLEX64)

ENTRIES = [
    OpInfo("Const", skip_generic="no inputs to vary; typing, fill form and copying are "
                                 "tested in tests/ops/test_wrappers.py and test_const_fill"),
    OpInfo("Placeholder", skip_generic="no inputs; feeding is tested in "
                                       "tests/runtime/test_session.py"),
    OpInfo("PlaceholderWithDefault",
           ref=lambda x, *, shape=None: x,
           dtypes=ALL_NUMERIC,
           samples=lambda rng, t: [Sample((rand(rng, (2, 3), t),),
                                          {"shape": [None, 3]})],
           exact_from_constants=False,
           shapes=[ShapeCase("[2,3]", "[?,3]", {"shape": [None, 3]}),
                   ShapeCase("[2,3]", "not compatible", {"shape": [4]},
                             error=__import__("opgraph").errors.InvalidArgumentError)]),
    OpInfo("Identity",
           ref=lambda x: x, dtypes=ALL_NUMERIC,
           samples=lambda rng, t: [Sample((rand(rng, (2, 3), t),)),
                                   Sample((rand(rng, (), t),), name="scalar"),
                                   Sample((rand(rng, (0, 4), t),), name="empty")],
           shapes=[ShapeCase("[?,3]", "[d0_0,3]"), ShapeCase("?", "?")]),
    OpInfo("Shape",
           ref=lambda x, *, out_type=dt.DT_INT32: np.array(np.shape(x),
                                                           out_type.as_numpy_dtype),
           dtypes=(dt.DT_FLOAT, dt.DT_INT32, dt.DT_BOOL),
           samples=lambda rng, t: [Sample((rand(rng, (2, 3, 1), t),)),
                                   Sample((rand(rng, (), t),), name="scalar"),
                                   Sample((rand(rng, (0, 5), t),), {"out_type": dt.DT_INT64},
                                          name="int64")],
           shapes=[ShapeCase("[?,3]", "[2]"), ShapeCase("?", "[?]")]),
]
