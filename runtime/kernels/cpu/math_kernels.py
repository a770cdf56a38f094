"""CPU kernels of the elementwise math ops (ops/math_ops.py).

Unary and binary ops are rows of two tables (op type -> numpy function) registered by one
loop each; the functions see numpy's warnings silenced (overflow to inf, NaN from a domain
error and integer wrap-around are the results, as in TF's C++ kernels) and their results
are converted to the op's output dtype. Integer semantics follow C++: Div truncates toward
zero, FloorDiv floors, FloorMod takes the divisor's sign, and a zero divisor is an error.
The backward ops (SigmoidGrad ... ReciprocalGrad) are rows of the binary table;
BroadcastGradientArgs computes TF's BCast reduction indices.
"""

from __future__ import annotations

import math

import numpy as np

from opgraph import dtypes as dt
from opgraph import errors
from runtime.kernel_registry import Kernel, register_kernel

# The same sentences as ops/math_ops.py, which refuses constant inputs at build time.
INTEGER_DIVISION_BY_ZERO = "Integer division by zero"
NEGATIVE_INTEGER_POWER = "Integers to negative integer powers are not allowed"


def _is_int(a) -> bool:
    return a.dtype.kind in "iu"


def _refuse_zero(divisor, out_size: int) -> None:
    if out_size and not np.all(divisor):
        raise errors.InvalidArgumentError(INTEGER_DIVISION_BY_ZERO)


def _out_size(x, y) -> int:
    return math.prod(np.broadcast_shapes(x.shape, y.shape))


# ---- unary functions ----------------------------------------------------------------------
def _sign(x):
    if x.dtype.kind == "c":
        magnitude = np.abs(x)
        return np.where(magnitude == 0, 0, x / np.where(magnitude == 0, 1, magnitude))
    return np.sign(x)


def _reciprocal(x):
    if _is_int(x):
        _refuse_zero(x, x.size)
        return np.where(np.abs(x) == 1, x, 0)      # C++ 1 / x: 0 unless x is 1 or -1
    return np.reciprocal(x)


def _sigmoid(x):
    if x.dtype.kind == "c":
        return 1 / (1 + np.exp(-x))
    e = np.exp(-np.abs(x))                          # in (0, 1]: never overflows
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


_ERF_SERIES_TERMS = 60       # enough for |x| < 3 to float64 precision
_ERFC_FRACTION_DEPTH = 60    # enough for |x| >= 3 to float64 precision


def _erf(x):
    """erf in float64: a positive-term series below |x| = 3, erfc's continued fraction
    above (both converge to full float64 precision in the fixed number of steps)."""
    z = np.asarray(x, dtype=np.float64)
    a = np.abs(z)
    out = np.empty_like(z)
    small = a < 3.0
    s = a[small]
    # erf(s) = 2/sqrt(pi) exp(-s^2) sum_n 2^n s^(2n+1) / (1*3*...*(2n+1))
    term = s.copy()
    total = s.copy()
    s2 = 2.0 * s * s
    for n in range(1, _ERF_SERIES_TERMS):
        term *= s2 / (2 * n + 1)
        total += term
    out[small] = 2.0 / math.sqrt(math.pi) * np.exp(-s * s) * total
    big = ~small
    b = a[big]
    # erfc(b) = exp(-b^2)/sqrt(pi) / (b + (1/2)/(b + 1/(b + (3/2)/(b + ...))))
    t = b.copy()
    for k in range(_ERFC_FRACTION_DEPTH, 0, -1):
        t = b + (k / 2.0) / t
    out[big] = 1.0 - np.exp(-b * b) / math.sqrt(math.pi) / t
    return np.copysign(out, z)


def _round(x):
    return x.copy() if _is_int(x) else np.rint(x)     # rint rounds halves to even


_UNARY = {
    "Neg": np.negative,
    "Abs": np.abs,
    "Sign": _sign,
    "Square": np.square,
    "Sqrt": np.sqrt,
    "Rsqrt": lambda x: np.reciprocal(np.sqrt(x)),
    "Reciprocal": _reciprocal,
    "Inv": _reciprocal,
    "Exp": np.exp,
    "Expm1": np.expm1,
    "Log": np.log,
    "Log1p": np.log1p,
    "Sigmoid": _sigmoid,
    "Tanh": np.tanh,
    "Sin": np.sin,
    "Cos": np.cos,
    "Erf": _erf,
    "Floor": np.floor,
    "Ceil": np.ceil,
    "Round": _round,
    "LogicalNot": np.logical_not,
    "Conj": np.conj,
}


# ---- binary functions ---------------------------------------------------------------------
def _add(x, y):
    if x.dtype.kind in "OUS":                          # strings concatenate
        return np.add(x.astype(object), y.astype(object))
    return np.add(x, y)


