"""Matrix products (TF math_ops.cc): MatMul, BatchMatMul, BatchMatMulV2, with their gradients
(TF's math_grad.py)."""

from __future__ import annotations

import numpy as np

from opgraph import errors
from opgraph.gradients import gradient
from opgraph.graph import Output
from opgraph.shape_inference import InferenceContext
from opgraph.shapes import TensorShape
from opgraph.wrappers import declare

_GRAD_DOC = "  # marks a gradient's product (a hint for XLA in TF); no effect here"


def _inner_mismatch(c: InferenceContext, inner_a, inner_b, which_a: str, which_b: str):
    """TF's kernel sentence when the contracted dims are both known and differ."""
    if inner_a is None or inner_b is None or inner_a == inner_b:
        return
    msg = (f"Matrix size-incompatible: In[0]: {c.input(0).compact()}, In[1]: "
           f"{c.input(1).compact()}: the contracted dims must be equal, but {which_a} is "
           f"{inner_a} and {which_b} is {inner_b}")
    raise errors.InvalidArgumentError(msg)


def _matmul_shape(c: InferenceContext) -> list[TensorShape]:
    """TF's MatMulShape: two matrices whose contracted dims agree."""
    a = c.with_rank(0, 2).dims
    b = c.with_rank(1, 2).dims
    ta, tb = c.attr("transpose_a"), c.attr("transpose_b")
    _inner_mismatch(c, a[0 if ta else 1], b[1 if tb else 0],
                    f"a's dim {0 if ta else 1}", f"b's dim {1 if tb else 0}")
    return [c.make_shape((a[1 if ta else 0], b[0 if tb else 1]))]


_MATMUL_TYPES = ("bfloat16, half, float, double, int32, int64, uint8, uint16, int8, int16, "
                 "complex64, complex128")

MatMul = declare(
    "MatMul",
    inputs=["a: T  # a matrix [m, k] ([k, m] with transpose_a)",
            "b: T  # a matrix [k, n] ([n, k] with transpose_b)"],
    outputs=["product: T"],
    attrs=["transpose_a: bool = false  # use a's transpose",
           "transpose_b: bool = false  # use b's transpose",
           f"T: {{{_MATMUL_TYPES}}}",
           "grad_a: bool = false" + _GRAD_DOC,
           "grad_b: bool = false" + _GRAD_DOC],
    shape_fn=_matmul_shape,
    doc="The matrix product a * b of two rank-2 tensors, optionally transposing either "
        "first. half and bfloat16 accumulate in float32; integers wrap around. The CPU "
        "kernel covers half, bfloat16, float, double, int32, int64 and complex, as TF's.")


def conj(scope, t: Output) -> Output:
    """The complex conjugate of t; t itself for real types (Python TF's math_ops.conj)."""
    import ops  # noqa: PLC0415  (ops modules use each other's wrappers lazily)
    t = getattr(t, "output", t)
    if not t.dtype.name.startswith("complex"):
        return t
    return ops.Conj(scope, t).output


@gradient("MatMul")
def _mat_mul_grad(scope, op, grads):
    """TF's _MatMulGrad: one product per input for each transpose case (the inputs
    conjugated for complex types)."""
    import ops  # noqa: PLC0415
    a, b = (conj(scope, t) for t in op.inputs)
    g = grads[0]
    ta, tb = op.attrs["transpose_a"], op.attrs["transpose_b"]

    def grad_a(x, y, tx, ty):
        return ops.MatMul(scope, x, y, transpose_a=tx, transpose_b=ty, grad_a=True)

    def grad_b(x, y, tx, ty):
        return ops.MatMul(scope, x, y, transpose_a=tx, transpose_b=ty, grad_b=True)

    if not ta and not tb:
        return [grad_a(g, b, False, True), grad_b(a, g, True, False)]
    if not ta:
        return [grad_a(g, b, False, False), grad_b(g, a, True, False)]
    if not tb:
        return [grad_a(b, g, False, True), grad_b(a, g, False, False)]
    return [grad_a(b, g, True, True), grad_b(g, a, True, True)]


