"""op_db entries of the slicing, joining and padding ops.

The references never call the numpy routine the kernel uses: joins go through nested Python
lists, slices through Python slice objects applied index by index (StridedSlice: numpy's own
basic indexing with a tuple of slice / int / None / Ellipsis built from the sparse spec, so
ellipsis and new-axis expansion are numpy's, not ours), tiles and pads through explicit loops
over output coordinates. StridedSlice also gets a batch of random specs (negative strides,
ellipses, new axes, shrinks, masks), kept only where the numpy reference accepts them.
"""

from __future__ import annotations

import numpy as np

from opgraph import dtypes as dt
from opgraph import errors
from tests.op_db import FLOATS, INTS, ErrorCase, OpInfo, Sample, ShapeCase, rand

ALL = FLOATS + INTS + (dt.DT_BOOL, dt.DT_UINT8, dt.DT_COMPLEX64)
_F = np.float32
_I32 = np.int32
_I64 = np.int64


def _i32(v):
    return np.array(v, _I32)


def _i64(v):
    return np.array(v, _I64)


def _axis(axis, rank: int) -> int:
    axis = int(axis)
    return axis + rank if axis < 0 else axis


def _zeros(*shape):
    return np.zeros(shape, _F)


# ---- ConcatV2 / Pack / Unpack: nested Python lists -------------------------------------

def _concat_lists(lists, depth: int):
    if depth == 0:
        out = []
        for part in lists:
            out.extend(part)
        return out
    return [_concat_lists([part[k] for part in lists], depth - 1) for k in range(len(lists[0]))]


def _concat_ref(values, axis):
    rank = values[0].ndim
    a = _axis(np.asarray(axis), rank)
    shape = list(values[0].shape)
    shape[a] = sum(v.shape[a] for v in values)
    nested = _concat_lists([v.tolist() for v in values], a)
    return np.array(nested, dtype=values[0].dtype).reshape(shape)


def _stack_lists(lists, depth: int):
    if depth == 0:
        return list(lists)
    return [_stack_lists([part[k] for part in lists], depth - 1) for k in range(len(lists[0]))]


def _pack_ref(values, *, axis=0):
    a = _axis(axis, values[0].ndim + 1)
    shape = list(values[0].shape)
    shape.insert(a, len(values))
    nested = _stack_lists([v.tolist() for v in values], a)
    return np.array(nested, dtype=values[0].dtype).reshape(shape)


def _unpack_ref(value, *, num, axis=0):
    a = _axis(axis, value.ndim)
    return tuple(value[(slice(None),) * a + (i,)] for i in range(num))


def _concat_samples(rng, t):
    def r(*shape):
        return rand(rng, shape, t)
    return [Sample(([r(2, 3), r(2, 4)], _i32(1)), name="axis1"),
            Sample(([r(2, 3), r(1, 3), r(0, 3)], _i64(0)), name="three_int64_axis"),
            Sample(([r(2, 1, 3), r(2, 1, 3)], _i32(-1)), name="negative_axis"),
            Sample(([r(3), r(0)], _i32(0)), name="vectors_empty"),
            Sample(([r(0, 2), r(0, 3)], _i32(-1)), name="empty")]


def _pack_samples(rng, t):
    def r(*shape):
        return rand(rng, shape, t)
    return [Sample(([r(), r(), r()],), name="scalars"),
            Sample(([r(2, 3), r(2, 3)],), {"axis": 1}, name="axis1"),
            Sample(([r(2, 3), r(2, 3), r(2, 3)],), {"axis": -1}, name="negative_axis"),
            Sample(([r(0, 2), r(0, 2)],), {"axis": 2}, name="empty"),
            Sample(([r(4)],), name="one")]


def _unpack_samples(rng, t):
    return [Sample((rand(rng, (3, 2), t),), {"num": 3}, name="axis0"),
            Sample((rand(rng, (2, 4), t),), {"num": 4, "axis": -1}, name="negative_axis"),
            Sample((rand(rng, (3,), t),), {"num": 3}, name="to_scalars"),
            Sample((rand(rng, (2, 0, 3), t),), {"num": 0, "axis": 1}, name="no_outputs"),
            Sample((rand(rng, (0, 2), t),), {"num": 2, "axis": 1}, name="empty")]


_CONCAT_ERRORS = [
    ErrorCase(([_zeros(2, 3), _zeros(2, 4)], _i32(0)),
              regex=r"ConcatOp : Dimension 1 in both shapes must be equal: "
                    r"shape\[0\] = \[2,3\] vs. shape\[1\] = \[2,4\]", name="dims"),
    ErrorCase(([_zeros(2, 3), _zeros(2, 3), _zeros(2, 3, 1)], _i32(1)),
              regex=r"ConcatOp : Ranks of all input tensors should match: shape\[0\] = "
                    r"\[2,3\] vs. shape\[2\] = \[2,3,1\]", name="ranks"),
    ErrorCase(([_zeros(2, 3), _zeros(2, 3)], _i32(2)),
              regex=r"ConcatOp : Expected concatenating dimensions in the range \[-2, 2\), "
                    r"but got 2", name="axis_range"),
    ErrorCase(([_zeros(2, 3), _zeros(2, 3)], _i64(-3)), regex=r"range \[-2, 2\), but got -3",
              name="axis_range_negative"),
    ErrorCase(([_zeros(), _zeros()], _i32(0)), regex=r"Can't concatenate scalars",
              name="scalars"),
    ErrorCase(([_zeros(2), _zeros(2)], _i32([0])),
              regex=r"ConcatV2's axis must be a scalar, but has shape \[1\]", name="axis_rank"),
]

