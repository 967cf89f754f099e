"""Measurement noise models, ``y = A x + n``.

Convention: noise levels are given in **[0, 1] image units**; tensors live in model
space [-1, 1], so a Gaussian of ``sigma`` in image units has std ``2·sigma`` in model space.
DPS's ``sigma: 0.05`` is applied on [-1, 1] (DPS issue #6), i.e. ``sigma=0.025`` here; DDRM,
DDNM, DDPG and FDGR double their CLI value before use, so their ``--sigma_y 0.05`` is
``sigma=0.05`` here.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class NoiseModel(nn.Module):
    """Base class: ``forward(y, generator)`` returns a noisy copy of ``y`` (model space)."""

    #: standard deviation in [0, 1] image units (0 for noiseless); used by samplers.
    sigma: float = 0.0

    @property
    def model_sigma(self) -> float:
        """Standard deviation in model space [-1, 1] (twice ``sigma``)."""
        return 2.0 * float(self.sigma)

    def forward(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError


class NoNoise(NoiseModel):
    """Noiseless measurement."""

    def forward(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return y


class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise of std ``sigma`` in [0, 1] image units.

    Args:
        sigma: standard deviation relative to the [0, 1] range (``0.05`` = 5 % of the range).
    """

    def __init__(self, sigma: float = 0.05) -> None:
        super().__init__()
        if sigma < 0:
            raise ValueError(f"noise sigma must be >= 0, got {sigma}")
        self.sigma = float(sigma)

    def forward(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.sigma == 0:
            return y
        z = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
        return y + self.model_sigma * z

    def extra_repr(self) -> str:
        return f"sigma={self.sigma} (image units; {self.model_sigma} in [-1,1])"


class PoissonNoise(NoiseModel):
    """Poisson (shot) noise: ``x01 ~ Poisson(rate · x01) / rate`` on [0, 1] intensities.

    ``rate`` is the photon count at full intensity (DPS ``measurements.py`` uses ``rate=1.0``
    with the same form). The equivalent Gaussian std is reported as ``sigma`` ≈ ``sqrt(0.5/rate)``
    (at mid-grey) so that noise-aware samplers get a sensible level.
    """

    def __init__(self, rate: float = 1.0) -> None:
        super().__init__()
        if rate <= 0:
            raise ValueError(f"Poisson rate must be > 0, got {rate}")
        self.rate = float(rate)
        self.sigma = (0.5 / self.rate) ** 0.5

    def forward(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x01 = ((y + 1) / 2).clamp_min(0)
        counts = torch.poisson(x01 * self.rate, generator=generator)
        return counts / self.rate * 2 - 1

    def extra_repr(self) -> str:
        return f"rate={self.rate}"
