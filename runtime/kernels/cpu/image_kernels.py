"""CPU kernels of the image ops (ops/image_ops.py).

Resizing reproduces TF's CPU kernels in float32 arithmetic: per-axis source indices and
interpolation weights are computed once (TF's compute_interpolation_weights /
compute_indices), then whole images are gathered and blended with numpy. The backward ops
scatter with ``np.add.at``.

PNG is coded here with zlib and numpy: the encoder writes unfiltered rows; the decoder reads
every colour type, bit depth and Adam7 interlacing, undoing the row filters along
anti-diagonals (each step reconstructs all pixels whose left, upper and upper-left
neighbours are done), then applies the transformations TF asks libpng for. Gamma chunks
(gAMA, sRGB) are ignored: TF's libpng would gamma-correct the RGB -> gray conversion of such
files. JPEG and GIF contents are decoded with Pillow (libjpeg with its accurate integer DCT,
where TF defaults to the fast one); without Pillow they raise UnimplementedError.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np

from opgraph import errors
from runtime.kernel_registry import register_kernel
from runtime.memory import check_allocation

_F32 = np.float32
_PILLOW_HINT = ("install the optional 'images' extra (pip install 'opgraph[images]', i.e. "
                "Pillow>=10)")


# ---- resizing ----------------------------------------------------------------------------
def _resize_scale(in_size: int, out_size: int, align_corners: bool):
    """TF's CalculateResizeScale, in float32."""
    if align_corners and out_size > 1:
        return _F32(in_size - 1) / _F32(out_size - 1)
    return _F32(in_size) / _F32(out_size)


def _linear_weights(out_size, in_size, scale, half_pixel_centers):
    """(lower, upper, lerp) source indices and weights of each output coordinate."""
    x = np.arange(out_size, dtype=_F32)
    pos = (x + _F32(0.5)) * scale - _F32(0.5) if half_pixel_centers else x * scale
    floor = np.floor(pos)
    lower = np.clip(floor.astype(np.int64), 0, in_size - 1)
    upper = np.minimum(np.ceil(pos).astype(np.int64), in_size - 1)
    return lower, upper, pos - floor


def _roundf(v):
    """C's roundf (half away from zero) on float32, exactly."""
    a = np.abs(v)
    r = np.floor(a)
    r = r + (a - r >= _F32(0.5))
    return np.copysign(r, v)


def _nearest_indices(out_size, in_size, scale, align_corners, half_pixel_centers):
    x = np.arange(out_size, dtype=_F32)
    pos = (x + _F32(0.5)) * scale if half_pixel_centers else x * scale
    idx = (_roundf(pos) if align_corners else np.floor(pos)).astype(np.int64)
    idx = np.minimum(idx, in_size - 1)
    return np.maximum(idx, 0) if half_pixel_centers else idx


@register_kernel("ResizeBilinear")
def resize_bilinear(images, size, *, align_corners, half_pixel_centers):
    batch, in_h, in_w, channels = images.shape
    out_h, out_w = (int(v) for v in np.asarray(size).reshape(-1))
    if (out_h, out_w) == (in_h, in_w):
        return images.astype(_F32)              # TF's no-op shortcut (a copy)
    if batch * channels == 0:
        return np.zeros((batch, out_h, out_w, channels), _F32)
    check_allocation((batch, out_h, max(in_w, out_w), channels), 4,
                     "ResizeBilinear temporaries")
    y0, y1, ylerp = _linear_weights(out_h, in_h, _resize_scale(in_h, out_h, align_corners),
                                    half_pixel_centers)
    x0, x1, xlerp = _linear_weights(out_w, in_w, _resize_scale(in_w, out_w, align_corners),
                                    half_pixel_centers)
    img = images.astype(_F32, copy=False)
    top_rows, bottom_rows = img[:, y0], img[:, y1]
    xl = xlerp[None, None, :, None]
    top_left = top_rows[:, :, x0]
    top = top_left + (top_rows[:, :, x1] - top_left) * xl
    bottom_left = bottom_rows[:, :, x0]
    bottom = bottom_left + (bottom_rows[:, :, x1] - bottom_left) * xl
    return top + (bottom - top) * ylerp[None, :, None, None]


