"""The graph travels to workers as a GraphSpec (a Graph does not pickle) and is rebuilt
there through the op registry: the rebuilt graph must be the same graph."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import ops
from opgraph import DT_DOUBLE, DT_FLOAT, DT_INT32, Scope, errors, train
from runtime import ClientSession
from runtime.distributed import GraphSpec, rebuild_graph, serialise_graph


def _training_graph():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[-1, 4, 4, 2])
    labels = ops.Placeholder(root.WithOpName("labels"), DT_INT32, shape=[-1])
    f = train.Variable(root.WithOpName("f"), np.full((3, 3, 2, 1), 0.1, np.float32))
    conv = ops.DepthwiseConv2dNative(root, x, f.output, [1, 1, 1, 1], "SAME")
    pooled = ops.MaxPool(root, ops.Relu(root, conv), [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
    flat = ops.Reshape(root, pooled, [-1, 8])
    w = train.Variable(root.WithOpName("w"), np.full((8, 5), 0.01, np.float32))
    logits = ops.MatMul(root, flat, w.output)
    xent = ops.SparseSoftmaxCrossEntropyWithLogits(root, logits, labels)
    loss = ops.Mean(root, xent.loss, [0])
    both = ops.AddN(root, [loss, loss])
    with_dev = ops.Identity(root.WithDevice("/device:CPU:0").WithOpName("pinned"), both)
    step = train.Adam(0.01).minimize(root, loss)
    return root, with_dev, step


def test_graph_does_not_pickle_but_its_spec_does():
    root, _, _ = _training_graph()
    with pytest.raises(TypeError):
        pickle.dumps(root.graph())
    spec = serialise_graph(root.graph(), "k", ("ops",))
    back = pickle.loads(pickle.dumps(spec))
    assert isinstance(back, GraphSpec) and back.key == "k"
    assert len(back.records) == len(spec.records) == root.graph().num_ops()
    assert rebuild_graph(back).graph().format() == root.graph().format()


def test_rebuilt_graph_is_the_same_graph():
    root, _, _ = _training_graph()
    spec = pickle.loads(pickle.dumps(serialise_graph(root.graph())))
    rebuilt = rebuild_graph(spec).graph()
    assert rebuilt.format() == root.graph().format()
    assert [op.id for op in rebuilt.operations()] == [op.id for op in root.graph().operations()]
    for a, b in zip(rebuilt.operations(), root.graph().operations()):
        assert a.device == b.device and a.site == b.site
        assert [c.name for c in a.control_inputs] == [c.name for c in b.control_inputs]
        assert a.output_shapes == b.output_shapes
    rebuilt.lint()


def test_rebuilt_graph_computes_the_same_values():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_DOUBLE, shape=[-1, 3])
    y = ops.ConcatV2(root, [ops.Exp(root, x), ops.Square(root, x)], 1)
    z = ops.Sum(root, y, [1])
    value = np.arange(6.0).reshape(2, 3)
    rebuilt = rebuild_graph(serialise_graph(root.graph()))
    ours = ClientSession(rebuilt).Run({"x:0": value}, [z.output.name])
    np.testing.assert_array_equal(ours[0], ClientSession(root).Run({x: value}, z))


def test_unregistered_op_names_worker_imports():
    root = Scope.NewRootScope()
    ops.Const(root, 1.0)
    spec = serialise_graph(root.graph(), "k", ())
    records = ((spec.records[0][0], "NoSuchOpAnywhere", *spec.records[0][2:]),)
    with pytest.raises(errors.NotFoundError, match="worker_imports"):
        rebuild_graph(GraphSpec("k", (), records))
