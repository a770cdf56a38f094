"""ClientSession: run a Scope's graph.

    >>> sess = ClientSession(root)
    >>> out = sess.Run({x: x_value}, [y])          # list of numpy arrays
    >>> out = sess.Run(y)                           # a single fetch gives one array

Run forms (as the C++ API): ``Run(fetches)``, ``Run(feeds, fetches)``,
``Run(feeds, fetches, targets)`` and ``Run(run_options, feeds, fetches, targets,
run_metadata)``. Feeds map an Output (or op wrapper, or "name:0") to a value; any Output may
be fed. Each (feeds, fetches, targets) is compiled once into a straight-line plan and cached;
the graph may keep growing after the first Run (new nodes only add plans). One session may
be Run from several threads at once.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping

import numpy as np

from opgraph import errors
from opgraph.graph import Operation, Output
from opgraph.inputs import describe_value, to_ndarray
from opgraph.scope import Scope
from runtime import devices
from runtime.executor import StepStats, compile_plan, node_error
from runtime.placement import Placer, SessionOptions, fetch_to_host
from runtime.resources import ResourceMgr

__all__ = ["ClientSession", "RunOptions", "RunMetadata", "SessionOptions"]


class RunOptions:
    """Per-Run options. ``trace_level`` > NO_TRACE records per-node step stats into the
    RunMetadata passed to Run; ``fetch_on_device`` returns fetched GPU tensors as device
    (CuPy) arrays instead of copying them to numpy."""

    NO_TRACE, SOFTWARE_TRACE, HARDWARE_TRACE, FULL_TRACE = 0, 1, 2, 3

    def __init__(self, trace_level: int = 0, fetch_on_device: bool = False):
        self.trace_level = trace_level
        self.fetch_on_device = fetch_on_device

    def _validated_level(self) -> int:
        level = self.trace_level
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or \
                not RunOptions.NO_TRACE <= level <= RunOptions.FULL_TRACE:
            msg = (f"RunOptions.trace_level must be NO_TRACE (0), SOFTWARE_TRACE (1), "
                   f"HARDWARE_TRACE (2) or FULL_TRACE (3), got {describe_value(level)}")
            raise errors.InvalidArgumentError(msg)
        return int(level)


class RunMetadata:
    """Filled by a traced Run: ``step_stats.node_stats`` (name, type, device, start,
    duration, output shapes and dtypes per node, inserted copies included); by every Run
    given one: ``device_placement`` (node name -> PlacementRecord: requested, device, why)."""

    def __init__(self):
        self.step_stats = StepStats()
        self.device_placement = {}


_TENSOR_NAME = re.compile(r"([^:]+)(?::([0-9]+))?")


def _parse_tensor_name(graph, value: str) -> Output:
    m = _TENSOR_NAME.fullmatch(value)
    if m is None or not m.group(1).isascii():
        msg = (f"Invalid tensor name {describe_value(value)}: expected '<node name>' or "
               f"'<node name>:<output index>' (a non-negative decimal index)")
        raise errors.InvalidArgumentError(msg)
    name, idx = m.groups()
    return graph.get_operation(name).output(int(idx) if idx else 0)


def resolve_output(graph, value, what: str) -> Output:
    """``value`` (an Output, op wrapper, Operation or "node:index" name) as an Output of
    ``graph``; InvalidArgumentError / FailedPreconditionError naming ``what`` otherwise."""
    if isinstance(value, Output):
        out = value
    elif isinstance(value, str):
        out = _parse_tensor_name(graph, value)
    elif isinstance(getattr(value, "output", None), Output):
        out = value.output
    elif isinstance(value, Operation):
        out = value.output(0)
    else:
        msg = (f"Cannot use {type(value).__name__} {describe_value(value)} as a {what}; "
               f"expected an Output, an op wrapper or a tensor name")
        raise errors.InvalidArgumentError(msg)
    if out.op.failed:
        msg = f"{what.capitalize()} '{out.name}' belongs to an op that failed to build"
        raise errors.FailedPreconditionError(msg, out.op.name, out.op.type, out.op.site)
    if out.op.graph is not graph:
        msg = f"{what.capitalize()} '{out.name}' is from another graph than this session's"
        raise errors.InvalidArgumentError(msg, out.op.name, out.op.type, out.op.site)
    return out


def resolve_target(graph, value) -> Operation:
    """``value`` (an Operation, op wrapper, Output or node name) as an Operation of ``graph``."""
    if isinstance(value, Operation):
        op = value
    elif isinstance(value, str):
        op = graph.get_operation(value)
    elif isinstance(value, Output):
        op = value.op
    elif isinstance(getattr(value, "operation", None), Operation):
        op = value.operation
    else:
        msg = (f"Cannot use {type(value).__name__} {describe_value(value)} as a target; "
               f"expected an Operation, an op wrapper or a node name")
        raise errors.InvalidArgumentError(msg)
    if op.graph is not graph or op.failed:
        msg = f"Target '{op.name}' is not a node of this session's graph"
        raise errors.InvalidArgumentError(msg, op.name, op.type, op.site)
    return op


def convert_feed(out: Output, value) -> np.ndarray:
    """The fed ``value`` as the array the plan gets: a numpy array of exactly the tensor's
    dtype is used as is (not copied: results that may share its memory are copied instead),
    other values are converted by TF's rules without silent loss."""
    want = out.dtype
    if value.__class__ is np.ndarray and value.dtype == want.as_numpy_dtype \
            and value.dtype.isnative and value.dtype.kind not in "OUS":
        arr = value  # (the common case, an array of exactly the tensor's dtype: used as is)
    else:
        arr = _converted_feed(out, value, want)
    if not out.shape.is_compatible_with(arr.shape):
        msg = (f"Fed value for '{out.name}' has shape {list(arr.shape)}, which is not "
               f"compatible with the tensor's static shape {out.shape}")
        raise errors.InvalidArgumentError(msg, out.op.name, out.op.type, out.op.site)
    return arr


