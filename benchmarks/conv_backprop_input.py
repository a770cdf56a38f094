"""Benchmark: Conv2DBackpropInputV2 on the CPU runtime vs torch and a plain numpy baseline.

Usage:  python benchmarks/conv_backprop_input.py [--quick] [--only A,F] [--no-memory]

In one process it measures the float32 GEMM peak (numpy matmul), then for each workload times:
  ours      runtime.kernels.cpu.conv_impl.conv2d_backprop_input (the bare kernel)
  session   the same op through ClientSession.Run (n/a if the runtime is not importable)
  torch     torch.nn.grad.conv2d_input, NCHW tensors                (if torch is installed)
  torch_cl  the same with channels_last tensors                      (if torch is installed)
  numpy     a plain "one GEMM + col2im" numpy baseline
  jax       jax.jit of the VJP of lax.conv_general_dilated              (if jax is installed)
  tf        TF's own kernel for the V1 op Conv2DBackpropInput (V2 has none in TF) inside a
            tf.function                                                (if tensorflow is installed)
Medians over repeats, with a pause between implementations (OpenBLAS / OpenMP worker threads
spin after a call and slow down whatever runs next). ratio = torch time / our time (>1: we are
faster); r_jax and r_tf likewise. Every workload's result is checked against each peer (and the
numpy baseline).
Finally the peak temporary memory of the kernel for workload C at batch 256 is measured with
tracemalloc (numpy reports its allocations to it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from opgraph.windows import windowed_output_size  # noqa: E402
from runtime.kernels.cpu import conv_impl  # noqa: E402

# name: (input NHWC, filter HWIO, stride, dilation, data_format)
WORKLOADS = {
    "A": ((8, 56, 56, 64), (3, 3, 64, 64), 1, 1, "NHWC"),
    "B": ((8, 64, 64, 64), (4, 4, 64, 128), 2, 1, "NHWC"),
    "C": ((32, 14, 14, 256), (3, 3, 256, 256), 1, 1, "NHWC"),
    "D": ((4, 64, 64, 32), (3, 3, 32, 32), 1, 2, "NHWC"),
    "E": ((1, 8, 8, 4), (3, 3, 4, 4), 1, 1, "NHWC"),
    "F": ((4, 224, 224, 3), (7, 7, 3, 64), 2, 1, "NHWC"),
    "A_nchw": ((8, 56, 56, 64), (3, 3, 64, 64), 1, 1, "NCHW"),
    "B_nchw": ((8, 64, 64, 64), (4, 4, 64, 128), 2, 1, "NCHW"),
}

PAUSE_S = 0.25


def same_pad(in_size, k, s, d):
    """(output size, pad before, pad after) of TF's SAME padding for one spatial dim."""
    return windowed_output_size(in_size, k, s, d, "SAME")


def timeit(fn, repeats, min_time=0.0):
    fn()  # warm-up
    ts = []
    t_end = time.perf_counter() + min_time
    while len(ts) < repeats or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
        if len(ts) >= 20 * repeats:
            break
    return statistics.median(ts)


def gemm_peak(repeats):
    n = 2048
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    t = timeit(lambda: np.matmul(a, b, out=c), max(5, repeats))
    return 2.0 * n ** 3 / t / 1e9


def numpy_baseline(dy_nhwc, w, x_shape_nhwc, s, d, pt, pl):
    """Plain numpy: one GEMM (dy @ W^T) then col2im into a padded dx, NHWC."""
    n, h, wd, cin = x_shape_nhwc
    _, oh, ow, cout = dy_nhwc.shape
    kh, kw, _, _ = w.shape
    col = dy_nhwc.reshape(-1, cout) @ w.reshape(kh * kw * cin, cout).T
    col = col.reshape(n, oh, ow, kh, kw, cin)
    hp = max(h + pt, (oh - 1) * s + (kh - 1) * d + 1)
    wp = max(wd + pl, (ow - 1) * s + (kw - 1) * d + 1)
    dxp = np.zeros((n, hp, wp, cin), dy_nhwc.dtype)
    for di in range(kh):
        for dj in range(kw):
            dxp[:, di * d:di * d + (oh - 1) * s + 1:s, dj * d:dj * d + (ow - 1) * s + 1:s] += \
                col[:, :, :, di, dj]
    return dxp[:, pt:pt + h, pl:pl + wd]


