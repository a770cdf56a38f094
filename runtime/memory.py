"""Allocation guard: sizes are validated before anything is allocated."""

from __future__ import annotations

import os

from opgraph import errors

__all__ = ["allocation_limit_bytes", "check_allocation"]


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


_LIMIT = int(os.environ.get("OPGRAPH_MAX_ALLOCATION_BYTES", 0)) or _physical_memory()


def allocation_limit_bytes() -> int:
    """The largest single buffer a kernel may allocate (physical memory by default; set
    OPGRAPH_MAX_ALLOCATION_BYTES to lower it)."""
    return _LIMIT


def check_allocation(shape, itemsize: int, what: str) -> None:
    """ResourceExhaustedError when a ``shape`` buffer would exceed the allocation limit."""
    n = 1
    for d in shape:
        n *= int(d)
    nbytes = n * itemsize
    if nbytes > _LIMIT:
        msg = (f"OOM when allocating {what} with shape {list(shape)} ({n} elements, "
               f"{nbytes / 2**30:.3g} GiB): exceeds the allocation limit of "
               f"{_LIMIT / 2**30:.3g} GiB")
        raise errors.ResourceExhaustedError(msg)
