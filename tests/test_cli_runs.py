"""train.py / sample.py run as a user types them (subprocesses), on the shipped configs.

- the README's demo baseline writes its outputs;
- ``--trainer.devices 2 --trainer.strategy ddp`` (CPU) restores every demo image exactly once and
  its per-image numbers and files equal the 1-process run's;
- a prior trained with ``train.py fit`` resumes from its checkpoint and loads in ``sample.py``.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from entry_points import ROOT, entry_command, entry_env, run_entry
from PIL import Image


def _rows(run_dir: Path) -> dict[str, dict[str, str]]:
    with open(run_dir / "per_image_test.csv") as f:
        return {r["name"]: r for r in csv.DictReader(f)}


DEMO = sorted(p.stem for p in (ROOT / "data" / "demo").glob("*.png"))


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory) -> tuple[Path, Path]:
    """The demo baseline once in 1 process and once in 2 DDP processes."""
    base = tmp_path_factory.mktemp("demo")
    cfg = "configs/experiment/demo_pinv.yaml"
    common = ["--trainer.logger.init_args.save_dir", str(base)]
    run_entry(
        "sample.py", "test", "--config", cfg, *common, "--trainer.logger.init_args.version", "one"
    )
    ddp = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    run_entry(
        "sample.py",
        "test",
        "--config",
        cfg,
        *common,
        *ddp,
        "--trainer.logger.init_args.version",
        "two",
    )
    return base / "demo_pinv" / "one", base / "demo_pinv" / "two"


def test_demo_baseline_writes_outputs(demo_runs):
    one, _ = demo_runs
    assert sorted(p.stem for p in (one / "restored").glob("*.png")) == DEMO
    assert sorted(p.stem for p in (one / "measurement").glob("*.png")) == DEMO
    assert list(one.glob("events.out.tfevents.*")), "no TensorBoard log"
    rows = _rows(one)
    assert sorted(rows) == DEMO
    # A⁺y of bicubic SR×4 with 1 % noise: far from the reference, far from garbage
    psnr = [float(r["psnr"]) for r in rows.values()]
    assert min(psnr) > 18 and max(psnr) < 40
    summary = json.loads((one / "summary_test.json").read_text())
    mean = sum(psnr) / len(psnr)
    assert summary["metrics"]["psnr"] == pytest.approx(mean, rel=1e-6)


def _png01(path: Path) -> torch.Tensor:
    """A written PNG as a [1,3,H,W] float64 tensor of its exact 8-bit levels k/255."""
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255)[
        None
    ].permute(0, 3, 1, 2)


def test_ddp_two_processes_restore_each_image_once_and_match(demo_runs):
    """2 DDP ranks restore every image once, and their numbers differ from 1 process only by
    what float32 reduction order can do — a bound derived here, not a tolerance.

    1. Both runs compute the same x̂ = A⁺y from the same y; the only difference is the order of
       float32 sums (a rank has 1 BLAS thread, the single process 2): measured ≤ 1.3e-6 in model
       space, i.e. ≤ 1.7e-4 grey levels. Rounding to 8 bits flips a value by one level only when
       it lies within that distance of a rounding boundary, so the PNGs differ by at most one
       level on a fraction of values of about 1.7e-4 (< 1e-3 asserted).
    2. PSNR/SSIM are computed in float64 on the 8-bit images (``MetricSuite``), so each run's CSV
       value equals the metric recomputed from *its own* PNG to float64 round-off (1e-9).
    3. Hence the runs' PSNRs can differ by no more than those flips allow: with e = x̂_a − x (in
       [0,1] units), a flip d = ±1/255 on value p changes the MSE by 2·e_p·d + d², so
       |ΔMSE| ≤ Σ_flipped (2|e_p|/255 + 1/255²) / N and |ΔPSNR| ≤ 10/ln 10 · |ΔMSE| / min MSE.
    """
    from lit_restore.data.io import load_image
    from lit_restore.metrics.scorer import MetricSuite

    one, two = demo_runs
    rows1, rows2 = _rows(one), _rows(two)
    assert sorted(rows2) == DEMO  # every image, exactly once (a dict would hide duplicates:)
    with open(two / "per_image_test.csv") as f:
        assert len(list(csv.DictReader(f))) == len(DEMO)
    suite = MetricSuite(metrics=["psnr", "ssim"], perceptual=False)
    psnr_bounds = []
    for name in DEMO:
        ref = load_image(ROOT / "data" / "demo" / f"{name}.png")[None].double()  # 256 px = crop
        a, b = _png01(one / "restored" / f"{name}.png"), _png01(two / "restored" / f"{name}.png")
        assert a.shape == b.shape == ref.shape
        flipped = (a - b).abs() > 0
        assert (a - b).abs().max() <= 1 / 255 + 1e-12  # (1)
        assert flipped.double().mean() < 1e-3
        for run, png in ((rows1, a), (rows2, b)):  # (2)
            scores = suite.per_image(png, ref)
            for metric in ("psnr", "ssim"):
                assert float(run[name][metric]) == pytest.approx(float(scores[metric]), abs=1e-9)
        mse_a, mse_b = ((a - ref) ** 2).mean(), ((b - ref) ** 2).mean()  # (3)
        dmse = (2 * (a - ref).abs()[flipped] / 255 + 1 / 255**2).sum() / a.numel()
        bound = float(10 / np.log(10) * dmse / min(mse_a, mse_b))
        psnr_bounds.append(bound)
        assert abs(float(rows2[name]["psnr"]) - float(rows1[name]["psnr"])) <= bound + 1e-9
    s1 = json.loads((one / "summary_test.json").read_text())["metrics"]
    s2 = json.loads((two / "summary_test.json").read_text())["metrics"]
    assert abs(s2["psnr"] - s1["psnr"]) <= np.mean(psnr_bounds) + 1e-9
    for s, rows in ((s1, rows1), (s2, rows2)):  # the summary is the mean of its own rows
        for metric in ("psnr", "ssim"):
            assert s[metric] == pytest.approx(np.mean([float(r[metric]) for r in rows.values()]))


def test_train_prior_resume_and_sample_with_it(tmp_path):
    """prior_deadleaves_64 shrunk for CPU: fit 2 steps, resume to 3, then restore with it."""
    ckpt_dir = tmp_path / "ckpt"
    tiny = [
        "--config", "configs/experiment/prior_deadleaves_64.yaml",
        "--model.init_args.network.image_size", "16",
        "--model.init_args.network.num_channels", "32",
        "--model.init_args.network.num_res_blocks", "1",
        "--model.init_args.network.channel_mult", "1,2",
        "--model.init_args.network.attention_resolutions", "8",
        "--data.init_args.train_set.init_args.image_size", "16",
        "--data.init_args.val_set.init_args.image_size", "16",
        "--data.init_args.val_set.init_args.length", "4",
        "--data.init_args.crop_size", "16",
        "--data.init_args.batch_size", "4",
        "--data.init_args.num_workers", "0",
        "--trainer.accelerator", "cpu",
        "--trainer.val_check_interval", "2",
        "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path),
    ]  # fmt: skip
    # callbacks as a list in a config file: fast EMA, a checkpoint after every step
    cfg = tmp_path / "override.yaml"
    cfg.write_text(
        "trainer:\n  callbacks:\n"
        "    - class_path: lightning.pytorch.callbacks.EMAWeightAveraging\n"
        "      init_args: {decay: 0.9}\n"
        "    - class_path: lightning.pytorch.callbacks.ModelCheckpoint\n"
        f"      init_args: {{dirpath: {ckpt_dir}, save_last: true, every_n_train_steps: 1}}\n"
    )
    run_entry("train.py", "fit", *tiny, "--config", str(cfg), "--trainer.max_steps", "2")
    last = ckpt_dir / "last.ckpt"
    assert last.is_file()
    import torch

    assert torch.load(last, weights_only=True, map_location="cpu")["global_step"] == 2
    run_entry("train.py", "fit", *tiny, "--config", str(cfg), "--trainer.max_steps", "3",
         "--ckpt_path", str(last))  # fmt: skip
    assert torch.load(last, weights_only=True, map_location="cpu")["global_step"] == 3

    # the trained prior restores the demo images (16 px crops) through sample.py
    run = [
        "--config", "configs/experiment/demo_base.yaml",
        "--config", "configs/prior/tiny_adm.yaml",
        "--model.init_args.prior.init_args.name_or_path", str(last),
        "--model.init_args.sampler", "lit_restore.samplers.DDRM",
        "--model.init_args.sampler.init_args.steps", "3",
        "--data.init_args.crop_size", "16",
        "--data.init_args.operator.init_args.factor", "2",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
        "--trainer.logger.init_args.version", "trained_prior",
    ]  # fmt: skip
    run_entry("sample.py", "test", *run)
    rows = _rows(tmp_path / "runs" / "demo" / "trained_prior")
    assert sorted(rows) == DEMO  # a 3-step prior restores badly, but every image, finitely:
    assert all(np.isfinite(float(r["psnr"])) for r in rows.values())


def test_zero_shot_ddp_gives_the_same_images_as_one_process(tmp_path):
    """DPS (stochastic, gradient through the prior) on 2 CPU ranks vs 1: per-image seeds."""
    common = [
        "--config", "configs/experiment/demo_base.yaml",
        "--config", "configs/sampler/dps_demo.yaml",
        "--model.init_args.sampler.init_args.steps", "5",
        "--data.init_args.crop_size", "32",
        "--data.init_args.batch_size", "3",
        "--trainer.logger.init_args.save_dir", str(tmp_path),
    ]  # fmt: skip
    run_entry("sample.py", "test", *common, "--trainer.logger.init_args.version", "one")
    ddp = ["--trainer.devices", "2", "--trainer.strategy", "ddp"]
    run_entry("sample.py", "test", *common, *ddp, "--trainer.logger.init_args.version", "two")
    one, two = tmp_path / "demo" / "one", tmp_path / "demo" / "two"
    assert sorted(_rows(two)) == DEMO
    for name in DEMO:
        a = np.asarray(Image.open(one / "restored" / f"{name}.png"), dtype=np.int16)
        b = np.asarray(Image.open(two / "restored" / f"{name}.png"), dtype=np.int16)
        assert np.abs(a - b).max() <= 1 and (a != b).mean() < 1e-2, name


def test_demo_suite_runs_both_methods_and_compares(tmp_path):
    """The Gaussian-prior demo suite, shrunk (32 px, 5 steps): two runs, then the comparison. The
    suite runs them in its own process; each run's files equal those of the same run started on
    its own (restored PNGs byte for byte, per-image metrics exactly; only the timing column
    differs). (The main job on the shipped weights: tests/test_main_job.py.)"""
    suite = tmp_path / "demo_gaussian.yaml"
    text = (ROOT / "configs" / "experiment" / "demo_gaussian.yaml").read_text()
    suite.write_text(text.replace("runs/demo_gaussian/comparison", str(tmp_path / "comparison")))
    shrink = ["--data.init_args.crop_size", "32", "--model.init_args.sampler.init_args.steps", "5"]
    out = run_entry(
        "sample.py", "test", "--config", str(suite), *shrink,
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
    )  # fmt: skip
    assert "[suite] run safari" in out.stdout and "[suite] run dps" in out.stdout
    assert "child process" not in out.stdout  # both runs stayed in the suite's process
    for run in ("safari", "dps"):
        assert sorted(_rows(tmp_path / "runs" / "demo_gaussian" / run)) == DEMO
    table = (tmp_path / "comparison" / "comparison.md").read_text()
    assert "| safari |" in table and "| dps |" in table
    figure = Image.open(tmp_path / "comparison" / "comparison.png")
    assert figure.width > 4 * 32 and figure.height > 32

    run_entry(
        "sample.py", "test", "--config", "configs/experiment/demo_base.yaml",
        "--config", "configs/sampler/dps_demo.yaml", *shrink,
        "--trainer.logger.init_args.save_dir", str(tmp_path / "solo"),
        "--trainer.logger.init_args.name", "demo_gaussian",
        "--trainer.logger.init_args.version", "dps",
    )  # fmt: skip
    in_suite = tmp_path / "runs" / "demo_gaussian" / "dps"
    solo = tmp_path / "solo" / "demo_gaussian" / "dps"
    pngs = sorted(p.relative_to(solo) for p in solo.rglob("*.png") if p.name != "grid_test.png")
    assert len(pngs) == 3 * len(DEMO)  # restored, measurement, reference
    for rel in pngs:
        assert (in_suite / rel).read_bytes() == (solo / rel).read_bytes(), rel
    a, b = _rows(in_suite), _rows(solo)
    for name in DEMO:
        for column in ("psnr", "ssim", "nfe_per_image"):
            assert a[name][column] == b[name][column], (name, column)


def _process_group(pgid: int) -> list[int]:
    """PIDs of the live processes in process group ``pgid`` (from /proc; zombies excluded)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            pids.append(int(stat.parent.name))
    return pids


