"""Scope: naming, sub-scopes, control deps, devices, kernel label, creation site, status
accumulation vs ExitOnError, ToGraphDef, foreign-graph inputs."""

from __future__ import annotations

import os
import re
import sys

import numpy as np
import pytest

import ops
from opgraph import DT_DOUBLE, DT_FLOAT, DT_INT32, Scope, errors

HERE = os.path.abspath(__file__)


def _line_after() -> int:
    """The line number after the caller's current line."""
    return sys._getframe(1).f_lineno + 1


def names(wrappers) -> list[str]:
    return [w.operation.name for w in wrappers]


# ---------------------------------------------------------------- naming
def test_default_names_are_uniquified_per_level():
    root = Scope.NewRootScope()
    assert names([ops.Const(root, 1.0) for _ in range(3)]) == ["Const", "Const_1", "Const_2"]
    x = ops.Placeholder(root, DT_FLOAT, shape=[1, 4, 4, 1])
    w = ops.Const(root, np.ones((1, 1, 1, 1), np.float32))
    convs = [ops.Conv2D(root, x, w, [1, 1, 1, 1], "SAME") for _ in range(2)]
    assert names(convs) == ["Conv2D", "Conv2D_1"]
    assert x.operation.name == "Placeholder" and w.operation.name == "Const_3"


def test_sub_scope_prefixes():
    root = Scope.NewRootScope()
    a = root.NewSubScope("a")
    b = a.NewSubScope("b")
    x = ops.Placeholder(b, DT_FLOAT, shape=[1, 4, 4, 1])
    w = ops.Const(b, np.ones((1, 1, 1, 1), np.float32))
    c = ops.Conv2D(b, x, w, [1, 1, 1, 1], "SAME")
    assert names([x, w, c]) == ["a/b/Placeholder", "a/b/Const", "a/b/Conv2D"]
    assert ops.Const(a, 1).operation.name == "a/Const"          # each level has its own map
    assert ops.Const(root, 1).operation.name == "Const"
    # a sub-scope name is uniquified in its parent's map
    assert ops.Const(root.NewSubScope("a"), 1).operation.name == "a_1/Const"
    assert ops.Const(a.NewSubScope("b"), 1).operation.name == "a/b_1/Const"
    assert ops.Const(b.WithOpName("named"), 1).operation.name == "a/b/named"


def test_empty_sub_scope_keeps_prefix_and_name_map():
    root = Scope.NewRootScope()
    a = root.NewSubScope("a")
    same = a.NewSubScope("")
    assert names([ops.Const(a, 1), ops.Const(same, 1)]) == ["a/Const", "a/Const_1"]


def test_sub_scope_and_op_names_share_one_map():
    root = Scope.NewRootScope()
    root.NewSubScope("Const")
    assert ops.Const(root, 1).operation.name == "Const_1"
    ops.Const(root.NewSubScope("x"), 1)
    ops.Const(root.WithOpName("x"), 1)        # "x" is taken at this level by the sub-scope
    (err,) = root.status().errors
    assert isinstance(err, errors.AlreadyExistsError) and "Duplicate node name 'x'" in str(err)


def test_with_op_name_is_used_as_given():
    root = Scope.NewRootScope()
    assert ops.Const(root.WithOpName("myconst"), 1).operation.name == "myconst"
    assert ops.Const(root.WithOpName("b_", 3), 1).operation.name == "b_3"
    assert ops.Const(root.WithOpName("x.y-z/w"), 1).operation.name == "x.y-z/w"
    # default names skip names given explicitly
    ops.Const(root.WithOpName("Const_1"), 1)
    assert names([ops.Const(root, 1), ops.Const(root, 1)]) == ["Const", "Const_2"]
    assert root.ok()


def test_duplicate_explicit_name_is_an_error():
    root = Scope.NewRootScope()
    first = ops.Const(root.WithOpName("foo"), 1)
    line = _line_after()
    second = ops.Const(root.WithOpName("foo"), 2)
    assert not first.operation.failed and second.operation.failed
    (err,) = root.status().errors
    assert type(err) is errors.AlreadyExistsError
    assert str(err) == ("Duplicate node name 'foo': WithOpName names are used as given and "
                        f"must be unique (op: 'Const', created at {HERE}:{line})")
    assert (err.op_name, err.op_type, err.site) == ("foo", "Const", f"{HERE}:{line}")
    assert root.graph().get_operation("foo") is first.operation


