"""A port of TensorFlow's tensorflow/cc/tutorials/example_trainer.cc.

Power iteration for the largest eigenvalue of A = [[3, 2], [-1, 0]] (it is 2): ten threads
share one session, each feeding x and fetching "y:0" and "y_normalized:0" by name, exactly
as the C++ tutorial does. Run:  python examples/example_trainer.py [--steps N]
"""

import argparse
import threading

import numpy as np

import ops
from opgraph import DT_FLOAT, Scope
from runtime import ClientSession


def create_graph(root):
    """The tutorial's CreateGraphDef: y = A x, y_normalized = y / |y|."""
    a = ops.Const(root, np.array([[3, 2], [-1, 0]], np.float32))
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT)
    y = ops.MatMul(root.WithOpName("y"), a, x)
    y2 = ops.Square(root, y)
    y2_sum = ops.Sum(root, y2, 0)
    y_norm = ops.Sqrt(root, y2_sum)
    ops.Div(root.WithOpName("y_normalized"), y, y_norm)
    return x


def concurrent_steps(session, x, steps, threads=10, seed=0):
    """Each thread runs ``steps`` iterations from its own random start; returns the final
    eigenvalue estimate of each thread."""
    estimates = [None] * threads

    def work(k):
        rng = np.random.default_rng(seed + k)
        xv = rng.random((2, 1)).astype(np.float32)
        xv /= np.linalg.norm(xv)            # the tutorial's "Normalize"
        lam = None
        for _ in range(steps):
            y, y_normalized = session.Run({x: xv}, ["y:0", "y_normalized:0"])
            lam = float(y[0, 0] / xv[0, 0])   # the tutorial's lambda = y[0] / x[0]
            xv = y_normalized
        estimates[k] = lam

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return estimates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args(argv)
    root = Scope.NewRootScope()
    x = create_graph(root)
    session = ClientSession(root)
    estimates = concurrent_steps(session, x, args.steps)
    for k, lam in enumerate(estimates):
        print(f"thread {k}: lambda = {lam:.6f}")
    return estimates


if __name__ == "__main__":
    main()
