"""op_db entries of the convolution ops (the exhaustive suites are tests/runtime/test_conv_*)."""

from __future__ import annotations

import numpy as np

from opgraph import dtypes as dt
from opgraph import errors
from opgraph.windows import conv_params
from tests import reference
from tests.op_db import ErrorCase, OpInfo, Sample, ShapeCase, rand

CONV_DTYPES = (dt.DT_HALF, dt.DT_FLOAT, dt.DT_DOUBLE, dt.DT_INT32)
FILTER_GRAD_DTYPES = (dt.DT_HALF, dt.DT_FLOAT, dt.DT_DOUBLE)
#: (attrs, input shape, filter shape). The first three (the gradient suite's float64 samples)
#: cover strides 1 and 2, dilations 1 and 2, SAME, EXPLICIT and VALID padding, 1 and 2 groups,
#: NHWC and NCHW.
_GRID = [({"strides": [1, 2, 1, 1], "padding": "SAME", "dilations": [1, 1, 2, 1]},
          (1, 5, 6, 4), (2, 3, 2, 4)),                       # grouped: 2 groups
         ({"strides": [1, 1, 1, 2], "padding": "EXPLICIT", "data_format": "NCHW",
           "explicit_paddings": [0, 0, 0, 0, 1, 2, 0, 1], "dilations": [1, 1, 2, 1]},
          (1, 3, 5, 4), (2, 2, 3, 2)),
         ({"strides": [1, 2, 2, 1], "padding": "VALID"}, (2, 5, 6, 2), (3, 2, 2, 3)),
         ({"strides": [1, 1, 1, 1], "padding": "SAME"}, (1, 5, 5, 4), (3, 3, 4, 6)),
         ({"strides": [1, 2, 2, 1], "padding": "VALID"}, (2, 7, 6, 4), (3, 2, 4, 3)),
         ({"strides": [1, 1, 1, 1], "padding": "EXPLICIT",
           "explicit_paddings": [0, 0, 1, 2, 0, 1, 0, 0]}, (1, 4, 4, 3), (3, 3, 3, 2)),
         ({"strides": [1, 1, 2, 2], "padding": "SAME", "data_format": "NCHW"},
          (2, 4, 5, 6), (3, 3, 4, 2))]


def _geometry(attrs, x_shape, w_shape):
    p = conv_params({"dilations": [1, 1, 1, 1], "explicit_paddings": [],
                     "data_format": "NHWC", **attrs})
    _, h, w, _ = p.split(x_shape)
    pads = p.pads_before((h, w), w_shape[:2])
    out_hw = (p.out_size(0, h, w_shape[0]), p.out_size(1, w, w_shape[1]))
    return p, pads, out_hw


def _lowp(t):
    return t.name in ("float16", "int32")


def _conv2d_ref(x, w, **attrs):
    p, pads, out_hw = _geometry(attrs, x.shape, w.shape)
    return reference.conv2d_forward_ref(x, w, p.strides, p.dilations, pads, out_hw,
                                        p.data_format).astype(x.dtype)


def _conv2d_samples(rng, t):
    lo, hi = (-3, 3) if t.name == "int32" else (-1, 1)
    return [Sample((rand(rng, x, t, lo, hi), rand(rng, w, t, lo, hi)), a,
                   tol=(2e-2, 5e-2) if t.name == "float16" else None)
            for a, x, w in _GRID]


def _dy_shape(attrs, x_shape, w_shape):
    p, _, out_hw = _geometry(attrs, x_shape, w_shape)
    n = p.split(x_shape)[0]
    return tuple(p.join(n, out_hw[0], out_hw[1], w_shape[3]).dims)


def _backprop_ref(x_shape, w, dy, attrs):
    p, pads, _ = _geometry(attrs, x_shape, w.shape)
    return reference.conv2d_backprop_input_ref(dy, w, tuple(x_shape), p.strides, p.dilations,
                                               pads, p.data_format).astype(dy.dtype)


def _v2_samples(rng, t):
    lo, hi = (-3, 3) if t.name == "int32" else (-1, 1)
    return [Sample((rand(rng, x, t), rand(rng, w, t, lo, hi),
                    rand(rng, _dy_shape(a, x, w), t, lo, hi)), a,
                   tol=(2e-2, 5e-2) if t.name == "float16" else None)
            for a, x, w in _GRID]


def _v1_samples(rng, t):
    return [Sample((np.array(x, np.int32), w, dy), s.attrs, tol=s.tol)
            for s, (_, x, _) in zip(_v2_samples(rng, t), _GRID) for _, w, dy in [s.inputs]]


