"""Generated op wrappers: Attrs immutability, shortcuts, keywords, help text, every OpDef
has a wrapper; plus the small array/math ops."""

from __future__ import annotations

import inspect
import os
import pydoc
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ops
from opgraph import (
    DT_DOUBLE, DT_FLOAT, DT_INT32, DT_INT64, OpDef, Scope, TensorShape, errors, registry,
)
from opgraph.wrappers import OpWrapper, camel_case, make_wrapper

V2 = ops.Conv2DBackpropInputV2
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _conv_inputs(root, fmt="NHWC"):
    shapes = {"NHWC": ([1, 8, 8, 3], [1, 4, 4, 16]), "NCHW": ([1, 3, 8, 8], [1, 16, 4, 4])}
    xs, dys = shapes[fmt]
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=xs)
    w = ops.Placeholder(root.WithOpName("w"), DT_FLOAT, shape=[3, 3, 3, 16])
    dy = ops.Placeholder(root.WithOpName("dy"), DT_FLOAT, shape=dys)
    return x, w, dy


# ---------------------------------------------------------------- Attrs
def test_attrs_defaults_and_setters_return_new_attrs():
    a = V2.Attrs()
    assert (a.use_cudnn_on_gpu, a.explicit_paddings, a.data_format, a.dilations) == (
        True, (), "NHWC", (1, 1, 1, 1))
    b = a.DataFormat("NCHW")
    assert b is not a and isinstance(b, V2.Attrs)
    assert b.data_format == "NCHW" and a.data_format == "NHWC"      # the old one is unchanged
    c = b.Dilations([1, 1, 2, 2]).ExplicitPaddings([]).UseCudnnOnGpu(False)
    assert (c.data_format, c.dilations, c.use_cudnn_on_gpu) == ("NCHW", (1, 1, 2, 2), False)
    assert b.dilations == (1, 1, 1, 1) and b.use_cudnn_on_gpu is True
    a.DataFormat("NCHW")                            # a bare call changes nothing
    assert a == V2.Attrs() and a != b


def test_attrs_cannot_be_mutated():
    a = V2.Attrs()
    with pytest.raises(AttributeError, match=r"immutable; use the setter.*DataFormat"):
        a.data_format = "NCHW"
    with pytest.raises(AttributeError):
        a.nonexistent  # noqa: B018
    with pytest.raises(TypeError):
        hash(a)


def test_attrs_setters_validate_immediately():
    with pytest.raises(errors.InvalidArgumentError,
                       match=r"Value for attr 'data_format' of \"NWHC\" is not in the list of "
                             r"allowed values: \"NHWC\", \"NCHW\" \(in Conv2DBackpropInputV2"
                             r".Attrs\(\).DataFormat\)") as info:
        V2.Attrs().DataFormat("NWHC")
    assert info.value.op_type == "Conv2DBackpropInputV2"
    assert info.value.site.startswith(os.path.abspath(__file__) + ":")
    with pytest.raises(errors.InvalidArgumentError, match=r"Attr 'dilations' expects a list"):
        V2.Dilations(2)
    with pytest.raises(errors.InvalidArgumentError, match=r"Attr 'use_cudnn_on_gpu' expects"):
        V2.Attrs().UseCudnnOnGpu("yes")


def test_attrs_keyword_constructor():
    a = V2.Attrs(data_format="NCHW", dilations=(1, 1, 2, 2))
    assert a == V2.Attrs().DataFormat("NCHW").Dilations([1, 1, 2, 2])
    with pytest.raises(errors.InvalidArgumentError,
                       match=r"Conv2DBackpropInputV2.Attrs has no attr 'strides'; optional "
                             r"attrs: use_cudnn_on_gpu, explicit_paddings, data_format, "
                             r"dilations"):
        V2.Attrs(strides=[1, 1, 1, 1])
    assert repr(a) == ('Conv2DBackpropInputV2.Attrs(use_cudnn_on_gpu=true, explicit_paddings=[]'
                       ', data_format="NCHW", dilations=[1, 1, 2, 2])')


def test_class_level_shortcuts_return_attrs():
    s = V2.Dilations([1, 2, 2, 1])
    assert isinstance(s, V2.Attrs) and s.dilations == (1, 2, 2, 1)
    assert s.DataFormat("NCHW").data_format == "NCHW"
    for name in ("UseCudnnOnGpu", "ExplicitPaddings", "DataFormat", "Dilations"):
        assert callable(getattr(V2, name)) and callable(getattr(V2.Attrs, name))
    assert ops.Placeholder.Shape([]).shape == TensorShape([])
    assert isinstance(ops.Conv2D.DataFormat("NCHW"), ops.Conv2D.Attrs)
    assert ops.Conv2D.Attrs is not V2.Attrs


