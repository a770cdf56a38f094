"""A worker lost in the middle of a Run: dask runs its shard again elsewhere (the tasks are
pure), the Run returns the right result, and a training step still updates each variable
exactly once (on the holder, after every shard is in)."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

import ops
import runtime.distributed
from opgraph import DT_FLOAT, Scope, errors, train
from runtime import ClientSession
from runtime.distributed import DistributedSession

distributed = pytest.importorskip("distributed")


def _slow_graph(depth=24):
    """About a second of work per shard of 1000 rows, from a small input."""
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[-1, 64])
    w = train.Variable(root.WithOpName("w"), np.full((64, 384), 1 / 64, np.float32))
    y = ops.MatMul(root, x, w.output)
    mix = (np.eye(384) * 0.999).astype(np.float32)
    for _ in range(depth):
        y = ops.Tanh(root, ops.MatMul(root, y, mix))
    loss = ops.Mean(root, ops.Square(root, y), [0, 1])
    step = train.GradientDescent(0.5).minimize(root, loss)
    return root, x, y, loss, step


def _with_lost_worker(client, lose, run, attempts=3):
    """``run()`` while a thread loses a worker (``lose(address)``) as soon as a shard task
    is processing there; repeated (up to ``attempts``) until the loss lands mid-Run.
    Returns the results of every attempt."""
    results = []
    for _ in range(attempts):
        fired = {}

        def watch():
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and "done" not in fired:
                workers = sorted(client.nthreads())
                busy = client.processing()
                victim = next((w for w in workers if busy.get(w)), None)
                if victim is not None and len(workers) > 1:
                    time.sleep(0.05)
                    lose(victim)
                    fired["at"] = time.monotonic()
                    return
                time.sleep(0.002)
        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        results.append(run())
        fired["done"] = time.monotonic()
        thread.join(30)
        if "at" in fired and fired["at"] < fired["done"]:
            return results
    pytest.skip("could not lose a worker while a shard was running")


def _check_run_and_step(client, lose):
    root, x, y, loss, step = _slow_graph()
    rng = np.random.default_rng(0)
    xv = rng.normal(size=(2000, 64)).astype(np.float32)
    local = ClientSession(root)
    dist = DistributedSession(root, client, min_shard_size=1)
    init = train.global_variables_initializer(root)
    for s in (local, dist):
        s.Run({}, [], [init])
    want = local.Run({x: xv}, y)
    dist.Run({x: xv[:8]}, y)                     # the graph and variables reach the workers
    for got in _with_lost_worker(client, lose, lambda: dist.Run({x: xv}, y)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    def step_both():
        return dist.Run({x: xv}, [loss], [step])[0], local.Run({x: xv}, [loss], [step])[0]
    for got_loss, want_loss in _with_lost_worker(client, lose, step_both):
        np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    ours = dist.resources.variables()["w"].value
    theirs = local.resources.variables()["w"].value
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)   # applied exactly once


def test_worker_closed_mid_run_in_process():
    cluster = distributed.LocalCluster(processes=False, n_workers=4, threads_per_worker=1,
                                       dashboard_address=":0")
    client = distributed.Client(cluster)
    try:
        def close(address):
            worker = next(w for w in cluster.workers.values() if w.address == address)
            cluster.loop.add_callback(worker.close)
        _check_run_and_step(client, close)
    finally:
        client.close()
        cluster.close()


def test_killed_worker_process(monkeypatch):
    """SIGKILL of a worker process (its nanny restarts it). Shard feeds travel scattered
    here, so the lost data is re-sent by the session; then, with no retry allowed, the Run
    fails with a clear error and no variable changes."""
    monkeypatch.setattr(runtime.distributed, "_INLINE_BYTES", 0)
    cluster = distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1,
                                       dashboard_address=":0")
    client = distributed.Client(cluster)
    try:
        def kill(address):
            pid = client.run(os.getpid, workers=[address])[address]
            os.kill(pid, signal.SIGKILL)
        _check_run_and_step(client, kill)

        monkeypatch.setattr(runtime.distributed, "_INLINE_BYTES", 1 << 30)
        cluster.scheduler.allowed_failures = 0
        root, x, y, loss, step = _slow_graph()
        dist = DistributedSession(root, client, min_shard_size=1)
        dist.Run({}, [], [train.global_variables_initializer(root)])
        before = dist.resources.variables()["w"].value
        xv = np.ones((2000, 64), np.float32)
        client.wait_for_workers(2, timeout=30)
        dist.Run({x: xv[:8]}, y)

        def failing_step():
            with pytest.raises(errors.UnavailableError, match="no variable was updated"):
                dist.Run({x: xv}, [], [step])
        _with_lost_worker(client, kill, failing_step)
        assert dist.resources.variables()["w"].value is before
    finally:
        client.close()
        cluster.close()
