"""InferenceContext: what an op's shape function sees (TF's shape_inference.h, in Python).

A shape function takes a context and returns one TensorShape per output. It reads the
inputs' partial shapes (``c.input(i)``), attrs (``c.attr(name)``) and, where an input is a
build-time constant, its value (``c.input_tensor(i)``, ``c.input_as_shape(i)``). The helper
algebra (``with_rank``, ``merge``, ``broadcast``, ``concatenate``, ...) raises
InvalidArgumentError with TF's canonical sentences; the framework appends the node, its
creation site and the input shapes.

The context records whether everything the function read was fully known (``complete``):
when it was not, the executor runs the same function again on the actual input arrays
before the kernel, so run-time errors read exactly like build-time ones.
"""

from __future__ import annotations

import numpy as np

from opgraph import errors
from opgraph.shapes import TensorShape, make_shape

__all__ = ["InferenceContext", "merge_dims", "merge_shapes", "broadcast_shapes"]

_UNKNOWN = TensorShape(None)
MAX_RANK = 254      # TF's limit on the rank of a tensor (TensorShape's kMaxDims)


def _fmt(d) -> str:
    return "?" if d is None else str(d)


def merge_dims(a, b, what: str = ""):
    """The more specific of two dims (int|None); InvalidArgumentError when they differ."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    where = f" for {what}" if what else ""
    msg = f"Dimensions must be equal, but are {a} and {b}{where}"
    raise errors.InvalidArgumentError(msg)


def merge_shapes(a: TensorShape, b: TensorShape, what: str = "") -> TensorShape:
    """The most specific shape compatible with both; canonical errors when they conflict."""
    if a.dims is None:
        return b
    if b.dims is None:
        return a
    where = f" for {what}" if what else ""
    if len(a.dims) != len(b.dims):
        msg = (f"Shapes must be equal rank, but are {len(a.dims)} and {len(b.dims)}{where} "
               f"(shapes {a.compact()} and {b.compact()})")
        raise errors.InvalidArgumentError(msg)
    out = []
    for i, (x, y) in enumerate(zip(a.dims, b.dims)):
        if x is not None and y is not None and x != y:
            msg = (f"Dimension {i} in both shapes must be equal, but are {x} and {y}{where}. "
                   f"Shapes are {a.compact()} and {b.compact()}.")
            raise errors.InvalidArgumentError(msg)
        out.append(x if x is not None else y)
    return TensorShape._from_tuple(tuple(out))


def broadcast_shapes(a: TensorShape, b: TensorShape) -> TensorShape:
    """numpy broadcasting over partial shapes; InvalidArgumentError naming both shapes."""
    if a.dims is None or b.dims is None:
        return _UNKNOWN
    n = max(len(a.dims), len(b.dims))
    da = (1,) * (n - len(a.dims)) + a.dims
    db = (1,) * (n - len(b.dims)) + b.dims
    out = []
    for x, y in zip(da, db):
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        elif x is None or y is None:
            # An unknown dim against a known one: the result is the known one unless the
            # unknown is 1 (then it is the known one too); against 1 handled above.
            out.append(x if y is None else y)
        else:
            msg = (f"Incompatible shapes for broadcasting: {a} and {b} "
                   f"(dims {x} and {y} differ and neither is 1)")
            raise errors.InvalidArgumentError(msg)
    return TensorShape._from_tuple(tuple(out))


def check_rank(rank: int, what: str = "a tensor") -> int:
    """``rank`` when it is at most MAX_RANK, else InvalidArgumentError."""
    if rank > MAX_RANK:
        msg = f"{what} would have rank {rank}, but a tensor has at most {MAX_RANK} dims"
        raise errors.InvalidArgumentError(msg)
    return rank


class InferenceContext:
    """Inputs' shapes, dtypes and constant values, plus the node's attrs."""

    __slots__ = ("op_def", "attrs", "input_shapes", "input_dtypes", "_input_values",
                 "complete", "values_read")

    def __init__(self, op_def, attrs: dict, input_shapes, input_dtypes, input_values=None):
        self.op_def = op_def
        self.attrs = attrs
        self.input_shapes = input_shapes
        self.input_dtypes = input_dtypes
        self._input_values = input_values
        #: False once the function read something not fully known (a shape or a value).
        self.complete = True
        #: indices of the inputs whose value the function asked for.
        self.values_read = ()

    # ---- reading inputs -----------------------------------------------------------------
    @property
    def num_inputs(self) -> int:
        return len(self.input_shapes)

    def input(self, i: int) -> TensorShape:
        return self.input_shapes[i]

    def input_dtype(self, i: int):
        return self.input_dtypes[i]

    def attr(self, name: str):
        return self.attrs[name]

    def input_name(self, i: int) -> str:
        args = self.op_def.inputs
        if len(args) == len(self.input_shapes):
            return args[i].name
        return f"input {i}"

    def _raw_value(self, i: int):
        if i not in self.values_read:
            self.values_read = (*self.values_read, i)
        v = None if self._input_values is None else self._input_values[i]
        if v is None or (isinstance(v, TensorShape) and not v.is_fully_defined()):
            self.complete = False
        return v

    def input_value(self, i: int):
        """Input i's known value as recorded (array, partial-shape TensorShape or None), for
        value functions that pass values through (Identity)."""
        return None if self._input_values is None else self._input_values[i]

    def input_tensor(self, i: int):
        """Input i's value when known (a build-time constant, or the actual value at run
        time) as a numpy array, else None."""
        v = self._raw_value(i)
        if isinstance(v, TensorShape):
            if v.is_fully_defined():
                dt = self.input_dtypes[i]
                return np.array(v.dims, dtype=dt.as_numpy_dtype if dt else np.int64)
            return None
        return v

    def input_as_shape(self, i: int) -> TensorShape:
        """Input i, a 1-D int tensor of dims, as a (partial) shape: TF's
        MakeShapeFromShapeTensor. -1 entries are unknown dims; an unknown value gives a shape
        of the vector's length (or unknown rank)."""
        v = self._raw_value(i)
        if isinstance(v, TensorShape):
            return v
        if v is None:
            s = self.input_shapes[i]
            if s.dims is not None and len(s.dims) == 0:
                return _UNKNOWN    # a scalar -1 would mean unknown rank; unknowable here
            n = s.dims[0] if s.dims is not None and len(s.dims) == 1 else None
            if n is not None and n > MAX_RANK:
                msg = (f"Input '{self.input_name(i)}' is a shape vector of {n} dims, but a "
                       f"tensor has at most {MAX_RANK} dims")
                raise errors.InvalidArgumentError(msg)
            return _UNKNOWN if n is None else TensorShape._from_tuple((None,) * n)
        arr = np.asarray(v)
        if arr.ndim == 0:
            if int(arr) == -1:
                return _UNKNOWN
            msg = (f"Input '{self.input_name(i)}' must be a 1-D shape vector, but is a scalar "
                   f"{int(arr)}")
            raise errors.InvalidArgumentError(msg)
        if arr.ndim != 1:
            msg = (f"Input '{self.input_name(i)}' must be a 1-D shape vector, but has shape "
                   f"{list(arr.shape)}")
            raise errors.InvalidArgumentError(msg)
        dims = []
        for d in arr.tolist():
            if d < -1:
                msg = (f"Input '{self.input_name(i)}': shape dims must be >= -1, but got "
                       f"{arr.tolist()}")
                raise errors.InvalidArgumentError(msg)
            dims.append(None if d == -1 else int(d))
        return make_shape(tuple(dims))

    def scalar_value(self, i: int, what: str = ""):
        """Input i's value as a Python scalar when known, else None; it must be a scalar."""
        v = self.input_tensor(i)
        if v is None:
            return None
        arr = np.asarray(v)
        if arr.ndim != 0:
            name = what or f"input '{self.input_name(i)}'"
            msg = f"{name} must be a scalar, but has shape {list(arr.shape)}"
            raise errors.InvalidArgumentError(msg)
        return arr.item()

    # ---- the helper algebra -------------------------------------------------------------
    def with_rank(self, i: int, rank: int) -> TensorShape:
        """Input i's shape, which must have ``rank`` (unknown rank becomes ``rank`` ?s)."""
        s = self.input_shapes[i]
        if s.dims is None:
            return TensorShape._from_tuple((None,) * rank)
        if len(s.dims) != rank:
            msg = (f"Shape must be rank {rank} but is rank {len(s.dims)} for input "
                   f"'{self.input_name(i)}' (shape {s.compact()})")
            raise errors.InvalidArgumentError(msg)
        return s

    def with_rank_at_least(self, i: int, rank: int) -> TensorShape:
        s = self.input_shapes[i]
        if s.dims is not None and len(s.dims) < rank:
            msg = (f"Shape must be at least rank {rank} but is rank {len(s.dims)} for input "
                   f"'{self.input_name(i)}' (shape {s.compact()})")
            raise errors.InvalidArgumentError(msg)
        return s

    def with_rank_at_most(self, i: int, rank: int) -> TensorShape:
        s = self.input_shapes[i]
        if s.dims is not None and len(s.dims) > rank:
            msg = (f"Shape must be at most rank {rank} but is rank {len(s.dims)} for input "
                   f"'{self.input_name(i)}' (shape {s.compact()})")
            raise errors.InvalidArgumentError(msg)
        return s

    def scalar_input(self, i: int) -> TensorShape:
        return self.with_rank(i, 0)

    merge_dim = staticmethod(merge_dims)
    merge = staticmethod(merge_shapes)
    broadcast = staticmethod(broadcast_shapes)

    @staticmethod
    def concatenate(a: TensorShape, b: TensorShape) -> TensorShape:
        if a.dims is None or b.dims is None:
            return _UNKNOWN
        return TensorShape._from_tuple(a.dims + b.dims)

    @staticmethod
    def subshape(s: TensorShape, start: int, end: int | None = None) -> TensorShape:
        if s.dims is None:
            return _UNKNOWN
        return TensorShape._from_tuple(s.dims[start:end])

    @staticmethod
    def replace_dim(s: TensorShape, axis: int, dim) -> TensorShape:
        if s.dims is None:
            return _UNKNOWN
        dims = list(s.dims)
        dims[axis] = dim
        return TensorShape._from_tuple(tuple(dims))

    @staticmethod
    def unknown_shape(rank: int | None = None) -> TensorShape:
        """Unknown dims of ``rank`` (unknown rank when None); a rank beyond TF's 254 is an
        error (it comes from a hostile shape vector or perm, never from a real tensor)."""
        if rank is None:
            return _UNKNOWN
        check_rank(rank)
        return TensorShape._from_tuple((None,) * rank)

    @staticmethod
    def scalar() -> TensorShape:
        return TensorShape._from_tuple(())

    @staticmethod
    def vector(n) -> TensorShape:
        return TensorShape._from_tuple((n,))

    @staticmethod
    def make_shape(dims) -> TensorShape:
        return make_shape(tuple(dims))

    def canonical_axis(self, axis: int, rank: int | None, what: str = "axis") -> int | None:
        """``axis`` in [0, rank) (negative counts from the end); None when rank unknown."""
        if rank is None:
            return None
        if not -max(rank, 1) <= axis < max(rank, 1):
            msg = (f"{what} {axis} is out of range for a tensor of rank {rank} "
                   f"(expected [-{max(rank, 1)}, {max(rank, 1)}))")
            raise errors.InvalidArgumentError(msg)
        return axis + rank if axis < 0 else axis
