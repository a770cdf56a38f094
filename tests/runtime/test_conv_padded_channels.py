"""The compiled convolution kernel on channel counts that are not a multiple of its vector
width: conv_impl pads the kernel's output channels per group (the forward conv's output
channels, the input gradient's dx channels) with zero weights, computes them into a staging
buffer and writes back only the real channels.

Compared with the direct-loop references of tests/reference.py (channels 1, 3, 5, 21, 24, 33
on both sides, strides, dilations, paddings, NHWC/NCHW, groups, float32/float16), with NaN and
inf in the input or the filter (NaN exactly where the reference has NaN, inf of the same sign
where it has inf: the padded lanes, 0 * inf = NaN, must not reach a real output), and the
temporary-memory bound measured with tracemalloc. Every test asserts that the compiled kernel
ran (a counting wrapper around ``conv_impl._native_block``).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from runtime.kernels.cpu import conv_impl, native
from tests.reference import conv2d_backprop_input_ref, conv2d_forward_ref, valid_out

nat = native.load()
pytestmark = pytest.mark.skipif(
    nat is None, reason=f"compiled kernel unavailable: {native.unavailable_reason()}")

CHANNELS = [1, 3, 5, 21, 24, 33]
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float16): 1e-2}


@pytest.fixture(autouse=True)
def _restore_flags():
    saved = {k: getattr(conv_impl, k) for k in ("FORCE_ALGORITHM", "NUM_THREADS")}
    yield
    for k, v in saved.items():
        setattr(conv_impl, k, v)


def _rand(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


def _to(a, fmt):
    return a if fmt == "NHWC" else np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def _shape(n, h, w, c, fmt):
    return (n, h, w, c) if fmt == "NHWC" else (n, c, h, w)


def _check(got, ref, dtype, what=""):
    """Close where the reference is finite; NaN and inf (with its sign) exactly where it has
    them."""
    dtype = np.dtype(dtype)
    assert got.shape == ref.shape and got.dtype == dtype, (what, got.shape, got.dtype)
    g = got.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(ref), err_msg=f"{what}: NaN positions")
    np.testing.assert_array_equal(np.isposinf(g), np.isposinf(ref), err_msg=f"{what}: +inf")
    np.testing.assert_array_equal(np.isneginf(g), np.isneginf(ref), err_msg=f"{what}: -inf")
    fin = np.isfinite(ref)
    if fin.any():
        scale = max(1.0, float(np.abs(ref[fin]).max()))
        err = float(np.abs(g[fin] - ref[fin]).max())
        assert err <= TOL[dtype] * scale, f"{what}: max error {err:.3g} > {scale:.3g} * tol"


# (kernel, strides, dilations, pads (top, bottom, left, right))
GEOMETRIES = [
    ((3, 3), (1, 1), (1, 1), (1, 1, 1, 1)),
    ((4, 4), (2, 2), (1, 1), (1, 1, 1, 1)),  # FCN s2 upsampling
    ((3, 2), (2, 1), (2, 1), (2, 0, 0, 1)),
    ((1, 1), (3, 3), (1, 1), (0, 0, 0, 0)),
]


def _geometry(h, w, k, s, d, pads):
    pt, pb, pl, pr = pads
    return (valid_out(h, k[0], s[0], d[0], pt, pb), valid_out(w, k[1], s[1], d[1], pl, pr))


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("geo", GEOMETRIES, ids=["3x3", "4x4s2", "dil", "1x1s3"])
@pytest.mark.parametrize("cin", CHANNELS)
@pytest.mark.parametrize("cout", [3, 21, 33])
def test_backprop_input_padded_channels(cin, cout, geo, fmt, native_calls):
    k, s, d, pads = geo
    rng = np.random.default_rng(cin * 100 + cout)
    n, h, w = 2, 7, 19
    oh, ow = _geometry(h, w, k, s, d, pads)
    wt = _rand(rng, (*k, cin, cout))
    dy = _to(_rand(rng, (n, oh, ow, cout)), fmt)
    shape = _shape(n, h, w, cin, fmt)
    conv_impl.FORCE_ALGORITHM = "native"
    dx = conv_impl.conv2d_backprop_input(dy, wt, shape, s, d, (pads[0], pads[2]), fmt)
    assert native_calls, "the compiled kernel did not run"
    _check(dx, conv2d_backprop_input_ref(dy, wt, shape, s, d, (pads[0], pads[2]), fmt),
           np.float32, f"backprop cin={cin} cout={cout}")


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("geo", GEOMETRIES, ids=["3x3", "4x4s2", "dil", "1x1s3"])
@pytest.mark.parametrize("cout", CHANNELS)
@pytest.mark.parametrize("cin", [3, 24])
def test_forward_padded_channels(cin, cout, geo, fmt, native_calls):
    k, s, d, pads = geo
    rng = np.random.default_rng(cin * 100 + cout + 7)
    n, h, w = 2, 7, 19
    oh, ow = _geometry(h, w, k, s, d, pads)
    x = _to(_rand(rng, (n, h, w, cin)), fmt)
    wt = _rand(rng, (*k, cin, cout))
    conv_impl.FORCE_ALGORITHM = "native"  # (else tiny convs run one numpy GEMM)
    y = conv_impl.conv2d_forward(x, wt, s, d, (pads[0], pads[2]), (oh, ow), fmt)
    assert native_calls, "the compiled kernel did not run"
    _check(y, conv2d_forward_ref(x, wt, s, d, (pads[0], pads[2]), (oh, ow), fmt), np.float32,
           f"forward cin={cin} cout={cout}")


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("groups,cig,cog", [(3, 5, 3), (2, 21, 24), (3, 1, 33)])
def test_grouped_padded_channels(groups, cig, cog, fmt, dtype, native_calls):
    rng = np.random.default_rng(groups * 1000 + cig * 10 + cog)
    n, h, w, k, s, d, pads = 2, 9, 17, (3, 3), (2, 1), (1, 2), (1, 1, 2, 2)
    oh, ow = _geometry(h, w, k, s, d, pads)
    x = _to(_rand(rng, (n, h, w, cig * groups), dtype), fmt)
    wt = _rand(rng, (*k, cig, cog * groups), dtype)
    dy = _to(_rand(rng, (n, oh, ow, cog * groups), dtype), fmt)
    pb = (pads[0], pads[2])
    conv_impl.FORCE_ALGORITHM = "native"
    y = conv_impl.conv2d_forward(x, wt, s, d, pb, (oh, ow), fmt)
    assert native_calls, "forward: the compiled kernel did not run"
    _check(y, conv2d_forward_ref(x, wt, s, d, pb, (oh, ow), fmt), dtype, "grouped forward")
    native_calls.clear()
    dx = conv_impl.conv2d_backprop_input(dy, wt, x.shape, s, d, pb, fmt)
    assert native_calls, "backprop: the compiled kernel did not run"
    _check(dx, conv2d_backprop_input_ref(dy, wt, x.shape, s, d, pb, fmt), dtype,
           "grouped backprop")


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("where", ["input", "filter"])
@pytest.mark.parametrize("cin,cout", [(3, 5), (21, 21), (24, 1)])
def test_non_finite_values_propagate_like_a_direct_conv(cin, cout, where, fmt, dtype,
                                                        native_calls):
    rng = np.random.default_rng(cin + 31 * cout)
    n, h, w, k, s, d, pads = 2, 6, 15, (3, 3), (2, 2), (1, 1), (1, 1, 1, 1)
    oh, ow = _geometry(h, w, k, s, d, pads)
    x = _rand(rng, (n, h, w, cin), dtype)
    wt = _rand(rng, (*k, cin, cout), dtype)
    dy = _rand(rng, (n, oh, ow, cout), dtype)
    if where == "input":
        x[0, 2, 3, 0] = np.inf
        x[1, 4, 7, cin - 1] = -np.inf
        x[1, 0, 0, 0] = np.nan
        dy[0, 1, 2, 0] = np.inf
        dy[1, 2, 5, cout - 1] = np.nan
    else:
        wt[1, 1, 0, 0] = np.inf
        wt[0, 2, cin - 1, cout - 1] = np.nan
    x, dy = _to(x, fmt), _to(dy, fmt)
    pb = (pads[0], pads[2])
    conv_impl.FORCE_ALGORITHM = "native"
    with np.errstate(invalid="ignore", over="ignore"):
        y = conv_impl.conv2d_forward(x, wt, s, d, pb, (oh, ow), fmt)
        assert native_calls
        _check(y, conv2d_forward_ref(x, wt, s, d, pb, (oh, ow), fmt), dtype, "forward")
        native_calls.clear()
        dx = conv_impl.conv2d_backprop_input(dy, wt, x.shape, s, d, pb, fmt)
        assert native_calls
        _check(dx, conv2d_backprop_input_ref(dy, wt, x.shape, s, d, pb, fmt), dtype,
               "backprop")


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("k,s,p", [(4, 2, 1), (16, 8, 4)])
def test_fcn_upsampling_runs_native_without_forcing(k, s, p, fmt, native_calls):
    """FCN's 21-class transposed convolutions: the automatic choice runs the compiled kernel."""
    rng = np.random.default_rng(k)
    n, hin, c = 1, 6, 21
    hout = (hin - 1) * s - 2 * p + k
    wt = _rand(rng, (k, k, c, c))
    dy = _to(_rand(rng, (n, hin, hin, c)), fmt)
    shape = _shape(n, hout, hout, c, fmt)
    dx = conv_impl.conv2d_backprop_input(dy, wt, shape, (s, s), (1, 1), (p, p), fmt)
    assert native_calls, "the compiled kernel did not run"
    _check(dx, conv2d_backprop_input_ref(dy, wt, shape, (s, s), (1, 1), (p, p), fmt),
           np.float32, "fcn")


@pytest.mark.parametrize("fmt, dtype, n, h, w, c", [
    ("NHWC", np.float32, 4, 12, 12, 21),
    ("NCHW", np.float16, 2, 40, 40, 5),  # large images: the staging buffers dominate
])
def test_workspace_bound_counts_the_padded_buffers(fmt, dtype, n, h, w, c, native_calls):
    rng = np.random.default_rng(12)
    s, d, pb = (1, 1), (1, 1), (1, 1)
    wt = _rand(rng, (3, 3, c, c), dtype)
    dy = _rand(rng, _shape(n, h, w, c, fmt), dtype)
    shape = _shape(n, h, w, c, fmt)
    conv_impl.FORCE_ALGORITHM = "native"
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
