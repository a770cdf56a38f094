"""Differential tests of every convolution path against the float64 direct-loop reference.

Surfaces (conv_impl.FORCE_ALGORITHM): the compiled kernel ("native"; its use is asserted
through counting wrappers of conv_impl's compiled-kernel calls), the numpy "gather" engine
(with its opt-in Winograd and per-tap blocks and tiny blocks), "scatter" (input gradient;
pixel-major, channel-first and flat layouts), the one-GEMM "direct" path, and the automatic choice. Each is
compared with tests/reference.py (plain loops over output positions and taps, float64 / int64)
on random geometries (hypothesis), on strided, misaligned, reversed and zero-stride views, on
non-finite values (a NaN or inf in x, w or dy must reach exactly the outputs a direct loop
reaches: NaN where it has NaN, the same infinities, nothing created by multiplying padding
zeros by infinite weights), on sizes beyond INT_MAX (zero-stride views, nothing huge
allocated), and for batch independence and bitwise determinism.

Tolerances (relative to max(1, largest finite reference magnitude)): float64 1e-10, float32
1e-5, float16 2e-2 (computed in float32, rounded once); int32 exact (int64 sums wrapped).
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.kernels.cpu import conv_impl, native
from tests.reference import conv2d_backprop_input_ref, conv2d_forward_ref, valid_out

NAT = native.load()
VW = NAT.vector_width if NAT is not None else 16
needs_native = pytest.mark.skipif(
    NAT is None, reason=f"compiled kernel unavailable: {native.unavailable_reason()}")

#: examples tried per surface (printed by test_zz_report with -s)
EXAMPLES = collections.Counter()

_FLAGS = ("FORCE_ALGORITHM", "FORCE_LAYOUT", "BLOCK_BYTES", "TARGET_ROWS", "SCATTER_BYTES",
          "NUM_THREADS", "PARALLEL_MIN_MACS", "WINOGRAD_MIN_CHANNELS", "PER_TAP_MAX_CHANNELS",
          "USE_NATIVE", "NATIVE_CHANNEL_CHUNK", "NATIVE_BLOCK_BYTES", "TINY_MACS")


@pytest.fixture(autouse=True)
def _restore_flags():
    saved = {k: getattr(conv_impl, k) for k in _FLAGS}
    yield
    for k, v in saved.items():
        setattr(conv_impl, k, v)


class _NativeCalls:
    """Counts the calls into the compiled kernel: blocks of the gather engine (_native_block)
    and one-call input gradients and convolutions."""

    NAMES = ("_native_block", "_native_bpi_run", "_native_forward_run")

    def __init__(self, monkeypatch):
        self.count = 0
        for name in self.NAMES:
            monkeypatch.setattr(conv_impl, name, self._counting(getattr(conv_impl, name)))

    def _counting(self, real):
        def call(*args):
            self.count += 1
            return real(*args)
        return call


@pytest.fixture
def native_calls(monkeypatch):
    return _NativeCalls(monkeypatch)


def _set(**flags):
    for k, v in flags.items():
        setattr(conv_impl, k, v)


def _reset_flags(saved):
    for k, v in saved.items():
        setattr(conv_impl, k, v)


def _shape(n, h, w, c, fmt):
    return (n, h, w, c) if fmt == "NHWC" else (n, c, h, w)


def _compare(got, ref, dtype, what):
    """Same NaNs, same infinities, finite values within the dtype's tolerance."""
    dtype = np.dtype(dtype)
    assert got.shape == ref.shape and got.dtype == dtype, (what, got.shape, got.dtype)
    if np.issubdtype(dtype, np.integer):
        np.testing.assert_array_equal(got, ref.astype(dtype), err_msg=what)
        return
    g = got.astype(np.float64)
    nan_g, nan_r = np.isnan(g), np.isnan(ref)
    assert np.array_equal(nan_g, nan_r), (
        f"{what}: NaN at {np.argwhere(nan_g & ~nan_r)[:4].tolist()} where the direct loop has "
        f"none, missing at {np.argwhere(nan_r & ~nan_g)[:4].tolist()}")
    inf = np.isinf(ref)
    assert np.array_equal(np.isinf(g), inf) and np.array_equal(g[inf], ref[inf]), \
        f"{what}: infinities differ"
    fin = np.isfinite(ref)
    if fin.any():
        tol = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}.get(dtype, 2e-2)
        scale = max(1.0, float(np.abs(ref[fin]).max()))
        err = float(np.abs(g[fin] - ref[fin]).max())
        assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol:.1g} * {scale:.3g}"


