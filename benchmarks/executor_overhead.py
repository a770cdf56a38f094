"""Executor overhead: a chain of 1,000 tiny ops through ClientSession.Run vs a plain loop.

Two chains, each fed from a Placeholder so nothing is constant-folded away:
  Identity x 1000        vs  ``v = np.asarray(v)`` x 1000
  AddV2(v, 1.0) x 1000   vs  ``v = np.add(v, one)`` x 1000   (float32 scalars)
Prints µs per op for both and the ratio (ours / plain loop). The target is <= 2x.
For scale: TF's C++ executor with its optimizer off costs about 0.24 µs per op on these
machines, TF eager about 17 µs.   Run:  python benchmarks/executor_overhead.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ops  # noqa: E402
from opgraph import DT_FLOAT, Scope  # noqa: E402
from runtime import ClientSession  # noqa: E402


def _median_time(fn, repeats: int) -> float:
    fn()                                   # warm-up (compiles the plan)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(kind: str, n_ops: int, repeats: int):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, ops.Placeholder.Shape([]))
    one = ops.Const(root, np.float32(1))
    v = x
    for _ in range(n_ops):
        v = ops.Identity(root, v) if kind == "Identity" else ops.AddV2(root, v, one)
    sess = ClientSession(root)
    xv = np.float32(0)
    feeds = {x: xv}
    ours = _median_time(lambda: sess.Run(feeds, v), repeats)

    one_np = np.float32(1)
    if kind == "Identity":
        def plain():
            r = xv
            for _ in range(n_ops):
                r = np.asarray(r)
            return r
    else:
        def plain():
            r = xv
            for _ in range(n_ops):
                r = np.add(r, one_np)
            return r
    time.sleep(0.2)
    base = _median_time(plain, repeats)
    result = sess.Run(feeds, v)
    expected = plain()
    assert np.array_equal(result, expected), (result, expected)
    return ours, base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ops", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    print(f"{'chain':<10} {'ops':>6} {'ours us/op':>11} {'numpy us/op':>12} {'ratio':>7}")
    for kind in ("Identity", "AddV2"):
        ours, base = bench(kind, args.ops, args.repeats)
        print(f"{kind:<10} {args.ops:>6} {ours / args.ops * 1e6:>11.3f} "
              f"{base / args.ops * 1e6:>12.3f} {ours / base:>7.2f}x")


if __name__ == "__main__":
    main()
