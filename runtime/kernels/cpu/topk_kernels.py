"""CPU kernels of TopKV2, InTopKV2 and InTopK (shapes and k validated by the shape
functions before these run).

TopKV2 sorts each last-dim vector once, stably and in descending order with equal values in
index order: an ascending stable argsort of the reversed vector, read backwards. That order
also puts NaN above every number. k == 1 is an argmax (first maximum, first NaN).
"""

from __future__ import annotations

import numpy as np

from runtime.kernel_registry import Kernel, register_kernel
from runtime.memory import check_allocation


def _descending_order(x: np.ndarray) -> np.ndarray:
    """Indices along the last axis ordering x descending, ties by ascending index."""
    n = x.shape[-1]
    check_allocation(x.shape, 8, "TopKV2 sort order")
    order = np.argsort(x[..., ::-1], axis=-1, kind="stable")[..., ::-1]
    return (n - 1) - order


@register_kernel("TopKV2")
class TopKV2Cpu(Kernel):
    def __init__(self, node):
        super().__init__(node)
        self.index_dtype = node.attrs["index_type"].as_numpy_dtype

    def compute(self, x, k):
        k = int(k)
        out_shape = (*x.shape[:-1], k)
        if k == 0 or x.size == 0:
            return np.empty(out_shape, x.dtype), np.empty(out_shape, self.index_dtype)
        if k == 1:
            idx = np.argmax(x, axis=-1)[..., None]
        else:
            idx = _descending_order(x)[..., :k]
        values = np.take_along_axis(x, idx, axis=-1)
        return values, idx.astype(self.index_dtype)


def _in_top_k(predictions, targets, k):
    batch = predictions.shape[0]
    if batch == 0:
        return np.zeros(0, np.bool_)
    target_pred = predictions[np.arange(batch), targets.astype(np.intp)]
    finite = np.isfinite(predictions).all(axis=1)
    more = np.count_nonzero(predictions > target_pred[:, None], axis=1)
    return finite & (more < k)


@register_kernel("InTopKV2")
def in_top_k_v2(predictions, targets, k):
    return _in_top_k(predictions, targets, int(k))


@register_kernel("InTopK")
def in_top_k(predictions, targets, *, k):
    return _in_top_k(predictions, targets, k)
