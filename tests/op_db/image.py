"""op_db entries of the image ops (ops/image_ops.py).

References:

* resizing: explicit loops over every output pixel evaluating TF's coordinate formulas with
  np.float32 scalars, as TF's kernels compute (scale, source coordinate, floor/ceil/round,
  clamping, the three-lerp blend); the backward ops loop over every gradient pixel and
  scatter its shares in float64.
* PNG: images written by the test-side encoder below (rows filtered with every PNG filter
  type in turn, optionally Adam7-interlaced, every colour type and bit depth), decoded back
  by applying TF's libpng conversion rules pixel by pixel to the samples the image was made
  from.
* JPEG: baseline JPEGs written by the DC-only encoder below: each 8x8 block is flat, so every
  libjpeg IDCT (accurate or fast, any scale) reproduces the block value exactly, and colour
  blocks convert with libjpeg's integer YCbCr tables.
* EncodePng: the byte stream assembled by hand (signature, chunks with CRCs, unfiltered rows
  compressed at the requested level).

The helpers ``png_bytes`` and ``jpeg_bytes`` are also used by tests/ops/test_image_ops.py.
"""

from __future__ import annotations

import importlib.util
import math
import struct
import zlib

import numpy as np

from opgraph import dtypes as dt
from opgraph import errors
from tests.op_db import FLOATS, ErrorCase, OpInfo, Sample, ShapeCase, rand

_F, _I = np.float32, np.int32
HAVE_PILLOW = importlib.util.find_spec("PIL") is not None
RESIZE_DTYPES = (dt.DT_HALF, dt.DT_FLOAT, dt.DT_DOUBLE, dt.DT_UINT8, dt.DT_INT16, dt.DT_INT32,
                 dt.DT_INT64, dt.DT_UINT16)
NN_GRAD_DTYPES = (dt.DT_HALF, dt.DT_FLOAT, dt.DT_DOUBLE, dt.DT_UINT8, dt.DT_INT8, dt.DT_INT32)


def string_scalar(data: bytes) -> np.ndarray:
    out = np.empty((), dtype=object)
    out[()] = data
    return out


# ---- resize references ---------------------------------------------------------------------
def _scale(in_size, out_size, align_corners):
    if align_corners and out_size > 1:
        return _F(in_size - 1) / _F(out_size - 1)
    return _F(in_size) / _F(out_size)


def _source_coordinate(i, scale, half_pixel_centers):
    if half_pixel_centers:
        return (_F(i) + _F(0.5)) * scale - _F(0.5)
    return _F(i) * scale


def _linear_taps(i, in_size, scale, half_pixel_centers):
    """(lower index, upper index, lerp) of output coordinate i: TF's
    compute_interpolation_weights for one entry."""
    pos = _source_coordinate(i, scale, half_pixel_centers)
    lower = max(math.floor(pos), 0)
    upper = min(math.ceil(pos), in_size - 1)
    return min(lower, in_size - 1), upper, pos - _F(math.floor(pos))


def _nearest_index(i, in_size, scale, align_corners, half_pixel_centers):
    pos = (_F(i) + _F(0.5)) * scale if half_pixel_centers else _F(i) * scale
    index = math.floor(float(pos) + 0.5) if align_corners else math.floor(pos)
    index = min(index, in_size - 1)
    return max(index, 0) if half_pixel_centers else index


def resize_bilinear_ref(images, size, *, align_corners=False, half_pixel_centers=False):
    batch, in_h, in_w, channels = images.shape
    out_h, out_w = (int(v) for v in size)
    sy, sx = _scale(in_h, out_h, align_corners), _scale(in_w, out_w, align_corners)
    out = np.zeros((batch, out_h, out_w, channels), _F)
    for y in range(out_h):
        y0, y1, ly = _linear_taps(y, in_h, sy, half_pixel_centers)
        for x in range(out_w):
            x0, x1, lx = _linear_taps(x, in_w, sx, half_pixel_centers)
            for n in range(batch):
                for c in range(channels):
                    tl, tr = _F(images[n, y0, x0, c]), _F(images[n, y0, x1, c])
                    bl, br = _F(images[n, y1, x0, c]), _F(images[n, y1, x1, c])
                    top = tl + (tr - tl) * lx
                    bottom = bl + (br - bl) * lx
                    out[n, y, x, c] = top + (bottom - top) * ly
    return out


