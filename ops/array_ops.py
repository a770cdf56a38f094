"""Array ops: constants and placeholders, identities, shapes and sizes, reshaping,
transposing, broadcasting, filling, ranges.

Shape functions follow TF's (tensorflow/core/ops/array_ops.cc) but are as strict as TF's
kernels: everything decidable from the known dims and values is refused at build time.
Ops whose output value is known at build time (Rank, Size, ShapeN, ExpandDims of a known
value, Fill, Range, ...) give a value function, as TF's ShapeRefiner evaluates them, so that
Reshape, Fill or BroadcastTo downstream see their (possibly partial) shape values.

Gradients follow TF's array_grad.py and are declared below their ops. Each is built from
ordinary ops, with every shape a Const when it is known at build time (Shape(x) otherwise), so
the gradient graph has static shapes and can be differentiated again.
"""

from __future__ import annotations

import numpy as np

from opgraph import errors
from opgraph.gradients import gradient, not_differentiable
from opgraph.graph import Output
from opgraph.inputs import to_ndarray
from opgraph.op_def import OpDef
from opgraph.registry import register_op
from opgraph.scope import Scope, user_site
from opgraph.shapes import TensorShape, make_shape
from opgraph.shape_inference import check_rank
from opgraph.wrappers import declare, make_wrapper

__all__ = ["Const", "Placeholder", "PlaceholderWithDefault", "Identity", "Shape", "Reshape",
           "Transpose", "ExpandDims", "Squeeze", "Rank", "Size", "ShapeN", "BroadcastTo",
           "Fill", "ZerosLike", "OnesLike", "Range", "StopGradient", "NoOp", "IdentityN",
           "InvertPermutation"]


# ---- gradient helpers -----------------------------------------------------------------------
def _static_value(t: Output):
    """t's value when it is fully known at build time (an array), else None."""
    values = t.op.output_values
    v = values[t.index] if values else None
    return np.asarray(v) if isinstance(v, np.ndarray) else None


def _shape_of(scope, x: Output, dtype=None):
    """x's shape as a 1-D int tensor (int32 unless ``dtype``): a Const when fully known at
    build time, else Shape(x) (whose partial value still reaches Reshape's shape function)."""
    import ops  # noqa: PLC0415  (ops modules use each other's wrappers lazily)
    npd = np.int32 if dtype is None else dtype.as_numpy_dtype
    if x.shape.is_fully_defined():
        return ops.Const(scope, np.array(x.shape.dims, dtype=npd)).output
    if dtype is None:
        return ops.Shape(scope, x).output
    return ops.Shape(scope, x, out_type=dtype).output


def _reshape_to_input(scope, grad: Output, x: Output) -> Output:
    """grad reshaped to x's shape: the gradient of every op that only reshapes x."""
    import ops  # noqa: PLC0415
    if x.shape.is_fully_defined() and grad.shape.dims == x.shape.dims:
        return grad
    return ops.Reshape(scope, grad, _shape_of(scope, x)).output


def _sum_all(scope, grad: Output) -> Output:
    """The sum of all of grad's elements, a scalar."""
    import ops  # noqa: PLC0415
    rank = grad.shape.rank
    if rank is None:                # flattened first, so the sum is statically a scalar
        grad = ops.Reshape(scope, grad, ops.Const(scope, np.array([-1], np.int32))).output
        rank = 1
    axes = ops.Const(scope, np.arange(rank, dtype=np.int32)).output
    return ops.Sum(scope, grad, axes).output


def _const_shape(c):
    value, dtype = c.attr("value"), c.attr("dtype")
    if dtype.is_available and np.asarray(value).dtype != dtype.as_numpy_dtype:
        msg = (f"Type mismatch between value ({np.asarray(value).dtype}) and dtype "
               f"({dtype.name})")            # TF's ConstantOp check
        raise errors.InvalidArgumentError(msg)
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


Placeholder = declare(
    "Placeholder",
    outputs=["output: dtype"],
    attrs=["dtype: type  # element type of the fed tensor",
           "shape: shape = ?  # static shape; None dims are unknown; default: unknown rank"],
    shape_fn=_placeholder_shape,
    doc="A tensor whose value is fed at run time (ClientSession.Run feeds). Feeding a value "
        "whose dtype or shape conflicts with the declared one is an InvalidArgumentError.")


