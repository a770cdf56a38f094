"""ClientSession and Scope under misuse: aliasing of results, malformed Run arguments,
foreign objects where a Scope method expects an op or an error, and determinism.

Every test here is a regression test for a fault that was found and fixed: what Run
returns never aliases the session's cache or a fed array; every malformed argument is an
OpError (or TypeError for a wrong call) with a clear message, never an AttributeError,
ValueError or RecursionError from inside; the same graph and feeds give bitwise-identical
results run after run.
"""

from __future__ import annotations

import numpy as np
import pytest

import ops
from opgraph import DT_FLOAT, DT_INT32, Scope, errors
from runtime import ClientSession, RunMetadata, RunOptions

IA = errors.InvalidArgumentError


@pytest.fixture
def graph():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT)
    c = ops.Const(root.WithOpName("c"), np.arange(4, dtype=np.float32))
    folded = ops.AddV2(root.WithOpName("folded"), c, c)        # constant-folded
    y = ops.Identity(root.WithOpName("y"), x)
    z = ops.AddV2(root.WithOpName("z"), x, np.float32(1))
    return root, x, c, folded, y, z


# ---- aliasing -----------------------------------------------------------------------------
def test_fetched_folded_result_cannot_change_later_runs(graph):
    root, _, _, folded, _, _ = graph
    sess = ClientSession(root)
    first = sess.Run(folded)
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 100                       # was: written into the session's cache
    np.testing.assert_array_equal(sess.Run(folded), [0, 2, 4, 6])
    assert not np.shares_memory(first, sess.Run(folded)) or not first.flags.writeable


def test_fetched_feed_or_view_of_a_feed_is_a_copy(graph):
    root, x, _, _, y, _ = graph
    sess = ClientSession(root)
    fed = np.zeros(4, np.float32)
    got_x, got_y = sess.Run({x: fed}, [x, y])
    for got in (got_x, got_y):
        assert not np.may_share_memory(got, fed)
        assert got.flags.writeable
    got_y[0] = 5                                          # the caller's array is untouched
    assert fed[0] == 0
    fed[1] = 7                                            # and the result is untouched
    assert got_x[1] == 0
    view = np.arange(8, dtype=np.float32)[::2]            # a strided view as the feed
    assert not np.may_share_memory(sess.Run({x: view}, y), view)


def test_fetch_of_a_fed_intermediate_is_a_copy(graph):
    root, _, _, _, y, z = graph
    fed = np.ones(3, np.float32)
    got = ClientSession(root).Run({y: fed}, y)
    assert not np.may_share_memory(got, fed)


def test_a_kernel_bug_in_a_folded_op_is_reported_not_cached(monkeypatch):
    from opgraph.op_def import OpDef
    from runtime import kernel_registry

    op_def = OpDef("RobustnessWrongDtype", inputs=["x: T"], outputs=["y: T"],
                   attrs=["T: type"], shape_fn=lambda c: [c.input(0)])
    monkeypatch.setattr(kernel_registry, "_KERNELS", dict(kernel_registry._KERNELS))
    kernel_registry.register_kernel("RobustnessWrongDtype")(lambda x: x.astype(np.float64))
    root = Scope.NewRootScope()
    y = root.WithOpName("w").build_op(op_def, [np.float32([1, 2])], {})
    sess = ClientSession(root)
    for _ in range(2):                  # not cached: the second Run reports it again
        with pytest.raises(errors.InternalError, match=r"float64.*a kernel bug[\s\S]*node w"):
            sess.Run(y.outputs[0])


# ---- Run arguments ------------------------------------------------------------------------
def test_feeds_as_a_list_of_pairs_work(graph):
    root, x, _, _, _, z = graph
    sess = ClientSession(root)
    v = np.ones(2, np.float32)
    np.testing.assert_array_equal(sess.Run([(x, v)], z), [2, 2])
    np.testing.assert_array_equal(sess.Run(((x, v),), [z])[0], [2, 2])
    np.testing.assert_array_equal(sess.Run([("x:0", [1.0, 2.0])], z), [2, 3])
    with pytest.raises(IA, match="fed more than once"):
        sess.Run([(x, v), ("x", v)], z)


@pytest.mark.parametrize("feeds", [
    [1, 2], [(1,)], [(1, 2, 3)], 5, "x", np.zeros(3), {1, 2}, [[None]],
], ids=["ints", "1-tuple", "3-tuple", "int", "str", "ndarray", "set", "nested"])
def test_malformed_feeds_are_invalid_argument(graph, feeds):
    root, _, _, _, _, z = graph
    with pytest.raises(IA, match="Feeds must be a mapping|Feed #0|Cannot use"):
        ClientSession(root).Run(feeds, z)           # was AttributeError/ValueError


