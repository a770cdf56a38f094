"""Gradients of the array and indexing ops beyond the generic suite: the samples the generic
check leaves out (batch_dims, 1-D and depth-0 GatherNd indices, int16 indices, negative
segment ids), graphs built from partially known shapes, a perm known only at run time,
second derivatives (the gradient checker on a gradient), and the dense gradients' values
against explicit loops."""

from __future__ import annotations

import numpy as np
import pytest

import ops
from opgraph import AddSymbolicGradients, Scope, as_dtype, errors, gradients
from opgraph.testing import compute_gradient_error
from runtime import ClientSession

F64, I16, I32, I64 = np.float64, np.int16, np.int32, np.int64
DELTA = 1e-6
TOL = 1e-6


def _placeholder(root, dtype, shape):
    return ops.Placeholder(root, as_dtype(dtype), shape=shape).output


def _run(root, fetches, feeds=None):
    assert root.ok(), root.status()
    return ClientSession(root).Run(feeds or {}, fetches)


def _op_types(root) -> set:
    return {op.type for op in root.graph().operations()}


def _check(build, value, static_shape="known", feeds=None):
    """TF's gradient checker on y = build(root, x) for x of ``value`` (a placeholder of
    ``static_shape``: "known" (the default), a partial shape, or None: unknown rank); returns
    the max Jacobian error."""
    root = Scope.NewRootScope()
    shape = list(value.shape) if static_shape == "known" else static_shape
    x = _placeholder(root, value.dtype, shape)
    y = build(root, x)
    y = getattr(y, "output", y)
    assert root.ok(), root.status()
    y_shape = _run(root, [y], {x: value, **(feeds or {})})[0].shape
    return compute_gradient_error(root, [x], [value.shape], [y], [y_shape],
                                  x_init_values=[value], delta=DELTA, feeds=feeds)


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-2, 2, shape)


# ------------------------------------------------------------------------------- GatherV2
@pytest.mark.parametrize(("params", "indices", "axis", "batch_dims"), [
    ((2, 3, 4), [[0, 2, 2, 1, 0], [1, 1, 0, 2, 2]], 1, 1),
    ((2, 3, 4), [[3, 0], [1, 1]], 2, -1),
    ((2, 3, 4, 2), [[1, 1, 0], [2, 2, 2]], 2, 1),
    ((2, 2, 3), [[[2, 0], [1, 1]], [[0, 0], [2, 1]]], 2, 2),
    ((4,), 2, 0, 0),
    ((3, 4), [], 0, 0),
    ((2, 3, 2), [[1, 1], [0, 1]], 1, 0),
    ((2, 3, 2), [[1, 1], [0, 1]], -3, 0),
])
def test_gather_v2_gradient_all_axes_and_batch_dims(params, indices, axis, batch_dims):
    idx = np.array(indices, I32)
    root = Scope.NewRootScope()
    x = _placeholder(root, F64, list(params))
    y = ops.GatherV2(root, x, idx, axis, batch_dims=batch_dims)
    (dx,) = AddSymbolicGradients(root, [y.output], [x])
    assert dx.shape.dims == params                  # a fully static gradient graph
    err = _check(lambda r, x: ops.GatherV2(r, x, idx, axis, batch_dims=batch_dims),
                 _rand(*params))
    assert err < TOL


@pytest.mark.parametrize("dtype", [I16, I64])
def test_gather_v2_gradient_with_int16_and_int64_indices(dtype):
    idx = np.array([[2, 0, 2], [1, 2, 2]], dtype)
    assert _check(lambda r, x: ops.GatherV2(r, x, idx, np.array(1, I64)), _rand(2, 3)) < TOL
    assert _check(lambda r, x: ops.GatherV2(r, x, idx, 1, batch_dims=1), _rand(2, 3)) < TOL


def test_gather_v2_gradient_is_dense_and_accumulates_repeated_indices():
    root = Scope.NewRootScope()
    x = _placeholder(root, F64, [4, 2])
    y = ops.GatherV2(root, x, np.array([3, 0, 3, 3], I32), 0)
    g = np.arange(8, dtype=F64).reshape(4, 2) + 1
    (dx,) = AddSymbolicGradients(root, [y.output], [x], [ops.Const(root, g).output])
    assert dx.shape.dims == (4, 2)
    got = _run(root, [dx], {x: np.zeros((4, 2))})[0]
    want = np.zeros((4, 2))
    for k, i in enumerate([3, 0, 3, 3]):
        want[i] += g[k]
    np.testing.assert_array_equal(got, want)
    assert "UnsortedSegmentSum" in _op_types(root)