def _start_suite(tmp_path: Path, extra: list[str]) -> tuple[subprocess.Popen, list[str]]:
    """A one-run demo suite whose run lasts minutes (DPS, 1000 steps at 128 px), started as a
    user would; returns the process and a list its stdout lines are appended to."""
    import threading

    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "suite:\n  base: [configs/experiment/demo_base.yaml, configs/sampler/dps_demo.yaml]\n"
        f"  runs: {{long: []}}\n  compare: {tmp_path / 'comparison'}\n"
    )
    cmd = entry_command(
        "sample.py", "test", "--config", suite,
        "--model.init_args.sampler.init_args.steps", "1000",
        "--trainer.logger.init_args.save_dir", tmp_path / "runs",
        "--trainer.enable_progress_bar", "false", *extra,
    )  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=entry_env(), stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    return proc, lines


def _wait_for(predicate, timeout: float, what: str) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_sigterm_stops_an_in_process_suite_run_at_once(tmp_path):
    """Lightning alone would finish the current batch (minutes here) and exit with status 0."""
    import signal
    import time

    proc, lines = _start_suite(tmp_path, [])
    try:
        _wait_for(lambda: any("[suite] run long:" in ln for ln in lines), 120, "the run to start")
        time.sleep(3)  # inside the run (building it or sampling)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        assert time.monotonic() - sent < 60
        assert not (tmp_path / "comparison").exists()
    finally:
        proc.kill()


