"""Slicing, joining and padding ops: ConcatV2, Pack, Unpack, Split, SplitV, Slice,
StridedSlice, ReverseV2, Tile, Pad, PadV2 and MirrorPad, with their gradients (and the
gradient ops StridedSliceGrad and MirrorPadGrad).

Every rule the TF kernels enforce is checked by the shape functions whenever the dims and
values it needs are known (they run again on the actual inputs at run time otherwise).
StridedSlice's canonicalisation (``strided_slice_spec``) is shared with its kernel.

Value propagation follows TF's ShapeRefiner: ConcatV2, Pack, Slice and StridedSlice compute
their output value at build time when their inputs' values are known, and carry *partial*
values of 1-D int shape vectors (a TensorShape with None entries, e.g. ``Shape(x)`` of
``[?, 9, 9, 3]``), so ``Reshape(x, Pack([batch, -1]))``-style graphs infer what they can.
"""

from __future__ import annotations

import numpy as np

from opgraph import dtypes, errors
from opgraph.gradients import gradient
from opgraph.shape_inference import InferenceContext, check_rank
from opgraph.shapes import TensorShape
from opgraph.wrappers import declare
from opgraph.slicing import apply_strided_slice, slice_input, strided_slice_spec

_UNKNOWN = TensorShape(None)
#: values with more elements than this are not computed at build time (TF's ShapeRefiner
#: materialises only small constants); shape functions only need small int vectors.
_MAX_VALUE_ELEMENTS = 1024
_INDEX_TYPES = ("int32", "int64")


def _shape(dims) -> TensorShape:
    return TensorShape._from_tuple(tuple(dims))


def _int_list(v) -> list:
    return np.asarray(v).reshape(-1).astype(np.int64).tolist()


def _scalar_int(c: InferenceContext, i: int, what: str):
    """Input i, which must be a scalar, as a Python int when known, else None."""
    s = c.input(i)
    if s.rank not in (None, 0):
        msg = f"{what} must be a scalar, but has shape {s.compact()}"
        raise errors.InvalidArgumentError(msg)
    v = c.input_tensor(i)
    return None if v is None else int(np.asarray(v).reshape(()))


def _int_vector(c: InferenceContext, i: int):
    """Input i's value as a list of int|None entries (a partial shape value gives None
    entries), or None when nothing is known about it."""
    v = c.input_tensor(i)
    if v is not None:
        return _int_list(v)
    partial = c.input_value(i)
    if isinstance(partial, TensorShape) and partial.dims is not None:
        return list(partial.dims)
    return None


# ---- value propagation helpers ---------------------------------------------------------

def _known_value(c: InferenceContext, i: int):
    """Input i's value as an array when fully known, else None."""
    v = c.input_value(i)
    if isinstance(v, TensorShape):
        if not v.is_fully_defined():
            return None
        return np.array(v.dims, dtype=c.input_dtype(i).as_numpy_dtype)
    return None if v is None else np.asarray(v)


def _is_int_vector_type(dtype) -> bool:
    return dtype is not None and dtype.name in _INDEX_TYPES


def _vector_value(dims, dtype):
    """A 1-D int value from int|None entries: an array when all are known, a partial
    TensorShape when some are, None when none are."""
    if all(d is None for d in dims) and dims:
        return None
    if None in dims:
        return _shape(dims)
    return np.array(dims, dtype=dtype.as_numpy_dtype)


def _partial_entries(c: InferenceContext, i: int):
    """Input i (a 1-D int vector) as shape entries: known dims as ints, -1 and unknown as
    None; None when even its length is unknown or an entry is not a valid dim."""
    v = c.input_value(i)
    if isinstance(v, TensorShape):
        return None if v.dims is None else list(v.dims)
    if v is None:
        s = c.input(i)
        if s.rank == 1 and s.dims[0] is not None:
            return [None] * s.dims[0]
        return None
    arr = np.asarray(v)
    if arr.ndim != 1:
        return None
    out = []
    for d in arr.tolist():
        if d < -1:
            return None
        out.append(None if d == -1 else int(d))
    return out


def _small(arr) -> bool:
    return np.size(arr) <= _MAX_VALUE_ELEMENTS


# ---- gradient helpers ------------------------------------------------------------------

def _static_value(out):
    """The build-time value of Output ``out`` as an array, or None."""
    values = out.op.output_values
    v = values[out.index] if values else None
    return None if v is None or isinstance(v, TensorShape) else np.asarray(v)


def _static_axis(axis_out, rank):
    """A constant axis input canonicalised against ``rank``, or None when either is
    unknown."""
    v = _static_value(axis_out)
    if v is None or rank is None or v.ndim:
        return None
    return int(v) % rank if rank else None


