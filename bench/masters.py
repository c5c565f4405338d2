"""Writes the benchmark's PNG masters from real photographs that ship inside PyPI packages.

Provenance (all in the scikit-image wheel, skimage.data; see docs/performance.md):
- astronaut: Eileen Collins, NASA (public domain), 512x512.
- coffee: a cup of coffee, Rachel Michetti (CC0), 400x600.
- retina: human retina, Häggström, Mikael (CC0), 1411x1411.
- stereo_motorcycle: Middlebury 2014 stereo dataset (Scharstein et al.), 500x741, with its
  disparity map, which gives the RGBA master a real (depth-derived) alpha mask.

Two more carry ICC profiles (tests/fixtures/icc/, written from published primaries): the
astronaut's pixels tagged sRGB (as Photoshop, Pillow and phones tag PNGs), and tagged
Display P3 (the same numbers meant as P3 colours: every side converts them to sRGB).

The photos are centre-cropped to a square and resampled with Pillow's Lanczos filter to
the master size. Every master except retina's downscale is an upscale of a smaller photo,
so it holds less fine detail than a camera file of that size; both sides see the same
pixels, and the ratios are what the benchmark reports.

Usage: python masters.py OUT_DIR  (idempotent: existing files are kept)
"""

import os
import sys

import numpy as np
from PIL import Image, ImageFilter
from skimage import data


def square(a: np.ndarray, centre_x: float = 0.5) -> np.ndarray:
    h, w = a.shape[:2]
    side = min(h, w)
    x0 = int(round((w - side) * centre_x))
    y0 = (h - side) // 2
    return a[y0 : y0 + side, x0 : x0 + side]


def to_size(a: np.ndarray, size: int) -> Image.Image:
    img = Image.fromarray(a)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def motorcycle_rgba(size: int) -> Image.Image:
    left, _right, disparity = data.stereo_motorcycle()
    # Near pixels (large disparity) are the motorcycle: opaque; far ones transparent.
    # Unknown disparity (inf) counts as background. A small blur feathers the edge the way
    # a matting tool's cut-out does.
    d = np.where(np.isfinite(disparity), disparity, 0.0)
    mask = np.clip((d - 30.0) / 10.0, 0.0, 1.0)
    alpha = Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.5))
    rgba = np.dstack([left, np.asarray(alpha)])
    return to_size(square(rgba, centre_x=0.45), size)


ICC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "icc")


def tagged(make, profile: str):
    def tag() -> Image.Image:
        img = make()
        with open(os.path.join(ICC, profile), "rb") as f:
            img.info["icc_profile"] = f.read()
        return img
    return tag


MASTERS = {
    "astronaut-1024.png": lambda: to_size(square(data.astronaut()), 1024),
    "coffee-1024.png": lambda: to_size(square(data.coffee()), 1024),
    "retina-2048.png": lambda: to_size(square(data.retina()), 2048),
    "motorcycle-rgba-1024.png": lambda: motorcycle_rgba(1024),
}
MASTERS["astronaut-srgb-1024.png"] = tagged(MASTERS["astronaut-1024.png"], "srgb.icc")
MASTERS["astronaut-p3-1024.png"] = tagged(MASTERS["astronaut-1024.png"], "display-p3.icc")


def main() -> None:
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, make in MASTERS.items():
        path = os.path.join(out, name)
        if os.path.exists(path):
            continue
        img = make()
        tmp = path + ".tmp"
        # compress_level 6 is the common default of libpng/zlib writers (and sharp's).
        img.save(tmp, format="PNG", compress_level=6, icc_profile=img.info.get("icc_profile"))
        os.replace(tmp, path)
        print(f"master {name}: {img.size[0]}x{img.size[1]} {img.mode} {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
