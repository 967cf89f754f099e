"""DiffPIR — Denoising Diffusion Models for Plug-and-Play Image Restoration (Zhu et al., CVPR
Workshops 2023, arXiv 2305.08995, Algorithm 1). Source: yuanzhi-zhu/DiffPIR ``main_ddpir.py``,
``main_ddpir_sisr.py``/``main_ddpir_deblur.py``/``main_ddpir_inpainting.py`` (the ``DiffPIR``,
``pred_xstart``, ``sub_1_analytic`` branch) and ``utils/utils_sisr.py::data_solution``.

Half-quadratic splitting with the diffusion model as the denoiser. Per step t → t' (σ̄_t =
√(1−ᾱ_t)/√ᾱ_t, the noise level of x_t/√ᾱ_t):

    x̂0   = clamp(Tweedie(x_t, ε_θ), −1, 1)                          (prior sub-problem, Eq. 12)
    ρ_t  = λ σ_n² / σ̄_t²                                             (Eq. 13)
    x̃0   = argmin_x ‖y − A x‖² + ρ_t ‖x − x̂0‖²                     (data sub-problem, Eq. 13)
         = x̂0 + Aᵀ(AAᵀ + ρ_t I)⁻¹ (y − A x̂0)                      (``operator.pinv_reg``)
    ε̂    = (x_t − √ᾱ_t x̃0) / √(1−ᾱ_t)                              (Eq. 14)
    x_t' = √ᾱ_t' x̃0 + √(1−ζ) (√(1−ᾱ_t'−s²) ε̂ + s z₁) + √ζ √(1−ᾱ_t') z₂     (Eq. 15)

with s = η √((1−ᾱ_t')/(1−ᾱ_t)) √β_t (β_t the single-step β of the 1000-step chain, as the code
has it; η = 0 in every published setting). The last step (t' = −1) returns x̂0 itself, without the
data step (the code's ``seq[i] != seq[-1]`` test).

The data step is the operator's ``pinv_reg`` — exact through the SVD (SR, inpainting, zero-padded
blur), the FFT (circular blur: the code's closed form ``data_solution``, which is Woodbury's
identity of the line above) or conjugate gradients (padded blur): one code path for every
operator that offers Aᵀ(AAᵀ+ηI)⁻¹.

**Units.** The official code solves the data step on [0, 1] images with σ_n the [0, 1] noise
level (``noise_level_img`` = 12.75/255 for σ = 0.05, floored at 0.001: ``sigma = max(0.001,
noise_level_img)``); on [−1, 1] both terms of the objective double, so ρ_t is unchanged. Here σ_y
is in model space, so σ_n = max(0.001, σ_y/2). (λ = 4 would be the exact Gaussian MAP weight.)

**Schedule.** ``spacing="quad"`` (the published ``skip_type``; :func:`~lit_restore.diffusion.respacing.quad_timesteps`).
The official scripts start from x_T = √ᾱ_T·(an upsampled or blurred y) + √(1−ᾱ_T) z at
T = 999; with √ᾱ_999 ≈ 0.0064 this is N(0, I) to within 1 % of the signal's weight, and we start
from N(0, I) (``init="noise"``), which every operator allows.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_restore.samplers.base import Sampler, SamplingContext


class DiffPIR(Sampler):
    """DiffPIR with the closed-form (``pinv_reg``) data step.

    Args:
        steps: number of steps (``iter_num``; NFE): 100 for SR/deblurring, 20 for inpainting.
        lam: λ of ρ_t = λ σ_n²/σ̄_t².
        zeta: ζ, the fraction of fresh noise when re-noising x̃0 (0 = DDIM-like, 1 = all fresh).
        eta: η of the DDIM part (0 in every published setting).
        spacing: ``"quad"`` (published) or any rule of :mod:`lit_restore.diffusion.respacing`.
        sigma_floor: the floor of σ_n on [0, 1] (official 0.001): keeps ρ_t > 0 when σ_y = 0.
        guidance_scale: x̂0 + s·(x̃0 − x̂0) (``guidance_scale``, 1 in every published setting).
    """

    name = "diffpir"
    needs = frozenset({"pinv_reg"})  # the proximal data step Aᵀ(AAᵀ+ρI)⁻¹

    def __init__(
        self,
        steps: int = 100,
        lam: float = 7.0,
        zeta: float = 0.3,
        eta: float = 0.0,
        spacing: str = "quad",
        sigma_floor: float = 0.001,
        guidance_scale: float = 1.0,
        progress: bool = False,
    ) -> None:
        super().__init__(
            steps=steps, spacing=spacing, eta=eta, clip_denoised=True, progress=progress
        )
        if not 0 <= zeta <= 1:
            raise ValueError(f"DiffPIR zeta must be in [0, 1], got {zeta}")
        if lam <= 0 or sigma_floor <= 0:
            raise ValueError("DiffPIR lam and sigma_floor must be > 0 (ρ_t > 0)")
        self.lam = float(lam)
        self.zeta = float(zeta)
        self.sigma_floor = float(sigma_floor)
        self.guidance_scale = float(guidance_scale)

    def rho(self, sigma_y: float, a: float) -> float:
        """ρ_t = λ σ_n² / σ̄_t² with σ_n = max(floor, σ_y/2) (module docstring, "Units")."""
        sigma_n = max(self.sigma_floor, sigma_y / 2)
        return self.lam * sigma_n**2 * a / (1 - a)

    def step(self, ctx: SamplingContext, x: Tensor, t: int, t_next: int) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            x0 = self.denoise(ctx, x, t)
            if t_next < 0:  # the last step returns the denoiser output
                return x0, x0
            op = ctx.operator
            a_t = float(ctx.prior.alphas_cumprod[t])
            prox = op.pinv_reg(ctx.y - op.A(x0), self.rho(ctx.sigma_y, a_t)).view_as(x0)
            x0 = x0 + self.guidance_scale * prox
            a, a_next = ctx.alpha_bar(t, x), ctx.alpha_bar(t_next, x)
            eps = ctx.eps_from_x0(x, t, x0)
            beta_t = 1 - a / ctx.alpha_bar(t - 1, x)  # single-step β_t (official)
            s = self.eta * ((1 - a_next) / (1 - a)).sqrt() * beta_t.sqrt()
            z1, z2 = ctx.randn(x), ctx.randn(x)
            x_next = (
                a_next.sqrt() * x0
                + (1 - self.zeta) ** 0.5 * ((1 - a_next - s**2).clamp_min(0).sqrt() * eps + s * z1)
                + self.zeta**0.5 * (1 - a_next).sqrt() * z2
            )
        return x_next, x0

    def hparams(self) -> dict:
        return {
            **super().hparams(),
            "lam": self.lam,
            "zeta": self.zeta,
            "spacing": self.spacing,
            "guidance_scale": self.guidance_scale,
        }
