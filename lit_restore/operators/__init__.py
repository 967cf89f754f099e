"""Degradation operators ("physics"): ``A``, its adjoint, pseudo-inverses, SVD views, noise."""

from .base import (
    CAPABILITIES,
    DenseOperator,
    LinearOperator,
    OperatorCapabilityError,
    require_capabilities,
)
from .blur import Blur, GaussianBlur, MotionBlur, UniformBlur
from .inpainting import Inpainting
from .noise import GaussianNoise, NoiseModel, NoNoise, PoissonNoise
from .simple import Colorization, Denoising
from .sr import AvgPoolSR, BicubicSR, SeparableOperator

__all__ = [
    "CAPABILITIES",
    "AvgPoolSR",
    "BicubicSR",
    "Blur",
    "Colorization",
    "Denoising",
    "DenseOperator",
    "GaussianBlur",
    "GaussianNoise",
    "Inpainting",
    "LinearOperator",
    "MotionBlur",
    "NoNoise",
    "NoiseModel",
    "OperatorCapabilityError",
    "PoissonNoise",
    "SeparableOperator",
    "UniformBlur",
    "require_capabilities",
]
