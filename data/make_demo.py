"""Regenerate ``data/demo/*.png``: eight public-domain / CC0 colour images from scikit-image.

Each image is resized so that its shorter side is 256 (PIL Lanczos, i.e. antialiased) and
centre-cropped to 256×256, except the two ``*_detail`` images, which are native-resolution
256×256 crops (a second scale for the same sources). Sources and licences: ``data/README.md``.

Usage: ``python data/make_demo.py`` (needs scikit-image; not a runtime dependency).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

SIZE = 256
OUT = Path(__file__).resolve().parent / "demo"

#: name → (loader, native crop (top, left) or None for resize + centre crop)
SOURCES = {
    "astronaut": (data.astronaut, None),
    "chelsea": (data.chelsea, None),
    "coffee": (data.coffee, None),
    "rocket": (data.rocket, None),
    "hubble_deep_field": (data.hubble_deep_field, None),
    "retina": (data.retina, None),
    "astronaut_detail": (data.astronaut, (10, 130)),  # the face at native resolution
    "hubble_deep_field_detail": (data.hubble_deep_field, (300, 380)),
}


def resize_center_crop(arr: np.ndarray, size: int = SIZE) -> Image.Image:
    img = Image.fromarray(arr).convert("RGB")
    w, h = img.size
    f = size / min(w, h)
    img = img.resize((max(size, round(w * f)), max(size, round(h * f))), Image.Resampling.LANCZOS)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (load, crop) in SOURCES.items():
        arr = load()
        if crop is None:
            img = resize_center_crop(arr)
        else:
            top, left = crop
            img = Image.fromarray(arr[top : top + SIZE, left : left + SIZE]).convert("RGB")
        assert img.size == (SIZE, SIZE), (name, img.size)
        img.save(OUT / f"{name}.png", optimize=True)
        print(f"wrote {OUT / f'{name}.png'}")


if __name__ == "__main__":
    main()
