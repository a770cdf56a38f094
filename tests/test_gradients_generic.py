"""Gradient suite over the op test database: every op with a ``grad_tol`` has a registered
gradient that agrees with central finite differences in float64 (TF's gradient checker)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import ops
from opgraph import DT_DOUBLE, Scope, as_dtype, gradients, registered_ops
from opgraph.testing import compute_gradient_error
from tests.op_db import OP_DB

_FLOAT_KINDS = "fc"


def _grad_params():
    for name, info in sorted(OP_DB.items()):
        if info.grad_tol is not None and info.samples is not None:
            yield pytest.param(name, id=name)


def _float64_samples(info):
    rng = np.random.default_rng(zlib.crc32(info.op.encode()))
    dtype = DT_DOUBLE if DT_DOUBLE in info.dtypes else next(
        (t for t in info.dtypes if t.name.startswith("float")), None)
    if dtype is None:
        return []
    return info.samples(rng, dtype)


@pytest.mark.parametrize("op_type", list(_grad_params()))
def test_gradient_matches_finite_differences(op_type):
    info = OP_DB[op_type]
    if not gradients.is_differentiable(op_type):
        pytest.fail(f"{op_type} has grad_tol in tests/op_db but no @gradient({op_type!r}) "
                    f"beside its declaration")
    samples = _float64_samples(info)
    checked = 0
    for sample in samples[:3]:
        root = Scope.NewRootScope()
        xs, shapes, values, args, feeds = [], [], [], [], {}
        for i, value in enumerate(sample.inputs):
            if isinstance(value, list):
                group = []
                for v in value:
                    v = np.asarray(v)
                    ph = ops.Placeholder(root, as_dtype(v.dtype), shape=list(v.shape))
                    group.append(ph)
                    if v.dtype.kind in _FLOAT_KINDS and v.size:
                        xs.append(ph.output), shapes.append(v.shape), values.append(v)
                    else:
                        feeds[ph.output] = v
                args.append(group)
                continue
            v = np.asarray(value)
            wanted = info.grad_inputs is None or i in info.grad_inputs
            if v.dtype.kind in _FLOAT_KINDS and wanted and v.size:
                ph = ops.Placeholder(root, as_dtype(v.dtype), shape=list(v.shape))
                xs.append(ph.output), shapes.append(v.shape), values.append(v)
                args.append(ph)
            else:
                args.append(ops.Const(root, v))
        op = getattr(ops, op_type)(root, *args, **sample.attrs)
        ys = [o for o in op if o.dtype.name.startswith("float") and o.shape.num_elements()]
        if not xs or not ys:
            continue
        err = compute_gradient_error(root, xs, shapes, ys, [o.shape.dims for o in ys],
                                     x_init_values=values, delta=1e-6, feeds=feeds)
        assert err < info.grad_tol, (f"{op_type} sample {sample.name or checked}: max "
                                     f"Jacobian error {err:.3g} >= {info.grad_tol}")
        checked += 1
    assert checked, f"{op_type}: no sample had float inputs and outputs to check"


def test_every_differentiable_op_has_a_gradient_decision():
    """Each registered op either has a gradient or is declared not differentiable."""
    missing = [name for name in sorted(registered_ops())
               if not name.startswith("Test") and not gradients.is_differentiable(name)
               and name not in gradients.NOT_DIFFERENTIABLE]
    assert not missing, ("ops with neither @gradient nor not_differentiable(): "
                         + ", ".join(missing))
