"""``EvaluationCallback``: Lightning's evaluation hooks as three methods.

Lightning has nine evaluation hooks (validation / test / predict × epoch start, batch end, epoch
end) plus ``setup``/``teardown``. Every evaluation callback of lit_restore needs the same three
moments, so a subclass implements only

* ``on_setup(stage)`` — once per ``trainer.validate/test/predict/fit`` call, before any data is
  loaded (``self.trainer`` and ``self.pl_module`` are set from here on);
* ``on_start(stage)`` — an evaluation epoch begins;
* ``on_batch(stage, outputs, batch)`` — one batch was restored (``outputs`` is the step's dict);
* ``on_end(stage)`` — the evaluation epoch is over.

``stage`` is ``"validate"``, ``"test"`` or ``"predict"``. Sanity-check batches of ``fit`` are not
evaluations and are ignored. When a test/predict run has nothing left to restore (a finished run
rerun), Lightning skips the empty loop and its epoch hooks; ``on_end`` is then called from
``teardown`` with ``self.loop_ran = False`` (``LightningModule.log`` is not allowed there). Under
DDP a rank whose loop was empty joins the other ranks' collectives the same way.

**In the background** (``background: true``, the default): ``on_batch`` runs on the trainer's
:class:`~lit_restore.evaluation.background.BackgroundWorker` — one thread shared by the run's
evaluation callbacks, which scores and writes batch *k* while the loop restores batch *k+1*.
The worker is flushed before every ``on_end`` (an error of its tasks is raised there, or at the
next batch), joined at ``teardown``, and on an exception it finishes what is queued before the
exception propagates. ``background: false`` runs ``on_batch`` in the loop, after the queued work
of the other callbacks (the order of all work stays the same either way).
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from lit_restore.evaluation.background import BackgroundWorker

#: the prefix of logged tags per stage (``val/psnr``, ``test/psnr``, ...)
STAGE_PREFIX = {"validate": "val", "test": "test", "predict": "predict"}


def stage_name(stage: Any) -> str:
    """Lightning passes a ``TrainerFn`` str-enum to setup/teardown; its value is the name."""
    return str(getattr(stage, "value", stage))


def to_unit(x: Tensor) -> Tensor:
    """Model space [-1,1] -> [0,1] (float32, clamped)."""
    return ((x.float() + 1) / 2).clamp(0, 1)


class EvaluationCallback(Callback):
    """Base of the evaluation callbacks (see the module docstring).

    Args:
        stages: the evaluation stages this callback acts on.
        background: run ``on_batch`` on the background worker (module docstring); ``false``
            runs it in the loop.
    """

    def __init__(
        self,
        stages: tuple[str, ...] = ("validate", "test", "predict"),
        background: bool = True,
    ) -> None:
        super().__init__()
        bad = sorted(set(stages) - set(STAGE_PREFIX))
        if bad:
            raise ValueError(f"unknown stage(s) {bad}; choose from {sorted(STAGE_PREFIX)}")
        self.stages = tuple(stages)
        self.background = bool(background)
        self.trainer: L.Trainer | None = None
        self.pl_module: L.LightningModule | None = None
        self.loop_ran = False
        self._ended: set[str] = set()

    # ------------------------------------------------------------------ to implement
    def on_setup(self, stage: str) -> None:
        """``stage``: ``fit``, ``validate``, ``test`` or ``predict`` (the trainer call)."""

    def on_start(self, stage: str) -> None:
        """An evaluation epoch of ``stage`` begins."""

    def on_batch(self, stage: str, outputs: Any, batch: dict) -> None:
        """A batch of ``stage`` was restored."""

    def on_end(self, stage: str) -> None:
        """The evaluation epoch of ``stage`` is over (``self.loop_ran`` False: it was empty)."""

    # ------------------------------------------------------------------ Lightning's hooks
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.trainer, self.pl_module = trainer, pl_module
        self._ended = set()
        self.on_setup(stage_name(stage))

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        stage = stage_name(stage)
        try:
            if stage in ("test", "predict") and stage in self.stages and stage not in self._ended:
                self.loop_ran = False
                self._end(stage)
        finally:
            BackgroundWorker.of(trainer).close()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        """The loop failed (or was interrupted): write and commit what was restored before."""
        BackgroundWorker.of(trainer).finish_after_error(exception)

    def _start(self, trainer: L.Trainer, stage: str) -> None:
        if stage in self.stages and not trainer.sanity_checking:
            self._ended.discard(stage)
            self.loop_ran = True
            self.on_start(stage)

    def _batch(self, trainer: L.Trainer, outputs: Any, batch: dict, stage: str) -> None:
        if stage in self.stages and not trainer.sanity_checking:
            worker = BackgroundWorker.of(trainer)
            if self.background:
                worker.submit(self.on_batch, stage, outputs, batch)
            else:  # after the other callbacks' queued work: the order stays the same
                worker.flush()
                self.on_batch(stage, outputs, batch)

    def _end(self, stage: str) -> None:
        self._ended.add(stage)
        assert self.trainer is not None
        BackgroundWorker.of(self.trainer).flush()  # every batch scored and written
        self.on_end(stage)

    def _epoch_end(self, trainer: L.Trainer, stage: str) -> None:
        if stage in self.stages and not trainer.sanity_checking:
            self._end(stage)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._start(trainer, "validate")

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start(trainer, "test")

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        self._start(trainer, "predict")

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._batch(trainer, outputs, batch, "validate")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._batch(trainer, outputs, batch, "test")

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._batch(trainer, outputs, batch, "predict")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._epoch_end(trainer, "validate")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._epoch_end(trainer, "test")

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        self._epoch_end(trainer, "predict")
