"""The conv family over an array namespace ``xp`` (numpy on the CPU, cupy on a GPU).

Each op is a sum of per-tap GEMMs: for filter tap (di, dj) only the output rows/columns
whose input position falls inside the image take part (taps that would read padding are
skipped, as in a direct loop), and that block is one batched ``xp.matmul`` over the groups.
On a GPU each matmul is a cuBLAS call, so this is the conv family without cuDNN (CuPy 14
dropped its cuDNN bindings). float16/bfloat16 are accumulated in float32 and rounded once;
int32 in int64 (wrapping back to int32 as the CPU kernel does).

Conventions are those of ``runtime.kernels.cpu.conv_impl``: HWIO filters
``[kh, kw, cin_per_group, cout]``, ``groups = C_in // cin_per_group``, input row
``i*sh + di*dh - pad_top`` for output row ``i`` and tap ``di``. The geometry (pads before,
TF's asymmetric SAME) comes from ``opgraph.windows.conv_params`` in the table's factories.

CuPy is never imported here: the namespace is found from the arguments, so CI runs this
exact code with numpy.
"""

from __future__ import annotations

import numpy as np

from opgraph.windows import conv_params
from runtime.array_namespace import array_namespace
from runtime.memory import check_allocation

__all__ = ["TABLE", "conv2d_forward", "conv2d_backprop_input", "conv2d_backprop_filter",
           "compute_dtype", "tap_range"]


def compute_dtype(dtype) -> np.dtype:
    """The accumulation dtype: float32 for 16-bit floats, int64 for integers."""
    dt = np.dtype(dtype)
    if dt == np.float64:
        return dt
    if dt.kind == "f" or dt.name == "bfloat16":
        return np.dtype(np.float32)
    if dt.kind in "iub":
        return np.dtype(np.int64)
    return dt


