"""Inpainting masks ``[1, H, W]`` (1 = known pixel, 0 = missing), drawn from a generator.

- :func:`box_mask` — DPS ``util/img_utils.py::random_sq_bbox``: a ``box_size`` square whose top-left
  corner is uniform in ``[margin, H − margin − box_size)`` (NumPy ``randint`` bounds).
- :func:`random_mask` — DPS ``mask_generator`` "random": a drop rate ``p ~ U(drop_range)``, then
  exactly ``int(H·W·p)`` pixels dropped in every channel.
- :func:`freeform_mask` — our own brush strokes: polylines with random turns, drawn with a round
  brush of random width.
- :func:`mixed_mask` — ResShift's inpainting training masks: a box, irregular strokes or an
  outpainting band.
- :func:`load_mask_file` — a user mask (PNG/JPEG/… image, ``.npy`` or ``.pt``), thresholded at ½.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor


def _randint(lo: int, hi: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(lo, hi, (1,), generator=generator).item())


def _uniform(lo: float, hi: float, generator: torch.Generator | None) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=generator, dtype=torch.float64).item())


def box_mask(
    height: int, width: int, box_size: int, margin: int, generator: torch.Generator | None = None
) -> Tensor:
    """A ``box_size × box_size`` hole at a random position at least ``margin`` from the border."""
    if box_size + 2 * margin >= min(height, width):
        raise ValueError(
            f"box_size={box_size} with margin={margin} does not fit in a {height}×{width} image "
            "(need box_size + 2·margin < image size); reduce box_size or margin"
        )
    top = _randint(margin, height - margin - box_size, generator)
    left = _randint(margin, width - margin - box_size, generator)
    mask = torch.ones(1, height, width)
    mask[:, top : top + box_size, left : left + box_size] = 0
    return mask


def random_mask(
    height: int,
    width: int,
    drop_range: tuple[float, float] = (0.3, 0.7),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Drop ``int(H·W·p)`` uniformly chosen pixels, ``p ~ U(drop_range)``, shared by all channels."""
    lo, hi = (float(v) for v in drop_range)
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"drop_range must satisfy 0 <= low <= high <= 1, got {drop_range}")
    p = _uniform(lo, hi, generator)
    n = height * width
    dropped = torch.randperm(n, generator=generator)[: int(n * p)]
    mask = torch.ones(n)
    mask[dropped] = 0
    return mask.view(1, height, width)


def freeform_mask(
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    max_strokes: int = 8,
    max_vertices: int = 8,
    width_range: tuple[float, float] = (0.05, 0.15),
    length_range: tuple[float, float] = (0.1, 0.3),
) -> Tensor:
    """Free-form holes: ``1…max_strokes`` brush strokes.

    Each stroke starts at a uniform point and has ``2…max_vertices`` vertices; every segment turns
    by ``U(−π/2, π/2)`` from the previous heading (the first heading is uniform), has length
    ``U(length_range)·min(H, W)`` and is clipped to the image. The stroke is painted with a round
    brush of diameter ``U(width_range)·min(H, W)``: a pixel is a hole when its distance to a
    segment is at most the brush radius. With the defaults, 20 masks of 256² covered 2–52 % of
    the image (median ≈ 30 %).
    """
    side = min(height, width)
    yy, xx = torch.meshgrid(
        torch.arange(height, dtype=torch.float64),
        torch.arange(width, dtype=torch.float64),
        indexing="ij",
    )
    hole = torch.zeros(height, width, dtype=torch.bool)
    for _ in range(_randint(1, max_strokes + 1, generator)):
        radius = _uniform(*width_range, generator) * side / 2
        x, y = _uniform(0, width - 1, generator), _uniform(0, height - 1, generator)
        heading = _uniform(0, 2 * math.pi, generator)
        for _ in range(_randint(1, max_vertices, generator)):
            heading += _uniform(-math.pi / 2, math.pi / 2, generator)
            length = _uniform(*length_range, generator) * side
            nx = min(max(x + length * math.cos(heading), 0.0), width - 1.0)
            ny = min(max(y + length * math.sin(heading), 0.0), height - 1.0)
            dx, dy = nx - x, ny - y
            seg2 = max(dx * dx + dy * dy, 1e-12)
            t = (((xx - x) * dx + (yy - y) * dy) / seg2).clamp(0, 1)
            dist2 = (xx - (x + t * dx)) ** 2 + (yy - (y + t * dy)) ** 2
            hole |= dist2 <= radius * radius
            x, y = nx, ny
    return (~hole).float()[None]


