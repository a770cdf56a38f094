"""Reductions (TF math_ops.cc): Sum, Mean, Prod, Max, Min, All, Any, ArgMax, ArgMin, Cumsum,
Cumprod, with their gradients (TF's math_grad.py).

The axis inputs (``reduction_indices``, ``dimension``, ``axis``) are meant to be constants:
their values decide the output shape. When they are unknown at build time the shape is
partial and the executor re-checks the node on the actual values before the kernel runs.
"""

from __future__ import annotations

import numpy as np

from opgraph import dtypes as dt
from opgraph import errors
from opgraph.gradients import gradient, not_differentiable
from opgraph.graph import Output
from opgraph.shape_inference import InferenceContext
from opgraph.shapes import TensorShape
from opgraph.wrappers import declare

_IDX_ATTR = "Tidx: {int32, int64} = DT_INT32  # dtype of the axis input"
_KEEP_ATTR = "keep_dims: bool = false  # keep reduced dims with length 1"
_IDX_INPUT = ("reduction_indices: Tidx  # axes to reduce: a scalar or vector, in [-rank, "
              "rank), each at most once; empty reduces nothing")


def _axes_values(c: InferenceContext, i: int):
    """Input i's known values as a list of Python ints, or None."""
    v = c.input_tensor(i)
    return None if v is None else [int(a) for a in np.asarray(v).reshape(-1).tolist()]


def _duplicate_error(axis: int, given: list, rank) -> errors.InvalidArgumentError:
    where = f" for an input of rank {rank}" if rank is not None else ""
    msg = (f"Invalid reduction arguments: Axes contains duplicate dimension: {axis} "
           f"(reduction_indices {given}{where}; each dim may be reduced once)")
    return errors.InvalidArgumentError(msg)


def reduction_shape(c: InferenceContext) -> list[TensorShape]:
    """TF's ReductionShape, as strict as the kernel: axes in range and never repeated."""
    x = c.input(0)
    idx = c.with_rank_at_most(1, 1)
    keep_dims = c.attr("keep_dims")
    rank = x.rank
    axes = _axes_values(c, 1)
    if axes is None:
        n = None if idx.dims is None else (1 if not idx.dims else idx.dims[0])
        if rank is not None and n is not None and n > rank:
            entries = "1 entry" if n == 1 else f"{n} entries"
            msg = (f"Invalid reduction arguments: reduction_indices has {entries} but the "
                   f"input has rank {rank}, so some dim would be out of range or repeated")
            raise errors.InvalidArgumentError(msg)
        if keep_dims and rank is not None:
            return [c.unknown_shape(rank)]
        return [c.unknown_shape()]
    if rank is None:
        seen = set()
        for a in axes:             # a repeated value is a repeated dim at any rank
            if a in seen:
                raise _duplicate_error(a, axes, None)
            seen.add(a)
        return [c.unknown_shape()]
    reduced = set()
    for a in axes:
        if not -rank <= a < rank:
            msg = (f"Invalid reduction dimension {a} for input with {rank} dimensions: "
                   f"reduction_indices must be in [{-rank}, {rank})")
            raise errors.InvalidArgumentError(msg)
        k = a + rank if a < 0 else a
        if k in reduced:
            raise _duplicate_error(k, axes, rank)
        reduced.add(k)
    dims = []
    for i, d in enumerate(x.dims):
        if i not in reduced:
            dims.append(d)
        elif keep_dims:
            dims.append(1)
    return [c.make_shape(dims)]


def _reduction(name: str, type_attr: str | None, doc: str):
    typed = type_attr is not None
    return declare(
        name,
        inputs=["input: T" if typed else "input: bool", _IDX_INPUT],
        outputs=["output: T" if typed else "output: bool"],
        attrs=[_KEEP_ATTR, *([f"T: {type_attr}"] if typed else []), _IDX_ATTR],
        shape_fn=reduction_shape,
        doc=doc)


