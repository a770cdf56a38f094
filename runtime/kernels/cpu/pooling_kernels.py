"""CPU kernels of the 2-D pooling ops (MaxPool, AvgPool) and their backward ops (MaxPoolGrad,
MaxPoolGradGrad, AvgPoolGrad).

All work in the input's own layout (NHWC or NCHW) with one vectorised numpy operation per
window tap (kh * kw of them) over strided slices of a padded copy (the input itself when
nothing is padded); nothing loops over pixels. The backward ops scatter with one strided
``+=`` per tap (the positions one tap reads are distinct, so no add is lost). The shape
functions have validated the attrs and the inputs before these run.
"""

from __future__ import annotations

import numpy as np

from opgraph.windows import windowed_output_size
from runtime.kernel_registry import Kernel, register_kernel
from runtime.memory import check_allocation

_POS = {"NHWC": (1, 2, 3), "NCHW": (2, 3, 1)}     # positions of H, W, C


def _lowest(dtype: np.dtype):
    """The most negative finite value of ``dtype`` (Eigen's NumTraits<T>::lowest())."""
    if np.issubdtype(dtype, np.integer):
        return np.iinfo(dtype).min
    try:
        return np.finfo(dtype).min
    except (TypeError, ValueError):     # bfloat16 (ml_dtypes) is not known to np.finfo
        import ml_dtypes  # noqa: PLC0415
        return ml_dtypes.finfo(dtype).min


class _PoolKernel(Kernel):
    def __init__(self, node):
        super().__init__(node)
        a = node.attrs
        self.fmt = a["data_format"]
        h, w, _ = _POS[self.fmt]
        self.spatial = (h, w)
        self.ksize = (a["ksize"][h], a["ksize"][w])
        self.strides = (a["strides"][h], a["strides"][w])
        self.padding = a["padding"]
        pads = a.get("explicit_paddings") or (0,) * 8
        self.explicit = ((pads[2 * h], pads[2 * h + 1]), (pads[2 * w], pads[2 * w + 1]))

    def _geometry(self, x):
        """((oh, pad_top, pad_bottom), (ow, pad_left, pad_right)) for input x."""
        return self._geometry_of(x.shape)

    def _geometry_of(self, shape):
        return tuple(windowed_output_size(shape[ax], self.ksize[a], self.strides[a], 1,
                                          self.padding, *self.explicit[a])
                     for a, ax in enumerate(self.spatial))

    def _output(self, x, oh, ow, dtype):
        shape = list(x.shape)
        shape[self.spatial[0]], shape[self.spatial[1]] = oh, ow
        check_allocation(shape, np.dtype(dtype).itemsize, f"{self.node.type} output")
        return np.empty(shape, dtype)

    def _padded(self, x, pads, fill):
        """x with (pt, pb) rows and (pl, pr) cols of ``fill`` around it (x when none)."""
        if not any(pads[0] + pads[1]):
            return x
        shape = list(x.shape)
        inner = [slice(None)] * x.ndim
        for ax, (before, after) in zip(self.spatial, pads):
            inner[ax] = slice(before, before + shape[ax])
            shape[ax] += before + after
        check_allocation(shape, x.dtype.itemsize, f"{self.node.type} padded input")
        xp = np.full(shape, fill, x.dtype)
        xp[tuple(inner)] = x
        return xp

    def _taps(self, xp, oh, ow):
        """One strided view of the padded input per window tap, shaped like the output."""
        (kh, kw), (sh, sw) = self.ksize, self.strides
        index = [slice(None)] * xp.ndim
        ha, wa = self.spatial
        for i in range(kh):
            index[ha] = slice(i, i + (oh - 1) * sh + 1, sh)
            for j in range(kw):
                index[wa] = slice(j, j + (ow - 1) * sw + 1, sw)
                yield xp[tuple(index)]


@register_kernel("MaxPool")
class MaxPoolCpu(_PoolKernel):
    def compute(self, x):
        (oh, pt, pb), (ow, pl, pr) = self._geometry(x)
        y = self._output(x, oh, ow, x.dtype)
        if y.size == 0:
            return y
        lowest = _lowest(x.dtype)
        y[...] = lowest             # TF's CPU kernel starts from lowest(), so never -inf
        xp = self._padded(x, ((pt, pb), (pl, pr)), lowest)
        for tap in self._taps(xp, oh, ow):
            np.maximum(y, tap, out=y)
        return y