def _truncate_divide(x, y):
    q = np.floor_divide(x, y)
    # floor -> toward zero: one up where the division was inexact and the signs differ
    return q + ((q * y != x) & ((x < 0) != (y < 0)))


def _div(x, y):
    if _is_int(x):
        _refuse_zero(y, _out_size(x, y))
        return _truncate_divide(x, y)
    return np.true_divide(x, y)


def _floor_div(x, y):
    if _is_int(x):
        _refuse_zero(y, _out_size(x, y))
        return np.floor_divide(x, y)
    return np.floor(np.true_divide(x, y))              # TF: floor(x / y), not numpy's //


def _floor_mod(x, y):
    if _is_int(x):
        _refuse_zero(y, _out_size(x, y))
        return np.remainder(x, y)                      # integer remainder: the sign of y
    r = np.fmod(x, y)
    return np.where((r != 0) & ((y < 0) != (r < 0)), r + y, r)


def _div_no_nan(x, y):
    zero = y == 0
    return np.where(zero, 0, np.true_divide(x, np.where(zero, 1, y)))


def _pow(x, y):
    if _is_int(y):
        if _out_size(x, y) and np.any(y < 0):
            raise errors.InvalidArgumentError(NEGATIVE_INTEGER_POWER)
    return np.power(x, y)


def _squared_difference(x, y):
    d = np.subtract(x, y)
    return d * np.conj(d) if d.dtype.kind == "c" else d * d


_BINARY = {
    "Add": _add,
    "AddV2": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": _div,
    "RealDiv": _div,
    "FloorDiv": _floor_div,
    "FloorMod": _floor_mod,
    "DivNoNan": _div_no_nan,
    "Pow": _pow,
    "Maximum": np.maximum,
    "Minimum": np.minimum,
    "SquaredDifference": _squared_difference,
    "Less": np.less,
    "LessEqual": np.less_equal,
    "Greater": np.greater,
    "GreaterEqual": np.greater_equal,
    "LogicalAnd": np.logical_and,
    "LogicalOr": np.logical_or,
    # backward ops (y, dy): TF's cwise_ops.h gradient functors, conj(y) where TF takes it
    "SigmoidGrad": lambda y, dy: dy * y * (1 - y),
    "TanhGrad": lambda y, dy: dy * (1 - y * y),
    "SqrtGrad": lambda y, dy: 0.5 * dy / np.conj(y),
    "RsqrtGrad": lambda y, dy: -0.5 * (dy * np.conj(y)) * (np.conj(y) * np.conj(y)),
    "ReciprocalGrad": lambda y, dy: -dy * np.conj(y) * np.conj(y),
}

_REAL_TYPES = (dt.DT_HALF, dt.DT_BFLOAT16, dt.DT_FLOAT, dt.DT_DOUBLE, dt.DT_INT8, dt.DT_INT16,
               dt.DT_INT32, dt.DT_INT64, dt.DT_UINT8, dt.DT_UINT16)
#: TF registers these CPU kernels for real types only (no floor or order for complex).
_CPU_CONSTRAINTS = {"FloorDiv": {"T": _REAL_TYPES}}


def _output_dtype(node) -> np.dtype:
    return node.output_dtypes[0].as_numpy_dtype


def _register(op_type: str, compute) -> None:
    compute.__name__ = compute.__qualname__ = f"{op_type.lower()}_cpu"
    register_kernel(op_type, constraints=_CPU_CONSTRAINTS.get(op_type))(compute)


#: ops whose numpy calls never raise floating-point warnings that matter for speed-critical
#: chains: they run without an errstate context (about 2 us per call), the rest inside one.
_PLAIN = {"Add", "AddV2", "Sub", "Mul", "Maximum", "Minimum", "Less", "LessEqual",
          "Greater", "GreaterEqual", "LogicalAnd", "LogicalOr", "Neg", "LogicalNot",
          "Floor", "Ceil", "Abs"}


def _elementwise_kernel(op_type, fn):
    """A Kernel running ``fn`` on the inputs, converting the result to the node's output
    dtype only when numpy's result type differs."""
    plain = op_type in _PLAIN

    class Elementwise(Kernel):
        def __init__(self, node):
            super().__init__(node)
            want = node.output_dtypes[0].as_numpy_dtype

            # Results are always ndarrays (a ufunc on 0-d arrays returns a numpy scalar).
            def quiet(*inputs):
                with np.errstate(all="ignore"):
                    r = fn(*inputs)
                return r if r.__class__ is np.ndarray and r.dtype == want else \
                    np.asarray(r, dtype=want)

            def fast(*inputs):
                r = fn(*inputs)
                return r if r.__class__ is np.ndarray and r.dtype == want else \
                    np.asarray(r, dtype=want)

            self.compute = fast if plain else quiet

    Elementwise.__name__ = Elementwise.__qualname__ = f"{op_type}Cpu"
    register_kernel(op_type, constraints=_CPU_CONSTRAINTS.get(op_type))(Elementwise)