# ---- ConcatV2 --------------------------------------------------------------------------

def _concat_axis(rank: int, axis: int) -> int:
    if not -rank <= axis < rank:
        msg = (f"ConcatOp : Expected concatenating dimensions in the range [{-rank}, {rank}), "
               f"but got {axis}")
        raise errors.InvalidArgumentError(msg)
    return axis + rank if axis < 0 else axis


def _concat_shape(c: InferenceContext):
    n = c.num_inputs - 1
    axis = _scalar_int(c, n, "ConcatV2's axis")
    shapes = [c.input(i) for i in range(n)]
    first = next((k for k, s in enumerate(shapes) if s.rank is not None), None)
    if first is None:
        return [_UNKNOWN]
    rank = shapes[first].rank
    for i, s in enumerate(shapes):
        if s.rank is not None and s.rank != rank:
            msg = (f"ConcatOp : Ranks of all input tensors should match: shape[{first}] = "
                   f"{shapes[first].compact()} vs. shape[{i}] = {s.compact()}")
            raise errors.InvalidArgumentError(msg)
    if rank == 0:
        msg = "Can't concatenate scalars (use tf.stack instead)"
        raise errors.InvalidArgumentError(msg)
    if axis is None:
        return [c.unknown_shape(rank)]
    axis = _concat_axis(rank, axis)
    dims, source = [None] * rank, [None] * rank      # merged dim j and who gave it
    total = 0
    for i, s in enumerate(shapes):
        if s.dims is None:
            total = None
            continue
        for j, d in enumerate(s.dims):
            if j == axis:
                total = None if d is None or total is None else total + d
            elif d is not None:
                if dims[j] is None:
                    dims[j], source[j] = d, i
                elif dims[j] != d:
                    k = source[j]
                    msg = (f"ConcatOp : Dimension {j} in both shapes must be equal: "
                           f"shape[{k}] = {shapes[k].compact()} vs. shape[{i}] = "
                           f"{s.compact()}")
                    raise errors.InvalidArgumentError(msg)
    dims[axis] = total
    return [_shape(dims)]


def _concat_value(c: InferenceContext):
    n = c.num_inputs - 1
    axis = _known_value(c, n)
    if axis is None:
        return [None]
    values = [_known_value(c, i) for i in range(n)]
    if all(v is not None for v in values):
        if sum(np.size(v) for v in values) > _MAX_VALUE_ELEMENTS:
            return [None]
        axis = int(axis)
        return [np.concatenate(values, axis=axis + values[0].ndim if axis < 0 else axis)]
    dtype = c.input_dtype(0)
    if not _is_int_vector_type(dtype) or any(c.input(i).rank != 1 for i in range(n)):
        return [None]
    dims = []
    for i in range(n):          # concatenated shape vectors: ShapeRefiner's partial value
        part = _partial_entries(c, i)
        if part is None:
            return [None]
        dims += part
    return [_vector_value(dims, dtype)]


ConcatV2 = declare(
    "ConcatV2",
    inputs=["values: N * T  # tensors of one rank whose dims agree except along axis",
            "axis: Tidx  # 0-D: the dim to join along, in [-rank, rank)"],
    outputs=["output: T"],
    attrs=["N: int >= 2", "T: type", "Tidx: {int32, int64} = int32"],
    shape_fn=_concat_shape, value_fn=_concat_value,
    doc="Joins `values` along dim `axis`: the output's `axis` dim is the sum of theirs. "
        "Scalars cannot be joined (use Pack).")
Concat = ConcatV2


@gradient("ConcatV2")
def _concat_grad(scope, op, grads):
    """Split the gradient back into the inputs' sizes along the axis (TF slices at
    ConcatOffset; SplitV with the inputs' sizes is the same)."""
    import ops  # noqa: PLC0415  (ops modules use each other's wrappers)
    n = op.num_inputs - 1
    values = [op.input(i) for i in range(n)]
    rank = values[0].shape.rank
    axis = _static_axis(op.input(n), rank)
    sizes = None if axis is None else [v.shape.dims[axis] for v in values]
    if sizes is not None and None not in sizes:
        sizes = ops.Const(scope, np.array(sizes, np.int32))
    else:
        if axis is None:
            axis = ops.FloorMod(scope, ops.Cast(scope, op.input(n), dtypes.DT_INT32),
                                ops.Rank(scope, values[0]))
        at = ops.Reshape(scope, axis, [1])
        sizes = ops.ConcatV2(scope, [ops.Slice(scope, ops.Shape(scope, v), at, [1])
                                     for v in values], 0)
    return [*ops.SplitV(scope, grads[0], sizes, axis, n).output, None]