@register_kernel("ResizeNearestNeighbor")
def resize_nearest_neighbor(images, size, *, align_corners, half_pixel_centers):
    _, in_h, in_w, _ = images.shape
    out_h, out_w = (int(v) for v in np.asarray(size).reshape(-1))
    ys = _nearest_indices(out_h, in_h, _resize_scale(in_h, out_h, align_corners),
                          align_corners, half_pixel_centers)
    xs = _nearest_indices(out_w, in_w, _resize_scale(in_w, out_w, align_corners),
                          align_corners, half_pixel_centers)
    return images[:, ys[:, None], xs[None, :]]


@register_kernel("ResizeBilinearGrad")
def resize_bilinear_grad(grads, original_image, *, align_corners, half_pixel_centers):
    batch, res_h, res_w, channels = grads.shape
    orig_h, orig_w = original_image.shape[1:3]
    out_dtype = original_image.dtype
    acc = np.float64 if out_dtype == np.float64 else _F32     # half/bfloat16: float32
    out = np.zeros((batch, orig_h, orig_w, channels), acc)
    y0, y1, ylerp = _linear_weights(res_h, orig_h,
                                    _resize_scale(orig_h, res_h, align_corners),
                                    half_pixel_centers)
    x0, x1, xlerp = _linear_weights(res_w, orig_w,
                                    _resize_scale(orig_w, res_w, align_corners),
                                    half_pixel_centers)
    g = grads.astype(_F32, copy=False)
    for ys, wy in ((y0, _F32(1) - ylerp), (y1, ylerp)):
        g_rows = g * wy[None, :, None, None]
        for xs, wx in ((x0, _F32(1) - xlerp), (x1, xlerp)):
            share = (g_rows * wx[None, None, :, None]).astype(acc, copy=False)
            np.add.at(out, (slice(None), ys[:, None], xs[None, :]), share)
    return out.astype(out_dtype, copy=False)


@register_kernel("ResizeNearestNeighborGrad")
def resize_nearest_neighbor_grad(grads, size, *, align_corners, half_pixel_centers):
    batch, res_h, res_w, channels = grads.shape
    orig_h, orig_w = (int(v) for v in np.asarray(size).reshape(-1))
    out = np.zeros((batch, orig_h, orig_w, channels), grads.dtype)
    if grads.size == 0:
        return out
    ys = _nearest_indices(res_h, orig_h, _resize_scale(orig_h, res_h, align_corners),
                          align_corners, half_pixel_centers)
    xs = _nearest_indices(res_w, orig_w, _resize_scale(orig_w, res_w, align_corners),
                          align_corners, half_pixel_centers)
    with np.errstate(over="ignore"):        # integer sums wrap around, as in C++
        np.add.at(out, (slice(None), ys[:, None], xs[None, :]), grads)
    return out


# ---- PNG encoding --------------------------------------------------------------------------
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE_OF_CHANNELS = {1: 0, 2: 4, 3: 2, 4: 6}


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _string_scalar(data: bytes) -> np.ndarray:
    out = np.empty((), dtype=object)
    out[()] = data
    return out


@register_kernel("EncodePng")
def encode_png(image, *, compression):
    height, width, channels = image.shape
    bits = 16 if image.dtype == np.uint16 else 8
    samples = image.astype(">u2") if bits == 16 else np.ascontiguousarray(image)
    rows = samples.view(np.uint8).reshape(height, -1)
    raw = np.zeros((height, rows.shape[1] + 1), np.uint8)   # filter byte 0 (None) per row
    raw[:, 1:] = rows
    header = struct.pack(">IIBBBBB", width, height, bits, _COLOR_TYPE_OF_CHANNELS[channels],
                         0, 0, 0)
    data = (_PNG_MAGIC + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw.tobytes(), compression))
            + _chunk(b"IEND", b""))
    return _string_scalar(data)


