"""The conv ops run through ClientSession, checked against independent references.

Kernel-level checks of the math (direct-loop reference, golden data, torch, hypothesis) are in
test_conv_impl.py; these test the ops end to end: the adjoint identity with the Conv2D
*kernel*, V1 == V2, run-time re-checks of what was unknown at build time, empty tensors,
memory guards, odd layouts and dtypes.

Tolerances: float64 1e-10 relative; float32 1e-4 relative to the result's scale; float16
and bfloat16 are computed in float32 and rounded once, so they are compared with the
float64 reference rounded to that type, within 1 ulp-ish (2e-3 / 1e-2 of the scale).
"""

import numpy as np
import pytest

import ops
from opgraph import DT_DOUBLE, DT_FLOAT, DT_INT32, Scope, as_dtype, errors
from runtime import ClientSession
from tests.reference import conv2d_backprop_input_ref

rng = np.random.default_rng(1234)


def _attrs(cls, fmt, dil, pads):
    a = cls.Attrs().DataFormat(fmt).Dilations(dil)
    return a.ExplicitPaddings(pads) if pads else a


def _nhwc_to(fmt, shape):
    n, h, w, c = shape
    return (n, h, w, c) if fmt == "NHWC" else (n, c, h, w)


def _spatial(fmt, vals):
    """[1, a, b, 1] in data_format order."""
    a, b = vals
    return [1, a, b, 1] if fmt == "NHWC" else [1, 1, a, b]


CONFIGS = [
    # (x NHWC shape, filter HWIO, strides, dilations, padding, explicit (t,b,l,r))
    ((2, 7, 6, 4), (3, 3, 4, 5), (1, 1), (1, 1), "SAME", None),
    ((2, 8, 9, 3), (3, 2, 3, 4), (2, 3), (1, 1), "VALID", None),
    ((1, 9, 9, 2), (3, 3, 2, 3), (2, 2), (2, 1), "SAME", None),
    ((2, 6, 7, 6), (2, 3, 3, 4), (1, 2), (1, 1), "EXPLICIT", (1, 2, 0, 3)),   # groups = 2
    ((1, 5, 5, 4), (3, 3, 1, 8), (2, 1), (1, 2), "VALID", None),              # depthwise-like
]


def _explicit_attr(fmt, pads):
    if pads is None:
        return []
    t, b, l_, r = pads
    return [0, 0, t, b, l_, r, 0, 0] if fmt == "NHWC" else [0, 0, 0, 0, t, b, l_, r]


