"""CPU kernels of the array ops."""

from __future__ import annotations

import numpy as np

from opgraph import errors
from opgraph.dtypes import ALL_TYPES
from runtime.executor import unfed_placeholder_error
from runtime.kernel_registry import Kernel, register_kernel

_ANY = {"T": ALL_TYPES}


@register_kernel("Const", "CPU", {"dtype": ALL_TYPES})
class ConstCpu(Kernel):
    def __init__(self, node):
        super().__init__(node)
        value = node.attrs["value"]
        self.value = value if not value.flags.writeable else value.copy()
        self.value.setflags(write=False)   # fetched results must not alias-mutate the graph

    def compute(self):
        return self.value


@register_kernel("Placeholder", "CPU", {"dtype": ALL_TYPES})
class PlaceholderCpu(Kernel):
    foldable = False

    def compute(self):   # the executor refuses unfed placeholders before running; defensive
        raise unfed_placeholder_error(self.node)


@register_kernel("PlaceholderWithDefault", "CPU", {"dtype": ALL_TYPES})
class PlaceholderWithDefaultCpu(Kernel):
    foldable = False   # it may be fed in another run

    def compute(self, x):
        return x


@register_kernel("Identity", "CPU", _ANY)
class IdentityCpu(Kernel):
    def compute(self, x):
        return x


@register_kernel("Shape", "CPU", _ANY)
class ShapeCpu(Kernel):
    def __init__(self, node):
        super().__init__(node)
        self.out_dtype = node.attrs["out_type"].as_numpy_dtype

    def compute(self, x):
        shape = np.asarray(x).shape
        if self.out_dtype == np.int32 and any(d > np.iinfo(np.int32).max for d in shape):
            msg = f"Shape {list(shape)} does not fit in int32; use out_type int64"
            raise errors.InvalidArgumentError(msg)
        return np.array(shape, dtype=self.out_dtype)
