"""Frozen diffusion priors: the VP protocol, the ADM and DDIM UNets in their published layouts,
diffusers UNets, safe checkpoint loading, the registry of published checkpoints and a minimal
unconditional sampler."""

from lit_restore.priors.adm_prior import ADMPrior, DDIMPrior
from lit_restore.priors.adm_unet import ADMUNet
from lit_restore.priors.base import DiffusionPrior, make_betas
from lit_restore.priors.ddim_unet import DDIMUNet
from lit_restore.priors.diffusers_prior import DiffusersPrior
from lit_restore.priors.gaussian import (
    DenseGaussianPrior,
    FittedGaussianPrior,
    GaussianPrior,
    PowerLawGaussianPrior,
    gaussian_posterior,
)
from lit_restore.priors.loading import CheckpointError, load_weights, read_checkpoint
from lit_restore.priors.registry import REGISTRY, cache_dir, load_prior, resolve_weights
from lit_restore.priors.sampling import sample_unconditional

__all__ = [
    "REGISTRY",
    "ADMPrior",
    "ADMUNet",
    "CheckpointError",
    "DDIMPrior",
    "DDIMUNet",
    "DenseGaussianPrior",
    "DiffusersPrior",
    "DiffusionPrior",
    "FittedGaussianPrior",
    "GaussianPrior",
    "PowerLawGaussianPrior",
    "cache_dir",
    "gaussian_posterior",
    "load_prior",
    "load_weights",
    "make_betas",
    "read_checkpoint",
    "resolve_weights",
    "sample_unconditional",
]
