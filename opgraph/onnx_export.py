"""ONNX export (optional extra ``onnx``): ``export(scope, fetches, path, feeds=None, opset=17)``.

    >>> model = export(root, [probs], "model.onnx")            # passes onnx.checker
    >>> # onnxruntime.InferenceSession("model.onnx").run(None, {"x:0": x})

The ops needed for ``fetches`` are mapped one by one to ONNX nodes; ONNX value names are the
TF tensor names (``conv1:0``) and node names the op names, so the model reads like the graph
in Netron. Placeholders (or the ``feeds`` given) become the graph inputs, Consts
initializers. NHWC convolutions and pools are wrapped in Transposes. Conv2DBackpropInput and
Conv2DBackpropInputV2 become ConvTranspose with TF's exact geometry: per spatial dim the
forward conv's pad before (SAME's smaller half, VALID's 0, EXPLICIT's own) is the
ConvTranspose's begin pad, and the rows the forward conv never reached (VALID/SAME rows past
the last window: zero in TF) come from ``output_padding`` instead of a negative end pad;
groups and dilations carry over. An op without a mapping is an UnimplementedError naming it.
"""

from __future__ import annotations

import numpy as np

from opgraph import errors
from opgraph.graph import Operation, Output
from opgraph.windows import effective_filter_size, windowed_output_size

__all__ = ["export", "supported_ops", "conv_transpose_geometry"]

_NHWC_TO_NCHW = (0, 3, 1, 2)
_NCHW_TO_NHWC = (0, 2, 3, 1)
_INT64_MAX = 2 ** 63 - 1


def _onnx():
    try:
        import onnx  # noqa: PLC0415
    except ImportError:
        msg = ('ONNX export needs the onnx package: pip install "opgraph[onnx]" '
               '(onnx and onnxruntime)')
        raise ImportError(msg) from None
    return onnx


def conv_transpose_geometry(out_size: int, k: int, stride: int, dilation: int, padding: str,
                            explicit: tuple[int, int] = (0, 0)) -> tuple[int, int, int, int]:
    """(dy size, begin pad, end pad, output_padding) of one spatial dim, for the
    ConvTranspose that computes TF's Conv2DBackpropInput of an ``out_size`` input."""
    dy, before, after = windowed_output_size(out_size, k, stride, dilation, padding,
                                             *explicit)
    full = stride * (dy - 1) + effective_filter_size(k, dilation)
    end = full - before - out_size
    if end >= 0:
        return dy, before, end, 0
    return dy, before, 0, -end


class _Ctx:
    def __init__(self, onnx, opset: int):
        self.onnx = onnx
        self.helper = onnx.helper
        self.opset = opset
        self.nodes = []
        self.initializers = []
        self.names: dict[Output, str] = {}
        self.lazy: dict[Output, np.ndarray] = {}     # Consts, made initializers when used
        self.used: set[str] = set()

    def fresh(self, base: str) -> str:
        name, i = base, 0
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name

    def const(self, value, base: str) -> str:
        name = self.fresh(base)
        arr = np.asarray(value)
        if arr.dtype == object:
            arr = arr.astype(bytes)
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def i64(self, values, base: str) -> str:
        return self.const(np.asarray(values, np.int64), base)

    def node(self, op_type: str, inputs, base: str, n_out: int = 1, outputs=None,
             **attrs) -> list[str]:
        outs = list(outputs) if outputs is not None else [self.fresh(f"{base}/{op_type}")
                                                         for _ in range(n_out)]
        for o in outs:
            self.used.add(o)
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs,
                                                name=self.fresh(f"{base}/{op_type}_node"),
                                                **attrs))
        return outs

    def input(self, op: Operation, i: int) -> str:
        out = op.inputs[i]
        name = self.names.get(out)
        if name is None:
            name = self.names[out] = self.output_name(out.op, out.index)
            arr = self.lazy[out]
            self.initializers.append(self.onnx.numpy_helper.from_array(
                arr.astype(bytes) if arr.dtype == object else arr, name))
        return name

    def output_name(self, op: Operation, k: int = 0) -> str:
        name = f"{op.name}:{k}"
        self.used.add(name)
        return name


def _const_value(out: Output):
    vals = out.op.output_values
    v = vals[out.index] if vals else None
    return v if isinstance(v, np.ndarray) else None