def _valid_counts(out_size, in_size, k, s, pad_before):
    """Number of non-padded positions in each window along one axis."""
    start = np.arange(out_size, dtype=np.int64) * s - pad_before
    return np.minimum(start + k, in_size) - np.maximum(start, 0)


@register_kernel("AvgPool")
class AvgPoolCpu(_PoolKernel):
    def compute(self, x):
        (oh, pt, pb), (ow, pl, pr) = self._geometry(x)
        y = self._output(x, oh, ow, x.dtype)
        if y.size == 0:
            return y
        acc_dtype = np.float64 if x.dtype == np.float64 else np.float32
        if acc_dtype == x.dtype:
            acc = y
            acc[...] = 0
        else:
            check_allocation(y.shape, np.dtype(acc_dtype).itemsize, "AvgPool accumulator")
            acc = np.zeros(y.shape, acc_dtype)
        xp = self._padded(x, ((pt, pb), (pl, pr)), 0)
        for tap in self._taps(xp, oh, ow):
            acc += tap
        (kh, kw), (sh, sw) = self.ksize, self.strides
        ha, wa = self.spatial
        counts = np.outer(_valid_counts(oh, x.shape[ha], kh, sh, pt),
                          _valid_counts(ow, x.shape[wa], kw, sw, pl))
        counts = counts.reshape((oh, ow, 1) if self.fmt == "NHWC" else (oh, ow))
        acc /= counts.astype(acc_dtype)
        if acc is not y:
            y[...] = acc
        return y


# ---- backward ops ----------------------------------------------------------------------------

def _accumulator_dtype(dtype: np.dtype) -> np.dtype:
    """float64 for double, the integer type itself (C++ wrap-around) for integers, else
    float32 (half and bfloat16 are summed in float32 and rounded once)."""
    if dtype == np.float64 or np.issubdtype(dtype, np.integer):
        return np.dtype(dtype)
    return np.dtype(np.float32)


class _PoolGradKernel(_PoolKernel):
    def _tap_masks(self, in_shape, geometry):
        """Per tap: None when all its reads are inside the input, else a boolean mask (shaped
        to broadcast against the output) of the output positions whose read is inside."""
        (oh, pt, _), (ow, pl, _) = geometry
        (kh, kw), (sh, sw) = self.ksize, self.strides
        h, w = (in_shape[ax] for ax in self.spatial)
        rows = np.arange(oh) * sh - pt
        cols = np.arange(ow) * sw - pl
        masks = []
        for i in range(kh):
            row_ok = (rows + i >= 0) & (rows + i < h)
            for j in range(kw):
                col_ok = (cols + j >= 0) & (cols + j < w)
                if row_ok.all() and col_ok.all():
                    masks.append(None)
                    continue
                mask = row_ok[:, None] & col_ok[None, :]
                masks.append(mask[:, :, None] if self.fmt == "NHWC" else mask)
        return masks

    def _padded_zeros(self, in_shape, geometry, dtype):
        (_, pt, pb), (_, pl, pr) = geometry
        shape = list(in_shape)
        for ax, (before, after) in zip(self.spatial, ((pt, pb), (pl, pr))):
            shape[ax] += before + after
        check_allocation(shape, np.dtype(dtype).itemsize, f"{self.node.type} accumulator")
        return np.zeros(shape, dtype)

    def _crop(self, padded, in_shape, geometry, dtype):
        (_, pt, _), (_, pl, _) = geometry
        index = [slice(None)] * padded.ndim
        for ax, before in zip(self.spatial, (pt, pl)):
            index[ax] = slice(before, before + in_shape[ax])
        return np.ascontiguousarray(padded[tuple(index)], dtype=dtype)