def test_colliding_names_across_levels_are_rejected():
    root = Scope.NewRootScope()
    ops.Const(root.WithOpName("x/y"), 1)
    ops.Const(root.NewSubScope("x").WithOpName("y"), 1)
    ops.Const(root.NewSubScope("p").WithOpName("q"), 1)
    ops.Const(root.WithOpName("p/q"), 1)
    e1, e2 = root.status().errors
    assert "Duplicate node name 'x/y'" in str(e1) and "Duplicate node name 'p/q'" in str(e2)
    # a default name steps around a name made through another level
    r2 = Scope.NewRootScope()
    ops.Const(r2.WithOpName("s/Const"), 1)
    assert ops.Const(r2.NewSubScope("s"), 1).operation.name == "s/Const_1"
    assert r2.ok()


@pytest.mark.parametrize("bad", ["bad name", "", "/lead", "trail/", "a//b", "_under", "x:0",
                                 "é"])
def test_invalid_names_are_rejected_at_once(bad):
    root = Scope.NewRootScope()
    with pytest.raises(errors.InvalidArgumentError, match="Invalid op name"):
        root.WithOpName(bad)
    if bad:
        with pytest.raises(errors.InvalidArgumentError, match="Invalid sub-scope name"):
            root.NewSubScope(bad)


def test_new_sub_scope_forgets_op_name():
    root = Scope.NewRootScope()
    assert ops.Const(root.WithOpName("n").NewSubScope("s"), 1).operation.name == "s/Const"


def test_get_unique_name_for_op_uses_up_names():
    root = Scope.NewRootScope()
    assert root.GetUniqueNameForOp("Foo") == "Foo"
    assert root.GetUniqueNameForOp("Foo") == "Foo_1"
    assert root.NewSubScope("t").GetUniqueNameForOp("Foo") == "t/Foo"
    assert root.WithOpName("bar").GetUniqueNameForOp("Ignored") == "bar"
    with pytest.raises(errors.AlreadyExistsError):
        root.WithOpName("bar").GetUniqueNameForOp("Ignored")


def test_implicit_constants_get_const_sub_scopes_first():
    root = Scope.NewRootScope()
    add = ops.AddV2(root.WithOpName("myadd"), 1, 2)
    ops_by_order = [op.name for op in root.graph().operations()]
    assert ops_by_order == ["Const/Const", "Const_1/Const", "myadd"]
    assert [i.op.name for i in add.operation.inputs] == ["Const/Const", "Const_1/Const"]
    t = root.NewSubScope("t")
    ops.AddV2(t, 1.0, 2.0)
    assert [op.name for op in root.graph().operations()][3:] == [
        "t/Const/Const", "t/Const_1/Const", "t/AddV2"]


# ---------------------------------------------------------------- derivation
def test_scopes_are_immutable_values_sharing_graph_and_status():
    root = Scope.NewRootScope()
    derived = [root.WithOpName("a"), root.NewSubScope("s"), root.WithDevice("/cpu:0"),
               root.WithKernelLabel("k"), root.ExitOnError(), root.WithNoControlDependencies()]
    assert all(d is not root and d.graph() is root.graph() for d in derived)
    assert root.control_deps() == ()
    c = ops.Const(root, 1)
    assert c.operation.name == "Const" and c.operation.device == ""
    assert c.operation.kernel_label == ""
    other = Scope.NewRootScope()
    assert other.graph() is not root.graph()
    ops.Const(root.NewSubScope("s2"), 2**40)
    assert not root.ok() and not derived[1].ok() and other.ok()


# ---------------------------------------------------------------- control deps
def test_control_dependencies():
    root = Scope.NewRootScope()
    a = ops.Placeholder(root.WithOpName("a"), DT_FLOAT)
    b = ops.Placeholder(root.WithOpName("b"), DT_FLOAT)
    s = root.WithControlDependencies([a, b.output]).WithControlDependencies(a.operation)
    y = ops.Identity(s.WithOpName("y"), a)
    assert y.operation.control_inputs == (a.operation, b.operation)     # distinct, in order
    assert s.control_deps() == (a.operation, b.operation)
    z = ops.Identity(s.WithNoControlDependencies().WithOpName("z"), a)
    assert z.operation.control_inputs == ()
    # implicit constants inherit the consuming scope's control deps, as in TF
    add = ops.AddV2(s.WithOpName("add"), y, 1.0)
    const = add.operation.inputs[1].op
    assert const.type == "Const" and const.control_inputs == (a.operation, b.operation)
    g = root.graph().to_networkx()
    ctl = sorted((u, v) for u, v, d in g.edges(data=True) if d.get("control"))
    assert ("a", "y") in ctl and ("b", "y") in ctl and ("a", "z") not in ctl
    assert "%y : float32? = Identity[T=DT_FLOAT](%a, ^a, ^b)" in root.graph().format()


