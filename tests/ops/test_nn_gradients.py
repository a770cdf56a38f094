"""Gradients of the activation and nn ops beyond the generic suite: second derivatives (the
gradient of a gradient, TF's gradient checker on it), LRN and LRNGrad (float32 only, so
checked against float64 finite differences of the op_db references), cross entropies with
broadcast inputs, and the graphs the gradient functions build."""

from __future__ import annotations

import numpy as np
import pytest

import ops
from opgraph import AddSymbolicGradients, Scope
from opgraph.testing import compute_gradient_error, compute_jacobians
from runtime import ClientSession
from tests.op_db.nn import _lrn_grad_ref, _lrn_ref

F32, F64 = np.float32, np.float64
DELTA = 1e-6


def _away_from_zero(rng, shape, low=0.1, high=2.0):
    """Magnitudes in [low, high] with random signs: clear of kinks at 0."""
    return rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)


def _placeholder(root, value):
    return ops.Placeholder(root, ops.Const(root, value).output.dtype, shape=list(value.shape))


def _second_order_error(forward, x_value, v_value, **forward_attrs):
    """Max Jacobian error of dx = d<v, forward(x)>/dx with respect to both x and v."""
    root = Scope.NewRootScope()
    x = _placeholder(root, x_value)
    v = _placeholder(root, v_value)
    y = forward(root, x, **forward_attrs)
    (dx,) = AddSymbolicGradients(root, [y], [x.output], [v.output])
    assert root.ok(), root.status()
    assert dx.shape.dims == x_value.shape
    return compute_gradient_error(root, [x.output, v.output], [x_value.shape, v_value.shape],
                                  dx, x_value.shape, x_init_values=[x_value, v_value],
                                  delta=DELTA)


# ---------------------------------------------------------------- second derivatives
@pytest.mark.parametrize("shape", [(3,), (2, 3), (2, 1, 4)])
def test_relu_second_derivative(shape):
    rng = np.random.default_rng(1)
    err = _second_order_error(ops.Relu, _away_from_zero(rng, shape), rng.uniform(-1, 1, shape))
    assert err < 1e-6


def test_relu_gradient_of_gradient_builds_relu_grad_again():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, ops.Const(root, F64(0)).output.dtype, shape=[2, 3])
    (dx,) = AddSymbolicGradients(root, [ops.Relu(root, x)], [x.output])
    assert dx.op.type == "ReluGrad"
    (ddx,) = AddSymbolicGradients(root, [dx], [x.output], unconnected_gradients="zero")
    assert root.ok(), root.status()
    value = np.array([[-1.0, 2.0, 0.5], [3.0, -0.2, -4.0]])
    got = ClientSession(root).Run({x.output: value}, [ddx])[0]
    np.testing.assert_array_equal(got, np.zeros((2, 3)))    # piecewise linear


@pytest.mark.parametrize("shape", [(4,), (2, 3)])
def test_softplus_second_derivative(shape):
    rng = np.random.default_rng(2)
    err = _second_order_error(ops.Softplus, rng.uniform(-3, 3, shape),
                              rng.uniform(-1, 1, shape))
    assert err < 1e-6


def test_softplus_second_derivative_value():
    """d2/dx2 softplus(x) = sigmoid(x) * (1 - sigmoid(x))."""
    root = Scope.NewRootScope()
    x_value = np.array([-30.0, -2.0, 0.0, 0.5, 3.0, 30.0])
    x = _placeholder(root, x_value)
    (dx,) = AddSymbolicGradients(root, [ops.Softplus(root, x)], [x.output])
    (ddx,) = AddSymbolicGradients(root, [dx], [x.output])
    first, second = ClientSession(root).Run({x.output: x_value}, [dx, ddx])
    sigmoid = 1 / (1 + np.exp(-x_value))
    np.testing.assert_allclose(first, sigmoid, rtol=1e-12)
    np.testing.assert_allclose(second, sigmoid / (1 + np.exp(x_value)), rtol=1e-10)


@pytest.mark.parametrize("shape", [(4,), (2, 3), (2, 2, 3)])
def test_softmax_second_derivative(shape):
    rng = np.random.default_rng(3)
    err = _second_order_error(ops.Softmax, rng.uniform(-2, 2, shape),
                              rng.uniform(-1, 1, shape))
    assert err < 1e-6


def test_log_softmax_second_derivative():
    rng = np.random.default_rng(4)
    err = _second_order_error(ops.LogSoftmax, rng.uniform(-2, 2, (2, 4)),
                              rng.uniform(-1, 1, (2, 4)))
    assert err < 1e-6


