"""Build-time shape inference and checks of the conv ops (DESIGN §5), with the shape DSL.

Every rule of DESIGN §5 has a passing and a failing case, run for Conv2DBackpropInputV2 and,
where the rule applies, for Conv2D, Conv2DBackpropInput (V1, with a constant ``input_sizes``)
and the filter gradients Conv2DBackpropFilterV2 and Conv2DBackpropFilter (V1, with a constant
``filter_sizes``), whose shape functions enforce the input gradient's rules. Partial shapes:
what depends on unknown dims is deferred, what can be known is inferred.
"""

from __future__ import annotations

import os
import sys

import pytest

import ops
from opgraph import DT_BFLOAT16, DT_DOUBLE, DT_FLOAT, DT_HALF, DT_INT32, DT_INT64, Scope
from opgraph.errors import InvalidArgumentError, UnimplementedError
from tests.shape_dsl import infer_error, infer_ok

C2, V1, V2 = "Conv2D", "Conv2DBackpropInput", "Conv2DBackpropInputV2"
F1, F2 = "Conv2DBackpropFilter", "Conv2DBackpropFilterV2"
ALL = (C2, V1, V2, F1, F2)
BACKPROP = (V1, V2, F1, F2)
#: the ops whose filter is a tensor input (F1 takes its shape as the constant filter_sizes)
FILTER_TENSOR = (C2, V1, V2, F2)
IA, UNIMPL = InvalidArgumentError, UnimplementedError


def conv(strides=(1, 1, 1, 1), padding="SAME", **kw) -> dict:
    return {"strides": list(strides), "padding": padding, **kw}


def nchw(strides=(1, 1, 1, 1), padding="SAME", **kw) -> dict:
    return conv(strides, padding, data_format="NCHW", **kw)


def spec(op: str, x: str, f: str, dy: str) -> str:
    """The DSL input spec of ``op`` for Conv2D input x, filter f and Conv2D output dy."""
    if op == C2:
        return f"{x};{f}"
    if op in (V2, F2):
        return f"{x};{f};{dy}"
    if op == F1:
        return f"{x};={f};{dy}"   # F1: filter_sizes is the constant shape of f
    return f"={x};{f};{dy}"       # V1: input_sizes is the constant shape of x


def check_ok(op: str, attrs: dict, x: str, f: str, dy: str):
    # Conv2D computes dy's shape; the input gradients give x's, the filter gradients f's.
    return infer_ok(op, attrs, spec(op, x, f, dy), {C2: dy, F1: f, F2: f}.get(op, x))


# ---------------------------------------------------------------- valid geometries
VALID_CASES = {
    "same_s1": (conv(), "[1,8,8,3]", "[3,3,3,16]", "[1,8,8,16]"),
    "same_s2": (conv([1, 2, 2, 1]), "[2,8,8,3]", "[3,3,3,16]", "[2,4,4,16]"),
    "same_s2_odd_sizes": (conv([1, 2, 2, 1]), "[1,7,9,3]", "[3,3,3,8]", "[1,4,5,8]"),
    "same_filter_larger_than_input": (conv(), "[1,2,2,3]", "[5,5,3,8]", "[1,2,2,8]"),
    "valid_s1": (conv(padding="VALID"), "[1,8,8,3]", "[3,3,3,8]", "[1,6,6,8]"),
    "valid_s2": (conv([1, 2, 2, 1], "VALID"), "[1,8,8,3]", "[3,3,3,8]", "[1,3,3,8]"),
    "valid_exact_fit": (conv(padding="VALID"), "[1,3,3,3]", "[3,3,3,8]", "[1,1,1,8]"),
    "valid_rect_strides": (conv([1, 2, 3, 1], "VALID"), "[1,9,10,3]", "[2,4,3,8]",
                           "[1,4,3,8]"),
    "valid_dilation2": (conv(padding="VALID", dilations=[1, 2, 2, 1]), "[1,8,8,3]",
                        "[3,3,3,8]", "[1,4,4,8]"),
    "valid_dilation_rect": (conv(padding="VALID", dilations=[1, 3, 1, 1]), "[1,8,8,3]",
                            "[2,2,3,8]", "[1,5,7,8]"),
    "same_s2_dilation2": (conv([1, 2, 2, 1], dilations=[1, 2, 2, 1]), "[1,7,7,3]",
                          "[3,3,3,8]", "[1,4,4,8]"),
    "valid_s2_dilation2": (conv([1, 2, 2, 1], "VALID", dilations=[1, 2, 2, 1]), "[1,9,9,3]",
                           "[3,3,3,8]", "[1,3,3,8]"),
    "explicit": (conv(padding="EXPLICIT", explicit_paddings=[0, 0, 1, 2, 3, 4, 0, 0]),
                 "[1,8,8,3]", "[3,3,3,16]", "[1,9,13,16]"),
    "explicit_s2": (conv([1, 2, 2, 1], "EXPLICIT", explicit_paddings=[0, 0, 1, 1, 1, 1, 0, 0]),
                    "[1,8,8,3]", "[3,3,3,4]", "[1,4,4,4]"),
    "explicit_zero_pads": (conv(padding="EXPLICIT", explicit_paddings=[0] * 8), "[1,8,8,3]",
                           "[3,3,3,4]", "[1,6,6,4]"),
    "explicit_dilation": (conv(padding="EXPLICIT", explicit_paddings=[0, 0, 2, 2, 2, 2, 0, 0],
                               dilations=[1, 2, 2, 1]),
                          "[1,8,8,3]", "[3,3,3,4]", "[1,8,8,4]"),
    "nchw_same_s2": (nchw([1, 1, 2, 2]), "[1,3,8,8]", "[3,3,3,16]", "[1,16,4,4]"),
    "nchw_valid_rect": (nchw([1, 1, 2, 3], "VALID"), "[1,3,9,10]", "[2,4,3,8]", "[1,8,4,3]"),
    "nchw_explicit": (nchw(padding="EXPLICIT", explicit_paddings=[0, 0, 0, 0, 1, 2, 3, 4]),
                      "[1,3,8,8]", "[3,3,3,16]", "[1,16,9,13]"),
    "nchw_dilation": (nchw(padding="VALID", dilations=[1, 1, 2, 2]), "[1,3,8,8]",
                      "[3,3,3,16]", "[1,16,4,4]"),
    "grouped_2": (conv(), "[1,8,8,6]", "[3,3,3,16]", "[1,8,8,16]"),
    "grouped_depthwise": (conv(), "[1,8,8,4]", "[3,3,1,8]", "[1,8,8,8]"),
    "nchw_grouped": (nchw(), "[1,6,8,8]", "[3,3,2,9]", "[1,9,8,8]"),
    # C++ truncating division: (1 - 4 + 2) / 2 = 0 (Python's // would give -1).
    "valid_truncates_to_zero": (conv([1, 2, 2, 1], "VALID"), "[1,1,1,3]", "[4,4,3,8]",
                                "[1,0,0,8]"),
    "valid_truncates_to_zero_2": (conv([1, 2, 2, 1], "VALID"), "[1,2,2,3]", "[5,5,3,8]",
                                  "[1,0,0,8]"),
    "empty_batch": (conv(), "[0,8,8,3]", "[3,3,3,16]", "[0,8,8,16]"),
    "empty_input_spatial": (conv([1, 2, 2, 1]), "[1,0,8,3]", "[3,3,3,4]", "[1,0,4,4]"),
    "empty_out_depth": (conv(), "[1,8,8,3]", "[3,3,3,0]", "[1,8,8,0]"),
    "empty_filter_height": (conv(padding="VALID"), "[1,8,8,3]", "[0,3,3,16]", "[1,9,6,16]"),
    "empty_out_backprop": (conv(padding="VALID"), "[1,2,2,3]", "[3,3,3,4]", "[1,0,0,4]"),
}
#: valid for the gradient ops, but Conv2D refuses a filter with zero elements (TF's kernel):
#: see the "conv2d_empty_*" FAIL_CASES
CONV2D_REFUSED = ("empty_out_depth", "empty_filter_height")


