"""Results on disk are never stale: fingerprint, resume of complete images only, umask, overwrite.

Runs the real callbacks on the fake datamodule of ``tests/metrics_fakes.py`` (random LPIPS and
FID networks; every restored image is a function of its index alone).
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from metrics_fakes import (
    FakeData,
    ImageGridLogger,
    NoisyIdentity,
    RestoredImageWriter,
    make_metrics,
    make_trainer,
)

from lit_restore.evaluation.records import OVERWRITE_ENV, RunMismatchError, is_complete
from lit_restore.utils.tables import read_rows

N = 6


def _run(tmp, module=None, data=None, **metrics_kw):
    writer = RestoredImageWriter(save_measurement=True, save_reference=True)
    trainer = make_trainer(tmp, [make_metrics(**metrics_kw), writer, ImageGridLogger()])
    module = module or NoisyIdentity()
    trainer.test(module, datamodule=data or FakeData(n=N))
    return module


def _files(run_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def _rows(run_dir: Path) -> dict[int, dict]:
    return {r["index"]: r for r in read_rows(run_dir / "per_image_test.csv")[1]}


def _same_rows(a: dict[int, dict], b: dict[int, dict]) -> bool:
    """Equal per-image rows (NaN equals NaN; the wall-clock column aside)."""

    def key(rows):
        return {
            (i, k): "nan" if isinstance(v, float) and math.isnan(v) else v
            for i, row in rows.items()
            for k, v in row.items()
            if k != "seconds_per_image"
        }

    return key(a) == key(b)


@pytest.fixture
def done_run(tmp_path):
    _run(tmp_path)
    return tmp_path, tmp_path / "run" / "version_0"


def test_changed_setting_is_refused_and_nothing_is_touched(done_run):
    """A rerun with another guidance scale (or other data, or other metric options) stops in
    setup with one message naming the change and the ways out; every file stays byte-identical
    and the event file the refused run's logger opened is removed."""
    tmp, run_dir = done_run
    before = _files(run_dir)
    assert (run_dir / "fingerprint_test.json").exists()
    cases = [
        (dict(module=NoisyIdentity(scale=5.0)), "model.scale 1.0 -> 5.0"),
        (dict(data=FakeData(n=N, with_hq=False)), "data.with_hq true -> false"),
        (dict(crop_border=2), "metrics.crop_border 0 -> 2"),
    ]
    for kwargs, change in cases:
        with pytest.raises(RunMismatchError) as err:
            _run(tmp, **kwargs)
        message = str(err.value)
        assert change in message and "\n" not in message
        assert "--trainer.logger.init_args.version" in message and OVERWRITE_ENV in message
        assert _files(run_dir) == before


def test_same_settings_resume_nothing_and_results_are_kept(done_run):
    tmp, run_dir = done_run
    rows = _rows(run_dir)
    again = _run(tmp)
    assert again.restored == []
    assert _same_rows(_rows(run_dir), rows)


def test_refusal_waits_for_the_resume_option_and_covers_writer_only_runs(done_run):
    """The writer listed before a ``RestorationMetrics(resume=False)``: the mismatch the writer's
    join finds is held until the metric callback asks to overwrite. A run with the writer alone
    (no resume option) and other settings is refused when the epoch starts, files untouched."""
    tmp, run_dir = done_run
    before = _files(run_dir)
    writer = RestoredImageWriter(save_measurement=True, save_reference=True)
    trainer = make_trainer(tmp, [writer])
    with pytest.raises(RunMismatchError, match=r"model\.scale 1\.0 -> 3\.0"):
        trainer.test(NoisyIdentity(scale=3.0), datamodule=FakeData(n=N))
    assert _files(run_dir) == before
    writer = RestoredImageWriter(save_measurement=True, save_reference=True)
    trainer = make_trainer(tmp, [writer, make_metrics(resume=False)])
    module = NoisyIdentity(scale=3.0)
    trainer.test(module, datamodule=FakeData(n=N))
    assert sorted(module.restored) == list(range(N))


def test_results_without_fingerprint_are_refused(done_run):
    """Results of an older lit_restore (no fingerprint) cannot be checked: refused."""
    tmp, run_dir = done_run
    (run_dir / "fingerprint_test.json").unlink()
    with pytest.raises(RunMismatchError, match=r"no readable fingerprint_test\.json"):
        _run(tmp)


@pytest.mark.parametrize("how", ["env", "resume_false"])
def test_overwrite_replaces_the_results(done_run, monkeypatch, how):
    """Overwriting (LIT_RESTORE_OVERWRITE=1 or resume: false) restores everything again with the
    new settings and removes the old run's per-image files (here: images the new data lacks)."""
    tmp, run_dir = done_run
    if how == "env":
        monkeypatch.setenv(OVERWRITE_ENV, "1")
    kwargs = {"resume": False} if how == "resume_false" else {}
    module = _run(tmp, module=NoisyIdentity(scale=0.5), data=FakeData(n=4), **kwargs)
    assert sorted(module.restored) == [0, 1, 2, 3]
    assert sorted(_rows(run_dir)) == [0, 1, 2, 3]
    assert sorted(p.stem for p in (run_dir / "restored").glob("*.png")) == [
        f"img{i:03d}" for i in range(4)
    ]
    assert not (run_dir / "reference" / "img005.png").exists()
    assert not (run_dir / "fid_features" / "00000005.npy").exists()
    # the new fingerprint is stored: the same settings now resume
    monkeypatch.delenv(OVERWRITE_ENV, raising=False)
    assert _run(tmp, module=NoisyIdentity(scale=0.5), data=FakeData(n=4)).restored == []


