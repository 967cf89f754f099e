"""Small crash-safe I/O helpers shared by the callbacks (atomic writes, CSV rows, DDP gather)."""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch import Tensor

COST_COLUMNS = ("seconds_per_image", "nfe_per_image", "peak_memory_mb")


def resolve_run_dir(trainer: L.Trainer, output_dir: str | os.PathLike | None) -> Path:
    """``output_dir`` if given, else the logger's run dir (``trainer.log_dir``; rank-0 broadcast)."""
    d = output_dir if output_dir is not None else trainer.log_dir
    if d is None:
        d = trainer.default_root_dir
    return Path(d)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then ``os.replace`` (never torn)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def to_uint8_hwc(x: Tensor) -> np.ndarray:
    """[C,H,W] image in [0,1] -> HxWxC (or HxW) uint8."""
    a = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def atomic_save_png(path: Path, x: Tensor) -> None:
    buf = io.BytesIO()
    Image.fromarray(to_uint8_hwc(x)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_npy(path: Path, a: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, a)
    atomic_write_bytes(path, buf.getvalue())


def safe_relpath(name: str) -> str:
    """A dataset name usable as a relative file path (no absolute paths, no ``..``)."""
    parts = [p for p in Path(str(name)).parts if p not in ("", ".", "/", "\\")]
    if not parts or any(p == ".." for p in parts) or Path(str(name)).is_absolute():
        raise ValueError(f"image name {name!r} cannot be used as an output file name")
    return str(Path(*parts))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    return str(v)


def rows_to_csv(rows: Iterable[dict], columns: Sequence[str], header: bool = True) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    if header:
        w.writerow(columns)
    for r in rows:
        w.writerow([_fmt(r.get(c, float("nan"))) for c in columns])
    return out.getvalue()


def append_rows(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """Append rows (header first if new), flushed and fsynced: a crash tears at most the last line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", encoding="utf-8") as f:
        f.write(rows_to_csv(rows, columns, header=new))
        f.flush()
        os.fsync(f.fileno())


def read_rows(path: Path) -> tuple[list[str], list[dict]]:
    """Rows of a per-image CSV; a torn trailing line (crash mid-append) is dropped."""
    if not path.exists():
        return [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            return [], []
        rows = []
        for rec in reader:
            if len(rec) != len(header):
                continue
            row: dict[str, Any] = {}
            try:
                for k, v in zip(header, rec):
                    if k == "index":
                        row[k] = int(v)
                    elif k == "name":
                        row[k] = v
                    else:
                        row[k] = float(v)
            except ValueError:
                continue
            rows.append(row)
    return header, rows


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
