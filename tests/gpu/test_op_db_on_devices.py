"""The op_db samples run on every device present: the fake GPU always (CI), a real GPU
when CuPy and a CUDA device are there; results must equal the CPU kernel's."""

from __future__ import annotations

import numpy as np
import pytest

from runtime import devices
from tests.gpu.fake_device import FakeGpuBackend
from tests.op_db import OP_DB, tolerance
from tests.test_ops_generic import _available, _rng, build, run


def _params():
    for name, info in sorted(OP_DB.items()):
        if info.skip_generic or info.samples is None:
            continue
        dtypes = [d for d in info.dtypes if _available(d)]
        if dtypes:
            yield pytest.param(name, dtypes[0], id=f"{name}-{dtypes[0].name}")


def _run_all(op_type, dtype):
    info = OP_DB[op_type]
    out = []
    for sample in info.samples(_rng(op_type, dtype.name, "gpu"), dtype):
        root, wrapper, feeds = build(op_type, sample.inputs, sample.attrs, "known")
        out.append(run(root, wrapper, feeds)[1])
    return out


def _check_same(op_type, on_cpu, on_gpu):
    for k, (c, g) in enumerate(zip(on_cpu, on_gpu)):
        for j, (a, b) in enumerate(zip(c, g)):
            assert type(b) is np.ndarray and a.dtype == b.dtype and a.shape == b.shape
            if a.dtype.kind not in "fc":
                np.testing.assert_array_equal(b, a, err_msg=f"{op_type} sample {k}")
                continue
            rtol, atol = tolerance(a.dtype)
            np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, equal_nan=True,
                                       err_msg=f"{op_type} sample {k} output {j}")


@pytest.mark.parametrize(("op_type", "dtype"), list(_params()))
def test_op_db_samples_on_the_fake_gpu(op_type, dtype):
    if OP_DB[op_type].notes and "random" in OP_DB[op_type].notes.lower():
        pytest.skip("random op")
    on_cpu = _run_all(op_type, dtype)
    backend = FakeGpuBackend()
    with devices.use_gpu_backend(backend):
        on_gpu = _run_all(op_type, dtype)
    assert backend.space_errors == []
    _check_same(op_type, on_cpu, on_gpu)


@pytest.mark.gpu
@pytest.mark.parametrize(("op_type", "dtype"), list(_params()))
def test_op_db_samples_on_the_real_gpu(op_type, dtype):
    if not devices.gpu_backend().device_count():
        pytest.skip(f"no GPU: {devices.gpu_unavailable_reason()}")
    on_cpu = _run_all(op_type, dtype)
    with devices.use_gpu_backend(devices.gpu_backend()):     # GPU twins registered
        on_gpu = _run_all(op_type, dtype)
    _check_same(op_type, on_cpu, on_gpu)
