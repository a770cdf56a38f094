"""Benchmark: the seed op (Conv2DBackpropInputV2) on transposed-convolution layers of real models.

Usage:  python benchmarks/conv_layers.py [--quick] [--only SUBSTR[,SUBSTR]] [--repeats N]
                                         [--rounds R] [--no-nchw] [--no-session]

A transposed convolution ``dx = conv_transpose(dy, w)`` is the input gradient of a convolution:
dy (the small map, ``cout`` channels) -> dx (the large map, ``cin`` channels), filter HWIO
``(k, k, cin / groups, cout)``, stride ``s``, symmetric padding ``p`` and torch's
``output_padding`` (the forward conv's explicit paddings are ``(p, p - output_padding)``).

In one process it measures the float32 GEMM peak (numpy matmul) and a memory bandwidth
(numpy copy), then for each layer and data format times
  ours      runtime.kernels.cpu.conv_impl.conv2d_backprop_input (bare kernel, filter passed in)
  session   ops.Conv2DBackpropInputV2 through ClientSession.Run, the filter a Const (inference)
  t_nchw    torch.nn.functional.conv_transpose2d, contiguous (NCHW) tensors
  t_cl      the same with channels_last tensors
Medians over repeats, with a pause between implementations (BLAS / OpenMP worker threads spin
after a call and slow down whatever runs next), in R interleaved rounds (ours, session, torch's
two layouts, again...) of which each implementation's best is kept: on a shared machine a
burst of load then costs one round rather than skewing one implementation.  ``ratio`` = best
torch time / our time (>1: we are faster), ``r_sess`` likewise for the session path.  GFLOP/s and ``%peak`` are ours; ``%bound``
is the roofline bound ``max(flops / peak, bytes / bandwidth)`` over our time (bytes = dy + w +
dx, read/written once).  Every result is checked against torch (both conv_transpose2d and
torch.nn.grad.conv2d_input): ``err`` = max |ours - torch| / max |torch|.

torch is optional: without it only our timings are printed.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from runtime.kernels.cpu import conv_impl  # noqa: E402

PAUSE_S = 0.1


class Layer:
    """One transposed conv: dy (n, hin, hin, cout) -> dx (n, hout, hout, cin)."""

    def __init__(self, name, n, hin, cout, cin, k, s, p=0, op=0, groups=1, init="normal",
                 dtype="float32", nchw=True):
        self.name, self.n, self.hin, self.cout, self.cin = name, n, hin, cout, cin
        self.k, self.s, self.p, self.op, self.groups = k, s, p, op, groups
        self.init, self.dtype, self.nchw = init, np.dtype(dtype), nchw
        self.hout = (hin - 1) * s - 2 * p + k + op
        assert cin % groups == 0 and cout % groups == 0 and 0 <= op <= p

    @property
    def macs(self):
        return self.n * self.hin * self.hin * self.k * self.k * (self.cin // self.groups) \
            * self.cout

    def nbytes(self):
        it = self.dtype.itemsize
        w = self.k * self.k * (self.cin // self.groups) * self.cout
        return it * (self.n * self.hin ** 2 * self.cout + w + self.n * self.hout ** 2 * self.cin)


def bilinear(k, cin, cout, groups):
    """FCN's bilinear upsampling filter, HWIO: per channel (groups) or dense with a diagonal."""
    f = (k + 1) // 2
    c = f - 1 if k % 2 == 1 else f - 0.5
    og = np.arange(k, dtype=np.float64)
    one = 1 - np.abs(og - c) / f
    kern = np.outer(one, one)
    cig = cin // groups
    w = np.zeros((k, k, cig, cout))
    if groups == cin == cout:
        w[:, :, 0, :] = kern[:, :, None]
    else:
        for ch in range(min(cig, cout)):
            w[:, :, ch, ch] = kern
    return w


