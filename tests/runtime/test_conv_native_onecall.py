"""The compiled kernel's one-call input gradient (``opgraph_bpi_f32`` through
``NativeConv.backprop_input``) and forward convolution (``opgraph_conv_f32``,
``NativeConv.forward``): every stride phase, group, image and row chunk in one call on its own
threads, the filter packed by ``NativeConv.pack``.

Compared with the direct-loop reference of tests/reference.py on the geometries the call
decomposes: many stride phases (strides up to 9 and larger than the kernel, so some phases no
tap reaches and must be zero), dilations, negative and large paddings, groups with channel
counts that are not whole vectors, views of any layout (NCHW, slices, negative strides),
one row per work item on several threads, float16/bfloat16 (staged per item, rounded once) and
non-finite values (NaN and inf exactly where the direct loop has them). The packed layout is
checked element by element against its definition.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from runtime.kernels.cpu import conv_impl, native
from tests.reference import conv2d_backprop_input_ref
from tests.runtime.half_dtypes import half_dtypes

nat = native.load()
pytestmark = pytest.mark.skipif(
    nat is None, reason=f"compiled kernel unavailable: {native.unavailable_reason()}")


@pytest.fixture(autouse=True)
def _restore_flags():
    saved = {k: getattr(conv_impl, k) for k in
             ("FORCE_ALGORITHM", "NUM_THREADS", "NATIVE_BPI_ROWS", "PARALLEL_MIN_MACS")}
    yield
    for k, v in saved.items():
        setattr(conv_impl, k, v)


def _check(got, ref, what):
    g = got.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(ref), err_msg=f"{what}: NaN positions")
    np.testing.assert_array_equal(np.isposinf(g), np.isposinf(ref), err_msg=f"{what}: +inf")
    np.testing.assert_array_equal(np.isneginf(g), np.isneginf(ref), err_msg=f"{what}: -inf")
    fin = np.isfinite(ref)
    scale = max(1.0, float(np.abs(ref[fin]).max())) if fin.any() else 1.0
    err = float(np.abs(g[fin] - ref[fin]).max()) if fin.any() else 0.0
    assert err <= 1e-5 * scale, f"{what}: max error {err:.3g}"


def _dy_size(h, k, s, d, pt, pb):
    return (h + pt + pb - (k - 1) * d - 1) // s + 1


# (kernel, stride, dilation, (pad top/left, pad bottom/right), groups, cig, cog)
CASES = [
    (4, 2, 1, (1, 1), 1, 21, 21),     # FCN s2
    (16, 8, 1, (4, 4), 1, 5, 3),      # FCN s8: 64 phases
    (3, 5, 1, (1, 1), 1, 8, 4),       # stride > kernel: phases no tap reaches
    (2, 9, 2, (0, 0), 2, 3, 5),       # 81 phases, dilated, grouped
    (3, 2, 3, (4, -1), 1, 11, 6),     # dilation 3, padding beyond the kernel and negative
    (4, 3, 1, (-1, 2), 3, 9, 7),      # negative top padding, three groups
    (1, 1, 1, (0, 0), 4, 16, 8),      # 1x1, four groups of whole vectors
]


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("case", CASES, ids=[f"k{c[0]}s{c[1]}d{c[2]}g{c[4]}" for c in CASES])
def test_matches_the_direct_loop(case, fmt, native_calls):
    k, s, d, (p0, p1), g, cig, cog = case
    rng = np.random.default_rng(k * 100 + s * 10 + g)
    n, h, w = 2, 2 * s + 5, 3 * s + 4
    oh, ow = _dy_size(h, k, s, d, p0, p1), _dy_size(w, k, s, d, p0, p1)
    assert oh > 0 and ow > 0
    wt = rng.standard_normal((k, k, cig, g * cog)).astype(np.float32)
    dy = rng.standard_normal((n, oh, ow, g * cog)).astype(np.float32)
    xshape = (n, h, w, g * cig)
    if fmt == "NCHW":
        dy = np.ascontiguousarray(dy.transpose(0, 3, 1, 2))
        xshape = (n, g * cig, h, w)
    conv_impl.FORCE_ALGORITHM = "native"
    for threads, rows in ((1, 0), (2, 1), (2, 0)):
        conv_impl.NUM_THREADS, conv_impl.NATIVE_BPI_ROWS = threads, rows
        conv_impl.PARALLEL_MIN_MACS = 0
        del native_calls[:]
        dx = conv_impl.conv2d_backprop_input(dy, wt, xshape, (s, s), (d, d), (p0, p0), fmt)
        assert native_calls and native_calls[0][0] == "input gradient"
        ref = conv2d_backprop_input_ref(dy, wt, xshape, (s, s), (d, d), (p0, p0), fmt)
        _check(dx, ref, f"{case} {fmt} threads={threads} rows={rows}")


def test_views_of_any_layout_are_read_and_written_in_place():
    rng = np.random.default_rng(3)
    k, s, g, cig, cog = 3, 2, 1, 13, 6
    n, h, w = 2, 9, 11
    oh, ow = _dy_size(h, k, s, 1, 1, 1), _dy_size(w, k, s, 1, 1, 1)
    wt = rng.standard_normal((k, k, cig, cog)).astype(np.float32)
    base = rng.standard_normal((n, oh + 2, ow + 3, cog + 4)).astype(np.float32)
    dyv = base[:, 1:-1, -2:1:-1, 2:-2]        # a sliced view with a negative stride
    ref = conv2d_backprop_input_ref(np.ascontiguousarray(dyv), wt, (n, h, w, cig), (s, s),
                                    (1, 1), (1, 1))
    wpk = nat.pack(np.asfortranarray(wt), 3, 1, 2)  # a filter of another layout
    store = np.full((n, cig + 3, h, w), np.nan, np.float32)
    dxv = store[:, 1:1 + cig].transpose(0, 2, 3, 1)  # channels of an NCHW block
    nat.backprop_input(dyv, wpk, dxv, g, (k, k), (s, s), (1, 1), (1, 1), nthreads=2, rows=1)
    _check(dxv, ref, "views")
    assert np.isnan(store[:, 0]).all() and np.isnan(store[:, 1 + cig:]).all()  # untouched


@pytest.mark.parametrize("where", ["dy", "w"])
def test_non_finite_values_reach_exactly_the_outputs_of_their_terms(where):
    rng = np.random.default_rng(9)
    k, s, p, cig, cog = 4, 3, 2, 21, 10
    n, h, w = 1, 10, 13
    oh, ow = _dy_size(h, k, s, 1, p, p), _dy_size(w, k, s, 1, p, p)
    wt = rng.standard_normal((k, k, cig, cog)).astype(np.float32)
    dy = rng.standard_normal((n, oh, ow, cog)).astype(np.float32)
    target = dy if where == "dy" else wt
    flat = target.reshape(-1)
    flat[rng.choice(flat.size, 4, replace=False)] = [np.inf, -np.inf, np.nan, np.inf]
    conv_impl.FORCE_ALGORITHM = "native"
    dx = conv_impl.conv2d_backprop_input(dy, wt, (n, h, w, cig), (s, s), (1, 1), (p, p))
    _check(dx, conv2d_backprop_input_ref(dy, wt, (n, h, w, cig), (s, s), (1, 1), (p, p)), where)


@pytest.mark.parametrize("reduce_axis", [2, 3])
def test_pack_layout(reduce_axis):
    """dst[g][block][a][b][c][lane] from the definition in conv_gather.c."""
    rng = np.random.default_rng(1)
    kh, kw, ci, co, g = 2, 3, 19, 2 * 11, 2  # lanes and channels: whole 8s and tails
    w = rng.standard_normal((kh, kw, ci, co)).astype(np.float32)
    got = nat.pack(w, reduce_axis, g, 2)
    vw, bw = nat.vector_width, nat.block_width
    cog = co // g
    c_n, o_n = (cog, ci) if reduce_axis == 3 else (ci, cog)
    op = -(-o_n // vw) * vw
    assert got.size == g * kh * kw * c_n * op
    pos = 0
    for gi in range(g):
        for c0 in range(0, op, bw):
            width = min(bw, op - c0)
            for a, b, c in itertools.product(range(kh), range(kw), range(c_n)):
                for lane in range(width):
                    o = c0 + lane
                    if o >= o_n:
                        want = 0.0
                    elif reduce_axis == 3:
                        want = w[a, b, o, gi * cog + c]
                    else:
                        want = w[a, b, c, gi * cog + o]
                    assert got[pos] == want, (gi, c0, a, b, c, lane)
                    pos += 1
    assert pos == got.size


def test_refuses_operands_it_cannot_address():
    wt = np.ones((3, 3, 8, 8), np.float32)
    wpk = nat.pack(wt, 3)
    dy = np.ones((1, 4, 4, 8), np.float32)
    with pytest.raises(ValueError, match="packed filter: expected"):
        nat.backprop_input(dy, wpk[:-1], np.empty((1, 6, 6, 8), np.float32), 1, (3, 3),
                           (1, 1), (1, 1), (0, 0))
    with pytest.raises(ValueError, match="float32, float16 or bfloat16 views of one dtype"):
        nat.backprop_input(dy.astype(np.float64), wpk, np.empty((1, 6, 6, 8), np.float32), 1,
                           (3, 3), (1, 1), (1, 1), (0, 0))
    ro = np.empty((1, 6, 6, 8), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        nat.backprop_input(dy, wpk, ro, 1, (3, 3), (1, 1), (1, 1), (0, 0))


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("dtype", half_dtypes(), ids=lambda d: d.name)
def test_half_types_are_converted_per_item_and_rounded_once(dtype, fmt, native_calls):
    """float16/bfloat16 dy and dx: staged per work item as float32, accumulated in float32 and
    rounded once, so the result is the float32 kernel's on the same (rounded) inputs, rounded;
    NaN and inf where the direct loop has them."""
    rng = np.random.default_rng(21)
    k, s, p, g, cig, cog = 4, 2, 1, 1, 21, 12
    n, h, w = 2, 10, 9
    oh, ow = _dy_size(h, k, s, 1, p, p), _dy_size(w, k, s, 1, p, p)
    wt = rng.standard_normal((k, k, cig, g * cog)).astype(dtype)
    dy = rng.standard_normal((n, oh, ow, g * cog)).astype(dtype)
    dy[0, 1, 2, 3] = np.inf
    wt[1, 1, 4, 5] = np.nan
    xshape = (n, h, w, g * cig)
    if fmt == "NCHW":
        dy = np.ascontiguousarray(dy.transpose(0, 3, 1, 2))
        xshape = (n, g * cig, h, w)
    conv_impl.FORCE_ALGORITHM = "native"
    dx = conv_impl.conv2d_backprop_input(dy, wt, xshape, (s, s), (1, 1), (p, p), fmt)
    assert native_calls and native_calls[0][0] == "input gradient"
    assert dx.dtype == dtype and dx.shape == xshape
    ref = conv2d_backprop_input_ref(dy.astype(np.float64), wt.astype(np.float64), xshape,
                                    (s, s), (1, 1), (p, p), fmt)
    g64 = dx.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(g64), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(g64), np.isinf(ref))
    fin = np.isfinite(ref)
    tol = 1e-2 if dtype == np.float16 else 2e-2
    assert np.abs(g64[fin] - ref[fin]).max() <= tol * max(1.0, np.abs(ref[fin]).max())
    f32 = conv_impl.conv2d_backprop_input(dy.astype(np.float32), wt.astype(np.float32),
                                          xshape, (s, s), (1, 1), (p, p), fmt)
    np.testing.assert_array_equal(dx.view(np.uint16), f32.astype(dtype).view(np.uint16))


def _rounding_cases():
    """float32 bit patterns at the edges of half-precision rounding: ties (to even), values
    just either side of them, the largest finite halves and the overflow past them,
    subnormals, signed zeros, inf, and NaNs (default, with a payload only in the low 16 bits,
    negative)."""
    f = np.array([1.0, 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 1.0 + 2.0 ** -8,
                  1.0 + 3 * 2.0 ** -8, 65504.0, 65519.0, 65520.0, 3.3895e38, 3.4e38, 6e-8,
                  3e-8, 2.9e-8, 1e-40, 0.0, -0.0, -2.5, np.inf, -np.inf, np.nan],
                 np.float32)
    rng = np.random.default_rng(41)
    u = np.concatenate([f.view(np.uint32), np.array([0x7F800001, 0xFF80FFFF, 0x7FC00001],
                                                    np.uint32),
                        rng.integers(0, 2 ** 32, 37, dtype=np.uint32)])
    return u.view(np.float32)


@pytest.mark.parametrize("dtype", half_dtypes(), ids=lambda d: d.name)
def test_staging_copies_round_half_precision_like_numpy(dtype):
    """The staging copies' conversions (opgraph_stage_out / opgraph_stage_in, 8 values at a
    time with scalar tails, along pixels and through 8 x 8 transposes for channel planes):
    float32 -> half rounds to nearest even exactly as numpy / ml_dtypes do, NaN stays NaN (a
    payload only in the low bits must not round to inf), and half -> float32 is exact."""
    import ctypes  # noqa: PLC0415

    lib, code = nat._lib, nat.dtype_code(dtype)
    L, P = ctypes.c_int64, ctypes.c_void_p
    lib.opgraph_stage_out.argtypes = [P, L, P, ctypes.c_int, L, L, L, L]
    lib.opgraph_stage_in.argtypes = [P, ctypes.c_int, L, L, L, L, P]
    x = _rounding_cases()
    with np.errstate(over="ignore", invalid="ignore"):  # (the overflow cases)
        want = x.astype(dtype)
    nan = np.isnan(x)
    for npx, nc in ((1, x.size), (x.size // 6, 6), (8, x.size // 8)):  # rows, planes x 8
        src = np.ascontiguousarray(x[:npx * nc].reshape(npx, nc))
        w = want[:npx * nc].reshape(npx, nc)
        for d_p, d_c in ((nc, 1), (1, npx)):  # pixels of channels, channel planes
            out = np.zeros(npx * nc, dtype)
            lib.opgraph_stage_out(src.ctypes.data, nc, out.ctypes.data, code, d_p, d_c, npx, nc)
            got = np.lib.stride_tricks.as_strided(out, (npx, nc), (2 * d_p, 2 * d_c))
            gn = nan[:npx * nc].reshape(npx, nc)
            np.testing.assert_array_equal(np.isnan(got.astype(np.float32)), gn)
            np.testing.assert_array_equal(got.view(np.uint16)[~gn], w.view(np.uint16)[~gn])
            back = np.zeros((npx, nc), np.float32)
            lib.opgraph_stage_in(out.ctypes.data, code, d_p, d_c, npx, nc, back.ctypes.data)
            np.testing.assert_array_equal(back.view(np.uint32)[~gn],
                                          got.astype(np.float32).view(np.uint32)[~gn])
            assert np.isnan(back[gn]).all()


# the forward convolution on the same machinery (opgraph_conv_f32): (kernel, stride,
# dilation, (pad top/left, pad bottom/right), groups, cig, cog)
FORWARD_CASES = [
    (3, 1, 1, (1, 1), 1, 7, 21),
    (4, 2, 1, (1, 2), 2, 5, 11),
    (3, 3, 2, (0, -1), 1, 16, 8),     # dilated, negative padding (a crop)
    (7, 2, 1, (3, 3), 1, 3, 8),       # ResNet stem-like, 3 input channels
    (1, 1, 1, (0, 0), 4, 8, 3),
]


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("case", FORWARD_CASES,
                         ids=[f"k{c[0]}s{c[1]}d{c[2]}g{c[4]}" for c in FORWARD_CASES])
def test_forward_matches_the_direct_loop(case, fmt, native_calls):
    from tests.reference import conv2d_forward_ref  # noqa: PLC0415

    k, s, d, (p0, p1), g, cig, cog = case
    rng = np.random.default_rng(k * 31 + s)
    n, h, w = 2, 3 * s + 6, 2 * s + 7
    oh, ow = _dy_size(h, k, s, d, p0, p1), _dy_size(w, k, s, d, p0, p1)
    x = rng.standard_normal((n, h, w, g * cig)).astype(np.float32)
    x[1, 2, 3, 0] = np.inf
    wt = rng.standard_normal((k, k, cig, g * cog)).astype(np.float32)
    wt[0, 0, 0, 1] = np.nan
    if fmt == "NCHW":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    conv_impl.FORCE_ALGORITHM = "native"
    ref = conv2d_forward_ref(x, wt, (s, s), (d, d), (p0, p0), (oh, ow), fmt)
    for threads, rows in ((1, 0), (2, 1)):
        conv_impl.NUM_THREADS, conv_impl.NATIVE_BPI_ROWS = threads, rows
        conv_impl.PARALLEL_MIN_MACS = 0
        del native_calls[:]
        y = conv_impl.conv2d_forward(x, wt, (s, s), (d, d), (p0, p0), (oh, ow), fmt)
        assert native_calls and native_calls[0][0] == "convolution"
        _check(y, ref, f"forward {case} {fmt} threads={threads}")
    for dtype in half_dtypes():
        y = conv_impl.conv2d_forward(x.astype(dtype), wt.astype(dtype), (s, s), (d, d),
                                     (p0, p0), (oh, ow), fmt)
        f32 = conv_impl.conv2d_forward(x.astype(dtype).astype(np.float32),
                                       wt.astype(dtype).astype(np.float32), (s, s), (d, d),
                                       (p0, p0), (oh, ow), fmt)
        assert y.dtype == dtype
        np.testing.assert_array_equal(y.view(np.uint16), f32.astype(dtype).view(np.uint16))


# filters larger than the source (batch-1 decoder layers): the items take several images and
# split the output channels in whole blocks instead of the rows (plan_items in conv_gather.c)
LARGE_FILTER_CASES = [  # (batch, groups, cig, cog, kernel, stride, pad, dy size)
    (1, 1, 100, 64, 4, 2, 1, 3),      # lanes not whole blocks: the last chunk is short
    (3, 1, 130, 96, 3, 1, 1, 2),      # three images in one item
    (5, 2, 40, 64, 2, 2, 0, 3),       # two groups, an odd batch
    (2, 3, 130, 16, 4, 3, 2, 2),      # three groups, phases no tap reaches
]


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("case", LARGE_FILTER_CASES, ids=lambda c: f"n{c[0]}g{c[1]}ci{c[2]}")
def test_large_filters_split_output_channels(case, fmt, native_calls):
    from tests.reference import conv2d_forward_ref  # noqa: PLC0415

    n, g, cig, cog, k, s, p, oh = case
    rng = np.random.default_rng(n * 7 + g)
    h = (oh - 1) * s + k - 2 * p
    wt = rng.standard_normal((k, k, cig, g * cog)).astype(np.float32)
    dy = rng.standard_normal((n, oh, oh, g * cog)).astype(np.float32)
    x = rng.standard_normal((n, h, h, g * cig)).astype(np.float32)
    xshape = (n, h, h, g * cig)
    if fmt == "NCHW":
        dy = np.ascontiguousarray(dy.transpose(0, 3, 1, 2))
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        xshape = (n, g * cig, h, h)
    ref = conv2d_backprop_input_ref(dy, wt, xshape, (s, s), (1, 1), (p, p), fmt)
    # the forward direction's filter (cig -> cog lanes) is larger than its source x too
    yref = conv2d_forward_ref(x, wt, (s, s), (1, 1), (p, p), (oh, oh), fmt)
    conv_impl.FORCE_ALGORITHM = "native"
    conv_impl.NATIVE_BPI_ROWS = 0
    conv_impl.PARALLEL_MIN_MACS = 0
    for threads in (1, 2, 3, 16):
        conv_impl.NUM_THREADS = threads
        del native_calls[:]
        dx = conv_impl.conv2d_backprop_input(dy, wt, xshape, (s, s), (1, 1), (p, p), fmt)
        y = conv_impl.conv2d_forward(x, wt, (s, s), (1, 1), (p, p), (oh, oh), fmt)
        assert [c[0] for c in native_calls] == ["input gradient", "convolution"]
        _check(dx, ref, f"{case} {fmt} threads={threads}")
        _check(y, yref, f"forward {case} {fmt} threads={threads}")


# kernels that tile dx exactly (kernel = stride, no padding: sub-pixel layers such as ESPCN's)
# onto few dx channels run as one forward 1x1 convolution per row phase (the pixel shuffle)
SHUFFLE_CASES = [  # (batch, kernel/stride (h, w), cin, cout, dy size (h, w))
    (1, (3, 3), 3, 32, (5, 7)),       # ESPCN x3
    (3, (2, 2), 1, 12, (4, 3)),       # one channel
    (2, (4, 2), 5, 8, (3, 6)),        # unequal strides
    (1, (3, 4), 2, 20, (1, 9)),       # one dy row
]


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("case", SHUFFLE_CASES, ids=lambda c: f"n{c[0]}k{c[1][0]}{c[1][1]}c{c[2]}")
def test_pixel_shuffle_layers(case, fmt, monkeypatch):
    n, (kh, kw), cin, cout, (oh, ow) = case
    if not conv_impl._pixel_shuffle_applies((n, oh, ow, cout), (kh, kw, cin, cout),
                                            (n, oh * kh, ow * kw, cin), (kh, kw), (1, 1),
                                            (0, 0), 1):
        pytest.skip("this machine's vector width leaves the shuffle no better")
    # (NCHW kernels at most 2 wide: the GEMM on channel planes, test_conv_tiling_planes.py)
    name = ("_tiling_planes_run" if fmt == "NCHW" and conv_impl._tiling_planes_takes(
        (n, oh, ow, cout), (kh, kw, cin, cout), (n, oh * kh, ow * kw, cin), (kh, kw), (1, 1),
        (0, 0), 1) else "_pixel_shuffle_run")
    ran = []
    real = getattr(conv_impl, name)
    monkeypatch.setattr(conv_impl, name, lambda *a: (ran.append(a[0].shape), real(*a)))
    rng = np.random.default_rng(kh * 10 + kw + cin)
    wt = rng.standard_normal((kh, kw, cin, cout)).astype(np.float32)
    dy = rng.standard_normal((n, oh, ow, cout)).astype(np.float32)
    dy[0, 0, ow - 1, 1] = np.nan   # reaches exactly the kh*kw*cin outputs of its pixel
    wt[kh - 1, 0, 0, 2] = np.inf
    xshape = (n, oh * kh, ow * kw, cin)
    if fmt == "NCHW":
        dy = np.ascontiguousarray(dy.transpose(0, 3, 1, 2))
        xshape = (n, cin, oh * kh, ow * kw)
    ref = conv2d_backprop_input_ref(dy, wt, xshape, (kh, kw), (1, 1), (0, 0), fmt)
    for threads in (1, 2, 5):
        conv_impl.NUM_THREADS = threads
        monkeypatch.setattr(conv_impl, "SHUFFLE_PARALLEL_MIN_MACS", 0)
        del ran[:]
        dx = conv_impl.conv2d_backprop_input(dy, wt, xshape, (kh, kw), (1, 1), (0, 0), fmt)
        assert ran, f"{name} did not run"
        _check(dx, ref, f"{case} {fmt} threads={threads}")
    for wv in (np.asfortranarray(wt), wt[::-1, ::-1].copy()[::-1, ::-1]):  # packed from views
        dx = conv_impl.conv2d_backprop_input(dy, wv, xshape, (kh, kw), (1, 1), (0, 0), fmt)
        _check(dx, ref, f"{case} {fmt} filter strides {wv.strides}")
    for dtype in half_dtypes():  # staged per item in the kernel, rounded once
        dx = conv_impl.conv2d_backprop_input(dy.astype(dtype), wt.astype(dtype), xshape,
                                             (kh, kw), (1, 1), (0, 0), fmt)
        f32 = conv_impl.conv2d_backprop_input(dy.astype(dtype).astype(np.float32),
                                              wt.astype(dtype).astype(np.float32), xshape,
                                              (kh, kw), (1, 1), (0, 0), fmt)
        assert dx.dtype == dtype
        np.testing.assert_array_equal(dx.view(np.uint16), f32.astype(dtype).view(np.uint16))


@pytest.mark.parametrize("layout", ["NHWC", "NCHW", "NCHW_t_nhwc", "gaps"])
@pytest.mark.parametrize("threads", [1, 3])
def test_shuffle_store_places_every_term(layout, threads):
    """t[n, i, j, (a, b, c)] lands at dx[n, i*sh + a + oh0, j*sw + b + ow0, c] where that is
    inside dx (an index-by-index loop here), whatever t's and dx's strides; nothing outside
    dx's view is written."""
    if not nat.has_shuffle_store:
        pytest.skip("library without shuffle_store")
    rng = np.random.default_rng(7)
    for n, th, tw, sh, sw, cin, (oh0, ow0), (h, wd) in [
            (2, 3, 5, 3, 3, 3, (0, 0), (9, 15)),       # exact tiling
            (1, 1, 7, 2, 4, 1, (0, 0), (2, 28)),
            (3, 4, 2, 4, 2, 5, (0, 0), (16, 4)),
            (2, 5, 6, 2, 2, 3, (-1, -1), (8, 10)),     # 4x4 stride 2 pad 1 (DCGAN)
            (1, 4, 3, 3, 2, 2, (-2, 0), (9, 5)),       # clipped at both ends
            (2, 2, 16, 2, 2, 8, (0, 0), (4, 32)),      # 8-channel blocks by 8x8 transposes
            (1, 3, 11, 2, 2, 21, (0, 0), (6, 21)),     # 8 + 8 + 5 channels, last column cut
            (1, 2, 10, 2, 1, 16, (0, 0), (4, 10)),     # column stride 1
            (1, 2, 9, 1, 2, 12, (0, -1), (2, 17))]:    # a column offset (no block path)
        t = rng.standard_normal((n, th, tw, sh * sw * cin)).astype(np.float32)
        if layout in ("NCHW", "gaps"):  # t channel-major ([N, kk, TH, TW], a batched GEMM's)
            t = np.ascontiguousarray(t.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
        if layout == "NHWC":
            base = np.full((n, h, wd, cin), np.nan, np.float32)
            dx = base
        elif layout in ("NCHW", "NCHW_t_nhwc"):  # (t_nhwc: t as a 1x1 convolution gives it)
            base = np.full((n, cin, h, wd), np.nan, np.float32)
            dx = base.transpose(0, 2, 3, 1)
        else:
            base = np.full((n, cin, h, 2 * wd + 1), np.nan, np.float32)
            dx = base[..., 1::2].transpose(0, 2, 3, 1)
        nat.shuffle_store(t, dx, sh, sw, threads, (oh0, ow0))
        ref = np.full((n, h, wd, cin), np.nan, np.float32)
        for i, j, a, b, c in itertools.product(range(th), range(tw), range(sh), range(sw),
                                               range(cin)):
            y, x = i * sh + a + oh0, j * sw + b + ow0
            if 0 <= y < h and 0 <= x < wd:
                ref[:, y, x, c] = t[:, i, j, (a * sw + b) * cin + c]
        np.testing.assert_array_equal(dx, ref)
        assert np.isnan(base).sum() == base.size - dx.size + np.isnan(ref).sum()


def test_shuffle_store_rejects_bad_operands():
    if not nat.has_shuffle_store:
        pytest.skip("library without shuffle_store")
    t = np.zeros((1, 2, 2, 12), np.float32)
    with pytest.raises(ValueError, match="sh\\*sw\\*cin"):
        nat.shuffle_store(t, np.zeros((1, 4, 4, 2), np.float32), 2, 2)  # 12 != 2*2*2
    with pytest.raises(ValueError, match="offsets"):
        nat.shuffle_store(t, np.zeros((1, 4, 4, 3), np.float32), 2, 2, 1, (-2, 0))
    with pytest.raises(ValueError, match="float32 views"):
        nat.shuffle_store(t.astype(np.float64), np.zeros((1, 4, 4, 3), np.float32), 2, 2)
    with pytest.raises(ValueError, match="float32 views"):
        nat.shuffle_store(t, np.zeros((1, 4, 4, 3), np.float16), 2, 2)
    ro = np.zeros((1, 4, 4, 3), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        nat.shuffle_store(t, ro, 2, 2)


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_pixel_shuffle_workspace_bound(fmt):
    import tracemalloc  # noqa: PLC0415

    n, k, cin, cout, oh = 2, 3, 3, 32, 12
    shape = (n, oh * k, oh * k, cin) if fmt == "NHWC" else (n, cin, oh * k, oh * k)
    dy_shape = (n, oh, oh, cout) if fmt == "NHWC" else (n, cout, oh, oh)
    rng = np.random.default_rng(2)
    wt = rng.standard_normal((k, k, cin, cout)).astype(np.float32)
    dy = rng.standard_normal(dy_shape).astype(np.float32)
    if not conv_impl._pixel_shuffle_applies((n, oh, oh, cout), wt.shape,
                                            (n, oh * k, oh * k, cin), (k, k), (1, 1),
                                            (0, 0), 1):
        pytest.skip("this machine's vector width leaves the shuffle no better")
    conv_impl.conv2d_backprop_input(dy, wt, shape, (k, k), (1, 1), (0, 0), fmt)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        dx = conv_impl.conv2d_backprop_input(dy, wt, shape, (k, k), (1, 1), (0, 0), fmt)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    used = peak - base - dx.nbytes
    bound = conv_impl.conv2d_backprop_input_workspace_bytes(dy.shape, wt.shape, shape, (k, k),
                                                            (1, 1), (0, 0), fmt, np.float32)
    assert 0 < used <= bound, (used, bound)
    if fmt == "NCHW":
        assert bound >= dx.nbytes  # (the NHWC result it copies from)
