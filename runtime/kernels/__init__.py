"""Kernel modules, imported explicitly: each registers its kernels on import.

A new kernel module is added to this list (see docs/adding_an_op.md).
"""

from runtime.kernels.cpu import array_kernels, math_kernels, nn_kernels  # noqa: F401
