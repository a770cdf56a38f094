"""The depthwise input gradient (one dx channel per group) against the direct-loop reference.

The compiled kernel is called directly (NativeConv.depthwise_plan) in every layout it has a path
for: channels contiguous (NHWC, also with gaps between pixels), columns contiguous (NCHW) and
both strided (the generic path), mixed layouts, split work ranges run at once on threads,
non-finite values at the row ends, and a portable build (no -march=native: the scalar paths).
Through conv2d_backprop_input: threads at batch 1 and larger, float32/float64/float16, NHWC and
NCHW, the numpy fallback."""

import concurrent.futures
import ctypes
import itertools

import numpy as np
import pytest

from runtime.kernels.cpu import conv_impl, native
from tests.reference import conv2d_backprop_input_ref

CASES = [  # n, oh, ow, c, m, kh, kw, sh, sw, dh, dw, pt, pl, h, w
    (1, 5, 6, 7, 1, 4, 4, 2, 2, 1, 1, 1, 1, 10, 12),       # 4x4 s2 (DCGAN-like)
    (2, 4, 5, 9, 1, 3, 3, 2, 2, 1, 1, 1, 1, 8, 10),        # 3x3 s2: partial column taps
    (1, 4, 6, 5, 2, 3, 4, 2, 3, 1, 1, 1, 2, 8, 17),        # M = 2, sw = 3 (3 lane patterns)
    (1, 3, 4, 6, 3, 2, 5, 1, 4, 2, 1, 0, 3, 5, 16),        # M = 3, sw = 4, dilated rows
    (1, 4, 4, 3, 1, 1, 1, 4, 1, 1, 1, 0, 0, 14, 4),        # dx rows without taps, W < 8
    (1, 3, 3, 5, 1, 16, 16, 8, 8, 1, 1, 4, 4, 16, 16),     # FCN s8 (bilinear-like)
    (1, 2, 2, 4, 1, 20, 40, 8, 32, 1, 1, 2, 8, 14, 40),    # sw = 32 (4 lane patterns)
    (1, 4, 5, 6, 1, 3, 3, 1, 1, 1, 1, -2, -3, 9, 11),      # stride 1, negative padding
    (1, 4, 5, 4, 1, 3, 2, 1, 1, 2, 3, 1, 2, 7, 9),         # stride 1, dilated columns
    (1, 3, 4, 5, 1, 2, 3, 3, 2, 1, 2, 5, 9, 6, 8),         # large padding, dilated columns
    (2, 3, 3, 40, 1, 3, 3, 2, 2, 1, 1, 0, 0, 7, 7),        # 40 channels (column order)
    (1, 2, 3, 12, 3, 2, 2, 2, 2, 1, 1, 0, 0, 5, 9),        # 36 dy channels, M = 3
    (1, 2, 6, 3, 1, 2, 7, 2, 3, 1, 1, -1, -10, 4, 9),      # most taps fall outside dy
]
LAYOUTS = ["nhwc", "nhwc_gaps", "nchw", "strided", "mixed"]


def _view(a, layout, role):
    """A float32 copy of the NHWC array ``a`` as a logical-NHWC view of ``layout`` (NaN in the
    gaps). mixed: dy NHWC, dx NCHW."""
    n, h, w, c = a.shape
    if layout == "mixed":
        layout = "nhwc" if role == "dy" else "nchw"
    if layout == "nhwc":
        return np.array(a, np.float32)
    if layout == "nhwc_gaps":  # channels contiguous, pixels further apart
        b = np.full((n, h, w, c + 3), np.nan, np.float32)[..., 1:1 + c]
    elif layout == "nchw":
        b = np.full((n, c, h, w), np.nan, np.float32).transpose(0, 2, 3, 1)
    else:  # strided: neither channels nor columns contiguous
        b = np.full((n, c, h, 2 * w), np.nan, np.float32)[..., ::2].transpose(0, 2, 3, 1)
    b[...] = a
    return b


def _inputs(case, seed=0):
    n, oh, ow, c, m, kh, kw = case[:7]
    rng = np.random.default_rng(seed + sum(case))
    dy = rng.standard_normal((n, oh, ow, c * m)).astype(np.float32)
    w = rng.standard_normal((kh, kw, c * m)).astype(np.float32)
    return dy, w


