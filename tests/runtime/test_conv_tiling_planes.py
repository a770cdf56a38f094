"""The input gradient of kernels that tile dx exactly (kernel = stride, no padding: U-Net's
2x2 up-convolutions, 1x1 layers), against the float64 direct-loop reference:
- on channel planes (NCHW), the compiled tiling_planes kernel: shapes whose pixel panels span
  dy rows or fall short of one, kernels 1 or 2 wide and 1-3 high, odd channel counts,
  threads, views, non-finite values, what the dispatch takes and declines, its refusals;
- on short NHWC pixel rows, the compiled tiling_pixels kernel: register tiles spanning dy rows
  and images, channel tails, both work splits (pixel blocks; the filter's taps and blocks),
  dx views, the dispatch rule."""

import numpy as np
import pytest

from runtime.kernels.cpu import conv_impl, native
from tests.reference import conv2d_backprop_input_ref

nat = native.load()
pytestmark = pytest.mark.skipif(nat is None or not nat.has_tiling_planes,
                                reason="the compiled tiling_planes kernel is not available")

CASES = [  # n, oh, ow, cout, cin, kh, kw
    (1, 64, 64, 16, 8, 2, 2),    # U-Net 2x2, rows of whole panels
    (2, 5, 7, 9, 5, 2, 2),       # panels spanning dy rows, a short last panel, odd channels
    (1, 3, 3, 1, 1, 2, 2),       # fewer pixels than a panel, one channel each side
    (3, 6, 19, 24, 13, 3, 2),    # 3 row phases, cin * kh * kw not a multiple of the tile
    (2, 9, 11, 7, 20, 1, 1),     # a 1x1 layer (stride 1)
    (1, 4, 40, 33, 6, 2, 1),     # 2x1: row phases only
    (2, 17, 3, 40, 7, 1, 2),     # 1x2: column phases only
    (1, 2, 3, 8, 40, 2, 2),      # filter rows outnumber dy pixels: items split the rows
    (1, 20, 30, 4, 160, 2, 2),   # ... over groups of 16 panels and a short last group
    (2, 3, 5, 6, 29, 1, 1),      # 29 filter rows: a last tile of one row
]


@pytest.fixture(autouse=True)
def _restore(monkeypatch):
    monkeypatch.setattr(conv_impl, "NUM_THREADS", conv_impl.NUM_THREADS)
    monkeypatch.setattr(conv_impl, "TINY_MACS", 0)  # (small problems take the path too)


@pytest.fixture
def ran(monkeypatch):
    """The dy shapes tiling_planes runs on, from now on."""
    calls = []
    lib = native.load()  # (the library conv_impl calls now: other tests may reload it)
    real = lib.tiling_planes
    monkeypatch.setattr(lib, "tiling_planes",
                        lambda *a, **k: (calls.append(a[0].shape), real(*a, **k))[1])
    return calls


def _problem(case, seed=0, dtype=np.float32):
    n, oh, ow, cout, cin, kh, kw = case
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((kh, kw, cin, cout)).astype(dtype)
    dy = rng.standard_normal((n, cout, oh, ow)).astype(dtype)  # NCHW
    return dy, w, (n, cin, oh * kh, ow * kw)


def _reference(dy, w, shape):
    kh, kw = w.shape[:2]
    n, cin, h, wd = shape
    ref = conv2d_backprop_input_ref(dy.transpose(0, 2, 3, 1).astype(np.float64),
                                    w.astype(np.float64), (n, h, wd, cin), (kh, kw), (1, 1),
                                    (0, 0), "NHWC")
    return ref.transpose(0, 3, 1, 2)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_matches_the_direct_loop(case, threads, ran):
    conv_impl.NUM_THREADS = threads
    conv_impl.PARALLEL_MIN_MACS, saved = 0, conv_impl.PARALLEL_MIN_MACS
    try:
        dy, w, shape = _problem(case, seed=threads)
        kh, kw = w.shape[:2]
        got = conv_impl.conv2d_backprop_input(dy, w, shape, (kh, kw), (1, 1), (0, 0), "NCHW")
    finally:
        conv_impl.PARALLEL_MIN_MACS = saved
    assert ran, "tiling_planes did not run"
    ref = _reference(dy, w, shape)
    assert got.shape == shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6 * np.sqrt(case[3]) * np.abs(ref).max())


def test_writes_only_its_view_of_a_larger_dx():
    """dx a view (channels and rows of a larger buffer, NaN around it): exactly the view is
    written; a constant filter keeps its rearranged rows in the cache."""
    dy, w, (n, cin, h, wd) = _problem((2, 5, 21, 12, 6, 2, 2), seed=4)
    big = np.full((n, cin + 3, h + 5, wd + 7), np.nan, np.float32)
    dx = big[:, 1:1 + cin, 2:2 + h, 3:3 + wd]
    wr = np.ascontiguousarray(w.transpose(0, 2, 1, 3)).reshape(2 * cin * 2, 12)
    nat.tiling_planes(dy.transpose(0, 2, 3, 1), wr, dx.transpose(0, 2, 3, 1), 2, 2, 2)
    np.testing.assert_allclose(dx, _reference(dy, w, (n, cin, h, wd)), rtol=0, atol=1e-4)
    outside = np.ones(big.shape, bool)
    outside[:, 1:1 + cin, 2:2 + h, 3:3 + wd] = False
    assert np.isnan(big[outside]).all()