# ---- gradient helpers ----------------------------------------------------------------------
# The gradients below follow TF's math_grad.py. They are built from ordinary ops so they run
# (and can be differentiated again) when the input's shape is only partly known: every shape
# they need is a Const when it is known at build time and computed from Shape(x) otherwise.
def _static_value(t: Output):
    """t's value when it is known at build time (a Const or a folded value), else None."""
    values = t.op.output_values
    v = values[t.index] if values else None
    return v if isinstance(v, np.ndarray) else None


def _static_axes(x: Output, axes: Output) -> tuple | None:
    """The dims ``axes`` reduces, canonical and sorted, when x's rank and the axes are known."""
    rank = x.shape.rank
    v = _static_value(axes)
    if rank is None or v is None:
        return None
    return tuple(sorted({a + rank if a < 0 else a for a in v.reshape(-1).tolist()}))


def _as_int32(scope, t: Output):
    import ops  # noqa: PLC0415  (ops modules use each other's wrappers lazily)
    return t if t.dtype is dt.DT_INT32 else ops.Cast(scope, t, dt.DT_INT32).output


def _reduced_mask(scope, x: Output, axes: Output):
    """bool [rank(x)]: True at the dims ``axes`` reduces (each in [-rank, rank))."""
    import ops  # noqa: PLC0415
    rank = ops.Rank(scope, x)
    dims = ops.ExpandDims(scope, ops.Range(scope, 0, rank, 1), 1)            # [rank, 1]
    wanted = ops.Reshape(scope, _as_int32(scope, axes), [1, -1])              # [1, n]
    hit = ops.LogicalOr(scope, ops.Equal(scope, dims, wanted),
                        ops.Equal(scope, ops.Sub(scope, dims, rank), wanted))
    return ops.Any(scope, hit, [1]).output


def _shape_of(scope, x: Output):
    """x's shape as an int32 vector: a Const when fully known, else Shape(x)."""
    import ops  # noqa: PLC0415
    if x.shape.is_fully_defined():
        return ops.Const(scope, np.array(x.shape.dims, np.int32)).output
    return ops.Shape(scope, x).output


def _kept_dims_shape(scope, x: Output, axes: Output):
    """The reduction's keep_dims shape (x's shape with the reduced dims 1), int32 (TF's
    reduced_shape)."""
    import ops  # noqa: PLC0415
    static = _static_axes(x, axes)
    if static is not None:
        kept = [1 if i in static else d for i, d in enumerate(x.shape.dims)]
        if None not in kept:
            return ops.Const(scope, np.array(kept, np.int32)).output
        mask = ops.Const(scope, np.array([i in static for i in range(len(kept))])).output
    else:
        mask = _reduced_mask(scope, x, axes)
    return ops.SelectV2(scope, mask, 1, ops.Shape(scope, x)).output


def _broadcast_to_input(scope, op, grad: Output) -> Output:
    """A reduction's upstream gradient, reshaped to the keep_dims shape and broadcast back to
    the input's shape (TF's _SumGrad)."""
    import ops  # noqa: PLC0415
    x, axes = op.inputs
    if x.shape.is_fully_defined() and grad.shape.dims == x.shape.dims:
        return grad                 # nothing reduced, or only dims of size 1 with keep_dims
    if not op.attrs["keep_dims"]:
        grad = ops.Reshape(scope, grad, _kept_dims_shape(scope, x, axes)).output
    return ops.BroadcastTo(scope, grad, _shape_of(scope, x)).output


def _conj(scope, t: Output) -> Output:
    from ops.linalg_ops import conj  # noqa: PLC0415
    return conj(scope, t)


Sum = _reduction(
    "Sum", "numbertype",
    "The sum of input's elements along reduction_indices (the rank drops by one per axis "
    "unless keep_dims). Integers wrap around as in C++; an empty reduction gives 0.")


@gradient("Sum")
def _sum_grad(scope, op, grads):
    """Every input element gets the gradient of the sum it went into."""
    return [_broadcast_to_input(scope, op, grads[0]), None]


