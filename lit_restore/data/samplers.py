"""Samplers for multi-process evaluation and epoch-aware training.

Lightning's own ``DistributedSampler`` injection pads the dataset so that every rank gets the
same number of samples; in evaluation the padded duplicates would be scored twice and bias the
means. The CLI therefore sets ``trainer.use_distributed_sampler: false`` and the datamodule
builds its samplers itself:

- :class:`ShardSampler` — evaluation: rank ``r`` of ``w`` gets positions ``r, r+w, r+2w, ...``
  (strided, *unpadded*): every position exactly once over all ranks, ranks differ by at most one
  item.
- :class:`EpochTaggedSampler` — training: wraps a sampler and yields ``(position, epoch)``, so
  the dataset can draw per-epoch random crops/flips from ``(seed, index, epoch)`` in any worker
  process (the epoch arrives with the index; no shared state).
"""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Sampler


class ShardSampler(Sampler[int]):
    """Positions ``range(n)`` split over ``world_size`` ranks without padding (strided).

    Args:
        n: number of items.
        rank: this process's rank in ``[0, world_size)``.
        world_size: number of processes.
    """

    def __init__(self, n: int, rank: int = 0, world_size: int = 1) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world={world_size}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.n = n
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))

    def __repr__(self) -> str:
        return f"ShardSampler(n={self.n}, rank={self.rank}, world_size={self.world_size})"


class EpochTaggedSampler(Sampler[tuple[int, int]]):
    """Yields ``(position, epoch)`` from an inner sampler; ``set_epoch`` is forwarded.

    Lightning calls ``set_epoch`` on the dataloader's sampler at the start of every epoch
    (``lightning.fabric.utilities.data._set_sampler_epoch``).
    """

    def __init__(self, sampler: Sampler[int]) -> None:
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        for i in self.sampler:
            yield (int(i), epoch)

    def __len__(self) -> int:
        return len(self.sampler)
