"""Elementwise math ops: arithmetic, unary functions, comparisons, logic, Select, Cast.

Names, inputs, attrs and dtype sets follow TF's ``core/ops/math_ops.cc`` (uint32 and uint64
are left out of the sets: opgraph has no such DTypes). Binary ops broadcast as numpy does;
the broadcast is checked when the graph is built (``broadcast_binary``). Data rules the CPU
kernels enforce (integer division by zero, integer powers with negative exponents) are also
checked at build time when the offending input is a constant, with the kernel's sentence.

Gradients (TF's math_grad.py formulas) are declared with each op: a ``grad=`` formula on the
table rows (``m.Mul(g, m.conj(y))``: ``m`` builds ops on the gradient scope), reduced back to
each input's shape for broadcasting ops through BroadcastGradientArgs + Sum + Reshape unless
the static shapes show nothing was broadcast. The backward ops SigmoidGrad, TanhGrad,
SqrtGrad, RsqrtGrad and ReciprocalGrad have gradients too, so second derivatives work.
"""

from __future__ import annotations

import numpy as np

from opgraph import errors
from opgraph.common_shapes import broadcast_binary, unchanged_shape
from opgraph.dtypes import DT_STRING
from opgraph.gradients import gradient
from opgraph.shape_inference import broadcast_shapes, merge_shapes
from opgraph.shapes import TensorShape
from opgraph.wrappers import declare

# TF's dtype sets (math_ops.cc macros), without uint32/uint64.
_UNARY = "{bfloat16, half, float, double, int8, int16, int32, int64, complex64, complex128}"
_UNARY_UNSIGNED = ("{bfloat16, half, float, double, int8, int16, int32, int64, uint8, uint16, "
                   "complex64, complex128}")
_UNARY_REAL = "{bfloat16, half, float, double}"
_UNARY_COMPLEX = "{bfloat16, half, float, double, complex64, complex128}"
_ABS = "{bfloat16, half, float, double, int8, int16, int32, int64}"
_BINARY_MORE = ("{bfloat16, half, float, double, uint8, int8, uint16, int16, int32, int64, "
                "complex64, complex128}")
_BINARY_FEWER = "{bfloat16, half, float, double, int32, int64, complex64, complex128}"
_ADD = ("{bfloat16, half, float, double, uint8, int8, int16, int32, int64, complex64, "
        "complex128, string}")
_ADD_V2 = ("{bfloat16, half, float, double, uint8, uint16, int8, int16, int32, int64, "
           "complex64, complex128}")
_MIN_MAX = "{bfloat16, half, float, double, int8, uint8, int16, uint16, int32, int64}"
_FLOOR_MOD = "{int8, int16, int32, int64, uint8, uint16, bfloat16, half, float, double}"
_POW = "{bfloat16, float, half, double, int8, int16, int32, int64, complex64, complex128}"
_DIV_NO_NAN = "{half, float, bfloat16, double, complex64, complex128}"

#: The CPU kernels' sentences (runtime/kernels/cpu/math_kernels.py raises the same ones).
INTEGER_DIVISION_BY_ZERO = "Integer division by zero"
NEGATIVE_INTEGER_POWER = "Integers to negative integer powers are not allowed"


# ---- shape functions ----------------------------------------------------------------------
def _constant(c, i):
    """Input i's value when it is known (a build-time constant, or the actual value when the
    executor re-checks the node), without asking the executor to re-check for it."""
    v = c.input_value(i)
    return v if isinstance(v, np.ndarray) else None


def _nonempty(shape) -> bool:
    """The output is known to have elements (an empty output computes nothing, so the
    kernel raises nothing for it either)."""
    return bool(shape.is_fully_defined() and shape.num_elements())


def _refuse_zero_divisor(c, i, out):
    t = c.input_dtype(i)
    if t is not None and t.is_integer and _nonempty(out):
        v = _constant(c, i)
        if v is not None and not np.all(v):
            raise errors.InvalidArgumentError(INTEGER_DIVISION_BY_ZERO)


def _integer_division_shape(c):
    """Broadcast; an integer divisor known to hold a zero is refused, as the kernel does."""
    out = broadcast_binary(c)
    _refuse_zero_divisor(c, 1, out[0])
    return out