def conv2d_backprop_filter_ref(x, dy, filter_shape, strides, dilations, pads_before,
                               data_format="NHWC"):
    """Direct loops, in float64: dw[di, dj, c, o] = sum over images n and output pixels (i, j)
    whose source position (i*sh + di*dh - pt, j*sw + dj*dw - pl) lies inside x of
    x[n, h, w, g*cig + c] * dy[n, i, j, o], g = o // (cout // groups)."""
    xs = np.asarray(x, np.float64)
    ds = np.asarray(dy, np.float64)
    if data_format == "NCHW":
        xs, ds = xs.transpose(0, 2, 3, 1), ds.transpose(0, 2, 3, 1)
    n, h, wd, cin = xs.shape
    _, oh, ow, cout = ds.shape
    kh, kw, cig, _ = (int(v) for v in filter_shape)
    groups = cin // cig if cig else 1
    cog = cout // groups if groups else 0
    dw = np.zeros((kh, kw, cig, cout))
    for di in range(kh):
        for dj in range(kw):
            for i in range(oh):
                hh = i * strides[0] + di * dilations[0] - pads_before[0]
                if not 0 <= hh < h:
                    continue
                for j in range(ow):
                    ww = j * strides[1] + dj * dilations[1] - pads_before[1]
                    if not 0 <= ww < wd:
                        continue
                    for g in range(groups):
                        for b in range(n):
                            dw[di, dj, :, g * cog:(g + 1) * cog] += np.outer(
                                xs[b, hh, ww, g * cig:(g + 1) * cig],
                                ds[b, i, j, g * cog:(g + 1) * cog])
    return dw


def _backprop_filter_ref(x, w_shape, dy, attrs):
    p, pads, _ = _geometry(attrs, x.shape, w_shape)
    return conv2d_backprop_filter_ref(x, dy, w_shape, p.strides, p.dilations, pads,
                                      p.data_format).astype(x.dtype)


#: extra filter-gradient samples: an empty batch and a filter of height 0 (empty dw)
_FILTER_EMPTY = [({"strides": [1, 1, 1, 1], "padding": "SAME"}, (0, 5, 5, 4), (3, 3, 4, 6)),
                 ({"strides": [1, 1, 1, 1], "padding": "VALID"}, (1, 5, 5, 2), (0, 3, 2, 4))]


def _filter_v2_samples(rng, t):
    out = []
    for a, x, w in _GRID + _FILTER_EMPTY:
        dy_shape = _dy_shape(a, x, w)
        out.append(Sample((rand(rng, x, t), rand(rng, w, t), rand(rng, dy_shape, t)), a,
                          tol=(2e-2, 5e-2) if t.name == "float16" else None))
    return out


def _filter_v1_samples(rng, t):
    return [Sample((x, np.array(w.shape, np.int32), dy), s.attrs, tol=s.tol)
            for s in _filter_v2_samples(rng, t) for x, w, dy in [s.inputs]]


_F = np.float32
_BAD_RANK = ErrorCase((np.zeros((1, 5, 5), _F), np.zeros((3, 3, 4, 2), _F)),
                      {"strides": [1, 1, 1, 1], "padding": "SAME"}, regex="must be rank 4")
_BAD_DEPTH = ErrorCase((np.zeros((1, 5, 5, 5), _F), np.zeros((3, 3, 2, 2), _F)),
                       {"strides": [1, 1, 1, 1], "padding": "SAME"},
                       regex="evenly divisible by filter in_depth")

