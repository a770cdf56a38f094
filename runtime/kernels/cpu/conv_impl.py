"""2-D convolution math for the CPU runtime: forward conv2d, its input gradient and its filter
gradient.

Interface
---------
``conv2d_forward(x, w, strides, dilations, pads_before, out_hw, data_format)``,
``conv2d_backprop_input(dy, w, input_shape, strides, dilations, pads_before, data_format)`` and
``conv2d_backprop_filter(x, dy, filter_shape, strides, dilations, pads_before, data_format)``;
the filter is always HWIO ``[kh, kw, cin_per_group, cout]``, ``groups = C_in // cin_per_group``.
Row ``h`` of the input is read by output row ``i`` through tap ``di`` when
``h == i*sh + di*dh - pad_top``; positions outside the input read zero (so the padding after is
implicit). ``conv2d_backprop_input`` is the exact adjoint of ``conv2d_forward``.
``conv2d_backprop_filter`` is the adjoint of ``conv2d_forward`` in the filter:
<conv2d(x, w), dy> == <w, conv2d_backprop_filter(x, dy)>.
``conv2d_backprop_input_workspace_bytes(...)`` and ``conv2d_backprop_filter_workspace_bytes(...)``
bound the temporary memory of a call; ``choose_backprop_input_algorithm(...)`` says which
algorithm an input-gradient call uses.

Dtypes: float32/float64 natively; float16 and bfloat16 (``ml_dtypes``) in float32, rounded once
when the result is written; integers accumulate in int64 and wrap to the input type like C++.

Semantics every path keeps (tests/reliability/test_conv_differential.py):

* Non-finite values propagate as in a direct loop: a NaN or inf in x, w or dy reaches exactly
  the outputs whose sum contains it. The paths that multiply structural zeros (padding, the
  holes of a dilated dy, the zero columns of the flat scatter) by the weights run only with
  finite weights; otherwise the compiled kernel (it skips taps outside the source) or
  ``_exact_block`` (one GEMM per tap over exactly the outputs whose source lies inside) runs.
  Winograd blocks (their transforms mix neighbouring inputs) need finite data too. So results
  depend on the batch size or the algorithm only through float rounding.
  For the filter gradient the zero-padded paths (patches, padded per-tap operands) multiply
  padding by dy and so run only with finite dy; the compiled kernel and the exact per-tap GEMMs
  read nothing outside x.
* Only the filter taps that read inside the input for some output take part (and, for the
  input gradient, only the dy rows and columns that reach dx): a huge dilation or padding
  shrinks the problem instead of growing zero-padded temporaries to the dilated extent. A block
  whose zero-bordered window or staging copy would hold far more than it reads (huge strides,
  far-apart taps, very wide zero-stride views) runs ``_exact_block``, which copies nothing it
  does not read. Zero-stride (broadcast) operands are read in place, never materialised beyond
  the blocks; the weights are converted only for the taps used.
* Every scratch buffer goes through runtime.memory.check_allocation (ResourceExhaustedError
  beyond the limit), and a MemoryError from numpy is raised as ResourceExhaustedError.
* Sizes, strides and offsets beyond INT_MAX are exact: the compiled kernel takes 64-bit
  integers, and coordinates near 2^63 leave it for the numpy engines (Python integers).

Design (the measurements behind it are in docs/conv_kernel.md)
--------------------------------------------------------------
Machine: 2 cores, AVX-512, 2 MiB L2 per core; numpy float32 GEMM peak 360-400 GFLOP/s with both
cores, ~195 on one; on the thin GEMM shapes of a convolution ~145 (A: N=64) to ~180 (C) per core.

* ``native`` (the default wherever it applies): a direct convolution compiled from
  conv_gather.c on first use (native.py: the machine's C compiler, cached, self-checked; numpy
  algorithms below when there is no compiler or ``OPGRAPH_NATIVE=0``). OpenBLAS runs the thin
  GEMMs of A-D at half its peak, and no numpy arrangement of the data closed that gap (see the
  ``gather`` figures below). The kernel keeps a 14-pixel x 32-channel output tile in AVX-512
  registers and streams packed weights, with the stride phases and tap offsets of the gather
  plan below and no im2col: ~200 GFLOP/s per core on every shape measured. It reads and writes
  float32 NHWC or NCHW views in place; float16/bfloat16 blocks go through float32 buffers.
  Applies to float32-compute convolutions; a grouped one runs as one job per group over
  channel slices. Output channels per group that are not a multiple of the vector width (16:
  FCN's 21 classes) are padded: zero weight columns, a per-block staging buffer of the padded
  width, only the real channels written back (each channel is its own vector lane, so the
  padded lanes' 0 * inf cannot reach a real output). The input-gradient algorithm choice still
  says "native" only for exact multiples; its "gather" plan runs such jobs natively anyway.
  Among many jobs (stride phases, 4 or more per thread) a job is not cut just to feed threads.
  Result: A 4.7-5.5 ms, B 5.9-6.8, C 17-20, D 0.9-1.07 (was 9.1, 11, 24-27, 2.3 with the
  numpy algorithms); 1.0-1.2x torch's oneDNN on A-D.
* Blocked: a GEMM over a 58 MB im2col matrix built up front ran at 77 GFLOP/s on both cores
  (bandwidth-bound); the same work in blocks whose operand was just written runs at ~290. So
  each block of output rows is gathered into a small per-thread buffer and consumed at once by a
  GEMM that writes the result in place (``matmul(..., out=...)``). Buffers are kept per thread
  between calls (fresh multi-MiB buffers fault pages that serialize the threads: C 29.5 ms ->
  24.6 ms) and bounded by the block plan, not by the batch.
* Both cores: two Python threads process blocks (numpy and ctypes drop the GIL), with OpenBLAS
  set to one thread meanwhile through its own ``set_num_threads`` in numpy's bundled library
  (ctypes; no new dependency; reference counted and restored). A-like loop: 10.2 ms that way,
  15.3 ms with one Python thread and 2-thread BLAS, 16.6 ms oversubscribed (2 x 2 threads).
* The numpy algorithms for the input gradient, chosen per call where ``native`` does not apply:

  - ``direct`` (fewer than TINY_MACS multiply-adds, no groups): zero-dilated padded dy, one
    strided im2col view, one GEMM; a handful of numpy calls (E: 0.09 ms -> 0.01 ms).
  - ``gather``: sub-pixel split of strides into ``sh*sw`` phases, each a stride-1 correlation of
    padded dy with the taps reaching it; per block one strided copy (tap offsets are arithmetic,
    so the patches are a single ``as_strided`` view) and one GEMM writing dx. Traffic
    ~ |dx pixels| * kh*kw*Cout/(sh*sw). A 9.1 ms, C 24 ms, D 2.4 ms.
  - ``scatter`` (GEMM + col2im): ``col = dy @ W^T`` per block, one vectorised add per tap into dx
    (pixel-major: any stride, adds run over channel vectors) or into per-phase accumulators
    (channel-first: the adds run over image rows; F 17.7 -> 8.6 ms). With few input channels
    and one group, the ``flat`` layout pads dy's rows with zeros to the accumulators' row
    width, so each tap is ONE contiguous add at a flat offset (the zero columns make what
    spills past a row's end zero): F 8.6 -> 6.9 ms. Traffic ~ |dy pixels| * kh*kw*Cin.
    Chosen for F (3 input channels: ``native`` does not apply) and, without ``native``, B.
  - Winograd F(2x2,3x3) blocks (opt-in via WINOGRAD_MIN_CHANNELS): 2.25x fewer multiplies, but
    the transforms are memory-bound here: C 34-37 ms against 24-26 ms, so off by default.
  - one GEMM per tap straight from the padded block, no im2col (opt-in via
    PER_TAP_MAX_CHANNELS): even on A, slower on D (2.8 vs 2.4 ms), so off by default.

  The forward conv uses the same engines with strided taps (``native`` when it applies).
  Temporary memory for C at batch 256: 6.75 MiB measured (bound 16.6 MiB; dx is 49 MiB).
* The filter gradient (section "backprop filter" below): the compiled
  ``opgraph_filter_grad_f32`` wherever the compute is float32 (any channel count: a partial
  last channel block is padded in the kernel, only its real channels written; groups in one
  call; NHWC and NCHW float32 operands read in place), threads splitting dw by groups or
  channel blocks, else tap rows, else pixels with per-thread accumulators (_filter_plan);
  it is faster than the one-GEMM path even for tiny problems. Otherwise numpy: one im2col
  GEMM for tiny problems, else per block of output rows per-tap GEMMs ``x_tap^T @ dy`` (one
  patch GEMM for few input channels), over exactly the pixels inside x when dy is not finite.
  AVX2, one thread, against torch.nn.grad.conv2d_weight (benchmarks/conv_filter_grad.py):
  1.0-2x on 3x3/4x4 layers of 64-512 channels, 0.85-1.0 on 1x1 and 21-class layers.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os
import threading
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from opgraph import errors
from runtime.kernels.cpu import native as _native
from runtime.memory import check_allocation

try:  # optional bfloat16
    import ml_dtypes as _ml_dtypes

    _BF16 = np.dtype(_ml_dtypes.bfloat16)
except Exception:  # pragma: no cover - optional dependency
    _BF16 = None

__all__ = [
    "conv2d_forward",
    "conv2d_backprop_input",
    "conv2d_backprop_filter",
    "conv2d_backprop_input_workspace_bytes",
    "conv2d_backprop_filter_workspace_bytes",
    "choose_backprop_input_algorithm",
    "release_workspaces",
]

# --------------------------------------------------------------------------------------------
# tunables (module-level so tests can force paths)
# --------------------------------------------------------------------------------------------
#: Most bytes of the per-thread patch/col buffer of one block.
BLOCK_BYTES = 1 << 23
#: GEMM rows aimed at per block (pixels of output); blocks stay near the 2 MiB L2 for small K.
TARGET_ROWS = 1024
#: Bytes of the per-thread col buffer of one scatter block.
SCATTER_BYTES = 1 << 22
#: The most threads a call uses (the compiled kernels' thread pool holds up to 64).
MAX_THREADS = 64


def _default_num_threads():
    """``$OPGRAPH_NUM_THREADS`` if set (a positive integer), else the CPUs this process may
    run on; at most MAX_THREADS."""
    env = os.environ.get("OPGRAPH_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
            if n < 1:
                raise ValueError
            return min(n, MAX_THREADS)
        except ValueError:
            warnings.warn(f"OPGRAPH_NUM_THREADS must be a positive integer, got {env!r}; "
                          f"using the CPU count", RuntimeWarning, stacklevel=2)
    cpus = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else (os.cpu_count() or 1))
    return max(1, min(cpus, MAX_THREADS))


#: Number of worker threads (the calling thread counts as one): set_num_threads changes it.
NUM_THREADS = _default_num_threads()
#: Below this many multiply-adds a call runs on the calling thread alone (thread hand-off ~50 us);
#: above it each thread gets at least half this much work (so small calls on a many-core
#: machine use a few threads, not all).
PARALLEL_MIN_MACS = 1 << 22


def num_threads() -> int:
    """The most threads one convolution call uses (the calling thread counts as one)."""
    return NUM_THREADS


def set_num_threads(n: int) -> None:
    """Let convolution calls use up to ``n`` threads (1 to MAX_THREADS), as
    ``$OPGRAPH_NUM_THREADS`` does at import; affects calls that start afterwards."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_THREADS:
        raise ValueError(f"set_num_threads: expected an integer in [1, {MAX_THREADS}], got {n!r}")
    global NUM_THREADS
    NUM_THREADS = int(n)