# ---- PNG decoding --------------------------------------------------------------------------
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))
_NATIVE_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_BIT_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
# libpng's png_set_rgb_to_gray(png, 1, 0.299, 0.587) coefficients (15-bit fixed point)
_GRAY_RED, _GRAY_GREEN = 9797, 19234
_GRAY_BLUE = 32768 - _GRAY_RED - _GRAY_GREEN


class _Png:
    """The chunks of a PNG that matter for decoding."""

    __slots__ = ("width", "height", "bit_depth", "color_type", "interlace", "palette",
                 "trns", "idat")


def _png_init_error() -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError("Invalid PNG. Failed to initialize decoder.")


def _png_data_error(data: bytes) -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError(f"Invalid PNG data, size {len(data)}")


def _parse_png(data: bytes) -> _Png:
    png = _Png()
    png.palette = png.trns = None
    idat, pos, header_done = [], len(_PNG_MAGIC), False
    while True:
        if pos + 8 > len(data):
            raise _png_data_error(data) if idat else _png_init_error()
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        # libpng reads the chunks before the first IDAT when the decoder is set up
        error = _png_data_error(data) if idat or kind == b"IDAT" else _png_init_error()
        body = data[pos + 8:pos + 8 + length]
        crc = data[pos + 8 + length:pos + 12 + length]
        if len(body) < length or len(crc) < 4:
            raise error
        critical = not kind[0] & 0x20
        if critical and struct.unpack(">I", crc)[0] != zlib.crc32(kind + body) & 0xFFFFFFFF:
            raise error
        pos += 12 + length
        if not header_done:
            if kind != b"IHDR" or length != 13:
                raise error
            (png.width, png.height, png.bit_depth, png.color_type, method, filtering,
             png.interlace) = struct.unpack(">IIBBBBB", body)
            if png.bit_depth not in _BIT_DEPTHS.get(png.color_type, ()) or method or \
                    filtering or png.interlace > 1 or not png.width or not png.height:
                raise error
            header_done = True
        elif kind == b"PLTE":
            if length % 3 or not 0 < length <= 768:
                raise error
            png.palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif kind == b"tRNS":
            png.trns = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        elif critical:
            raise error
    if not idat or (png.color_type == 3 and png.palette is None):
        raise _png_data_error(data)
    png.idat = b"".join(idat)
    return png


def _paeth(left, up, upper_left):
    pa = np.abs(up - upper_left)
    pb = np.abs(left - upper_left)
    pc = np.abs(left + up - 2 * upper_left)
    return np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upper_left))


def _unfilter(block: np.ndarray, bpp: int, data: bytes) -> np.ndarray:
    """Undo the PNG row filters of ``block`` ([rows, 1 + row bytes]) -> [rows, row bytes].

    A reconstructed byte needs its left, upper and upper-left neighbours, so the pixels are
    processed one anti-diagonal (row + column = d) at a time, in a skewed copy where each
    anti-diagonal is a column: all filter types of all rows at once, H + W - 1 steps.
    """
    kinds, filtered = block[:, 0], block[:, 1:]
    if kinds.max(initial=0) > 4:
        raise _png_data_error(data)
    if not kinds.any():
        return filtered
    rows, row_bytes = filtered.shape
    cols = row_bytes // bpp
    check_allocation((rows + 1, rows + cols + 1, bpp), 2, "DecodePng filter workspace")
    rr = np.arange(rows)[:, None]
    skew_cols = rr + np.arange(cols)[None, :]           # pixel (r, x) sits at column r + x
    filt = np.zeros((rows, rows + cols, bpp), np.int16)
    filt[rr, skew_cols] = filtered.reshape(rows, cols, bpp)
    recon = np.zeros((rows + 1, rows + cols + 1, bpp), np.int16)   # zero row/column pads
    kind = kinds.astype(np.int16)[:, None, None]
    for d in range(rows + cols - 1):
        r0, r1 = max(0, d - cols + 1), min(rows - 1, d) + 1
        left = recon[r0 + 1:r1 + 1, d]
        up = recon[r0:r1, d]
        upper_left = recon[r0:r1, d - 1] if d else np.zeros_like(up)
        k = kind[r0:r1, 0]
        pred = np.where(k == 1, left, np.where(k == 2, up, np.where(
            k == 3, (left + up) >> 1, np.where(k == 4, _paeth(left, up, upper_left), 0))))
        recon[r0 + 1:r1 + 1, d + 1] = (filt[r0:r1, d] + pred) & 0xFF
    out = recon[1 + rr, 1 + skew_cols]
    return out.reshape(rows, row_bytes).astype(np.uint8)


