"""Any image size for a prior trained at one size: per-step patch-wise denoising.

A prior trained on ``s × s`` images (ADM: 256) restores an ``H × W`` image (larger, non-square) by
evaluating its network on overlapping ``s × s`` patches at every step and blending the patch
predictions with the raised-cosine window of :mod:`lit_restore.tiling`:

    ε̂(x_t, t) = Σ_k Pₖᵀ (w ⊙ ε_θ(Pₖ x_t, t)) / Σ_k Pₖᵀ w

(``Pₖ`` crops patch k, ``Pₖᵀ`` puts it back in place). Only the network call is tiled: the sampler
sees one whole-image ε̂, so the operator acts on the whole image, the sampler noise is one field per
image (:func:`lit_restore.utils.seeding.randn_per_image`), and every guidance method works
unchanged. Patch-wise score blending per step is the approach of e.g. Özdenizci & Legenstein,
"Restoring Vision in Adverse Weather Conditions with Patch-Based Denoising Diffusion Models"
(TPAMI 2023, arXiv 2207.14626; IGITUGraz/WeatherDiffusion
``utils/sampling.py::generalized_steps_overlapping``, which averages uniformly); the window here
is the one ResShift's tiled chain uses.

**Memory** is bounded by ``patch_batch`` patches per network call, not by the image size: without
gradients the patches run ``patch_batch`` at a time; with gradients (DPS, SaFaRI differentiate
through the network) each group runs under activation checkpointing
(``torch.utils.checkpoint``), so the backward pass recomputes one group at a time and the graph
holds only the patch inputs.

**Exactness.** Where every patch covering a pixel sees the network's whole receptive field around
it, a translation-equivariant network returns the same value in each patch, and the normalised
blend returns exactly the untiled ε̂ there (tests/test_tiled_prior.py checks this, and measures
the seams elsewhere). Attention over a whole feature map (ADM at 32/16/8 px) and the zero padding
at patch borders make real priors only approximately equivariant; a larger ``overlap`` pushes the
patch borders further under the taper of the window.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from lit_restore.priors.base import DiffusionPrior
from lit_restore.tiling import raised_cosine_window, tile_grid


class TiledPrior(DiffusionPrior):
    """Wrap ``prior`` so it denoises images of any size ≥ its patch (module docstring).

    Args:
        prior: the frozen prior (its schedule is shared, not copied).
        patch_size: patch side; ``None`` = the prior's ``image_size``.
        overlap: overlap of neighbouring patches in pixels (``0 ≤ overlap < patch_size``);
            ``None`` = a quarter of the patch (64 px for a 256-px prior).
        patch_batch: patch positions per network call (each holds the whole image batch): the
            memory bound.
        checkpoint: recompute each patch group in the backward pass instead of keeping its
            activations (gradient methods only; ``False`` keeps them: faster, memory ∝ image).

    Images no larger than the patch go to ``prior`` untouched, so a 256×256 run is bit for bit the
    untiled one.
    """

    def __init__(
        self,
        prior: DiffusionPrior,
        patch_size: int | None = None,
        overlap: int | None = None,
        patch_batch: int = 4,
        checkpoint: bool = True,
    ) -> None:
        nn.Module.__init__(self)
        size = patch_size if patch_size is not None else prior.image_size
        if size is None:
            raise ValueError(
                f"TiledPrior needs patch_size: {type(prior).__name__} has no training size "
                "(image_size=None)"
            )
        overlap = size // 4 if overlap is None else int(overlap)
        if not 0 <= overlap < size:
            raise ValueError(f"TiledPrior overlap={overlap} must be in [0, patch_size={size})")
        if patch_batch < 1:
            raise ValueError(f"TiledPrior patch_batch={patch_batch} must be >= 1")
        self.prior = prior
        self.image_size = None  # any size
        self.channels = prior.channels
        self.patch_size, self.overlap = int(size), overlap
        self.patch_batch, self.checkpoint = int(patch_batch), checkpoint
        # the wrapped prior's schedule, the same tensors (no second float64 → float32 rounding)
        self.register_buffer("betas", prior.betas, persistent=False)
        self.register_buffer("alphas_cumprod", prior.alphas_cumprod, persistent=False)

    @property
    def net(self) -> nn.Module | None:
        """The wrapped network (what :mod:`lit_restore.runtime` compiles / casts)."""
        return getattr(self.prior, "net", None)

    @property
    def name(self) -> str:
        inner = getattr(self.prior, "name", None) or type(self.prior).__name__
        return f"{inner}-tiled{self.patch_size}o{self.overlap}"

    def set_torso_dtype(self, dtype: torch.dtype) -> bool:
        return self.prior.set_torso_dtype(dtype)

    def _patches_eps(self, patches: Tensor, t: Tensor) -> Tensor:
        return self.prior.eps(patches, t)

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        h, w = x_t.shape[-2:]
        p = self.patch_size
        if h <= p and w <= p:
            return self.prior.eps(x_t, t)
        if h < p or w < p:
            raise ValueError(
                f"TiledPrior: a {h}×{w} image is smaller than the {p}-px patch in one side; "
                "resize or pad the images to at least the patch size"
            )
        b = x_t.shape[0]
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(b)
        th, tw, boxes = tile_grid(h, w, p, self.overlap)
        win = raised_cosine_window(th, tw, x_t.device).to(x_t.dtype)
        weight = torch.zeros(1, 1, h, w, device=x_t.device, dtype=x_t.dtype)
        out: Tensor | None = None
        use_ckpt = self.checkpoint and torch.is_grad_enabled() and x_t.requires_grad
        for i in range(0, len(boxes), self.patch_batch):
            group = boxes[i : i + self.patch_batch]
            patches = torch.cat([x_t[..., y : y + th, x : x + tw] for y, x in group])
            tt = t.repeat(len(group))
            if use_ckpt:
                e = checkpoint(self._patches_eps, patches, tt, use_reentrant=False)
            else:
                e = self._patches_eps(patches, tt)
            if out is None:
                out = torch.zeros(b, e.shape[1], h, w, device=x_t.device, dtype=e.dtype)
            for j, (y, x) in enumerate(group):
                out[..., y : y + th, x : x + tw] += e[j * b : (j + 1) * b] * win
                weight[..., y : y + th, x : x + tw] += win
        assert out is not None
        return out / weight
