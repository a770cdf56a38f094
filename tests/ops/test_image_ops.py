"""Image ops by hand: resize values known from TF's documentation, the bilinear gradients in
float32, PNG round trips through EncodePng / DecodePng (and Pillow, both ways), JPEG and GIF
contents through Pillow, behaviour without Pillow, and the label_image example."""

from __future__ import annotations

import importlib.util
import io
import pathlib
import sys

import numpy as np
import pytest

import ops
from opgraph import DT_FLOAT, DT_STRING, DT_UINT8, DT_UINT16, Scope, errors
from opgraph.testing import compute_gradient_error
from runtime import ClientSession
from tests.op_db.image import jpeg_bytes, png_bytes, string_scalar

F32 = np.float32
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _resize(op, image, size, **attrs):
    root = Scope.NewRootScope()
    out = getattr(ops, op)(root, ops.Const(root, image), np.array(size, np.int32), **attrs)
    assert root.ok(), root.status()
    return ClientSession(root).Run(out)


def _decode(op, data, **attrs):
    root = Scope.NewRootScope()
    contents = ops.Placeholder(root, DT_STRING, shape=[])
    out = getattr(ops, op)(root, contents, **attrs)
    return ClientSession(root).Run({contents: string_scalar(data)}, out)


# ---- resize values ---------------------------------------------------------------------------
_2X2 = np.array([[1, 2], [3, 4]], F32).reshape(1, 2, 2, 1)


def test_bilinear_half_pixel_centers_matches_the_common_convention():
    want = [[1, 1.25, 1.75, 2], [1.5, 1.75, 2.25, 2.5], [2.5, 2.75, 3.25, 3.5],
            [3, 3.25, 3.75, 4]]
    got = _resize("ResizeBilinear", _2X2, [4, 4], half_pixel_centers=True)
    np.testing.assert_allclose(got[0, :, :, 0], want)


def test_bilinear_align_corners_and_legacy():
    got = _resize("ResizeBilinear", _2X2, [3, 3], align_corners=True)
    np.testing.assert_allclose(got[0, :, :, 0], [[1, 1.5, 2], [2, 2.5, 3], [3, 3.5, 4]])
    got = _resize("ResizeBilinear", _2X2, [4, 4])          # x * 0.5: the last row repeats
    np.testing.assert_allclose(got[0, :, :, 0], [[1, 1.5, 2, 2], [2, 2.5, 3, 3],
                                                 [3, 3.5, 4, 4], [3, 3.5, 4, 4]])


def test_bilinear_output_is_float32_and_nearest_keeps_the_dtype():
    img = np.arange(12, dtype=np.uint8).reshape(1, 3, 4, 1)
    assert _resize("ResizeBilinear", img, [2, 2]).dtype == np.float32
    got = _resize("ResizeNearestNeighbor", img, [2, 2])
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got[0, :, :, 0], [[0, 2], [4, 6]])


def test_nearest_neighbor_coordinate_rules():
    row = np.arange(3, dtype=F32).reshape(1, 1, 3, 1)

    def pick(size, **kw):
        return _resize("ResizeNearestNeighbor", row, [1, size], **kw)[0, 0, :, 0]

    np.testing.assert_array_equal(pick(2), [0, 1])                       # floor(x * 1.5)
    np.testing.assert_array_equal(pick(2, align_corners=True), [0, 2])   # round(x * 2)
    np.testing.assert_array_equal(pick(2, half_pixel_centers=True), [0, 2])  # (x + .5) * 1.5
    np.testing.assert_array_equal(pick(6, half_pixel_centers=True), [0, 0, 1, 1, 2, 2])