@pytest.mark.parametrize(("static", "indices_static", "indices", "axis", "batch_dims"), [
    ([None, 3], [None], [1, 0, 1], 0, 0),
    ([None, 3], [2, None], [[1, 0], [1, 1]], 1, 0),
    (None, None, [[1, 0], [1, 1]], 0, 0),
    ([None, 3, 4], [None, 5], [[0, 2, 1, 1, 0], [2, 2, 0, 1, 1]], 1, 1),
    ([2, None, 4], [2, 5], [[3, 0, 3, 1, 2], [0, 0, 1, 2, 3]], 2, 1),
])
def test_gather_v2_gradient_from_partially_known_shapes(static, indices_static, indices, axis,
                                                       batch_dims):
    idx = np.array(indices, I32)
    value = _rand(*([2, 3, 4] if batch_dims else [2, 3]))
    root = Scope.NewRootScope()
    x = _placeholder(root, F64, static)
    i = _placeholder(root, I32, indices_static)
    y = ops.GatherV2(root, x, i, axis, batch_dims=batch_dims).output
    (dx,) = AddSymbolicGradients(root, [y], [x])
    assert root.ok(), root.status()
    if static is not None:
        assert dx.shape.is_compatible_with(static) and dx.shape.rank == len(static)
    feeds = {x: value, i: idx}
    got, out = _run(root, [dx, y], feeds)
    # d(sum(y))/dx counts how often each element of x is gathered.
    want = np.zeros_like(value)
    n_idx = idx.ndim - batch_dims
    for pos in np.ndindex(*out.shape):
        k = int(idx[pos[:batch_dims] + pos[axis:axis + n_idx]])
        want[pos[:axis] + (k,) + pos[axis + n_idx:]] += 1
    np.testing.assert_array_equal(got, want)


def test_gather_v2_gradient_with_unknown_axis_and_rank_is_unimplemented():
    root = Scope.NewRootScope()
    x = _placeholder(root, F64, None)
    axis = _placeholder(root, I32, [])
    y = ops.GatherV2(root, x, np.array([0], I32), axis)
    with pytest.raises(errors.UnimplementedError, match="constant axis"):
        AddSymbolicGradients(root, [y.output], [x])


# ------------------------------------------------------------------------------- GatherNd
@pytest.mark.parametrize(("params", "indices"), [
    ((3, 4), np.array([2, 1], I32)),                       # one tuple, scalar output
    ((3, 4), np.array([1], I64)),                          # one tuple, a row
    ((2, 3), np.zeros((4, 0), I32)),                       # depth 0: whole params, 4 times
    ((3, 4), np.array([[0, 1], [2, 3], [0, 1]], I16)),     # repeated tuples, int16
    ((2, 3, 4), np.array([[[0, 2], [1, 0]], [[0, 2], [0, 0]]], I32)),
])
def test_gather_nd_gradient_beyond_the_generic_samples(params, indices):
    assert _check(lambda r, x: ops.GatherNd(r, x, indices), _rand(*params)) < TOL


def test_gather_nd_gradient_from_unknown_shape():
    idx = np.array([[1, 0], [1, 0], [2, 3]], I32)
    err = _check(lambda r, x: ops.GatherNd(r, x, idx), _rand(3, 4), static_shape=[None, None])
    assert err < TOL
    err = _check(lambda r, x: ops.GatherNd(r, x, idx), _rand(3, 4), static_shape=None)
    assert err < TOL


# ------------------------------------------------------------------- the dense scatter ops
def test_unsorted_segment_sum_gradient_drops_negative_ids():
    ids = np.array([[0, -1, 2], [2, -5, 0]], I64)
    root = Scope.NewRootScope()
    x = _placeholder(root, F64, [2, 3, 2])
    y = ops.UnsortedSegmentSum(root, x, ids, np.array(3, I64))
    g = _rand(3, 2, seed=1)
    (dx,) = AddSymbolicGradients(root, [y.output], [x], [ops.Const(root, g).output])
    got = _run(root, [dx], {x: np.zeros((2, 3, 2))})[0]
    for pos in np.ndindex(2, 3):
        want = g[ids[pos]] if ids[pos] >= 0 else np.zeros(2)
        np.testing.assert_array_equal(got[pos], want)


