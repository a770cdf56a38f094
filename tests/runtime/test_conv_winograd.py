"""The Winograd F(2x2, 2x2) input gradient of 4x4 stride-2 convolutions (conv_winograd.c),
against the float64 direct-loop reference: paddings, sizes, channel tails, views, threads,
work-item sizes, the dispatch rules (finite values only, enough channels and pixels, the
filter cache) and the kernel's refusals."""

import numpy as np
import pytest

from tests.reference import conv2d_backprop_input_ref
from tests.runtime.half_dtypes import half_dtypes
from runtime.kernels.cpu import conv_impl
from runtime.kernels.cpu import native as _native

nat = _native.load()
pytestmark = pytest.mark.skipif(nat is None or not nat.has_winograd,
                                reason="the compiled Winograd kernel is not available")


@pytest.fixture(autouse=True)
def _restore():
    saved = (conv_impl.FORCE_ALGORITHM, conv_impl.NUM_THREADS, conv_impl.PARALLEL_MIN_MACS)
    yield
    conv_impl.FORCE_ALGORITHM, conv_impl.NUM_THREADS, conv_impl.PARALLEL_MIN_MACS = saved


def _count_calls(monkeypatch, name):
    """The dy shapes conv_impl.<name> is called with, from now on."""
    calls = []
    run = getattr(conv_impl, name)

    def counted(*args):
        calls.append(args[0].shape)
        return run(*args)

    monkeypatch.setattr(conv_impl, name, counted)
    return calls


@pytest.fixture
def winograd_calls(monkeypatch):
    return _count_calls(monkeypatch, "_winograd_run")


def _dy_size(x, pad_before, pad_after):
    return (x + pad_before + pad_after - 4) // 2 + 1


def _case(rng, n, h, wd, cin, cout, pads):
    (pt, pb), (pl, pr) = pads
    oh, ow = _dy_size(h, pt, pb), _dy_size(wd, pl, pr)
    w = rng.standard_normal((4, 4, cin, cout)).astype(np.float32)
    dy = rng.standard_normal((n, oh, ow, cout)).astype(np.float32)
    return dy, w, (n, h, wd, cin), (pt, pl)


def _check(dy, w, xshape, pads, what):
    got = conv_impl.conv2d_backprop_input(dy, w, xshape, (2, 2), (1, 1), pads, "NHWC")
    ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), xshape,
                                    (2, 2), (1, 1), pads, "NHWC")
    scale = max(1.0, float(np.abs(ref).max()))
    err = float(np.abs(got - ref).max()) / scale
    assert got.dtype == np.float32 and got.shape == tuple(xshape)
    assert err < 2e-6 * np.sqrt(16 * w.shape[3]), f"{what}: relative error {err:.2e}"


PADS = [((1, 1), (1, 1)),     # DCGAN / pix2pix: dx = 2 x dy
        ((0, 0), (0, 0)),     # VALID
        ((2, 1), (0, 3)),     # asymmetric, larger than the kernel's reach on one side
        ((-1, 0), (1, -1)),   # negative (cropping) pads
        ((3, 3), (2, 2))]     # every phase's taps shifted by a whole dy row


@pytest.mark.parametrize("pads", PADS, ids=[str(p) for p in PADS])
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 4), (9, 12)])
def test_matches_the_direct_loop(pads, size, winograd_calls):
    rng = np.random.default_rng(hash((pads, size)) % (1 << 32))
    h, wd = size
    (pt, pb), (pl, pr) = pads
    if _dy_size(h, pt, pb) <= 0 or _dy_size(wd, pl, pr) <= 0:
        pytest.skip("no dy for this size and padding")
    conv_impl.FORCE_ALGORITHM = "winograd"
    for cin, cout in ((5, 3), (16, 32), (21, 37)):  # channel tails on both sides
        dy, w, xshape, pads0 = _case(rng, 2, h, wd, cin, cout, pads)
        del winograd_calls[:]
        _check(dy, w, xshape, pads0, f"{size} {pads} {cin}>{cout}")
        # (where some taps never reach dx the reduced kernel is no longer 4x4: not taken)
        (lo_h, hi_h), (lo_w, hi_w) = conv_impl._backprop_reduction(
            dy.shape[1], dy.shape[2], 4, 4, h, wd, (2, 2), (1, 1), pads0)[:2]
        assert bool(winograd_calls) == (hi_h - lo_h == 4 and hi_w - lo_w == 4)