def _placeholder_with_default_shape(c):
    declared = c.attr("shape")
    if not c.input(0).is_compatible_with(declared):
        msg = (f"The default value's shape {c.input(0)} is not compatible with the "
               f"declared shape {declared}")
        raise errors.InvalidArgumentError(msg)
    return [declared]


PlaceholderWithDefault = declare(
    "PlaceholderWithDefault",
    inputs=["input: dtype  # the value used when nothing is fed"],
    outputs=["output: dtype"],
    attrs=["dtype: type", "shape: shape  # the (more general) shape a fed value may have"],
    shape_fn=_placeholder_with_default_shape,
    doc="Passes `input` through unless a value is fed for it; a fed value may have any shape "
        "compatible with `shape`.")


@gradient("PlaceholderWithDefault")
def _placeholder_with_default_grad(scope, op, grads):
    """The default value's gradient passes through, as Identity's."""
    return [grads[0]]


Identity = declare(
    "Identity",
    inputs=["input: T"], outputs=["output: T"], attrs=["T: type"],
    shape_fn=lambda c: [c.input(0)],
    value_fn=lambda c: [c.input_value(0)],
    doc="Returns its input unchanged.")


@gradient("Identity")
def _identity_grad(scope, op, grads):
    return [grads[0]]


def _shape_shape(c):
    rank = c.input(0).rank
    return [make_shape((rank,))]


def _shape_vector_value(s: TensorShape, out_type):
    """The value of Shape(x) for x of static shape ``s``: an array, a partial TensorShape
    ([?, 9, 9, 3], for Reshape, Fill, ... downstream) or None (unknown rank)."""
    if s.dims is None:
        return None
    if not s.is_fully_defined():
        return s
    if out_type.name == "int32" and any(d > 2 ** 31 - 1 for d in s.dims):
        msg = f"Shape {s} does not fit in int32; use out_type int64"
        raise errors.InvalidArgumentError(msg)
    return np.array(s.dims, dtype=out_type.as_numpy_dtype)


def _shape_value(c):
    return [_shape_vector_value(c.input(0), c.attr("out_type"))]


Shape = declare(
    "Shape",
    inputs=["input: T"], outputs=["output: out_type  # 1-D: the dims of `input`"],
    attrs=["T: type", "out_type: {int32, int64} = int32"],
    shape_fn=_shape_shape, value_fn=_shape_value,
    doc="The shape of `input` as a 1-D tensor. Its value is known at build time when the "
        "input's static shape is fully defined, so shape functions downstream can read it.")


# ---- helpers shared by the shape and value functions below --------------------------------
#: Largest value (in elements) a value function materialises at build time, as TF's
#: ShapeRefiner bounds the tensors it evaluates while inferring shapes.
_MAX_VALUE_ELEMENTS = 1024
_INT32_MAX = 2 ** 31 - 1


def _prod(dims) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def _array_value(c, i):
    """Input i's value when it is fully known (an array; a fully known TensorShape value
    becomes one), else None. Unlike ``c.input_tensor`` it does not mark the shape function
    as depending on the value: value functions and pure validity checks use it."""
    v = c.input_value(i)
    if isinstance(v, TensorShape):
        if not v.is_fully_defined():
            return None
        dt = c.input_dtype(i)
        return np.array(v.dims, dtype=dt.as_numpy_dtype if dt else np.int64)
    return v


def _small(shape) -> bool:
    return shape.is_fully_defined() and shape.num_elements() <= _MAX_VALUE_ELEMENTS


def _int_vector(value) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1).tolist()]


# ---- Reshape --------------------------------------------------------------------------------
def _check_reshape_sizes(sizes) -> None:
    """The kernel's checks of a known ``shape`` value: one -1 at most, no other negatives."""
    unknown = -1
    for d, size in enumerate(_int_vector(sizes)):
        if size == -1:
            if unknown != -1:
                msg = f"Only one input size may be -1, not both {unknown} and {d}"
                raise errors.InvalidArgumentError(msg)
            unknown = d
        elif size < 0:
            msg = f"Size {d} must be non-negative, not {size}"
            raise errors.InvalidArgumentError(msg)