def session_runner(x_shape, w_shape, dy_shape, s, d, fmt):
    """A callable running the op through ClientSession.Run, or None."""
    try:
        from opgraph import DT_FLOAT, Scope
        import ops
        from runtime import ClientSession
    except Exception:
        return None
    try:
        root = Scope.NewRootScope()
        x = ops.Placeholder(root, DT_FLOAT, ops.Placeholder.Shape(list(x_shape)))
        w = ops.Placeholder(root, DT_FLOAT, ops.Placeholder.Shape(list(w_shape)))
        dy = ops.Placeholder(root, DT_FLOAT, ops.Placeholder.Shape(list(dy_shape)))
        st = [1, s, s, 1] if fmt == "NHWC" else [1, 1, s, s]
        dl = [1, d, d, 1] if fmt == "NHWC" else [1, 1, d, d]
        dx = ops.Conv2DBackpropInputV2(
            root, x, w, dy, st, "SAME",
            ops.Conv2DBackpropInputV2.Attrs().Dilations(dl).DataFormat(fmt))
        sess = ClientSession(root)
    except Exception as e:  # the runtime is still being written
        print(f"  (session unavailable: {type(e).__name__}: {e})")
        return None

    def run(xv, wv, dyv):
        return sess.Run({x: xv, w: wv, dy: dyv}, [dx])[0]

    return run


def jax_runner(jax, in_shape, w, s, d, pads, fmt):
    """A jitted dx = VJP of jax's forward conv, in ``fmt`` layout."""
    import jax.numpy as jnp
    from jax import lax

    x0 = jnp.zeros(in_shape, jnp.float32)

    @jax.jit
    def dx(w_, dy_):
        def conv(x):
            return lax.conv_general_dilated(x, w_, (s, s), pads, rhs_dilation=(d, d),
                                            dimension_numbers=(fmt, "HWIO", fmt))
        return jax.vjp(conv, x0)[1](dy_)[0]

    wj = jnp.asarray(w)
    return lambda dy_: dx(wj, dy_).block_until_ready()


def tf_runner(tf, in_shape, w, s, d, fmt):
    """TF's V1 kernel (same math: input_sizes = input's shape) in a tf.function."""
    strides = [1, s, s, 1] if fmt == "NHWC" else [1, 1, s, s]
    dil = [1, d, d, 1] if fmt == "NHWC" else [1, 1, d, d]
    wt = tf.constant(w)

    @tf.function
    def dx(dy_):
        return tf.raw_ops.Conv2DBackpropInput(input_sizes=list(in_shape), filter=wt,
                                              out_backprop=dy_, strides=strides,
                                              padding="SAME", dilations=dil, data_format=fmt)

    return lambda dy_: dx(dy_).numpy()


