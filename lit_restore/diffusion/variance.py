"""The ancestral step of a (respaced) DDPM chain with guided-diffusion's three variance types.

A chain visits original timesteps ``t_0 < t_1 < … < t_{K−1}`` (a respacing rule,
:mod:`lit_restore.diffusion.respacing`). openai/guided-diffusion ``respace.py::SpacedDiffusion``
rebuilds the β of that chain from ᾱ, ``β_k = 1 − ᾱ_{t_k}/ᾱ_{t_{k−1}}`` (ᾱ before t_0 is 1), and
``gaussian_diffusion.py::GaussianDiffusion`` derives from it, in float64 (Ho et al. 2020,
Eqs. 6–7; Nichol & Dhariwal 2021, Eq. 15):

* x̂0 = √(1/ᾱ_k) x_k − √(1/ᾱ_k − 1) ε̂ (``_predict_xstart_from_eps``);
* μ̃ = c1_k x̂0 + c2_k x_k, c1 = β_k √ᾱ_{k−1}/(1−ᾱ_k), c2 = (1−ᾱ_{k−1}) √(1−β_k)/(1−ᾱ_k)
  (``q_posterior_mean_variance``);
* β̃_k = β_k (1−ᾱ_{k−1})/(1−ᾱ_k); log β̃ "clipped" replaces the k = 0 entry (β̃_0 = 0) by β̃_1;
* the variance of x_{k−1} by type (``p_mean_variance``):

  - ``fixed_small``: β̃_k (log: the clipped table);
  - ``fixed_large``: β_k, with β̃_1 at k = 0 (guided-diffusion's rule: "set the initial (log-)
    variance to get a better decoder log likelihood");
  - ``learned_range``: the network's variance channels v ∈ [−1, 1] interpolate the log-variance,
    ``log σ² = f log β_k + (1 − f) log β̃_k(clipped)``, ``f = (v + 1)/2``.

* ``x_{k−1} = μ̃ + exp(½ log σ²) z``, without noise at k = 0.

The tables are computed in float64 and cast to the images' dtype at use, as guided-diffusion's
``_extract_into_tensor`` (and DPS ``posterior_mean_variance.py::extract_and_expand``) do — in
float32 this matters: 1 − ᾱ at t = 0 is 1e-4, and forming it from a float32 ᾱ costs ~6e-4
relative error.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

#: guided-diffusion ``ModelVarType`` names (lower case, as in DPS ``configs/diffusion_config.yaml``)
VARIANCE_TYPES = ("fixed_small", "fixed_large", "learned_range")


class AncestralChain:
    """guided-diffusion's coefficient tables of one respaced chain (module docstring).

    Args:
        alphas_cumprod: ᾱ of the full training chain, float64 (float32 works, less exactly).
        timesteps: the original timesteps the chain visits (any order).
    """

    def __init__(self, alphas_cumprod: Tensor, timesteps: Sequence[int]) -> None:
        ac_full = alphas_cumprod.detach().to("cpu", torch.float64)
        self.timesteps = sorted(int(t) for t in timesteps)
        self.index = {t: k for k, t in enumerate(self.timesteps)}
        # respace.py: β_k = 1 − ᾱ_{t_k}/ᾱ_{t_{k−1}}, then GaussianDiffusion(betas) recomputes ᾱ
        last, betas = 1.0, []
        for t in self.timesteps:
            betas.append(1.0 - float(ac_full[t]) / last)
            last = float(ac_full[t])
        b = torch.tensor(betas, dtype=torch.float64)
        ac = torch.cumprod(1.0 - b, 0)
        ac_prev = torch.cat([ac.new_ones(1), ac[:-1]])
        var = b * (1.0 - ac_prev) / (1.0 - ac)
        # β̃_0 = 0: the clipped log takes β̃_1 there (a one-step chain has no β̃_1; its only step
        # is the last, which adds no noise, so any finite value serves)
        first = var[1] if len(var) > 1 else b[0]
        var_clipped = torch.cat([first.reshape(1), var[1:]])
        self.tables = {
            "sqrt_recip_ac": torch.sqrt(1.0 / ac),
            "sqrt_recipm1_ac": torch.sqrt(1.0 / ac - 1.0),
            "coef_x0": b * torch.sqrt(ac_prev) / (1.0 - ac),
            "coef_xt": (1.0 - ac_prev) * torch.sqrt(1.0 - b) / (1.0 - ac),
            "log_var_clipped": torch.log(var_clipped),
            "log_beta": torch.log(b),
            "log_var_large": torch.log(torch.cat([first.reshape(1), b[1:]])),
        }
        self._cache: dict[tuple[torch.device, torch.dtype], dict[str, Tensor]] = {}

    def _get(self, name: str, t: int, like: Tensor) -> Tensor:
        """Table entry at original timestep ``t``, cast to ``like``'s dtype (float64 → dtype)."""
        key = (like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = {k: v.to(like.device).to(like.dtype) for k, v in self.tables.items()}
        return self._cache[key][name][self.index[t]]

    def predict_x0(self, x_t: Tensor, t: int, eps: Tensor) -> Tensor:
        """x̂0 = √(1/ᾱ) x_t − √(1/ᾱ − 1) ε̂ (unclamped)."""
        return self._get("sqrt_recip_ac", t, x_t) * x_t - self._get("sqrt_recipm1_ac", t, eps) * eps

    def posterior_mean(self, x0: Tensor, x_t: Tensor, t: int) -> Tensor:
        """μ̃ = c1 x̂0 + c2 x_t for the step from ``t`` to the chain's previous timestep."""
        return self._get("coef_x0", t, x0) * x0 + self._get("coef_xt", t, x_t) * x_t

    def log_variance(self, variance: str, t: int, like: Tensor, v: Tensor | None = None) -> Tensor:
        """log σ² of the step from ``t`` (``variance`` in :data:`VARIANCE_TYPES`; ``v``: the
        network's variance channels, needed by ``learned_range``)."""
        if variance == "fixed_small":
            return self._get("log_var_clipped", t, like)
        if variance == "fixed_large":
            return self._get("log_var_large", t, like)
        if variance == "learned_range":
            if v is None:
                raise ValueError(
                    "variance 'learned_range' needs a prior whose network outputs the variance "
                    "channels (an ADM with learn_sigma=True); use 'fixed_small' otherwise"
                )
            min_log = self._get("log_var_clipped", t, v)
            max_log = self._get("log_beta", t, v)
            frac = (v + 1) / 2
            return frac * max_log + (1 - frac) * min_log
        raise ValueError(f"unknown variance type {variance!r}; choose one of {VARIANCE_TYPES}")

    def step(
        self,
        x0: Tensor,
        x_t: Tensor,
        t: int,
        last: bool,
        noise: Tensor | None,
        variance: str,
        v: Tensor | None = None,
    ) -> Tensor:
        """``μ̃ + exp(½ log σ²) z`` (no noise on the chain's ``last`` step)."""
        mean = self.posterior_mean(x0, x_t, t)
        if last or noise is None:
            return mean
        return mean + torch.exp(0.5 * self.log_variance(variance, t, x_t, v)) * noise