def _cannot_reshape(n_in: int, dims) -> errors.InvalidArgumentError:
    shape = make_shape(tuple(dims))
    n_out = shape.num_elements()
    n_out = _prod(d for d in dims if d is not None) if n_out is None else n_out
    msg = f"Cannot reshape a tensor with {n_in} elements to shape {shape.compact()} " \
          f"({n_out} elements)"
    return errors.InvalidArgumentError(msg)


def _not_a_multiple(n_in: int, product: int) -> errors.InvalidArgumentError:
    msg = (f"Input to reshape is a tensor with {n_in} values, but the requested shape "
           f"requires a multiple of {product}")
    return errors.InvalidArgumentError(msg)


def _infer_minus_one(tensor: TensorShape, dims: list, unknown: int) -> None:
    """The kernel's rule for the one -1 of a known ``shape`` value, ``tensor`` fully known:
    zero sizes are left out of the product so the other dims can still be inferred."""
    sizes_have_zero = 0 in dims
    product = _prod(d for d in dims if d is not None and d > 0)
    n_in = _prod(d for d in tensor.dims if d > 0 or not sizes_have_zero)
    input_has_zero = sizes_have_zero and 0 in tensor.dims
    missing = n_in // product
    if not input_has_zero and product * missing != n_in:
        raise _not_a_multiple(n_in, product)
    dims[unknown] = missing


def _reshape_shape(c):
    tensor = c.input(0)
    c.with_rank(1, 1)
    sizes = c.input_tensor(1)           # None when unknown or only partially known
    if sizes is not None:
        _check_reshape_sizes(sizes)
    out = c.input_as_shape(1)
    if out.dims is None or tensor.dims is None:
        return [out]
    dims = list(out.dims)
    unknown = [i for i, d in enumerate(dims) if d is None]
    known_out = _prod(d for d in dims if d is not None)
    n_in = tensor.num_elements()
    if n_in is not None:
        if not unknown:
            if known_out != n_in:
                raise _cannot_reshape(n_in, dims)
        elif sizes is not None:         # exactly one -1 (checked above)
            _infer_minus_one(tensor, dims, unknown[0])
            if _prod(dims) != n_in:
                raise _cannot_reshape(n_in, dims)
        elif known_out == 0:            # a partial shape value: the unknown dims are >= 0
            if n_in != 0:
                raise _cannot_reshape(n_in, dims)
        elif n_in % known_out:
            raise _not_a_multiple(n_in, known_out)
        elif len(unknown) == 1:
            dims[unknown[0]] = n_in // known_out
    else:
        known_in = _prod(d for d in tensor.dims if d is not None)
        if not unknown and known_in == 0 and known_out != 0:
            msg = (f"Cannot reshape a tensor of shape {tensor.compact()} (0 elements) to "
                   f"shape {out.compact()} ({known_out} elements)")
            raise errors.InvalidArgumentError(msg)
        if not unknown and known_in and known_out % known_in:
            msg = (f"Cannot reshape a tensor of shape {tensor.compact()} to shape "
                   f"{out.compact()} ({known_out} elements): {known_out} is not a multiple "
                   f"of the {known_in} elements its known dims hold")
            raise errors.InvalidArgumentError(msg)
    return [make_shape(tuple(dims))]


def _reshape_value(c):
    value = c.input_value(0)
    if value is None:
        return [None]
    out = _reshape_shape(c)[0]
    if isinstance(value, TensorShape):  # a partial shape vector reshaped to a vector
        return [value if out.dims == (len(value.dims),) else None]
    if not out.is_fully_defined():
        return [None]
    return [np.reshape(value, out.dims)]


Reshape = declare(
    "Reshape",
    inputs=["tensor: T", "shape: Tshape  # 1-D: the new shape; one entry may be -1"],
    outputs=["output: T"],
    attrs=["T: type", "Tshape: {int32, int64} = int32"],
    shape_fn=_reshape_shape, value_fn=_reshape_value,
    doc="`tensor`'s elements in the same (row-major) order with shape `shape`. At most one "
        "entry of `shape` may be -1: it is inferred so the element count is unchanged. The "
        "shape may be a partially known value such as Shape(x) of a [?, 9, 9, 3] tensor.")


