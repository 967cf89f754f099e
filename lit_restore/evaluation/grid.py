"""``ImageGridLogger``: measurement | restored | reference for a fixed set of dataset indices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor
from torchvision.utils import make_grid

from lit_restore.data.io import save_png
from lit_restore.evaluation.base import STAGE_PREFIX, EvaluationCallback, to_unit
from lit_restore.evaluation.records import gather_objects, resolve_run_dir


def _rgb(x: Tensor) -> Tensor:
    return x.expand(3, -1, -1) if x.shape[0] == 1 else x


class ImageGridLogger(EvaluationCallback):
    """Log one grid per evaluation epoch to TensorBoard (``<stage>/grid``) and ``grid_<stage>.png``.

    Rows are the images with dataset index in ``indices`` (the same images in every run, on any
    number of ranks, whatever the batch size); columns are the measurement ``batch["lq"]``
    (nearest-upsampled to the reference size, so SR pixels stay visible), the restoration and the
    reference (when present). Images already done in a resumed run are not re-restored and so are
    absent from that run's grid.
    """

    def __init__(
        self,
        indices: Sequence[int] = (0, 1, 2, 3),
        output_dir: str | None = None,
        save_png: bool = True,
    ) -> None:
        super().__init__()
        self.indices = sorted({int(i) for i in indices})
        self.output_dir = output_dir
        self.save_png = save_png
        self.items: dict[int, list[Tensor]] = {}
        self.run_dir = None

    def on_setup(self, stage: str) -> None:
        self.run_dir = resolve_run_dir(self.trainer, self.output_dir)  # all ranks (broadcast)
        self.items = {}

    def on_start(self, stage: str) -> None:
        self.items = {}

    def on_batch(self, stage: str, outputs: Any, batch: dict) -> None:
        wanted = set(self.indices)
        restored = to_unit(outputs["restored"]).cpu()
        for k, i in enumerate(int(j) for j in batch["index"]):
            if i not in wanted:
                continue
            size = restored.shape[-2:]
            cols = []
            if batch.get("lq") is not None:
                lq = to_unit(batch["lq"][k : k + 1]).cpu()
                cols.append(_rgb(F.interpolate(lq, size=size, mode="nearest")[0]))
            cols.append(_rgb(restored[k]))
            if batch.get("hq") is not None:
                cols.append(_rgb(to_unit(batch["hq"][k]).cpu()))
            self.items[i] = cols

    def build_grid(self, items: dict[int, list[Tensor]]) -> Tensor | None:
        if not items:
            return None
        ncol = max(len(c) for c in items.values())
        tiles = []
        for i in sorted(items):
            cols = items[i]
            tiles += cols + [torch.zeros_like(cols[0])] * (ncol - len(cols))
        return make_grid(torch.stack(tiles), nrow=ncol, padding=2, pad_value=1.0)

    def on_end(self, stage: str) -> None:
        trainer = self.trainer
        merged: dict[int, list[Tensor]] = {}
        for part in gather_objects(trainer, self.items):  # a rank with an empty loop joins too
            merged.update(part)
        if not trainer.is_global_zero:
            return
        grid = self.build_grid(merged)
        if grid is None:
            return
        if isinstance(trainer.logger, TensorBoardLogger):
            trainer.logger.experiment.add_image(
                f"{STAGE_PREFIX[stage]}/grid", grid, trainer.global_step
            )
        if self.save_png and stage != "validate":
            save_png(grid, self.run_dir / f"grid_{stage}.png")
