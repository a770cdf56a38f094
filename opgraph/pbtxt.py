"""Protobuf text format (``.pbtxt``), written and read without the protobuf package.

Messages are plain dicts keyed by field name (repeated fields are lists, map fields dicts,
enums ints, ``bytes`` fields bytes), typed by the schema read from ``opgraph/protos``.

``write_text`` prints exactly what protobuf's Python ``text_format.MessageToString`` prints
(what ``tf.io.write_graph(..., as_text=True)`` writes): fields in field-number order, map
entries sorted by key, 2-space indents, float fields in the shortest form that round-trips
in float32, every string C-escaped (printable ASCII as is; quotes, backslash, \\n \\r \\t
named; every other byte of the UTF-8 encoding as a 3-digit octal escape), so no value can
break the structure of the text. ``parse_text`` reads the full text-format grammar (``:``
optional before messages, ``{}`` or ``<>``, ``[a, b]`` lists, ``#`` comments, adjacent
strings concatenated, single or double quotes, every C escape, hex/octal ints, ``inf`` /
``nan``) and raises DataLossError with ``line:column`` for anything malformed.
"""

from __future__ import annotations

import bisect
import math
import re
import struct

from opgraph import errors
from opgraph import protos
from opgraph.protos import EnumSpec, MessageSpec

__all__ = ["write_text", "parse_text", "c_escape", "c_unescape", "format_float",
           "format_double", "LINE_KEY"]

#: key under which parse_text records the 1-based line where a message started
LINE_KEY = "@line"

_NAMED = {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", ord('"'): '\\"',
          ord("'"): "\\'", ord("\\"): "\\\\"}
_ESCAPES = [_NAMED.get(b, chr(b) if 0x20 <= b < 0x7F else f"\\{b:03o}") for b in range(256)]
_PLAIN = re.compile(rb"[ !#-&(-\[\]-~]*")      # printable ASCII except ' " and backslash


def c_escape(value) -> str:
    """protobuf's CEscape of ``value`` (str: its UTF-8 bytes; bytes as they are)."""
    data = value if isinstance(value, (bytes, bytearray)) else \
        str(value).encode("utf-8", "surrogatepass")
    if _PLAIN.fullmatch(data):
        return data.decode("ascii")
    return "".join([_ESCAPES[b] for b in data])


_UNESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|u([0-9A-Fa-f]{4})|"
                       r"U([0-9A-Fa-f]{8})|(.))", re.S)
_SIMPLE = {"n": b"\n", "r": b"\r", "t": b"\t", "v": b"\v", "f": b"\f", "a": b"\a",
           "b": b"\b", "\\": b"\\", "'": b"'", '"': b'"', "?": b"?"}


def c_unescape(text: str) -> bytes:
    """The bytes a C-escaped string literal body stands for (ValueError when malformed)."""
    if "\\" not in text:
        return text.encode("utf-8", "surrogatepass")
    out, pos = [], 0
    for m in _UNESCAPE.finditer(text):
        out.append(text[pos:m.start()].encode("utf-8", "surrogatepass"))
        octal, hexa, u4, u8, other = m.groups()
        if octal is not None:
            v = int(octal, 8)
            if v > 255:
                msg = f"octal escape \\{octal} is out of range"
                raise ValueError(msg)
            out.append(bytes((v,)))
        elif hexa is not None:
            out.append(bytes((int(hexa, 16),)))
        elif u4 is not None or u8 is not None:
            cp = int(u4 or u8, 16)
            if cp > 0x10FFFF:
                msg = f"\\U{u8} is not a Unicode code point"
                raise ValueError(msg)
            out.append(chr(cp).encode("utf-8", "surrogatepass"))
        elif other in _SIMPLE:
            out.append(_SIMPLE[other])
        else:
            msg = f"invalid escape sequence \\{other}"
            raise ValueError(msg)
        pos = m.end()
    if text.endswith("\\") and pos < len(text):
        msg = "string ends with a lone backslash"
        raise ValueError(msg)
    out.append(text[pos:].encode("utf-8", "surrogatepass"))
    return b"".join(out)


def _to_float32(x: float) -> float:
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:
        return math.copysign(math.inf, x)


