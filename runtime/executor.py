"""Compile the pruned subgraph of one (feeds, fetches, targets) into a straight-line plan.

A Plan is a generated Python function, one line per node (``v7 = k7(v3, c0)``), as
torch.fx generates code for a graph: no per-op dispatch, dict lookups or bookkeeping at run
time. The pieces:

* pruning: only the ops the fetches and targets need, with fed tensors cutting edges;
* order: creation order, which is topological (an op can only consume existing ops);
* constant folding: ops whose inputs are all constants (and not fed) are computed once per
  session and enter the plan as captured values, as TF's constant folding does;
* release: a ``del`` after each intermediate's last consumer, so memory is freed early;
* run-time shape checks: an op whose shape function saw partial shapes or unknown values at
  build time (or reads a value fed in this Run) re-runs it on the actual inputs first, so
  the messages are the build-time ones; the inferred output sizes are guarded against the
  allocation limit before the kernel runs and its results are checked against them;
* errors: the generated code's line numbers map back to nodes, so a failing kernel costs
  nothing until it fails and then names its node, op type, device and creation site.
"""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np

from opgraph import errors
from opgraph.shape_inference import InferenceContext
from opgraph.shapes import TensorShape
from runtime.memory import check_allocation
from runtime.placement import Transfers

__all__ = ["Plan", "compile_plan", "StepStats", "NodeExecStats", "node_error",
           "unfed_placeholder_error"]

_plan_ids = itertools.count()


class NodeExecStats:
    """Per-node trace record (TF's NodeExecStats)."""

    __slots__ = ("node_name", "op_type", "device", "start_us", "duration_us", "output_shapes",
                 "output_dtypes", "thread_id")

    def __init__(self, node_name, op_type, device, start_us, duration_us, output_shapes,
                 output_dtypes, thread_id):
        self.node_name, self.op_type, self.device = node_name, op_type, device
        self.start_us, self.duration_us = start_us, duration_us
        self.output_shapes, self.output_dtypes = output_shapes, output_dtypes
        self.thread_id = thread_id

    def __repr__(self) -> str:
        return (f"NodeExecStats({self.node_name} [{self.op_type}] on {self.device}: "
                f"{self.duration_us:.1f} us, outputs {self.output_shapes})")


class StepStats:
    """Every traced node of one Run, in execution order."""

    def __init__(self):
        self.node_stats: list[NodeExecStats] = []

    def to_chrome_trace(self) -> dict:
        """The stats as a Chrome-trace / Perfetto JSON object (``{"traceEvents": [...]}``)."""
        events = [{"name": s.node_name, "cat": s.op_type, "ph": "X", "ts": s.start_us,
                   "dur": s.duration_us, "pid": s.device, "tid": s.thread_id,
                   "args": {"op": s.op_type, "output_shapes": [str(x) for x in s.output_shapes],
                            "output_dtypes": s.output_dtypes}}
                  for s in self.node_stats]
        return {"traceEvents": events, "displayTimeUnit": "ms"}


class _Step:
    """One node of a plan: its kernel call and where its inputs come from."""

    __slots__ = ("node", "device", "call", "args", "outs")

    def __init__(self, node, device, call, args, outs):
        self.node, self.device, self.call = node, device, call
        self.args = args      # variable names of the inputs
        self.outs = outs      # variable names of the outputs


class Plan:
    """A compiled (feeds, fetches, targets): call ``run(feed_values)``."""

    def __init__(self, fn, code_name, line_nodes, steps, namespace, fetch_vars, feed_vars):
        self._fn = fn
        self._code_name = code_name
        self._line_nodes = line_nodes   # generated line number -> step
        self.steps = steps
        self._namespace = namespace
        self._fetch_vars = fetch_vars
        self._feed_vars = feed_vars

    def run(self, feed_values):
        try:
            return self._fn(*feed_values)
        except Exception as e:  # noqa: BLE001  (every kernel failure becomes an OpError)
            step = self._failing_step(e.__traceback__)
            raise node_error(e, step) from e

    def _failing_step(self, tb):
        step = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self._code_name:
                step = self._line_nodes.get(tb.tb_lineno, step)
            tb = tb.tb_next
        return step

    def run_traced(self, feed_values, stats: StepStats):
        """Run step by step, recording a NodeExecStats per node."""
        env = dict(self._namespace)
        env.update(zip(self._feed_vars, feed_values))
        tid = threading.get_ident()
        for step in self.steps:
            args = [env[a] for a in step.args]
            t0 = time.perf_counter()
            try:
                result = step.call(*args)
            except Exception as e:  # noqa: BLE001
                raise node_error(e, step) from e
            t1 = time.perf_counter()
            results = (result,) if len(step.outs) == 1 else tuple(result)
            env.update(zip(step.outs, results))
            stats.node_stats.append(NodeExecStats(
                step.node.name, step.node.type, step.device, t0 * 1e6, (t1 - t0) * 1e6,
                [TensorShape(np.shape(r)) for r in results],
                [str(getattr(r, "dtype", type(r).__name__)) for r in results], tid))
        return [env[v] for v in self._fetch_vars]