def _integer_reciprocal_shape(c):
    _refuse_zero_divisor(c, 0, c.input(0))
    return unchanged_shape(c)


def _pow_shape(c):
    out = broadcast_binary(c)
    t = c.input_dtype(1)
    if t is not None and t.is_integer and _nonempty(out[0]):
        v = _constant(c, 1)
        if v is not None and np.any(v < 0):
            raise errors.InvalidArgumentError(NEGATIVE_INTEGER_POWER)
    return out


def _add_n_shape(c):
    """Every input has the same shape (no broadcasting): TF merges them from the last."""
    out = c.input(c.num_inputs - 1)
    for i in range(c.num_inputs - 2, -1, -1):
        out = merge_shapes(c.input(i), out,
                           what=f"inputs[{i}] vs. the later inputs (AddN adds equal shapes)")
    return [out]


def _equality_shape(c):
    """Broadcast; with incompatible_shape_error=false, shapes that cannot broadcast give a
    scalar (all-false for Equal, all-true for NotEqual) as TF's kernel does."""
    if c.attr("incompatible_shape_error"):
        return broadcast_binary(c)
    x, y = c.input(0), c.input(1)
    if x.dims is None or y.dims is None:
        return [c.unknown_shape()]
    n = max(len(x.dims), len(y.dims))
    pairs = list(zip((1,) * (n - len(x.dims)) + x.dims, (1,) * (n - len(y.dims)) + y.dims))
    if any(a is not None and b is not None and a != b and 1 not in (a, b) for a, b in pairs):
        return [c.scalar()]
    if any((a is None or b is None) and 1 not in (a, b) for a, b in pairs):
        return [c.unknown_shape()]     # an unknown dim might not broadcast: either outcome
    return broadcast_binary(c)


def _clip_shape(c):
    """t's shape; clip_value_min and clip_value_max are each a scalar or shaped like t."""
    out = c.input(0)
    for i in (1, 2):
        s = c.input(i)
        if s.dims is None or len(s.dims) == 0:
            continue
        if out.dims is not None and (len(out.dims) != len(s.dims) or any(
                a is not None and b is not None and a != b for a, b in zip(out.dims, s.dims))):
            msg = (f"{c.input_name(i)} must be a scalar or have the same shape as t, but t "
                   f"has shape {c.input(0).compact()} and {c.input_name(i)} has shape "
                   f"{s.compact()}")
            raise errors.InvalidArgumentError(msg)
        out = merge_shapes(out, s)
    return [out]


def _select_shape(c):
    """t and e have one shape; condition is a scalar, that same shape, or a vector over the
    first dim of a non-scalar t."""
    data = merge_shapes(c.input(1), c.input(2), what="'t' and 'e' of Select")
    cond = c.input(0)
    if cond.dims is None or data.dims is None:
        return [data]
    if len(cond.dims) == 0:
        return [data]
    if len(cond.dims) == 1 and len(data.dims) > 1:
        c.merge_dim(cond.dims[0], data.dims[0],
                    what="the size of the vector 'condition' vs. the first dim of 't'")
        return [data]
    if len(cond.dims) != len(data.dims):
        msg = (f"'condition' of Select must be a scalar, a vector over the first dim of 't', "
               f"or have the shape of 't' {data.compact()}, but has shape {cond.compact()}")
        raise errors.InvalidArgumentError(msg)
    return [merge_shapes(data, cond, what="'condition' vs. 't' of Select")]


def _select_v2_shape(c):
    return [broadcast_shapes(c.input(0), broadcast_shapes(c.input(1), c.input(2)))]


def _cast_shape(c):
    """x's shape; strings convert to nothing else (TF's kernel: Unimplemented)."""
    src, dst = c.attr("SrcT"), c.attr("DstT")
    if src is not dst and DT_STRING in (src, dst):
        msg = f"Cast {src.name} to {dst.name} is not supported"
        raise errors.UnimplementedError(msg)
    return unchanged_shape(c)


def _cast_value(c):
    """A partially known shape vector stays one through an integer Cast."""
    v = c.input_value(0)
    if isinstance(v, TensorShape) and c.attr("DstT").name in ("int32", "int64"):
        return [v]
    return [None]