def resize_nearest_ref(images, size, *, align_corners=False, half_pixel_centers=False):
    batch, in_h, in_w, channels = images.shape
    out_h, out_w = (int(v) for v in size)
    sy, sx = _scale(in_h, out_h, align_corners), _scale(in_w, out_w, align_corners)
    out = np.zeros((batch, out_h, out_w, channels), images.dtype)
    for y in range(out_h):
        iy = _nearest_index(y, in_h, sy, align_corners, half_pixel_centers)
        for x in range(out_w):
            ix = _nearest_index(x, in_w, sx, align_corners, half_pixel_centers)
            for n in range(batch):
                for c in range(channels):
                    out[n, y, x, c] = images[n, iy, ix, c]
    return out


def resize_bilinear_grad_ref(grads, original, *, align_corners=False, half_pixel_centers=False):
    batch, res_h, res_w, channels = grads.shape
    orig_h, orig_w = original.shape[1:3]
    sy, sx = _scale(orig_h, res_h, align_corners), _scale(orig_w, res_w, align_corners)
    acc = np.zeros((batch, orig_h, orig_w, channels))
    for y in range(res_h):
        y0, y1, ly = _linear_taps(y, orig_h, sy, half_pixel_centers)
        for x in range(res_w):
            x0, x1, lx = _linear_taps(x, orig_w, sx, half_pixel_centers)
            for n in range(batch):
                for c in range(channels):
                    # TF: T(grad * inverse_y_lerp * inverse_x_lerp), products in float32
                    g, iy, ix = _F(grads[n, y, x, c]), _F(1) - ly, _F(1) - lx
                    acc[n, y0, x0, c] += float(g * iy * ix)
                    acc[n, y0, x1, c] += float(g * iy * lx)
                    acc[n, y1, x0, c] += float(g * ly * ix)
                    acc[n, y1, x1, c] += float(g * ly * lx)
    return acc.astype(original.dtype)


def resize_nearest_grad_ref(grads, size, *, align_corners=False, half_pixel_centers=False):
    batch, res_h, res_w, channels = grads.shape
    orig_h, orig_w = (int(v) for v in size)
    sy, sx = _scale(orig_h, res_h, align_corners), _scale(orig_w, res_w, align_corners)
    integer = grads.dtype.kind in "iu"
    acc = [[[[0 if integer else 0.0 for _ in range(channels)] for _ in range(orig_w)]
            for _ in range(orig_h)] for _ in range(batch)]
    for y in range(res_h):
        iy = _nearest_index(y, orig_h, sy, align_corners, half_pixel_centers)
        for x in range(res_w):
            ix = _nearest_index(x, orig_w, sx, align_corners, half_pixel_centers)
            for n in range(batch):
                for c in range(channels):
                    acc[n][iy][ix][c] += grads[n, y, x, c].item()
    if integer:
        bits = 8 * grads.dtype.itemsize
        info = np.iinfo(grads.dtype)
        flat = [((v - info.min) % (1 << bits)) + info.min
                for plane in acc for row in plane for px in row for v in px]
        return np.array(flat, grads.dtype).reshape(batch, orig_h, orig_w, channels)
    return np.array(acc, np.float64).reshape(batch, orig_h, orig_w, channels) \
        .astype(grads.dtype)


# ---- a test-side PNG encoder ---------------------------------------------------------------
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2))
_PNG_SOURCES: dict[bytes, tuple] = {}


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def _pack_samples(values, bit_depth):
    if bit_depth == 8:
        return list(values)
    if bit_depth == 16:
        return [b for v in values for b in (v >> 8, v & 0xFF)]
    out, acc, used = [], 0, 0
    for v in values:
        acc, used = (acc << bit_depth) | v, used + bit_depth
        if used == 8:
            out.append(acc)
            acc = used = 0
    if used:
        out.append(acc << (8 - used))
    return out