@pytest.mark.parametrize(("value_shape", "data_format"),
                         [((2, 3), "NHWC"), ((2, 2, 3, 4), "NHWC"), ((2, 4, 3), "NCHW"),
                          ((1, 3, 2, 2), "NCHW")])
def test_bias_add_second_derivative(value_shape, data_format):
    """The bias gradient BiasAddGrad(v) differentiated again w.r.t. v (a broadcast back)."""
    rng = np.random.default_rng(5)
    channels = value_shape[1 if data_format == "NCHW" else -1]
    root = Scope.NewRootScope()
    x = _placeholder(root, rng.uniform(-1, 1, value_shape))
    b = _placeholder(root, rng.uniform(-1, 1, (channels,)))
    v_value = rng.uniform(-1, 1, value_shape)
    v = _placeholder(root, v_value)
    y = ops.BiasAdd(root, x, b, data_format=data_format)
    dx, db = AddSymbolicGradients(root, [y], [x.output, b.output], [v.output])
    assert db.op.type == "BiasAddGrad"
    assert dx is v.output                                    # the upstream gradient itself
    err = compute_gradient_error(root, [v.output], [value_shape], [db], [(channels,)],
                                 x_init_values=[v_value], delta=DELTA)
    assert err < 1e-6
    # ... and a third time: the gradient of the broadcast is BiasAddGrad again.
    h = _placeholder(root, rng.uniform(-1, 1, (channels,)))
    (dv,) = AddSymbolicGradients(root, [db], [v.output], [h.output])
    (dh,) = AddSymbolicGradients(root, [dv], [h.output], [v.output])
    assert dh.op.type == "BiasAddGrad"
    got_dv, got_dh = ClientSession(root).Run({v.output: v_value, h.output: np.ones(channels)},
                                             [dv, dh])
    np.testing.assert_array_equal(got_dv, np.ones(value_shape))
    axes = tuple(a for a in range(len(value_shape))
                 if a != (1 if data_format == "NCHW" else len(value_shape) - 1))
    np.testing.assert_allclose(got_dh, v_value.sum(axis=axes), rtol=1e-12)


def test_bias_add_v1_gradient_uses_bias_add_grad():
    root = Scope.NewRootScope()
    x = _placeholder(root, np.ones((2, 3)))
    b = _placeholder(root, np.ones(3))
    dx, db = AddSymbolicGradients(root, [ops.BiasAddV1(root, x, b)], [x.output, b.output])
    assert db.op.type == "BiasAddGrad" and db.op.attrs["data_format"] == "NHWC"
    got = ClientSession(root).Run({x.output: np.ones((2, 3)), b.output: np.ones(3)}, [dx, db])
    np.testing.assert_array_equal(got[0], np.ones((2, 3)))
    np.testing.assert_array_equal(got[1], np.full(3, 2.0))


@pytest.mark.parametrize("op", ["Elu", "Selu", "LeakyRelu", "Relu6", "Softsign"])
def test_other_activations_second_derivative(op):
    rng = np.random.default_rng(6)
    x_value = _away_from_zero(rng, (2, 3))
    if op == "Relu6":
        x_value = np.array([[-1.0, 0.5, 3.0], [5.5, 6.5, 8.0]])
    err = _second_order_error(getattr(ops, op), x_value, rng.uniform(-1, 1, (2, 3)))
    assert err < 1e-6


def test_l2_loss_second_derivative():
    rng = np.random.default_rng(7)
    err = _second_order_error(ops.L2Loss, rng.uniform(-1, 1, (2, 3)), np.array(0.7))
    assert err < 1e-6


# ---------------------------------------------------------------- cross entropies
def _xent_gradient_error(features, labels):
    root = Scope.NewRootScope()
    f, y = _placeholder(root, features), _placeholder(root, labels)
    xent = ops.SoftmaxCrossEntropyWithLogits(root, f, y)
    outs = list(xent)
    return compute_gradient_error(root, [f.output, y.output], [features.shape, labels.shape],
                                  outs, [o.shape.dims for o in outs],
                                  x_init_values=[features, labels], delta=DELTA)


@pytest.mark.parametrize(("features_shape", "labels_shape"),
                         [((3, 4), (3, 4)), ((1, 3), (4, 3)), ((2, 5), (5,)), ((3,), (2, 1)),
                          ((2, 1), (2, 3))])
