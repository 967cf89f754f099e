"""``RunRecords``: the per-image records of an evaluation run directory.

The evaluation callbacks of one trainer (metrics, image writer) share one ``RunRecords``
(:meth:`RunRecords.of`); they never look each other up. Each callback *joins* the records in its
``setup`` as a participant that declares

* the CSV columns it fills (the metric callback: metrics and cost), and
* the files it writes for an image (the writer: its PNGs; the metric callback: FID features).

An image's row is **committed** — appended, fsynced, to ``per_image_<stage>.rank<r>.part.csv`` —
only when every participant of the stage has reported it (:meth:`RunRecords.add`), i.e. after all
of its files were written (atomically, :func:`lit_restore.utils.tables.atomic_write_bytes`). A
crash loses at most a torn last line, which is ignored on reading. At the end of the epoch
(:meth:`RunRecords.finish`) the rows of every DDP rank are gathered, de-duplicated by dataset
index and merged with the rows of earlier runs; rank 0 writes ``per_image_<stage>.csv``
(index-sorted, atomically) and each rank removes its part file.

**Resume** (test/predict): when a participant joins, the stored rows (merged CSV + part files)
are read and an image counts as *done* when its row exists and every participant's files for it
exist. The datamodule is told to leave the done images out of its loaders through its public
``exclude(indices)`` (Lightning calls every callback's ``setup`` before it requests the
dataloaders, so the last participant to join decides); the final CSV then holds the stored and
the new rows, and aggregates equal an uninterrupted run's.
"""

from __future__ import annotations

import io
import os
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from lit_restore.utils.tables import (
    append_rows,
    atomic_write_bytes,
    atomic_write_text,
    read_rows,
    rows_to_csv,
    safe_relpath,
)

#: stages whose records are files in the run dir (validation keeps them in memory only)
PERSISTENT_STAGES = ("test", "predict")


def resolve_run_dir(trainer: L.Trainer, output_dir: str | os.PathLike | None) -> Path:
    """``output_dir`` if given, else the logger's run dir (``trainer.log_dir``; rank-0 broadcast)."""
    d = output_dir if output_dir is not None else trainer.log_dir
    if d is None:
        d = trainer.default_root_dir
    return Path(d)


def gather_objects(trainer: L.Trainer, obj: Any) -> list[Any]:
    """``all_gather_object`` across ranks (a one-element list without DDP)."""
    if (
        trainer.world_size > 1
        and torch.distributed.is_available()
        and torch.distributed.is_initialized()
    ):
        out: list[Any] = [None] * trainer.world_size
        torch.distributed.all_gather_object(out, obj)
        return out
    return [obj]


def atomic_save_npy(path: Path, a: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, a)
    atomic_write_bytes(path, buf.getvalue())


@dataclass(frozen=True)
class Participant:
    """What one callback contributes to the records of its ``stages``.

    Attributes:
        name: shown in messages.
        stages: the evaluation stages it reports images in.
        columns: CSV columns it fills (after ``index``, ``name``).
        files: ``files(row) -> paths`` it wrote for the image of ``row``; an image counts as done
            only when all exist.
    """

    name: str
    stages: tuple[str, ...]
    columns: tuple[str, ...] = ()
    files: Callable[[dict], Iterable[Path]] | None = None


_RECORDS: weakref.WeakKeyDictionary[L.Trainer, RunRecords] = weakref.WeakKeyDictionary()


