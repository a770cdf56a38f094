"""GraphDef and friends as Python values, in TF's text and binary formats, no protobuf needed.

    >>> gd = root.ToGraphDef()                       # a GraphDef
    >>> text = gd.to_text()                          # what tf.io.write_graph(as_text=True) writes
    >>> data = gd.SerializeToString()                # the .pb bytes
    >>> GraphDef.FromString(data) == gd == GraphDef.from_text(text)
    True

The message classes (GraphDef, NodeDef, AttrValue, AttrValue.ListValue, NameAttrList,
TensorProto, TensorShapeProto, VersionDef) are frozen ``attrs`` classes whose fields are the
fields of TF's messages, with the same names (opgraph/protos/*.proto, same field numbers):
repeated fields are tuples, map fields dicts, enums ints (``DataType`` numbers), unset
messages and oneof members None. The binary codec below is a complete protobuf wire-format
reader/writer for those messages; every length, count and size is checked against the bytes
actually present before anything is allocated, so a truncated or hostile file is a
DataLossError, never a crash or a huge allocation. ``to_protobuf()`` / ``from_protobuf()``
convert to real protobuf messages built from the same .proto files (extra ``graphdef``).
"""

from __future__ import annotations

import os
import struct

import attrs
import numpy as np

from opgraph import dtypes, errors, pbtxt, protos
from opgraph.shapes import TensorShape

__all__ = [
    "GraphDef", "NodeDef", "AttrValue", "NameAttrList", "TensorProto", "TensorShapeProto",
    "VersionDef", "DebugInfo", "GRAPH_DEF_VERSION", "encode_message", "decode_message",
    "graph_to_graph_def", "attr_value_from_python", "attr_value_to_python", "read_graph_def",
    "parse_graph_def", "write_graph_def", "MAX_FILE_BYTES",
]

#: the GraphDef version written into ``versions.producer`` (TF 2.21's GRAPH_DEF_VERSION)
GRAPH_DEF_VERSION = 2474
#: largest serialised GraphDef read (protobuf's own hard limit is 2 GiB)
MAX_FILE_BYTES = 2 ** 31 - 1
_MAX_DEPTH = 100
_MASK64 = (1 << 64) - 1


def _data_loss(msg: str) -> errors.DataLossError:
    return errors.DataLossError(msg)


# ============================================================================ wire format
class _Truncated(Exception):
    pass


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise _Truncated
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _MASK64, pos
        shift += 7
        if shift >= 70:
            msg = "a varint is longer than 10 bytes"
            raise _data_loss(msg)


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _from_varint(kind: str, raw: int):
    if kind in ("int32", "enum"):
        return _signed(raw, 32)
    if kind == "int64":
        return _signed(raw, 64)
    if kind == "uint32":
        return raw & 0xFFFFFFFF
    if kind == "uint64":
        return raw
    if kind == "bool":
        return raw != 0
    if kind == "sint32":
        raw &= 0xFFFFFFFF
        return (raw >> 1) ^ -(raw & 1)
    if kind == "sint64":
        return (raw >> 1) ^ -(raw & 1)
    msg = f"kind {kind} is not a varint"
    raise AssertionError(msg)


_FIXED = {"float": ("<f", 4), "double": ("<d", 8), "fixed32": ("<I", 4),
          "sfixed32": ("<i", 4), "fixed64": ("<Q", 8), "sfixed64": ("<q", 8)}
_NP_FIXED = {"float": "<f4", "double": "<f8", "fixed32": "<u4", "sfixed32": "<i4",
             "fixed64": "<u8", "sfixed64": "<i8"}


def _skip(buf, pos, end, wire_type, where) -> int:
    if wire_type == 0:
        return _read_varint(buf, pos, end)[1]
    if wire_type == 1:
        pos += 8
    elif wire_type == 5:
        pos += 4
    elif wire_type == 2:
        n, pos = _read_varint(buf, pos, end)
        pos += n
    else:
        msg = f"{where}: unsupported wire type {wire_type} (groups are not used by TF)"
        raise _data_loss(msg)
    if pos > end:
        raise _Truncated
    return pos