def _batch_operands(c: InferenceContext):
    """Both inputs (rank >= 2), plus the output's rows and cols, after the inner check."""
    x = c.with_rank_at_least(0, 2).dims
    y = c.with_rank_at_least(1, 2).dims
    adj_x, adj_y = c.attr("adj_x"), c.attr("adj_y")
    rows = None if x is None else x[-1 if adj_x else -2]
    cols = None if y is None else y[-2 if adj_y else -1]
    return x, y, rows, cols, adj_x, adj_y


def _check_inner(c, x, y, adj_x, adj_y):
    if x is None or y is None:
        return
    _inner_mismatch(c, x[-2 if adj_x else -1], y[-1 if adj_y else -2],
                    f"x's dim {len(x) - (2 if adj_x else 1)}",
                    f"y's dim {len(y) - (1 if adj_y else 2)}")


def _batch_matmul_v2_shape(c: InferenceContext) -> list[TensorShape]:
    """TF's BatchMatMulV2Shape: batch dims broadcast, inner dims agree."""
    x, y, rows, cols, adj_x, adj_y = _batch_operands(c)
    if x is None or y is None:
        return [c.unknown_shape()]
    bx, by = x[:-2], y[:-2]
    n = max(len(bx), len(by))
    px, py = (1,) * (n - len(bx)) + bx, (1,) * (n - len(by)) + by
    for i, j in zip(px, py):
        if i is not None and j is not None and i != j and i != 1 and j != 1:
            msg = (f"In[0] and In[1] must have compatible batch dimensions: "
                   f"{c.input(0).compact()} vs. {c.input(1).compact()} (batch dims {i} and "
                   f"{j} differ and neither is 1)")
            raise errors.InvalidArgumentError(msg)
    _check_inner(c, x, y, adj_x, adj_y)
    batch = c.broadcast(TensorShape._from_tuple(bx), TensorShape._from_tuple(by))
    return [c.make_shape(batch.dims + (rows, cols))]


def _batch_matmul_shape(c: InferenceContext) -> list[TensorShape]:
    """TF's BatchMatMulShape with the kernel's checks: same rank, same batch dims."""
    x, y, rows, cols, adj_x, adj_y = _batch_operands(c)
    if x is not None and y is not None:
        if len(x) != len(y):
            msg = (f"In[0] and In[1] has different ndims: {c.input(0).compact()} vs. "
                   f"{c.input(1).compact()} (BatchMatMul does not broadcast; BatchMatMulV2 "
                   f"does)")
            raise errors.InvalidArgumentError(msg)
        for k, (i, j) in enumerate(zip(x[:-2], y[:-2])):
            if i is not None and j is not None and i != j:
                msg = (f"In[0].dim({k}) and In[1].dim({k}) must be the same: "
                       f"{c.input(0).compact()} vs {c.input(1).compact()}")
                raise errors.InvalidArgumentError(msg)
    _check_inner(c, x, y, adj_x, adj_y)
    known = x if x is not None else y
    if known is None:
        return [c.unknown_shape()]
    batch = [None] * (len(known) - 2)
    for dims in (x, y):
        if dims is not None:
            batch = [b if b is not None else d for b, d in zip(batch, dims[:-2])]
    return [c.make_shape((*batch, rows, cols))]


_BATCH_ATTRS = ["adj_x: bool = false  # use the adjoint (conjugate transpose) of x's matrices",
                "adj_y: bool = false  # use the adjoint (conjugate transpose) of y's matrices",
                "grad_x: bool = false" + _GRAD_DOC,
                "grad_y: bool = false" + _GRAD_DOC]
_BATCH_INPUTS = ["x: T  # [..., r_x, c_x], rank >= 2", "y: T  # [..., r_y, c_y], rank >= 2"]

BatchMatMulV2 = declare(
    "BatchMatMulV2",
    inputs=_BATCH_INPUTS,
    outputs=["output: T"],
    attrs=["T: {bfloat16, half, float, double, int16, int32, int64, uint8, uint16, "
           "complex64, complex128}", *_BATCH_ATTRS],
    shape_fn=_batch_matmul_v2_shape,
    doc="Matrix products over the last two dims, with numpy broadcasting of the batch dims "
        "in front: output[..., :, :] = x[..., :, :] * y[..., :, :], optionally taking the "
        "adjoint of either. half and bfloat16 accumulate in float32; integers wrap around.")


