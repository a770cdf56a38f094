"""Execution: ClientSession, devices, the kernel registry and the kernels.

Kernels are found by op type name (``registered_kernels("Conv2DBackpropInputV2")``); this
package never imports the ``ops`` wrappers, only the op definitions they registered.
"""

from runtime import kernels as _kernels  # noqa: F401  (registers the kernels)
from runtime.devices import Device, available_devices
from runtime.kernels.cpu.conv_impl import num_threads, set_num_threads
from runtime.kernel_registry import Kernel, KernelDef, register_kernel, registered_kernels
from runtime.distributed import DistributedSession
from runtime.graph_session import NewSession, ReadBinaryProto, ReadTextProto, Session
from runtime.placement import SessionOptions
from runtime.session import ClientSession, RunMetadata, RunOptions
from runtime.timeline import Timeline, write_chrome_trace

__all__ = ["ClientSession", "Device", "DistributedSession", "Kernel", "KernelDef", "NewSession",
           "ReadBinaryProto", "ReadTextProto", "RunMetadata", "RunOptions", "Session",
           "SessionOptions", "Timeline", "available_devices", "register_kernel",
           "num_threads", "registered_kernels", "set_num_threads", "write_chrome_trace"]