def test_unsorted_segment_sum_gradient_with_unknown_ranks():
    ids = np.array([1, -1, 0, 1], I32)
    err = _check(lambda r, x: ops.UnsortedSegmentSum(r, x, ids, 2), _rand(4, 3),
                 static_shape=None)
    assert err < TOL
    holder = {}

    def build(r, x):
        holder["ids"] = _placeholder(r, I32, None)
        return ops.UnsortedSegmentSum(r, x, holder["ids"], 2)

    root = Scope.NewRootScope()
    x = _placeholder(root, F64, None)
    y = build(root, x)
    (dx,) = AddSymbolicGradients(root, [y.output], [x])
    got = _run(root, [dx], {x: np.ones((4, 3)), holder["ids"]: ids})[0]
    np.testing.assert_array_equal(got, np.repeat((ids >= 0)[:, None], 3, 1).astype(F64))


def test_scatter_nd_gradient_is_gather_nd():
    idx = np.array([[1], [0], [1]], I32)
    err = _check(lambda r, u: ops.ScatterNd(r, idx, u, np.array([3, 2], I32)), _rand(3, 2))
    assert err < TOL


# ------------------------------------------------------------------------- Transpose & co.
def test_transpose_gradient_uses_a_constant_inverse_permutation():
    root = Scope.NewRootScope()
    x = _placeholder(root, F64, [2, 3, 4])
    y = ops.Transpose(root, x, np.array([2, 0, 1], I64))
    (dx,) = AddSymbolicGradients(root, [y.output], [x])
    assert dx.shape.dims == (2, 3, 4)
    assert "InvertPermutation" not in _op_types(root)
    assert _check(lambda r, v: ops.Transpose(r, v, np.array([2, 0, 1], I64)),
                  _rand(2, 3, 4)) < TOL


def test_transpose_gradient_with_a_perm_known_only_at_run_time():
    perm_value = np.array([1, 2, 0], I32)
    holder = {}

    def build(r, x):
        holder["perm"] = _placeholder(r, I32, [3])
        return ops.Transpose(r, x, holder["perm"])

    root = Scope.NewRootScope()
    x = _placeholder(root, F64, [2, 3, 4])
    y = build(root, x).output
    g = _rand(3, 4, 2, seed=3)
    (dx,) = AddSymbolicGradients(root, [y], [x], [ops.Const(root, g).output])
    assert "InvertPermutation" in _op_types(root)
    got = _run(root, [dx], {x: np.zeros((2, 3, 4)), holder["perm"]: perm_value})[0]
    np.testing.assert_array_equal(got, np.transpose(g, np.argsort(perm_value)))


@pytest.mark.parametrize("make", [
    lambda r, x: ops.Reshape(r, x, np.array([-1], I32)),
    lambda r, x: ops.ExpandDims(r, x, -1),
    lambda r, x: ops.Squeeze(r, ops.ExpandDims(r, x, 1), ops.Squeeze.Axis([1])),
    lambda r, x: ops.Identity(r, x),
])
def test_reshaping_gradients_from_partial_shapes(make):
    value = _rand(2, 3)
    for static in ([None, 3], [2, None], None):
        assert _check(make, value, static_shape=static) < TOL


def test_reshape_gradient_has_the_input_static_shape():
    root = Scope.NewRootScope()
    x = _placeholder(root, F64, [None, 3])
    y = ops.Reshape(root, x, np.array([-1], I32))
    (dx,) = AddSymbolicGradients(root, [y.output], [x])
    assert dx.shape.as_list() == [None, 3]


@pytest.mark.parametrize(("shape", "target", "static"), [
    ((3,), [2, 3], None),
    ((2, 1), [2, 4], [None, 1]),
    ((1, 3), [2, 4, 3], [1, None]),
    ((), [2, 2], []),
    ((2, 3), [2, 3], [None, 3]),
])
def test_broadcast_to_gradient(shape, target, static):
    for dtype in (I32, I64):
        tgt = np.array(target, dtype)
        err = _check(lambda r, x: ops.BroadcastTo(r, x, tgt), _rand(*shape), static_shape=static)
        assert err < TOL


def test_broadcast_to_gradient_with_a_shape_known_only_at_run_time():
    root = Scope.NewRootScope()
    x = _placeholder(root, F64, [1, 3])
    shape = _placeholder(root, I32, [3])
    y = ops.BroadcastTo(root, x, shape)
    (dx,) = AddSymbolicGradients(root, [y.output], [x])
    got = _run(root, [dx], {x: np.zeros((1, 3)), shape: np.array([2, 4, 3], I32)})[0]
    np.testing.assert_array_equal(got, np.full((1, 3), 8.0))


