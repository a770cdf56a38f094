"""Tests of the compiled convolution kernel (runtime/kernels/cpu/conv_gather.c, loaded by
native.py) and of conv_impl's "native" algorithm built on it.

The kernel is only ever compared with something independent of it, never with itself:
the direct-loop references of tests/reference.py (input gradient and forward conv over strides,
dilations, paddings, kernel sizes, layouts, dtypes, threads, channel chunks and one-row blocks),
the adjoint identity <conv(x), dy> == <x, conv_backprop_input(dy)>, torch's
``torch.nn.grad.conv2d_input`` (when installed), and a numpy einsum written here for
``NativeConv.gather_conv`` called directly (every row width up to four microkernel tiles,
row offset q0, strided views, argument checks). Every conv_impl test asserts that the compiled kernel really ran (a counting wrapper
around ``conv_impl._native_block``). Channel counts derive from the kernel's vector and block
widths, so the tests hold on AVX-512, AVX2 and generic builds alike. The loader tests cover
OPGRAPH_NATIVE=0, a missing or failing compiler, the build cache and the self-check; the last
test checks conv_impl's temporary-memory bound for the native path with tracemalloc.

Tolerances (relative to max(1, largest reference magnitude)): float32 1e-5; float16 and
bfloat16 (computed in float32, rounded once) 1e-2 / 2e-2. No test asserts on time.
"""

from __future__ import annotations

import shutil
import tracemalloc

import numpy as np
import pytest

from runtime.kernels.cpu import conv_impl, native
from tests.reference import conv2d_backprop_input_ref, conv2d_forward_ref, valid_out
from tests.runtime.half_dtypes import half_dtypes

nat = native.load()
needs_native = pytest.mark.skipif(
    nat is None, reason=f"compiled kernel unavailable: {native.unavailable_reason()}")
VW = nat.vector_width if nat is not None else 16
BW = nat.block_width if nat is not None else 32
#: output-side channel counts: one vector, and a full plus a partial weight block
CH_ONE, CH_TWO = VW, BW + VW

TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float16): 1e-2}


@pytest.fixture(autouse=True)
def _restore_flags():
    saved = {k: getattr(conv_impl, k) for k in
             ("FORCE_ALGORITHM", "USE_NATIVE", "NATIVE_CHANNEL_CHUNK", "NATIVE_BLOCK_BYTES",
              "NATIVE_BPI_ROWS", "NUM_THREADS", "PARALLEL_MIN_MACS", "SCATTER_BYTES")}
    yield
    for k, v in saved.items():
        setattr(conv_impl, k, v)


@pytest.fixture
def fresh_loader(monkeypatch):
    """Loader tests: start from an unloaded state and forget it afterwards (before monkeypatch
    restores the environment), so later tests load the real kernel again."""
    native._reset()
    monkeypatch.delenv("OPGRAPH_NATIVE", raising=False)  # the tests set it where they need it
    yield monkeypatch
    native._reset()


def _rand(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def _check(got, ref, dtype, what=""):
    dtype = np.dtype(dtype)
    assert got.shape == ref.shape and got.dtype == dtype, (what, got.shape, got.dtype)
    tol = TOL.get(dtype, 2e-2)
    scale = max(1.0, float(np.abs(ref).max()))
    err = float(np.abs(got.astype(np.float64) - ref).max())
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol:.1g} * {scale:.3g}"


def _geometry(h, w, k, s, d, pads):
    """(oh, ow), (pt, pl) for pads = (top, bottom, left, right)."""
    pt, pb, pl, pr = pads
    return ((valid_out(h, k[0], s[0], d[0], pt, pb), valid_out(w, k[1], s[1], d[1], pl, pr)),
            (pt, pl))


def _shape(n, h, w, c, fmt):
    return (n, h, w, c) if fmt == "NHWC" else (n, c, h, w)


def _backprop_case(rng, n, h, w, cin, cout, k, s, d, pads, fmt, dtype):
    (oh, ow), pb = _geometry(h, w, k, s, d, pads)
    wt = _rand(rng, (k[0], k[1], cin, cout)).astype(dtype)
    dy = _rand(rng, _shape(n, oh, ow, cout, fmt)).astype(dtype)
    return dy, wt, _shape(n, h, w, cin, fmt), pb


