"""The compiled convolution core (conv_gather.c): built on first use, cached, loaded by ctypes.

numpy has no direct convolution, and its BLAS runs a convolution's thin GEMMs (N = channels =
32-64) at half of its peak, so the CPU runtime carries one small C kernel. It is compiled the
first time a process needs it with the machine's C compiler (``$CC``, else ``cc``/``gcc``/
``clang``) for the CPU it runs on (``-march=native``), and the library is cached under
``$OPGRAPH_CACHE_DIR`` (default ``~/.cache/opgraph``), keyed by the source, the compiler command
and the CPU's feature flags, so later processes load it in microseconds. Before first use it is
checked against numpy on a small problem.

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
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np

__all__ = ["load", "unavailable_reason", "NativeConv"]

SOURCE = Path(__file__).with_name("conv_gather.c")
_FLAGS = ["-O3", "-std=gnu11", "-fPIC", "-shared", "-fno-math-errno"]

_lock = threading.Lock()
_state: dict = {}


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


def _build(cc, cache: Path) -> Path:
    source = SOURCE.read_bytes()
    attempts = [_FLAGS + ["-march=native"], _FLAGS]
    key_src = b"\0".join([source, " ".join(cc).encode(), _cpu_signature().encode(),
                          sys.platform.encode(), platform.machine().encode()])
    errors = []
    for flags in attempts:
        digest = hashlib.sha256(key_src + b"\0" + " ".join(flags).encode()).hexdigest()[:20]
        lib = cache / f"conv_gather-{digest}.so"
        if lib.exists():
            return lib
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
        os.close(fd)
        try:
            proc = subprocess.run(cc + flags + ["-o", tmp, str(SOURCE)], capture_output=True,
                                  text=True, timeout=300)
            if proc.returncode == 0:
                os.replace(tmp, lib)  # atomic: concurrent builders agree on the result
                return lib
            errors.append(f"{' '.join(cc + flags)}: {proc.stderr.strip()[-400:]}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise OSError("C compiler failed: " + " | ".join(errors))


class NativeConv:
    """The loaded library: the block and vector widths and the gather convolution."""

    def __init__(self, lib):
        self._lib = lib
        L, I, P = ctypes.c_long, ctypes.c_int, ctypes.c_void_p
        fn = lib.opgraph_gather_conv_f32
        fn.argtypes = [P, L, L, L, L, I, I, I, P, L, L, L, L, I, I, I, I, P, I, P, I, I, I, I,
                       P, I]
        fn.restype = I
        self._fn = fn
        lib.opgraph_conv_block_width.restype = I
        lib.opgraph_conv_vector_width.restype = I
        #: output channels per packed weight block
        self.block_width = lib.opgraph_conv_block_width()
        #: output channels must be a multiple of this
        self.vector_width = lib.opgraph_conv_vector_width()

    @staticmethod
    def addressable(a) -> bool:
        """True if the kernel can read or write the 4-D view ``a`` in place: float32 with
        element-aligned strides (any layout)."""
        return a.dtype == np.float32 and all(s % 4 == 0 for s in a.strides)

    def supports(self, src, out) -> bool:
        """True if gather_conv takes these operands as they are."""
        return (self.addressable(src) and self.addressable(out)
                and out.shape[3] % self.vector_width == 0)

    def pack_weights(self, wk):
        """[th, tw, Cs, Co] weights -> the kernel's packed layout (blocks of block_width)."""
        wk = np.asarray(wk, np.float32)
        bw = self.block_width
        co = wk.shape[3]
        return np.concatenate([np.ascontiguousarray(wk[..., c0:c0 + bw]).ravel()
                               for c0 in range(0, co, bw)])

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
        oh = np.ascontiguousarray(offs_h, np.int32)
        ow = np.ascontiguousarray(offs_w, np.int32)
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
                raise MemoryError("native convolution: out of memory for the tap tables")
            if rc != 0:
                raise ValueError(f"native convolution refused its arguments (code {rc})")

        run.operands = keep
        return run


def _self_check(nat: NativeConv):
    """Compare the kernel with numpy on a small strided, padded, multi-block problem."""
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


def load():
    """The compiled kernel (a NativeConv), or None when unavailable (see unavailable_reason)."""
    if "lib" in _state:
        return _state["lib"]
    with _lock:
        if "lib" in _state:
            return _state["lib"]
        nat, reason = None, None
        if os.environ.get("OPGRAPH_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
            reason = "disabled by OPGRAPH_NATIVE"
        else:
            cc = _compiler()
            if cc is None:
                reason = "no C compiler found (set CC)"
            else:
                try:
                    nat = NativeConv(ctypes.CDLL(str(_build(cc, _cache_dir()))))
                    _self_check(nat)
                except Exception as e:  # any failure means: use the numpy algorithms
                    nat, reason = None, f"{type(e).__name__}: {e}"
        _state["lib"], _state["reason"] = nat, reason
        return nat


def unavailable_reason():
    """Why load() returned None (None if it did not, or was not called yet)."""
    return _state.get("reason")


def _reset():
    """Forget the loaded state (tests)."""
    with _lock:
        _state.clear()
