"""ClientSession and executor behaviour (non-conv ops; conv kernels have their own files)."""

import gc
import threading
import weakref

import numpy as np
import pytest

import ops
from opgraph import DT_FLOAT, DT_INT32, Scope, errors
from runtime import ClientSession, RunMetadata, RunOptions, registered_kernels
from runtime.kernel_registry import Kernel, find_kernel, register_kernel


@pytest.fixture
def chain():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, ops.Placeholder.Shape([2, 3]))
    y = ops.AddV2(root.WithOpName("y"), x, np.float32(1))
    z = ops.AddV2(root.WithOpName("z"), y, y)          # same output twice: Add(y, y)
    return root, x, y, z


def test_run_forms(chain):
    root, x, y, z = chain
    sess = ClientSession(root)
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    (zv,) = sess.Run({x: xv}, [z])
    np.testing.assert_array_equal(zv, 2 * (xv + 1))
    single = sess.Run({x: xv}, z)                       # a single fetch gives one array
    assert isinstance(single, np.ndarray)
    np.testing.assert_array_equal(single, zv)
    yv, zv2 = sess.Run({x: xv}, [y, z], [])
    np.testing.assert_array_equal(yv, xv + 1)
    meta = RunMetadata()
    out = sess.Run(RunOptions(), {x: xv}, [z], [], meta)
    np.testing.assert_array_equal(out[0], zv)
    assert meta.step_stats.node_stats == []             # no trace asked for
    assert sess.Run(fetches=[z], feeds={x: xv})[0].shape == (2, 3)


def test_same_fetch_twice_and_names(chain):
    root, x, _, z = chain
    sess = ClientSession(root)
    a, b = sess.Run({"x:0": np.ones((2, 3), np.float32)}, [z, "z:0"])
    np.testing.assert_array_equal(a, b)


def test_python_values_are_converted_to_the_feed_dtype(chain):
    root, x, _, z = chain
    out = ClientSession(root).Run({x: [[0, 1, 2], [3, 4, 5]]}, z)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, 2 * (np.arange(6).reshape(2, 3) + 1))


def test_trace_records_step_stats(chain):
    root, x, _, z = chain
    meta = RunMetadata()
    ClientSession(root).Run(RunOptions(trace_level=RunOptions.FULL_TRACE),
                            {x: np.zeros((2, 3), np.float32)}, [z], [], meta)
    stats = meta.step_stats.node_stats
    assert [s.node_name for s in stats] == ["y", "z"]
    for s in stats:
        assert s.op_type == "AddV2"
        assert s.device == "/device:CPU:0"
        assert s.duration_us >= 0 and s.start_us > 0
        assert s.output_shapes == [[2, 3]] and s.output_dtypes == ["float32"]
    trace = meta.step_stats.to_chrome_trace()
    assert [e["name"] for e in trace["traceEvents"]] == ["y", "z"]


def test_unfed_placeholder_is_named(chain):
    root, _, _, z = chain
    with pytest.raises(errors.InvalidArgumentError,
                       match=r"must feed a value for placeholder tensor 'x' with dtype float32 "
                             r"and shape \[2, 3\]"):
        ClientSession(root).Run([z])


@pytest.mark.parametrize(("value", "match"), [
    (np.zeros((2, 3), np.int32), "dtype int32 but the tensor's dtype is float32"),
    (np.zeros((3, 3), np.float32), r"shape \[3, 3\].*static shape \[2, 3\]"),
    ([[1, 2], [3]], "ragged"),
])
def test_bad_feeds(chain, value, match):
    root, x, _, z = chain
    with pytest.raises(errors.InvalidArgumentError, match=match):
        ClientSession(root).Run({x: value}, [z])


def test_any_output_can_be_fed_and_upstream_is_not_run(chain):
    root, x, y, z = chain
    # x is not fed: feeding y cuts it off, so the unfed placeholder is not needed.
    out = ClientSession(root).Run({y: np.full((2, 3), 5, np.float32)}, z)
    np.testing.assert_array_equal(out, np.full((2, 3), 10, np.float32))