def _valid_params():
    for case in VALID_CASES:
        for op in ALL:
            if not (op == C2 and case in CONV2D_REFUSED):
                yield pytest.param(op, case, id=f"{case}-{op}")


@pytest.mark.parametrize(("op", "case"), list(_valid_params()))
def test_valid_geometry(op, case):
    attrs, x, f, dy = VALID_CASES[case]
    check_ok(op, attrs, x, f, dy)


# ---------------------------------------------------------------- failing cases
# (attrs, x, f, dy, error class, regex, ops the rule applies to)
OK_X, OK_F, OK_DY = "[1,8,8,3]", "[3,3,3,16]", "[1,8,8,16]"
NX, NF, NDY = "[1,3,8,8]", "[3,3,3,16]", "[1,16,8,8]"
STRIDES4 = r"Sliding window strides field must specify 4 dimensions, but got {}"
DIL4 = r"Sliding window dilations field must specify 4 dimensions, but got {}"
STRIDE_ND = r"does not yet support strides in the batch and depth dimensions"
DIL_ND = r"does not yet support dilations in the batch and depth dimensions"
MISMATCH = r"Size of out_backprop doesn't match computed: actual = {}, computed = {} for {}"

FAIL_CASES = {
    # rank 4 of every input
    "input_rank3": (conv(), "[1,8,8]", OK_F, OK_DY, IA,
                    r"Shape must be rank 4 but is rank 3 for input 'input' \(shape \[1,8,8\]\)",
                    (C2, V2, F1, F2)),
    "input_rank5": (conv(), "[1,8,8,3,1]", OK_F, OK_DY, IA,
                    r"Shape must be rank 4 but is rank 5 for input 'input'", (C2, V2, F1, F2)),
    "input_rank0": (conv(), "[]", OK_F, OK_DY, IA,
                    r"Shape must be rank 4 but is rank 0 for input 'input'", (C2, V2, F1, F2)),
    "filter_rank3": (conv(), OK_X, "[3,3,16]", OK_DY, IA,
                     r"Shape must be rank 4 but is rank 3 for input 'filter' \(shape \[3,3,16\]\)",
                     FILTER_TENSOR),
    "filter_rank5": (conv(), OK_X, "[3,3,3,16,1]", OK_DY, IA,
                     r"must be rank 4 but is rank 5 for input 'filter'", FILTER_TENSOR),
    "filter_sizes_3_values": (conv(), OK_X, "[3,3,16]", OK_DY, IA,
                              r"Conv2DBackpropFilter requires filter_sizes to contain 4 values, "
                              r"but got: 3", (F1,)),
    "filter_sizes_5_values": (conv(), OK_X, "[3,3,3,16,1]", OK_DY, IA,
                              r"requires filter_sizes to contain 4 values, but got: 5", (F1,)),
    "out_backprop_rank3": (conv(), OK_X, OK_F, "[1,8,16]", IA,
                           r"Shape must be rank 4 but is rank 3 for input 'out_backprop'",
                           BACKPROP),
    "out_backprop_rank5": (conv(), OK_X, OK_F, "[1,8,8,16,1]", IA,
                           r"must be rank 4 but is rank 5 for input 'out_backprop'", BACKPROP),
    # strides: 4 of them, 1 on batch and depth (Unimplemented), >= 1
    "strides_len3": (conv([1, 1, 1]), OK_X, OK_F, OK_DY, IA, STRIDES4.format(3), ALL),
    "strides_len0": (conv([]), OK_X, OK_F, OK_DY, IA, STRIDES4.format(0), ALL),
    "strides_len5": (conv([1, 1, 1, 1, 1]), OK_X, OK_F, OK_DY, IA, STRIDES4.format(5), ALL),
    "strides_batch_nhwc": (conv([2, 1, 1, 1]), OK_X, OK_F, OK_DY, UNIMPL, STRIDE_ND, ALL),
    "strides_depth_nhwc": (conv([1, 1, 1, 2]), OK_X, OK_F, OK_DY, UNIMPL, STRIDE_ND, ALL),
    "strides_batch_nchw": (nchw([2, 1, 1, 1]), NX, NF, NDY, UNIMPL, STRIDE_ND, ALL),
    "strides_depth_nchw": (nchw([1, 2, 1, 1]), NX, NF, NDY, UNIMPL,
                           STRIDE_ND + r".*positions 0 and 1 for NCHW", ALL),
    "strides_nhwc_layout_with_nchw": (nchw([1, 2, 2, 1]), NX, NF, NDY, UNIMPL, STRIDE_ND, ALL),
    "strides_zero_height": (conv([1, 0, 1, 1]), OK_X, OK_F, OK_DY, IA,
                            r"Row and column strides should be larger than 0, but got "
                            r"\[1, 0, 1, 1\]", ALL),
    "strides_negative_width": (conv([1, 1, -1, 1]), OK_X, OK_F, OK_DY, IA,
                               r"strides should be larger than 0", ALL),
    "strides_zero_width_nchw": (nchw([1, 1, 1, 0]), NX, NF, NDY, IA,
                                r"strides should be larger than 0", ALL),
    # dilations: the same three rules
    "dilations_len3": (conv(dilations=[1, 1, 1]), OK_X, OK_F, OK_DY, IA, DIL4.format(3), ALL),
    "dilations_len5": (conv(dilations=[1] * 5), OK_X, OK_F, OK_DY, IA, DIL4.format(5), ALL),
    "dilations_empty": (conv(dilations=[]), OK_X, OK_F, OK_DY, IA, DIL4.format(0), ALL),
    "dilations_batch_nhwc": (conv(dilations=[2, 1, 1, 1]), OK_X, OK_F, OK_DY, UNIMPL, DIL_ND,
                             ALL),
    "dilations_depth_nhwc": (conv(dilations=[1, 1, 1, 2]), OK_X, OK_F, OK_DY, UNIMPL, DIL_ND,
                             ALL),
    "dilations_depth_nchw": (nchw(dilations=[1, 2, 1, 1]), NX, NF, NDY, UNIMPL, DIL_ND, ALL),
    "dilations_batch_nchw": (nchw(dilations=[3, 1, 1, 1]), NX, NF, NDY, UNIMPL, DIL_ND, ALL),
    "dilations_zero": (conv(dilations=[1, 0, 1, 1]), OK_X, OK_F, OK_DY, IA,
                       r"Dilated rates should be larger than 0, but got \[1, 0, 1, 1\]", ALL),
    "dilations_negative_nchw": (nchw(dilations=[1, 1, 1, -2]), NX, NF, NDY, IA,
                                r"Dilated rates should be larger than 0", ALL),
    # explicit paddings: present iff EXPLICIT, 8 values, >= 0, zero on batch and depth
    "explicit_missing": (conv(padding="EXPLICIT"), OK_X, OK_F, OK_DY, IA,
                         r"explicit_paddings attribute must contain 8 values when padding is "
                         r"EXPLICIT, but got 0", ALL),
    "explicit_len4": (conv(padding="EXPLICIT", explicit_paddings=[1, 1, 1, 1]), OK_X, OK_F,
                      OK_DY, IA, r"must contain 8 values .* but got 4", ALL),
    "explicit_len10": (conv(padding="EXPLICIT", explicit_paddings=[0] * 10), OK_X, OK_F, OK_DY,
                       IA, r"must contain 8 values .* but got 10", ALL),
    "explicit_with_same": (conv(explicit_paddings=[0] * 8), OK_X, OK_F, OK_DY, IA,
                           r"explicit_paddings attribute must be empty if the padding "
                           r"attribute is not EXPLICIT, but padding is SAME", ALL),
    "explicit_with_valid": (conv(padding="VALID", explicit_paddings=[0, 0, 1, 1, 1, 1, 0, 0]),
                            OK_X, OK_F, OK_DY, IA, r"must be empty .* padding is VALID", ALL),
    "explicit_negative": (conv(padding="EXPLICIT", explicit_paddings=[0, 0, -1, 1, 1, 1, 0, 0]),
                          OK_X, OK_F, OK_DY, IA,
                          r"All elements of explicit_paddings must be nonnegative", ALL),
    "explicit_batch_nhwc": (conv(padding="EXPLICIT", explicit_paddings=[1, 0, 1, 1, 1, 1, 0, 0]),
                            OK_X, OK_F, OK_DY, IA,
                            r"Nonzero explicit padding in the batch or depth dimensions", ALL),
    "explicit_depth_nhwc": (conv(padding="EXPLICIT", explicit_paddings=[0, 0, 1, 1, 1, 1, 0, 1]),
                            OK_X, OK_F, OK_DY, IA, r"Nonzero explicit padding", ALL),
    "explicit_depth_nchw": (nchw(padding="EXPLICIT", explicit_paddings=[0, 0, 1, 0, 1, 1, 1, 1]),
                            NX, NF, NDY, IA, r"Nonzero explicit padding .*NCHW", ALL),
    "explicit_batch_nchw": (nchw(padding="EXPLICIT", explicit_paddings=[0, 2, 0, 0, 1, 1, 1, 1]),
                            NX, NF, NDY, IA, r"Nonzero explicit padding", ALL),
    # depths: filter in_depth > 0, divides input depth, out_depth agrees and divides by groups
    "filter_in_depth_zero": (conv(), OK_X, "[3,3,0,16]", OK_DY, IA,
                             r"filter in_depth \(dim 2\) must be strictly greater than zero, "
                             r"but is 0", ALL),
    "filter_in_depth_zero_empty_input": (conv(), "[1,8,8,0]", "[3,3,0,16]", OK_DY, IA,
                                         r"strictly greater than zero", ALL),
    "depth_not_divisible": (conv(), "[1,8,8,6]", "[3,3,4,16]", OK_DY, IA,
                            r"input depth must be evenly divisible by filter in_depth .*input "
                            r"depth 6, filter in_depth 4", ALL),
    "filter_in_depth_larger": (conv(), OK_X, "[3,3,6,16]", OK_DY, IA,
                               r"evenly divisible .*input depth 3, filter in_depth 6", ALL),
    "depth_not_divisible_nchw": (nchw(), "[1,5,8,8]", "[3,3,2,16]", NDY, IA,
                                 r"evenly divisible .*input depth 5, filter in_depth 2", ALL),
    "out_depth_mismatch": (conv(), OK_X, OK_F, "[1,8,8,8]", IA,
                           r"filter and out_backprop must have the same out_depth, but filter "
                           r"out_depth \(dim 3\) is 16 and out_backprop depth is 8", BACKPROP),
    "out_depth_mismatch_nchw": (nchw(), NX, NF, "[1,8,8,8]", IA,
                                r"same out_depth, but filter out_depth \(dim 3\) is 16 and "
                                r"out_backprop depth is 8", BACKPROP),
    "out_depth_not_divisible_by_groups": (conv(), "[1,8,8,6]", "[3,3,3,15]", "[1,8,8,15]", IA,
                                          r"filter out_depth must be divisible by the number "
                                          r"of groups: out_depth 15, groups 2", ALL),
    # batch
    "batch_mismatch": (conv(), "[2,8,8,3]", OK_F, "[3,8,8,16]", IA,
                       r"input and out_backprop must have the same batch size, but input batch "
                       r"is 2 and out_backprop batch is 3", BACKPROP),
    "batch_mismatch_nchw": (nchw(), "[2,3,8,8]", NF, NDY, IA, r"same batch size", BACKPROP),
    # spatial size of out_backprop vs the forward output size
    "same_s2_height": (conv([1, 2, 2, 1]), OK_X, OK_F, "[1,5,4,16]", IA,
                       MISMATCH.format(5, 4, "height"), BACKPROP),
    "same_s1_width": (conv(), OK_X, OK_F, "[1,8,7,16]", IA, MISMATCH.format(7, 8, "width"),
                      BACKPROP),
    "valid_s1": (conv(padding="VALID"), OK_X, OK_F, OK_DY, IA, MISMATCH.format(8, 6, "height"),
                 BACKPROP),
    "valid_s2": (conv([1, 2, 2, 1], "VALID"), OK_X, OK_F, "[1,4,4,16]", IA,
                 MISMATCH.format(4, 3, "height"), BACKPROP),
    "explicit_size": (conv(padding="EXPLICIT", explicit_paddings=[0, 0, 1, 2, 3, 4, 0, 0]),
                      OK_X, OK_F, "[1,9,12,16]", IA, MISMATCH.format(12, 13, "width"), BACKPROP),
    "dilation_size": (conv(padding="VALID", dilations=[1, 2, 2, 1]), OK_X, OK_F, "[1,6,6,16]",
                      IA, MISMATCH.format(6, 4, "height"), BACKPROP),
    "nchw_size": (nchw([1, 1, 2, 2]), NX, NF, "[1,16,4,3]", IA, MISMATCH.format(3, 4, "width"),
                  BACKPROP),
    "nhwc_shapes_read_as_nchw": (nchw([1, 1, 2, 2]), OK_X, "[3,3,8,16]", "[1,4,4,16]", IA,
                                 r"same out_depth|doesn't match", BACKPROP),
    # negative output size (after C++ truncation) is an error for every conv op
    "valid_negative_s1": (conv(padding="VALID"), "[1,1,1,3]", "[5,5,3,8]", "[1,1,1,8]", IA,
                          r"Computed output size would be negative: -3 \[input_size: 1, "
                          r"effective_filter_size: 5, stride: 1\]", ALL),
    "valid_negative_s2": (conv([1, 2, 2, 1], "VALID"), "[1,1,1,3]", "[5,5,3,8]", "[1,1,1,8]",
                          IA, r"Computed output size would be negative: -1 \[input_size: 1, "
                              r"effective_filter_size: 5, stride: 2\]", ALL),
    "valid_negative_by_dilation": (conv(padding="VALID", dilations=[1, 3, 1, 1]), "[1,5,5,3]",
                                   "[3,3,3,8]", "[1,1,3,8]", IA,
                                   r"would be negative: -1 \[input_size: 5, "
                                   r"effective_filter_size: 7", ALL),
    # Conv2D refuses a filter with zero elements (the gradient ops accept it: VALID_CASES)
    "conv2d_empty_filter_height": (conv(padding="VALID"), OK_X, "[0,3,3,16]", "[1,9,6,16]", IA,
                                   r"filter must not have zero elements \(i.e. all dimensions "
                                   r"must be non-zero\), but filter dim 0 \(filter_height\) is 0",
                                   (C2,)),
    "conv2d_empty_out_depth": (conv(), OK_X, "[3,3,3,0]", "[1,8,8,0]", IA,
                               r"filter must not have zero elements .*filter dim 3 "
                               r"\(out_depth\) is 0", (C2,)),
}