# ---- Pack / Unpack ---------------------------------------------------------------------

def _pack_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        msg = f"Invalid axis: {axis}; must be in [{-rank},{rank})"
        raise errors.InvalidArgumentError(msg)
    return axis + rank if axis < 0 else axis


def _pack_shape(c: InferenceContext):
    shapes = [c.input(i) for i in range(c.num_inputs)]
    first = next((k for k, s in enumerate(shapes) if s.rank is not None), None)
    if first is None:
        return [_UNKNOWN]
    rank = shapes[first].rank
    dims, source = [None] * rank, [first] * rank
    for i, s in enumerate(shapes):
        if s.dims is None:
            continue
        bad = first if s.rank != rank else None
        if bad is None:
            for j, d in enumerate(s.dims):
                if d is None:
                    continue
                if dims[j] is None:
                    dims[j], source[j] = d, i
                elif dims[j] != d:
                    bad = source[j]
                    break
        if bad is not None:
            msg = (f"Shapes of all inputs must match: values[{bad}].shape = "
                   f"{shapes[bad].compact()} != values[{i}].shape = {s.compact()}")
            raise errors.InvalidArgumentError(msg)
    axis = _pack_axis(c.attr("axis"), rank + 1)
    dims.insert(axis, c.num_inputs)
    return [_shape(dims)]


def _pack_value(c: InferenceContext):
    n = c.num_inputs
    values = [_known_value(c, i) for i in range(n)]
    if all(v is not None for v in values):
        if sum(np.size(v) for v in values) > _MAX_VALUE_ELEMENTS:
            return [None]
        return [np.stack(values, axis=c.attr("axis"))]
    dtype = c.input_dtype(0)
    if not _is_int_vector_type(dtype) or any(c.input(i).rank != 0 for i in range(n)):
        return [None]
    # Scalars packed into a shape vector: known entries are dims (negative: unknown).
    dims = [None if v is None or int(v) < 0 else int(v) for v in values]
    return [_vector_value(dims, dtype)]


Pack = declare(
    "Pack",
    inputs=["values: N * T  # tensors of one shape"],
    outputs=["output: T  # rank one more than the values'"],
    attrs=["N: int >= 1", "T: type",
           "axis: int = 0  # where the new dim goes, in [-(rank+1), rank+1)"],
    shape_fn=_pack_shape, value_fn=_pack_value,
    doc="Stacks the N `values` (all of one shape) into one tensor with a new dim of size N "
        "at `axis`.")
Stack = Pack


@gradient("Pack")
def _pack_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    return list(ops.Unpack(scope, grads[0], op.num_inputs, axis=op.attrs["axis"]).output)


def _unpack_shape(c: InferenceContext):
    num = c.attr("num")
    s = c.input(0)
    if s.dims is None:
        return [_UNKNOWN] * num
    axis = _pack_axis(c.attr("axis"), s.rank)
    d = s.dims[axis]
    if d is not None and d != num:
        msg = f"Input shape axis {axis} must equal {num}, got shape {s.compact()}"
        raise errors.InvalidArgumentError(msg)
    out = _shape(s.dims[:axis] + s.dims[axis + 1:])
    return [out] * num


Unpack = declare(
    "Unpack",
    inputs=["value: T  # rank >= 1; its `axis` dim must be `num`"],
    outputs=["output: num * T"],
    attrs=["num: int >= 0  # the size of value's `axis` dim (the number of outputs)",
           "T: type", "axis: int = 0  # the dim to unpack along, in [-rank, rank)"],
    shape_fn=_unpack_shape,
    doc="Unpacks `value` along dim `axis` into `num` tensors of rank one less. Unlike TF's "
        "Python API, `num` is required (as in the C++ API) and must equal the dim.")
Unstack = Unpack


@gradient("Unpack")
def _unpack_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    if not grads:                       # num == 0: nothing flows back but zeros
        return [ops.ZerosLike(scope, op.input(0))]
    return [ops.Pack(scope, list(grads), axis=op.attrs["axis"])]


# ---- Split / SplitV --------------------------------------------------------------------

def _split_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        msg = (f"-input rank(-{rank}) <= split_dim < input rank ({rank}), but got {axis}")
        raise errors.InvalidArgumentError(msg)
    return axis + rank if axis < 0 else axis


