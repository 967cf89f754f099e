"""Deblurring operators: a 2-D kernel applied channel-wise, ``y = k ⋆ x`` (same size as ``x``).

Orientation: ``y[p] = Σ_u k[u] · x[p + u − c]`` with ``c = k//2`` (cross-correlation, what
``nn.Conv2d`` computes — DPS ``Blurkernel``). Three boundary conventions:

- ``"pad"`` — DPS protocol: reflection-pad by ``k//2`` then a valid convolution
  (``guided_diffusion/measurements.py``). The adjoint is exact: transposed convolution followed
  by folding the reflected border back onto the pixels it copied. There is no SVD/FFT
  structure, so ``pinv_reg`` solves ``(AAᵀ+ηI)u = y`` by conjugate gradients and ``pinv`` runs
  CG on the normal equations ``AᵀA x = Aᵀ y`` from ``x = 0`` (the minimum-norm least-squares
  solution in exact arithmetic; with ``cg_iters`` iterations on an ill-conditioned blur it is an
  early-stopped, implicitly regularised approximation of ``A⁺y``).
- ``"circular"`` — DDPG/FDGR ``*_fft`` protocol: periodic convolution, diagonal in the DFT basis
  with transfer function ``K̂``. ``pinv = F⁻¹[conj(K̂)/|K̂|² · F y]`` with ``|K̂| < pinv_threshold``
  zeroed, ``pinv_reg = F⁻¹[conj(K̂)/(|K̂|²+η) · F y]`` — both exact. No real SVD view (the
  Fourier basis is complex), so ``has_svd`` is False.
- ``"zero"`` — zero padding. For separable kernels (Gaussian, uniform) it has an exact SVD from
  zero-padded Toeplitz 1-D matrices (DDRM ``Deblurring``, with DDPG's fix for odd kernels); 1-D
  singular values below ``svd_threshold`` (DDRM: 3e-2) are zeroed and ``A`` is the truncated
  operator (see :mod:`.separable`). For non-separable kernels it falls back to CG like "pad".
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .banks import bank_choice, load_kernel_bank
from .base import LinearOperator, OperatorCapabilityError, per_image
from .cg import conjugate_gradient
from .kernels import gaussian_kernel_1d, motion_kernel, motionblur_kernel, uniform_kernel_1d
from .separable import SeparableCache, SeparableSVD, toeplitz_matrix

BOUNDARIES = ("pad", "circular", "zero")


def _fold_reflect_last(z: Tensor, p: int) -> Tensor:
    """Adjoint of ``F.pad(mode="reflect")`` by ``p`` on the last axis: add each padded sample
    back onto the pixel it was copied from (left pad ``q`` ↔ pixel ``p−q``, right ↔ ``W−2−t``)."""
    if p == 0:
        return z
    w = z.shape[-1] - 2 * p
    out = z[..., p : p + w].clone()
    out[..., 1 : p + 1] += z[..., :p].flip(-1)
    out[..., w - 1 - p : w - 1] += z[..., p + w :].flip(-1)
    return out


def _grouped(fn, x: Tensor, kernel: Tensor, **kw) -> Tensor:
    """Depthwise (transposed) convolution with one kernel ``[k, k]`` or one per image ``[B, k, k]``."""
    b, c = x.shape[:2]
    kernel = kernel.to(dtype=x.dtype, device=x.device)
    k = kernel.shape[-1]
    if kernel.dim() == 3 and kernel.shape[0] == 1:
        kernel = kernel[0]  # one bound kernel: shared by the whole batch
    if kernel.dim() == 2:
        return fn(x, kernel.expand(c, 1, k, k), groups=c, **kw)
    if kernel.shape[0] != b:
        raise ValueError(f"{kernel.shape[0]} bound kernels for a batch of {b} images")
    w = kernel[:, None, None].expand(b, c, 1, k, k).reshape(b * c, 1, k, k)
    out = fn(x.reshape(1, b * c, *x.shape[2:]), w, groups=b * c, **kw)
    return out.view(b, c, *out.shape[2:])


class Blur(LinearOperator):
    """Channel-wise blur by a fixed ``kernel`` ``[k, k]`` (odd ``k``) or per-image kernels.

    Args:
        kernel: the 2-D kernel, or None for an operator whose kernel is bound per image.
        boundary: "pad" (DPS), "circular" (DDPG/FDGR FFT) or "zero".
        pinv_threshold: circular mode: ``|K̂|`` below it is treated as zero by ``pinv``.
        cg_iters, cg_tol: conjugate-gradient budget for "pad" (and non-separable "zero").
        kernel_1d: the 1-D factor when the kernel is separable (enables the "zero"-mode SVD).
        svd_threshold: "zero" mode: 1-D singular values below it are zeroed.
        image_size, channels: "zero" mode: fix the image shape of the SVD view (optional;
            otherwise :meth:`~.base.LinearOperator.at` gives it).
    """

    def __init__(
        self,
        kernel: Tensor | None = None,
        boundary: str = "pad",
        pinv_threshold: float = 1e-3,
        cg_iters: int = 100,
        cg_tol: float = 1e-6,
        kernel_1d: Tensor | None = None,
        svd_threshold: float = 3e-2,
        image_size: int | tuple[int, int] | None = None,
        channels: int = 3,
    ) -> None:
        super().__init__()
        if boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
        if kernel is not None:
            kernel = torch.as_tensor(kernel, dtype=torch.float32)
            if kernel.dim() != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
                raise ValueError(
                    f"blur kernel must be square with odd size, got {tuple(kernel.shape)}"
                )
        self.register_buffer("kernel", kernel)
        self.boundary = boundary
        self.pinv_threshold = float(pinv_threshold)
        self.cg_iters, self.cg_tol = int(cg_iters), float(cg_tol)
        self.kernel_1d = None if kernel_1d is None else kernel_1d.double()
        #: exact SVD for a separable kernel with zero padding; every boundary has A⁺ and
        #: Aᵀ(AAᵀ+ηI)⁻¹ (SVD, FFT, or conjugate gradients)
        self.has_svd = boundary == "zero" and self.kernel_1d is not None
        self.cache: SeparableCache | None = None
        if self.has_svd:
            self.cache = SeparableCache(self._matrices, svd_threshold)
            if image_size is not None:
                hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
                self.image_shape = (int(channels), int(hw[0]), int(hw[1]))
                self.cache.get(self.image_shape)

    @property
    def has_pinv(self) -> bool:
        return True

    @property
    def has_pinv_reg(self) -> bool:
        return True

    # ------------------------------------------------------------------- helpers
    def _kernel(self) -> Tensor:
        if self.kernel is None:
            raise RuntimeError(
                f"{type(self).__name__} draws a kernel per image: call "
                "operator.bind(batch['params']) (or sample_params) before applying it"
            )
        return self.kernel

    def _matrices(self, h: int, w: int) -> tuple[Tensor, Tensor]:
        return toeplitz_matrix(h, self.kernel_1d), toeplitz_matrix(w, self.kernel_1d)

    def _svd(self, x: Tensor) -> SeparableSVD:
        return self.cache.get(tuple(x.shape[1:]))

    def _transfer(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """``K̂`` on the rfft grid, ``[1 or B, 1, H, W//2+1]``, for the kernel's orientation."""
        kernel = self._kernel().to(device=like.device, dtype=like.real.dtype)
        h, w = shape[-2:]
        k = kernel.shape[-1]
        c = k // 2
        rows = (torch.arange(k, device=like.device) - c).remainder(h)
        cols = (torch.arange(k, device=like.device) - c).remainder(w)
        kb = kernel if kernel.dim() == 3 else kernel[None]
        emb = kb.new_zeros(kb.shape[0], h, w)
        idx_r = rows[:, None].expand(k, k)
        idx_c = cols[None, :].expand(k, k)
        for i in range(kb.shape[0]):
            emb[i].index_put_((idx_r, idx_c), kb[i], accumulate=True)
        # y[p] = Σ_v emb[v] x[p+v]: correlation ⇒ transfer function conj(F emb).
        return torch.fft.rfft2(emb).conj()[:, None]

    def _fft_apply(self, x: Tensor, filt: Tensor) -> Tensor:
        return torch.fft.irfft2(torch.fft.rfft2(x) * filt, s=x.shape[-2:])

    def _check_pad(self, x: Tensor) -> int:
        p = self._kernel().shape[-1] // 2
        if p >= min(x.shape[-2:]):
            raise ValueError(
                f"kernel of size {2 * p + 1} is too large for reflection padding of a "
                f"{tuple(x.shape[-2:])} image; use a smaller kernel_size or boundary='circular'"
            )
        return p

    # ------------------------------------------------------------------ operator
    def measurement_shape(self, x_shape) -> tuple[int, ...]:
        return tuple(x_shape)

    def A(self, x: Tensor) -> Tensor:
        if self.has_svd:
            return self._svd(x).A(x)
        if self.boundary == "circular":
            return self._fft_apply(x, self._transfer(x.shape, x))
        if self.boundary == "pad":
            p = self._check_pad(x)
            return _grouped(F.conv2d, F.pad(x, (p, p, p, p), mode="reflect"), self._kernel())
        p = self._kernel().shape[-1] // 2
        return _grouped(F.conv2d, x, self._kernel(), padding=p)

    def adjoint(self, y: Tensor) -> Tensor:
        if self.has_svd:
            return self._svd(y).adjoint(y)
        if self.boundary == "circular":
            return self._fft_apply(y, self._transfer(y.shape, y).conj())
        if self.boundary == "pad":
            p = self._check_pad(y)
            z = _grouped(F.conv_transpose2d, y, self._kernel())
            return _fold_reflect_last(_fold_reflect_last(z, p).transpose(-1, -2), p).transpose(
                -1, -2
            )
        p = self._kernel().shape[-1] // 2
        return _grouped(F.conv_transpose2d, y, self._kernel(), padding=p)

    def pinv(self, y: Tensor) -> Tensor:
        if self.has_svd:
            return self._svd(y).pinv(y)
        if self.boundary == "circular":
            kh = self._transfer(y.shape, y)
            mag2 = kh.abs() ** 2
            keep = kh.abs() >= self.pinv_threshold
            filt = torch.where(keep, kh.conj() / mag2.clamp_min(1e-30), torch.zeros_like(kh))
            return self._fft_apply(y, filt)
        rhs = self.adjoint(y)
        return conjugate_gradient(
            lambda v: self.adjoint(self.A(v)), rhs, max_iter=self.cg_iters, tol=self.cg_tol
        )

    def pinv_reg(self, y: Tensor, eta: float | Tensor) -> Tensor:
        eta = per_image(eta, y)
        if self.has_svd:
            return self._svd(y).pinv_reg(y, eta)
        if self.boundary == "circular":
            kh = self._transfer(y.shape, y)
            return self._fft_apply(y, kh.conj() / (kh.abs() ** 2 + eta))
        u = conjugate_gradient(
            lambda v: self.A(self.adjoint(v)) + eta * v, y, max_iter=self.cg_iters, tol=self.cg_tol
        )
        return self.adjoint(u)

    # ---------------------------------------------------------------- SVD view
    def _need_svd(self) -> SeparableCache:
        if not self.has_svd:
            raise OperatorCapabilityError(
                f"{type(self).__name__}(boundary={self.boundary!r}) has no SVD view; an exact SVD "
                "exists for separable kernels (GaussianBlur, UniformBlur) with boundary='zero'"
            )
        return self.cache

    def check_image_shape(self, shape: tuple[int, int, int]) -> None:
        if self.has_svd:
            self._need_svd().get(shape)  # build the SVD for this size now

    def Vt(self, x: Tensor) -> Tensor:
        return self._need_svd().get(tuple(x.shape[1:])).Vt(x)

    def V(self, z: Tensor) -> Tensor:
        return self._need_svd().get(self._shape()).V(z)

    def Ut(self, y: Tensor) -> Tensor:
        return self._need_svd().get(tuple(y.shape[1:])).Ut(y)

    def U(self, z: Tensor) -> Tensor:
        return self._need_svd().get(self._shape()).U(z)

    def singulars(self) -> Tensor:
        return self._need_svd().get(self._shape()).singulars()

    def measured(self) -> Tensor:
        return self._need_svd().get(self._shape()).measured()

    def extra_repr(self) -> str:
        k = None if self.kernel is None else tuple(self.kernel.shape)
        return f"kernel={k}, boundary={self.boundary!r}"


class GaussianBlur(Blur):
    """Gaussian blur (DPS: ``kernel_size=61, sigma=3.0``; DDRM/DDPG ``deblur_gauss``: 5, 10).

    The kernel is the outer product of :func:`~.kernels.gaussian_kernel_1d` with itself, as
    DPS's ``scipy.ndimage.gaussian_filter`` of a delta. Separable, so ``boundary="zero"`` has an
    exact SVD. See :class:`Blur` for the other arguments.
    """

    def __init__(
        self, kernel_size: int = 61, sigma: float = 3.0, boundary: str = "pad", **kwargs
    ) -> None:
        g = gaussian_kernel_1d(kernel_size, sigma)
        super().__init__(torch.outer(g, g).float(), boundary, kernel_1d=g, **kwargs)
        self.kernel_size, self.sigma = kernel_size, float(sigma)


class UniformBlur(Blur):
    """Box blur ``1/k²`` (DDRM/DDNM/DDPG ``deblur_uni`` with ``kernel_size=9``); separable."""

    def __init__(self, kernel_size: int = 9, boundary: str = "pad", **kwargs) -> None:
        g = uniform_kernel_1d(kernel_size)
        super().__init__(torch.outer(g, g).float(), boundary, kernel_1d=g, **kwargs)
        self.kernel_size = kernel_size


def _motion(
    trajectory: str,
    size: int,
    intensity: float,
    generator: torch.Generator,
    numpy_seed: int | None = None,
) -> Tensor:
    """One kernel of :class:`MotionBlur`'s ``trajectory`` model (``"motionblur"``: from
    ``RandomState(numpy_seed)``, or from a NumPy seed drawn from ``generator``)."""
    if trajectory == "walk":
        return motion_kernel(size, intensity, generator).float()
    if numpy_seed is None:
        numpy_seed = int(torch.randint(0, 2**32, (1,), generator=generator))
    return motionblur_kernel(size, intensity, np.random.RandomState(numpy_seed))


class MotionBlur(Blur):
    """Random camera-shake blur with a kernel drawn per image.

    ``sample_params(generator, (C, H, W))`` returns ``{"kernel": [k, k]}``; the data pipeline
    draws it from the image's ``(seed, index)`` generator and the sampler binds the batch of
    kernels ``[B, k, k]`` (DDPG draws one kernel per image too). ``kernel_seed`` instead fixes one
    kernel for the whole run, as DPS does (its operator is built once, ``sample_condition.py``).

    ``trajectory`` chooses the kernel model: ``"motionblur"`` is LeviBorodenko/motionblur's
    (:func:`~.kernels.motionblur_kernel`), the generator DPS and DDPG draw from — per image from
    a ``numpy.random.RandomState`` seeded by the image's generator, or with ``kernel_seed`` s the
    kernel of ``np.random.seed(s)`` (DDPG's image i: s = 10·i). ``"walk"`` is our own heading
    random walk (:func:`~.kernels.motion_kernel`).

    Args:
        kernel_size: odd kernel side (DPS/DDPG: 61).
        intensity: trajectory irregularity in [0, 1] (DPS/DDPG: 0.5).
        boundary: "pad" (DPS), "circular" (DDPG FFT) or "zero"; no SVD (not separable).
        kernel_seed: draw one shared kernel from this seed instead of one per image.
        trajectory: ``"motionblur"`` or ``"walk"`` (above).
    """

    def __init__(
        self,
        kernel_size: int = 61,
        intensity: float = 0.5,
        boundary: str = "pad",
        kernel_seed: int | None = None,
        trajectory: str = "walk",
        **kwargs,
    ) -> None:
        if trajectory not in ("walk", "motionblur"):
            raise ValueError(
                f"MotionBlur trajectory must be 'walk' or 'motionblur', got {trajectory!r}"
            )
        kernel = None
        if kernel_seed is not None:
            g = torch.Generator().manual_seed(int(kernel_seed))
            kernel = _motion(trajectory, kernel_size, intensity, g, numpy_seed=int(kernel_seed))
        else:
            motion_kernel(kernel_size, intensity, torch.Generator())  # validate arguments early
        super().__init__(kernel, boundary, **kwargs)
        self.kernel_size, self.intensity, self.kernel_seed = kernel_size, intensity, kernel_seed
        self.trajectory = trajectory

    def sample_params(self, generator: torch.Generator, image_shape: tuple[int, ...]) -> dict:
        if self.kernel_seed is not None:
            return {}
        return {"kernel": _motion(self.trajectory, self.kernel_size, self.intensity, generator)}

    def param_names(self) -> set[str]:
        return {"kernel"}


class KernelBankBlur(Blur):
    """Blur with kernels from a bank on disk (:func:`~.banks.load_kernel_bank`: ``.npy``,
    ``.mat``, kernel images or a folder of them), one drawn per image from its generator
    (:func:`~.banks.bank_choice`) — for protocols that ship their kernels, or kernels made once
    with an official generator.

    Args:
        path: the bank file or folder.
        boundary: "pad", "circular" or "zero" (no SVD: a general kernel is not separable).
        key: the variable of a ``.mat`` file with several.
    """

    def __init__(self, path: str, boundary: str = "pad", key: str | None = None, **kwargs) -> None:
        super().__init__(None, boundary, **kwargs)
        self.path, self.key = str(path), key
        self.register_buffer("bank", load_kernel_bank(path, key), persistent=False)

    def sample_params(self, generator: torch.Generator, image_shape: tuple[int, ...]) -> dict:
        return {"kernel": self.bank[bank_choice(len(self.bank), generator)].cpu()}

    def param_names(self) -> set[str]:
        return {"kernel"}

    def extra_repr(self) -> str:
        return f"path={self.path!r}, kernels={len(self.bank)}, boundary={self.boundary!r}"
