"""``python -m lit_restore.compare`` and ``python -m lit_restore.score`` as a user runs them."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from metrics_fakes import (
    FakeData,
    NoisyIdentity,
    RestoredImageWriter,
    make_metrics,
    make_trainer,
)

from lit_restore.callbacks._io import read_rows

ROOT = Path(__file__).resolve().parents[1]
N = 6


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    dirs = []
    for method, scale in (("mild", 0.5), ("strong", 2.0)):
        tmp = tmp_path_factory.mktemp(method)
        writer = RestoredImageWriter(save_measurement=True, save_reference=True)
        trainer = make_trainer(tmp, [make_metrics(), writer])
        trainer.test(NoisyIdentity(scale=scale, method=method), datamodule=FakeData(n=N))
        dirs.append(tmp / "run" / "version_0")
    return dirs


def _cli(*args, env=None):
    proc = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_compare_cli_table_and_figure(two_runs, tmp_path):
    out = tmp_path / "cmp"
    stdout = _cli("lit_restore.compare", *map(str, two_runs), "--out", str(out), "--images", "3")
    assert "| mild |" in stdout and "| strong |" in stdout
    with open(out / "comparison.csv") as f:
        table = {r["run"]: r for r in csv.DictReader(f)}
    for run_dir, label in zip(two_runs, ("mild", "strong")):
        rows = read_rows(run_dir / "per_image_test.csv")[1]
        mean_psnr = sum(r["psnr"] for r in rows) / len(rows)
        assert float(table[label]["psnr"]) == pytest.approx(mean_psnr, rel=1e-9)
        assert float(table[label]["nfe_per_image"]) == 7.0
        assert float(table[label]["fid"]) > 0
    assert float(table["mild"]["psnr"]) > float(table["strong"]["psnr"]) + 5  # 4x less noise
    assert float(table["mild"]["lpips"]) < float(table["strong"]["lpips"])
    assert "mean of per-image values" in (out / "comparison.md").read_text()
    fig = Image.open(out / "comparison.png")
    # 3 rows x (measurement | mild | strong | reference) 32-px tiles, name column, header
    assert fig.size == (70 + 4 * 34, 14 + 3 * 34)
    # the "mild" column of row 0 is that run's restored img000
    tile = fig.crop((70 + 34, 14, 70 + 34 + 32, 14 + 32))
    assert list(tile.getdata()) == list(
        Image.open(two_runs[0] / "restored" / "img000.png").getdata()
    )


def test_score_cli_equals_callback_on_written_pngs(two_runs, tmp_path):
    """Scoring the written 8-bit PNGs reproduces the in-run per-image PSNR/SSIM (quantize=True)."""
    run = two_runs[1]
    csv_path = tmp_path / "scores.csv"
    stdout = _cli(
        "lit_restore.score", "--restored", str(run / "restored"), "--reference",
        str(run / "reference"), "--metrics", "psnr", "ssim", "--csv", str(csv_path),
    )  # fmt: skip
    assert "psnr" in stdout and "mean of per-image values" in stdout
    got = {r["name"]: r for r in read_rows(csv_path)[1]}
    want = {r["name"]: r for r in read_rows(run / "per_image_test.csv")[1]}
    assert sorted(got) == sorted(want)
    for name, r in want.items():
        # the reference PNG is the 8-bit hq, exactly what the callback scored after quantize
        assert got[name]["psnr"] == pytest.approx(r["psnr"], abs=1e-4)
        assert got[name]["ssim"] == pytest.approx(r["ssim"], abs=1e-5)


def test_score_lpips_offline_weights_and_crop(two_runs, tmp_path, monkeypatch):
    """LPIPS from a (random) AlexNet file in $TORCH_HOME; identical folders score LPIPS 0.

    Runs ``score.main`` in-process (the CLI itself is exercised by the test above)."""
    import torchvision

    from lit_restore.score import main
    from lit_restore.weights import MissingWeightsError

    ckpt = tmp_path / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.manual_seed(0)
    sd = torchvision.models.alexnet(weights=None).state_dict()
    torch.save(
        {k: v for k, v in sd.items() if k.startswith("features.")},
        ckpt / "alexnet-owt-7be5be79.pth",
    )
    ref = two_runs[0] / "reference"
    csv_path = tmp_path / "self.csv"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    args = ["--restored", str(ref), "--reference", str(ref), "--crop-border", "2", "--y-channel"]
    assert main([*args, "--csv", str(csv_path)]) == 0
    rows = read_rows(csv_path)[1]
    assert len(rows) == N and all(
        r["lpips"] == 0.0 and r["ssim"] == pytest.approx(1.0) for r in rows
    )
    # without the file: one clear error naming it
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("LIT_RESTORE_HOME", str(tmp_path / "empty"))
    with pytest.raises(MissingWeightsError, match=r"alexnet-owt-7be5be79\.pth"):
        main(args)
    # --no-perceptual runs without any weight file
    assert main([*args, "--no-perceptual", "--csv", str(csv_path)]) == 0
    assert "lpips" not in read_rows(csv_path)[0]