def suite(quick=False):
    """Layers of published models; sizes scaled so the whole run fits in a few minutes."""
    L = []
    for n, hs in ((64, 1), (8, 2), (1, 4)):   # DCGAN generator, 4x4 s2 p1 (Radford et al.)
        # at batch 64 the maps are the real DCGAN-64 ones; smaller batches use larger maps
        for hin, cout, cin in ((4, 512, 256), (8, 256, 128), (16, 128, 64), (32, 64, 3)):
            if n == 1 and cin == 3:
                continue
            L.append(Layer(f"dcgan {cout}>{cin} b{n}", n, hin * hs, cout, cin, 4, 2, 1))
    for n in (8, 1):                          # U-Net decoder up-convs (2x2 s2) and pix2pix (4x4)
        for hin, cout, cin in ((16, 512, 256), (32, 256, 128), (64, 128, 64)):
            L.append(Layer(f"unet2x2 {cout}>{cin} b{n}", n, hin, cout, cin, 2, 2))
        for hin, cout, cin in ((16, 512, 256), (32, 128, 64)):
            L.append(Layer(f"unet4x4 {cout}>{cin} b{n}", n, hin // (2 if n == 8 else 1), cout,
                           cin, 4, 2, 1))
    for n in (1, 8):                          # FCN upsampling, 21 classes, bilinear filters
        L.append(Layer(f"fcn s2 dense b{n}", n, 32, 21, 21, 4, 2, 1, init="bilinear"))
        L.append(Layer(f"fcn s8 dense b{n}", n, 16, 21, 21, 16, 8, 4, init="bilinear"))
        L.append(Layer(f"fcn s8 perch b{n}", n, 16, 21, 21, 16, 8, 4, groups=21,
                       init="bilinear"))
    L.append(Layer("fcn s32 dense b1", 1, 8, 21, 21, 64, 32, 16, init="bilinear"))
    L.append(Layer("fcn s32 perch b1", 1, 8, 21, 21, 64, 32, 16, groups=21, init="bilinear"))
    for n in (1, 8):                          # super-resolution, x3
        L.append(Layer(f"espcn 3x3s3 32>3 b{n}", n, 64, 32, 3, 3, 3))
        L.append(Layer(f"fsrcnn 9x9s3 56>1 b{n}", n, 48, 56, 1, 9, 3, 4, 2))
    for n in (1, 8):                          # depthwise / grouped transposed convs
        L.append(Layer(f"depthwise 4x4s2 128 b{n}", n, 32, 128, 128, 4, 2, 1, groups=128,
                       init="bilinear"))
        L.append(Layer(f"depthwise 3x3s2 256 b{n}", n, 16, 256, 256, 3, 2, 1, 1, groups=256))
        L.append(Layer(f"grouped8 4x4s2 128 b{n}", n, 32, 128, 128, 4, 2, 1, groups=8))
    for dt in ("float16", "float64"):         # a few other dtypes
        L.append(Layer(f"dcgan 256>128 b8 {dt}", 8, 16, 256, 128, 4, 2, 1, dtype=dt,
                       nchw=False))
        L.append(Layer(f"unet2x2 256>128 b8 {dt}", 8, 32, 256, 128, 2, 2, dtype=dt,
                       nchw=False))
    if quick:
        L = [la for la in L if la.n <= 8 or la.cin == 3]
    return L


#: Seconds of calls before each contender's timed calls (at least 3 calls): on the virtual
#: machines we measure, the first calls after an idle pause run slowly while the idle core
#: wakes (a batch-1 layer's first call 0.6-0.9 ms against 0.09), for whichever library.
WARMUP_S = 0.01