def _threads(work, minimum=None):
    """Threads for a call of ``work`` multiply-adds: 1 below ``minimum`` (default
    PARALLEL_MIN_MACS), else up to NUM_THREADS with at least minimum/2 of work each."""
    minimum = PARALLEL_MIN_MACS if minimum is None else minimum
    if NUM_THREADS <= 1 or work < minimum:
        return 1
    return int(min(NUM_THREADS, max(2, 2 * work // max(1, minimum))))
#: Force an algorithm: None (auto), "direct", "native", "gather", "scatter", "subpixel" or
#: "winograd" (where it applies, else the automatic choice). The forward conv honours "direct"
#: and "native" ("winograd": its compiled kernel where it applies); any other value runs its
#: numpy gather engine. "native" runs the jobs the compiled kernel takes and leaves the others
#: to the numpy gather engine.
FORCE_ALGORITHM = None
#: Use the compiled direct kernel (native.py) where it applies; False = numpy algorithms only.
USE_NATIVE = True
#: Input channels per weight chunk of the compiled kernel (0 = the kernel's own choice).
NATIVE_CHANNEL_CHUNK = 0
#: dx rows of a stride phase per work item of the compiled input gradient (0 = its own choice).
NATIVE_BPI_ROWS = 0
#: The compiled kernel takes dx channels per group up to this factor below its padded width.
NATIVE_LANE_WASTE = 1.55
#: Force the physical layout of the blocks: None (auto), "pm" (pixel-major), "cf" (channel-first)
#: or "flat" (scatter only: whole-row flat adds; channel-first elsewhere).
FORCE_LAYOUT = None


# --------------------------------------------------------------------------------------------
# threads and OpenBLAS control
# --------------------------------------------------------------------------------------------
class _BlasThreads:
    """Set OpenBLAS (numpy's bundled copy) to one thread while our own threads run."""

    def __init__(self):
        self._set = self._get = None
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = None
        try:
            npdir = os.path.dirname(np.__file__)
            paths = []
            for libdir in (os.path.join(npdir, os.pardir, "numpy.libs"),  # Linux wheels
                           os.path.join(npdir, ".dylibs")):  # macOS wheels
                paths += sorted(glob.glob(os.path.join(libdir, "*openblas*")))
            for path in paths:
                lib = ctypes.CDLL(path)
                for suffix in ("64_", "", "_64"):
                    for prefix in ("scipy_openblas_", "openblas_"):
                        s = getattr(lib, prefix + "set_num_threads" + suffix, None)
                        g = getattr(lib, prefix + "get_num_threads" + suffix, None)
                        if s is not None and g is not None:
                            s.restype = None
                            s.argtypes = [ctypes.c_int]
                            g.restype = ctypes.c_int
                            self._set, self._get = s, g
                            return
        except Exception:  # pragma: no cover - platform dependent
            self._set = self._get = None

    @property
    def available(self):
        return self._set is not None

    def __enter__(self):
        with self._lock:
            if self._depth == 0:
                self._saved = self._get()
                self._set(1)
            self._depth += 1

    def __exit__(self, *exc):
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                self._set(self._saved)


_BLAS = _BlasThreads()
_POOL = None
_POOL_WORKERS = 0  # (its thread count)
_POOL_LOCK = threading.Lock()


def _pool(workers):
    """The shared executor, with at least ``workers`` threads (grown when set_num_threads
    raised the count; the old one finishes its queued work and exits)."""
    global _POOL, _POOL_WORKERS
    with _POOL_LOCK:
        if _POOL is None or _POOL_WORKERS < workers:
            _POOL_WORKERS = max(1, workers)
            old, _POOL = _POOL, ThreadPoolExecutor(max_workers=_POOL_WORKERS,
                                                   thread_name_prefix="opgraph-conv")
            if old is not None:
                old.shutdown(wait=False)
        return _POOL


_TLS = threading.local()
#: Per-thread scratch buffers are kept between calls (re-faulting fresh pages in every call
#: costs more than the copies) unless they exceed this many bytes in total.
KEEP_WORKSPACE_BYTES = 32 << 20


class _Workspace(dict):
    """A thread's scratch buffers by name (a dict subclass so it can be weakly referenced:
    the buffers go away with the thread)."""

    __slots__ = ("__weakref__",)
    __hash__ = object.__hash__  # identity, so a WeakSet can hold it

    def __eq__(self, other):
        return self is other


_ALL_WS = weakref.WeakSet()


def _workspace():
    ws = getattr(_TLS, "ws", None)
    if ws is None:
        ws = _TLS.ws = _Workspace()
        with _POOL_LOCK:
            _ALL_WS.add(ws)
    return ws


def _trim_workspace(ws):
    if sum(b.nbytes for b in ws.values()) > KEEP_WORKSPACE_BYTES:
        ws.clear()


def release_workspaces():
    """Drop every thread's cached scratch buffers. Call only while no convolution runs."""
    with _POOL_LOCK:
        for ws in list(_ALL_WS):
            ws.clear()


def _run_tasks(tasks, worker, nthreads):
    """Run worker(ws, task) for each task; ws is a per-thread workspace dict."""
    if nthreads <= 1 or len(tasks) <= 1:
        ws = _workspace()
        for t in tasks:
            worker(ws, t)
        _trim_workspace(ws)
        return
    it = iter(tasks)
    lock = threading.Lock()

    def loop():
        ws = _workspace()
        try:
            while True:
                with lock:
                    t = next(it, None)
                if t is None:
                    return
                worker(ws, t)
        finally:
            _trim_workspace(ws)

    with _BLAS:
        pool = _pool(nthreads - 1)
        futs = [pool.submit(loop) for _ in range(nthreads - 1)]
        try:
            loop()
        finally:
            for f in futs:
                f.result()


def _buf(ws, key, size, dtype):
    """A flat per-thread scratch buffer of at least ``size`` elements (reused across blocks);
    ResourceExhaustedError beyond the allocation limit (runtime.memory)."""
    b = ws.get(key)
    if b is None or b.size < size or b.dtype != dtype:
        b = None
        ws.pop(key, None)  # free the smaller one first (no transient double)
        check_allocation((max(size, 1),), np.dtype(dtype).itemsize,
                         f"convolution workspace '{key}'")
        b = np.empty(max(size, 1), dtype)
        ws[key] = b
    return b[:size]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _compute_dtype(dt):
    dt = np.dtype(dt)
    if dt == np.float64:
        return np.dtype(np.float64)
    if dt in (np.float32, np.float16) or (_BF16 is not None and dt == _BF16):
        return np.dtype(np.float32)
    if np.issubdtype(dt, np.integer) or dt == np.bool_:
        return np.dtype(np.int64)
    if np.issubdtype(dt, np.complexfloating):
        return np.dtype(np.complex128)
    return np.dtype(np.float64)


def _nhwc(a, data_format):
    return a if data_format == "NHWC" else a.transpose(0, 2, 3, 1)


def _store(dst, src):
    """dst[...] = src, rounding once to dst's dtype (integers wrap like C++)."""
    np.copyto(dst, src, casting="unsafe")


def _blasable2d(a):
    """True if a 2-D array can be handed to BLAS without a copy (numpy's own rule)."""
    if a.ndim != 2:
        return False
    isz = a.itemsize
    s0, s1 = a.strides
    m, n = a.shape
    if m <= 1 or n <= 1:
        return (s1 == isz or n <= 1) and (s0 % isz == 0)
    if s1 == isz:
        return s0 % isz == 0 and s0 >= n * isz
    if s0 == isz:
        return s1 % isz == 0 and s1 >= m * isz
    return False


def _as_2d(a, m, n):
    """View a (possibly strided) array as [m, n] without copying, or return None."""
    try:
        v = a.view()
        v.shape = (m, n)  # raises if a copy would be needed
    except (AttributeError, ValueError):
        return None
    return v if _blasable2d(v) else None


def _matmul_into(a, b, out, ws, key):
    """out[...] = a @ b for 2-D operands; writes straight into ``out`` when BLAS can."""
    if out.dtype == a.dtype and _blasable2d(out) and out.strides[1] == out.itemsize:
        np.matmul(a, b, out=out)
        return
    tmp = _buf(ws, key, out.shape[0] * out.shape[1], a.dtype).reshape(out.shape)
    np.matmul(a, b, out=tmp)
    _store(out, tmp)


def _ceil_div(a, b):
    return -(-a // b)


def _valid_range(q0, q1, step, off, size):
    """[lo, hi) of the q in [q0, q1) whose position q*step + off lies in [0, size)."""
    return max(q0, _ceil_div(-off, step)), min(q1, (size - 1 - off) // step + 1)


def _tap_range(k, d, s, pad, n_out, size):
    """[lo, hi) of the filter taps along one axis that read inside the input for some output:
    tap t of output i reads input position i*s + t*d - pad, i in [0, n_out). Every tap between
    lo and hi reads inside when s <= size; with a larger stride a few in between may not (the
    engines skip them per block). (0, 0) when no tap reads inside."""
    if k <= 0 or n_out <= 0 or size <= 0:
        return 0, 0
    lo = max(0, _ceil_div(pad - (n_out - 1) * s, d))
    hi = min(k, (pad + size - 1) // d + 1)
    if s > size:  # tighten the ends past taps that fall between the outputs' rows
        for _ in range(64):
            if lo < hi and not _tap_reads_inside(lo, d, s, pad, n_out, size):
                lo += 1
            elif lo < hi and not _tap_reads_inside(hi - 1, d, s, pad, n_out, size):
                hi -= 1
            else:
                break
    return (lo, hi) if lo < hi else (0, 0)


def _tap_reads_inside(t, d, s, pad, n_out, size):
    u = pad - t * d  # output i reads inside iff u <= i*s <= u + size - 1
    m = max(0, _ceil_div(u, s))
    return m <= n_out - 1 and m * s <= u + size - 1


def _reaching_range(k, d, s, pad, n_out, size):
    """[lo, hi) of the outputs i in [0, n_out) that some tap t in [0, k) maps inside
    [0, size) (position i*s + t*d - pad); the outputs outside read only padding."""
    lo = max(0, _ceil_div(pad - (k - 1) * d, s))
    hi = min(n_out, (pad + size - 1) // s + 1)
    return (lo, hi) if lo < hi else (0, 0)


#: The exponent bits of the half-precision types: a value is finite unless all are set.
_HALF_EXPONENT = {"float16": 0x7C00, "bfloat16": 0x7F80}


#: Values of the bit test's temporary at a time (_half_finite).
_FINITE_CHUNK = 1 << 16


def _half_finite(u, mask):
    """Whether no value of ``u`` (half-precision bits as uint16) has every ``mask`` bit set,
    tested in pieces of at most _FINITE_CHUNK values (the temporary stays small)."""
    if u.size <= _FINITE_CHUNK:
        return u.size == 0 or int(np.bitwise_and(u, mask).max()) < mask
    if u.flags.c_contiguous:
        u = u.reshape(-1)
    per = u.size // u.shape[0]  # (values under one index of the first axis)
    if per > _FINITE_CHUNK:
        return all(_half_finite(u[i], mask) for i in range(u.shape[0]))
    step = _FINITE_CHUNK // per
    return all(_half_finite(u[i:i + step], mask) for i in range(0, u.shape[0], step))


def _all_finite(a):
    """True if every value of ``a`` is finite (integers always are). Zero-stride (broadcast)
    axes are looked at once."""
    if a.dtype.kind in "biu" or a.size == 0:
        return True
    if 0 in a.strides:
        a = a[tuple(0 if st == 0 and d > 1 else slice(None)
                    for st, d in zip(a.strides, a.shape))]
    mask = _HALF_EXPONENT.get(a.dtype.name)
    if mask is not None:  # (numpy tests half precision a value at a time: 10x slower)
        return _half_finite(a.view(np.uint16), mask)
    try:
        return bool(np.isfinite(a).all())
    except TypeError:  # a dtype without an isfinite loop (bfloat16 builds)
        return bool(np.isfinite(a.astype(np.float32)).all())


#: Buffers up to this many bytes skip runtime.memory.check_allocation (a few microseconds of a
#: tiny convolution); numpy's own MemoryError still becomes ResourceExhaustedError.
SMALL_BUFFER_BYTES = 1 << 20


def _guard(elems, itemsize, shape, what):
    """check_allocation for a buffer of ``elems`` elements, skipped for small ones."""
    if elems * itemsize > SMALL_BUFFER_BYTES:
        check_allocation(shape, itemsize, what)


def _oom(e, what):
    """A plain MemoryError from numpy as the graph's ResourceExhaustedError."""
    return errors.ResourceExhaustedError(f"OOM while computing {what}: {e}")


# --------------------------------------------------------------------------------------------
# prepared filters: a caller that passes the same immutable filter every call (a constant)
# hands in a ``cache`` dict; what is derived from the filter alone is kept there per geometry
# --------------------------------------------------------------------------------------------
#: Geometries whose prepared filters one cache dict keeps (more: it starts over).
FILTER_CACHE_GEOMETRIES = 8


def _filter_memo(cache, key):
    """The dict of prepared filter values for ``key`` (the geometry and the engine settings)
    in ``cache``, or None without a cache."""
    if cache is None:
        return None
    key = (key, USE_NATIVE, FORCE_ALGORITHM, FORCE_LAYOUT,
           _native.load() if USE_NATIVE else None)  # (held: its id stays unique)
    memo = cache.get(key)
    if memo is None:
        if len(cache) >= FILTER_CACHE_GEOMETRIES:
            cache.clear()
        memo = cache.setdefault(key, {})
    return memo


def _memoized(memo, name, make):
    """``make()``, kept in ``memo`` (read-only) under ``name`` when there is one."""
    if memo is None:
        return make()
    value = memo.get(name)
    if value is None:
        value = make()
        if isinstance(value, np.ndarray) and value.flags.writeable:
            value = value.view()
            value.setflags(write=False)
        value = memo.setdefault(name, value)
    return value


def _filter_finite(memo, w):
    """_all_finite(w), kept in ``memo``; asked only by the engines that need finite weights
    (a whole pass over a large filter costs about as much as packing it)."""
    return _memoized(memo, "finite", lambda: _all_finite(w))


# --------------------------------------------------------------------------------------------
# the gather engine: out[n, q, r, :] = sum_t src[n, q*sh + oh_t, r*sw + ow_t, :] @ W_t
# --------------------------------------------------------------------------------------------
class _GatherJob:
    """One gather-GEMM: out (logical NHWC view [N, Q, R, Co]) from src (logical NHWC view
    [N, Hs, Ws, Cs]) through taps with row offsets ``offs_h`` and column offsets ``offs_w``
    (src coordinates, may be out of range = zero), output steps ``step``; weights
    ``wk[g]`` of shape [Th, Tw, Csg, Cog] (compute dtype)."""

    __slots__ = ("src", "out", "offs_h", "offs_w", "step", "wk", "groups", "wmat", "wino",
                 "wtap", "native", "plan", "exact")

    def __init__(self, src, out, offs_h, offs_w, step, wk, groups, wk_sorted=False):
        self.src, self.out = src, out
        # taps sorted by ascending offset (the copy relies on it; K order is free)
        oh_ord = sorted(range(len(offs_h)), key=lambda i: offs_h[i])
        ow_ord = sorted(range(len(offs_w)), key=lambda i: offs_w[i])
        self.offs_h = [offs_h[i] for i in oh_ord]
        self.offs_w = [offs_w[i] for i in ow_ord]
        if not wk_sorted and (oh_ord != sorted(oh_ord) or ow_ord != sorted(ow_ord)):
            wk = wk[:, oh_ord][:, :, ow_ord]
        self.step, self.wk, self.groups = step, wk, groups
        self.wino = None
        self.wtap = None
        self.native = None
        self.plan = None  # the compiled kernel's run(n0, n1, q0, q1) when no staging is needed
        self.exact = False  # every block through _exact_block (non-finite weights)


def _gather_units(job, cdt):
    """Split a job's output into blocks (n0, n1, q0, q1): about TARGET_ROWS GEMM rows each
    (the single-thread GEMM reaches ~150-180 GFLOP/s from ~800 rows on), at most BLOCK_BYTES
    of patches, and enough blocks to keep both threads busy."""
    n, q, r, _ = job.out.shape
    t = len(job.offs_h) * len(job.offs_w)
    cs = job.src.shape[3]
    row_bytes = max(1, r * t * cs * cdt.itemsize)  # patches of one output row
    rows = max(1, min(BLOCK_BYTES // row_bytes, -(-TARGET_ROWS // max(r, 1))))
    return _row_units(n, q, rows, even=job.wino is not None)


#: Bytes of source rows and output rows one block of the compiled kernel aims at: it sweeps
#: them once per block of output channels, so they should stay in the 2 MiB L2 with the weights.
NATIVE_BLOCK_BYTES = 1 << 19


def _native_units(job, njobs=1):
    """Blocks of a job of the compiled kernel; among ``njobs`` jobs (4 per thread or more: many
    stride phases) a job is not cut further only to give every thread blocks."""
    n, q, r, co = job.out.shape
    _, _, wsz, cs = job.src.shape
    row_bytes = 4 * (wsz * cs * job.step[0] + r * co)
    threads = 1 if njobs >= 4 * NUM_THREADS else None
    return _row_units(n, q, max(1, NATIVE_BLOCK_BYTES // max(row_bytes, 1)), threads=threads)


def _row_units(n, q, rows, even=False, threads=None):
    """Blocks (n0, n1, q0, q1) of about ``rows`` output rows: whole images when a block holds
    one or more, else balanced row chunks of one image (an even count with ``even``); at least
    two blocks per thread (``threads``, default NUM_THREADS) when there are enough rows."""
    total_rows = n * q
    threads = NUM_THREADS if threads is None else threads
    if threads > 1 and total_rows >= 2 * threads:
        rows = max(1, min(rows, total_rows // (2 * threads)))
    units = []
    if rows >= q:
        per = max(1, rows // max(q, 1))
        for n0 in range(0, n, per):
            units.append((n0, min(n, n0 + per), 0, q))
    else:
        nchunk = -(-q // rows)
        rows = -(-q // nchunk)
        if even:
            rows += rows % 2
        for n0 in range(n):
            for q0 in range(0, q, rows):
                units.append((n0, n0 + 1, q0, min(q, q0 + rows)))
    return units


def _gather_run(jobs, cdt, layout, nthreads, memo=None):
    tasks = []
    split = _split_groups(jobs, cdt, tagged=True)
    for idx, job in split:
        n, q, r, co = job.out.shape
        if n == 0 or q == 0 or r == 0 or co == 0:
            continue
        t = len(job.offs_h) * len(job.offs_w)
        if t == 0 or job.src.shape[3] == 0:
            job.out[...] = 0
            continue
        g = job.groups
        csg = job.src.shape[3] // g
        cog = co // g
        th, tw = len(job.offs_h), len(job.offs_w)
        wk = job.wk
        nat = _native_for(job, cdt)

        def prepared(name, make, idx=idx):  # (memo entries per (job, group of a split))
            return _memoized(memo, (idx, name), make)

        if nat is not None:  # skips the taps outside the source: exact for any values
            job.native = nat
            cop = _native_channels(cog, nat)
            job.wmat = prepared("packed", lambda: nat.pack_weights(_pad_out_channels(wk[0],
                                                                                     cop)))
            if cop == cog and nat.addressable(job.src) and nat.addressable(job.out):
                job.plan = nat.plan(job.src, job.out, job.offs_h, job.offs_w, job.step,
                                    job.wmat, NATIVE_CHANNEL_CHUNK)
        elif not prepared("finite", lambda: _all_finite(wk)):
            # the engines below multiply zero padding by the weights: 0 * inf would be NaN
            # where a direct convolution has none
            job.exact = True
        elif _taps_ok(job, layout):
            job.wtap = prepared("taps", lambda: np.ascontiguousarray(wk[0]))  # [th,tw,cs,co]
            job.wmat = None
        elif _winograd_ok(job, cdt, layout) and _all_finite(job.src):
            # (its transforms mix neighbouring inputs: inf - inf would spread NaN)
            job.wino = prepared("winograd", lambda: _winograd_filter(wk, csg, cog, cdt))
            job.wmat = None
        elif layout == "pm":  # patches [g][m, (t, c)] @ wmat[g] [(t, c), o]
            job.wmat = prepared("pm", lambda: np.ascontiguousarray(
                wk.reshape(g, th * tw * csg, cog)))
        else:  # wmat[g] [o, (t, c)] @ patches[g] [(t, c), pixels]
            job.wmat = prepared("cf", lambda: np.ascontiguousarray(
                wk.reshape(g, th * tw * csg, cog).transpose(0, 2, 1)))
        for u in (_native_units(job, len(split)) if job.native is not None
                  else _gather_units(job, cdt)):
            tasks.append((job, u))
    if not tasks:
        return

    def worker(ws, task):
        if task[0].native is not None:
            _native_block(ws, task[0], task[1])
        elif task[0].exact:
            _exact_block(ws, task[0], task[1], cdt)
        elif task[0].wtap is not None:
            _taps_block(ws, task[0], task[1], cdt)
        elif task[0].wino is not None:
            _winograd_block(ws, task[0], task[1], cdt)
        else:
            _gather_block(ws, task[0], task[1], cdt, layout)

    _run_tasks(tasks, worker, nthreads)


def _winograd_filter(wk, csg, cog, cdt):
    """U = G g G^T per (source channel, output channel), float64 then compute dtype."""
    g3 = wk[0].astype(np.float64).reshape(3, 3, csg * cog)
    t1 = np.matmul(_WG_G, g3.reshape(3, -1)).reshape(4, 3, csg * cog)  # G g
    wu = np.matmul(_WG_G, t1)  # [4(a), 4(b), i*o]: (G g) G^T per a
    return wu.reshape(16, csg, cog).astype(cdt)


def _native_for(job, cdt):
    """The compiled kernel if it runs this job (float32 compute, not forced elsewhere), else
    None. It runs one group per job (see _split_groups); output channels per group that are
    not a multiple of its vector width are padded (see _native_channels)."""
    if not USE_NATIVE or FORCE_ALGORITHM not in (None, "native"):
        return None
    if cdt != np.float32:
        return None
    nat = _native.load()
    if nat is None:
        return None
    n, q, r, co = job.out.shape
    cop = _native_channels(co // job.groups, nat)
    if not nat.fits(job.src.shape, (n, q, r, cop * job.groups), job.offs_h, job.offs_w,
                    job.step):
        return None  # coordinates near 2^63: the numpy engines (Python integers) take it
    return nat


def _native_channels(cog, nat):
    """Output channels per group the compiled kernel computes: ``cog`` rounded up to its vector
    width. The extra channels have zero weights and go to a staging buffer whose real channels
    alone are written back; each output channel is its own vector lane (no lane ever reads
    another), so a NaN or inf in the padded lanes (0 * inf) cannot reach a real output."""
    vw = nat.vector_width
    return -(-cog // vw) * vw


def _pad_out_channels(wk, cop):
    """[th, tw, Cs, Co] weights with zero output channels appended up to ``cop``."""
    co = wk.shape[3]
    if co == cop:
        return wk
    padded = np.zeros(wk.shape[:3] + (cop,), np.float32)
    padded[..., :co] = wk
    return padded


def _split_groups(jobs, cdt, tagged=False):
    """Grouped jobs the compiled kernel runs become one job per group over channel slices of
    the same views (the kernel takes any strides); other jobs stay as they are. ``tagged``:
    (tag, job) pairs, tag = (index in ``jobs``, group index or None when not split)."""
    out = []
    for i, job in enumerate(jobs):
        if job.groups == 1 or _native_for(job, cdt) is None:
            out.append(((i, None), job) if tagged else job)
            continue
        g = job.groups
        csg, cog = job.src.shape[3] // g, job.out.shape[3] // g
        for gi in range(g):
            part = _GatherJob(job.src[..., gi * csg:(gi + 1) * csg],
                              job.out[..., gi * cog:(gi + 1) * cog], job.offs_h,
                              job.offs_w, job.step, job.wk[gi:gi + 1], 1)
            out.append(((i, gi), part) if tagged else part)
    return out


def _native_staging(src_shape, out_shape, unit, offs_h, step):
    """Rows [r0, r1) of src one block reads, and the staging buffer sizes (elements)."""
    n0, n1, q0, q1 = unit
    _, hs, wsz, cs = src_shape
    _, _, r, co = out_shape
    r0 = min(max(0, q0 * step[0] + offs_h[0]), hs)
    r1 = max(r0, min(hs, (q1 - 1) * step[0] + offs_h[-1] + 1))
    return r0, r1, (n1 - n0) * (r1 - r0) * wsz * cs, (n1 - n0) * (q1 - q0) * r * co


#: A block may stage (or copy as a zero-bordered window) at most WINDOW_FACTOR times the
#: source values it really reads (its patches), plus WINDOW_SLACK elements; beyond that (huge
#: strides or dilations, taps far apart, very wide zero-stride views) it runs _exact_block,
#: which copies nothing it does not read.
WINDOW_FACTOR = 4
WINDOW_SLACK = 1 << 16


def _patch_elems(job, unit):
    n0, n1, q0, q1 = unit
    return (n1 - n0) * (q1 - q0) * job.out.shape[2] * len(job.offs_h) * len(job.offs_w) \
        * (job.src.shape[3] // job.groups)


def _window_ok(job, unit, elems):
    return elems <= WINDOW_FACTOR * _patch_elems(job, unit) + WINDOW_SLACK


def _native_stages_src(job):
    return not job.native.addressable(job.src)


def _native_block(ws, job, unit):
    """One block through the compiled kernel. It reads and writes float32 views of any layout
    in place (through ``job.plan``); other dtypes (float16, bfloat16) and unaligned views go
    through float32 NHWC staging buffers of this block only (or, when the source rows to stage
    are far more than the block reads, through _exact_block)."""
    nat = job.native
    n0, n1, q0, q1 = unit
    if job.plan is not None:  # operands addressed in place
        job.plan(n0, n1, q0, q1)
        return
    src, out = job.src[n0:n1], job.out[n0:n1, q0:q1]
    offs_h = job.offs_h
    if not nat.addressable(src):
        r0, r1, nsrc, _ = _native_staging(job.src.shape, job.out.shape, unit, offs_h, job.step)
        if not _window_ok(job, unit, nsrc):
            _exact_block(ws, job, unit, np.dtype(np.float32))
            return
        buf = _buf(ws, "nsrc", nsrc, np.float32).reshape(n1 - n0, r1 - r0, *src.shape[2:])
        _store(buf, src[:, r0:r1])
        src, offs_h = buf, [o - r0 for o in offs_h]
    cop = _native_channels(out.shape[3], nat)
    if cop == out.shape[3] and nat.addressable(out):
        nat.gather_conv(src, out, offs_h, job.offs_w, job.step, q0, job.wmat,
                        NATIVE_CHANNEL_CHUNK)
    else:  # (padded output channels: only the real ones are written back)
        shape = out.shape[:3] + (cop,)
        tmp = _buf(ws, "nout", int(np.prod(shape)), np.float32).reshape(shape)
        nat.gather_conv(src, tmp, offs_h, job.offs_w, job.step, q0, job.wmat,
                        NATIVE_CHANNEL_CHUNK)
        _store(out, tmp[..., :out.shape[3]])


def _src_window(ws, src, n0, n1, r0, r1, c0, c1, cdt, layout, need_cdt, force_copy=False):
    """src[n0:n1, r0:r1, c0:c1] with zeros outside src: a view when in range (and, with
    need_cdt, already in the compute dtype), else a zero-bordered copy in a per-thread buffer.
    Returns (array, base_h, base_w): array index 0 is source row base_h / column base_w."""
    _, hs, wsz, cs = src.shape
    un = n1 - n0
    if (not force_copy and r0 >= 0 and c0 >= 0 and r1 <= hs and c1 <= wsz
            and (not need_cdt or src.dtype == cdt)):
        return src[n0:n1], 0, 0
    nr, nc = r1 - r0, c1 - c0
    if layout == "pm":
        s = _buf(ws, "pad", un * nr * nc * cs, cdt).reshape(un, nr, nc, cs)
    else:
        s = _buf(ws, "pad", un * nr * nc * cs, cdt).reshape(un, cs, nr, nc)
        s = s.transpose(0, 2, 3, 1)
    vr0, vr1 = max(r0, 0), min(r1, hs)
    vc0, vc1 = max(c0, 0), min(c1, wsz)
    if vr0 >= vr1 or vc0 >= vc1:
        s[...] = 0
    else:
        if vr0 > r0:
            s[:, : vr0 - r0] = 0
        if vr1 < r1:
            s[:, vr1 - r0:] = 0
        if vc0 > c0:
            s[:, vr0 - r0: vr1 - r0, : vc0 - c0] = 0
        if vc1 < c1:
            s[:, vr0 - r0: vr1 - r0, vc1 - c0:] = 0
        s[:, vr0 - r0: vr1 - r0, vc0 - c0: vc1 - c0] = src[n0:n1, vr0:vr1, vc0:vc1]
    return s, r0, c0


def _exact_block(ws, job, unit, cdt):
    """One block as a direct convolution: per tap, one GEMM over exactly the outputs whose
    source position lies inside the source, added to a block accumulator. Nothing is read
    outside the source (no zero padding, so no 0 * inf), and nothing is copied that the block
    does not read (strided views of the source; a compact copy only when BLAS needs one)."""
    n0, n1, q0, q1 = unit
    src = job.src
    _, hs, wsz, cs = src.shape
    _, _, r, co = job.out.shape
    sh, sw = job.step
    g = job.groups
    csg, cog = cs // g, co // g
    un, uq = n1 - n0, q1 - q0
    acc = _buf(ws, "xacc", un * uq * r * co, cdt).reshape(un, uq, r, co)
    acc[...] = 0
    for a, oh in enumerate(job.offs_h):
        qa, qb = _valid_range(q0, q1, sh, oh, hs)
        if qa >= qb:
            continue
        rows = slice(qa * sh + oh, (qb - 1) * sh + oh + 1, sh)
        for b, ow in enumerate(job.offs_w):
            ra, rb = _valid_range(0, r, sw, ow, wsz)
            if ra >= rb:
                continue
            xs = src[n0:n1, rows, slice(ra * sw + ow, (rb - 1) * sw + ow + 1, sw)]
            shape = (un, qb - qa, rb - ra)
            m = un * (qb - qa) * (rb - ra)
            tmp = _buf(ws, "xtmp", m * cog, cdt).reshape(m, cog)
            for gi in range(g):
                xg = xs[..., gi * csg:(gi + 1) * csg]
                x2 = _as_2d(xg, m, csg)
                if x2 is None or x2.dtype != cdt:
                    xb = _buf(ws, "xsrc", m * csg, cdt)
                    _store(xb.reshape(*shape, csg), xg)
                    x2 = xb.reshape(m, csg)
                np.matmul(x2, job.wk[gi, a, b], out=tmp)
                dst = acc[:, qa - q0:qb - q0, ra:rb, gi * cog:(gi + 1) * cog]
                np.add(dst, tmp.reshape(*shape, cog), out=dst)
    _store(job.out[n0:n1, q0:q1], acc)


def _exact_block_elems(job, unit):
    n0, n1, q0, q1 = unit
    _, _, r, co = job.out.shape
    m = (n1 - n0) * (q1 - q0) * r
    return {"xacc": m * co, "xtmp": m * (co // job.groups),
            "xsrc": m * (job.src.shape[3] // job.groups)}


def _gather_window(job, unit):
    """(r0, r1, c0, c1, elements copied) of the source window of a numpy gather block: 0
    copied when the window lies inside the source (read as a view)."""
    n0, n1, q0, q1 = unit
    _, hs, wsz, cs = job.src.shape
    r = job.out.shape[2]
    sh, sw = job.step
    r0 = q0 * sh + job.offs_h[0]
    r1 = (q1 - 1) * sh + job.offs_h[-1] + 1
    c0 = job.offs_w[0]
    c1 = (r - 1) * sw + job.offs_w[-1] + 1
    inside = r0 >= 0 and c0 >= 0 and r1 <= hs and c1 <= wsz
    return r0, r1, c0, c1, 0 if inside else (n1 - n0) * (r1 - r0) * (c1 - c0) * cs


def _taps_window(job, unit):
    """Elements of the zero-bordered window a per-tap block copies."""
    n0, n1, q0, q1 = unit
    r = job.out.shape[2]
    nr = q1 - q0 + job.offs_h[-1] - job.offs_h[0]
    nc = r + job.offs_w[-1] - job.offs_w[0]
    return (n1 - n0) * nr * nc * job.src.shape[3]


# Winograd F(2x2, 3x3) for correlations: y = A^T [(G g G^T) * (B^T d B)] A
_WG_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
#: Use Winograd F(2x2,3x3) for eligible blocks (3x3 taps, step 1, consecutive offsets, no
#: groups, float, pixel-major) with at least this many channels on both sides; None disables.
WINOGRAD_MIN_CHANNELS = None


def _winograd_ok(job, cdt, layout):
    if WINOGRAD_MIN_CHANNELS is None or layout != "pm" or job.groups != 1:
        return False
    if cdt not in (np.float32, np.float64) or job.step != (1, 1):
        return False
    oh_, ow_ = job.offs_h, job.offs_w
    if len(oh_) != 3 or len(ow_) != 3:
        return False
    if oh_[2] - oh_[1] != 1 or oh_[1] - oh_[0] != 1 or ow_[2] - ow_[1] != 1 or ow_[1] - ow_[0] != 1:
        return False
    return min(job.src.shape[3], job.out.shape[3]) >= WINOGRAD_MIN_CHANNELS


def _winograd_block(ws, job, unit, cdt):
    n0, n1, q0, q1 = unit
    _, _, r, co = job.out.shape
    cs = job.src.shape[3]
    un, uq = n1 - n0, q1 - q0
    tq, tr = (uq + 1) // 2, (r + 1) // 2
    r0 = q0 + job.offs_h[0]
    r1 = r0 + 2 * tq + 2
    c0 = job.offs_w[0]
    c1 = c0 + 2 * tr + 2
    s, bh, bw = _src_window(ws, job.src, n0, n1, r0, r1, c0, c1, cdt, "pm", True)
    s = s[:, r0 - bh:r1 - bh, c0 - bw:c1 - bw]  # [un, 2tq+2, 2tr+2, cs]
    w2 = 2 * tr + 2
    nt = un * tq * tr
    # input transform B^T d B, rows then columns
    t_ = _buf(ws, "wgT", 4 * un * tq * w2 * cs, cdt).reshape(4, un, tq, w2, cs)
    d0, d1 = s[:, 0:2 * tq:2], s[:, 1:2 * tq + 1:2]
    d2, d3 = s[:, 2:2 * tq + 2:2], s[:, 3:2 * tq + 3:2]
    np.subtract(d0, d2, out=t_[0])
    np.add(d1, d2, out=t_[1])
    np.subtract(d2, d1, out=t_[2])
    np.subtract(d1, d3, out=t_[3])
    v = _buf(ws, "wgV", 16 * nt * cs, cdt).reshape(4, 4, un, tq, tr, cs)
    e0, e1 = t_[:, :, :, 0:2 * tr:2], t_[:, :, :, 1:2 * tr + 1:2]
    e2, e3 = t_[:, :, :, 2:2 * tr + 2:2], t_[:, :, :, 3:2 * tr + 3:2]
    np.subtract(e0, e2, out=v[:, 0])
    np.add(e1, e2, out=v[:, 1])
    np.subtract(e2, e1, out=v[:, 2])
    np.subtract(e1, e3, out=v[:, 3])
    # 16 GEMMs
    m = _buf(ws, "wgM", 16 * nt * co, cdt).reshape(16, nt, co)
    np.matmul(v.reshape(16, nt, cs), job.wino, out=m)
    m = m.reshape(4, 4, un, tq, tr, co)
    # output transform A^T M A, rows then columns
    z = _buf(ws, "wgZ", 8 * nt * co, cdt).reshape(2, 4, un, tq, tr, co)
    np.add(m[0], m[1], out=z[0])
    np.add(z[0], m[2], out=z[0])
    np.subtract(m[1], m[2], out=z[1])
    np.subtract(z[1], m[3], out=z[1])
    out = job.out[n0:n1, q0:q1]
    if uq % 2 == 0 and r % 2 == 0 and out.dtype == cdt:
        y = out
    else:
        y = _buf(ws, "wgY", un * 2 * tq * 2 * tr * co, cdt).reshape(un, 2 * tq, 2 * tr, co)
    for i in (0, 1):
        y0 = y[:, i::2, 0::2]
        y1 = y[:, i::2, 1::2]
        np.add(z[i, 0], z[i, 1], out=y0)
        np.add(y0, z[i, 2], out=y0)
        np.subtract(z[i, 1], z[i, 2], out=y1)
        np.subtract(y1, z[i, 3], out=y1)
    if y is not out:
        _store(out, y[:, :uq, :r])


#: Stride-1 blocks (backprop phases, stride-1 forward) with at most this many source channels
#: run one GEMM per filter tap straight from the zero-padded source, with no im2col copy: on a
#: row-flattened padded block every tap's operand is a plain 2-D slice (row stride = C), so BLAS
#: reads it in place. The result rows use the padded width; the extra columns are dropped when
#: the block is written. Opt-in (None = off): in isolation a block of workload A took 577 us
#: per-tap against 684 us for a per-tap-copy im2col + GEMM, but against the single strided
#: im2col copy used here it measured even (A: 8.5-8.8 ms vs 8.9-9.6 ms, single-threaded
#: 17.1 vs 15.6 ms) and slower on D (2.8 vs 2.4 ms): the nine thin GEMMs (K = C) run slower
#: than one GEMM with K = 9*C, which eats the saved copy.
PER_TAP_MAX_CHANNELS = None


def _taps_ok(job, layout):
    if PER_TAP_MAX_CHANNELS is None or layout != "pm" or job.groups != 1:
        return False
    if job.step != (1, 1) or len(job.offs_h) * len(job.offs_w) < 2:
        return False
    return job.src.shape[3] <= PER_TAP_MAX_CHANNELS


def _taps_block(ws, job, unit, cdt):
    if not _window_ok(job, unit, _taps_window(job, unit)):
        _exact_block(ws, job, unit, cdt)
        return
    n0, n1, q0, q1 = unit
    _, _, r, co = job.out.shape
    cs = job.src.shape[3]
    oh_, ow_ = job.offs_h, job.offs_w
    un, uq = n1 - n0, q1 - q0
    r0, r1 = q0 + oh_[0], q1 + oh_[-1]
    c0, c1 = ow_[0], r - 1 + ow_[-1] + 1
    s, _, _ = _src_window(ws, job.src, n0, n1, r0, r1, c0, c1, cdt, "pm", True, True)
    nr, nc = r1 - r0, c1 - c0
    flat = s.reshape(un * nr * nc, cs)
    m_eff = (uq - 1) * nc + r  # padded-width rows that hold every valid output
    acc = _buf(ws, "tacc", uq * nc * co, cdt).reshape(uq * nc, co)
    tmp = _buf(ws, "ttmp", m_eff * co, cdt).reshape(m_eff, co)
    a_acc = acc[:m_eff]
    for ni in range(un):
        base = ni * nr * nc
        first = True
        for ai, a in enumerate(oh_):
            for bi, b in enumerate(ow_):
                off = base + (a - oh_[0]) * nc + (b - ow_[0])
                src2 = flat[off:off + m_eff]
                if first:
                    np.matmul(src2, job.wtap[ai, bi], out=a_acc)
                    first = False
                else:
                    np.matmul(src2, job.wtap[ai, bi], out=tmp)
                    np.add(a_acc, tmp, out=a_acc)
        _store(job.out[n0 + ni, q0:q1], acc.reshape(uq, nc, co)[:, :r])


def _gather_block(ws, job, unit, cdt, layout):
    n0, n1, q0, q1 = unit
    src = job.src
    _, hs, wsz, cs = src.shape
    _, _, r, co = job.out.shape
    sh, sw = job.step
    g = job.groups
    csg, cog = cs // g, co // g
    oh_, ow_ = job.offs_h, job.offs_w
    th, tw = len(oh_), len(ow_)
    un, uq = n1 - n0, q1 - q0
    # source window needed by this block
    r0, r1, c0, c1, copied = _gather_window(job, unit)
    if not _window_ok(job, unit, copied):
        _exact_block(ws, job, unit, cdt)
        return
    s, base_h, base_w = _src_window(ws, src, n0, n1, r0, r1, c0, c1, cdt, layout, False)
    t = th * tw
    k = t * csg
    m = uq * r
    # patches
    if layout == "pm":
        pbuf = _buf(ws, "pat", g * un * m * k, cdt)
        pat = pbuf.reshape(g, un, uq, r, th, tw, csg)
        pview = pat.transpose(1, 2, 3, 4, 5, 0, 6)  # [un, uq, r, th, tw, g, csg]
    else:
        pbuf = _buf(ws, "pat", un * g * k * m, cdt)
        pat = pbuf.reshape(un, g, th, tw, csg, uq, r)
        pview = pat.transpose(0, 5, 6, 2, 3, 1, 4)  # [un, uq, r, th, tw, g, csg]
    # one strided copy per block when the tap offsets are arithmetic progressions (always the
    # case here): the (tw, c) run of a tap row is then one contiguous source run for pm layouts
    sv = s[:, oh_[0] + q0 * sh - base_h:, ow_[0] - base_w:]
    st = sv.strides
    dlt_h = (oh_[1] - oh_[0]) if th > 1 else 0
    dlt_w = (ow_[1] - ow_[0]) if tw > 1 else 0
    if (all(oh_[i + 1] - oh_[i] == dlt_h for i in range(th - 1))
            and all(ow_[i + 1] - ow_[i] == dlt_w for i in range(tw - 1))):
        src_view = np.lib.stride_tricks.as_strided(
            sv, shape=(un, uq, r, th, tw, g, csg),
            strides=(st[0], sh * st[1], sw * st[2], dlt_h * st[1], dlt_w * st[2],
                     csg * st[3], st[3]), writeable=False)
        pview[...] = src_view
    else:  # pragma: no cover - generic fallback
        for a, oh in enumerate(oh_):
            rs = q0 * sh + oh - base_h
            rsl = slice(rs, rs + (uq - 1) * sh + 1, sh)
            for b, ow in enumerate(ow_):
                cs0 = ow - base_w
                csl = slice(cs0, cs0 + (r - 1) * sw + 1, sw)
                pview[:, :, :, a, b] = s[:, rsl, csl].reshape(un, uq, r, g, csg)
    # GEMM(s) into the output
    out = job.out[n0:n1, q0:q1]  # logical [un, uq, r, co]
    if layout == "pm":
        p3 = pbuf.reshape(g, un * m, k)
        for gi in range(g):
            o = out[..., gi * cog:(gi + 1) * cog]
            o2 = _as_2d(o, un * m, cog)
            if o2 is not None:
                _matmul_into(p3[gi], job.wmat[gi], o2, ws, "otmp")
            else:
                tmp = _buf(ws, "otmp", un * m * cog, cdt).reshape(un * m, cog)
                np.matmul(p3[gi], job.wmat[gi], out=tmp)
                _store(o, tmp.reshape(un, uq, r, cog))
    else:
        p4 = pbuf.reshape(un, g, k, m)
        for gi in range(g):
            o = out[..., gi * cog:(gi + 1) * cog].transpose(0, 3, 1, 2)  # [un, cog, uq, r]
            for ni in range(un):
                o2 = _as_2d(o[ni], cog, m)
                if o2 is not None:
                    _matmul_into(job.wmat[gi], p4[ni, gi], o2, ws, "otmp")
                else:
                    tmp = _buf(ws, "otmp", cog * m, cdt).reshape(cog, m)
                    np.matmul(job.wmat[gi], p4[ni, gi], out=tmp)
                    _store(o[ni], tmp.reshape(cog, uq, r))


# --------------------------------------------------------------------------------------------
# tiny problems: a handful of numpy calls (the blocked engines cost ~60-90 us of Python)
# --------------------------------------------------------------------------------------------
#: Calls with fewer multiply-adds than this (and no groups) use the one-GEMM direct path.
TINY_MACS = 1 << 17


def _finish(res_nhwc, odt, data_format):
    if data_format == "NCHW":
        res_nhwc = res_nhwc.transpose(0, 3, 1, 2)
    if res_nhwc.dtype != odt:
        # int64 -> int32 wraps like C++; float32 -> float16/bfloat16 rounds once
        return res_nhwc.astype(odt, order="C")
    return np.ascontiguousarray(res_nhwc)


def _gather_patches(src, rows, cols, cdt, what):
    """patches[n, A, B, ka, kb, c] = src[n, rows[A, ka], cols[B, kb], c] in the compute dtype,
    0 where the position lies outside src (assigned, never multiplied: a clipped read of a
    NaN stays out). Reads only the positions named (no padded copy of src)."""
    n, hs, ws, c = src.shape
    (na, ka), (nb, kb) = rows.shape, cols.shape
    check_allocation((n, na, nb, ka, kb, c), max(np.dtype(cdt).itemsize, src.itemsize), what)
    rok, cok = (rows >= 0) & (rows < hs), (cols >= 0) & (cols < ws)
    pat = src[:, np.where(rok, rows, 0)[:, None, :, None], np.where(cok, cols, 0)[None, :, None]]
    pat = pat.astype(cdt, copy=False)
    inside = rok[:, None, :, None] & cok[None, :, None, :]
    if not inside.all():
        np.copyto(pat, 0, where=~inside[None, ..., None])
    return pat


def _padded_ok(padded, patches):
    """A zero-padded copy of ``padded`` elements is fine next to ``patches`` patch elements
    (the im2col the GEMM reads anyway); else the patches are gathered position by position."""
    return padded <= WINDOW_FACTOR * patches + WINDOW_SLACK


def _tiny_forward(xv, w, strides, dilations, pads, out_hw, cdt, odt, data_format):
    """One GEMM over the im2col patches (finite weights only: positions outside the input
    are zeros that get multiplied): a strided view of a zero-padded copy of the input, or,
    when that copy would be much larger than the patches (sparse taps, huge strides), the
    patches gathered position by position."""
    n, h, wd, cin = xv.shape
    kh, kw, _, cout = w.shape
    (sh, sw), (dh, dw), (pt, pl), (oh, ow) = strides, dilations, pads, out_hw
    hp = (oh - 1) * sh + (kh - 1) * dh + 1  # padded rows: row r is input row r - pt
    wp = (ow - 1) * sw + (kw - 1) * dw + 1
    patches = n * oh * ow * kh * kw * cin
    if _padded_ok(n * hp * wp * cin, patches):
        _guard(n * hp * wp * cin, cdt.itemsize, (n, hp, wp, cin), "Conv2D padded input")
        _guard(patches, cdt.itemsize, (patches,), "Conv2D patches")
        p = np.zeros((n, hp, wp, cin), cdt)
        r0, r1, c0, c1 = max(0, pt), min(hp, h + pt), max(0, pl), min(wp, wd + pl)
        if r0 < r1 and c0 < c1:
            p[:, r0:r1, c0:c1] = xv[:, r0 - pt:r1 - pt, c0 - pl:c1 - pl]
        st = p.strides
        pat = np.lib.stride_tricks.as_strided(
            p, (n, oh, ow, kh, kw, cin), (st[0], sh * st[1], sw * st[2], dh * st[1],
                                          dw * st[2], st[3]), writeable=False)
    else:
        rows = np.arange(oh)[:, None] * sh + np.arange(kh)[None, :] * dh - pt  # [oh, kh]
        cols = np.arange(ow)[:, None] * sw + np.arange(kw)[None, :] * dw - pl  # [ow, kw]
        pat = _gather_patches(xv, rows, cols, cdt, "Conv2D patches")
    y = np.matmul(pat.reshape(n * oh * ow, kh * kw * cin),
                  w.reshape(kh * kw * cin, cout).astype(cdt, copy=False))
    return _finish(y.reshape(n, oh, ow, cout), odt, data_format)


def _tiny_backprop(dyv, w, in_nhwc, strides, dilations, pads, cdt, odt, data_format):
    """dx = stride-1 correlation of the zero-dilated, zero-padded dy with the flipped filter,
    one GEMM (finite weights only). When the dilated dy would be much larger than the patches,
    dx[h, w] gathers dy[(h + pt - di*dh) / sh, ...] position by position instead."""
    n, h, wd, cin = in_nhwc
    _, oh, ow, cout = dyv.shape
    kh, kw, _, _ = w.shape
    (sh, sw), (dh, dw), (pt, pl) = strides, dilations, pads
    patches = n * h * wd * kh * kw * cout
    hp, wp = h + (kh - 1) * dh, wd + (kw - 1) * dw
    if _padded_ok(n * hp * wp * cout, patches):
        _guard(n * hp * wp * cout, cdt.itemsize, (n, hp, wp, cout),
               "Conv2DBackpropInput padded dy")
        _guard(patches, cdt.itemsize, (patches,), "Conv2DBackpropInput patches")
        lo_h, lo_w = pt - (kh - 1) * dh, pl - (kw - 1) * dw  # dy-space position of P[0, 0]
        p = np.zeros((n, hp, wp, cout), cdt)
        i0, j0 = max(0, -(-lo_h // sh)), max(0, -(-lo_w // sw))
        i1, j1 = min(oh, -(-(hp + lo_h) // sh)), min(ow, -(-(wp + lo_w) // sw))
        if i1 > i0 and j1 > j0:
            p[:, i0 * sh - lo_h:(i1 - 1) * sh - lo_h + 1:sh,
              j0 * sw - lo_w:(j1 - 1) * sw - lo_w + 1:sw] = dyv[:, i0:i1, j0:j1]
        st = p.strides
        pat = np.lib.stride_tricks.as_strided(
            p, (n, h, wd, kh, kw, cout), (st[0], st[1], st[2], dh * st[1], dw * st[2], st[3]),
            writeable=False)
        # patch tap (a, b) reads P row h + a*dh = dy-space row h + pt - (kh-1-a)*dh: tap kh-1-a
        wm = w[::-1, ::-1]
    else:
        vi = np.arange(h)[:, None] + pt - np.arange(kh)[None, :] * dh  # sh * (dy row)
        vj = np.arange(wd)[:, None] + pl - np.arange(kw)[None, :] * dw
        rows = np.where(vi % sh == 0, vi // sh, -1)
        cols = np.where(vj % sw == 0, vj // sw, -1)
        pat = _gather_patches(dyv, rows, cols, cdt, "Conv2DBackpropInput patches")
        wm = w
    wm = wm.transpose(0, 1, 3, 2).reshape(kh * kw * cout, cin).astype(cdt, copy=False)
    dx = np.matmul(pat.reshape(n * h * wd, kh * kw * cout), wm)
    return _finish(dx.reshape(n, h, wd, cin), odt, data_format)


# --------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------
def _groups_of(c_in, cig):
    return c_in // cig if cig > 0 else 1


def conv2d_forward(x, w, strides, dilations, pads_before, out_hw, data_format="NHWC",
                   cache=None):
    """y = conv2d(x, w). x: 4-D array in data_format; w: [kh, kw, cin_per_group, cout] (HWIO).

    strides=(sh, sw), dilations=(dh, dw) ints >= 1; pads_before=(pad_top, pad_left) >= 0;
    out_hw=(oh, ow) the output spatial size. groups = C_in // w.shape[2]. Positions outside the
    input read 0 (taps there are skipped, as in a direct loop). Returns y [N, oh, ow, cout]
    (NHWC) or [N, cout, oh, ow] (NCHW), dtype of x. ResourceExhaustedError when a buffer it
    needs exceeds the allocation limit or memory runs out.

    cache: None, or a dict the caller keeps for this very filter, which must not change while
    the dict is in use (a constant): the filter's prepared forms are kept there and reused.
    """
    try:
        return _conv2d_forward(x, w, strides, dilations, pads_before, out_hw, data_format,
                               cache)
    except errors.ResourceExhaustedError:
        raise
    except MemoryError as e:
        raise _oom(e, "Conv2D") from e


def _conv2d_forward(x, w, strides, dilations, pads_before, out_hw, data_format, cache):
    x = np.asarray(x)
    w = np.asarray(w)
    assert x.ndim == 4 and w.ndim == 4 and data_format in ("NHWC", "NCHW")
    xv = _nhwc(x, data_format)
    n, h, wd, cin = xv.shape
    kh, kw, cig, cout = w.shape
    oh, ow = int(out_hw[0]), int(out_hw[1])
    sh, sw = int(strides[0]), int(strides[1])
    dh, dw = int(dilations[0]), int(dilations[1])
    pt, pl = int(pads_before[0]), int(pads_before[1])
    odt = x.dtype
    cdt = _compute_dtype(odt)
    yshape = (n, oh, ow, cout) if data_format == "NHWC" else (n, cout, oh, ow)
    check_allocation(yshape, odt.itemsize, "Conv2D output")
    y = np.empty(yshape, odt)
    yv = _nhwc(y, data_format)
    if y.size == 0:
        return y
    if kh == 0 or kw == 0 or cig == 0 or cin == 0 or h == 0 or wd == 0:
        y[...] = 0
        return y
    # only the taps that read inside the input for some output (a huge dilation or padding
    # leaves few): no buffer ever spans the dilated filter
    lo_h, hi_h = _tap_range(kh, dh, sh, pt, oh, h)
    lo_w, hi_w = _tap_range(kw, dw, sw, pl, ow, wd)
    if lo_h >= hi_h or lo_w >= hi_w:
        y[...] = 0
        return y
    w = w[lo_h:hi_h, lo_w:hi_w]
    pt, pl = pt - lo_h * dh, pl - lo_w * dw
    kh, kw = hi_h - lo_h, hi_w - lo_w
    _guard(kh * kw * cig * cout, cdt.itemsize, w.shape, "Conv2D filter in the compute dtype")
    memo = _filter_memo(cache, ("forward", w.shape, w.strides, w.dtype.str, lo_h, lo_w,
                                cin, cdt.char))
    g = _groups_of(cin, cig)
    cog = cout // g
    macs = n * oh * ow * kh * kw * cig * cout
    if g == 1 and (macs < TINY_MACS if FORCE_ALGORITHM is None
                   else FORCE_ALGORITHM == "direct") and _filter_finite(memo, w):
        return _tiny_forward(xv, w, (sh, sw), (dh, dw), (pt, pl), (oh, ow), cdt, odt,
                             data_format)
    nth = _threads(macs) if cdt != np.int64 else 1
    # a 3x3 stride-1 forward convolution is the F(2x2, 3x3) input-gradient kernel's
    # correlation with the filter's channel axes swapped and turned by 180 degrees (which the
    # kernel turns back), x in dy's place and y in dx's, offset -pt = (2 - pt) - 2
    if FORCE_ALGORITHM in (None, "winograd") and (kh, kw) == (3, 3):
        wt = w[::-1, ::-1].transpose(0, 1, 3, 2)
        if _winograd3_applies(xv, wt, yv, (sh, sw), (dh, dw), g, memo):
            _winograd3_run(xv, wt, yv, (2 - pt, 2 - pl), nth, memo)
            return y
    # a 1x1 stride-1 forward convolution on channel planes (NCHW) is tiling_planes' GEMM per
    # image with the filter's channel axes swapped: y[n, o, p] = sum_i w[0, 0, i, o] x[n, i, p]
    if (kh, kw) == (1, 1):
        wio = w.transpose(0, 1, 3, 2)  # [1, 1, cout, cin]: the input gradient's orientation
        if _tiling_planes_applies(xv, wio, yv, (sh, sw), (dh, dw), (pt, pl), g):
            _tiling_planes_run(xv, wio, yv, nth, memo)
            return y
    if _native_onecall_applies(xv, yv) and _staging_fits(xv, ow * kw):
        _native_forward_run(xv, w, yv, (sh, sw), (dh, dw), (pt, pl), g, nth, memo)
        return y
    wk = _memoized(memo, "wk", lambda: w.astype(cdt).reshape(kh, kw, cig, g, cog)
                   .transpose(3, 0, 1, 2, 4))  # [g, kh, kw, cig, cog]
    offs_h = [di * dh - pt for di in range(kh)]
    offs_w = [dj * dw - pl for dj in range(kw)]
    job = _GatherJob(xv, yv, offs_h, offs_w, (sh, sw), wk, g)
    layout = _gather_layout(data_format)
    if not _BLAS.available:
        nth = 1
    _gather_run([job], cdt, layout, nth, memo)
    return y


# --------------------------------------------------------------------------------------------
# backprop input
# --------------------------------------------------------------------------------------------
def _phase_taps(k, d, s, pad, ph):
    """Taps (di, a) reaching input phase ph: h = ph + s*q reads dy row q + a via tap di."""
    out = []
    for di in range(k):
        v = ph + pad - di * d
        if v % s == 0:
            out.append((di, v // s))
    return out


def choose_backprop_input_algorithm(dy_shape_nhwc, w_shape, input_shape_nhwc, strides,
                                    dtype=np.float32):
    """'direct', 'native', 'gather' or 'scatter' for a configuration (shapes in logical NHWC
    order; dtype that of dy)."""
    n, oh, ow, cout = dy_shape_nhwc
    kh, kw, cig, _ = w_shape
    _, h, wd, cin = input_shape_nhwc
    sh, sw = strides
    g = _groups_of(cin, cig)
    if (g == 1 and n * oh * ow * kh * kw * cig * cout < TINY_MACS
            and n * h * wd * kh * kw * cout < 8 * TINY_MACS):  # its patches stay small too
        return "direct"
    if USE_NATIVE and _compute_dtype(dtype) == np.float32:
        nat = _native.load()
        # dx channels per group are its vector lanes, padded to whole vectors: worth it while
        # the padding wastes at most about a third (3 channels in 8 lanes: the scatter engine)
        if nat is not None and _native_channels(cig, nat) <= NATIVE_LANE_WASTE * cig:
            return "native"
    # values moved per output element: gather copies kh*kw/(sh*sw) * Cout_g per dx element,
    # scatter writes kh*kw*Cin per dy pixel and adds them (the GEMM is wider, so weighted 3).
    gather = n * h * wd * kh * kw * (cout // max(g, 1)) / (sh * sw) * 2.0
    scatter = n * oh * ow * kh * kw * cin * 3.0 + n * h * wd * cin * 2.0
    return "gather" if gather <= scatter else "scatter"


@functools.lru_cache(maxsize=1024)
def _backprop_reduction(oh, ow, kh, kw, h, wd, strides, dilations, pads):
    """The part of an input-gradient problem that reaches dx: ((lo_h, hi_h), (lo_w, hi_w)) of
    the filter taps, ((i0, i1), (j0, j1)) of dy's rows and columns, and the pads of the reduced
    problem (possibly negative); None when nothing reaches dx (it is zero)."""
    (sh, sw), (dh, dw), (pt, pl) = strides, dilations, pads
    lo_h, hi_h = _tap_range(kh, dh, sh, pt, oh, h)
    lo_w, hi_w = _tap_range(kw, dw, sw, pl, ow, wd)
    if lo_h >= hi_h or lo_w >= hi_w:
        return None
    pt, pl = pt - lo_h * dh, pl - lo_w * dw
    i0, i1 = _reaching_range(hi_h - lo_h, dh, sh, pt, oh, h)
    j0, j1 = _reaching_range(hi_w - lo_w, dw, sw, pl, ow, wd)
    if i0 >= i1 or j0 >= j1:
        return None
    return (lo_h, hi_h), (lo_w, hi_w), (i0, i1), (j0, j1), (pt - i0 * sh, pl - j0 * sw)


def conv2d_backprop_input(dy, w, input_shape, strides, dilations, pads_before,
                          data_format="NHWC", cache=None):
    """dx = gradient of conv2d wrt its input (the exact adjoint of conv2d_forward).

    input_shape: the 4-D shape of x in data_format. Returns dx with shape input_shape, dtype of
    dy. Taps and dy positions that map outside dx are skipped, as in a direct loop.
    ResourceExhaustedError when a buffer it needs exceeds the allocation limit or memory runs
    out. cache: as in conv2d_forward.
    """
    try:
        return _conv2d_backprop_input(dy, w, input_shape, strides, dilations, pads_before,
                                      data_format, cache)
    except errors.ResourceExhaustedError:
        raise
    except MemoryError as e:
        raise _oom(e, "Conv2DBackpropInput") from e


def _conv2d_backprop_input(dy, w, input_shape, strides, dilations, pads_before, data_format,
                           cache=None):
    dy = np.asarray(dy)
    w = np.asarray(w)
    assert dy.ndim == 4 and w.ndim == 4 and len(input_shape) == 4
    assert data_format in ("NHWC", "NCHW")
    input_shape = tuple(map(int, input_shape))
    odt = dy.dtype
    cdt = _compute_dtype(odt)
    check_allocation(input_shape, odt.itemsize, "Conv2DBackpropInput output")
    dx = np.empty(input_shape, odt)
    dxv = _nhwc(dx, data_format)
    dyv = _nhwc(dy, data_format)
    n, h, wd, cin = dxv.shape
    _, oh, ow, cout = dyv.shape
    kh, kw, cig, _ = w.shape
    sh, sw = int(strides[0]), int(strides[1])
    dh, dw = int(dilations[0]), int(dilations[1])
    pt, pl = int(pads_before[0]), int(pads_before[1])
    if dx.size == 0:
        return dx
    if oh == 0 or ow == 0 or cout == 0 or kh == 0 or kw == 0 or cig == 0:
        dx[...] = 0
        return dx
    # only the taps and dy positions that reach dx (a huge dilation, padding or dy leaves few)
    red = _backprop_reduction(oh, ow, kh, kw, h, wd, (sh, sw), (dh, dw), (pt, pl))
    if red is None:
        dx[...] = 0
        return dx
    (lo_h, hi_h), (lo_w, hi_w), (i0, i1), (j0, j1), (pt, pl) = red
    if (lo_h, hi_h, lo_w, hi_w) != (0, kh, 0, kw):
        w = w[lo_h:hi_h, lo_w:hi_w]
    if (i0, i1, j0, j1) != (0, oh, 0, ow):
        dyv = dyv[:, i0:i1, j0:j1]
    kh, kw, oh, ow = hi_h - lo_h, hi_w - lo_w, i1 - i0, j1 - j0
    _guard(kh * kw * cig * cout, cdt.itemsize, w.shape,
           "Conv2DBackpropInput filter in the compute dtype")
    # (the prepared forms depend on the filter's reduced taps and the stride phases)
    memo = _filter_memo(cache, ("backprop_input", w.shape, w.strides, w.dtype.str, lo_h, lo_w,
                                (sh, sw), (dh, dw), (pt, pl), cin, cdt.char))
    g = _groups_of(cin, cig)
    if _depthwise_applies(cin, cig, g, cdt):
        _depthwise_run(dyv, w, dxv, (sh, sw), (dh, dw), (pt, pl), cdt, NUM_THREADS)
        return dx
    macs = n * oh * ow * kh * kw * cig * cout
    algo = FORCE_ALGORITHM or choose_backprop_input_algorithm(
        dyv.shape, w.shape, dxv.shape, (sh, sw), odt)
    if algo == "direct":
        if g == 1 and _filter_finite(memo, w):
            return _tiny_backprop(dyv, w, dxv.shape, (sh, sw), (dh, dw), (pt, pl), cdt, odt,
                                  data_format)
        algo = "gather"  # (non-finite weights: its exact per-tap blocks)
    if _tiling_planes_applies(dyv, w, dxv, (sh, sw), (dh, dw), (pt, pl), g):
        _tiling_planes_run(dyv, w, dxv, _threads(macs), memo)
        return dx
    if (FORCE_ALGORITHM is None
            and _pixel_shuffle_applies(dyv.shape, w.shape, dxv.shape, (sh, sw), (dh, dw),
                                       (pt, pl), g)
            and _native_onecall_applies(dyv, dxv)):
        _pixel_shuffle_run(dyv, w, dxv,
                           _threads(macs, SHUFFLE_PARALLEL_MIN_MACS), memo)
        return dx
    if (FORCE_ALGORITHM is None
            and _subpixel_conv_applies(dyv, w, dxv, (sh, sw), (dh, dw), (pt, pl), g)):
        _subpixel_conv_run(dyv, w, dxv, (sh, sw), (pt, pl),
                           _threads(macs, SHUFFLE_PARALLEL_MIN_MACS), memo)
        return dx
    if (FORCE_ALGORITHM in (None, "subpixel")
            and _subpixel_gemm_applies(dyv, w, dxv, (sh, sw), (dh, dw), (pt, pl), g, cdt)):
        _subpixel_gemm_run(dyv, w, dxv, _threads(macs), memo)
        return dx
    nth = _threads(macs) if cdt != np.int64 else 1
    if (FORCE_ALGORITHM in (None, "winograd")
            and _winograd_applies(dyv, w, dxv, (sh, sw), (dh, dw), g, memo)):
        _winograd_run(dyv, w, dxv, (pt, pl), nth, memo)
        return dx
    if (FORCE_ALGORITHM in (None, "winograd")
            and _winograd3_applies(dyv, w, dxv, (sh, sw), (dh, dw), g, memo)):
        _winograd3_run(dyv, w, dxv, (pt, pl), nth, memo)
        return dx
    if algo == "winograd":  # (forced where it does not apply: the default choice)
        algo = choose_backprop_input_algorithm(dyv.shape, w.shape, dxv.shape, (sh, sw), odt)
    if algo == "native" and _tiling_pixels_applies(dyv, w, dxv, (sh, sw), (dh, dw), (pt, pl),
                                                   g):
        _tiling_pixels_run(dyv, w, dxv, nth, memo)
        return dx
    if algo == "native" and _native_onecall_applies(dyv, dxv):
        _native_bpi_run(dyv, w, dxv, (sh, sw), (dh, dw), (pt, pl), g, nth, memo)
        return dx
    if not _BLAS.available:
        nth = 1
    wc = _memoized(memo, "wc", lambda: w.astype(cdt, copy=False))
    if algo in ("gather", "native"):  # native: the gather plan, blocks in the compiled kernel
        layout = _gather_layout(data_format)
        jobs = _backprop_gather_jobs(dyv, wc, dxv, (sh, sw), (dh, dw), (pt, pl), g, True,
                                     memo)
        _gather_run(jobs, cdt, layout, nth, memo)
    else:
        layout = _scatter_layout(data_format, cig, g, _filter_finite(memo, w))
        if layout == "flat":
            _scatter_flat_run(dyv, wc, dxv, (sh, sw), (dh, dw), (pt, pl), cdt, nth)
        else:
            _scatter_run(dyv, wc, dxv, (sh, sw), (dh, dw), (pt, pl), g, cdt, layout, nth)
    return dx


def _native_onecall_applies(src, out):
    """True if the compiled kernel's one-call input gradient or forward convolution takes its
    source and output as they are: float32, float16 or bfloat16 views of one dtype with
    element-aligned strides."""
    if not USE_NATIVE or FORCE_ALGORITHM not in (None, "native", "winograd"):
        return False
    nat = _native.load()
    return nat is not None and nat.views_code(src, out) is not None


def _native_bpi_run(dyv, w, dxv, strides, dilations, pads, g, nth, memo):
    """The whole input gradient in one call of the compiled kernel (every stride phase, group
    and row chunk on its own threads); the packed filter is kept in ``memo`` when there is
    one (a constant filter is packed once). Conv2D takes the same call's forward twin."""
    nat = _native.load()
    kh, kw = w.shape[:2]
    nat.backprop_input(dyv, _bpi_packed(w, g, nth, memo), dxv, g, (kh, kw), strides,
                       dilations, pads, nth, NATIVE_BPI_ROWS, NATIVE_CHANNEL_CHUNK)


def _bpi_packed(w, g, nth, memo):
    """The filter packed for the compiled input gradient (``pack(w, 3, g)``: lanes dx
    channels, reduced dy channels), kept in ``memo`` when there is one."""
    nat = _native.load()

    def packed():
        return nat.pack(nat.to_float32(w, nth), 3, g, nth)

    return _memoized(memo, "bpi_packed", packed)


#: Multiply-adds from which the pixel-shuffle path runs on NUM_THREADS threads (its work
#: splits over dy rows; ESPCN's batch-1 layer, 3.5 M: 204 -> 160 us on 2 cores).
SHUFFLE_PARALLEL_MIN_MACS = 1 << 20


def _tiles_exactly(dy_shape, w_shape, x_shape, strides, dilations, pads):
    """True if the kernel (more than one tap) tiles dx exactly: kernel = stride, no padding
    or dilation, dx = stride x dy (logical NHWC shapes), so every dx pixel is one term."""
    kh, kw = w_shape[:2]
    _, oh, ow, _ = dy_shape
    _, h, wd, _ = x_shape
    return ((kh, kw) == tuple(strides) and tuple(dilations) == (1, 1)
            and tuple(pads) == (0, 0) and (h, wd) == (oh * kh, ow * kw) and kh * kw > 1)


def _pixel_shuffle_applies(dy_shape, w_shape, x_shape, strides, dilations, pads, g):
    """True for a transposed convolution (logical NHWC shapes) whose kernel tiles dx exactly
    (kernel = stride, no padding or dilation, dx = stride x dy: ESPCN's and FSRCNN-like
    sub-pixel layers) onto fewer dx channels than a vector, with the compiled kernel loaded:
    each dx pixel is one term, so dx is a pixel shuffle of dy @ W, and NHWC dx rows of one row
    phase are a 1x1 convolution of dy whose kw * cin output channels are contiguous (many more
    lanes than cin alone). The operands' dtype and strides are the caller's to check."""
    kw, cin = w_shape[1], x_shape[3]
    if g != 1 or not _tiles_exactly(dy_shape, w_shape, x_shape, strides, dilations, pads):
        return False
    nat = _native.load() if USE_NATIVE else None
    if nat is None:
        return False
    # only where cin alone wastes most of its vectors' lanes and kw * cin needs fewer lanes
    # than the kw phases of cin take (ESPCN's 3 channels, AVX2: 16 for 9 against 3 x 8)
    return (cin < nat.vector_width
            and _native_channels(kw * cin, nat) < kw * _native_channels(cin, nat))


def _pixel_shuffle_run(dyv, w, dxv, nth, memo):
    """dx[n, i*sh + a, j*sw + b, c] = dy[n, i, j, :] @ w[a, b, c, :]: per row phase a, one
    forward 1x1 convolution of dy into the view of dx rows a::sh as [n, oh, ow, sw * cin]
    (columns j*sw + b, channels c: one contiguous run per dy pixel). A dx whose channels are
    not contiguous (NCHW) gets all phases from one 1x1 convolution into [n, oh, ow, (a, b, c)]
    (_subpixel_conv_run with m = 1: dy staged once, more lanes), then shuffled into place."""
    nat = _native.load()
    kh, kw, cin, cout = w.shape
    n, oh, ow, _ = dyv.shape
    if dxv.strides[3] != dxv.itemsize:
        _subpixel_conv_run(dyv, w, dxv, (kh, kw), (0, 0), nth, memo)
        return
    for a in range(kh):
        def packed(a=a):  # [1, 1, cout, (b, c)]: reduce over dy channels, lanes (b, c)
            wa = w[a].reshape(kw * cin, cout).T  # (a view when w is contiguous)
            if not nat.addressable(wa):
                wa = np.ascontiguousarray(wa, np.float32)
            # (pack transposes it by 8x8 blocks; a numpy copy first took 20x the packing)
            return nat.pack(wa.reshape(1, 1, cout, kw * cin), 2, 1, nth)

        view = dxv[:, a::kh]
        view.shape = (n, oh, ow, kw * cin)  # (a view: the columns' channels are contiguous)
        nat.forward(dyv, _memoized(memo, ("shuffle", a), packed), view, 1, (1, 1), (1, 1),
                    (1, 1), (0, 0), nth, NATIVE_BPI_ROWS, NATIVE_CHANNEL_CHUNK)


def _tiling_geometry(dy_shape, w_shape, x_shape, strides, dilations, pads, g):
    """True for an ungrouped kernel that tiles dx exactly (logical NHWC shapes): kernel =
    stride, no padding, dilation only along an axis of 1 tap, dx = stride x dy (one tap
    too). Every dx element is then one term: dx[n, i*kh + a, j*kw + b] = dy[n, i, j] . w[a, b]."""
    kh, kw = w_shape[:2]
    _, oh, ow, _ = dy_shape
    _, h, wd, _ = x_shape
    return (g == 1 and tuple(strides) == (kh, kw) and tuple(pads) == (0, 0)
            and (kh == 1 or dilations[0] == 1) and (kw == 1 or dilations[1] == 1)
            and (h, wd) == (kh * oh, kw * ow))


def _tiling_planes_takes(dy_shape, w_shape, x_shape, strides, dilations, pads, g):
    """True for an exactly tiling layer (_tiling_geometry) at most 2 columns wide with the
    compiled tiling_planes kernel: on channel planes its dx is one GEMM per image, written
    straight into dx's rows."""
    nat = _native.load() if USE_NATIVE else None
    return (nat is not None and nat.has_tiling_planes and w_shape[1] <= 2
            and _tiling_geometry(dy_shape, w_shape, x_shape, strides, dilations, pads, g))


def _tiling_planes_applies(dyv, w, dxv, strides, dilations, pads, g):
    """_tiling_planes_takes for float32 views of channel-planar memory (NCHW: dy's pixels
    contiguous within a plane, dx's columns contiguous), unless an algorithm is forced."""
    if FORCE_ALGORITHM is not None or dyv.dtype != np.float32 or dxv.dtype != np.float32:
        return False
    ow = dyv.shape[2]
    nat = _native.load()
    return (dyv.strides[2] == 4 and dyv.strides[1] == 4 * ow and dxv.strides[2] == 4
            and nat is not None and nat.addressable(dyv) and nat.addressable(dxv)
            and _tiling_planes_takes(dyv.shape, w.shape, dxv.shape, strides, dilations, pads,
                                     g))


def _tiling_planes_run(dyv, w, dxv, nth, memo):
    """dx[n, c, i*kh + a, j*kw + b] = sum_k w[a, b, c, k] * dy[n, k, i, j] by the compiled
    tiling_planes kernel (per image the GEMM [(a, c, b), k] x [k, pixel], each register tile
    interleaved into dx rows); the filter's [(a, c, b), k] rows kept in ``memo``. Every dx
    element is one sum of exactly its terms (non-finite values propagate as in a direct
    loop)."""
    nat = _native.load()
    kh, kw, cin, cout = w.shape
    wr = _memoized(memo, "tiling_planes", lambda: np.ascontiguousarray(
        w.transpose(0, 2, 1, 3), np.float32).reshape(kh * cin * kw, cout))
    nat.tiling_planes(dyv, wr, dxv, kh, kw, nth)


def _tiling_pixels_applies(dyv, w, dxv, strides, dilations, pads, g):
    """True for an exactly tiling layer (_tiling_geometry) on a contiguous float32 NHWC dy and
    a float32 dx with contiguous channels whose dy rows are short for the register tile
    (ow / ceil(ow / RB) below 3/4 of RB: U-Net's 16-pixel rows, tiles of 8 + 8 against 14):
    tiling_pixels takes the tiles flat over the rows (1.07-1.10x at 8-16 pixels; 0.88-0.99x
    at 32-64, which keep the one-call kernel). Not when an algorithm is forced."""
    if FORCE_ALGORITHM is not None or dyv.dtype != np.float32 \
            or dxv.dtype != np.float32 or not dyv.flags.c_contiguous or dxv.strides[3] != 4:
        return False
    nat = _native.load()
    ow = dyv.shape[2]
    if not (nat is not None and nat.has_tiling_pixels and nat.addressable(dxv)):
        return False
    rb = nat.tile_rows
    if 4 * ow >= 3 * rb * -(-ow // rb):
        return False
    return _tiling_geometry(dyv.shape, w.shape, dxv.shape, strides, dilations, pads, g)


def _tiling_pixels_run(dyv, w, dxv, nth, memo):
    """dx[n, i*kh + a, j*kw + b, :] = dy[n, i, j, :] @ w[a, b]^T by the compiled
    tiling_pixels kernel, with the one-call kernel's packed filter (kept in ``memo``)."""
    kh, kw = w.shape[:2]
    _native.load().tiling_pixels(dyv, _bpi_packed(w, 1, nth, memo), dxv, kh, kw, nth)


def _tiling_planes_workspace_bytes(w_shape, nth):
    """What _tiling_planes_run allocates besides dx: the rearranged filter and per thread one
    work item's dy panels (at most 16 of a block's width of pixels by Cout)."""
    kh, kw, cin, cout = w_shape
    panel = _native.load().block_width * cout
    return 4 * kh * kw * cin * cout + nth * 4 * 16 * panel + (64 << 10)


def _subpixel_conv_takes(dy_shape, w_shape, x_shape, strides, dilations, pads, g):
    """True for a transposed convolution (logical NHWC shapes) whose kernel is a whole number
    m of strides per axis, m > 1 or padded (the unpadded m = 1 case is _pixel_shuffle_applies'),
    onto fewer dx channels than a vector (DCGAN's last 4x4 stride-2 layer onto 3 channels):
    its dx is a pixel shuffle of an m x m stride-1 forward convolution of dy onto
    sh*sw*cin channels, which need at most half the lanes that sh*sw phases of cin take."""
    kh, kw, cin, _ = w_shape
    sh, sw = strides
    if (g != 1 or tuple(dilations) != (1, 1) or kh % sh or kw % sw or kh * kw == 1
            or _tiles_exactly(dy_shape, w_shape, x_shape, strides, dilations, pads)):
        return False
    nat = _native.load() if USE_NATIVE else None
    if nat is None or not nat.has_shuffle_store:
        return False
    return (cin < nat.vector_width
            and 2 * _native_channels(sh * sw * cin, nat) <= sh * sw * _native_channels(cin, nat))


def _subpixel_conv_applies(dyv, w, dxv, strides, dilations, pads, g):
    """_subpixel_conv_takes for float32 operands the compiled kernels address in place."""
    nat = _native.load() if USE_NATIVE else None
    return (nat is not None and dyv.dtype == np.float32 and dxv.dtype == np.float32
            and nat.addressable(dyv) and nat.addressable(dxv)
            and _subpixel_conv_takes(dyv.shape, w.shape, dxv.shape, strides, dilations, pads,
                                     g))


def _subpixel_conv_run(dyv, w, dxv, strides, pads, nth, memo):
    """dx of a transposed convolution with kernel (mh*sh, mw*sw) as a pixel shuffle: with
    h + pt = U*sh + a (a < sh), dx[n, h, x, c] = Z[n, U, V, (a*sw + b)*cin + c] where Z is the
    forward mh x mw convolution of dy (padding mh - 1 - U0 above, rows U0 .. of Z) with the
    filter F[t, u, k, (a, b, c)] = w[a + sh*(mh-1-t), b + sw*(mw-1-u), c, k]. Every tap of F
    is a tap of w and positions outside dy are skipped, so each dx element is the sum of
    exactly its terms. Z is computed per block of its rows (_subpixel_units), in dx's dtype,
    and placed by the compiled shuffle store (numpy's for a half-precision dx, which only the
    unpadded m = 1 pixel shuffle passes here)."""
    nat = _native.load()
    kh, kw, cin, cout = w.shape
    sh, sw = strides
    pt, pl = pads
    mh, mw = kh // sh, kw // sw
    n = dyv.shape[0]
    _, h, wd, _ = dxv.shape
    u0, v0 = pt // sh, pl // sw  # the first rows/columns of Z that reach dx
    th, tw = (h - 1 + pt) // sh - u0 + 1, (wd - 1 + pl) // sw - v0 + 1
    oh0, ow0 = sh * u0 - pt, sw * v0 - pl  # dx row of Z row 0's phase 0 (in (-sh, 0])
    kk = sh * sw * cin

    def packed():  # F as a forward filter [mh, mw, cout, (a, b, c)]
        w6 = w.reshape(mh, sh, mw, sw, cin, cout)[::-1, :, ::-1]
        # (a view where the kernel tiles dx exactly, mh = mw = 1: pack transposes it)
        f = w6.transpose(0, 2, 5, 1, 3, 4).reshape(mh, mw, cout, kk)
        if not nat.addressable(f):
            f = np.ascontiguousarray(f, np.float32)
        return nat.pack(f, 2, 1, nth)

    wpk = _memoized(memo, ("subpixel_conv", mh, mw), packed)
    compiled = nat.has_shuffle_store and nat.addressable(dxv)
    isz = dxv.itemsize
    for n0, n1, r0, r1 in _subpixel_units(n, th, tw, kk, isz):
        _guard((n1 - n0) * (r1 - r0) * tw * kk, isz, (n1 - n0, r1 - r0, tw, kk),
               "Conv2DBackpropInput sub-pixel block")
        out = np.empty((n1 - n0, r1 - r0, tw, kk), dxv.dtype)
        nat.forward(dyv[n0:n1], wpk, out, 1, (mh, mw), (1, 1), (1, 1),
                    (mh - 1 - u0 - r0, mw - 1 - v0), nth, NATIVE_BPI_ROWS, NATIVE_CHANNEL_CHUNK)
        top = sh * r0 + oh0  # dx row of this block's first Z row, phase 0
        y0 = max(0, top)
        part = dxv[n0:n1, y0:min(h, sh * r1 + oh0)]
        if compiled:
            nat.shuffle_store(out, part, sh, sw, nth, (top - y0, ow0))
        else:  # (offsets 0: see the docstring)
            _shuffle_numpy(out, part, sh, sw)


def _subpixel_conv_workspace_bytes(n, h, wd, w_shape, strides, pads, itemsize):
    """What _subpixel_conv_run allocates besides dx: the packed forward filter (and its float32
    rearrangement), per block of Z rows its result, per thread one work item's staging and
    tables."""
    nat = _native.load()
    kh, kw, cin, cout = w_shape
    sh, sw = strides
    mh, mw, kk = kh // sh, kw // sw, sh * sw * cin
    tw = (wd - 1 + pads[1]) // sw - pads[1] // sw + 1
    th = (h - 1 + pads[0]) // sh - pads[0] // sh + 1
    packed = 4 * (nat.packed_size(mh * mw, cout, kk) + mh * mw * cout * kk)
    temp = itemsize * _subpixel_block_elems(n, th, tw, kk, itemsize)
    return packed + temp + NUM_THREADS * ((512 << 10) + 64 * tw) + (128 << 10)


#: Run layers whose kernel tiles dx exactly (kernel = stride: U-Net's 2x2 up-convolutions)
#: in float64 with dy's channels contiguous as one BLAS GEMM and a pixel shuffle (the compiled
#: kernel lacks float64; U-Net 2x2 256>128 b8, AVX2: 0.87 -> 1.2-1.5x torch). Measured and
#: not taken by default: float32 on AVX2 (faster on one thread, but with two threads 0.5-0.8x
#: the compiled kernel at batch 8) and NCHW dy (its channel-major result shuffles slowly);
#: FORCE_ALGORITHM = "subpixel" runs it wherever it applies.
SUBPIXEL_GEMM = True


def _subpixel_gemm_applies(dyv, w, dxv, strides, dilations, pads, g, cdt):
    """True for an exactly tiling layer (as _pixel_shuffle_applies, any channel count) in
    float32 or float64 with dy already in that dtype and its channels contiguous (or, forced,
    its pixels), where SUBPIXEL_GEMM says the GEMM pays (see there)."""
    isz = dyv.itemsize
    ow = dyv.shape[2]
    planes = FORCE_ALGORITHM == "subpixel" and dyv.strides[2] == isz \
        and dyv.strides[1] == ow * isz
    return (dyv.dtype == cdt and (dyv.strides[3] == isz or planes)
            and _subpixel_gemm_takes(dyv.shape, w.shape, dxv.shape, strides, dilations, pads,
                                     g, cdt))


def _subpixel_gemm_takes(dy_shape, w_shape, x_shape, strides, dilations, pads, g, cdt):
    """The geometry and dtype part of _subpixel_gemm_applies (logical NHWC shapes)."""
    if not (SUBPIXEL_GEMM and _BLAS.available and g == 1 and cdt in (np.float32, np.float64)
            and _tiles_exactly(dy_shape, w_shape, x_shape, strides, dilations, pads)):
        return False
    return FORCE_ALGORITHM == "subpixel" or cdt == np.float64


def _subpixel_block_elems(n, oh, ow, kk, itemsize):
    """Elements of the largest sub-pixel result block (_subpixel_units)."""
    return max((n1 - n0) * (i1 - i0) for n0, n1, i0, i1 in
               _subpixel_units(n, oh, ow, kk, itemsize)) * ow * kk


def _subpixel_units(n, oh, ow, kk, itemsize):
    """Blocks (n0, n1, i0, i1) of dy rows whose sub-pixel result [.., ow, kk] holds at most
    about BLOCK_BYTES: whole images when they fit, else row chunks of one image."""
    return _row_units(n, oh, max(1, BLOCK_BYTES // max(1, ow * kk * itemsize)), threads=1)


def _subpixel_gemm_run(dyv, w, dxv, nth, memo):
    """dx[n, i*kh + a, j*kw + b, c] = dy[n, i, j, :] @ w[a, b, c, :] as GEMMs: per block of dy
    rows (_subpixel_units), dy's pixels by the filter's [cout, (a, b, c)] (channels-contiguous
    dy) or [(a, b, c), cout] by dy's channel planes (NCHW dy), into a block-sized temporary
    that the compiled shuffle store (or numpy) places. Every dx element is one sum of exactly
    its terms, so non-finite values propagate as in a direct loop. BLAS runs on one thread
    when ``nth`` is 1."""
    kh, kw, cin, cout = w.shape
    n, oh, ow, _ = dyv.shape
    cdt = dyv.dtype
    kk = kh * kw * cin
    wk = _memoized(memo, ("subpixel", "w"),
                   lambda: np.ascontiguousarray(w.reshape(kk, cout), cdt))  # [(a, b, c), cout]
    nat = _native.load() if USE_NATIVE else None
    compiled = (cdt == np.float32 and nat is not None and nat.has_shuffle_store
                and nat.addressable(dxv))
    channels_last = dyv.strides[3] == dyv.itemsize
    with (_BLAS if nth <= 1 else contextlib.nullcontext()):
        for n0, n1, i0, i1 in _subpixel_units(n, oh, ow, kk, cdt.itemsize):
            nb, rows = n1 - n0, i1 - i0
            _guard(nb * rows * ow * kk, cdt.itemsize, (nb, rows, ow, kk),
                   "Conv2DBackpropInput sub-pixel GEMM block")
            blk = dyv[n0:n1, i0:i1]
            if channels_last:
                d2 = _as_2d(blk, nb * rows * ow, cout)
                if d2 is None:
                    d2 = np.ascontiguousarray(blk).reshape(nb * rows * ow, cout)
                t = np.matmul(d2, wk.T).reshape(nb, rows, ow, kk)
            else:  # channel planes: [kk, cout] @ [nb, cout, rows*ow]
                planes = blk.transpose(0, 3, 1, 2).reshape(nb, cout, rows * ow)
                t = np.matmul(wk, planes).reshape(nb, kk, rows, ow).transpose(0, 2, 3, 1)
            out = dxv[n0:n1, i0 * kh:i1 * kh]
            if compiled:
                nat.shuffle_store(t, out, kh, kw, nth)
            else:
                _shuffle_numpy(t, out, kh, kw)


def _shuffle_numpy(t, dxv, kh, kw):
    """numpy's pixel shuffle: dxv[n, i*kh + a, j*kw + b, c] = t[n, i, j, (a*kw + b)*cin + c]."""
    n, oh, ow, _ = t.shape
    cin = dxv.shape[3]
    if dxv.strides[3] == dxv.itemsize and dxv.strides[2] == cin * dxv.itemsize:
        for a in range(kh):  # per row phase, as [n, oh, ow, (b, c)]
            view = dxv[:, a::kh]
            view.shape = (n, oh, ow, kw * cin)
            _store(view, t[..., a * kw * cin:(a + 1) * kw * cin])
        return
    view = dxv.view()
    view.shape = (n, oh, kh, ow, kw, cin)  # (splitting axes: always a view)
    _store(view.transpose(0, 1, 3, 2, 4, 5), t.reshape(n, oh, ow, kh, kw, cin))


# --------------------------------------------------------------------------------------------
# Winograd F(2x2, 2x2): the input gradient of 4x4 stride-2 convolutions (conv_winograd.c)
# --------------------------------------------------------------------------------------------
#: Least dy channels (the products' reduction) and dx channels for the Winograd path: below
#: them its transforms cost more than the 7 of 16 products it saves (measured on AVX2).
WINOGRAD_MIN_COUT = 32
WINOGRAD_MIN_CIN = 16
#: Least dy pixels (N * OH * OW) for the Winograd path when the filter is not a constant:
#: the compiled transform (1.0 ms for 256 x 512 channels, Zen 4, 2 cores; the numpy one took
#: 2.2) costs about what 300-400 dy pixels' products save: at 512 pixels Winograd was 1.17x
#: the direct kernel on DCGAN 512>256, at 256 pixels 0.85-1.1x. With a constant filter
#: (transformed once) from 64.
WINOGRAD_MIN_PIXELS = 512
WINOGRAD_MIN_PIXELS_CACHED = 64
#: Largest transformed filter (bytes: 9/4 of the filter's) the Winograd path builds.
WINOGRAD_MAX_FILTER_BYTES = 64 << 20
#: G of F(2x2, 2x2): U = G g G^T per channel pair.
_WG22_G = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])


def _winograd_takes(dy_shape, w_shape, x_shape, strides, dilations, g, nat):
    """True for a 4x4 stride-2 undilated ungrouped transposed convolution (logical NHWC
    shapes) with enough channels on both sides, and the library's Winograd kernel."""
    kh, kw, cin, cout = w_shape
    return (nat is not None and nat.has_winograd and g == 1 and (kh, kw) == (4, 4)
            and tuple(strides) == (2, 2) and tuple(dilations) == (1, 1)
            and (FORCE_ALGORITHM == "winograd"
                 or (cout >= WINOGRAD_MIN_COUT and cin >= WINOGRAD_MIN_CIN))
            and 4 * 9 * cout * _native_channels(cin, nat) * 4 <= WINOGRAD_MAX_FILTER_BYTES)


def _winograd_applies(dyv, w, dxv, strides, dilations, g, memo):
    """_winograd_takes for float32, float16 or bfloat16 views (float32 NHWC in place,
    channel-strided and half-precision ones staged per work item) with finite values: its zero
    padding stands for the skipped taps, which is exact only for finite ones."""
    if not _native_onecall_applies(dyv, dxv):
        return False
    nat = _native.load()
    if not _winograd_takes(dyv.shape, w.shape, dxv.shape, strides, dilations, g, nat):
        return False
    return _winograd_worth_it(dyv, w, memo, WINOGRAD_MIN_PIXELS, WINOGRAD_MIN_PIXELS_CACHED)


def _winograd_worth_it(dyv, w, memo, least, least_cached):
    """Enough dy pixels for a Winograd path (``least``, or ``least_cached`` with a constant
    filter, whose transform is kept; any when forced) and finite values: its zero padding and
    transforms are exact only for those (a sum is non-finite if any term is; a finite sum that
    overflows only costs the exact path)."""
    n, oh, ow, _ = dyv.shape
    if FORCE_ALGORITHM != "winograd" and n * oh * ow < (least if memo is None else least_cached):
        return False
    if not _filter_finite(memo, w):
        return False
    if dyv.dtype.itemsize < 4:
        return _all_finite(dyv)
    return bool(np.isfinite(dyv.sum(dtype=np.float32)))


def _winograd_packed(w, pads, nat, nth):
    """The 4 stride phases' transformed filters U = G g G^T ([3, 3, Cin, Cout] each, g the
    phase's 2x2 taps in ascending dy offset), each packed for conv_winograd.c (reduced over
    Cout, Cin the lanes) and laid end to end. G's rows are (1, 0), (1, 1), (0, 1): U's
    entries are g's, and sums of two and of four of them."""
    cin, cout = w.shape[2:]
    size = nat.packed_size(9, cout, cin)
    _guard(4 * size + 9 * cin * cout, 4, (4 * size + 9 * cin * cout,),
           "Winograd transformed filter")
    if w.dtype.itemsize < 4:  # (half precision: its float32 values, for the compiled pass)
        w = nat.to_float32(w, nth)
    fast = nat.winograd_filter(w, pads, nth) if w.dtype == np.float32 else None
    if fast is not None:  # (the compiled transform: the same sums, one pass)
        return fast
    upk = np.empty(4 * size, np.float32)
    u = np.empty((3, 3, cin, cout), np.float32)
    for ph in (0, 1):
        amax = 2 if (ph + pads[0]) % 2 == 0 else 3  # the phase's taps: amax, amax - 2
        for pw in (0, 1):
            bmax = 2 if (pw + pads[1]) % 2 == 0 else 3
            for s_, a in ((0, amax), (2, amax - 2)):
                u[s_, 0] = w[a, bmax]
                u[s_, 2] = w[a, bmax - 2]
            np.add(u[0, 0], u[2, 0], out=u[1, 0])
            np.add(u[0, 2], u[2, 2], out=u[1, 2])
            np.add(u[:, 0], u[:, 2], out=u[:, 1])
            i = ph * 2 + pw
            nat.pack(u, 3, 1, nth, out=upk[i * size:(i + 1) * size])
    return upk


#: Least dy pixels for the F(2x2, 3x3) path of 3x3 stride-1 layers when the filter is not a
#: constant, and with a constant filter. With the compiled transform (512 x 512 channels:
#: 1.4 ms) it broke even with the direct kernel at about 256 pixels (Zen 4, 2 threads: 0.96x
#: at 512 channels, 1.02x at 32; 0.82-0.89x at 100-196).
WINOGRAD3_MIN_PIXELS = 400
WINOGRAD3_MIN_PIXELS_CACHED = 64


def _winograd3_takes(w_shape, strides, dilations, g, nat):
    """True for a 3x3 stride-1 undilated ungrouped layer with enough channels on both sides,
    and the library's F(2x2, 3x3) kernel."""
    kh, kw, cig, cout = w_shape
    return (nat is not None and getattr(nat, "has_winograd3", False)
            and (kh, kw) == (3, 3) and tuple(strides) == (1, 1) and tuple(dilations) == (1, 1)
            and g == 1 and (FORCE_ALGORITHM == "winograd"
                            or (cout >= WINOGRAD_MIN_COUT and cig >= WINOGRAD_MIN_CIN))
            and 16 * cout * _native_channels(cig, nat) * 4 <= WINOGRAD_MAX_FILTER_BYTES)


def _winograd3_applies(dyv, w, dxv, strides, dilations, g, memo):
    """_winograd3_takes for float32, float16 or bfloat16 views (float32 NHWC in place, NCHW
    and half precision staged) with enough pixels and finite values: the input gradient runs
    F(2x2, 3x3)."""
    if not _native_onecall_applies(dyv, dxv):
        return False
    nat = _native.load()
    if not _winograd3_takes(w.shape, strides, dilations, g, nat):
        return False
    return _winograd_worth_it(dyv, w, memo, WINOGRAD3_MIN_PIXELS, WINOGRAD3_MIN_PIXELS_CACHED)


def _winograd3_packed(w, nat, nth):
    """U = G g G^T of the 180-degree turned filter ([4, 4, Cin, Cout]; G's rows (1, 0, 0),
    (1/2, 1/2, 1/2), (1/2, -1/2, 1/2), (0, 0, 1)), packed for conv_winograd.c's wg3."""
    cin, cout = w.shape[2:]
    _guard(nat.packed_size(16, cout, cin) + 40 * cin * cout, 4,
           (nat.packed_size(16, cout, cin),), "Winograd F(2x2, 3x3) transformed filter")
    if w.dtype.itemsize < 4:  # (half precision: its float32 values, for the compiled pass)
        w = nat.to_float32(w, nth)
    fast = nat.winograd3_filter(w, nth) if w.dtype == np.float32 else None
    if fast is not None:  # (the compiled transform: the same sums, one pass)
        return fast
    g = w[::-1, ::-1].astype(np.float32, copy=False)  # g[a'] = w[2 - a']
    t = np.empty((4, 3, cin, cout), np.float32)       # G g along the rows
    t[0] = g[0]
    t[3] = g[2]
    h = 0.5 * (g[0] + g[2])
    t[1] = h + 0.5 * g[1]
    t[2] = h - 0.5 * g[1]
    u = np.empty((4, 4, cin, cout), np.float32)       # (G g) G^T along the columns
    u[:, 0] = t[:, 0]
    u[:, 3] = t[:, 2]
    h = 0.5 * (t[:, 0] + t[:, 2])
    u[:, 1] = h + 0.5 * t[:, 1]
    u[:, 2] = h - 0.5 * t[:, 1]
    return nat.pack(u, 3, 1, nth)


def _winograd3_run(dyv, w, dxv, pads, nth, memo):
    """dx by Winograd F(2x2, 3x3) in one call of conv_winograd.c; the transformed filter kept
    in ``memo`` (a constant filter is transformed once)."""
    nat = _native.load()
    upk = _memoized(memo, "winograd3", lambda: _winograd3_packed(w, nat, nth))
    nat.winograd3_bpi(dyv, upk, dxv, pads, nth)


def _winograd_run(dyv, w, dxv, pads, nth, memo):
    """dx by Winograd F(2x2, 2x2) per stride phase in one call of conv_winograd.c; the
    transformed filter kept in ``memo`` (a constant filter is transformed once)."""
    nat = _native.load()
    upk = _memoized(memo, "winograd", lambda: _winograd_packed(w, pads, nat, nth))
    nat.winograd_bpi(dyv, upk, dxv, pads, nth)


def _winograd_workspace_bytes(w_shape, nth, nat):
    """What the Winograd path allocates besides dx: the transformed filter and, per thread,
    the kernel's V and M tiles (at most 48 tiles of 9 transformed pixels each) and, for
    channel-strided operands, the staged rows of an item (3 dy rows of 51 pixels, 2 dx rows of
    96, or for m <= 16 images of r <= 16 tile rows of c tiles, m * r * c <= 48, m (2r + 1) dy
    rows of 2c + 3 pixels and 2mr dx rows of 4c: at most 720 and 384 pixels), plus one phase's
    unpacked transformed filter while the filter is transformed."""
    _, _, cin, cout = w_shape
    cop = _native_channels(cin, nat)
    per_thread = 9 * 48 * (cout + cop) + 720 * cout + 384 * cop
    return 4 * 9 * cout * cop * 4 + 9 * cin * cout * 4 + nth * per_thread * 4 + (64 << 10)


def _winograd3_workspace_bytes(w_shape, nth, nat):
    """What the F(2x2, 3x3) path allocates besides dx: the packed U and the numpy transform's
    temporaries; per thread V and M of at most 48 tiles of 16 transformed pixels and, for
    channel-strided operands, the staged rows (4 dy rows of 98 pixels, 2 dx rows of 96, or for
    m images of r tile rows of c tiles, m * r * c <= 48, m (2r + 2) dy rows of 2c + 2 pixels
    and 2mr dx rows of 2c: at most 640 and 192 pixels)."""
    _, _, cin, cout = w_shape
    cop = _native_channels(cin, nat)
    per_thread = 16 * 48 * (cout + cop) + 640 * cout + 2 * 96 * cop
    return 4 * (nat.packed_size(16, cout, cin) + 40 * cin * cout + nth * per_thread) + (64 << 10)


def _native_bpi_workspace_bytes(dy_shape, w_shape, x_shape, strides, dilations, pads, g, nth,
                                dtype):
    """Upper bound of what the one-call input gradient allocates besides dx: the packed filter
    (and a float32 copy of a half-precision one), and per thread the tap tables and, for
    channel-strided, grouped or half-precision operands, one work item's float32 dy rows and
    the dx rows of one row phase (rows per item as opgraph_bpi_f32 chooses them: about
    256 KiB of both, or a whole image when the filter is larger than its dy)."""
    nat = _native.load()
    n, oh, ow, cout = dy_shape
    kh, kw, cig, _ = w_shape
    _, h, wd, _ = x_shape
    (sh, sw), (dh, dw) = strides, dilations
    cog, cigp = cout // g, _native_channels(cig, nat)
    wbytes = 4 * g * kh * kw * cog * cigp + (0 if dtype == np.float32 else 4 * kh * kw * cig
                                             * cout)
    qmax, rmax = -(-h // sh), -(-wd // sw)
    rows = max(1, min(qmax, (1 << 18) // max(1, 4 * (ow * cog + sh * wd * cig))))
    if kh * kw * cog * cigp > oh * ow * cog and cigp > nat.block_width:
        rows = qmax  # (a filter larger than an image's dy: items take whole images)
    span = ((kh - 1) * dh) // sh + 2  # dy rows beyond an item's own that its taps reach
    # (dx rows are staged a row phase at a time, every column phase of it: whole rows of wd)
    staging = 4 * ((rows + span) * ow * cog + rows * wd * cigp)
    tables = 8 * (3 * sh * sw + 2 * sh * sw * (kh + kw) + 2 * kh * kw
                  + 3 * (-(-rmax // 4) + 1) * (kw + 1))
    return wbytes + nth * (staging + tables) + (128 << 10)


def _staging_fits(src, cols_read):
    """True unless the one-call kernel would stage whole source rows (channel-strided or half
    precision sources) far wider than the ``cols_read`` columns per row it reads (huge strides
    over a wide or zero-stride image: the gather engine's exact blocks read only those)."""
    if src.dtype == np.float32 and src.strides[3] == 4:
        return True  # read in place
    return src.shape[2] <= WINDOW_FACTOR * cols_read + WINDOW_SLACK // max(1, src.shape[3])


def _native_forward_run(xv, w, yv, strides, dilations, pads, g, nth, memo):
    """A forward convolution in one call of the compiled kernel (row chunks and groups on its
    own threads, NCHW and half types staged per item); the packed filter kept in ``memo``."""
    nat = _native.load()

    def packed():
        return nat.pack(nat.to_float32(w, nth), 2, g, nth)

    nat.forward(xv, _memoized(memo, "packed_forward", packed), yv, g, w.shape[:2], strides,
                dilations, pads, nth, NATIVE_BPI_ROWS, NATIVE_CHANNEL_CHUNK)


def _gather_layout(data_format):
    """Block layout of the gather engine ("flat" is a scatter layout: read as channel-first)."""
    if FORCE_LAYOUT is not None:
        return "cf" if FORCE_LAYOUT == "flat" else FORCE_LAYOUT
    return "cf" if data_format == "NCHW" else "pm"


def _scatter_layout(data_format, cig, g, finite=True):
    """Few input channels: flat adds (one group only, finite weights: its zero columns are
    multiplied by them) or channel-first rows; else pixel-major (channel-first for NCHW)."""
    layout = FORCE_LAYOUT
    if layout is None:
        layout = "flat" if cig < 16 else "cf" if data_format == "NCHW" else "pm"
    return "cf" if layout == "flat" and (g != 1 or not finite) else layout


def _backprop_gather_jobs(dyv, wc, dxv, strides, dilations, pads, g, zero_empty, memo=None):
    """One gather job per stride phase (sub-pixel decomposition of the input gradient); with
    ``memo`` (see _filter_memo) each phase's weights, in the job's tap order, are kept."""
    kh, kw, cig, cout = wc.shape
    cog = cout // g
    (sh, sw), (dh, dw), (pt, pl) = strides, dilations, pads
    jobs = []
    for ph in range(sh):
        tap_h = _phase_taps(kh, dh, sh, pt, ph)
        for pw in range(sw):
            tap_w = _phase_taps(kw, dw, sw, pl, pw)
            out = dxv[:, ph::sh, pw::sw, :]
            if not tap_h or not tap_w:
                if out.size and zero_empty:
                    out[...] = 0
                continue
            offs_h, offs_w = [t[1] for t in tap_h], [t[1] for t in tap_w]

            def phase_weights(tap_h=tap_h, tap_w=tap_w, offs_h=offs_h, offs_w=offs_w):
                dis = [t[0] for t in tap_h]
                djs = [t[0] for t in tap_w]
                # wk[g, th, tw, cog (source channel), cig (output channel)]
                sub = wc[np.ix_(dis, djs)]  # [th, tw, cig, cout]
                wk = sub.reshape(len(dis), len(djs), cig, g, cog).transpose(3, 0, 1, 4, 2)
                # in the job's (ascending offset) tap order
                return _GatherJob(dyv, out, offs_h, offs_w, (1, 1), wk, g).wk

            wk = _memoized(memo, ("phase", ph, pw), phase_weights)
            jobs.append(_GatherJob(dyv, out, offs_h, offs_w, (1, 1), wk, g, wk_sorted=True))
    return jobs


# --------------------------------------------------------------------------------------------
# the scatter engine (GEMM + col2im), phase-split accumulators
# --------------------------------------------------------------------------------------------
def _scatter_tasks(n, oh, ow, t, cin, cdt, nth):
    """Blocks of the scatter: images per block so the col buffer is about SCATTER_BYTES; row
    chunks of one image otherwise (a task's chunks share the accumulator, so one thread)."""
    # units: images per block so the col buffer is about BLOCK_BYTES*2; row chunks otherwise
    col_row = ow * t * cin * cdt.itemsize  # bytes of col per dy row
    img_bytes = max(1, col_row * oh)
    # With few input channels each tap's add is short, so per-call overhead dominates: bigger
    # blocks (fewer adds) measured F 9.0 -> 7.9 ms; B (64 channels) gains nothing from them.
    budget = SCATTER_BYTES * (2 if cin < 16 else 1)
    tasks = []
    if img_bytes <= budget:
        per = max(1, budget // img_bytes)
        if nth > 1:
            per = max(1, min(per, -(-n // (2 * nth))))
        for n0 in range(0, n, per):
            tasks.append([(n0, min(n, n0 + per), 0, oh)])
    else:
        rows = max(1, budget // max(col_row, 1))
        for n0 in range(n):
            tasks.append([(n0, n0 + 1, i0, min(oh, i0 + rows)) for i0 in range(0, oh, rows)])
    return tasks


def _scatter_run(dyv, wc, dxv, strides, dilations, pads, g, cdt, layout, nth):
    n, h, wd, cin = dxv.shape
    _, oh, ow, cout = dyv.shape
    kh, kw, cig, _ = wc.shape
    cog = cout // g
    sh, sw = strides
    dh, dw = dilations
    pt, pl = pads
    t = kh * kw
    # wcat[g]: [cog, (t, cig)]  (pm: col = dy_g @ wcat[g]);  wcatT[g]: [(t, cig), cog]
    wk = wc.reshape(kh, kw, cig, g, cog).transpose(3, 4, 0, 1, 2).reshape(g, cog, t * cig)
    wcat = np.ascontiguousarray(wk)
    wcatT = np.ascontiguousarray(wk.transpose(0, 2, 1))
    taps = _tap_offsets(kh, kw, strides, dilations, pads)
    # accumulate straight into dx when it has the compute dtype and the adds stay contiguous:
    # pixel-major blocks add channel runs (any stride: dx[:, ph::sh, pw::sw] is fine);
    # channel-first blocks add row runs (stride 1 only). Otherwise per-phase accumulators.
    if dxv.dtype != cdt:
        direct = False
    elif layout == "pm":
        direct = dxv.strides[3] == dxv.itemsize
    else:
        direct = sh == 1 and sw == 1 and dxv.strides[2] == dxv.itemsize
    tasks = _scatter_tasks(n, oh, ow, t, cin, cdt, nth)
    hq = [len(range(p, h, sh)) for p in range(sh)]
    wq = [len(range(p, wd, sw)) for p in range(sw)]

    def worker(ws, task):
        n0, n1 = task[0][0], task[0][1]
        un = n1 - n0
        # accumulators per phase: logical [un, hq, wq, cin]
        accs = {}
        if direct:
            a = dxv[n0:n1]
            a[...] = 0
            for pa in range(sh):
                for pb in range(sw):
                    accs[(pa, pb)] = a[:, pa::sh, pb::sw]
        else:
            tot = sum(un * hq[a] * wq[b] * cin for a in range(sh) for b in range(sw))
            abuf = _buf(ws, "acc", tot, cdt)
            abuf[...] = 0
            off = 0
            for a in range(sh):
                for b in range(sw):
                    sz = un * hq[a] * wq[b] * cin
                    if layout == "pm":
                        v = abuf[off:off + sz].reshape(un, hq[a], wq[b], cin)
                    else:
                        v = abuf[off:off + sz].reshape(cin, un, hq[a], wq[b]).transpose(1, 2, 3, 0)
                    accs[(a, b)] = v
                    off += sz
        for (_, _, i0, i1) in task:
            ui = i1 - i0
            m = un * ui * ow
            blk = dyv[n0:n1, i0:i1]  # [un, ui, ow, cout]
            d2 = _as_2d(blk, m, cout)
            if d2 is None or d2.dtype != cdt:
                dbuf = _buf(ws, "dy", m * cout, cdt).reshape(m, cout)
                _store(dbuf.reshape(un, ui, ow, cout), blk)
                d2 = dbuf
            cbuf = _buf(ws, "col", g * m * t * cig, cdt)
            cols = []
            for gi in range(g):
                dg = d2[:, gi * cog:(gi + 1) * cog]
                if layout == "pm":
                    c = cbuf[gi * m * t * cig:(gi + 1) * m * t * cig].reshape(m, t * cig)
                    np.matmul(dg, wcat[gi], out=c)
                    cols.append(c.reshape(un, ui, ow, t, cig))
                else:
                    c = cbuf[gi * m * t * cig:(gi + 1) * m * t * cig].reshape(t * cig, m)
                    np.matmul(wcatT[gi], dg.T, out=c)
                    cols.append(c.reshape(t, cig, un, ui, ow).transpose(2, 3, 4, 0, 1))
            for (ti, ph, eh, pw, ew) in taps:
                # dy row i -> acc row i + eh, valid 0 <= i+eh < hq[ph]
                lo_i = max(i0, -eh)
                hi_i = min(i1, hq[ph] - eh)
                lo_j = max(0, -ew)
                hi_j = min(ow, wq[pw] - ew)
                if lo_i >= hi_i or lo_j >= hi_j:
                    continue
                acc = accs[(ph, pw)]
                dst = acc[:, lo_i + eh:hi_i + eh, lo_j + ew:hi_j + ew]
                for gi in range(g):
                    srcv = cols[gi][:, lo_i - i0:hi_i - i0, lo_j:hi_j, ti]
                    if g == 1:
                        np.add(dst, srcv, out=dst)
                    else:
                        d = dst[..., gi * cig:(gi + 1) * cig]
                        np.add(d, srcv, out=d)
        if not direct:
            for (a, b), v in accs.items():
                _store(dxv[n0:n1, a::sh, b::sw], v)

    _run_tasks(tasks, worker, nth)


def _tap_offsets(kh, kw, strides, dilations, pads):
    """(tap index, phase row, row shift, phase col, col shift) per filter tap: dy position
    (i, j) of tap (di, dj) lands on row i + eh, col j + ew of stride phase (ph, pw)."""
    sh, sw = strides
    dh, dw = dilations
    pt, pl = pads
    taps = []
    for di in range(kh):
        vh = di * dh - pt
        ph = vh % sh
        for dj in range(kw):
            vw = dj * dw - pl
            pw = vw % sw
            taps.append((di * kw + dj, ph, (vh - ph) // sh, pw, (vw - pw) // sw))
    return taps


class _FlatGeometry:
    """Layout of the "flat" scatter: dy rows zero-padded to the accumulators' row width
    ``wp``, so that every tap's contribution is ONE contiguous add at a flat offset (the
    padding columns of ``dy @ W^T`` are zero, so what they add past a row's end is zero)."""

    def __init__(self, h, wd, oh, ow, taps, strides):
        sh, sw = strides
        self.hq = [len(range(p, h, sh)) for p in range(sh)]
        self.wq = [len(range(p, wd, sw)) for p in range(sw)]
        ehs = [t[2] for t in taps]
        ews = [t[4] for t in taps]
        self.top = max(0, -min(ehs))
        self.left = max(0, -min(ews))
        self.wp = max(ow + self.left + max(0, max(ews)), self.left + max(self.wq))
        self.rows = max(oh + max(ehs) + self.top, self.top + max(self.hq))
        self.plane = (self.rows + 1) * self.wp          # flat accumulator per image, channel

    def acc_elems(self, un, cin, n_phases):
        return n_phases * cin * un * self.plane


def _scatter_flat_run(dyv, wc, dxv, strides, dilations, pads, cdt, nth):
    """Scatter for few input channels and one group: ``col = W^T dy`` per block, then one
    long contiguous add per tap instead of one short strided add per row (F 7.7 -> 6.9 ms)."""
    n, h, wd, cin = dxv.shape
    _, oh, ow, cout = dyv.shape
    kh, kw, _, _ = wc.shape
    sh, sw = strides
    t = kh * kw
    wcat_t = np.ascontiguousarray(wc.reshape(t * cin, cout))          # [(t, cin), cout]
    taps = _tap_offsets(kh, kw, strides, dilations, pads)
    geo = _FlatGeometry(h, wd, oh, ow, taps, strides)
    wp, plane = geo.wp, geo.plane
    phases = [(a, b) for a in range(sh) for b in range(sw)]
    tasks = _scatter_tasks(n, oh, wp, t, cin, cdt, nth)

    def worker(ws, task):
        n0, n1 = task[0][0], task[0][1]
        un = n1 - n0
        abuf = _buf(ws, "acc", geo.acc_elems(un, cin, len(phases)), cdt)
        abuf[...] = 0
        accs = {ph: abuf[k * cin * un * plane:(k + 1) * cin * un * plane].reshape(cin, un, plane)
                for k, ph in enumerate(phases)}
        for (_, _, i0, i1) in task:
            ui = i1 - i0
            m = un * ui * wp
            dpad = _buf(ws, "dy", m * cout, cdt).reshape(un, ui, wp, cout)
            dpad[:, :, ow:] = 0
            _store(dpad[:, :, :ow], dyv[n0:n1, i0:i1])
            col = _buf(ws, "col", t * cin * m, cdt).reshape(t * cin, m)
            np.matmul(wcat_t, dpad.reshape(m, cout).T, out=col)
            col = col.reshape(t, cin, un, ui * wp)
            for (ti, ph, eh, pw, ew) in taps:
                off = (i0 + eh + geo.top) * wp + ew + geo.left
                dst = accs[(ph, pw)][:, :, off:off + ui * wp]
                np.add(dst, col[ti], out=dst)
        for (a, b) in phases:
            v = accs[(a, b)].reshape(cin, un, geo.rows + 1, wp)
            v = v[:, :, geo.top:geo.top + geo.hq[a], geo.left:geo.left + geo.wq[b]]
            _store(dxv[n0:n1, a::sh, b::sw], v.transpose(1, 2, 3, 0))

    _run_tasks(tasks, worker, nth)


# --------------------------------------------------------------------------------------------
# workspace accounting
# --------------------------------------------------------------------------------------------
# workspace accounting (mirrors the block plans above)
# --------------------------------------------------------------------------------------------
def _gather_block_elems(job, unit, wino, taps=False):
    if not _window_ok(job, unit, _taps_window(job, unit) if taps else _gather_window(job, unit)[4]):
        return _exact_block_elems(job, unit)
    n0, n1, q0, q1 = unit
    _, _, r, co = job.out.shape
    cs = job.src.shape[3]
    un, uq = n1 - n0, q1 - q0
    if taps:
        nr = uq + job.offs_h[-1] - job.offs_h[0]
        nc = r + job.offs_w[-1] - job.offs_w[0]
        return {"pad": un * nr * nc * cs, "tacc": uq * nc * co, "ttmp": ((uq - 1) * nc + r) * co}
    if wino:
        tq, tr = (uq + 1) // 2, (r + 1) // 2
        nt = un * tq * tr
        return {"pad": un * (2 * tq + 2) * (2 * tr + 2) * cs,
                "wgT": 4 * un * tq * (2 * tr + 2) * cs,
                "wgV": 16 * nt * cs, "wgM": 16 * nt * co, "wgZ": 8 * nt * co,
                "wgY": un * 4 * tq * tr * co}
    sh, sw = job.step
    t = len(job.offs_h) * len(job.offs_w)
    nr = (uq - 1) * sh + job.offs_h[-1] - job.offs_h[0] + 1
    nc = (r - 1) * sw + job.offs_w[-1] - job.offs_w[0] + 1
    return {"pad": un * nr * nc * cs, "pat": un * uq * r * t * cs, "otmp": un * uq * r * co}


def conv2d_backprop_input_workspace_bytes(dy_shape, w_shape, input_shape, strides, dilations,
                                          pads_before, data_format="NHWC", dtype=np.float32):
    """Upper bound of the temporary memory (bytes) one conv2d_backprop_input call allocates
    besides the returned dx: the per-thread block buffers (kept between calls, up to
    KEEP_WORKSPACE_BYTES per thread) and the rearranged weights. It follows the same block plan
    as the kernel, so it does not grow with the batch (except for the 'direct' path, used only
    below TINY_MACS)."""
    plan = _plan_workspace_bytes(dy_shape, w_shape, input_shape, strides, dilations,
                                 pads_before, data_format, dtype)
    # the Winograd path, where it may run (whether it does depends on the values' finiteness
    # and the filter cache, so the bound covers both)
    nat = _native.load() if USE_NATIVE else None
    nhwc = (0, 1, 2, 3) if data_format == "NHWC" else (0, 2, 3, 1)
    dyn = tuple(int(dy_shape[i]) for i in nhwc)
    xn = tuple(int(input_shape[i]) for i in nhwc)
    wsh = tuple(int(v) for v in w_shape)
    wino = (FORCE_ALGORITHM in (None, "winograd") and 0 not in dyn + xn + wsh
            and nat is not None and nat.dtype_code(dtype) is not None)
    # (half precision: the filter's float32 copy and a chunk of the finite check as well)
    half = 0 if np.dtype(dtype) == np.float32 else 4 * int(np.prod(wsh)) + 2 * _FINITE_CHUNK
    if wino and _winograd_takes(dyn, wsh, xn, strides, dilations, _groups_of(xn[3], wsh[2]),
                                nat):
        macs = dyn[0] * dyn[1] * dyn[2] * 16 * wsh[2] * wsh[3]
        nth = _threads(macs)
        plan = max(plan, _winograd_workspace_bytes(wsh, nth, nat) + half)
    if wino and _winograd3_takes(wsh, strides, dilations, _groups_of(xn[3], wsh[2]), nat):
        nth = _threads(dyn[0] * dyn[1] * dyn[2] * 9 * wsh[2] * wsh[3])
        plan = max(plan, _winograd3_workspace_bytes(wsh, nth, nat) + half)
    if (FORCE_ALGORITHM is None and data_format == "NCHW" and np.dtype(dtype) == np.float32
            and 0 not in dyn + xn + wsh
            and _tiling_planes_takes(dyn, wsh, xn, strides, dilations, pads_before,
                                     _groups_of(xn[3], wsh[2]))):
        nth = _threads(dyn[0] * dyn[1] * dyn[2] * wsh[0] * wsh[1] * wsh[2] * wsh[3])
        plan = max(plan, _tiling_planes_workspace_bytes(wsh, nth))
    return plan


def _plan_workspace_bytes(dy_shape, w_shape, input_shape, strides, dilations, pads_before,
                          data_format, dtype):
    """conv2d_backprop_input_workspace_bytes of every path but the Winograd one."""
    cdt = _compute_dtype(dtype)
    isz = cdt.itemsize
    nhwc = (0, 1, 2, 3) if data_format == "NHWC" else (0, 2, 3, 1)
    dyn = tuple(int(dy_shape[i]) for i in nhwc)
    xn = tuple(int(input_shape[i]) for i in nhwc)
    n, oh, ow, cout = dyn
    _, h, wd, cin = xn
    kh, kw, cig, _ = (int(v) for v in w_shape)
    if 0 in (n, h, wd, cin, oh, ow, cout, kh, kw, cig):
        return 0
    # the problem the kernel really solves: taps and dy positions that reach dx
    red = _backprop_reduction(oh, ow, kh, kw, h, wd, tuple(strides), tuple(dilations),
                              tuple(pads_before))
    if red is None:
        return 0
    (lo_h, hi_h), (lo_w, hi_w), (i0, i1), (j0, j1), pads_before = red
    kh, kw, oh, ow = hi_h - lo_h, hi_w - lo_w, i1 - i0, j1 - j0
    dyn = (n, oh, ow, cout)
    g = _groups_of(cin, cig)
    t = kh * kw
    # rearranged weight copies (phase subsets, transposes, contiguous GEMM operands) and the
    # interpreter's own small objects of a call
    wbytes = 6 * t * cig * cout * isz + (128 << 10)
    algo = FORCE_ALGORITHM or choose_backprop_input_algorithm(dyn, (kh, kw, cig, cout), xn,
                                                              tuple(strides), dtype)
    if algo == "winograd":  # (where it does not apply)
        algo = choose_backprop_input_algorithm(dyn, (kh, kw, cig, cout), xn, tuple(strides),
                                               dtype)
    direct_bytes = 0
    if algo == "direct" and g == 1:  # patches (dy's dtype and the compute dtype), the GEMM
        patches = n * h * wd * t * cout  # result, the position masks
        direct_bytes = (2 * patches + n * h * wd * cin) * isz + 2 * h * wd * t + wbytes
    if algo == "direct":  # (grouped, or non-finite weights: the gather plan)
        algo = "gather"
    macs = n * oh * ow * t * cig * cout
    if (FORCE_ALGORITHM is None
            and _pixel_shuffle_applies(dyn, (kh, kw, cig, cout), xn, tuple(strides),
                                       tuple(dilations), tuple(pads_before), g)
            and _native.load().dtype_code(dtype) is not None):
        # NHWC: per row phase a packed [cout, kw*cin] filter (and its float32 rows), per
        # thread one item's staging (half types: about 256 KiB) and tables; NCHW: the
        # sub-pixel convolution's (m = 1)
        if data_format == "NCHW":
            return max(direct_bytes, _subpixel_conv_workspace_bytes(
                n, h, wd, (kh, kw, cin, cout), strides, (0, 0), np.dtype(dtype).itemsize))
        nat = _native.load()
        packed = 4 * kh * (nat.packed_size(1, cout, kw * cin) + kw * cin * cout)
        return max(direct_bytes, packed + NUM_THREADS * ((512 << 10) + 64 * ow) + (128 << 10))
    if (FORCE_ALGORITHM is None and np.dtype(dtype) == np.float32
            and _subpixel_conv_takes(dyn, (kh, kw, cig, cout), xn, tuple(strides),
                                     tuple(dilations), tuple(pads_before), g)):
        return max(direct_bytes, _subpixel_conv_workspace_bytes(
            n, h, wd, (kh, kw, cin, cout), strides, pads_before, 4))
    if (FORCE_ALGORITHM in (None, "subpixel") and np.dtype(dtype) == cdt
            and (data_format == "NHWC" or FORCE_ALGORITHM == "subpixel")
            and _subpixel_gemm_takes(dyn, (kh, kw, cig, cout), xn, tuple(strides),
                                     tuple(dilations), tuple(pads_before), g, cdt)):
        # the filter as [(a, b, c), cout]; per block of dy rows the GEMM's result and, for a
        # dy that is not one matrix, its rows (BLAS's own buffers are not Python allocations)
        kk = kh * kw * cin
        blk = _subpixel_block_elems(n, oh, ow, kk, isz)
        return max(direct_bytes, (kk * cout + blk + blk // kk * cout) * isz + (128 << 10))
    if (algo == "native" and USE_NATIVE and FORCE_ALGORITHM in (None, "native", "winograd")
            and _native.load() is not None
            and _native.load().dtype_code(dtype) is not None):
        nth = _threads(macs)
        return _native_bpi_workspace_bytes(
            (n, oh, ow, cout), (kh, kw, cig, cout), xn, strides, dilations, pads_before, g,
            nth, np.dtype(dtype))
    nth = _threads(macs) if (cdt != np.int64 and _BLAS.available) else 1
    zero = np.zeros((), cdt)
    dummy_dy = np.broadcast_to(zero, dyn)
    dummy_dx = np.broadcast_to(zero, xn)
    dummy_w = np.broadcast_to(zero, (kh, kw, cig, cout))
    per_key = {}
    ntask = 0
    if algo in ("native", "gather"):  # (the gather plan's jobs run natively where they can)
        jobs = _backprop_gather_jobs(dummy_dy, dummy_w, dummy_dx, tuple(strides),
                                     tuple(dilations), tuple(pads_before), g, False)
        nat = None
        # staging buffers (counted always: whether dy and dx need them depends on their
        # strides, not only on the format and dtype)
        ntask = 0
        split = _split_groups(jobs, cdt)
        for job in split:
            nat = _native_for(job, cdt)
            if nat is None:  # falls back to the numpy gather engine
                algo = "gather"
                break
            n_, q_, r_, co_ = job.out.shape
            out_shape = (n_, q_, r_, _native_channels(co_, nat))  # padded output channels
            for u in _native_units(job, len(split)):
                ntask += 1
                _, _, nsrc, nout = _native_staging(job.src.shape, out_shape, u,
                                                   job.offs_h, job.step)
                if not _window_ok(job, u, nsrc):  # such a block runs _exact_block
                    for k, v in _exact_block_elems(job, u).items():
                        per_key[k] = max(per_key.get(k, 0), v)
                    continue
                per_key["nsrc"] = max(per_key.get("nsrc", 0), nsrc)
                per_key["nout"] = max(per_key.get("nout", 0), nout)
        else:
            algo = "native" if nat is not None else algo
        if algo == "native":  # the packed weights (and their zero-padded copy when padded)
            cig_pad = _native_channels(cig, nat)
            wbytes += (1 if cig_pad == cig else 2) * t * cig_pad * cout * isz
    if algo == "gather":
        per_key = {}
        layout = _gather_layout(data_format)
        jobs = _backprop_gather_jobs(dummy_dy, dummy_w, dummy_dx, tuple(strides),
                                     tuple(dilations), tuple(pads_before), g, False)
        ntask = 0
        for job in jobs:
            taps = _taps_ok(job, layout)
            wino = not taps and _winograd_ok(job, cdt, layout)
            job.wino = True if wino else None
            if wino:  # its float64 transform temporaries and the transformed filter
                wbytes += 37 * cig * cout * 8 + 16 * cig * cout * isz
            for u in _gather_units(job, cdt):
                ntask += 1
                # (non-finite weights run every block through _exact_block)
                for elems in (_gather_block_elems(job, u, wino, taps),
                              _exact_block_elems(job, u)):
                    for k, v in elems.items():
                        per_key[k] = max(per_key.get(k, 0), v)
    if algo == "scatter" and _scatter_layout(data_format, cig, g) == "flat":
        geo = _FlatGeometry(h, wd, oh, ow, _tap_offsets(kh, kw, strides, dilations,
                                                         pads_before), strides)
        tasks = _scatter_tasks(n, oh, geo.wp, t, cin, cdt, nth)
        ntask = len(tasks)
        for task in tasks:
            un = task[0][1] - task[0][0]
            per_key["acc"] = max(per_key.get("acc", 0),
                                 geo.acc_elems(un, cin, strides[0] * strides[1]))
            for (_, _, i0, i1) in task:
                m = un * (i1 - i0) * geo.wp
                per_key["dy"] = max(per_key.get("dy", 0), m * cout)
                per_key["col"] = max(per_key.get("col", 0), m * t * cin)
    if algo == "scatter":  # (with non-finite weights a flat scatter runs channel-first)
        tasks = _scatter_tasks(n, oh, ow, t, cin, cdt, nth)
        ntask = max(ntask, len(tasks))
        sh, sw = strides
        accs = sum(len(range(a, h, sh)) * len(range(b, wd, sw))
                   for a in range(sh) for b in range(sw)) * cin
        for task in tasks:
            un = task[0][1] - task[0][0]
            per_key["acc"] = max(per_key.get("acc", 0), un * accs)
            for (_, _, i0, i1) in task:
                m = un * (i1 - i0) * ow
                per_key["dy"] = max(per_key.get("dy", 0), m * cout)
                per_key["col"] = max(per_key.get("col", 0), m * t * cin)
    return max(direct_bytes, min(nth, max(ntask, 1)) * sum(per_key.values()) * isz + wbytes)


# --------------------------------------------------------------------------------------------
# backprop filter
# --------------------------------------------------------------------------------------------
#: GEMM depth (output pixels) one block of the numpy filter gradient aims at per tap GEMM.
FILTER_TARGET_PIXELS = 4096
#: With finite dy, one group and fewer input channels than this, the numpy filter gradient
#: gathers every tap of a block into one channel-first patch matrix and runs ONE GEMM
#: ``patches [taps * C_in, pixels] @ dy [pixels, C_out]`` instead of a thin GEMM per tap
#: (F, 3 channels and 49 taps: 126 ms -> see docs/conv_kernel.md).
FILTER_PATCH_MAX_CHANNELS = 16
#: How the compiled filter gradient shares a call between threads: None (auto, see
#: _filter_plan), "channels", "taps" or "pixels".
FILTER_SPLIT = None
#: Channel blocks (of the kernel's block width) each thread needs for the auto split by
#: channels when groups do not suffice.
FILTER_SPLIT_MIN_BLOCKS = 4
#: Output pixels (per filter entry: the GEMM depth) from which the auto split may go by pixels
#: (per-thread accumulators summed at the end).
FILTER_SPLIT_MIN_PIXELS = 1024


def conv2d_backprop_filter(x, dy, filter_shape, strides, dilations, pads_before,
                           data_format="NHWC"):
    """dw = gradient of conv2d wrt its filter (the adjoint of conv2d_forward in w).

    ``dw[di, dj, c, o] = sum over images and output pixels (i, j) of
    x[n, i*sh + di*dh - pt, j*sw + dj*dw - pl, g*cig + c] * dy[n, i, j, o]`` for o in group g,
    over the positions inside x only (taps reading padding add nothing, so non-finite values
    reach exactly the taps whose sums contain them). filter_shape: [kh, kw, cig, cout] (HWIO);
    groups = C_in // cig. Returns dw with the dtype of x. ResourceExhaustedError when a buffer
    it needs exceeds the allocation limit or memory runs out.
    """
    try:
        return _conv2d_backprop_filter(x, dy, filter_shape, strides, dilations, pads_before,
                                       data_format)
    except errors.ResourceExhaustedError:
        raise
    except MemoryError as e:
        raise _oom(e, "Conv2DBackpropFilter") from e


def _filter_taps(x_nhwc, dy_nhwc, filter_shape, strides, dilations, pads):
    """((lo_h, hi_h), (lo_w, hi_w), offs_h, offs_w): the filter taps that read inside x for
    some output and their source offsets; None when no tap does (dw is zero)."""
    n, h, wd, _ = x_nhwc
    _, oh, ow, _ = dy_nhwc
    kh, kw = filter_shape[:2]
    (sh, sw), (dh, dw), (pt, pl) = strides, dilations, pads
    if 0 in (n, h, wd, oh, ow, kh, kw):
        return None
    lo_h, hi_h = _tap_range(kh, dh, sh, pt, oh, h)
    lo_w, hi_w = _tap_range(kw, dw, sw, pl, ow, wd)
    if lo_h >= hi_h or lo_w >= hi_w:
        return None
    return ((lo_h, hi_h), (lo_w, hi_w), [a * dh - pt for a in range(lo_h, hi_h)],
            [b * dw - pl for b in range(lo_w, hi_w)])


def _filter_threads(macs, cdt):
    nth = _threads(macs) if cdt != np.int64 else 1
    return nth if _BLAS.available else 1


def _conv2d_backprop_filter(x, dy, filter_shape, strides, dilations, pads, data_format):
    x = np.asarray(x)
    dy = np.asarray(dy)
    assert x.ndim == 4 and dy.ndim == 4 and len(filter_shape) == 4
    assert data_format in ("NHWC", "NCHW")
    kh, kw, cig, cout = (int(v) for v in filter_shape)
    strides = (int(strides[0]), int(strides[1]))
    dilations = (int(dilations[0]), int(dilations[1]))
    pads = (int(pads[0]), int(pads[1]))
    odt = x.dtype
    cdt = _compute_dtype(odt)
    check_allocation((kh, kw, cig, cout), odt.itemsize, "Conv2DBackpropFilter output")
    dw = np.zeros((kh, kw, cig, cout), odt)
    xv, dyv = _nhwc(x, data_format), _nhwc(dy, data_format)
    if dw.size == 0:
        return dw
    red = _filter_taps(xv.shape, dyv.shape, (kh, kw), strides, dilations, pads)
    if red is None:
        return dw
    (lo_h, hi_h), (lo_w, hi_w), offs_h, offs_w = red
    th, tw = hi_h - lo_h, hi_w - lo_w
    g = _groups_of(xv.shape[3], cig)
    n, oh, ow = dyv.shape[:3]
    nth = _filter_threads(n * oh * ow * th * tw * cig * cout, cdt)
    region = dw[lo_h:hi_h, lo_w:hi_w]
    nat = _native_filter(xv, dyv, offs_h, offs_w, strides, cout // g, cdt)
    if region.dtype == cdt:
        acc = region  # accumulated in place
    else:
        _guard(region.size, cdt.itemsize, region.shape, "Conv2DBackpropFilter accumulator")
        acc = np.zeros(region.shape, cdt)
    macs = n * oh * ow * th * tw * cig * cout
    if _filter_tiny(g, macs, nat) and _all_finite(dyv):
        _tiny_filter(xv, dyv, acc, offs_h, offs_w, strides, cdt)
    elif nat is not None:
        _filter_native_run(nat, xv, dyv, acc, offs_h, offs_w, strides, g, nth)
    else:
        _filter_numpy_run(xv, dyv, acc, offs_h, offs_w, strides, g, cdt, nth)
    if acc is not region:
        _store(region, acc)
    return dw


def _filter_tiny(g, macs, nat):
    """True if the one-GEMM path of tiny problems runs (with finite dy): forced ("direct"), or
    below TINY_MACS where the compiled kernel does not apply (where it does, it is the faster
    even for a few thousand multiply-adds: fewer numpy calls than the patches and GEMM)."""
    if g != 1:
        return False
    if FORCE_ALGORITHM is not None:
        return FORCE_ALGORITHM == "direct"
    return nat is None and macs < TINY_MACS


class _PrivateTargets:
    """One accumulator per thread for work split by pixels: the first thread adds to ``acc``
    itself, the others to zeroed copies, summed into ``acc`` by ``reduce()``."""

    def __init__(self, acc, what):
        self.acc, self.what = acc, what
        self._by_ws = {}
        self._lock = threading.Lock()

    def get(self, ws):
        t = self._by_ws.get(id(ws))
        if t is None:
            with self._lock:
                if any(v is self.acc for v in self._by_ws.values()):
                    _guard(self.acc.size, self.acc.itemsize, self.acc.shape, self.what)
                    t = np.zeros(self.acc.shape, self.acc.dtype)
                else:
                    t = self.acc
                self._by_ws[id(ws)] = t
        return t

    def reduce(self):
        for t in self._by_ws.values():
            if t is not self.acc:
                np.add(self.acc, t, out=self.acc)


def _filter_numpy_run(xv, dyv, acc, offs_h, offs_w, step, g, cdt, nth):
    """Per-tap GEMMs ``x_tap^T @ dy`` block by block of output rows. With finite dy, each
    tap's x operand covers the whole block with zeros where the tap reads outside x, so dy's
    block is one operand for every tap (a view, or one copy per block); otherwise (0 * inf
    would be NaN where a direct loop has none) each tap's GEMM runs over exactly the output
    pixels whose source lies inside x, with dy copied per tap."""
    n, h, wd, cin = xv.shape
    _, oh, ow, cout = dyv.shape
    _, _, cig, _ = acc.shape
    cog = cout // g
    sh, sw = step
    isz = cdt.itemsize
    th, tw = len(offs_h), len(offs_w)
    padded = _all_finite(dyv)
    patches = padded and g == 1 and cin < FILTER_PATCH_MAX_CHANNELS and th * tw > 1
    per_pixel = (th * tw * cin if patches else cin) + cout
    rows = max(1, min(BLOCK_BYTES // max(1, ow * per_pixel * isz),
                      -(-FILTER_TARGET_PIXELS // max(ow, 1))))
    targets = _PrivateTargets(acc, "Conv2DBackpropFilter per-thread accumulator")

    def gemm(ws, dst, a, b, x2, d2):
        tmp = _buf(ws, "ftmp", cig * cog, cdt).reshape(cig, cog)
        for gi in range(g):
            np.matmul(x2[:, gi * cig:(gi + 1) * cig].T, d2[:, gi * cog:(gi + 1) * cog], out=tmp)
            part = dst[a, b, :, gi * cog:(gi + 1) * cog]
            np.add(part, tmp, out=part)

    def tap_view(n0, n1, qa, qb, ra, rb, off_h, off_w):
        return xv[n0:n1, qa * sh + off_h:(qb - 1) * sh + off_h + 1:sh,
                  ra * sw + off_w:(rb - 1) * sw + off_w + 1:sw]

    def block_dy(ws, n0, n1, q0, q1):
        m = (n1 - n0) * (q1 - q0) * ow
        d2 = _as_2d(dyv[n0:n1, q0:q1], m, cout)
        if d2 is None or d2.dtype != cdt:
            d2 = _buf(ws, "fdy", m * cout, cdt).reshape(m, cout)
            _store(d2.reshape(n1 - n0, q1 - q0, ow, cout), dyv[n0:n1, q0:q1])
        return d2

    def worker_patches(ws, unit):
        dst = targets.get(ws)
        n0, n1, q0, q1 = unit
        un, uq = n1 - n0, q1 - q0
        m = un * uq * ow
        d2 = block_dy(ws, n0, n1, q0, q1)
        # [taps, cin, un, uq, ow]: each tap's copy runs along image rows, not 3-channel runs
        pat = _buf(ws, "fpat", th * tw * cin * m, cdt).reshape(th, tw, cin, un, uq, ow)
        for a, off_h in enumerate(offs_h):
            qa, qb = _valid_range(q0, q1, sh, off_h, h)
            for b, off_w in enumerate(offs_w):
                ra, rb = _valid_range(0, ow, sw, off_w, wd)
                slab = pat[a, b]
                if qa >= qb or ra >= rb:
                    slab[...] = 0
                    continue
                slab[:, :, :qa - q0] = 0
                slab[:, :, qb - q0:] = 0
                slab[:, :, qa - q0:qb - q0, :ra] = 0
                slab[:, :, qa - q0:qb - q0, rb:] = 0
                _store(slab[:, :, qa - q0:qb - q0, ra:rb],
                       tap_view(n0, n1, qa, qb, ra, rb, off_h, off_w).transpose(3, 0, 1, 2))
        tmp = _buf(ws, "ftmp", th * tw * cin * cout, cdt).reshape(th * tw * cin, cout)
        np.matmul(pat.reshape(th * tw * cin, m), d2, out=tmp)
        np.add(dst, tmp.reshape(dst.shape), out=dst)

    def worker_padded(ws, unit):
        dst = targets.get(ws)
        n0, n1, q0, q1 = unit
        un, uq = n1 - n0, q1 - q0
        m = un * uq * ow
        d2 = block_dy(ws, n0, n1, q0, q1)
        for a, off_h in enumerate(offs_h):
            qa, qb = _valid_range(q0, q1, sh, off_h, h)
            if qa >= qb:
                continue
            for b, off_w in enumerate(offs_w):
                ra, rb = _valid_range(0, ow, sw, off_w, wd)
                if ra >= rb:
                    continue
                xs = tap_view(n0, n1, qa, qb, ra, rb, off_h, off_w)
                x2 = None
                if (qa, qb, ra, rb) == (q0, q1, 0, ow):
                    x2 = _as_2d(xs, m, cin)
                if x2 is None or x2.dtype != cdt:
                    xb = _buf(ws, "fx", m * cin, cdt).reshape(un, uq, ow, cin)
                    xb[:, :qa - q0] = 0
                    xb[:, qb - q0:] = 0
                    xb[:, qa - q0:qb - q0, :ra] = 0
                    xb[:, qa - q0:qb - q0, rb:] = 0
                    _store(xb[:, qa - q0:qb - q0, ra:rb], xs)
                    x2 = xb.reshape(m, cin)
                gemm(ws, dst, a, b, x2, d2)

    def worker_exact(ws, unit):
        dst = targets.get(ws)
        n0, n1, q0, q1 = unit
        un = n1 - n0
        for a, off_h in enumerate(offs_h):
            qa, qb = _valid_range(q0, q1, sh, off_h, h)
            if qa >= qb:
                continue
            for b, off_w in enumerate(offs_w):
                ra, rb = _valid_range(0, ow, sw, off_w, wd)
                if ra >= rb:
                    continue
                xs = tap_view(n0, n1, qa, qb, ra, rb, off_h, off_w)
                ds = dyv[n0:n1, qa:qb, ra:rb]
                m = un * (qb - qa) * (rb - ra)
                x2 = _as_2d(xs, m, cin)
                if x2 is None or x2.dtype != cdt:
                    x2 = _buf(ws, "fx", m * cin, cdt).reshape(m, cin)
                    _store(x2.reshape(xs.shape), xs)
                d2 = _as_2d(ds, m, cout)
                if d2 is None or d2.dtype != cdt:
                    d2 = _buf(ws, "fdy", m * cout, cdt).reshape(m, cout)
                    _store(d2.reshape(ds.shape), ds)
                gemm(ws, dst, a, b, x2, d2)

    worker = worker_patches if patches else worker_padded if padded else worker_exact
    _run_tasks(_row_units(n, oh, rows, threads=nth), worker, nth)
    targets.reduce()


def _tiny_filter(xv, dyv, acc, offs_h, offs_w, step, cdt):
    """One GEMM over the im2col patches of the whole problem (one group, finite dy: the
    positions outside x are zeros that get multiplied): a handful of numpy calls."""
    n, _, _, cin = xv.shape
    _, oh, ow, cout = dyv.shape
    sh, sw = step
    rows = np.arange(oh)[:, None] * sh + np.asarray(offs_h)[None, :]
    cols = np.arange(ow)[:, None] * sw + np.asarray(offs_w)[None, :]
    pat = _gather_patches(xv, rows, cols, cdt, "Conv2DBackpropFilter patches")
    m, k = n * oh * ow, len(offs_h) * len(offs_w) * cin
    d2 = dyv.reshape(m, cout).astype(cdt, copy=False)
    np.add(acc, np.matmul(pat.reshape(m, k).T, d2).reshape(acc.shape), out=acc)


def _native_filter(xv, dyv, offs_h, offs_w, step, cog, cdt):
    """The compiled kernel if it runs this filter gradient (float32 compute, not forced
    elsewhere; any channel count: a partial last channel block is padded), else None."""
    if not USE_NATIVE or FORCE_ALGORITHM not in (None, "native") or cdt != np.float32:
        return None
    nat = _native.load()
    if nat is None or cog == 0:
        return None
    if not nat.fits(xv.shape, dyv.shape, offs_h, offs_w, step):
        return None  # coordinates near 2^63: the numpy engine (Python integers) takes it
    if not nat.addressable(xv):  # staged by rows: only if the rows hold little more than is read
        wd, ow = xv.shape[2], dyv.shape[2]
        read = min(wd, ow * len(offs_w))
        if wd > WINDOW_FACTOR * read + WINDOW_SLACK // max(1, xv.shape[3]):
            return None
    return nat


def _split_even(total, parts):
    """[lo, hi) ranges splitting range(total) into ``parts`` near-equal pieces."""
    parts = max(1, min(parts, total))
    base, rem = divmod(total, parts)
    out, lo = [], 0
    for i in range(parts):
        hi = lo + base + (i < rem)
        out.append((lo, hi))
        lo = hi
    return out


def _filter_plan(nat, g, th, cog, nth, pixels=None):
    """("channels" | "taps" | "pixels", parts): parts (g0, g1, a0, a1, o0, o1) of dw that the
    threads share: groups [g0, g1), tap rows [a0, a1) and, per group, output channels
    [o0, o1) (starting at a multiple of the vector width, the last one ending at cog); for
    "pixels" one part, the pixels are split instead (per-thread accumulators).

    Auto (FILTER_SPLIT None): whole groups per thread when there are enough; else channel
    blocks when every thread gets FILTER_SPLIT_MIN_BLOCKS of them (each thread reads, and packs,
    all of the source: with fewer blocks that is a large share of its work); else tap rows
    when they split evenly (nothing read twice but dy); else pixels when there are many per
    filter entry (``pixels``: the output pixels; the accumulators' sum is then cheap); else
    channel blocks, tap rows, pixels, whichever applies first."""
    vw, bw = nat.vector_width, nat.block_width
    mode = FILTER_SPLIT
    per_group = max(1, -(-nth // g))
    nvec = -(-cog // vw)
    k_ch = min(per_group, max(1, cog // bw))  # channel ranges per group, each >= a block
    taps_even = th >= nth and th % nth == 0
    if mode is None:
        if nth <= 1 or g >= nth:
            mode = "channels"
        elif g * k_ch >= nth and cog // bw >= FILTER_SPLIT_MIN_BLOCKS * per_group:
            mode = "channels"
        elif taps_even:
            mode = "taps"
        elif pixels is not None and pixels >= FILTER_SPLIT_MIN_PIXELS:
            mode = "pixels"
        elif g * k_ch >= nth:
            mode = "channels"
        else:
            mode = "pixels"
    if mode == "channels" and g >= nth and FILTER_SPLIT is None:
        return mode, [(g0, g1, 0, th, 0, cog) for g0, g1 in _split_even(g, max(1, nth))]
    parts = []
    if mode == "channels":
        for gi in range(g):
            for v0, v1 in _split_even(nvec, max(1, min(per_group, nvec))
                                      if FILTER_SPLIT == "channels" else k_ch):
                parts.append((gi, gi + 1, 0, th, v0 * vw, min(cog, v1 * vw)))
    elif mode == "taps":
        for a0, a1 in _split_even(th, max(1, nth)):
            parts.append((0, g, a0, a1, 0, cog))
    else:
        parts.append((0, g, 0, th, 0, cog))
    return mode, parts


def _filter_units(n, oh, row_bytes, threads):
    """Blocks of output rows for the compiled filter gradient's staging (and, split by
    pixels, for its threads: ``threads`` > 1)."""
    return _row_units(n, oh, max(1, NATIVE_BLOCK_BYTES // max(row_bytes, 1)), threads=threads)


def _filter_native_run(nat, xv, dyv, acc, offs_h, offs_w, step, g, nth):
    """The compiled filter gradient. float32 operands of any layout are read in place (one
    call per part over every pixel; the kernel packs the dy blocks it cannot read in place,
    NCHW ones or a partial last block, into a per-thread buffer); float16/bfloat16 sources and
    dy go through float32 NHWC staging buffers per block of output rows."""
    n, h, wd, cin = xv.shape
    _, oh, ow, cout = dyv.shape
    th, _, cig, _ = acc.shape
    cog = cout // g
    sh, _ = step
    f32 = np.dtype(np.float32)
    x_in_place = nat.addressable(xv)
    dy_in_place = nat.addressable(dyv)
    mode, parts = _filter_plan(nat, g, th, cog, nth, n * oh * ow)
    targets = _PrivateTargets(acc, "Conv2DBackpropFilter per-thread accumulator")

    def block(ws, dst, part, unit):
        g0, g1, a0, a1, o0, o1 = part
        n0, n1, q0, q1 = unit
        un, gn = n1 - n0, g1 - g0
        src = xv[n0:n1, :, :, g0 * cig:g1 * cig]
        if gn == 1:  # a channel range of one group
            dy = dyv[n0:n1, q0:q1, :, g0 * cog + o0:g0 * cog + o1]
            dwp = dst[a0:a1, :, :, g0 * cog + o0:g0 * cog + o1]
        else:  # whole groups
            dy = dyv[n0:n1, q0:q1, :, g0 * cog:g1 * cog]
            dwp = dst[a0:a1, :, :, g0 * cog:g1 * cog]
        if not dy_in_place:
            buf = _buf(ws, "fdy", dy.size, f32).reshape(dy.shape)
            _store(buf, dy)
            dy = buf
        npack = nat.filter_grad_pack_elems(dy, o1 - o0)
        pack = _buf(ws, "fpack", npack, f32) if npack else None
        offs = offs_h[a0:a1]
        if x_in_place:
            nat.filter_grad_plan(src, dy, dwp, offs, offs_w, step, q0, gn)(
                0, a1 - a0, 0, o1 - o0, pack)
            return
        # stage the source rows the block reads: one window for all its tap rows when that
        # holds little more than they read, else the rows of each tap row alone
        spans = [_valid_range(q0, q1, sh, o, h) for o in offs]
        read = sum(max(0, qb - qa) for qa, qb in spans)
        if read == 0:
            return
        r0 = min(qa * sh + o for (qa, qb), o in zip(spans, offs) if qa < qb)
        r1 = max((qb - 1) * sh + o + 1 for (qa, qb), o in zip(spans, offs) if qa < qb)
        if (r1 - r0) <= WINDOW_FACTOR * read + 1:
            sbuf = _buf(ws, "fsrc", un * (r1 - r0) * wd * gn * cig, f32).reshape(
                un, r1 - r0, wd, gn * cig)
            _store(sbuf, src[:, r0:r1])
            nat.filter_grad_plan(sbuf, dy, dwp, [o - r0 for o in offs], offs_w, step, q0,
                                 gn)(0, a1 - a0, 0, o1 - o0, pack)
            return
        for k, ((qa, qb), o) in enumerate(zip(spans, offs)):
            if qa >= qb:
                continue
            sbuf = _buf(ws, "fsrc", un * (qb - qa) * wd * gn * cig, f32).reshape(
                un, qb - qa, wd, gn * cig)
            _store(sbuf, src[:, qa * sh + o:(qb - 1) * sh + o + 1:sh])
            nat.filter_grad_plan(sbuf, dy[:, qa - q0:qb - q0], dwp[k:k + 1], [0], offs_w,
                                 (1, step[1]), 0, gn)(0, 1, 0, o1 - o0, pack)

    def row_bytes(part):  # of the source and dy rows one block of the part reads
        gn = part[1] - part[0]
        return 4 * gn * (sh * wd * cig + ow * (part[5] - part[4]))

    if mode == "pixels":
        if x_in_place and dy_in_place:  # nothing staged: two blocks per thread
            units = _row_units(n, oh, max(1, -(-n * oh // (2 * nth))), threads=nth)
            tasks = [(part, u) for part in parts for u in units]
        else:
            tasks = [(part, u) for part in parts
                     for u in _filter_units(n, oh, row_bytes(part), nth)]

        def worker(ws, task):
            block(ws, targets.get(ws), *task)
    else:
        tasks = parts
        whole = [(0, n, 0, oh)]

        def worker(ws, part):
            units = whole if x_in_place and dy_in_place else \
                _filter_units(n, oh, row_bytes(part), 1)
            for u in units:
                block(ws, acc, part, u)

    _run_tasks(tasks, worker, nth)
    targets.reduce()


def conv2d_backprop_filter_workspace_bytes(x_shape, dy_shape, filter_shape, strides,
                                           dilations, pads_before, data_format="NHWC",
                                           dtype=np.float32):
    """Upper bound of the temporary memory (bytes) one conv2d_backprop_filter call allocates
    besides the returned dw: the accumulator in the compute dtype (float16/bfloat16), the
    per-thread accumulators of a pixel split, and the per-thread block buffers (kept between
    calls, up to KEEP_WORKSPACE_BYTES per thread; the compiled kernel's packed dy blocks among
    them), which follow the block plan and do not grow with the batch. Not counted: the
    compiled kernel's own scratch (its packed source tiles, at most ~200 KiB per thread)."""
    cdt = _compute_dtype(dtype)
    odt = np.dtype(dtype)
    isz = cdt.itemsize
    nhwc = (0, 1, 2, 3) if data_format == "NHWC" else (0, 2, 3, 1)
    xn = tuple(int(x_shape[i]) for i in nhwc)
    dyn = tuple(int(dy_shape[i]) for i in nhwc)
    kh, kw, cig, cout = (int(v) for v in filter_shape)
    red = _filter_taps(xn, dyn, (kh, kw), tuple(strides), tuple(dilations), tuple(pads_before))
    if red is None or 0 in (cig, cout):
        return 0
    (lo_h, hi_h), (lo_w, hi_w), offs_h, offs_w = red
    th, tw = hi_h - lo_h, hi_w - lo_w
    n, _, _, cin = xn
    _, oh, ow, _ = dyn
    g = _groups_of(cin, cig)
    region = th * tw * cig * cout
    nth = _filter_threads(n * oh * ow * region, cdt)
    acc_bytes = region * isz if odt != cdt else 0
    slack = 128 << 10  # the interpreter's own small objects of a call
    tiny = 0
    zero = np.zeros((), odt)
    nat = _native_filter(np.broadcast_to(zero, xn), np.broadcast_to(zero, dyn), offs_h, offs_w,
                         tuple(strides), cout // g, cdt)
    if _filter_tiny(g, n * oh * ow * region, nat):
        # the one-GEMM path (with finite dy): the patches (gathered in x's dtype, then in the
        # compute dtype), dy in the compute dtype, the GEMM result, the index masks
        m, k = n * oh * ow, th * tw * cin
        tiny = (acc_bytes + m * k * (isz + odt.itemsize) + m * cout * isz + k * cout * isz
                + 2 * m * k + 16 * (oh * th + ow * tw) + slack)
    return max(tiny, _filter_blocked_workspace_bytes(xn, dyn, (th, tw, cig, cout), offs_h,
                                                     offs_w, tuple(strides), g, odt, nth,
                                                     acc_bytes + slack))


def _filter_blocked_workspace_bytes(xn, dyn, region_shape, offs_h, offs_w, strides, g, odt,
                                    nth, fixed):
    """The blocked engines' part of conv2d_backprop_filter_workspace_bytes."""
    n, h, wd, cin = xn
    _, oh, ow, cout = dyn
    th, tw, cig, _ = region_shape
    cog = cout // g
    cdt = _compute_dtype(odt)
    isz = cdt.itemsize
    region = th * tw * cig * cout
    zero = np.zeros((), odt)
    nat = _native_filter(np.broadcast_to(zero, xn), np.broadcast_to(zero, dyn), offs_h, offs_w,
                         strides, cog, cdt)
    if nat is not None:
        mode, parts = _filter_plan(nat, g, th, cog, nth, n * oh * ow)
        private = (nth - 1) * region * 4 if mode == "pixels" else 0
        per, nunits, pack = 0, 1, 0
        for gn, width in {(p[1] - p[0], p[5] - p[4]) for p in parts}:  # each part's channels
            units = _filter_units(n, oh, 4 * gn * (strides[0] * wd * cig + ow * width),
                                  nth if mode == "pixels" else 1)
            nunits = max(nunits, len(units))
            for n0, n1, q0, q1 in units:  # staging of dy and of the source rows (counted
                un, uq = n1 - n0, q1 - q0  # always: it depends on strides, not only dtypes)
                span = min(h, (uq - 1) * strides[0] + offs_h[-1] - offs_h[0] + 1)
                per = max(per, gn * (un * uq * ow * width + un * max(span, 1) * wd * cig))
            # the kernel's packed dy blocks (any layout: every block counted as packed)
            padded = -(-width // nat.vector_width) * nat.vector_width
            pack = max(pack, padded, min(nat.FILTER_PACK_ELEMS, n * oh * ow * padded))
        return fixed + private + min(nth, max(nunits, len(parts))) * (per + pack) * 4
    private = (nth - 1) * region * isz
    # (the patch plan, used with finite dy, is counted whenever it may run)
    patches = g == 1 and cin < FILTER_PATCH_MAX_CHANNELS and th * tw > 1
    per_pixel = (th * tw * cin if patches else cin) + cout
    rows = max(1, min(BLOCK_BYTES // max(1, ow * per_pixel * isz),
                      -(-FILTER_TARGET_PIXELS // max(ow, 1))))
    units = _row_units(n, oh, rows, threads=nth)
    m = max((u[1] - u[0]) * (u[3] - u[2]) * ow for u in units)
    per = m * max(per_pixel, cin + cout) + (th * tw * cin * cout if patches else cig * cog)
    return fixed + private + min(nth, len(units)) * per * isz


# --------------------------------------------------------------------------------------------
# depthwise input gradient (one dx channel per group): elementwise multiply-adds over pixels
# --------------------------------------------------------------------------------------------
#: Run convolutions with one input channel per group (depthwise, any channel multiplier)
#: through the depthwise path (compiled kernel, else numpy per-tap multiply-adds).
DEPTHWISE_PATH = True
#: Elements of dy one numpy depthwise block holds (its accumulator is about dx's block).
DEPTHWISE_BLOCK_ELEMS = 1 << 20
#: Strides up to this run in the compiled depthwise kernel (its residue tables have one entry
#: per stride phase); larger ones run in numpy.
DEPTHWISE_NATIVE_MAX_STRIDE = 1 << 16
#: dx elements times taps per element (about) from which the compiled depthwise kernel runs
#: on NUM_THREADS threads (below, sharing the work costs about what a second core saves:
#: measured break-even near 2^17 on AVX-512, 2 cores, with the library's parked threads).
DEPTHWISE_PARALLEL_MIN = 1 << 17
#: Work items per thread of the compiled depthwise kernel.
DEPTHWISE_TASKS_PER_THREAD = 4


def _depthwise_applies(cin, cig, g, cdt):
    return (DEPTHWISE_PATH and cig == 1 and g == cin and g > 1
            and FORCE_ALGORITHM in (None, "depthwise")
            and cdt in (np.float32, np.float64))


def _depthwise_run(dyv, w, dxv, strides, dilations, pads, cdt, nth):
    """dx (logical NHWC view, any dtype) of a depthwise conv: w [kh, kw, 1, C*M]. Every
    product is a term of the direct sum, so non-finite values propagate as in a direct loop."""
    n, oh, ow, cout = dyv.shape
    _, h, wd, c = dxv.shape
    kh, kw = w.shape[:2]
    m = cout // c
    nat = _native.load() if (USE_NATIVE and cdt == np.float32) else None
    if (nat is not None and getattr(nat, "has_depthwise", False)
            and max(strides) <= DEPTHWISE_NATIVE_MAX_STRIDE
            and _depthwise_native_fits(nat, dyv.shape, dxv.shape, kh, kw, strides, dilations,
                                       pads)):
        wf = w[:, :, 0, :]  # [kh, kw, C*M] (dy channel g*M + j), used in place when float32
        if not (wf.dtype == np.float32 and wf.strides[2] == 4 and nat.addressable(wf)):
            wf = np.ascontiguousarray(wf, np.float32)
        # (converted operands keep their layout: NCHW stays on the column-vector kernel)
        src = dyv if nat.addressable(dyv) else dyv.astype(np.float32)
        out = dxv if nat.addressable(dxv) else np.empty_like(dxv, dtype=np.float32)
        run = nat.depthwise_plan(src, wf, out, strides, dilations, pads)
        work = n * h * wd * c * max(1, kh * kw * m // max(1, strides[0] * strides[1]))
        nt = min(nth, _threads(work, DEPTHWISE_PARALLEL_MIN))
        run.tasks(_depthwise_task_array(n, h, c, out.strides[3] != 4 or c == 1, nt), nt)
        if out is not dxv:
            _store(dxv, out)
        return
    _depthwise_numpy(dyv, w, dxv, strides, dilations, pads, cdt, nth)


@functools.lru_cache(maxsize=256)
def _depthwise_native_fits(nat, dy_shape, dx_shape, kh, kw, strides, dilations, pads):
    """nat.fits for a depthwise geometry, kept per geometry (a small layer's call is mostly
    such checks)."""
    return nat.fits(dy_shape, dx_shape, [-abs(pads[0]), (kh - 1) * dilations[0]],
                    [-abs(pads[1]), (kw - 1) * dilations[1]], strides)


@functools.lru_cache(maxsize=256)
def _depthwise_task_array(n, h, c, by_channel, nt):
    """_depthwise_tasks as a read-only int64 array [ntasks, 6] (kept per geometry: building
    it costs a sizeable part of a small layer's call)."""
    a = np.array(_depthwise_tasks(n, h, c, by_channel, nt), np.int64).reshape(-1, 6)
    a.setflags(write=False)
    return a


def _depthwise_tasks(n, h, c, by_channel, nt):
    """Work items (n0, n1, h0, h1, g0, g1) of the compiled depthwise kernel for ``nt``
    threads: about DEPTHWISE_TASKS_PER_THREAD per thread (load balance on a shared machine),
    whole images when there are enough. ``by_channel`` (the column-vector kernel, which runs
    blocks of 8 channels, 4 at a time when M > 1, and builds their weight tables per call):
    an image is split into 8-channel blocks, and its rows too when there are few blocks; else
    into row blocks."""
    if nt <= 1:
        return [(0, n, 0, h, 0, c)]
    want = DEPTHWISE_TASKS_PER_THREAD * nt
    if by_channel:
        blocks = -(-c // 8)
        if n * blocks >= want:
            per = -(-n * blocks // want)  # blocks per task
            if per >= blocks:
                k = per // blocks
                return [(n0, min(n, n0 + k), 0, h, 0, c) for n0 in range(0, n, k)]
            return [(i, i + 1, 0, h, g0, min(c, g0 + 8 * per)) for i in range(n)
                    for g0 in range(0, c, 8 * per)]
        rows = -(-h // -(-want // (n * blocks)))
        return [(i, i + 1, h0, min(h, h0 + rows), g0, min(c, g0 + 8)) for i in range(n)
                for g0 in range(0, c, 8) for h0 in range(0, h, rows)]
    per = -(-n * h // want)
    if per >= h:
        k = per // h
        return [(n0, min(n, n0 + k), 0, h, 0, c) for n0 in range(0, n, k)]
    return [(i, i + 1, h0, min(h, h0 + per), 0, c) for i in range(n) for h0 in range(0, h, per)]


def _depthwise_numpy(dyv, w, dxv, strides, dilations, pads, cdt, nth):
    """Scatter form in numpy: per tap one multiply and one strided add of a whole block into a
    zero accumulator covering the taps' reach and dx, blocks of images on NUM_THREADS."""
    n, oh, ow, cout = dyv.shape
    _, h, wd, c = dxv.shape
    kh, kw = w.shape[:2]
    m = cout // c
    (sh, sw), (dh, dw), (pt, pl) = strides, dilations, pads
    wk = w.reshape(kh, kw, c, m).astype(cdt)
    # accumulator coordinate u = dx row + pt: taps write u in [0, (oh-1)*sh + (kh-1)*dh + 1)
    lo_h, lo_w = min(0, pt), min(0, pl)
    hi_h = max((oh - 1) * sh + (kh - 1) * dh + 1, pt + h)
    hi_w = max((ow - 1) * sw + (kw - 1) * dw + 1, pl + wd)
    per = max(1, DEPTHWISE_BLOCK_ELEMS // max(1, oh * ow * cout))
    check_allocation((min(n, per), hi_h - lo_h, hi_w - lo_w, c), cdt.itemsize,
                     "Conv2DBackpropInput depthwise accumulator")

    def worker(ws, task):
        n0, n1 = task
        acc = np.zeros((n1 - n0, hi_h - lo_h, hi_w - lo_w, c), cdt)
        y = dyv[n0:n1].astype(cdt, copy=False).reshape(n1 - n0, oh, ow, c, m)
        prod = np.empty((n1 - n0, oh, ow, c), cdt)
        for a in range(kh):
            for b in range(kw):
                r0, c0 = a * dh - lo_h, b * dw - lo_w
                dst = acc[:, r0:r0 + (oh - 1) * sh + 1:sh, c0:c0 + (ow - 1) * sw + 1:sw]
                for j in range(m):
                    np.multiply(y[..., j], wk[a, b, :, j], out=prod)
                    dst += prod
        _store(dxv[n0:n1], acc[:, pt - lo_h:pt - lo_h + h, pl - lo_w:pl - lo_w + wd])

    tasks = [(n0, min(n, n0 + per)) for n0 in range(0, n, per)]
    _run_tasks(tasks, worker, nth)
