"""The conv family written once over an array namespace (runtime/kernels/gpu/cupy_conv.py).

On the CPU the functions run with xp = numpy, so CI exercises the exact code a GPU runs;
the @pytest.mark.gpu test runs the same grid with cupy when CuPy and a CUDA device exist.
References: tests/reference.py's direct loops (and a direct loop here for the filter grad).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import ops
from opgraph import Scope, as_dtype
from opgraph.windows import conv_params
from runtime import ClientSession, devices
from runtime.kernels.gpu import cupy_conv, cupy_native
from tests import reference
from tests.gpu.fake_device import DeviceArray, FakeGpuBackend

DTYPES = (np.float16, np.float32, np.float64)
TOL = {np.float16: (1e-3, 1e-3), np.float32: (1e-5, 1e-5), np.float64: (1e-12, 1e-12)}


def _attrs(stride, dilation, padding, fmt):
    if fmt == "NHWC":
        strides, dilations = [1, stride, stride, 1], [1, dilation, dilation, 1]
        pads = [0, 0, 1, 2, 0, 1, 0, 0]
    else:
        strides, dilations = [1, 1, stride, stride], [1, 1, dilation, dilation]
        pads = [0, 0, 0, 0, 1, 2, 0, 1]
    return {"strides": strides, "dilations": dilations, "padding": padding,
            "data_format": fmt, "explicit_paddings": pads if padding == "EXPLICIT" else []}


def _case(stride, dilation, padding, groups, fmt, batch=2):
    """(params, pads, out_hw, x_shape, w_shape, dy_shape) of one grid point."""
    cig, cout = 2, 4
    attrs = _attrs(stride, dilation, padding, fmt)
    p = conv_params(attrs)
    h, wd, cin = 6, 7, cig * groups
    x_shape = (batch, h, wd, cin) if fmt == "NHWC" else (batch, cin, h, wd)
    w_shape = (3, 2, cig, cout)
    pads = p.pads_before((h, wd), w_shape[:2])
    out_hw = (p.out_size(0, h, w_shape[0]), p.out_size(1, wd, w_shape[1]))
    dy_shape = p.join(batch, out_hw[0], out_hw[1], cout).dims
    return p, pads, out_hw, x_shape, w_shape, tuple(dy_shape)


GRID = [pytest.param(*c, 2, id="-".join(map(str, c)))
        for c in itertools.product((1, 2), (1, 2), ("SAME", "VALID", "EXPLICIT"), (1, 2),
                                   ("NHWC", "NCHW"))]
EMPTY = [pytest.param(1, 1, "SAME", 1, "NHWC", 0, id="empty-batch-NHWC"),
         pytest.param(2, 2, "EXPLICIT", 2, "NCHW", 0, id="empty-batch-NCHW")]


def _filter_grad_ref(x, dy, filter_shape, strides, dilations, pads, fmt):
    """dw[di,dj,c,o] = sum over (b,i,j) inside x of x[b,hh,ww,g*cig+c] * dy[b,i,j,o]."""
    xs = np.asarray(x, np.float64)
    ds = np.asarray(dy, np.float64)
    if fmt == "NCHW":
        xs, ds = xs.transpose(0, 2, 3, 1), ds.transpose(0, 2, 3, 1)
    _, h, wd, cin = xs.shape
    _, oh, ow, _ = ds.shape
    kh, kw, cig, cout = filter_shape
    groups = cin // cig
    cog = cout // groups
    dw = np.zeros(filter_shape)
    for di, dj, i, j in itertools.product(range(kh), range(kw), range(oh), range(ow)):
        hh = i * strides[0] + di * dilations[0] - pads[0]
        ww = j * strides[1] + dj * dilations[1] - pads[1]
        if 0 <= hh < h and 0 <= ww < wd:
            for o in range(cout):
                g = o // cog
                dw[di, dj, :, o] += xs[:, hh, ww, g * cig:(g + 1) * cig].T @ ds[:, i, j, o]
    return dw


def _check_grid_point(xp, to_xp, case):
    p, pads, out_hw, x_shape, w_shape, dy_shape = case
    rng = np.random.default_rng(abs(hash((x_shape, w_shape, dy_shape, pads))) % 2**32)
    for dt in DTYPES:
        x = rng.uniform(-1, 1, x_shape).astype(dt)
        w = rng.uniform(-1, 1, w_shape).astype(dt)
        dy = rng.uniform(-1, 1, dy_shape).astype(dt)
        rtol, atol = TOL[dt]
        args = (p.strides, p.dilations, pads)
        got = cupy_conv.conv2d_forward(to_xp(x), to_xp(w), *args, out_hw, p.data_format,
                                       xp=xp)
        want = reference.conv2d_forward_ref(x, w, *args, out_hw, p.data_format)
        _same(got, want, dt, dy_shape, rtol, atol, "forward")
        got = cupy_conv.conv2d_backprop_input(to_xp(dy), to_xp(w), x_shape, *args,
                                              p.data_format, xp=xp)
        want = reference.conv2d_backprop_input_ref(dy, w, x_shape, *args, p.data_format)
        _same(got, want, dt, x_shape, rtol, atol, "backprop_input")
        got = cupy_conv.conv2d_backprop_filter(to_xp(x), to_xp(dy), w_shape, *args,
                                               p.data_format, xp=xp)
        want = _filter_grad_ref(x, dy, w_shape, *args, p.data_format)
        _same(got, want, dt, w_shape, rtol, atol, "backprop_filter")


def _same(got, want, dt, shape, rtol, atol, what):
    got = cupy_conv_to_numpy(got)
    assert got.dtype == np.dtype(dt) and got.shape == tuple(shape), what
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=rtol, atol=atol,
                               err_msg=f"{what} {np.dtype(dt).name}")


def cupy_conv_to_numpy(a):
    get = getattr(a, "get", None)
    return get() if callable(get) and not isinstance(a, np.ndarray) else np.asarray(a)


GEOMETRY = ("stride", "dilation", "padding", "groups", "fmt", "batch")


@pytest.mark.parametrize(GEOMETRY, GRID + EMPTY)
def test_grid_with_numpy(stride, dilation, padding, groups, fmt, batch):
    _check_grid_point(np, np.asarray, _case(stride, dilation, padding, groups, fmt, batch))


def test_filter_larger_than_input_and_empty_spatial_dims():
    x = np.ones((1, 2, 2, 3), np.float32)
    w = np.ones((5, 5, 3, 2), np.float32)
    # SAME: output 2x2, each tap window partially inside; VALID would be empty
    y = cupy_conv.conv2d_forward(x, w, (1, 1), (1, 1), (1, 1), (2, 2))
    np.testing.assert_allclose(y, reference.conv2d_forward_ref(x, w, (1, 1), (1, 1), (1, 1),
                                                               (2, 2)))
    y0 = cupy_conv.conv2d_forward(x, w, (1, 1), (1, 1), (0, 0), (0, 0))
    assert y0.shape == (1, 0, 0, 2) and y0.dtype == np.float32
    dx = cupy_conv.conv2d_backprop_input(y0, w, x.shape, (1, 1), (1, 1), (0, 0))
    assert dx.shape == x.shape and not dx.any()
    dw = cupy_conv.conv2d_backprop_filter(x, y0, w.shape, (1, 1), (1, 1), (0, 0))
    assert dw.shape == w.shape and not dw.any()


def test_tap_range_matches_brute_force():
    for offset, stride, out, size in itertools.product(range(-6, 7), (1, 2, 3), range(5),
                                                       range(5)):
        inside = [i for i in range(out) if 0 <= i * stride + offset < size]
        i0, i1 = cupy_conv.tap_range(offset, stride, out, size)
        assert list(range(i0, i1)) == inside, (offset, stride, out, size)


def test_integer_inputs_accumulate_in_int64_and_keep_int32():
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, (1, 4, 5, 2)).astype(np.int32)
    w = rng.integers(-3, 4, (2, 2, 2, 3)).astype(np.int32)
    y = cupy_conv.conv2d_forward(x, w, (1, 1), (1, 1), (0, 0), (3, 4))
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y, reference.conv2d_forward_ref(x, w, (1, 1), (1, 1),
                                                                  (0, 0), (3, 4)))


def test_the_native_table_has_the_conv_rows():
    rows = cupy_native.table()
    for op in cupy_conv.TABLE:
        assert rows[op] is cupy_conv.TABLE[op]


# --- the TABLE's factories inside a session, on the fake GPU ------------------------------
class _ConvFakeBackend(FakeGpuBackend):
    """The fake GPU with cupy_conv's rows in its native table (calls are counted)."""

    def __init__(self):
        super().__init__()
        self.conv_calls = []
        for op, factory in cupy_conv.TABLE.items():
            self.native[op] = self._conv_row(op, factory)

    def _conv_row(self, op, factory):
        def make(node, cpu_kernel):
            fn = factory(node, cpu_kernel)

            def run(*inputs):
                self.conv_calls.append(op)
                return np.asarray(fn(*inputs)).view(DeviceArray)
            return run
        return make


