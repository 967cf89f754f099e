"""Latent DAPS: DAPS's decoupled annealing on the latents of a latent diffusion prior.

Zhang et al., "Improving Diffusion Inverse Problem Solving with Decoupled Noise Annealing",
CVPR 2025, arXiv 2407.01521 (the LDM rows of its tables). Source: zhangbingliang2019/DAPS @
098df6b ``sampler.py::LatentDAPS``, ``forward_operator/__init__.py::LatentWrapper``,
``configs/sampler/latent_edm_daps.yaml``, the ``ldm`` group of ``configs/task/*.yaml`` and
``commands/ldm_ffhq.sh``.

The chain is :class:`~lit_restore.samplers.daps.DAPS`'s, run on ``z`` by the latent loop
(:mod:`lit_restore.samplers.latent`): at each level σ_i

1. ẑ0 by the probability-flow ODE with the latent ε-prior as EDM denoiser
   ``D(z, σ) = z − σ ε̂(z/√(1+σ²), t(σ))`` (the official ``LDM.tweedie`` → ``VPPrecond``);
2. Langevin/HMC on z0 targeting ``exp(−‖y − A(𝒟(z0))‖²/τ² − ‖z0 − ẑ0‖²/(2σ_i²))``, the data
   term through the decoder 𝒟 (the loop's ``A ∘ 𝒟``, the official ``LatentWrapper``);
3. ``z_{i+1} = z0 + σ_{i+1} ε``; the result is 𝒟(z after the last level).

The one difference from pixel DAPS is in the official ``LatentWrapper.gradient``: the gradient
∇_z ‖A(𝒟(z)) − y‖² is clamped elementwise to [−1, 1] before it is divided by τ² (``grad_clip``,
1 as published; ``None`` turns it off — the exact likelihood, used by the analytic test). The
published LDM setting ("DAPS-100", ``commands/ldm_ffhq.sh``) is 50 annealing levels σ 10 → 0.1
(poly-7) × 2 Euler ODE steps down to σ = 0.001 = 100 NFE, HMC with τ = 0.01 and a per-task step
(presets ``ldm_<task>``, :mod:`lit_restore.samplers.presets`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_restore.samplers.base import SamplingContext
from lit_restore.samplers.daps import DAPS
from lit_restore.samplers.latent import LatentSampler


class LatentDAPS(LatentSampler, DAPS):
    """:class:`DAPS` on a latent prior (arguments as DAPS, plus ``grad_clip``).

    Args:
        grad_clip: the elementwise bound on ∇_z ‖A(𝒟(z)) − y‖² (official: 1); ``None``: no clamp.
    """

    name = "latent_daps"

    def __init__(self, *args, grad_clip: float | None = 1.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if grad_clip is not None and grad_clip <= 0:
            raise ValueError("LatentDAPS grad_clip must be > 0 (or None for no clamp)")
        self.grad_clip = None if grad_clip is None else float(grad_clip)

    def data_grad(self, ctx: SamplingContext, x0: Tensor) -> Tensor:
        """∇_z ‖A(𝒟(z)) − y‖² (the loop's operator is ``A ∘ 𝒟``), clamped to ±``grad_clip``
        as the official ``LatentWrapper.gradient`` does."""
        g = super().data_grad(ctx, x0)
        return g if self.grad_clip is None else torch.clamp(g, -self.grad_clip, self.grad_clip)

    def hparams(self) -> dict:
        return {
            **super().hparams(),
            "grad_clip": self.grad_clip if self.grad_clip is not None else "none",
        }
