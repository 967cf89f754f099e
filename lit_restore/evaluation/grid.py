"""``ImageGridLogger``: measurement | restored | reference for a fixed set of dataset indices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor
from torchvision.utils import make_grid

from lit_restore.data.io import load_image, save_png
from lit_restore.evaluation.base import STAGE_PREFIX, EvaluationCallback, to_unit
from lit_restore.evaluation.records import (
    PERSISTENT_STAGES,
    RunRecords,
    gather_objects,
    is_complete,
)

_KINDS = ("restored", "measurement", "reference")


def _rgb(x: Tensor) -> Tensor:
    return x.expand(3, -1, -1) if x.shape[0] == 1 else x


class ImageGridLogger(EvaluationCallback):
    """Log one grid per evaluation epoch to TensorBoard (``<stage>/grid``) and ``grid_<stage>.png``.

    Rows are the images with dataset index in ``indices`` (the same images in every run, on any
    number of ranks, whatever the batch size); columns are the measurement ``batch["lq"]``
    (nearest-upsampled to the reference size, so SR pixels stay visible), the restoration and the
    reference (when present). In a resumed run, images done earlier are read back from the
    :class:`~lit_restore.evaluation.RestoredImageWriter`'s PNGs; unless the writer saved all three
    kinds for them (``save_measurement``, ``save_reference``), an existing ``grid_<stage>.png``
    is kept as it is rather than replaced by a grid with fewer columns. ``background``: collect
    the tiles on the background worker (:mod:`lit_restore.evaluation.base`).
    """

    def __init__(
        self,
        indices: Sequence[int] = (0, 1, 2, 3),
        output_dir: str | None = None,
        save_png: bool = True,
        background: bool = True,
    ) -> None:
        super().__init__(background=background)
        self.indices = sorted({int(i) for i in indices})
        self.output_dir = output_dir
        self.save_png = save_png
        self.items: dict[int, list[Tensor]] = {}
        self.records: RunRecords | None = None
        self.run_dir = None

    def on_setup(self, stage: str) -> None:
        self.records = RunRecords.of(self.trainer, self.output_dir)  # all ranks (broadcast)
        self.run_dir = self.records.run_dir
        if stage in PERSISTENT_STAGES:
            self.records.artifact(self.run_dir / f"grid_{stage}.png")
        self.items = {}

    def on_start(self, stage: str) -> None:
        self.items = {}

    @staticmethod
    def _row(restored: Tensor, lq: Tensor | None, hq: Tensor | None) -> list[Tensor]:
        """The tiles of one image ([C,H,W] in [0,1]): lq upsampled | restored | hq."""
        cols = []
        if lq is not None:
            cols.append(_rgb(F.interpolate(lq[None], size=restored.shape[-2:], mode="nearest")[0]))
        cols.append(_rgb(restored))
        if hq is not None:
            cols.append(_rgb(hq))
        return cols

    def on_batch(self, stage: str, outputs: Any, batch: dict) -> None:
        wanted = set(self.indices)
        restored = to_unit(outputs["restored"]).cpu()
        for k, i in enumerate(int(j) for j in batch["index"]):
            if i in wanted:
                lq, hq = batch.get("lq"), batch.get("hq")
                self.items[i] = self._row(
                    restored[k],
                    to_unit(lq[k]).cpu() if lq is not None else None,
                    to_unit(hq[k]).cpu() if hq is not None else None,
                )

    def _from_disk(self, index: int) -> list[Tensor] | None:
        """The tiles of an image a resumed run did not restore again, read back from the
        writer's PNGs (``None`` if its restoration is not on disk)."""
        row = self.records.stored.get(index)
        if row is None:
            return None
        paths = {k: self.records.file_path(k, row["name"]) for k in _KINDS}
        if not is_complete(paths["restored"]):
            return None
        tiles = {k: load_image(p) if is_complete(p) else None for k, p in paths.items()}
        return self._row(tiles["restored"], tiles["measurement"], tiles["reference"])

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
        complete = True
        if stage in PERSISTENT_STAGES:  # images done by an earlier run: from their PNGs
            for i in self.indices:
                if i not in merged and i in self.records.stored:
                    tiles = self._from_disk(i)
                    complete = complete and tiles is not None and len(tiles) == len(_KINDS)
                    if tiles is not None:
                        merged[i] = tiles
            complete = complete and len({len(cols) for cols in merged.values()}) <= 1
        grid = self.build_grid(merged)
        if grid is None:
            return
        if isinstance(trainer.logger, TensorBoardLogger):
            trainer.logger.experiment.add_image(
                f"{STAGE_PREFIX[stage]}/grid", grid, trainer.global_step
            )
        path = self.run_dir / f"grid_{stage}.png"
        # a resumed run whose earlier images lack some columns on disk (the writer did not save
        # them) keeps the grid the earlier run wrote rather than replace it by a poorer one
        if self.save_png and stage != "validate" and (complete or not path.exists()):
            save_png(grid, path)
