"""DDPG / IDPG — Denoising Diffusion with Preconditioned Guidance (Garber & Tirer, CVPR 2024,
arXiv 2312.16519). Source: tirer-lab/DDPG ``functions/ddpg_scheme.py`` (argument names kept).

Per step t → t' (x0 = Tweedie estimate, not clamped; σ_y in model space):

    δ_t   = ᾱ_{t'}^γ  if σ_y > 0 else 0                         (BP → LS blend, ``gamma``)
    η_reg = max(1e-4, η̃ σ_y²);  η̃ < 0:  η_reg = 1e-4 + ξ (255 σ_y)²   (``eta_tilde``, ``xi``)
    g_BP  = Aᵀ(AAᵀ + η_reg I)⁻¹ (A x0 − y)                     (``pinv_reg``)
    g_LS  = Aᵀ (A x0 − y)
    x̃     = x0 − μ_t [ μ_BP (1−δ_t) g_BP + μ_LS δ_t c g_LS ]        (c = ``scale_ls``)
    step_size_mode 0: μ = 1; 1: μ_t = (1−ᾱ_{t'})/(1−ᾱ_t); 2: μ_LS = (1−ᾱ_{t'})/(1−ᾱ_t).

Noise (``inject_noise=1``, DDPG): ε̂ = (x_t − √ᾱ_t x̃)/√(1−ᾱ_t),
x_{t'} = √ᾱ_{t'} x̃ + √(1−ᾱ_{t'}) [√ζ z + √(1−ζ) w_t ε̂], w_t = δ_t if σ_y > 0 else 1.
``inject_noise=0`` (IDPG): x_{t'} = √ᾱ_{t'} x̃. Output: the last x0 if σ_y ≠ 0, else the last x̃.

The preconditioner is W_t = (1−δ_t)(AAᵀ+ηI)⁻¹ + δ_t c I (paper). Subclasses (FDGR) add a
regulariser through :meth:`DDPG.regularizer_step`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_restore.samplers.base import Sampler, SamplingContext


class DDPG(Sampler):
    """DDPG (``inject_noise=True``) / IDPG (``inject_noise=False``).

    Args:
        steps: ``T_sampling`` (100).
        gamma: γ of δ_t = ᾱ_{t−1}^γ.
        zeta: ζ, the fraction of fresh noise (DDPG only).
        eta_tilde: η̃ of η_reg = max(1e-4, η̃σ_y²); negative selects the ``xi`` rule.
        xi: ξ of the η̃ < 0 rule (main.py default 1e-5).
        step_size_mode: 0, 1 or 2 (module docstring).
        inject_noise: True = DDPG, False = IDPG.
        scale_ls: c, the least-squares step (code comment: ≤ 1/s_max²).
    """

    name = "ddpg"
    needs = frozenset({"pinv_reg"})  # Aᵀ(AAᵀ+ηI)⁻¹: an SVD, an FFT or conjugate gradients

    def __init__(
        self,
        steps: int = 100,
        gamma: float = 8.0,
        zeta: float = 0.5,
        eta_tilde: float = 0.7,
        xi: float = 1e-5,
        step_size_mode: int = 1,
        inject_noise: bool = True,
        scale_ls: float = 1.0,
        progress: bool = False,
    ) -> None:
        super().__init__(
            steps=steps, spacing="uniform", eta=0.0, clip_denoised=False, progress=progress
        )
        if step_size_mode not in (0, 1, 2):
            raise ValueError(f"step_size_mode must be 0, 1 or 2, got {step_size_mode}")
        if not 0 <= zeta <= 1:
            raise ValueError(f"zeta must be in [0, 1], got {zeta}")
        self.gamma = float(gamma)
        self.zeta = float(zeta)
        self.eta_tilde = float(eta_tilde)
        self.xi = float(xi)
        self.step_size_mode = int(step_size_mode)
        self.inject_noise = bool(inject_noise)
        self.scale_ls = float(scale_ls)

    @property
    def method_name(self) -> str:
        return "DDPG" if self.inject_noise else "IDPG"

    def eta_reg(self, sigma_y: float) -> float:
        if self.eta_tilde < 0:
            return 1e-4 + self.xi * (sigma_y * 255.0) ** 2
        return max(1e-4, sigma_y**2 * self.eta_tilde)

    def step_sizes(
        self, a: Tensor, a_next: Tensor
    ) -> tuple[Tensor | float, Tensor | float, Tensor | float]:
        """(μ_t, μ_BP, μ_LS) for ``step_size_mode``."""
        decay = (1 - a_next) / (1 - a)
        if self.step_size_mode == 0:
            return 1.0, 1.0, 1.0
        if self.step_size_mode == 1:
            return decay, 1.0, 1.0
        return 1.0, 1.0, decay

    def regularizer_step(
        self, ctx: SamplingContext, x0: Tensor, a: Tensor, a_next: Tensor
    ) -> Tensor | None:
        """Extra term subtracted from x̃ (FDGR's μ_R ∇R); DDPG has none."""
        return None

    def step(self, ctx: SamplingContext, x: Tensor, t: int, t_next: int) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            op, y, sy = ctx.operator, ctx.y, ctx.sigma_y
            eps = ctx.eps(x, t)
            x0 = ctx.x0_from_eps(x, t, eps)
            ctx.state["x0_raw"] = x0
            a, a_next = ctx.alpha_bar(t, x), ctx.alpha_bar(t_next, x)
            delta = a_next**self.gamma if sy > 0 else torch.zeros_like(a_next)
            r = op.A(x0) - y
            g_bp = op.pinv_reg(r, self.eta_reg(sy)).view_as(x0)
            g_ls = op.adjoint(r).view_as(x0)
            mu, mu_bp, mu_ls = self.step_sizes(a, a_next)
            x_tilde = x0 - mu * (mu_bp * (1 - delta) * g_bp + mu_ls * delta * self.scale_ls * g_ls)
            reg = self.regularizer_step(ctx, x0, a, a_next)
            if reg is not None:
                x_tilde = x_tilde - reg
            x_next = a_next.sqrt() * x_tilde
            if self.inject_noise:
                eps_hat = (x - a.sqrt() * x_tilde) / (1 - a).sqrt()
                w = delta if sy > 0 else 1.0
                z = ctx.randn(x)
                x_next = x_next + (1 - a_next).sqrt() * (
                    self.zeta**0.5 * z + (1 - self.zeta) ** 0.5 * w * eps_hat
                )
        return x_next, x_tilde

    def finalize(self, ctx: SamplingContext, x: Tensor) -> Tensor:
        # σ_y ≠ 0: the denoiser output at the last step; σ_y = 0: the last x̃ (= x at ᾱ = 1)
        return ctx.state["x0_raw"] if ctx.sigma_y != 0 else x

    def hparams(self) -> dict:
        return {
            **super().hparams(),
            "method": self.method_name.lower() if type(self) is DDPG else self.name,
            "gamma": self.gamma,
            "zeta": self.zeta,
            "eta_tilde": self.eta_tilde,
            "step_size_mode": self.step_size_mode,
            "inject_noise": self.inject_noise,
            "scale_ls": self.scale_ls,
        }


class IDPG(DDPG):
    """IDPG = DDPG without noise injection (``inject_noise=False``, deterministic)."""

    name = "idpg"

    def __init__(
        self,
        steps: int = 100,
        gamma: float = 16.0,
        eta_tilde: float = 0.2,
        xi: float = 1e-5,
        step_size_mode: int = 0,
        scale_ls: float = 1.0,
        progress: bool = False,
    ) -> None:
        super().__init__(
            steps=steps,
            gamma=gamma,
            zeta=0.0,
            eta_tilde=eta_tilde,
            xi=xi,
            step_size_mode=step_size_mode,
            inject_noise=False,
            scale_ls=scale_ls,
            progress=progress,
        )
