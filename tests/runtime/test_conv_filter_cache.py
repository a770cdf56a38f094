"""Constant filters of the conv ops are prepared once per kernel (conv_kernels' filter cache,
conv_impl's ``cache`` argument): results stay bitwise equal to the uncached path, and a filter
that can change between Runs (fed, writeable, a new variable value) is never served stale."""

import numpy as np
import pytest

import ops
from opgraph import DT_FLOAT, Scope
from runtime import ClientSession
from runtime.kernels.cpu import conv_impl, conv_kernels
from tests.reference import conv2d_backprop_input_ref, conv2d_forward_ref

rng = np.random.default_rng(77)


def _f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def _close(got, ref):
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * scale)


def _kernel(sess, name):
    return sess._placed[name][1]


# (x NHWC, filter HWIO, strides, padding): the native path (channels a multiple of 8), a
# grouped one, and few channels (numpy engines)
CASES = [((1, 8, 8, 16), (4, 4, 16, 32), 2, "SAME"),
         ((2, 7, 6, 8), (3, 3, 4, 8), 1, "VALID"),
         ((1, 9, 9, 3), (3, 2, 3, 5), 2, "SAME")]


def _graph(op_type, xs, fs, s, padding, wv, fmt="NHWC"):
    root = Scope.NewRootScope().ExitOnError()
    w = ops.Const(root.WithOpName("w"), wv)
    strides = [1, s, s, 1] if fmt == "NHWC" else [1, 1, s, s]
    kw = {"data_format": fmt} if fmt != "NHWC" else {}
    if fmt == "NCHW":
        xs = (xs[0], xs[3], xs[1], xs[2])
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, ops.Placeholder.Shape(list(xs)))
    if op_type == "Conv2D":
        out = ops.Conv2D(root.WithOpName("out"), x, w, strides, padding, **kw)
        return root, x, out
    dy = ops.Placeholder(root.WithOpName("dy"), DT_FLOAT)
    if op_type == "Conv2DBackpropInputV2":
        out = ops.Conv2DBackpropInputV2(root.WithOpName("out"), x, w, dy, strides, padding,
                                        **kw)
    else:
        out = ops.Conv2DBackpropInput(root.WithOpName("out"), list(xs), w, dy, strides,
                                      padding, **kw)
    return root, (x, dy), out


