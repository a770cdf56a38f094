"""Op wrappers generated from OpDefs, as TF's cc_op_gen does for the C++ API.

``make_wrapper("Conv2DBackpropInputV2")`` returns a class that is called like the C++
constructor: ``(scope, *inputs, *required_attrs, attrs=None, **keyword_attrs)``. Required
attrs (no default) follow the inputs in OpDef order; optional ones go in the nested
``Attrs`` (CamelCase chaining setters, each returning a NEW Attrs) or as keywords. Class-level
shortcuts (``Conv2DBackpropInputV2.Dilations([...])``) return an Attrs. An instance has
``.operation`` and one member per output (``.output`` for a single output) and can be passed
wherever an input is expected.
"""

from __future__ import annotations

import inspect

from opgraph import errors
from opgraph.graph import Output
from opgraph.op_def import format_attr_value
from opgraph.registry import get_op_def
from opgraph.scope import Scope, user_site

__all__ = ["OpWrapper", "declare", "make_wrapper", "camel_case"]


def camel_case(attr_name: str) -> str:
    """``use_cudnn_on_gpu`` -> ``UseCudnnOnGpu``."""
    return "".join(p[:1].upper() + p[1:] for p in attr_name.split("_"))


class AttrsBase:
    """Optional attrs of one op. Setters return a new Attrs; this one never changes."""

    __slots__ = ("_values",)
    _op_def = None

    def __init__(self, **values):
        defs = self._op_def.attrs
        vals = {k: defs[k].default for k in self._op_def.optional_attrs}
        for k, v in values.items():
            if k not in vals:
                msg = (f"{self._op_def.name}.Attrs has no attr '{k}'; optional attrs: "
                       f"{', '.join(vals) or 'none'}")
                raise errors.InvalidArgumentError(msg, None, self._op_def.name)
            vals[k] = defs[k].check(v)
        object.__setattr__(self, "_values", vals)

    def _with(self, name, value):
        new = object.__new__(type(self))
        vals = dict(self._values)
        try:
            vals[name] = self._op_def.attrs[name].check(value)
        except errors.OpError as e:
            raise e.with_context(f" (in {self._op_def.name}.Attrs().{camel_case(name)})",
                                 None, self._op_def.name, user_site()) from None
        object.__setattr__(new, "_values", vals)
        return new

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        msg = (f"{type(self).__qualname__} is immutable; use the setter, which returns a new "
               f"Attrs: attrs = attrs.{camel_case(name)}(...)")
        raise AttributeError(msg)

    def __eq__(self, other):
        return type(other) is type(self) and other._values == self._values

    __hash__ = None

    def __repr__(self):
        inner = ", ".join(f"{k}={format_attr_value(v)}" for k, v in self._values.items())
        return f"{type(self).__qualname__}({inner})"


