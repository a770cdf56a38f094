"""Gradients of the reductions, scans and matrix products beyond the generic suite: MatMul's
second derivatives, Sum/Mean (and Prod/Max/Min) gradients from partially known shapes,
unknown ranks and run-time axes, keep_dims and negative axes, ties and zeros, every
Cumsum/Cumprod flag, batch broadcasting in BatchMatMulV2, and complex adjoints."""

from __future__ import annotations

import numpy as np
import pytest

import ops
from opgraph import DT_DOUBLE, DT_INT32, AddSymbolicGradients, Scope, gradients
from opgraph.testing import compute_gradient_error
from runtime import ClientSession

F64 = np.float64
DELTA = 1e-6
TOL = 1e-6


def _ph(root, dtype=DT_DOUBLE, shape=None):
    return ops.Placeholder(root, dtype, shape=shape).output


def _run(root, feeds, fetches):
    assert root.ok(), root.status()
    return ClientSession(root).Run(feeds, fetches)


def _check(build, x_values, static_shapes=None, feeds_of=None):
    """Gradient-check ``build(root, *xs)`` (one output) at ``x_values``, with the xs declared
    with ``static_shapes`` (partial shapes allowed; default: the values' shapes)."""
    root = Scope.NewRootScope()
    shapes = static_shapes or [list(v.shape) for v in x_values]
    xs = [_ph(root, shape=s) for s in shapes]
    extra = feeds_of(root) if feeds_of else {}
    y = build(root, *xs)
    y = getattr(y, "output", y)
    y_value = _run(root, {**dict(zip(xs, x_values)), **extra}, [y])[0]
    return compute_gradient_error(root, xs, [v.shape for v in x_values], y, y_value.shape,
                                  x_init_values=list(x_values), delta=DELTA, feeds=extra)


# ---------------------------------------------------------------- MatMul second derivatives
_TRANSPOSES = [(False, False), (False, True), (True, False), (True, True)]


def _mat_mul_inputs(rng, ta, tb, m=2, k=3, n=4):
    a = rng.uniform(-1, 1, (k, m) if ta else (m, k))
    b = rng.uniform(-1, 1, (n, k) if tb else (k, n))
    return a, b, rng.uniform(-1, 1, (m, n))


@pytest.mark.parametrize(("ta", "tb"), _TRANSPOSES)
def test_mat_mul_first_derivative_every_transpose_case(ta, tb):
    a, b, _ = _mat_mul_inputs(np.random.default_rng(0), ta, tb)
    err = _check(lambda r, x, y: ops.MatMul(r, x, y, transpose_a=ta, transpose_b=tb), [a, b])
    assert err < TOL


@pytest.mark.parametrize(("ta", "tb"), _TRANSPOSES)
def test_mat_mul_second_derivative(ta, tb):
    """d<v, a*b>/da and /db are themselves checked against finite differences in a, b, v."""
    a, b, v = _mat_mul_inputs(np.random.default_rng(1), ta, tb)
    root = Scope.NewRootScope()
    xa, xb, xv = _ph(root, shape=list(a.shape)), _ph(root, shape=list(b.shape)), \
        _ph(root, shape=list(v.shape))
    y = ops.MatMul(root, xa, xb, transpose_a=ta, transpose_b=tb)
    da, db = AddSymbolicGradients(root, [y], [xa, xb], [xv])
    assert root.ok(), root.status()
    assert da.shape.dims == a.shape and db.shape.dims == b.shape
    assert da.op.type == db.op.type == "MatMul"
    assert (da.op.attrs["grad_a"], db.op.attrs["grad_b"]) == (True, True)
    err = compute_gradient_error(root, [xa, xb, xv], [a.shape, b.shape, v.shape], [da, db],
                                 [a.shape, b.shape], x_init_values=[a, b, v], delta=DELTA)
    assert err < TOL


def test_mat_mul_chain_second_derivative():
    """Second derivatives through two products: z = (a * b) * c, d<v, z>/d(a, c)."""
    rng = np.random.default_rng(2)
    a, b, c = rng.uniform(-1, 1, (2, 3)), rng.uniform(-1, 1, (3, 4)), rng.uniform(-1, 1, (2, 4))
    v = rng.uniform(-1, 1, (2, 2))
    root = Scope.NewRootScope()
    xa, xb, xc, xv = (_ph(root, shape=list(t.shape)) for t in (a, b, c, v))
    z = ops.MatMul(root, ops.MatMul(root, xa, xb), xc, transpose_b=True)
    da, dc = AddSymbolicGradients(root, [z], [xa, xc], [xv])
    err = compute_gradient_error(root, [xa, xb, xc, xv], [t.shape for t in (a, b, c, v)],
                                 [da, dc], [a.shape, c.shape], x_init_values=[a, b, c, v],
                                 delta=DELTA)
    assert err < TOL