def test_sigterm_to_the_suite_kills_a_child_run_and_its_ranks(tmp_path):
    """A DDP run (2 CPU ranks) runs as a child process group; SIGTERM to the suite reaches it."""
    import re
    import signal

    ddp = [
        "--trainer.devices",
        "2",
        "--trainer.strategy",
        "ddp",
        "--data.init_args.crop_size",
        "64",
    ]
    proc, lines = _start_suite(tmp_path, ddp)
    group = 0
    try:

        def child_started() -> bool:
            nonlocal group
            found = [re.search(r"child process group (\d+)", ln) for ln in lines]
            group = next((int(m.group(1)) for m in found if m), 0)
            return group > 0

        _wait_for(child_started, 120, "the child run")
        _wait_for(lambda: len(_process_group(group)) >= 2, 180, "the second DDP rank")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 128 + signal.SIGTERM
        _wait_for(lambda: not _process_group(group), 60, "the child's processes to exit")
    finally:
        proc.kill()
        for pid in _process_group(group) if group else []:
            os.kill(pid, signal.SIGKILL)


def test_resshift_fit_then_test_and_predict_on_lq_folder(tmp_path):
    """Trained ResShift through the CLI: fit a few steps, test with the checkpoint on the demo
    images (metrics), then predict on a folder of odd-sized real LQ images (no reference)."""
    cfg = ["--config", "configs/experiment/resshift_demo_pixel.yaml"]
    run_entry("train.py", "fit", *cfg, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
         "--trainer.val_check_interval", "2",
         "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false")  # fmt: skip
    ckpt = next(tmp_path.rglob("*.ckpt"))
    callbacks = tmp_path / "callbacks.yaml"
    callbacks.write_text(
        "trainer:\n  enable_progress_bar: false\n  logger:\n"
        "    class_path: lightning.pytorch.loggers.TensorBoardLogger\n"
        f"    init_args: {{save_dir: {tmp_path / 'runs'}, name: resshift}}\n"
        "  callbacks:\n"
        "    - class_path: lit_restore.evaluation.RestorationMetrics\n"
        "      init_args: {metrics: [psnr, ssim]}\n"
        "    - class_path: lit_restore.evaluation.RestoredImageWriter\n"
    )
    demo = ["--data.init_args.test_set", "lit_restore.data.ImageFolder",
            "--data.init_args.test_set.init_args.root", "data/demo", "--data.init_args.crop_size", "64"]  # fmt: skip
    run_entry("sample.py", "test", *cfg, "--config", str(callbacks), *demo, "--ckpt_path", str(ckpt),
         "--trainer.logger.init_args.version", "test")  # fmt: skip
    rows = _rows(tmp_path / "runs" / "resshift" / "test")
    assert sorted(rows) == DEMO and all(float(r["nfe_per_image"]) == 4 for r in rows.values())

    lq = tmp_path / "lq"
    lq.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a": (20, 28), "b": (13, 9)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(lq / f"{name}.png")
    lq_only = ["--data.init_args.predict_set", "lit_restore.data.LQFolder",
               "--data.init_args.predict_set.init_args.root", str(lq),
               "--data.init_args.crop_size", "null", "--data.init_args.eval_batch_size", "1"]  # fmt: skip
    run_entry("sample.py", "predict", *cfg, "--config", str(callbacks), *lq_only, "--ckpt_path", str(ckpt),
         "--trainer.logger.init_args.version", "predict")  # fmt: skip
    out = tmp_path / "runs" / "resshift" / "predict" / "restored"
    assert Image.open(out / "a.png").size == (28 * 4, 20 * 4)  # PIL: (width, height)
    assert Image.open(out / "b.png").size == (9 * 4, 13 * 4)


def test_resshift_trains_with_two_ddp_processes(tmp_path):
    """2-process CPU DDP training of the ResShift demo recipe: both ranks step, one checkpoint."""
    run_entry(
        "train.py", "fit", "--config", "configs/experiment/resshift_demo_pixel.yaml",
        "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
        "--trainer.val_check_interval", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path),
    )  # fmt: skip
    import torch

    ckpt = torch.load(next(tmp_path.rglob("*.ckpt")), weights_only=True, map_location="cpu")
    assert ckpt["global_step"] == 2
