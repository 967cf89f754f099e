"""The shipped training recipes save their work: ``last.ckpt`` on a timer, at the end of fit and
when stopped (Ctrl-C, SIGTERM), logs under ``runs/``, and ``--ckpt_path last`` finds it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
TRAINABLE = {"lit_restore.modules.resshift.ResShiftModule",
             "lit_restore.modules.diffusion_prior.DiffusionPriorModule",
             "lit_restore.modules.SinSRModule"}  # fmt: skip


def _training_configs() -> list[Path]:
    """Configs that define a training run: ``trainer.max_steps`` with a trainable model, or a
    training schedule of its own under ``configs/trainer/`` (composed with a model fragment)."""
    out = []
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        cfg = yaml.safe_load(path.read_text()) or {}
        model = (cfg.get("model") or {}).get("class_path")
        schedule = path.parent.name == "trainer" and model is None
        if (model in TRAINABLE or schedule) and "max_steps" in (cfg.get("trainer") or {}):
            out.append(path)
    return out


def test_every_training_config_keeps_a_last_checkpoint_under_runs():
    configs = _training_configs()
    names = {p.name for p in configs}
    assert {"resshift_demo_pixel.yaml", "prior_deadleaves_64.yaml",
            "prior_deadleaves_32_cpu.yaml", "resshift_journal.yaml"} <= names  # fmt: skip
    for path in configs:
        trainer = yaml.safe_load(path.read_text())["trainer"]
        root = trainer.get("default_root_dir", "")
        assert root == f"runs/{path.stem}", path  # logs and checkpoints/ in one run folder
        assert "logger" not in trainer, (
            path
        )  # Lightning's default: <default_root_dir>/lightning_logs
        callbacks = [c["class_path"] for c in trainer.get("callbacks", [])]
        assert "lit_restore.training.TrainingCheckpoint" in callbacks, path


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _fit(root: Path, *extra: str, timeout: int = 300) -> subprocess.CompletedProcess:
    args = [sys.executable, "train.py", "fit", "--config",
            "configs/experiment/resshift_demo_pixel.yaml", "--trainer.default_root_dir", str(root),
            "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false", *extra]  # fmt: skip
    return subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=_env()
    )


def _step(path: Path) -> int:
    return int(torch.load(path, weights_only=True, map_location="cpu")["global_step"])


def test_ckpt_path_last_resumes_and_a_fresh_run_does_not_overwrite(tmp_path):
    """The demo recipe writes ``checkpoints/last.ckpt`` at the end of fit (step 3); the same
    command again refuses in one line (it would replace a trained model); ``--ckpt_path last``
    continues from step 3 to 5."""
    proc = _fit(tmp_path, "--trainer.max_steps", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert _step(last) == 3 and list((tmp_path / "lightning_logs").iterdir())
    again = _fit(tmp_path, "--trainer.max_steps", "3")
    errors = [ln for ln in again.stderr.splitlines() if ln.startswith("error: ")]
    assert again.returncode == 2 and len(errors) == 1, again.stderr[-3000:]
    assert "--ckpt_path last" in errors[0] and str(last) in errors[0]
    assert _step(last) == 3
    resumed = _fit(tmp_path, "--trainer.max_steps", "5", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Restoring states from the checkpoint path at {last}" in resumed.stdout + resumed.stderr
    assert _step(last) == 5


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_saves_last_and_the_run_resumes_from_it(tmp_path):
    """SIGTERM during training (as ``kill`` or a cluster's preemption sends it): the run stops
    and ``last.ckpt`` holds its last step; ``--ckpt_path last`` continues from there."""
    args = [sys.executable, "train.py", "fit", "--config",
            "configs/experiment/resshift_demo_pixel.yaml", "--trainer.default_root_dir",
            str(tmp_path), "--trainer.limit_val_batches", "0",
            "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "100000"]  # fmt: skip
    proc = subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        hparams = tmp_path / "lightning_logs" / "version_0" / "hparams.yaml"
        deadline = time.monotonic() + 240
        while not hparams.exists():  # written once fit has started (signal handlers installed)
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.5)
        time.sleep(5)  # a few steps
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file(), output[-3000:]
    saved = _step(last)
    assert saved >= 1
    resumed = _fit(tmp_path, "--trainer.max_steps", str(saved + 2), "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _step(last) == saved + 2
