"""CPU kernels of the random ops: one generator per node and session (never folded)."""

from __future__ import annotations

import threading

import numpy as np

from opgraph import errors
from runtime.kernel_registry import Kernel, register_kernel


class _RandomKernel(Kernel):
    foldable = False

    def __init__(self, node):
        super().__init__(node)
        seed, seed2 = node.attrs["seed"], node.attrs["seed2"]
        entropy = None if (seed == 0 and seed2 == 0) else [seed & (2**64 - 1),
                                                            seed2 & (2**64 - 1)]
        self.rng = np.random.Generator(np.random.PCG64(entropy))
        self.lock = threading.Lock()       # one Generator is not safe across threads

    def shape(self, shape):
        dims = [int(d) for d in np.ravel(shape)]
        if any(d < 0 for d in dims):
            msg = f"shape dims must be non-negative, got {dims}"
            raise errors.InvalidArgumentError(msg)
        return tuple(dims)


def _out_dtype(node, attr="dtype"):
    return node.attrs[attr].as_numpy_dtype


@register_kernel("RandomUniform")
class RandomUniformCpu(_RandomKernel):
    def compute(self, shape):
        with self.lock:
            return self.rng.random(self.shape(shape)).astype(_out_dtype(self.node))


@register_kernel("RandomStandardNormal")
class RandomStandardNormalCpu(_RandomKernel):
    def compute(self, shape):
        with self.lock:
            return self.rng.standard_normal(self.shape(shape)).astype(_out_dtype(self.node))


@register_kernel("TruncatedNormal")
class TruncatedNormalCpu(_RandomKernel):
    def compute(self, shape):
        dims = self.shape(shape)
        with self.lock:
            out = self.rng.standard_normal(dims)
            bad = np.abs(out) > 2
            while bad.any():                       # redraw: ~4.6% per round
                out[bad] = self.rng.standard_normal(int(bad.sum()))
                bad = np.abs(out) > 2
        return out.astype(_out_dtype(self.node))


@register_kernel("RandomUniformInt")
class RandomUniformIntCpu(_RandomKernel):
    def compute(self, shape, minval, maxval):
        lo, hi = int(minval), int(maxval)
        if not lo < hi:
            msg = f"Need minval < maxval: {lo} >= {hi}"
            raise errors.InvalidArgumentError(msg)
        with self.lock:
            return self.rng.integers(lo, hi, self.shape(shape), dtype=_out_dtype(self.node,
                                                                                 "Tout"))


@register_kernel("RandomShuffle")
class RandomShuffleCpu(_RandomKernel):
    def compute(self, value):
        if np.ndim(value) == 0:
            return np.array(value, copy=True)
        with self.lock:
            return value[self.rng.permutation(value.shape[0])]
