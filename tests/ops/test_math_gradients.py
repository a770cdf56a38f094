"""Gradients of the elementwise math ops beyond the generic suite: BroadcastGradientArgs on
partial shape values, gradient graphs of broadcasting ops built from unknown-dim and
unknown-rank placeholders, second derivatives (TF's gradient checker on a gradient) and the
special cases of TF's formulas (ties of Maximum/Minimum, Pow at x <= 0, DivNoNan at 0, Cast,
Sign)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import ops
from opgraph import AddSymbolicGradients, Scope, TensorShape, as_dtype, errors, gradients
from opgraph.testing import compute_gradient_error
from ops.math_ops import gradient_reduction_axes
from runtime import ClientSession

F32, F64, I32 = np.float32, np.float64, np.int32
DELTA = 1e-6


def _placeholder(root, dtype, shape):
    return ops.Placeholder(root, as_dtype(dtype), shape=shape).output


def _run(root, fetches, feeds=None):
    assert root.ok(), root.status()
    return ClientSession(root).Run(feeds or {}, fetches)


def _op_types(root) -> set:
    return {op.type for op in root.graph().operations()}


# ---------------------------------------------------------------- BroadcastGradientArgs
def _kernel_axes(s0, s1):
    root = Scope.NewRootScope()
    p0, p1 = _placeholder(root, I32, [None]), _placeholder(root, I32, [None])
    args = ops.BroadcastGradientArgs(root, p0, p1)
    r0, r1 = _run(root, [args.r0, args.r1], {p0: np.array(s0, I32), p1: np.array(s1, I32)})
    return tuple(r0.tolist()), tuple(r1.tolist())


def _completions(partial):
    return itertools.product(*[(d,) if d is not None else (0, 1, 2, 3) for d in partial])


def _broadcasts(a, b):
    try:
        np.broadcast_shapes(a, b)
    except ValueError:
        return False
    return True


def test_decided_axes_hold_for_every_completion_of_the_partial_shapes():
    """Exhaustive over ranks 0..2 with dims 1, 2 or unknown: whenever the partial shapes
    decide a side's axes, the kernel gives exactly those for every completion that
    broadcasts; an error is raised only when no completion broadcasts."""
    dims = (1, 2, None)
    shapes = [s for r in range(3) for s in itertools.product(dims, repeat=r)]
    decided = 0
    for s0, s1 in itertools.product(shapes, shapes):
        completions = [(a, b) for a in _completions(s0) for b in _completions(s1)
                       if _broadcasts(a, b)]
        try:
            r0, r1 = gradient_reduction_axes(s0, s1)
        except errors.InvalidArgumentError:
            assert not completions, (s0, s1)
            continue
        results = {_kernel_axes(a, b) for a, b in completions}
        for k, r in enumerate((r0, r1)):
            if r is not None:
                decided += 1
                assert {res[k] for res in results} == {r}, (s0, s1, k, r, results)
            elif None not in s0 and None not in s1:
                pytest.fail(f"{s0} vs {s1}: side {k} undecided with known shapes")
    assert decided > 50


def test_broadcast_gradient_args_value_known_from_partial_shapes():
    root = Scope.NewRootScope()
    x = _placeholder(root, F32, [None, 3])
    y = _placeholder(root, F32, [3])
    args = ops.BroadcastGradientArgs(root, ops.Shape(root, x), ops.Shape(root, y))
    assert args.r0.shape.dims == (None,)
    assert args.r1.shape.dims == (1,)
    assert args.operation.output_values[0] is None
    np.testing.assert_array_equal(args.operation.output_values[1], [0])
    for fed, want_r0 in (((4, 3), []), ((1, 3), [0])):
        r0, r1 = _run(root, [args.r0, args.r1],
                      {x: np.zeros(fed, F32), y: np.zeros(3, F32)})
        assert r0.tolist() == want_r0 and r1.tolist() == [0] and r0.dtype == I32


def test_broadcast_gradient_args_identical_or_not_still_decides_one_side():
    root = Scope.NewRootScope()
    x = _placeholder(root, F32, [2, 3])
    y = _placeholder(root, F32, [None, 3])
    args = ops.BroadcastGradientArgs(root, ops.Shape(root, x), ops.Shape(root, y))
    assert args.r0.shape.dims == (0,) and args.r1.shape.dims == (None,)


def test_broadcast_gradient_args_of_static_shapes_is_constant_and_int64_kept():
    root = Scope.NewRootScope()
    s0 = ops.Const(root, np.array([2, 1, 4], np.int64))
    s1 = ops.Const(root, np.array([3, 1], np.int64))
    args = ops.BroadcastGradientArgs(root, s0, s1)
    assert [v.tolist() for v in args.operation.output_values] == [[1], [0, 2]]
    assert args.r0.dtype.name == "int64"
    r0, r1 = _run(root, [args.r0, args.r1])
    assert r0.tolist() == [1] and r1.tolist() == [0, 2] and r1.dtype == np.int64


def test_broadcast_gradient_args_refuses_known_incompatible_dims_of_partial_shapes():
    root = Scope.NewRootScope()
    x = _placeholder(root, F32, [None, 3])
    y = _placeholder(root, F32, [4, 2])
    ops.BroadcastGradientArgs(root, ops.Shape(root, x), ops.Shape(root, y))
    assert not root.ok()
    assert "Incompatible shapes: [?,3] vs. [4,2]" in str(root.status().errors[0])


def test_broadcast_gradient_args_refuses_incompatible_values_at_run_time():
    root = Scope.NewRootScope()
    x = _placeholder(root, F32, None)
    y = _placeholder(root, F32, None)
    args = ops.BroadcastGradientArgs(root, ops.Shape(root, x), ops.Shape(root, y))
    with pytest.raises(errors.InvalidArgumentError, match=r"Incompatible shapes: \[2,3\] vs\. "
                                                          r"\[2\]"):
        _run(root, [args.r0], {x: np.zeros((2, 3), F32), y: np.zeros(2, F32)})


# ---------------------------------------------------------------- broadcasting reductions
_BINARY = ["Add", "AddV2", "Sub", "Mul", "Div", "RealDiv", "DivNoNan", "FloorMod", "Pow",
           "Maximum", "Minimum", "SquaredDifference"]


def _binary_values(op_type, rng, x_shape, y_shape):
    x = rng.uniform(0.5, 2.0, x_shape) if op_type == "Pow" else rng.uniform(-2, 2, x_shape)
    y = rng.uniform(0.5, 2.0, y_shape) * rng.choice([-1.0, 1.0], y_shape)
    return x, y


@pytest.mark.parametrize("op_type", _BINARY)
@pytest.mark.parametrize(("x_spec", "y_spec"), [
    ([None, None, 3], [None, 3]),      # unknown dims
    (None, None),                      # unknown rank
    ([None, 1, 3], [4, 1]),            # partly known
])
def test_binary_gradients_reduce_to_each_input_shape(op_type, x_spec, y_spec):
    """Built from placeholders with unknown dims or rank, the gradient graph builds, runs,
    has each input's shape and matches finite differences (x: [2,1,3], y: [4,3])."""
    rng = np.random.default_rng(7)
    x_value, y_value = _binary_values(op_type, rng, (2, 1, 3), (4, 1) if y_spec == [4, 1]
                                      else (4, 3))
    root = Scope.NewRootScope()
    x, y = _placeholder(root, F64, x_spec), _placeholder(root, F64, y_spec)
    z = getattr(ops, op_type)(root, x, y).output
    dx, dy = AddSymbolicGradients(root, [z], [x, y])
    assert root.ok(), root.status()
    assert "BroadcastGradientArgs" in _op_types(root)
    gx, gy = _run(root, [dx, dy], {x: x_value, y: y_value})
    assert gx.shape == x_value.shape and gy.shape == y_value.shape
    z_shape = np.broadcast_shapes(x_value.shape, y_value.shape)
    err = compute_gradient_error(root, [x, y], [x_value.shape, y_value.shape], z, z_shape,
                                 x_init_values=[x_value, y_value], delta=DELTA)
    assert err < 1e-6


