"""The frozen-prior protocol: a VP (variance-preserving) diffusion model over images in [-1, 1].

``x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε`` with a 1000-step schedule (Ho et al. 2020, Eq. 4). A prior exposes
``eps(x_t, t)`` — the ε-prediction of its network with learned-sigma channels dropped — and the
``alphas_cumprod`` buffer. Samplers only ever talk to this interface; they never see which network
is inside. The maths (schedules, ᾱ lookup, x0↔ε, q_sample) is :mod:`lit_restore.diffusion`'s.

Timesteps ``t`` are *original* indices in ``[0, num_timesteps)`` even when a sampler uses a
respaced subset (guided-diffusion ``respace.py`` maps respaced indices back the same way).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lit_restore import diffusion
from lit_restore.nn.blocks import freeze


class DiffusionPrior(nn.Module):
    """Base class of all frozen priors.

    Subclasses implement :meth:`eps`; everything else (x̂0 by Tweedie, noising) is derived here.

    Args:
        image_size: spatial size the network was trained at (``None`` = any size).
        channels: image channels (3 for RGB).
        beta_schedule: ``linear`` or ``cosine``.
        num_timesteps: length of the training chain (1000 for every public checkpoint).
        betas: explicit β (overrides ``beta_schedule``), e.g. from a diffusers scheduler.
    """

    def __init__(
        self,
        image_size: int | None = 256,
        channels: int = 3,
        beta_schedule: str = "linear",
        num_timesteps: int = 1000,
        betas: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.channels = channels
        b = (
            diffusion.make_betas(beta_schedule, num_timesteps)
            if betas is None
            else torch.as_tensor(betas)
        ).to(torch.float64)
        self.register_buffer("betas", b.float(), persistent=False)
        self.register_buffer("alphas_cumprod", diffusion.alphas_cumprod(b), persistent=False)

    @property
    def num_timesteps(self) -> int:
        return int(self.alphas_cumprod.numel())

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        """ε-prediction at original timesteps ``t`` (long, shape [B]); ``channels`` channels."""
        raise NotImplementedError

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.eps(x_t, t)

    def alpha_bar(self, t: Tensor | int, like: Tensor) -> Tensor:
        """ᾱ_t broadcast to ``like`` (t < 0 means ᾱ = 1, the clean image)."""
        return diffusion.alpha_bar(self.alphas_cumprod, t, like)

    def x0_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """Tweedie: x̂0 = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t."""
        return diffusion.x0_from_eps(x_t, eps, self.alpha_bar(t, x_t))

    def x0(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.x0_from_eps(x_t, t, self.eps(x_t, t))

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε."""
        return diffusion.q_sample(x0, noise, self.alpha_bar(t, x0))

    def set_torso_dtype(self, dtype: torch.dtype) -> bool:
        """Cast the network's torso to ``dtype`` if this prior has one that keeps its precision-
        sensitive parts (normalisation, time embedding, output head) in float32; returns whether
        it did. The base class has none (callers then run the network under autocast)."""
        return False

    def freeze(self) -> DiffusionPrior:
        """Eval mode, no gradients to parameters (gradients w.r.t. inputs still flow, for DPS)."""
        return freeze(self)

    def check_input(self, x: Tensor) -> None:
        """Clear error when an image does not fit the network (size/channels)."""
        if x.shape[1] != self.channels:
            raise ValueError(
                f"{type(self).__name__} expects {self.channels}-channel images, got {x.shape[1]}"
            )
        if self.image_size is not None and tuple(x.shape[-2:]) != (self.image_size,) * 2:
            raise ValueError(
                f"{type(self).__name__} was trained at {self.image_size}×{self.image_size} but got "
                f"{x.shape[-2]}×{x.shape[-1]} images; set the datamodule's crop/resize to "
                f"{self.image_size} (e.g. --data.init_args.crop_size {self.image_size}), or wrap "
                "the prior in lit_restore.priors.TiledPrior to restore larger images."
            )