def test_control_dependency_on_non_op_is_an_error():
    with pytest.raises(errors.InvalidArgumentError, match="Expected an Operation, Output"):
        Scope.NewRootScope().WithControlDependencies([3])


# ---------------------------------------------------------------- devices
@pytest.mark.parametrize(("spec", "canonical"), [
    ("/device:CPU:0", "/device:CPU:0"), ("/device:GPU:0", "/device:GPU:0"),
    ("/job:localhost/replica:0/task:0/device:CPU:0", "/device:CPU:0"),
    ("/job:localhost/replica:0/task:0/device:GPU:1", "/device:GPU:1"),
    ("/cpu:0", "/device:CPU:0"), ("/GPU:1", "/device:GPU:1"), ("CPU:0", "/device:CPU:0"),
    ("/device:CPU:*", "/device:CPU:*"), ("", ""),
])
def test_valid_devices(spec, canonical):
    root = Scope.NewRootScope()
    c = ops.Const(root.WithDevice(spec), 1.0)
    assert c.operation.device == canonical
    if canonical:
        assert f'device: "{canonical}"' in str(root.ToGraphDef())


@pytest.mark.parametrize("spec", ["/device:TPU:0", "garbage", "/device:CPU", "/device:CPU:x",
                                  "/job:localhost/task:0/replica:0", "//cpu:0", 0])
def test_invalid_devices_rejected_at_once(spec):
    with pytest.raises(errors.InvalidArgumentError, match=r"device|Device"):
        Scope.NewRootScope().WithDevice(spec)


def test_device_is_inherited_by_sub_scopes_and_implicit_consts():
    root = Scope.NewRootScope()
    s = root.WithDevice("/device:GPU:0").NewSubScope("t")
    add = ops.AddV2(s, 1.0, 2.0)
    assert add.operation.device == "/device:GPU:0"
    assert add.operation.inputs[0].op.device == "/device:GPU:0"


def test_colocate_with():
    root = Scope.NewRootScope()
    a = ops.Const(root.WithOpName("a"), 1.0)
    f = ops.Identity(root.ColocateWith(a).WithOpName("f"), a)
    g = ops.Identity(root.ColocateWith(f).WithOpName("g"), a)      # transitive: loc:@a
    h = ops.Identity(root.ColocateWith(f).ClearColocation().WithOpName("h"), a)
    assert f.operation.colocation == ("a",) and g.operation.colocation == ("a",)
    assert h.operation.colocation == ()
    assert 'attr { key: "_class" value { list { s: "loc:@a" } } }' in \
        root.ToGraphDef().to_text(as_one_line=True)


# ---------------------------------------------------------------- kernel label
def test_kernel_label():
    root = Scope.NewRootScope()
    s = root.WithKernelLabel("eigen_tensor")
    x = ops.Placeholder(s.WithOpName("x"), DT_FLOAT)
    add = ops.AddV2(s, x, 1.0)
    assert x.operation.kernel_label == add.operation.kernel_label == "eigen_tensor"
    # Unlike TF, implicit Consts do not inherit the label (it would make them unplaceable).
    assert add.operation.inputs[1].op.kernel_label == ""
    assert ops.Const(root, 1).operation.kernel_label == ""
    assert 'attr { key: "_kernel" value { s: "eigen_tensor" } }' in \
        root.ToGraphDef().to_text(as_one_line=True)


# ---------------------------------------------------------------- creation site
def test_creation_site_points_at_the_users_line():
    root = Scope.NewRootScope()
    line = _line_after()
    x = ops.Placeholder(root, DT_FLOAT, shape=[2])
    y = ops.Identity(root, x); line_y = sys._getframe().f_lineno  # noqa: E702
    line_c = _line_after()
    c = ops.Const(root, 1.0)
    assert x.operation.site == f"{HERE}:{line}"
    assert y.operation.site == f"{HERE}:{line_y}"
    assert c.operation.site == f"{HERE}:{line_c}"


def test_creation_site_of_implicit_const_is_the_consumers_call():
    root = Scope.NewRootScope()
    line = _line_after()
    add = ops.AddV2(root, 1.0, 2.0)
    assert add.operation.inputs[0].op.site == f"{HERE}:{line}" == add.operation.site


