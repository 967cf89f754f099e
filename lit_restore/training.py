"""What every training run shares: its ``last.ckpt`` — on a timer, at the end of fit, and when the
run is stopped (:class:`TrainingCheckpoint`, in the ``trainer.callbacks`` of every recipe).

Lightning's :class:`~lightning.pytorch.callbacks.ModelCheckpoint` configured for resuming
(``save_last``, no top-k files, ``train_time_interval``, ``save_on_exception``), plus two
things it does not do:

* the end of fit always leaves ``last.ckpt`` at the final step (``ModelCheckpoint`` skips the
  end-of-fit save once a timed ``last`` exists, so the file could be minutes old), saved at the
  last step while the fit still runs — so that ``--ckpt_path last`` with a larger
  ``max_steps``/``max_epochs`` continues exactly;
* a *fresh* fit refuses to overwrite the ``last.ckpt`` of an earlier run in the same folder
  (one error naming the two ways out), instead of silently replacing a trained model.

How a run gets stopped, and what is saved:

* Ctrl-C (``KeyboardInterrupt``) or any exception: Lightning calls ``on_exception`` → ``last``;
* SIGTERM (``kill``, ``scancel``, a cluster's preemption): the entry point stops the run at
  once (:mod:`lit_restore.cli`, exit status 143) → ``on_exception`` → ``last``, usually in the
  middle of a batch — the unfinished batch is not counted and is run again on resume;
* SLURM with ``#SBATCH --signal=SIGUSR1@90`` (auto-requeue, Lightning's ``SLURMEnvironment``):
  Lightning itself saves ``hpc_ckpt_<n>.ckpt`` into ``trainer.default_root_dir`` and requeues
  the job, which resumes from it when started without ``--ckpt_path``.

The folder is ``<trainer.default_root_dir>/checkpoints`` unless ``dirpath`` is given, so a
recipe's ``trainer.default_root_dir: runs/<name>`` holds the logs (Lightning's default
TensorBoard logger, ``lightning_logs/version_<n>``) and the one ``last.ckpt``; moving a run
elsewhere is one option (``--trainer.default_root_dir``). ``--ckpt_path last`` resumes from
the newest ``last.ckpt`` there (Lightning's ``_parse_ckpt_path``). With the resumable training loader and per-step random draws (see
:class:`lit_restore.data.RestorationDataModule`) the resumed fit repeats the uninterrupted
one exactly when the checkpoint was taken at an optimizer-step boundary (always, unless
``accumulate_grad_batches > 1`` and a timer fires in the middle of an accumulation window).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class TrainingCheckpoint(ModelCheckpoint):
    """Keep ``<dirpath>/last.ckpt`` of a training run up to date (module docstring).

    Args:
        dirpath: the checkpoint folder (default: ``<trainer.default_root_dir>/checkpoints``).
        every: wall-clock interval between saves.
        save_top_k: numbered ``epoch=…-step=….ckpt`` files kept beside ``last.ckpt``: none by
            default; ``-1`` with ``every_n_train_steps`` keeps one per interval.
        kwargs: further :class:`~lightning.pytorch.callbacks.ModelCheckpoint` options.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        every: timedelta | None = timedelta(minutes=10),
        save_top_k: int = 0,
        **kwargs: Any,
    ) -> None:
        # ``save_top_k`` is a parameter here, not a default put into ``kwargs``: LightningCLI
        # (jsonargparse) fills forwarded keyword arguments with the parent's defaults
        # (``ModelCheckpoint``'s ``save_top_k=1``), and a top-k of 1 saved an
        # ``epoch=…-step=….ckpt`` at every timer tick beside ``last.ckpt``.
        super().__init__(
            dirpath=dirpath,
            save_last=True,
            train_time_interval=every,
            save_on_exception=True,
            enable_version_counter=False,
            save_top_k=save_top_k,
            **kwargs,
        )

    def _resolve_dirpath(self, trainer: L.Trainer) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.realpath(os.path.join(trainer.default_root_dir, "checkpoints"))

    @property
    def last_path(self) -> str:
        return os.path.join(str(self.dirpath), self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)

    def _find_last_checkpoints(self, trainer: L.Trainer) -> set[str]:
        """Where ``--ckpt_path last`` looks (called before :meth:`setup`)."""
        self._resolve_dirpath(trainer)
        return super()._find_last_checkpoints(trainer)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._resolve_dirpath(trainer)
        super().setup(trainer, pl_module, stage)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Refuse a fresh fit over an earlier run's ``last.ckpt`` (``trainer.ckpt_path`` is
        known here: Lightning restores before ``on_fit_start`` unless the strategy restores
        after setup, where this check is skipped)."""
        resuming = trainer.ckpt_path is not None or trainer.strategy.restore_checkpoint_after_setup
        if not resuming and os.path.exists(self.last_path):
            raise ValueError(
                f"{self.last_path} holds an earlier training run: continue it with --ckpt_path "
                "last, or start a new one in another folder (--trainer.default_root_dir) or "
                "after moving that one away"
            )

    @staticmethod
    def _fit_ends(trainer: L.Trainer) -> bool:
        """Whether the fit stops after this batch: ``max_steps``, a stop request (``Timer``,
        early stopping), or the last batch of the last epoch (``max_epochs``)."""
        if trainer.should_stop or 0 < trainer.max_steps <= trainer.global_step:
            return True
        last_batch = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        max_epochs = trainer.max_epochs
        return (
            last_batch and max_epochs not in (None, -1) and trainer.current_epoch + 1 >= max_epochs
        )

    def _save_final(self, trainer: L.Trainer) -> None:
        if self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Save at the last step of the fit while it still runs. Later is too late for an exact
        resume: at ``on_train_epoch_end`` / ``on_train_end`` Lightning has closed the epoch (a
        fit resumed from an epoch-end checkpoint restarts the loader mid-way through its
        bookkeeping and mixes two epochs' orders) and ``EMAWeightAveraging`` has put the
        averaged weights into the model (the checkpoint would lose the live ones)."""
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self._fit_ends(trainer):
            self._save_final(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A fit that ended otherwise (an early stop decided after validation) still leaves
        ``last`` at its final step."""
        self._save_final(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """``last`` only (``ModelCheckpoint`` would add an ``epoch=…-step=…`` file too).

        A run stopped inside a batch (fetched or started, not finished: SIGTERM, Ctrl-C or an
        error in the step) is saved with the epoch loop's ``_batches_that_stepped`` — the step
        the loggers write — one lower. Lightning stores that counter *before* its increment at
        the end of a batch and adds 1 on restore unless every started batch was finished
        (``_TrainingEpochLoop.update_restart_stage`` / ``reset``); a mid-batch state already
        holds the increment, so without this the resumed run logs every value one step late
        (weights and losses are exact either way; ``tests/test_training_resume.py``). With
        ``accumulate_grad_batches > 1`` the counter is left as Lightning has it (a resume
        inside an accumulation window is not exact anyway: module docstring)."""
        if not self._should_save_on_exception(trainer):
            return
        loop = trainer.fit_loop.epoch_loop
        total = loop.batch_progress.total
        unfinished = not (total.ready == total.started == total.processed)
        shift = int(unfinished and trainer.accumulate_grad_batches == 1)
        loop._batches_that_stepped -= shift
        try:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        finally:
            loop._batches_that_stepped += shift
