"""Per-image PSNR and SSIM on [0, 1] images, with the BasicSR conventions as options.

* ``data_range = 1`` always (torchmetrics would otherwise infer SSIM's range per batch).
* ``crop_border = N`` shaves N pixels off every side before scoring (BasicSR ``crop_border``;
  ResShift/SR papers use the scale factor).
* ``y_channel = True`` scores the BT.601 luma of BasicSR ``rgb2ycbcr_pt(y_only=True)``:
  ``Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255`` for RGB in [0, 1].
* Each function returns one value **per image**; a dataset score is the *mean of the per-image
  values* (the papers' convention), not the PSNR of the pooled MSE.
* Scores are computed in **float64**, so a score is a function of the two images alone: float32
  reduction order (batch size, thread count, DDP ranks) would otherwise move SSIM by ~1e-7 between
  runs of identical images. Two runs then disagree only where their restorations differ.

PSNR: ``10 log10(1 / mean((x - y)^2))`` over C,H,W of one image. SSIM: Wang et al. 2004 with an
11×11 Gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03; the SSIM map comes from torchmetrics
``structural_similarity_index_measure(return_full_image=True)`` and is averaged over the *valid*
region only (windows wholly inside the image, as BasicSR's MATLAB-compatible ``calculate_ssim``
— torchmetrics' own mean also counts the reflect-padded border) and over channels; this agrees
with ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)`` (see ``tests/test_metrics.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

_Y_WEIGHTS = (65.481, 128.553, 24.966)
_SSIM_PAD = 5  # half-width of the 11-tap Gaussian window (int(3.5 * 1.5 + 0.5))


def rgb_to_y(x: Tensor) -> Tensor:
    """BT.601 luma of BasicSR (``rgb2ycbcr_pt``, y_only): [N,3,H,W] in [0,1] -> [N,1,H,W].

    Grayscale input ([N,1,H,W]) is returned unchanged (it already is the luma)."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"y_channel needs RGB images, got {x.shape[1]} channel(s)")
    w = torch.tensor(_Y_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return ((x * w).sum(1, keepdim=True) + 16.0) / 255.0


def prepare(x: Tensor, crop_border: int = 0, y_channel: bool = False) -> Tensor:
    """Shave ``crop_border`` pixels and optionally convert to Y (the order BasicSR uses)."""
    if x.ndim != 4:
        raise ValueError(f"expected [N,C,H,W] images, got shape {tuple(x.shape)}")
    if crop_border:
        if 2 * crop_border >= min(x.shape[-2:]):
            raise ValueError(f"crop_border={crop_border} leaves nothing of a {x.shape[-2:]} image")
        x = x[..., crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        x = rgb_to_y(x)
    return x


def _check(x: Tensor, ref: Tensor) -> None:
    if x.shape != ref.shape:
        raise ValueError(f"restored {tuple(x.shape)} and reference {tuple(ref.shape)} differ")


def psnr(x: Tensor, ref: Tensor, crop_border: int = 0, y_channel: bool = False) -> Tensor:
    """Per-image PSNR in dB of [0,1] images -> [N] (``inf`` for identical images)."""
    _check(x, ref)
    x, ref = (
        prepare(x.double(), crop_border, y_channel),
        prepare(ref.double(), crop_border, y_channel),
    )
    return peak_signal_noise_ratio(x, ref, data_range=1.0, reduction="none", dim=(1, 2, 3))


def ssim(x: Tensor, ref: Tensor, crop_border: int = 0, y_channel: bool = False) -> Tensor:
    """Per-image SSIM of [0,1] images -> [N]."""
    _check(x, ref)
    x, ref = (
        prepare(x.double(), crop_border, y_channel),
        prepare(ref.double(), crop_border, y_channel),
    )
    if min(x.shape[-2:]) <= 2 * _SSIM_PAD:
        raise ValueError(f"SSIM needs images larger than 11x11 after cropping, got {x.shape[-2:]}")
    _, ssim_map = structural_similarity_index_measure(
        x,
        ref,
        data_range=1.0,
        gaussian_kernel=True,
        sigma=1.5,
        reduction="none",
        return_full_image=True,
    )
    # valid region only: windows that lie wholly inside the image (BasicSR / MATLAB / skimage)
    p = _SSIM_PAD
    return ssim_map[..., p:-p, p:-p].mean(dim=(1, 2, 3))