ENTRIES = [
    OpInfo("Conv2D", ref=_conv2d_ref, dtypes=CONV_DTYPES, samples=_conv2d_samples,
           errors=[_BAD_RANK, _BAD_DEPTH,
                   ErrorCase((np.zeros((1, 5, 5, 4), _F), np.zeros((3, 3, 4, 2), _F)),
                             {"strides": [1, 0, 1, 1], "padding": "SAME"}, when="build",
                             regex="strides")],
           shapes=[ShapeCase("[?,8,8,3];[3,3,3,16]", "[d0_0,8,8,16]",
                             {"strides": [1, 1, 1, 1], "padding": "SAME"})],
           grad_tol=1e-6),
    OpInfo("Conv2DBackpropInputV2",
           ref=lambda x, w, dy, **a: _backprop_ref(x.shape, w, dy, a),
           dtypes=CONV_DTYPES, samples=_v2_samples,
           errors=[ErrorCase((np.zeros((1, 5, 5, 4), _F), np.zeros((3, 3, 4, 2), _F),
                              np.zeros((1, 4, 5, 2), _F)),
                             {"strides": [1, 1, 1, 1], "padding": "SAME"},
                             regex="Size of out_backprop doesn't match computed")],
           grad_tol=1e-6, grad_inputs=(1, 2)),
    OpInfo("Conv2DBackpropInput",
           ref=lambda s, w, dy, **a: _backprop_ref(tuple(s), w, dy, a),
           dtypes=CONV_DTYPES, samples=_v1_samples, value_inputs=("input_sizes",),
           errors=[ErrorCase((np.array([1, 5, 5, 4], np.int32), np.zeros((3, 3, 4, 2), _F),
                              np.zeros((1, 9, 9, 2), _F)),
                             {"strides": [1, 1, 1, 1], "padding": "SAME"},
                             regex="Size of out_backprop doesn't match computed"),
                   ErrorCase((np.array([1, 5, 5, 1], np.int32), np.zeros((3, 3, 4, 2), _F),
                              np.zeros((1, 5, 5, 2), _F)),
                             {"strides": [1, 1, 1, 1], "padding": "SAME"},
                             regex="evenly divisible|strictly greater")],
           grad_tol=1e-6),
    OpInfo("Conv2DBackpropFilterV2",
           ref=lambda x, w, dy, **a: _backprop_filter_ref(x, w.shape, dy, a),
           dtypes=FILTER_GRAD_DTYPES, samples=_filter_v2_samples,
           errors=[ErrorCase((np.zeros((1, 5, 5, 4), _F), np.zeros((3, 3, 4, 2), _F),
                              np.zeros((1, 4, 5, 2), _F)),
                             {"strides": [1, 1, 1, 1], "padding": "SAME"},
                             regex="Size of out_backprop doesn't match computed"),
                   ErrorCase((np.zeros((1, 5, 5, 5), _F), np.zeros((3, 3, 2, 2), _F),
                              np.zeros((1, 5, 5, 2), _F)),
                             {"strides": [1, 1, 1, 1], "padding": "SAME"},
                             regex="evenly divisible by filter in_depth"),
                   ErrorCase((np.zeros((2, 5, 5, 4), _F), np.zeros((3, 3, 4, 2), _F),
                              np.zeros((1, 5, 5, 2), _F)),
                             {"strides": [1, 1, 1, 1], "padding": "SAME"},
                             regex="same batch size")],
           shapes=[ShapeCase("[?,8,8,3];[3,3,?,?];[?,8,8,16]", "[3,3,?,16]",
                             {"strides": [1, 1, 1, 1], "padding": "SAME"}),
                   ShapeCase("[?,8,8,6];[3,3,3,16];[?,4,4,15]", "same out_depth",
                             {"strides": [1, 2, 2, 1], "padding": "SAME"},
                             error=errors.InvalidArgumentError)],
           grad_tol=1e-6, grad_inputs=(0, 2)),
    OpInfo("Conv2DBackpropFilter",
           ref=lambda x, s, dy, **a: _backprop_filter_ref(x, tuple(s), dy, a),
           dtypes=FILTER_GRAD_DTYPES, samples=_filter_v1_samples, value_inputs=("filter_sizes",),
           errors=[ErrorCase((np.zeros((1, 5, 5, 4), _F), np.array([3, 3, 4], np.int32),
                              np.zeros((1, 5, 5, 2), _F)),
                             {"strides": [1, 1, 1, 1], "padding": "SAME"},
                             regex=r"requires filter_sizes to contain 4 values, but got: 3"),
                   ErrorCase((np.zeros((1, 5, 5, 4), _F), np.array([3, -3, 4, 2], np.int32),
                              np.zeros((1, 5, 5, 2), _F)),
                             {"strides": [1, 1, 1, 1], "padding": "SAME"},
                             regex=r"All elements of filter_sizes must be >= 0, but got "
                                   r"\[3, -3, 4, 2\]"),
                   ErrorCase((np.zeros((1, 5, 5, 4), _F), np.array([3, 3, 4, 3], np.int32),
                              np.zeros((1, 5, 5, 2), _F)),
                             {"strides": [1, 1, 1, 1], "padding": "SAME"},
                             regex="same out_depth"),
                   ErrorCase((np.zeros((1, 5, 5, 4), _F), np.array([3, 3, 4, 2], np.int32),
                              np.zeros((1, 3, 5, 2), _F)),
                             {"strides": [1, 2, 2, 1], "padding": "SAME"},
                             regex="Size of out_backprop doesn't match computed: actual = 5, "
                                   "computed = 3 for width")],
           shapes=[ShapeCase("[?,8,8,3];=[3,3,3,16];[?,8,8,16]", "[3,3,3,16]",
                             {"strides": [1, 1, 1, 1], "padding": "SAME"}),
                   ShapeCase("[?,8,8,3];[4];[?,4,4,16]", "[?,?,?,16]",
                             {"strides": [1, 2, 2, 1], "padding": "SAME"}),
                   ShapeCase("[1,8,8,3];shape_of:[3,?,3,16];[1,8,8,16]", "[3,?,3,16]",
                             {"strides": [1, 1, 1, 1], "padding": "SAME"}),
                   ShapeCase("[1,8,8,3];[2,2];[1,8,8,16]", "filter_sizes must be 1-D",
                             {"strides": [1, 1, 1, 1], "padding": "SAME"},
                             error=errors.InvalidArgumentError)],
           grad_tol=1e-6),
]
