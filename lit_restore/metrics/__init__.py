"""Image-quality metrics: a registry (full-reference, no-reference, set-level), PSNR/SSIM/LPIPS/
FID/KID, the no-reference NIQE (ours), MUSIQ/MANIQA/CLIP-IQA (IQA-PyTorch, optional) and CLIP-IQA
(torchmetrics), and the scorer the evaluation tools share; their weights are resolved offline by
:mod:`lit_restore.weights`."""

from lit_restore.metrics.fid import (
    InceptionFeatures,
    frechet_distance,
    kernel_inception_distance,
)
from lit_restore.metrics.fidelity import prepare, psnr, rgb_to_y, ssim
from lit_restore.metrics.niqe import NIQE
from lit_restore.metrics.perceptual import LPIPS
from lit_restore.metrics.registry import (
    ALIASES,
    FEATURES,
    METRICS,
    FeatureSpec,
    MetricOptions,
    MetricSpec,
    get_metric,
    register,
)
from lit_restore.metrics.scorer import MetricSuite, quantize
from lit_restore.utils.tables import aggregate

__all__ = [
    "ALIASES",
    "FEATURES",
    "LPIPS",
    "METRICS",
    "NIQE",
    "FeatureSpec",
    "InceptionFeatures",
    "MetricOptions",
    "MetricSpec",
    "MetricSuite",
    "aggregate",
    "frechet_distance",
    "get_metric",
    "kernel_inception_distance",
    "prepare",
    "psnr",
    "quantize",
    "register",
    "rgb_to_y",
    "ssim",
]
