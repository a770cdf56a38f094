"""Scope: where ops are built — naming, sub-scopes, control deps, device, error status.

    >>> root = Scope.NewRootScope()
    >>> x = ops.Placeholder(root.WithOpName("x"), DT_FLOAT)
    >>> tower = root.NewSubScope("tower")             # ops in it are named "tower/..."

Scopes are cheap immutable values: every ``With*`` method returns a new Scope sharing the
root's graph and status. Naming follows TF: a default name is the op type, uniquified per
name-scope level (``Conv2D``, ``Conv2D_1``); sub-scope prefixes join with "/"; a name given
by ``WithOpName`` is used exactly and a second node of that name is an error.

Error model: a build error (bad attr, dtype or shape) is recorded in the shared status and
the wrapper gets a *failed* operation; ops consuming its outputs are skipped quietly while
independent ops are still checked, so one pass reports every independent error
(``status().errors``). ``ExitOnError()`` raises at the failing op instead.
"""

from __future__ import annotations

import os
import re
import sys

import numpy as np

from opgraph import errors
from opgraph.device_spec import parse_device
from opgraph.graph import Graph, Operation, Output
from opgraph.inputs import Input, describe_value, to_ndarray
from opgraph.op_def import NO_DEFAULT
from opgraph.registry import get_op_def
from opgraph.shape_inference import InferenceContext
from opgraph.shapes import TensorShape

__all__ = ["Scope"]

_NAME_RE = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\-/]*")     # TF's rule, over the whole name
_PKG_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_INTERNAL_DIRS = tuple(os.path.join(_PKG_ROOT, p) + os.sep for p in ("opgraph", "ops", "runtime"))
_UNKNOWN = TensorShape(None)
#: the most outputs one node may have (a list output's length comes from an attr such as
#: Split's num_split: 2**31 would otherwise exhaust memory while the node is built)
MAX_OUTPUTS = 1 << 20


def user_site(depth: int = 2) -> str:
    """file:line of the innermost caller outside the opgraph/ops/runtime packages."""
    f = sys._getframe(depth)
    while f is not None and f.f_code.co_filename.startswith(_INTERNAL_DIRS):
        f = f.f_back
    return "<unknown>" if f is None else f"{f.f_code.co_filename}:{f.f_lineno}"


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or "//" in name or \
            name.endswith("/"):
        msg = (f"Invalid {what} {describe_value(name)}: names must match "
               f"[A-Za-z0-9.][A-Za-z0-9_./-]* (no spaces, no empty '/' parts)")
        raise errors.InvalidArgumentError(msg)
    return name


class _Root:
    """State shared by every scope derived from one root."""

    __slots__ = ("graph", "errors")

    def __init__(self):
        self.graph = Graph()
        self.errors: list[errors.OpError] = []


