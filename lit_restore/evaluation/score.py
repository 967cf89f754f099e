"""Score any folder of restored images against a folder of references (matched by file stem),
or alone with no-reference metrics.

``python -m lit_restore.evaluation.score --restored DIR --reference DIR [--crop-border N]
[--y-channel] [--metrics psnr ssim lpips] [--lpips alex|vgg] [--fid] [--no-perceptual]
[--csv PATH]``

``python -m lit_restore.evaluation.score --restored DIR [--metrics niqe clipiqa musiq maniqa]``:
without ``--reference`` (real low-quality inputs, e.g. RealSR / RealSet65 restorations) only
no-reference metrics are scored (default ``niqe clipiqa musiq``); each column names the
implementation that computed it (``clipiqa[pyiqa:clipiqa]``, ``niqe[lit_restore]``:
:mod:`lit_restore.metrics.registry`).

Uses exactly the metric code of the evaluation callbacks (:class:`lit_restore.metrics.MetricSuite`),
so results of other codebases (or of our own runs) are scored with one convention. Images are
found and read like every dataset (:class:`lit_restore.data.ImageFolder`,
:func:`lit_restore.data.io.load_image`: PNG/JPEG/BMP/TIFF/WebP, searched recursively, alpha
composited on white; an image's name is its path relative to the folder without extension).
Prints the table (mean of per-image values; FID/KID set-level) and writes a per-image CSV.
Errors a user can cause (a wrong folder, missing weights, an unwritable ``--csv``) end in one
``error: ...`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lit_restore.data.folders import ImageFolder
from lit_restore.metrics.scorer import MetricSuite
from lit_restore.utils.tables import aggregate, atomic_write_text, format_table, rows_to_csv
from lit_restore.weights import MissingWeightsError


def image_folder(root: Path, option: str) -> ImageFolder:
    """The images under ``root`` (recursive, sorted; read by :func:`lit_restore.data.io.load_image`)."""
    if not root.is_dir():
        raise FileNotFoundError(f"{option} {root} is not a directory; pass a folder of images")
    return ImageFolder(root)


def score_alone(restored: Path, suite: MetricSuite) -> tuple[list[dict], dict[str, float]]:
    """Per-image rows and the aggregate table of the no-reference metrics of ``suite``."""
    full_reference = [m for m in suite.metrics if suite.needs_reference(m)]
    if full_reference or suite.set_metrics:
        raise ValueError(
            f"{', '.join(full_reference + suite.set_metrics)} need(s) a reference: pass "
            "--reference DIR, or list only no-reference metrics in --metrics (niqe, clipiqa, "
            "musiq, maniqa)"
        )
    if not suite.metrics:
        raise ValueError(
            "no metric left to score: every no-reference metric needs a weight file, so "
            "--no-perceptual leaves none; drop --no-perceptual"
        )
    res = image_folder(restored, "--restored")
    if not res.names:
        raise FileNotFoundError(f"--restored {restored} holds no images")
    rows = []
    for i, name in enumerate(res.names):
        vals = suite.per_image(res[i]["image"][None])
        rows.append({"name": name, **{k: float(v[0]) for k, v in vals.items()}})
    summary: dict[str, float] = {"images": float(len(rows))}
    for m in suite.metrics:
        summary[m] = aggregate(r[m] for r in rows)
    return rows, summary


def score_folders(
    restored: Path, reference: Path, suite: MetricSuite, allow_missing: bool = False
) -> tuple[list[dict], dict[str, float]]:
    """Per-image rows and the aggregate table."""
    res, ref = image_folder(restored, "--restored"), image_folder(reference, "--reference")
    res_index = {n: i for i, n in enumerate(res.names)}
    ref_index = {n: i for i, n in enumerate(ref.names)}
    common = sorted(set(res_index) & set(ref_index))
    missing = sorted(set(ref_index) - set(res_index))
    if not common:
        raise FileNotFoundError(f"no image stems in common between {restored} and {reference}")
    if missing and not allow_missing:
        raise FileNotFoundError(
            f"{len(missing)} reference image(s) have no restoration in {restored} (e.g. "
            f"{missing[:3]}); pass --allow-missing to score the common {len(common)} only."
        )
    rows, fake, real = [], [], []
    for name in common:
        i, j = res_index[name], ref_index[name]
        x, y = res[i]["image"][None], ref[j]["image"][None]
        if x.shape != y.shape:
            raise ValueError(
                f"{res.files[i]} is {tuple(x.shape[-2:])} but {ref.files[j]} is "
                f"{tuple(y.shape[-2:])}"
            )
        vals = suite.per_image(x, y)
        rows.append({"name": name, **{k: float(v[0]) for k, v in vals.items()}})
        if suite.features is not None:
            fake.append(suite.image_features(x))
            real.append(suite.image_features(y))
    summary: dict[str, float] = {"images": float(len(rows))}
    for m in suite.metrics:
        summary[m] = aggregate(r[m] for r in rows)
    if fake:
        summary.update(suite.set_level(torch.cat(fake), torch.cat(real)))
    return rows, summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m lit_restore.evaluation.score", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--restored", type=Path, required=True)
    ap.add_argument(
        "--reference", type=Path, default=None, help="omit to score no-reference metrics only"
    )
    ap.add_argument(
        "--metrics",
        nargs="+",
        default=None,
        help="default: psnr ssim lpips (with --reference), niqe clipiqa musiq (without)",
    )
    ap.add_argument("--crop-border", type=int, default=0)
    ap.add_argument("--y-channel", action="store_true", help="PSNR/SSIM on BT.601 Y (BasicSR)")
    ap.add_argument(
        "--lpips", dest="lpips_net", default="alex", choices=["alex", "vgg"], help="LPIPS backbone"
    )
    ap.add_argument("--lpips-weights", default=None)
    ap.add_argument("--fid", action="store_true")
    ap.add_argument("--kid", action="store_true")
    ap.add_argument("--inception-weights", default=None)
    ap.add_argument("--niqe-weights", default=None, help="NIQE pristine-model .mat file")
    ap.add_argument("--clip-model", default=None, help="Hugging Face CLIP folder (torchmetrics)")
    ap.add_argument("--no-perceptual", action="store_true", help="PSNR/SSIM only (no weight files)")
    ap.add_argument("--allow-missing", action="store_true")
    ap.add_argument(
        "--csv",
        type=Path,
        default=None,
        help="per-image CSV (default: scores.csv next to --restored)",
    )
    args = ap.parse_args(argv)
    if args.metrics is None:
        args.metrics = ["psnr", "ssim", "lpips"] if args.reference else ["niqe", "clipiqa", "musiq"]
    try:
        suite = MetricSuite(
            metrics=args.metrics, fid=args.fid, kid=args.kid, perceptual=not args.no_perceptual,
            crop_border=args.crop_border, y_channel=args.y_channel, lpips_net=args.lpips_net,
            lpips_weights=args.lpips_weights, inception_weights=args.inception_weights,
            niqe_weights=args.niqe_weights, clip_model=args.clip_model,
        )  # fmt: skip
    except MissingWeightsError as err:
        raise MissingWeightsError(
            f"{err} Here: pass --no-perceptual to score PSNR/SSIM only, or --lpips-weights / "
            "--inception-weights / --niqe-weights FILE."
        ) from err
    if args.reference is None:
        rows, summary = score_alone(args.restored, suite)
        against = "no reference"
    else:
        rows, summary = score_folders(args.restored, args.reference, suite, args.allow_missing)
        against = f"vs {args.reference}"
    csv_path = args.csv or args.restored.resolve().parent / f"scores_{args.restored.name}.csv"
    atomic_write_text(csv_path, rows_to_csv(rows, ["name", *suite.metrics]))
    conv = f"crop_border={args.crop_border}, y_channel={args.y_channel}"
    print(format_table(summary, f"{args.restored} {against} ({conv}; mean of per-image values)"))
    print(f"per-image scores: {csv_path}")
    return 0


if __name__ == "__main__":
    from lit_restore.utils.errors import report_user_errors

    sys.exit(report_user_errors(main))
