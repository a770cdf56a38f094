"""The CuPy backend's native table: op type -> ``factory(node, cpu_kernel) -> fn``.

Most rows run the CPU kernel itself on CuPy arrays: those kernels only use numpy functions
that CuPy implements, and numpy hands CuPy arrays to CuPy (NEP 13/18), so the algorithm is
written once and exercised by every CPU test. A kernel that does reach a numpy-only
construct raises TypeError on the GPU and its node falls back to host mode (see
``runtime/kernels/gpu/__init__.py``). Only the CuPy-specific rows import CuPy.
"""

from __future__ import annotations

import functools

__all__ = ["table", "SHARED_CODE_OPS"]

#: ops whose CPU kernels are written over numpy calls CuPy arrays dispatch to CuPy
SHARED_CODE_OPS = frozenset({
    # elementwise math (the CPU unary/binary tables are numpy ufuncs)
    "Abs", "Neg", "Square", "Sqrt", "Rsqrt", "Exp", "Expm1", "Log", "Log1p", "Sin", "Cos",
    "Tan", "Tanh", "Sigmoid", "Sign", "Floor", "Ceil", "Round", "Rint", "Reciprocal",
    "Add", "AddV2", "Sub", "Mul", "Div", "RealDiv", "DivNoNan", "Maximum", "Minimum", "Pow",
    "SquaredDifference", "FloorDiv", "FloorMod", "TruncateDiv", "Less", "LessEqual",
    "Greater", "GreaterEqual", "Equal", "NotEqual", "LogicalAnd", "LogicalOr", "LogicalNot",
    "SigmoidGrad", "TanhGrad", "RsqrtGrad", "SqrtGrad", "ReciprocalGrad", "AddN", "Select",
    "SelectV2", "Cast",
    # activations
    "Relu", "Relu6", "LeakyRelu", "Elu", "Selu", "Softplus", "Softsign", "Softmax",
    "LogSoftmax", "ReluGrad", "Relu6Grad", "LeakyReluGrad", "EluGrad", "SeluGrad",
    "SoftplusGrad", "SoftsignGrad",
    # reductions
    "Sum", "Prod", "Mean", "Max", "Min", "All", "Any", "ArgMax", "ArgMin", "Cumsum",
    "Cumprod",
    # matmul and nn
    "MatMul", "BatchMatMul", "BatchMatMulV2", "BiasAdd", "BiasAddV1", "BiasAddGrad",
    "L2Loss",
    # layout
    "Identity", "StopGradient", "Reshape", "Transpose", "ExpandDims", "Squeeze",
    "BroadcastTo", "ZerosLike", "OnesLike", "Shape", "ShapeN", "Rank", "Size",
})


def _shared(node, cpu_kernel):
    return cpu_kernel.compute


@functools.cache
def table() -> dict:
    rows = dict.fromkeys(SHARED_CODE_OPS, _shared)
    try:
        from runtime.kernels.gpu import cupy_conv  # noqa: PLC0415  (needs CuPy)
    except ImportError:
        return rows
    rows.update(cupy_conv.TABLE)
    return rows
