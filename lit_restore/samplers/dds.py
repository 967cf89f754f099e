"""DDS — Decomposed Diffusion Sampler (Chung, Lee & Ye, ICLR 2024, arXiv 2303.05754,
Algorithm 1). Source: HJ-harry/DDS ``solver_2d.py::Diffusion.dds`` and ``utils.py::CG``
(defaults from ``main.py``: ``--T_sampling 50 --eta 0.85 --CG_iter 5 --gamma 1.0``).

The data-consistency step acts on the denoised estimate only (the "decomposition": the Tweedie
x̂0 lies near the clean manifold, so a few conjugate-gradient steps in the Krylov subspace of
AᵀA keep it there without backpropagating through the network). Per step t → t':

    x̂0  = Tweedie(x_t, ε_θ)                               (not clamped, as the code)
    σ_y = 0:  x̃0 = CG_M(AᵀA x = Aᵀy, start x̂0)                           (M = ``cg_iter``)
    σ_y > 0:  x̃0 = CG_M((I + γ AᵀA) x = x̂0 + γ Aᵀy, start x̂0)
              = M CG steps on argmin_x ½‖x − x̂0‖² + (γ/2)‖y − A x‖²
    x_t' = √ᾱ_t' x̃0 + √(1−ᾱ_t') (η z + √(1−η²) ε_θ)         (DDIM with the DDNM-style η)

CG runs exactly ``cg_iter`` iterations per image unless that image's residual drops below the
code's ``eps = 1e-5`` (absolute ‖r‖); the code takes the residual of the whole batch, ours of
each image (equal at batch size 1, and batch-independent). Like the code, the step whose next
timestep is 0 returns x̃0 itself (``if j != 0 … else: xt_next = x0_t_hat``), and the final
step t = 0 → −1 denoises that once more and applies CG again (ᾱ_{−1} = 1).

The selection σ_y = 0 / σ_y > 0 follows the code's ``--sigma_y`` switch (``main.py``); γ does not
depend on σ_y. Only A and Aᵀ are used, so DDS runs on every operator.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_restore.operators.cg import conjugate_gradient
from lit_restore.samplers.base import Sampler, SamplingContext


class DDS(Sampler):
    """Decomposed Diffusion Sampler.

    Args:
        steps: ``T_sampling`` (50).
        eta: η of the DDIM step (0.85).
        cg_iter: conjugate-gradient iterations per step (``CG_iter``, 5).
        gamma: γ of the noisy objective (``--gamma``, 1.0), used when σ_y > 0.
        cg_atol: a per-image absolute residual below which CG stops (the code's ``eps``, 1e-5).
    """

    name = "dds"
    needs = frozenset({"linear"})  # A and its exact adjoint Aᵀ (conjugate gradients)

    def __init__(
        self,
        steps: int = 50,
        eta: float = 0.85,
        cg_iter: int = 5,
        gamma: float = 1.0,
        cg_atol: float = 1e-5,
        spacing: str = "uniform",
        progress: bool = False,
    ) -> None:
        super().__init__(
            steps=steps, spacing=spacing, eta=eta, clip_denoised=False, progress=progress
        )
        if cg_iter < 1:
            raise ValueError(f"DDS cg_iter must be >= 1, got {cg_iter}")
        if not 0 <= eta <= 1:
            raise ValueError(f"DDS eta must be in [0, 1], got {eta}")
        self.cg_iter = int(cg_iter)
        self.gamma = float(gamma)
        self.cg_atol = float(cg_atol)

    def data_consistency(self, ctx: SamplingContext, x0: Tensor) -> Tensor:
        """``cg_iter`` CG steps from x̂0 on the normal equations (module docstring)."""
        op, y = ctx.operator, ctx.y
        at_y = op.adjoint(y).view_as(x0)
        if ctx.sigma_y == 0:

            def matvec(v: Tensor) -> Tensor:
                return op.adjoint(op.A(v)).view_as(v)

            b = at_y
        else:

            def matvec(v: Tensor) -> Tensor:
                return v + self.gamma * op.adjoint(op.A(v)).view_as(v)

            b = x0 + self.gamma * at_y
        return conjugate_gradient(
            matvec, b, max_iter=self.cg_iter, tol=0.0, x_init=x0, atol=self.cg_atol,
            per_image_stop=True,
        )  # fmt: skip

    def step(self, ctx: SamplingContext, x: Tensor, t: int, t_next: int) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            eps = ctx.eps(x, t)
            x0 = self.data_consistency(ctx, ctx.x0_from_eps(x, t, eps))
            if t_next == 0:  # the code's final-step rule (module docstring)
                return x0, x0
            a_next = ctx.alpha_bar(t_next, x)
            c1 = (1 - a_next).sqrt() * self.eta
            c2 = (1 - a_next).sqrt() * (1 - self.eta**2) ** 0.5
            x_next = a_next.sqrt() * x0 + c1 * ctx.randn(x) + c2 * eps
        return x_next, x0

    def hparams(self) -> dict:
        return {**super().hparams(), "cg_iter": self.cg_iter, "gamma": self.gamma}
