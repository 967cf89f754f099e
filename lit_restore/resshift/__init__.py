"""ResShift: residual-shifting diffusion for restoration (schedule, Swin UNet, VQ-f4, sampler)."""

from lit_restore.resshift.autoencoder import PixelSpace, VQModel
from lit_restore.resshift.sampler import ResShiftSampler, adain_color_fix, wavelet_color_fix
from lit_restore.resshift.schedule import ResShiftSchedule, exponential_sqrt_etas
from lit_restore.resshift.unet import SwinUNet, load_state_dict_file, strip_prefixes

__all__ = [
    "PixelSpace",
    "ResShiftSampler",
    "ResShiftSchedule",
    "SwinUNet",
    "VQModel",
    "adain_color_fix",
    "exponential_sqrt_etas",
    "load_state_dict_file",
    "strip_prefixes",
    "wavelet_color_fix",
]
