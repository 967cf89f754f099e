"""NIQE, the Natural Image Quality Evaluator (Mittal, Soundararajan & Bovik, "Making a
'completely blind' image quality analyzer", IEEE SPL 2013) — a no-reference metric, lower is
better.

NIQE fits a multivariate Gaussian (MVG) to natural-scene-statistics features of an image's
blocks and measures its distance to the MVG of a corpus of pristine images (Eq. 10):

    NIQE = sqrt( (ν₁ − ν₂)ᵀ ((Σ₁ + Σ₂)/2)⁺ (ν₁ − ν₂) ),

ν₁, Σ₁ the pristine model (a published parameter file), ν₂, Σ₂ the mean and covariance of the
image's block features. Features, per block and at two scales (the image, then its MATLAB
bicubic half-size):

* MSCN coefficients ``Î = (I − μ)/(σ + 1)`` with μ, σ the local mean and standard deviation under
  a 7×7 Gaussian window (σ = 7/6), replicate padding (Eq. 1-3);
* the generalised Gaussian fit of Î: shape α and the mean of the left/right scales (Eq. 4);
* for the products of Î with its horizontal, vertical and two diagonal neighbours, the
  asymmetric generalised Gaussian fit: shape, mean ``(β_r − β_l) Γ(2/α)/Γ(1/α)``, β_l, β_r
  (Eq. 5-8; moment matching over the grid α ∈ 0.2:0.001:10).

18 features per scale, 36 in all; blocks are 96×96 px (48×48 at the second scale), the image is
cropped to whole blocks from its top-left corner.

This is the NIQE that super-resolution papers report through IQA-PyTorch (chaofengc/IQA-PyTorch,
``pyiqa/archs/niqe_arch.py``, metric ``niqe``; itself a port of BasicSR
``basicsr/metrics/niqe.py`` of the MATLAB release ``niqe_release.zip``) and follows its
conventions, which are the numbers' conventions: the luma is the Y of YIQ (0.299, 0.587, 0.114,
held in float32) on the 0-255 scale, rounded to integers; neighbour products wrap around inside each block
(``roll``); the α grid and the Gaussian window are held in float32 before the float64
computation; the block covariance is unbiased (a single block gives a zero covariance).
``tests/test_niqe.py`` holds it to numbers produced by that code.

The pristine parameters (``mu_prisparam``, ``cov_prisparam``) are the MATLAB release's
``modelparameters.mat``, distributed by IQA-PyTorch as ``niqe_modelparameters.mat``; they are not
shipped here (LIVE's release terms) but resolved offline as the weight file ``niqe-pristine``
(:mod:`lit_restore.weights`).
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_restore.operators.separable import imresize_matrix
from lit_restore.weights import resolve

#: YIQ luma weights (IQA-PyTorch ``rgb2yiq``; NTSC)
_YIQ_LUMA = (0.299, 0.587, 0.114)
#: block side at the first scale (the MATLAB release's ``blocksizerow/col``)
BLOCK_SIZE = 96
#: neighbour offsets (rows, cols) of the paired products: horizontal, vertical, two diagonals
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


def gaussian_window(size: int = 7, sigma: float = 7.0 / 6.0) -> Tensor:
    """MATLAB ``fspecial('gaussian', size, sigma)`` (values below eps·max zeroed, sum 1), held in
    float32 as IQA-PyTorch's ``fspecial`` holds it, returned as float64 ``[1, 1, size, size]``."""
    r = (size - 1) / 2.0
    t = np.arange(-r, r + 1)
    h = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2.0 * sigma * sigma))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    h = h / h.sum()
    return torch.from_numpy(h).float().double()[None, None]


def mscn(image: Tensor, window: Tensor) -> Tensor:
    """Mean-subtracted contrast-normalised coefficients ``(I − μ)/(σ + 1)`` of ``[N,1,H,W]``
    (Eq. 1-3); σ = sqrt(|E[I²] − μ²| + eps) under ``window`` with replicate padding."""
    pad = window.shape[-1] // 2
    padded = F.pad(image, (pad, pad, pad, pad), mode="replicate")
    mu = F.conv2d(padded, window)
    second = F.conv2d(padded.square(), window)
    sigma = ((second - mu.square()).abs() + torch.finfo(image.dtype).eps).sqrt()
    return (image - mu) / (sigma + 1)


