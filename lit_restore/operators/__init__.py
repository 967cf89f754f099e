"""Degradation operators ("physics"): ``A``, its adjoint, pseudo-inverses, SVD views, noise; the
nonlinear ones (JPEG, the DPS paper's nonlinear blur and phase retrieval) for DPS and SaFaRI."""

from .base import (
    CAPABILITIES,
    DenseOperator,
    LinearOperator,
    Operator,
    OperatorCapabilityError,
    require_capabilities,
)
from .blur import Blur, GaussianBlur, MotionBlur, UniformBlur
from .inpainting import Inpainting
from .jpeg import JPEG
from .noise import GaussianNoise, NoiseModel, NoNoise, PoissonNoise
from .nonlinear_blur import NonlinearBlur
from .phase_retrieval import PhaseRetrieval
from .simple import Colorization, Denoising
from .sr import AvgPoolSR, BicubicSR, SeparableOperator

__all__ = [
    "CAPABILITIES",
    "JPEG",
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
    "NonlinearBlur",
    "Operator",
    "OperatorCapabilityError",
    "PhaseRetrieval",
    "PoissonNoise",
    "SeparableOperator",
    "UniformBlur",
    "require_capabilities",
]
