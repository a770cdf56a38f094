"""The sub-pixel paths of conv2d_backprop_input against the direct-loop reference:
- the GEMM path (kernel = stride, no padding: U-Net's 2x2 up-convolutions): layouts (NHWC,
  NCHW, a strided dy), float32 and float64, threads, blocks, non-finite values, the shuffle
  store and its numpy fallback, the workspace bound;
- the forward-convolution path (kernel = m x stride onto few channels: DCGAN's last layer):
  paddings (output padding, negative forward padding), unequal strides, blocks, threads,
  non-finite values, the workspace bound."""

import numpy as np
import pytest

from runtime.kernels.cpu import conv_impl, native
from tests.reference import conv2d_backprop_input_ref

CASES = [  # n, oh, ow, cout, cin, kh, kw
    (2, 4, 5, 16, 8, 2, 2),      # U-Net 2x2
    (1, 3, 3, 12, 20, 3, 3),     # 3x3 stride 3, channels not a multiple of the vector width
    (3, 2, 6, 9, 16, 2, 4),      # unequal strides
    (1, 1, 7, 5, 32, 4, 2),      # one dy row
    (1, 3, 19, 8, 16, 2, 2),     # rows of 8-column interleaves and a tail (NCHW)
    (2, 3, 10, 8, 5, 2, 1),      # one column phase: row copies (NCHW)
]


@pytest.fixture(autouse=True)
def _restore(monkeypatch):
    monkeypatch.setattr(conv_impl, "NUM_THREADS", conv_impl.NUM_THREADS)


def _problem(case, dtype, seed=0):
    n, oh, ow, cout, cin, kh, kw = case
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((kh, kw, cin, cout)).astype(dtype)
    dy = rng.standard_normal((n, oh, ow, cout)).astype(dtype)
    return dy, w, (n, oh * kh, ow * kw, cin)


def _run(dy, w, shape, fmt, spy=None):
    kh, kw = w.shape[:2]
    if fmt == "NCHW":
        dy = np.ascontiguousarray(dy.transpose(0, 3, 1, 2))
        n, h, wd, c = shape
        shape = (n, c, h, wd)
    out = conv_impl.conv2d_backprop_input(dy, w, shape, (kh, kw), (1, 1), (0, 0), fmt)
    return out if fmt == "NHWC" else out.transpose(0, 2, 3, 1)


@pytest.fixture
def spy(monkeypatch):
    """Records every run of the sub-pixel GEMM path (forced, so it runs on any machine)."""
    ran = []
    real = conv_impl._subpixel_gemm_run
    monkeypatch.setattr(conv_impl, "_subpixel_gemm_run",
                        lambda *a: (ran.append(a[0].shape), real(*a)))
    monkeypatch.setattr(conv_impl, "FORCE_ALGORITHM", "subpixel")
    return ran


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_subpixel_gemm_matches_reference(case, fmt, dtype, threads, spy, monkeypatch):
    monkeypatch.setattr(conv_impl, "NUM_THREADS", threads)
    monkeypatch.setattr(conv_impl, "PARALLEL_MIN_MACS", 0)
    dy, w, shape = _problem(case, dtype)
    got = _run(dy, w, shape, fmt)
    assert spy, "the sub-pixel GEMM path did not run"
    ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), shape,
                                    w.shape[:2], (1, 1), (0, 0), "NHWC")
    assert got.dtype == dtype and got.shape == ref.shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.abs(ref).max())


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("compiled_store", [True, False])
def test_subpixel_gemm_non_finite_like_direct_loop(fmt, compiled_store, spy, monkeypatch):
    """A NaN in dy reaches exactly the kh*kw*cin outputs of its pixel; an inf weight the
    outputs of its (tap, channel) over every pixel, signed by dy."""
    if not compiled_store:
        monkeypatch.setattr(conv_impl, "USE_NATIVE", False)  # the numpy placement
    dy, w, shape = _problem((2, 3, 4, 8, 6, 2, 2), np.float32, seed=3)
    dy[1, 2, 0, 3] = np.nan
    w[1, 0, 4, 5] = np.inf
    got = _run(dy, w, shape, fmt)
    assert spy
    with np.errstate(invalid="ignore"):
        ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), shape,
                                        (2, 2), (1, 1), (0, 0), "NHWC")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got[np.isinf(ref)], ref[np.isinf(ref)])


