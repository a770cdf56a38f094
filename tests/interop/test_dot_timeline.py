"""Pictures (DOT / Graphviz) and timelines (Chrome trace)."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest

import ops
from opgraph import DT_FLOAT, Scope, errors
from opgraph.dot import dot_quote, render, to_dot
from opgraph.graphdef import read_graph_def
from opgraph.importer import ImportGraphDef
from runtime import ClientSession, RunMetadata, RunOptions
from runtime.timeline import Timeline, write_chrome_trace

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")


def _graph():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[None, 4])
    tower = root.NewSubScope("tower")
    y = ops.Relu(tower.WithOpName("relu"), x)
    s = ops.Split(root.WithOpName("split"), 1, y, num_split=2)
    ops.AddV2(root.WithOpName("sum").WithControlDependencies([x]), s[0], s[1])
    ops.MatMul(root.WithOpName("broken"), x, np.ones((3, 2), np.float32))   # 4 vs 3
    return root


def _edges(text: str) -> list[str]:
    return re.findall(r"^\s*(n\d+ -> n\d+.*)$", text, re.M)


def test_boxes_edges_clusters_and_failed_ops():
    text = to_dot(_graph())
    assert text.startswith("digraph opgraph {") and text.rstrip().endswith("}")
    assert 'label="x\\nPlaceholder"' in text
    assert "subgraph cluster_1 {" in text and 'label="tower"' in text
    edges = _edges(text)
    assert any('label="float32[?,4]"' in e for e in edges)
    assert any('label=":1 float32[?,2]"' in e for e in edges)       # split:1
    assert any("style=dashed" in e for e in edges)                   # the control edge
    failed = next(line for line in text.splitlines() if "broken" in line)
    assert "#ffe0e0" in failed and "MatMul" in failed


def test_names_survive_quoting():
    assert dot_quote('x:0 "q" \\ {a|b} <c>\nz') == '"x:0 \\"q\\" \\\\ {a|b} <c>\\nz"'
    root = Scope.NewRootScope()
    ops.Placeholder(root.WithOpName("a.b-c/x_0"), DT_FLOAT)
    text = to_dot(root)
    assert 'label="a.b-c"' in text                  # its sub-scope is a cluster
    assert 'label="a.b-c/x_0\\nPlaceholder"' in text


def test_imported_graph_draws_skipped_nodes_with_their_edges():
    gd = read_graph_def(os.path.join(GOLDEN, "bad_v2.pbtxt"))
    root = Scope.NewRootScope()
    ImportGraphDef(root, gd)
    text = to_dot(root, graph_def=gd)
    assert "Size of out_backprop" in text and text.count("#cc0000") >= 4


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_render_with_graphviz(tmp_path, fmt):
    path = render(to_dot(_graph()), str(tmp_path / f"g.{fmt}"))
    data = open(path, "rb").read()
    assert data.startswith(b"\x89PNG") if fmt == "png" else b"<svg" in data


def test_render_without_graphviz_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(errors.UnavailableError, match="Graphviz"):
        render("digraph {}", str(tmp_path / "g.svg"))
    assert render("digraph {}", str(tmp_path / "g.dot")).endswith("g.dot")


def test_chrome_trace_of_a_traced_run(tmp_path):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[2, 3])
    y = ops.Exp(root.WithOpName("exp"), x)
    z = ops.Sum(root.WithOpName("sum"), y, ops.Const(root, [0, 1]))
    md = RunMetadata()
    ClientSession(root).Run(RunOptions(RunOptions.FULL_TRACE), {x: np.ones((2, 3),
                                                                          np.float32)},
                            [z], [], md)
    path = write_chrome_trace(md, tmp_path / "trace.json", root.graph())
    trace = json.load(open(path))
    events = trace["traceEvents"]
    meta = [e for e in events if e["ph"] == "M" and e["name"] == "process_name"]
    assert meta and meta[0]["args"]["name"].endswith("Compute")
    ops_ = [e for e in events if e["ph"] == "X"]
    assert [e["args"]["name"] for e in ops_] == ["exp", "sum"]
    exp = ops_[0]
    assert exp["name"] == "Exp" and isinstance(exp["pid"], int) and exp["dur"] > 0
    assert exp["args"]["inputs"] == ["x:0"] and exp["args"]["output0"] == "float32 [2, 3]"
    assert ops_[0]["ts"] == 0 and ops_[1]["ts"] >= ops_[0]["ts"]
    assert json.loads(Timeline(md.step_stats).generate_chrome_trace_format()) == \
        {"traceEvents": [{k: v for k, v in e.items()} if e["ph"] == "M" else
                         {**e, "args": {k: v for k, v in e["args"].items()
                                        if k != "inputs"}} for e in events],
         "displayTimeUnit": "ms"}
    with pytest.raises(TypeError):
        Timeline(42)
