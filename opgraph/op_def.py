"""Op definitions (OpDef) written in TF's REGISTER_OP spec language.

An op is declared once, as data::

    OpDef(
        "Conv2DBackpropInputV2",
        inputs=["input: T", "filter: T", "out_backprop: T"],
        outputs=["output: T"],
        attrs=["T: {half, bfloat16, float, double, int32}",
               "strides: list(int)",
               "padding: {'SAME', 'VALID', 'EXPLICIT'}",
               "dilations: list(int) = [1, 1, 1, 1]"],
        shape_fn=...,
        doc="...")

Arg specs: ``name: T`` (typed by a type attr), ``name: int32`` (fixed type), ``name: N * T``
(a list of N tensors of type T). Attr specs: ``name: KIND [= default] [>= minimum]`` where
KIND is ``int float bool string type shape tensor``, ``list(KIND)``, an allowed set of types
(``{half, float}``, or TF's shorthands ``numbertype``, ``realnumbertype``, ``floatingpoint``)
or of strings (``{'SAME', 'VALID'}``). A minimum bounds an int's value or a list's length. A
trailing ``# text`` documents the arg or attr.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable

import attrs as _attrs
import numpy as np

from opgraph import dtypes, errors
from opgraph.inputs import describe_value
from opgraph.shapes import TensorShape

__all__ = ["ArgDef", "AttrDef", "OpDef", "NO_DEFAULT"]


class _NoDefault:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT = _NoDefault()
_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1
_KINDS = ("int", "float", "bool", "string", "type", "shape", "tensor", "func")
_ARG_RE = re.compile(r"^\s*(\w+)\s*:\s*(?:(\w+)\s*\*\s*)?(\w+)\s*$")
_ATTR_RE = re.compile(r"^\s*(\w+)\s*:\s*(.+?)\s*(?:=\s*(.+?))?\s*(?:>=\s*(-?\d+))?\s*$")


def _split_doc(spec: str) -> tuple[str, str]:
    body, _, doc = spec.partition("#")
    return body, doc.strip()


@_attrs.frozen
class ArgDef:
    """An input or output: ``name: T``, ``name: int32`` or ``name: N * T``.

    Built from a spec string with ``ArgDef.parse(spec)``.
    """

    name: str
    type_attr: str | None = None
    fixed_type: dtypes.DType | None = None
    number_attr: str | None = None
    doc: str = ""
    #: set when ``type_attr`` names a ``list(type)`` attr: a list of mixed-type tensors
    type_list_attr: str | None = None

    @classmethod
    def parse(cls, spec: str) -> ArgDef:
        body, doc = _split_doc(spec)
        m = _ARG_RE.match(body)
        if not m:
            msg = f"Bad arg spec {spec!r}: expected 'name: T', 'name: int32' or 'name: N * T'"
            raise errors.InvalidArgumentError(msg)
        name, number_attr, type_name = m.groups()
        try:
            return cls(name, None, dtypes.as_dtype(type_name), number_attr, doc)
        except TypeError:
            return cls(name, type_name, None, number_attr, doc)

    @property
    def is_list(self) -> bool:
        return self.number_attr is not None or self.type_list_attr is not None

    @property
    def length_key(self) -> str | None:
        """The key under which the builder records this list input's length."""
        return self.number_attr or (self.type_list_attr and "#" + self.type_list_attr)

    def type_str(self) -> str:
        if self.type_list_attr:
            return f"list({self.type_list_attr})"
        t = self.fixed_type.name if self.fixed_type else self.type_attr
        return f"{self.number_attr} * {t}" if self.number_attr else t


