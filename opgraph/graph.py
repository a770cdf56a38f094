"""Graph, Operation and Output.

The graph is a ``networkx.MultiDiGraph`` whose nodes are operation names. A data edge carries
``src_output`` and ``dst_input`` (so ``Add(x, x)`` is two parallel edges); a control edge has
``control=True``. Nothing outside this module touches the networkx object.

Creation order is a topological order (an op can only consume ops that already exist), which
the executor relies on.
"""

from __future__ import annotations

import threading
import weakref

import networkx as nx

from opgraph import errors
from opgraph.op_def import format_attr_value
from opgraph.shapes import TensorShape

__all__ = ["Graph", "Operation", "Output"]


class Output:
    """One output tensor of an Operation: ``op``, ``index``, ``name`` ("op:0"), ``dtype``,
    ``shape`` (static, partial)."""

    __slots__ = ("op", "index")

    def __init__(self, op: Operation, index: int = 0):
        self.op = op
        self.index = index

    @property
    def dtype(self):
        return self.op.output_dtypes[self.index]

    @property
    def shape(self) -> TensorShape:
        return self.op.output_shapes[self.index]

    @property
    def name(self) -> str:
        return f"{self.op.name}:{self.index}"

    @property
    def graph(self):
        return self.op.graph

    def node(self) -> Operation:
        return self.op

    def __eq__(self, other) -> bool:
        return (isinstance(other, Output) and other.op is self.op
                and other.index == self.index)

    def __hash__(self) -> int:
        return hash((id(self.op), self.index))

    def __repr__(self) -> str:
        dtype = self.dtype.name if self.dtype is not None else "?"
        return f"<Output '{self.name}' dtype={dtype} shape={self.shape}>"


class Operation:
    """A node: its name, type, inputs, attrs, device and where the user created it.

    A *failed* operation (``failed`` True) is what a wrapper holds when building the op
    failed: it is not in the graph; its outputs have unknown dtype and shape, and ops that
    consume them are skipped quietly (the first error is already recorded).
    """

    __slots__ = ("name", "type", "op_def", "inputs", "control_inputs", "attrs", "device",
                 "kernel_label", "colocation", "site", "_graph", "output_dtypes",
                 "output_shapes", "output_values", "failed", "id", "_meta", "shape_complete",
                 "values_read")

    def __init__(self, name, op_def, inputs, attrs, output_dtypes, output_shapes, *,
                 graph, control_inputs=(), device="", kernel_label="", colocation=(),
                 site=None, output_values=None, failed=False):
        self.name = name
        self.type = op_def.name
        self.op_def = op_def
        self.inputs = inputs                  # tuple[Output]
        self.control_inputs = control_inputs  # tuple[Operation]
        self.attrs = attrs                    # dict: every attr, defaults filled in
        self.device = device                  # requested device ("" or "/device:CPU:0")
        self.kernel_label = kernel_label
        self.colocation = colocation          # tuple of op names
        self.site = site                      # "file.py:12" of the user's call
        # A weak back-reference: the graph owns its operations, so a dropped graph is freed
        # at once by reference counting instead of waiting for the cycle collector.
        self._graph = weakref.ref(graph)
        self.output_dtypes = output_dtypes
        self.output_shapes = output_shapes
        self.output_values = output_values    # build-time constant values or None
        self.failed = failed
        self.id = -1
        self._meta = None
        #: True when the shape function saw fully known input shapes and every value it
        #: read: the static output shapes are then exact and need no run-time re-check.
        self.shape_complete = False
        self.values_read = ()     # inputs whose values the shape function read

    @property
    def meta(self) -> dict:
        """Per-node extras (fx's ``node.meta``), created on first use."""
        if self._meta is None:
            self._meta = {}
        return self._meta

    @property
    def graph(self):
        """The Graph this operation belongs to (None once that graph is gone)."""
        return self._graph()

    @property
    def outputs(self) -> tuple[Output, ...]:
        return tuple(Output(self, i) for i in range(len(self.output_dtypes)))

    @property
    def num_outputs(self) -> int:
        return len(self.output_dtypes)

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def output(self, i: int = 0) -> Output:
        if not 0 <= i < len(self.output_dtypes):
            msg = (f"Node '{self.name}' (type: '{self.type}', num of outputs: "
                   f"{len(self.output_dtypes)}) does not have output {i}")
            raise errors.OutOfRangeError(msg, self.name, self.type, self.site)
        return Output(self, i)

    def input(self, i: int) -> Output:
        return self.inputs[i]

    def describe(self) -> str:
        """TF's ``{{node n}} = Op[attr=v, ...](in0, in1)`` with attrs sorted by name."""
        attrs = ", ".join(f"{k}={format_attr_value(v)}" for k, v in sorted(self.attrs.items()))
        ins = ", ".join(o.op.name if o.index == 0 else o.name for o in self.inputs)
        return f"{{{{node {self.name}}}}} = {self.type}[{attrs}]({ins})"

    def format(self) -> str:
        """One line: ``%dx : float32[1,8,8,3] = Conv2DBackpropInputV2[...](%x, %w, %dy)``."""
        outs = ", ".join(f"{d.name if d else '?'}{s.compact()}"
                         for d, s in zip(self.output_dtypes, self.output_shapes))
        attrs = ", ".join(f"{k}={format_attr_value(v)}" for k, v in self.attrs.items()
                          if k != "value")
        ins = ", ".join(f"%{o.op.name}" + (f":{o.index}" if o.index else "")
                        for o in self.inputs)
        ctl = "".join(f", ^{c.name}" for c in self.control_inputs)
        return f"%{self.name} : {outs} = {self.type}[{attrs}]({ins}{ctl})"

    def __repr__(self) -> str:
        return f"<Operation '{self.name}' type={self.type}{' FAILED' if self.failed else ''}>"


