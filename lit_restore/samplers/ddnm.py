"""DDNM / DDNM+ — Denoising Diffusion Null-space Model (Wang et al., ICLR 2023, arXiv 2212.00490).

Source: wyhuai/DDNM ``functions/svd_ddnm.py`` and ``functions/svd_operators.py`` (``Lambda``,
``Lambda_noise``); schedule ``get_schedule_jump`` from RePaint.

With x0 = Tweedie(x_t, ε_θ), a = √ᾱ_{t−1}, σ_t = √(1−ᾱ_{t−1}):

**DDNM** (σ_y = 0, Eq. 13): range-null-space projection and a DDIM(η) step with the network ε,

    x̂0      = x0 − A⁺(A x0 − y)  = A⁺y + (I − A⁺A) x0
    x_{t−1} = a x̂0 + σ_t (η z + √(1−η²) ε).

**DDNM+** (σ_y > 0, Eq. 19 with the code's factor √(1−η²)), per singular value s_i of A = U S Vᵀ:

    x̂0 = x0 − V Λ Vᵀ A⁺(A x0 − y),
    λ_i = 1                          if σ_t ≥ a σ_y / s_i
        = s_i σ_t √(1−η²)/(a σ_y)    otherwise;
    x_{t−1} = a x̂0 + V[d1 ⊙ Vᵀz + d2 ⊙ Vᵀε] with
        s_i = 0:                d1 = σ_t η,                 d2 = σ_t √(1−η²)
        σ_t < a σ_y / s_i:      d1 = σ_t η,                 d2 = 0
        σ_t ≥ a σ_y / s_i:      d1 = √(σ_t² − a²σ_y²/s_i²), d2 = 0.

**Official ``Lambda_noise``** (``lambda_noise="official"``). The repository's noise term is not
``V[d ⊙ Vᵀz]``: for average-pooling SR and colorization (``svd_operators.py`` L572-624,
L695-736) it cuts z and ε into raw pixel blocks (r×r patches; the 3 channels of a pixel),
scales entry k of each block by d_k of singular value k, and applies the block's V — without
Vᵀ first — so the realisation of the noise differs from ours (its distribution does not for z,
but ε is not isotropic: the ε term of the null space differs in law too). The block basis is
the SVD the official code takes (of the 1×r² averaging row, of the colorization weights).
Where Vᵀ·raw is a permutation (inpainting, denoising), the two modes coincide; for other
operators the official mode uses ours (the official bicubic ``SRConv`` has no DDNM+ noise term).
``"svd"``
(default) is the form of the paper's Eq. 19 applied in the operator's SVD basis. The official
deblurring ``Lambda_noise`` (L1044-1092) also uses the un-thresholded 1-D singular values and
pairs them channel-major with pixel-major vectors (a bug); it is not offered (official DDNM+
deblurring runs are ill-conditioned at float32 in any case, see the parity fixtures' README).

**Time travel** (``travel_length`` L, ``travel_repeat`` r; RePaint): after a denoising step the
chain jumps forward L steps, x_j = √ᾱ_j x0 + √(1−ᾱ_j) z with the last *un-projected* x0, and
re-denoises, r−1 extra times per segment. Defaults (1, 1) mean no travel; 100 steps (configs).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from lit_restore.samplers.base import Sampler, SamplingContext


def schedule_jump(steps: int, travel_length: int = 1, travel_repeat: int = 1) -> list[int]:
    """RePaint's ``get_schedule_jump`` on respaced indices: ``steps−1 … 0, −1`` with jumps."""
    jumps = {j: travel_repeat - 1 for j in range(0, steps - travel_length, travel_length)}
    t, ts = steps, []
    while t >= 1:
        t -= 1
        ts.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(travel_length):
                t += 1
                ts.append(t)
    ts.append(-1)
    return ts


