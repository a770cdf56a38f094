"""Variables: VariableV2 and the ops that assign to it (TF's state_ops).

    w = ops.Variable(root, [3, 3, 1, 8], DT_FLOAT)            # uninitialised until assigned
    init = ops.Assign(root, w, ops.Const(root, w0))
    sess.Run([], [], [init])                                   # C++: Run({}, {}, {init}, ...)
    step = ops.AssignSub(root, w, 0.1 * grad)

A variable's value lives in the session that runs it (one value per ClientSession, as TF's
resource manager holds it); reading it before an Assign is a FailedPreconditionError. The
ops taking ``ref`` must be given the variable's output directly (TF's ref edges).
"""

from __future__ import annotations

from opgraph.wrappers import declare

__all__ = ["Variable", "VariableV2", "Assign", "AssignAdd", "AssignSub", "IsVariableInitialized"]


def _variable_shape(c):
    return [c.attr("shape")]


VariableV2 = declare(
    "VariableV2",
    outputs=["ref: dtype  # the variable's current value"],
    attrs=["shape: shape  # the variable's shape (partial allowed)",
           "dtype: type",
           "container: string = ''", "shared_name: string = ''"],
    shape_fn=_variable_shape, stateful=True,
    doc="A tensor that keeps its value across Runs of one session. It has no value until an "
        "Assign runs; reading it earlier is a FailedPreconditionError.")
Variable = VariableV2          # tensorflow::ops::Variable builds a VariableV2 node


def _assign_shape(c):
    ref, value = c.input(0), c.input(1)
    if c.attr("validate_shape"):
        return [c.merge(ref, value, "the variable and the assigned value")]
    return [value]


def _update_shape(c):
    return [c.merge(c.input(0), c.input(1), "the variable and the update")]


Assign = declare(
    "Assign",
    inputs=["ref: T  # a Variable", "value: T"], outputs=["output_ref: T"],
    attrs=["T: type", "validate_shape: bool = true", "use_locking: bool = true"],
    shape_fn=_assign_shape, stateful=True,
    doc="ref = value; returns the new value. With validate_shape the value must have the "
        "variable's shape; without it the variable takes the value's shape.")

AssignAdd = declare(
    "AssignAdd",
    inputs=["ref: T  # a Variable", "value: T"], outputs=["output_ref: T"],
    attrs=["T: numbertype", "use_locking: bool = false"],
    shape_fn=_update_shape, stateful=True,
    doc="ref += value; returns the new value.")

AssignSub = declare(
    "AssignSub",
    inputs=["ref: T  # a Variable", "value: T"], outputs=["output_ref: T"],
    attrs=["T: numbertype", "use_locking: bool = false"],
    shape_fn=_update_shape, stateful=True,
    doc="ref -= value; returns the new value.")


IsVariableInitialized = declare(
    "IsVariableInitialized",
    inputs=["ref: dtype  # a Variable"], outputs=["is_initialized: bool"],
    attrs=["dtype: type"], shape_fn=lambda c: [c.scalar()], stateful=True,
    doc="Whether the variable has been assigned a value in this session.")
