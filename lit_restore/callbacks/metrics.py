"""``RestorationMetrics``: per-image scores, aggregates, cost, CSV, resume, DDP-exact merging.

For every evaluation batch it scores ``outputs["restored"]`` against ``batch["hq"]`` (skipped when
the batch has no reference), in [0, 1], with :class:`lit_restore.metrics.MetricSuite`:

* logs ``{val,test}/{psnr,ssim,lpips,...}`` = **mean of per-image values** (not the PSNR of the
  pooled MSE), ``{stage}/fid`` (+ ``kid``) from per-image Inception features, and the cost
  ``{stage}/seconds_per_image``, ``nfe_per_image`` (means) and ``peak_memory_mb`` (max);
* writes ``per_image_<stage>.csv`` in the run dir (``trainer.log_dir`` unless ``output_dir``):
  ``index, name, <metrics>, seconds_per_image, nfe_per_image, peak_memory_mb``. While running,
  each rank appends fsynced rows to ``per_image_<stage>.rank<r>.part.csv`` (a crash loses at most a
  torn last line, which is ignored on reading); at the end rank 0 writes the merged, index-sorted
  CSV atomically (temp file + ``os.replace``) and ``summary_<stage>.json``;
* stores the FID features of each image as ``fid_features/<index>.npy`` ([2, D]: restored,
  reference), atomically, so FID after a resume still covers every image.

**Resume** (test/predict, ``resume=True``): in ``setup`` — which Lightning calls after the
datamodule's ``setup`` and *before* it requests the dataloaders — the existing CSV and part files
are read and ``trainer.datamodule.skip_indices`` is set to the indices already done (restricted to
those whose PNG exists when a :class:`RestoredImageWriter` is attached). The datamodule leaves those
out of its dataloaders; the final aggregate merges the stored rows, so it equals an uninterrupted
run's.

**DDP**: the datamodule shards without padding; rows and features are ``all_gather_object``-ed and
de-duplicated by ``index``; rank 0 computes the aggregates and broadcasts them, so every image is
counted once and 2 processes give the numbers of 1.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from lit_restore.callbacks._io import (
    COST_COLUMNS,
    append_rows,
    atomic_save_npy,
    atomic_write_text,
    gather_objects,
    read_rows,
    resolve_run_dir,
    rows_to_csv,
    to_unit,
)
from lit_restore.metrics.suite import MetricSuite
from lit_restore.utils.tables import aggregate, format_table

_STAGE_PREFIX = {"validate": "val", "test": "test", "predict": "predict"}


class RestorationMetrics(Callback):
    """Score restorations per image; log aggregates and cost; CSV per image; resumable.

    Args:
        metrics: per-image metrics (``psnr``, ``ssim``, ``lpips``, ``lpips_alex``, ``lpips_vgg``).
        fid: also compute FID (set-level; needs the Inception weights). ``kid`` adds KID.
        perceptual: ``False`` drops LPIPS/FID/KID — runs without any weight file.
        crop_border, y_channel: BasicSR conventions for PSNR/SSIM (SR papers: scale factor, Y).
        quantize: score 8-bit-rounded images (what the written PNGs hold).
        lpips_net: backbone of ``lpips``: ``alex`` or ``vgg``.
        lpips_weights, inception_weights: explicit weight files (else ``$TORCH_HOME`` hub cache).
        output_dir: where the CSV/summary/features go (default ``trainer.log_dir``).
        resume: continue an interrupted test/predict run found in the run dir.
        log_hparams: write method/prior/steps/operator + final metrics to TensorBoard HPARAMS.
        print_table: print the final table to stdout (rank 0).
        lpips_module, fid_features: injected networks (tests use random ones).
    """

    def __init__(
        self,
        metrics: Sequence[str] = ("psnr", "ssim", "lpips"),
        fid: bool = False,
        kid: bool = False,
        perceptual: bool = True,
        crop_border: int = 0,
        y_channel: bool = False,
        quantize: bool = True,
        lpips_net: str = "alex",
        lpips_weights: str | None = None,
        inception_weights: str | None = None,
        output_dir: str | None = None,
        resume: bool = True,
        log_hparams: bool = True,
        print_table: bool = True,
        lpips_module: nn.Module | None = None,
        fid_features: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.suite_kwargs = dict(
            metrics=list(metrics), fid=fid, kid=kid, perceptual=perceptual,
            crop_border=crop_border, y_channel=y_channel, quantize=quantize, lpips_net=lpips_net,
            lpips_weights=lpips_weights, inception_weights=inception_weights,
            lpips_module=lpips_module, fid_features=fid_features,
        )  # fmt: skip
        self.output_dir = output_dir
        self.resume = resume
        self.log_hparams = log_hparams
        self.print_table = print_table
        self.suite: MetricSuite | None = None
        self.run_dir: Path | None = None
        self.stored: dict[str, dict[int, dict]] = {}
        self.rows: dict[int, dict] = {}
        self.feats: dict[int, np.ndarray] = {}
        self.summary: dict[str, float] = {}
        self._finished = False

    # ------------------------------------------------------------------ files
    @property
    def columns(self) -> list[str]:
        assert self.suite is not None
        return ["index", "name", *self.suite.metrics, *COST_COLUMNS]

    def csv_path(self, stage: str) -> Path:
        assert self.run_dir is not None
        return self.run_dir / f"per_image_{stage}.csv"

    def part_path(self, stage: str, rank: int) -> Path:
        assert self.run_dir is not None
        return self.run_dir / f"per_image_{stage}.rank{rank}.part.csv"

    def feature_path(self, index: int) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "fid_features" / f"{index:08d}.npy"

    def _read_stored(self, stage: str) -> dict[int, dict]:
        """Rows of earlier (interrupted) runs: merged CSV + every rank's part file."""
        assert self.run_dir is not None
        done: dict[int, dict] = {}
        paths = [
            self.csv_path(stage),
            *sorted(self.run_dir.glob(f"per_image_{stage}.rank*.part.csv")),
        ]
        for p in paths:
            header, rows = read_rows(p)
            missing = [c for c in self.columns if c not in header]
            if rows and missing:
                raise ValueError(
                    f"{p} was written with other metrics (missing {missing}); resume it with the "
                    "same metric options, use another output_dir, or set resume: false."
                )
            done.update({r["index"]: r for r in rows})
        if self.suite is not None and self.suite.features is not None:  # FID needs the features
            done = {
                i: r for i, r in done.items() if not _has_ref(r) or self.feature_path(i).exists()
            }
        return done

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.suite is None:  # builds the networks; a missing weight file fails here, early
            self.suite = MetricSuite(**self.suite_kwargs)
        self.run_dir = resolve_run_dir(trainer, self.output_dir)
        stage = str(getattr(stage, "value", stage))  # Lightning passes a TrainerFn str-enum
        self._start()
        if stage not in ("test", "predict"):
            return
        if not self.resume:
            if trainer.is_global_zero:
                for p in [
                    self.csv_path(stage),
                    *self.run_dir.glob(f"per_image_{stage}.rank*.part.csv"),
                ]:
                    p.unlink(missing_ok=True)
            trainer.strategy.barrier("lit_restore_metrics_reset")
            self.stored[stage] = {}
            return
        done = self._read_stored(stage)
        writer = _find_writer(trainer)
        if writer is not None:  # an image counts as done only if its PNG was written too
            done = {i: r for i, r in done.items() if writer.has_output(self.run_dir, r["name"])}
        self.stored[stage] = done
        dm = trainer.datamodule
        if done and dm is None:
            raise RuntimeError(
                f"{self.run_dir} holds {len(done)} finished images but there is no datamodule to "
                "skip them; resume needs a datamodule with `skip_indices` (or set resume: false)."
            )
        if dm is not None:
            dm.skip_indices = sorted(done)  # read by the datamodule when it builds dataloaders
        if done and trainer.is_global_zero:
            print(
                f"[RestorationMetrics] resuming: {len(done)} image(s) already done in {self.run_dir}"
            )

    def _start(self) -> None:
        self.rows, self.feats = {}, {}
        self._finished = False

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """A run with no batch left (rerunning an evaluation that is already complete): Lightning
        skips its empty loop and epoch hooks, so the stored rows are merged, written, logged and
        printed here. Under DDP no rank is left empty — the datamodule gives idle ranks a done
        image (de-duplicated by index) — but a rank that had none would join the merge here, its
        collectives pairing with the other ranks' ``on_*_epoch_end``."""
        stage = str(getattr(stage, "value", stage))
        if stage in ("test", "predict") and not self._finished:
            summary = self._finish(trainer, pl_module, stage)
            self._log(trainer, pl_module, summary, stage, logger_only=True)  # no self.log here

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._start()

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start()

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        self._start()

    def _batch_end(self, trainer: L.Trainer, outputs: Any, batch: dict, stage: str) -> None:
        if not isinstance(outputs, dict) or "restored" not in outputs:
            raise TypeError(
                "RestorationMetrics needs the step to return {'restored': ...} "
                "(a lit_restore RestorationModule does)."
            )
        assert self.suite is not None
        restored = outputs["restored"]
        self.suite.to(restored.device)
        idx = [int(i) for i in batch["index"]]
        names = [str(n) for n in batch["name"]]
        scores: dict[str, torch.Tensor] = {}
        feats = None
        if batch.get("hq") is not None:
            x, ref = to_unit(restored), to_unit(batch["hq"])
            scores = self.suite.per_image(x, ref)
            if self.suite.features is not None:
                feats = torch.stack(
                    [self.suite.image_features(x), self.suite.image_features(ref)], 1
                )
        rows = []
        for k, (i, name) in enumerate(zip(idx, names)):
            row: dict[str, Any] = {"index": i, "name": name}
            for m in self.suite.metrics:
                row[m] = float(scores[m][k]) if m in scores else float("nan")
            for c in COST_COLUMNS:
                row[c] = float(outputs.get(c, float("nan")))
            rows.append(row)
            self.rows[i] = row
            if feats is not None:
                self.feats[i] = feats[k].numpy()
                if stage != "validate":
                    atomic_save_npy(self.feature_path(i), self.feats[i])
        if stage != "validate":  # features first, then the row: a row implies its features exist
            append_rows(self.part_path(stage, trainer.global_rank), rows, self.columns)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ):
        if not trainer.sanity_checking:
            self._batch_end(trainer, outputs, batch, "validate")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._batch_end(trainer, outputs, batch, "test")

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._batch_end(trainer, outputs, batch, "predict")

    # --------------------------------------------------------------- epoch end
    def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> dict:
        assert self.suite is not None
        gathered = gather_objects(trainer, (self.rows, self.feats))
        summary: dict[str, float] = {}
        if trainer.is_global_zero:
            merged = dict(self.stored.get(stage, {})) if stage != "validate" else {}
            feats: dict[int, np.ndarray] = {}
            for rows, fts in gathered:  # de-duplicate by dataset index
                merged.update(rows)
                feats.update(fts)
            ordered = [merged[i] for i in sorted(merged)]
            summary = self._aggregate(ordered, feats, merged, stage)
            if stage != "validate":
                atomic_write_text(self.csv_path(stage), rows_to_csv(ordered, self.columns))
                atomic_write_text(
                    self.run_dir / f"summary_{stage}.json",
                    json.dumps(
                        {"metrics": summary, "hparams": _hparams(trainer, pl_module)}, indent=2
                    ),
                )
        summary = trainer.strategy.broadcast(summary, src=0)
        self._finished = True
        if stage != "validate":
            trainer.strategy.barrier("lit_restore_metrics_csv")
            self.part_path(stage, trainer.global_rank).unlink(missing_ok=True)  # merged now
        self.summary = summary
        return summary

    def _aggregate(self, ordered: list[dict], feats: dict, merged: dict, stage: str) -> dict:
        assert self.suite is not None
        summary: dict[str, float] = {"images": float(len(ordered))}
        for m in self.suite.metrics:
            summary[m] = aggregate(r[m] for r in ordered)
        if self.suite.set_metrics:
            with_ref = [i for i in sorted(merged) if _has_ref(merged[i])]
            for i in with_ref:
                if i not in feats and stage != "validate":
                    feats[i] = np.load(self.feature_path(i))
            if len(with_ref) >= 2:
                f = torch.from_numpy(np.stack([feats[i] for i in with_ref]))
                summary.update(self.suite.set_level(f[:, 0], f[:, 1]))
        summary["seconds_per_image"] = aggregate(r["seconds_per_image"] for r in ordered)
        summary["nfe_per_image"] = aggregate(r["nfe_per_image"] for r in ordered)
        mem = [r["peak_memory_mb"] for r in ordered if not math.isnan(r["peak_memory_mb"])]
        summary["peak_memory_mb"] = max(mem) if mem else float("nan")
        return summary

    def _log(
        self, trainer, pl_module, summary: dict, stage: str, logger_only: bool = False
    ) -> None:
        prefix = _STAGE_PREFIX[stage]
        values = {
            f"{prefix}/{k}": v for k, v in summary.items() if k != "images" and not math.isnan(v)
        }
        if stage == "predict" or logger_only:  # self.log is not allowed in predict hooks/teardown
            if trainer.logger is not None and trainer.is_global_zero:
                trainer.logger.log_metrics(values, step=trainer.global_step)
        else:
            for k, v in values.items():
                # identical on every rank (broadcast above); no sync_dist: a rank whose loop was
                # empty (see teardown) would never join that all-reduce
                pl_module.log(k, v, sync_dist=False)
        if stage == "validate" or not trainer.is_global_zero:
            return
        if self.print_table:
            print(
                format_table(summary, f"{prefix} metrics — mean of per-image values "
                             f"({int(summary['images'])} images) → {self.csv_path(stage)}")
            )  # fmt: skip
        if self.log_hparams and isinstance(trainer.logger, TensorBoardLogger):
            trainer.logger.log_hyperparams(_hparams(trainer, pl_module), values)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._log(trainer, pl_module, self._finish(trainer, pl_module, "validate"), "validate")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._log(trainer, pl_module, self._finish(trainer, pl_module, "test"), "test")

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        self._log(trainer, pl_module, self._finish(trainer, pl_module, "predict"), "predict")


def _has_ref(row: dict) -> bool:
    vals = [v for k, v in row.items() if k not in ("index", "name", *COST_COLUMNS)]
    return any(not math.isnan(v) for v in vals)


def _find_writer(trainer: L.Trainer):
    from lit_restore.callbacks.writer import RestoredImageWriter

    for cb in trainer.callbacks:
        if isinstance(cb, RestoredImageWriter):
            return cb
    return None


def _hparams(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
    """The run's identity for HPARAMS: ``pl_module.run_hparams()`` + the datamodule's operator."""
    hp: dict[str, Any] = {}
    if hasattr(pl_module, "run_hparams"):
        hp.update(pl_module.run_hparams())
    dm = trainer.datamodule
    op = getattr(dm, "operator", None) if dm is not None else None
    if op is not None and "operator" not in hp:
        hp["operator"] = type(op).__name__
    noise = getattr(dm, "noise", None) if dm is not None else None
    if noise is not None and "sigma_y" not in hp and hasattr(noise, "sigma"):
        hp["sigma_y"] = float(noise.sigma)
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hp.items()}