def test_camel_case():
    assert camel_case("use_cudnn_on_gpu") == "UseCudnnOnGpu"
    assert camel_case("explicit_paddings") == "ExplicitPaddings"
    assert camel_case("shape") == "Shape"


# ---------------------------------------------------------------- calling conventions
def test_positional_attrs_keyword_attrs_and_attrs_keyword_agree():
    root = Scope.NewRootScope()
    x, w, dy = _conv_inputs(root, "NCHW")
    attrs = V2.DataFormat("NCHW")
    a = V2(root, x, w, dy, [1, 1, 2, 2], "SAME", attrs)
    b = V2(root, x, w, dy, [1, 1, 2, 2], "SAME", attrs=attrs)
    c = V2(root, x, w, dy, [1, 1, 2, 2], "SAME", data_format="NCHW")
    d = V2(root, input=x, filter=w, out_backprop=dy, strides=[1, 1, 2, 2], padding="SAME",
           data_format="NCHW")
    e = V2(root, x, w, dy, strides=(1, 1, 2, 2), padding="SAME",
           attrs={"data_format": "NCHW"})
    assert root.ok(), root.status()
    for wrapper in (a, b, c, d, e):
        assert wrapper.operation.attrs["data_format"] == "NCHW"
        assert wrapper.operation.attrs["strides"] == (1, 1, 2, 2)
        assert wrapper.output.shape.as_list() == [1, 3, 8, 8]
    assert [wr.operation.name for wr in (a, b, c, d, e)] == [
        "Conv2DBackpropInputV2", "Conv2DBackpropInputV2_1", "Conv2DBackpropInputV2_2",
        "Conv2DBackpropInputV2_3", "Conv2DBackpropInputV2_4"]


def test_keyword_attrs_override_attrs_object():
    root = Scope.NewRootScope()
    x, w, dy = _conv_inputs(root)
    dx = V2(root, x, w, dy, [1, 2, 2, 1], "SAME", V2.DataFormat("NCHW"), data_format="NHWC")
    assert root.ok() and dx.operation.attrs["data_format"] == "NHWC"


def test_every_optional_attr_is_written_even_at_default():
    root = Scope.NewRootScope()
    x, w, dy = _conv_inputs(root)
    dx = V2(root, x, w, dy, [1, 2, 2, 1], "SAME")
    assert dx.operation.attrs == {
        "T": DT_FLOAT, "strides": (1, 2, 2, 1), "use_cudnn_on_gpu": True, "padding": "SAME",
        "explicit_paddings": (), "data_format": "NHWC", "dilations": (1, 1, 1, 1)}


def test_calling_errors_are_type_errors():
    root = Scope.NewRootScope()
    x, w, dy = _conv_inputs(root)
    with pytest.raises(TypeError, match="first argument must be a Scope, got Placeholder"):
        V2(x, x, w, dy, [1, 1, 1, 1], "SAME")
    with pytest.raises(TypeError, match=r"takes 3 inputs and 2 required attrs \(input, filter, "
                                        r"out_backprop, strides, padding\) but 7 positional"):
        V2(root, x, w, dy, [1, 1, 1, 1], "SAME", 1, 2)
    with pytest.raises(TypeError, match=r"missing input 'out_backprop'"):
        V2(root, x, w)
    with pytest.raises(TypeError, match=r"got Attrs of Conv2D; use "
                                        r"Conv2DBackpropInputV2.Attrs\(\)"):
        V2(root, x, w, dy, [1, 2, 2, 1], "SAME", attrs=ops.Conv2D.Attrs())
    assert root.ok()


def test_wrapper_members_and_use_as_input():
    root = Scope.NewRootScope()
    x, w, dy = _conv_inputs(root)
    dx = V2(root.WithOpName("dx"), x, w, dy, [1, 2, 2, 1], "SAME")
    assert dx.operation.name == "dx" and dx.output.op is dx.operation
    assert dx.node() is dx.operation
    y = ops.Conv2D(root, dx, w, [1, 2, 2, 1], "SAME")       # the wrapper is an input
    z = ops.AddV2(root, dx, dx)
    assert root.ok()
    assert y.operation.inputs[0] == dx.output and z.operation.inputs == (dx.output, dx.output)
    assert y.output.shape.as_list() == [1, 4, 4, 16]
    assert repr(dx).startswith("<Conv2DBackpropInputV2 <Output 'dx:0'")
    assert isinstance(dx, OpWrapper) and isinstance(dx, V2)