Mean = _reduction(
    "Mean", "numbertype",
    "The mean of input's elements along reduction_indices. Integer means are summed in "
    "64 bits and truncated toward zero; an empty reduction gives NaN for floats and 0 for "
    "integers and complex numbers.")


@gradient("Mean")
def _mean_grad(scope, op, grads):
    """Sum's gradient divided by the number of elements averaged (TF: size(x) over
    max(size(y), 1), from the shapes at run time when they are not all known)."""
    import ops  # noqa: PLC0415
    x, y = op.inputs[0], op.output(0)
    grad = _broadcast_to_input(scope, op, grads[0])
    if x.shape.is_fully_defined() and y.shape.is_fully_defined():
        factor = x.shape.num_elements() // max(y.shape.num_elements(), 1)
        count = ops.Const(scope, np.array(factor, x.dtype.as_numpy_dtype)).output
    else:
        count = ops.FloorDiv(scope, ops.Size(scope, x),
                             ops.Maximum(scope, ops.Size(scope, y), 1))
        count = ops.Cast(scope, count, x.dtype).output
    return [ops.RealDiv(scope, grad, count), None]


Prod = _reduction(
    "Prod", "numbertype",
    "The product of input's elements along reduction_indices. Integers wrap around as in "
    "C++; an empty reduction gives 1.")


def _invert_permutation(scope, perm: Output) -> Output:
    """inverse[perm[i]] = i for an int32 permutation vector, from ordinary ops."""
    import ops  # noqa: PLC0415
    positions = ops.Range(scope, 0, ops.Size(scope, perm), 1)
    hits = ops.Equal(scope, ops.ExpandDims(scope, perm, 0), ops.ExpandDims(scope, positions, 1))
    weighted = ops.Mul(scope, ops.Cast(scope, hits, dt.DT_INT32),
                       ops.ExpandDims(scope, positions, 0))
    return ops.Sum(scope, weighted, [1]).output       # row j: the i with perm[i] == j


def _prod_layout(scope, x: Output, axes: Output):
    """(perm, inverse perm, reduced count, other count, perm is the identity) of TF's _ProdGrad:
    the reduced dims moved to the front and flattened into one."""
    import ops  # noqa: PLC0415
    static = _static_axes(x, axes)
    shape = ops.Shape(scope, x)
    if static is not None:
        dims = x.shape.dims
        other = [i for i in range(len(dims)) if i not in static]
        order = [*static, *other]

        def count(idx):
            known = [dims[i] for i in idx]
            if None not in known:
                return int(np.prod(known, dtype=np.int64))
            picked = ops.GatherV2(scope, shape, np.array(idx, np.int32), 0)
            return ops.Prod(scope, picked, [0]).output

        perm = ops.Const(scope, np.array(order, np.int32)).output
        inverse = ops.Const(scope, np.argsort(order).astype(np.int32)).output
        return perm, inverse, count(static), count(other), order == sorted(order)
    mask = _reduced_mask(scope, x, axes)

    def indices(m):
        return ops.Reshape(scope, ops.Cast(scope, ops.Where(scope, m), dt.DT_INT32), [-1])

    reduced, other = indices(mask), indices(ops.LogicalNot(scope, mask))
    perm = ops.ConcatV2(scope, [reduced, other], 0).output

    def count(idx):
        return ops.Prod(scope, ops.GatherV2(scope, shape, idx, 0), [0]).output

    return perm, _invert_permutation(scope, perm), count(reduced), count(other), False


