"""Generic suites over the op test database (tests/op_db): every op gets the same battery.

If a test here fails for your op, the message says which entry and sample; see the module
doc of ``tests/op_db/__init__.py`` for what each field means and docs/adding_an_op.md.
"""

from __future__ import annotations

import re
import zlib

import numpy as np
import pytest

import ops
from opgraph import Scope, as_dtype, errors, get_op_def, registered_ops
from runtime import ClientSession, registered_kernels
from tests.op_db import OP_DB, tolerance
from tests.shape_dsl import infer_error, infer_ok

MODES = ("const", "known", "unknown_dims", "unknown_rank")


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _available(dtype) -> bool:
    return as_dtype(dtype).is_available


def _sample_params():
    for name, info in sorted(OP_DB.items()):
        if info.skip_generic or info.samples is None:
            continue
        for dtype in info.dtypes:
            yield pytest.param(name, dtype, id=f"{name}-{dtype.name}")


def _error_params():
    for name, info in sorted(OP_DB.items()):
        for k, case in enumerate(info.errors):
            yield pytest.param(name, k, id=f"{name}-{case.name or k}")


def _shape_params():
    for name, info in sorted(OP_DB.items()):
        for k, _case in enumerate(info.shapes):
            yield pytest.param(name, k, id=f"{name}-{k}")


def _placeholder_shape(arr, mode):
    if mode == "known":
        return list(arr.shape)
    if mode == "unknown_dims":
        return [None] * np.ndim(arr)
    return None


def build(op_type: str, inputs, attrs: dict, mode: str):
    """Build ``op_type`` on a fresh scope with its inputs as constants (mode "const") or as
    fed placeholders of known / unknown-dim / unknown-rank shape. Returns (scope, wrapper,
    feeds)."""
    root = Scope.NewRootScope()
    feeds = {}

    def node(arr, name):
        arr = np.asarray(arr)
        if mode == "const":
            return ops.Const(root.WithOpName(name), arr)
        ph = ops.Placeholder(root.WithOpName(name), as_dtype(arr.dtype),
                             shape=_placeholder_shape(arr, mode))
        feeds[ph.output] = arr
        return ph

    args = []
    for i, value in enumerate(inputs):
        if isinstance(value, list):
            args.append([node(v, f"in{i}_{j}") for j, v in enumerate(value)])
        else:
            args.append(node(value, f"in{i}"))
    wrapper = getattr(ops, op_type)(root.WithOpName("op"), *args, **attrs)
    return root, wrapper, feeds


def run(root, wrapper, feeds):
    outs = list(wrapper)
    sess = ClientSession(root)
    if not outs:
        sess.Run(feeds, [], [wrapper.operation])
        return outs, []
    return outs, sess.Run(feeds, outs)


def _as_tuple(r):
    return tuple(r) if isinstance(r, (tuple, list)) else (r,)


def _compare(got, want, dtype, where, tol=None):
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"{where}: shape {got.shape}, reference {want.shape}"
    if got.dtype.kind in "fc" or str(got.dtype) == "bfloat16":
        rtol, atol = tol or tolerance(got.dtype if str(got.dtype) != "bfloat16" else "bfloat16")
        np.testing.assert_allclose(got.astype(np.complex128 if got.dtype.kind == "c"
                                              else np.float64),
                                   want.astype(np.complex128 if want.dtype.kind == "c"
                                               else np.float64),
                                   rtol=rtol, atol=atol, equal_nan=True, err_msg=where)
    else:
        np.testing.assert_array_equal(got, want, err_msg=where)


@pytest.mark.parametrize(("op_type", "dtype"), list(_sample_params()))
def test_kernel_matches_reference_and_static_shapes(op_type, dtype):
    """For every sample and every way of building it: the kernel equals the reference, and
    the static shape/dtype agree with what the kernel returned."""
    if not _available(dtype):
        pytest.skip(f"{dtype.name} has no numpy type here")
    info = OP_DB[op_type]
    samples = info.samples(_rng(op_type, dtype.name), dtype)
    assert samples, f"op_db entry {op_type}: samples() returned nothing for {dtype.name}"
    modes = MODES if not info.skip_unknown_rank else MODES[:-1]
    for k, sample in enumerate(samples):
        want = _as_tuple(info.ref(*sample.inputs, **sample.attrs)) if info.ref else None
        for mode in modes:
            where = f"{op_type} sample {sample.name or k} ({dtype.name}, {mode})"
            root, wrapper, feeds = build(op_type, sample.inputs, sample.attrs, mode)
            assert root.ok(), f"{where}: build failed: {root.status()}"
            outs, got = run(root, wrapper, feeds)
            for j, (out, value) in enumerate(zip(outs, got)):
                assert out.dtype.as_numpy_dtype == value.dtype, (
                    f"{where}: output {j} is {value.dtype}, static dtype {out.dtype.name}")
                if mode == "const" and info.exact_from_constants:
                    assert out.shape.is_fully_defined() and \
                        tuple(out.shape.dims) == value.shape, (
                            f"{where}: output {j} has shape {value.shape}, static shape from "
                            f"constants {out.shape}")
                else:
                    assert out.shape.is_compatible_with(value.shape), (
                        f"{where}: output {j} has shape {value.shape}, static shape "
                        f"{out.shape}")
            if want is not None:
                assert len(got) == len(want), f"{where}: {len(got)} outputs, ref {len(want)}"
                for j, (g, w) in enumerate(zip(got, want)):
                    _compare(g, w, dtype, f"{where} output {j}", sample.tol)


