"""Graph / Operation / Output: networkx edges, Add(x, x), format, lint."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

import ops
from opgraph import DT_FLOAT, DT_INT32, Graph, OpDef, Operation, Output, Scope, errors
from opgraph.registry import get_op_def


def _simple():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[1, 8, 8, 3])
    w = ops.Const(root.WithOpName("w"), np.ones((3, 3, 3, 4), np.float32))
    y = ops.Conv2D(root.WithOpName("y"), x, w, [1, 2, 2, 1], "SAME")
    return root, x, w, y


def test_output_and_operation_accessors():
    root, x, w, y = _simple()
    out = y.output
    assert isinstance(out, Output) and isinstance(y.operation, Operation)
    assert out.op is y.operation and out.index == 0 and out.name == "y:0"
    assert out.dtype is DT_FLOAT and out.shape.as_list() == [1, 4, 4, 4]
    assert out.graph is root.graph() and out.node() is y.operation
    op = y.operation
    assert (op.name, op.type) == ("y", "Conv2D")
    assert op.inputs == (x.output, w.output) and op.num_inputs == 2
    assert op.input(1) == w.output
    assert op.outputs == (out,) and op.num_outputs == 1 and op.output(0) == out
    assert op.attrs["strides"] == (1, 2, 2, 1) and op.attrs["T"] is DT_FLOAT
    assert op.device == "" and op.control_inputs == () and op.site
    assert op.op_def is get_op_def("Conv2D")
    assert not op.failed and op.id == 2
    with pytest.raises(errors.OutOfRangeError, match=r"does not have output 1"):
        op.output(1)
    with pytest.raises(IndexError):
        op.output(-1)
    assert repr(out) == "<Output 'y:0' dtype=float32 shape=[1, 4, 4, 4]>"
    assert repr(op) == "<Operation 'y' type=Conv2D>"


def test_output_equality_and_hash():
    _, x, _, y = _simple()
    assert Output(y.operation, 0) == y.output
    assert hash(Output(y.operation, 0)) == hash(y.output)
    assert Output(y.operation, 0) != Output(x.operation, 0)
    assert len({y.output, Output(y.operation, 0), x.output}) == 2


def test_graph_lookup_and_order():
    root, x, w, y = _simple()
    g = root.graph()
    assert isinstance(g, Graph)
    assert g.num_ops() == 3
    assert g.operations() == [x.operation, w.operation, y.operation]
    assert g.get_operation("w") is w.operation and g.has_name("y") and not g.has_name("z")
    with pytest.raises(errors.NotFoundError, match="Node 'z' not found"):
        g.get_operation("z")
    with pytest.raises(LookupError):
        g.get_operation("z")


def test_networkx_edges_carry_output_and_input_indices():
    root, x, w, y = _simple()
    g = root.graph().to_networkx()
    assert isinstance(g, nx.MultiDiGraph)
    assert set(g.nodes) == {"x", "w", "y"}
    assert g.nodes["y"]["op"] is y.operation
    edges = sorted((u, v, d["src_output"], d["dst_input"]) for u, v, d in g.edges(data=True))
    assert edges == [("w", "y", 0, 1), ("x", "y", 0, 0)]
    g.remove_node("y")                      # a copy: the graph itself is unchanged
    assert root.graph().num_ops() == 3


def test_same_output_feeding_two_inputs():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[2, 3])
    add = ops.AddV2(root.WithOpName("add"), x, x)
    assert root.ok() and add.output.shape.as_list() == [2, 3]
    assert add.operation.inputs == (x.output, x.output)
    g = root.graph().to_networkx()
    parallel = sorted((d["src_output"], d["dst_input"]) for _, _, d in
                      g.edges("x", data=True))
    assert parallel == [(0, 0), (0, 1)]
    assert g.number_of_edges("x", "add") == 2
    assert root.graph().consumers(x.operation) == [(add.operation, 0, 0),
                                                   (add.operation, 0, 1)]
    root.graph().lint()


def test_control_edges_are_marked():
    root = Scope.NewRootScope()
    a = ops.Placeholder(root.WithOpName("a"), DT_FLOAT)
    b = ops.Identity(root.WithOpName("b").WithControlDependencies([a]), a)
    g = root.graph().to_networkx()
    kinds = sorted((d.get("control", False), d.get("src_output")) for _, _, d in
                   g.edges("a", data=True))
    assert kinds == [(False, 0), (True, None)]
    # consumers() lists data edges only
    assert root.graph().consumers(a.operation) == [(b.operation, 0, 0)]


def test_format_one_line_per_op():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[1, 8, 8, 3])
    w = ops.Placeholder(root.WithOpName("w"), DT_FLOAT, shape=[3, 3, 3, 16])
    dy = ops.Placeholder(root.WithOpName("dy"), DT_FLOAT, shape=[1, 4, 4, 16])
    ops.Conv2DBackpropInputV2(root.WithOpName("dx"), x, w, dy, [1, 2, 2, 1], "SAME")
    ops.Const(root.WithOpName("c"), [1, 2])
    lines = root.graph().format().splitlines()
    assert lines[0] == "%x : float32[1,8,8,3] = Placeholder[dtype=DT_FLOAT, shape=[1,8,8,3]]()"
    assert lines[3] == (
        '%dx : float32[1,8,8,3] = Conv2DBackpropInputV2[T=DT_FLOAT, strides=[1, 2, 2, 1], '
        'use_cudnn_on_gpu=true, padding="SAME", explicit_paddings=[], data_format="NHWC", '
        'dilations=[1, 1, 1, 1]](%x, %w, %dy)')
    assert lines[4] == "%c : int32[2] = Const[dtype=DT_INT32]()"
    assert len(lines) == 5


def test_describe_is_tf_style_with_sorted_attrs():
    _, _, _, y = _simple()
    d = y.operation.describe()
    assert d.startswith("{{node y}} = Conv2D[T=DT_FLOAT, data_format=\"NHWC\", dilations=")
    assert d.endswith("](x, w)")


# ---------------------------------------------------------------- lint
def _op(graph, name, op_type="Identity", inputs=(), control=()):
    op_def = get_op_def(op_type) if isinstance(op_type, str) else op_type
    return Operation(name, op_def, tuple(inputs), {"T": DT_FLOAT}, (DT_FLOAT,),
                     (None,), graph=graph, control_inputs=tuple(control))


def test_lint_accepts_built_graphs():
    root, *_ = _simple()
    root.graph().lint()
    Graph().lint()


def test_lint_detects_consumer_created_before_producer():
    g = Graph()
    a = _op(g, "a", "Placeholder")
    b = _op(g, "b", inputs=[Output(a)])
    g.add_operation(b)          # b consumes a, which is added later
    g.add_operation(a)
    with pytest.raises(errors.InternalError, match="Node 'b' consumes 'a' created after it"):
        g.lint()


def test_lint_detects_cycles():
    g = Graph()
    a = _op(g, "a")
    b = _op(g, "b", inputs=[Output(a)])
    a.inputs = (Output(b),)
    g.add_operation(a)
    g.add_operation(b)
    with pytest.raises(errors.InternalError, match="Graph has a cycle"):
        g.lint()


def test_lint_detects_dangling_inputs():
    g, other = Graph(), Graph()
    foreign = _op(other, "p", "Placeholder")
    other.add_operation(foreign)
    g.add_operation(_op(g, "c", control=[foreign]))
    with pytest.raises(errors.InternalError, match="Node 'c' input 0 refers to 'p', not in this"):
        g.lint()


def test_lint_detects_unregistered_op_types():
    g = Graph()
    rogue = OpDef("NotRegisteredAnywhere", outputs=["y: float"], shape_fn=lambda c: [None])
    g.add_operation(_op(g, "r", rogue))
    with pytest.raises(errors.InternalError, match="Op type not registered "
                                                   "'NotRegisteredAnywhere'"):
        g.lint()


def test_duplicate_names_rejected_by_graph():
    g = Graph()
    g.add_operation(_op(g, "a", "Placeholder"))
    with pytest.raises(errors.AlreadyExistsError, match="Duplicate node name in graph: 'a'"):
        g.add_operation(_op(g, "a", "Placeholder"))


def test_version_bumps_on_every_add():
    root = Scope.NewRootScope()
    v0 = root.graph().version
    ops.Const(root, 1)
    ops.Placeholder(root, DT_INT32)
    assert root.graph().version == v0 + 2


def test_dropped_graph_is_freed_without_the_cycle_collector():
    import gc
    import weakref

    import ops
    from opgraph import DT_FLOAT, Scope

    gc.disable()
    try:
        root = Scope.NewRootScope()
        x = ops.Placeholder(root, DT_FLOAT)
        ops.Identity(root, ops.Identity(root, x))
        graph_ref = weakref.ref(root.graph())
        del root
        assert graph_ref() is None            # freed by reference counting alone
        assert x.operation.graph is None      # a surviving op no longer pins its graph
    finally:
        gc.enable()
