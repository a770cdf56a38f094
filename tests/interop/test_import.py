"""ImportGraphDef: round trips, TF-made graphs with TF's numbers, every static error at once."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

import ops
from opgraph import DT_FLOAT, DT_INT32, Scope, errors
from opgraph.graphdef import (
    AttrValue, GraphDef, ListValue, NodeDef, TensorShapeProto, graph_to_graph_def,
    read_graph_def,
)
from opgraph.importer import GraphDefWarning, ImportGraphDef
from runtime import ClientSession

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
MANIFEST = json.load(open(os.path.join(GOLDEN, "manifest.json")))


def golden(name: str) -> GraphDef:
    return read_graph_def(os.path.join(GOLDEN, name))


def golden_arrays(name: str) -> tuple[dict, dict]:
    data = np.load(os.path.join(GOLDEN, name))
    ins = {k[3:].replace("__", ":"): data[k] for k in data.files if k.startswith("in/")}
    outs = {k[4:].replace("__", ":"): data[k] for k in data.files if k.startswith("out/")}
    return ins, outs


def _attr_key(v):
    if isinstance(v, np.ndarray):
        return ("tensor", v.dtype.str, v.shape, v.tobytes() if v.dtype != object else
                tuple(v.reshape(-1).tolist()))
    if isinstance(v, tuple):
        return tuple(_attr_key(x) for x in v)
    return v


def graph_signature(graph) -> list:
    """Everything that defines a graph, per op in creation order."""
    return [(op.name, op.type, [o.name for o in op.inputs], [c.name for c in op.control_inputs],
             op.device, op.kernel_label, op.colocation,
             {k: _attr_key(v) for k, v in op.attrs.items()}, op.output_dtypes,
             [s.dims for s in op.output_shapes]) for op in graph.operations()]


def _build_everything():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[None, 6, 6, 3])
    w = ops.Const(root.WithOpName("w"), np.linspace(-1, 1, 81, dtype=np.float32)
                  .reshape(3, 3, 3, 3))
    tower = root.NewSubScope("tower").WithDevice("/device:CPU:0")
    c = ops.Conv2D(tower.WithOpName("conv"), x, w, [1, 2, 2, 1], "SAME")
    r = ops.Relu(tower.WithKernelLabel(""), c)
    s = ops.Split(root, 3, r, num_split=3)
    n = ops.AddN(root.WithControlDependencies([r]).ColocateWith(r), [s[0], s[1], s[2]])
    ops.Const(root.WithOpName("half"), np.array([1.5, 2.0], np.float16))
    ops.Const(root.WithOpName("strings"), np.array(["a", "\"q\"", "é"], object))
    ops.Const(root.WithOpName("splat"), np.zeros((50, 50), np.float32))
    ops.Const(root.WithOpName("i64"), np.array([2 ** 40], np.int64))
    shape = ops.Shape(root, n)
    ops.Reshape(root.WithOpName("flat"), n, ops.Const(root, np.array([-1], np.int32)))
    ops.Cast(root, shape, DstT=DT_FLOAT)
    root.status().raise_if_error()
    return root, x, n


@pytest.mark.parametrize("encoding", ["text", "binary", "one_line"])
def test_round_trip_ours_graph_def_ours_is_identical(encoding):
    root, x, n = _build_everything()
    gd = root.graph()
    graph_def = graph_to_graph_def(gd)
    data = {"text": graph_def.to_text(), "binary": graph_def.SerializeToString(),
            "one_line": graph_def.to_text(as_one_line=True)}[encoding]
    other = Scope.NewRootScope()
    ImportGraphDef(other, data)
    assert other.ok(), other.status()
    assert graph_signature(other.graph()) == graph_signature(gd)
    assert graph_to_graph_def(other.graph()) == graph_def
    xv = np.random.default_rng(0).standard_normal((2, 6, 6, 3)).astype(np.float32)
    a = ClientSession(root).Run({x: xv}, [n])
    b = ClientSession(other).Run({"x": xv}, [n.output.name])
    np.testing.assert_array_equal(a[0], b[0])


def test_prefix_input_map_and_return_elements():
    root, x, n = _build_everything()
    graph_def = graph_to_graph_def(root.graph())
    target = Scope.NewRootScope()
    feed = ops.Placeholder(target.WithOpName("image"), DT_FLOAT, shape=[2, 6, 6, 3])
    out, op = ImportGraphDef(target, graph_def, prefix="imported", input_map={"x:0": feed},
                             return_elements=[f"{n.operation.name}:0", "tower/conv"])
    assert target.ok(), target.status()
    assert out.op.name == f"imported/{n.operation.name}"
    assert op.name == "imported/tower/conv" and op.inputs[0].op.name == "image"
    assert out.shape.as_list() == [2, 3, 3, 1]      # the mapped input's static shape flowed
    assert target.graph().get_operation("imported/AddN").colocation == ("imported/tower/Relu",)
    xv = np.ones((2, 6, 6, 3), np.float32)
    np.testing.assert_array_equal(ClientSession(target).Run({feed: xv}, [out])[0],
                                  ClientSession(root).Run({x: xv}, [n])[0])
    with pytest.raises(errors.InvalidArgumentError, match="not found in graph def"):
        ImportGraphDef(Scope.NewRootScope(), graph_def, return_elements=["nope"])
    bad = Scope.NewRootScope()
    ImportGraphDef(bad, graph_def, input_map={"nope:0": feed})
    assert "Attempted to map inputs that were not found" in bad.status().message


# ---------------------------------------------------------------- TF-made graphs
def _run_golden(graph_name: str, npz: str, outputs=None):
    root = Scope.NewRootScope()
    ImportGraphDef(root, golden(graph_name))
    assert root.ok(), root.status()
    ins, outs = golden_arrays(npz)
    names = outputs or list(outs)
    got = ClientSession(root).Run(list(ins.items()), names)
    for name, value in zip(names, got):
        np.testing.assert_allclose(value, outs[name], rtol=1e-5, atol=1e-5, err_msg=name)
    return root


def test_tf_conv_decoder_runs_with_tfs_numbers():
    root = _run_golden("conv_decoder.pb", "conv_decoder.npz")
    types = {op.type for op in root.graph().operations()}
    assert "Conv2DBackpropInput" in types
    assert root.graph().get_operation("image").output_shapes[0].as_list() == [1, 19, 19, 3]


def test_tf_conv_decoder_v2_gives_the_v1_numbers():
    # TF has no kernel for Conv2DBackpropInputV2; the same function through V1 is TF's answer
    root = _run_golden("conv_decoder_v2.pbtxt", "conv_decoder.npz")
    assert root.graph().get_operation("deconv1").type == "Conv2DBackpropInputV2"


@pytest.mark.parametrize("name", ["small_cnn.pb", "small_cnn.pbtxt"])
def test_tf_small_cnn_runs_with_tfs_numbers(name):
    root = _run_golden(name, "small_cnn.npz")
    g = root.graph()
    assert g.get_operation("conv1").device == "/device:CPU:0"
    assert [c.name for c in g.get_operation("flat/shape").control_inputs] == ["gap"]
    assert g.get_operation("pool2").colocation == ("r2",)
    # defaults filled from our OpDef, TF's attrs read: every FusedBatchNormV3 attr is present
    bn = g.get_operation("bn")
    assert bn.attrs["is_training"] is False and bn.attrs["epsilon"] == pytest.approx(1e-3)


def test_output_shapes_are_merged_into_inferred_shapes():
    gd = golden("small_cnn.pbtxt")
    x = gd.find_node("x")
    assert "_output_shapes" in x.attr
    nodes = [n if n.name != "x" else NodeDef(n.name, n.op, n.input, n.device, {
        **n.attr, "shape": AttrValue(shape=TensorShapeProto(unknown_rank=True)),
        "_output_shapes": AttrValue(list=ListValue(shape=(
            TensorShapeProto.from_shape([2, 12, 12, 3]),)))}) for n in gd.node]
    root = Scope.NewRootScope()
    ImportGraphDef(root, GraphDef(node=tuple(nodes), versions=gd.versions))
    assert root.ok(), root.status()
    assert root.graph().get_operation("x").output_shapes[0].as_list() == [2, 12, 12, 3]
    assert root.graph().get_operation("probs").output_shapes[0].as_list() == [2, 5]


def test_inconsistent_output_shapes_are_an_error():
    text = golden("conv_decoder.pb").to_text().replace(
        'name: "relu1"\n  op: "Relu"',
        'name: "relu1"\n  op: "Relu"\n  attr { key: "_output_shapes" value { list { shape { '
        'dim { size: 1 } dim { size: 9 } dim { size: 8 } dim { size: 4 } } } } }')
    root = Scope.NewRootScope()
    ImportGraphDef(root, text)
    (err,) = root.status().errors
    assert "inconsistent" in err.message and "[1, 9, 8, 4]" in err.message
    assert err.op_name == "relu1"


def test_tf_gradient_graph_of_a_conv_net():
    _run_golden("conv_grad_input.pb", "conv_grad.npz", ["dx:0"])
    root = Scope.NewRootScope()
    ImportGraphDef(root, golden("conv_grad.pb"))
    types = {n.op for n in golden("conv_grad.pb").node}
    assert {"Conv2DBackpropInput", "Conv2DBackpropFilter", "ReluGrad", "BiasAddGrad",
            "MaxPoolGrad", "ShapeN"} <= types
    try:
        ops.Conv2DBackpropFilter  # noqa: B018
    except AttributeError:
        (err,) = root.status().errors          # everything else imports and checks
        assert "Op type not registered 'Conv2DBackpropFilter'" in err.message
        pytest.skip("Conv2DBackpropFilter is not in the op library yet")
    _run_golden("conv_grad.pb", "conv_grad.npz")


def test_tf_accepts_a_mis_sized_out_backprop_that_import_reports():
    assert "No OpKernel" in MANIFEST["bad_v2_tf_run"]      # TF built it; only a run fails
    root = Scope.NewRootScope()
    ImportGraphDef(root, golden("bad_v2.pbtxt"))
    (err,) = root.status().errors
    assert isinstance(err, errors.InvalidArgumentError)
    assert err.op_name == "dx" and err.op_type == "Conv2DBackpropInputV2"
    assert "Size of out_backprop doesn't match computed: actual = 5, computed = 4" in err.message
    assert "bad_v2.pbtxt:92" in err.message and "[1,8,8,3], [3,3,3,4], [1,5,5,4]" in err.message
    assert not root.graph().has_name("dx") and root.graph().has_name("dx_ok")


def test_tf_constants_of_every_encoding():
    root = Scope.NewRootScope()
    gd = golden("consts.pbtxt")
    ImportGraphDef(root, gd)
    _, outs = golden_arrays("consts.npz")
    bf16 = root.graph().has_name("bf16")
    for name, want in outs.items():
        op_name = name.split(":")[0]
        if op_name == "bf16" and not bf16:
            (err,) = root.status().errors
            assert "bfloat16" in err.message and err.op_name == "bf16"
            continue
        got = root.graph().get_operation(op_name).attrs["value"]
        if got.dtype == object:
            assert [x.encode() if isinstance(x, str) else x for x in got.reshape(-1)] == \
                list(want.reshape(-1)), name
            continue
        if op_name == "bf16":
            got = got.astype(np.float32)
        assert got.dtype == want.dtype and got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)


# ---------------------------------------------------------------- errors, all in one pass
def _nodes(*specs) -> GraphDef:
    return GraphDef.from_text("\n".join(f"node {{ {s} }}" for s in specs), "t.pbtxt")


F = 'attr { key: "dtype" value { type: DT_FLOAT } }'
SHAPE = 'attr {{ key: "shape" value {{ shape {{ {} }} }} }}'


def test_every_independent_error_is_reported_in_one_pass():
    gd = _nodes(
        f'name: "x" op: "Placeholder" {F} ' + SHAPE.format("dim { size: 2 } dim { size: 3 }"),
        'name: "bad_op" op: "NoSuchOp" input: "x"',
        'name: "after_bad" op: "Relu" input: "bad_op"',        # skipped quietly
        'name: "mm" op: "MatMul" input: "x" input: "x"',        # [2,3] x [2,3]: error
        'name: "missing" op: "Relu" input: "ghost"',
        'name: "attr_kind" op: "Relu" input: "x" attr { key: "T" value { s: "x" } }',
        'name: "ok" op: "Relu" input: "x"',
        'name: "ctl" op: "Relu" input: "^x" input: "x"',
    )
    root = Scope.NewRootScope()
    ImportGraphDef(root, gd)
    errs = root.status().errors
    by_node = {e.op_name: e for e in errs}
    assert set(by_node) == {"bad_op", "mm", "missing", "attr_kind", "ctl"}
    assert isinstance(by_node["bad_op"], errors.NotFoundError)
    assert "Op type not registered 'NoSuchOp'" in by_node["bad_op"].message
    assert "[2,3], [2,3]" in by_node["mm"].message and "t.pbtxt:4" in by_node["mm"].message
    assert "Unknown input node 'ghost'" in by_node["missing"].message
    assert "Attr 'T'" in by_node["attr_kind"].message
    assert "Control dependencies must come after" in by_node["ctl"].message
    assert root.graph().has_name("ok") and not root.graph().has_name("after_bad")


def test_dtype_mismatch_names_input_and_types():
    gd = _nodes(f'name: "x" op: "Placeholder" {F}',
                'name: "y" op: "Relu" input: "x" attr { key: "T" value { type: DT_HALF } }')
    root = Scope.NewRootScope()
    ImportGraphDef(root, gd)
    assert "Input 0 of node 'y' was passed float32 from 'x:0' incompatible with expected " \
        "float16" in root.status().message


def test_input_counts_come_from_the_node_def_attrs():
    gd = _nodes(f'name: "x" op: "Placeholder" {F}',
                'name: "n" op: "AddN" input: "x" input: "x" input: "x" '
                'attr { key: "N" value { i: 2 } }',
                'name: "k" op: "Relu" input: "x:3"')
    root = Scope.NewRootScope()
    ImportGraphDef(root, gd)
    msgs = [e.message for e in root.status().errors]
    assert any("do not match 3 inputs specified" in m for m in msgs)
    assert any("invalid output 3 of source node x which has 1 outputs" in m for m in msgs)


def test_defaults_are_filled_and_unknown_attrs_warned():
    gd = _nodes(f'name: "x" op: "Placeholder" {F}',
                'name: "c" op: "Conv2D" input: "x" input: "x" '
                'attr { key: "strides" value { list { i: [1, 1, 1, 1] } } } '
                'attr { key: "padding" value { s: "VALID" } } '
                'attr { key: "future_attr" value { i: 3 } } '
                'attr { key: "_user_attr" value { s: "kept" } }')
    root = Scope.NewRootScope()
    with pytest.warns(GraphDefWarning, match="attr 'future_attr' is not in opgraph's OpDef"):
        ImportGraphDef(root, gd)
    assert root.ok(), root.status()
    c = root.graph().get_operation("c")
    assert c.attrs["data_format"] == "NHWC" and c.attrs["dilations"] == (1, 1, 1, 1)
    assert c.meta["graph_def_attrs"]["_user_attr"].s == b"kept"
    back = graph_to_graph_def(root.graph()).find_node("c")
    assert back.attr["_user_attr"].s == b"kept" and "future_attr" not in back.attr


def test_cycles_are_reported_and_independent_nodes_still_built():
    gd = _nodes(f'name: "x" op: "Placeholder" {F}',
                'name: "a" op: "AddV2" input: "x" input: "b"',
                'name: "b" op: "Relu" input: "a"',
                'name: "c" op: "Relu" input: "b"',
                'name: "d" op: "Relu" input: "x"',
                'name: "e" op: "Relu" input: "e"')
    root = Scope.NewRootScope()
    ImportGraphDef(root, gd)
    msgs = sorted(e.message for e in root.status().errors)
    assert len(msgs) == 2 and all("GraphDef has a cycle" in m for m in msgs)
    assert any("a -> b -> a" in m or "b -> a -> b" in m for m in msgs)
    assert [op.name for op in root.graph().operations()] == ["x", "d"]


def test_duplicates_devices_and_node_order():
    gd = _nodes('name: "y" op: "Relu" input: "x"',           # consumers may come first
                f'name: "x" op: "Placeholder" {F} device: "/job:localhost/task:0/cpu:0"',
                f'name: "x" op: "Placeholder" {F}',
                'name: "z" op: "Relu" input: "x" device: "/device:TPU:0"')
    root = Scope.NewRootScope()
    ImportGraphDef(root, gd)
    msgs = [e.message for e in root.status().errors]
    assert any("Node 'x' is not unique" in m for m in msgs)
    assert any("TPU" in m for m in msgs)
    assert root.graph().get_operation("x").device == "/device:CPU:0"
    assert root.graph().get_operation("y").inputs[0].op.name == "x"


def test_exit_on_error_raises_at_the_first():
    gd = _nodes('name: "a" op: "NoSuchOp"')
    with pytest.raises(errors.NotFoundError, match="NoSuchOp"):
        ImportGraphDef(Scope.NewRootScope().ExitOnError(), gd)


def test_functions_are_named_in_the_error():
    gd = GraphDef.from_text('node { name: "f" op: "my_fn" } library { function { signature '
                            '{ name: "my_fn" } } }')
    root = Scope.NewRootScope()
    ImportGraphDef(root, gd)
    assert "function of the GraphDef's library" in root.status().message


def test_int_shapes_flow_through_values():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_INT32, shape=[4, 6])
    ops.Reshape(root.WithOpName("r"), x, ops.Const(root, np.array([3, -1], np.int32)))
    other = Scope.NewRootScope()
    ImportGraphDef(other, graph_to_graph_def(root.graph()))
    assert other.graph().get_operation("r").output_shapes[0].as_list() == [3, 8]


def test_warnings_module_is_clean_for_tf_graphs():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ImportGraphDef(Scope.NewRootScope(), golden("small_cnn.pbtxt"))
