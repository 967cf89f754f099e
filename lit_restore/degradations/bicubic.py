"""MATLAB bicubic resizing and the deterministic bicubic-downscaling degradation.

:func:`imresize` is MATLAB ``imresize`` (bicubic, Keys a = −0.5, antialiased when shrinking,
half-sample symmetric boundary) written as two separable resampling matrices built by
:func:`lit_restore.operators.separable.imresize_matrix` — the same builder as the
``BicubicSR(mode="matlab")`` operator. :class:`BicubicDegradation` is ResShift's bicubic SR data
(zsyOAOA/ResShift ``configs/bicx4_swinunet_lpips.yaml``: LQ = ``imresize(HQ, 1/sf)`` on [0, 1]
images, clamped), applied here per image in the datamodule.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lit_restore.degradations.base import Degradation, Degraded
from lit_restore.operators.separable import imresize_matrix


def imresize(
    x: Tensor,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
) -> Tensor:
    """MATLAB-style bicubic resize of ``[..., H, W]`` by ``scale`` (or to ``size``)."""
    h, w = x.shape[-2:]
    if size is None:
        if scale is None:
            raise ValueError("imresize: give scale or size")
        size = (math.ceil(h * scale), math.ceil(w * scale))
    sh = scale if scale is not None else size[0] / h
    sw = scale if scale is not None else size[1] / w
    mh = imresize_matrix(h, size[0], sh, antialias).to(x.device, torch.float32)
    mw = imresize_matrix(w, size[1], sw, antialias).to(x.device, torch.float32)
    return torch.einsum("oh,...hw,pw->...op", mh, x.float(), mw).to(x.dtype)


class BicubicDegradation(Degradation):
    """LQ = MATLAB ``imresize(hq, 1/sf)`` on [0, 1] intensities, clamped; ``y = lq``.

    Deterministic (the generator is not used). Unlike the ``BicubicSR`` operator it is not
    meant for zero-shot guidance (no SVD truncation, clamped): it is the training and
    evaluation data of models that learn bicubic SR (ResShift ``BicSR``).

    Args:
        sf: integer downscaling factor (the image sides must be multiples of it).
    """

    def __init__(self, sf: int = 4) -> None:
        if int(sf) != sf or sf < 1:
            raise ValueError(f"BicubicDegradation sf must be a positive integer, got {sf}")
        self.sf = int(sf)

    def check_image_shape(self, shape: tuple[int, int, int]) -> None:
        if shape[-2] % self.sf or shape[-1] % self.sf:
            raise ValueError(
                f"image size {shape[-2]}×{shape[-1]} is not divisible by the scale factor "
                f"sf={self.sf}"
            )

    def degrade(self, hq: Tensor, generator: torch.Generator | None = None) -> Degraded:
        self.check_image_shape(tuple(hq.shape))
        lq = imresize((hq.float() + 1) / 2, 1.0 / self.sf).clamp(0, 1) * 2 - 1
        lq = lq.to(hq.dtype)
        return Degraded(y=lq, lq=lq)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sf={self.sf})"
