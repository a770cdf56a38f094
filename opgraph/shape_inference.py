"""InferenceContext: what an op's shape function sees (TF's shape_inference.h, in Python).

A shape function takes a context and returns one TensorShape per output. It reads the
inputs' partial shapes (``c.input(i)``), attrs (``c.attr(name)``) and, where an input is a
build-time constant, its value (``c.input_tensor(i)``). Checks compare known dims only and
raise InvalidArgumentError with one sentence; the framework appends the node, its creation
site and the input shapes. The same function runs again at run time on the actual shapes
when the op asks for it (``OpDef.recheck_shapes_at_run_time``), giving the same messages.
"""

from __future__ import annotations

from opgraph import errors
from opgraph.shapes import TensorShape

__all__ = ["InferenceContext"]


class InferenceContext:
    """Inputs' shapes, dtypes and constant values, plus the node's attrs."""

    __slots__ = ("op_def", "attrs", "input_shapes", "input_dtypes", "_input_values")

    def __init__(self, op_def, attrs: dict, input_shapes, input_dtypes, input_values=None):
        self.op_def = op_def
        self.attrs = attrs
        self.input_shapes = input_shapes
        self.input_dtypes = input_dtypes
        self._input_values = input_values

    @property
    def num_inputs(self) -> int:
        return len(self.input_shapes)

    def input(self, i: int) -> TensorShape:
        return self.input_shapes[i]

    def input_tensor(self, i: int):
        """Input i's value when known at build time (a constant), else None."""
        return None if self._input_values is None else self._input_values[i]

    def attr(self, name: str):
        return self.attrs[name]

    def input_name(self, i: int) -> str:
        args = self.op_def.inputs
        return args[i].name if i < len(args) else f"input {i}"

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
