"""ResShift: residual-shifting diffusion for restoration (schedule, sampler, degradations); its
networks (Swin UNet, VQ-f4 autoencoder) live in :mod:`lit_restore.nn`."""

from lit_restore.resshift.sampler import ResShiftSampler, adain_color_fix, wavelet_color_fix
from lit_restore.resshift.schedule import ResShiftSchedule, exponential_sqrt_etas

__all__ = [
    "ResShiftSampler",
    "ResShiftSchedule",
    "adain_color_fix",
    "exponential_sqrt_etas",
    "wavelet_color_fix",
]