class OpWrapper:
    """Base of the generated op classes."""

    _op_def = None
    _single_output = False      # one non-list output: the wrapper has ``.output``
    Attrs = AttrsBase

    def __init__(self, scope: Scope, *args, attrs=None, **kwargs):
        op_def = self._op_def
        n_in = len(op_def.inputs)
        n_req = len(op_def.required_attrs)
        if args and len(args) == n_in + n_req + 1 and isinstance(args[-1], AttrsBase):
            attrs, args = args[-1], args[:-1]
        if not isinstance(scope, Scope):
            msg = (f"{op_def.name}: the first argument must be a Scope, got "
                   f"{type(scope).__name__}")
            raise TypeError(msg)
        if len(args) > n_in + n_req:
            msg = (f"{op_def.name}() takes {n_in} inputs and {n_req} required attrs "
                   f"({self._arg_names()}) but {len(args)} positional arguments were given")
            raise TypeError(msg)
        inputs = list(args[:n_in])
        for arg in op_def.inputs[len(inputs):]:
            if arg.name not in kwargs:
                msg = f"{op_def.name}() missing input '{arg.name}' ({self._arg_names()})"
                raise TypeError(msg)
            inputs.append(kwargs.pop(arg.name))
        values = dict(zip(op_def.required_attrs, args[n_in:])) if attrs is None else {}
        if attrs is not None:
            if isinstance(attrs, AttrsBase):
                if attrs._op_def is not op_def:
                    msg = (f"{op_def.name} got Attrs of {attrs._op_def.name}; use "
                           f"{op_def.name}.Attrs()")
                    raise TypeError(msg)
                values.update(attrs._values)
            else:
                values.update(attrs)
            values.update(zip(op_def.required_attrs, args[n_in:]))
        if kwargs:
            values.update(kwargs)
        self.operation = op = scope.build_op(op_def, inputs, values, user_site())
        self._set_outputs(op)

    def _set_outputs(self, op):
        """``.output`` (one output) or ``.outputs``, plus one member per output arg named as
        cc_op_gen names it (``add.z``, ``split.output[i]`` for a list output)."""
        op_def = self._op_def
        if self._single_output:
            self.output = out = Output(op, 0)
            if op_def.outputs[0].name != "output":
                setattr(self, op_def.outputs[0].name, out)
            return
        if op.failed:
            n = {a.length_key: 0 for a in op_def.outputs if a.is_list}
            outs = tuple(Output(op, i) for i in range(len(op.output_dtypes)))
        else:
            n = {a.length_key: (op.attrs[a.number_attr] if a.number_attr else
                                len(op.attrs[a.type_list_attr]))
                 for a in op_def.outputs if a.is_list}
            outs = op.outputs
        self.outputs = tuple(outs)
        i = 0
        for arg in op_def.outputs:
            if arg.is_list:
                count = n[arg.length_key]
                setattr(self, arg.name, list(outs[i:i + count]))
                i += count
            else:
                setattr(self, arg.name, outs[i] if i < len(outs) else Output(op, i))
                i += 1
        if len(self.outputs) == 1 and not any(a.is_list for a in op_def.outputs):
            self.output = self.outputs[0]

    def __getitem__(self, i):
        """``op[i]``: output i (TF's ``op.output[i]`` / ``op[i]`` for multi-output ops)."""
        outs = getattr(self, "outputs", None)
        return outs[i] if outs is not None else [self.output][i]

    def __len__(self) -> int:
        outs = getattr(self, "outputs", None)
        return len(outs) if outs is not None else 1

    def __iter__(self):
        outs = getattr(self, "outputs", None)
        return iter(outs if outs is not None else [self.output])

    @classmethod
    def _arg_names(cls) -> str:
        return ", ".join([a.name for a in cls._op_def.inputs] + list(cls._op_def.required_attrs))

    def node(self):
        return self.operation

    def __repr__(self) -> str:
        out = getattr(self, "output", None)
        return f"<{type(self).__name__} {out!r}>" if out is not None else \
            f"<{type(self).__name__} {self.operation!r}>"


def _doc(op_def) -> str:
    lines = [f"{op_def.name}(scope, "
             + ", ".join([a.name for a in op_def.inputs] + list(op_def.required_attrs))
             + ", attrs=None)", "", op_def.doc.strip(), "", "Inputs:"]
    lines += [f"  {a.name}: {a.type_str()}" + (f" -- {a.doc}" if a.doc else "")
              for a in op_def.inputs] or ["  (none)"]
    lines.append("Required attrs:")
    lines += [f"  {n}: {op_def.attrs[n].type_str}" + (f" -- {op_def.attrs[n].doc}"
                                                       if op_def.attrs[n].doc else "")
              for n in op_def.required_attrs] or ["  (none)"]
    lines.append(f"Optional attrs (set with {op_def.name}.Attrs().Setter(value) or as "
                 f"keywords):")
    for n in op_def.optional_attrs:
        d = op_def.attrs[n]
        lines.append(f"  {camel_case(n)}({n}: {d.type_str}) -- defaults to "
                     f"{format_attr_value(d.default)}" + (f". {d.doc}" if d.doc else ""))
    if not op_def.optional_attrs:
        lines.append("  (none)")
    types = {n: op_def.attrs[n] for n in op_def.inferred_attrs
             if op_def.attrs[n].kind == "type"}
    if op_def.inferred_attrs:
        lines.append("Inferred from the inputs: " + ", ".join(op_def.inferred_attrs))
    if types:
        lines.append("Allowed dtypes:")
        lines += [f"  {n}: " + (", ".join(t.name for t in d.allowed) if d.allowed else "any")
                  for n, d in types.items()]
    lines.append("Outputs:")
    lines += [f"  {a.name}: {a.type_str()}" + (f" -- {a.doc}" if a.doc else "")
              for a in op_def.outputs] or ["  (none)"]
    single = len(op_def.outputs) == 1 and not op_def.outputs[0].is_list
    lines.append("Returns:")
    if single:
        name = op_def.outputs[0].name
        alias = f" (also .{name})" if name != "output" else ""
        lines.append(f"  an op whose .output{alias} is the result Output; pass it wherever an "
                     f"input is expected, fetch it with ClientSession.Run, .operation is the "
                     f"node.")
    elif op_def.outputs:
        members = ", ".join(f".{a.name}" + ("[i]" if a.is_list else "") for a in op_def.outputs)
        lines.append(f"  an op with members {members} (and .outputs, a list); .operation is "
                     f"the node.")
    else:
        lines.append("  an op with no outputs: use .operation as a Run target or control "
                     "dependency.")
    return "\n".join(lines)


