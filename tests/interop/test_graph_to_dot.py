"""Graph.to_dot is the DOT writer's entry point on the graph itself."""

import numpy as np

import ops
from opgraph import DT_FLOAT, Scope


def test_graph_to_dot_has_scopes_as_clusters_shapes_on_edges_and_dashed_control_edges():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[2])
    y = ops.AddV2(root.NewSubScope("tower").WithOpName("y"), x, np.ones(2, np.float32))
    ops.NoOp(root.WithControlDependencies([y]).WithOpName("after"))
    dot = root.graph().to_dot()
    assert dot.startswith("digraph")
    assert 'label="tower/y\\nAddV2"' in dot and "cluster" in dot and "dashed" in dot
    assert "float32[2]" in dot
