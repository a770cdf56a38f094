"""Control flow: ``BuildWhileLoop`` (TF's C++ ``while_loop.h``) and ``Cond`` (a functional
If: only the taken branch runs), each built as ONE node -- ``While`` or ``If`` -- whose body
lives in a frame of the same graph.

    def cond(s, v):
        return ops.Less(s, v[0], 10)

    def body(s, v):
        return [ops.Add(s, v[0], 1), ops.Mul(s, v[1], 2.0)]

    i, x = ops.BuildWhileLoop(root, [zero, one], cond, body, "loop")

How it is built: ``cond`` and ``body`` build into sub-scopes of ``scope.NewSubScope(
frame_name)`` (``loop/cond``, ``loop/body``), starting from one Placeholder per loop variable
(``loop/loop_var_<i>``) whose dtype is the variable's and whose shape is the part of its
shape the body keeps: a dim the body changes becomes unknown (TF's shape_invariants), found
by building the frame again with the relaxed shapes until the body keeps them. The While
node's ``cond`` / ``body`` attrs are ``FrameFunction`` values naming the frame's fed tensors
and its results; they are not edges, so the outer plan never runs a frame node. Outer
tensors the frame reads are *captured*: they become extra inputs of the While node (as in
TF's functional While, they pass through the loop unchanged), so the outer plan computes
them once; outer constants (folded by the frame's plans) and variables (read afresh each
iteration) are left to the frame. The While kernel
compiles the frame into two straight-line plans of the same graph (feeds: the placeholders
and captured tensors; fetches: the cond result / the body results) once per node and session,
and iterates.

Rules checked when the loop is built: at least one loop variable; the body returns one value
per loop variable with exactly its dtype and a shape of the same rank (or one compatible with
its ``shape_invariants`` entry, when given); cond returns a bool scalar; ops in the frame may
not have control dependencies on outer ops (make the loop itself depend on them). At run time
a cond value that is not a bool scalar is an InvalidArgumentError; there is no iteration
bound.

Gradients through While and If are not implemented: both are marked not differentiable, so
AddSymbolicGradients stops at them (no gradient reaches the loop's inputs).
"""

from __future__ import annotations

from opgraph import errors
from opgraph.dtypes import DT_BOOL
from opgraph.functions import FrameFunction
from opgraph.gradients import not_differentiable
from opgraph.graph import Operation, Output
from opgraph.registry import get_op_def
from opgraph.scope import Scope, user_site
from opgraph.shapes import TensorShape
from opgraph.wrappers import declare

__all__ = ["While", "If", "BuildWhileLoop", "Cond", "FrameFunction"]

_UNKNOWN = TensorShape(None)
#: outer source nodes a frame evaluates itself instead of capturing them: constants (folded
#: once by the frame's plans) and variables (read afresh in every iteration, as TF does)
_LEFT_TO_FRAME = ("Const", "VariableV2")


def _functions(c, *names) -> list[FrameFunction]:
    fns = [c.attr(n) for n in names]
    for n, fn in zip(names, fns):
        if not isinstance(fn, FrameFunction):
            msg = (f"attr '{n}' must be a FrameFunction (built by BuildWhileLoop or Cond), got "
                   f"{type(fn).__name__}")
            raise errors.InvalidArgumentError(msg)
    return fns


def _declared_shapes(c, count: int, what: str):
    """The output_shapes attr checked against ``count`` outputs, or None when it is empty."""
    shapes = c.attr("output_shapes")
    if not shapes:
        return None
    if len(shapes) != count:
        msg = f"output_shapes has {len(shapes)} shapes for {count} {what}"
        raise errors.InvalidArgumentError(msg)
    return list(shapes)


def _while_shape(c):
    cond, body = _functions(c, "cond", "body")
    n = c.num_inputs
    if len(body.inputs) != n or len(body.outputs) != n or tuple(cond.inputs) != \
            tuple(body.inputs) or len(cond.outputs) != 1:
        msg = (f"cond and body must both take the {n} inputs, body return {n} values and cond "
               f"one; got cond {len(cond.inputs)} -> {len(cond.outputs)}, body "
               f"{len(body.inputs)} -> {len(body.outputs)}")
        raise errors.InvalidArgumentError(msg)
    shapes = _declared_shapes(c, n, "inputs")
    if shapes is None:
        return [c.input(i) for i in range(n)]
    for i, s in enumerate(shapes):
        if not s.is_compatible_with(c.input(i)):
            msg = (f"input {i} has shape {c.input(i)}, which is not compatible with its "
                   f"loop-invariant shape {s} in output_shapes")
            raise errors.InvalidArgumentError(msg)
    return shapes


