"""CPU kernels of While and If (ops/control_flow_ops.py).

A While or If node's attrs name the frame tensors it feeds (loop-variable placeholders,
captured outer tensors) and fetches (the cond result, the body's or a branch's results). The
kernel compiles those (feeds, fetches) of the node's own graph into straight-line plans with
the executor's ``compile_plan`` -- once per node and session, the first time it runs (a
branch that never runs is never compiled) -- and runs them: While evaluates cond and the body
until cond is false; If runs the branch its predicate picks.

``compile_plan`` asks a session for kernel placement and its constant cache;
``_FrameRuntime`` supplies both for the frame's nodes (placed as ClientSession places
nodes, colocation aside) and hands the session's variables (ResourceMgr) to kernels that
need them. A frame holding a stateful node (variables, random ops, ...) makes its While/If
unfoldable, so a loop over constants is folded once per session only when it is pure.
"""

from __future__ import annotations

import threading

import numpy as np

from opgraph import errors
from runtime import devices
from runtime.executor import compile_plan, node_error, prune
from runtime.kernel_registry import Kernel, find_kernel, register_kernel


def _tensor(graph, name: str):
    """The Output called ``name`` ("node:index") in ``graph``."""
    op_name, _, index = name.rpartition(":")
    return graph.get_operation(op_name).output(int(index))


def _stateful(graph, feeds, fetches, seen: set) -> bool:
    """Whether computing ``fetches`` from ``feeds`` runs a node that must not be folded."""
    for op in prune(set(feeds), fetches, ()):
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.op_def.stateful:
            return True
        if op.type in ("While", "If"):
            names = ("cond", "body") if op.type == "While" else ("then_branch", "else_branch")
            for fn in (op.attrs[n] for n in names):
                if _stateful(graph, [_tensor(graph, t) for t in fn.inputs],
                             [_tensor(graph, t) for t in fn.outputs], seen):
                    return True
            continue
        try:
            kernel_class = find_kernel(op, "CPU").kernel_class
        except errors.NotFoundError:
            continue            # compile_plan will report it when the frame is compiled
        if not getattr(kernel_class, "foldable", True):
            return True
    return False


class _FrameRuntime:
    """The session side of compile_plan for one node's frame: placement and constants."""

    def __init__(self, resources):
        self.resources = resources
        self._devices = devices.available_devices()
        self._placed = {}
        self._folded = {}

    def placement(self, node):
        placed = self._placed.get(node.name)
        if placed is None:
            placed = self._placed[node.name] = self._place(node)
        return placed

    def _place(self, node):
        miss = None
        for dev in devices.resolve_requested(node, self._devices):
            try:
                kdef = find_kernel(node, dev.device_type)
            except errors.NotFoundError as e:
                miss = miss or e
                continue
            try:
                kernel = kdef.kernel_class(node)
            except errors.OpError as e:
                ctx = (f" (kernel for node '{node.name}' (op: '{node.type}') created at "
                       f"{node.site})")
                raise e.with_context(ctx, node.name, node.type, node.site) from None
            if getattr(kernel, "needs_resources", False):
                kernel.resources = self.resources
            return dev.name, kernel
        raise miss

    def fold(self, op, step, args):
        values = self._folded.get(op.name)
        if values is None:
            try:
                result = step.call(*args)
            except Exception as e:  # noqa: BLE001
                raise node_error(e, step) from e
            values = (result,) if op.num_outputs == 1 else tuple(result)
            for v in values:
                if isinstance(v, np.ndarray) and v.flags.writeable:
                    v.setflags(write=False)
            self._folded[op.name] = values
        return values


class _FrameKernel(Kernel):
    """Shared by While and If: resolves the FrameFunctions and compiles them lazily."""

    needs_resources = True
    _FUNCTIONS = ()

    def __init__(self, node):
        super().__init__(node)
        graph = node.graph
        self.resources = None
        self._lock = threading.Lock()
        self._plans = {}
        self._io = {}
        seen = set()
        stateful = False
        for attr in self._FUNCTIONS:
            fn = node.attrs[attr]
            feeds = tuple(_tensor(graph, t) for t in fn.inputs)
            fetches = tuple(_tensor(graph, t) for t in fn.outputs)
            self._io[attr] = (feeds, fetches)
            stateful = stateful or _stateful(graph, feeds, fetches, seen)
        self.foldable = not stateful

    def plan(self, attr):
        plan = self._plans.get(attr)
        if plan is None:
            with self._lock:
                plan = self._plans.get(attr)
                if plan is None:
                    if not hasattr(self, "_runtime"):
                        self._runtime = _FrameRuntime(self.resources)
                    feeds, fetches = self._io[attr]
                    plan = self._plans[attr] = compile_plan(self._runtime, feeds, fetches, ())
        return plan


@register_kernel("While")
class WhileCpu(_FrameKernel):
    _FUNCTIONS = ("cond", "body")

    def compute(self, *values):
        cond, body = self.plan("cond"), self.plan("body")
        state = list(values)
        while True:
            (go,) = cond.run(state)
            if not (isinstance(go, np.ndarray) and go.dtype == np.bool_ and go.ndim == 0):
                msg = (f"The loop condition '{self.node.attrs['cond'].outputs[0]}' must be a "
                       f"bool scalar, but is {getattr(go, 'dtype', type(go).__name__)} of "
                       f"shape {list(np.shape(go))}")
                raise errors.InvalidArgumentError(msg)
            if not go:
                return tuple(state)
            state = body.run(state)


@register_kernel("If")
class IfCpu(_FrameKernel):
    _FUNCTIONS = ("then_branch", "else_branch")

    def compute(self, pred, *captured):
        branch = self.plan("then_branch" if pred else "else_branch")
        return tuple(branch.run(list(captured)))
