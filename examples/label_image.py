"""TF's label_image preprocessing graph (tensorflow/examples/label_image/main.cc,
ReadTensorFromImageFile), ported to opgraph.

    python examples/label_image.py [--image FILE] [--input_width 299] [--input_height 299]
                                   [--input_mean 0] [--input_std 255]

The file is read in Python and fed to a string Placeholder; the graph decodes it (DecodePng
for .png, else DecodeJpeg, three channels), casts to float, adds the batch dim, resizes
bilinearly and normalises: (image - mean) / std. Without --image it first writes a synthetic
picture itself: a PNG through EncodePng (no extra packages needed) and, when Pillow is
installed, the same picture as a JPEG; without Pillow the JPEG input is skipped with a
message (``pip install 'opgraph[images]'`` installs it).
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import ops  # noqa: E402
from opgraph import DT_FLOAT, DT_STRING, Scope  # noqa: E402
from runtime import ClientSession  # noqa: E402


def read_tensor_from_image_file(file_name: str, input_height: int, input_width: int,
                                input_mean: float, input_std: float) -> np.ndarray:
    """The [1, height, width, 3] float32 tensor label_image feeds its classifier."""
    root = Scope.NewRootScope()
    contents = np.empty((), dtype=object)
    contents[()] = pathlib.Path(file_name).read_bytes()      # TF: ReadEntireFile
    file_reader = ops.Placeholder(root.WithOpName("input"), DT_STRING)
    if file_name.endswith(".png"):
        image_reader = ops.DecodePng(root.WithOpName("png_reader"), file_reader, channels=3)
    else:
        image_reader = ops.DecodeJpeg(root.WithOpName("jpeg_reader"), file_reader, channels=3)
    float_caster = ops.Cast(root.WithOpName("float_caster"), image_reader, DT_FLOAT)
    dims_expander = ops.ExpandDims(root, float_caster, 0)
    size = ops.Const(root.WithOpName("size"), np.array([input_height, input_width], np.int32))
    resized = ops.ResizeBilinear(root, dims_expander, size)
    normalized = ops.Div(root.WithOpName("normalized"),
                         ops.Sub(root, resized, np.float32(input_mean)), np.float32(input_std))
    root.status().raise_if_error()
    return ClientSession(root).Run({file_reader: contents}, normalized)


def synthetic_picture(height: int = 48, width: int = 64) -> np.ndarray:
    """A uint8 RGB picture: colour gradients with a bright disc."""
    y, x = np.mgrid[0:height, 0:width]
    picture = np.stack([255 * x / (width - 1), 255 * y / (height - 1),
                        np.full((height, width), 96.0)], axis=-1)
    disc = (y - height / 2) ** 2 + (x - width / 3) ** 2 < (height / 4) ** 2
    picture[disc] = (250, 240, 60)
    return picture.round().astype(np.uint8)


def write_synthetic_images(workdir: pathlib.Path) -> list[str]:
    """synthetic.png (EncodePng) and, with Pillow, synthetic.jpg; the files' paths."""
    picture = synthetic_picture()
    root = Scope.NewRootScope()
    png = ClientSession(root).Run(ops.EncodePng(root, ops.Const(root, picture)))
    paths = [workdir / "synthetic.png"]
    paths[0].write_bytes(png.item())
    try:
        from PIL import Image  # noqa: PLC0415  (optional: the 'images' extra)
    except ImportError:
        print("Pillow is not installed: skipping the JPEG input "
              "(pip install 'opgraph[images]' to decode JPEGs)")
    else:
        paths.append(workdir / "synthetic.jpg")
        Image.fromarray(picture).save(paths[1], "JPEG", quality=95)
    return [str(p) for p in paths]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", help="an image file (default: synthetic pictures)")
    parser.add_argument("--input_width", type=int, default=299)
    parser.add_argument("--input_height", type=int, default=299)
    parser.add_argument("--input_mean", type=float, default=0.0)
    parser.add_argument("--input_std", type=float, default=255.0)
    parser.add_argument("--workdir", help="where synthetic pictures go (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = pathlib.Path(args.workdir or tmp)
        files = [args.image] if args.image else write_synthetic_images(workdir)
        if args.image and not args.image.endswith(".png") and \
                importlib.util.find_spec("PIL") is None:
            print("Pillow is not installed: skipping the JPEG input "
                  "(pip install 'opgraph[images]' to decode JPEGs)")
            return {}
        results = {}
        for name in files:
            tensor = read_tensor_from_image_file(name, args.input_height, args.input_width,
                                                 args.input_mean, args.input_std)
            results[pathlib.Path(name).name] = tensor
            print(f"{pathlib.Path(name).name}: shape {tensor.shape}, dtype {tensor.dtype}, "
                  f"min {tensor.min():.4f}, max {tensor.max():.4f}, mean {tensor.mean():.4f}, "
                  f"std {tensor.std():.4f}")
    return results


if __name__ == "__main__":
    main()
