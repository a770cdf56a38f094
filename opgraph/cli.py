"""The ``opgraph`` command: check, inspect, run, draw and convert graphs.

    opgraph check model.pb                  # every static error, exit status 1 when any
    opgraph info model.pbtxt                # nodes, dtypes, static shapes, memory
    opgraph run model.pb --feed x=x.npy --fetch probs:0 -o out.npz
    opgraph draw model.pb -o model.svg
    opgraph convert model.pbtxt -o model.onnx --fetch probs:0

FILE is a GraphDef (.pb binary or .pbtxt text, told apart by content) or a Python file that
builds a graph on a root scope (``Scope.NewRootScope()``; the file runs with ``__name__``
set to "__opgraph__", so its ``if __name__ == "__main__":`` block does not).
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys

import numpy as np

from opgraph import errors

__all__ = ["main", "load"]


class Loaded:
    """What a FILE gave: the root scope, the GraphDef (for GraphDef files) and a name."""

    def __init__(self, scope, graph_def, source):
        self.scope = scope
        self.graph_def = graph_def
        self.source = source


def load(path: str) -> Loaded:
    """Import a GraphDef file, or run a Python file and take the root scope it built."""
    import ops  # noqa: F401, PLC0415  (registers the op library)
    from opgraph.graphdef import read_graph_def  # noqa: PLC0415
    from opgraph.importer import ImportGraphDef  # noqa: PLC0415
    from opgraph.scope import Scope  # noqa: PLC0415

    if not os.path.exists(path):
        msg = f"No such file: '{path}'"
        raise errors.NotFoundError(msg)
    if path.endswith(".py"):
        return _load_python(path, Scope)
    gd = read_graph_def(path)
    root = Scope.NewRootScope()
    ImportGraphDef(root, gd)
    return Loaded(root, gd, os.path.basename(path))


def _load_python(path: str, scope_cls) -> Loaded:
    created = []
    original = scope_cls.__dict__["NewRootScope"]

    def recording(cls):
        s = original.__func__(cls)
        created.append(s)
        return s

    scope_cls.NewRootScope = classmethod(recording)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        runpy.run_path(path, run_name="__opgraph__")
    except errors.OpError as e:            # an ExitOnError scope raised: report it
        if not created:
            raise
        errs = created[-1]._root.errors
        if not any(x is e for x in errs):
            errs.append(e)
    finally:
        scope_cls.NewRootScope = original
        sys.path.pop(0)
    if not created:
        msg = f"{path} built no graph: it must create a root scope with Scope.NewRootScope()"
        raise errors.NotFoundError(msg)
    # The root with the most nodes (or errors) is the one the file is about.
    root = max(created, key=lambda s: (s.graph().num_ops() + len(s.status().errors)))
    return Loaded(root, None, os.path.basename(path))


def _graph_def(loaded: Loaded):
    from opgraph.graphdef import graph_to_graph_def  # noqa: PLC0415

    if loaded.graph_def is not None and loaded.scope.ok():
        return loaded.graph_def
    return graph_to_graph_def(loaded.scope.graph())


# ---------------------------------------------------------------------------- commands
def cmd_check(args) -> int:
    loaded = load(args.file)
    status = loaded.scope.status()
    n = loaded.scope.graph().num_ops()
    for i, e in enumerate(status.errors, 1):
        where = ""
        if e.op_name:
            where = f" node '{e.op_name}'" + (f" ({e.op_type})" if e.op_type else "")
        print(f"error {i}: {e.code_name}{where}: {e.message}")
        if e.site and e.site not in e.message:
            print(f"    created at {e.site}")
    if status.errors:
        print(f"{loaded.source}: {len(status.errors)} error(s); {n} node(s) built")
        return 1
    print(f"{loaded.source}: OK, {n} node(s), no static errors")
    return 0


def _nbytes(shape, dtype) -> int | None:
    if dtype is None or shape.dims is None or not shape.is_fully_defined():
        return None
    n = shape.num_elements()
    try:
        return n * (dtype.as_numpy_dtype.itemsize if dtype.name != "string" else 8)
    except errors.UnimplementedError:
        return n * 2


def _human(n) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_info(args) -> int:
    loaded = load(args.file)
    graph = loaded.scope.graph()
    rows = [("node", "op", "output", "dtype", "shape", "memory")]
    params = 0
    total = 0
    unknown = 0
    for op in graph.operations():
        if op.type in ("Const", "VariableV2") and op.output_dtypes and \
                op.output_dtypes[0] is not None and op.output_dtypes[0].is_floating:
            k = op.output_shapes[0].num_elements()
            params += k or 0
        if not op.num_outputs:
            rows.append((op.name, op.type, "-", "-", "-", "-"))
        for k, (dt, s) in enumerate(zip(op.output_dtypes, op.output_shapes)):
            b = _nbytes(s, dt)
            if b is None:
                unknown += 1
            else:
                total += b
            rows.append((op.name if k == 0 else "", op.type if k == 0 else "",
                         f"{op.name}:{k}", dt.name if dt else "?", s.compact(), _human(b)))
    widths = [min(max(len(r[i]) for r in rows), 48) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            print("  ".join("-" * w for w in widths))
    print()
    print(f"{graph.num_ops()} nodes; {params} parameters (float constants and variables); "
          f"{_human(total)} in tensors of known size" +
          (f", {unknown} tensor(s) of unknown size" if unknown else ""))
    status = loaded.scope.status()
    if not status.ok():
        print(f"{len(status.errors)} static error(s): run `opgraph check {args.file}`")
        return 1
    return 0


def _read_feed(spec: str):
    name, sep, file = spec.partition("=")
    if not sep or not name or not file:
        msg = f"--feed expects name=file.npy (or name=file.npz:key), got {spec!r}"
        raise errors.InvalidArgumentError(msg)
    key = None
    if ".npz:" in file:
        file, key = file.rsplit(":", 1)
    try:
        data = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as e:
        msg = f"Cannot read feed '{name}' from {file}: {e}"
        raise errors.InvalidArgumentError(msg) from None
    if isinstance(data, np.lib.npyio.NpzFile):
        keys = list(data.keys())
        if key is None and len(keys) == 1:
            key = keys[0]
        if key not in keys:
            msg = f"{file} holds {keys}; say which with name={file}:KEY"
            raise errors.InvalidArgumentError(msg)
        data = data[key]
    return name, data


def cmd_run(args) -> int:
    from runtime import ClientSession, RunMetadata, RunOptions  # noqa: PLC0415

    loaded = load(args.file)
    loaded.scope.status().raise_if_error()
    feeds = [_read_feed(f) for f in args.feed]
    if not args.fetch and not args.target:
        msg = "Say what to compute: --fetch name:0 (repeatable) and/or --target name"
        raise errors.InvalidArgumentError(msg)
    session = ClientSession(loaded.scope)
    metadata = RunMetadata() if args.timeline else None
    options = RunOptions(RunOptions.FULL_TRACE) if args.timeline else RunOptions()
    results = session.Run(options, feeds, list(args.fetch), list(args.target), metadata)
    results = results or []
    if args.timeline:
        from runtime.timeline import write_chrome_trace  # noqa: PLC0415
        write_chrome_trace(metadata, args.timeline, loaded.scope.graph())
        print(f"timeline written to {args.timeline}")
    if args.output:
        np.savez(args.output, **{n.replace(":", "__"): r for n, r in zip(args.fetch, results)})
        print(f"{len(results)} result(s) saved to {args.output}")
        return 0
    with np.printoptions(threshold=args.max_elements, precision=6, suppress=False):
        for name, r in zip(args.fetch, results):
            r = np.asarray(r)
            print(f"{name}: {r.dtype.name}{list(r.shape)}")
            print(np.array2string(r))
    return 0


def cmd_draw(args) -> int:
    from opgraph.dot import render, to_dot  # noqa: PLC0415

    loaded = load(args.file)
    text = to_dot(loaded.scope, graph_def=loaded.graph_def, title=loaded.source,
                  show_shapes=not args.no_shapes)
    render(text, args.output)
    print(f"wrote {args.output}")
    return 1 if not loaded.scope.ok() else 0


def cmd_convert(args) -> int:
    from opgraph.graphdef import write_graph_def  # noqa: PLC0415

    loaded = load(args.file)
    loaded.scope.status().raise_if_error()
    out = args.output
    if out.endswith(".onnx"):
        from opgraph import onnx_export  # noqa: PLC0415
        fetches = list(args.fetch) or _default_fetches(loaded.scope.graph())
        onnx_export.export(loaded.scope, fetches, out, opset=args.opset)
    elif out.endswith((".pb", ".pbtxt", ".txt", ".prototxt")):
        write_graph_def(_graph_def(loaded), out)
    else:
        msg = f"Cannot tell the format of {out!r}: use .onnx, .pb or .pbtxt"
        raise errors.InvalidArgumentError(msg)
    print(f"wrote {out}")
    return 0


def _default_fetches(graph) -> list[str]:
    """Outputs that nothing consumes (the graph's results)."""
    consumed = {o.name for op in graph.operations() for o in op.inputs}
    return [o.name for op in graph.operations() for o in op.outputs
            if o.name not in consumed and op.type not in ("Const", "Placeholder", "NoOp")]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="opgraph", description=(
        "Check, inspect, run, draw and convert TensorFlow GraphDefs (.pb / .pbtxt) and "
        "Python files that build an opgraph graph."))
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, help_, fn):
        c = sub.add_parser(name, help=help_, description=help_)
        c.add_argument("file", metavar="FILE", help=".pb, .pbtxt or .py file")
        c.set_defaults(fn=fn)
        return c

    add("check", "Report every static error (node, op, shapes, creation site); exit status 1 "
        "when there is any.", cmd_check)
    add("info", "Table of nodes, op types, dtypes, static shapes and tensor memory, with the "
        "parameter count.", cmd_info)
    c = add("run", "Run the graph with fed .npy values and print or save the fetched "
            "tensors.", cmd_run)
    c.add_argument("--feed", action="append", default=[], metavar="NAME=FILE.npy",
                   help="feed tensor NAME (x or x:0) from a .npy file (or FILE.npz:KEY)")
    c.add_argument("--fetch", action="append", default=[], metavar="NAME:0",
                   help="tensor to compute (repeatable)")
    c.add_argument("--target", action="append", default=[], metavar="NODE",
                   help="node to run without fetching (repeatable)")
    c.add_argument("-o", "--output", metavar="OUT.npz", help="save the results here")
    c.add_argument("--timeline", metavar="TRACE.json",
                   help="write a Chrome trace (Perfetto) of the run")
    c.add_argument("--max-elements", type=int, default=40,
                   help="elements printed per result before eliding (default 40)")
    c = add("draw", "Draw the graph (.dot text, or .svg/.png/.pdf through Graphviz's dot).",
            cmd_draw)
    c.add_argument("-o", "--output", required=True, metavar="OUT.svg")
    c.add_argument("--no-shapes", action="store_true", help="no dtype/shape edge labels")
    c = add("convert", "Convert to a GraphDef (.pb, .pbtxt) or an ONNX model (.onnx).",
            cmd_convert)
    c.add_argument("-o", "--output", required=True, metavar="OUT")
    c.add_argument("--fetch", action="append", default=[], metavar="NAME:0",
                   help="ONNX outputs (default: tensors nothing consumes)")
    c.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    return p


def main(argv=None) -> int:
    """Entry point of the ``opgraph`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.fn(args)
    except errors.OpError as e:
        print(f"opgraph {args.command}: {e.code_name}: {e.message}", file=sys.stderr)
        return 1
    except ImportError as e:
        print(f"opgraph {args.command}: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:                 # pragma: no cover - `opgraph info | head`
        return 0
