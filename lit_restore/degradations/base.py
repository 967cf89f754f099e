"""The degradation protocol: a clean image → measurement, viewable low-quality image, mask.

Every model — zero-shot or trained — is fed by :class:`~lit_restore.data.RestorationDataModule`,
which degrades each clean image ``hq`` (``[C, H, W]`` in model space [-1, 1]) with one
:class:`Degradation` and a generator of its own::

    evaluation:  g = image_generator(seed, index, STREAM_DEGRADATION)
    training:    g = image_generator(seed, index, STREAM_DEGRADATION + 1000·(epoch + 1))
    degraded = degradation(hq, g)        # Degraded(y, lq, mask, params)

Every random choice (kernels, masks, noise, JPEG quality, ...) comes from ``g``, so an image
degrades the same way in any batch, on any rank, in any rerun. The fields
(:class:`Degraded`) become the batch keys of :mod:`lit_restore.modules.base`:

- ``y`` — the measurement (operator-shaped: what zero-shot samplers invert);
- ``lq`` — a viewable low-quality image ``[C, h, w]`` (what trained models such as ResShift
  consume, and what grids show);
- ``mask`` — ``[1, H, W]``, 1 = known pixel (inpainting only);
- ``params`` — per-image operator parameters (bind them with ``operator.bind``).

Implementations: :class:`~lit_restore.degradations.linear.LinearDegradation` (a linear operator
plus noise: every zero-shot protocol and masks), :class:`~lit_restore.degradations.bicubic.BicubicDegradation`
(MATLAB bicubic) and :class:`~lit_restore.degradations.realesrgan.RealESRGANDegradation`
(Real-ESRGAN's second-order pipeline).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Degraded:
    """One degraded image (or a batch of them, with a leading batch dimension)."""

    y: Tensor
    lq: Tensor
    mask: Tensor | None = None
    params: dict[str, Tensor] = field(default_factory=dict)


class Degradation:
    """Base class: ``degradation(hq, generator) -> Degraded`` for one image in model space."""

    def degrade(self, hq: Tensor, generator: torch.Generator) -> Degraded:
        """Degrade one clean image ``hq`` (``[C, H, W]`` in [-1, 1]); all randomness from
        ``generator``."""
        raise NotImplementedError

    def __call__(self, hq: Tensor, generator: torch.Generator) -> Degraded:
        return self.degrade(hq, generator)

    def check_image_shape(self, shape: tuple[int, int, int]) -> None:
        """Raise ``ValueError`` (saying why) if images of ``shape`` (C, H, W) cannot be degraded.

        The datamodule calls it when the config is read (with the crop size) and per image when
        there is no crop, so a size mismatch is reported with the option or file to fix."""

    def degrade_batch(self, hq: Tensor, generators: Sequence[torch.Generator]) -> Degraded:
        """Degrade a batch ``[B, C, H, W]`` image by image (image ``b`` with ``generators[b]``)
        and stack the results; ``params`` are stacked per key."""
        if len(generators) != hq.shape[0]:
            raise ValueError(f"{len(generators)} generators for a batch of {hq.shape[0]}")
        items = [self.degrade(x, g) for x, g in zip(hq, generators)]
        masks = [it.mask for it in items]
        return Degraded(
            y=torch.stack([it.y for it in items]),
            lq=torch.stack([it.lq for it in items]),
            mask=None if masks[0] is None else torch.stack(masks),
            params={k: torch.stack([it.params[k] for it in items]) for k in items[0].params},
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
