"""ResShift parity with the official code (zsyOAOA/ResShift, branch ``journal`` at 3ce1d81e):
the Real-ESRGAN training degradation and the official tiled inference, against the fixtures of
``tests/data/parity`` (``realesrgan``, ``resshift_tiled``, ``net_swin``).

Regenerate those fixtures with the official checkout (see that script's docstring):
``python scripts/make_parity_fixtures.py --resshift /path/to/ResShift --only resshift realesrgan
networks``.

``resshift_vq_face`` (the face model's VQ-f8) comes from an addition to that script, which
says what it holds: ``PYTHONPATH=<site dir> python scripts/make_parity_fixture_resshift_vq.py
--resshift /path/to/ResShift``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from parity_data import load, max_abs, official_noise, state_dict, tensor
from scipy.stats import chi2

from lit_restore.degradations import RealESRGANConfig, RealESRGANDegradation
from lit_restore.degradations.realesrgan import odd_sizes, poisson_noise
from lit_restore.nn import SwinUNet
from lit_restore.resshift.chain import ResShiftChain, _starts
from lit_restore.resshift.schedule import ResShiftSchedule
from lit_restore.utils.seeding import image_generator

TOL = 1e-5  # float32 acceptance bound of the parity issue (max abs)


# ============================================================================ Real-ESRGAN
def test_realesrgan_kernel_sizes_are_the_official_ranges():
    """The kernel sizes ``realesrgan_dataset.py`` L92-93 hard-codes (``range(3, 21, 2)`` and
    ``range(3, 15, 2)``, recorded in the fixture), the final sinc sizes drawn from the second
    range, and the paddings the official kernels come out with (21, 15, 15)."""
    meta, arrays = load("realesrgan")
    cfg = RealESRGANConfig()
    assert odd_sizes(cfg.first.blur.kernel_range) == arrays["kernel_range1"].tolist()
    assert odd_sizes(cfg.second.blur.kernel_range) == arrays["kernel_range2"].tolist()
    assert odd_sizes(cfg.final_sinc_range) == arrays["kernel_range2"].tolist()
    shapes = {key: tuple(shape) for key, shape in meta["kernel_shapes"]}
    deg = RealESRGANDegradation(4)
    g = image_generator(0, 0)
    d = deg.draw_image(g, deg.draw_shared(g))
    assert tuple(d.kernel1.shape) == shapes["kernel1"] == (21, 21)
    assert tuple(d.kernel2.shape) == shapes["kernel2"] == (15, 15)
    assert tuple(d.sinc.shape) == shapes["sinc_kernel"] == (15, 15)


def _support(k: torch.Tensor) -> int:
    """Rows spanned by non-zero entries (the fixture's measure; a pulse counts 1)."""
    rows = np.flatnonzero(np.abs(k.numpy()).sum(1) > 0)
    return int(rows[-1] - rows[0] + 1)


@pytest.mark.parametrize("j,key", [(0, "kernel1"), (1, "kernel2"), (2, "sinc")])
def test_realesrgan_kernel_support_distribution_equals_official(j, key):
    """The support of the kernels our draws build has the distribution of the official draws'
    (400 draws of ``RealESRGANDataset.__getitem__`` in the fixture) — it sees the size (uniform
    on the odd sizes), the sinc/pulse choice and the tails that underflow to 0.

    A χ² test of homogeneity on the 2 × k table (fixture counts vs 1200 of ours), bins with
    support ≤ 3 merged so that every expected count is ≥ 5; under equal distributions the
    statistic is χ²(k−1), and we fail above its 1 − 10⁻⁴ quantile. The sizes of the previous
    implementation (7…21, 7…15, sinc 7…21) put no mass on supports 3 and 5, which the official
    draws hit ~22 % of the time: a statistic in the hundreds.
    """
    _, arrays = load("realesrgan")
    theirs = np.maximum(arrays["support_sizes"][:, j].astype(int), 3)
    deg = RealESRGANDegradation(4)
    ours = []
    for i in range(1200):
        g = image_generator(7, i)
        ours.append(max(_support(getattr(deg.draw_image(g, deg.draw_shared(g)), key)), 3))
    ours = np.array(ours)
    bins = np.union1d(theirs, ours)
    table = np.stack([[(theirs == v).sum() for v in bins], [(ours == v).sum() for v in bins]])
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    assert expected.min() >= 5
    stat = float(((table - expected) ** 2 / expected).sum())
    assert stat < chi2.ppf(1 - 1e-4, len(bins) - 1), (bins, table, stat)


@pytest.mark.parametrize("gray", [False, True])
def test_poisson_noise_equals_basicsr(gray):
    """``generate_poisson_noise_pt`` per image: the Poisson rates (8-bit rounding, luma for gray,
    ``2^⌈log₂ #levels⌉`` — 256 for the random image, 8 for the 5-level one) equal the official
    ones, and with the official draws replayed the noise is bit-equal (the same float32
    operations in the same order; the level count is a power of two, exact)."""
    _, arrays = load("realesrgan")
    img = tensor(arrays["img"])
    # official call order: colour call → rate 0; gray call → gray rate 1, then colour rate 2
    rate_key, draw_key = ("poisson_rate_1", "poisson_draw_1") if gray else ("poisson_rate_0",
                                                                           "poisson_draw_0")  # fmt: skip
    expected = tensor(arrays["noise_gray" if gray else "noise_color"])
    for b in range(img.shape[0]):
        seen = []

        def draw(rate, b=b, seen=seen):
            seen.append(rate)
            return tensor(arrays[draw_key][b])

        noise = poisson_noise(img[b], gray, draw=draw)
        assert torch.equal(seen[0], tensor(arrays[rate_key][b]))
        assert torch.equal(noise, expected[b])


# ============================================================================ tiled inference
def _fixture_net() -> SwinUNet:
    meta, arrays = load("net_swin")
    keep = ("image_size", "in_channels", "model_channels", "out_channels", "channel_mult",
            "num_res_blocks", "attention_resolutions", "dropout", "num_head_channels",
            "use_scale_shift_norm", "swin_depth", "swin_embed_dim", "window_size", "mlp_ratio",
            "cond_lq", "lq_size")  # fmt: skip
    net = SwinUNet(**{k: meta["flags"][k] for k in keep}).eval()
    net.load_state_dict(state_dict(arrays), strict=True)
    return net


class StandInFirstStage(torch.nn.Module):
    """The fixture's first stage: encode = 4×4 average pooling, decode = nearest ×4."""

    downscale, latent_channels = 4, 3

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x, 4)

    def decode(self, z: torch.Tensor, quantize: bool = True) -> torch.Tensor:
        return torch.nn.functional.interpolate(z, scale_factor=4, mode="nearest")