def _fail_params():
    for case, row in FAIL_CASES.items():
        for op in ALL:
            if op in row[-1]:
                yield pytest.param(op, case, id=f"{case}-{op}")


@pytest.mark.parametrize(("op", "case"), list(_fail_params()))
def test_invalid_geometry(op, case):
    attrs, x, f, dy, error_cls, regex, _ = FAIL_CASES[case]
    infer_error(op, attrs, spec(op, x, f, dy), error_cls, regex)


def test_every_fail_case_has_a_passing_twin():
    # Each failing case differs from a valid case in one respect; make sure the table did
    # not drift into testing only errors: the corrected inputs build.
    check_ok(V2, conv([1, 2, 2, 1]), OK_X, OK_F, "[1,4,4,16]")
    check_ok(V2, nchw([1, 1, 2, 2]), NX, NF, "[1,16,4,4]")
    check_ok(V1, conv(padding="VALID"), OK_X, OK_F, "[1,6,6,16]")
    check_ok(C2, conv(padding="VALID", dilations=[1, 3, 1, 1]), "[1,7,5,3]", "[3,3,3,8]",
             "[1,1,3,8]")
    check_ok(F1, conv([1, 2, 2, 1]), OK_X, OK_F, "[1,4,4,16]")
    check_ok(F2, nchw([1, 1, 2, 2]), NX, NF, "[1,16,4,4]")
    check_ok(C2, conv(padding="VALID"), OK_X, OK_F, "[1,6,6,16]")


