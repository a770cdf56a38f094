"""CPU kernels of the variable ops: state in the session's ResourceMgr."""

from __future__ import annotations

import numpy as np

from opgraph import errors
from runtime.kernel_registry import Kernel, register_kernel


class _VariableKernel(Kernel):
    """Base of kernels owning or updating a variable slot (never constant-folded)."""

    needs_resources = True
    foldable = False
    checks_own_inputs = True     # a ref input may be unassigned: no generic shape re-check
    resources = None

    def slot(self, var_node):
        dtype = var_node.attrs["dtype"].as_numpy_dtype
        return self.resources.variable(var_node.name, dtype)


class Uninitialized:
    """What an unassigned variable evaluates to: ops that assign to it ignore it; anything
    that reads it (numpy converting it, or a fetch) raises FailedPreconditionError."""

    __slots__ = ("slot",)

    def __init__(self, slot):
        self.slot = slot

    def __array__(self, dtype=None, copy=None):
        return self.slot.read()

    def __getattr__(self, name):        # .shape, .ndim, .dtype, ...: any use reads it
        return getattr(self.slot.read(), name)

    def __repr__(self) -> str:
        return f"<uninitialized variable {self.slot.name}>"


@register_kernel("VariableV2")
class VariableV2Cpu(_VariableKernel):
    def compute(self):
        slot = self.slot(self.node)
        value = slot.value
        return Uninitialized(slot) if value is None else value


def variable_of(node, i: int = 0):
    """The VariableV2 node feeding ``node``'s input ``i`` (a ref input: TF's ref edges are
    direct); InvalidArgumentError naming what was found otherwise."""
    src = node.inputs[i].op
    if src.type != "VariableV2":
        msg = (f"{node.type}: input '{node.op_def.inputs[i].name}' must be a Variable, but is "
               f"'{src.name}' of type {src.type}")
        raise errors.InvalidArgumentError(msg, node.name, node.type, node.site)
    return src


class _UpdateKernel(_VariableKernel):
    """An op whose input 0 is a variable it updates in place (under the slot's lock)."""

    def __init__(self, node):
        super().__init__(node)
        self.var_node = variable_of(node)
        self.declared = self.var_node.attrs["shape"]

    def update(self, ref_value, *args):
        raise NotImplementedError

    def compute(self, _ref, *args):
        slot = self.slot(self.var_node)
        with slot.lock:
            return slot.write(self.update(slot, *args))


@register_kernel("Assign")
class AssignCpu(_UpdateKernel):
    def update(self, slot, value):
        if self.attrs["validate_shape"] and not self.declared.is_compatible_with(value.shape):
            msg = (f"Assign requires shapes of both tensors to match: the variable's shape is "
                   f"{self.declared} and the value's is {list(value.shape)}")
            raise errors.InvalidArgumentError(msg)
        if slot.value is not None and self.attrs["validate_shape"] and \
                slot.value.shape != value.shape:
            msg = (f"Assign requires shapes of both tensors to match. lhs shape= "
                   f"{list(slot.value.shape)} rhs shape= {list(value.shape)}")
            raise errors.InvalidArgumentError(msg)
        return value


@register_kernel("AssignAdd")
class AssignAddCpu(_UpdateKernel):
    def update(self, slot, value):
        return _checked(slot, value, "AssignAdd") + value


@register_kernel("AssignSub")
class AssignSubCpu(_UpdateKernel):
    def update(self, slot, value):
        return _checked(slot, value, "AssignSub") - value


def _checked(slot, value, what):
    current = slot.read()
    if current.shape != np.shape(value):
        msg = (f"{what} requires shapes of both tensors to match. lhs shape= "
               f"{list(current.shape)} rhs shape= {list(np.shape(value))}")
        raise errors.InvalidArgumentError(msg)
    return current


@register_kernel("IsVariableInitialized")
class IsVariableInitializedCpu(_VariableKernel):
    def __init__(self, node):
        super().__init__(node)
        self.var_node = variable_of(node)

    def compute(self, _ref):
        return np.array(self.slot(self.var_node).value is not None)