def run_workload(name, spec, repeats, peak, torch, peers=None):
    x_shape, w_shape, s, d, fmt = spec
    n, h, wd, cin = x_shape
    kh, kw, _, cout = w_shape
    oh, pt, pb = same_pad(h, kh, s, d)
    ow, pl, pr = same_pad(wd, kw, s, d)
    rng = np.random.default_rng(1)
    w = rng.standard_normal(w_shape, dtype=np.float32)
    dy_nhwc = rng.standard_normal((n, oh, ow, cout), dtype=np.float32)
    if fmt == "NHWC":
        dy = dy_nhwc
        in_shape = x_shape
        dy_shape = dy.shape
    else:
        dy = np.ascontiguousarray(dy_nhwc.transpose(0, 3, 1, 2))
        in_shape = (n, cin, h, wd)
        dy_shape = dy.shape
    flops = 2.0 * n * oh * ow * kh * kw * w_shape[2] * cout

    def ours():
        return conv_impl.conv2d_backprop_input(dy, w, in_shape, (s, s), (d, d), (pt, pl), fmt)

    min_time = 0.3 if repeats <= 3 else 1.0
    res = ours()
    t_ours = timeit(ours, repeats, min_time)
    time.sleep(PAUSE_S)

    t_sess = None
    sess = session_runner(in_shape, w_shape, dy_shape, s, d, fmt)
    if sess is not None:
        xv = np.zeros(in_shape, np.float32)
        try:
            out = sess(xv, w, dy)
            np.testing.assert_allclose(out, res, rtol=1e-4, atol=1e-3)
            t_sess = timeit(lambda: sess(xv, w, dy), repeats, min_time)
        except Exception as e:
            print(f"  (session failed: {type(e).__name__}: {e})")
        time.sleep(PAUSE_S)

    t_np = timeit(lambda: numpy_baseline(dy_nhwc, w, x_shape, s, d, pt, pl), repeats, min_time)
    base = numpy_baseline(dy_nhwc, w, x_shape, s, d, pt, pl)
    res_nhwc = res if fmt == "NHWC" else res.transpose(0, 2, 3, 1)
    scale = max(1.0, float(np.abs(base).max()))
    err_np = float(np.abs(res_nhwc - base).max()) / scale
    time.sleep(PAUSE_S)

    t_torch = t_torch_cl = None
    err_torch = None
    if torch is not None:
        wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))  # OIHW
        dyt = torch.from_numpy(np.ascontiguousarray(dy_nhwc.transpose(0, 3, 1, 2)))
        # TF SAME may pad one more after than before; torch pads symmetrically, so give torch an
        # input extended by (after - before) and crop.
        tsize = (n, cin, h + pb - pt, wd + pr - pl)

        def tcall(dyt_, wt_):
            return torch.nn.grad.conv2d_input(tsize, wt_, dyt_, stride=s, padding=(pt, pl),
                                              dilation=d)

        tres = tcall(dyt, wt)[:, :, :h, :wd].numpy().transpose(0, 2, 3, 1)
        err_torch = float(np.abs(res_nhwc - tres).max()) / max(1.0, float(np.abs(tres).max()))
        t_torch = timeit(lambda: tcall(dyt, wt), repeats, min_time)
        time.sleep(PAUSE_S)
        dyc = dyt.contiguous(memory_format=torch.channels_last)
        wc = wt.contiguous(memory_format=torch.channels_last)
        t_torch_cl = timeit(lambda: tcall(dyc, wc), repeats, min_time)
        time.sleep(PAUSE_S)

    peer_times, peer_errs = {}, {}
    for pname, module in (peers or {}).items():
        try:
            if pname == "jax":
                call = jax_runner(module, in_shape, w, s, d, [(pt, pb), (pl, pr)], fmt)
                arg = module.numpy.asarray(dy)
            else:
                call = tf_runner(module, in_shape, w, s, d, fmt)
                arg = module.constant(dy)
            pres = np.asarray(call(arg))
        except Exception as e:  # a peer that cannot run this configuration: say so, go on
            print(f"  ({pname} failed on {name}: {type(e).__name__}: {str(e)[:120]})")
            continue
        peer_errs[pname] = float(np.abs(pres - res).max()) / max(1.0, float(np.abs(pres).max()))
        peer_times[pname] = timeit(lambda call=call, arg=arg: call(arg), repeats, min_time)
        time.sleep(PAUSE_S)

    def ms(t):
        return "n/a" if t is None else f"{t * 1e3:9.2f}"

    gf = flops / t_ours / 1e9
    ratio = "n/a" if t_torch is None else f"{t_torch / t_ours:5.2f}"
    ratio_cl = "n/a" if t_torch_cl is None else f"{t_torch_cl / t_ours:5.2f}"
    algo = conv_impl.choose_backprop_input_algorithm(
        dy_nhwc.shape, w_shape, x_shape, (s, s))
    peer_cols = "".join(
        f" {ms(peer_times.get(p)):>9s} "
        f"{'n/a' if p not in peer_times else f'{peer_times[p] / t_ours:5.2f}':>6s}"
        for p in (peers or {}))
    bad = {p: e for p, e in {"torch": err_torch, **peer_errs}.items()
           if e is not None and e >= 1e-4}
    print(f"{name:7s} {ms(t_ours)} {ms(t_sess):>9s} {ms(t_torch):>9s} {ms(t_torch_cl):>9s} "
          f"{ms(t_np):>9s} {gf:8.1f} {100 * gf / peak:6.1f}% {ratio:>6s} {ratio_cl:>6s} "
          f"{t_np / t_ours:6.2f}{peer_cols}  {algo:7s} "
          f"{'ok' if not bad else 'MISMATCH ' + str(bad)}"
          f"{'' if err_np < 1e-4 else ' NUMPY-MISMATCH %.2g' % err_np}")
    return not bad and err_np < 1e-4


