"""DDRM — Denoising Diffusion Restoration Models (Kawar et al., NeurIPS 2022, arXiv 2201.11793).

Source: bahjat-kawar/ddrm ``functions/denoising.py::efficient_generalized_steps`` (Eqs. 7–8 and
12 of the paper), defaults from ``main.py`` (``--eta 0.85 --etaB 1``, η_A = η_C = η) and
``--timesteps 20`` in the README (20 NFEs, ``seq = range(0, 1000, 1000//20)``).

Working variables: σ_t = √(1−ᾱ_t)/√ᾱ_t, x̄_t = x_t/√ᾱ_t, everything in the SVD basis of
A = U S Vᵀ with ȳ = S⁻¹Uᵀy. With x0 = Vᵀ x̂0 (network) and σ_y the model-space noise std, each
spectral component i of v = Vᵀ x̄_{t−1} is

    s_i = 0 (missing):       v_i = x0_i + √(1−η²) σ_{t−1} (Vᵀε)_i + η σ_{t−1} z_i
    s_i σ_{t−1} < σ_y:       v_i = x0_i + √(1−η²) σ_{t−1} ((Uᵀy)_i − s_i x0_i)/σ_y + η σ_{t−1} z_i
    s_i σ_{t−1} > σ_y:       v_i = η_b ȳ_i + (1−η_b) x0_i + √(σ_{t−1}² − η_b² σ_y²/s_i²) z_i

and x_{t−1} = √ᾱ_{t−1} V v (components matching none of the strict inequalities, e.g. every one at
the last step when σ_y = 0, take the "missing" rule, as in the code).

**Thresholded singular values** (``mode``). DDRM's operators zero the singular values below a
threshold (``Deblurring``/``SRConv``: 3e-2) but keep those components among their
``singulars()``; with σ_y > 0 the official update tests ``s_i σ_{t−1} < σ_y``, which a zeroed
s_i passes, so they take the "less noisy than y" rule with ``s_i = 0``: the coefficient
``(Uᵀy)_i/σ_y`` of a direction the truncated operator does not see is injected
(``denoising.py`` L74-75, L79). ``mode="official"`` reproduces that (the components are the
operator's :meth:`~lit_restore.operators.base.LinearOperator.measured`); ``mode="svd"`` treats a
zeroed value as unmeasured (the "missing" rule), as the paper's Eq. 7 reads for s_i = 0. They
differ only for σ_y > 0 on operators with a threshold (deblurring, bicubic SR). The official
``Deblurring`` also pairs its singular values channel-major (``singulars()`` repeats each value
over the 3 channels, L460-461) with V-coordinates ordered pixel-major, and drops a kernel tap
(L412): bugs not reproduced — our operators pair each value with its own vector.

Initialisation (Eq. 12, code ``init_y``): with σ_T at the first visited t,
x_T = V[(ȳ_i 1{s_iσ_T>σ_y} + √(σ_T² − (σ_y/s_i)² 1{s_iσ_T>σ_y}) z_i)/σ_T]. The output is the
last iterate (ᾱ₋₁ = 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_restore.samplers.base import Sampler, SamplingContext


class DDRM(Sampler):
    """DDRM in the operator's SVD basis.

    Args:
        steps: number of timesteps (README: 20).
        eta: η (= η_A = η_C in the code), default 0.85.
        eta_b: η_b (``--etaB``), default 1.
        spacing: respacing rule; ``"ddrm"`` = the official ``range(0, 1000, 1000 // N)``
            (more than N steps when N does not divide 1000).
        mode: ``"svd"`` or ``"official"`` (module docstring; equal for σ_y = 0 and operators
            without a singular-value threshold).
    """

    name = "ddrm"
    needs = frozenset({"svd"})

    def __init__(
        self,
        steps: int = 20,
        eta: float = 0.85,
        eta_b: float = 1.0,
        clip_denoised: bool = False,
        progress: bool = False,
        spacing: str = "ddrm",
        mode: str = "svd",
    ) -> None:
        super().__init__(
            steps=steps, spacing=spacing, eta=eta, clip_denoised=clip_denoised, progress=progress
        )
        if mode not in ("svd", "official"):
            raise ValueError(f"DDRM mode must be 'svd' or 'official', got {mode!r}")
        self.eta_b = float(eta_b)
        self.mode = mode

    def _spectral(self, ctx: SamplingContext):
        op = ctx.operator
        s = op.singulars()
        pos = s > 0
        s_safe = torch.where(pos, s, torch.ones_like(s))
        uty = op.Ut(ctx.y)
        ybar = torch.where(pos, uty / s_safe, torch.zeros_like(uty))
        return s, pos, s_safe, uty, ybar

    @staticmethod
    def _sigma(ctx: SamplingContext, t: int, like: Tensor) -> Tensor:
        a = ctx.alpha_bar(t, like).flatten()[0]
        return (1 - a).sqrt() / a.sqrt()

    def init(self, ctx: SamplingContext) -> Tensor:
        z = ctx.randn()
        s, pos, s_safe, _, ybar = self._spectral(ctx)
        sig_T = self._sigma(ctx, self.timesteps(ctx.num_timesteps)[0], z)
        large = pos & (s * sig_T > ctx.sigma_y)
        inv = torch.where(large, ctx.sigma_y / s_safe, torch.zeros_like(s))
        remaining = (sig_T**2 - inv**2).clamp_min(0).sqrt()
        v = (
            torch.where(large, ybar, torch.zeros_like(ybar)) + remaining * ctx.operator.Vt(z)
        ) / sig_T
        return ctx.operator.V(v).view(ctx.shape)

    def step(self, ctx: SamplingContext, x: Tensor, t: int, t_next: int) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            op, eta, eta_b, sy = ctx.operator, self.eta, self.eta_b, ctx.sigma_y
            eps = ctx.eps(x, t)
            x0 = ctx.x0_from_eps(x, t, eps)
            if self.clip_denoised:
                x0 = x0.clamp(-1, 1)
            s, pos, s_safe, uty, ybar = self._spectral(ctx)
            sig_n = self._sigma(ctx, t_next, x)
            c0 = op.Vt(x0)
            z = op.Vt(ctx.randn(x))
            before = pos & (s * sig_n > sy)  # noisier than y
            measured = op.measured() if self.mode == "official" else pos
            after = measured & (s * sig_n < sy)  # less noisy than y
            tilde = (1 - eta**2) ** 0.5 * sig_n
            v = c0 + tilde * op.Vt(eps) + eta * sig_n * z  # missing
            if sy > 0:
                v_after = c0 + tilde * (uty - s * c0) / sy + eta * sig_n * z
                v = torch.where(after, v_after, v)
            diff = (sig_n**2 - sy**2 / s_safe**2 * eta_b**2).clamp_min(0).sqrt()
            v_before = eta_b * ybar + (1 - eta_b) * c0 + diff * z
            v = torch.where(before, v_before, v)
            a_next = ctx.alpha_bar(t_next, x)
            x_next = a_next.sqrt() * op.V(v).view_as(x)
        return x_next, x0

    def hparams(self) -> dict:
        return {**super().hparams(), "eta_b": self.eta_b, "mode": self.mode}
