"""Tests of runtime/kernels/cpu/conv_impl.py (the numpy conv2d / conv2d input-gradient math).

Each independent check is its own test: the direct-loop reference (tests/reference.py), the
adjoint identity, golden data recorded once from torch, torch itself (when installed), a
hypothesis property test, odd memory layouts, empty tensors, every algorithm/layout path,
batch blocking with a tiny budget, bfloat16, and the temporary-memory bound.

Tolerances (relative to the largest reference magnitude): float64 1e-10, float32 1e-5,
float16 / bfloat16 (computed in float32, rounded once) 1e-2 / 2e-2; integers exact (int64
accumulation, wrapped to int32 like C++). No test asserts on time.
"""

from __future__ import annotations

import itertools
import os
import tracemalloc

import numpy as np
import pytest

from runtime.kernels.cpu import conv_impl, native
from tests.reference import (
    conv2d_backprop_input_ref,
    conv2d_forward_ref,
    tf_same_padding,
    valid_out,
)

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "golden",
                      "conv_golden.npz")

TOL = {np.float64: 1e-10, np.float32: 1e-5, np.float16: 1e-2}


@pytest.fixture(autouse=True)
def _restore_flags():
    saved = {k: getattr(conv_impl, k) for k in
             ("FORCE_ALGORITHM", "FORCE_LAYOUT", "BLOCK_BYTES", "TARGET_ROWS", "SCATTER_BYTES",
              "NUM_THREADS", "PARALLEL_MIN_MACS", "WINOGRAD_MIN_CHANNELS", "TINY_MACS",
              "PER_TAP_MAX_CHANNELS", "USE_NATIVE", "NATIVE_CHANNEL_CHUNK", "NATIVE_BLOCK_BYTES")}
    yield
    for k, v in saved.items():
        setattr(conv_impl, k, v)


def _rand(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-4, 5, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _check(got, ref, dtype, what=""):
    dtype = np.dtype(dtype)
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    assert got.dtype == dtype, (what, got.dtype, dtype)
    if np.issubdtype(dtype, np.integer):
        np.testing.assert_array_equal(got, ref.astype(dtype), err_msg=what)
        return
    tol = TOL.get(dtype.type, 2e-2)
    scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
    err = float(np.abs(got.astype(np.float64) - ref).max()) if ref.size else 0.0
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol:.1g} * {scale:.3g}"


def _shapes(n, h, w, cin, fmt):
    return (n, h, w, cin) if fmt == "NHWC" else (n, cin, h, w)