def _session_cases():
    rng = np.random.default_rng(1)
    f = np.float32
    for fmt in ("NHWC", "NCHW"):
        attrs = _attrs(2, 1, "SAME", fmt)
        p, pads, out_hw, x_shape, w_shape, dy_shape = _case(2, 1, "SAME", 2, fmt)
        x = rng.uniform(-1, 1, x_shape).astype(f)
        w = rng.uniform(-1, 1, w_shape).astype(f)
        dy = rng.uniform(-1, 1, dy_shape).astype(f)
        yield "Conv2D", (x, w), attrs
        yield "Conv2DBackpropInputV2", (x, w, dy), attrs
        yield "Conv2DBackpropInput", (np.array(x_shape, np.int32), w, dy), attrs
        yield "Conv2DBackpropFilterV2", (x, w, dy), attrs
        yield "Conv2DBackpropFilter", (x, np.array(w_shape, np.int32), dy), attrs


def _run_op(op_type, inputs, attrs):
    root = Scope.NewRootScope()
    feeds, args = {}, []
    for k, a in enumerate(inputs):
        if a.dtype == np.int32:
            args.append(ops.Const(root.WithOpName(f"c{k}"), a))
        else:
            ph = ops.Placeholder(root.WithOpName(f"p{k}"), as_dtype(a.dtype))
            feeds[ph.output] = a
            args.append(ph)
    out = getattr(ops, op_type)(root.WithOpName("op"), *args, **attrs)
    return ClientSession(root).Run(feeds, [out])[0]


@pytest.mark.parametrize(("op_type", "inputs", "attrs"), list(_session_cases()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_table_rows_in_a_session_on_the_fake_gpu(op_type, inputs, attrs):
    on_cpu = _run_op(op_type, inputs, attrs)
    with devices.use_gpu_backend(_ConvFakeBackend()) as backend:
        on_gpu = _run_op(op_type, inputs, attrs)
    assert backend.conv_calls == [op_type]
    assert backend.space_errors == []
    assert type(on_gpu) is np.ndarray and on_gpu.dtype == on_cpu.dtype
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-5, atol=1e-5)


# --- the same grid with cupy on a real GPU -------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize(GEOMETRY, GRID + EMPTY)
def test_grid_with_cupy_on_a_gpu(stride, dilation, padding, groups, fmt, batch):
    cp = pytest.importorskip("cupy")
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001  (no driver / no device)
        pytest.skip(f"no CUDA device: {type(e).__name__}: {e}")
    if not count:
        pytest.skip("no CUDA device")
    _check_grid_point(cp, cp.asarray, _case(stride, dilation, padding, groups, fmt, batch))
