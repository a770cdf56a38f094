"""Make the TF-written GraphDefs of tests/interop (run once, with real TensorFlow).

    python -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu
    /tmp/tfvenv/bin/python tests/interop/golden/make_golden.py

Every file here was written by TensorFlow itself (tf.compat.v1 graph mode, the version is
recorded in ``manifest.json``), never by opgraph; the tests only read them, so TensorFlow is
not a test dependency. For each graph: the GraphDef (.pb, binary; some also .pbtxt, TF's text
format) and ``<name>.npz`` holding the fed inputs and TF's outputs (``in/<tensor>`` and
``out/<tensor>``, tensor names with ':' written as '__').

* conv_decoder: two Conv2DBackpropInput (tf.nn.conv2d_transpose: SAME stride 2, VALID stride
  2 with an uncovered trailing row) with BiasAdd, Relu and Sigmoid, weights frozen in Consts.
* conv_decoder_v2: the same decoder with Conv2DBackpropInputV2 (raw_ops; TF has no kernel for
  it, so its expected outputs are conv_decoder's, which computes the same function).
* small_cnn: Conv2D + BiasAdd + Relu, MaxPool, a strided dilated... (see build_small_cnn),
  FusedBatchNormV3 (inference), Mean, Reshape, MatMul, Softmax; a device, a control
  dependency and a colocation; also written as .pbtxt with _output_shapes.
* conv_grad / conv_grad_input: TF's own tf.gradients graph of a conv net (loss of a
  Conv2D + BiasAdd + Relu + pooling net w.r.t. input, filter and bias), and the same graph
  pruned by TF's extract_sub_graph to the input gradient only.
* bad_v2: a Conv2DBackpropInputV2 whose out_backprop has the wrong spatial size. TF builds
  this graph without complaint (its V2 shape function only copies the input's shape); the
  error is found only when a kernel runs -- opgraph's import reports it statically.
* consts: Const nodes of every dtype and the encodings TF writes (tensor_content, typed
  *_val, splat constants, half/bfloat16), as .pbtxt, with their values.
"""

from __future__ import annotations

import json
import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1
tf1.disable_eager_execution()
HERE = os.path.dirname(os.path.abspath(__file__))
RNG = np.random.default_rng(20240610)


def _key(name: str) -> str:
    return name.replace(":", "__")


def _save(name, graph, feeds, fetches, as_text=False, add_shapes=False, run=True):
    gd = graph.as_graph_def(add_shapes=add_shapes)
    tf.io.write_graph(gd, HERE, f"{name}.pb", as_text=False)
    if as_text:
        tf.io.write_graph(gd, HERE, f"{name}.pbtxt", as_text=True)
    arrays = {f"in/{_key(k)}": v for k, v in feeds.items()}
    if run:
        with tf1.Session(graph=graph) as sess:
            outs = sess.run(fetches, {graph.get_tensor_by_name(k): v for k, v in feeds.items()})
        arrays.update({f"out/{_key(k)}": v for k, v in zip(fetches, outs)})
    np.savez_compressed(os.path.join(HERE, f"{name}.npz"), **arrays)
    return gd


def _weights(*shape, scale=0.3):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def build_decoder(v2: bool):
    g = tf.Graph()
    with g.as_default():
        z = tf1.placeholder(tf.float32, [1, 4, 4, 8], name="z")
        w1 = tf.constant(W1, name="w1")          # [3, 3, out 4, in 8]
        b1 = tf.constant(B1, name="b1")
        w2 = tf.constant(W2, name="w2")          # [4, 4, out 3, in 4]
        if v2:
            h = tf.raw_ops.Conv2DBackpropInputV2(
                input=tf.zeros([1, 8, 8, 4], name="like1"), filter=w1, out_backprop=z,
                strides=[1, 2, 2, 1], padding="SAME", name="deconv1")
        else:
            h = tf.nn.conv2d_transpose(z, w1, [1, 8, 8, 4], [1, 2, 2, 1], "SAME",
                                       name="deconv1")
        h = tf.nn.relu(tf.nn.bias_add(h, b1), name="relu1")
        if v2:
            y = tf.raw_ops.Conv2DBackpropInputV2(
                input=tf.zeros([1, 19, 19, 3], name="like2"), filter=w2, out_backprop=h,
                strides=[1, 2, 2, 1], padding="VALID", name="deconv2")
        else:
            # 19 rows: VALID stride 2 leaves the last row uncovered by the forward conv
            y = tf.nn.conv2d_transpose(h, w2, [1, 19, 19, 3], [1, 2, 2, 1], "VALID",
                                       name="deconv2")
        tf.math.sigmoid(y, name="image")
    return g