def _case(rng, n, h, w, cin, cout, kh, kw, s, d, pads, groups, fmt, dtype):
    """Build x, w, dy and geometry; pads = (top, bottom, left, right)."""
    pt, pb, pl, pr = pads
    oh = valid_out(h, kh, s[0], d[0], pt, pb)
    ow = valid_out(w, kw, s[1], d[1], pl, pr)
    x = _rand(rng, _shapes(n, h, w, cin, fmt), dtype)
    wt = _rand(rng, (kh, kw, cin // groups, cout), dtype)
    dy = _rand(rng, _shapes(n, oh, ow, cout, fmt), dtype)
    return x, wt, dy, (oh, ow), (pt, pl)


# ---------------------------------------------------------------------------------------------
# (1) the direct-loop reference
# ---------------------------------------------------------------------------------------------
PADS = [(0, 0, 0, 0), (1, 1, 1, 1), (2, 0, 1, 2)]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("pads", PADS, ids=["valid", "sym", "asym"])
@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("s", [1, 2, 3])
def test_matches_reference(s, d, pads, fmt, groups, dtype):
    rng = np.random.default_rng(hash((s, d, pads, fmt, groups, str(dtype))) % 2**32)
    x, w, dy, out_hw, pb = _case(rng, 2, 7, 8, 4, 6, 3, 2, (s, s), (d, d), pads, groups, fmt,
                                 dtype)
    yr = conv2d_forward_ref(x, w, (s, s), (d, d), pb, out_hw, fmt)
    dxr = conv2d_backprop_input_ref(dy, w, x.shape, (s, s), (d, d), pb, fmt)
    for algo in (None, "direct", "gather", "scatter"):
        conv_impl.FORCE_ALGORITHM = algo
        y = conv_impl.conv2d_forward(x, w, (s, s), (d, d), pb, out_hw, fmt)
        _check(y, yr, dtype, f"forward ({algo})")
        dx = conv_impl.conv2d_backprop_input(dy, w, x.shape, (s, s), (d, d), pb, fmt)
        _check(dx, dxr, dtype, f"backprop_input ({algo})")


def test_int32_wraps_like_cpp():
    # sums overflow int32: the result is the int64 sum wrapped to 32 bits
    dy = np.full((1, 2, 2, 3), 2**30 - 1, np.int32)
    w = np.full((2, 2, 1, 3), 3, np.int32)
    dx = conv_impl.conv2d_backprop_input(dy, w, (1, 3, 3, 1), (1, 1), (1, 1), (0, 0))
    ref = conv2d_backprop_input_ref(dy, w, (1, 3, 3, 1), (1, 1), (1, 1), (0, 0))
    assert dx.dtype == np.int32
    np.testing.assert_array_equal(dx, ref.astype(np.int32))
    assert (ref != ref.astype(np.int32)).any()  # really overflowed
    x = np.full((1, 3, 3, 3), 2**30 - 1, np.int32)
    y = conv_impl.conv2d_forward(x, np.full((2, 2, 3, 1), 3, np.int32), (1, 1), (1, 1), (0, 0),
                                 (2, 2))
    yr = conv2d_forward_ref(x, np.full((2, 2, 3, 1), 3, np.int32), (1, 1), (1, 1), (0, 0), (2, 2))
    np.testing.assert_array_equal(y, yr.astype(np.int32))


# ---------------------------------------------------------------------------------------------
# (2) adjoint identity <conv(x, w), dy> == <x, conv_backprop_input(dy, w)>
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", [None, "direct", "gather", "scatter", "winograd", "per_tap"])
@pytest.mark.parametrize("seed", range(6))
def test_adjoint_identity(seed, algo):
    if algo == "winograd":
        conv_impl.WINOGRAD_MIN_CHANNELS = 1
        algo = "gather"
    if algo == "per_tap":
        conv_impl.PER_TAP_MAX_CHANNELS = 1 << 30
        algo = "gather"
    conv_impl.FORCE_ALGORITHM = algo
    rng = np.random.default_rng(seed)
    fmt = ["NHWC", "NCHW"][seed % 2]
    groups = [1, 2, 3][seed % 3]
    s = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    d = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pads = tuple(int(v) for v in rng.integers(0, 3, size=4))
    x, w, dy, out_hw, pb = _case(rng, 2, 9, 8, 2 * groups, 3 * groups, 3, 2, s, d, pads, groups,
                                 fmt, np.float64)
    y = conv_impl.conv2d_forward(x, w, s, d, pb, out_hw, fmt)
    dx = conv_impl.conv2d_backprop_input(dy, w, x.shape, s, d, pb, fmt)
    lhs = float(np.vdot(y, dy))
    rhs = float(np.vdot(x, dx))
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs), float(np.abs(y).sum()))


# ---------------------------------------------------------------------------------------------
# (3) golden data from torch (tests/golden/make_conv_golden.py)
# ---------------------------------------------------------------------------------------------
def _golden_names():
    z = np.load(GOLDEN)
    return sorted({k.split("/")[0] for k in z.files})


@pytest.mark.parametrize("name", _golden_names())
def test_golden(name):
    z = np.load(GOLDEN)
    sh, sw, dh, dw, pt, pl, oh, ow, nchw = (int(v) for v in z[name + "/attrs"])
    fmt = "NCHW" if nchw else "NHWC"
    x, w, dy = z[name + "/x"], z[name + "/w"], z[name + "/dy"]
    y = conv_impl.conv2d_forward(x, w, (sh, sw), (dh, dw), (pt, pl), (oh, ow), fmt)
    _check(y, z[name + "/y"], np.float64, name + " forward")
    for algo in (None, "gather", "scatter"):
        conv_impl.FORCE_ALGORITHM = algo
        dx = conv_impl.conv2d_backprop_input(dy, w, x.shape, (sh, sw), (dh, dw), (pt, pl), fmt)
        _check(dx, z[name + "/dx"], np.float64, f"{name} backprop ({algo})")
        dx32 = conv_impl.conv2d_backprop_input(dy.astype(np.float32), w.astype(np.float32),
                                               x.shape, (sh, sw), (dh, dw), (pt, pl), fmt)
        _check(dx32, z[name + "/dx"], np.float32, f"{name} backprop f32 ({algo})")