# ---- gradients in float32 --------------------------------------------------------------------
@pytest.mark.parametrize("attrs", [{}, {"align_corners": True}, {"half_pixel_centers": True}])
def test_resize_bilinear_gradient_and_its_gradient(attrs):
    """Both ops are linear, so central differences with a large delta are exact up to float32
    rounding: the checker's usual float64 / 1e-6 setting cannot see through float32."""
    rng = np.random.default_rng(0)
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_FLOAT, shape=[2, 3, 4, 2])
    y = ops.ResizeBilinear(root, x, np.array([5, 3], np.int32), **attrs)
    err = compute_gradient_error(root, [x], [[2, 3, 4, 2]], [y], [[2, 5, 3, 2]],
                                 x_init_values=[rng.uniform(-1, 1, (2, 3, 4, 2))], delta=0.5)
    assert err < 1e-5
    root = Scope.NewRootScope()
    g = ops.Placeholder(root, DT_FLOAT, shape=[1, 5, 3, 1])
    z = ops.ResizeBilinearGrad(root, g, ops.Const(root, np.zeros((1, 3, 4, 1), F32)), **attrs)
    err = compute_gradient_error(root, [g], [[1, 5, 3, 1]], [z], [[1, 3, 4, 1]],
                                 x_init_values=[rng.uniform(-1, 1, (1, 5, 3, 1))], delta=0.5)
    assert err < 1e-5


def test_integer_images_get_no_gradient():
    from opgraph.gradients import AddSymbolicGradients  # noqa: PLC0415

    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_UINT8, shape=[1, 2, 2, 1])
    y = ops.ResizeBilinear(root, x, np.array([3, 3], np.int32))
    assert AddSymbolicGradients(root, [y], [x]) == [None]


# ---- PNG ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_encode_then_decode_png_round_trips(channels, dtype):
    rng = np.random.default_rng(channels)
    image = rng.integers(0, np.iinfo(dtype).max + 1, (5, 7, channels)).astype(dtype)
    root = Scope.NewRootScope()
    x = ops.Placeholder(root, DT_UINT8 if dtype == np.uint8 else DT_UINT16, shape=[None] * 3)
    png = ops.EncodePng(root, x, compression=9)
    back = ops.DecodePng(root, png, dtype=DT_UINT8 if dtype == np.uint8 else DT_UINT16)
    assert back.output.shape.dims == (None, None, None)
    encoded, decoded = ClientSession(root).Run({x: image}, [png, back])
    assert encoded.item().startswith(b"\x89PNG\r\n\x1a\n")
    np.testing.assert_array_equal(decoded, image)


def test_decoded_8_bit_pngs_widen_to_16_bits_by_257():
    data = png_bytes(np.array([[[0], [1], [255]]]), 0, 8)
    np.testing.assert_array_equal(_decode("DecodePng", data, dtype=DT_UINT16)[0, :, 0],
                                  [0, 257, 65535])