def test_threads_and_work_item_sizes_agree_with_the_reference():
    rng = np.random.default_rng(7)
    dy, w, xshape, pads = _case(rng, 3, 14, 10, 24, 40, ((1, 1), (1, 1)))
    upk = conv_impl._winograd_packed(w, pads, nat, 1)
    ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), xshape,
                                    (2, 2), (1, 1), pads, "NHWC")
    for threads, tiles in ((1, 0), (2, 0), (2, 1), (1, 7), (2, 500)):
        dx = np.full(xshape, np.nan, np.float32)
        nat.winograd_bpi(dy, upk, dx, pads, threads, tiles)
        np.testing.assert_allclose(dx, ref, rtol=0, atol=2e-5 * np.abs(ref).max(),
                                   err_msg=f"threads={threads} tiles={tiles}")


def test_views_are_read_and_written_in_place():
    rng = np.random.default_rng(8)
    dy, w, xshape, pads = _case(rng, 2, 8, 8, 16, 32, ((1, 1), (1, 1)))
    big = np.zeros((2, dy.shape[1], 2 * dy.shape[2], 48), np.float32)
    big[:, :, ::2, 8:40] = dy
    dyv = big[:, :, ::2, 8:40]            # strided pixels, a channel window
    out = np.full((2, 8, 8, 24), np.nan, np.float32)
    dxv = out[..., 4:20]                  # dx inside wider pixels
    upk = conv_impl._winograd_packed(w, pads, nat, 1)
    nat.winograd_bpi(dyv, upk, dxv, pads, 2)
    ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), xshape,
                                    (2, 2), (1, 1), pads, "NHWC")
    np.testing.assert_allclose(dxv, ref, rtol=0, atol=2e-5 * np.abs(ref).max())
    assert np.isnan(out[..., :4]).all() and np.isnan(out[..., 20:]).all()


def test_default_dispatch_takes_it_for_large_enough_layers(winograd_calls):
    rng = np.random.default_rng(9)
    dy, w, xshape, pads = _case(rng, 4, 32, 32, 16, 32, ((1, 1), (1, 1)))  # 1024 dy pixels
    _check(dy, w, xshape, pads, "dispatch")
    assert winograd_calls
    del winograd_calls[:]
    small = dy[:1, :8, :8]  # 64 pixels: the filter's transform would cost more than it saves
    conv_impl.conv2d_backprop_input(small, w, (1, 16, 16, 16), (2, 2), (1, 1), pads, "NHWC")
    assert not winograd_calls
    assert conv_impl.WINOGRAD_MIN_PIXELS == 512  # at it and just below (2 images of 16 x 16,
    for part, taken in ((dy[:2], True), (dy[:2, :15], False)):  # and of 15 rows: 480)
        n, oh = part.shape[:2]
        conv_impl.conv2d_backprop_input(part, w, (n, 2 * oh, 32, 16), (2, 2), (1, 1), pads,
                                        "NHWC")
        assert bool(winograd_calls) == taken, (part.shape, taken)
        del winograd_calls[:]
    # with a constant filter (the cache), from WINOGRAD_MIN_PIXELS_CACHED pixels
    cache = {}
    conv_impl._conv2d_backprop_input(small, w, (1, 16, 16, 16), (2, 2), (1, 1), pads, "NHWC",
                                     cache)
    assert winograd_calls
    del winograd_calls[:]
    few = rng.standard_normal((4, 32, 32, 8)).astype(np.float32)  # 8 dy channels: too few
    conv_impl.conv2d_backprop_input(few, w[..., :8], xshape, (2, 2), (1, 1), pads, "NHWC")
    assert not winograd_calls
    nchw = np.ascontiguousarray(dy.transpose(0, 3, 1, 2))  # NCHW: staged, taken as well
    got = conv_impl.conv2d_backprop_input(nchw, w, (4, 16, 32, 32), (2, 2), (1, 1), pads,
                                          "NCHW")
    assert winograd_calls
    ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), xshape,
                                    (2, 2), (1, 1), pads, "NHWC")
    np.testing.assert_allclose(got.transpose(0, 2, 3, 1), ref, rtol=0,
                               atol=2e-5 * np.abs(ref).max())