def unfed_placeholder_error(op) -> errors.InvalidArgumentError:
    """TF's "You must feed a value for placeholder tensor ..." naming ``op``."""
    shape = op.output_shapes[0]
    shape_text = "" if shape.dims is None else f" and shape {shape}"
    msg = (f"You must feed a value for placeholder tensor '{op.name}' with dtype "
           f"{op.output_dtypes[0].name}{shape_text} (created at {op.site})")
    return errors.InvalidArgumentError(msg, op.name, op.type, op.site)


def node_error(e: Exception, step) -> errors.OpError:
    """``e`` (raised by ``step``'s kernel) as the matching OpError naming the node."""
    if step is None:
        if isinstance(e, errors.OpError):
            return e
        return errors.InternalError(f"{type(e).__name__}: {e}")
    node = step.node
    ctx = (f"\n\t [[node {node.name} (op: '{node.type}', device: {step.device}) created at "
           f"{node.site}]]")
    if isinstance(e, errors.OpError):
        return e.with_context(ctx, node.name, node.type, node.site)
    if isinstance(e, MemoryError):
        cls = errors.ResourceExhaustedError
    elif isinstance(e, (ValueError, TypeError, IndexError)):
        cls = errors.InvalidArgumentError
    else:
        cls = errors.InternalError
    return cls(f"{type(e).__name__}: {e}{ctx}", node.name, node.type, node.site)


def _check_results(node, results, shapes):
    """The kernel's results must have the shapes and dtypes inference promised."""
    for k, (r, s) in enumerate(zip(results, shapes)):
        want = node.output_dtypes[k]
        shape = np.shape(r)
        if not s.is_compatible_with(shape) or (
                want is not None and getattr(r, "dtype", None) != want.as_numpy_dtype):
            msg = (f"Kernel for {node.type} returned output {k} with shape {list(shape)} and "
                   f"dtype {getattr(r, 'dtype', type(r).__name__)}, but shape inference "
                   f"gives {s} and {want.name if want else '?'} (a kernel bug)")
            raise errors.InternalError(msg)


def _rechecking(node, call):
    """Wrap ``call`` so the node's shape function first checks the actual inputs (shapes and
    values), the inferred output sizes are guarded, and the results are checked against it."""
    op_def, attrs = node.op_def, node.attrs
    dtypes = [o.dtype for o in node.inputs]
    out_types = node.output_dtypes
    single = len(out_types) == 1

    def checked(*inputs):
        ctx = InferenceContext(op_def, attrs, [TensorShape._from_tuple(np.shape(a))
                                               for a in inputs], dtypes, inputs)
        shapes = op_def.shape_fn(ctx)
        for s, dt in zip(shapes, out_types):
            if s.dims and dt is not None and s.is_fully_defined():
                check_allocation(s.dims, _itemsize(dt), f"{node.type} output")
        result = call(*inputs)
        _check_results(node, (result,) if single else (result or ()), shapes)
        return result
    return checked


def _first_of_list(call):
    """A kernel of a list output may return a 1-sequence or the array itself for N == 1."""
    def one(*inputs):
        result = call(*inputs)
        return result[0] if isinstance(result, (tuple, list)) else result
    return one


def _itemsize(dt) -> int:
    try:
        return dt.as_numpy_dtype.itemsize or 8
    except errors.UnimplementedError:
        return 2


def _guard_static(node) -> None:
    """Refuse a node whose (exact) static output sizes exceed the allocation limit."""
    for s, dt in zip(node.output_shapes, node.output_dtypes):
        if s.dims and dt is not None and s.is_fully_defined():
            check_allocation(s.dims, _itemsize(dt), f"{node.type} output")


def needs_recheck(op, feed_set) -> bool:
    """Whether ``op``'s shape function must run again on the actual inputs: it saw partial
    shapes or unknown values at build time, or a value it read is fed in this Run."""
    return not op.shape_complete or any(op.inputs[i] in feed_set for i in op.values_read)


