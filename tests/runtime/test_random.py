"""Random ops: seeding semantics (TF's seed/seed2), distributions, shuffling."""

from __future__ import annotations

import numpy as np
import pytest

import ops
from opgraph import DT_DOUBLE, DT_FLOAT, DT_INT64, Scope
from runtime import ClientSession


def _graph(op, *args, **attrs):
    root = Scope.NewRootScope()
    return root, op(root, *args, **attrs)


@pytest.mark.parametrize("op", [ops.RandomUniform, ops.RandomStandardNormal,
                                ops.TruncatedNormal])
def test_seeded_graphs_repeat_in_new_sessions_and_advance_within_one(op):
    root, r = _graph(op, np.array([50], np.int32), DT_DOUBLE, seed=3, seed2=9)
    a = ClientSession(root)
    b = ClientSession(root)
    first_a, second_a = a.Run(r), a.Run(r)
    np.testing.assert_array_equal(first_a, b.Run(r))
    assert not np.array_equal(first_a, second_a)


def test_unseeded_sessions_differ():
    root, r = _graph(ops.RandomUniform, np.array([64], np.int32), DT_DOUBLE)
    assert not np.array_equal(ClientSession(root).Run(r), ClientSession(root).Run(r))


def test_distributions():
    n = 20000
    root = Scope.NewRootScope()
    u = ops.RandomUniform(root, np.array([n], np.int32), DT_DOUBLE, seed=1)
    z = ops.RandomStandardNormal(root, np.array([n], np.int32), DT_DOUBLE, seed=2)
    t = ops.TruncatedNormal(root, np.array([n], np.int32), DT_FLOAT, seed=3)
    i = ops.RandomUniformInt(root, np.array([n], np.int32), np.int64(-3), np.int64(4), seed=4)
    uv, zv, tv, iv = ClientSession(root).Run([u, z, t, i])
    assert 0 <= uv.min() and uv.max() < 1 and abs(uv.mean() - 0.5) < 0.02
    assert abs(zv.mean()) < 0.03 and abs(zv.std() - 1) < 0.03
    assert tv.dtype == np.float32 and np.abs(tv).max() <= 2 and abs(tv.std() - 0.88) < 0.03
    assert iv.dtype == np.int64 and set(np.unique(iv)) == set(range(-3, 4))
    assert i.output.dtype is DT_INT64


def test_shuffle_is_a_permutation_of_rows():
    root = Scope.NewRootScope()
    x = np.arange(20).reshape(10, 2)
    s = ops.RandomShuffle(root, x, seed=5)
    out = ClientSession(root).Run(s)
    assert sorted(map(tuple, out)) == sorted(map(tuple, x))
    assert not np.array_equal(out, x)


def test_random_values_are_not_constant_folded():
    root, r = _graph(ops.RandomUniform, np.array([8], np.int32), DT_FLOAT, seed=1)
    sess = ClientSession(root)
    assert not np.array_equal(sess.Run(r), sess.Run(r))
