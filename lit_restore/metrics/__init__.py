"""Image-quality metrics (PSNR/SSIM/LPIPS/FID/KID) with offline weight resolution."""

from lit_restore.metrics.fid import (
    InceptionFeatures,
    frechet_distance,
    kernel_inception_distance,
)
from lit_restore.metrics.fidelity import prepare, psnr, rgb_to_y, ssim
from lit_restore.metrics.perceptual import LPIPS
from lit_restore.metrics.suite import MetricSuite, aggregate, quantize
from lit_restore.metrics.weights import (
    WEIGHT_FILES,
    MissingWeightsError,
    hub_checkpoint_dir,
    resolve_weights,
)

__all__ = [
    "LPIPS",
    "WEIGHT_FILES",
    "InceptionFeatures",
    "MetricSuite",
    "MissingWeightsError",
    "aggregate",
    "frechet_distance",
    "hub_checkpoint_dir",
    "kernel_inception_distance",
    "prepare",
    "psnr",
    "quantize",
    "resolve_weights",
    "rgb_to_y",
    "ssim",
]
