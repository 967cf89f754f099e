"""Light, crash-safe table/file helpers (no torch import): atomic writes, per-image CSV rows,
mean-of-per-image aggregation, markdown tables. Shared by the callbacks and the
``compare``/``score`` command lines (which therefore start fast)."""

from __future__ import annotations

import csv
import io
import math
import os
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

COST_COLUMNS = ("seconds_per_image", "nfe_per_image", "peak_memory_mb")
#: per-image flags (0/1) written beside the metrics: counted, not averaged
FLAG_COLUMNS = ("diverged",)


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


#: suffix of the temporary files of :func:`atomic_write_bytes` (``.<name>.<pid>.<random>.tmp``)
TEMP_SUFFIX = ".tmp"


class OutputWriteError(OSError):
    """A result file could not be written (disk full, read-only or forbidden folder)."""

    def __init__(self, path: Path, err: OSError) -> None:
        reason = err.strerror or str(err)
        super().__init__(
            err.errno,
            f"cannot write {path}: {reason}; free space or make the folder writable, or write "
            "the results elsewhere (a run: --trainer.logger.init_args.save_dir; the tools: "
            "--out / --csv)",
        )
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync, ``os.replace``: a
    reader never sees a torn file.

    The temp file is created with mode ``0o666`` filtered by the process umask — the mode an
    ordinary ``open(path, "w")`` gives, so results follow the user's umask (``tempfile.mkstemp``
    would make them ``0600``). An ``OSError`` (disk full, read-only folder) becomes one
    :class:`OutputWriteError` naming the file."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as err:
        if isinstance(err, OutputWriteError):
            raise
        raise OutputWriteError(path, err) from err


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists() or path.stat().st_size == 0
        with open(path, "a", encoding="utf-8") as f:
            f.write(rows_to_csv(rows, columns, header=new))
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise OutputWriteError(path, err) from err


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
