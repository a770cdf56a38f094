"""runtime.NewSession / Create / Extend / Run / Close, as TF's C++ Session API."""

from __future__ import annotations

import os

import numpy as np
import pytest

import ops
from opgraph import DT_FLOAT, Scope, errors
from opgraph.graphdef import GraphDef, graph_to_graph_def
from runtime import RunMetadata, RunOptions
from runtime.graph_session import (
    NewSession, ReadBinaryProto, ReadTextProto, Session, SessionOptions,
)

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")


def _frozen_model(path) -> np.ndarray:
    """A small frozen model (weights in Consts) written to ``path``; returns its weights."""
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("input"), DT_FLOAT, shape=[None, 4])
    w = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    logits = ops.MatMul(root.WithOpName("logits"), x, w)
    ops.Softmax(root.WithOpName("softmax"), logits)
    graph_to_graph_def(root.graph()).write(path)
    return w


def test_label_image_style_load_graph_and_run(tmp_path):
    w = _frozen_model(tmp_path / "frozen.pb")
    graph_def = ReadBinaryProto(tmp_path / "frozen.pb")
    session = NewSession(SessionOptions())
    session.Create(graph_def)
    image = np.ones((2, 4), np.float32)
    (probs,) = session.Run([("input", image)], ["softmax:0"], [])
    logits = image @ w
    want = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(probs, want, rtol=1e-6)
    assert session.Run({"input:0": image}, ["logits"], []) [0].shape == (2, 3)
    session.Close()
    with pytest.raises(errors.CancelledError, match="Session has been closed"):
        session.Run([("input", image)], ["softmax:0"], [])


def test_text_files_and_golden_tf_models(tmp_path):
    _frozen_model(tmp_path / "frozen.pbtxt")
    s = NewSession()
    s.Create(ReadTextProto(tmp_path / "frozen.pbtxt"))
    assert s.Run([("input", np.zeros((1, 4), np.float32))], ["softmax:0"])[0].shape == (1, 3)
    data = np.load(os.path.join(GOLDEN, "conv_decoder.npz"))
    with NewSession() as s:
        s.Create(os.path.join(GOLDEN, "conv_decoder.pb"))
        (image,) = s.Run([("z:0", data["in/z__0"])], ["image:0"], [])
    np.testing.assert_allclose(image, data["out/image__0"], atol=1e-5)


def test_example_trainer_style_extend_and_variables():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[2])
    ops.Square(root.WithOpName("y"), x)
    s = NewSession()
    s.Create(graph_to_graph_def(root.graph()))
    with pytest.raises(errors.AlreadyExistsError, match="already been created"):
        s.Create(graph_to_graph_def(root.graph()))
    more = GraphDef.from_text('node { name: "z" op: "AddV2" input: "y" input: "y" '
                              'attr { key: "T" value { type: DT_FLOAT } } }')
    s.Extend(more)
    out = s.Run([("x", np.array([1.0, 3.0], np.float32))], ["y:0", "z:0"], [])
    assert [o.tolist() for o in out] == [[1.0, 9.0], [2.0, 18.0]]
    before = s.graph_def
    with pytest.raises(errors.NotFoundError, match="NoSuchOp"):
        s.Extend(GraphDef.from_text('node { name: "bad" op: "NoSuchOp" }'))
    assert s.graph_def is before                           # a failed Extend changes nothing
    assert s.Run([("x", np.ones(2, np.float32))], ["z:0"])[0].tolist() == [2.0, 2.0]


def test_variables_survive_extend():
    root = Scope.NewRootScope()
    v = ops.VariableV2(root.WithOpName("v"), [2], DT_FLOAT)
    ops.Assign(root.WithOpName("init"), v, np.array([1.0, 2.0], np.float32))
    s = NewSession()
    s.Create(graph_to_graph_def(root.graph()))
    s.Run([], [], ["init"])
    s.Extend(GraphDef.from_text('node { name: "read" op: "Identity" input: "v" '
                                'attr { key: "T" value { type: DT_FLOAT } } }'))
    assert s.Run([], ["read:0"])[0].tolist() == [1.0, 2.0]


def test_errors_are_clear():
    s = NewSession()
    with pytest.raises(errors.FailedPreconditionError, match="not created with a graph"):
        s.Run([], ["y:0"], [])
    with pytest.raises(errors.UnimplementedError, match="in-process"):
        NewSession(SessionOptions(target="grpc://x"))
    with pytest.raises(errors.InvalidArgumentError, match="GraphDef"):
        s.Create(42)
    bad = os.path.join(GOLDEN, "bad_v2.pbtxt")
    with pytest.raises(errors.InvalidArgumentError, match=r"(?s)1 error\(s\).*out_backprop"):
        NewSession().Create(bad)
    root = Scope.NewRootScope()
    ops.Placeholder(root.WithOpName("x"), DT_FLOAT)
    s.Create(graph_to_graph_def(root.graph()))
    with pytest.raises(errors.InvalidArgumentError, match="at least one target"):
        s.Run([], [], [])
    with pytest.raises(errors.InvalidArgumentError, match="must be a node name"):
        s.Run([], [], ["x:0"])
    with pytest.raises(errors.NotFoundError, match="nope"):
        s.Run([], ["nope:0"], [])


@pytest.mark.parametrize("data", [b"", b"\x0a\x7f", b"\x0a\xff\xff\xff\xff\xff\xff\xff\x7f",
                                  b"node { name: ", os.urandom(64)])
def test_hostile_or_truncated_files(tmp_path, data):
    path = tmp_path / "model.pb"
    path.write_bytes(data)
    s = NewSession()
    try:
        s.Create(ReadBinaryProto(path))
    except errors.OpError as e:
        assert str(e)
    else:
        assert data == b"" or s.graph_def is not None


def test_huge_splat_constant_is_refused_before_allocating(tmp_path):
    text = ('node { name: "big" op: "Const" attr { key: "dtype" value { type: DT_FLOAT } } '
            'attr { key: "value" value { tensor { dtype: DT_FLOAT tensor_shape { '
            'dim { size: 1000000000 } dim { size: 1000000000 } } float_val: 1.0 } } } }')
    with pytest.raises(errors.ResourceExhaustedError, match="OOM when allocating"):
        NewSession().Create(GraphDef.from_text(text))


def test_run_metadata_traces():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[3])
    ops.Exp(root.WithOpName("e"), x)
    s = Session()
    s.Create(graph_to_graph_def(root.graph()))
    md = RunMetadata()
    s.Run(RunOptions(RunOptions.FULL_TRACE), [("x", np.zeros(3, np.float32))], ["e:0"], [], md)
    assert [n.node_name for n in md.step_stats.node_stats] == ["e"]
    assert "nodes" in repr(s)