def test_fed_and_fetched_returns_the_fed_value(chain):
    root, x, _, _ = chain
    xv = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(ClientSession(root).Run({x: xv}, x), xv)


def test_no_fetch_no_target_is_an_error(chain):
    root, *_ = chain
    with pytest.raises(errors.InvalidArgumentError, match="at least one target"):
        ClientSession(root).Run([])


def test_session_refuses_a_failed_scope():
    root = Scope.NewRootScope()
    ops.Identity(root, ops.Const(root, [[1, 2], [3]]))
    with pytest.raises(errors.InvalidArgumentError, match="ragged"):
        ClientSession(root)


def test_session_refuses_a_scope_that_fails_after_creation(chain):
    root, x, _, z = chain
    sess = ClientSession(root)
    ops.AddV2(root, x, np.zeros((2, 3), np.int32))       # dtype mismatch recorded
    with pytest.raises(errors.InvalidArgumentError, match="Inconsistent values for attr 'T'"):
        sess.Run({x: np.zeros((2, 3), np.float32)}, z)


def test_graph_can_grow_after_first_run(chain):
    root, x, _, z = chain
    sess = ClientSession(root)
    xv = np.zeros((2, 3), np.float32)
    sess.Run({x: xv}, z)
    w = ops.AddV2(root, z, np.float32(10))
    np.testing.assert_array_equal(sess.Run({x: xv}, w), np.full((2, 3), 12, np.float32))


def test_plan_is_compiled_once_per_signature(chain, monkeypatch):
    import runtime.session as session_mod

    root, x, y, z = chain
    calls = []
    real = session_mod.compile_plan

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(session_mod, "compile_plan", counting)
    sess = ClientSession(root)
    for _ in range(3):
        sess.Run({x: np.zeros((2, 3), np.float32)}, [z])
    assert len(calls) == 1
    sess.Run({x: np.zeros((2, 3), np.float32)}, [y])
    assert len(calls) == 2


_calls: list[str] = []


@register_kernel("Identity", "CPU", {"T": (DT_INT32,)}, label="counting")
class _CountingIdentity(Kernel):
    def compute(self, x):
        _calls.append(self.node.name)
        return x


def test_pruning_runs_only_what_fetches_need():
    _calls.clear()
    root = Scope.NewRootScope()
    counted = root.WithKernelLabel("counting")
    a = ops.Placeholder(root, DT_INT32)
    b = ops.Identity(counted.WithOpName("b"), a)
    ops.Identity(counted.WithOpName("unneeded"), a)
    assert ClientSession(root).Run({a: np.int32(3)}, b) == 3
    assert _calls == ["b"]


def test_control_dependencies_run_first_and_targets_run():
    _calls.clear()
    root = Scope.NewRootScope()
    counted = root.WithKernelLabel("counting")
    a = ops.Placeholder(root, DT_INT32)
    first = ops.Identity(counted.WithOpName("first"), a)
    second = ops.Identity(counted.WithControlDependencies(first).WithOpName("second"), a)
    sess = ClientSession(root)
    sess.Run({a: np.int32(1)}, second)
    assert _calls == ["first", "second"]
    _calls.clear()
    assert sess.Run({a: np.int32(1)}, [], [first]) is None
    assert _calls == ["first"]


def test_constant_subgraphs_are_computed_once_per_session():
    _calls.clear()
    root = Scope.NewRootScope()
    c = ops.Identity(root.WithKernelLabel("counting").WithOpName("c"), np.int32(4))
    p = ops.Placeholder(root, DT_INT32)
    y = ops.AddV2(root, c, p)
    sess = ClientSession(root)
    assert [int(sess.Run({p: np.int32(i)}, y)) for i in range(3)] == [4, 5, 6]
    assert _calls == ["c"]                        # folded once, reused by every Run
    # Feeding the constant overrides it (and re-running nothing upstream).
    assert int(sess.Run({c: np.int32(10), p: np.int32(1)}, y)) == 11


