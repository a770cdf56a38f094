"""Build-time values of the array ops (TF's ShapeRefiner evaluation): Shape of a partially
known tensor reaching Reshape, Fill and BroadcastTo without a Pack in between, the values of
Rank, Size and ShapeN, values passed through the reshaping ops, InvertPermutation's value,
and the Squeeze.Axis shortcut. Every static result is checked against a Run."""

from __future__ import annotations

import numpy as np
import pytest

import ops
from opgraph import Scope, TensorShape, as_dtype
from opgraph import dtypes as dt
from runtime import ClientSession

F32, I32, I64 = np.float32, np.int32, np.int64


def _placeholder(root, dtype, shape):
    return ops.Placeholder(root, as_dtype(dtype), shape=shape).output


def _value(t):
    """The build-time value of ``t`` (an op wrapper or Output): array, TensorShape or None."""
    out = getattr(t, "output", t)
    values = out.op.output_values
    return values[out.index] if values else None


def _run(root, fetches, feeds):
    assert root.ok(), root.status()
    return ClientSession(root).Run(feeds, fetches)


# ------------------------------------------------------- Shape values reaching Reshape & co.
def test_reshape_to_the_shape_of_a_partially_known_tensor():
    root = Scope.NewRootScope()
    images = _placeholder(root, F32, [None, 9, 9, 3])
    flat = _placeholder(root, F32, [4, 243])
    partial = _placeholder(root, F32, [None, 243])
    shape = ops.Shape(root, images)
    assert _value(shape) == TensorShape([None, 9, 9, 3])
    known = ops.Reshape(root, flat, shape)
    unknown = ops.Reshape(root, partial, shape)
    assert known.output.shape.as_list() == [4, 9, 9, 3]        # the ? resolved by the count
    assert unknown.output.shape.as_list() == [None, 9, 9, 3]
    feeds = {images: np.zeros((4, 9, 9, 3), F32), flat: np.ones((4, 243), F32),
             partial: np.ones((4, 243), F32)}
    a, b = _run(root, [known.output, unknown.output], feeds)
    assert a.shape == b.shape == (4, 9, 9, 3)


def test_shape_values_through_identity_gather_and_expand_dims():
    root = Scope.NewRootScope()
    x = _placeholder(root, F32, [None, 5, 7])
    shape = ops.Identity(root, ops.Shape(root, x))
    assert _value(shape) == TensorShape([None, 5, 7])
    tail = ops.GatherV2(root, shape, np.array([2, 1], I32), 0)      # [7, 5]: fully known
    np.testing.assert_array_equal(_value(tail), [7, 5])
    y = _placeholder(root, F32, [None])
    r = ops.Reshape(root, y, tail)
    assert r.output.shape.as_list() == [7, 5]
    head = ops.GatherV2(root, shape, np.array([1, 0], I32), 0)      # [5, ?]
    assert _value(head) == TensorShape([5, None])
    w = _placeholder(root, F32, [10, 7])
    z = ops.Reshape(root, w, head)
    assert z.output.shape.as_list() == [5, 14]                      # 70 / 5
    dim = ops.GatherV2(root, shape, np.array(2, I32), 0)            # a scalar 7
    np.testing.assert_array_equal(_value(dim), 7)
    vec = ops.ExpandDims(root, dim, 0)
    np.testing.assert_array_equal(_value(vec), [7])
    got = _run(root, [r.output, z.output], {x: np.zeros((14, 5, 7), F32),
                                              y: np.arange(35, dtype=F32),
                                              w: np.zeros((10, 7), F32)})
    assert got[0].shape == (7, 5) and got[1].shape == (5, 14)


def test_fill_and_broadcast_to_take_partial_shape_values():
    root = Scope.NewRootScope()
    x = _placeholder(root, F32, [None, 4])
    filled = ops.Fill(root, ops.Shape(root, x), np.float32(2))
    assert filled.output.shape.as_list() == [None, 4]
    b = ops.BroadcastTo(root, _placeholder(root, F32, [3, 1]), ops.Shape(root,
                        _placeholder(root, F32, [None, 3, 5])))
    assert b.output.shape.as_list() == [None, 3, 5]
    known = ops.Fill(root, ops.Shape(root, _placeholder(root, F32, [2, 3])), np.int32(7))
    np.testing.assert_array_equal(_value(known), np.full((2, 3), 7, I32))   # folded
    got = _run(root, [filled.output], {x: np.zeros((3, 4), F32)})[0]
    np.testing.assert_array_equal(got, np.full((3, 4), 2, F32))