@gradient("Prod")
def _prod_grad(scope, op, grads):
    """TF's _ProdGrad: move the reduced dims to the front, flatten them into one, and take the
    product of every other element of each column as the exclusive cumulative products from
    both ends (exact with zeros, no division)."""
    import ops  # noqa: PLC0415
    x, axes = op.inputs
    grad = _broadcast_to_input(scope, op, grads[0])
    if _static_axes(x, axes) == ():
        return [grad, None]
    perm, inverse, reduced_num, other_num, identity = _prod_layout(scope, x, axes)
    permuted = x if identity else ops.Transpose(scope, x, perm).output
    if isinstance(reduced_num, int) and isinstance(other_num, int):
        matrix_shape = ops.Const(scope, np.array([reduced_num, other_num], np.int32))
    else:
        matrix_shape = ops.Pack(scope, [reduced_num, other_num])
    matrix = ops.Reshape(scope, permuted, matrix_shape)
    left = ops.Cumprod(scope, matrix, 0, exclusive=True)
    right = ops.Cumprod(scope, matrix, 0, exclusive=True, reverse=True)
    others = ops.Mul(scope, _conj(scope, left.output), _conj(scope, right.output))
    others = ops.Reshape(scope, others, _shape_of(scope, permuted))
    if not identity:
        others = ops.Transpose(scope, others, inverse)
    return [ops.Mul(scope, grad, others), None]


Max = _reduction(
    "Max", "realnumbertype",
    "The maximum of input's elements along reduction_indices; NaN propagates. An empty "
    "reduction gives -inf for floats and the type's lowest value for integers.")


def _min_or_max_grad(scope, op, grads):
    """TF's _MinOrMaxGrad: the gradient goes to the elements equal to the result, split
    evenly between ties."""
    import ops  # noqa: PLC0415
    x, axes = op.inputs
    y, grad = op.output(0), grads[0]
    if not op.attrs["keep_dims"]:
        kept = _kept_dims_shape(scope, x, axes)
        y, grad = ops.Reshape(scope, y, kept), ops.Reshape(scope, grad, kept)
    indicators = ops.Cast(scope, ops.Equal(scope, y, x), x.dtype)
    selected = ops.Sum(scope, indicators, axes, keep_dims=True)
    return [ops.Mul(scope, ops.RealDiv(scope, indicators, selected), grad), None]


gradient("Max")(_min_or_max_grad)

Min = _reduction(
    "Min", "realnumbertype",
    "The minimum of input's elements along reduction_indices; NaN propagates. An empty "
    "reduction gives +inf for floats and the type's highest value for integers.")
gradient("Min")(_min_or_max_grad)

All = _reduction(
    "All", None,
    "Logical AND of input's elements along reduction_indices; an empty reduction is true.")
Any = _reduction(
    "Any", None,
    "Logical OR of input's elements along reduction_indices; an empty reduction is false.")
not_differentiable("All", "Any")

ReduceSum = Sum
ReduceMean = Mean
ReduceProd = Prod
ReduceMax = Max
ReduceMin = Min
ReduceAll = All
ReduceAny = Any


# ---- ArgMax / ArgMin -----------------------------------------------------------------------
def _arg_op_shape(c: InferenceContext) -> list[TensorShape]:
    """TF's ArgOpShape plus the kernel's checks: dimension in range, reduced dim non-empty."""
    c.with_rank(1, 0)
    x = c.input(0)
    if x.dims is None:
        return [c.unknown_shape()]
    rank = len(x.dims)
    dim = c.scalar_value(1)
    if dim is None:
        if rank == 0:
            msg = ("Expected dimension in the range [0, 0) for an input of rank 0: a scalar "
                   "has no dimension to reduce")
            raise errors.InvalidArgumentError(msg)
        if all(d == 0 for d in x.dims):
            msg = (f"Reduction axis is empty in shape {x.compact()}: every dim of the input is 0, "
                   f"so there is no element to pick")
            raise errors.InvalidArgumentError(msg)
        return [c.scalar() if rank == 1 else c.unknown_shape(rank - 1)]
    dim = int(dim)
    if not -rank <= dim < rank:
        msg = (f"Dimension ({dim}) must be in the range [{-rank}, {rank}), where {rank} is "
               f"the number of dimensions in the input")
        raise errors.InvalidArgumentError(msg)
    axis = dim + rank if dim < 0 else dim
    if x.dims[axis] == 0:
        msg = (f"Reduction axis {dim} is empty in shape {x.compact()}: there is no element "
               f"to pick")
        raise errors.InvalidArgumentError(msg)
    return [c.make_shape(x.dims[:axis] + x.dims[axis + 1:])]