def test_intermediates_are_released_after_last_use():
    """The executor drops each intermediate once its last consumer ran."""
    seen = []

    @register_kernel("Identity", "CPU", {"T": (DT_FLOAT,)}, label="probe")
    class Probe(Kernel):
        def compute(self, x):
            out = x + 0                           # a fresh array we can watch
            seen.append(weakref.ref(out))
            if len(seen) == 3:                    # at the third op, the first must be gone
                gc.collect()
                seen.append(seen[0]() is None)
            return out

    root = Scope.NewRootScope().WithKernelLabel("probe")
    x = ops.Placeholder(root, DT_FLOAT)
    a = ops.Identity(root, x)
    b = ops.Identity(root, a)
    c = ops.Identity(root, b)
    ClientSession(root.WithKernelLabel("")).Run({x: np.ones(4, np.float32)}, c)
    assert seen[3] is True


def test_kernel_failure_becomes_op_error_naming_the_node():
    @register_kernel("Identity", "CPU", {"T": (DT_FLOAT,)}, label="broken")
    class Broken(Kernel):
        def compute(self, x):
            return np.reshape(x, (7, 7))          # numpy raises ValueError

    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT)
    bad = ops.Identity(root.WithKernelLabel("broken").WithOpName("bad"), x)
    with pytest.raises(errors.InvalidArgumentError) as info:
        ClientSession(root).Run({x: np.ones(3, np.float32)}, bad)
    err = info.value
    assert err.op_name == "bad" and err.op_type == "Identity"
    assert "test_session.py" in err.site
    assert "node bad (op: 'Identity', device: /device:CPU:0)" in str(err)
    assert "cannot reshape" in str(err)
    meta = RunMetadata()                             # the traced path names it the same way
    with pytest.raises(errors.InvalidArgumentError, match="node bad"):
        ClientSession(root).Run(RunOptions(trace_level=1), {x: np.ones(3, np.float32)},
                                [bad], [], meta)


def test_no_kernel_lists_registrations():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT)
    y = ops.Identity(root.WithKernelLabel("nope").WithOpName("y"), x)
    with pytest.raises(errors.NotFoundError) as info:
        ClientSession(root).Run({x: np.ones(1, np.float32)}, y)
    text = str(info.value)
    assert "No registered 'Identity' kernel for CPU devices compatible with node 'y'" in text
    assert "T=float32" in text and "label='nope'" in text
    assert "device='CPU'; label='counting'; T in [DT_INT32]" in text


def test_registered_kernels_query():
    regs = registered_kernels("Conv2DBackpropInputV2")
    assert regs, "the V2 op must have a kernel: TF's lack of one is what we fix"
    cpu = [r for r in regs if r.device_type == "CPU" and r.label == ""]
    from opgraph import DT_DOUBLE, DT_HALF
    assert {DT_FLOAT, DT_DOUBLE, DT_HALF, DT_INT32} <= set(cpu[0].constraints["T"])
    assert registered_kernels("NoSuchOp") == []


def test_find_kernel_prefers_higher_priority():
    @register_kernel("Identity", "CPU", {"T": (DT_FLOAT,)}, label="prio")
    class Low(Kernel):
        def compute(self, x):
            return x

    @register_kernel("Identity", "CPU", {"T": (DT_FLOAT,)}, label="prio", priority=5)
    class High(Kernel):
        def compute(self, x):
            return x

    root = Scope.NewRootScope()
    y = ops.Identity(root.WithKernelLabel("prio"), ops.Placeholder(root, DT_FLOAT))
    assert find_kernel(y.operation, "CPU").kernel_class is High


def test_device_pinning_to_a_missing_device_is_named():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT)
    y = ops.Identity(root.WithDevice("/device:GPU:3").WithOpName("on_gpu"), x)
    with pytest.raises(errors.InvalidArgumentError,
                       match=r"'on_gpu'.*'/device:GPU:3'.*Available devices: /device:CPU:0"):
        ClientSession(root).Run({x: np.ones(1, np.float32)}, y)


