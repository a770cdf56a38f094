"""Bounds of the convolution kernels: empty filters, temporaries bounded by the work, and
strides beyond INT_MAX on real memory.

* Conv2D refuses a filter with a zero dimension (TF's Conv2D kernel: "filter must not have zero
  elements"), at build time from known shapes and at run time from unknown ones, with the same
  message; Conv2DBackpropInputV2 keeps giving zeros for an empty filter (TF's kernel does not
  refuse it).
* Huge dilations, paddings, strides and zero-stride (broadcast) operands run in a fresh
  interpreter under an address-space limit (RLIMIT_AS 3 GiB, OPGRAPH_MAX_ALLOCATION_BYTES
  512 MiB): each case must return the right values within seconds or raise
  ResourceExhaustedError - never a plain MemoryError, a crash or a hang. Expected values are
  computed here from the constant inputs (no loop over a huge filter).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ops
from opgraph import DT_FLOAT, Scope, errors
from runtime import ClientSession
from runtime.kernels.cpu import conv_impl, native
from tests.reference import conv2d_backprop_input_ref, conv2d_forward_ref

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAT = native.load()


# ---------------------------------------------------------------------------------------------
# empty filters (the op's shape function)
# ---------------------------------------------------------------------------------------------
EMPTY_MSG = "filter must not have zero elements (i.e. all dimensions must be non-zero)"


@pytest.mark.parametrize("fshape, dim", [((0, 3, 2, 3), "filter_height"),
                                         ((3, 0, 2, 3), "filter_width"),
                                         ((1, 1, 2, 0), "out_depth")])
@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_conv2d_refuses_a_zero_element_filter(fshape, dim, padding):
    x = np.ones((1, 4, 4, 2), np.float32)
    w = np.ones(fshape, np.float32)
    static = Scope.NewRootScope()
    ops.Conv2D(static, ops.Const(static, x), ops.Const(static, w), [1, 1, 1, 1], padding)
    assert not static.ok()
    build_msg = static.status().errors[0].message.split(" for node")[0]
    assert EMPTY_MSG in build_msg and dim in build_msg
    root = Scope.NewRootScope()
    px, pw = ops.Placeholder(root, DT_FLOAT), ops.Placeholder(root, DT_FLOAT)
    y = ops.Conv2D(root.WithOpName("y"), px, pw, [1, 1, 1, 1], padding)
    assert root.ok()
    with pytest.raises(errors.InvalidArgumentError) as info:
        ClientSession(root).Run({px: x, pw: w}, y)
    assert build_msg in str(info.value)


def test_conv2d_backprop_input_v2_keeps_zeros_for_an_empty_filter():
    root = Scope.NewRootScope().ExitOnError()
    x = ops.Const(root, np.ones((1, 4, 4, 2), np.float32))
    w = ops.Const(root, np.ones((0, 3, 2, 3), np.float32))
    dy = ops.Const(root, np.ones((1, 4, 4, 3), np.float32))
    dx = ops.Conv2DBackpropInputV2(root, x, w, dy, [1, 1, 1, 1], "SAME")
    out = ClientSession(root).Run({}, dx)
    assert out.shape == (1, 4, 4, 2) and not out.any()


# ---------------------------------------------------------------------------------------------
# temporaries bounded by the work, under an address-space limit
# ---------------------------------------------------------------------------------------------
_SCRIPT = textwrap.dedent(r'''
    import json, resource, sys, time
    import numpy as np
    from opgraph import errors
    from runtime.kernels.cpu import conv_impl, native
    from tests.reference import conv2d_forward_ref, conv2d_backprop_input_ref
    nat = native.load()
    VW = nat.vector_width if nat is not None else 16
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    BIG = 2**32 + 64
    const = lambda v, shape, dt=np.float32: np.broadcast_to(np.array(v, dt), shape)
    ones = lambda shape, dt=np.float32: const(1, shape, dt)

    def fwd(x, w, s, d, p, out):
        return conv_impl.conv2d_forward(x, w, s, d, p, out)

    def bwd(dy, w, xs, s, d, p):
        return conv_impl.conv2d_backprop_input(dy, w, xs, s, d, p)

    def dilated(dil):
        rng = np.random.default_rng(1)
        x = rng.standard_normal((1, 8, 8, 16)).astype(np.float32)
        w = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
        a = ((1, 1), (dil, dil), (dil, dil))
        yield fwd(x, w, *a, (8, 8)), conv2d_forward_ref(x, w, *a, (8, 8))
        yield bwd(x, w, x.shape, *a), conv2d_backprop_input_ref(x, w, x.shape, *a)

    def filter_4tib_mostly_padding():
        # 2^16 x 2^16 taps x 16 x 16 channels (4 TiB as float32), SAME on a 4x4 image: each
        # output reads every input position through exactly one tap
        rng = np.random.default_rng(2)
        x = rng.standard_normal((2, 4, 4, 16)).astype(np.float32)
        w = const(0.5, (2**16, 2**16, 16, 16))
        p = ((2**16 - 1) // 2, (2**16 - 1) // 2)
        want = 0.5 * x.astype(np.float64).sum(axis=(1, 2, 3))[:, None, None, None]
        yield fwd(x, w, (1, 1), (1, 1), p, (4, 4)), np.broadcast_to(want, (2, 4, 4, 16))
        yield bwd(x, w, x.shape, (1, 1), (1, 1), p), np.broadcast_to(want, (2, 4, 4, 16))

    def filter_4tib_all_used():
        # every tap and channel is needed: refused (ResourceExhaustedError), never materialised
        yield fwd(ones((1, 1, 1, 2**20)), ones((1, 1, 2**20, 2**20)), (1, 1), (1, 1), (0, 0),
                  (1, 1)), None

    def wide_zero_stride(dt):
        # a zero-stride image 2^32 + 64 pixels wide, stride 2^31 - 1: 3 outputs
        y = fwd(ones((1, 1, BIG, 16), dt), np.full((1, 1, 16, VW), 0.5, dt), (1, 2**31 - 1),
                (1, 1), (0, 0), (1, 3))
        yield y, np.full((1, 1, 3, VW), 8.0)

    def dilated_wide():
        y = fwd(ones((1, 1, BIG, 16)), np.full((1, 2, 16, VW), 0.5, np.float32), (1, 1),
                (1, BIG - 1), (0, 0), (1, 1))
        yield y, np.full((1, 1, 1, VW), 16.0)

    def backprop_huge_pads():
        pad = 2**31 + 32
        dy = const(2, (1, 1, 2 * pad + 1, VW))
        yield bwd(dy, np.full((1, 1, 16, VW), 0.25, np.float32), (1, 1, 1, 16), (1, 1),
                  (1, 1), (0, pad)), np.full((1, 1, 1, 16), 0.5 * VW)

    def sparse_window():
        # 2^20 x 2^20 zero-stride image, stride 2^19, 3x3 taps, padding 1: 2x2 outputs that
        # read 2 or 3 rows (columns) each; a zero-bordered window would span the image
        y = fwd(ones((1, 2**20, 2**20, 4)), np.ones((3, 3, 4, VW), np.float32),
                (2**19, 2**19), (1, 1), (1, 1), (2, 2))
        cnt = np.array([2.0, 3.0])
        yield y, np.broadcast_to((4 * cnt[:, None] * cnt[None, :])[None, :, :, None],
                                 (1, 2, 2, VW))

    CASES = {"dilation_2048": lambda: dilated(2048), "dilation_2^20": lambda: dilated(2**20),
             "filter_4TiB_mostly_padding": filter_4tib_mostly_padding,
             "filter_4TiB_all_used": filter_4tib_all_used,
             "wide_zero_stride_f32": lambda: wide_zero_stride(np.float32),
             "wide_zero_stride_f16": lambda: wide_zero_stride(np.float16),
             "dilated_wide": dilated_wide, "backprop_huge_pads": backprop_huge_pads,
             "sparse_window": sparse_window}
    out = {}
    for algo in (None, "native", "gather", "scatter", "direct"):
        conv_impl.FORCE_ALGORITHM = algo
        for name, case in CASES.items():
            rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t0 = time.perf_counter()
            try:
                status = "ok"
                for got, want in case():
                    if want is not None and not np.allclose(got.astype(np.float64), want,
                                                            rtol=1e-4, atol=1e-3):
                        status = "wrong"
            except errors.ResourceExhaustedError as e:
                status = "ResourceExhaustedError: " + str(e)[:120]
            except BaseException as e:
                status = f"{type(e).__name__}: {str(e)[:200]}"
            grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
            out[f"{name}/{algo}"] = [status, time.perf_counter() - t0, grew * 1024]
    print("RESULTS " + json.dumps(out))
''')


@pytest.fixture(scope="module")
def bounded_results():
    env = dict(os.environ, OPGRAPH_MAX_ALLOCATION_BYTES=str(512 << 20),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"rc {proc.returncode}: {proc.stderr[-3000:]}"
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")][-1]
    return json.loads(line[len("RESULTS "):])


MUST_COMPUTE = ["dilation_2048", "dilation_2^20", "filter_4TiB_mostly_padding",
                "wide_zero_stride_f32", "wide_zero_stride_f16", "dilated_wide",
                "backprop_huge_pads", "sparse_window"]


@pytest.mark.parametrize("algo", ["None", "native", "gather", "scatter", "direct"])
@pytest.mark.parametrize("case", MUST_COMPUTE + ["filter_4TiB_all_used"])
def test_bounded_under_address_space_limit(bounded_results, case, algo):
    status, seconds, grew = bounded_results[f"{case}/{algo}"]
    if case == "filter_4TiB_all_used":
        assert status.startswith("ResourceExhaustedError"), status
    else:
        assert status == "ok", status
    assert seconds < 20, seconds
    if case == "dilation_2048":  # an 8 KiB result: no GiB of padded temporaries
        assert grew < 128 << 20, f"peak memory grew by {grew / 2**20:.0f} MiB"


# ---------------------------------------------------------------------------------------------
# strides beyond INT_MAX elements on real (lazily allocated) memory
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("surface", ["native", "gather", "direct", None])
def test_batch_stride_beyond_int_max_elements(surface):
    if surface == "native" and NAT is None:
        pytest.skip("no compiled kernel")
    try:  # 8 GiB of address space; only the few pages written are ever touched
        base = np.zeros(2**31 + 4096, np.float32)
    except MemoryError:
        pytest.skip("cannot reserve 8 GiB of address space")
    c = NAT.vector_width if NAT is not None else 16
    rng = np.random.default_rng(3)
    x = np.lib.stride_tricks.as_strided(base, shape=(2, 3, 5, c),
                                        strides=(4 * (2**31 + 7), 4 * 5 * c, 4 * c, 4))
    x[...] = rng.standard_normal(x.shape).astype(np.float32)
    w = rng.standard_normal((2, 2, c, c)).astype(np.float32)
    conv_impl.FORCE_ALGORITHM = surface
    try:
        y = conv_impl.conv2d_forward(x, w, (1, 1), (1, 1), (1, 0), (3, 4))
        np.testing.assert_allclose(y, conv2d_forward_ref(np.array(x), w, (1, 1), (1, 1),
                                                         (1, 0), (3, 4)), rtol=1e-5, atol=1e-4)
        dx = conv_impl.conv2d_backprop_input(x[:, :, :4], w, (2, 4, 5, c), (1, 1), (1, 1),
                                             (1, 0))
        np.testing.assert_allclose(dx, conv2d_backprop_input_ref(
            np.array(x[:, :, :4]), w, (2, 4, 5, c), (1, 1), (1, 1), (1, 0)), rtol=1e-5,
            atol=1e-4)
    finally:
        conv_impl.FORCE_ALGORITHM = None
