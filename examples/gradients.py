"""Symbolic gradients and the gradient checker, in the style of TF's cc/gradients tests.

Builds y = sum(relu(x @ w + b) ** 2), asks AddSymbolicGradients for dy/dx, dy/dw and dy/db
(ordinary graph nodes under "gradients/", with static shapes), runs them, and checks every
Jacobian against central finite differences in float64 with compute_gradient_error, then
does the same for the gradient of a gradient (a second derivative).

Run:  python examples/gradients.py
"""

import numpy as np

import ops
from opgraph import DT_DOUBLE, AddSymbolicGradients, Scope
from opgraph.testing import compute_gradient_error
from runtime import ClientSession


def main():
    rng = np.random.default_rng(0)
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_DOUBLE, shape=[3, 4])
    w = ops.Placeholder(root.WithOpName("w"), DT_DOUBLE, shape=[4, 2])
    b = ops.Placeholder(root.WithOpName("b"), DT_DOUBLE, shape=[2])
    h = ops.Relu(root, ops.BiasAdd(root, ops.MatMul(root, x, w), b))
    y = ops.Sum(root.WithOpName("y"), ops.Square(root, h), [0, 1])

    dx, dw, db = AddSymbolicGradients(root, [y], [x, w, b])
    for name, g in (("dy/dx", dx), ("dy/dw", dw), ("dy/db", db)):
        print(f"{name}: node {g.op.name!r} ({g.op.type}), static shape {g.shape}")

    # Values away from Relu's kink, as TF's nn_grad_test chooses them.
    xv = rng.uniform(0.5, 1.5, (3, 4)) * rng.choice([-1, 1], (3, 4))
    wv = rng.uniform(0.5, 1.5, (4, 2)) * rng.choice([-1, 1], (4, 2))
    bv = np.array([0.3, -0.2])
    feeds = {x: xv, w: wv, b: bv}
    yv, dxv = ClientSession(root).Run(feeds, [y, dx])
    print(f"y = {float(yv):.4f}; dy/dx[0] = {np.round(dxv[0], 4)}")

    err = compute_gradient_error(root, [x, w, b], [[3, 4], [4, 2], [2]], [y], [[]],
                                 x_init_values=[xv, wv, bv], delta=1e-6)
    print(f"max Jacobian error (first derivatives): {err:.2e}")

    # Second derivative: differentiate one entry of dy/dw again with respect to x.
    g2 = ops.Sum(root, ops.Mul(root, dw, np.ones((4, 2))), [0, 1])
    err2 = compute_gradient_error(root, [x], [[3, 4]], [g2], [[]], x_init_values=[xv],
                                  delta=1e-6, feeds={w: wv, b: bv})
    print(f"max Jacobian error (second derivative): {err2:.2e}")
    return err, err2


if __name__ == "__main__":
    main()
