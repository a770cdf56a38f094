"""Tests of the filter gradient: conv_impl.conv2d_backprop_filter (the compiled kernel
``opgraph_filter_grad_f32`` of conv_gather.c and the numpy per-tap GEMM engine) and the ops
Conv2DBackpropFilter / Conv2DBackpropFilterV2.

Everything is compared with something independent: the direct-loop reference
``tests.op_db.conv.conv2d_backprop_filter_ref`` (strides, dilations, paddings, kernel sizes,
groups, layouts, dtypes, thread splits, strided and broadcast views), the adjoint identity
<conv2d(x, w), dy> == <w, conv2d_backprop_filter(x, dy)> in float64 (through conv_impl and
through the graph ops), and an einsum written here for ``NativeConv.filter_grad`` called
directly. Tests that mean the compiled kernel assert that it really ran; every conv_impl case
also runs with ``USE_NATIVE = False`` (the numpy engine), and ``OPGRAPH_NATIVE=0`` leaves the
same results. Non-finite values reach exactly the taps whose sums contain them; temporaries
stay within conv2d_backprop_filter_workspace_bytes. No test asserts on time.
"""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest

import ops
from opgraph import DT_DOUBLE, DT_FLOAT, Scope
from runtime import ClientSession
from runtime.kernels.cpu import conv_impl, native
from tests.op_db.conv import conv2d_backprop_filter_ref
from tests.reference import conv2d_forward_ref, valid_out

nat = native.load()
needs_native = pytest.mark.skipif(
    nat is None, reason=f"compiled kernel unavailable: {native.unavailable_reason()}")
VW = nat.vector_width if nat is not None else 16
BW = nat.block_width if nat is not None else 32
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12, np.dtype(np.float16): 1e-2}
FLAGS = ("USE_NATIVE", "FORCE_ALGORITHM", "NUM_THREADS", "PARALLEL_MIN_MACS", "FILTER_SPLIT",
         "NATIVE_BLOCK_BYTES", "BLOCK_BYTES", "FILTER_TARGET_PIXELS")


@pytest.fixture(autouse=True)
def _restore_flags():
    saved = {k: getattr(conv_impl, k) for k in FLAGS}
    yield
    for k, v in saved.items():
        setattr(conv_impl, k, v)


