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
