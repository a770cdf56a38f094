"""Data-parallel training: N replicas on N shards, gradients combined on the client, one
update on the parameter holder. Every step must equal a single-process step on the whole
batch: bitwise in float64 when every partial sum is exact (dyadic data, power-of-two
counts), within float32 tolerance otherwise; every replica runs with the holder's values."""

from __future__ import annotations

import numpy as np
import pytest

import ops
from opgraph import DT_DOUBLE, DT_FLOAT, DT_INT32, Scope, train
from runtime import ClientSession
from runtime.distributed import DistributedSession

pytest.importorskip("distributed")


def _mlp(dtype, optimizer, loss_kind="mean", rng_seed=0):
    npdt = dtype.as_numpy_dtype
    rng = np.random.default_rng(rng_seed)
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), dtype, shape=[-1, 4])
    t = ops.Placeholder(root.WithOpName("t"), dtype, shape=[-1, 2])
    w1 = train.Variable(root.WithOpName("w1"), (rng.integers(-4, 5, (4, 3)) / 4).astype(npdt))
    b1 = train.Variable(root.WithOpName("b1"), np.full(3, 0.25, npdt))
    w2 = train.Variable(root.WithOpName("w2"), (rng.integers(-4, 5, (3, 2)) / 4).astype(npdt))
    h = ops.Relu(root, ops.BiasAdd(root, ops.MatMul(root, x, w1.output), b1.output))
    y = ops.MatMul(root, h, w2.output)
    err = ops.Square(root, ops.Sub(root, y, t))
    if loss_kind == "mean":
        loss = ops.Mean(root.WithOpName("loss"), err, [0, 1])
    elif loss_kind == "sum":
        loss = ops.Sum(root.WithOpName("loss"), err, [0, 1])
    elif loss_kind == "per_example":
        loss = ops.Sum(root.WithOpName("loss"), err, [1])     # a vector: seeds sum it
    else:    # a mean plus an L2 penalty on the weights, which does not depend on the batch
        penalty = ops.Mul(root, ops.L2Loss(root, w1.output), npdt.type(0.5))
        loss = ops.AddV2(root.WithOpName("loss"), ops.Mean(root, err, [0, 1]), penalty)
    step = optimizer.minimize(root, loss)
    return root, x, t, loss, step, ("w1", "b1", "w2")


def _data(dtype, rows=8, seed=1):
    rng = np.random.default_rng(seed)
    npdt = dtype.as_numpy_dtype
    return (rng.integers(-2, 3, (rows, 4)) / 2).astype(npdt), \
        (rng.integers(-2, 3, (rows, 2)) / 2).astype(npdt)


def _values(session, names):
    slots = session.resources.variables()
    return {n: slots[n].value for n in names}


def _train_both(client, root, x, t, loss, step, names, dtype, steps, rows=8, fresh=False):
    """``steps`` steps on both sessions (each from the initial values when ``fresh``)."""
    local = ClientSession(root)
    dist = DistributedSession(root, client, min_shard_size=1)
    init = train.global_variables_initializer(root)
    history = []
    for k in range(steps):
        if fresh or k == 0:
            local.Run({}, [], [init])
            dist.Run({}, [], [init])
        xv, tv = _data(dtype, rows, seed=k)
        ours = dist.Run({x: xv, t: tv}, [loss], [step])
        assert dist.last_run_shards == 2
        want = local.Run({x: xv, t: tv}, [loss], [step])
        history.append((ours[0], want[0], _values(dist, names), _values(local, names)))
    return dist, history


def test_gradient_descent_float64_is_bitwise(dask_client):
    """Data and weights are multiples of 1/4 with few bits and the counts are powers of two,
    so every partial sum of one step is exact in any order: a step (from the initial
    values; later steps grow the number of bits) equals one session's bit for bit."""
    graph = _mlp(DT_DOUBLE, train.GradientDescent(0.5))
    dist, history = _train_both(dask_client, *graph, DT_DOUBLE, steps=3, fresh=True)
    for ours_loss, want_loss, ours, want in history:
        np.testing.assert_array_equal(ours_loss, want_loss)
        for name in want:
            np.testing.assert_array_equal(ours[name], want[name], err_msg=name)