@register_kernel("MaxPoolGrad")
class MaxPoolGradCpu(_PoolGradKernel):
    """TF's CPU kernel: the maxima are recomputed from orig_input (orig_output only has its
    shape checked); each window's winner is its first element, replaced only by a strictly
    greater one, so ties go to the first maximum and a leading NaN stays."""

    def compute(self, x, y, grad):
        geometry = self._geometry(x)
        (oh, pt, pb), (ow, pl, pr) = geometry
        acc_dtype = _accumulator_dtype(x.dtype)
        if x.size == 0 or grad.size == 0:
            check_allocation(x.shape, x.dtype.itemsize, "MaxPoolGrad output")
            return np.zeros(x.shape, x.dtype)
        check_allocation(grad.shape, x.dtype.itemsize + 8 + 1, "MaxPoolGrad window maxima")
        xp = self._padded(x, ((pt, pb), (pl, pr)), 0)
        masks = self._tap_masks(x.shape, geometry)
        best = np.zeros(grad.shape, x.dtype)
        taps = self.ksize[0] * self.ksize[1]
        winner = np.zeros(grad.shape, np.int16 if taps <= np.iinfo(np.int16).max else np.int64)
        seen = np.zeros(grad.shape, np.bool_)
        for t, (tap, mask) in enumerate(zip(self._taps(xp, oh, ow), masks)):
            take = ~seen | (tap > best)
            if mask is not None:
                take &= mask
                seen |= mask
            else:
                seen[...] = True
            np.copyto(best, tap, where=take)
            winner[take] = t
        dxp = self._padded_zeros(x.shape, geometry, acc_dtype)
        g = grad.astype(acc_dtype, copy=False)
        zero = np.zeros((), acc_dtype)
        for t, view in enumerate(self._taps(dxp, oh, ow)):
            view += np.where(winner == t, g, zero)
        return self._crop(dxp, x.shape, geometry, x.dtype)


@register_kernel("MaxPoolGradGrad")
class MaxPoolGradGradCpu(_PoolGradKernel):
    """TF's CPU kernel: output = grad at the first window element (row-major) equal to
    orig_output, 0 where no element is."""

    def compute(self, x, y, grad):
        geometry = self._geometry(x)
        (oh, pt, pb), (ow, pl, pr) = geometry
        check_allocation(y.shape, x.dtype.itemsize + 1, "MaxPoolGradGrad output")
        out = np.zeros(y.shape, x.dtype)
        if out.size == 0 or x.size == 0:
            return out
        pads = ((pt, pb), (pl, pr))
        xp, gp = self._padded(x, pads, 0), self._padded(grad, pads, 0)
        masks = self._tap_masks(x.shape, geometry)
        found = np.zeros(y.shape, np.bool_)
        for x_tap, g_tap, mask in zip(self._taps(xp, oh, ow), self._taps(gp, oh, ow), masks):
            hit = (x_tap == y) & ~found
            if mask is not None:
                hit &= mask
            np.copyto(out, g_tap, where=hit)
            found |= hit
        return out


@register_kernel("AvgPoolGrad")
class AvgPoolGradCpu(_PoolGradKernel):
    def compute(self, orig_input_shape, grad):
        in_shape = tuple(int(d) for d in orig_input_shape)
        check_allocation(in_shape, grad.dtype.itemsize, "AvgPoolGrad output")
        geometry = self._geometry_of(in_shape)
        (oh, pt, _), (ow, pl, _) = geometry
        if grad.size == 0 or 0 in in_shape:
            return np.zeros(in_shape, grad.dtype)
        acc_dtype = _accumulator_dtype(grad.dtype)
        (kh, kw), (sh, sw) = self.ksize, self.strides
        ha, wa = self.spatial
        counts = np.outer(_valid_counts(oh, in_shape[ha], kh, sh, pt),
                          _valid_counts(ow, in_shape[wa], kw, sw, pl))
        counts = counts.reshape((oh, ow, 1) if self.fmt == "NHWC" else (oh, ow))
        check_allocation(grad.shape, acc_dtype.itemsize, "AvgPoolGrad scaled gradient")
        share = grad.astype(acc_dtype) / counts.astype(acc_dtype)
        dxp = self._padded_zeros(in_shape, geometry, acc_dtype)
        for view in self._taps(dxp, oh, ow):
            view += share
        return self._crop(dxp, in_shape, geometry, grad.dtype)
