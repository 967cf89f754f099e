"""The README's main job (``configs/experiment/demo.yaml``), reduced for CI.

The same suite file, configs and code path (``sample.py test --config configs/experiment/demo.yaml``
as a user types it, the shipped weights), shrunk: the 8 demo images at 32 px instead of 128 and
3 guidance steps instead of the presets' counts (ResShift keeps its 4 trained steps). What it
checks is the suite's structure and numbers that follow from the arithmetic, not the targets
(those are measured at full size, README "The main job"):

- every method runs as its own run on the same measurements (the measurement and reference PNGs
  of the five runs are byte-identical) and the comparison lists all five;
- each run restores every image once, with the network calls its method makes (NFE);
- each per-image PSNR in the CSV is the PSNR of the written PNGs (recomputed here);
- A⁺y is consistent with its measurement: downsampling the restored image gives back y.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml
from entry_points import ROOT, run_entry
from PIL import Image

SUITE = ROOT / "configs" / "experiment" / "demo.yaml"
DEMO = sorted(p.stem for p in (ROOT / "data" / "demo").glob("*.png"))
RUNS = ["pinv", "dps", "safari", "ddnm", "resshift"]
CROP, STEPS = 32, 3
#: network calls per image: zero-shot samplers one per step, ResShift its T = 4 steps, A⁺y none
NFE = {"pinv": 0, "dps": STEPS, "safari": STEPS, "ddnm": STEPS, "resshift": 4}


def _rows(run_dir: Path) -> dict[str, dict[str, str]]:
    with open(run_dir / "per_image_test.csv") as f:
        return {r["name"]: r for r in csv.DictReader(f)}


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


@pytest.fixture(scope="module")
def main_job(tmp_path_factory) -> tuple[Path, Path, str]:
    """The suite file with the comparison in a temporary folder and ``steps: 3`` added to the
    zero-shot runs (the only edits), run once."""
    tmp = tmp_path_factory.mktemp("main_job")
    spec = yaml.safe_load(SUITE.read_text())["suite"]
    assert list(spec["runs"]) == RUNS
    for args in spec["runs"].values():
        if any("configs/sampler/" in a for a in args):
            args.append(f"--model.init_args.sampler.init_args.steps={STEPS}")
    spec["compare"] = str(tmp / "comparison")
    suite = tmp / "demo.yaml"
    suite.write_text(yaml.safe_dump({"suite": spec}))
    out = run_entry(
        "sample.py", "test", "--config", suite,
        "--data.init_args.crop_size", str(CROP),
        "--trainer.logger.init_args.save_dir", tmp / "runs",
        "--trainer.enable_progress_bar", "false",
        timeout=900,
    )  # fmt: skip
    return tmp / "runs" / "demo", tmp / "comparison", out.stdout


def test_every_method_runs_on_the_same_measurements(main_job) -> None:
    runs, comparison, stdout = main_job
    for name in RUNS:
        assert f"[suite] run {name}" in stdout
        assert sorted(_rows(runs / name)) == DEMO, name
    for folder in ("measurement", "reference"):
        for image in DEMO:
            first = (runs / RUNS[0] / folder / f"{image}.png").read_bytes()
            for name in RUNS[1:]:
                assert (runs / name / folder / f"{image}.png").read_bytes() == first, (name, image)
    assert (runs / "dps.log").is_file()  # jobs: 2 — dps ran in a child process beside pinv
    table = (comparison / "comparison.md").read_text()
    for name in RUNS:
        assert f"| {name} |" in table, name


def test_network_calls_per_image_are_the_methods(main_job) -> None:
    runs, _, _ = main_job
    for name in RUNS:
        for image, row in _rows(runs / name).items():
            assert float(row["nfe_per_image"]) == NFE[name], (name, image)
            assert float(row["diverged"]) == 0, (name, image)


def test_per_image_psnr_is_that_of_the_written_pngs(main_job) -> None:
    """The metrics score the 8-bit images the writer saves (``quantize: true``), so PSNR from the
    PNGs must equal the CSV's to its printed precision: both are 10·log10(1/MSE) of the same
    uint8 values; the CSV keeps ≥ 6 significant digits, a relative 5e-6 of ≤ 60 dB = 3e-4 dB."""
    runs, _, _ = main_job
    for name in RUNS:
        for image, row in _rows(runs / name).items():
            out = _png(runs / name / "restored" / f"{image}.png")
            ref = _png(runs / name / "reference" / f"{image}.png")
            assert out.shape == ref.shape == (CROP, CROP, 3)
            mse = float(np.mean((out - ref) ** 2))
            assert float(row["psnr"]) == pytest.approx(10 * np.log10(1.0 / mse), abs=3e-4)


def test_pseudo_inverse_reproduces_its_measurement(main_job) -> None:
    """A⁺y for a full-row-rank A satisfies A(A⁺y) = y (BicubicSR's SVD keeps every singular value
    at this size: none is below its threshold). What is written is rounded: the restored PNG by
    at most δ = 0.5/255 per pixel, which moves (A x)ᵢ by at most δ·Σⱼ|Aᵢⱼ| (Σ|A| of row i: the
    cubic kernel's negative lobes make it > 1), and the measurement PNG by δ; so
    |A(png(A⁺y)) − png(y)|ᵢ ≤ δ·(Σⱼ|Aᵢⱼ| + 1) + 1e-5 (float32 round-off of A and A⁺), computed
    per pixel from the operator's own 1-D matrices (A = A_h X A_wᵀ per channel). Clipping to
    [0, 1] before writing breaks it only where a pixel of the row's footprint was clipped, or y
    itself: those rows are left out (and most are kept)."""
    from lit_restore.operators import BicubicSR

    runs, _, _ = main_job
    op = BicubicSR(4, mode="matlab")
    a_h, a_w = (m.double().numpy() for m in op.matrices(CROP, CROP))
    delta = 0.5 / 255
    bound = delta * (np.abs(a_h).sum(1)[:, None] * np.abs(a_w).sum(1)[None, :] + 1) + 1e-5
    kept = 0
    for image in DEMO:
        x = _png(runs / "pinv" / "restored" / f"{image}.png")  # H, W, C
        y = _png(runs / "pinv" / "measurement" / f"{image}.png")
        ax = np.einsum("ik,klc,jl->ijc", a_h, x, a_w)
        clipped = ((x <= 0) | (x >= 1)).astype(np.float64)
        touched = np.einsum("ik,klc,jl->ijc", np.abs(a_h) > 0, clipped, np.abs(a_w) > 0) > 0
        valid = ~touched & (y > 0) & (y < 1)
        assert np.all(np.abs(ax - y)[valid] <= np.broadcast_to(bound[..., None], y.shape)[valid])
        kept += int(valid.sum())
    assert kept > 0.5 * len(DEMO) * (CROP // 4) ** 2 * 3  # the check covers most pixels