def timeit(fn, repeats, min_time):
    t_warm = time.perf_counter() + WARMUP_S
    for k in range(1000):
        fn()
        if k >= 2 and time.perf_counter() > t_warm:
            break
    ts = []
    t_end = time.perf_counter() + min_time
    while len(ts) < repeats or (time.perf_counter() < t_end and len(ts) < 20 * repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def gemm_peak():
    n = 1536
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    return 2.0 * n ** 3 / timeit(lambda: np.matmul(a, b, out=c), 7, 0.5) / 1e9


def bandwidth():
    """GB/s of a large numpy copy (read + write counted)."""
    a = np.ones(1 << 25, np.float32)   # 128 MiB
    b = np.empty_like(a)
    return 2 * a.nbytes / timeit(lambda: np.copyto(b, a), 5, 0.3) / 1e9


def session_runner(layer, w, fmt):
    """ClientSession.Run of Conv2DBackpropInputV2 with the filter a Const, or None."""
    try:
        from opgraph import Scope, as_dtype
        import ops
        from runtime import ClientSession
        dt = as_dtype(layer.dtype)
        n, ci, co, h, ho = layer.n, layer.cin, layer.cout, layer.hin, layer.hout
        x_shape = [n, ho, ho, ci] if fmt == "NHWC" else [n, ci, ho, ho]
        dy_shape = [n, h, h, co] if fmt == "NHWC" else [n, co, h, h]
        root = Scope.NewRootScope()
        x = ops.Placeholder(root, dt, ops.Placeholder.Shape(x_shape))
        dy = ops.Placeholder(root, dt, ops.Placeholder.Shape(dy_shape))
        wc = ops.Const(root, w)
        s, p, q = layer.s, layer.p, layer.p - layer.op
        sp = [0, 0, p, q, p, q, 0, 0] if fmt == "NHWC" else [0, 0, 0, 0, p, q, p, q]
        st = [1, s, s, 1] if fmt == "NHWC" else [1, 1, s, s]
        dx = ops.Conv2DBackpropInputV2(
            root, x, wc, dy, st, "EXPLICIT",
            ops.Conv2DBackpropInputV2.Attrs().ExplicitPaddings(sp).DataFormat(fmt))
        sess = ClientSession(root)
    except Exception as e:  # noqa: BLE001 - the runtime is still being written
        print(f"  (session unavailable: {type(e).__name__}: {str(e)[:100]})")
        return None
    xv = np.zeros(x_shape, layer.dtype)
    return lambda dyv: sess.Run({x: xv, dy: dyv}, [dx])[0]


def make_inputs(layer):
    rng = np.random.default_rng(1)
    cig = layer.cin // layer.groups
    if layer.init == "bilinear":
        w = bilinear(layer.k, layer.cin, layer.cout, layer.groups)
    else:
        w = rng.standard_normal((layer.k, layer.k, cig, layer.cout)) / math.sqrt(
            layer.k * layer.k * layer.cout / layer.s ** 2)
    dy = rng.standard_normal((layer.n, layer.hin, layer.hin, layer.cout))
    return w.astype(layer.dtype), dy.astype(layer.dtype)


def torch_runners(torch, layer, w, dy_nhwc):
    """(result NHWC float64 of conv_transpose2d, of conv2d_input, {layout: callable})."""
    dt = {np.float16: torch.float16, np.float32: torch.float32,
          np.float64: torch.float64}[layer.dtype.type]
    wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))).to(dt)  # (cout,cig,k,k)
    dyt = torch.from_numpy(np.ascontiguousarray(dy_nhwc.transpose(0, 3, 1, 2))).to(dt)
    F = torch.nn.functional
    kw = dict(stride=layer.s, padding=layer.p, output_padding=layer.op, groups=layer.groups)
    calls = {}
    with torch.no_grad():
        r1 = F.conv_transpose2d(dyt, wt, **kw)
        size = (layer.n, layer.cin, layer.hout, layer.hout)
        r2 = torch.nn.grad.conv2d_input(size, wt, dyt, stride=layer.s, padding=layer.p,
                                        groups=layer.groups)
    for name, mf in (("nchw", torch.contiguous_format), ("cl", torch.channels_last)):
        a, b = dyt.contiguous(memory_format=mf), wt.contiguous(memory_format=mf)

        def call(a=a, b=b):
            with torch.no_grad():
                return F.conv_transpose2d(a, b, **kw)

        calls[name] = call
    to = lambda r: r.double().numpy().transpose(0, 2, 3, 1)  # noqa: E731
    return to(r1), to(r2), calls


def rel_err(a, ref):
    return float(np.abs(np.asarray(a, np.float64) - ref).max()) / max(
        1e-30, float(np.abs(ref).max()))


def run_layer(layer, fmt, torch, peak, bw, args, torch_cache):
    w, dy_nhwc = make_inputs(layer)
    dy = dy_nhwc if fmt == "NHWC" else np.ascontiguousarray(dy_nhwc.transpose(0, 3, 1, 2))
    shape = ((layer.n, layer.hout, layer.hout, layer.cin) if fmt == "NHWC"
             else (layer.n, layer.cin, layer.hout, layer.hout))
    est = layer.macs * 2 / (peak * 1e9)
    min_time = min(0.4, max(0.05, 10 * est))
    reps = args.repeats

    def ours():
        return conv_impl.conv2d_backprop_input(dy, w, shape, (layer.s, layer.s), (1, 1),
                                               (layer.p, layer.p), fmt)

    res = ours()
    res_nhwc = res if fmt == "NHWC" else res.transpose(0, 2, 3, 1)
    contenders = {"ours": ours}
    row = {}
    if not args.no_session:
        sess = session_runner(layer, w, fmt)
        if sess is not None:
            out = sess(dy)
            if not np.array_equal(np.asarray(out), res):
                row["sess_err"] = rel_err(out, np.asarray(res, np.float64))
            contenders["sess"] = lambda: sess(dy)
    if torch is not None:
        key = layer.name
        if key not in torch_cache:   # (the reference results do not depend on our format)
            torch_cache[key] = torch_runners(torch, layer, w, dy_nhwc)
        r1, r2, calls = torch_cache[key]
        row["err"] = max(rel_err(res_nhwc, r1), rel_err(res_nhwc, r2))
        contenders.update(calls)
    # interleaved rounds: each contender's median per round, its best round kept (a burst of
    # load from elsewhere on the machine then hits one round, not one contender)
    best = {}
    for _ in range(args.rounds):
        for name, call in list(contenders.items()):
            try:
                t = timeit(call, reps, min_time)
            except RuntimeError as e:   # e.g. a dtype torch's CPU conv lacks
                print(f"  (torch {name} failed on {layer.name}: {str(e)[:80]})")
                del contenders[name]
                continue
            best[name] = min(t, best.get(name, t))
            time.sleep(PAUSE_S)
    row.update({f"t_{k}": v for k, v in best.items()})
    tt = [v for k, v in best.items() if k in ("nchw", "cl")]
    if tt:
        row["ratio"] = min(tt) / row["t_ours"]
        if "t_sess" in row:
            row["r_sess"] = min(tt) / row["t_sess"]
    flops = 2.0 * layer.macs
    row["gflops"] = flops / row["t_ours"] / 1e9
    row["pct_peak"] = 100 * row["gflops"] / peak
    bound = max(flops / (peak * 1e9), layer.nbytes() / (bw * 1e9))
    row["pct_bound"] = 100 * bound / row["t_ours"]
    row["mem_bound"] = layer.nbytes() / (bw * 1e9) > flops / (peak * 1e9)
    return row


