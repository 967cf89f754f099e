"""Any image size through a fixed-size prior: :class:`lit_restore.priors.TiledPrior`.

- a translation-equivariant *pointwise* prior: tiled ε̂ equals the untiled one everywhere, and a
  whole DPS restoration of a 96×64 image through 32-px patches equals the untiled restoration;
- a *local* prior (two 3×3 convolutions, receptive radius 2, zero padding): ε̂ equals the untiled
  one exactly wherever every covering patch sees the whole receptive field, and elsewhere the
  error obeys the bound that follows from the blend's weights; a full restoration's seams stay
  below a measured bound;
- activation checkpointing changes nothing in the gradient; images no larger than the patch go
  to the prior untouched;
- sample.py restores a 96×64 image through a 32-px ADM prior (CPU, end to end).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from entry_points import run_entry
from PIL import Image
from torch import Tensor, nn

from lit_restore.operators import BicubicSR
from lit_restore.priors import DiffusionPrior, TiledPrior
from lit_restore.samplers import DPS
from lit_restore.tiling import raised_cosine_window, tile_grid

H, W, P, OV = 96, 64, 32, 8


class ConvPrior(DiffusionPrior):
    """ε̂ = tanh(conv(x)) · c(t) with convolutions of size ``k`` (1: pointwise), zero padding."""

    def __init__(self, k: int, image_size: int | None = None) -> None:
        super().__init__(image_size=image_size, channels=3)
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, k, padding=k // 2), nn.Tanh(), nn.Conv2d(8, 3, k, padding=k // 2)
        )
        self.freeze()

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        self.check_input(x_t)
        c = 0.5 + self.alpha_bar(t, x_t).sqrt()
        return self.net(x_t) * c


def _image(seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    # a smooth image: low-frequency noise, upsampled
    low = torch.rand(1, 3, H // 8, W // 8, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=(H, W), mode="bicubic").clamp(-1, 1)


def test_tile_grid_covers_the_image_and_ends_flush():
    th, tw, boxes = tile_grid(H, W, P, OV)
    assert (th, tw) == (P, P)
    ys = sorted({y for y, _ in boxes})
    xs = sorted({x for _, x in boxes})
    assert ys == [0, 24, 48, 64] and xs == [0, 24, 32]  # stride 24, last tile flush
    cover = torch.zeros(H, W)
    for y, x in boxes:
        cover[y : y + P, x : x + P] += 1
    assert cover.min() >= 1
    with pytest.raises(ValueError, match="overlap"):
        tile_grid(H, W, P, P)


def test_pointwise_prior_tiled_equals_untiled():
    prior = ConvPrior(1)
    tiled = TiledPrior(prior, patch_size=P, overlap=OV, patch_batch=3)
    x = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([500, 500])
    # Σ w ε / Σ w with equal ε: round-off of a ≤ 4-term weighted mean, a few float32 ulps
    torch.testing.assert_close(tiled.eps(x, t), prior.eps(x, t), rtol=0, atol=1e-6)


def test_pointwise_prior_restores_96x64_as_untiled():
    prior = ConvPrior(1)
    tiled = TiledPrior(prior, patch_size=P, overlap=OV)
    op = BicubicSR(4)
    x = _image()
    y = op.A(x)
    runs = []
    for p in (prior, tiled):
        gens = [torch.Generator().manual_seed(7)]
        runs.append(DPS(steps=10, scale=0.5).sample(p, op, y, sigma_y=0.05, generator=gens))
    assert runs[0].shape == (1, 3, H, W)
    # ε̂ agree to ~1e-7 per step; 10 steps of DPS (gradient through the network) keep it ~1e-6
    torch.testing.assert_close(runs[1], runs[0], rtol=0, atol=1e-5)


def _safe_mask(boxes, th: int, tw: int, r: int) -> Tensor:
    """Pixels where every covering patch sees radius ``r`` around them (cuts at the image border
    are no cuts: the untiled network pads there too)."""
    safe = torch.ones(H, W, dtype=torch.bool)
    ii = torch.arange(H)[:, None].expand(H, W)
    jj = torch.arange(W)[None, :].expand(H, W)
    for y, x in boxes:
        inside = (ii >= y) & (ii < y + th) & (jj >= x) & (jj < x + tw)
        ok = torch.ones(H, W, dtype=torch.bool)
        if y > 0:
            ok &= ii - y >= r
        if y + th < H:
            ok &= y + th - 1 - ii >= r
        if x > 0:
            ok &= jj - x >= r
        if x + tw < W:
            ok &= x + tw - 1 - jj >= r
        safe &= ~inside | ok
    return safe


def test_local_prior_exact_away_from_cuts_and_bounded_near_them():
    prior = ConvPrior(3)  # two 3×3 convolutions: receptive radius 2
    tiled = TiledPrior(prior, patch_size=P, overlap=OV, patch_batch=2)
    x = torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([300])
    full, blend = prior.eps(x, t), tiled.eps(x, t)
    th, tw, boxes = tile_grid(H, W, P, OV)
    safe = _safe_mask(boxes, th, tw, r=2)
    assert 0 < int(safe.sum()) < H * W
    err = (blend - full).abs().amax(1)[0]  # [H, W], max over channels
    assert float(err[safe].max()) < 1e-6  # exact up to the blend's round-off
    # near cuts: |Σ w_k (ε_k − ε)| / Σ w_k ≤ Σ_k w_k |ε_k − ε| / Σ_k w_k, and ε_k = ε where the
    # pixel is safe in patch k, so only the patches cut next to it contribute
    win = raised_cosine_window(th, tw)
    total, bound = torch.zeros(H, W), torch.zeros(H, W)
    worst = 0.0
    for y, x0 in boxes:
        e_k = prior.eps(x[..., y : y + th, x0 : x0 + tw], t)
        dev = (e_k - full[..., y : y + th, x0 : x0 + tw]).abs().amax(1)[0]
        worst = max(worst, float(dev.max()))
        total[y : y + th, x0 : x0 + tw] += win
        bound[y : y + th, x0 : x0 + tw] += win * dev
    bound = bound / total
    assert bool((err <= bound + 1e-6).all())
    # the taper: a pixel within 2 px of a cut has weight ≤ sin²(π·1.5/32) ≈ 0.022 in the cut
    # patch and ≥ sin²(π·5.5/32) ≈ 0.26 in its neighbour (overlap 8), so the blend keeps at most
    # 0.022 / 0.28 ≈ 8 % of the worst patch-edge error
    assert worst > 0.05  # patch edges do err (zero padding inside the image)
    assert float(err.max()) <= 0.08 * worst


def _psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB between two model-space ([-1, 1], peak-to-peak 2) images."""
    return float(10 * torch.log10(4 / (a - b).pow(2).mean()))


