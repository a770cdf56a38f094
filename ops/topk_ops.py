"""Top-k ops: TopKV2 (the C++ API's ``TopK``), InTopKV2 and InTopK.

Every rule of TF's kernels is checked by the shape functions whenever what it needs is
known: k is a non-negative scalar no larger than the last dim; InTopK's predictions and
targets agree in batch size and (when the targets are known) every target is a valid class.
"""

from __future__ import annotations

import numpy as np

from opgraph import errors
from opgraph.gradients import gradient, not_differentiable
from opgraph.shape_inference import InferenceContext
from opgraph.wrappers import declare

__all__ = ["TopKV2", "TopK", "InTopKV2", "InTopK"]


def _top_k_v2_shape(c: InferenceContext):
    x = c.with_rank_at_least(0, 1)
    c.with_rank(1, 0)
    k = c.scalar_value(1)
    if k is not None and k < 0:
        msg = f"Need k >= 0, got {k}"
        raise errors.InvalidArgumentError(msg)
    if x.dims is None:
        return [c.unknown_shape(), c.unknown_shape()]
    last = x.dims[-1]
    if k is not None and last is not None and last < k:
        msg = f"input must have at least k columns. Had {last}, needed {k}"
        raise errors.InvalidArgumentError(msg)
    index_type = c.attr("index_type")
    limit = np.iinfo(index_type.as_numpy_dtype).max
    if last is not None and last - 1 > limit:
        msg = (f"input's last dimension {last} has indices that do not fit index_type "
               f"{index_type.name} (at most {limit})")
        raise errors.InvalidArgumentError(msg)
    out = c.make_shape((*x.dims[:-1], k))
    return [out, out]


TopKV2 = declare(
    "TopKV2",
    inputs=["input: T  # 1-D or higher; the top k run along the last dim",
            "k: Tk  # scalar: how many entries to keep, 0 <= k <= input's last dim"],
    outputs=["values: T  # the k largest entries of each last-dim slice",
             "indices: index_type  # their positions within the last dim"],
    attrs=["sorted: bool = true  # values in descending order (always the case here)",
           "T: realnumbertype",
           "Tk: {int16, int32, int64} = int32",
           "index_type: {int16, int32, int64} = int32"],
    shape_fn=_top_k_v2_shape,
    doc="The k largest entries of each vector along input's last dim and their indices; "
        "equal values keep their order (the lower index first). NaN ranks above every "
        "number.")

TopK = TopKV2     # the C++ API's name for TopKV2


@gradient("TopKV2")
def _top_k_grad(scope, op, grads):
    """TF's _TopKGrad: each value's gradient goes back to its index in the last dim; k gets
    none. TF scatters with ScatterNd; here the scatter is a one-hot contraction
    sum_j one_hot(indices)[..., j, :] * grad[..., j] (the indices of a row are distinct),
    built from differentiable ops."""
    import ops  # noqa: PLC0415  (ops modules use each other's wrappers lazily)
    x, indices = op.inputs[0], op.output(1)
    npd = x.dtype.as_numpy_dtype
    last = x.shape.dims[-1] if x.shape.rank else None
    if last is not None:
        depth = ops.Const(scope, np.array(last, np.int32))
    else:
        depth = ops.StridedSlice(scope, ops.Shape(scope, x), ops.Const(scope, [-1]),
                                 ops.Const(scope, [0]), ops.Const(scope, [1]), end_mask=1,
                                 shrink_axis_mask=1)
    if indices.dtype.name == "int16":
        indices = ops.Cast(scope, indices, "int32")
    one_hot = ops.OneHot(scope, indices, depth, ops.Const(scope, np.ones((), npd)),
                         ops.Const(scope, np.zeros((), npd)))
    spread = ops.Mul(scope, one_hot, ops.ExpandDims(scope, grads[0], ops.Const(scope, -1)))
    return [ops.Sum(scope, spread, ops.Const(scope, -2)), None]


def _check_batch(c: InferenceContext, p, t):
    n, m = p.dims[0], t.dims[0]
    if n is not None and m is not None and n != m:
        msg = f"First dimension of predictions {n} must match length of targets {m}"
        raise errors.InvalidArgumentError(msg)
    targets = c.input_tensor(1)
    classes = p.dims[1]
    if targets is not None and classes is not None:
        targets = np.asarray(targets)
        bad = np.flatnonzero((targets < 0) | (targets >= classes))
        if bad.size:
            b = int(bad[0])
            msg = (f"targets[{b}] is out of range: {int(targets[b])} is not a class index in "
                   f"[0, {classes})")
            raise errors.InvalidArgumentError(msg)
    return c.vector(n if n is not None else m)


def _in_top_k_v2_shape(c: InferenceContext):
    p, t = c.with_rank(0, 2), c.with_rank(1, 1)
    c.with_rank(2, 0)
    return [_check_batch(c, p, t)]


def _in_top_k_shape(c: InferenceContext):
    return [_check_batch(c, c.with_rank(0, 2), c.with_rank(1, 1))]


_IN_TOP_K_DOC = (
    "Whether each target's prediction is among the k largest of its row, counting ties in "
    "(TF's TopKIncludingTies): out[i] = #(predictions[i] > predictions[i, targets[i]]) < k. "
    "A row holding any non-finite prediction gives false.")

InTopKV2 = declare(
    "InTopKV2",
    inputs=["predictions: float  # [batch, classes]",
            "targets: T  # [batch] class ids",
            "k: T  # scalar: how many top predictions to look at"],
    outputs=["precision: bool  # [batch]"],
    attrs=["T: {int32, int64} = int32"],
    shape_fn=_in_top_k_v2_shape,
    doc=_IN_TOP_K_DOC)

not_differentiable("InTopKV2")

InTopK = declare(
    "InTopK",
    inputs=["predictions: float  # [batch, classes]",
            "targets: T  # [batch] class ids"],
    outputs=["precision: bool  # [batch]"],
    attrs=["k: int  # how many top predictions to look at",
           "T: {int32, int64} = int32"],
    shape_fn=_in_top_k_shape,
    doc=_IN_TOP_K_DOC + " k is an attr (InTopKV2 takes it as a tensor).")

not_differentiable("InTopK")
