"""op_db entries of the 2-D pooling ops (MaxPool, AvgPool) and their backward ops
(MaxPoolGrad, MaxPoolGradGrad, AvgPoolGrad).

The references walk every output pixel, clip its window to the input by hand (TF's window
arithmetic, re-derived here with Python integers) and reduce, or scatter, in float64; the max
pool backward references pick each window's first maximum by scanning it in row-major order.
Float samples of the max ops hold distinct values (a scaled random permutation) so that
finite differences never straddle a change of the window maxima; the first three samples
of every entry cover VALID / SAME / EXPLICIT padding, strides and both data formats (the
gradient suite checks those three).
"""

from __future__ import annotations

import numpy as np

from opgraph import dtypes as dt
from opgraph import errors
from tests.op_db import ErrorCase, OpInfo, Sample, ShapeCase, rand

_F = np.float32
_POS = {"NHWC": (1, 2, 3), "NCHW": (2, 3, 1)}
MAXPOOL_DTYPES = (dt.DT_HALF, dt.DT_BFLOAT16, dt.DT_FLOAT, dt.DT_DOUBLE, dt.DT_INT32,
                  dt.DT_INT64, dt.DT_UINT8, dt.DT_INT16, dt.DT_INT8, dt.DT_UINT16)
AVGPOOL_DTYPES = (dt.DT_HALF, dt.DT_BFLOAT16, dt.DT_FLOAT, dt.DT_DOUBLE)


def _axis_windows(size, k, s, padding, before, after):
    """[(lo, hi)] input ranges of each window along one axis, clipped to [0, size)."""
    if padding == "VALID":
        out = (size - k) // s + 1 if size >= k else 0
        before = 0
    elif padding == "SAME":
        out = -(-size // s)
        before = max((out - 1) * s + k - size, 0) // 2
    else:
        span = size + before + after
        out = (span - k) // s + 1 if span >= k else 0
    return [(max(i * s - before, 0), min(i * s - before + k, size)) for i in range(out)]


def _lowest(dtype):
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).min)
    try:
        return float(np.finfo(dtype).min)
    except (TypeError, ValueError):     # bfloat16 comes from ml_dtypes
        import ml_dtypes  # noqa: PLC0415
        return float(ml_dtypes.finfo(dtype).min)


def _pool_ref(kind):
    def ref(x, *, ksize, strides, padding, data_format="NHWC", explicit_paddings=()):
        hp, wp, _ = _POS[data_format]
        xn = x if data_format == "NHWC" else x.transpose(0, 2, 3, 1)
        xn = xn.astype(np.float64)
        pads = list(explicit_paddings) or [0] * 8
        rows = _axis_windows(xn.shape[1], ksize[hp], strides[hp], padding,
                             pads[2 * hp], pads[2 * hp + 1])
        cols = _axis_windows(xn.shape[2], ksize[wp], strides[wp], padding,
                             pads[2 * wp], pads[2 * wp + 1])
        out = np.zeros((xn.shape[0], len(rows), len(cols), xn.shape[3]))
        for b in range(xn.shape[0]):
            for i, (r0, r1) in enumerate(rows):
                for j, (c0, c1) in enumerate(cols):
                    for ch in range(xn.shape[3]):
                        vals = [xn[b, r, q, ch] for r in range(r0, r1) for q in range(c0, c1)]
                        if kind == "max":
                            out[b, i, j, ch] = max([_lowest(x.dtype), *vals])
                        else:
                            out[b, i, j, ch] = sum(vals) / len(vals)
        if data_format == "NCHW":
            out = out.transpose(0, 3, 1, 2)
        return out.astype(x.dtype)
    return ref


def _attrs(k, s, padding, fmt="NHWC", pads=None):
    a = {"ksize": k, "strides": s, "padding": padding}
    if fmt != "NHWC":
        a["data_format"] = fmt
    if pads is not None:
        a["explicit_paddings"] = pads
    return a


