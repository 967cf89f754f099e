"""The training-pair pool of Real-ESRGAN training (a queue that mixes batches).

xinntao/Real-ESRGAN ``realesrgan/models/realesrgan_model.py::_dequeue_and_enqueue``, used
unchanged by zsyOAOA/ResShift (``trainer.py`` L488-524, ``queue_size`` default ``10 × batch``):
with official per-batch degradation draws every image of a batch shares its resize and noise
type, and the pool restores diversity within a batch. Until the pool is full a batch is stored
and passed through unchanged; afterwards the pool is shuffled, its first ``B`` pairs are the
batch handed to the model, and the incoming batch takes their place.

Here the pool holds every per-sample entry of a batch (``hq``, ``y``, ``lq``, ``mask``,
``params``, ``index``, ``name``), so a dequeued pair keeps its name and index. The shuffle draws
from a generator derived from ``(seed, call number, rank)`` and the pool's contents are part of
the datamodule's checkpoint state, so a resumed fit continues with the same pool.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lit_restore.utils.seeding import derived_generator


def _flatten(batch: dict[str, Any]) -> dict[str, Tensor]:
    """The batch's per-sample tensors by key (``params`` entries as ``params/<name>``)."""
    flat = {k: v for k, v in batch.items() if isinstance(v, Tensor)}
    flat.update({f"params/{k}": v for k, v in batch.get("params", {}).items()})
    return flat


class TrainingPairPool:
    """A pool of ``size`` training pairs (``size`` a multiple of the batch size).

    Args:
        size: number of pairs held (official: 10 × batch size).
        seed: base seed of the shuffles.
        rank: this process's rank (each DDP rank keeps its own pool, as in the official code).
    """

    def __init__(self, size: int, seed: int = 0, rank: int = 0) -> None:
        if size < 1:
            raise ValueError(f"pair_pool_size must be positive, got {size}")
        self.size, self.seed, self.rank = int(size), int(seed), int(rank)
        self.calls = 0
        self.filled = 0
        self.store: dict[str, Tensor] = {}
        self.names: list[str] = []

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        flat = _flatten(batch)
        b = int(batch["index"].shape[0])
        if self.size % b:
            raise ValueError(
                f"pair_pool_size={self.size} is not a multiple of the batch size {b} "
                "(official: 10 × batch size)"
            )
        if not self.store:
            self.store = {k: v.new_zeros((self.size, *v.shape[1:])) for k, v in flat.items()}
            self.names = [""] * self.size
        device = batch["index"].device
        if any(v.device != device for v in self.store.values()):  # e.g. loaded from a checkpoint
            self.store = {k: v.to(device) for k, v in self.store.items()}
        if set(flat) != set(self.store):
            raise ValueError(
                f"batch keys {sorted(flat)} differ from the pool's {sorted(self.store)}"
            )
        self.calls += 1
        names = list(batch.get("name", [""] * b))
        if self.filled < self.size:  # fill: the batch passes through
            for k, v in flat.items():
                self.store[k][self.filled : self.filled + b] = v.detach().to(self.store[k])
            self.names[self.filled : self.filled + b] = names
            self.filled += b
            return batch
        g = derived_generator(self.seed, "pair-pool", self.calls, self.rank)
        perm = torch.randperm(self.size, generator=g)
        out: dict[str, Any] = {k: v for k, v in batch.items() if k not in flat and k != "params"}
        params = {}
        for k, v in self.store.items():
            v = v[perm.to(v.device)]
            taken = v[:b].clone()
            v[:b] = flat[k].detach().to(v)
            self.store[k] = v
            if k.startswith("params/"):
                params[k.split("/", 1)[1]] = taken
            else:
                out[k] = taken
        self.names = [self.names[i] for i in perm.tolist()]
        out["name"], self.names[:b] = self.names[:b], names
        if "params" in batch:
            out["params"] = params
        return out

    # ------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "calls": self.calls,
            "filled": self.filled,
            "store": {k: v.detach().cpu() for k, v in self.store.items()},
            "names": list(self.names),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["size"]) != self.size:
            raise ValueError(
                f"the checkpoint's training-pair pool holds {state['size']} pairs, this run's "
                f"pair_pool_size is {self.size}; resume with the same size"
            )
        self.calls, self.filled = int(state["calls"]), int(state["filled"])
        self.store = dict(state["store"])
        self.names = list(state["names"])
