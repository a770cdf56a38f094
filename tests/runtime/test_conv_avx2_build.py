"""The compiled core built for AVX2 (-mavx2 -mfma -mf16c, no AVX-512), against the float64
references.

Built with -march=native on an AVX-512 machine the library runs 16-lane vectors and the
14 x 2 register tile; AVX2 machines (Zen 3, most laptops) run 8-lane vectors and the 6 x 2
tile (conv_common.h picks them by __AVX512F__), which that build never compiles. So where
the CPU has AVX-512, this module builds the AVX2 library too (once, about 15 s), checks it as
the loader does, and runs conv_impl on it: every compiled path of the input gradient (direct,
Winograd 4x4 stride 2 and 3x3 stride 1, sub-pixel, pixel shuffle, exact tiling on channel
planes and on short pixel rows, padded channel blocks,
groups, the depthwise slide, pixel order, planes and 8-channel blocks, each checked to have
run), the forward convolution and the filter gradient, float16, NHWC and NCHW, on 1 and 3
threads. Where the CPU has no AVX-512 the default build is this one and the rest of the suite
covers it; without AVX2, FMA, F16C or a compiler the module is skipped."""

import ctypes

import numpy as np
import pytest

from runtime.kernels.cpu import conv_impl, native
from tests.op_db.conv import conv2d_backprop_filter_ref
from tests.reference import conv2d_backprop_input_ref, conv2d_forward_ref

AVX2_FLAGS = ["-mavx2", "-mfma", "-mf16c"]
ENTRY_POINTS = ("backprop_input", "forward", "winograd_bpi", "winograd3_bpi", "shuffle_store",
                "depthwise_plan", "filter_grad_plan", "tiling_planes", "tiling_pixels")


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@pytest.fixture(scope="module")
def avx2(tmp_path_factory):
    """The AVX2 build as a checked NativeConv."""
    flags = _cpu_flags()
    if not {"avx2", "fma", "f16c"} <= flags:
        pytest.skip("this CPU cannot run an AVX2 build")
    if "avx512f" not in flags:
        pytest.skip("no AVX-512: the default build is the AVX2 one")
    cc = native._compiler()
    if cc is None:
        pytest.skip("no C compiler")
    path = tmp_path_factory.mktemp("avx2") / "conv.so"
    rc, err = native._run_compiler(native.compile_command(cc, native._FLAGS + AVX2_FLAGS, path),
                                   native.build_timeout())
    if rc != 0:
        pytest.skip(f"AVX2 build failed: {err[-300:]}")
    nat = native.NativeConv(ctypes.CDLL(str(path)))
    assert nat.vector_width == 8, "an AVX2 build has 8-lane vectors"
    native._self_check(nat)  # (what the loader checks before it uses a library)
    return nat


@pytest.fixture
def on_avx2(avx2, monkeypatch):
    """conv_impl runs on the AVX2 build (and its thresholds let small problems take every
    path)."""
    monkeypatch.setattr(native, "load", lambda: avx2)
    for name in ("TINY_MACS", "PARALLEL_MIN_MACS", "SHUFFLE_PARALLEL_MIN_MACS",
                 "DEPTHWISE_PARALLEL_MIN", "WINOGRAD_MIN_PIXELS", "WINOGRAD3_MIN_PIXELS",
                 "WINOGRAD_MIN_COUT", "WINOGRAD_MIN_CIN"):
        monkeypatch.setattr(conv_impl, name, 0)
    calls = []
    for name in ENTRY_POINTS:  # (recorded, so that a test knows which kernel ran)
        real = getattr(avx2, name)
        monkeypatch.setattr(avx2, name, lambda *a, _real=real, _name=name, **k: (
            calls.append(_name), _real(*a, **k))[1])
    saved = conv_impl.NUM_THREADS, conv_impl.FORCE_ALGORITHM
    yield calls
    conv_impl.NUM_THREADS, conv_impl.FORCE_ALGORITHM = saved


def _rel_err(got, ref):
    return float(np.abs(np.asarray(got, np.float64) - ref).max()) / max(1.0, np.abs(ref).max())


def _to(a, fmt):
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2)) if fmt == "NCHW" else a


def _from(a, fmt):
    return a.transpose(0, 2, 3, 1) if fmt == "NCHW" else a


