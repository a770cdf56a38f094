"""Generate tests/golden/conv_golden.npz ONCE with torch.

Run: python tests/golden/make_conv_golden.py

For each configuration it records dy, the HWIO filter, the attributes and torch's input
gradient (``torch.nn.grad.conv2d_input``, i.e. conv_transpose2d) in the configuration's data
format, plus torch's forward conv2d output for the same x. TF-style asymmetric padding
(pad_after > pad_before, as SAME and EXPLICIT produce) is given to torch by padding x explicitly
for the forward and by enlarging the input size then cropping for the input gradient.
The test (tests/runtime/test_conv_impl.py) needs only numpy to read it.
"""

from __future__ import annotations

import os

import numpy as np
import torch

# name: (N, H, W, Cin, Cout, kh, kw, stride(h,w), dilation(h,w), pads (top, bottom, left, right),
#        groups, data_format)
CONFIGS = {
    "s1_same_nhwc": (2, 7, 7, 3, 4, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1, "NHWC"),
    "s2_same_nhwc": (2, 8, 9, 4, 5, 3, 3, (2, 2), (1, 1), (0, 1, 1, 1), 1, "NHWC"),
    "s2_k4_same_nchw": (1, 8, 8, 3, 6, 4, 4, (2, 2), (1, 1), (1, 1, 1, 1), 1, "NCHW"),
    "s3_valid_nhwc": (2, 10, 11, 2, 3, 3, 2, (3, 3), (1, 1), (0, 0, 0, 0), 1, "NHWC"),
    "d2_same_nhwc": (1, 9, 9, 3, 4, 3, 3, (1, 1), (2, 2), (2, 2, 2, 2), 1, "NHWC"),
    "d2_s2_explicit_nchw": (2, 9, 8, 4, 4, 3, 3, (2, 2), (2, 2), (1, 3, 2, 0), 1, "NCHW"),
    "asym_explicit_nhwc": (1, 6, 7, 3, 2, 2, 3, (1, 2), (1, 1), (0, 2, 3, 1), 1, "NHWC"),
    "groups2_nhwc": (2, 6, 6, 4, 6, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 2, "NHWC"),
    "groups3_s2_nchw": (1, 7, 7, 6, 3, 3, 3, (2, 2), (1, 1), (1, 1, 1, 1), 3, "NCHW"),
    "k1_s2_valid_nhwc": (2, 5, 5, 3, 4, 1, 1, (2, 2), (1, 1), (0, 0, 0, 0), 1, "NHWC"),
    "k7_s2_same_nhwc": (1, 13, 12, 3, 8, 7, 7, (2, 2), (1, 1), (3, 3, 2, 3), 1, "NHWC"),
    "rect_d13_nchw": (1, 6, 12, 2, 3, 2, 3, (1, 2), (1, 3), (1, 0, 3, 2), 1, "NCHW"),
}


def out_size(i, k, s, d, pb, pa):
    eff = (k - 1) * d + 1
    return (i + pb + pa - eff) // s + 1


def main():
    rng = np.random.default_rng(20240611)
    arrays = {}
    for name, (n, h, w, cin, cout, kh, kw, st, dl, pads, g, fmt) in CONFIGS.items():
        pt, pb, pl, pr = pads
        oh = out_size(h, kh, st[0], dl[0], pt, pb)
        ow = out_size(w, kw, st[1], dl[1], pl, pr)
        x = rng.standard_normal((n, cin, h, w))  # NCHW, float64
        wt = rng.standard_normal((cout, cin // g, kh, kw))  # OIHW
        dy = rng.standard_normal((n, cout, oh, ow))
        tx = torch.from_numpy(x)
        tw = torch.from_numpy(wt)
        tdy = torch.from_numpy(dy)
        # forward: pad explicitly (asymmetric), no torch padding
        xp = torch.nn.functional.pad(tx, (pl, pr, pt, pb))
        y = torch.nn.functional.conv2d(xp, tw, stride=st, dilation=dl, groups=g)
        assert tuple(y.shape) == (n, cout, oh, ow), (name, y.shape)
        # input gradient: torch pads symmetrically by (pt, pl); enlarge the input by the extra
        # padding after (or crop when pad_after < pad_before) and cut back to (h, w)
        big_h = h + max(pb - pt, 0)
        big_w = w + max(pr - pl, 0)
        # with pad_after < pad_before, torch would need negative padding; use the padded-x trick:
        # gradient wrt xp of conv(xp) then crop [pt:pt+h, pl:pl+w]
        xpg = xp.clone().requires_grad_(True)
        yy = torch.nn.functional.conv2d(xpg, tw, stride=st, dilation=dl, groups=g)
        (gx,) = torch.autograd.grad(yy, xpg, tdy)
        dx_autograd = gx[:, :, pt:pt + h, pl:pl + w]
        if pb >= pt and pr >= pl:
            dx = torch.nn.grad.conv2d_input((n, cin, big_h, big_w), tw, tdy, stride=st,
                                            padding=(pt, pl), dilation=dl, groups=g)
            dx = dx[:, :, :h, :w]
            assert torch.allclose(dx, dx_autograd, rtol=1e-10, atol=1e-10), name
        else:
            dx = dx_autograd
        w_hwio = wt.transpose(2, 3, 1, 0)
        if fmt == "NHWC":
            to = (0, 2, 3, 1)
            arrays[name + "/x"] = x.transpose(to)
            arrays[name + "/dy"] = dy.transpose(to)
            arrays[name + "/y"] = y.numpy().transpose(to)
            arrays[name + "/dx"] = dx.numpy().transpose(to)
        else:
            arrays[name + "/x"] = x
            arrays[name + "/dy"] = dy
            arrays[name + "/y"] = y.numpy()
            arrays[name + "/dx"] = dx.numpy()
        arrays[name + "/w"] = w_hwio
        arrays[name + "/attrs"] = np.array(
            [st[0], st[1], dl[0], dl[1], pt, pl, oh, ow, 1 if fmt == "NCHW" else 0], np.int64)
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conv_golden.npz")
    np.savez_compressed(path, **arrays)
    print(f"wrote {path}: {len(CONFIGS)} configurations, {os.path.getsize(path)} bytes "
          f"(torch {torch.__version__})")


if __name__ == "__main__":
    main()