While = declare(
    "While",
    inputs=["input: T  # the loop variables' initial values, then the captured tensors"],
    outputs=["output: T  # the loop variables' final values (captured tensors pass through)"],
    attrs=["T: list(type) >= 0",
           "cond: func  # inputs -> a bool scalar: whether to run the body again",
           "body: func  # inputs -> the next values of the inputs",
           "output_shapes: list(shape) = []  # the loop-invariant shapes (default: the inputs')",
           "parallel_iterations: int = 10  # accepted for TF compatibility; iterations run in "
           "order"],
    shape_fn=_while_shape,
    doc="Run `body` while `cond` holds, starting from `input`; both are frames of this graph "
        "(FrameFunction attrs). Build it with BuildWhileLoop, which creates the frame and "
        "captures the outer tensors it reads.")
not_differentiable("While")


def _if_shape(c):
    if c.input_dtype(0) is not DT_BOOL:
        msg = f"cond must be a bool scalar, but has dtype {c.input_dtype(0)}"
        raise errors.InvalidArgumentError(msg)
    c.with_rank(0, 0)
    then_fn, else_fn = _functions(c, "then_branch", "else_branch")
    n_in, n_out = c.num_inputs - 1, len(c.attr("Tout"))
    for name, fn in (("then_branch", then_fn), ("else_branch", else_fn)):
        if len(fn.inputs) != n_in or len(fn.outputs) != n_out:
            msg = (f"{name} must take the {n_in} captured inputs and return {n_out} values, but "
                   f"takes {len(fn.inputs)} and returns {len(fn.outputs)}")
            raise errors.InvalidArgumentError(msg)
    shapes = _declared_shapes(c, n_out, "outputs")
    return shapes if shapes is not None else [_UNKNOWN] * n_out


If = declare(
    "If",
    inputs=["cond: Tcond  # a bool scalar: which branch runs",
            "input: Tin  # the outer tensors the branches read"],
    outputs=["output: Tout  # the taken branch's results"],
    attrs=["Tcond: type", "Tin: list(type) >= 0", "Tout: list(type) >= 0",
           "then_branch: func  # run when cond is true",
           "else_branch: func  # run when cond is false",
           "output_shapes: list(shape) = []  # the outputs' shapes (default: unknown)"],
    shape_fn=_if_shape,
    doc="Run `then_branch` if `cond` is true, else `else_branch` (only the taken branch runs); "
        "both are frames of this graph (FrameFunction attrs). Build it with Cond.")
not_differentiable("If")


# ---- building --------------------------------------------------------------------------------
def _error(msg: str, op_type: str, name: str, site: str) -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError(
        f"{msg} (for node '{name}' (op: '{op_type}') created at {site})", name, op_type, site)


def _failed_outputs(scope: Scope, op_type: str, name: str, n: int, site: str,
                    err=None) -> list[Output]:
    """n outputs of a failed op (consumers are skipped quietly); records ``err`` if given."""
    op = Operation(name, get_op_def(op_type), (), {}, (None,) * n, (_UNKNOWN,) * n,
                   graph=scope.graph(), site=site, failed=True)
    if err is not None:
        scope.UpdateStatus(err)
    return [Output(op, i) for i in range(n)]


def _as_output(scope: Scope, value, dtype=None) -> Output:
    """An Output for a tensor argument or result: Outputs and single-output wrappers as they
    are, anything else a Const (of ``dtype`` when given)."""
    import ops  # noqa: PLC0415  (ops modules use each other's wrappers lazily)

    if isinstance(value, Output):
        return value
    out = getattr(value, "output", None)
    if isinstance(out, Output):
        return out
    if isinstance(value, Operation):
        return value.output(0)
    return ops.Const(scope, value, dtype).output if dtype is not None else \
        ops.Const(scope, value).output