@gradient("Reshape")
def _reshape_grad(scope, op, grads):
    """The gradient reshaped back to Shape(tensor); none for the shape."""
    return [_reshape_to_input(scope, grads[0], op.inputs[0]), None]


# ---- Transpose ------------------------------------------------------------------------------
def _check_permutation(perm: list, rank: int) -> None:
    if len(perm) != rank:
        msg = (f"transpose expects a vector of size {rank}. But input(1) is a vector of size "
               f"{len(perm)}")
        raise errors.InvalidArgumentError(msg)
    for d in perm:
        if not 0 <= d < rank:
            msg = f"{d} is out of range [0 .. {rank})"
            raise errors.InvalidArgumentError(msg)
    seen = set(perm)
    for i in range(rank):
        if i not in seen:
            msg = f"{i} is missing from {{{','.join(str(d) for d in perm)}}}."
            raise errors.InvalidArgumentError(msg)


def _transpose_shape(c):
    x = c.input(0)
    perm_shape = c.with_rank(1, 1)
    if perm_shape.dims[0] is not None:
        check_rank(perm_shape.dims[0], "Transpose's perm says the input")
    perm_value = c.input_tensor(1)
    if x.dims is not None:
        rank = len(x.dims)
    elif perm_shape.dims[0] is not None:
        rank = perm_shape.dims[0]
    elif perm_value is not None:
        rank = np.size(perm_value)
    else:
        return [c.unknown_shape()]
    if perm_shape.dims[0] is not None and perm_shape.dims[0] != rank:
        _check_permutation([0] * perm_shape.dims[0], rank)      # the size message
    if perm_value is None:
        if x.dims is None and rank < 2:
            return [x]              # a one-element perm could be a scalar's or a vector's
        return [c.unknown_shape(rank)]
    perm = _int_vector(perm_value)
    _check_permutation(perm, rank)
    if x.dims is None:
        return [c.unknown_shape(rank)]
    return [make_shape(tuple(x.dims[d] for d in perm))]


def _transpose_value(c):
    value, perm = c.input_value(0), _array_value(c, 1)
    if value is None or perm is None:
        return [None]
    perm = _int_vector(perm)
    if isinstance(value, TensorShape):
        return [value if perm == [0] else None]
    return [np.transpose(value, perm)]


Transpose = declare(
    "Transpose",
    inputs=["x: T", "perm: Tperm  # 1-D: a permutation of [0, rank(x))"],
    outputs=["y: T"],
    attrs=["T: type", "Tperm: {int32, int64} = int32"],
    shape_fn=_transpose_shape, value_fn=_transpose_value,
    doc="Permutes the dims of `x`: output dim i is input dim perm[i]; `perm` must be a "
        "permutation of [0, rank(x)).")


@gradient("Transpose")
def _transpose_grad(scope, op, grads):
    """The gradient transposed by the inverse permutation: a Const when perm is known at
    build time, else InvertPermutation(perm)."""
    import ops  # noqa: PLC0415
    perm = op.inputs[1]
    value = _static_value(perm)
    if value is not None:
        inverse = ops.Const(scope, np.argsort(value.reshape(-1)).astype(value.dtype)).output
    else:
        inverse = ops.InvertPermutation(scope, perm).output
    return [ops.Transpose(scope, grads[0], inverse).output, None]


# ---- InvertPermutation ----------------------------------------------------------------------
def _permutation_error(perm: np.ndarray):
    """The kernel's message for the first entry (in order) that is out of [0, n) or repeats
    an earlier one, or None for a permutation."""
    n = perm.size
    valid = (perm >= 0) & (perm < n)
    first = np.zeros(n, dtype=bool)
    if n:
        _, where = np.unique(np.where(valid, perm, -1), return_index=True)
        first[where] = True
    bad = np.flatnonzero(~valid | ~first)
    if not bad.size:
        return None
    k = int(bad[0])
    d = int(perm[k])
    if not valid[k]:
        return errors.InvalidArgumentError(f"{d} is not between 0 and {n}")
    return errors.InvalidArgumentError(f"{d} is duplicated in the input.")


