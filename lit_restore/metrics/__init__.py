"""Image-quality metrics (PSNR/SSIM/LPIPS/FID/KID); their backbone weights are resolved offline
by :mod:`lit_restore.weights`."""

from lit_restore.metrics.fid import (
    InceptionFeatures,
    frechet_distance,
    kernel_inception_distance,
)
from lit_restore.metrics.fidelity import prepare, psnr, rgb_to_y, ssim
from lit_restore.metrics.perceptual import LPIPS
from lit_restore.metrics.suite import MetricSuite, aggregate, quantize

__all__ = [
    "LPIPS",
    "InceptionFeatures",
    "MetricSuite",
    "aggregate",
    "frechet_distance",
    "kernel_inception_distance",
    "prepare",
    "psnr",
    "quantize",
    "rgb_to_y",
    "ssim",
]
