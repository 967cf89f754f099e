"""``RestoredImageWriter``: restored images as PNGs named after ``batch["name"]``, atomically."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback

from lit_restore.callbacks._io import resolve_run_dir, safe_relpath, to_unit
from lit_restore.data.io import save_png


class RestoredImageWriter(Callback):
    """Write ``<run_dir>/restored/<name>.png`` (8-bit RGB) for every test/predict image.

    Each file is written to a temp file and ``os.replace``-d, so an interrupted run never leaves a
    torn PNG. With :class:`RestorationMetrics` (``resume=True``) an image counts as done only when
    its PNG exists, so a resumed run rewrites what is missing.

    Args:
        output_dir: run dir (default ``trainer.log_dir``).
        save_measurement: also write ``measurement/<name>.png`` (``batch["lq"]``).
        save_reference: also write ``reference/<name>.png`` (``batch["hq"]``, when present).
        stages: which evaluation loops write (``test``, ``predict``, ``validate``).
    """

    def __init__(
        self,
        output_dir: str | None = None,
        save_measurement: bool = False,
        save_reference: bool = False,
        stages: tuple[str, ...] = ("test", "predict"),
    ) -> None:
        super().__init__()
        self.output_dir = output_dir
        self.save_measurement = save_measurement
        self.save_reference = save_reference
        self.stages = tuple(stages)
        self.run_dir: Path | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.run_dir = resolve_run_dir(trainer, self.output_dir)

    @staticmethod
    def path_for(run_dir: Path, kind: str, name: str) -> Path:
        return run_dir / kind / f"{safe_relpath(name)}.png"

    def has_output(self, run_dir: Path, name: str) -> bool:
        return self.path_for(run_dir, "restored", name).exists()

    def _write(self, outputs: dict, batch: dict) -> None:
        assert self.run_dir is not None
        restored = to_unit(outputs["restored"])
        for k, name in enumerate(batch["name"]):
            save_png(restored[k], self.path_for(self.run_dir, "restored", name))
            if self.save_measurement and batch.get("lq") is not None:
                save_png(to_unit(batch["lq"][k]), self.path_for(self.run_dir, "measurement", name))
            if self.save_reference and batch.get("hq") is not None:
                save_png(to_unit(batch["hq"][k]), self.path_for(self.run_dir, "reference", name))

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if "test" in self.stages:
            self._write(outputs, batch)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if "predict" in self.stages:
            self._write(outputs, batch)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ):
        if "validate" in self.stages and not trainer.sanity_checking:
            self._write(outputs, batch)