def _invert_permutation_shape(c):
    x = c.with_rank(0, 1)
    value = c.input_tensor(0)       # re-checked on the actual value when unknown here
    if value is not None:
        err = _permutation_error(np.asarray(value).reshape(-1))
        if err is not None:
            raise err
    return [x]


def _invert_permutation_value(c):
    value = _array_value(c, 0)
    if value is None:
        return [None]
    value = np.asarray(value).reshape(-1)
    return [np.argsort(value).astype(value.dtype)]


InvertPermutation = declare(
    "InvertPermutation",
    inputs=["x: T  # 1-D: a permutation of [0, n)"],
    outputs=["y: T  # 1-D: y[x[i]] = i"],
    attrs=["T: {int32, int64} = DT_INT32"],
    shape_fn=_invert_permutation_shape, value_fn=_invert_permutation_value,
    doc="The inverse of the permutation `x`: y[x[i]] = i. Every entry of `x` must be in [0, "
        "n) and appear once. Known at build time when `x` is (so Transpose's gradient gets a "
        "constant perm).")
not_differentiable("InvertPermutation")


# ---- ExpandDims / Squeeze -------------------------------------------------------------------
def _expand_dims_shape(c):
    x = c.input(0)
    dim_shape = c.input(1)
    dim_value = c.input_tensor(1)
    n = np.size(dim_value) if dim_value is not None else dim_shape.num_elements()
    if n is not None and n != 1:
        msg = "'dim' input must be a tensor with a single value"
        raise errors.InvalidArgumentError(msg)
    if x.dims is None:
        return [c.unknown_shape()]
    rank = len(x.dims)
    if dim_value is None:
        return [c.unknown_shape(rank + 1)]
    dim = _int_vector(dim_value)[0]
    if not -rank - 1 <= dim <= rank:
        msg = f"dim {dim} not in the interval [{-rank - 1}, {rank}]."
        raise errors.InvalidArgumentError(msg)
    if dim < 0:
        dim += rank + 1
    return [make_shape(x.dims[:dim] + (1,) + x.dims[dim:])]


def _expand_dims_value(c):
    value = c.input_value(0)
    if value is None or isinstance(value, TensorShape):
        return [None]
    out = _expand_dims_shape(c)[0]
    return [np.reshape(value, out.dims)] if out.is_fully_defined() else [None]


ExpandDims = declare(
    "ExpandDims",
    inputs=["input: T", "dim: Tdim  # scalar (or one-element) axis in [-rank-1, rank]"],
    outputs=["output: T"],
    attrs=["T: type", "Tdim: {int32, int64} = int32"],
    shape_fn=_expand_dims_shape, value_fn=_expand_dims_value,
    doc="Inserts a dim of size 1 at index `dim` of `input`'s shape (negative `dim` counts "
        "from the end, -1 appends).")


@gradient("ExpandDims")
def _expand_dims_grad(scope, op, grads):
    return [_reshape_to_input(scope, grads[0], op.inputs[0]), None]


def _squeeze_shape(c):
    x = c.input(0)
    if x.dims is None:
        return [c.unknown_shape()]
    rank = len(x.dims)
    squeeze = []
    for i, d in enumerate(c.attr("squeeze_dims")):
        if not -rank <= d < rank:
            msg = f"squeeze_dims[{i}] not in [{-rank},{rank})."
            raise errors.InvalidArgumentError(msg)
        squeeze.append(d + rank if d < 0 else d)
    out = []
    for i, d in enumerate(x.dims):
        explicit = i in squeeze
        if d is None:
            if explicit:
                continue            # must be 1 at run time (checked then)
            if not squeeze:
                return [c.unknown_shape()]
        elif d == 1:
            if explicit or not squeeze:
                continue
        elif explicit:
            msg = f"Can not squeeze dim[{i}], expected a dimension of 1, got {d}"
            raise errors.InvalidArgumentError(msg)
        out.append(d)
    return [make_shape(tuple(out))]


