"""What lit_restore sends to every Lightning logger of a run, each through its own API.

* :func:`log_hparams`: hyper-parameters (+ final metrics). TensorBoard's
  ``log_hyperparams(params, metrics)`` ties the metric tags to its HPARAMS tab; CSVLogger, W&B
  and MLflow take ``log_hyperparams(params)`` and get the metrics from ``log_metrics`` like every
  logged metric.
* :func:`log_image`: an image (a run's grid). TensorBoard: ``experiment.add_image``; MLflow:
  ``MlflowClient.log_image`` as an artifact of the run; W&B (or any logger with the same
  method): ``log_image(key, images, step)``. CSVLogger has no image API: the grid is the PNG in
  the run directory.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger
from PIL import Image

from lit_restore.utils.hparams import is_plain
from lit_restore.utils.tables import atomic_write_text


def log_hparams(trainer: Any, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
    """``params`` (+ final ``metrics``) through each of ``trainer.loggers``' own API (module
    docstring); TensorBoard's ``hparams.yaml`` is rewritten to hold them."""
    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger):
            lg.log_hyperparams(dict(params), dict(metrics) or None)
            _rewrite_hparams_yaml(lg)
        else:
            lg.log_hyperparams(dict(params))


def log_image(trainer: Any, key: str, image: Image.Image, step: int) -> None:
    """``image`` under ``key`` at ``step`` in each of ``trainer.loggers`` that has an image API
    (module docstring)."""
    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger):
            chw = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
            lg.experiment.add_image(key, chw, step)
        elif isinstance(lg, MLFlowLogger):
            lg.experiment.log_image(lg.run_id, image, f"{key}_step{step}.png")
        elif callable(getattr(lg, "log_image", None)):
            lg.log_image(key=key, images=[image], step=step)


def _rewrite_hparams_yaml(logger: Any) -> None:
    """TensorBoardLogger writes ``hparams.yaml`` once, at the start of the run (``save()`` skips
    an existing file), before any hyper-parameter was logged: write what it holds now
    (atomically)."""
    run_dir = Path(logger.log_dir)
    if not run_dir.is_dir():
        return  # not created yet: the logger's own save() writes the file later
    held = {str(k): v if is_plain(v) else str(v) for k, v in dict(logger.hparams).items()}
    atomic_write_text(run_dir / logger.NAME_HPARAMS_FILE, yaml.safe_dump(held, sort_keys=False))
