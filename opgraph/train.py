"""Training on top of the op library: variables with initial values, optimizers, checkpoints.

    from opgraph import train
    w = train.Variable(root.WithOpName("w"), w0)                 # VariableV2 + its Assign
    loss = ...
    step = train.Momentum(0.1, 0.9).minimize(root, loss)         # var_list: every variable
                                                                 # the loss depends on
    sess = ClientSession(root)
    sess.Run({}, [], [train.global_variables_initializer(root)])
    for _ in range(100):
        sess.Run(feeds, [], [step])
    train.Saver([w, b]).save(sess, "model.npz")

Everything here builds ordinary nodes (VariableV2, Assign, Apply*, gradients): a training
step is one Run of the returned target. Optimizers compute gradients with
AddSymbolicGradients and create their slot variables (momentum accumulators, Adam moments)
initialised to zeros; ``global_variables_initializer`` runs every initial assignment made
through this module.
"""

from __future__ import annotations

import os
import tempfile
import weakref

import numpy as np

from opgraph import errors
from opgraph.gradients import AddSymbolicGradients
from opgraph.graph import Operation, Output
from opgraph.inputs import to_ndarray

__all__ = ["Variable", "global_variables_initializer", "trainable_variables",
           "GradientDescent", "Momentum", "Adam", "Adagrad", "RMSProp",
           "GradientDescentOptimizer", "MomentumOptimizer", "AdamOptimizer",
           "AdagradOptimizer", "RMSPropOptimizer", "Saver"]

_INITIALIZERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # Graph -> [Operation]
_VARIABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()      # Graph -> [Output]


class _Builder:
    """Builds registered ops by type name (the framework never imports the ``ops`` package):
    ``_ops().Assign(scope, ref, value)`` returns the node's first Output, or the Operation
    for ops without outputs."""

    _ALIASES = {"Variable": "VariableV2"}

    def __getattr__(self, name):
        op_type = self._ALIASES.get(name, name)

        def build(scope, *inputs, **attrs):
            from opgraph.registry import get_op_def  # noqa: PLC0415
            if op_type == "Const":
                value = to_ndarray(inputs[0])
                op = scope.build_op("Const", [], {"value": value, "dtype": value.dtype})
                return _Built(op)
            op_def = get_op_def(op_type)
            n_in = len(op_def.inputs)
            values = dict(zip(op_def.required_attrs, inputs[n_in:]))
            values.update(attrs)
            op = scope.build_op(op_def, list(inputs[:n_in]), values)
            if op.failed:
                scope.status().raise_if_error()
            return _Built(op)
        return build


class _Built:
    __slots__ = ("operation", "output")

    def __init__(self, op):
        self.operation = op
        self.output = Output(op, 0) if op.num_outputs else None


_BUILDER = _Builder()


def _ops():
    return _BUILDER


def _variable_output(v) -> Output:
    out = getattr(v, "output", v)
    if not isinstance(out, Output) or out.op.type != "VariableV2":
        msg = f"Expected a Variable, got {type(v).__name__} {getattr(out, 'name', '')}"
        raise errors.InvalidArgumentError(msg)
    return out


def _record(scope, var_out: Output, init_op: Operation) -> None:
    graph = scope.graph()
    _INITIALIZERS.setdefault(graph, []).append(init_op)
    _VARIABLES.setdefault(graph, []).append(var_out)


class Variable:
    """A VariableV2 with an initial value (an array, Python value or Output).

    ``.output`` is the variable (usable as any input), ``.initializer`` its Assign.
    """

    def __init__(self, scope, initial_value, dtype=None):
        o = _ops()
        if isinstance(initial_value, Output) or hasattr(initial_value, "output"):
            init = getattr(initial_value, "output", initial_value)
            shape, dt = init.shape, init.dtype
        else:
            init = to_ndarray(initial_value, dtype)
            shape, dt = list(init.shape), init.dtype
        self.variable = o.Variable(scope, shape, dt)
        self.output = self.variable.output
        self.operation = self.variable.operation
        init_scope = scope.NewSubScope(self.operation.name.rsplit("/", 1)[-1] + "_init")
        self.initializer = o.Assign(init_scope, self.output, init).operation
        _record(scope, self.output, self.initializer)

    def __repr__(self) -> str:
        return f"<train.Variable {self.output!r}>"