def _split_shape(c: InferenceContext):
    num = c.attr("num_split")
    c.with_rank(0, 0)
    axis = c.scalar_value(0)
    x = c.input(1)
    if x.dims is None or axis is None:
        return [c.unknown_shape(x.rank)] * num
    axis = _split_axis(int(axis), x.rank)
    d = x.dims[axis]
    if d is not None and d % num:
        msg = (f"Number of ways to split should evenly divide the split dimension, but got "
               f"split_dim {axis} (size = {d}) and num_split {num}")
        raise errors.InvalidArgumentError(msg)
    return [c.replace_dim(x, axis, None if d is None else d // num)] * num


Split = declare(
    "Split",
    inputs=["axis: int32  # 0-D: the dim to split, in [-rank, rank) (TF's split_dim, "
            "renamed axis as in the C++ API)",
            "value: T"],
    outputs=["output: num_split * T"],
    attrs=["num_split: int >= 1  # must divide value's `axis` dim", "T: type"],
    shape_fn=_split_shape,
    doc="Splits `value` along `axis` into `num_split` tensors of equal size.")


def _join(scope, grads, axis):
    import ops  # noqa: PLC0415
    return grads[0] if len(grads) == 1 else ops.ConcatV2(scope, list(grads), axis)


@gradient("Split")
def _split_grad(scope, op, grads):
    return [None, _join(scope, grads, op.input(0))]


def _split_v_shape(c: InferenceContext):
    num = c.attr("num_split")
    x = c.input(0)
    sizes_shape = c.input(1)
    if sizes_shape.rank not in (None, 1):
        msg = f"size_splits must be a 1-D Tensor, but has shape {sizes_shape.compact()}"
        raise errors.InvalidArgumentError(msg)
    if sizes_shape.rank == 1 and sizes_shape.dims[0] not in (None, num):
        msg = (f"size_splits must have num_split = {num} elements (one per output), but has "
               f"{sizes_shape.dims[0]}")
        raise errors.InvalidArgumentError(msg)
    c.with_rank(2, 0)
    axis = c.scalar_value(2)
    sizes = c.input_tensor(1)
    if sizes is not None:
        sizes = _int_list(sizes)
        if sizes.count(-1) > 1:
            msg = f"size_splits can only have one -1, but got {sizes}"
            raise errors.InvalidArgumentError(msg)
        for i, s in enumerate(sizes):
            if s < -1:
                msg = f"Split size at index {i} must be >= 0 (or -1 once). Got: {s}"
                raise errors.InvalidArgumentError(msg)
    if x.dims is None:
        return [_UNKNOWN] * num
    if x.rank == 0:
        msg = "Can't split scalars"
        raise errors.InvalidArgumentError(msg)
    if axis is None:
        return [c.unknown_shape(x.rank)] * num
    axis = _split_axis(int(axis), x.rank)
    if sizes is None:
        return [c.replace_dim(x, axis, None)] * num
    d = x.dims[axis]
    known = sum(s for s in sizes if s != -1)
    if d is not None and (known > d if -1 in sizes else known != d):
        msg = (f"can't split axis of size {d} into pieces of size "
               f"[{','.join(str(s) for s in sizes)}]")
        raise errors.InvalidArgumentError(msg)
    rest = None if d is None else d - known
    return [c.replace_dim(x, axis, rest if s == -1 else s) for s in sizes]


SplitV = declare(
    "SplitV",
    inputs=["value: T",
            "size_splits: Tlen  # 1-D, num_split sizes summing to the dim; one may be -1",
            "axis: int32  # 0-D: the dim to split, in [-rank, rank) (TF's split_dim, "
            "renamed axis as in the C++ API)"],
    outputs=["output: num_split * T"],
    attrs=["num_split: int >= 1", "T: type", "Tlen: {int8, int32, int64} = int64"],
    shape_fn=_split_v_shape,
    doc="Splits `value` along `axis` into `num_split` tensors of the sizes in "
        "`size_splits`; one size may be -1 (the rest of the dim).")


@gradient("SplitV")
def _split_v_grad(scope, op, grads):
    return [_join(scope, grads, op.input(2)), None, None]


# ---- Slice -----------------------------------------------------------------------------

def _slice_shape(c: InferenceContext):
    x, b_shape, s_shape = c.input(0), c.input(1), c.input(2)
    lengths = {s.dims[0] for s in (b_shape, s_shape) if s.rank == 1 and s.dims[0] is not None}
    if b_shape.rank not in (None, 1) or s_shape.rank not in (None, 1) or len(lengths) > 1 or \
            (lengths and x.rank is not None and lengths != {x.rank}):
        want = "of the same size" if x.rank is None else f"of size {x.rank}"
        msg = (f"Expected begin and size arguments to be 1-D tensors {want}, but got shapes "
               f"{b_shape.compact()} and {s_shape.compact()} instead.")
        raise errors.InvalidArgumentError(msg)
    rank = x.rank if x.rank is not None else next(iter(lengths), None)
    begin, size = _int_vector(c, 1), _int_vector(c, 2)
    if rank is None:
        return [_UNKNOWN]
    dims_in = x.dims if x.dims is not None else c.unknown_shape(rank).dims
    begin = begin or [None] * rank
    size = size or [None] * rank
    out = []
    for i, (b, s, d) in enumerate(zip(begin, size, dims_in)):
        if b is not None and (b < 0 or (d is not None and b > d)):
            msg = f"Expected begin[{i}] in [0, {'?' if d is None else d}], but got {b}"
            raise errors.InvalidArgumentError(msg)
        if s == -1:
            out.append(None if d is None or b is None else d - b)
            continue
        if s is not None and (s < 0 or (d is not None and (b or 0) + s > d)):
            limit = "?" if d is None else d - (b or 0)
            msg = f"Expected size[{i}] in [0, {limit}], but got {s}"
            raise errors.InvalidArgumentError(msg)
        out.append(s)
    return [_shape(out)]


def _object_dims(v: TensorShape) -> np.ndarray:
    arr = np.empty(len(v.dims), dtype=object)
    arr[:] = list(v.dims)
    return arr


def _sliced_value(c: InferenceContext, compute):
    """The value of a slicing op: ``compute(array)`` on input 0's known value, or on the
    dims of its partial shape value (1-D: result entries None where unknown)."""
    v = c.input_value(0)
    if isinstance(v, TensorShape):
        if v.dims is None:
            return [None]
        out = compute(_object_dims(v))
        dtype = c.input_dtype(0)
        if out.ndim == 0:
            d = out.item()
            return [None if d is None else np.array(d, dtype=dtype.as_numpy_dtype)]
        if out.ndim != 1:
            return [None]
        return [_vector_value(out.tolist(), dtype)]
    if v is None:
        return [None]
    out = compute(np.asarray(v))
    return [_copy_small(out)]


def _copy_small(view):
    return np.array(view, copy=True) if _small(view) else None


def _slice_value(c: InferenceContext):
    begin, size = _known_value(c, 1), _known_value(c, 2)
    if begin is None or size is None:
        return [None]
    return _sliced_value(c, lambda x: slice_input(x, begin, size))


Slice = declare(
    "Slice",
    inputs=["input: T", "begin: Index  # 1-D, one start per dim, in [0, dim]",
            "size: Index  # 1-D, one size per dim; -1: to the end of the dim"],
    outputs=["output: T"],
    attrs=["T: type", "Index: {int32, int64}"],
    shape_fn=_slice_shape, value_fn=_slice_value,
    doc="The `size` block of `input` starting at `begin` (size -1 takes the rest of that "
        "dim); begin + size must stay within each dim.")


@gradient("Slice")
def _slice_grad(scope, op, grads):
    """Pad the gradient back to the input's shape: before = begin, after = the rest."""
    import ops  # noqa: PLC0415
    x, begin = op.input(0), op.input(1)
    index = op.attrs["Index"]
    rest = ops.Sub(scope, ops.Sub(scope, ops.Shape(scope, x, out_type=index),
                                  ops.Shape(scope, op.output(0), out_type=index)), begin)
    paddings = ops.ConcatV2(scope, [ops.Reshape(scope, begin, [-1, 1]),
                                    ops.Reshape(scope, rest, [-1, 1])], 1)
    return [ops.Pad(scope, grads[0], paddings), None, None]


# ---- StridedSlice ----------------------------------------------------------------------

_MASKS = ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")


def _check_strided_slice_spec(c: InferenceContext) -> None:
    """The rules on the masks and the begin/end/strides shapes (inputs 1-3)."""
    ellipsis = c.attr("ellipsis_mask") & 0xFFFFFFFF
    if ellipsis & (ellipsis - 1):
        msg = f"Multiple ellipses in slice spec not allowed (ellipsis_mask {ellipsis})"
        raise errors.InvalidArgumentError(msg)
    specs = [c.input(i) for i in (1, 2, 3)]
    lengths = {s.dims[0] for s in specs if s.rank == 1 and s.dims[0] is not None}
    if any(s.rank not in (None, 1) for s in specs) or len(lengths) > 1:
        msg = (f"Expected begin, end, and strides to be 1D equal size tensors, but got shapes "
               f"{specs[0].compact()}, {specs[1].compact()}, and {specs[2].compact()} "
               f"instead.")
        raise errors.InvalidArgumentError(msg)
    if lengths and max(lengths) >= 32:
        msg = (f"StridedSlice takes at most 31 slice entries (its masks are 32-bit), but "
               f"begin, end and strides have {max(lengths)}")
        raise errors.InvalidArgumentError(msg)


def _strided_slice_shape(c: InferenceContext):
    _check_strided_slice_spec(c)
    masks = {k: c.attr(k) for k in _MASKS}
    strides = c.input_tensor(3)
    begin, end = _int_vector(c, 1), _int_vector(c, 2)
    x = c.input(0)
    if x.dims is None or strides is None:
        return [_UNKNOWN]
    spec = strided_slice_spec(x.dims, begin, end, _int_list(strides), **masks)
    return [_shape(spec.final_shape)]


def _strided_slice_value(c: InferenceContext):
    begin, end, strides = (_known_value(c, i) for i in (1, 2, 3))
    if begin is None or end is None or strides is None:
        return [None]
    masks = {k: c.attr(k) for k in _MASKS}

    def compute(x):
        spec = strided_slice_spec(x.shape, _int_list(begin), _int_list(end),
                                  _int_list(strides), **masks)
        return apply_strided_slice(x, spec)
    return _sliced_value(c, compute)


StridedSlice = declare(
    "StridedSlice",
    inputs=["input: T",
            "begin: Index  # 1-D, one entry per slice-spec position (< 32)",
            "end: Index  # 1-D, same length as begin",
            "strides: Index  # 1-D, same length; non-zero; 1 or more on shrunk entries"],
    outputs=["output: T"],
    attrs=["T: type", "Index: {int16, int32, int64}",
           "begin_mask: int = 0  # bit i: ignore begin[i], start at the stride's first index",
           "end_mask: int = 0  # bit i: ignore end[i], run to the stride's last index",
           "ellipsis_mask: int = 0  # bit i: position i is `...` (at most one bit)",
           "new_axis_mask: int = 0  # bit i: position i inserts a new dim of size 1",
           "shrink_axis_mask: int = 0  # bit i: position i takes the single index begin[i]"],
    shape_fn=_strided_slice_shape, value_fn=_strided_slice_value,
    doc="Python-style slicing `input[begin:end:strides, ...]`: position i of the spec is a "
        "range (negative indices count from the end, ends are clamped, strides may be "
        "negative), a single index (shrink_axis_mask), an ellipsis or a new axis. Positions "
        "after the last cover the remaining dims in full.")


def _masks(op) -> dict:
    return {k: op.attrs[k] for k in _MASKS}


@gradient("StridedSlice")
def _strided_slice_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    x, *spec = op.inputs
    index = op.attrs["Index"]
    if index.name == "int16":            # StridedSliceGrad takes int32/int64 indices
        spec = [ops.Cast(scope, v, dtypes.DT_INT32) for v in spec]
        index = dtypes.DT_INT32
    shape = ops.Shape(scope, x, out_type=index)
    return [ops.StridedSliceGrad(scope, shape, *spec, grads[0], **_masks(op)),
            None, None, None]


def _strided_slice_grad_shape(c: InferenceContext):
    _check_strided_slice_spec(c)
    c.with_rank(0, 1)
    out = c.input_as_shape(0)
    strides = c.input_tensor(3)
    if out.dims is None or strides is None:
        return [out]
    begin, end = _int_vector(c, 1), _int_vector(c, 2)
    spec = strided_slice_spec(out.dims, begin, end, _int_list(strides),
                              **{k: c.attr(k) for k in _MASKS})
    want, dy = _shape(spec.final_shape), c.input(4)
    if not want.is_compatible_with(dy):
        msg = (f"shape of dy was {dy.compact()} instead of {want.compact()} (the shape of "
               f"the slice)")
        raise errors.InvalidArgumentError(msg)
    return [out]


StridedSliceGrad = declare(
    "StridedSliceGrad",
    inputs=["shape: Index  # 1-D: the shape of StridedSlice's input",
            "begin: Index", "end: Index", "strides: Index",
            "dy: T  # the gradient of StridedSlice's output"],
    outputs=["output: T"],
    attrs=["T: type", "Index: {int32, int64}", "begin_mask: int = 0", "end_mask: int = 0",
           "ellipsis_mask: int = 0", "new_axis_mask: int = 0", "shrink_axis_mask: int = 0"],
    shape_fn=_strided_slice_grad_shape,
    doc="The gradient of StridedSlice: a zero tensor of `shape` with `dy` written into the "
        "entries the slice (same begin, end, strides and masks) selects.")


@gradient("StridedSliceGrad")
def _strided_slice_grad_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    _, begin, end, strides, _ = op.inputs
    return [None, None, None, None,
            ops.StridedSlice(scope, grads[0], begin, end, strides, **_masks(op))]


# ---- ReverseV2 / Tile ------------------------------------------------------------------

def _reverse_shape(c: InferenceContext):
    x = c.input(0)
    c.with_rank(1, 1)
    if x.rank is not None and x.rank > 8:
        msg = (f"reverse does not work on tensors with more than 8 dimensions (tensor has "
               f"rank {x.rank})")
        raise errors.InvalidArgumentError(msg)
    axis = c.input_tensor(1)
    if axis is not None and x.rank is not None:
        rank, seen = x.rank, set()
        for i, a in enumerate(_int_list(axis)):
            ca = a + rank if a < 0 else a
            if not 0 <= ca < rank:
                msg = f"'axis'[{i}] = {a} is out of valid range [{-rank}, {rank - 1}]"
                raise errors.InvalidArgumentError(msg)
            if ca in seen:
                msg = f"axis {ca} specified more than once."
                raise errors.InvalidArgumentError(msg)
            seen.add(ca)
    return [x]


ReverseV2 = declare(
    "ReverseV2",
    inputs=["tensor: T  # rank <= 8", "axis: Tidx  # 1-D: distinct dims to reverse"],
    outputs=["output: T"],
    attrs=["Tidx: {int32, int64} = int32",
           "T: {uint8, int8, uint16, int16, int32, int64, bool, bfloat16, half, float, "
           "double, complex64, complex128, string}"],
    shape_fn=_reverse_shape,
    doc="`tensor` with the order of its entries reversed along each dim in `axis` "
        "(negative dims count from the end).")
Reverse = ReverseV2


@gradient("ReverseV2")
def _reverse_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    return [ops.ReverseV2(scope, grads[0], op.input(1)), None]


def _multiply_dims(d, m):
    if d == 0 or m == 0:
        return 0
    if d is None or m is None:
        return None
    return d * m


def _tile_shape(c: InferenceContext):
    x = c.input(0)
    m_shape = c.with_rank(1, 1)
    n = m_shape.dims[0]
    if n is not None:
        check_rank(n, "Tile's multiples say the input")
    if x.rank is not None and n is not None and n != x.rank:
        msg = (f"Expected multiples argument to be a vector of length {x.rank} but got "
               f"length {n}")
        raise errors.InvalidArgumentError(msg)
    multiples = c.input_tensor(1)
    if multiples is not None:
        multiples = _int_list(multiples)
        for i, m in enumerate(multiples):
            if m < 0:
                msg = f"Expected multiples[{i}] >= 0, but got {m}"
                raise errors.InvalidArgumentError(msg)
    else:
        multiples = _int_vector(c, 1)     # a partial value: None entries unknown
    rank = x.rank if x.rank is not None else n
    if rank is None:
        return [_UNKNOWN]
    multiples = multiples or [None] * rank
    dims = x.dims if x.dims is not None else c.unknown_shape(rank).dims
    return [_shape(_multiply_dims(d, m) for d, m in zip(dims, multiples))]


Tile = declare(
    "Tile",
    inputs=["input: T", "multiples: Tmultiples  # 1-D, one non-negative count per dim"],
    outputs=["output: T"],
    attrs=["T: type", "Tmultiples: {int32, int64} = int32"],
    shape_fn=_tile_shape,
    doc="`input` repeated `multiples[i]` times along each dim i.")


@gradient("Tile")
def _tile_grad(scope, op, grads):
    """Sum the tiles: reshape the gradient to [m0, d0, m1, d1, ...] and reduce the m's."""
    import ops  # noqa: PLC0415
    x, multiples = op.inputs
    pairs = ops.Pack(scope, [multiples, ops.Shape(scope, x, out_type=op.attrs["Tmultiples"])])
    split_shape = ops.Reshape(scope, ops.Transpose(scope, pairs, [1, 0]), [-1])
    axes = ops.Range(scope, 0, ops.Size(scope, split_shape), 2)
    return [ops.Sum(scope, ops.Reshape(scope, grads[0], split_shape), axes), None]


# ---- Pad / PadV2 / MirrorPad -----------------------------------------------------------

def _pad_shape(c: InferenceContext, mode: str | None = None, grad: bool = False):
    """Pad, PadV2, MirrorPad (``mode``) and MirrorPadGrad (``grad``: input 0 is the padded
    gradient; the output drops the paddings)."""
    x, p = c.input(0), c.input(1)
    if p.rank is not None and (p.rank != 2 or p.dims[1] not in (None, 2)):
        msg = f"paddings must be a matrix with 2 columns, but has shape {p.compact()}"
        raise errors.InvalidArgumentError(msg)
    n = p.dims[0] if p.rank == 2 else None
    if n is not None and x.rank is not None and n != x.rank:
        msg = (f"The first dimension of paddings must be the rank of inputs: paddings has "
               f"shape {p.compact()} but input has shape {x.compact()}")
        raise errors.InvalidArgumentError(msg)
    if c.op_def.name == "PadV2" and c.input(2).rank not in (None, 0):
        msg = f"constant_values must be a scalar. Got: {c.input(2).compact()}"
        raise errors.InvalidArgumentError(msg)
    rank = x.rank if x.rank is not None else n
    paddings = c.input_tensor(1)
    if paddings is None:
        return [c.unknown_shape(rank)]
    pads = np.asarray(paddings).astype(np.int64).tolist()
    dims = x.dims if x.dims is not None else c.unknown_shape(len(pads)).dims
    out = []
    what = "output dimension size" if grad else "dimension size"
    for d, (before, after) in zip(dims, pads):
        if before < 0 or after < 0:
            msg = f"Paddings must be non-negative: {before} {after}"
            raise errors.InvalidArgumentError(msg)
        size = None if d is None else (d - before - after if grad else d)
        if grad and size is not None and size < 0:
            msg = (f"The paddings {before}, {after} are larger than the padded gradient's "
                   f"dimension {d}")
            raise errors.InvalidArgumentError(msg)
        if size is not None and mode == "SYMMETRIC" and (before > size or after > size):
            msg = (f"paddings must be no greater than the {what}: {before}, {after} greater "
                   f"than {size}")
            raise errors.InvalidArgumentError(msg)
        if size is not None and mode == "REFLECT" and (before >= size or after >= size):
            msg = (f"paddings must be less than the {what}: {before}, {after} not less than "
                   f"{size}")
            raise errors.InvalidArgumentError(msg)
        out.append(None if d is None else (size if grad else d + before + after))
    return [_shape(out)]


_PADDINGS = "paddings: Tpaddings  # [rank, 2]: (before, after) counts per dim, >= 0"

Pad = declare(
    "Pad",
    inputs=["input: T", _PADDINGS], outputs=["output: T"],
    attrs=["T: type", "Tpaddings: {int32, int64} = int32"],
    shape_fn=_pad_shape,
    doc="`input` padded with zeros: paddings[i] = (before, after) entries added around dim "
        "i.")

PadV2 = declare(
    "PadV2",
    inputs=["input: T", _PADDINGS, "constant_values: T  # 0-D: the padding value"],
    outputs=["output: T"],
    attrs=["T: type", "Tpaddings: {int32, int64} = int32"],
    shape_fn=_pad_shape,
    doc="`input` padded with `constant_values`: paddings[i] = (before, after) entries added "
        "around dim i.")

MirrorPad = declare(
    "MirrorPad",
    inputs=["input: T", _PADDINGS], outputs=["output: T"],
    attrs=["T: type", "Tpaddings: {int32, int64} = int32",
           "mode: {'REFLECT', 'SYMMETRIC'}  # REFLECT mirrors without the edge entry (pads "
           "< dim), SYMMETRIC with it (pads <= dim)"],
    shape_fn=lambda c: _pad_shape(c, c.attr("mode")),
    doc="`input` padded with mirror images of itself: [1, 2, 3] padded (2, 2) is "
        "[3, 2, 1, 2, 3, 2, 1] in REFLECT mode and [2, 1, 1, 2, 3, 3, 2] in SYMMETRIC mode.")


def _pad_grad(scope, op, grads):
    """Slice the unpadded block out of the gradient."""
    import ops  # noqa: PLC0415
    x, paddings = op.input(0), op.input(1)
    before = ops.Reshape(scope, ops.Slice(scope, paddings, [0, 0], [-1, 1]), [-1])
    shape = ops.Shape(scope, x, out_type=op.attrs["Tpaddings"])
    return [ops.Slice(scope, grads[0], before, shape)] + [None] * (op.num_inputs - 1)


gradient("Pad")(_pad_grad)
gradient("PadV2")(_pad_grad)        # constant_values gets no gradient, as in TF


@gradient("MirrorPad")
def _mirror_pad_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    return [ops.MirrorPadGrad(scope, grads[0], op.input(1), op.attrs["mode"]), None]


MirrorPadGrad = declare(
    "MirrorPadGrad",
    inputs=["input: T  # the gradient of MirrorPad's output", _PADDINGS],
    outputs=["output: T"],
    attrs=["T: numbertype", "Tpaddings: {int32, int64} = int32",
           "mode: {'REFLECT', 'SYMMETRIC'}  # the MirrorPad mode"],
    shape_fn=lambda c: _pad_shape(c, c.attr("mode"), grad=True),
    doc="The gradient of MirrorPad: each padded entry's gradient is added to the entry it "
        "mirrors, and the output drops the paddings.")


@gradient("MirrorPadGrad")
def _mirror_pad_grad_grad(scope, op, grads):
    import ops  # noqa: PLC0415
    return [ops.MirrorPad(scope, grads[0], op.input(1), op.attrs["mode"]), None]
