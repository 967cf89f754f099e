"""``RunRecords``: the per-image records of an evaluation run directory, and when to trust them.

The evaluation callbacks of one trainer (metrics, image writer) share one ``RunRecords``
(:meth:`RunRecords.of`); they never look each other up. Each callback *joins* the records in its
``setup`` as a participant that declares

* the CSV columns it fills (the metric callback: metrics, flags and cost),
* the files it writes for an image (the writer: its PNGs; the metric callback: FID features),
* its part of the run's fingerprint (the metric callback: the metric options).

**Commit.** An image's row is appended, fsynced, to ``per_image_<stage>.rank<r>.part.csv`` only
when every participant of the stage has reported it (:meth:`RunRecords.add`), i.e. after all of
its files were written (atomically: :func:`lit_restore.utils.tables.atomic_write_bytes`). A crash
loses at most a torn last line, which is ignored on reading. At the end of the epoch
(:meth:`RunRecords.finish`) the rows of every DDP rank are gathered, de-duplicated by dataset
index and merged with the stored rows; rank 0 writes ``per_image_<stage>.csv`` (index-sorted,
atomically) and each rank removes its part file.

**Resume only what matches** (test/predict). ``fingerprint_<stage>.json``
(:mod:`lit_restore.evaluation.fingerprint`) records everything that determines the outputs.
A run into a directory that holds results

* with the same fingerprint **resumes**: an image is *done* when its row exists and every file a
  participant declares for it is complete (a PNG that decodes, a feature file that loads); done
  images are left out through the datamodule's public ``exclude(indices)``, the rest is redone,
  and stray temporary files of a killed run are removed;
* with another fingerprint (or none: an older run) is **refused** with one line naming what
  changed and the two ways out: a new run version, or overwriting (``resume: false`` on
  :class:`~lit_restore.evaluation.RestorationMetrics`, or ``LIT_RESTORE_OVERWRITE=1`` in the
  environment), which removes the old results first.

The check runs twice. In ``setup`` (Lightning calls every callback's ``setup`` before
``LightningCLI`` writes ``config.yaml`` and before the dataloaders are built) it compares what is
known then: model, data, precision, seed and the options of the callbacks that joined; it refuses
as soon as the participant that carries the ``resume`` option (the metric callback) has joined
without asking to overwrite. When the epoch starts — after Lightning restored any ``ckpt_path`` —
it compares everything, the model's weights included; a refusal there puts back the
``config.yaml``/``hparams.yaml`` Lightning rewrote in between. Either way, a refused run leaves
every existing file as it was and removes the TensorBoard event file it had opened.

**Job-array shards** (``data.init_args.shard: "i/N"``, :class:`lit_restore.data.sharding.Shard`):
a shard is a run of its own. Its record files carry the shard's tag —
``per_image_<stage>.shard<i>of<N>.csv``, ``fingerprint_<stage>.shard<i>of<N>.json``,
``summary_<stage>.shard<i>of<N>.json``, ... (:meth:`RunRecords.stage_file`) — so N shards can
write into one run directory at the same time (their images are disjoint) or into N
directories; a killed shard resumes like any run. Its temp-file cleanup leaves other shards'
files alone (their writers may be running): stray temp files of images are removed by the merge
(:mod:`lit_restore.evaluation.merge`), which joins the shards by index once all are complete.
"""

from __future__ import annotations

import io
import os
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from PIL import Image

from lit_restore.evaluation import fingerprint
from lit_restore.utils.tables import (
    TEMP_SUFFIX,
    append_rows,
    atomic_write_bytes,
    atomic_write_text,
    read_rows,
    rows_to_csv,
    safe_relpath,
)

#: stages whose records are files in the run dir (validation keeps them in memory only)
PERSISTENT_STAGES = ("test", "predict")
#: set to 1 to replace the results found in a run dir instead of resuming them
OVERWRITE_ENV = "LIT_RESTORE_OVERWRITE"
#: files Lightning rewrites between ``setup`` and the start of the epoch (restored on refusal)
_LIGHTNING_FILES = ("config.yaml", "hparams.yaml")


