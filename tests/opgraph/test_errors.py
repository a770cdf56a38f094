"""TF's error classes: codes, Python base classes, Status accumulation."""

from __future__ import annotations

import pytest

from opgraph import Status, errors

PY_BASES = [
    (errors.InvalidArgumentError, ValueError, 3, "INVALID_ARGUMENT"),
    (errors.NotFoundError, LookupError, 5, "NOT_FOUND"),
    (errors.UnimplementedError, NotImplementedError, 12, "UNIMPLEMENTED"),
    (errors.ResourceExhaustedError, MemoryError, 8, "RESOURCE_EXHAUSTED"),
    (errors.FailedPreconditionError, RuntimeError, 9, "FAILED_PRECONDITION"),
    (errors.InternalError, RuntimeError, 13, "INTERNAL"),
    (errors.AlreadyExistsError, ValueError, 6, "ALREADY_EXISTS"),
    (errors.OutOfRangeError, IndexError, 11, "OUT_OF_RANGE"),
    (errors.DeadlineExceededError, TimeoutError, 4, "DEADLINE_EXCEEDED"),
    (errors.PermissionDeniedError, PermissionError, 7, "PERMISSION_DENIED"),
    (errors.AbortedError, RuntimeError, 10, "ABORTED"),
]


@pytest.mark.parametrize(("cls", "base", "code", "code_name"), PY_BASES,
                         ids=[c.__name__ for c, *_ in PY_BASES])
def test_error_class_is_op_error_and_python_error(cls, base, code, code_name):
    assert issubclass(cls, errors.OpError)
    assert issubclass(cls, base)
    assert (cls.code, cls.code_name) == (code, code_name)
    err = cls("Shape must be rank 4", "tower/dx", "Conv2DBackpropInputV2", "model.py:12")
    with pytest.raises(base, match="Shape must be rank 4"):
        raise err
    assert str(err) == "Shape must be rank 4" == err.message
    assert (err.op_name, err.op_type, err.site) == ("tower/dx", "Conv2DBackpropInputV2",
                                                    "model.py:12")


def test_all_codes_distinct_and_exported():
    classes = [getattr(errors, n) for n in errors.__all__ if n.endswith("Error")]
    assert errors.OpError in classes
    codes = [c.code for c in classes if c is not errors.OpError]
    assert len(codes) == len(set(codes)) == 16
    for name in ("CancelledError", "UnknownError", "UnavailableError", "DataLossError",
                 "UnauthenticatedError"):
        assert issubclass(getattr(errors, name), errors.OpError)


def test_with_context_keeps_class_and_attaches_op():
    base = errors.UnimplementedError("strides in the batch dimension")
    err = base.with_context(" for node 'c'", "c", "Conv2D", "f.py:3")
    assert type(err) is errors.UnimplementedError
    assert str(err) == "strides in the batch dimension for node 'c'"
    assert (err.op_name, err.op_type, err.site) == ("c", "Conv2D", "f.py:3")
    assert base.op_name is None        # the original is not changed


def test_status_ok():
    s = Status()
    assert s.ok() and s.code == 0 and s.message == "" and s.errors == []
    s.raise_if_error()
    assert str(s) == "OK" and repr(s) == "Status(OK)"


def test_status_keeps_every_error_first_is_code_and_message():
    e1 = errors.InvalidArgumentError("first", "a", "Conv2D", "x.py:1")
    e2 = errors.UnimplementedError("second", "b", "Conv2D", "x.py:2")
    s = Status([e1, e2])
    assert not s.ok()
    assert s.code == 3 and s.message == "first"
    assert s.errors == [e1, e2]
    assert str(s) == "INVALID_ARGUMENT: first\nUNIMPLEMENTED: second"
    assert "2 error(s)" in repr(s)
    with pytest.raises(errors.InvalidArgumentError) as info:
        s.raise_if_error()
    assert str(info.value) == "first\n1 more error(s):\n  [2] second"
    assert info.value.__cause__ is e1
    assert info.value.op_name == "a"


def test_status_single_error_raises_it_unchanged():
    e = errors.NotFoundError("no kernel")
    with pytest.raises(errors.NotFoundError) as info:
        Status([e]).raise_if_error()
    assert info.value is e
