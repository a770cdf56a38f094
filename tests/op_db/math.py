"""op_db entries of the elementwise math ops, generated from three tables (unary, binary,
backward ops) plus entries for BroadcastGradientArgs and the ops with attrs or more inputs.

Every reference is computed element by element on Python scalars (``math``/``cmath``,
Python's int arithmetic, explicit C++ rules written out) and converted to the op's dtype
with C++ wrap-around for integers -- never with the numpy call the kernel makes.
"""

from __future__ import annotations

import cmath
import math
import struct

import attrs
import numpy as np

import ops  # noqa: F401  (registers the ops whose dtype sets the entries read)
from opgraph import dtypes as dt
from opgraph import errors, get_op_def
from tests.op_db import ErrorCase, OpInfo, Sample, ShapeCase, rand

F32, I32 = np.float32, np.int32
#: the dtypes the generic suites try, where an op allows them (time is per dtype)
_POOL = (dt.DT_HALF, dt.DT_FLOAT, dt.DT_DOUBLE, dt.DT_INT8, dt.DT_UINT8, dt.DT_INT32,
         dt.DT_INT64, dt.DT_COMPLEX64, dt.DT_BOOL)


def _dtypes(op: str, attr: str = "T") -> tuple:
    allowed = get_op_def(op).attrs[attr].allowed
    return tuple(t for t in _POOL if allowed is None or t in allowed)


# ---- references: Python scalars in, the op's dtype out ----------------------------------------
def _wrap(v: int, npd: np.dtype) -> int:
    info = np.iinfo(npd)
    return (v - info.min) % (1 << (8 * npd.itemsize)) + info.min


def _to_dtype(values: list, shape, npd) -> np.ndarray:
    npd = np.dtype(npd)
    if npd.kind in "iu":
        values = [_wrap(int(v), npd) for v in values]
        return np.array(values, dtype=npd).reshape(shape)
    if npd.kind == "c":
        return np.array(values, dtype=np.complex128).reshape(shape).astype(npd)
    if npd.kind == "b":
        return np.array(values, dtype=bool).reshape(shape)
    if npd.kind in "OUS":
        return np.array(values, dtype=object).reshape(shape)
    return np.array(values, dtype=np.float64).reshape(shape).astype(npd)


def _pointwise(fn, out=None):
    """A reference applying ``fn`` to Python scalars, element by element, with numpy
    broadcasting of the inputs; the result has dtype ``out`` (default: the last input's)."""
    def ref(*arrays, **_attrs):
        arrays = [np.asarray(a) for a in arrays]
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
        columns = [np.broadcast_to(a, shape).ravel().tolist() for a in arrays]
        values = [fn(*args) for args in zip(*columns)]
        return _to_dtype(values, shape, arrays[-1].dtype if out is None else out)
    return ref


def _real_or_complex(real, complex_):
    return lambda v: complex_(v) if isinstance(v, complex) else real(v)


def _log(v):
    return -math.inf if v == 0 else math.log(v) if v > 0 else math.nan


def _sqrt(v):
    return math.sqrt(v) if v >= 0 else math.nan


def _sigmoid(v):
    if isinstance(v, complex):
        return 1 / (1 + cmath.exp(-v))
    if v >= 0:
        return 1 / (1 + math.exp(-v))
    e = math.exp(v)
    return e / (1 + e)


def _exp(v):
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def _sign(v):
    if isinstance(v, complex):
        return 0j if v == 0 else v / abs(v)
    return (v > 0) - (v < 0)


def _c_div(a: int, b: int) -> int:
    """C++ integer division: truncates toward zero."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _c_reciprocal(v):
    return _c_div(1, v) if isinstance(v, int) else 1 / v


def _in_dtype(v: float, npd) -> float:
    """``v`` rounded to the sample dtype, as TF's kernel rounds an intermediate result."""
    return float(np.array(v, dtype=npd))


