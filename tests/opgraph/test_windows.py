"""Window arithmetic (C++ truncation, SAME's odd pad after) and ConvParams."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opgraph import TensorShape, errors
from opgraph.windows import conv_params, effective_filter_size, trunc_div, windowed_output_size


def test_trunc_div_truncates_toward_zero():
    assert trunc_div(7, 2) == 3 and trunc_div(-7, 2) == -3 and trunc_div(-1, 2) == 0
    assert -1 // 2 == -1          # what Python's floor division would have given
    assert trunc_div(0, 5) == 0


def test_effective_filter_size():
    assert effective_filter_size(3, 1) == 3
    assert effective_filter_size(3, 2) == 5
    assert effective_filter_size(1, 7) == 1


@pytest.mark.parametrize(("args", "expected"), [
    # VALID: out = (in - k' + s) / s, truncating
    ((8, 3, 1, 1, "VALID"), (6, 0, 0)),
    ((8, 3, 2, 1, "VALID"), (3, 0, 0)),
    ((1, 4, 2, 1, "VALID"), (0, 0, 0)),     # (1 - 4 + 2) / 2 = -1/2 -> 0, valid
    ((2, 5, 2, 1, "VALID"), (0, 0, 0)),     # TF_SEMANTICS §0.9
    ((8, 3, 1, 2, "VALID"), (4, 0, 0)),
    # SAME: out = ceil(in / s); total pad split with the odd one after
    ((6, 3, 2, 1, "SAME"), (3, 0, 1)),
    ((7, 3, 2, 2, "SAME"), (4, 2, 2)),
    ((8, 3, 1, 1, "SAME"), (8, 1, 1)),
    ((8, 4, 1, 1, "SAME"), (8, 1, 2)),
    ((8, 2, 2, 1, "SAME"), (4, 0, 0)),
    ((2, 5, 1, 1, "SAME"), (2, 2, 2)),
    ((0, 3, 1, 1, "SAME"), (0, 1, 1)),      # total max((0-1)*1 + 3 - 0, 0) = 2
    # EXPLICIT: out = (in + before + after - k' + s) / s
    ((8, 3, 1, 1, "EXPLICIT", 1, 2), (9, 1, 2)),
    ((8, 3, 2, 1, "EXPLICIT", 1, 1), (4, 1, 1)),
    ((1, 3, 1, 1, "EXPLICIT", 1, 1), (1, 1, 1)),
])
def test_windowed_output_size(args, expected):
    assert windowed_output_size(*args) == expected


@pytest.mark.parametrize(("args", "regex"), [
    ((1, 5, 1, 1, "VALID"), r"Computed output size would be negative: -3 \[input_size: 1, "
                            r"effective_filter_size: 5, stride: 1\]"),
    ((1, 5, 2, 1, "VALID"), r"would be negative: -1"),
    ((5, 3, 1, 3, "VALID"), r"would be negative: -1 \[input_size: 5, effective_filter_size: 7"),
    ((0, 3, 1, 1, "EXPLICIT", 0, 1), r"would be negative"),
    ((8, 3, 0, 1, "VALID"), r"Stride must be > 0, but got 0"),
    ((8, 3, -1, 1, "SAME"), r"Stride must be > 0, but got -1"),
    ((8, 3, 1, 0, "VALID"), r"Dilation rate must be >= 1, but got 0"),
    ((8, 3, 1, 1, "FULL"), r"padding must be one of SAME, VALID, EXPLICIT"),
])
def test_windowed_output_size_errors(args, regex):
    with pytest.raises(errors.InvalidArgumentError, match=regex):
        windowed_output_size(*args)


@given(st.integers(0, 40), st.integers(1, 6), st.integers(1, 4), st.integers(1, 3))
def test_same_pads_cover_the_window_with_odd_pad_after(n, k, s, d):
    out, before, after = windowed_output_size(n, k, s, d, "SAME")
    assert out == -(-n // s)
    assert after - before in (0, 1)
    eff = effective_filter_size(k, d)
    # the padded input covers exactly the windows, EXPLICIT with those pads agrees
    assert out == 0 or (out - 1) * s + eff <= n + before + after
    if out > 0:
        assert windowed_output_size(n, k, s, d, "EXPLICIT", before, after)[0] == out


@given(st.integers(0, 40), st.integers(1, 6), st.integers(1, 4), st.integers(1, 3))
def test_valid_matches_explicit_zero_pads_and_truncation(n, k, s, d):
    eff = effective_filter_size(k, d)
    num = n - eff + s
    if num < 0 and -num >= s:          # negative after truncation
        with pytest.raises(errors.InvalidArgumentError):
            windowed_output_size(n, k, s, d, "VALID")
        return
    out = windowed_output_size(n, k, s, d, "VALID")[0]
    assert out == (num // s if num >= 0 else 0)
    assert windowed_output_size(n, k, s, d, "EXPLICIT", 0, 0)[0] == out


def _attrs(**kw):
    base = {"data_format": "NHWC", "strides": (1, 1, 1, 1), "dilations": (1, 1, 1, 1),
            "padding": "SAME", "explicit_paddings": ()}
    base.update(kw)
    return base


def test_conv_params_nhwc_and_nchw():
    p = conv_params(_attrs(strides=(1, 2, 3, 1), dilations=(1, 1, 2, 1), padding="EXPLICIT",
                           explicit_paddings=(0, 0, 1, 2, 3, 4, 0, 0)))
    assert (p.strides, p.dilations, p.explicit) == ((2, 3), (1, 2), ((1, 2), (3, 4)))
    assert p.split(TensorShape([1, 8, 9, 3])) == (1, 8, 9, 3)
    assert p.join(1, 8, 9, 3) == TensorShape([1, 8, 9, 3])
    q = conv_params(_attrs(data_format="NCHW", strides=(1, 1, 2, 3), dilations=(1, 1, 1, 2),
                           padding="EXPLICIT", explicit_paddings=(0, 0, 0, 0, 1, 2, 3, 4)))
    assert (q.strides, q.dilations, q.explicit) == ((2, 3), (1, 2), ((1, 2), (3, 4)))
    assert q.split(TensorShape([1, 3, 8, 9])) == (1, 8, 9, 3)
    assert q.join(1, 8, 9, 3) == TensorShape([1, 3, 8, 9])


def test_conv_params_out_size_and_pads():
    p = conv_params(_attrs(strides=(1, 2, 2, 1)))
    assert p.out_size(0, 6, 3) == 3
    assert p.out_size(0, None, 3) is None
    assert p.out_size(0, 7, None) == 4          # SAME: the filter does not matter
    assert p.pads_before((6, 7), (3, 3)) == (0, 1)
    v = conv_params(_attrs(strides=(1, 2, 2, 1), padding="VALID"))
    assert v.out_size(1, 7, None) is None


@pytest.mark.parametrize(("kw", "cls", "regex"), [
    ({"strides": (1, 1, 1)}, errors.InvalidArgumentError, "strides field must specify 4"),
    ({"strides": (2, 1, 1, 1)}, errors.UnimplementedError, "strides in the batch and depth"),
    ({"strides": (1, 0, 1, 1)}, errors.InvalidArgumentError, "larger than 0"),
    ({"dilations": (1, 1, 1, 1, 1)}, errors.InvalidArgumentError, "dilations field must"),
    ({"dilations": (1, 1, 1, 2)}, errors.UnimplementedError, "dilations in the batch"),
    ({"dilations": (1, -1, 1, 1)}, errors.InvalidArgumentError, "Dilated rates"),
    ({"padding": "EXPLICIT"}, errors.InvalidArgumentError, "must contain 8 values"),
    ({"explicit_paddings": (0,) * 8}, errors.InvalidArgumentError, "must be empty"),
])
def test_conv_params_errors(kw, cls, regex):
    with pytest.raises(cls, match=regex):
        conv_params(_attrs(**kw))
