"""ONNX export: onnx.checker passes and onnxruntime gives our numbers (needs both)."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

import ops
from opgraph import DT_FLOAT, Scope, errors
from opgraph.graphdef import read_graph_def
from opgraph.importer import ImportGraphDef
from opgraph.onnx_export import conv_transpose_geometry, export, supported_ops
from opgraph.windows import windowed_output_size
from runtime import ClientSession

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")

#: the conv family's 72 configurations: stride x padding x (filter, dilation) x size parity
CONFIGS = list(itertools.product([1, 2, 3], ["SAME", "VALID", "EXPLICIT"],
                                 [(3, 1), (2, 1), (3, 2), (4, 1)], [0, 1]))
_EXPLICIT = {"NHWC": [0, 0, 1, 2, 2, 0, 0, 0], "NCHW": [0, 0, 0, 0, 1, 2, 2, 0]}


def _run_onnx(model, feeds: dict) -> list:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {k.name if hasattr(k, "name") else k: v for k, v in feeds.items()})


def _conv_family(op_type: str, data_format="NHWC", groups=1, configs=CONFIGS):
    """One graph holding ``op_type`` in every configuration, with its feeds."""
    rng = np.random.default_rng(len(op_type) + groups)
    root = Scope.NewRootScope()
    fetches, feeds = [], {}
    cin, cout = 2 * groups, 3 * groups
    for i, (stride, padding, (k, d), odd) in enumerate(configs):
        h, w = 8 + odd, 7 + odd
        ep = _EXPLICIT[data_format] if padding == "EXPLICIT" else []
        eh = tuple(ep[2:4] if data_format == "NHWC" else ep[4:6]) if ep else (0, 0)
        ew = tuple(ep[4:6] if data_format == "NHWC" else ep[6:8]) if ep else (0, 0)
        oh = windowed_output_size(h, k, stride, d, padding, *eh)[0]
        ow = windowed_output_size(w, k, stride, d, padding, *ew)[0]
        nhwc = data_format == "NHWC"
        full = [2, h, w, cin] if nhwc else [2, cin, h, w]
        small = [2, oh, ow, cout] if nhwc else [2, cout, oh, ow]
        strides = [1, stride, stride, 1] if nhwc else [1, 1, stride, stride]
        dil = [1, d, d, 1] if nhwc else [1, 1, d, d]
        filt = rng.standard_normal((k, k, cin // groups, cout)).astype(np.float32)
        attrs = {"dilations": dil, "explicit_paddings": ep, "data_format": data_format}
        s = root.NewSubScope(f"c{i}")
        if op_type == "Conv2D":
            x = ops.Placeholder(s.WithOpName("x"), DT_FLOAT, shape=full)
            y = ops.Conv2D(s, x, filt, strides, padding, **attrs)
            feeds[x.output] = rng.standard_normal(full).astype(np.float32)
        else:
            dy = ops.Placeholder(s.WithOpName("dy"), DT_FLOAT, shape=small)
            feeds[dy.output] = rng.standard_normal(small).astype(np.float32)
            if op_type == "Conv2DBackpropInput":
                y = ops.Conv2DBackpropInput(s, np.array(full, np.int32), filt, dy, strides,
                                            padding, **attrs)
            else:
                like = ops.Placeholder(s.WithOpName("like"), DT_FLOAT, shape=full)
                y = ops.Conv2DBackpropInputV2(s, like, filt, dy, strides, padding, **attrs)
                feeds[like.output] = np.zeros(full, np.float32)
        fetches.append(y.output)
    root.status().raise_if_error()
    return root, fetches, feeds


@pytest.mark.parametrize(("op_type", "data_format", "groups"), [
    ("Conv2DBackpropInput", "NHWC", 1), ("Conv2DBackpropInputV2", "NHWC", 1),
    ("Conv2DBackpropInput", "NCHW", 1), ("Conv2DBackpropInputV2", "NHWC", 2),
    ("Conv2D", "NHWC", 1), ("Conv2D", "NCHW", 2),
])
def test_conv_family_matches_in_onnxruntime(op_type, data_format, groups):
    root, fetches, feeds = _conv_family(op_type, data_format, groups)
    ours = ClientSession(root).Run(feeds, fetches)
    onnx_feeds = {k: v for k, v in feeds.items() if k.op.name.split("/")[-1] != "like"}
    model = export(root, fetches, feeds=list(onnx_feeds))
    inputs = [i.name for i in model.graph.input]
    assert not any(name.endswith("like:0") for name in inputs)     # V2's input: shape only
    theirs = _run_onnx(model, {k.name: v for k, v in onnx_feeds.items()})
    for cfg, a, b in zip(CONFIGS, ours, theirs):
        assert a.shape == b.shape, cfg
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4, err_msg=str(cfg))


def test_uncovered_rows_use_output_padding_never_negative_pads():
    needing = 0
    for stride, padding, (k, d), odd in CONFIGS:
        for size in (8 + odd, 7 + odd):
            ex = (1, 2) if padding == "EXPLICIT" else (0, 0)
            _, begin, end, out_pad = conv_transpose_geometry(size, k, stride, d, padding, ex)
            assert begin >= 0 and end >= 0 and 0 <= out_pad < stride
            needing += out_pad > 0
    assert needing > 0


def test_conv_transposes_ops_attrs():
    root, fetches, feeds = _conv_family("Conv2DBackpropInput", configs=[(2, "VALID", (4, 1),
                                                                          1)])
    model = export(root, fetches, feeds=list(feeds))
    (ct,) = [n for n in model.graph.node if n.op_type == "ConvTranspose"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in ct.attribute}
    # 9 rows (8 columns) from a 3x3 dy, stride 2, 4 taps: the transposed conv covers 8;
    # the last row, which the forward conv never read, comes from output_padding
    assert attrs["output_padding"] == [1, 0] and attrs["pads"] == [0, 0, 0, 0]
    assert [n.op_type for n in model.graph.node] == ["Transpose", "ConvTranspose",
                                                     "Transpose"]


@pytest.mark.parametrize(("graph", "npz", "fetches"), [
    ("small_cnn.pb", "small_cnn.npz", ["probs:0", "features:0", "pool1:0"]),
    ("conv_decoder.pb", "conv_decoder.npz", ["image:0", "relu1:0"]),
    ("conv_decoder_v2.pbtxt", "conv_decoder.npz", ["image:0"]),
])
def test_tf_graphs_export_and_match_tf(tmp_path, graph, npz, fetches):
    root = Scope.NewRootScope()
    ImportGraphDef(root, read_graph_def(os.path.join(GOLDEN, graph)))
    path = tmp_path / "model.onnx"
    export(root, fetches, str(path))
    onnx.checker.check_model(onnx.load(str(path)))
    data = np.load(os.path.join(GOLDEN, npz))
    feeds = {k[3:].replace("__", ":"): data[k] for k in data.files if k.startswith("in/")}
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for name, got in zip(fetches, sess.run(None, feeds)):
        np.testing.assert_allclose(got, data[f"out/{name.replace(':', '__')}"], rtol=1e-5,
                                   atol=1e-5, err_msg=name)
    assert {n.name for n in onnx.load(str(path)).graph.node} >= set()


def test_elementwise_matmul_and_shape_ops():
    rng = np.random.default_rng(3)
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[2, 3])
    a = ops.Sigmoid(root, ops.AddV2(root, ops.Square(root, x), 1.0))
    b = ops.Relu6(root, ops.Mul(root, x, 5.0))
    m = ops.MatMul(root, a, b, transpose_b=True)
    r = ops.Reshape(root, ops.ConcatV2(root, [a, b], 1), [3, -1])
    t = ops.Transpose(root, r, [1, 0])
    s = ops.Mean(root, t, [0], keep_dims=True)
    sm = ops.Softmax(root, ops.Sub(root, m, ops.Max(root, m, [1], keep_dims=True)))
    p = ops.Pack(root, [x, x], axis=1)
    fetches = [m, r, t, s, sm, p, ops.Rsqrt(root, ops.AddV2(root, ops.Abs(root, x), 1.0)),
               ops.Cast(root, ops.Greater(root, x, 0.0), DstT=DT_FLOAT)]
    xv = rng.standard_normal((2, 3)).astype(np.float32)
    ours = ClientSession(root).Run({x: xv}, fetches)
    theirs = _run_onnx(export(root, fetches), {"x:0": xv})
    for a_, b_ in zip(ours, theirs):
        np.testing.assert_allclose(b_, a_, rtol=1e-5, atol=1e-6)


def test_unmapped_op_is_a_clear_error():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[4])
    y = ops.Cumsum(root.WithOpName("cs"), x, 0)
    with pytest.raises(errors.UnimplementedError, match="No ONNX mapping for op Cumsum "
                                                        r"\(e.g. node 'cs'"):
        export(root, [y])
    assert "Conv2DBackpropInputV2" in supported_ops()
