"""Generic post-processing: colour fixes and pasting known pixels back."""

import pytest
import torch

from lit_restore.postprocess import (
    adain_color_fix,
    check_color_fix,
    color_fix,
    paste_known,
    wavelet_color_fix,
)


def test_color_fixes():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 16, 16, generator=g)
    ref = torch.randn(2, 3, 16, 16, generator=g) * 3 + 1
    a = adain_color_fix(x, ref)
    assert torch.allclose(a.mean((2, 3)), ref.mean((2, 3)), atol=1e-5)
    # std(a) = std(ref)·std(x)/(std(x) + 1e-5): relative deficit ≤ 1e-5/std(x) ≈ 1e-5
    assert torch.allclose(a.std((2, 3)), ref.std((2, 3)), rtol=1e-4)
    assert torch.allclose(wavelet_color_fix(ref, ref), ref, atol=1e-5)
    # a flat image takes the low frequencies (hence the colour/mean) of the reference
    w = wavelet_color_fix(torch.full_like(x, 0.3), ref)
    assert torch.allclose(w.mean((2, 3)), ref.mean((2, 3)), atol=0.1)
    assert w.std() < ref.std() / 2  # and none of its detail
    # by name, clamped to the image range
    assert torch.equal(color_fix(x, ref, "adain"), a.clamp(-1, 1))
    with pytest.raises(ValueError, match="color_fix='sepia'"):
        check_color_fix("sepia")
    assert check_color_fix(None) is None


def test_paste_known_keeps_exactly_the_known_pixels():
    x, known = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1
    out = paste_known(x, known, mask)
    assert torch.equal(out[..., :4], known[..., :4]) and torch.equal(out[..., 4:], x[..., 4:])
