"""Slow, obviously-correct references for the convolution kernels.

Written independently of ``runtime.kernels.cpu.conv_impl``: plain loops over output
positions and filter taps, computed in float64 (int64 for integer inputs). Only meant
for the tiny shapes used in tests.

Conventions (shared with conv_impl): the filter is HWIO ``[kh, kw, cin_per_group, cout]``;
``groups = C_in // cin_per_group``; output channel ``o`` belongs to group
``o // (cout // groups)`` and reads input channels ``g*cin_per_group ... (g+1)*cin_per_group-1``.
Input row ``h`` read by output row ``i`` and tap ``di`` is ``i*sh + di*dh - pad_top``; rows
outside ``[0, H)`` read zero (so padding after is implicit).
"""

from __future__ import annotations

import numpy as np


def _acc_dtype(dtype):
    return np.int64 if np.issubdtype(np.dtype(dtype), np.integer) else np.float64


def _to_nhwc(a, data_format):
    a = np.asarray(a)
    return a if data_format == "NHWC" else a.transpose(0, 2, 3, 1)


def _from_nhwc(a, data_format):
    return a if data_format == "NHWC" else a.transpose(0, 3, 1, 2)


def conv2d_forward_ref(x, w, strides, dilations, pads_before, out_hw, data_format="NHWC"):
    """y[b,i,j,o] = sum_{di,dj,c} x[b, i*sh+di*dh-pt, j*sw+dj*dw-pl, g*cig+c] * w[di,dj,c,o].

    Returns float64 (int64 for integer x) in ``data_format`` layout.
    """
    acc = _acc_dtype(np.asarray(x).dtype)
    xs = _to_nhwc(x, data_format).astype(acc)
    wf = np.asarray(w).astype(acc)
    n, h, wd, cin = xs.shape
    kh, kw, cig, cout = wf.shape
    oh, ow = out_hw
    sh, sw = strides
    dh, dw = dilations
    pt, pl = pads_before
    groups = cin // cig if cig else 1
    cog = cout // groups if groups else 0
    y = np.zeros((n, oh, ow, cout), acc)
    for i in range(oh):
        for j in range(ow):
            for di in range(kh):
                hh = i * sh + di * dh - pt
                if not 0 <= hh < h:
                    continue
                for dj in range(kw):
                    ww = j * sw + dj * dw - pl
                    if not 0 <= ww < wd:
                        continue
                    for g in range(groups):
                        xin = xs[:, hh, ww, g * cig:(g + 1) * cig]  # [n, cig]
                        wt = wf[di, dj, :, g * cog:(g + 1) * cog]  # [cig, cog]
                        y[:, i, j, g * cog:(g + 1) * cog] += xin @ wt
    return _from_nhwc(y, data_format)


def conv2d_backprop_input_ref(dy, w, input_shape, strides, dilations, pads_before,
                              data_format="NHWC"):
    """dx[b,h,w,c] = sum over (i,j,di,dj,o) with h == i*sh+di*dh-pt, w == j*sw+dj*dw-pl of
    w[di,dj,c_in_group,o] * dy[b,i,j,o], o restricted to c's group.

    Returns float64 (int64 for integer dy) with shape ``input_shape``.
    """
    acc = _acc_dtype(np.asarray(dy).dtype)
    dys = _to_nhwc(dy, data_format).astype(acc)
    wf = np.asarray(w).astype(acc)
    if data_format == "NHWC":
        n, h, wd, cin = input_shape
    else:
        n, cin, h, wd = input_shape
    _, oh, ow, cout = dys.shape
    kh, kw, cig, _ = wf.shape
    sh, sw = strides
    dh, dw = dilations
    pt, pl = pads_before
    groups = cin // cig if cig else 1
    cog = cout // groups if groups else 0
    dx = np.zeros((n, h, wd, cin), acc)
    for i in range(oh):
        for j in range(ow):
            for di in range(kh):
                hh = i * sh + di * dh - pt
                if not 0 <= hh < h:
                    continue
                for dj in range(kw):
                    ww = j * sw + dj * dw - pl
                    if not 0 <= ww < wd:
                        continue
                    for g in range(groups):
                        g_dy = dys[:, i, j, g * cog:(g + 1) * cog]  # [n, cog]
                        wt = wf[di, dj, :, g * cog:(g + 1) * cog]  # [cig, cog]
                        dx[:, hh, ww, g * cig:(g + 1) * cig] += g_dy @ wt.T
    return _from_nhwc(dx, data_format)


def tf_same_padding(in_size, k, s, d):
    """TF SAME: (out, pad_before, pad_after) for one spatial dim."""
    out = -(-in_size // s)
    eff = (k - 1) * d + 1
    total = max((out - 1) * s + eff - in_size, 0)
    return out, total // 2, total - total // 2


def valid_out(in_size, k, s, d, pad_before=0, pad_after=0):
    """Output size for explicit padding (VALID when both pads are 0); may be 0."""
    eff = (k - 1) * d + 1
    span = in_size + pad_before + pad_after - eff
    return max(span // s + 1, 0) if span >= 0 else 0
