"""Function-valued attrs (TF's ``func`` kind) for ops whose bodies live in the same graph.

A FrameFunction names a frame of the graph: the tensors fed when it runs and the tensors it
returns. While/If nodes hold them (ops/control_flow_ops.py builds them); the GraphDef codec
reads and writes them; the framework needs no part of the op library for either.
"""

from __future__ import annotations

import attrs

__all__ = ["FrameFunction"]


@attrs.frozen
class FrameFunction:
    """A ``func`` attr value: a function whose nodes are in this graph, under ``name``.

    ``inputs`` names the tensors fed when it runs (a loop's placeholders, then the captured
    outer tensors), ``outputs`` the tensors it returns ("node:index" names).
    """

    name: str
    inputs: tuple = attrs.field(converter=tuple)
    outputs: tuple = attrs.field(converter=tuple)

    def __str__(self) -> str:
        return self.name