def format_float(x: float) -> str:
    """A float field as protobuf's Python text format prints it: the shortest decimal with
    at least 6 significant digits that reads back as the same float32."""
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        return str(x)
    original = _to_float32(x)
    precision = 6
    rounded = float(f"{original:.{precision}g}")
    while _to_float32(rounded) != original and precision < 17:
        precision += 1
        rounded = float(f"{original:.{precision}g}")
    return str(rounded)


def format_double(x: float) -> str:
    return str(float(x))


# ---------------------------------------------------------------------------- writing
def _scalar_text(f, v, enum_spec) -> str:
    kind = f.kind
    if kind in ("string", "bytes"):
        return f'"{c_escape(v)}"'
    if kind == "bool":
        return "true" if v else "false"
    if kind == "float":
        return format_float(v)
    if kind == "double":
        return format_double(v)
    if kind == "enum":
        return enum_spec.by_number.get(int(v), str(int(v)))
    return str(int(v))


def _is_default(f, v) -> bool:
    """proto3: a singular scalar outside a oneof is not printed at its default."""
    if f.oneof is not None or f.kind == "message":
        return False
    return v in (0, False, "", b"") and not (f.kind in ("float", "double")
                                             and math.copysign(1.0, v) < 0)


def write_text(msg: dict, spec: MessageSpec | str, as_one_line: bool = False) -> str:
    """``msg`` in text format (``as_one_line``: protobuf's one-line form)."""
    if isinstance(spec, str):
        spec = protos.message(spec)
    out: list[str] = []
    _write(msg, spec, out, 0, as_one_line)
    text = "".join(out)
    return text.rstrip() if as_one_line else text


def _write(msg: dict, spec: MessageSpec, out: list, indent: int, one_line: bool) -> None:
    schema = protos.schema()
    pad = "" if one_line else " " * indent
    end = " " if one_line else "\n"
    for f in spec.fields:
        if f.name not in msg:
            continue
        v = msg[f.name]
        if v is None:
            continue
        if f.kind == "message":
            sub = schema[f.type_name]
            if f.is_map:
                items = [{"key": k, "value": v[k]} for k in sorted(v)]
            else:
                items = v if f.repeated else [v]
            for item in items:
                out.append(f"{pad}{f.name} {{{end}")
                _write(item, sub, out, indent + 2, one_line)
                out.append(f"{pad}}}{end}")
            continue
        enum = schema[f.type_name] if f.kind == "enum" else None
        if f.repeated:
            for item in v:
                out.append(f"{pad}{f.name}: {_scalar_text(f, item, enum)}{end}")
        elif not _is_default(f, v):
            out.append(f"{pad}{f.name}: {_scalar_text(f, v, enum)}{end}")


# ---------------------------------------------------------------------------- parsing
_TOKEN = re.compile(r"""
    (?P<skip>[ \t\r\n\f\v]+|\#[^\n]*)
  | (?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<num>-?(?:0[xX][0-9A-Fa-f]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fF]?))
  | (?P<id>-?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<sym>[{}<>\[\]:;,])
""", re.X | re.S)

_INT_RANGES = {"int32": (-(2 ** 31), 2 ** 31 - 1), "sint32": (-(2 ** 31), 2 ** 31 - 1),
               "sfixed32": (-(2 ** 31), 2 ** 31 - 1), "int64": (-(2 ** 63), 2 ** 63 - 1),
               "sint64": (-(2 ** 63), 2 ** 63 - 1), "sfixed64": (-(2 ** 63), 2 ** 63 - 1),
               "uint32": (0, 2 ** 32 - 1), "fixed32": (0, 2 ** 32 - 1),
               "uint64": (0, 2 ** 64 - 1), "fixed64": (0, 2 ** 64 - 1)}
_MAX_DEPTH = 100