@pytest.mark.parametrize(("name", "error", "regex"), [
    ("x:abc", IA, "Invalid tensor name 'x:abc'"),      # was int()'s ValueError
    ("x:", IA, "Invalid tensor name"), ("x:-1", IA, "Invalid tensor name"),
    ("x:+0", IA, "Invalid tensor name"), ("x: 0", IA, "Invalid tensor name"),
    ("x:0:1", IA, "Invalid tensor name"), ("x:\u0661", IA, "Invalid tensor name"),
    (":0", IA, "Invalid tensor name"), ("", IA, "Invalid tensor name"),
    ("nosuch:0", errors.NotFoundError, "not found"),
    ("x:7", errors.OutOfRangeError, "does not have output 7"),
    ("x:99999999999999999999999", errors.OutOfRangeError, "does not have output"),
])
def test_malformed_tensor_names(graph, name, error, regex):
    root, x, *_ = graph
    sess = ClientSession(root)
    with pytest.raises(error, match=regex):
        sess.Run({x: [1.0]}, [name])
    with pytest.raises(error, match=regex):
        sess.Run({name: [1.0]}, [x])


def test_tensor_names_still_work(graph):
    root, x, *_ = graph
    sess = ClientSession(root)
    a, b = sess.Run({"x": [1.0]}, ["z:0", "z"])
    np.testing.assert_array_equal(a, [2.0])
    np.testing.assert_array_equal(b, [2.0])


@pytest.mark.parametrize("options", [RunOptions(trace_level="x"), RunOptions(trace_level=7),
                                     RunOptions(trace_level=-1), RunOptions(trace_level=None),
                                     RunOptions(trace_level=1.5)],
                         ids=["str", "7", "-1", "None", "float"])
def test_bad_trace_level_is_invalid_argument(graph, options):
    root, _, c, *_ = graph
    with pytest.raises(IA, match="trace_level must be"):     # was TypeError from '>'
        ClientSession(root).Run(options, {}, [c], [], None)


@pytest.mark.parametrize(("kwargs", "regex"), [
    ({"run_options": 5}, "run_options must be a RunOptions"),     # was AttributeError
    ({"run_options": RunOptions(1), "run_metadata": "meta"}, "run_metadata must be a"),
    ({"run_options": RunOptions(3), "run_metadata": 5}, "run_metadata must be a"),
])
def test_bad_options_and_metadata_are_invalid_argument(graph, kwargs, regex):
    root, _, c, *_ = graph
    with pytest.raises(IA, match=regex):
        ClientSession(root).Run(fetches=[c], **kwargs)


def test_good_options_and_metadata_still_work(graph):
    root, _, c, *_ = graph
    meta = RunMetadata()
    ClientSession(root).Run(RunOptions(np.int64(1)), {}, [c], [], meta)
    assert ClientSession(root).Run(RunOptions(RunOptions.FULL_TRACE), None, [c], None,
                                   RunMetadata())[0].shape == (4,)


@pytest.mark.parametrize(("fetches", "targets", "regex"), [
    (object(), None, "Cannot use object"), ({"a": 1}, None, "Cannot use dict"),
    (None, 5, "Cannot use int 5 as a target"), (None, np.zeros(2), "Cannot use ndarray"),
    ([None], None, "Cannot use NoneType"),
])
def test_bad_fetches_and_targets_are_invalid_argument(graph, fetches, targets, regex):
    root, *_ = graph
    with pytest.raises(IA, match=regex):
        ClientSession(root).Run(None, fetches, targets)


# ---- Scope methods with foreign objects ---------------------------------------------------
def test_colocate_with_an_op_of_another_graph_is_refused_at_once():
    r1, r2 = Scope.NewRootScope(), Scope.NewRootScope()
    other = ops.Const(r1, 1.0)
    with pytest.raises(IA, match="Cannot colocate with 'Const': it is from another graph"):
        r2.ColocateWith(other)                  # was accepted, then RecursionError at Run
    # the same name in this graph still colocates fine
    mine = ops.Const(r2, 2.0)
    z = ops.Const(r2.ColocateWith(mine), 3.0)
    assert ClientSession(r2).Run(z) == 3.0


def test_update_status_with_a_non_error_is_a_type_error():
    root = Scope.NewRootScope()
    with pytest.raises(TypeError, match="UpdateStatus expects an OpError"):
        root.UpdateStatus("text")               # was accepted; status() then broke
    assert root.ok() and root.status().message == ""
    root.UpdateStatus(IA("recorded"))
    assert root.status().message == "recorded"
    with pytest.raises(TypeError, match="holds OpErrors"):
        errors.Status(["not an error"])


