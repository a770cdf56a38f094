"""Training-step speed: examples/train_cnn.py's model, forward + backward + Adam.

Times one step through ClientSession against the same model in torch eager (CPU, same
thread count, same initial weights and batch) when torch is installed, in one process,
alternating the two, and prints the ratio (torch time / ours: > 1 means we are faster) and
where our time goes (per-op-type totals from a traced Run's RunMetadata).

    python benchmarks/train_step.py [--batch 50] [--steps 30]
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from opgraph import Scope, train  # noqa: E402
from runtime import ClientSession, RunMetadata, RunOptions  # noqa: E402


def _load_example():
    spec = importlib.util.spec_from_file_location("train_cnn",
                                                  os.path.join(ROOT, "examples", "train_cnn.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _torch_step(torch, weights, lr):
    """The same model in torch eager, from the same initial weights; returns step(x, y)."""
    params = [torch.tensor(w, requires_grad=True) for w in weights]
    opt = torch.optim.Adam(params, lr=lr, eps=1e-8)
    f = torch.nn.functional

    def step(x, y):
        w1, b1, w2, b2, w3, b3 = params
        h = torch.from_numpy(x).permute(0, 3, 1, 2)
        for w, b in ((w1, b1), (w2, b2)):
            h = f.max_pool2d(f.relu(f.conv2d(h, w.permute(3, 2, 0, 1), b, padding=1)), 2)
        logits = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1) @ w3 + b3
        loss = f.cross_entropy(logits, torch.from_numpy(y).long())
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())
    return step


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args(argv)
    ex = _load_example()
    rng = np.random.default_rng(0)
    x, y = ex.make_shapes(args.batch * 4, rng)
    root = Scope.NewRootScope()
    images, labels, loss, _, step, variables = ex.build_model(root, rng)
    sess = ClientSession(root)
    sess.Run({}, [], [train.global_variables_initializer(root)])
    weights = sess.Run(variables)
    feeds = [{images: x[i::4], labels: y[i::4]} for i in range(4)]

    def ours(k):
        sess.Run(feeds[k % 4], [loss], [step])

    theirs = None
    try:
        import torch  # noqa: PLC0415  (optional peer)
        torch.set_num_threads(os.cpu_count() or 2)
        torch_step = _torch_step(torch, [np.array(w) for w in weights], 0.01)

        def theirs(k):
            torch_step(x[k % 4::4], y[k % 4::4])
    except ImportError:
        print("torch is not installed: timing ours only")
    for k in range(3):                              # warm up both
        ours(k)
        if theirs:
            theirs(k)
    t_ours, t_theirs = [], []
    for k in range(args.steps):
        t0 = time.perf_counter()
        ours(k)
        t_ours.append(time.perf_counter() - t0)
        if theirs:
            t0 = time.perf_counter()
            theirs(k)
            t_theirs.append(time.perf_counter() - t0)
    med = statistics.median(t_ours) * 1e3
    print(f"train step, batch {args.batch}: ours {med:.2f} ms", end="")
    if t_theirs:
        med_t = statistics.median(t_theirs) * 1e3
        print(f", torch eager {med_t:.2f} ms, ratio torch/ours {med_t / med:.2f}")
    else:
        print()
    md = RunMetadata()
    sess.Run(RunOptions(trace_level=RunOptions.FULL_TRACE), feeds[0], [loss], [step], md)
    by_type = collections.Counter()
    for s in md.step_stats.node_stats:
        by_type[s.op_type] += s.duration_us
    total = sum(by_type.values())
    print(f"where the time goes (traced step, {total / 1e3:.2f} ms in kernels):")
    for op_type, us in by_type.most_common(10):
        print(f"  {op_type:32s} {us / 1e3:7.2f} ms  {100 * us / total:5.1f}%")


if __name__ == "__main__":
    main()