def build_small_cnn():
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, 12, 12, 3], name="x")
        with tf.device("/device:CPU:0"):
            c1 = tf.nn.conv2d(x, tf.constant(_weights(3, 3, 3, 8), name="w1"), 1, "SAME",
                              name="conv1")
        c1 = tf.nn.relu(tf.nn.bias_add(c1, tf.constant(_weights(8), name="b1")), name="r1")
        p1 = tf.nn.max_pool2d(c1, 2, 2, "VALID", name="pool1")
        c2 = tf.nn.conv2d(p1, tf.constant(_weights(3, 3, 8, 8), name="w2"), 1, "SAME",
                          dilations=2, name="conv2")
        bn = tf1.nn.fused_batch_norm(
            c2, tf.constant(1 + _weights(8, scale=0.1), name="gamma"),
            tf.constant(_weights(8, scale=0.1), name="beta"),
            mean=tf.constant(_weights(8, scale=0.1), name="mean"),
            variance=tf.constant(1 + np.abs(_weights(8, scale=0.1)), name="var"),
            epsilon=1e-3, is_training=False, name="bn")[0]
        r2 = tf.nn.relu6(bn, name="r2")
        with g.colocate_with(r2.op):
            p2 = tf.nn.avg_pool2d(r2, 3, 2, "SAME", name="pool2")
        gap = tf.reduce_mean(p2, axis=[1, 2], name="gap")
        with tf.control_dependencies([gap.op]):
            flat = tf.reshape(p2, [-1, 3 * 3 * 8], name="flat")
        logits = tf.nn.bias_add(tf.matmul(flat, tf.constant(_weights(72, 5), name="fc")),
                                tf.constant(_weights(5), name="fc_b"), name="logits")
        tf.nn.softmax(logits, name="probs")
        tf.concat([gap, logits], axis=1, name="features")
    return g


def build_conv_grad():
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [2, 7, 7, 3], name="x")
        w = tf1.placeholder(tf.float32, [3, 3, 3, 4], name="w")
        b = tf.constant(_weights(4), name="b")
        y = tf.nn.conv2d(x, w, [1, 2, 2, 1], "SAME", name="conv")
        y = tf.nn.relu(tf.nn.bias_add(y, b), name="relu")
        y = tf.nn.max_pool2d(y, 2, 1, "VALID", name="pool")
        loss = tf.reduce_sum(tf.square(y), name="loss")
        dx, dw, db = tf1.gradients(loss, [x, w, b])
        tf.identity(dx, name="dx")
        tf.identity(dw, name="dw")
        tf.identity(db, name="db")
    return g


def build_bad_v2():
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [1, 8, 8, 3], name="x")
        w = tf.constant(_weights(3, 3, 3, 4), name="w")
        # SAME, stride 2 on an 8x8 input gives a 4x4 out_backprop; this one is 5x5.
        dy = tf1.placeholder(tf.float32, [1, 5, 5, 4], name="dy")
        tf.raw_ops.Conv2DBackpropInputV2(input=x, filter=w, out_backprop=dy,
                                         strides=[1, 2, 2, 1], padding="SAME", name="dx")
        ok = tf1.placeholder(tf.float32, [1, 4, 4, 4], name="dy_ok")
        tf.raw_ops.Conv2DBackpropInputV2(input=x, filter=w, out_backprop=ok,
                                         strides=[1, 2, 2, 1], padding="SAME", name="dx_ok")
    return g


