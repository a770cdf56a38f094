"""Kernel modules: every ``runtime/kernels/<device>/*_kernels.py`` module is imported here,
in name order, and registers its kernels on import (no list to keep up to date).
"""

import importlib
import pkgutil

from runtime.kernels import cpu as _cpu


def _import_kernel_modules(package) -> list:
    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                   if m.name.endswith("_kernels"))
    return [importlib.import_module(f"{package.__name__}.{n}") for n in names]


KERNEL_MODULES = _import_kernel_modules(_cpu)


def _register_gpu_when_cupy_importable() -> None:
    """GPU twins of the CPU kernels when CuPy is importable (nothing happens without it;
    no CUDA call is made here)."""
    import importlib.util  # noqa: PLC0415

    try:
        present = importlib.util.find_spec("cupy") is not None
    except (ImportError, ValueError):
        present = False
    if present:
        from runtime.kernels import gpu  # noqa: PLC0415

        gpu.register_gpu_kernels()


_register_gpu_when_cupy_importable()
