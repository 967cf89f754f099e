"""How evaluation data is split over processes and jobs, and how training walks its data.

Two ways to split an evaluation, which compose:

- :class:`Shard` — *between jobs* (a SLURM job array, machines that never talk to each other):
  ``data.init_args.shard: "i/N"`` keeps the images whose dataset index ``k`` has
  ``k mod N == i``. The N shards are disjoint and together cover every index exactly once,
  whatever the dataset; each is an independent run, merged afterwards by index
  (:mod:`lit_restore.evaluation.merge`). No collective communication is involved.
- :class:`ShardSampler` — *between the ranks of one DDP job*, see below.

Samplers:

Lightning's own ``DistributedSampler`` injection pads the dataset so that every rank gets the
same number of samples; in evaluation the padded duplicates would be scored twice and bias the
means. The CLI therefore sets ``trainer.use_distributed_sampler: false`` and the datamodule
builds its samplers itself:

- :class:`ShardSampler` — evaluation: rank ``r`` of ``w`` gets positions ``r, r+w, r+2w, ...``
  (strided, *unpadded*): every position exactly once over all ranks, ranks differ by at most one
  item.
- :class:`EpochTaggedSampler` — training: wraps a sampler and yields ``(position, epoch)``, so
  the dataset can draw per-epoch random crops/flips from ``(seed, index, epoch)`` in any worker
  process (the epoch arrives with the index; no shared state). It can start an epoch part-way
  (:meth:`EpochTaggedSampler.resume`).
- :class:`ResumableDataLoader` — the training loader: Lightning saves its position (epoch,
  batches done) in every checkpoint and hands it back on ``--ckpt_path``, so a resumed run
  continues the epoch where the checkpoint was taken instead of restarting it.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from torch.utils.data import DataLoader, Sampler


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the dataset indices ``k`` with ``k mod count == index``.

    Striding by index (rather than cutting contiguous blocks) needs no dataset length, so a
    shard is known before the dataset is scanned, and shards stay balanced (sizes differ by at
    most one) even when ``on_bad_image: skip`` leaves some indices out.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(
                f"data.init_args.shard={self.index}/{self.count}: need 0 <= i < N in 'i/N' "
                f"(e.g. shard: 0/{max(self.count, 2)} ... {max(self.count, 2) - 1}/"
                f"{max(self.count, 2)})"
            )

    @classmethod
    def parse(cls, spec: str | Shard | None) -> Shard | None:
        """``"i/N"`` (e.g. ``"3/8"``, a job array's ``$SLURM_ARRAY_TASK_ID/8``) -> ``Shard``;
        ``None`` or ``""`` -> ``None`` (no sharding)."""
        if spec is None or isinstance(spec, Shard):
            return spec
        text = str(spec).strip()
        if not text:
            return None
        m = re.fullmatch(r"(\d+)\s*/\s*(\d+)", text)
        if m is None:
            raise ValueError(
                f"data.init_args.shard={spec!r} is not 'i/N' (e.g. shard: 0/4 for the first of "
                "4 shards; a job array passes $SLURM_ARRAY_TASK_ID/N)"
            )
        return cls(int(m.group(1)), int(m.group(2)))

    def keep(self, indices: Iterable[int]) -> list[int]:
        """The indices of this shard, in the given order."""
        return [int(k) for k in indices if int(k) % self.count == self.index]

    @property
    def tag(self) -> str:
        """``shard<i>of<N>``: names this shard's record files in a shared run directory."""
        return f"shard{self.index}of{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


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
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def resume(self, epoch: int, skip: int) -> None:
        """Make the next iteration epoch ``epoch`` without its first ``skip`` positions (the
        inner sampler's order is a function of its seed and epoch, so the rest is the same)."""
        self.set_epoch(epoch)
        self._skip = int(skip)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        skip, self._skip = self._skip, 0
        for k, i in enumerate(self.sampler):
            if k >= skip:
                yield (int(i), epoch)

    def __len__(self) -> int:
        return len(self.sampler)


class ResumableDataLoader(DataLoader):
    """A training DataLoader whose place in the data order is saved in checkpoints.

    Lightning checkpoints the state of every training loader that has ``state_dict`` /
    ``load_state_dict`` (``lightning.pytorch.loops.fit_loop``: ``combined_loader._state_dicts``)
    and loads it back before the first iteration of a resumed fit. The state is
    ``{epoch, batches_done, batch_size}``; ``position`` (given by the datamodule) reports the
    first two from the trainer's own progress counters — the batches whose training step ran —
    so prefetching by workers or by Lightning does not count. On load, the
    :class:`EpochTaggedSampler` resumes that epoch after ``batches_done · batch_size`` positions;
    a finished epoch resumes as the start of the next.

    Args:
        position: ``() -> (epoch, batches_done)`` of the running fit.
        Other arguments: those of :class:`~torch.utils.data.DataLoader`, with an
        :class:`EpochTaggedSampler` as ``sampler``.
    """

    def __init__(
        self, *args: Any, position: Callable[[], tuple[int, int]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.position = position

    def state_dict(self) -> dict[str, int]:
        epoch, done = self.position() if self.position is not None else (0, 0)
        return {"epoch": int(epoch), "batches_done": int(done), "batch_size": int(self.batch_size)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        sampler = self.sampler
        if not isinstance(sampler, EpochTaggedSampler):
            raise TypeError(f"ResumableDataLoader needs an EpochTaggedSampler, got {sampler!r}")
        epoch, done, size = state["epoch"], state["batches_done"], state["batch_size"]
        if size != self.batch_size:
            warnings.warn(
                f"resuming a fit saved with batch_size {size} with batch_size {self.batch_size}: "
                f"the epoch continues after the {done * size} samples already seen, but the run "
                "is not the one the checkpoint came from",
                stacklevel=2,
            )
        skip = done * size
        if skip >= len(self) * self.batch_size:  # the epoch was finished
            epoch, skip = epoch + 1, 0
        sampler.resume(epoch, skip)
