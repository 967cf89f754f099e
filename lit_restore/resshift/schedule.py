"""The ResShift residual-shifting Markov chain (Yue et al., NeurIPS 2023, arXiv 2307.12348).

Notation: ``x0`` is the HQ latent, ``y`` the LQ latent, ``e0 = y - x0``, and
``alpha_t = eta_t - eta_{t-1}`` with ``eta_0 := 0`` (so ``alpha_1 = eta_1``).

* marginal (paper eq. 3):          q(x_t | x0, y)  = N(x0 + eta_t e0, kappa^2 eta_t I)
* one-step transition (eq. 1):     q(x_t | x_{t-1}, y) = N(x_{t-1} + alpha_t e0, kappa^2 alpha_t I)
* posterior (eq. 5-6):             q(x_{t-1} | x_t, x0, y)
      mean = (eta_{t-1}/eta_t) x_t + (alpha_t/eta_t) x0,   var = kappa^2 (eta_{t-1}/eta_t) alpha_t
* prior:                           x_T = y + kappa sqrt(eta_T) eps
* network input scaling:           x_t / sqrt(kappa^2 eta_t + 1)
* deterministic (ODE / DDIM, zero posterior noise) step, SinSR (Wang et al., CVPR 2024,
  arXiv 2311.14760; wyf0912/SinSR ``models/gaussian_diffusion.py::ddim_sample``): keep
  the noise implied by (x_t, x0) and move it to t-1,
      eps_hat = (x_t - x0 - eta_t e0) / (kappa sqrt(eta_t))
      x_{t-1} = x0 + eta_{t-1} e0 + kappa sqrt(eta_{t-1}) eps_hat
              = k_t x0 + m_t x_t + j_t y,   m_t = sqrt(eta_{t-1}/eta_t),
                k_t = 1 - eta_{t-1} + sqrt(eta_{t-1} eta_t) - m_t,   j_t = eta_{t-1} - sqrt(eta_{t-1} eta_t)
  (at t = 1, eta_0 = 0: k = 1, m = j = 0, the step returns x0).

The shifting schedule is the ``exponential`` rule of the official code
(zsyOAOA/ResShift ``models/gaussian_diffusion.py::get_named_eta_schedule``)::

    sqrt_eta_1 = min(min_noise_level / kappa, min_noise_level)
    b0         = exp(log(etas_end / sqrt_eta_1) / (T - 1))           # etas_end = sqrt(eta_T)
    beta_t     = ((t - 1) / (T - 1)) ** p * (T - 1),   t = 1..T
    sqrt_eta_t = sqrt_eta_1 * b0 ** beta_t

Indices in code are 0-based: position ``i`` in the buffers is the paper's ``t = i + 1``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def exponential_sqrt_etas(
    steps: int, kappa: float, min_noise_level: float, etas_end: float = 0.99, power: float = 0.3
) -> Tensor:
    """``sqrt(eta_t)`` for ``t = 1..T`` (float64), the official exponential schedule."""
    if steps < 2:
        raise ValueError(f"steps={steps}: the ResShift schedule needs at least 2 steps")
    if kappa <= 0 or min_noise_level <= 0 or not 0 < etas_end < 1:
        raise ValueError(
            f"kappa={kappa}, min_noise_level={min_noise_level}, etas_end={etas_end}: need "
            "kappa > 0, min_noise_level > 0 and 0 < etas_end < 1"
        )
    sqrt_eta_1 = min(min_noise_level / kappa, min_noise_level)
    b0 = math.exp(math.log(etas_end / sqrt_eta_1) / (steps - 1))
    base = torch.linspace(0, 1, steps, dtype=torch.float64) ** power * (steps - 1)
    return sqrt_eta_1 * b0**base


class ResShiftSchedule(nn.Module):
    """Buffers and closed forms of the residual-shifting chain (all float64 buffers, cast on use).

    Args:
        steps: T (4 for the journal models, 15 for the NeurIPS ones).
        kappa: noise variance scale κ (2.0 in every released model).
        min_noise_level: κ·sqrt(eta_1) target (0.2 journal, 0.04 NeurIPS).
        etas_end: sqrt(eta_T) (0.99 in the code; the paper's eta_T = 0.999 is not what runs).
        power: p of the exponential rule (0.3).
        scale_input: feed ``x_t / sqrt(kappa^2 eta_t + 1)`` to the network (official: True).
    """

    def __init__(
        self,
        steps: int = 4,
        kappa: float = 2.0,
        min_noise_level: float = 0.2,
        etas_end: float = 0.99,
        power: float = 0.3,
        scale_input: bool = True,
    ) -> None:
        super().__init__()
        self.steps = int(steps)
        self.kappa = float(kappa)
        self.min_noise_level = float(min_noise_level)
        self.etas_end = float(etas_end)
        self.power = float(power)
        self.scale_input = scale_input
        sqrt_etas = exponential_sqrt_etas(steps, kappa, min_noise_level, etas_end, power)
        etas = sqrt_etas**2
        etas_prev = torch.cat([torch.zeros(1, dtype=torch.float64), etas[:-1]])
        alphas = etas - etas_prev
        var = kappa**2 * etas_prev / etas * alphas
        # official: the log-variance at index 0 (var 0) is replaced by index 1's
        log_var_clipped = torch.log(torch.cat([var[1:2], var[1:]]))
        self.register_buffer("sqrt_etas", sqrt_etas, persistent=False)
        self.register_buffer("etas", etas, persistent=False)
        self.register_buffer("etas_prev", etas_prev, persistent=False)
        self.register_buffer("alphas", alphas, persistent=False)
        self.register_buffer("posterior_variance", var, persistent=False)
        self.register_buffer("posterior_log_variance_clipped", log_var_clipped, persistent=False)
        self.register_buffer("coef_xt", etas_prev / etas, persistent=False)
        self.register_buffer("coef_x0", alphas / etas, persistent=False)
        # the deterministic step's coefficients, in the official form (module docstring)
        ode_m = torch.sqrt(etas_prev / etas)
        ode_k = 1 - etas_prev + torch.sqrt(etas_prev * etas) - ode_m
        self.register_buffer("ode_k", ode_k, persistent=False)
        self.register_buffer("ode_m", ode_m, persistent=False)
        self.register_buffer("ode_j", etas_prev - torch.sqrt(etas_prev * etas), persistent=False)

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _take(buf: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """``buf[t]`` broadcast to ``like`` (t: [B] long, 0-based)."""
        out = buf.to(like.device)[t.to(like.device)].to(like.dtype)
        return out.view(-1, *([1] * (like.ndim - 1)))

    # ------------------------------------------------------------ marginal
    def q_mean_std(self, x0: Tensor, y: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std of q(x_t | x0, y) = N(x0 + eta_t (y - x0), kappa^2 eta_t I)."""
        eta = self._take(self.etas, t, x0)
        return x0 + eta * (y - x0), self.kappa * eta.sqrt()

    def q_sample(self, x0: Tensor, y: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        mean, std = self.q_mean_std(x0, y, t)
        return mean + std * noise

    # ----------------------------------------------------------- posterior
    def posterior_mean_variance(
        self, x_t: Tensor, x0: Tensor, t: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """q(x_{t-1} | x_t, x0): mean, variance, clipped log-variance (0-based ``t``)."""
        mean = self._take(self.coef_xt, t, x_t) * x_t + self._take(self.coef_x0, t, x_t) * x0
        var = self._take(self.posterior_variance, t, x_t)
        logvar = self._take(self.posterior_log_variance_clipped, t, x_t)
        return mean, var, logvar

    def p_step(self, x_t: Tensor, x0_pred: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """One reverse step with the exact posterior; no noise at ``t == 0`` (returns x̂0)."""
        mean, _, logvar = self.posterior_mean_variance(x_t, x0_pred, t)
        nonzero = (t != 0).to(x_t.dtype).view(-1, *([1] * (x_t.ndim - 1))).to(x_t.device)
        return mean + nonzero * torch.exp(0.5 * logvar) * noise

    def ode_step(self, x_t: Tensor, x0_pred: Tensor, y: Tensor, t: Tensor) -> Tensor:
        """One deterministic reverse step ``x_t → x_{t-1} = k x̂0 + m x_t + j y`` (module
        docstring; returns x̂0 at ``t == 0``)."""
        k, m, j = (self._take(b, t, x_t) for b in (self.ode_k, self.ode_m, self.ode_j))
        return x0_pred * k + m * x_t + j * y

    def prior_sample(self, y: Tensor, noise: Tensor) -> Tensor:
        """x_T = y + kappa sqrt(eta_T) eps."""
        return y + self.kappa * float(self.sqrt_etas[-1]) * noise

    def scale_model_input(self, x_t: Tensor, t: Tensor) -> Tensor:
        """x_t / sqrt(kappa^2 eta_t + 1) (official ``_scale_input``, latent case)."""
        if not self.scale_input:
            return x_t
        eta = self._take(self.etas, t, x_t)
        return x_t / torch.sqrt(self.kappa**2 * eta + 1)

    def extra_repr(self) -> str:
        return (
            f"steps={self.steps}, kappa={self.kappa}, min_noise_level={self.min_noise_level}, "
            f"etas_end={self.etas_end}, power={self.power}"
        )