class RunMismatchError(ValueError):
    """The run dir holds results made with other settings (or of unknown settings)."""


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


#: the last 12 bytes of every PNG: the empty IEND chunk and its CRC (PNG spec, section 11.2.5)
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def is_complete(path: Path) -> bool:
    """Whether ``path`` exists and is a whole file: a PNG that ends with its IEND chunk and whose
    chunk checksums verify (PIL ``verify``; no pixel decoding), an ``.npy`` whose array loads;
    any other file: it exists."""
    try:
        if path.suffix.lower() == ".png":
            with open(path, "rb") as f:
                f.seek(-len(_PNG_END), os.SEEK_END)
                if f.read() != _PNG_END:
                    return False
            with Image.open(path) as img:
                img.verify()
        elif path.suffix.lower() == ".npy":
            np.load(path)
        else:
            return path.is_file()
    except Exception:  # missing, truncated, corrupt: not done
        return False
    return True


def _event_files(trainer: L.Trainer) -> list[Path]:
    """The TensorBoard event files this run's loggers opened (Lightning opens them before
    ``setup``). Read from the writer (``SummaryWriter`` → ``EventFileWriter._file_name``); a
    logger of another kind contributes none."""
    files = []
    for logger in trainer.loggers:
        try:
            writer = logger.experiment._get_file_writer().event_writer
            files.append(Path(writer._file_name))
        except Exception:  # another logger or writer: nothing known to remove
            continue
    return files