def _squeeze_value(c):
    value = c.input_value(0)
    if value is None or isinstance(value, TensorShape):
        return [None]
    out = _squeeze_shape(c)[0]
    return [np.reshape(value, out.dims)] if out.is_fully_defined() else [None]


Squeeze = declare(
    "Squeeze",
    inputs=["input: T"], outputs=["output: T"],
    attrs=["T: type",
           "squeeze_dims: list(int) = []  # dims to remove (each must be 1); "
           "[]: every dim of size 1 (C++: Attrs().Axis)"],
    shape_fn=_squeeze_shape, value_fn=_squeeze_value,
    doc="Removes dims of size 1 from `input`'s shape: those in `squeeze_dims` (an error "
        "unless each is 1), or all of them when it is empty.")


def _squeeze_axis(self, value):
    """A copy with squeeze_dims = value (the C++ API's name for it: Attrs().Axis)."""
    return self._with("squeeze_dims", value)


Squeeze.Attrs.Axis = _squeeze_axis
Squeeze.Axis = staticmethod(lambda value: Squeeze.Attrs().Axis(value))


@gradient("Squeeze")
def _squeeze_grad(scope, op, grads):
    return [_reshape_to_input(scope, grads[0], op.inputs[0])]


# ---- Rank / Size / ShapeN -------------------------------------------------------------------
def _rank_value(c):
    rank = c.input(0).rank
    return [None if rank is None else np.array(rank, dtype=np.int32)]


Rank = declare(
    "Rank",
    inputs=["input: T"], outputs=["output: int32  # scalar"],
    attrs=["T: type"],
    shape_fn=lambda c: [c.scalar()], value_fn=_rank_value,
    doc="The number of dims of `input`, as an int32 scalar; known at build time when the "
        "static rank is.")

_SIZE_TOO_BIG = "Number of elements was larger than representable by 32-bit output type"


def _size_shape(c):
    n = c.input(0).num_elements()
    if n is not None and c.attr("out_type").name == "int32" and n > _INT32_MAX:
        raise errors.InvalidArgumentError(_SIZE_TOO_BIG)
    return [c.scalar()]


def _size_value(c):
    n = c.input(0).num_elements()
    return [None if n is None else np.array(n, dtype=c.attr("out_type").as_numpy_dtype)]


Size = declare(
    "Size",
    inputs=["input: T"], outputs=["output: out_type  # scalar"],
    attrs=["T: type", "out_type: {int32, int64} = int32"],
    shape_fn=_size_shape, value_fn=_size_value,
    doc="The number of elements of `input`, as a scalar; known at build time when its "
        "static shape is fully defined.")


def _shape_n_shape(c):
    return [c.vector(c.input(i).rank) for i in range(c.num_inputs)]


def _shape_n_value(c):
    out_type = c.attr("out_type")
    return [_shape_vector_value(c.input(i), out_type) for i in range(c.num_inputs)]


ShapeN = declare(
    "ShapeN",
    inputs=["input: N * T"], outputs=["output: N * out_type  # output[i] = Shape(input[i])"],
    attrs=["N: int", "T: type", "out_type: {int32, int64} = int32"],
    shape_fn=_shape_n_shape, value_fn=_shape_n_value,
    doc="The shapes of N tensors, as N 1-D tensors; each is known (or partially known) at "
        "build time as Shape's is.")


# ---- BroadcastTo / Fill / ZerosLike / OnesLike ----------------------------------------------
def _broadcast_to_shape(c):
    c.with_rank(1, 1)
    sizes = c.input_tensor(1)
    for d in () if sizes is None else _int_vector(sizes):
        if d < 0:
            msg = f"Dimension {d} must be >= 0"
            raise errors.InvalidArgumentError(msg)
    out = c.input_as_shape(1)
    x = c.input(0)
    if out.dims is None or x.dims is None:
        return [out]
    if len(x.dims) > len(out.dims):
        msg = (f"Rank of input ({len(x.dims)}) must be no greater than rank of output shape "
               f"({len(out.dims)}).")
        raise errors.InvalidArgumentError(msg)
    dims = list(out.dims)
    offset = len(dims) - len(x.dims)
    for i, d in enumerate(x.dims):
        o = dims[offset + i]
        if d is None or d == 1 or d == o:
            continue
        if o is None:
            dims[offset + i] = d    # only a dim of 1 broadcasts, so the output has d
        elif o == 1 and d != 0:
            msg = (f"Unable to broadcast tensor of shape {x.compact()} to tensor of shape "
                   f"{out.compact()}")
            raise errors.InvalidArgumentError(msg)
        else:
            msg = f"Incompatible shapes: {x.compact()} vs. {out.compact()}"
            raise errors.InvalidArgumentError(msg)
    return [make_shape(tuple(dims))]