def test_mat_mul_hessian_values():
    """The gradient of sum(dL/da) for L = sum(a*b) w.r.t. b is exact: each b[k, j] gets m."""
    root = Scope.NewRootScope()
    xa, xb = _ph(root, shape=[2, 3]), _ph(root, shape=[3, 4])
    (da,) = AddSymbolicGradients(root, [ops.MatMul(root, xa, xb)], [xa])
    (dda_db,) = AddSymbolicGradients(root, [da], [xb])
    got = _run(root, {xa: np.ones((2, 3)), xb: np.ones((3, 4))}, [dda_db])[0]
    np.testing.assert_array_equal(got, np.full((3, 4), 2.0))


# ---------------------------------------------------------------- complex adjoints
def _complex_gradient_by_differences(forward, inputs, v, i):
    """TF's convention for complex z and real L = Re(sum(conj(v) * f)): dL/dRe(z) +
    i dL/dIm(z), by central differences of the graph's forward values."""
    out = np.zeros(inputs[i].shape, np.complex128)
    for unit in (1, 1j):
        for e in range(inputs[i].size):
            vals = []
            for sign in (1, -1):
                args = [t.copy() for t in inputs]
                args[i].reshape(-1)[e] += sign * unit * DELTA
                vals.append(np.sum(np.real(np.conj(v) * forward(*args))))
            out.reshape(-1)[e] += unit * (vals[0] - vals[1]) / (2 * DELTA)
    return out


def _complex(rng, shape):
    return rng.uniform(-1, 1, shape) + 1j * rng.uniform(-1, 1, shape)


def _complex_case(make_op, shapes, out_shape, seed=0):
    rng = np.random.default_rng(seed)
    values = [_complex(rng, s) for s in shapes]
    v = _complex(rng, out_shape)
    root = Scope.NewRootScope()
    xs = [ops.Placeholder(root, ops.Const(root, t).output.dtype, shape=list(t.shape)).output
          for t in values]
    y = make_op(root, *xs)
    grads = AddSymbolicGradients(root, [y], xs, [ops.Const(root, v)])
    sess = ClientSession(root)
    assert root.ok(), root.status()
    got = sess.Run(dict(zip(xs, values)), grads)

    def forward(*args):
        return sess.Run(dict(zip(xs, args)), [y])[0]

    for i, g in enumerate(got):
        assert g.dtype == np.complex128
        want = _complex_gradient_by_differences(forward, values, v, i)
        np.testing.assert_allclose(g, want, atol=1e-6)


@pytest.mark.parametrize(("ta", "tb"), _TRANSPOSES)
def test_complex_mat_mul_gradients_conjugate(ta, tb):
    shapes = [(3, 2) if ta else (2, 3), (4, 3) if tb else (3, 4)]
    _complex_case(lambda r, a, b: ops.MatMul(r, a, b, transpose_a=ta, transpose_b=tb),
                  shapes, (2, 4))


@pytest.mark.parametrize(("adj_x", "adj_y"), _TRANSPOSES)
@pytest.mark.parametrize("op_type", ["BatchMatMul", "BatchMatMulV2"])
def test_complex_batch_mat_mul_adjoints(op_type, adj_x, adj_y):
    shapes = [(2, 3, 2) if adj_x else (2, 2, 3), (2, 4, 3) if adj_y else (2, 3, 4)]
    _complex_case(lambda r, x, y: getattr(ops, op_type)(r, x, y, adj_x=adj_x, adj_y=adj_y),
                  shapes, (2, 2, 4))


def test_complex_prod_and_mean_gradients():
    _complex_case(lambda r, x: ops.Prod(r, x, [1]), [(2, 3)], (2,))
    _complex_case(lambda r, x: ops.Mean(r, x, [0], keep_dims=True), [(2, 3)], (1, 3))
    _complex_case(lambda r, x: ops.Cumprod(r, x, 1, reverse=True), [(2, 3)], (2, 3))


# ---------------------------------------------------------------- batch matmul broadcasting
_BROADCAST = [((2, 1, 2, 3), (3, 3, 4), {}),
              ((2, 3), (4, 3, 2), {}),
              ((3, 1, 2, 4), (5, 2, 4), {"adj_y": True}),
              ((1, 3, 2), (4, 3, 5), {"adj_x": True}),
              ((2, 1, 3, 2), (1, 3, 4, 3), {"adj_x": True, "adj_y": True}),
              ((2, 2, 3), (3, 4), {})]