def _build(fmt, cfg, dtype=DT_DOUBLE):
    xs, fs, st, dil, padding, pads = cfg
    root = Scope.NewRootScope().ExitOnError()
    x = ops.Placeholder(root.WithOpName("x"), dtype, ops.Placeholder.Shape(_nhwc_to(fmt, xs)))
    w = ops.Placeholder(root.WithOpName("w"), dtype, ops.Placeholder.Shape(fs))
    strides = _spatial(fmt, st)
    extra = dict(data_format=fmt, dilations=_spatial(fmt, dil),
                 explicit_paddings=_explicit_attr(fmt, pads))
    y = ops.Conv2D(root.WithOpName("y"), x, w, strides, padding, **extra)
    dy = ops.Placeholder(root.WithOpName("dy"), dtype, ops.Placeholder.Shape(y.output.shape))
    dx = ops.Conv2DBackpropInputV2(root.WithOpName("dx"), x, w, dy, strides, padding, **extra)
    return root, x, w, y, dy, dx


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"cfg{i}" for i in range(len(CONFIGS))])
def test_adjoint_identity_with_the_conv2d_kernel(fmt, cfg):
    """<Conv2D(x, w), dy> == <x, Conv2DBackpropInputV2(x, w, dy)> in float64."""
    root, x, w, y, dy, dx = _build(fmt, cfg)
    xv = rng.standard_normal(x.output.shape.as_list())
    wv = rng.standard_normal(w.output.shape.as_list())
    dyv = rng.standard_normal(y.output.shape.as_list())
    yv, dxv = ClientSession(root).Run({x: xv, w: wv, dy: dyv}, [y, dx])
    assert dxv.shape == xv.shape and dxv.dtype == np.float64
    lhs, rhs = np.vdot(yv, dyv), np.vdot(xv, dxv)
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("cfg", CONFIGS[:4], ids=[f"cfg{i}" for i in range(4)])
def test_matches_direct_loop_reference(fmt, cfg):
    root, x, w, y, dy, dx = _build(fmt, cfg)
    xs, _, st, dil, padding, pads = cfg
    wv = rng.standard_normal(w.output.shape.as_list())
    dyv = rng.standard_normal(y.output.shape.as_list())
    got = ClientSession(root).Run({x: np.zeros(x.output.shape.as_list()), w: wv, dy: dyv}, dx)
    if padding == "SAME":
        pb = []
        for a in (0, 1):
            k = (wv.shape[a] - 1) * dil[a] + 1
            out = -(-xs[1 + a] // st[a])
            pb.append(max((out - 1) * st[a] + k - xs[1 + a], 0) // 2)
    elif padding == "EXPLICIT":
        pb = [pads[0], pads[2]]
    else:
        pb = [0, 0]
    want = conv2d_backprop_input_ref(dyv, wv, _nhwc_to(fmt, xs), st, dil, tuple(pb), fmt)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_v1_with_constant_and_fed_input_sizes_matches_v2():
    root, x, w, y, dy, dx = _build("NHWC", CONFIGS[2])
    kw = dict(dilations=[1, 2, 1, 1])
    v1_const = ops.Conv2DBackpropInput(root, [1, 9, 9, 2], w, dy, [1, 2, 2, 1], "SAME", **kw)
    v1_hw = ops.Conv2DBackpropInput(root, [9, 9], w, dy, [1, 2, 2, 1], "SAME", **kw)
    sizes = ops.Placeholder(root, DT_INT32)
    v1_fed = ops.Conv2DBackpropInput(root, sizes, w, dy, [1, 2, 2, 1], "SAME", **kw)
    v1_shape = ops.Conv2DBackpropInput(root, ops.Shape(root, x), w, dy, [1, 2, 2, 1], "SAME",
                                       **kw)
    assert v1_const.output.shape == [1, 9, 9, 2] == v1_shape.output.shape
    assert v1_hw.output.shape == [1, 9, 9, 2]
    assert v1_fed.output.shape.rank == 4
    wv = rng.standard_normal((3, 3, 2, 3))
    dyv = rng.standard_normal(y.output.shape.as_list())
    outs = ClientSession(root).Run(
        {x: np.zeros((1, 9, 9, 2)), w: wv, dy: dyv, sizes: np.array([1, 9, 9, 2], np.int32)},
        [dx, v1_const, v1_hw, v1_fed, v1_shape])
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_unknown_dims_are_checked_at_run_time_with_the_build_time_message():
    # Same misconfiguration twice: once with known shapes (build time), once unknown (run).
    static = Scope.NewRootScope()
    sx = ops.Placeholder(static, DT_FLOAT, ops.Placeholder.Shape([1, 8, 8, 3]))
    sw = ops.Placeholder(static, DT_FLOAT, ops.Placeholder.Shape([3, 3, 3, 4]))
    sdy = ops.Placeholder(static, DT_FLOAT, ops.Placeholder.Shape([1, 5, 4, 4]))
    ops.Conv2DBackpropInputV2(static, sx, sw, sdy, [1, 2, 2, 1], "SAME")
    build_msg = static.status().errors[0].message
    core = build_msg.split(" for node")[0]
    assert "Size of out_backprop doesn't match computed: actual = 5, computed = 4" in core

    root = Scope.NewRootScope()
    x, w, dy = (ops.Placeholder(root, DT_FLOAT) for _ in range(3))
    dx = ops.Conv2DBackpropInputV2(root.WithOpName("dx"), x, w, dy, [1, 2, 2, 1], "SAME")
    assert root.ok() and dx.output.shape.rank == 4
    feeds = {x: np.zeros((1, 8, 8, 3), np.float32), w: np.zeros((3, 3, 3, 4), np.float32),
             dy: np.zeros((1, 5, 4, 4), np.float32)}
    with pytest.raises(errors.InvalidArgumentError) as info:
        ClientSession(root).Run(feeds, dx)
    assert core in str(info.value)
    assert info.value.op_name == "dx" and "test_conv_ops.py" in info.value.site
    feeds[w] = np.zeros((3, 3, 2, 4), np.float32)          # 3 % 2 != 0
    with pytest.raises(errors.InvalidArgumentError, match="evenly divisible"):
        ClientSession(root).Run(feeds, dx)
    feeds[w] = np.zeros((3, 3, 3), np.float32)
    with pytest.raises(errors.InvalidArgumentError, match="must be rank 4 but is rank 3"):
        ClientSession(root).Run(feeds, dx)


@pytest.mark.parametrize(("xs", "fs", "dys"), [
    ((0, 6, 6, 2), (3, 3, 2, 4), (0, 6, 6, 4)),     # empty batch
    ((2, 6, 6, 0), (3, 3, 1, 4), (2, 6, 6, 4)),     # no input channels
    ((2, 6, 6, 2), (3, 3, 2, 0), (2, 6, 6, 0)),     # no output channels -> zeros
    ((2, 6, 6, 2), (0, 3, 2, 4), (2, 6, 6, 4)),     # zero-height filter -> zeros
    ((2, 0, 6, 2), (3, 3, 2, 4), (2, 0, 6, 4)),     # zero-height input
])
def test_empty_tensors_give_correctly_shaped_results(xs, fs, dys):
    root = Scope.NewRootScope().ExitOnError()
    x = ops.Placeholder(root, DT_FLOAT, ops.Placeholder.Shape(xs))
    w = ops.Placeholder(root, DT_FLOAT, ops.Placeholder.Shape(fs))
    dy = ops.Placeholder(root, DT_FLOAT, ops.Placeholder.Shape(dys))
    dx = ops.Conv2DBackpropInputV2(root, x, w, dy, [1, 1, 1, 1], "SAME")
    out = ClientSession(root).Run({x: np.ones(xs, np.float32), w: np.ones(fs, np.float32),
                                   dy: np.ones(dys, np.float32)}, dx)
    assert out.shape == xs and out.dtype == np.float32
    assert not out.any()


def test_huge_results_are_refused_before_allocation():
    # 2^60 elements arriving as zero-stride broadcast views: shape-only input.
    root = Scope.NewRootScope()
    x, w, dy = (ops.Placeholder(root, DT_FLOAT) for _ in range(3))
    dx = ops.Conv2DBackpropInputV2(root, x, w, dy, [1, 1, 1, 1], "VALID")
    shape = (1 << 20, 1 << 20, 1 << 10, 1 << 10)
    feeds = {x: np.broadcast_to(np.float32(0), shape),
             w: np.ones((1, 1, 1 << 10, 1), np.float32),
             dy: np.broadcast_to(np.float32(1), shape[:3] + (1,))}
    with pytest.raises(errors.ResourceExhaustedError, match="OOM when allocating"):
        ClientSession(root).Run(feeds, dx)
    assert isinstance(errors.ResourceExhaustedError("x"), MemoryError)


def test_non_contiguous_fortran_and_broadcast_feeds():
    root, x, w, y, dy, dx = _build("NHWC", CONFIGS[0], DT_FLOAT)
    wv = rng.standard_normal((3, 3, 4, 5)).astype(np.float32)
    dyv = rng.standard_normal((2, 7, 6, 5)).astype(np.float32)
    sess = ClientSession(root)
    xz = np.zeros((2, 7, 6, 4), np.float32)
    want = sess.Run({x: xz, w: wv, dy: dyv}, dx)
    big = np.zeros((4, 14, 12, 10), np.float32)
    big[::2, ::2, ::2, :5] = dyv
    variants = [
        {x: np.broadcast_to(np.float32(7), xz.shape), w: np.asfortranarray(wv),
         dy: big[::2, ::2, ::2, :5]},
        {x: xz, w: wv[::-1, ::-1][::-1, ::-1], dy: np.asfortranarray(dyv)},
    ]
    for feeds in variants:
        np.testing.assert_allclose(sess.Run(feeds, dx), want, rtol=1e-6, atol=1e-6)
    ones = np.broadcast_to(np.float32(1), dyv.shape)          # a zero-stride out_backprop
    got = sess.Run({x: xz, w: wv, dy: ones}, dx)
    np.testing.assert_allclose(got, sess.Run({x: xz, w: wv, dy: np.ones_like(dyv)}, dx),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("dtype", "rtol"), [
    ("float64", 1e-10), ("float32", 1e-4), ("float16", 2e-3), ("int32", 0)])
def test_dtypes(dtype, rtol):
    cfg = CONFIGS[2]
    root, x, w, y, dy, dx = _build("NHWC", cfg, as_dtype(dtype))
    if dtype == "int32":
        wv = rng.integers(-3, 4, (3, 3, 2, 3))
        dyv = rng.integers(-3, 4, y.output.shape.as_list())
    else:
        wv = rng.standard_normal((3, 3, 2, 3))
        dyv = rng.standard_normal(y.output.shape.as_list())
    np_dt = np.dtype(dtype)
    got = ClientSession(root).Run({x: np.zeros((1, 9, 9, 2), np_dt), w: wv.astype(np_dt),
                                   dy: dyv.astype(np_dt)}, dx)
    assert got.dtype == np_dt
    want = conv2d_backprop_input_ref(dyv.astype(np_dt).astype(np.float64),
                                     wv.astype(np_dt).astype(np.float64), (1, 9, 9, 2),
                                     (2, 2), (2, 1), (2, 1), "NHWC")
    if dtype == "int32":
        np.testing.assert_array_equal(got, want.astype(np.int64))
    else:
        scale = np.abs(want).max()
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=0, atol=rtol * scale)


def test_bfloat16():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    from opgraph import DT_BFLOAT16
    root, x, w, y, dy, dx = _build("NHWC", CONFIGS[0], DT_BFLOAT16)
    bf = ml_dtypes.bfloat16
    wv = rng.standard_normal((3, 3, 4, 5)).astype(bf)
    dyv = rng.standard_normal((2, 7, 6, 5)).astype(bf)
    got = ClientSession(root).Run({x: np.zeros((2, 7, 6, 4), bf), w: wv, dy: dyv}, dx)
    assert got.dtype == bf
    want = conv2d_backprop_input_ref(dyv.astype(np.float64), wv.astype(np.float64),
                                     (2, 7, 6, 4), (1, 1), (1, 1), (1, 1), "NHWC")
    np.testing.assert_allclose(got.astype(np.float64), want, atol=1e-2 * np.abs(want).max())