# ---------------------------------------------------------------- documentation
def test_help_shows_signature_inputs_attrs_defaults_and_doc():
    text = pydoc.render_doc(V2, renderer=pydoc.plaintext)
    for piece in [
        "Conv2DBackpropInputV2(scope, input, filter, out_backprop, strides, padding, "
        "attrs=None",
        "Gradient of Conv2D with respect to its input",
        "Inputs:", "input: T -- Conv2D's input; only its shape is used",
        "filter: T -- [filter_height, filter_width, in_depth / groups, out_depth]",
        "Required attrs:", "strides: list(int)", "padding: {'SAME', 'VALID', 'EXPLICIT'}",
        "UseCudnnOnGpu(use_cudnn_on_gpu: bool) -- defaults to true",
        "ExplicitPaddings(explicit_paddings: list(int)) -- defaults to []",
        "DataFormat(data_format: {'NHWC', 'NCHW'}) -- defaults to \"NHWC\"",
        "Dilations(dilations: list(int)) -- defaults to [1, 1, 1, 1]",
        "Inferred from the inputs: T", "Outputs:",
    ]:
        assert piece in text, piece
    sig = inspect.signature(V2)
    assert list(sig.parameters)[:7] == ["scope", "input", "filter", "out_backprop", "strides",
                                        "padding", "attrs"]
    assert sig.parameters["dilations"].default == (1, 1, 1, 1)
    assert sig.parameters["dilations"].kind is inspect.Parameter.KEYWORD_ONLY


def test_every_registered_op_def_has_an_importable_wrapper_with_doc():
    # In a fresh interpreter, so that ops registered by other tests cannot interfere.
    code = textwrap.dedent("""
        import inspect, ops, opgraph
        from opgraph.wrappers import OpWrapper
        reg = opgraph.registered_ops()
        assert len(reg) >= 9, sorted(reg)
        for name, op_def in reg.items():
            w = getattr(ops, name)
            assert name in ops.__all__, name
            assert inspect.isclass(w) and issubclass(w, OpWrapper), name
            assert w._op_def is op_def, name
            assert op_def.doc and op_def.doc.strip().split()[0] in w.__doc__, name
            for attr in op_def.optional_attrs:
                assert hasattr(w.Attrs, "".join(p.title() for p in attr.split("_"))), attr
        print("checked", len(reg))
    """)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("checked ")


# ---------------------------------------------------------------- generated for other OpDefs
@pytest.fixture
def private_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_wrapper_for_multi_output_op(private_registry):
    registry.register_op(OpDef(
        "TestSplitPair", inputs=["x: T"], outputs=["a: T", "b: T"], attrs=["T: type"],
        shape_fn=lambda c: [c.input(0), c.input(0)], doc="Two copies."))
    cls = make_wrapper("TestSplitPair")
    root = Scope.NewRootScope()
    pair = cls(root, [1.0, 2.0])
    assert root.ok()
    assert pair.a.index == 0 and pair.b.index == 1 and pair.outputs == (pair.a, pair.b)
    assert not hasattr(pair, "output")
    assert "(none)" in cls.__doc__          # no attrs to set
    ops.Identity(root.WithOpName("bad"), pair)
    assert "Input 'input' of Identity got a TestSplitPair with several outputs; pass one of " \
           "them" in root.status().message
    ops.Identity(root.WithOpName("bad2"), pair.operation)
    assert "got Operation 'TestSplitPair' with 2 outputs" in str(root.status().errors[1])
    assert ops.Identity(root, pair.b).operation.inputs[0] == pair.b


def test_wrapper_with_list_input_and_no_optional_attrs(private_registry):
    registry.register_op(OpDef(
        "TestAddN", inputs=["inputs: N * T"], outputs=["sum: T"],
        attrs=["T: {float, double}", "N: int >= 1"],
        shape_fn=lambda c: [c.input(0)], doc="Sum of N tensors."))
    cls = make_wrapper("TestAddN")
    root = Scope.NewRootScope()
    s = cls(root, [1.0, 2.0, ops.Const(root, 3.0)])
    assert root.ok() and s.operation.attrs["N"] == 3 and s.output.dtype is DT_FLOAT
    assert len(s.operation.inputs) == 3
    assert cls.Attrs() == cls.Attrs() and not [n for n in dir(cls.Attrs) if n[0].isupper()]
    cls(root.WithOpName("mixed"), [1.0, ops.Const(root, 2.0, dtype=DT_DOUBLE)])
    assert "Inconsistent values for attr 'T'" in root.status().message


