"""Every registered op (tests/op_db) built from random and malformed arguments.

Each case derives from a seed: either an op_db sample mutated (one attr malformed, an input
reshaped, retyped or made a placeholder of unknown shape) or arguments made up from the
OpDef alone (random dtypes; shapes with zero, huge (2**40) and unknown dims; attrs of the
wrong kind, huge ints, odd strings, nested lists). Properties:

* building raises nothing: every problem is an OpError recorded in the scope, and never an
  InternalError (which means a bug in opgraph or in the op's shape function);
* build/run agreement: a graph the build accepts whose inputs are fully known and small is
  run; the kernel either raises an OpError (not InternalError: the executor reports a
  result that contradicts shape inference as one) or returns the inferred dtype and shape.

Runs happen under a small allocation limit (runtime.memory._LIMIT) so a wrong size guard
shows as a failure instead of exhausting the machine. Seeds that found bugs are kept as
explicit regression tests at the end.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import ops
from opgraph import Scope, dtypes, errors, get_op_def
from opgraph.graph import Output
from opgraph.shapes import TensorShape
from runtime import ClientSession, memory
from tests.op_db import OP_DB

CASES_PER_OP = 100
LIMIT_BYTES = 1 << 24                  # 16 MiB per buffer while fuzzing
MAX_RUN_ELEMENTS = 4096                # inputs this small are run
USABLE = [t for t in dtypes.ALL_TYPES if t.is_available]
HUGE = 2**40

# Attr values of the wrong kind or out of range, tried against every kind of attr.
_SELF = []
_SELF.append(_SELF)
MALFORMED = [None, "", "\n", "a\x00b", b"\xff", "SAME\n", 1.5, float("nan"), float("inf"),
             -1, 0, 2**31, 2**63, -(2**63) - 1, 2**1000, True, [], [[1, 2]], [1, [2]],
             ["a"], [None], {"a": 1}, {1, 2}, object(), np.int64(2), np.float32(1),
             np.array([1, 2]), np.zeros((2, 2)), [2**63], [1] * 9, _SELF,
             dtypes.DT_STRING, "float", "notatype", TensorShape([None, 2]), [HUGE, HUGE],
             [-1, -1, -1, -1], [0, 0, 0, 0]]


@pytest.fixture(autouse=True)
def small_allocation_limit(monkeypatch):
    """opgraph's allocation limit made small, and (where the OS allows) the process's
    address space capped a few GiB above its current size, so an allocation the guard
    misses is a MemoryError the test reports instead of the machine running out."""
    monkeypatch.setattr(memory, "_LIMIT", LIMIT_BYTES)
    try:
        import resource  # noqa: PLC0415
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        old = resource.getrlimit(resource.RLIMIT_AS)
        cap = vm + (3 << 30)
        if old[1] != resource.RLIM_INFINITY and old[1] < cap:
            raise OSError
        resource.setrlimit(resource.RLIMIT_AS, (cap, old[1]))
    except (ImportError, OSError, StopIteration, ValueError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _random_array(rng, shape, dtype) -> np.ndarray:
    npd = dtype.as_numpy_dtype
    if npd == np.bool_:
        return rng.random(shape) < 0.5
    if npd == object:
        return np.array(rng.choice(["a", "", "bc"], size=shape), dtype=object)
    if npd.kind in "iu":
        return rng.integers(-3 if npd.kind == "i" else 0, 6, size=shape).astype(npd)
    if npd.kind == "c":
        return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(npd)
    return rng.normal(size=shape).astype(npd)


def _random_shape(rng):
    if rng.random() < 0.12:
        return None                                        # unknown rank
    rank = int(rng.integers(0, 5))
    choices = [0, 1, 2, 3, 1, 2, 3, HUGE, None]
    return [choices[int(rng.integers(len(choices)))] for _ in range(rank)]


def _good_attr(rng, d):
    """A plausible value for attr ``d`` (not always a valid one)."""
    if d.allowed is not None and d.kind == "string":
        one = lambda: str(rng.choice(d.allowed))  # noqa: E731
    elif d.allowed is not None:
        one = lambda: d.allowed[int(rng.integers(len(d.allowed)))]  # noqa: E731
    elif d.kind == "int":
        one = lambda: int(rng.choice([0, 1, 2, 3, -1, 1, 1]))  # noqa: E731
    elif d.kind == "float":
        one = lambda: float(rng.choice([0.0, 0.5, 1.0, 1e-3, -1.0]))  # noqa: E731
    elif d.kind == "bool":
        one = lambda: bool(rng.random() < 0.5)  # noqa: E731
    elif d.kind == "type":
        one = lambda: USABLE[int(rng.integers(len(USABLE)))]  # noqa: E731
    elif d.kind == "shape":
        one = lambda: _random_shape(rng)  # noqa: E731
    elif d.kind == "tensor":
        one = lambda: _random_array(rng, (2,), dtypes.DT_FLOAT)  # noqa: E731
    else:
        one = lambda: "abc"  # noqa: E731
    if d.is_list:
        n = int(rng.choice([0, 1, 2, 4, 4, 4]))
        return [one() for _ in range(n)]
    return one()


def _tensor(root, rng, dtype, shape, feeds, const_ok=True):
    """A Const (known small shape, sometimes) or a Placeholder of ``shape``, fed with a
    matching value when the shape is fully known and small."""
    known = shape is not None and all(d is not None for d in shape)
    small = known and max(shape, default=0) <= MAX_RUN_ELEMENTS and \
        int(np.prod(shape, dtype=object)) <= MAX_RUN_ELEMENTS
    if small and const_ok and rng.random() < 0.5:
        return ops.Const(root, _random_array(rng, shape, dtype)).output
    p = ops.Placeholder(root, dtype, shape=shape)
    if small:
        feeds[p.output] = _random_array(rng, shape, dtype)
    else:
        feeds[p.output] = None                             # not runnable
    return p.output


def _from_op_def(rng, op_def, root, feeds):
    """Inputs and attrs made up from the OpDef alone."""
    type_values = {}
    for name, allowed in op_def.type_attrs().items():
        pool = [t for t in allowed if t.is_available] or USABLE
        type_values[name] = pool[int(rng.integers(len(pool)))] if rng.random() < 0.9 else \
            USABLE[int(rng.integers(len(USABLE)))]
    inputs = []
    for arg in op_def.inputs:
        def one():
            dt = arg.fixed_type or type_values.get(arg.type_attr) or dtypes.DT_FLOAT
            if rng.random() < 0.05:
                dt = USABLE[int(rng.integers(len(USABLE)))]
            return _tensor(root, rng, dt, _random_shape(rng), feeds)
        if arg.number_attr is not None:
            inputs.append([one() for _ in range(int(rng.integers(0, 4)))])
        else:
            inputs.append(one())
    attrs = {}
    settable = (*op_def.required_attrs, *op_def.optional_attrs)
    for k in settable:
        d = op_def.attrs[k]
        if k in op_def.required_attrs or rng.random() < 0.3:
            attrs[k] = MALFORMED[int(rng.integers(len(MALFORMED)))] if rng.random() < 0.15 \
                else _good_attr(rng, d)
    return inputs, attrs


def _from_sample(rng, info, op_def, root, feeds):
    """An op_db sample with one mutation, or None when the op has no samples."""
    if info.samples is None:
        return None
    dts = [t for t in info.dtypes if t.is_available]
    if not dts:
        return None
    dtype = dts[int(rng.integers(len(dts)))]
    samples = info.samples(np.random.default_rng(int(rng.integers(1 << 30))), dtype)
    if not samples:
        return None
    sample = samples[int(rng.integers(len(samples)))]
    values = [list(v) if isinstance(v, list) else np.asarray(v) for v in sample.inputs]
    attrs = dict(sample.attrs)
    mutation = rng.choice(["none", "attr", "shape", "dtype", "unknown", "zero", "value"])
    flat_slots = [(i, None) for i, v in enumerate(values) if not isinstance(v, list)] + \
        [(i, j) for i, v in enumerate(values) if isinstance(v, list) for j in range(len(v))]
    target = flat_slots[int(rng.integers(len(flat_slots)))] if flat_slots else None
    settable = (*op_def.required_attrs, *op_def.optional_attrs)
    if mutation == "attr" and settable:
        k = settable[int(rng.integers(len(settable)))]
        attrs[k] = MALFORMED[int(rng.integers(len(MALFORMED)))] if rng.random() < 0.6 else \
            _good_attr(rng, op_def.attrs[k])
    inputs = []
    for i, v in enumerate(values):
        def node(arr, slot):
            arr = np.asarray(arr)
            dt = dtypes.as_dtype(arr.dtype)
            hit = slot == target
            if hit and mutation == "dtype":
                dt = USABLE[int(rng.integers(len(USABLE)))]
                return _tensor(root, rng, dt, list(arr.shape), feeds)
            if hit and mutation == "shape":
                return _tensor(root, rng, dt, _random_shape(rng), feeds)
            if hit and mutation == "zero" and arr.ndim:
                shape = list(arr.shape)
                shape[int(rng.integers(arr.ndim))] = 0
                return _tensor(root, rng, dt, shape, feeds)
            if hit and mutation == "value" and arr.dtype.kind in "iu" and arr.size:
                bad = arr.copy()
                bad.reshape(-1)[int(rng.integers(arr.size))] = rng.choice([-7, 9, 0, 1])
                arr = bad
            if hit and mutation == "unknown":
                shape = None if rng.random() < 0.5 else [None] * arr.ndim
                p = ops.Placeholder(root, dt, shape=shape)
                feeds[p.output] = arr
                return p.output
            if rng.random() < 0.5:
                return ops.Const(root, arr).output
            p = ops.Placeholder(root, dt, shape=list(arr.shape))
            feeds[p.output] = arr
            return p.output
        if isinstance(v, list):
            inputs.append([node(a, (i, j)) for j, a in enumerate(v)])
        else:
            inputs.append(node(v, (i, None)))
    return inputs, attrs


def build_case(op_type: str, seed: int):
    """(root, op, feeds) for one fuzz case; ``feeds`` maps placeholders to values (None for
    a placeholder whose shape is too large or not known)."""
    rng = _rng(op_type, seed)
    op_def = get_op_def(op_type)
    root = Scope.NewRootScope()
    feeds = {}
    made = None
    if rng.random() < 0.6:
        made = _from_sample(rng, OP_DB[op_type], op_def, root, feeds)
    if made is None:
        made = _from_op_def(rng, op_def, root, feeds)
    inputs, attrs = made
    op = root.WithOpName("fuzzed").build_op(op_def, inputs, attrs)
    return root, op, feeds


#: Bugs the fuzz found in files outside this suite's reach, tolerated here (and counted)
#: until fixed, each with a strict-xfail reproduction below: name -> (reason, matcher).
KNOWN_BUGS: dict = {}        # none open: the four found so far are fixed (tests below)
TOLERATED: dict = {}


def _known(op_type: str, msg: str) -> str | None:
    for key, (_, matches) in KNOWN_BUGS.items():
        if matches(op_type, msg):
            TOLERATED[key] = TOLERATED.get(key, 0) + 1
            return key
    return None


def check_case(op_type: str, seed: int, stats: dict | None = None):
    where = f"{op_type} seed {seed}"
    try:
        root, op, feeds = build_case(op_type, seed)
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"{where}: building raised {type(e).__name__}: {e}")
    bugs = [e for e in root.status().errors
            if not isinstance(e, errors.OpError) or isinstance(e, errors.InternalError)
            or str(e).startswith("Out of memory while building")]     # a missing bound
    bugs = [e for e in bugs if not _known(op_type, str(e))]
    assert not bugs, f"{where}: {bugs[0]!r}"
    if stats is not None:
        stats["built"] = stats.get("built", 0) + 1
    if not root.ok():
        return
    if stats is not None:
        stats["accepted"] = stats.get("accepted", 0) + 1
    if any(v is None for v in feeds.values()) or op.num_outputs == 0:
        return
    for i, t in enumerate(op.output_dtypes):
        assert t is not None, f"{where}: output {i} has no dtype"
    fetches = [Output(op, i) for i in range(op.num_outputs)]
    try:
        results = ClientSession(root).Run(feeds, fetches)
    except errors.InternalError as e:
        if _known(op_type, str(e)):
            return
        pytest.fail(f"{where}: build/run disagreement or kernel bug: {e}")
    except errors.ResourceExhaustedError as e:
        # the guard refuses before allocating; a real MemoryError means it missed a buffer
        assert not str(e).startswith("MemoryError"), f"{where}: unguarded allocation: {e}"
        return
    except errors.OpError:
        return
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"{where}: Run raised {type(e).__name__}: {e}")
    if stats is not None:
        stats["ran"] = stats.get("ran", 0) + 1
    for i, r in enumerate(results):
        static = op.output_shapes[i]
        if r.dtype != op.output_dtypes[i].as_numpy_dtype and _known(op_type,
                                                                    f"dtype {r.dtype}"):
            continue
        assert r.dtype == op.output_dtypes[i].as_numpy_dtype, (where, i, r.dtype)
        assert static.is_compatible_with(r.shape), (where, i, static, r.shape)
        if static.is_fully_defined():
            assert list(r.shape) == static.as_list(), (where, i, static, r.shape)


@pytest.mark.parametrize("op_type", sorted(OP_DB))
def test_fuzzed_construction_and_build_run_agreement(op_type):
    for seed in range(CASES_PER_OP):
        check_case(op_type, seed)


# ---- regression tests ---------------------------------------------------------------------
#: (op, seed) cases that found bugs (kept so a regression shows at once); the seeds depend
#: on the op_db samples, so each bug also has a hand-written test below.
FOUND = [
    ("Split", 72),              # num_split = 2**31: 2**31 output dtypes (machine OOM)
    ("Fill", 140),              # dims vector of 2**40 elements (shape-vector bug)
    ("Reshape", 28), ("RandomUniform", 49), ("ScatterNd", 39), ("Tile", 364),
    ("Transpose", 132), ("BroadcastTo", 304), ("TruncatedNormal", 90),
    ("Unpack", 373),            # string kernel result
]


@pytest.mark.parametrize(("op_type", "seed"), FOUND)
def test_seeds_that_found_bugs(op_type, seed):
    if op_type not in OP_DB:
        pytest.skip(f"{op_type} is not registered")
    check_case(op_type, seed)


def test_list_output_length_is_bounded():
    # Split's num_split sized the output list before any check: 2**31 outputs made the
    # build itself exhaust memory. Now an InvalidArgumentError, at once.
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, dtypes.DT_FLOAT)
    root.WithOpName("s").build_op("Split", [np.int32(0), x], {"num_split": 2**31})
    (err,) = root.status().errors
    assert type(err) is errors.InvalidArgumentError
    assert "a node has between 0 and" in str(err) and "'s'" in str(err)


def test_a_shape_vector_longer_than_max_rank_is_invalid_argument():
    root = Scope.NewRootScope()
    dims = ops.Placeholder(root, dtypes.DT_INT32, shape=[2**40])
    root.build_op("Fill", [dims, np.float32(0)], {})
    (err,) = root.status().errors
    assert type(err) is errors.InvalidArgumentError, err


def test_unpack_of_strings_returns_object_arrays():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, dtypes.DT_STRING, shape=[2])
    out = root.build_op("Unpack", [x], {"num": 2})
    a, b = ClientSession(root).Run({x: np.array(["ab", "c"], dtype=object)}, list(out.outputs))
    assert a.dtype == object and a.item() == "ab" and b.item() == "c"


_DEEP_LIST = [1]
for _ in range(3000):
    _DEEP_LIST = [_DEEP_LIST]


def test_deeply_nested_attr_value_is_invalid_argument():
    root = Scope.NewRootScope()
    ops.Squeeze(root, np.zeros((1, 2), np.float32), squeeze_dims=_DEEP_LIST)
    (err,) = root.status().errors
    assert type(err) is errors.InvalidArgumentError, err


def test_astronomically_large_int_attr_is_invalid_argument():
    root = Scope.NewRootScope()
    ops.Squeeze(root, np.zeros((1, 2), np.float32), squeeze_dims=[10**5000])
    (err,) = root.status().errors
    assert type(err) is errors.InvalidArgumentError, err


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**1000, -(2**1000), [2**63]])
def test_int_attrs_beyond_int64_are_refused(value):
    root = Scope.NewRootScope()
    if isinstance(value, list):
        ops.Squeeze(root, np.zeros((1, 2), np.float32), squeeze_dims=value) \
            if "Squeeze" in OP_DB else pytest.skip("no Squeeze")
    else:
        ops.Placeholder(root, dtypes.DT_FLOAT, shape=[value])
        ops.Conv2D(root, np.zeros((1, 4, 4, 1), np.float32), np.zeros((1, 1, 1, 1), np.float32),
                   [1, value, 1, 1], "SAME")
    assert root.status().errors
    for e in root.status().errors:
        assert type(e) is errors.InvalidArgumentError, e
        assert "range" in str(e) or "shape" in str(e), e


def test_shape_of_dims_beyond_int32():
    root = Scope.NewRootScope()
    p = ops.Placeholder(root, dtypes.DT_FLOAT, shape=[2**31, 2])
    s64 = ops.Shape(root, p, out_type=dtypes.DT_INT64)
    assert root.ok(), root.status()
    assert s64.operation.output_values[0].tolist() == [2**31, 2]
    ops.Shape(root.WithOpName("s32"), p)                 # int32 is too small: an error
    (err,) = root.status().errors
    assert type(err) is errors.InvalidArgumentError and "int32" in str(err)
    r2 = Scope.NewRootScope()
    q = ops.Placeholder(r2, dtypes.DT_FLOAT, shape=[2**62, None])
    ops.Shape(r2, q, out_type=dtypes.DT_INT64)
    assert r2.ok(), r2.status()


def test_a_shape_function_bug_is_recorded_as_internal_error():
    # The safety net: a foreign exception from a shape function is an InternalError
    # naming the node (not an exception escaping the wrapper).
    from opgraph.op_def import OpDef

    def broken(c):
        raise OverflowError("Python int too large to convert to C long")

    op_def = OpDef("FuzzBrokenShapeFn", inputs=["x: T"], outputs=["y: T"], attrs=["T: type"],
                   shape_fn=broken)
    root = Scope.NewRootScope()
    root.WithOpName("b").build_op(op_def, [np.float32(1)], {})
    (err,) = root.status().errors
    assert type(err) is errors.InternalError
    assert "OverflowError" in str(err) and "'b'" in str(err)
