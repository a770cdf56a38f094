"""Image ops: decoding and encoding (DecodeJpeg, DecodePng, EncodePng), resizing
(ResizeBilinear, ResizeNearestNeighbor) and the resize backward ops (ResizeBilinearGrad,
ResizeNearestNeighborGrad), with TF's names, attrs and dtype sets (core/ops/image_ops.cc).

The resize kernels reproduce TF's CPU kernels exactly, float32 arithmetic included: the scale
is ``in / out`` (``(in - 1) / (out - 1)`` with align_corners and out > 1); a pixel maps to
``x * scale`` (legacy) or ``(x + 0.5) * scale - 0.5`` (half_pixel_centers; nearest neighbor
leaves out the ``- 0.5`` and floors); align_corners rounds instead of flooring for nearest
neighbor. align_corners and half_pixel_centers cannot both be true.

Decoding follows TF's DecodeImageV2 kernel: DecodeJpeg and DecodePng each decode JPEG, PNG and
single-frame GIF contents (by their magic bytes); PNGs go through TF's libpng transformations
(palette/tRNS expansion, gray <-> RGB, alpha added or stripped, 8 <-> 16 bits). PNG coding is
done with zlib and numpy; JPEG and GIF contents need Pillow (the optional extra
``images = ["Pillow>=10"]``), and without it their kernels raise UnimplementedError. The
checks TF's kernels make on the contents' first bytes (empty input, unknown format, channel
counts a format cannot give) are made at build time when the contents are a constant.
"""

from __future__ import annotations

import numpy as np

from opgraph import errors
from opgraph.gradients import gradient, not_differentiable
from opgraph.wrappers import declare

__all__ = ["DecodeJpeg", "DecodePng", "EncodePng", "ResizeBilinear", "ResizeNearestNeighbor",
           "ResizeBilinearGrad", "ResizeNearestNeighborGrad"]

