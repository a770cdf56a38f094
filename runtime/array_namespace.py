"""The array namespace of arrays: numpy for host arrays, cupy for CuPy arrays.

    xp = array_namespace(x, y)      # numpy or cupy
    out = xp.where(x > 0, x, 0)

Kernels written over ``xp`` run on both; CuPy is never imported here (a CuPy array's
module is found from its type), so this works without it.
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["array_namespace", "xp_of", "to_numpy", "is_device_array"]


def _cupy():
    return sys.modules.get("cupy")


def is_device_array(x) -> bool:
    """Whether ``x`` is a CuPy array (False whenever CuPy was never imported)."""
    cp = _cupy()
    return cp is not None and isinstance(x, cp.ndarray)


def array_namespace(*arrays):
    """cupy if any of ``arrays`` is a CuPy array, else numpy."""
    for a in arrays:
        if is_device_array(a):
            return _cupy()
    return np


xp_of = array_namespace


def to_numpy(x) -> np.ndarray:
    """``x`` as a numpy array (copied from the device for CuPy arrays)."""
    if is_device_array(x):
        return _cupy().asnumpy(x)
    return np.asarray(x)
