"""DistributedSession: batch-sharded Run and data-parallel training on dask.distributed.

    from distributed import Client, LocalCluster
    from runtime.distributed import DistributedSession

    client = Client(LocalCluster(n_workers=2, threads_per_worker=1))
    sess = DistributedSession(root, client, min_shard_size=32)
    y_val = sess.Run({x: batch}, y)                  # the same Run forms as ClientSession
    sess.Run({}, [], [train.global_variables_initializer(root)])   # runs on the holder
    sess.Run({x: batch, labels: l}, [loss], [train_step])          # one data-parallel step

A Run whose feeds include the batch splits dimension 0 of every batch feed into shards (one
per worker thread, each at least ``min_shard_size`` rows) and runs the *whole pruned graph*
once per shard as one dask task. The graph is shipped once per worker (scattered with
``broadcast=True`` as a serialised op list and rebuilt there through the op registry: a Graph
does not pickle), and so are the variables, once per version. Fetched results come back in
shard order and are combined according to ``runtime.batch_analysis``: concatenated along the
batch, summed, count-weighted-averaged...; a Run the analysis cannot shard exactly is refused
with a BatchShardingError naming the op, before anything is sent.

Variables live in one parameter holder: ``sess.local``, an ordinary ClientSession of the same
scope (its ResourceMgr). A training target runs as N replicas: every shard computes the
gradients that its variable updates consume as plain fetches (the task is pure, so dask may
retry it on another worker after a loss), the client combines them (the count-weighted mean
for a Mean loss, the sum for a Sum loss) and runs the update ops once on the holder with the
combined gradients fed, then broadcasts the new variables. Every replica therefore runs each
step with the holder's exact values, and nothing is applied twice.

A Run without a batch feed runs on the holder in-process. The engine sits behind a small
``ShardBackend`` interface (slots, broadcast, put, submit, gather, run_on_workers) so another
engine (Ray) can be plugged in without touching the session.
"""

from __future__ import annotations

import importlib
import itertools
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import CancelledError

import numpy as np

from opgraph import errors
from opgraph.graph import Operation, Output
from opgraph.inputs import describe_value
from opgraph.registry import get_op_def
from opgraph.scope import Scope
from runtime.batch_analysis import (
    BATCH, COMBINE_KINDS, MAX, MEAN, MIN, MIXED, PROD, REPLICATED, SHAPE, SUM, BatchShardingError,
    BatchState, analyse, gradient_state, in_gradient_scope, is_update_op)
from runtime.executor import NodeExecStats, StepStats, prune
from runtime.session import (ClientSession, RunMetadata, RunOptions, convert_feed,
                             feed_items, parse_run_arguments, resolve_output,
                             resolve_target)

__all__ = ["DistributedSession", "ShardPlan", "GraphSpec", "serialise_graph", "rebuild_graph",
           "ShardBackend", "DaskBackend", "BatchShardingError"]

#: shard feeds above this many bytes travel by scatter instead of inside the task message
_INLINE_BYTES = 1 << 20


# ---- the graph as plain data ------------------------------------------------------------
class GraphSpec:
    """A Graph as picklable data: one record per op in creation order (name, type, inputs
    by tensor name grouped per OpDef input, control inputs, attrs that are not inferred,
    device, kernel label, colocation, creation site). ``imports`` are the modules whose
    import registers the ops on a worker."""

    __slots__ = ("key", "imports", "records")

    def __init__(self, key: str, imports: tuple, records: tuple):
        self.key, self.imports, self.records = key, imports, records

    def __reduce__(self):
        return (GraphSpec, (self.key, self.imports, self.records))

    def __repr__(self) -> str:
        return f"<GraphSpec {self.key}: {len(self.records)} ops>"


def _tensor_name(out: Output) -> str:
    return f"{out.op.name}:{out.index}"


def serialise_graph(graph, key: str = "", imports=("ops",)) -> GraphSpec:
    """``graph`` as a GraphSpec that ``rebuild_graph`` turns back into the same graph."""
    records = []
    for op in graph.operations():
        args, i = [], 0
        for arg in op.op_def.inputs:
            if arg.is_list:
                n = (op.attrs[arg.number_attr] if arg.number_attr
                     else len(op.attrs[arg.type_list_attr]))
                args.append(tuple(_tensor_name(o) for o in op.inputs[i:i + n]))
                i += n
            else:
                args.append(_tensor_name(op.inputs[i]))
                i += 1
        inferred = op.op_def.inferred_attrs
        attrs = tuple((k, v) for k, v in op.attrs.items() if k not in inferred)
        records.append((op.name, op.type, tuple(args), tuple(c.name for c in op.control_inputs),
                        attrs, op.device, op.kernel_label, tuple(op.colocation), op.site))
    return GraphSpec(key, tuple(imports), tuple(records))