# ---------------------------------------------------------------- dtypes
#: TF's types: the filter gradients have no int32 kernel
FLOAT_TYPES = (DT_HALF, DT_BFLOAT16, DT_FLOAT, DT_DOUBLE)
ALLOWED = {C2: FLOAT_TYPES + (DT_INT32,), V1: FLOAT_TYPES + (DT_INT32,),
           V2: FLOAT_TYPES + (DT_INT32,), F1: FLOAT_TYPES, F2: FLOAT_TYPES}


def _expected(op):
    return {C2: OK_DY, F1: OK_F, F2: OK_F}.get(op, OK_X)


@pytest.mark.parametrize(("op", "dtype"), [(op, t) for op in ALL for t in ALLOWED[op]])
def test_allowed_dtypes(op, dtype):
    infer_ok(op, conv(), spec(op, OK_X, OK_F, OK_DY), _expected(op), dtype=dtype)


@pytest.mark.parametrize("op", ALL)
def test_disallowed_dtype(op):
    which = "filter" if op == V1 else "input"
    names = ", ".join(t.name for t in ALLOWED[op])
    infer_error(op, conv(), spec(op, OK_X, OK_F, OK_DY), IA,
                rf"Value passed to parameter '{which}' has DataType int64 not in list of "
                rf"allowed values: {names} for node", dtype=DT_INT64)


