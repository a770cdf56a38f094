"""Conv2DBackpropInputV2 through ClientSession against other libraries, when installed.

jax: the VJP of ``lax.conv_general_dilated`` (every feature: strides, dilations, explicit
pads, groups, both layouts). tensorflow: its own CPU kernel for the V1 op
``Conv2DBackpropInput`` (NHWC, no dilation, no groups: what TF's CPU kernel supports).
float32 throughout; tolerance 1e-4 of the result's scale (summation order differs).
"""

import os

import numpy as np
import pytest

import ops
from opgraph import DT_FLOAT, Scope
from opgraph.windows import windowed_output_size
from runtime import ClientSession

rng = np.random.default_rng(7)

# (x NHWC, filter HWIO, (sh, sw), (dh, dw), padding, explicit ((t, b), (l, r)))
CASES = [
    ((2, 9, 8, 4), (3, 3, 4, 6), (2, 2), (1, 1), "SAME", None),
    ((1, 10, 11, 3), (4, 2, 3, 5), (2, 3), (1, 1), "VALID", None),
    ((2, 7, 7, 4), (3, 3, 2, 6), (1, 1), (2, 2), "SAME", None),          # dilated, 2 groups
    ((1, 8, 9, 2), (3, 3, 2, 4), (2, 1), (1, 2), "EXPLICIT", ((1, 2), (0, 3))),
    ((3, 12, 12, 3), (7, 7, 3, 8), (2, 2), (1, 1), "SAME", None),
]


def _geometry(xs, fs, st, dl, padding, explicit):
    pads, out = [], []
    for a in (0, 1):
        before, after = explicit[a] if explicit else (0, 0)
        o, pb, pa = windowed_output_size(xs[1 + a], fs[a], st[a], dl[a], padding, before, after)
        pads.append((pb, pa))
        out.append(o)
    return pads, out


def _ours(xs, fs, st, dl, padding, explicit, fmt, wv, dyv):
    def order(v):   # [N, H, W, C]-ordered 4-list in data_format order
        return v if fmt == "NHWC" else [v[0], v[3], v[1], v[2]]

    root = Scope.NewRootScope().ExitOnError()
    x = ops.Placeholder(root, DT_FLOAT)
    w = ops.Placeholder(root, DT_FLOAT)
    dy = ops.Placeholder(root, DT_FLOAT)
    spatial = [] if explicit is None else [*explicit[0], *explicit[1]]   # t, b, l, r
    ep = [] if explicit is None else [0, 0, *spatial, 0, 0] if fmt == "NHWC" else \
        [0, 0, 0, 0, *spatial]
    dx = ops.Conv2DBackpropInputV2(
        root, x, w, dy, order([1, st[0], st[1], 1]), padding,
        ops.Conv2DBackpropInputV2.Attrs().Dilations(order([1, dl[0], dl[1], 1]))
        .DataFormat(fmt).ExplicitPaddings(ep))
    to_fmt = (lambda a: a) if fmt == "NHWC" else (lambda a: a.transpose(0, 3, 1, 2))
    out = ClientSession(root).Run({x: to_fmt(np.zeros(xs, np.float32)), w: wv,
                                   dy: to_fmt(dyv)}, dx)
    return out if fmt == "NHWC" else out.transpose(0, 2, 3, 1)


@pytest.mark.parametrize("fmt", ["NHWC", "NCHW"])
@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_matches_jax_vjp(case, fmt):
    jax = pytest.importorskip("jax")
    from jax import lax

    xs, fs, st, dl, padding, explicit = case
    pads, out = _geometry(*case)
    groups = xs[3] // fs[2]
    wv = rng.standard_normal(fs).astype(np.float32)
    dyv = rng.standard_normal((xs[0], *out, fs[3])).astype(np.float32)

    def conv(x):
        return lax.conv_general_dilated(x, wv, st, pads, rhs_dilation=dl,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=groups)

    _, vjp = jax.vjp(conv, np.zeros(xs, np.float32))
    (want,) = vjp(dyv)
    got = _ours(*case, fmt, wv, dyv)
    np.testing.assert_allclose(got, np.asarray(want), rtol=0,
                               atol=1e-4 * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("case", [c for c in CASES if c[3] == (1, 1)
                                  and c[0][3] == c[1][2]],
                         ids=lambda c: f"{c[4]}-s{c[2][0]}{c[2][1]}-k{c[1][0]}{c[1][1]}")
def test_matches_tensorflow_cpu_kernel(case):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = pytest.importorskip("tensorflow")

    xs, fs, st, dl, padding, explicit = case
    _, out = _geometry(*case)
    wv = rng.standard_normal(fs).astype(np.float32)
    dyv = rng.standard_normal((xs[0], *out, fs[3])).astype(np.float32)
    kwargs = {}
    if explicit is not None:
        kwargs["explicit_paddings"] = [0, 0, *explicit[0], *explicit[1], 0, 0]
    want = tf.raw_ops.Conv2DBackpropInput(
        input_sizes=list(xs), filter=wv, out_backprop=dyv, strides=[1, *st, 1],
        padding=padding, **kwargs).numpy()
    got = _ours(*case, "NHWC", wv, dyv)
    np.testing.assert_allclose(got, want, rtol=0,
                               atol=1e-4 * max(1.0, float(np.abs(want).max())))
