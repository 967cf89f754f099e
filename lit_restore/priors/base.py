"""The frozen-prior protocol: a VP (variance-preserving) diffusion model over images in [-1, 1].

``x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε`` with a 1000-step schedule (Ho et al. 2020, Eq. 4). A prior exposes
``eps(x_t, t)`` — the ε-prediction of its network with learned-sigma channels dropped — and the
``alphas_cumprod`` buffer. Samplers only ever talk to this interface; they never see which network
is inside.

Timesteps ``t`` are *original* indices in ``[0, num_timesteps)`` even when a sampler uses a
respaced subset (guided-diffusion ``respace.py`` maps respaced indices back the same way).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def make_betas(schedule: str = "linear", num_timesteps: int = 1000, **kwargs) -> Tensor:
    """β_t for the ``linear`` (Ho et al. 2020: 1e-4→0.02, scaled by 1000/T as in
    guided-diffusion ``get_named_beta_schedule``) or ``cosine`` (Nichol & Dhariwal 2021, Eq. 17)
    schedule, in float64."""
    if schedule == "linear":
        scale = 1000.0 / num_timesteps
        start = kwargs.get("beta_start", 1e-4) * scale
        end = kwargs.get("beta_end", 0.02) * scale
        return torch.linspace(start, end, num_timesteps, dtype=torch.float64)
    if schedule == "cosine":
        s = kwargs.get("cosine_s", 0.008)

        def alpha_bar(u: float) -> float:
            return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

        betas = [
            min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), 0.999)
            for i in range(num_timesteps)
        ]
        return torch.tensor(betas, dtype=torch.float64)
    raise ValueError(f"unknown beta schedule {schedule!r}; choose 'linear' or 'cosine'")


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
        b = make_betas(beta_schedule, num_timesteps) if betas is None else torch.as_tensor(betas)
        b = b.to(torch.float64)
        self.register_buffer("betas", b.float(), persistent=False)
        self.register_buffer("alphas_cumprod", torch.cumprod(1 - b, 0).float(), persistent=False)

    @property
    def num_timesteps(self) -> int:
        return int(self.alphas_cumprod.numel())

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        """ε-prediction at original timesteps ``t`` (long, shape [B]); ``channels`` channels."""
        raise NotImplementedError

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.eps(x_t, t)

    def alpha_bar(self, t: Tensor, like: Tensor) -> Tensor:
        """ᾱ_t broadcast to ``like`` (t < 0 means ᾱ = 1, the clean image)."""
        t = torch.as_tensor(t, device=self.alphas_cumprod.device).long().reshape(-1)
        a = torch.where(t >= 0, self.alphas_cumprod[t.clamp_min(0)], torch.ones_like(t, dtype=torch.float32))
        return a.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def x0_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """Tweedie: x̂0 = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t."""
        a = self.alpha_bar(t, x_t)
        return (x_t - (1 - a).sqrt() * eps) / a.sqrt()

    def x0(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.x0_from_eps(x_t, t, self.eps(x_t, t))

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        a = self.alpha_bar(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def freeze(self) -> DiffusionPrior:
        """Eval mode, no gradients to parameters (gradients w.r.t. inputs still flow, for DPS)."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

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
                f"{self.image_size} (e.g. --data.init_args.crop_size {self.image_size})."
            )
