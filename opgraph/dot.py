"""Pictures of a graph: Graphviz DOT text written directly, SVG/PNG through ``dot``.

    >>> text = to_dot(root)                  # a Scope: its graph and its failed ops
    >>> render(text, "graph.svg")            # needs Graphviz's `dot` on the PATH

One box per op (name and type), an edge per data input labelled with the tensor's dtype and
static shape (and ``:k`` for outputs other than 0), control edges dashed, each sub-scope a
cluster, ops that failed to build in red with their error message. Node names only ever
appear inside quoted, escaped labels (the DOT ids are ``n0``, ``n1``, ...), so any name --
``x:0``, quotes, backslashes, braces -- survives.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import textwrap

from opgraph import errors

__all__ = ["to_dot", "render", "dot_quote"]


def dot_quote(text: str) -> str:
    """``text`` as a DOT quoted string (backslashes, quotes and newlines escaped)."""
    body = str(text).replace("\\", "\\\\").replace('"', '\\"')
    body = body.replace("\r", "").replace("\n", "\\n")
    return f'"{body}"'


def _label(*lines: str) -> str:
    return dot_quote("\n".join(lines))


class _Cluster:
    __slots__ = ("name", "children", "nodes")

    def __init__(self, name: str):
        self.name = name
        self.children: dict[str, _Cluster] = {}
        self.nodes: list[str] = []


def to_dot(source, errors_=None, graph_def=None, title: str | None = None,
           show_shapes: bool = True) -> str:
    """DOT text for ``source`` (a Scope, whose failed ops are drawn too, or a Graph).

    ``errors_``: OpErrors to draw as failed nodes (default: the scope's status);
    ``graph_def``: the GraphDef the graph was imported from, so failed and skipped nodes
    get their input edges and op types.
    """
    from opgraph.scope import Scope  # noqa: PLC0415

    if isinstance(source, Scope):
        graph = source.graph()
        if errors_ is None:
            errors_ = source.status().errors
    else:
        graph = source
    errors_ = list(errors_ or ())
    ops = graph.operations()
    ids: dict[str, str] = {}
    lines = ["digraph opgraph {",
             '  graph [rankdir=TB, fontname="Helvetica", fontsize=11'
             + (f", label={dot_quote(title)}, labelloc=t" if title else "") + "];",
             '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", '
             'color="#4a6fa5", fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9, color="#555555"];']
    root = _Cluster("")
    decl: dict[str, str] = {}

    def place(name: str, node_line: str):
        parts = name.split("/")[:-1]
        cluster = root
        for p in parts:
            cluster = cluster.children.setdefault(p, _Cluster(p))
        cluster.nodes.append(node_line)

    failed = {}
    for e in errors_:
        name = getattr(e, "op_name", None) or f"<error {len(failed)}>"
        failed.setdefault(name, e)
    for op in ops:
        nid = f"n{len(ids)}"
        ids[op.name] = nid
        extra = [f"device: {op.device}"] if op.device else []
        if op.name in failed:           # built, then refused (e.g. its _output_shapes)
            place(op.name, _failed_line(nid, op.name, op.type, failed[op.name]))
        else:
            place(op.name, f"{nid} [label={_label(op.name, op.type, *extra)}];")
        decl[op.name] = nid
    nodes_by_name = {n.name: n for n in graph_def.node} if graph_def is not None else {}
    for name, e in failed.items():
        if name in ids:
            continue
        nid = f"n{len(ids)}"
        ids[name] = nid
        op_type = getattr(e, "op_type", None) or (nodes_by_name[name].op if name in
                                                  nodes_by_name else "?")
        place(name, _failed_line(nid, name, op_type, e))
    for name, n in nodes_by_name.items():
        if name not in ids:             # skipped: it consumes a failed node
            nid = f"n{len(ids)}"
            ids[name] = nid
            place(name, f"{nid} [label={_label(name, n.op, '(skipped)')}, "
                        f"style=\"rounded,dashed\", fillcolor=\"#f4f4f4\", color=\"#999999\"];")
    _emit(root, lines, "  ", [0])
    for op in ops:
        dst = ids[op.name]
        for o in op.inputs:
            label = ""
            if show_shapes:
                dtype = o.dtype.name if o.dtype is not None else "?"
                label = f"{dtype}{o.shape.compact()}"
            if o.index:
                label = f":{o.index} {label}".strip()
            lines.append(f"  {ids[o.op.name]} -> {dst}" +
                         (f" [label={dot_quote(label)}];" if label else ";"))
        for c in op.control_inputs:
            lines.append(f"  {ids[c.name]} -> {dst} [style=dashed, arrowhead=odot];")
    for name, n in nodes_by_name.items():
        if name in decl:
            continue
        for text in n.input:
            ctrl = text.startswith("^")
            src = text.lstrip("^").split(":")[0]
            if src in ids:
                style = "style=dashed, arrowhead=odot" if ctrl else 'color="#cc0000"'
                lines.append(f"  {ids[src]} -> {ids[name]} [{style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _failed_line(nid: str, name: str, op_type: str, e) -> str:
    wrapped = textwrap.wrap(e.message.split("\n")[0], 60)[:6]
    return (f"{nid} [label={_label(name, op_type, *wrapped)}, fillcolor=\"#ffe0e0\", "
            f"color=\"#cc0000\", fontcolor=\"#990000\"];")


def _emit(cluster: _Cluster, lines: list, indent: str, counter: list) -> None:
    for node_line in cluster.nodes:
        lines.append(indent + node_line)
    for child in cluster.children.values():
        counter[0] += 1
        lines.append(f"{indent}subgraph cluster_{counter[0]} {{")
        lines.append(f"{indent}  label={dot_quote(child.name)}; style=\"rounded\"; "
                     f"color=\"#bbbbbb\";")
        _emit(child, lines, indent + "  ", counter)
        lines.append(f"{indent}}}")


def render(dot_text: str, path: str, fmt: str | None = None, timeout: float = 60) -> str:
    """Write ``dot_text`` to ``path``: as is for .dot/.gv, else rendered by Graphviz (format
    from the extension: svg, png, pdf). UnavailableError when ``dot`` is not installed."""
    fmt = (fmt or os.path.splitext(path)[1].lstrip(".") or "dot").lower()
    if fmt in ("dot", "gv"):
        with open(path, "w", encoding="utf-8") as f:
            f.write(dot_text)
        return path
    exe = shutil.which("dot")
    if exe is None:
        msg = (f"Cannot write {path}: rendering {fmt} needs Graphviz's `dot` program "
               f"(apt-get install graphviz); write a .dot file instead")
        raise errors.UnavailableError(msg)
    with tempfile.NamedTemporaryFile("w", suffix=".dot", delete=False, encoding="utf-8") as f:
        f.write(dot_text)
        src = f.name
    try:
        proc = subprocess.run([exe, f"-T{fmt}", "-o", path, src], capture_output=True,
                              text=True, timeout=timeout, check=False)
    finally:
        os.unlink(src)
    if proc.returncode != 0:
        msg = f"Graphviz failed to render {path}: {proc.stderr.strip()[:500]}"
        raise errors.UnknownError(msg)
    return path
