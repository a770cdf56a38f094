"""ImportGraphDef: a GraphDef (ours, or written by TensorFlow) into a Scope's graph.

    >>> root = Scope.NewRootScope()
    >>> y, = ImportGraphDef(root, read_graph_def("model.pb"), return_elements=["y:0"])
    >>> root.status()          # every static error of the imported graph, in one pass

Every node is built through the same path as a wrapper call (``Scope.build_op``), so it gets
our OpDef's attr checks, defaults for attrs the NodeDef leaves out, dtype checks and our
shape function -- as strict as TF's kernels, so a GraphDef that TF itself accepts can still
be refused here with the node, op and input shapes named. Errors are recorded in the scope's
status like any build error: a node that fails is left out, the nodes that consume it are
skipped quietly, and every independent node is still checked (``scope.ExitOnError()``
raises at the first instead). ``_output_shapes`` is merged into the inferred shapes (an
incompatible one is an error), ``_class`` gives colocation, ``_kernel`` the kernel label;
other ``_``-prefixed attrs are kept (``op.meta["graph_def_attrs"]``) and written back by
ToGraphDef. An attr our OpDef lacks is a GraphDefWarning, as TF's importer warns about attrs
from a newer producer.
"""

from __future__ import annotations

import difflib
import importlib
import re
import warnings

import networkx as nx

from opgraph import errors
from opgraph.graph import Operation, Output
from opgraph.graphdef import (
    GRAPH_DEF_VERSION, GraphDef, attr_value_to_python, parse_graph_def,
)
from opgraph.registry import registered_ops
from opgraph.scope import Scope

__all__ = ["ImportGraphDef", "GraphDefWarning"]


class GraphDefWarning(UserWarning):
    """Something in a GraphDef that opgraph ignores (an attr its OpDef does not have)."""


_INPUT_RE = re.compile(r"(\^)?([^:^]+)(?::(\d+))?")


class _Skipped:
    """Marks a node left out: ``reported`` when its own error was recorded."""

    __slots__ = ("reported",)

    def __init__(self, reported: bool):
        self.reported = reported


def _site(graph_def: GraphDef, node, index: int) -> str:
    source = graph_def.source or "<GraphDef>"
    if node.source_line is not None:
        return f"{source}:{node.source_line}"
    return f"{source} (node #{index})"


def _where(name: str, op: str, site: str) -> str:
    return f"for node '{name}' (op: '{op}') created at {site}"


def ImportGraphDef(scope: Scope, graph_def, prefix: str = "", input_map=None,  # noqa: N802
                   return_elements=None):
    """Import ``graph_def`` (a GraphDef, .pb bytes or .pbtxt text) into ``scope``'s graph.

    Args:
      scope: where the nodes go; node names are ``<scope prefix>/<prefix>/<name>``.
      graph_def: the GraphDef.
      prefix: prepended to every imported name (and to the names inputs and ``_class``
        refer to), as TF's ImportGraphDefOptions.prefix.
      input_map: ``{"name:k" or "^name": Output / Operation / wrapper}``: inputs of the
        imported nodes that refer to those tensors (or control inputs) use the given ones of
        ``scope``'s graph instead. A key that no node refers to is an error.
      return_elements: names to return: ``"name:k"`` gives that Output, ``"name"`` the
        Operation (names as in the GraphDef, without the prefix).

    Returns:
      The list of requested elements (failed nodes give their failed Operation / Output),
      or None when ``return_elements`` is None. Errors are in ``scope.status()``.
    """
    if not isinstance(scope, Scope):
        msg = f"ImportGraphDef needs a Scope, got {type(scope).__name__}"
        raise TypeError(msg)
    if isinstance(graph_def, (bytes, bytearray, memoryview, str)):
        graph_def = parse_graph_def(graph_def)
    if not isinstance(graph_def, GraphDef):
        msg = f"ImportGraphDef needs a GraphDef, got {type(graph_def).__name__}"
        raise TypeError(msg)
    _load_op_library()
    imp = _Importer(scope, graph_def, prefix, input_map or {})
    with scope.graph().lock:
        imp.run()
    if return_elements is None:
        return None
    return [imp.element(name) for name in return_elements]


def _load_op_library() -> None:
    """Register the op library (the ``ops`` package) if nothing imported it yet, as a TF
    binary has its ops linked in."""
    if "Const" not in registered_ops():
        try:
            importlib.import_module("ops")
        except ImportError:     # pragma: no cover - opgraph installed without ops
            pass