def test_official_tiling_equals_resshift_inference():
    """``ResShiftSampler.inference`` on a 40×40 8-bit LQ, chop 16 / stride 8, offset 16, 4 steps
    (the fixture script's ``RESSHIFT_DIFFUSION``: κ 2, level 0.2, √η_T 0.99, p 0.3): tiles at
    {0, 8, 16, 24}² of the unpadded LQ, each with its own noise (prior, then t = 3…0 — our
    per-tile ``[(T+1)·C]`` field is their concatenation), averaged uniformly. Observed 3.4e-6
    (one sampler run's float32 round-off, ~4e-6 in the fixture's ``resshift_sample``)."""
    meta, arrays = load("resshift_tiled")
    assert meta["sf"] == 4 and meta["chop_bs"] == 1 and meta["padding_offset"] == 16
    chop, stride = meta["chop_size"], meta["chop_stride"]
    starts = _starts(40, chop, stride)
    assert [[y, x] for y in starts for x in starts] == meta["tile_starts"]
    draws = official_noise(meta, arrays["noise_shapes"])
    fields = [torch.cat(draws[i : i + 5], 1) for i in range(0, len(draws), 5)]

    def noise(shape):
        z = fields.pop(0)
        assert tuple(z.shape) == tuple(shape)
        return z

    # inference() reads the PNG as float32 / 255 and maps it with (x − 0.5) / 0.5
    lq = (arrays["lq_u8"].astype(np.float32) / 255.0 - 0.5) / 0.5
    lq = torch.from_numpy(lq).permute(2, 0, 1)[None]
    chain = ResShiftChain(ResShiftSchedule(4, 2.0, 0.2, 0.99, 0.3), sf=4, padding_offset=16,
                          chop_size=chop, chop_overlap=chop - stride, tiling="official")  # fmt: skip
    out = chain.sample(_fixture_net(), StandInFirstStage(), lq, noise=noise)
    assert not fields  # every tile's noise consumed
    err = max_abs(out * 0.5 + 0.5, arrays["out01"])
    assert err <= TOL, err