def test_a_constant_filter_is_transformed_once(monkeypatch):
    rng = np.random.default_rng(10)
    dy, w, xshape, pads = _case(rng, 1, 16, 16, 16, 32, ((1, 1), (1, 1)))
    made = []
    packed = conv_impl._winograd_packed
    monkeypatch.setattr(conv_impl, "_winograd_packed",
                        lambda *a: (made.append(1), packed(*a))[1])
    cache = {}
    first = conv_impl._conv2d_backprop_input(dy, w, xshape, (2, 2), (1, 1), pads, "NHWC", cache)
    again = conv_impl._conv2d_backprop_input(dy, w, xshape, (2, 2), (1, 1), pads, "NHWC", cache)
    assert len(made) == 1
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("where", ["dy", "filter"])
@pytest.mark.parametrize("value", [np.inf, np.nan])
def test_non_finite_values_take_the_exact_path(where, value, dtype, winograd_calls):
    """One inf or NaN in dy or the filter sends the layer to the exact kernel (for float16 the
    finite test reads the exponent bits: numpy's isfinite takes a value at a time)."""
    rng = np.random.default_rng(11)
    dy, w, xshape, pads = _case(rng, 4, 32, 32, 16, 32, ((1, 1), (1, 1)))
    dy, w = dy.astype(dtype), (w / 8).astype(dtype)
    if where == "dy":
        dy[1, 5, 7, 3] = value
    else:
        w[2, 1, 4, 9] = value
    got = conv_impl.conv2d_backprop_input(dy, w, xshape, (2, 2), (1, 1), pads, "NHWC")
    assert not winograd_calls
    ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), xshape,
                                    (2, 2), (1, 1), pads, "NHWC")
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(ref))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    ok = np.isfinite(ref)
    tol = 1e-4 if dtype == np.float32 else 1e-2
    np.testing.assert_allclose(got[ok], ref[ok], rtol=tol, atol=tol)


def test_refuses_operands_it_cannot_address():
    rng = np.random.default_rng(12)
    dy, w, xshape, pads = _case(rng, 1, 8, 8, 8, 16, ((1, 1), (1, 1)))
    upk = conv_impl._winograd_packed(w, pads, nat, 1)
    dx = np.zeros(xshape, np.float32)
    odd = np.lib.stride_tricks.as_strided(np.zeros(4096, np.float32), xshape,
                                          (2048, 256, 32, 2))  # channels 2 bytes apart
    with pytest.raises(ValueError, match="element-aligned strides"):
        nat.winograd_bpi(dy, upk, odd, pads)
    with pytest.raises(ValueError, match="float32"):
        nat.winograd_bpi(dy.astype(np.float64), upk, dx, pads)
    with pytest.raises(ValueError, match="of one dtype"):  # (float16 dy, float32 dx)
        nat.winograd_bpi(dy.astype(np.float16), upk, dx, pads)
    with pytest.raises(ValueError, match="packed float32 values"):
        nat.winograd_bpi(dy, upk[:-1], dx, pads)
    with pytest.raises(ValueError, match="images"):
        nat.winograd_bpi(dy, upk, np.zeros((2,) + xshape[1:], np.float32), pads)
    ro = np.zeros(xshape, np.float32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        nat.winograd_bpi(dy, upk, ro, pads)


def test_workspace_bound_covers_the_transformed_filter_and_not_the_batch():
    w_shape = (4, 4, 256, 512)
    small = conv_impl.conv2d_backprop_input_workspace_bytes(
        (64, 4, 4, 512), w_shape, (64, 8, 8, 256), (2, 2), (1, 1), (1, 1))
    large = conv_impl.conv2d_backprop_input_workspace_bytes(
        (256, 4, 4, 512), w_shape, (256, 8, 8, 256), (2, 2), (1, 1), (1, 1))
    transformed = 4 * 9 * 512 * 256 * 4
    assert small >= transformed and small == large


def _layout_view(a, layout):
    """A float32 copy of the NHWC array ``a`` as a logical-NHWC view: nhwc, nchw (memory
    NCHW), gaps (channels 2 elements apart inside wider pixels), NaN in the unused memory."""
    n, h, w, c = a.shape
    if layout == "nhwc":
        return np.array(a, np.float32)
    if layout == "nchw":
        b = np.full((n, c, h, w), np.nan, np.float32).transpose(0, 2, 3, 1)
    else:
        b = np.full((n, h, w, 2 * c + 3), np.nan, np.float32)[..., 1:1 + 2 * c:2]
    b[...] = a
    return b


@pytest.mark.parametrize("pads", PADS, ids=[str(p) for p in PADS])
@pytest.mark.parametrize("layouts", [("nchw", "nchw"), ("nchw", "nhwc"), ("nhwc", "nchw"),
                                     ("gaps", "gaps")], ids=lambda t: f"{t[0]}-{t[1]}")
def test_channel_strided_views_are_staged(pads, layouts):
    """NCHW and other channel-strided dy / dx (staged per tile row of both column phases)
    against the direct loop: odd and even sizes, channel tails, every padding above."""
    rng = np.random.default_rng(hash((pads, layouts)) % (1 << 32))
    (pt, pb), (pl, pr) = pads
    for (h, wd), (cin, cout) in (((9, 12), (5, 3)), ((8, 7), (16, 32)), ((13, 10), (21, 37))):
        if _dy_size(h, pt, pb) <= 0 or _dy_size(wd, pl, pr) <= 0:
            continue
        dy, w, xshape, pads0 = _case(rng, 2, h, wd, cin, cout, pads)
        upk = conv_impl._winograd_packed(w, pads0, nat, 1)
        ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), xshape,
                                        (2, 2), (1, 1), pads0, "NHWC")
        dyv = _layout_view(dy, layouts[0])
        dxv = _layout_view(np.full(xshape, np.nan, np.float32), layouts[1])
        nat.winograd_bpi(dyv, upk, dxv, pads0, 2)
        np.testing.assert_allclose(dxv, ref, rtol=0, atol=2e-5 * max(1.0, np.abs(ref).max()),
                                   err_msg=f"{layouts} {(h, wd)} {cin}>{cout}")