def _helper_that_builds(root):
    return ops.Const(root, 1.0)


def test_creation_site_is_user_code_even_through_user_helpers():
    root = Scope.NewRootScope()
    c = _helper_that_builds(root)
    assert c.operation.site.startswith(HERE + ":")
    assert "opgraph" not in os.path.basename(c.operation.site.split(":")[0])


# ---------------------------------------------------------------- status: accumulate vs exit
def _three_independent_errors(scope):
    x = ops.Placeholder(scope.WithOpName("x"), DT_FLOAT, shape=[1, 8, 8, 3])
    w = ops.Placeholder(scope.WithOpName("w"), DT_FLOAT, shape=[3, 3, 3, 16])
    bad_shape = ops.Conv2D(scope.WithOpName("bad_shape"), x, w, [1, 1, 1], "SAME")
    bad_attr = ops.Conv2D(scope.WithOpName("bad_attr"), x, w, [1, 1, 1, 1], "FULL")
    bad_input = ops.AddV2(scope.WithOpName("bad_input"), x, [[1], [2, 3]])
    return bad_shape, bad_attr, bad_input, x, w


def test_one_pass_reports_every_independent_error():
    root = Scope.NewRootScope()
    bad_shape, bad_attr, bad_input, x, w = _three_independent_errors(root)
    # consumers of failed ops are skipped quietly; their outputs are poisoned in turn
    dep = ops.Identity(root.WithOpName("dep"), bad_shape)
    dep2 = ops.AddV2(root.WithOpName("dep2"), dep, x)
    # an independent valid op after the errors is still built
    good = ops.Conv2D(root.WithOpName("good"), x, w, [1, 1, 1, 1], "SAME")
    status = root.status()
    assert not root.ok() and not status.ok()
    assert [e.op_name for e in status.errors] == ["bad_shape", "bad_attr", "bad_input"]
    assert [type(e) for e in status.errors] == [errors.InvalidArgumentError] * 3
    assert "strides field must specify 4 dimensions" in str(status.errors[0])
    assert "\"FULL\" is not in the list of allowed values" in str(status.errors[1])
    assert "ragged" in str(status.errors[2])
    assert status.code == errors.InvalidArgumentError.code
    assert status.message == str(status.errors[0])
    assert dep.operation.failed and dep2.operation.failed
    assert dep.output.dtype is None and dep.output.shape.rank is None
    assert not good.operation.failed and good.output.shape.as_list() == [1, 8, 8, 16]
    graph_names = [op.name for op in root.graph().operations()]
    assert graph_names == ["x", "w", "good"]
    with pytest.raises(errors.InvalidArgumentError, match=r"2 more error\(s\)"):
        status.raise_if_error()
    with pytest.raises(errors.InvalidArgumentError, match="strides field"):
        root.ToGraphDef()


def test_exit_on_error_raises_at_the_failing_op():
    root = Scope.NewRootScope()
    strict = root.ExitOnError()
    x = ops.Placeholder(strict.WithOpName("x"), DT_FLOAT, shape=[1, 8, 8, 3])
    w = ops.Placeholder(strict.WithOpName("w"), DT_FLOAT, shape=[3, 3, 3, 16])
    with pytest.raises(errors.InvalidArgumentError) as info:
        line = _line_after()
        ops.Conv2D(strict.NewSubScope("t").WithOpName("c"), x, w, [1, 1, 1], "SAME")
    err = info.value
    assert err.op_name == "t/c" and err.op_type == "Conv2D" and err.site == f"{HERE}:{line}"
    assert "strides field must specify 4 dimensions" in str(err)
    assert not root.graph().has_name("t/c")
    # raising happens for every kind of build error
    with pytest.raises(errors.AlreadyExistsError):
        ops.Const(strict.WithOpName("x"), 1)
    with pytest.raises(errors.InvalidArgumentError, match="does not fit in int32"):
        ops.Const(strict, 2**40)
    with pytest.raises(errors.InvalidArgumentError, match="does not fit in int32"):
        ops.Identity(strict, 2**40)


def test_exit_on_error_is_per_scope_value():
    root = Scope.NewRootScope()
    strict = root.ExitOnError()
    ops.Const(root, 2**40)                # recorded, not raised: root does not exit on error
    assert not root.ok() and len(root.status().errors) == 1
    assert not strict.ok()                # the status is shared


