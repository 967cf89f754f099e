"""``ImageGridLogger``: measurement | restored | reference for a fixed set of dataset indices,
labelled with the run's name, in the run dir and in every logger that shows images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from lit_restore.data.io import load_image
from lit_restore.evaluation.base import STAGE_PREFIX, EvaluationCallback, to_unit
from lit_restore.evaluation.drawing import Box, write_png
from lit_restore.evaluation.figures import labelled_grid
from lit_restore.evaluation.records import (
    PERSISTENT_STAGES,
    RunRecords,
    gather_objects,
    is_complete,
)
from lit_restore.utils.hparams import run_name
from lit_restore.utils.loggers import log_image

_KINDS = ("restored", "measurement", "reference")
#: the grid's columns, left to right
_COLUMNS = ("measurement", "restored", "reference")


def _rgb(x: Tensor) -> Tensor:
    return x.expand(3, -1, -1) if x.shape[0] == 1 else x


class ImageGridLogger(EvaluationCallback):
    """One labelled grid per evaluation epoch: ``grid_<stage>.png`` in the run dir and
    ``<stage>/grid`` in the run's loggers (TensorBoard ``add_image``, W&B/MLflow ``log_image``:
    :func:`lit_restore.utils.loggers.log_image`).

    Rows are the images with dataset index in ``indices`` (the same images in every run, on any
    number of ranks, whatever the batch size or the order of the batches), each labelled with its
    name and index; columns are the measurement ``batch["lq"]`` (nearest-upsampled to the
    reference size, so SR pixels stay visible), the restoration and the reference (when
    present), under a header naming the run (``name/version``, method and module class:
    :func:`lit_restore.evaluation.figures.labelled_grid`). In a resumed run, images done earlier are read back from the
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
        self.items: dict[int, dict[str, Tensor]] = {}
        self.names: dict[int, str] = {}
        self.records: RunRecords | None = None
        self.run_dir = None

    def on_setup(self, stage: str) -> None:
        self.records = RunRecords.of(self.trainer, self.output_dir)  # all ranks (broadcast)
        self.run_dir = self.records.run_dir
        if stage in PERSISTENT_STAGES:
            self.records.artifact(self.records.stage_file("grid", stage, ".png"))
        self.items = {}

    def on_start(self, stage: str) -> None:
        self.items, self.names = {}, {}

    @staticmethod
    def _row(restored: Tensor, lq: Tensor | None, hq: Tensor | None) -> dict[str, Tensor]:
        """The tiles of one image ([C,H,W] in [0,1]) by kind: lq upsampled, restored, hq."""
        cols = {}
        if lq is not None:
            size = restored.shape[-2:]
            cols["measurement"] = _rgb(F.interpolate(lq[None], size=size, mode="nearest")[0])
        cols["restored"] = _rgb(restored)
        if hq is not None:
            cols["reference"] = _rgb(hq)
        return cols

    def on_batch(self, stage: str, outputs: Any, batch: dict) -> None:
        wanted = set(self.indices)
        restored = to_unit(outputs["restored"]).cpu()
        for k, i in enumerate(int(j) for j in batch["index"]):
            if i in wanted:
                self.names[i] = str(batch["name"][k])
                lq, hq = batch.get("lq"), batch.get("hq")
                self.items[i] = self._row(
                    restored[k],
                    to_unit(lq[k]).cpu() if lq is not None else None,
                    to_unit(hq[k]).cpu() if hq is not None else None,
                )

    def _from_disk(self, index: int) -> dict[str, Tensor] | None:
        """The tiles of an image a resumed run did not restore again, read back from the
        writer's PNGs (``None`` if its restoration is not on disk)."""
        row = self.records.stored.get(index)
        if row is None:
            return None
        paths = {k: self.records.file_path(k, row["name"]) for k in _KINDS}
        if not is_complete(paths["restored"]):
            return None
        tiles = {k: load_image(p) if is_complete(p) else None for k, p in paths.items()}
        self.names[index] = str(row["name"])
        return self._row(tiles["restored"], tiles["measurement"], tiles["reference"])

    def title(self) -> str:
        """The grid's header: ``run name/version: method (ModuleClass)``."""
        module = self.pl_module
        hp = module.run_hparams() if hasattr(module, "run_hparams") else {}
        method = str(hp.get("method", type(module).__name__))
        run = run_name(self.trainer) or str(self.run_dir)
        return f"{run}: {method} ({type(module).__name__})"

    def build_grid(
        self, items: dict[int, dict[str, Tensor]]
    ) -> tuple[Image.Image, list[str], list[list[Box | None]]] | None:
        """The labelled grid of ``items`` (rows by dataset index), its column kinds and where
        each tile went (``cells[row][column]``, ``None`` for a kind a row lacks)."""
        if not items:
            return None
        kinds = [k for k in _COLUMNS if any(k in cols for cols in items.values())]
        rows = [
            [items[i][k].permute(1, 2, 0).numpy() if k in items[i] else None for k in kinds]
            for i in sorted(items)
        ]
        labels = [f"{self.names.get(i, '')} (#{i})".strip() for i in sorted(items)]
        image, cells = labelled_grid(rows, kinds, self.title(), labels)
        return image, kinds, cells

    def on_end(self, stage: str) -> None:
        trainer = self.trainer
        merged: dict[int, dict[str, Tensor]] = {}
        for part, names in gather_objects(trainer, (self.items, self.names)):  # empty ranks too
            merged.update(part)
            self.names.update(names)
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
        built = self.build_grid(merged)
        if built is None:
            return
        grid = built[0]
        log_image(trainer, f"{STAGE_PREFIX[stage]}/grid", grid, trainer.global_step)
        assert self.records is not None
        path = self.records.stage_file("grid", stage, ".png")
        # a resumed run whose earlier images lack some columns on disk (the writer did not save
        # them) keeps the grid the earlier run wrote rather than replace it by a poorer one
        if self.save_png and stage != "validate" and (complete or not path.exists()):
            write_png(path, grid)