# ---------------------------------------------------------------- array and math ops
def test_placeholder_shapes():
    root = Scope.NewRootScope()
    scalar = ops.Placeholder(root, DT_FLOAT, ops.Placeholder.Shape([]))
    unknown = ops.Placeholder(root, DT_INT32)
    partial = ops.Placeholder(root, DT_FLOAT, shape=[None, 3])
    via_attrs = ops.Placeholder(root, DT_DOUBLE, attrs=ops.Placeholder.Shape([2, None]))
    assert scalar.output.shape == TensorShape([]) and scalar.output.shape.rank == 0
    assert unknown.output.shape.rank is None and unknown.output.dtype is DT_INT32
    assert partial.output.shape.as_list() == [None, 3]
    assert via_attrs.output.shape.as_list() == [2, None] and via_attrs.output.dtype is DT_DOUBLE
    assert root.ok()
    ops.Placeholder(root.WithOpName("bad"), "float33")
    assert "Attr 'dtype' expects a value of type 'type'" in root.status().message


def test_placeholder_with_default():
    root = Scope.NewRootScope()
    p = ops.PlaceholderWithDefault(root, [[1.0, 2.0]], [None, 2])
    assert root.ok() and p.output.shape.as_list() == [None, 2] and p.output.dtype is DT_FLOAT
    assert p.operation.attrs["dtype"] is DT_FLOAT
    ops.PlaceholderWithDefault(root.WithOpName("bad"), [1.0, 2.0], [3])
    assert "The default value's shape [2] is not compatible with the declared shape [3]" in \
        root.status().message


def test_identity_and_shape():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[2, None, 4])
    ident = ops.Identity(root, x)
    assert ident.output.shape.as_list() == [2, None, 4] and ident.output.dtype is DT_FLOAT
    s = ops.Shape(root, x)
    assert s.output.shape.as_list() == [3] and s.output.dtype is DT_INT32
    # not fully defined: a partial shape value, as TF's ShapeRefiner keeps
    assert s.operation.output_values == [TensorShape([2, None, 4])]
    s64 = ops.Shape(root, ops.Placeholder(root, DT_FLOAT, shape=[5, 6]), out_type=DT_INT64)
    assert s64.output.dtype is DT_INT64
    np.testing.assert_array_equal(s64.operation.output_values[0], [5, 6])
    assert s64.operation.output_values[0].dtype == np.int64
    assert ops.Shape(root, ops.Placeholder(root, DT_FLOAT)).output.shape.as_list() == [None]
    # Identity passes a constant value through
    c = ops.Identity(root, ops.Shape(root, ops.Placeholder(root, DT_FLOAT, shape=[7])))
    np.testing.assert_array_equal(c.operation.output_values[0], [7])
    assert root.ok()


def test_const_wrapper():
    root = Scope.NewRootScope()
    c = ops.Const(root.WithOpName("c"), [[1, 2, 3]])
    assert c.output.dtype is DT_INT32 and c.output.shape.as_list() == [1, 3]
    np.testing.assert_array_equal(c.operation.output_values[0], [[1, 2, 3]])
    assert ops.Const(root, 1.0, DT_DOUBLE).output.dtype is DT_DOUBLE


@pytest.mark.parametrize(("a", "b", "out"), [
    ([2, 1], [3], [2, 3]), ([], [4, 5], [4, 5]), ([None, 3], [1, 3], [None, 3]),
    ([None], [5], [5]), (None, [3], None), ([1], [None], [None]),
])
def test_add_v2_broadcasting(a, b, out):
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=a)
    y = ops.Placeholder(root, DT_FLOAT, shape=b)
    z = ops.AddV2(root, x, y)
    assert root.ok() and z.output.shape == TensorShape(out)


def test_add_v2_incompatible_shapes_and_dtypes():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[2, 3])
    ops.AddV2(root.WithOpName("bad"), x, ops.Placeholder(root, DT_FLOAT, shape=[4]))
    ops.AddV2(root.WithOpName("booleans"), True, False)
    e1, e2 = root.status().errors
    assert "Incompatible shapes for broadcasting: [2, 3] and [4] (dims 3 and 4 differ and neither is 1) for node 'bad' (op: 'AddV2')" \
        in str(e1)
    assert "with input shapes: [2,3], [4]." in str(e1)
    assert "Value passed to parameter 'x' has DataType bool not in list of allowed values" in \
        str(e2)