def test_non_finite_values_land_where_a_direct_loop_puts_them(ran):
    dy, w, shape = _problem((1, 4, 9, 8, 5, 2, 2), seed=5)
    dy[0, 3, 2, 4] = np.inf
    w[1, 0, 2, 6] = np.nan
    got = conv_impl.conv2d_backprop_input(dy, w, shape, (2, 2), (1, 1), (0, 0), "NCHW")
    assert ran
    with np.errstate(invalid="ignore"):
        ref = _reference(dy, w, shape)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(got[finite], ref[finite], rtol=0, atol=1e-4)


@pytest.mark.parametrize("what", ["NHWC", "padded", "dilated", "grouped", "3 wide", "float64",
                                  "strided dy", "forced"])
def test_declines_what_it_does_not_compute(what, ran, monkeypatch):
    """Other layouts and geometries take the other paths (and are still right)."""
    dy, w, shape = _problem((2, 4, 6, 8, 8, 2, 2), seed=6)
    strides, dil, pads, fmt = (2, 2), (1, 1), (0, 0), "NCHW"
    n, cin, h, wd = shape
    if what == "NHWC":
        dy, shape, fmt = np.ascontiguousarray(dy.transpose(0, 2, 3, 1)), (n, h, wd, cin), "NHWC"
    elif what == "padded":
        pads, shape = (1, 0), (n, cin, h - 2, wd)
    elif what == "dilated":
        dil, shape = (1, 2), (n, cin, h, wd + 1)
    elif what == "grouped":
        w = w[:, :, :4]
    elif what == "3 wide":
        w = np.concatenate([w, w[:, :1]], axis=1)
        strides, shape = (2, 3), (n, cin, h, 3 * dy.shape[3])
    elif what == "float64":
        dy, w = dy.astype(np.float64), w.astype(np.float64)
    elif what == "strided dy":
        dy = np.repeat(dy, 2, axis=3)[..., ::2]
    else:
        monkeypatch.setattr(conv_impl, "FORCE_ALGORITHM", "native")
    got = conv_impl.conv2d_backprop_input(dy, w, shape, strides, dil, pads, fmt)
    assert not ran
    x = dy if fmt == "NHWC" else dy.transpose(0, 2, 3, 1)
    want = shape if fmt == "NHWC" else (shape[0], shape[2], shape[3], shape[1])
    ref = conv2d_backprop_input_ref(x.astype(np.float64), w.astype(np.float64), want, strides,
                                    dil, pads, "NHWC")
    got = got if fmt == "NHWC" else got.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * max(1.0, np.abs(ref).max()))


def test_refuses_arguments_it_does_not_take():
    dy, w, shape = _problem((1, 3, 4, 8, 4, 2, 2))
    wr = np.ascontiguousarray(w.transpose(0, 2, 1, 3)).reshape(16, 8)
    dyv = dy.transpose(0, 2, 3, 1)
    dx = np.empty(shape, np.float32).transpose(0, 2, 3, 1)
    with pytest.raises(ValueError, match="do not match"):
        nat.tiling_planes(dyv, wr[:8], dx, 2, 2)
    with pytest.raises(ValueError, match="do not match"):
        nat.tiling_planes(dyv, wr, dx, 2, 3)
    with pytest.raises(ValueError, match="channel planes expected"):
        nat.tiling_planes(np.ascontiguousarray(dyv), wr, dx, 2, 2)  # channels-last dy
    with pytest.raises(ValueError, match="channel planes expected"):
        nat.tiling_planes(dyv, wr.astype(np.float64), dx, 2, 2)


def test_workspace_bound_counts_the_filter_rows_and_panels():
    small, large = (conv_impl.conv2d_backprop_input_workspace_bytes(
        (n, 128, 64, 64), (2, 2, 64, 128), (n, 64, 128, 128), (2, 2), (1, 1), (0, 0), "NCHW")
        for n in (1, 8))
    assert small >= conv_impl._tiling_planes_workspace_bytes((2, 2, 64, 128), 1)
    # the rearranged filter and a thread's 16 dy panels of a block's width of pixels
    assert large >= 4 * 2 * 2 * 64 * 128 + 4 * 16 * 128 * native.load().block_width
    assert large < 8 * 64 * 128 * 128 * 4  # (not growing like the batch's dx)


# ---- tiling_pixels: NHWC, register tiles flat over short dy rows ---------------------------
PIXEL_CASES = [  # n, oh, ow, cout, cin, kh, kw
    (3, 5, 3, 24, 20, 2, 2),     # tiles spanning rows and images, a channel tail
    (1, 4, 16, 40, 64, 2, 2),    # U-Net-like 16-pixel rows, two channel blocks
    (2, 3, 7, 16, 5, 3, 1),      # 3x1, fewer channels than a vector
    (1, 2, 2, 8, 48, 2, 3),      # a filter larger than dy: items split the taps and blocks
    (1, 1, 3, 8, 80, 3, 1),      # ... into chunks of which the last is short
    (4, 6, 5, 33, 17, 1, 1),     # 1x1
]