def _geometry(case):
    n, oh, ow, c, m, kh, kw, sh, sw, dh, dw, pt, pl, h, wd = case
    return (n, h, wd, c), (sh, sw), (dh, dw), (pt, pl)


def _reference(dy, w, case):
    shape, st, dl, pd = _geometry(case)
    return conv2d_backprop_input_ref(dy.astype(np.float64), w[:, :, None, :], shape, st, dl, pd)


def _native_or_skip():
    nat = native.load()
    if nat is None or not nat.has_depthwise:
        pytest.skip(f"compiled kernel unavailable: {native.unavailable_reason()}")
    return nat


def _run_kernel(nat, dy, w, case, layout, ranges=None):
    shape, st, dl, pd = _geometry(case)
    src = _view(dy, layout, "dy")
    out = _view(np.full(shape, np.nan, np.float32), layout, "dx")
    run = nat.depthwise_plan(src, w, out, st, dl, pd)
    for r in ranges or [()]:
        run(*r)
    return np.asarray(out, np.float64)


def _assert_like_reference(got, ref, tol=1e-5):
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    fin = np.isfinite(ref)
    scale = max(1.0, float(np.abs(ref[fin]).max())) if fin.any() else 1.0
    np.testing.assert_allclose(got[fin], ref[fin], rtol=tol, atol=tol * scale)
    np.testing.assert_array_equal(got[np.isinf(ref)], ref[np.isinf(ref)])  # signs of inf


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CASES)
def test_kernel_matches_reference(case, layout):
    nat = _native_or_skip()
    dy, w = _inputs(case)
    _assert_like_reference(_run_kernel(nat, dy, w, case, layout), _reference(dy, w, case))


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "strided"])
def test_kernel_random_geometries(layout):
    """Seeded random geometries: strides up to 5 and 8/16/32, dilations, paddings of either sign,
    multipliers, widths below and above one vector."""
    nat = _native_or_skip()
    rng = np.random.default_rng({"nhwc": 1, "nchw": 2, "strided": 3}[layout])
    for _ in range(25):
        sw = int(rng.choice([1, 2, 3, 4, 5, 8, 16, 32]))
        case = (int(rng.integers(1, 3)), int(rng.integers(1, 5)), int(rng.integers(1, 9)),
                int(rng.integers(2, 11)), int(rng.choice([1, 1, 2, 3])), int(rng.integers(1, 5)),
                int(rng.integers(1, 2 * sw + 3)), int(rng.integers(1, 5)), sw,
                int(rng.choice([1, 1, 2])), int(rng.choice([1, 1, 2])), int(rng.integers(-3, 6)),
                int(rng.integers(-sw - 2, 2 * sw + 2)), int(rng.integers(1, 12)),
                int(rng.integers(1, 50)))
        dy, w = _inputs(case)
        _assert_like_reference(_run_kernel(nat, dy, w, case, layout), _reference(dy, w, case))


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "strided"])
def test_kernel_split_ranges_on_threads(layout):
    """Disjoint (image, row, channel) ranges, run at once on threads, write all of dx."""
    nat = _native_or_skip()
    case = (2, 5, 6, 11, 1, 4, 4, 2, 2, 1, 1, 1, 1, 10, 12)
    dy, w = _inputs(case)
    shape, st, dl, pd = _geometry(case)
    src = _view(dy, layout, "dy")
    out = _view(np.full(shape, np.nan, np.float32), layout, "dx")
    run = nat.depthwise_plan(src, w, out, st, dl, pd)
    ranges = [(i, i + 1, h0, min(10, h0 + 3), g0, min(11, g0 + 5))
              for i, h0, g0 in itertools.product(range(2), range(0, 10, 3), range(0, 11, 5))]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda r: run(*r), ranges))
    _assert_like_reference(np.asarray(out, np.float64), _reference(dy, w, case))


