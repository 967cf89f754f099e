"""β schedules and the cumulative product ᾱ_t of a VP diffusion (Ho et al. 2020).

``x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε`` with ``ᾱ_t = ∏_{s≤t} (1 − β_s)`` (Ho et al. 2020, Eq. 4).
Timesteps are *original* indices in ``[0, T)``; ``t = −1`` stands for the clean image (ᾱ = 1),
the target of the last step of a chain (DDIM ``compute_alpha`` prepends a zero β for the same
reason).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lit_restore.diffusion.sigma import alpha_bar_at


def make_betas(schedule: str = "linear", num_timesteps: int = 1000, **kwargs: float) -> Tensor:
    """β_t for the ``linear`` (Ho et al. 2020: 1e-4→0.02, scaled by 1000/T as in
    guided-diffusion ``gaussian_diffusion.get_named_beta_schedule``), ``cosine`` (Nichol &
    Dhariwal 2021, Eq. 17, β capped at 0.999) or ``scaled_linear`` schedule, in float64.

    ``scaled_linear`` is latent diffusion's: β_t = (linspace(√β_start, √β_end, T))², what CompVis
    latent-diffusion ``ldm/modules/diffusionmodules/util.py::make_beta_schedule`` calls "linear"
    (its LDM configs: 0.0015→0.0195) and diffusers calls ``scaled_linear``; no 1000/T scaling."""
    if schedule == "linear":
        scale = 1000.0 / num_timesteps
        start = kwargs.get("beta_start", 1e-4) * scale
        end = kwargs.get("beta_end", 0.02) * scale
        return torch.linspace(start, end, num_timesteps, dtype=torch.float64)
    if schedule == "scaled_linear":
        start = kwargs.get("beta_start", 0.0015) ** 0.5
        end = kwargs.get("beta_end", 0.0195) ** 0.5
        return torch.linspace(start, end, num_timesteps, dtype=torch.float64) ** 2
    if schedule == "cosine":
        s = kwargs.get("cosine_s", 0.008)

        def f(u: float) -> float:
            return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

        betas = [
            min(1 - f((i + 1) / num_timesteps) / f(i / num_timesteps), 0.999)
            for i in range(num_timesteps)
        ]
        return torch.tensor(betas, dtype=torch.float64)
    raise ValueError(
        f"unknown beta schedule {schedule!r}; choose 'linear', 'cosine' or 'scaled_linear'"
    )


def alphas_cumprod(betas: Tensor) -> Tensor:
    """ᾱ_t = ∏_{s≤t} (1 − β_s), accumulated in float64 and returned as float32 (the precision
    every caller keeps it in)."""
    return torch.cumprod(1 - betas.to(torch.float64), 0).float()


def alpha_bar(alphas_cumprod: Tensor, t: Tensor | int, like: Tensor) -> Tensor:
    """ᾱ_t looked up for every image of a batch and shaped to broadcast against ``like``
    (``[B, 1, 1, …]``, ``like``'s dtype); ``t < 0`` gives ᾱ = 1 (the clean image). A floating
    ``t`` ≥ 0 may be fractional (a continuous noise level mapped to the chain,
    :mod:`lit_restore.diffusion.sigma`): ᾱ is then :func:`~lit_restore.diffusion.sigma.alpha_bar_at`,
    the table's own value at integer t."""
    t = torch.as_tensor(t, device=alphas_cumprod.device)
    if t.is_floating_point() and bool((t >= 0).all()):
        a = alpha_bar_at(alphas_cumprod, t.reshape(-1))
        return a.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))
    t = t.long().reshape(-1)
    one = torch.ones_like(t, dtype=alphas_cumprod.dtype)
    a = torch.where(t >= 0, alphas_cumprod[t.clamp_min(0)], one)
    return a.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))
