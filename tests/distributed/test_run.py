"""Batch-sharded Run on an in-process dask cluster (2 workers, 1 thread each): results equal
a local ClientSession's, bitwise in float64 where each output row is computed from its own
input row (the sharded graph computes exactly the same numbers), within float32 tolerance
where a combine step adds partial results in another order."""

from __future__ import annotations

import numpy as np
import pytest

import ops
from opgraph import DT_DOUBLE, DT_FLOAT, DT_INT32, Scope, errors
from runtime import ClientSession, RunMetadata, RunOptions
from runtime.distributed import DistributedSession

pytest.importorskip("distributed")

rng = np.random.default_rng(7)


@pytest.fixture
def conv_graph():
    """The seed op on a batch: Conv2DBackpropInputV2, then a few per-example ops."""
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_DOUBLE, shape=[-1, 6, 6, 3])
    dy = ops.Placeholder(root.WithOpName("dy"), DT_DOUBLE, shape=[-1, 3, 3, 4])
    f = rng.normal(size=(3, 3, 3, 4))
    dx = ops.Conv2DBackpropInputV2(root.WithOpName("dx"), x, f, dy, [1, 2, 2, 1], "SAME")
    act = ops.Relu(root, ops.BiasAdd(root, dx, rng.normal(size=3)))
    pooled = ops.MaxPool(root, act, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
    flat = ops.Reshape(root, pooled, [-1, 27])
    logits = ops.MatMul(root, flat, rng.normal(size=(27, 5)))
    probs = ops.Softmax(root, logits)
    feeds = {x: rng.normal(size=(7, 6, 6, 3)), dy: rng.normal(size=(7, 3, 3, 4))}
    return root, feeds, [dx, act, pooled, probs]


def test_sharded_results_are_bitwise_those_of_one_session(dask_client, conv_graph):
    root, feeds, fetches = conv_graph
    sess = DistributedSession(root, dask_client, min_shard_size=1)
    ours = sess.Run(feeds, fetches)
    assert sess.last_run_shards == 2
    want = ClientSession(root).Run(feeds, fetches)
    for a, b in zip(ours, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_run_forms(dask_client, conv_graph):
    root, feeds, fetches = conv_graph
    sess = DistributedSession(root, dask_client, min_shard_size=1)
    local = ClientSession(root)
    single = sess.Run(feeds, fetches[0])
    assert isinstance(single, np.ndarray)
    np.testing.assert_array_equal(single, local.Run(feeds, fetches[0]))
    pairs = list(feeds.items())
    np.testing.assert_array_equal(sess.Run(pairs, [fetches[3]], [])[0],
                                  local.Run(feeds, fetches[3]))
    by_name = sess.Run({"x:0": feeds[pairs[0][0]], "dy": pairs[1][1]}, ["dx:0"])
    np.testing.assert_array_equal(by_name[0], local.Run(feeds, fetches[0]))
    metadata = RunMetadata()
    traced = sess.Run(RunOptions(RunOptions.FULL_TRACE), feeds, [fetches[1]], [], metadata)
    np.testing.assert_array_equal(traced[0], local.Run(feeds, fetches[1]))
    devices = {s.device for s in metadata.step_stats.node_stats}
    assert any(d.startswith("shard:0") for d in devices)
    assert any(d.startswith("shard:1") for d in devices)
    assert sess.Run(feeds=feeds, fetches=[], targets=[fetches[0].operation]) is None


def test_shard_count_follows_workers_and_min_shard_size(dask_client, conv_graph):
    root, feeds, fetches = conv_graph
    sess = DistributedSession(root, dask_client, min_shard_size=4)
    sess.Run(feeds, fetches[0])
    assert sess.last_run_shards == 1        # 7 rows, at least 4 per shard: one shard
    assert sess.num_shards(8) == 2 and sess.num_shards(1000) == 2 and sess.num_shards(0) == 1
    capped = DistributedSession(root, dask_client, min_shard_size=1, max_shards=1)
    assert capped.num_shards(100) == 1


def test_combined_fetches(dask_client):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[-1, 5])
    fetches = [ops.Sum(root, x, [0]), ops.Mean(root, x, [0, 1]), ops.Max(root, x, [0]),
               ops.Min(root, x, [0, 1]), ops.MatMul(root, x, x, transpose_a=True),
               ops.Shape(root, x), ops.Size(root, x), ops.Exp(root, np.float32(1)),
               ops.Mul(root, ops.Mean(root, x, [0]), np.float32(3))]
    value = rng.normal(size=(9, 5)).astype(np.float32)
    sess = DistributedSession(root, dask_client, min_shard_size=1)
    ours = sess.Run({x: value}, fetches)
    want = ClientSession(root).Run({x: value}, fetches)
    for a, b in zip(ours, want):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=2e-6)


def test_combined_fetches_are_bitwise_where_summation_is_exact(dask_client):
    """Dyadic values with few significant bits: every partial sum is exact, so the sum and
    the count-weighted mean of the shards equal one session's results bit for bit (the
    counts are powers of two, so the divisions are exact too)."""
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_DOUBLE, shape=[-1, 4])
    fetches = [ops.Sum(root, x, [0]), ops.Mean(root, x, [0]), ops.Mean(root, x, [0, 1]),
               ops.L2Loss(root, x)]
    value = rng.integers(-64, 64, size=(8, 4)) / 8.0
    sess = DistributedSession(root, dask_client, min_shard_size=1)
    for a, b in zip(sess.Run({x: value}, fetches), ClientSession(root).Run({x: value}, fetches)):
        np.testing.assert_array_equal(a, b)


def test_replicated_feeds_and_fetches(dask_client):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_DOUBLE, shape=[-1, 2])
    scale = ops.Placeholder(root.WithOpName("scale"), DT_DOUBLE, shape=[2])
    y = ops.Mul(root, x, scale)
    sess = DistributedSession(root, dask_client, min_shard_size=1)
    value, s = rng.normal(size=(5, 2)), np.array([2.0, -1.0])
    ours = sess.Run({x: value, scale: s}, [y, ops.Square(root, scale)])
    np.testing.assert_array_equal(ours[0], value * s)
    np.testing.assert_array_equal(ours[1], s * s)


def test_kernel_errors_on_a_shard_are_op_errors(dask_client):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_DOUBLE, shape=[-1, 4])
    idx = ops.Placeholder(root.WithOpName("idx"), DT_INT32, shape=[-1])
    gathered = ops.GatherV2(root.WithOpName("gather"), np.eye(3), idx, 0)
    sess = DistributedSession(root, dask_client, min_shard_size=1, batch_inputs=[x, idx])
    with pytest.raises(errors.InvalidArgumentError, match=r"gather.*on shard"):
        sess.Run({x: np.ones((4, 4)), idx: np.array([0, 1, 2, 9], np.int32)},
                 [ops.Relu(root, x), gathered])


def test_graph_growing_after_a_run_is_shipped_again(dask_client):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_DOUBLE, shape=[-1])
    sess = DistributedSession(root, dask_client, min_shard_size=1)
    value = np.arange(6.0)
    np.testing.assert_array_equal(sess.Run({x: value}, ops.Neg(root, x)), -value)
    later = ops.Square(root, x)
    np.testing.assert_array_equal(sess.Run({x: value}, later), value * value)


def test_large_shards_travel_by_scatter(dask_client):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[-1, 1024])
    value = rng.normal(size=(600, 1024)).astype(np.float32)     # 2.4 MB
    sess = DistributedSession(root, dask_client, min_shard_size=1)
    np.testing.assert_array_equal(sess.Run({x: value}, ops.Relu(root, x)), np.maximum(value, 0))