# ------------------------------------------------------------------- Rank / Size / ShapeN
def test_rank_size_and_shape_n_values():
    root = Scope.NewRootScope()
    partial = _placeholder(root, F32, [None, 3])
    known = _placeholder(root, F32, [2, 3, 4])
    unknown = _placeholder(root, F32, None)
    np.testing.assert_array_equal(_value(ops.Rank(root, partial)), 2)
    assert _value(ops.Rank(root, partial)).dtype == I32
    assert _value(ops.Rank(root, unknown)) is None
    np.testing.assert_array_equal(_value(ops.Size(root, known)), 24)
    size64 = ops.Size(root, known, out_type=dt.DT_INT64)
    assert _value(size64).dtype == I64
    assert _value(ops.Size(root, partial)) is None
    shapes = ops.ShapeN(root, [partial, known, unknown], out_type=dt.DT_INT64)
    values = shapes.operation.output_values
    assert values[0] == TensorShape([None, 3])
    np.testing.assert_array_equal(values[1], [2, 3, 4])
    assert values[1].dtype == I64
    assert values[2] is None
    assert [o.shape.as_list() for o in shapes] == [[2], [3], [None]]
    feeds = {partial: np.zeros((5, 3), F32), known: np.zeros((2, 3, 4), F32),
             unknown: np.zeros((1, 2), F32)}
    got = _run(root, list(shapes), feeds)
    assert [g.tolist() for g in got] == [[5, 3], [2, 3, 4], [1, 2]]


# -------------------------------------------------------- values through the reshaping ops
def test_reshape_transpose_squeeze_values_of_constants():
    root = Scope.NewRootScope()
    c = ops.Const(root, np.arange(6, dtype=I32).reshape(2, 3))
    r = ops.Reshape(root, c, np.array([3, 2], I32))
    np.testing.assert_array_equal(_value(r), np.arange(6).reshape(3, 2))
    t = ops.Transpose(root, c, np.array([1, 0], I32))
    np.testing.assert_array_equal(_value(t), np.arange(6).reshape(2, 3).T)
    e = ops.ExpandDims(root, c, -1)
    assert _value(e).shape == (2, 3, 1)
    s = ops.Squeeze(root, e)
    np.testing.assert_array_equal(_value(s), np.arange(6).reshape(2, 3))


@pytest.mark.parametrize("perm", [[2, 0, 1], [0], [], [3, 4, 0, 2, 1]])
def test_invert_permutation_value_is_known_at_build_time(perm):
    root = Scope.NewRootScope()
    for dtype in (I32, I64):
        inv = ops.InvertPermutation(root, np.array(perm, dtype))
        value = _value(inv)
        assert value.dtype == dtype
        assert [perm[i] for i in value] == list(range(len(perm)))
        assert inv.output.shape.as_list() == [len(perm)]


def test_invert_permutation_of_a_fed_value_is_checked_at_run_time():
    root = Scope.NewRootScope()
    p = _placeholder(root, I32, None)
    inv = ops.InvertPermutation(root, p)
    assert _value(inv) is None
    sess = ClientSession(root)
    np.testing.assert_array_equal(sess.Run({p: np.array([1, 2, 0], I32)}, [inv.output])[0],
                                  [2, 0, 1])
    with pytest.raises(Exception, match="is duplicated in the input"):
        sess.Run({p: np.array([1, 1], I32)}, [inv.output])


# ------------------------------------------------------------------------ Squeeze.Axis
def test_squeeze_axis_shortcut_sets_squeeze_dims():
    root = Scope.NewRootScope()
    x = _placeholder(root, F32, [1, None, 1, 3])
    a = ops.Squeeze(root, x, ops.Squeeze.Axis([0]))
    b = ops.Squeeze(root, x, ops.Squeeze.Attrs().Axis([-2]))
    c = ops.Squeeze(root, x, squeeze_dims=[0, 2])
    assert list(a.operation.attrs["squeeze_dims"]) == [0]
    assert list(b.operation.attrs["squeeze_dims"]) == [-2]
    assert a.output.shape.as_list() == [None, 1, 3]
    assert b.output.shape.as_list() == [1, None, 3]
    assert c.output.shape.as_list() == [None, 3]
    got = _run(root, [a.output, b.output, c.output], {x: np.zeros((1, 4, 1, 3), F32)})
    assert [g.shape for g in got] == [(4, 1, 3), (1, 4, 3), (4, 3)]
