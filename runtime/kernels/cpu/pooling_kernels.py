"""CPU kernels of the 2-D pooling ops (MaxPool, AvgPool) and their backward ops (MaxPoolGrad,
MaxPoolGradGrad, AvgPoolGrad).

All work in the input's own layout (NHWC or NCHW) with a few vectorised numpy operations per
window tap (kh * kw of them); nothing loops over pixels. The forward ops read strided slices
of a padded copy (the input itself when nothing is padded). The backward ops pair, per tap,
the block of outputs whose read is inside the input with the strided input block it reads
(no padded copies, no masks), and scatter with one strided add per tap (the positions one
tap reads are distinct, so no add is lost). Masked selections are multiplies by the mask
when the selected values are finite (masked copies are several times slower). The shape
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


def _axis_block(out_size, in_size, k, s, pad):
    """(output slice, input slice) of the outputs whose tap k reads inside the input along
    one axis (position o * s + k - pad), or None when none does."""
    lo = max(0, -((k - pad) // s))                  # ceil((pad - k) / s)
    hi = min(out_size, (in_size - 1 - k + pad) // s + 1)
    if lo >= hi:
        return None
    start = lo * s + k - pad
    return slice(lo, hi), slice(start, start + (hi - lo - 1) * s + 1, s)


class _PoolGradKernel(_PoolKernel):
    """The backward kernels read and write each tap's in-bounds block directly (no padded
    copies): tap t pairs an output block with the strided input block it reads."""

    def _tap_blocks(self, in_shape, geometry):
        """[(t, output index, input index)] for every tap that reads inside the input."""
        (oh, pt, _), (ow, pl, _) = geometry
        (kh, kw), (sh, sw) = self.ksize, self.strides
        ha, wa = self.spatial
        blocks = []
        for i in range(kh):
            rows = _axis_block(oh, in_shape[ha], i, sh, pt)
            for j in range(kw):
                cols = _axis_block(ow, in_shape[wa], j, sw, pl)
                if rows is None or cols is None:
                    continue
                out_index, in_index = [slice(None)] * 4, [slice(None)] * 4
                out_index[ha], in_index[ha] = rows
                out_index[wa], in_index[wa] = cols
                blocks.append((i * kw + j, tuple(out_index), tuple(in_index)))
        return blocks

    def _buffer(self, shape, dtype, what, zero=False):
        check_allocation(shape, np.dtype(dtype).itemsize, f"{self.node.type} {what}")
        return np.zeros(shape, dtype) if zero else np.empty(shape, dtype)


def _all_finite(a) -> bool:
    if np.issubdtype(a.dtype, np.integer):
        return True
    return bool(np.isfinite(a).all())


def _has_nan(a) -> bool:
    return not np.issubdtype(a.dtype, np.integer) and bool(np.isnan(a).any())


def _masked(src, mask, out, finite: bool):
    """out = src where mask, else 0 (a multiply when src is finite: no masked copy)."""
    if finite:
        np.multiply(src, mask, out=out, casting="unsafe")
    else:
        out[...] = 0
        np.copyto(out, src, where=mask, casting="unsafe")


@register_kernel("MaxPoolGrad")
class MaxPoolGradCpu(_PoolGradKernel):
    """TF's CPU kernel: the maxima are recomputed from orig_input (orig_output only has its
    shape checked); each window's winner is its first element, replaced only by a strictly
    greater one, so ties go to the first maximum and a leading NaN stays."""

    def compute(self, x, y, grad):
        fast = self._tiled(x, grad)
        if fast is not None:
            return fast
        acc_dtype = _accumulator_dtype(x.dtype)
        dx = self._buffer(x.shape, acc_dtype, "output", zero=True)
        if x.size and grad.size:
            blocks = self._tap_blocks(x.shape, self._geometry(x))
            winner = self._winners(x, grad.shape, blocks)
            take = self._buffer(grad.shape, np.bool_, "window flags")
            share = self._buffer(grad.shape, acc_dtype, "routed gradient")
            finite = _all_finite(grad)
            for t, out_index, in_index in blocks:
                tk, sh = take[out_index], share[out_index]
                np.equal(winner[out_index], t, out=tk)
                _masked(grad[out_index], tk, sh, finite)
                view = dx[in_index]
                np.add(view, sh, out=view)
        return dx if dx.dtype == x.dtype else dx.astype(x.dtype)

    def _tiled(self, x, grad):
        """The common case of windows that tile the input exactly (ksize == strides, no
        padding, NHWC, no NaN): one argmax over each window's elements (its first maximum,
        as TF) and one scatter through a one-hot mask. None when it does not apply."""
        (kh, kw), (sh, sw) = self.ksize, self.strides
        if self.fmt != "NHWC" or (kh, kw) != (sh, sw) or x.ndim != 4 or not x.size:
            return None
        n, h, w, c = x.shape
        if h % kh or w % kw or grad.shape != (n, h // kh, w // kw, c):
            return None
        if x.dtype.kind == "f" and np.isnan(x).any():
            return None                 # NaN wins only where it comes first: the general path
        dx = self._buffer(x.shape, x.dtype, "output")
        taps = [(i, j) for i in range(kh) for j in range(kw)]
        best = x[:, 0::kh, 0::kw, :]
        for i, j in taps[1:]:
            best = np.maximum(best, x[:, i::kh, j::kw, :])
        free = np.ones(best.shape, np.bool_)        # windows whose first maximum is unseen
        zero = np.zeros((), x.dtype)
        for i, j in taps:
            win = (x[:, i::kh, j::kw, :] == best) & free
            free &= ~win
            dx[:, i::kh, j::kw, :] = np.where(win, grad, zero)
        return dx

    def _winners(self, x, out_shape, blocks):
        """The tap index of every window's first maximum."""
        taps = self.ksize[0] * self.ksize[1]
        index_dtype = np.int16 if taps <= np.iinfo(np.int16).max else np.int64
        winner = self._buffer(out_shape, index_dtype, "window winners", zero=True)
        step = self._buffer(out_shape, index_dtype, "window winners")
        best = self._buffer(out_shape, x.dtype, "window maxima")
        pending = self._buffer(out_shape, np.bool_, "window flags")
        pending[...] = True             # no element of the window seen yet
        take = self._buffer(out_shape, np.bool_, "window flags")
        # Without NaN, best = maximum(best, tap) equals "tap where tap > best" (from -inf, so
        # the first element always lands); a NaN must stay only when it comes first.
        nan = _has_nan(x)
        if not nan:
            best[...] = -np.inf if not np.issubdtype(x.dtype, np.integer) else _lowest(x.dtype)
        for t, out_index, in_index in blocks:
            tap, tk, pend, b = x[in_index], take[out_index], pending[out_index], best[out_index]
            np.greater(tap, b, out=tk)
            tk |= pend
            if nan:
                np.copyto(b, tap, where=tk)
            else:
                np.maximum(b, tap, out=b)
            w, st = winner[out_index], step[out_index]
            np.subtract(index_dtype(t), w, out=st)      # winner += (t - winner) * take
            st *= tk
            w += st
            pend[...] = False
        return winner