def memory_report():
    """Peak temporary memory of the kernel for workload C at batch 256."""
    x_shape, w_shape, s, d, fmt = WORKLOADS["C"]
    x_shape = (256,) + x_shape[1:]
    n, h, wd, cin = x_shape
    kh, kw, _, cout = w_shape
    oh, pt, _ = same_pad(h, kh, s, d)
    ow, pl, _ = same_pad(wd, kw, s, d)
    rng = np.random.default_rng(2)
    w = rng.standard_normal(w_shape, dtype=np.float32)
    dy = rng.standard_normal((n, oh, ow, cout), dtype=np.float32)
    conv_impl.conv2d_backprop_input(dy, w, x_shape, (s, s), (d, d), (pt, pl), fmt)  # warm pool
    conv_impl.release_workspaces()  # so the per-thread block buffers are allocated (and counted)
    out_bytes = int(np.prod(x_shape)) * 4
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        t0 = time.perf_counter()
        dx = conv_impl.conv2d_backprop_input(dy, w, x_shape, (s, s), (d, d), (pt, pl), fmt)
        t = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    temp = peak - base - dx.nbytes
    est = conv_impl.conv2d_backprop_input_workspace_bytes(
        dy.shape, w_shape, x_shape, (s, s), (d, d), (pt, pl), fmt, np.float32)
    print(f"\nPeak temporary memory, workload C at batch 256 "
          f"(dx itself {out_bytes / 2**20:.1f} MiB, "
          f"input dy {dy.nbytes / 2**20:.1f} MiB): measured {temp / 2**20:.2f} MiB "
          f"(tracemalloc peak minus dx), kernel's own bound "
          f"{est / 2**20:.2f} MiB; {t * 1e3:.0f} ms under tracemalloc")


