"""The speed paths of conv2d_backprop_input against the direct-loop reference: the depthwise
path (compiled kernel and numpy fallback) over layouts, dtypes, multipliers, strides,
dilations, padding (negative included) and non-finite values."""

import numpy as np
import pytest

from runtime.kernels.cpu import conv_impl, native
from tests.reference import conv2d_backprop_input_ref

CASES = [  # n, oh, ow, c, m, kh, kw, sh, sw, dh, dw, pt, pl, h, w
    (2, 5, 6, 7, 1, 4, 4, 2, 2, 1, 1, 1, 1, 10, 12),
    (2, 5, 4, 5, 3, 3, 2, 2, 3, 2, 1, 2, 0, 9, 11),
    (1, 4, 4, 21, 1, 16, 16, 8, 8, 1, 1, 4, 4, 24, 24),
    (1, 4, 5, 3, 2, 5, 3, 1, 1, 2, 1, -1, 1, 4, 6),
    (3, 3, 3, 16, 1, 3, 3, 3, 3, 1, 1, 0, 0, 9, 9),
    (1, 6, 2, 4, 1, 1, 1, 2, 1, 1, 1, 0, 0, 11, 2),
    (1, 3, 4, 6, 1, 3, 3, 4, 4, 2, 2, 2, 3, 13, 17),       # stride 4, dilated
    (1, 2, 2, 5, 1, 20, 40, 8, 32, 1, 1, 2, 8, 14, 40),    # stride 32 (FCN s32-like)
    (1, 4, 5, 5, 3, 2, 3, 1, 1, 1, 2, -1, 4, 5, 9),        # M = 3, stride 1, large padding
]


@pytest.fixture(params=["native", "numpy"])
def engine(request, monkeypatch):
    if request.param == "native":
        nat = native.load()
        if nat is None or not getattr(nat, "has_depthwise", False):
            pytest.skip(f"compiled kernel unavailable: {native.unavailable_reason()}")
    else:
        monkeypatch.setattr(conv_impl, "USE_NATIVE", False)
    return request.param


def _run(dy, w, shape, st, dl, pd, fmt):
    if fmt == "NCHW":
        dy = np.ascontiguousarray(dy.transpose(0, 3, 1, 2))
        n, h, wd, c = shape
        shape = (n, c, h, wd)
    out = conv_impl.conv2d_backprop_input(dy, w, shape, st, dl, pd, fmt)
    return out if fmt == "NHWC" else out.transpose(0, 2, 3, 1)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_depthwise_matches_reference(engine, case, fmt, dtype):
    n, oh, ow, c, m, kh, kw, sh, sw, dh, dw, pt, pl, h, wd = case
    rng = np.random.default_rng(sum(case))
    w = rng.standard_normal((kh, kw, 1, c * m)).astype(dtype)
    dy = rng.standard_normal((n, oh, ow, c * m)).astype(dtype)
    ref = conv2d_backprop_input_ref(dy, w, (n, h, wd, c), (sh, sw), (dh, dw), (pt, pl))
    got = _run(dy, w, (n, h, wd, c), (sh, sw), (dh, dw), (pt, pl), fmt)
    assert got.dtype == dtype and got.shape == (n, h, wd, c)
    tol = {np.float16: 2e-2, np.float32: 1e-5, np.float64: 1e-12}[dtype]
    np.testing.assert_allclose(got.astype(np.float64), np.asarray(ref, np.float64),
                               rtol=tol, atol=tol * max(1.0, float(np.abs(ref).max())))


def test_depthwise_path_is_taken(monkeypatch):
    calls = []
    real = conv_impl._depthwise_run
    monkeypatch.setattr(conv_impl, "_depthwise_run",
                        lambda *a: calls.append(1) or real(*a))
    dy = np.ones((1, 8, 8, 32), np.float32)
    w = np.ones((4, 4, 1, 32), np.float32)
    conv_impl.conv2d_backprop_input(dy, w, (1, 16, 16, 32), (2, 2), (1, 1), (1, 1))
    assert calls


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_depthwise_non_finite_like_direct_loop(engine, fmt):
    rng = np.random.default_rng(3)
    c, n, oh = 6, 1, 5
    w = rng.standard_normal((3, 3, 1, c)).astype(np.float32)
    dy = rng.standard_normal((n, oh, oh, c)).astype(np.float32)
    dy[0, 2, 3, 1] = np.nan
    w[1, 1, 0, 4] = np.inf
    ref = conv2d_backprop_input_ref(dy, w, (n, 10, 10, c), (2, 2), (1, 1), (1, 1))
    got = _run(dy, w, (n, 10, 10, c), (2, 2), (1, 1), (1, 1), fmt)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    fin = np.isfinite(ref)
    np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-5, atol=1e-5)


def test_depthwise_large_batch_threads(engine):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((4, 4, 1, 24)).astype(np.float32)
    dy = rng.standard_normal((5, 16, 16, 24)).astype(np.float32)
    ref = conv2d_backprop_input_ref(dy, w, (5, 32, 32, 24), (2, 2), (1, 1), (1, 1))
    got = conv_impl.conv2d_backprop_input(dy, w, (5, 32, 32, 24), (2, 2), (1, 1), (1, 1))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
