"""Thread count of the convolution kernels: OPGRAPH_NUM_THREADS and set_num_threads, how many
threads a call of a given size takes, and every parallel path with more threads than this
machine has cores (odd counts, so work items split unevenly) against float64 references."""

import numpy as np
import pytest

import runtime
from runtime.kernels.cpu import conv_impl
from tests.reference import conv2d_backprop_input_ref, conv2d_forward_ref


@pytest.fixture(autouse=True)
def _restore():
    saved = (conv_impl.NUM_THREADS, conv_impl.PARALLEL_MIN_MACS, conv_impl.FORCE_ALGORITHM)
    yield
    conv_impl.NUM_THREADS, conv_impl.PARALLEL_MIN_MACS, conv_impl.FORCE_ALGORITHM = saved


@pytest.mark.parametrize("env, expected", [("3", 3), (" 5 ", 5), ("1000", conv_impl.MAX_THREADS)])
def test_environment_sets_the_count(monkeypatch, env, expected):
    monkeypatch.setenv("OPGRAPH_NUM_THREADS", env)
    assert conv_impl._default_num_threads() == expected


@pytest.mark.parametrize("env", ["0", "-2", "two", "1.5"])
def test_a_bad_environment_value_warns_and_uses_the_cpus(monkeypatch, env):
    monkeypatch.delenv("OPGRAPH_NUM_THREADS", raising=False)
    cpus = conv_impl._default_num_threads()
    monkeypatch.setenv("OPGRAPH_NUM_THREADS", env)
    with pytest.warns(RuntimeWarning, match="OPGRAPH_NUM_THREADS must be a positive integer"):
        assert conv_impl._default_num_threads() == cpus
    assert 1 <= cpus <= conv_impl.MAX_THREADS


def test_set_num_threads_round_trips_and_checks_its_argument():
    runtime.set_num_threads(3)
    assert runtime.num_threads() == 3 == conv_impl.NUM_THREADS
    for bad in (0, -1, conv_impl.MAX_THREADS + 1, 2.0, "4", True, None):
        with pytest.raises(ValueError, match=r"expected an integer in \[1, 64\]"):
            runtime.set_num_threads(bad)
    assert runtime.num_threads() == 3


def test_threads_grow_with_the_work_up_to_the_count():
    conv_impl.NUM_THREADS = 16
    m = conv_impl.PARALLEL_MIN_MACS
    assert conv_impl._threads(m - 1) == 1
    assert conv_impl._threads(m) == 2
    assert conv_impl._threads(3 * m) == 6          # at least m/2 multiply-adds per thread
    assert conv_impl._threads(100 * m) == 16
    assert conv_impl._threads(10, minimum=4) == 5  # the caller's own threshold
    conv_impl.NUM_THREADS = 1
    assert conv_impl._threads(100 * m) == 1


def test_the_executor_grows_with_the_count():
    small = conv_impl._pool(1)
    assert conv_impl._pool(1) is small
    big = conv_impl._pool(small._max_workers + 2)
    assert big._max_workers >= small._max_workers + 2
    assert conv_impl._pool(1) is big


def _rel_err(got, ref):
    return float(np.abs(np.asarray(got, np.float64) - ref).max()) / max(1.0, np.abs(ref).max())


# (n, h, w, cin, cout, k, stride, pad, groups, algorithm): the compiled input gradient, its
# Winograd path, the depthwise kernel, the sub-pixel paths and the numpy engines
BPI_CASES = [
    (3, 12, 10, 16, 32, 3, 1, 1, 1, None),
    (2, 16, 16, 16, 32, 4, 2, 1, 1, "winograd"),
    (3, 14, 9, 24, 24, 3, 2, 1, 24, None),
    (2, 16, 12, 8, 24, 2, 2, 0, 1, None),
    (3, 12, 12, 6, 10, 5, 3, 2, 2, "gather"),
    (3, 11, 13, 6, 10, 3, 2, 1, 1, "scatter"),
]


@pytest.mark.parametrize("threads", [3, 5])
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("case", BPI_CASES, ids=lambda c: f"k{c[5]}s{c[6]}g{c[8]}-{c[9]}")
def test_input_gradient_on_more_threads_than_cores(case, fmt, threads):
    n, h, wd, cin, cout, k, s, p, g, algo = case
    conv_impl.NUM_THREADS, conv_impl.PARALLEL_MIN_MACS = threads, 0
    conv_impl.FORCE_ALGORITHM = algo
    rng = np.random.default_rng(threads)
    oh, ow = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
    w = rng.standard_normal((k, k, cin // g, cout)).astype(np.float32)
    dy = rng.standard_normal((n, oh, ow, cout)).astype(np.float32)
    xshape = (n, h, wd, cin)
    ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), xshape,
                                    (s, s), (1, 1), (p, p), "NHWC")
    if fmt == "NCHW":
        dy, xshape = dy.transpose(0, 3, 1, 2).copy(), (n, cin, h, wd)
    got = conv_impl.conv2d_backprop_input(dy, w, xshape, (s, s), (1, 1), (p, p), fmt)
    if fmt == "NCHW":
        got = got.transpose(0, 2, 3, 1)
    assert _rel_err(got, ref) < 1e-5


@pytest.mark.parametrize("threads", [3, 5])
def test_forward_and_filter_gradient_on_more_threads_than_cores(threads):
    conv_impl.NUM_THREADS, conv_impl.PARALLEL_MIN_MACS = threads, 0
    rng = np.random.default_rng(7)
    n, h, wd, cin, cout, k, s, p = 3, 13, 11, 16, 24, 3, 2, 1
    oh, ow = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
    x = rng.standard_normal((n, h, wd, cin)).astype(np.float32)
    w = rng.standard_normal((k, k, cin, cout)).astype(np.float32)
    dy = rng.standard_normal((n, oh, ow, cout)).astype(np.float32)
    y = conv_impl.conv2d_forward(x, w, (s, s), (1, 1), (p, p), (oh, ow))
    y_ref = conv2d_forward_ref(x.astype(np.float64), w.astype(np.float64), (s, s), (1, 1),
                               (p, p), (oh, ow))
    assert _rel_err(y, y_ref) < 1e-5
    dw = conv_impl.conv2d_backprop_filter(x, dy, w.shape, (s, s), (1, 1), (p, p))
    # dw[a, b, c, o] = sum over n, i, j of x[n, i*s + a - p, j*s + b - p, c] * dy[n, i, j, o]
    xp = np.pad(x.astype(np.float64), ((0, 0), (p, p + s), (p, p + s), (0, 0)))
    dw_ref = np.empty((k, k, cin, cout))
    for a in range(k):
        for b in range(k):
            patch = xp[:, a:a + s * oh:s, b:b + s * ow:s, :]
            dw_ref[a, b] = np.einsum("nijc,nijo->co", patch, dy.astype(np.float64))
    assert _rel_err(dw, dw_ref) < 1e-5
