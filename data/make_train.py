"""Regenerate ``data/train/*.png``: the training images of the shipped demo prior and ResShift.

Public-domain / CC0 photographs bundled with Python packages, none of them a source of
``data/demo/`` (sources and licences: ``data/README.md``):

* scikit-image (installed): ``camera``, ``brick``, ``grass``, ``gravel`` — grey, 512×512, CC0;
* SciPy 1.9.3's ``scipy/misc/face.dat`` (colour raccoon, 1024×768, bz2-compressed raw RGB) and
  PyWavelets' ``pywt/data/ascent.npz`` (grey, 512×512), read straight out of their wheels
  (``face.dat`` left SciPy in 1.10; neither wheel needs to be installed).

Each source is written at two scales: shorter side 256 — the scale of the demo images, which are
whole pictures resized to 256 — and shorter side 512 (native for the 512-px images), so that
random crops see both. A grey source gets one mild colour tint per file (RGB gains drawn from a
fixed seed): the only colour photograph is ``face``, and a prior that has only ever seen
R = G = B would treat any chroma as noise.

Usage (once, offline afterwards)::

    pip download --no-deps --only-binary=:all: -d /tmp/wheels scipy==1.9.3 PyWavelets==1.9.0 \
        --python-version 3.11 --platform manylinux2014_x86_64
    python data/make_train.py /tmp/wheels

Needs scikit-image and Pillow (scikit-image is not a runtime dependency).
"""

from __future__ import annotations

import bz2
import io
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent / "train"
SCALES = (256, 512)  # shorter side of each written file
TINT_SEED = 0


def _wheel(folder: Path, prefix: str) -> zipfile.ZipFile:
    found = sorted(folder.glob(f"{prefix}-*.whl"))
    if not found:
        sys.exit(f"error: no {prefix}-*.whl in {folder}; see the usage in data/make_train.py")
    return zipfile.ZipFile(found[-1])


def face(wheels: Path) -> np.ndarray:
    """SciPy ≤ 1.9 ``misc.face()``: bz2-compressed 768×1024×3 uint8."""
    raw = bz2.decompress(_wheel(wheels, "scipy").read("scipy/misc/face.dat"))
    return np.frombuffer(raw, dtype=np.uint8).reshape(768, 1024, 3)


def ascent(wheels: Path) -> np.ndarray:
    """PyWavelets ``data.ascent()``: 512×512 uint8 in an npz (no pickle)."""
    with np.load(io.BytesIO(_wheel(wheels, "pywavelets").read("pywt/data/ascent.npz"))) as d:
        return d["data"]


def skimage_source(name: str) -> Callable[[Path], np.ndarray]:
    def load(_: Path) -> np.ndarray:
        from skimage import data

        return getattr(data, name)()

    return load


#: file stem → loader (all grey except face)
SOURCES: dict[str, Callable[[Path], np.ndarray]] = {
    "face": face,
    "ascent": ascent,
    "camera": skimage_source("camera"),
    "brick": skimage_source("brick"),
    "grass": skimage_source("grass"),
    "gravel": skimage_source("gravel"),
}


def resize_shorter(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    f = size / min(w, h)
    if f == 1:
        return img
    return img.resize((round(w * f), round(h * f)), Image.Resampling.LANCZOS)


def tint(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Grey → RGB with per-channel gains in [0.8, 1.0] (the largest gain is 1, so the brightest
    channel keeps the original levels and nothing clips)."""
    gains = rng.uniform(0.8, 1.0, size=3)
    gains /= gains.max()
    return np.clip(np.rint(grey[..., None].astype(np.float64) * gains), 0, 255).astype(np.uint8)


def main(wheels: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(TINT_SEED)
    for name, load in SOURCES.items():
        arr = load(wheels)
        for size in SCALES:
            img = resize_shorter(Image.fromarray(arr), size)
            pixels = np.asarray(img)
            if pixels.ndim == 2:
                pixels = tint(pixels, rng)
            path = OUT / f"{name}_{size}.png"
            Image.fromarray(pixels, "RGB").save(path, optimize=True)
            print(f"wrote {path} {pixels.shape[1]}×{pixels.shape[0]}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python data/make_train.py WHEEL_FOLDER (see the module docstring)")
    main(Path(sys.argv[1]))