def rebuild_graph(spec: GraphSpec) -> Scope:
    """A new root Scope whose graph is the one ``spec`` describes (same names, ids, attrs)."""
    for module in spec.imports:
        importlib.import_module(module)
    root = Scope.NewRootScope()
    built: dict[str, Operation] = {}

    def tensor(name: str) -> Output:
        op_name, idx = name.rsplit(":", 1)
        return Output(built[op_name], int(idx))

    for name, op_type, args, control, attrs, device, label, coloc, site in spec.records:
        try:
            op_def = get_op_def(op_type)
        except errors.NotFoundError as e:
            msg = (f"Cannot rebuild node '{name}' on a worker: op {op_type} is not registered "
                   f"there; list the module that declares it in worker_imports "
                   f"(now {list(spec.imports)}). {e.message[:200]}")
            raise errors.NotFoundError(msg, name, op_type, site) from None
        scope = root.WithOpName(name)
        if control:
            scope = scope.WithControlDependencies([built[c] for c in control])
        if device:
            scope = scope.WithDevice(device)
        if label:
            scope = scope.WithKernelLabel(label)
        for c in coloc:
            if c in built:
                scope = scope.ColocateWith(built[c])
        inputs = [tuple(tensor(t) for t in a) if isinstance(a, tuple) else tensor(a)
                  for a in args]
        op = scope.build_op(op_def, inputs, dict(attrs), site)
        if op.failed:
            first = root.status().errors[-1]
            msg = f"Rebuilding node '{name}' on a worker failed: {first.message}"
            raise errors.InternalError(msg, name, op_type, site)
        built[name] = op
    return root


# ---- worker side --------------------------------------------------------------------------
class _VariablePayload:
    """Variable values of one version, broadcast to every worker."""

    __slots__ = ("key", "values")

    def __init__(self, key: str, values: dict):
        self.key, self.values = key, values

    def __reduce__(self):
        return (_VariablePayload, (self.key, self.values))


class _Replica:
    """One worker's copy of a graph: a ClientSession over the rebuilt graph."""

    def __init__(self, spec: GraphSpec):
        self.scope = rebuild_graph(spec)
        self.session = ClientSession(self.scope)
        self.var_dtypes = {op.name: op.attrs["dtype"].as_numpy_dtype
                           for op in self.scope.graph().operations() if op.type == "VariableV2"}
        self.vars_key = None
        self.lock = threading.Lock()

    def load(self, payload):
        if payload is None or payload.key == self.vars_key:
            return
        with self.lock:
            if payload.key == self.vars_key:
                return
            for name, value in payload.values.items():
                slot = self.session.resources.variable(name, self.var_dtypes[name])
                with slot.lock:
                    slot.write(value)
            self.vars_key = payload.key

    def variables(self) -> dict:
        return {name: slot.value.copy() for name, slot in
                self.session.resources.variables().items() if slot.value is not None}


_REPLICAS: OrderedDict = OrderedDict()      # (worker address, spec key) -> _Replica
_REPLICAS_LOCK = threading.Lock()
_MAX_REPLICAS = 16


def _worker_address() -> str:
    try:
        from distributed import get_worker  # noqa: PLC0415
        return get_worker().address
    except (ImportError, ValueError):
        return "local"


def _replica_for(spec: GraphSpec, address: str | None = None) -> _Replica:
    key = (address or _worker_address(), spec.key)
    with _REPLICAS_LOCK:
        replica = _REPLICAS.get(key)
        if replica is None:
            replica = _REPLICAS[key] = _Replica(spec)
            while len(_REPLICAS) > _MAX_REPLICAS:
                _REPLICAS.popitem(last=False)
        else:
            _REPLICAS.move_to_end(key)
    return replica


