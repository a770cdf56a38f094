"""CPU kernels of DepthwiseConv2dNative and its backward ops, through ``conv_impl``.

A depthwise filter ``[kh, kw, C, m]`` is the grouped-conv filter ``[kh, kw, 1, C * m]`` with
C groups: group c owns output channels ``c * m .. c * m + m - 1``, which is TF's order. The
forward op is a grouped ``conv2d_forward``, the input gradient a grouped
``conv2d_backprop_input`` (its exact adjoint). The filter gradient is one einsum per filter
tap (kh * kw of them) over a strided view of the zero-padded input: tap (di, dj) of output
pixel (i, j) reads input pixel (i*sh + di*dh - pad_top, j*sw + dj*dw - pad_left).
"""

from __future__ import annotations

import numpy as np

from opgraph.windows import conv_params
from runtime.kernel_registry import Kernel, register_kernel
from runtime.kernels.cpu import conv_impl
from runtime.memory import check_allocation


class _DepthwiseKernel(Kernel):
    def __init__(self, node):
        super().__init__(node)
        self.params = conv_params(node.attrs)


@register_kernel("DepthwiseConv2dNative")
class DepthwiseConv2dNativeCpu(_DepthwiseKernel):
    def compute(self, x, w):
        p = self.params
        n, h, wd, depth = p.split(x.shape)
        kh, kw, _, multiplier = w.shape
        out_h, out_w = p.out_size(0, h, kh), p.out_size(1, wd, kw)
        check_allocation(p.join(n, out_h, out_w, depth * multiplier).dims, x.dtype.itemsize,
                         "DepthwiseConv2dNative output")
        pads = p.pads_before((h, wd), (kh, kw))
        grouped = w.reshape(kh, kw, 1, depth * multiplier)
        return conv_impl.conv2d_forward(x, grouped, p.strides, p.dilations, pads,
                                        (out_h, out_w), p.data_format)


@register_kernel("DepthwiseConv2dNativeBackpropInput")
class DepthwiseConv2dNativeBackpropInputCpu(_DepthwiseKernel):
    def compute(self, input_sizes, w, dy):
        p = self.params
        input_shape = tuple(int(v) for v in input_sizes)
        _, h, wd, depth = p.split(input_shape)
        kh, kw, _, multiplier = w.shape
        check_allocation(input_shape, dy.dtype.itemsize, "DepthwiseConv2dNativeBackpropInput "
                         "output")
        if 0 in input_shape or dy.size == 0 or w.size == 0:
            return np.zeros(input_shape, dy.dtype)
        pads = p.pads_before((h, wd), (kh, kw))
        grouped = w.reshape(kh, kw, 1, depth * multiplier)
        return conv_impl.conv2d_backprop_input(dy, grouped, input_shape, p.strides,
                                               p.dilations, pads, p.data_format)


def _nhwc(a, data_format):
    return a if data_format == "NHWC" else a.transpose(0, 2, 3, 1)


@register_kernel("DepthwiseConv2dNativeBackpropFilter")
class DepthwiseConv2dNativeBackpropFilterCpu(_DepthwiseKernel):
    def compute(self, x, filter_sizes, dy):
        p = self.params
        kh, kw, depth, multiplier = (int(v) for v in filter_sizes)
        out_dtype = dy.dtype
        check_allocation((kh, kw, depth, multiplier), 8, "DepthwiseConv2dNativeBackpropFilter "
                         "output")
        acc = np.float64 if out_dtype == np.float64 else np.float32
        dw = np.zeros((kh, kw, depth, multiplier), acc)
        xv, dyv = _nhwc(x, p.data_format), _nhwc(dy, p.data_format)
        n, h, wd, _ = xv.shape
        _, oh, ow, _ = dyv.shape
        if dw.size and x.size and dy.size:
            (sh, sw), (dh, dwl) = p.strides, p.dilations
            pt, pl = p.pads_before((h, wd), (kh, kw))
            rows = max(pt + h, (oh - 1) * sh + (kh - 1) * dh + 1)
            cols = max(pl + wd, (ow - 1) * sw + (kw - 1) * dwl + 1)
            check_allocation((n, rows, cols, depth), np.dtype(acc).itemsize,
                             "DepthwiseConv2dNativeBackpropFilter padded input")
            xp = np.zeros((n, rows, cols, depth), acc)
            xp[:, pt:pt + h, pl:pl + wd] = xv
            check_allocation(dyv.shape, np.dtype(acc).itemsize,
                             "DepthwiseConv2dNativeBackpropFilter out_backprop copy")
            g = dyv.astype(acc).reshape(n, oh, ow, depth, multiplier)
            for di in range(kh):
                r0 = di * dh
                for dj in range(kw):
                    c0 = dj * dwl
                    tap = xp[:, r0:r0 + (oh - 1) * sh + 1:sh, c0:c0 + (ow - 1) * sw + 1:sw]
                    dw[di, dj] = np.einsum("nijc,nijcq->cq", tap, g)
        return dw.astype(out_dtype)