_VALID = (_attrs([1, 2, 2, 1], [1, 2, 2, 1], "VALID"), (2, 5, 6, 3), "valid_2x2_s2")
_SAME = (_attrs([1, 3, 3, 1], [1, 2, 1, 1], "SAME"), (1, 5, 4, 2), "same_3x3_s21")
_NCHW_SAME = (_attrs([1, 1, 2, 3], [1, 1, 1, 1], "SAME", "NCHW"), (1, 3, 4, 5), "nchw_same")
_NCHW_SAME_S32 = (_attrs([1, 1, 3, 2], [1, 1, 3, 2], "SAME", "NCHW"), (2, 2, 5, 5),
                  "nchw_same_s32")
_REST = [
    (_attrs([1, 2, 2, 1], [1, 1, 1, 1], "VALID"), (0, 4, 4, 2), "empty_batch"),
    (_attrs([1, 3, 3, 1], [1, 1, 1, 1], "VALID"), (1, 2, 2, 1), "window_larger"),
    (_attrs([1, 4, 1, 1], [1, 3, 1, 1], "SAME"), (1, 7, 3, 1), "same_k4_s3"),
]
_EXPLICIT = (_attrs([1, 3, 3, 1], [1, 2, 2, 1], "EXPLICIT", pads=[0, 0, 1, 0, 2, 1, 0, 0]),
             (1, 4, 5, 2), "explicit")
_EXPLICIT_NCHW = (_attrs([1, 1, 2, 3], [1, 1, 1, 2], "EXPLICIT", "NCHW",
                         pads=[0, 0, 0, 0, 1, 1, 0, 2]), (1, 2, 3, 3), "explicit_nchw")
# the first three of each grid are the gradient suite's samples
_MAX_GRID = [_VALID, _SAME, _EXPLICIT_NCHW, _NCHW_SAME, _NCHW_SAME_S32, *_REST, _EXPLICIT]
_AVG_GRID = [_VALID, _SAME, _NCHW_SAME_S32, _NCHW_SAME, *_REST]
_MAX_GRAD_GRAD_GRID = [_NCHW_SAME_S32, _VALID, _SAME, _NCHW_SAME, *_REST]


def _is_int(t):
    return np.issubdtype(t.as_numpy_dtype, np.integer)


def _input(rng, shape, t):
    lo, hi = (-50, 50) if _is_int(t) else (-2, 2)
    return rand(rng, shape, t, lo, hi)


