"""Zero-shot guidance methods on one shared loop (see :mod:`lit_restore.samplers.base`)."""

from lit_restore.samplers.base import DDIM, DDPM, Sampler, SamplingContext, StepInfo
from lit_restore.samplers.daps import DAPS
from lit_restore.samplers.ddnm import DDNM
from lit_restore.samplers.ddpg import DDPG, IDPG
from lit_restore.samplers.ddrm import DDRM
from lit_restore.samplers.dds import DDS
from lit_restore.samplers.diffpir import DiffPIR
from lit_restore.samplers.dps import DPS, Fidelity, PixelFidelity
from lit_restore.samplers.fdgr import FDGR, gradient_regularizer_grad
from lit_restore.samplers.latent import DecodedOperator
from lit_restore.samplers.latent_dps import LatentDPS, LatentSaFaRI
from lit_restore.samplers.pigdm import PiGDM
from lit_restore.samplers.psld import PSLD
from lit_restore.samplers.reddiff import REDDiff
from lit_restore.samplers.resample import ReSample
from lit_restore.samplers.safari import SaFaRI, SpatialFrequencyFidelity

__all__ = [
    "DAPS",
    "DDIM",
    "DDNM",
    "DDPG",
    "DDPM",
    "DDRM",
    "DDS",
    "DPS",
    "FDGR",
    "IDPG",
    "PSLD",
    "DecodedOperator",
    "DiffPIR",
    "Fidelity",
    "LatentDPS",
    "LatentSaFaRI",
    "PiGDM",
    "PixelFidelity",
    "REDDiff",
    "ReSample",
    "SaFaRI",
    "Sampler",
    "SamplingContext",
    "SpatialFrequencyFidelity",
    "StepInfo",
    "gradient_regularizer_grad",
]