def global_variables_initializer(scope) -> Operation:
    """One target that runs the initial Assign of every train.Variable and optimizer slot
    of ``scope``'s graph."""
    inits = list(_INITIALIZERS.get(scope.graph(), ()))
    return _ops().NoOp(scope.NewSubScope("init").WithControlDependencies(inits)).operation


def trainable_variables(loss) -> list[Output]:
    """The VariableV2 outputs ``loss`` depends on, in creation order."""
    out = getattr(loss, "output", loss)
    seen, stack, found = set(), [out.op], []
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        if op.type == "VariableV2":
            found.append(op)
        stack.extend(i.op for i in op.inputs)
    return [Output(op, 0) for op in sorted(found, key=lambda o: o.id)]


class _Optimizer:
    """Base: ``minimize(scope, loss, var_list)`` returns the training-step target."""

    #: slot variables per variable, in the Apply op's input order after ``var``
    slots: tuple = ()

    def __init__(self, learning_rate):
        self.learning_rate = learning_rate

    def compute_gradients(self, scope, loss, var_list):
        outs = [_variable_output(v) for v in var_list]
        grads = AddSymbolicGradients(scope, [loss], outs)
        missing = [v.name for v, g in zip(outs, grads) if g is None]
        if missing:
            msg = (f"No gradient reaches variable(s) {', '.join(missing)} from the loss "
                   f"'{getattr(loss, 'output', loss).name}'")
            raise errors.InvalidArgumentError(msg)
        return list(zip(grads, outs))

    def _slot(self, scope, var: Output, name: str) -> Output:
        o = _ops()
        s = scope.NewSubScope(name)
        slot = o.Variable(s, var.shape, var.dtype)
        zeros = o.ZerosLike(s, var)
        init = o.Assign(s, slot, zeros).operation
        _record(scope, slot.output, init)
        return slot.output

    def _scalar(self, scope, value, var: Output):
        return _ops().Const(scope, np.asarray(value, dtype=var.dtype.as_numpy_dtype))

    def apply_gradients(self, scope, grads_and_vars):
        s = scope.NewSubScope(type(self).__name__)
        updates = [self._apply(s, g, v) for g, v in grads_and_vars]
        return _ops().NoOp(s.WithControlDependencies(updates)).operation

    def minimize(self, scope, loss, var_list=None) -> Operation:
        """Gradient of ``loss`` w.r.t. ``var_list`` (default: every variable the loss
        depends on, in creation order), then one update of each variable."""
        if var_list is None:
            var_list = trainable_variables(loss)
            if not var_list:
                msg = f"The loss '{getattr(loss, 'output', loss).name}' depends on no variable"
                raise errors.InvalidArgumentError(msg)
        return self.apply_gradients(scope, self.compute_gradients(scope, loss, var_list))


class GradientDescentOptimizer(_Optimizer):
    def _apply(self, s, g, v):
        return _ops().ApplyGradientDescent(s, v, self._scalar(s, self.learning_rate, v), g)


class MomentumOptimizer(_Optimizer):
    def __init__(self, learning_rate, momentum, use_nesterov=False):
        super().__init__(learning_rate)
        self.momentum, self.use_nesterov = momentum, use_nesterov

    def _apply(self, s, g, v):
        accum = self._slot(s, v, "Momentum")
        return _ops().ApplyMomentum(s, v, accum, self._scalar(s, self.learning_rate, v), g,
                                    self._scalar(s, self.momentum, v),
                                    use_nesterov=self.use_nesterov)


class AdagradOptimizer(_Optimizer):
    def __init__(self, learning_rate, initial_accumulator_value=0.1):
        super().__init__(learning_rate)
        self.initial = initial_accumulator_value

    def _apply(self, s, g, v):
        o = _ops()
        sub = s.NewSubScope("Adagrad")
        accum = o.Variable(sub, v.shape, v.dtype).output
        init = o.Assign(sub, accum, o.Fill(sub, o.Shape(sub, v),
                                           self._scalar(sub, self.initial, v))).operation
        _record(s, accum, init)
        return o.ApplyAdagrad(s, v, accum, self._scalar(s, self.learning_rate, v), g)