def _filter_row(kind, row, prior, bpp):
    out = [kind]
    for i, v in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prior[i]
        c = prior[i - bpp] if i >= bpp else 0
        if kind == 0:
            pred = 0
        elif kind == 1:
            pred = a
        elif kind == 2:
            pred = b
        elif kind == 3:
            pred = (a + b) // 2
        else:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
        out.append((v - pred) % 256)
    return out


def png_bytes(samples, color_type, bit_depth, *, palette=None, trns=None, interlace=False,
              filters=(0, 1, 2, 3, 4)) -> bytes:
    """A PNG of ``samples`` ([h, w, native channels] ints) in ``color_type`` / ``bit_depth``,
    its rows filtered with ``filters`` in turn. ``trns`` is the tRNS chunk body."""
    samples = np.asarray(samples)
    h, w, nc = samples.shape
    bpp = max(1, nc * bit_depth // 8)
    raw, k = [], 0
    for x0, y0, dx, dy in (ADAM7 if interlace else ((0, 0, 1, 1),)):
        ys, xs = range(y0, h, dy), range(x0, w, dx)
        if not ys or not xs:
            continue
        prior = None
        for y in ys:
            row = _pack_samples([int(samples[y, x, c]) for x in xs for c in range(nc)],
                                bit_depth)
            raw += _filter_row(filters[k % len(filters)], row, prior or [0] * len(row), bpp)
            prior, k = row, k + 1
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(
        ">IIBBBBB", w, h, bit_depth, color_type, 0, 0, int(interlace)))
    if palette is not None:
        data += _png_chunk(b"PLTE", bytes(int(v) for v in np.asarray(palette).reshape(-1)))
    if trns is not None:
        data += _png_chunk(b"tRNS", bytes(trns))
    data += _png_chunk(b"IDAT", zlib.compress(bytes(raw)))
    data += _png_chunk(b"IEND", b"")
    _PNG_SOURCES[data] = (samples, color_type, bit_depth, palette, trns)
    return data


def _gray16(r, g, b, depth):
    total = 9797 * r + 19234 * g + 3737 * b
    return (total + 16384) // 32768 if depth == 16 else total // 32768


