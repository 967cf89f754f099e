"""One configuration of "how results are scored", shared by the callback and ``score.py``.

``MetricSuite.per_image(restored, reference)`` returns ``{metric: [N] tensor}`` for images in
[0, 1]; ``features`` gives per-image FID features. Aggregates are always the **mean of the
per-image values** (see :func:`aggregate`); FID/KID are set-level and computed from features.
PSNR/SSIM honour ``crop_border``/``y_channel``; LPIPS and FID see the full RGB image (as in
ResShift's and DPS's evaluation scripts).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from lit_restore.metrics.fid import InceptionFeatures
from lit_restore.metrics.fidelity import psnr, ssim
from lit_restore.metrics.perceptual import LPIPS
from lit_restore.utils.tables import aggregate  # noqa: F401  (re-export)

PER_IMAGE_METRICS = ("psnr", "ssim", "lpips", "lpips_alex", "lpips_vgg")
#: direction of "better" for tables
HIGHER_IS_BETTER = {"psnr": True, "ssim": True}


def quantize(x: Tensor) -> Tensor:
    """Round [0,1] images to 8-bit levels (what a written PNG holds), in ``x``'s dtype.

    The level is decided in float32 (as :func:`lit_restore.data.io.save_png` decides it), so the
    quantised image equals the PNG; a float64 ``x`` then holds the level ``k/255`` exactly."""
    levels = (x.float().clamp(0, 1) * 255).round()
    return levels.to(x.dtype) / 255


class MetricSuite(nn.Module):
    """Builds the metric networks once (offline weights) and scores batches per image.

    Args:
        metrics: any of ``psnr``, ``ssim``, ``lpips`` (uses ``lpips_net``), ``lpips_alex``,
            ``lpips_vgg``.
        fid: also extract per-image Inception features for FID. ``kid`` adds KID.
        perceptual: ``False`` drops LPIPS/FID/KID (runs with no weight files at all).
        crop_border, y_channel: BasicSR conventions for PSNR/SSIM.
        quantize: round to 8 bits first, so in-run scores equal scores of the written PNGs.
        lpips_weights / inception_weights: explicit weight files (else the torch hub cache).
        lpips_module: injected ``(x, ref) -> [N]`` network (tests: random backbone).
        fid_features: injected ``images -> [N,D]`` module (tests: random features).
    """

    def __init__(
        self,
        metrics: Sequence[str] = ("psnr", "ssim", "lpips"),
        fid: bool = False,
        kid: bool = False,
        perceptual: bool = True,
        crop_border: int = 0,
        y_channel: bool = False,
        quantize: bool = True,
        lpips_net: str = "alex",
        lpips_weights: str | os.PathLike | None = None,
        inception_weights: str | os.PathLike | None = None,
        lpips_module: Callable[[Tensor, Tensor], Tensor] | None = None,
        fid_features: nn.Module | None = None,
    ) -> None:
        super().__init__()
        metrics = list(metrics)
        bad = [m for m in metrics if m not in PER_IMAGE_METRICS]
        if bad:
            raise ValueError(f"unknown metric(s) {bad}; choose from {list(PER_IMAGE_METRICS)}")
        if not perceptual:
            metrics = [m for m in metrics if not m.startswith("lpips")]
            fid = kid = False
        self.metrics = metrics
        self.fid, self.kid = fid, kid
        self.crop_border, self.y_channel, self.quantize = crop_border, y_channel, quantize
        self.lpips_nets = nn.ModuleDict()
        for m in metrics:
            if m.startswith("lpips"):
                net = lpips_net if m == "lpips" else m.split("_", 1)[1]
                if lpips_module is not None:
                    self.lpips_nets[m] = lpips_module
                else:
                    self.lpips_nets[m] = LPIPS(net, weights=lpips_weights)
        self.features = None
        if fid or kid:
            self.features = (
                fid_features if fid_features is not None else InceptionFeatures(inception_weights)
            )
            self.features.eval().requires_grad_(False)

    @property
    def set_metrics(self) -> list[str]:
        return (["fid"] if self.fid else []) + (["kid", "kid_std"] if self.kid else [])

    def _prep(self, x: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        x = x.to(dtype).clamp(0, 1)
        return quantize(x) if self.quantize else x

    @torch.no_grad()
    def per_image(self, restored: Tensor, reference: Tensor) -> dict[str, Tensor]:
        """Per-image values for [N,C,H,W] images in [0,1].

        PSNR/SSIM are computed in float64 (a function of the two images alone, whatever the
        batch); the LPIPS networks run in float32."""
        x, ref = self._prep(restored), self._prep(reference)
        x64, ref64 = self._prep(restored, torch.float64), self._prep(reference, torch.float64)
        out: dict[str, Tensor] = {}
        for m in self.metrics:
            if m == "psnr":
                out[m] = psnr(x64, ref64, self.crop_border, self.y_channel)
            elif m == "ssim":
                out[m] = ssim(x64, ref64, self.crop_border, self.y_channel)
            else:
                out[m] = self.lpips_nets[m](x, ref).reshape(-1).double()
        return {k: v.detach().cpu() for k, v in out.items()}

    @torch.no_grad()
    def image_features(self, images: Tensor) -> Tensor:
        """[N,D] float32 features of [0,1] images (FID/KID)."""
        if self.features is None:
            raise RuntimeError("FID features requested but fid/kid is off")
        return self.features(self._prep(images)).float().reshape(images.shape[0], -1).cpu()

    def set_level(self, fake: Tensor, real: Tensor) -> dict[str, float]:
        """FID/KID between restored (fake) and reference (real) feature sets."""
        from lit_restore.metrics.fid import frechet_distance, kernel_inception_distance

        out: dict[str, float] = {}
        if fake.shape[0] < 2:
            return out
        if self.fid:
            out["fid"] = frechet_distance(fake, real)
        if self.kid:
            out["kid"], out["kid_std"] = kernel_inception_distance(fake, real)
        return out
