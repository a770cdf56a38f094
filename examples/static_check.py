"""Static checking: a misconfigured upsampling decoder, every error reported in one pass.

Each decoder stage doubles the spatial size with a stride-2 Conv2DBackpropInputV2 (a
transposed convolution). Three stages are wired wrong; TF would build all of this without a
word (its shape function for the op checks nothing) and fail only when run, one error at a
time. Here the build records each independent error, naming the op, the line that created
it and the shapes involved. Run:  python examples/static_check.py
"""

import numpy as np

import ops
from opgraph import DT_FLOAT, Scope

rng = np.random.default_rng(0)


def deconv(scope, name, x_shape, filter_shape, dy, strides=(1, 2, 2, 1), padding="SAME",
           **attrs):
    """One upsampling stage: dx of shape x_shape from dy."""
    s = scope.NewSubScope(name)
    x = ops.Placeholder(s.WithOpName("shape_of_x"), DT_FLOAT, ops.Placeholder.Shape(x_shape))
    w = ops.Const(s.WithOpName("filter"), rng.standard_normal(filter_shape).astype(np.float32))
    return ops.Conv2DBackpropInputV2(s.WithOpName("deconv"), x, w, dy, list(strides), padding,
                                     **attrs)


root = Scope.NewRootScope()
z = ops.Placeholder(root.WithOpName("z"), DT_FLOAT, ops.Placeholder.Shape([None, 4, 4, 256]))
# stage 1, correct: [?,4,4,256] -> [?,8,8,128]
up1 = deconv(root, "up1", [None, 8, 8, 128], [4, 4, 128, 256], z)
# stage 2, wrong filter: its out_depth (64) must equal up1's depth (128)
up2 = deconv(root, "up2", [None, 16, 16, 64], [4, 4, 64, 64], up1)
# stage 3, independent branch with the wrong output size: 4x4 -> 9x9 is not stride 2 SAME
up3 = deconv(root, "up3", [None, 9, 9, 128], [3, 3, 128, 256], z)
# stage 4, a stride on the channel dim
up4 = deconv(root, "up4", [None, 8, 8, 128], [3, 3, 128, 256], z, strides=(1, 2, 2, 2))
# stage 5 consumes the failed up2: skipped quietly (its input is already reported)
up5 = deconv(root, "up5", [None, 32, 32, 3], [4, 4, 3, 64], up2)

status = root.status()
print(f"scope ok: {status.ok()}, {len(status.errors)} independent errors:\n")
for err in status.errors:
    print(f"{type(err).__name__} in node '{err.op_name}' ({err.op_type}):\n  {err}\n")
print("up1 (valid) static shape:", up1.output.shape)
assert len(status.errors) == 3
