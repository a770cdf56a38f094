"""Placement and host<->device copies, as TF's placer and its copy insertion.

Placement of one node (``Placer.place``), in order:

1. ``ColocateWith``: an unpinned node goes where its colocation target went;
2. the requested device (``WithDevice``) narrows the candidates; a missing one is an error
   naming what is missing (CuPy / a CUDA device), or with
   ``SessionOptions(allow_soft_placement=True)`` every device is a candidate (TF's rule);
3. constant-foldable nodes (Const and pure ops of constants only) and shape-only ops
   (Shape, ShapeN, Rank, Size) prefer the host: folded values stay on the host;
4. otherwise the GPU when it has a kernel for the node (a registered GPU twin that does not
   decline, see ``runtime/kernels/gpu``), else the CPU.

Each decision is recorded (``Placer.records``: requested, assigned, why).

Copies (``Transfers``): every tensor has a memory space -- the host for CPU nodes and for
host-memory dtypes (int32 ...) of GPU nodes, else the producing GPU. When a consumer expects
another space, one copy node (``_HostToDevice`` / ``_DeviceToHost`` / ``_DeviceToDevice``) is
inserted per (tensor, destination space), shared by every consumer there; shape-only ops
read any space without a copy. Fetched device arrays are copied to the host after the Run
(``fetch_to_host``) unless the run asks to keep them on the device.

Hook used by the session/executor (see ``ClientSession.placement`` and ``compile_plan``):

* ``Placer(devices, options).place(node, placement_of) -> (device_name, kernel)``;
* ``Transfers(placement_of).input_var(output, var_name, consumer, index, consumer_device)``
  -> ``(var_name, CopyStep | None)``: the caller appends the CopyStep (a node-like ``node``,
  ``device``, ``call``, ``args``, ``outs``) before the consumer, or computes it at once when
  its source is a constant;
* ``fetch_to_host(results)`` on Run's results.
"""

from __future__ import annotations

import itertools

import attrs

from opgraph import errors
from runtime import devices
from runtime.kernel_registry import find_kernel
from runtime.kernels.gpu import SHAPE_ONLY_OPS, KernelDeclined, host_memory

__all__ = ["SessionOptions", "Placer", "PlacementRecord", "Transfers", "CopyNode",
           "fetch_to_host", "memory_space"]

HOST = devices.HOST


@attrs.frozen
class SessionOptions:
    """TF's SessionOptions: ``target`` ("" = in-process, the only kind), ``config`` (other
    ConfigProto fields, accepted for compatibility and unused) and the ConfigProto fields
    opgraph honours, by the same names."""

    #: the session's target; only "" (in-process) is supported
    target: str = attrs.field(default="", validator=attrs.validators.instance_of(str))
    #: further ConfigProto fields (e.g. {"intra_op_parallelism_threads": 4}), not used
    config: dict = attrs.field(factory=dict, validator=attrs.validators.instance_of(dict))

    #: place a node on an available device when its requested one is missing or has no
    #: kernel for it, instead of failing
    allow_soft_placement: bool = attrs.field(default=False,
                                             validator=attrs.validators.instance_of(bool))
    #: print each placement decision when a node is placed
    log_device_placement: bool = attrs.field(default=False,
                                             validator=attrs.validators.instance_of(bool))


@attrs.frozen
class PlacementRecord:
    """Where one node went: ``requested`` ("" when unpinned), ``device``, ``reason``."""

    node: str
    requested: str
    device: str
    reason: str


