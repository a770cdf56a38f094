"""Variables, assignment and the optimizer update ops, against independent float64 formulas."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import ops
from opgraph import DT_DOUBLE, DT_FLOAT, Scope, errors
from opgraph import train
from runtime import ClientSession


def _var(root, value, name):
    v = ops.Variable(root.WithOpName(name), list(np.shape(value)), DT_DOUBLE)
    return v, ops.Assign(root, v, np.asarray(value, np.float64))


def test_uninitialized_read_is_failed_precondition_naming_the_variable():
    root = Scope.NewRootScope()
    v = ops.Variable(root.WithOpName("w"), [2], DT_FLOAT)
    y = ops.AddV2(root, v, v)
    sess = ClientSession(root)
    for fetch in (v, y):
        with pytest.raises(errors.FailedPreconditionError, match="uninitialized value w"):
            sess.Run([fetch])


def test_assign_then_read_then_update_and_per_session_state():
    root = Scope.NewRootScope()
    v, init = _var(root, [1.0, 2.0], "v")
    add = ops.AssignAdd(root, v, np.array([0.5, 0.5]))
    sub = ops.AssignSub(root, v, np.array([2.0, 2.0]))
    s1, s2 = ClientSession(root), ClientSession(root)
    s1.Run({}, [], [init])
    np.testing.assert_array_equal(s1.Run(v), [1.0, 2.0])
    np.testing.assert_array_equal(s1.Run(add), [1.5, 2.5])
    np.testing.assert_array_equal(s1.Run(sub), [-0.5, 0.5])
    with pytest.raises(errors.FailedPreconditionError):
        s2.Run(v)                         # each session has its own variable values


def test_fetched_value_does_not_alias_the_variable():
    root = Scope.NewRootScope()
    v, init = _var(root, [1.0, 2.0], "v")
    sess = ClientSession(root)
    sess.Run({}, [], [init])
    got = sess.Run(v)
    with pytest.raises(ValueError):
        got[0] = 99.0                     # read-only: the session's value cannot be changed
    np.testing.assert_array_equal(sess.Run(v), [1.0, 2.0])


def test_assign_shape_checks():
    root = Scope.NewRootScope()
    v = ops.Variable(root, [2], DT_DOUBLE)
    ops.Assign(root.WithOpName("bad"), v, np.zeros(3))
    assert not root.ok()
    assert "Dimension 0 in both shapes must be equal" in root.status().message
    root = Scope.NewRootScope()
    v = ops.Variable(root, [2], DT_DOUBLE)
    p = ops.Placeholder(root, DT_DOUBLE)
    a = ops.Assign(root, v, p)
    with pytest.raises(errors.InvalidArgumentError, match="shapes"):
        ClientSession(root).Run({p: np.zeros(3)}, [a])


def test_update_op_needs_a_variable_ref():
    root = Scope.NewRootScope()
    c = ops.Const(root, np.zeros(2))
    a = ops.AssignAdd(root, c, np.ones(2))
    with pytest.raises(errors.InvalidArgumentError, match="must be a Variable"):
        ClientSession(root).Run([a])


def _steps(build, n=3):
    root = Scope.NewRootScope()
    target, fetch, inits = build(root)
    sess = ClientSession(root)
    sess.Run({}, [], inits)
    return [np.array(sess.Run(fetch if fetch is not None else target)) for _ in range(n)]


def test_apply_gradient_descent():
    w0, g = np.array([1.0, -2.0, 3.0]), np.array([0.5, 0.25, -1.0])

    def build(root):
        v, init = _var(root, w0, "w")
        return ops.ApplyGradientDescent(root, v, np.float64(0.1), g), None, [init]
    got = _steps(build)
    want, w = [], w0.copy()
    for _ in range(3):
        w = [wi - 0.1 * gi for wi, gi in zip(w, g)]
        want.append(np.array(w))
    np.testing.assert_allclose(got, want, rtol=1e-15)


@pytest.mark.parametrize("nesterov", [False, True])
def test_apply_momentum(nesterov):
    w0, g = np.array([1.0, -2.0]), np.array([0.5, -1.5])

    def build(root):
        v, i1 = _var(root, w0, "w")
        a, i2 = _var(root, np.zeros(2), "accum")
        return ops.ApplyMomentum(root, v, a, np.float64(0.1), g, np.float64(0.9),
                                 use_nesterov=nesterov), None, [i1, i2]
    got = _steps(build)
    w, acc, want = list(w0), [0.0, 0.0], []
    for _ in range(3):
        acc = [a * 0.9 + gi for a, gi in zip(acc, g)]
        if nesterov:
            w = [wi - (gi * 0.1 + a * 0.9 * 0.1) for wi, gi, a in zip(w, g, acc)]
        else:
            w = [wi - 0.1 * a for wi, a in zip(w, acc)]
        want.append(np.array(w))
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_apply_adam_matches_the_paper_formula():
    w0, g = np.array([0.3, -0.7]), np.array([0.2, 0.4])
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8

    def build(root):
        v, i1 = _var(root, w0, "w")
        m, i2 = _var(root, np.zeros(2), "m")
        vv, i3 = _var(root, np.zeros(2), "v")
        step = ops.ApplyAdam(root, v, m, vv, np.float64(b1), np.float64(b2), np.float64(lr),
                             np.float64(b1), np.float64(b2), np.float64(eps), g)
        return step, None, [i1, i2, i3]
    got = _steps(build, 1)
    m = [(1 - b1) * gi for gi in g]
    v = [(1 - b2) * gi * gi for gi in g]
    lr_t = lr * (1 - b2) ** 0.5 / (1 - b1)
    want = [wi - lr_t * mi / (vi ** 0.5 + eps) for wi, mi, vi in zip(w0, m, v)]
    np.testing.assert_allclose(got[0], want, rtol=1e-12)


def test_apply_adagrad_and_rmsprop():
    w0, g = np.array([1.0, 2.0]), np.array([0.5, -0.5])

    def build_ada(root):
        v, i1 = _var(root, w0, "w")
        a, i2 = _var(root, np.full(2, 0.1), "acc")
        return ops.ApplyAdagrad(root, v, a, np.float64(0.1), g), None, [i1, i2]
    acc = [0.1 + gi * gi for gi in g]
    want = [wi - 0.1 * gi / a ** 0.5 for wi, gi, a in zip(w0, g, acc)]
    np.testing.assert_allclose(_steps(build_ada, 1)[0], want, rtol=1e-14)

    def build_rms(root):
        v, i1 = _var(root, w0, "w")
        ms, i2 = _var(root, np.zeros(2), "ms")
        mom, i3 = _var(root, np.zeros(2), "mom")
        step = ops.ApplyRMSProp(root, v, ms, mom, np.float64(0.01), np.float64(0.9),
                                np.float64(0.5), np.float64(1e-10), g)
        return step, None, [i1, i2, i3]
    ms = [0.1 * gi * gi for gi in g]
    mom = [0.01 * gi / (m + 1e-10) ** 0.5 for gi, m in zip(g, ms)]
    want = [wi - mi for wi, mi in zip(w0, mom)]
    np.testing.assert_allclose(_steps(build_rms, 1)[0], want, rtol=1e-12)


def test_apply_shape_errors_at_build_and_run_time():
    root = Scope.NewRootScope()
    v = ops.Variable(root, [2], DT_DOUBLE)
    ops.ApplyGradientDescent(root, v, np.float64(0.1), np.zeros(3))
    assert not root.ok()
    root = Scope.NewRootScope()
    v = ops.Variable(root, [2], DT_DOUBLE)
    ops.ApplyGradientDescent(root, v, np.zeros(2), np.zeros(2))
    assert "must be a scalar" in root.status().message


def test_concurrent_updates_are_serialised():
    root = Scope.NewRootScope()
    v, init = _var(root, [0.0], "counter")
    add = ops.AssignAdd(root, v, np.array([1.0]))
    sess = ClientSession(root)
    sess.Run({}, [], [init])

    def work():
        for _ in range(200):
            sess.Run({}, [], [add])
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    np.testing.assert_array_equal(sess.Run(v), [1600.0])


def test_saver_round_trip_and_errors(tmp_path):
    root = Scope.NewRootScope()
    w = train.Variable(root.WithOpName("w"), np.arange(6.0).reshape(2, 3))
    sess = ClientSession(root)
    sess.Run({}, [], [train.global_variables_initializer(root)])
    path = train.Saver([w]).save(sess, str(tmp_path / "ckpt.npz"))
    fresh = ClientSession(root)
    train.Saver([w]).restore(fresh, path)
    np.testing.assert_array_equal(fresh.Run(w.output), np.arange(6.0).reshape(2, 3))
    other = Scope.NewRootScope()
    w2 = train.Variable(other.WithOpName("w"), np.zeros((3, 2)))
    with pytest.raises(errors.InvalidArgumentError, match="Checkpoint value for 'w'"):
        train.Saver([w2]).restore(ClientSession(other), path)
    with pytest.raises(errors.NotFoundError):
        train.Saver([w]).restore(fresh, str(tmp_path / "missing.npz"))


def test_is_variable_initialized():
    root = Scope.NewRootScope()
    v, init = _var(root, [1.0], "v")
    flag = ops.IsVariableInitialized(root, v)
    sess = ClientSession(root)
    assert sess.Run(flag) == np.array(False)
    sess.Run({}, [], [init])
    assert sess.Run(flag) == np.array(True)
