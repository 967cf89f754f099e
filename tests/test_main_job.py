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
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
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
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONWARNINGS": "ignore"}
    cmd = [
        sys.executable, "sample.py", "test", "--config", str(suite),
        "--data.init_args.crop_size", str(CROP),
        "--trainer.logger.init_args.save_dir", str(tmp / "runs"),
        "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
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
    table = (comparison / "comparison.md").read_text()
    for name in RUNS:
        assert f"| {name} |" in table, name


def test_network_calls_per_image_are_the_methods(main_job) -> None:
    runs, _, _ = main_job
    for name in RUNS:
        for image, row in _rows(runs / name).items():
            assert float(row["nfe_per_image"]) == NFE[name], (name, image)
            assert row["diverged"] in ("False", "false", "0"), (name, image)


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
    """A⁺y for a full-row-rank A satisfies A(A⁺y) = y. The written PNGs are rounded to 1/255
    (±0.5/255 per pixel); A = MATLAB bicubic ↓4 is a weighted average whose weights sum to 1 with
    Σ|w| = 1.074 (the cubic kernel's negative lobes, per axis: 1.0363² in 2-D), so rounding the
    restored image moves A x by at most 1.074 · 0.5/255 = 2.1e-3, and rounding y by 0.5/255 =
    2.0e-3; their sum 4.1e-3 bounds |A(png(A⁺y)) − png(y)|. Clipping to [0, 1] before writing
    can only break it where A⁺y leaves [0, 1], so the bound is checked where it stays inside."""
    import torch

    from lit_restore.operators import BicubicSR

    runs, _, _ = main_job
    op = BicubicSR(4, mode="matlab")
    for image in DEMO:
        x = torch.from_numpy(_png(runs / "pinv" / "restored" / f"{image}.png")).permute(2, 0, 1)
        y = _png(runs / "pinv" / "measurement" / f"{image}.png")
        ax = ((op.A(x[None] * 2 - 1) + 1) / 2)[0].permute(1, 2, 0).numpy()
        inside = (y > 0.01) & (y < 0.99)
        assert np.abs(ax - y)[inside].max() <= 4.1e-3, image
