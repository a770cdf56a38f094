"""Device names: parse and validate TF device strings.

Accepted: ``""`` (no constraint), ``/device:CPU:0``, ``/cpu:0``, ``/GPU:1``, ``CPU:0`` and the
full form ``/job:localhost/replica:0/task:0/device:CPU:0`` (any subset of the parts, in
that order). The canonical short form used for placement is ``/device:CPU:0``.
"""

from __future__ import annotations

import re

from opgraph import errors

__all__ = ["DeviceSpec", "parse_device"]

_FULL = re.compile(
    r"(?:/job:(?P<job>[a-z][\w-]*))?(?:/replica:(?P<replica>\d+))?(?:/task:(?P<task>\d+))?"
    r"(?:/?(?:device:)?(?P<type>[A-Za-z]+):(?P<index>\d+|\*))?", re.ASCII)


class DeviceSpec:
    """A parsed device: ``device_type`` ("CPU", "GPU" or None) and ``index`` (int or None)."""

    __slots__ = ("job", "replica", "task", "device_type", "index")

    def __init__(self, job=None, replica=None, task=None, device_type=None, index=None):
        self.job, self.replica, self.task = job, replica, task
        self.device_type, self.index = device_type, index

    def to_string(self) -> str:
        if self.device_type is None:
            return ""
        idx = "*" if self.index is None else self.index
        return f"/device:{self.device_type}:{idx}"

    def __str__(self) -> str:
        return self.to_string()


def parse_device(name: str) -> DeviceSpec:
    """Parse ``name``; InvalidArgumentError with the accepted forms when it is malformed."""
    if not isinstance(name, str):
        msg = f"Device name must be a string, but got {type(name).__name__} {name!r}"
        raise errors.InvalidArgumentError(msg)
    if name == "":
        return DeviceSpec()
    m = _FULL.fullmatch(name)
    if m is None or not any(m.groupdict().values()):
        msg = (f"Malformed device specification '{name}'; expected e.g. '/device:CPU:0', "
               f"'/device:GPU:0', '/cpu:0' or '/job:localhost/replica:0/task:0/device:CPU:0'")
        raise errors.InvalidArgumentError(msg)
    g = m.groupdict()
    dtype = g["type"].upper() if g["type"] else None
    if dtype is not None and dtype not in ("CPU", "GPU"):
        msg = f"Unknown device type '{g['type']}' in '{name}'; expected CPU or GPU"
        raise errors.InvalidArgumentError(msg)
    index = None if g["index"] in (None, "*") else int(g["index"])
    return DeviceSpec(g["job"], g["replica"] and int(g["replica"]),
                      g["task"] and int(g["task"]), dtype, index)
