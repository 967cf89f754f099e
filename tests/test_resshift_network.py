"""ResShift Swin UNet and VQ-f4: exact published layouts, strict save/reload, quantiser."""

import json
from pathlib import Path

import pytest
import torch

from lit_restore.checkpoints import CheckpointError, read_state_dict
from lit_restore.nn import PixelSpace, SwinUNet, VQModel
from lit_restore.nn.swin_unet import shifted_window_mask

# Names and shapes of the public checkpoints' state dicts, shipped with the tests.
REF = Path(__file__).resolve().parent / "data" / "reference"


def _manifest(name):
    return json.loads((REF / name).read_text())


def _shapes(module):
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def test_official_unet_layout_equals_manifest():
    with torch.device("meta"):
        net = SwinUNet()  # defaults = realsr x4 v3 config
    assert _shapes(net) == _manifest("resshift_unet_realsr_x4.keys.json")
    n = sum(p.numel() for p in net.parameters())
    assert abs(n / 1e6 - 118.59) < 0.01  # InvSR/ProSR report 118.59M


def test_official_vq_f4_layout_equals_manifest():
    with torch.device("meta"):
        vq = VQModel()
    assert _shapes(vq) == _manifest("resshift_vq_f4.keys.json")


def _tiny_unet(**kw):
    cfg = dict(
        image_size=16, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
        attention_resolutions=(16, 8), swin_embed_dim=32, num_head_channels=16, window_size=4,
        mlp_ratio=2.0, lq_size=16,
    )  # fmt: skip
    cfg.update(kw)
    return SwinUNet(**cfg)


def test_downscaled_unet_save_strict_reload_identical(tmp_path):
    torch.manual_seed(0)
    net = _tiny_unet()
    for p in net.parameters():  # zero-init out convs would hide mismatches
        p.data.normal_(0, 0.05)
    x, lq = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    t = torch.tensor([0, 3])
    ref = net(x, t, lq)
    for prefix in ["", "module.", "_orig_mod."]:
        path = tmp_path / f"net{prefix}pth"
        torch.save({"state_dict": {prefix + k: v for k, v in net.state_dict().items()}}, path)
        net2 = _tiny_unet()
        net2.load_state_dict(read_state_dict(path), strict=True)
    assert torch.equal(net2(x, t, lq), ref)
    # a different size than the build resolution recomputes the shifted mask and still runs
    assert net2(torch.randn(1, 3, 24, 24), t[:1], torch.randn(1, 3, 24, 24)).shape == (1, 3, 24, 24)


def test_feature_extractor_and_mask_channel_widths():
    net = _tiny_unet(lq_size=64, cond_mask=True)  # 2 stride-2 stages: 4 → 16 → 32 → 64 channels
    assert net.input_blocks[0][0].weight.shape[1] == 3 + 64
    out = net(torch.randn(1, 3, 16, 16), torch.tensor([1]), torch.randn(1, 3, 64, 64),
              torch.ones(1, 1, 64, 64))  # fmt: skip
    assert out.shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="mask"):
        net(torch.randn(1, 3, 16, 16), torch.tensor([1]), torch.randn(1, 3, 64, 64))


def test_shift_masks():
    # textbook Swin: at 8x8, window 4, shift 2 → windows 0 unmasked, 3 has 4 regions
    m = shifted_window_mask(8, 8, 4, 2, mode="swin")
    assert m.shape == (4, 16, 16) and (m[0] == 0).all()
    assert len({tuple(r.tolist()) for r in (m[3] == 0)}) == 4
    # ResShift-compatible mask: row labels only, read transposed → bottom windows split in 2
    r = shifted_window_mask(8, 8, 4, 2, mode="resshift")
    assert (r[0] == 0).all() and (r[1] == 0).all()
    assert len({tuple(x.tolist()) for x in (r[2] == 0)}) == 2
    with pytest.raises(ValueError, match="mask_mode"):
        shifted_window_mask(8, 8, 4, 2, mode="nope")


def test_vq_quantiser_nearest_code_and_straight_through():
    torch.manual_seed(0)
    vq = VQModel(embed_dim=3, n_embed=16, ch=32, ch_mult=(1, 2), num_res_blocks=1)
    z = torch.randn(2, 3, 4, 4, requires_grad=True)
    zq = vq.quantize(z)
    codes = vq.quantize.embedding.weight
    d = ((z.detach().permute(0, 2, 3, 1)[..., None, :] - codes) ** 2).sum(-1)
    assert torch.allclose(zq.permute(0, 2, 3, 1), codes[d.argmin(-1)], atol=1e-6)
    (zq * torch.arange(3.0).view(1, 3, 1, 1)).sum().backward()  # straight-through: dL/dz = dL/dzq
    assert torch.allclose(z.grad, torch.arange(3.0).view(1, 3, 1, 1).expand_as(z))
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert vq.encode(x).shape == (1, 3, 8, 8) and vq.decode(vq.encode(x)).shape == x.shape
    assert torch.equal(PixelSpace().decode(PixelSpace().encode(x)), x)


def test_vq_from_pretrained_strict(tmp_path):
    kw = dict(embed_dim=3, n_embed=16, ch=32, ch_mult=(1, 2), num_res_blocks=1)
    src = VQModel(**kw)
    path = tmp_path / "vq.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, path)
    vq = VQModel.from_pretrained(str(path), **kw)
    assert not any(p.requires_grad for p in vq.parameters()) and not vq.training
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    assert torch.equal(vq.encode(x), src.encode(x))
    with pytest.raises(CheckpointError, match=r"vq\.pth.*shape mismatch: quantize\.embedding"):
        VQModel.from_pretrained(str(path), **{**kw, "n_embed": 32})


def test_norm_groups_keeps_weights_and_lets_the_output_carry_the_mean():
    """``norm_groups``: same state-dict layout; with 32 channels GroupNorm(32) is an instance
    norm (the output block's input has zero per-channel mean), fewer groups keep that mean."""
    kw = dict(image_size=8, model_channels=32, channel_mult=(1,), num_res_blocks=1,
              attention_resolutions=(), swin_embed_dim=32, num_head_channels=32,
              window_size=4, lq_size=8)  # fmt: skip
    torch.manual_seed(0)
    ref, net = SwinUNet(**kw), SwinUNet(**kw, norm_groups=8)
    assert {k: v.shape for k, v in ref.state_dict().items()} == {
        k: v.shape for k, v in net.state_dict().items()
    }
    assert {m.num_groups for m in net.modules() if isinstance(m, torch.nn.GroupNorm)} == {8}
    net.load_state_dict(ref.state_dict(), strict=True)
    x, lq, t = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8), torch.tensor([0, 3])
    means = {}
    for name, m in (("32", ref), ("8", net)):
        h = m.out[0].register_forward_hook(lambda _m, _i, o, n=name: means.__setitem__(n, o))
        m(x, t, lq=lq)
        h.remove()
    assert means["32"].mean((2, 3)).abs().max() < 1e-5
    assert means["8"].mean((2, 3)).abs().max() > 0.1
    with pytest.raises(ValueError, match="norm_groups"):
        SwinUNet(**kw, norm_groups=5)
