"""ResShift: residual-shifting diffusion for restoration (schedule, chain); its networks (Swin
UNet, VQ-f4 autoencoder) live in :mod:`lit_restore.nn`, its training degradations in
:mod:`lit_restore.degradations`."""

from lit_restore.resshift.chain import Condition, ResShiftChain
from lit_restore.resshift.schedule import ResShiftSchedule, exponential_sqrt_etas

__all__ = [
    "Condition",
    "ResShiftChain",
    "ResShiftSchedule",
    "exponential_sqrt_etas",
]