class DDNM(Sampler):
    """DDNM (noiseless) and DDNM+ (noisy, needs an SVD), selected by ``sigma_y``.

    Args:
        steps: ``T_sampling`` (100 in the configs).
        eta: η of the DDIM-like step (``--eta``, default 0.85).
        travel_length, travel_repeat: RePaint time travel (1, 1 = off).
        clip_denoised: clamp x0 before the projection (the repo does not; default False).
        lambda_noise: DDNM+'s noise term, ``"svd"`` or ``"official"`` (module docstring;
            only average-pooling SR and colorization differ).
    """

    name = "ddnm"

    def __init__(
        self,
        steps: int = 100,
        eta: float = 0.85,
        travel_length: int = 1,
        travel_repeat: int = 1,
        clip_denoised: bool = False,
        progress: bool = False,
        lambda_noise: str = "svd",
    ) -> None:
        super().__init__(
            steps=steps, spacing="uniform", eta=eta, clip_denoised=clip_denoised, progress=progress
        )
        if lambda_noise not in ("svd", "official"):
            raise ValueError(f"DDNM lambda_noise must be 'svd' or 'official', got {lambda_noise!r}")
        self.lambda_noise = lambda_noise
        if travel_length < 1 or travel_repeat < 1:
            raise ValueError("DDNM travel_length and travel_repeat must be >= 1")
        self.travel_length = int(travel_length)
        self.travel_repeat = int(travel_repeat)

    def schedule(self, num_timesteps: int = 1000) -> list[tuple[int, int]]:
        skip = num_timesteps // self.steps
        ts = [
            i * skip if i >= 0 else -1
            for i in schedule_jump(self.steps, self.travel_length, self.travel_repeat)
        ]
        return list(itertools.pairwise(ts))

    def requirements(self, sigma_y: float) -> tuple[str, frozenset[str]]:
        # noiseless DDNM needs only A⁺ (an SVD, or a structured one such as FFT); DDNM+ works
        # per singular value
        if sigma_y > 0:
            return "DDNM+ (noisy DDNM)", frozenset({"svd"})
        return "DDNM", frozenset({"pinv"})

    def step(self, ctx: SamplingContext, x: Tensor, t: int, t_next: int) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            eps = ctx.eps(x, t)
            x0 = ctx.x0_from_eps(x, t, eps)
            if self.clip_denoised:
                x0 = x0.clamp(-1, 1)
            ctx.state["x0_raw"] = x0  # time travel re-noises the un-projected x0 (DDNM code)
            a = ctx.alpha_bar(t_next, x).sqrt()
            sig = (1 - ctx.alpha_bar(t_next, x)).sqrt()
            op, y, eta = ctx.operator, ctx.y, self.eta
            if ctx.sigma_y == 0:
                x0_hat = x0 - op.pinv(op.A(x0) - y).view_as(x0)
                x_next = a * x0_hat + sig * (eta * ctx.randn(x) + (1 - eta**2) ** 0.5 * eps)
            else:
                x0_hat, x_next = self._ddnm_plus(ctx, x0, eps, a.flatten()[0], sig.flatten()[0])
        return x_next, x0_hat

    def _ddnm_plus(self, ctx: SamplingContext, x0: Tensor, eps: Tensor, a: Tensor, sig: Tensor):
        op, eta, sy = ctx.operator, self.eta, ctx.sigma_y
        s = op.singulars()
        pos = s > 0
        s_safe = torch.where(pos, s, torch.ones_like(s))
        c = op.Vt(x0)  # spectral x0
        ybar = torch.where(pos, op.Ut(ctx.y) / s_safe, torch.zeros_like(c))
        thresh = a * sy / s_safe  # a σ_y / s_i
        full = sig >= thresh
        lam = torch.where(full, torch.ones_like(s), s * sig * (1 - eta**2) ** 0.5 / (a * sy))
        lam = torch.where(pos, lam, torch.zeros_like(lam))
        c_hat = c - lam * (c - ybar)
        x0_hat = x0 + op.V(c_hat - c).view_as(x0)
        blocks = _official_blocks(op) if self.lambda_noise == "official" else None
        if blocks is not None:
            noise = blocks.lambda_noise(ctx.randn(x0), eps, a, sy, sig, eta)
            return x0_hat, a * x0_hat + noise
        d1 = torch.where(full, (sig**2 - thresh**2).clamp_min(0).sqrt(), sig * eta)
        d2 = torch.zeros_like(d1)
        d1 = torch.where(pos, d1, sig * eta)
        d2 = torch.where(pos, d2, sig * (1 - eta**2) ** 0.5)
        noise = op.V(d1 * op.Vt(ctx.randn(x0)) + d2 * op.Vt(eps)).view_as(x0)
        return x0_hat, a * x0_hat + noise

    def travel(self, ctx: SamplingContext, x: Tensor, t: int, t_next: int) -> Tensor:
        return ctx.renoise(ctx.state["x0_raw"], t_next)

    def hparams(self) -> dict:
        return {
            **super().hparams(),
            "travel_length": self.travel_length,
            "travel_repeat": self.travel_repeat,
            "lambda_noise": self.lambda_noise,
        }


