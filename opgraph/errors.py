"""TF's error classes, each also the matching built-in Python exception.

Every error raised while building or running a graph is an :class:`OpError`. Its ``str()``
is the full message; ``op_name``, ``op_type`` and ``site`` (file:line of the user's code
that created the op) are kept as attributes too. :class:`Status` is the accumulated state of
a Scope (see ``Scope.status()``).
"""

from __future__ import annotations

__all__ = [
    "OpError", "CancelledError", "UnknownError", "InvalidArgumentError",
    "DeadlineExceededError", "NotFoundError", "AlreadyExistsError", "PermissionDeniedError",
    "ResourceExhaustedError", "FailedPreconditionError", "AbortedError", "OutOfRangeError",
    "UnimplementedError", "InternalError", "UnavailableError", "DataLossError",
    "UnauthenticatedError", "Status",
]


class OpError(Exception):
    """Base class of all graph errors. ``code`` is TF's error code (an int)."""

    code = 2
    code_name = "UNKNOWN"

    def __init__(self, message: str, op_name: str | None = None, op_type: str | None = None,
                 site: str | None = None):
        message = message if isinstance(message, str) else str(message)
        super().__init__(message)
        self.message = message
        self.op_name = op_name
        self.op_type = op_type
        self.site = site

    def __str__(self) -> str:
        return self.message

    def with_context(self, context: str, op_name: str, op_type: str, site: str | None):
        """A copy of this error (same class) with ``context`` appended and the op attached."""
        err = type(self)(self.message + context, op_name, op_type, site)
        err.__cause__ = self.__cause__
        return err


def _error(name: str, code: int, code_name: str, *bases: type, doc: str) -> type:
    return type(name, (OpError, *bases), {"code": code, "code_name": code_name, "__doc__": doc})


CancelledError = _error("CancelledError", 1, "CANCELLED", doc="The operation was cancelled.")
UnknownError = _error("UnknownError", 2, "UNKNOWN", doc="An unknown error.")
InvalidArgumentError = _error("InvalidArgumentError", 3, "INVALID_ARGUMENT", ValueError,
                              doc="Bad argument: attr, dtype, shape or value.")
DeadlineExceededError = _error("DeadlineExceededError", 4, "DEADLINE_EXCEEDED", TimeoutError,
                               doc="A deadline expired.")
NotFoundError = _error("NotFoundError", 5, "NOT_FOUND", LookupError,
                       doc="Something requested (op, kernel, node, device) does not exist.")
AlreadyExistsError = _error("AlreadyExistsError", 6, "ALREADY_EXISTS", ValueError,
                            doc="An entity (e.g. a node name) already exists.")
PermissionDeniedError = _error("PermissionDeniedError", 7, "PERMISSION_DENIED", PermissionError,
                               doc="Permission denied.")
ResourceExhaustedError = _error("ResourceExhaustedError", 8, "RESOURCE_EXHAUSTED", MemoryError,
                                doc="A request would exceed memory or another resource.")
FailedPreconditionError = _error("FailedPreconditionError", 9, "FAILED_PRECONDITION",
                                 RuntimeError, doc="The system is not in a state to do this.")
AbortedError = _error("AbortedError", 10, "ABORTED", RuntimeError, doc="The operation aborted.")
OutOfRangeError = _error("OutOfRangeError", 11, "OUT_OF_RANGE", IndexError,
                         doc="An index or iteration went out of range.")
UnimplementedError = _error("UnimplementedError", 12, "UNIMPLEMENTED", NotImplementedError,
                            doc="Valid but not supported (yet).")
InternalError = _error("InternalError", 13, "INTERNAL", RuntimeError,
                       doc="An invariant of opgraph itself was broken (a bug).")
UnavailableError = _error("UnavailableError", 14, "UNAVAILABLE", RuntimeError,
                          doc="A service or device is unavailable.")
DataLossError = _error("DataLossError", 15, "DATA_LOSS", RuntimeError,
                       doc="Unrecoverable data loss.")
UnauthenticatedError = _error("UnauthenticatedError", 16, "UNAUTHENTICATED", PermissionError,
                              doc="Not authenticated.")


class Status:
    """The outcome of building (part of) a graph: OK, or every error recorded in order.

    ``code`` and ``message`` describe the first error, as TF's Status does; ``errors`` holds
    them all.
    """

    __slots__ = ("errors",)

    def __init__(self, errors: list[OpError] | None = None):
        self.errors: list[OpError] = list(errors or [])
        for e in self.errors:
            if not isinstance(e, OpError):
                msg = f"A Status holds OpErrors, got {type(e).__name__}"
                raise TypeError(msg)

    def ok(self) -> bool:
        return not self.errors

    @property
    def code(self) -> int:
        return self.errors[0].code if self.errors else 0

    @property
    def message(self) -> str:
        return self.errors[0].message if self.errors else ""

    def raise_if_error(self) -> None:
        """Raise the first error; with several, its message also lists the others."""
        if not self.errors:
            return
        first = self.errors[0]
        if len(self.errors) == 1:
            raise first
        rest = "\n".join(f"  [{i}] {e.message}" for i, e in enumerate(self.errors[1:], 2))
        err = type(first)(f"{first.message}\n{len(self.errors) - 1} more error(s):\n{rest}",
                          first.op_name, first.op_type, first.site)
        raise err from first

    def __repr__(self) -> str:
        if not self.errors:
            return "Status(OK)"
        return f"Status({self.errors[0].code_name}: {len(self.errors)} error(s); {self.message})"

    def __str__(self) -> str:
        if not self.errors:
            return "OK"
        return "\n".join(f"{e.code_name}: {e.message}" for e in self.errors)
