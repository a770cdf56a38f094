"""Train a small CNN on synthetic shapes (squares, circles, crosses) with Adam.

conv -> bias -> relu -> pool -> conv -> bias -> relu -> pool -> dense -> softmax
cross-entropy; gradients from AddSymbolicGradients, variables and Adam from opgraph.train.
The script generates its data, prints one line per epoch (loss, accuracy, examples/s),
saves a checkpoint and restores it into a fresh session with the same accuracy.

Run:  python examples/train_cnn.py [--epochs 6] [--train 1500]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import ops
from opgraph import DT_FLOAT, DT_INT32, Scope, train
from runtime import ClientSession

SIZE, CLASSES = 16, 3


def make_shapes(n: int, rng: np.random.Generator):
    """n noisy 16x16 images of a square outline (0), a disc (1) or a cross (2)."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = np.empty((n, SIZE, SIZE, 1), np.float32)
    labels = rng.integers(0, CLASSES, n).astype(np.int32)
    for i, label in enumerate(labels):
        r = rng.integers(3, 6)
        cy, cx = rng.integers(r + 1, SIZE - r - 1, 2)
        if label == 0:
            img = ((np.abs(yy - cy) == r) & (np.abs(xx - cx) <= r)) | \
                  ((np.abs(xx - cx) == r) & (np.abs(yy - cy) <= r))
        elif label == 1:
            img = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            img = ((yy == cy) & (np.abs(xx - cx) <= r)) | ((xx == cx) & (np.abs(yy - cy) <= r))
        images[i, :, :, 0] = img + rng.normal(0, 0.25, (SIZE, SIZE))
    return images, labels


def build_model(root, rng):
    """The graph: placeholders, variables, logits, loss, accuracy and the Adam step."""
    images = ops.Placeholder(root.WithOpName("images"), DT_FLOAT, shape=[None, SIZE, SIZE, 1])
    labels = ops.Placeholder(root.WithOpName("labels"), DT_INT32, shape=[None])

    def weight(name, shape, fan_in):
        init = rng.normal(0, np.sqrt(2.0 / fan_in), shape).astype(np.float32)
        return train.Variable(root.WithOpName(name), init).output

    def bias(name, n):
        return train.Variable(root.WithOpName(name), np.zeros(n, np.float32)).output

    w1, b1 = weight("w1", (3, 3, 1, 8), 9), bias("b1", 8)
    w2, b2 = weight("w2", (3, 3, 8, 16), 72), bias("b2", 16)
    w3, b3 = weight("w3", (4 * 4 * 16, CLASSES), 256), bias("b3", CLASSES)

    def block(x, w, b):
        conv = ops.Conv2D(root, x, w, [1, 1, 1, 1], "SAME")
        act = ops.Relu(root, ops.BiasAdd(root, conv, b))
        return ops.MaxPool(root, act, [1, 2, 2, 1], [1, 2, 2, 1], "VALID")

    h = block(block(images, w1, b1), w2, b2)
    flat = ops.Reshape(root, h, [-1, 4 * 4 * 16])
    logits = ops.BiasAdd(root.WithOpName("logits"), ops.MatMul(root, flat, w3), b3)
    xent = ops.SparseSoftmaxCrossEntropyWithLogits(root, logits, labels)
    loss = ops.Mean(root.WithOpName("loss"), xent.loss, [0])
    predicted = ops.ArgMax(root, logits, 1, output_type=DT_INT32)
    correct = ops.Equal(root, predicted, labels)
    accuracy = ops.Mean(root.WithOpName("accuracy"), ops.Cast(root, correct, DT_FLOAT), [0])
    step = train.Adam(0.01).minimize(root, loss)
    variables = [w1, b1, w2, b2, w3, b3]
    return images, labels, loss, accuracy, step, variables


def evaluate(sess, model, x, y, batch=500):
    images, labels, _, accuracy, _, _ = model
    total = 0.0
    for i in range(0, len(x), batch):
        total += float(sess.Run({images: x[i:i + batch], labels: y[i:i + batch]}, accuracy)) \
            * len(x[i:i + batch])
    return total / len(x)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train", type=int, default=1500, help="training images")
    parser.add_argument("--test", type=int, default=500, help="test images")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    x_train, y_train = make_shapes(args.train, rng)
    x_test, y_test = make_shapes(args.test, rng)
    root = Scope.NewRootScope()
    model = build_model(root, rng)
    images, labels, loss, _, step, variables = model
    sess = ClientSession(root)
    sess.Run({}, [], [train.global_variables_initializer(root)])

    for epoch in range(args.epochs):
        order = rng.permutation(args.train)
        t0, losses = time.perf_counter(), []
        for i in range(0, args.train, args.batch):
            idx = order[i:i + args.batch]
            (value,) = sess.Run({images: x_train[idx], labels: y_train[idx]}, [loss], [step])
            losses.append(float(value))
        rate = args.train / (time.perf_counter() - t0)
        acc = evaluate(sess, model, x_test, y_test)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {np.mean(losses):.4f}  "
              f"test accuracy {acc:.3f}  {rate:.0f} examples/s", flush=True)

    path = os.path.join(tempfile.mkdtemp(), "train_cnn.npz")
    saver = train.Saver(variables)
    saver.save(sess, path)
    restored = ClientSession(root)
    saver.restore(restored, path)
    restored_acc = evaluate(restored, model, x_test, y_test)
    print(f"checkpoint {path}: restored session test accuracy {restored_acc:.3f}")
    return acc, restored_acc


if __name__ == "__main__":
    main()
