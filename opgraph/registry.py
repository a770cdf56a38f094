"""The process-wide op registry: OpDefs by op type name.

``ops`` registers its declarations here at import; ``runtime`` and tools query it by name.
"""

from __future__ import annotations

from opgraph import errors
from opgraph.op_def import OpDef

__all__ = ["register_op", "get_op_def", "registered_ops"]

_REGISTRY: dict[str, OpDef] = {}


def register_op(op_def: OpDef) -> OpDef:
    """Add ``op_def``; registering the same name twice is an AlreadyExistsError."""
    if op_def.name in _REGISTRY:
        msg = f"Op '{op_def.name}' is already registered"
        raise errors.AlreadyExistsError(msg)
    _REGISTRY[op_def.name] = op_def
    return op_def


def get_op_def(name: str) -> OpDef:
    """The OpDef registered as ``name``; NotFoundError naming the known ops otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "<none: import ops to register the op library>"
        msg = f"Op type not registered '{name}'. Registered ops: {known}"
        raise errors.NotFoundError(msg) from None


def registered_ops() -> dict[str, OpDef]:
    """A copy of the registry: op type name -> OpDef."""
    return dict(_REGISTRY)