def test_equal_static_shapes_skip_the_reduction():
    root = Scope.NewRootScope()
    x, y = _placeholder(root, F64, [2, 3]), _placeholder(root, F64, [2, 3])
    dx, dy = AddSymbolicGradients(root, [ops.Mul(root, x, y)], [x, y])
    assert root.ok(), root.status()
    assert not {"BroadcastGradientArgs", "Sum", "Reshape"} & _op_types(root)
    assert dx.shape.dims == (2, 3) and dy.shape.dims == (2, 3)


def test_static_broadcast_gives_static_gradient_shapes_and_reduces_one_side():
    root = Scope.NewRootScope()
    x, y = _placeholder(root, F64, [2, 3]), _placeholder(root, F64, [3])
    dx, dy = AddSymbolicGradients(root, [ops.Sub(root, x, y)], [x, y])
    assert dx.shape.dims == (2, 3) and dy.shape.dims == (3,)
    assert dx.op.type == "OnesLike"              # x needs no reduction: g itself
    x_value = np.arange(6.0).reshape(2, 3)
    gx, gy = _run(root, [dx, dy], {x: x_value, y: np.ones(3)})
    np.testing.assert_array_equal(gx, np.ones((2, 3)))
    np.testing.assert_array_equal(gy, [-2.0, -2.0, -2.0])


