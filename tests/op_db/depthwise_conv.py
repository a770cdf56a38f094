"""op_db entries of DepthwiseConv2dNative and its backward ops.

The references are TF's defining formula, looped: output[b, i, j, c * m + q] = sum over taps
(di, dj) of input[b, i*sh + di*dh - pad_top, j*sw + dj*dw - pad_left, c] * filter[di, dj, c, q]
(positions outside the input read 0), with the padding re-derived here in Python integers;
the backward references run the same loops and scatter each product's partner instead
(input gradient: filter * out_backprop into the input position; filter gradient: input *
out_backprop into the filter tap). The first three samples of each grid (the gradient suite's)
cover NCHW, SAME, VALID and EXPLICIT padding, strides 2 and dilations.
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


def _geometry(x_shape, f_shape, strides, padding, data_format, dilations, explicit_paddings):
    """((n, h, w, c), (kh, kw, m), (oh, ow), (pad_top, pad_left), (sh, sw), (dh, dw))."""
    hp, wp = _POS[data_format]
    n, h, w, c = (x_shape if data_format == "NHWC" else
                  (x_shape[0], x_shape[2], x_shape[3], x_shape[1]))
    kh, kw, _, m = f_shape
    pads = list(explicit_paddings) or [0] * 8
    oh, pt = _out_and_pad(h, kh, strides[hp], dilations[hp], padding, pads[2 * hp],
                          pads[2 * hp + 1])
    ow, pl = _out_and_pad(w, kw, strides[wp], dilations[wp], padding, pads[2 * wp],
                          pads[2 * wp + 1])
    return ((n, h, w, c), (kh, kw, m), (oh, ow), (pt, pl), (strides[hp], strides[wp]),
            (dilations[hp], dilations[wp]))


def _products(geometry):
    """Every (b, r, col, ch, di, dj, q, i, j) with input (b, r, col, ch) inside the input,
    read by output (b, i, j, ch * m + q) through filter tap (di, dj, ch, q)."""
    (n, h, w, c), (kh, kw, m), (oh, ow), (pt, pl), (sh, sw), (dh, dw) = geometry
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                for di in range(kh):
                    r = i * sh + di * dh - pt
                    for dj in range(kw):
                        col = j * sw + dj * dw - pl
                        if 0 <= r < h and 0 <= col < w:
                            for ch in range(c):
                                for q in range(m):
                                    yield b, r, col, ch, di, dj, q, i, j


def _nhwc(a, data_format):
    return (a if data_format == "NHWC" else a.transpose(0, 2, 3, 1)).astype(np.float64)


def _from_nhwc(a, data_format, dtype):
    return (a if data_format == "NHWC" else a.transpose(0, 3, 1, 2)).astype(dtype)


def _depthwise_ref(x, f, *, strides, padding, data_format="NHWC", dilations=(1, 1, 1, 1),
                   explicit_paddings=()):
    g = _geometry(x.shape, f.shape, strides, padding, data_format, dilations,
                  explicit_paddings)
    (n, _, _, c), (_, _, m), (oh, ow) = g[:3]
    xn, f64 = _nhwc(x, data_format), f.astype(np.float64)
    out = np.zeros((n, oh, ow, c * m))
    for b, r, col, ch, di, dj, q, i, j in _products(g):
        out[b, i, j, ch * m + q] += xn[b, r, col, ch] * f64[di, dj, ch, q]
    return _from_nhwc(out, data_format, x.dtype)


def _backprop_input_ref(input_sizes, f, dy, *, strides, padding, data_format="NHWC",
                        dilations=(1, 1, 1, 1), explicit_paddings=()):
    shape = tuple(int(v) for v in input_sizes)
    g = _geometry(shape, f.shape, strides, padding, data_format, dilations, explicit_paddings)
    m = g[1][2]
    dyn, f64 = _nhwc(dy, data_format), f.astype(np.float64)
    dx = np.zeros(g[0])
    for b, r, col, ch, di, dj, q, i, j in _products(g):
        dx[b, r, col, ch] += f64[di, dj, ch, q] * dyn[b, i, j, ch * m + q]
    return _from_nhwc(dx, data_format, dy.dtype)


def _backprop_filter_ref(x, filter_sizes, dy, *, strides, padding, data_format="NHWC",
                         dilations=(1, 1, 1, 1), explicit_paddings=()):
    f_shape = tuple(int(v) for v in filter_sizes)
    g = _geometry(x.shape, f_shape, strides, padding, data_format, dilations,
                  explicit_paddings)
    m = f_shape[3]
    xn, dyn = _nhwc(x, data_format), _nhwc(dy, data_format)
    df = np.zeros(f_shape)
    for b, r, col, ch, di, dj, q, i, j in _products(g):
        df[di, dj, ch, q] += xn[b, r, col, ch] * dyn[b, i, j, ch * m + q]
    return df.astype(dy.dtype)


def _a(strides, padding, **extra):
    return {"strides": strides, "padding": padding, **extra}


_GRID = [  # (attrs, input shape, filter shape, name); the first three: the gradient suite's
    (_a([1, 1, 2, 2], "SAME", data_format="NCHW"), (1, 4, 5, 6), (3, 3, 4, 2), "nchw"),
    (_a([1, 1, 1, 1], "EXPLICIT", explicit_paddings=[0, 0, 2, 1, 1, 2, 0, 0],
        dilations=[1, 2, 2, 1]), (1, 5, 4, 2), (2, 3, 2, 2), "explicit_dilated"),
    (_a([1, 2, 2, 1], "VALID"), (2, 6, 7, 2), (2, 3, 2, 1), "valid_s2"),
    (_a([1, 1, 1, 1], "SAME"), (1, 5, 5, 3), (3, 3, 3, 2), "same"),
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


def _out_shape(attrs, xs, fs):
    g = _geometry(xs, fs, attrs["strides"], attrs["padding"], attrs.get("data_format", "NHWC"),
                  attrs.get("dilations", (1, 1, 1, 1)), attrs.get("explicit_paddings", ()))
    (n, _, _, c), (_, _, m), (oh, ow) = g[:3]
    return (n, oh, ow, c * m) if attrs.get("data_format", "NHWC") == "NHWC" else \
        (n, c * m, oh, ow)


def _backprop_samples(which):
    def samples(rng, t):
        tol = (2e-2, 5e-2) if t.name == "float16" else None
        out = []
        for a, xs, fs, name in _GRID:
            dy = rand(rng, _out_shape(a, xs, fs), t, -1, 1)
            if which == "input":
                inputs = (np.array(xs, np.int32), rand(rng, fs, t, -1, 1), dy)
            else:
                inputs = (rand(rng, xs, t, -1, 1), np.array(fs, np.int32), dy)
            out.append(Sample(inputs, a, name=name, tol=tol))
        return out
    return samples


def _backprop_errors(which):
    label = "DepthwiseConv2D" + ("BackpropInput" if which == "input" else "BackpropFilter")

    def case(xs, fs, dys, regex, attrs=_SAME, name="", **kw):
        dy = np.zeros(dys, _F)
        if which == "input":
            inputs = (np.array(xs, np.int32), np.zeros(fs, _F), dy)
        else:
            inputs = (np.zeros(xs, _F), np.array(fs, np.int32), dy)
        return ErrorCase(inputs, attrs, regex=regex, name=name, **kw)

    sizes = "input_sizes" if which == "input" else "filter_sizes"
    tensor = "input" if which == "input" else "filter"
    bad_sizes = ((1, 5, 5), (3, 3, 3, 1)) if which == "input" else ((1, 5, 5, 3), (3, 3, 3))
    negative = ((1, -5, 5, 3), (3, 3, 3, 1)) if which == "input" else \
        ((1, 5, 5, 3), (3, -3, 3, 1))
    return [
        case(*bad_sizes, (1, 5, 5, 3), f"{label}: {tensor} must be 4-dimensional, but {sizes} "
             "has 3 values", name="sizes_len"),
        case(*negative, (1, 5, 5, 3), f"{label}: dimension 1 of {sizes} must be >= 0",
             name="negative_size"),
        case((1, 5, 5, 3), (3, 3, 2, 1), (1, 5, 5, 3),
             f"{label}: input and filter must have the same in_depth", name="in_depth"),
        case((1, 5, 5, 3), (3, 3, 3, 2), (1, 5, 5, 3),
             rf"{label}: depth_multiplier \* in_depth not equal to out_depth: 2 \* 3 != 3",
             name="out_depth"),
        case((1, 5, 5, 3), (3, 3, 3, 1), (1, 4, 5, 3),
             f"{label}: Number of rows of out_backprop doesn't match computed: actual = 4, "
             "computed = 5", name="rows"),
        case((1, 5, 5, 3), (3, 3, 3, 1), (1, 3, 5, 3), "Number of cols of out_backprop doesn't "
             "match computed: actual = 5, computed = 3", _a([1, 1, 1, 1], "VALID"),
             name="cols"),
        case((1, 5, 5, 3), (3, 3, 3, 1), (2, 5, 5, 3),
             f"{label}: input and out_backprop must have the same batch size", name="batch"),
        case((1, 5, 5, 3), (3, 3, 3, 1), (1, 5, 5, 3), "equal length strides",
             _a([1, 2, 1, 1], "SAME"), when="build", name="unequal_strides"),
    ]


_SAME_S1 = _a([1, 1, 1, 1], "SAME")
ENTRIES = [
    OpInfo("DepthwiseConv2dNative", ref=_depthwise_ref, dtypes=DEPTHWISE_DTYPES,
           samples=_samples, errors=_ERRORS, shapes=_SHAPES, grad_tol=1e-6),
    OpInfo("DepthwiseConv2dNativeBackpropInput", ref=_backprop_input_ref,
           dtypes=DEPTHWISE_DTYPES, samples=_backprop_samples("input"),
           errors=_backprop_errors("input"), value_inputs=("input_sizes",),
           shapes=[ShapeCase("=[1,8,8,3];[3,3,3,2];[?,8,8,6]", "[1,8,8,3]", _SAME_S1),
                   ShapeCase("[4];[3,3,3,2];[2,8,8,6]", "[2,?,?,3]", _SAME_S1),
                   ShapeCase("[4];[3,3,?,2];[2,8,8,6]", "[2,?,?,3]", _SAME_S1),
                   ShapeCase("shape_of:[?,8,8,3];[3,3,3,2];[2,8,8,6]", "[2,8,8,3]", _SAME_S1),
                   ShapeCase("?;?;?", "[?,?,?,?]", _SAME_S1),
                   ShapeCase("=[1,8,8,3];[3,3,3,2];[1,8,8,5]", "not equal to out_depth",
                             _SAME_S1, error=errors.InvalidArgumentError)],
           grad_tol=1e-6),
    OpInfo("DepthwiseConv2dNativeBackpropFilter", ref=_backprop_filter_ref,
           dtypes=DEPTHWISE_DTYPES, samples=_backprop_samples("filter"),
           errors=_backprop_errors("filter"), value_inputs=("filter_sizes",),
           shapes=[ShapeCase("[2,8,8,3];=[3,3,3,2];[2,8,8,?]", "[3,3,3,2]", _SAME_S1),
                   ShapeCase("[2,8,8,3];[4];[2,8,8,6]", "[?,?,3,2]", _SAME_S1),
                   ShapeCase("[2,8,8,?];[4];[2,8,8,6]", "[?,?,?,?]", _SAME_S1),
                   ShapeCase("?;?;?", "[?,?,?,?]", _SAME_S1),
                   ShapeCase("[2,8,8,3];=[3,3,3,2];[2,7,8,6]", "Number of rows",
                             _SAME_S1, error=errors.InvalidArgumentError)],
           grad_tol=1e-6),
]