def _as_list(value) -> list | None:
    """The results of a body or branch function as a list (None: a single value)."""
    if isinstance(value, (list, tuple)):
        return list(value)
    return None


def _closure(results, fed, start: int, where: str, site: str, op_type: str, name: str):
    """The captured outer tensors (created before op id ``start``) that computing
    ``results`` from ``fed`` needs, in first-use order; outer constants and variables are
    left to the frame (``_LEFT_TO_FRAME``)."""
    fed = set(fed)
    captured, seen = {}, set()
    stack = []
    for out in results:
        if out in fed:
            continue
        if out.op.id < start:
            captured.setdefault(out)
        else:
            stack.append(out.op)
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        for src in op.inputs:
            if src in fed:
                continue
            if src.op.id < start:
                captured.setdefault(src)
            else:
                stack.append(src.op)
        for dep in op.control_inputs:
            if dep.id < start:
                msg = (f"{where}: '{op.name}' has a control dependency on '{dep.name}', which "
                       f"was created outside; control dependencies cannot cross into the frame "
                       f"(make the {op_type} node depend on it instead)")
                raise _error(msg, op_type, name, site)
            stack.append(dep)
    return [t for t in captured if t.op.type not in _LEFT_TO_FRAME or t.op.control_inputs]


def _relaxed(var: TensorShape, out: TensorShape, i: int, where: str, var_name: str):
    """The loop-invariant shape of loop variable i: its dims that the body keeps."""
    if var.dims is None or out.dims is None:
        return _UNKNOWN
    if len(var.dims) != len(out.dims):
        msg = (f"{where}: the body's output {i} has shape {out}, but loop variable {i} "
               f"('{var_name}') has shape {var}; a loop variable's rank cannot change (its "
               f"dims can)")
        raise errors.InvalidArgumentError(msg)
    return TensorShape([a if a == b else None for a, b in zip(var.dims, out.dims)])


