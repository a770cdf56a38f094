"""A small CNN forward pass with constant weights, as a TF C++ client would write it:
conv -> bias -> relu -> max-pool -> reshape -> matmul -> softmax.

Every shape is known at build time (printed below, before anything runs); the batch stays
unknown until the Run. Run:  python examples/cnn_forward.py
"""

import numpy as np

import ops
from opgraph import DT_FLOAT, Scope
from runtime import ClientSession


def build(root, rng, classes=10):
    images = ops.Placeholder(root.WithOpName("images"), DT_FLOAT,
                             ops.Placeholder.Shape([None, 28, 28, 1]))
    w1 = ops.Const(root.WithOpName("w1"), rng.standard_normal((5, 5, 1, 8)).astype(np.float32)
                   * 0.2)
    b1 = ops.Const(root.WithOpName("b1"), np.full(8, 0.1, np.float32))
    conv = ops.Conv2D(root.WithOpName("conv1"), images, w1, [1, 1, 1, 1], "SAME")
    relu = ops.Relu(root.WithOpName("relu1"), ops.BiasAdd(root, conv, b1))
    pool = ops.MaxPool(root.WithOpName("pool1"), relu, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")
    flat = ops.Reshape(root.WithOpName("flatten"), pool, [-1, 14 * 14 * 8])
    w2 = ops.Const(root.WithOpName("w2"),
                   rng.standard_normal((14 * 14 * 8, classes)).astype(np.float32) * 0.02)
    logits = ops.MatMul(root.WithOpName("logits"), flat, w2)
    probs = ops.Softmax(root.WithOpName("probs"), logits)
    return images, [conv, pool, flat, logits, probs]


def main():
    rng = np.random.default_rng(0)
    root = Scope.NewRootScope()
    images, layers = build(root, rng)
    for layer in layers:
        out = layer.output
        print(f"{out.op.name:8s} {out.op.type:8s} static shape {out.shape}")
    batch = rng.random((4, 28, 28, 1)).astype(np.float32)
    (probs,) = ClientSession(root).Run({images: batch}, [layers[-1]])
    print("class probabilities of image 0:", np.round(probs[0], 3))
    print("rows sum to one:", np.allclose(probs.sum(axis=1), 1, atol=1e-5))
    return probs


if __name__ == "__main__":
    main()
