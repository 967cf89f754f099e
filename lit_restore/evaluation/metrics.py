"""``RestorationMetrics``: per-image scores, aggregates and cost of an evaluation.

For every evaluation batch it scores ``outputs["restored"]`` in [0, 1] with
:class:`lit_restore.metrics.MetricSuite` — against ``batch["hq"]`` for full-reference metrics
(skipped when the batch has no reference), alone for no-reference ones — and

* logs ``{val,test}/{psnr,ssim,lpips,...}`` = **mean of per-image values** (not the PSNR of the
  pooled MSE), ``{stage}/fid`` (+ ``kid``) from per-image features, and the cost
  ``{stage}/seconds_per_image``, ``nfe_per_image`` (means) and ``peak_memory_mb`` (max);
* flags diverged images (clipped far beyond the reference: :mod:`lit_restore.metrics.divergence`)
  in a ``diverged`` column, counts them in the summary and names them in one warning;
* reports one row per image to the run's :class:`~lit_restore.evaluation.records.RunRecords`
  (``index, name, <metrics>, diverged, seconds_per_image, nfe_per_image, peak_memory_mb`` →
  ``per_image_<stage>.csv``, resumable, fingerprinted, DDP-exact) and writes
  ``summary_<stage>.json``;
* stores the FID features of each image as ``fid_features/<index>.npy`` ([2, D]: restored,
  reference), atomically and before its row, so FID after a resume still covers every image.

**DDP**: rows come merged and de-duplicated from the records; features are gathered here; rank 0
computes the aggregates and broadcasts them, so every image counts once and 2 processes give
the numbers of 1.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

from lit_restore.evaluation.base import STAGE_PREFIX, EvaluationCallback, to_unit
from lit_restore.evaluation.fingerprint import state_digest
from lit_restore.evaluation.records import (
    PERSISTENT_STAGES,
    Participant,
    RunRecords,
    atomic_save_npy,
    gather_objects,
)
from lit_restore.metrics.divergence import diverged
from lit_restore.metrics.scorer import MetricSuite
from lit_restore.utils.hparams import run_hparams
from lit_restore.utils.loggers import log_hparams
from lit_restore.utils.tables import (
    COST_COLUMNS,
    FLAG_COLUMNS,
    aggregate,
    atomic_write_text,
    format_table,
)

#: folder of the per-image FID/KID features in a run dir (``<index:08d>.npy``, [2, D])
FEATURES_DIR = "fid_features"


def feature_path(run_dir: Path, index: int) -> Path:
    """``<run_dir>/fid_features/<index:08d>.npy``: the stored features of image ``index``."""
    return run_dir / FEATURES_DIR / f"{int(index):08d}.npy"


def write_summary(path: Path, metrics: dict[str, float], hparams: dict[str, Any]) -> None:
    """``summary_<stage>.json``: the run's final metrics and its flat hyper-parameters, written
    atomically (by the metric callback, and by the shard merge for the merged run)."""
    atomic_write_text(path, json.dumps({"metrics": metrics, "hparams": hparams}, indent=2))


def summarize(
    rows: Sequence[dict],
    metrics: Sequence[str],
    with_reference: Sequence[int],
    features: Callable[[int], np.ndarray],
    set_level: Callable[[Tensor, Tensor], dict[str, float]],
) -> dict[str, float]:
    """The summary of a run from its index-sorted per-image ``rows``: ``images``, the mean of
    each per-image metric (:func:`~lit_restore.utils.tables.aggregate`), the ``diverged``
    count, the set-level metrics (FID/KID) of the images ``with_reference`` from their stored
    features (``features(index)`` -> ``[2, D]``: restored, reference; stacked in index order),
    and the cost (mean seconds and NFE per image, peak memory).

    One function for the callback and the shard merge (:mod:`lit_restore.evaluation.merge`), so
    a merged run's summary is computed exactly as a single run's."""
    summary: dict[str, float] = {"images": float(len(rows))}
    for m in metrics:
        summary[m] = aggregate(r[m] for r in rows)
    summary["diverged"] = float(sum(r["diverged"] == 1 for r in rows))  # a count
    if len(with_reference) >= 2:
        f = torch.from_numpy(np.stack([features(i) for i in with_reference]))
        summary.update(set_level(f[:, 0], f[:, 1]))
    summary["seconds_per_image"] = aggregate(r["seconds_per_image"] for r in rows)
    summary["nfe_per_image"] = aggregate(r["nfe_per_image"] for r in rows)
    mem = [r["peak_memory_mb"] for r in rows if not math.isnan(r["peak_memory_mb"])]
    summary["peak_memory_mb"] = max(mem) if mem else float("nan")
    return summary


class RestorationMetrics(EvaluationCallback):
    """Score restorations per image; log aggregates and cost; CSV per image; resumable.

    Args:
        metrics: per-image metrics, by registry name (:mod:`lit_restore.metrics.registry`:
            ``psnr``, ``ssim``, ``lpips``, ``lpips_alex``, ``lpips_vgg``, and the no-reference
            ``niqe``, ``musiq``, ``maniqa``, ``clipiqa``, which also score inputs without a
            reference, e.g. ``sample.py predict`` on an ``LQFolder``; their columns name the
            implementation, e.g. ``clipiqa[pyiqa:clipiqa]``).
        fid: also compute FID (set-level; needs the Inception weights). ``kid`` adds KID.
        perceptual: ``"auto"`` (default): LPIPS/FID/KID are scored and logged when their weight
            files are present, and left out otherwise with one warning naming the fetch command
            (``python -m lit_restore.weights alexnet inception``); ``True``: required (a missing
            file is an error); ``False``: never (runs without any weight file).
        crop_border, y_channel: BasicSR conventions for PSNR/SSIM (SR papers: scale factor, Y).
        quantize: score 8-bit-rounded images (what the written PNGs hold).
        lpips_net: backbone of ``lpips``: ``alex`` or ``vgg``.
        lpips_weights, inception_weights: explicit weight files (else ``$TORCH_HOME`` hub cache).
        output_dir: where the CSV/summary/features go (default ``trainer.log_dir``).
        resume: continue an interrupted test/predict run found in the run dir (only if it was
            made with the same settings: :mod:`lit_restore.evaluation.records`); ``False``
            replaces the stored results instead.
        log_hparams: log the run's hyper-parameters (the resolved model and data init args,
            flat: :mod:`lit_restore.utils.hparams`) with the final metrics through every
            logger's ``log_hyperparams`` (TensorBoard's HPARAMS tab, ``hparams.yaml``, W&B,
            MLflow); the same dict is ``hparams`` in ``summary_<stage>.json``.
        print_table: print the final table to stdout (rank 0).
        lpips_module, fid_features: injected networks (tests use random ones).
        background: score and write on the background worker while the next batch is restored
            (:mod:`lit_restore.evaluation.base`); ``false``: in the loop.
        niqe_weights: NIQE pristine-model ``.mat`` (else the cache: ``niqe-pristine``).
        clip_model: Hugging Face CLIP folder of ``clipiqa[torchmetrics:...]`` (else the cache).
    """

    def __init__(
        self,
        metrics: Sequence[str] = ("psnr", "ssim", "lpips"),
        fid: bool = True,
        kid: bool = False,
        perceptual: bool | str = "auto",
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
        background: bool = True,
        niqe_weights: str | None = None,
        clip_model: str | None = None,
    ) -> None:
        super().__init__(background=background)
        self.suite_kwargs = dict(
            metrics=list(metrics), fid=fid, kid=kid, perceptual=perceptual,
            crop_border=crop_border, y_channel=y_channel, quantize=quantize, lpips_net=lpips_net,
            lpips_weights=lpips_weights, inception_weights=inception_weights,
            lpips_module=lpips_module, fid_features=fid_features, niqe_weights=niqe_weights,
            clip_model=clip_model,
        )  # fmt: skip
        self.output_dir = output_dir
        self.resume = resume
        self.log_hparams = log_hparams
        self.print_table = print_table
        self.suite: MetricSuite | None = None
        self.records: RunRecords | None = None
        self.feats: dict[int, np.ndarray] = {}
        self.summary: dict[str, float] = {}

    @property
    def columns(self) -> list[str]:
        assert self.suite is not None
        return ["index", "name", *self.suite.metrics, *FLAG_COLUMNS, *COST_COLUMNS]

    def fingerprint(self) -> dict[str, Any]:
        """The options that shape the scores (``metrics.*`` of the run's fingerprint)."""
        suite = self.suite
        assert suite is not None
        return {
            "metrics.names": [*suite.metrics, *suite.set_metrics],
            "metrics.crop_border": suite.crop_border,
            "metrics.y_channel": suite.y_channel,
            "metrics.quantize": suite.quantize,
            "metrics.lpips_net": suite.options.lpips_net,
            "metrics.weights": state_digest(suite),  # LPIPS / Inception weights
        }

    @property
    def run_dir(self) -> Path:
        assert self.records is not None
        return self.records.run_dir

    def summary_path(self, stage: str) -> Path:
        """``summary_<stage>.json`` (of this shard, in a job array)."""
        assert self.records is not None
        return self.records.stage_file("summary", stage, ".json")

    def feature_path(self, index: int) -> Path:
        assert self.records is not None
        return feature_path(self.records.run_dir, index)

    def _has_reference(self, row: dict) -> bool:
        """The image was scored against a reference (a full-reference metric has a value)."""
        assert self.suite is not None
        return any(
            not math.isnan(row[m]) for m in self.suite.metrics if self.suite.needs_reference(m)
        )

    def _files(self, row: dict) -> list[Path]:
        assert self.suite is not None
        if self.suite.features is not None and self._has_reference(row):
            return [self.feature_path(row["index"])]  # FID needs the image's features
        return []

    # ------------------------------------------------------------------ hooks
    def on_setup(self, stage: str) -> None:
        if self.suite is None:  # builds the networks; a missing weight file fails here, early
            self.suite = MetricSuite(**self.suite_kwargs)
            missing = self.suite.unavailable_message()
            if missing is not None:
                rank_zero_warn(missing)
        assert self.trainer is not None
        self.records = RunRecords.of(self.trainer, self.output_dir)
        participant = Participant(
            "RestorationMetrics",
            self.stages,
            columns=tuple(self.columns[2:]),
            files=self._files,
            fingerprint=self.fingerprint(),
            decides_resume=True,
        )
        self.records.join(self.trainer, stage, self, participant, resume=self.resume)
        if stage in PERSISTENT_STAGES:
            self.records.artifact(self.summary_path(stage))
        self.feats = {}

    def on_start(self, stage: str) -> None:
        assert self.records is not None
        self.records.start(self.trainer)
        self.feats = {}
        if stage in PERSISTENT_STAGES and self.records.done and self.trainer.is_global_zero:
            print(
                f"[RestorationMetrics] resuming: {len(self.records.done)} image(s) already done "
                f"in {self.run_dir}"
            )

    def on_batch(self, stage: str, outputs: Any, batch: dict) -> None:
        if not isinstance(outputs, dict) or "restored" not in outputs:
            raise TypeError(
                "RestorationMetrics needs the step to return {'restored': ...} "
                "(a lit_restore RestorationModule does)."
            )
        assert self.suite is not None and self.records is not None
        restored = outputs["restored"]
        self.suite.to(restored.device)
        x = to_unit(restored)
        reference = to_unit(batch["hq"]) if batch.get("hq") is not None else None
        scores = self.suite.per_image(x, reference)
        # divergence: clipping far beyond the reference's (or, without one, the measurement's)
        lq = batch.get("lq")
        look_alike = reference if reference is not None else to_unit(lq) if lq is not None else x
        flags = diverged(x, look_alike)
        feats = None
        if reference is not None and self.suite.features is not None:
            feats = torch.stack(
                [self.suite.image_features(x), self.suite.image_features(reference)], 1
            )
        rows = []
        for k, (i, name) in enumerate(zip(batch["index"], batch["name"])):
            row: dict[str, Any] = {"index": int(i), "name": str(name)}
            for m in self.suite.metrics:
                row[m] = float(scores[m][k]) if m in scores else float("nan")
            row["diverged"] = float(flags[k])
            for c in COST_COLUMNS:
                row[c] = float(outputs.get(c, float("nan")))
            rows.append(row)
            if feats is not None:
                self.feats[int(i)] = feats[k].numpy()
                if stage in PERSISTENT_STAGES:  # before the row: a row implies its features
                    atomic_save_npy(self.feature_path(int(i)), self.feats[int(i)])
        self.records.add(self.trainer, stage, self, rows)

    def on_end(self, stage: str) -> None:
        assert self.records is not None and self.trainer is not None
        if not self.loop_ran and self.records.done and self.trainer.is_global_zero:
            print(f"[RestorationMetrics] all {len(self.records.done)} image(s) done already")
        summary = self._finish(stage)
        self._log(summary, stage)

    # --------------------------------------------------------------- epoch end
    def _finish(self, stage: str) -> dict:
        trainer = self.trainer
        assert self.records is not None and trainer is not None
        ordered = self.records.finish(trainer, stage)
        gathered = gather_objects(trainer, self.feats)
        summary: dict[str, float] = {}
        if trainer.is_global_zero:
            feats: dict[int, np.ndarray] = {}
            for part in gathered:
                feats.update(part)
            summary = self._aggregate(ordered, feats, stage)
            if stage in PERSISTENT_STAGES:
                write_summary(self.summary_path(stage), summary, self._hparams())
        summary = trainer.strategy.broadcast(summary, src=0)
        self.summary = summary
        return summary

    def _aggregate(self, ordered: list[dict], feats: dict, stage: str) -> dict:
        suite = self.suite
        assert suite is not None

        def features(i: int) -> np.ndarray:  # gathered in this epoch, else stored (resumed)
            if i in feats or stage not in PERSISTENT_STAGES:
                return feats[i]
            return np.load(self.feature_path(i))

        with_reference = [r["index"] for r in ordered if self._has_reference(r)]
        if not suite.set_metrics:  # no features were stored
            with_reference = []
        return summarize(ordered, suite.metrics, with_reference, features, suite.set_level)

    def _log(self, summary: dict, stage: str) -> None:
        trainer, pl_module = self.trainer, self.pl_module
        assert trainer is not None and pl_module is not None
        prefix = STAGE_PREFIX[stage]
        values = {
            f"{prefix}/{k}": v for k, v in summary.items() if k != "images" and not math.isnan(v)
        }
        if stage == "predict" or not self.loop_ran:  # self.log: not in predict hooks/teardown
            if trainer.logger is not None and trainer.is_global_zero:
                trainer.logger.log_metrics(values, step=trainer.global_step)
        else:
            for k, v in values.items():
                # identical on every rank (broadcast above); no sync_dist: a rank whose loop was
                # empty (see EvaluationCallback.teardown) would never join that all-reduce
                pl_module.log(k, v, sync_dist=False)
        if stage not in PERSISTENT_STAGES or not trainer.is_global_zero:
            return
        assert self.records is not None
        self._warn_divergence(stage)
        if self.print_table:
            print(
                format_table(summary, f"{prefix} metrics — mean of per-image values "
                             f"({int(summary['images'])} images) → {self.records.csv_path(stage)}")
            )  # fmt: skip
        if self.log_hparams:
            log_hparams(trainer, self._hparams(), values)

    def _warn_divergence(self, stage: str) -> None:
        """One warning naming the diverged images (``diverged`` column of the CSV)."""
        assert self.records is not None and self.trainer is not None
        rows = self.records.finish(self.trainer, stage)
        names = [r["name"] for r in rows if r.get("diverged") == 1]
        if not names:
            return
        shown = ", ".join(names[:10]) + (
            f", ... ({len(names) - 10} more)" if len(names) > 10 else ""
        )
        rank_zero_warn(
            f"{len(names)} of {len(rows)} image(s) diverged — the restoration is clipped to "
            f"black/white far beyond the reference (see lit_restore.metrics.divergence and the "
            f"`diverged` column of {self.records.csv_path(stage)}): {shown}. Lower the guidance "
            "step (e.g. --model.init_args.sampler.init_args.scale) or check the operator/noise "
            "settings."
        )

    def _hparams(self) -> dict[str, Any]:
        """The run's flat hyper-parameters (:func:`lit_restore.utils.hparams.run_hparams`)."""
        assert self.trainer is not None
        return run_hparams(self.trainer)
