"""Partial shapes: unknown rank, or a list of dims each known (int >= 0) or unknown (None).

    >>> TensorShape([None, 8, 8, 16])
    TensorShape([?, 8, 8, 16])
    >>> TensorShape(None).merge_with([2, None]).as_list()
    [2, None]
"""

from __future__ import annotations

from opgraph import errors

__all__ = ["TensorShape", "as_shape", "make_shape", "unknown_shape"]

_MAX_DIM = 2 ** 63 - 1


class TensorShape:
    """An immutable, possibly partial shape. ``dims`` is a tuple of int|None, or None."""

    __slots__ = ("_dims",)

    def __init__(self, dims=None):
        if dims is None:
            self._dims = None
            return
        if isinstance(dims, TensorShape):
            self._dims = dims._dims
            return
        if isinstance(dims, int) and not isinstance(dims, bool):
            dims = (dims,)
        if isinstance(dims, (set, frozenset, dict, str, bytes)) or not hasattr(dims, "__iter__"):
            hint = (" (a C++ brace list {2, 2} is a Python list [2, 2], not a set)"
                    if isinstance(dims, (set, frozenset)) else "")
            msg = (f"A shape must be a list or tuple of dims (int or None), but got "
                   f"{type(dims).__name__} {dims!r}{hint}")
            raise errors.InvalidArgumentError(msg)
        out = []
        for d in dims:
            if d is None:
                out.append(None)
                continue
            if isinstance(d, bool) or not hasattr(d, "__index__"):
                if isinstance(d, float) and d.is_integer():
                    v = int(d)
                else:
                    msg = (f"Shape dimensions must be int or None, but got {d!r} in "
                           f"{list(dims)!r}")
                    raise errors.InvalidArgumentError(msg)
            else:
                v = d.__index__()
            if v == -1:
                out.append(None)
                continue
            if v < 0 or v > _MAX_DIM:
                msg = (f"Shape dimensions must be >= 0 (or -1/None for unknown) and fit in "
                       f"int64, but got {d!r}")
                raise errors.InvalidArgumentError(msg)
            out.append(v)
        self._dims = tuple(out)

    @classmethod
    def _from_tuple(cls, dims):
        """Trusted constructor (no validation) for internal hot paths."""
        s = cls.__new__(cls)
        s._dims = dims
        return s

    @property
    def dims(self):
        return self._dims

    @property
    def rank(self) -> int | None:
        return None if self._dims is None else len(self._dims)

    ndims = rank

    def is_fully_defined(self) -> bool:
        return self._dims is not None and None not in self._dims

    def num_elements(self) -> int | None:
        """Product of the dims (Python int, no overflow) or None when not fully defined."""
        if not self.is_fully_defined():
            return None
        n = 1
        for d in self._dims:
            n *= d
        return n

    def as_list(self) -> list:
        if self._dims is None:
            msg = "as_list() is not defined on an unknown TensorShape"
            raise errors.InvalidArgumentError(msg)
        return list(self._dims)

    def is_compatible_with(self, other) -> bool:
        if other.__class__ is tuple and other == self._dims:  # (an array of exactly this shape)
            return True
        if other.__class__ is tuple and self._dims is not None \
                and all(d.__class__ is int and d >= 0 for d in other):  # an array's shape
            return len(other) == len(self._dims) and all(
                a is None or a == b for a, b in zip(self._dims, other))
        other = as_shape(other)
        if self._dims is None or other._dims is None:
            return True
        if len(self._dims) != len(other._dims):
            return False
        return all(a is None or b is None or a == b for a, b in zip(self._dims, other._dims))

    def merge_with(self, other) -> TensorShape:
        """The most specific shape compatible with both; InvalidArgumentError if they conflict."""
        other = as_shape(other)
        if self._dims is None:
            return other
        if other._dims is None:
            return self
        if len(self._dims) != len(other._dims):
            msg = f"Shapes must be equal rank, but are {len(self._dims)} and {len(other._dims)}"
            raise errors.InvalidArgumentError(msg)
        merged = []
        for i, (a, b) in enumerate(zip(self._dims, other._dims)):
            if a is not None and b is not None and a != b:
                msg = (f"Dimension {i} in both shapes must be equal, but are {a} and {b}. "
                       f"Shapes are {self} and {other}.")
                raise errors.InvalidArgumentError(msg)
            merged.append(a if a is not None else b)
        return TensorShape._from_tuple(tuple(merged))

    def with_rank(self, rank: int) -> TensorShape:
        if self._dims is None:
            return TensorShape._from_tuple((None,) * rank)
        if len(self._dims) != rank:
            msg = f"Shape must be rank {rank} but is rank {len(self._dims)}"
            raise errors.InvalidArgumentError(msg)
        return self

    def __len__(self) -> int:
        if self._dims is None:
            msg = "Cannot take the length of a shape with unknown rank."
            raise errors.InvalidArgumentError(msg)
        return len(self._dims)

    def __iter__(self):
        if self._dims is None:
            msg = "Cannot iterate over a shape with unknown rank."
            raise errors.InvalidArgumentError(msg)
        return iter(self._dims)

    def __getitem__(self, key):
        if self._dims is None:
            return None if isinstance(key, int) else TensorShape(None)
        if isinstance(key, slice):
            return TensorShape._from_tuple(self._dims[key])
        return self._dims[key]

    def __eq__(self, other) -> bool:
        if not isinstance(other, TensorShape):
            try:
                other = as_shape(other)
            except (errors.InvalidArgumentError, TypeError):
                return NotImplemented
        return self._dims == other._dims

    def __hash__(self) -> int:
        return hash(self._dims)

    def __str__(self) -> str:
        if self._dims is None:
            return "<unknown>"
        return "[" + ", ".join("?" if d is None else str(d) for d in self._dims) + "]"

    def __repr__(self) -> str:
        if self._dims is None:
            return "TensorShape(None)"
        return f"TensorShape({self})"

    def compact(self) -> str:
        """TF's error-message spelling: ``[1,?,5]``, ``?`` for unknown rank."""
        if self._dims is None:
            return "?"
        return "[" + ",".join("?" if d is None else str(d) for d in self._dims) + "]"


def as_shape(value) -> TensorShape:
    """A TensorShape from a TensorShape, list/tuple of int|None, or None (unknown rank)."""
    if isinstance(value, TensorShape):
        return value
    return TensorShape(value)


def make_shape(dims) -> TensorShape:
    """A TensorShape from a tuple/list of int|None (validated; fast for plain ints)."""
    if type(dims) is tuple and all(d is None or (type(d) is int and 0 <= d <= _MAX_DIM)
                                   for d in dims):
        return TensorShape._from_tuple(dims)
    return TensorShape(dims)


def unknown_shape(rank: int | None = None) -> TensorShape:
    return TensorShape._from_tuple(None if rank is None else (None,) * rank)
