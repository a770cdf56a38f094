"""Gradients of the five convolution ops beyond the generic suite.

For each op (the "seed" of the gradient graph) over the grid strides 1/2 x dilations 1/2 x
SAME/VALID/EXPLICIT x groups 1/2 x NHWC/NCHW, the Jacobian of its symbolic gradient graph
matches central finite differences in float64 to 1e-6 RELATIVE error
(max |J_theory - J_numeric| / max |J_numeric|); so do Conv2D's second derivatives (the gradient
of its gradient graph). Also: the gradient graphs are the documented ops with EVERY attr of the
forward op forwarded (TF's C++ Conv2D gradient drops dilations and explicit_paddings), and the
shape-only inputs (input_sizes, filter_sizes, the V2 ops' shape-giving tensors) get no
gradient.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import ops
from opgraph import DT_DOUBLE, AddSymbolicGradients, Scope
from opgraph.testing import compute_jacobians
from opgraph.windows import conv_params
from runtime import ClientSession

DELTA = 1e-6
REL_TOL = 1e-6
OPS = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropInputV2", "Conv2DBackpropFilter",
       "Conv2DBackpropFilterV2")


def _attrs(stride, dilation, padding, fmt):
    def four(v):
        return [1, 1, v, v] if fmt == "NCHW" else [1, v, v, 1]
    a = {"strides": four(stride), "padding": padding, "data_format": fmt,
         "dilations": four(dilation)}
    if padding == "EXPLICIT":  # pads (top 1, bottom 0), (left 0, right 2) in format order
        pads = [[0, 0], [1, 0], [0, 2], [0, 0]]
        if fmt == "NCHW":
            pads = [pads[0], pads[3], pads[1], pads[2]]
        a["explicit_paddings"] = [v for pair in pads for v in pair]
    return a


def _in_format(shape_nhwc, fmt):
    n, h, w, c = shape_nhwc
    return (n, h, w, c) if fmt == "NHWC" else (n, c, h, w)


def _problem(stride, dilation, padding, groups, fmt):
    """(attrs, x shape, filter shape, dy shape): 2x2 taps, 2 channels per group on the input
    side, 1 on the output side; big enough that every tap reads inside."""
    attrs = _attrs(stride, dilation, padding, fmt)
    x_nhwc = (1, 5, 4, 2 * groups)
    w_shape = (2, 2, 2, groups)
    p = conv_params({"explicit_paddings": [], **attrs})
    oh, ow = p.out_size(0, 5, 2), p.out_size(1, 4, 2)
    return attrs, _in_format(x_nhwc, fmt), w_shape, _in_format((1, oh, ow, groups), fmt)


GRID = list(itertools.product((1, 2), (1, 2), ("SAME", "VALID", "EXPLICIT"), (1, 2),
                              ("NHWC", "NCHW")))


def _grid_id(c):
    return "s{}-d{}-{}-g{}-{}".format(*c)


def _ph(root, shape):
    return ops.Placeholder(root, DT_DOUBLE, shape=list(shape)).output


def _seed(root, op, attrs, x_shape, w_shape, dy_shape):
    """The op built on placeholders: (output, differentiated placeholders, their shapes, feeds
    of the shape-only placeholder of a V2 op)."""
    x, w, dy = _ph(root, x_shape), _ph(root, w_shape), _ph(root, dy_shape)
    strides, padding = attrs["strides"], attrs["padding"]
    rest = {k: v for k, v in attrs.items() if k not in ("strides", "padding")}
    feeds = {}
    if op == "Conv2D":
        out = ops.Conv2D(root, x, w, strides, padding, **rest)
        xs, shapes = [x, w], [x_shape, w_shape]
    elif op in ("Conv2DBackpropInput", "Conv2DBackpropInputV2"):
        if op == "Conv2DBackpropInput":
            first = ops.Const(root, np.array(x_shape, np.int32))
        else:
            first, feeds = x, {x: np.zeros(x_shape)}  # only its shape is read
        out = getattr(ops, op)(root, first, w, dy, strides, padding, **rest)
        xs, shapes = [w, dy], [w_shape, dy_shape]
    else:
        if op == "Conv2DBackpropFilter":
            second = ops.Const(root, np.array(w_shape, np.int32))
        else:
            second, feeds = w, {w: np.zeros(w_shape)}
        out = getattr(ops, op)(root, x, second, dy, strides, padding, **rest)
        xs, shapes = [x, dy], [x_shape, dy_shape]
    return out.output, xs, shapes, feeds


def _relative_error(theory, numeric):
    num = max(float(np.abs(n).max()) for row in numeric for n in row if n.size)
    diff = max(float(np.abs(t - n).max()) for trow, nrow in zip(theory, numeric)
               for t, n in zip(trow, nrow) if t.size)
    assert num > 0, "the numeric Jacobian is zero: the check would be vacuous"
    return diff / num


def _values(rng, shapes):
    return [rng.uniform(-1, 1, s) for s in shapes]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("case", GRID, ids=_grid_id)
def test_gradient_graph_matches_finite_differences(op, case):
    attrs, x_shape, w_shape, dy_shape = _problem(*case)
    rng = np.random.default_rng(abs(hash((op, case))) % (1 << 32))
    root = Scope.NewRootScope()
    y, xs, shapes, feeds = _seed(root, op, attrs, x_shape, w_shape, dy_shape)
    assert root.ok(), root.status()
    theory, numeric = compute_jacobians(root, xs, shapes, [y], [y.shape.dims],
                                        x_init_values=_values(rng, shapes), delta=DELTA,
                                        feeds=feeds)
    err = _relative_error(theory, numeric)
    assert err < REL_TOL, f"{op} {_grid_id(case)}: relative Jacobian error {err:.3g}"


SECOND_ORDER = [(1, 1, "SAME", 1, "NHWC"), (2, 1, "VALID", 2, "NCHW"),
                (1, 2, "EXPLICIT", 2, "NHWC"), (2, 2, "SAME", 1, "NCHW"),
                (2, 2, "EXPLICIT", 1, "NHWC"), (1, 2, "VALID", 2, "NCHW")]


@pytest.mark.parametrize("case", SECOND_ORDER, ids=_grid_id)
def test_conv2d_second_derivatives(case):
    """The gradient of Conv2D's gradient graph (dx, dw as functions of x, w and the upstream
    g) against finite differences of that graph: the second derivatives of Conv2D."""
    attrs, x_shape, w_shape, dy_shape = _problem(*case)
    rng = np.random.default_rng(3)
    root = Scope.NewRootScope()
    y, (x, w), _, _ = _seed(root, "Conv2D", attrs, x_shape, w_shape, dy_shape)
    g = _ph(root, dy_shape)
    dx, dw = AddSymbolicGradients(root, [y], [x, w], [g])
    assert (dx.op.type, dw.op.type) == ("Conv2DBackpropInputV2", "Conv2DBackpropFilterV2")
    shapes = [x_shape, w_shape, dy_shape]
    theory, numeric = compute_jacobians(root, [x, w, g], shapes, [dx, dw], [x_shape, w_shape],
                                        x_init_values=_values(rng, shapes), delta=DELTA)
    err = _relative_error(theory, numeric)
    assert err < REL_TOL, f"second derivatives {_grid_id(case)}: relative error {err:.3g}"
    # d(dx)/dx and d(dw)/dw are zero: Conv2D is bilinear
    assert not theory[0][0].any() and not theory[1][1].any()


def test_conv2d_third_derivative_graph_builds_and_runs():
    """Differentiating twice more still builds ordinary conv ops that run."""
    attrs, x_shape, w_shape, dy_shape = _problem(2, 2, "EXPLICIT", 2, "NCHW")
    root = Scope.NewRootScope()
    y, (x, w), _, _ = _seed(root, "Conv2D", attrs, x_shape, w_shape, dy_shape)
    (dx,) = AddSymbolicGradients(root, [y], [x])
    (dxw,) = AddSymbolicGradients(root, [dx], [w])
    (dxwx,) = AddSymbolicGradients(root, [dxw], [x], unconnected_gradients="zero")
    rng = np.random.default_rng(4)
    out = ClientSession(root).Run({x: rng.uniform(-1, 1, x_shape),
                                   w: rng.uniform(-1, 1, w_shape)}, [dxw, dxwx])
    assert out[0].shape == w_shape and not out[1].any()


# ---------------------------------------------------------------- the graphs themselves
_FULL = {"strides": [1, 1, 2, 1], "padding": "EXPLICIT", "use_cudnn_on_gpu": False,
         "explicit_paddings": [0, 0, 0, 0, 1, 2, 0, 1], "data_format": "NCHW",
         "dilations": [1, 1, 1, 2]}
_EXPECTED = {  # op -> gradient op type per input (None: no gradient)
    "Conv2D": ["Conv2DBackpropInputV2", "Conv2DBackpropFilterV2"],
    "Conv2DBackpropInput": [None, "Conv2DBackpropFilterV2", "Conv2D"],
    "Conv2DBackpropInputV2": [None, "Conv2DBackpropFilterV2", "Conv2D"],
    "Conv2DBackpropFilter": ["Conv2DBackpropInputV2", None, "Conv2D"],
    "Conv2DBackpropFilterV2": ["Conv2DBackpropInputV2", None, "Conv2D"],
}


@pytest.mark.parametrize("op", OPS)
def test_gradient_ops_forward_every_attr(op):
    x_shape, w_shape = (1, 4, 6, 5), (2, 2, 2, 4)      # NCHW, 2 groups
    p = conv_params(_FULL)
    dy_shape = (1, 4, p.out_size(0, 6, 2), p.out_size(1, 5, 2))
    root = Scope.NewRootScope()
    x, w, dy = _ph(root, x_shape), _ph(root, w_shape), _ph(root, dy_shape)
    strides, padding = _FULL["strides"], _FULL["padding"]
    rest = {k: v for k, v in _FULL.items() if k not in ("strides", "padding")}
    if op == "Conv2D":
        inputs, fed = [x, w], [x, w]
    elif op == "Conv2DBackpropInput":
        inputs, fed = [ops.Const(root, np.array(x_shape, np.int32)).output, w, dy], [w, dy]
    elif op == "Conv2DBackpropFilter":
        inputs, fed = [x, ops.Const(root, np.array(w_shape, np.int32)).output, dy], [x, dy]
    else:
        inputs, fed = [x, w, dy], [x, w, dy]
    out = getattr(ops, op)(root, *inputs, strides, padding, **rest).output
    assert root.ok(), root.status()
    grads = AddSymbolicGradients(root, [out], inputs)
    assert root.ok(), root.status()
    assert [None if gr is None else gr.op.type for gr in grads] == _EXPECTED[op]
    for gr, src in zip(grads, inputs):
        if gr is None:   # input_sizes, filter_sizes and the V2 ops' shape-only inputs
            continue
        for key, value in _FULL.items():
            got = gr.op.attrs[key]
            assert (list(got) if isinstance(got, tuple) else got) == value, (op, gr.op.type, key)
        assert tuple(gr.shape.dims) == tuple(src.shape.dims)
    rng = np.random.default_rng(5)
    ClientSession(root).Run({t: rng.uniform(-1, 1, tuple(t.shape.dims)) for t in fed},
                            [gr for gr in grads if gr is not None])