class Placer:
    """Places nodes on ``devices`` under ``options`` (see the module doc)."""

    def __init__(self, devices_, options: SessionOptions | None = None):
        self.devices = tuple(devices_)
        self.options = options or SessionOptions()
        self.records: dict[str, PlacementRecord] = {}
        self._constant: dict[str, bool] = {}

    def place(self, node, placement_of):
        """(device name, kernel) for ``node``; ``placement_of(op)`` places other nodes."""
        soft = self.options.allow_soft_placement
        reason = ""
        candidates = None
        if node.colocation and not node.device and node.colocation[0] != node.name:
            target = node.graph.get_operation(node.colocation[0])
            where = placement_of(target)[0]
            candidates = [d for d in self.devices if d.name == where]
            reason = f"colocated with '{target.name}'"
        if candidates is None:
            candidates = devices.resolve_requested(node, self.devices, soft=soft)
            if node.device and not _matches(node.device, candidates[0]):
                reason = f"soft-placed: '{node.device}' does not exist"
            if self._prefers_host(node):
                candidates = sorted(candidates, key=lambda d: not d.is_host)
                reason = reason or ("shape-only op" if node.type in SHAPE_ONLY_OPS
                                    else "constant-foldable")
        if soft:
            candidates = [*candidates, *(d for d in self._default_order()
                                         if d not in candidates)]
        device, kernel, tried = self._first_with_kernel(node, candidates)
        if tried and device.name != tried[0].name:
            reason = (f"{reason}; " if reason else "") + \
                f"no {tried[0].device_type} kernel, placed on {device.device_type}"
        record = PlacementRecord(node.name, node.device, device.name, reason or "default")
        self.records[node.name] = record
        if self.options.log_device_placement:
            print(f"{node.name}: ({node.type}): {device.name}"          # noqa: T201
                  + (f" [{record.reason}]" if reason else ""))
        return device.name, kernel

    def _default_order(self):
        return sorted(self.devices, key=lambda d: d.device_type != "GPU")

    def _first_with_kernel(self, node, candidates):
        miss, tried = None, []
        for dev in candidates:
            try:
                kdef = find_kernel(node, dev.device_type)
                kernel = kdef.kernel_class(node)
            except KernelDeclined as e:
                miss = miss or e
                tried.append(dev)
                continue
            except errors.NotFoundError as e:
                miss = miss or e
                tried.append(dev)
                continue
            except errors.OpError as e:
                ctx = (f" (kernel for node '{node.name}' (op: '{node.type}') created at "
                       f"{node.site})")
                raise e.with_context(ctx, node.name, node.type, node.site) from None
            return dev, kernel, tried
        if node.device and tried and tried[0].device_type == "GPU" and \
                isinstance(miss, (KernelDeclined, errors.NotFoundError)):
            msg = (f"Could not satisfy explicit device specification '{node.device}' for "
                   f"node '{node.name}' (op: '{node.type}', created at {node.site}) because "
                   f"no supported kernel for GPU devices is available ({miss.message}). Set "
                   f"SessionOptions(allow_soft_placement=True) to run it on the CPU.")
            raise errors.InvalidArgumentError(msg, node.name, node.type, node.site)
        raise miss

    def _prefers_host(self, node) -> bool:
        return node.type in SHAPE_ONLY_OPS or self._is_constant(node)

    def _is_constant(self, node) -> bool:
        """Const, or a pure op with only constant inputs (what the executor folds)."""
        known = self._constant.get(node.name)
        if known is not None:
            return known
        result = node.type == "Const"
        if not result and node.inputs and not node.control_inputs:
            try:
                kdef = find_kernel(node, "CPU")
            except errors.NotFoundError:
                kdef = None
            result = (kdef is not None and getattr(kdef.kernel_class, "foldable", True)
                      and all(self._is_constant(o.op) for o in node.inputs))
        self._constant[node.name] = result
        return result


def _matches(requested: str, device) -> bool:
    from opgraph.device_spec import parse_device  # noqa: PLC0415

    spec = parse_device(requested)
    return ((spec.device_type is None or spec.device_type == device.device_type)
            and (spec.index is None or spec.index == device.index))


def memory_space(device_name: str, dtype) -> str:
    """Where a tensor of ``dtype`` made (or read) by a node on ``device_name`` lives."""
    if device_name == HOST or host_memory(dtype):
        return HOST
    return device_name


class CopyNode:
    """The node-like record of an inserted copy (names it in traces and errors)."""

    __slots__ = ("name", "type", "site", "id", "device", "inputs", "attrs")

    def __init__(self, source, kind: str, dst: str, serial: int):
        self.name = f"{source.op.name}/_{kind}_{source.index}_to_{dst.rsplit('/', 1)[-1]}"
        self.type = f"_{kind}"
        self.site = source.op.site
        self.id = f"copy{serial}"
        self.device = dst
        self.inputs = (source,)
        self.attrs = {}


class CopyStep:
    """A copy to insert in the plan: ``node`` (a CopyNode), ``device``, ``call``, ``args``,
    ``outs`` -- the fields of an executor step."""

    __slots__ = ("node", "device", "call", "args", "outs")

    def __init__(self, node, device, call, args, outs):
        self.node, self.device, self.call, self.args, self.outs = node, device, call, args, outs


_serials = itertools.count()


class Transfers:
    """Copy insertion for one plan: at most one copy per (tensor, destination space)."""

    def __init__(self, placement_of):
        self.placement_of = placement_of    # op -> (device name, kernel)
        self.copies: dict[tuple, str] = {}
        self.steps: list[CopyStep] = []

    def source_space(self, output, fed: bool) -> str:
        if fed:
            return HOST                        # fed values arrive as numpy arrays
        return memory_space(self.placement_of(output.op)[0], output.dtype)

    def input_var(self, output, var_name, consumer, consumer_device, fed=False):
        """The variable ``consumer`` reads ``output`` from, and the CopyStep to insert
        first when a new copy is needed (None otherwise)."""
        if consumer.type in SHAPE_ONLY_OPS:
            return var_name, None
        src = self.source_space(output, fed)
        dst = memory_space(consumer_device, output.dtype)
        if src == dst:
            return var_name, None
        key = (output, dst)
        copied = self.copies.get(key)
        if copied is not None:
            return copied, None
        backend = devices.gpu_backend()
        if dst == HOST:
            kind, call = "DeviceToHost", backend.to_host
        elif src == HOST:
            index = devices.parse_index(dst)
            kind = "HostToDevice"

            def call(x, _index=index):
                return backend.to_device(x, _index)
        else:
            index = devices.parse_index(dst)
            kind = "DeviceToDevice"

            def call(x, _index=index):
                return backend.to_device(x, _index)
        node = CopyNode(output, kind, dst, next(_serials))
        copied = f"v{node.id}"
        step = CopyStep(node, dst if dst != HOST else src, call, [var_name], [copied])
        self.copies[key] = copied
        self.steps.append(step)
        return copied, step


def fetch_to_host(results):
    """Run's results as numpy arrays: device arrays are copied to the host."""
    backend = devices.gpu_backend()
    return [backend.to_host(r) if backend.is_device_array(r) else r for r in results]