@pytest.mark.parametrize("op", [F1, F2])
def test_filter_gradients_refuse_int32(op):
    infer_error(op, conv(), spec(op, OK_X, OK_F, OK_DY), IA,
                r"Value passed to parameter 'input' has DataType int32 not in list of allowed "
                r"values: float16, bfloat16, float32, float64", dtype=DT_INT32)


@pytest.mark.parametrize("op", [C2, V2, F2])
def test_inconsistent_type_attr(op):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_DOUBLE, shape=[1, 8, 8, 3])
    f = ops.Placeholder(root, DT_FLOAT, shape=[3, 3, 3, 16])
    dy = ops.Placeholder(root, DT_FLOAT, shape=[1, 8, 8, 16])
    ins = (x, f) if op == C2 else (x, f, dy)
    getattr(ops, op)(root, *ins, [1, 1, 1, 1], "SAME")
    (err,) = root.status().errors
    assert isinstance(err, IA)
    assert "Inconsistent values for attr 'T': float64 (from input 'input') vs. float32 " \
           "(from input 'filter')" in str(err)
    assert err.op_type == op


def test_v1_filter_sizes_must_be_int32():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[1, 8, 8, 3])
    sizes = ops.Const(root, [3.0, 3.0, 3.0, 16.0])
    dy = ops.Placeholder(root, DT_FLOAT, shape=[1, 8, 8, 16])
    ops.Conv2DBackpropFilter(root, x, sizes, dy, [1, 1, 1, 1], "SAME")
    assert "Input 'filter_sizes' of 'Conv2DBackpropFilter' Op has type float32 that does not " \
           "match expected type of int32" in root.status().message


def test_v1_input_sizes_must_be_int32():
    root = Scope.NewRootScope()
    sizes = ops.Const(root, [1.0, 8.0, 8.0, 3.0])
    f = ops.Placeholder(root, DT_FLOAT, shape=[3, 3, 3, 16])
    dy = ops.Placeholder(root, DT_FLOAT, shape=[1, 8, 8, 16])
    ops.Conv2DBackpropInput(root, sizes, f, dy, [1, 1, 1, 1], "SAME")
    assert "Input 'input_sizes' of 'Conv2DBackpropInput' Op has type float32 that does not " \
           "match expected type of int32" in root.status().message


# ---------------------------------------------------------------- attr kinds and values
@pytest.mark.parametrize("op", ALL)
@pytest.mark.parametrize(("attrs", "regex"), [
    ({"strides": 1, "padding": "SAME"}, r"Attr 'strides' expects a list\(int\) but got int 1"),
    ({"strides": "1111", "padding": "SAME"}, r"Attr 'strides' expects a list\(int\)"),
    ({"strides": [1.0, 1.0, 1.0, 1.0], "padding": "SAME"},
     r"Attr 'strides' expects a value of type 'list\(int\)' but got float 1.0"),
    ({"strides": [1, 1, 1, 1], "padding": "FULL"},
     r"Value for attr 'padding' of \"FULL\" is not in the list of allowed values: \"SAME\", "
     r"\"VALID\", \"EXPLICIT\""),
    ({"strides": [1, 1, 1, 1], "padding": 0},
     r"Attr 'padding' expects a value of type 'string' but got int 0"),
    (conv(data_format="NWHC"), r"Value for attr 'data_format' of \"NWHC\" is not in the list"),
    (conv(use_cudnn_on_gpu="yes"), r"Attr 'use_cudnn_on_gpu' expects a value of type 'bool'"),
    (conv(dilations=[1, 2.5, 1, 1]), r"Attr 'dilations' expects a value of type 'list\(int\)'"),
    (conv(explicit_paddings=5), r"Attr 'explicit_paddings' expects a list\(int\)"),
    (conv(T=DT_FLOAT), r"Attr 'T' is inferred from the inputs"),
    (conv(strides_typo=[1, 1, 1, 1]), r"Attr 'strides_typo' does not exist; \w+ takes attrs: "
                                      r"strides, padding, use_cudnn_on_gpu"),
    ({"strides": [1, 1, 1, 1]}, r"Missing required attr 'padding'"),
    ({"padding": "SAME"}, r"Missing required attr 'strides' \(list\(int\)\)"),
])
def test_attr_validation(op, attrs, regex):
    infer_error(op, attrs, spec(op, OK_X, OK_F, OK_DY), IA, regex)


