"""TF's C++ Session API on a GraphDef: NewSession / Create / Extend / Run / Close.

    >>> graph_def = ReadBinaryProto("frozen_model.pb")       # label_image's LoadGraph
    >>> session = NewSession(SessionOptions())
    >>> session.Create(graph_def)
    >>> outputs = session.Run([("input", image)], ["softmax:0"], [])

``Create`` imports the GraphDef with ``opgraph.ImportGraphDef`` (every node statically
checked; all errors raised together) and runs it with a ClientSession. ``Extend`` adds nodes
(names must be new); a failed Extend leaves the session as it was. Variables live in the
session, across Extend. Files are read with sizes checked before anything is allocated, so
a hostile or truncated file is a clear OpError.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping


from opgraph import errors
from opgraph.graphdef import GraphDef, parse_graph_def, read_graph_def
from opgraph.importer import ImportGraphDef
from opgraph.inputs import describe_value
from opgraph.scope import Scope
from runtime.placement import SessionOptions
from runtime.session import ClientSession, RunMetadata, RunOptions

__all__ = ["NewSession", "Session", "SessionOptions", "ReadBinaryProto", "ReadTextProto"]


def NewSession(options: SessionOptions | None = None) -> Session:  # noqa: N802
    """A new Session (TF's ``NewSession(SessionOptions())``)."""
    return Session(options or SessionOptions())


def ReadBinaryProto(path) -> GraphDef:  # noqa: N802
    """TF's ``ReadBinaryProto(Env::Default(), path, &graph_def)`` for a GraphDef .pb file."""
    gd = read_graph_def(path)
    return gd


def ReadTextProto(path) -> GraphDef:  # noqa: N802
    """TF's ``ReadTextProto`` for a GraphDef .pbtxt file."""
    return read_graph_def(path)


class Session:
    """One graph and its variables. Create with ``NewSession(options)``."""

    def __init__(self, options: SessionOptions | None = None):
        options = options or SessionOptions()
        if options.target:
            msg = f"Only in-process sessions are supported (target ''), got {options.target!r}"
            raise errors.UnimplementedError(msg)
        self.options = options
        self._lock = threading.RLock()
        self._graph_def: GraphDef | None = None
        self._scope: Scope | None = None
        self._client: ClientSession | None = None
        self._closed = False

    # ---- graph --------------------------------------------------------------------------
    def Create(self, graph_def) -> None:  # noqa: N802
        """Import ``graph_def`` (GraphDef, bytes, text or a path); every static error of the
        graph is raised at once (the first error's class, all messages)."""
        with self._lock:
            self._check_open()
            if self._graph_def is not None:
                msg = "A Graph has already been created for this session."
                raise errors.AlreadyExistsError(msg)
            gd = _as_graph_def(graph_def)
            scope, client = self._build(gd, None)
            self._graph_def, self._scope, self._client = gd, scope, client

    def Extend(self, graph_def) -> None:  # noqa: N802
        """Add the nodes of ``graph_def`` (which may refer to existing nodes by name)."""
        with self._lock:
            self._check_open()
            if self._graph_def is None:
                self.Create(graph_def)
                return
            gd = _as_graph_def(graph_def)
            merged = GraphDef(node=self._graph_def.node + gd.node,
                              versions=self._graph_def.versions or gd.versions,
                              library=self._graph_def.library or gd.library,
                              source=self._graph_def.source)
            scope, client = self._build(merged, self._client)
            self._graph_def, self._scope, self._client = merged, scope, client

    def _build(self, gd: GraphDef, previous: ClientSession | None):
        scope = Scope.NewRootScope()
        ImportGraphDef(scope, gd)
        status = scope.status()
        if not status.ok():
            first = status.errors[0]
            lines = "\n".join(f"  - {e.message}" for e in status.errors)
            msg = (f"The GraphDef{f' {gd.source}' if gd.source else ''} has "
                   f"{len(status.errors)} error(s):\n{lines}")
            raise type(first)(msg, first.op_name, first.op_type, first.site)
        client = ClientSession(scope)
        if previous is not None:
            client.resources = previous.resources      # variables survive Extend
        return scope, client

    @property
    def graph_def(self) -> GraphDef | None:
        return self._graph_def

    def scope(self) -> Scope:
        """The root scope the graph was imported into (to add ops from Python)."""
        self._check_ready()
        return self._scope

    # ---- run ----------------------------------------------------------------------------
    def Run(self, *args, **kwargs):  # noqa: N802
        """Run(inputs, output_names, target_names) or
        Run(run_options, inputs, output_names, target_names, run_metadata).

        ``inputs``: ``[(tensor name, value), ...]`` or a dict; ``output_names``: tensor names
        ("y:0" or "y"); ``target_names``: node names to run. Returns the list of outputs.
        """
        options = metadata = None
        if args and isinstance(args[0], RunOptions):
            options, *args = args
            if len(args) == 4:
                metadata = args.pop()
        if len(args) > 3:
            msg = "Run takes (inputs, output_names, target_names)"
            raise TypeError(msg)
        inputs, outputs, targets = (list(args) + [None, None, None])[:3]
        inputs = kwargs.pop("inputs", inputs)
        outputs = kwargs.pop("output_names", kwargs.pop("output_tensor_names", outputs))
        targets = kwargs.pop("target_names", kwargs.pop("target_node_names", targets))
        options = kwargs.pop("run_options", options)
        metadata = kwargs.pop("run_metadata", metadata)
        if kwargs:
            msg = f"Run got unexpected keyword arguments: {', '.join(kwargs)}"
            raise TypeError(msg)
        with self._lock:
            self._check_ready()
            client = self._client
        feeds = _named_pairs(inputs)
        for name, _ in feeds:
            _check_name(name, "input")
        output_names = list(outputs or [])
        target_names = list(targets or [])
        for name in output_names:
            _check_name(name, "output")
        for name in target_names:
            _check_name(name, "target")
            if ":" in name:
                msg = f"Target '{name}' must be a node name, not a tensor name"
                raise errors.InvalidArgumentError(msg)
        if options is None and metadata is not None:
            options = RunOptions(RunOptions.FULL_TRACE)
        if not output_names and not target_names:
            msg = "Must specify at least one target to fetch or execute."
            raise errors.InvalidArgumentError(msg)
        result = client.Run(options or RunOptions(), feeds, output_names, target_names,
                            metadata)
        return [] if result is None else list(result)

    def ListDevices(self) -> list[str]:  # noqa: N802
        from runtime.devices import available_devices  # noqa: PLC0415
        return [d.name for d in available_devices()]

    def Close(self) -> None:  # noqa: N802
        """Release the graph and the variables; later calls are CancelledErrors."""
        with self._lock:
            self._closed = True
            self._client = None
            self._scope = None

    def _check_open(self) -> None:
        if self._closed:
            msg = "Session has been closed."
            raise errors.CancelledError(msg)

    def _check_ready(self) -> None:
        self._check_open()
        if self._client is None:
            msg = "Session was not created with a graph before Run()!"
            raise errors.FailedPreconditionError(msg)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.Close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("empty" if self._graph_def is None else
                                               f"{len(self._graph_def.node)} nodes")
        return f"<Session {state}>"


def _as_graph_def(value) -> GraphDef:
    if isinstance(value, GraphDef):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return parse_graph_def(value)
    if isinstance(value, str):
        if "\n" in value or "{" in value:
            return parse_graph_def(value)
        return read_graph_def(value)
    if hasattr(value, "__fspath__"):
        return read_graph_def(value)
    msg = (f"Session.Create expects a GraphDef (or .pb bytes, .pbtxt text, a file path), got "
           f"{type(value).__name__}")
    raise errors.InvalidArgumentError(msg)


def _named_pairs(inputs) -> list:
    if inputs is None:
        return []
    if isinstance(inputs, Mapping):
        return list(inputs.items())
    if isinstance(inputs, (list, tuple)):
        pairs = []
        for i, pair in enumerate(inputs):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                msg = (f"Input #{i} is {describe_value(pair)}; inputs are (tensor name, value) "
                       f"pairs")
                raise errors.InvalidArgumentError(msg)
            pairs.append(tuple(pair))
        return pairs
    msg = f"Inputs must be a list of (name, value) pairs or a dict, got {type(inputs).__name__}"
    raise errors.InvalidArgumentError(msg)


def _check_name(name, what: str) -> None:
    if not isinstance(name, str):
        msg = f"Session.Run {what} names are strings, got {describe_value(name)}"
        raise errors.InvalidArgumentError(msg)


__all__ += ["RunMetadata", "RunOptions"]