def test_subpixel_gemm_declines_a_strided_dy(spy):
    """dy with neither its pixels nor its channels contiguous (every other channel of a
    wider array) takes another path, with the same result."""
    dy, w, shape = _problem((2, 3, 3, 10, 4, 2, 2), np.float32, seed=5)
    view = np.repeat(dy, 2, axis=3)[..., ::2]
    got = conv_impl.conv2d_backprop_input(view, w, shape, (2, 2), (1, 1), (0, 0), "NHWC")
    assert not spy
    ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), shape,
                                    (2, 2), (1, 1), (0, 0), "NHWC")
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_subpixel_gemm_applies_only_to_exact_tiling():
    dy = np.zeros((1, 4, 4, 8), np.float32)
    dx = np.zeros((1, 8, 8, 8), np.float32)
    w = np.zeros((2, 2, 8, 8), np.float32)
    applies = conv_impl._subpixel_gemm_applies
    assert not applies(dy, np.zeros((4, 4, 8, 8), np.float32), dx, (2, 2), (1, 1), (0, 0), 1,
                       np.float32)  # kernel larger than the stride
    assert not applies(dy, w, dx, (2, 2), (1, 1), (1, 1), 1, np.float32)  # padded
    assert not applies(dy, w, dx, (2, 2), (2, 2), (0, 0), 1, np.float32)  # dilated
    assert not applies(dy, w, dx, (2, 2), (1, 1), (0, 0), 2, np.float32)  # grouped
    assert not applies(dy.astype(np.float16), w, dx, (2, 2), (1, 1), (0, 0), 1, np.float32)
    assert applies(dy, w, dx, (2, 2), (1, 1), (0, 0), 1, np.float64) is False  # dtype mismatch
    d64 = dy.astype(np.float64)
    assert applies(d64, w, dx, (2, 2), (1, 1), (0, 0), 1, np.float64) == \
        conv_impl._BLAS.available
    planes = np.ascontiguousarray(d64.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    assert not applies(planes, w, dx, (2, 2), (1, 1), (0, 0), 1, np.float64)  # NCHW: unforced
    assert not applies(dy, w, dx, (2, 2), (1, 1), (0, 0), 1, np.float32)  # float32: unforced


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("block", ["images", "rows"])
def test_subpixel_gemm_in_blocks(fmt, block, spy, monkeypatch):
    """Small blocks: several whole images, or a few dy rows of one image, per GEMM."""
    case = (3, 5, 4, 8, 6, 2, 2)
    n, oh, ow, cout, cin, kh, kw = case
    row = ow * kh * kw * cin * 4
    monkeypatch.setattr(conv_impl, "BLOCK_BYTES", 2 * oh * row if block == "images" else 2 * row)
    dy, w, shape = _problem(case, np.float32, seed=9)
    got = _run(dy, w, shape, fmt)
    units = conv_impl._subpixel_units(n, oh, ow, kh * kw * cin, 4)
    assert len(units) == (2 if block == "images" else 9)
    ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), shape,
                                    (kh, kw), (1, 1), (0, 0), "NHWC")
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_subpixel_gemm_workspace_bound(fmt, dtype, monkeypatch):
    """What a call allocates (tracemalloc) stays within conv2d_backprop_input_workspace_bytes,
    which does not grow with the batch once a block is smaller than the result."""
    import tracemalloc  # noqa: PLC0415

    if not conv_impl._BLAS.available:
        pytest.skip("numpy's BLAS thread control unavailable")
    monkeypatch.setattr(conv_impl, "FORCE_ALGORITHM", "subpixel")
    monkeypatch.setattr(conv_impl, "BLOCK_BYTES", 1 << 16)
    n, oh, cout, cin = 4, 12, 16, 8
    shape = (n, 2 * oh, 2 * oh, cin) if fmt == "NHWC" else (n, cin, 2 * oh, 2 * oh)
    dy_shape = (n, oh, oh, cout) if fmt == "NHWC" else (n, cout, oh, oh)
    rng = np.random.default_rng(4)
    wt = rng.standard_normal((2, 2, cin, cout)).astype(dtype)
    dy = rng.standard_normal(dy_shape).astype(dtype)
    conv_impl.conv2d_backprop_input(dy, wt, shape, (2, 2), (1, 1), (0, 0), fmt)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        dx = conv_impl.conv2d_backprop_input(dy, wt, shape, (2, 2), (1, 1), (0, 0), fmt)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    bound = conv_impl.conv2d_backprop_input_workspace_bytes(dy_shape, wt.shape, shape, (2, 2),
                                                            (1, 1), (0, 0), fmt, dtype)
    assert peak - base - dx.nbytes <= bound
    big = conv_impl.conv2d_backprop_input_workspace_bytes(
        (64,) + dy_shape[1:], wt.shape, (64,) + shape[1:], (2, 2), (1, 1), (0, 0), fmt, dtype)
    assert big == bound < 16 * dx.nbytes  # (the 64-image result)