def _merge_both_shape(c):
    """TF's MergeBothInputsShapeFn: y and dy have one shape, which is the output's."""
    return [merge_shapes(c.input(0), c.input(1), what="'y' and 'dy' (which must have one "
                                                      "shape)")]


def _dims_text(dims) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in dims) + "]"


def gradient_reduction_axes(s0: tuple, s1: tuple):
    """TF's BCast reduction indices for shapes ``s0`` and ``s1`` (tuples of dims; None is an
    unknown dim): ``(r0, r1)``, each a tuple of axes of the broadcast shape, or None where
    the partial dims leave it undecided.

    Identical shapes reduce nothing. Otherwise, with both left-padded with 1s to one rank,
    each side reduces every axis where its own dim is 1 (a dim that is 1 on both sides is
    reduced on both). Shapes known not to broadcast are an InvalidArgumentError.
    """
    n = max(len(s0), len(s1))
    p0 = (1,) * (n - len(s0)) + tuple(s0)
    p1 = (1,) * (n - len(s1)) + tuple(s1)
    if any(a is not None and b is not None and a != b and 1 not in (a, b)
           for a, b in zip(p0, p1)):
        msg = f"Incompatible shapes: {_dims_text(s0)} vs. {_dims_text(s1)}"
        raise errors.InvalidArgumentError(msg)
    same_rank = len(s0) == len(s1)
    if same_rank and None not in s0 and None not in s1 and tuple(s0) == tuple(s1):
        return (), ()
    maybe_identical = same_rank and all(a is None or b is None or a == b
                                        for a, b in zip(s0, s1))

    def side(padded):
        if None in padded:              # whether an unknown dim is 1 decides the axis
            return None
        axes = tuple(k for k, d in enumerate(padded) if d == 1)
        return None if axes and maybe_identical else axes   # identical shapes give ()
    return side(p0), side(p1)


def _shape_vector(c, i):
    """Input i, a shape vector, as a tuple of dims (None: unknown) or None (unknown length)."""
    value = c.input_tensor(i)           # read, so the node is re-checked when it is unknown
    if value is not None:
        return tuple(int(d) for d in np.asarray(value).reshape(-1).tolist())
    partial = c.input_value(i)
    if isinstance(partial, TensorShape) and partial.dims is not None:
        return partial.dims
    shape = c.input_as_shape(i)          # unknown value: its length, bounded by the max rank
    return shape.dims


def _gradient_axes(c):
    s0, s1 = _shape_vector(c, 0), _shape_vector(c, 1)
    if s0 is None or s1 is None:
        return None, None
    return gradient_reduction_axes(s0, s1)


def _broadcast_gradient_args_shape(c):
    c.with_rank(0, 1)
    c.with_rank(1, 1)
    return [c.vector(None if r is None else len(r)) for r in _gradient_axes(c)]


def _broadcast_gradient_args_value(c):
    """The axes are known at build time when the shapes (or enough of them) are."""
    npd = c.attr("T").as_numpy_dtype
    return [None if r is None else np.array(r, npd) for r in _gradient_axes(c)]


# ---- gradient helpers ---------------------------------------------------------------------
def _is_complex(t) -> bool:
    return t.dtype is not None and t.dtype.name.startswith("complex")


class _Builder:
    """Gradient-formula shorthand bound to the gradient scope: ``m.Mul(a, b)`` is
    ``ops.Mul(scope, a, b)``'s Output (a tuple of Outputs for ops with several)."""

    __slots__ = ("scope",)

    def __init__(self, scope):
        self.scope = scope

    def __getattr__(self, op_type):
        import ops  # noqa: PLC0415  (ops modules use each other's wrappers lazily)
        wrapper = getattr(ops, op_type)

        def build(*args, **attrs):
            made = wrapper(self.scope, *args, **attrs)
            return made.output if len(made) == 1 else tuple(made)
        return build

    def const(self, value, like):
        """A scalar ``value`` of ``like``'s dtype."""
        return self.Const(np.asarray(value, like.dtype.as_numpy_dtype))

    def conj(self, t):
        """conj(t); t itself for real dtypes (as Python TF's math_ops.conj)."""
        return self.Conj(t) if _is_complex(t) else t


def _static_equal(a, b) -> bool:
    return a.shape.is_fully_defined() and b.shape.is_fully_defined() and \
        a.shape.dims == b.shape.dims


