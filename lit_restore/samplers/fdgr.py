"""FDGR — DDPG guidance plus a non-convex gradient regulariser.

Source: Anonymous-CodeSub/FDGR ``functions/FDGR.py`` (the paper was not available; equations are
read from the code, argument names kept). Everything is DDPG (``ddpg.py``) except one extra
term in the guided estimate:

    x̃ = x0 − μ_t[μ_BP (1−δ_t) g_BP + μ_LS δ_t c g_LS] − μ_R ∇R(x0).

**mode "G+" (spatial).** Circular backward differences per channel, D_x x = x_i − x_{i−1} (and
D_y), adjoint D_xᵀ g = g_i − g_{i+1}:

    ∇R = λ [D_xᵀ φ′(D_x x0) + D_yᵀ φ′(D_y x0)],
    φ′(g) = α (g²+ε)^{α/2−1} / (2σ_g²) · exp(−(g²+ε)^{α/2} / (2σ_g²)) · g,   ε = 1e-6,

the gradient of the Welsch-type penalty Σ φ(D x0), φ(g) = 1 − exp(−(g²+ε)^{α/2}/(2σ_g²)).

**mode "G-" (frequency).** Spectral derivatives g_u = Re F⁻¹[2πi u F x0], g_v likewise
(u, v = ``fftfreq``), isotropic m = clamp(g_u² + g_v² + 2ε, ε, 100), ε = 1e-4,
w = α m^{α/2−1}/(2σ_g²) exp(−m^{α/2}/(2σ_g²)), and

    ∇R = λ Re F⁻¹[−2πi u F(w g_u) − 2πi v F(w g_v)]      (= λ(D_uᵀ w g_u + D_vᵀ w g_v)).

The default λ = −0.09 makes G- an ascent on the edge penalty (sharpening).

**Regulariser step μ_R.** ``step_size_mode`` 0: μ_R = β_t(1−ᾱ_{t'})/(1−ᾱ_t) with
β_t = 1 − ᾱ_t/ᾱ_{t'} for G+, μ_R = 1 for G-; mode 1: μ_R = 1 (BP/LS decay as in DDPG).
Mode 2 is undefined in the FDGR code (``step_size_reg`` is never set, so it crashes); **we define
it** as DDPG's mode 2 for BP/LS with μ_R taken from the mode-0 rule.

Defaults are ``main.py``'s: G-, λ −0.09, α 0.5, σ_g 1.5, inject_noise 1, γ 8, η̃ 0.7, ζ 0.5,
step_size_mode 1, scale_ls 1. The only published setting (README quick start, CelebA SR×4,
σ_y 0.05) is G+ with IDPG-like fidelity: preset ``celebahq256_sr4_sigma0.05``
(:mod:`lit_restore.samplers.presets`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lit_restore.samplers.base import SamplingContext
from lit_restore.samplers.ddpg import DDPG


def _dx(x: Tensor) -> Tensor:
    return x - torch.roll(x, 1, dims=-1)


def _dy(x: Tensor) -> Tensor:
    return x - torch.roll(x, 1, dims=-2)


def _dxT(g: Tensor) -> Tensor:
    return g - torch.roll(g, -1, dims=-1)


def _dyT(g: Tensor) -> Tensor:
    return g - torch.roll(g, -1, dims=-2)


def gradient_regularizer_grad(
    x: Tensor, mode: str, lam: float, alpha: float, sigma_g: float
) -> Tensor:
    """∇R(x) for ``mode`` ``"G+"`` (spatial) or ``"G-"`` (frequency); see the module docstring."""
    two_s2 = 2 * sigma_g**2
    if mode == "G+":
        eps = 1e-6

        def phi_prime(g: Tensor) -> Tensor:
            q = g * g + eps
            return alpha * q.pow(alpha / 2 - 1) / two_s2 * torch.exp(-q.pow(alpha / 2) / two_s2) * g

        return lam * (_dxT(phi_prime(_dx(x))) + _dyT(phi_prime(_dy(x))))
    if mode == "G-":
        eps = 1e-4
        h, w = x.shape[-2:]
        u = torch.fft.fftfreq(w, device=x.device, dtype=x.dtype).view(1, -1)
        v = torch.fft.fftfreq(h, device=x.device, dtype=x.dtype).view(-1, 1)
        ju, jv = 2j * math.pi * u, 2j * math.pi * v
        X = torch.fft.fft2(x)
        gu = torch.fft.ifft2(ju * X).real
        gv = torch.fft.ifft2(jv * X).real
        m = (gu * gu + gv * gv + 2 * eps).clamp(eps, 100)
        wgt = alpha * m.pow(alpha / 2 - 1) / two_s2 * torch.exp(-m.pow(alpha / 2) / two_s2)
        out = torch.fft.ifft2(-ju * torch.fft.fft2(wgt * gu) - jv * torch.fft.fft2(wgt * gv)).real
        return lam * out
    raise ValueError(f"FDGR mode must be 'G+' or 'G-', got {mode!r}")


class FDGR(DDPG):
    """DDPG/IDPG + gradient regulariser (arguments as :class:`DDPG` plus ``mode``, ``lam``,
    ``alpha``, ``sigma_g``)."""

    name = "fdgr"

    def __init__(
        self,
        steps: int = 100,
        mode: str = "G-",
        lam: float = -0.09,
        alpha: float = 0.5,
        sigma_g: float = 1.5,
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
            steps=steps,
            gamma=gamma,
            zeta=zeta,
            eta_tilde=eta_tilde,
            xi=xi,
            step_size_mode=step_size_mode,
            inject_noise=inject_noise,
            scale_ls=scale_ls,
            progress=progress,
        )
        if mode not in ("G+", "G-"):
            raise ValueError(f"FDGR mode must be 'G+' or 'G-', got {mode!r}")
        if sigma_g <= 0 or alpha <= 0:
            raise ValueError("FDGR needs alpha > 0 and sigma_g > 0")
        self.mode, self.lam, self.alpha, self.sigma_g = (
            mode,
            float(lam),
            float(alpha),
            float(sigma_g),
        )

    def regularizer_step(
        self, ctx: SamplingContext, x0: Tensor, a: Tensor, a_next: Tensor
    ) -> Tensor:
        if self.step_size_mode == 1:
            mu_r: Tensor | float = 1.0
        elif self.mode == "G+":  # modes 0 and 2 (ours)
            beta = 1 - a / a_next
            mu_r = beta * (1 - a_next) / (1 - a)
        else:
            mu_r = 1.0
        return mu_r * gradient_regularizer_grad(x0, self.mode, self.lam, self.alpha, self.sigma_g)

    def hparams(self) -> dict:
        return {
            **super().hparams(),
            "mode": self.mode,
            "lam": self.lam,
            "alpha": self.alpha,
            "sigma_g": self.sigma_g,
        }
