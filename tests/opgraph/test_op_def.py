"""OpDef spec language, attr validation at node creation, and the registry."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import ops  # noqa: F401  (registers the op library)
from opgraph import (
    DT_DOUBLE, DT_FLOAT, DT_HALF, DT_INT32, DT_INT64, OpDef, Scope, TensorShape, errors,
    get_op_def, register_op, registered_ops,
)
from opgraph import registry
from opgraph.op_def import NO_DEFAULT, ArgDef, AttrDef, format_attr_value

IA = errors.InvalidArgumentError


def _same_as_first(c):
    return [c.input(0)]


POOL = OpDef(
    "TestPool",
    inputs=["values: N * T  # the tensors", "sizes: int32"],
    outputs=["output: T"],
    attrs=["T: {half, float, double}", "N: int >= 1", "ksize: list(int) >= 4",
           "padding: {'SAME', 'VALID'}", "alpha: float = 0.2  # slope",
           "flag: bool = true", "label: string = 'x'", "shape: shape = ?",
           "out_type: type = int64", "layout: {'NHWC', 'NCHW'} = 'NHWC'"],
    shape_fn=_same_as_first,
    doc="A test op.")


# ---------------------------------------------------------------- spec parsing
def test_arg_specs():
    a, b, c = ArgDef.parse("x: T  # doc text"), ArgDef.parse("sizes: int32"), ArgDef.parse("vals: N * T")
    assert (a.name, a.type_attr, a.fixed_type, a.is_list, a.doc) == ("x", "T", None, False,
                                                                     "doc text")
    assert (b.type_attr, b.fixed_type) == (None, DT_INT32) and b.type_str() == "int32"
    assert (c.number_attr, c.type_attr, c.is_list) == ("N", "T", True)
    assert c.type_str() == "N * T"


@pytest.mark.parametrize("bad", ["x", "x: ", ": T", "x: N * ", "x y: T"])
def test_bad_arg_spec(bad):
    with pytest.raises(IA, match="Bad arg spec"):
        ArgDef.parse(bad)


def test_attr_specs():
    a = POOL.attrs
    assert (a["T"].kind, a["T"].allowed) == ("type", (DT_HALF, DT_FLOAT, DT_DOUBLE))
    assert (a["N"].kind, a["N"].minimum, a["N"].default) == ("int", 1, NO_DEFAULT)
    assert (a["ksize"].kind, a["ksize"].is_list, a["ksize"].minimum) == ("int", True, 4)
    assert (a["padding"].kind, a["padding"].allowed) == ("string", ("SAME", "VALID"))
    assert (a["alpha"].kind, a["alpha"].default, a["alpha"].doc) == ("float", 0.2, "slope")
    assert a["flag"].default is True
    assert a["label"].default == "x"
    assert a["shape"].default == TensorShape(None)
    assert a["out_type"].default is DT_INT64
    assert a["layout"].default == "NHWC"
    assert not a["ksize"].has_default and a["alpha"].has_default
    assert a["T"].type_str == "{float16, float32, float64}"
    assert a["padding"].type_str == "{'SAME', 'VALID'}"
    assert a["ksize"].type_str == "list(int)"


def test_type_set_shorthands_and_list_defaults():
    d = AttrDef.parse("T: realnumbertype")
    assert d.kind == "type" and DT_INT64 in d.allowed and DT_FLOAT in d.allowed
    assert AttrDef.parse("T: floatingpoint").allowed[-1] is DT_DOUBLE
    assert AttrDef.parse("d: list(int) = [1, 1, 1, 1]").default == (1, 1, 1, 1)
    assert AttrDef.parse("e: list(int) = []").default == ()
    assert AttrDef.parse("s: shape = [2, ?]").default == TensorShape([2, None])
    assert AttrDef.parse("b: bool = false").default is False


@pytest.mark.parametrize(("spec", "regex"), [
    ("x: complexthing", "Bad attr kind 'complexthing'"),
    ("no colon", "Bad attr spec"),
    ("k: int = 'a'", "Attr 'k' expects a value of type 'int' but got str"),
    ("p: {'A', 'B'} = 'C'", "Value for attr 'p' of \"C\" is not in the list"),
    ("n: int = 0 >= 1", "Value for attr 'n' of 0 must be at least minimum 1"),
])
def test_bad_attr_spec(spec, regex):
    with pytest.raises(IA, match=regex):
        AttrDef.parse(spec)


def test_attr_classification():
    assert POOL.inferred_attrs == ("T", "N")
    assert POOL.required_attrs == ("ksize", "padding")
    assert POOL.optional_attrs == ("alpha", "flag", "label", "shape", "out_type", "layout")
    v2 = get_op_def("Conv2DBackpropInputV2")
    assert v2.inferred_attrs == ("T",)
    assert v2.required_attrs == ("strides", "padding")
    assert v2.optional_attrs == ("use_cudnn_on_gpu", "explicit_paddings", "data_format",
                                 "dilations")


def test_conv_op_def_matches_tf():
    v2 = get_op_def("Conv2DBackpropInputV2")
    assert [a.name for a in v2.inputs] == ["input", "filter", "out_backprop"]
    assert [a.name for a in v2.outputs] == ["output"]
    a = v2.attrs
    assert [t.name for t in a["T"].allowed] == ["float16", "bfloat16", "float32", "float64",
                                                "int32"]
    assert a["padding"].allowed == ("SAME", "VALID", "EXPLICIT")
    assert a["data_format"].allowed == ("NHWC", "NCHW") and a["data_format"].default == "NHWC"
    assert a["dilations"].default == (1, 1, 1, 1)
    assert a["explicit_paddings"].default == ()
    assert a["use_cudnn_on_gpu"].default is True
    assert v2.doc and v2.shape_fn is not None
    v1 = get_op_def("Conv2DBackpropInput")
    assert v1.inputs[0].name == "input_sizes" and v1.inputs[0].fixed_type is DT_INT32
    assert list(v1.attrs) == list(v2.attrs)


def test_summary_and_signature():
    v2 = get_op_def("Conv2DBackpropInputV2")
    assert v2.signature() == "input:T, filter:T, out_backprop:T -> output:T"
    s = v2.summary()
    assert s.startswith("Op<name=Conv2DBackpropInputV2; signature=input:T, filter:T, "
                        "out_backprop:T -> output:T; attr=T:{float16, ")
    assert "attr=use_cudnn_on_gpu:bool,default=true" in s
    assert "attr=dilations:list(int),default=[1, 1, 1, 1]" in s
    assert "attr=data_format:{'NHWC', 'NCHW'},default=\"NHWC\"" in s
    assert repr(v2) == "OpDef(Conv2DBackpropInputV2: input:T, filter:T, out_backprop:T -> " \
                       "output:T)"


def test_undeclared_attr_reference():
    with pytest.raises(IA, match="arg 'x' refers to undeclared attr 'T'"):
        OpDef("Bad", inputs=["x: T"], outputs=["y: T"], shape_fn=_same_as_first)


def test_format_attr_value():
    assert format_attr_value(True) == "true"
    assert format_attr_value("SAME") == '"SAME"'
    assert format_attr_value(DT_FLOAT) == "DT_FLOAT"
    assert format_attr_value((1, 2)) == "[1, 2]"
    assert format_attr_value(()) == "[]"
    assert format_attr_value(TensorShape([None, 3])) == "[?,3]"
    assert format_attr_value(np.zeros((2, 3), np.int32)) == "Tensor<type: int32 shape: [2, 3]>"
    assert format_attr_value(0.5) == "0.5"


# ---------------------------------------------------------------- validation at node creation
def _inputs(root, n=2, dtype=DT_FLOAT):
    vals = [ops.Placeholder(root, dtype, shape=[2]) for _ in range(n)]
    return [vals, ops.Const(root, [1, 2])]


def test_valid_node_fills_defaults_in_op_def_order():
    root = Scope.NewRootScope()
    op = root.build_op(POOL, _inputs(root), {"ksize": [1, 2, 2, 1], "padding": "SAME",
                                             "alpha": 1})
    assert root.ok(), root.status()
    assert list(op.attrs) == list(POOL.attrs)
    assert op.attrs["T"] is DT_FLOAT and op.attrs["N"] == 2
    assert op.attrs["ksize"] == (1, 2, 2, 1)
    assert op.attrs["alpha"] == 1.0 and isinstance(op.attrs["alpha"], float)
    assert op.attrs["flag"] is True and op.attrs["shape"].rank is None
    assert op.output(0).dtype is DT_FLOAT


@pytest.mark.parametrize(("attrs", "regex"), [
    ({"ksize": [1, 2, 2, 1], "padding": "SAME", "bogus": 1},
     r"Attr 'bogus' does not exist; TestPool takes attrs: ksize, padding, alpha"),
    ({"ksize": [1, 2, 2, 1], "padding": "SAME", "N": 2}, r"Attr 'N' is inferred from the inputs"),
    ({"ksize": (1, 2, 2), "padding": "SAME"},
     r"Length for attr 'ksize' of 3 must be at least minimum 4"),
    ({"ksize": [1, 2, 2, "1"], "padding": "SAME"},
     r"Attr 'ksize' expects a value of type 'list\(int\)' but got str '1'"),
    ({"ksize": [1, 2, 2, True], "padding": "SAME"}, r"Attr 'ksize' expects a value of type"),
    ({"ksize": [1, 2, 2, 1], "padding": "FULL"},
     r"Value for attr 'padding' of \"FULL\" is not in the list of allowed values: \"SAME\", "
     r"\"VALID\""),
    ({"ksize": [1, 2, 2, 1], "padding": "SAME", "alpha": "big"},
     r"Attr 'alpha' expects a value of type 'float' but got str 'big'"),
    ({"ksize": [1, 2, 2, 1], "padding": "SAME", "alpha": True},
     r"Attr 'alpha' expects a value of type 'float'"),
    ({"ksize": [1, 2, 2, 1], "padding": "SAME", "flag": 1},
     r"Attr 'flag' expects a value of type 'bool' but got int 1"),
    ({"ksize": [1, 2, 2, 1], "padding": "SAME", "out_type": "float33"},
     r"Attr 'out_type' expects a value of type 'type'"),
    ({"ksize": [1, 2, 2, 1], "padding": "SAME", "shape": [-3]},
     r"Attr 'shape' expects a value of type 'shape'"),
    ({"ksize": [1, 2, 2, 1], "padding": "SAME", "layout": "NWHC"},
     r"Value for attr 'layout' of \"NWHC\" is not in the list"),
    ({"padding": "SAME"}, r"Missing required attr 'ksize' \(list\(int\)\)"),
    ({"ksize": [1, 2, 2, 1]}, r"Missing required attr 'padding'"),
])
def test_attr_errors_name_op_and_attr(attrs, regex):
    root = Scope.NewRootScope()
    inputs = _inputs(root)
    op = root.WithOpName("pool").build_op(POOL, inputs, attrs)
    assert op.failed
    (err,) = root.status().errors
    assert type(err) is IA
    assert err.op_name == "pool" and err.op_type == "TestPool"
    assert " for node 'pool' (op: 'TestPool') created at " in str(err)
    assert err.site and err.site in str(err)
    assert err.site.startswith(os.path.abspath(__file__) + ":")
    assert re.search(regex, str(err)), str(err)


def test_list_length_minimum():
    root = Scope.NewRootScope()
    root.build_op(POOL, [[], ops.Const(root, [1])], {"ksize": [1] * 4, "padding": "SAME"})
    assert "Value for attr 'N' of 0 must be at least minimum 1" in root.status().message


def test_type_attr_inconsistent_between_inputs():
    root = Scope.NewRootScope()
    vals = [ops.Placeholder(root, DT_FLOAT), ops.Placeholder(root, DT_DOUBLE)]
    root.build_op(POOL, [vals, ops.Const(root, [1])], {"ksize": [1] * 4, "padding": "SAME"})
    msg = root.status().message
    assert "Inconsistent values for attr 'T': float32 (from input 'values') vs. float64 " \
           "(from input 'values')" in msg
    assert "(op: 'TestPool')" in msg


def test_type_not_allowed_and_fixed_type_mismatch():
    root = Scope.NewRootScope()
    root.build_op(POOL, [[ops.Placeholder(root, DT_INT32)], ops.Const(root, [1])],
                  {"ksize": [1] * 4, "padding": "SAME"})
    root.build_op(POOL, [[ops.Placeholder(root, DT_FLOAT)], ops.Const(root, [1.5])],
                  {"ksize": [1] * 4, "padding": "SAME"})
    e1, e2 = root.status().errors
    assert "Value passed to parameter 'values' has DataType int32 not in list of allowed " \
           "values: float16, float32, float64" in str(e1)
    assert "Input 'sizes' of 'TestPool' Op has type float32 that does not match expected " \
           "type of int32" in str(e2)


def test_wrong_input_count_and_non_list_for_list_arg():
    root = Scope.NewRootScope()
    root.build_op(POOL, [ops.Const(root, [1])], {"ksize": [1] * 4, "padding": "SAME"})
    root.build_op(POOL, [ops.Const(root, 1.0), ops.Const(root, [1])],
                  {"ksize": [1] * 4, "padding": "SAME"})
    e1, e2 = root.status().errors
    assert "TestPool takes 2 inputs (values, sizes) but got 1" in str(e1)
    assert "Input 'values' of TestPool expects a list of tensors (N * T) but got Const" in str(e2)
    assert e1.op_type == e2.op_type == "TestPool" and e1.op_name == "TestPool"


# ---------------------------------------------------------------- registry
def test_registry_lookup():
    assert get_op_def("Conv2D").name == "Conv2D"
    reg = registered_ops()
    for name in ("Const", "Placeholder", "PlaceholderWithDefault", "Identity", "Shape",
                 "Conv2D", "Conv2DBackpropInput", "Conv2DBackpropInputV2", "AddV2"):
        assert reg[name] is get_op_def(name)
    reg.clear()                         # a copy: the registry is unchanged
    assert "Conv2D" in registered_ops()


def test_unknown_op_is_not_found_listing_known_ops():
    with pytest.raises(errors.NotFoundError,
                       match=r"Op type not registered 'NoSuchOp'. Registered ops: .*Conv2D"):
        get_op_def("NoSuchOp")
    with pytest.raises(LookupError):
        Scope.NewRootScope().build_op("NoSuchOp", [], {})


def test_register_and_duplicate(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    op = OpDef("TestOnlyOp", outputs=["y: float"], shape_fn=lambda c: [TensorShape([])])
    assert register_op(op) is op
    assert get_op_def("TestOnlyOp") is op
    with pytest.raises(errors.AlreadyExistsError, match="'TestOnlyOp' is already registered"):
        register_op(OpDef("TestOnlyOp", shape_fn=lambda c: []))
    with pytest.raises(errors.AlreadyExistsError):
        register_op(OpDef("Conv2D", shape_fn=lambda c: []))
    assert get_op_def("Conv2D").shape_fn is not None
