"""CPU kernels of While and If (ops/control_flow_ops.py).

A While or If node's attrs name the frame tensors it feeds (loop-variable placeholders,
captured outer tensors) and fetches (the cond result, the body's or a branch's results). The
kernel compiles those (feeds, fetches) of the node's own graph into straight-line plans with
the executor's ``compile_plan`` -- once per node and session, the first time it runs (a
branch that never runs is never compiled) -- and runs them: While evaluates cond and the body
until cond is false; If runs the branch its predicate picks.

``compile_plan`` asks a session for kernel placement and its constant cache: the kernel
declares ``needs_session``, so the ClientSession running it hands itself over and the
frame's nodes share its placement, constants and variables. A frame holding a stateful node (variables, random ops, ...) makes its While/If
unfoldable, so a loop over constants is folded once per session only when it is pure.
"""

from __future__ import annotations

import threading

import numpy as np

from opgraph import errors
from runtime.executor import compile_plan, prune
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


class _FrameKernel(Kernel):
    """Shared by While and If: resolves the FrameFunctions and compiles them lazily."""

    needs_session = True
    session = None
    _FUNCTIONS = ()

    def __init__(self, node):
        super().__init__(node)
        graph = node.graph
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
                    feeds, fetches = self._io[attr]
                    plan = self._plans[attr] = compile_plan(self.session, feeds, fetches, ())
        return plan


@register_kernel("While")
class WhileCpu(_FrameKernel):
    _FUNCTIONS = ("cond", "body")

    def compute(self, *values):
        cond, body = self.plan("cond"), self.plan("body")
        state = list(values)
        while True:
            (go,) = cond.run(state)
            if isinstance(go, np.generic):          # a kernel may return a numpy scalar
                go = np.asarray(go)
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
