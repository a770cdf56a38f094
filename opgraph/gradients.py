"""Symbolic gradients: TF's AddSymbolicGradients and its gradient registry.

    dx, dw = AddSymbolicGradients(root, [loss], [x, w])

Gradient functions are declared beside their op (TF's REGISTER_GRADIENT_OP)::

    @gradient("Relu")
    def _relu_grad(scope, op, grads):
        return [ops.ReluGrad(scope, grads[0], op.output(0))]

A function receives the gradient sub-scope, the forward Operation and one upstream gradient
per op output (an Output; ZerosLike where only some outputs have one) and returns one
gradient per op input (an Output, an op wrapper, or None for "no gradient"). Ops in
``NOT_DIFFERENTIABLE`` (and those marked with ``not_differentiable``) stop backprop quietly,
as Python TF's ``ops.NotDifferentiable``; an op on the path with neither is a NotFoundError
naming the op and the path. The gradient graph is ordinary nodes under ``gradients/``: it
has static shapes, runs, and can be differentiated again where its ops allow.
"""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx

from opgraph import errors
from opgraph.graph import Operation, Output

__all__ = ["AddSymbolicGradients", "gradient", "not_differentiable", "get_gradient_function",
           "is_differentiable", "registered_gradients", "NOT_DIFFERENTIABLE"]

#: Python TF's NotDifferentiable set, for the ops this library has (plus ops without inputs).
NOT_DIFFERENTIABLE = {
    "Const", "Placeholder", "NoOp", "Shape", "ShapeN", "Rank", "Size", "ZerosLike",
    "OnesLike", "Range", "Equal", "NotEqual", "Less", "LessEqual", "Greater",
    "GreaterEqual", "LogicalAnd", "LogicalOr", "LogicalNot", "ArgMax", "ArgMin", "Where",
    "OneHot", "InTopKV2", "InTopK", "FloorDiv", "TruncateDiv", "StopGradient",
    "BroadcastGradientArgs", "Floor", "Ceil", "Round", "RandomUniform",
    "RandomStandardNormal", "TruncatedNormal", "RandomUniformInt", "RandomShuffle",
    "DecodeJpeg", "DecodePng", "EncodePng", "VariableV2", "Variable", "Assign", "AssignAdd",
    "AssignSub", "IsVariableInitialized", "ApplyGradientDescent", "ApplyMomentum", "ApplyAdam",
    "ApplyAdagrad", "ApplyRMSProp",
}

_GRADIENTS: dict[str, Callable] = {}
_FLOATING = ("float16", "bfloat16", "float32", "float64", "complex64", "complex128")


def gradient(op_type: str):
    """Decorator registering ``fn(scope, op, grads) -> list`` as ``op_type``'s gradient."""
    def deco(fn):
        if op_type in _GRADIENTS:
            msg = f"Existing gradient for {op_type}"
            raise errors.AlreadyExistsError(msg)
        _GRADIENTS[op_type] = fn
        return fn
    return deco


def not_differentiable(*op_types: str) -> None:
    """Mark ops through which no gradient flows (Python TF's ops.NotDifferentiable)."""
    NOT_DIFFERENTIABLE.update(op_types)


def get_gradient_function(op_type: str) -> Callable | None:
    """The registered gradient function; None for a not-differentiable op. NotFoundError (TF's
    message) when neither is registered."""
    fn = _GRADIENTS.get(op_type)
    if fn is not None:
        return fn
    if op_type in NOT_DIFFERENTIABLE:
        return None
    msg = (f"No gradient defined for op: {op_type}. Register one beside the op's declaration "
           f"with @gradient({op_type!r}) or mark it not_differentiable({op_type!r}).")
    raise errors.NotFoundError(msg)


def is_differentiable(op_type: str) -> bool:
    return op_type in _GRADIENTS


def registered_gradients() -> dict[str, Callable]:
    return dict(_GRADIENTS)


def _as_output(value, what: str) -> Output:
    if isinstance(value, Output):
        return value
    out = getattr(value, "output", None)
    if isinstance(out, Output):
        return out
    if isinstance(value, Operation) and value.num_outputs == 1:
        return Output(value, 0)
    msg = f"{what} must be an Output (or a single-output op), but got {type(value).__name__}"
    raise errors.InvalidArgumentError(msg)


def _grad_output(value, op, i):
    if value is None:
        return None
    try:
        return _as_output(value, f"gradient {i} of {op.type}")
    except errors.InvalidArgumentError as e:
        msg = f"The gradient function of {op.type} returned {e.message}"
        raise errors.InternalError(msg, op.name, op.type, op.site) from None


def _is_float(out: Output) -> bool:
    return out.dtype is not None and out.dtype.name in _FLOATING


def _path_text(graph, src: Operation, dst: Operation, outputs) -> str:
    """``x -> conv -> loss``: one path from an input through ``dst`` to an output."""
    g = graph.to_networkx()
    try:
        head = nx.shortest_path(g, src.name, dst.name)
    except nx.NetworkXNoPath:
        head = [dst.name]
    for y in outputs:
        try:
            tail = nx.shortest_path(g, dst.name, y.op.name)
        except nx.NetworkXNoPath:
            continue
        return " -> ".join(head + tail[1:])
    return " -> ".join(head)