def _run_shard(spec, payload, feed_names, feed_values, fetch_names, target_names, trace,
               shard, n_shards):
    """One dask task: the whole pruned graph on one shard. Pure: no variable is written
    (variables are loaded from the broadcast payload of their version)."""
    if isinstance(feed_values, _ShardFeeds):
        feed_values = feed_values.values
    replica = _replica_for(spec)
    replica.load(payload)
    feeds = list(zip(feed_names, feed_values))
    stats = None
    try:
        if trace:
            metadata = RunMetadata()
            out = replica.session.Run(RunOptions(trace), feeds, list(fetch_names),
                                      list(target_names), metadata)
            stats = metadata.step_stats.node_stats
        else:
            out = replica.session.Run(feeds, list(fetch_names), list(target_names))
    except errors.OpError as e:
        ctx = f" (on shard {shard} of {n_shards}, worker {_worker_address()})"
        raise e.with_context(ctx, e.op_name, e.op_type, e.site) from None
    return (out or []), stats


def _replica_variables(spec_key, vars_key, dask_worker=None):
    """Run on each worker: load the broadcast variables there into its replica, and return
    them (None when the broadcast data is not on that worker)."""
    spec = dask_worker.data.get(spec_key) if spec_key in dask_worker.data else None
    payload = dask_worker.data.get(vars_key) if vars_key in dask_worker.data else None
    if spec is None or (vars_key is not None and payload is None):
        return None
    replica = _replica_for(spec, dask_worker.address)
    replica.load(payload)
    return replica.variables()


class _ShardFeeds:
    """The fed arrays of one shard, when they travel as scattered data."""

    __slots__ = ("values",)

    def __init__(self, values):
        self.values = values

    def __reduce__(self):
        return (_ShardFeeds, (self.values,))


# ---- engines ------------------------------------------------------------------------------
class ShardBackend:
    """What DistributedSession needs from an engine (dask here; Ray would fit the same)."""

    def slots(self) -> list:
        """One entry (a worker id) per task that can run at once."""
        raise NotImplementedError

    def broadcast(self, obj):
        """``obj`` on every worker; returns a handle tasks take as an argument."""
        raise NotImplementedError

    def put(self, objs: list) -> list:
        """Each object on some worker; handles in order."""
        raise NotImplementedError

    def submit(self, fn, *args, key: str, worker=None):
        raise NotImplementedError

    def gather(self, handles: list) -> list:
        raise NotImplementedError

    def release(self, handles) -> None:
        pass

    def run_on_workers(self, fn, *args) -> dict:
        raise NotImplementedError

    def handle_key(self, handle):
        return handle


class DaskBackend(ShardBackend):
    """dask.distributed: a Client. Tasks run with ``allow_other_workers`` so a task of a
    lost worker is retried elsewhere (``distributed.scheduler.allowed-failures`` times)."""

    def __init__(self, client):
        self.client = client
        self._slots = None
        self._slots_at = -1.0

    def slots(self) -> list:
        now = time.monotonic()
        if self._slots is None or now - self._slots_at > 2.0:
            nthreads = self.client.nthreads()
            per_worker = [[w] * n for w, n in sorted(nthreads.items())]
            self._slots = [w for row in itertools.zip_longest(*per_worker) for w in row
                           if w is not None]
            self._slots_at = now
        return self._slots

    def broadcast(self, obj):
        return self.client.scatter([obj], broadcast=True, hash=False)[0]

    def put(self, objs: list) -> list:
        return self.client.scatter(list(objs), hash=False)

    def submit(self, fn, *args, key: str, worker=None):
        kwargs = {"key": key, "pure": False}
        if worker is not None:
            kwargs.update(workers=[worker], allow_other_workers=True)
        return self.client.submit(fn, *args, **kwargs)

    def gather(self, handles: list) -> list:
        return self.client.gather(list(handles))

    def release(self, handles) -> None:
        for h in handles if isinstance(handles, (list, tuple)) else [handles]:
            if h is not None:
                h.release()

    def run_on_workers(self, fn, *args) -> dict:
        return self.client.run(fn, *args)

    def handle_key(self, handle):
        return handle.key


def _as_backend(client) -> ShardBackend:
    if isinstance(client, ShardBackend):
        return client
    if hasattr(client, "submit") and hasattr(client, "scatter"):
        return DaskBackend(client)
    msg = (f"DistributedSession needs a dask.distributed Client (or a ShardBackend), got "
           f"{type(client).__name__}")
    raise TypeError(msg)