def test_op_error_with_a_non_string_message():
    e = IA(42)
    assert str(e) == "42" and e.message == "42"
    assert "x" in str(e.with_context(" x", None, None, None))


@pytest.mark.parametrize("call", [
    lambda: ops.Const("not a scope"),
    lambda: ops.Const("not a scope", 1.0),
    lambda: ops.Identity(None, 1.0),
    lambda: ops.AddV2(5, 1.0, 2.0),
    lambda: Scope.NewRootScope().WithKernelLabel(None),
    lambda: Scope.NewRootScope().WithDevice(5),
    lambda: Scope.NewRootScope().ColocateWith("x"),
    lambda: Scope.NewRootScope().WithControlDependencies([5]),
    lambda: ClientSession("not a scope"),
])
def test_wrong_objects_give_clear_type_or_invalid_argument_errors(call):
    with pytest.raises((TypeError, IA)) as info:
        call()
    assert not isinstance(info.value, AttributeError)
    assert len(str(info.value)) > 10


# ---- determinism --------------------------------------------------------------------------
def _mixed_graph():
    rng = np.random.default_rng(7)
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[2, 9, 9, 3])
    w = ops.Const(root, rng.normal(size=(3, 3, 3, 4)).astype(np.float32))
    conv = ops.Conv2D(root, x, w, [1, 2, 2, 1], "SAME")
    back = ops.Conv2DBackpropInputV2(root, x, w, conv, [1, 2, 2, 1], "SAME")
    fetch = [conv, back, ops.AddV2(root, back, x), ops.Shape(root, back)]
    for name in ("Sum", "Mean", "Min", "Max"):
        if hasattr(ops, name):
            fetch.append(getattr(ops, name)(root, back, np.int32([1, 2])))
    if hasattr(ops, "MatMul"):
        m = ops.Placeholder(root.WithOpName("m"), DT_FLOAT, shape=[64, 64])
        fetch.append(ops.MatMul(root, m, m))
    feeds = {x: rng.normal(size=(2, 9, 9, 3)).astype(np.float32)}
    if hasattr(ops, "MatMul"):
        feeds[m] = rng.normal(size=(64, 64)).astype(np.float32)
    assert root.ok(), root.status()
    return root, feeds, fetch


def test_results_are_bitwise_identical_run_after_run_and_across_sessions():
    root, feeds, fetch = _mixed_graph()
    sess = ClientSession(root)
    first = [r.tobytes() for r in sess.Run(feeds, fetch)]
    for _ in range(5):
        assert [r.tobytes() for r in sess.Run(feeds, fetch)] == first
    assert [r.tobytes() for r in ClientSession(root).Run(feeds, fetch)] == first
    traced = ClientSession(root).Run(RunOptions(RunOptions.FULL_TRACE), feeds, fetch, [],
                                     RunMetadata())
    assert [r.tobytes() for r in traced] == first
    root2, feeds2, fetch2 = _mixed_graph()          # the same graph built again
    assert [r.tobytes() for r in ClientSession(root2).Run(feeds2, fetch2)] == first


def test_int_results_are_exact_and_stable():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_INT32, shape=[5])
    y = ops.AddV2(root, x, np.int32(2**31 - 10))
    sess = ClientSession(root)
    v = np.arange(5, dtype=np.int32)
    a, b = sess.Run({x: v}, y), sess.Run({x: v}, y)
    assert a.tobytes() == b.tobytes()


# ---- feeds: exact-dtype arrays go straight in, everything else by TF's rules ---------------
def test_feeds_of_every_kind_reach_the_graph_with_their_shape_checked():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, ops.Placeholder.Shape([None, 3]))
    y = ops.Identity(root.WithOpName("y"), x)
    sess = ClientSession(root)
    base = np.arange(6, dtype=np.float32).reshape(2, 3)
    for fed in (base, base.T.copy().T, base.astype(">f4"), base.tolist(), base[:, ::-1]):
        got = sess.Run({x: fed}, [y])[0]
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, np.asarray(fed, np.float32))
    with pytest.raises(IA, match=r"has shape \[2, 4\], which is not compatible with the "
                                 r"tensor's static shape \[\?, 3\]"):
        sess.Run({x: np.zeros((2, 4), np.float32)}, [y])
    with pytest.raises(IA, match=r"has shape \[6\], which is not compatible"):
        sess.Run({x: np.zeros(6, np.float32)}, [y])
    with pytest.raises(IA, match="has dtype float64 but the tensor's dtype is float"):
        sess.Run({x: base.astype(np.float64)}, [y])
    with pytest.raises(IA, match="masked numpy array"):
        sess.Run({x: np.ma.masked_array(base)}, [y])
