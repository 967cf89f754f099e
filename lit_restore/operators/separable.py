"""Separable operators ``A X = Aₕ X A_wᵀ`` (per channel) and their exact SVD.

Bicubic/MATLAB/average-pool downscaling and zero-padded separable blurs act on rows and columns
independently, so ``A = A_w ⊗ Aₕ`` and its SVD is the Kronecker product of two small 1-D SVDs
(DDRM Appendix D.5; bahjat-kawar/ddrm ``functions/svd_replacement.py::SRConv``/``Deblurring``):

    Aₕ = Uₕ diag(sₕ) Vₕᵀ,  A_w = U_w diag(s_w) V_wᵀ,
    Vᵀx = Vₕᵀ X V_w,  Uᵀy = Uₕᵀ Y U_w,  s[i, j] = sₕ[i]·s_w[j]  (i < h, j < w; 0 elsewhere).

**Thresholding.** As DDRM/DDNM/DDPG do, 1-D singular values below ``threshold`` (3e-2 there) are
set to zero. The operator is then *defined* by its truncated factors: ``A`` itself is applied as
``Uₕ diag(sₕ) Vₕᵀ`` (DDRM applies ``H`` through its SVD too), so ``A``, ``Aᵀ``, ``A⁺`` and the SVD
view describe one and the same matrix. ``threshold=0`` gives the untruncated filter.

**Spectral layout** (base-class convention): the flat spectral vector of an image ``[C, H, W]``
has ``n = C·H·W`` entries; its first ``m = C·h·w`` entries are the measurement directions sorted
by decreasing singular value (stable order), the remaining ``n − m`` are the null directions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import per_image
from .kernels import keys_cubic

# --------------------------------------------------------------------------- 1-D matrices


def _mirror(idx: Tensor, n: int) -> Tensor:
    """Half-sample symmetric extension (``… 1 0 | 0 1 … n−1 | n−1 n−2 …``), MATLAB's and
    DDRM's ``SRConv`` padding; periodic with period ``2n`` so any offset is valid."""
    idx = idx.remainder(2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


def imresize_matrix(
    n_in: int, n_out: int, scale: float, antialias: bool = True, a: float = -0.5
) -> Tensor:
    """The ``[n_out, n_in]`` weights of MATLAB ``imresize`` (bicubic) along one axis (float64).

    Output pixel ``j`` (1-based) sits at input coordinate ``u = j/scale + ½(1 − 1/scale)``; when
    shrinking with antialiasing the Keys kernel is stretched by ``1/scale`` (``scale·W(scale·x)``);
    weights are normalised per output pixel and out-of-range taps are mirrored (half-sample
    symmetric), as MATLAB's ``imresize`` and DPS's ``util/resizer.py`` do. Any real ``scale``
    (up or down): :func:`lit_restore.degradations.bicubic.imresize` and the "matlab" SR operator
    share this one builder.
    """
    kernel_scale = scale if (antialias and scale < 1) else 1.0
    width = 4.0 / kernel_scale
    u = torch.arange(1, n_out + 1, dtype=torch.float64) / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    idx = left[:, None] + torch.arange(math.ceil(width) + 2, dtype=torch.float64)[None]
    weights = kernel_scale * keys_cubic(kernel_scale * (u[:, None] - idx), a)
    weights = weights / weights.sum(1, keepdim=True)
    mat = torch.zeros(n_out, n_in, dtype=torch.float64)
    mat.scatter_add_(1, _mirror(idx.long() - 1, n_in), weights)
    return mat


def cubic_downsample_matrix(n: int, factor: int, mode: str = "keys", a: float = -0.5) -> Tensor:
    """The ``[n // factor, n]`` matrix of antialiased cubic downscaling by an integer ``factor``.

    - ``mode="keys"`` — DDRM/DDNM/DDPG ``SRConv``: output ``j`` is centred on input sample
      ``i = factor·j + factor//2`` and uses the ``4·factor`` taps ``i − 2·factor … i + 2·factor − 1``
      with the normalised kernel ``W((t − 2·factor + ½)/factor)`` (:func:`~.kernels.keys_kernel_1d`).
    - ``mode="matlab"`` — MATLAB ``imresize(x, 1/factor)`` with antialiasing, as DPS's ``Resizer``
      (``util/resizer.py``): output ``j`` maps to input coordinate ``c = factor·j + (factor−1)/2``,
      weights ``W((c − t)/factor)/factor`` over ``|c − t| < 2·factor``, normalised per output pixel.

    Both use half-sample symmetric padding. For even factors the two coincide exactly (the kernel
    is sampled at the same half-integer offsets); for odd factors "keys" is shifted by half a pixel,
    as in DDRM.
    """
    if n % factor:
        raise ValueError(f"image size {n} is not divisible by the SR factor {factor}")
    m = n // factor
    mat = torch.zeros(m, n, dtype=torch.float64)
    rows = torch.arange(m)
    if mode == "keys":
        t = torch.arange(4 * factor, dtype=torch.float64)
        k = keys_cubic((t - 2 * factor + 0.5) / factor, a)
        k = k / k.sum()
        centre = rows * factor + factor // 2
        taps = centre[:, None] - 2 * factor + torch.arange(4 * factor)[None, :]
        weights = k[None, :].expand(m, -1)
    elif mode == "matlab":
        return imresize_matrix(n, m, 1.0 / factor, a=a)
    else:
        raise ValueError(f"unknown bicubic mode {mode!r}; use 'keys' (DDRM) or 'matlab' (DPS)")
    mat.index_put_(
        (rows[:, None].expand_as(taps), _mirror(taps, n)), weights.clone(), accumulate=True
    )
    return mat


def avgpool_matrix(n: int, factor: int) -> Tensor:
    """``[n // factor, n]`` block-averaging matrix (rows ``1/factor`` on consecutive blocks)."""
    if n % factor:
        raise ValueError(f"image size {n} is not divisible by the SR factor {factor}")
    return torch.kron(
        torch.eye(n // factor, dtype=torch.float64), torch.full((1, factor), 1.0 / factor)
    )


def toeplitz_matrix(n: int, kernel: Tensor) -> Tensor:
    """``[n, n]`` 'same'-size correlation with zero padding: ``(M x)[i] = Σ_t k[t] x[i + t − k//2]``.

    All taps are kept for odd kernels (DDPG's fix of DDRM's ``Deblurring``, which skipped the last
    tap; ``svd_operators.py`` comment "our fix").
    """
    k = kernel.double()
    r = k.numel() // 2
    offset = torch.arange(n)[None, :] - torch.arange(n)[:, None] + r  # tap index of M[i, j]
    inside = (offset >= 0) & (offset < k.numel())
    return torch.where(inside, k[offset.clamp(0, k.numel() - 1)], torch.zeros((), dtype=k.dtype))


# ------------------------------------------------------------------------ the 2-D SVD


class SeparableSVD(nn.Module):
    """Exact SVD of ``X ↦ Aₕ X A_wᵀ`` applied channel-wise to images ``[B, C, H, W]``."""

    def __init__(self, mat_h: Tensor, mat_w: Tensor, channels: int, threshold: float) -> None:
        super().__init__()
        h, H = mat_h.shape
        w, W = mat_w.shape
        self.channels, self.H, self.W, self.h, self.w = channels, H, W, h, w
        factors = []
        for mat in (mat_h, mat_w):
            u, s, vh = torch.linalg.svd(mat.double(), full_matrices=True)
            s = torch.where(s < threshold, torch.zeros_like(s), s)
            factors.append((u, s, vh.T))
        (uh, sh, vh_), (uw, sw, vw) = factors
        for name, t in dict(Uh=uh, sh=sh, Vh=vh_, Uw=uw, sw=sw, Vw=vw).items():
            self.register_buffer(name, t, persistent=False)
        s_block = (sh[:, None] * sw[None, :]).expand(channels, h, w).reshape(-1)
        perm_m = torch.sort(-s_block, stable=True).indices
        grid = torch.arange(channels * H * W).view(channels, H, W)
        inside = torch.zeros(channels, H, W, dtype=torch.bool)
        inside[:, :h, :w] = True
        block_idx = grid[:, :h, :w].reshape(-1)
        perm = torch.cat([block_idx[perm_m], grid[~inside].reshape(-1)])
        s_full = torch.zeros(channels * H * W, dtype=torch.float64)
        s_full[: s_block.numel()] = s_block[perm_m]
        # Derived from the options, so kept out of state_dict: a checkpoint of a module holding
        # this operator loads strictly whatever image sizes the operator has seen.
        for name, t in dict(perm_m=perm_m, perm=perm, s_full=s_full).items():
            self.register_buffer(name, t, persistent=False)
        self.register_buffer("s_grid", sh[:, None] * sw[None, :], persistent=False)

    # helpers ------------------------------------------------------------------------
    def _m(self, name: str, like: Tensor) -> Tensor:
        return getattr(self, name).to(dtype=like.dtype, device=like.device)

    def _lr(self, left: str, x: Tensor, right: str, tl: bool, tr: bool) -> Tensor:
        """``L X R`` with ``L = left`` (or its transpose) and ``R = rightᵀ`` (or ``right``)."""
        lm, rm = self._m(left, x), self._m(right, x)
        lm = lm.T if tl else lm
        rm = rm if tr else rm.T
        return lm @ x @ rm

    # matrix-free products --------------------------------------------------------------
    def A(self, x: Tensor) -> Tensor:
        z = self._lr("Vh", x, "Vw", tl=True, tr=True)[..., : self.h, : self.w]
        return self._lr("Uh", z * self._m("s_grid", x), "Uw", tl=False, tr=False)

    def adjoint(self, y: Tensor) -> Tensor:
        z = self._lr("Uh", y, "Uw", tl=True, tr=True) * self._m("s_grid", y)
        return self._lr("Vh", self._embed(z), "Vw", tl=False, tr=False)

    def filtered_inverse(self, y: Tensor, filt: Tensor) -> Tensor:
        """``V diag(filt(s)) Uᵀ y`` with ``filt`` given on the ``[h, w]`` singular-value grid."""
        z = self._lr("Uh", y, "Uw", tl=True, tr=True) * filt.to(y.dtype)
        return self._lr("Vh", self._embed(z), "Vw", tl=False, tr=False)

    def pinv(self, y: Tensor) -> Tensor:
        s = self._m("s_grid", y)
        return self.filtered_inverse(y, torch.where(s > 0, 1 / s.clamp_min(1e-30), 0 * s))

    def pinv_reg(self, y: Tensor, eta: float | Tensor) -> Tensor:
        s = self._m("s_grid", y)
        return self.filtered_inverse(y, s / (s * s + per_image(eta, y)))

    def _embed(self, z: Tensor) -> Tensor:
        out = z.new_zeros(*z.shape[:-2], self.H, self.W)
        out[..., : self.h, : self.w] = z
        return out

    # SVD view ---------------------------------------------------------------------------
    def Vt(self, x: Tensor) -> Tensor:
        z = self._lr("Vh", x, "Vw", tl=True, tr=True).flatten(1)
        return z[:, self.perm.to(x.device)]

    def V(self, z: Tensor) -> Tensor:
        flat = torch.empty_like(z)
        flat[:, self.perm.to(z.device)] = z
        img = flat.view(-1, self.channels, self.H, self.W)
        return self._lr("Vh", img, "Vw", tl=False, tr=False)

    def Ut(self, y: Tensor) -> Tensor:
        c = self._lr("Uh", y, "Uw", tl=True, tr=True).flatten(1)[:, self.perm_m.to(y.device)]
        out = c.new_zeros(c.shape[0], self.channels * self.H * self.W)
        out[:, : c.shape[1]] = c
        return out

    def U(self, z: Tensor) -> Tensor:
        m = self.perm_m.numel()
        flat = torch.empty_like(z[:, :m])
        flat[:, self.perm_m.to(z.device)] = z[:, :m]
        img = flat.view(-1, self.channels, self.h, self.w)
        return self._lr("Uh", img, "Uw", tl=False, tr=False)

    def singulars(self) -> Tensor:
        return self.s_full

    def measured(self) -> Tensor:
        """The first ``C·h·w`` components (the measurement's dimension), thresholded or not."""
        return torch.arange(self.s_full.numel(), device=self.s_full.device) < self.perm_m.numel()


class SeparableCache(nn.Module):
    """Builds and keeps one :class:`SeparableSVD` per image shape ``(C, H, W)``.

    The 1-D matrices depend on the image size, which the caller states (:meth:`get`). The SVDs
    are buffers; on ``.to()``/``.double()`` they are rebuilt from the float64 1-D matrices at the
    new dtype (casting float32 singular vectors up would leave them orthonormal only to ~1e-7).
    """

    def __init__(self, build, threshold: float) -> None:
        super().__init__()
        self.build = build  # (H, W) -> (mat_h, mat_w), float64
        self.threshold = float(threshold)
        self.svds = nn.ModuleDict()
        self.register_buffer("probe", torch.zeros(()), persistent=False)  # tracks dtype/device

    def _make(self, key: str) -> SeparableSVD:
        c, h, w = (int(v) for v in key.split("x"))
        mat_h, mat_w = self.build(h, w)
        svd = SeparableSVD(mat_h, mat_w, c, self.threshold)
        return svd.to(device=self.probe.device, dtype=self.probe.dtype)

    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self.svds = nn.ModuleDict({key: self._make(key) for key in self.svds})
        return self

    def get(self, shape: tuple[int, ...]) -> SeparableSVD:
        """The SVD for images ``shape = (C, H, W)`` (built on first use; it lives at the
        operator's dtype/device and is cast to the input's on use)."""
        c, h, w = (int(v) for v in shape)
        key = f"{c}x{h}x{w}"
        if key not in self.svds:
            self.svds[key] = self._make(key)
        return self.svds[key]
