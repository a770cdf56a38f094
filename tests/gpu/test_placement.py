"""Placement, copies and GPU kernel wrappers, on a fake GPU (runs without CuPy/CUDA)."""

from __future__ import annotations

import numpy as np
import pytest

import ops
from opgraph import Scope, errors
from opgraph.dtypes import DT_FLOAT, DT_INT32
from runtime import ClientSession, RunMetadata, RunOptions, available_devices, devices
from runtime.kernels.gpu import GpuKernel
from runtime.placement import SessionOptions
from tests.gpu.fake_device import DeviceArray, FakeGpuBackend


@pytest.fixture
def fake_gpu():
    with devices.use_gpu_backend(FakeGpuBackend()) as backend:
        yield backend


def _traced(sess, feeds, fetches, targets=()):
    meta = RunMetadata()
    out = sess.Run(RunOptions(trace_level=1), feeds, fetches, list(targets), meta)
    return out, meta


def test_available_devices_with_and_without_a_gpu(fake_gpu):
    assert [d.name for d in available_devices()] == ["/device:CPU:0", "/device:GPU:0"]


def test_without_a_gpu_only_the_cpu_is_listed():
    with devices.use_gpu_backend(FakeGpuBackend(count=0)):
        assert [d.name for d in available_devices()] == ["/device:CPU:0"]


def test_unpinned_ops_go_to_the_gpu_shape_and_constants_stay_on_the_host(fake_gpu):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT)
    c = ops.Const(root.WithOpName("c"), np.float32(2.0))
    y = ops.Mul(root.WithOpName("y"), x, c)
    r = ops.Relu(root.WithOpName("r"), x)
    z = ops.Add(root.WithOpName("z"), y, r)
    s = ops.Shape(root.WithOpName("s"), z)
    sess = ClientSession(root)
    value = np.array([-1.0, 2.0], np.float32)
    (got_z, got_s), meta = _traced(sess, {x: value}, [z, s])
    assert type(got_z) is np.ndarray and type(got_s) is np.ndarray
    np.testing.assert_allclose(got_z, [-2.0, 6.0])
    assert list(got_s) == [2]
    where = {st.node_name: st.device for st in meta.step_stats.node_stats}
    assert where["y"] == where["r"] == where["z"] == "/device:GPU:0"
    assert where["s"] == "/device:CPU:0"
    assert meta.device_placement["s"].reason == "shape-only op"
    copies = [st for st in meta.step_stats.node_stats if st.op_type.startswith("_")]
    # x is copied once although two GPU ops read it; the constant once (at compile time);
    # Shape reads z on the device without a copy; z is fetched to the host after the Run
    assert [st.op_type for st in copies] == ["_HostToDevice"]
    assert fake_gpu.space_errors == []
    before = fake_gpu.to_device_calls
    sess.Run({x: value}, [z, s])
    assert fake_gpu.to_device_calls == before + 1


def test_fetch_on_device_keeps_device_arrays(fake_gpu):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT)
    y = ops.Relu(root, x)
    out = ClientSession(root).Run(RunOptions(fetch_on_device=True), {x: np.ones(2, np.float32)},
                                  [y], [], None)
    assert isinstance(out[0], DeviceArray)


def test_device_to_host_copy_for_a_cpu_consumer(fake_gpu):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT)
    y = ops.Relu(root.WithOpName("y"), x)
    a = ops.Neg(root.WithDevice("/device:CPU:0").WithOpName("a"), y)
    b = ops.Abs(root.WithDevice("/device:CPU:0").WithOpName("b"), y)
    (ga, gb), meta = _traced(ClientSession(root), {x: np.array([1.0, -1.0], np.float32)},
                             [a, b])
    np.testing.assert_allclose(ga, [-1.0, 0.0])
    kinds = [st.op_type for st in meta.step_stats.node_stats if st.op_type.startswith("_")]
    assert kinds == ["_HostToDevice", "_DeviceToHost"]


