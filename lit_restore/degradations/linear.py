"""An operator plus measurement noise, ``y = A x + n`` — every zero-shot protocol.

The operator is usually linear; a nonlinear one (JPEG, phase retrieval, the DPS paper's
nonlinear blur) is degraded the same way and restored by the methods that accept it (DPS, SaFaRI).

Per image: the operator's random parameters (a motion kernel, an inpainting mask) are drawn
first, then the noise, both from the image's generator::

    params = operator.sample_params(g, (C, H, W))
    y      = noise(operator.bind(params).A(hq), g)
    lq     = operator.bind(params).to_image(y)        # e.g. the LQ image of SR, the masked image
    mask   = params["mask"]                           # inpainting operators only

The datamodule hands the *same* operator and noise objects to the model (the CLI attaches them),
so measurement and guidance can never disagree.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_restore.degradations.base import Degradation, Degraded
from lit_restore.operators.base import Operator
from lit_restore.operators.noise import NoiseModel, NoNoise


class LinearDegradation(Degradation):
    """``y = A x + n`` with per-image operator parameters (module docstring).

    Args:
        operator: the operator, linear or not (its parameters are drawn per image).
        noise: the measurement noise model (default: none).
    """

    def __init__(self, operator: Operator, noise: NoiseModel | None = None) -> None:
        self.operator = operator
        self.noise = noise if noise is not None else NoNoise()

    def degrade(self, hq: Tensor, generator: torch.Generator) -> Degraded:
        params = self.operator.sample_params(generator, tuple(hq.shape))
        bound = self.operator.bind({k: v[None] for k, v in params.items()})
        with torch.no_grad():
            y = self.noise(bound.A(hq[None]), generator)
            lq = bound.to_image(y)
        mask = params.get("mask")
        if mask is not None and mask.dim() == 2:
            mask = mask[None]
        return Degraded(y=y[0], lq=lq[0], mask=mask, params=params)

    def check_image_shape(self, shape: tuple[int, int, int]) -> None:
        self.operator.at(shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.operator!r}, {self.noise!r})"
