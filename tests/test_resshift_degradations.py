"""Degradations: MATLAB bicubic against PIL, kernels, Real-ESRGAN determinism/ranges, masks."""

import numpy as np
import pytest
import torch
from PIL import Image

from lit_restore.resshift.degradations import (
    BlurConfig,
    RealESRGANDegradation,
    anisotropic_gaussian_kernel,
    imresize,
    jpeg,
    random_blur_kernel,
    random_mask,
    sinc_kernel,
)


@pytest.mark.parametrize("scale", [0.25, 0.5, 2.0])
def test_imresize_matches_pil_bicubic_in_the_interior(scale):
    """PIL's float bicubic is the same a=-0.5 antialiased kernel; only borders differ."""
    rng = np.random.default_rng(0)
    img = rng.random((32, 40)).astype(np.float32)
    ours = imresize(torch.from_numpy(img)[None, None], scale)[0, 0].numpy()
    size = (int(40 * scale), int(32 * scale))
    pil = np.asarray(Image.fromarray(img, mode="F").resize(size, Image.BICUBIC))
    m = 3 if scale > 1 else 2
    assert ours.shape == pil.shape
    assert np.abs(ours[m:-m, m:-m] - pil[m:-m, m:-m]).max() < 1e-4
    const = imresize(torch.full((1, 1, 17, 23), 0.7), scale)
    assert torch.allclose(const, torch.full_like(const, 0.7), atol=1e-6)


def test_kernels_sum_to_one_and_sinc_fraction():
    for kind in ("gaussian", "generalized", "plateau"):
        k = anisotropic_gaussian_kernel(21, 2.0, 0.7, 0.4, beta=1.5, kind=kind)
        assert abs(float(k.sum()) - 1) < 1e-5 and (k >= 0).all()
    assert abs(float(sinc_kernel(13, 1.5, pad_to=21).sum()) - 1) < 1e-5
    g = torch.Generator().manual_seed(0)
    ks = [random_blur_kernel(g, BlurConfig()) for _ in range(300)]
    assert all(k.shape == (21, 21) and abs(float(k.sum()) - 1) < 1e-4 for k in ks)
    # sinc kernels have negative lobes; Gaussian-family kernels never do (sinc_prob 0.1)
    frac = np.mean([bool((k < -1e-6).any()) for k in ks])
    assert 0.04 < frac < 0.17


def test_jpeg_quality_monotone():
    torch.manual_seed(0)
    x = torch.rand(3, 32, 32).cumsum(-1) / 32  # textured but structured
    errs = [float((jpeg(x, q) - x).abs().mean()) for q in (10, 50, 95)]
    assert errs[0] > errs[1] > errs[2]


def test_realesrgan_deterministic_per_image_and_in_range():
    torch.manual_seed(0)
    hq = torch.rand(3, 3, 32, 32)
    d = RealESRGANDegradation(sf=4)
    lq = d(hq, seed=5, indices=[10, 11, 12])
    assert lq.shape == (3, 3, 8, 8) and lq.min() >= 0 and lq.max() <= 1
    # image 11 alone (different batch) degrades identically; another seed differs
    assert torch.equal(d(hq[1:2], seed=5, indices=[11])[0], lq[1])
    assert not torch.equal(d(hq, seed=6, indices=[10, 11, 12]), lq)
    # quantised to 8-bit levels like a saved image
    assert torch.allclose(lq * 255, (lq * 255).round(), atol=1e-4)


def test_masks():
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    for kind in ("box", "irregular", "outpaint", "mixed"):
        m = random_mask(g(), 32, 32, kind)
        assert m.shape == (1, 32, 32) and set(m.unique().tolist()) <= {0.0, 1.0}
        assert 0 < m.mean() < 1
        assert torch.equal(m, random_mask(g(), 32, 32, kind))
    with pytest.raises(ValueError, match="mask kind"):
        random_mask(g(), 8, 8, "star")
