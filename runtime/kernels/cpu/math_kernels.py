"""CPU kernels of the elementwise math ops."""

from __future__ import annotations

import numpy as np

from opgraph import dtypes as dt
from runtime.kernel_registry import Kernel, register_kernel
from runtime.memory import check_allocation


_ADD_TYPES = (dt.DT_HALF, dt.DT_BFLOAT16, dt.DT_FLOAT, dt.DT_DOUBLE, dt.DT_INT8, dt.DT_INT16,
              dt.DT_INT32, dt.DT_INT64, dt.DT_UINT8, dt.DT_COMPLEX64, dt.DT_COMPLEX128)


@register_kernel("AddV2", "CPU", {"T": _ADD_TYPES})
class AddV2Cpu(Kernel):
    def compute(self, x, y):
        if x.ndim or y.ndim:   # scalars need no guard; broadcast results might be huge
            shape = np.broadcast_shapes(x.shape, y.shape)
            check_allocation(shape, x.dtype.itemsize, "AddV2 output")
        return np.add(x, y)
