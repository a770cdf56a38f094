"""Kernel modules, imported explicitly (each registers its kernels on import)."""

from runtime.kernels.cpu import array_kernels, math_kernels, nn_kernels  # noqa: F401

try:  # the GPU kernels are an optional extra (CuPy)
    from runtime.kernels import gpu  # noqa: F401
except ImportError:
    gpu = None