def AddSymbolicGradients(scope, outputs, inputs, grad_inputs=None,  # noqa: N802, C901
                         *, unconnected_gradients: str = "none") -> list:
    """Gradients of ``sum(outputs[i] * grad_inputs[i])`` with respect to each of ``inputs``.

    Args:
      scope: where the gradient nodes are built (under a ``gradients`` sub-scope).
      outputs: the Outputs (or single-output ops) to differentiate.
      inputs: the Outputs to differentiate with respect to.
      grad_inputs: upstream gradients, one per output; default ``OnesLike(output)``.
      unconnected_gradients: ``"none"`` (an input no gradient reaches gets None, like TF's
        NoGradient) or ``"zero"`` (it gets ``ZerosLike(input)``).

    Returns:
      One gradient Output (or None) per input, in input order.

    Raises:
      InvalidArgumentError: mismatched argument lists or bad arguments.
      NotFoundError: an op on a path from an input to an output has no gradient function,
        naming the op and the path.
    """
    if unconnected_gradients not in ("none", "zero"):
        msg = f"unconnected_gradients must be 'none' or 'zero', got {unconnected_gradients!r}"
        raise errors.InvalidArgumentError(msg)
    single = not isinstance(outputs, (list, tuple))
    outputs = [_as_output(y, "Each output") for y in ([outputs] if single else outputs)]
    if not isinstance(inputs, (list, tuple)):
        inputs = [inputs]
    inputs = [_as_output(x, "Each input") for x in inputs]
    graph = scope.graph()
    for t in (*outputs, *inputs):
        if t.op.failed:
            msg = f"Cannot differentiate '{t.name}': its op failed to build ({scope.status()})"
            raise errors.FailedPreconditionError(msg, t.op.name, t.op.type, t.op.site)
        if t.op.graph is not graph:
            msg = f"'{t.name}' is from another graph than the scope's"
            raise errors.InvalidArgumentError(msg)
    errors_before = len(scope.status().errors)
    gscope = scope.NewSubScope("gradients")
    if grad_inputs is None:
        grad_inputs = [Output(gscope.build_op("OnesLike", [y], {}), 0) for y in outputs]
    else:
        if not isinstance(grad_inputs, (list, tuple)):
            grad_inputs = [grad_inputs]
        if len(grad_inputs) != len(outputs):
            msg = "Must specify a gradient input for each output."
            raise errors.InvalidArgumentError(msg)
        grad_inputs = [_as_output(g, "Each grad_input") for g in grad_inputs]

    # Ops reachable backwards from the outputs, then those of them reachable forwards from
    # the inputs: exactly the ops gradients flow through.
    backward = {}
    stack = [y.op for y in outputs]
    while stack:
        op = stack.pop()
        if op.name not in backward:
            backward[op.name] = op
            stack.extend(i.op for i in op.inputs)
    needed = set()
    stack = [x.op for x in inputs if x.op.name in backward]
    consumers = {}
    for op in backward.values():
        for i in op.inputs:
            consumers.setdefault(i.op.name, []).append(op)
    while stack:
        op = stack.pop()
        if op.name in needed:
            continue
        needed.add(op.name)
        stack.extend(consumers.get(op.name, ()))

    pending: dict[tuple[str, int], list] = {}
    for y, g in zip(outputs, grad_inputs):
        pending.setdefault((y.op.name, y.index), []).append(g)
    wanted = {(x.op.name, x.index) for x in inputs}
    results: dict[tuple[str, int], Output | None] = {}

    # Creation order is topological: every consumer of an op is processed before it.
    for op in sorted((backward[n] for n in needed), key=lambda o: o.id, reverse=True):
        grads = []
        for k in range(op.num_outputs):
            parts = [g for g in pending.pop((op.name, k), ()) if g is not None]
            if not parts:
                total = None
            elif len(parts) == 1:
                total = parts[0]
            else:
                total = Output(gscope.build_op("AddN", [parts], {}), 0)
            if (op.name, k) in wanted:
                results[(op.name, k)] = total
            grads.append(total)
        targets = [i for i, t in enumerate(op.inputs) if t.op.name in needed and _is_float(t)]
        if not targets or all(g is None for g in grads):
            continue
        try:
            fn = get_gradient_function(op.type)
        except errors.NotFoundError as e:
            src = next((x.op for x in inputs if x.op.name in needed), op)
            msg = (f"{e.message} Node '{op.name}' (op: '{op.type}', created at {op.site}) is on "
                   f"the path {_path_text(graph, src, op, outputs)}.")
            raise errors.NotFoundError(msg, op.name, op.type, op.site) from None
        if fn is None:
            continue
        grads = [g if g is not None else Output(gscope.build_op("ZerosLike", [op.output(k)], {}),
                                                0)
                 for k, g in enumerate(grads)]
        dx = fn(gscope, op, grads)
        if dx is None or len(dx) != op.num_inputs:
            n = 0 if dx is None else len(dx)
            msg = f"Invalid gradient output count: {op.type}'s gradient returned {n} for " \
                  f"{op.num_inputs} inputs"
            raise errors.InternalError(msg, op.name, op.type, op.site)
        for i in targets:
            g = _grad_output(dx[i], op, i)
            if g is not None:
                src = op.inputs[i]
                pending.setdefault((src.op.name, src.index), []).append(g)
    new_errors = scope.status().errors[errors_before:]
    if new_errors:
        raise new_errors[0]

    out = []
    for x in inputs:
        g = results.get((x.op.name, x.index))
        if g is None and unconnected_gradients == "zero":
            g = Output(gscope.build_op("ZerosLike", [x], {}), 0)
        out.append(g)
    return out