# -- the forward-convolution path ------------------------------------------------------------
CONV_CASES = [  # n, oh, ow, cout, cin, (kh, kw), (sh, sw), (pt, pl), output padding
    (2, 5, 6, 16, 3, (4, 4), (2, 2), (1, 1), 0),     # DCGAN's last layer
    (1, 4, 4, 8, 3, (4, 4), (2, 2), (1, 1), 1),      # output padding
    (2, 3, 5, 8, 2, (6, 6), (3, 3), (2, 2), 0),      # m = 2, stride 3
    (1, 4, 3, 8, 3, (4, 4), (2, 2), (0, 0), 0),      # unpadded
    (1, 5, 5, 8, 1, (8, 8), (4, 4), (3, 3), 1),      # one channel, m = 2, stride 4
    (1, 5, 5, 8, 1, (8, 8), (4, 4), (5, 5), 1),      # padding beyond a stride (negative pads)
    (2, 4, 6, 12, 3, (4, 2), (2, 2), (1, 0), 0),     # m = 2 x 1
    (1, 3, 3, 8, 3, (2, 2), (2, 2), (1, 1), 1),      # m = 1, padded
]


def _conv_problem(case, seed=0):
    n, oh, ow, cout, cin, (kh, kw), (sh, sw), (pt, pl), op = case
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((kh, kw, cin, cout)).astype(np.float32)
    dy = rng.standard_normal((n, oh, ow, cout)).astype(np.float32)
    h = (oh - 1) * sh - 2 * pt + kh + op
    wd = (ow - 1) * sw - 2 * pl + kw + op
    return dy, w, (n, h, wd, cin), (sh, sw), (pt, pl)


@pytest.fixture
def conv_spy(monkeypatch):
    """Records every run of the sub-pixel convolution path; small problems not diverted to
    the tiny direct path."""
    nat = native.load()
    if nat is None or not nat.has_shuffle_store:
        pytest.skip(f"compiled kernel unavailable: {native.unavailable_reason()}")
    ran = []
    real = conv_impl._subpixel_conv_run
    monkeypatch.setattr(conv_impl, "_subpixel_conv_run",
                        lambda *a: (ran.append(a[0].shape), real(*a)))
    monkeypatch.setattr(conv_impl, "TINY_MACS", 0)
    return ran


def _conv_run(dy, w, shape, st, pd, fmt):
    if fmt == "NCHW":
        dy = np.ascontiguousarray(dy.transpose(0, 3, 1, 2))
        n, h, wd, c = shape
        shape = (n, c, h, wd)
    out = conv_impl.conv2d_backprop_input(dy, w, shape, st, (1, 1), pd, fmt)
    return out if fmt == "NHWC" else out.transpose(0, 2, 3, 1)


