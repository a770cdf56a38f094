"""Quickstart: build a graph, read its static shapes, run it, check the result.

The gradient of a strided convolution with respect to its input (the op behind transposed
convolutions / "deconvolution" layers), which real TensorFlow can build but has no kernel to
run. Run:  python examples/quickstart.py
"""

import numpy as np

import ops
from opgraph import DT_FLOAT, Scope
from runtime import ClientSession

rng = np.random.default_rng(0)
filter_ndarray = rng.standard_normal((3, 3, 16, 32)).astype(np.float32)   # HWIO

# 1. Build. The batch is unknown (None) until run time.
root = Scope.NewRootScope()
x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, ops.Placeholder.Shape([None, 8, 8, 16]))
w = ops.Const(root.WithOpName("w"), filter_ndarray)    # numpy values become Const nodes
dy = ops.Placeholder(root.WithOpName("dy"), DT_FLOAT, ops.Placeholder.Shape([None, 4, 4, 32]))
dx = ops.Conv2DBackpropInputV2(root.WithOpName("dx"), x, w, dy, [1, 2, 2, 1], "SAME",
                               ops.Conv2DBackpropInputV2.Attrs().Dilations([1, 1, 1, 1]))

# 2. Static shapes are known at build time (every conv rule was checked already).
print("dx static shape:", dx.output.shape)          # [?, 8, 8, 16]
print(root.graph().format())

# 3. Run: feed numpy arrays, get numpy arrays back.
xv = np.zeros((2, 8, 8, 16), np.float32)              # only x's shape is used
dyv = rng.standard_normal((2, 4, 4, 32)).astype(np.float32)
(dxv,) = ClientSession(root).Run({x: xv, dy: dyv}, [dx])
print("dx value shape:", dxv.shape, dxv.dtype)

# 4. Check it: dx is the adjoint of the forward convolution, <conv(x), dy> == <x, dx>.
probe = rng.standard_normal((2, 8, 8, 16)).astype(np.float32)
y = ops.Conv2D(root, x, w, [1, 2, 2, 1], "SAME")
yv = ClientSession(root).Run({x: probe}, y)
lhs, rhs = float(np.vdot(yv, dyv)), float(np.vdot(probe, dxv))
print(f"<conv2d(x), dy> = {lhs:.4f}   <x, dx> = {rhs:.4f}")
assert abs(lhs - rhs) <= 1e-3 * max(1.0, abs(lhs)), "adjoint identity failed"
print("ok")
