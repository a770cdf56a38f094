"""Kernel registry keyed by (op type, device type, dtype constraints, label).

    @register_kernel("Conv2DBackpropInputV2")          # dtypes: the op's own allowed set
    class Conv2DBackpropInputV2Cpu(Kernel): ...

    @register_kernel("LeakyRelu")                      # a plain function; attrs by keyword
    def leaky_relu(features, *, alpha):
        return np.where(features > 0, features, features * alpha)

Selection for a node on a device type follows TF: registrations for that op and device whose
label equals the node's kernel label ("" when none) and whose every constraint allows the
node's attr value; the highest priority wins. A miss is a NotFoundError that names the node,
its dtypes and device, and lists what is registered for the op.
"""

from __future__ import annotations

import functools
import inspect

import attrs

from opgraph import errors
from opgraph.dtypes import DType
from opgraph.registry import get_op_def

__all__ = ["Kernel", "KernelDef", "register_kernel", "registered_kernels", "find_kernel"]


class Kernel:
    """Base of all kernels: ``__init__(node)`` validates and converts attrs once per node;
    ``compute(*inputs)`` computes and returns one array (a tuple for multi-output ops)."""

    def __init__(self, node):
        self.node = node
        self.attrs = node.attrs

    def compute(self, *inputs):
        raise NotImplementedError


@attrs.frozen
class KernelDef:
    """One registration: ``op_type``, ``device_type``, ``constraints`` (attr -> allowed
    values; None: the op's own allowed dtypes), ``label``, ``priority`` and the kernel class."""

    op_type: str
    device_type: str
    constraints: dict | None
    label: str
    priority: int
    kernel_class: type

    def matches(self, attrs: dict) -> bool:
        if self.constraints is None:      # the node was validated against the OpDef
            return True
        for k, allowed in self.constraints.items():
            v = attrs.get(k)
            if isinstance(v, tuple):            # a list(type) attr: every entry must be allowed
                if not all(t in allowed for t in v):
                    return False
            elif v not in allowed:
                return False
        return True

    def effective_constraints(self) -> dict:
        if self.constraints is not None:
            return self.constraints
        try:
            op_def = get_op_def(self.op_type)
        except errors.NotFoundError:
            return {}
        return {k: tuple(t for t in v if t.is_available)
                for k, v in op_def.type_attrs().items() if k in op_def.inferred_attrs
                or k in op_def.attrs}

    def describe(self) -> str:
        """TF's registry line: ``device='CPU'; label='x'; T in [DT_FLOAT, DT_DOUBLE]``."""
        parts = [f"device='{self.device_type}'"]
        if self.label:
            parts.append(f"label='{self.label}'")
        for k, allowed in self.effective_constraints().items():
            vals = ", ".join(v.tf_name if isinstance(v, DType) else repr(v) for v in allowed)
            parts.append(f"{k} in [{vals}]")
        return "; ".join(parts)


_KERNELS: dict[str, list[KernelDef]] = {}


def _function_kernel(op_type: str, fn) -> type:
    """A Kernel class around a plain function ``fn(*inputs, *, attr=...)``: its keyword-only
    parameters are bound from the node's attrs once per node."""
    params = inspect.signature(fn).parameters.values()
    wanted = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    wants_node = "node" in wanted

    def __init__(self, node):  # noqa: N807
        Kernel.__init__(self, node)
        kw = {k: node.attrs[k] for k in wanted if k != "node"}
        if wants_node:
            kw["node"] = node
        self.compute = functools.partial(fn, **kw) if kw else fn

    name = f"{op_type}Kernel_{fn.__name__}"
    return type(name, (Kernel,), {"__init__": __init__, "__doc__": fn.__doc__,
                                  "__module__": fn.__module__, "function": staticmethod(fn)})


def register_kernel(op_type: str, device: str = "CPU", constraints=None, label: str = "",
                    priority: int = 0, *, foldable: bool | None = None):
    """Decorator registering a kernel for ``op_type`` on ``device``.

    Decorates a Kernel subclass or a plain function ``fn(*inputs, *, attr, ...)`` (its
    keyword-only parameters receive the node's attrs; ``node`` the node itself). Without
    ``constraints`` the kernel accepts every dtype the op allows. ``foldable=False`` keeps
    the node out of constant folding (stateful or fed-per-run kernels). Returns the
    decorated object unchanged.
    """
    def deco(obj):
        cls = obj if isinstance(obj, type) else _function_kernel(op_type, obj)
        if foldable is not None:
            cls.foldable = foldable
        allowed = None
        if constraints is not None:
            allowed = {k: tuple(t for t in v if not isinstance(t, DType) or t.is_available)
                       for k, v in constraints.items()}
        _KERNELS.setdefault(op_type, []).append(
            KernelDef(op_type, device, allowed, label, priority, cls))
        return obj
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