# ---------------------------------------------------------------- partial shapes
PARTIAL_OK = [
    # (op, attrs, inputs, expected)
    # unknown batch stays unknown
    (C2, conv(), "[?,8,8,3];[3,3,3,16]", "[?,8,8,16]"),
    (C2, conv([1, 2, 2, 1]), "[?,8,8,3];[3,3,3,16]", "[?,4,4,16]"),
    (V2, conv([1, 2, 2, 1]), "[?,8,8,3];[3,3,3,16];[?,4,4,16]", "[?,8,8,3]"),
    (V1, conv(), "[4];[3,3,3,16];[?,8,8,16]", "[?,8,8,?]"),
    # a batch known on one side is the batch of the other
    (V2, conv([1, 2, 2, 1]), "[?,8,8,3];[3,3,3,16];[5,4,4,16]", "[d2_0,8,8,3]"),
    (V2, conv([1, 2, 2, 1]), "[5,8,8,3];[3,3,3,16];[?,4,4,16]", "[d0_0,8,8,3]"),
    # unknown input rank with a known filter: what can be known is known
    (C2, conv(), "?;[3,3,3,16]", "[?,?,?,16]"),
    (C2, nchw(), "?;[3,3,3,16]", "[?,16,?,?]"),
    (C2, conv(), "[?,?,?,?];[3,3,3,16]", "[?,?,?,d1_3]"),
    (V2, conv([1, 2, 2, 1]), "?;[3,3,3,16];?", "[?,?,?,?]"),
    (V2, conv([1, 2, 2, 1]), "?;?;?", "[?,?,?,?]"),
    (C2, conv([1, 2, 2, 1], "VALID"), "?;?", "[?,?,?,?]"),
    # unknown filter: SAME's output size does not depend on it
    (C2, conv([1, 2, 2, 1]), "[1,8,9,3];?", "[1,4,5,?]"),
    (C2, conv([1, 2, 2, 1], "VALID"), "[1,8,9,3];?", "[1,?,?,?]"),
    (C2, conv([1, 2, 2, 1], "VALID"), "[1,8,9,3];[3,?,3,?]", "[1,3,?,?]"),
    (C2, conv(), "[1,8,8,3];[3,3,3,?]", "[1,8,8,?]"),
    # unknown spatial input dims stay unknown for Conv2D
    (C2, conv([1, 2, 2, 1]), "[1,?,8,3];[3,3,3,16]", "[1,?,4,16]"),
    # V2: stride 1 lets the input's spatial dims be inferred from out_backprop
    (V2, conv(), "[1,?,?,3];[3,3,3,16];[1,8,8,16]", "[1,8,8,3]"),
    (V2, conv(padding="VALID"), "[1,?,?,3];[3,3,3,16];[1,6,7,16]", "[1,8,9,3]"),
    (V2, conv(padding="VALID", dilations=[1, 2, 2, 1]), "[1,?,?,3];[3,3,3,16];[1,4,4,16]",
     "[1,8,8,3]"),
    (V2, conv(padding="EXPLICIT", explicit_paddings=[0, 0, 1, 2, 3, 4, 0, 0]),
     "[1,?,?,3];[3,3,3,16];[1,9,13,16]", "[1,8,8,3]"),
    (V2, nchw(padding="VALID"), "[1,3,?,?];[3,3,3,16];[1,16,6,6]", "[1,3,8,8]"),
    (V2, conv(), "[1,?,?,3];?;[1,8,8,16]", "[1,8,8,3]"),
    (V2, conv(), "?;[3,3,3,16];[2,8,8,16]", "[2,8,8,?]"),
    # ... but not with stride > 1 (several input sizes give the same output size)
    (V2, conv([1, 2, 2, 1]), "[1,?,?,3];[3,3,3,16];[1,4,4,16]", "[1,?,?,3]"),
    (V2, conv([1, 2, 1, 1]), "[1,?,?,3];[3,3,3,16];[1,4,8,16]", "[1,?,8,3]"),
    # checks that need an unknown dim are deferred (no false errors)
    (V2, conv([1, 2, 2, 1]), "[1,8,8,?];[3,3,3,16];[1,4,4,16]", "[1,8,8,?]"),
    (V2, conv([1, 2, 2, 1]), "[1,8,8,3];[3,3,?,?];[1,4,4,?]", "[1,8,8,3]"),
    (V2, conv([1, 2, 2, 1], "VALID"), "[1,8,8,3];?;[1,3,3,16]", "[1,8,8,3]"),
    (V2, conv(), "[1,8,8,6];[3,3,?,16];[1,8,8,16]", "[1,8,8,6]"),
    (V2, conv(), "[1,8,8,3];[3,3,3,16];[1,8,8,?]", "[1,8,8,3]"),
    (V2, conv(), "[1,8,8,3];[3,3,3,16];?", "[1,8,8,3]"),
    (C2, conv(), "[1,8,8,?];[3,3,3,16]", "[1,8,8,16]"),
    # V1: input_sizes from a Placeholder is not a build-time constant
    (V1, conv([1, 2, 2, 1]), "[4];[3,3,3,16];[2,4,4,16]", "[2,?,?,?]"),
    (V1, conv([1, 2, 2, 1]), "?;[3,3,3,16];[2,4,4,16]", "[2,?,?,?]"),
    (V1, conv([1, 2, 2, 1]), "[?];[3,3,3,16];[2,4,4,16]", "[2,?,?,?]"),
    (V1, conv(), "[2];[3,3,3,16];[1,8,8,16]", "[1,8,8,3]"),   # stride 1 SAME: H, W recovered
    # V1: constant input_sizes, 4 values or 2 values [H, W]
    (V1, conv([1, 2, 2, 1]), "=[1,8,8,3];[3,3,3,16];[1,4,4,16]", "[1,8,8,3]"),
    (V1, conv([1, 2, 2, 1]), "=[8,8];[3,3,3,16];[1,4,4,16]", "[1,8,8,3]"),
    (V1, conv([1, 2, 2, 1]), "=[8,8];[3,3,3,16];[?,4,4,16]", "[?,8,8,3]"),
    (V1, nchw([1, 1, 2, 2]), "=[8,8];[3,3,3,16];[2,16,4,4]", "[2,3,8,8]"),
    (V1, nchw([1, 1, 2, 2]), "=[2,3,8,8];[3,3,3,16];[2,16,4,4]", "[2,3,8,8]"),
    (V1, conv(padding="VALID"), "=[1,8,8,3];?;?", "[1,8,8,3]"),
    # V1: input_sizes = Shape(tensor of fully known shape) is a build-time constant
    (V1, conv([1, 2, 2, 1]), "shape_of:[1,8,8,3];[3,3,3,16];[1,4,4,16]", "[1,8,8,3]"),
    (V1, conv([1, 2, 2, 1]), "shape_of:[8,8];[3,3,3,16];[1,4,4,16]", "[1,8,8,3]"),
    (V1, conv([1, 2, 2, 1]), "shape_of:[1,?,8,3];[3,3,3,16];[1,4,4,16]", "[1,?,8,3]"),  # partial value
    # filter gradients: the filter's shape, out_depth from out_backprop where unknown
    (F2, conv([1, 2, 2, 1]), "[?,8,8,3];[3,3,3,16];[?,4,4,16]", "[3,3,3,16]"),
    (F2, conv(), "[?,8,8,3];[3,3,?,?];[?,8,8,16]", "[3,3,?,16]"),
    (F2, conv(), "?;[3,3,3,?];?", "[3,3,3,?]"),
    (F2, conv(), "?;?;?", "[?,?,?,?]"),
    (F2, nchw([1, 1, 2, 2]), "[2,3,8,8];?;[2,16,4,4]", "[?,?,?,16]"),
    (F1, conv(), "[?,8,8,3];[4];[?,8,8,16]", "[?,?,?,16]"),
    (F1, conv(), "[?,8,8,3];?;[?,8,8,16]", "[?,?,?,16]"),
    (F1, conv([1, 2, 2, 1]), "[1,8,8,3];=[3,3,3,16];[1,4,4,16]", "[3,3,3,16]"),
    (F1, conv([1, 2, 2, 1]), "[1,8,8,3];shape_of:[3,?,3,16];[1,4,4,16]", "[3,?,3,16]"),
    (F1, conv([1, 2, 2, 1]), "[1,8,8,3];shape_of:[3,3,3,?];[1,4,4,16]", "[3,3,3,16]"),
    (F1, conv([1, 2, 2, 1], "VALID"), "?;=[3,3,3,16];?", "[3,3,3,16]"),
]


