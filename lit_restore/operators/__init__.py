"""Degradation operators ("physics"): ``A``, its adjoint, pseudo-inverses, SVD views, noise."""

from .banks import load_kernel_bank, load_mask_bank
from .base import (
    CAPABILITIES,
    DenseOperator,
    LinearOperator,
    OperatorCapabilityError,
    require_capabilities,
)
from .blur import Blur, GaussianBlur, KernelBankBlur, MotionBlur, UniformBlur
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
    "KernelBankBlur",
    "LinearOperator",
    "MotionBlur",
    "NoNoise",
    "NoiseModel",
    "OperatorCapabilityError",
    "PoissonNoise",
    "SeparableOperator",
    "UniformBlur",
    "load_kernel_bank",
    "load_mask_bank",
    "require_capabilities",
]
