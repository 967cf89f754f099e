"""Derived seeding: every random draw comes from a generator of what it belongs to.

Per image: every draw for image ``index`` comes from ``(seed, index, stream)`` alone. This is
what makes a result independent of the batch size, of its batch mates and of the number of DDP
ranks: image 17 gets the same measurement noise, mask and sampler noise wherever it lands.

Per training step: every draw inside a training step (timesteps, noise, dropout) comes from
``(seed, global step, micro-batch, rank)`` (:func:`training_step_rng`), so a fit resumed from a
checkpoint draws what the uninterrupted fit drew — the global RNG state is not in checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

#: Streams keep the data pipeline's draws apart from the sampler's for the same image.
STREAM_DEGRADATION = 0
STREAM_SAMPLER = 1


def derived_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed derived from ``seed`` and ``parts`` by hashing their ``:``-joined text
    (BLAKE2b): distinct parts give unrelated seeds, with no accidental overlap of streams."""
    text = ":".join(str(p) for p in (seed, *parts))
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def derived_generator(
    seed: int, *parts: object, device: torch.device | str = "cpu"
) -> torch.Generator:
    """A generator seeded by :func:`derived_seed` ``(seed, *parts)``."""
    g = torch.Generator(device=device)
    g.manual_seed(derived_seed(seed, *parts))
    return g


def image_seed(seed: int, index: int, stream: int = 0) -> int:
    """The seed of image ``index`` in ``stream``: :func:`derived_seed` ``(seed, index, stream)``."""
    return derived_seed(seed, index, stream)


def image_generator(
    seed: int, index: int, stream: int = 0, device: torch.device | str = "cpu"
) -> torch.Generator:
    return derived_generator(seed, index, stream, device=device)


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


#: ``noise(shape) -> Tensor``: a source of standard normal noise of ``shape`` (first dim: the
#: images), accepted where a generator is (``Sampler.sample(noise=...)``,
#: ``ResShiftChain.sample(noise=...)``) — e.g. to replay the draws an official implementation
#: consumed (the parity tests)
NoiseFn = Callable[[tuple[int, ...]], Tensor]


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


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run a block with the global RNGs seeded by ``seed`` — the CPU generator and, for a CUDA
    ``device``, that device's — and restore their previous states afterwards
    (``torch.random.fork_rng``), so code outside the block draws as if it had not run."""
    device = torch.device(device)
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda, device_type="cuda"):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def training_step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """The seed of one training step's draws: :func:`derived_seed` of
    ``("training-step", global step, micro-batch within the accumulation window, rank)``."""
    return derived_seed(seed, "training-step", step, micro, rank)


def training_step_rng(module: Any, seed: int, batch_idx: int) -> contextlib.AbstractContextManager:
    """The global RNG of a LightningModule's ``training_step``, seeded by
    :func:`training_step_seed` from ``(seed, module.global_step, batch_idx mod
    accumulate_grad_batches, module.global_rank)``. Every draw in the step — explicit
    ``torch.randint``/``randn`` and the network's dropout — is then a function of where the
    step is in training, not of the RNG history, which a checkpoint does not hold."""
    trainer = getattr(module, "_trainer", None)
    accumulate = int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
    step_seed = training_step_seed(
        seed, int(module.global_step), batch_idx % accumulate, int(module.global_rank)
    )
    return seeded_global_rng(step_seed, module.device)