_PACK_ERRORS = [
    ErrorCase(([_zeros(2, 3), _zeros(2, 4)],),
              regex=r"Shapes of all inputs must match: values\[0\].shape = \[2,3\] != "
                    r"values\[1\].shape = \[2,4\]", name="shapes"),
    ErrorCase(([_zeros(2, 3), _zeros(2, 3), _zeros(3)],),
              regex=r"values\[0\].shape = \[2,3\] != values\[2\].shape = \[3\]", name="ranks"),
    ErrorCase(([_zeros(2, 3), _zeros(2, 3)],), {"axis": 3},
              regex=r"Invalid axis: 3; must be in \[-3,3\)", name="axis"),
    ErrorCase(([_zeros(2, 3)],), {"axis": -4}, regex=r"Invalid axis: -4; must be in \[-3,3\)",
              name="axis_negative"),
]

_UNPACK_ERRORS = [
    ErrorCase((_zeros(3, 2),), {"num": 2},
              regex=r"Input shape axis 0 must equal 2, got shape \[3,2\]", name="num"),
    ErrorCase((_zeros(3, 2),), {"num": 3, "axis": -1},
              regex=r"Input shape axis 1 must equal 3, got shape \[3,2\]", name="num_axis"),
    ErrorCase((_zeros(2, 3),), {"num": 2, "axis": 2},
              regex=r"Invalid axis: 2; must be in \[-2,2\)", name="axis"),
    ErrorCase((_zeros(),), {"num": 1}, regex=r"Invalid axis: 0; must be in \[0,0\)",
              name="scalar"),
]


# ---- Split / SplitV ---------------------------------------------------------------------

def _pieces(value, a, sizes):
    out, start = [], 0
    for s in sizes:
        out.append(value[(slice(None),) * a + (slice(start, start + s),)])
        start += s
    return tuple(out)