def _pads(xs, fs, s, padding):
    if padding == "VALID":
        return (0, 0), ((xs[1] - fs[0]) // s + 1, (xs[2] - fs[1]) // s + 1)
    out = (-(-xs[1] // s), -(-xs[2] // s))
    pt = max(0, (out[0] - 1) * s + fs[0] - xs[1]) // 2
    pl = max(0, (out[1] - 1) * s + fs[1] - xs[2]) // 2
    return (pt, pl), out


def _run_all(op_type, case, wv, runs=3):
    """Results of ``runs`` Runs with the cache and one without, plus the reference."""
    xs, fs, s, padding = case
    root, io, out = _graph(op_type, xs, fs, s, padding, wv)
    pads, out_hw = _pads(xs, fs, s, padding)
    xv = _f32(*xs)
    if op_type == "Conv2D":
        feeds = {io: xv}
        ref = conv2d_forward_ref(xv, wv, (s, s), (1, 1), pads, out_hw)
    else:
        x, dy = io
        dyv = _f32(xs[0], out_hw[0], out_hw[1], fs[3])
        feeds = {x: np.zeros(xs, np.float32), dy: dyv}
        ref = conv2d_backprop_input_ref(dyv, wv, xs, (s, s), (1, 1), pads)
    sess = ClientSession(root)
    got = [sess.Run(feeds, out) for _ in range(runs)]
    kernel = _kernel(sess, "out")
    old = conv_kernels.CACHE_FILTERS
    conv_kernels.CACHE_FILTERS = False
    try:
        plain = ClientSession(root).Run(feeds, out)
    finally:
        conv_kernels.CACHE_FILTERS = old
    return got, plain, ref, kernel


@pytest.mark.parametrize("op_type", ["Conv2DBackpropInputV2", "Conv2DBackpropInput", "Conv2D"])
@pytest.mark.parametrize("case", CASES)
def test_const_filter_cached_and_bitwise_equal(op_type, case):
    xs, fs, s, padding = case
    got, plain, ref, kernel = _run_all(op_type, case, _f32(*fs))
    entry = kernel._filter_entry
    assert entry is not None and entry[2], "a Const filter should be cached"
    for g in got:
        np.testing.assert_array_equal(g, plain)   # bitwise: the cache changes nothing
    _close(plain, ref)


def test_cached_prepared_weights_are_reused():
    case = CASES[0]
    xs, fs, s, padding = case
    root, (x, dy), out = _graph("Conv2DBackpropInputV2", *case, _f32(*fs))
    sess = ClientSession(root)
    feeds = {x: np.zeros(xs, np.float32), dy: _f32(1, 4, 4, fs[3])}
    sess.Run(feeds, out)
    cache = _kernel(sess, "out")._filter_entry[2]
    snapshot = {k: dict(v) for k, v in cache.items()}
    sess.Run(feeds, out)
    assert {k: dict(v) for k, v in cache.items()}.keys() == snapshot.keys()
    for key, memo in cache.items():
        for name, value in memo.items():
            assert snapshot[key][name] is value   # the same prepared objects, not rebuilt
            if isinstance(value, np.ndarray):
                assert not value.flags.writeable


def test_non_finite_const_filter():
    fs = CASES[0][1]
    wv = _f32(*fs)
    wv[1, 2, 3, 4] = np.inf
    for op_type in ("Conv2DBackpropInputV2", "Conv2D"):
        got, plain, _, _ = _run_all(op_type, CASES[0], wv)
        for g in got:
            np.testing.assert_array_equal(g, plain)


@pytest.mark.parametrize("op_type", ["Conv2DBackpropInputV2", "Conv2D"])
def test_fed_filters_never_hit_the_cache(op_type):
    xs, fs, s, padding = CASES[0]
    pads, out_hw = _pads(xs, fs, s, padding)
    root = Scope.NewRootScope().ExitOnError()
    w = ops.Placeholder(root.WithOpName("w"), DT_FLOAT, ops.Placeholder.Shape(list(fs)))
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, ops.Placeholder.Shape(list(xs)))
    dy = ops.Placeholder(root.WithOpName("dy"), DT_FLOAT)
    if op_type == "Conv2D":
        out = ops.Conv2D(root.WithOpName("out"), x, w, [1, s, s, 1], padding)
    else:
        out = ops.Conv2DBackpropInputV2(root.WithOpName("out"), x, w, dy, [1, s, s, 1],
                                        padding)
    ident = ops.Identity(root.WithOpName("wi"), w)   # a filter through another op
    out2 = (ops.Conv2D(root.WithOpName("out2"), x, ident, [1, s, s, 1], padding)
            if op_type == "Conv2D" else
            ops.Conv2DBackpropInputV2(root.WithOpName("out2"), x, ident, dy, [1, s, s, 1],
                                      padding))
    sess = ClientSession(root)
    xv, dyv = _f32(*xs), _f32(xs[0], out_hw[0], out_hw[1], fs[3])
    w1, w2 = _f32(*fs), _f32(*fs)
    w2_ro = w2.copy()
    w2_ro.setflags(write=False)      # read-only and fed: still a per-Run value
    for wv in (w1, w2, w2_ro, w1):
        a, b = sess.Run({w: wv, x: xv, dy: dyv}, [out, out2])
        if op_type == "Conv2D":
            ref = conv2d_forward_ref(xv, wv, (s, s), (1, 1), pads, out_hw)
        else:
            ref = conv2d_backprop_input_ref(dyv, wv, xs, (s, s), (1, 1), pads)
        _close(a, ref)
        _close(b, ref)
    assert _kernel(sess, "out")._filter_entry is None
    np.testing.assert_array_equal(w1, w1.copy())   # (nothing was written)


def test_variable_filter_follows_assignments():
    xs, fs, s, padding = CASES[0]
    pads, out_hw = _pads(xs, fs, s, padding)
    root = Scope.NewRootScope().ExitOnError()
    v = ops.Variable(root.WithOpName("w"), list(fs), DT_FLOAT)
    wp = ops.Placeholder(root.WithOpName("wp"), DT_FLOAT, ops.Placeholder.Shape(list(fs)))
    assign = ops.Assign(root.WithOpName("assign"), v, wp)
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, ops.Placeholder.Shape(list(xs)))
    dy = ops.Placeholder(root.WithOpName("dy"), DT_FLOAT)
    out = ops.Conv2DBackpropInputV2(root.WithOpName("out"), x, v, dy, [1, s, s, 1], padding)
    sess = ClientSession(root)
    xv, dyv = np.zeros(xs, np.float32), _f32(xs[0], out_hw[0], out_hw[1], fs[3])
    for _ in range(2):
        wv = _f32(*fs)
        sess.Run({wp: wv}, assign)
        for _ in range(2):
            got = sess.Run({x: xv, dy: dyv}, out)
            _close(got, conv2d_backprop_input_ref(dyv, wv, xs, (s, s), (1, 1), pads))


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("force", [(None, None), ("gather", "pm"), ("gather", "cf"),
                                   ("scatter", "pm"), ("scatter", "flat"), ("direct", None)])
def test_impl_cache_across_geometries(monkeypatch, native, force):
    """One cache dict, several input sizes, strides and engines: bitwise the uncached path."""
    monkeypatch.setattr(conv_impl, "USE_NATIVE", native)
    monkeypatch.setattr(conv_impl, "FORCE_ALGORITHM", force[0])
    monkeypatch.setattr(conv_impl, "FORCE_LAYOUT", force[1])
    w = _f32(3, 3, 8, 16)
    w.setflags(write=False)
    cache = {}
    for _ in range(2):
        for hw, s, pads in (((8, 8), 2, (1, 1)), ((9, 7), 2, (0, 1)), ((6, 6), 1, (1, 1)),
                            ((5, 5), 3, (2, 0))):
            shape = (2, hw[0], hw[1], 8)
            oh, ow = (hw[0] + 2 * pads[0] - 3) // s + 1, (hw[1] + 2 * pads[1] - 3) // s + 1
            dy = _f32(2, oh, ow, 16)
            args = (w, shape, (s, s), (1, 1), pads)
            want = conv_impl.conv2d_backprop_input(dy, *args)
            got = conv_impl.conv2d_backprop_input(dy, *args, cache=cache)
            np.testing.assert_array_equal(got, want)
            x = _f32(*shape)
            fargs = (w, (s, s), (1, 1), pads, (oh, ow))
            want = conv_impl.conv2d_forward(x, *fargs)
            got = conv_impl.conv2d_forward(x, *fargs, cache=cache)
            np.testing.assert_array_equal(got, want)
    assert cache


def test_impl_cache_is_bounded():
    w = _f32(3, 3, 8, 8)
    cache = {}
    for h in range(4, 4 + 3 * conv_impl.FILTER_CACHE_GEOMETRIES):
        x = _f32(1, h, h, 8)
        conv_impl.conv2d_forward(x, w, (1, 1), (1, 1), (1, 1), (h, h), cache=cache)
        assert len(cache) <= conv_impl.FILTER_CACHE_GEOMETRIES


def test_grouped_and_nchw_const_filter():
    for fmt in ("NHWC", "NCHW"):
        xs, fs, s, padding = (1, 6, 6, 16), (3, 3, 8, 16), 2, "SAME"   # groups = 2
        wv = _f32(*fs)
        root, (x, dy), out = _graph("Conv2DBackpropInputV2", xs, fs, s, padding, wv,
                                          fmt)
        pads, out_hw = _pads(xs, fs, s, padding)
        dyv = _f32(1, out_hw[0], out_hw[1], 16)
        xshape = xs if fmt == "NHWC" else (1, 16, 6, 6)
        dyf = dyv if fmt == "NHWC" else dyv.transpose(0, 3, 1, 2).copy()
        feeds = {x: np.zeros(xshape, np.float32), dy: dyf}
        sess = ClientSession(root)
        a, b = sess.Run(feeds, out), sess.Run(feeds, out)
        old = conv_kernels.CACHE_FILTERS
        conv_kernels.CACHE_FILTERS = False
        try:
            plain = ClientSession(root).Run(feeds, out)
        finally:
            conv_kernels.CACHE_FILTERS = old
        np.testing.assert_array_equal(a, plain)
        np.testing.assert_array_equal(b, plain)
        ref = conv2d_backprop_input_ref(dyf, wv, xshape, (s, s), (1, 1), pads, fmt)
        _close(plain, ref)
