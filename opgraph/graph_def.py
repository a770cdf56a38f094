"""GraphDef text format (TF's ``graph.pbtxt``) for a Graph, written directly."""

from __future__ import annotations

import numpy as np

from opgraph.dtypes import DType, as_dtype
from opgraph.shapes import TensorShape

__all__ = ["to_graph_def_text"]


def _shape_text(s: TensorShape) -> str:
    if s.dims is None:
        return "shape { unknown_rank: true }"
    return "shape { " + " ".join(f"dim {{ size: {-1 if d is None else d} }}"
                                 for d in s.dims) + " }"


def _value_text(v) -> str:
    if isinstance(v, bool):
        return f"b: {'true' if v else 'false'}"
    if isinstance(v, int):
        return f"i: {v}"
    if isinstance(v, float):
        return f"f: {v!r}"
    if isinstance(v, str):
        return f's: "{v}"'
    if isinstance(v, DType):
        return f"type: {v.tf_name}"
    if isinstance(v, TensorShape):
        return _shape_text(v)
    if isinstance(v, np.ndarray):
        dims = " ".join(f"dim {{ size: {d} }}" for d in v.shape)
        vals = " ".join(f"{x!r}" for x in v.ravel()[:16].tolist())
        return (f"tensor {{ dtype: {as_dtype(v.dtype).tf_name} tensor_shape {{ {dims} }} "
                f"values: [{vals}{' ...' if v.size > 16 else ''}] }}")
    if isinstance(v, tuple):
        if not v:
            return "list { }"
        return "list { " + " ".join(_value_text(x) for x in v) + " }"
    return f's: "{v}"'


def to_graph_def_text(graph) -> str:
    lines = []
    for op in graph.operations():
        lines += ["node {", f'  name: "{op.name}"', f'  op: "{op.type}"']
        lines += [f'  input: "{o.op.name if o.index == 0 else o.name}"' for o in op.inputs]
        lines += [f'  input: "^{c.name}"' for c in op.control_inputs]
        if op.device:
            lines.append(f'  device: "{op.device}"')
        attrs = dict(op.attrs)
        if op.kernel_label:
            attrs["_kernel"] = op.kernel_label
        if op.colocation:
            attrs["_class"] = tuple(f"loc:@{n}" for n in op.colocation)
        for k in sorted(attrs):
            lines.append(f'  attr {{ key: "{k}" value {{ {_value_text(attrs[k])} }} }}')
        lines.append("}")
    return "\n".join(lines) + "\n"
