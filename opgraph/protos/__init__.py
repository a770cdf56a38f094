"""The .proto files of this folder, read into a schema that the pure-Python codecs use.

The .proto files were written for opgraph with TensorFlow's message names and field numbers
(tensorflow/core/framework/*.proto), so what they describe is byte-compatible with TF's
GraphDef. ``schema()`` parses them once (a small proto3 reader: messages, nested messages,
enums, ``repeated``, ``map<K, V>``, ``oneof``, ``[packed = true]``) and returns
``{full name: MessageSpec | EnumSpec}``. ``protobuf_classes()`` builds real protobuf message
classes from the same files when the ``protobuf`` package is installed (extra ``graphdef``).
"""

from __future__ import annotations

import functools
import os
import re

import attrs

__all__ = ["FieldSpec", "MessageSpec", "EnumSpec", "schema", "message", "protobuf_classes",
           "PROTO_DIR", "PROTO_FILES"]

PROTO_DIR = os.path.dirname(os.path.abspath(__file__))
PROTO_FILES = ("types.proto", "tensor_shape.proto", "versions.proto", "tensor.proto",
               "attr_value.proto", "node_def.proto", "op_def.proto", "function.proto",
               "graph.proto")

SCALAR_KINDS = ("double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
                "fixed32", "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes")
#: protobuf wire type of each scalar kind (0 varint, 1 64-bit, 2 length-delimited, 5 32-bit)
WIRE_TYPES = {"double": 1, "float": 5, "int32": 0, "int64": 0, "uint32": 0, "uint64": 0,
              "sint32": 0, "sint64": 0, "fixed32": 5, "fixed64": 1, "sfixed32": 5,
              "sfixed64": 1, "bool": 0, "string": 2, "bytes": 2, "enum": 0, "message": 2}


@attrs.frozen
class FieldSpec:
    """One field: ``kind`` is a scalar kind, "enum" or "message" (``type_name`` then names
    the enum or message); a map field is a repeated message whose entry type is_map_entry."""

    name: str
    number: int
    kind: str
    repeated: bool = False
    packed: bool = False
    type_name: str | None = None
    oneof: str | None = None
    is_map: bool = False

    @property
    def wire_type(self) -> int:
        return WIRE_TYPES[self.kind]


@attrs.frozen
class MessageSpec:
    name: str                       # full name: "tensorflow.NodeDef"
    fields: tuple                   # FieldSpecs in field-number order
    is_map_entry: bool = False
    #: names of TF's fields that opgraph does not read (``reserved "name";``): the text
    #: parser skips them, as the binary decoder skips any unknown field number
    reserved_names: frozenset = frozenset()
    by_number: dict = attrs.field(init=False, eq=False, repr=False)
    by_name: dict = attrs.field(init=False, eq=False, repr=False)
    #: oneof name -> the names of its member fields
    oneofs: dict = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self):
        object.__setattr__(self, "by_number", {f.number: f for f in self.fields})
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})
        groups: dict = {}
        for f in self.fields:
            if f.oneof is not None:
                groups.setdefault(f.oneof, []).append(f.name)
        object.__setattr__(self, "oneofs", {k: tuple(v) for k, v in groups.items()})


@attrs.frozen
class EnumSpec:
    name: str
    values: dict                    # value name -> number
    by_number: dict = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self):
        object.__setattr__(self, "by_number", {v: k for k, v in reversed(self.values.items())})


_TOKEN = re.compile(r"""\s+|//[^\n]*|/\*.*?\*/|"""
                    r"""(?P<tok>"(?:[^"\\]|\\.)*"|[A-Za-z_][\w.]*|-?\d+|[{}()\[\]<>=;,])""", re.S)