class _Parser:
    def __init__(self, text: str, source: str):
        self.text = text
        self.source = source
        self._lines = None
        self.toks: list[tuple[str, str, int]] = []     # (kind, text, offset)
        pos, n = 0, len(text)
        match = _TOKEN.match
        append = self.toks.append
        while pos < n:
            m = match(text, pos)
            if m is None:
                self.fail(f"Unexpected character {text[pos]!r}", pos)
            kind = m.lastgroup
            if kind != "skip":
                append((kind, m.group(), pos))
            pos = m.end()
        self.i = 0

    def line_col(self, offset: int) -> tuple[int, int]:
        if self._lines is None:
            self._lines = [m.end() for m in re.finditer("\n", self.text)]
        line = bisect.bisect_right(self._lines, offset)
        start = self._lines[line - 1] if line else 0
        return line + 1, offset - start + 1

    def fail(self, msg: str, offset: int | None = None):
        if offset is None:
            offset = self.toks[self.i][2] if self.i < len(self.toks) else len(self.text)
        line, col = self.line_col(offset)
        raise errors.DataLossError(f"{self.source}:{line}:{col}: {msg}")

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else ("eof", "", len(self.text))

    def next(self):
        tok = self.peek()
        if tok[0] == "eof":
            self.fail("Unexpected end of text")
        self.i += 1
        return tok

    def expect(self, sym: str):
        tok = self.next()
        if tok[1] != sym:
            self.i -= 1
            self.fail(f"Expected \"{sym}\", found \"{tok[1]}\"")

    def accept(self, sym: str) -> bool:
        if self.i < len(self.toks) and self.toks[self.i][1] == sym and \
                self.toks[self.i][0] == "sym":
            self.i += 1
            return True
        return False

    # ---- grammar ----
    def message(self, spec: MessageSpec, closing: str | None, depth: int) -> dict:
        if depth > _MAX_DEPTH:
            self.fail(f"Message nesting deeper than {_MAX_DEPTH} levels")
        out: dict = {}
        oneofs: dict = {}
        while True:
            kind, text, offset = self.peek()
            if closing is None and kind == "eof":
                return out
            if closing is not None and text == closing and kind == "sym":
                self.i += 1
                return out
            if kind != "id" or text.startswith("-"):
                if kind == "eof":
                    self.fail(f"Expected \"{closing}\" to close the message")
                if text == "[":
                    self.fail("Extensions and Any expansions ([...]) are not supported")
                self.fail(f"Expected a field name, found \"{text}\"")
            self.i += 1
            f = spec.by_name.get(text)
            if f is None:
                if text in spec.reserved_names:
                    self.skip_value(depth)
                    self.accept(";") or self.accept(",")
                    continue
                self.fail(f"Message type \"{spec.name}\" has no field named \"{text}\"",
                          offset)
            if f.oneof is not None:
                other = oneofs.get(f.oneof)
                if other is not None and other != f.name:
                    self.fail(f"Field \"{spec.name}.{f.name}\" is specified along with field "
                              f"\"{spec.name}.{other}\", another member of oneof "
                              f"\"{f.oneof}\"", offset)
                oneofs[f.oneof] = f.name
            self.field(f, out, spec, depth, offset)
            self.accept(";") or self.accept(",")

    def field(self, f, out: dict, spec: MessageSpec, depth: int, offset: int):
        schema = protos.schema()
        if f.kind == "message":
            self.accept(":")
            values = self.list_of(lambda: self.sub_message(schema[f.type_name], depth))
        else:
            self.expect(":")
            values = self.list_of(lambda: self.scalar(f))
        if f.is_map:
            entries = out.setdefault(f.name, {})
            vtype = schema[f.type_name].by_name["value"]
            for e in values:
                key = e.get("key", "")
                default = {} if vtype.kind == "message" else ""
                entries[key] = e.get("value", default)
        elif f.repeated:
            out.setdefault(f.name, []).extend(values)
        else:
            if len(values) != 1 or f.name in out:
                self.fail(f"Message type \"{spec.name}\" should not have multiple "
                          f"\"{f.name}\" fields.", offset)
            out[f.name] = values[0]

    def list_of(self, one) -> list:
        if self.accept("["):
            values = []
            if self.accept("]"):
                return values
            while True:
                values.append(one())
                if self.accept("]"):
                    return values
                self.expect(",")
        return [one()]

    def sub_message(self, spec: MessageSpec, depth: int) -> dict:
        kind, text, offset = self.next()
        if text not in ("{", "<") or kind != "sym":
            self.i -= 1
            self.fail(f"Expected \"{{\" or \"<\", found \"{text}\"")
        msg = self.message(spec, "}" if text == "{" else ">", depth + 1)
        msg[LINE_KEY] = self.line_col(offset)[0]
        return msg

    def skip_value(self, depth: int):  # noqa: ARG002
        """Skip a (reserved) field's value: a scalar, a message or a list of either."""
        self.accept(":")
        if self.accept("["):
            while not self.accept("]"):
                self.skip_one(depth)
                self.accept(",")
            return
        self.skip_one(depth)

    def skip_one(self, depth: int):
        kind, text, _ = self.next()
        if kind == "sym" and text in "{<":
            level = 1
            while level:
                k, t, _ = self.next()
                if k == "sym" and t in "{<":
                    level += 1
                elif k == "sym" and t in "}>":
                    level -= 1
        elif kind == "str":
            while self.peek()[0] == "str":
                self.i += 1

    def scalar(self, f):
        kind = f.kind
        tok_kind, text, offset = self.next()
        if kind in ("string", "bytes"):
            if tok_kind != "str":
                self.i -= 1
                self.fail(f"Expected string but found \"{text}\"")
            parts = [text]
            while self.peek()[0] == "str":
                parts.append(self.next()[1])
            try:
                data = b"".join(c_unescape(p[1:-1]) for p in parts)
            except ValueError as e:
                self.fail(f"Invalid string literal: {e}", offset)
            if kind == "string":
                try:
                    return data.decode("utf-8")
                except UnicodeDecodeError:
                    self.fail(f"String field \"{f.name}\" is not valid UTF-8 (use a bytes "
                              f"field for binary data)", offset)
            return data
        if kind == "bool":
            if text in ("true", "True", "t", "1"):
                return True
            if text in ("false", "False", "f", "0"):
                return False
            self.i -= 1
            self.fail(f"Expected \"true\" or \"false\", found \"{text}\"")
        if kind in ("float", "double"):
            value = self.float_value(tok_kind, text)
            return _to_float32(value) if kind == "float" else value
        if kind == "enum":
            spec: EnumSpec = protos.schema()[f.type_name]
            if tok_kind == "id":
                if text not in spec.values:
                    self.i -= 1
                    self.fail(f"Enum type \"{spec.name}\" has no value named {text}")
                return spec.values[text]
            return self.int_value(tok_kind, text, "int32")
        return self.int_value(tok_kind, text, kind)

    def float_value(self, tok_kind: str, text: str) -> float:
        if tok_kind == "id":
            low = text.lower().lstrip("-")
            if low in ("inf", "infinity", "nan", "inff", "infinityf", "nanf"):
                v = math.nan if low.startswith("nan") else math.inf
                return -v if text.startswith("-") else v
        elif tok_kind == "num":
            body = text[:-1] if text[-1] in "fF" and "x" not in text.lower() else text
            try:
                if "x" in body.lower():
                    return float(int(body, 16))
                return float(body)
            except ValueError:
                pass
        self.i -= 1
        self.fail(f"Couldn't parse float: {text}")

    def int_value(self, tok_kind: str, text: str, kind: str) -> int:
        value = None
        if tok_kind == "num":
            neg = text.startswith("-")
            body = text[1:] if neg else text
            try:
                if body[:2] in ("0x", "0X"):
                    value = int(body, 16)
                elif not re.search(r"[.eEfF]", body):
                    value = int(body, 8) if len(body) > 1 and body[0] == "0" else int(body)
            except ValueError:
                value = None
            if value is not None and neg:
                value = -value
        if value is None:
            self.i -= 1
            self.fail(f"Couldn't parse integer: {text}")
        lo, hi = _INT_RANGES.get(kind, _INT_RANGES["int64"])
        if not lo <= value <= hi:
            self.i -= 1
            self.fail(f"Integer {text} is out of range for {kind} [{lo}, {hi}]")
        return value


def parse_text(text: str, spec: MessageSpec | str, source: str = "<text>") -> dict:
    """Parse text-format ``text`` as a ``spec`` message; DataLossError when malformed."""
    if isinstance(spec, str):
        spec = protos.message(spec)
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            msg = f"{source}: not valid UTF-8 text (byte {e.start}); is it a binary .pb file?"
            raise errors.DataLossError(msg) from None
    return _Parser(text, source).message(spec, None, 0)
