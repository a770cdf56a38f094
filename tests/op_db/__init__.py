"""The op test database, in the spirit of torch's OpInfo: one entry per op.

Each family module ``tests/op_db/<family>.py`` defines ``ENTRIES = [OpInfo(...), ...]``;
this package collects them into ``OP_DB`` (op type -> OpInfo). The generic suites in
``tests/test_ops_generic.py`` run every entry:

* build/run agreement: built from constants (values known at build time), the static shape
  and dtype equal the kernel's result; built from placeholders with known, unknown-dim and
  unknown-rank shapes, the static shape is compatible with the result;
* the kernel equals ``ref`` (an independent numpy reference written for the test) within
  the dtype's tolerance;
* every ``ErrorCase`` is refused at build time when the inputs are constants and at run time
  (with the same message) when nothing about them was known at build time;
* ``ShapeCase`` rows check the shape function through the DSL of ``tests/shape_dsl.py``;
* completeness: every registered op has a CPU kernel and an entry.

Writing an entry::

    OpInfo("BiasAdd", ref=lambda x, b, *, data_format="NHWC": ...,
           dtypes=FLOATS,
           samples=lambda rng, dt: [Sample((rand(rng, (2, 3, 4), dt), rand(rng, (4,), dt)))],
           errors=[ErrorCase((np.zeros((2, 3), F32), np.zeros(4, F32)), regex="...")],
           shapes=[ShapeCase("[?,3,4];[4]", "[d0_0,3,4]")])

``ref`` receives the sample's arrays and the sample's attrs as keywords. A sample input may be
a list of arrays (for ``N * T`` inputs). Inputs named in ``OpInfo.value_inputs`` (axes,
shapes, perms) are meant to be constants in real graphs; the suites also feed them.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

import attrs as _attrs
import numpy as np

from opgraph import dtypes as dt
from opgraph import errors

__all__ = ["OpInfo", "Sample", "ErrorCase", "ShapeCase", "OP_DB", "FLOATS", "REALS", "INTS",
           "NUMBERS", "rand", "tolerance"]

FLOATS = (dt.DT_HALF, dt.DT_FLOAT, dt.DT_DOUBLE)
INTS = (dt.DT_INT32, dt.DT_INT64)
REALS = FLOATS + INTS
NUMBERS = REALS + (dt.DT_COMPLEX64,)

_TOL = {"float16": (2e-2, 2e-2), "bfloat16": (5e-2, 5e-2), "float32": (2e-5, 2e-5),
        "float64": (1e-10, 1e-10), "complex64": (2e-5, 2e-5), "complex128": (1e-10, 1e-10)}


def tolerance(dtype) -> tuple[float, float]:
    """(rtol, atol) for comparing a kernel with its reference in ``dtype``; 0 for exact types."""
    return _TOL.get(np.dtype(dtype).name, (0.0, 0.0))


def rand(rng: np.random.Generator, shape, dtype, low=-2.0, high=2.0) -> np.ndarray:
    """Random values of ``dtype`` (a DType or numpy dtype) in [low, high)."""
    npd = dt.as_dtype(dtype).as_numpy_dtype if isinstance(dtype, dt.DType) else np.dtype(dtype)
    if npd == np.bool_:
        return rng.random(shape) < 0.5
    if npd.kind in "iu":
        lo = max(int(low), np.iinfo(npd).min)
        return rng.integers(lo, max(int(high), lo + 1), size=shape).astype(npd)
    if npd.kind == "c":
        return (rng.uniform(low, high, shape) + 1j * rng.uniform(low, high, shape)).astype(npd)
    return rng.uniform(low, high, shape).astype(npd)


@_attrs.frozen
class Sample:
    """One call: ``inputs`` (arrays, or lists of arrays for list inputs) and ``attrs``."""

    inputs: tuple = _attrs.field(converter=tuple)
    attrs: dict = _attrs.field(factory=dict)
    name: str = ""
    #: compare with ref in float64 terms within this (rtol, atol) instead of the dtype's
    tol: tuple | None = None


@_attrs.frozen
class ErrorCase:
    """Inputs (and attrs) the op must refuse with ``error`` whose message matches ``regex``.

    ``when``: "both" (build time from constants, run time from unknown-shape placeholders),
    "build" (attr errors: only at build time) or "run" (only knowable from the data).
    """

    inputs: tuple = _attrs.field(converter=tuple)
    attrs: dict = _attrs.field(factory=dict)
    regex: str = ""
    error: type = errors.InvalidArgumentError
    when: str = _attrs.field(default="both",
                            validator=_attrs.validators.in_(("both", "build", "run")))
    name: str = ""


@_attrs.frozen
class ShapeCase:
    """A shape-DSL row: ``infer_ok(op, attrs, inputs, expected)`` or, with ``error`` set,
    ``infer_error(op, attrs, inputs, error, expected-as-regex)``."""

    inputs: str
    expected: str
    attrs: dict = _attrs.field(factory=dict)
    error: type | None = None
    #: one DType for every placeholder input, or a tuple with one per input
    dtype: object = dt.DT_FLOAT
    #: which output's shape ``expected`` describes
    output: int = 0


@_attrs.frozen
class OpInfo:
    """Everything the generic suites need to test one op."""

    op: str
    ref: Callable | None = None
    samples: Callable | None = None          # (rng, DType) -> list[Sample]
    dtypes: tuple = FLOATS
    errors: tuple = _attrs.field(default=(), converter=tuple)
    shapes: tuple = _attrs.field(default=(), converter=tuple)
    #: inputs whose *values* matter to the shape (axes, shapes, perms): named for readers
    value_inputs: tuple = ()
    #: the reason the generic suites skip this op (tested by hand elsewhere), or ""
    skip_generic: str = ""
    #: from constant inputs the static shape is exact (False: only compatible, e.g. ops
    #: whose declared output shape is deliberately more general)
    exact_from_constants: bool = True
    #: the generic unknown-rank variant is skipped (e.g. list inputs) when set
    skip_unknown_rank: bool = False
    #: gradient check tolerance (float64 finite differences) or None: not differentiable
    grad_tol: float | None = None
    #: the differentiable inputs for the gradient check (default: every float input)
    grad_inputs: tuple | None = None
    #: deterministic output order is not guaranteed (compare sorted) -- rarely needed
    notes: str = ""


def _collect() -> dict[str, OpInfo]:
    db: dict[str, OpInfo] = {}
    for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{m.name}")
        for info in getattr(module, "ENTRIES", ()):
            if info.op in db:
                msg = f"op_db: two entries for {info.op} (second in tests/op_db/{m.name}.py)"
                raise ValueError(msg)
            db[info.op] = info
    return db


OP_DB = _collect()