def test_local_prior_restoration_seams_stay_below_the_measured_bound():
    """A 20-step DPS restoration through 32-px patches against the untiled one. Measured here:
    overlap 8 → 56.3 dB (max |Δ| 0.11), overlap 16 → 61.8 dB; without overlap every pixel has one
    patch, the cuts show: 27.3 dB (max |Δ| 1.65). The bounds sit between (8 dB margin)."""
    prior = ConvPrior(3)
    op = BicubicSR(4)
    x = _image()
    y = op.A(x)

    def restore(p: DiffusionPrior) -> Tensor:
        gens = [torch.Generator().manual_seed(7)]
        return DPS(steps=20, scale=0.5).sample(p, op, y, sigma_y=0.05, generator=gens)

    untiled = restore(prior)
    overlapped = restore(TiledPrior(prior, patch_size=P, overlap=OV))
    cut = restore(TiledPrior(prior, patch_size=P, overlap=0))
    assert _psnr(overlapped, untiled) > 48
    assert _psnr(cut, untiled) < 35  # the test can tell a seam when there is one


def test_checkpointing_keeps_the_gradient_and_small_images_pass_through():
    prior = ConvPrior(3)
    x = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([100, 100])
    grads = []
    for ckpt in (True, False):
        xi = x.clone().requires_grad_(True)
        e = TiledPrior(prior, patch_size=P, overlap=OV, patch_batch=2, checkpoint=ckpt).eps(xi, t)
        (g,) = torch.autograd.grad(e.pow(2).sum(), xi)
        grads.append(g)
    # recomputation runs the same float32 operations in the same order: identical
    assert torch.equal(grads[0], grads[1])
    small = torch.randn(1, 3, P, P)
    assert torch.equal(TiledPrior(prior, patch_size=P).eps(small, t[:1]), prior.eps(small, t[:1]))
    with pytest.raises(ValueError, match="smaller than the 32-px patch"):
        TiledPrior(prior, patch_size=P).eps(torch.randn(1, 3, 16, 64), t[:1])
    with pytest.raises(ValueError, match="needs patch_size"):
        TiledPrior(ConvPrior(1))


def test_sample_py_restores_a_96x64_image_through_a_32px_prior(tmp_path):
    """End to end on CPU: a random-weight 32-px ADM prior wrapped in TiledPrior, DPS SR×4."""
    folder = tmp_path / "images"
    folder.mkdir()
    rgb = ((_image()[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    Image.fromarray(rgb).save(folder / "wide.png")  # 64 wide, 96 high
    cfg = tmp_path / "tiled.yaml"
    cfg.write_text(
        f"""
seed_everything: 0
trainer: {{accelerator: cpu, devices: 1, enable_progress_bar: false,
  logger: {{class_path: lightning.pytorch.loggers.TensorBoardLogger,
            init_args: {{save_dir: {tmp_path}, name: tiled, version: v}}}},
  callbacks: [{{class_path: lit_restore.evaluation.RestorationMetrics,
                init_args: {{metrics: [psnr]}}}},
              {{class_path: lit_restore.evaluation.RestoredImageWriter}}]}}
model:
  class_path: lit_restore.modules.ZeroShotRestoration
  init_args:
    prior:
      class_path: lit_restore.priors.TiledPrior
      init_args:
        overlap: 8
        patch_batch: 2
        prior:
          class_path: lit_restore.priors.ADMPrior
          init_args: {{image_size: 32, num_channels: 32, num_res_blocks: 1,
                      channel_mult: "1,2", attention_resolutions: "16", num_head_channels: 16}}
    sampler: {{class_path: lit_restore.samplers.DPS, init_args: {{steps: 3}}}}
data:
  class_path: lit_restore.data.RestorationDataModule
  init_args:
    test_set: {{class_path: lit_restore.data.ImageFolder, init_args: {{root: {folder}}}}}
    operator: {{class_path: lit_restore.operators.BicubicSR, init_args: {{factor: 4}}}}
    noise: {{class_path: lit_restore.operators.GaussianNoise, init_args: {{sigma: 0.025}}}}
    crop_size: null
    batch_size: 1
"""
    )
    run_entry("sample.py", "test", "--config", cfg)
    restored = Image.open(tmp_path / "tiled" / "v" / "restored" / "wide.png")
    assert restored.size == (W, H)
    rows = (tmp_path / "tiled" / "v" / "per_image_test.csv").read_text().splitlines()
    assert len(rows) == 2 and "wide" in rows[1]
