"""The compiled convolution core (conv_gather.c and the SOURCES beside it): built on first use, cached, loaded by ctypes.

numpy has no direct convolution, and its BLAS runs a convolution's thin GEMMs (N = channels =
32-64) at half of its peak, so the CPU runtime carries one small C kernel. It is compiled the
first time a process needs it with the machine's C compiler (``$CC``, else ``cc``/``gcc``/
``clang``) for the CPU it runs on (``-march=native``), and the library is cached under
``$OPGRAPH_CACHE_DIR`` (default ``~/.cache/opgraph``), keyed by the source, the compiler command
and the CPU's feature flags, so later processes load it in well under a millisecond. Before
first use it is checked against numpy on a small problem.

Cache entries are verified before they are loaded: an entry is named
``conv_gather-<key>-<size>-<sha256>.so``, so the record of its length and digest is published
by the same atomic ``os.replace`` as its bytes (after an ``fsync`` of the file; the directory is
fsynced after the rename). An entry whose length or digest does not match (a file cut short by
a power loss, say) is never handed to ``dlopen`` (which would die of SIGBUS on it): it is
removed and the library rebuilt. Concurrent builders each compile into their own temporary
file; whichever publishes last wins, and every published entry is complete. An unwritable cache
directory means a build in a private temporary directory, used once and deleted.

The compiler runs at most ``$OPGRAPH_BUILD_TIMEOUT`` seconds (default 60; it and its children
are killed after that). Only the thread that starts the build waits for it: other threads that
ask meanwhile get None at once and run the numpy algorithms.

Nothing here is required: without a compiler, with ``OPGRAPH_NATIVE=0``, or if the build or the
check fails, ``load()`` returns None, ``unavailable_reason()`` says why, and the convolution
kernels use their numpy algorithms. ctypes releases the GIL during a call, so the caller's
threads run the kernel on several cores.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from opgraph import errors

__all__ = ["load", "unavailable_reason", "NativeConv"]

SOURCE = Path(__file__).with_name("conv_gather.c")
#: Every C file of the library (SOURCE first) and the header they share; all are compiled
#: together into one shared library, and all of them key its cache entry.
SOURCES = (SOURCE, SOURCE.with_name("conv_filter_grad.c"), SOURCE.with_name("conv_depthwise.c"),
           SOURCE.with_name("thread_pool.c"), SOURCE.with_name("conv_winograd.c"))
HEADERS = (SOURCE.with_name("conv_common.h"),)
_FLAGS = ["-O3", "-std=gnu11", "-fPIC", "-shared", "-fno-math-errno", "-pthread"]
#: Calling convention of conv_gather.c that this module speaks (opgraph_conv_abi()).
ABI = 4
#: Seconds a compiler run may take unless OPGRAPH_BUILD_TIMEOUT says otherwise.
DEFAULT_BUILD_TIMEOUT = 60.0
#: Every coordinate handed to the kernel stays below this (no 64-bit product overflows there).
COORD_LIMIT = 1 << 62

_lock = threading.Lock()
_state: dict = {}
_ENTRY = re.compile(r"conv_gather-([0-9a-f]{20})-([0-9]+)-([0-9a-f]{64})\.so$")


def _cache_dir() -> Path:
    env = os.environ.get("OPGRAPH_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "opgraph"


def _compiler():
    env = os.environ.get("CC")
    if env:
        return env.split()
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


def build_timeout() -> float:
    """Seconds one compiler run may take: ``$OPGRAPH_BUILD_TIMEOUT`` if a positive number."""
    try:
        value = float(os.environ.get("OPGRAPH_BUILD_TIMEOUT", "") or DEFAULT_BUILD_TIMEOUT)
    except ValueError:
        return DEFAULT_BUILD_TIMEOUT
    return value if value > 0 else DEFAULT_BUILD_TIMEOUT


def _cpu_signature() -> str:
    """What -march=native depends on: the CPU's feature flags (Linux), else the processor."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _entry_ok(path: Path, size: int, digest: str) -> bool:
    """True if the file at ``path`` has exactly ``size`` bytes with this sha256."""
    try:
        if os.stat(path).st_size != size:
            return False
        with open(path, "rb") as f:
            data = f.read(size + 1)
    except OSError:
        return False
    return len(data) == size and hashlib.sha256(data).hexdigest() == digest


def _find_cached(cache: Path, key: str):
    """A verified cache entry for ``key`` (the newest), or None. Entries that fail the check
    are removed (best effort: a read-only cache keeps them, and they are skipped again)."""
    try:
        names = os.listdir(cache)
    except OSError:
        return None
    found = []
    for name in names:
        m = _ENTRY.match(name)
        if m and m.group(1) == key:
            try:
                found.append((os.stat(cache / name).st_mtime, name, int(m.group(2)), m.group(3)))
            except OSError:
                continue
    for _, name, size, digest in sorted(found, reverse=True):
        path = cache / name
        if _entry_ok(path, size, digest):
            return path
        try:
            os.unlink(path)
        except OSError:
            pass
    return None


