"""Optimizer update ops (TF's training_ops): each updates its variables in place.

    step = ops.ApplyGradientDescent(root, w, 0.1, dw)        # w -= 0.1 * dw

The ``var`` / ``accum`` / ``m`` / ``v`` / ``ms`` / ``mom`` inputs must be Variables; scalars
(learning rate, decay rates) are broadcast; the gradient must have the variable's shape.
The output is the variable's new value.
"""

from __future__ import annotations

from opgraph import errors
from opgraph.wrappers import declare

__all__ = ["ApplyGradientDescent", "ApplyMomentum", "ApplyAdam", "ApplyAdagrad",
           "ApplyRMSProp", "SLOT_INPUTS"]

#: the inputs of each op that are variables it updates, in order (var first)
SLOT_INPUTS = {"ApplyGradientDescent": ("var",), "ApplyMomentum": ("var", "accum"),
               "ApplyAdam": ("var", "m", "v"), "ApplyAdagrad": ("var", "accum"),
               "ApplyRMSProp": ("var", "ms", "mom")}


def _apply_shape(c):
    """Variables and the gradient share one shape; every other input is a scalar."""
    names = [a.name for a in c.op_def.inputs]
    slots = SLOT_INPUTS[c.op_def.name]
    shape = c.input(0)
    for i, name in enumerate(names):
        if name in slots or name in ("grad", "delta"):
            shape = c.merge(shape, c.input(i), f"'{name}' vs 'var'")
        else:
            s = c.input(i)
            if s.rank not in (None, 0):
                msg = f"{c.op_def.name}: '{name}' must be a scalar, but has shape {s}"
                raise errors.InvalidArgumentError(msg)
    return [shape]


_T = "T: numbertype"
_LOCK = "use_locking: bool = false"

ApplyGradientDescent = declare(
    "ApplyGradientDescent",
    inputs=["var: T", "alpha: T", "delta: T"], outputs=["out: T"],
    attrs=[_T, _LOCK], shape_fn=_apply_shape, stateful=True,
    doc="var -= alpha * delta.")

ApplyMomentum = declare(
    "ApplyMomentum",
    inputs=["var: T", "accum: T", "lr: T", "grad: T", "momentum: T"], outputs=["out: T"],
    attrs=[_T, _LOCK, "use_nesterov: bool = false"], shape_fn=_apply_shape, stateful=True,
    doc="accum = accum * momentum + grad; var -= lr * accum (Nesterov: var -= lr * grad + "
        "lr * momentum * accum).")

ApplyAdam = declare(
    "ApplyAdam",
    inputs=["var: T", "m: T", "v: T", "beta1_power: T", "beta2_power: T", "lr: T",
            "beta1: T", "beta2: T", "epsilon: T", "grad: T"], outputs=["out: T"],
    attrs=[_T, _LOCK, "use_nesterov: bool = false"], shape_fn=_apply_shape, stateful=True,
    doc="Adam: lr_t = lr * sqrt(1 - beta2_power) / (1 - beta1_power); m = beta1 m + (1 - "
        "beta1) g; v = beta2 v + (1 - beta2) g^2; var -= lr_t m / (sqrt(v) + epsilon).")

ApplyAdagrad = declare(
    "ApplyAdagrad",
    inputs=["var: T", "accum: T", "lr: T", "grad: T"], outputs=["out: T"],
    attrs=[_T, _LOCK, "update_slots: bool = true"], shape_fn=_apply_shape, stateful=True,
    doc="accum += grad^2; var -= lr * grad / sqrt(accum).")

ApplyRMSProp = declare(
    "ApplyRMSProp",
    inputs=["var: T", "ms: T", "mom: T", "lr: T", "rho: T", "momentum: T", "epsilon: T",
            "grad: T"], outputs=["out: T"],
    attrs=[_T, _LOCK], shape_fn=_apply_shape, stateful=True,
    doc="ms = rho ms + (1 - rho) g^2; mom = momentum mom + lr g / sqrt(ms + epsilon); "
        "var -= mom.")