def test_png_decoding_does_not_need_pillow(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    data = png_bytes(np.arange(6).reshape(2, 3, 1), 0, 8, filters=(4, 3))
    np.testing.assert_array_equal(_decode("DecodePng", data)[..., 0], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(_decode("DecodeJpeg", data)[..., 0], [[0, 1, 2], [3, 4, 5]])


def test_jpeg_without_pillow_is_unimplemented_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    data = jpeg_bytes(np.full((1, 1, 1), 100), 8, 8)
    with pytest.raises(errors.UnimplementedError, match="needs Pillow.*'images' extra"):
        _decode("DecodeJpeg", data)


def test_pillow_reads_what_encode_png_writes_and_decode_png_reads_pillow():
    image_module = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:40, 0:50]
    smooth = np.stack([(x * 5) % 256, (y * 6) % 256, (x + y) % 256], -1).astype(np.uint8)
    root = Scope.NewRootScope()
    png = ClientSession(root).Run(ops.EncodePng(root, ops.Const(root, smooth)))
    np.testing.assert_array_equal(np.asarray(image_module.open(io.BytesIO(png.item()))), smooth)
    for mode, array in [("RGB", smooth), ("L", smooth[..., 0]),
                        ("RGBA", rng.integers(0, 256, (9, 8, 4)).astype(np.uint8))]:
        buf = io.BytesIO()
        image_module.fromarray(array, mode).save(buf, "PNG", optimize=True)
        got = _decode("DecodePng", buf.getvalue())
        np.testing.assert_array_equal(got.reshape(array.shape), array)
    palette = image_module.fromarray(smooth).convert("P", palette=image_module.ADAPTIVE,
                                                     colors=16)
    buf = io.BytesIO()
    palette.save(buf, "PNG", transparency=3)
    got = _decode("DecodePng", buf.getvalue())
    want = np.asarray(image_module.open(io.BytesIO(buf.getvalue())).convert("RGBA"))
    assert (want[..., 3] == 0).any()
    np.testing.assert_array_equal(got, want)


# ---- JPEG and GIF through Pillow ---------------------------------------------------------------
def test_jpeg_decodes_like_pillow_with_every_channel_choice():
    image_module = pytest.importorskip("PIL.Image")
    y, x = np.mgrid[0:37, 0:45]
    photo = np.stack([(x * 5) % 256, (y * 7) % 256, (x * y) % 256], -1).astype(np.uint8)
    buf = io.BytesIO()
    image_module.fromarray(photo).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    reference = np.asarray(image_module.open(io.BytesIO(data)))
    np.testing.assert_array_equal(_decode("DecodeJpeg", data), reference)
    gray = _decode("DecodeJpeg", data, channels=1)
    assert gray.shape == (37, 45, 1)
    assert np.abs(gray[..., 0].astype(int) - reference.mean(axis=-1)).mean() < 20
    np.testing.assert_array_equal(_decode("DecodePng", data, dtype=DT_UINT16),
                                  reference.astype(np.uint16) * 256)
    assert _decode("DecodeJpeg", data, ratio=4).shape == (10, 12, 3)


def test_jpeg_attrs_pillow_cannot_honour_are_unimplemented():
    pytest.importorskip("PIL")
    data = jpeg_bytes(np.full((1, 1, 1), 100), 8, 8)
    with pytest.raises(errors.UnimplementedError, match="fancy_upscaling=false"):
        _decode("DecodeJpeg", data, fancy_upscaling=False)
    with pytest.raises(errors.UnimplementedError, match="try_recover_truncated"):
        _decode("DecodeJpeg", data, try_recover_truncated=True)


def test_single_frame_gif_decodes_to_rgb_with_transparent_pixels_black():
    image_module = pytest.importorskip("PIL.Image")
    index = np.array([[0, 1], [2, 1]], np.uint8)
    im = image_module.fromarray(index, "P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    buf = io.BytesIO()
    im.save(buf, "GIF", transparency=2)
    got = _decode("DecodeJpeg", buf.getvalue())
    np.testing.assert_array_equal(got, [[[255, 0, 0], [0, 255, 0]], [[0, 0, 0], [0, 255, 0]]])
    frames = [image_module.fromarray(index, "P"), image_module.fromarray(1 - index % 2, "P")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(errors.InvalidArgumentError, match="Got 2 frames, but animated gifs"):
        _decode("DecodePng", buf.getvalue())


# ---- the label_image example -------------------------------------------------------------------
def _load_example():
    spec = importlib.util.spec_from_file_location("label_image",
                                                  ROOT / "examples" / "label_image.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_label_image_preprocessing(tmp_path, capsys):
    results = _load_example().main(["--input_width", "32", "--input_height", "24",
                                    "--workdir", str(tmp_path)])
    png = results["synthetic.png"]
    assert png.shape == (1, 24, 32, 3) and png.dtype == np.float32
    assert 0.0 <= png.min() and png.max() <= 1.0
    out = capsys.readouterr().out
    assert "synthetic.png: shape (1, 24, 32, 3)" in out
    if importlib.util.find_spec("PIL") is not None:
        assert np.abs(results["synthetic.jpg"] - png).mean() < 0.02   # lossy, but close
    else:
        assert "skipping the JPEG input" in out


def test_label_image_without_pillow_skips_the_jpeg_with_a_message(tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    results = _load_example().main(["--input_width", "8", "--input_height", "8",
                                    "--workdir", str(tmp_path)])
    assert list(results) == ["synthetic.png"]
    assert "Pillow is not installed: skipping the JPEG input" in capsys.readouterr().out