def _setter(name):
    def setter(self, value):
        return self._with(name, value)
    return setter


def _shortcut(attrs_cls, name):
    def shortcut(value):
        return attrs_cls()._with(name, value)
    return shortcut


def make_wrapper(op_type: str, base: type = OpWrapper) -> type:
    """Generate the wrapper class for the registered op ``op_type``."""
    op_def = get_op_def(op_type)
    attrs_ns = {"__slots__": (), "_op_def": op_def,
                "__doc__": f"Optional attrs of {op_def.name}; setters return a new Attrs."}
    for name in op_def.optional_attrs:
        setter = _setter(name)
        setter.__name__ = camel_case(name)
        setter.__doc__ = (f"A copy with {name} = value "
                          f"(default {format_attr_value(op_def.attrs[name].default)}).")
        attrs_ns[camel_case(name)] = setter
    attrs_cls = type("Attrs", (AttrsBase,), attrs_ns)
    attrs_cls.__qualname__ = f"{op_def.name}.Attrs"

    single = len(op_def.outputs) == 1 and not op_def.outputs[0].is_list
    ns = {"_op_def": op_def, "Attrs": attrs_cls, "__doc__": _doc(op_def),
          "_single_output": single,
          "__module__": base.__module__ if base is not OpWrapper else "ops"}
    for name in op_def.optional_attrs:
        shortcut = _shortcut(attrs_cls, name)
        shortcut.__name__ = camel_case(name)
        shortcut.__doc__ = f"Shortcut for {op_def.name}.Attrs().{camel_case(name)}(value)."
        ns[camel_case(name)] = staticmethod(shortcut)
    cls = type(op_def.name, (base,), ns)
    params = [inspect.Parameter("scope", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(a.name, inspect.Parameter.POSITIONAL_OR_KEYWORD)
               for a in op_def.inputs]
    params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
               for n in op_def.required_attrs]
    params.append(inspect.Parameter("attrs", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    default=None))
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY,
                                 default=op_def.attrs[n].default)
               for n in op_def.optional_attrs]
    cls.__signature__ = inspect.Signature(params)
    return cls


def declare(name: str, *, inputs=(), outputs=(), attrs=(), shape_fn, value_fn=None,
            doc: str = "", stateful: bool = False, base: type = OpWrapper) -> type:
    """Register an op and return its generated wrapper class: the one declaration of an op.

        Relu = declare("Relu", inputs=["features: T"], outputs=["activations: T"],
                       attrs=["T: realnumbertype"], shape_fn=unchanged_shape,
                       doc="max(features, 0).")
    """
    from opgraph.op_def import OpDef  # noqa: PLC0415
    from opgraph.registry import register_op  # noqa: PLC0415

    register_op(OpDef(name, inputs=inputs, outputs=outputs, attrs=attrs, shape_fn=shape_fn,
                      value_fn=value_fn, doc=doc, stateful=stateful))
    return make_wrapper(name, base)