def _poison(rng, a, count):
    """A copy of ``a`` with ``count`` entries set to NaN, inf or -inf (floats only)."""
    a = np.array(a)
    if count == 0 or not np.issubdtype(a.dtype, np.floating) or a.size == 0:
        return a
    flat = a.reshape(-1)
    idx = rng.integers(0, flat.size, size=count)
    flat[idx] = rng.choice(np.array([np.nan, np.inf, -np.inf]), size=count).astype(a.dtype)
    return a


# ---------------------------------------------------------------------------------------------
# random geometries, every path, with and without non-finite values
# ---------------------------------------------------------------------------------------------
@st.composite
def _configs(draw, surface):
    native_path = surface == "native"
    groups = draw(st.integers(1, 2 if native_path else 3))
    if native_path:  # the compiled kernel's side: channels per group a multiple of VW
        cig = draw(st.sampled_from([VW, 2 * VW])) if draw(st.booleans()) else draw(
            st.integers(1, 3))
        cog = draw(st.sampled_from([VW, 2 * VW])) if cig < VW else draw(st.integers(1, 3))
    else:
        cig, cog = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dtypes = [np.float32, np.float16] if native_path else [np.float32, np.float64, np.float16,
                                                           np.int32]
    return dict(
        n=draw(st.integers(1, 3)), h=draw(st.integers(1, 8)), w=draw(st.integers(1, 8)),
        cin=groups * cig, cout=groups * cog, groups=groups,
        kh=draw(st.integers(1, 4)), kw=draw(st.integers(1, 4)),
        s=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        d=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        pads=tuple(draw(st.integers(0, 4)) for _ in range(4)),
        fmt=draw(st.sampled_from(["NHWC", "NCHW"])),
        dtype=draw(st.sampled_from(dtypes)),
        poison=draw(st.sampled_from([(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (2, 2, 2),
                                     (0, 3, 0)])),
        variant=draw(st.sampled_from([None, None, "winograd", "per_tap", "tiny_blocks",
                                      "layout_pm", "layout_cf", "layout_flat", "threads"])),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def _reads_inside(size, k, s, d, pad, n_out):
    """True if some output reads some input position along this axis (else all zeros)."""
    return any(0 <= i * s + t * d - pad < size for i in range(n_out) for t in range(k))


def _run_config(cfg, surface, native_calls):
    rng = np.random.default_rng(cfg["seed"])
    pt, pb, pl, pr = cfg["pads"]
    (sh, sw), (dh, dw) = cfg["s"], cfg["d"]
    oh = valid_out(cfg["h"], cfg["kh"], sh, dh, pt, pb)
    ow = valid_out(cfg["w"], cfg["kw"], sw, dw, pl, pr)
    fmt, dtype = cfg["fmt"], np.dtype(cfg["dtype"])

    def rand(shape):
        if np.issubdtype(dtype, np.integer):
            return rng.integers(-4, 5, size=shape).astype(dtype)
        return rng.standard_normal(shape).astype(dtype)

    px, pw, pdy = cfg["poison"]
    x = _poison(rng, rand(_shape(cfg["n"], cfg["h"], cfg["w"], cfg["cin"], fmt)), px)
    w = _poison(rng, rand((cfg["kh"], cfg["kw"], cfg["cin"] // cfg["groups"], cfg["cout"])), pw)
    dy = _poison(rng, rand(_shape(cfg["n"], oh, ow, cfg["cout"], fmt)), pdy)
    variant = cfg["variant"]
    _set(FORCE_ALGORITHM=None if surface == "auto" else surface)
    if variant == "winograd":
        _set(WINOGRAD_MIN_CHANNELS=1)
    elif variant == "per_tap":
        _set(PER_TAP_MAX_CHANNELS=1 << 30)
    elif variant == "tiny_blocks":
        _set(BLOCK_BYTES=64, TARGET_ROWS=1, SCATTER_BYTES=64, NATIVE_BLOCK_BYTES=1,
             PARALLEL_MIN_MACS=0)
    elif variant == "threads":
        _set(NUM_THREADS=2, PARALLEL_MIN_MACS=0)
    elif variant is not None:
        _set(FORCE_LAYOUT=variant.split("_")[1])
    args = ((sh, sw), (dh, dw), (pt, pl))
    f64 = (lambda a: a.astype(np.float64)) if dtype == np.float16 else (lambda a: a)
    native_calls.count = 0
    y = conv_impl.conv2d_forward(x, w, *args, (oh, ow), fmt)
    _compare(y, conv2d_forward_ref(f64(x), f64(w), *args, (oh, ow), fmt), dtype,
             f"forward {surface} {cfg}")
    dx = conv_impl.conv2d_backprop_input(dy, w, x.shape, *args, fmt)
    _compare(dx, conv2d_backprop_input_ref(f64(dy), f64(w), x.shape, *args, fmt), dtype,
             f"backprop {surface} {cfg}")
    if surface == "native" and (cfg["cout"] // cfg["groups"] % VW == 0
                                or cfg["cin"] // cfg["groups"] % VW == 0) \
            and _reads_inside(cfg["h"], cfg["kh"], sh, dh, pt, oh) \
            and _reads_inside(cfg["w"], cfg["kw"], sw, dw, pl, ow):
        assert native_calls.count, "the compiled kernel did not run"
    EXAMPLES[surface] += 1
    if any(cfg["poison"]):
        EXAMPLES[surface + " (non-finite)"] += 1


_SETTINGS = settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


@needs_native
@_SETTINGS
@given(cfg=_configs("native"))
def test_native_matches_reference(cfg, native_calls):
    saved = {k: getattr(conv_impl, k) for k in _FLAGS}
    try:
        _run_config(cfg, "native", native_calls)
    finally:
        _reset_flags(saved)


@pytest.mark.parametrize("surface", ["gather", "scatter", "direct", "auto"])
def test_numpy_paths_match_reference(surface, native_calls):
    @_SETTINGS
    @given(cfg=_configs(surface))
    def run(cfg):
        saved = {k: getattr(conv_impl, k) for k in _FLAGS}
        try:
            _run_config(cfg, surface, native_calls)
        finally:
            _reset_flags(saved)

    run()


# ---------------------------------------------------------------------------------------------
# non-finite values: batch independence and the padding cases the red team found
# ---------------------------------------------------------------------------------------------
SURFACES = ["native", "gather", "scatter", "direct", None]


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("what", ["w_inf_corner", "w_nan_corner", "x_nan_border", "x_inf"])
def test_non_finite_values_do_not_depend_on_batch_or_algorithm(surface, what):
    if surface == "native" and NAT is None:
        pytest.skip("no compiled kernel")
    rng = np.random.default_rng(5)
    c = VW  # the compiled kernel applies in both directions
    x1 = rng.standard_normal((1, 6, 7, c)).astype(np.float32)
    w = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    if what == "w_inf_corner":   # a corner tap that reads padding at the border outputs
        w[0, 0, 0, 0] = np.inf
    elif what == "w_nan_corner":
        w[2, 2, 3, 5] = np.nan
    elif what == "x_nan_border":
        x1[0, 0, 6, 2] = np.nan
    else:
        x1[0, 3, 3, :] = np.inf
    args = ((1, 1), (1, 1), (1, 1))
    ref = conv2d_forward_ref(x1, w, *args, (6, 7))
    refb = conv2d_backprop_input_ref(x1, w, (1, 6, 7, c), *args)
    conv_impl.FORCE_ALGORITHM = surface
    for n in (1, 4):  # batch 1 runs the one-GEMM path by default, batch 4 a blocked engine
        xb = np.repeat(x1, n, 0)
        y = conv_impl.conv2d_forward(xb, w, *args, (6, 7))
        dx = conv_impl.conv2d_backprop_input(xb, w, xb.shape, *args)
        for i in range(n):
            _compare(y[i:i + 1], ref, np.float32, f"forward {surface} batch {n}")
            _compare(dx[i:i + 1], refb, np.float32, f"backprop {surface} batch {n}")
    EXAMPLES["non-finite batch/algorithm cases"] += 1


@pytest.mark.parametrize("surface", ["gather", "scatter", "direct", None])
@pytest.mark.parametrize("layout", [None, "pm", "cf", "flat"])
def test_infinite_weights_and_padding_in_every_layout(surface, layout):
    # few channels (the flat scatter, the one-GEMM paths), stride 2, dilation 2
    conv_impl.FORCE_ALGORITHM, conv_impl.FORCE_LAYOUT = surface, layout
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 7, 9, 3)).astype(np.float64)
    w = rng.standard_normal((3, 3, 3, 2))
    w[0, 2, 1, 1] = -np.inf
    s, d, (pt, pl) = (2, 2), (2, 1), (2, 1)
    oh, ow = valid_out(7, 3, 2, 2, 2, 2), valid_out(9, 3, 2, 1, 1, 1)
    dy = rng.standard_normal((2, oh, ow, 2))
    _compare(conv_impl.conv2d_forward(x, w, s, d, (pt, pl), (oh, ow)),
             conv2d_forward_ref(x, w, s, d, (pt, pl), (oh, ow)), np.float64, "forward")
    _compare(conv_impl.conv2d_backprop_input(dy, w, x.shape, s, d, (pt, pl)),
             conv2d_backprop_input_ref(dy, w, x.shape, s, d, (pt, pl)), np.float64, "backprop")
    EXAMPLES["non-finite layout cases"] += 1


@pytest.mark.parametrize("variant", ["winograd", "per_tap"])
def test_opt_in_blocks_with_non_finite_values(variant):
    # Winograd's transforms mix neighbouring inputs and per-tap GEMMs read zero padding: both
    # must hand non-finite data to an exact path
    if variant == "winograd":
        conv_impl.WINOGRAD_MIN_CHANNELS = 1
    else:
        conv_impl.PER_TAP_MAX_CHANNELS = 1 << 30
    conv_impl.FORCE_ALGORITHM = "gather"
    rng = np.random.default_rng(7)
    for poison in ("x", "w"):
        x = rng.standard_normal((2, 8, 8, 4))
        w = rng.standard_normal((3, 3, 4, 4))
        (x if poison == "x" else w)[(0, 3, 4, 1) if poison == "x" else (0, 0, 1, 2)] = np.inf
        _compare(conv_impl.conv2d_forward(x, w, (1, 1), (1, 1), (1, 1), (8, 8)),
                 conv2d_forward_ref(x, w, (1, 1), (1, 1), (1, 1), (8, 8)), np.float64,
                 f"{variant} forward, inf in {poison}")
        _compare(conv_impl.conv2d_backprop_input(x, w, x.shape, (1, 1), (1, 1), (1, 1)),
                 conv2d_backprop_input_ref(x, w, x.shape, (1, 1), (1, 1), (1, 1)), np.float64,
                 f"{variant} backprop, inf in {poison}")
    EXAMPLES["non-finite opt-in blocks"] += 2


# ---------------------------------------------------------------------------------------------
# strided, misaligned, reversed and zero-stride views
# ---------------------------------------------------------------------------------------------
def _views(a, rng):
    """Views of the values of ``a`` (4-D float32) with odd memory layouts."""
    rec = np.zeros(a.shape, [("v", "f4"), ("pad", "u1")])["v"]  # 5-byte strides: unaligned
    rec[...] = a
    big = np.zeros(tuple(2 * d + 1 for d in a.shape), a.dtype)
    strided = big[1::2, 1::2, 1::2, 1::2]
    strided[...] = a
    return {"c": a, "fortran": np.asfortranarray(a), "strided": strided, "misaligned": rec,
            "reversed": np.ascontiguousarray(a[::-1, ::-1, ::-1, ::-1])[::-1, ::-1, ::-1, ::-1],
            "broadcast_batch": np.broadcast_to(a[:1], a.shape),
            "broadcast_channel": np.broadcast_to(a[..., :1], a.shape)}


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_odd_views(surface, fmt, native_calls):
    if surface == "native" and NAT is None:
        pytest.skip("no compiled kernel")
    conv_impl.FORCE_ALGORITHM = surface
    rng = np.random.default_rng(8)
    c = VW
    s, d, pads = (2, 1), (1, 2), (1, 2)
    h, wd = 7, 9
    oh, ow = valid_out(h, 3, 2, 1, 1, 1), valid_out(wd, 3, 1, 2, 2, 2)
    x = rng.standard_normal(_shape(2, h, wd, c, fmt)).astype(np.float32)
    w = rng.standard_normal((3, 3, c, c)).astype(np.float32)
    dy = rng.standard_normal(_shape(2, oh, ow, c, fmt)).astype(np.float32)
    wviews = {"c": w, "fortran": np.asfortranarray(w), "broadcast": np.broadcast_to(w[:, :1],
                                                                                      w.shape)}
    for (kx, xv), (kw_, wv) in zip(_views(x, rng).items(), list(wviews.items()) * 3):
        y = conv_impl.conv2d_forward(xv, wv, s, d, pads, (oh, ow), fmt)
        _compare(y, conv2d_forward_ref(np.array(xv), np.array(wv), s, d, pads, (oh, ow), fmt),
                 np.float32, f"forward x {kx} w {kw_}")
        EXAMPLES["views"] += 1
    for (kd, dyv), (kw_, wv) in zip(_views(dy, rng).items(), list(wviews.items()) * 3):
        dx = conv_impl.conv2d_backprop_input(dyv, wv, x.shape, s, d, pads, fmt)
        _compare(dx, conv2d_backprop_input_ref(np.array(dyv), np.array(wv), x.shape, s, d,
                                               pads, fmt), np.float32, f"backprop dy {kd}")
        EXAMPLES["views"] += 1
    if surface == "native":
        assert native_calls.count


# ---------------------------------------------------------------------------------------------
# sizes beyond INT_MAX through zero-stride views (nothing huge is allocated)
# ---------------------------------------------------------------------------------------------
BIG = 2**32 + 64


def _wide_ones(width, c, dtype=np.float32):
    return np.broadcast_to(np.ones((), dtype), (1, 1, width, c))


@pytest.mark.parametrize("surface", ["native", "gather", "direct", None])
@pytest.mark.parametrize("case", ["stride_2^31-1", "stride_2^32", "dilation_2^32+63"])
def test_forward_beyond_int_max(surface, case, native_calls):
    if surface == "native" and NAT is None:
        pytest.skip("no compiled kernel")
    conv_impl.FORCE_ALGORITHM = surface
    c = VW
    w = np.full((1, 2 if case.startswith("dilation") else 1, c, c), 0.5, np.float32)
    if case == "stride_2^31-1":
        strides, dil, width = (1, 2**31 - 1), (1, 1), BIG
    elif case == "stride_2^32":
        strides, dil, width = (1, 2**32), (1, 1), 2**32 + 1
    else:
        strides, dil, width = (1, 1), (1, BIG - 1), BIG
    ow = valid_out(width, w.shape[1], strides[1], dil[1])
    y = conv_impl.conv2d_forward(_wide_ones(width, c), w, strides, dil, (0, 0), (1, ow))
    assert y.shape == (1, 1, ow, c) and ow == {"s": 3, "s32": 2, "d": 1}[
        "d" if case.startswith("dilation") else "s32" if case == "stride_2^32" else "s"]
    # every output reads w.shape[1] columns of ones
    np.testing.assert_array_equal(y, np.full(y.shape, 0.5 * c * w.shape[1], np.float32))
    if surface == "native":
        assert native_calls.count
    EXAMPLES["beyond INT_MAX"] += 1


@pytest.mark.parametrize("surface", ["native", "gather", "scatter", "direct", None])
def test_backprop_beyond_int_max(surface, native_calls):
    # dx is 1 pixel wide, padded by 2^31 + 32 on both sides: dy is 2^32 + 65 wide (a
    # zero-stride view) and only its column 2^31 + 32 reaches dx
    if surface == "native" and NAT is None:
        pytest.skip("no compiled kernel")
    conv_impl.FORCE_ALGORITHM = surface
    c = VW
    pad = 2**31 + 32
    ow = valid_out(1, 1, 1, 1, pad, pad)
    dy = np.broadcast_to(np.float32(2), (1, 1, ow, c))
    w = np.full((1, 1, c, c), 0.25, np.float32)
    dx = conv_impl.conv2d_backprop_input(dy, w, (1, 1, 1, c), (1, 1), (1, 1), (0, pad))
    np.testing.assert_array_equal(dx, np.full((1, 1, 1, c), 2 * 0.25 * c, np.float32))
    EXAMPLES["beyond INT_MAX"] += 1


@needs_native
def test_native_kernel_takes_64_bit_strides_and_offsets():
    # the kernel itself: a source row wider than INT_MAX, a tap offset beyond INT_MAX and a
    # step of 2^32; output pixel 1's second tap (column 2^33 + 63) lies outside: skipped
    src = np.broadcast_to(np.float32(1), (1, 2, BIG, 3))
    out = np.zeros((1, 1, 2, VW), np.float32)
    w = np.ones((1, 2, 3, VW), np.float32)
    NAT.gather_conv(src, out, [0], [0, BIG - 1], (1, 2**32), 0, NAT.pack_weights(w))
    np.testing.assert_array_equal(out[0, 0, :, 0], [6.0, 3.0])


# ---------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------
def _det_case(rng, dtype=np.float32):
    c = VW
    x = rng.standard_normal((6, 11, 13, c)).astype(dtype)
    w = rng.standard_normal((3, 3, c, 2 * c)).astype(dtype)
    dy = rng.standard_normal((6, 6, 7, 2 * c)).astype(dtype)
    return x, w, dy, ((2, 2), (1, 1), (1, 1), (6, 7))


def _run_both(x, w, dy, geo):
    s, d, p, out_hw = geo
    return (conv_impl.conv2d_forward(x, w, s, d, p, out_hw),
            conv_impl.conv2d_backprop_input(dy, w, x.shape, s, d, p))


@pytest.mark.parametrize("surface", SURFACES)
def test_bitwise_identical_run_after_run(surface):
    if surface == "native" and NAT is None:
        pytest.skip("no compiled kernel")
    conv_impl.FORCE_ALGORITHM = surface
    conv_impl.PARALLEL_MIN_MACS = 0
    x, w, dy, geo = _det_case(np.random.default_rng(9))
    first = _run_both(x, w, dy, geo)
    for _ in range(3):
        for a, b in zip(first, _run_both(x, w, dy, geo)):
            assert np.array_equal(a, b) and a.tobytes() == b.tobytes()
    EXAMPLES["determinism (repeat)"] += 1


@pytest.mark.parametrize("surface", SURFACES)
def test_bitwise_identical_across_thread_counts(surface):
    # the compiled kernel sums every output in an order fixed by the geometry alone; the numpy
    # engines give each thread blocks of other sizes, and OpenBLAS may sum a GEMM row in another
    # order for another block height, so for them only closeness is guaranteed
    if surface == "native" and NAT is None:
        pytest.skip("no compiled kernel")
    conv_impl.FORCE_ALGORITHM = surface
    conv_impl.PARALLEL_MIN_MACS = 0
    x, w, dy, geo = _det_case(np.random.default_rng(10))
    results = {}
    for threads in (1, 2):
        conv_impl.NUM_THREADS = threads
        results[threads] = _run_both(x, w, dy, geo)
    for a, b in zip(results[1], results[2]):
        if surface == "native":
            assert a.tobytes() == b.tobytes()
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    EXAMPLES["determinism (threads)"] += 1


def test_zz_report(capsys):
    with capsys.disabled():
        print("\nexamples per surface:", dict(sorted(EXAMPLES.items())))