def _converted_feed(out: Output, value, want) -> np.ndarray:
    """convert_feed's general case: ``value`` by TF's conversion rules, or its error."""
    if isinstance(value, (np.ndarray, np.generic)):
        strings = want.name == "string" and value.dtype.kind in "USO"
        if value.dtype.newbyteorder("=") != want.as_numpy_dtype and not strings:
            msg = (f"Fed value for '{out.name}' has dtype {value.dtype} but the tensor's dtype "
                   f"is {want.name}")
            raise errors.InvalidArgumentError(msg, out.op.name, out.op.type, out.op.site)
    try:
        return to_ndarray(value, want)
    except errors.OpError as e:
        msg = f"Cannot feed {describe_value(value)} to '{out.name}' ({want.name}): {e.message}"
        raise errors.InvalidArgumentError(msg, out.op.name, out.op.type, out.op.site) \
            from None


def parse_run_arguments(args, kwargs):
    """The C++ Run forms as (feeds, fetches, targets, run_options, run_metadata):
    ``(fetches)``, ``(feeds, fetches)``, ``(feeds, fetches, targets)`` and
    ``(run_options, feeds, fetches, targets, run_metadata)``, or the same by keyword."""
    options = metadata = None
    if args and isinstance(args[0], RunOptions):
        options, *args = args
        if len(args) == 4:
            metadata = args.pop()
    feeds = fetches = targets = None
    if len(args) == 1:
        fetches = args[0]
    elif len(args) == 2:
        feeds, fetches = args
    elif len(args) == 3:
        feeds, fetches, targets = args
    elif args:
        msg = f"Run takes at most 5 positional arguments, got {len(args) + bool(options)}"
        raise TypeError(msg)
    kwargs = dict(kwargs)
    feeds = kwargs.pop("feeds", feeds)
    fetches = kwargs.pop("fetches", fetches)
    targets = kwargs.pop("targets", targets)
    options = kwargs.pop("run_options", options)
    metadata = kwargs.pop("run_metadata", metadata)
    if kwargs:
        msg = f"Run got unexpected keyword arguments: {', '.join(kwargs)}"
        raise TypeError(msg)
    return feeds, fetches, targets, options, metadata


