"""The variance-preserving (VP) diffusion maths, once: β schedules and ᾱ
(:mod:`~lit_restore.diffusion.schedule`), the relations between x_t, x0 and ε, the forward
process, the posterior and the DDIM(η) step (:mod:`~lit_restore.diffusion.vp`), guided-diffusion's
ancestral step with its variance types (:mod:`~lit_restore.diffusion.variance`), the rules
that choose the timesteps of a shortened chain (:mod:`~lit_restore.diffusion.respacing`), and the
chain's continuous noise levels σ with the prior's denoiser at any σ
(:mod:`~lit_restore.diffusion.sigma`).

Priors, the zero-shot sampling loop and prior training all call these functions."""

from lit_restore.diffusion.respacing import (
    SPACINGS,
    chain_end,
    ddrm_timesteps,
    ldm_ddim_schedule,
    ldm_timesteps,
    leading_timesteps,
    linspace_timesteps,
    quad_timesteps,
    respace,
    space_timesteps,
)
from lit_restore.diffusion.schedule import alpha_bar, alphas_cumprod, make_betas
from lit_restore.diffusion.sigma import (
    TIMESTEP_RULES,
    alpha_bar_at,
    alpha_bar_from_sigma,
    denoise_at_sigma,
    sigma_from_alpha_bar,
    sigma_grid_poly,
    timestep_for_sigma,
    vp_sde_timestep,
)
from lit_restore.diffusion.variance import VARIANCE_TYPES, AncestralChain
from lit_restore.diffusion.vp import (
    ddim_mean,
    ddim_sigma,
    eps_from_x0,
    posterior_mean,
    posterior_variance,
    q_sample,
    x0_from_eps,
)

__all__ = [
    "SPACINGS",
    "TIMESTEP_RULES",
    "VARIANCE_TYPES",
    "AncestralChain",
    "alpha_bar",
    "alpha_bar_at",
    "alpha_bar_from_sigma",
    "alphas_cumprod",
    "chain_end",
    "ddim_mean",
    "ddim_sigma",
    "ddrm_timesteps",
    "denoise_at_sigma",
    "eps_from_x0",
    "ldm_ddim_schedule",
    "ldm_timesteps",
    "leading_timesteps",
    "linspace_timesteps",
    "make_betas",
    "posterior_mean",
    "posterior_variance",
    "q_sample",
    "quad_timesteps",
    "respace",
    "sigma_from_alpha_bar",
    "sigma_grid_poly",
    "space_timesteps",
    "timestep_for_sigma",
    "vp_sde_timestep",
    "x0_from_eps",
]
