"""op_db entry of DepthwiseConv2dNative.

The reference is TF's defining formula, looped: output[b, i, j, c * m + q] = sum over taps
(di, dj) of input[b, i*sh + di*dh - pad_top, j*sw + dj*dw - pad_left, c] * filter[di, dj, c, q]
(positions outside the input read 0), with the padding re-derived here in Python integers.
"""

from __future__ import annotations

import numpy as np

from opgraph import dtypes as dt
from opgraph import errors
from tests.op_db import ErrorCase, OpInfo, Sample, ShapeCase, rand

_F = np.float32
_POS = {"NHWC": (1, 2), "NCHW": (2, 3)}
DEPTHWISE_DTYPES = (dt.DT_HALF, dt.DT_BFLOAT16, dt.DT_FLOAT, dt.DT_DOUBLE)


def _out_and_pad(size, k, s, d, padding, before, after):
    eff = (k - 1) * d + 1
    if padding == "SAME":
        out = -(-size // s)
        return out, max((out - 1) * s + eff - size, 0) // 2
    if padding == "VALID":
        before = after = 0
    span = size + before + after
    return ((span - eff) // s + 1 if span >= eff else 0), before


def _depthwise_ref(x, f, *, strides, padding, data_format="NHWC", dilations=(1, 1, 1, 1),
                   explicit_paddings=()):
    hp, wp = _POS[data_format]
    xn = (x if data_format == "NHWC" else x.transpose(0, 2, 3, 1)).astype(np.float64)
    f = f.astype(np.float64)
    n, h, w, c = xn.shape
    kh, kw, _, m = f.shape
    pads = list(explicit_paddings) or [0] * 8
    oh, pt = _out_and_pad(h, kh, strides[hp], dilations[hp], padding, pads[2 * hp],
                          pads[2 * hp + 1])
    ow, pl = _out_and_pad(w, kw, strides[wp], dilations[wp], padding, pads[2 * wp],
                          pads[2 * wp + 1])
    out = np.zeros((n, oh, ow, c * m))
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                for ch in range(c):
                    for q in range(m):
                        acc = 0.0
                        for di in range(kh):
                            for dj in range(kw):
                                r = i * strides[hp] + di * dilations[hp] - pt
                                col = j * strides[wp] + dj * dilations[wp] - pl
                                if 0 <= r < h and 0 <= col < w:
                                    acc += xn[b, r, col, ch] * f[di, dj, ch, q]
                        out[b, i, j, ch * m + q] = acc
    if data_format == "NCHW":
        out = out.transpose(0, 3, 1, 2)
    return out.astype(x.dtype)


def _a(strides, padding, **extra):
    return {"strides": strides, "padding": padding, **extra}


_GRID = [  # (attrs, input shape, filter shape, name)
    (_a([1, 1, 1, 1], "SAME"), (1, 5, 5, 3), (3, 3, 3, 2), "same"),
    (_a([1, 2, 2, 1], "VALID"), (2, 6, 7, 2), (2, 3, 2, 1), "valid_s2"),
    (_a([1, 1, 2, 2], "SAME", data_format="NCHW"), (1, 4, 5, 6), (3, 3, 4, 2), "nchw"),
    (_a([1, 1, 1, 1], "VALID", dilations=[1, 2, 2, 1]), (1, 7, 7, 2), (2, 2, 2, 3), "dilated"),
    (_a([1, 1, 1, 1], "EXPLICIT", explicit_paddings=[0, 0, 1, 2, 0, 1, 0, 0]), (1, 4, 4, 3),
     (3, 3, 3, 1), "explicit"),
    (_a([1, 1, 1, 1], "SAME"), (0, 4, 4, 2), (3, 3, 2, 2), "empty_batch"),
    (_a([1, 1, 1, 1], "VALID"), (1, 4, 4, 1), (2, 2, 1, 4), "one_channel"),
]


def _samples(rng, t):
    tol = (2e-2, 5e-2) if t.name == "float16" else None
    return [Sample((rand(rng, xs, t, -1, 1), rand(rng, fs, t, -1, 1)), a, name=name, tol=tol)
            for a, xs, fs, name in _GRID]


_SAME = _a([1, 1, 1, 1], "SAME")
_ERRORS = [
    ErrorCase((np.zeros((5, 5, 3), _F), np.zeros((3, 3, 3, 1), _F)), _SAME,
              regex="must be rank 4", name="rank"),
    ErrorCase((np.zeros((1, 5, 5, 3), _F), np.zeros((3, 3, 2, 1), _F)), _SAME,
              regex="input and filter must have the same depth: 3 vs 2", name="depth"),
    ErrorCase((np.zeros((1, 2, 2, 1), _F), np.zeros((4, 4, 1, 1), _F)),
              _a([1, 1, 1, 1], "VALID"), regex="Computed output size would be negative",
              name="negative_out"),
    ErrorCase((np.zeros((1, 5, 5, 3), _F), np.zeros((3, 3, 3, 1), _F)),
              _a([1, 1, 2, 1], "SAME"), regex="equal length strides", when="build",
              name="unequal_strides"),
    ErrorCase((np.zeros((1, 5, 5, 3), _F), np.zeros((3, 3, 3, 1), _F)),
              _a([1, 1, 1, 2], "SAME"), regex="strides in the batch and depth",
              error=errors.UnimplementedError, when="build", name="depth_stride"),
    ErrorCase((np.zeros((1, 5, 5, 3), _F), np.zeros((3, 3, 3, 1), _F)),
              _a([1, 1, 1, 1], "EXPLICIT", explicit_paddings=[0, 0, 1, 1]),
              regex="must contain 8 values", when="build", name="explicit_len"),
]

_SHAPES = [
    ShapeCase("[?,8,8,3];[3,3,3,2]", "[d0_0,8,8,6]", _SAME),
    ShapeCase("[?,8,8,?];[3,3,3,2]", "[d0_0,8,8,6]", _SAME),
    ShapeCase("[?,8,8,3];[3,3,?,2]", "[d0_0,8,8,6]", _SAME),
    ShapeCase("[1,8,8,3];[3,3,3,?]", "[1,8,8,?]", _SAME),
    ShapeCase("?;[3,3,3,2]", "[?,?,?,6]", _a([1, 2, 2, 1], "VALID")),
    ShapeCase("[2,3,9,9];[3,3,3,2]", "[2,6,4,4]", _a([1, 1, 2, 2], "VALID", data_format="NCHW")),
    ShapeCase("[2,9,9,3];[3,3,3,1]", "[2,5,5,3]", _a([1, 1, 1, 1], "VALID",
                                                      dilations=[1, 2, 2, 1])),
    ShapeCase("[1,8,8,3];[3,3,4,1]", "same depth: 3 vs 4", _SAME,
              error=errors.InvalidArgumentError),
]

ENTRIES = [
    OpInfo("DepthwiseConv2dNative", ref=_depthwise_ref, dtypes=DEPTHWISE_DTYPES,
           samples=_samples, errors=_ERRORS, shapes=_SHAPES, grad_tol=1e-6),
]
