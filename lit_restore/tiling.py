"""Overlapping tiles and their blending, shared by every tiled computation.

Two users: ResShift's tiled chain (:mod:`lit_restore.resshift.chain`, whole chains per tile) and
patch-wise denoising of zero-shot priors on images larger than their training size
(:class:`lit_restore.priors.tiled.TiledPrior`, one network call per tile and step).

**Grid.** Along one axis of length ``L``, tiles of side ``s`` start every ``stride = s − overlap``
from 0, and a last tile ends flush with the border (``L − s``); ResShift's
``utils/util_image.py::ImageSpliterTh.extract_starts`` (clip to ``L − s``, de-duplicate) gives the
same set.

**Blending.** Overlapping tile outputs are averaged with a separable raised-cosine window
``w(i) = sin²(π (i + ½) / s) + 10⁻³`` — a smooth taper to (almost) zero at every tile edge, so the
pixels a tile computes with the least context (next to its cut) weigh least, and no seam appears
where the number of covering tiles changes. The 10⁻³ floor keeps a pixel covered by one tile only
(image borders) at weight 1 after normalisation. The blend is ``Σ_k w_k f_k / Σ_k w_k``: where
every tile agrees (a translation-equivariant network seen with enough context) it returns that
common value, whatever the weights. ResShift's official tiling averages uniformly instead.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Tile origins along one axis of length ``size``; the last tile ends flush with the border."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return sorted(set(starts))


def tile_grid(h: int, w: int, tile: int, overlap: int) -> tuple[int, int, list[tuple[int, int]]]:
    """``(tile height, tile width, origins)`` of the tiles covering an ``h × w`` image with tiles
    of side ``tile`` (clipped to the image) overlapping by ``overlap``."""
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap {overlap} must be in [0, tile side {tile})")
    th, tw = min(tile, h), min(tile, w)
    stride = tile - overlap
    return th, tw, [(y, x) for y in tile_starts(h, th, stride) for x in tile_starts(w, tw, stride)]


def raised_cosine_window(h: int, w: int, device: torch.device | str | None = None) -> Tensor:
    """The ``[h, w]`` blending window (module docstring), strictly positive."""

    def ramp(n: int) -> Tensor:
        i = torch.arange(n, device=device, dtype=torch.float32)
        return torch.sin(math.pi * (i + 0.5) / n) ** 2 + 1e-3

    return ramp(h)[:, None] * ramp(w)[None, :]
