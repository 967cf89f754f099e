"""``RestoredImageWriter``: restored images as PNGs named after ``batch["name"]``, atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lit_restore.data.io import save_png
from lit_restore.evaluation.base import EvaluationCallback, to_unit
from lit_restore.evaluation.records import Participant, RunRecords

_EXTRA_KINDS = ("measurement", "reference")


class RestoredImageWriter(EvaluationCallback):
    """Write ``<run_dir>/restored/<name>.png`` (8-bit RGB) for every test/predict image.

    Each file is written to a temp file and ``os.replace``-d, so an interrupted run never leaves a
    torn PNG. The writer is a participant of the run's
    :class:`~lit_restore.evaluation.records.RunRecords`: an image counts as done (and is left out
    of a resumed run) only when all of its PNGs are complete; a missing or truncated one is
    redone.

    Args:
        output_dir: run dir (default ``trainer.log_dir``).
        save_measurement: also write ``measurement/<name>.png`` (``batch["lq"]``).
        save_reference: also write ``reference/<name>.png`` (``batch["hq"]``, when present).
        stages: which evaluation loops write (``test``, ``predict``, ``validate``).
        background: encode and write on the background worker while the next batch is restored
            (:mod:`lit_restore.evaluation.base`); ``false``: in the loop.
    """

    def __init__(
        self,
        output_dir: str | None = None,
        save_measurement: bool = False,
        save_reference: bool = False,
        stages: tuple[str, ...] = ("test", "predict"),
        background: bool = True,
    ) -> None:
        super().__init__(stages=tuple(stages), background=background)
        self.output_dir = output_dir
        self.save_measurement = save_measurement
        self.save_reference = save_reference
        self.records: RunRecords | None = None

    def _files(self, row: dict) -> list[Path]:
        """The PNGs an image needs to count as done: the restoration, and the measurement /
        reference when they are saved — a split either has references or not, so a saved kind
        is expected for every image once its folder exists."""
        records = self.records
        assert records is not None
        files = [records.file_path("restored", row["name"])]
        for kind, on in (
            ("measurement", self.save_measurement),
            ("reference", self.save_reference),
        ):
            if on and (records.run_dir / kind).is_dir():
                files.append(records.file_path(kind, row["name"]))
        return files

    def _owned(self, row: dict) -> list[Path]:
        assert self.records is not None
        return [self.records.file_path(k, row["name"]) for k in ("restored", *_EXTRA_KINDS)]

    def on_setup(self, stage: str) -> None:
        assert self.trainer is not None
        self.records = RunRecords.of(self.trainer, self.output_dir)
        participant = Participant(
            "RestoredImageWriter", self.stages, files=self._files, owned=self._owned
        )
        self.records.join(self.trainer, stage, self, participant)

    def on_start(self, stage: str) -> None:
        assert self.records is not None
        self.records.start(self.trainer)

    def on_batch(self, stage: str, outputs: Any, batch: dict) -> None:
        records = self.records
        assert records is not None
        restored = to_unit(outputs["restored"])
        for k, name in enumerate(batch["name"]):
            save_png(restored[k], records.file_path("restored", name))
            if self.save_measurement and batch.get("lq") is not None:
                save_png(to_unit(batch["lq"][k]), records.file_path("measurement", name))
            if self.save_reference and batch.get("hq") is not None:
                save_png(to_unit(batch["hq"][k]), records.file_path("reference", name))
        rows = [{"index": int(i), "name": str(n)} for i, n in zip(batch["index"], batch["name"])]
        records.add(self.trainer, stage, self, rows)

    def on_end(self, stage: str) -> None:
        assert self.records is not None
        self.records.finish(self.trainer, stage)  # merged CSV (also when no metrics are scored)
