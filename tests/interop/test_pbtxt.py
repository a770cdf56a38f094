"""The text format: protobuf's exact printing, the full parsing grammar, clear errors."""

from __future__ import annotations

import math

import pytest

from opgraph import errors
from opgraph.graphdef import GraphDef, NodeDef
from opgraph.pbtxt import c_escape, c_unescape, format_float, parse_text, write_text


@pytest.mark.parametrize(("value", "text"), [
    ("plain", "plain"), ('q"uote', 'q\\"uote'), ("it's", "it\\'s"),
    ("back\\slash", "back\\\\slash"),
    ("new\nline\r\t", "new\\nline\\r\\t"), ("\x00\x7f", "\\000\\177"), ("é", "\\303\\251"),
    (b"\xff\x80", "\\377\\200"), ("x:0", "x:0"), ("{}[]<>#", "{}[]<>#"),
])
def test_c_escape_is_protobufs(value, text):
    assert c_escape(value) == text
    assert c_unescape(text) == (value if isinstance(value, bytes) else value.encode())


@pytest.mark.parametrize(("text", "raw"), [
    ("\\x41\\x4", b"A\x04"), ("\\101", b"A"), ("\\a\\b\\f\\v\\?", b"\a\b\f\v?"),
    ("\\u00e9", "é".encode()), ("\\U0001F600", "😀".encode()), ("é", "é".encode()),
])
def test_c_unescape_accepts_every_c_escape(text, raw):
    assert c_unescape(text) == raw


@pytest.mark.parametrize("bad", ["\\q", "\\400", "\\U00110000"])
def test_c_unescape_rejects_malformed(bad):
    with pytest.raises(ValueError):
        c_unescape(bad)


@pytest.mark.parametrize(("x", "text"), [
    (0.1, "0.1"), (1.0, "1.0"), (1e-5, "1e-05"), (3.4028234663852886e38, "3.4028235e+38"),
    (-0.0, "-0.0"), (math.inf, "inf"), (-math.inf, "-inf"), (math.nan, "nan"),
    (0.30000001192092896, "0.3"), (16777217.0, "16777216.0"),
])
def test_float_fields_print_shortest_float32(x, text):
    assert format_float(x) == text


def test_nested_messages_maps_and_enums_print_like_protobuf():
    msg = {"node": [{"name": "a", "op": "Const", "attr": {
        "value": {"tensor": {"dtype": 1, "tensor_shape": {}, "float_val": [1.5]}},
        "dtype": {"type": 1}}}], "versions": {"producer": 7}}
    assert write_text(msg, "GraphDef") == (
        'node {\n  name: "a"\n  op: "Const"\n  attr {\n    key: "dtype"\n    value {\n'
        '      type: DT_FLOAT\n    }\n  }\n  attr {\n    key: "value"\n    value {\n'
        '      tensor {\n        dtype: DT_FLOAT\n        tensor_shape {\n        }\n'
        '        float_val: 1.5\n      }\n    }\n  }\n}\nversions {\n  producer: 7\n}\n')
    assert write_text(msg, "GraphDef", as_one_line=True) == (
        'node { name: "a" op: "Const" attr { key: "dtype" value { type: DT_FLOAT } } '
        'attr { key: "value" value { tensor { dtype: DT_FLOAT tensor_shape { } '
        'float_val: 1.5 } } } } versions { producer: 7 }')


def test_proto3_defaults_are_not_printed_but_oneof_members_are():
    text = write_text({"name": "", "op": "NoOp", "attr": {"i": {"i": 0}, "b": {"b": False}}},
                      "NodeDef")
    assert "name" not in text
    assert "i: 0" in text and "b: false" in text


