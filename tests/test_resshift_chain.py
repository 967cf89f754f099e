"""ResShift chain: chain maths, determinism, tiled == untiled without seams, conditioning."""

import pytest
import torch
from torch import Tensor, nn

from lit_restore.nn import PixelSpace, SwinUNet
from lit_restore.resshift.chain import ResShiftChain
from lit_restore.resshift.schedule import ResShiftSchedule
from lit_restore.utils.seeding import generators_for


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

    s = ResShiftChain(ResShiftSchedule(steps=4), sf=2)
    out = s.sample(Const(), PixelSpace(), torch.zeros(1, 3, 4, 4), torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, 8, 8) and torch.allclose(out, torch.full_like(out, 0.25))


def test_tiled_equals_untiled_for_per_pixel_network():
    net, fs = PerPixelNet(), PixelSpace()
    lq = torch.rand(2, 3, 20, 28) * 2 - 1
    sch = ResShiftSchedule(steps=4)
    gens = lambda: generators_for(0, [3, 7])  # noqa: E731
    full = ResShiftChain(sch, sf=1).sample(net, fs, lq, gens())
    tiled = ResShiftChain(sch, sf=1, chop_size=8, chop_overlap=3, chop_bs=2).sample(
        net, fs, lq, gens()
    )
    assert torch.allclose(full, tiled, atol=1e-5)
    # per-image seeding: image 7 alone gives the same result as in the batch
    alone = ResShiftChain(sch, sf=1).sample(net, fs, lq[1:], generators_for(0, [7]))
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
    smooth = ResShiftChain(sch, **kw).sample(TileMeanNet(), PixelSpace(), lq)
    uniform = ResShiftChain(sch, tiling="uniform", **kw).sample(TileMeanNet(), PixelSpace(), lq)
    inside = _col_jumps(lq).max()  # the ramp's own step
    # uniform averaging (official) leaves steps where the tile count changes; the raised-cosine
    # window spreads the disagreement over the overlap
    assert _col_jumps(uniform).max() > 2.5 * inside
    assert _col_jumps(smooth).max() < 0.5 * _col_jumps(uniform).max()


def test_inpainting_condition_masks_the_input_and_adds_the_mask_channel():
    """``condition`` is the one place the LQ becomes network input: missing pixels at −1 (black),
    the mask channel 1 = missing scaled to [-1, 1]; the chain feeds exactly that to the network."""
    lq = torch.rand(1, 3, 8, 8) * 2 - 1
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1
    seen = {}

    class Probe(nn.Module):
        image_size = lq_size = 8

        def forward(self, x, t, lq=None, mask=None):
            seen["lq"], seen["mask"] = lq, mask
            return torch.zeros_like(x)

    chain = ResShiftChain(ResShiftSchedule(steps=4), sf=1)
    cond = chain.condition(Probe(), PixelSpace(), lq, mask)
    assert torch.equal(cond.lq[..., :4], lq[..., :4]) and (cond.lq[..., 4:] == -1).all()
    assert torch.equal(cond.z_y, cond.lq)  # pixel space, sf 1: y is the masked LQ itself
    assert (cond.mask[..., :4] == -1).all() and (cond.mask[..., 4:] == 1).all()
    chain.sample(Probe(), PixelSpace(), lq, None, mask)
    assert torch.equal(seen["lq"], cond.lq) and torch.equal(seen["mask"], cond.mask)
    # a real mask-conditioned network runs end to end
    net = SwinUNet(image_size=8, model_channels=32, channel_mult=(1,), num_res_blocks=1,
                   attention_resolutions=(), swin_embed_dim=32, num_head_channels=32,
                   window_size=4, lq_size=8, cond_mask=True)  # fmt: skip
    assert chain.sample(net, PixelSpace(), lq, None, mask).shape == lq.shape


# ------------------------------------------------------------------ decisive chain checks
def test_oracle_network_returns_x0_exactly():
    """An oracle that always predicts the true x0 makes the ×4 chain return x0 (any noise)."""
    x0 = torch.rand(2, 3, 32, 32) * 2 - 1
    lq = torch.rand(2, 3, 8, 8) * 2 - 1

    class Oracle(nn.Module):
        image_size = lq_size = 32

        def forward(self, x, t, lq=None, mask=None):
            assert lq.shape[-2:] == (32, 32)  # conditioned on the bicubic-upsampled LQ
            return x0

    for kappa in (0.5, 2.0):
        s = ResShiftChain(ResShiftSchedule(steps=4, kappa=kappa), sf=4)
        out = s.sample(Oracle(), PixelSpace(), lq, generators_for(3, [0, 1]))
        assert torch.allclose(out, x0, atol=1e-6)


