"""Gradients of the pooling and batch-norm ops beyond the generic suite: MaxPool's second
(and third) derivatives through MaxPoolGradGrad, and FusedBatchNorm's gradients, first and
second, against float64 finite differences through the whole normalization (the batch-norm
ops have no float64 kernel, so the generic float64 gradient suite cannot check them)."""

from __future__ import annotations

import numpy as np
import pytest

import ops
from opgraph import DT_DOUBLE, DT_FLOAT, DT_HALF, AddSymbolicGradients, Scope
from opgraph.testing import compute_gradient_error
from runtime import ClientSession
from tests.op_db.pooling import _windows_nhwc

DELTA = 1e-6
TOL = 1e-6


def _ph(root, shape, dtype=DT_DOUBLE):
    return ops.Placeholder(root, dtype, shape=list(shape)).output


def _run(root, feeds, fetches):
    assert root.ok(), root.status()
    return ClientSession(root).Run(feeds, fetches)


# ---------------------------------------------------------------- MaxPool second derivative
_POOLS = [  # (attrs, input shape)
    ({"ksize": [1, 3, 3, 1], "strides": [1, 1, 1, 1], "padding": "SAME"}, (2, 4, 5, 2)),
    ({"ksize": [1, 1, 2, 2], "strides": [1, 1, 2, 2], "padding": "VALID",
      "data_format": "NCHW"}, (1, 3, 4, 5)),
    ({"ksize": [1, 2, 3, 1], "strides": [1, 2, 2, 1], "padding": "EXPLICIT",
      "explicit_paddings": [0, 0, 1, 0, 1, 2, 0, 0]}, (1, 5, 5, 2)),
    ({"ksize": [1, 1, 3, 2], "strides": [1, 1, 2, 1], "padding": "SAME",
      "data_format": "NCHW"}, (2, 2, 5, 3)),
]


def _distinct(rng, shape):
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) - n / 2) * (4.0 / n)


def _first_max_flat_index(x, attrs):
    """For every MaxPool output element, the flat index (into x) of its window's first
    maximum, by explicit loops (row-major window order)."""
    fmt = attrs.get("data_format", "NHWC")
    to_nhwc = (0, 1, 2, 3) if fmt == "NHWC" else (0, 2, 3, 1)
    xn = x.transpose(to_nhwc)
    flat = np.arange(x.size).reshape(x.shape).transpose(to_nhwc)
    rows, cols = _windows_nhwc(xn.shape, attrs["ksize"], attrs["strides"], attrs["padding"],
                               fmt, attrs.get("explicit_paddings", ()))
    out = np.zeros((xn.shape[0], len(rows), len(cols), xn.shape[3]), np.int64)
    for b in range(xn.shape[0]):
        for ch in range(xn.shape[3]):
            for i, (r0, r1) in enumerate(rows):
                for j, (c0, c1) in enumerate(cols):
                    cells = [(r, q) for r in range(r0, r1) for q in range(c0, c1)]
                    r, q = max(cells, key=lambda rq: (xn[b, rq[0], rq[1], ch],
                                                      -cells.index(rq)))
                    out[b, i, j, ch] = flat[b, r, q, ch]
    return out if fmt == "NHWC" else out.transpose(0, 3, 1, 2)