@pytest.mark.parametrize("threads, tiles", [(1, 0), (3, 0), (2, 2), (2, 9), (1, 500)])
def test_staged_items_split_wide_rows_into_column_chunks(threads, tiles):
    """A dx 150 columns wide: 38 tile columns per phase, more than one item's chunk (and
    chunks shrunk to give every thread items), one image and several."""
    rng = np.random.default_rng(threads * 31 + tiles)
    for n, h in ((1, 6), (3, 11)):
        dy, w, xshape, pads = _case(rng, n, h, 150, 16, 32, ((1, 1), (1, 1)))
        upk = conv_impl._winograd_packed(w, pads, nat, 1)
        ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), xshape,
                                        (2, 2), (1, 1), pads, "NHWC")
        dxv = _layout_view(np.full(xshape, np.nan, np.float32), "nchw")
        nat.winograd_bpi(_layout_view(dy, "nchw"), upk, dxv, pads, threads, tiles)
        np.testing.assert_allclose(dxv, ref, rtol=0, atol=2e-5 * np.abs(ref).max())


# maps whose tile rows are shorter than an item (DCGAN's 8 x 8 dy): staged items take several
# tile rows (ending mid-block, odd phase heights) and, for tiny maps, several images; fewer
# where that leaves threads idle
SHORT_ROWS = [(1, 13, 10, 1), (3, 13, 10, 1), (2, 16, 16, 2), (1, 30, 6, 1), (2, 5, 5, 3),
              (4, 16, 16, 2),
              # tiny maps (DCGAN's 4x4 dy at batch 64): items take several images, the last
              # block short
              (5, 4, 4, 1), (7, 8, 6, 2), (9, 3, 5, 1), (20, 8, 8, 3)]


@pytest.mark.parametrize("n, h, wd, threads", SHORT_ROWS)
@pytest.mark.parametrize("layouts", [("nchw", "nchw"), ("nchw", "nhwc"), ("nhwc", "nchw")],
                         ids=lambda t: f"{t[0]}-{t[1]}")
def test_staged_items_span_several_short_tile_rows(n, h, wd, threads, layouts):
    rng = np.random.default_rng(n * 1000 + h * 10 + wd)
    for pads in (((1, 1), (1, 1)), ((2, 1), (0, 3))):
        dy, w, xshape, pads0 = _case(rng, n, h, wd, 19, 24, pads)
        upk = conv_impl._winograd_packed(w, pads0, nat, 1)
        ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), xshape,
                                        (2, 2), (1, 1), pads0, "NHWC")
        dxv = _layout_view(np.full(xshape, np.nan, np.float32), layouts[1])
        nat.winograd_bpi(_layout_view(dy, layouts[0]), upk, dxv, pads0, threads)
        np.testing.assert_allclose(dxv, ref, rtol=0, atol=2e-5 * np.abs(ref).max(),
                                   err_msg=f"{layouts} {(n, h, wd)} pads={pads}")
    if not nat.has_winograd3:
        return
    dy, w, xshape = _case3(rng, n, h, wd, 19, 24, (1, 1))
    upk = conv_impl._winograd3_packed(w, nat, 1)
    ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), xshape,
                                    (1, 1), (1, 1), (1, 1), "NHWC")
    dxv = _layout_view(np.full(xshape, np.nan, np.float32), layouts[1])
    nat.winograd3_bpi(_layout_view(dy, layouts[0]), upk, dxv, (1, 1), threads)
    np.testing.assert_allclose(dxv, ref, rtol=0, atol=2e-5 * np.abs(ref).max(),
                               err_msg=f"F(2x2, 3x3) {layouts} {(n, h, wd)}")


