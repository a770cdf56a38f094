"""Which tensors of a pruned graph carry the batch dimension, and which mix batch elements.

    states = analyse(pruned_ops, {x: BatchState.batch(0), lr: REPLICATED})
    states[y]          # BatchState(kind='batch', axis=0) / 'sum' / 'mean' / 'mixed' ...

A batch-sharded Run splits dimension 0 of the fed batch tensors into shards and runs the
whole graph once per shard. That is exact only for tensors computed row by row. Every tensor
gets one state, propagated in topological order by a per-op rule table:

``replicated``
    does not depend on the batch: the same on every shard.
``batch`` (with ``axis``)
    has the batch along ``axis``; the full result is the shards' results concatenated there.
``sum`` / ``mean`` / ``max`` / ``min`` / ``prod``
    a reduction over the batch (Sum or Mean over axis 0, MatMul contracting the batch,
    BiasAddGrad, L2Loss, ...): each shard holds a partial result and the full one is their
    *combine*: the sum, the count-weighted mean (weights rows_s / rows), the maximum... Only a
    fetched output (or the input of a variable update) can be combined; an op that consumes
    a partial result, other than a few linear ones (Identity, Neg, Mul/Div by a replicated
    value, Add of partials of the same kind, Sum/Mean over other axes), mixes the batch.
``shape``
    the shape vector of a batch tensor (``Shape(x)``): differs per shard only at ``axis``.
``mixed``
    mixes batch elements in a way shards cannot reproduce (FusedBatchNorm in training mode,
    a Reshape that moves the batch, concatenation along the batch, a random op, ...). The
    state keeps a one-sentence ``reason`` naming the op; a Run that needs it is refused
    before anything is sent.

Ops whose inputs are all replicated are replicated whatever their type. An op without a rule
whose input carries the batch is ``mixed`` ("has no batch-sharding rule"): new ops are safe by
default and declare their rule with ``@batch_rule("OpType")``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import attrs
import numpy as np

from opgraph import errors
from opgraph.graph import Operation, Output

__all__ = ["BatchState", "REPLICATED", "COMBINE_KINDS", "BatchShardingError", "analyse",
           "batch_rule", "is_update_op", "is_random_op", "gradient_state", "in_gradient_scope"]

REPLICATED_KIND, BATCH, SHAPE, MIXED = "replicated", "batch", "shape", "mixed"
SUM, MEAN, MAX, MIN, PROD = "sum", "mean", "max", "min", "prod"
#: kinds whose shard results combine into the full result
COMBINE_KINDS = (SUM, MEAN, MAX, MIN, PROD)


class BatchShardingError(errors.InvalidArgumentError):
    """A graph (or Run) that batch sharding cannot run exactly; says which op and why."""


@attrs.frozen
class BatchState:
    """The batch state of one tensor (see the module doc)."""

    kind: str
    axis: int | None = None
    origin: str | None = None       # the op that reduced or mixed the batch
    reason: str | None = None       # for kind 'mixed': one sentence naming the op

    @classmethod
    def batch(cls, axis: int = 0) -> BatchState:
        return cls(BATCH, axis)

    @property
    def is_replicated(self) -> bool:
        return self.kind == REPLICATED_KIND

    @property
    def combinable(self) -> bool:
        """Shard values of this tensor combine into the full value (concat, sum, ...)."""
        return self.kind not in (MIXED, REPLICATED_KIND)

    def describe(self) -> str:
        if self.kind == BATCH:
            return f"batch along axis {self.axis} (concatenated)"
        if self.kind == SHAPE:
            return f"shape of a batch tensor (element {self.axis} summed)"
        if self.kind == MEAN:
            return f"mean over the batch from '{self.origin}' (count-weighted mean of shards)"
        if self.kind in COMBINE_KINDS:
            return f"{self.kind} over the batch from '{self.origin}' ({self.kind} of shards)"
        if self.kind == MIXED:
            return f"refused: {self.reason}"
        return "replicated (no batch dependency)"


REPLICATED = BatchState(REPLICATED_KIND)
_Rule = Callable[[Operation, list], "BatchState | list[BatchState]"]
_RULES: dict[str, _Rule] = {}
_COMBINE_RULES: dict[str, _Rule] = {}

UPDATE_OPS = {"Assign", "AssignAdd", "AssignSub"}
_GRADIENT_SCOPE = re.compile(r"(^|/)gradients(_[0-9]+)?/")


def batch_rule(*op_types: str, combine: bool = False):
    """Register ``rule(op, input_states) -> state | [state per output]`` for ``op_types``.

    The rule is called when some input carries the batch (``batch`` or ``shape``) and none
    is mixed; with ``combine=True`` it is called when an input is a partial result (sum,
    mean, ...) instead.
    """
    table = _COMBINE_RULES if combine else _RULES

    def deco(fn):
        for t in op_types:
            table[t] = fn
        return fn
    return deco


def is_update_op(op: Operation) -> bool:
    """A variable update (Assign*, Apply*): must run once, on the parameter holder."""
    return op.type in UPDATE_OPS or (op.op_def.stateful and (
        op.type.startswith(("Apply", "ResourceApply", "Scatter")) or "Assign" in op.type))


def is_random_op(op: Operation) -> bool:
    return op.op_def.stateful and op.type != "VariableV2" and not is_update_op(op) \
        and op.type not in ("IsVariableInitialized", "VarIsInitializedOp")


def in_gradient_scope(op: Operation) -> bool:
    """Built by AddSymbolicGradients (under a ``gradients`` name scope)."""
    return _GRADIENT_SCOPE.search(op.name + "/") is not None


def mixed(op: Operation, why: str) -> BatchState:
    """The 'mixed' state caused by ``op``; ``why`` completes "'<op>' (<type>) ..."."""
    return BatchState(MIXED, origin=op.name, reason=f"'{op.name}' ({op.type}) {why}")


def _partial(op: Operation, kind: str) -> BatchState:
    return BatchState(kind, origin=op.name)


def analyse(ops, feed_states: dict[Output, BatchState]) -> dict[Output, BatchState]:
    """The state of every output of ``ops`` (topologically sorted, e.g. executor.prune's
    result) and of every fed tensor; fed tensors keep the state given in ``feed_states``."""
    states: dict[Output, BatchState] = dict(feed_states)
    for op in ops:
        outs = op.outputs
        if all(o in feed_states for o in outs):
            continue
        result = _op_states(op, [states.get(i, REPLICATED) for i in op.inputs])
        if isinstance(result, BatchState):
            result = [result] * len(outs)
        for o, s in zip(outs, result):
            if o not in feed_states:
                states[o] = s
    return states


def _op_states(op: Operation, ins: list):
    first_mixed = next((s for s in ins if s.kind == MIXED), None)
    if first_mixed is not None:
        return first_mixed
    if is_random_op(op):
        return mixed(op, "draws random numbers: each shard would draw its own, unlike one "
                         "session over the whole batch")
    if all(s.is_replicated for s in ins):
        if is_update_op(op):
            return mixed(op, "updates a variable: it runs once on the parameter holder, so "
                             "its result is not available on the shards")
        return REPLICATED
    if is_update_op(op):
        return mixed(op, "updates a variable from a value computed from the batch")
    partial = next((s for s in ins if s.kind in COMBINE_KINDS), None)
    if partial is not None:
        rule = _COMBINE_RULES.get(op.type)
        result = rule(op, ins) if rule is not None else None
        if result is None:
            why = (f"consumes '{partial.origin}', a {partial.kind} over the batch that exists "
                   f"only once the shards are combined; only a fetched output can be "
                   f"combined")
            return mixed(op, why)
        return result
    rule = _RULES.get(op.type)
    if rule is None:
        return mixed(op, "has no batch-sharding rule, and an input carries the batch")
    return rule(op, ins)


# ---- helpers ------------------------------------------------------------------------------
def _const(out: Output):
    """The build-time value of ``out`` as an ndarray, or None."""
    vals = out.op.output_values
    v = vals[out.index] if vals else None
    return v if isinstance(v, np.ndarray) else None


def _is_inexact(dtype) -> bool:
    return dtype is not None and (dtype.is_floating or dtype.name.startswith("complex"))


def _rank(out: Output) -> int | None:
    return out.shape.rank


def _axes(op: Operation, i: int, rank: int):
    """Input ``i`` of ``op`` as a sorted list of axes in [0, rank), or None if unknown."""
    v = _const(op.inputs[i])
    if v is None:
        return None
    return sorted({int(a) % rank for a in np.ravel(v)}) if rank else []


def _single_batch(op, ins, slot: int = 0):
    """The batch axis of input ``slot`` when it is the only batch input, else a 'mixed'."""
    s = ins[slot]
    if s.kind != BATCH:
        return mixed(op, f"uses the batch in input {slot} in a way that has no sharding rule")
    for i, t in enumerate(ins):
        if i != slot and not t.is_replicated:
            return mixed(op, f"combines the batch of input {slot} with input {i} "
                             f"('{op.inputs[i].name}'), which also depends on the batch")
    if _rank(op.inputs[slot]) is None:
        return mixed(op, "has an input of unknown rank, so the batch axis cannot be tracked")
    return s.axis


# ---- elementwise and broadcasting ---------------------------------------------------------
_UNARY = (
    "Abs", "Ceil", "Conj", "Cos", "Elu", "Erf", "Exp", "Expm1", "Floor", "Identity", "Inv",
    "LeakyRelu", "Log", "Log1p", "LogicalNot", "Neg", "OnesLike", "ZerosLike", "Reciprocal",
    "Relu", "Relu6", "Round", "Rsqrt", "Selu", "Sigmoid", "Sign", "Sin", "Softplus",
    "Softsign", "Sqrt", "Square", "StopGradient", "Tanh", "Cast", "Snapshot",
    "PlaceholderWithDefault", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "IsNan",
    "IsInf", "IsFinite", "Lgamma", "Digamma", "Rint", "CheckNumerics",
)
_BROADCASTING = (
    "Add", "AddV2", "Sub", "Mul", "Div", "RealDiv", "DivNoNan", "FloorDiv", "FloorMod",
    "Maximum", "Minimum", "Pow", "SquaredDifference", "Equal", "NotEqual", "Greater",
    "GreaterEqual", "Less", "LessEqual", "LogicalAnd", "LogicalOr", "TruncateDiv",
    "TruncateMod", "Atan2", "MulNoNan", "Xdivy", "Xlogy", "SelectV2", "ClipByValue",
    "AddN", "EluGrad", "ReluGrad", "Relu6Grad", "LeakyReluGrad", "SeluGrad", "SigmoidGrad",
    "SoftplusGrad", "SoftsignGrad", "TanhGrad", "SqrtGrad", "RsqrtGrad", "ReciprocalGrad",
)


@batch_rule(*_UNARY)
def _unary(op, ins):
    if ins[0].kind == SHAPE and op.type not in ("Identity", "StopGradient", "Snapshot"):
        return mixed(op, "computes with the shape of a batch tensor, which differs per shard")
    return ins[0]


@batch_rule(*_BROADCASTING)
def _broadcast(op, ins):
    ranks = [_rank(o) for o in op.inputs]
    if any(s.kind == SHAPE for s in ins):
        return mixed(op, "computes with the shape of a batch tensor, which differs per shard")
    if any(r is None for r in ranks):
        return mixed(op, "has an input of unknown rank, so it cannot tell how the batch "
                         "dimension broadcasts")
    out_rank = max(ranks)
    axis = None
    for i, (s, r) in enumerate(zip(ins, ranks)):
        if s.kind == BATCH:
            a = s.axis + out_rank - r
            if axis is not None and a != axis:
                return mixed(op, "pairs the batch of one input with another axis of a second "
                                 "batch input")
            axis = a
    for i, (s, r) in enumerate(zip(ins, ranks)):
        d = axis - (out_rank - r)
        if s.is_replicated and d >= 0:
            dim = op.inputs[i].shape.dims[d]
            if dim != 1:
                size = "of unknown size" if dim is None else f"of size {dim}"
                return mixed(op, f"broadcasts input {i} ('{op.inputs[i].name}') along the batch: "
                                 f"its dim {d} is {size}, not 1, so a shard cannot split it")
    return BatchState.batch(axis)


@batch_rule("Select")
def _select(op, ins):
    cond, t = op.inputs[0], op.inputs[1]
    if _rank(cond) == 1 and (_rank(t) or 0) > 1:       # a vector choosing whole rows
        if all(s.kind == BATCH and s.axis == 0 for s in ins):
            return BatchState.batch(0)
        return mixed(op, "chooses rows with a condition vector that is not split like its "
                         "inputs")
    return _broadcast(op, ins)


@batch_rule("BiasAdd", "BiasAddV1")
def _bias_add(op, ins):
    axis = _single_batch(op, ins, 0)
    if isinstance(axis, BatchState):
        return axis
    rank = _rank(op.inputs[0])
    fmt = op.attrs.get("data_format", "NHWC")
    channel = 1 if fmt.startswith("NC") and rank > 2 else rank - 1
    if axis == channel:
        return mixed(op, "adds the bias along the batch axis")
    return BatchState.batch(axis)


@batch_rule("IdentityN")
def _identity_n(op, ins):
    return list(ins)


# ---- per-example ops: batch at axis 0 in, batch at axis 0 out -----------------------------
def _per_example(batch_slots, shape_slots=(), outputs=None):
    """Inputs in ``batch_slots`` carry the batch at axis 0, those in ``shape_slots`` are the
    shape of such a tensor, every other input is replicated; ``outputs`` gives each output's
    kind (default: all batch at axis 0)."""
    def rule(op, ins):
        for i, s in enumerate(ins):
            name = op.op_def.inputs[min(i, len(op.op_def.inputs) - 1)].name
            if i in batch_slots:
                ok = s.kind == BATCH and s.axis == 0
                want = "the batch along axis 0"
            elif i in shape_slots:
                ok = s.kind == SHAPE and s.axis == 0
                want = "the shape of a batch tensor"
            else:
                ok, want = s.is_replicated, "no batch dependency"
            if not ok:
                got = "none" if s.is_replicated else s.describe()
                return mixed(op, f"needs {want} in input '{name}' but it has {got}")
        kinds = outputs or (BATCH,) * op.num_outputs
        return [BatchState.batch(0) if k == BATCH else _partial(op, k) if k in COMBINE_KINDS
                else REPLICATED for k in kinds]
    return rule


batch_rule("Conv2D", "DepthwiseConv2dNative", "MaxPool", "AvgPool", "Conv3D",
           "MaxPool3D", "AvgPool3D", "Dilation2D")(_per_example({0}))
batch_rule("Conv2DBackpropInputV2")(_per_example({0, 2}))
batch_rule("Conv2DBackpropInput", "DepthwiseConv2dNativeBackpropInput")(
    _per_example({2}, {0}))
batch_rule("MaxPoolGrad", "MaxPoolGradGrad", "LRNGrad")(_per_example({0, 1, 2}))
batch_rule("SoftmaxCrossEntropyWithLogits",
           "SparseSoftmaxCrossEntropyWithLogits")(_per_example({0, 1}))
batch_rule("InTopK", "InTopKV2")(_per_example({0, 1}))
batch_rule("Conv2DBackpropFilter", "Conv2DBackpropFilterV2",
           "DepthwiseConv2dNativeBackpropFilter")(_per_example({0, 2}, outputs=(SUM,)))
batch_rule("UnsortedSegmentSum")(_per_example({0, 1}, outputs=(SUM,)))
batch_rule("AvgPoolGrad")(_per_example({1}, {0}))


@batch_rule("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
def _fused_batch_norm(op, ins):
    if op.attrs.get("is_training", True):
        return mixed(op, "in training mode normalises with the mean and variance of the "
                         "whole batch, which no shard has; build it with is_training=False "
                         "or shard by whole batches")
    return _per_example({0}, outputs=(BATCH,) + (REPLICATED_KIND,) * (op.num_outputs - 1))(
        op, ins)


@batch_rule("FusedBatchNormGrad", "FusedBatchNormGradV2", "FusedBatchNormGradV3")
def _fused_batch_norm_grad(op, ins):
    if op.attrs.get("is_training", True):
        return mixed(op, "(training mode) differentiates through the batch's mean and "
                         "variance, which no shard has")
    kinds = (BATCH, SUM, SUM) + (REPLICATED_KIND,) * (op.num_outputs - 3)
    return _per_example({0, 1}, outputs=kinds)(op, ins)


@batch_rule("BiasAddGrad")
def _bias_add_grad(op, ins):
    axis = _single_batch(op, ins, 0)
    if isinstance(axis, BatchState):
        return axis
    rank = _rank(op.inputs[0])
    channel = 1 if op.attrs.get("data_format", "NHWC").startswith("NC") and rank > 2 \
        else rank - 1
    if axis == channel:
        return BatchState.batch(0)
    return _partial(op, SUM)


@batch_rule("L2Loss")
def _l2_loss(op, ins):
    return _partial(op, SUM) if ins[0].kind == BATCH else \
        mixed(op, "squares the shape of a batch tensor")


# ---- reductions ---------------------------------------------------------------------------
_REDUCTION_COMBINE = {"Sum": SUM, "Mean": MEAN, "Max": MAX, "Min": MIN, "Prod": PROD,
                      "All": MIN, "Any": MAX, "EuclideanNorm": None}


@batch_rule(*_REDUCTION_COMBINE)
def _reduction(op, ins):
    axis = _single_batch(op, ins, 0)
    if isinstance(axis, BatchState):
        return axis
    rank = _rank(op.inputs[0])
    axes = _axes(op, 1, rank)
    if axes is None:
        return mixed(op, "reduces over axes that are not known at build time, so it may "
                         "reduce over the batch")
    if axis in axes:
        kind = _REDUCTION_COMBINE[op.type]
        if kind is None:
            return mixed(op, "reduces over the batch in a way shard results cannot combine")
        dtype = op.inputs[0].dtype
        if kind == MEAN and not (_is_inexact(dtype)):
            return mixed(op, f"takes an integer ({dtype.name}) mean over the batch: each "
                             f"shard would truncate its own mean")
        return _partial(op, kind)
    keep = op.attrs.get("keep_dims", False)
    return BatchState.batch(axis if keep else axis - sum(a < axis for a in axes))


@batch_rule("ArgMax", "ArgMin")
def _arg_reduction(op, ins):
    axis = _single_batch(op, ins, 0)
    if isinstance(axis, BatchState):
        return axis
    rank = _rank(op.inputs[0])
    axes = _axes(op, 1, rank)
    if axes is None or axis in axes:
        return mixed(op, "picks an index along the batch (or along axes unknown at build "
                         "time)")
    return BatchState.batch(axis - (axes[0] < axis))


# ---- matrix products ----------------------------------------------------------------------
@batch_rule("MatMul")
def _matmul(op, ins):
    a, b = ins
    ta, tb = op.attrs.get("transpose_a", False), op.attrs.get("transpose_b", False)
    a_rows, a_inner = (1, 0) if ta else (0, 1)
    b_inner, b_cols = (1, 0) if tb else (0, 1)
    if SHAPE in (a.kind, b.kind):
        return mixed(op, "multiplies the shape of a batch tensor")
    if a.kind == BATCH and b.kind == BATCH:
        if a.axis == a_inner and b.axis == b_inner:
            return _partial(op, SUM)          # contracts over the batch: sum of partials
        return mixed(op, "multiplies batch elements of 'a' with batch elements of 'b' (an "
                         "outer product over the batch)")
    if a.kind == BATCH:
        if a.axis == a_rows:
            return BatchState.batch(0)
        return mixed(op, "contracts the batch of 'a' against 'b', which is not split by the "
                         "batch")
    if b.axis == b_cols:
        return BatchState.batch(1)
    return mixed(op, "contracts the batch of 'b' against 'a', which is not split by the batch")


@batch_rule("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")
def _batch_matmul(op, ins):
    ranks = [_rank(o) for o in op.inputs]
    if None in ranks or any(s.kind == SHAPE for s in ins):
        return mixed(op, "has an input of unknown rank (or a shape input), so the batch axis "
                         "cannot be tracked")
    out_rank = max(ranks)
    adj = (op.attrs.get("adj_x", False), op.attrs.get("adj_y", False))
    roles = []
    for k, (s, r) in enumerate(zip(ins, ranks)):
        if s.kind != BATCH:
            roles.append(None)
        elif s.axis < r - 2:
            roles.append(("lead", s.axis + out_rank - r))
        else:
            rows = (r - 1 if adj[k] else r - 2) if k == 0 else (r - 2 if adj[k] else r - 1)
            roles.append(("rows" if s.axis == rows else "inner", None))
    if all(x is None or x[0] == "lead" for x in roles):
        axes = {x[1] for x in roles if x is not None}
        if len(axes) == 1:
            axis = axes.pop()
            for k, (s, r) in enumerate(zip(ins, ranks)):
                d = axis - (out_rank - r)
                if s.is_replicated and 0 <= d < r - 2 and op.inputs[k].shape.dims[d] != 1:
                    return mixed(op, "broadcasts a replicated input along the batch")
            return BatchState.batch(axis)
    if roles[0] == ("inner", None) and roles[1] == ("inner", None):
        return _partial(op, SUM)
    if roles[0] == ("rows", None) and roles[1] is None and ranks[1] == 2:
        return BatchState.batch(out_rank - 2)
    if roles[1] == ("rows", None) and roles[0] is None and ranks[0] == 2:
        return BatchState.batch(out_rank - 1)
    return mixed(op, "pairs or contracts batch elements in a way shards cannot reproduce")


# ---- structural ops -----------------------------------------------------------------------
@batch_rule("Reshape")
def _reshape(op, ins):
    t, s = ins
    if t.kind == BATCH and s.kind == SHAPE and t.axis == 0 and s.axis == 0:
        return BatchState.batch(0)      # Reshape(x, Shape(y)): y's rows are x's rows
    axis = _single_batch(op, ins, 0)
    if isinstance(axis, BatchState):
        return axis
    shape = _const(op.inputs[1])
    if shape is None:
        return mixed(op, "reshapes to a shape not known at build time, which may move the "
                         "batch")
    shape = [int(d) for d in np.ravel(shape)]
    dims = op.inputs[0].shape.dims
    per_row = dims[1:] if axis == 0 else None
    if axis != 0 or not shape or shape[0] != -1 or any(d < 0 for d in shape[1:]) or \
            None in per_row or int(np.prod(per_row)) != int(np.prod(shape[1:])):
        if shape and shape[0] >= 0 and axis == 0:
            why = (f"reshapes to {shape}, fixing the batch size at {shape[0]}; use -1 for "
                   f"dimension 0 so each shard keeps its rows")
        else:
            why = (f"moves the batch: the new shape {shape} does not keep dimension 0 as the "
                   f"batch with each example's {'?' if per_row is None else list(per_row)} "
                   f"elements")
        return mixed(op, why)
    return BatchState.batch(0)


@batch_rule("Transpose")
def _transpose(op, ins):
    axis = _single_batch(op, ins, 0)
    if isinstance(axis, BatchState):
        return axis
    perm = _const(op.inputs[1])
    if perm is None:
        return mixed(op, "uses a permutation not known at build time")
    rank = _rank(op.inputs[0])
    perm = [int(p) % rank for p in np.ravel(perm)]
    return BatchState.batch(perm.index(axis))


@batch_rule("ExpandDims")
def _expand_dims(op, ins):
    axis = _single_batch(op, ins, 0)
    if isinstance(axis, BatchState):
        return axis
    d = _const(op.inputs[1])
    if d is None:
        return mixed(op, "inserts an axis not known at build time")
    d = int(np.ravel(d)[0]) % (_rank(op.inputs[0]) + 1)
    return BatchState.batch(axis + 1 if d <= axis else axis)


@batch_rule("Squeeze")
def _squeeze(op, ins):
    axis = _single_batch(op, ins, 0)
    if isinstance(axis, BatchState):
        return axis
    rank = _rank(op.inputs[0])
    dims = [int(d) % rank for d in op.attrs.get("squeeze_dims", ())]
    if not dims:
        return mixed(op, "squeezes every size-1 dimension, which would drop the batch of a "
                         "1-row shard; list squeeze_dims")
    if axis in dims:
        return mixed(op, "squeezes the batch dimension")
    return BatchState.batch(axis - sum(d < axis for d in dims))


@batch_rule("Pack")
def _pack(op, ins):
    if not all(s.kind == BATCH for s in ins) or len({s.axis for s in ins}) != 1 or \
            _rank(op.inputs[0]) is None:
        return mixed(op, "stacks batch tensors with tensors that are not split the same way")
    axis = ins[0].axis
    p = op.attrs.get("axis", 0) % (_rank(op.inputs[0]) + 1)
    return BatchState.batch(axis + 1 if p <= axis else axis)


@batch_rule("Unpack")
def _unpack(op, ins):
    axis = _single_batch(op, ins, 0)
    if isinstance(axis, BatchState):
        return axis
    p = op.attrs.get("axis", 0) % _rank(op.inputs[0])
    if p == axis:
        return mixed(op, "unstacks along the batch")
    return BatchState.batch(axis - (p < axis))


@batch_rule("ConcatV2")
def _concat(op, ins):
    values, axis_in = ins[:-1], ins[-1]
    if not axis_in.is_replicated or not all(s.kind == BATCH for s in values) or \
            len({s.axis for s in values}) != 1:
        return mixed(op, "concatenates batch tensors with tensors that are not split the "
                         "same way")
    c = _const(op.inputs[-1])
    rank = _rank(op.inputs[0])
    if c is None or rank is None:
        return mixed(op, "concatenates along an axis not known at build time")
    if int(np.ravel(c)[0]) % rank == values[0].axis:
        return mixed(op, "concatenates along the batch axis: the shards' pieces would "
                         "interleave")
    return BatchState.batch(values[0].axis)


def _axis_excluded(slot: int, axis_slot: int | None = None):
    """Ops acting along some axes of input ``slot`` (given by the constant input
    ``axis_slot``, or the last axis when None): exact when the batch axis is not one of them."""
    def rule(op, ins):
        axis = _single_batch(op, ins, slot)
        if isinstance(axis, BatchState):
            return axis
        rank = _rank(op.inputs[slot])
        if axis_slot is None:
            along = [rank - 1]
        else:
            along = _axes(op, axis_slot, rank)
            if along is None:
                return mixed(op, "acts along axes not known at build time")
        if axis in along:
            return mixed(op, "acts along the batch axis, across examples")
        return BatchState.batch(axis)
    return rule


batch_rule("Softmax", "LogSoftmax", "LRN", "TopKV2")(_axis_excluded(0))
batch_rule("Cumsum", "Cumprod", "ReverseV2")(_axis_excluded(0, 1))
batch_rule("Split")(_axis_excluded(1, 0))
batch_rule("SplitV")(_axis_excluded(0, 2))


@batch_rule("Pad", "PadV2", "MirrorPad")
def _pad(op, ins):
    axis = _single_batch(op, ins, 0)
    if isinstance(axis, BatchState):
        return axis
    pads = _const(op.inputs[1])
    if pads is None:
        return mixed(op, "pads by amounts not known at build time")
    if np.any(np.asarray(pads).reshape(-1, 2)[axis] != 0):
        return mixed(op, "pads the batch dimension")
    return BatchState.batch(axis)


@batch_rule("Tile")
def _tile(op, ins):
    axis = _single_batch(op, ins, 0)
    if isinstance(axis, BatchState):
        return axis
    mult = _const(op.inputs[1])
    if mult is None or int(np.ravel(mult)[axis]) != 1:
        return mixed(op, "tiles along the batch (or by multiples not known at build time)")
    return BatchState.batch(axis)


@batch_rule("Slice")
def _slice(op, ins):
    axis = _single_batch(op, ins, 0)
    if isinstance(axis, BatchState):
        return axis
    begin, size = _const(op.inputs[1]), _const(op.inputs[2])
    if begin is None or size is None or int(np.ravel(begin)[axis]) != 0 or \
            int(np.ravel(size)[axis]) != -1:
        return mixed(op, "slices the batch dimension (only begin 0, size -1 keeps it)")
    return BatchState.batch(axis)


@batch_rule("StridedSlice")
def _strided_slice(op, ins):
    axis = _single_batch(op, ins, 0)
    if isinstance(axis, BatchState):
        return axis
    a = op.attrs
    if a.get("ellipsis_mask", 0) or a.get("new_axis_mask", 0):
        return mixed(op, "uses an ellipsis or new-axis mask, which batch tracking does not "
                         "follow")
    begin, end, strides = (_const(op.inputs[i]) for i in (1, 2, 3))
    if begin is None or end is None or strides is None:
        return mixed(op, "slices with bounds not known at build time")
    n = len(np.ravel(begin))
    shrink = a.get("shrink_axis_mask", 0)
    if axis < n:
        bit = 1 << axis
        full = ((a.get("begin_mask", 0) & bit) or int(np.ravel(begin)[axis]) == 0) and \
            (a.get("end_mask", 0) & bit) and int(np.ravel(strides)[axis]) == 1 and \
            not shrink & bit
        if not full:
            return mixed(op, "slices the batch dimension (only a full ':' slice keeps it)")
    return BatchState.batch(axis - sum(1 for k in range(min(axis, n)) if shrink >> k & 1))


@batch_rule("GatherV2")
def _gather(op, ins):
    params, indices, ax = ins
    if op.attrs.get("batch_dims", 0) or not ax.is_replicated:
        return mixed(op, "gathers with batch_dims or a computed axis")
    g = _const(op.inputs[2])
    prank, irank = _rank(op.inputs[0]), _rank(op.inputs[1])
    if g is None or prank is None or irank is None:
        return mixed(op, "gathers along an axis (or with ranks) not known at build time")
    g = int(np.ravel(g)[0]) % prank
    if params.kind == BATCH and indices.is_replicated and params.axis != g:
        axis = params.axis
        return BatchState.batch(axis if axis < g else axis + irank - 1)
    if params.is_replicated and indices.kind == BATCH:
        return BatchState.batch(g + indices.axis)
    return mixed(op, "gathers along the batch axis, picking elements across examples")


@batch_rule("GatherNd")
def _gather_nd(op, ins):
    params, indices = ins
    irank = _rank(op.inputs[1])
    if params.is_replicated and indices.kind == BATCH and irank is not None and \
            indices.axis < irank - 1:
        return BatchState.batch(indices.axis)
    return mixed(op, "gathers elements across examples of the batch")


@batch_rule("OneHot")
def _one_hot(op, ins):
    axis = _single_batch(op, ins, 0)
    if isinstance(axis, BatchState):
        return axis
    p = op.attrs.get("axis", -1)
    p = _rank(op.inputs[0]) if p == -1 else p
    return BatchState.batch(axis + 1 if p <= axis else axis)


@batch_rule("Shape", "ShapeN")
def _shape(op, ins):
    return [BatchState(SHAPE, s.axis) if s.kind == BATCH else
            mixed(op, "takes the shape of a shape-of-batch tensor") if s.kind == SHAPE
            else REPLICATED for s in ins]


@batch_rule("Size")
def _size(op, ins):
    return _partial(op, SUM) if ins[0].kind == BATCH else \
        mixed(op, "takes the size of a shape-of-batch tensor")


@batch_rule("Rank")
def _rank_rule(op, ins):
    return REPLICATED


@batch_rule("Fill", "BroadcastTo")
def _fill(op, ins):
    shape_slot, value_slot = (0, 1) if op.type == "Fill" else (1, 0)
    s, v = ins[shape_slot], ins[value_slot]
    if s.kind == SHAPE and s.axis == 0 and (v.is_replicated or (
            v.kind == BATCH and v.axis == 0 and op.type == "BroadcastTo")):
        return BatchState.batch(0)
    return mixed(op, "builds a tensor whose shape is not the shape of a batch tensor")


# ---- partial results (sum, mean, ...) through linear ops ----------------------------------
_STRUCTURAL = ("Identity", "StopGradient", "Snapshot", "Reshape", "Transpose",
               "ExpandDims", "Squeeze", "PlaceholderWithDefault")


def _partials(ins):
    return [s for s in ins if s.kind in COMBINE_KINDS]


def _same_partial(ins):
    parts = _partials(ins)
    kinds = {s.kind for s in parts}
    return parts[0] if len(kinds) == 1 else None


@batch_rule(*_STRUCTURAL, combine=True)
def _structural_partial(op, ins):
    if not all(s.is_replicated for s in ins[1:]):
        return None
    return ins[0] if ins[0].kind in COMBINE_KINDS else None


@batch_rule("Sum", "Mean", "Neg", "Max", "Min", "Prod", combine=True)
def _linear_partial(op, ins):
    s = ins[0]
    if s.kind not in COMBINE_KINDS or not all(t.is_replicated for t in ins[1:]):
        return None
    ok = {"Sum": (SUM, MEAN), "Mean": (SUM, MEAN), "Neg": (SUM, MEAN), "Max": (MAX,),
          "Min": (MIN,), "Prod": (PROD,)}[op.type]
    return s if s.kind in ok else None


@batch_rule("Mul", "RealDiv", "Div", combine=True)
def _scaled_partial(op, ins):
    x, y = ins
    dtype = op.outputs[0].dtype
    if not (_is_inexact(dtype)):
        return None
    if x.kind in (SUM, MEAN) and y.is_replicated:
        return x
    if op.type == "Mul" and y.kind in (SUM, MEAN) and x.is_replicated:
        return y
    return None


@batch_rule("Add", "AddV2", "Sub", "AddN", combine=True)
def _added_partials(op, ins):
    dtype = op.outputs[0].dtype
    if not (_is_inexact(dtype)):
        return None
    part = _same_partial(ins)
    if part is None or part.kind not in (SUM, MEAN):
        return None
    if any(s.kind not in (part.kind, REPLICATED_KIND) for s in ins):
        return None
    if part.kind == SUM and any(s.is_replicated for s in ins):
        return None          # a constant added to a sum would be counted once per shard
    return part


# ---- training -----------------------------------------------------------------------------
def _ancestors(outs) -> dict[str, Operation]:
    seen: dict[str, Operation] = {}
    stack = [o.op for o in outs]
    while stack:
        op = stack.pop()
        if op.name not in seen:
            seen[op.name] = op
            stack.extend(i.op for i in op.inputs)
    return seen


def find_losses(grad: Output) -> list[Output]:
    """The losses AddSymbolicGradients differentiated to build ``grad``: the inputs of the
    ``OnesLike`` seeds among its ancestors, less those that are themselves ancestors of
    another seed's input (a gradient function's own OnesLike of a forward tensor)."""
    anc = _ancestors([grad])
    seeds = [op.inputs[0] for op in anc.values()
             if op.type == "OnesLike" and in_gradient_scope(op)
             and not in_gradient_scope(op.inputs[0].op)]
    seeds = list(dict.fromkeys(seeds))
    losses = []
    for y in seeds:
        if not any(y.op.name in _ancestors([z]) for z in seeds if z != y):
            losses.append(y)
    return losses


def gradient_state(grad: Output, states: dict, losses=None) -> BatchState:
    """How the shard values of gradient ``grad`` combine into the whole batch's gradient.

    The gradient is linear in its loss: if the whole batch's loss is the sum of the shards'
    losses, so is its gradient; if it is their count-weighted mean (Mean over the batch, plus
    terms that do not depend on the batch), so is the gradient. ``losses`` (default: found
    from the gradient's seeds) must each be such a sum or mean, or a per-example vector
    (whose implicit seed of ones sums it).
    """
    if not in_gradient_scope(grad.op):
        return mixed(grad.op, "is not a gradient built by AddSymbolicGradients, so its shard "
                              "values cannot be combined through a loss")
    if losses is None:
        losses = find_losses(grad)
    else:
        anc = _ancestors([grad])
        losses = [y for y in losses if y.op.name in anc]
    if not losses:
        return mixed(grad.op, "is a gradient whose loss could not be found; pass loss= to "
                              "DistributedSession")
    kinds = set()
    for y in losses:
        s = states.get(y)
        if s is None:
            return mixed(y.op, "is the loss of a gradient but was not analysed")
        if s.kind == MIXED:
            return BatchState(MIXED, origin=s.origin,
                              reason=f"the loss '{y.name}' cannot be split by the batch: "
                                     f"{s.reason}")
        if s.kind == BATCH:
            kinds.add(SUM)
        elif s.kind in (SUM, MEAN):
            kinds.add(s.kind)
        elif not s.is_replicated:
            return mixed(y.op, f"is a loss that is a {s.kind} over the batch; only sums and "
                               f"means have gradients that combine across shards")
    if len(kinds) != 1:
        return mixed(grad.op, "is the gradient of losses that mix sums and means over the "
                              "batch")
    return BatchState(kinds.pop(), origin=", ".join(y.op.name for y in losses))