def _need_const(op: Operation, i: int, what: str) -> np.ndarray:
    v = _const_value(op.inputs[i])
    if v is None:
        msg = (f"ONNX export of node '{op.name}' ({op.type}) needs {what} (input {i}, "
               f"'{op.inputs[i].name}') to be a constant")
        raise errors.UnimplementedError(msg)
    return v


def _static_dims(out: Output, what: str, op: Operation) -> tuple:
    s = out.shape
    if s.dims is None or not s.is_fully_defined() and any(d is None for d in s.dims[1:]):
        msg = (f"ONNX export of node '{op.name}' ({op.type}) needs the static shape of {what} "
               f"('{out.name}': {s}) known apart from the batch dimension")
        raise errors.UnimplementedError(msg)
    return s.dims


# ---------------------------------------------------------------------------- converters
_CONVERTERS = {}


def _converter(*names):
    def register(fn):
        for n in names:
            _CONVERTERS[n] = fn
        return fn
    return register


_UNARY = {"Identity": "Identity", "StopGradient": "Identity", "Neg": "Neg", "Abs": "Abs",
          "Exp": "Exp", "Log": "Log", "Sqrt": "Sqrt", "Reciprocal": "Reciprocal",
          "Inv": "Reciprocal", "Tanh": "Tanh", "Sigmoid": "Sigmoid", "Relu": "Relu",
          "Erf": "Erf", "Floor": "Floor", "Ceil": "Ceil", "Sign": "Sign", "Sin": "Sin",
          "Cos": "Cos", "Round": "Round", "Softplus": "Softplus", "Softsign": "Softsign",
          "Selu": "Selu", "LogicalNot": "Not"}
_BINARY = {"Add": "Add", "AddV2": "Add", "Sub": "Sub", "Mul": "Mul", "RealDiv": "Div",
           "Maximum": "Max", "Minimum": "Min", "Pow": "Pow", "Equal": "Equal",
           "Greater": "Greater", "Less": "Less", "GreaterEqual": "GreaterOrEqual",
           "LessEqual": "LessOrEqual", "LogicalAnd": "And", "LogicalOr": "Or"}


def _unary(ctx, op, onnx_type):
    ctx.node(onnx_type, [ctx.input(op, 0)], op.name, outputs=[ctx.output_name(op)])


def _binary(ctx, op, onnx_type):
    ctx.node(onnx_type, [ctx.input(op, 0), ctx.input(op, 1)], op.name,
             outputs=[ctx.output_name(op)])


for _tf, _ox in _UNARY.items():
    _CONVERTERS[_tf] = (lambda t: lambda ctx, op: _unary(ctx, op, t))(_ox)
for _tf, _ox in _BINARY.items():
    _CONVERTERS[_tf] = (lambda t: lambda ctx, op: _binary(ctx, op, t))(_ox)


@_converter("Div")
def _div(ctx, op):
    if not op.attrs["T"].is_floating:
        msg = f"ONNX export of integer Div (node '{op.name}'): TF floors, ONNX truncates"
        raise errors.UnimplementedError(msg)
    _binary(ctx, op, "Div")


@_converter("NotEqual")
def _not_equal(ctx, op):
    (eq,) = ctx.node("Equal", [ctx.input(op, 0), ctx.input(op, 1)], op.name)
    ctx.node("Not", [eq], op.name, outputs=[ctx.output_name(op)])


@_converter("Square")
def _square(ctx, op):
    x = ctx.input(op, 0)
    ctx.node("Mul", [x, x], op.name, outputs=[ctx.output_name(op)])


@_converter("SquaredDifference")
def _squared_difference(ctx, op):
    (d,) = ctx.node("Sub", [ctx.input(op, 0), ctx.input(op, 1)], op.name)
    ctx.node("Mul", [d, d], op.name, outputs=[ctx.output_name(op)])


@_converter("Rsqrt")
def _rsqrt(ctx, op):
    (s,) = ctx.node("Sqrt", [ctx.input(op, 0)], op.name)
    ctx.node("Reciprocal", [s], op.name, outputs=[ctx.output_name(op)])


@_converter("Relu6")
def _relu6(ctx, op):
    dt = op.output_dtypes[0].as_numpy_dtype
    lo, hi = ctx.const(np.array(0, dt), f"{op.name}/min"), ctx.const(np.array(6, dt),
                                                                      f"{op.name}/max")
    ctx.node("Clip", [ctx.input(op, 0), lo, hi], op.name, outputs=[ctx.output_name(op)])


