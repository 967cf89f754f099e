"""Fourier phase retrieval (nonlinear): ``y = |F P x|``, the DPS paper's operator.

Chung et al., "Diffusion Posterior Sampling for General Noisy Inverse Problems" (ICLR 2023) §4;
DPS2022/diffusion-posterior-sampling ``guided_diffusion/measurements.py::PhaseRetrievalOperator``
with ``util/img_utils.py::fft2_m`` → ``util/fastmri_utils.py::fft2c_new``:

- ``P`` zero-pads the image by ``pad = ⌊oversample/8 · 256⌋`` pixels on every side (``oversample``
  2.0 in ``configs/phase_retrieval_config.yaml``: 64 px around a 256-px image). The official code
  fixes the 256; here the padding scales with the image (``⌊oversample/8 · H⌋`` rows,
  ``⌊oversample/8 · W⌋`` columns), which is the official value at 256 px;
- ``F`` is the centred orthonormal 2-D DFT: ``fftshift(fft2(ifftshift(·), norm="ortho"))``;
- ``y`` is its modulus, per channel, on the model-space image ([-1, 1], as the official code
  measures the normalised image).

The modulus is invariant to a global sign, translations and the conjugate flip, so restorations
are judged up to those (the DPS paper reports the best of several runs for this reason).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_restore.operators.base import Operator


class PhaseRetrieval(Operator):
    """``y = |F P x|`` (module docstring).

    Args:
        oversample: the DPS ``oversample`` (padding ``⌊oversample/8 · size⌋`` per side).
    """

    def __init__(self, oversample: float = 2.0) -> None:
        super().__init__()
        if oversample < 0:
            raise ValueError(f"PhaseRetrieval oversample={oversample} must be >= 0")
        self.oversample = float(oversample)

    def pad(self, size: int) -> int:
        """Zero padding on each side of an image side of ``size`` pixels."""
        return int(self.oversample / 8.0 * size)

    def A(self, x: Tensor) -> Tensor:
        ph, pw = self.pad(x.shape[-2]), self.pad(x.shape[-1])
        padded = F.pad(x, (pw, pw, ph, ph))
        dims = (-2, -1)
        spectrum = torch.fft.fftshift(
            torch.fft.fft2(torch.fft.ifftshift(padded, dim=dims), norm="ortho"), dim=dims
        )
        return spectrum.abs()

    def _side(self, measured: int) -> int:
        """The image side whose padded side is ``measured``."""
        guess = int(measured / (1 + self.oversample / 4))
        for side in range(max(1, guess - 2), guess + 3):
            if side + 2 * self.pad(side) == measured:
                return side
        raise ValueError(
            f"PhaseRetrieval(oversample={self.oversample}): no image side pads to {measured}"
        )

    def image_shape_for(self, y: Tensor) -> tuple[int, ...]:
        return (*y.shape[:-2], self._side(y.shape[-2]), self._side(y.shape[-1]))

    def to_image(self, y: Tensor) -> Tensor:
        """A viewable measurement: ``log(1 + y)`` scaled per image to [-1, 1]."""
        v = torch.log1p(y)
        peak = v.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return v / peak * 2 - 1

    def extra_repr(self) -> str:
        return f"oversample={self.oversample}"
