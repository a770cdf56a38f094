"""A TF-style DSL for testing shape functions statically (TF's shape_inference_testutil).

    infer_ok("Conv2D", {"strides": [1, 1, 1, 1], "padding": "SAME"},
             "[1,8,8,3];[3,3,3,16]", "[d0_0,8,8,16]")
    infer_error("Conv2D", {...}, "[1,8,8];[3,3,3,16]", InvalidArgumentError, "must be rank 4")

Input specs are separated by ``;``, one per OpDef input, in order:

* ``?``                   a Placeholder of unknown rank;
* ``[1,?,8,3]``           a Placeholder of that partial shape (``?`` is an unknown dim,
                          ``[]`` a scalar);
* ``=[1,8,8,3]``          a constant (a Python literal; int32 for int inputs), so its value is
                          known at build time;
* ``shape_of:[1,8,8,3]``  ``ops.Shape`` of a Placeholder of that shape.

Placeholders take the input's fixed dtype when the OpDef gives one (``input_sizes: int32``),
else ``dtype`` (float32 by default). The expected output is a shape spec in which ``dI_J``
means "dim J of input I" and ``?`` means "must still be unknown".

Each helper builds on a fresh root scope and goes through the generated wrapper
(``getattr(ops, op_type)``), exactly as a user would.
"""

from __future__ import annotations

import ast
import os
import re
import sys

import ops
from opgraph import DT_FLOAT, Scope, TensorShape, errors, get_op_def

__all__ = ["build", "infer_error", "infer_ok", "parse_shape"]

_DIM_REF = re.compile(r"^d(\d+)_(\d+)$")


def parse_shape(spec: str) -> TensorShape:
    """``"?"`` -> unknown rank; ``"[1,?,3]"`` -> TensorShape([1, None, 3])."""
    spec = spec.strip()
    if spec == "?":
        return TensorShape(None)
    if not (spec.startswith("[") and spec.endswith("]")):
        msg = f"bad shape spec {spec!r}"
        raise ValueError(msg)
    body = spec[1:-1].strip()
    if not body:
        return TensorShape([])
    return TensorShape([None if d.strip() == "?" else int(d) for d in body.split(",")])


def _make_input(scope: Scope, spec: str, arg, dtype, index: int):
    spec = spec.strip()
    in_dtype = arg.fixed_type or dtype
    name = f"in{index}"
    if spec.startswith("="):
        value = ast.literal_eval(spec[1:])
        return ops.Const(scope.WithOpName(name), value, dtype=in_dtype)
    if spec.startswith("shape_of:"):
        src = ops.Placeholder(scope.WithOpName(f"{name}_src"), DT_FLOAT,
                              shape=parse_shape(spec[len("shape_of:"):]))
        return ops.Shape(scope.WithOpName(name), src)
    return ops.Placeholder(scope.WithOpName(name), in_dtype, shape=parse_shape(spec))


def build(op_type: str, attrs: dict, shapes: str, dtype=DT_FLOAT):
    """(see below) ``dtype`` may be one DType for every input or a list, one per input."""
    return _build(op_type, attrs, shapes, dtype)


def _build(op_type: str, attrs: dict, shapes: str, dtype=DT_FLOAT):
    """Build the inputs and the op on a fresh root scope.

    Returns (scope, wrapper, input_shapes, call_site) where ``call_site`` is the file:line
    at which the wrapper was called (what the op's creation site must be).
    """
    op_def = get_op_def(op_type)
    specs = shapes.split(";")
    if len(specs) != len(op_def.inputs):
        msg = f"{op_type} has {len(op_def.inputs)} inputs but the spec {shapes!r} gives {len(specs)}"
        raise ValueError(msg)
    root = Scope.NewRootScope()
    dts = list(dtype) if isinstance(dtype, (list, tuple)) else [dtype] * len(specs)
    inputs = [_make_input(root, s, arg, dts[i], i)
              for i, (s, arg) in enumerate(zip(specs, op_def.inputs))]
    assert root.ok(), f"building the inputs failed: {root.status()}"
    input_shapes = [i.output.shape for i in inputs]
    wrapper_cls = getattr(ops, op_type)
    line = sys._getframe().f_lineno + 1
    wrapper = wrapper_cls(root.WithOpName("op"), *inputs, **attrs)
    return root, wrapper, input_shapes, f"{os.path.abspath(__file__)}:{line}"


def _expected(spec: str, input_shapes) -> list:
    spec = spec.strip()
    if spec == "?":
        return None
    body = spec.strip("[]").strip()
    if not body:
        return []
    dims = []
    for d in body.split(","):
        d = d.strip()
        m = _DIM_REF.match(d)
        if m:
            dims.append(input_shapes[int(m.group(1))].dims[int(m.group(2))])
        elif d == "?":
            dims.append(None)
        else:
            dims.append(int(d))
    return dims


def infer_ok(op_type: str, attrs: dict, shapes: str, expected: str, dtype=DT_FLOAT,
             output: int = 0):
    """The op builds with an OK status and output ``output``'s shape is exactly
    ``expected``."""
    root, wrapper, input_shapes, _ = build(op_type, attrs, shapes, dtype)
    assert root.ok(), f"{op_type} {attrs} on {shapes}: unexpected error:\n{root.status()}"
    got = list(wrapper)[output].shape
    want = _expected(expected, input_shapes)
    assert got.dims == (None if want is None else tuple(want)), (
        f"{op_type} {attrs} on {shapes}: inferred {got}, expected {expected} = {want}")
    op_def = get_op_def(op_type)
    out_arg = op_def.outputs[min(output, len(op_def.outputs) - 1)]
    out = list(wrapper)[output]
    first = dtype[0] if isinstance(dtype, (list, tuple)) else dtype
    if out_arg.fixed_type is not None:
        assert out.dtype is out_arg.fixed_type
    elif op_def.inputs and op_def.inputs[0].type_attr == out_arg.type_attr and \
            op_def.inputs[0].fixed_type is None:
        assert out.dtype is first
    return wrapper


def infer_error(op_type: str, attrs: dict, shapes: str, error_cls: type, regex: str,
                dtype=DT_FLOAT) -> errors.OpError:
    """Building records exactly one error, of class ``error_cls`` (exactly), whose message
    matches ``regex`` and names the node, its op type, its creation site and (when the
    inputs were converted) the input shapes. The wrapper's output is poisoned."""
    root, wrapper, input_shapes, site = build(op_type, attrs, shapes, dtype)
    status = root.status()
    assert not root.ok(), f"{op_type} {attrs} on {shapes}: expected {error_cls.__name__} " \
                          f"matching {regex!r}, but it built {[o.shape for o in wrapper]}"
    assert len(status.errors) == 1, str(status)
    err = status.errors[0]
    assert type(err) is error_cls, f"expected {error_cls.__name__}, got {type(err).__name__}: {err}"
    assert re.search(regex, str(err)), f"{regex!r} not found in: {err}"
    assert status.code == error_cls.code
    assert err.op_name == "op"
    assert err.op_type == op_type
    assert err.site == site, (err.site, site)
    message = str(err)
    assert "'op'" in message and f"'{op_type}'" in message, message
    assert site in message, message
    shapes_text = ", ".join(s.compact() for s in input_shapes)
    assert shapes_text in message, f"input shapes {shapes_text} not in: {message}"
    assert wrapper.operation.failed
    assert all(o.dtype is None and o.shape.rank is None for o in wrapper)
    assert not root.graph().has_name("op")
    return err