class RMSPropOptimizer(_Optimizer):
    def __init__(self, learning_rate, decay=0.9, momentum=0.0, epsilon=1e-10):
        super().__init__(learning_rate)
        self.decay, self.momentum, self.epsilon = decay, momentum, epsilon

    def _apply(self, s, g, v):
        ms, mom = self._slot(s, v, "RMSProp"), self._slot(s, v, "Momentum")
        c = self._scalar
        return _ops().ApplyRMSProp(s, v, ms, mom, c(s, self.learning_rate, v),
                                   c(s, self.decay, v), c(s, self.momentum, v),
                                   c(s, self.epsilon, v), g)


class AdamOptimizer(_Optimizer):
    """Adam with bias correction through beta1_power / beta2_power variables updated by
    each step (as TF 1's AdamOptimizer)."""

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8):
        super().__init__(learning_rate)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def apply_gradients(self, scope, grads_and_vars):
        o = _ops()
        s = scope.NewSubScope("Adam")
        first = grads_and_vars[0][1]
        powers = []
        for name, beta in (("beta1_power", self.beta1), ("beta2_power", self.beta2)):
            p = o.Variable(s.WithOpName(name), [], first.dtype).output
            _record(s, p, o.Assign(s, p, self._scalar(s, beta, first)).operation)
            powers.append(p)
        updates = []
        for g, v in grads_and_vars:
            m, vv = self._slot(s, v, "m"), self._slot(s, v, "v")
            c = self._scalar
            updates.append(o.ApplyAdam(s, v, m, vv, powers[0], powers[1],
                                       c(s, self.learning_rate, v), c(s, self.beta1, v),
                                       c(s, self.beta2, v), c(s, self.epsilon, v), g))
        after = s.WithControlDependencies(updates)
        bumps = [o.Assign(after, p, o.Mul(after, p, self._scalar(after, beta, first)))
                 for p, beta in zip(powers, (self.beta1, self.beta2))]
        return o.NoOp(s.WithControlDependencies(bumps)).operation


class Saver:
    """Save and restore variable values of a session as a ``.npz`` file keyed by node name.

    Writes are atomic (a temporary file, fsync, rename), so a crash never leaves a torn
    checkpoint. Restoring checks every variable's presence, dtype and shape first.
    """

    def __init__(self, var_list=None):
        self.var_list = None if var_list is None else [_variable_output(v) for v in var_list]

    def _vars(self, session):
        if self.var_list is not None:
            return self.var_list
        return list(_VARIABLES.get(session._graph, ()))

    def save(self, session, path: str) -> str:
        values = {}
        for v in self._vars(session):
            slot = session.resources.variable(v.op.name, v.dtype.as_numpy_dtype)
            values[v.op.name] = slot.read()
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **values)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    def restore(self, session, path: str) -> None:
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            msg = f"Cannot read checkpoint {path!r}: {e}"
            raise errors.NotFoundError(msg) from None
        with data:
            pending = []
            for v in self._vars(session):
                name = v.op.name
                if name not in data.files:
                    msg = f"Checkpoint {path!r} has no value for variable '{name}'"
                    raise errors.NotFoundError(msg)
                value = data[name]
                want = v.dtype.as_numpy_dtype
                if value.dtype != want or not v.shape.is_compatible_with(value.shape):
                    msg = (f"Checkpoint value for '{name}' is {value.dtype}{list(value.shape)} "
                           f"but the variable is {v.dtype.name}{v.shape}")
                    raise errors.InvalidArgumentError(msg)
                pending.append((session.resources.variable(name, want), value))
        for slot, value in pending:
            with slot.lock:
                slot.write(value)


# The names issue #9 and TF 2 use, beside TF 1's *Optimizer names.
GradientDescent = GradientDescentOptimizer
Momentum = MomentumOptimizer
Adam = AdamOptimizer
Adagrad = AdagradOptimizer
RMSProp = RMSPropOptimizer
