"""ΠGDM — Pseudoinverse-Guided Diffusion Models (Song, Vahdat, Mardani & Kautz, ICLR 2023,
openreview 9_gsMA8MRKQ). Source: NVlabs/RED-diff ``algos/pgdm.py`` (class ``PGDM``, with
``awd: True``, ``eta: 0``, ``grad_term_weight: 1`` from ``_configs/algo/pgdm.yaml``) and the
timesteps of ``utils/functions.py::get_timesteps`` (``range(0, 1000, 1000 // N)``).

The likelihood p(y | x_t) is approximated by taking p(x0 | x_t) ≈ N(x̂0, r_t² I), r_t² = 1 − ᾱ_t
(the posterior variance of unit-variance data, paper Sec. 3.1), so that for y = A x0 + σ_y n

    ∇_{x_t} log p(y | x_t) ≈ (∂x̂0/∂x_t)ᵀ Aᵀ (r_t² AAᵀ + σ_y² I)⁻¹ (y − A x̂0)       (paper Eq. 5)

a vector-Jacobian product through the network. Writing
r_t² Aᵀ(r_t² AAᵀ + σ_y² I)⁻¹ = Aᵀ(AAᵀ + σ_y²/r_t² I)⁻¹ (``operator.pinv_reg``), the step is

    x̂0 = Tweedie(x_t, ε_θ)                               (not clamped, as the code)
    v  = Aᵀ(AAᵀ + σ_y²/r_t² I)⁻¹ (y − A x̂0)              (σ_y = 0: v = A⁺(y − A x̂0), Eq. 8)
    g  = (∂x̂0/∂x_t)ᵀ v                                   (autograd of ⟨stop_grad(v), x̂0⟩)
    x_s = √ᾱ_s x̂0 + c1 z + c2 ε_θ + w √ᾱ_s √ᾱ_t g,
    c1 = η √((1 − ᾱ_t/ᾱ_s)(1 − ᾱ_s)/(1 − ᾱ_t)),  c2 = √(1 − ᾱ_s − c1²)   (DDIM, Song et al. 2021).

The weight √ᾱ_s √ᾱ_t w is the official code's (``awd: True``: the network's ε_θ is kept in the
DDIM step and the guidance gets ``coeff = √ᾱ_s·√ᾱ_t·grad_term_weight``). RED-diff's code implements
the noiseless case only (it has no σ_y): at σ_y = 0 this sampler is that code; the σ_y > 0 branch
is the paper's Eq. 5 with the same weight, and reduces to it continuously as σ_y → 0.
The chain starts from x_T = √ᾱ_T x_init + √(1−ᾱ_T) z with x_init = A⁺y (``PGDM.initialize``;
for σ_y > 0 the regularised inverse of the first step, Aᵀ(AAᵀ + σ_y²/r_T² I)⁻¹ y).

The per-image inner product makes each image's gradient its own: the official code sums
⟨v, x̂0⟩ over the batch before differentiating, which gives the same per-image gradients because
the network acts on each image separately.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_restore.samplers.base import Sampler, SamplingContext


class PiGDM(Sampler):
    """ΠGDM on a DDIM(η) chain.

    Args:
        steps: number of DDIM steps (NFE; 100 in RED-diff's README runs).
        eta: η of the DDIM step (``eta: 0`` in ``pgdm.yaml``).
        guidance_weight: w (``grad_term_weight``, 1).
    """

    name = "pgdm"

    def __init__(
        self,
        steps: int = 100,
        eta: float = 0.0,
        guidance_weight: float = 1.0,
        spacing: str = "uniform",
        progress: bool = False,
    ) -> None:
        super().__init__(
            steps=steps, spacing=spacing, eta=eta, clip_denoised=False, progress=progress
        )
        self.guidance_weight = float(guidance_weight)

    def requirements(self, sigma_y: float) -> tuple[str, frozenset[str]]:
        # noiseless: A⁺ (Eq. 8); noisy: Aᵀ(AAᵀ + ηI)⁻¹ (Eq. 5)
        if sigma_y > 0:
            return "ΠGDM (noisy)", frozenset({"pinv_reg"})
        return "ΠGDM", frozenset({"pinv"})

    def back_project(self, ctx: SamplingContext, r: Tensor, t: int) -> Tensor:
        """``r_t² Aᵀ(r_t² AAᵀ + σ_y² I)⁻¹ r`` (= ``A⁺ r`` at σ_y = 0), image-shaped."""
        op = ctx.operator
        if ctx.sigma_y == 0:
            out = op.pinv(r)
        else:
            r2 = 1 - float(ctx.prior.alphas_cumprod[t])
            out = op.pinv_reg(r, ctx.sigma_y**2 / r2)
        return out.view(-1, *ctx.shape[1:])

    def init(self, ctx: SamplingContext) -> Tensor:
        t_first = self.schedule(ctx.num_timesteps)[0][0]
        x_init = self.back_project(ctx, ctx.y, t_first)
        return ctx.renoise(x_init, t_first)

    def step(self, ctx: SamplingContext, x: Tensor, t: int, t_next: int) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            eps = ctx.eps(x_in, t)
            x0 = ctx.x0_from_eps(x_in, t, eps)
            with torch.no_grad():
                v = self.back_project(ctx, ctx.y - ctx.operator.A(x0), t)
            (g,) = torch.autograd.grad((v * x0).sum(), x_in)
        with torch.no_grad():
            x0, eps = x0.detach(), eps.detach()
            a, a_s = ctx.alpha_bar(t, x), ctx.alpha_bar(t_next, x)
            c1 = ((1 - a / a_s) * (1 - a_s) / (1 - a)).clamp_min(0).sqrt() * self.eta
            c2 = (1 - a_s - c1**2).clamp_min(0).sqrt()
            coeff = a_s.sqrt() * a.sqrt() * self.guidance_weight
            x_next = a_s.sqrt() * x0 + c1 * ctx.randn(x) + c2 * eps + coeff * g
        return x_next, x0

    def hparams(self) -> dict:
        return {**super().hparams(), "guidance_weight": self.guidance_weight}
