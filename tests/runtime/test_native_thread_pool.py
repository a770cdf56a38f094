"""The compiled core's parked worker threads (thread_pool.c, ``opgraph_run_threads``).

Every one-call kernel runs its items on the pool; these check what the pool must keep true:
results equal the direct-loop reference on 1 to many threads called back to back (workers
woken while still spinning and after they sleep), from several Python threads at once (one
call holds the pool, the others start threads of their own), with workers that sleep after
every job and join it late or not at all (OPGRAPH_SPIN_US=0), and in a fork()ed child, whose
parent's workers do not exist.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from runtime.kernels.cpu import native
from tests.reference import conv2d_backprop_input_ref

nat = native.load()
pytestmark = pytest.mark.skipif(
    nat is None, reason=f"compiled kernel unavailable: {native.unavailable_reason()}")

STRIDES, DILATIONS, PADS = (2, 2), (1, 1), (1, 1)


def _problem(seed, n=2, h=6, co=20, ci=12):
    rng = np.random.default_rng(seed)
    dy = rng.standard_normal((n, h, h, co)).astype(np.float32)
    w = rng.standard_normal((4, 4, ci, co)).astype(np.float32)
    ref = conv2d_backprop_input_ref(dy.astype(np.float64), w.astype(np.float64),
                                    (n, 2 * h, 2 * h, ci), STRIDES, DILATIONS, PADS)
    return dy, w, ref


def _run(dy, w, nthreads, rows=1):
    n, h, _, _ = dy.shape
    ci = w.shape[2]
    dx = np.full((n, 2 * h, 2 * h, ci), np.nan, np.float32)
    wpk = nat.pack(w, 3, 1, nthreads)
    nat.backprop_input(dy, wpk, dx, 1, (4, 4), STRIDES, DILATIONS, PADS, nthreads, rows)
    return dx


def _close(dx, ref):
    np.testing.assert_allclose(dx, ref, rtol=2e-5, atol=2e-5 * np.abs(ref).max())


@pytest.mark.parametrize("nthreads", [1, 2, 3, 8, 64, 200])
def test_back_to_back_calls_on_any_thread_count(nthreads):
    dy, w, ref = _problem(nthreads)
    for i in range(20):
        _close(_run(dy, w, nthreads), ref)
        if i == 10:
            time.sleep(0.01)  # the workers have gone to sleep: woken by the condition


def test_alternating_thread_counts_reuse_the_workers():
    dy, w, ref = _problem(7)
    for nthreads in (4, 1, 2, 8, 3, 1, 16, 2):
        _close(_run(dy, w, nthreads), ref)


def test_concurrent_callers():
    """Python threads calling at once (ctypes releases the GIL): one holds the pool, the others
    run on threads of their own; each result is its own problem's."""
    problems = [_problem(100 + i, co=8 + 4 * i) for i in range(4)]
    failures = []

    def caller(i):
        dy, w, ref = problems[i]
        try:
            for _ in range(15):
                _close(_run(dy, w, 2 + i), ref)
        except AssertionError as e:  # reported below, on the test's thread
            failures.append((i, e))

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(len(problems))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    assert not failures, failures


def _child(queue):
    dy, w, ref = _problem(3)
    dx = _run(dy, w, 4)
    queue.put(float(np.abs(dx - ref).max() / np.abs(ref).max()))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                    reason="no fork() on this platform")
def test_forked_child_starts_its_own_workers():
    dy, w, ref = _problem(3)
    _close(_run(dy, w, 4), ref)  # the parent's workers exist now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    p = ctx.Process(target=_child, args=(queue,))
    p.start()
    p.join(timeout=120)
    if p.is_alive():
        p.kill()
        pytest.fail("the forked child hung on the parent's (absent) workers")
    assert p.exitcode == 0
    assert queue.get(timeout=5) < 1e-5


_NO_SPIN_SCRIPT = """
import time, numpy as np
from tests.runtime.test_native_thread_pool import _problem, _run
for seed, nthreads in ((1, 2), (2, 3), (3, 8)):
    dy, w, ref = _problem(seed)
    for i in range(12):
        dx = _run(dy, w, nthreads)
        err = float(np.abs(dx - ref).max() / np.abs(ref).max())
        assert err < 1e-5, (seed, nthreads, i, err)
        time.sleep(0.0005 * (i % 3))  # workers asleep, waking late or still finishing
print("ok")
"""


@pytest.mark.parametrize("spin_us", ["0", "not-a-number"])
def test_workers_that_join_late_or_never(spin_us):
    """OPGRAPH_SPIN_US=0: the workers sleep after every job, so the caller often takes every
    item itself and closes the job before they wake; a worker that wakes then must stay out of
    it (a late one touching the finished job's items would corrupt the next result or hang).
    A value that is not a number is ignored (the default spin), results unchanged."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, OPGRAPH_SPIN_US=spin_us,
               PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _NO_SPIN_SCRIPT], env=env, cwd=root,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"