def test_nchw_layers_take_it_through_the_op_dispatch(winograd_calls):
    rng = np.random.default_rng(21)
    dy, w, xshape, pads = _case(rng, 4, 40, 32, 16, 32, ((1, 1), (1, 1)))  # 1,280 dy pixels
    ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), xshape,
                                    (2, 2), (1, 1), pads, "NHWC")
    got = conv_impl.conv2d_backprop_input(np.ascontiguousarray(dy.transpose(0, 3, 1, 2)), w,
                                          (4, 16, 40, 32), (2, 2), (1, 1), pads, "NCHW")
    assert winograd_calls and got.shape == (4, 16, 40, 32)
    np.testing.assert_allclose(got.transpose(0, 2, 3, 1), ref, rtol=0,
                               atol=2e-5 * np.abs(ref).max())


@pytest.mark.parametrize("pads", [(1, 1), (0, 0), (-1, 2), (3, -2)])
@pytest.mark.parametrize("cin, cout", [(5, 3), (21, 37), (64, 48)])
def test_compiled_filter_transform_equals_the_numpy_one(pads, cin, cout, monkeypatch):
    """opgraph_winograd_filter_f32 gives the numpy transform's packed filter bit for bit
    (the same sums in the same order), also for a filter view with gaps between its input
    channels; a filter whose output channels are not contiguous takes the numpy path."""
    if nat.winograd_filter(np.zeros((4, 4, 1, 1), np.float32), pads) is None:
        pytest.skip("this library has no compiled Winograd filter transform")
    rng = np.random.default_rng(cin * 7 + cout)
    big = rng.standard_normal((4, 4, 2 * cin, cout)).astype(np.float32)
    for w in (np.ascontiguousarray(big[:, :, :cin]), big[:, :, ::2]):
        fast = nat.winograd_filter(w, pads, 2)
        monkeypatch.setattr(nat, "_winograd_filter", None)
        slow = conv_impl._winograd_packed(w, pads, nat, 1)
        monkeypatch.undo()
        np.testing.assert_array_equal(fast, slow)
        np.testing.assert_array_equal(conv_impl._winograd_packed(w, pads, nat, 2), slow)
    assert nat.winograd_filter(np.asfortranarray(big), pads) is None


# ---- F(2x2, 3x3) for 3x3 stride-1 layers ------------------------------------------------------
def _case3(rng, n, h, wd, cin, cout, pad):
    oh, ow = h + 2 * pad[0] - 2, wd + 2 * pad[1] - 2
    w = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
    dy = rng.standard_normal((n, oh, ow, cout)).astype(np.float32)
    return dy, w, (n, h, wd, cin)


@pytest.fixture
def winograd3_calls(monkeypatch):
    return _count_calls(monkeypatch, "_winograd3_run")


@pytest.mark.parametrize("pad", [(1, 1), (0, 0), (2, 0), (-1, 2)])
@pytest.mark.parametrize("size", [(1, 1), (4, 5), (9, 12), (15, 8)])
def test_f23_matches_the_direct_loop(pad, size, winograd3_calls):
    if not nat.has_winograd3:
        pytest.skip("no F(2x2, 3x3) kernel in this library")
    rng = np.random.default_rng(hash((pad, size)) % (1 << 32))
    h, wd = size
    if h + 2 * pad[0] - 2 <= 0 or wd + 2 * pad[1] - 2 <= 0:
        pytest.skip("no dy for this size and padding")
    conv_impl.FORCE_ALGORITHM = "winograd"
    for cin, cout in ((5, 3), (16, 32), (21, 37)):  # channel tails on both sides
        dy, w, xshape = _case3(rng, 2, h, wd, cin, cout, pad)
        del winograd3_calls[:]
        got = conv_impl.conv2d_backprop_input(dy, w, xshape, (1, 1), (1, 1), pad, "NHWC")
        ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), xshape,
                                        (1, 1), (1, 1), pad, "NHWC")
        err = float(np.abs(got - ref).max()) / max(1.0, float(np.abs(ref).max()))
        assert err < 4e-6 * np.sqrt(9 * cout), (size, pad, cin, cout, err)
        (lo_h, hi_h), (lo_w, hi_w) = conv_impl._backprop_reduction(
            dy.shape[1], dy.shape[2], 3, 3, h, wd, (1, 1), (1, 1), pad)[:2]
        assert bool(winograd3_calls) == (hi_h - lo_h == 3 and hi_w - lo_w == 3)


