"""Compare evaluation runs: one table (method × metrics × cost) and one image figure.

``python -m lit_restore.evaluation.compare RUN_DIR [RUN_DIR ...] [--out DIR] [--stage test]
[--images N] [--per-page 8] [--tile PX] [--tradeoff-metric auto|psnr|lpips] [--allow-mismatch]``

Each ``RUN_DIR`` is a run written by :class:`lit_restore.evaluation.RestorationMetrics` (its
``per_image_<stage>.csv``, ``summary_<stage>.json`` and ``fingerprint_<stage>.json``) and, for the
figure, :class:`lit_restore.evaluation.RestoredImageWriter` (``restored/<name>.png``, and the
``measurement``/``reference`` PNGs when saved). Per-image metrics are re-aggregated from the CSV
as the **mean of per-image values**; set-level metrics (FID/KID) come from the summary;
``diverged`` counts the images flagged as diverged. Writes into ``--out``:

* ``comparison.md``, ``comparison.csv``: the table (method × metrics × cost);
* ``comparison.png`` — or ``comparison_p1.png``, ``comparison_p2.png``, ... when the images
  fill more than one page of ``--per-page`` rows: every image, columns measurement | each run |
  reference under their full names, each restoration's PSNR/SSIM under its tile, and a zoomed
  region per image, the same in every column (:mod:`lit_restore.evaluation.figures`);
* ``tradeoff.png``, ``tradeoff.csv``, ``tradeoff.json``: PSNR (LPIPS when every run has it)
  against seconds per image and against NFE, one point per run
  (:mod:`lit_restore.evaluation.tradeoff`).

Figures a previous comparison left in ``--out`` (``comparison*.png``) are replaced.

Runs are comparable only on the same data: the ``data.*`` parts of their fingerprints (dataset
and its file list, crop/resize, operator and its parameters, noise, data seed) must be equal.
Otherwise the comparison is refused with one line naming the differences; with
``--allow-mismatch`` it is written anyway, each run labelled with its data group (``[A]``,
``[B]``, ... in the table and the figure) and a warning under the table.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from lit_restore.evaluation import fingerprint, tradeoff
from lit_restore.evaluation.drawing import write_png
from lit_restore.evaluation.figures import Column, comparison_pages, png_folder
from lit_restore.utils.tables import (
    COST_COLUMNS,
    FLAG_COLUMNS,
    aggregate,
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
        if list(run_dir.glob(f"per_image_{stage}.shard*of*.csv")):
            raise FileNotFoundError(
                f"{run_dir} holds the shards of a job array but no merged {csv_path.name}; merge "
                f"them first: python -m lit_restore.evaluation.merge {run_dir}"
            )
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
        "rows": {r["name"]: r for r in rows}, "order": [(r["index"], r["name"]) for r in rows],
    }  # fmt: skip


def _short(class_path: object) -> str:
    return str(class_path).rsplit(".", 1)[-1]


def run_title(run: dict) -> list[str]:
    """The header of a run's column: its label (method), what computed it (sampler on prior, or
    the module's class) and the run's ``name/version``."""
    hp = run["hparams"]
    if "model/sampler/class_path" in hp:
        what = _short(hp["model/sampler/class_path"])
        if "model/prior/class_path" in hp:
            what += f" on {_short(hp['model/prior/class_path'])}"
    elif "model/class_path" in hp:
        what = _short(hp["model/class_path"])
    else:
        what = ""
    where = str(hp.get("run") or "/".join(run["dir"].parts[-2:]))
    return [line for line in (run["label"], what, where) if line]


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


def image_order(runs: list[dict]) -> list[tuple[int, str]]:
    """``(index, name)`` of every image any run scored, by dataset index (then name)."""
    seen: dict[str, int] = {}
    for r in runs:
        for index, name in r["order"]:
            seen.setdefault(name, index)
    return sorted(((i, n) for n, i in seen.items()), key=lambda t: (t[0], t[1]))


def figure_columns(runs: list[dict]) -> list[Column]:
    """measurement | each run | reference (the first run that saved them)."""
    measurement = next(
        (r["dir"] / "measurement" for r in runs if (r["dir"] / "measurement").is_dir()), None
    )
    reference = next(
        (r["dir"] / "reference" for r in runs if (r["dir"] / "reference").is_dir()), None
    )
    columns = []
    if measurement is not None:
        columns.append(Column(["measurement"], png_folder(measurement), kind="measurement"))
    for r in runs:
        columns.append(Column(run_title(r), png_folder(r["dir"] / "restored"), r["rows"]))
    if reference is not None:
        columns.append(Column(["reference"], png_folder(reference), kind="reference"))
    return columns


def figure_pages(
    runs: list[dict],
    n_images: int | None = None,
    per_page: int = 8,
    tile: int | None = None,
    title: str = "",
) -> list:
    """The comparison figure's pages (:func:`lit_restore.evaluation.figures.comparison_pages`)
    over every image (the first ``n_images`` when given)."""
    order = image_order(runs)[:n_images]
    names = [n for _, n in order]
    labels = {n: f"{n} (#{i})" for i, n in order}
    return comparison_pages(figure_columns(runs), names, labels, per_page, tile, title=title)


def page_paths(out: Path, n_pages: int) -> list[Path]:
    """``comparison.png`` for one page, ``comparison_p1.png`` ... for more."""
    if n_pages == 1:
        return [out / "comparison.png"]
    return [out / f"comparison_p{k + 1}.png" for k in range(n_pages)]


def write_figures(runs: list[dict], out: Path, args: argparse.Namespace) -> list[Path]:
    """The comparison pages and the trade-off plot (+ its numbers); returns the files written."""
    pages_glob = [
        p for p in out.glob("comparison_p*.png") if re.fullmatch(r"comparison_p\d+\.png", p.name)
    ]
    for stale in [out / "comparison.png", *pages_glob]:
        stale.unlink(missing_ok=True)  # a previous comparison's pages (another page count)
    pages = figure_pages(runs, args.images, args.per_page, args.tile, title=f"stage: {args.stage}")
    written = []
    for path, (image, _) in zip(page_paths(out, len(pages)), pages):
        write_png(path, image)
        written.append(path)
    metric = (
        tradeoff.quality_metric(runs) if args.tradeoff_metric == "auto" else args.tradeoff_metric
    )
    pts = tradeoff.points(runs, metric)
    image, _ = tradeoff.plot(pts, metric)
    write_png(out / "tradeoff.png", image)
    atomic_write_text(out / "tradeoff.csv", tradeoff.to_csv(pts))
    atomic_write_text(out / "tradeoff.json", tradeoff.to_json(pts))
    return [*written, out / "tradeoff.png", out / "tradeoff.csv", out / "tradeoff.json"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m lit_restore.evaluation.compare", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "runs", nargs="+", type=Path, help="run directories (with per_image_<stage>.csv)"
    )
    ap.add_argument("--out", type=Path, default=Path("comparison"), help="output directory")
    ap.add_argument("--stage", default="test", help="which CSV to read (test or predict)")
    ap.add_argument(
        "--images", type=int, default=None, help="show the first N images (default: all)"
    )
    ap.add_argument("--per-page", type=int, default=8, help="images per figure page")
    ap.add_argument(
        "--tile", type=int, default=None, help="tile width in px (default: image width, 128-256)"
    )
    ap.add_argument(
        "--tradeoff-metric",
        choices=["auto", "psnr", "lpips"],
        default="auto",
        help="quality axis of tradeoff.png (auto: LPIPS when every run has it, else PSNR)",
    )
    ap.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="compare runs made on different data anyway (labelled [A], [B], ... and flagged)",
    )
    args = ap.parse_args(argv)
    if args.per_page < 1 or (args.images is not None and args.images < 1):
        raise ValueError("--per-page and --images must be at least 1")
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
    figures = write_figures(runs, args.out, args)
    print(md)
    print(
        f"wrote {args.out / 'comparison.md'}, "
        + ", ".join(["comparison.csv", *(p.name for p in figures)])
    )
    return 0


if __name__ == "__main__":
    from lit_restore.utils.errors import report_user_errors

    sys.exit(report_user_errors(main))
