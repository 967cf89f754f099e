"""ReSample — hard data consistency with stochastic resampling (Song et al., ICLR 2024,
arXiv 2307.08123, Algorithm 1 and Sec. 3.2; soominkwon/resample
``ldm/models/diffusion/ddim.py::DDIMSampler.resample_sampling``).

A DDIM loop on latents; at chosen steps the Tweedie estimate is replaced by a measurement-
consistent one, then the latent is resampled around it:

1. ``ẑ0 = (z_t − √(1−ᾱ_t) ε_θ) / √ᾱ_t``, ``z' = DDIM(η)`` step to ``t'`` (the next timestep).
2. At a resampling step, hard data consistency starting from ``ẑ0``:
   *pixel stage* (the middle third of the chain) ``x* = argmin_x ‖y − A x‖²`` from ``D(ẑ0)``
   (AdamW, lr 1e-2, ≤ 2000 iterations, stop at MSE < ε²), ``ẑ0(y) = E(x*)``;
   *latent stage* (the last third) ``ẑ0(y) = argmin_z ‖y − A D(z)‖²`` from ``ẑ0`` (AdamW, lr
   5e-3, ≤ 500 iterations, stop at MSE < ε² or when the loss exceeds its value 200 iterations
   earlier).
3. Stochastic resampling (paper Eq. 10): with ``ā = ᾱ_{t'}`` and
   ``σ² = γ (1−ā)/(1−ᾱ_t) (1 − ᾱ_t/ā)`` (official γ = 40),
   ``z_{t'} ~ N((σ² √ā ẑ0(y) + (1−ā) z') / (σ² + 1 − ā), σ²(1−ā)/(σ² + 1 − ā) I)``.
4. After the loop, one latent optimisation of ``z_0`` (as the official code), then ``D``.

Resampling steps, as the official loop: every ``every``-th step (index counted down from N−1)
with 0 < index ≤ N − N//3; the pixel stage for index ≥ N//3, the latent stage below.

**Deviations from the official loop** (stated, not hidden): its per-step latent DPS correction
(``measurement_cond_fn`` with step ½ᾱ_t) and its 5-step DDIM look-ahead before each
resampling are not run (the paper's Algorithm 1 has neither); its ``pseudo_x0`` squares
√(1−ᾱ_t) (Tweedie has no square), we use Tweedie; losses and stopping rules are per image (the
official ones are batch means — equal at batch 1, its protocol), so a result never depends on
its batch mates.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_restore.samplers.base import SamplingContext
from lit_restore.samplers.latent import LatentSampler


def _per_image_mse(y: Tensor, pred: Tensor) -> Tensor:
    return (y - pred).flatten(1).pow(2).mean(1)


def _optimise(
    start: Tensor, loss_fn, lr: float, iters: int, tol: float, patience: int | None
) -> Tensor:
    """AdamW on ``start`` minimising the per-image losses ``loss_fn(v) -> [B]``; an image stops
    (its value frozen) once its loss is below ``tol²`` or, with ``patience``, exceeds its value
    ``patience`` iterations earlier. AdamW acts elementwise, so images never interact."""
    v = start.detach().clone().requires_grad_(True)
    opt = torch.optim.AdamW([v], lr=lr)
    active = torch.ones(v.shape[0], dtype=torch.bool, device=v.device)
    history: list[Tensor] = []
    mask_shape = (-1, *[1] * (v.dim() - 1))
    for it in range(iters):
        opt.zero_grad()
        with torch.enable_grad():
            loss = loss_fn(v)
            loss.sum().backward()
        current = loss.detach()
        before = v.detach().clone()
        opt.step()
        with torch.no_grad():
            v.copy_(torch.where(active.view(mask_shape), v, before))
        # the official rules, checked after the step as there
        if patience is not None:
            history.append(current)
            if it >= patience:
                active &= ~(history.pop(0) < current)
        active &= ~(current < tol**2)
        if not active.any():
            break
    return v.detach()


class ReSample(LatentSampler):
    """ReSample on a latent prior.

    Args:
        steps: DDIM steps N (official 500: ``sample_condition.py --ddim_steps``;
            ``posterior_sampler`` runs ``resample_sampling`` on that DDIM grid).
        eta: DDIM η (official 0).
        gamma: γ of the resampling variance (official 40).
        every: resample every ``every``-th step (official 10).
        pixel_stage: run the pixel-space optimisation in the middle third (official); False
            uses latent optimisation at every resampling step.
        pixel_iters, pixel_lr, latent_iters, latent_lr, tol, patience: the optimisers (official
            2000, 1e-2, 500, 5e-3, 1e-3, 200).
    """

    name = "resample"

    def __init__(
        self,
        steps: int = 500,
        spacing: str = "uniform",
        eta: float = 0.0,
        gamma: float = 40.0,
        every: int = 10,
        pixel_stage: bool = True,
        pixel_iters: int = 2000,
        pixel_lr: float = 1e-2,
        latent_iters: int = 500,
        latent_lr: float = 5e-3,
        tol: float = 1e-3,
        patience: int = 200,
        progress: bool = False,
    ) -> None:
        super().__init__(
            steps=steps, spacing=spacing, eta=eta, clip_denoised=False, progress=progress
        )
        self.gamma = float(gamma)
        self.every = int(every)
        self.pixel_stage = pixel_stage
        self.pixel_iters, self.pixel_lr = int(pixel_iters), float(pixel_lr)
        self.latent_iters, self.latent_lr = int(latent_iters), float(latent_lr)
        self.tol, self.patience = float(tol), int(patience)

    # ------------------------------------------------------------ data consistency
    def pixel_consistency(self, ctx: SamplingContext, z0: Tensor) -> Tensor:
        """``E(argmin_x ‖y − A x‖²)`` started at ``D(ẑ0)``."""
        pixel, prior = ctx.operator.pixel, ctx.operator.prior
        with torch.no_grad():
            x_start = prior.decode(z0)
        x = _optimise(
            x_start,
            lambda v: _per_image_mse(ctx.y, pixel.A(v)),
            self.pixel_lr,
            self.pixel_iters,
            self.tol,
            None,
        )
        with torch.no_grad():
            return prior.encode(x)

    def latent_consistency(self, ctx: SamplingContext, z0: Tensor) -> Tensor:
        """``argmin_z ‖y − A D(z)‖²`` started at ``ẑ0``."""
        return _optimise(
            z0,
            lambda v: _per_image_mse(ctx.y, ctx.operator.A(v)),
            self.latent_lr,
            self.latent_iters,
            self.tol,
            self.patience,
        )

    def resample(self, ctx: SamplingContext, z0_y: Tensor, z_prime: Tensor, t: int, t_next: int):
        """Stochastic resampling (paper Eq. 10) of ``z'`` around ``ẑ0(y)`` at ``t_next``."""
        a_t = ctx.alpha_bar(t, z_prime)
        a = ctx.alpha_bar(t_next, z_prime)
        var = self.gamma * (1 - a) / (1 - a_t) * (1 - a_t / a)
        mean = (var * a.sqrt() * z0_y + (1 - a) * z_prime) / (var + 1 - a)
        return mean + (var * (1 - a) / (var + 1 - a)).sqrt() * ctx.randn(z_prime)

    # ------------------------------------------------------------------- the loop
    def step(self, ctx: SamplingContext, x: Tensor, t: int, t_next: int) -> tuple[Tensor, Tensor]:
        pairs = ctx.state.setdefault("pairs", self.schedule(ctx.num_timesteps))
        n = len(pairs)
        index = n - 1 - pairs.index((t, t_next))
        with torch.no_grad():
            z0 = self.denoise(ctx, x, t)
            z_prime = self.transition(ctx, x, z0, t, t_next)
        if index % self.every or not 0 < index <= n - n // 3 or t_next < 0:
            return z_prime, z0
        if self.pixel_stage and index >= n // 3:
            z0_y = self.pixel_consistency(ctx, z0)
        else:
            z0_y = self.latent_consistency(ctx, z0)
        with torch.no_grad():
            return self.resample(ctx, z0_y, z_prime, t, t_next), z0_y

    def finalize(self, ctx: SamplingContext, x: Tensor) -> Tensor:
        return self.latent_consistency(ctx, x)

    def hparams(self) -> dict:
        return {
            **super().hparams(),
            "gamma": self.gamma,
            "every": self.every,
            "pixel_stage": self.pixel_stage,
        }