def _floor_div_ref(x, y):
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype.kind in "iu":
        return _pointwise(lambda a, b: a // b)(x, y)     # Python's // floors
    return _pointwise(lambda a, b: math.floor(_in_dtype(a / b, x.dtype)))(x, y)


def _floor_mod(a, b):
    if isinstance(a, int):
        return a % b                                     # Python's % has the divisor's sign
    r = math.fmod(a, b)
    return r + b if r != 0 and (b < 0) != (r < 0) else r


def _div(a, b):
    return _c_div(a, b) if isinstance(a, int) else a / b


def _pow(a, b):
    if isinstance(a, int) or isinstance(a, complex):
        return a ** b
    return math.pow(a, b)


def _max_min(pick):
    def f(a, b):
        return math.nan if (a != a or b != b) else pick(a, b)
    return f


def _squared_difference(a, b):
    d = a - b
    return (d * d.conjugate()) if isinstance(d, complex) else d * d


def _round_half_even(v):
    if isinstance(v, complex):
        return complex(round(v.real), round(v.imag))
    return v if isinstance(v, int) else (v if not math.isfinite(v) else float(round(v)))


# ---- samples -------------------------------------------------------------------------------
def _values(rng, shape, t, domain):
    """Random values of dtype t in the op's domain (away from kinks for gradients)."""
    npd = t.as_numpy_dtype
    if npd.kind == "b":
        return rand(rng, shape, t)
    if domain == "positive":
        return rand(rng, shape, t, 0.25, 3.0)
    if domain == "above_minus_one":
        return rand(rng, shape, t, -0.75, 2.0)
    if domain in ("nonzero", "divisor"):
        if npd.kind in "iu":
            v = rand(rng, shape, t, -4, 5)
            return np.where(v == 0, npd.type(3), v).astype(npd)
        mag = rand(rng, shape, t, 0.5, 2.0)
        sign = np.where(rng.random(shape) < 0.5, -1, 1).astype(npd)
        return (mag * sign).astype(npd)
    if domain == "exponent" and npd.kind in "iu":
        return rand(rng, shape, t, 0, 4)
    if npd.kind in "iu":
        return rand(rng, shape, t, -20, 20)
    return rand(rng, shape, t)


_SPECIAL_FLOATS = {
    "Round": [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, -3.7, 4.5],
    "Floor": [-2.5, -0.0, 0.0, 1.0, 2.7, -3.2],
    "Ceil": [-2.5, -0.0, 0.0, 1.0, 2.7, -3.2],
    "Sigmoid": [-1000.0, -60.0, -1.0, 0.0, 1.0, 60.0, 1000.0],
    "Tanh": [-1000.0, -20.0, 0.0, 20.0, 1000.0],
    "Exp": [-1000.0, 0.0, 1000.0],
    "Log": [0.0, -1.0, math.inf, 1.0],
    "Sqrt": [0.0, -1.0, math.inf, 4.0],
    "Erf": [-10.0, -3.0, -2.9, -0.5, 0.0, 0.1, 2.9, 3.0, 6.0, math.inf, -math.inf],
}


def _unary_samples(op, domain):
    def samples(rng, t):
        out = [Sample((_values(rng, (2, 3), t, domain),), name="matrix"),
               Sample((_values(rng, (), t, domain),), name="scalar"),
               Sample((_values(rng, (0, 2), t, domain),), name="empty")]
        npd = t.as_numpy_dtype
        if op in _SPECIAL_FLOATS and npd.kind == "f":
            out.append(Sample((np.array(_SPECIAL_FLOATS[op], npd),), name="special"))
        if op in ("Neg", "Abs", "Square", "Sign") and npd.kind == "i":
            info = np.iinfo(npd)
            out.append(Sample((np.array([info.min, -1, 0, 1, info.max], npd),), name="wrap"))
        return out
    return samples


def _binary_samples(op, domain):
    def samples(rng, t):
        npd = t.as_numpy_dtype
        x_domain = "positive" if domain == "exponent" and npd.kind == "f" else "any"

        def pair(sx, sy):
            return (_values(rng, sx, t, x_domain), _values(rng, sy, t, domain))
        out = [Sample(pair((2, 3), (2, 3)), name="same"),
               Sample(pair((2, 1, 4), (3, 1)), name="broadcast"),
               Sample(pair((3,), ()), name="scalar"),
               Sample(pair((), (0, 2)), name="empty")]
        if npd.kind == "i" and op in ("Div", "RealDiv", "FloorDiv", "FloorMod"):
            out.append(Sample((np.array([-7, 7, -7, 7, 0, 6], npd),
                               np.array([2, 2, -2, -2, 3, 3], npd)), name="signs"))
        if npd.kind == "f" and op in ("FloorDiv", "FloorMod"):
            x = np.array([-7.0, 7.0, -7.0, 7.0, 1.0, -0.0, 5.5], npd)
            y = np.array([2.0, 2.0, -2.0, -2.0, 0.5, 3.0, -1.5], npd)
            out.append(Sample((x, y), name="signs"))
        if npd.kind == "f" and op in ("Maximum", "Minimum"):
            out.append(Sample((np.array([np.nan, 1.0, 2.0], npd),
                               np.array([1.0, np.nan, 2.0], npd)), name="nan"))
        if op == "DivNoNan":
            out.append(Sample((np.array([1.0, 2.0, 0.0, -3.0], npd),
                               np.array([0.0, 4.0, 0.0, 0.5], npd)), name="zeros"))
        if op in ("Less", "LessEqual", "Greater", "GreaterEqual", "Equal", "NotEqual"):
            x = _values(rng, (5,), t, "any")
            out.append(Sample((x, np.concatenate([x[:3], _values(rng, (2,), t, "any")])),
                              name="ties"))
        return out
    return samples


def _broadcast_error(t):
    npd = t.as_numpy_dtype
    return ErrorCase((np.zeros((2, 3), npd), np.zeros((4,), npd)),
                     regex=r"Incompatible shapes for broadcasting: \[2, 3\] and \[4\]",
                     name="broadcast")


_BINARY_SHAPES = [ShapeCase("[2,?,4];[3,1]", "[2,3,4]"), ShapeCase("?;[3]", "?"),
                  ShapeCase("[?];[5]", "[5]"), ShapeCase("[];[?,2]", "[d1_0,2]")]
_UNARY_SHAPES = [ShapeCase("[?,3]", "[d0_0,3]"), ShapeCase("?", "?"), ShapeCase("[]", "[]")]

_ZERO_DIVISOR = ErrorCase((np.array([1, 2], I32), np.array([1, 0], I32)),
                          regex="^Integer division by zero", name="zero_divisor")


# ---- the tables ----------------------------------------------------------------------------
#: (op, scalar reference, domain, differentiable)
_UNARY_TABLE = [
    ("Neg", lambda v: -v, "any", True),
    ("Abs", abs, "nonzero", True),
    ("Sign", _sign, "any", True),           # TF's gradient: zeros
    ("Conj", lambda v: v.conjugate(), "any", False),  # complex only: no float64 grad check
    ("Square", lambda v: v * v, "any", True),
    ("Sqrt", _real_or_complex(_sqrt, cmath.sqrt), "positive", True),
    ("Rsqrt", _real_or_complex(lambda v: 1 / math.sqrt(v), lambda v: 1 / cmath.sqrt(v)),
     "positive", True),
    ("Reciprocal", _c_reciprocal, "nonzero", True),
    ("Inv", _c_reciprocal, "nonzero", True),
    ("Exp", _real_or_complex(_exp, cmath.exp), "any", True),
    ("Expm1", _real_or_complex(math.expm1, lambda v: cmath.exp(v) - 1), "any", True),
    ("Log", _real_or_complex(_log, cmath.log), "positive", True),
    ("Log1p", _real_or_complex(math.log1p, lambda v: cmath.log(1 + v)), "above_minus_one",
     True),
    ("Sigmoid", _sigmoid, "any", True),
    ("Tanh", _real_or_complex(math.tanh, cmath.tanh), "any", True),
    ("Sin", _real_or_complex(math.sin, cmath.sin), "any", True),
    ("Cos", _real_or_complex(math.cos, cmath.cos), "any", True),
    ("Erf", math.erf, "any", True),
    ("Floor", math.floor, "any", False),
    ("Ceil", math.ceil, "any", False),
    ("Round", _round_half_even, "any", False),
    ("LogicalNot", lambda v: not v, "any", False),
]

#: (op, reference function of the two arrays, domain of y, differentiable)
_BINARY_TABLE = [
    ("Add", _pointwise(lambda a, b: a + b), "any", True),
    ("AddV2", _pointwise(lambda a, b: a + b), "any", True),
    ("Sub", _pointwise(lambda a, b: a - b), "any", True),
    ("Mul", _pointwise(lambda a, b: a * b), "any", True),
    ("Div", _pointwise(_div), "divisor", True),
    ("RealDiv", _pointwise(_div), "divisor", True),
    ("FloorDiv", _floor_div_ref, "divisor", False),
    ("FloorMod", _pointwise(_floor_mod), "divisor", True),
    ("DivNoNan", _pointwise(lambda a, b: 0 if b == 0 else a / b), "divisor", True),
    ("Pow", _pointwise(_pow), "exponent", True),
    ("Maximum", _pointwise(_max_min(max)), "any", True),
    ("Minimum", _pointwise(_max_min(min)), "any", True),
    ("SquaredDifference", _pointwise(_squared_difference), "any", True),
    ("Less", _pointwise(lambda a, b: a < b, bool), "any", False),
    ("LessEqual", _pointwise(lambda a, b: a <= b, bool), "any", False),
    ("Greater", _pointwise(lambda a, b: a > b, bool), "any", False),
    ("GreaterEqual", _pointwise(lambda a, b: a >= b, bool), "any", False),
    ("LogicalAnd", _pointwise(lambda a, b: a and b, bool), "any", False),
    ("LogicalOr", _pointwise(lambda a, b: a or b, bool), "any", False),
]

def _conj(v):
    return v.conjugate()


#: backward ops (y, dy): (op, reference on Python scalars, domain of y)
_GRAD_OP_TABLE = [
    ("SigmoidGrad", lambda y, dy: dy * (y * (1 - y)), "any"),
    ("TanhGrad", lambda y, dy: dy * (1 - y * y), "any"),
    ("SqrtGrad", lambda y, dy: dy / (2 * _conj(y)), "positive"),
    ("RsqrtGrad", lambda y, dy: -dy * _conj(y) ** 3 / 2, "positive"),
    ("ReciprocalGrad", lambda y, dy: -dy * _conj(y) ** 2, "nonzero"),
]

_EXTRA_ERRORS = {
    "Div": [_ZERO_DIVISOR], "RealDiv": [_ZERO_DIVISOR], "FloorDiv": [_ZERO_DIVISOR],
    "FloorMod": [_ZERO_DIVISOR],
    "Reciprocal": [ErrorCase((np.array([3, 0, -1], I32),), regex="^Integer division by zero",
                             name="zero")],
    "Inv": [ErrorCase((np.array([[0]], np.int64),), regex="^Integer division by zero",
                      name="zero")],
    "Pow": [ErrorCase((np.array([2, 3], I32), np.array([1, -1], I32)),
                      regex="^Integers to negative integer powers are not allowed",
                      name="negative_exponent")],
}


#: dtypes an op allows but TF registers no CPU kernel for (none here either)
_NO_CPU_KERNEL = {"FloorDiv": (dt.DT_COMPLEX64, dt.DT_COMPLEX128)}


def _input_dtypes(op):
    if "T" not in get_op_def(op).attrs:
        return (dt.DT_BOOL,)
    return tuple(t for t in _dtypes(op) if t not in _NO_CPU_KERNEL.get(op, ()))


def _unary_entry(op, scalar_ref, domain, differentiable):
    types = _input_dtypes(op)
    shapes = _UNARY_SHAPES if dt.DT_FLOAT in types else [
        attrs.evolve(case, dtype=types[0]) for case in _UNARY_SHAPES]   # Conj: complex only
    return OpInfo(op, ref=_pointwise(scalar_ref), dtypes=types,
                  samples=_unary_samples(op, domain), errors=_EXTRA_ERRORS.get(op, ()),
                  shapes=shapes, grad_tol=1e-6 if differentiable else None)


def _binary_entry(op, ref, domain, differentiable):
    types = _input_dtypes(op)
    return OpInfo(op, ref=ref, dtypes=types, samples=_binary_samples(op, domain),
                  errors=[_broadcast_error(types[0] if dt.DT_FLOAT not in types
                                           else dt.DT_FLOAT), *_EXTRA_ERRORS.get(op, ())],
                  shapes=_BINARY_SHAPES, grad_tol=1e-6 if differentiable else None)


def _grad_op_entry(op, scalar_ref, domain):
    def samples(rng, t):
        def pair(shape):
            return (_values(rng, shape, t, domain), _values(rng, shape, t, "any"))
        return [Sample(pair((2, 3)), name="matrix"), Sample(pair(()), name="scalar"),
                Sample(pair((0, 2)), name="empty")]
    return OpInfo(op, ref=_pointwise(scalar_ref), dtypes=_input_dtypes(op), samples=samples,
                  errors=[ErrorCase((np.zeros((2, 3), F32), np.zeros((3, 3), F32)),
                                    regex="^Dimension 0 in both shapes must be equal, but are "
                                          "2 and 3 for 'y' and 'dy'", name="shapes")],
                  shapes=[ShapeCase("[?,3];[2,?]", "[2,3]"), ShapeCase("?;[4]", "[4]"),
                          ShapeCase("?;?", "?"),
                          ShapeCase("[2];[2,1]", "Shapes must be equal rank",
                                    error=errors.InvalidArgumentError)],
                  grad_tol=1e-6)


# ---- BroadcastGradientArgs: TF's BCast loop, written out as TF's C++ runs it ---------------
def _bcast_reduce_idx(s0: list, s1: list):
    """BCast(s0, s1).grad_{x,y}_reduce_idx() by TF's algorithm: walk the dims from the
    innermost, tracking which side is 1 (None when the shapes cannot broadcast)."""
    if s0 == s1:
        return [], []
    rank = max(len(s0), len(s1))
    rev = [list(reversed(s)) + [1] * (rank - len(s)) for s in (s0, s1)]
    reduce_idx = [[], []]
    for j in range(rank):
        out_dim = None
        ones = []
        for i in range(2):
            d = rev[i][j]
            ones.append(d == 1)
            if d != 1:
                if out_dim is None or d == out_dim:
                    out_dim = d
                else:
                    return None
        for i in range(2):
            if ones[i]:                       # all ones, or this side broadcasts
                reduce_idx[i].append(rank - 1 - j)
    return [sorted(r) for r in reduce_idx]


def _bcast_ref(s0, s1):
    r = _bcast_reduce_idx(np.asarray(s0).tolist(), np.asarray(s1).tolist())
    return tuple(np.array(axes, np.asarray(s).dtype) for axes, s in zip(r, (s0, s1)))


_BCAST_PAIRS = [([2, 3, 5], [3, 1]), ([2, 3], [2, 3]), ([1, 3], [3]), ([], [4, 1]),
                ([1], [1]), ([0, 1], [1, 4]), ([1, 1], [1]), ([5], []), ([], [])]


def _bcast_samples(rng, t):
    npd = t.as_numpy_dtype
    return [Sample((np.array(a, npd), np.array(b, npd)), name=f"{a}_{b}")
            for a, b in _BCAST_PAIRS]


_BCAST_ENTRY = OpInfo(
    "BroadcastGradientArgs", ref=_bcast_ref, dtypes=(dt.DT_INT32, dt.DT_INT64),
    samples=_bcast_samples,
    errors=[ErrorCase((np.array([2, 3], I32), np.array([4], I32)),
                      regex=r"^Incompatible shapes: \[2,3\] vs\. \[4\]", name="incompatible"),
            ErrorCase((np.array([[2, 3]], I32), np.array([3], I32)),
                      regex="^Shape must be rank 1 but is rank 2 for input 's0'", name="rank")],
    shapes=[ShapeCase("[?];[?]", "[?]", dtype=dt.DT_INT32),
            ShapeCase("?;?", "[?]", dtype=dt.DT_INT32, output=1),
            ShapeCase("=[2,3];=[3]", "[0]", dtype=dt.DT_INT32),
            ShapeCase("=[2,3];=[3]", "[1]", dtype=dt.DT_INT32, output=1),
            ShapeCase("shape_of:[?,3];shape_of:[3]", "[?]", dtype=dt.DT_INT32),
            ShapeCase("shape_of:[?,3];shape_of:[3]", "[1]", dtype=dt.DT_INT32,
                      output=1),
            ShapeCase("shape_of:[2,3];shape_of:[?,3]", "[0]", dtype=dt.DT_INT32),
            ShapeCase("shape_of:[2,3];shape_of:[?,3]", "[?]", dtype=dt.DT_INT32,
                      output=1),
            ShapeCase("[2];[3]", "[?]", dtype=dt.DT_INT32),
            ShapeCase("=[2,3];shape_of:[?,4]", r"Incompatible shapes: \[2,3\] vs\. \[\?,4\]",
                      error=errors.InvalidArgumentError, dtype=dt.DT_INT32),
            ShapeCase("[2,2];[2]", "Shape must be rank 1", error=errors.InvalidArgumentError,
                      dtype=dt.DT_INT32)])


# ---- entries with attrs, lists or three inputs -----------------------------------------------
def _string_aware_add_samples(rng, t):
    if t is dt.DT_STRING:
        return [Sample((np.array(["a", "bc"]), np.array(["x"])), name="strings")]
    return _binary_samples("Add", "any")(rng, t)


def _equality_ref(fn, value_if_incompatible):
    pointwise = _pointwise(fn, bool)

    def ref(x, y, *, incompatible_shape_error=True):
        try:
            np.broadcast_shapes(np.shape(x), np.shape(y))
        except ValueError:
            return np.array(value_if_incompatible)
        return pointwise(x, y)
    return ref


def _equality_samples(rng, t):
    out = _binary_samples("Equal", "any")(rng, t)
    x, y = _values(rng, (2, 3), t, "any"), _values(rng, (4,), t, "any")
    out.append(Sample((x, y), {"incompatible_shape_error": False}, name="incompatible"))
    out.append(Sample((x, x[:1]), {"incompatible_shape_error": False}, name="compatible"))
    return out


_EQUALITY_SHAPES = [
    *_BINARY_SHAPES,
    ShapeCase("[2,3];[4]", "[]", {"incompatible_shape_error": False}),
    ShapeCase("[2,?];[3]", "?", {"incompatible_shape_error": False}),
    ShapeCase("[2,1];[3]", "[2,3]", {"incompatible_shape_error": False}),
    ShapeCase("?;[3]", "?", {"incompatible_shape_error": False}),
    ShapeCase("[2,3];[4]", "Incompatible shapes for broadcasting",
              error=errors.InvalidArgumentError),
]


def _equality_entry(op, fn, value_if_incompatible):
    return OpInfo(op, ref=_equality_ref(fn, value_if_incompatible),
                  dtypes=(*_POOL, dt.DT_COMPLEX128, dt.DT_INT16), samples=_equality_samples,
                  errors=[_broadcast_error(dt.DT_FLOAT)], shapes=_EQUALITY_SHAPES)


def _add_n_samples(rng, t):
    return [Sample(([_values(rng, (2, 3), t, "any") for _ in range(3)],), name="three"),
            Sample(([_values(rng, (4,), t, "any")],), name="one"),
            Sample(([_values(rng, (), t, "any"), _values(rng, (), t, "any")],), name="scalars"),
            Sample(([_values(rng, (0, 3), t, "any")] * 2,), name="empty")]


def _add_n_ref(inputs):
    return _pointwise(lambda *v: sum(v))(*inputs)


def _clip_samples(rng, t):
    npd = t.as_numpy_dtype
    lo, hi = (np.array(-1, npd), np.array(1, npd)) if npd.kind != "u" else (
        np.array(1, npd), np.array(3, npd))
    x = _values(rng, (2, 3), t, "any")
    return [Sample((x, lo, hi), name="scalars"),
            Sample((x, np.full((2, 3), lo, npd), np.full((2, 3), hi, npd)), name="full"),
            Sample((_values(rng, (), t, "any"), lo, hi), name="scalar"),
            Sample((_values(rng, (0, 4), t, "any"), lo, np.zeros((0, 4), npd) + hi),
                   name="empty"),
            Sample((x, np.full((2, 3), lo, npd), hi), name="mixed")]


def _clip_ref(t, lo, hi):
    return _pointwise(lambda v, a, b: max(min(v, b), a), np.asarray(t).dtype)(t, lo, hi)


def _truncated(v: float, npd) -> float:
    """float64 ``v`` with the mantissa bits ``npd`` cannot hold cleared (Cast's Truncate)."""
    if v != v:
        return v
    keep = {"float16": 10, "float32": 23}.get(np.dtype(npd).name, 52)
    bits = struct.unpack("<Q", struct.pack("<d", v))[0]
    bits &= ~((1 << (52 - keep)) - 1)
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def _cast_scalar(v, npd, truncate):
    kind = np.dtype(npd).kind
    if isinstance(v, complex) and kind != "c":
        v = v.real
    if kind == "b":
        return v != 0
    if kind in "iu":
        return math.trunc(v)
    if truncate and isinstance(v, float):
        return _truncated(v, npd)
    return v


def _cast_ref(x, *, DstT, Truncate=False):  # noqa: N803  (TF's attr names)
    npd = DstT.as_numpy_dtype
    return _pointwise(lambda v: _cast_scalar(v, npd, Truncate), npd)(x)


def _cast_samples(rng, t):
    npd = t.as_numpy_dtype
    x = _values(rng, (2, 3), t, "any")
    if npd.kind == "f":         # stay in every target's range; no NaN into integers
        x = (x * 8).astype(npd)
    out = [Sample((x,), {"DstT": dt.DT_DOUBLE}, name="to_double"),
           Sample((x,), {"DstT": dt.DT_INT32}, name="to_int32"),
           Sample((x,), {"DstT": dt.DT_BOOL}, name="to_bool"),
           Sample((x,), {"DstT": dt.DT_FLOAT}, name="to_float"),
           Sample((x,), {"DstT": dt.DT_HALF}, name="to_half"),
           Sample((x,), {"DstT": dt.DT_INT8}, name="to_int8"),
           Sample((x,), {"DstT": dt.DT_COMPLEX64}, name="to_complex64"),
           Sample((_values(rng, (), t, "any"),), {"DstT": dt.DT_INT64}, name="scalar"),
           Sample((_values(rng, (0, 3), t, "any"),), {"DstT": dt.DT_FLOAT}, name="empty")]
    if npd.kind == "f":
        out.append(Sample((np.array([np.nan, -np.inf, np.inf, -0.0], npd),),
                          {"DstT": dt.DT_BOOL}, name="special_to_bool"))
        out.append(Sample((np.array([0.5, 2.9, 100.0, 255.9], npd),),
                          {"DstT": dt.DT_UINT8}, name="truncation"))
    if npd == np.float64:
        # rounding and truncating differ on these (0.75 ulp above 1 in float32, in half)
        fine = np.array([1 + 3 * 2.0 ** -25, -(1 + 3 * 2.0 ** -25), 1 + 3 * 2.0 ** -12, 3.0,
                         np.nan], npd)
        out.append(Sample((fine,), {"DstT": dt.DT_FLOAT, "Truncate": True},
                          name="truncate_to_float"))
        out.append(Sample((fine,), {"DstT": dt.DT_HALF, "Truncate": True},
                          name="truncate_to_half"))
    return out


def _select_samples(rng, t):
    def cond(shape):
        return rng.random(shape) < 0.5

    def vals(shape):
        return _values(rng, shape, t, "any")
    return [Sample((cond((2, 3)), vals((2, 3)), vals((2, 3))), name="same"),
            Sample((cond((3,)), vals((3, 2)), vals((3, 2))), name="rows"),
            Sample((np.array(True), vals((2, 2)), vals((2, 2))), name="scalar_condition"),
            Sample((cond(()), vals(()), vals(())), name="scalars"),
            Sample((cond((0,)), vals((0, 3)), vals((0, 3))), name="empty")]


def _select_ref(condition, t, e):
    c, t, e = np.asarray(condition), np.asarray(t), np.asarray(e)
    out = np.empty(t.shape, t.dtype)
    for idx in np.ndindex(*t.shape):
        pick = c[()] if c.ndim == 0 else c[idx[0]] if c.ndim == 1 and t.ndim > 1 else c[idx]
        out[idx] = t[idx] if pick else e[idx]
    return out


def _select_v2_samples(rng, t):
    def vals(shape):
        return _values(rng, shape, t, "any")
    return [Sample((rng.random((2, 3)) < 0.5, vals((2, 3)), vals((2, 3))), name="same"),
            Sample((rng.random((2, 1)) < 0.5, vals((1, 3)), vals(())), name="broadcast"),
            Sample((rng.random((3,)) < 0.5, vals((2, 1)), vals((2, 3))), name="vector"),
            Sample((np.array(False), vals((0, 2)), vals((2,))), name="empty")]


_SELECT_ERRORS = [
    ErrorCase((np.array([True, False]), np.zeros((2, 3), F32), np.zeros((3, 2), F32)),
              regex="Dimension 0 in both shapes must be equal, but are 2 and 3 for 't' and "
                    "'e' of Select", name="t_vs_e"),
    ErrorCase((np.array([True, False, True]), np.zeros((2, 3), F32), np.zeros((2, 3), F32)),
              regex="Dimensions must be equal, but are 3 and 2 for the size of the vector "
                    "'condition'", name="rows"),
    ErrorCase((np.ones((2, 3, 1), bool), np.zeros((2, 3), F32), np.zeros((2, 3), F32)),
              regex=r"'condition' of Select must be a scalar, a vector over the first dim of "
                    r"'t', or have the shape of 't' \[2,3\], but has shape \[2,3,1\]",
              name="rank"),
    ErrorCase((np.ones((2, 2), bool), np.zeros((2, 3), F32), np.zeros((2, 3), F32)),
              regex="Dimension 1 in both shapes must be equal, but are 3 and 2", name="dims"),
]

_SELECT_SHAPES = [
    ShapeCase("[?];[?,3];[2,?]", "[2,3]"), ShapeCase("[];[2,3];[2,3]", "[2,3]"),
    ShapeCase("?;[2,?];?", "[2,?]"), ShapeCase("[2,3];[?,?];[?,?]", "[2,3]"),
    ShapeCase("[?];[];[]", "'condition' of Select must be a scalar",
              error=errors.InvalidArgumentError),
    ShapeCase("[4];[3,2];?", "Dimensions must be equal, but are 4 and 3",
              error=errors.InvalidArgumentError),
]

_CLIP_ERRORS = [
    ErrorCase((np.zeros((2, 3), F32), np.zeros((3,), F32), np.array(1, F32)),
              regex=r"^clip_value_min must be a scalar or have the same shape as t, but t has "
                    r"shape \[2,3\] and clip_value_min has shape \[3\]", name="min"),
    ErrorCase((np.zeros((2, 3), F32), np.array(0, F32), np.zeros((3, 2), F32)),
              regex="^clip_value_max must be a scalar or have the same shape as t",
              name="max"),
]

_ADD_N_ERRORS = [
    ErrorCase(([np.zeros((2, 3), F32), np.zeros((3,), F32)],),
              regex=r"Shapes must be equal rank, but are 2 and 1 for inputs\[0\] vs\. the "
                    r"later inputs", name="rank"),
    ErrorCase(([np.zeros((2, 3), F32), np.zeros((2, 3), F32), np.zeros((2, 4), F32)],),
              regex="Dimension 1 in both shapes must be equal, but are 3 and 4", name="dims"),
]

ENTRIES = [
    *(_unary_entry(*row) for row in _UNARY_TABLE),
    *(_binary_entry(*row) for row in _BINARY_TABLE if row[0] != "Add"),
    *(_grad_op_entry(*row) for row in _GRAD_OP_TABLE),
    _BCAST_ENTRY,
    OpInfo("Add", ref=_pointwise(lambda a, b: a + b), dtypes=(*_dtypes("Add"), dt.DT_STRING),
           samples=_string_aware_add_samples, errors=[_broadcast_error(dt.DT_FLOAT)],
           shapes=_BINARY_SHAPES, grad_tol=1e-6),
    _equality_entry("Equal", lambda a, b: a == b, False),
    _equality_entry("NotEqual", lambda a, b: a != b, True),
    OpInfo("AddN", ref=_add_n_ref, dtypes=_dtypes("AddN"), samples=_add_n_samples,
           errors=_ADD_N_ERRORS, grad_tol=1e-6),
    OpInfo("ClipByValue", ref=_clip_ref,
           dtypes=tuple(t for t in _dtypes("ClipByValue") if t.as_numpy_dtype.kind != "c"),
           samples=_clip_samples, errors=_CLIP_ERRORS, grad_tol=1e-6,
           shapes=[ShapeCase("[2,?];[];[?,3]", "[2,3]"), ShapeCase("?;[4];[]", "[4]"),
                   ShapeCase("?;?;?", "?"),
                   ShapeCase("[2,3];[3];[]", "clip_value_min must be a scalar",
                             error=errors.InvalidArgumentError)]),
    OpInfo("Cast", ref=_cast_ref, dtypes=_dtypes("Cast", "SrcT"), samples=_cast_samples,
           grad_tol=1e-6,
           errors=[ErrorCase((np.array(["1"]),), {"DstT": dt.DT_INT32},
                             regex="^Cast string to int32 is not supported",
                             error=errors.UnimplementedError, when="build", name="string")],
           shapes=[ShapeCase("[?,3]", "[d0_0,3]", {"DstT": dt.DT_INT32}),
                   ShapeCase("?", "?", {"DstT": dt.DT_BOOL})]),
    OpInfo("Select", ref=_select_ref, dtypes=_POOL, samples=_select_samples,
           errors=_SELECT_ERRORS, shapes=_SELECT_SHAPES, grad_tol=1e-6),
    OpInfo("SelectV2", ref=_pointwise(lambda c, a, b: a if c else b), dtypes=_POOL,
           samples=_select_v2_samples,
           errors=[ErrorCase((np.ones((2,), bool), np.zeros((3,), F32), np.zeros((3,), F32)),
                             regex=r"Incompatible shapes for broadcasting: \[2\] and \[3\]")],
           shapes=[ShapeCase("[2,1];[1,3];[]", "[2,3]"), ShapeCase("?;[3];[3]", "?"),
                   ShapeCase("[?];[2,1];[]", "[2,d0_0]")],
           grad_tol=1e-6),
]
