"""Elementwise math ops."""

from __future__ import annotations

from opgraph import errors
from opgraph.op_def import OpDef
from opgraph.registry import register_op
from opgraph.shapes import TensorShape
from opgraph.wrappers import make_wrapper

__all__ = ["AddV2", "broadcast_shapes"]


def broadcast_shapes(a: TensorShape, b: TensorShape) -> TensorShape:
    """numpy broadcasting over partial shapes; InvalidArgumentError when incompatible."""
    if a.dims is None or b.dims is None:
        return TensorShape(None)
    n = max(len(a.dims), len(b.dims))
    da = (1,) * (n - len(a.dims)) + a.dims
    db = (1,) * (n - len(b.dims)) + b.dims
    out = []
    for x, y in zip(da, db):
        if x == 1:
            out.append(y)
        elif y == 1:
            out.append(x)
        elif x is None or y is None:
            out.append(x if y is None else y)
        elif x == y:
            out.append(x)
        else:
            msg = f"Incompatible shapes for broadcasting: {a} and {b}"
            raise errors.InvalidArgumentError(msg)
    return TensorShape._from_tuple(tuple(out))


register_op(OpDef(
    "AddV2",
    inputs=["x: T", "y: T"], outputs=["z: T"],
    attrs=["T: {half, bfloat16, float, double, int8, int16, int32, int64, uint8, complex64, "
           "complex128}"],
    shape_fn=lambda c: [broadcast_shapes(c.input(0), c.input(1))],
    doc="x + y elementwise, with numpy broadcasting."))
AddV2 = make_wrapper("AddV2")
