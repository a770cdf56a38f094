"""The executor's shared safety mechanisms, which every op inherits (no per-kernel code):
re-running the shape function on actual inputs when the static information was partial or a
value it read is fed, guarding inferred output sizes before the kernel, and checking the
kernel's results against the inferred shapes and dtypes."""

from __future__ import annotations

import numpy as np
import pytest

import ops
from opgraph import DT_FLOAT, DT_INT32, Scope, errors
from opgraph.common_shapes import unchanged_shape
from opgraph.op_def import AttrDef
from opgraph.wrappers import declare
from runtime import ClientSession, register_kernel

# A deliberately wrong kernel: it drops the last row. Registered once for the module.
DropsARowOp = declare("TestDropsARow", inputs=["x: T"], outputs=["y: T"],
                        attrs=["T: {float}"], shape_fn=unchanged_shape,
                        doc="Test op whose kernel returns the wrong shape.")


@register_kernel("TestDropsARow")
def _drops_a_row(x):
    return x[:-1]


def test_a_kernel_result_that_contradicts_shape_inference_is_an_internal_error():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[None, 2])       # partial: the node is checked
    y = DropsARowOp(root.WithOpName("bad"), x)
    with pytest.raises(errors.InternalError, match=r"returned output 0 with shape \[2, 2\].*"
                                                   r"shape inference gives \[3, 2\]"):
        ClientSession(root).Run({x: np.zeros((3, 2), np.float32)}, [y])


def test_shape_function_reruns_on_actual_values_when_they_were_unknown_at_build_time():
    # Reshape's target comes from a placeholder: unknown at build time, checked at run time
    # with the build-time sentence.
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[2, 3])
    shape = ops.Placeholder(root, DT_INT32, shape=[2])
    y = ops.Reshape(root, x, shape)
    assert root.ok() and y.output.shape.as_list() == [None, None]
    sess = ClientSession(root)
    out = sess.Run({x: np.zeros((2, 3), np.float32), shape: np.array([3, 2], np.int32)}, y)
    assert out.shape == (3, 2)
    with pytest.raises(errors.InvalidArgumentError, match="Cannot reshape a tensor with 6 "
                                                          "elements"):
        sess.Run({x: np.zeros((2, 3), np.float32), shape: np.array([4, 2], np.int32)}, y)


def test_feeding_a_constant_that_a_shape_function_read_rechecks_the_node():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[2, 3])
    target = ops.Const(root, np.array([3, 2], np.int32))
    y = ops.Reshape(root, x, target)
    assert y.output.shape.as_list() == [3, 2]                   # read at build time
    sess = ClientSession(root)
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(sess.Run({x: xv, target: np.array([6, 1], np.int32)}, y),
                                  xv.reshape(6, 1))
    with pytest.raises(errors.InvalidArgumentError, match="Cannot reshape"):
        sess.Run({x: xv, target: np.array([5, 1], np.int32)}, y)


def test_partial_shape_values_flow_from_shape_to_consumers():
    # TF's ShapeRefiner: Shape of [?, 9, 9, 3] has the value [?, 9, 9, 3].
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[None, 9, 9, 3])
    zeros = ops.Fill(root, ops.Shape(root, x), np.float32(0))
    assert zeros.output.shape.as_list() == [None, 9, 9, 3]
    flat = ops.Reshape(root, x, ops.Pack(root, [ops.StridedSlice(
        root, ops.Shape(root, x), [0], [1], [1], shrink_axis_mask=1), np.int32(243)]))
    assert flat.output.shape.as_list() == [None, 243]


def test_an_oversized_static_output_is_refused_before_anything_is_allocated():
    root = Scope.NewRootScope()
    big = ops.Fill(root, np.array([2 ** 20, 2 ** 20, 2 ** 10], np.int32), np.float32(1))
    assert root.ok() and big.output.shape.as_list() == [2 ** 20, 2 ** 20, 2 ** 10]
    with pytest.raises(errors.ResourceExhaustedError, match="OOM when allocating Fill output"):
        ClientSession(root).Run(big)


def test_an_oversized_output_known_only_at_run_time_is_refused_before_the_kernel():
    root = Scope.NewRootScope()
    dims = ops.Placeholder(root, DT_INT32, shape=[3])
    big = ops.Fill(root, dims, np.float32(1))
    with pytest.raises(errors.ResourceExhaustedError, match="OOM when allocating Fill output"):
        ClientSession(root).Run({dims: np.array([2 ** 20, 2 ** 20, 2 ** 10], np.int32)}, big)


def test_fully_known_nodes_are_not_rechecked_at_run_time():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[2, 3])
    y = ops.Relu(root, x)
    assert y.operation.shape_complete and y.operation.values_read == ()
    partial = ops.Relu(root, ops.Placeholder(root, DT_FLOAT, shape=[None, 3]))
    assert not partial.operation.shape_complete


def test_attr_specs_accept_both_of_tfs_orders_of_default_and_minimum():
    a = AttrDef.parse("squeeze_dims: list(int) >= 0 = []")
    b = AttrDef.parse("num_split: int = 1 >= 1")
    assert (a.default, a.minimum) == ((), 0)
    assert (b.default, b.minimum) == (1, 1)


def test_kernel_dtypes_default_to_the_ops_allowed_types():
    from runtime.kernel_registry import registered_kernels

    (kdef,) = [k for k in registered_kernels("TestDropsARow") if k.device_type == "CPU"]
    assert kdef.constraints is None
    assert "T in [DT_FLOAT]" in kdef.describe()
