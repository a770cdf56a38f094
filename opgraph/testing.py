"""Testing utilities: TF's gradient checker (cc/framework/gradient_checker.h).

    err = compute_gradient_error(root, [x], [x_shape], [y], [y_shape])
    assert err < 1e-4

Compares the Jacobian computed from the symbolic gradients (AddSymbolicGradients, one Run
per output element) with central finite differences (two Runs per input element), and
returns the largest absolute difference. Use float64 inputs for tight tolerances and keep
shapes small: the cost is one Run per element.
"""

from __future__ import annotations

import numpy as np

from opgraph import errors
from opgraph.gradients import AddSymbolicGradients
from opgraph.graph import Output
from opgraph.registry import get_op_def
from opgraph.shapes import TensorShape

__all__ = ["compute_gradient_error", "compute_jacobians"]


def _shape(s) -> tuple:
    shape = TensorShape(s)
    if not shape.is_fully_defined():
        msg = f"Gradient checking needs fully defined shapes, got {shape}"
        raise errors.InvalidArgumentError(msg)
    return tuple(shape.dims)


def compute_jacobians(scope, xs, x_shapes, ys, y_shapes, x_init_values=None, delta=1e-3,
                      feeds=None, seed=0):
    """(theoretical, numerical) Jacobians: lists indexed [x][y] of arrays shaped
    [x.size, y.size]. ``xs`` are placeholders (or any feedable Outputs)."""
    from runtime import ClientSession  # noqa: PLC0415  (opgraph must not import runtime)

    xs = [getattr(x, "output", x) for x in xs]
    ys = [getattr(y, "output", y) for y in ys]
    if len(xs) != len(x_shapes) or len(ys) != len(y_shapes):
        msg = "compute_gradient_error: need one shape per x and one per y"
        raise errors.InvalidArgumentError(msg)
    x_shapes = [_shape(s) for s in x_shapes]
    y_shapes = [_shape(s) for s in y_shapes]
    rng = np.random.default_rng(seed)
    if x_init_values is None:
        x_init_values = [rng.uniform(-1, 1, s).astype(x.dtype.as_numpy_dtype)
                         for x, s in zip(xs, x_shapes)]
    x_values = [np.array(v, dtype=x.dtype.as_numpy_dtype).reshape(s)
                for x, v, s in zip(xs, x_init_values, x_shapes)]
    gscope = scope.NewSubScope("gradient_checker")
    dys = [Output(gscope.build_op(get_op_def("Placeholder"), [], {"dtype": y.dtype,
                                                                    "shape": list(s)}), 0)
           for y, s in zip(ys, y_shapes)]
    grads = AddSymbolicGradients(scope, ys, xs, dys, unconnected_gradients="zero")
    scope.status().raise_if_error()
    sess = ClientSession(scope)
    base = dict(feeds or {})

    theory = [[np.zeros((int(np.prod(xs_)), int(np.prod(ys_)))) for ys_ in y_shapes]
              for xs_ in x_shapes]
    for j, (y, ys_) in enumerate(zip(ys, y_shapes)):
        zero_dys = {d: np.zeros(s, d.dtype.as_numpy_dtype) for d, s in zip(dys, y_shapes)}
        for e in range(int(np.prod(ys_))):
            dy = np.zeros(int(np.prod(ys_)), y.dtype.as_numpy_dtype)
            dy[e] = 1
            feed = {**base, **dict(zip(xs, x_values)), **zero_dys, dys[j]: dy.reshape(ys_)}
            for i, g in enumerate(sess.Run(feed, grads)):
                theory[i][j][:, e] = np.asarray(g, np.float64).ravel()
    numeric = [[np.zeros_like(t) for t in row] for row in theory]
    for i, (x, xs_) in enumerate(zip(xs, x_shapes)):
        for e in range(int(np.prod(xs_))):
            outs = []
            for sign in (1, -1):
                vals = [v.copy() for v in x_values]
                flat = vals[i].reshape(-1)
                flat[e] = flat[e] + sign * delta
                outs.append(sess.Run({**base, **dict(zip(xs, vals))}, ys))
            for j in range(len(ys)):
                diff = (np.asarray(outs[0][j], np.float64) - np.asarray(outs[1][j], np.float64))
                numeric[i][j][e, :] = diff.ravel() / (2 * delta)
    return theory, numeric


def compute_gradient_error(scope, xs, x_shapes, ys, y_shapes, x_init_values=None,
                           delta=1e-3, feeds=None, seed=0) -> float:
    """Max |theoretical - numerical| over every Jacobian entry (TF's ComputeGradientError).

    Accepts single tensors for ``xs``/``ys`` with a single shape each, as the C++ overloads.
    """
    if not isinstance(xs, (list, tuple)):
        xs, x_shapes = [xs], [x_shapes]
        if x_init_values is not None:
            x_init_values = [x_init_values]
    if not isinstance(ys, (list, tuple)):
        ys, y_shapes = [ys], [y_shapes]
    theory, numeric = compute_jacobians(scope, xs, x_shapes, ys, y_shapes, x_init_values,
                                        delta, feeds, seed)
    err = 0.0
    for trow, nrow in zip(theory, numeric):
        for t, n in zip(trow, nrow):
            if t.size:
                err = max(err, float(np.max(np.abs(t - n))))
    return err
