"""Exact training resume: a fit continued from its step-20 checkpoint to step 60 gives the losses
and weights of the uninterrupted fit, bit for bit (ResShift and the diffusion-prior trainer).

What makes it exact (each would break it alone): the training loader's position is in the
checkpoint and the epoch continues mid-way (:class:`~lit_restore.data.sharding.ResumableDataLoader`);
every draw of a training step comes from ``(seed, global step, rank)``
(:func:`~lit_restore.utils.seeding.training_step_rng`) — timesteps, noise and dropout; the data
draws come from ``(seed, index, epoch)``; the training-pair pool is in the checkpoint. Lightning
restores the weights, optimizer, scheduler, EMA and loop counters.

The runs below cross epochs (12 batches per epoch: the checkpoint is in the middle of the
second) and use the most stateful options: Real-ESRGAN with the official per-batch draws, the
training-pair pool, EMA, and dropout in the prior network.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging, ModelCheckpoint

from lit_restore.data import DeadLeaves, RestorationDataModule
from lit_restore.degradations import RealESRGANDegradation
from lit_restore.modules.diffusion_prior import DiffusionPriorModule
from lit_restore.modules.resshift import ResShiftModule
from lit_restore.nn import SwinUNet
from lit_restore.training import TrainingCheckpoint


class LossRecorder(Callback):
    """Every training step's loss (the exact float) by global step, and the step a logger writes
    it at (``_batches_that_stepped``, Lightning's logging step)."""

    def __init__(self) -> None:
        self.losses: dict[int, float] = {}
        self.log_steps: dict[int, int] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses[trainer.global_step] = float(outputs["loss"])
        self.log_steps[trainer.global_step] = trainer.fit_loop.epoch_loop._batches_that_stepped


class Interrupted(Exception):
    """Stands for SIGTERM / Ctrl-C inside a training step (the CLI raises on the signal)."""


class InterruptAt(Callback):
    """Raise :class:`Interrupted` in one hook of the batch that follows global step ``step``."""

    def __init__(self, step: int, hook: str) -> None:
        self.step, self.hook = step, hook

    def _at(self, trainer, hook: str) -> None:
        if hook == self.hook and trainer.global_step == self.step:
            raise Interrupted(hook)

    def on_train_batch_start(self, trainer, *args) -> None:
        self._at(trainer, "batch_start")

    def on_before_backward(self, trainer, *args) -> None:
        self._at(trainer, "backward")

    def on_before_optimizer_step(self, trainer, *args) -> None:
        self._at(trainer, "optimizer_step")


def _resshift() -> tuple[L.LightningModule, RestorationDataModule]:
    torch.manual_seed(0)
    net = SwinUNet(image_size=16, model_channels=32, channel_mult=[1, 1], num_res_blocks=1,
                   attention_resolutions=[8], num_head_channels=16, swin_depth=2,
                   swin_embed_dim=32, window_size=4, mlp_ratio=2.0, lq_size=16,
                   norm_groups=8)  # fmt: skip
    module = ResShiftModule(network=net, steps=4, min_noise_level=0.5, sf=4, lpips_weight=0.0,
                            lr=1e-3, lr_min=2e-4, warmup_steps=5, seed=3)  # fmt: skip
    dm = RestorationDataModule(
        train_set=DeadLeaves(length=24, image_size=16, seed=0),
        degradation=RealESRGANDegradation(4, draws="per_batch"),
        crop_size=16, batch_size=2, pair_pool_size=6, seed=5,
    )  # fmt: skip
    return module, dm


def _prior() -> tuple[L.LightningModule, RestorationDataModule]:
    torch.manual_seed(0)
    flags = dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,1",
                 attention_resolutions="8", num_heads=2, num_head_channels=-1, dropout=0.1)  # fmt: skip
    module = DiffusionPriorModule(network=flags, num_timesteps=100, lr=1e-3, warmup_steps=5,
                                  seed=3)  # fmt: skip
    dm = RestorationDataModule(
        train_set=DeadLeaves(length=24, image_size=16, seed=0), crop_size=16, batch_size=2, seed=5
    )
    return module, dm