def test_softmax_cross_entropy_gradient_with_broadcasting(features_shape, labels_shape):
    # As TF's, the gradient w.r.t. features (backprop) assumes each row of the broadcast
    # labels is a distribution; labels of one class column are 1 / classes.
    rng = np.random.default_rng(8)
    classes = max(features_shape[-1], labels_shape[-1])
    if labels_shape[-1] == 1:
        labels = np.full(labels_shape, 1.0 / classes)
    else:
        labels = rng.dirichlet(np.ones(classes), labels_shape[:-1] or None)
    err = _xent_gradient_error(rng.uniform(-2, 2, features_shape), labels)
    assert err < 1e-6


def test_softmax_cross_entropy_second_derivative():
    rng = np.random.default_rng(9)
    root = Scope.NewRootScope()
    features = rng.uniform(-2, 2, (2, 4))
    labels = rng.dirichlet(np.ones(4), 2)
    f, y = _placeholder(root, features), _placeholder(root, labels)
    loss = ops.SoftmaxCrossEntropyWithLogits(root, f, y).loss
    (df,) = AddSymbolicGradients(root, [loss], [f.output])
    err = compute_gradient_error(root, [f.output, y.output], [(2, 4), (2, 4)], df, (2, 4),
                                 x_init_values=[features, labels], delta=DELTA)
    assert err < 1e-6


def test_sparse_softmax_cross_entropy_second_derivative():
    rng = np.random.default_rng(10)
    root = Scope.NewRootScope()
    features = rng.uniform(-2, 2, (3, 4))
    f = _placeholder(root, features)
    xent = ops.SparseSoftmaxCrossEntropyWithLogits(root, f, np.array([0, 3, 1], np.int64))
    (df,) = AddSymbolicGradients(root, [xent.loss], [f.output])
    err = compute_gradient_error(root, f.output, (3, 4), df, (3, 4), x_init_values=features,
                                 delta=DELTA)
    assert err < 1e-6


