"""Devices and placement.

``/device:CPU:0`` always exists; ``/device:GPU:0`` exists when a GPU backend (CuPy with a
CUDA device) is importable. Placement follows TF: a node's requested device (its own, from
``Scope.WithDevice``) narrows the choice; an unconstrained node goes to the GPU when it has
a kernel there, else to the CPU; ``ColocateWith`` puts a node where its target went.
"""

from __future__ import annotations

import functools

from opgraph import errors
from opgraph.device_spec import parse_device

__all__ = ["Device", "available_devices"]


class Device:
    """One device: ``name`` ("/device:CPU:0"), ``device_type`` ("CPU"), ``index``."""

    __slots__ = ("name", "device_type", "index")

    def __init__(self, device_type: str, index: int = 0):
        self.device_type = device_type
        self.index = index
        self.name = f"/device:{device_type}:{index}"

    def __repr__(self) -> str:
        return f"Device({self.name})"


def _gpu_count() -> int:
    try:
        import cupy  # noqa: PLC0415  (optional GPU backend)

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # noqa: BLE001  (no CuPy, no driver, no device: all mean "no GPU")
        return 0


@functools.lru_cache(maxsize=1)
def available_devices() -> tuple[Device, ...]:
    """The devices of this process: the CPU, then any GPUs."""
    return (Device("CPU", 0), *(Device("GPU", i) for i in range(_gpu_count())))


def resolve_requested(node, devices) -> list[Device]:
    """The devices ``node``'s requested device allows, in preference order (GPU first).

    InvalidArgumentError naming the node and the available devices if none matches.
    """
    if not node.device:
        return sorted(devices, key=lambda d: d.device_type != "GPU")
    spec = parse_device(node.device)
    matches = [d for d in devices
               if (spec.device_type is None or d.device_type == spec.device_type)
               and (spec.index is None or d.index == spec.index)]
    if not matches:
        names = ", ".join(d.name for d in devices)
        msg = (f"Cannot assign a device for operation '{node.name}' (op: '{node.type}', "
               f"created at {node.site}): it was pinned to '{node.device}', which does not "
               f"exist. Available devices: {names}")
        raise errors.InvalidArgumentError(msg, node.name, node.type, node.site)
    return matches