def test_select_v2_gradient_with_unknown_dims_sums_broadcast_branches():
    root = Scope.NewRootScope()
    c = _placeholder(root, np.bool_, [None, 1])
    t = _placeholder(root, F64, [None])
    e = _placeholder(root, F64, None)
    dt_, de = AddSymbolicGradients(root, [ops.SelectV2(root, c, t, e)], [t, e])
    cond = np.array([[True], [False], [True]])
    gt, ge = _run(root, [dt_, de], {c: cond, t: np.zeros(4), e: np.float64(1.0)})
    np.testing.assert_array_equal(gt, [2.0, 2.0, 2.0, 2.0])
    assert ge.shape == () and ge == 4.0


def test_clip_by_value_gradient_of_scalar_bounds_counts_the_clipped_elements():
    root = Scope.NewRootScope()
    t = _placeholder(root, F64, [None, 2])
    lo, hi = _placeholder(root, F64, []), _placeholder(root, F64, [])
    grads = AddSymbolicGradients(root, [ops.ClipByValue(root, t, lo, hi)], [t, lo, hi])
    value = np.array([[-3.0, 0.5], [2.0, 5.0], [-0.2, 9.0]])
    gt, glo, ghi = _run(root, grads, {t: value, lo: np.float64(-1), hi: np.float64(1)})
    np.testing.assert_array_equal(gt, [[0, 1], [0, 0], [1, 0]])
    assert glo == 1.0 and ghi == 3.0


