"""Elementwise math ops."""

from __future__ import annotations

from opgraph.common_shapes import broadcast_binary
from opgraph.wrappers import declare

AddV2 = declare(
    "AddV2",
    inputs=["x: T", "y: T"], outputs=["z: T"],
    attrs=["T: {half, bfloat16, float, double, int8, int16, int32, int64, uint8, complex64, "
           "complex128}"],
    shape_fn=broadcast_binary,
    doc="x + y elementwise, with numpy broadcasting.")