BroadcastTo = declare(
    "BroadcastTo",
    inputs=["input: T", "shape: Tidx  # 1-D: the output shape"],
    outputs=["output: T"],
    attrs=["T: type", "Tidx: {int32, int64} = int32"],
    shape_fn=_broadcast_to_shape,
    doc="`input` broadcast (numpy rules: trailing dims aligned, only dims of size 1 "
        "stretch) to `shape`, whose rank must be at least `input`'s.")


@gradient("BroadcastTo")
def _broadcast_to_grad(scope, op, grads):
    """TF's _BroadcastToGrad: the gradient summed (keep_dims) over the axes
    BroadcastGradientArgs(shape, Shape(input)) gives for the input, reshaped to its shape."""
    import ops  # noqa: PLC0415
    x, shape = op.inputs
    grad = grads[0]
    if x.shape.is_fully_defined() and op.output(0).shape.dims == x.shape.dims:
        return [grad, None]
    value = _static_value(shape)
    if value is not None:
        shape = ops.Const(scope, value).output
    x_shape = _shape_of(scope, x, shape.dtype)
    _, axes = ops.BroadcastGradientArgs(scope, shape, x_shape)
    summed = ops.Sum(scope, grad, axes, keep_dims=True).output
    return [ops.Reshape(scope, summed, x_shape).output, None]


def _fill_shape(c):
    c.with_rank(0, 1)
    c.with_rank(1, 0)
    dims = c.input_tensor(0)
    if dims is not None and any(d < 0 for d in _int_vector(dims)):
        msg = "Fill dimensions must be >= 0"
        raise errors.InvalidArgumentError(msg)
    return [c.input_as_shape(0)]


def _fill_value(c):
    dims, value = _array_value(c, 0), c.input_value(1)
    if dims is None or value is None or isinstance(value, TensorShape):
        return [None]
    shape = make_shape(tuple(_int_vector(dims)))
    if not _small(shape):
        return [None]
    return [np.full(shape.dims, np.asarray(value), dtype=np.asarray(value).dtype)]


Fill = declare(
    "Fill",
    inputs=["dims: index_type  # 1-D: the output shape", "value: T  # scalar"],
    outputs=["output: T"],
    attrs=["T: type", "index_type: {int32, int64} = int32"],
    shape_fn=_fill_shape, value_fn=_fill_value,
    doc="A tensor of shape `dims` with every element `value`. `dims` may be a partially "
        "known shape value (Shape(x) of a partially known x).")


@gradient("Fill")
def _fill_grad(scope, op, grads):
    """TF's _FillGrad: the value's gradient is the sum of the gradient; none for dims. (Fill
    is also in gradients.NOT_DIFFERENTIABLE; the registered gradient takes precedence.)"""
    return [None, _sum_all(scope, grads[0])]

ZerosLike = declare(
    "ZerosLike",
    inputs=["x: T"], outputs=["y: T"], attrs=["T: type"],
    shape_fn=lambda c: [c.input(0)],
    doc="Zeros with the shape and dtype of `x` (False for bool, '' for string).")

OnesLike = declare(
    "OnesLike",
    inputs=["x: T"], outputs=["y: T"],
    attrs=["T: {bfloat16, half, float, double, int8, uint8, int16, uint16, int32, int64, "
           "complex64, complex128, bool}"],
    shape_fn=lambda c: [c.input(0)],
    doc="Ones with the shape and dtype of `x` (True for bool).")