def _fit(build, root: Path, max_steps: int = -1, ckpt_path=None, last: bool = False,
         interrupt: Callback | None = None, recorder: LossRecorder | None = None, **kw):  # fmt: skip
    module, dm = build()
    recorder = LossRecorder() if recorder is None else recorder
    extra = [TrainingCheckpoint(dirpath=str(root / "last"))] if last else []
    extra += [interrupt] if interrupt is not None else []
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=max_steps, logger=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0, use_distributed_sampler=False, default_root_dir=root, **kw,
        callbacks=[
            recorder,
            EMAWeightAveraging(decay=0.9),
            ModelCheckpoint(dirpath=root / "ckpt", filename="{step}", every_n_train_steps=20,
                            save_top_k=-1),
            *extra,
        ],
    )  # fmt: skip
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return recorder.losses, {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("build", [_resshift, _prior], ids=["resshift", "prior"])
def test_resume_from_step_20_repeats_the_uninterrupted_fit(tmp_path, build):
    losses, weights = _fit(build, tmp_path / "a", 60)
    assert sorted(losses) == list(range(1, 61))
    assert len(set(losses.values())) > 50  # the losses vary from step to step
    ckpt = tmp_path / "a" / "ckpt" / "step=20.ckpt"
    assert torch.load(ckpt, weights_only=False)["global_step"] == 20
    resumed, resumed_weights = _fit(build, tmp_path / "b", 60, ckpt_path=str(ckpt))
    assert sorted(resumed) == list(range(21, 61))
    unequal = [s for s in resumed if resumed[s] != losses[s]]
    assert not unequal, f"{len(unequal)} of 40 losses differ, first at step {unequal[0]}"
    assert weights.keys() == resumed_weights.keys()
    for key, value in weights.items():
        assert torch.equal(value, resumed_weights[key]), key


@pytest.mark.parametrize("stop", ["max_steps", "max_epochs"])
def test_a_finished_fit_continues_exactly(tmp_path, stop):
    """A fit stopped by ``max_steps`` 20 (mid-epoch) or by ``max_epochs`` 2 (24 steps, at an
    epoch's end), continued with ``--ckpt_path last`` to step 60: the losses and weights of one
    fit to 60. ``TrainingCheckpoint`` saves ``last`` at the final step while the fit still runs
    (resumed from an ``on_train_end`` checkpoint, the fit would start a new epoch with other
    data — 0 of 40 losses equal — and from an ``on_train_epoch_end`` one it mixes two epochs'
    orders); the loader's position counts the batches of the last epoch *started*. The prior trainer's learning rate does not
    depend on ``max_steps`` (ResShift's cosine does: a ResShift fit to 20 is another schedule
    than one to 60)."""
    stop_at = 20 if stop == "max_steps" else 24
    losses, weights = _fit(_prior, tmp_path / "a", 60)
    kw = {"max_epochs": 2, "max_steps": -1} if stop == "max_epochs" else {"max_steps": stop_at}
    first, _ = _fit(_prior, tmp_path / "b", last=True, **kw)
    last = tmp_path / "b" / "last" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == stop_at
    assert all(first[s] == losses[s] for s in range(1, stop_at + 1))
    resumed, resumed_weights = _fit(_prior, tmp_path / "c", 60, ckpt_path=str(last))
    assert sorted(resumed) == list(range(stop_at + 1, 61))
    assert all(resumed[s] == losses[s] for s in resumed)
    for key, value in weights.items():
        assert torch.equal(value, resumed_weights[key]), key


@pytest.mark.parametrize("hook", ["batch_start", "backward", "optimizer_step"])
def test_a_run_stopped_inside_a_step_resumes_exactly_and_logs_at_the_same_steps(tmp_path, hook):
    """Stopped inside the step after global step 20 (``TrainingCheckpoint.on_exception`` saves
    ``last``), resumed to 40: the same losses and weights as one fit to 40, each loss logged at
    the same step. Lightning restores its logging counter one ahead from a mid-batch state
    (before the fix every resumed value was logged one step late: measured on the demo prior's
    SIGTERM-ed training run); ``on_exception`` saves it one lower."""
    whole = LossRecorder()
    _, weights = _fit(_prior, tmp_path / "a", 40, recorder=whole)
    assert [whole.log_steps[s] for s in sorted(whole.log_steps)] == list(range(40))
    stopped = tmp_path / "b"
    with pytest.raises(Interrupted):
        _fit(_prior, stopped, last=True, interrupt=InterruptAt(20, hook))
    last = stopped / "last" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 20
    resumed = LossRecorder()
    _, resumed_weights = _fit(_prior, tmp_path / "c", 40, ckpt_path=str(last), recorder=resumed)
    assert sorted(resumed.losses) == list(range(21, 41))
    assert all(resumed.losses[s] == whole.losses[s] for s in resumed.losses)
    late = {s: resumed.log_steps[s] for s in resumed.log_steps if resumed.log_steps[s] != s - 1}
    assert not late, (
        f"logged at other steps than the uninterrupted fit (global step: logged): {late}"
    )
    for key, value in weights.items():
        assert torch.equal(value, resumed_weights[key]), key