def _distinct(rng, shape, t):
    """Distinct values (a random permutation): floats in [-2, 2), integers from 0 or -n/2."""
    n = int(np.prod(shape))
    perm = rng.permutation(n).reshape(shape)
    npd = t.as_numpy_dtype
    if not _is_int(t):
        return ((perm - n / 2) * (4.0 / max(n, 1))).astype(npd)
    info = np.iinfo(npd)
    if info.min < 0 and n // 2 <= info.max:
        return (perm - n // 2).astype(npd)
    return perm.astype(npd) if n - 1 <= info.max else rand(rng, shape, t, 0, 100)


def _samples(grid, make=_input):
    def samples(rng, t):
        return [Sample((make(rng, shape, t),), a, name=name) for a, shape, name in grid]
    return samples


def _errors(op):
    x4 = np.zeros((1, 4, 4, 2), _F)
    base = {"ksize": [1, 2, 2, 1], "strides": [1, 1, 1, 1], "padding": "VALID"}
    cases = [
        ErrorCase((np.zeros((4, 4, 2), _F),), base, regex="must be rank 4", name="rank"),
        ErrorCase((np.zeros((1, 1, 4, 2), _F),), {**base, "ksize": [1, 4, 1, 1]},
                  regex="Computed output size would be negative", name="negative_out"),
        ErrorCase((x4,), {**base, "ksize": [2, 2, 2, 1]}, regex="batch dimension",
                  error=errors.UnimplementedError, when="build", name="batch_window"),
        ErrorCase((x4,), {**base, "strides": [1, 1, 1, 2]}, regex="depth dimension",
                  error=errors.UnimplementedError, when="build", name="depth_stride"),
        ErrorCase((x4,), {**base, "ksize": [1, 2, 2, 1, 1]},
                  regex="ksize field must specify 4 dimensions", when="build", name="ksize5"),
        ErrorCase((x4,), {**base, "ksize": [1, 0, 2, 1]}, regex="must be positive",
                  when="build", name="ksize0"),
        ErrorCase((x4,), {**base, "strides": [1, 0, 1, 1]}, regex="strides should be larger",
                  when="build", name="stride0"),
    ]
    if op == "MaxPool":
        cases += [
            ErrorCase((x4,), {**base, "padding": "EXPLICIT",
                              "explicit_paddings": [0, 0, 0, 1, 0, 2, 0, 0]},
                      regex="Right padding 2 needs to be smaller than the window size 2",
                      when="build", name="pad_ge_window"),
            ErrorCase((x4,), {**base, "explicit_paddings": [0, 0, 0, 1, 0, 1, 0, 0]},
                      regex="must be empty", when="build", name="pads_not_explicit"),
            ErrorCase((x4,), {**base, "padding": "EXPLICIT", "explicit_paddings": [0, 1]},
                      regex="must contain 8 values", when="build", name="pads_len"),
        ]
    return cases


_SHAPES = [
    ShapeCase("[?,8,8,3]", "[d0_0,4,4,3]",
              {"ksize": [1, 2, 2, 1], "strides": [1, 2, 2, 1], "padding": "SAME"}),
    ShapeCase("[?,?,7,3]", "[d0_0,?,3,3]",
              {"ksize": [1, 3, 3, 1], "strides": [1, 2, 2, 1], "padding": "VALID"}),
    ShapeCase("?", "[?,?,?,?]",
              {"ksize": [1, 3, 3, 1], "strides": [1, 2, 2, 1], "padding": "VALID"}),
    ShapeCase("[2,3,?,9]", "[2,3,?,4]",
              {"ksize": [1, 1, 3, 3], "strides": [1, 1, 2, 2], "padding": "VALID",
               "data_format": "NCHW"}),
    ShapeCase("[1,1,4,2]", "Computed output size would be negative",
              {"ksize": [1, 4, 1, 1], "strides": [1, 1, 1, 1], "padding": "VALID"},
              error=errors.InvalidArgumentError),
]

def _windows_nhwc(shape_nhwc, ksize, strides, padding, data_format, explicit_paddings):
    """(rows, cols): the clipped input ranges of every output row and column."""
    hp, wp, _ = _POS[data_format]
    pads = list(explicit_paddings) or [0] * 8
    rows = _axis_windows(shape_nhwc[1], ksize[hp], strides[hp], padding, pads[2 * hp],
                         pads[2 * hp + 1])
    cols = _axis_windows(shape_nhwc[2], ksize[wp], strides[wp], padding, pads[2 * wp],
                         pads[2 * wp + 1])
    return rows, cols


def _to_nhwc(a, data_format):
    return a if data_format == "NHWC" else a.transpose(0, 2, 3, 1)


def _from_nhwc(a, data_format):
    return a if data_format == "NHWC" else a.transpose(0, 3, 1, 2)


def _window_cells(r0, r1, c0, c1):
    return [(r, q) for r in range(r0, r1) for q in range(c0, c1)]


def _max_pool_grad_ref(x, y, g, *, ksize, strides, padding, data_format="NHWC",
                       explicit_paddings=()):
    """Each grad element goes to its window's first maximum: the first cell, replaced only
    by a strictly greater one (so a NaN in the first cell stays, as in TF)."""
    xn, gn = _to_nhwc(x, data_format), _to_nhwc(g, data_format)
    rows, cols = _windows_nhwc(xn.shape, ksize, strides, padding, data_format,
                               explicit_paddings)
    dx = np.zeros(xn.shape)
    for b in range(xn.shape[0]):
        for ch in range(xn.shape[3]):
            for i, (r0, r1) in enumerate(rows):
                for j, (c0, c1) in enumerate(cols):
                    best = None
                    for r, q in _window_cells(r0, r1, c0, c1):
                        v = float(xn[b, r, q, ch])
                        if best is None or v > best[0]:
                            best = (v, r, q)
                    if best is not None:
                        dx[b, best[1], best[2], ch] += float(gn[b, i, j, ch])
    return _from_nhwc(dx, data_format).astype(x.dtype)


def _max_pool_grad_grad_ref(x, y, g, *, ksize, strides, padding, data_format="NHWC"):
    """grad at the first window cell equal to orig_output, else 0."""
    xn, yn, gn = (_to_nhwc(a, data_format) for a in (x, y, g))
    rows, cols = _windows_nhwc(xn.shape, ksize, strides, padding, data_format, ())
    out = np.zeros(yn.shape)
    for b in range(xn.shape[0]):
        for ch in range(xn.shape[3]):
            for i, (r0, r1) in enumerate(rows):
                for j, (c0, c1) in enumerate(cols):
                    for r, q in _window_cells(r0, r1, c0, c1):
                        if float(xn[b, r, q, ch]) == float(yn[b, i, j, ch]):
                            out[b, i, j, ch] = float(gn[b, r, q, ch])
                            break
    return _from_nhwc(out, data_format).astype(x.dtype)


def _avg_pool_grad_ref(orig_input_shape, g, *, ksize, strides, padding, data_format="NHWC"):
    """Each grad element, divided by its window's cell count, added to every cell."""
    shape = [int(d) for d in orig_input_shape]
    shape_nhwc = shape if data_format == "NHWC" else [shape[0], shape[2], shape[3], shape[1]]
    gn = _to_nhwc(g, data_format)
    rows, cols = _windows_nhwc(shape_nhwc, ksize, strides, padding, data_format, ())
    dx = np.zeros(shape_nhwc)
    for b in range(shape_nhwc[0]):
        for ch in range(shape_nhwc[3]):
            for i, (r0, r1) in enumerate(rows):
                for j, (c0, c1) in enumerate(cols):
                    cells = _window_cells(r0, r1, c0, c1)
                    for r, q in cells:
                        dx[b, r, q, ch] += float(gn[b, i, j, ch]) / len(cells)
    return _from_nhwc(dx, data_format).astype(g.dtype)


_max_ref = _pool_ref("max")


def _max_pool_grad_samples(rng, t):
    out = []
    for a, shape, name in _MAX_GRID:
        x = _distinct(rng, shape, t)
        y = _max_ref(x, **a)
        out.append(Sample((x, y, _input(rng, y.shape, t)), a, name=name))
    ties = np.array([[[[1], [3], [3]], [[3], [2], [3]], [[0], [3], [1]]]], t.as_numpy_dtype)
    a = _attrs([1, 2, 2, 1], [1, 1, 1, 1], "VALID")
    out.append(Sample((ties, _max_ref(ties, **a), _input(rng, (1, 2, 2, 1), t)), a,
                      name="ties_go_to_the_first"))
    if not _is_int(t):
        npd = t.as_numpy_dtype
        nan = np.array([[[[np.nan], [1]], [[2], [np.nan]]], [[[1], [np.nan]], [[3], [2]]]], npd)
        a = _attrs([1, 2, 2, 1], [1, 1, 1, 1], "VALID")
        out.append(Sample((nan, np.zeros((2, 1, 1, 1), npd), _input(rng, (2, 1, 1, 1), t)), a,
                          name="nan_wins_only_first"))
        a, (x, _, _) = _MAX_GRID[1][0], out[1].inputs
        y = _max_ref(x, **a)
        g = _input(rng, y.shape, t)
        g.flat[[0, 5]] = [np.inf, -np.inf]
        out.append(Sample((x, y, g), a, name="infinite_grad"))
    return out


def _max_pool_grad_grad_samples(rng, t):
    out = []
    for a, shape, name in _MAX_GRAD_GRAD_GRID:
        x = _distinct(rng, shape, t)
        out.append(Sample((x, _max_ref(x, **a), _input(rng, shape, t)), a, name=name))
    ties = np.array([[[[1], [3], [3]], [[3], [2], [3]], [[0], [3], [1]]]], t.as_numpy_dtype)
    a = _attrs([1, 2, 2, 1], [1, 1, 1, 1], "VALID")
    y = _max_ref(ties, **a)
    y[0, 1, 0, 0] = 7           # equal to nothing in its window: 0
    out.append(Sample((ties, y, _input(rng, ties.shape, t)), a, name="ties_and_no_match"))
    if not _is_int(t):
        a, (x, y, g) = out[1].attrs, out[1].inputs
        g = g.copy()
        g.flat[[0, int(np.argmax(x))]] = [np.inf, -np.inf]     # off and on a maximum
        out.append(Sample((x, y, g), a, name="infinite_grad"))
    return out


def _avg_pool_grad_samples(rng, t):
    out = []
    for a, shape, name in _AVG_GRID:
        y = _pool_ref("avg")(np.zeros(shape, np.float64), **a)
        out.append(Sample((np.array(shape, np.int32), _input(rng, y.shape, t)), a, name=name))
    return out


def _grad_errors(op):
    f = _F
    base = {"ksize": [1, 2, 2, 1], "strides": [1, 2, 2, 1], "padding": "VALID"}
    x, y = np.zeros((1, 4, 4, 2), f), np.zeros((1, 2, 2, 2), f)
    if op == "AvgPoolGrad":
        shape = np.array([1, 4, 4, 2], np.int32)
        return [
            ErrorCase((np.array([1, 4, 4], np.int32), y), base,
                      regex=r"orig_input_shape must be 1-dimensional and 4 elements, but has "
                      r"shape \[3\]", name="sizes_len"),
            ErrorCase((np.array([1, -4, 4, 2], np.int32), y), base,
                      regex="orig_input_shape must be non-negative", name="negative"),
            ErrorCase((shape, np.zeros((1, 3, 2, 2), f)), base,
                      regex=r"Expected grad shape to be \[1,2,2,2\], but got \[1,3,2,2\]",
                      name="grad_shape"),
            ErrorCase((shape, np.zeros((2, 2, 2), f)), base, regex="must be rank 4",
                      name="grad_rank"),
            ErrorCase((shape, y), {**base, "ksize": [1, 2, 2, 2]}, regex="depth dimension",
                      error=errors.UnimplementedError, when="build", name="depth_window"),
        ]
    cases = [
        ErrorCase((np.zeros((4, 4, 2), f), y, y), base, regex="must be rank 4", name="rank"),
        ErrorCase((x, np.zeros((1, 3, 2, 2), f), y if op == "MaxPoolGrad" else x), base,
                  regex=r"Expected orig_output shape to be \[1,2,2,2\], but got \[1,3,2,2\]",
                  name="orig_output_shape"),
        ErrorCase((x, y, np.zeros((1, 4, 4, 3), f)), base,
                  regex=r"Expected grad shape to be \[1,[24],[24],2\], but got \[1,4,4,3\]",
                  name="grad_shape"),
        ErrorCase((x, y, y if op == "MaxPoolGrad" else x), {**base, "strides": [1, 0, 1, 1]},
                  regex="strides should be larger", when="build", name="stride0"),
    ]
    if op == "MaxPoolGrad":
        cases.append(ErrorCase((x, y, y), {**base, "padding": "EXPLICIT",
                                           "explicit_paddings": [0, 0, 0, 2, 0, 0, 0, 0]},
                               regex="Bottom padding 2 needs to be smaller than the window "
                               "size 2", when="build", name="pad_ge_window"))
    return cases


_K2S2 = {"ksize": [1, 2, 2, 1], "strides": [1, 2, 2, 1], "padding": "SAME"}
_GRAD_ENTRIES = [
    OpInfo("MaxPoolGrad", ref=_max_pool_grad_ref, dtypes=MAXPOOL_DTYPES,
           samples=_max_pool_grad_samples, errors=_grad_errors("MaxPoolGrad"),
           shapes=[ShapeCase("[?,8,8,3];[2,4,4,?];?", "[2,8,8,3]", _K2S2),
                   ShapeCase("?;?;?", "[?,?,?,?]", _K2S2),
                   ShapeCase("[1,?,8,3];[1,4,4,3];[1,4,?,3]", "[1,?,8,3]", _K2S2),
                   ShapeCase("[1,8,8,3];[1,5,4,3];?", "Expected orig_output shape", _K2S2,
                             error=errors.InvalidArgumentError)],
           grad_tol=1e-6),
    # orig_input and orig_output only select the window maxima (the output jumps when a
    # perturbation breaks orig_output == max): the gradient is checked for grad
    OpInfo("MaxPoolGradGrad", ref=_max_pool_grad_grad_ref, dtypes=MAXPOOL_DTYPES,
           samples=_max_pool_grad_grad_samples, errors=_grad_errors("MaxPoolGradGrad"),
           shapes=[ShapeCase("[?,8,8,3];?;[2,8,8,?]", "[2,4,4,3]", _K2S2),
                   ShapeCase("?;[2,4,4,3];?", "[2,4,4,3]", _K2S2),
                   ShapeCase("[1,8,8,3];?;[1,8,7,3]", "Expected grad shape", _K2S2,
                             error=errors.InvalidArgumentError)],
           grad_tol=1e-6, grad_inputs=(2,)),
    OpInfo("AvgPoolGrad", ref=_avg_pool_grad_ref, dtypes=AVGPOOL_DTYPES,
           samples=_avg_pool_grad_samples, errors=_grad_errors("AvgPoolGrad"),
           value_inputs=("orig_input_shape",),
           shapes=[ShapeCase("=[1,8,8,3];[?,4,4,?]", "[1,8,8,3]", _K2S2),
                   ShapeCase("[4];[2,4,4,3]", "[2,?,?,3]", _K2S2),
                   ShapeCase("shape_of:[?,8,8,3];[2,4,4,3]", "[2,8,8,3]", _K2S2),
                   ShapeCase("?;?", "[?,?,?,?]", _K2S2),
                   ShapeCase("=[1,8,8,3];[1,5,4,3]", "Expected grad shape", _K2S2,
                             error=errors.InvalidArgumentError)],
           grad_tol=1e-6),
]

ENTRIES = [
    OpInfo("MaxPool", ref=_pool_ref("max"), dtypes=MAXPOOL_DTYPES,
           samples=_samples(_MAX_GRID, _distinct), errors=_errors("MaxPool"),
           shapes=_SHAPES + [
               ShapeCase("[?,5,5,3]", "[d0_0,3,3,3]",
                         {"ksize": [1, 3, 3, 1], "strides": [1, 2, 2, 1],
                          "padding": "EXPLICIT", "explicit_paddings": [0, 0, 1, 1, 0, 2, 0, 0]})],
           grad_tol=1e-6),
    OpInfo("AvgPool", ref=_pool_ref("avg"), dtypes=AVGPOOL_DTYPES, samples=_samples(_AVG_GRID),
           errors=_errors("AvgPool"), shapes=_SHAPES, grad_tol=1e-6),
]
ENTRIES += _GRAD_ENTRIES