class ClientSession:
    """Runs the graph of ``scope``; refuses a scope that is not ok(). ``options``: a
    SessionOptions (allow_soft_placement, log_device_placement) or None."""

    def __init__(self, scope: Scope, target: str = "", options=None):
        if not isinstance(scope, Scope):
            msg = f"ClientSession needs a Scope, got {type(scope).__name__}"
            raise TypeError(msg)
        if target:
            msg = f"Only in-process sessions are supported (target ''), got {target!r}"
            raise errors.UnimplementedError(msg)
        self._scope = scope
        self._check_scope()
        self._graph = scope.graph()
        if options is not None and not isinstance(options, SessionOptions):
            msg = f"options must be a SessionOptions, got {type(options).__name__}"
            raise TypeError(msg)
        self._devices = devices.available_devices()
        self._placer = Placer(self._devices, options)
        self._lock = threading.RLock()
        self._plans = {}
        self._placed = {}       # node name -> (device name, kernel)
        self._folded = {}       # node name -> tuple of output values
        self.resources = ResourceMgr()   # variable values of this session

    def _check_scope(self):
        status = self._scope.status()
        if not status.ok():
            first = status.errors[0]
            more = "\n".join(f"  - {e.message}" for e in status.errors[1:])
            msg = (f"The scope has {len(status.errors)} build error(s); fix them before running."
                   f"\n  - {first.message}" + (f"\n{more}" if more else ""))
            raise type(first)(msg, first.op_name, first.op_type, first.site)

    # ---- used by compile_plan -----------------------------------------------------------
    def placement(self, node):
        """(device name, kernel) for ``node``: placed and instantiated once per session."""
        placed = self._placed.get(node.name)
        if placed is None:
            placed = self._place(node)
            self._placed[node.name] = placed
        return placed

    def _place(self, node):
        device, kernel = self._placer.place(node, self.placement)   # runtime/placement.py
        if getattr(kernel, "needs_resources", False):
            kernel.resources = self.resources     # variables live in the session
        if getattr(kernel, "needs_session", False):
            kernel.session = self                 # kernels that compile sub-plans (While)
        return device, kernel

    def fold(self, op, step, args):
        """The outputs of constant ``op``, computed once per session."""
        values = self._folded.get(op.name)
        if values is None:
            try:
                result = step.call(*args)
            except Exception as e:  # noqa: BLE001
                raise node_error(e, step) from e
            values = (result,) if op.num_outputs == 1 else tuple(result)
            try:
                _check_folded(op, values)
            except errors.OpError as e:
                raise node_error(e, step) from None
            for v in values:        # the cache is shared by every Run: nobody may write it
                if isinstance(v, np.ndarray) and v.flags.writeable:
                    v.setflags(write=False)
            self._folded[op.name] = values
        return values

    # ---- Run ----------------------------------------------------------------------------
    def Run(self, *args, **kwargs):  # noqa: N802  (TF's C++ name)
        """Run(fetches) | Run(feeds, fetches) | Run(feeds, fetches, targets) |
        Run(run_options, feeds, fetches, targets, run_metadata).

        Returns a list of numpy arrays for a list of fetches, one array for a single fetch,
        and None when there are only targets.
        """
        feeds, fetches, targets, options, metadata = parse_run_arguments(args, kwargs)
        return self._run(feeds, fetches, () if targets is None else targets, options,
                         metadata)

    def _run(self, feeds, fetches, targets, options, metadata):
        self._check_scope()
        graph = self._graph
        trace = _trace_requested(options, metadata)
        single = fetches is not None and not isinstance(fetches, (list, tuple))
        fetch_list = [] if fetches is None else [fetches] if single else list(fetches)
        if not isinstance(targets, (list, tuple)):
            targets = [targets]
        if not fetch_list and not targets:
            msg = "Must specify at least one target to fetch or execute."
            raise errors.InvalidArgumentError(msg)
        fetch_outs = tuple(resolve_output(graph, f, "fetch") for f in fetch_list)
        target_ops = tuple(resolve_target(graph, t) for t in targets)
        feed_outs, feed_values, user_arrays = [], [], []
        for k, v in feed_items(feeds):
            out = resolve_output(graph, k, "feed")
            if out in feed_outs:
                msg = f"Endpoint '{out.name}' fed more than once."
                raise errors.InvalidArgumentError(msg)
            feed_outs.append(out)
            arr = convert_feed(out, v)
            feed_values.append(arr)
            if isinstance(v, np.ndarray):       # memory the caller can still write
                user_arrays.append(arr)
        key = (tuple(feed_outs), fetch_outs, target_ops)
        plan = self._plans.get(key)
        if plan is None:
            with self._lock:
                plan = self._plans.get(key)
                if plan is None:
                    plan = compile_plan(self, key[0], fetch_outs, target_ops)
                    self._plans[key] = plan
        if trace:
            stats = metadata.step_stats if metadata is not None else StepStats()
            results = plan.run_traced(feed_values, stats)
        else:
            results = plan.run(feed_values)
        if metadata is not None:
            records = self._placer.records
            metadata.device_placement.update(
                (s.node.name, records[s.node.name]) for s in plan.steps
                if s.node.name in records)
        if not (options is not None and getattr(options, "fetch_on_device", False)):
            results = fetch_to_host(results)
            results = [_unaliased(r, user_arrays) for r in results]
        if single:
            return results[0]
        return results if fetch_list else None