def _reduce_pair(m, x, y, gx, gy, out):
    """gx and gy, shaped like ``out`` (the broadcast of x and y), summed back to x's and y's
    shapes: Reshape(Sum(g, r), Shape(input)) with r from BroadcastGradientArgs(Shape(x),
    Shape(y)), as TF. A side whose static shape is out's (fully known) is left as it is."""
    need_x = gx is not None and not _static_equal(x, out)
    need_y = gy is not None and not _static_equal(y, out)
    if not (need_x or need_y):
        return gx, gy
    sx, sy = m.Shape(x), m.Shape(y)
    rx, ry = m.BroadcastGradientArgs(sx, sy)
    if need_x:
        gx = m.Reshape(m.Sum(gx, rx), sx)
    if need_y:
        gy = m.Reshape(m.Sum(gy, ry), sy)
    return gx, gy


def _register_unary_gradient(name, formula):
    """``formula(m, x, y, g) -> dx`` (x the input, y the output, g y's gradient)."""
    @gradient(name)
    def unary_grad(scope, op, grads):
        return [formula(_Builder(scope), op.inputs[0], op.output(0), grads[0])]
    unary_grad.__name__ = unary_grad.__qualname__ = f"_{name.lower()}_grad"


def _register_binary_gradient(name, formula, broadcasts=True):
    """``formula(m, x, y, z, g) -> (dx, dy)`` shaped like z, the output; reduced to x's and
    y's shapes when the op broadcasts."""
    @gradient(name)
    def binary_grad(scope, op, grads):
        m = _Builder(scope)
        x, y, z = op.inputs[0], op.inputs[1], op.output(0)
        gx, gy = formula(m, x, y, z, grads[0])
        return list(_reduce_pair(m, x, y, gx, gy, z) if broadcasts else (gx, gy))
    binary_grad.__name__ = binary_grad.__qualname__ = f"_{name.lower()}_grad"


def _pow_grad(m, x, y, z, g):
    """TF's _PowGrad: d/dx = g y x^(y-1); d/dy = g z log(x), with log(x) taken as 0 where x
    <= 0 (x == 0 for complex), where the real logarithm has no value."""
    x, y, z = m.conj(x), m.conj(y), m.conj(z)
    gx = m.Mul(m.Mul(g, y), m.Pow(x, m.Sub(y, m.const(1, y))))
    zero = m.const(0, x)
    mask = m.NotEqual(x, zero) if _is_complex(x) else m.Greater(x, zero)
    safe_x = m.SelectV2(mask, x, m.OnesLike(x))
    log_x = m.SelectV2(mask, m.Log(safe_x), m.ZerosLike(x))
    return gx, m.Mul(m.Mul(g, z), log_x)


def _max_min_grad(selector):
    """TF's _MaximumMinimumGrad: g goes to x where selector(x, y) (ties go to x), else y."""
    def formula(m, x, y, z, g):
        zeros = m.ZerosLike(g)
        x_wins = getattr(m, selector)(x, y)
        return m.SelectV2(x_wins, g, zeros), m.SelectV2(x_wins, zeros, g)
    return formula


def _squared_difference_grad(m, x, y, z, g):
    d = m.Mul(m.Mul(m.const(2, g), g), m.Sub(x, y))
    return d, m.Neg(d)


def _div_grad(div):
    """d(x / y) = (g / y, g * (-x / y / y)) with conj(x), conj(y), with ``div`` the op's own
    division (Div, RealDiv or DivNoNan)."""
    def formula(m, x, y, z, g):
        x, y = m.conj(x), m.conj(y)
        divide = getattr(m, div)
        return divide(g, y), m.Mul(g, divide(divide(m.Neg(x), y), y))
    return formula


# ---- declarations -------------------------------------------------------------------------
def _unary(name, types, doc, shape_fn=unchanged_shape, grad=None):
    wrapper = declare(name, inputs=["x: T"], outputs=["y: T"], attrs=[f"T: {types}"],
                      shape_fn=shape_fn, doc=doc)
    if grad is not None:
        _register_unary_gradient(name, grad)
    return wrapper