def BuildWhileLoop(scope: Scope, inputs, cond, body, frame_name: str,  # noqa: N802, C901
                   parallel_iterations: int = 10, *, shape_invariants=None) -> list[Output]:
    """A while loop over ``inputs`` (TF's C++ ``ops::BuildWhileLoop``).

    Args:
      scope: where the While node is built; the frame goes under
        ``scope.NewSubScope(frame_name)``.
      inputs: the loop variables' initial values (Outputs; other values become Consts).
      cond: ``cond(scope, loop_vars) -> Output``, a bool scalar: whether to run the body.
      body: ``body(scope, loop_vars) -> list of Outputs``, the next values, one per loop
        variable with its dtype (Python values become Consts of that dtype).
      frame_name: the name of the frame's sub-scope.
      parallel_iterations: the While node's attr (iterations run one after another).
      shape_invariants: optional, one shape (or None: infer) per loop variable; the body's
        results must be compatible with it. Without one, dims the body changes become unknown.

    Returns:
      The loop variables' final values, one Output per input. On a build error it is recorded
      in the scope's status (raised under ExitOnError) and failed Outputs are returned.
    """
    import ops  # noqa: PLC0415

    site = user_site()
    where = f"BuildWhileLoop '{frame_name}'"
    name = f"{getattr(scope, '_prefix', '')}/{frame_name}".lstrip("/")
    n = len(inputs) if isinstance(inputs, (list, tuple)) else 1

    def fail(msg):
        err = msg if isinstance(msg, errors.OpError) else _error(msg, "While", name, site)
        return _failed_outputs(scope, "While", name, max(n, 1), site, err)

    if not isinstance(inputs, (list, tuple)) or not inputs:
        return fail(f"{where}: needs a non-empty list of loop variables, got "
                    f"{type(inputs).__name__} {inputs!r}")
    if isinstance(parallel_iterations, bool) or not isinstance(parallel_iterations, int) or \
            parallel_iterations < 1:
        return fail(f"{where}: parallel_iterations must be a positive int, got "
                    f"{parallel_iterations!r}")
    loop_vars = [_as_output(scope, v) for v in inputs]
    if any(v.op.failed for v in loop_vars):
        return _failed_outputs(scope, "While", name, n, site)
    if shape_invariants is not None and len(shape_invariants) != n:
        return fail(f"{where}: {len(shape_invariants)} shape_invariants for {n} loop variables")
    shapes = []
    for i, v in enumerate(loop_vars):
        inv = None if shape_invariants is None else shape_invariants[i]
        if inv is None:
            shapes.append(v.shape)
            continue
        inv = TensorShape(inv)
        if not inv.is_compatible_with(v.shape):
            return fail(f"{where}: the shape invariant {inv} of loop variable {i} ('{v.name}') "
                        f"is not compatible with its initial shape {v.shape}")
        shapes.append(inv)
    fixed = [shape_invariants is not None and shape_invariants[i] is not None
             for i in range(n)]

    graph = scope.graph()
    frame = scope.NewSubScope(frame_name).WithNoControlDependencies()
    attempt = 0
    while True:
        start = graph.num_ops()
        sub = frame if attempt == 0 else frame.NewSubScope(f"relaxed_{attempt}")
        prefix = getattr(sub, "_prefix", frame_name)
        placeholders = [ops.Placeholder(sub.WithOpName(f"loop_var_{i}"), v.dtype,
                                        shape=s).output
                        for i, (v, s) in enumerate(zip(loop_vars, shapes))]
        cond_scope, body_scope = sub.NewSubScope("cond"), sub.NewSubScope("body")
        c = cond(cond_scope, list(placeholders))
        if isinstance(c, (list, tuple)) and len(c) == 1:
            c = c[0]
        if isinstance(c, (list, tuple)):
            return fail(f"{where}: cond must return one bool scalar, but returned "
                        f"{len(c)} values")
        c = _as_output(cond_scope, c)
        raw = body(body_scope, list(placeholders))
        results = _as_list(raw)
        if results is None:
            results = [raw]
        if len(results) != n:
            return fail(f"{where}: the body returned {len(results)} values for {n} loop "
                        f"variables")
        results = [_as_output(body_scope, r, v.dtype) for r, v in zip(results, loop_vars)]
        if c.op.failed or any(r.op.failed for r in results):
            return _failed_outputs(scope, "While", name, n, site)   # the error is recorded
        if c.dtype is not DT_BOOL or (c.shape.dims is not None and c.shape.dims):
            return fail(f"{where}: cond must return a bool scalar, but returned '{c.name}' of "
                        f"dtype {c.dtype} and shape {c.shape}")
        new_shapes = []
        try:
            for i, (v, r, s) in enumerate(zip(loop_vars, results, shapes)):
                if r.dtype is not v.dtype:
                    return fail(f"{where}: the body's output {i} ('{r.name}') has dtype "
                                f"{r.dtype}, but loop variable {i} ('{v.name}') has dtype "
                                f"{v.dtype}; a loop variable's dtype cannot change")
                if fixed[i]:
                    if not s.is_compatible_with(r.shape):
                        return fail(f"{where}: the body's output {i} ('{r.name}') has shape "
                                    f"{r.shape}, which is not compatible with the shape "
                                    f"invariant {s} of loop variable {i} ('{v.name}')")
                    new_shapes.append(s)
                else:
                    new_shapes.append(_relaxed(s, r.shape, i, where, v.name))
        except errors.InvalidArgumentError as e:
            return fail(e.message)
        if all(a == b for a, b in zip(new_shapes, shapes)):
            break
        shapes, attempt = new_shapes, attempt + 1     # build the frame again, relaxed
    try:
        captured = _closure([c, *results], placeholders, start, where, site, "While", name)
    except errors.OpError as e:
        return fail(e)
    fed = [t.name for t in (*placeholders, *captured)]
    cond_fn = FrameFunction(f"{prefix}/cond", fed, [c.name])
    body_fn = FrameFunction(f"{prefix}/body", fed, [*(r.name for r in results),
                                                    *(t.name for t in captured)])
    loop = While(scope, [*loop_vars, *captured], cond_fn, body_fn,
                 output_shapes=[*shapes, *(t.shape for t in captured)],
                 parallel_iterations=parallel_iterations)
    if loop.operation.failed:
        return _failed_outputs(scope, "While", name, n, site)
    return list(loop.outputs[:n])


