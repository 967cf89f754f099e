"""Torch/Lightning-side I/O helpers of the callbacks (PNG/NPY writes, run dir, DDP gather)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor

from lit_restore.utils.tables import (  # noqa: F401  (re-exported for the callbacks)
    COST_COLUMNS,
    append_rows,
    atomic_write_bytes,
    atomic_write_text,
    read_rows,
    rows_to_csv,
    safe_relpath,
)


def resolve_run_dir(trainer: L.Trainer, output_dir: str | os.PathLike | None) -> Path:
    """``output_dir`` if given, else the logger's run dir (``trainer.log_dir``; rank-0 broadcast)."""
    d = output_dir if output_dir is not None else trainer.log_dir
    if d is None:
        d = trainer.default_root_dir
    return Path(d)


def atomic_save_npy(path: Path, a: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, a)
    atomic_write_bytes(path, buf.getvalue())


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


def to_unit(x: Tensor) -> Tensor:
    """Model space [-1,1] -> [0,1]."""
    return ((x.float() + 1) / 2).clamp(0, 1)
