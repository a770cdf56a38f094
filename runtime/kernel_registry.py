"""Kernel registry keyed by (op type, device type, dtype constraints, label).

    @register_kernel("Conv2DBackpropInputV2", device="CPU", constraints={"T": FLOAT_TYPES})
    class Conv2DBackpropInputV2Cpu(Kernel): ...

Selection for a node on a device type follows TF: registrations for that op and device whose
label equals the node's kernel label ("" when none) and whose every constraint allows the
node's attr value; the highest priority wins. A miss is a NotFoundError that names the node,
its dtypes and device, and lists what is registered for the op.
"""

from __future__ import annotations

from opgraph import errors
from opgraph.dtypes import DType

__all__ = ["Kernel", "KernelDef", "register_kernel", "registered_kernels", "find_kernel"]


class Kernel:
    """Base of all kernels: ``__init__(node)`` validates and converts attrs once per node;
    ``compute(*inputs)`` computes and returns one array (a tuple for multi-output ops)."""

    def __init__(self, node):
        self.node = node
        self.attrs = node.attrs

    def compute(self, *inputs):
        raise NotImplementedError


class KernelDef:
    """One registration: ``op_type``, ``device_type``, ``constraints`` (attr -> allowed
    values), ``label``, ``priority`` and the kernel class."""

    __slots__ = ("op_type", "device_type", "constraints", "label", "priority", "kernel_class")

    def __init__(self, op_type, device_type, constraints, label, priority, kernel_class):
        self.op_type = op_type
        self.device_type = device_type
        self.constraints = constraints
        self.label = label
        self.priority = priority
        self.kernel_class = kernel_class

    def matches(self, attrs: dict) -> bool:
        return all(attrs.get(k) in allowed for k, allowed in self.constraints.items())

    def describe(self) -> str:
        """TF's registry line: ``device='CPU'; label='x'; T in [DT_FLOAT, DT_DOUBLE]``."""
        parts = [f"device='{self.device_type}'"]
        if self.label:
            parts.append(f"label='{self.label}'")
        for k, allowed in self.constraints.items():
            vals = ", ".join(v.tf_name if isinstance(v, DType) else repr(v) for v in allowed)
            parts.append(f"{k} in [{vals}]")
        return "; ".join(parts)

    def __repr__(self) -> str:
        return f"KernelDef({self.op_type}: {self.describe()})"


_KERNELS: dict[str, list[KernelDef]] = {}


def register_kernel(op_type: str, device: str = "CPU", constraints=None, label: str = "",
                    priority: int = 0):
    """Class decorator registering a Kernel subclass for ``op_type`` on ``device``."""
    def deco(cls):
        allowed = {k: tuple(v) for k, v in (constraints or {}).items()}
        allowed = {k: tuple(t for t in v if not isinstance(t, DType) or t.is_available)
                   for k, v in allowed.items()}
        _KERNELS.setdefault(op_type, []).append(
            KernelDef(op_type, device, allowed, label, priority, cls))
        return cls
    return deco


def registered_kernels(op_type: str) -> list[KernelDef]:
    """Every registration for ``op_type`` (empty list when none)."""
    return list(_KERNELS.get(op_type, ()))


def find_kernel(node, device_type: str) -> KernelDef:
    """The kernel for ``node`` on ``device_type``; NotFoundError explaining a miss."""
    regs = _KERNELS.get(node.type, ())
    label = node.kernel_label
    candidates = [k for k in regs if k.device_type == device_type and k.label == label]
    matching = [k for k in candidates if k.matches(node.attrs)]
    if matching:
        best = max(k.priority for k in matching)
        top = [k for k in matching if k.priority == best]
        if len(top) > 1:
            msg = (f"Multiple kernel registrations match node '{node.name}' at priority {best}: "
                   + " and ".join(f"'{k.describe()}'" for k in top))
            raise errors.InternalError(msg, node.name, node.type, node.site)
        return top[0]
    typed = ", ".join(f"{k}={v.name}" for k, v in node.attrs.items() if isinstance(v, DType))
    listing = "\n".join(f"  {k.describe()}" for k in regs) or "  <no registered kernels>"
    why = (" (a kernel was found, but its dtype constraints didn't match)" if candidates else
           f" (no kernel has label '{label}')" if label and any(
               k.device_type == device_type for k in regs) else "")
    msg = (f"No registered '{node.type}' kernel for {device_type} devices compatible with node "
           f"'{node.name}' (created at {node.site}) with {typed or 'no type attrs'}"
           f"{f', label={label!r}' if label else ''}{why}. Registered kernels:\n{listing}")
    raise errors.NotFoundError(msg, node.name, node.type, node.site)