def test_cross_entropy_labels_gradient_values():
    """d loss / d labels = -log_softmax(features) (the backprop output not used)."""
    root = Scope.NewRootScope()
    features = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    labels = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    f, y = _placeholder(root, features), _placeholder(root, labels)
    xent = ops.SoftmaxCrossEntropyWithLogits(root, f, y)
    df, dy = AddSymbolicGradients(root, [xent.loss], [f.output, y.output])
    got_df, got_dy = ClientSession(root).Run({f.output: features, y.output: labels}, [df, dy])
    log_softmax = features - np.log(np.exp(features).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(got_dy, -log_softmax, rtol=1e-12)
    np.testing.assert_allclose(got_df, np.exp(log_softmax) - labels, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(("features_shape", "labels_shape"),
                         [((2, 3), (2, 3)), ((2, 3), (3,)), ((1, 3), (4, 3))])
def test_cross_entropy_gradient_with_partial_shapes(features_shape, labels_shape):
    """Inputs of unknown dims or rank get the gradients of the fully known graph, summed
    back to the shapes fed."""
    rng = np.random.default_rng(11)
    features = rng.uniform(-2, 2, features_shape)
    labels = rng.dirichlet(np.ones(3), labels_shape[:-1] or None)
    results = []
    for mode in ("known", "unknown_dims", "unknown_rank"):
        root = Scope.NewRootScope()
        dtype = ops.Const(root, F64(0)).output.dtype
        f, y = (ops.Placeholder(root, dtype, shape={"known": list(shape),
                                                    "unknown_dims": [None] * len(shape),
                                                    "unknown_rank": None}[mode])
                for shape in (features_shape, labels_shape))
        xent = ops.SoftmaxCrossEntropyWithLogits(root, f, y)
        grads = AddSymbolicGradients(root, list(xent), [f.output, y.output])
        assert root.ok(), root.status()
        results.append(ClientSession(root).Run({f.output: features, y.output: labels}, grads))
    assert [r.shape for r in results[0]] == [features_shape, labels_shape]
    for other in results[1:]:
        for known, partial in zip(results[0], other):
            assert partial.shape == known.shape
            np.testing.assert_allclose(partial, known, rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------- LRN (float32 only)
def _numeric_jacobians(fn, values, delta=1e-6):
    """Central differences of the float64 function ``fn(*values)``: one [x.size, y.size]
    array per input."""
    values = [np.asarray(v, F64) for v in values]
    out = []
    for i, v in enumerate(values):
        rows = []
        for e in range(v.size):
            pair = []
            for sign in (1, -1):
                moved = [w.copy() for w in values]
                moved[i].reshape(-1)[e] += sign * delta
                pair.append(np.asarray(fn(*moved), F64).ravel())
            rows.append((pair[0] - pair[1]) / (2 * delta))
        out.append(np.array(rows))
    return out


_LRN_CASES = [((1, 1, 2, 5), {}),
              ((1, 2, 1, 6), {"depth_radius": 2, "bias": 2.0, "alpha": 0.5, "beta": 0.75}),
              ((1, 1, 1, 4), {"depth_radius": 0}),
              ((1, 1, 1, 3), {"depth_radius": 100, "beta": 1.0})]


def _close_jacobians(theory, numeric, tol=2e-4):
    for t, n in zip(theory, numeric):
        assert np.max(np.abs(t - n)) < tol, np.max(np.abs(t - n))


@pytest.mark.parametrize(("shape", "attrs"), _LRN_CASES)
def test_lrn_gradient_matches_float64_differences_of_the_reference(shape, attrs):
    rng = np.random.default_rng(11)
    x_value = rng.uniform(-2, 2, shape).astype(F32)
    root = Scope.NewRootScope()
    x = _placeholder(root, x_value)
    y = ops.LRN(root, x, **attrs)
    theory, _ = compute_jacobians(root, [x.output], [shape], [y.output], [shape],
                                  x_init_values=[x_value], delta=1e-2)
    numeric = _numeric_jacobians(lambda v: _lrn_ref(v, **attrs), [x_value])
    _close_jacobians([theory[0][0]], numeric)


@pytest.mark.parametrize(("shape", "attrs"), _LRN_CASES)
def test_lrn_grad_gradient_matches_float64_differences_of_the_reference(shape, attrs):
    rng = np.random.default_rng(12)
    g_value = rng.uniform(-1, 1, shape).astype(F32)
    x_value = rng.uniform(-2, 2, shape).astype(F32)
    y_value = _lrn_ref(x_value, **attrs).astype(F32)
    root = Scope.NewRootScope()
    g, x, y = (_placeholder(root, v) for v in (g_value, x_value, y_value))
    dx = ops.LRNGrad(root, g, x, y, **attrs)
    theory, _ = compute_jacobians(root, [g.output, x.output, y.output], [shape] * 3,
                                  [dx.output], [shape],
                                  x_init_values=[g_value, x_value, y_value], delta=1e-2)
    numeric = _numeric_jacobians(lambda *v: _lrn_grad_ref(*v, **attrs),
                                 [g_value, x_value, y_value])
    _close_jacobians([row[0] for row in theory], numeric)


def test_lrn_second_derivative_matches_float64_differences():
    """d/d(x, v) of LRN's gradient J(x)^T v, with y = LRN(x) feeding LRNGrad."""
    rng = np.random.default_rng(13)
    shape, attrs = (1, 1, 2, 5), {"depth_radius": 1, "bias": 1.5, "alpha": 0.3, "beta": 0.6}
    x_value = rng.uniform(-2, 2, shape).astype(F32)
    v_value = rng.uniform(-1, 1, shape).astype(F32)
    root = Scope.NewRootScope()
    x, v = _placeholder(root, x_value), _placeholder(root, v_value)
    (dx,) = AddSymbolicGradients(root, [ops.LRN(root, x, **attrs)], [x.output], [v.output])
    theory, _ = compute_jacobians(root, [x.output, v.output], [shape] * 2, [dx], [shape],
                                  x_init_values=[x_value, v_value], delta=1e-2)
    numeric = _numeric_jacobians(
        lambda xs, vs: _lrn_grad_ref(vs, xs, _lrn_ref(xs, **attrs), **attrs),
        [x_value, v_value])
    _close_jacobians([row[0] for row in theory], numeric)


def test_lrn_grad_gradient_with_unknown_depth_equals_known_depth():
    """The window sums of LRNGrad's gradient build their band matrix at run time when the
    depth is unknown at build time."""
    rng = np.random.default_rng(14)
    shape, attrs = (2, 1, 2, 5), {"depth_radius": 2, "alpha": 0.5}
    values = [rng.uniform(-1, 1, shape).astype(F32) for _ in range(4)]
    results = []
    for dims in (list(shape), [None] * 4, None):
        root = Scope.NewRootScope()
        phs = [ops.Placeholder(root, ops.Const(root, F32(0)).output.dtype, shape=dims)
               for _ in range(4)]
        g, x, y, h = (p.output for p in phs)
        dx = ops.LRNGrad(root, g, x, y, **attrs)
        grads = AddSymbolicGradients(root, [dx], [g, x, y], [h])
        assert root.ok(), root.status()
        results.append(ClientSession(root).Run(dict(zip([g, x, y, h], values)), grads))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