# (n, dy h, dy w, cout, cin, k, stride, pad, output padding, groups, algorithm, the kernel
# that runs: one name, or "NHWC's/NCHW's")
BPI_CASES = [
    (2, 5, 6, 24, 16, 4, 2, 1, 0, 1, None, "winograd_bpi"),        # 4x4 s2: F(2x2, 2x2)
    (2, 5, 6, 24, 16, 4, 2, 1, 0, 1, "native", "backprop_input"),  # the direct kernel
    (2, 7, 6, 16, 24, 3, 1, 1, 0, 1, None, "winograd3_bpi"),       # 3x3 s1: F(2x2, 3x3)
    (2, 4, 5, 32, 16, 2, 2, 0, 0, 1, None, "backprop_input/tiling_planes"),  # U-Net 2x2
    (1, 7, 9, 12, 16, 1, 1, 0, 0, 1, None, "backprop_input/tiling_planes"),  # 1x1
    (3, 5, 3, 24, 20, 2, 2, 0, 0, 1, None, "tiling_pixels/tiling_planes"),  # short dy rows
    (2, 6, 5, 32, 3, 3, 3, 0, 0, 1, None, "forward"),              # pixel shuffle (ESPCN)
    (2, 5, 5, 16, 3, 4, 2, 1, 0, 1, None, "forward"),              # sub-pixel conv (DCGAN)
    (2, 5, 6, 21, 21, 4, 2, 1, 0, 1, "native", "backprop_input"),  # 21: padded channel blocks
    (2, 5, 4, 32, 32, 4, 2, 1, 0, 2, None, "backprop_input"),      # 2 groups of 16
    (2, 6, 7, 40, 40, 3, 2, 1, 1, 40, None, "depthwise_plan"),     # depthwise: slide / planes
    (2, 5, 6, 16, 16, 4, 2, 1, 0, 16, None, "depthwise_plan"),     # depthwise 4x4 s2
    (1, 4, 5, 300, 300, 3, 2, 1, 1, 300, None, "depthwise_plan"),  # 300 channels: pixel order
    (2, 6, 9, 12, 12, 3, 1, 1, 0, 12, None, "depthwise_plan"),     # s1: 8-channel blocks
]


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("case", BPI_CASES,
                         ids=lambda c: f"k{c[5]}s{c[6]}c{c[3]}>{c[4]}g{c[9]}-{c[11]}")
def test_input_gradient(on_avx2, case, fmt, threads):
    n, oh, ow, cout, cin, k, s, p, op, g, algo, kernel = case
    conv_impl.NUM_THREADS, conv_impl.FORCE_ALGORITHM = threads, algo
    h, wd = (oh - 1) * s - 2 * p + k + op, (ow - 1) * s - 2 * p + k + op
    rng = np.random.default_rng(sum(case[:10]) + threads)
    w = rng.standard_normal((k, k, cin // g, cout)).astype(np.float32)
    dy = rng.standard_normal((n, oh, ow, cout)).astype(np.float32)
    ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64),
                                    (n, h, wd, cin), (s, s), (1, 1), (p, p), "NHWC")
    shape = (n, cin, h, wd) if fmt == "NCHW" else (n, h, wd, cin)
    got = conv_impl.conv2d_backprop_input(_to(dy, fmt), w, shape, (s, s), (1, 1), (p, p), fmt)
    kernel = kernel.split("/")[fmt == "NCHW"] if "/" in kernel else kernel
    assert kernel in on_avx2, f"{kernel} did not run (ran: {on_avx2})"
    assert _rel_err(_from(got, fmt), ref) < 1e-5


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("k, s, p", [(3, 1, 1), (5, 2, 2), (1, 1, 0)])
def test_forward_and_filter_gradient(on_avx2, fmt, k, s, p):
    conv_impl.NUM_THREADS = 3
    rng = np.random.default_rng(k * 10 + s)
    n, h, wd, cin, cout = 2, 11, 9, 12, 20
    oh, ow = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
    x = rng.standard_normal((n, h, wd, cin)).astype(np.float32)
    w = rng.standard_normal((k, k, cin, cout)).astype(np.float32)
    dy = rng.standard_normal((n, oh, ow, cout)).astype(np.float32)
    y = conv_impl.conv2d_forward(_to(x, fmt), w, (s, s), (1, 1), (p, p), (oh, ow), fmt)
    y_ref = conv2d_forward_ref(x.astype(np.float64), w.astype(np.float64), (s, s), (1, 1),
                               (p, p), (oh, ow))
    assert _rel_err(_from(y, fmt), y_ref) < 1e-5
    dw = conv_impl.conv2d_backprop_filter(_to(x, fmt), _to(dy, fmt), w.shape, (s, s), (1, 1),
                                          (p, p), fmt)
    dw_ref = conv2d_backprop_filter_ref(x, dy, w.shape, (s, s), (1, 1), (p, p))
    assert _rel_err(dw, dw_ref) < 1e-5
    assert "filter_grad_plan" in on_avx2
    # (3x3 stride 1: F(2x2, 3x3); 1x1 stride 1 in NCHW: the GEMM on channel planes)
    assert {"forward", "winograd3_bpi", "tiling_planes"} & set(on_avx2)


def test_half_precision_input_gradient(on_avx2):
    """float16 operands converted inside the kernel's tiles (F16C), rounded once at the end:
    the float32 result of the same float16 values, rounded."""
    conv_impl.NUM_THREADS = 3
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 4, 16, 24)).astype(np.float16)
    dy = rng.standard_normal((2, 5, 6, 24)).astype(np.float16)
    shape = (2, 10, 12, 16)
    got = conv_impl.conv2d_backprop_input(dy, w, shape, (2, 2), (1, 1), (1, 1), "NHWC")
    f32 = conv_impl.conv2d_backprop_input(dy.astype(np.float32), w.astype(np.float32), shape,
                                          (2, 2), (1, 1), (1, 1), "NHWC")
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.astype(np.float32), f32, rtol=2e-3, atol=2e-3)
