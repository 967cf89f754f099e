"""Generic post-processing of restored images (model space [-1, 1], ``[B, C, H, W]``).

- Colour fixes that take the colours of a reference (usually the bicubic-upsampled LQ input),
  after IceClear/StableSR ``scripts/wavelet_color_fix.py``: :func:`wavelet_color_fix` (low
  frequencies of an à-trous pyramid from the reference; our own reflect padding) and
  :func:`adain_color_fix` (per-channel mean and std, AdaIN of Huang & Belongie 2017), selected by
  name with :func:`color_fix`.
- :func:`paste_known` — put the known pixels of an inpainting input back (ResShift's
  ``mask_back``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: Names accepted by :func:`color_fix` (``None`` = no fix).
COLOR_FIXES = ("wavelet", "adain")


def wavelet_color_fix(x: Tensor, ref: Tensor, levels: int = 5) -> Tensor:
    """Keep the high frequencies of ``x`` and take the low frequencies of ``ref``.

    A à-trous (dilated) 3×3 binomial pyramid of ``levels`` levels splits each image into
    high-frequency detail and a low-pass residual; the result is ``detail(x) + lowpass(ref)``.
    """

    def lowpass(img: Tensor) -> Tensor:
        k = torch.tensor([1.0, 2.0, 1.0], device=img.device, dtype=img.dtype)
        k = (k[:, None] * k[None, :] / 16).expand(img.shape[1], 1, 3, 3)
        for i in range(levels):
            d = 2**i
            pad = "reflect" if min(img.shape[-2:]) > d else "replicate"
            img = F.conv2d(F.pad(img, (d, d, d, d), mode=pad), k, dilation=d, groups=img.shape[1])
        return img

    return x - lowpass(x) + lowpass(ref)


def adain_color_fix(x: Tensor, ref: Tensor, eps: float = 1e-5) -> Tensor:
    """Match per-image, per-channel mean and std of ``x`` to ``ref``."""
    mx, sx = x.mean((2, 3), keepdim=True), x.std((2, 3), keepdim=True) + eps
    mr, sr = ref.mean((2, 3), keepdim=True), ref.std((2, 3), keepdim=True)
    return (x - mx) / sx * sr + mr


def check_color_fix(method: str | None) -> str | None:
    """``method`` if it names a colour fix (or is ``None``), else a ``ValueError``."""
    if method is not None and method not in COLOR_FIXES:
        raise ValueError(f"color_fix={method!r}: use null, 'wavelet' or 'adain'")
    return method


def color_fix(x: Tensor, ref: Tensor, method: str) -> Tensor:
    """Apply the colour fix ``method`` (:data:`COLOR_FIXES`) and clamp to [-1, 1]."""
    fix = {"wavelet": wavelet_color_fix, "adain": adain_color_fix}[check_color_fix(method)]
    return fix(x, ref).clamp(-1, 1)


def paste_known(x: Tensor, known: Tensor, mask: Tensor) -> Tensor:
    """``x`` with the pixels where ``mask`` is 1 replaced by ``known`` (``x·(1−m) + known·m``)."""
    return x * (1 - mask) + known * mask