def test_status_is_shared_by_sub_scopes_and_siblings():
    root = Scope.NewRootScope()
    a, b = root.NewSubScope("a"), root.NewSubScope("b")
    ops.Const(a, 2**40)
    assert not root.ok() and not b.ok()
    assert root.status().errors[0].op_name == "a/Const"


# ---------------------------------------------------------------- foreign graphs
def test_output_from_another_graph_is_rejected():
    r1, r2 = Scope.NewRootScope(), Scope.NewRootScope()
    x = ops.Placeholder(r1.WithOpName("x"), DT_FLOAT)
    line = _line_after()
    y = ops.Identity(r2.WithOpName("y"), x)
    z = ops.AddV2(r2.WithOpName("z"), ops.Const(r2, 1.0), x.output)
    assert y.operation.failed and z.operation.failed
    e1, e2 = r2.status().errors
    assert type(e1) is errors.InvalidArgumentError
    assert str(e1) == ("Input 'input' of Identity is 'x:0' from another graph; an op can only "
                       "consume tensors of its own scope's graph for node 'y' (op: 'Identity') "
                       f"created at {HERE}:{line}.")
    assert e2.op_name == "z" and "Input 'y' of AddV2 is 'x:0' from another graph" in str(e2)
    assert r1.ok()
    assert [op.name for op in r2.graph().operations()] == ["Const"]
    with pytest.raises(errors.InvalidArgumentError, match="Input 'input' of Identity is 'x:0' "
                                                          "from another graph"):
        ops.Identity(r2.ExitOnError(), x)


def test_control_dependency_from_another_graph_is_rejected():
    r1, r2 = Scope.NewRootScope(), Scope.NewRootScope()
    x = ops.Placeholder(r1.WithOpName("x"), DT_FLOAT)
    with pytest.raises(errors.InvalidArgumentError,
                       match="Control dependency 'x' is from another graph"):
        r2.WithControlDependencies([x])
    assert r2.graph().num_ops() == 0


def test_control_dependency_on_a_failed_op_skips_quietly():
    root = Scope.NewRootScope()
    bad = ops.Const(root.WithOpName("bad"), 2**40)
    dep = ops.AddV2(root.WithControlDependencies([bad]).WithOpName("dep"), 1.0, 2.0)
    assert dep.operation.failed
    assert len(root.status().errors) == 1          # only the original error
    assert root.graph().num_ops() == 0
    root.graph().lint()


# ---------------------------------------------------------------- ToGraphDef
def test_to_graph_def_text():
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[None, 8, 8, 3])
    w = ops.Const(root.WithOpName("w"), np.ones((3, 3, 3, 4), np.float32))
    ops.Conv2D(root.WithOpName("c").WithControlDependencies([x]).WithDevice("/cpu:0"), x, w,
               [1, 1, 1, 1], "SAME")
    graph_def = root.ToGraphDef()
    text = str(graph_def)                       # TF's text format, as protobuf prints it
    one = graph_def.to_text(as_one_line=True)   # protobuf's one-line form
    assert text.count("node {") == 3
    assert text.index('name: "x"') < text.index('name: "w"') < text.index('name: "c"')
    assert ('attr { key: "shape" value { shape { dim { size: -1 } dim { size: 8 } '
            'dim { size: 8 } dim { size: 3 } } } }') in one
    assert '  input: "x"\n  input: "w"\n  input: "^x"\n  device: "/device:CPU:0"' in text
    assert 'attr { key: "padding" value { s: "SAME" } }' in one
    assert 'attr { key: "strides" value { list { i: 1 i: 1 i: 1 i: 1 } } }' in one
    assert 'attr { key: "explicit_paddings" value { list { } } }' in one
    assert 'attr { key: "use_cudnn_on_gpu" value { b: true } }' in one
    assert 'attr { key: "T" value { type: DT_FLOAT } }' in one
    assert "tensor { dtype: DT_FLOAT tensor_shape { dim { size: 3 } dim { size: 3 } " in one
    # attrs appear sorted by key within a node
    c_node = text[text.index('name: "c"'):]
    keys = re.findall(r'^    key: "(\w+)"', c_node, re.M)
    assert keys == sorted(keys) and len(keys) == 7


def test_to_graph_def_unknown_rank_and_int_dtype():
    root = Scope.NewRootScope()
    ops.Placeholder(root, DT_INT32)
    ops.Const(root, [1, 2], dtype=DT_DOUBLE)
    text = root.ToGraphDef().to_text(as_one_line=True)
    assert "shape { unknown_rank: true }" in text
    assert "type: DT_INT32" in text and "dtype: DT_DOUBLE" in text