def test_parse_accepts_the_whole_grammar():
    text = """
    # a comment
    node <name: 'a' op: "Co" 'nst'   # adjacent strings join
      attr [{key: "value" value {tensor: {dtype: 1, tensor_shape {dim {size: 0x2}}
                                          float_val: [1, 2.5f, -inf]}}},
            {key: "i" value { i: -017 }}];
      device: "/cpu:0",
    >
    node { name: "b" op: "NoOp" input: "^a" }
    versions { producer: 12 bad_consumers: [1, 2] }
    """
    gd = GraphDef.from_text(text)
    a, b = gd.node
    assert (a.name, a.op, a.device) == ("a", "Const", "/cpu:0")
    t = a.attr["value"].tensor
    assert t.tensor_shape.dim[0].size == 2
    assert t.float_val[:2] == (1.0, 2.5) and t.float_val[2] == -math.inf
    assert a.attr["i"].i == -15                   # leading 0: octal, as protobuf reads it
    assert b.input == ("^a",) and gd.versions.bad_consumers == (1, 2)
    assert a.source_line == 3 and b.source_line == 9


@pytest.mark.parametrize(("text", "where", "what"), [
    ('node { name: "a" ', "1:18", 'Expected "}"'),
    ('node { nmae: "a" }', "1:8", 'has no field named "nmae"'),
    ('node { name: "a" name: "b" }', "1:18", 'should not have multiple "name" fields'),
    ('node { name: 3 }', "1:14", "Expected string"),
    ('node { attr { key: "x" value { i: 1 s: "a" } } }', "1:37",
     "another member of oneof"),
    ('versions { producer: 99999999999 }', "1:22", "out of range for int32"),
    ('node { attr { key: "t" value { type: DT_NOPE } } }', "1:38", "has no value named"),
    ('node { name: "\\q" }', "1:14", "invalid escape"),
    ('node { name: "a" op: "b" } }', "1:28", "Expected a field name"),
    ('node { name: "\xff" }'.encode("latin-1"), "", "not valid UTF-8"),
    ('node { [ext] {} }', "1:8", "Extensions"),
])
def test_parse_errors_name_line_and_column(text, where, what):
    with pytest.raises(errors.DataLossError, match="g.pbtxt") as info:
        parse_text(text, "GraphDef", "g.pbtxt")
    assert where in str(info.value) and what in str(info.value)


def test_reserved_fields_of_tf_are_skipped():
    text = ('node { name: "a" op: "NoOp" experimental_type { type_id: TFT_PRODUCT args { } } }'
            ' debug_info { files: "x" }')
    assert GraphDef.from_text(text).node == (NodeDef("a", "NoOp"),)


def test_deep_nesting_is_an_error_not_a_crash():
    text = "node { attr { key: 'a' value { list { " + "tensor { " * 0 + "} } } }"
    assert GraphDef.from_text(text).node[0].attr["a"].list is not None
    deep = "library { function { signature { " + "attr { " * 120
    with pytest.raises(errors.DataLossError):
        GraphDef.from_text(deep)


def test_text_matches_protobufs_text_format():
    text_format = pytest.importorskip("google.protobuf.text_format")
    from opgraph import protos  # noqa: PLC0415

    cls = protos.protobuf_classes()["tensorflow.GraphDef"]
    text = ('node { name: "a\\"b\\n\\303\\251" op: "Const" input: "x:1" input: "^y" '
            'attr { key: "value" value { tensor { dtype: DT_HALF tensor_shape { dim { size: 2 } '
            '} half_val: 15360 half_val: 0 } } } attr { key: "f" value { f: 0.1 } } '
            'attr { key: "l" value { list { f: 1e-05 f: 3 type: DT_INT32 s: "\\000" } } } } '
            'versions { producer: 1 min_consumer: 0 }')
    ours = GraphDef.from_text(text)
    theirs = text_format.Parse(text, cls())
    # as_utf8=False: every string escaped, as C++ TextFormat and older protobufs print
    assert ours.to_text() == text_format.MessageToString(theirs, as_utf8=False)
    assert ours.to_text(as_one_line=True) == text_format.MessageToString(
        theirs, as_one_line=True, as_utf8=False)
    assert ours.SerializeToString() == theirs.SerializeToString(deterministic=True)