def _png_pixel(src, y, x, want):
    """One output pixel by TF's libpng settings: (values, depth of the values)."""
    samples, ct, depth, palette, trns = src
    px = [int(v) for v in samples[y, x]]
    alpha = None
    if ct == 3:
        color, work = [int(v) for v in palette[px[0]]], 8
        if trns is not None:
            alpha = trns[px[0]] if px[0] < len(trns) else 255
    else:
        n = 1 if ct in (0, 4) else 3
        color, work = px[:n], depth
        opaque = 65535 if depth == 16 else 255
        if ct in (4, 6):
            alpha = px[n]
        elif trns is not None:
            key = list(struct.unpack(f">{n}H", bytes(trns[:2 * n])))
            alpha = 0 if color == key else opaque
        if depth < 8:
            color, work = [color[0] * 255 // (2 ** depth - 1)], 8
    if want % 2 == 0 and alpha is None:
        alpha = 65535 if depth == 16 else (2 ** depth - 1) % 256
    if want < 3 and len(color) == 3:
        color = [_gray16(*color, work)]
    elif want >= 3 and len(color) == 1:
        color = color * 3
    return color + ([alpha] if want % 2 == 0 else []), work


def decode_png_ref(contents, *, channels=0, dtype=dt.DT_UINT8):
    src = _PNG_SOURCES[bytes(contents.item())]
    samples, ct, _, _, trns = src
    h, w, nc = samples.shape
    want = channels or ((4 if trns is not None else 3) if ct == 3 else nc)
    sixteen = dtype == dt.DT_UINT16
    out = np.zeros((h, w, want), np.uint16 if sixteen else np.uint8)
    for y in range(h):
        for x in range(w):
            values, work = _png_pixel(src, y, x, want)
            for c, v in enumerate(values):
                if sixteen and work == 8:
                    v = v | (v << 8)
                elif not sixteen and work == 16:
                    v >>= 8
                out[y, x, c] = v
    return out


def _png_samples(rng, t):
    r = rng.integers
    gray16 = r(0, 65536, (3, 5, 1))
    rgb = r(0, 256, (5, 4, 3))
    rgb[0, 0] = rgb[0, 1] = (10, 20, 30)           # a tRNS colour key below
    palette = r(0, 256, (6, 3))
    index = r(0, 6, (4, 7, 1))
    low = r(0, 4, (3, 9, 1))
    pngs = [
        ("gray8", png_bytes(r(0, 256, (4, 6, 1)), 0, 8), {}),
        ("rgb8_to_gray", png_bytes(rgb, 2, 8), {"channels": 1}),
        ("rgba8", png_bytes(r(0, 256, (3, 4, 4)), 6, 8), {}),
        ("rgb_key_to_rgba", png_bytes(rgb, 2, 8, trns=struct.pack(">3H", 10, 20, 30)),
         {"channels": 4}),
        ("gray_alpha16_to_rgb", png_bytes(r(0, 65536, (2, 3, 2)), 4, 16), {"channels": 3}),
        ("gray16", png_bytes(gray16, 0, 16), {}),
        ("rgb16_to_gray", png_bytes(r(0, 65536, (3, 3, 3)), 2, 16), {"channels": 1}),
        ("gray_alpha8", png_bytes(r(0, 256, (3, 2, 2)), 4, 8, filters=(3, 1)), {}),
        ("gray4_to_rgba", png_bytes(r(0, 16, (2, 5, 1)), 0, 4), {"channels": 4}),
        ("palette_trns", png_bytes(index, 3, 8, palette=palette, trns=[0, 128, 255]), {}),
        ("palette4_to_gray", png_bytes(index, 3, 4, palette=palette), {"channels": 1}),
        ("palette4_to_rgba", png_bytes(index, 3, 4, palette=palette), {"channels": 4}),
        ("gray2_interlaced", png_bytes(low, 0, 2, interlace=True), {"channels": 3}),
        ("gray1_trns", png_bytes(r(0, 2, (5, 11, 1)), 0, 1, trns=struct.pack(">H", 1)),
         {"channels": 4}),
        ("rgb8_interlaced", png_bytes(r(0, 256, (9, 10, 3)), 2, 8, interlace=True), {}),
        ("rgba8_to_rgb", png_bytes(r(0, 256, (2, 2, 4)), 6, 8, filters=(4,)),
         {"channels": 3}),
    ]
    extra = {"dtype": t} if t == dt.DT_UINT16 else {}
    return [Sample((string_scalar(data),), {**attrs, **extra}, name=name)
            for name, data, attrs in pngs]


# ---- a test-side baseline JPEG encoder (flat 8x8 blocks, DC coefficients only) ---------------
_JPEG_SOURCES: dict[bytes, np.ndarray] = {}


class _BitWriter:
    def __init__(self):
        self.out, self.acc, self.used = bytearray(), 0, 0

    def put(self, code, length):
        for i in range(length - 1, -1, -1):
            self.acc, self.used = (self.acc << 1) | ((code >> i) & 1), self.used + 1
            if self.used == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)          # byte stuffing
                self.acc = self.used = 0

    def flush(self):
        while self.used:
            self.put(1, 1)
        return bytes(self.out)