# ---- Range ----------------------------------------------------------------------------------
def _fmt_number(v) -> str:
    """A scalar as TF's StrCat prints it: ints exactly, floats in the shortest %g form that
    round-trips at their precision."""
    v = np.asarray(v).reshape(())
    if v.dtype.kind in "iub":
        return str(int(v))
    x = float(v)
    digits = (6, 9) if v.dtype.itemsize <= 4 else (15, 17)
    for d in digits:
        s = f"{x:.{d}g}"
        if np.asarray(float(s), v.dtype) == v:
            return s
    return s


def _range_size(start, limit, delta) -> int:
    """Range's output length, with the kernel's checks; scalars of the op's dtype."""
    if delta == 0:
        msg = f"Requires delta != 0: {_fmt_number(delta)}"
        raise errors.InvalidArgumentError(msg)
    if delta > 0 and start > limit:
        msg = (f"Requires start <= limit when delta > 0: {_fmt_number(start)}/"
               f"{_fmt_number(limit)}")
        raise errors.InvalidArgumentError(msg)
    if delta < 0 and start < limit:
        msg = (f"Requires start >= limit when delta < 0: {_fmt_number(start)}/"
               f"{_fmt_number(limit)}")
        raise errors.InvalidArgumentError(msg)
    if start.dtype.kind in "iu":
        span, step = abs(int(limit) - int(start)), abs(int(delta))
        return (span + step - 1) // step
    with np.errstate(all="ignore"):
        size = np.ceil(np.abs((limit - start) / delta))     # in the op's own precision
    if not np.isfinite(size) or float(size) > 2 ** 63 - 1:
        msg = f"Requires ((limit - start) / delta) <= {2 ** 63 - 1}"
        raise errors.InvalidArgumentError(msg)
    return int(size)


def _range_scalars(c):
    values = [c.input_tensor(i) for i in range(3)]
    if any(v is None for v in values):
        return None
    return [np.asarray(v).reshape(()) for v in values]


def _range_shape(c):
    for i in range(3):
        c.with_rank(i, 0)
    scalars = _range_scalars(c)
    if scalars is None:
        return [c.vector(None)]
    return [c.vector(_range_size(*scalars))]


def _range_value(c):
    scalars = [_array_value(c, i) for i in range(3)]
    if any(v is None for v in scalars):
        return [None]
    start, limit, delta = (np.asarray(v).reshape(()) for v in scalars)
    size = _range_size(start, limit, delta)
    if size > _MAX_VALUE_ELEMENTS:
        return [None]
    return [start + np.arange(size).astype(start.dtype) * delta]


Range = declare(
    "Range",
    inputs=["start: Tidx  # scalar: the first value",
            "limit: Tidx  # scalar: the (exclusive) end",
            "delta: Tidx  # scalar: the step, not 0"],
    outputs=["output: Tidx  # 1-D"],
    attrs=["Tidx: {bfloat16, half, float, double, int8, int16, int32, int64} = int32"],
    shape_fn=_range_shape, value_fn=_range_value,
    doc="[start, start + delta, ...] up to but excluding `limit`: ceil((limit - start) / "
        "delta) values, start + i * delta computed in the op's dtype. delta must not be 0 "
        "and must point from start towards limit.")


# ---- StopGradient / NoOp / IdentityN --------------------------------------------------------
StopGradient = declare(
    "StopGradient",
    inputs=["input: T"], outputs=["output: T"], attrs=["T: type"],
    shape_fn=lambda c: [c.input(0)], value_fn=lambda c: [c.input_value(0)],
    doc="Returns its input unchanged; gradients do not flow through it.")

NoOp = declare(
    "NoOp",
    shape_fn=lambda c: [],
    doc="Does nothing: a Run target or control dependency that groups other ops.")

IdentityN = declare(
    "IdentityN",
    inputs=["input: T"], outputs=["output: T"],
    attrs=["T: list(type) >= 1  # one dtype per input; they may differ"],
    shape_fn=lambda c: [c.input(i) for i in range(c.num_inputs)],
    value_fn=lambda c: [c.input_value(i) for i in range(c.num_inputs)],
    doc="Returns its inputs unchanged, one output per input (of any mix of dtypes).")


@gradient("IdentityN")
def _identity_n_grad(scope, op, grads):
    return list(grads)