def _unpack(recon: np.ndarray, width: int, channels: int, bit_depth: int) -> np.ndarray:
    rows = recon.shape[0]
    if bit_depth == 8:
        return recon.reshape(rows, width, channels)
    if bit_depth == 16:
        pairs = recon.reshape(rows, width * channels, 2).astype(np.uint16)
        return ((pairs[..., 0] << 8) | pairs[..., 1]).reshape(rows, width, channels)
    bits = np.unpackbits(recon, axis=1).reshape(rows, -1, bit_depth)
    weights = (1 << np.arange(bit_depth - 1, -1, -1)).astype(np.uint8)
    return (bits * weights).sum(axis=-1, dtype=np.uint8)[:, :width, None]


def _png_samples(png: _Png, data: bytes) -> np.ndarray:
    """The image's samples in its own colour type and bit depth: [height, width, channels]."""
    w, h, depth = png.width, png.height, png.bit_depth
    nc = _NATIVE_CHANNELS[png.color_type]
    passes = _ADAM7 if png.interlace else ((0, 0, 1, 1),)
    layout, expected = [], 0
    for x0, y0, dx, dy in passes:
        pw, ph = -(-(w - x0) // dx), -(-(h - y0) // dy)
        if pw > 0 and ph > 0:
            row_bytes = (pw * nc * depth + 7) // 8
            layout.append((x0, y0, dx, dy, pw, ph, row_bytes, expected))
            expected += ph * (row_bytes + 1)
    check_allocation((expected,), 1, "DecodePng rows")
    try:
        raw = zlib.decompressobj().decompress(png.idat, expected)
    except zlib.error:
        raise _png_data_error(data) from None
    if len(raw) < expected:
        raise _png_data_error(data)
    samples = np.empty((h, w, nc), np.uint16 if depth == 16 else np.uint8)
    bpp = max(1, nc * depth // 8)
    for x0, y0, dx, dy, pw, ph, row_bytes, offset in layout:
        block = np.frombuffer(raw, np.uint8, ph * (row_bytes + 1), offset)
        recon = _unfilter(block.reshape(ph, row_bytes + 1), bpp, data)
        samples[y0::dy, x0::dx] = _unpack(recon, pw, nc, depth)
    return samples


def _rgb_to_gray(rgb: np.ndarray, depth: int) -> np.ndarray:
    """libpng's png_do_rgb_to_gray without gamma: truncating at 8 bits, rounding at 16."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    total = _GRAY_RED * r + _GRAY_GREEN * g + _GRAY_BLUE * b
    return ((total + (16384 if depth == 16 else 0)) >> 15)[..., None]


def _transparency_alpha(png: _Png, samples, depth: int, data: bytes):
    """Alpha from a tRNS chunk (colour key of a gray/RGB image): 0 where matched, else max."""
    n = 1 if png.color_type == 0 else 3
    if len(png.trns) < 2 * n:
        raise _png_data_error(data)
    key = np.array(struct.unpack(f">{n}H", png.trns[:2 * n]))
    opaque = (1 << depth) - 1 if depth == 16 else 255
    return np.where(np.all(samples[..., :n] == key, axis=-1), 0, opaque)


def _decode_png(data: bytes, channels: int, sixteen_bits: bool) -> np.ndarray:
    """TF's png::CommonInitDecode transformations, applied to the decoded samples."""
    png = _parse_png(data)
    w, h, depth, ct = png.width, png.height, png.bit_depth, png.color_type
    if w >= 1 << 27 or h >= 1 << 27 or w * h >= 1 << 29:
        raise errors.InvalidArgumentError(f"PNG size too large for int: {w} by {h}")
    has_trns = png.trns is not None
    want = channels or (3 + has_trns if ct == 3 else _NATIVE_CHANNELS[ct])
    check_allocation((h, w, max(want, 4)), 8, "DecodePng image")
    samples = _png_samples(png, data)
    want_alpha = want % 2 == 0
    # libpng's filler is (1 << bit_depth) - 1, written into 8-bit rows as its low byte.
    filler = 0xFFFF if depth == 16 else ((1 << depth) - 1) & 0xFF
    alpha = None
    if ct == 3:
        index = samples[..., 0]
        if index.max(initial=0) >= len(png.palette):
            raise _png_data_error(data)
        color, work_depth, gray = png.palette[index].astype(np.int64), 8, False
        if want_alpha and has_trns:
            table = np.full(256, 255, np.int64)
            table[:len(png.trns)] = np.frombuffer(png.trns[:256], np.uint8)
            alpha = table[index]
    else:
        gray = ct in (0, 4)
        n = 1 if gray else 3
        color, work_depth = samples[..., :n].astype(np.int64), depth
        if ct in (4, 6):
            alpha = samples[..., n].astype(np.int64)
        elif want_alpha and has_trns:
            alpha = _transparency_alpha(png, samples, depth, data)
        if depth < 8:                           # png_set_expand_gray_1_2_4_to_8
            color = color * (255 // ((1 << depth) - 1))
            work_depth = 8
    if want_alpha and alpha is None:
        alpha = np.full((h, w), filler, np.int64)
    if want < 3 and not gray:
        color = _rgb_to_gray(color, work_depth)
    elif want >= 3 and gray:
        color = np.repeat(color, 3, axis=-1)
    planes = [color] + ([alpha[..., None]] if want_alpha else [])
    image = np.concatenate(planes, axis=-1) if want_alpha else color
    if sixteen_bits:
        if work_depth == 8:                     # TF's Convert8to16: x | x << 8
            image = image * 257
        return image.astype(np.uint16)
    if work_depth == 16:                        # png_set_strip_16
        image = image >> 8
    return image.astype(np.uint8)


# ---- JPEG and GIF through Pillow -----------------------------------------------------------
def _pillow(what: str):
    try:
        from PIL import Image  # noqa: PLC0415  (optional dependency)
    except ImportError:
        msg = f"Decoding {what} images needs Pillow: {_PILLOW_HINT}"
        raise errors.UnimplementedError(msg) from None
    return Image


def _open(image_module, data: bytes, what: str, error_text: str):
    try:
        im = image_module.open(io.BytesIO(data))
    except image_module.DecompressionBombError as e:
        raise errors.ResourceExhaustedError(f"{what} image too large: {e}") from None
    except (OSError, SyntaxError, ValueError):
        raise errors.InvalidArgumentError(error_text) from None
    check_allocation((im.size[1], im.size[0], 4), 1, f"{what} image")
    return im


def _jpeg_error() -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError(
        "jpeg::Uncompress failed. Invalid JPEG data or crop window.")


def _decode_jpeg(data: bytes, channels: int, ratio: int) -> np.ndarray:
    image_module = _pillow("JPEG")
    im = _open(image_module, data, "JPEG", _jpeg_error().message)
    width, height = im.size
    source = im.mode
    want = channels or (1 if source == "L" else 3)
    mode = "L" if want == 1 and source in ("L", "RGB", "YCbCr") else source
    if ratio > 1 or mode != source:
        # Pillow's draft picks libjpeg's scale_denom as the largest of 8, 4, 2, 1 that the
        # requested size allows; (W // r, H // r) asks for exactly r when both sides >= r.
        size = (max(1, width // ratio), max(1, height // ratio)) if ratio > 1 else None
        im.draft(mode, size)
        if im.size != (-(-width // ratio), -(-height // ratio)):
            msg = (f"DecodeJpeg: ratio {ratio} on a {width}x{height} JPEG (a side shorter than "
                   f"the ratio) is beyond what Pillow's decoder can do")
            raise errors.UnimplementedError(msg)
    try:
        im.load()
    except (OSError, SyntaxError, ValueError):
        raise _jpeg_error() from None
    pixels = np.asarray(im)
    if im.mode == "CMYK":           # TF's jpeg_mem: r = (255 - k) * (255 - c) / 255, ...
        ink = pixels.astype(np.int32)
        pixels = ((255 - ink[..., 3:]) * (255 - ink[..., :3]) // 255).astype(np.uint8)
        if want == 1:               # libjpeg's RGB -> gray, in 16-bit fixed point
            r, g, b = (pixels[..., i].astype(np.int64) for i in range(3))
            pixels = ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16).astype(np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if want == 3 and pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return np.ascontiguousarray(pixels, dtype=np.uint8)


def _decode_gif(data: bytes) -> np.ndarray:
    image_module = _pillow("GIF")
    error = f"Invalid GIF data (size {len(data)})"
    im = _open(image_module, data, "GIF", error)
    frames = getattr(im, "n_frames", 1)
    if frames != 1:
        msg = (f"Got {frames} frames, but animated gifs can only be decoded by "
               f"tf.io.decode_gif or tf.io.decode_image")
        raise errors.InvalidArgumentError(msg)
    try:
        im.load()
        index = np.asarray(im) if im.mode == "P" else None
        rgb = np.array(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError):
        raise errors.InvalidArgumentError(error) from None
    transparent = im.info.get("transparency")
    if index is not None and isinstance(transparent, int):
        rgb[index == transparent] = 0        # TF: transparent pixels of the first frame are 0
    return rgb


def _contents(value) -> bytes:
    v = value.item() if isinstance(value, np.ndarray) else value
    return v.encode("utf-8") if isinstance(v, str) else bytes(v)


def _decode(contents, channels, dtype, ratio=1):
    """TF's DecodeImageV2Op for DecodeJpeg / DecodePng. The shape function has already
    refused empty or unknown contents and impossible channel counts."""
    data = _contents(contents)
    sixteen = dtype == np.uint16
    if data.startswith(_PNG_MAGIC):
        return _decode_png(data, channels, sixteen)
    pixels = _decode_jpeg(data, channels, ratio) if data.startswith(b"\xff\xd8\xff") else \
        _decode_gif(data)
    if sixteen:                         # TF: uint8 -> uint16 by x * 256 for JPEG and GIF
        return pixels.astype(np.uint16) * np.uint16(256)
    return pixels


@register_kernel("DecodePng")
def decode_png(contents, *, channels, dtype):
    return _decode(contents, channels, dtype.as_numpy_dtype)


@register_kernel("DecodeJpeg")
def decode_jpeg(contents, *, channels, ratio, fancy_upscaling, try_recover_truncated,
                dct_method):
    data = _contents(contents)
    if data.startswith(b"\xff\xd8\xff"):
        if not fancy_upscaling:
            msg = ("DecodeJpeg: fancy_upscaling=false is not available with Pillow's JPEG "
                   "decoder (libjpeg's fancy upsampling is always used)")
            raise errors.UnimplementedError(msg)
        if try_recover_truncated:
            msg = "DecodeJpeg: try_recover_truncated=true is not available with Pillow"
            raise errors.UnimplementedError(msg)
    return _decode(data, channels, np.uint8, ratio)