def test_fill_gradient_is_the_sum_of_the_gradient():
    scalar = np.array([], I32)
    assert _check(lambda r, v: ops.Fill(r, np.array([2, 3], I32), ops.Reshape(r, v, scalar)),
                  _rand(1)) < TOL
    root = Scope.NewRootScope()
    v = _placeholder(root, F64, [])
    dims = _placeholder(root, I32, [None])
    y = ops.Fill(root, dims, v)
    (dv,) = AddSymbolicGradients(root, [y.output], [v])
    assert dv.shape.dims == ()
    assert _run(root, [dv], {v: 1.5, dims: np.array([4, 5], I32)})[0] == 20.0


def test_identity_n_and_placeholder_with_default_pass_gradients_through():
    root = Scope.NewRootScope()
    a = _placeholder(root, F64, [2])
    b = _placeholder(root, F64, [3])
    a2, b2 = ops.IdentityN(root, [a, b])
    c = ops.PlaceholderWithDefault(root, a2, shape=[None])
    loss = ops.Add(root, ops.Sum(root, ops.Mul(root, c, c), [0]), ops.Sum(root, b2, [0]))
    da, db = AddSymbolicGradients(root, [loss.output], [a, b])
    got_a, got_b = _run(root, [da, db], {a: np.array([1.0, -2.0]), b: np.zeros(3)})
    np.testing.assert_array_equal(got_a, [2.0, -4.0])
    np.testing.assert_array_equal(got_b, np.ones(3))


# --------------------------------------------------------------------- second derivatives
def _second_derivative_error(build, value):
    """The gradient checker on dx = d(sum(build(x)^2))/dx: checks the gradient's gradient."""
    root = Scope.NewRootScope()
    x = _placeholder(root, F64, list(value.shape))
    y = build(root, x).output
    loss = ops.Sum(root, ops.Mul(root, y, y), ops.Range(root, 0, ops.Rank(root, y), 1))
    (dx,) = AddSymbolicGradients(root, [loss.output], [x])
    assert root.ok(), root.status()
    return compute_gradient_error(root, [x], [value.shape], [dx], [value.shape],
                                  x_init_values=[value], delta=DELTA)


@pytest.mark.parametrize("build", [
    lambda r, x: ops.GatherV2(r, x, np.array([[2, 0], [2, 2]], I32), 1),
    lambda r, x: ops.GatherV2(r, x, np.array([[1, 0, 1], [2, 2, 0]], I32), 1, batch_dims=1),
    lambda r, x: ops.GatherNd(r, x, np.array([[0, 1], [1, 2], [0, 1]], I32)),
    lambda r, x: ops.Transpose(r, x, np.array([1, 0], I32)),
    lambda r, x: ops.BroadcastTo(r, ops.Reshape(r, x, [2, 1, 3]), np.array([2, 4, 3], I32)),
    lambda r, x: ops.UnsortedSegmentSum(r, x, np.array([1, -1], I32), 3),
    lambda r, x: ops.ScatterNd(r, np.array([[1], [1]], I32), x, np.array([3, 3], I32)),
    lambda r, x: ops.Squeeze(r, ops.ExpandDims(r, x, 0)),
])
def test_second_derivatives(build):
    assert _second_derivative_error(build, _rand(2, 3, seed=5)) < TOL


# ----------------------------------------------------------------------- registry decisions
def test_gradient_decisions_of_the_array_and_indexing_ops():
    for op_type in ("Identity", "PlaceholderWithDefault", "IdentityN", "Reshape", "Transpose",
                    "ExpandDims", "Squeeze", "BroadcastTo", "Fill", "GatherV2", "GatherNd",
                    "UnsortedSegmentSum", "ScatterNd"):
        assert gradients.is_differentiable(op_type), op_type
    for op_type in ("InvertPermutation", "StopGradient", "Shape", "ShapeN", "Rank", "Size",
                    "ZerosLike", "OnesLike", "Range", "OneHot", "Where"):
        assert op_type in gradients.NOT_DIFFERENTIABLE, op_type
        assert gradients.get_gradient_function(op_type) is None


def test_stop_gradient_blocks_and_integer_inputs_get_none():
    root = Scope.NewRootScope()
    x = _placeholder(root, F64, [3])
    y = ops.Add(root, ops.StopGradient(root, x), x)
    (dx,) = AddSymbolicGradients(root, [y.output], [x])
    np.testing.assert_array_equal(_run(root, [dx], {x: np.zeros(3)})[0], np.ones(3))
    idx = _placeholder(root, I32, [2])
    g = ops.GatherV2(root, x, idx, 0)
    (d_idx,) = AddSymbolicGradients(root, [g.output], [idx])
    assert d_idx is None
