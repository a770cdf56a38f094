"""Threads: one session Run from 8 threads with mixed feeds and fetches, and one graph built
from 8 threads at once.

Fault fixed: building on one Scope from several threads raised AlreadyExistsError at
random for default names (the name was reserved and the node added without a lock); the
graph now has a lock (TF's Graph mutex) held for name reservation and insertion. Waits
are bounded everywhere: a deadlock fails the test instead of hanging it.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

import ops
from opgraph import DT_FLOAT, DT_INT32, Scope, errors
from runtime import ClientSession

THREADS = 8
JOIN_TIMEOUT = 60.0


@pytest.fixture
def fast_switching():
    """Switch threads every microsecond: races that need an unlucky switch show at once."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _run_threads(target, n=THREADS):
    failures, threads = [], []

    def guarded(i):
        try:
            target(i)
        except BaseException as e:  # noqa: BLE001  (reported below)
            failures.append((i, e))

    for i in range(n):
        threads.append(threading.Thread(target=guarded, args=(i,), daemon=True))
    for t in threads:
        t.start()
    deadline = time.monotonic() + JOIN_TIMEOUT
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t for t in threads if t.is_alive()]
    assert not alive, f"{len(alive)} threads still running after {JOIN_TIMEOUT}s (deadlock?)"
    assert not failures, failures[:3]


# ---- graph building -----------------------------------------------------------------------
def test_default_names_from_8_threads_on_one_scope(fast_switching):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[2])

    def build(i):
        for _ in range(500):
            ops.AddV2(root, x, 1.0)        # an implicit Const and a default-named AddV2

    _run_threads(build)
    assert root.ok(), root.status()
    graph = root.graph()
    names = [op.name for op in graph.operations()]
    assert len(names) == len(set(names)) == 1 + THREADS * 500 * 2
    assert [op.id for op in graph.operations()] == list(range(len(names)))
    graph.lint()
    assert sum(n.startswith("AddV2") for n in names) == THREADS * 500


def test_sub_scopes_and_explicit_names_from_threads(fast_switching):
    root = Scope.NewRootScope()

    def build(i):
        for j in range(100):
            sub = root.NewSubScope("tower")                    # uniquified per call
            ops.Const(sub, float(j))
            ops.Const(root.WithOpName(f"t{i}_{j}"), 1.0)      # explicit, unique
            ops.Const(root.NewSubScope(f"own{i}"), 2.0)

    _run_threads(build)
    assert root.ok(), root.status()
    names = [op.name for op in root.graph().operations()]
    assert len(names) == len(set(names)) == THREADS * 300
    assert len({n.split("/")[0] for n in names if n.startswith("tower")}) == THREADS * 100
    root.graph().lint()


def test_duplicate_explicit_names_from_threads_fail_exactly_once_each(fast_switching):
    root = Scope.NewRootScope()

    def build(i):
        for j in range(50):
            ops.Const(root.WithOpName(f"same{j}"), float(i))

    _run_threads(build)
    errs = root.status().errors
    assert len(errs) == (THREADS - 1) * 50
    assert all(isinstance(e, errors.AlreadyExistsError) for e in errs)
    assert root.graph().num_ops() == 50


# ---- running ------------------------------------------------------------------------------
def _session_graph():
    root = Scope.NewRootScope()
    a = ops.Placeholder(root.WithOpName("a"), DT_FLOAT, shape=[16])
    b = ops.Placeholder(root.WithOpName("b"), DT_FLOAT, shape=[16])
    k = ops.Placeholder(root.WithOpName("k"), DT_INT32, shape=[])
    c = ops.Const(root, np.linspace(0, 1, 16, dtype=np.float32))
    s = ops.AddV2(root, a, b)
    t = a
    for _ in range(10):
        t = ops.AddV2(root, t, c)
    u = ops.AddV2(root, ops.Identity(root, s), t)
    folded = ops.AddV2(root, c, c)
    shape = ops.Shape(root, u)
    kk = ops.AddV2(root, k, np.int32(1))
    signatures = [                           # (feeds used, fetches)
        (("a", "b"), [s, u]), (("a",), [t]), (("a", "b", "k"), [u, kk, shape]),
        ((), [folded]), (("k",), [kk]), (("a", "b"), [folded, s]),
    ]
    return root, {"a": a, "b": b, "k": k}, signatures


def _feed_values(rng):
    return {"a": rng.normal(size=16).astype(np.float32),
            "b": rng.normal(size=16).astype(np.float32),
            "k": np.int32(rng.integers(-5, 5))}


def test_one_session_from_8_threads_matches_single_threaded_results(fast_switching):
    root, placeholders, signatures = _session_graph()
    rng = np.random.default_rng(0)
    cases = []
    for i in range(48):
        feeds_used, fetches = signatures[i % len(signatures)]
        values = _feed_values(rng)
        cases.append(({placeholders[n]: values[n] for n in feeds_used}, fetches))
    reference = [[r.tobytes() for r in ClientSession(root).Run(f, fs)] for f, fs in cases]
    sess = ClientSession(root)                # a fresh session: plans compile under load
    stop = time.monotonic() + 3.0
    counts = [0] * THREADS

    def run(i):
        j = i
        while time.monotonic() < stop:
            feeds, fetches = cases[j % len(cases)]
            got = sess.Run(feeds, fetches)
            assert [r.tobytes() for r in got] == reference[j % len(cases)], (i, j)
            j += 7
            counts[i] += 1

    _run_threads(run)
    assert min(counts) > 0 and sum(counts) >= len(cases), counts


def test_running_while_another_thread_grows_the_graph(fast_switching):
    root, placeholders, signatures = _session_graph()
    sess = ClientSession(root)
    a = placeholders["a"]
    feeds = {a: np.ones(16, np.float32)}
    grown = []

    def work(i):
        if i == 0:                            # the builder
            y = a
            for _ in range(300):
                y = ops.AddV2(root, y, np.float32(1))
                grown.append(y)
            return
        for j in range(60):
            if grown:                         # a node the builder added meanwhile
                k = min(len(grown) - 1, j * 5)
                np.testing.assert_array_equal(sess.Run(feeds, grown[k]),
                                              np.full(16, k + 2, np.float32))
            else:
                sess.Run(feeds, signatures[1][1])

    _run_threads(work, n=4)
    assert root.ok(), root.status()
    np.testing.assert_array_equal(sess.Run(feeds, grown[-1]), np.full(16, 301, np.float32))


def test_concurrent_failing_runs_raise_op_errors_and_leave_the_session_usable():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[None])
    y = ops.AddV2(root, x, np.float32(1))
    sess = ClientSession(root)

    def run(i):
        for j in range(50):
            if (i + j) % 3 == 0:
                with pytest.raises(errors.InvalidArgumentError):
                    sess.Run({x: np.zeros((2, 2), np.float32)}, y)    # wrong rank
            elif (i + j) % 3 == 1:
                with pytest.raises(errors.InvalidArgumentError):
                    sess.Run([y])                                     # unfed placeholder
            else:
                np.testing.assert_array_equal(sess.Run({x: [1.0, 2.0]}, y), [2, 3])

    _run_threads(run)