@pytest.mark.parametrize("nthreads", [1, 2, 3, 7, 100])
@pytest.mark.parametrize("layout", ["nhwc", "nchw", "strided"])
def test_kernel_task_list_on_parked_threads(layout, nthreads):
    """run.tasks: a list of disjoint ranges in one call on the library's own threads (more
    threads than tasks too), back to back, as the planner's lists and as single rows."""
    nat = _native_or_skip()
    case = (2, 5, 6, 11, 1, 4, 4, 2, 2, 1, 1, 1, 1, 10, 12)
    dy, w = _inputs(case)
    shape, st, dl, pd = _geometry(case)
    ref = _reference(dy, w, case)
    src = _view(dy, layout, "dy")
    for tasks in (conv_impl._depthwise_tasks(2, 10, 11, layout != "nhwc", nthreads),
                  [(i, i + 1, h0, h0 + 1, 0, 11) for i in range(2) for h0 in range(10)],
                  [(0, 2, 0, 10, 0, 11)]):
        out = _view(np.full(shape, np.nan, np.float32), layout, "dx")
        nat.depthwise_plan(src, w, out, st, dl, pd).tasks(tasks, nthreads)
        _assert_like_reference(np.asarray(out, np.float64), ref)


def test_kernel_task_list_reports_a_refused_item():
    nat = _native_or_skip()
    dy = np.zeros((1, 3, 3, 4), np.float32)
    w = np.zeros((2, 2, 4), np.float32)
    dx = np.zeros((1, 6, 6, 4), np.float32)
    run = nat.depthwise_plan(dy, w, dx, (2, 2), (1, 1), (0, 0))
    with pytest.raises(ValueError, match="refused"):
        run.tasks([(0, 1, 0, 3, 0, 4), (0, 1, 3, 9, 0, 4)], 2)  # rows beyond dx
    run.tasks([], 2)  # nothing to do


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "strided"])
@pytest.mark.parametrize("case", [CASES[1], CASES[2], CASES[5], CASES[6], CASES[12]])
def test_kernel_non_finite_like_direct_loop(case, layout):
    """inf/NaN at the first and last dy columns and in weights of taps that fall outside dy
    there: masked-off lanes must not leak them, real terms must carry them."""
    nat = _native_or_skip()
    dy, w = _inputs(case, seed=5)
    n, oh, ow = dy.shape[:3]
    dy[0, 0, 0, 0] = np.nan
    dy[-1, -1, -1, -1] = np.inf
    dy[0, oh // 2, ow - 1, dy.shape[3] // 2] = -np.inf
    w[0, 0, 1 % w.shape[2]] = np.inf
    w[-1, -1, 0] = np.nan
    w[w.shape[0] // 2, w.shape[1] - 1, -1] = -np.inf
    with np.errstate(invalid="ignore"):  # (inf - inf in the float64 reference: NaN, as wanted)
        ref = _reference(dy, w, case)
    _assert_like_reference(_run_kernel(nat, dy, w, case, layout), ref)


NCHW8_CASES = [  # (M = 1, dx columns contiguous: blocks of 8 channels, 8x8 transposes)
    (1, 9, 11, 3, 1, 3, 3, 2, 2, 1, 1, 1, 1, 18, 22),      # 3 channels (one partial block)
    (2, 8, 16, 8, 1, 3, 3, 2, 2, 1, 1, 1, 1, 16, 32),      # one full block, W % 8 == 0
    (1, 7, 13, 12, 1, 4, 4, 2, 2, 1, 1, 1, 1, 14, 26),     # 8 + 4 channels, W % 8 == 2
    (1, 6, 19, 21, 1, 5, 5, 1, 1, 1, 1, 2, 2, 6, 19),      # stride 1, 5x5, 8 + 8 + 5
    (1, 5, 10, 16, 1, 2, 5, 3, 3, 1, 1, 0, 2, 15, 29),     # stride 3, groups of 4 pixels
    (2, 4, 9, 13, 1, 5, 4, 4, 4, 1, 1, 2, 1, 17, 37),      # stride 4, W = 37
    (1, 6, 17, 9, 1, 1, 1, 2, 2, 1, 1, 0, 0, 12, 33),      # 1x1: dx columns without taps
    (1, 5, 12, 10, 1, 3, 3, 1, 2, 2, 3, 2, 3, 13, 25),     # dilated rows and columns
    (1, 3, 8, 11, 1, 3, 5, 2, 3, 1, 2, -1, -4, 4, 15),     # negative padding, dilated
    (1, 6, 14, 8, 1, 3, 2, 2, 1, 1, 1, 1, 0, 12, 13),      # sw = 1, W < dy width
]


@pytest.mark.parametrize("layout", ["nchw", "mixed"])
@pytest.mark.parametrize("case", NCHW8_CASES)
def test_kernel_nchw_channel_blocks(case, layout):
    """The 8-channel path: channel counts not a multiple of 8, widths with and without full
    8-column groups, strides 1-4, kernels 1-5, dilations; whole and as split (image, row,
    channel) ranges whose channel ranges start off the 8-channel grid, run last to first (a
    write past a range's rows or channels would overwrite a finished one)."""
    nat = _native_or_skip()
    dy, w = _inputs(case, seed=7)
    ref = _reference(dy, w, case)
    _assert_like_reference(_run_kernel(nat, dy, w, case, layout), ref)
    n, h, c = case[0], case[13], case[3]
    ranges = [(i, i + 1, h0, min(h, h0 + 5), g0, min(c, g0 + 5))
              for i, h0, g0 in itertools.product(range(n), range(0, h, 5), range(0, c, 5))]
    _assert_like_reference(_run_kernel(nat, dy, w, case, layout, ranges[::-1]), ref)


@pytest.mark.parametrize("case", [(1, 20, 300, 10, 1, 3, 3, 2, 2, 1, 1, 1, 1, 40, 601),
                                  (1, 40, 300, 10, 1, 3, 3, 1, 1, 1, 1, 1, 1, 40, 300)])
def test_kernel_nchw_row_blocks(case):
    """Rows wide enough that the staged dy rows of a call come in several row blocks (rows
    read by two blocks are staged for each), also from a range of rows: stride 2 (the plane
    path) and stride 1 (the 8-channel path)."""
    nat = _native_or_skip()
    dy, w = _inputs(case, seed=8)
    ref = _reference(dy, w, case)
    _assert_like_reference(_run_kernel(nat, dy, w, case, "nchw"), ref)
    _assert_like_reference(_run_kernel(nat, dy, w, case, "nchw", [(0, 1, 0, 17, 0, 10),
                                                                   (0, 1, 17, 40, 0, 10)]), ref)


PLANES_CASES = [  # (M = 1, dx columns contiguous, column stride 2, kernels <= 4 wide: planes)
    (1, 9, 11, 3, 1, 3, 3, 2, 2, 1, 1, 1, 1, 18, 22),      # 3x3: a pair and a single plane
    (2, 8, 16, 8, 1, 4, 4, 2, 2, 1, 1, 1, 1, 16, 32),      # 4x4, W a multiple of 16
    (1, 7, 13, 5, 1, 2, 2, 2, 2, 1, 1, 0, 0, 14, 26),      # 2x2: one tap per phase
    (1, 6, 9, 4, 1, 1, 1, 2, 2, 1, 1, 0, 0, 12, 17),       # 1x1: a phase and rows without taps
    (1, 5, 4, 6, 1, 2, 4, 1, 2, 1, 1, 0, 2, 6, 9),         # row stride 1, W = 9
    (1, 4, 8, 3, 1, 3, 3, 2, 2, 1, 1, -1, -3, 6, 13),      # negative padding
    (1, 3, 5, 3, 1, 4, 3, 2, 2, 1, 1, 3, 7, 5, 7),         # padding beyond the kernel, W < 8
    (1, 4, 6, 2, 1, 3, 4, 2, 2, 1, 1, 1, 1, 7, 14),        # odd pad rows/columns of 4 wide
    (1, 5, 7, 3, 1, 3, 1, 2, 2, 1, 1, 1, 1, 9, 13),        # 3x1, odd padding: phase 0 empty
    (2, 8, 8, 3, 1, 3, 3, 2, 2, 1, 1, 1, 1, 16, 16),       # W = 16: runs of 8 rows, one vector
    (1, 16, 16, 5, 1, 3, 3, 2, 2, 1, 1, 1, 1, 32, 32),     # W = 32 (3x3 s2 p1 op1): runs of 16
    (1, 11, 12, 2, 1, 4, 4, 2, 2, 1, 1, 2, 1, 20, 24),     # W = 24, runs broken at the edges
    (1, 9, 3, 3, 1, 2, 3, 2, 2, 1, 1, 0, 1, 18, 5),        # W = 5: runs of one masked vector
    (1, 10, 32, 3, 1, 4, 4, 2, 2, 1, 1, 1, 1, 20, 64),     # W = 64: 4 vectors as constants
]


@pytest.mark.parametrize("layout", ["nchw", "mixed"])
@pytest.mark.parametrize("case", PLANES_CASES)
def test_kernel_nchw_planes(case, layout):
    """The plane path (two planes at a time, the column phases interleaved): whole and as
    split (image, row, channel) ranges, then with inf/NaN inside and at the row ends of dy and
    a non-finite weight in the second plane of a pair (that plane runs the generic kernel, the
    one before it alone)."""
    nat = _native_or_skip()
    dy, w = _inputs(case, seed=13)
    _check_whole_and_split(nat, dy, w, case, layout, 5, 3)
    n, oh, ow, c = dy.shape
    dy[0, 0, 0, 0] = np.nan
    dy[-1, oh // 2, ow - 1, c - 1] = np.inf
    dy[0, oh - 1, ow // 2, c // 2] = -np.inf
    w[-1, 0, 1] = np.inf
    _check_whole_and_split(nat, dy, w, case, layout, 3, 2)


@pytest.mark.parametrize("case", [(1, 700, 16, 3, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1400, 32),
                                  (1, 1100, 8, 2, 1, 4, 4, 2, 2, 1, 1, 1, 1, 2200, 16)])
def test_kernel_nchw_planes_runs_across_row_blocks(case):
    """Maps tall enough that a call stages dy in several row blocks: the runs of rows that
    share a setup stop at a block's end (a run crossing one would read the next block's rows
    from the last one's staging), also from ranges of rows starting mid-run."""
    nat = _native_or_skip()
    dy, w = _inputs(case, seed=21)
    ref = _reference(dy, w, case)
    _assert_like_reference(_run_kernel(nat, dy, w, case, "nchw"), ref)
    h = case[13]
    ranges = [(0, 1, h0, min(h, h0 + 333), 0, case[3]) for h0 in range(0, h, 333)]
    _assert_like_reference(_run_kernel(nat, dy, w, case, "nchw", ranges[::-1]), ref)


def test_kernel_nchw_non_finite_inside_blocks():
    """inf/NaN inside full 8x8 transposed blocks of dy, and a non-finite weight in the second
    block of channels only (that block runs the generic kernel, the others the 8-channel one)."""
    nat = _native_or_skip()
    case = NCHW8_CASES[3]
    dy, w = _inputs(case, seed=9)
    dy[0, 2, 3, 4], dy[0, 4, 9, 6], dy[0, 5, 16, 20] = np.nan, np.inf, -np.inf
    w[1, 2, 10] = np.inf
    with np.errstate(invalid="ignore"):
        ref = _reference(dy, w, case)
    for layout in ("nchw", "mixed"):
        _assert_like_reference(_run_kernel(nat, dy, w, case, layout), ref)


@pytest.fixture(scope="module")
def portable(tmp_path_factory):
    """The library built without -march=native (the kernel's scalar and generic paths)."""
    cc = native._compiler()
    if cc is None:
        pytest.skip("no C compiler")
    path = tmp_path_factory.mktemp("portable") / "conv.so"
    rc, err = native._run_compiler(native.compile_command(cc, native._FLAGS, path),
                                   native.build_timeout())
    if rc != 0:
        pytest.skip(f"portable build failed: {err[-300:]}")
    return native.NativeConv(ctypes.CDLL(str(path)))


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "strided"])
def test_portable_build_matches_reference(portable, layout):
    for case in CASES:
        dy, w = _inputs(case, seed=2)
        if case is CASES[5]:
            dy[0, 0, 0, 0], w[0, 0, 0] = np.nan, np.inf
        _assert_like_reference(_run_kernel(portable, dy, w, case, layout),
                               _reference(dy, w, case))


def test_plan_rejects_bad_operands():
    nat = _native_or_skip()
    dy = np.zeros((1, 3, 3, 4), np.float32)
    w = np.zeros((2, 2, 4), np.float32)
    dx = np.zeros((1, 6, 6, 4), np.float32)
    args = ((2, 2), (1, 1), (0, 0))
    with pytest.raises(ValueError, match="shapes"):
        nat.depthwise_plan(dy, w[..., :3], dx, *args)
    with pytest.raises(ValueError, match="shapes"):
        nat.depthwise_plan(dy, w, dx[..., :3], *args)
    with pytest.raises(ValueError, match="float32"):
        nat.depthwise_plan(dy.astype(np.float64), w, dx, *args)
    with pytest.raises(ValueError, match="last axis"):
        nat.depthwise_plan(dy, np.zeros((2, 2, 8), np.float32)[..., ::2], dx, *args)
    ro = dx.copy()
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        nat.depthwise_plan(dy, w, ro, *args)
    with pytest.raises(ValueError, match=">= 1"):
        nat.depthwise_plan(dy, w, dx, (0, 2), (1, 1), (0, 0))
    run = nat.depthwise_plan(dy, w, dx, *args)
    with pytest.raises(ValueError, match="refused"):
        run(0, 2, 0, 6, 0, 4)  # images beyond dx
    # with a block cached for these shapes, bad operands are still refused
    with pytest.raises(ValueError, match="read-only"):
        nat.depthwise_plan(dy, w, ro, *args)
    with pytest.raises(ValueError, match="float32"):
        nat.depthwise_plan(dy.astype(np.int32), w, dx, *args)  # (same strides, another dtype)


@pytest.mark.parametrize("by_channel", [True, False])
@pytest.mark.parametrize("n,h,c,nt", [(1, 128, 21, 2), (8, 64, 128, 2), (1, 5, 2, 2),
                                      (3, 7, 9, 4), (64, 2, 3, 2), (2, 1, 2, 2), (1, 9, 5, 1)])
def test_depthwise_tasks_partition_dx(n, h, c, by_channel, nt):
    seen = np.zeros((n, h, c), int)
    for n0, n1, h0, h1, g0, g1 in conv_impl._depthwise_tasks(n, h, c, by_channel, nt):
        seen[n0:n1, h0:h1, g0:g1] += 1
        assert not by_channel or g0 % 8 == 0  # whole blocks of the 8-channel kernel
    assert (seen == 1).all()


# ------------------------------------------------------------------------------------------
# through conv2d_backprop_input
# ------------------------------------------------------------------------------------------
@pytest.fixture(params=["native", "native-threads", "numpy"])
def engine(request, monkeypatch):
    if request.param == "numpy":
        monkeypatch.setattr(conv_impl, "USE_NATIVE", False)
    else:
        _native_or_skip()
    if request.param == "native-threads":  # every problem split into tasks on 2 threads
        monkeypatch.setattr(conv_impl, "NUM_THREADS", 2)
        monkeypatch.setattr(conv_impl, "DEPTHWISE_PARALLEL_MIN", 0)
    return request.param


def _call(dy, w, case, fmt):
    shape, st, dl, pd = _geometry(case)
    if fmt == "NCHW":
        dy = np.ascontiguousarray(dy.transpose(0, 3, 1, 2))
        shape = (shape[0], shape[3], shape[1], shape[2])
    out = conv_impl.conv2d_backprop_input(dy, w[:, :, None, :], shape, st, dl, pd, fmt)
    return out if fmt == "NHWC" else out.transpose(0, 2, 3, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[4], CASES[6], CASES[7], CASES[10]])
def test_backprop_input_depthwise(engine, case, fmt, dtype):
    dy, w = _inputs(case, seed=3)
    dy, w = dy.astype(dtype), w.astype(dtype)
    got = _call(dy, w, case, fmt)
    assert got.dtype == dtype and got.shape == _geometry(case)[0]
    tol = {np.float16: 2e-2, np.float32: 1e-5, np.float64: 1e-12}[dtype]
    ref = _reference(dy, w, case)
    np.testing.assert_allclose(got.astype(np.float64), ref, rtol=tol,
                               atol=tol * max(1.0, float(np.abs(ref).max())))


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
def test_backprop_input_depthwise_non_finite(engine, fmt):
    case = CASES[1]
    dy, w = _inputs(case, seed=4)
    dy[0, 0, -1, 2], w[2, 0, 5] = np.nan, -np.inf
    _assert_like_reference(_call(dy, w, case, fmt).astype(np.float64), _reference(dy, w, case))


def test_backprop_input_depthwise_batch1_threads(monkeypatch):
    """Batch 1 split over 2 threads by rows (NHWC) and by channel blocks and rows (NCHW)."""
    _native_or_skip()
    monkeypatch.setattr(conv_impl, "NUM_THREADS", 2)
    case = (1, 16, 16, 21, 1, 4, 4, 2, 2, 1, 1, 1, 1, 32, 32)
    dy, w = _inputs(case, seed=6)
    ref = _reference(dy, w, case)
    for fmt in ("NHWC", "NCHW"):
        np.testing.assert_allclose(_call(dy, w, case, fmt), ref, rtol=1e-5, atol=1e-5)


NHWC_MANY_CASES = [  # (M = 1, channels contiguous, more than 32 channels: column order)
    (1, 5, 7, 36, 1, 3, 3, 2, 2, 1, 1, 1, 1, 10, 14),      # 32 + 4 channels
    (1, 4, 6, 130, 1, 4, 4, 2, 2, 1, 1, 1, 1, 8, 12),      # 130: partial last vector
    (2, 6, 5, 40, 1, 5, 5, 1, 1, 1, 1, 2, 2, 6, 5),        # stride 1, 5x5
    (1, 4, 9, 44, 1, 2, 5, 3, 3, 1, 1, 0, 2, 12, 27),      # stride 3
    (1, 3, 7, 52, 1, 5, 4, 4, 4, 1, 1, 2, 1, 12, 28),      # stride 4
    (1, 5, 8, 33, 1, 1, 1, 2, 2, 1, 1, 0, 0, 10, 16),      # 1x1: dx columns without taps
    (1, 5, 9, 48, 1, 3, 3, 1, 2, 2, 3, 2, 3, 13, 19),      # dilated rows and columns
    (1, 3, 6, 37, 1, 3, 5, 2, 3, 1, 2, -1, -4, 4, 15),     # negative padding, dilated
    (1, 2, 3, 41, 1, 2, 3, 3, 2, 1, 2, 5, 9, 6, 8),        # padding beyond the kernel
    (2, 6, 6, 136, 1, 4, 4, 2, 2, 1, 1, 1, 1, 12, 12),     # 17 vectors per pixel
    (1, 8, 8, 130, 1, 3, 3, 2, 2, 1, 1, 1, 1, 16, 16),     # pixels not 32-byte aligned
]


def _check_whole_and_split(nat, dy, w, case, layout, rows, chans):
    """The kernel against the direct loop on the whole problem and on (image, rows of
    ``rows``, channels of ``chans``) ranges; returns (reference, ranges)."""
    with np.errstate(invalid="ignore"):
        ref = _reference(dy, w, case)
    _assert_like_reference(_run_kernel(nat, dy, w, case, layout), ref)
    n, c, h = dy.shape[0], case[3], case[13]
    ranges = [(i, i + 1, h0, min(h, h0 + rows), g0, min(c, g0 + chans))
              for i in range(n) for h0 in range(0, h, rows) for g0 in range(0, c, chans)]
    _assert_like_reference(_run_kernel(nat, dy, w, case, layout, ranges), ref)
    return ref, ranges


@pytest.mark.parametrize("layout", ["nhwc", "nhwc_gaps"])
@pytest.mark.parametrize("case", NHWC_MANY_CASES)
def test_kernel_nhwc_many_channels(case, layout):
    """The channels-contiguous path with many channels: whole, as split (image, row, channel)
    ranges (channel ranges starting off a vector), and with inf/NaN at the row ends."""
    nat = _native_or_skip()
    dy, w = _inputs(case, seed=7)
    n, oh, ow, c = dy.shape
    dy[0, 0, 0, 0] = np.nan
    dy[-1, -1, -1, -1] = np.inf
    dy[0, oh // 2, ow - 1, c // 2] = -np.inf
    w[0, 0, 1] = np.inf
    w[-1, -1, c - 2] = np.nan
    ref, ranges = _check_whole_and_split(nat, dy, w, case, layout, 5, 45)
    if layout == "nhwc":  # dx 64-byte aligned (numpy's buffers are 16-byte aligned)
        shape, st, dl, pd = _geometry(case)
        size = int(np.prod(shape))
        buf = np.full(size + 16, np.nan, np.float32)
        skip = (-buf.ctypes.data % 64) // 4
        out = buf[skip:skip + size].reshape(shape)
        run = nat.depthwise_plan(np.array(dy), w, out, st, dl, pd)
        for r in [()] + ranges:
            run(*r)
        _assert_like_reference(np.asarray(out, np.float64), ref)


# The sliding path (channels contiguous, one channel per group, column dilation 1, kernel
# width <= 4, column stride <= 2, at most 3 row taps per dx row, pixels under 256 floats):
# every (kernel width, column stride, row taps) instance, whole 16- and 8-channel blocks with
# a tail left to the pixel path, paddings that put dx columns before, after and far outside dy
SLIDE_CASES = [  # n, oh, ow, c, m, kh, kw, sh, sw, dh, dw, pt, pl, h, w
    (2, 5, 6, 16, 1, 3, 3, 2, 2, 1, 1, 1, 1, 10, 12),      # 3x3 s2: 1 or 2 row taps
    (1, 6, 7, 40, 1, 4, 4, 2, 2, 1, 1, 1, 1, 12, 14),      # 4x4 s2: 16 + 16 + 8 channels
    (1, 5, 5, 27, 1, 3, 3, 1, 1, 1, 1, 1, 1, 5, 5),        # 3x3 s1: 3 row taps, 3-channel tail
    (1, 4, 9, 24, 1, 5, 2, 2, 2, 1, 1, 2, 0, 8, 18),       # 5 rows at stride 2: 3 row taps
    (1, 4, 4, 8, 1, 1, 1, 2, 2, 1, 1, 0, 0, 8, 8),         # 1x1 s2: columns without taps
    (1, 3, 5, 32, 1, 2, 4, 1, 1, 3, 1, -1, -2, 4, 6),      # dilated rows, negative padding
    (1, 3, 4, 16, 1, 3, 3, 2, 2, 1, 1, 4, 6, 4, 5),        # padding beyond the kernel
    (1, 2, 9, 48, 1, 2, 2, 2, 1, 1, 1, 0, 0, 4, 10),       # stride 2 rows, 1 column
    (1, 4, 2, 16, 1, 3, 4, 2, 2, 1, 1, 1, -3, 8, 2),       # dx narrower than the kernel
    (2, 3, 3, 200, 1, 4, 3, 2, 2, 1, 1, 1, 1, 6, 6),       # 200 channels (just below 256)
]


@pytest.mark.parametrize("layout", ["nhwc", "nhwc_gaps"])
@pytest.mark.parametrize("case", SLIDE_CASES)
def test_kernel_nhwc_slide(case, layout):
    """Against the float64 direct loop: whole, on split (image, row, channel) ranges whose
    channel starts are off the 8-channel blocks, and with inf/NaN inside and at the row ends
    (a term the slide adds is a term of the sum, so they propagate as in a direct loop)."""
    nat = _native_or_skip()
    dy, w = _inputs(case, seed=11)
    _assert_like_reference(_run_kernel(nat, dy, w, case, layout), _reference(dy, w, case))
    n, oh, ow, c = dy.shape
    dy[0, 0, 0, 1] = np.nan
    dy[-1, oh // 2, ow // 2, c - 1] = np.inf
    dy[0, oh - 1, ow - 1, c // 2] = -np.inf
    w[-1, -1, 2] = np.inf
    _check_whole_and_split(nat, dy, w, case, layout, 3, 21)