def mixed_mask(
    height: int, width: int, generator: torch.Generator | None = None, kind: str = "mixed"
) -> Tensor:
    """ResShift's inpainting training masks (after zsyOAOA/ResShift ``MixedMaskGenerator``).

    ``box``: one rectangle of 10–50 % of each side; ``irregular``: 1–5 thick random brush
    strokes; ``outpaint``: keep a random central/side band of 40–80 %; ``mixed``: one of the
    three with probabilities (0.4, 0.4, 0.2).
    """
    g = generator
    h, w = height, width
    if kind == "mixed":
        probs = torch.tensor([0.4, 0.4, 0.2], dtype=torch.float64)
        kind = ["box", "irregular", "outpaint"][int(torch.multinomial(probs, 1, generator=g))]
    hole = torch.zeros(h, w)
    if kind == "box":
        bh, bw = int(h * _uniform(0.1, 0.5, g)), int(w * _uniform(0.1, 0.5, g))
        y, x = int(_uniform(0, h - bh, g)), int(_uniform(0, w - bw, g))
        hole[y : y + bh, x : x + bw] = 1
    elif kind == "irregular":
        yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        for _ in range(_randint(1, 6, g)):
            y, x = _uniform(0, h, g), _uniform(0, w, g)
            radius = max(1.0, _uniform(0.02, 0.08, g) * min(h, w))
            for _ in range(_randint(4, 12, g)):
                ang, length = _uniform(0, 2 * math.pi, g), _uniform(0.05, 0.25, g) * min(h, w)
                for s in torch.linspace(0, 1, 8).tolist():
                    cy, cx = y + s * length * math.sin(ang), x + s * length * math.cos(ang)
                    hole[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = 1
                y = min(max(y + length * math.sin(ang), 0), h - 1)
                x = min(max(x + length * math.cos(ang), 0), w - 1)
    elif kind == "outpaint":
        hole[:] = 1
        frac = _uniform(0.4, 0.8, g)
        if _uniform(0, 1, g) < 0.5:
            kh, kw = int(h * frac), int(w * frac)
            y, x = (h - kh) // 2, (w - kw) // 2
            hole[y : y + kh, x : x + kw] = 0
        else:
            kw = int(w * frac)
            hole[:, :kw] = 0
    else:
        raise ValueError(f"mask kind {kind!r}: use box, irregular, outpaint or mixed")
    return (1 - hole)[None]


def load_mask_file(path: str | Path, invert: bool = False) -> Tensor:
    """Read a mask ``[1, H, W]`` from an image (white = known), ``.npy`` or ``.pt`` file.

    Values are thresholded at ½ (images are scaled to [0, 1] first); ``invert=True`` swaps known
    and missing (for masks drawn with white holes).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"inpainting mask_path {str(path)!r} does not exist; give the path of a mask image "
            "(white = known pixels), a .npy or a .pt file"
        )
    suffix = path.suffix.lower()
    if suffix == ".npy":
        import numpy as np

        arr = torch.from_numpy(np.load(path)).double()
    elif suffix in (".pt", ".pth"):
        arr = torch.load(path, weights_only=True).double()
    else:
        from PIL import Image

        with Image.open(path) as img:
            arr = torch.tensor(list(img.convert("L").getdata()), dtype=torch.float64)
            arr = arr.view(img.height, img.width) / 255.0
    arr = arr.squeeze()
    if arr.dim() == 3:  # channels-first or -last colour mask: known where all channels are known
        arr = arr.amin(0) if arr.shape[0] <= 4 else arr.amin(-1)
    if arr.dim() != 2:
        raise ValueError(
            f"mask file {str(path)!r} must hold a 2-D mask, got shape {tuple(arr.shape)}"
        )
    mask = (arr > 0.5).float()
    if invert:
        mask = 1 - mask
    return mask[None]