def Cond(scope: Scope, pred, true_fn, false_fn):  # noqa: N802, C901
    """``true_fn(scope)`` if ``pred`` else ``false_fn(scope)``, as one If node (TF's functional
    If / tf.cond): only the taken branch runs.

    Args:
      scope: where the If node is built; the branches go under ``cond/then`` and
        ``cond/else`` sub-scopes of it.
      pred: a bool scalar (Output, or a value that becomes a Const).
      true_fn, false_fn: ``fn(scope) -> Output`` or a list of Outputs; both must return the
        same number of values with the same dtypes. A shape dim the branches disagree on is
        unknown in the result (a rank they disagree on makes the shape unknown).

    Returns:
      One Output (when the branches return one value) or a list of Outputs. On a build error
      it is recorded in the scope's status and failed Outputs are returned.
    """
    site = user_site()
    frame = scope.NewSubScope("cond").WithNoControlDependencies()
    prefix = getattr(frame, "_prefix", "cond")
    where = f"Cond '{prefix}'"
    p = _as_output(scope, pred)
    if p.op.failed:
        return _failed_outputs(scope, "If", prefix, 1, site)[0]
    if p.dtype is not DT_BOOL or (p.shape.dims is not None and p.shape.dims):
        err = _error(f"{where}: pred must be a bool scalar, but '{p.name}' has dtype {p.dtype} "
                     f"and shape {p.shape}", "If", prefix, site)
        return _failed_outputs(scope, "If", prefix, 1, site, err)[0]
    graph = scope.graph()
    start = graph.num_ops()
    branches = []
    for label, fn in (("then", true_fn), ("else", false_fn)):
        branch_scope = frame.NewSubScope(label)
        raw = fn(branch_scope)
        values = _as_list(raw)
        single = values is None
        values = [_as_output(branch_scope, v) for v in ([raw] if single else values)]
        branches.append((single, values))
    (t_single, t_out), (f_single, f_out) = branches
    n = len(t_out)
    if any(o.op.failed for o in (*t_out, *f_out)):
        out = _failed_outputs(scope, "If", prefix, max(n, 1), site)
        return out[0] if t_single else out[:n]

    def fail(msg):
        err = msg if isinstance(msg, errors.OpError) else _error(msg, "If", prefix, site)
        out = _failed_outputs(scope, "If", prefix, max(n, 1), site, err)
        return out[0] if t_single else out[:n]

    if t_single != f_single or len(f_out) != n:
        shown = ["one value" if s else f"a list of {len(v)}" for s, v in branches]
        return fail(f"{where}: true_fn returned {shown[0]} but false_fn {shown[1]}; both "
                    f"branches must return the same structure")
    shapes = []
    for i, (a, b) in enumerate(zip(t_out, f_out)):
        if a.dtype is not b.dtype:
            return fail(f"{where}: output {i} is '{a.name}' of dtype {a.dtype} in true_fn but "
                        f"'{b.name}' of dtype {b.dtype} in false_fn; the dtypes must match")
        if a.shape.dims is None or b.shape.dims is None or len(a.shape.dims) != \
                len(b.shape.dims):
            shapes.append(_UNKNOWN)
        else:
            shapes.append(TensorShape([x if x == y else None
                                       for x, y in zip(a.shape.dims, b.shape.dims)]))
    try:
        captured = list(dict.fromkeys(
            _closure(t_out, (), start, where, site, "If", prefix)
            + _closure(f_out, (), start, where, site, "If", prefix)))
    except errors.OpError as e:
        return fail(e)
    fed = [t.name for t in captured]
    then_fn = FrameFunction(f"{prefix}/then", fed, [o.name for o in t_out])
    else_fn = FrameFunction(f"{prefix}/else", fed, [o.name for o in f_out])
    node = If(scope, p, captured, [o.dtype for o in t_out], then_fn, else_fn,
              output_shapes=shapes)
    if node.operation.failed:
        out = _failed_outputs(scope, "If", prefix, max(n, 1), site)
        return out[0] if t_single else out[:n]
    outs = list(node.outputs)
    return outs[0] if t_single else outs