def test_f23_threads_tiles_dispatch_and_non_finite_values(winograd3_calls):
    if not nat.has_winograd3:
        pytest.skip("no F(2x2, 3x3) kernel in this library")
    rng = np.random.default_rng(31)
    dy, w, xshape = _case3(rng, 3, 13, 11, 24, 40, (1, 1))
    ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), xshape,
                                    (1, 1), (1, 1), (1, 1), "NHWC")
    upk = conv_impl._winograd3_packed(w, nat, 1)
    for threads, tiles in ((1, 0), (2, 0), (2, 1), (3, 7), (1, 500)):
        dx = np.full(xshape, np.nan, np.float32)
        nat.winograd3_bpi(dy, upk, dx, (1, 1), threads, tiles)
        np.testing.assert_allclose(dx, ref, rtol=0, atol=2e-5 * np.abs(ref).max(),
                                   err_msg=f"threads={threads} tiles={tiles}")
    # the default dispatch: from WINOGRAD3_MIN_PIXELS dy pixels (3 * 13 * 11 = 429)
    got = conv_impl.conv2d_backprop_input(dy, w, xshape, (1, 1), (1, 1), (1, 1), "NHWC")
    assert winograd3_calls
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-5 * np.abs(ref).max())
    del winograd3_calls[:]
    conv_impl.conv2d_backprop_input(dy[:1, :8, :8], w, (1, 8, 8, 24), (1, 1), (1, 1), (1, 1),
                                    "NHWC")  # 64 pixels
    assert not winograd3_calls
    # non-finite dy: the exact path, inf and NaN where a direct loop puts them
    bad = dy.copy()
    bad[1, 4, 5, 3] = np.inf
    got = conv_impl.conv2d_backprop_input(bad, w, xshape, (1, 1), (1, 1), (1, 1), "NHWC")
    assert not winograd3_calls
    with np.errstate(invalid="ignore"):
        ref_bad = conv2d_backprop_input_ref(bad.astype(np.float64), w.astype(np.float64),
                                            xshape, (1, 1), (1, 1), (1, 1), "NHWC")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref_bad))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref_bad))
    # channel-strided operands (NCHW, gaps, mixed) are staged, on 1-3 threads, whole rows
    # and rows split into column chunks (tiles=2)
    for layouts in (("nchw", "nchw"), ("nchw", "nhwc"), ("nhwc", "nchw"), ("gaps", "gaps")):
        for threads, tiles in ((1, 0), (3, 0), (2, 2)):
            dxv = _layout_view(np.full(xshape, np.nan, np.float32), layouts[1])
            nat.winograd3_bpi(_layout_view(dy, layouts[0]), upk, dxv, (1, 1), threads, tiles)
            np.testing.assert_allclose(dxv, ref, rtol=0, atol=2e-5 * np.abs(ref).max(),
                                       err_msg=f"{layouts} threads={threads} tiles={tiles}")
    # and the op dispatch takes NCHW
    got = conv_impl.conv2d_backprop_input(np.ascontiguousarray(dy.transpose(0, 3, 1, 2)), w,
                                          (3, 24, 13, 11), (1, 1), (1, 1), (1, 1), "NCHW")
    assert winograd3_calls
    np.testing.assert_allclose(got.transpose(0, 2, 3, 1), ref, rtol=0,
                               atol=2e-5 * np.abs(ref).max())


def test_workspace_bounds_cover_nchw_and_f23():
    # 4x4 stride 2 in NCHW (staged Winograd): the transformed filter is counted too
    nchw = conv_impl.conv2d_backprop_input_workspace_bytes(
        (8, 512, 4, 4), (4, 4, 256, 512), (8, 256, 8, 8), (2, 2), (1, 1), (1, 1), "NCHW")
    assert nchw >= 4 * 9 * 512 * 256 * 4
    if nat.has_winograd3:  # 3x3 stride 1: F(2x2, 3x3)'s packed U, not growing with the batch
        small, large = (conv_impl.conv2d_backprop_input_workspace_bytes(
            (n, 14, 14, 512), (3, 3, 512, 512), (n, 14, 14, 512), (1, 1), (1, 1), (1, 1))
            for n in (8, 64))
        assert small >= 16 * 512 * 512 * 4 and small == large