def _unpack(buf, pos, end, f) -> list:
    kind = f.kind
    if kind in _FIXED:
        size = _FIXED[kind][1]
        if (end - pos) % size:
            msg = f"packed field '{f.name}' has {end - pos} bytes, not a multiple of {size}"
            raise _data_loss(msg)
        return np.frombuffer(buf, _NP_FIXED[kind], (end - pos) // size, pos).tolist()
    raws = []
    append = raws.append
    while pos < end:
        b = buf[pos]
        if b < 0x80:                      # one-byte varint: the common case
            pos += 1
            append(b)
        else:
            raw, pos = _read_varint(buf, pos, end)
            append(raw)
    if kind == "uint64" or (kind != "bool" and all(r < 0x80000000 for r in raws)):
        return raws                       # non-negative values below 2**31: as they are
    return [_from_varint(kind, r) for r in raws]


def _decode(buf, pos, end, spec, depth, path) -> dict:
    if depth > _MAX_DEPTH:
        msg = f"{path}: messages nested deeper than {_MAX_DEPTH} levels"
        raise _data_loss(msg)
    schema = protos.schema()
    by_number = spec.by_number
    out: dict = {}
    while pos < end:
        key, pos = _read_varint(buf, pos, end)
        number, wt = key >> 3, key & 7
        if number == 0:
            msg = f"{path}: field number 0 is invalid"
            raise _data_loss(msg)
        f = by_number.get(number)
        if f is None:
            pos = _skip(buf, pos, end, wt, path)
            continue
        if wt == 2:
            n, pos = _read_varint(buf, pos, end)
            stop = pos + n
            if stop > end:
                raise _Truncated
            kind = f.kind
            if kind == "message":
                value = _decode(buf, pos, stop, schema[f.type_name], depth + 1,
                                f"{path}.{f.name}")
            elif kind == "bytes":
                value = bytes(buf[pos:stop])
            elif kind == "string":
                try:
                    value = bytes(buf[pos:stop]).decode("utf-8")
                except UnicodeDecodeError:
                    msg = f"{path}.{f.name}: string field is not valid UTF-8"
                    raise _data_loss(msg) from None
            elif f.repeated:
                out.setdefault(f.name, []).extend(_unpack(buf, pos, stop, f))
                pos = stop
                continue
            else:
                msg = (f"{path}.{f.name}: wire type 2 (length-delimited) for a {kind} field "
                       f"(expected wire type {f.wire_type})")
                raise _data_loss(msg)
            pos = stop
        elif wt == f.wire_type:
            if wt == 0:
                raw, pos = _read_varint(buf, pos, end)
                value = _from_varint(f.kind, raw)
            else:
                fmt, size = _FIXED[f.kind]
                if pos + size > end:
                    raise _Truncated
                value = struct.unpack_from(fmt, buf, pos)[0]
                pos += size
        else:
            msg = (f"{path}.{f.name}: wire type {wt} for a {f.kind} field (expected wire type "
                   f"{f.wire_type})")
            raise _data_loss(msg)
        _store(out, f, value, schema, spec)
    return out


def _store(out: dict, f, value, schema, spec) -> None:
    if f.is_map:
        entry_spec = schema[f.type_name]
        vfield = entry_spec.by_name["value"]
        key = value.get("key", "" if entry_spec.by_name["key"].kind == "string" else 0)
        default = {} if vfield.kind == "message" else ("" if vfield.kind == "string" else 0)
        out.setdefault(f.name, {})[key] = value.get("value", default)
    elif f.repeated:
        out.setdefault(f.name, []).append(value)
    else:
        if f.oneof is not None:         # setting one member of a oneof clears the others
            for other in spec.oneofs[f.oneof]:
                if other != f.name:
                    out.pop(other, None)
        if f.kind == "message" and isinstance(out.get(f.name), dict):
            _merge(out[f.name], value, schema[f.type_name])
        else:
            out[f.name] = value


def _merge(dst: dict, src: dict, spec) -> None:
    """protobuf's MergeFrom for a singular message field seen twice on the wire."""
    schema = protos.schema()
    for name, v in src.items():
        f = spec.by_name.get(name)
        if f is None:
            continue
        if f.is_map:
            dst.setdefault(name, {}).update(v)
        elif f.repeated:
            dst.setdefault(name, []).extend(v)
        elif f.kind == "message" and isinstance(dst.get(name), dict):
            _merge(dst[name], v, schema[f.type_name])
        else:
            _store(dst, f, v, schema, spec)


def decode_message(data, spec="GraphDef", source: str = "<bytes>") -> dict:
    """Decode serialised ``spec`` bytes into a dict message; DataLossError when malformed."""
    if isinstance(spec, str):
        spec = protos.message(spec)
    buf = bytes(data) if not isinstance(data, bytes) else data
    try:
        return _decode(buf, 0, len(buf), spec, 0, spec.name.rpartition(".")[2])
    except _Truncated:
        msg = (f"Can't parse {source} as binary proto: the data ends in the middle of a field "
               f"(truncated or not a {spec.name.rpartition('.')[2]})")
        raise _data_loss(msg) from None
    except errors.DataLossError as e:
        msg = f"Can't parse {source} as binary proto: {e.message}"
        raise _data_loss(msg) from None
    except RecursionError:
        msg = f"Can't parse {source} as binary proto: nesting too deep"
        raise _data_loss(msg) from None


def _varint_bytes(v: int) -> bytes:
    v &= _MASK64
    if v < 0x80:
        return bytes((v,))
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _scalar_bytes(kind: str, v) -> bytes:
    if kind in _FIXED:
        return struct.pack(_FIXED[kind][0], v)
    if kind == "bool":
        return b"\x01" if v else b"\x00"
    if kind == "sint32":
        return _varint_bytes(((v << 1) ^ (v >> 31)) & 0xFFFFFFFF)
    if kind == "sint64":
        return _varint_bytes((v << 1) ^ (v >> 63))
    return _varint_bytes(int(v))


def _encode(msg: dict, spec, out: list) -> None:
    schema = protos.schema()
    for f in spec.fields:
        v = msg.get(f.name)
        if v is None:
            continue
        kind = f.kind
        if kind == "message":
            sub = schema[f.type_name]
            if f.is_map:
                items = [{"key": k, "value": v[k]} for k in sorted(v)]
            else:
                items = v if f.repeated else [v]
            tag = _varint_bytes(f.number << 3 | 2)
            for item in items:
                chunks: list = []
                _encode(item, sub, chunks)
                body = b"".join(chunks)
                out += (tag, _varint_bytes(len(body)), body)
            continue
        if f.repeated:
            if not len(v):
                continue
            if f.packed:
                if kind in _FIXED:
                    with np.errstate(over="ignore"):
                        body = np.asarray(v, _NP_FIXED[kind]).tobytes()
                else:
                    body = b"".join([_scalar_bytes(kind, x) for x in v])
                out += (_varint_bytes(f.number << 3 | 2), _varint_bytes(len(body)), body)
            else:
                tag = _varint_bytes(f.number << 3 | f.wire_type)
                for x in v:
                    out.append(tag)
                    out.append(_value_bytes(kind, x))
            continue
        if f.oneof is None and pbtxt._is_default(f, v):
            continue
        out += (_varint_bytes(f.number << 3 | f.wire_type), _value_bytes(kind, v))


def _value_bytes(kind, v) -> bytes:
    if kind in ("string", "bytes"):
        data = v.encode("utf-8") if isinstance(v, str) else bytes(v)
        return _varint_bytes(len(data)) + data
    return _scalar_bytes(kind, v)


def encode_message(msg: dict, spec="GraphDef") -> bytes:
    """Serialise a dict message (deterministically: map entries sorted by key)."""
    if isinstance(spec, str):
        spec = protos.message(spec)
    out: list = []
    _encode(msg, spec, out)
    return b"".join(out)


# ============================================================================ value classes
_CLASSES: dict[str, type] = {}


def _proto(name: str):
    def register(cls):
        cls._PROTO = f"tensorflow.{name}"
        _CLASSES[cls._PROTO] = cls
        return cls
    return register


def _to_dict(obj) -> dict:
    if isinstance(obj, dict):
        return obj
    spec = protos.schema()[obj._PROTO]
    out = {}
    for f in spec.fields:
        v = getattr(obj, f.name)
        if v is None:
            continue
        if f.kind == "message":
            if f.is_map:
                vfield = protos.schema()[f.type_name].by_name["value"]
                if v:
                    out[f.name] = {k: _to_dict(x) if vfield.kind == "message" else x
                                   for k, x in v.items()}
            elif f.repeated:
                if v:
                    out[f.name] = [_to_dict(x) for x in v]
            else:
                out[f.name] = _to_dict(v)
        elif f.repeated:
            if len(v):
                out[f.name] = list(v)
        else:
            out[f.name] = v
    return out


def _from_dict(type_name: str, d: dict):
    cls = _CLASSES.get(type_name)
    if cls is None:
        return d
    schema = protos.schema()
    spec = schema[type_name]
    kwargs = {}
    for f in spec.fields:
        if f.name not in d:
            continue
        v = d[f.name]
        if f.kind == "message":
            if f.is_map:
                vfield = schema[f.type_name].by_name["value"]
                kwargs[f.name] = {k: _from_dict(vfield.type_name, x)
                                  if vfield.kind == "message" else x for k, x in v.items()}
            elif f.repeated:
                kwargs[f.name] = tuple(_from_dict(f.type_name, x) for x in v)
            else:
                kwargs[f.name] = _from_dict(f.type_name, v)
        elif f.repeated:
            kwargs[f.name] = tuple(v)
        else:
            kwargs[f.name] = v
    if pbtxt.LINE_KEY in d and "source_line" in attrs.fields_dict(cls):
        kwargs["source_line"] = d[pbtxt.LINE_KEY]
    return cls(**kwargs)


class _Message:
    """Shared conversions of the message classes."""

    __slots__ = ()
    _PROTO = ""

    def to_dict(self) -> dict:
        """The message as a plain dict keyed by field name (what pbtxt and the codec use)."""
        return _to_dict(self)

    @classmethod
    def from_dict(cls, d: dict):
        return _from_dict(cls._PROTO, d)

    def SerializeToString(self) -> bytes:  # noqa: N802  (protobuf's name)
        """The binary wire format (deterministic: map entries sorted by key)."""
        return encode_message(self.to_dict(), self._PROTO)

    @classmethod
    def FromString(cls, data: bytes, source: str = "<bytes>"):  # noqa: N802
        """Parse the binary wire format; DataLossError when malformed."""
        return cls.from_dict(decode_message(data, cls._PROTO, source))

    def to_text(self, as_one_line: bool = False) -> str:
        """TF's text format (what protobuf's text_format.MessageToString prints)."""
        return pbtxt.write_text(self.to_dict(), self._PROTO, as_one_line)

    @classmethod
    def from_text(cls, text: str, source: str = "<text>"):
        """Parse the text format; DataLossError with line:column when malformed."""
        return cls.from_dict(pbtxt.parse_text(text, cls._PROTO, source))

    def to_protobuf(self):
        """A real protobuf message of the same content (needs the ``protobuf`` package)."""
        cls = protos.protobuf_classes()[self._PROTO]
        return cls.FromString(self.SerializeToString())

    @classmethod
    def from_protobuf(cls, message):
        return cls.FromString(message.SerializeToString(deterministic=True))

    def __str__(self) -> str:
        return self.to_text()


_frozen = attrs.frozen(slots=True)


@_proto("TensorShapeProto.Dim")
@_frozen
class Dim(_Message):
    size: int = 0
    name: str = ""


@_proto("TensorShapeProto")
@_frozen
class TensorShapeProto(_Message):
    dim: tuple = ()
    unknown_rank: bool = False

    @classmethod
    def from_shape(cls, shape) -> TensorShapeProto:
        shape = TensorShape(shape) if not isinstance(shape, TensorShape) else shape
        if shape.dims is None:
            return cls(unknown_rank=True)
        return cls(dim=tuple(Dim(-1 if d is None else d) for d in shape.dims))

    def to_shape(self) -> TensorShape:
        """The TensorShape; InvalidArgumentError for sizes below -1 or a contradiction."""
        if self.unknown_rank:
            if self.dim:
                msg = "A TensorShapeProto with unknown_rank true must have no dims"
                raise errors.InvalidArgumentError(msg)
            return TensorShape(None)
        sizes = [d.size for d in self.dim]
        for s in sizes:
            if s < -1:
                msg = f"Shape {sizes} has a negative dimension {s} (only -1 means unknown)"
                raise errors.InvalidArgumentError(msg)
        return TensorShape([None if s == -1 else s for s in sizes])


@_proto("VersionDef")
@_frozen
class VersionDef(_Message):
    producer: int = 0
    min_consumer: int = 0
    bad_consumers: tuple = ()


# ---------------------------------------------------------------------------- tensors
_VAL_FIELD = {
    "float16": "half_val", "bfloat16": "half_val", "float32": "float_val",
    "float64": "double_val", "int8": "int_val", "int16": "int_val", "int32": "int_val",
    "uint8": "int_val", "uint16": "int_val", "int64": "int64_val", "bool": "bool_val",
    "complex64": "scomplex_val", "complex128": "dcomplex_val", "string": "string_val",
}
_INT_RANGE = {"int8": (-128, 127), "int16": (-32768, 32767), "int32": (-(2**31), 2**31 - 1),
              "uint8": (0, 255), "uint16": (0, 65535)}
_BY_ENUM = {t.enum: t for t in dtypes.ALL_TYPES}
_TF_ENUM_NAMES = None


def dtype_from_enum(value: int, what: str = "DataType") -> dtypes.DType:
    """Our DType for a DataType number; InvalidArgumentError naming TF's enum otherwise."""
    t = _BY_ENUM.get(value)
    if t is not None:
        return t
    global _TF_ENUM_NAMES
    if _TF_ENUM_NAMES is None:
        _TF_ENUM_NAMES = protos.schema()["tensorflow.DataType"].by_number
    name = _TF_ENUM_NAMES.get(value, "unknown")
    kind = "reference types (TF1 ref variables) are" if value > 100 else "it is"
    msg = (f"{what} {name} ({value}) is not supported by opgraph ({kind} not among its "
           f"dtypes: {', '.join(t.tf_name for t in dtypes.ALL_TYPES)})")
    raise errors.UnimplementedError(msg)


def _max_tensor_bytes() -> int:
    limit = int(os.environ.get("OPGRAPH_MAX_ALLOCATION_BYTES", 0) or 0)
    if not limit:
        try:
            limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            limit = 1 << 40
    return limit


@_proto("TensorProto")
@_frozen
class TensorProto(_Message):
    dtype: int = 0
    tensor_shape: TensorShapeProto | None = None
    version_number: int = 0
    tensor_content: bytes = b""
    float_val: tuple = ()
    double_val: tuple = ()
    int_val: tuple = ()
    string_val: tuple = ()
    scomplex_val: tuple = ()
    int64_val: tuple = ()
    bool_val: tuple = ()
    dcomplex_val: tuple = ()
    half_val: tuple = ()
    uint32_val: tuple = ()
    uint64_val: tuple = ()
    float8_val: bytes = b""

    @classmethod
    def from_numpy(cls, value, splat: bool = True) -> TensorProto:
        """The TensorProto TF would write: strings in string_val, one element (or, with
        ``splat``, all elements bit-identical) as one typed ``*_val`` value with the full
        shape, anything else as little-endian ``tensor_content``."""
        arr = np.asarray(value)
        if arr.dtype.kind in "USO":
            dt = dtypes.DT_STRING
        else:
            dt = dtypes.as_dtype(arr.dtype)
        shape = TensorShapeProto(dim=tuple(Dim(int(d)) for d in arr.shape))
        if dt is dtypes.DT_STRING:
            vals = tuple(x if isinstance(x, bytes) else str(x).encode("utf-8")
                         for x in arr.reshape(-1))
            return cls(dt.enum, shape, string_val=vals)
        if arr.size == 0:
            return cls(dt.enum, shape)
        flat = np.ascontiguousarray(arr).reshape(-1)
        bits = flat.view(f"u{flat.dtype.itemsize}") if flat.dtype.itemsize in (1, 2, 4, 8) \
            else None
        if flat.size == 1 or (splat and bits is not None and bool((bits == bits[0]).all())):
            return cls(dt.enum, shape, **{_VAL_FIELD[dt.name]: _typed_values(flat[:1], dt)})
        raw = np.ascontiguousarray(flat, dtype=flat.dtype.newbyteorder("<")).tobytes()
        return cls(dt.enum, shape, tensor_content=raw)

    def to_numpy(self) -> np.ndarray:
        """The tensor as a read-only numpy array, every size checked before allocating.

        Typed values fewer than the elements repeat the last value (TF's rule; one value is
        a splat constant); none at all means zeros. InvalidArgumentError when the content
        does not match the shape, UnimplementedError for dtypes opgraph lacks,
        ResourceExhaustedError when the tensor is larger than the allocation limit.
        """
        dt = dtype_from_enum(self.dtype, "Tensor dtype")
        shape = (self.tensor_shape or TensorShapeProto()).to_shape()
        if shape.dims is None or not shape.is_fully_defined():
            msg = f"A constant tensor needs a fully defined shape, got {shape}"
            raise errors.InvalidArgumentError(msg)
        dims = shape.dims
        n = 1
        for d in dims:
            n *= d
        np_dtype = dt.as_numpy_dtype
        itemsize = 8 if dt is dtypes.DT_STRING else np_dtype.itemsize
        limit = _max_tensor_bytes()
        if n * itemsize > limit:
            msg = (f"OOM when allocating a constant tensor of {dt.name} with shape {list(dims)} "
                   f"({n} elements, {n * itemsize / 2**30:.3g} GiB): exceeds the allocation "
                   f"limit of {limit / 2**30:.3g} GiB")
            raise errors.ResourceExhaustedError(msg)
        content = self.tensor_content
        if content:
            if dt is dtypes.DT_STRING:
                msg = "A DT_STRING TensorProto cannot use tensor_content (use string_val)"
                raise errors.InvalidArgumentError(msg)
            if len(content) != n * itemsize:
                msg = (f"TensorProto tensor_content has {len(content)} bytes but a {dt.name} "
                       f"tensor of shape {list(dims)} needs {n * itemsize}")
                raise errors.InvalidArgumentError(msg)
            arr = np.frombuffer(content, np_dtype.newbyteorder("<")).astype(np_dtype)
            arr = arr.reshape(dims)
            arr.setflags(write=False)
            return arr
        field = _VAL_FIELD[dt.name]
        vals = getattr(self, field)
        per = 2 if dt.name.startswith("complex") else 1
        if len(vals) % per:
            msg = f"TensorProto {field} has an odd number of values for a complex tensor"
            raise errors.InvalidArgumentError(msg)
        k = len(vals) // per
        others = [f for f in set(_VAL_FIELD.values()) | {"uint32_val", "uint64_val"}
                  if f != field and getattr(self, f)]
        if others:
            msg = (f"A {dt.tf_name} TensorProto holds its values in {field}, but it has "
                   f"{', '.join(sorted(others))} set")
            raise errors.InvalidArgumentError(msg)
        if k > n:
            msg = (f"TensorProto has {k} values in {field} for a tensor of shape {list(dims)} "
                   f"with {n} elements")
            raise errors.InvalidArgumentError(msg)
        if k == 0:
            arr = np.zeros(dims, np_dtype) if dt is not dtypes.DT_STRING else \
                np.full(dims, b"", object)
        else:
            given = _values_array(vals, dt, field)
            if k < n:
                given = np.concatenate([given, np.repeat(given[-1:], n - k)])
            arr = given.reshape(dims)
        arr.setflags(write=False)
        return arr


def _typed_values(flat: np.ndarray, dt: dtypes.DType) -> tuple:
    name = dt.name
    if name in ("float16", "bfloat16"):
        return tuple(int(x) for x in flat.view(np.uint16))
    if name.startswith("complex"):
        out = []
        for x in flat:
            out += [float(x.real), float(x.imag)]
        return tuple(out)
    if name == "bool":
        return tuple(bool(x) for x in flat)
    if dt.is_floating:
        return tuple(float(x) for x in flat)
    return tuple(int(x) for x in flat)


def _values_array(vals, dt: dtypes.DType, field: str) -> np.ndarray:
    name = dt.name
    np_dtype = dt.as_numpy_dtype
    if name == "string":
        out = np.empty(len(vals), object)
        for i, v in enumerate(vals):
            try:
                out[i] = v.decode("utf-8")
            except UnicodeDecodeError:
                out[i] = v
        return out
    if name in ("float16", "bfloat16"):
        bits = np.asarray(vals, np.int64)
        if bits.size and (bits.min() < 0 or bits.max() > 0xFFFF):
            msg = f"TensorProto half_val holds {int(bits.max())}, not a 16-bit pattern"
            raise errors.InvalidArgumentError(msg)
        return bits.astype(np.uint16).view(np_dtype)
    if name.startswith("complex"):
        parts = np.asarray(vals, np.float64).reshape(-1, 2)
        return (parts[:, 0] + 1j * parts[:, 1]).astype(np_dtype)
    if name in _INT_RANGE:
        ints = np.asarray(vals, np.int64)
        lo, hi = _INT_RANGE[name]
        if ints.size and (ints.min() < lo or ints.max() > hi):
            bad = int(ints.min()) if ints.min() < lo else int(ints.max())
            msg = f"TensorProto {field} value {bad} is out of range for {dt.tf_name}"
            raise errors.InvalidArgumentError(msg)
        return ints.astype(np_dtype)
    return np.asarray(vals, np_dtype)


# ---------------------------------------------------------------------------- attrs
@_proto("AttrValue.ListValue")
@_frozen
class ListValue(_Message):
    s: tuple = ()
    i: tuple = ()
    f: tuple = ()
    b: tuple = ()
    type: tuple = ()
    shape: tuple = ()
    tensor: tuple = ()
    func: tuple = ()

    def kinds(self) -> list[str]:
        return [k for k in ("s", "i", "f", "b", "type", "shape", "tensor", "func")
                if getattr(self, k)]


@_proto("NameAttrList")
@_frozen
class NameAttrList(_Message):
    name: str = ""
    attr: dict = attrs.Factory(dict)


_ONEOF = ("list", "s", "i", "f", "b", "type", "shape", "tensor", "placeholder", "func")


@_proto("AttrValue")
@_frozen
class AttrValue(_Message):
    """One attr value: exactly one of the fields is set (``which()`` names it)."""

    list: ListValue | None = None
    s: bytes | None = None
    i: int | None = None
    f: float | None = None
    b: bool | None = None
    type: int | None = None
    shape: TensorShapeProto | None = None
    tensor: TensorProto | None = None
    placeholder: str | None = None
    func: NameAttrList | None = None

    ListValue = ListValue

    def which(self) -> str | None:
        for k in _ONEOF:
            if getattr(self, k) is not None:
                return k
        return None


AttrValue.ListValue = ListValue


@_proto("NodeDef.ExperimentalDebugInfo")
@_frozen
class DebugInfo(_Message):
    original_node_names: tuple = ()
    original_func_names: tuple = ()


@_proto("NodeDef")
@_frozen
class NodeDef(_Message):
    name: str = ""
    op: str = ""
    input: tuple = ()
    device: str = ""
    attr: dict = attrs.Factory(dict)
    experimental_debug_info: DebugInfo | None = None
    #: the line of a .pbtxt where the node started (not part of the message)
    source_line: int | None = attrs.field(default=None, eq=False, repr=False)


@_proto("GraphDef")
@_frozen
class GraphDef(_Message):
    """TF's GraphDef. ``str(gd)`` / ``gd.to_text()`` give the .pbtxt text,
    ``gd.SerializeToString()`` the .pb bytes."""

    node: tuple = ()
    versions: VersionDef | None = None
    version: int = 0
    library: dict | None = None         # a FunctionDefLibrary, as a dict message
    #: where the GraphDef was read from (not part of the message)
    source: str | None = attrs.field(default=None, eq=False, repr=False)

    def node_names(self) -> list[str]:
        return [n.name for n in self.node]

    def find_node(self, name: str) -> NodeDef:
        for n in self.node:
            if n.name == name:
                return n
        msg = f"GraphDef has no node named '{name}'"
        raise errors.NotFoundError(msg)

    @classmethod
    def FromString(cls, data: bytes, source: str = "<bytes>") -> GraphDef:  # noqa: N802
        """Parse .pb bytes; DataLossError when malformed."""
        return attrs.evolve(super().FromString(data, source), source=source)

    @classmethod
    def from_text(cls, text: str, source: str = "<text>") -> GraphDef:
        """Parse .pbtxt text; DataLossError with line:column when malformed."""
        return attrs.evolve(super().from_text(text, source), source=source)

    def write(self, path: str, as_text: bool | None = None) -> None:
        """Write to ``path``: text for .pbtxt/.txt (or ``as_text``), binary otherwise."""
        write_graph_def(self, path, as_text)

    @classmethod
    def read(cls, path: str) -> GraphDef:
        return read_graph_def(path)


# ============================================================================ conversions
def _shape_proto(v) -> TensorShapeProto:
    return TensorShapeProto.from_shape(v)


def attr_value_from_python(value, attr_def=None) -> AttrValue:
    """An AttrValue for a normalised attr value (as ``Operation.attrs`` holds them), typed by
    ``attr_def`` (an op_def.AttrDef) when given, else by the Python type."""
    kind = attr_def.kind if attr_def is not None else None
    is_list = attr_def.is_list if attr_def is not None else isinstance(value, (tuple, list))
    if is_list:
        items = tuple(value)
        if kind is None and items:
            kind = _python_kind(items[0])
        field = {"string": "s", "int": "i", "float": "f", "bool": "b", "type": "type",
                 "shape": "shape", "tensor": "tensor", "func": "func"}.get(kind, "s")
        return AttrValue(list=ListValue(**{field: tuple(_one(kind, x) for x in items)})
                         if items else ListValue())
    kind = kind or _python_kind(value)
    field = {"string": "s", "int": "i", "float": "f", "bool": "b", "type": "type",
             "shape": "shape", "tensor": "tensor", "func": "func"}[kind]
    return AttrValue(**{field: _one(kind, value)})


def _python_kind(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "bool"
    if isinstance(v, (int, np.integer)):
        return "int"
    if isinstance(v, (float, np.floating)):
        return "float"
    if isinstance(v, dtypes.DType):
        return "type"
    if isinstance(v, TensorShape):
        return "shape"
    if isinstance(v, np.ndarray):
        return "tensor"
    return "string"


def _one(kind, v):
    if kind == "string":
        return v if isinstance(v, bytes) else str(v).encode("utf-8", "surrogatepass")
    if kind == "int":
        return int(v)
    if kind == "float":
        return float(v)
    if kind == "bool":
        return bool(v)
    if kind == "type":
        return dtypes.as_dtype(v).enum
    if kind == "shape":
        return _shape_proto(v)
    if kind == "tensor":
        return TensorProto.from_numpy(v)
    if kind == "func":
        return _func_proto(v)
    msg = f"Attr kind {kind!r} cannot be written to a GraphDef by opgraph"
    raise errors.UnimplementedError(msg)


#: NameAttrList attrs carrying a function's signature (opgraph's control flow keeps a
#: function's nodes in the graph itself: the tensors it is fed and the ones it returns)
FUNC_INPUTS, FUNC_OUTPUTS = "_opgraph_inputs", "_opgraph_outputs"


def _func_proto(v) -> NameAttrList:
    attr = {}
    for key, field in ((FUNC_INPUTS, "inputs"), (FUNC_OUTPUTS, "outputs")):
        names = getattr(v, field, None)
        if names is not None:
            attr[key] = AttrValue(list=ListValue(s=tuple(str(n).encode() for n in names)))
    return NameAttrList(name=str(getattr(v, "name", v)), attr=attr)


def _func_value(nal: NameAttrList, prefix: str = ""):
    """A func attr as a FrameFunction (opgraph/functions.py)."""
    from opgraph.functions import FrameFunction  # noqa: PLC0415
    if FUNC_INPUTS not in nal.attr or FUNC_OUTPUTS not in nal.attr:
        msg = (f"Attr values of kind 'func' naming '{nal.name}' need opgraph's function "
               f"signature (TF's function libraries are not supported)")
        raise errors.UnimplementedError(msg)

    def names(key):
        return tuple(_prefixed(x.decode("utf-8"), prefix) for x in nal.attr[key].list.s)

    return FrameFunction(_prefixed(nal.name, prefix), names(FUNC_INPUTS), names(FUNC_OUTPUTS))


def _prefixed(name: str, prefix: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def attr_value_to_python(av: AttrValue, attr_def=None, prefix: str = ""):
    """The Python value of ``av`` (as AttrDef.check accepts it); with ``attr_def`` the kind
    is checked: InvalidArgumentError naming both kinds when they differ. ``prefix`` is
    prepended to the node names a func value refers to."""
    which = av.which()
    if which is None:
        msg = "AttrValue has no value set"
        raise errors.InvalidArgumentError(msg)
    if which == "func" and (attr_def is None or attr_def.kind == "func"):
        return _func_value(av.func, prefix)
    if which == "list" and av.list.func and (attr_def is None or attr_def.kind == "func"):
        return tuple(_func_value(f, prefix) for f in av.list.func)
    if which == "func" or which == "placeholder":
        msg = f"Attr values of kind '{which}' (functions) are not supported by opgraph"
        raise errors.UnimplementedError(msg)
    kinds = {"s": "string", "i": "int", "f": "float", "b": "bool", "type": "type",
             "shape": "shape", "tensor": "tensor", "func": "func"}
    if which == "list":
        lv = av.list
        present = lv.kinds()
        if attr_def is not None and not attr_def.is_list:
            msg = (f"expected a {attr_def.type_str} value but the GraphDef has a list"
                   f"({kinds.get(present[0], present[0]) if present else ''})")
            raise errors.InvalidArgumentError(msg)
        if len(present) > 1:
            msg = f"AttrValue list has values of several kinds: {', '.join(present)}"
            raise errors.InvalidArgumentError(msg)
        if not present:
            return ()
        k = present[0]
        if attr_def is not None and kinds.get(k) != attr_def.kind:
            msg = (f"expected a {attr_def.type_str} value but the GraphDef has a "
                   f"list({kinds.get(k, k)})")
            raise errors.InvalidArgumentError(msg)
        return tuple(_one_to_python(k, x) for x in getattr(lv, k))
    if attr_def is not None:
        if attr_def.is_list or kinds[which] != attr_def.kind:
            msg = (f"expected a {attr_def.type_str} value but the GraphDef has a "
                   f"{kinds[which]}")
            raise errors.InvalidArgumentError(msg)
    return _one_to_python(which, getattr(av, which))


def _one_to_python(k, v):
    if k == "s":
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return v
    if k == "type":
        return dtype_from_enum(v, "Attr type")
    if k == "shape":
        return v.to_shape()
    if k == "tensor":
        return v.to_numpy()
    if k == "func":
        msg = "Attr values of kind 'func' (functions) are not supported by opgraph"
        raise errors.UnimplementedError(msg)
    return v


def graph_to_graph_def(graph, add_shapes: bool = False) -> GraphDef:
    """The GraphDef of ``graph``: every node with all its attrs (defaults included, as TF's
    Python writes them), inputs ``name`` / ``name:k`` then control inputs ``^name``,
    device, ``_kernel`` and ``_class`` (colocation); ``add_shapes`` adds ``_output_shapes``
    as TF's ``as_graph_def(add_shapes=True)`` does."""
    nodes = []
    for op in graph.operations():
        inputs = [o.op.name if o.index == 0 else f"{o.op.name}:{o.index}" for o in op.inputs]
        inputs += [f"^{c.name}" for c in op.control_inputs]
        defs = op.op_def.attrs
        attr = {k: attr_value_from_python(v, defs.get(k)) for k, v in op.attrs.items()}
        extra = (op._meta or {}).get("graph_def_attrs")
        if extra:
            attr.update(extra)
        if op.kernel_label:
            attr["_kernel"] = AttrValue(s=op.kernel_label.encode("utf-8"))
        if op.colocation:
            attr["_class"] = AttrValue(list=ListValue(s=tuple(
                f"loc:@{n}".encode("utf-8") for n in op.colocation)))
        if add_shapes:
            attr["_output_shapes"] = AttrValue(list=ListValue(shape=tuple(
                TensorShapeProto.from_shape(s) for s in op.output_shapes)))
        nodes.append(NodeDef(op.name, op.type, tuple(inputs), op.device, attr))
    return GraphDef(node=tuple(nodes), versions=VersionDef(producer=GRAPH_DEF_VERSION))


# ============================================================================ files
_TEXT_START = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_#")
_TEXT_CONTROL = frozenset(range(0x20)) - frozenset(b"\t\n\r\f\v")


def looks_like_text(data: bytes) -> bool:
    """True when ``data`` is (the start of) a text-format message rather than wire bytes."""
    head = data[:4096]
    if any(b in _TEXT_CONTROL for b in head):
        return False
    stripped = head.lstrip()
    return not stripped or stripped[0] in _TEXT_START


def parse_graph_def(data, source: str = "<bytes>") -> GraphDef:
    """A GraphDef from .pb bytes or .pbtxt text (told apart by content)."""
    if isinstance(data, str):
        return GraphDef.from_text(data, source)
    if looks_like_text(bytes(data[:4096])):
        gd = GraphDef.from_dict(pbtxt.parse_text(bytes(data), "GraphDef", source))
    else:
        return GraphDef.FromString(data, source)
    return attrs.evolve(gd, source=source)


def read_graph_def(path) -> GraphDef:
    """Read a .pb or .pbtxt file (the size is checked before reading)."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as e:
        msg = f"Cannot read GraphDef file '{path}': {e.strerror}"
        raise errors.NotFoundError(msg) from None
    if size > MAX_FILE_BYTES:
        msg = (f"GraphDef file '{path}' has {size} bytes, more than the {MAX_FILE_BYTES} bytes "
               f"a protobuf message can have")
        raise errors.ResourceExhaustedError(msg)
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    return parse_graph_def(data, os.path.basename(path))


def write_graph_def(graph_def: GraphDef, path, as_text: bool | None = None) -> None:
    path = os.fspath(path)
    if as_text is None:
        as_text = path.endswith((".pbtxt", ".txt", ".prototxt"))
    data = graph_def.to_text().encode("utf-8") if as_text else graph_def.SerializeToString()
    with open(path, "wb") as f:
        f.write(data)

