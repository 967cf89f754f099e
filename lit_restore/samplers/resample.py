"""ReSample — hard data consistency with stochastic resampling (Song et al., ICLR 2024,
arXiv 2307.08123, Algorithm 1 and Sec. 3.2; soominkwon/resample
``ldm/models/diffusion/ddim.py::DDIMSampler.resample_sampling``, settings from
``sample_condition.py`` and ``configs/tasks/*_config.yaml``).

A DDIM loop on latents; at chosen steps the estimate ``ẑ0`` is replaced by a measurement-
consistent one, then the latent is resampled around it. Two modes:

``mode="official"`` (default; the loop the published numbers came from), per step ``t → t'``:

1. ``ε = ε_θ(z_t, t)``, Tweedie ``ẑ0 = (z_t − √(1−ᾱ_t) ε)/√ᾱ_t``, ``z' = DDIM(η)`` step to
   ``t'`` from ``(ẑ0, ε)``.
2. Latent DPS on every step (``measurement_cond_fn``, ``condition_methods.py::
   PosteriorSampling`` with ``scale = a_t·0.5``): ``z' ← z' − ½ᾱ_t ∇_{z_t} ‖y − A D(z̃0)‖``
   (non-squared norm) with the code's ``pseudo_x0`` ``z̃0 = (z_t − (1−ᾱ_t) ε)/√ᾱ_t`` — its
   √(1−ᾱ_t) squared, not Tweedie's.
3. At a resampling step, a look-ahead of ``min(5, index)`` DDIM steps from ``z'`` (the inner
   ``for k`` loop, ``inter_timesteps = 5``); its last ``pseudo_x0`` is the estimate made
   consistent. The official inner loop evaluates ``ε_θ`` at the timestep of its input but reads
   its DDIM coefficients at ``index_ = total_steps − k − 1``, one grid point earlier: look-ahead
   step j (input at ``t_{i−j−1}``) uses ``ᾱ_{t_{i−j}} → ᾱ_{t_{i−j−1}}``. Reproduced as run.
4. Hard data consistency from that estimate ``ẑ0``: *pixel stage* (index ≥ N//3)
   ``x* = argmin_x ‖y − A x‖²`` from ``D(ẑ0)`` (AdamW, lr 1e-2, ≤ 2000 iterations, stop at
   MSE < ε²), ``ẑ0(y) = E(x*)``; *latent stage* (below) ``ẑ0(y) = argmin_z ‖y − A D(z)‖²`` from
   ``ẑ0`` (AdamW, lr 5e-3, ≤ 500 iterations, stop at MSE < ε² or when the loss exceeds its value
   200 iterations earlier).
5. Stochastic resampling (paper Eq. 10) of the DPS-corrected ``z'``: with ``ā = ᾱ_{t'}`` and
   ``σ² = γ (1−ā)/(1−ᾱ_t) (1 − ᾱ_t/ā)`` (γ = 40),
   ``z_{t'} ~ N((σ² √ā ẑ0(y) + (1−ā) z') / (σ² + 1 − ā), σ²(1−ā)/(σ² + 1 − ā) I)``.
6. After the loop, one latent optimisation of ``z_0``, then ``D``.

``mode="paper"`` is the paper's Algorithm 1: no per-step DPS correction, no look-ahead, and
Tweedie's ``ẑ0`` (of the current step) made consistent and resampled around the plain DDIM
``z'``. It is kept as a named option because the official extras are not in the paper (and the
squared √(1−ᾱ_t) of ``pseudo_x0`` is not Tweedie's formula), so the two answer different
questions: "what did the authors run" and "what does the method as published do".

Both modes: resampling at every ``every``-th step (index counted down from N−1, official 10)
with 0 < index ≤ N − N//3, the official stage split, optimisers and final optimisation; the
grid is CompVis's DDIM grid (``spacing="ldm"``: ``range(0, T, T//N) + 1``, the last step to
ᾱ_0; :mod:`lit_restore.diffusion.respacing`).

**Batch independence** (both modes). The official losses are batch means (``MSELoss``, the
batch's ``torch.linalg.norm``) and its early stops end the whole batch's optimisation; here every
loss, gradient norm and stopping rule is per image, so a result never depends on its batch mates.
At batch size 1 — the official protocol (``sample_condition.py``: ``batch_size=1``) — the two are
the same computation; ``tests/test_parity.py`` compares there.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_restore.samplers.base import SamplingContext
from lit_restore.samplers.dps import PixelFidelity
from lit_restore.samplers.latent import LatentSampler

MODES = ("official", "paper")


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
        mode: ``"official"`` (soominkwon/resample ``resample_sampling`` as run: per-step latent
            DPS, look-ahead, ``pseudo_x0``) or ``"paper"`` (Algorithm 1); module docstring.
        steps: DDIM steps N (official 500: ``sample_condition.py --ddim_steps``).
        spacing: the grid; ``"ldm"`` (official: CompVis ``make_ddim_timesteps``, the chain ends
            at ᾱ_0).
        eta: DDIM η (official 0).
        gamma: γ of the resampling variance (official 40).
        every: resample every ``every``-th step (official 10).
        pixel_stage: run the pixel-space optimisation in the middle third (official); False
            uses latent optimisation at every resampling step.
        pixel_iters, pixel_lr, latent_iters, latent_lr, tol, patience: the optimisers (official
            2000, 1e-2, 500, 5e-3, 1e-3, 200).
        lookahead: DDIM steps run before each resampling in official mode (official 5).
        dps_scale: the per-step DPS step is ``dps_scale·ᾱ_t`` in official mode (official 0.5).
    """

    name = "resample"

    def __init__(
        self,
        mode: str = "official",
        steps: int = 500,
        spacing: str = "ldm",
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
        lookahead: int = 5,
        dps_scale: float = 0.5,
        progress: bool = False,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"ReSample mode must be one of {MODES}, got {mode!r}")
        super().__init__(
            steps=steps, spacing=spacing, eta=eta, clip_denoised=False, progress=progress
        )
        self.mode = mode
        self.gamma = float(gamma)
        self.every = int(every)
        self.pixel_stage = pixel_stage
        self.pixel_iters, self.pixel_lr = int(pixel_iters), float(pixel_lr)
        self.latent_iters, self.latent_lr = int(latent_iters), float(latent_lr)
        self.tol, self.patience = float(tol), int(patience)
        self.lookahead = int(lookahead)
        self.dps_scale = float(dps_scale)

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

    # ------------------------------------------------------- the official extras
    @staticmethod
    def pseudo_x0(ctx: SamplingContext, z: Tensor, t: int, eps: Tensor) -> Tensor:
        """The official ``pseudo_x0`` ``(z − (1−ᾱ_t) ε)/√ᾱ_t`` (``p_sample_ddim``; Tweedie's
        formula has √(1−ᾱ_t) where this has its square)."""
        a = ctx.alpha_bar(t, z)
        return (z - (1 - a) * eps) / a.sqrt()

    def guided_step(
        self, ctx: SamplingContext, x: Tensor, t: int, t_next: int
    ) -> tuple[Tensor, Tensor]:
        """The DDIM step plus the official per-step latent DPS correction (module docstring, 2):
        ``z' − dps_scale·ᾱ_t ∇_{z_t} ‖y − A D(pseudo_x0)‖`` per image; returns ``(z', ẑ0)``."""
        with torch.enable_grad():
            z = x.detach().requires_grad_(True)
            eps = ctx.eps(z, t)
            # DPS's per-image residual norm (the clamp keeps the gradient finite at r = 0)
            norm = PixelFidelity()(ctx, self.pseudo_x0(ctx, z, t, eps), t).clamp_min(1e-30).sqrt()
            (grad,) = torch.autograd.grad(norm.sum(), z)
        with torch.no_grad():
            eps = eps.detach()
            z0 = ctx.x0_from_eps(x, t, eps)
            z_prime = self.transition(ctx, x, z0, t, t_next, eps=eps)
            return z_prime - self.dps_scale * ctx.alpha_bar(t, x) * grad, z0

    def look_ahead(
        self, ctx: SamplingContext, z: Tensor, pairs: list[tuple[int, int]], index: int
    ) -> Tensor:
        """The official look-ahead from ``z`` (at the grid point after ``index``): ``min(L,
        index)`` DDIM steps, step j with ε_θ at its input's timestep and the coefficients of the
        pair one grid point earlier (module docstring, 3); returns the last ``pseudo_x0``."""
        n = len(pairs)
        z0 = z
        with torch.no_grad():
            for j in range(min(self.lookahead, index)):
                t_coef, t_input = pairs[n - 1 - (index - j)]
                eps = ctx.eps(z, t_input)
                z0 = self.pseudo_x0(ctx, z, t_coef, eps)
                tweedie = ctx.x0_from_eps(z, t_coef, eps)
                z = self.transition(ctx, z, tweedie, t_coef, t_input, eps=eps)
        return z0

    # ------------------------------------------------------------------- the loop
    def resamples_at(self, index: int, n: int) -> bool:
        """Whether the step with (count-down) ``index`` of ``n`` resamples (official rule)."""
        return index % self.every == 0 and 0 < index <= n - n // 3

    def step(self, ctx: SamplingContext, x: Tensor, t: int, t_next: int) -> tuple[Tensor, Tensor]:
        pairs = ctx.state.setdefault("pairs", self.schedule(ctx.num_timesteps))
        n = len(pairs)
        index = n - 1 - pairs.index((t, t_next))
        if self.mode == "official":
            z_prime, z0 = self.guided_step(ctx, x, t, t_next)
        else:
            with torch.no_grad():
                z0 = self.denoise(ctx, x, t)
                z_prime = self.transition(ctx, x, z0, t, t_next)
        if not self.resamples_at(index, n):
            return z_prime, z0
        if self.mode == "official":
            z0 = self.look_ahead(ctx, z_prime, pairs, index)
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
            "mode": self.mode,
            "gamma": self.gamma,
            "every": self.every,
            "pixel_stage": self.pixel_stage,
        }