def _fsync_dir(path: Path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish(tmp: str, cache: Path, key: str) -> Path:
    """Make the compiled file ``tmp`` a cache entry: fsync it, name it by its length and
    sha256, rename it into place atomically, fsync the directory. Returns the entry."""
    fd = os.open(tmp, os.O_RDWR)
    try:
        os.fsync(fd)
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read()
    finally:
        os.close(fd)
    lib = cache / f"conv_gather-{key}-{len(data)}-{hashlib.sha256(data).hexdigest()}.so"
    os.replace(tmp, lib)  # atomic: concurrent builders each publish a complete file
    _fsync_dir(cache)
    return lib


def _run_compiler(cmd, timeout):
    """(returncode, stderr) of the compiler; OSError when it ran past ``timeout`` seconds (it
    and every process it started are killed)."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        proc.communicate()
        raise OSError(f"C compiler timed out after {timeout:g} s (OPGRAPH_BUILD_TIMEOUT): "
                      f"{' '.join(cmd)}") from None
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
        raise
    return proc.returncode, err


#: Temporary build files older than this (seconds) are leftovers of killed builders.
STALE_TMP_SECONDS = 3600


def _remove_stale_temporaries(cache: Path):
    """Delete build temporaries that a killed process left in the cache (best effort)."""
    try:
        names = os.listdir(cache)
    except OSError:
        return
    now = time.time()
    for name in names:
        if name.startswith(".conv_gather-") and name.endswith(".tmp"):
            try:
                if now - os.stat(cache / name).st_mtime > STALE_TMP_SECONDS:
                    os.unlink(cache / name)
            except OSError:
                pass


def _workdir(cache: Path):
    """(directory to build in, temporary directory to delete afterwards or None): the cache
    when it can be created and written, else a fresh private temporary directory."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".conv_gather-", suffix=".tmp", dir=cache)
        os.close(fd)
        os.unlink(probe)
        return cache, None
    except OSError:
        tmpdir = Path(tempfile.mkdtemp(prefix="opgraph-native-"))
        return tmpdir, tmpdir


def compile_command(cc, flags, output):
    """The compiler command that builds the library from SOURCES into ``output``."""
    return cc + flags + ["-I", str(SOURCE.parent), "-o", str(output)] + [str(p) for p in SOURCES]


def _build(cc, cache: Path, timeout: float | None = None):
    """(path of a verified library, temporary directory to delete after loading it or None)."""
    timeout = build_timeout() if timeout is None else timeout
    source = b"\0".join(p.read_bytes() for p in SOURCES + HEADERS)
    attempts = [_FLAGS + ["-march=native"], _FLAGS]
    key_src = b"\0".join([source, " ".join(cc).encode(), _cpu_signature().encode(),
                          sys.platform.encode(), platform.machine().encode()])
    errors_seen = []
    workdir = scratch = None
    try:
        for flags in attempts:
            key = hashlib.sha256(key_src + b"\0" + " ".join(flags).encode()).hexdigest()[:20]
            lib = _find_cached(cache, key)
            if lib is not None:
                return lib, None
            if workdir is None:
                workdir, scratch = _workdir(cache)
                _remove_stale_temporaries(workdir)
            fd, tmp = tempfile.mkstemp(prefix=".conv_gather-", suffix=".tmp", dir=workdir)
            os.close(fd)
            try:
                rc, err = _run_compiler(compile_command(cc, flags, tmp), timeout)
                if rc == 0:
                    return _publish(tmp, workdir, key), scratch
                errors_seen.append(f"{' '.join(cc + flags)}: {err.strip()[-400:]}")
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        raise OSError("C compiler failed: " + " | ".join(errors_seen))
    except BaseException:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        raise


class NativeConv:
    """The loaded library: the block and vector widths, the gather convolution and the
    filter gradient."""

    def __init__(self, lib):
        self._lib = lib
        abi = getattr(lib, "opgraph_conv_abi", None)
        if abi is None:
            raise OSError("the library has no opgraph_conv_abi (built from an older source)")
        abi.restype = ctypes.c_int
        if abi() != ABI:
            raise OSError(f"the library speaks calling convention {abi()}, expected {ABI}")
        L, P = ctypes.c_int64, ctypes.c_void_p
        fn = lib.opgraph_gather_conv_f32
        fn.argtypes = [P, L, L, L, L, L, L, L, P, L, L, L, L, L, L, L, L, P, L, P, L, L, L, L,
                       P, L]
        fn.restype = ctypes.c_int
        self._fn = fn
        fg = lib.opgraph_filter_grad_f32
        fg.argtypes = [P, L, L, L, L, L, L, L, P, L, L, L, L, L, L, L, L, P, L, P, L, L, L,
                       L, P, L, L, L, L, L, L, L, L, L, L, L, P, L]
        fg.restype = ctypes.c_int
        self._fgrad = fg
        dwf = getattr(lib, "opgraph_depthwise_bpi_f32", None)
        dwt = getattr(lib, "opgraph_depthwise_tasks_f32", None)
        dwv = getattr(lib, "opgraph_depthwise_version", None)
        if dwv is not None:
            dwv.restype = ctypes.c_int
        #: True if the library has the depthwise input-gradient kernel whose parameter block
        #: and entry points depthwise_plan speaks (conv_depthwise.c's DW_VERSION, 3)
        self.has_depthwise = (dwf is not None and dwt is not None and dwv is not None
                              and dwv() == 3)
        if self.has_depthwise:
            dwf.argtypes = [P, P, P, P] + [L] * 7
            dwf.restype = ctypes.c_int
            dwt.argtypes = [P, P, P, P, L, P, L, L]
            dwt.restype = ctypes.c_int
        self._depthwise = dwf if self.has_depthwise else None
        self._depthwise_blocks = {}  # parameter blocks by geometry and layout (depthwise_plan)
        self._depthwise_tasks = dwt if self.has_depthwise else None
        sst = getattr(lib, "opgraph_shuffle_store_f32", None)
        if sst is not None:
            sst.argtypes = [P, P] + [L] * 19
            sst.restype = ctypes.c_int
        self._shuffle_store = sst
        tpl = getattr(lib, "opgraph_tiling_planes_f32", None)
        if tpl is not None:
            tpl.argtypes = [P, P, P] + [L] * 14
            tpl.restype = ctypes.c_int
        self._tiling_planes = tpl
        tpx = getattr(lib, "opgraph_tiling_pixels_f32", None)
        if tpx is not None:
            tpx.argtypes = [P, P, P] + [L] * 11
            tpx.restype = ctypes.c_int
        self._tiling_pixels = tpx
        h2f = getattr(lib, "opgraph_half_to_f32", None)
        if h2f is not None:
            h2f.argtypes = [P, L, L, P, L]
            h2f.restype = ctypes.c_int
        self._half_to_f32 = h2f
        wgv = getattr(lib, "opgraph_winograd_version", None)
        wgf = getattr(lib, "opgraph_winograd_bpi_f32", None)
        if wgv is not None:
            wgv.restype = ctypes.c_int
        #: True if the library has the Winograd F(2x2, 2x2) input gradient of 4x4 stride-2
        #: convolutions whose parameter block winograd_bpi speaks (conv_winograd.c, version 3)
        self.has_winograd = wgf is not None and wgv is not None and wgv() == 3
        if self.has_winograd:
            wgf.argtypes = [P, P, P, P, L, L]
            wgf.restype = ctypes.c_int
        self._winograd = wgf if self.has_winograd else None
        wgt = getattr(lib, "opgraph_winograd_filter_f32", None) if self.has_winograd else None
        if wgt is not None:
            wgt.argtypes = [P] + [L] * 8 + [P, L]
            wgt.restype = ctypes.c_int
        self._winograd_filter = wgt
        wg3 = getattr(lib, "opgraph_winograd3_bpi_f32", None) if self.has_winograd else None
        if wg3 is not None:
            wg3.argtypes = [P, P, P, P, L, L]
            wg3.restype = ctypes.c_int
        #: True if the library has the F(2x2, 3x3) input gradient of 3x3 stride-1 layers
        self.has_winograd3 = wg3 is not None
        self._winograd3 = wg3
        wg3f = getattr(lib, "opgraph_winograd3_filter_f32", None) if wg3 is not None else None
        if wg3f is not None:
            wg3f.argtypes = [P] + [L] * 6 + [P, L]
            wg3f.restype = ctypes.c_int
        self._winograd3_filter = wg3f
        pk = lib.opgraph_pack_f32
        pk.argtypes = [P] + [L] * 10 + [P, L]
        pk.restype = ctypes.c_int
        self._pack = pk
        bpi = lib.opgraph_bpi_f32
        bpi.argtypes = [P] + [L] * 6 + [P] + [L] * 18 + [P, L, L, L, L]
        bpi.restype = ctypes.c_int
        self._bpi = bpi
        fwd = lib.opgraph_conv_f32
        fwd.argtypes = [P] + [L] * 6 + [P] + [L] * 18 + [P, L, L, L, L]
        fwd.restype = ctypes.c_int
        self._fwd = fwd
        lib.opgraph_conv_block_width.restype = ctypes.c_int
        lib.opgraph_conv_vector_width.restype = ctypes.c_int
        #: output channels per packed weight block
        self.block_width = lib.opgraph_conv_block_width()
        #: output channels must be a multiple of this
        self.vector_width = lib.opgraph_conv_vector_width()
        tr = getattr(lib, "opgraph_conv_tile_rows", None)
        if tr is not None:
            tr.restype = ctypes.c_int
        #: pixels (rows) of the microkernel's register tile (0: not reported)
        self.tile_rows = tr() if tr is not None else 0

    @staticmethod
    def addressable(a) -> bool:
        """True if the kernel can read or write the 4-D view ``a`` in place: float32 with
        element-aligned strides (any layout)."""
        if a.dtype != np.float32:
            return False
        for s in a.strides:
            if s & 3:
                return False
        return True

    @property
    def has_shuffle_store(self) -> bool:
        """True if the library has opgraph_shuffle_store_f32 (shuffle_store)."""
        return self._shuffle_store is not None

    def winograd_bpi(self, dy, upk, dx, pads, nthreads=1, tiles=0):
        """dx (view [N, H, W, Cin]) = the input gradient of a 4x4 stride-2 convolution (pads:
        its top/left padding, may be negative) with dy (view [N, OH, OW, Cout] of dx's dtype:
        float32, float16 or bfloat16, computed in float32) by Winograd F(2x2, 2x2), the filter
        given as ``upk``: the 4 phases' transformed filters, each ``pack(U, 3)`` of U
        [3, 3, Cin, Cout] (conv_winograd.c). Any element-aligned strides (channel-strided and
        half-precision views are staged per work item). Finite operands only (zero padding
        stands for the skipped taps). tiles: 2x2 tiles per work item (0: the kernel's
        choice)."""
        self._winograd_call("winograd_bpi", self._winograd if self.has_winograd else None,
                            dy, upk, dx, pads, nthreads, tiles, 4 * 9)

    def winograd3_bpi(self, dy, upk, dx, pads, nthreads=1, tiles=0):
        """dx (view [N, H, W, Cin]) = the input gradient of a 3x3 stride-1 convolution (pads:
        its top/left padding, may be negative) with dy (view [N, OH, OW, Cout] of dx's dtype:
        float32, float16 or bfloat16) by Winograd F(2x2, 3x3), the filter given as
        ``upk = pack(U, 3)`` of U [4, 4, Cin, Cout] (conv_winograd.c). Any element-aligned
        strides (channel-strided and half-precision views staged per work item). Finite
        operands only. tiles: 2x2 tiles per work item (0: the kernel's choice)."""
        self._winograd_call("winograd3_bpi", self._winograd3, dy, upk, dx, pads, nthreads,
                            tiles, 16)

    def _winograd_call(self, name, fn, dy, upk, dx, pads, nthreads, tiles, taps):
        """Check the operands of a Winograd entry point (``taps`` packed taps of Cout x cop
        each in upk) and call ``fn`` with conv_winograd.c's parameter block."""
        if fn is None:
            raise ValueError(f"{name}: this library has no such Winograd kernel")
        code, it = self.views_code(dy, dx), dx.dtype.itemsize
        if code is None or dy.ndim != 4 or dx.ndim != 4:
            raise ValueError(f"{name}: dy and dx must be 4-D views of one dtype (float32, "
                             f"float16 or bfloat16) with element-aligned strides, got dy "
                             f"{dy.dtype}{dy.shape} strides {dy.strides} and dx "
                             f"{dx.dtype}{dx.shape} strides {dx.strides}")
        if not dx.flags.writeable:
            raise ValueError(f"{name}: dx is read-only")
        n, oh, ow, cout = dy.shape
        nn, h, w, cin = dx.shape
        if nn != n:
            raise ValueError(f"{name}: dy has {n} images, dx {nn}")
        need = taps * cout * (-(-cin // self.vector_width) * self.vector_width)
        if (upk.dtype != np.float32 or upk.ndim != 1 or upk.size != need
                or not upk.flags.c_contiguous):
            raise ValueError(f"{name}: expected {need} packed float32 values, got "
                             f"{upk.dtype}{upk.shape}")
        if not all(abs(int(v)) < COORD_LIMIT for v in dy.shape + dx.shape + tuple(pads)):
            raise ValueError(f"{name}: coordinates beyond the kernel's range")
        p = np.array([n, oh, ow, cout] + [s // it for s in dy.strides] + [h, w, cin]
                     + [s // it for s in dx.strides]
                     + [int(pads[0]), int(pads[1]), int(tiles), code], np.int64)
        rc = fn(dy.ctypes.data, dx.ctypes.data, upk.ctypes.data, p.ctypes.data, p.size,
                int(nthreads))
        if rc == -2:
            raise MemoryError(f"{name}: out of memory")
        if rc != 0:
            raise ValueError(f"{name} refused its arguments (code {rc})")

    def winograd3_filter(self, w, nthreads=1):
        """F(2x2, 3x3)'s transformed filter for winograd3_bpi (``pack(U, 3)`` of U = G g G^T,
        g the 180-degree turned 3x3 filter), from w (float32 view [3, 3, Cin, Cout], Cin or
        Cout contiguous) in one pass; None when this library lacks it or w has another
        layout."""
        if (self._winograd3_filter is None or w.ndim != 4 or w.shape[:2] != (3, 3)
                or not self.addressable(w) or 4 not in w.strides[2:]):
            return None
        cin, cout = w.shape[2:]
        return self._filter_call("winograd3_filter", self._winograd3_filter, w,
                                 self.packed_size(16, cout, cin), (), nthreads)

    @staticmethod
    def _filter_call(name, fn, w, size, extra, nthreads):
        """A compiled filter transform: fn(w, its element strides, Cin, Cout, *extra, out,
        nthreads) into a new float32 vector of ``size`` elements."""
        upk = np.empty(size, np.float32)
        st = [s // 4 for s in w.strides]
        rc = fn(w.ctypes.data, *st, *w.shape[2:], *extra, upk.ctypes.data, int(nthreads))
        if rc == -2:
            raise MemoryError(f"{name}: out of memory")
        if rc != 0:
            raise ValueError(f"{name} refused the filter {w.shape} (code {rc})")
        return upk

    def winograd_filter(self, w, pads, nthreads=1):
        """The 4 phases' transformed filters for winograd_bpi, as one packed float32 vector:
        U = G g G^T of each phase's 2x2 taps of w (float32 view [4, 4, Cin, Cout], Cout
        contiguous), each packed as ``pack(U, 3)``, in one pass on ``nthreads`` threads.
        None when this library lacks the entry point or w's layout is not that one."""
        if (self._winograd_filter is None or w.ndim != 4 or w.shape[:2] != (4, 4)
                or not self.addressable(w) or w.strides[3] != 4):
            return None
        cin, cout = w.shape[2:]
        return self._filter_call("winograd_filter", self._winograd_filter, w,
                                 4 * self.packed_size(9, cout, cin),
                                 (int(pads[0]), int(pads[1])), nthreads)

    def shuffle_store(self, t, dx, sh, sw, nthreads=1, offsets=(0, 0)):
        """The pixel shuffle of a sub-pixel decomposition: dx[n, i*sh + a + oh0,
        j*sw + b + ow0, c] = t[n, i, j, (a*sw + b)*cin + c] wherever that position is inside
        dx, for t a float32 view [N, TH, TW, sh*sw*cin] and dx a writable float32 view
        [N, H, W, cin], both of any layout (element-aligned strides); offsets (oh0, ow0) in
        (-stride, 0]. Runs on ``nthreads`` of the pool's threads."""
        n, th, tw, kk = t.shape
        nn, h, wd, cin = dx.shape
        oh0, ow0 = (int(o) for o in offsets)
        if nn != n or kk != sh * sw * cin or not (-sh < oh0 <= 0 and -sw < ow0 <= 0):
            raise ValueError(f"shuffle_store: t {t.shape} ([N, TH, TW, sh*sw*cin] expected), "
                             f"dx {dx.shape}, strides {sh}x{sw} and offsets {offsets} do not "
                             f"match")
        if not (self.addressable(t) and self.addressable(dx) and dx.flags.writeable):
            raise ValueError(f"shuffle_store: t and a writable dx must be float32 views with "
                             f"aligned strides, got {t.dtype}{t.strides} and "
                             f"{dx.dtype}{dx.strides}")
        ts = [s // 4 for s in t.strides]
        xs = [s // 4 for s in dx.strides]
        rc = self._shuffle_store(t.ctypes.data, dx.ctypes.data, n, th, tw, sh, sw, cin, oh0,
                                 ow0, h, wd, *ts, *xs, max(1, int(nthreads)))
        if rc != 0:
            raise ValueError(f"native shuffle_store refused its arguments (code {rc})")

    @property
    def has_tiling_planes(self) -> bool:
        """True if the library has opgraph_tiling_planes_f32 (tiling_planes)."""
        return self._tiling_planes is not None

    def tiling_planes(self, dy, wr, dx, kh, kw, nthreads=1):
        """dx[n, i*kh + a, j*kw + b, c] = sum_k wr[(a*cin + c)*kw + b, k] * dy[n, i, j, k]:
        the input gradient of a kernel that tiles dx exactly (kernel = stride, kw 1 or 2),
        computed on channel planes. dy and dx are float32 logical-NHWC views of channel-planar
        memory (NCHW: dy's pixels contiguous within a plane, dx's columns contiguous); wr a
        float32 [kh*cin*kw, cout] matrix with contiguous rows (conv_gather.c)."""
        n, oh, ow, cout = dy.shape
        nn, h, wd, cin = dx.shape
        ys = [s // 4 for s in dy.strides]
        xs = [s // 4 for s in dx.strides]
        if (nn != n or h != kh * oh or wd != kw * ow or wr.shape != (kh * cin * kw, cout)
                or kw not in (1, 2)):
            raise ValueError(f"tiling_planes: dy {dy.shape}, dx {dx.shape}, filter rows "
                             f"{wr.shape} and kernel {kh}x{kw} do not match")
        if not (self.addressable(dy) and self.addressable(dx) and dx.flags.writeable
                and wr.dtype == np.float32 and wr.strides[1] == 4 and ys[2] == 1
                and ys[1] == ow and xs[2] == 1):
            raise ValueError(f"tiling_planes: float32 channel planes expected, got dy "
                             f"{dy.dtype}{dy.strides}, dx {dx.dtype}{dx.strides}, filter rows "
                             f"{wr.dtype}{wr.strides}")
        rc = self._tiling_planes(dy.ctypes.data, wr.ctypes.data, dx.ctypes.data, n, cout, oh,
                                 ow, cin, kh, kw, ys[0], ys[3], xs[0], xs[3], xs[1],
                                 wr.strides[0] // 4, max(1, int(nthreads)))
        if rc == -2:
            raise MemoryError("tiling_planes: out of memory for a work item's dy panel")
        if rc != 0:
            raise ValueError(f"native tiling_planes refused its arguments (code {rc})")

    def to_float32(self, a, nthreads=1):
        """``a`` as a float32 array the kernels can read: itself where it is one
        (addressable), float16 and bfloat16 converted by the library on ``nthreads`` threads
        (numpy converts half precision a value at a time), anything else copied by numpy."""
        code = self.dtype_code(a.dtype)
        if code == 0 and self.addressable(a):
            return a
        if code in (None, 0) or self._half_to_f32 is None:
            return a.astype(np.float32)
        a = np.ascontiguousarray(a)
        out = np.empty(a.shape, np.float32)
        if self._half_to_f32(a.ctypes.data, code, a.size, out.ctypes.data, int(nthreads)):
            raise ValueError(f"to_float32: the library refused {a.dtype}")
        return out

    @property
    def has_tiling_pixels(self) -> bool:
        """True if the library has opgraph_tiling_pixels_f32 (tiling_pixels)."""
        return self._tiling_pixels is not None and self.tile_rows > 0

    def tiling_pixels(self, dy, wpk, dx, kh, kw, nthreads=1):
        """dx[n, i*kh + a, j*kw + b, :] = dy[n, i, j, :] @ w[a, b]^T: the input gradient of
        a kernel that tiles dx exactly (kernel = stride), for a contiguous float32 NHWC dy and
        a float32 logical-NHWC dx view with contiguous channels; wpk = pack(w, 3) of the
        [kh, kw, cin, cout] filter (conv_gather.c)."""
        n, oh, ow, cout = dy.shape
        nn, h, wd, cin = dx.shape
        xs = [s // 4 for s in dx.strides]
        if nn != n or h != kh * oh or wd != kw * ow:
            raise ValueError(f"tiling_pixels: dy {dy.shape}, dx {dx.shape} and kernel "
                             f"{kh}x{kw} do not match")
        if not (dy.dtype == np.float32 and dy.flags.c_contiguous and self.addressable(dx)
                and dx.flags.writeable and xs[3] == 1):
            raise ValueError(f"tiling_pixels: a contiguous float32 dy and a float32 dx with "
                             f"contiguous channels expected, got {dy.dtype}{dy.strides} and "
                             f"{dx.dtype}{dx.strides}")
        need = self.packed_size(kh * kw, cout, cin)
        if wpk.dtype != np.float32 or wpk.size != need or not wpk.flags.c_contiguous:
            raise ValueError(f"tiling_pixels: packed filter of {need} contiguous float32 "
                             f"values expected (pack(w, 3)), got {wpk.size} {wpk.dtype}")
        rc = self._tiling_pixels(dy.ctypes.data, wpk.ctypes.data, dx.ctypes.data, n, oh, ow,
                                 cout, cin, kh, kw, xs[0], xs[1], xs[2],
                                 max(1, int(nthreads)))
        if rc != 0:
            raise ValueError(f"native tiling_pixels refused its arguments (code {rc})")

    def supports(self, src, out) -> bool:
        """True if gather_conv takes these operands as they are."""
        return (self.addressable(src) and self.addressable(out)
                and out.shape[3] % self.vector_width == 0)

    @staticmethod
    def fits(src_shape, out_shape, offs_h, offs_w, step, q_base=0) -> bool:
        """True if every coordinate of the problem (sizes, source positions read, output
        positions) stays below COORD_LIMIT, so the kernel's 64-bit arithmetic is exact."""
        _, hs, ws, cs = src_shape
        n, q, r, co = out_shape
        span_h = (abs(q_base) + q) * step[0] + max(abs(int(o)) for o in offs_h)
        span_w = r * step[1] + max(abs(int(o)) for o in offs_w)
        return max(n, hs, ws, cs, q, r, co, span_h, span_w,
                   len(offs_h) * len(offs_w) * cs * co) < COORD_LIMIT

    def pack_weights(self, wk):
        """[th, tw, Cs, Co] weights -> the kernel's packed layout (blocks of block_width)."""
        wk = np.asarray(wk, np.float32)
        bw = self.block_width
        co = wk.shape[3]
        return np.concatenate([np.ascontiguousarray(wk[..., c0:c0 + bw]).ravel()
                               for c0 in range(0, co, bw)])

    def packed_size(self, taps, c, o, groups=1):
        """Elements of a packed filter: ``groups`` x taps x c x o rounded up to the vector
        width."""
        vw = self.vector_width
        return groups * taps * c * (-(-o // vw) * vw)

    def pack(self, w, reduce_axis, groups=1, nthreads=1, out=None):
        """A filter [kh, kw, i, o] (float32 view, any strides) packed for the kernels:
        per group, output lanes from the other axis of (2, 3) than ``reduce_axis``, reduced
        channels from ``reduce_axis``; ``groups`` splits axis 3 (dy's channels for the input
        gradient, reduce_axis=3; the output channels for a forward conv, reduce_axis=2).
        out: a contiguous float32 vector of packed_size elements to pack into (else a new
        one)."""
        if w.ndim != 4 or not self.addressable(w):
            raise ValueError(f"pack: expected a 4-D float32 view, got {w.dtype}{w.shape}")
        kh, kw, ci, co = w.shape
        st = [s // 4 for s in w.strides]
        cog = co // groups
        if reduce_axis == 3:   # lanes: axis 2 (cig), reduction: the group's slice of axis 3
            c, o, st_c, st_o = cog, ci, st[3], st[2]
        else:                  # lanes: the group's slice of axis 3, reduction: axis 2
            c, o, st_c, st_o = ci, cog, st[2], st[3]
        size = self.packed_size(kh * kw, c, o, groups)
        if out is None:
            dst = np.empty(size, np.float32)
        elif (out.dtype != np.float32 or out.shape != (size,) or not out.flags.c_contiguous
              or not out.flags.writeable):
            raise ValueError(f"pack: out must be a writable contiguous float32 vector of "
                             f"{size} elements, got {out.dtype}{out.shape}")
        else:
            dst = out
        if dst.size:
            rc = self._pack(w.ctypes.data, cog * st[3], st[0], st[1], st_c, st_o, groups, kh,
                            kw, c, o, dst.ctypes.data, int(nthreads))
            if rc != 0:
                raise ValueError(f"pack refused the filter {w.shape} (code {rc})")
        return dst

    @staticmethod
    def dtype_code(dtype):
        """The kernel's code for dtype (0 float32, 1 float16, 2 bfloat16), or None."""
        dt = np.dtype(dtype)
        if dt == np.float32:
            return 0
        if dt == np.float16:
            return 1
        return 2 if dt.name == "bfloat16" and dt.itemsize == 2 else None

    @classmethod
    def views_code(cls, *views):
        """The kernels' dtype code of ``views`` if they are all of one dtype the kernels read
        (float32, float16, bfloat16) with element-aligned strides, else None."""
        dt = views[0].dtype
        code = cls.dtype_code(dt)
        if code is None or any(v.dtype != dt or any(s % dt.itemsize for s in v.strides)
                               for v in views):
            return None
        return code

    def backprop_input(self, dy, wpk, dx, groups, kernel_hw, strides, dilations, pads,
                       nthreads=1, rows=0, cchunk=0):
        """dx (logical-NHWC view [N, H, W, C], any strides) = the input gradient of a
        convolution with dy (logical-NHWC view [N, OH, OW, G*cog] of the same dtype: float32,
        float16 or bfloat16, accumulated in float32) through the filter packed by
        ``pack(w, reduce_axis=3, groups)``: every stride phase, group, image and row chunk in
        one call on ``nthreads`` threads of the library's own. pads: (top, left) of the forward
        conv (may be negative). rows: dx rows of a stride phase per work item, cchunk: dy
        channels per weight chunk (0: the kernel's choice)."""
        self._call(self._bpi, "input gradient", dy, wpk, dx, groups, kernel_hw, strides,
                   dilations, pads, nthreads, rows, cchunk, cig=dx.shape[3], cog=dy.shape[3],
                   forward=False)

    def forward(self, x, wpk, y, groups, kernel_hw, strides, dilations, pads, nthreads=1,
                rows=0, cchunk=0):
        """y (logical-NHWC view [N, OH, OW, G*cog]) = the convolution of x (logical-NHWC view
        [N, H, W, G*cig], same dtype: float32, float16 or bfloat16) with the filter packed by
        ``pack(w, reduce_axis=2, groups)``, in one call on ``nthreads`` threads; positions
        outside x are skipped (never multiplied)."""
        self._call(self._fwd, "convolution", x, wpk, y, groups, kernel_hw, strides, dilations,
                   pads, nthreads, rows, cchunk, cig=x.shape[3], cog=y.shape[3], forward=True)

    def _call(self, fn, what, src, wpk, out, groups, kernel_hw, strides, dilations, pads,
              nthreads, rows, cchunk, cig, cog, forward):
        """Check the operands of a one-call kernel and run it. cig/cog: the filter's input and
        output channels (in total); the packed lanes are out's channels, the reduction src's."""
        n, hs, ws, _ = src.shape
        nn, ho, wo, _ = out.shape
        kh, kw = kernel_hw
        g = int(groups)
        lanes, reduced = out.shape[3], src.shape[3]
        if nn != n or lanes % g or reduced % g:
            raise ValueError(f"{what} shapes: source {src.shape}, output {out.shape}, "
                             f"groups {g}")
        code, it = self.views_code(src, out), src.dtype.itemsize
        if code is None:
            raise ValueError(f"{what} operands must be float32, float16 or bfloat16 views of "
                             f"one dtype with element-aligned strides, got {src.dtype} strides "
                             f"{src.strides} and {out.dtype} strides {out.strides}")
        if not out.flags.writeable:
            raise ValueError(f"{what}: the output is read-only")
        need = self.packed_size(kh * kw, reduced // g, lanes // g, g)
        if wpk.dtype != np.float32 or wpk.size != need or not wpk.flags.c_contiguous:
            raise ValueError(f"packed filter: expected {need} contiguous float32 values "
                             f"(pack), got {wpk.size} {wpk.dtype}")
        # every coordinate either side reads or writes (the forward source's rows and
        # columns reach stride * output size; the input gradient's phases stay inside dx)
        span = max(n, hs, ws, ho, wo, lanes, reduced,
                   abs(int(pads[0])) + kh * int(dilations[0]) + (int(strides[0]) * ho if forward
                                                                 else hs),
                   abs(int(pads[1])) + kw * int(dilations[1]) + (int(strides[1]) * wo if forward
                                                                 else ws))
        if span >= COORD_LIMIT:
            raise ValueError(f"coordinates beyond 2^62: {src.shape}, {out.shape}")
        ss = [st // it for st in src.strides]
        os_ = [st // it for st in out.strides]
        rc = fn(src.ctypes.data, *ss, hs, ws, out.ctypes.data, *os_, n, ho, wo, g, cig // g,
                cog // g, kh, kw, int(strides[0]), int(strides[1]), int(dilations[0]),
                int(dilations[1]), int(pads[0]), int(pads[1]), wpk.ctypes.data, int(rows),
                int(cchunk), code, int(nthreads))
        if rc == -2:
            raise errors.ResourceExhaustedError(f"native {what}: out of memory for its tables")
        if rc != 0:
            raise ValueError(f"native {what} refused its arguments (code {rc})")

    def gather_conv(self, src, out, offs_h, offs_w, step, q0, wpk, cchunk=0):
        """out[n, q, r, :] = sum over taps (a, b) and channels c of
        src[n, (q0+q)*step[0] + offs_h[a], r*step[1] + offs_w[b], c] * w[a, b, c, :],
        reading zero outside src. offs_h/offs_w ascending; wpk from pack_weights."""
        self.plan(src, out, offs_h, offs_w, step, wpk, cchunk, q0)(0, src.shape[0], 0,
                                                                    out.shape[1])

    def plan(self, src, out, offs_h, offs_w, step, wpk, cchunk=0, q_base=0):
        """Validate the operands of gather_conv once; returns ``run(n0, n1, q0, q1)``, which
        computes images [n0, n1) and output rows [q0, q1) (row 0 of ``out`` being absolute row
        ``q_base``) with a few microseconds of Python per call."""
        n, hs, ws, cs = src.shape
        nn, q, r, co = out.shape
        if nn != n:
            raise ValueError(f"batch mismatch: src {src.shape}, out {out.shape}")
        if not self.supports(src, out):
            raise ValueError(f"unsupported operands: src {src.dtype}{src.shape} strides "
                             f"{src.strides}, out {out.dtype}{out.shape} strides {out.strides}")
        if (wpk.dtype != np.float32 or wpk.size != len(offs_h) * len(offs_w) * cs * co
                or not wpk.flags.c_contiguous):
            raise ValueError(f"packed weights: expected {len(offs_h) * len(offs_w) * cs * co} "
                             f"contiguous float32 values (pack_weights), got {wpk.size} "
                             f"{wpk.dtype}, contiguous={wpk.flags.c_contiguous}")
        if len(offs_h) and len(offs_w) and not self.fits(src.shape, out.shape, offs_h, offs_w,
                                                         step, q_base):
            raise ValueError(f"coordinates beyond 2^62: src {src.shape}, out {out.shape}, "
                             f"step {tuple(step)}")
        oh = np.ascontiguousarray(offs_h, np.int64)
        ow = np.ascontiguousarray(offs_w, np.int64)
        ss0, ss1, ss2, ss3 = (s // 4 for s in src.strides)
        os0, os1, os2, os3 = (s // 4 for s in out.strides)
        sptr, optr = src.ctypes.data, out.ctypes.data
        fixed = (oh.ctypes.data, len(oh), ow.ctypes.data, len(ow), int(step[0]), int(step[1]))
        fn, wptr, cchunk, q_base = self._fn, wpk.ctypes.data, int(cchunk), int(q_base)
        keep = (src, out, oh, ow, wpk)  # the pointers above stay valid while run lives

        def run(n0, n1, q0, q1):
            rc = fn(sptr + 4 * n0 * ss0, ss0, ss1, ss2, ss3, hs, ws, cs,
                    optr + 4 * (n0 * os0 + q0 * os1), os0, os1, os2, os3, n1 - n0, q1 - q0,
                    r, co, *fixed, q_base + q0, wptr, cchunk)
            if rc == -2:
                raise errors.ResourceExhaustedError(
                    "native convolution: out of memory for the tap tables")
            if rc != 0:
                raise ValueError(f"native convolution refused its arguments (code {rc})")

        run.operands = keep
        return run


    def depthwise_plan(self, dy, w, dx, strides, dilations, pads):
        """Validate a depthwise input gradient once; returns ``run(n0, n1, h0, h1, g0, g1)``,
        which writes dx rows [h0, h1) of images [n0, n1), channels [g0, g1) (threads may run
        disjoint ranges at once): dx[n, h, x, g] = sum over taps (a, b) and j < M of
        dy[n, q, r, g*M + j] * w[a, b, g*M + j] where h + pt - a*dh = q*sh and
        x + pl - b*dw = r*sw (q, r inside dy). dy [N, OH, OW, C*M] and dx [N, H, W, C] are
        float32 logical-NHWC views of any layout (channels or columns contiguous are the fast
        ones); w [KH, KW, C*M] float32 with its last axis contiguous."""
        if not dx.flags.writeable:
            raise ValueError("depthwise dx is read-only")
        # (the key holds every dtype and stride the operand checks read, so a block found for
        # it was built for operands that passed them)
        key = (dy.shape, dy.strides, w.shape, w.strides, dx.shape, dx.strides, tuple(strides),
               tuple(dilations), tuple(pads), dy.dtype, w.dtype, dx.dtype)
        block = self._depthwise_blocks.get(key)
        if block is None:
            if not (self.addressable(dy) and self.addressable(dx) and self.addressable(w)) \
                    or w.strides[2] != 4:
                raise ValueError(f"depthwise operands must be float32 views with aligned "
                                 f"strides (w's last axis contiguous): dy {dy.dtype}{dy.strides}, "
                                 f"dx {dx.dtype}{dx.strides}, w {w.dtype}{w.strides}")
            block = self._depthwise_block(dy, w, dx, strides, dilations, pads)
            if len(self._depthwise_blocks) >= 256:
                self._depthwise_blocks.clear()
            self._depthwise_blocks[key] = block
        prm, prm_ptr = block
        n, h, c = dy.shape[0], dx.shape[1], dx.shape[3]
        head = (dy.ctypes.data, w.ctypes.data, dx.ctypes.data, prm_ptr, len(prm))
        fn, fn_tasks = self._depthwise, self._depthwise_tasks
        keep = (dy, w, dx, prm)  # the pointers above stay valid while run lives

        def check(rc):
            if rc == -2:
                raise errors.ResourceExhaustedError("native depthwise: out of memory")
            if rc != 0:
                raise ValueError(f"native depthwise refused its arguments (code {rc})")

        def run(n0=0, n1=n, h0=0, h1=h, g0=0, g1=c):
            check(fn(*head, n0, n1, h0, h1, g0, g1))

        def run_tasks(tasks, nthreads):
            """Every (n0, n1, h0, h1, g0, g1) of ``tasks`` (disjoint dx ranges) in one call,
            on ``nthreads`` of the library's parked threads."""
            t = tasks if (isinstance(tasks, np.ndarray) and tasks.dtype == np.int64
                          and tasks.ndim == 2 and tasks.shape[1] == 6
                          and tasks.flags.c_contiguous) \
                else np.ascontiguousarray(tasks, np.int64).reshape(-1, 6)
            check(fn_tasks(*head, t.ctypes.data, len(t), max(1, int(nthreads))))

        run.operands = keep
        run.tasks = run_tasks
        return run

    @staticmethod
    def _depthwise_block(dy, w, dx, strides, dilations, pads):
        """The checked parameter block (conv_depthwise.c's DW_* order) of one geometry and
        layout, with its address: (read-only int64 array, pointer)."""
        n, oh, ow, cout = dy.shape
        nn, h, wd, c = dx.shape
        kh, kw, cw = w.shape
        if nn != n or cw != cout or c < 1 or cout % c:
            raise ValueError(f"depthwise shapes: dy {dy.shape}, dx {dx.shape}, w {w.shape}")
        if min(*strides, *dilations) < 1:
            raise ValueError(f"depthwise strides and dilations must be >= 1, got {strides}, "
                             f"{dilations}")
        ys = [s // 4 for s in dy.strides]
        xs = [s // 4 for s in dx.strides]
        wsh, wsw, _ = (s // 4 for s in w.strides)
        prm = np.array([n, *ys, oh, ow, kh, kw, cout // c, wsh, wsw, 1, *xs, h, wd, c,
                        *strides, *dilations, *pads], np.int64)
        prm.setflags(write=False)
        return prm, prm.ctypes.data

    def filter_grad_supports(self, src, dy, dw) -> bool:
        """True if filter_grad takes these operands as they are: float32 views with aligned
        strides (any layout, any channel count) and dw's channels contiguous."""
        return (self.addressable(src) and self.addressable(dy) and self.addressable(dw)
                and dw.strides[3] == 4)

    #: floats of dy one call packs at most (its chunk of pixels shrinks to fit)
    FILTER_PACK_ELEMS = 1 << 18

    def filter_grad_pack_elems(self, dy, o_width) -> int:
        """Floats of scratch that a filter_grad call over ``o_width`` channels of ``dy`` (a
        4-D view) packs dy's channel blocks into: 0 when it reads every block in place (dy's
        channels contiguous and a multiple of the vector width), else at most
        FILTER_PACK_ELEMS (the kernel's chunk of pixels shrinks to fit)."""
        vw = self.vector_width
        padded = -(-o_width // vw) * vw
        if dy.strides[3] == 4 and padded == o_width:
            return 0
        if dy.strides[3] == 4:  # only the last, partial block
            padded = padded - (o_width - 1) // self.block_width * self.block_width
        n, q, r, _ = dy.shape
        return max(padded, min(self.FILTER_PACK_ELEMS, n * q * r * padded))

    def filter_grad(self, src, dy, dw, offs_h, offs_w, step, q0=0, groups=1):
        """dw[a, b, c, g*Co + o] += sum over images n, rows q and columns r of
        src[n, (q0+q)*step[0] + offs_h[a], r*step[1] + offs_w[b], g*Cs + c] * dy[n, q, r, g*Co + o]
        for each group g, over the source positions inside src. offs_h/offs_w ascending;
        dw [th, tw, Cs, groups*Co] float32."""
        self.filter_grad_plan(src, dy, dw, offs_h, offs_w, step, q0, groups)(
            0, len(offs_h), 0, dy.shape[3] // max(groups, 1))

    def filter_grad_plan(self, src, dy, dw, offs_h, offs_w, step, q_base=0, groups=1):
        """Validate the operands of filter_grad once; returns
        ``run(a0, a1, o0, o1, pack=None, g0=0, g1=groups)``, which adds the taps rows [a0, a1)
        and output channels [o0, o1) of each group in [g0, g1) (o0 a multiple of the vector
        width, o1 too or the channels per group) to dw, so threads can share one dw by groups,
        taps or channel blocks. ``pack``: a float32 scratch array for the dy blocks the kernel
        packs (see filter_grad_pack_elems; None: the kernel allocates what it needs)."""
        n, hs, ws, cin = src.shape
        nn, q, r, cout = dy.shape
        th, tw = len(offs_h), len(offs_w)
        groups = int(groups)
        if groups < 1 or cin % groups or cout % groups:
            raise ValueError(f"{groups} groups do not divide src's {cin} and dy's {cout} "
                             f"channels")
        cs, co = cin // groups, cout // groups
        if nn != n:
            raise ValueError(f"batch mismatch: src {src.shape}, dy {dy.shape}")
        if tuple(dw.shape) != (th, tw, cs, cout):
            raise ValueError(f"dw must have shape {(th, tw, cs, cout)}, got {dw.shape}")
        if not self.filter_grad_supports(src, dy, dw):
            raise ValueError(f"unsupported operands (float32 views with aligned strides and "
                             f"dw's channels contiguous expected): src {src.dtype}{src.shape} "
                             f"strides {src.strides}, dy {dy.dtype}{dy.shape} strides "
                             f"{dy.strides}, dw {dw.dtype}{dw.shape} strides {dw.strides}")
        if not dw.flags.writeable:
            raise ValueError("dw is read-only")
        if th and tw and not self.fits(src.shape, dy.shape, offs_h, offs_w, step, q_base):
            raise ValueError(f"coordinates beyond 2^62: src {src.shape}, dy {dy.shape}, "
                             f"step {tuple(step)}")
        oh = np.ascontiguousarray(offs_h, np.int64)
        ow = np.ascontiguousarray(offs_w, np.int64)
        ss = [st // 4 for st in src.strides]
        ds = [st // 4 for st in dy.strides]
        wst = [st // 4 for st in dw.strides[:3]]
        fixed = (*ss, hs, ws, cs)
        fixed2 = (*ds, n, q, r, co, oh.ctypes.data, th, ow.ctypes.data, tw, int(step[0]),
                  int(step[1]), int(q_base))
        sptr, dptr, wptr = src.ctypes.data, dy.ctypes.data, dw.ctypes.data
        gstr = (cs * ss[3], co * ds[3], co)  # one group further in src, dy and dw
        fn = self._fgrad
        keep = (src, dy, dw, oh, ow)

        def run(a0, a1, o0, o1, pack=None, g0=0, g1=groups):
            if not 0 <= g0 <= g1 <= groups:
                raise ValueError(f"groups [{g0}, {g1}) outside [0, {groups})")
            if pack is None:
                ptr, size = None, 0
            else:
                if pack.dtype != np.float32 or not pack.flags.c_contiguous \
                        or not pack.flags.writeable:
                    raise ValueError(f"pack must be a writeable contiguous float32 array, got "
                                     f"{pack.dtype} contiguous={pack.flags.c_contiguous}")
                ptr, size = pack.ctypes.data, pack.size
            rc = fn(sptr + 4 * g0 * gstr[0], *fixed, dptr + 4 * g0 * gstr[1], *fixed2,
                    wptr + 4 * g0 * gstr[2], *wst, a0, a1, o0, o1, g1 - g0, *gstr, ptr, size)
            if rc == -2:
                raise errors.ResourceExhaustedError(
                    "native filter gradient: out of memory for the row tables")
            if rc != 0:
                raise ValueError(f"native filter gradient refused its arguments (code {rc}): "
                                 f"taps [{a0}, {a1}) of {th}, channels [{o0}, {o1}) of {co} "
                                 f"(start a multiple of {self.vector_width}, end too or {co})")

        run.operands = keep
        return run


def _self_check_filter_grad(nat: NativeConv):
    """The filter gradient against an einsum: strided steps, taps partly outside the source on
    every side, a full channel block and a partial one ending inside a vector (packed, its
    padded lanes never written), dy and src read in place (NHWC) or strided (NCHW)."""
    rng = np.random.default_rng(8)
    co = nat.block_width + nat.vector_width + 3
    offs_h, offs_w, step, q0 = [-1, 0, 1], [-1, 0, 1], (2, 1), 1
    n, hs, ws, cs, q, r = 2, 7, 6, 3, 3, 6
    src = rng.standard_normal((n, hs, ws, cs)).astype(np.float32)
    dy = rng.standard_normal((n, q, r, co)).astype(np.float32)
    pad = np.zeros((n, hs + 2, ws + 2, cs), np.float64)
    pad[:, 1:-1, 1:-1] = src
    ref = np.zeros((3, 3, cs, co))
    for a, dh in enumerate(offs_h):
        for b, dw_ in enumerate(offs_w):
            rows = [(q0 + i) * step[0] + dh + 1 for i in range(q)]
            cols = [j * step[1] + dw_ + 1 for j in range(r)]
            ref[a, b] = np.einsum("nqrc,nqro->co", pad[:, rows][:, :, cols], dy)

    def nchw(a):
        return np.ascontiguousarray(a.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)

    for layout in ("NHWC", "NCHW"):
        s, d = (src, dy) if layout == "NHWC" else (nchw(src), nchw(dy))
        dw = np.zeros((3, 3, cs, co), np.float32)
        nat.filter_grad(s, d, dw, offs_h, offs_w, step, q0)
        if not np.allclose(dw, ref, rtol=1e-4, atol=1e-4):
            raise AssertionError(f"self-check mismatch (filter gradient, {layout}): max error "
                                 f"{np.abs(dw - ref).max()}")


def _self_check_backprop_input(nat: NativeConv):
    """The one-call input gradient against a direct loop: stride 2 with padding (four phases,
    taps partly outside dy), a full and a padded channel block, two groups, two threads."""
    rng = np.random.default_rng(9)
    g, cig, cog, k, s, p = 2, nat.vector_width + 3, 5, 3, 2, 1
    n, h, wd = 2, 7, 6
    oh, ow = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
    w = rng.standard_normal((k, k, cig, g * cog)).astype(np.float32)
    dy = rng.standard_normal((n, oh, ow, g * cog)).astype(np.float32)
    dx = np.full((n, h, wd, g * cig), np.nan, np.float32)
    nat.backprop_input(dy, nat.pack(w, 3, g, 2), dx, g, (k, k), (s, s), (1, 1), (p, p), 2)
    ref = np.zeros((n, h + 2 * p + s, wd + 2 * p + s, g * cig))
    for a in range(k):
        for b in range(k):
            for gi in range(g):
                ref[:, a:a + s * oh:s, b:b + s * ow:s, gi * cig:(gi + 1) * cig] += np.einsum(
                    "nqrj,ij->nqri", dy[..., gi * cog:(gi + 1) * cog],
                    w[a, b, :, gi * cog:(gi + 1) * cog].astype(np.float64))
    ref = ref[:, p:p + h, p:p + wd]
    if not np.allclose(dx, ref, rtol=1e-4, atol=1e-4):
        raise AssertionError(f"self-check mismatch (input gradient): max error "
                             f"{np.nanmax(np.abs(dx - ref))}")


def _self_check(nat: NativeConv):
    """Compare the kernels with numpy on small strided, padded, multi-block problems."""
    rng = np.random.default_rng(7)
    co = nat.block_width + nat.vector_width  # a full and a partial block
    src = rng.standard_normal((2, 5, 19, 6)).astype(np.float32)
    w = rng.standard_normal((2, 3, 6, co)).astype(np.float32)
    offs_h, offs_w, step = [-1, 1], [-2, 0, 2], (1, 2)
    out = np.full((2, 4, 10, co), np.nan, np.float32)
    nat.gather_conv(src, out, offs_h, offs_w, step, 1, nat.pack_weights(w), cchunk=4)
    pad = np.zeros((2, 5 + 4, 19 + 8, 6), np.float64)
    pad[:, 2:7, 4:23] = src
    ref = np.zeros(out.shape)
    for a, dh in enumerate(offs_h):
        for b, dw in enumerate(offs_w):
            rows = [(1 + q) * step[0] + dh + 2 for q in range(4)]
            cols = [r * step[1] + dw + 4 for r in range(10)]
            ref += np.einsum("nqrc,co->nqro", pad[:, rows][:, :, cols], w[a, b])
    if not np.allclose(out, ref, rtol=1e-4, atol=1e-4):
        raise AssertionError(f"self-check mismatch: max error {np.nanmax(np.abs(out - ref))}")
    _self_check_filter_grad(nat)
    _self_check_backprop_input(nat)
    _self_check_depthwise(nat)


def _self_check_depthwise(nat: NativeConv):
    """The depthwise input gradient against a direct loop: strides (2, 3) with padding (partial
    column taps, taps outside dy at both row ends), M = 2 (per pixel) and M = 1 (shared
    per-phase tap lists), 5 channels (a block of 4 and one more), in channels-contiguous,
    columns-contiguous and strided layouts. A library without the kernel passes (unused)."""
    if not nat.has_depthwise:
        return

    def view(a, layout):  # a copy of the NHWC array a as a logical-NHWC view of layout
        if layout == "NHWC":
            return a.copy()
        nn, hh, ww, cc = a.shape
        b = np.full((nn, cc, hh, 2 * ww), np.nan, np.float32)  # NCHW, twice the columns
        v = (b[..., ::2] if layout == "strided" else b[..., :ww]).transpose(0, 2, 3, 1)
        v[...] = a
        return v

    rng = np.random.default_rng(9)
    n, oh, ow, c, kh, kw, st, pd, h, wd = 1, 4, 6, 5, 3, 4, (2, 3), (1, 2), 8, 17
    for m in (2, 1):
        dy = rng.standard_normal((n, oh, ow, c * m)).astype(np.float32)
        w = rng.standard_normal((kh, kw, c * m)).astype(np.float32)
        ref = np.zeros((n, h, wd, c * m))
        for i in range(oh):
            for a in range(kh):
                hh = i * st[0] + a - pd[0]
                for j in range(ow):
                    for b in range(kw):
                        xx = j * st[1] + b - pd[1]
                        if 0 <= hh < h and 0 <= xx < wd:
                            ref[:, hh, xx] += dy[:, i, j] * w[a, b].astype(np.float64)
        ref = ref.reshape(n, h, wd, c, m).sum(-1)
        for layout in ("NHWC", "NCHW", "strided"):  # channel, column, both strides not 1
            src = view(dy, layout)
            out = view(np.full((n, h, wd, c), np.nan, np.float32), layout)
            nat.depthwise_plan(src, w, out, st, (1, 1), pd)()
            if not np.allclose(out, ref, rtol=1e-4, atol=1e-4):
                raise AssertionError(f"self-check mismatch (depthwise, M={m}, {layout}): max "
                                     f"error {np.nanmax(np.abs(out - ref))}")


def _load_now():
    """(NativeConv or None, reason or None), building the library if needed."""
    if os.environ.get("OPGRAPH_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None, "disabled by OPGRAPH_NATIVE"
    cc = _compiler()
    if cc is None:
        return None, "no C compiler found (set CC)"
    try:
        path, scratch = _build(cc, _cache_dir())
        try:
            nat = NativeConv(ctypes.CDLL(str(path)))
        finally:
            if scratch is not None:  # a private build: the loaded library needs no file
                shutil.rmtree(scratch, ignore_errors=True)
        _self_check(nat)
    except Exception as e:  # any failure means: use the numpy algorithms
        return None, f"{type(e).__name__}: {e}"
    return nat, None


def load():
    """The compiled kernel (a NativeConv), or None when unavailable (see unavailable_reason).

    The first caller builds it (bounded by the build timeout); callers on other threads that
    arrive during the build get None at once (the numpy algorithms run meanwhile)."""
    if "lib" in _state:
        return _state["lib"]
    with _lock:
        if "lib" in _state:
            return _state["lib"]
        if _state.get("building"):
            return None
        _state["building"] = token = object()
    nat, reason = None, "the build was interrupted"
    try:
        nat, reason = _load_now()
    finally:
        with _lock:
            if _state.get("building") is token:  # not reset meanwhile (tests)
                del _state["building"]
                _state["lib"], _state["reason"] = nat, reason
    return nat


def unavailable_reason():
    """Why load() returned None (None if it did not, or was not called yet)."""
    if "lib" not in _state and _state.get("building"):
        return "the compiled kernel is being built by another thread"
    return _state.get("reason")


def _reset():
    """Forget the loaded state (tests)."""
    with _lock:
        _state.clear()
