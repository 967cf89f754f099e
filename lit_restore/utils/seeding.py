"""Per-image seeding: every random draw for image ``index`` comes from ``(seed, index)`` alone.

This is what makes a result independent of the batch size, of its batch mates and of the number
of DDP ranks: image 17 gets the same measurement noise, mask and sampler noise wherever it lands.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor

#: Streams keep the data pipeline's draws apart from the sampler's for the same image.
STREAM_DEGRADATION = 0
STREAM_SAMPLER = 1


def image_seed(seed: int, index: int, stream: int = 0) -> int:
    """A 63-bit seed derived from ``(seed, index, stream)`` by hashing (no accidental overlap)."""
    digest = hashlib.blake2b(f"{seed}:{index}:{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def image_generator(
    seed: int, index: int, stream: int = 0, device: torch.device | str = "cpu"
) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(image_seed(seed, index, stream))
    return g


def generators_for(
    seed: int,
    indices: Sequence[int] | Tensor,
    stream: int = STREAM_SAMPLER,
    device: torch.device | str = "cpu",
) -> list[torch.Generator]:
    """One generator per image of a batch."""
    if isinstance(indices, Tensor):
        indices = indices.tolist()
    return [image_generator(seed, int(i), stream, device) for i in indices]


def randn_per_image(
    shape: Sequence[int],
    generators: Sequence[torch.Generator] | torch.Generator | None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Standard normal noise of ``shape`` (leading dim = batch), image ``b`` drawn from
    ``generators[b]``. A single generator (or None) draws the whole batch at once."""
    if generators is None or isinstance(generators, torch.Generator):
        return torch.randn(tuple(shape), generator=generators, device=device, dtype=dtype)
    if len(generators) != shape[0]:
        raise ValueError(f"{len(generators)} generators for a batch of {shape[0]}")
    out = []
    for g in generators:
        gdev = g.device
        z = torch.randn(tuple(shape[1:]), generator=g, device=gdev, dtype=dtype)
        out.append(z.to(device))
    return torch.stack(out)
