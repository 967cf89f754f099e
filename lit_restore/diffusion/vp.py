"""Relations of a VP diffusion, written once, in terms of ᾱ values already looked up
(:func:`lit_restore.diffusion.schedule.alpha_bar`), so that they serve the full 1000-step chain
and any respaced one alike. ``a`` is ᾱ_t of the current step, ``a_prev`` / ``a_next`` ᾱ of the
step the chain moves to (``t' < t``; 1 for the clean image).

* forward process (Ho et al. 2020, Eq. 4): ``x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε``;
* its inversions: ``x0 = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t`` (with the network's ε̂: Tweedie's x̂0) and
  ``ε = (x_t − √ᾱ_t x0) / √(1−ᾱ_t)``;
* the posterior q(x_{t'} | x_t, x0) (Ho et al. 2020, Eqs. 6–7), with the step's own
  β = 1 − ᾱ_t/ᾱ_{t'} (guided-diffusion ``respace.py`` rebuilds β this way for a respaced chain):
  ``μ̃ = √ᾱ_{t'} β/(1−ᾱ_t) x0 + √(1−β) (1−ᾱ_{t'})/(1−ᾱ_t) x_t`` and
  ``β̃ = (1−ᾱ_{t'})/(1−ᾱ_t) β`` (guided-diffusion ``q_posterior_mean_variance``; the
  "fixed-small" variance);
* the DDIM(η) step (Song et al. 2021, Eq. 12):
  ``x_{t'} = √ᾱ_{t'} x̂0 + √(1−ᾱ_{t'}−σ²) ε̂ + σ z``, ``σ = η √((1−ᾱ_{t'})/(1−ᾱ_t)) √(1−ᾱ_t/ᾱ_{t'})``.
  At η = 1, σ² = β̃ and the mean equals μ̃ when ε̂ is the ε of (x_t, x̂0): DDPM ancestral
  sampling on the respaced chain; η = 0 is deterministic DDIM.
"""

from __future__ import annotations

from torch import Tensor


def q_sample(x0: Tensor, noise: Tensor, a: Tensor) -> Tensor:
    """x_t = √ᾱ x0 + √(1−ᾱ) ε."""
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def x0_from_eps(x_t: Tensor, eps: Tensor, a: Tensor) -> Tensor:
    """x0 = (x_t − √(1−ᾱ) ε) / √ᾱ (Tweedie's x̂0 when ε is the network's ε̂)."""
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def eps_from_x0(x_t: Tensor, x0: Tensor, a: Tensor) -> Tensor:
    """ε = (x_t − √ᾱ x0) / √(1−ᾱ)."""
    return (x_t - a.sqrt() * x0) / (1 - a).sqrt()


def posterior_mean(x0: Tensor, x_t: Tensor, a: Tensor, a_prev: Tensor) -> Tensor:
    """μ̃(x_t, x0) of q(x_{t'} | x_t, x0) (Ho et al. 2020, Eq. 7) for the step ᾱ_t → ᾱ_{t'}."""
    beta = 1 - a / a_prev
    return (a_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - a_prev) * x_t) / (1 - a)


def posterior_variance(a: Tensor, a_prev: Tensor) -> Tensor:
    """β̃ = (1−ᾱ_{t'})/(1−ᾱ_t) · (1 − ᾱ_t/ᾱ_{t'}) (Ho et al. 2020, Eq. 7; "fixed-small")."""
    return (1 - a_prev) / (1 - a) * (1 - a / a_prev)


def ddim_sigma(a: Tensor, a_next: Tensor, eta: float) -> Tensor:
    """σ = η √((1−ᾱ_{t'})/(1−ᾱ_t) · (1−ᾱ_t/ᾱ_{t'})) (Song et al. 2021, Eq. 16), i.e. η √β̃."""
    return eta * ((1 - a_next) / (1 - a) * (1 - a / a_next)).clamp_min(0).sqrt()


def ddim_mean(x0: Tensor, eps: Tensor, a_next: Tensor, sigma: Tensor) -> Tensor:
    """√ᾱ_{t'} x̂0 + √(1−ᾱ_{t'}−σ²) ε̂: the DDIM(η) step without its noise σ z."""
    return a_next.sqrt() * x0 + (1 - a_next - sigma**2).clamp_min(0).sqrt() * eps