def prune(feeds: set, fetches, targets) -> list:
    """The ops needed to compute ``fetches`` and run ``targets``, in topological order."""
    needed = {}
    stack = [o.op for o in fetches if o not in feeds] + list(targets)
    while stack:
        op = stack.pop()
        if op.name in needed:
            continue
        needed[op.name] = op
        stack.extend(i.op for i in op.inputs if i not in feeds)
        # A control edge out of an op whose outputs are all fed is cut, as TF does.
        stack.extend(c for c in op.control_inputs
                     if not c.num_outputs or not all(o in feeds for o in c.outputs))
    return sorted(needed.values(), key=lambda op: op.id)


def compile_plan(session, feeds, fetches, targets) -> Plan:
    """Build the Plan for (feeds, fetches, targets) against ``session``'s graph state.

    ``session`` supplies ``placement(node) -> (device_name, kernel)`` and the constant cache
    (``folded(output)`` / ``fold(...)``).
    """
    feed_set = set(feeds)
    ops = prune(feed_set, fetches, targets)
    for op in ops:
        if op.type == "Placeholder":
            raise unfed_placeholder_error(op)

    var = {}            # Output -> variable name
    namespace = {}
    feed_vars = []
    for i, f in enumerate(feeds):
        var[f] = f"f{i}"
        feed_vars.append(f"f{i}")

    steps = []
    constant_ops = set()
    transfers = Transfers(session.placement)
    for op in ops:
        device, kernel = session.placement(op)
        call = kernel.compute
        if op.num_outputs == 1 and op.op_def.outputs[0].is_list:
            call = _first_of_list(call)       # a list output of length 1: one array
        if needs_recheck(op, feed_set) and not getattr(kernel, "checks_own_inputs", False):
            call = _rechecking(op, call)
        else:
            try:
                _guard_static(op)
            except errors.OpError as e:
                raise node_error(e, _Step(op, device, call, (), ())) from None
        args = []
        for o in op.inputs:     # host<->device copies: once per (tensor, destination)
            name, copy = transfers.input_var(o, var[o], op, device, fed=o in feed_set)
            if copy is not None:
                if copy.args[0] in namespace:            # a constant: copied once, now
                    namespace[name] = copy.call(namespace[copy.args[0]])
                else:
                    steps.append(copy)
            args.append(name)
        outs = [f"v{op.id}_{k}" for k in range(op.num_outputs)]
        step = _Step(op, device, call, args, outs)
        foldable = (getattr(kernel, "foldable", True) and not op.control_inputs
                    and all(o not in feed_set and o.op.name in constant_ops
                            for o in op.inputs))
        if foldable:
            constant_ops.add(op.name)
            values = session.fold(op, step, [namespace[a] for a in args])
            for k, out_var in enumerate(outs):
                if op.output(k) not in feed_set:     # a fed output keeps its feed
                    var[op.output(k)] = out_var
                namespace[out_var] = values[k]
            continue
        for k, out_var in enumerate(outs):
            if op.output(k) not in feed_set:         # a fed output keeps its feed
                var[op.output(k)] = out_var
        steps.append(step)

    # Last use of each variable, so intermediates are released right after it.
    fetch_vars = [var[f] for f in fetches]
    keep = set(fetch_vars) | set(feed_vars) | set(namespace)
    last_use = {}
    for idx, step in enumerate(steps):
        for a in step.args:
            last_use[a] = idx
    lines = [f"def plan({', '.join(feed_vars)}):"]
    line_nodes = {}
    for idx, step in enumerate(steps):
        kname = f"k{step.node.id}"
        namespace[kname] = step.call
        target = step.outs[0] if len(step.outs) == 1 else ", ".join(step.outs)
        if not step.outs:
            target = "_"
        lines.append(f"    {target} = {kname}({', '.join(step.args)})")
        line_nodes[len(lines)] = step
        dead = [a for a in dict.fromkeys(step.args) if last_use[a] == idx and a not in keep]
        dead += [o for o in step.outs if o not in last_use and o not in keep]
        if dead:
            lines.append(f"    del {', '.join(dead)}")
    lines.append(f"    return [{', '.join(fetch_vars)}]")
    code_name = f"<opgraph plan {next(_plan_ids)}>"
    exec(compile("\n".join(lines), code_name, "exec"), namespace)  # noqa: S102
    return Plan(namespace["plan"], code_name, line_nodes, steps, namespace, fetch_vars,
                feed_vars)
