"""Minimal unconditional sampling from any :class:`DiffusionPrior` (a check that a prior works,
and a way to look at what a freshly trained prior has learnt). The guided samplers live in
:mod:`lit_restore.samplers`; this loop is independent of them on purpose.

Generalised DDIM update (Song et al. 2021, Eq. 12) on a respaced subsequence ``τ`` of the 1000
training steps, with ``x̂0`` from Tweedie and ``ε̂`` recomputed from the (clipped) ``x̂0``::

    x_{τ_{i-1}} = √ᾱ_{prev} x̂0 + √(1 − ᾱ_{prev} − σ²) ε̂ + σ z,
    σ = η √((1 − ᾱ_{prev}) / (1 − ᾱ_τ)) √(1 − ᾱ_τ / ᾱ_{prev}).

``η = 0`` is deterministic DDIM; ``η = 1`` is DDPM ancestral sampling on the respaced chain
(guided-diffusion ``respace.py`` + ``p_sample`` with the "fixedsmall" variance).
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from lit_restore.priors.base import DiffusionPrior


def respaced_timesteps(num_timesteps: int, steps: int) -> Tensor:
    """``steps`` evenly spaced original timesteps from ``T-1`` down to 0 (inclusive), descending."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be in [1, {num_timesteps}], got {steps}")
    ts = torch.linspace(0, num_timesteps - 1, steps).round().long()
    return ts.flip(0)


@torch.no_grad()
def sample_unconditional(
    prior: DiffusionPrior,
    shape: tuple[int, ...],
    steps: int = 50,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    clip_denoised: bool = True,
    progress: bool = False,
) -> Tensor:
    """Draw ``shape`` samples from ``prior`` with ``steps`` DDIM(η) steps; returns x̂0 in model space."""
    device = prior.alphas_cumprod.device
    x = torch.randn(shape, generator=generator, device=device)
    ts = respaced_timesteps(prior.num_timesteps, steps).tolist()
    for i, t in enumerate(tqdm(ts, desc="sampling", disable=not progress)):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        tt = torch.full((shape[0],), t, device=device, dtype=torch.long)
        a = prior.alpha_bar(tt, x)
        a_prev = prior.alpha_bar(torch.full_like(tt, t_prev), x)
        eps = prior.eps(x, tt)
        x0 = prior.x0_from_eps(x, tt, eps)
        if clip_denoised:
            x0 = x0.clamp(-1, 1)
            eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        sigma = eta * ((1 - a_prev) / (1 - a)).sqrt() * (1 - a / a_prev).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp_min(0).sqrt() * eps
        if eta > 0 and t_prev >= 0:
            x = x + sigma * torch.randn(shape, generator=generator, device=device)
    return x
