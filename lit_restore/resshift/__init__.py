"""ResShift: residual-shifting diffusion for restoration (schedule, chain, Swin UNet, VQ-f4)."""

from lit_restore.resshift.autoencoder import PixelSpace, VQModel
from lit_restore.resshift.chain import Condition, ResShiftChain
from lit_restore.resshift.schedule import ResShiftSchedule, exponential_sqrt_etas
from lit_restore.resshift.unet import SwinUNet, load_state_dict_file, strip_prefixes

__all__ = [
    "Condition",
    "PixelSpace",
    "ResShiftChain",
    "ResShiftSchedule",
    "SwinUNet",
    "VQModel",
    "exponential_sqrt_etas",
    "load_state_dict_file",
    "strip_prefixes",
]