@pytest.mark.parametrize(("op", "attrs", "inputs", "expected"), PARTIAL_OK,
                         ids=[f"{r[0]}-{r[2]}" for r in PARTIAL_OK])
def test_partial_shapes(op, attrs, inputs, expected):
    infer_ok(op, attrs, inputs, expected)


PARTIAL_ERRORS = [
    # what is known is still checked when other dims are unknown
    (C2, conv(), "?;[3,3,3]", IA, r"must be rank 4 but is rank 3 for input 'filter'"),
    (V2, conv(), "[?,8,8,3];[3,3,3,16];[?,8,8,8]", IA, r"same out_depth"),
    (V2, conv([1, 2, 2, 1]), "[?,8,8,?];[3,3,?,16];[?,5,4,?]", IA,
     MISMATCH.format(5, 4, "height")),
    (V2, conv([1, 2, 2, 1]), "[1,8,8,3];?;[1,5,4,16]", IA, MISMATCH.format(5, 4, "height")),
    (V2, conv(), "[1,8,8,6];[3,3,3,?];[1,8,8,15]", IA, r"divisible by the number of groups"),
    (V2, conv(), "?;[3,3,3,16];[2,8,8,8]", IA, r"same out_depth"),
    (C2, conv([1, 2, 2, 1], "VALID"), "[?,1,?,3];[5,?,3,8]", IA, r"would be negative"),
    (C2, conv([2, 1, 1, 1]), "?;?", UNIMPL, STRIDE_ND),
    (V2, conv(padding="EXPLICIT"), "?;?;?", IA, r"must contain 8 values"),
    # V1 input_sizes
    (V1, conv(), "[3];[3,3,3,16];[1,8,8,16]", IA,
     r"Conv2DBackpropInput requires input_sizes to contain 4 values or 2 values, but got: 3"),
    (V1, conv(), "=[1,8,8];[3,3,3,16];[1,8,8,16]", IA, r"4 values or 2 values, but got: 3"),
    (V1, conv(), "=[1,8,8,3,1];[3,3,3,16];[1,8,8,16]", IA, r"4 values or 2 values, but got: 5"),
    (V1, conv(), "[2,2];[3,3,3,16];[1,8,8,16]", IA, r"input_sizes must be 1-D, but has shape"),
    (V1, conv(), "=[1,-8,8,3];[3,3,3,16];[1,8,8,16]", IA,
     r"All elements of input_sizes must be >= 0, but got \[1, -8, 8, 3\]"),
    (V1, conv(), "=[2,8,8,3];[3,3,3,16];[1,8,8,16]", IA, r"same batch size"),
    (V1, conv(), "=[1,8,8,6];[3,3,4,16];[1,8,8,16]", IA, r"evenly divisible"),
    (V1, conv([1, 2, 2, 1]), "=[8,9];[3,3,3,16];[1,4,4,16]", IA,
     MISMATCH.format(4, 5, "width")),
    (V1, conv([1, 2, 2, 1]), "shape_of:[1,8,8,3];[3,3,3,16];[1,5,4,16]", IA,
     MISMATCH.format(5, 4, "height")),
    (V1, conv([1, 2, 2, 1]), "shape_of:[1,8,8,3];[3,3,3,16];[2,4,4,16]", IA,
     r"same batch size"),
    # filter gradients: the input gradient's rules on what is known
    (F2, conv([1, 2, 2, 1]), "[?,8,8,?];[3,3,?,16];[?,5,4,?]", IA,
     MISMATCH.format(5, 4, "height")),
    (F2, conv(), "[?,8,8,3];[3,3,3,16];[?,8,8,8]", IA, r"same out_depth"),
    (F2, conv(), "[1,8,8,6];[3,3,3,?];[1,8,8,15]", IA, r"divisible by the number of groups"),
    (F1, conv(), "[1,8,8,3];[3];[1,8,8,16]", IA,
     r"Conv2DBackpropFilter requires filter_sizes to contain 4 values, but got: 3"),
    (F1, conv(), "[1,8,8,3];[2,2];[1,8,8,16]", IA,
     r"filter_sizes must be 1-D, but has shape \[2,2\]"),
    (F1, conv(), "[1,8,8,3];=[3,-3,3,16];[1,8,8,16]", IA,
     r"All elements of filter_sizes must be >= 0, but got \[3, -3, 3, 16\]"),
    (F1, conv([1, 2, 2, 1]), "[1,8,8,3];shape_of:[3,3,3,16];[1,5,4,16]", IA,
     MISMATCH.format(5, 4, "height")),
    (F1, conv(), "[2,8,8,3];shape_of:[3,3,3,16];[1,8,8,16]", IA, r"same batch size"),
    (F1, conv(), "[1,8,8,6];shape_of:[3,3,4,16];[1,8,8,16]", IA, r"evenly divisible"),
]