def gpu_main(args, repeats) -> int:
    """The GPU comparison; a clear message and exit status 0 when there is no GPU."""
    from runtime import devices  # noqa: PLC0415

    if not devices.gpu_backend().device_count():
        print(f"--device gpu: no GPU here ({devices.gpu_unavailable_reason()}); nothing "
              f"timed.")
        return 0
    import cupy  # noqa: PLC0415

    import ops  # noqa: PLC0415
    from opgraph import Scope  # noqa: PLC0415
    from runtime import ClientSession, RunOptions  # noqa: PLC0415

    try:
        import torch  # noqa: PLC0415
        torch = torch if torch.cuda.is_available() and not args.no_torch else None
    except ImportError:
        torch = None
    a = cupy.random.standard_normal((8192, 8192), dtype=cupy.float32)
    ts = []
    for _ in range(5):  # the device's measured float32 GEMM rate: the "% peak" reference
        t0 = time.perf_counter()
        a @ a
        cupy.cuda.get_current_stream().synchronize()
        ts.append(time.perf_counter() - t0)
    peak = 2.0 * 8192 ** 3 / min(ts[1:])
    del a
    print(f"{cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}: float32 GEMM "
          f"(cuBLAS) {peak / 1e12:.1f} TFLOP/s")
    names = [s.strip() for s in args.only.split(",") if s.strip()] or list(WORKLOADS)
    for name in names:
        x_shape, w_shape, s, d, _fmt = WORKLOADS[name]
        n, h, w_, c = x_shape
        kh, kw, _, co = w_shape
        oh = windowed_output_size(h, (kh - 1) * d + 1, s, "SAME")[0]
        ow = windowed_output_size(w_, (kw - 1) * d + 1, s, "SAME")[0]
        rng = np.random.default_rng(0)
        filt = rng.standard_normal(w_shape).astype(np.float32)
        dy = rng.standard_normal((n, oh, ow, co)).astype(np.float32)
        root = Scope.NewRootScope()
        from opgraph.dtypes import DT_FLOAT  # noqa: PLC0415
        x = ops.Placeholder(root, DT_FLOAT, shape=list(x_shape))
        fph = ops.Placeholder(root, DT_FLOAT, shape=list(w_shape))
        gph = ops.Placeholder(root, DT_FLOAT, shape=list(dy.shape))
        out = ops.Conv2DBackpropInputV2(root, x, fph, gph, strides=[1, s, s, 1],
                                        padding="SAME", dilations=[1, d, d, 1])
        sess = ClientSession(root)
        feeds = {x: np.zeros(x_shape, np.float32), fph: filt, gph: dy}
        opts = RunOptions(fetch_on_device=True)

        def ours():
            sess.Run(opts, feeds, [out], [], None)
            cupy.cuda.get_current_stream().synchronize()
        t_ours = timeit(ours, repeats)
        flops = 2.0 * n * oh * ow * co * kh * kw * c
        line = (f"{name}: ours {t_ours * 1e3:8.3f} ms ({flops / t_ours / 1e12:6.2f} TFLOP/s, "
                f"{100 * flops / t_ours / peak:4.0f}% of the GEMM rate)")
        if torch is not None:
            tw = torch.from_numpy(filt).permute(3, 2, 0, 1).contiguous().cuda()
            tdy = torch.from_numpy(dy).permute(0, 3, 1, 2).contiguous().cuda()

            def theirs():
                torch.nn.grad.conv2d_input((n, c, h, w_), tw, tdy, stride=s, dilation=d,
                                           padding=(kh - 1) * d // 2)
                torch.cuda.synchronize()
            t_torch = timeit(theirs, repeats)
            line += f"; torch {t_torch * 1e3:8.3f} ms, ratio {t_torch / t_ours:5.2f}"
        print(line)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--only", default="", help="comma-separated workload names (e.g. A,F)")
    ap.add_argument("--no-memory", action="store_true", help="skip the batch-256 memory check")
    ap.add_argument("--no-torch", action="store_true", help="do not import torch")
    ap.add_argument("--peers", default="jax,tf",
                    help="other peers to time when installed: jax, tf (comma-separated; '' none)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "gpu"),
                    help="gpu: time the GPU kernel against torch's CUDA conv2d_input")
    args = ap.parse_args(argv)
    repeats = 3 if args.quick else 9
    if args.device == "gpu":
        return gpu_main(args, repeats)
    names = [s.strip() for s in args.only.split(",") if s.strip()] or list(WORKLOADS)
    torch = None
    if not args.no_torch:
        try:
            import torch  # noqa: F811
        except ImportError:
            torch = None
    peers = {}
    for pname in [p.strip() for p in args.peers.split(",") if p.strip()]:
        try:
            if pname == "jax":
                import jax
                peers["jax"] = jax
            elif pname == "tf":
                os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
                import tensorflow as tf
                peers["tf"] = tf
        except ImportError:
            pass
    peak = gemm_peak(repeats)
    print(f"float32 GEMM peak (numpy matmul 2048^3, this run): {peak:.0f} GFLOP/s; "
          f"threads: {conv_impl.NUM_THREADS}, OpenBLAS control: {conv_impl._BLAS.available}"
          + ("" if torch is None else f"; torch {torch.__version__} "
             f"({torch.get_num_threads()} threads)"))
    time.sleep(PAUSE_S)
    print(f"{'work':7s} {'ours ms':>9s} {'session':>9s} {'torch':>9s} {'torch_cl':>9s} "
          f"{'numpy':>9s} {'GFLOP/s':>8s} {'%peak':>7s} {'ratio':>6s} {'r_cl':>6s} {'r_np':>6s}"
          + "".join(f" {p:>9s} {'r_' + p:>6s}" for p in peers) + f"  {'algo':7s} check")
    ok = True
    for name in names:
        ok &= run_workload(name, WORKLOADS[name], repeats, peak, torch, peers)
    if not args.no_memory and (not args.only or "C" in names):
        memory_report()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