def _shape_grid(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """The α grid 0.2:0.001:10 (float32, as the reference code builds it) and
    ``ρ(α) = Γ(2/α)² / (Γ(1/α) Γ(3/α))`` on it."""
    alpha = torch.arange(0.2, 10 + 0.001, 0.001).to(dtype=dtype, device=device)
    rho = (2 * torch.lgamma(2 / alpha) - torch.lgamma(1 / alpha) - torch.lgamma(3 / alpha)).exp()
    return alpha, rho


def aggd_fit(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Moment-matching fit of an asymmetric generalised Gaussian to each ``[B, H, W]`` sample
    (Lasmar et al. 2009, NIQE Eq. 7): shape α and left/right scales β_l, β_r, each ``[B]``.

    σ_l² and σ_r² are the mean squares of the negative and positive values; with γ̂ = σ_l/σ_r and
    r̂ = E|x|²/E[x²], α minimises |ρ(α) − r̂ (γ̂³+1)(γ̂+1)/(γ̂²+1)²| over the grid and
    β = σ sqrt(Γ(1/α)/Γ(3/α))."""
    flat = x.flatten(1)
    grid, rho = _shape_grid(flat.dtype, flat.device)
    neg, pos = flat < 0, flat > 0
    left = ((flat * neg).square().sum(1) / neg.sum(1)).sqrt()
    right = ((flat * pos).square().sum(1) / pos.sum(1)).sqrt()
    gamma = left / right
    r_hat = flat.abs().mean(1).square() / flat.square().mean(1)
    r_norm = r_hat * (gamma**3 + 1) * (gamma + 1) / (gamma.square() + 1).square()
    alpha = grid[(rho[None] - r_norm[:, None]).abs().argmin(1)]
    scale = (torch.lgamma(1 / alpha) - torch.lgamma(3 / alpha)).exp().sqrt()
    return alpha, left * scale, right * scale


def block_features(blocks: Tensor) -> Tensor:
    """The 18 NIQE features of each MSCN block ``[B, h, w]`` -> ``[B, 18]``."""
    alpha, beta_l, beta_r = aggd_fit(blocks)
    feats = [alpha, (beta_l + beta_r) / 2]
    for shift in _SHIFTS:
        a, bl, br = aggd_fit(blocks * torch.roll(blocks, shift, dims=(1, 2)))
        mean = (br - bl) * (torch.lgamma(2 / a) - torch.lgamma(1 / a)).exp()
        feats += [a, mean, bl, br]
    return torch.stack(feats, 1)


def _blocks(image: Tensor, size: int) -> Tensor:
    """Non-overlapping ``size``×``size`` blocks of one ``[H, W]`` image (whole blocks only)."""
    h, w = (image.shape[0] // size) * size, (image.shape[1] // size) * size
    grid = image[:h, :w].reshape(h // size, size, w // size, size)
    return grid.permute(0, 2, 1, 3).reshape(-1, size, size)


def niqe_luma(x: Tensor) -> Tensor:
    """``[N,C,H,W]`` in [0, 1] -> float64 ``[N,1,H,W]`` luma on 0-255, rounded to integers (YIQ
    Y for RGB; the channel itself for grayscale)."""
    x = x.double()
    if x.shape[1] == 3:
        # the weights held in float32, as the reference code holds them: which luma values round
        # up or down depends on it (8-bit inputs land near .5 often enough to matter)
        w = torch.tensor(_YIQ_LUMA, dtype=torch.float32).to(x)
        x = torch.matmul(x.permute(0, 2, 3, 1), w[:, None]).permute(0, 3, 1, 2)
    elif x.shape[1] != 1:
        raise ValueError(f"NIQE needs RGB or grayscale images, got {x.shape[1]} channels")
    return (x * 255).round()


def niqe_features(luma: Tensor, block_size: int = BLOCK_SIZE) -> Tensor:
    """``[blocks, 36]`` features of one float64 ``[1, 1, H, W]`` luma image (0-255)."""
    h, w = luma.shape[-2:]
    luma = luma[..., : (h // block_size) * block_size, : (w // block_size) * block_size]
    window = gaussian_window().to(luma.device)
    per_scale = []
    for scale in (1, 2):
        per_scale.append(block_features(_blocks(mscn(luma, window)[0, 0], block_size // scale)))
        if scale == 1:  # MATLAB imresize(I, 0.5) with antialiasing, on [0, 1] intensities
            mh = imresize_matrix(luma.shape[-2], luma.shape[-2] // 2, 0.5).to(luma.device)
            mw = imresize_matrix(luma.shape[-1], luma.shape[-1] // 2, 0.5).to(luma.device)
            luma = torch.einsum("oh,nchw,pw->ncop", mh, luma / 255.0, mw) * 255.0
    return torch.cat(per_scale, 1)


def mvg_distance(feats: Tensor, mu_pristine: Tensor, cov_pristine: Tensor) -> Tensor:
    """NIQE Eq. 10 between the block features ``[B, 36]`` (rows with a NaN dropped) and the
    pristine MVG."""
    feats = feats[~feats.isnan().any(1)]
    mu = feats.mean(0)
    cov = torch.cov(feats.T, correction=1 if feats.shape[0] > 1 else 0)
    diff = (mu_pristine - mu)[None]
    return (diff @ torch.linalg.pinv((cov_pristine + cov) / 2) @ diff.T).squeeze().sqrt()


def load_pristine(path: str | os.PathLike) -> tuple[Tensor, Tensor]:
    """``(mu [36], cov [36, 36])`` float64 from a MATLAB ``.mat`` file holding ``mu_prisparam``
    and ``cov_prisparam`` (the NIQE release's layout); read with ``scipy.io.loadmat`` (no code
    is executed)."""
    from scipy.io import loadmat

    try:
        params = loadmat(str(path))
        mu = torch.from_numpy(np.ravel(params["mu_prisparam"]).astype(np.float64))
        cov = torch.from_numpy(np.asarray(params["cov_prisparam"], dtype=np.float64))
    except (KeyError, ValueError, OSError) as err:
        raise ValueError(
            f"{path} is not a NIQE parameter file (a .mat holding mu_prisparam and "
            f"cov_prisparam): {err}"
        ) from err
    if mu.shape != (36,) or cov.shape != (36, 36):
        raise ValueError(
            f"{path}: NIQE parameters must be mu [36] and cov [36, 36], got "
            f"{tuple(mu.shape)} and {tuple(cov.shape)}"
        )
    return mu, cov


class NIQE(nn.Module):
    """Per-image NIQE of [0, 1] images: ``forward(x [N,C,H,W]) -> [N]`` float64 (lower is better).

    Args:
        weights: the pristine-model ``.mat`` file; default: the registered ``niqe-pristine``
            (:func:`lit_restore.weights.resolve`, never downloaded implicitly).
        block_size: block side at the first scale (96, the release's value).
    """

    def __init__(self, weights: str | os.PathLike | None = None, block_size: int = BLOCK_SIZE):
        super().__init__()
        path = resolve(weights or "niqe-pristine", option="niqe_weights", expect="niqe-pristine")
        mu, cov = load_pristine(path)
        self.register_buffer("mu_pristine", mu)
        self.register_buffer("cov_pristine", cov)
        self.block_size = block_size

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        if min(x.shape[-2:]) < self.block_size:
            raise ValueError(
                f"NIQE needs images of at least {self.block_size}×{self.block_size} px (one "
                f"block), got {tuple(x.shape[-2:])}; drop niqe from `metrics` for such small "
                "images."
            )
        luma = niqe_luma(x)
        values = [
            mvg_distance(
                niqe_features(luma[i : i + 1], self.block_size),
                self.mu_pristine,
                self.cov_pristine,
            )
            for i in range(luma.shape[0])
        ]
        return torch.stack(values)