def _batch_products(scope, op, grad, product):
    """(grad_x, grad_y) of TF's _BatchMatMul(V2) grads, before any batch reduction; the
    adjoint flags conjugate complex matrices as the gradients need."""
    x, y = op.inputs
    adj_x, adj_y = op.attrs["adj_x"], op.attrs["adj_y"]

    def gx(a, b, aa, ab):
        return product(scope, a, b, adj_x=aa, adj_y=ab, grad_x=True).output

    def gy(a, b, aa, ab):
        return product(scope, a, b, adj_x=aa, adj_y=ab, grad_y=True).output

    if not adj_x and not adj_y:
        return gx(grad, y, False, True), gy(x, grad, True, False)
    if not adj_x:
        return gx(grad, y, False, False), gy(grad, x, True, False)
    if not adj_y:
        return gx(y, grad, False, True), gy(x, grad, False, False)
    return gx(y, grad, True, True), gy(grad, x, True, True)


def _static_reduction_axes(batch: tuple, out_rank: int, out_batch: tuple) -> list[int]:
    """The batch axes of the broadcast result along which an operand with batch dims
    ``batch`` was repeated: the missing leading ones and its 1s that became larger."""
    pad = out_rank - len(batch)
    return [i for i in range(out_rank)
            if i < pad or (batch[i - pad] == 1 and out_batch[i] != 1)]


def _shape_vector(scope, t: Output):
    import ops  # noqa: PLC0415
    if t.shape.is_fully_defined():
        return ops.Const(scope, np.array(t.shape.dims, np.int32)).output
    return ops.Shape(scope, t).output


def _reduce_to(scope, grad: Output, t: Output, axes):
    """grad summed over ``axes`` (a list, or an int32 vector Output) and reshaped to t's."""
    import ops  # noqa: PLC0415
    if isinstance(axes, list):
        if not axes:
            return grad
        axes = ops.Const(scope, np.array(axes, np.int32))
    return ops.Reshape(scope, ops.Sum(scope, grad, axes), _shape_vector(scope, t)).output


@gradient("BatchMatMulV2")
def _batch_mat_mul_v2_grad(scope, op, grads):
    """TF's _BatchMatMulV2 grad: BatchMatMul's products, then each summed over the batch
    axes its operand was broadcast along and reshaped to the operand's shape."""
    import ops  # noqa: PLC0415
    x, y = op.inputs
    grad_x, grad_y = _batch_products(scope, op, grads[0], ops.BatchMatMulV2)
    sx, sy = x.shape, y.shape
    if sx.rank is not None and sy.rank is not None:
        bx, by = sx.dims[:-2], sy.dims[:-2]
        if not bx and not by:
            return [grad_x, grad_y]
        if None not in bx and None not in by:
            if bx == by:
                return [grad_x, grad_y]
            out_batch = tuple(np.broadcast_shapes(bx, by))
            n = len(out_batch)
            return [_reduce_to(scope, grad_x, x, _static_reduction_axes(bx, n, out_batch)),
                    _reduce_to(scope, grad_y, y, _static_reduction_axes(by, n, out_batch))]
    shape_x, shape_y = ops.Shape(scope, x), ops.Shape(scope, y)

    def batch(shape):
        return ops.Slice(scope, shape, [0],
                         ops.Reshape(scope, ops.Sub(scope, ops.Size(scope, shape), 2), [1]))

    rx, ry = ops.BroadcastGradientArgs(scope, batch(shape_x), batch(shape_y))
    return [_reduce_to(scope, grad_x, x, rx), _reduce_to(scope, grad_y, y, ry)]


BatchMatMul = declare(
    "BatchMatMul",
    inputs=_BATCH_INPUTS,
    outputs=["output: T"],
    attrs=["T: {bfloat16, half, float, double, int32, int64, complex64, complex128}",
           *_BATCH_ATTRS],
    shape_fn=_batch_matmul_shape,
    doc="BatchMatMulV2 without broadcasting: x and y have the same rank and the same batch "
        "dims.")


@gradient("BatchMatMul")
def _batch_mat_mul_grad(scope, op, grads):
    """TF's _BatchMatMul grad: the same products as BatchMatMulV2's; no broadcast to undo."""
    import ops  # noqa: PLC0415
    return list(_batch_products(scope, op, grads[0], ops.BatchMatMul))
