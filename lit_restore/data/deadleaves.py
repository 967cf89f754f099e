"""Synthetic dead-leaves images: occluding discs with power-law radii (a scale-invariant model
of natural images).

Model (Lee, Mumford & Huang, "Occlusion models for natural images", IJCV 2001; used as a
training/benchmark source by e.g. Achddou et al., "Synthetic images as a regularity prior for
image restoration neural networks", SSVM 2021): discs ("leaves") fall one after the other; each
has a uniformly random centre, a random colour, and a radius with density

    p(r) ∝ r⁻³   on [r_min, r_max],

sampled by inverting the CDF ``F(r) = (r_min⁻² − r⁻²) / (r_min⁻² − r_max⁻²)``. The image shows
what is seen from above, i.e. at every pixel the *first* disc that covers it (later discs are
hidden underneath). The r⁻³ law makes the picture statistically scale invariant between r_min and
r_max, which gives a radially averaged power spectrum close to ``1/f²`` like natural images
(``tests/test_data.py::test_deadleaves_power_spectrum_slope`` measures the slope).

Item ``i`` is a pure function of ``(seed, i)`` (:func:`lit_restore.utils.seeding.image_generator`),
so the dataset is map-style, needs no storage, and is identical on every rank and run.
Rendering is vectorised (bounding-box pixel enumeration + ``scatter_reduce``, see
:func:`dead_leaves`); generation stops as soon as every pixel is covered.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from lit_restore.utils.seeding import image_generator

#: Stream of the dead-leaves draws (kept apart from degradation/sampler streams).
STREAM_DEADLEAVES = 7


def sample_radii(n: int, rmin: float, rmax: float, generator: torch.Generator) -> Tensor:
    """``n`` radii with density ∝ r⁻³ on [rmin, rmax] (inverse-CDF sampling)."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    a, b = rmin**-2, rmax**-2
    return (a - u * (a - b)).rsqrt().float()


def dead_leaves(
    image_size: int,
    generator: torch.Generator,
    channels: int = 3,
    rmin: float = 0.02,
    rmax: float = 0.5,
    chunk: int = 1024,
    max_discs: int = 200_000,
) -> Tensor:
    """One dead-leaves image ``[channels, image_size, image_size]`` in [0, 1].

    Discs are drawn in chunks (in falling order). For each disc only the pixels of its bounding
    box are tested (pairs enumerated with ``repeat_interleave``), and each pixel keeps the
    smallest index of a disc covering it (``scatter_reduce(amin)``), i.e. the top leaf. Once few
    pixels are left uncovered, a chunk is instead tested densely against just those pixels
    (whichever is cheaper). Drawing stops once every pixel is covered.

    Args:
        image_size: side in pixels.
        generator: the source of every random draw.
        channels: 1 (grey) or 3 (colour; each disc gets an independent uniform RGB colour).
        rmin, rmax: radius range as a fraction of ``image_size``.
        chunk: discs drawn per vectorised step.
        max_discs: safety cap; pixels still uncovered then get mid-grey (practically never
            happens with the defaults).
    """
    if not 0 < rmin < rmax:
        raise ValueError(f"need 0 < rmin < rmax, got rmin={rmin}, rmax={rmax}")
    s = image_size
    none = torch.iinfo(torch.int64).max
    top = torch.full((s * s,), none, dtype=torch.long)  # index of the top disc at each pixel
    colours = []
    drawn = 0
    margin = rmax * s  # centres on an enlarged field: large discs may enter from outside
    todo = torch.arange(s * s)  # uncovered pixels
    while drawn < max_discs and todo.numel():
        k = chunk
        cx = torch.rand(k, generator=generator) * (s + 2 * margin) - margin
        cy = torch.rand(k, generator=generator) * (s + 2 * margin) - margin
        r = sample_radii(k, rmin * s, rmax * s, generator)
        colours.append(torch.rand(k, channels, generator=generator))
        # bounding boxes of pixel centres (i + 0.5) inside each disc, clipped to the frame
        x0 = (cx - r - 0.5).ceil().clamp(0, s).long()
        x1 = (cx + r - 0.5).floor().clamp(-1, s - 1).long() + 1
        y0 = (cy - r - 0.5).ceil().clamp(0, s).long()
        y1 = (cy + r - 0.5).floor().clamp(-1, s - 1).long() + 1
        w = (x1 - x0).clamp_min(0)
        n = w * (y1 - y0).clamp_min(0)
        if todo.numel() * k < int(n.sum()):
            # few pixels left: test every disc of the chunk against the uncovered pixels only
            dx = (todo % s).float()[None] + 0.5 - cx[:, None]
            dy = torch.div(todo, s, rounding_mode="floor").float()[None] + 0.5 - cy[:, None]
            cover = dx * dx + dy * dy <= (r * r)[:, None]  # [k, M]
            hit = cover.any(0)
            first = cover.to(torch.uint8).argmax(0)  # the earliest disc is on top
            top[todo[hit]] = first[hit] + drawn
        else:
            disc = torch.repeat_interleave(torch.arange(k), n)
            offset = torch.arange(disc.numel()) - (torch.cumsum(n, 0) - n)[disc]
            wd = w[disc]
            px = x0[disc] + offset % wd
            py = y0[disc] + torch.div(offset, wd, rounding_mode="floor")
            dx = px + 0.5 - cx[disc]
            dy = py + 0.5 - cy[disc]
            inside = dx * dx + dy * dy <= r[disc] ** 2
            pix = (py * s + px)[inside]
            top.scatter_reduce_(0, pix, disc[inside] + drawn, reduce="amin")
        drawn += k
        todo = (top == none).nonzero().squeeze(1)
    palette = torch.cat([*colours, torch.full((1, channels), 0.5)])
    top = torch.where(top == none, palette.shape[0] - 1, top)
    return palette[top].T.reshape(channels, s, s).contiguous()


class DeadLeaves(Dataset):
    """A map-style dataset of ``length`` dead-leaves images: items ``{"image", "name"}``.

    Args:
        length: number of items.
        image_size: side in pixels.
        seed: base seed; item ``i`` is generated from ``image_generator(seed, i, 7)``.
        channels: 1 or 3.
        rmin, rmax: radius range as a fraction of ``image_size`` (density ∝ r⁻³).
    """

    def __init__(
        self,
        length: int = 10000,
        image_size: int = 64,
        seed: int = 0,
        channels: int = 3,
        rmin: float = 0.02,
        rmax: float = 0.5,
    ) -> None:
        if length < 1 or image_size < 1:
            raise ValueError(f"length and image_size must be >= 1, got {length}, {image_size}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.length = length
        self.image_size = image_size
        self.seed = seed
        self.channels = channels
        self.rmin = rmin
        self.rmax = rmax

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        if not 0 <= index < self.length:
            raise IndexError(f"DeadLeaves index {index} out of range [0, {self.length})")
        g = image_generator(self.seed, index, STREAM_DEADLEAVES)
        img = dead_leaves(self.image_size, g, self.channels, self.rmin, self.rmax)
        return {"image": img, "name": f"deadleaves_{index:06d}"}

    def __repr__(self) -> str:
        return (
            f"DeadLeaves(length={self.length}, image_size={self.image_size}, seed={self.seed}, "
            f"channels={self.channels}, rmin={self.rmin}, rmax={self.rmax})"
        )