def ratio_summary(label, ratios):
    """One line: the geometric mean, the least ratio and how many layers reach 1.0."""
    gm = math.exp(sum(map(math.log, ratios)) / len(ratios))
    return (f"{label}: geomean ratio {gm:5.2f}, min {min(ratios):5.2f}, layers >= 1.0: "
            f"{sum(x >= 1 for x in ratios)}/{len(ratios)}")


#: Relative difference between the session's and the bare call's dx above which the row is
#: flagged: below it the two took different algorithms (the session's filter is a cached
#: constant, so Winograd takes smaller layers there), both within rounding of the exact sum.
SESSION_TOLERANCE = 1e-4


def _session_note(err):
    if err is None:
        return ""
    if err > SESSION_TOLERANCE:
        return f"  SESSION MISMATCH {err:.1e}"
    return f"  (session: {err:.0e} apart, another algorithm)"


def fmt_ms(t):
    return "     -" if t is None else f"{1e3 * t:7.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="skip the batch-64 layers")
    ap.add_argument("--only", default="", help="comma-separated substrings of layer names")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3,
                    help="interleaved timing rounds; each contender's best round is kept")
    ap.add_argument("--no-nchw", action="store_true")
    ap.add_argument("--no-session", action="store_true")
    args = ap.parse_args()
    try:
        import torch
        torch.set_num_threads(conv_impl.NUM_THREADS)
    except ImportError:
        torch = None
        print("torch is not installed: timing ours only (pip install torch for the ratios).")
    t_start = time.perf_counter()
    peak, bw = gemm_peak(), bandwidth()
    print(f"numpy float32 GEMM peak {peak:.1f} GFLOP/s, copy bandwidth {bw:.1f} GB/s, "
          f"threads {conv_impl.NUM_THREADS}"
          + (f", torch {torch.__version__}" if torch else ""))
    layers = suite(args.quick)
    if args.only:
        keys = args.only.split(",")
        layers = [la for la in layers if any(k in la.name for k in keys)]
    hdr = (f"{'layer':28s} {'fmt':4s} {'ours ms':>7s} {'sess ms':>7s} {'t_nchw':>7s} "
           f"{'t_cl':>7s} {'ratio':>6s} {'r_sess':>6s} {'GF/s':>6s} {'%peak':>5s} "
           f"{'%bound':>6s} {'err':>8s}")
    print(hdr)
    print("-" * len(hdr))
    torch_cache, results = {}, []
    for layer in layers:
        fmts = ["NHWC"] + (["NCHW"] if layer.nchw and not args.no_nchw else [])
        for fmt in fmts:
            r = run_layer(layer, fmt, torch, peak, bw, args, torch_cache)
            results.append((layer, fmt, r))
            ratio = f"{r['ratio']:6.2f}" if "ratio" in r else "     -"
            rs = f"{r['r_sess']:6.2f}" if "r_sess" in r else "     -"
            err = f"{r['err']:8.1e}" if "err" in r else "       -"
            mark = "m" if r["mem_bound"] else " "
            print(f"{layer.name:28s} {fmt:4s} {fmt_ms(r['t_ours'])} {fmt_ms(r.get('t_sess'))} "
                  f"{fmt_ms(r.get('t_nchw'))} {fmt_ms(r.get('t_cl'))} {ratio} {rs} "
                  f"{r['gflops']:6.1f} {r['pct_peak']:5.0f} {r['pct_bound']:5.0f}{mark} {err}"
                  + _session_note(r.get("sess_err")),
                  flush=True)
    if torch is not None:
        print()
        for fmt in ("NHWC", "NCHW"):
            for dts in (("float32",), ("float16", "float64")):
                rs = [r["ratio"] for la, f, r in results
                      if f == fmt and la.dtype.name in dts and "ratio" in r]
                if rs:
                    print(ratio_summary(f"{fmt} {'/'.join(dts):16s}", rs))
        worst = max(r["err"] for _, _, r in results)
        print(f"max rel error vs torch: {worst:.1e}  ('m' after %bound: memory bound)")
    print(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
