"""Node names follow TF's rule over the whole string, and nothing written into the GraphDef
text can break its structure.

Faults fixed: a name ending in a newline passed (Python's ``$`` matches before a final
newline); kernel labels, attr strings and string constants were written unescaped, so a
value could end the string and inject a node. Every string is now C-escaped as protobuf's
text format does. The text is checked here with a small independent tokenizer.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import ops
from opgraph import DT_FLOAT, Scope, errors
from opgraph.op_def import OpDef

IA = errors.InvalidArgumentError
TF_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_./-]*")
FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
name_chars = st.sampled_from(list("aZ09._-/ \n\t\r:\x00\\\"'{}é") + ["\u2028", "\x7f"])
names = st.one_of(st.text(name_chars, max_size=8), st.text(max_size=6))


def _tf_valid(name: str) -> bool:
    return bool(TF_NAME.fullmatch(name)) and "//" not in name and not name.endswith("/")


# ---- names --------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["x\n", "x\r", "x\n\n", "a/b\n", "x\x00", "x\t", "\nx", "x y",
                                 "x:0", "_x", "-x", "/x", "x/", "a//b", "é", "x\u2028", ""])
def test_invalid_names_are_refused(bad):
    root = Scope.NewRootScope()
    with pytest.raises(IA, match="Invalid op name"):
        root.WithOpName(bad)                   # "x\n" used to pass
    if bad:
        with pytest.raises(IA, match="Invalid sub-scope name"):
            root.NewSubScope(bad)


@pytest.mark.parametrize("good", ["x", ".", "..x", "0", "a.b-c_d", "A/b", "a/b/c", "x-",
                                  "9_"])
def test_valid_names_are_used_exactly(good):
    root = Scope.NewRootScope()
    c = ops.Const(root.WithOpName(good), 1.0)
    assert c.operation.name == good and root.ok()


@FUZZ
@given(name=names)
@example(name="x\n")
@example(name="a/b\n")
def test_names_are_accepted_exactly_when_tf_accepts_them(name):
    root = Scope.NewRootScope()
    try:
        scope = root.WithOpName(name)
    except IA:
        assert not _tf_valid(name), repr(name)
        return
    assert _tf_valid(name), repr(name)
    assert ops.Const(scope, 1.0).operation.name == name


@FUZZ
@given(name=names)
@example(name="x\n")
def test_sub_scope_names_follow_the_same_rule(name):
    root = Scope.NewRootScope()
    if not name:
        assert root.NewSubScope(name) is not None
        return
    try:
        sub = root.NewSubScope(name)
    except IA:
        assert not _tf_valid(name), repr(name)
        return
    assert _tf_valid(name), repr(name)
    assert ops.Const(sub, 1.0).operation.name == f"{name}/Const"


# ---- GraphDef text ------------------------------------------------------------------------
_ESC = {"n": 10, "r": 13, "t": 9, '"': 34, "'": 39, "\\": 92}


def _tokens(text: str):
    """(kind, value) tokens of protobuf text: 'str' (unescaped bytes), '{', '}', 'word'."""
    i, out = 0, []
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "{}":
            out.append((ch, ch))
            i += 1
        elif ch == '"':
            i += 1
            buf = bytearray()
            while text[i] != '"':
                assert text[i] != "\n", "raw newline inside a string"
                if text[i] == "\\":
                    nxt = text[i + 1]
                    if nxt in _ESC:
                        buf.append(_ESC[nxt])
                        i += 2
                    else:
                        assert re.fullmatch("[0-7]{3}", text[i + 1:i + 4]), text[i:i + 4]
                        buf.append(int(text[i + 1:i + 4], 8))
                        i += 4
                else:
                    assert 0x20 <= ord(text[i]) < 0x7F, f"unescaped {text[i]!r}"
                    buf += text[i].encode()
                    i += 1
            out.append(("str", bytes(buf)))
            i += 1
        else:
            m = re.compile(r"[^\s{}\"]+").match(text, i)
            out.append(("word", m.group()))
            i = m.end()
    return out


def _nodes(text: str):
    """Top-level ``node { ... }`` blocks as lists of tokens (structure checked; the one
    ``versions { ... }`` block after them is checked and dropped)."""
    toks, blocks, depth, cur, word = _tokens(text), [], 0, None, None
    for kind, value in toks:
        if kind == "{":
            depth += 1
        elif kind == "}":
            depth -= 1
            assert depth >= 0, "unbalanced braces"
            if depth == 0:
                blocks.append((word, cur))
                cur = None
                continue
        elif depth == 0:
            assert (kind, value) in (("word", "node"), ("word", "versions")), \
                f"unexpected top-level {value!r}"
            cur, word = [], value
            continue
        cur.append((kind, value))
    assert depth == 0
    words = [w for w, _ in blocks]
    assert "versions" not in words[:-1], "versions must come once, after the nodes"
    return [b for w, b in blocks if w == "node"]


def _strings_after(tokens, word):
    return [tokens[i + 1][1] for i, (k, v) in enumerate(tokens[:-1])
            if k == "word" and v == word and tokens[i + 1][0] == "str"]


_STRING_ATTR = OpDef("NamesStringAttr", outputs=["y: float32"], attrs=["note: string",
                                                                       "notes: list(string)"],
                     shape_fn=lambda c: [[]])
EVIL = ['a"\n}\nnode { name: "evil" op: "NoOp" }\nnode {', "\\", '\\"', "\x00\x01\x7f",
        "é\u2028", "}}}", "'", "", "\r\n\t", "\\000", "#comment", "a\\"]


@pytest.mark.parametrize("evil", EVIL)
def test_strings_cannot_break_the_graph_def(evil):
    root = Scope.NewRootScope()
    ops.Const(root.WithKernelLabel(evil).WithOpName("c"), 1.0)
    ops.Const(root.WithOpName("s"), [evil, evil + "x"])
    root.WithOpName("n").build_op(_STRING_ATTR, [], {"note": evil, "notes": [evil, "b"]})
    text = str(root.ToGraphDef())
    nodes = _nodes(text)
    assert [_strings_after(n, "name:")[0] for n in nodes] == [b"c", b"s", b"n"]
    c, s, n = nodes
    if evil:                                                         # "" means no label
        assert evil.encode() in _strings_after(c, "s:")              # the kernel label
    assert _strings_after(s, "string_val:") == [evil.encode(), (evil + "x").encode()]
    assert _strings_after(n, "s:") == [evil.encode(), evil.encode(), b"b"]


@FUZZ
@given(value=st.one_of(st.text(), st.binary()))
def test_any_string_round_trips_through_the_graph_def(value):
    root = Scope.NewRootScope()
    ops.Const(root.WithOpName("s"), [value])
    label = value if isinstance(value, str) else value.decode("latin-1")
    ops.Const(root.WithKernelLabel(label).WithOpName("k"), 1.0)
    (s, k) = _nodes(str(root.ToGraphDef()))
    want = value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
    assert _strings_after(s, "string_val:") == [want]
    if label:
        assert label.encode("utf-8", "surrogatepass") in _strings_after(k, "s:")


def test_graph_def_parses_with_the_repository_pbtxt_reader():
    pbtxt = pytest.importorskip("opgraph.pbtxt")
    root = Scope.NewRootScope()
    x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT, shape=[None, 3])
    ops.Const(root.WithKernelLabel(EVIL[0]).ColocateWith(x).WithOpName("c"),
              np.arange(6, dtype=np.float32).reshape(2, 3))
    ops.Const(root.WithOpName("s"), EVIL)
    ops.Const(root.WithOpName("h"), np.float16(1.5))
    ops.Const(root.WithOpName("z"), 1 + 2j)
    g = pbtxt.parse_text(str(root.ToGraphDef()), "GraphDef")
    assert [n["name"] for n in g["node"]] == ["x", "c", "s", "h", "z"]
    c = g["node"][1]
    assert c["attr"]["_kernel"]["s"] == EVIL[0].encode()
    assert c["attr"]["_class"]["list"]["s"] == [b"loc:@x"]
    content = c["attr"]["value"]["tensor"]["tensor_content"]
    assert np.frombuffer(content, "<f4").tolist() == list(range(6))
    assert g["node"][2]["attr"]["value"]["tensor"]["string_val"] == [e.encode() for e in EVIL]
