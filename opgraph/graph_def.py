"""GraphDef text format (TF's ``graph.pbtxt``) for a Graph, written directly.

Every string (names, inputs, devices, kernel labels, string attrs and string tensor
elements) is written C-escaped inside double quotes, as protobuf's text format does, so no
value can break the structure of the text. Constants are TensorProtos: one ``*_val`` field
for a one-element tensor, ``tensor_content`` (the raw little-endian bytes) otherwise, and
``string_val`` per element for strings.
"""

from __future__ import annotations

import numpy as np

from opgraph.dtypes import DType, as_dtype
from opgraph.shapes import TensorShape

__all__ = ["to_graph_def_text", "c_escape"]

_NAMED = {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", ord('"'): '\\"',
          ord("'"): "\\'", ord("\\"): "\\\\"}
_ESCAPES = [_NAMED.get(b, chr(b) if 0x20 <= b < 0x7F else f"\\{b:03o}") for b in range(256)]


def c_escape(value) -> str:
    """protobuf's CEscape: printable ASCII as is, quotes, backslash and \\n \\r \\t escaped,
    every other byte of the UTF-8 encoding as a 3-digit octal escape."""
    data = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
    return "".join(_ESCAPES[b] for b in data)


def _quoted(value) -> str:
    return f'"{c_escape(value)}"'


def _shape_text(s: TensorShape) -> str:
    if s.dims is None:
        return "shape { unknown_rank: true }"
    return "shape { " + " ".join(f"dim {{ size: {-1 if d is None else d} }}"
                                 for d in s.dims) + " }"


def _float_text(x) -> str:
    x = float(x)
    if x != x:
        return "nan"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    return repr(x)


def _scalar_fields(v: np.ndarray) -> str:
    """The typed ``*_val`` field(s) of a one-element tensor."""
    x = v.reshape(-1)[0]
    kind, size = v.dtype.kind, v.dtype.itemsize
    if kind == "b":
        return f"bool_val: {'true' if x else 'false'}"
    if kind in "iu":
        field = {"i8": "int64_val", "u4": "uint32_val", "u8": "uint64_val"}.get(
            f"{kind}{size}", "int_val")
        return f"{field}: {int(x)}"
    if kind == "c":
        field = "scomplex_val" if size == 8 else "dcomplex_val"
        return f"{field}: {_float_text(x.real)} {field}: {_float_text(x.imag)}"
    if kind == "f" and size in (4, 8):
        field = "float_val" if size == 4 else "double_val"
        text = str(np.float32(x)) if size == 4 else _float_text(x)
        return f"{field}: {text if np.isfinite(x) else _float_text(x)}"
    # half and bfloat16: TF stores the raw 16-bit patterns in half_val
    return f"half_val: {int(v.reshape(-1)[:1].view(np.uint16)[0])}"


def _tensor_text(v: np.ndarray) -> str:
    dims = " ".join(f"dim {{ size: {d} }}" for d in v.shape)
    head = f"dtype: {as_dtype(v.dtype).tf_name} tensor_shape {{ {dims} }}"
    if v.dtype == object:                           # strings
        body = " ".join(f"string_val: {_quoted(x)}" for x in v.reshape(-1))
    elif v.size == 1:
        body = _scalar_fields(v)
    elif v.size == 0:
        body = ""
    else:
        raw = np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<")).tobytes()
        body = f"tensor_content: {_quoted(raw)}"
    return f"tensor {{ {head} {body} }}" if body else f"tensor {{ {head} }}"


def _value_text(v) -> str:
    if isinstance(v, bool):
        return f"b: {'true' if v else 'false'}"
    if isinstance(v, int):
        return f"i: {v}"
    if isinstance(v, float):
        return f"f: {_float_text(v)}"
    if isinstance(v, (str, bytes)):
        return f"s: {_quoted(v)}"
    if isinstance(v, DType):
        return f"type: {v.tf_name}"
    if isinstance(v, TensorShape):
        return _shape_text(v)
    if isinstance(v, np.ndarray):
        return _tensor_text(v)
    if isinstance(v, tuple):
        if not v:
            return "list { }"
        return "list { " + " ".join(_value_text(x) for x in v) + " }"
    return f"s: {_quoted(v)}"


def to_graph_def_text(graph) -> str:
    lines = []
    for op in graph.operations():
        lines += ["node {", f"  name: {_quoted(op.name)}", f"  op: {_quoted(op.type)}"]
        lines += [f"  input: {_quoted(o.op.name if o.index == 0 else o.name)}"
                  for o in op.inputs]
        lines += [f"  input: {_quoted('^' + c.name)}" for c in op.control_inputs]
        if op.device:
            lines.append(f"  device: {_quoted(op.device)}")
        attrs = dict(op.attrs)
        if op.kernel_label:
            attrs["_kernel"] = op.kernel_label
        if op.colocation:
            attrs["_class"] = tuple(f"loc:@{n}" for n in op.colocation)
        for k in sorted(attrs):
            lines.append(f"  attr {{ key: {_quoted(k)} value {{ {_value_text(attrs[k])} }} }}")
        lines.append("}")
    return "\n".join(lines) + "\n"
