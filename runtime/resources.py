"""Per-session state: variable values (TF's ResourceMgr for a session's variables).

Each ClientSession owns one ResourceMgr; kernels that declare ``needs_resources = True`` get
it as ``self.resources`` when the session places them. A variable's slot is created on first
use and guarded by its own lock, so concurrent Runs update it one at a time.
"""

from __future__ import annotations

import threading

import numpy as np

from opgraph import errors

__all__ = ["ResourceMgr", "VariableSlot"]


class VariableSlot:
    """One variable's current value (None until assigned) and its lock."""

    __slots__ = ("name", "value", "lock", "dtype")

    def __init__(self, name: str, dtype):
        self.name = name
        self.value = None
        self.dtype = dtype
        self.lock = threading.RLock()

    def read(self, node=None) -> np.ndarray:
        value = self.value
        if value is None:
            msg = (f"Attempting to use uninitialized value {self.name}: run an Assign to it "
                   f"(or restore a checkpoint) first")
            raise errors.FailedPreconditionError(msg)
        return value

    def write(self, value: np.ndarray) -> np.ndarray:
        """Store a private, read-only copy; readers get that array, never one a user holds."""
        stored = np.array(value, dtype=self.dtype, copy=True)
        stored.setflags(write=False)
        self.value = stored
        return stored


class ResourceMgr:
    """Variable slots by node name, created on first use."""

    def __init__(self):
        self._slots: dict[str, VariableSlot] = {}
        self._lock = threading.Lock()

    def variable(self, name: str, dtype) -> VariableSlot:
        slot = self._slots.get(name)
        if slot is None:
            with self._lock:
                slot = self._slots.setdefault(name, VariableSlot(name, dtype))
        return slot

    def variables(self) -> dict[str, VariableSlot]:
        return dict(self._slots)