@pytest.mark.parametrize(("sx", "sy", "attrs"), _BROADCAST)
def test_batch_mat_mul_v2_broadcast_gradients(sx, sy, attrs):
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-1, 1, sx), rng.uniform(-1, 1, sy)
    err = _check(lambda r, a, b: ops.BatchMatMulV2(r, a, b, **attrs), [x, y])
    assert err < TOL


@pytest.mark.parametrize(("sx", "sy", "attrs"), _BROADCAST)
def test_batch_mat_mul_v2_broadcast_gradients_from_unknown_shapes(sx, sy, attrs):
    """Unknown batch dims (and unknown ranks) reduce the broadcast axes at run time."""
    rng = np.random.default_rng(4)
    x, y = rng.uniform(-1, 1, sx), rng.uniform(-1, 1, sy)
    fn = lambda r, a, b: ops.BatchMatMulV2(r, a, b, **attrs)  # noqa: E731
    partial = [[None] * (len(sx) - 2) + list(sx[-2:]), [None] * (len(sy) - 2) + list(sy[-2:])]
    assert _check(fn, [x, y], partial) < TOL
    assert _check(fn, [x, y], [None, None]) < TOL


def test_batch_mat_mul_v2_gradient_static_shapes():
    root = Scope.NewRootScope()
    x, y = _ph(root, shape=[2, 1, 2, 3]), _ph(root, shape=[None, 3, 4])
    dx, dy = AddSymbolicGradients(root, [ops.BatchMatMulV2(root, x, y)], [x, y])
    assert dx.shape.dims == (2, 1, 2, 3)
    assert dy.shape.rank == 3
    got = _run(root, {x: np.ones((2, 1, 2, 3)), y: np.ones((5, 3, 4))}, [dx, dy])
    np.testing.assert_array_equal(got[0], np.full((2, 1, 2, 3), 20.0))   # 5 batches * 4 cols
    np.testing.assert_array_equal(got[1], np.full((5, 3, 4), 4.0))       # 2 batches * 2 rows


def test_batch_mat_mul_v2_second_derivative_without_broadcast():
    rng = np.random.default_rng(5)
    x, y, v = rng.uniform(-1, 1, (2, 2, 3)), rng.uniform(-1, 1, (2, 3, 4)), \
        rng.uniform(-1, 1, (2, 2, 4))
    root = Scope.NewRootScope()
    xs = [_ph(root, shape=list(t.shape)) for t in (x, y, v)]
    dx, dy = AddSymbolicGradients(root, [ops.BatchMatMulV2(root, xs[0], xs[1], adj_y=False)],
                                  xs[:2], [xs[2]])
    err = compute_gradient_error(root, xs, [x.shape, y.shape, v.shape], [dx, dy],
                                 [x.shape, y.shape], x_init_values=[x, y, v], delta=DELTA)
    assert err < TOL


def _missing_gradients(*op_types):
    missing = [t for t in op_types if not gradients.is_differentiable(t)]
    return pytest.mark.skipif(bool(missing), reason=f"no gradient yet for {missing}")


@_missing_gradients("Reshape", "BroadcastTo")
@pytest.mark.parametrize("static_shape", [[2, 1, 2, 3], [None, None, 2, 3]])
def test_batch_mat_mul_v2_second_derivative_with_broadcast(static_shape):
    rng = np.random.default_rng(11)
    x, y = rng.uniform(-1, 1, (2, 1, 2, 3)), rng.uniform(-1, 1, (3, 3, 4))
    v = rng.uniform(-1, 1, (2, 3, 2, 4))
    root = Scope.NewRootScope()
    xs = [_ph(root, shape=static_shape), _ph(root, shape=[3, 3, 4]), _ph(root, shape=[2, 3, 2, 4])]
    dx, dy = AddSymbolicGradients(root, [ops.BatchMatMulV2(root, xs[0], xs[1])], xs[:2], [xs[2]])
    err = compute_gradient_error(root, xs, [x.shape, y.shape, v.shape], [dx, dy],
                                 [x.shape, y.shape], x_init_values=[x, y, v], delta=DELTA)
    assert err < TOL