def _register_unary(op_type, fn):
    _elementwise_kernel(op_type, fn)


def _register_binary(op_type, fn):
    _elementwise_kernel(op_type, fn)


for _op_type, _fn in _UNARY.items():
    _register_unary(_op_type, _fn)
for _op_type, _fn in _BINARY.items():
    _register_binary(_op_type, _fn)


# ---- ops with attrs or more inputs --------------------------------------------------------
def _equality(op_type, fn, value_if_incompatible: bool):
    def equality(x, y, *, incompatible_shape_error):
        try:
            np.broadcast_shapes(x.shape, y.shape)
        except ValueError:
            if incompatible_shape_error:
                raise
            return np.array(value_if_incompatible)
        return np.asarray(fn(x, y), dtype=np.bool_)
    _register(op_type, equality)


_equality("Equal", np.equal, False)
_equality("NotEqual", np.not_equal, True)


@register_kernel("AddN")
def add_n(*inputs):
    out = np.array(inputs[0], copy=True)
    with np.errstate(all="ignore"):
        for a in inputs[1:]:
            np.add(out, a, out=out)
    return out


@register_kernel("ClipByValue", constraints={"T": _REAL_TYPES})
def clip_by_value(t, clip_value_min, clip_value_max):
    return np.asarray(np.maximum(np.minimum(t, clip_value_max), clip_value_min), t.dtype)


@register_kernel("Select")
def select(condition, t, e):
    if condition.ndim == 1 and t.ndim > 1:             # one condition per row of t
        condition = condition.reshape((-1,) + (1,) * (t.ndim - 1))
    return np.where(condition, t, e)


@register_kernel("SelectV2")
def select_v2(condition, t, e):
    return np.where(condition, t, e)


@register_kernel("BroadcastGradientArgs")
def broadcast_gradient_args(s0, s1):
    """TF's BCast reduction indices (the shape function has checked that s0 and s1
    broadcast): none for identical shapes, else each side's axes whose padded dim is 1."""
    if s0.shape == s1.shape and np.array_equal(s0, s1):
        return np.zeros(0, s0.dtype), np.zeros(0, s1.dtype)
    n = max(s0.size, s1.size)
    return tuple(np.flatnonzero(np.concatenate([np.ones(n - s.size, s.dtype), s]) == 1)
                 .astype(s.dtype) for s in (s0, s1))


# Cast ----------------------------------------------------------------------------------------
_MANTISSA_BITS = {"float16": 10, "bfloat16": 7, "float32": 23, "float64": 52}


def _is_floating(npd: np.dtype) -> bool:
    return npd.kind in "fc" or npd.name == "bfloat16"    # ml_dtypes' bfloat16 is kind "V"


def _zero_low_mantissa(x, dst: np.dtype):
    """Truncate=true: clear the mantissa bits ``dst`` cannot hold (NaN stays NaN), so the
    conversion that follows truncates instead of rounding (TF's LSBZeroSetter)."""
    if x.dtype.kind == "c":
        part = np.dtype(np.float32) if dst == np.complex64 else np.dtype(np.float64)
        return _zero_low_mantissa(x.real, part) + 1j * _zero_low_mantissa(x.imag, part)
    shift = _MANTISSA_BITS.get(x.dtype.name, 0) - _MANTISSA_BITS.get(dst.name, 99)
    if shift <= 0:
        return x
    bits = np.dtype(f"u{x.dtype.itemsize}")
    mask = bits.type(((1 << (8 * x.dtype.itemsize)) - 1) ^ ((1 << shift) - 1))
    cleared = (x.copy(order="C").view(bits) & mask).view(x.dtype)
    return np.where(np.isnan(x), x, cleared)


@register_kernel("Cast")
def cast(x, *, SrcT, DstT, Truncate):  # noqa: N803  (TF's attr names)
    if SrcT is DstT:
        return x                                       # TF forwards the input
    dst = DstT.as_numpy_dtype
    with np.errstate(all="ignore"):
        if x.dtype.kind == "c" and dst.kind != "c":
            x = x.real                                 # TF's Cast drops the imaginary part
        if Truncate and _is_floating(x.dtype) and _is_floating(dst):
            x = _zero_low_mantissa(x, dst)
        if dst == np.bool_:
            return np.asarray(x != 0)
        return np.asarray(x).astype(dst)