@pytest.mark.parametrize("loss_kind", ["sum", "per_example", "regularised"])
def test_loss_kinds_float64(dask_client, loss_kind):
    graph = _mlp(DT_DOUBLE, train.GradientDescent(0.125), loss_kind)
    dist, history = _train_both(dask_client, *graph, DT_DOUBLE, steps=2)
    for ours_loss, want_loss, ours, want in history:
        if loss_kind != "per_example":
            np.testing.assert_allclose(ours_loss, want_loss, rtol=1e-14)
        for name in want:
            np.testing.assert_allclose(ours[name], want[name], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("optimizer", [train.Momentum(0.05, 0.9), train.Adam(0.01),
                                       train.RMSProp(0.01)], ids=["momentum", "adam", "rmsprop"])
def test_float32_optimizers_within_tolerance(dask_client, optimizer):
    graph = _mlp(DT_FLOAT, optimizer)
    dist, history = _train_both(dask_client, *graph, DT_FLOAT, steps=4, rows=13)
    for ours_loss, want_loss, ours, want in history:
        np.testing.assert_allclose(ours_loss, want_loss, rtol=1e-5, atol=1e-6)
        for name in want:
            assert ours[name].dtype == np.float32
            np.testing.assert_allclose(ours[name], want[name], rtol=1e-5, atol=1e-6)


def test_replicas_hold_the_holders_variables_after_each_step(dask_client):
    root, x, t, loss, step, names = _mlp(DT_FLOAT, train.Momentum(0.1, 0.5))
    dist = DistributedSession(root, dask_client, min_shard_size=1)
    dist.Run({}, [], [train.global_variables_initializer(root)])
    for k in range(3):
        xv, tv = _data(DT_FLOAT, 6, seed=k)
        dist.Run({x: xv, t: tv}, [], [step])
        holder = _values(dist, names)
        replicas = dist.replica_variables()
        assert len(replicas) == 2
        for worker, values in replicas.items():
            for name in names:
                np.testing.assert_array_equal(values[name], holder[name],
                                              err_msg=f"{worker} {name}")


def test_classifier_with_depthwise_conv_and_sparse_xent(dask_client):
    rng = np.random.default_rng(3)
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[-1, 6, 6, 2])
    labels = ops.Placeholder(root.WithOpName("labels"), DT_INT32, shape=[-1])
    f = train.Variable(root.WithOpName("f"), rng.normal(size=(3, 3, 2, 2)).astype(np.float32))
    conv = ops.Relu(root, ops.DepthwiseConv2dNative(root, x, f.output, [1, 1, 1, 1], "SAME"))
    pooled = ops.AvgPool(root, conv, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
    w = train.Variable(root.WithOpName("w"), rng.normal(size=(36, 3)).astype(np.float32))
    logits = ops.MatMul(root, ops.Reshape(root, pooled, [-1, 36]), w.output)
    xent = ops.SparseSoftmaxCrossEntropyWithLogits(root, logits, labels)
    loss = ops.Mean(root, xent.loss, [0])
    step = train.GradientDescent(0.1).minimize(root, loss)
    local, dist = ClientSession(root), DistributedSession(root, dask_client, min_shard_size=1)
    for s in (local, dist):
        s.Run({}, [], [train.global_variables_initializer(root)])
    for k in range(3):
        feeds = {x: rng.normal(size=(10, 6, 6, 2)).astype(np.float32),
                 labels: rng.integers(0, 3, 10).astype(np.int32)}
        ours = dist.Run(feeds, [loss, logits], [step])
        want = local.Run(feeds, [loss, logits], [step])
        for a, b in zip(ours, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for name in ("f", "w"):
        np.testing.assert_allclose(_values(dist, [name])[name], _values(local, [name])[name],
                                   rtol=1e-5, atol=1e-6)


def test_saver_round_trips_the_holder(dask_client, tmp_path):
    root, x, t, loss, step, names = _mlp(DT_DOUBLE, train.GradientDescent(0.5))
    dist = DistributedSession(root, dask_client, min_shard_size=1)
    dist.Run({}, [], [train.global_variables_initializer(root)])
    xv, tv = _data(DT_DOUBLE)
    dist.Run({x: xv, t: tv}, [], [step])
    saved = _values(dist, names)
    path = train.Saver().save(dist, str(tmp_path / "ckpt.npz"))
    dist.Run({x: xv, t: tv}, [], [step])
    train.Saver().restore(dist, path)
    for name in names:
        np.testing.assert_array_equal(_values(dist, names)[name], saved[name])
    # the restored values are what the replicas run with next
    replicas = dist.replica_variables()
    for values in replicas.values():
        np.testing.assert_array_equal(values["w1"], saved["w1"])


def test_update_from_a_combinable_value(dask_client):
    """A moving-average style update: Assign / AssignAdd of a batch statistic that combines
    (a mean and a sum over the batch) runs once on the holder with the combined value."""
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_DOUBLE, shape=[-1, 3])
    avg = train.Variable(root.WithOpName("avg"), np.zeros(3))
    total = train.Variable(root.WithOpName("total"), np.zeros(3))
    set_avg = ops.Assign(root, avg.output, ops.Mean(root, x, [0]))
    add_total = ops.AssignAdd(root, total.output, ops.Sum(root, x, [0]))
    dist = DistributedSession(root, dask_client, min_shard_size=1)
    dist.Run({}, [], [train.global_variables_initializer(root)])
    value = np.arange(24.0).reshape(8, 3)
    for _ in range(2):
        dist.Run({x: value}, [], [set_avg.operation, add_total.operation])
    assert dist.last_run_shards == 2
    np.testing.assert_array_equal(_values(dist, ["avg"])["avg"], value.mean(axis=0))
    np.testing.assert_array_equal(_values(dist, ["total"])["total"], 2 * value.sum(axis=0))