# per channel: x0 ~ N(m, s²) i.i.d. per pixel (given the LQ), and the LQ image y (constant)
_M, _S, _Y = (0.3, -0.4, 0.0), (0.15, 0.12, 0.2), (-0.3, 0.2, 0.5)


class GaussianBayesX0(nn.Module):
    """The Bayes-optimal x0 predictor for x0 ~ N(m, s²) under q(x_t | x0, y).

    x_t = (1-η_t) x0 + η_t y + κ√η_t ε is linear-Gaussian in x0, so
    E[x0 | x_t, y] = m + s² a / (a² s² + κ² η_t) · (x_t − a m − η_t y),   a = 1 − η_t.
    It undoes the input scaling x_t/√(κ²η_t+1) with the ``t`` it is given, so any train/sample
    disagreement about ``t``, η_t or the scaling changes its answer.
    """

    image_size = lq_size = 1

    def __init__(self, schedule: ResShiftSchedule) -> None:
        super().__init__()
        self.sch = schedule

    def forward(self, x, t, lq=None, mask=None):
        eta = self.sch.etas[t].view(-1, 1, 1, 1)
        k2 = self.sch.kappa**2
        x_t = x.double() * torch.sqrt(k2 * eta + 1)
        m = torch.tensor(_M, dtype=torch.float64).view(1, 3, 1, 1)
        s2 = torch.tensor(_S, dtype=torch.float64).view(1, 3, 1, 1) ** 2
        a = 1 - eta
        gain = s2 * a / (a * a * s2 + k2 * eta)
        return (m + gain * (x_t - a * m - eta * lq.double())).float()


def _chain_moments_exact(sch: ResShiftSchedule) -> tuple[Tensor, Tensor]:
    """Mean/var of the chain output under GaussianBayesX0, propagated in closed form from the
    prior N(y, κ²η_T) (per channel; paper eq. 5-6 written out independently of the sampler)."""
    k2 = sch.kappa**2
    etas = sch.etas.tolist()
    out_m, out_v = [], []
    for m, s, y in zip(_M, _S, _Y, strict=True):
        mu, var = y, k2 * etas[-1]
        for i in reversed(range(sch.steps)):
            e, ep = etas[i], (etas[i - 1] if i else 0.0)
            a = 1 - e
            g = s * s * a / (a * a * s * s + k2 * e)
            # x0_hat = m + g (x - a m - e y);  x' = (ep/e) x + ((e-ep)/e) x0_hat + noise
            c1, c0 = ep / e, (e - ep) / e
            lin = c1 + c0 * g
            const = c0 * (m - g * (a * m + e * y))
            noise_var = k2 * ep / e * (e - ep) if i else 0.0
            mu, var = lin * mu + const, lin * lin * var + noise_var
        out_m.append(mu)
        out_v.append(var)
    return torch.tensor(out_m), torch.tensor(out_v)


def test_closed_form_chain_law_becomes_the_posterior_for_many_small_steps():
    """Check of the closed form itself: with many steps and a tiny final noise the plug-in chain
    is an exact sampler (output law -> N(m, s²)); with T=4 it is not, because the last step
    returns E[x0 | x_1] (noise κ√η_1 left in x_1), which shrinks the variance. That shrinkage is
    why the chain's PSNR sits between the posterior mean's and a true posterior sample's."""
    m, s2 = torch.tensor(_M), torch.tensor(_S) ** 2
    mean, var = _chain_moments_exact(ResShiftSchedule(steps=1000, kappa=1.0, min_noise_level=1e-3))
    assert torch.allclose(mean, m, atol=2e-3) and torch.allclose(var, s2, rtol=0.015)
    mean, var = _chain_moments_exact(ResShiftSchedule(steps=4, kappa=2.0, min_noise_level=0.2))
    assert torch.allclose(mean, m, atol=1e-3)  # the prior N(y, κ²η_T) costs < 1e-3 in the mean
    assert torch.all(var < 0.5 * s2)


