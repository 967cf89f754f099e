"""Degradations: the per-image protocol, linear operator + noise, MATLAB bicubic against PIL,
Real-ESRGAN kernels, determinism and ranges."""

import numpy as np
import pytest
import torch
from PIL import Image

from lit_restore.degradations import (
    BicubicDegradation,
    BlurConfig,
    LinearDegradation,
    RealESRGANDegradation,
    imresize,
)
from lit_restore.degradations.realesrgan import (
    anisotropic_gaussian_kernel,
    jpeg,
    random_blur_kernel,
    sinc_kernel,
)
from lit_restore.operators import BicubicSR, GaussianNoise, Inpainting, MotionBlur
from lit_restore.utils.seeding import STREAM_DEGRADATION, generators_for, image_generator


def _hq(n=3, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------------------ protocol
def test_linear_degradation_is_operator_then_noise_from_one_generator():
    """y = noise(A_θ x) with θ then the noise drawn, in that order, from the image's generator;
    lq = to_image(y); the mask of an inpainting operator rides along."""
    hq = _hq(1)[0]
    op, noise = MotionBlur(7, 0.5, "circular"), GaussianNoise(0.05)
    out = LinearDegradation(op, noise)(hq, image_generator(0, 4, STREAM_DEGRADATION))
    g = image_generator(0, 4, STREAM_DEGRADATION)
    kernel = op.sample_params(g, tuple(hq.shape))["kernel"]
    bound = op.bind({"kernel": kernel[None]})
    y = bound.A(hq[None]) + 0.1 * torch.randn((1, *hq.shape), generator=g)
    assert torch.equal(out.params["kernel"], kernel) and torch.equal(out.y, y[0])
    assert torch.equal(out.lq, out.y) and out.mask is None
    masked = LinearDegradation(Inpainting("mixed"))(hq, image_generator(0, 4, STREAM_DEGRADATION))
    assert masked.mask.shape == (1, 32, 32) and torch.equal(masked.y, masked.mask * hq)


@pytest.mark.parametrize(
    "degradation",
    [
        LinearDegradation(Inpainting("random"), GaussianNoise(0.1)),
        BicubicDegradation(4),
        RealESRGANDegradation(4),
    ],
    ids=["linear", "bicubic", "realesrgan"],
)
def test_each_image_depends_only_on_its_own_generator(degradation):
    """A batch degrades image by image: image b alone (another batch) gives the same result."""
    hq = _hq(3)
    batch = degradation.degrade_batch(hq, generators_for(5, [10, 11, 12], STREAM_DEGRADATION))
    alone = degradation(hq[1], image_generator(5, 11, STREAM_DEGRADATION))
    assert torch.equal(batch.y[1], alone.y) and torch.equal(batch.lq[1], alone.lq)
    other = degradation.degrade_batch(hq, generators_for(6, [10, 11, 12], STREAM_DEGRADATION))
    assert torch.equal(other.lq, batch.lq) == isinstance(degradation, BicubicDegradation)


def test_bicubic_degradation_is_clamped_matlab_imresize():
    hq = _hq(2)
    out = BicubicDegradation(4).degrade_batch(hq, [None, None])
    ref = imresize((hq + 1) / 2, 0.25).clamp(0, 1) * 2 - 1
    assert out.lq.shape == (2, 3, 8, 8) and torch.equal(out.lq, ref) and torch.equal(out.y, out.lq)
    # without clamping it is the MATLAB BicubicSR operator (same 1-D matrices, no truncation)
    op = BicubicSR(4, "matlab", threshold=0.0)
    assert torch.allclose(imresize((hq + 1) / 2, 0.25) * 2 - 1, op.A(hq), atol=1e-5)


@pytest.mark.parametrize(
    "degradation,fits,misfits",
    [
        (LinearDegradation(BicubicSR(4)), (3, 32, 32), (3, 30, 32)),
        (BicubicDegradation(4), (3, 32, 32), (3, 32, 30)),
        (RealESRGANDegradation(2), (3, 34, 34), (3, 33, 34)),
    ],
)
def test_check_image_shape_says_why(degradation, fits, misfits):
    degradation.check_image_shape(fits)
    with pytest.raises(ValueError, match="divisible"):
        degradation.check_image_shape(misfits)


# ----------------------------------------------------------------------------- bicubic
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


# ------------------------------------------------------------------------- Real-ESRGAN
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


def test_realesrgan_output_is_an_8bit_lq_image():
    out = RealESRGANDegradation(sf=4).degrade_batch(_hq(3), generators_for(5, [10, 11, 12]))
    assert out.lq.shape == (3, 3, 8, 8) and torch.equal(out.y, out.lq) and out.mask is None
    lq01 = (out.lq + 1) / 2
    assert lq01.min() >= 0 and lq01.max() <= 1
    # quantised to 8-bit levels like a saved image (model space maps k/255 to 2k/255 − 1)
    assert torch.allclose(lq01 * 255, (lq01 * 255).round(), atol=1e-4)
