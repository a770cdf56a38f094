"""CPU kernels of the matrix products.

np.matmul broadcasts batch dims by strides, so BatchMatMulV2 never materialises a broadcast
copy of an operand; transposes and adjoints are views (conjugation copies one operand).
half and bfloat16 are multiplied in float32 and rounded once, as TF's CPU kernels do.
"""

from __future__ import annotations

import numpy as np

from opgraph import dtypes as dt
from runtime.kernel_registry import register_kernel
from runtime.memory import check_allocation

_LOW_PRECISION = ("float16", "bfloat16")
_MATMUL_KERNEL_TYPES = (dt.DT_HALF, dt.DT_BFLOAT16, dt.DT_FLOAT, dt.DT_DOUBLE, dt.DT_INT32,
                        dt.DT_INT64, dt.DT_COMPLEX64, dt.DT_COMPLEX128)


def _product(x: np.ndarray, y: np.ndarray, what: str) -> np.ndarray:
    """x @ y with numpy broadcasting; 16-bit floats accumulate in a float32 buffer."""
    if x.dtype.name not in _LOW_PRECISION:
        return np.matmul(x, y)
    shape = (*np.broadcast_shapes(x.shape[:-2], y.shape[:-2]), x.shape[-2], y.shape[-1])
    check_allocation(shape, 4, f"{what} float32 accumulator")
    return np.matmul(x.astype(np.float32), y.astype(np.float32)).astype(x.dtype)


def _adjoint(m: np.ndarray) -> np.ndarray:
    m = np.swapaxes(m, -1, -2)
    return np.conj(m) if m.dtype.kind == "c" else m


@register_kernel("MatMul", "CPU", {"T": _MATMUL_KERNEL_TYPES})
def mat_mul(a, b, *, transpose_a, transpose_b):
    return _product(a.T if transpose_a else a, b.T if transpose_b else b, "MatMul")


def _batch_mat_mul(x, y, adj_x, adj_y, what):
    return _product(_adjoint(x) if adj_x else x, _adjoint(y) if adj_y else y, what)


@register_kernel("BatchMatMulV2")
def batch_mat_mul_v2(x, y, *, adj_x, adj_y):
    return _batch_mat_mul(x, y, adj_x, adj_y, "BatchMatMulV2")


@register_kernel("BatchMatMul")
def batch_mat_mul(x, y, *, adj_x, adj_y):
    return _batch_mat_mul(x, y, adj_x, adj_y, "BatchMatMul")
