"""LightningModules: every restoration method shares :class:`RestorationModule`'s steps."""

from lit_restore.modules.base import PseudoInverse, RestorationModule
from lit_restore.modules.diffusion_prior import DiffusionPriorModule
from lit_restore.modules.resshift import ResShiftModule
from lit_restore.modules.zero_shot import ZeroShotRestoration

__all__ = [
    "DiffusionPriorModule",
    "PseudoInverse",
    "ResShiftModule",
    "RestorationModule",
    "ZeroShotRestoration",
]
