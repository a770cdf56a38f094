"""CPU kernels of the convolution ops; the math is in ``conv_impl``.

The kernels run after the op's shape function has validated the actual shapes (the executor
re-runs it whenever the static shapes were not fully known), so here only the geometry is
derived and the output size guarded before anything is allocated.
"""

from __future__ import annotations

from opgraph.dtypes import DT_BFLOAT16, DT_DOUBLE, DT_FLOAT, DT_HALF, DT_INT32
from opgraph.windows import conv_params
from runtime.kernel_registry import Kernel, register_kernel
from runtime.kernels.cpu import conv_impl
from runtime.memory import check_allocation

CONV_TYPES = {"T": (DT_HALF, DT_BFLOAT16, DT_FLOAT, DT_DOUBLE, DT_INT32)}
FILTER_GRAD_TYPES = {"T": (DT_HALF, DT_BFLOAT16, DT_FLOAT, DT_DOUBLE)}


class _ConvKernel(Kernel):
    def __init__(self, node):
        super().__init__(node)
        self.params = conv_params(node.attrs)

    def _backprop_input(self, input_shape, w, dy):
        p = self.params
        check_allocation(input_shape, dy.dtype.itemsize, f"{self.node.type} output")
        _, h, wd, _ = p.split(input_shape)
        pads = p.pads_before((h, wd), w.shape[:2])
        return conv_impl.conv2d_backprop_input(dy, w, tuple(input_shape), p.strides,
                                               p.dilations, pads, p.data_format)

    def _backprop_filter(self, x, filter_shape, dy):
        p = self.params
        check_allocation(filter_shape, x.dtype.itemsize, f"{self.node.type} output")
        _, h, wd, _ = p.split(x.shape)
        pads = p.pads_before((h, wd), filter_shape[:2])
        return conv_impl.conv2d_backprop_filter(x, dy, tuple(filter_shape), p.strides,
                                                p.dilations, pads, p.data_format)


@register_kernel("Conv2D", "CPU", CONV_TYPES)
class Conv2DCpu(_ConvKernel):
    def compute(self, x, w):
        p = self.params
        n, h, wd, _ = p.split(x.shape)
        kh, kw, _, out_depth = w.shape
        out_h, out_w = p.out_size(0, h, kh), p.out_size(1, wd, kw)
        check_allocation(p.join(n, out_h, out_w, out_depth).dims, x.dtype.itemsize,
                         "Conv2D output")
        pads = p.pads_before((h, wd), (kh, kw))
        return conv_impl.conv2d_forward(x, w, p.strides, p.dilations, pads, (out_h, out_w),
                                        p.data_format)


@register_kernel("Conv2DBackpropInputV2", "CPU", CONV_TYPES)
class Conv2DBackpropInputV2Cpu(_ConvKernel):
    def compute(self, x, w, dy):
        return self._backprop_input(x.shape, w, dy)


@register_kernel("Conv2DBackpropInput", "CPU", CONV_TYPES)
class Conv2DBackpropInputCpu(_ConvKernel):
    def compute(self, input_sizes, w, dy):
        sizes = [int(v) for v in input_sizes.ravel()]
        if len(sizes) == 2:   # [H, W]: batch from out_backprop, depth from the filter
            n = self.params.split(dy.shape)[0]
            sizes = list(self.params.join(n, sizes[0], sizes[1], w.shape[2]).dims)
        return self._backprop_input(sizes, w, dy)


@register_kernel("Conv2DBackpropFilterV2", "CPU", FILTER_GRAD_TYPES)
class Conv2DBackpropFilterV2Cpu(_ConvKernel):
    def compute(self, x, w, dy):
        return self._backprop_filter(x, w.shape, dy)


@register_kernel("Conv2DBackpropFilter", "CPU", FILTER_GRAD_TYPES)
class Conv2DBackpropFilterCpu(_ConvKernel):
    def compute(self, x, filter_sizes, dy):
        return self._backprop_filter(x, [int(v) for v in filter_sizes.ravel()], dy)