def _conv_ref(dy, w, shape, st, pd):
    with np.errstate(invalid="ignore"):
        return conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), shape,
                                         st, (1, 1), pd, "NHWC")


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"k{c[5][0]}{c[5][1]}s{c[6][0]}"
                         f"p{c[7][0]}{c[7][1]}o{c[8]}c{c[4]}")
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("threads", [1, 2])
def test_subpixel_conv_matches_reference(case, fmt, threads, conv_spy, monkeypatch):
    dy, w, shape, st, pd = _conv_problem(case)
    if not conv_impl._subpixel_conv_takes(dy.shape, w.shape, shape, st, (1, 1), pd, 1):
        pytest.skip("this machine's vector width leaves the decomposition no better")
    monkeypatch.setattr(conv_impl, "NUM_THREADS", threads)
    monkeypatch.setattr(conv_impl, "SHUFFLE_PARALLEL_MIN_MACS", 0)
    got = _conv_run(dy, w, shape, st, pd, fmt)
    assert conv_spy, "the sub-pixel convolution path did not run"
    ref = _conv_ref(dy, w, shape, st, pd)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_subpixel_conv_in_blocks(fmt, conv_spy, monkeypatch):
    """Blocks of a few rows of Z per forward call: the row offsets of the padding and of the
    shuffle move with the block."""
    case = (2, 7, 5, 8, 3, (4, 4), (2, 2), (1, 1), 1)
    dy, w, shape, st, pd = _conv_problem(case, seed=2)
    if not conv_impl._subpixel_conv_takes(dy.shape, w.shape, shape, st, (1, 1), pd, 1):
        pytest.skip("this machine's vector width leaves the decomposition no better")
    tw = shape[2] // 2 + 1
    monkeypatch.setattr(conv_impl, "BLOCK_BYTES", 2 * tw * 4 * 3 * 4)  # 2 rows of Z
    got = _conv_run(dy, w, shape, st, pd, fmt)
    assert conv_spy
    np.testing.assert_allclose(got, _conv_ref(dy, w, shape, st, pd), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_subpixel_conv_non_finite_like_direct_loop(fmt, conv_spy):
    case = (2, 5, 6, 16, 3, (4, 4), (2, 2), (1, 1), 0)
    dy, w, shape, st, pd = _conv_problem(case, seed=4)
    if not conv_impl._subpixel_conv_takes(dy.shape, w.shape, shape, st, (1, 1), pd, 1):
        pytest.skip("this machine's vector width leaves the decomposition no better")
    dy[0, 0, 0, 3] = np.nan      # a corner pixel: its taps partly outside dx
    dy[1, 4, 5, 0] = -np.inf
    w[3, 0, 2, 7] = np.inf
    got = _conv_run(dy, w, shape, st, pd, fmt)
    assert conv_spy
    ref = _conv_ref(dy, w, shape, st, pd)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(got[np.isinf(ref)], ref[np.isinf(ref)])
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_subpixel_conv_workspace_bound(fmt, monkeypatch):
    import tracemalloc  # noqa: PLC0415

    case = (4, 12, 12, 32, 3, (4, 4), (2, 2), (1, 1), 0)
    dy, w, shape, st, pd = _conv_problem(case, seed=6)
    nat = native.load()
    if nat is None or not conv_impl._subpixel_conv_takes(dy.shape, w.shape, shape, st,
                                                         (1, 1), pd, 1):
        pytest.skip("this machine's vector width leaves the decomposition no better")
    monkeypatch.setattr(conv_impl, "BLOCK_BYTES", 1 << 15)
    n, h, wd, c = shape
    xs = shape if fmt == "NHWC" else (n, c, h, wd)
    d = dy if fmt == "NHWC" else np.ascontiguousarray(dy.transpose(0, 3, 1, 2))
    conv_impl.conv2d_backprop_input(d, w, xs, st, (1, 1), pd, fmt)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        dx = conv_impl.conv2d_backprop_input(d, w, xs, st, (1, 1), pd, fmt)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    bound = conv_impl.conv2d_backprop_input_workspace_bytes(d.shape, w.shape, xs, st, (1, 1),
                                                            pd, fmt, np.float32)
    assert peak - base - dx.nbytes <= bound
    big = conv_impl.conv2d_backprop_input_workspace_bytes(
        (64,) + d.shape[1:], w.shape, (64,) + xs[1:], st, (1, 1), pd, fmt, np.float32)
    assert big == bound