def _trace_requested(options, metadata) -> bool:
    if options is not None and not isinstance(options, RunOptions):
        msg = f"run_options must be a RunOptions, got {type(options).__name__}"
        raise errors.InvalidArgumentError(msg)
    if metadata is not None and not isinstance(metadata, RunMetadata):
        msg = f"run_metadata must be a RunMetadata, got {type(metadata).__name__}"
        raise errors.InvalidArgumentError(msg)
    return options is not None and options._validated_level() > RunOptions.NO_TRACE


def feed_items(feeds):
    """(tensor, value) pairs of ``feeds``: a mapping, a list/tuple of pairs, or None."""
    if feeds is None:
        return ()
    if isinstance(feeds, Mapping):
        return list(feeds.items())
    if isinstance(feeds, (list, tuple)):
        for i, pair in enumerate(feeds):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                msg = (f"Feed #{i} is {type(pair).__name__} {describe_value(pair)}; feeds are "
                       f"a mapping or a list of (tensor, value) pairs")
                raise errors.InvalidArgumentError(msg)
        return list(feeds)
    msg = (f"Feeds must be a mapping or a list of (tensor, value) pairs, got "
           f"{type(feeds).__name__} {describe_value(feeds)}")
    raise errors.InvalidArgumentError(msg)


def _unaliased(result, user_arrays) -> np.ndarray:
    """``result`` as an array the caller may keep and write without changing anything else:
    a copy when it may share memory with a fed array; cached constants are read-only."""
    if not isinstance(result, np.ndarray):
        return np.asarray(result)
    for fed in user_arrays:
        if np.may_share_memory(result, fed):
            return result.copy()
    return result


def _check_folded(op, values) -> None:
    """A folded (cached) result must have the dtype and shape inference promised: it is
    reused by every later Run, so a kernel bug here is reported, not cached."""
    if len(values) != op.num_outputs:
        msg = f"Kernel for {op.type} returned {len(values)} outputs, expected {op.num_outputs}"
        raise errors.InternalError(msg)
    for k, v in enumerate(values):
        want = op.output_dtypes[k]
        shape = np.shape(v)
        dtype = getattr(v, "dtype", None)
        if (want is not None and dtype != want.as_numpy_dtype) or \
                not op.output_shapes[k].is_compatible_with(shape):
            msg = (f"Kernel for {op.type} returned output {k} with shape {list(shape)} and "
                   f"dtype {dtype if dtype is not None else type(v).__name__}, but shape "
                   f"inference gives {op.output_shapes[k]} and {want.name if want else '?'} "
                   f"(a kernel bug)")
            raise errors.InternalError(msg)