def _f64(a):
    return a.astype(np.float64)  # references read the rounded (float16/bfloat16) values


# ---------------------------------------------------------------------------------------------
# (1) the input gradient through the compiled kernel vs the direct-loop reference
# ---------------------------------------------------------------------------------------------
KERNELS = {"1x1": (1, 1), "3x3": (3, 3), "2x3": (2, 3), "4x4": (4, 4), "big": (5, 5)}
STRIDES = [(1, 1), (2, 2), (3, 3), (2, 1)]


def _pads(kind, k, d):
    eh, ew = (k[0] - 1) * d + 1, (k[1] - 1) * d + 1
    if kind == "valid":
        return (0, 0, 0, 0)
    if kind == "sym":
        ph, pw = max(1, (eh - 1) // 2), max(1, (ew - 1) // 2)
        return (ph, ph, pw, pw)
    return (eh - 1, 0, 1, max(0, ew - 2))  # asymmetric


def _sizes(k, s, d, pads):
    """(h, w, cin) of the images of a grid case whose dy is not empty: small ones (every
    pixel near an edge; for "big" the kernel exceeds the 3x4 input) and wide ones, where each
    stride phase of dx spans more than two microkernel tiles (RB = 14 pixels on AVX-512, 6 on
    AVX2), so it has interior tiles as well as edge tiles."""
    sizes = [(3, 4, CH_ONE)] if k == (5, 5) else [(4, 3, CH_ONE), (5, 30 * s[1] + 2, CH_TWO)]
    return [(h, w, c) for h, w, c in sizes if 0 not in _geometry(h, w, k, s, (d, d), pads)[0]]


def _grid():
    for kname, k in KERNELS.items():
        for s in STRIDES:
            for d in (1, 2):
                for kind in ("valid", "sym", "asym"):
                    pads = _pads(kind, k, d)
                    if _sizes(k, s, d, pads):  # else the output is empty: nothing to test
                        yield pytest.param(k, s, d, pads,
                                           id=f"{kname}-s{s[0]}{s[1]}-d{d}-{kind}")


@needs_native
@pytest.mark.parametrize("k, s, d, pads", list(_grid()))
def test_backprop_input_matches_reference(k, s, d, pads, native_calls):
    conv_impl.FORCE_ALGORITHM = "native"
    rng = np.random.default_rng(abs(hash((k, s, d, pads))) % 2**32)
    for h, w, cin in _sizes(k, s, d, pads):
        dy, wt, xshape, pb = _backprop_case(rng, 2, h, w, cin, 5, k, s, (d, d), pads, "NHWC",
                                            np.float32)
        del native_calls[:]
        dx = conv_impl.conv2d_backprop_input(dy, wt, xshape, s, (d, d), pb)
        assert native_calls, "the compiled kernel did not run"
        _check(dx, conv2d_backprop_input_ref(dy, wt, xshape, s, (d, d), pb), np.float32,
               f"{h}x{w}x{cin}")


def _dtypes():
    return [pytest.param(t, id=t.name) for t in [np.dtype(np.float32)] + half_dtypes()]


# (stride, dilation, kernel, pads, (h, w)): stride (2, 1) + dilation, a wide SAME case, a
# stride-3 dilated case with asymmetric padding
LAYOUT_CASES = [((2, 1), (1, 2), (3, 2), (2, 0, 1, 2), (6, 5)),
                ((1, 1), (1, 1), (3, 3), (1, 1, 1, 1), (5, 31)),
                ((3, 3), (2, 2), (2, 3), (0, 1, 2, 0), (7, 95))]


@needs_native
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", _dtypes())
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_backprop_input_layouts_dtypes_threads(fmt, dtype, threads, native_calls):
    # NCHW and float16/bfloat16 operands go through the float32 NHWC staging buffers
    conv_impl.FORCE_ALGORITHM = "native"
    conv_impl.NUM_THREADS = threads
    conv_impl.PARALLEL_MIN_MACS = 0
    rng = np.random.default_rng(3)
    for s, d, k, pads, (h, w) in LAYOUT_CASES:
        dy, wt, xshape, pb = _backprop_case(rng, 3, h, w, CH_TWO, 7, k, s, d, pads, fmt, dtype)
        del native_calls[:]
        dx = conv_impl.conv2d_backprop_input(dy, wt, xshape, s, d, pb, fmt)
        assert native_calls
        ref = conv2d_backprop_input_ref(_f64(dy), _f64(wt), xshape, s, d, pb, fmt)
        _check(dx, ref, dtype, f"{fmt} {dtype} s{s} d{d} k{k}")


@needs_native
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_backprop_input_auto_choice_is_native(fmt, native_calls):
    # no forcing: a float32 one-group conv whose dx channels are a multiple of the vector width
    rng = np.random.default_rng(4)
    s, d, k, pads = (2, 2), (1, 1), (3, 3), (1, 0, 1, 0)
    dy, wt, xshape, pb = _backprop_case(rng, 2, 12, 14, 2 * VW, 24, k, s, d, pads, fmt,
                                        np.float32)
    nhwc = (lambda t: t) if fmt == "NHWC" else (lambda t: (t[0], t[2], t[3], t[1]))
    assert conv_impl.choose_backprop_input_algorithm(
        nhwc(dy.shape), wt.shape, nhwc(xshape), s, np.float32) == "native"
    dx = conv_impl.conv2d_backprop_input(dy, wt, xshape, s, d, pb, fmt)
    assert native_calls
    _check(dx, conv2d_backprop_input_ref(dy, wt, xshape, s, d, pb, fmt), np.float32, fmt)
    # channels short of whole vectors: native while the padded lanes stay a minority
    assert conv_impl.choose_backprop_input_algorithm(
        (2, 6, 7, 24), (3, 3, 2 * VW - 1, 24), (2, 12, 14, 2 * VW - 1), s) == "native"
    assert conv_impl.choose_backprop_input_algorithm(
        (2, 6, 7, 24), (3, 3, 3, 24), (2, 12, 14, 3), s) != "native"


@needs_native
def test_unaligned_float32_operand_is_staged():
    rng = np.random.default_rng(13)
    dy = np.zeros((2, 6, 7, 8), [("x", "f4"), ("y", "u1")])["x"]  # strides of 5-byte records
    dy[...] = _rand(rng, dy.shape)
    wt = _rand(rng, (3, 3, VW, 8))
    assert dy.dtype == np.float32 and not native.NativeConv.addressable(dy)
    conv_impl.FORCE_ALGORITHM = "native"
    dx = conv_impl.conv2d_backprop_input(dy, wt, (2, 6, 7, VW), (1, 1), (1, 1), (1, 1))
    _check(dx, conv2d_backprop_input_ref(dy, wt, (2, 6, 7, VW), (1, 1), (1, 1), (1, 1)),
           np.float32, "unaligned dy")


# ---------------------------------------------------------------------------------------------
# (2) the forward conv (same kernel when the output channels qualify)
# ---------------------------------------------------------------------------------------------
@needs_native
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("s, d, k, pads, hw", [
    ((1, 1), (1, 1), (3, 3), (1, 1, 1, 1), (5, 30)),
    ((2, 2), (1, 1), (4, 4), (1, 2, 1, 2), (9, 40)),
    ((2, 1), (2, 1), (3, 2), (0, 0, 0, 0), (9, 6)),
    ((3, 2), (1, 2), (2, 3), (2, 0, 0, 3), (8, 31)),
    ((1, 1), (1, 1), (5, 5), (2, 2, 2, 2), (3, 4)),  # kernel larger than the input
], ids=["s1-same", "s2-4x4", "s21-d21-valid", "s32-d12-asym", "big"])
def test_forward_matches_reference(s, d, k, pads, hw, fmt, native_calls):
    conv_impl.FORCE_ALGORITHM = "native"
    rng = np.random.default_rng(5)
    (oh, ow), pb = _geometry(hw[0], hw[1], k, s, d, pads)
    for cout in (CH_ONE, CH_TWO):
        x = _rand(rng, _shape(2, hw[0], hw[1], 6, fmt))
        wt = _rand(rng, (k[0], k[1], 6, cout))
        del native_calls[:]
        y = conv_impl.conv2d_forward(x, wt, s, d, pb, (oh, ow), fmt)
        assert native_calls
        _check(y, conv2d_forward_ref(x, wt, s, d, pb, (oh, ow), fmt), np.float32, f"co={cout}")


# ---------------------------------------------------------------------------------------------
# (3) channel chunks and one-row blocks
# ---------------------------------------------------------------------------------------------
@needs_native
@pytest.mark.parametrize("block_bytes", [None, 1], ids=["blocks-auto", "blocks-1row"])
@pytest.mark.parametrize("chunk", [1, 3, 5])
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_channel_chunks_and_row_blocks(chunk, block_bytes, fmt, native_calls):
    conv_impl.FORCE_ALGORITHM = "native"
    conv_impl.NATIVE_CHANNEL_CHUNK = chunk
    conv_impl.NUM_THREADS = 1
    if block_bytes is not None:
        conv_impl.NATIVE_BLOCK_BYTES = block_bytes
        conv_impl.NATIVE_BPI_ROWS = block_bytes  # one dx row of a phase per work item
    rng = np.random.default_rng(6)
    n, h, w = 2, 6, 17
    # input gradient: the kernel's source is dy, with 7 / 11 channels (not multiples of 3, 5)
    dy, wt, xshape, pb = _backprop_case(rng, n, h, w, CH_TWO, 7, (3, 3), (1, 1), (1, 1),
                                        (1, 1, 1, 1), fmt, np.float32)
    dx = conv_impl.conv2d_backprop_input(dy, wt, xshape, (1, 1), (1, 1), pb, fmt)
    _check(dx, conv2d_backprop_input_ref(dy, wt, xshape, (1, 1), (1, 1), pb, fmt), np.float32,
           "backprop")
    assert native_calls == [("input gradient", (n, h, w, 7))]  # one call, in place
    # stride 2 (four phase jobs, src rows staged per block for NCHW)
    dy, wt, xshape, pb = _backprop_case(rng, n, h, w, CH_ONE, 11, (3, 2), (2, 2), (1, 1),
                                        (0, 1, 1, 0), fmt, np.float32)
    dx = conv_impl.conv2d_backprop_input(dy, wt, xshape, (2, 2), (1, 1), pb, fmt)
    _check(dx, conv2d_backprop_input_ref(dy, wt, xshape, (2, 2), (1, 1), pb, fmt), np.float32,
           "backprop stride 2")
    # forward: the source is x with 7 channels
    del native_calls[:]
    x = _rand(rng, _shape(n, h, w, 7, fmt))
    wt = _rand(rng, (3, 3, 7, CH_TWO))
    (oh, ow), pb = _geometry(h, w, (3, 3), (2, 1), (1, 1), (1, 1, 1, 1))
    y = conv_impl.conv2d_forward(x, wt, (2, 1), (1, 1), pb, (oh, ow), fmt)
    assert native_calls == [("convolution", (n, h, w, 7))]  # one call, in place
    _check(y, conv2d_forward_ref(x, wt, (2, 1), (1, 1), pb, (oh, ow), fmt), np.float32,
           "forward")


# ---------------------------------------------------------------------------------------------
# (4) adjoint identity with the compiled kernel on both sides
# ---------------------------------------------------------------------------------------------
@needs_native
@pytest.mark.parametrize("seed", range(6))
def test_adjoint_identity(seed, native_calls):
    conv_impl.FORCE_ALGORITHM = "native"
    rng = np.random.default_rng(200 + seed)
    fmt = ["NHWC", "NCHW"][seed % 2]
    c = [CH_ONE, CH_TWO][(seed // 2) % 2]
    s = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    d = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    k = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
    pads = tuple(int(v) for v in rng.integers(0, 3, size=4))
    h, w = 9, 27
    (oh, ow), pb = _geometry(h, w, k, s, d, pads)
    x = _rand(rng, _shape(2, h, w, c, fmt))
    wt = _rand(rng, (k[0], k[1], c, c))
    dy = _rand(rng, _shape(2, oh, ow, c, fmt))
    y = conv_impl.conv2d_forward(x, wt, s, d, pb, (oh, ow), fmt)
    n_forward = len(native_calls)
    dx = conv_impl.conv2d_backprop_input(dy, wt, x.shape, s, d, pb, fmt)
    assert n_forward > 0 and len(native_calls) > n_forward
    lhs = float(np.vdot(y.astype(np.float64), dy.astype(np.float64)))
    rhs = float(np.vdot(x.astype(np.float64), dx.astype(np.float64)))
    scale = float(np.abs(y.astype(np.float64) * dy).sum())
    assert abs(lhs - rhs) <= 1e-5 * scale, (lhs, rhs, scale)


# ---------------------------------------------------------------------------------------------
# (5) torch
# ---------------------------------------------------------------------------------------------
@needs_native
@pytest.mark.parametrize("shape, k, s, pads", [
    ((2, 20, 20, 32), (3, 3), (1, 1), (1, 1)),   # A-like, SAME
    ((2, 16, 16, 32), (4, 4), (2, 2), (1, 1)),   # stride 2, SAME (pad 1 + 1)
], ids=["3x3-s1", "4x4-s2"])
def test_against_torch(shape, k, s, pads, native_calls, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(conv_impl, "FORCE_ALGORITHM", "native")  # (not a Winograd path)
    rng = np.random.default_rng(7)
    n, h, w, cin = shape
    cout = 32
    oh, ow = (valid_out(h, k[0], s[0], 1, pads[0], pads[0]),
              valid_out(w, k[1], s[1], 1, pads[1], pads[1]))
    dy = _rand(rng, (n, oh, ow, cout))
    wt = _rand(rng, (k[0], k[1], cin, cout))
    assert conv_impl.choose_backprop_input_algorithm(dy.shape, wt.shape, shape, s) == "native"
    dx = conv_impl.conv2d_backprop_input(dy, wt, shape, s, (1, 1), pads)
    assert native_calls
    tdx = torch.nn.grad.conv2d_input(
        (n, cin, h, w),
        torch.from_numpy(np.ascontiguousarray(wt.transpose(3, 2, 0, 1), np.float64)),  # OIHW
        torch.from_numpy(np.ascontiguousarray(dy.transpose(0, 3, 1, 2), np.float64)),  # NCHW
        stride=s, padding=pads)
    _check(dx, tdx.numpy().transpose(0, 2, 3, 1), np.float32, "torch")


# ---------------------------------------------------------------------------------------------
# (6) NativeConv.gather_conv called directly
# ---------------------------------------------------------------------------------------------
def _gather_ref(src, w, offs_h, offs_w, step, q0, q, r):
    """out[n, i, j, :] = sum_{a, b} src[n, (q0+i)*sh + offs_h[a], j*sw + offs_w[b], :] @ w[a, b],
    zero outside src (float64)."""
    n, hs, ws, _ = src.shape
    out = np.zeros((n, q, r, w.shape[3]))
    for a, dh in enumerate(offs_h):
        rows = (q0 + np.arange(q)) * step[0] + dh
        for b, dw in enumerate(offs_w):
            cols = np.arange(r) * step[1] + dw
            ok = ((rows >= 0) & (rows < hs))[:, None] & ((cols >= 0) & (cols < ws))[None, :]
            sub = src[:, rows.clip(0, hs - 1)][:, :, cols.clip(0, ws - 1)] * ok[..., None]
            out += np.einsum("nqrc,co->nqro", sub.astype(np.float64), w[a, b].astype(np.float64))
    return out


@needs_native
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("cchunk", [0, 2])
def test_gather_conv_direct(cchunk, layout):
    # every row width from 1 to past three 14-pixel tiles: each tile size of the microkernel,
    # tiles whose edge taps read partly outside the source, and interior tiles; source and
    # output are strided views stored channel-last or channel-first (read and written in place)
    rng = np.random.default_rng(8)
    n, hs, cs, co = 2, 9, 5, CH_TWO
    q, q0 = 5, 2  # output row q reads source rows (q0 + q)*2 + offs_h
    offs_h, offs_w = [-3, 0, 2], [-2, 1, 4]
    w = _rand(rng, (3, 3, cs, co))
    wpk = nat.pack_weights(w)
    for r in range(1, 47):
        for stepw in (1, 2):
            ws = max(1, r * stepw - 1)
            step = (2, stepw)
            written = np.zeros((n, 2 * q + 1, 2 * r, co + 3), bool)
            written[:, 1::2, ::2, :co] = True
            if layout == "NHWC":
                src_big = _rand(rng, (n, hs, ws + 3, cs + 2))
                src = src_big[:, :, 1:ws + 1, 1:cs + 1]
                big = np.full((n, 2 * q + 1, 2 * r, co + 3), np.nan, np.float32)
                out = big[:, 1::2, ::2, :co]
            else:
                src_big = _rand(rng, (n, cs + 2, hs, ws + 3))
                src = src_big[:, 1:cs + 1, :, 1:ws + 1].transpose(0, 2, 3, 1)
                big = np.full((n, co + 3, 2 * q + 1, 2 * r), np.nan, np.float32)
                out = big[:, :co, 1::2, ::2].transpose(0, 2, 3, 1)
                written = written.transpose(0, 3, 1, 2)
            assert nat.supports(src, out)
            nat.gather_conv(src, out, offs_h, offs_w, step, q0, wpk, cchunk)
            ref = _gather_ref(src, w, offs_h, offs_w, step, q0, q, r)
            err = float(np.abs(out - ref).max())
            assert err <= 1e-5 * max(1.0, float(np.abs(ref).max())), (r, stepw, err)
            assert np.isnan(big[~written]).all(), (r, stepw)  # nothing outside the view


@needs_native
def test_gather_conv_rejects_bad_arguments():
    rng = np.random.default_rng(9)
    src = _rand(rng, (2, 4, 5, 3))
    w = _rand(rng, (2, 2, 3, VW))
    wpk = nat.pack_weights(w)
    args = ([0, 1], [0, 1], (1, 1), 0)
    out = np.full((2, 3, 4, VW), 7.0, np.float32)
    nat.gather_conv(src, out, *args, wpk)  # the valid call
    np.testing.assert_allclose(out, _gather_ref(src, w, *args, 3, 4), rtol=1e-5, atol=1e-5)
    out[...] = 7.0
    with pytest.raises(ValueError):  # float64 source
        nat.gather_conv(src.astype(np.float64), out, *args, wpk)
    with pytest.raises(ValueError):  # output channels not a multiple of the vector width
        odd = np.zeros((2, 3, 4, VW + 1), np.float32)
        nat.gather_conv(src, odd, *args, nat.pack_weights(_rand(rng, (2, 2, 3, VW + 1))))
    with pytest.raises(ValueError):  # packed weights of the wrong size
        nat.gather_conv(src, out, *args, wpk[:-1])
    with pytest.raises(ValueError, match="contiguous"):  # a strided copy of the right size
        nat.gather_conv(src, out, *args, np.repeat(wpk, 2)[::2])
    with pytest.raises(ValueError):  # packed weights of the wrong dtype
        nat.gather_conv(src, out, *args, wpk.astype(np.float64))
    with pytest.raises(ValueError):  # batch mismatch
        nat.gather_conv(src, np.zeros((3, 3, 4, VW), np.float32), *args, wpk)
    with pytest.raises(ValueError):  # refused by the kernel itself (step 0)
        nat.gather_conv(src, out, [0, 1], [0, 1], (0, 1), 0, wpk)
    assert (out == 7.0).all()  # rejected calls write nothing


# ---------------------------------------------------------------------------------------------
# (7) the loader
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0", "off"])
def test_disabled_by_environment(value, fresh_loader, native_calls):
    fresh_loader.setenv("OPGRAPH_NATIVE", value)
    assert native.load() is None
    assert "OPGRAPH_NATIVE" in native.unavailable_reason()
    rng = np.random.default_rng(10)
    s, d, pb = (1, 1), (1, 1), (1, 1)
    dy = _rand(rng, (2, 10, 10, 32))
    wt = _rand(rng, (3, 3, 32, 32))
    shape = (2, 10, 10, 32)
    assert conv_impl.choose_backprop_input_algorithm(dy.shape, wt.shape, shape, s) != "native"
    ref = conv2d_backprop_input_ref(dy, wt, shape, s, d, pb)
    for force in (None, "native"):  # forcing "native" falls back to the numpy gather engine
        conv_impl.FORCE_ALGORITHM = force
        _check(conv_impl.conv2d_backprop_input(dy, wt, shape, s, d, pb), ref, np.float32,
               str(force))
    assert not native_calls


def test_missing_compiler(fresh_loader, tmp_path):
    fresh_loader.setenv("OPGRAPH_CACHE_DIR", str(tmp_path))
    fresh_loader.setenv("CC", "/nonexistent/cc")
    assert native.load() is None
    assert "/nonexistent/cc" in native.unavailable_reason()
    assert not list(tmp_path.glob("*.so"))  # no temporary file left behind
    native._reset()
    fresh_loader.setattr(native, "_compiler", lambda: None)
    assert native.load() is None and "compiler" in native.unavailable_reason()


def test_failing_compiler(fresh_loader, tmp_path):
    false = shutil.which("false")
    if false is None:
        pytest.skip("no `false` command")
    fresh_loader.setenv("OPGRAPH_CACHE_DIR", str(tmp_path))
    fresh_loader.setenv("CC", false)
    assert native.load() is None
    assert "C compiler failed" in native.unavailable_reason()
    assert not list(tmp_path.iterdir())  # both attempts cleaned up their temporary files


@needs_native
def test_build_is_cached(fresh_loader, tmp_path):
    cache = tmp_path / "cache"  # does not exist yet
    fresh_loader.setenv("OPGRAPH_CACHE_DIR", str(cache))
    first = native.load()
    assert first is not None, native.unavailable_reason()
    libs = sorted(p.name for p in cache.iterdir())
    assert len(libs) == 1 and libs[0].endswith(".so"), libs

    def no_compiler(*a, **k):
        raise AssertionError("compiled again instead of using the cache")

    native._reset()
    fresh_loader.setattr(native, "_run_compiler", no_compiler)  # the one way to the compiler
    second = native.load()
    assert second is not None and second is not first, native.unavailable_reason()
    assert sorted(p.name for p in cache.iterdir()) == libs
    assert (second.block_width, second.vector_width) == (BW, VW)


class _ZeroConv:
    """Looks like a NativeConv, computes nothing (writes zeros)."""

    block_width, vector_width = BW, VW
    pack_weights = staticmethod(lambda wk: np.zeros(np.asarray(wk).size, np.float32))

    def gather_conv(self, src, out, *args, **kwargs):
        out[...] = 0


@needs_native
def test_self_check_catches_a_wrong_kernel(fresh_loader):
    native._self_check(nat)  # the real kernel passes
    with pytest.raises(AssertionError):
        native._self_check(_ZeroConv())

    class OffByOne(native.NativeConv):  # a "successfully built" library that is slightly wrong
        def gather_conv(self, src, out, *args, **kwargs):
            super().gather_conv(src, out, *args, **kwargs)
            out[0, 0, 0, 0] += 1.0

    with pytest.raises(AssertionError):
        native._self_check(OffByOne(nat._lib))
    fresh_loader.setattr(native, "NativeConv", OffByOne)
    assert native.load() is None
    assert "self-check" in native.unavailable_reason()


# ---------------------------------------------------------------------------------------------
# (8) the temporary-memory bound of the native path
# ---------------------------------------------------------------------------------------------
@needs_native
@pytest.mark.parametrize("fmt, dtype, n, h, w, c", [
    ("NHWC", np.float32, 8, 12, 12, 2 * VW),
    ("NCHW", np.float16, 2, 48, 48, VW),  # large images: the staging buffers dominate
])
def test_workspace_bound(fmt, dtype, n, h, w, c, native_calls, monkeypatch):
    monkeypatch.setattr(conv_impl, "FORCE_ALGORITHM", "native")  # (not a Winograd path)
    rng = np.random.default_rng(11)
    s, d, pb = (1, 1), (1, 1), (1, 1)
    wt = _rand(rng, (3, 3, c, c)).astype(dtype)
    dy = _rand(rng, _shape(n, h, w, c, fmt)).astype(dtype)
    shape = _shape(n, h, w, c, fmt)
    nhwc = (n, h, w, c)
    assert conv_impl.choose_backprop_input_algorithm(nhwc, wt.shape, nhwc, s, dtype) == "native"
    conv_impl.conv2d_backprop_input(dy, wt, shape, s, d, pb, fmt)
    assert native_calls
    conv_impl.release_workspaces()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        dx = conv_impl.conv2d_backprop_input(dy, wt, shape, s, d, pb, fmt)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    used = peak - base - dx.nbytes
    bound = conv_impl.conv2d_backprop_input_workspace_bytes(dy.shape, wt.shape, shape, s, d, pb,
                                                            fmt, dtype)
    assert 0 < used <= bound, (used, bound)
    _check(dx, conv2d_backprop_input_ref(_f64(dy), _f64(wt), shape, s, d, pb, fmt), dtype,
           "workspace case")


@needs_native
def test_workspace_bound_follows_the_native_plan():
    args = ((2, VW, 48, 48), (3, 3, VW, VW), (2, VW, 48, 48), (1, 1), (1, 1), (1, 1), "NCHW",
            np.float16)
    assert conv_impl.choose_backprop_input_algorithm(
        (2, 48, 48, VW), (3, 3, VW, VW), (2, 48, 48, VW), (1, 1), np.float16) == "native"
    bounds = set()
    for scatter_bytes in (1 << 22, 1 << 12):
        conv_impl.SCATTER_BYTES = scatter_bytes
        bounds.add(conv_impl.conv2d_backprop_input_workspace_bytes(*args))
    assert len(bounds) == 1, bounds


# ---------------------------------------------------------------------------------------------
# grouped convolutions: one compiled job per group over channel slices
# ---------------------------------------------------------------------------------------------
@needs_native
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("groups,s,d", [(2, (1, 1), (1, 1)), (3, (2, 2), (1, 1)),
                                        (2, (1, 2), (2, 1))])
def test_grouped_convs_run_per_group(groups, s, d, fmt, dtype, native_calls):
    rng = np.random.default_rng(21 + groups)
    cig, cog = VW, 2 * VW  # channels per group: dx's are the kernel's outputs in backprop
    n, h, wd, kh, kw = 2, 9, 16, 3, 3
    pads = (1, 1, 1, 0)
    oh = valid_out(h, kh, s[0], d[0], pads[0], pads[1])
    ow = valid_out(wd, kw, s[1], d[1], pads[2], pads[3])
    x = _rand(rng, (n, h, wd, cig * groups), dtype)
    w = _rand(rng, (kh, kw, cig, cog * groups), dtype)
    dy = _rand(rng, (n, oh, ow, cog * groups), dtype)
    if fmt == "NCHW":
        x, dy = x.transpose(0, 3, 1, 2).copy(), dy.transpose(0, 3, 1, 2).copy()
    assert conv_impl.choose_backprop_input_algorithm(
        (n, oh, ow, cog * groups), w.shape, (n, h, wd, cig * groups), s, dtype) == "native"
    dx = conv_impl.conv2d_backprop_input(dy, w, x.shape, s, d, (pads[0], pads[2]), fmt)
    _check(dx, conv2d_backprop_input_ref(dy, w, x.shape, s, d, (pads[0], pads[2]), fmt), dtype,
           "grouped backprop")
    assert native_calls
    native_calls.clear()
    y = conv_impl.conv2d_forward(x, w, s, d, (pads[0], pads[2]), (oh, ow), fmt)
    _check(y, conv2d_forward_ref(x, w, s, d, (pads[0], pads[2]), (oh, ow), fmt), dtype,
           "grouped forward")
    assert native_calls
