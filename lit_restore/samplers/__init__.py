"""Zero-shot guidance methods on one shared loop (see :mod:`lit_restore.samplers.base`)."""

from lit_restore.samplers.base import DDIM, DDPM, Sampler, SamplingContext, StepInfo, respace
from lit_restore.samplers.dps import DPS, Fidelity, PixelFidelity
from lit_restore.samplers.safari import SaFaRI, SpatialFrequencyFidelity

__all__ = [
    "DDIM",
    "DDPM",
    "DPS",
    "Fidelity",
    "PixelFidelity",
    "SaFaRI",
    "Sampler",
    "SamplingContext",
    "SpatialFrequencyFidelity",
    "StepInfo",
    "respace",
]
