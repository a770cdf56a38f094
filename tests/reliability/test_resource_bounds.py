"""Resource bounds: peak memory of a Run stays near its live set, and graphs far deeper
than Python's recursion limit build, run, serialise and differentiate.

tracemalloc sees numpy's buffers, so the peak of a Run over a long chain of large
intermediates measures what the executor keeps alive: it releases each intermediate after
its last use, so the peak is a few intermediates, not the whole chain.
"""

from __future__ import annotations

import gc
import inspect
import sys
import tracemalloc

import numpy as np
import pytest

import ops
from opgraph import DT_FLOAT, Scope
from opgraph.inputs import to_ndarray
from runtime import ClientSession

MB = 1 << 20
N_ELEM = MB // 4 * 4                          # 4 MiB float32 intermediates


def _peak_of(fn) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    del result
    return peak


def test_peak_memory_of_a_long_chain_stays_near_the_live_set():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[N_ELEM])
    one = ops.Const(root, np.float32(1))
    y = x
    for _ in range(40):                       # 40 intermediates of 4 MiB = 160 MiB if kept
        y = ops.AddV2(root, y, one)
    sess = ClientSession(root)
    xv = np.zeros(N_ELEM, np.float32)
    sess.Run({x: xv}, y)                      # compile the plan outside the measurement
    peak = _peak_of(lambda: sess.Run({x: xv}, y))
    assert peak <= 4 * 4 * MB, f"peak {peak / MB:.1f} MiB for a 4 MiB live set"


def test_peak_memory_with_fan_out_is_bounded_by_what_is_live():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[N_ELEM])
    one = ops.Const(root, np.float32(1))
    branches = []
    for _ in range(4):                        # four branches of ten, joined pairwise
        y = x
        for _ in range(10):
            y = ops.AddV2(root, y, one)
        branches.append(y)
    out = ops.AddV2(root, ops.AddV2(root, branches[0], branches[1]),
                    ops.AddV2(root, branches[2], branches[3]))
    sess = ClientSession(root)
    xv = np.zeros(N_ELEM, np.float32)
    np.testing.assert_array_equal(sess.Run({x: xv}, out)[:3], [40, 40, 40])
    peak = _peak_of(lambda: sess.Run({x: xv}, out))
    assert peak <= 8 * 4 * MB, f"peak {peak / MB:.1f} MiB"


def test_fetching_does_not_copy_large_results_needlessly():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[N_ELEM])
    y = ops.AddV2(root, x, np.float32(1))     # a fresh result: returned without a copy
    sess = ClientSession(root)
    xv = np.zeros(N_ELEM, np.float32)
    sess.Run({x: xv}, y)
    peak = _peak_of(lambda: sess.Run({x: xv}, y))
    assert peak <= 2 * 4 * MB, f"peak {peak / MB:.1f} MiB"


def _chain(n):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[3])
    one = ops.Const(root, np.ones(3, np.float32))
    y = x
    for _ in range(n):
        y = ops.AddV2(root, y, one)
    return root, x, y


def _deep_graph_round_trip(n):
    """Build, run, serialise, lint and differentiate an ``n``-deep chain with the recursion
    limit barely above the current stack depth (no step may recurse per node)."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 150)
    try:
        root, x, y = _chain(n)
        assert root.ok() and root.graph().num_ops() == n + 2
        sess = ClientSession(root)
        np.testing.assert_array_equal(sess.Run({x: np.zeros(3, np.float32)}, y), [n] * 3)
        assert len(root.ToGraphDef().node) == n + 2
        root.graph().lint()
        try:
            from opgraph.gradients import AddSymbolicGradients
        except ImportError:
            return
        (dx,) = AddSymbolicGradients(root, [y], [x])
        np.testing.assert_array_equal(sess.Run({x: np.zeros(3, np.float32)}, dx), [1] * 3)
    finally:
        sys.setrecursionlimit(old)


def test_a_20k_node_graph_needs_no_recursion():
    _deep_graph_round_trip(20_000)


@pytest.mark.slow
def test_a_100k_node_graph_needs_no_recursion():
    _deep_graph_round_trip(100_000)


def test_deep_python_lists_need_no_recursion():
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 60)
    try:
        v = 1.0
        for _ in range(60):
            v = [v]
        assert to_ndarray(v).shape == (1,) * 60
        wide = [[float(i)] * 100 for i in range(1000)]
        assert to_ndarray(wide).shape == (1000, 100)
    finally:
        sys.setrecursionlimit(old)
