"""Evaluation: callbacks that score, write and show restorations, the per-image records they
share (resumable, DDP-exact), and the ``compare`` / ``score`` tools.

* :class:`RestorationMetrics` — per-image metrics + cost, aggregates, ``per_image_<stage>.csv``;
* :class:`RestoredImageWriter` — restored (and measurement/reference) PNGs;
* :class:`ImageGridLogger` — a grid of fixed images per run (TensorBoard + PNG);
* :class:`~lit_restore.evaluation.records.RunRecords` — the run dir's per-image records;
* ``python -m lit_restore.evaluation.compare`` / ``python -m lit_restore.evaluation.score``.
"""

from lit_restore.evaluation.base import EvaluationCallback
from lit_restore.evaluation.grid import ImageGridLogger
from lit_restore.evaluation.metrics import RestorationMetrics
from lit_restore.evaluation.records import RunRecords
from lit_restore.evaluation.writer import RestoredImageWriter

__all__ = [
    "EvaluationCallback",
    "ImageGridLogger",
    "RestorationMetrics",
    "RestoredImageWriter",
    "RunRecords",
]