@_converter("Elu")
def _elu(ctx, op):
    ctx.node("Elu", [ctx.input(op, 0)], op.name, outputs=[ctx.output_name(op)], alpha=1.0)


@_converter("LeakyRelu")
def _leaky_relu(ctx, op):
    ctx.node("LeakyRelu", [ctx.input(op, 0)], op.name, outputs=[ctx.output_name(op)],
             alpha=float(op.attrs["alpha"]))


@_converter("Cast")
def _cast(ctx, op):
    to = ctx.helper.np_dtype_to_tensor_dtype(op.attrs["DstT"].as_numpy_dtype)
    ctx.node("Cast", [ctx.input(op, 0)], op.name, outputs=[ctx.output_name(op)], to=to)


@_converter("Softmax", "LogSoftmax")
def _softmax(ctx, op):
    ctx.node(op.type, [ctx.input(op, 0)], op.name, outputs=[ctx.output_name(op)], axis=-1)


def _swap_last(ctx, name, rank, base):
    perm = list(range(rank))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return ctx.node("Transpose", [name], base, perm=perm)[0]


@_converter("MatMul", "BatchMatMul", "BatchMatMulV2")
def _matmul(ctx, op):
    a, b = ctx.input(op, 0), ctx.input(op, 1)
    ta = op.attrs.get("transpose_a", op.attrs.get("adj_x", False))
    tb = op.attrs.get("transpose_b", op.attrs.get("adj_y", False))
    ra, rb = op.inputs[0].shape.rank, op.inputs[1].shape.rank
    if (ta and ra is None) or (tb and rb is None):
        msg = f"ONNX export of node '{op.name}' ({op.type}) needs the rank of a transposed input"
        raise errors.UnimplementedError(msg)
    if ta:
        a = _swap_last(ctx, a, ra, op.name)
    if tb:
        b = _swap_last(ctx, b, rb, op.name)
    ctx.node("MatMul", [a, b], op.name, outputs=[ctx.output_name(op)])


@_converter("BiasAdd", "BiasAddV1")
def _bias_add(ctx, op):
    x, b = ctx.input(op, 0), ctx.input(op, 1)
    if op.attrs.get("data_format", "NHWC") == "NCHW":
        rank = op.inputs[0].shape.rank
        if rank is None:
            msg = f"ONNX export of NCHW BiasAdd '{op.name}' needs the input's rank"
            raise errors.UnimplementedError(msg)
        shape = ctx.i64([-1] + [1] * (rank - 2), f"{op.name}/bias_shape")
        b = ctx.node("Reshape", [b, shape], op.name)[0]
    ctx.node("Add", [x, b], op.name, outputs=[ctx.output_name(op)])


def _to_nchw(ctx, op, name, nhwc: bool):
    return ctx.node("Transpose", [name], op.name, perm=list(_NHWC_TO_NCHW))[0] if nhwc \
        else name


def _from_nchw(ctx, op, name, nhwc: bool):
    out = ctx.output_name(op)
    if nhwc:
        ctx.node("Transpose", [name], op.name, outputs=[out], perm=list(_NCHW_TO_NHWC))
    else:
        ctx.node("Identity", [name], op.name, outputs=[out])


def _hw(values, nhwc: bool) -> tuple[int, int]:
    return (values[1], values[2]) if nhwc else (values[2], values[3])


def _explicit_hw(op, nhwc: bool):
    pads = list(op.attrs.get("explicit_paddings", ()))
    if op.attrs.get("padding") != "EXPLICIT":
        return (0, 0), (0, 0)
    pairs = [tuple(pads[2 * i:2 * i + 2]) for i in range(4)]
    return _hw(pairs, nhwc)


def _filter_oihw(ctx, op, i: int, depthwise: bool = False) -> str:
    """The HWIO filter input as ONNX's OIHW weight (an initializer when constant)."""
    v = _const_value(op.inputs[i])
    if v is not None:
        if depthwise:
            kh, kw, c, m = v.shape
            v = v.reshape(kh, kw, 1, c * m)
        return ctx.const(np.ascontiguousarray(v.transpose(3, 2, 0, 1)), f"{op.name}/weight")
    w = ctx.input(op, i)
    if depthwise:
        kh, kw, c, m = _static_dims(op.inputs[i], "the filter", op)
        w = ctx.node("Reshape", [w, ctx.i64([kh, kw, 1, c * m], f"{op.name}/wshape")],
                     op.name)[0]
    return ctx.node("Transpose", [w], op.name, perm=[3, 2, 0, 1])[0]