@pytest.mark.parametrize(("op", "attrs", "inputs", "error_cls", "regex"), PARTIAL_ERRORS,
                         ids=[f"{r[0]}-{r[2]}" for r in PARTIAL_ERRORS])
def test_partial_shape_errors(op, attrs, inputs, error_cls, regex):
    infer_error(op, attrs, inputs, error_cls, regex)


# ---------------------------------------------------------------- message and site
def test_message_names_op_site_and_shapes():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[1, 8, 8, 3])
    w = ops.Placeholder(root.WithOpName("w"), DT_FLOAT, shape=[3, 3, 3, 16])
    dy = ops.Placeholder(root.WithOpName("dy"), DT_FLOAT, shape=[1, 5, 4, 16])
    tower = root.NewSubScope("tower")
    line = sys._getframe().f_lineno + 1
    dx = ops.Conv2DBackpropInputV2(tower.WithOpName("dx"), x, w, dy, [1, 2, 2, 1], "SAME")
    err = root.status().errors[0]
    site = f"{os.path.abspath(__file__)}:{line}"
    assert err.site == site
    assert (err.op_name, err.op_type) == ("tower/dx", "Conv2DBackpropInputV2")
    assert str(err) == (
        "Size of out_backprop doesn't match computed: actual = 5, computed = 4 for height "
        "(input 8, filter 3, stride 2, dilation 1, padding SAME) for node 'tower/dx' "
        f"(op: 'Conv2DBackpropInputV2') created at {site} with input shapes: [1,8,8,3], "
        "[3,3,3,16], [1,5,4,16].")
    assert dx.operation.failed and dx.operation.site == site


def test_exit_on_error_raises_the_shape_error_at_the_call():
    root = Scope.NewRootScope().ExitOnError()
    x = ops.Placeholder(root, DT_FLOAT, shape=[1, 8, 8])
    w = ops.Placeholder(root, DT_FLOAT, shape=[3, 3, 3, 16])
    with pytest.raises(InvalidArgumentError, match=r"must be rank 4 but is rank 3") as info:
        line = sys._getframe().f_lineno + 1
        ops.Conv2D(root, x, w, [1, 1, 1, 1], "SAME")
    assert info.value.site == f"{os.path.abspath(__file__)}:{line}"
    assert isinstance(info.value, ValueError)


def test_unimplemented_is_not_implemented_error():
    root = Scope.NewRootScope().ExitOnError()
    x = ops.Placeholder(root, DT_FLOAT, shape=[1, 8, 8, 3])
    w = ops.Placeholder(root, DT_FLOAT, shape=[3, 3, 3, 16])
    with pytest.raises(NotImplementedError, match="strides in the batch and depth"):
        ops.Conv2D(root, x, w, [2, 1, 1, 1], "SAME")


# ---------------------------------------------------------------- chains
def test_conv_then_backprop_round_trip_shapes():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[None, 17, 16, 3])
    w = ops.Placeholder(root, DT_FLOAT, shape=[3, 3, 3, 8])
    y = ops.Conv2D(root, x, w, [1, 2, 2, 1], "SAME")
    assert y.output.shape.as_list() == [None, 9, 8, 8]
    dx = ops.Conv2DBackpropInputV2(root, x, w, y, [1, 2, 2, 1], "SAME")
    dx1 = ops.Conv2DBackpropInput(root, ops.Shape(root, x), w, y, [1, 2, 2, 1], "SAME")
    assert root.ok(), root.status()
    assert dx.output.shape.as_list() == [None, 17, 16, 3]
    # Shape of a partially known tensor has a partial build-time value (as TF's
    # ShapeRefiner gives): V1 learns [?, 17, 16, 3].
    assert dx1.output.shape.as_list() == [None, 17, 16, 3]
    assert dx1.output.dtype is DT_FLOAT


def test_conv_then_filter_gradient_round_trip_shapes():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[None, 17, 16, 6])
    w = ops.Placeholder(root, DT_FLOAT, shape=[3, 2, 3, 8])
    y = ops.Conv2D(root, x, w, [1, 2, 2, 1], "SAME", dilations=[1, 1, 2, 1])
    dw = ops.Conv2DBackpropFilterV2(root, x, w, y, [1, 2, 2, 1], "SAME",
                                    dilations=[1, 1, 2, 1])
    dw1 = ops.Conv2DBackpropFilter(root, x, ops.Shape(root, w), y, [1, 2, 2, 1], "SAME",
                                   dilations=[1, 1, 2, 1])
    assert root.ok(), root.status()
    assert dw.output.shape.as_list() == dw1.output.shape.as_list() == [3, 2, 3, 8]
    assert dw1.output.dtype is DT_FLOAT


def test_v1_input_sizes_int32_placeholder_value_unknown():
    root = Scope.NewRootScope()
    sizes = ops.Placeholder(root, DT_INT32, shape=[4])
    w = ops.Placeholder(root, DT_FLOAT, shape=[3, 3, 3, 8])
    dy = ops.Placeholder(root, DT_FLOAT, shape=[2, 4, 4, 8])
    dx = ops.Conv2DBackpropInput(root, sizes, w, dy, [1, 2, 2, 1], "VALID")
    assert root.ok()
    assert dx.output.shape.as_list() == [2, None, None, None]