@dataclass(frozen=True)
class Participant:
    """What one callback contributes to the records of its ``stages``.

    Attributes:
        name: shown in messages.
        stages: the evaluation stages it reports images in.
        columns: CSV columns it fills (after ``index``, ``name``).
        files: ``files(row) -> paths`` it wrote for the image of ``row``; an image counts as done
            only when all are complete (:func:`is_complete`).
        owned: ``owned(row) -> paths`` removed when the run is overwritten (default ``files``).
        fingerprint: its fingerprint parts (``{"<section>.<option>": value}``).
        decides_resume: it carries the run's ``resume`` option. A mismatch found before it joined
            is held until it does (it may ask to overwrite) — or, without such a participant,
            until the epoch starts.
    """

    name: str
    stages: tuple[str, ...]
    columns: tuple[str, ...] = ()
    files: Callable[[dict], Iterable[Path]] | None = None
    owned: Callable[[dict], Iterable[Path]] | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)
    decides_resume: bool = False


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
        self.overwrite = False
        self._artifacts: set[Path] = set()
        self._pending: dict[int, dict] = {}
        self._reported: dict[int, set[int]] = {}
        self._merged: list[dict] | None = None
        self._verified = False
        self._refusal: str | None = None
        self._snapshot: dict[str, bytes | None] = {}
        #: ``.shard<i>of<N>`` when the datamodule is a job-array shard, else ``""``
        self.shard_suffix = ""

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
        shard = getattr(trainer.datamodule, "shard_spec", None)
        records.shard_suffix = f".{shard.tag}" if shard is not None else ""
        return records

    # ------------------------------------------------------------------ paths
    def stage_file(self, stem: str, stage: str, suffix: str) -> Path:
        """``<run_dir>/<stem>_<stage>[.shard<i>of<N>]<suffix>``: a stage-level file of this run
        (of this shard, in a job array)."""
        return self.run_dir / f"{stem}_{stage}{self.shard_suffix}{suffix}"

    def csv_path(self, stage: str) -> Path:
        return self.stage_file("per_image", stage, ".csv")

    def part_path(self, stage: str, rank: int) -> Path:
        return self.stage_file("per_image", stage, f".rank{rank}.part.csv")

    def part_paths(self, stage: str) -> list[Path]:
        return sorted(self.run_dir.glob(f"per_image_{stage}{self.shard_suffix}.rank*.part.csv"))

    def fingerprint_path(self, stage: str) -> Path:
        return self.stage_file("fingerprint", stage, ".json")

    def file_path(self, kind: str, name: str, suffix: str = ".png") -> Path:
        """``<run_dir>/<kind>/<name><suffix>`` for an image ``name`` (a dataset file stem)."""
        return self.run_dir / kind / f"{safe_relpath(name)}{suffix}"

    def artifact(self, path: Path) -> Path:
        """Declare a stage-level output (summary, grid): removed when the run is overwritten."""
        self._artifacts.add(path)
        return path

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

        A callback that joins again starts a new trainer call: the records are reset. In
        test/predict the stored rows are read, checked against this run's fingerprint (refused:
        :class:`RunMismatchError`) and the done images are handed to the datamodule.
        ``resume=False`` (or ``LIT_RESTORE_OVERWRITE=1``): the stored results are replaced.
        """
        first = id(key) in self.participants or stage != self.stage
        if first:
            self._reset(stage)
        self.participants[id(key)] = participant
        for c in participant.columns:
            if c not in self.columns:
                self.columns.append(c)
        if stage not in PERSISTENT_STAGES:
            return
        if first:
            self._cleanup_temporary_files(trainer)
            self._snapshot = {
                n: (self.run_dir / n).read_bytes() if (self.run_dir / n).is_file() else None
                for n in _LIGHTNING_FILES
            }
        self.overwrite = self.overwrite or not resume or os.environ.get(OVERWRITE_ENV) == "1"
        self.stored = self._read_stored(stage, check_columns=not self.overwrite)
        self._refusal = None if self.overwrite else self._mismatch(trainer, final=False)
        if self._refusal is not None and any(
            p.decides_resume for p in self.participants.values()
        ):  # the one that may still ask to overwrite has joined and did not: refuse now
            self._refuse(trainer, self._refusal)
        if self.overwrite or self._refusal is not None:
            self.done = set()
        else:
            self.done = {i for i, row in self.stored.items() if self._complete(row)}
        self._exclude_done(trainer)

    def _reset(self, stage: str) -> None:
        self.stage = stage
        self.participants = {}
        self.columns = ["index", "name"]
        self.stored, self.done = {}, set()
        self.overwrite = False
        self._artifacts = set()
        self._verified = False
        self._refusal = None
        self.rows, self._pending, self._reported, self._merged = {}, {}, {}, None

    def _cleanup_temporary_files(self, trainer: L.Trainer) -> None:
        """Remove the temp files a killed run left (``.<name>.<pid>.<random>.tmp``): no rank has
        written anything yet in this run. A shard removes only those of its own record files
        (other shards may be writing into the same directory now)."""
        if trainer.is_global_zero and self.run_dir.is_dir():
            shard = f"{self.shard_suffix}*" if self.shard_suffix else ""
            for p in self.run_dir.rglob(f".*{shard}{TEMP_SUFFIX}"):
                p.unlink(missing_ok=True)
        trainer.strategy.barrier("lit_restore_records_cleanup")

    def _read_stored(self, stage: str, check_columns: bool) -> dict[int, dict]:
        """Rows of earlier (interrupted) runs: the merged CSV + every rank's part file."""
        stored: dict[int, dict] = {}
        for p in [self.csv_path(stage), *self.part_paths(stage)]:
            header, rows = read_rows(p)
            missing = [c for c in self.columns if c not in header]
            if rows and missing and check_columns:
                raise RunMismatchError(
                    f"{p} was written without the columns {missing} this run writes; "
                    + self._ways_out()
                )
            stored.update({r["index"]: r for r in rows})
        return stored

    def _complete(self, row: dict) -> bool:
        return all(
            is_complete(path)
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

    # ------------------------------------------------------------------ fingerprint
    def fingerprint_parts(self, trainer: L.Trainer, final: bool) -> dict[str, Any]:
        """This run's fingerprint (``final``: with the model's weights, known after any
        checkpoint was restored)."""
        parts: dict[str, Any] = {}
        module = trainer.lightning_module
        fingerprint.describe(module, "model", parts)
        if trainer.datamodule is not None:
            fingerprint.describe(trainer.datamodule, "data", parts)
        parts["trainer.precision"] = str(trainer.precision)
        parts["seed"] = os.environ.get("PL_GLOBAL_SEED")
        for p in self.participants.values():
            parts.update(p.fingerprint)
        if final:
            parts["model.weights"] = fingerprint.state_digest(module)
        return parts

    def _ways_out(self) -> str:
        return (
            "to keep both, run into a new version (--trainer.logger.init_args.version NAME; "
            "unset, Lightning picks the next version_N); to replace the stored results, rerun "
            f"with {OVERWRITE_ENV}=1 (or resume: false on RestorationMetrics)."
        )

    def _mismatch(self, trainer: L.Trainer, final: bool) -> str | None:
        """Why the stored results cannot be resumed by this run (``None``: they can).

        Before the epoch (``final=False``) only the parts known in ``setup`` are compared."""
        if not self.stored:
            return None  # nothing to resume: any settings may start here
        path = self.fingerprint_path(self.stage or "")
        old = fingerprint.read(path)
        n = len(self.stored)
        if old is None:
            return (
                f"{self.run_dir} holds {n} results but no readable {path.name} (written by an "
                f"older lit_restore, or copied), so they cannot be checked against this run; "
                + self._ways_out()
            )
        new = self.fingerprint_parts(trainer, final)
        if not final:
            old = {k: old.get(k, "(absent)") for k in new}
        if old == new:
            return None
        return (
            f"{self.run_dir} holds {n} results made with other settings: "
            f"{fingerprint.differences(old, new)}; " + self._ways_out()
        )

    def _refuse(self, trainer: L.Trainer, message: str) -> None:
        """Leave the run dir as it was (see the module docstring) and raise."""
        if trainer.is_global_zero:
            for name, data in self._snapshot.items():
                path = self.run_dir / name
                if data is None:
                    path.unlink(missing_ok=True)
                elif not path.is_file() or path.read_bytes() != data:
                    atomic_write_bytes(path, data)
            for path in _event_files(trainer):
                if path.parent.resolve() == self.run_dir.resolve():
                    path.unlink(missing_ok=True)
        raise RunMismatchError(message)

    def _verify(self, trainer: L.Trainer) -> None:
        """Before the first write of the epoch: the full check (or the overwrite), then this
        run's fingerprint is stored."""
        if self._verified or self.stage not in PERSISTENT_STAGES:
            return
        self._verified = True
        stage = self.stage
        if self.overwrite:
            if trainer.is_global_zero:
                for path in self._owned_files(stage):
                    path.unlink(missing_ok=True)
            self.stored, self.done = {}, set()
        else:
            refusal = self._refusal or self._mismatch(trainer, final=True)
            if refusal is not None:
                self._refuse(trainer, refusal)
        if trainer.is_global_zero:
            parts = self.fingerprint_parts(trainer, final=True)
            atomic_write_text(self.fingerprint_path(stage), fingerprint.to_json(parts))
        trainer.strategy.barrier("lit_restore_records_verified")

    def _owned_files(self, stage: str) -> list[Path]:
        files = [
            path
            for row in self.stored.values()
            for p in self.participants.values()
            for path in (p.owned or p.files or (lambda r: []))(row)
        ]
        return [
            *files,
            *self._artifacts,
            self.csv_path(stage),
            *self.part_paths(stage),
            self.fingerprint_path(stage),
        ]

    # ------------------------------------------------------------------ rows
    def start(self, trainer: L.Trainer) -> None:
        """A new evaluation epoch: forget this epoch's rows (the stored ones stay); the first
        start of a test/predict run verifies the fingerprint."""
        self.rows, self._pending, self._reported = {}, {}, {}
        self._merged = None
        self._verify(trainer)

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
        self._verify(trainer)  # an empty loop (all done) never started an epoch
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