def _binary(name, types, doc, shape_fn=broadcast_binary, out="T", grad=None):
    wrapper = declare(name, inputs=["x: T", "y: T"], outputs=[f"z: {out}"],
                      attrs=[f"T: {types}"], shape_fn=shape_fn,
                      doc=doc + " Broadcasts x and y as numpy does.")
    if grad is not None:
        _register_binary_gradient(name, grad)
    return wrapper


def _unary_grad_op(name, forward, formula, doc, grad):
    """The backward op of ``forward``: z = ``formula`` of y (forward's output) and dy (its
    upstream gradient), of one shape; ``grad`` is its own gradient (second derivatives)."""
    wrapper = declare(
        name, inputs=[f"y: T  # {forward}'s output", "dy: T  # its gradient; y's shape"],
        outputs=[f"z: T  # the gradient w.r.t. {forward}'s input"],
        attrs=[f"T: {_UNARY_COMPLEX}"], shape_fn=_merge_both_shape,
        doc=f"{forward}'s gradient from its output: z = {formula}. {doc}".rstrip())
    _register_binary_gradient(name, grad, broadcasts=False)
    return wrapper


def _logical(name, doc):
    return declare(name, inputs=["x: bool", "y: bool"], outputs=["z: bool"],
                   shape_fn=broadcast_binary, doc=doc + " Broadcasts x and y as numpy does.")


# Unary ops: one output y of x's dtype and shape. grad: d/dx given g = dL/dy.
Neg = _unary("Neg", _UNARY, "-x elementwise; integers wrap as in C++ (-INT_MIN == INT_MIN).",
             grad=lambda m, x, y, g: m.Neg(g))
Abs = _unary("Abs", _ABS, "|x| elementwise; integers wrap as in C++ (|INT_MIN| == INT_MIN).",
             grad=lambda m, x, y, g: m.Mul(g, m.Sign(x)))
Sign = _unary("Sign", _UNARY, "-1, 0 or 1 by the sign of x; x / |x| (0 at 0) for complex x.",
              grad=lambda m, x, y, g: m.ZerosLike(x))         # Python TF's _SignGrad
Conj = _unary("Conj", "{complex64, complex128} = DT_COMPLEX64",
              "The complex conjugate elementwise: real - imag * j.",
              grad=lambda m, x, y, g: m.Conj(g))
Square = _unary("Square", _UNARY_UNSIGNED, "x * x elementwise (integers wrap).",
                grad=lambda m, x, y, g: m.Mul(g, m.Mul(m.conj(x), m.const(2, x))))
Sqrt = _unary("Sqrt", _UNARY_COMPLEX, "sqrt(x) elementwise (NaN for negative real x).",
              grad=lambda m, x, y, g: m.SqrtGrad(y, g))


def _sqrt_grad_grad(m, y, dy, z, g):
    g_over_y = m.RealDiv(g, y)          # z = 0.5 * dy / conj(y)
    return m.Mul(m.Neg(m.conj(g_over_y)), z), m.Mul(m.const(0.5, g), g_over_y)


SqrtGrad = _unary_grad_op("SqrtGrad", "Sqrt", "dy * 0.5 / conj(y)", "", grad=_sqrt_grad_grad)
Rsqrt = _unary("Rsqrt", _UNARY_COMPLEX, "1 / sqrt(x) elementwise.",
               grad=lambda m, x, y, g: m.RsqrtGrad(y, g))
RsqrtGrad = _unary_grad_op(
    "RsqrtGrad", "Rsqrt", "dy * -0.5 * conj(y)^3", "",
    grad=lambda m, y, dy, z, g: (
        m.Mul(m.Mul(m.Mul(m.const(-1.5, g), m.conj(g)), dy), m.Square(m.conj(y))),
        m.RsqrtGrad(m.conj(y), g)))
Reciprocal = _unary("Reciprocal", _UNARY, "1 / x elementwise; for integers C++ division "
                    "(0 unless |x| == 1), and x == 0 is 'Integer division by zero'.",
                    _integer_reciprocal_shape, grad=lambda m, x, y, g: m.ReciprocalGrad(y, g))
Inv = _unary("Inv", _UNARY, "1 / x elementwise: the older name of Reciprocal.",
             _integer_reciprocal_shape, grad=lambda m, x, y, g: m.ReciprocalGrad(y, g))
