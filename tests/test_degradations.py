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


def test_bicubic_degradation_is_matlab_imresize_unclamped():
    """ResShift's ``BicubicFromSource`` LQ is ``imresize_np`` without clamping: at a step edge
    the cubic kernel's negative lobes overshoot [0, 1], and the LQ keeps the overshoot."""
    hq = torch.full((2, 3, 32, 32), -1.0)
    hq[..., 16:] = 1.0  # a 0 → 1 step on [0, 1] intensities
    out = BicubicDegradation(4).degrade_batch(hq, [None, None])
    ref = imresize((hq + 1) / 2, 0.25) * 2 - 1
    assert out.lq.shape == (2, 3, 8, 8) and torch.equal(out.lq, ref) and torch.equal(out.y, out.lq)
    assert out.lq.min() < -1 and out.lq.max() > 1
    # it is the MATLAB BicubicSR operator (same 1-D matrices, no truncation)
    hq = _hq(2)
    op = BicubicSR(4, "matlab", threshold=0.0)
    assert torch.allclose(
        BicubicDegradation(4).degrade_batch(hq, [None] * 2).lq, op.A(hq), atol=1e-5
    )


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


def test_realesrgan_per_batch_draws_share_the_batch_choices():
    """``draws="per_batch"`` (the official training): the resize/noise-type/order choices come
    from the batch generator, the rest from each image's. So image b's LQ is a function of
    (batch generator, its own generator): another generator for image 0 leaves images 1, 2 as
    they were, another batch generator changes them; ``per_image`` ignores the batch generator,
    and evaluation (``degrade``) is per image in both modes."""
    hq = _hq(3)
    per_batch = RealESRGANDegradation(4, draws="per_batch")
    assert per_batch.batch_draws and not RealESRGANDegradation(4).batch_draws

    def run(deg, seeds, batch_seed):
        gens = [image_generator(5, s, STREAM_DEGRADATION) for s in seeds]
        return deg.degrade_batch(hq, gens, image_generator(9, batch_seed, 0)).lq

    ref = run(per_batch, [10, 11, 12], 0)
    swapped = run(per_batch, [20, 11, 12], 0)
    assert not torch.equal(swapped[0], ref[0]) and torch.equal(swapped[1:], ref[1:])
    diffs = [
        [not torch.equal(a, b) for a, b in zip(run(per_batch, [10, 11, 12], k), ref)]
        for k in range(1, 6)
    ]
    assert any(all(d) for d in diffs)  # a new batch draw changes every image (some draws tie)
    per_image = RealESRGANDegradation(4)
    assert torch.equal(run(per_image, [10, 11, 12], 0), run(per_image, [10, 11, 12], 1))
    g = image_generator(5, 11, STREAM_DEGRADATION)
    assert torch.equal(
        per_batch(hq[1], g).lq, per_image(hq[1], image_generator(5, 11, STREAM_DEGRADATION)).lq
    )


def test_realesrgan_per_batch_draws_are_shared_within_a_batch():
    """An image run alone with the batch's shared draws and its own generator has the LQ it
    has within the batch: its batch mates act on it through the shared draws only."""
    hq = _hq(3)
    deg = RealESRGANDegradation(4, draws="per_batch")
    batch_gen = image_generator(9, 0, 0)
    shared = deg.draw_shared(image_generator(9, 0, 0))
    gens = [image_generator(5, s, STREAM_DEGRADATION) for s in (10, 11, 12)]
    out = deg.degrade_batch(hq, gens, batch_gen).lq
    for b, s in enumerate((10, 11, 12)):
        g = image_generator(5, s, STREAM_DEGRADATION)
        alone = deg.run((hq[b : b + 1] + 1) / 2, shared, [deg.draw_image(g, shared)], [g])
        assert torch.equal(alone[0] * 2 - 1, out[b])
