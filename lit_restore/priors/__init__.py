"""Frozen diffusion priors: the VP protocol (:class:`DiffusionPrior`), the ADM and DDIM UNets of
:mod:`lit_restore.nn` as ε-priors, diffusers UNets, analytic Gaussian priors, latent priors
(:class:`LatentDiffusionPrior`: the CompVis LDMs, :class:`LDMPrior`, and diffusers latent
pipelines, :class:`DiffusersLatentPrior`), and the registry of published checkpoints
(:func:`load_prior`); :class:`TiledPrior` runs any of them on larger images."""

from lit_restore.priors.adm_prior import ADMPrior, DDIMPrior
from lit_restore.priors.base import DiffusionPrior
from lit_restore.priors.diffusers_prior import DiffusersLatentPrior, DiffusersPrior
from lit_restore.priors.gaussian import (
    DenseGaussianPrior,
    FittedGaussianPrior,
    GaussianPrior,
    PowerLawGaussianPrior,
    gaussian_posterior,
)
from lit_restore.priors.latent import LatentDiffusionPrior, LDMPrior
from lit_restore.priors.registry import PRIOR_CLASSES, REGISTRY, load_prior
from lit_restore.priors.tiled import TiledPrior

__all__ = [
    "PRIOR_CLASSES",
    "REGISTRY",
    "ADMPrior",
    "DDIMPrior",
    "DenseGaussianPrior",
    "DiffusersLatentPrior",
    "DiffusersPrior",
    "DiffusionPrior",
    "FittedGaussianPrior",
    "GaussianPrior",
    "LDMPrior",
    "LatentDiffusionPrior",
    "PowerLawGaussianPrior",
    "TiledPrior",
    "gaussian_posterior",
    "load_prior",
]
