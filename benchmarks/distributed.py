"""Benchmark: DistributedSession (dask.distributed) against a local ClientSession.

Usage:  python benchmarks/distributed.py [--quick] [--workers 1,2] [--threads-in-process]
                                         [--blas-threads 1]

Three measurements, each the best of repeated Runs after a warm-up:
  seed op    Conv2DBackpropInputV2 on a batch (NHWC float32): examples per second
  train step one GradientDescent step of a small conv + dense classifier: examples / s
  overhead   a trivial graph (Neg on a tiny batch) split into k = 1, 2, 4, 8 shards: the
             fixed cost of a sharded Run and the cost of each extra shard (the slope)
With 1 and 2 workers (LocalCluster, one process and one thread each unless
--threads-in-process). Ratios are distributed / local throughput (> 1: sharding pays).
BLAS threads are pinned (default 1) in this process and the workers, so one worker uses one
core and the comparison is about sharding, not about BLAS threading.

At the end it prints the break-even: the local Run time above which splitting the batch
over the workers pays, from the measured fixed and per-shard costs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def _pin_blas(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small batches, few repeats")
    p.add_argument("--workers", default="1,2", help="worker counts to measure")
    p.add_argument("--threads-in-process", action="store_true",
                   help="LocalCluster(processes=False): workers are threads of this process")
    p.add_argument("--blas-threads", type=int, default=1)
    return p.parse_args()


def _best(fn, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls after a warm-up: on a shared machine the
    minimum is the stable estimate of what a Run costs (the median moves with the load)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:  # noqa: C901, PLR0915
    args = _parse()
    _pin_blas(args.blas_threads)
    # This file is named like the dask package: keep its folder off the import path.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")])

    import numpy as np  # noqa: PLC0415

    import ops  # noqa: PLC0415
    from opgraph import DT_FLOAT, DT_INT32, Scope, train  # noqa: PLC0415
    from runtime import ClientSession  # noqa: PLC0415
    try:
        from distributed import Client, LocalCluster  # noqa: PLC0415
    except ImportError:
        sys.exit('needs dask.distributed: pip install "opgraph[distributed]"')

    from runtime.distributed import DistributedSession  # noqa: PLC0415

    quick = args.quick
    repeats = 3 if quick else 7
    rng = np.random.default_rng(0)

    # ---- workloads ------------------------------------------------------------------
    seed_batches = (8, 64) if quick else (16, 256)
    seed = Scope.NewRootScope()
    sx = ops.Placeholder(seed.WithOpName("x"), DT_FLOAT, shape=[-1, 14, 14, 64])
    sdy = ops.Placeholder(seed.WithOpName("dy"), DT_FLOAT, shape=[-1, 14, 14, 64])
    sf = rng.normal(size=(3, 3, 64, 64)).astype(np.float32)
    sdx = ops.Conv2DBackpropInputV2(seed, sx, sf, sdy, [1, 1, 1, 1], "SAME")

    def seed_feeds(b):
        return {sx: rng.normal(size=(b, 14, 14, 64)).astype(np.float32),
                sdy: rng.normal(size=(b, 14, 14, 64)).astype(np.float32)}

    train_batches = (32, 256) if quick else (64, 1024)
    net = Scope.NewRootScope()
    tx = ops.Placeholder(net.WithOpName("x"), DT_FLOAT, shape=[-1, 16, 16, 8])
    tl = ops.Placeholder(net.WithOpName("labels"), DT_INT32, shape=[-1])
    f = train.Variable(net.WithOpName("f"), rng.normal(size=(3, 3, 8, 2)).astype(np.float32))
    conv = ops.Relu(net, ops.DepthwiseConv2dNative(net, tx, f.output, [1, 1, 1, 1], "SAME"))
    pooled = ops.AvgPool(net, conv, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
    w1 = train.Variable(net.WithOpName("w1"),
                        (rng.normal(size=(1024, 256)) * 0.03).astype(np.float32))
    hidden = ops.Relu(net, ops.MatMul(net, ops.Reshape(net, pooled, [-1, 1024]), w1.output))
    w2 = train.Variable(net.WithOpName("w2"),
                        (rng.normal(size=(256, 10)) * 0.06).astype(np.float32))
    logits = ops.MatMul(net, hidden, w2.output)
    loss = ops.Mean(net, ops.SparseSoftmaxCrossEntropyWithLogits(net, logits, tl).loss, [0])
    step = train.GradientDescent(0.1).minimize(net, loss)
    init = train.global_variables_initializer(net)

    def train_feeds(b):
        return {tx: rng.normal(size=(b, 16, 16, 8)).astype(np.float32),
                tl: rng.integers(0, 10, b).astype(np.int32)}

    tiny = Scope.NewRootScope()
    nx = ops.Placeholder(tiny.WithOpName("x"), DT_FLOAT, shape=[-1, 4])
    ny = ops.Neg(tiny, nx)
    tiny_feed = {nx: np.ones((8, 4), np.float32)}

    cases = [("seed op", seed, b, seed_feeds(b), [sdx], [], None) for b in seed_batches]
    cases += [("train", net, b, train_feeds(b), [loss], [step], init) for b in train_batches]

    # ---- local baselines -------------------------------------------------------------
    print(f"machine: {os.cpu_count()} CPUs, BLAS threads {args.blas_threads}; "
          f"workers are {'threads' if args.threads_in_process else 'processes'}")
    local_times = []
    for name, root, b, feeds, fetches, targets, initializer in cases:
        sess = ClientSession(root)
        if initializer is not None:
            sess.Run({}, [], [initializer])
        t = _best(lambda s=sess, f=feeds, o=fetches, g=targets: s.Run(f, o, g), repeats)
        local_times.append(t)
        print(f"local        {name:8s} batch {b:5d}: {t * 1e3:9.2f} ms ({b / t:9.1f} ex/s)")
    local_tiny = ClientSession(tiny)
    t_tiny = _best(lambda: local_tiny.Run(tiny_feed, ny), repeats * 5)
    print(f"local        trivial  batch     8: {t_tiny * 1e3:9.2f} ms")

    fixed = per_shard = None
    counts = [int(k) for k in args.workers.split(",")]
    for n in counts:
        cluster = LocalCluster(processes=not args.threads_in_process, n_workers=n,
                               threads_per_worker=1, dashboard_address=":0")
        client = Client(cluster)
        try:
            for (name, root, b, feeds, fetches, targets, initializer), t_local in zip(
                    cases, local_times):
                ds = DistributedSession(root, client, min_shard_size=1)
                if initializer is not None:
                    ds.Run({}, [], [initializer])
                t = _best(lambda s=ds, f=feeds, o=fetches, g=targets: s.Run(f, o, g),
                            repeats)
                print(f"{n} worker(s)  {name:8s} batch {b:5d}: {t * 1e3:9.2f} ms "
                      f"({b / t:9.1f} ex/s), {ds.last_run_shards} shard(s), "
                      f"ratio {t_local / t:5.2f}")
            times = {}
            for k in (1, 2, 4, 8):
                dt = DistributedSession(tiny, client, min_shard_size=1, max_shards=k)
                times[k] = _best(lambda dt=dt: dt.Run(tiny_feed, ny), repeats * 3)
            ks = sorted(times)
            slope = float(np.polyfit(ks, [times[k] for k in ks], 1)[0])
            base = times[1] - slope
            print(f"{n} worker(s)  overhead: " + ", ".join(
                f"{k} shard(s) {times[k] * 1e3:.2f} ms" for k in ks)
                + f"; fixed {base * 1e3:.2f} ms per Run + {slope * 1e3:.2f} ms per shard")
            if n == max(counts):
                fixed, per_shard, workers = base, slope, n
        finally:
            client.close()
            cluster.close()

    if fixed is not None and workers > 1:
        # local time T pays off when T / n + fixed + n * per_shard < T
        overhead = fixed + workers * per_shard
        breakeven = overhead * workers / (workers - 1)
        print(f"sharding over {workers} workers pays when a local Run takes more than about "
              f"{breakeven * 1e3:.0f} ms (overhead {overhead * 1e3:.1f} ms per Run, ideal "
              f"scaling assumed; shipping the feeds adds to it for large batches)")


if __name__ == "__main__":
    main()