def tap_range(offset: int, stride: int, out_size: int, in_size: int) -> tuple[int, int]:
    """[i0, i1): the outputs ``i`` with ``0 <= i*stride + offset < in_size`` (may be empty)."""
    i0 = (-offset + stride - 1) // stride if offset < 0 else 0
    i1 = min(out_size, (in_size - 1 - offset) // stride + 1)
    return i0, max(i0, i1)


def _nhwc(a, data_format):
    return a if data_format == "NHWC" else a.transpose(0, 2, 3, 1)


def _from_nhwc(a, data_format, xp):
    return a if data_format == "NHWC" else xp.ascontiguousarray(a.transpose(0, 3, 1, 2))


def _taps(kh, kw, strides, dilations, pads, out_hw, in_hw):
    """(di, dj, (i0, i1), (j0, j1), (r0, c0)) for every tap that reads inside the input:
    outputs [i0, i1) x [j0, j1) read input rows r0, r0+sh, ... and columns c0, c0+sw, ..."""
    (sh, sw), (dh, dw), (pt, pl) = strides, dilations, pads
    (oh, ow), (h, wd) = out_hw, in_hw
    for di in range(kh):
        i0, i1 = tap_range(di * dh - pt, sh, oh, h)
        if i0 >= i1:
            continue
        for dj in range(kw):
            j0, j1 = tap_range(dj * dw - pl, sw, ow, wd)
            if j0 >= j1:
                continue
            yield di, dj, (i0, i1), (j0, j1), (i0 * sh + di * dh - pt, j0 * sw + dj * dw - pl)


def _window(a, rows, cols, r0, c0, strides):
    """a[:, r0::sh, c0::sw] limited to ``rows`` x ``cols`` positions (a view)."""
    sh, sw = strides
    return a[:, r0:r0 + (rows - 1) * sh + 1:sh, c0:c0 + (cols - 1) * sw + 1:sw]


def _split_groups(a2d, groups):
    """[M, groups*k] -> [groups, M, k] (a view when possible)."""
    m, c = a2d.shape
    return a2d.reshape(m, groups, c // groups).transpose(1, 0, 2)


def _merge_groups(g3d):
    """[groups, M, k] -> [M, groups*k]."""
    groups, m, k = g3d.shape
    return g3d.transpose(1, 0, 2).reshape(m, groups * k)


def _groups(cin, cig):
    return cin // cig if cig > 0 else 1


def conv2d_forward(x, w, strides, dilations, pads_before, out_hw, data_format="NHWC",
                   xp=None):
    """y = conv2d(x, w) with x in ``data_format`` and w HWIO; dtype of x, layout of x."""
    xp = xp or array_namespace(x, w)
    odt = x.dtype
    cdt = compute_dtype(odt)
    xv = _nhwc(x, data_format)
    n, h, wd, cin = xv.shape
    kh, kw, cig, cout = w.shape
    oh, ow = int(out_hw[0]), int(out_hw[1])
    groups = _groups(cin, cig)
    cog = cout // groups if groups else 0
    acc = xp.zeros((n, oh, ow, cout), cdt)
    if acc.size and cin and cig:
        xc = xv.astype(cdt, copy=False)
        wc = w.astype(cdt, copy=False)
        for di, dj, (i0, i1), (j0, j1), (r0, c0) in _taps(kh, kw, strides, dilations,
                                                           pads_before, (oh, ow), (h, wd)):
            ni, nj = i1 - i0, j1 - j0
            xs = _window(xc, ni, nj, r0, c0, strides).reshape(n * ni * nj, cin)
            wt = wc[di, dj]                                         # [cig, cout]
            if groups == 1:
                part = xp.matmul(xs, wt)
            else:
                wg = wt.reshape(cig, groups, cog).transpose(1, 0, 2)  # [G, cig, cog]
                part = _merge_groups(xp.matmul(_split_groups(xs, groups), wg))
            acc[:, i0:i1, j0:j1, :] += part.reshape(n, ni, nj, cout)
    return _from_nhwc(acc.astype(odt, copy=False), data_format, xp)


def conv2d_backprop_input(dy, w, input_shape, strides, dilations, pads_before,
                          data_format="NHWC", xp=None):
    """dx, the adjoint of conv2d_forward in x; shape ``input_shape``, dtype of dy."""
    xp = xp or array_namespace(dy, w)
    odt = dy.dtype
    cdt = compute_dtype(odt)
    input_shape = tuple(int(v) for v in input_shape)
    if data_format == "NHWC":
        n, h, wd, cin = input_shape
    else:
        n, cin, h, wd = input_shape
    dyv = _nhwc(dy, data_format)
    _, oh, ow, cout = dyv.shape
    kh, kw, cig, _ = w.shape
    groups = _groups(cin, cig)
    cog = cout // groups if groups else 0
    acc = xp.zeros((n, h, wd, cin), cdt)
    if acc.size and cout and oh and ow:
        dyc = dyv.astype(cdt, copy=False)
        wc = w.astype(cdt, copy=False)
        for di, dj, (i0, i1), (j0, j1), (r0, c0) in _taps(kh, kw, strides, dilations,
                                                           pads_before, (oh, ow), (h, wd)):
            ni, nj = i1 - i0, j1 - j0
            g = dyc[:, i0:i1, j0:j1, :].reshape(n * ni * nj, cout)
            wt = wc[di, dj]                                         # [cig, cout]
            if groups == 1:
                part = xp.matmul(g, wt.T)
            else:
                wg = wt.reshape(cig, groups, cog).transpose(1, 2, 0)  # [G, cog, cig]
                part = _merge_groups(xp.matmul(_split_groups(g, groups), wg))
            _window(acc, ni, nj, r0, c0, strides)[...] += part.reshape(n, ni, nj, cin)
    return _from_nhwc(acc.astype(odt, copy=False), data_format, xp)


def conv2d_backprop_filter(x, dy, filter_shape, strides, dilations, pads_before,
                           data_format="NHWC", xp=None):
    """dw, the adjoint of conv2d_forward in w; HWIO ``filter_shape``, dtype of x."""
    xp = xp or array_namespace(x, dy)
    odt = x.dtype
    cdt = compute_dtype(odt)
    kh, kw, cig, cout = (int(v) for v in filter_shape)
    xv, dyv = _nhwc(x, data_format), _nhwc(dy, data_format)
    n, h, wd, cin = xv.shape
    _, oh, ow, _ = dyv.shape
    groups = _groups(cin, cig)
    acc = xp.zeros((kh, kw, cig, cout), cdt)
    if acc.size and n and oh and ow:
        xc = xv.astype(cdt, copy=False)
        dyc = dyv.astype(cdt, copy=False)
        for di, dj, (i0, i1), (j0, j1), (r0, c0) in _taps(kh, kw, strides, dilations,
                                                           pads_before, (oh, ow), (h, wd)):
            ni, nj = i1 - i0, j1 - j0
            m = n * ni * nj
            xs = _window(xc, ni, nj, r0, c0, strides).reshape(m, cin)
            g = dyc[:, i0:i1, j0:j1, :].reshape(m, cout)
            if groups == 1:
                acc[di, dj] = xp.matmul(xs.T, g)
            else:
                xg = _split_groups(xs, groups).transpose(0, 2, 1)      # [G, cig, M]
                part = xp.matmul(xg, _split_groups(g, groups))        # [G, cig, cog]
                acc[di, dj] = part.transpose(1, 0, 2).reshape(cig, cout)
    return acc.astype(odt, copy=False)


# --------------------------------------------------------------------------------------------
# the CuPy native table: op type -> factory(node, cpu_kernel) -> fn(*inputs)
# --------------------------------------------------------------------------------------------
def _conv2d(node, cpu_kernel):
    p = conv_params(node.attrs)

    def run(x, w):
        n, h, wd, _ = p.split(x.shape)
        kh, kw, _, out_depth = w.shape
        out_h, out_w = p.out_size(0, h, kh), p.out_size(1, wd, kw)
        check_allocation(p.join(n, out_h, out_w, out_depth).dims, x.dtype.itemsize,
                         "Conv2D output")
        pads = p.pads_before((h, wd), (kh, kw))
        return conv2d_forward(x, w, p.strides, p.dilations, pads, (out_h, out_w),
                              p.data_format)
    return run


def _backprop_input(node, p, input_shape, w, dy):
    check_allocation(input_shape, dy.dtype.itemsize, f"{node.type} output")
    _, h, wd, _ = p.split(input_shape)
    pads = p.pads_before((h, wd), w.shape[:2])
    return conv2d_backprop_input(dy, w, tuple(input_shape), p.strides, p.dilations, pads,
                                 p.data_format)


def _conv2d_backprop_input_v2(node, cpu_kernel):
    p = conv_params(node.attrs)
    return lambda x, w, dy: _backprop_input(node, p, tuple(x.shape), w, dy)


def _conv2d_backprop_input(node, cpu_kernel):
    p = conv_params(node.attrs)

    def run(input_sizes, w, dy):
        sizes = [int(v) for v in np.asarray(_host(input_sizes)).ravel()]
        if len(sizes) == 2:   # [H, W]: batch from out_backprop, depth from the filter
            n = p.split(dy.shape)[0]
            sizes = list(p.join(n, sizes[0], sizes[1], w.shape[2]).dims)
        return _backprop_input(node, p, sizes, w, dy)
    return run


def _backprop_filter(node, p, x, filter_shape, dy):
    check_allocation(filter_shape, x.dtype.itemsize, f"{node.type} output")
    _, h, wd, _ = p.split(x.shape)
    pads = p.pads_before((h, wd), tuple(filter_shape[:2]))
    return conv2d_backprop_filter(x, dy, tuple(filter_shape), p.strides, p.dilations, pads,
                                  p.data_format)


def _conv2d_backprop_filter_v2(node, cpu_kernel):
    p = conv_params(node.attrs)
    return lambda x, w, dy: _backprop_filter(node, p, x, tuple(w.shape), dy)


def _conv2d_backprop_filter(node, cpu_kernel):
    p = conv_params(node.attrs)

    def run(x, filter_sizes, dy):
        sizes = [int(v) for v in np.asarray(_host(filter_sizes)).ravel()]
        return _backprop_filter(node, p, x, sizes, dy)
    return run


def _host(a):
    """A small shape vector as a host array (int32 tensors are host memory already)."""
    get = getattr(a, "get", None)
    return get() if callable(get) and not isinstance(a, np.ndarray) else a


TABLE = {
    "Conv2D": _conv2d,
    "Conv2DBackpropInputV2": _conv2d_backprop_input_v2,
    "Conv2DBackpropInput": _conv2d_backprop_input,
    "Conv2DBackpropFilterV2": _conv2d_backprop_filter_v2,
    "Conv2DBackpropFilter": _conv2d_backprop_filter,
}