@pytest.mark.parametrize("kappa", [2.0, 0.5])
def test_gaussian_bayes_predictor_chain_matches_closed_form(kappa):
    """Monte Carlo of the real sampler with the exact E[x0|x_t] against the closed-form law of
    the chain (paper eq. 5-6 propagated per channel): mean and variance within 5 standard errors.
    Catches any error in the prior, the η index of the posterior coefficients or variance, the
    noise slices, the t given to the network or the input scaling."""
    sch = ResShiftSchedule(steps=4, kappa=kappa, min_noise_level=0.2 if kappa > 1 else 0.05)
    exact_m, exact_v = _chain_moments_exact(sch)
    n_img, hw = 8, 48
    lq = torch.tensor(_Y).view(1, 3, 1, 1).expand(n_img, 3, hw, hw).contiguous()
    out = ResShiftChain(sch, sf=1).sample(
        GaussianBayesX0(sch), PixelSpace(), lq, generators_for(0, range(n_img))
    )
    n = n_img * hw * hw
    flat = out.transpose(0, 1).reshape(3, -1).double()
    mc_m, mc_v = flat.mean(1).float(), flat.var(1).float()
    assert torch.all((mc_m - exact_m).abs() < 5 * (exact_v / n) ** 0.5), (mc_m, exact_m)
    assert torch.all((mc_v / exact_v - 1).abs() < 5 * (2 / n) ** 0.5), (mc_v, exact_v)


# ------------------------------------------------------------------ chop_size="auto"
def test_auto_chop_minimises_the_cost_model_and_keeps_it_flat():
    """The chosen tile is the cheapest of all admissible candidates (and of not tiling) under
    the model, and the modelled cost per pixel stays bounded where untiled grows with N: for the
    released ×4 model (tiles in multiples of 64 LQ px, overlap 16, latent = LQ grid) it is
    ≤ 2.2× the attention-free cost up to 2048 px, against 1 + N/215² untiled (91× at 2048)."""
    from lit_restore.resshift.chain import ATTENTION_EQUAL_SIDE, auto_chop_size, tiled_cost

    for h, w in [(64, 64), (192, 192), (256, 256), (200, 520), (512, 512), (2048, 2048)]:
        tile = auto_chop_size(h, w, 64, 16, 1.0)
        cands = [None, *range(64, max(h, w), 64)]
        costs = {c: tiled_cost(h, w, c, 16, 1.0, ATTENTION_EQUAL_SIDE) for c in cands}
        assert costs[tile] == min(costs.values()), (h, w, tile)
        assert costs[tile] <= 2.2, (h, w, costs[tile])
    assert auto_chop_size(128, 128, 64, 16, 1.0) is None  # small images: never worth tiling
    assert tiled_cost(2048, 2048, None, 16, 1.0, ATTENTION_EQUAL_SIDE) > 90


def test_auto_chop_tiles_only_first_stages_with_global_attention(monkeypatch):
    """PixelSpace (no global attention) never tiles under ``auto``; a VQ first stage tiles with
    the side :func:`auto_chop_size` chose (the break-even side lowered so a test-sized image
    crosses it)."""
    from lit_restore.nn import VQModel
    from lit_restore.resshift import chain as rs

    class Counting(nn.Module):
        image_size = lq_size = 1
        size_multiple = 4

        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x, t, lq=None, mask=None):
            self.calls += 1
            return x * 0.5

    sch = ResShiftSchedule(steps=2)
    lq = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    net = Counting()
    ResShiftChain(sch, sf=1, chop_size="auto", chop_overlap=4).sample(net, PixelSpace(), lq)
    assert net.calls == 2
    monkeypatch.setattr(rs, "ATTENTION_EQUAL_SIDE", 4)
    vq = VQModel(ch=32, ch_mult=(1, 2), num_res_blocks=1, n_embed=16).eval()
    assert rs.has_global_attention(vq) and not rs.has_global_attention(PixelSpace())
    tile = rs.auto_chop_size(32, 32, 4, 4, 0.5, 2)
    assert tile is not None and tile < 32
    tiles = len(rs.tile_starts(32, tile, tile - 4)) ** 2
    net = Counting()
    out = ResShiftChain(sch, sf=1, chop_size="auto", chop_overlap=4).sample(net, vq, lq)
    assert out.shape == lq.shape and net.calls == 2 * tiles


def test_bad_chop_size():
    with pytest.raises(ValueError, match="chop_size='big'"):
        ResShiftChain(ResShiftSchedule(steps=2), chop_size="big")