@pytest.fixture
def native_runs(monkeypatch):
    """Record every call that goes through the compiled filter gradient."""
    calls = []
    real = conv_impl._filter_native_run

    def counting(*args, **kwargs):
        calls.append(args[1].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(conv_impl, "_filter_native_run", counting)
    return calls


def _rand(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def _fmt(a, fmt):
    return a if fmt == "NHWC" else np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def _check(got, ref, dtype, what=""):
    dtype = np.dtype(dtype)
    assert got.dtype == dtype and got.shape == ref.shape, (what, got.dtype, got.shape)
    scale = max(1.0, float(np.abs(ref).max()))
    err = float(np.abs(got.astype(np.float64) - ref).max()) if ref.size else 0.0
    assert err <= TOL[dtype] * scale, f"{what}: max error {err:.3g} (scale {scale:.3g})"


def _case(rng, n, h, w, cig, cog, groups, k, s, d, pads, fmt, dtype):
    """x, dy (in fmt), the filter shape and pads_before for pads (top, bottom, left, right)."""
    oh = valid_out(h, k[0], s[0], d[0], pads[0], pads[1])
    ow = valid_out(w, k[1], s[1], d[1], pads[2], pads[3])
    x = _rand(rng, (n, h, w, cig * groups), dtype)
    dy = _rand(rng, (n, oh, ow, cog * groups), dtype)
    return _fmt(x, fmt), _fmt(dy, fmt), (k[0], k[1], cig, cog * groups), (pads[0], pads[2])


def _both_engines(x, dy, fshape, s, d, pb, fmt, native_runs=None):
    """dw from the compiled kernel (when it applies: USE_NATIVE, out channels per group a
    multiple of the vector width) and from the numpy blocked engine (USE_NATIVE = False), both
    forced past the one-GEMM path of tiny problems; and from that path ("direct")."""
    out = {}
    conv_impl.FORCE_ALGORITHM = "native"
    for use in (True, False):
        conv_impl.USE_NATIVE = use
        before = len(native_runs) if native_runs is not None else 0
        out[use] = conv_impl.conv2d_backprop_filter(x, dy, fshape, s, d, pb, fmt)
        if native_runs is not None and not use:
            assert len(native_runs) == before, "USE_NATIVE=False still ran the compiled kernel"
    conv_impl.FORCE_ALGORITHM = "direct"
    out["direct"] = conv_impl.conv2d_backprop_filter(x, dy, fshape, s, d, pb, fmt)
    conv_impl.FORCE_ALGORITHM, conv_impl.USE_NATIVE = None, True
    return out


# ---------------------------------------------------------------------------------------------
# (1) conv_impl against the direct-loop reference, both engines
# ---------------------------------------------------------------------------------------------
GEOMETRIES = {  # k, s, d, pads (top, bottom, left, right)
    "3x3_same": ((3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    "1x1": ((1, 1), (1, 1), (1, 1), (0, 0, 0, 0)),
    "3x3_s2": ((3, 3), (2, 2), (1, 1), (1, 0, 1, 0)),
    "2x3_s21_d12": ((2, 3), (2, 1), (1, 2), (0, 1, 2, 1)),
    "4x4_s2_valid": ((4, 4), (2, 2), (1, 1), (0, 0, 0, 0)),
    "5x5_d2": ((5, 5), (1, 1), (2, 2), (4, 4, 3, 5)),
    "7x7_s2": ((7, 7), (2, 2), (1, 1), (3, 3, 3, 3)),
    "3x1_s3_d3": ((3, 1), (3, 1), (3, 1), (2, 2, 0, 0)),
}


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("cig, cog, groups", [(3, BW, 1), (VW, BW + VW, 1), (5, VW, 2)])
def test_float32_matches_reference(geometry, fmt, cig, cog, groups, native_runs):
    k, s, d, pads = GEOMETRIES[geometry]
    rng = np.random.default_rng(1)
    x, dy, fshape, pb = _case(rng, 2, 9, 11, cig, cog, groups, k, s, d, pads, fmt, np.float32)
    ref = conv2d_backprop_filter_ref(x, dy, fshape, s, d, pb, fmt)
    got = _both_engines(x, dy, fshape, s, d, pb, fmt, native_runs)
    assert bool(native_runs) == (nat is not None), "the compiled kernel did not run"
    _check(got[True], ref, np.float32, f"native {geometry} {fmt}")
    _check(got[False], ref, np.float32, f"numpy {geometry} {fmt}")
    _check(got["direct"], ref, np.float32, f"direct {geometry} {fmt}")


#: output channels per group that are not (or are just) a multiple of the vector width: the
#: compiled kernel pads its last channel block (FCN's 21 classes, RGB's 3, a single channel)
ODD_COUT = [1, 3, 21, VW, VW + 3, 2 * VW + 5]


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("geometry", ["3x3_same", "2x3_s21_d12", "4x4_s2_valid", "5x5_d2"])
@pytest.mark.parametrize("cig, groups", [(3, 1), (2, 3)])
@pytest.mark.parametrize("cog", ODD_COUT)
def test_any_output_channel_count(cog, cig, groups, geometry, fmt, native_runs):
    """Every output channel count runs on the compiled kernel (a partial last block, padded
    in the kernel, only its real channels written), with groups, in both layouts."""
    k, s, d, pads = GEOMETRIES[geometry]
    rng = np.random.default_rng(20)
    x, dy, fshape, pb = _case(rng, 2, 9, 11, cig, cog, groups, k, s, d, pads, fmt, np.float32)
    ref = conv2d_backprop_filter_ref(x, dy, fshape, s, d, pb, fmt)
    got = _both_engines(x, dy, fshape, s, d, pb, fmt, native_runs)
    assert bool(native_runs) == (nat is not None), "the compiled kernel did not run"
    _check(got[True], ref, np.float32, f"native cout {cog} x{groups} {geometry} {fmt}")
    _check(got[False], ref, np.float32, f"numpy cout {cog} x{groups} {geometry} {fmt}")
    _check(got["direct"], ref, np.float32, f"direct cout {cog} x{groups} {geometry} {fmt}")


@needs_native
@pytest.mark.parametrize("fmt, dtype", [("NHWC", np.float32), ("NCHW", np.float32),
                                        ("NCHW", np.float16)])
@pytest.mark.parametrize("cog, groups", [(21, 1), (3, 4), (VW + 3, 2), (2 * BW + 5, 1)])
def test_odd_channel_counts_with_thread_splits(cog, groups, fmt, dtype, native_runs):
    """Partial channel blocks with every way of sharing the call between two threads (the
    last channel range of a split ends inside a vector; whole groups per thread)."""
    rng = np.random.default_rng(21)
    x, dy, fshape, pb = _case(rng, 2, 10, 13, 5, cog, groups, (3, 3), (2, 1), (1, 2),
                              (1, 1, 2, 2), fmt, dtype)
    ref = conv2d_backprop_filter_ref(x, dy, fshape, (2, 1), (1, 2), pb, fmt)
    conv_impl.NUM_THREADS, conv_impl.PARALLEL_MIN_MACS = 2, 0
    for split in (None, "channels", "taps", "pixels"):
        conv_impl.FILTER_SPLIT = split
        got = conv_impl.conv2d_backprop_filter(x, dy, fshape, (2, 1), (1, 2), pb, fmt)
        _check(got, ref, dtype, f"split {split}, cout {cog} x{groups} {fmt}")
    assert native_runs


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("geometry", ["3x3_same", "2x3_s21_d12", "4x4_s2_valid", "7x7_s2"])
@pytest.mark.parametrize("groups", [VW, 2 * VW + 5])
def test_one_channel_per_group(groups, geometry, fmt, native_runs):
    """One input and one output channel per group (FCN's per-class up-sampling): the groups
    run as the vector lanes (NHWC; the lanes past the last full vector as scalars), or group
    by group (NCHW); with a NaN and an inf reaching exactly their taps."""
    k, s, d, pads = GEOMETRIES[geometry]
    rng = np.random.default_rng(25)
    x, dy, fshape, pb = _case(rng, 2, 9, 11, 1, 1, groups, k, s, d, pads, "NHWC", np.float32)
    ref = conv2d_backprop_filter_ref(x, dy, fshape, s, d, pb)
    got = _both_engines(_fmt(x, fmt), _fmt(dy, fmt), fshape, s, d, pb, fmt, native_runs)
    assert bool(native_runs) == (nat is not None)
    for name, out in got.items():
        _check(out, ref, np.float32, f"{name} {groups} groups {geometry} {fmt}")
    x[1, 0, 10, groups - 1] = np.nan  # the last group (a scalar lane when groups % VW)
    dy[0, 0, 0, 0] = np.inf
    ref = conv2d_backprop_filter_ref(x, dy, fshape, s, d, pb)
    got = conv_impl.conv2d_backprop_filter(_fmt(x, fmt), _fmt(dy, fmt), fshape, s, d, pb, fmt)
    assert 0 < np.count_nonzero(~np.isfinite(ref)) < ref.size
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.array_equal(np.isinf(got), np.isinf(ref))
    fin = np.isfinite(ref)
    assert np.allclose(got[fin], ref[fin], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("geometry", ["3x3_same", "2x3_s21_d12", "5x5_d2"])
def test_other_dtypes_match_reference(geometry, fmt, dtype):
    k, s, d, pads = GEOMETRIES[geometry]
    rng = np.random.default_rng(2)
    x, dy, fshape, pb = _case(rng, 2, 7, 8, 3, VW, 2, k, s, d, pads, fmt, dtype)
    ref = conv2d_backprop_filter_ref(x, dy, fshape, s, d, pb, fmt)
    for out in _both_engines(x, dy, fshape, s, d, pb, fmt).values():
        _check(out, ref, dtype, f"{geometry} {fmt} {np.dtype(dtype).name}")


@needs_native
@pytest.mark.parametrize("split", [None, "channels", "taps", "pixels"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("fmt, dtype", [("NHWC", np.float32), ("NCHW", np.float32),
                                        ("NHWC", np.float16)])
def test_thread_splits(split, threads, fmt, dtype, native_runs):
    """Every way the threads share a call (channel blocks, tap rows, pixels with per-thread
    accumulators), with blocks small enough that staged operands take several blocks."""
    conv_impl.FILTER_SPLIT, conv_impl.NUM_THREADS = split, threads
    conv_impl.PARALLEL_MIN_MACS = 0
    conv_impl.NATIVE_BLOCK_BYTES = 1 << 12
    rng = np.random.default_rng(3)
    x, dy, fshape, pb = _case(rng, 3, 10, 12, 4, 2 * BW + VW, 1, (3, 2), (1, 2), (2, 1),
                              (2, 2, 0, 1), fmt, dtype)
    conv_impl.USE_NATIVE, conv_impl.FORCE_ALGORITHM = True, "native"
    got = conv_impl.conv2d_backprop_filter(x, dy, fshape, (1, 2), (2, 1), pb, fmt)
    assert native_runs
    _check(got, conv2d_backprop_filter_ref(x, dy, fshape, (1, 2), (2, 1), pb, fmt), dtype,
           f"split {split}, {threads} threads")


@needs_native
def test_staged_source_rows_per_tap_row(native_runs):
    """float16 sources are staged as float32 rows; with taps far apart (dilation 7) a block's
    rows are staged per tap row instead of as one window holding mostly unread rows."""
    conv_impl.FORCE_ALGORITHM, conv_impl.NATIVE_BLOCK_BYTES = "native", 1 << 10
    rng = np.random.default_rng(18)
    for fmt in ("NHWC", "NCHW"):
        x, dy, fshape, pb = _case(rng, 2, 23, 9, 3, VW, 1, (3, 2), (2, 1), (7, 1),
                                  (3, 4, 0, 1), fmt, np.float16)
        got = conv_impl.conv2d_backprop_filter(x, dy, fshape, (2, 1), (7, 1), pb, fmt)
        _check(got, conv2d_backprop_filter_ref(x, dy, fshape, (2, 1), (7, 1), pb, fmt),
               np.float16, fmt)
    assert native_runs


@needs_native
def test_wide_staged_rows_fall_back_to_numpy(native_runs):
    """A float16 source whose rows are far wider than what the taps read (stride 2000) would
    be staged mostly unread: the numpy engine, which copies only what it reads, runs it."""
    conv_impl.FORCE_ALGORITHM = "native"
    rng = np.random.default_rng(19)
    x = _rand(rng, (1, 3, 6001, 64), np.float16)
    dy = _rand(rng, (1, 3, 4, VW), np.float16)
    got = conv_impl.conv2d_backprop_filter(x, dy, (1, 1, 64, VW), (1, 2000), (1, 1), (0, 0))
    assert not native_runs
    _check(got, conv2d_backprop_filter_ref(x, dy, (1, 1, 64, VW), (1, 2000), (1, 1), (0, 0)),
           np.float16)


@pytest.mark.parametrize("threads", [1, 2])
def test_numpy_engine_blocks_and_threads(threads):
    """The numpy engine with tiny blocks (one output row each) and per-thread accumulators."""
    conv_impl.USE_NATIVE, conv_impl.FORCE_ALGORITHM = False, "native"
    conv_impl.NUM_THREADS, conv_impl.PARALLEL_MIN_MACS = threads, 0
    conv_impl.FILTER_TARGET_PIXELS = 1
    rng = np.random.default_rng(4)
    x, dy, fshape, pb = _case(rng, 3, 8, 9, 3, 4, 2, (3, 3), (2, 1), (1, 2), (1, 1, 2, 2),
                              "NHWC", np.float32)
    got = conv_impl.conv2d_backprop_filter(x, dy, fshape, (2, 1), (1, 2), pb)
    _check(got, conv2d_backprop_filter_ref(x, dy, fshape, (2, 1), (1, 2), pb), np.float32)
    # one group of few channels: the one-GEMM patch plan per block
    x1 = _rand(rng, (3, 8, 9, 5))
    got = conv_impl.conv2d_backprop_filter(x1, dy, (3, 3, 5, 8), (2, 1), (1, 2), pb)
    _check(got, conv2d_backprop_filter_ref(x1, dy, (3, 3, 5, 8), (2, 1), (1, 2), pb),
           np.float32, "patches")


def test_rows_in_several_chunks_of_the_kernel(native_runs):
    """Enough rows that the kernel's L2 chunks of rows end inside an image and span images."""
    rng = np.random.default_rng(5)
    x, dy, fshape, pb = _case(rng, 3, 37, 64, 32, BW, 1, (3, 3), (1, 1), (1, 1),
                              (1, 1, 1, 1), "NHWC", np.float32)
    got = _both_engines(x, dy, fshape, (1, 1), (1, 1), pb, "NHWC", native_runs)
    ref = conv2d_backprop_filter_ref(x, dy, fshape, (1, 1), (1, 1), pb)
    assert bool(native_runs) == (nat is not None)
    _check(got[True], ref, np.float32, "native")
    _check(got[False], ref, np.float32, "numpy")


# ---------------------------------------------------------------------------------------------
# (2) the adjoint identity, float64
# ---------------------------------------------------------------------------------------------
ADJOINT = list(itertools.product([(1, 1), (2, 1)], [(1, 1), (1, 2)],
                                 [(0, 0, 0, 0), (1, 2, 2, 0)], [1, 2], ["NHWC", "NCHW"]))


@pytest.mark.parametrize("s, d, pads, groups, fmt", ADJOINT)
def test_adjoint_identity_float64(s, d, pads, groups, fmt):
    """<conv2d(x, w), dy> == <w, conv2d_backprop_filter(x, dy)> for random x, w, dy."""
    rng = np.random.default_rng(6)
    x, dy, fshape, pb = _case(rng, 2, 7, 6, 2, 3, groups, (3, 2), s, d, pads, fmt, np.float64)
    w = rng.standard_normal(fshape)
    oh, ow = (dy.shape[1], dy.shape[2]) if fmt == "NHWC" else dy.shape[2:]
    y = conv_impl.conv2d_forward(x, w, s, d, pb, (oh, ow), fmt)
    dw = conv_impl.conv2d_backprop_filter(x, dy, fshape, s, d, pb, fmt)
    lhs, rhs = float(np.vdot(y, dy)), float(np.vdot(w, dw))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs)), (lhs, rhs)
    # and the forward conv is independent of the engine: the direct-loop reference agrees
    ref = conv2d_forward_ref(x, w, s, d, pb, (oh, ow), fmt)
    assert np.allclose(y, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_adjoint_identity_through_the_ops(fmt):
    """The same identity with the graph ops (both filter-gradient ops) in one session."""
    rng = np.random.default_rng(7)
    strides = [1, 2, 1, 1] if fmt == "NHWC" else [1, 1, 2, 1]
    dil = [1, 1, 2, 1] if fmt == "NHWC" else [1, 1, 1, 2]
    pads = [0, 0, 1, 0, 2, 1, 0, 0] if fmt == "NHWC" else [0, 0, 0, 0, 1, 0, 2, 1]
    attrs = {"padding": "EXPLICIT", "explicit_paddings": pads, "dilations": dil,
             "data_format": fmt}
    x_shape = (2, 7, 6, 4) if fmt == "NHWC" else (2, 4, 7, 6)
    w_shape = (2, 3, 2, 4)
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_DOUBLE, shape=list(x_shape))
    w = ops.Placeholder(root, DT_DOUBLE, shape=list(w_shape))
    y = ops.Conv2D(root, x, w, strides, **attrs)
    dy = ops.Placeholder(root, DT_DOUBLE, shape=y.output.shape.dims)
    dw1 = ops.Conv2DBackpropFilter(root, x, ops.Shape(root, w), dy, strides, **attrs)
    dw2 = ops.Conv2DBackpropFilterV2(root, x, w, dy, strides, **attrs)
    assert root.ok(), root.status()
    xv, wv = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    dyv = rng.standard_normal(tuple(y.output.shape.dims))
    yv, a, b = ClientSession(root).Run({x: xv, w: wv, dy: dyv}, [y, dw1, dw2])
    assert np.array_equal(a, b)
    lhs, rhs = float(np.vdot(yv, dyv)), float(np.vdot(wv, a))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs)), (lhs, rhs)


# ---------------------------------------------------------------------------------------------
# (3) the kernel called directly
# ---------------------------------------------------------------------------------------------
def _filter_grad_ref(src, dy, offs_h, offs_w, step, q0):
    """dw[a, b, c, o] = sum src[n, (q0+q)*sh + offs_h[a], r*sw + offs_w[b], c] * dy[n, q, r, o]
    over positions inside src, by an einsum per tap over a zero-padded float64 copy."""
    n, hs, ws, cs = src.shape
    _, q, r, co = dy.shape
    ph = max(0, -min(offs_h) + 0, (q0 + q) * step[0] + max(offs_h) - hs + 1)
    pw = max(0, -min(offs_w), r * step[1] + max(offs_w) - ws + 1)
    pad = np.zeros((n, hs + 2 * ph, ws + 2 * pw, cs))
    pad[:, ph:ph + hs, pw:pw + ws] = src
    out = np.zeros((len(offs_h), len(offs_w), cs, co))
    for a, oh in enumerate(offs_h):
        rows = [(q0 + i) * step[0] + oh + ph for i in range(q)]
        for b, ow in enumerate(offs_w):
            cols = [j * step[1] + ow + pw for j in range(r)]
            out[a, b] = np.einsum("nqrc,nqro->co", pad[:, rows][:, :, cols],
                                  dy.astype(np.float64))
    return out


@needs_native
@pytest.mark.parametrize("co", [1, 3, VW + 3, BW + VW, 2 * BW + 5])
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_filter_grad_direct_every_row_width(layout, co):
    """Row widths from 1 to past three tiles, steps 1 and 2, taps reading outside on both
    sides, source channel counts that fill several and partial tiles of the kernel (fused
    (b, c) rows), output channel counts with a full, a partial or only a partial block,
    strided views of dy (channels contiguous for NHWC, not for NCHW) and of dw, whose
    neighbouring channels must stay untouched (the padded lanes are never written)."""
    rng = np.random.default_rng(8)
    n, hs, cs, q, q0 = 2, 9, 5, 4, 1
    offs_h, offs_w = [-2, 0, 3], [-3, 0, 3]
    for r in list(range(1, 20)) + [33, 47]:
        for stepw in (1, 2):
            ws = max(1, r * stepw - 2)
            step = (2, stepw)
            if layout == "NHWC":
                src = _rand(rng, (n, hs, ws, cs))
                dy_big = _rand(rng, (n, q + 1, r, co + VW))
            else:
                src = _rand(rng, (n, cs, hs, ws)).transpose(0, 2, 3, 1)
                dy_big = _rand(rng, (n, co + VW, q + 1, r)).transpose(0, 2, 3, 1)
            dy = dy_big[:, 1:, :, VW:]  # strided views
            dw_big = np.full((3, 3, cs, co + 2 * VW), np.nan, np.float32)
            dw = dw_big[..., VW:VW + co]
            dw[...] = 0
            assert nat.filter_grad_supports(src, dy, dw)
            nat.filter_grad(src, dy, dw, offs_h, offs_w, step, q0)
            ref = _filter_grad_ref(src, dy, offs_h, offs_w, step, q0)
            err = float(np.abs(dw - ref).max())
            assert err <= 1e-5 * max(1.0, float(np.abs(ref).max())), (r, stepw, err)
            assert np.isnan(dw_big[..., :VW]).all() and np.isnan(dw_big[..., VW + co:]).all()


@needs_native
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("cs", [61, 300])
def test_filter_grad_direct_wide_sources(cs, layout):
    """Many source channels: several tiles and a partial one, source tiles packed when their
    pixels are far apart (NHWC; NCHW with step 2), channel groups of the tiles when a chunk's
    source values would not fit in cache (300 channels); a partial and several full channel
    blocks of dy."""
    rng = np.random.default_rng(24)
    n, hs, q, r = 2, 8, 4, 37
    offs_h, offs_w = [-1, 0, 2], [-1, 1]
    for co in (VW + 3, 2 * BW + 5):
        for stepw in (1, 2):
            ws = r * stepw
            if layout == "NHWC":
                src = _rand(rng, (n, hs, ws, cs))
                dy = _rand(rng, (n, q, r, co))
            else:
                src = _rand(rng, (n, cs, hs, ws)).transpose(0, 2, 3, 1)
                dy = _rand(rng, (n, co, q, r)).transpose(0, 2, 3, 1)
            dw = np.zeros((3, 2, cs, co), np.float32)
            nat.filter_grad(src, dy, dw, offs_h, offs_w, (2, stepw), 0)
            ref = _filter_grad_ref(src, dy, offs_h, offs_w, (2, stepw), 0)
            err = float(np.abs(dw - ref).max())
            assert err <= 1e-5 * max(1.0, float(np.abs(ref).max())), (co, stepw, err)


@needs_native
@pytest.mark.parametrize("dy_layout", ["NHWC", "NCHW"])
def test_filter_grad_direct_groups_and_small_pack_buffers(dy_layout):
    """Groups in one call (and a range of them), and pack buffers from the smallest the
    kernel takes (one padded pixel: chunks of one pixel) to none (the kernel's own)."""
    rng = np.random.default_rng(22)
    g, cs, co, r = 3, 4, VW + 3, 29
    src = _rand(rng, (2, 7, 2 * r, g * cs))
    dy = _rand(rng, (2, 3, r, g * co))
    if dy_layout == "NCHW":
        dy = np.ascontiguousarray(dy.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    offs_h, offs_w, step, q0 = [-1, 1], [-1, 0, 2], (2, 2), 1
    ref = np.concatenate([_filter_grad_ref(src[..., gi * cs:(gi + 1) * cs],
                                           dy[..., gi * co:(gi + 1) * co], offs_h, offs_w,
                                           step, q0) for gi in range(g)], axis=3)
    need = nat.filter_grad_pack_elems(dy[..., :co], co)
    assert need > 0
    for pack in (None, np.zeros(need, np.float32), np.zeros(1, np.float32),
                 np.zeros(-(-co // VW) * VW, np.float32), np.zeros(1 << 16, np.float32)):
        dw = np.zeros((2, 3, cs, g * co), np.float32)
        run = nat.filter_grad_plan(src, dy, dw, offs_h, offs_w, step, q0, groups=g)
        run(0, 2, 0, co, pack)
        err = float(np.abs(dw - ref).max())
        assert err <= 1e-5 * max(1.0, float(np.abs(ref).max())), (None if pack is None
                                                                   else pack.size, err)
    dw = np.zeros((2, 3, cs, g * co), np.float32)
    nat.filter_grad_plan(src, dy, dw, offs_h, offs_w, step, q0, groups=g)(
        0, 2, 0, co, g0=1, g1=3)  # groups 1 and 2 only
    assert not dw[..., :co].any()
    assert np.allclose(dw[..., co:], ref[..., co:], atol=1e-4)


@needs_native
def test_filter_grad_plan_parts_add_up():
    """Calls for parts of dw (tap rows, channel blocks) add to what dw holds and touch
    nothing else; together they give the whole gradient."""
    rng = np.random.default_rng(9)
    src = _rand(rng, (2, 6, 7, 3))
    dy = _rand(rng, (2, 5, 7, 2 * BW))
    offs_h, offs_w, step = [-1, 0, 1], [-1, 0, 1], (1, 1)
    ref = _filter_grad_ref(src, dy, offs_h, offs_w, step, 0)
    dw = np.ones((3, 3, 3, 2 * BW), np.float32)
    run = nat.filter_grad_plan(src, dy, dw, offs_h, offs_w, step)
    run(0, 1, 0, BW)
    assert np.allclose(dw[0, :, :, :BW], 1 + ref[0, :, :, :BW], atol=1e-5)
    assert (dw[1:] == 1).all() and (dw[0, :, :, BW:] == 1).all()
    run(0, 1, BW, 2 * BW)
    run(1, 3, 0, VW)
    run(1, 3, VW, 2 * BW)
    assert np.allclose(dw, 1 + ref, atol=1e-5)


@needs_native
def test_filter_grad_rejects_bad_arguments():
    rng = np.random.default_rng(10)
    src = _rand(rng, (2, 4, 5, 3))
    dy = _rand(rng, (2, 3, 4, VW))
    args = ([0, 1], [0, 1], (1, 1), 0)
    dw = np.full((2, 2, 3, VW), 7.0, np.float32)
    with pytest.raises(ValueError):  # float64 source
        nat.filter_grad(src.astype(np.float64), dy, dw, *args)
    with pytest.raises(ValueError):  # dw's channels not contiguous
        nat.filter_grad(src, dy, np.zeros((2, 2, 3, 2 * VW), np.float32)[..., ::2], *args)
    with pytest.raises(ValueError):  # groups that do not divide the channels
        nat.filter_grad(src, dy, dw, *args, groups=2)
    with pytest.raises(ValueError):  # dw of the wrong shape
        nat.filter_grad(src, dy, np.zeros((2, 3, 3, VW), np.float32), *args)
    with pytest.raises(ValueError):  # batch mismatch
        nat.filter_grad(src, dy[:1], dw, *args)
    ro = dw.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        nat.filter_grad(src, dy, ro, *args)
    run = nat.filter_grad_plan(src, dy, dw, *args)
    with pytest.raises(ValueError):  # refused by the kernel: a channel range off the vectors
        run(0, 2, 1, VW)
    with pytest.raises(ValueError):  # taps beyond the filter
        run(0, 3, 0, VW)
    with pytest.raises(ValueError):  # groups beyond the operands'
        run(0, 2, 0, VW, g0=0, g1=2)
    with pytest.raises(ValueError, match="pack"):  # a scratch buffer of the wrong dtype
        run(0, 2, 0, VW, pack=np.zeros(64))
    dy_odd = _rand(rng, (2, 3, 4, VW + 3))
    dw_odd = np.full((2, 2, 3, VW + 3), 7.0, np.float32)
    run_odd = nat.filter_grad_plan(src, dy_odd, dw_odd, *args)
    with pytest.raises(ValueError):  # a range ending inside a vector that is not the last
        run_odd(0, 2, 0, 3)
    assert (dw_odd == 7.0).all()
    with pytest.raises(ValueError):  # refused by the kernel itself (step 0)
        nat.filter_grad(src, dy, dw, [0, 1], [0, 1], (1, 0), 0)
    assert (dw == 7.0).all()  # rejected calls write nothing


# ---------------------------------------------------------------------------------------------
# (4) semantics every path keeps: non-finite values, empty problems, views, reduced taps
# ---------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("use_native", [True, False, None])  # None: force the tiny path
@pytest.mark.parametrize("where", ["x", "dy"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_values_reach_exactly_their_taps(use_native, where, value):
    """A NaN or inf in x or dy reaches exactly the filter entries whose sums contain it:
    taps that read it only through padding stay finite (nothing is multiplied by padding)."""
    conv_impl.USE_NATIVE = use_native
    conv_impl.FORCE_ALGORITHM = "direct" if use_native is None else "native"
    rng = np.random.default_rng(11)
    for fmt, cin in itertools.product(("NHWC", "NCHW"), (3, 20)):  # patch / per-tap plans
        x, dy, fshape, pb = _case(rng, 2, 6, 7, cin, VW, 1, (3, 3), (1, 2), (2, 1),
                                  (2, 2, 1, 1), "NHWC", np.float32)
        if where == "x":
            x[1, 0, 6, 2] = value   # a corner: read by few taps
        else:
            dy[0, 0, 0, 5] = value  # an output whose window is mostly padding
        ref = conv2d_backprop_filter_ref(x, dy, fshape, (1, 2), (2, 1), pb)
        got = conv_impl.conv2d_backprop_filter(_fmt(x, fmt), _fmt(dy, fmt), fshape, (1, 2),
                                               (2, 1), pb, fmt)
        assert np.array_equal(np.isnan(got), np.isnan(ref)), (fmt, np.argwhere(np.isnan(got)))
        assert np.array_equal(np.isinf(got), np.isinf(ref)), fmt
        assert 0 < np.count_nonzero(~np.isfinite(ref)) < ref.size
        fin = np.isfinite(ref)
        assert np.allclose(got[fin], ref[fin], rtol=1e-4, atol=1e-4)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("cog, groups", [(3, 1), (21, 1), (VW + 3, 2), (1, 3)])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_values_with_partial_channel_blocks(value, cog, groups, fmt, native_runs):
    """A partial last channel block (padded lanes: 0 * inf = NaN there) leaks nothing: the
    NaN/inf pattern of dw is exactly the direct loop's, for a value in x (read by every
    output channel of its group) and in dy's last real channel."""
    rng = np.random.default_rng(23)
    for where in ("x", "dy"):
        x, dy, fshape, pb = _case(rng, 2, 6, 7, 3, cog, groups, (3, 3), (1, 2), (2, 1),
                                  (2, 2, 1, 1), "NHWC", np.float32)
        if where == "x":
            x[1, 0, 6, -1] = value
        else:
            dy[0, 0, 0, -1] = value
        ref = conv2d_backprop_filter_ref(x, dy, fshape, (1, 2), (2, 1), pb)
        got = conv_impl.conv2d_backprop_filter(_fmt(x, fmt), _fmt(dy, fmt), fshape, (1, 2),
                                               (2, 1), pb, fmt)
        assert np.array_equal(np.isnan(got), np.isnan(ref)), (where, np.argwhere(np.isnan(got)))
        assert np.array_equal(np.isinf(got), np.isinf(ref)), where
        assert 0 < np.count_nonzero(~np.isfinite(ref)) < ref.size
        fin = np.isfinite(ref)
        assert np.allclose(got[fin], ref[fin], rtol=1e-4, atol=1e-4)
    assert bool(native_runs) == (nat is not None)


@pytest.mark.parametrize("use_native", [True, False])
def test_empty_problems(use_native):
    conv_impl.USE_NATIVE = use_native
    f32 = np.float32
    cases = [  # x, dy, filter shape, s, d, pads
        (np.zeros((0, 5, 5, 4), f32), np.zeros((0, 5, 5, VW), f32), (3, 3, 4, VW)),
        (np.ones((1, 5, 5, 4), f32), np.ones((1, 0, 0, VW), f32), (3, 3, 4, VW)),
        (np.ones((1, 5, 5, 4), f32), np.ones((1, 5, 5, 0), f32), (3, 3, 4, 0)),
        (np.ones((1, 5, 5, 4), f32), np.ones((1, 5, 5, VW), f32), (0, 3, 4, VW)),
        (np.ones((1, 0, 5, 4), f32), np.ones((1, 3, 5, VW), f32), (3, 3, 4, VW)),
    ]
    for x, dy, fs in cases:
        dw = conv_impl.conv2d_backprop_filter(x, dy, fs, (1, 1), (1, 1), (1, 1))
        assert dw.shape == fs and dw.dtype == f32 and not dw.any(), (x.shape, dy.shape, fs)


@pytest.mark.parametrize("use_native", [True, False])
def test_views_of_any_layout(use_native, native_runs):
    """Fortran-ordered, reversed, sliced, read-only and zero-stride (broadcast) operands."""
    conv_impl.USE_NATIVE = use_native
    rng = np.random.default_rng(12)
    x = _rand(rng, (2, 8, 9, 6))
    dy = _rand(rng, (2, 8, 9, 2 * VW))
    fs, s, d, pb = (3, 3, 6, 2 * VW), (1, 1), (1, 1), (1, 1)
    views = {
        "fortran": (np.asfortranarray(x), np.asfortranarray(dy)),
        "reversed": (x[:, ::-1, ::-1].copy()[:, ::-1, ::-1], dy[..., ::-1].copy()[..., ::-1]),
        "sliced": (np.pad(x, ((0, 0), (1, 1), (2, 2), (1, 1)))[:, 1:-1, 2:-2, 1:-1], dy),
        "broadcast": (np.broadcast_to(x[:1, :1, :1], x.shape), np.broadcast_to(dy[:, :, :1],
                                                                               dy.shape)),
    }
    ro = x.copy()
    ro.flags.writeable = False
    views["read-only"] = (ro, dy)
    for name, (xv, dyv) in views.items():
        got = conv_impl.conv2d_backprop_filter(xv, dyv, fs, s, d, pb)
        _check(got, conv2d_backprop_filter_ref(xv, dyv, fs, s, d, pb), np.float32, name)
    if use_native and nat is not None:
        assert native_runs


@pytest.mark.parametrize("use_native", [True, False])
def test_huge_dilation_and_padding_read_only_the_taps_inside(use_native):
    """A dilation or padding far beyond the input leaves few taps that read inside: the others
    are zero, and nothing is allocated at the dilated extent."""
    conv_impl.USE_NATIVE = use_native
    rng = np.random.default_rng(13)
    x = _rand(rng, (1, 6, 5, 3))
    big = 10 ** 9
    # dilation 10^9 along h: only tap 0 reads inside (taps 1, 2 would be at rows >= 10^9)
    dy = _rand(rng, (1, 6, 5, VW))
    got = conv_impl.conv2d_backprop_filter(x, dy, (3, 3, 3, VW), (1, 1), (big, 1), (0, 1))
    ref = np.zeros((3, 3, 3, VW))
    ref[:1] = conv2d_backprop_filter_ref(x, dy, (1, 3, 3, VW), (1, 1), (1, 1), (0, 1))
    _check(got, ref, np.float32, "huge dilation")
    # padding 10^9 before: no tap of the 3x3 filter reaches the input for the one output row
    dy = _rand(rng, (1, 1, 5, VW))
    got = conv_impl.conv2d_backprop_filter(x, dy, (3, 3, 3, VW), (1, 1), (1, 1), (big, 1))
    assert not got.any()


@needs_native
@pytest.mark.parametrize("fmt, dtype, n, h, w, c", [
    ("NHWC", np.float32, 4, 12, 12, 2 * VW),
    ("NCHW", np.float32, 2, 24, 24, BW),     # dy staged per block
    ("NCHW", np.float16, 2, 48, 48, VW),     # both staged
    ("NCHW", np.float32, 2, 40, 40, 21),     # dy's blocks packed by the kernel
    ("NHWC", np.float32, 1, 30, 30, VW + 3),  # the last, partial block packed
])
def test_workspace_bound(fmt, dtype, n, h, w, c, native_runs):
    rng = np.random.default_rng(14)
    s, d, pb = (1, 1), (1, 1), (1, 1)
    fs = (3, 3, c, c)
    x = _fmt(_rand(rng, (n, h, w, c), dtype), fmt)
    dy = _fmt(_rand(rng, (n, h, w, c), dtype), fmt)
    conv_impl.conv2d_backprop_filter(x, dy, fs, s, d, pb, fmt)  # warm the pool
    assert native_runs
    conv_impl.release_workspaces()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        dw = conv_impl.conv2d_backprop_filter(x, dy, fs, s, d, pb, fmt)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    used = peak - base - dw.nbytes
    bound = conv_impl.conv2d_backprop_filter_workspace_bytes(x.shape, dy.shape, fs, s, d, pb,
                                                             fmt, dtype)
    assert used <= bound, (used, bound)
    _check(dw, conv2d_backprop_filter_ref(x, dy, fs, s, d, pb, fmt), dtype, "workspace case")


def test_numpy_workspace_bound_does_not_grow_with_the_batch():
    args = ((3, 3, 8, 8), (1, 1), (1, 1), (1, 1), "NHWC", np.float64)
    small = conv_impl.conv2d_backprop_filter_workspace_bytes((32, 32, 32, 8),
                                                             (32, 32, 32, 8), *args)
    large = conv_impl.conv2d_backprop_filter_workspace_bytes((256, 32, 32, 8),
                                                             (256, 32, 32, 8), *args)
    assert small == large


@pytest.mark.parametrize("plan", ["patches", "per_tap", "exact", "tiny"])
def test_numpy_workspace_bound_holds(plan):
    conv_impl.USE_NATIVE = False
    rng = np.random.default_rng(15)
    cin = 20 if plan == "per_tap" else 6
    n = 1 if plan == "tiny" else 8
    x = rng.standard_normal((n, 20, 20, cin))
    dy = rng.standard_normal((n, 10, 10, 5))
    if plan == "exact":
        dy[0, 0, 0, 0] = np.inf  # non-finite dy: exactly the pixels inside, copied per tap
    fs, s, d, pb = (3, 3, cin, 5), (2, 2), (1, 1), (0, 0)
    with np.errstate(invalid="ignore"):
        conv_impl.conv2d_backprop_filter(x, dy, fs, s, d, pb)
        # tracemalloc also counts other threads' allocations (threads left by earlier
        # tests in the same process), which only add: the least of three runs is ours.
        used = None
        for _ in range(3):
            conv_impl.release_workspaces()
            tracemalloc.start()
            try:
                base, _ = tracemalloc.get_traced_memory()
                tracemalloc.reset_peak()
                dw = conv_impl.conv2d_backprop_filter(x, dy, fs, s, d, pb)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            run = peak - base - dw.nbytes
            used = run if used is None else min(used, run)
    bound = conv_impl.conv2d_backprop_filter_workspace_bytes(x.shape, dy.shape, fs, s, d, pb,
                                                             "NHWC", np.float64)
    assert 0 < used <= bound, (used, bound)
    with np.errstate(invalid="ignore"):
        ref = conv2d_backprop_filter_ref(x, dy, fs, s, d, pb)
    assert np.allclose(dw, ref, rtol=1e-12, atol=1e-12, equal_nan=True)


# ---------------------------------------------------------------------------------------------
# (5) the numpy fallback when the compiled core is disabled, and the ops on the graph
# ---------------------------------------------------------------------------------------------
def test_opgraph_native_0_gives_the_same_result(monkeypatch, native_runs):
    native._reset()
    monkeypatch.setenv("OPGRAPH_NATIVE", "0")
    try:
        assert native.load() is None
        rng = np.random.default_rng(16)
        x, dy, fs, pb = _case(rng, 2, 9, 9, 4, BW, 1, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1),
                              "NHWC", np.float32)
        got = conv_impl.conv2d_backprop_filter(x, dy, fs, (2, 2), (1, 1), pb)
        _check(got, conv2d_backprop_filter_ref(x, dy, fs, (2, 2), (1, 1), pb), np.float32)
        assert not native_runs
    finally:
        monkeypatch.delenv("OPGRAPH_NATIVE")
        native._reset()


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_ops_in_a_session_float32(fmt, native_runs):
    """Both ops from placeholders (shape functions re-run on the fed shapes) on the compiled
    path where it applies, against the reference."""
    rng = np.random.default_rng(17)
    x, dy, fs, pb = _case(rng, 4, 12, 7, 6, BW, 1, (3, 2), (1, 2), (1, 1), (1, 1, 0, 1),
                          "NHWC", np.float32)  # past the one-GEMM size of tiny problems
    strides = [1, 1, 2, 1] if fmt == "NHWC" else [1, 1, 1, 2]
    pads = [0, 0, 1, 1, 0, 1, 0, 0] if fmt == "NHWC" else [0, 0, 0, 0, 1, 1, 0, 1]
    root = Scope.NewRootScope()
    xp = ops.Placeholder(root, DT_FLOAT)
    dyp = ops.Placeholder(root, DT_FLOAT)
    w = ops.Placeholder(root, DT_FLOAT, shape=list(fs))
    dw1 = ops.Conv2DBackpropFilter(root, xp, ops.Const(root, np.array(fs, np.int32)), dyp,
                                   strides, "EXPLICIT", explicit_paddings=pads, data_format=fmt)
    dw2 = ops.Conv2DBackpropFilterV2(root, xp, w, dyp, strides, "EXPLICIT",
                                     explicit_paddings=pads, data_format=fmt)
    assert root.ok(), root.status()
    assert dw1.output.shape.as_list() == list(fs)
    a, b = ClientSession(root).Run({xp: _fmt(x, fmt), dyp: _fmt(dy, fmt),
                                    w: np.zeros(fs, np.float32)}, [dw1, dw2])
    ref = conv2d_backprop_filter_ref(x, dy, fs, (1, 2), (1, 1), pb)
    _check(a, ref, np.float32, "Conv2DBackpropFilter")
    _check(b, ref, np.float32, "Conv2DBackpropFilterV2")
    if nat is not None:
        assert native_runs