class Scope:
    """A graph-building context. Create with ``Scope.NewRootScope()``."""

    __slots__ = ("_root", "_names", "_prefix", "_op_name", "_control_deps", "_device",
                 "_kernel_label", "_colocation", "_exit_on_error")

    def __init__(self, _root=None, _names=None, _prefix=""):
        self._root = _root or _Root()
        self._names = {} if _names is None else _names   # this level's name map
        self._prefix = _prefix
        self._op_name = None
        self._control_deps = ()
        self._device = ""
        self._kernel_label = ""
        self._colocation = ()
        self._exit_on_error = False

    # ---- construction -----------------------------------------------------------------
    @classmethod
    def NewRootScope(cls) -> Scope:  # noqa: N802  (TF's C++ name)
        """A scope on a new, empty graph with an OK status."""
        return cls()

    def _copy(self, **changes) -> Scope:
        s = Scope.__new__(Scope)
        for k in Scope.__slots__:
            object.__setattr__(s, k, changes.get(k, getattr(self, k)))
        return s

    def WithOpName(self, *fragments) -> Scope:  # noqa: N802
        """A scope whose next op is named exactly ``"".join(fragments)`` (within the prefix)."""
        name = "".join(str(f) for f in fragments)
        return self._copy(_op_name=_check_name(name, "op name"))

    def NewSubScope(self, name: str) -> Scope:  # noqa: N802
        """A child scope: ops in it are named ``<prefix>/<name>/...`` (``name`` uniquified)."""
        if not name:
            return self._copy(_op_name=None)
        _check_name(name, "sub-scope name")
        with self._root.graph.lock:
            unique = self._unique(name)
        prefix = f"{self._prefix}/{unique}" if self._prefix else unique
        return self._copy(_names={}, _prefix=prefix, _op_name=None)

    def WithControlDependencies(self, ops) -> Scope:  # noqa: N802
        """Ops built in the new scope run after ``ops`` (Operations, Outputs or wrappers)."""
        if not isinstance(ops, (list, tuple)):
            ops = [ops]
        deps = list(self._control_deps)
        for o in ops:
            op = _as_operation(o)
            if op.graph is not self._root.graph:
                msg = (f"Control dependency '{op.name}' is from another graph; an op can only "
                       f"depend on ops of its own scope's graph")
                raise errors.InvalidArgumentError(msg)
            if op not in deps:
                deps.append(op)
        return self._copy(_control_deps=tuple(deps))

    def WithNoControlDependencies(self) -> Scope:  # noqa: N802
        return self._copy(_control_deps=())

    def WithDevice(self, device: str) -> Scope:  # noqa: N802
        """Pin ops to ``device`` ("/device:CPU:0", "/device:GPU:0", "/job:.../device:CPU:0")."""
        return self._copy(_device=parse_device(device).to_string())

    def ColocateWith(self, op) -> Scope:  # noqa: N802
        """Place new ops on the same device as ``op``."""
        target = _as_operation(op)
        if target.graph is not self._root.graph and not target.failed:
            msg = (f"Cannot colocate with '{target.name}': it is from another graph; ops can "
                   f"only be colocated with ops of their own scope's graph")
            raise errors.InvalidArgumentError(msg)
        names = target.colocation or (target.name,)
        return self._copy(_colocation=tuple(dict.fromkeys((*self._colocation, *names))))

    def ClearColocation(self) -> Scope:  # noqa: N802
        return self._copy(_colocation=())

    def WithKernelLabel(self, label: str) -> Scope:  # noqa: N802
        """Ops built in the new scope use only kernels registered with ``label``."""
        if not isinstance(label, str):
            msg = f"Kernel label must be a string, but got {type(label).__name__}"
            raise errors.InvalidArgumentError(msg)
        return self._copy(_kernel_label=label)

    def ExitOnError(self) -> Scope:  # noqa: N802
        """A scope that raises the OpError at the failing op instead of recording it."""
        return self._copy(_exit_on_error=True)

    # ---- state --------------------------------------------------------------------------
    def ok(self) -> bool:
        return not self._root.errors

    def status(self) -> errors.Status:
        """Every error recorded so far on this root (first one is ``code``/``message``)."""
        return errors.Status(self._root.errors)

    def UpdateStatus(self, error: errors.OpError) -> None:  # noqa: N802
        """Record ``error`` (raise it instead when this scope exits on error)."""
        if not isinstance(error, errors.OpError):
            msg = (f"UpdateStatus expects an OpError (e.g. errors.InvalidArgumentError(...)), "
                   f"got {type(error).__name__} {describe_value(error)}")
            raise TypeError(msg)
        self._root.errors.append(error)
        if self._exit_on_error:
            raise error

    def graph(self) -> Graph:
        return self._root.graph

    def control_deps(self) -> tuple[Operation, ...]:
        return self._control_deps

    def ToGraphDef(self, add_shapes: bool = False):  # noqa: N802
        """The graph as a GraphDef (opgraph.graphdef): ``str()`` / ``.to_text()`` give TF's
        text format, ``.SerializeToString()`` the .pb bytes; ``add_shapes`` adds
        ``_output_shapes``. Raises the recorded error if not ok()."""
        from opgraph.graphdef import graph_to_graph_def  # noqa: PLC0415

        self.status().raise_if_error()
        return graph_to_graph_def(self._root.graph, add_shapes=add_shapes)

    def __repr__(self) -> str:
        return f"<Scope prefix='{self._prefix}' ok={self.ok()}>"

    # ---- naming -------------------------------------------------------------------------
    def _unique(self, base: str) -> str:
        names = self._names
        graph = self._root.graph
        full = f"{self._prefix}/" if self._prefix else ""
        if base not in names and not graph.has_name(full + base):
            names[base] = 0
            return base
        n = names.get(base, 0)
        while True:
            n += 1
            cand = f"{base}_{n}"
            if cand not in names and not graph.has_name(full + cand):
                break
        names[base] = n
        names[cand] = 0
        return cand

    def GetUniqueNameForOp(self, default_name: str) -> str:  # noqa: N802
        """The full node name the next op gets (reserving it). An explicit name already
        used is an AlreadyExistsError."""
        with self._root.graph.lock:
            return self._reserve_name(default_name)

    def _reserve_name(self, default_name: str) -> str:
        if self._op_name is None:
            unique = self._unique(default_name)
        else:
            unique = self._op_name
            full = f"{self._prefix}/{unique}" if self._prefix else unique
            if unique in self._names or self._root.graph.has_name(full):
                msg = (f"Duplicate node name '{full}': WithOpName names are used as given and "
                       f"must be unique")
                raise errors.AlreadyExistsError(msg)
            self._names[unique] = 0
        return self._full_name(unique)

    def _full_name(self, name: str) -> str:
        return f"{self._prefix}/{name}" if self._prefix else name

    # ---- building -----------------------------------------------------------------------
    def build_op(self, op_type, inputs, attrs, site=None) -> Operation:
        """Validate and add one node; the op wrappers' single entry point.

        ``inputs`` follows the OpDef's input args (a list for ``N * T`` args); ``attrs`` maps
        attr names to values (defaults filled here). Returns the Operation, or a failed one
        after recording the error (raising it under ExitOnError).
        """
        op_def = get_op_def(op_type) if isinstance(op_type, str) else op_type
        site = site or user_site()
        # The graph's lock covers the whole build: the name is reserved and the node added
        # atomically, so scopes of one graph can build from several threads.
        with self._root.graph.lock:
            return self._build_locked(op_def, inputs, attrs, site)

    def _build_locked(self, op_def, inputs, attrs, site) -> Operation:
        # 1. Inputs (implicit constants are created first, as TF does).
        flat, list_lengths, poisoned, err = self._convert_inputs(op_def, inputs, site)
        if self._control_deps and any(c.failed for c in self._control_deps):
            poisoned = True     # a failed op is not in the graph: skip quietly, as for inputs
        if err is None and not poisoned:
            try:
                name = self.GetUniqueNameForOp(op_def.name)
            except errors.OpError as e:
                name = self._full_name(self._op_name or op_def.name)
                err = e.with_context(f" (op: '{op_def.name}', created at {site})", name,
                                     op_def.name, site)
        else:
            name = self._full_name(self._op_name or op_def.name)
            if err is not None and err.op_name is None:     # name the node and its site
                err = err.with_context(f" for node '{name}' (op: '{op_def.name}') created at "
                                       f"{site}.", name, op_def.name, site)
        if err is not None or poisoned:
            return self._failed(op_def, name, attrs, site, err)
        try:
            op = self._make_operation(op_def, name, flat, list_lengths, attrs, site)
        except Exception as e:  # noqa: BLE001  (a non-OpError is a bug: reported, not raised)
            if not isinstance(e, errors.OpError):
                e = _foreign_error(e, f"building {op_def.name}")
            shapes = ", ".join(o.shape.compact() for o in flat)
            ctx = (f" for node '{name}' (op: '{op_def.name}') created at {site}"
                   + (f" with input shapes: {shapes}" if flat else "") + ".")
            return self._failed(op_def, name, attrs, site, e.with_context(ctx, name,
                                                                          op_def.name, site))
        self._root.graph.add_operation(op)
        return op

    def _failed(self, op_def, name, attrs, site, err) -> Operation:
        n = len(op_def.outputs)
        op = Operation(name, op_def, (), dict(attrs), (None,) * n, (_UNKNOWN,) * n,
                       graph=self._root.graph, site=site, failed=True)
        if err is not None:
            self.UpdateStatus(err)
        return op

    def _convert_inputs(self, op_def, inputs, site):
        """Flatten ``inputs`` to Outputs. Returns (flat, list lengths, poisoned, error)."""
        if len(inputs) != len(op_def.inputs):
            msg = (f"{op_def.name} takes {len(op_def.inputs)} inputs "
                   f"({', '.join(a.name for a in op_def.inputs)}) but got {len(inputs)}")
            return [], {}, False, errors.InvalidArgumentError(msg, None, op_def.name, site)
        flat, lengths, poisoned = [], {}, False
        graph = self._root.graph
        for arg, value in zip(op_def.inputs, inputs):
            if arg.is_list:     # a list input (N * T, or list(type))
                if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") or \
                        hasattr(value, "operation"):
                    msg = (f"Input '{arg.name}' of {op_def.name} expects a list of tensors "
                           f"({arg.type_str()}) but got {type(value).__name__}")
                    return [], {}, False, errors.InvalidArgumentError(msg, None, op_def.name,
                                                                      site)
                items = list(value)
                lengths[arg.length_key] = len(items)
            else:
                if value.__class__ is not Output:
                    wrapped = getattr(value, "output", None)    # a single-output wrapper
                    if wrapped.__class__ is Output:
                        value = wrapped
                if value.__class__ is Output:       # fast path: nothing to convert
                    op = value.op
                    if op.failed:
                        poisoned = True
                    elif op.graph is not graph:
                        msg = (f"Input '{arg.name}' of {op_def.name} is '{value.name}' from "
                               f"another graph; an op can only consume tensors of its own "
                               f"scope's graph")
                        return [], {}, False, errors.InvalidArgumentError(msg, None,
                                                                          op_def.name, site)
                    flat.append(value)
                    continue
                items = [value]
            for item in items:
                out = self._as_output(item, op_def, arg, site)
                if isinstance(out, errors.OpError):
                    return [], {}, False, out
                if out.op.failed:
                    poisoned = True
                elif out.op.graph is not graph:
                    msg = (f"Input '{arg.name}' of {op_def.name} is '{out.name}' from another "
                           f"graph; an op can only consume tensors of its own scope's graph")
                    return [], {}, False, errors.InvalidArgumentError(msg, None, op_def.name,
                                                                      site)
                flat.append(out)
        return flat, lengths, poisoned, None

    def _as_output(self, value, op_def, arg, site):
        if isinstance(value, Output):
            return value
        op_out = getattr(value, "output", None)
        if isinstance(op_out, Output):
            return op_out
        if isinstance(value, Operation):
            if value.num_outputs == 1:
                return Output(value, 0)
            msg = (f"Input '{arg.name}' of {op_def.name} got Operation '{value.name}' with "
                   f"{value.num_outputs} outputs; pass one of its Outputs")
            return errors.InvalidArgumentError(msg, None, op_def.name, site)
        if hasattr(value, "operation"):          # multi-output wrapper
            msg = (f"Input '{arg.name}' of {op_def.name} got a {type(value).__name__} with "
                   f"several outputs; pass one of them")
            return errors.InvalidArgumentError(msg, None, op_def.name, site)
        dtype = value.dtype if isinstance(value, Input) else None
        raw = value.value if isinstance(value, Input) else value
        if isinstance(raw, Output) or hasattr(raw, "operation"):
            return self._as_output(raw, op_def, arg, site)
        try:
            array = to_ndarray(raw, dtype)
        except errors.OpError as e:
            return e.with_context(f" (input '{arg.name}')", None, op_def.name, site)
        except TypeError as e:                  # an unknown dtype in Input(value, dtype)
            return errors.InvalidArgumentError(f"{e} (input '{arg.name}')", None,
                                               op_def.name, site)
        if isinstance(raw, np.ndarray) and np.may_share_memory(array, raw):
            array = array.copy()                # never alias the caller's array
        array.setflags(write=False)
        const_scope = self.NewSubScope("Const")
        if const_scope._kernel_label:       # a label must not make the Const unplaceable
            const_scope = const_scope._copy(_kernel_label="")
        const = const_scope.build_op("Const", [], {"value": array, "dtype": array.dtype},
                                     site)
        return Output(const, 0)

    def _make_operation(self, op_def, name, flat, list_lengths, user_attrs, site):
        # Hot path of graph building: plain loops over precomputed OpDef data, no
        # per-input property calls (see benchmarks/build_graph.py).
        attr_defs = op_def.attrs
        inferred = op_def.inferred_attrs
        given = {}
        for k, v in user_attrs.items():
            d = attr_defs.get(k)
            if d is None or k in inferred:
                settable = ", ".join((*op_def.required_attrs, *op_def.optional_attrs))
                why = "is inferred from the inputs" if d else "does not exist"
                msg = f"Attr '{k}' {why}; {op_def.name} takes attrs: {settable or 'none'}"
                raise errors.InvalidArgumentError(msg)
            given[k] = d.check(v)
        # Attrs inferred from the inputs: list lengths and type variables.
        for k, n in list_lengths.items():
            if k[0] != "#":                 # "#T": the length of a list(type) input
                given[k] = attr_defs[k].check(n)
        in_shapes, in_dtypes, in_values = [], [], []
        sources = {}
        i = 0
        for arg in op_def.inputs:
            count = 1 if not arg.is_list else list_lengths[arg.length_key]
            fixed, type_attr = arg.fixed_type, arg.type_attr
            if arg.type_list_attr is not None:    # list(type): each input its own dtype
                d = attr_defs[arg.type_list_attr]
                types = []
                for j in range(i, i + count):
                    out = flat[j]
                    dt = out.op.output_dtypes[out.index]
                    if d.allowed is not None and dt not in d.allowed:
                        allowed = ", ".join(t.name for t in d.allowed)
                        msg = (f"Value passed to parameter '{arg.name}' has DataType {dt} not "
                               f"in list of allowed values: {allowed}")
                        raise errors.InvalidArgumentError(msg)
                    types.append(dt)
                    in_dtypes.append(dt)
                    in_shapes.append(out.op.output_shapes[out.index])
                    vals = out.op.output_values
                    in_values.append(vals[out.index] if vals else None)
                given[arg.type_list_attr] = d.check(tuple(types))
                i += count
                continue
            for j in range(i, i + count):
                out = flat[j]
                src, idx = out.op, out.index
                dt = src.output_dtypes[idx]
                in_dtypes.append(dt)
                in_shapes.append(src.output_shapes[idx])
                vals = src.output_values
                in_values.append(vals[idx] if vals else None)
                if fixed is not None:
                    if dt is not fixed:
                        msg = (f"Input '{arg.name}' of '{op_def.name}' Op has type {dt} that "
                               f"does not match expected type of {fixed}")
                        raise errors.InvalidArgumentError(msg)
                elif type_attr in sources:
                    if given[type_attr] is not dt:
                        msg = (f"Inconsistent values for attr '{type_attr}': "
                               f"{given[type_attr]} (from input '{sources[type_attr]}')"
                               f" vs. {dt} (from input '{arg.name}')")
                        raise errors.InvalidArgumentError(msg)
                else:
                    d = attr_defs[type_attr]
                    if d.allowed is not None and dt not in d.allowed:
                        allowed = ", ".join(t.name for t in d.allowed)
                        msg = (f"Value passed to parameter '{arg.name}' has DataType {dt} not "
                               f"in list of allowed values: {allowed}")
                        raise errors.InvalidArgumentError(msg)
                    given[type_attr] = dt
                    sources[type_attr] = arg.name
            i += count
        final = {}                                      # every attr, in OpDef order
        for k, default in op_def.attr_defaults:
            v = given.get(k, default)
            if v is NO_DEFAULT:
                if k in inferred:       # an empty list input leaves T undetermined
                    msg = f"Cannot infer attr '{k}' from an empty list input"
                    raise errors.InvalidArgumentError(msg)
                msg = f"Missing required attr '{k}' ({attr_defs[k].type_str})"
                raise errors.InvalidArgumentError(msg)
            final[k] = v
        out_dtypes = []
        for arg in op_def.outputs:
            if arg.type_list_attr is not None:
                out_dtypes.extend(final[arg.type_list_attr])
                continue
            dt = arg.fixed_type or final[arg.type_attr]
            if arg.number_attr is None:
                out_dtypes.append(dt)
            else:
                n = final[arg.number_attr]
                if not 0 <= n <= MAX_OUTPUTS - len(out_dtypes):
                    msg = (f"Attr '{arg.number_attr}' = {n} asks for {n} outputs of "
                           f"'{arg.name}'; a node has between 0 and {MAX_OUTPUTS} outputs")
                    raise errors.InvalidArgumentError(msg)
                out_dtypes.extend([dt] * n)
        ctx = InferenceContext(op_def, final, in_shapes, in_dtypes, in_values)
        shapes = op_def.shape_fn(ctx)
        if len(shapes) != len(out_dtypes):
            msg = f"Shape function returned {len(shapes)} shapes for {len(out_dtypes)} outputs"
            raise errors.InternalError(msg)
        shapes = tuple(s if s.__class__ is TensorShape else TensorShape(s) for s in shapes)
        complete = ctx.complete
        if complete:
            for s in in_shapes:
                if not s.is_fully_defined():
                    complete = False
                    break
        values_read = ctx.values_read
        values = op_def.value_fn(ctx) if op_def.value_fn is not None else None
        op = Operation(name, op_def, tuple(flat), final, tuple(out_dtypes), shapes,
                       graph=self._root.graph, control_inputs=self._control_deps,
                       device=self._device, kernel_label=self._kernel_label,
                       colocation=self._colocation, site=site, output_values=values)
        op.shape_complete = complete
        op.values_read = values_read
        return op



def _foreign_error(e: Exception, doing: str) -> errors.OpError:
    """A non-OpError raised while ``doing`` something, as the OpError to record: memory
    exhaustion is ResourceExhausted; anything else is an opgraph bug (InternalError)."""
    if isinstance(e, MemoryError):
        err = errors.ResourceExhaustedError(f"Out of memory while {doing}")
    else:
        err = errors.InternalError(f"{type(e).__name__} while {doing} (a bug in opgraph or the "
                                   f"op's shape function): {describe_value(str(e))}")
    err.__cause__ = e
    return err


def _as_operation(value) -> Operation:
    if isinstance(value, Operation):
        return value
    if isinstance(value, Output):
        return value.op
    op = getattr(value, "operation", None)
    if isinstance(op, Operation):
        return op
    msg = f"Expected an Operation, Output or op wrapper, but got {type(value).__name__}"
    raise errors.InvalidArgumentError(msg)
