"""Train an unconditional ε-prediction ADM prior (a frozen prior for a new image domain).

DDPM objective (Ho et al. 2020, Eq. 14, "L_simple"): ``t ~ U{0..T-1}``, ``ε ~ N(0, I)``,
``x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε``, loss ``‖ε − ε_θ(x_t, t)‖²`` (mean over pixels). The images are the
``hq`` entry of any :class:`lit_restore.data.RestorationDataModule` batch (model space [-1, 1]).

EMA: use Lightning's :class:`~lightning.pytorch.callbacks.EMAWeightAveraging` in the trainer's
callbacks (``configs/experiment/prior_deadleaves_64.yaml``). It writes the averaged weights into
the checkpoint's ``state_dict`` (the live weights go to ``current_model_state``), so
``load_prior("last.ckpt")`` / :meth:`ADMPrior.from_checkpoint` load the EMA network, with the
ADM flags read from the checkpoint's ``hyper_parameters``.

Every draw of a training step (``t``, ε, dropout) comes from a generator of ``(seed, global
step, rank)`` (:func:`~lit_restore.utils.seeding.training_step_rng`), so a fit resumed from a
checkpoint repeats the uninterrupted one exactly.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from lit_restore import diffusion
from lit_restore.nn import ADMUNet
from lit_restore.utils.seeding import training_step_rng

TINY_ADM = dict(
    image_size=64, num_channels=64, num_res_blocks=2, channel_mult="", attention_resolutions="16,8",
    num_heads=4, num_head_channels=32, learn_sigma=False, use_scale_shift_norm=True, resblock_updown=False,
    dropout=0.0,
)  # fmt: skip


class DiffusionPriorModule(L.LightningModule):
    """Unconditional ADM ε-prior trainer.

    Args:
        network: ADM flags (guided-diffusion names; see :class:`~lit_restore.nn.ADMUNet`),
            merged over a small 64-px default. ``learn_sigma`` is refused: only ε is trained here
            (L_simple), so variance channels would stay untrained.
        channels: image channels.
        beta_schedule, num_timesteps: the VP schedule (stored in the checkpoint, used by the prior).
        lr, weight_decay, betas: AdamW.
        warmup_steps: linear learning-rate warm-up.
        seed: base seed of the training steps' draws.
    """

    def __init__(
        self,
        network: dict[str, Any] | None = None,
        channels: int = 3,
        beta_schedule: str = "linear",
        num_timesteps: int = 1000,
        lr: float = 2e-4,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_steps: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        flags = {**TINY_ADM, **(network or {})}
        if flags.get("learn_sigma"):
            raise ValueError(
                "DiffusionPriorModule trains ε only (L_simple); set network.learn_sigma: false"
            )
        # The merged flags are stored (load_prior rebuilds the network from them); _class_path
        # lets LightningCLI re-read them on `fit --ckpt_path` (lightning/pytorch/cli.py).
        self.save_hyperparameters({"_class_path": f"{type(self).__module__}.{type(self).__qualname__}",
                                   "network": flags, "channels": channels, "beta_schedule": beta_schedule,
                                   "num_timesteps": num_timesteps, "lr": lr, "weight_decay": weight_decay,
                                   "betas": list(betas), "warmup_steps": warmup_steps,
                                   "seed": seed})  # fmt: skip
        self.seed = seed
        try:
            self.net = ADMUNet(**flags, in_channels=channels, out_channels=channels)
        except TypeError as err:
            raise ValueError(f"bad ADM flag in model.init_args.network: {err}") from err
        ac = diffusion.alphas_cumprod(diffusion.make_betas(beta_schedule, num_timesteps))
        self.register_buffer("alphas_cumprod", ac, persistent=False)
        self.image_size = flags["image_size"]

    def _images(self, batch: Any) -> Tensor:
        x = batch["hq"] if isinstance(batch, dict) else batch
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            raise ValueError(
                f"DiffusionPriorModule was built for {self.image_size}px images but got "
                f"{tuple(x.shape[-2:])}; set the datamodule's crop_size to {self.image_size}"
            )
        return x

    def diffusion_loss(self, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        t = torch.randint(
            0, self.alphas_cumprod.numel(), (x0.shape[0],), device=x0.device, generator=generator
        )
        noise = torch.randn(x0.shape, device=x0.device, generator=generator, dtype=x0.dtype)
        x_t = diffusion.q_sample(x0, noise, diffusion.alpha_bar(self.alphas_cumprod, t, x0))
        return F.mse_loss(self.net(x_t, t).float(), noise.float())

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x0 = self._images(batch)
        with training_step_rng(self, self.seed, batch_idx):
            loss = self.diffusion_loss(x0)
        self.log("train/loss", loss, prog_bar=True, batch_size=x0.shape[0])
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        # fixed noise per batch index: val/loss is comparable between epochs
        x0 = self._images(batch)
        gen = torch.Generator(device=x0.device).manual_seed(10_000 + batch_idx)
        loss = self.diffusion_loss(x0, gen)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=x0.shape[0])
        return loss

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.AdamW(
            self.net.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, betas=tuple(hp.betas)
        )
        if hp.warmup_steps <= 0:
            return opt
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / hp.warmup_steps)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