def _core(message: str) -> str:
    """The op's own sentence, without the context the framework appends."""
    message = message.split("\n\t [[node", 1)[0]
    return re.split(r" for node '", message, maxsplit=1)[0]


@pytest.mark.parametrize(("op_type", "k"), list(_error_params()))
def test_error_cases_refused_at_build_and_run_time(op_type, k):
    """Refused at build time when the inputs are constants; at run time, with the same
    message, when built from unknown-rank placeholders."""
    case = OP_DB[op_type].errors[k]
    build_msg = None
    if case.when in ("both", "build"):
        root, _, _ = build(op_type, case.inputs, case.attrs, "const")
        assert not root.ok(), f"{op_type} error case {case.name or k}: built without error"
        err = root.status().errors[0]
        assert isinstance(err, case.error), f"expected {case.error.__name__}, got {err!r}"
        assert re.search(case.regex, str(err)), f"{case.regex!r} not in: {err}"
        build_msg = _core(err.message)
    if case.when in ("both", "run"):
        root, wrapper, feeds = build(op_type, case.inputs, case.attrs, "unknown_rank")
        assert root.ok(), (f"{op_type} error case {case.name or k}: unknown-rank build "
                           f"failed: {root.status()}")
        with pytest.raises(case.error) as exc:
            run(root, wrapper, feeds)
        assert re.search(case.regex, str(exc.value)), f"{case.regex!r} not in: {exc.value}"
        assert exc.value.op_name == "op", exc.value
        if build_msg is not None:
            assert _core(exc.value.message) == build_msg, (
                f"build and run messages differ:\n  {build_msg}\n  {_core(exc.value.message)}")


@pytest.mark.parametrize(("op_type", "k"), list(_shape_params()))
def test_shape_function_cases(op_type, k):
    case = OP_DB[op_type].shapes[k]
    if case.error is None:
        infer_ok(op_type, case.attrs, case.inputs, case.expected, case.dtype, case.output)
    else:
        infer_error(op_type, case.attrs, case.inputs, case.error, case.expected, case.dtype)


def test_every_op_has_a_kernel_an_entry_and_a_doc():
    missing = []
    for name, op_def in sorted(registered_ops().items()):
        if name.startswith("Test"):     # ops registered by tests themselves
            continue
        if not any(k.device_type == "CPU" for k in registered_kernels(name)):
            missing.append(f"{name}: no CPU kernel (runtime/kernels/cpu/<family>_kernels.py)")
        if name not in OP_DB:
            missing.append(f"{name}: no tests/op_db entry")
        if not op_def.doc.strip():
            missing.append(f"{name}: no doc in its declaration")
        if not hasattr(ops, name):
            missing.append(f"{name}: not exported by ops")
    assert not missing, "\n".join(missing)


def test_every_entry_is_a_registered_op_and_tested():
    for name, info in OP_DB.items():
        get_op_def(name)
        tested = (info.samples is not None) or bool(info.errors) or bool(info.shapes)
        assert info.skip_generic or tested, f"{name}: entry has no samples, errors or shapes"
        if info.skip_generic:
            assert len(info.skip_generic) > 10, f"{name}: say why the generic suites skip it"


def test_error_case_messages_name_the_node():
    """One sanity check of the harness itself: a failing build names the node 'op'."""
    info = next((i for i in OP_DB.values() if i.errors and i.errors[0].when != "run"), None)
    if info is None:
        pytest.skip("no error cases yet")
    case = info.errors[0]
    root, _, _ = build(info.op, case.inputs, case.attrs, "const")
    assert root.status().errors[0].op_name == "op"
    assert isinstance(root.status().errors[0], errors.OpError)
