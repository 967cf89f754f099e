"""Degradations: a clean image → (measurement ``y``, viewable ``lq``, ``mask``, ``params``).

One protocol (:class:`Degradation`) for every model, applied per image by the datamodule with a
generator seeded by ``(seed, index)``: a linear operator plus noise, MATLAB bicubic, or
Real-ESRGAN's second-order pipeline. Masks are inpainting operators' parameters
(:mod:`lit_restore.operators.masks`).
"""

from lit_restore.degradations.base import Degradation, Degraded
from lit_restore.degradations.bicubic import BicubicDegradation, imresize
from lit_restore.degradations.linear import LinearDegradation
from lit_restore.degradations.realesrgan import (
    BlurConfig,
    RealESRGANConfig,
    RealESRGANDegradation,
    StageConfig,
)

__all__ = [
    "BicubicDegradation",
    "BlurConfig",
    "Degradation",
    "Degraded",
    "LinearDegradation",
    "RealESRGANConfig",
    "RealESRGANDegradation",
    "StageConfig",
    "imresize",
]