class _Importer:
    def __init__(self, scope, graph_def, prefix, input_map):
        self.scope = scope
        self.gd = graph_def
        self.prefix = prefix.rstrip("/")
        self.input_map = {self._map_key(k): v for k, v in input_map.items()}
        self.used_map_keys = set()
        self.built: dict[str, Operation | _Skipped] = {}
        self.library = {f.get("signature", {}).get("name", "")
                        for f in (graph_def.library or {}).get("function", [])}

    @staticmethod
    def _map_key(k) -> str:
        if not isinstance(k, str):
            msg = f"input_map keys are tensor names ('x:0') or '^x', got {type(k).__name__}"
            raise TypeError(msg)
        return k if k.startswith("^") or ":" in k else f"{k}:0"

    def full(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def fail(self, err: errors.OpError) -> None:
        self.scope.UpdateStatus(err)

    def run(self) -> None:
        gd = self.gd
        self.check_versions()
        index: dict[str, int] = {}
        for i, node in enumerate(gd.node):
            if node.name in index:
                site = _site(gd, node, i)
                self.fail(errors.InvalidArgumentError(
                    f"Node '{node.name}' is not unique: the GraphDef has two nodes of that name "
                    f"(the second {_where(node.name, node.op, site)})", node.name, node.op,
                    site))
                continue
            index[node.name] = i
        parsed = {}
        dag = nx.DiGraph()
        for name, i in index.items():
            node = gd.node[i]
            dag.add_node(name)
            deps = self.parse_inputs(node, i, index)
            parsed[name] = deps
            if deps is None:
                continue
            for src in deps[2]:
                dag.add_edge(src, name)
        for comp in nx.strongly_connected_components(dag):
            if len(comp) == 1:
                (n,) = comp
                if not dag.has_edge(n, n):
                    continue
            sub = dag.subgraph(comp)
            cycle = [u for u, _ in nx.find_cycle(sub)]
            first = min(comp, key=index.get)
            node = gd.node[index[first]]
            site = _site(gd, node, index[first])
            path = " -> ".join([*cycle, cycle[0]])
            self.fail(errors.InvalidArgumentError(
                f"GraphDef has a cycle: {path} (opgraph graphs are acyclic; TF's control-flow "
                f"loops, Enter/Merge/Switch/NextIteration, are not supported)", node.name,
                node.op, site))
            for n in comp:
                self.built[n] = _Skipped(True)
                parsed[n] = None
        order = nx.lexicographical_topological_sort(
            dag.subgraph([n for n in dag if n not in self.built]), key=index.get)
        for name in order:
            deps = parsed[name]
            if deps is None:
                self.built.setdefault(name, _Skipped(True))
                continue
            self.build(gd.node[index[name]], index[name], deps)
        unused = sorted(set(self.input_map) - self.used_map_keys)
        if unused:
            self.fail(errors.InvalidArgumentError(
                f"Attempted to map inputs that were not found in graph_def: [{', '.join(unused)}]"))

    def check_versions(self) -> None:
        v = self.gd.versions
        if v is None:
            return
        if v.min_consumer > GRAPH_DEF_VERSION:
            self.fail(errors.InvalidArgumentError(
                f"GraphDef min consumer version {v.min_consumer} above current version "
                f"{GRAPH_DEF_VERSION} for opgraph's GraphDefs; the graph needs a newer reader"))
        if GRAPH_DEF_VERSION in v.bad_consumers:
            self.fail(errors.InvalidArgumentError(
                f"GraphDef disallows consumer version {GRAPH_DEF_VERSION} (bad_consumers)"))

    def parse_inputs(self, node, i, index):
        """(data inputs, control inputs, GraphDef node dependencies) or None on error."""
        site = _site(self.gd, node, i)
        data, control, deps = [], [], []
        for text in node.input:
            m = _INPUT_RE.fullmatch(text)
            if m is None or (m.group(1) and m.group(3)):
                self.fail(errors.InvalidArgumentError(
                    f"Malformed input '{text}' {_where(node.name, node.op, site)}: expected "
                    f"'name', 'name:k' or '^name'", node.name, node.op, site))
                return None
            ctrl, src, k = m.group(1), m.group(2), int(m.group(3) or 0)
            if ctrl:
                key = f"^{src}"
                control.append((src, key))
            else:
                if control:
                    self.fail(errors.InvalidArgumentError(
                        f"Control dependencies must come after regular dependencies: input "
                        f"'{text}' {_where(node.name, node.op, site)}", node.name, node.op,
                        site))
                    return None
                key = f"{src}:{k}"
                data.append((src, k, key))
            if key in self.input_map:
                continue
            if src not in index:
                self.fail(errors.InvalidArgumentError(
                    f"Node '{node.name}': Unknown input node '{text}' "
                    f"({_where(node.name, node.op, site)})", node.name, node.op, site))
                return None
            deps.append(src)
        return data, control, deps

    def resolve(self, src, k, key, node, site):
        """The Output for data input ``src:k``: an Output, _Skipped, or an OpError."""
        if key in self.input_map:
            self.used_map_keys.add(key)
            value = self.input_map[key]
            out = value if isinstance(value, Output) else getattr(value, "output", value)
            if isinstance(out, Operation):
                out = out.output(0)
            if not isinstance(out, Output):
                msg = (f"input_map['{key}'] must be an Output (or a single-output op), got "
                       f"{type(value).__name__}")
                return errors.InvalidArgumentError(msg, node.name, node.op, site)
            return out
        op = self.built.get(src)
        if op is None or isinstance(op, _Skipped):
            return _Skipped(False)
        if k >= op.num_outputs:
            msg = (f"Node '{node.name}': Connecting to invalid output {k} of source node {src} "
                   f"which has {op.num_outputs} outputs ({_where(node.name, node.op, site)})")
            return errors.InvalidArgumentError(msg, node.name, node.op, site)
        return op.output(k)

    def build(self, node, i, deps) -> None:
        gd = self.gd
        name, op_type = node.name, node.op
        site = _site(gd, node, i)
        full = self.full(name)

        def failed(err=None):
            if err is not None:
                self.fail(err)
            self.built[name] = _Skipped(err is not None)

        op_def = registered_ops().get(op_type)
        if op_def is None:
            hint = ""
            if op_type in self.library:
                hint = (" It is a function of the GraphDef's library; functions are not "
                        "supported by opgraph.")
            else:
                close = difflib.get_close_matches(op_type, list(registered_ops()), 3)
                if close:
                    hint = f" Did you mean {', '.join(repr(c) for c in close)}?"
            failed(errors.NotFoundError(
                f"Op type not registered '{op_type}' in opgraph "
                f"{_where(name, op_type, site)}.{hint}", full, op_type, site))
            return
        data, control, _ = deps

        # Inputs: the GraphDef's sources, or skip quietly when one was left out.
        sources, skip = [], False
        for src, k, key in data:
            out = self.resolve(src, k, key, node, site)
            if isinstance(out, errors.OpError):
                failed(out)
                return
            if isinstance(out, _Skipped):
                skip = True
                continue
            sources.append(out)
        ctrl_ops = []
        for src, key in control:
            if key in self.input_map:
                self.used_map_keys.add(key)
                value = self.input_map[key]
                ctrl_ops.append(value)
                continue
            op = self.built.get(src)
            if op is None or isinstance(op, _Skipped):
                skip = True
                continue
            ctrl_ops.append(op)
        if skip:
            failed()
            return

        # Attrs: converted by our OpDef's kinds; unknown ones warned about and dropped.
        values, extra, special = {}, {}, {}
        for key in sorted(node.attr):
            av = node.attr[key]
            if key.startswith("_"):
                if key in ("_class", "_kernel", "_output_shapes"):
                    special[key] = av
                else:
                    extra[key] = av
                continue
            attr_def = op_def.attrs.get(key)
            if attr_def is None:
                warnings.warn(
                    f"Node '{name}' (op: '{op_type}') created at {site}: attr '{key}' is not "
                    f"in opgraph's OpDef of {op_type} (attrs: "
                    f"{', '.join(op_def.attrs) or 'none'}); ignored", GraphDefWarning,
                    stacklevel=4)
                continue
            try:
                values[key] = attr_def.check(attr_value_to_python(av, attr_def, self.prefix))
            except errors.OpError as e:
                failed(type(e)(f"Attr '{key}' {_where(name, op_type, site)}: {e.message}",
                               full, op_type, site))
                return

        # Group the flat inputs by the OpDef's args, as the NodeDef's attrs size them.
        grouped, pos = [], 0
        expected_types = []
        for arg in op_def.inputs:
            if arg.number_attr is not None:
                n = values.get(arg.number_attr, op_def.attrs[arg.number_attr].default)
            elif arg.type_list_attr is not None:
                n = values.get(arg.type_list_attr)
                n = len(sources) - pos if n is None else len(n)
            else:
                n = 1
            if not isinstance(n, int) or isinstance(n, bool):
                failed(errors.InvalidArgumentError(
                    f"NodeDef missing attr '{arg.number_attr}' {_where(name, op_type, site)}; "
                    f"{op_def.summary()}", full, op_type, site))
                return
            items = sources[pos:pos + n]
            pos += n
            for j, out in enumerate(items):
                if arg.fixed_type is not None:
                    want = arg.fixed_type
                elif arg.type_list_attr is not None:
                    types = values.get(arg.type_list_attr)
                    want = types[j] if types is not None and j < len(types) else None
                else:
                    want = values.get(arg.type_attr)
                expected_types.append(want)
            grouped.append(list(items) if arg.is_list else (items[0] if items else None))
        if pos != len(sources) or any(g is None for g in grouped):
            want = ", ".join(a.type_str() for a in op_def.inputs) or "none"
            failed(errors.InvalidArgumentError(
                f"NodeDef expected inputs '{want}' do not match {len(sources)} inputs specified "
                f"{_where(name, op_type, site)}; {op_def.summary()}", full, op_type, site))
            return
        for j, (out, want) in enumerate(zip(sources, expected_types)):
            if want is not None and out.dtype is not None and out.dtype is not want:
                failed(errors.InvalidArgumentError(
                    f"Input {j} of node '{full}' was passed {out.dtype.name} from '{out.name}' "
                    f"incompatible with expected {want.name} ({_where(name, op_type, site)})",
                    full, op_type, site))
                return
        settable = {k: v for k, v in values.items() if k not in op_def.inferred_attrs}

        # The scope: exact name, control inputs, device, kernel label, colocation.
        try:
            s = self.scope.WithOpName(full)
            if ctrl_ops:
                s = s.WithControlDependencies(ctrl_ops)
            if node.device:
                s = s.WithDevice(node.device)
            label = special.get("_kernel")
            if label is not None:
                s = s.WithKernelLabel(attr_value_to_python(label))
            coloc = special.get("_class")
            if coloc is not None:
                names = attr_value_to_python(coloc)
                names = names if isinstance(names, tuple) else (names,)
                groups = tuple(self.full(n[5:]) for n in names
                               if isinstance(n, str) and n.startswith("loc:@"))
                s = s._copy(_colocation=groups)
        except errors.OpError as e:
            failed(type(e)(f"{e.message} ({_where(name, op_type, site)})", full, op_type, site))
            return
        op = s.build_op(op_def, grouped, settable, site)
        if op.failed:
            self.built[name] = _Skipped(True)
            return
        if extra:
            op.meta["graph_def_attrs"] = extra
        if node.experimental_debug_info is not None:
            op.meta["experimental_debug_info"] = node.experimental_debug_info
        self.merge_output_shapes(op, special.get("_output_shapes"), site)
        self.built[name] = op

    def merge_output_shapes(self, op, av, site) -> None:
        if av is None:
            return
        try:
            shapes = attr_value_to_python(av)
        except errors.OpError as e:
            self.fail(type(e)(f"Attr '_output_shapes' {_where(op.name, op.type, site)}: "
                              f"{e.message}", op.name, op.type, site))
            return
        if not isinstance(shapes, tuple) or len(shapes) != op.num_outputs:
            if shapes:
                warnings.warn(f"Node '{op.name}' (op: '{op.type}') created at {site}: "
                              f"_output_shapes lists {len(shapes)} shapes for {op.num_outputs} "
                              f"outputs; ignored", GraphDefWarning, stacklevel=5)
            return
        merged = []
        for k, (ours, theirs) in enumerate(zip(op.output_shapes, shapes)):
            try:
                merged.append(ours.merge_with(theirs))
            except errors.OpError:
                self.fail(errors.InvalidArgumentError(
                    f"Node '{op.name}' has an _output_shapes attribute inconsistent with the "
                    f"GraphDef for output #{k}: it says {theirs} but opgraph infers {ours} "
                    f"({_where(op.name, op.type, site)})", op.name, op.type, site))
                return
        op.output_shapes = tuple(merged)

    def element(self, text: str):
        m = _INPUT_RE.fullmatch(text) if isinstance(text, str) else None
        if m is None or m.group(1):
            msg = f"Invalid return element {text!r}: expected 'name' or 'name:k'"
            raise errors.InvalidArgumentError(msg)
        name, k = m.group(2), m.group(3)
        op = self.built.get(name)
        if op is None:
            what = "tensor" if k is not None else "node"
            msg = f"Requested return {what} '{text}' not found in graph def"
            raise errors.InvalidArgumentError(msg)
        if isinstance(op, _Skipped):
            failed = _failed_operation(self.scope, self.gd, name, self.full(name))
            return failed if k is None else Output(failed, int(k))
        return op if k is None else op.output(int(k))


def _failed_operation(scope, gd, name, full) -> Operation:
    """A failed Operation standing for a node that could not be imported."""
    from opgraph.op_def import OpDef  # noqa: PLC0415

    node = gd.find_node(name)
    op_def = registered_ops().get(node.op) or OpDef(node.op, shape_fn=lambda c: [])
    n = max(1, len(op_def.outputs))
    from opgraph.shapes import TensorShape  # noqa: PLC0415
    return Operation(full, op_def, (), {}, (None,) * n, (TensorShape(None),) * n,
                     graph=scope.graph(), failed=True)
