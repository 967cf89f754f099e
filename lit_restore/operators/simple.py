"""Pointwise operators: denoising (identity) and colorization (RGB → one gray channel)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import LinearOperator, per_image

#: DDRM/DDNM/DDPG ``Colorization`` weights (``svd_replacement.py``): a near-uniform mean.
DDNM_WEIGHTS = (0.3333, 0.3334, 0.3333)
#: ITU-R BT.601 luma.
BT601_WEIGHTS = (0.299, 0.587, 0.114)


class _Pointwise(LinearOperator):
    """Operators whose SVD view is the same at every pixel; ``image_size``/``channels`` fix the
    image shape of the view (optional; otherwise :meth:`~.base.LinearOperator.at` gives it)."""

    has_svd = True

    def __init__(self, image_size: int | tuple[int, int] | None, channels: int) -> None:
        super().__init__()
        self.register_buffer("probe", torch.zeros(()), persistent=False)  # dtype/device tracker
        if image_size is not None:
            hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
            self.image_shape = (int(channels), int(hw[0]), int(hw[1]))


class Denoising(_Pointwise):
    """``A = I``: every singular value is 1, ``A⁺ = I``, ``pinv_reg(y, η) = y/(1+η)``."""

    def __init__(self, image_size: int | tuple[int, int] | None = None, channels: int = 3) -> None:
        super().__init__(image_size, channels)

    def measurement_shape(self, x_shape) -> tuple[int, ...]:
        return tuple(x_shape)

    def A(self, x: Tensor) -> Tensor:
        return x

    def adjoint(self, y: Tensor) -> Tensor:
        return y

    def pinv(self, y: Tensor) -> Tensor:
        return y

    def pinv_reg(self, y: Tensor, eta: float | Tensor) -> Tensor:
        return y / (1 + per_image(eta, y))

    def Vt(self, x: Tensor) -> Tensor:
        return x.flatten(1)

    def V(self, z: Tensor) -> Tensor:
        return z.view(z.shape[0], *self._shape())

    def Ut(self, y: Tensor) -> Tensor:
        return y.flatten(1)

    def U(self, z: Tensor) -> Tensor:
        return z.view(z.shape[0], *self._shape())

    def singulars(self) -> Tensor:
        c, h, w = self._shape()
        return torch.ones(c * h * w, device=self.probe.device, dtype=self.probe.dtype)


class Colorization(_Pointwise):
    """Gray-scale measurement ``y = Σ_c w_c x_c`` (``[B, 1, H, W]``) of an RGB image.

    ``weights="ddnm"`` is DDRM/DDNM/DDPG's ``[0.3333, 0.3334, 0.3333]``; ``"bt601"`` is standard
    luma ``[0.299, 0.587, 0.114]``; or give three numbers. Per pixel ``A`` is the row ``w``, so its
    SVD is ``U = 1``, ``s = ‖w‖``, and ``V`` an orthonormal 3×3 basis whose first vector is
    ``w/‖w‖``. Spectral layout: the ``H·W`` luma coordinates first, then the ``2·H·W`` chroma (null)
    coordinates. ``A⁺y = w y/‖w‖²`` — for the DDNM weights this replicates ``y`` into the three
    channels (up to 2e-4). :meth:`to_image` replicates the gray channel for display.
    """

    def __init__(
        self,
        weights: str | tuple[float, float, float] = "ddnm",
        image_size: int | tuple[int, int] | None = None,
    ) -> None:
        super().__init__(image_size, 3)
        if isinstance(weights, str):
            table = {"ddnm": DDNM_WEIGHTS, "bt601": BT601_WEIGHTS}
            if weights not in table:
                raise ValueError(
                    f"colorization weights must be 'ddnm', 'bt601' or 3 numbers, got {weights!r}"
                )
            weights = table[weights]
        w = torch.tensor(weights, dtype=torch.float64)
        if w.shape != (3,) or w.norm() == 0:
            raise ValueError(f"colorization weights must be 3 numbers, not all 0; got {weights}")
        self.register_buffer("weights", w.float())

    def _svd(self, like: Tensor) -> tuple[Tensor, float]:
        """Orthonormal basis ``[3, 3]`` with first column ``w/‖w‖`` and ``‖w‖``, computed in
        float64 from the weights buffer (so a float64 operator is orthonormal to 1e-16)."""
        w = self.weights.double().cpu()
        _, s, vh = torch.linalg.svd(w[None], full_matrices=True)
        basis = vh.T * torch.sign(vh[0] @ w)  # column 0 = +w/‖w‖
        return basis.to(dtype=like.dtype, device=like.device), float(s[0])

    def measurement_shape(self, x_shape) -> tuple[int, ...]:
        return (*x_shape[:-3], 1, *x_shape[-2:])

    def _check(self, x: Tensor) -> None:
        self.check_image_shape(tuple(x.shape[1:]))

    def check_image_shape(self, shape: tuple[int, int, int]) -> None:
        if shape[0] != 3:
            raise ValueError(f"Colorization needs 3-channel images, got {shape[0]} channels")

    def _w(self, like: Tensor) -> Tensor:
        return self.weights.to(dtype=like.dtype, device=like.device).view(1, 3, 1, 1)

    def A(self, x: Tensor) -> Tensor:
        self._check(x)
        return (x * self._w(x)).sum(1, keepdim=True)

    def adjoint(self, y: Tensor) -> Tensor:
        return y * self._w(y)

    def pinv(self, y: Tensor) -> Tensor:
        return y * self._w(y) / self._svd(y)[1] ** 2

    def pinv_reg(self, y: Tensor, eta: float | Tensor) -> Tensor:
        return y * self._w(y) / (self._svd(y)[1] ** 2 + per_image(eta, y))

    def Vt(self, x: Tensor) -> Tensor:
        self._check(x)
        basis = self._svd(x)[0]
        z = torch.einsum("bchw,ck->bkhw", x, basis)  # per pixel: Vᵀ x_pixel
        return z.flatten(1)

    def V(self, z: Tensor) -> Tensor:
        _, h, w = self._shape()
        basis = self._svd(z)[0]
        return torch.einsum("bkhw,ck->bchw", z.view(z.shape[0], 3, h, w), basis)

    def Ut(self, y: Tensor) -> Tensor:
        flat = y.flatten(1)
        out = flat.new_zeros(flat.shape[0], 3 * flat.shape[1])
        out[:, : flat.shape[1]] = flat
        return out

    def U(self, z: Tensor) -> Tensor:
        _, h, w = self._shape()
        return z[:, : h * w].reshape(z.shape[0], 1, h, w)

    def singulars(self) -> Tensor:
        _, h, w = self._shape()
        s = torch.zeros(3 * h * w, device=self.probe.device, dtype=self.probe.dtype)
        s[: h * w] = self._svd(s)[1]
        return s

    def to_image(self, y: Tensor) -> Tensor:
        return y.repeat(1, 3, 1, 1)

    def extra_repr(self) -> str:
        return f"weights={self.weights.tolist()}"
