"""CPU kernels of the optimizer update ops: read the slots, compute, write back under the
variables' locks (taken in input order, so concurrent steps cannot deadlock)."""

from __future__ import annotations

from contextlib import ExitStack

import numpy as np

from opgraph import errors
from runtime.kernel_registry import register_kernel
from runtime.kernels.cpu.state_kernels import _VariableKernel, variable_of

_SLOTS = {"ApplyGradientDescent": 1, "ApplyMomentum": 2, "ApplyAdam": 3, "ApplyAdagrad": 2,
          "ApplyRMSProp": 3}


def _gradient_descent(var, alpha, delta, attrs):
    return (var - alpha * delta,)


def _momentum(var, accum, lr, grad, momentum, attrs):
    accum = accum * momentum + grad
    if attrs["use_nesterov"]:
        return var - (grad * lr + accum * momentum * lr), accum
    return var - lr * accum, accum


def _adam(var, m, v, beta1_power, beta2_power, lr, beta1, beta2, epsilon, grad, attrs):
    one = np.ones((), var.dtype)
    lr_t = lr * np.sqrt(one - beta2_power) / (one - beta1_power)
    m = m + (grad - m) * (one - beta1)
    v = v + (grad * grad - v) * (one - beta2)
    if attrs["use_nesterov"]:
        return var - (m * beta1 + (one - beta1) * grad) * lr_t / (np.sqrt(v) + epsilon), m, v
    return var - m * lr_t / (np.sqrt(v) + epsilon), m, v


def _adagrad(var, accum, lr, grad, attrs):
    if attrs["update_slots"]:
        accum = accum + grad * grad
    return var - lr * grad / np.sqrt(accum), accum


def _rmsprop(var, ms, mom, lr, rho, momentum, epsilon, grad, attrs):
    ms = ms + (grad * grad - ms) * (1 - rho)
    mom = mom * momentum + lr * grad / np.sqrt(ms + epsilon)
    return var - mom, ms, mom


_UPDATES = {"ApplyGradientDescent": _gradient_descent, "ApplyMomentum": _momentum,
            "ApplyAdam": _adam, "ApplyAdagrad": _adagrad, "ApplyRMSProp": _rmsprop}


class _ApplyKernel(_VariableKernel):
    def __init__(self, node):
        super().__init__(node)
        self.var_nodes = [variable_of(node, i) for i in range(_SLOTS[node.type])]
        self.update = _UPDATES[node.type]
        names = [a.name for a in node.op_def.inputs]
        self.grad_index = names.index("grad" if "grad" in names else "delta")

    def compute(self, *inputs):
        n = len(self.var_nodes)
        slots = [self.slot(v) for v in self.var_nodes]
        with ExitStack() as stack:
            for s in slots:
                stack.enter_context(s.lock)
            current = [s.read() for s in slots]
            shape = current[0].shape
            for s, c in zip(slots[1:], current[1:]):
                if c.shape != shape:
                    msg = (f"{self.node.type}: '{s.name}' has shape {list(c.shape)} but the "
                           f"variable has {list(shape)}")
                    raise errors.InvalidArgumentError(msg)
            grad = inputs[self.grad_index]
            if np.shape(grad) != shape:
                msg = (f"{self.node.type}: var and grad do not have the same shape: "
                       f"{list(shape)} vs {list(np.shape(grad))}")
                raise errors.InvalidArgumentError(msg)
            with np.errstate(all="ignore"):
                new = self.update(*current, *inputs[n:], self.attrs)
            out = [s.write(v) for s, v in zip(slots, new)]
        return out[0]


for _op in _UPDATES:
    register_kernel(_op)(type(f"{_op}Cpu", (_ApplyKernel,), {}))
