"""Devices and placement.

``/device:CPU:0`` always exists; ``/device:GPU:N`` exist when a GPU backend is present: by
default CuPy with a CUDA device (``pip install "opgraph[cuda12]"`` or ``"opgraph[cuda13]"``).
Every CuPy import or driver error means "no GPU": importing and using the library is then
unaffected. Placement follows TF (see ``runtime/placement.py``): a node's requested device
(``Scope.WithDevice``) narrows the choice; an unconstrained node goes to the GPU when it has
a kernel there, else to the CPU; ``ColocateWith`` puts a node where its target went.

The GPU backend is pluggable (``use_gpu_backend``) so that placement, copies and the GPU
kernel wrappers are tested without a GPU: a test installs a backend whose "device arrays"
are a numpy subclass (device type names are TF's, CPU and GPU, so the fake device is a GPU).
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from opgraph import errors
from opgraph.device_spec import parse_device

__all__ = ["Device", "GpuBackend", "CupyBackend", "available_devices", "gpu_backend",
           "use_gpu_backend", "gpu_unavailable_reason", "resolve_requested"]

HOST = "/device:CPU:0"


class Device:
    """One device: ``name`` ("/device:CPU:0"), ``device_type`` ("CPU"), ``index``."""

    __slots__ = ("name", "device_type", "index")

    def __init__(self, device_type: str, index: int = 0):
        self.device_type = device_type
        self.index = index
        self.name = f"/device:{device_type}:{index}"

    @property
    def is_host(self) -> bool:
        return self.device_type == "CPU"

    def __repr__(self) -> str:
        return f"Device({self.name})"


class GpuBackend:
    """What the runtime needs from a GPU array library. Subclasses override every method.

    ``device_count()`` (0 when absent), ``unavailable_reason()`` (why there is no GPU, or
    ""), ``is_device_array(x)``, ``to_device(host_array, index)``, ``to_host(device_array)``
    (a numpy array), ``xp`` (the array module, numpy-compatible) and ``native`` (op type ->
    a function replacing the CPU kernel's function on device arrays; see kernels/gpu).
    """

    name = "none"
    xp = np
    native: dict = {}

    def device_count(self) -> int:
        return 0

    def unavailable_reason(self) -> str:
        return "no GPU backend is configured"

    def is_device_array(self, x) -> bool:
        return False

    def to_device(self, x, index: int = 0):
        raise NotImplementedError

    def to_host(self, x) -> np.ndarray:
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued device work (for timing)."""

    def can_hold(self, node) -> bool:
        """Whether every tensor of ``node`` can live on the device (else it stays on host)."""
        return True


class CupyBackend(GpuBackend):
    """CuPy on CUDA devices. Nothing is imported until first asked."""

    name = "cupy"

    def __init__(self):
        self._cupy = None
        self._count = None
        self._reason = ""

    def _probe(self) -> None:
        if self._count is not None:
            return
        try:
            import cupy  # noqa: PLC0415  (optional GPU backend)
        except Exception as e:  # noqa: BLE001  (any import failure: no GPU)
            self._count = 0
            self._reason = (f"CuPy is not importable ({type(e).__name__}: {e}); install "
                            f"'opgraph[cuda12]' or 'opgraph[cuda13]'")
            return
        try:
            count = int(cupy.cuda.runtime.getDeviceCount())
        except Exception as e:  # noqa: BLE001  (no driver, no device)
            count = 0
            self._reason = (f"CuPy is installed but no CUDA device is usable "
                            f"({type(e).__name__}: {e})")
        if count == 0 and not self._reason:
            self._reason = "CuPy is installed but no CUDA device is visible"
        self._cupy, self._count = cupy, count

    @property
    def xp(self):
        self._probe()
        return self._cupy if self._cupy is not None else np

    @property
    def native(self) -> dict:
        from runtime.kernels.gpu import cupy_native  # noqa: PLC0415

        return cupy_native.table()

    def device_count(self) -> int:
        self._probe()
        return self._count

    def unavailable_reason(self) -> str:
        self._probe()
        return self._reason

    def is_device_array(self, x) -> bool:
        return self._cupy is not None and isinstance(x, self._cupy.ndarray)

    def to_device(self, x, index: int = 0):
        with self._cupy.cuda.Device(index):
            return self._cupy.asarray(x)

    def to_host(self, x) -> np.ndarray:
        return self._cupy.asnumpy(x)

    def can_hold(self, node) -> bool:
        names = [o.dtype.name for o in node.inputs] + [t.name for t in node.output_dtypes
                                                      if t is not None]
        return not any(n in ("bfloat16", "string") for n in names)   # no bfloat16 in CuPy

    def synchronize(self) -> None:
        if self._cupy is not None and self._count:
            self._cupy.cuda.get_current_stream().synchronize()


_BACKEND: list[GpuBackend] = [CupyBackend()]


def gpu_backend() -> GpuBackend:
    """The GPU backend in use (CuPy unless a test installed another)."""
    return _BACKEND[0]


@contextlib.contextmanager
def use_gpu_backend(backend: GpuBackend):
    """Install ``backend`` as the GPU backend for the duration of the ``with`` block.

    Sessions created inside see its devices; GPU kernel registrations are added for it if
    the CuPy ones were not (and removed again on exit)."""
    from runtime.kernels import gpu as gpu_kernels  # noqa: PLC0415

    previous = _BACKEND[0]
    _BACKEND[0] = backend
    available_devices.cache_clear()
    added = gpu_kernels.register_gpu_kernels()
    try:
        yield backend
    finally:
        gpu_kernels.unregister(added)
        _BACKEND[0] = previous
        available_devices.cache_clear()


def gpu_unavailable_reason() -> str:
    """Why there is no GPU ("" when there is one)."""
    backend = gpu_backend()
    return "" if backend.device_count() else backend.unavailable_reason()


def _gpu_count() -> int:
    try:
        return int(gpu_backend().device_count())
    except Exception:  # noqa: BLE001  (a broken backend means "no GPU")
        return 0


@functools.lru_cache(maxsize=1)
def available_devices() -> tuple[Device, ...]:
    """The devices of this process: the CPU, then any GPUs."""
    return (Device("CPU", 0), *(Device("GPU", i) for i in range(_gpu_count())))


def resolve_requested(node, devices, *, soft: bool = False) -> list[Device]:
    """The devices ``node``'s requested device allows, in preference order (GPU first).

    InvalidArgumentError naming the node, the available devices and (for a GPU) the missing
    piece if none matches; with ``soft`` (allow_soft_placement) every device is allowed then.
    """
    ordered = sorted(devices, key=lambda d: d.device_type != "GPU")
    if not node.device:
        return ordered
    spec = parse_device(node.device)
    matches = [d for d in devices
               if (spec.device_type is None or d.device_type == spec.device_type)
               and (spec.index is None or d.index == spec.index)]
    if not matches:
        if soft:
            return ordered
        names = ", ".join(d.name for d in devices)
        why = ""
        if spec.device_type == "GPU":
            reason = gpu_unavailable_reason()
            why = f" ({reason})" if reason else ""
        msg = (f"Cannot assign a device for operation '{node.name}' (op: '{node.type}', "
               f"created at {node.site}): it was pinned to '{node.device}', which does not "
               f"exist. Available devices: {names}{why}. Set "
               f"SessionOptions(allow_soft_placement=True) to place it on an available one.")
        raise errors.InvalidArgumentError(msg, node.name, node.type, node.site)
    return matches


def parse_index(device: str) -> int:
    """The device index of a requested device string (0 when none is given)."""
    if not device:
        return 0
    index = parse_device(device).index
    return 0 if index is None else index
