"""CPU kernels of FusedBatchNorm, FusedBatchNormV2, FusedBatchNormV3 and FusedBatchNormGradV3
(TF's Eigen CPU functors, vectorised): x is viewed as [rest, C] in float32, the statistics
reduce over rest (float64 accumulators).

Training: batch mean m and biased variance v; y uses (m, v); batch_mean / batch_variance are
m and v * rest / max(rest - 1, 1) (Bessel), or with exponential_avg_factor f != 1 the running
averages (1 - f) * old + f * new; reserve_space_1/2 are m and v. Inference: y uses the given
mean and variance, which are also returned (TF's CPU kernel leaves reserve_space_1/2
uninitialised there; they are copies of mean and variance here). An empty x gives an empty y
and NaN statistics, as TF. V3's reserve_space_3 is TF's CPU placeholder: a scalar 0.
"""

from __future__ import annotations

import numpy as np

from runtime.kernel_registry import Kernel, register_kernel
from runtime.memory import check_allocation


class _FusedBatchNormCpu(Kernel):
    with_reserve_space_3 = False

    def __init__(self, node):
        super().__init__(node)
        a = node.attrs
        self.channel_first = a["data_format"].startswith("NC")
        self.training = a["is_training"]
        self.epsilon = np.float32(a["epsilon"])
        self.factor = np.float32(a["exponential_avg_factor"])

    def compute(self, x, scale, offset, mean, variance):
        u = np.float32
        axis = 1 if self.channel_first else x.ndim - 1
        xc = np.moveaxis(x, axis, -1)
        channels = xc.shape[-1]
        if x.size == 0:
            nan = np.full(channels, np.nan, u)
            stats = (nan, nan.copy(), nan.copy(), nan.copy())
            y = np.empty(x.shape, x.dtype)
        else:
            check_allocation(x.shape, 4 * 2, "FusedBatchNorm float32 temporaries")
            x2 = xc.reshape(-1, channels).astype(u, copy=False)
            if self.training:
                rest = x2.shape[0]
                # float64 accumulators: numpy sums along axis 0 without pairwise blocking
                batch_mean = x2.mean(axis=0, dtype=np.float64).astype(u)
                centered = x2 - batch_mean
                batch_var = (np.einsum("ij,ij->j", centered, centered, dtype=np.float64)
                             / rest).astype(u)
                adjust = u(rest) / u(max(rest - 1, 1))
                if self.factor == 1:
                    running = (batch_mean.copy(), batch_var * adjust)
                else:
                    keep = u(1) - self.factor
                    running = (keep * mean + self.factor * batch_mean,
                               keep * variance + (self.factor * adjust) * batch_var)
                stats = (*running, batch_mean, batch_var)
            else:
                centered = x2 - mean
                batch_var = variance
                stats = (mean.astype(u), variance.astype(u), mean.astype(u),
                         variance.astype(u))
            centered *= (u(1) / np.sqrt(batch_var + self.epsilon)) * scale
            centered += offset
            y = np.moveaxis(centered.reshape(xc.shape), -1, axis)
            y = np.ascontiguousarray(y, dtype=x.dtype)
        if self.with_reserve_space_3:
            return (y, *stats, np.zeros((), u))
        return (y, *stats)


@register_kernel("FusedBatchNorm")
class FusedBatchNormCpu(_FusedBatchNormCpu):
    pass


@register_kernel("FusedBatchNormV2")
class FusedBatchNormV2Cpu(_FusedBatchNormCpu):
    pass


@register_kernel("FusedBatchNormV3")
class FusedBatchNormV3Cpu(_FusedBatchNormCpu):
    with_reserve_space_3 = True


@register_kernel("FusedBatchNormGradV3")
class FusedBatchNormGradV3Cpu(Kernel):
    """TF's CPU FusedBatchNormGrad (training) and FusedBatchNormFreezeGrad (inference)
    functors; reserve_space_3 is not used on CPU."""

    def __init__(self, node):
        super().__init__(node)
        a = node.attrs
        self.channel_first = a["data_format"].startswith("NC")
        self.training = a["is_training"]
        self.epsilon = np.float32(a["epsilon"])

    def compute(self, dy, x, scale, mean, variance, reserve_space_3):
        u = np.float32
        axis = 1 if self.channel_first else x.ndim - 1
        channels = x.shape[axis]
        empty = np.zeros(0, u)
        if x.size == 0:
            return (np.empty(x.shape, x.dtype), np.zeros(channels, u), np.zeros(channels, u),
                    empty, empty.copy())
        check_allocation(x.shape, 4 * 3, "FusedBatchNormGradV3 float32 temporaries")
        xc = np.moveaxis(x, axis, -1)
        x2 = xc.reshape(-1, channels).astype(u)
        dy2 = np.moveaxis(dy, axis, -1).reshape(-1, channels).astype(u)
        rest = x2.shape[0]
        r = u(1) / np.sqrt(variance.astype(u) + self.epsilon)
        x2 -= mean.astype(u)
        x2 *= r                                          # x2 is now xh
        offset_backprop = dy2.sum(axis=0, dtype=np.float64).astype(u)
        scale_backprop = np.einsum("ij,ij->j", dy2, x2, dtype=np.float64).astype(u)
        if self.training:
            dy2 -= offset_backprop / u(rest)
            x2 *= scale_backprop / u(rest)
            dy2 -= x2
        dy2 *= scale.astype(u) * r
        dx = np.moveaxis(dy2.reshape(xc.shape), -1, axis)
        return (np.ascontiguousarray(dx, dtype=x.dtype), scale_backprop, offset_backprop,
                empty, empty.copy())
