"""Sliding-window arithmetic shared by shape functions and kernels (TF's kernel_shape_util),
and the validated geometry of the conv ops' attrs (ConvParams).

All divisions truncate toward zero, as C++ does: VALID with in=1, k=4, s=2 gives
(1 - 4 + 2) / 2 = 0 (not -1 as Python's floor division would give).
"""

from __future__ import annotations

from opgraph import errors
from opgraph.shapes import TensorShape

__all__ = ["ConvParams", "conv_params", "effective_filter_size", "trunc_div",
           "windowed_output_size"]


def trunc_div(a: int, b: int) -> int:
    """Integer division truncating toward zero (C++ semantics); b > 0."""
    q = abs(a) // b
    return q if a >= 0 else -q


def effective_filter_size(k: int, dilation: int) -> int:
    return (k - 1) * dilation + 1


def windowed_output_size(in_size: int, k: int, stride: int, dilation: int, padding: str,
                         pad_before: int = 0, pad_after: int = 0) -> tuple[int, int, int]:
    """(output size, pad before, pad after) of one spatial dim.

    VALID: out = (in - k' + s) / s, no padding. SAME: out = (in + s - 1) / s, total padding
    max((out - 1) * s + k' - in, 0) split with the odd one after. EXPLICIT: out =
    (in + before + after - k' + s) / s. Raises InvalidArgumentError for stride < 1,
    dilation < 1, or a negative output size.
    """
    if stride <= 0:
        msg = f"Stride must be > 0, but got {stride}"
        raise errors.InvalidArgumentError(msg)
    if dilation < 1:
        msg = f"Dilation rate must be >= 1, but got {dilation}"
        raise errors.InvalidArgumentError(msg)
    eff = effective_filter_size(k, dilation)
    if padding == "VALID":
        out = trunc_div(in_size - eff + stride, stride)
        pad_before = pad_after = 0
    elif padding == "SAME":
        out = trunc_div(in_size + stride - 1, stride)
        total = max((out - 1) * stride + eff - in_size, 0)
        pad_before = total // 2
        pad_after = total - pad_before
    elif padding == "EXPLICIT":
        out = trunc_div(in_size + pad_before + pad_after - eff + stride, stride)
    else:
        msg = f"padding must be one of SAME, VALID, EXPLICIT, but got {padding!r}"
        raise errors.InvalidArgumentError(msg)
    if out < 0:
        msg = (f"Computed output size would be negative: {out} [input_size: {in_size}, "
               f"effective_filter_size: {eff}, stride: {stride}]")
        raise errors.InvalidArgumentError(msg)
    return out, pad_before, pad_after


_DIMS = {"NHWC": (0, 1, 2, 3), "NCHW": (0, 2, 3, 1)}   # positions of N, H, W, C


class ConvParams:
    """Validated conv attrs: format, (sh, sw), (dh, dw), padding, ((pt, pb), (pl, pr))."""

    __slots__ = ("data_format", "strides", "dilations", "padding", "explicit", "_pads")

    def __init__(self, data_format, strides, dilations, padding, explicit):
        self.data_format, self.strides, self.dilations = data_format, strides, dilations
        self.padding, self.explicit = padding, explicit
        self._pads = {}  # pads_before by (in_hw, k_hw): kernels ask it on every call

    def split(self, shape):
        """(N, H, W, C) of a rank-4 TensorShape or plain shape tuple in this data format."""
        d = shape.dims if isinstance(shape, TensorShape) else shape
        n, h, w, c = _DIMS[self.data_format]
        return d[n], d[h], d[w], d[c]

    def join(self, n, h, w, c) -> TensorShape:
        dims = (n, h, w, c) if self.data_format == "NHWC" else (n, c, h, w)
        return TensorShape._from_tuple(dims)

    def out_size(self, axis: int, in_size, k):
        """Forward output size along spatial axis 0 (height) or 1 (width), or None."""
        if in_size is None:
            return None
        if k is None:   # SAME's output size does not depend on the filter (as in TF)
            return trunc_div(in_size + self.strides[axis] - 1, self.strides[axis]) \
                if self.padding == "SAME" else None
        before, after = self.explicit[axis]
        return windowed_output_size(in_size, k, self.strides[axis], self.dilations[axis],
                                    self.padding, before, after)[0]

    def pads_before(self, in_hw, k_hw) -> tuple[int, int]:
        """(pad_top, pad_left) for known input and filter spatial sizes."""
        key = (tuple(in_hw), tuple(k_hw))
        pads = self._pads.get(key)
        if pads is None:
            pads = tuple(windowed_output_size(in_hw[a], k_hw[a], self.strides[a],
                                              self.dilations[a], self.padding,
                                              *self.explicit[a])[1] for a in (0, 1))
            if len(self._pads) >= 64:
                self._pads.clear()
            self._pads[key] = pads
        return pads


