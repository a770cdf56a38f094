"""The GraphDef text writer, kept for imports of its old names.

``Scope.ToGraphDef()`` returns an ``opgraph.graphdef.GraphDef`` whose ``to_text()`` is
protobuf's exact text format (opgraph.pbtxt: every string C-escaped, so no value can break
the structure of the text); this module forwards to it.
"""

from __future__ import annotations

from opgraph.pbtxt import c_escape

__all__ = ["to_graph_def_text", "c_escape"]


def to_graph_def_text(graph) -> str:
    """``graph`` in TF's GraphDef text format (``graph_to_graph_def(graph).to_text()``)."""
    from opgraph.graphdef import graph_to_graph_def  # noqa: PLC0415

    return graph_to_graph_def(graph).to_text()
