"""ResShift sampler: chain maths, determinism, tiled == untiled without seams, mask_back."""

import pytest
import torch
from torch import nn

from lit_restore.resshift.autoencoder import PixelSpace
from lit_restore.resshift.sampler import ResShiftSampler, adain_color_fix, wavelet_color_fix
from lit_restore.resshift.schedule import ResShiftSchedule
from lit_restore.resshift.unet import SwinUNet
from lit_restore.utils.seeding import generators_for


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on a shared 2-core box: thread oversubscription costs more than it gives."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class PerPixelNet(nn.Module):
    """x0 = f(x_t, lq, t) per pixel (1×1 convs): tiling must not change anything."""

    image_size = lq_size = 1
    size_multiple = 1

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.f = nn.Sequential(nn.Conv2d(7, 16, 1), nn.Tanh(), nn.Conv2d(16, 3, 1))

    def forward(self, x, t, lq=None, mask=None):
        tt = t.float().view(-1, 1, 1, 1).expand(-1, 1, *x.shape[-2:])
        return self.f(torch.cat([x, lq, tt], 1))


def test_zero_step_network_exact_chain():
    """With a network that returns a constant x0, the chain's last step lands exactly on it."""

    class Const(nn.Module):
        image_size = lq_size = 1

        def forward(self, x, t, lq=None, mask=None):
            return torch.full_like(x, 0.25)

    s = ResShiftSampler(ResShiftSchedule(steps=4), sf=2)
    out = s.sample(Const(), PixelSpace(), torch.zeros(1, 3, 4, 4), torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, 8, 8) and torch.allclose(out, torch.full_like(out, 0.25))


def test_tiled_equals_untiled_for_per_pixel_network():
    net, fs = PerPixelNet(), PixelSpace()
    lq = torch.rand(2, 3, 20, 28) * 2 - 1
    sch = ResShiftSchedule(steps=4)
    gens = lambda: generators_for(0, [3, 7])  # noqa: E731
    full = ResShiftSampler(sch, sf=1).sample(net, fs, lq, gens())
    tiled = ResShiftSampler(sch, sf=1, chop_size=8, chop_overlap=3, chop_bs=2).sample(
        net, fs, lq, gens()
    )
    assert torch.allclose(full, tiled, atol=1e-5)
    # per-image seeding: image 7 alone gives the same result as in the batch
    alone = ResShiftSampler(sch, sf=1).sample(net, fs, lq[1:], generators_for(0, [7]))
    assert torch.allclose(alone, full[1:], atol=1e-6)


class TileMeanNet(nn.Module):
    """x0 = lq + mean(lq over the tile): a context term that differs from tile to tile."""

    image_size = lq_size = 1
    size_multiple = 1

    def forward(self, x, t, lq=None, mask=None):
        return lq + lq.mean((2, 3), keepdim=True)


def _col_jumps(out):
    return (out[..., 1:] - out[..., :-1]).abs().amax((0, 1, 2))  # per column boundary


def test_tiles_blend_without_seams():
    # a smooth ramp: tiles see different means, so their outputs disagree by a constant
    xx = torch.linspace(-1, 1, 40).expand(24, 40)
    lq = torch.stack([0.5 * xx, 0.3 * xx, -0.4 * xx])[None]
    sch = ResShiftSchedule(steps=4)
    kw = dict(sf=1, chop_size=16, chop_overlap=8)
    smooth = ResShiftSampler(sch, **kw).sample(TileMeanNet(), PixelSpace(), lq)
    uniform = ResShiftSampler(sch, blend="uniform", **kw).sample(TileMeanNet(), PixelSpace(), lq)
    inside = _col_jumps(lq).max()  # the ramp's own step
    # uniform averaging (official) leaves steps where the tile count changes; the raised-cosine
    # window spreads the disagreement over the overlap
    assert _col_jumps(uniform).max() > 2.5 * inside
    assert _col_jumps(smooth).max() < 0.5 * _col_jumps(uniform).max()


def test_mask_back_and_color_fixes():
    lq = torch.rand(1, 3, 8, 8) * 2 - 1
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1
    net = SwinUNet(image_size=8, model_channels=32, channel_mult=(1,), num_res_blocks=1,
                   attention_resolutions=(), swin_embed_dim=32, num_head_channels=32,
                   window_size=4, lq_size=8, cond_mask=True)  # fmt: skip
    out = ResShiftSampler(ResShiftSchedule(steps=4), sf=1).sample(net, PixelSpace(), lq, None, mask)
    assert torch.equal(out[..., :4], lq[..., :4])
    x, ref = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16) * 3 + 1
    a = adain_color_fix(x, ref)
    assert torch.allclose(a.mean((2, 3)), ref.mean((2, 3)), atol=1e-5)
    assert torch.allclose(a.std((2, 3)), ref.std((2, 3)), atol=1e-3)
    assert torch.allclose(wavelet_color_fix(ref, ref), ref, atol=1e-5)
    # a flat image takes the low frequencies (hence the colour/mean) of the reference
    w = wavelet_color_fix(torch.full_like(x, 0.3), ref)
    assert torch.allclose(w.mean((2, 3)), ref.mean((2, 3)), atol=0.1)
    assert w.std() < ref.std() / 2  # and none of its detail
