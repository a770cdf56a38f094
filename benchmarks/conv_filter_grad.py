"""Benchmark: the filter gradient (Conv2DBackpropFilter / V2) on layers of real models vs torch.

Usage:  python benchmarks/conv_filter_grad.py [--only SUBSTR[,SUBSTR]] [--repeats N]
                                              [--no-nchw] [--min-time S] [--threads N]

``dw = conv2d_backprop_filter(x, dy)`` for a convolution x (n, h, h, cin) -> dy (n, oh, oh,
cout), filter HWIO (k, k, cin / groups, cout), stride s, symmetric padding p. For a transposed
convolution (a generator's up-sampling layer: small map z -> large map) the filter gradient is
the same call with x = the gradient of the large map and dy = z, so those layers are listed
with the large map as x.

In one process it measures the float32 GEMM peak (numpy matmul), then for each layer and data
format times
  ours      runtime.kernels.cpu.conv_impl.conv2d_backprop_filter (the bare kernel)
  t_nchw    torch.nn.grad.conv2d_weight, contiguous (NCHW) tensors
  t_cl      the same with channels_last tensors
Medians over repeats, with a pause between implementations (BLAS / OpenMP worker threads spin
after a call and slow down whatever runs next). ``--threads N`` runs both sides on N threads
(default: conv_impl.NUM_THREADS); on a machine shared with other work, ``--threads 1`` gives
the steadier comparison (torch's OpenMP barriers wait out a descheduled thread).
``ratio`` = best torch time / our time (>1: we are faster). GFLOP/s and ``%peak`` are ours.
Every result is checked against torch: ``err`` = max |ours - torch| / max |torch|.

torch is optional: without it only our timings are printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from runtime.kernels.cpu import conv_impl  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conv_layers import gemm_peak, ratio_summary, rel_err, timeit  # noqa: E402

PAUSE_S = 0.1


class Layer:
    """One convolution's filter gradient: x (n, h, h, cin), dy (n, oh, oh, cout)."""

    def __init__(self, name, n, h, cin, cout, k, s, p=0, groups=1):
        self.name, self.n, self.h, self.cin, self.cout = name, n, h, cin, cout
        self.k, self.s, self.p, self.groups = k, s, p, groups
        self.oh = (h + 2 * p - k) // s + 1
        assert cin % groups == 0 and cout % groups == 0 and self.oh > 0

    @property
    def fshape(self):
        return (self.k, self.k, self.cin // self.groups, self.cout)

    @property
    def macs(self):
        return self.n * self.oh * self.oh * self.k * self.k * (self.cin // self.groups) \
            * self.cout


def suite():
    L = []
    for n in (64, 8):  # DCGAN discriminator (64x64 images), 4x4 s2 p1
        for h, cin, cout in ((64, 3, 64), (32, 64, 128), (16, 128, 256)):
            L.append(Layer(f"dcgan-d {cin}>{cout} b{n}", n, h, cin, cout, 4, 2, 1))
    L.append(Layer("resnet 3x3 64>64 56 b8", 8, 56, 64, 64, 3, 1, 1))
    L.append(Layer("resnet 3x3 64>64 56 b1", 1, 56, 64, 64, 3, 1, 1))
    L.append(Layer("resnet 3x3 256>256 14 b8", 8, 14, 256, 256, 3, 1, 1))
    L.append(Layer("resnet 1x1 256>64 56 b8", 8, 56, 256, 64, 1, 1, 0))
    # FCN's 21-class up-sampling (transposed 4x4 s2 p1, 32x32 -> 64x64): x = the 64x64 map
    for n in (1, 8):
        L.append(Layer(f"fcn 4x4s2 21>21 b{n}", n, 64, 21, 21, 4, 2, 1))
    L.append(Layer("fcn 4x4s2 perch21 b1", 1, 64, 21, 21, 4, 2, 1, groups=21))
    # DCGAN generator's transposed 4x4 s2 p1 512 -> 256 (8x8 -> 16x16): x = the 16x16 map
    for n in (8, 1):
        L.append(Layer(f"dcgan-g 512>256 b{n}", n, 16, 256, 512, 4, 2, 1))
    # an RGB output layer (3 output channels) and a grouped conv
    L.append(Layer("rgb-out 3x3 64>3 128 b1", 1, 128, 64, 3, 3, 1, 1))
    L.append(Layer("grouped4 3x3 64>84 28 b8", 8, 28, 64, 84, 3, 1, 1, groups=4))
    return L


def torch_runners(torch, layer, x_nhwc, dy_nhwc):
    """(torch's dw as HWIO float64, {layout: callable})."""
    xt = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
    dyt = torch.from_numpy(np.ascontiguousarray(dy_nhwc.transpose(0, 3, 1, 2)))
    wsize = (layer.cout, layer.cin // layer.groups, layer.k, layer.k)
    kw = dict(stride=layer.s, padding=layer.p, groups=layer.groups)
    g = torch.nn.grad.conv2d_weight
    with torch.no_grad():
        ref = g(xt, wsize, dyt, **kw).double().numpy().transpose(2, 3, 1, 0)
    calls = {}
    for name, mf in (("nchw", torch.contiguous_format), ("cl", torch.channels_last)):
        a, b = xt.contiguous(memory_format=mf), dyt.contiguous(memory_format=mf)

        def call(a=a, b=b):
            with torch.no_grad():
                return g(a, wsize, b, **kw)

        calls[name] = call
    return ref, calls


def make_inputs(layer):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((layer.n, layer.h, layer.h, layer.cin), dtype=np.float32)
    dy = rng.standard_normal((layer.n, layer.oh, layer.oh, layer.cout), dtype=np.float32)
    return x, dy


def run_layer(layer, fmt, torch, peak, args, torch_cache):
    x_nhwc, dy_nhwc = make_inputs(layer)
    if fmt == "NHWC":
        x, dy = x_nhwc, dy_nhwc
    else:
        x = np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))
        dy = np.ascontiguousarray(dy_nhwc.transpose(0, 3, 1, 2))
    est = layer.macs * 2 / (peak * 1e9)
    min_time = args.min_time if args.min_time is not None else min(0.4, max(0.05, 10 * est))
    st, pd = (layer.s, layer.s), (layer.p, layer.p)

    def ours():
        return conv_impl.conv2d_backprop_filter(x, dy, layer.fshape, st, (1, 1), pd, fmt)

    res = ours()
    row = {"t_ours": timeit(ours, args.repeats, min_time)}
    time.sleep(PAUSE_S)
    if torch is not None:
        if layer.name not in torch_cache:  # torch's timings do not depend on our format
            ref, calls = torch_runners(torch, layer, x_nhwc, dy_nhwc)
            tt = {}
            for name, call in calls.items():
                tt[name] = timeit(call, args.repeats, min_time)
                time.sleep(PAUSE_S)
            torch_cache[layer.name] = (ref, tt)
        ref, tt = torch_cache[layer.name]
        row.update({f"t_{k}": v for k, v in tt.items()})
        row["err"] = rel_err(res, ref)
        row["ratio"] = min(tt.values()) / row["t_ours"]
    row["gflops"] = 2.0 * layer.macs / row["t_ours"] / 1e9
    row["pct_peak"] = 100 * row["gflops"] / peak
    return row


def fmt_ms(t):
    return "      -" if t is None else f"{1e3 * t:7.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="comma-separated substrings of layer names")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=None, help="seconds per timing")
    ap.add_argument("--no-nchw", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="threads of both sides")
    args = ap.parse_args()
    if args.threads:
        conv_impl.NUM_THREADS = args.threads
    try:
        import torch
        torch.set_num_threads(conv_impl.NUM_THREADS)
    except ImportError:
        torch = None
        print("torch is not installed: timing ours only (pip install torch for the ratios).")
    t_start = time.perf_counter()
    peak = gemm_peak()
    print(f"numpy float32 GEMM peak {peak:.1f} GFLOP/s, threads {conv_impl.NUM_THREADS}"
          + (f", torch {torch.__version__}" if torch else ""))
    layers = suite()
    if args.only:
        keys = args.only.split(",")
        layers = [la for la in layers if any(k in la.name for k in keys)]
    hdr = (f"{'layer':26s} {'fmt':4s} {'ours ms':>7s} {'t_nchw':>7s} {'t_cl':>7s} "
           f"{'ratio':>6s} {'GF/s':>6s} {'%peak':>5s} {'err':>8s}")
    print(hdr)
    print("-" * len(hdr))
    torch_cache, results = {}, []
    for layer in layers:
        for fmt in ["NHWC"] + ([] if args.no_nchw else ["NCHW"]):
            r = run_layer(layer, fmt, torch, peak, args, torch_cache)
            results.append((layer, fmt, r))
            ratio = f"{r['ratio']:6.2f}" if "ratio" in r else "     -"
            err = f"{r['err']:8.1e}" if "err" in r else "       -"
            print(f"{layer.name:26s} {fmt:4s} {fmt_ms(r['t_ours'])} {fmt_ms(r.get('t_nchw'))} "
                  f"{fmt_ms(r.get('t_cl'))} {ratio} {r['gflops']:6.1f} {r['pct_peak']:5.0f} "
                  f"{err}", flush=True)
    if torch is not None:
        print()
        for fmt in ("NHWC", "NCHW"):
            rs = [r["ratio"] for _, f, r in results if f == fmt]
            if rs:
                print(ratio_summary(fmt, rs))
        worst = max(r["err"] for _, _, r in results)
        print(f"max rel error vs torch: {worst:.1e}")
    print(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