class _RawBlocks:
    """The official ``Lambda_noise`` of an operator that acts on independent pixel blocks of
    length k with one small SVD ``A_b = U_b diag(s_b) V_bᵀ`` (module docstring).

    Args:
        row: the block's measurement row(s) ``A_b`` ([m, k]); its SVD is taken in float32, as
            the official code's ``torch.svd`` of a float32 tensor, so the basis (signs and the
            null-space vectors, which the SVD does not fix) is the official one.
        split, merge: image ``[B, C, H, W]`` ↔ raw blocks ``[B, N, k]`` (entry j of a block is
            paired with singular value j).
    """

    def __init__(self, row: Tensor, split, merge) -> None:
        _, s, vh = torch.linalg.svd(row.float().cpu(), full_matrices=True)
        self.basis = vh.T  # official V_small
        self.s = torch.zeros(self.basis.shape[0])
        self.s[: s.numel()] = s
        self.split, self.merge = split, merge

    def lambda_noise(self, z: Tensor, eps: Tensor, a: Tensor, sigma_y: float, sig: Tensor, eta):
        """``V_b (d1 ⊙ z_block) + V_b (d2 ⊙ ε_block)`` per block, d as in Eq. 19 with the
        official tie rule (σ_t equal to a σ_y/s keeps the null-space weights)."""
        s = self.s.to(z)
        inv = torch.where(s > 0, 1 / torch.where(s > 0, s, torch.ones_like(s)), torch.zeros_like(s))
        d1 = torch.full_like(s, float(eta)) * sig
        d2 = torch.full_like(s, (1 - eta**2) ** 0.5) * sig
        if float(a) != 0 and sigma_y != 0:
            lim = a * sigma_y * inv
            below, above = sig < lim, sig > lim
            d1 = torch.where(below, sig * eta, d1)
            d2 = torch.where(below, torch.zeros_like(d2), d2)
            d1 = torch.where(above, (sig**2 - lim**2).clamp_min(0).sqrt(), d1)
            d2 = torch.where(above, torch.zeros_like(d2), d2)
            d1 = torch.where(s == 0, sig * eta, d1)
            d2 = torch.where(s == 0, sig * (1 - eta**2) ** 0.5, d2)
        basis = self.basis.to(z)
        out = (self.split(z) * d1) @ basis.T + (self.split(eps) * d2) @ basis.T
        return self.merge(out, z.shape)


def _official_blocks(op) -> _RawBlocks | None:
    """The raw-block structure of ``op`` for the official ``Lambda_noise``; ``None`` where
    ours is used (see the comment at the end)."""
    from lit_restore.operators import AvgPoolSR, Colorization

    if isinstance(op, AvgPoolSR):
        r = op.factor

        def split(x: Tensor) -> Tensor:  # [B, C, h, w, r, r] → [B, C·h·w, r²]
            b, c, hh, ww = x.shape
            p = x.reshape(b, c, hh // r, r, ww // r, r).permute(0, 1, 2, 4, 3, 5)
            return p.reshape(b, -1, r * r)

        def merge(p: Tensor, shape) -> Tensor:
            b, c, hh, ww = shape
            p = p.reshape(b, c, hh // r, ww // r, r, r).permute(0, 1, 2, 4, 3, 5)
            return p.reshape(shape)

        return _RawBlocks(torch.full((1, r * r), 1.0 / r**2), split, merge)
    if isinstance(op, Colorization):

        def split_c(x: Tensor) -> Tensor:  # needles: the 3 channels of each pixel
            return x.flatten(2).transpose(1, 2)

        def merge_c(p: Tensor, shape) -> Tensor:
            return p.transpose(1, 2).reshape(shape)

        return _RawBlocks(op.weights[None], split_c, merge_c)
    # Inpainting, Denoising: the official term equals ours. Bicubic SR: the official SRConv has
    # no Lambda_noise (DDNM+ raises NotImplementedError there). Deblurring: the official one
    # pairs singular values channel-major with pixel-major vectors (module docstring). Ours.
    return None