def test_add_n_and_select_gradients():
    root = Scope.NewRootScope()
    a, b = _placeholder(root, F64, [None]), _placeholder(root, F64, [None])
    c = _placeholder(root, np.bool_, [None])
    rows = _placeholder(root, F64, [None, 2])
    total = ops.AddN(root, [a, b, a])
    picked = ops.Select(root, c, rows, ops.Neg(root, rows))
    ga, gb, grows = AddSymbolicGradients(root, [total, picked], [a, b, rows])
    got = _run(root, [ga, gb, grows], {a: np.ones(3), b: np.ones(3),
                                       c: np.array([True, False]), rows: np.ones((2, 2))})
    np.testing.assert_array_equal(got[0], [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(got[1], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(got[2], [[1.0, 1.0], [-1.0, -1.0]])


# ---------------------------------------------------------------- TF's special cases
@pytest.mark.parametrize(("op_type", "want_x"), [("Maximum", [1.0, 1.0, 0.0]),
                                                 ("Minimum", [1.0, 0.0, 1.0])])
def test_maximum_minimum_ties_go_to_x(op_type, want_x):
    root = Scope.NewRootScope()
    x, y = _placeholder(root, F64, [3]), _placeholder(root, F64, [3])
    dx, dy = AddSymbolicGradients(root, [getattr(ops, op_type)(root, x, y)], [x, y])
    gx, gy = _run(root, [dx, dy], {x: np.array([2.0, 3.0, 1.0]), y: np.array([2.0, 1.0, 3.0])})
    np.testing.assert_array_equal(gx, want_x)
    np.testing.assert_array_equal(gy, 1.0 - np.array(want_x))


def test_pow_gradient_at_zero_and_negative_bases_is_finite():
    root = Scope.NewRootScope()
    x, y = _placeholder(root, F64, [3]), _placeholder(root, F64, [3])
    dx, dy = AddSymbolicGradients(root, [ops.Pow(root, x, y)], [x, y])
    gx, gy = _run(root, [dx, dy], {x: np.array([0.0, -2.0, 2.0]), y: np.array([2.0, 3.0, 3.0])})
    np.testing.assert_allclose(gx, [0.0, 12.0, 12.0])
    np.testing.assert_allclose(gy, [0.0, 0.0, 8.0 * np.log(2.0)])


def test_div_no_nan_gradients_are_zero_where_y_is_zero():
    root = Scope.NewRootScope()
    x, y = _placeholder(root, F64, [2]), _placeholder(root, F64, [2])
    dx, dy = AddSymbolicGradients(root, [ops.DivNoNan(root, x, y)], [x, y])
    gx, gy = _run(root, [dx, dy], {x: np.array([3.0, 3.0]), y: np.array([0.0, 2.0])})
    np.testing.assert_allclose(gx, [0.0, 0.5])
    np.testing.assert_allclose(gy, [0.0, -0.75])


def test_sign_gradient_is_zeros_as_python_tf():
    root = Scope.NewRootScope()
    x = _placeholder(root, F64, [None])
    (dx,) = AddSymbolicGradients(root, [ops.Sign(root, x)], [x])
    np.testing.assert_array_equal(_run(root, [dx], {x: np.array([-1.0, 2.0])})[0], [0.0, 0.0])


def test_cast_gradient_is_cast_back_between_floats_and_none_through_integers():
    root = Scope.NewRootScope()
    x = _placeholder(root, F32, [2])
    wide = ops.Cast(root, x, as_dtype(F64))
    (dx,) = AddSymbolicGradients(root, [ops.Mul(root, wide, wide)], [x])
    assert dx.dtype.name == "float32"
    np.testing.assert_allclose(_run(root, [dx], {x: np.array([1.5, -2.0], F32)})[0],
                               [3.0, -4.0])
    as_int = ops.Cast(root, x, as_dtype(I32))
    back = ops.Cast(root, as_int, as_dtype(F32))
    assert AddSymbolicGradients(root, [back], [x]) == [None]


def test_conj_gradient_conjugates_the_upstream_gradient():
    root = Scope.NewRootScope()
    x = _placeholder(root, np.complex128, [2])
    g = _placeholder(root, np.complex128, [2])
    (dx,) = AddSymbolicGradients(root, [ops.Conj(root, x)], [x], [g])
    assert dx.op.type == "Conj"
    got = _run(root, [dx], {x: np.zeros(2, np.complex128), g: np.array([1 + 2j, -1j])})[0]
    np.testing.assert_array_equal(got, [1 - 2j, 1j])


def test_not_differentiable_math_ops():
    for op_type in ("Less", "LessEqual", "Greater", "GreaterEqual", "Equal", "NotEqual",
                    "LogicalAnd", "LogicalOr", "LogicalNot", "FloorDiv", "Floor", "Ceil",
                    "Round", "BroadcastGradientArgs"):
        assert gradients.get_gradient_function(op_type) is None, op_type
    root = Scope.NewRootScope()
    x = _placeholder(root, F64, [2])
    assert AddSymbolicGradients(root, [ops.Floor(root, x)], [x]) == [None]


# ---------------------------------------------------------------- second derivatives
def _second_order_error(build, values):
    """Max Jacobian error of the gradients of <v, build(xs)> w.r.t. the xs, as functions of
    the xs and of v (v: a random upstream gradient fed as a placeholder)."""
    rng = np.random.default_rng(3)
    root = Scope.NewRootScope()
    xs = [_placeholder(root, F64, list(np.shape(v))) for v in values]
    y = build(root, *xs).output
    v_value = rng.uniform(-1, 1, y.shape.dims)
    v = _placeholder(root, F64, list(y.shape.dims))
    grads = AddSymbolicGradients(root, [y], xs, [v])
    assert root.ok(), root.status()
    return compute_gradient_error(root, [*xs, v], [np.shape(a) for a in values] + [v_value.shape],
                                  grads, [np.shape(a) for a in values],
                                  x_init_values=[*values, v_value], delta=DELTA)


_RNG = np.random.default_rng(11)
_POSITIVE = _RNG.uniform(0.5, 2.0, (2, 3))
_ANY = _RNG.uniform(-2.0, 2.0, (2, 3))
_NONZERO = _RNG.uniform(0.5, 2.0, (2, 3)) * _RNG.choice([-1.0, 1.0], (2, 3))

_SECOND_ORDER_CASES = [
    ("Mul", (_ANY, _NONZERO)), ("Div", (_ANY, _NONZERO)), ("RealDiv", (_ANY, _NONZERO)),
    ("Pow", (_POSITIVE, _ANY)), ("SquaredDifference", (_ANY, _NONZERO)),
    ("Sub", (_ANY, _NONZERO)), ("Maximum", (_ANY, _NONZERO)), ("DivNoNan", (_ANY, _NONZERO)),
    ("Exp", (_ANY,)), ("Sigmoid", (_ANY,)), ("Tanh", (_ANY,)), ("Square", (_ANY,)),
    ("Sqrt", (_POSITIVE,)), ("Rsqrt", (_POSITIVE,)), ("Reciprocal", (_NONZERO,)),
    ("Inv", (_NONZERO,)), ("Log", (_POSITIVE,)), ("Log1p", (_POSITIVE,)),
    ("Expm1", (_ANY,)), ("Sin", (_ANY,)), ("Cos", (_ANY,)), ("Erf", (_ANY,)),
    ("Abs", (_NONZERO,)), ("Neg", (_ANY,)),
    ("SigmoidGrad", (_ANY, _NONZERO)), ("TanhGrad", (_ANY, _NONZERO)),
    ("SqrtGrad", (_POSITIVE, _ANY)), ("RsqrtGrad", (_POSITIVE, _ANY)),
    ("ReciprocalGrad", (_NONZERO, _ANY)),
]


@pytest.mark.parametrize(("op_type", "values"), _SECOND_ORDER_CASES,
                         ids=[c[0] for c in _SECOND_ORDER_CASES])
def test_second_derivatives_match_finite_differences(op_type, values):
    err = _second_order_error(getattr(ops, op_type), values)
    assert err < 1e-6, f"{op_type}: second-order Jacobian error {err:.3g}"


def test_second_derivative_of_pow_with_respect_to_the_exponent_only():
    """d2/dy2 x**y = x**y log(x)^2 through the masked log of TF's formula."""
    root = Scope.NewRootScope()
    x = ops.Const(root, _POSITIVE)
    y = _placeholder(root, F64, [2, 3])
    (dy,) = AddSymbolicGradients(root, [ops.Pow(root, x, y)], [y])
    (ddy,) = AddSymbolicGradients(root, [dy], [y])
    got = _run(root, [ddy], {y: _ANY})[0]
    np.testing.assert_allclose(got, _POSITIVE ** _ANY * np.log(_POSITIVE) ** 2, rtol=1e-12)


@pytest.mark.parametrize("op_type", ["Mul", "Div", "Pow", "Maximum"])
def test_second_derivatives_through_broadcasting(op_type):
    """The reduction (Sum + Reshape) is itself differentiated."""
    missing = [t for t in ("Sum", "Reshape") if not gradients.is_differentiable(t)]
    if missing:
        pytest.skip(f"no gradient for {', '.join(missing)} yet (other op families)")
    x_value, y_value = _binary_values(op_type, np.random.default_rng(5), (2, 1, 3), (4, 1))
    err = _second_order_error(getattr(ops, op_type), (x_value, y_value))
    assert err < 1e-6


def test_gradient_shapes_stay_partial_not_wrong():
    """Unknown dims stay unknown in the gradients' static shapes; known ones are kept."""
    root = Scope.NewRootScope()
    x, y = _placeholder(root, F64, [None, 3]), _placeholder(root, F64, [3])
    dx, dy = AddSymbolicGradients(root, [ops.Mul(root, x, y)], [x, y])
    assert root.ok(), root.status()
    assert dx.shape.is_compatible_with(TensorShape([None, 3]))
    assert dy.shape.dims == (3,)