@pytest.mark.parametrize(("attrs", "shape"), _POOLS)
def test_max_pool_second_derivative_is_max_pool_grad_grad(attrs, shape):
    """d(MaxPoolGrad)/d(grad) is MaxPoolGradGrad: it reads the upstream gradient at each
    window's first maximum; d(MaxPoolGrad)/d(orig_input) is zero (MaxPool is piecewise
    linear). Both match finite differences, and so does the third derivative (MaxPoolGrad
    again)."""
    rng = np.random.default_rng(0)
    x_val = _distinct(rng, shape)
    root = Scope.NewRootScope()
    x = _ph(root, shape)
    y = ops.MaxPool(root, x, **attrs).output
    out_shape = tuple(y.shape.dims)
    dy, v, w = _ph(root, out_shape), _ph(root, shape), _ph(root, out_shape)
    (g,) = AddSymbolicGradients(root, [y], [x], [dy])
    assert g.op.type == "MaxPoolGrad"
    gg_dy, gg_x = AddSymbolicGradients(root, [g], [dy, x], [v], unconnected_gradients="zero")
    assert gg_dy.op.type == "MaxPoolGradGrad"
    assert tuple(gg_dy.shape.dims) == out_shape
    (ggg,) = AddSymbolicGradients(root, [gg_dy], [v], [w])
    if attrs["padding"] == "EXPLICIT":   # v was padded for a VALID MaxPoolGradGrad
        assert ggg.op.type == "Slice"
        ggg = ggg.op.inputs[0]
    assert ggg.op.type == "MaxPoolGrad"

    dy_val, v_val = rng.uniform(-1, 1, out_shape), rng.uniform(-1, 1, shape)
    got_dy, got_x = _run(root, {x: x_val, dy: dy_val, v: v_val}, [gg_dy, gg_x])
    np.testing.assert_array_equal(got_dy, v_val.ravel()[_first_max_flat_index(x_val, attrs)])
    np.testing.assert_array_equal(got_x, np.zeros(shape))

    err = compute_gradient_error(root, [x, dy], [shape, out_shape], g, shape,
                                 x_init_values=[x_val, dy_val], delta=DELTA)
    assert err < TOL
    err = compute_gradient_error(root, [v], [shape], gg_dy, out_shape, x_init_values=[v_val],
                                 delta=DELTA, feeds={x: x_val, dy: dy_val})
    assert err < TOL


