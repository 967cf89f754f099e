"""Compare evaluation runs: one table (method × metrics × cost) and one image figure.

``python -m lit_restore.evaluation.compare RUN_DIR [RUN_DIR ...] [--out DIR] [--stage test]
[--images 4] [--allow-mismatch]``

Each ``RUN_DIR`` is a run written by :class:`lit_restore.evaluation.RestorationMetrics` (its
``per_image_<stage>.csv``, ``summary_<stage>.json`` and ``fingerprint_<stage>.json``) and, for the
figure, :class:`lit_restore.evaluation.RestoredImageWriter` (``restored/<name>.png``). Per-image
metrics are re-aggregated from the CSV as the **mean of per-image values**; set-level metrics
(FID/KID) come from the summary; ``diverged`` counts the images flagged as diverged. Writes
``comparison.md``, ``comparison.csv`` and ``comparison.png`` (a grid: rows = the same images,
columns = measurement | each run | reference, labelled; drawn with PIL).

Runs are comparable only on the same data: the ``data.*`` parts of their fingerprints (dataset
and its file list, crop/resize, operator and its parameters, noise, data seed) must be equal.
Otherwise the comparison is refused with one line naming the differences; with
``--allow-mismatch`` it is written anyway, each run labelled with its data group (``[A]``,
``[B]``, ... in the table and the figure) and a warning under the table.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from lit_restore.evaluation import fingerprint
from lit_restore.utils.tables import (
    COST_COLUMNS,
    FLAG_COLUMNS,
    aggregate,
    atomic_write_bytes,
    atomic_write_text,
    read_rows,
)

#: fingerprint section that must agree between compared runs
DATA_SECTION = "data."


def load_run(run_dir: Path, stage: str = "test") -> dict:
    """Aggregates of one run from its per-image CSV (+ hparams and set-level metrics from its
    summary, the data part of its fingerprint)."""
    csv_path = run_dir / f"per_image_{stage}.csv"
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a directory; pass run directories")
    header, rows = read_rows(csv_path)
    if not rows:
        raise FileNotFoundError(
            f"{csv_path} is missing or empty; pass run directories written by RestorationMetrics "
            f"(or choose the stage with --stage)."
        )
    summary_path = run_dir / f"summary_{stage}.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    hparams = summary.get("hparams", {})
    per_image = [c for c in header if c not in ("index", "name", *COST_COLUMNS, *FLAG_COLUMNS)]
    agg: dict[str, float] = {m: aggregate(r[m] for r in rows) for m in per_image}
    skip = {"images", *COST_COLUMNS, *FLAG_COLUMNS}
    for m, v in summary.get("metrics", {}).items():  # set-level: in the summary, not the CSV
        if m not in agg and m not in skip:
            agg[m] = float(v)
    if "diverged" in header:
        agg["diverged"] = float(sum(r["diverged"] == 1 for r in rows))
    agg["seconds_per_image"] = aggregate(r["seconds_per_image"] for r in rows)
    agg["nfe_per_image"] = aggregate(r["nfe_per_image"] for r in rows)
    mem = [r["peak_memory_mb"] for r in rows if not math.isnan(r["peak_memory_mb"])]
    agg["peak_memory_mb"] = max(mem) if mem else float("nan")
    label = str(hparams.get("method", run_dir.name))
    parts = fingerprint.read(run_dir / f"fingerprint_{stage}.json")
    data = {k: v for k, v in parts.items() if k.startswith(DATA_SECTION)} if parts else None
    return {
        "dir": run_dir, "label": label, "hparams": hparams, "metrics": agg,
        "names": {r["name"] for r in rows}, "images": len(rows), "data": data,
    }  # fmt: skip


def data_groups(runs: list[dict]) -> tuple[list[str], list[str]]:
    """A data-group letter per run (runs on equal data share one) and the differences of each
    other group from group A (a run without a fingerprint is a group of its own)."""
    groups: list[tuple[dict | None, str]] = []
    letters, notes = [], []
    for r in runs:
        for data, letter in groups:
            if data is not None and data == r["data"]:
                letters.append(letter)
                break
        else:
            letter = chr(ord("A") + len(groups))
            groups.append((r["data"], letter))
            letters.append(letter)
            if len(groups) > 1:
                first = runs[0]
                if r["data"] is None or first["data"] is None:
                    without = r if r["data"] is None else first
                    why = f"{without['dir']} has no fingerprint_<stage>.json"
                else:
                    why = fingerprint.differences(first["data"], r["data"])
                notes.append(f"[{letter}] {r['dir']} vs [A] {first['dir']}: {why}")
    return letters, notes


def _unique_labels(runs: list[dict]) -> None:
    seen: dict[str, int] = {}
    for r in runs:
        seen[r["label"]] = seen.get(r["label"], 0) + 1
    for r in runs:
        if seen[r["label"]] > 1:
            r["label"] = f"{r['label']} ({r['dir'].name})"


def _fmt(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "–"
    return f"{v:.4g}" if abs(v) < 1e-2 and v != 0 else f"{v:.4f}".rstrip("0").rstrip(".")


def tables(runs: list[dict], mismatch: list[str] | None = None) -> tuple[str, str, list[str]]:
    """(markdown, csv, columns) of the comparison; ``mismatch``: the notes of
    :func:`data_groups` when runs on different data are compared anyway."""
    metric_cols: list[str] = []
    for r in runs:
        for m in r["metrics"]:
            if m not in COST_COLUMNS and m not in metric_cols:
                metric_cols.append(m)
    cols = ["run", "images", *metric_cols, *COST_COLUMNS]
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    csv_lines = [",".join(cols)]
    for r in runs:
        vals = [r["metrics"].get(c, float("nan")) for c in [*metric_cols, *COST_COLUMNS]]
        md.append("| " + " | ".join([r["label"], str(r["images"]), *map(_fmt, vals)]) + " |")
        csv_lines.append(
            ",".join([f'"{r["label"]}"', str(r["images"]), *(repr(float(v)) for v in vals)])
        )
    names = [r["names"] for r in runs]
    note = (
        "Per-image metrics: mean of per-image values; FID/KID: set-level; cost: mean seconds and "
        "NFE per image, peak memory (max)."
    )
    if any(n != names[0] for n in names):
        note += " **Warning: the runs scored different image sets.**"
    if mismatch:
        note += (
            " **Warning: these runs were made on different data (dataset, crop, operator or "
            "noise); each run is labelled with its data group:** " + "; ".join(mismatch)
        )
    return "\n".join([*md, "", note]) + "\n", "\n".join(csv_lines) + "\n", cols


def figure(runs: list[dict], n_images: int = 4, tile: int | None = None) -> Image.Image | None:
    """Rows: the first ``n_images`` names all runs wrote; columns: measurement | runs | reference."""
    common = set.intersection(
        *[{p.stem for p in (r["dir"] / "restored").glob("*.png")} for r in runs]
    )
    names = sorted(common)[:n_images]
    if not names:
        return None
    first = Image.open(runs[0]["dir"] / "restored" / f"{names[0]}.png")
    size = (tile, tile) if tile else first.size
    extra_first = [("measurement", d) for d in [runs[0]["dir"] / "measurement"] if d.is_dir()]
    ref_dirs = [r["dir"] / "reference" for r in runs if (r["dir"] / "reference").is_dir()]
    columns = [*extra_first, *[(r["label"], r["dir"] / "restored") for r in runs]]
    if ref_dirs:
        columns.append(("reference", ref_dirs[0]))
    pad, name_w, head = 2, 70, 14
    width = name_w + len(columns) * (size[0] + pad)
    height = head + len(names) * (size[1] + pad)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for c, (label, _) in enumerate(columns):
        draw.text(
            (name_w + c * (size[0] + pad) + 2, 1),
            label[: max(1, size[0] // 6)],
            fill="black",
            font=font,
        )
    for r, name in enumerate(names):
        y = head + r * (size[1] + pad)
        draw.text((2, y + size[1] // 2 - 5), name[:11], fill="black", font=font)
        for c, (_, d) in enumerate(columns):
            p = d / f"{name}.png"
            if not p.exists():
                continue
            img = Image.open(p).convert("RGB")
            resample = Image.NEAREST if img.size[0] < size[0] else Image.BICUBIC
            canvas.paste(img.resize(size, resample), (name_w + c * (size[0] + pad), y))
    return canvas


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m lit_restore.evaluation.compare", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "runs", nargs="+", type=Path, help="run directories (with per_image_<stage>.csv)"
    )
    ap.add_argument("--out", type=Path, default=Path("comparison"), help="output directory")
    ap.add_argument("--stage", default="test", help="which CSV to read (test or predict)")
    ap.add_argument("--images", type=int, default=4, help="rows of the figure")
    ap.add_argument("--tile", type=int, default=None, help="tile size in px (default: image size)")
    ap.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="compare runs made on different data anyway (labelled [A], [B], ... and flagged)",
    )
    args = ap.parse_args(argv)
    runs = [load_run(d, args.stage) for d in args.runs]
    letters, notes = data_groups(runs)
    if notes and not args.allow_mismatch:
        raise ValueError(
            "the runs were not made on the same data (dataset, crop, operator, noise), so their "
            "numbers are not comparable: " + "; ".join(notes) + ". Compare runs of one data "
            "setting, or pass --allow-mismatch to write the comparison with each run labelled by "
            "its data group."
        )
    if notes:
        for r, letter in zip(runs, letters):
            r["label"] = f"[{letter}] {r['label']}"
    _unique_labels(runs)
    md, csv_text, _ = tables(runs, notes)
    atomic_write_text(args.out / "comparison.md", md)
    atomic_write_text(args.out / "comparison.csv", csv_text)
    fig = figure(runs, args.images, args.tile)
    if fig is not None:
        buf = io.BytesIO()
        fig.save(buf, format="PNG")
        atomic_write_bytes(args.out / "comparison.png", buf.getvalue())
    print(md)
    print(
        f"wrote {args.out / 'comparison.md'}, comparison.csv" + (", comparison.png" if fig else "")
    )
    return 0


if __name__ == "__main__":
    from lit_restore.utils.errors import report_user_errors

    sys.exit(report_user_errors(main))