# ---- the plan of one (feeds, fetches, targets) --------------------------------------------
class ShardPlan:
    """How a Run is sharded: what every fetch is and how its shard results combine, what
    the shards compute, what the holder runs afterwards. ``describe()`` prints it."""

    def __init__(self, feeds, batch_mask, fetches, fetch_states, shard_fetches,
                 holder_inputs, shard_targets, holder_targets, variables, states):
        self.feeds = feeds                      # [Output]
        self.batch_mask = batch_mask            # [bool] per feed
        self.fetches = fetches                  # [Output] the user's fetches
        self.fetch_states = fetch_states        # [BatchState] per user fetch
        self.shard_fetches = shard_fetches      # [Output] computed by every shard
        self.holder_inputs = holder_inputs      # [(Output, BatchState)] fed to the holder
        self.shard_targets = shard_targets      # [Operation]
        self.holder_targets = holder_targets    # [Operation]
        self.variables = variables              # [str] variables the shards read
        self.has_updates = False                # the holder runs variable updates
        self.states = states                    # Output -> BatchState
        self.feed_names = [_tensor_name(o) for o in feeds]
        self.shard_fetch_names = [_tensor_name(o) for o in shard_fetches]
        self.shard_target_names = [op.name for op in shard_targets]
        index = {o: i for i, o in enumerate(shard_fetches)}
        self.fetch_index = [index[o] for o in fetches]
        self.holder_index = [index[o] for o, _ in holder_inputs]

    @property
    def needs_shards(self) -> bool:
        return bool(self.shard_fetches or self.shard_targets)

    def describe(self) -> str:
        lines = [f"feed {o.name}: {'batch (split along axis 0)' if m else 'replicated'}"
                 for o, m in zip(self.feeds, self.batch_mask)]
        lines += [f"fetch {o.name}: {s.describe()}"
                  for o, s in zip(self.fetches, self.fetch_states)]
        lines += [f"update input {o.name}: {s.describe()}" for o, s in self.holder_inputs]
        lines += [f"target {t.name}: on every shard" for t in self.shard_targets]
        lines += [f"target {t.name}: once on the parameter holder" for t in self.holder_targets]
        return "\n".join(lines)


def _refuse(msg: str, op=None):
    raise BatchShardingError(msg, getattr(op, "name", None), getattr(op, "type", None),
                             getattr(op, "site", None))


def combine(state: BatchState, parts: list, rows: list) -> np.ndarray:
    """The whole batch's value of a tensor from its shard values (``rows`` per shard)."""
    if len(parts) == 1 or state.kind not in (BATCH, SHAPE) + COMBINE_KINDS:
        return np.asarray(parts[0])
    parts = [np.asarray(p) for p in parts]
    dtype = parts[0].dtype
    kind = state.kind
    if kind == BATCH:
        return np.concatenate(parts, axis=state.axis)
    if kind == SHAPE:
        out = parts[0].copy()
        out[state.axis] = sum(int(p[state.axis]) for p in parts)
        return out
    if kind == SUM:
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        return np.asarray(total, dtype=dtype)
    if kind == MEAN:
        wide = np.complex128 if dtype.kind == "c" else np.float64
        total_rows = sum(rows)
        acc = sum(p.astype(wide) * (r / total_rows) for p, r in zip(parts, rows))
        return np.asarray(acc).astype(dtype)
    fn = {MAX: np.maximum, MIN: np.minimum, PROD: np.multiply}[kind]
    if dtype == np.bool_ and kind in (MAX, MIN):
        fn = np.logical_or if kind == MAX else np.logical_and
    out = parts[0]
    for p in parts[1:]:
        out = fn(out, p)
    return np.asarray(out, dtype=dtype)


