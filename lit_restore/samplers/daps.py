"""DAPS — Decoupled Annealing Posterior Sampling (Zhang, Chu, Berner, Meng, Anandkumar & Song,
"Improving Diffusion Inverse Problem Solving with Decoupled Noise Annealing", CVPR 2025,
arXiv 2407.01521, Algorithm 1). Source: zhangbingliang2019/DAPS @ 098df6b ``sampler.py::DAPS``,
``cores/scheduler.py`` (``EDMScheduler``, ``DiffusionPFODE``), ``cores/mcmc.py::MCMCSampler``,
``configs/sampler/edm_daps.yaml`` and ``configs/task/*.yaml``.

The chain runs over an EDM noise-level schedule σ_0 = σ_max > σ_1 > … > σ_{N−1} > σ_N = 0
(``annealing_steps`` = N, ``(σ_max^{1/ρ} + r(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ`` for r in
linspace(0, 1, N+1) without its last point, then 0; ρ = 7), in the EDM scaling x = x0 + σ n,
starting from x = σ_max z. At each level i:

1. **x̂0 by the probability-flow ODE** ``dx/dσ = (x − D(x, σ))/σ``, ``ode_steps`` Euler steps over
   the EDM grid from σ_i down to ``ode_sigma_min`` (ρ = 7; the official ``DiffusionPFODE`` with
   ``solver='euler'``, whose last point is σ = 0.01, not 0). D is the prior's denoiser at
   continuous σ, :func:`lit_restore.diffusion.sigma.denoise_at_sigma` (the official code's
   ``VPPrecond``; the σ → timestep rule is ``timestep_rule``).
2. **Langevin MCMC on x0** (``mcmc_steps`` steps from x̂0) targeting
   ``p(x0 | x_i, y) ∝ exp(−‖y − A(x0)‖²/τ² − ‖x0 − x̂0‖²/(2σ_i²))``: the code's score is
   ``−∇‖A(x0) − y‖²/τ² + (x_i − x0)/σ_i² + (x̂0 − x_i)/σ_i²`` (``prior_solver: gaussian``: r_t = σ_i,
   the paper's Eq. 8 with its Gaussian approximation of p(x0 | x_t)), the step
   ``x0 ← x0 + η_k s + √(2η_k) ε`` (``mc_algo: langevin``) or the damped Hamiltonian step
   ``v ← m v + √η_k s + √(2(1−m)) ε, x0 ← x0 + √η_k v`` (``hmc``, v₀ ~ N(0, I)), with
   ``η_k = lr (1 + (i/(N+1))(lr_min_ratio − 1))`` (``get_lr``: the code divides by N + 1, the
   scheduler's length including its final 0).
3. ``x_{i+1} = x0 + σ_{i+1} ε`` (the code draws ε at the last level too, where σ_N = 0).

The result is x after the last level (= the last x0). Note the likelihood: the code's data term is
``‖A(x0) − y‖²/τ²`` (no ½), i.e. Gaussian noise of variance τ²/2; the published τ = 0.01 is a
step-size choice, far below the measurement noise (σ = 0.05 on [−1, 1]). ``tau=None`` sets
τ = √2·σ_y, the exact likelihood of the run's noise level (used by the analytic-posterior test).

NFE per image = annealing_steps · ode_steps (DAPS-1K: 200 · 5 = 1000); the Langevin steps use the
operator only (gradient by autograd through ``A``), so any differentiable operator — JPEG, phase
retrieval, the nonlinear blur — serves; no ``Aᵀ``, SVD or pseudo-inverse is needed.

**Reuse for a latent variant.** The prior enters only through :meth:`DAPS.denoiser` (x, σ) → x̂0
and the measurement only through :meth:`DAPS.data_loss` (x0 → per-image ‖A(x0) − y‖²); the chain
state is whatever those act on. The official ``LatentDAPS`` is this loop with the latent prior's
denoiser and ``data_loss`` through the decoder (``forward_operator.LatentWrapper``: ‖A(𝒟(z)) − y‖²)
and a decoded result: a subclass overrides those two methods, :meth:`Sampler.image_shape` (the
latent shape) and :meth:`Sampler.finalize` (decode).

Differences from the official loop, each on purpose: every draw comes from the run's per-image
generators (the loop's ``randn``), so an image's result does not depend on its batch mates; the
official early stop that returns zeros for the *whole batch* when any value is NaN is not copied
(a NaN stays in its own image); ``prior_solver`` other than ``gaussian`` and ``mc_algo: mh`` are
not implemented (no published configuration uses them).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lit_restore.diffusion.sigma import TIMESTEP_RULES, denoise_at_sigma, sigma_grid_poly
from lit_restore.samplers.base import Sampler, SamplingContext

#: ``mc_algo`` values of ``cores/mcmc.py`` implemented here
MC_ALGOS = ("langevin", "hmc")


class DAPS(Sampler):
    """DAPS in pixel space (module docstring).

    Args:
        annealing_steps: N, the number of noise levels (``annealing_scheduler_config.num_steps``,
            200 for DAPS-1K).
        ode_steps: Euler steps of the probability-flow ODE per level (network evaluations per
            level; ``diffusion_scheduler_config.num_steps``, 5 for DAPS-1K).
        mcmc_steps: Langevin/HMC steps per level (``mcmc_sampler_config.num_steps``).
        lr: the MCMC step size η at the first level (``lr``).
        lr_min_ratio: η decays linearly from ``lr`` towards ``lr·lr_min_ratio`` (reached at
            i = N + 1, one level past the last).
        tau: τ of the data term ‖A(x0) − y‖²/τ²; ``None``: √2·σ_y (the exact likelihood).
        mc_algo: ``"langevin"`` or ``"hmc"`` (damped Hamiltonian, ``momentum`` m).
        momentum: m of the HMC step.
        sigma_max, sigma_min, rho: the annealing schedule (100, 0.1, 7).
        ode_sigma_min: the noise level the ODE stops at (0.01).
        timestep_rule: how a continuous σ maps to the prior's timestep,
            :data:`~lit_restore.diffusion.sigma.TIMESTEP_RULES` (``"vp_sde"``: the official code).
    """

    name = "daps"
    needs = frozenset()  # A only: the data gradient is autograd through A

    def __init__(
        self,
        annealing_steps: int = 200,
        ode_steps: int = 5,
        mcmc_steps: int = 100,
        lr: float = 1e-4,
        lr_min_ratio: float = 0.01,
        tau: float | None = 0.01,
        mc_algo: str = "langevin",
        momentum: float = 0.9,
        sigma_max: float = 100.0,
        sigma_min: float = 0.1,
        ode_sigma_min: float = 0.01,
        rho: int = 7,
        timestep_rule: str = "vp_sde",
        progress: bool = False,
    ) -> None:
        super().__init__(
            steps=annealing_steps, spacing="leading", eta=0.0, clip_denoised=False,
            progress=progress,
        )  # fmt: skip
        if mc_algo not in MC_ALGOS:
            raise ValueError(f"DAPS mc_algo must be one of {MC_ALGOS}, got {mc_algo!r}")
        if timestep_rule not in TIMESTEP_RULES:
            raise ValueError(f"DAPS timestep_rule must be one of {TIMESTEP_RULES}")
        if ode_steps < 1 or mcmc_steps < 0:
            raise ValueError("DAPS needs ode_steps >= 1 and mcmc_steps >= 0")
        if tau is not None and tau <= 0:
            raise ValueError("DAPS tau must be > 0 (or None for √2·σ_y)")
        self.ode_steps = int(ode_steps)
        self.mcmc_steps = int(mcmc_steps)
        self.lr = float(lr)
        self.lr_min_ratio = float(lr_min_ratio)
        self.tau = None if tau is None else float(tau)
        self.mc_algo = mc_algo
        self.momentum = float(momentum)
        self.sigma_max = float(sigma_max)
        self.sigma_min = float(sigma_min)
        self.ode_sigma_min = float(ode_sigma_min)
        self.rho = int(rho)
        self.timestep_rule = timestep_rule

    # ------------------------------------------------------------ schedule
    def timesteps(self, num_timesteps: int = 1000) -> list[int]:
        """The loop's step labels: annealing levels counted down, N−1 … 0 (level i of the
        module docstring is label N−1−i; the loop's final −1 is σ_N = 0)."""
        return list(range(self.steps - 1, -1, -1))

    def sigma_levels(self) -> Tensor:
        """σ_0 … σ_N (float32, σ_N = 0): the official ``EDMScheduler.discretize`` — the poly-ρ
        grid of N+1 points in float64 without its last, cast to float32, then 0."""
        grid = sigma_grid_poly(self.sigma_max, self.sigma_min, self.steps + 1, self.rho)[:-1]
        return torch.cat([torch.tensor(grid, dtype=torch.float64).float(), torch.zeros(1)])

    def ode_grid(self, sigma: Tensor) -> Tensor:
        """The Euler grid from ``sigma`` (a float32 level) to ``ode_sigma_min``, ode_steps + 1
        points, in float32 arithmetic as the official ODE scheduler computes it."""
        return torch.stack(sigma_grid_poly(sigma, self.ode_sigma_min, self.ode_steps + 1, self.rho))

    # --------------------------------------------------- injected pieces
    def denoiser(self, ctx: SamplingContext, x: Tensor, sigma: Tensor) -> Tensor:
        """D(x, σ): the prior's x̂0 at noise level σ (one network evaluation)."""
        return denoise_at_sigma(ctx.eps_at, x, sigma, ctx.prior.alphas_cumprod, self.timestep_rule)

    def data_loss(self, ctx: SamplingContext, x0: Tensor) -> Tensor:
        """Per-image ‖A(x0) − y‖² (the code's ``Operator.loss``)."""
        return (ctx.operator.A(x0) - ctx.y).pow(2).flatten(1).sum(-1)

    # ------------------------------------------------------------ pieces
    def ode(self, ctx: SamplingContext, x: Tensor, sigma: Tensor) -> Tensor:
        """x̂0: Euler on the probability-flow ODE from σ to ``ode_sigma_min``."""
        grid = self.ode_grid(sigma.to(x.dtype)).to(x.device)
        for k in range(self.ode_steps):
            s = grid[k]
            d = self.denoiser(ctx, x, s)
            # dx/dσ = σ·(x − D)/σ² (EDM Eq. 4 with s = 1), stepped from σ_k to σ_{k+1}
            x = x + (grid[k] - grid[k + 1]) * (s * ((d - x) / s**2))
        return x

    def data_grad(self, ctx: SamplingContext, x0: Tensor) -> Tensor:
        """∇_{x0} ‖A(x0) − y‖² per image (autograd through A; the sum keeps images apart)."""
        with torch.enable_grad():
            xi = x0.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.data_loss(ctx, xi).sum(), xi)
        return g

    def mcmc(self, ctx: SamplingContext, x_t: Tensor, x0hat: Tensor, sigma: Tensor, ratio: float):
        """Langevin (or HMC) on p(x0 | x_t, y) from x̂0 (module docstring, step 2)."""
        lr = (1.0 + ratio * (self.lr_min_ratio - 1.0)) * self.lr
        tau = self.tau if self.tau is not None else math.sqrt(2.0) * ctx.sigma_y
        if tau <= 0:
            raise ValueError("DAPS(tau=None) needs σ_y > 0 (τ = √2·σ_y)")
        prior_score = (x0hat - x_t) / sigma**2
        x = x0hat.clone()
        velocity = ctx.randn(x) if self.mc_algo == "hmc" else None
        for _ in range(self.mcmc_steps):
            score = -self.data_grad(ctx, x) / tau**2 + (x_t - x) / sigma**2 + prior_score
            eps = ctx.randn(x)
            if velocity is None:
                x = x + lr * score + math.sqrt(2 * lr) * eps
            else:
                step = math.sqrt(lr)
                velocity = (
                    self.momentum * velocity + step * score
                    + math.sqrt(2 * (1 - self.momentum)) * eps
                )  # fmt: skip
                x = x + velocity * step
        return x

    # ------------------------------------------------------------- hooks
    def init(self, ctx: SamplingContext) -> Tensor:
        ctx.state["sigmas"] = self.sigma_levels().to(ctx.device)
        return ctx.randn() * self.sigma_max

    def step(self, ctx: SamplingContext, x: Tensor, t: int, t_next: int) -> tuple[Tensor, Tensor]:
        sigmas = ctx.state["sigmas"]
        i = self.steps - 1 - t
        sigma = sigmas[i]
        with torch.no_grad():
            x0hat = self.ode(ctx, x, sigma)
            x0y = self.mcmc(ctx, x, x0hat, sigma, i / (self.steps + 1))
            x_next = x0y + ctx.randn(x0y) * sigmas[i + 1]
        return x_next, x0y

    def hparams(self) -> dict:
        return {
            **super().hparams(),
            "annealing_steps": self.steps,
            "ode_steps": self.ode_steps,
            "mcmc_steps": self.mcmc_steps,
            "lr": self.lr,
            "lr_min_ratio": self.lr_min_ratio,
            "tau": self.tau if self.tau is not None else "sqrt2_sigma_y",  # loggers take no None
            "mc_algo": self.mc_algo,
            "momentum": self.momentum,
            "sigma_max": self.sigma_max,
            "sigma_min": self.sigma_min,
            "ode_sigma_min": self.ode_sigma_min,
            "timestep_rule": self.timestep_rule,
        }