def _tokens(text: str, path: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            msg = f"{path}: unexpected character {text[pos]!r} at offset {pos}"
            raise ValueError(msg)
        if m.group("tok"):
            out.append(m.group("tok"))
        pos = m.end()
    return out


class _Reader:
    """A recursive-descent reader of the proto3 subset the files of this folder use."""

    def __init__(self, text: str, path: str):
        self.toks = _tokens(text, path)
        self.i = 0
        self.path = path
        self.package = ""
        self.messages = {}          # full name -> (list of raw fields, is_map_entry)
        self.enums = {}
        self.reserved = {}          # message full name -> reserved field names

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, expected=None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            msg = f"{self.path}: expected {expected or 'a token'}, got {tok!r}"
            raise ValueError(msg)
        self.i += 1
        return tok

    def skip_statement(self):
        while self.take() != ";":
            pass

    def parse(self):
        while self.peek() is not None:
            tok = self.peek()
            if tok in ("syntax", "import", "option"):
                self.skip_statement()
            elif tok == "package":
                self.take()
                self.package = self.take()
                self.take(";")
            elif tok == "message":
                self.message(self.package)
            elif tok == "enum":
                self.enum(self.package)
            else:
                msg = f"{self.path}: unexpected {tok!r} at top level"
                raise ValueError(msg)

    def enum(self, scope: str):
        self.take("enum")
        name = f"{scope}.{self.take()}"
        self.take("{")
        values = {}
        while self.peek() != "}":
            if self.peek() in ("option", "reserved"):
                self.skip_statement()
                continue
            key = self.take()
            self.take("=")
            values[key] = int(self.take())
            self.options()
            self.take(";")
        self.take("}")
        self.enums[name] = values

    def options(self) -> dict:
        opts = {}
        if self.peek() == "[":
            self.take("[")
            while True:
                key = self.take()
                self.take("=")
                opts[key] = self.take()
                if self.take() == "]":
                    break
        return opts

    def message(self, scope: str):
        self.take("message")
        name = f"{scope}.{self.take()}"
        self.take("{")
        fields = []
        self.messages[name] = (fields, False)
        self.body(name, fields, oneof=None)
        self.take("}")

    def body(self, name, fields, oneof):
        while self.peek() != "}":
            tok = self.peek()
            if tok == "message":
                self.message(name)
            elif tok == "enum":
                self.enum(name)
            elif tok == "option":
                self.skip_statement()
            elif tok == "reserved":
                self.take()
                while True:
                    item = self.take()
                    if item.startswith('"'):
                        self.reserved.setdefault(name, set()).add(item.strip('"'))
                    if self.take() == ";":
                        break
            elif tok == "oneof":
                self.take()
                group = self.take()
                self.take("{")
                self.body(name, fields, oneof=group)
                self.take("}")
            elif tok == "map":
                self.take()
                self.take("<")
                key_type = self.take()
                self.take(",")
                value_type = self.take()
                self.take(">")
                field = self.take()
                self.take("=")
                number = int(self.take())
                self.options()
                self.take(";")
                entry = f"{name}.{''.join(p.title() for p in field.split('_'))}Entry"
                self.messages[entry] = ([("key", key_type, 1, False, {}, None, name),
                                         ("value", value_type, 2, False, {}, None, name)], True)
                fields.append((field, entry, number, True, {}, None, name, True))
            else:
                repeated = tok == "repeated"
                if tok in ("repeated", "optional"):
                    self.take()
                type_name = self.take()
                field = self.take()
                self.take("=")
                number = int(self.take())
                opts = self.options()
                self.take(";")
                fields.append((field, type_name, number, repeated, opts, oneof, name))


def _resolve(type_name: str, scope: str, known) -> str:
    """Protobuf's scoping: look the name up from the innermost enclosing scope outwards."""
    if type_name.startswith("."):
        return type_name[1:]
    parts = scope.split(".")
    while parts:
        cand = ".".join((*parts, type_name))
        if cand in known:
            return cand
        parts.pop()
    if type_name in known:
        return type_name
    msg = f"Unknown type {type_name!r} used in {scope}"
    raise ValueError(msg)


@functools.cache
def schema() -> dict:
    """Every message and enum of the .proto files: full name -> MessageSpec | EnumSpec."""
    messages, enums, reserved = {}, {}, {}
    for fname in PROTO_FILES:
        path = os.path.join(PROTO_DIR, fname)
        with open(path, encoding="utf-8") as f:
            r = _Reader(f.read(), fname)
        r.parse()
        messages.update(r.messages)
        enums.update(r.enums)
        reserved.update(r.reserved)
    known = set(messages) | set(enums)
    out = {name: EnumSpec(name, values) for name, values in enums.items()}
    for name, (raw, is_entry) in messages.items():
        specs = []
        for field, type_name, number, repeated, opts, oneof, scope, *is_map in raw:
            if type_name in SCALAR_KINDS:
                kind, full = type_name, None
            else:
                full = _resolve(type_name, scope if not is_entry else name, known) \
                    if not is_map else type_name
                kind = "enum" if full in enums else "message"
            packed = repeated and kind not in ("string", "bytes", "message") and \
                opts.get("packed", "true") == "true"
            specs.append(FieldSpec(field, number, kind, repeated, packed, full, oneof,
                                   bool(is_map)))
        specs.sort(key=lambda s: s.number)
        out[name] = MessageSpec(name, tuple(specs), is_entry,
                                frozenset(reserved.get(name, ())))
    return out


def message(name: str) -> MessageSpec:
    """The MessageSpec of ``name`` ("GraphDef" or "tensorflow.GraphDef")."""
    full = name if "." in name else f"tensorflow.{name}"
    return schema()[full]


@functools.cache
def protobuf_classes() -> dict:
    """Real protobuf message classes built from the .proto files of this folder (no protoc
    needed): full name -> class. ImportError when the ``protobuf`` package is missing."""
    from google.protobuf import descriptor_pb2, descriptor_pool  # noqa: PLC0415
    from google.protobuf import message_factory  # noqa: PLC0415

    fdp = descriptor_pb2.FileDescriptorProto(name="opgraph/protos/opgraph_tf.proto",
                                             package="tensorflow", syntax="proto3")
    specs = schema()
    label = descriptor_pb2.FieldDescriptorProto
    kinds = {k: getattr(label, f"TYPE_{k.upper()}") for k in SCALAR_KINDS}
    kinds.update(enum=label.TYPE_ENUM, message=label.TYPE_MESSAGE)
    protos = {}
    for name, spec in sorted(specs.items()):
        if isinstance(spec, EnumSpec):
            parent, _, short = name.rpartition(".")
            target = fdp if parent == "tensorflow" else protos[parent]
            e = target.enum_type.add(name=short)
            for k, v in spec.values.items():
                e.value.add(name=k, number=v)
            continue
        parent, _, short = name.rpartition(".")
        target = fdp.message_type if parent == "tensorflow" else protos[parent].nested_type
        m = target.add(name=short)
        if spec.is_map_entry:
            m.options.map_entry = True
        protos[name] = m
        oneofs = {}
        for f in spec.fields:
            fd = m.field.add(name=f.name, number=f.number, type=kinds[f.kind],
                             label=label.LABEL_REPEATED if f.repeated else label.LABEL_OPTIONAL)
            if f.type_name:
                fd.type_name = "." + f.type_name
            if f.oneof:
                if f.oneof not in oneofs:
                    oneofs[f.oneof] = len(m.oneof_decl)
                    m.oneof_decl.add(name=f.oneof)
                fd.oneof_index = oneofs[f.oneof]
            if f.repeated and f.kind not in ("string", "bytes", "message") and not f.packed:
                fd.options.packed = False
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
            for name, spec in specs.items() if isinstance(spec, MessageSpec)}