ReciprocalGrad = _unary_grad_op(
    "ReciprocalGrad", "Reciprocal", "-dy * conj(y)^2", "Also Inv's gradient.",
    grad=lambda m, y, dy, z, g: (
        m.Mul(m.Mul(m.Mul(m.conj(g), m.const(-2, g)), dy), m.conj(y)),
        m.ReciprocalGrad(m.conj(y), g)))
Exp = _unary("Exp", _UNARY_COMPLEX, "e ** x elementwise.",
             grad=lambda m, x, y, g: m.Mul(g, m.conj(y)))
Expm1 = _unary("Expm1", _UNARY_COMPLEX, "e ** x - 1 elementwise, accurate near 0.",
               grad=lambda m, x, y, g: m.Mul(g, m.Exp(m.conj(x))))
Log = _unary("Log", _UNARY_COMPLEX, "Natural logarithm elementwise (-inf at 0, NaN below).",
             grad=lambda m, x, y, g: m.Mul(g, m.Reciprocal(m.conj(x))))
Log1p = _unary("Log1p", _UNARY_COMPLEX, "log(1 + x) elementwise, accurate near 0.",
               grad=lambda m, x, y, g: m.Mul(g, m.Reciprocal(
                   m.AddV2(m.const(1, x), m.conj(x)))))
Sigmoid = _unary("Sigmoid", _UNARY_COMPLEX, "1 / (1 + exp(-x)) elementwise, computed without "
                 "overflow for large |x|.", grad=lambda m, x, y, g: m.SigmoidGrad(m.conj(y), g))


def _sigmoid_grad_grad(m, y, dy, z, g):
    y, dy = m.conj(y), m.conj(dy)
    g_dy = m.Mul(g, dy)
    return m.Sub(g_dy, m.Mul(m.Mul(m.const(2, g), g_dy), y)), m.SigmoidGrad(y, g)


SigmoidGrad = _unary_grad_op("SigmoidGrad", "Sigmoid", "dy * y * (1 - y)", "",
                             grad=_sigmoid_grad_grad)
Tanh = _unary("Tanh", _UNARY_COMPLEX, "Hyperbolic tangent elementwise.",
              grad=lambda m, x, y, g: m.TanhGrad(m.conj(y), g))
TanhGrad = _unary_grad_op(
    "TanhGrad", "Tanh", "dy * (1 - y * y)", "",
    grad=lambda m, y, dy, z, g: (m.Mul(m.Mul(m.Mul(g, m.const(-2, g)), m.conj(dy)),
                                       m.conj(y)),
                                 m.TanhGrad(m.conj(y), g)))
Sin = _unary("Sin", _UNARY_COMPLEX, "Sine elementwise.",
             grad=lambda m, x, y, g: m.Mul(g, m.Cos(m.conj(x))))
Cos = _unary("Cos", _UNARY_COMPLEX, "Cosine elementwise.",
             grad=lambda m, x, y, g: m.Mul(m.Neg(g), m.Sin(m.conj(x))))
Erf = _unary("Erf", _UNARY_REAL, "The Gauss error function elementwise.",
             grad=lambda m, x, y, g: m.Mul(g, m.Mul(m.const(2 / np.sqrt(np.pi), x),
                                                    m.Exp(m.Neg(m.Square(x))))))
# Piecewise constant: no gradient (gradients.NOT_DIFFERENTIABLE, as Python TF).
Floor = _unary("Floor", _UNARY_REAL, "The largest integer not greater than x, elementwise.")
Ceil = _unary("Ceil", _UNARY_REAL, "The smallest integer not less than x, elementwise.")
Round = _unary("Round", _UNARY, "x rounded to the nearest integer, halves to even (banker's "
               "rounding: 0.5 -> 0, 1.5 -> 2, -2.5 -> -2); integers are unchanged.")

# Binary arithmetic: z of the inputs' dtype. grad: (d/dx, d/dy) shaped like z, given g.
Add = _binary("Add", _ADD, "x + y elementwise (string concatenation for strings).",
              grad=lambda m, x, y, z, g: (g, g))
AddV2 = _binary("AddV2", _ADD_V2, "x + y elementwise.", grad=lambda m, x, y, z, g: (g, g))
Sub = _binary("Sub", _BINARY_MORE, "x - y elementwise.",
              grad=lambda m, x, y, z, g: (g, m.Neg(g)))