def _segment(marker, body):
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def jpeg_bytes(blocks, height, width) -> bytes:
    """A baseline JPEG of ``height`` x ``width`` whose 8x8 blocks are flat: ``blocks`` is
    [ceil(h/8), ceil(w/8), 1 or 3] of Y (and Cb, Cr) values, no chroma subsampling. A DC-only
    Huffman code (every category 4 bits long) and an AC code holding just EOB."""
    blocks = np.asarray(blocks, dtype=np.int64)
    nc = blocks.shape[2]
    dqt = _segment(0xDB, bytes([0]) + bytes([1] * 64))
    sof = _segment(0xC0, struct.pack(">BHHB", 8, height, width, nc)
                   + b"".join(bytes([i + 1, 0x11, 0]) for i in range(nc)))
    dc_counts = [0] * 16
    dc_counts[3] = 12
    ac_counts = [1] + [0] * 15
    dht = _segment(0xC4, bytes([0x00] + dc_counts + list(range(12)))
                   + bytes([0x10] + ac_counts + [0]))
    sos = _segment(0xDA, bytes([nc]) + b"".join(bytes([i + 1, 0]) for i in range(nc))
                   + bytes([0, 63, 0]))
    bits, previous = _BitWriter(), [0] * nc
    for by in range(blocks.shape[0]):
        for bx in range(blocks.shape[1]):
            for comp in range(nc):
                dc = 8 * (int(blocks[by, bx, comp]) - 128)
                diff, previous[comp] = dc - previous[comp], dc
                category = abs(diff).bit_length()
                bits.put(category, 4)
                if category:
                    bits.put(diff if diff >= 0 else diff + (1 << category) - 1, category)
                bits.put(0, 1)                  # EOB
    data = b"\xff\xd8" + dqt + sof + dht + sos + bits.flush() + b"\xff\xd9"
    _JPEG_SOURCES[data] = (blocks, height, width)
    return data


def _ycc_to_rgb(y, cb, cr):
    """libjpeg's ycc_rgb_convert (jdcolor.c), integer tables included."""
    one_half, cb, cr = 1 << 15, cb - 128, cr - 128
    r = y + ((91881 * cr + one_half) >> 16)
    g = y + ((-22554 * cb - 46802 * cr + one_half) >> 16)
    b = y + ((116130 * cb + one_half) >> 16)
    return [min(max(v, 0), 255) for v in (r, g, b)]