def test_cpu_pinning_and_full_device_names_run():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT)
    y = ops.Identity(root.WithDevice("/job:localhost/replica:0/task:0/device:CPU:0"), x)
    z = ops.Identity(root.ColocateWith(y), y)
    meta = RunMetadata()
    ClientSession(root).Run(RunOptions(trace_level=1), {x: np.ones(1, np.float32)}, [z], [],
                            meta)
    assert {s.device for s in meta.step_stats.node_stats} == {"/device:CPU:0"}


def test_concurrent_runs_from_threads():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, ops.Placeholder.Shape([64]))
    y = x
    for _ in range(20):
        y = ops.AddV2(root, y, np.float32(1))
    sess = ClientSession(root)
    results, failures = {}, []

    def worker(i):
        try:
            for j in range(30):
                v = sess.Run({x: np.full(64, i * 100 + j, np.float32)}, y)
                if not np.array_equal(v, np.full(64, i * 100 + j + 20, np.float32)):
                    failures.append((i, j))
            results[i] = True
        except Exception as e:  # noqa: BLE001
            failures.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and len(results) == 4


def test_fetched_constants_cannot_corrupt_the_graph():
    root = Scope.NewRootScope()
    c = ops.Const(root, np.arange(3, dtype=np.float32))
    sess = ClientSession(root)
    out = sess.Run(c)
    with pytest.raises(ValueError, match="read-only"):
        out[0] = 100
    np.testing.assert_array_equal(sess.Run(c), [0, 1, 2])


def test_resource_exhausted_before_allocating():
    root = Scope.NewRootScope()
    a = ops.Placeholder(root, DT_FLOAT)
    b = ops.Placeholder(root, DT_FLOAT)
    y = ops.AddV2(root, a, b)
    huge_a = np.broadcast_to(np.float32(1), (1 << 30, 1, 1))     # zero-stride views
    huge_b = np.broadcast_to(np.float32(1), (1, 1 << 30, 1))
    with pytest.raises(errors.ResourceExhaustedError, match="OOM when allocating"):
        ClientSession(root).Run({a: huge_a, b: huge_b}, y)


def test_shape_kernel_and_placeholder_with_default():
    root = Scope.NewRootScope()
    d = ops.PlaceholderWithDefault(root, np.zeros((2, 2), np.float32), [None, 2])
    s = ops.Shape(root, d)
    sess = ClientSession(root)
    np.testing.assert_array_equal(sess.Run(s), [2, 2])
    np.testing.assert_array_equal(sess.Run({d: np.ones((5, 2), np.float32)}, s), [5, 2])
    with pytest.raises(errors.InvalidArgumentError, match="not compatible"):
        sess.Run({d: np.ones((5, 3), np.float32)}, s)


def test_feeding_one_output_of_a_multi_output_op_that_also_runs():
    """Regression: a fed output was overwritten when another output of its op was needed."""
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[2, 3])
    parts = ops.Unpack(root, x, 2)
    sess = ClientSession(root)
    xv = np.arange(6, dtype=np.float32).reshape(2, 3)
    fed = np.full(3, 7, np.float32)
    a, b = sess.Run({x: xv, parts.output[0]: fed}, [parts.output[0], parts.output[1]])
    np.testing.assert_array_equal(a, fed)
    np.testing.assert_array_equal(b, xv[1])


def test_a_control_edge_out_of_a_fed_placeholder_is_cut():
    """Regression: an op with a control dependency on a fed Placeholder asked for its feed."""
    root = Scope.NewRootScope()
    p = ops.Placeholder(root, DT_FLOAT, shape=[2])
    y = ops.Const(root.WithControlDependencies([p]), np.ones(2, np.float32))
    out = ClientSession(root).Run({p: np.zeros(2, np.float32)}, [y])
    np.testing.assert_array_equal(out[0], [1, 1])