@_missing_gradients("Reshape", "BroadcastTo", "RealDiv")
@pytest.mark.parametrize("op_type", ["Sum", "Mean"])
@pytest.mark.parametrize("static_shape", [[2, 3, 4], [None, 3, None]])
def test_sum_mean_second_derivative(op_type, static_shape):
    """d<v, Sum(x)>/dx is linear in v: its gradient w.r.t. v (and x: zero) is checked."""
    rng = np.random.default_rng(12)
    x, v = rng.uniform(-1, 1, (2, 3, 4)), rng.uniform(-1, 1, (3,))
    root = Scope.NewRootScope()
    xx, xv = _ph(root, shape=static_shape), _ph(root, shape=[3])
    y = getattr(ops, op_type)(root, xx, [0, -1])
    (dx,) = AddSymbolicGradients(root, [y], [xx], [xv])
    err = compute_gradient_error(root, [xx, xv], [x.shape, v.shape], dx, x.shape,
                                 x_init_values=[x, v], delta=DELTA)
    assert err < TOL


# ---------------------------------------------------------------- Sum / Mean shapes
_AXES = [([1], False), ([1], True), ([-1], False), ([-1, 0], True), ([0, -2, 2], False),
         (-2, True), ([], False)]
_STATIC = [[2, 3, 4], [None, 3, None], [None, None, None], None]


@pytest.mark.parametrize("static_shape", _STATIC, ids=["known", "partial", "dims", "rank"])
@pytest.mark.parametrize(("axes", "keep_dims"), _AXES)
@pytest.mark.parametrize("op_type", ["Sum", "Mean", "Prod", "Max", "Min"])
def test_reduction_gradients_from_partial_shapes(op_type, axes, keep_dims, static_shape):
    rng = np.random.default_rng(6)
    x = rng.uniform(0.5, 1.5, (2, 3, 4)) * rng.choice([-1, 1], (2, 3, 4))
    fn = lambda r, t: getattr(ops, op_type)(r, t, np.array(axes, np.int32),  # noqa: E731
                                            keep_dims=keep_dims)
    assert _check(fn, [x], [static_shape]) < TOL


@pytest.mark.parametrize(("axes", "keep_dims"), _AXES)
@pytest.mark.parametrize("op_type", ["Sum", "Mean", "Prod", "Max", "Min"])
def test_reduction_gradients_with_run_time_axes(op_type, axes, keep_dims):
    """The axes are a placeholder: the keep_dims shape is computed in the graph."""
    rng = np.random.default_rng(7)
    x = rng.uniform(0.5, 1.5, (2, 3, 4)) * rng.choice([-1, 1], (2, 3, 4))
    holder = {}

    def feeds(root):
        holder["axes"] = _ph(root, DT_INT32, None)
        return {holder["axes"]: np.array(axes, np.int32)}

    def fn(r, t):
        return getattr(ops, op_type)(r, t, holder["axes"], keep_dims=keep_dims)

    assert _check(fn, [x], [[None, 3, None]], feeds) < TOL


@pytest.mark.parametrize("op_type", ["Sum", "Mean"])
def test_sum_mean_gradient_values_and_static_shape(op_type):
    root = Scope.NewRootScope()
    x = _ph(root, shape=[None, 3, None])
    y = getattr(ops, op_type)(root, x, [-1, 0])
    (dx,) = AddSymbolicGradients(root, [y], [x])
    assert dx.shape.dims == (None, 3, None)
    value = np.zeros((2, 3, 5))
    got = _run(root, {x: value}, [dx])[0]
    np.testing.assert_array_equal(got, np.full(value.shape, 1.0 if op_type == "Sum" else 0.1))
    value = np.zeros((4, 3, 1))                            # the same graph, other sizes
    got = _run(root, {x: value}, [dx])[0]
    np.testing.assert_array_equal(got, np.full(value.shape, 1.0 if op_type == "Sum" else .25))


@pytest.mark.parametrize("op_type", ["Sum", "Mean", "Prod", "Max", "Min"])
def test_reduction_gradients_of_empty_and_scalar_inputs(op_type):
    root = Scope.NewRootScope()
    x, s = _ph(root, shape=[None, 3]), _ph(root, shape=[])
    fn = getattr(ops, op_type)
    none = np.zeros(0, np.int32)
    dx, ds = AddSymbolicGradients(root, [fn(root, x, [0]), fn(root, s, none)], [x, s])
    got = _run(root, {x: np.zeros((0, 3)), s: np.array(2.0)}, [dx, ds])
    assert got[0].shape == (0, 3)
    assert got[1] == 1.0


def test_mean_gradient_static_count_is_a_constant():
    root = Scope.NewRootScope()
    x = _ph(root, shape=[2, 3, 4])
    (dx,) = AddSymbolicGradients(root, [ops.Mean(root, x, [0, 2])], [x])
    got = _run(root, {x: np.zeros((2, 3, 4))}, [dx])[0]
    np.testing.assert_allclose(got, np.full((2, 3, 4), 1 / 8))


