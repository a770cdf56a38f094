"""A fake GPU backend for CI: "device arrays" are a numpy subclass, copies are counted.

Its native table has the same rows as CuPy's (``cupy_native.SHARED_CODE_OPS``): the CPU
kernel runs on the subclass (numpy keeps subclasses through ufuncs, as numpy hands CuPy
arrays to CuPy), and every input the GPU kernel receives is checked to be in the memory
space the copy insertion promised.
"""

from __future__ import annotations

import numpy as np

from runtime.devices import GpuBackend
from runtime.kernels.gpu import host_memory
from runtime.kernels.gpu.cupy_native import SHARED_CODE_OPS


class DeviceArray(np.ndarray):
    """An array "on the fake GPU"."""


class FakeGpuBackend(GpuBackend):
    name = "fake"

    def __init__(self, count: int = 1):
        self.count = count
        self.to_device_calls = 0
        self.to_host_calls = 0
        self.native = {op: self._native for op in SHARED_CODE_OPS}
        self.space_errors = []

    def device_count(self) -> int:
        return self.count

    def unavailable_reason(self) -> str:
        return "" if self.count else "the fake backend has no devices"

    def is_device_array(self, x) -> bool:
        return isinstance(x, DeviceArray)

    def to_device(self, x, index: int = 0):
        self.to_device_calls += 1
        return np.array(x).view(DeviceArray)

    def to_host(self, x):
        self.to_host_calls += 1
        return np.array(x.view(np.ndarray))

    def _native(self, node, cpu_kernel):
        expect_host = [host_memory(o.dtype) for o in node.inputs]
        shape_only = node.type in ("Shape", "ShapeN", "Rank", "Size")

        def run(*inputs):
            for i, (x, host) in enumerate(zip(inputs, expect_host)):
                if not shape_only and isinstance(x, np.ndarray) and \
                        isinstance(x, DeviceArray) == host:
                    self.space_errors.append((node.name, i))
            return _as_device(cpu_kernel.compute(*inputs), node)
        return run


def _as_device(result, node):
    """The CPU kernel's result "computed on the device": device-memory outputs as
    DeviceArray views (host-memory ones, e.g. int32, are left to the GPU kernel)."""
    if isinstance(result, (tuple, list)):
        return type(result)(_as_device(r, node) for r in result)
    if isinstance(result, np.ndarray) and not host_memory_np(result.dtype):
        return result.view(DeviceArray)
    return result


def host_memory_np(npdtype) -> bool:
    return npdtype == np.int32 or npdtype.kind in "OUS"
