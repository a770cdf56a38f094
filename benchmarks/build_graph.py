"""Graph construction speed: microseconds per op, shape inference included.

Builds a 10,000-op graph: 5,000 Identity ops in chains of 50, plus 5,000 conv ops (Conv2D and
Conv2DBackpropInputV2, alternating attrs: NHWC/NCHW, SAME/VALID/EXPLICIT, strides 1/2,
dilations) on Placeholders of known shape, so every op runs its full shape function and
attr validation. Prints the median over several builds and the ratio to TF's graph-mode
Python, which costs about 140 us per op on these machines. Before each timed build the
previous run's graph is garbage-collected (see main()); the median with that garbage left in
place is printed too.

    python benchmarks/build_graph.py [--ops 10000] [--repeats 5] [--profile]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ops  # noqa: E402
from opgraph import DT_FLOAT, Scope  # noqa: E402

TF_US_PER_OP = 140.0
TARGET_US_PER_OP = 20.0
CHAIN = 50

# (op, data_format, strides, padding, explicit_paddings, dilations, x, w, dy)
CONV_CONFIGS = [
    ("NHWC", [1, 1, 1, 1], "SAME", [], [1, 1, 1, 1], [8, 32, 32, 16], [3, 3, 16, 32],
     [8, 32, 32, 32]),
    ("NHWC", [1, 2, 2, 1], "SAME", [], [1, 1, 1, 1], [8, 32, 32, 16], [3, 3, 16, 32],
     [8, 16, 16, 32]),
    ("NHWC", [1, 2, 2, 1], "VALID", [], [1, 1, 1, 1], [8, 33, 33, 16], [3, 3, 16, 32],
     [8, 16, 16, 32]),
    ("NCHW", [1, 1, 2, 2], "SAME", [], [1, 1, 1, 1], [8, 16, 32, 32], [3, 3, 16, 32],
     [8, 32, 16, 16]),
    ("NHWC", [1, 1, 1, 1], "EXPLICIT", [0, 0, 1, 1, 2, 2, 0, 0], [1, 1, 1, 1],
     [8, 32, 32, 16], [3, 5, 16, 32], [8, 32, 32, 32]),
    ("NHWC", [1, 1, 1, 1], "VALID", [], [1, 2, 2, 1], [8, 32, 32, 16], [3, 3, 16, 32],
     [8, 28, 28, 32]),
]


def build(num_ops: int):
    """Build the graph; returns (seconds spent building the measured ops, count)."""
    root = Scope.NewRootScope()
    placeholders = []
    for fmt, strides, padding, pads, dil, xs, ws, dys in CONV_CONFIGS:
        x = ops.Placeholder(root, DT_FLOAT, shape=xs)
        w = ops.Placeholder(root, DT_FLOAT, shape=ws)
        dy = ops.Placeholder(root, DT_FLOAT, shape=dys)
        attrs = {"data_format": fmt, "explicit_paddings": pads, "dilations": dil}
        placeholders.append((x, w, dy, strides, padding, attrs))
    n_identity = num_ops // 2
    n_conv = num_ops - n_identity
    tower = root.NewSubScope("chains")
    start = time.perf_counter()
    cur = placeholders[0][0]
    for i in range(n_identity):
        if i % CHAIN == 0:
            cur = placeholders[(i // CHAIN) % len(placeholders)][0]
        cur = ops.Identity(tower, cur)
    for i in range(n_conv):
        x, w, dy, strides, padding, attrs = placeholders[i % len(placeholders)]
        if i % 2:
            ops.Conv2D(root, x, w, strides, padding, **attrs)
        else:
            ops.Conv2DBackpropInputV2(root, x, w, dy, strides, padding, **attrs)
    elapsed = time.perf_counter() - start
    if not root.ok():
        root.status().raise_if_error()
    count = root.graph().num_ops() - 3 * len(CONV_CONFIGS)
    assert count == num_ops, (count, num_ops)
    return elapsed, count


def build_mix(num_ops: int):
    """A mix of the op library (what a CNN + training graph builds): conv, bias, relu, pool,
    reshape, matmul, elementwise math, reductions, concat, strided slice, transpose, cast,
    softmax. Returns (seconds spent building the measured ops, count)."""
    import numpy as np  # noqa: PLC0415

    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[8, 16, 16, 8])
    w = ops.Const(root, np.ones((3, 3, 8, 8), np.float32))
    b = ops.Const(root, np.ones(8, np.float32))
    m = ops.Const(root, np.ones((512, 10), np.float32))
    before = root.graph().num_ops()
    start = time.perf_counter()
    built = 0
    while built < num_ops:
        c = ops.Conv2D(root, x, w, [1, 1, 1, 1], "SAME")
        r = ops.Relu(root, ops.BiasAdd(root, c, b))
        p = ops.MaxPool(root, r, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
        f = ops.Reshape(root, p, [8, 512])
        y = ops.MatMul(root, f, m)
        z = ops.AddV2(root, ops.Mul(root, y, y), y)
        s = ops.Sum(root, z, [1], keep_dims=True)
        cat = ops.ConcatV2(root, [z, s], 1)
        sl = ops.StridedSlice(root, cat, [0, 1], [8, 11], [1, 1])
        t = ops.Transpose(root, sl, [1, 0])
        ops.Softmax(root, ops.Cast(root, t, DT_FLOAT))
        built = root.graph().num_ops() - before
    elapsed = time.perf_counter() - start
    if not root.ok():
        root.status().raise_if_error()
    return elapsed, built


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile one build")
    args = parser.parse_args(argv)
    if args.profile:
        import cProfile  # noqa: PLC0415
        import pstats  # noqa: PLC0415

        build(args.ops)
        prof = cProfile.Profile()
        prof.enable()
        build(args.ops)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    build(min(args.ops, 1000))                  # warm up
    per_op, per_op_dirty = [], []
    for _ in range(args.repeats):
        # A graph is a cycle of references (graph <-> ops), so the previous run's graph is
        # freed by the cyclic GC. Collect it first so its freeing is not charged to this
        # build; the GC work that building itself causes is still measured.
        gc.collect()
        elapsed, count = build(args.ops)
        per_op.append(elapsed / count * 1e6)
    for _ in range(args.repeats):                # for comparison: garbage left in place
        elapsed, count = build(args.ops)
        per_op_dirty.append(elapsed / count * 1e6)
    med = statistics.median(per_op)
    print(f"built {args.ops} ops ({args.ops // 2} Identity in chains of {CHAIN}, "
          f"{args.ops - args.ops // 2} Conv2D / Conv2DBackpropInputV2) x {args.repeats}")
    print(f"per-run us/op: {', '.join(f'{v:.1f}' for v in per_op)}")
    print(f"median: {med:.1f} us/op  (TF graph mode ~{TF_US_PER_OP:.0f} us/op: "
          f"{TF_US_PER_OP / med:.1f}x faster; target < {TARGET_US_PER_OP:.0f} us/op: "
          f"{'met' if med < TARGET_US_PER_OP else 'NOT met'})")
    print(f"without collecting the previous run's garbage first: median "
          f"{statistics.median(per_op_dirty):.1f} us/op")
    build_mix(min(args.ops, 1000))
    mix = []
    for _ in range(args.repeats):
        gc.collect()
        elapsed, count = build_mix(args.ops)
        mix.append(elapsed / count * 1e6)
    med_mix = statistics.median(mix)
    print(f"op-library mix (conv, bias, relu, pool, reshape, matmul, math, sum, concat, "
          f"strided slice, transpose, cast, softmax; implicit Consts included): median "
          f"{med_mix:.1f} us/op (target < {TARGET_US_PER_OP:.0f}: "
          f"{'met' if med_mix < TARGET_US_PER_OP else 'NOT met'})")


if __name__ == "__main__":
    main()
