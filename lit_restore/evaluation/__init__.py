"""Evaluation: callbacks that score, write and show restorations, the per-image records they
share (resumable, fingerprinted, DDP-exact), and the ``compare`` / ``score`` tools.

* :class:`RestorationMetrics` — per-image metrics + cost, aggregates, ``per_image_<stage>.csv``;
* :class:`RestoredImageWriter` — restored (and measurement/reference) PNGs;
* :class:`ImageGridLogger` — a labelled grid of fixed images per run (PNG + every logger);
* :class:`RunRecords` — the run dir's per-image records, resume and fingerprint;
* :class:`BackgroundWorker` — the thread that scores and writes a batch while the next one is
  restored (every callback above: ``background: true``);
* ``python -m lit_restore.evaluation.compare`` (table, paged comparison figure:
  :mod:`~lit_restore.evaluation.figures`, trade-off plot: :mod:`~lit_restore.evaluation.tradeoff`)
  / ``python -m lit_restore.evaluation.score`` / ``python -m lit_restore.evaluation.merge`` (the
  shards of a job array, ``data.init_args.shard: i/N``, joined into one run).

The names are imported on first use, so the command-line tools start without loading Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BackgroundWorker": "lit_restore.evaluation.background",
    "EvaluationCallback": "lit_restore.evaluation.base",
    "ImageGridLogger": "lit_restore.evaluation.grid",
    "RestorationMetrics": "lit_restore.evaluation.metrics",
    "RestoredImageWriter": "lit_restore.evaluation.writer",
    "RunRecords": "lit_restore.evaluation.records",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