_RESIZE_TYPES = "{int8, uint8, int16, uint16, int32, int64, bfloat16, half, float, double}"
_NN_MAX_SIDE = 1 << 24
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---- contents checks shared by the decoders' shape functions and kernels -------------------
def _sniff_image_format(data: bytes) -> str:
    """'jpeg', 'png', 'gif', 'bmp' or 'unknown' from the magic bytes (TF's
    ClassifyFileFormat)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(b"GIF8"):
        return "gif"
    if data.startswith(b"BM"):
        return "bmp"
    return "unknown"


def _as_bytes(value) -> bytes:
    """A string tensor element as bytes (str elements are UTF-8 encoded)."""
    v = value.item() if isinstance(value, np.ndarray) else value
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    if isinstance(v, str):
        return v.encode("utf-8")
    msg = f"contents must hold bytes, but holds {type(v).__name__}"
    raise errors.InvalidArgumentError(msg)


def _image_content_error(op_type: str, data: bytes, channels: int) -> str | None:
    """The sentence TF's DecodeImageV2 kernel refuses ``data`` with before decoding it, or
    None: the checks that need only the first bytes."""
    if not data:
        return "Input is empty."
    fmt = _sniff_image_format(data)
    if fmt == "unknown":
        return "Unknown image file format. One of JPEG, PNG, GIF, BMP required."
    if fmt == "bmp":
        return (f"Trying to decode BMP format using a wrong op. Use `decode_bmp` or "
                f"`decode_image` instead. Op used: {op_type}")
    if fmt == "jpeg" and channels == 4:
        return "JPEG does not support 4 channels"
    if fmt == "gif" and channels not in (0, 3):
        return f"channels must be 0 or 3 for GIF, got {channels}"
    return None


def _check_channels(c):
    channels = c.attr("channels")
    if channels not in (0, 1, 3, 4):
        msg = f"`channels` must be 0, 1, 3 or 4 but got {channels}"
        raise errors.InvalidArgumentError(msg)
    return channels


def _decode_shape(c, op_type):
    channels = _check_channels(c)
    c.with_rank(0, 0)
    value = c.input_tensor(0)
    if value is not None:
        problem = _image_content_error(op_type, _as_bytes(value), channels)
        if problem is not None:
            raise errors.InvalidArgumentError(problem)
    return [c.make_shape((None, None, channels or None))]


def _decode_jpeg_shape(c):
    ratio = c.attr("ratio")
    if ratio not in (1, 2, 4, 8):
        msg = f"ratio must be 1, 2, 4, or 8, got {ratio}"
        raise errors.InvalidArgumentError(msg)
    if c.attr("dct_method") not in ("", "INTEGER_FAST", "INTEGER_ACCURATE"):
        msg = (f"dct_method must be one of {{'', 'INTEGER_FAST', 'INTEGER_ACCURATE'}}, got "
               f"'{c.attr('dct_method')}'")
        raise errors.InvalidArgumentError(msg)
    return _decode_shape(c, "DecodeJpeg")


DecodeJpeg = declare(
    "DecodeJpeg",
    inputs=["contents: string  # 0-D: the encoded image (JPEG; PNG and GIF are accepted too)"],
    outputs=["image: uint8  # 3-D [height, width, channels]"],
    attrs=["channels: int = 0  # 0 (the image's own), 1 (grayscale) or 3 (RGB); 4 only for "
           "PNG contents",
           "ratio: int = 1  # JPEG downscaling while decoding: 1, 2, 4 or 8",
           "fancy_upscaling: bool = true  # smooth chroma upsampling (only true with Pillow)",
           "try_recover_truncated: bool = false  # (only false with Pillow)",
           "acceptable_fraction: float = 1.0  # minimum fraction of lines of a truncated input",
           "dct_method: string = ''  # '', 'INTEGER_FAST' or 'INTEGER_ACCURATE' (Pillow always "
           "decodes with libjpeg's accurate integer DCT)"],
    shape_fn=_decode_jpeg_shape,
    doc="Decode a JPEG-encoded image to a uint8 tensor [height, width, channels]. PNG and "
        "single-frame GIF contents are decoded too, as TF's kernel does. JPEG contents need "
        "Pillow (the 'images' extra).")
not_differentiable("DecodeJpeg")


def _decode_png_shape(c):
    return _decode_shape(c, "DecodePng")


DecodePng = declare(
    "DecodePng",
    inputs=["contents: string  # 0-D: the encoded image (PNG; JPEG and GIF are accepted too)"],
    outputs=["image: dtype  # 3-D [height, width, channels]"],
    attrs=["channels: int = 0  # 0 (the image's own), 1 (gray), 3 (RGB) or 4 (RGBA)",
           "dtype: {uint8, uint16} = uint8"],
    shape_fn=_decode_png_shape,
    doc="Decode a PNG-encoded image to a uint8 or uint16 tensor [height, width, channels], "
        "converting colour type, alpha and bit depth as TF's libpng settings do (gray from RGB "
        "with libpng's 0.299/0.587/0.114 weights; 8-bit samples widen to 16 as x * 257, JPEG "
        "and GIF ones as x * 256). PNGs are decoded without Pillow; JPEG and GIF contents "
        "need it.")
not_differentiable("DecodePng")


def _encode_png_shape(c):
    level = c.attr("compression")
    if not -1 <= level <= 9:
        msg = f"compression should be in [-1,9], got {level}"
        raise errors.InvalidArgumentError(msg)
    image = c.with_rank(0, 3)
    if image.dims is not None:
        if any(d == 0 for d in image.dims):
            msg = f"Invalid image provided: the image has no pixels (shape {image.compact()})"
            raise errors.InvalidArgumentError(msg)
        channels = image.dims[2]
        if channels is not None and not 1 <= channels <= 4:
            msg = f"image must have 1, 2, 3, or 4 channels, got {channels}"
            raise errors.InvalidArgumentError(msg)
    return [c.scalar()]


EncodePng = declare(
    "EncodePng",
    inputs=["image: T  # 3-D [height, width, channels] with 1 (gray), 2 (gray + alpha), "
            "3 (RGB) or 4 (RGBA) channels"],
    outputs=["contents: string  # 0-D: the PNG"],
    attrs=["compression: int = -1  # zlib level 0-9, or -1 for zlib's default",
           "T: {uint8, uint16} = uint8"],
    shape_fn=_encode_png_shape,
    doc="PNG-encode an image (8-bit samples for uint8, 16-bit for uint16; no filtering, no "
        "interlacing). Needs no Pillow.")
not_differentiable("EncodePng")


# ---- resizing ----------------------------------------------------------------------------
def _check_centers(c):
    if c.attr("half_pixel_centers") and c.attr("align_corners"):
        msg = "If half_pixel_centers is True, align_corners must be False."
        raise errors.InvalidArgumentError(msg)


def _size_value(c, i, rule):
    """The (height, width) in the 1-D int32 [2] input i when known, else (None, None)."""
    size = c.with_rank(i, 1)
    c.merge_dim(size.dims[0], 2, what=f"the length of '{c.input_name(i)}' (height, width)")
    value = c.input_tensor(i)
    if value is None:
        return None, None
    h, w = (int(v) for v in np.asarray(value).reshape(-1))
    if h <= 0 or w <= 0:
        raise errors.InvalidArgumentError(f"{rule}, got [{h}, {w}]")
    return h, w


def _resize_shape(c, max_side=None):
    _check_centers(c)
    images = c.with_rank(0, 4)
    batch, in_h, in_w, channels = images.dims
    if channels == 0:
        raise errors.InvalidArgumentError("image must have at least one channel")
    if in_h == 0 or in_w == 0:
        msg = (f"input image must be of non-zero size, but has height {in_h} and width "
               f"{in_w}")
        raise errors.InvalidArgumentError(msg)
    if max_side is not None and any(d is not None and d >= max_side for d in (in_h, in_w)):
        msg = (f"nearest neighbor requires max height & width of 2^24, but the image is "
               f"{in_h}x{in_w}")
        raise errors.InvalidArgumentError(msg)
    h, w = _size_value(c, 1, "output dimensions must be positive")
    return [c.make_shape((batch, h, w, channels))]


_RESIZE_ATTRS = [
    "align_corners: bool = false  # scale by (in - 1) / (out - 1): corners align exactly",
    "half_pixel_centers: bool = false  # pixel centers at +0.5 (can't be set with "
    "align_corners)"]

ResizeBilinear = declare(
    "ResizeBilinear",
    inputs=["images: T  # 4-D [batch, height, width, channels]",
            "size: int32  # 1-D [new_height, new_width], both positive"],
    outputs=["resized_images: float  # 4-D [batch, new_height, new_width, channels]"],
    attrs=[f"T: {_RESIZE_TYPES}", *_RESIZE_ATTRS],
    shape_fn=_resize_shape,
    doc="Resize `images` to `size` by bilinear interpolation, in float32 whatever the input "
        "dtype (TF's CPU kernel, arithmetic and coordinate rules included).")


def _resize_nn_shape(c):
    return _resize_shape(c, _NN_MAX_SIDE)


ResizeNearestNeighbor = declare(
    "ResizeNearestNeighbor",
    inputs=["images: T  # 4-D [batch, height, width, channels]",
            "size: int32  # 1-D [new_height, new_width], both positive"],
    outputs=["resized_images: T  # 4-D [batch, new_height, new_width, channels]"],
    attrs=[f"T: {_RESIZE_TYPES}", *_RESIZE_ATTRS],
    shape_fn=_resize_nn_shape,
    doc="Resize `images` to `size` by nearest-neighbor interpolation (the input's dtype is "
        "kept): each output pixel copies the input pixel its coordinate floors (rounds, with "
        "align_corners) to.")


def _resize_bilinear_grad_shape(c):
    _check_centers(c)
    grads = c.with_rank(0, 4)
    original = c.with_rank(1, 4)
    if any(d == 0 for d in grads.dims[1:3]):
        msg = f"resized dimensions must be positive, but grads has shape {grads.compact()}"
        raise errors.InvalidArgumentError(msg)
    if any(d == 0 for d in original.dims[1:3]):
        msg = (f"original dimensions must be positive, but original_image has shape "
               f"{original.compact()}")
        raise errors.InvalidArgumentError(msg)
    batch = c.merge_dim(grads.dims[0], original.dims[0],
                        what="the batch of grads vs. that of original_image")
    channels = c.merge_dim(grads.dims[3], original.dims[3],
                           what="the channels of grads vs. those of original_image")
    return [c.make_shape((batch, original.dims[1], original.dims[2], channels))]


ResizeBilinearGrad = declare(
    "ResizeBilinearGrad",
    inputs=["grads: float  # 4-D [batch, height, width, channels]: d(loss)/d(resized)",
            "original_image: T  # 4-D [batch, orig_height, orig_width, channels]: only its "
            "shape is used"],
    outputs=["output: T  # 4-D [batch, orig_height, orig_width, channels]"],
    attrs=["T: {float, bfloat16, half, double}", *_RESIZE_ATTRS],
    shape_fn=_resize_bilinear_grad_shape,
    doc="The gradient of ResizeBilinear: each resized pixel's gradient is spread over the four "
        "input pixels it interpolated, with the same weights (accumulated in float32 for half "
        "and bfloat16).")


def _resize_nn_grad_shape(c):
    grads = c.with_rank(0, 4)
    h, w = _size_value(c, 1, "shape_t's elements must be positive")
    return [c.make_shape((grads.dims[0], h, w, grads.dims[3]))]


ResizeNearestNeighborGrad = declare(
    "ResizeNearestNeighborGrad",
    inputs=["grads: T  # 4-D [batch, height, width, channels]: d(loss)/d(resized)",
            "size: int32  # 1-D [orig_height, orig_width] of the original image"],
    outputs=["output: T  # 4-D [batch, orig_height, orig_width, channels]"],
    attrs=["T: {uint8, int8, int32, half, float, double, bfloat16}", *_RESIZE_ATTRS],
    shape_fn=_resize_nn_grad_shape,
    doc="The gradient of ResizeNearestNeighbor: each resized pixel's gradient is added to the "
        "input pixel it copied.")


# ---- gradients ---------------------------------------------------------------------------
_FLOAT_IMAGES = ("float16", "bfloat16", "float32", "float64")


def _spatial_size(scope, t):
    """[height, width] of 4-D ``t`` as an int32 Output (a constant when statically known)."""
    import ops  # noqa: PLC0415  (ops modules use each other's wrappers lazily)

    dims = t.shape.dims
    if dims is not None and dims[1] is not None and dims[2] is not None:
        return ops.Const(scope, np.array(dims[1:3], dtype=np.int32))
    return ops.Slice(scope, ops.Shape(scope, t), np.array([1], np.int32),
                     np.array([2], np.int32))


def _resize_attrs(op) -> dict:
    return {"align_corners": op.attrs["align_corners"],
            "half_pixel_centers": op.attrs["half_pixel_centers"]}


@gradient("ResizeBilinear")
def _resize_bilinear_grad(scope, op, grads):
    if op.inputs[0].dtype.name not in _FLOAT_IMAGES:
        return [None, None]
    return [ResizeBilinearGrad(scope, grads[0], op.inputs[0], **_resize_attrs(op)), None]


@gradient("ResizeBilinearGrad")
def _resize_bilinear_grad_grad(scope, op, grads):
    """ResizeBilinearGrad is linear in grads; its adjoint is ResizeBilinear itself."""
    size = _spatial_size(scope, op.inputs[0])
    return [ResizeBilinear(scope, grads[0], size, **_resize_attrs(op)), None]


@gradient("ResizeNearestNeighbor")
def _resize_nn_grad(scope, op, grads):
    image = op.inputs[0]
    if image.dtype.name not in _FLOAT_IMAGES:
        return [None, None]
    size = _spatial_size(scope, image)
    return [ResizeNearestNeighborGrad(scope, grads[0], size, **_resize_attrs(op)), None]


@gradient("ResizeNearestNeighborGrad")
def _resize_nn_grad_grad(scope, op, grads):
    """ResizeNearestNeighborGrad is linear in grads; its adjoint is the forward resize."""
    if op.inputs[0].dtype.name not in _FLOAT_IMAGES:
        return [None, None]
    size = _spatial_size(scope, op.inputs[0])
    return [ResizeNearestNeighbor(scope, grads[0], size, **_resize_attrs(op)), None]
