"""The batch analysis: which tensors carry the batch, which are combinable partial results,
and which graphs are refused (with the op named) before anything is sent to a cluster.

No cluster is needed: refusals are checked against a backend that fails the test if it is
used at all.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import ops
from opgraph import DT_DOUBLE, DT_FLOAT, DT_INT32, Scope, train
from runtime.batch_analysis import REPLICATED, BatchShardingError, BatchState, analyse
from runtime.distributed import DistributedSession
from runtime.executor import prune

C4 = np.arange(4.0)
W43 = np.ones((4, 3))


def _state(root, x, out, rank4=None):
    feeds = {x: BatchState.batch(0)}
    if rank4 is not None:
        feeds[rank4] = BatchState.batch(0)
    out = getattr(out, "output", out)
    states = analyse(prune(set(feeds), [out], []), feeds)
    return states[out]


def _graph():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_DOUBLE, shape=[-1, 4]).output
    return root, x


CASES = [
    # (name, builder(root, x) -> output, expected kind, expected axis or None)
    ("relu", lambda r, x: ops.Relu(r, x), "batch", 0),
    ("add a row vector", lambda r, x: ops.AddV2(r, x, C4), "batch", 0),
    ("matmul rows", lambda r, x: ops.MatMul(r, x, W43), "batch", 0),
    ("matmul contracting the batch", lambda r, x: ops.MatMul(r, x, x, transpose_a=True),
     "sum", None),
    ("matmul of a transposed batch",
     lambda r, x: ops.MatMul(r, np.ones((3, 4)), ops.Transpose(r, x, [1, 0])), "batch", 1),
    ("sum over the batch", lambda r, x: ops.Sum(r, x, [0]), "sum", None),
    ("mean over everything", lambda r, x: ops.Mean(r, x, [0, 1]), "mean", None),
    ("mean over features", lambda r, x: ops.Mean(r, x, [1]), "batch", 0),
    ("sum keep dims", lambda r, x: ops.Sum(r, x, [1], keep_dims=True), "batch", 0),
    ("max over the batch", lambda r, x: ops.Max(r, x, [0]), "max", None),
    ("scaled mean", lambda r, x: ops.Mul(r, ops.Mean(r, x, [0]), np.float64(2)), "mean", None),
    ("mean plus a constant", lambda r, x: ops.AddV2(r, ops.Mean(r, x, [0]), np.float64(1)), "mean",
     None),
    ("sum of sums", lambda r, x: ops.AddV2(r, ops.Sum(r, x, [0]), ops.Sum(r, x, [0])), "sum",
     None),
    ("reshape keeping rows", lambda r, x: ops.Reshape(r, x, [-1, 2, 2]), "batch", 0),
    ("expand dims", lambda r, x: ops.ExpandDims(r, x, 0), "batch", 1),
    ("concat features", lambda r, x: ops.ConcatV2(r, [x, x], 1), "batch", 0),
    ("softmax", lambda r, x: ops.Softmax(r, x), "batch", 0),
    ("shape", lambda r, x: ops.Shape(r, x), "shape", 0),
    ("size", lambda r, x: ops.Size(r, x), "sum", None),
    ("l2 loss", lambda r, x: ops.L2Loss(r, x), "sum", None),
    ("constant only", lambda r, x: ops.Exp(r, C4), "replicated", None),
]


@pytest.mark.parametrize("name,build,kind,axis", CASES, ids=[c[0] for c in CASES])
def test_states(name, build, kind, axis):
    root, x = _graph()
    s = _state(root, x, build(root, x))
    assert s.kind == kind, s
    assert s.axis == axis


MIXED_CASES = [
    ("centering by the batch mean", lambda r, x: ops.Sub(r, x, ops.Mean(r, x, [0])),
     r"'Sub' \(Sub\) consumes 'Mean', a mean over the batch"),
    ("broadcast of a full-batch constant", lambda r, x: ops.AddV2(r, x, np.ones((8, 4))),
     r"broadcasts input 1 .* dim 0 is of size 8"),
    ("outer product over the batch", lambda r, x: ops.MatMul(r, x, x, transpose_b=True),
     r"'MatMul' \(MatMul\) multiplies batch elements"),
    ("reshape moving the batch", lambda r, x: ops.Reshape(r, x, [-1]),
     r"'Reshape' \(Reshape\) moves the batch"),
    ("reshape fixing the batch size", lambda r, x: ops.Reshape(r, x, [2, 16]),
     r"fixing the batch size at 2"),
    ("concat along the batch", lambda r, x: ops.ConcatV2(r, [x, x], 0),
     r"'ConcatV2' \(ConcatV2\) concatenates along the batch"),
    ("a sum plus a constant", lambda r, x: ops.AddV2(r, ops.Sum(r, x, [0]), np.float64(1)),
     r"consumes 'Sum'"),
    ("argmax over the batch", lambda r, x: ops.ArgMax(r, x, 0), r"picks an index"),
    ("squeeze of every size-1 dim", lambda r, x: ops.Squeeze(r, x), r"squeeze_dims"),
    ("random numbers", lambda r, x: ops.AddV2(r, x, ops.RandomUniform(r, [4], DT_DOUBLE)),
     r"'RandomUniform' \(RandomUniform\) draws random numbers"),
    ("integer mean", lambda r, x: ops.Mean(r, ops.Cast(r, x, DT_INT32), [0]),
     r"integer \(int32\) mean"),
]


@pytest.mark.parametrize("name,build,match", MIXED_CASES, ids=[c[0] for c in MIXED_CASES])
def test_mixing_ops_are_named(name, build, match):
    root, x = _graph()
    s = _state(root, x, build(root, x))
    assert s.kind == "mixed"
    assert re.search(match, s.reason), s.reason


def test_image_ops():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[-1, 4, 4, 3]).output
    dy = ops.Placeholder(root.WithOpName("dy"), DT_FLOAT, shape=[-1, 4, 4, 2]).output
    f = np.ones((3, 3, 3, 2), np.float32)
    seed = ops.Conv2DBackpropInputV2(root, x, f, dy, [1, 1, 1, 1], "SAME")
    v1 = ops.Conv2DBackpropInput(root, ops.Shape(root, x), f, dy, [1, 1, 1, 1], "SAME")
    pinned = ops.Conv2DBackpropInput(root, [8, 4, 4, 3], f, dy, [1, 1, 1, 1], "SAME")
    pool = ops.AvgPool(root, x, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
    c = np.ones(3, np.float32)
    bn_train = ops.FusedBatchNorm(root, x, c, c, np.zeros(0, np.float32),
                                  np.zeros(0, np.float32))
    bn_infer = ops.FusedBatchNorm(root, x, c, c, c, c, is_training=False)
    bias_grad = ops.BiasAddGrad(root, dy)
    assert _state(root, x, seed, dy) == BatchState.batch(0)
    assert _state(root, x, v1, dy) == BatchState.batch(0)
    assert "input 'input_sizes'" in _state(root, x, pinned, dy).reason
    assert _state(root, x, pool) == BatchState.batch(0)
    assert "training mode" in _state(root, x, bn_train.y).reason
    assert _state(root, x, bn_infer.y) == BatchState.batch(0)
    assert _state(root, x, bn_infer.batch_mean) == REPLICATED
    assert _state(root, x, bias_grad, dy).kind == "sum"


def test_unknown_rank_feed_cannot_broadcast():
    root = Scope.NewRootScope()
    u = ops.Placeholder(root.WithOpName("u"), DT_DOUBLE).output
    assert _state(root, u, ops.Relu(root, u)) == BatchState.batch(0)
    assert "unknown rank" in _state(root, u, ops.AddV2(root, u, C4)).reason


# ---- refusals through DistributedSession: nothing may be sent ----------------------------
def _session(root, backend, **kwargs):
    return DistributedSession(root, backend, min_shard_size=1, **kwargs)


def test_refused_fetch_names_the_op_before_sending(fake_backend):
    root, x = _graph()
    centred = ops.Sub(root, x, ops.Mean(root, x, [0]))
    sess = _session(root, fake_backend)
    with pytest.raises(BatchShardingError, match=r"fetch 'Sub:0'.*'Sub' \(Sub\) consumes 'Mean'"):
        sess.Run({x: np.ones((4, 4))}, [centred])


def test_batch_norm_in_training_mode_is_refused(fake_backend):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[-1, 2, 2, 3])
    c = np.ones(3, np.float32)
    bn = ops.FusedBatchNorm(root.WithOpName("bn"), x, c, c, np.zeros(0, np.float32),
                            np.zeros(0, np.float32))
    sess = _session(root, fake_backend)
    with pytest.raises(BatchShardingError, match=r"'bn' \(FusedBatchNorm\) in training mode"):
        sess.Run({x: np.ones((4, 2, 2, 3), np.float32)}, bn.y)


def test_training_through_batch_norm_is_refused(fake_backend):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[-1, 2, 2, 3])
    scale = train.Variable(root.WithOpName("scale"), np.ones(3, np.float32))
    zeros = np.zeros(0, np.float32)
    bn = ops.FusedBatchNorm(root.WithOpName("bn"), x, scale.output, np.zeros(3, np.float32),
                            zeros, zeros)
    loss = ops.Mean(root, ops.Square(root, bn.y), [0, 1, 2, 3])
    step = train.GradientDescent(0.1).minimize(root, loss)
    sess = _session(root, fake_backend)
    with pytest.raises(BatchShardingError,
                       match=r"update .*ApplyGradientDescent.*the loss 'Mean:0' cannot be split"
                             r".*'bn' \(FusedBatchNorm\) in training mode"):
        sess.Run({x: np.ones((4, 2, 2, 3), np.float32)}, [], [step])


def test_static_batch_dim_of_a_declared_batch_input_is_refused(fake_backend):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_DOUBLE, shape=[8, 4])
    sess = _session(root, fake_backend, batch_inputs=[x])
    with pytest.raises(BatchShardingError, match="static dimension 0 of 8"):
        sess.Run({x: np.ones((8, 4))}, ops.Relu(root, x))


def test_feeds_of_different_lengths_ask_for_batch_inputs(fake_backend):
    root, x = _graph()
    y = ops.Placeholder(root.WithOpName("y"), DT_DOUBLE, shape=[-1])
    sess = _session(root, fake_backend)
    with pytest.raises(BatchShardingError, match=r"x:0: 4, y:0: 3.*batch_inputs"):
        sess.Run({x: np.ones((4, 4)), y: np.ones(3)}, [ops.Relu(root, x), ops.Relu(root, y)])


def test_fetch_after_a_variable_update_is_refused(fake_backend):
    root, x = _graph()
    w = train.Variable(root.WithOpName("w"), np.ones((4, 3)))
    loss = ops.Sum(root, ops.MatMul(root, x, w.output), [0, 1])
    step = train.GradientDescent(0.5).minimize(root, loss)
    after = ops.Identity(root.WithControlDependencies([step]), ops.Relu(root, x))
    sess = _session(root, fake_backend)
    with pytest.raises(BatchShardingError, match="variable update"):
        sess.Run({x: np.ones((4, 4))}, after)


def test_the_plan_says_how_each_fetch_combines(fake_backend):
    root, x = _graph()
    w = train.Variable(root.WithOpName("w"), np.ones((4, 3)))
    y = ops.MatMul(root, x, w.output)
    loss = ops.Mean(root, ops.Square(root, y), [0, 1])
    step = train.Momentum(0.1, 0.9).minimize(root, loss)
    sess = _session(root, fake_backend)
    plan = sess.analyse({x: np.ones((6, 4))}, [y, loss, ops.Shape(root, y)], [step])
    text = plan.describe()
    assert "fetch MatMul:0: batch along axis 0" in text
    assert "fetch Mean:0: mean over the batch" in text
    assert "update input gradients/MatMul_1:0: mean over the batch from 'Mean'" in text
    assert "once on the parameter holder" in text
    assert plan.variables == ["w"]


def test_runs_without_a_batch_feed_stay_on_the_holder(fake_backend):
    root, x = _graph()
    w = train.Variable(root.WithOpName("w"), np.full((4, 3), 2.0))
    sess = _session(root, fake_backend)
    sess.Run({}, [], [train.global_variables_initializer(root)])
    np.testing.assert_array_equal(sess.Run(w.output), np.full((4, 3), 2.0))
    lr = ops.Placeholder(root.WithOpName("lr"), DT_DOUBLE, shape=[])
    np.testing.assert_array_equal(sess.Run({lr: 3.0}, ops.Mul(root, lr, np.float64(2))), 6.0)
    assert sess.last_run_shards == 0


def test_update_from_a_mixed_value_names_the_mixing_op(fake_backend):
    root, x = _graph()
    v = train.Variable(root.WithOpName("v"), np.zeros(4))
    centred = ops.Sum(root, ops.Sub(root.WithOpName("centre"), x, ops.Mean(root, x, [0])), [0])
    update = ops.Assign(root.WithOpName("set_v"), v.output, centred)
    sess = _session(root, fake_backend)
    with pytest.raises(BatchShardingError,
                       match=r"update 'set_v' \(Assign\).*'centre' \(Sub\) consumes 'Mean'"):
        sess.Run({x: np.ones((4, 4))}, [], [update.operation])