def test_max_pool_grad_ties_route_to_the_first_maximum():
    """All equal: every window's gradient goes to its top-left element; MaxPoolGradGrad
    reads the same element."""
    root = Scope.NewRootScope()
    attrs = {"ksize": [1, 2, 2, 1], "strides": [1, 1, 1, 1], "padding": "VALID"}
    x = ops.Const(root, np.ones((1, 3, 3, 1)))
    y = ops.MaxPool(root, x, **attrs)
    g = ops.MaxPoolGrad(root, x, y, ops.Const(root, np.ones((1, 2, 2, 1))), **attrs)
    v = np.arange(9.0).reshape(1, 3, 3, 1)
    gg = ops.MaxPoolGradGrad(root, x, y, ops.Const(root, v), **attrs)
    got_g, got_gg = _run(root, {}, [g.output, gg.output])
    np.testing.assert_array_equal(got_g[0, :, :, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(got_gg[0, :, :, 0], [[0, 1], [3, 4]])


# ---------------------------------------------------------------- FusedBatchNorm
def _channel_axis(rank, fmt):
    return 1 if fmt.startswith("NC") else rank - 1


def _bn64(x, scale, offset, mean, variance, *, epsilon, data_format, is_training):
    """y of the normalization in float64 (training: statistics recomputed from x)."""
    axis = _channel_axis(x.ndim, data_format)
    shape = [1] * x.ndim
    shape[axis] = -1
    others = tuple(i for i in range(x.ndim) if i != axis)
    if is_training:
        mean = x.mean(axis=others, keepdims=True)
        variance = ((x - mean) ** 2).mean(axis=others, keepdims=True)
    else:
        mean, variance = np.reshape(mean, shape), np.reshape(variance, shape)
    return (x - mean) / np.sqrt(variance + epsilon) * scale.reshape(shape) + \
        offset.reshape(shape)


def _differences(loss, args, h=1e-6):
    """Central differences of the scalar loss(*args) w.r.t. every element of every arg."""
    out = []
    for k, a in enumerate(args):
        grad = np.zeros(a.shape)
        for idx in np.ndindex(*a.shape):
            vals = []
            for sign in (1, -1):
                moved = [b.copy() for b in args]
                moved[k][idx] += sign * h
                vals.append(loss(*moved))
            grad[idx] = (vals[0] - vals[1]) / (2 * h)
        out.append(grad)
    return out


def _close(got, want, rtol):
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol,
                               atol=rtol * scale)


_BN_CASES = [  # (version, x shape, data_format, is_training, exponential_avg_factor, T)
    ("FusedBatchNorm", (2, 3, 3, 4), "NHWC", True, 1.0, DT_FLOAT),
    ("FusedBatchNormV2", (2, 3, 2, 3), "NCHW", True, 1.0, DT_FLOAT),
    ("FusedBatchNormV3", (3, 2, 2, 3), "NHWC", True, 0.5, DT_FLOAT),
    ("FusedBatchNormV3", (1, 2, 2, 3, 2), "NDHWC", True, 1.0, DT_FLOAT),
    ("FusedBatchNormV3", (2, 3, 1, 2, 2), "NCDHW", False, 1.0, DT_FLOAT),
    ("FusedBatchNorm", (2, 2, 3, 2), "NCHW", False, 1.0, DT_FLOAT),
    ("FusedBatchNormV2", (2, 2, 2, 3), "NHWC", True, 1.0, DT_HALF),
]


def _bn_inputs(rng, shape, fmt, training, factor):
    c = shape[_channel_axis(len(shape), fmt)]
    x = rng.uniform(-2, 2, shape)
    scale, offset = rng.uniform(0.5, 1.5, c), rng.uniform(-1, 1, c)
    k = c if (not training or factor != 1.0) else 0
    mean, variance = rng.uniform(-1, 1, k), rng.uniform(0.5, 2, k)
    return x, scale, offset, mean, variance


@pytest.mark.parametrize(("version", "shape", "fmt", "training", "factor", "dtype"), _BN_CASES)
def test_fused_batch_norm_gradient_matches_finite_differences(version, shape, fmt, training,
                                                              factor, dtype):
    """d<y, w>/d(x, scale, offset) of the fused op (float32 arithmetic) against central
    differences in float64 of the whole normalization, batch statistics included."""
    rng = np.random.default_rng(1)
    x_val, s_val, o_val, m_val, v_val = _bn_inputs(rng, shape, fmt, training, factor)
    npd = dtype.as_numpy_dtype
    x_val = x_val.astype(npd).astype(np.float64)          # the values the op really sees
    s_val, o_val = s_val.astype(np.float32), o_val.astype(np.float32)
    w_val = rng.uniform(-1, 1, shape).astype(npd)
    eps = 1e-3
    root = Scope.NewRootScope()
    c = s_val.shape[0]
    x, scale, offset = _ph(root, shape, dtype), _ph(root, (c,), DT_FLOAT), \
        _ph(root, (c,), DT_FLOAT)
    mean = ops.Const(root, m_val.astype(np.float32))
    variance = ops.Const(root, v_val.astype(np.float32))
    attrs = {"epsilon": eps, "data_format": fmt, "is_training": training}
    if factor != 1.0:
        attrs["exponential_avg_factor"] = factor
    bn = getattr(ops, version)(root, x, scale, offset, mean, variance, **attrs)
    w = ops.Const(root, w_val)
    grads = AddSymbolicGradients(root, [bn.y], [x, scale, offset], [w])
    assert grads[0].op.type == "FusedBatchNormGradV3"
    got = _run(root, {x: x_val.astype(npd), scale: s_val, offset: o_val}, grads)

    w64 = w_val.astype(np.float64)

    def loss(xv, sv, ov):
        y = _bn64(xv, sv, ov, m_val.astype(np.float32), v_val.astype(np.float32),
                  epsilon=np.float32(eps), data_format=fmt, is_training=training)
        return float(np.sum(y * w64))

    want = _differences(loss, [x_val, s_val.astype(np.float64), o_val.astype(np.float64)])
    rtol = 2e-2 if dtype == DT_HALF else 2e-4
    for g, wv in zip(got, want):
        _close(g, wv, rtol)


def _bn_grad64(dy, x, scale, mean, variance, *, epsilon, data_format, is_training):
    """TF's FusedBatchNormGrad formulas in float64 (training: statistics from x)."""
    axis = _channel_axis(x.ndim, data_format)
    shape = [1] * x.ndim
    shape[axis] = -1
    others = tuple(i for i in range(x.ndim) if i != axis)
    if is_training:
        mean = x.mean(axis=others, keepdims=True)
        variance = ((x - mean) ** 2).mean(axis=others, keepdims=True)
    else:
        mean, variance = np.reshape(mean, shape), np.reshape(variance, shape)
    r = 1 / np.sqrt(variance + epsilon)
    xh = (x - mean) * r
    scale_backprop = np.sum(dy * xh, axis=others)
    offset_backprop = np.sum(dy, axis=others)
    s = scale.reshape(shape)
    if is_training:
        dx = s * r * (dy - dy.mean(axis=others, keepdims=True)
                      - xh * (dy * xh).mean(axis=others, keepdims=True))
    else:
        dx = dy * s * r
    return dx, scale_backprop, offset_backprop


@pytest.mark.parametrize(("shape", "fmt", "training"), [
    ((2, 3, 2, 3), "NHWC", True), ((2, 3, 2, 2), "NCHW", True), ((1, 2, 2, 2, 3), "NDHWC", True),
    ((2, 2, 2, 3), "NHWC", False), ((2, 3, 1, 2, 2), "NCDHW", False)])
def test_fused_batch_norm_second_derivative(shape, fmt, training):
    """The gradient of (x_backprop, scale_backprop, offset_backprop) -- built by
    FusedBatchNormGradV3's gradient -- w.r.t. x, scale and the upstream gradient, against
    float64 central differences of TF's gradient formulas (statistics as functions of x)."""
    rng = np.random.default_rng(2)
    x_val, s_val, o_val, m_val, v_val = _bn_inputs(rng, shape, fmt, training, 1.0)
    x_val = x_val.astype(np.float32)
    s_val, o_val = s_val.astype(np.float32), o_val.astype(np.float32)
    m_val, v_val = m_val.astype(np.float32), v_val.astype(np.float32)
    dy_val = rng.uniform(-1, 1, shape).astype(np.float32)
    c = s_val.shape[0]
    u_val = rng.uniform(-1, 1, shape).astype(np.float32)
    us_val, uo_val = rng.uniform(-1, 1, c).astype(np.float32), \
        rng.uniform(-1, 1, c).astype(np.float32)
    eps = 1e-3
    root = Scope.NewRootScope()
    x, scale, offset = _ph(root, shape, DT_FLOAT), _ph(root, (c,), DT_FLOAT), \
        _ph(root, (c,), DT_FLOAT)
    dy = _ph(root, shape, DT_FLOAT)
    bn = ops.FusedBatchNormV3(root, x, scale, offset, ops.Const(root, m_val),
                              ops.Const(root, v_val), epsilon=eps, data_format=fmt,
                              is_training=training)
    first = AddSymbolicGradients(root, [bn.y], [x, scale, offset], [dy])
    second = AddSymbolicGradients(
        root, first, [dy, x, scale],
        [ops.Const(root, u_val), ops.Const(root, us_val), ops.Const(root, uo_val)],
        unconnected_gradients="zero")
    got = _run(root, {x: x_val, scale: s_val, offset: o_val, dy: dy_val}, second)

    u64, us64, uo64 = (a.astype(np.float64) for a in (u_val, us_val, uo_val))

    def loss(dyv, xv, sv):
        dx, ds, do = _bn_grad64(dyv, xv, sv, m_val.astype(np.float64),
                                v_val.astype(np.float64), epsilon=np.float32(eps),
                                data_format=fmt, is_training=training)
        return float(np.sum(dx * u64) + np.sum(ds * us64) + np.sum(do * uo64))

    want = _differences(loss, [a.astype(np.float64) for a in (dy_val, x_val, s_val)])
    for g, wv in zip(got, want):
        _close(g, wv, 1e-3)


def test_max_pool_grad_fast_path_for_tiling_windows_equals_the_general_path():
    """Windows that tile the input (ksize == strides, VALID, NHWC) take a shortcut; it must
    route each gradient to the window's first maximum exactly as the general path does."""
    import runtime.kernels.cpu.pooling_kernels as pk

    rng = np.random.default_rng(3)
    for shape, k in [((4, 6, 6, 3), 2), ((2, 6, 9, 2), 3)]:
        x = rng.integers(-3, 3, shape).astype(np.float32)       # many ties
        g = rng.standard_normal((shape[0], shape[1] // k, shape[2] // k,
                                 shape[3])).astype(np.float32)
        root = Scope.NewRootScope()
        y = ops.MaxPool(root, x, [1, k, k, 1], [1, k, k, 1], "VALID")
        dx = ops.MaxPoolGrad(root, x, y, g, [1, k, k, 1], [1, k, k, 1], "VALID")
        kernel = pk.MaxPoolGradCpu(dx.operation)
        y_value = ClientSession(root).Run(y)
        fast = kernel._tiled(x, g)
        assert fast is not None
        kernel._tiled = lambda *_: None                          # force the general path
        general = kernel.compute(x, y_value, g)
        np.testing.assert_array_equal(fast, general)
        # every window sends its gradient to exactly one element
        np.testing.assert_allclose(fast.sum(), g.sum(), rtol=1e-5)