_PARAMS_CACHE: dict = {}


def conv_params(attrs: dict) -> ConvParams:
    """Validate the conv attrs (TF's kernel-constructor checks) and return ConvParams.

    Valid results are cached by attr values (ConvParams is treated as immutable).
    """
    key = (attrs["data_format"], attrs["strides"], attrs["dilations"], attrs["padding"],
           attrs["explicit_paddings"])
    try:
        return _PARAMS_CACHE[key]
    except (KeyError, TypeError):      # TypeError: unhashable (lists): no caching
        pass
    params = _conv_params(attrs)
    try:
        if len(_PARAMS_CACHE) >= 4096:
            _PARAMS_CACHE.clear()
        _PARAMS_CACHE[key] = params
    except TypeError:
        pass
    return params


def _window_attr(name: str, values, fmt: str, positive_msg: str) -> tuple[int, int]:
    """(height, width) entries of a 4-int strides/dilations attr, after TF's checks."""
    n, h, w, c = _DIMS[fmt]
    if len(values) != 4:
        msg = (f"Sliding window {name} field must specify 4 dimensions, but got "
               f"{len(values)}: {list(values)}")
        raise errors.InvalidArgumentError(msg)
    if values[n] != 1 or values[c] != 1:
        msg = (f"Current implementation does not yet support {name} in the batch and depth "
               f"dimensions; {name} must be 1 at positions {n} and {c} for {fmt}, but got "
               f"{list(values)}")
        raise errors.UnimplementedError(msg)
    if values[h] < 1 or values[w] < 1:
        msg = f"{positive_msg}, but got {list(values)}"
        raise errors.InvalidArgumentError(msg)
    return values[h], values[w]


def _conv_params(attrs: dict) -> ConvParams:
    fmt = attrs["data_format"]
    n, h, w, c = _DIMS[fmt]
    strides = _window_attr("strides", attrs["strides"], fmt,
                           "Row and column strides should be larger than 0")
    dilations = _window_attr("dilations", attrs["dilations"], fmt,
                             "Dilated rates should be larger than 0")
    padding = attrs["padding"]
    explicit = explicit_paddings(padding, attrs["explicit_paddings"], fmt)
    return ConvParams(fmt, strides, dilations, padding, explicit)


def explicit_paddings(padding: str, pads, fmt: str) -> tuple:
    """((top, bottom), (left, right)) from a 4-D op's ``explicit_paddings`` attr (8 values in
    ``fmt`` order, required iff ``padding`` is EXPLICIT, zero on batch and depth); zeros for
    the other paddings. TF's messages for every malformed value."""
    n, h, w, c = _DIMS[fmt]
    if padding != "EXPLICIT":
        if pads:
            msg = (f"explicit_paddings attribute must be empty if the padding attribute is not "
                   f"EXPLICIT, but padding is {padding} and explicit_paddings is {list(pads)}")
            raise errors.InvalidArgumentError(msg)
        return ((0, 0), (0, 0))
    if len(pads) != 8:
        msg = (f"explicit_paddings attribute must contain 8 values when padding is "
               f"EXPLICIT, but got {len(pads)}: {list(pads)}")
        raise errors.InvalidArgumentError(msg)
    if any(p < 0 for p in pads):
        msg = f"All elements of explicit_paddings must be nonnegative, but got {list(pads)}"
        raise errors.InvalidArgumentError(msg)
    if any(pads[2 * i] or pads[2 * i + 1] for i in (n, c)):
        msg = (f"Nonzero explicit padding in the batch or depth dimensions is not "
               f"supported: {list(pads)} ({fmt})")
        raise errors.InvalidArgumentError(msg)
    return ((pads[2 * h], pads[2 * h + 1]), (pads[2 * w], pads[2 * w + 1]))