@register_kernel("MaxPoolGradGrad")
class MaxPoolGradGradCpu(_PoolGradKernel):
    """TF's CPU kernel: output = grad at the first window element (row-major) equal to
    orig_output, 0 where no element is."""

    def compute(self, x, y, grad):
        out = self._buffer(y.shape, x.dtype, "output", zero=True)
        if out.size and x.size:
            pending = self._buffer(y.shape, np.bool_, "window flags")
            pending[...] = True             # no match found yet
            hit = self._buffer(y.shape, np.bool_, "window flags")
            share = self._buffer(y.shape, x.dtype, "selected gradient")
            finite = _all_finite(grad)
            for _, out_index, in_index in self._tap_blocks(x.shape, self._geometry(x)):
                h, pend, sh = hit[out_index], pending[out_index], share[out_index]
                np.equal(x[in_index], y[out_index], out=h)
                h &= pend
                _masked(grad[in_index], h, sh, finite)
                o = out[out_index]
                np.add(o, sh, out=o)        # at most one hit per output element
                pend ^= h
        return out


@register_kernel("AvgPoolGrad")
class AvgPoolGradCpu(_PoolGradKernel):
    def compute(self, orig_input_shape, grad):
        in_shape = tuple(int(d) for d in orig_input_shape)
        acc_dtype = _accumulator_dtype(grad.dtype)
        dx = self._buffer(in_shape, acc_dtype, "output", zero=True)
        if grad.size and dx.size:
            geometry = self._geometry_of(in_shape)
            (oh, pt, _), (ow, pl, _) = geometry
            (kh, kw), (sh, sw) = self.ksize, self.strides
            ha, wa = self.spatial
            counts = np.outer(_valid_counts(oh, in_shape[ha], kh, sh, pt),
                              _valid_counts(ow, in_shape[wa], kw, sw, pl))
            counts = counts.reshape((oh, ow, 1) if self.fmt == "NHWC" else (oh, ow))
            share = self._buffer(grad.shape, acc_dtype, "scaled gradient")
            np.divide(grad, counts.astype(acc_dtype), out=share, casting="unsafe")
            for _, out_index, in_index in self._tap_blocks(in_shape, geometry):
                view = dx[in_index]
                np.add(view, share[out_index], out=view)
        return dx if dx.dtype == grad.dtype else dx.astype(grad.dtype)
