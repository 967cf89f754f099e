"""Super-resolution operators: bicubic (Keys / MATLAB) and average-pool downscaling.

Both are separable, so each has an exact SVD (:mod:`.separable`) and an exact pseudo-inverse.
Measurement ``y`` has shape ``[B, C, H/f, W/f]``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .base import LinearOperator, per_image
from .separable import SeparableCache, SeparableSVD, avgpool_matrix, cubic_downsample_matrix


class SeparableOperator(LinearOperator):
    """A channel-wise separable operator ``X ↦ Aₕ X A_wᵀ`` whose 1-D matrices depend on the size.

    Subclasses implement :meth:`matrices`, :meth:`out_size` and :meth:`in_size`. ``A``, ``adjoint``,
    ``pinv`` and ``pinv_reg`` take the size from their argument; ``V``, ``U`` and ``singulars`` use
    :attr:`image_shape` (:meth:`~.base.LinearOperator.at`, or ``image_size`` and ``channels``
    given here). The SVD of each image shape is built once and cached.
    """

    has_svd = True

    def __init__(
        self,
        threshold: float = 0.0,
        image_size: int | tuple[int, int] | None = None,
        channels: int = 3,
    ) -> None:
        super().__init__()
        self.threshold = float(threshold)
        self.cache = SeparableCache(self.matrices, threshold)
        if image_size is not None:
            hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
            self.image_shape = (int(channels), int(hw[0]), int(hw[1]))
            self.cache.get(self.image_shape)

    def matrices(self, h: int, w: int) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        raise NotImplementedError

    def in_size(self, h: int, w: int) -> tuple[int, int]:
        """Image size that produces a measurement of size ``(h, w)``."""
        raise NotImplementedError

    # ---------------------------------------------------------------- plumbing
    def _svd_x(self, x: Tensor) -> SeparableSVD:
        return self.cache.get(tuple(x.shape[1:]))

    def _svd_y(self, y: Tensor) -> SeparableSVD:
        return self.cache.get((y.shape[1], *self.in_size(*y.shape[-2:])))

    def _svd(self) -> SeparableSVD:
        return self.cache.get(self._shape())

    def check_image_shape(self, shape: tuple[int, int, int]) -> None:
        self.cache.get(shape)  # builds the SVD; raises ValueError for an incompatible size

    def measurement_shape(self, x_shape) -> tuple[int, ...]:
        return (*x_shape[:-2], *self.out_size(*x_shape[-2:]))

    # ---------------------------------------------------------------- operator
    def A(self, x: Tensor) -> Tensor:
        return self._svd_x(x).A(x)

    def adjoint(self, y: Tensor) -> Tensor:
        return self._svd_y(y).adjoint(y)

    def pinv(self, y: Tensor) -> Tensor:
        return self._svd_y(y).pinv(y)

    def pinv_reg(self, y: Tensor, eta: float | Tensor) -> Tensor:
        return self._svd_y(y).pinv_reg(y, eta)

    def Vt(self, x: Tensor) -> Tensor:
        return self._svd_x(x).Vt(x)

    def V(self, z: Tensor) -> Tensor:
        return self._svd().V(z)

    def Ut(self, y: Tensor) -> Tensor:
        return self._svd_y(y).Ut(y)

    def U(self, z: Tensor) -> Tensor:
        return self._svd().U(z)

    def singulars(self) -> Tensor:
        return self._svd().singulars()

    def measured(self) -> Tensor:
        return self._svd().measured()

    def to_image(self, y: Tensor) -> Tensor:
        return y


class BicubicSR(SeparableOperator):
    """Bicubic downscaling by an integer ``factor`` (×2/×4/×8) with an exact SVD.

    ``mode="keys"``: DDRM/DDNM/DDPG ``SRConv`` (Keys cubic, a=−0.5, ``4·factor`` taps, reflective
    padding, ``functions/svd_replacement.py``). ``mode="matlab"``: MATLAB ``imresize`` antialiased
    downscaling as DPS's ``Resizer`` (kernel stretched by the factor, symmetric padding). Both build
    1-D matrices (:func:`~.separable.cubic_downsample_matrix`) and ``A = A₁ X A₁ᵀ`` per channel;
    for even factors they are identical. DPS's ``transpose`` is nearest upsampling; ours is the
    exact adjoint.

    Args:
        factor: integer downscaling factor.
        mode: "keys" or "matlab".
        threshold: 1-D singular values below it are zeroed and ``A`` is the truncated operator
            (DDRM's ``ZERO = 3e-2``; for bicubic SR no 1-D singular value is that small, so it does
            not change ``A``). Use 0 to keep every singular value.
        image_size, channels: fix the image shape of the SVD view (optional; otherwise
            :meth:`~.base.LinearOperator.at` gives it).
    """

    def __init__(
        self,
        factor: int = 4,
        mode: str = "keys",
        threshold: float = 3e-2,
        image_size: int | tuple[int, int] | None = None,
        channels: int = 3,
    ) -> None:
        if int(factor) != factor or factor < 1:
            raise ValueError(f"BicubicSR factor must be a positive integer, got {factor}")
        if mode not in ("keys", "matlab"):
            raise ValueError(f"BicubicSR mode must be 'keys' or 'matlab', got {mode!r}")
        self.factor, self.mode = int(factor), mode
        super().__init__(threshold, image_size, channels)

    def matrices(self, h: int, w: int) -> tuple[Tensor, Tensor]:
        return (
            cubic_downsample_matrix(h, self.factor, self.mode),
            cubic_downsample_matrix(w, self.factor, self.mode),
        )

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        return h // self.factor, w // self.factor

    def in_size(self, h: int, w: int) -> tuple[int, int]:
        return h * self.factor, w * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}, mode={self.mode!r}, threshold={self.threshold}"


class AvgPoolSR(SeparableOperator):
    """Average pooling over ``factor × factor`` blocks (DDNM/DDPG ``sr_averagepooling``).

    Separable with 1-D rows of ``1/factor``; each 1-D singular value is ``1/√factor``, so every
    2-D singular value is ``1/factor`` (the norm of one ``1×factor²`` averaging row). ``A`` and
    ``A⁺`` use pooling and block replication directly (``A⁺ = f²·Aᵀ`` = replication); the SVD view
    comes from :class:`~.separable.SeparableSVD`.
    """

    def __init__(
        self,
        factor: int = 4,
        image_size: int | tuple[int, int] | None = None,
        channels: int = 3,
    ) -> None:
        if int(factor) != factor or factor < 1:
            raise ValueError(f"AvgPoolSR factor must be a positive integer, got {factor}")
        self.factor = int(factor)
        super().__init__(0.0, image_size, channels)

    def matrices(self, h: int, w: int) -> tuple[Tensor, Tensor]:
        return avgpool_matrix(h, self.factor), avgpool_matrix(w, self.factor)

    def out_size(self, h: int, w: int) -> tuple[int, int]:
        return h // self.factor, w // self.factor

    def in_size(self, h: int, w: int) -> tuple[int, int]:
        return h * self.factor, w * self.factor

    def A(self, x: Tensor) -> Tensor:
        f = self.factor
        if x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(f"image size {tuple(x.shape[-2:])} is not divisible by factor {f}")
        return F.avg_pool2d(x, f)

    def adjoint(self, y: Tensor) -> Tensor:
        f = self.factor
        return y.repeat_interleave(f, -2).repeat_interleave(f, -1) / (f * f)

    def pinv(self, y: Tensor) -> Tensor:
        f = self.factor
        return y.repeat_interleave(f, -2).repeat_interleave(f, -1)

    def pinv_reg(self, y: Tensor, eta: float | Tensor) -> Tensor:
        # A Aᵀ = I / f², so Aᵀ (A Aᵀ + η)⁻¹ y = Aᵀ y / (1/f² + η).
        f2 = float(self.factor**2)
        return self.adjoint(y) / (1.0 / f2 + per_image(eta, y))

    def extra_repr(self) -> str:
        return f"factor={self.factor}"