def test_official_tiling_decides_on_the_unpadded_size():
    """Chop 14, offset 8: a 12×12 LQ (padded to 16) is one tile officially (12 ≤ 14) but 2×2
    tiles of the padded LQ in our default mode (16 > 14); a 16×16 LQ is 2×2 official tiles of
    14×14, each padded to 16 for the network."""
    sch = ResShiftSchedule(2, 2.0, 0.2, 0.99, 0.3)
    calls = []

    class Net(torch.nn.Module):
        def forward(self, x, t, lq=None, mask=None):
            calls.append(tuple(x.shape[-2:]))
            return torch.zeros_like(x)

    from lit_restore.nn import PixelSpace

    cases = [("official", 12, 1, (16, 16)), ("cosine", 12, 4, (14, 14)),
             ("official", 16, 4, (16, 16))]  # fmt: skip
    for tiling, size, tiles, seen in cases:
        calls.clear()
        chain = ResShiftChain(sch, sf=1, padding_offset=8, chop_size=14, chop_overlap=2,
                              tiling=tiling)  # fmt: skip
        out = chain.sample(Net(), PixelSpace(), torch.zeros(1, 3, size, size))
        assert out.shape[-2:] == (size, size)
        assert calls == [seen] * (tiles * sch.steps), (tiling, size, calls)


# ============================================================================ face VQ-f8
def test_face_vq_f8_builds_loads_strictly_and_equals_resshift():
    """ResShift's face autoencoder gives ``num_res_blocks`` per level ([1, 2, 3, 4]): the
    full-size :data:`VQ_F8_FACE` has the official layout (every name and shape of
    ``VQModelTorch`` built from ``faceir_gfpgan512_lpips.yaml``), and a tiny model in that layout
    (levels of 1 and 3 blocks) loads the official state dict strictly and encodes/decodes as
    the official one: one float32 evaluation, observed 1.1e-6 (encode) and 4.3e-6 (decode, all
    16 codes in use) on outputs up to 2.1."""
    from lit_restore.checkpoints import load_state_dict_strict
    from lit_restore.nn import VQModel
    from lit_restore.nn.vq_autoencoder import VQ_F8_FACE

    meta, arrays = load("resshift_vq_face")
    with torch.device("meta"):
        face = VQModel(**VQ_F8_FACE)
    assert {k: list(v.shape) for k, v in face.state_dict().items()} == meta["face_layout"]
    assert face.downscale == 8 and face.latent_channels == 8
    cfg = meta["tiny_config"]
    dd = cfg["ddconfig"]
    tiny = VQModel(embed_dim=cfg["embed_dim"], n_embed=cfg["n_embed"], ch=dd["ch"],
                   ch_mult=dd["ch_mult"], num_res_blocks=dd["num_res_blocks"],
                   z_channels=dd["z_channels"]).eval()  # fmt: skip
    load_state_dict_strict(tiny, state_dict(arrays), "resshift_vq_face")
    with torch.no_grad():
        z = tiny.encode(tensor(arrays["x"]))
        assert max_abs(z, arrays["z"]) <= TOL
        official_z = tensor(arrays["z"])
        assert max_abs(tiny.decode(official_z), arrays["dec"]) <= TOL
        assert max_abs(tiny.decode(official_z, quantize=False), arrays["dec_raw"]) <= TOL
    with pytest.raises(ValueError, match="one count per level"):
        VQModel(ch_mult=(1, 2, 4), num_res_blocks=(1, 2))
