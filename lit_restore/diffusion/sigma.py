"""Continuous noise levels σ of a discrete VP chain: the EDM view of an ε-prior.

Dividing a VP sample ``x_t = √ᾱ x0 + √(1−ᾱ) ε`` by √ᾱ gives ``x = x0 + σ ε`` with

    σ² = (1 − ᾱ)/ᾱ,        ᾱ = 1/(1 + σ²),        x_vp = x/√(1 + σ²)

(Karras et al. 2022, "Elucidating the Design Space …", Table 1 and App. C.2: the VP schedule
written as scaling s = √ᾱ and noise level σ). A method that works at arbitrary σ — DAPS's EDM
annealing schedule and its probability-flow ODE — needs the ε-network of a prior trained on the
discrete timesteps t = 0 … T−1 as a denoiser at continuous σ:

    D(x, σ) = x − σ ε̂(x/√(1 + σ²), t(σ))          (:func:`denoise_at_sigma`)

which is EDM's ``VPPrecond`` (c_skip = 1, c_out = −σ, c_in = 1/√(σ² + 1), c_noise = t(σ)).
What remains is the timestep t(σ) handed to the network (:data:`TIMESTEP_RULES`):

* ``"vp_sde"`` — what the official DAPS code does (zhangbingliang2019/DAPS ``model/__init__.py``
  ``DDPM.tweedie`` → ``model/precond.py::VPPrecond``, NVlabs/edm's class): the fractional
  timestep ``t = (T−1)·τ(σ)`` of the *continuous* VP SDE β(τ) = β_min + β_d τ, β_min = 0.1,
  β_d = 19.9 (Song et al. 2021), ``τ(σ) = (√(β_min² + 2 β_d log(1 + σ²)) − β_min)/β_d``. This
  approximates the discrete linear chain but does not equal it: t = 0 ↔ σ = 0, while the
  discrete σ_0 = √(β_0/(1−β_0)) ≈ 0.01, and the network is asked at times it never saw.
* ``"interpolate"`` — the fractional t at which log σ, interpolated linearly between neighbouring
  training timesteps, equals log σ: exact (t(σ_t) = t) at every training t, continuous and
  increasing; its inverse, ᾱ at a fractional t, is :func:`alpha_bar_at` (used by
  :func:`lit_restore.diffusion.schedule.alpha_bar` for floating t, so that analytic priors are
  exact at these σ).
* ``"nearest"`` — the training t whose σ_t is nearest in log σ (an integer timestep).

σ below σ_0 maps to t = 0 and above σ_{T−1} to T−1 under the last two rules (the discrete chain
has no other levels).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

#: the names accepted by :func:`timestep_for_sigma` (module docstring)
TIMESTEP_RULES = ("vp_sde", "interpolate", "nearest")

#: the continuous VP SDE of NVlabs/edm ``VPPrecond`` (β_min, β_d) as the official DAPS uses it
VP_SDE_BETA_MIN, VP_SDE_BETA_D = 0.1, 19.9


def sigma_from_alpha_bar(a: Tensor) -> Tensor:
    """σ = √((1 − ᾱ)/ᾱ)."""
    return ((1 - a) / a).sqrt()


def alpha_bar_from_sigma(sigma: Tensor) -> Tensor:
    """ᾱ = 1/(1 + σ²)."""
    return 1 / (1 + sigma**2)


def _log_sigma_table(alphas_cumprod: Tensor) -> Tensor:
    """log σ_t of the training chain in float64 (increasing in t)."""
    a = alphas_cumprod.detach().to(torch.float64)
    return 0.5 * torch.log((1 - a) / a)


def alpha_bar_at(alphas_cumprod: Tensor, t: Tensor) -> Tensor:
    """ᾱ at fractional timesteps ``t`` ∈ [0, T−1]: log σ interpolated linearly between the
    neighbouring training timesteps (the inverse of the ``"interpolate"`` rule), float64. At an
    integer t this is the table's ᾱ_t itself."""
    log_s = _log_sigma_table(alphas_cumprod).to(t.device)
    tt = t.to(torch.float64).clamp(0, log_s.numel() - 1)
    lo = tt.floor().long()
    hi = (lo + 1).clamp_max(log_s.numel() - 1)
    frac = tt - lo.to(torch.float64)
    log_sigma = log_s[lo] + frac * (log_s[hi] - log_s[lo])
    table = alphas_cumprod.detach().to(device=t.device, dtype=torch.float64)
    return torch.where(frac == 0, table[lo], 1 / (1 + torch.exp(2 * log_sigma)))


