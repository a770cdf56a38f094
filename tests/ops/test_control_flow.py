"""BuildWhileLoop and Cond (While / If nodes), in the spirit of TF's while_loop_test.cc and
control_flow_ops_test: results against plain Python loops, static shapes (loop invariance,
relaxed dims), captured tensors, nesting, conditionals inside loops, only-the-taken-branch
semantics, folding, variables in a loop, and build- and run-time errors."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

import ops
from opgraph import (DT_BOOL, DT_DOUBLE, DT_FLOAT, DT_INT32, DT_INT64, Scope, TensorShape,
                     errors)
from opgraph.gradients import NOT_DIFFERENTIABLE, AddSymbolicGradients
from runtime import ClientSession, RunMetadata, RunOptions

F32, F64, I32, I64 = np.float32, np.float64, np.int32, np.int64


def _less_than(limit):
    return lambda s, v: ops.Less(s, v[0], limit)


def _run(root, fetches, feeds=None):
    assert root.ok(), root.status()
    return ClientSession(root).Run(feeds or {}, fetches)


def _traced_nodes(sess, feeds, fetches):
    meta = RunMetadata()
    sess.Run(RunOptions(RunOptions.FULL_TRACE), feeds, fetches, [], meta)
    return [s.node_name for s in meta.step_stats.node_stats]


# ---- loops -----------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 7])
def test_count_to_n_fed_at_run_time(n):
    root = Scope.NewRootScope()
    limit = ops.Placeholder(root.WithOpName("n"), DT_INT32, shape=[])
    (count,) = ops.BuildWhileLoop(root, [ops.Const(root, 0)], _less_than(limit),
                                  lambda s, v: [ops.Add(s, v[0], 1)], "count")
    assert count.dtype is DT_INT32 and count.shape == TensorShape([])
    assert _run(root, count, {limit: n}) == n


def test_the_loop_is_one_node_and_the_frame_is_named_after_frame_name():
    root = Scope.NewRootScope()
    (out,) = ops.BuildWhileLoop(root, [ops.Const(root, 0)], _less_than(3),
                                lambda s, v: [ops.Add(s, v[0], 1)], "outer/loop")
    node = out.op
    assert node.type == "While" and node.name == "While"
    assert str(node.attrs["cond"]) == "outer/loop/cond"
    assert str(node.attrs["body"]) == "outer/loop/body"
    names = [op.name for op in root.graph().operations()]
    assert "outer/loop/loop_var_0" in names and "outer/loop/cond/Less" in names
    assert "outer/loop/body/Add" in names
    assert "While" in str(root.ToGraphDef())     # func attrs export (as their names)


def test_matrix_power_by_repeated_multiplication():
    root = Scope.NewRootScope()
    m = np.array([[1.0, 1.0], [1.0, 0.0]])
    base = ops.Const(root, m)
    _, power = ops.BuildWhileLoop(
        root, [ops.Const(root, 0), ops.Const(root, np.eye(2))], _less_than(10),
        lambda s, v: [ops.Add(s, v[0], 1), ops.MatMul(s, v[1], base)], "power")
    assert power.shape == TensorShape([2, 2]) and power.dtype is DT_DOUBLE
    np.testing.assert_array_equal(_run(root, power), np.linalg.matrix_power(m, 10))


def test_loop_variables_of_different_dtypes_and_shapes():
    root = Scope.NewRootScope()
    init = [ops.Const(root, 0), ops.Const(root, np.zeros(3)), ops.Const(root, True),
            ops.Const(root, np.ones((2, 2), I64))]

    def body(s, v):
        i, acc, flag, grid = v
        return [ops.Add(s, i, 1), ops.Add(s, acc, ops.Cast(s, i, DT_DOUBLE)),
                ops.LogicalNot(s, flag), ops.Mul(s, grid, np.int64(2))]

    outs = ops.BuildWhileLoop(root, init, _less_than(5), body, "mixed")
    assert [o.dtype for o in outs] == [DT_INT32, DT_DOUBLE, DT_BOOL, DT_INT64]
    assert [o.shape for o in outs] == [TensorShape(s) for s in ([], [3], [], [2, 2])]
    i, acc, flag, grid = _run(root, outs)
    assert i == 5
    np.testing.assert_array_equal(acc, np.full(3, 0 + 1 + 2 + 3 + 4.0))
    assert bool(flag) is False                     # five negations of True
    np.testing.assert_array_equal(grid, np.full((2, 2), 32))


def test_a_growing_dim_becomes_unknown_in_the_loop_variable_and_the_output():
    root = Scope.NewRootScope()

    def body(s, v):
        return [ops.Add(s, v[0], 1), ops.ConcatV2(s, [v[1], v[1]], 0)]

    _, grown = ops.BuildWhileLoop(root, [ops.Const(root, 0), ops.Const(root, [[1.0, 2.0]])],
                                  _less_than(3), body, "grow")
    assert grown.shape == TensorShape([None, 2])     # dim 0 changes; dim 1 is kept
    assert grown.op.attrs["output_shapes"][1] == TensorShape([None, 2])
    placeholders = [op for op in root.graph().operations() if op.type == "Placeholder"]
    assert placeholders[-1].output_shapes[0] == TensorShape([None, 2])  # the relaxed frame
    value = _run(root, grown)
    assert value.shape == (8, 2)
    np.testing.assert_array_equal(value, np.tile([[1.0, 2.0]], (8, 1)))


def test_shape_invariants_fix_the_loop_shape_and_refuse_incompatible_results():
    root = Scope.NewRootScope()
    body = lambda s, v: [ops.Add(s, v[0], 1), ops.ConcatV2(s, [v[1], v[1]], 0)]  # noqa: E731
    _, x = ops.BuildWhileLoop(root, [ops.Const(root, 0), ops.Const(root, [1.0])],
                              _less_than(2), body, "inv", shape_invariants=[None, [None]])
    assert x.shape == TensorShape([None])
    np.testing.assert_array_equal(_run(root, x), [1.0] * 4)

    root = Scope.NewRootScope()
    ops.BuildWhileLoop(root, [ops.Const(root, 0), ops.Const(root, [1.0])], _less_than(2), body,
                       "inv", shape_invariants=[None, [1]])
    assert not root.ok()
    assert "has shape [2], which is not compatible with the shape invariant [1] of loop " \
           "variable 1" in root.status().errors[0].message


def test_captured_tensors_become_inputs_and_are_computed_once_per_run():
    root = Scope.NewRootScope()
    step = ops.Placeholder(root.WithOpName("step"), DT_FLOAT, shape=[2])
    noise = ops.RandomUniform(root.WithOpName("noise"), np.array([2], I32), DT_FLOAT)
    scale = ops.Const(root.WithOpName("scale"), np.float32(10))

    def body(s, v):
        delta = ops.Mul(s, ops.Add(s, step, noise), scale)
        return [ops.Add(s, v[0], 1), ops.Add(s, v[1], delta)]

    n, total = ops.BuildWhileLoop(root, [ops.Const(root, 0), ops.Const(root, np.zeros(2, F32))],
                                  _less_than(4), body, "acc")
    node = total.op
    inputs = [t.op.name for t in node.inputs]
    assert inputs[2:] == ["step", "noise"]           # the Const 'scale' is left to the frame
    assert len(node.outputs) == 4                     # captured tensors pass through
    sess = ClientSession(root)
    got_total, got_noise = sess.Run({step: [1.0, 2.0]}, [total, noise])
    np.testing.assert_allclose(got_total, 4 * 10 * (np.array([1.0, 2.0]) + got_noise),
                               rtol=1e-6)


def test_nested_loops_capture_the_outer_loop_variable():
    root = Scope.NewRootScope()

    def outer_body(s, v):
        i, acc = v

        def inner_body(s2, w):
            j, inner_acc = w
            return [ops.Add(s2, j, 1), ops.Add(s2, inner_acc, ops.Mul(s2, i, j))]

        _, inner = ops.BuildWhileLoop(s, [ops.Const(s, 0), acc], _less_than(i), inner_body,
                                      "inner")
        return [ops.Add(s, i, 1), inner]

    _, total = ops.BuildWhileLoop(root, [ops.Const(root, 0), ops.Const(root, 0)],
                                  _less_than(6), outer_body, "outer")
    want = sum(i * j for i in range(6) for j in range(i))
    assert _run(root, total) == want
    inner_node = next(op for op in root.graph().operations()
                      if op.type == "While" and op.name.startswith("outer/"))
    assert "outer/loop_var_0:0" in [t.name for t in inner_node.inputs]


def test_zero_iterations_return_the_inputs():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[3])
    (y,) = ops.BuildWhileLoop(root, [x], lambda s, v: ops.Const(s, False),
                              lambda s, v: [ops.Mul(s, v[0], 2.0)], "never")
    np.testing.assert_array_equal(_run(root, y, {x: np.arange(3, dtype=F32)}), [0, 1, 2])


def test_the_frame_never_runs_in_the_outer_plan():
    root = Scope.NewRootScope()
    limit = ops.Placeholder(root.WithOpName("n"), DT_INT32, shape=[])
    (out,) = ops.BuildWhileLoop(root, [ops.Const(root, 0)], _less_than(limit),
                                lambda s, v: [ops.Add(s, v[0], 1)], "loop")
    sess = ClientSession(root)
    nodes = _traced_nodes(sess, {limit: 3}, [out])
    assert "While" in nodes and not any(n.startswith("loop/") for n in nodes)
    frame_tensor = root.graph().get_operation("loop/body/Add").output(0)
    with pytest.raises(errors.InvalidArgumentError, match="must feed a value for placeholder "
                                                          "tensor 'loop/loop_var_0'"):
        sess.Run([frame_tensor])


def test_a_pure_loop_over_constants_is_folded_and_a_stateful_one_is_not():
    root = Scope.NewRootScope()
    (pure,) = ops.BuildWhileLoop(root, [ops.Const(root, 1)], _less_than(100),
                                 lambda s, v: [ops.Mul(s, v[0], 3)], "pure")
    shape = np.array([1], I32)

    def noisy(s, v):
        return [ops.Add(s, v[0], 1), ops.Add(s, v[1], ops.RandomUniform(s, shape, DT_FLOAT))]

    _, rand_sum = ops.BuildWhileLoop(root, [ops.Const(root, 0), ops.Const(root, [0.0])],
                                     _less_than(3), noisy, "noisy")
    sess = ClientSession(root)
    assert sess.Run(pure) == 243
    nodes = _traced_nodes(sess, {}, [pure, rand_sum])
    assert "While" not in nodes and "While_1" in nodes
    assert sess.Run(rand_sum)[0] != sess.Run(rand_sum)[0]


def test_variables_are_read_and_updated_in_every_iteration():
    root = Scope.NewRootScope()
    v = ops.Variable(root.WithOpName("v"), [], DT_DOUBLE)
    init = ops.Assign(root, v, np.float64(1.0))

    def body(s, w):       # reads v as the iteration starts, then adds 1 to it
        bump = ops.AssignAdd(s, v, np.float64(1.0))
        seen = ops.Add(s.WithControlDependencies([bump]), w[1], ops.Identity(s, v))
        return [ops.Add(s, w[0], 1), seen]

    _, seen = ops.BuildWhileLoop(root, [ops.Const(root, 0), ops.Const(root, 0.0, DT_DOUBLE)],
                                 _less_than(3), body, "bump")
    assert "v" not in [t.op.name for t in seen.op.inputs]     # not captured: read afresh
    sess = ClientSession(root)
    sess.Run({}, [], [init])
    assert sess.Run(seen) == 1.0 + 2.0 + 3.0
    assert sess.Run(v) == 4.0
    assert sess.Run(seen) == 4.0 + 5.0 + 6.0          # not folded: it runs again


def test_concurrent_runs_of_one_loop():
    root = Scope.NewRootScope()
    limit = ops.Placeholder(root, DT_INT32, shape=[])
    (out,) = ops.BuildWhileLoop(root, [ops.Const(root, 0)], _less_than(limit),
                                lambda s, v: [ops.Add(s, v[0], 1)], "loop")
    sess = ClientSession(root)
    results = {}

    def work(k):
        results[k] = [int(sess.Run({limit: k + r}, out)) for r in range(20)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {k: [k + r for r in range(20)] for k in range(4)}


def test_while_and_if_are_not_differentiable():
    assert {"While", "If"} <= NOT_DIFFERENTIABLE
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_DOUBLE, shape=[])
    _, y = ops.BuildWhileLoop(root, [ops.Const(root, 0), x], _less_than(2),
                              lambda s, v: [ops.Add(s, v[0], 1), ops.Mul(s, v[1], v[1])], "sq")
    (dx,) = AddSymbolicGradients(root, [y], [x])
    assert dx is None


# ---- conditionals ----------------------------------------------------------------------------
def test_cond_runs_the_branch_pred_selects():
    root = Scope.NewRootScope()
    pred = ops.Placeholder(root.WithOpName("pred"), DT_BOOL, shape=[])
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[2])
    out = ops.Cond(root, pred, lambda s: ops.Mul(s, x, 2.0), lambda s: ops.Sub(s, x, 1.0))
    assert out.op.type == "If" and out.shape == TensorShape([2])
    sess = ClientSession(root)
    value = np.array([3.0, 5.0], F32)
    np.testing.assert_array_equal(sess.Run({pred: True, x: value}, out), [6.0, 10.0])
    np.testing.assert_array_equal(sess.Run({pred: False, x: value}, out), [2.0, 4.0])


def test_only_the_taken_branch_runs():
    root = Scope.NewRootScope()
    pred = ops.Placeholder(root, DT_BOOL, shape=[])

    def broken(s):     # a Placeholder inside a branch can never be fed: running it fails
        return ops.Placeholder(s.WithOpName("unfed"), DT_INT32, shape=[])

    out = ops.Cond(root, pred, lambda s: ops.Const(s, 7), broken)
    sess = ClientSession(root)
    assert sess.Run({pred: True}, out) == 7
    with pytest.raises(errors.InvalidArgumentError, match="placeholder tensor 'cond/else/unfed'"):
        sess.Run({pred: False}, out)


def test_cond_with_several_results_and_different_shapes():
    root = Scope.NewRootScope()
    pred = ops.Placeholder(root, DT_BOOL, shape=[])
    a, b = ops.Cond(root, pred,
                    lambda s: [ops.Const(s, np.zeros((2, 3), F32)), ops.Const(s, 1)],
                    lambda s: [ops.Const(s, np.ones((4, 3), F32)), ops.Const(s, 2)])
    assert a.shape == TensorShape([None, 3]) and b.shape == TensorShape([])
    sess = ClientSession(root)
    assert sess.Run({pred: True}, a).shape == (2, 3) and sess.Run({pred: False}, b) == 2
    c = ops.Cond(root, pred, lambda s: ops.Const(s, [1.0]), lambda s: ops.Const(s, 1.0))
    assert c.shape == TensorShape(None)


def test_cond_inside_a_loop_counts_collatz_steps():
    root = Scope.NewRootScope()
    start = ops.Placeholder(root, DT_INT64, shape=[])

    def body(s, v):
        n, steps = v
        even = ops.Equal(s, ops.FloorMod(s, n, np.int64(2)), np.int64(0))
        nxt = ops.Cond(s, even, lambda b: ops.FloorDiv(b, n, np.int64(2)),
                       lambda b: ops.Add(b, ops.Mul(b, n, np.int64(3)), np.int64(1)))
        return [nxt, ops.Add(s, steps, 1)]

    _, steps = ops.BuildWhileLoop(root, [start, ops.Const(root, 0)],
                                  lambda s, v: ops.Greater(s, v[0], np.int64(1)), body, "collatz")

    def collatz(n):
        k = 0
        while n > 1:
            n, k = (n // 2 if n % 2 == 0 else 3 * n + 1), k + 1
        return k

    sess = ClientSession(root)
    for n in (1, 6, 27):
        assert sess.Run({start: n}, steps) == collatz(n)


def test_a_loop_inside_a_branch():
    root = Scope.NewRootScope()
    pred = ops.Placeholder(root, DT_BOOL, shape=[])

    def loop(s):
        return ops.BuildWhileLoop(s, [ops.Const(s, 1)], _less_than(50),
                                  lambda b, v: [ops.Mul(b, v[0], 2)], "doubling")[0]

    out = ops.Cond(root, pred, loop, lambda s: ops.Const(s, -1))
    sess = ClientSession(root)
    assert sess.Run({pred: True}, out) == 64 and sess.Run({pred: False}, out) == -1


# ---- errors ----------------------------------------------------------------------------------
def _first_error(root):
    assert not root.ok()
    return root.status().errors[0]


def test_a_body_output_dtype_change_is_an_error_naming_both():
    root = Scope.NewRootScope()
    ops.BuildWhileLoop(root, [ops.Const(root, 0), ops.Const(root, 1.0)], _less_than(3),
                       lambda s, v: [ops.Add(s, v[0], 1), ops.Cast(s, v[1], DT_DOUBLE)], "bad")
    err = _first_error(root)
    assert isinstance(err, errors.InvalidArgumentError) and err.op_type == "While"
    assert "output 1 ('bad/body/Cast:0') has dtype float64, but loop variable 1 " \
           "('Const_1:0') has dtype float32" in err.message


def test_a_rank_change_is_an_error_naming_both_shapes():
    root = Scope.NewRootScope()
    ops.BuildWhileLoop(root, [ops.Const(root, 0), ops.Const(root, [1.0, 2.0])], _less_than(3),
                       lambda s, v: [ops.Add(s, v[0], 1), ops.ExpandDims(s, v[1], 0)], "bad")
    message = _first_error(root).message
    assert "output 1 has shape [1, 2], but loop variable 1 ('Const_1:0') has shape [2]" \
           in message


@pytest.mark.parametrize(("cond", "body", "pattern"), [
    (lambda s, v: ops.Const(s, 1), lambda s, v: [v[0]], "cond must return a bool scalar"),
    (lambda s, v: ops.Const(s, [True, False]), lambda s, v: [v[0]],
     "cond must return a bool scalar.*shape \\[2\\]"),
    (_less_than(3), lambda s, v: [v[0], v[0]], "the body returned 2 values for 1 loop"),
    (lambda s, v: [ops.Const(s, True), ops.Const(s, True)], lambda s, v: [v[0]],
     "cond must return one bool scalar, but returned 2 values"),
])
def test_malformed_cond_and_body_are_build_errors(cond, body, pattern):
    root = Scope.NewRootScope()
    outs = ops.BuildWhileLoop(root, [ops.Const(root, 0)], cond, body, "bad")
    assert len(outs) == 1 and outs[0].op.failed
    assert re.search(pattern, _first_error(root).message)


def test_no_loop_variables_and_bad_parallel_iterations_are_errors():
    root = Scope.NewRootScope()
    ops.BuildWhileLoop(root, [], _less_than(1), lambda s, v: [], "empty")
    assert "needs a non-empty list of loop variables" in _first_error(root).message
    root = Scope.NewRootScope()
    ops.BuildWhileLoop(root, [ops.Const(root, 0)], _less_than(1),
                       lambda s, v: [v[0]], "p", parallel_iterations=0)
    assert "parallel_iterations must be a positive int" in _first_error(root).message


def test_errors_inside_the_body_are_recorded_and_the_loop_is_skipped_quietly():
    root = Scope.NewRootScope()
    outs = ops.BuildWhileLoop(root, [ops.Const(root, np.zeros((2, 3), F32))],
                              lambda s, v: ops.Const(s, False),
                              lambda s, v: [ops.MatMul(s, v[0], v[0])], "bad")
    errs = root.status().errors
    assert len(errs) == 1 and errs[0].op_type == "MatMul"
    assert outs[0].op.failed
    ops.Identity(root, outs[0])                        # consumers are skipped quietly
    assert len(root.status().errors) == 1


def test_exit_on_error_raises_at_the_loop():
    root = Scope.NewRootScope().ExitOnError()
    with pytest.raises(errors.InvalidArgumentError, match="dtype cannot change"):
        ops.BuildWhileLoop(root, [ops.Const(root, 0)], _less_than(2),
                           lambda s, v: [ops.Cast(s, v[0], DT_INT64)], "bad")


def test_control_dependencies_into_the_frame_are_refused():
    root = Scope.NewRootScope()
    outside = ops.NoOp(root.WithOpName("outside"))

    def body(s, v):
        return [ops.Add(s.WithControlDependencies([outside]), v[0], 1)]

    ops.BuildWhileLoop(root, [ops.Const(root, 0)], _less_than(2), body, "ctl")
    assert "has a control dependency on 'outside'" in _first_error(root).message


def test_scope_control_dependencies_apply_to_the_while_node_only():
    root = Scope.NewRootScope()
    v = ops.Variable(root.WithOpName("v"), [], DT_INT32)
    init = ops.Assign(root, v, np.int32(5))
    dep = root.WithControlDependencies([init])
    (out,) = ops.BuildWhileLoop(dep, [ops.Const(root, 0)], _less_than(3),
                                lambda s, v_: [ops.Add(s, v_[0], 1)], "after")
    assert [c.name for c in out.op.control_inputs] == [init.operation.name]
    assert _run(root, out) == 3


def test_a_cond_value_that_is_not_a_scalar_at_run_time_is_an_invalid_argument():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT)                 # unknown rank: the cond may be a vector

    def cond(s, v):
        return ops.Less(s, ops.Sum(s, v[0], np.array([], I32)), 10.0)

    (out,) = ops.BuildWhileLoop(root, [x], cond, lambda s, v: [ops.Add(s, v[0], 1.0)], "vec")
    assert root.ok()
    sess = ClientSession(root)
    assert sess.Run({x: np.float32(4)}, out) == 10.0
    with pytest.raises(errors.InvalidArgumentError,
                       match="The loop condition 'vec/cond/Less:0' must be a bool scalar, "
                             "but is bool of shape \\[2\\]") as exc:
        sess.Run({x: np.zeros(2, F32)}, out)
    assert exc.value.op_name == "While"


def test_errors_inside_the_body_at_run_time_name_the_inner_node_and_the_loop():
    root = Scope.NewRootScope()
    d = ops.Placeholder(root.WithOpName("d"), DT_INT32, shape=[])
    (out,) = ops.BuildWhileLoop(root, [ops.Const(root, 10)], lambda s, v: ops.Greater(s, v[0], 1),
                                lambda s, v: [ops.FloorDiv(s, v[0], d)], "div")
    sess = ClientSession(root)
    assert sess.Run({d: 3}, out) == 1
    with pytest.raises(errors.InvalidArgumentError, match="Integer division by zero") as exc:
        sess.Run({d: 0}, out)
    assert "div/body/FloorDiv" in str(exc.value) and exc.value.op_name == "While"


@pytest.mark.parametrize(("pred", "true_fn", "false_fn", "pattern"), [
    (lambda r: ops.Const(r, 1.0), lambda s: ops.Const(s, 1), lambda s: ops.Const(s, 2),
     "pred must be a bool scalar, but 'Const:0' has dtype float32"),
    (lambda r: ops.Const(r, [True]), lambda s: ops.Const(s, 1), lambda s: ops.Const(s, 2),
     "pred must be a bool scalar.*shape \\[1\\]"),
    (lambda r: ops.Const(r, True), lambda s: ops.Const(s, 1), lambda s: ops.Const(s, 2.0),
     "output 0 is 'cond/then/Const:0' of dtype int32 in true_fn but 'cond/else/Const:0' of "
     "dtype float32"),
    (lambda r: ops.Const(r, True), lambda s: ops.Const(s, 1), lambda s: [ops.Const(s, 2)],
     "true_fn returned one value but false_fn a list of 1"),
])
def test_cond_build_errors(pred, true_fn, false_fn, pattern):
    root = Scope.NewRootScope()
    out = ops.Cond(root, pred(root), true_fn, false_fn)
    assert out.op.failed and re.search(pattern, _first_error(root).message)


def test_if_checks_a_fed_predicate_is_a_scalar_at_run_time():
    root = Scope.NewRootScope()
    pred = ops.Placeholder(root, DT_BOOL)                  # unknown rank
    out = ops.Cond(root, pred, lambda s: ops.Const(s, 1), lambda s: ops.Const(s, 2))
    sess = ClientSession(root)
    assert sess.Run({pred: np.bool_(False)}, out) == 2
    with pytest.raises(errors.InvalidArgumentError, match="must be rank 0"):
        sess.Run({pred: np.array([True, True])}, out)


def test_while_and_if_refuse_hand_made_func_attrs():
    root = Scope.NewRootScope()
    x = ops.Const(root, 1)
    ops.While(root, [x], "cond", "body")
    assert "attr 'cond' must be a FrameFunction" in _first_error(root).message
    root = Scope.NewRootScope()
    fn = ops.FrameFunction("f", [], ["Const:0"])
    ops.While(root, [ops.Const(root, 1)], fn, fn)
    assert "cond and body must both take the 1 inputs" in _first_error(root).message
