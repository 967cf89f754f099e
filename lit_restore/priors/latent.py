"""Latent diffusion priors: a VP ε-prior over the latents of a frozen autoencoder.

A latent diffusion model (Rombach et al., CVPR 2022) diffuses ``z = s · E(x)`` (``s`` the
``scale_factor``) and maps back with ``x = D(z / s)`` (CompVis latent-diffusion
``ldm/models/diffusion/ddpm.py::LatentDiffusion.get_first_stage_encoding`` /
``decode_first_stage``). :class:`LatentDiffusionPrior` is that composition: the VP protocol of
:class:`~lit_restore.priors.base.DiffusionPrior` on latents (its ``eps`` is the latent network's),
plus :meth:`~LatentDiffusionPrior.encode` / :meth:`~LatentDiffusionPrior.decode` and the latent
shape for an image shape. The latent samplers (:mod:`lit_restore.samplers.latent`) run the
shared loop on ``z`` and reach the image only through these two maps.

:class:`LDMPrior` builds the published CompVis unconditional LDMs (FFHQ, CelebA-HQ,
LSUN-Bedrooms; ``configs/latent-diffusion/*-ldm-vq-4.yaml``): the VQ-f4 first stage of
:class:`~lit_restore.nn.vq_autoencoder.VQModel` (the autoencoder ResShift uses) and the LDM UNet.
The LDM UNet (``ldm/modules/diffusionmodules/openaimodel.py::UNetModel`` without the spatial
transformer) is guided-diffusion's UNet with other flags — same module tree, ResBlocks,
legacy-order attention and time embedding — so it is :class:`~lit_restore.nn.ADMUNet` with
``use_scale_shift_norm=False``, ``resblock_updown=False``, ``learn_sigma=False``; LDM configs
give ``attention_resolutions`` as *downsampling factors* (8, 4, 2 on a 64² latent = resolutions
8, 16, 32), converted here. The schedule is LDM's "linear" (:func:`~lit_restore.diffusion.
make_betas` ``scaled_linear``, 0.0015→0.0195).

A released ``model.ckpt`` is a Lightning checkpoint of ``LatentDiffusion``: its ``state_dict``
holds ``model.diffusion_model.*`` (the UNet), ``first_stage_model.*`` (the autoencoder),
``model_ema.*`` (LitEma: the UNet's parameter names with the dots removed), the schedule buffers
(``betas``, ``alphas_cumprod`` …) and ``scale_factor``. :meth:`LDMPrior.load_ldm_state_dict`
loads both networks strictly, takes ``scale_factor`` from the file, checks the file's ``betas``
against the configured schedule, and refuses keys it does not know.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lit_restore import diffusion
from lit_restore.checkpoints import (
    CheckpointError,
    extract_state_dict,
    load_state_dict_strict,
    read_checkpoint,
)
from lit_restore.nn.vq_autoencoder import VQModel
from lit_restore.priors.adm_prior import ADMPrior
from lit_restore.priors.base import DiffusionPrior
from lit_restore.weights import resolve


class LatentDiffusionPrior(DiffusionPrior):
    """A latent ε-prior and its first stage: ``eps`` on latents, ``encode``/``decode`` images.

    Args:
        latent: the ε-prior on latents (any :class:`DiffusionPrior`: an LDM UNet, a diffusers
            UNet, an analytic Gaussian in the tests); its schedule is the run's.
        first_stage: a module with ``encode(x) -> z`` and ``decode(z) -> x`` (images in
            [-1, 1]); ``decode`` must be differentiable (DPS/PSLD/ReSample backpropagate
            through it).
        scale_factor: ``s`` of ``z = s · E(x)`` (LDM ``scale_factor``; 1 for the VQ LDMs,
            0.18215 for Stable Diffusion v1).
        downscale: spatial factor ``f`` of the first stage (image H = f · latent H).
    """

    def __init__(
        self,
        latent: DiffusionPrior,
        first_stage: nn.Module,
        scale_factor: float = 1.0,
        downscale: int = 4,
    ) -> None:
        super().__init__(
            image_size=latent.image_size, channels=latent.channels, betas=latent.betas.double()
        )
        # the latent prior's exact tables (its float32 β would round ᾱ)
        self.alphas_cumprod.copy_(latent.alphas_cumprod)
        self.alphas_cumprod64 = latent.alphas_cumprod64
        self.latent = latent
        self.first_stage = first_stage
        self.scale_factor = float(scale_factor)
        self.downscale = int(downscale)

    @property
    def learned_variance(self) -> bool:  # type: ignore[override]
        return self.latent.learned_variance

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.latent.eps(x_t, t)

    def eps_and_variance(self, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.latent.eps_and_variance(x_t, t)

    def set_torso_dtype(self, dtype: torch.dtype) -> bool:
        return self.latent.set_torso_dtype(dtype)

    def encode(self, x: Tensor) -> Tensor:
        """Image in [-1, 1] → latent ``s · E(x)``."""
        return self.scale_factor * self.first_stage.encode(x)

    def decode(self, z: Tensor) -> Tensor:
        """Latent → image ``D(z / s)`` (differentiable)."""
        return self.first_stage.decode(z / self.scale_factor)

    def latent_shape(self, image_shape: Sequence[int]) -> tuple[int, ...]:
        """``(B, C_z, H/f, W/f)`` for images ``(B, C, H, W)``; a clear error when f ∤ H, W."""
        *lead, h, w = (int(v) for v in image_shape)
        f = self.downscale
        if h % f or w % f:
            raise ValueError(
                f"{type(self).__name__}: image size {h}×{w} is not a multiple of the first "
                f"stage's factor {f}; crop or resize the images to a multiple of {f}"
            )
        return (*lead[:-1], self.channels, h // f, w // f)


#: the UNet of ``configs/latent-diffusion/{ffhq,celebahq,lsun_bedrooms}-ldm-vq-4.yaml``
#: (``unet_config.params``, LDM's names; ``attention_resolutions`` are downsampling factors)
LDM_VQ4_UNET: dict[str, Any] = dict(
    image_size=64, in_channels=3, out_channels=3, model_channels=224,
    attention_resolutions=(8, 4, 2), num_res_blocks=2, channel_mult=(1, 2, 3, 4),
    num_head_channels=32,
)  # fmt: skip
#: their ``first_stage_config.params`` (VQ-f4, 8192 codes, d = 3)
LDM_VQ4_FIRST_STAGE: dict[str, Any] = dict(
    embed_dim=3, n_embed=8192, ch=128, ch_mult=(1, 2, 4), num_res_blocks=2, z_channels=3
)
#: the ``LatentDiffusion`` buffers a released checkpoint carries beside the networks
_SCHEDULE_BUFFERS = frozenset(
    {
        "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod",
        "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
        "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
        "lvlb_weights", "logvar", "scale_factor",
    }
)  # fmt: skip


class LDMPrior(LatentDiffusionPrior):
    """A CompVis unconditional LDM (VQ first stage + LDM UNet) as a frozen latent prior.

    Flags keep the LDM config names (``unet_config.params`` and ``first_stage_config.params``);
    the defaults are the published ``*-ldm-vq-4`` models (FFHQ / CelebA-HQ / LSUN-Bedrooms 256).

    Args:
        unet: LDM ``UNetModel`` params (``image_size`` is the latent size; ``attention_resolutions``
            downsampling factors; ``num_heads``/``num_head_channels`` as LDM).
        first_stage: :class:`VQModel` params.
        linear_start, linear_end, timesteps: LDM's schedule (``scaled_linear``).
        scale_factor: used when the checkpoint carries none.
        checkpoint: a ``model.ckpt`` path or registry name (``ldm-ffhq256`` …); ``None`` leaves
            random weights (tests, benches).
        use_ema: load the ``model_ema.*`` UNet weights instead of ``model.diffusion_model.*``
            (the released sampling scripts use the latter).
        frozen: eval mode, no parameter gradients.
    """

    def __init__(
        self,
        unet: Mapping[str, Any] | None = None,
        first_stage: Mapping[str, Any] | None = None,
        linear_start: float = 0.0015,
        linear_end: float = 0.0195,
        timesteps: int = 1000,
        scale_factor: float = 1.0,
        checkpoint: str | None = None,
        use_ema: bool = False,
        frozen: bool = True,
    ) -> None:
        u = {**LDM_VQ4_UNET, **(unet or {})}
        size = int(u["image_size"])
        attn = [size // int(ds) for ds in u.get("attention_resolutions", ())]
        betas = diffusion.make_betas(
            "scaled_linear", timesteps, beta_start=linear_start, beta_end=linear_end
        )
        network = ADMPrior(
            image_size=size,
            num_channels=int(u["model_channels"]),
            num_res_blocks=int(u["num_res_blocks"]),
            channel_mult=tuple(u["channel_mult"]),
            attention_resolutions=attn,
            num_heads=int(u.get("num_heads", -1)),
            num_head_channels=int(u.get("num_head_channels", -1)),
            num_heads_upsample=int(u.get("num_heads_upsample", -1)),
            learn_sigma=False,
            use_scale_shift_norm=bool(u.get("use_scale_shift_norm", False)),
            resblock_updown=bool(u.get("resblock_updown", False)),
            use_new_attention_order=bool(u.get("use_new_attention_order", False)),
            dropout=float(u.get("dropout", 0.0)),
            channels=int(u["in_channels"]),
            betas=betas,
            frozen=False,
        )
        if int(u["out_channels"]) != int(u["in_channels"]):
            raise ValueError("LDMPrior: an ε-prediction UNet has out_channels == in_channels")
        vq = VQModel(**{**LDM_VQ4_FIRST_STAGE, **(first_stage or {})})
        super().__init__(network, vq, scale_factor=scale_factor, downscale=vq.downscale)
        self.use_ema = use_ema
        if checkpoint is not None:
            path = resolve(checkpoint, option="checkpoint")
            source = f"checkpoint {str(path)!r}"
            self.load_ldm_state_dict(
                extract_state_dict(read_checkpoint(path), source=source), source
            )
        if frozen:
            self.freeze()

    @property
    def unet(self) -> nn.Module:
        return self.latent.net

    def load_ldm_state_dict(self, sd: Mapping[str, Tensor], source: str = "checkpoint") -> None:
        """Load a ``LatentDiffusion`` state dict (module docstring) strictly."""
        unet_prefix, vq_prefix = "model.diffusion_model.", "first_stage_model."
        unknown = [
            k
            for k in sd
            if not k.startswith((unet_prefix, vq_prefix, "model_ema."))
            and k not in _SCHEDULE_BUFFERS
        ]
        if unknown:
            raise CheckpointError(
                f"{source}: keys outside an unconditional LatentDiffusion model: {unknown[:5]} "
                "(a conditional LDM or another architecture; LDMPrior loads the unconditional "
                "*-ldm-vq-4 models)"
            )
        if self.use_ema:
            # LitEma names: 'model_ema.' + ('diffusion_model.' + name) without the dots
            names = [n for n, _ in self.unet.named_parameters()]
            flat = {n: "model_ema." + ("diffusion_model." + n).replace(".", "") for n in names}
            missing = [v for v in flat.values() if v not in sd]
            if missing:
                raise CheckpointError(f"{source}: use_ema=True but no EMA weights ({missing[:3]})")
            unet_sd = {n: sd[k] for n, k in flat.items()}
        else:
            unet_sd = {k[len(unet_prefix) :]: v for k, v in sd.items() if k.startswith(unet_prefix)}
        vq_sd = {k[len(vq_prefix) :]: v for k, v in sd.items() if k.startswith(vq_prefix)}
        load_state_dict_strict(self.unet, unet_sd, f"{source} (model.diffusion_model.*)")
        load_state_dict_strict(self.first_stage, vq_sd, f"{source} (first_stage_model.*)")
        if "scale_factor" in sd:
            self.scale_factor = float(sd["scale_factor"])
        if "betas" in sd:
            theirs = sd["betas"].double().flatten()
            ours = self.betas.double()
            # float32 storage of β ≤ 0.02: relative rounding 6e-8, so 1e-6 absolute is ample
            if theirs.shape != ours.shape or (theirs - ours).abs().max() > 1e-6:
                raise CheckpointError(
                    f"{source}: its β schedule differs from linear_start/linear_end/timesteps "
                    "given; set them to the checkpoint's config.yaml values"
                )