class Graph:
    """A dataflow graph of Operations (a networkx MultiDiGraph inside)."""

    def __init__(self):
        self._nx_graph = nx.MultiDiGraph()
        self._unindexed = 0     # ops added since the networkx graph was last brought up to date
        self._ops: dict[str, Operation] = {}
        self.version = 0   # bumped on every change, so tools can tell the graph grew
        #: held while a node is named and added (TF's Graph mutex): scopes of one graph may
        #: build from several threads. Reentrant: building an op builds its implicit Consts.
        self.lock = threading.RLock()

    def add_operation(self, op: Operation) -> None:
        """Insert a built operation and its edges. The name must be new."""
        with self.lock:
            if op.name in self._ops:
                msg = f"Duplicate node name in graph: '{op.name}'"
                raise errors.AlreadyExistsError(msg, op.name, op.type, op.site)
            op.id = len(self._ops)
            self._ops[op.name] = op
            self._unindexed += 1
            self.version += 1

    @property
    def _nx(self) -> nx.MultiDiGraph:
        """The networkx graph, brought up to date on first use after ops were added (adding
        to networkx is a third of the cost of building a node, and most graphs are built and
        run without it: analysis, drawing and linting pay for it, once)."""
        if self._unindexed:
            with self.lock:
                g = self._nx_graph
                for op in list(self._ops.values())[len(self._ops) - self._unindexed:]:
                    name = op.name
                    g.add_node(name, op=op)
                    # Explicit edge keys (the input index; "^" for the one control edge
                    # between two ops) spare networkx a key search per edge.
                    for i, src in enumerate(op.inputs):
                        g.add_edge(src.op.name, name, i, src_output=src.index, dst_input=i)
                    for c in op.control_inputs:
                        g.add_edge(c.name, name, "^", control=True)
                self._unindexed = 0
        return self._nx_graph

    def has_name(self, name: str) -> bool:
        return name in self._ops

    def get_operation(self, name: str) -> Operation:
        try:
            return self._ops[name]
        except KeyError:
            msg = f"Node '{name}' not found in the graph"
            raise errors.NotFoundError(msg) from None

    def operations(self) -> list[Operation]:
        """All operations in creation (= topological) order."""
        with self.lock:
            return list(self._ops.values())

    def num_ops(self) -> int:
        return len(self._ops)

    def consumers(self, op: Operation) -> list[tuple[Operation, int, int]]:
        """(consumer, src_output, dst_input) for every data edge leaving ``op``."""
        with self.lock:
            return [(self._ops[v], d["src_output"], d["dst_input"])
                    for _, v, d in self._nx.out_edges(op.name, data=True)
                    if not d.get("control")]

    def to_networkx(self) -> nx.MultiDiGraph:
        """A copy of the underlying networkx graph (for analysis and drawing)."""
        with self.lock:
            return self._nx.copy()

    def to_dot(self, **options) -> str:
        """The graph as Graphviz DOT text (see opgraph.dot.to_dot for the options)."""
        from opgraph.dot import to_dot  # noqa: PLC0415  (dot imports this module)
        return to_dot(self, **options)

    def format(self) -> str:
        """The graph, one line per operation (see Operation.format)."""
        return "\n".join(op.format() for op in self.operations())

    def lint(self) -> None:
        """Check invariants: acyclic, creation order topological, inputs present, OpDefs
        registered. Raises InternalError describing the first violation."""
        from opgraph.registry import get_op_def  # noqa: PLC0415  (avoid import cycle)

        if not nx.is_directed_acyclic_graph(self._nx):
            cycle = nx.find_cycle(self._nx)
            msg = f"Graph has a cycle: {cycle}"
            raise errors.InternalError(msg)
        for op in self._ops.values():
            for i, src in enumerate((*(o.op for o in op.inputs), *op.control_inputs)):
                if self._ops.get(src.name) is not src:
                    msg = f"Node '{op.name}' input {i} refers to '{src.name}', not in this graph"
                    raise errors.InternalError(msg, op.name, op.type, op.site)
                if src.id >= op.id:
                    msg = f"Node '{op.name}' consumes '{src.name}' created after it"
                    raise errors.InternalError(msg, op.name, op.type, op.site)
            try:
                get_op_def(op.type)
            except errors.NotFoundError as e:
                raise errors.InternalError(str(e), op.name, op.type, op.site) from e