# ---------------------------------------------------------------------------------------------
# (4) torch, when installed
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(8))
def test_against_torch(seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(100 + seed)
    groups = [1, 2][seed % 2]
    fmt = ["NHWC", "NCHW"][(seed // 2) % 2]
    s = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    d = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    pt, pb, pl, pr = (int(v) for v in rng.integers(0, 3, size=4))
    n, h, w, cin, cout, kh, kw = 2, 9, 10, 2 * groups, 3 * groups, 3, 3
    x, wt, dy, (oh, ow), _ = _case(rng, n, h, w, cin, cout, kh, kw, s, d, (pt, pb, pl, pr),
                                   groups, fmt, np.float64)
    to_nchw = (lambda a: a) if fmt == "NCHW" else (lambda a: a.transpose(0, 3, 1, 2))
    tx = torch.from_numpy(np.ascontiguousarray(to_nchw(x)))
    tw = torch.from_numpy(np.ascontiguousarray(wt.transpose(3, 2, 0, 1)))
    tdy = torch.from_numpy(np.ascontiguousarray(to_nchw(dy)))
    xp = torch.nn.functional.pad(tx, (pl, pr, pt, pb)).requires_grad_(True)
    ty = torch.nn.functional.conv2d(xp, tw, stride=s, dilation=d, groups=groups)
    (gx,) = torch.autograd.grad(ty, xp, tdy)
    tdx = gx[:, :, pt:pt + h, pl:pl + w].numpy()
    y = conv_impl.conv2d_forward(x, wt, s, d, (pt, pl), (oh, ow), fmt)
    dx = conv_impl.conv2d_backprop_input(dy, wt, x.shape, s, d, (pt, pl), fmt)
    _check(to_nchw(y), ty.detach().numpy(), np.float64, "forward vs torch")
    _check(to_nchw(dx), tdx, np.float64, "backprop vs torch")


# ---------------------------------------------------------------------------------------------
# (5) hypothesis property test
# ---------------------------------------------------------------------------------------------
try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None

if given is not None:

    @st.composite
    def _configs(draw):
        groups = draw(st.integers(1, 3))
        return dict(
            n=draw(st.integers(0, 2)), h=draw(st.integers(0, 7)), w=draw(st.integers(0, 7)),
            cin=groups * draw(st.integers(0, 3)), cout=groups * draw(st.integers(0, 3)),
            kh=draw(st.integers(1, 4)), kw=draw(st.integers(1, 4)),
            s=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
            d=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
            pads=tuple(draw(st.integers(0, 3)) for _ in range(4)),
            groups=groups, fmt=draw(st.sampled_from(["NHWC", "NCHW"])),
            dtype=draw(st.sampled_from([np.float32, np.float64, np.int32, np.float16])),
            algo=draw(st.sampled_from([None, "direct", "gather", "scatter"])),
            winograd=draw(st.booleans()),
            per_tap=draw(st.booleans()),
            layout=draw(st.sampled_from([None, "pm", "cf", "flat"])),
            tiny_blocks=draw(st.booleans()),
            seed=draw(st.integers(0, 2**31 - 1)),
        )

    @settings(max_examples=60, deadline=None)
    @given(_configs())
    def test_property_random_configs(cfg):
        conv_impl.FORCE_ALGORITHM = cfg["algo"]
        conv_impl.FORCE_LAYOUT = cfg["layout"]
        conv_impl.WINOGRAD_MIN_CHANNELS = 1 if cfg["winograd"] else None
        conv_impl.PER_TAP_MAX_CHANNELS = (1 << 30) if cfg["per_tap"] else None
        if cfg["tiny_blocks"]:
            conv_impl.BLOCK_BYTES = 64
            conv_impl.TARGET_ROWS = 1
            conv_impl.SCATTER_BYTES = 64
            conv_impl.PARALLEL_MIN_MACS = 0
        rng = np.random.default_rng(cfg["seed"])
        groups = cfg["groups"] if cfg["cin"] else 1
        x, w, dy, out_hw, pb = _case(rng, cfg["n"], cfg["h"], cfg["w"], cfg["cin"], cfg["cout"],
                                     cfg["kh"], cfg["kw"], cfg["s"], cfg["d"], cfg["pads"],
                                     groups, cfg["fmt"], cfg["dtype"])
        y = conv_impl.conv2d_forward(x, w, cfg["s"], cfg["d"], pb, out_hw, cfg["fmt"])
        _check(y, conv2d_forward_ref(x, w, cfg["s"], cfg["d"], pb, out_hw, cfg["fmt"]),
               cfg["dtype"], "forward")
        dx = conv_impl.conv2d_backprop_input(dy, w, x.shape, cfg["s"], cfg["d"], pb, cfg["fmt"])
        _check(dx, conv2d_backprop_input_ref(dy, w, x.shape, cfg["s"], cfg["d"], pb, cfg["fmt"]),
               cfg["dtype"], "backprop_input")


# ---------------------------------------------------------------------------------------------
# (6) non-contiguous, Fortran-ordered and zero-stride (broadcast) inputs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", [None, "gather", "scatter"])
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_odd_memory_layouts(fmt, algo):
    conv_impl.FORCE_ALGORITHM = algo
    rng = np.random.default_rng(7)
    s, d, pads = (2, 1), (1, 2), (1, 2, 0, 1)
    x, w, dy, out_hw, pb = _case(rng, 3, 8, 7, 4, 5, 3, 2, s, d, pads, 1, fmt, np.float64)
    variants_dy = {
        "fortran": np.asfortranarray(dy),
        "strided": np.repeat(dy, 2, axis=0)[::2],
        "reversed": dy[::-1, ..., ::-1][::-1, ..., ::-1],
        "broadcast": np.broadcast_to(dy[:1], dy.shape),
        "broadcast_inner": np.broadcast_to(dy[..., :1], dy.shape) if fmt == "NHWC"
        else np.broadcast_to(dy[:, :1], dy.shape),
        "float32_view": dy.astype(np.float32).astype(np.float64),
    }
    variants_w = {"c": w, "fortran": np.asfortranarray(w),
                  "strided": np.repeat(w, 2, axis=3)[..., ::2],
                  "broadcast": np.broadcast_to(w[:, :, :1], w.shape)}
    for (kd, dyv), (kw_, wv) in itertools.product(variants_dy.items(), variants_w.items()):
        ref = conv2d_backprop_input_ref(np.array(dyv), np.array(wv), x.shape, s, d, pb, fmt)
        got = conv_impl.conv2d_backprop_input(dyv, wv, x.shape, s, d, pb, fmt)
        _check(got, ref, np.float64, f"dy {kd}, w {kw_}")
    for name, xv in {"fortran": np.asfortranarray(x), "broadcast": np.broadcast_to(x[:1], x.shape),
                     "strided": np.repeat(x, 2, axis=-1)[..., ::2]}.items():
        ref = conv2d_forward_ref(np.array(xv), w, s, d, pb, out_hw, fmt)
        _check(conv_impl.conv2d_forward(xv, w, s, d, pb, out_hw, fmt), ref, np.float64,
               "forward x " + name)


# ---------------------------------------------------------------------------------------------
# (7) empty tensors
# ---------------------------------------------------------------------------------------------
EMPTY = {
    # name: (x shape NHWC, w shape, out_hw)
    "batch0": ((0, 5, 5, 3), (3, 3, 3, 4), (3, 3)),
    "h0": ((2, 0, 5, 3), (1, 3, 3, 4), (0, 3)),
    "w0": ((2, 5, 0, 3), (3, 1, 3, 4), (3, 0)),
    "cin0": ((2, 5, 5, 0), (3, 3, 0, 4), (3, 3)),
    "cout0": ((2, 5, 5, 3), (3, 3, 3, 0), (3, 3)),
    "kh0": ((2, 5, 5, 3), (0, 3, 3, 4), (5, 3)),
    "kw0": ((2, 5, 5, 3), (3, 0, 3, 4), (3, 5)),
    "dy_spatial0": ((2, 2, 2, 3), (3, 3, 3, 4), (0, 0)),
    "dy_h0_only": ((2, 2, 5, 3), (3, 3, 3, 4), (0, 3)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int32])
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("name", list(EMPTY))
def test_empty_tensors(name, fmt, dtype):
    xs, ws, out_hw = EMPTY[name]
    n, h, w, c = xs
    rng = np.random.default_rng(0)
    x = _rand(rng, _shapes(n, h, w, c, fmt), dtype)
    wt = _rand(rng, ws, dtype)
    dy = _rand(rng, _shapes(n, out_hw[0], out_hw[1], ws[3], fmt), dtype)
    y = conv_impl.conv2d_forward(x, wt, (1, 1), (1, 1), (0, 0), out_hw, fmt)
    assert y.shape == _shapes(n, out_hw[0], out_hw[1], ws[3], fmt) and y.dtype == dtype
    assert not np.any(y) or name not in ("cin0", "kh0", "kw0")
    _check(y, conv2d_forward_ref(x, wt, (1, 1), (1, 1), (0, 0), out_hw, fmt), dtype, name)
    for algo in (None, "gather", "scatter"):
        conv_impl.FORCE_ALGORITHM = algo
        dx = conv_impl.conv2d_backprop_input(dy, wt, x.shape, (1, 1), (1, 1), (0, 0), fmt)
        assert dx.shape == x.shape and dx.dtype == dtype
        _check(dx, conv2d_backprop_input_ref(dy, wt, x.shape, (1, 1), (1, 1), (0, 0), fmt),
               dtype, name)


# ---------------------------------------------------------------------------------------------
# (8) every algorithm / layout / threading path against the reference
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layout", ["pm", "cf", "flat"])
@pytest.mark.parametrize("algo", ["direct", "gather", "scatter", "winograd", "per_tap"])
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_each_algorithm_path(algo, layout, fmt, threads, dtype):
    if algo == "winograd":  # Winograd F(2x2,3x3) blocks inside the gather engine (opt-in)
        conv_impl.WINOGRAD_MIN_CHANNELS = 1
        algo = "gather"
    if algo == "per_tap":  # one GEMM per tap from the padded source (opt-in)
        conv_impl.PER_TAP_MAX_CHANNELS = 1 << 30
        algo = "gather"
    conv_impl.FORCE_ALGORITHM = algo
    conv_impl.FORCE_LAYOUT = layout
    conv_impl.NUM_THREADS = threads
    conv_impl.PARALLEL_MIN_MACS = 0
    rng = np.random.default_rng(3)
    for s, d, pads, groups, k in [((1, 1), (1, 1), (1, 1, 1, 1), 1, (3, 4)),
                                  ((2, 2), (1, 1), (1, 2, 1, 2), 1, (3, 4)),
                                  ((2, 3), (2, 1), (0, 1, 2, 0), 2, (3, 4)),
                                  ((1, 1), (2, 2), (2, 2, 2, 2), 3, (3, 4)),
                                  ((1, 1), (1, 1), (1, 1, 1, 1), 1, (3, 3)),  # Winograd-eligible
                                  ((1, 1), (1, 1), (0, 2, 2, 1), 1, (3, 3))]:
        x, w, dy, out_hw, pb = _case(rng, 4, 9, 10, 3 * groups, 2 * groups, k[0], k[1], s, d,
                                     pads, groups, fmt, dtype)
        _check(conv_impl.conv2d_backprop_input(dy, w, x.shape, s, d, pb, fmt),
               conv2d_backprop_input_ref(dy, w, x.shape, s, d, pb, fmt), dtype,
               f"{algo}/{layout} s{s} d{d} g{groups}")
        _check(conv_impl.conv2d_forward(x, w, s, d, pb, out_hw, fmt),
               conv2d_forward_ref(x, w, s, d, pb, out_hw, fmt), dtype,
               f"forward {layout} s{s} d{d} g{groups}")


def test_algorithm_choice():
    # few input channels, large kernel, stride 2 (workload F) -> scatter; 64->64 3x3 -> gather
    assert conv_impl.choose_backprop_input_algorithm(
        (4, 112, 112, 64), (7, 7, 3, 64), (4, 224, 224, 3), (2, 2)) == "scatter"
    # 64->64 3x3: the compiled direct kernel when it is available, else the numpy gather engine
    expected = "native" if native.load() is not None else "gather"
    assert conv_impl.choose_backprop_input_algorithm(
        (8, 56, 56, 64), (3, 3, 64, 64), (8, 56, 56, 64), (1, 1)) == expected
    conv_impl.USE_NATIVE = False
    assert conv_impl.choose_backprop_input_algorithm(
        (8, 56, 56, 64), (3, 3, 64, 64), (8, 56, 56, 64), (1, 1)) == "gather"
    assert conv_impl.choose_backprop_input_algorithm(
        (1, 8, 8, 4), (3, 3, 4, 4), (1, 8, 8, 4), (1, 1)) == "direct"


# ---------------------------------------------------------------------------------------------
# (9) batch blocking: a tiny block budget gives the same result
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["gather", "scatter"])
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_tiny_blocks_same_result(algo, fmt):
    rng = np.random.default_rng(11)
    s, d = (2, 2), (1, 1)
    n, h, w, c = 5, 11, 10, 3
    _, pt, pb = tf_same_padding(h, 3, 2, 1)
    _, pl, pr = tf_same_padding(w, 3, 2, 1)
    x, wt, dy, out_hw, pads = _case(rng, n, h, w, c, 4, 3, 3, s, d, (pt, pb, pl, pr), 1, fmt,
                                    np.float64)
    conv_impl.FORCE_ALGORITHM = algo
    big = conv_impl.conv2d_backprop_input(dy, wt, x.shape, s, d, pads, fmt)
    for threads in (1, 2):
        conv_impl.NUM_THREADS = threads
        conv_impl.PARALLEL_MIN_MACS = 0
        conv_impl.BLOCK_BYTES = 1
        conv_impl.TARGET_ROWS = 1
        conv_impl.SCATTER_BYTES = 1
        small = conv_impl.conv2d_backprop_input(dy, wt, x.shape, s, d, pads, fmt)
        ref = conv2d_backprop_input_ref(dy, wt, x.shape, s, d, pads, fmt)
        _check(small, ref, np.float64, "tiny blocks")
        np.testing.assert_allclose(small, big, rtol=1e-12, atol=1e-12)
        y = conv_impl.conv2d_forward(x, wt, s, d, pads, out_hw, fmt)
        _check(y, conv2d_forward_ref(x, wt, s, d, pads, out_hw, fmt), np.float64, "fwd tiny")


def test_temporary_memory_is_bounded():
    # the temporary memory does not grow with the batch and stays under the reported bound
    rng = np.random.default_rng(5)
    w = rng.standard_normal((3, 3, 32, 32)).astype(np.float32)
    peaks = {}
    for n in (64, 512):
        dy = rng.standard_normal((n, 12, 12, 32)).astype(np.float32)
        shape = (n, 12, 12, 32)
        conv_impl.conv2d_backprop_input(dy, w, shape, (1, 1), (1, 1), (1, 1))
        conv_impl.release_workspaces()
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            dx = conv_impl.conv2d_backprop_input(dy, w, shape, (1, 1), (1, 1), (1, 1))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        peaks[n] = peak - base - dx.nbytes
        bound = conv_impl.conv2d_backprop_input_workspace_bytes(
            dy.shape, w.shape, shape, (1, 1), (1, 1), (1, 1), "NHWC", np.float32)
        assert peaks[n] <= bound, (n, peaks[n], bound)
    assert peaks[512] <= 1.5 * peaks[64] + (1 << 20)
    # the reported bound itself is independent of the batch for the blocked engines
    b = [conv_impl.conv2d_backprop_input_workspace_bytes(
        (n, 14, 14, 256), (3, 3, 256, 256), (n, 14, 14, 256), (1, 1), (1, 1), (1, 1))
        for n in (32, 256, 4096)]
    assert b[0] == b[1] == b[2] < 256 << 20


# ---------------------------------------------------------------------------------------------
# (10) bfloat16 (ml_dtypes)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_bfloat16(fmt):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf16 = np.dtype(ml_dtypes.bfloat16)
    rng = np.random.default_rng(9)
    x, w, dy, out_hw, pb = _case(rng, 2, 7, 6, 4, 3, 3, 3, (2, 1), (1, 1), (1, 1, 1, 0), 1, fmt,
                                 np.float32)
    x, w, dy = x.astype(bf16), w.astype(bf16), dy.astype(bf16)
    y = conv_impl.conv2d_forward(x, w, (2, 1), (1, 1), pb, out_hw, fmt)
    dx = conv_impl.conv2d_backprop_input(dy, w, x.shape, (2, 1), (1, 1), pb, fmt)
    assert y.dtype == bf16 and dx.dtype == bf16
    yr = conv2d_forward_ref(x.astype(np.float64), w.astype(np.float64), (2, 1), (1, 1), pb,
                            out_hw, fmt)
    dxr = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64), x.shape,
                                    (2, 1), (1, 1), pb, fmt)
    for got, ref in ((y, yr), (dx, dxr)):
        scale = max(1.0, float(np.abs(ref).max()))
        assert float(np.abs(got.astype(np.float64) - ref).max()) <= 2e-2 * scale


