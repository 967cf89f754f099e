"""``python -m lit_restore.evaluation.compare`` and ``python -m lit_restore.evaluation.score`` as a user runs them."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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

from lit_restore.utils.tables import read_rows

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


@pytest.fixture(scope="module")
def other_data_run(tmp_path_factory):
    """A run on other data (8 images instead of 6) with otherwise the same settings."""
    tmp = tmp_path_factory.mktemp("other")
    writer = RestoredImageWriter(save_measurement=True, save_reference=True)
    trainer = make_trainer(tmp, [make_metrics(), writer])
    trainer.test(NoisyIdentity(scale=0.5, method="other"), datamodule=FakeData(n=N + 2))
    return tmp / "run" / "version_0"


def _run_tool(*args, env=None, prelude=None) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` (``prelude``: Python run first, e.g. to simulate a full disk)."""
    command = [sys.executable, "-m", *args]
    if prelude is not None:
        code = f"{prelude}\nimport runpy, sys\nsys.argv = ['{args[0]}', *{list(args[1:])!r}]\n"
        command = [
            sys.executable,
            "-c",
            code + f"runpy.run_module('{args[0]}', run_name='__main__')",
        ]
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    environ.pop("LIT_RESTORE_DEBUG", None)
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, env=environ
    )


def _cli(*args, env=None):
    proc = _run_tool(*args, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _one_error(proc: subprocess.CompletedProcess) -> str:
    """The single ``error:`` line of a tool that failed as a user error (exit 2)."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    return line


def test_compare_cli_table_and_figure(two_runs, tmp_path):
    out = tmp_path / "cmp"
    stdout = _cli(
        "lit_restore.evaluation.compare", *map(str, two_runs), "--out", str(out), "--images", "3"
    )
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
    # one page (3 images): the figure compare's functions draw, with the tile of each image and
    # column (tests/test_figures.py checks the figure's content)
    from lit_restore.evaluation.compare import figure_pages, load_run

    runs = [load_run(d) for d in two_runs]
    (page, tiles), *more = figure_pages(runs, n_images=3, title="stage: test")
    assert not more and not list(out.glob("comparison_p*.png"))
    assert np.array_equal(np.asarray(Image.open(out / "comparison.png")), np.asarray(page))
    # the "mild" column (1) of img000 shows that run's restored img000, enlarged 4x (32 -> 128)
    (tile,) = [t for t in tiles if t.name == "img000" and t.column == 1]
    want = Image.open(two_runs[0] / "restored" / "img000.png").resize((128, 128), Image.NEAREST)
    got = np.asarray(page.crop(tile.image_rect))
    off = on_outline(tile) == 0  # all but the zoom region's 1-px outline
    assert off.sum() > 0.9 * off.size
    assert np.array_equal(got[off], np.asarray(want)[off])
    assert (out / "tradeoff.png").is_file() and (out / "tradeoff.json").is_file()


def on_outline(tile) -> np.ndarray:
    """[H, W] mask of a tile's pixels on its zoom outline (1) or not (0)."""
    left, top = tile.image_rect[:2]
    mask = np.zeros((tile.image_rect[3] - top, tile.image_rect[2] - left), dtype=np.uint8)
    x0, y0, x1, y1 = (v - o for v, o in zip(tile.outline, (left, top, left, top)))
    mask[y0:y1, x0:x1] = 1
    mask[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] = 0
    return mask


def test_score_cli_equals_callback_on_written_pngs(two_runs, tmp_path):
    """Scoring the written 8-bit PNGs reproduces the in-run per-image PSNR/SSIM (quantize=True)."""
    run = two_runs[1]
    csv_path = tmp_path / "scores.csv"
    stdout = _cli(
        "lit_restore.evaluation.score", "--restored", str(run / "restored"), "--reference",
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

    from lit_restore.evaluation.score import main
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


def test_compare_refuses_runs_on_other_data(two_runs, other_data_run, tmp_path):
    """The fingerprints say the data differ (6 vs 8 images): one error line naming the
    difference and --allow-mismatch; nothing written."""
    out = tmp_path / "cmp"
    args = [str(two_runs[0]), str(other_data_run), "--out", str(out)]
    proc = _run_tool("lit_restore.evaluation.compare", *args)
    line = _one_error(proc)
    assert "not made on the same data" in line and "data.n 6 -> 8" in line
    assert "--allow-mismatch" in line
    assert not out.exists()


def test_compare_allow_mismatch_labels_the_data_groups(two_runs, other_data_run, tmp_path):
    out = tmp_path / "cmp"
    args = [*map(str, [*two_runs, other_data_run]), "--out", str(out), "--allow-mismatch"]
    stdout = _cli("lit_restore.evaluation.compare", *args)
    assert "| [A] mild |" in stdout and "| [A] strong |" in stdout and "| [B] other |" in stdout
    table = (out / "comparison.md").read_text()
    assert "Warning: these runs were made on different data" in table
    assert f"[B] {other_data_run} vs [A] {two_runs[0]}: data.n 6 -> 8" in table
    with open(out / "comparison.csv") as f:
        assert {r["run"] for r in csv.DictReader(f)} == {"[A] mild", "[A] strong", "[B] other"}
    assert (out / "comparison.png").exists()


def test_tools_on_a_wrong_folder_give_one_line(tmp_path):
    missing = tmp_path / "nope"
    line = _one_error(_run_tool("lit_restore.evaluation.compare", str(missing)))
    assert str(missing) in line
    args = ["--restored", str(missing), "--reference", str(tmp_path), "--no-perceptual"]
    line = _one_error(_run_tool("lit_restore.evaluation.score", *args))
    assert "--restored" in line and str(missing) in line


def test_score_without_lpips_weights_names_no_perceptual(two_runs, tmp_path):
    run = two_runs[0]
    empty = {"TORCH_HOME": str(tmp_path / "t"), "LIT_RESTORE_HOME": str(tmp_path / "l")}
    args = ["--restored", str(run / "restored"), "--reference", str(run / "reference")]
    line = _one_error(_run_tool("lit_restore.evaluation.score", *args, env=empty))
    assert "alexnet-owt-7be5be79.pth" in line and "--no-perceptual" in line


@pytest.mark.parametrize("errno_name", ["ENOSPC", "EROFS"])
def test_tools_on_a_full_or_read_only_disk_give_one_line(two_runs, tmp_path, errno_name):
    """A full or read-only output folder (simulated: ``os.replace`` fails with that errno; a
    read-only chmod does not stop root): one error line naming the file, no temp file left."""
    prelude = (
        "import errno, os\n"
        f"def fail(*a, **k):\n    raise OSError(errno.{errno_name}, os.strerror(errno.{errno_name}))\n"
        "os.replace = fail"
    )
    run = two_runs[0]
    strerror = os.strerror(getattr(__import__("errno"), errno_name))
    out = tmp_path / "cmp"
    args = [*map(str, two_runs), "--out", str(out)]
    line = _one_error(_run_tool("lit_restore.evaluation.compare", *args, prelude=prelude))
    assert f"cannot write {out / 'comparison.md'}: {strerror}" in line
    scores = tmp_path / "scores.csv"
    args = ["--restored", str(run / "restored"), "--reference", str(run / "reference")]
    args += ["--no-perceptual", "--csv", str(scores)]
    line = _one_error(_run_tool("lit_restore.evaluation.score", *args, prelude=prelude))
    assert f"cannot write {scores}: {strerror}" in line and "--csv" in line
    assert not list(tmp_path.rglob("*.tmp"))