@_converter("Conv2D", "DepthwiseConv2dNative")
def _conv2d(ctx, op):
    nhwc = op.attrs.get("data_format", "NHWC") == "NHWC"
    dims = _static_dims(op.inputs[0], "the input", op)
    k_h, k_w, f_in, f_out = _static_dims(op.inputs[1], "the filter", op)
    s_h, s_w = _hw(op.attrs["strides"], nhwc)
    d_h, d_w = _hw(op.attrs.get("dilations", (1, 1, 1, 1)), nhwc)
    in_h, in_w = _hw(dims, nhwc)
    in_c = dims[3] if nhwc else dims[1]
    (eb_h, ea_h), (eb_w, ea_w) = _explicit_hw(op, nhwc)
    padding = op.attrs["padding"]
    _, b_h, a_h = windowed_output_size(in_h, k_h, s_h, d_h, padding, eb_h, ea_h)
    _, b_w, a_w = windowed_output_size(in_w, k_w, s_w, d_w, padding, eb_w, ea_w)
    depthwise = op.type == "DepthwiseConv2dNative"
    group = in_c if depthwise else in_c // f_in
    x = _to_nchw(ctx, op, ctx.input(op, 0), nhwc)
    w = _filter_oihw(ctx, op, 1, depthwise)
    (y,) = ctx.node("Conv", [x, w], op.name, kernel_shape=[k_h, k_w], strides=[s_h, s_w],
                    dilations=[d_h, d_w], pads=[b_h, b_w, a_h, a_w], group=group)
    _from_nchw(ctx, op, y, nhwc)