# ---------------------------------------------------------------------------------------------
# concurrent calls (the executor may run kernels in parallel)
# ---------------------------------------------------------------------------------------------
def test_concurrent_calls_agree():
    import threading

    conv_impl.PARALLEL_MIN_MACS = 0
    rng = np.random.default_rng(12)
    dy = rng.standard_normal((6, 9, 9, 8)).astype(np.float32)
    w = rng.standard_normal((3, 3, 8, 8)).astype(np.float32)
    shape = (6, 9, 9, 8)
    ref = conv2d_backprop_input_ref(dy, w, shape, (1, 1), (1, 1), (1, 1))
    before = conv_impl._BLAS._get() if conv_impl._BLAS.available else None
    results, errors = [], []

    def job(algo):
        try:
            for _ in range(3):
                results.append(conv_impl.conv2d_backprop_input(dy, w, shape, (1, 1), (1, 1),
                                                               (1, 1)))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    conv_impl.FORCE_ALGORITHM = "gather"
    threads = [threading.Thread(target=job, args=(None,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 12
    for r in results:
        _check(r, ref, np.float32, "concurrent")
    if before is not None:
        assert conv_impl._BLAS._get() == before  # OpenBLAS thread count restored


@pytest.mark.parametrize("flags", [{}, {"FORCE_ALGORITHM": "gather"},
                                   {"FORCE_ALGORITHM": "scatter"}, {"NUM_THREADS": 1},
                                   {"FORCE_ALGORITHM": "scatter", "FORCE_LAYOUT": "flat"},
                                   {"WINOGRAD_MIN_CHANNELS": 1},
                                   {"PER_TAP_MAX_CHANNELS": 1 << 30}])
def test_workspace_bound_holds(flags):
    for k, v in flags.items():
        setattr(conv_impl, k, v)
    rng = np.random.default_rng(13)
    cases = [((64, 12, 12, 32), (3, 3, 32, 32), 1, 1, "NHWC"),
             ((16, 20, 20, 16), (4, 4, 16, 24), 2, 1, "NHWC"),
             ((16, 16, 20, 20), (3, 3, 16, 24), 2, 1, "NCHW"),
             ((4, 3, 50, 50), (7, 7, 3, 16), 2, 3, "NCHW")]
    for shp, ws, s, p, fmt in cases:
        n, h, w, _ = shp if fmt == "NHWC" else (shp[0], shp[2], shp[3], shp[1])
        oh, ow = -(-h // s), -(-w // s)
        dys = (n, oh, ow, ws[3]) if fmt == "NHWC" else (n, ws[3], oh, ow)
        dy = rng.standard_normal(dys).astype(np.float32)
        wt = rng.standard_normal(ws).astype(np.float32)
        conv_impl.conv2d_backprop_input(dy, wt, shp, (s, s), (1, 1), (p, p), fmt)
        conv_impl.release_workspaces()
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            dx = conv_impl.conv2d_backprop_input(dy, wt, shp, (s, s), (1, 1), (p, p), fmt)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        bound = conv_impl.conv2d_backprop_input_workspace_bytes(dy.shape, ws, shp, (s, s),
                                                                (1, 1), (p, p), fmt)
        assert peak - base - dx.nbytes <= bound, (shp, peak - base - dx.nbytes, bound)