@_attrs.frozen
class AttrDef:
    """One attr: kind, list-ness, allowed values, default and minimum.

    Built from a spec string with ``AttrDef.parse(spec)``; ``check(value)`` validates and
    normalises a value for it.
    """

    name: str
    kind: str
    is_list: bool = False
    allowed: tuple | None = None
    default: object = NO_DEFAULT
    minimum: int | None = None
    doc: str = ""

    @classmethod
    def parse(cls, spec: str) -> AttrDef:
        body, doc = _split_doc(spec)
        # TF writes both orders: "list(int) >= 0 = []" and "int = 1 >= 1".
        body = re.sub(r"^(.*?)\s*(>=\s*-?\d+)\s*(=\s*.+)$", r"\1 \3 \2", body)
        m = _ATTR_RE.match(body)
        if not m:
            msg = f"Bad attr spec {spec!r}: expected 'name: kind [= default] [>= min]'"
            raise errors.InvalidArgumentError(msg)
        name, kind, default, minimum = m.groups()
        minimum = None if minimum is None else int(minimum)
        allowed = None
        is_list = kind.startswith("list(") and kind.endswith(")")
        if is_list:
            kind = kind[5:-1].strip()
        if kind.startswith("{"):
            items = [s.strip() for s in kind.strip("{}").split(",") if s.strip()]
            if items and items[0][0] in "'\"":
                kind, allowed = "string", tuple(ast.literal_eval(s) for s in items)
            else:
                allowed = tuple(dtypes.as_dtype(s) for s in items)
                kind = "type"
        elif kind in dtypes.TYPE_SETS:
            kind, allowed = "type", dtypes.TYPE_SETS[kind]
        elif kind not in _KINDS:
            msg = f"Bad attr kind {kind!r} in {spec!r}; expected one of {', '.join(_KINDS)}"
            raise errors.InvalidArgumentError(msg)
        a = cls(name, kind, is_list, allowed, NO_DEFAULT, minimum, doc)
        if default is None:
            return a
        return _attrs.evolve(a, default=a.check(a._parse(default)))

    def _parse(self, text: str):
        text = text.strip()
        if self.kind == "type":
            return dtypes.as_dtype(text)
        if self.kind == "shape":
            return None if text == "?" else [None if d == "?" else d for d in
                                               ast.literal_eval(text.replace("?", "None"))]
        text = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", text))
        return ast.literal_eval(text)

    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT

    @property
    def type_str(self) -> str:
        if self.allowed is not None and self.kind == "type":
            k = "{" + ", ".join(t.name for t in self.allowed) + "}"
        elif self.allowed is not None:
            k = "{" + ", ".join(repr(v) for v in self.allowed) + "}"
        else:
            k = self.kind
        return f"list({k})" if self.is_list else k

    def check(self, value):
        """Validate and normalise a value (lists become tuples). Raises InvalidArgumentError."""
        if self.is_list:
            # Fast path: a list/tuple of plain ints for list(int) (the conv attrs).
            if self.kind == "int" and (type(value) is list or type(value) is tuple) and \
                    all(type(v) is int and _INT64_MIN <= v <= _INT64_MAX for v in value):
                out = tuple(value)
                if self.minimum is not None and len(out) < self.minimum:
                    msg = (f"Length for attr '{self.name}' of {len(out)} must be at least "
                           f"minimum {self.minimum}")
                    raise errors.InvalidArgumentError(msg)
                return out
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
                msg = (f"Attr '{self.name}' expects a list({self.kind}) but got "
                       f"{type(value).__name__} {describe_value(value)}")
                raise errors.InvalidArgumentError(msg)
            out = tuple(self._check_one(v) for v in value)
            if self.minimum is not None and len(out) < self.minimum:
                msg = (f"Length for attr '{self.name}' of {len(out)} must be at least minimum "
                       f"{self.minimum}")
                raise errors.InvalidArgumentError(msg)
            return out
        out = self._check_one(value)
        if self.minimum is not None and out < self.minimum:
            msg = f"Value for attr '{self.name}' of {out} must be at least minimum {self.minimum}"
            raise errors.InvalidArgumentError(msg)
        return out

    def _check_one(self, v):
        kind = self.kind
        if kind == "string" and type(v) is str and self.allowed is not None and \
                v in self.allowed:
            return v        # fast path: an allowed string (padding, data_format)
        if kind == "int":
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                self._wrong(v, "int")
            v = int(v)
            if not _INT64_MIN <= v <= _INT64_MAX:
                msg = (f"Value for attr '{self.name}' of {describe_value(v)} is out of range "
                       f"for an int attr "
                       f"(int64: [{_INT64_MIN}, {_INT64_MAX}])")
                raise errors.InvalidArgumentError(msg)
        elif kind == "float":
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)):
                self._wrong(v, "float")
            v = float(v)
        elif kind == "bool":
            if not isinstance(v, (bool, np.bool_)):
                self._wrong(v, "bool")
            v = bool(v)
        elif kind == "string":
            if isinstance(v, bytes):
                try:
                    v = v.decode()
                except UnicodeDecodeError:
                    self._wrong(v, "string (valid UTF-8)")
            if not isinstance(v, str):
                self._wrong(v, "string")
        elif kind == "type":
            try:
                v = dtypes.as_dtype(v)
            except TypeError:
                self._wrong(v, "type")
        elif kind == "shape":
            try:
                v = TensorShape(v)
            except (errors.InvalidArgumentError, TypeError, ValueError, OverflowError):
                self._wrong(v, "shape")
        elif kind == "tensor":
            if not isinstance(v, np.ndarray):
                self._wrong(v, "tensor")
        if self.allowed is not None and v not in self.allowed:
            allowed = ", ".join(t.name if isinstance(t, dtypes.DType) else f'"{t}"'
                                for t in self.allowed)
            shown = v.name if isinstance(v, dtypes.DType) else f'"{v}"'
            msg = (f"Value for attr '{self.name}' of {shown} is not in the list of allowed "
                   f"values: {allowed}")
            raise errors.InvalidArgumentError(msg)
        return v

    def _wrong(self, v, expected: str):
        want = f"list({expected})" if self.is_list else expected
        msg = (f"Attr '{self.name}' expects a value of type '{want}' but got "
               f"{type(v).__name__} {describe_value(v)}")
        raise errors.InvalidArgumentError(msg)


def _parse_args(specs) -> tuple:
    return tuple(a if isinstance(a, ArgDef) else ArgDef.parse(a) for a in specs)


def _parse_attrs(specs) -> dict:
    if isinstance(specs, dict):
        return dict(specs)
    parsed = (a if isinstance(a, AttrDef) else AttrDef.parse(a) for a in specs)
    return {a.name: a for a in parsed}


