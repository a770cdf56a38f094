"""Shape functions shared by many ops (TF's common_shape_fns), built on InferenceContext.

    Relu = declare("Relu", ..., shape_fn=unchanged_shape)
    AddV2 = declare("AddV2", ..., shape_fn=broadcast_binary)
"""

from __future__ import annotations

from opgraph.shape_inference import InferenceContext, broadcast_shapes
from opgraph.shapes import TensorShape

__all__ = ["unchanged_shape", "broadcast_binary", "scalar_shape", "no_outputs",
           "unknown_shape", "unchanged_shape_value"]


def unchanged_shape(c: InferenceContext) -> list[TensorShape]:
    """One output shaped like input 0."""
    return [c.input(0)]


def unchanged_shape_value(c: InferenceContext) -> list:
    """Value function of a pass-through op: input 0's known value."""
    return [c.input_value(0)]


def broadcast_binary(c: InferenceContext) -> list[TensorShape]:
    """One output: numpy broadcasting of inputs 0 and 1."""
    return [broadcast_shapes(c.input(0), c.input(1))]


def scalar_shape(c: InferenceContext) -> list[TensorShape]:
    return [c.scalar()]


def no_outputs(c: InferenceContext) -> list[TensorShape]:
    return []


def unknown_shape(c: InferenceContext) -> list[TensorShape]:
    return [c.unknown_shape() for _ in c.op_def.outputs]