# ---------------------------------------------------------------- Max/Min ties, Prod zeros
@pytest.mark.parametrize(("op_type", "value", "want"), [
    ("Max", [[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], [[0, .5, .5], [1 / 3, 1 / 3, 1 / 3]]),
    ("Min", [[1.0, 3.0, 1.0], [5.0, 2.0, 4.0]], [[.5, 0, .5], [0, 1, 0]]),
])
def test_max_min_gradient_split_between_ties(op_type, value, want):
    root = Scope.NewRootScope()
    x = _ph(root, shape=[None, 3])
    (dx,) = AddSymbolicGradients(root, [getattr(ops, op_type)(root, x, [1])], [x])
    got = _run(root, {x: np.array(value)}, [dx])[0]
    np.testing.assert_allclose(got, want)


def test_prod_gradient_is_exact_with_zeros():
    root = Scope.NewRootScope()
    x = _ph(root, shape=[2, 3])
    (dx,) = AddSymbolicGradients(root, [ops.Prod(root, x, [1])], [x])
    got = _run(root, {x: np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 4.0]])}, [dx])[0]
    np.testing.assert_array_equal(got, [[6.0, 0.0, 0.0], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize("axes", [[0, 2], [1], [2, 0, 1], [-1]])
def test_prod_gradient_with_zeros_matches_differences(axes):
    x = np.random.default_rng(8).uniform(-1.5, 1.5, (2, 3, 4))
    x[0, 1, 2] = x[1, 0, 0] = 0.0
    assert _check(lambda r, t: ops.Prod(r, t, axes), [x]) < TOL


# ---------------------------------------------------------------- scans
_FLAGS = [(False, False), (True, False), (False, True), (True, True)]


@pytest.mark.parametrize(("exclusive", "reverse"), _FLAGS)
@pytest.mark.parametrize("op_type", ["Cumsum", "Cumprod"])
@pytest.mark.parametrize("axis", [0, -1])
def test_scan_gradients_every_flag(op_type, exclusive, reverse, axis):
    x = np.random.default_rng(9).uniform(0.5, 1.5, (3, 4))
    fn = lambda r, t: getattr(ops, op_type)(r, t, axis, exclusive=exclusive,  # noqa: E731
                                            reverse=reverse)
    assert _check(fn, [x], [[None, None]]) < TOL


@pytest.mark.parametrize(("exclusive", "reverse"), _FLAGS)
def test_cumsum_second_derivative_is_zero_free_linear(exclusive, reverse):
    """Cumsum's gradient is a Cumsum: differentiable again, with v's Jacobian exact."""
    rng = np.random.default_rng(10)
    x, v = rng.uniform(-1, 1, (5,)), rng.uniform(-1, 1, (5,))
    root = Scope.NewRootScope()
    xx, xv = _ph(root, shape=[5]), _ph(root, shape=[5])
    (dx,) = AddSymbolicGradients(
        root, [ops.Cumsum(root, xx, 0, exclusive=exclusive, reverse=reverse)], [xx], [xv])
    assert dx.op.type == "Cumsum" and dx.op.attrs["reverse"] is (not reverse)
    err = compute_gradient_error(root, [xx, xv], [(5,), (5,)], dx, (5,),
                                 x_init_values=[x, v], delta=DELTA)
    assert err < TOL


# ---------------------------------------------------------------- decisions
def test_not_differentiable_reductions():
    for op_type in ("All", "Any", "ArgMax", "ArgMin"):
        assert op_type in gradients.NOT_DIFFERENTIABLE
        assert not gradients.is_differentiable(op_type)
    for op_type in ("Sum", "Mean", "Prod", "Max", "Min", "Cumsum", "Cumprod", "MatMul",
                    "BatchMatMul", "BatchMatMulV2"):
        assert gradients.is_differentiable(op_type)


def test_argmax_stops_gradients_quietly():
    root = Scope.NewRootScope()
    x = _ph(root, shape=[2, 3])
    idx = ops.Cast(root, ops.ArgMax(root, x, 1), DT_DOUBLE)
    (dx,) = AddSymbolicGradients(root, [ops.Sum(root, idx, [0]), ops.Sum(root, x, [0, 1])],
                                 [x])
    got = _run(root, {x: np.zeros((2, 3))}, [dx])[0]
    np.testing.assert_array_equal(got, np.ones((2, 3)))