@_attrs.frozen(eq=False)
class OpDef:
    """The declaration of one op type: args, attrs, shape function and doc.

    Args:
      name: the op type (CamelCase), also the wrapper's class name and default node name.
      inputs / outputs / attrs: spec strings (see module doc) or parsed ArgDef / AttrDef.
      shape_fn: ``fn(InferenceContext) -> list[TensorShape]``, one shape per output. The
        executor re-runs it on the actual inputs (shapes and values) before the kernel
        whenever what it read at build time was not fully known.
      value_fn: optional ``fn(InferenceContext) -> list[np.ndarray | TensorShape | None]``:
        output values known at build time (Const, Shape of a known shape), readable by later
        shape functions; a TensorShape is a partially known shape value (Shape of
        ``[?, 9, 9, 3]``).
      doc: one paragraph, shown by ``help()`` on the wrapper.
      stateful: the op has side effects or non-deterministic output (never constant-folded).
    """

    name: str
    inputs: tuple = _attrs.field(default=(), converter=_parse_args)
    outputs: tuple = _attrs.field(default=(), converter=_parse_args)
    attrs: dict = _attrs.field(default=(), converter=_parse_attrs)
    shape_fn: Callable = _attrs.field(kw_only=True)
    value_fn: Callable | None = _attrs.field(default=None, kw_only=True)
    doc: str = _attrs.field(default="", kw_only=True)
    stateful: bool = _attrs.field(default=False, kw_only=True)
    #: attrs derived from the inputs' dtypes and list lengths; never passed by users.
    inferred_attrs: tuple = _attrs.field(init=False)
    #: attrs without a default: positional wrapper arguments after the inputs.
    required_attrs: tuple = _attrs.field(init=False)
    #: attrs with a default: set through the wrapper's ``Attrs``.
    optional_attrs: tuple = _attrs.field(init=False)
    #: (name, default or NO_DEFAULT) for every attr in order: the builder's hot loop
    attr_defaults: tuple = _attrs.field(init=False, repr=False)

    def __attrs_post_init__(self):
        def typed(args):
            out = []
            for a in args:
                d = self.attrs.get(a.type_attr) if a.type_attr else None
                if d is not None and d.is_list and d.kind == "type":
                    a = _attrs.evolve(a, type_attr=None, type_list_attr=d.name)
                out.append(a)
            return tuple(out)
        object.__setattr__(self, "inputs", typed(self.inputs))
        object.__setattr__(self, "outputs", typed(self.outputs))
        inferred = set()
        for arg in self.inputs:
            inferred.update(x for x in (arg.type_attr, arg.number_attr, arg.type_list_attr) if x)
        for arg in (*self.inputs, *self.outputs):
            for ref in (arg.type_attr, arg.number_attr, arg.type_list_attr):
                if ref and ref not in self.attrs:
                    msg = f"Op {self.name}: arg '{arg.name}' refers to undeclared attr '{ref}'"
                    raise errors.InvalidArgumentError(msg)
        set_ = object.__setattr__
        set_(self, "inferred_attrs", tuple(a for a in self.attrs if a in inferred))
        set_(self, "required_attrs", tuple(a for a, d in self.attrs.items()
                                           if a not in inferred and not d.has_default))
        set_(self, "optional_attrs", tuple(a for a, d in self.attrs.items()
                                           if a not in inferred and d.has_default))
        set_(self, "attr_defaults", tuple((a, d.default) for a, d in self.attrs.items()))

    def type_attrs(self) -> dict:
        """Type attrs -> allowed DTypes (every DType when the attr is unrestricted)."""
        return {n: (a.allowed if a.allowed is not None else dtypes.ALL_TYPES)
                for n, a in self.attrs.items() if a.kind == "type" and not a.is_list}

    def signature(self) -> str:
        ins = ", ".join(f"{a.name}:{a.type_str()}" for a in self.inputs)
        outs = ", ".join(f"{a.name}:{a.type_str()}" for a in self.outputs)
        return f"{ins} -> {outs}"

    def summary(self) -> str:
        """TF's ``Op<name=...; signature=...; attr=...>`` one-liner, used in error messages."""
        parts = [f"name={self.name}", f"signature={self.signature()}"]
        for a in self.attrs.values():
            s = f"attr={a.name}:{a.type_str}"
            if a.has_default:
                s += f",default={format_attr_value(a.default)}"
            parts.append(s)
        return "Op<" + "; ".join(parts) + ">"

    def __repr__(self) -> str:
        return f"OpDef({self.name}: {self.signature()})"


def format_attr_value(v) -> str:
    """An attr value as TF prints it in node descriptions."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, dtypes.DType):
        return v.tf_name
    if isinstance(v, tuple):
        return "[" + ", ".join(format_attr_value(x) for x in v) + "]"
    if isinstance(v, np.ndarray):
        return f"Tensor<type: {dtypes.as_dtype(v.dtype).name} shape: {list(v.shape)}>"
    if isinstance(v, TensorShape):
        return v.compact()
    return str(v)