def decode_jpeg_ref(contents, *, channels=0, ratio=1, **_ignored):
    if bytes(contents.item()) in _PNG_SOURCES:       # DecodeJpeg decodes PNGs too
        return decode_png_ref(contents, channels=channels)
    blocks, height, width = _JPEG_SOURCES[bytes(contents.item())]
    nc = blocks.shape[2]
    want = channels or (1 if nc == 1 else 3)
    out_h, out_w = -(-height // ratio), -(-width // ratio)
    side = 8 // ratio                     # a flat block scales to a flat side x side block
    out = np.zeros((out_h, out_w, want), np.uint8)
    for y in range(out_h):
        for x in range(out_w):
            block = [int(v) for v in blocks[y // side, x // side]]
            if nc == 1:
                values = block * want
            else:
                values = block[:1] if want == 1 else _ycc_to_rgb(*block)
            out[y, x] = values
    return out


def _jpeg_samples(rng, t):
    gray = jpeg_bytes(rng.integers(0, 256, (2, 3, 1)), 13, 20)
    color = rng.integers(40, 216, (2, 2, 3))
    color[0, 0] = (200, 128, 128)
    rgb = jpeg_bytes(color, 16, 9)
    return [Sample((string_scalar(gray),), name="gray"),
            Sample((string_scalar(gray),), {"channels": 3}, name="gray_to_rgb"),
            Sample((string_scalar(rgb),), name="ycbcr"),
            Sample((string_scalar(rgb),), {"channels": 1}, name="ycbcr_to_gray"),
            Sample((string_scalar(gray),), {"ratio": 2}, name="ratio2"),
            Sample((string_scalar(rgb),), {"ratio": 8, "dct_method": "INTEGER_ACCURATE"},
                   name="ratio8"),
            Sample((string_scalar(png_bytes(rng.integers(0, 256, (3, 2, 4)), 6, 8)),),
                   {"channels": 4}, name="png_contents")]


# ---- EncodePng reference ---------------------------------------------------------------------
def encode_png_ref(image, *, compression=-1):
    h, w, c = image.shape
    sixteen = image.dtype == np.uint16
    raw = bytearray()
    for y in range(h):
        raw.append(0)
        for x in range(w):
            for ch in range(c):
                v = int(image[y, x, ch])
                raw += bytes([v >> 8, v & 0xFF]) if sixteen else bytes([v])
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    data = (b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16 if sixteen else 8,
                                               color_type, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(bytes(raw), compression))
            + _png_chunk(b"IEND", b""))
    return string_scalar(data)


def _encode_samples(rng, t):
    top = 65536 if t == dt.DT_UINT16 else 256
    img = lambda *shape: rng.integers(0, top, shape).astype(t.as_numpy_dtype)  # noqa: E731
    return [Sample((img(3, 4, 3),), name="rgb"),
            Sample((img(2, 5, 1),), {"compression": 9}, name="gray_best"),
            Sample((img(1, 1, 2),), {"compression": 0}, name="gray_alpha_stored"),
            Sample((img(4, 2, 4),), name="rgba")]


# ---- resize samples ----------------------------------------------------------------------------
def _size(h, w):
    return np.array([h, w], _I)


_CENTERS = ({}, {"align_corners": True}, {"half_pixel_centers": True})


def _resize_samples(rng, t):
    out = []
    for k, attrs in enumerate(_CENTERS):
        name = ("legacy", "align", "half")[k]
        out += [Sample((rand(rng, (2, 3, 4, 2), t), _size(5, 7)), attrs, name=f"up_{name}"),
                Sample((rand(rng, (1, 6, 5, 1), t), _size(4, 2)), attrs, name=f"down_{name}"),
                Sample((rand(rng, (1, 4, 3, 3), t), _size(1, 1)), attrs, name=f"one_{name}")]
    out += [Sample((rand(rng, (1, 3, 3, 2), t), _size(3, 3)), name="same_size"),
            Sample((rand(rng, (1, 1, 1, 2), t), _size(3, 2)), {"half_pixel_centers": True},
                   name="single_pixel"),
            Sample((rand(rng, (0, 3, 3, 2), t), _size(2, 5)), name="empty_batch")]
    return out


def _bilinear_grad_samples(rng, t):
    out = []
    for k, attrs in enumerate(_CENTERS):
        name = ("legacy", "align", "half")[k]
        out += [Sample((rand(rng, (2, 5, 7, 2), dt.DT_FLOAT), rand(rng, (2, 3, 4, 2), t)), attrs,
                       name=f"from_up_{name}"),
                Sample((rand(rng, (1, 2, 3, 1), dt.DT_FLOAT), rand(rng, (1, 5, 4, 1), t)), attrs,
                       name=f"from_down_{name}")]
    out.append(Sample((rand(rng, (0, 2, 3, 1), dt.DT_FLOAT), rand(rng, (0, 4, 4, 1), t)),
                      name="empty_batch"))
    return out


def _nn_grad_samples(rng, t):
    out = []
    for k, attrs in enumerate(_CENTERS):
        name = ("legacy", "align", "half")[k]
        out += [Sample((rand(rng, (2, 5, 7, 2), t), _size(3, 4)), attrs, name=f"from_up_{name}"),
                Sample((rand(rng, (1, 2, 3, 1), t), _size(5, 4)), attrs,
                       name=f"from_down_{name}")]
    if t.is_integer:
        big = np.full((1, 4, 4, 1), 100, t.as_numpy_dtype)
        out.append(Sample((big, _size(1, 1)), name="wraps_around"))
    out.append(Sample((rand(rng, (0, 2, 3, 1), t), _size(4, 4)), name="empty_batch"))
    return out


_IMG = np.zeros((1, 2, 2, 1), _F)
_RESIZE_ERRORS = [
    ErrorCase((_IMG, _size(2, 2)), {"align_corners": True, "half_pixel_centers": True},
              regex="If half_pixel_centers is True, align_corners must be False",
              when="build", name="both_centers"),
    ErrorCase((np.zeros((2, 2, 1), _F), _size(2, 2)), regex="must be rank 4", name="rank"),
    ErrorCase((_IMG, np.array([2, 2, 2], _I)), regex="Dimensions must be equal, but are 3 and 2",
              name="size_length"),
    ErrorCase((_IMG, _size(0, 3)), regex="output dimensions must be positive, got \\[0, 3\\]",
              name="size_zero"),
    ErrorCase((np.zeros((1, 2, 2, 0), _F), _size(2, 2)),
              regex="image must have at least one channel", name="no_channels"),
    ErrorCase((np.zeros((1, 0, 2, 1), _F), _size(2, 2)),
              regex="input image must be of non-zero size", name="empty_image"),
]
_RESIZE_SHAPES = [
    ShapeCase("[?,4,4,3];=[2,3]", "[d0_0,2,3,d0_3]"),
    ShapeCase("[2,4,?,3];[2]", "[2,?,?,3]"),
    ShapeCase("?;[?]", "[?,?,?,?]"),
    ShapeCase("[2,4,4];[2]", "must be rank 4", error=errors.InvalidArgumentError),
    ShapeCase("[2,4,4,1];=[-1,3]", "output dimensions must be positive",
              error=errors.InvalidArgumentError),
]


# ---- decoder errors ----------------------------------------------------------------------------
def _decode_errors(op):
    jpeg = string_scalar(jpeg_bytes(np.full((1, 1, 1), 90), 8, 8))
    cases = [
        ErrorCase((np.array([b"a", b"b"], object),), regex="must be rank 0", name="rank"),
        ErrorCase((string_scalar(b""),), regex="Input is empty", name="empty"),
        ErrorCase((string_scalar(b"hello"),), regex="Unknown image file format", name="unknown"),
        ErrorCase((string_scalar(b"BM" + bytes(40)),), regex="Use `decode_bmp`", name="bmp"),
        ErrorCase((jpeg,), {"channels": 4}, regex="JPEG does not support 4 channels",
                  name="jpeg_rgba"),
        ErrorCase((string_scalar(b"GIF89a" + bytes(20)),), {"channels": 1},
                  regex="channels must be 0 or 3 for GIF, got 1", name="gif_gray"),
        ErrorCase((jpeg,), {"channels": 2}, regex="`channels` must be 0, 1, 3 or 4 but got 2",
                  when="build", name="channels"),
        ErrorCase((string_scalar(b"\x89PNG\r\n\x1a\n" + bytes(30)),),
                  regex="Invalid PNG. Failed to initialize decoder", when="run",
                  name="png_header"),
    ]
    good = png_bytes(np.zeros((4, 4, 1), np.int64), 0, 8)
    idat = good.index(b"IDAT")
    truncated = good[:idat + 8] + good[idat + 20:]       # IDAT body shortened: bad CRC
    cases.append(ErrorCase((string_scalar(truncated),), regex="Invalid PNG data, size",
                           when="run", name="png_data"))
    if op == "DecodeJpeg":
        cases += [ErrorCase((jpeg,), {"ratio": 3}, regex="ratio must be 1, 2, 4, or 8, got 3",
                            when="build", name="ratio"),
                  ErrorCase((jpeg,), {"dct_method": "FLOAT"}, regex="dct_method must be one of",
                            when="build", name="dct_method")]
        if HAVE_PILLOW:
            bad = jpeg.item()[:40] + bytes(30)
            cases.append(ErrorCase((string_scalar(bad),), regex="Invalid JPEG data",
                                   when="run", name="jpeg_data"))
    else:
        cases.append(ErrorCase((jpeg,), {"dtype": dt.DT_FLOAT}, regex="allowed values",
                               when="build", name="dtype"))
    return cases


_DECODE_SHAPES = [ShapeCase("[]", "[?,?,?]"), ShapeCase("?", "[?,?,?]"),
                  ShapeCase("[]", "[?,?,3]", {"channels": 3}),
                  ShapeCase("[2]", "must be rank 0", error=errors.InvalidArgumentError)]
_NO_PILLOW = "" if HAVE_PILLOW else "Pillow is not installed (JPEG needs the 'images' extra)"

ENTRIES = [
    # No grad_tol: the output is float32 whatever the input, too coarse for float64 finite
    # differences with delta 1e-6; tests/ops/test_image_ops.py checks the gradient in float32
    # with a large delta (the op is linear in the image, so that is exact).
    OpInfo("ResizeBilinear", ref=resize_bilinear_ref, dtypes=RESIZE_DTYPES,
           samples=_resize_samples, value_inputs=("size",), errors=_RESIZE_ERRORS,
           shapes=_RESIZE_SHAPES),
    OpInfo("ResizeNearestNeighbor", ref=resize_nearest_ref, dtypes=RESIZE_DTYPES,
           samples=_resize_samples, value_inputs=("size",), errors=_RESIZE_ERRORS,
           shapes=_RESIZE_SHAPES, grad_tol=1e-6),
    # No grad_tol either: grads is float32 (TF's signature); its gradient (ResizeBilinear) is
    # checked by hand like ResizeBilinear's.
    OpInfo("ResizeBilinearGrad", ref=resize_bilinear_grad_ref, dtypes=FLOATS,
           samples=_bilinear_grad_samples,
           errors=[
               ErrorCase((np.zeros((1, 2, 2), _F), np.zeros((1, 3, 3, 1), _F)),
                         regex="must be rank 4", name="grads_rank"),
               ErrorCase((np.zeros((1, 2, 2, 1), _F), np.zeros((1, 0, 3, 1), _F)),
                         regex="original dimensions must be positive", name="original_empty"),
               ErrorCase((np.zeros((1, 2, 0, 1), _F), np.zeros((1, 3, 3, 1), _F)),
                         regex="resized dimensions must be positive", name="grads_empty"),
               ErrorCase((np.zeros((2, 2, 2, 1), _F), np.zeros((3, 3, 3, 1), _F)),
                         regex="the batch of grads vs. that of original_image", name="batch"),
               ErrorCase((np.zeros((1, 2, 2, 1), _F), np.zeros((1, 3, 3, 1), _F)),
                         {"align_corners": True, "half_pixel_centers": True},
                         regex="align_corners must be False", when="build", name="centers")],
           shapes=[ShapeCase("[?,2,2,?];[3,5,4,1]", "[3,5,4,1]"),
                   ShapeCase("[2,2,2,3];?", "[2,?,?,3]")]),
    OpInfo("ResizeNearestNeighborGrad", ref=resize_nearest_grad_ref, dtypes=NN_GRAD_DTYPES,
           samples=_nn_grad_samples, value_inputs=("size",),
           errors=[ErrorCase((np.zeros((1, 2, 2, 1), _F), _size(0, 2)),
                             regex="shape_t's elements must be positive, got \\[0, 2\\]",
                             name="size_zero"),
                   ErrorCase((np.zeros((2, 2, 1), _F), _size(2, 2)), regex="must be rank 4",
                             name="rank")],
           shapes=[ShapeCase("[2,?,?,3];=[4,5]", "[2,4,5,3]"),
                   ShapeCase("[2,3,3,1];[2]", "[2,?,?,1]")],
           grad_tol=1e-6),
    OpInfo("DecodePng", ref=decode_png_ref, dtypes=(dt.DT_UINT8, dt.DT_UINT16),
           samples=_png_samples, errors=_decode_errors("DecodePng"), shapes=_DECODE_SHAPES,
           exact_from_constants=False),
    OpInfo("DecodeJpeg", ref=decode_jpeg_ref, dtypes=(dt.DT_UINT8,), samples=_jpeg_samples,
           errors=_decode_errors("DecodeJpeg"), shapes=_DECODE_SHAPES,
           exact_from_constants=False, skip_generic=_NO_PILLOW),
    OpInfo("EncodePng", ref=encode_png_ref, dtypes=(dt.DT_UINT8, dt.DT_UINT16),
           samples=_encode_samples,
           errors=[ErrorCase((np.zeros((2, 2), np.uint8),), regex="must be rank 3", name="rank"),
                   ErrorCase((np.zeros((2, 2, 5), np.uint8),),
                             regex="image must have 1, 2, 3, or 4 channels, got 5",
                             name="channels"),
                   ErrorCase((np.zeros((0, 2, 3), np.uint8),),
                             regex="Invalid image provided", name="empty"),
                   ErrorCase((np.zeros((2, 2, 3), np.uint8),), {"compression": 10},
                             regex="compression should be in \\[-1,9\\], got 10",
                             when="build", name="compression")],
           shapes=[ShapeCase("[?,?,3]", "[]", dtype=dt.DT_UINT8),
                   ShapeCase("?", "[]", dtype=dt.DT_UINT16),
                   ShapeCase("[4,4,5]", "1, 2, 3, or 4 channels", dtype=dt.DT_UINT8,
                             error=errors.InvalidArgumentError)]),
]