def vp_sde_timestep(sigma: Tensor, num_timesteps: int = 1000) -> Tensor:
    """``(T−1)·τ(σ)`` of the continuous VP SDE (the ``"vp_sde"`` rule), in σ's dtype, with the
    arithmetic in the order of ``VPPrecond.sigma_inv`` and its ``c_noise`` (float32 parity)."""
    bmin, bd = VP_SDE_BETA_MIN, VP_SDE_BETA_D
    tau = ((bmin**2 + 2 * bd * (1 + sigma**2).log()).sqrt() - bmin) / bd
    return (num_timesteps - 1) * tau


def timestep_for_sigma(sigma: Tensor, alphas_cumprod: Tensor, rule: str = "vp_sde") -> Tensor:
    """The timestep t(σ) at which an ε-network trained on ``alphas_cumprod`` is evaluated for
    noise level ``sigma`` (module docstring). ``"vp_sde"`` returns σ's dtype, ``"interpolate"``
    float64, ``"nearest"`` long."""
    if rule == "vp_sde":
        return vp_sde_timestep(sigma, alphas_cumprod.numel())
    if rule not in TIMESTEP_RULES:
        raise ValueError(f"unknown timestep rule {rule!r}; choose one of {TIMESTEP_RULES}")
    log_s = _log_sigma_table(alphas_cumprod).to(sigma.device)
    last = log_s.numel() - 1
    x = sigma.detach().to(torch.float64).clamp_min(1e-300).log()
    hi = torch.searchsorted(log_s, x).clamp(1, last)
    lo = hi - 1
    frac = ((x - log_s[lo]) / (log_s[hi] - log_s[lo])).clamp(0, 1)
    if rule == "nearest":
        return torch.where(frac < 0.5, lo, hi)
    return lo.to(torch.float64) + frac


def denoise_at_sigma(
    eps_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    sigma: Tensor,
    alphas_cumprod: Tensor,
    rule: str = "vp_sde",
) -> Tensor:
    """EDM's VP preconditioning: ``D(x, σ) = x − σ ε̂(x/√(σ² + 1), t(σ))``.

    Args:
        eps_fn: the prior's ε-prediction ``eps_fn(x_vp, t)`` (``t``: one timestep per image,
            fractional under ``"vp_sde"``/``"interpolate"``).
        x: the EDM-scaled sample x0 + σ n, ``[B, …]``.
        sigma: the noise level, a 0-dim tensor (in x's dtype for float32 parity).
        alphas_cumprod: the prior's training ᾱ.
        rule: one of :data:`TIMESTEP_RULES`.
    """
    s = sigma.reshape(-1, *([1] * (x.dim() - 1)))
    c_in = 1 / (s**2 + 1).sqrt()
    t = timestep_for_sigma(sigma.reshape(-1), alphas_cumprod, rule).expand(x.shape[0])
    return x + (-s) * eps_fn(c_in * x, t)


def sigma_grid_poly(sigma_max: float | Tensor, sigma_min: float, n: int, rho: int = 7) -> list:
    """EDM's polynomial noise levels (Karras et al. 2022, Eq. 5):
    ``(σ_max^{1/ρ} + r (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ`` for ``r`` in ``numpy.linspace(0, 1, n)``
    (the official DAPS ``cores/scheduler.py::EDMScheduler``, ``timestep: poly-7``). Computed in
    ``sigma_max``'s arithmetic: Python floats (float64) for a number, the tensor's dtype for a
    tensor — the official code does the first for its annealing levels and the second (float32)
    for each ODE grid, whose σ_max is a float32 annealing level."""
    import numpy as np

    inv = 1 / rho
    return [
        (sigma_max**inv + float(r) * (sigma_min**inv - sigma_max**inv)) ** rho
        for r in np.linspace(0, 1, n)
    ]
