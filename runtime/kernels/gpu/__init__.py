"""GPU kernels: one registration per CPU kernel, wrapping it for the GPU backend in use.

Every CPU registration (same constraints, label and priority) gets a GPU twin whose kernel
runs in one of two modes, decided once per node:

* native: the backend's ``native`` table has the op (for CuPy: ``cupy_native.table()``):
  the table's function runs on device arrays. For most ops that function *is* the CPU
  kernel -- written once over numpy calls that CuPy arrays dispatch to CuPy
  (``__array_ufunc__`` / ``__array_function__``) -- and some are CuPy-specific (the conv
  family on cuBLAS GEMMs). A native call that meets a numpy-only construct (CuPy raises
  TypeError on implicit conversion) switches the node to host mode and is retried there.
* host: inputs are copied to the host, the CPU kernel runs, outputs are copied back.

Memory spaces follow TF's HostMemory convention: int32, string, resource and variant tensors
of a GPU node live on the host (shape vectors, axes, sizes), everything else on the device.
Nodes whose every tensor is host memory, stateful (resource) kernels, control flow and
string ops get no GPU kernel (TF runs them on the host too).
"""

from __future__ import annotations

import numpy as np

from opgraph import errors
from runtime import devices
from runtime.kernel_registry import _KERNELS, Kernel, KernelDef

__all__ = ["GpuKernel", "KernelDeclined", "register_gpu_kernels", "unregister",
           "host_memory", "SHAPE_ONLY_OPS", "NO_GPU_KERNEL_OPS"]

#: ops that read only their inputs' shapes: their inputs are never copied between devices
SHAPE_ONLY_OPS = frozenset({"Shape", "ShapeN", "Rank", "Size"})
#: ops kept on the host (TF has no GPU kernel or runs them on host memory)
NO_GPU_KERNEL_OPS = frozenset({"Placeholder", "PlaceholderWithDefault", "Const", "While",
                               "StatelessWhile", "If", "StatelessIf", "NoOp",
                               "BroadcastGradientArgs"})
_HOST_DTYPES = frozenset({"int32", "string", "resource", "variant"})


def host_memory(dtype) -> bool:
    """Whether a tensor of ``dtype`` (a DType or None) lives on the host on a GPU node."""
    return dtype is None or dtype.name in _HOST_DTYPES


class KernelDeclined(errors.NotFoundError):
    """The GPU kernel cannot run this node (its dtypes or tensors): place it elsewhere."""


class GpuKernel(Kernel):
    """A GPU twin of ``cpu_class`` (set on each generated subclass)."""

    cpu_class: type = Kernel

    def __init__(self, node):
        super().__init__(node)
        in_types = [o.dtype for o in node.inputs]
        out_types = list(node.output_dtypes)
        if all(host_memory(t) for t in in_types + out_types):
            raise KernelDeclined(f"'{node.name}': every tensor of the node is host memory")
        if any(t is not None and t.name in ("string", "resource", "variant")
               for t in in_types + out_types):
            raise KernelDeclined(f"'{node.name}': string/resource tensors have no GPU kernel")
        self.backend = devices.gpu_backend()
        if not self.backend.can_hold(node):
            raise KernelDeclined(f"'{node.name}': a dtype of the node has no device type")
        self.index = devices.parse_index(node.device)
        self.cpu = self.cpu_class(node)
        self.foldable = getattr(self.cpu, "foldable", True)
        self.host_inputs = [host_memory(t) for t in in_types]
        self.host_outputs = [host_memory(t) for t in out_types]
        self.single = len(out_types) == 1
        self.native = None
        self.host_fallbacks = 0
        factory = self.backend.native.get(node.type)
        if factory is not None:
            self.native = factory(node, self.cpu)
        self.mode = "native" if self.native is not None else "host"

    def compute(self, *inputs):
        if self.native is not None:
            try:
                return self._to_spaces(self.native(*inputs))
            except (TypeError, NotImplementedError, AttributeError):
                self.native, self.mode = None, "host"       # numpy-only code: run on host
                self.host_fallbacks += 1
        backend = self.backend
        host = [backend.to_host(x) if backend.is_device_array(x) else x for x in inputs]
        return self._to_spaces(self.cpu.compute(*host))

    def _to_spaces(self, result):
        """Each output in its memory space (device arrays, host for host-memory dtypes)."""
        if result is None:
            return None
        if not isinstance(result, (tuple, list)):
            return self._place_one(result, self.host_outputs[0] if self.host_outputs else True)
        last = len(self.host_outputs) - 1
        return type(result)(self._place_one(r, self.host_outputs[min(k, last)])
                            for k, r in enumerate(result))

    def _place_one(self, x, on_host):
        backend = self.backend
        if isinstance(x, (tuple, list)):
            return type(x)(self._place_one(v, on_host) for v in x)
        if on_host:
            return backend.to_host(x) if backend.is_device_array(x) else x
        if backend.is_device_array(x):
            return x
        return backend.to_device(np.asarray(x), self.index)


def _twin(kdef: KernelDef) -> KernelDef:
    cls = type(f"{kdef.kernel_class.__name__}Gpu", (GpuKernel,),
               {"cpu_class": kdef.kernel_class, "__doc__": f"GPU twin of {kdef.op_type}.",
                "__module__": __name__,
                "foldable": getattr(kdef.kernel_class, "foldable", True)})
    return KernelDef(kdef.op_type, "GPU", kdef.constraints, kdef.label, kdef.priority, cls)


def _wanted(kdef: KernelDef) -> bool:
    cls = kdef.kernel_class
    return (kdef.device_type == "CPU" and kdef.op_type not in NO_GPU_KERNEL_OPS
            and not getattr(cls, "needs_resources", False)
            and not getattr(cls, "checks_own_inputs", False)
            and "control_flow" not in getattr(cls, "__module__", ""))


def register_gpu_kernels() -> list[KernelDef]:
    """Add a GPU twin for every CPU registration that has none yet; the added ones."""
    added = []
    for op_type, regs in list(_KERNELS.items()):
        have = {(k.label, k.priority) for k in regs if k.device_type == "GPU"}
        for kdef in list(regs):
            if _wanted(kdef) and (kdef.label, kdef.priority) not in have:
                twin = _twin(kdef)
                regs.append(twin)
                added.append(twin)
    return added


def unregister(kdefs) -> None:
    """Remove registrations returned by ``register_gpu_kernels``."""
    for k in kdefs:
        regs = _KERNELS.get(k.op_type, [])
        for i, r in enumerate(regs):
            if r is k:
                del regs[i]
                break