def test_int32_tensors_stay_in_host_memory(fake_gpu):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT)
    axis = ops.Placeholder(root, DT_INT32)
    y = ops.Sum(root.WithOpName("sum"), x, axis)
    i = ops.Placeholder(root, DT_INT32)
    j = ops.Add(root.WithOpName("iadd"), i, i)
    (got, gj), meta = _traced(ClientSession(root), {x: np.ones((2, 3), np.float32),
                                                    axis: np.int32(1), i: np.int32(3)}, [y, j])
    np.testing.assert_allclose(got, [3.0, 3.0])
    where = {st.node_name: st.device for st in meta.step_stats.node_stats}
    assert where["sum"] == "/device:GPU:0" and where["iadd"] == "/device:CPU:0"
    assert fake_gpu.space_errors == []


def test_colocation_follows_the_target(fake_gpu):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT)
    y = ops.Relu(root.WithDevice("/device:CPU:0").WithOpName("y"), x)
    z = ops.Neg(root.ColocateWith(y).WithOpName("z"), y)
    w = ops.Neg(root.WithOpName("w"), y)
    _, meta = _traced(ClientSession(root), {x: np.ones(1, np.float32)}, [z, w])
    where = {st.node_name: st.device for st in meta.step_stats.node_stats}
    assert where["z"] == "/device:CPU:0" and where["w"] == "/device:GPU:0"
    assert meta.device_placement["z"].reason == "colocated with 'y'"


def test_gpu_request_without_a_gpu_names_the_missing_piece():
    with devices.use_gpu_backend(FakeGpuBackend(count=0)):
        root = Scope.NewRootScope()
        x = ops.Placeholder(root, DT_FLOAT)
        y = ops.Relu(root.WithDevice("/device:GPU:0").WithOpName("g"), x)
        with pytest.raises(errors.InvalidArgumentError,
                           match=r"'g'.*'/device:GPU:0'.*Available devices: /device:CPU:0 "
                                 r"\(the fake backend has no devices\).*allow_soft_placement"):
            ClientSession(root).Run({x: np.ones(1, np.float32)}, y)


def test_real_backend_error_names_cupy_when_it_is_absent():
    pytest.importorskip("numpy")
    if devices.gpu_backend().device_count():
        pytest.skip("a GPU is present")
    reason = devices.gpu_unavailable_reason()
    assert "CuPy" in reason or "CUDA" in reason


def test_soft_placement_moves_a_gpu_request_to_the_cpu():
    with devices.use_gpu_backend(FakeGpuBackend(count=0)):
        root = Scope.NewRootScope()
        x = ops.Placeholder(root, DT_FLOAT)
        y = ops.Relu(root.WithDevice("/device:GPU:0").WithOpName("g"), x)
        sess = ClientSession(root, options=SessionOptions(allow_soft_placement=True))
        got, meta = _traced(sess, {x: np.array([-1.0], np.float32)}, [y])
        assert got[0][0] == 0.0
        record = meta.device_placement["g"]
        assert record.device == "/device:CPU:0" and record.requested == "/device:GPU:0"
        assert "soft-placed" in record.reason


def test_pinned_gpu_without_a_gpu_kernel(fake_gpu):
    root = Scope.NewRootScope()
    i = ops.Placeholder(root, DT_INT32)
    j = ops.Add(root.WithDevice("/device:GPU:0").WithOpName("iadd"), i, i)
    with pytest.raises(errors.InvalidArgumentError,
                       match="Could not satisfy explicit device specification '/device:GPU:0'"):
        ClientSession(root).Run({i: np.int32(1)}, j)
    soft = ClientSession(root, options=SessionOptions(allow_soft_placement=True))
    assert soft.Run({i: np.int32(1)}, j) == 2


def test_host_fallback_for_numpy_only_kernels(fake_gpu):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT)
    y = ops.Erf(root.WithOpName("erf"), x)
    sess = ClientSession(root)
    before = fake_gpu.to_host_calls
    got = sess.Run({x: np.array([0.5], np.float32)}, y)
    np.testing.assert_allclose(got, [0.5204999], rtol=1e-5)
    kernel = sess.placement(y.operation)[1]
    assert isinstance(kernel, GpuKernel) and kernel.mode == "host"
    assert fake_gpu.to_host_calls >= before + 2      # the input, then the fetched result


def test_session_options_are_validated():
    with pytest.raises(TypeError):
        SessionOptions(allow_soft_placement="yes")