@pytest.mark.parametrize("kind", ["f23", "f23-nchw", "4x4-nchw", "4x4-f16", "f23-f16"])
def test_measured_temporaries_stay_within_the_bound(kind):
    """What the Winograd paths allocate besides dx (tracemalloc), against
    conv2d_backprop_input_workspace_bytes, for F(2x2, 3x3), the staged NCHW 4x4 path and
    float16 (the filter's float32 copy, the finite test's chunks)."""
    import tracemalloc
    rng = np.random.default_rng(17)
    if kind.startswith("f23"):
        if not nat.has_winograd3:
            pytest.skip("no F(2x2, 3x3) kernel in this library")
        dy, w, shape = _case3(rng, 4, 20, 20, 48, 64, (1, 1))
        args, fmt = ((1, 1), (1, 1), (1, 1)), "NHWC"
        if kind == "f23-nchw":
            dy = np.ascontiguousarray(dy.transpose(0, 3, 1, 2))
            shape, fmt = (shape[0], shape[3], shape[1], shape[2]), "NCHW"
    elif kind == "4x4-nchw":
        dy, w, shape, pads = _case(rng, 4, 32, 32, 48, 64, ((1, 1), (1, 1)))
        dy = np.ascontiguousarray(dy.transpose(0, 3, 1, 2))
        shape = (shape[0], shape[3], shape[1], shape[2])
        args, fmt = ((2, 2), (1, 1), pads), "NCHW"
    else:  # 4x4-f16: 128 x 256 channels (the filter's float32 copy: 2 MiB), dy of several
        # finite-test chunks
        dy, w, shape, pads = _case(rng, 2, 32, 32, 128, 256, ((1, 1), (1, 1)))
        args, fmt = ((2, 2), (1, 1), pads), "NHWC"
    if kind.endswith("f16"):
        dy, w = dy.astype(np.float16), (w / 8).astype(np.float16)
    conv_impl.conv2d_backprop_input(dy, w, shape, *args, fmt)
    conv_impl.release_workspaces()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        dx = conv_impl.conv2d_backprop_input(dy, w, shape, *args, fmt)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    used = peak - base - dx.nbytes
    bound = conv_impl.conv2d_backprop_input_workspace_bytes(dy.shape, w.shape, shape, *args,
                                                            fmt, dy.dtype)
    assert 0 < used <= bound, (used, bound)


@pytest.mark.parametrize("cin, cout", [(5, 3), (21, 37), (64, 48)])
def test_compiled_f23_filter_transform_equals_the_numpy_one(cin, cout, monkeypatch):
    """opgraph_winograd3_filter_f32 against the numpy transform (also for a filter with gaps
    between its input channels); a filter whose output channels are strided takes numpy's."""
    if not nat.has_winograd3 or nat.winograd3_filter(np.zeros((3, 3, 1, 1), np.float32)) is None:
        pytest.skip("this library has no compiled F(2x2, 3x3) filter transform")
    rng = np.random.default_rng(cin * 5 + cout)
    big = rng.standard_normal((3, 3, 2 * cin, cout)).astype(np.float32)
    for w in (np.ascontiguousarray(big[:, :, :cin]), big[:, :, ::2]):
        fast = nat.winograd3_filter(w, 2)
        monkeypatch.setattr(nat, "_winograd3_filter", None)
        slow = conv_impl._winograd3_packed(w, nat, 1)
        monkeypatch.undo()
        np.testing.assert_allclose(fast, slow, rtol=1e-6, atol=1e-6)
    assert nat.winograd3_filter(np.asfortranarray(big)) is None


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("pads, out_extra", [((1, 1), (0, 0)), ((0, 0), (0, 0)),
                                            ((2, 1), (0, 0)), ((0, 1), (2, 1)),
                                            ((1, 0), (-1, 1))])
def test_f23_serves_3x3_stride_1_forward_convolutions(pads, out_extra, fmt, winograd3_calls):
    """Conv2D forward through the F(2x2, 3x3) kernel (the filter's channel axes swapped, turned
    by 180 degrees): against the float64 direct loop, symmetric, asymmetric (pads after other
    than before) and cropping output sizes, both formats."""
    if not nat.has_winograd3:
        pytest.skip("no F(2x2, 3x3) kernel in this library")
    from tests.reference import conv2d_forward_ref
    rng = np.random.default_rng(hash((pads, out_extra, fmt)) % (1 << 32))
    n, h, wd, cin, cout = 2, 18, 15, 32, 40
    oh, ow = h + 2 * pads[0] - 2 + out_extra[0], wd + 2 * pads[1] - 2 + out_extra[1]
    x = rng.standard_normal((n, h, wd, cin)).astype(np.float32)
    w = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
    xx = x if fmt == "NHWC" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    y = conv_impl.conv2d_forward(xx, w, (1, 1), (1, 1), pads, (oh, ow), fmt)
    assert winograd3_calls
    if fmt == "NCHW":
        y = y.transpose(0, 2, 3, 1)
    ref = conv2d_forward_ref(x.astype(np.float64), w.astype(np.float64), (1, 1), (1, 1), pads,
                             (oh, ow))
    err = float(np.abs(y - ref).max()) / max(1.0, float(np.abs(ref).max()))
    assert err < 4e-6 * np.sqrt(9 * cin), err


