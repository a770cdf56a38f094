"""GraphDef values: wire format, every attr kind, every Const encoding, hostile bytes."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest

import ops
from opgraph import DT_FLOAT, Scope, errors
from opgraph.graphdef import (
    AttrValue, Dim, GraphDef, ListValue, NodeDef, TensorProto, TensorShapeProto, VersionDef,
    attr_value_from_python, attr_value_to_python, decode_message, encode_message,
    graph_to_graph_def, parse_graph_def, read_graph_def,
)
from opgraph.op_def import AttrDef
from opgraph.shapes import TensorShape

ml_dtypes = None
try:
    import ml_dtypes
except ImportError:
    pass


def _sample_graph_def() -> GraphDef:
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[None, 4])
    w = ops.Const(root.WithOpName("w"), np.arange(8, dtype=np.float32).reshape(4, 2))
    y = ops.MatMul(root.WithOpName("y").WithDevice("/cpu:0"), x, w, transpose_b=False)
    ops.Identity(root.WithOpName("z").WithControlDependencies([y]).ColocateWith(y), y)
    return graph_to_graph_def(root.graph())


# ---------------------------------------------------------------- wire format
def test_binary_and_text_round_trip():
    gd = _sample_graph_def()
    data = gd.SerializeToString()
    assert GraphDef.FromString(data) == gd
    assert GraphDef.from_text(gd.to_text()) == gd
    assert GraphDef.from_text(gd.to_text(as_one_line=True)) == gd
    assert str(gd) == gd.to_text()
    assert parse_graph_def(data) == parse_graph_def(gd.to_text().encode()) == gd


def test_files_are_told_apart_by_content(tmp_path):
    gd = _sample_graph_def()
    gd.write(tmp_path / "g.pbtxt")
    gd.write(tmp_path / "g.pb")
    (tmp_path / "g.bin").write_bytes(gd.SerializeToString())
    (tmp_path / "g.txt_but_binary.pbtxt").write_bytes(gd.SerializeToString())
    for name in ("g.pbtxt", "g.pb", "g.bin", "g.txt_but_binary.pbtxt"):
        got = read_graph_def(tmp_path / name)
        assert got == gd and got.source == name


@pytest.mark.parametrize(("kind", "values"), [
    ("int32", [0, 1, 127, 128, 300, -1, -(2 ** 31), 2 ** 31 - 1]),
    ("int64", [0, -1, 2 ** 63 - 1, -(2 ** 63), 1 << 40]),
    ("uint64", [0, 2 ** 64 - 1, 1 << 63]),
    ("uint32", [0, 2 ** 32 - 1]),
    ("bool", [True, False, True]),
    ("float", [0.0, -0.0, 1.5, float("inf")]),
    ("double", [0.1, -1e300, float("-inf")]),
])
def test_packed_scalars_round_trip(kind, values):
    field = {"int32": "int_val", "int64": "int64_val", "uint64": "uint64_val",
             "uint32": "uint32_val", "bool": "bool_val", "float": "float_val",
             "double": "double_val"}[kind]
    msg = {field: values}
    data = encode_message(msg, "TensorProto")
    assert decode_message(data, "TensorProto") == msg


def test_unpacked_repeated_scalars_and_unknown_fields_are_read():
    # field 5 (float_val) unpacked twice, then an unknown varint field 99 and fixed64 98
    data = bytes([0x2D]) + np.float32(1.5).tobytes() + bytes([0x2D]) + \
        np.float32(2.0).tobytes() + bytes([0x98, 0x06, 0x07]) + bytes([0x91, 0x06]) + b"\0" * 8
    assert decode_message(data, "TensorProto") == {"float_val": [1.5, 2.0]}


def test_later_oneof_member_wins_and_messages_merge():
    a = encode_message({"i": 5}, "AttrValue")
    b = encode_message({"s": b"x"}, "AttrValue")
    assert decode_message(a + b, "AttrValue") == {"s": b"x"}
    s1 = encode_message({"tensor_shape": {"dim": [{"size": 2}]}}, "TensorProto")
    s2 = encode_message({"tensor_shape": {"dim": [{"size": 3}]}}, "TensorProto")
    assert decode_message(s1 + s2, "TensorProto") == {
        "tensor_shape": {"dim": [{"size": 2}, {"size": 3}]}}


@pytest.mark.parametrize(("data", "what"), [
    (b"\x0a\x05ab", "truncated"), (b"\x0a", "truncated"), (b"\x0a\xff\xff\xff\xff\x0f",
                                                          "truncated"),
    (b"\x18" + b"\xff" * 11, "longer than 10 bytes"), (b"\x0b", "wire type 3"),
    (b"\x0e", "wire type 6"), (b"\x00\x00", "field number 0"),
    (b"\x08\x01", "wire type 0 for a message field"),
    (b"\x0a\x04\x0a\x02\xff\xfe", "not valid UTF-8"),
])
def test_malformed_bytes_are_data_loss(data, what):
    with pytest.raises(errors.DataLossError, match="Can't parse g.pb as binary proto") as e:
        GraphDef.FromString(data, "g.pb")
    assert what in str(e.value)


def test_deep_nesting_is_refused():
    def nest(depth: int) -> bytes:       # AttrValue.list.func[0].attr[""] = AttrValue ...
        av = b""
        for _ in range(depth):
            entry = b"\x12" + _varint(len(av)) + av
            nal = b"\x12" + _varint(len(entry)) + entry
            lv = b"\x4a" + _varint(len(nal)) + nal
            av = b"\x0a" + _varint(len(lv)) + lv
        return av

    assert decode_message(nest(20), "AttrValue")["list"]["func"][0]["attr"][""]
    with pytest.raises(errors.DataLossError, match="nested deeper than 100"):
        decode_message(nest(30), "AttrValue")


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def test_fuzzed_graph_defs_give_only_op_errors():
    """Truncations, bit flips and splices of a real GraphDef: parsing and importing either
    work or raise an OpError -- never another exception, a crash or a huge allocation."""
    from opgraph.importer import GraphDefWarning, ImportGraphDef  # noqa: PLC0415

    warnings.simplefilter("ignore", GraphDefWarning)
    base = read_graph_def(_golden("small_cnn.pb")).SerializeToString()
    rng = random.Random(1234)
    outcomes = {"ok": 0, "error": 0}
    for trial in range(400):
        data = bytearray(base)
        mode = trial % 4
        if mode == 0:
            data = data[:rng.randrange(len(data))]
        elif mode == 1:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif mode == 2:
            i = rng.randrange(len(data))
            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 12)))
        else:               # a huge length or dim somewhere
            i = rng.randrange(len(data) - 10)
            data[i:i + 10] = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"
        try:
            gd = GraphDef.FromString(bytes(data))
            root = Scope.NewRootScope()
            ImportGraphDef(root, gd)
            outcomes["ok" if root.ok() else "error"] += 1
        except errors.OpError:
            outcomes["error"] += 1
    assert outcomes["error"] > 100


# ---------------------------------------------------------------- attrs
@pytest.mark.parametrize(("spec", "value", "field"), [
    ("a: int", -3, "i"), ("a: float", 0.5, "f"), ("a: bool", True, "b"),
    ("a: string", "SAME", "s"), ("a: type", DT_FLOAT, "type"),
    ("a: shape", TensorShape([None, 3]), "shape"), ("a: shape", TensorShape(None), "shape"),
    ("a: tensor", np.array([1, 2], np.int64), "tensor"),
    ("a: list(int)", (1, 2, 3), "list"), ("a: list(float)", (0.5, 1.0), "list"),
    ("a: list(bool)", (True, False), "list"), ("a: list(string)", ("x", "y"), "list"),
    ("a: list(type)", (DT_FLOAT,), "list"),
    ("a: list(shape)", (TensorShape([1]), TensorShape(None)), "list"),
    ("a: list(tensor)", (np.zeros(2, np.float32),), "list"), ("a: list(int)", (), "list"),
])
def test_every_attr_kind_round_trips(spec, value, field):
    d = AttrDef.parse(spec)
    av = attr_value_from_python(value, d)
    assert av.which() == field
    back = attr_value_to_python(AttrValue.FromString(av.SerializeToString()), d)
    back = d.check(back)
    if isinstance(value, np.ndarray) or (isinstance(value, tuple) and value and
                                         isinstance(value[0], np.ndarray)):
        for a, b in zip(np.atleast_1d(back), np.atleast_1d(value)) if isinstance(
                value, tuple) else [(back, value)]:
            assert a.dtype == b.dtype and np.array_equal(a, b)
    else:
        assert back == d.check(value)


def test_attr_kind_mismatch_is_named():
    with pytest.raises(errors.InvalidArgumentError, match="expected a int value but the "
                                                          "GraphDef has a string"):
        attr_value_to_python(AttrValue(s=b"x"), AttrDef.parse("a: int"))
    with pytest.raises(errors.InvalidArgumentError, match="list"):
        attr_value_to_python(AttrValue(list=ListValue(i=(1,))), AttrDef.parse("a: int"))
    with pytest.raises(errors.UnimplementedError, match="DT_RESOURCE"):
        attr_value_to_python(AttrValue(type=20), AttrDef.parse("a: type"))
    with pytest.raises(errors.UnimplementedError, match="reference types"):
        attr_value_to_python(AttrValue(type=101), AttrDef.parse("a: type"))


# ---------------------------------------------------------------- tensors
_DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
           "uint16", "bool", "complex64", "complex128"]


def _values(dtype: str, n: int):
    rng = np.random.default_rng(n)
    if dtype == "bool":
        return rng.random(n) > 0.5
    if dtype.startswith("complex"):
        return (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(dtype)
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
    return rng.standard_normal(n).astype(dtype)


@pytest.mark.parametrize("dtype", _DTYPES)
@pytest.mark.parametrize("shape", [(), (1,), (2, 3), (0, 4)])
def test_tensor_round_trip(dtype, shape):
    arr = _values(dtype, int(np.prod(shape))).reshape(shape)
    t = TensorProto.from_numpy(arr)
    back = TensorProto.FromString(t.SerializeToString()).to_numpy()
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert back.tobytes() == arr.tobytes()
    if arr.size > 1:
        assert t.tensor_content == arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    elif arr.size == 1:
        assert not t.tensor_content             # a typed *_val field


def test_tensor_content_is_little_endian():
    t = TensorProto.from_numpy(np.array([1, 256], np.int32))
    assert t.tensor_content == b"\x01\x00\x00\x00\x00\x01\x00\x00"
    big = TensorProto(dtype=3, tensor_shape=TensorShapeProto.from_shape([2]),
                      tensor_content=b"\x01\x00\x00\x00\x00\x01\x00\x00")
    assert big.to_numpy().tolist() == [1, 256]


def test_typed_values_and_splat_constants():
    shape = TensorShapeProto.from_shape([2, 3])
    assert TensorProto(1, shape, float_val=(2.5,)).to_numpy().tolist() == [[2.5] * 3] * 2
    # fewer values than elements repeat the last one (TF's rule); none means zeros
    assert TensorProto(3, shape, int_val=(1, 2)).to_numpy().reshape(-1).tolist() == \
        [1, 2, 2, 2, 2, 2]
    assert TensorProto(9, shape).to_numpy().tolist() == [[0] * 3] * 2
    assert TensorProto(10, TensorShapeProto.from_shape([2]), bool_val=(True,)).to_numpy() \
        .tolist() == [True, True]
    splat = TensorProto.from_numpy(np.full((4, 4), -0.0, np.float32))
    assert splat.float_val == (-0.0,) and not splat.tensor_content
    assert np.signbit(splat.to_numpy()).all()
    mixed = TensorProto.from_numpy(np.array([0.0, -0.0], np.float32))
    assert mixed.tensor_content                 # bit patterns differ: no splat


def test_half_and_bfloat16_use_half_val_bit_patterns():
    t = TensorProto.from_numpy(np.float16(1.5))
    assert t.dtype == 19 and t.half_val == (0x3E00,)
    assert TensorProto(19, TensorShapeProto.from_shape([3]), half_val=(0x3C00,)).to_numpy() \
        .tolist() == [1.0, 1.0, 1.0]
    if ml_dtypes is None:
        with pytest.raises(errors.UnimplementedError, match="bfloat16"):
            TensorProto(14, TensorShapeProto(), half_val=(0x3FC0,)).to_numpy()
        return
    v = TensorProto(14, TensorShapeProto(), half_val=(0x3FC0,)).to_numpy()
    assert v.dtype == ml_dtypes.bfloat16 and float(v) == 1.5
    t = TensorProto.from_numpy(np.array([1.5], ml_dtypes.bfloat16))
    assert t.dtype == 14 and t.half_val == (0x3FC0,)


def test_strings_use_string_val():
    arr = np.array(["a", "é", "\x00x"], dtype=object)
    t = TensorProto.from_numpy(arr)
    assert t.string_val == (b"a", "é".encode(), b"\x00x")
    assert TensorProto.FromString(t.SerializeToString()).to_numpy().tolist() == arr.tolist()


@pytest.mark.parametrize(("proto", "error", "what"), [
    (TensorProto(1, TensorShapeProto.from_shape([3]), tensor_content=b"\0" * 8),
     errors.InvalidArgumentError, "has 8 bytes but"),
    (TensorProto(1, TensorShapeProto.from_shape([2]), float_val=(1, 2, 3)),
     errors.InvalidArgumentError, "3 values in float_val"),
    (TensorProto(1, TensorShapeProto.from_shape([2]), int_val=(1,)),
     errors.InvalidArgumentError, "int_val set"),
    (TensorProto(6, TensorShapeProto.from_shape([1]), int_val=(300,)),
     errors.InvalidArgumentError, "out of range for DT_INT8"),
    (TensorProto(1, TensorShapeProto(dim=(Dim(-5),))), errors.InvalidArgumentError,
     "negative dimension"),
    (TensorProto(1, TensorShapeProto(unknown_rank=True)), errors.InvalidArgumentError,
     "fully defined"),
    (TensorProto(1, TensorShapeProto.from_shape([2 ** 40, 2 ** 20]), float_val=(1.0,)),
     errors.ResourceExhaustedError, "OOM"),
    (TensorProto(20, TensorShapeProto()), errors.UnimplementedError, "DT_RESOURCE"),
    (TensorProto(19, TensorShapeProto(), half_val=(70000,)), errors.InvalidArgumentError,
     "16-bit"),
])
def test_hostile_tensors_are_refused_before_allocating(proto, error, what):
    with pytest.raises(error, match=what):
        proto.to_numpy()


def test_versions_and_protobuf_cross_check():
    gd = _sample_graph_def()
    assert gd.versions == VersionDef(producer=2474)
    assert "versions {\n  producer: 2474\n}" in gd.to_text()
    pytest.importorskip("google.protobuf")
    msg = gd.to_protobuf()
    assert msg.SerializeToString(deterministic=True) == gd.SerializeToString()
    assert GraphDef.from_protobuf(msg) == gd
    assert [n.name for n in msg.node] == ["x", "w", "y", "z"]


def test_node_def_fields():
    gd = _sample_graph_def()
    y, z = gd.find_node("y"), gd.find_node("z")
    assert y.device == "/device:CPU:0" and y.input == ("x", "w")
    assert z.input == ("y", "^y")
    assert z.attr["_class"] == AttrValue(list=ListValue(s=(b"loc:@y",)))
    assert NodeDef.FromString(y.SerializeToString()) == y
    with pytest.raises(errors.NotFoundError):
        gd.find_node("nope")


def _golden(name: str) -> str:
    import os  # noqa: PLC0415

    return os.path.join(os.path.dirname(__file__), "golden", name)


# ---------------------------------------------------------------- properties
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_data_loss(data):
    try:
        GraphDef.FromString(data)
    except errors.DataLossError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet='node{}:<>[],;#"\'\\ \nnameopinputattrkeyvalue0123456789-.xef',
               max_size=80))
def test_random_text_parses_or_raises_data_loss(text):
    try:
        GraphDef.from_text(text)
    except errors.DataLossError:
        pass


_names = st.text(alphabet="abcXYZ09_./-", min_size=1, max_size=8)
_attr_values = st.one_of(
    st.builds(lambda i: AttrValue(i=i), st.integers(-(2 ** 63), 2 ** 63 - 1)),
    st.builds(lambda s: AttrValue(s=s), st.binary(max_size=10)),
    st.builds(lambda f: AttrValue(f=float(np.float32(f))),
              st.floats(allow_nan=False, width=32)),
    st.builds(lambda b: AttrValue(b=b), st.booleans()),
    st.builds(lambda t: AttrValue(type=t), st.sampled_from([1, 2, 3, 9, 19])),
    st.builds(lambda v: AttrValue(list=ListValue(i=tuple(v))),
              st.lists(st.integers(-5, 2 ** 40), max_size=4)),
    st.builds(lambda d: AttrValue(shape=TensorShapeProto.from_shape(d)),
              st.lists(st.one_of(st.none(), st.integers(0, 9)), max_size=3)),
)
_nodes = st.builds(lambda name, op, inputs, device, attr: NodeDef(name, op, tuple(inputs),
                                                                    device, attr),
                   _names, _names, st.lists(_names, max_size=3),
                   st.sampled_from(["", "/device:CPU:0"]),
                   st.dictionaries(_names, _attr_values, max_size=3))


@settings(max_examples=80, deadline=None)
@given(st.lists(_nodes, max_size=4))
def test_any_graph_def_round_trips_in_both_encodings(nodes):
    gd = GraphDef(node=tuple(nodes), versions=VersionDef(producer=5))
    assert GraphDef.FromString(gd.SerializeToString()) == gd
    assert GraphDef.from_text(gd.to_text()) == gd
    assert GraphDef.from_text(gd.to_text(as_one_line=True)) == gd