def _split_ref(axis, value, *, num_split):
    a = _axis(axis, value.ndim)
    return _pieces(value, a, [value.shape[a] // num_split] * num_split)


def _split_v_ref(value, size_splits, axis, *, num_split):
    a = _axis(axis, value.ndim)
    sizes = [int(s) for s in size_splits]
    known = 0
    for s in sizes:
        if s != -1:
            known += s
    sizes = [value.shape[a] - known if s == -1 else s for s in sizes]
    assert len(sizes) == num_split
    return _pieces(value, a, sizes)


def _split_samples(rng, t):
    return [Sample((_i32(1), rand(rng, (4, 6), t)), {"num_split": 3}, name="axis1"),
            Sample((_i32(0), rand(rng, (4,), t)), {"num_split": 2}, name="vector"),
            Sample((_i32(-1), rand(rng, (2, 0), t)), {"num_split": 2}, name="empty"),
            Sample((_i32(-2), rand(rng, (3, 2), t)), {"num_split": 1}, name="one")]


def _split_v_samples(rng, t):
    return [Sample((rand(rng, (5, 3), t), _i64([2, -1, 1]), _i32(0)), {"num_split": 3},
                   name="minus_one"),
            Sample((rand(rng, (2, 3), t), _i32([1, 2]), _i32(-1)), {"num_split": 2},
                   name="int32_sizes"),
            Sample((rand(rng, (4,), t), np.array([0, 3, 1], np.int8), _i32(0)),
                   {"num_split": 3}, name="int8_zero_size"),
            Sample((rand(rng, (3, 2), t), _i64([-1]), _i32(1)), {"num_split": 1},
                   name="one"),
            Sample((rand(rng, (0, 2), t), _i64([0, -1]), _i32(0)), {"num_split": 2},
                   name="empty")]


_SPLIT_ERRORS = [
    ErrorCase((_i32(0), _zeros(5)), {"num_split": 2},
              regex=r"Number of ways to split should evenly divide the split dimension, but "
                    r"got split_dim 0 \(size = 5\) and num_split 2", name="divide"),
    ErrorCase((_i32(2), _zeros(2, 3)), {"num_split": 1},
              regex=r"-input rank\(-2\) <= split_dim < input rank \(2\), but got 2",
              name="axis"),
    ErrorCase((_i32(-3), _zeros(2, 3)), {"num_split": 1}, regex=r"but got -3",
              name="axis_negative"),
    ErrorCase((_i32([0]), _zeros(2, 3)), {"num_split": 1},
              regex=r"Shape must be rank 0 but is rank 1 for input 'axis'", name="axis_rank"),
    ErrorCase((_i32(0), _zeros()), {"num_split": 1},
              regex=r"-input rank\(-0\) <= split_dim < input rank \(0\)", name="scalar"),
]

_SPLIT_V_ERRORS = [
    ErrorCase((_zeros(5), _i64([-1, -1]), _i32(0)), {"num_split": 2},
              regex=r"size_splits can only have one -1", name="two_minus_ones"),
    ErrorCase((_zeros(5), _i64([2, 2]), _i32(0)), {"num_split": 2},
              regex=r"can't split axis of size 5 into pieces of size \[2,2\]", name="sum"),
    ErrorCase((_zeros(5), _i64([4, 2, -1]), _i32(0)), {"num_split": 3},
              regex=r"can't split axis of size 5 into pieces of size \[4,2,-1\]",
              name="sum_minus_one"),
    ErrorCase((_zeros(5), _i64([7, -2]), _i32(0)), {"num_split": 2},
              regex=r"Split size at index 1 must be >= 0 \(or -1 once\). Got: -2",
              name="negative"),
    ErrorCase((_zeros(5), _i64([5]), _i32(0)), {"num_split": 2},
              regex=r"size_splits must have num_split = 2 elements \(one per output\), but "
                    r"has 1", name="count"),
    ErrorCase((_zeros(5), _i64([[5]]), _i32(0)), {"num_split": 1},
              regex=r"size_splits must be a 1-D Tensor, but has shape \[1,1\]",
              name="sizes_rank"),
    ErrorCase((_zeros(), _i64([1]), _i32(0)), {"num_split": 1},
              regex=r"Can't split scalars", name="scalar"),
    ErrorCase((_zeros(2, 3), _i64([3]), _i32(-3)), {"num_split": 1},
              regex=r"-input rank\(-2\) <= split_dim < input rank \(2\), but got -3",
              name="axis"),
]


# ---- Slice ------------------------------------------------------------------------------

def _slice_ref(x, begin, size):
    index = []
    for i, (b, s) in enumerate(zip(np.asarray(begin).tolist(), np.asarray(size).tolist())):
        stop = x.shape[i] if s == -1 else b + s
        index.append(list(range(b, stop)))
    out = np.empty([len(ix) for ix in index], dtype=x.dtype)
    for pos in np.ndindex(out.shape):
        out[pos] = x[tuple(ix[p] for ix, p in zip(index, pos))]
    return out


def _slice_samples(rng, t):
    return [Sample((rand(rng, (3, 4), t), _i32([1, 0]), _i32([2, -1])), name="to_end"),
            Sample((rand(rng, (2, 3, 4), t), _i64([0, 1, 2]), _i64([2, 2, 2])),
                   name="int64"),
            Sample((rand(rng, (0, 3), t), _i32([0, 1]), _i32([0, 2])), name="empty"),
            Sample((rand(rng, (4,), t), _i32([4]), _i32([-1])), name="begin_at_end"),
            Sample((rand(rng, (), t), _i32([]), _i32([])), name="scalar")]


_SLICE_ERRORS = [
    ErrorCase((_zeros(3, 4), _i32([4, 0]), _i32([1, 1])),
              regex=r"Expected begin\[0\] in \[0, 3\], but got 4", name="begin"),
    ErrorCase((_zeros(3, 4), _i32([0, -1]), _i32([1, 1])),
              regex=r"Expected begin\[1\] in \[0, 4\], but got -1", name="begin_negative"),
    ErrorCase((_zeros(3, 4), _i32([1, 1]), _i32([3, 1])),
              regex=r"Expected size\[0\] in \[0, 2\], but got 3", name="size"),
    ErrorCase((_zeros(3, 4), _i32([1, 1]), _i32([1, -2])),
              regex=r"Expected size\[1\] in \[0, 3\], but got -2", name="size_negative"),
    ErrorCase((_zeros(3, 4), _i32([1]), _i32([1])),
              regex=r"Expected begin and size arguments to be 1-D tensors of size 2, but got "
                    r"shapes \[1\] and \[1\] instead.", name="length"),
    ErrorCase((_zeros(3, 4), _i32([1, 1]), _i32([1])),
              regex=r"of size 2, but got shapes \[2\] and \[1\]", name="lengths_differ"),
]


# ---- StridedSlice -----------------------------------------------------------------------

def _strided_slice_ref(x, begin, end, strides, *, begin_mask=0, end_mask=0, ellipsis_mask=0,
                       new_axis_mask=0, shrink_axis_mask=0):
    """numpy's basic indexing with the Python index TF's sparse spec stands for."""
    index = []
    for i, (b, e, s) in enumerate(zip(np.asarray(begin).tolist(), np.asarray(end).tolist(),
                                      np.asarray(strides).tolist())):
        if (ellipsis_mask >> i) & 1:
            index.append(Ellipsis)
        elif (new_axis_mask >> i) & 1:
            index.append(None)
        elif (shrink_axis_mask >> i) & 1:
            index.append(b)
        else:
            index.append(slice(None if (begin_mask >> i) & 1 else b,
                               None if (end_mask >> i) & 1 else e, s))
    return np.array(x[tuple(index)], copy=True)


def _ss(x, begin, end, strides, index_type=_I32, **masks):
    return Sample((x, np.array(begin, index_type), np.array(end, index_type),
                   np.array(strides, index_type)), masks)


def _random_strided_slice(rng, t):
    """A random sparse spec over a random small input, or None when numpy refuses it."""
    rank = int(rng.integers(0, 4))
    shape = tuple(int(d) for d in rng.integers(0, 5, size=rank))
    n = int(rng.integers(0, 5))
    begin = rng.integers(-6, 7, size=n)
    end = rng.integers(-6, 7, size=n)
    strides = rng.choice([-3, -2, -1, 1, 1, 2, 3], size=n)
    bits = (1 << n) - 1

    def mask(p):
        return int(sum(1 << i for i in range(n) if rng.random() < p)) & bits

    masks = {"begin_mask": mask(0.3), "end_mask": mask(0.3), "new_axis_mask": mask(0.15),
             "shrink_axis_mask": mask(0.25),
             "ellipsis_mask": (1 << int(rng.integers(0, n))) if n and rng.random() < 0.3
             else 0}
    for i in range(n):
        if (masks["shrink_axis_mask"] >> i) & 1:
            strides[i] = abs(strides[i])        # TF refuses negative strides on shrinks
    x = rand(rng, shape, t)
    index_type = rng.choice([np.int16, np.int32, np.int64])
    sample = _ss(x, begin, end, strides, index_type, **masks)
    try:
        _strided_slice_ref(*sample.inputs, **masks)
    except IndexError:
        return None
    return sample


def _strided_slice_samples(rng, t):
    def r(*shape):
        return rand(rng, shape, t)
    fixed = [_ss(r(5, 4), [1], [4], [1]),                                      # x[1:4]
             _ss(r(5, 4), [0, -1], [0, 0], [1, -1], begin_mask=1, end_mask=3),  # x[:, ::-1]
             _ss(r(6), [-1], [0], [-2], end_mask=1),                          # x[-1::-2]
             _ss(r(3, 4, 5), [0, 2], [0, 3], [1, 1], ellipsis_mask=1,
                 shrink_axis_mask=2),                                         # x[..., 2]
             _ss(r(3, 4), [1, 0, 0], [2, 0, 0], [1, 1, 1], new_axis_mask=2, ellipsis_mask=4,
                 shrink_axis_mask=1),                                         # x[1, None, ...]
             _ss(r(3, 4), [0, 0], [0, 0], [1, 1], new_axis_mask=3),           # x[None, None]
             _ss(r(3), [10], [-10], [-1]),                                    # x[10:-10:-1]
             _ss(r(4, 2), [-10, 1], [10, 2], [3, 1], _I64, shrink_axis_mask=2),
             _ss(r(), [0], [0], [1], new_axis_mask=1),                        # scalar[None]
             _ss(r(0, 3), [0, -1], [0, 0], [1, -1], begin_mask=1, end_mask=3),  # empty
             _ss(r(2, 3), [0, 0], [0, 0], [1, 1], np.int16, ellipsis_mask=1,
                 new_axis_mask=2)]                                            # x[..., None]
    fixed = [Sample(s.inputs, s.attrs, name=f"fixed{k}") for k, s in enumerate(fixed)]
    count = 40 if t is dt.DT_FLOAT else 4
    randoms = []
    while len(randoms) < count:
        s = _random_strided_slice(rng, t)
        if s is not None:
            randoms.append(Sample(s.inputs, s.attrs, name=f"random{len(randoms)}"))
    return fixed + randoms


def _v(*values, index_type=_I32):
    return np.array(values, index_type)


_STRIDED_SLICE_ERRORS = [
    ErrorCase((_zeros(3), _v(0), _v(2), _v(0)), regex=r"strides\[0\] must be non-zero",
              name="zero_stride"),
    ErrorCase((_zeros(3), _v(3), _v(4), _v(1)), {"shrink_axis_mask": 1},
              regex=r"slice index 3 of dimension 0 out of bounds", name="shrink_bounds"),
    ErrorCase((_zeros(2, 3), _v(0, -4), _v(0, 0), _v(1, 1)), {"shrink_axis_mask": 2},
              regex=r"slice index -4 of dimension 1 out of bounds", name="shrink_negative"),
    ErrorCase((_zeros(3), _v(1), _v(2), _v(-1)), {"shrink_axis_mask": 1},
              regex=r"only stride 1 allowed on non-range indexing", name="shrink_stride"),
    ErrorCase((_zeros(3), _v(0, 0), _v(1, 1), _v(1, 1)),
              regex=r"Index out of range using input dim 1; input has only 1 dims",
              name="too_many_indices"),
    ErrorCase((_zeros(3), _v(0), _v(1, 2), _v(1)),
              regex=r"Expected begin, end, and strides to be 1D equal size tensors, but got "
                    r"shapes \[1\], \[2\], and \[1\] instead.", name="lengths"),
    ErrorCase((_zeros(3), _v(0, 0), _v(0, 0), _v(1, 1)), {"ellipsis_mask": 3},
              regex=r"Multiple ellipses in slice spec not allowed", when="build",
              name="ellipses"),
]



def _strided_slice_grad_ref(shape, begin, end, strides, dy, **masks):
    """Zeros of ``shape`` with ``dy`` assigned through numpy's basic indexing."""
    out = np.zeros(tuple(np.asarray(shape).tolist()), dtype=dy.dtype)
    probe = np.arange(out.size).reshape(out.shape)
    picked = _strided_slice_ref(probe, begin, end, strides, **masks)
    flat = out.reshape(-1)
    for pos in np.ndindex(picked.shape):
        flat[picked[pos]] = dy[pos]
    return out


def _strided_slice_grad_samples(rng, t):
    samples = []
    for k, s in enumerate(_strided_slice_samples(rng, dt.DT_FLOAT)[:11]):
        x, begin, end, strides = s.inputs
        dy = rand(rng, _strided_slice_ref(x, begin, end, strides, **s.attrs).shape, t)
        index_type = _I64 if k % 2 else _I32
        samples.append(Sample((np.array(x.shape, index_type), begin.astype(index_type),
                               end.astype(index_type), strides.astype(index_type), dy),
                              s.attrs, name=f"fixed{k}"))
    return samples


_STRIDED_SLICE_GRAD_ERRORS = [
    ErrorCase((_i32([5]), _v(1), _v(4), _v(1), _zeros(2)),
              regex=r"shape of dy was \[2\] instead of \[3\]", name="dy_shape"),
    ErrorCase((_i32([5]), _v(1), _v(4), _v(0), _zeros(3)),
              regex=r"strides\[0\] must be non-zero", name="zero_stride"),
    ErrorCase((_i32([[5]]), _v(1), _v(4), _v(1), _zeros(3)),
              regex=r"Shape must be rank 1 but is rank 2 for input 'shape'", name="shape_rank"),
]

# ---- ReverseV2 / Tile -------------------------------------------------------------------

def _reverse_ref(tensor, axis):
    axes = {_axis(a, tensor.ndim) for a in np.asarray(axis).tolist()}
    index = tuple(slice(None, None, -1) if i in axes else slice(None)
                  for i in range(tensor.ndim))
    return np.array(tensor[index], copy=True)


def _reverse_samples(rng, t):
    return [Sample((rand(rng, (2, 3), t), _i32([1])), name="one_axis"),
            Sample((rand(rng, (2, 3, 2), t), _i64([0, -1])), name="two_axes"),
            Sample((rand(rng, (2, 3), t), _i32([])), name="no_axes"),
            Sample((rand(rng, (2, 0, 3), t), _i32([1, 2])), name="empty"),
            Sample((rand(rng, (), t), _i64([])), name="scalar")]


_REVERSE_ERRORS = [
    ErrorCase((_zeros(2, 3), _i32([2])),
              regex=r"'axis'\[0\] = 2 is out of valid range \[-2, 1\]", name="range"),
    ErrorCase((_zeros(2, 3), _i32([1, -3])), regex=r"'axis'\[1\] = -3 is out of valid range",
              name="range_negative"),
    ErrorCase((_zeros(2, 3), _i32([0, -2])), regex=r"axis 0 specified more than once.",
              name="repeated"),
    ErrorCase((np.zeros((1,) * 9, _F), _i32([0])),
              regex=r"reverse does not work on tensors with more than 8 dimensions",
              name="rank9"),
    ErrorCase((_zeros(2, 3), _i32(0)),
              regex=r"Shape must be rank 1 but is rank 0 for input 'axis'", name="axis_rank"),
]


def _tile_ref(x, multiples):
    reps = np.asarray(multiples).tolist()
    out_shape = tuple(d * m for d, m in zip(x.shape, reps))
    out = np.empty(out_shape, dtype=x.dtype)
    for pos in np.ndindex(out_shape):
        out[pos] = x[tuple(p % d for p, d in zip(pos, x.shape))]
    return out


def _tile_samples(rng, t):
    return [Sample((rand(rng, (2, 3), t), _i32([2, 1])), name="rows"),
            Sample((rand(rng, (1, 2, 1), t), _i64([2, 1, 3])), name="int64"),
            Sample((rand(rng, (2,), t), _i32([0])), name="zero"),
            Sample((rand(rng, (0, 2), t), _i32([3, 2])), name="empty"),
            Sample((rand(rng, (), t), _i32([])), name="scalar")]


_TILE_ERRORS = [
    ErrorCase((_zeros(2, 3), _i32([1, -1])),
              regex=r"Expected multiples\[1\] >= 0, but got -1", name="negative"),
    ErrorCase((_zeros(2, 3), _i32([2])),
              regex=r"Expected multiples argument to be a vector of length 2 but got length 1",
              name="length"),
    ErrorCase((_zeros(2, 3), _i32([[1, 1]])),
              regex=r"Shape must be rank 1 but is rank 2 for input 'multiples'", name="rank"),
]


# ---- Pad / PadV2 / MirrorPad ------------------------------------------------------------

def _pad_loop(x, paddings, value):
    pads = np.asarray(paddings).tolist()
    out_shape = tuple(d + b + a for d, (b, a) in zip(x.shape, pads))
    out = np.empty(out_shape, dtype=x.dtype)
    out[...] = value
    for pos in np.ndindex(x.shape):
        out[tuple(p + b for p, (b, _) in zip(pos, pads))] = x[pos]
    return out


def _pad_ref(x, paddings):
    return _pad_loop(x, paddings, np.zeros((), x.dtype))


def _pad_v2_ref(x, paddings, constant_values):
    return _pad_loop(x, paddings, constant_values)


def _mirror_source(j: int, before: int, dim: int, mode: str) -> int:
    k = j - before
    edge = 0 if mode == "REFLECT" else 1     # SYMMETRIC repeats the edge entry
    if k < 0:
        return -k - edge
    if k >= dim:
        return 2 * dim - 2 - k + edge
    return k


def _mirror_pad_ref(x, paddings, *, mode):
    pads = np.asarray(paddings).tolist()
    out_shape = tuple(d + b + a for d, (b, a) in zip(x.shape, pads))
    out = np.empty(out_shape, dtype=x.dtype)
    for pos in np.ndindex(out_shape):
        out[pos] = x[tuple(_mirror_source(j, b, d, mode)
                           for j, (b, _), d in zip(pos, pads, x.shape))]
    return out


def _pad_samples(rng, t, extra=()):
    def with_extra(inputs):
        return inputs + tuple(e(rng, t) for e in extra)
    return [Sample(with_extra((rand(rng, (2, 3), t), _i32([[1, 0], [2, 1]]))), name="2d"),
            Sample(with_extra((rand(rng, (2, 1, 2), t), _i64([[0, 0], [1, 1], [0, 2]]))),
                   name="int64"),
            Sample(with_extra((rand(rng, (0, 2), t), _i32([[1, 1], [0, 0]]))), name="empty"),
            Sample(with_extra((rand(rng, (), t), np.zeros((0, 2), _I32))), name="scalar")]


def _mirror_samples(rng, t):
    return [Sample((rand(rng, (3, 4), t), _i32([[2, 1], [3, 0]])), {"mode": "REFLECT"},
                   name="reflect"),
            Sample((rand(rng, (2, 3), t), _i32([[2, 2], [3, 1]])), {"mode": "SYMMETRIC"},
                   name="symmetric"),
            Sample((rand(rng, (3,), t), _i64([[1, 2]])), {"mode": "REFLECT"}, name="int64"),
            Sample((rand(rng, (0, 2), t), _i32([[0, 0], [2, 1]])), {"mode": "SYMMETRIC"},
                   name="empty"),
            Sample((rand(rng, (), t), np.zeros((0, 2), _I32)), {"mode": "REFLECT"},
                   name="scalar")]


def _mirror_pad_grad_ref(grad, paddings, *, mode):
    """Each padded entry's gradient added onto the entry it mirrors, by explicit loops."""
    pads = np.asarray(paddings).tolist()
    shape = tuple(d - b - a for d, (b, a) in zip(grad.shape, pads))
    out = np.zeros(shape, dtype=grad.dtype)
    for pos in np.ndindex(grad.shape):
        src = tuple(_mirror_source(j, b, d, mode) for j, (b, _), d in zip(pos, pads, shape))
        out[src] += grad[pos]
    return out


def _mirror_pad_grad_samples(rng, t):
    return [Sample((rand(rng, (6, 7), t), _i32([[2, 1], [3, 0]])), {"mode": "REFLECT"},
                   name="reflect"),
            Sample((rand(rng, (6, 7), t), _i32([[2, 2], [3, 1]])), {"mode": "SYMMETRIC"},
                   name="symmetric"),
            Sample((rand(rng, (6,), t), _i64([[1, 2]])), {"mode": "REFLECT"}, name="int64"),
            Sample((rand(rng, (0, 5), t), _i32([[0, 0], [2, 1]])), {"mode": "SYMMETRIC"},
                   name="empty"),
            Sample((rand(rng, (), t), np.zeros((0, 2), _I32)), {"mode": "REFLECT"},
                   name="scalar")]


def _pad_errors(extra=(), attrs=None):
    attrs = attrs or {}
    return [
        ErrorCase((_zeros(2, 3), _i32([[1, -1], [0, 0]])) + extra, attrs,
                  regex=r"Paddings must be non-negative: 1 -1", name="negative"),
        ErrorCase((_zeros(2, 3), _i32([[1, 1, 1], [0, 0, 0]])) + extra, attrs,
                  regex=r"paddings must be a matrix with 2 columns, but has shape \[2,3\]",
                  name="columns"),
        ErrorCase((_zeros(2, 3), _i32([[1, 1]])) + extra, attrs,
                  regex=r"The first dimension of paddings must be the rank of inputs: "
                        r"paddings has shape \[1,2\] but input has shape \[2,3\]", name="rows"),
    ]


_PAD_V2_VALUE = (np.array(0.0, _F),)

ENTRIES = [
    OpInfo("StridedSliceGrad", ref=_strided_slice_grad_ref, dtypes=ALL,
           samples=_strided_slice_grad_samples, errors=_STRIDED_SLICE_GRAD_ERRORS,
           value_inputs=("shape", "begin", "end", "strides"), grad_tol=1e-6,
           grad_inputs=(4,),
           shapes=[ShapeCase("=[4,5];=[1];=[3];=[1];[2,5]", "[4,5]", dtype=dt.DT_INT32),
                   ShapeCase("shape_of:[?,5];=[1];=[3];=[1];[2,5]", "[?,5]",
                             dtype=dt.DT_INT32),
                   ShapeCase("[2];[1];[1];[1];?", "[?,?]", dtype=dt.DT_INT32)]),
    OpInfo("MirrorPadGrad", ref=_mirror_pad_grad_ref, dtypes=FLOATS + INTS,
           samples=_mirror_pad_grad_samples,
           errors=[ErrorCase((_zeros(4, 3), _i32([[2, 1], [0, 0]])), {"mode": "REFLECT"},
                             regex=r"paddings must be less than the output dimension size: "
                                   r"2, 1 not less than 1", name="reflect"),
                   ErrorCase((_zeros(4, 3), _i32([[1, 2], [0, 0]])), {"mode": "SYMMETRIC"},
                             regex=r"paddings must be no greater than the output dimension "
                                   r"size: 1, 2 greater than 1", name="symmetric"),
                   ErrorCase((_zeros(2, 3), _i32([[2, 1], [0, 0]])), {"mode": "SYMMETRIC"},
                             regex=r"larger than the padded gradient's dimension 2",
                             name="too_large")],
           value_inputs=("paddings",), grad_tol=1e-6,
           shapes=[ShapeCase("[?,7];=[[1,1],[2,1]]", "[?,4]", {"mode": "REFLECT"},
                             dtype=dt.DT_INT32)]),
    OpInfo("ConcatV2", ref=_concat_ref, dtypes=ALL, samples=_concat_samples,
           errors=_CONCAT_ERRORS, value_inputs=("axis",), grad_tol=1e-6),
    OpInfo("Pack", ref=_pack_ref, dtypes=ALL, samples=_pack_samples, errors=_PACK_ERRORS,
           grad_tol=1e-6),
    OpInfo("Unpack", ref=_unpack_ref, dtypes=ALL, samples=_unpack_samples,
           errors=_UNPACK_ERRORS, grad_tol=1e-6),
    OpInfo("Split", ref=_split_ref, dtypes=ALL, samples=_split_samples, errors=_SPLIT_ERRORS,
           value_inputs=("axis",), grad_tol=1e-6),
    OpInfo("SplitV", ref=_split_v_ref, dtypes=ALL, samples=_split_v_samples,
           errors=_SPLIT_V_ERRORS, value_inputs=("size_splits", "axis"), grad_tol=1e-6),
    OpInfo("Slice", ref=_slice_ref, dtypes=ALL, samples=_slice_samples, errors=_SLICE_ERRORS,
           value_inputs=("begin", "size"), grad_tol=1e-6,
           shapes=[ShapeCase("[?,5];=[1,1];=[2,-1]", "[2,4]", dtype=dt.DT_INT32),
                   ShapeCase("[?,5];=[1,1];=[-1,-1]", "[?,4]", dtype=dt.DT_INT32),
                   ShapeCase("[?,5];[2];[2]", "[?,?]", dtype=dt.DT_INT32),
                   ShapeCase("?;=[0,1];=[1,2]", "[1,2]", dtype=dt.DT_INT32),
                   ShapeCase("?;[3];[?]", "[?,?,?]", dtype=dt.DT_INT32),
                   ShapeCase("?;[?];[?]", "?", dtype=dt.DT_INT32),
                   ShapeCase("[3,5];=[2,0];=[2,1]", r"Expected size\[0\] in \[0, 1\], but got 2",
                             dtype=dt.DT_INT32, error=errors.InvalidArgumentError),
                   ShapeCase("[3,5];[3];[3]", r"1-D tensors of size 2, but got shapes \[3\]",
                             dtype=dt.DT_INT32, error=errors.InvalidArgumentError)]),
    OpInfo("StridedSlice", ref=_strided_slice_ref, dtypes=ALL,
           samples=_strided_slice_samples, errors=_STRIDED_SLICE_ERRORS,
           value_inputs=("begin", "end", "strides"), grad_tol=1e-6,
           shapes=[ShapeCase("[?,5,6];=[0,1];=[0,4];=[1,2]", "[d0_0,2,6]",
                             {"begin_mask": 1, "end_mask": 1}, dtype=dt.DT_INT32),
                   ShapeCase("[?,5];[2];[2];=[1,1]", "[?,?]", dtype=dt.DT_INT32),
                   ShapeCase("[4,5];[2];[2];=[1,1]", "[?]", {"shrink_axis_mask": 1},
                             dtype=dt.DT_INT32),
                   ShapeCase("[4,5];[2];[2];=[1,-1]", "[?,5]", {"begin_mask": 2, "end_mask": 2},
                             dtype=dt.DT_INT32),
                   ShapeCase("[?,5];=[0];=[0];=[1]", "[d0_0,5]", {"ellipsis_mask": 1},
                             dtype=dt.DT_INT32),
                   ShapeCase("[?,5];=[0,0];=[0,0];=[1,1]", "[d0_0,5,1]",
                             {"ellipsis_mask": 1, "new_axis_mask": 2}, dtype=dt.DT_INT32),
                   ShapeCase("[?];=[3];=[4];=[1]", "[]", {"shrink_axis_mask": 1},
                             dtype=dt.DT_INT32),
                   ShapeCase("[7];=[-1];=[0];=[-2]", "[4]", {"end_mask": 1}, dtype=dt.DT_INT32),
                   ShapeCase("?;=[0];=[1];=[1]", "?", dtype=dt.DT_INT32),
                   ShapeCase("[?,5];=[1];=[2];[1]", "?", dtype=dt.DT_INT32),
                   ShapeCase("shape_of:[?,9,9,3];=[1];=[3];=[1]", "[2]", dtype=dt.DT_INT32),
                   ShapeCase("[3];=[5];=[6];=[1]", r"slice index 5 of dimension 0 out of bounds",
                             {"shrink_axis_mask": 1}, dtype=dt.DT_INT32,
                             error=errors.InvalidArgumentError),
                   ShapeCase("[?];=[5];=[6];=[-1]", r"only stride 1 allowed",
                             {"shrink_axis_mask": 1}, dtype=dt.DT_INT32,
                             error=errors.InvalidArgumentError)]),
    OpInfo("ReverseV2", ref=_reverse_ref, dtypes=ALL, samples=_reverse_samples,
           errors=_REVERSE_ERRORS, value_inputs=("axis",), grad_tol=1e-6,
           shapes=[ShapeCase("[?,3];=[1]", "[d0_0,3]", dtype=dt.DT_INT32),
                   ShapeCase("?;=[0]", "?", dtype=dt.DT_INT32),
                   ShapeCase("[2,3];=[0,-2]", r"axis 0 specified more than once",
                             dtype=dt.DT_INT32, error=errors.InvalidArgumentError)]),
    OpInfo("Tile", ref=_tile_ref, dtypes=ALL, samples=_tile_samples, errors=_TILE_ERRORS,
           value_inputs=("multiples",), grad_tol=1e-6,
           shapes=[ShapeCase("[?,3];=[2,2]", "[?,6]", dtype=dt.DT_INT32),
                   ShapeCase("[2,3];[2]", "[?,?]", dtype=dt.DT_INT32),
                   ShapeCase("?;[3]", "[?,?,?]", dtype=dt.DT_INT32),
                   ShapeCase("[2,3];shape_of:[?,2]", "[?,6]", dtype=dt.DT_INT32),
                   ShapeCase("[0,?];=[5,0]", "[0,0]", dtype=dt.DT_INT32),
                   ShapeCase("[2,3];=[1]", r"vector of length 2 but got length 1",
                             dtype=dt.DT_INT32, error=errors.InvalidArgumentError)]),
    OpInfo("Pad", ref=_pad_ref, dtypes=ALL, samples=_pad_samples, errors=_pad_errors(),
           value_inputs=("paddings",), grad_tol=1e-6,
           shapes=[ShapeCase("[?,3];=[[1,1],[2,0]]", "[?,5]", dtype=dt.DT_INT32),
                   ShapeCase("[?,3];[2,2]", "[?,?]", dtype=dt.DT_INT32),
                   ShapeCase("?;[3,2]", "[?,?,?]", dtype=dt.DT_INT32),
                   ShapeCase("?;=[[1,2]]", "[?]", dtype=dt.DT_INT32),
                   ShapeCase("[2];[1,3]", r"2 columns, but has shape \[1,3\]",
                             dtype=dt.DT_INT32, error=errors.InvalidArgumentError)]),
    OpInfo("PadV2", ref=_pad_v2_ref, dtypes=ALL,
           samples=lambda rng, t: _pad_samples(rng, t, (lambda r, d: rand(r, (), d),)),
           errors=_pad_errors(_PAD_V2_VALUE) + [
               ErrorCase((_zeros(2), _i32([[1, 1]]), np.zeros(1, _F)),
                         regex=r"constant_values must be a scalar. Got: \[1\]",
                         name="value_rank")],
           value_inputs=("paddings",), grad_tol=1e-6, grad_inputs=(0,),
           shapes=[ShapeCase("[?,3];=[[1,1],[2,0]];[]", "[?,5]", dtype=dt.DT_INT32)]),
    OpInfo("MirrorPad", ref=_mirror_pad_ref, dtypes=ALL, samples=_mirror_samples,
           errors=_pad_errors(attrs={"mode": "SYMMETRIC"}) + [
               ErrorCase((_zeros(2, 3), _i32([[1, 0], [0, 3]])), {"mode": "REFLECT"},
                         regex=r"paddings must be less than the dimension size: 0, 3 not less "
                               r"than 3", name="reflect"),
               ErrorCase((_zeros(2, 3), _i32([[3, 0], [0, 0]])), {"mode": "SYMMETRIC"},
                         regex=r"paddings must be no greater than the dimension size: 3, 0 "
                               r"greater than 2", name="symmetric")],
           value_inputs=("paddings",), grad_tol=1e-6,
           shapes=[ShapeCase("[?,3];=[[1,1],[2,0]]", "[?,5]", {"mode": "REFLECT"},
                             dtype=dt.DT_INT32),
                   ShapeCase("[2,3];=[[2,0],[0,0]]", r"less than the dimension size",
                             {"mode": "REFLECT"}, dtype=dt.DT_INT32,
                             error=errors.InvalidArgumentError)]),
]