@_converter("Conv2DBackpropInput", "Conv2DBackpropInputV2")
def _conv2d_backprop_input(ctx, op):
    nhwc = op.attrs.get("data_format", "NHWC") == "NHWC"
    if op.type == "Conv2DBackpropInput":
        sizes = tuple(int(v) for v in _need_const(op, 0, "input_sizes"))
    else:
        sizes = _static_dims(op.inputs[0], "the input", op)
    k_h, k_w, f_in, f_out = _static_dims(op.inputs[1], "the filter", op)
    s_h, s_w = _hw(op.attrs["strides"], nhwc)
    d_h, d_w = _hw(op.attrs.get("dilations", (1, 1, 1, 1)), nhwc)
    out_h, out_w = _hw(sizes, nhwc)
    in_c = sizes[3] if nhwc else sizes[1]
    (eb_h, ea_h), (eb_w, ea_w) = _explicit_hw(op, nhwc)
    padding = op.attrs["padding"]
    _, b_h, e_h, p_h = conv_transpose_geometry(out_h, k_h, s_h, d_h, padding, (eb_h, ea_h))
    _, b_w, e_w, p_w = conv_transpose_geometry(out_w, k_w, s_w, d_w, padding, (eb_w, ea_w))
    dy = _to_nchw(ctx, op, ctx.input(op, 2), nhwc)
    w = _filter_oihw(ctx, op, 1)
    attrs = {"kernel_shape": [k_h, k_w], "strides": [s_h, s_w], "dilations": [d_h, d_w],
             "pads": [b_h, b_w, e_h, e_w], "group": in_c // f_in}
    if p_h or p_w:
        attrs["output_padding"] = [p_h, p_w]
    (y,) = ctx.node("ConvTranspose", [dy, w], op.name, **attrs)
    _from_nchw(ctx, op, y, nhwc)


@_converter("MaxPool", "AvgPool")
def _pool(ctx, op):
    nhwc = op.attrs.get("data_format", "NHWC") == "NHWC"
    dims = _static_dims(op.inputs[0], "the input", op)
    ksize, strides = op.attrs["ksize"], op.attrs["strides"]
    k_h, k_w = _hw(ksize, nhwc)
    s_h, s_w = _hw(strides, nhwc)
    if (ksize[0], ksize[3 if nhwc else 1]) != (1, 1):
        msg = f"ONNX export of '{op.name}': pooling over batch or depth has no ONNX op"
        raise errors.UnimplementedError(msg)
    in_h, in_w = _hw(dims, nhwc)
    padding = op.attrs["padding"]
    explicit = tuple(op.attrs.get("explicit_paddings", ())) if padding == "EXPLICIT" else ()
    eh = explicit[2:4] if nhwc and explicit else explicit[4:6] if explicit else (0, 0)
    ew = explicit[4:6] if nhwc and explicit else explicit[6:8] if explicit else (0, 0)
    _, b_h, a_h = windowed_output_size(in_h, k_h, s_h, 1, padding, *eh)
    _, b_w, a_w = windowed_output_size(in_w, k_w, s_w, 1, padding, *ew)
    x = _to_nchw(ctx, op, ctx.input(op, 0), nhwc)
    kwargs = {"kernel_shape": [k_h, k_w], "strides": [s_h, s_w],
              "pads": [b_h, b_w, a_h, a_w]}
    if op.type == "AvgPool":
        kwargs["count_include_pad"] = 0
    (y,) = ctx.node("MaxPool" if op.type == "MaxPool" else "AveragePool", [x], op.name,
                    **kwargs)
    _from_nchw(ctx, op, y, nhwc)


@_converter("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
def _fused_batch_norm(ctx, op):
    if op.attrs.get("is_training", True):
        msg = (f"ONNX export of '{op.name}': FusedBatchNorm with is_training=true (batch "
               f"statistics) has no ONNX counterpart; export an inference graph")
        raise errors.UnimplementedError(msg)
    nhwc = op.attrs.get("data_format", "NHWC") == "NHWC"
    x = _to_nchw(ctx, op, ctx.input(op, 0), nhwc)
    ins = [x] + [ctx.input(op, i) for i in range(1, 5)]
    (y,) = ctx.node("BatchNormalization", ins, op.name, epsilon=float(op.attrs["epsilon"]))
    _from_nchw(ctx, op, y, nhwc)


@_converter("Reshape")
def _reshape(ctx, op):
    shape = _const_value(op.inputs[1])
    if shape is not None:
        s = ctx.i64(shape, f"{op.name}/shape")
        zero = bool((np.asarray(shape) == 0).any())
    else:
        s = ctx.node("Cast", [ctx.input(op, 1)], op.name, to=ctx.onnx.TensorProto.INT64)[0]
        zero = True
    attrs = {"allowzero": 1} if zero and ctx.opset >= 14 else {}
    ctx.node("Reshape", [ctx.input(op, 0), s], op.name, outputs=[ctx.output_name(op)],
             **attrs)


@_converter("Transpose")
def _transpose(ctx, op):
    perm = [int(p) for p in _need_const(op, 1, "perm")]
    ctx.node("Transpose", [ctx.input(op, 0)], op.name, outputs=[ctx.output_name(op)],
             perm=perm)


@_converter("Squeeze")
def _squeeze(ctx, op):
    axes = list(op.attrs.get("squeeze_dims", op.attrs.get("axis", ())))
    ins = [ctx.input(op, 0)]
    if axes:
        ins.append(ctx.i64(axes, f"{op.name}/axes"))
    ctx.node("Squeeze", ins, op.name, outputs=[ctx.output_name(op)])


@_converter("ExpandDims")
def _expand_dims(ctx, op):
    axis = np.asarray(_need_const(op, 1, "dim")).reshape(-1)
    ctx.node("Unsqueeze", [ctx.input(op, 0), ctx.i64(axis, f"{op.name}/axes")], op.name,
             outputs=[ctx.output_name(op)])


@_converter("ConcatV2")
def _concat(ctx, op):
    n = op.attrs["N"]
    axis = int(_need_const(op, n, "axis"))
    ctx.node("Concat", [ctx.input(op, i) for i in range(n)], op.name,
             outputs=[ctx.output_name(op)], axis=axis)


@_converter("Pack")
def _pack(ctx, op):
    axis = int(op.attrs.get("axis", 0))
    rank = op.inputs[0].shape.rank
    if axis < 0:
        if rank is None:
            msg = f"ONNX export of Pack '{op.name}' with a negative axis needs the rank"
            raise errors.UnimplementedError(msg)
        axis += rank + 1
    axes = ctx.i64([axis], f"{op.name}/axes")
    parts = [ctx.node("Unsqueeze", [ctx.input(op, i), axes], op.name)[0]
             for i in range(op.attrs["N"])]
    ctx.node("Concat", parts, op.name, outputs=[ctx.output_name(op)], axis=axis)


@_converter("Sum", "Mean", "Max", "Min", "Prod")
def _reduce(ctx, op):
    axes = [int(a) for a in np.asarray(_need_const(op, 1, "reduction_indices")).reshape(-1)]
    onnx_type = {"Sum": "ReduceSum", "Mean": "ReduceMean", "Max": "ReduceMax",
                 "Min": "ReduceMin", "Prod": "ReduceProd"}[op.type]
    keep = int(bool(op.attrs.get("keep_dims", False)))
    out = ctx.output_name(op)
    if not axes:
        ctx.node("Identity", [ctx.input(op, 0)], op.name, outputs=[out])
        return
    if onnx_type == "ReduceSum" and ctx.opset >= 13 or ctx.opset >= 18:
        ctx.node(onnx_type, [ctx.input(op, 0), ctx.i64(axes, f"{op.name}/axes")], op.name,
                 outputs=[out], keepdims=keep)
    else:
        ctx.node(onnx_type, [ctx.input(op, 0)], op.name, outputs=[out], axes=axes,
                 keepdims=keep)


@_converter("Pad", "PadV2", "MirrorPad")
def _pad(ctx, op):
    pads = np.asarray(_need_const(op, 1, "paddings")).reshape(-1, 2)
    ins = [ctx.input(op, 0), ctx.i64(np.concatenate([pads[:, 0], pads[:, 1]]),
                                     f"{op.name}/pads")]
    mode = "constant"
    if op.type == "PadV2":
        ins.append(ctx.input(op, 2))
    elif op.type == "MirrorPad":
        if op.attrs["mode"] != "REFLECT":
            msg = f"ONNX export of '{op.name}': MirrorPad mode SYMMETRIC has no ONNX mode"
            raise errors.UnimplementedError(msg)
        mode = "reflect"
    ctx.node("Pad", ins, op.name, outputs=[ctx.output_name(op)], mode=mode)


@_converter("Shape")
def _shape(ctx, op):
    (s,) = ctx.node("Shape", [ctx.input(op, 0)], op.name)
    to = ctx.helper.np_dtype_to_tensor_dtype(op.attrs["out_type"].as_numpy_dtype)
    ctx.node("Cast", [s], op.name, outputs=[ctx.output_name(op)], to=to)


@_converter("Tile")
def _tile(ctx, op):
    reps = _const_value(op.inputs[1])
    r = ctx.i64(reps, f"{op.name}/repeats") if reps is not None else ctx.node(
        "Cast", [ctx.input(op, 1)], op.name, to=ctx.onnx.TensorProto.INT64)[0]
    ctx.node("Tile", [ctx.input(op, 0), r], op.name, outputs=[ctx.output_name(op)])


@_converter("GatherV2")
def _gather(ctx, op):
    if op.attrs.get("batch_dims", 0):
        msg = f"ONNX export of GatherV2 '{op.name}' with batch_dims != 0 is not supported"
        raise errors.UnimplementedError(msg)
    axis = int(_need_const(op, 2, "axis"))
    ctx.node("Gather", [ctx.input(op, 0), ctx.input(op, 1)], op.name,
             outputs=[ctx.output_name(op)], axis=axis)


@_converter("Select", "SelectV2")
def _select(ctx, op):
    if op.type == "Select" and op.inputs[0].shape.rank not in (None, op.inputs[1].shape.rank) \
            and op.inputs[0].shape.rank != 0:
        msg = f"ONNX export of Select '{op.name}' with a vector condition is not supported"
        raise errors.UnimplementedError(msg)
    ctx.node("Where", [ctx.input(op, i) for i in range(3)], op.name,
             outputs=[ctx.output_name(op)])


@_converter("PlaceholderWithDefault")
def _placeholder_with_default(ctx, op):
    ctx.node("Identity", [ctx.input(op, 0)], op.name, outputs=[ctx.output_name(op)])


#: inputs read only for their static shape (not exported when that shape is known)
_SHAPE_ONLY = {"Conv2DBackpropInputV2": (0,)}


class _Fetch:
    """Stands for a consumer of a fetched Const (so the Const becomes an initializer)."""

    def __init__(self, out):
        self.inputs = (out,)


def supported_ops() -> list[str]:
    """The op types export() can map."""
    return sorted({*_CONVERTERS, "Const", "Placeholder"})


# ---------------------------------------------------------------------------- export
def _as_output(graph, value) -> Output:
    if isinstance(value, Output):
        return value
    if isinstance(value, str):
        name, _, k = value.partition(":")
        return graph.get_operation(name).output(int(k or 0))
    out = getattr(value, "output", None)
    if isinstance(out, Output):
        return out
    if isinstance(value, Operation):
        return value.output(0)
    msg = f"Cannot export {type(value).__name__} {value!r}: give Outputs or tensor names"
    raise errors.InvalidArgumentError(msg)


def _value_info(ctx, name: str, out: Output):
    dims = None if out.shape.dims is None else [
        d if d is not None else f"{out.op.name.replace('/', '_')}_{out.index}_d{i}"
        for i, d in enumerate(out.shape.dims)]
    elem = ctx.helper.np_dtype_to_tensor_dtype(out.dtype.as_numpy_dtype) \
        if out.dtype.name != "string" else ctx.onnx.TensorProto.STRING
    return ctx.helper.make_tensor_value_info(name, elem, dims)


def export(scope, fetches, path=None, feeds=None, opset: int = 17, check: bool = True,
           graph_name: str = "opgraph"):
    """Export the ops that ``fetches`` need as an ONNX model; write it to ``path`` if given.

    ``fetches``: Outputs (or wrappers, or "name:0"); ``feeds``: tensors that become graph
    inputs (default: the Placeholders needed). Returns the onnx.ModelProto, checked by
    onnx.checker when ``check``. UnimplementedError for an op with no ONNX mapping.
    """
    onnx = _onnx()
    scope.status().raise_if_error()
    graph = scope.graph()
    if not isinstance(fetches, (list, tuple)):
        fetches = [fetches]
    fetch_outs = [_as_output(graph, f) for f in fetches]
    feed_outs = [_as_output(graph, f) for f in (feeds or ())]
    feed_set = set(feed_outs)
    needed, stack = {}, [o.op for o in fetch_outs if o not in feed_set]
    while stack:
        op = stack.pop()
        if op.name in needed:
            continue
        needed[op.name] = op
        shape_only = _SHAPE_ONLY.get(op.type, ())
        stack.extend(o.op for i, o in enumerate(op.inputs) if o not in feed_set and not (
            i in shape_only and o.shape.dims is not None and all(
                d is not None for d in o.shape.dims[1:])))
    ops = sorted(needed.values(), key=lambda o: o.id)
    missing = sorted({op.type for op in ops if op.type not in _CONVERTERS
                      and op.type not in ("Const", "Placeholder")})
    if missing:
        first = next(op for op in ops if op.type in missing)
        msg = (f"No ONNX mapping for op{'s' if len(missing) > 1 else ''} "
               f"{', '.join(missing)} (e.g. node '{first.name}' created at {first.site}); "
               f"ops with a mapping: {', '.join(supported_ops())}")
        raise errors.UnimplementedError(msg, first.name, first.type, first.site)
    ctx = _Ctx(onnx, opset)
    inputs = []
    for out in feed_outs:
        ctx.names[out] = ctx.output_name(out.op, out.index)
        inputs.append(_value_info(ctx, ctx.names[out], out))
    for op in ops:
        if op.type == "Placeholder":
            out = op.output(0)
            ctx.names[out] = ctx.output_name(op)
            inputs.append(_value_info(ctx, ctx.names[out], out))
            continue
        if op.type == "Const":
            ctx.lazy[op.output(0)] = np.asarray(op.attrs["value"])
            continue
        _CONVERTERS[op.type](ctx, op)
        for k in range(op.num_outputs):
            ctx.names.setdefault(op.output(k), f"{op.name}:{k}")
    outputs = []
    for out in fetch_outs:
        name = ctx.names.get(out) or ctx.input(_Fetch(out), 0)
        if name in {i.name for i in inputs} or name in {t.name for t in ctx.initializers}:
            alias = ctx.fresh(f"{out.op.name}_output_{out.index}")
            ctx.node("Identity", [name], out.op.name, outputs=[alias])
            name = alias
        outputs.append(_value_info(ctx, name, out))
    g = onnx.helper.make_graph(ctx.nodes, graph_name, inputs, outputs, ctx.initializers)
    model = onnx.helper.make_model(g, producer_name="opgraph",
                                   opset_imports=[onnx.helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 9)
    if check:
        onnx.checker.check_model(model)
    if path is not None:
        onnx.save(model, path)
    return model