# -- half precision: staged per work item, computed in float32, rounded once -----------------
def _as_format(dy, xshape, fmt):
    if fmt == "NHWC":
        return dy, xshape
    return (np.ascontiguousarray(dy.transpose(0, 3, 1, 2)),
            (xshape[0], xshape[3], xshape[1], xshape[2]))


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("kind", ["4x4s2", "3x3s1"])
@pytest.mark.parametrize("dtype", half_dtypes(), ids=lambda d: d.name)
def test_half_precision_operands_take_it_staged(dtype, kind, fmt, winograd_calls,
                                                 winograd3_calls):
    """float16/bfloat16 dy and dx run the Winograd kernels too (the staging converts dy rows
    to float32 and rounds dx rows once, 8 values at a time plus scalar tails: 21 channels, odd
    widths), so the result is the float32 kernel's on the same rounded inputs, rounded; and
    near the float64 direct loop."""
    rng = np.random.default_rng(31)
    if kind == "4x4s2":
        dy, w, xshape, pads = _case(rng, 3, 33, 29, 21, 40, ((1, 1), (2, 0)))
        args, calls = ((2, 2), (1, 1), pads), winograd_calls
    else:
        dy, w, xshape = _case3(rng, 3, 11, 13, 21, 40, (1, 1))
        args, calls = ((1, 1), (1, 1), (1, 1)), winograd3_calls
    dy, w = dy.astype(dtype), (w / 8).astype(dtype)
    dy, shape = _as_format(dy, xshape, fmt)
    got = conv_impl.conv2d_backprop_input(dy, w, shape, *args, fmt)
    assert len(calls) == 1 and got.dtype == dtype and got.shape == shape
    f32 = conv_impl.conv2d_backprop_input(dy.astype(np.float32), w.astype(np.float32), shape,
                                          *args, fmt)
    assert len(calls) == 2
    np.testing.assert_array_equal(got.view(np.uint16), f32.astype(dtype).view(np.uint16))
    ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), shape, *args,
                                    fmt)
    tol = 2e-3 if dtype == np.float16 else 2e-2
    assert np.abs(got.astype(np.float64) - ref).max() <= tol * np.abs(ref).max()


@pytest.mark.parametrize("dtype", half_dtypes(), ids=lambda d: d.name)
def test_half_finite_test_and_conversion(dtype):
    """conv_impl._all_finite on half-precision arrays (also larger than one test chunk, and
    views) against numpy on float32 values; NativeConv.to_float32 converts exactly, in any
    layout, and leaves float32 views it can read alone."""
    rng = np.random.default_rng(33)
    big = rng.standard_normal((3, 50_001)).astype(dtype)
    assert conv_impl._all_finite(big) and conv_impl._all_finite(big[:, ::3])
    big[2, 49_999] = np.inf
    assert not conv_impl._all_finite(big) and conv_impl._all_finite(big[:2])
    assert not conv_impl._all_finite(big[:, 49_998:])
    big[2, 49_999] = np.nan
    assert not conv_impl._all_finite(big.T)
    mx = np.array([np.finfo(np.float16).max if dtype == np.float16 else 3e38], dtype)
    assert conv_impl._all_finite(mx) and conv_impl._all_finite(-mx)
    a = rng.standard_normal((5, 7, 9, 11)).astype(dtype)
    a[0, 0, 0, 0], a[1, 1, 1, 1], a[2, 2, 2, 2] = np.inf, -np.inf, np.nan
    for v in (a, a.transpose(3, 1, 0, 2), a[:, ::2, :, 1:]):
        got = nat.to_float32(v, 2)
        assert got.dtype == np.float32 and got.shape == v.shape
        np.testing.assert_array_equal(got.view(np.uint32), v.astype(np.float32).view(np.uint32))
    f = rng.standard_normal((4, 4, 3, 5)).astype(np.float32)
    assert nat.to_float32(f) is f and nat.to_float32(f[:, :, ::2]).base is f


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("dtype", half_dtypes(), ids=lambda d: d.name)
def test_half_precision_forward_convolutions_take_f23(dtype, fmt, winograd3_calls):
    """A float16/bfloat16 3x3 stride-1 Conv2D forward runs F(2x2, 3x3) with the filter's
    (transposed, so non-contiguous) float32 copy: the float32 result on the same rounded
    inputs, rounded."""
    if not nat.has_winograd3:
        pytest.skip("no F(2x2, 3x3) kernel in this library")
    rng = np.random.default_rng(34)
    x = rng.standard_normal((2, 17, 15, 32)).astype(dtype)
    w = (rng.standard_normal((3, 3, 32, 24)) / 8).astype(dtype)
    if fmt == "NCHW":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    y = conv_impl.conv2d_forward(x, w, (1, 1), (1, 1), (1, 1), (17, 15), fmt)
    assert len(winograd3_calls) == 1 and y.dtype == dtype
    f32 = conv_impl.conv2d_forward(x.astype(np.float32), w.astype(np.float32), (1, 1), (1, 1),
                                   (1, 1), (17, 15), fmt)
    assert len(winograd3_calls) == 2
    np.testing.assert_array_equal(y.view(np.uint16), f32.astype(dtype).view(np.uint16))