Mul = _binary("Mul", _BINARY_MORE, "x * y elementwise.",
              grad=lambda m, x, y, z, g: (m.Mul(g, m.conj(y)), m.Mul(m.conj(x), g)))
Div = _binary("Div", _BINARY_MORE, "x / y elementwise; integers divide as in C++, truncating "
              "toward zero (-7 / 2 == -3); an integer y == 0 is an error.",
              _integer_division_shape, grad=_div_grad("Div"))
RealDiv = _binary("RealDiv", _BINARY_MORE, "x / y elementwise for real (floating) types; "
                  "integers divide as Div does.", _integer_division_shape,
                  grad=_div_grad("RealDiv"))
FloorDiv = _binary("FloorDiv", _BINARY_MORE, "floor(x / y) elementwise (-7 // 2 == -4); an "
                   "integer y == 0 is an error.", _integer_division_shape)
FloorMod = _binary("FloorMod", _FLOOR_MOD, "x - floor(x / y) * y elementwise: the remainder "
                   "has the sign of y (-7 mod 2 == 1); an integer y == 0 is an error.",
                   _integer_division_shape,
                   grad=lambda m, x, y, z, g: (g, m.Mul(g, m.Neg(m.FloorDiv(x, y)))))
DivNoNan = _binary("DivNoNan", _DIV_NO_NAN, "x / y elementwise, and 0 wherever y == 0.",
                   grad=_div_grad("DivNoNan"))
Pow = _binary("Pow", _POW, "x ** y elementwise; integers to negative integer powers are an "
              "error.", _pow_shape, grad=_pow_grad)
Maximum = _binary("Maximum", _MIN_MAX, "max(x, y) elementwise (NaN if either is NaN).",
                  grad=_max_min_grad("GreaterEqual"))
Minimum = _binary("Minimum", _MIN_MAX, "min(x, y) elementwise (NaN if either is NaN).",
                  grad=_max_min_grad("LessEqual"))
SquaredDifference = _binary("SquaredDifference", _BINARY_FEWER,
                            "conj(x - y) * (x - y) elementwise.", grad=_squared_difference_grad)

# Comparisons and logic: bool z (not differentiable: gradients.NOT_DIFFERENTIABLE).
Less = _binary("Less", "realnumbertype", "x < y elementwise.", out="bool")
LessEqual = _binary("LessEqual", "realnumbertype", "x <= y elementwise.", out="bool")
Greater = _binary("Greater", "realnumbertype", "x > y elementwise.", out="bool")
GreaterEqual = _binary("GreaterEqual", "realnumbertype", "x >= y elementwise.", out="bool")
LogicalAnd = _logical("LogicalAnd", "x AND y elementwise.")
LogicalOr = _logical("LogicalOr", "x OR y elementwise.")
LogicalNot = declare("LogicalNot", inputs=["x: bool"], outputs=["y: bool"],
                     shape_fn=unchanged_shape, doc="NOT x elementwise.")


def _equality(name, doc):
    return declare(
        name, inputs=["x: T", "y: T"], outputs=["z: bool"],
        attrs=["T: type",
               "incompatible_shape_error: bool = true  # false: shapes that cannot broadcast "
               "give a scalar instead of an error"],
        shape_fn=_equality_shape, doc=doc + " Broadcasts x and y as numpy does.")


Equal = _equality("Equal", "x == y elementwise, for every dtype.")
NotEqual = _equality("NotEqual", "x != y elementwise, for every dtype.")

AddN = declare(
    "AddN",
    inputs=["inputs: N * T  # tensors of one shape"], outputs=["sum: T"],
    attrs=["N: int >= 1", "T: numbertype"],
    shape_fn=_add_n_shape,
    doc="The elementwise sum of N tensors of one shape and dtype (no broadcasting).")


@gradient("AddN")
def _add_n_grad(scope, op, grads):
    return [grads[0]] * op.num_inputs


ClipByValue = declare(
    "ClipByValue",
    inputs=["t: T", "clip_value_min: T  # a scalar or t's shape",
            "clip_value_max: T  # a scalar or t's shape"],
    outputs=["output: T"],
    attrs=["T: numbertype"],
    shape_fn=_clip_shape,
    doc="t clipped to [clip_value_min, clip_value_max] elementwise: min(max(t, min), max).")