def _arg_op(name: str, which: str):
    types = ", ".join(t.name for t in (*dt.TYPE_SETS["numbertype"], dt.DT_BOOL))
    return declare(
        name,
        inputs=["input: T",
                "dimension: Tidx  # scalar axis to reduce, in [-rank, rank)"],
        outputs=["output: output_type"],
        attrs=[f"T: {{{types}}}", _IDX_ATTR,
               "output_type: {int32, int64} = DT_INT64  # dtype of the indices"],
        shape_fn=_arg_op_shape,
        doc=f"The index of the {which} element along `dimension` (the first one on ties). "
            f"The reduced dim must not be empty. Complex inputs have no CPU kernel, as in TF.")


ArgMax = _arg_op("ArgMax", "largest")
ArgMin = _arg_op("ArgMin", "smallest")


# ---- Cumsum --------------------------------------------------------------------------------
def _scan_shape(c: InferenceContext) -> list[TensorShape]:
    """UnchangedShape plus the scan kernel's checks: a scalar axis in range."""
    c.with_rank(1, 0)
    x = c.input(0)
    axis = c.scalar_value(1)
    rank = x.rank
    if rank == 0 and axis is None:
        msg = ("ScanOp: Expected scan axis in the range [0, 0) for an input of rank 0: a "
               "scalar has no axis to scan along")
        raise errors.InvalidArgumentError(msg)
    if rank is not None and axis is not None and not -rank <= int(axis) < rank:
        msg = (f"ScanOp: Expected scan axis in the range [{-rank}, {rank}), but got "
               f"{int(axis)} for an input of rank {rank}")
        raise errors.InvalidArgumentError(msg)
    return [x]


Cumsum = declare(
    "Cumsum",
    inputs=["x: T", "axis: Tidx  # scalar axis to scan along, in [-rank, rank)"],
    outputs=["out: T"],
    attrs=["exclusive: bool = false  # out[i] excludes x[i] (starts from 0)",
           "reverse: bool = false  # scan from the end of the axis",
           "T: numbertype", _IDX_ATTR],
    shape_fn=_scan_shape,
    doc="Cumulative sum of x along axis, shaped like x: out[i] = x[0] + ... + x[i] "
        "(exclusive: up to x[i-1]; reverse: from the end of the axis). Integers wrap around.")


@gradient("Cumsum")
def _cumsum_grad(scope, op, grads):
    """The cumulative sum of the gradient in the opposite direction (same exclusive)."""
    import ops  # noqa: PLC0415
    return [ops.Cumsum(scope, grads[0], op.inputs[1], exclusive=op.attrs["exclusive"],
                       reverse=not op.attrs["reverse"]), None]


Cumprod = declare(
    "Cumprod",
    inputs=["x: T", "axis: Tidx  # scalar axis to scan along, in [-rank, rank)"],
    outputs=["out: T"],
    attrs=["exclusive: bool = false  # out[i] excludes x[i] (starts from 1)",
           "reverse: bool = false  # scan from the end of the axis",
           "T: numbertype", _IDX_ATTR],
    shape_fn=_scan_shape,
    doc="Cumulative product of x along axis, shaped like x: out[i] = x[0] * ... * x[i] "
        "(exclusive: up to x[i-1]; reverse: from the end of the axis). Integers wrap around.")


@gradient("Cumprod")
def _cumprod_grad(scope, op, grads):
    """TF's _CumprodGrad: the reverse cumulative sum of out * grad, divided by x (0 where x is
    0, so it is only right for nonzero x, as in TF); conjugated for complex numbers."""
    import ops  # noqa: PLC0415
    x, axis = op.inputs
    summed = ops.Cumsum(scope, ops.Mul(scope, _conj(scope, op.output(0)), grads[0]), axis,
                        exclusive=op.attrs["exclusive"], reverse=not op.attrs["reverse"])
    return [ops.DivNoNan(scope, summed, _conj(scope, x)), None]