def test_incomplete_images_are_redone_and_temp_files_removed(done_run):
    """A kill between writes: a truncated restored PNG, a deleted measurement PNG, a truncated
    FID feature file, a stray temp file. Exactly those images are redone; the temp file goes; the
    final CSV equals the uninterrupted run's."""
    tmp, run_dir = done_run
    rows = _rows(run_dir)
    png = run_dir / "restored" / "img001.png"
    png.write_bytes(png.read_bytes()[:-1])  # one byte short: the IEND chunk is torn
    assert not is_complete(png)
    (run_dir / "measurement" / "img003.png").unlink()
    npy = run_dir / "fid_features" / "00000004.npy"
    npy.write_bytes(npy.read_bytes()[:-8])
    stray = run_dir / "restored" / f".img002.png.{os.getpid()}.0badc0de.tmp"
    stray.write_bytes(b"half a png")
    again = _run(tmp)
    assert sorted(again.restored) == [1, 3, 4]
    assert not stray.exists()
    assert is_complete(png) and is_complete(npy)
    assert (run_dir / "measurement" / "img003.png").exists()
    assert _same_rows(_rows(run_dir), rows)


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_result_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        _run(tmp_path)
    finally:
        os.umask(old)
    run_dir = tmp_path / "run" / "version_0"
    ours = [
        run_dir / "per_image_test.csv",
        run_dir / "summary_test.json",
        run_dir / "fingerprint_test.json",
        run_dir / "grid_test.png",
        run_dir / "restored" / "img000.png",
        run_dir / "fid_features" / "00000000.npy",
    ]
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in ours} == {
        p.name: oct(mode) for p in ours
    }


def test_grid_of_a_resumed_run_is_complete(done_run):
    """Images done by the earlier run come back into the grid from the writer's PNGs, so a
    resumed run rewrites the same grid, not one with its new images only."""
    tmp, run_dir = done_run
    grid = (run_dir / "grid_test.png").read_bytes()
    (run_dir / "restored" / "img002.png").unlink()  # one grid image is redone, three read back
    assert _run(tmp).restored == [2]
    assert (run_dir / "grid_test.png").read_bytes() == grid


class WithKernel(NoisyIdentity):
    """A module with a buffer, as a restored checkpoint sets it."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.register_buffer("kernel", torch.full((3,), value))


def test_weights_restored_from_a_checkpoint_are_compared(tmp_path):
    """Weights restored after ``setup`` (``ckpt_path``) are compared when the epoch starts: the
    digest is of the weights the run uses, not of the module as built. A refusal then puts back
    the ``config.yaml`` that LightningCLI's SaveConfigCallback (overwrite=True) rewrote."""
    from lightning.pytorch import __version__ as pl_version
    from lightning.pytorch.callbacks import Callback

    def ckpt(value: float) -> str:
        path = tmp_path / f"kernel{value}.ckpt"
        state = {
            "state_dict": WithKernel(value).state_dict(),
            "pytorch-lightning_version": pl_version,
        }
        torch.save(state, path)
        return str(path)

    run_dir = tmp_path / "run" / "version_0"

    class SaveConfig(Callback):  # runs after the evaluation callbacks' setup, like LightningCLI's
        def setup(self, trainer, pl_module, stage):
            (run_dir / "config.yaml").write_text(f"kernel from {trainer.ckpt_path}\n")

    def run(built: float, restored: float) -> NoisyIdentity:
        module = WithKernel(built)
        trainer = make_trainer(tmp_path, [make_metrics(), RestoredImageWriter(), SaveConfig()])
        trainer.test(module, datamodule=FakeData(n=N), ckpt_path=ckpt(restored))
        return module

    assert len(run(built=1.0, restored=0.0).restored) == N
    assert run(built=5.0, restored=0.0).restored == []  # the same weights after restoring: resume
    before = _files(run_dir)
    with pytest.raises(RunMismatchError, match=r"model\.weights"):
        run(built=0.0, restored=2.0)  # other restored weights (the setup-time module is equal)
    assert _files(run_dir) == before


@pytest.mark.parametrize("scale,flagged", [(1e6, True), (0.3, False)])
def test_diverging_guidance_is_flagged_per_image(tmp_path, scale, flagged):
    """DPS with a huge step on the analytic Gaussian prior turns x̂ into a black/white image
    (clipped far beyond the reference): the ``diverged`` column flags each such image, the summary
    counts them and one warning names them with the option to lower. A sane step flags none.
    (The threshold and the clipped fractions it separates: lit_restore.metrics.divergence.)"""
    from lit_restore.modules import ZeroShotRestoration
    from lit_restore.operators import AvgPoolSR
    from lit_restore.priors import PowerLawGaussianPrior
    from lit_restore.samplers import DPS

    module = ZeroShotRestoration(
        prior=PowerLawGaussianPrior(alpha=3.0, std=0.5, channels=3),
        sampler=DPS(steps=10, scale=scale),
        operator=AvgPoolSR(factor=2),  # FakeData's measurement: 2×2 average pooling
    )
    metrics = make_metrics(fid=False)
    trainer = make_trainer(tmp_path, [metrics])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.test(module, datamodule=FakeData(n=3))
    rows = read_rows(tmp_path / "run" / "version_0" / "per_image_test.csv")[1]
    assert [r["diverged"] for r in rows] == [float(flagged)] * 3
    assert metrics.summary["diverged"] == (3.0 if flagged else 0.0)
    messages = [str(w.message) for w in record if "diverged" in str(w.message)]
    if flagged:
        (message,) = messages
        assert "3 of 3 image(s) diverged" in message and "img000, img001, img002" in message
        assert "sampler.init_args.scale" in message
    else:
        assert messages == []