class RunRecords:
    """Per-image records of one run directory (module docstring). Get it with :meth:`of`."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.stage: str | None = None
        self.participants: dict[int, Participant] = {}
        self.columns: list[str] = ["index", "name"]
        #: rows of earlier runs in this dir (persistent stages), by dataset index
        self.stored: dict[int, dict] = {}
        #: indices whose row and files are complete in the run dir (left out of the loaders)
        self.done: set[int] = set()
        #: rows committed in this epoch, by dataset index
        self.rows: dict[int, dict] = {}
        self._pending: dict[int, dict] = {}
        self._reported: dict[int, set[int]] = {}
        self._merged: list[dict] | None = None

    @classmethod
    def of(cls, trainer: L.Trainer, output_dir: str | os.PathLike | None = None) -> RunRecords:
        """The records of ``trainer``'s run (one object per trainer, shared by its callbacks)."""
        run_dir = resolve_run_dir(trainer, output_dir)
        records = _RECORDS.get(trainer)
        if records is None:
            records = _RECORDS[trainer] = cls(run_dir)
        elif records.run_dir != run_dir:
            raise ValueError(
                f"evaluation callbacks of one run write to different directories ({records.run_dir}"
                f" and {run_dir}); give them the same output_dir (or none: the logger's run dir)."
            )
        return records

    # ------------------------------------------------------------------ paths
    def csv_path(self, stage: str) -> Path:
        return self.run_dir / f"per_image_{stage}.csv"

    def part_path(self, stage: str, rank: int) -> Path:
        return self.run_dir / f"per_image_{stage}.rank{rank}.part.csv"

    def part_paths(self, stage: str) -> list[Path]:
        return sorted(self.run_dir.glob(f"per_image_{stage}.rank*.part.csv"))

    def file_path(self, kind: str, name: str, suffix: str = ".png") -> Path:
        """``<run_dir>/<kind>/<name><suffix>`` for an image ``name`` (a dataset file stem)."""
        return self.run_dir / kind / f"{safe_relpath(name)}{suffix}"

    # ------------------------------------------------------------------ joining
    def join(
        self,
        trainer: L.Trainer,
        stage: str,
        key: object,
        participant: Participant,
        resume: bool = True,
    ) -> None:
        """Register ``key`` (a callback) as ``participant`` for the trainer call ``stage``.

        A callback that joins again starts a new trainer call: the records are reset. For
        test/predict the stored rows are re-read and the done images are handed to the
        datamodule (``resume=False``: the stage's rows are deleted and everything is redone).
        """
        if id(key) in self.participants or stage != self.stage:
            self._reset(stage)
        self.participants[id(key)] = participant
        for c in participant.columns:
            if c not in self.columns:
                self.columns.append(c)
        if stage not in PERSISTENT_STAGES:
            return
        if not resume:
            if trainer.is_global_zero:
                for p in [self.csv_path(stage), *self.part_paths(stage)]:
                    p.unlink(missing_ok=True)
            trainer.strategy.barrier("lit_restore_records_reset")
        self.stored = self._read_stored(stage)
        self.done = {i for i, row in self.stored.items() if self._complete(row)}
        self._exclude_done(trainer)

    def _reset(self, stage: str) -> None:
        self.stage = stage
        self.participants = {}
        self.columns = ["index", "name"]
        self.stored, self.done = {}, set()
        self.start()

    def start(self) -> None:
        """A new evaluation epoch: forget this epoch's rows (the stored ones stay)."""
        self.rows, self._pending, self._reported = {}, {}, {}
        self._merged = None

    def _read_stored(self, stage: str) -> dict[int, dict]:
        """Rows of earlier (interrupted) runs: the merged CSV + every rank's part file."""
        stored: dict[int, dict] = {}
        for p in [self.csv_path(stage), *self.part_paths(stage)]:
            header, rows = read_rows(p)
            missing = [c for c in self.columns if c not in header]
            if rows and missing:
                raise ValueError(
                    f"{p} was written with other metrics (missing {missing}); resume it with the "
                    "same metric options, use another output_dir, or set resume: false."
                )
            stored.update({r["index"]: r for r in rows})
        return stored

    def _complete(self, row: dict) -> bool:
        return all(
            path.exists()
            for p in self.participants.values()
            if p.files is not None
            for path in p.files(row)
        )

    def _exclude_done(self, trainer: L.Trainer) -> None:
        dm = trainer.datamodule
        exclude = getattr(dm, "exclude", None)
        if exclude is None:
            if self.done:
                raise RuntimeError(
                    f"{self.run_dir} holds {len(self.done)} finished images but the datamodule "
                    "cannot leave them out (it has no `exclude(indices)`); set resume: false."
                )
            return
        exclude(sorted(self.done))

    # ------------------------------------------------------------------ rows
    def _members(self, stage: str) -> set[int]:
        return {k for k, p in self.participants.items() if stage in p.stages}

    def add(self, trainer: L.Trainer, stage: str, key: object, rows: Sequence[dict]) -> None:
        """``key`` reports the images of ``rows`` (``index``, ``name`` and its columns).

        A row is committed once every participant of ``stage`` has reported its image; in
        test/predict committed rows are appended to this rank's part file."""
        members = self._members(stage)
        ready = []
        for row in rows:
            i = int(row["index"])
            self._pending.setdefault(i, {}).update(row)
            reported = self._reported.setdefault(i, set())
            reported.add(id(key))
            if reported >= members:
                ready.append(self._pending.pop(i))
                del self._reported[i]
        for row in ready:
            self.rows[int(row["index"])] = row
        if ready and stage in PERSISTENT_STAGES:
            append_rows(self.part_path(stage, trainer.global_rank), ready, self.columns)

    def finish(self, trainer: L.Trainer, stage: str) -> list[dict]:
        """All rows of the run (stored + every rank's, de-duplicated by index), index-sorted.

        The first call of an epoch gathers (a collective: every rank calls it) and, in
        test/predict, writes the merged CSV (rank 0) and removes the part files; later calls
        return the same rows."""
        if self._merged is not None:
            return self._merged
        gathered = gather_objects(trainer, self.rows)
        merged = dict(self.stored) if stage in PERSISTENT_STAGES else {}
        for rows in gathered:
            merged.update(rows)
        ordered = [merged[i] for i in sorted(merged)]
        if stage in PERSISTENT_STAGES:
            if trainer.is_global_zero:
                atomic_write_text(self.csv_path(stage), rows_to_csv(ordered, self.columns))
            trainer.strategy.barrier("lit_restore_records_csv")
            self.part_path(stage, trainer.global_rank).unlink(missing_ok=True)  # merged now
        self._merged = ordered
        return ordered
