"""Image-quality metrics: a registry (full-reference, no-reference, set-level), PSNR/SSIM/LPIPS/
FID/KID, the scorer the evaluation tools share, and offline weight resolution."""

from lit_restore.metrics.fid import (
    InceptionFeatures,
    frechet_distance,
    kernel_inception_distance,
)
from lit_restore.metrics.fidelity import prepare, psnr, rgb_to_y, ssim
from lit_restore.metrics.perceptual import LPIPS
from lit_restore.metrics.registry import (
    FEATURES,
    METRICS,
    FeatureSpec,
    MetricOptions,
    MetricSpec,
    get_metric,
    register,
)
from lit_restore.metrics.scorer import MetricSuite, quantize
from lit_restore.metrics.weights import (
    WEIGHT_FILES,
    MissingWeightsError,
    hub_checkpoint_dir,
    resolve_weights,
)
from lit_restore.utils.tables import aggregate

__all__ = [
    "FEATURES",
    "LPIPS",
    "METRICS",
    "WEIGHT_FILES",
    "FeatureSpec",
    "InceptionFeatures",
    "MetricOptions",
    "MetricSpec",
    "MetricSuite",
    "MissingWeightsError",
    "aggregate",
    "frechet_distance",
    "get_metric",
    "hub_checkpoint_dir",
    "kernel_inception_distance",
    "prepare",
    "psnr",
    "quantize",
    "register",
    "resolve_weights",
    "rgb_to_y",
    "ssim",
]
