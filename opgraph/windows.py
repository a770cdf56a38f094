"""Sliding-window arithmetic shared by shape functions and kernels (TF's kernel_shape_util).

All divisions truncate toward zero, as C++ does: VALID with in=1, k=4, s=2 gives
(1 - 4 + 2) / 2 = 0 (not -1 as Python's floor division would give).
"""

from __future__ import annotations

from opgraph import errors

__all__ = ["effective_filter_size", "windowed_output_size", "trunc_div"]


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
