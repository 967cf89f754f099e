"""Networks in their published layouts, sharing blocks (:mod:`lit_restore.nn.blocks`).

They know nothing of priors, samplers or training: :mod:`lit_restore.priors` wraps the UNets as
frozen ε-priors, :mod:`lit_restore.resshift` and :mod:`lit_restore.modules` run the Swin UNet in
the VQ autoencoder's latent space; :class:`KernelWizard` is the blur network of the DPS paper's
nonlinear deblurring (:class:`lit_restore.operators.NonlinearBlur`).
"""

from lit_restore.nn.adm_unet import ADMUNet
from lit_restore.nn.blocks import freeze
from lit_restore.nn.ddim_unet import DDIMUNet
from lit_restore.nn.kernel_wizard import KernelWizard
from lit_restore.nn.swin_unet import SwinUNet
from lit_restore.nn.vq_autoencoder import PixelSpace, VQModel

__all__ = [
    "ADMUNet",
    "DDIMUNet",
    "KernelWizard",
    "PixelSpace",
    "SwinUNet",
    "VQModel",
    "freeze",
]
