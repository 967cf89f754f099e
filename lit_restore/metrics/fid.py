"""FID and KID from per-image feature vectors.

Features are kept **per image** (not as running sums) so that an interrupted evaluation can be
resumed and the final FID still uses every image, and so that DDP ranks can be merged exactly.

* FID (Heusel et al. 2017): ``‖μ_r − μ_f‖² + tr(Σ_r + Σ_f − 2 (Σ_r Σ_f)^{1/2})`` with unbiased
  covariances; the trace of the matrix square root is ``Σ sqrt(eig(Σ_r Σ_f))`` (as in
  torchmetrics ``image/fid.py``), computed in float64.
* KID (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial kernel
  ``k(a, b) = (aᵀb / d + 1)³`` averaged over random subsets (torchmetrics ``image/kid.py``).

The default extractor is torch-fidelity's TF-compatible InceptionV3 (2048-d pool features) via
torchmetrics' ``NoTrainInceptionV3``, built only from a local weight file.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from lit_restore.checkpoints import check_readable
from lit_restore.weights import resolve


class InceptionFeatures(nn.Module):
    """[N,3,H,W] images in [0,1] -> [N,2048] InceptionV3 pool features (torch-fidelity)."""

    def __init__(self, weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        path = resolve(weights or "inception", option="inception_weights", expect="inception")
        check_readable(path)  # validate with weights_only=True before torch-fidelity loads it
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.net = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=["2048"],
            feature_extractor_weights_path=str(path),
        )

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net((x.clamp(0, 1) * 255).round().to(torch.uint8))


def _moments(f: Tensor) -> tuple[Tensor, Tensor]:
    f = f.double()
    mu = f.mean(0)
    d = f - mu
    return mu, d.T @ d / (f.shape[0] - 1)


def frechet_distance(fake: Tensor, real: Tensor) -> float:
    """FID between two feature sets [N,D] and [M,D] (N, M >= 2)."""
    if fake.shape[0] < 2 or real.shape[0] < 2:
        raise ValueError("FID needs at least 2 images on each side")
    mu_f, s_f = _moments(fake)
    mu_r, s_r = _moments(real)
    tr_sqrt = torch.linalg.eigvals(s_f @ s_r).sqrt().real.sum()
    return float((mu_f - mu_r).square().sum() + s_f.trace() + s_r.trace() - 2 * tr_sqrt)


def kernel_inception_distance(
    fake: Tensor, real: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID mean and std over ``subsets`` random subsets (size capped at the set sizes)."""
    from torchmetrics.image.kid import poly_mmd

    n = min(subset_size, fake.shape[0], real.shape[0])
    if n < 2:
        raise ValueError("KID needs at least 2 images on each side")
    g = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(subsets):
        i = torch.randperm(fake.shape[0], generator=g)[:n]
        j = torch.randperm(real.shape[0], generator=g)[:n]
        vals.append(poly_mmd(real[j].double(), fake[i].double()))
    v = torch.stack(vals).detach()
    return float(v.mean()), float(v.std(unbiased=False))
