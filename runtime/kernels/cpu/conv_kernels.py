"""CPU kernels of the convolution ops; the math is in ``conv_impl``.

The kernels run after the op's shape function has validated the actual shapes (the executor
re-runs it whenever the static shapes were not fully known), so here only the geometry is
derived and the output size guarded before anything is allocated.

Filters that are constants (a Const, a constant-folded value, an unchanged variable: the
runtime hands those out as the same read-only array every Run) are prepared once: the kernel
keeps a cache dict for the last such filter array and conv_impl keeps the rearranged and
packed weights there. Any other filter (writeable, a different array, a fed placeholder) is
prepared afresh on every call.
"""

from __future__ import annotations

import numpy as np

from opgraph.dtypes import DT_BFLOAT16, DT_DOUBLE, DT_FLOAT, DT_HALF, DT_INT32
from opgraph.windows import conv_params
from runtime.kernel_registry import Kernel, register_kernel
from runtime.kernels.cpu import conv_impl
from runtime.memory import check_allocation

CONV_TYPES = {"T": (DT_HALF, DT_BFLOAT16, DT_FLOAT, DT_DOUBLE, DT_INT32)}
FILTER_GRAD_TYPES = {"T": (DT_HALF, DT_BFLOAT16, DT_FLOAT, DT_DOUBLE)}

#: Keep the prepared forms of constant filters between Runs (False: prepare every call).
CACHE_FILTERS = True

#: Ops whose output is a value fed per Run: a filter from them is never cached.
_FED_OPS = ("Placeholder", "PlaceholderWithDefault", "PlaceholderV2")


class _ConvKernel(Kernel):
    def __init__(self, node):
        super().__init__(node)
        self.params = conv_params(node.attrs)
        inputs = getattr(node, "inputs", ())
        self._filter_cacheable = len(inputs) > 1 and inputs[1].op.type not in _FED_OPS
        self._filter_entry = None   # (filter array, its signature, cache dict)

    def _filter_cache(self, w):
        """The cache dict of filter ``w`` when it is an immutable constant (the same
        read-only array as last time, or a new one: then it replaces the old), else None."""
        if not (CACHE_FILTERS and self._filter_cacheable and isinstance(w, np.ndarray)):
            return None
        if w.flags.writeable or (w.base is not None and _writeable_base(w)):
            return None
        entry = self._filter_entry
        # (the same object keeps its data pointer and dtype; only its shape or strides could
        # have been set in place)
        if entry is not None and entry[0] is w and entry[1][:2] == (w.shape, w.strides):
            return entry[2]
        sig = (w.shape, w.strides, w.dtype.str, w.__array_interface__["data"][0])
        cache = {}
        # (the entry holds the array, so its id cannot be reused by another one meanwhile)
        self._filter_entry = (w, sig, cache)
        return cache

    def _backprop_input(self, input_shape, w, dy):
        p = self.params
        check_allocation(input_shape, dy.dtype.itemsize, f"{self.node.type} output")
        _, h, wd, _ = p.split(input_shape)
        pads = p.pads_before((h, wd), w.shape[:2])
        return conv_impl.conv2d_backprop_input(dy, w, tuple(input_shape), p.strides,
                                               p.dilations, pads, p.data_format,
                                               cache=self._filter_cache(w))

    def _backprop_filter(self, x, filter_shape, dy):
        p = self.params
        check_allocation(filter_shape, x.dtype.itemsize, f"{self.node.type} output")
        _, h, wd, _ = p.split(x.shape)
        pads = p.pads_before((h, wd), filter_shape[:2])
        return conv_impl.conv2d_backprop_filter(x, dy, tuple(filter_shape), p.strides,
                                                p.dilations, pads, p.data_format)


def _writeable_base(a):
    """True when some array ``a`` views is writeable (it could change under ``a``)."""
    base = a.base
    while isinstance(base, np.ndarray):
        if base.flags.writeable:
            return True
        base = base.base
    return base is not None and not isinstance(base, (bytes, np.ndarray))


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
                                        p.data_format, cache=self._filter_cache(w))


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
