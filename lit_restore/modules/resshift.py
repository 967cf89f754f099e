"""ResShiftModule: train and run the residual-shifting restoration model in Lightning.

Like every model it consumes the datamodule's batches: ``hq`` and the degraded ``lq`` (and
``mask`` for inpainting), made by the data config's degradation (:mod:`lit_restore.degradations`:
``BicubicDegradation``, ``RealESRGANDegradation``, an ``Inpainting`` operator, ...), drawn per
``(seed, index, epoch)``. The LQ is turned into the network's conditioning by the chain alone
(:meth:`~lit_restore.resshift.chain.ResShiftChain.condition`), in training and in sampling.

Training (zsyOAOA/ResShift ``trainer.py``: ``TrainerDifIR.training_step`` /
``TrainerDifIRLPIPS.backward_step``, journal recipe):

    z0 = E(hq),  z_y = E(bicubic↑(lq)),  t ~ U{0..T-1},  x_t = z0 + η_t (z_y − z0) + κ√η_t ε
    ẑ0 = f_θ(x_t / √(κ²η_t+1), t, lq)
    loss = mean_flat((ẑ0 − z0)²) + w_lpips · LPIPS_vgg(clamp(D(ẑ0)), hq)      (per sample, mean)

LPIPS gradients flow through the frozen decoder (straight-through quantiser); a NaN LPIPS falls
back to the MSE term and is counted (``train/lpips_nan_count``). AdamW (weight decay 0), lr 5e-5
with the official warm-up then cosine to 2e-5 over ``trainer.max_steps``
(:func:`official_lr_factor`). EMA, bf16 and gradient accumulation come from the Trainer/callbacks
(``EMAWeightAveraging`` in the configs, so validation runs on the EMA weights). The timesteps
and noise of a training step come from a generator of ``(seed, global step, rank)``
(:func:`~lit_restore.utils.seeding.training_step_rng`), so a fit resumed from a checkpoint
repeats the uninterrupted one exactly.

Validation: the official trainer (``trainer.py::TrainerDifIR.validation``) reports PSNR (on the Y
channel with ``val_y_channel``) and LPIPS with ``lpips.LPIPS(net='vgg')`` of the EMA model's
samples. The same numbers come from the metric callback with
``metrics: [psnr, lpips_vgg]`` and ``y_channel: true`` (the metric suite's default LPIPS is
AlexNet, the LPIPS paper's recommendation for evaluation).

``restore`` runs the T-step chain on ``batch["lq"]``, then the optional colour fix and, for
inpainting, pastes the known pixels back (:mod:`lit_restore.postprocess`). ``tiling:
official`` reproduces the official tiled inference (:mod:`lit_restore.resshift.chain`).
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from lit_restore.checkpoints import read_state_dict
from lit_restore.metrics.perceptual import backbone_state, copy_backbone
from lit_restore.modules.base import RestorationModule
from lit_restore.nn import PixelSpace, SwinUNet, VQModel, freeze
from lit_restore.operators.base import Operator
from lit_restore.operators.noise import NoiseModel
from lit_restore.postprocess import check_color_fix, color_fix, paste_known
from lit_restore.resshift.chain import ResShiftChain
from lit_restore.resshift.schedule import ResShiftSchedule
from lit_restore.runtime import autocast, check_precision, prepare_network, resolve_precision
from lit_restore.utils.seeding import STREAM_SAMPLER, generators_for, training_step_rng
from lit_restore.weights import resolve


def official_lr_factor(step: int, warmup: int, total: int, floor: float) -> float:
    """Learning rate of optimizer step ``step`` (0-based) over the base rate, as ResShift's
    trainer sets it (``trainer.py``: ``TrainerDifIR.adjust_lr`` runs *after* each iteration,
    ``CosineAnnealingLR(T_max = iterations − warmup, eta_min)`` after the warm-up):

    * step 0: 1 — the optimizer is built at the base rate and the first ``adjust_lr`` comes
      after the first iteration;
    * ``1 ≤ step ≤ warmup``: ``step / warmup``;
    * ``step ≥ warmup``: ``floor + (1 − floor)·½(1 + cos(π (step − warmup) / (total − warmup)))``
      (the closed form of ``CosineAnnealingLR``'s recursion; ``floor = lr_min / lr``).
    """
    if step == 0:
        return 1.0
    if step <= warmup:
        return step / warmup
    if total <= warmup:
        return 1.0
    prog = min(1.0, (step - warmup) / (total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * prog))


class ResShiftModule(RestorationModule):
    """ResShift (x0-prediction residual shifting) as a :class:`RestorationModule`.

    Args:
        network: the x0 network (default: the official RealSR×4 :class:`SwinUNet`).
        steps, kappa, min_noise_level, etas_end, power: the schedule (journal: 4, 2, 0.2, 0.99, 0.3).
        sf: LQ→HQ scale factor (4 SR, 1 inpainting).
        autoencoder: path to ``autoencoder_vq_f4.pth`` (frozen VQ-f4 latent space) or ``None``
            for pixel space.
        vq_config: :class:`VQModel` kwargs when the autoencoder is not the f4 default.
        inpainting: train/run with masks (network needs ``cond_mask=True``): ``batch["mask"]``
            (1 = known), from the data's ``Inpainting`` operator (e.g. ``mask_type: mixed``).
        lpips_weight: LPIPS-VGG weight (1 SR, 10 inpainting; 0 disables).
        lpips_pretrained_backbone: load torchvision's ImageNet VGG16 for LPIPS (resolved offline
            by :mod:`lit_restore.weights`, ``vgg16``; ``False`` = random backbone, tests only).
        lr, lr_min, warmup_steps, weight_decay: AdamW + warm-up + cosine schedule.
        chop_size, chop_overlap, chop_bs, padding_offset: chain options (LQ pixels);
            ``chop_size="auto"`` (default) tiles only where tiles cost less per pixel than the
            VQ autoencoder's global attention over the whole image (see
            :func:`lit_restore.resshift.chain.auto_chop_size`); ``null`` never tiles.
        tiling: ``"cosine"`` (default), ``"uniform"`` or ``"official"`` (ResShift's own tiled
            inference, for reproducing the released models' numbers; :mod:`lit_restore.resshift.chain`).
        sampling: the chain's mode: ``"posterior"`` (ResShift's stochastic chain, default),
            ``"ode"`` (SinSR's deterministic sampling) or ``"one_step"``
            (:mod:`lit_restore.resshift.chain`).
        color_fix: ``None``, ``"wavelet"`` or ``"adain"`` (:mod:`lit_restore.postprocess`),
            with the bicubic-upsampled LQ as the colour reference.
        precision: ``fp32``, ``bf16`` (network and first stage under bf16 autocast, for
            inference and training; the loss is summed in float32) or ``auto`` (inference in
            bf16 on CUDA when the measured bf16 output difference is within the bound,
            :mod:`lit_restore.runtime`; training then follows the Trainer's ``precision``).
        compile: ``torch.compile`` the network and the first stage's encoder/decoder
            (``true``/``default``, ``reduce-overhead`` = + CUDA graphs, ``max-autotune``).
        channels_last: the network and first stage in the channels-last memory format.
        seed: base seed of the per-image chain noise.
        weights: a released network checkpoint (e.g. ``resshift_realsrx4_s4_v3.pth``) loaded
            strictly into ``network`` (``weights_only``; ``module.``/``_orig_mod.`` stripped).
    """

    def __init__(
        self,
        network: nn.Module | None = None,
        steps: int = 4,
        kappa: float = 2.0,
        min_noise_level: float = 0.2,
        etas_end: float = 0.99,
        power: float = 0.3,
        sf: int = 4,
        autoencoder: str | None = None,
        vq_config: dict[str, Any] | None = None,
        inpainting: bool = False,
        lpips_weight: float = 1.0,
        lpips_pretrained_backbone: bool = True,
        lr: float = 5e-5,
        lr_min: float = 2e-5,
        warmup_steps: int = 5000,
        weight_decay: float = 0.0,
        chop_size: int | str | None = "auto",
        chop_overlap: int = 16,
        chop_bs: int = 1,
        padding_offset: int | None = None,
        tiling: str = "cosine",
        sampling: str = "posterior",
        color_fix: str | None = None,
        operator: Operator | None = None,
        noise: NoiseModel | None = None,
        seed: int = 0,
        weights: str | None = None,
        precision: str = "auto",
        compile: bool | str = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__(operator=operator, noise=noise, seed=seed)
        check_precision(precision)
        self.color_fix = check_color_fix(color_fix)
        # not logged at the start: HPARAMS are logged once, with the metrics (utils.hparams)
        self.save_hyperparameters(ignore=["network", "operator", "noise"], logger=False)
        self.network = network if network is not None else SwinUNet()
        if weights is not None:  # released network weights, e.g. resshift_realsrx4_s4_v3.pth
            sd = read_state_dict(resolve(weights, option="weights"))
            self.network.load_state_dict(sd, strict=True)
        self.schedule = ResShiftSchedule(steps, kappa, min_noise_level, etas_end, power)
        if autoencoder is None:
            self.first_stage: nn.Module = PixelSpace()
        else:
            self.first_stage = VQModel.from_pretrained(autoencoder, **(vq_config or {}))
        self.chain = ResShiftChain(
            self.schedule,
            sf,
            padding_offset,
            chop_size,
            chop_overlap,
            chop_bs,
            tiling=tiling,
            mode=sampling,
        )
        self.sf, self.inpainting = sf, inpainting
        self.lpips_weight = lpips_weight
        self._lpips: list[nn.Module] = []  # kept out of state_dict/EMA (frozen, rebuilt on load)
        self.lpips_nan_count = 0
        self._runtime_device: torch.device | None = None

    # ------------------------------------------------------------- runtime
    def _networks(self) -> list[nn.Module]:
        parts = [getattr(self.first_stage, n, None) for n in ("encoder", "decoder")]
        return [self.network, *(p for p in parts if isinstance(p, nn.Module))]

    def _precision(self, device: torch.device, training: bool) -> AbstractContextManager:
        """The precision context of this call (``precision``; ``auto`` leaves training to the
        Trainer's own ``precision`` setting, e.g. ``bf16-mixed``)."""
        hp = self.hparams
        if self._runtime_device != device:
            for net in self._networks():
                prepare_network(net, device, compile=hp.compile, channels_last=hp.channels_last)
            self._runtime_device = device
        if training and hp.precision == "auto":
            return nullcontext()
        return autocast(resolve_precision(hp.precision, device, "resshift"), device)

    # ------------------------------------------------------------- loading
    @classmethod
    def from_official(
        cls, path: str, autoencoder: str | None = None, network_kwargs: dict | None = None, **kwargs
    ) -> ResShiftModule:
        """Build the journal ×4 model and load a released checkpoint (``resshift_realsrx4_s4_v3.pth``).

        Loading is strict, ``weights_only=True``, with ``module.``/``_orig_mod.`` stripped.
        """
        return cls(
            network=SwinUNet(**(network_kwargs or {})),
            weights=path,
            autoencoder=autoencoder,
            **kwargs,
        )

    # ------------------------------------------------------------ helpers
    def _lpips_net(self) -> nn.Module:
        if not self._lpips:
            import lpips

            # the VGG16 backbone comes from lit_restore.weights (never an implicit download)
            found = backbone_state("vgg16") if self.hparams.lpips_pretrained_backbone else None
            net = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
            if found is not None:
                copy_backbone(net.net, "vgg16", found[1], found[0])
            self._lpips.append(freeze(net))
        return self._lpips[0].to(self.device)

    def _inputs(self, batch: dict) -> tuple[Tensor, Tensor | None]:
        """``batch["lq"]`` (and ``batch["mask"]`` when inpainting), checked against ``sf``."""
        if "lq" not in batch:
            raise KeyError("ResShiftModule needs batch['lq'] (the datamodule's degraded input)")
        lq = batch["lq"]
        hq = batch.get("hq")
        want = (lq.shape[-2] * self.sf, lq.shape[-1] * self.sf)
        if hq is not None and tuple(hq.shape[-2:]) != want:
            raise ValueError(
                f"ResShiftModule(sf={self.sf}) got LQ images of {tuple(lq.shape[-2:])} for "
                f"references of {tuple(hq.shape[-2:])}; the data degradation must shrink by sf "
                "(data.init_args.degradation / operator, e.g. BicubicDegradation(sf))"
            )
        mask = batch.get("mask") if self.inpainting else None
        if self.inpainting and mask is None:
            raise KeyError(
                "an inpainting ResShiftModule needs batch['mask'] (1 = known pixel): configure an "
                "Inpainting operator in the data (e.g. mask_type: mixed)"
            )
        return lq, mask

    # ------------------------------------------------------------ training
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        with training_step_rng(self, self.seed, batch_idx):
            return self._training_loss(batch)

    def _training_loss(self, batch: dict) -> Tensor:
        hq = batch["hq"]
        lq, mask = self._inputs(batch)
        sch = self.schedule
        with torch.no_grad():
            z0 = self.first_stage.encode(hq)
            cond = self.chain.condition(self.network, self.first_stage, lq, mask)
        b = hq.shape[0]
        t = torch.randint(0, sch.steps, (b,), device=hq.device)
        x_t = sch.q_sample(z0, cond.z_y, t, torch.randn_like(z0))
        with self._precision(hq.device, training=True):
            pred = self.network(sch.scale_model_input(x_t, t), t, lq=cond.lq, mask=cond.mask)
        mse = (pred.float() - z0.float()).pow(2).flatten(1).mean(1)
        loss = mse
        if self.lpips_weight > 0:
            with self._precision(hq.device, training=True):
                dec = self.first_stage.decode(pred).clamp(-1, 1)
                lp = self._lpips_net()(dec.float(), hq.float()).float().flatten()
            if torch.isfinite(lp).all():
                loss = mse + self.lpips_weight * lp
                self.log("train/lpips", lp.mean(), on_step=True, prog_bar=False)
            else:
                self.lpips_nan_count += 1
        loss = loss.mean()
        self.log("train/loss", loss, on_step=True, prog_bar=True)
        self.log("train/mse", mse.mean(), on_step=True)
        self.log("train/lpips_nan_count", float(self.lpips_nan_count), on_step=True)
        return loss

    def configure_optimizers(self):
        params = [p for p in self.network.parameters() if p.requires_grad]
        hp = self.hparams
        opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
        total = getattr(self.trainer, "max_steps", -1) if self._trainer is not None else -1
        if total is None or total < 0:
            total = int(getattr(self.trainer, "estimated_stepping_batches", 0) or 0)
        warm, floor = max(0, hp.warmup_steps), hp.lr_min / hp.lr

        def factor(step: int) -> float:
            return official_lr_factor(step, warm, total, floor)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ----------------------------------------------------------- inference
    def restore(self, batch: dict) -> Tensor:
        lq, mask = self._inputs(batch)
        gens = generators_for(self.seed, batch["index"], STREAM_SAMPLER, device="cpu")
        with self._precision(lq.device, training=False):
            out = self.chain.sample(self.network, self.first_stage, lq, gens, mask, self.count_nfe)
        out = out.float()
        if self.color_fix is not None:  # colours of the LQ the network saw, upsampled
            out = color_fix(
                out, self.chain.upsample(self.chain.masked_lq(lq, mask)), self.color_fix
            )
        if mask is not None:  # ResShift's mask_back: the known pixels are the input's
            out = paste_known(out, lq, mask)
        return out

    def run_hparams(self) -> dict[str, Any]:
        return {
            "method": "resshift",
            "steps": self.schedule.steps,
            "kappa": self.schedule.kappa,
            "latent": "pixel" if isinstance(self.first_stage, PixelSpace) else "vq",
            "lpips_weight": self.lpips_weight,
            "precision": self.hparams.precision,
        }