@pytest.mark.parametrize("case", PIXEL_CASES, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_tiling_pixels_matches_the_direct_loop(case, threads):
    lib = native.load()
    if not lib.has_tiling_pixels:
        pytest.skip("no tiling_pixels kernel in this library")
    n, oh, ow, cout, cin, kh, kw = case
    rng = np.random.default_rng(threads + cout)
    w = rng.standard_normal((kh, kw, cin, cout)).astype(np.float32)
    dy = rng.standard_normal((n, oh, ow, cout)).astype(np.float32)
    shape = (n, kh * oh, kw * ow, cin)
    ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), shape,
                                    (kh, kw), (1, 1), (0, 0), "NHWC")
    big = np.full((n, shape[1] + 1, shape[2] + 2, cin + 5), np.nan, np.float32)
    dx = big[:, 1:, 1:-1, 2:2 + cin]  # (a view: pixels wider than its channels)
    lib.tiling_pixels(dy, lib.pack(w, 3, 1, 1), dx, kh, kw, threads)
    np.testing.assert_allclose(dx, ref, rtol=0, atol=2e-6 * np.sqrt(cout) * np.abs(ref).max())
    outside = np.ones(big.shape, bool)
    outside[:, 1:, 1:-1, 2:2 + cin] = False
    assert np.isnan(big[outside]).all()


def test_tiling_pixels_dispatch_takes_short_rows_only(monkeypatch):
    lib = native.load()
    if not lib.has_tiling_pixels:
        pytest.skip("no tiling_pixels kernel in this library")
    calls = []
    real = lib.tiling_pixels
    monkeypatch.setattr(lib, "tiling_pixels",
                        lambda *a, **k: (calls.append(a[0].shape), real(*a, **k))[1])
    rng = np.random.default_rng(7)
    rb = lib.tile_rows
    for ow in (3, rb, 4 * rb):
        w = rng.standard_normal((2, 2, 32, 48)).astype(np.float32)
        dy = rng.standard_normal((2, 3, ow, 48)).astype(np.float32)
        shape = (2, 6, 2 * ow, 32)
        del calls[:]
        got = conv_impl.conv2d_backprop_input(dy, w, shape, (2, 2), (1, 1), (0, 0), "NHWC")
        # rows of 3 pixels fill less than 3/4 of a tile; whole tiles per row keep the
        # one-call kernel
        assert bool(calls) == (4 * ow < 3 * rb * -(-ow // rb)), ow
        ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), shape,
                                        (2, 2), (1, 1), (0, 0), "NHWC")
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * np.abs(ref).max())
    with pytest.raises(ValueError, match="contiguous float32 dy"):
        lib.tiling_pixels(np.asfortranarray(dy), lib.pack(w, 3, 1, 1),
                          np.empty(shape, np.float32), 2, 2)
    with pytest.raises(ValueError, match="packed filter"):
        lib.tiling_pixels(dy, lib.pack(w, 3, 1, 1)[1:], np.empty(shape, np.float32), 2, 2)


# ---- Conv2D 1x1 stride 1 in NCHW: the same GEMM with the filter's channel axes swapped ------
@pytest.mark.parametrize("n, h, wd, cin, cout", [(2, 9, 7, 24, 40), (1, 14, 14, 300, 17),
                                                 (3, 4, 5, 5, 64)])
def test_conv2d_1x1_nchw_forward(n, h, wd, cin, cout, ran):
    from tests.reference import conv2d_forward_ref
    rng = np.random.default_rng(n * 100 + cin)
    x = rng.standard_normal((n, cin, h, wd)).astype(np.float32)
    w = rng.standard_normal((1, 1, cin, cout)).astype(np.float32)
    x[0, 1, 2, 3] = np.inf
    y = conv_impl.conv2d_forward(x, w, (1, 1), (1, 1), (0, 0), (h, wd), "NCHW")
    assert ran and y.shape == (n, cout, h, wd)
    with np.errstate(invalid="ignore"):
        ref = conv2d_forward_ref(x.transpose(0, 2, 3, 1).astype(np.float64),
                                 w.astype(np.float64), (1, 1), (1, 1), (0, 0),
                                 (h, wd)).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(y[finite], ref[finite], rtol=0,
                               atol=2e-6 * np.sqrt(cin) * np.abs(ref[finite]).max())
    del ran[:]  # strided or padded 1x1 layers are not one GEMM per plane: other paths
    conv_impl.conv2d_forward(x, w, (2, 2), (1, 1), (0, 0), ((h + 1) // 2, (wd + 1) // 2),
                             "NCHW")
    conv_impl.conv2d_forward(x, w, (1, 1), (1, 1), (1, 1), (h + 2, wd + 2), "NCHW")
    assert not ran
