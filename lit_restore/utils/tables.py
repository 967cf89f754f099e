"""Light, crash-safe table/file helpers (no torch import): atomic writes, per-image CSV rows,
mean-of-per-image aggregation, markdown tables. Shared by the callbacks and the
``compare``/``score`` command lines (which therefore start fast)."""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

COST_COLUMNS = ("seconds_per_image", "nfe_per_image", "peak_memory_mb")


def aggregate(values: Iterable[float]) -> float:
    """Mean of per-image values, ignoring NaN (images without a reference); NaN if none."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(vals) / len(vals) if vals else float("nan")


def format_table(summary: dict[str, float], title: str = "") -> str:
    """A two-column markdown table of aggregate metrics."""
    lines = [f"### {title}" if title else "", "| metric | value |", "|---|---|"]
    for k, v in summary.items():
        lines.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    return "\n".join(line for line in lines if line)


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


def safe_relpath(name: str) -> str:
    """A dataset name usable as a relative file path (no absolute paths, no ``..``)."""
    parts = [p for p in Path(str(name)).parts if p not in ("", ".", "/", "\\")]
    if not parts or any(p == ".." for p in parts) or Path(str(name)).is_absolute():
        raise ValueError(f"image name {name!r} cannot be used as an output file name")
    return str(Path(*parts))
