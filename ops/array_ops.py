"""Array ops: Const, Placeholder, PlaceholderWithDefault, Identity, Shape."""

from __future__ import annotations

import numpy as np

from opgraph import errors
from opgraph.graph import Output
from opgraph.inputs import to_ndarray
from opgraph.op_def import OpDef
from opgraph.registry import register_op
from opgraph.scope import Scope, user_site
from opgraph.shapes import TensorShape, make_shape
from opgraph.wrappers import make_wrapper

__all__ = ["Const", "Placeholder", "PlaceholderWithDefault", "Identity", "Shape"]


def _const_shape(c):
    return [make_shape(c.attr("value").shape)]


def _const_value(c):
    return [c.attr("value")]


register_op(OpDef(
    "Const",
    outputs=["output: dtype"],
    attrs=["value: tensor  # the constant's value", "dtype: type"],
    shape_fn=_const_shape, value_fn=_const_value,
    doc="A constant tensor. Python scalars, nested lists and numpy arrays passed as inputs "
        "become Const nodes automatically (python float -> float32, int -> int32)."))


class Const(make_wrapper("Const")):
    """Const(scope, value[, shape | dtype]): a constant from a Python value or numpy array.

    Typing follows TF's Python API (python float -> float32, int -> int32, numpy keeps its
    dtype); ``dtype`` converts explicitly (with range checks for integer types). The C++
    fill form ``Const(scope, 1, [4, 2])`` repeats one value to a shape. The value is
    copied: changing the caller's array later does not change the graph.
    """

    def __init__(self, scope, value, shape_or_dtype=None, dtype=None):  # noqa: D107
        site = user_site()
        if not isinstance(scope, Scope):
            msg = f"Const: the first argument must be a Scope, got {type(scope).__name__}"
            raise TypeError(msg)
        err = None
        shape = None
        if shape_or_dtype is not None:
            if isinstance(shape_or_dtype, (list, tuple, TensorShape, set, frozenset)):
                shape = shape_or_dtype
            elif dtype is None:
                dtype = shape_or_dtype
            else:
                shape = shape_or_dtype
        try:
            array = to_ndarray(value, dtype)
            if shape is not None:
                array = _fill(array, shape)
            else:
                array = np.array(array, copy=True)  # never alias the caller's array
            array.setflags(write=False)
        except errors.OpError as e:
            err = e
        except TypeError as e:                # an unknown dtype: a build error like any other
            err = errors.InvalidArgumentError(str(e))
        if err is not None:
            name = scope._full_name(scope._op_name or "Const")
            err = err.with_context(f" for node '{name}' (op: 'Const') created at {site}.",
                                   name, "Const", site)
            self.operation = scope._failed(self._op_def, name, {}, site, err)
        else:
            self.operation = scope.build_op(self._op_def, [], {"value": array,
                                                               "dtype": array.dtype}, site)
        self.output = Output(self.operation, 0)


def _fill(array, shape) -> np.ndarray:
    """C++'s ``Const(scope, value, shape)``: a scalar (or one-element) value repeated to
    ``shape``, or a value with exactly that many elements, reshaped."""
    dims = TensorShape(shape)
    if not dims.is_fully_defined():
        msg = f"Const shape must be fully defined, but got {dims}"
        raise errors.InvalidArgumentError(msg)
    n = dims.num_elements()
    if array.size == 1:
        return np.full(dims.dims, array.reshape(()), dtype=array.dtype)
    if array.size != n:
        msg = (f"Const value has {array.size} elements but shape {dims} needs {n} (or give "
               f"one value to fill it)")
        raise errors.InvalidArgumentError(msg)
    return np.array(array.reshape(dims.dims), copy=True)


def _placeholder_shape(c):
    return [c.attr("shape")]


register_op(OpDef(
    "Placeholder",
    outputs=["output: dtype"],
    attrs=["dtype: type  # element type of the fed tensor",
           "shape: shape = ?  # static shape; None dims are unknown; default: unknown rank"],
    shape_fn=_placeholder_shape,
    doc="A tensor whose value is fed at run time (ClientSession.Run feeds). Feeding a value "
        "whose dtype or shape conflicts with the declared one is an InvalidArgumentError."))
Placeholder = make_wrapper("Placeholder")


def _placeholder_with_default_shape(c):
    declared = c.attr("shape")
    if not c.input(0).is_compatible_with(declared):
        msg = (f"The default value's shape {c.input(0)} is not compatible with the "
               f"declared shape {declared}")
        raise errors.InvalidArgumentError(msg)
    return [declared]


register_op(OpDef(
    "PlaceholderWithDefault",
    inputs=["input: dtype  # the value used when nothing is fed"],
    outputs=["output: dtype"],
    attrs=["dtype: type", "shape: shape  # the (more general) shape a fed value may have"],
    shape_fn=_placeholder_with_default_shape,
    doc="Passes `input` through unless a value is fed for it; a fed value may have any shape "
        "compatible with `shape`."))
PlaceholderWithDefault = make_wrapper("PlaceholderWithDefault")


register_op(OpDef(
    "Identity",
    inputs=["input: T"], outputs=["output: T"], attrs=["T: type"],
    shape_fn=lambda c: [c.input(0)],
    value_fn=lambda c: [c.input_value(0)],
    doc="Returns its input unchanged."))
Identity = make_wrapper("Identity")


def _shape_shape(c):
    rank = c.input(0).rank
    return [make_shape((rank,))]


def _shape_value(c):
    s = c.input(0)
    if s.dims is None:
        return [None]
    if not s.is_fully_defined():
        return [s]      # a partial shape value ([?, 9, 9, 3]) for Reshape, Fill, ...
    if c.attr("out_type").name == "int32" and any(d > 2 ** 31 - 1 for d in s.dims):
        msg = f"Shape {s} does not fit in int32; use out_type int64"
        raise errors.InvalidArgumentError(msg)
    return [np.array(s.dims, dtype=c.attr("out_type").as_numpy_dtype)]


register_op(OpDef(
    "Shape",
    inputs=["input: T"], outputs=["output: out_type  # 1-D: the dims of `input`"],
    attrs=["T: type", "out_type: {int32, int64} = int32"],
    shape_fn=_shape_shape, value_fn=_shape_value,
    doc="The shape of `input` as a 1-D tensor. Its value is known at build time when the "
        "input's static shape is fully defined, so shape functions downstream can read it."))
Shape = make_wrapper("Shape")