def build_consts():
    import ml_dtypes  # noqa: PLC0415  (ships with TensorFlow)

    values = {
        "f32": np.array([[1.5, -2.25], [3.0, 1e-5]], np.float32),
        "f32_scalar": np.float32(0.1),
        "f32_splat": None,                          # tf.fill-like constant, see below
        "f64": np.array([0.1, -1e300, 2.5], np.float64),
        "f16": np.array([1.0, -0.5, 65504.0], np.float16),
        "f16_scalar": np.float16(0.333),
        "bf16": np.array([1.0, -3.5, 0.01], ml_dtypes.bfloat16),
        "i8": np.array([-128, 0, 127], np.int8),
        "u8": np.array([0, 7, 255], np.uint8),
        "i16": np.array([-32768, 12, 32767], np.int16),
        "u16": np.array([0, 65535], np.uint16),
        "i32": np.array([[1, -2, 3]], np.int32),
        "i64": np.array([-(2 ** 62), 5], np.int64),
        "i64_scalar": np.int64(-7),
        "bool": np.array([True, False, True]),
        "c64": np.array([1 + 2j, -0.5j], np.complex64),
        "c128": np.complex128(3 - 4j),
        "str": np.array([b"plain", b"q\"uo'te\\", b"\x00\xff\n\t", "é".encode()], object),
        "empty": np.zeros((0, 3), np.float32),
    }
    g = tf.Graph()
    with g.as_default():
        for name, v in values.items():
            if name == "f32_splat":
                tf.constant(2.5, tf.float32, shape=[3, 4], name=name)
            elif name == "bf16":
                tf.constant(v.astype(np.float32), tf.bfloat16, name=name)
            else:
                tf.constant(v, name=name)
        tf.zeros([2, 5], tf.int32, name="zeros_i32")
        tf.ones([4], tf.float16, name="ones_f16")
    fetched = {}
    with tf1.Session(graph=g) as sess:
        for op in g.get_operations():
            out = sess.run(op.outputs[0])
            if op.outputs[0].dtype == tf.bfloat16:
                out = np.asarray(out).astype(np.float32)
            if op.outputs[0].dtype == tf.string:        # no pickled object arrays
                out = np.asarray(out.tolist(), dtype="S")
            fetched[f"out/{_key(op.name + ':0')}"] = out
    tf.io.write_graph(g.as_graph_def(), HERE, "consts.pbtxt", as_text=True)
    np.savez_compressed(os.path.join(HERE, "consts.npz"), **fetched)


def main():
    global W1, B1, W2
    W1, B1, W2 = _weights(3, 3, 4, 8), _weights(4), _weights(4, 4, 3, 4)
    z = RNG.standard_normal((1, 4, 4, 8)).astype(np.float32)
    _save("conv_decoder", build_decoder(False), {"z:0": z}, ["image:0", "relu1:0"])
    # TF has no kernel for V2: save the graph with the V1 decoder's inputs and outputs.
    gd = build_decoder(True).as_graph_def()
    tf.io.write_graph(gd, HERE, "conv_decoder_v2.pbtxt", as_text=True)

    x = RNG.standard_normal((2, 12, 12, 3)).astype(np.float32)
    _save("small_cnn", build_small_cnn(), {"x:0": x}, ["probs:0", "features:0", "pool1:0"],
          as_text=True, add_shapes=True)

    g = build_conv_grad()
    feeds = {"x:0": RNG.standard_normal((2, 7, 7, 3)).astype(np.float32),
             "w:0": _weights(3, 3, 3, 4)}
    gd = _save("conv_grad", g, feeds, ["dx:0", "dw:0", "db:0", "loss:0"])
    sub = tf1.graph_util.extract_sub_graph(gd, ["dx"])
    tf.io.write_graph(sub, HERE, "conv_grad_input.pb", as_text=False)

    g = build_bad_v2()          # builds: TF's shape function does not check out_backprop
    tf.io.write_graph(g.as_graph_def(), HERE, "bad_v2.pbtxt", as_text=True)
    with tf1.Session(graph=g) as sess:
        try:
            sess.run("dx:0", {"x:0": np.zeros((1, 8, 8, 3), np.float32),
                              "dy:0": np.zeros((1, 5, 5, 4), np.float32)})
            tf_run = "ran"
        except tf.errors.OpError as e:
            reason = [line for line in e.message.splitlines() if "OpKernel" in line or
                      "out_backprop" in line] or e.message.splitlines()[:1]
            tf_run = f"{type(e).__name__}: {reason[0]}"

    build_consts()
    manifest = {"tensorflow": tf.__version__, "graph_def_version": tf.version.GRAPH_DEF_VERSION,
                "bad_v2_tf_run": tf_run,
                "files": sorted(f for f in os.listdir(HERE)
                           if not f.endswith(".py") and f != "manifest.json")}
    with open(os.path.join(HERE, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(HERE, f)) for f in manifest["files"])
    print(f"wrote {len(manifest['files'])} files, {total} bytes; bad_v2 in TF: {tf_run}")


if __name__ == "__main__":
    main()
