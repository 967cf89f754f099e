"""Evaluation callbacks: per-image metrics + CSV (resumable, DDP-exact), PNG writer, image grids;
and the training runs' ``last.ckpt`` (:class:`TrainingCheckpoint`)."""

from lit_restore.callbacks.grid import ImageGridLogger
from lit_restore.callbacks.metrics import RestorationMetrics
from lit_restore.callbacks.training_checkpoint import TrainingCheckpoint
from lit_restore.callbacks.writer import RestoredImageWriter

__all__ = ["ImageGridLogger", "RestorationMetrics", "RestoredImageWriter", "TrainingCheckpoint"]