@gradient("ClipByValue")
def _clip_by_value_grad(scope, op, grads):
    """TF's _ClipByValueGrad: g goes to the bound t is clipped to, else to t; a scalar bound
    gets the sum over t's elements clipped to it."""
    m, g = _Builder(scope), grads[0]
    t, low, high = op.inputs
    zeros = m.ZerosLike(g)
    below, above = m.Less(t, low), m.Greater(t, high)
    d_t = m.SelectV2(m.LogicalOr(below, above), zeros, g)
    d_low = _reduce_pair(m, t, low, None, m.SelectV2(below, g, zeros), t)[1]
    d_high = _reduce_pair(m, t, high, None, m.SelectV2(above, g, zeros), t)[1]
    return [d_t, d_low, d_high]


Cast = declare(
    "Cast",
    inputs=["x: SrcT"], outputs=["y: DstT"],
    attrs=["SrcT: type", "DstT: type  # the result dtype",
           "Truncate: bool = false  # drop the low mantissa bits instead of rounding when "
           "narrowing a floating type"],
    shape_fn=_cast_shape, value_fn=_cast_value,
    doc="x converted to DstT elementwise with C++ static_cast rules: floats truncate toward "
        "zero into integers, integers wrap, nonzero is true; complex to real keeps the real "
        "part. NaN or out-of-range floats to integers give numpy's value. Strings only cast to "
        "strings.")

_FLOATING = ("float16", "bfloat16", "float32", "float64", "complex64", "complex128")


@gradient("Cast")
def _cast_grad(scope, op, grads):
    """The gradient cast back to SrcT when both types are floating or complex; else none."""
    src, dst = op.attrs["SrcT"], op.attrs["DstT"]
    if src.name in _FLOATING and dst.name in _FLOATING:
        return [_Builder(scope).Cast(grads[0], src)]
    return [None]


Select = declare(
    "Select",
    inputs=["condition: bool", "t: T", "e: T  # t's shape"], outputs=["output: T"],
    attrs=["T: type"],
    shape_fn=_select_shape,
    doc="t where condition else e. condition is a scalar, t's shape, or a vector picking "
        "whole rows (first dim) of t and e, which have one shape.")


@gradient("Select")
def _select_grad(scope, op, grads):
    m, g = _Builder(scope), grads[0]
    condition, t = op.inputs[0], op.inputs[1]
    zeros = m.ZerosLike(t)
    return [None, m.Select(condition, g, zeros), m.Select(condition, zeros, g)]


SelectV2 = declare(
    "SelectV2",
    inputs=["condition: bool", "t: T", "e: T"], outputs=["output: T"],
    attrs=["T: type"],
    shape_fn=_select_v2_shape,
    doc="t where condition else e, with numpy broadcasting of all three inputs.")


@gradient("SelectV2")
def _select_v2_grad(scope, op, grads):
    """g where condition to t, elsewhere to e, each summed back to its input's shape."""
    m, g = _Builder(scope), grads[0]
    condition, t, e = op.inputs
    out = op.output(0)
    zero = m.const(0, g)
    d_t = _reduce_pair(m, t, out, m.SelectV2(condition, g, zero), None, out)[0]
    d_e = _reduce_pair(m, e, out, m.SelectV2(condition, zero, g), None, out)[0]
    return [None, d_t, d_e]


BroadcastGradientArgs = declare(
    "BroadcastGradientArgs",
    inputs=["s0: T  # 1-D: a shape", "s1: T  # 1-D: another shape"],
    outputs=["r0: T  # 1-D: the axes to sum a broadcast gradient over for s0",
             "r1: T  # 1-D: the same for s1"],
    attrs=["T: {int32, int64} = DT_INT32"],
    shape_fn=_broadcast_gradient_args_shape, value_fn=_broadcast_gradient_args_value,
    doc="The reduction axes of a broadcasting binary op's gradients (TF's BCast): nothing "
        "for identical shapes; otherwise, with both left-padded with 1s, every axis where "
        "that side's dim is 1. The axes are known at build time wherever the (partial) "
        "shape values decide them, e.g. from Shape of partially known tensors.")

# tensorflow/cc/ops aliases (math_ops.h).
Multiply = Mul
Subtract = Sub
Negate = Neg