# ---- the session --------------------------------------------------------------------------
class DistributedSession:
    """ClientSession's Run forms over a dask.distributed cluster (see the module doc).

    Args:
      scope: the graph to run (must be ok()).
      client: a ``distributed.Client`` (or a ShardBackend).
      min_shard_size: the fewest rows a shard gets; fewer rows than twice this run as one
        shard. Shards: min(worker threads, rows // min_shard_size), or ``max_shards``.
      max_shards: cap on the number of shards (default: the cluster's worker threads).
      batch_inputs: the tensors that carry the batch (default: every fed tensor whose
        static dimension 0 is unknown and whose value has at least one dimension).
      loss: the loss(es) the graph's gradients were built from (default: found from the
        gradients' OnesLike seeds).
      worker_imports: modules a worker imports to register the graph's ops.
      holder: the parameter holder (default: a new ClientSession of ``scope``).
    """

    def __init__(self, scope: Scope, client, *, min_shard_size: int = 16,
                 max_shards: int | None = None, batch_inputs=None, loss=None,
                 worker_imports=("ops",), holder: ClientSession | None = None):
        if not isinstance(scope, Scope):
            msg = f"DistributedSession needs a Scope, got {type(scope).__name__}"
            raise TypeError(msg)
        if isinstance(min_shard_size, bool) or not isinstance(min_shard_size, int) or \
                min_shard_size < 1:
            msg = f"min_shard_size must be a positive int, got {describe_value(min_shard_size)}"
            raise errors.InvalidArgumentError(msg)
        if max_shards is not None and (not isinstance(max_shards, int) or max_shards < 1):
            msg = f"max_shards must be a positive int or None, got {describe_value(max_shards)}"
            raise errors.InvalidArgumentError(msg)
        self.local = holder if holder is not None else ClientSession(scope)
        self._scope = scope
        self._graph = scope.graph()
        self.backend = _as_backend(client)
        self.client = client
        self.min_shard_size = min_shard_size
        self.max_shards = max_shards
        self._batch_inputs = None if batch_inputs is None else {
            resolve_output(self._graph, t, "batch input") for t in batch_inputs}
        self._losses = None if loss is None else [
            resolve_output(self._graph, t, "loss")
            for t in (loss if isinstance(loss, (list, tuple)) else [loss])]
        self._imports = tuple(worker_imports)
        self._id = uuid.uuid4().hex[:12]
        self._lock = threading.RLock()
        self._step_lock = threading.Lock()
        self._plans: dict = {}
        self._spec = None               # (graph version, handle)
        self._vars = None               # (payload handle, {name: array object sent})
        self._vars_version = itertools.count()
        self._runs = itertools.count()
        self.last_run_shards = 0

    @property
    def resources(self):
        """The holder's variables (so train.Saver can save and restore this session)."""
        return self.local.resources

    def close(self) -> None:
        """Release what this session keeps on the cluster (graph and variables)."""
        with self._lock:
            if self._spec is not None:
                self.backend.release(self._spec[1])
            if self._vars is not None:
                self.backend.release(self._vars[0])
            self._spec = self._vars = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- shard geometry -----------------------------------------------------------------
    def num_shards(self, rows: int) -> int:
        if rows <= 0:
            return 1
        slots = self.max_shards or len(self.backend.slots())
        return max(1, min(slots, rows // self.min_shard_size, rows))

    # ---- analysis -----------------------------------------------------------------------
    def analyse(self, feeds=None, fetches=None, targets=None) -> ShardPlan:
        """The ShardPlan of a Run, without running it (raises BatchShardingError for a Run
        that cannot be sharded). Feed values are needed to tell the batch feeds apart."""
        _, _, feed_outs, arrays, fetch_outs, target_ops = self._parse(feeds, fetches, targets)
        mask, _ = self._batch_mask(feed_outs, arrays)
        return self._plan(feed_outs, mask, fetch_outs, target_ops)

    def _parse(self, feeds, fetches, targets):
        graph = self._graph
        single = fetches is not None and not isinstance(fetches, (list, tuple))
        fetch_list = [] if fetches is None else [fetches] if single else list(fetches)
        if targets is None:
            targets = []
        elif not isinstance(targets, (list, tuple)):
            targets = [targets]
        if not fetch_list and not targets:
            msg = "Must specify at least one target to fetch or execute."
            raise errors.InvalidArgumentError(msg)
        fetch_outs = [resolve_output(graph, f, "fetch") for f in fetch_list]
        target_ops = [resolve_target(graph, t) for t in targets]
        feed_outs, arrays = [], []
        for k, v in feed_items(feeds):
            out = resolve_output(graph, k, "feed")
            if out in feed_outs:
                msg = f"Endpoint '{out.name}' fed more than once."
                raise errors.InvalidArgumentError(msg)
            feed_outs.append(out)
            arrays.append(convert_feed(out, v))
        return single, bool(fetch_list), feed_outs, arrays, fetch_outs, target_ops

    def _batch_mask(self, feed_outs, arrays):
        declared = self._batch_inputs
        if declared is not None:
            mask = [o in declared for o in feed_outs]
            for o, m in zip(feed_outs, mask):
                dims = o.shape.dims
                if m and dims is not None and dims and dims[0] is not None:
                    _refuse(f"Batch input '{o.name}' has a static dimension 0 of {dims[0]}: a "
                            f"shard with fewer rows cannot be fed to it; build it with "
                            f"dimension 0 unknown (-1)", o.op)
                if m and (dims == () or arrays[feed_outs.index(o)].ndim == 0):
                    _refuse(f"Batch input '{o.name}' is a scalar: it has no dimension 0 to "
                            f"split", o.op)
        else:
            mask = [(o.shape.dims is None or (len(o.shape.dims) > 0 and o.shape.dims[0] is None))
                    and a.ndim >= 1 for o, a in zip(feed_outs, arrays)]
        rows = {o.name: a.shape[0] for o, a, m in zip(feed_outs, arrays, mask) if m}
        if len(set(rows.values())) > 1:
            shown = ", ".join(f"{k}: {v}" for k, v in rows.items())
            _refuse(f"The batch feeds have different numbers of rows ({shown}); pass "
                    f"batch_inputs=[...] to DistributedSession to say which tensors carry the "
                    f"batch")
        return mask, (next(iter(rows.values())) if rows else 0)

    def _plan(self, feed_outs, mask, fetch_outs, target_ops) -> ShardPlan:
        key = (tuple(feed_outs), tuple(mask), tuple(fetch_outs), tuple(target_ops),
               self._graph.version)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._make_plan(feed_outs, mask, fetch_outs, target_ops)
            with self._lock:
                self._plans[key] = plan
        return plan

    def _make_plan(self, feed_outs, mask, fetch_outs, target_ops) -> ShardPlan:  # noqa: C901
        feed_states = {o: BatchState.batch(0) if m else REPLICATED
                       for o, m in zip(feed_outs, mask)}
        feed_set = set(feed_outs)
        pruned = prune(feed_set, fetch_outs, target_ops)
        states = analyse(pruned, feed_states)

        def state(o):
            return states.get(o, REPLICATED)

        fetch_states = []
        for f in fetch_outs:
            s = state(f)
            if s.kind == MIXED:
                _refuse(f"Cannot shard fetch '{f.name}' by the batch: {s.reason}.", f.op)
            fetch_states.append(s)

        shard_targets, holder_targets = [], []
        for t in target_ops:
            sub = prune(feed_set, [], [t])
            if any(is_update_op(op) for op in sub) or all(
                    state(o).is_replicated for op in sub for o in op.outputs):
                holder_targets.append(t)
                continue
            bad = next((state(o) for op in sub for o in op.outputs
                        if state(o).kind == MIXED), None)
            if bad is not None:
                _refuse(f"Cannot shard target '{t.name}' by the batch: {bad.reason}.", t)
            shard_targets.append(t)

        holder_inputs = []
        for op in prune(feed_set, [], holder_targets):
            if not is_update_op(op):
                continue
            for inp in op.inputs:
                s = state(inp)
                if s.is_replicated or any(inp == h for h, _ in holder_inputs):
                    continue
                if s.kind == MIXED and in_gradient_scope(inp.op):
                    s = gradient_state(inp, states, self._losses)
                if s.kind == MIXED:
                    _refuse(f"Cannot run the variable update '{op.name}' ({op.type}) "
                            f"data-parallel: its input '{inp.name}' is computed from the batch "
                            f"and {s.reason}.", op)
                holder_inputs.append((inp, s))

        # The holder runs after the shards, with the combined values fed: what it runs
        # must not depend on the batch any more.
        replicated = [o for o, m in zip(feed_outs, mask) if not m]
        holder_feeds = set(replicated) | {o for o, _ in holder_inputs}
        holder_ops = prune(holder_feeds, [], holder_targets)
        holder_states = analyse(holder_ops, {o: REPLICATED for o in holder_feeds})
        for op in holder_ops:
            if op.type == "Placeholder" and any(op.output(0) == o for o, m in
                                                zip(feed_outs, mask) if m):
                _refuse(f"Cannot shard this Run: a target needs the batch feed '{op.name}' on "
                        f"the parameter holder, outside the shards.", op)
            looked = op.inputs if is_update_op(op) else op.outputs
            bad = next((holder_states[o] for o in looked
                        if not holder_states.get(o, REPLICATED).is_replicated), None)
            if bad is not None:
                _refuse(f"Cannot shard this Run: '{op.name}' ({op.type}) must run on the "
                        f"parameter holder after the shards are combined, but it depends on "
                        f"the batch ({bad.describe()}).", op)

        shard_fetches = list(dict.fromkeys([*fetch_outs, *(o for o, _ in holder_inputs)]))
        shard_ops = prune(feed_set, shard_fetches, shard_targets) if (
            shard_fetches or shard_targets) else []
        for op in shard_ops:
            if is_update_op(op):
                _refuse(f"Cannot shard this Run: the shards would run the variable update "
                        f"'{op.name}' ({op.type}), which a fetch or target depends on (by a "
                        f"control dependency or its output); variable updates run once, on "
                        f"the parameter holder.", op)
        variables = [op.name for op in shard_ops if op.type == "VariableV2"]
        plan = ShardPlan(list(feed_outs), list(mask), list(fetch_outs), fetch_states,
                         shard_fetches, holder_inputs, shard_targets, holder_targets,
                         variables, states)
        plan.has_updates = any(is_update_op(op) for op in holder_ops)
        return plan

    # ---- Run ----------------------------------------------------------------------------
    def Run(self, *args, **kwargs):  # noqa: N802  (TF's C++ name)
        """Run(fetches) | Run(feeds, fetches) | Run(feeds, fetches, targets) |
        Run(run_options, feeds, fetches, targets, run_metadata), as ClientSession."""
        feeds, fetches, targets, options, metadata = parse_run_arguments(args, kwargs)
        return self._run(feeds, fetches, targets, options, metadata)

    def _run(self, feeds, fetches, targets, options, metadata):
        self._scope.status().raise_if_error()
        single, has_fetches, feed_outs, arrays, fetch_outs, target_ops = self._parse(
            feeds, fetches, targets)
        mask, rows = self._batch_mask(feed_outs, arrays)
        if not any(mask):
            self.last_run_shards = 0
            return self._local_run(feed_outs, arrays, fetch_outs, target_ops, options,
                                   metadata, single)
        trace = _trace_level(options, metadata)
        plan = self._plan(feed_outs, mask, fetch_outs, target_ops)
        stats = (metadata.step_stats if metadata is not None else StepStats()) if trace \
            else None
        if plan.has_updates:
            with self._step_lock:
                results = self._sharded(plan, arrays, rows, trace, stats)
        else:
            results = self._sharded(plan, arrays, rows, trace, stats)
        if single:
            return results[0]
        return results if has_fetches else None

    def _local_run(self, feed_outs, arrays, fetch_outs, target_ops, options, metadata,
                   single):
        args = [list(zip(feed_outs, arrays)), fetch_outs[0] if single else fetch_outs,
                target_ops]
        if options is not None or metadata is not None:
            return self.local.Run(options or RunOptions(), *args, metadata)
        out = self.local.Run(*args)
        return out

    def _sharded(self, plan: ShardPlan, arrays, rows, trace, stats):
        results_by_shard, sizes = [], [rows]
        if plan.needs_shards:
            results_by_shard, sizes = self._run_shards(plan, arrays, rows, trace, stats)
        self.last_run_shards = len(sizes) if plan.needs_shards else 0
        outputs = []
        for i, s in zip(plan.fetch_index, plan.fetch_states):
            outputs.append(combine(s, [r[i] for r in results_by_shard], sizes))
        if plan.holder_targets:
            feeds = [(o, a) for o, a, m in zip(plan.feeds, arrays, plan.batch_mask) if not m]
            feeds += [(o, combine(s, [r[i] for r in results_by_shard], sizes))
                      for (o, s), i in zip(plan.holder_inputs, plan.holder_index)]
            if trace:
                md = RunMetadata()
                self.local.Run(RunOptions(trace), feeds, [], plan.holder_targets, md)
                stats.node_stats.extend(_relabelled(md.step_stats.node_stats, "holder"))
            else:
                self.local.Run(feeds, [], plan.holder_targets)
            if plan.has_updates:
                self._variables_handle(plan.variables)      # broadcast the new values now
        return outputs

    def _run_shards(self, plan, arrays, rows, trace, stats):
        n = self.num_shards(rows)
        sizes = [rows // n + (1 if i < rows % n else 0) for i in range(n)]
        starts = np.cumsum([0, *sizes])
        shard_feeds = [[a[starts[i]:starts[i + 1]] if m else a
                        for a, m in zip(arrays, plan.batch_mask)] for i in range(n)]
        for attempt in (0, 1):
            spec = self._spec_handle()
            variables = self._variables_handle(plan.variables)
            handles, put = self._submit(plan, spec, variables, shard_feeds, trace)
            try:
                results = self.backend.gather(handles)
                break
            except CancelledError as e:            # scattered data lost with its workers
                if attempt:
                    msg = (f"Shard tasks were cancelled twice ({type(e).__name__}: {e}); no "
                           f"variable was updated")
                    raise errors.UnavailableError(msg) from e
                with self._lock:
                    self._spec = self._vars = None
            except errors.OpError:
                raise
            except Exception as e:  # noqa: BLE001  (engine failures: lost workers)
                if type(e).__name__ == "KilledWorker":
                    msg = (f"A shard task failed on every worker it was retried on ({e}); no "
                           f"variable was updated")
                    raise errors.UnavailableError(msg) from e
                raise
            finally:
                self.backend.release(handles)
                self.backend.release(put)
        if trace:
            for i, (_, shard_stats) in enumerate(results):
                stats.node_stats.extend(_relabelled(shard_stats or (), f"shard:{i}"))
        return [r for r, _ in results], sizes

    def _submit(self, plan, spec, variables, shard_feeds, trace):
        n = len(shard_feeds)
        run = next(self._runs)
        big = sum(a.nbytes for a in shard_feeds[0]) > _INLINE_BYTES
        put = self.backend.put([_ShardFeeds(f) for f in shard_feeds]) if big else []
        slots = self.backend.slots()
        handles = []
        for i in range(n):
            payload = put[i] if big else shard_feeds[i]
            worker = None if big or not slots else slots[i % len(slots)]
            handles.append(self.backend.submit(
                _run_shard, spec, variables, plan.feed_names, payload,
                plan.shard_fetch_names, plan.shard_target_names, trace, i, n,
                key=f"opgraph-shard-{self._id}-{run}-{i}", worker=worker))
        return handles, put

    # ---- what the workers hold ----------------------------------------------------------
    def _spec_handle(self):
        with self._lock:
            version = self._graph.version
            if self._spec is None or self._spec[0] != version:
                if self._spec is not None:
                    self.backend.release(self._spec[1])
                spec = serialise_graph(self._graph, f"{self._id}-g{version}", self._imports)
                self._spec = (version, self.backend.broadcast(spec))
            return self._spec[1]

    def _variables_handle(self, names):
        """The broadcast payload of the holder's current values of ``names`` (re-sent only
        when one changed: every write stores a new array object)."""
        slots = self.local.resources.variables()
        current = {n: slots[n].value for n in names if n in slots and slots[n].value is not None}
        with self._lock:
            if self._vars is not None:
                sent = self._vars[1]
                if current.keys() == sent.keys() and all(current[k] is sent[k] for k in sent):
                    return self._vars[0]
                self.backend.release(self._vars[0])
            if not current:
                self._vars = (None, current)
                return None
            payload = _VariablePayload(f"{self._id}-v{next(self._vars_version)}", current)
            self._vars = (self.backend.broadcast(payload), current)
            return self._vars[0]

    def replica_variables(self) -> dict:
        """{worker: {variable name: value}}: the variables each worker's replica runs the
        next step with (the broadcast values, loaded into the replica); None for a worker
        that does not hold the broadcast (e.g. one that joined since)."""
        with self._lock:
            spec = self._spec_handle()
            names = list(self._vars[1]) if self._vars is not None else []
            variables = self._variables_handle(names)
            spec_key = self.backend.handle_key(spec)
            vars_key = None if variables is None else self.backend.handle_key(variables)
        return self.backend.run_on_workers(_replica_variables, spec_key, vars_key)


def _trace_level(options, metadata) -> int:
    if options is not None and not isinstance(options, RunOptions):
        msg = f"run_options must be a RunOptions, got {type(options).__name__}"
        raise errors.InvalidArgumentError(msg)
    if metadata is not None and not isinstance(metadata, RunMetadata):
        msg = f"run_metadata must be a RunMetadata, got {type(metadata).__name__}"
        raise errors.InvalidArgumentError(msg)
    level = 0 if options is None else options.trace_level
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or \
            not RunOptions.NO_TRACE <= level <= RunOptions.FULL_TRACE:
        msg = (f"RunOptions.trace_level must be NO_TRACE (0), SOFTWARE_TRACE (1), "
               f"HARDWARE_TRACE (2) or FULL_TRACE (3), got {describe_value(level)}")
        raise errors.InvalidArgumentError(msg)
    return int(level)


def _relabelled(node_stats, where: str) -> list:
    return [NodeExecStats(s.node_name, s.op_type, f"{where}{s.device}", s.start_us,
                          s.duration_us, s.output_shapes, s.output_dtypes, s.thread_id)
            for s in node_stats]
