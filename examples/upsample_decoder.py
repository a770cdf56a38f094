"""An autoencoder whose decoder upsamples with Conv2DBackpropInputV2 (a transposed conv).

Encoder: two stride-2 Conv2D + Relu (16x16x1 -> 8x8x8 -> 4x4x16). Decoder: two stride-2
Conv2DBackpropInputV2 "deconvolutions" back to 16x16x1, the op TensorFlow has no kernel
for, trained end to end with Adam through its gradients (Conv2DBackpropFilterV2 for the
filter, Conv2D for out_backprop). Trains until the test reconstruction error (mean squared
error per pixel) falls below --target (default 0.02; the images' own noise has variance
0.0625, so the decoder must denoise to get there), then writes a PNG grid of inputs (top row) and
reconstructions (bottom row) with the graph's own EncodePng.

Run:  python examples/upsample_decoder.py [--target 0.02] [--max-epochs 30]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

import numpy as np

import ops
from opgraph import DT_FLOAT, Scope, train
from runtime import ClientSession

SIZE = 16


def _shapes():
    spec = importlib.util.spec_from_file_location(
        "train_cnn", os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_cnn.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_shapes


def build(root, rng):
    images = ops.Placeholder(root.WithOpName("images"), DT_FLOAT, shape=[None, SIZE, SIZE, 1])

    def var(name, shape, fan_in):
        init = rng.normal(0, np.sqrt(2.0 / fan_in), shape).astype(np.float32)
        return train.Variable(root.WithOpName(name), init).output

    e1, e2 = var("enc1", (3, 3, 1, 8), 9), var("enc2", (3, 3, 8, 16), 72)
    d2, d1 = var("dec2", (4, 4, 8, 16), 256), var("dec1", (4, 4, 1, 8), 128)
    h1 = ops.Relu(root, ops.Conv2D(root, images, e1, [1, 2, 2, 1], "SAME"))      # 8x8x8
    h2 = ops.Relu(root, ops.Conv2D(root, h1, e2, [1, 2, 2, 1], "SAME"))          # 4x4x16
    # The transposed convs: `input` only gives the output's shape (here: the encoder's own
    # activations, so the batch follows whatever is fed).
    u2 = ops.Relu(root, ops.Conv2DBackpropInputV2(root, h1, d2, h2, [1, 2, 2, 1], "SAME"))
    recon = ops.Conv2DBackpropInputV2(root.WithOpName("reconstruction"), images, d1, u2,
                                      [1, 2, 2, 1], "SAME")
    loss = ops.Mean(root.WithOpName("mse"), ops.SquaredDifference(root, recon, images),
                    [0, 1, 2, 3])
    step = train.Adam(0.01).minimize(root, loss)
    return images, recon, loss, step


def png_grid(root_sess_images, originals, reconstructions, path):
    """Inputs on top, reconstructions below, 8 each, scaled to 0..255, through EncodePng."""
    top = np.concatenate(list(originals[:8, :, :, 0]), axis=1)
    bottom = np.concatenate(list(reconstructions[:8, :, :, 0]), axis=1)
    grid = np.concatenate([top, bottom], axis=0)
    grid = np.clip((grid - grid.min()) / max(np.ptp(grid), 1e-6) * 255, 0, 255)
    scope = Scope.NewRootScope()
    png = ops.EncodePng(scope, grid.astype(np.uint8)[:, :, None])
    data = ClientSession(scope).Run(png)
    with open(path, "wb") as f:
        f.write(data.item() if hasattr(data, "item") else data)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.02, help="test MSE to reach")
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--png", default="upsample_decoder.png")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    make_shapes = _shapes()
    x_train, _ = make_shapes(args.train, rng)
    x_test, _ = make_shapes(200, rng)
    root = Scope.NewRootScope()
    images, recon, loss, step = build(root, rng)
    sess = ClientSession(root)
    sess.Run({}, [], [train.global_variables_initializer(root)])
    mse = float("inf")
    for epoch in range(args.max_epochs):
        t0 = time.perf_counter()
        order = rng.permutation(args.train)
        for i in range(0, args.train, args.batch):
            sess.Run({images: x_train[order[i:i + args.batch]]}, [], [step])
        mse = float(sess.Run({images: x_test}, loss))
        rate = args.train / (time.perf_counter() - t0)
        print(f"epoch {epoch + 1}: test reconstruction MSE {mse:.4f}  {rate:.0f} examples/s",
              flush=True)
        if mse < args.target:
            break
    out = sess.Run({images: x_test[:8]}, recon)
    if args.png:
        print("wrote", png_grid(sess, x_test, out, args.png))
    print(f"{'reached' if mse < args.target else 'did not reach'} the target MSE "
          f"{args.target} (final {mse:.4f})")
    return mse


if __name__ == "__main__":
    main()
