"""Priors and their networks: published layouts, strict loading, the registry and
``load_prior``, the prior interface, unconditional sampling through the shared loop and
DiffusionPriorModule training (incl. 2-process DDP). Checkpoint reading and weight resolution
have their own tests (test_checkpoints.py, test_weights.py)."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lit_restore.checkpoints import (
    CheckpointError,
    extract_state_dict,
    load_weights,
    read_checkpoint,
)
from lit_restore.nn import ADMUNet, DDIMUNet
from lit_restore.nn.adm_unet import AttentionBlock
from lit_restore.priors import ADMPrior, DDIMPrior, DiffusionPrior, LDMPrior, load_prior
from lit_restore.priors import registry as reg
from lit_restore.samplers import DDIM, DDPM
from lit_restore.weights import resolve

# names and shapes of the public checkpoints' state dicts
REF = Path(__file__).resolve().parent / "data" / "reference"

TINY_ADM = dict(
    image_size=32, num_channels=32, num_res_blocks=1, channel_mult="1,2", attention_resolutions="16",
    num_heads=2, num_head_channels=-1, learn_sigma=True, use_scale_shift_norm=True, resblock_updown=True,
)  # fmt: skip
TINY_DDIM = dict(image_size=32, ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,))


def shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


# ------------------------------------------------------------------ published layouts (meta device)
@pytest.mark.parametrize(
    ("manifest", "build"),
    [
        ("adm_imagenet256_uncond", lambda: ADMUNet(**reg.ADM_IMAGENET256)),
        ("adm_ffhq256_dps", lambda: ADMUNet(**reg.ADM_FFHQ256)),
        ("ddim_celebahq256", lambda: DDIMPrior(**reg.DDIM_CELEBAHQ256, frozen=False).net),
    ],
)
def test_full_layout_matches_manifest(manifest, build):
    ref = json.loads((REF / f"{manifest}.keys.json").read_text())
    with torch.device("meta"):
        net = build()
    assert next(net.parameters()).device.type == "meta"  # nothing allocated
    got = shapes(net)
    assert set(got) == set(ref), (sorted(set(got) - set(ref))[:5], sorted(set(ref) - set(got))[:5])
    assert got == ref


def test_registry_configs_build_the_published_layouts():
    ref = json.loads((REF / "adm_imagenet256_uncond.keys.json").read_text())
    with torch.device("meta"):
        prior = ADMPrior(**reg.REGISTRY["adm-imagenet256-uncond"].config, frozen=False)
    assert shapes(prior.net) == ref
    n = sum(v.numel() for v in prior.net.state_dict().values())
    assert abs(n / 1e6 - 552.8) < 0.1  # README: 552.8 M


# ------------------------------------------------------------------ numerics of our blocks
def _legacy_attention_reference(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """guided-diffusion QKVAttentionLegacy maths written out with einsum."""
    bs, width, length = qkv.shape
    ch = width // (3 * heads)
    q, k, v = qkv.reshape(bs * heads, ch * 3, length).split(ch, dim=1)
    scale = 1 / math.sqrt(math.sqrt(ch))
    w = torch.einsum("bct,bcs->bts", q * scale, k * scale).softmax(dim=-1)
    return torch.einsum("bts,bcs->bct", w, v).reshape(bs, -1, length)


def _new_attention_reference(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    bs, width, length = qkv.shape
    ch = width // (3 * heads)
    q, k, v = (z.reshape(bs * heads, ch, length) for z in qkv.chunk(3, dim=1))
    w = torch.einsum("bct,bcs->bts", q, k).div(math.sqrt(ch)).softmax(dim=-1)
    return torch.einsum("bts,bcs->bct", w, v).reshape(bs, -1, length)


@pytest.mark.parametrize("new_order", [False, True])
def test_attention_matches_reference_order(new_order):
    torch.manual_seed(0)
    blk = AttentionBlock(64, num_heads=4, use_new_attention_order=new_order)
    torch.nn.init.normal_(blk.proj_out.weight)  # zero-initialised otherwise
    x = torch.randn(2, 64, 4, 4)
    qkv = blk.qkv(blk.norm(x.reshape(2, 64, -1)))
    ref_fn = _new_attention_reference if new_order else _legacy_attention_reference
    other_fn = _legacy_attention_reference if new_order else _new_attention_reference
    expected = x + blk.proj_out(ref_fn(qkv, 4)).reshape(2, 64, 4, 4)
    torch.testing.assert_close(blk(x), expected, atol=1e-5, rtol=1e-5)
    # the two orders really differ for the same weights
    wrong = x + blk.proj_out(other_fn(qkv, 4)).reshape(2, 64, 4, 4)
    assert (blk(x) - wrong).abs().max() > 1e-3


def test_ddim_attention_matches_bmm_reference():
    from lit_restore.nn.blocks import AttnBlock

    torch.manual_seed(0)
    blk = AttnBlock(32)
    x = torch.randn(2, 32, 4, 4)
    n = blk.norm(x)
    q, k, v = (c(n).reshape(2, 32, 16) for c in (blk.q, blk.k, blk.v))
    w = torch.bmm(q.permute(0, 2, 1), k).mul(32**-0.5).softmax(dim=2)  # [B, i, j]
    h = torch.bmm(v, w.permute(0, 2, 1)).reshape(2, 32, 4, 4)
    torch.testing.assert_close(blk(x), x + blk.proj_out(h), atol=1e-5, rtol=1e-5)


def test_adm_conv_resampling_names():
    """Without resblock_updown, guided-diffusion names the resamplers ``op`` and ``conv``."""
    net = ADMUNet(**{**TINY_ADM, "resblock_updown": False})
    keys = set(net.state_dict())
    assert "input_blocks.2.0.op.weight" in keys
    assert any(k.startswith("output_blocks.") and k.endswith(".conv.weight") for k in keys)
    out = net(torch.randn(1, 3, 32, 32), torch.tensor([3]))
    assert out.shape == (1, 6, 32, 32)


def test_timestep_embeddings_follow_each_layout():
    from lit_restore.nn.blocks import timestep_embedding
    from lit_restore.nn.ddim_unet import get_timestep_embedding

    t = torch.tensor([0, 7])
    adm, ddim = timestep_embedding(t, 8), get_timestep_embedding(t, 8)
    torch.testing.assert_close(adm[0], torch.tensor([1.0] * 4 + [0.0] * 4))  # [cos | sin]
    torch.testing.assert_close(ddim[0], torch.tensor([0.0] * 4 + [1.0] * 4))  # [sin | cos]
    torch.testing.assert_close(adm[1, 1], torch.cos(torch.tensor(7 * 10000 ** (-1 / 4))))
    torch.testing.assert_close(ddim[1, 1], torch.sin(torch.tensor(7 * 10000 ** (-1 / 3))))


# ------------------------------------------------------------------ save / strict reload
def _randomise(net: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():  # zero-initialised output convs would hide wiring errors
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)


@pytest.mark.parametrize("kind", ["adm", "ddim"])
@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_tiny_roundtrip_strict(tmp_path, kind, fmt):
    build = (lambda: ADMPrior(**TINY_ADM)) if kind == "adm" else (lambda: DDIMPrior(**TINY_DDIM))
    torch.manual_seed(0)
    a = build()
    _randomise(a.net)
    path = tmp_path / f"w.{fmt}"
    sd = a.net.state_dict()
    if fmt == "pt":
        torch.save(sd, path)
    else:
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    cfg = TINY_ADM if kind == "adm" else TINY_DDIM
    b = (ADMPrior if kind == "adm" else DDIMPrior)(**cfg, checkpoint=str(path))
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([10, 900])
    torch.testing.assert_close(a.eps(x, t), b.eps(x, t), rtol=0, atol=0)
    assert a.eps(x, t).abs().mean() > 1e-3  # non-trivial output


def test_module_prefix_stripped_and_mismatch_readable(tmp_path):
    a = ADMPrior(**TINY_ADM)
    sd = {"module." + k: v for k, v in a.net.state_dict().items()}
    torch.save({"state_dict": sd}, tmp_path / "ddp.pt")
    b = ADMPrior(**TINY_ADM, checkpoint=str(tmp_path / "ddp.pt"))
    for (k1, v1), (k2, v2) in zip(a.net.state_dict().items(), b.net.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    sd2 = {"_orig_mod." + k: v for k, v in a.net.state_dict().items()}
    assert set(extract_state_dict(sd2)) == set(a.net.state_dict())
    # another width → one readable error listing mismatched keys
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatch: .*checkpoint \(32, 3, 3, 3\) vs model \(64, 3, 3, 3\)",
    ):
        ADMPrior(**{**TINY_ADM, "num_channels": 64}, checkpoint=str(tmp_path / "ddp.pt"))
    with pytest.raises(CheckpointError, match="missing"):
        DDIMPrior(**TINY_DDIM, checkpoint=str(tmp_path / "ddp.pt"))


class _Payload:  # a pickled class: what weights_only refuses
    pass


def test_pickled_code_checkpoint_refused(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"state_dict": {}, "cfg": _Payload()}, path)
    with pytest.raises(CheckpointError, match=r"refusing to load .*bad\.pt.*convert it once"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError):
        ADMPrior(**TINY_ADM, checkpoint=str(path))
    assert issubclass(pickle.UnpicklingError, Exception)


# ------------------------------------------------------------------ registry / resolution / fetch
def test_missing_weights_offline_message(tmp_path, monkeypatch):
    monkeypatch.setenv("LIT_RESTORE_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        load_prior("adm-imagenet256-uncond")
    msg = str(err.value)
    assert "256x256_diffusion_uncond.pt" in msg
    assert (
        "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt"
        in msg
    )
    assert str(tmp_path / "priors") in msg and "python -m lit_restore.weights" in msg
    assert "\n" not in msg  # one line
    with pytest.raises(
        FileNotFoundError,
        match=r"drive\.google\.com.*ffhq_10m\.pt|ffhq_10m\.pt.*drive\.google\.com",
    ):
        load_prior("adm-ffhq256-dps")
    with pytest.raises(FileNotFoundError, match=r"celeba_hq\.ckpt"):
        resolve("ddim-celebahq256")


def test_resolution_order(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("LIT_RESTORE_HOME", str(home))
    entry = dataclasses.replace(
        reg.REGISTRY["ddim-celebahq256"], config={**TINY_DDIM, "channels": 3}
    )
    monkeypatch.setitem(reg.REGISTRY, "ddim-celebahq256", entry)
    torch.manual_seed(0)
    cached_net, explicit_net = DDIMPrior(**TINY_DDIM).net, DDIMPrior(**TINY_DDIM).net
    _randomise(explicit_net)
    (home / "priors").mkdir(parents=True)
    torch.save(cached_net.state_dict(), home / "priors" / "celeba_hq.ckpt")
    torch.save(explicit_net.state_dict(), tmp_path / "mine.ckpt")
    # registry name → cache dir
    assert resolve("ddim-celebahq256") == home / "priors" / "celeba_hq.ckpt"
    p = load_prior("ddim-celebahq256")
    assert isinstance(p, DDIMPrior) and torch.equal(p.net.conv_in.weight, cached_net.conv_in.weight)
    # explicit path wins (even with the same file name elsewhere)
    q = load_prior(tmp_path / "mine.ckpt", arch="ddim", **TINY_DDIM)
    assert torch.equal(q.net.conv_in.weight, explicit_net.conv_in.weight)
    # bare file name → cache dir
    assert resolve("celeba_hq.ckpt") == home / "priors" / "celeba_hq.ckpt"
    # a weights file with no flags: matched against the registered layouts
    r = load_prior(tmp_path / "mine.ckpt")
    assert isinstance(r, DDIMPrior) and torch.equal(
        r.net.conv_in.weight, explicit_net.conv_in.weight
    )


def test_registry_dispatches_on_kind_once(tmp_path):
    """One mapping kind → class serves the registry, layout matching and ``load_prior(arch=…)``;
    an unknown kind is an error naming the choices, never a silent default class."""
    kinds = {e.kind for e in reg.REGISTRY.values()}
    assert kinds == set(reg.PRIOR_CLASSES) == {"adm", "ddim", "ldm"}
    assert reg.prior_class("adm") is ADMPrior and reg.prior_class("ddim") is DDIMPrior
    assert reg.prior_class("ldm") is LDMPrior
    with pytest.raises(ValueError, match=r"unknown prior kind/arch 'unet3000'; choose one of adm"):
        reg.build_prior(
            dataclasses.replace(reg.REGISTRY["ddim-celebahq256"], kind="unet3000"), None
        )
    torch.save(DDIMPrior(**TINY_DDIM).net.state_dict(), tmp_path / "w.pt")
    with pytest.raises(ValueError, match=r"unknown prior kind/arch 'bogus'"):
        load_prior(tmp_path / "w.pt", arch="bogus")
    with pytest.raises(
        ValueError, match="a diffusers directory: load_prior takes no network flags"
    ):
        load_prior(tmp_path, ch=3)


# ------------------------------------------------------------------ prior interface
def test_prior_interface_eps_frozen_and_input_grads():
    p = ADMPrior(**TINY_ADM)
    _randomise(p.net)
    assert p.net.out_channels == 6
    assert not any(q.requires_grad for q in p.parameters()) and not p.training
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    e = p.eps(x, torch.tensor([5, 500]))
    assert e.shape == (2, 3, 32, 32)  # learned sigma dropped
    full = p.net(x, torch.tensor([5, 500]))
    torch.testing.assert_close(e, full[:, :3])
    e.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="crop_size 32"):
        p.eps(torch.randn(1, 3, 16, 16), torch.tensor([1]))
    d = DDIMPrior(**TINY_DDIM)
    assert d.eps(torch.randn(1, 3, 32, 32), torch.tensor([3])).shape == (1, 3, 32, 32)
    assert not any(q.requires_grad for q in d.parameters())
    torch.testing.assert_close(d.betas[[0, -1]], torch.tensor([1e-4, 0.02]))


def test_bf16_torso_close_to_fp32():
    torch.manual_seed(0)
    p = ADMPrior(**TINY_ADM)
    _randomise(p.net)
    x, t = torch.randn(1, 3, 32, 32), torch.tensor([300])
    ref = p.eps(x, t)
    p.net.set_dtype("bfloat16")
    assert p.net.input_blocks[1][0].in_layers[2].weight.dtype == torch.bfloat16
    assert p.net.time_embed[0].weight.dtype == torch.float32
    assert p.net.input_blocks[1][0].emb_layers[1].weight.dtype == torch.float32
    low = p.eps(x, t)
    assert low.dtype == torch.float32
    assert (low - ref).abs().mean() / ref.abs().mean() < 0.05
    # a model cast as a whole (e.g. Lightning "bf16-true") also runs
    p.net.to(torch.bfloat16)
    whole = p.net(x.bfloat16(), t)[:, :3].float()
    assert whole.dtype == torch.float32 and (whole - ref).abs().mean() / ref.abs().mean() < 0.05


def test_diffusers_prior(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    from lit_restore.priors import DiffusersPrior

    unet = diffusers.UNet2DModel(
        sample_size=16, in_channels=3, out_channels=3, block_out_channels=(32, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )  # fmt: skip
    unet.save_pretrained(tmp_path / "pipe" / "unet")
    diffusers.DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"
    ).save_pretrained(tmp_path / "pipe" / "scheduler")
    p = load_prior(tmp_path / "pipe")
    assert isinstance(p, DiffusersPrior) and p.image_size == 16
    expected = diffusers.DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"
    ).betas
    torch.testing.assert_close(p.betas, expected.float())
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    e = p.eps(x, torch.tensor([1, 999]))
    torch.testing.assert_close(e, unet.eval()(x, torch.tensor([1, 999])).sample)
    assert not any(q.requires_grad for q in p.parameters())


# ------------------------------------------------------------------ unconditional sampling
class _GaussianData(DiffusionPrior):
    """Data ~ N(μ, s² I): the exact ε-predictor is √(1−ᾱ)(x − √ᾱ μ)/(ᾱ s² + 1 − ᾱ)."""

    def __init__(self, mu: float, s: float) -> None:
        super().__init__(image_size=None, channels=1)
        self.mu, self.s = mu, s

    def eps(self, x_t, t):
        a = self.alpha_bar(t, x_t)
        return (1 - a).sqrt() * (x_t - a.sqrt() * self.mu) / (a * self.s**2 + 1 - a)


def _unconditional(prior, shape, steps, eta, seed):
    """Unconditional sampling = the shared loop without guidance (DDIM(η) on the leading rule)."""
    sampler = DDIM(steps=steps, eta=eta)
    return sampler.sample(
        prior, None, None, x_shape=shape, generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_unconditional_sampling_recovers_gaussian(eta):
    """With the exact ε of Gaussian data N(0.3, 0.2²), DDIM (η=0) and ancestral (η=1) sampling
    through the shared loop recover the data law as the step count grows; few steps shrink the
    variance. Bounds: 16000 scalar samples, so the standard error of the mean is
    0.2/√16000 = 1.6e-3 and of the std 0.2/√32000 = 1.1e-3; 0.005 is over 3 of them."""
    prior = _GaussianData(mu=0.3, s=0.2)
    x = _unconditional(prior, (4000, 1, 2, 2), 1000, eta, 0)
    assert abs(x.mean().item() - 0.3) < 0.005
    assert abs(x.std().item() - 0.2) < 0.005
    coarse = _unconditional(prior, (4000, 1, 2, 2), 50, eta, 0)
    assert abs(coarse.mean().item() - 0.3) < 0.005 and coarse.std() < x.std()
    # reproducible from the generator alone
    assert torch.equal(coarse, _unconditional(prior, (4000, 1, 2, 2), 50, eta, 0))


def test_unconditional_sampling_from_network_prior():
    p = DDIMPrior(**TINY_DDIM)
    x = DDPM(steps=3).sample(
        p, None, None, x_shape=(1, 3, 32, 32), generator=torch.Generator().manual_seed(0)
    )
    assert x.shape == (1, 3, 32, 32) and torch.isfinite(x).all() and x.abs().max() <= 1.0 + 1e-5


def test_load_weights_helper(tmp_path):
    a = DDIMUNet(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), resolution=32)
    save_file(a.state_dict(), str(tmp_path / "w.safetensors"))
    b = DDIMUNet(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), resolution=32)
    load_weights(b, tmp_path / "w.safetensors")
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


# ------------------------------------------------------------------ DiffusionPriorModule
TRAIN_NET = dict(
    image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2", attention_resolutions="8",
    num_heads=1, num_head_channels=-1,
)  # fmt: skip


class _RandomImages(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {"hq": torch.rand(3, 16, 16, generator=g) * 2 - 1, "index": i}


def _datamodule():
    import lightning as L

    class DM(L.LightningDataModule):
        def train_dataloader(self):
            return torch.utils.data.DataLoader(_RandomImages(), batch_size=2, shuffle=True)

        def val_dataloader(self):
            return torch.utils.data.DataLoader(_RandomImages(), batch_size=4)

    return DM()


def _trainer(tmp_path, max_steps, **kw):
    import lightning as L
    from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint

    return L.Trainer(
        max_steps=max_steps, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=1, val_check_interval=None, check_val_every_n_epoch=1,
        default_root_dir=tmp_path,
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True), EMAWeightAveraging(decay=0.5)], **kw,
    )  # fmt: skip


def test_diffusion_prior_module_train_resume_load(tmp_path):
    import lightning as L

    from lit_restore.modules.diffusion_prior import DiffusionPriorModule

    L.seed_everything(0)
    module = DiffusionPriorModule(network=TRAIN_NET, lr=1e-3, warmup_steps=2)
    trainer = _trainer(tmp_path, 3)
    trainer.fit(module, datamodule=_datamodule())
    assert trainer.global_step == 3
    last = tmp_path / "ckpt" / "last.ckpt"
    ck = torch.load(last, map_location="cpu", weights_only=True)  # loads safely
    assert ck["global_step"] == 3 and ck["hyper_parameters"]["network"]["num_channels"] == 32
    # EMA weights are the checkpoint's state_dict; live weights differ
    ema, live = ck["state_dict"], ck["current_model_state"]
    assert any(not torch.equal(ema[k], live[k]) for k in ema)

    seen = {}

    class Probe(L.Callback):
        def on_train_start(self, trainer, pl_module):
            seen["start"] = trainer.global_step

    resumed = _trainer(tmp_path, 5)
    resumed.callbacks.append(Probe())
    resumed.fit(
        DiffusionPriorModule(network=TRAIN_NET, lr=1e-3, warmup_steps=2),
        datamodule=_datamodule(),
        ckpt_path=last,
    )
    assert seen["start"] == 3 and resumed.global_step == 5

    prior = load_prior(last)
    assert isinstance(prior, ADMPrior) and prior.image_size == 16
    assert not any(p.requires_grad for p in prior.parameters()) and not prior.training
    ck = torch.load(last, map_location="cpu", weights_only=True)
    for k, v in prior.net.state_dict().items():
        assert torch.equal(v, ck["state_dict"]["net." + k])  # the EMA network
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    eps = prior.eps(x, torch.tensor([10, 500]))
    assert eps.shape == x.shape
    eps.sum().backward()
    assert x.grad.abs().sum() > 0
    assert (
        ADMPrior.from_checkpoint(last)
        .net.time_embed[0]
        .weight.equal(prior.net.time_embed[0].weight)
    )


def test_diffusion_prior_module_rejects_learn_sigma_and_wrong_size():
    from lit_restore.modules.diffusion_prior import DiffusionPriorModule

    with pytest.raises(ValueError, match="learn_sigma"):
        DiffusionPriorModule(network={**TRAIN_NET, "learn_sigma": True})
    m = DiffusionPriorModule(network=TRAIN_NET)
    with pytest.raises(ValueError, match="crop_size to 16"):
        m.training_step({"hq": torch.zeros(1, 3, 32, 32)}, 0)
    with pytest.raises(ValueError, match="bad ADM flag"):
        DiffusionPriorModule(network={**TRAIN_NET, "num_chanels": 8})


DDP_SCRIPT = """
import json, sys, time
import torch
import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
sys.path.insert(0, {tests!r})
from test_priors import TRAIN_NET, _datamodule
from lit_restore.modules.diffusion_prior import DiffusionPriorModule
from lit_restore.priors import load_prior

torch.set_num_threads(1)
L.seed_everything(0)
module = DiffusionPriorModule(network=TRAIN_NET, lr=1e-3, warmup_steps=2)
trainer = L.Trainer(max_steps=3, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                    enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1,
                    default_root_dir={root!r}, callbacks=[ModelCheckpoint(dirpath={root!r} + "/ckpt", save_last=True)])
trainer.fit(module, datamodule=_datamodule())
flat = torch.cat([p.detach().flatten() for p in module.net.parameters()])
gathered = trainer.strategy.all_gather(flat)  # [world, n]
if trainer.global_rank == 0:
    prior = load_prior({root!r} + "/ckpt/last.ckpt")
    same = torch.equal(torch.cat([p.flatten() for p in prior.net.parameters()]), flat)
    json.dump(dict(world=trainer.world_size, step=trainer.global_step,
                   ranks_equal=bool(torch.equal(gathered[0], gathered[1])), ckpt_matches=same,
                   val_loss=float(trainer.callback_metrics["val/loss"])), open({root!r} + "/result.json", "w"))
"""


def test_diffusion_prior_module_ddp_two_processes(tmp_path):
    """Lightning DDP (2 CPU processes, gloo): ranks stay in sync and the checkpoint loads as a prior.
    Run as a script in a subprocess — Lightning's ``ddp`` launcher re-executes the entry point."""
    import os
    import subprocess
    import sys
    import time

    tests_dir = str(Path(__file__).resolve().parent)
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT.format(tests=tests_dir, root=str(tmp_path)))
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(tests_dir).parent) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    env.pop("LOCAL_RANK", None)
    start = time.time()
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "result.json").read_text())
    assert res == {**res, "world": 2, "step": 3, "ranks_equal": True, "ckpt_matches": True}
    assert math.isfinite(res["val_loss"])
    print(f"DDP 2-process CPU training: {time.time() - start:.1f} s")


# ------------------------------------------------------------------ config fragments
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _prior_from_yaml(name: str, **init_overrides):
    import yaml
    from jsonargparse import ArgumentParser

    from lit_restore.presets import expand_presets

    spec = yaml.safe_load((CONFIGS / "prior" / f"{name}.yaml").read_text())["model"]["init_args"][
        "prior"
    ]
    spec = expand_presets(spec)  # registry names → the published flags
    spec["init_args"].update(init_overrides)
    parser = ArgumentParser()
    parser.add_argument("--prior", type=DiffusionPrior)
    cfg = parser.parse_object({"prior": spec})
    return parser.instantiate(cfg).prior


@pytest.mark.parametrize(
    ("name", "manifest"),
    [
        ("adm_imagenet256_uncond", "adm_imagenet256_uncond"),
        ("adm_ffhq256_dps", "adm_ffhq256_dps"),
        ("ddim_celebahq256", "ddim_celebahq256"),
    ],
)
def test_prior_config_fragments_build_published_layouts(name, manifest):
    ref = json.loads((REF / f"{manifest}.keys.json").read_text())
    with torch.device("meta"):
        prior = _prior_from_yaml(name, checkpoint=None)
    assert shapes(prior.net) == ref


def test_tiny_adm_fragment_and_experiment_config(tmp_path):
    import yaml

    from lit_restore.modules.diffusion_prior import DiffusionPriorModule

    exp = yaml.safe_load((CONFIGS / "experiment" / "prior_deadleaves_64.yaml").read_text())
    with torch.device("meta"):
        module = DiffusionPriorModule(**exp["model"]["init_args"])
    assert module.net.image_size == 64 == exp["data"]["init_args"]["crop_size"]
    callbacks = [c["class_path"] for c in exp["trainer"]["callbacks"]]
    assert "lightning.pytorch.callbacks.EMAWeightAveraging" in callbacks
    # a Lightning-style checkpoint of the module, resolved through configs/prior/tiny_adm.yaml
    small = DiffusionPriorModule(network=TRAIN_NET)
    ckpt = {
        "hyper_parameters": dict(small.hparams),
        "state_dict": small.state_dict(),
        "global_step": 0,
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    prior = _prior_from_yaml("tiny_adm", name_or_path=str(tmp_path / "last.ckpt"))
    assert isinstance(prior, ADMPrior) and prior.image_size == 16
    assert torch.equal(prior.net.out[2].weight, small.net.out[2].weight)


def _ddim_to_diffusers_key(k: str, levels: int) -> str:
    """Our (DDPM/pesser) key → diffusers UNet2DModel key (same maths, other names)."""
    import re

    k = k.replace("temb.dense.0", "time_embedding.linear_1").replace(
        "temb.dense.1", "time_embedding.linear_2"
    )
    k = k.replace("norm_out", "conv_norm_out")
    k = re.sub(r"^mid\.block_1\.", "mid_block.resnets.0.", k)
    k = re.sub(r"^mid\.block_2\.", "mid_block.resnets.1.", k)
    k = re.sub(r"^mid\.attn_1\.", "mid_block.attentions.0.", k)
    k = re.sub(r"^down\.(\d+)\.block\.", r"down_blocks.\1.resnets.", k)
    k = re.sub(r"^down\.(\d+)\.attn\.", r"down_blocks.\1.attentions.", k)
    k = re.sub(r"^down\.(\d+)\.downsample\.", r"down_blocks.\1.downsamplers.0.", k)
    m = re.match(r"^up\.(\d+)\.(block|attn|upsample)\.(.*)$", k)
    if m:
        i = levels - 1 - int(m.group(1))  # ours: up[level]; diffusers: up_blocks in decoding order
        part = {"block": "resnets.", "attn": "attentions.", "upsample": "upsamplers.0."}[m.group(2)]
        k = f"up_blocks.{i}.{part}{m.group(3)}"
    k = k.replace(".temb_proj.", ".time_emb_proj.").replace(".nin_shortcut.", ".conv_shortcut.")
    for a, b in (
        (".norm.", ".group_norm."),
        (".q.", ".to_q."),
        (".k.", ".to_k."),
        (".v.", ".to_v."),
        (".proj_out.", ".to_out.0."),
    ):
        if "attentions." in k:
            k = k.replace(a, b)
    return k


def test_ddim_unet_matches_diffusers_ddpm_unet():
    """Independent numerics check of the DDPM "simple" UNet: diffusers' UNet2DModel in the
    google/ddpm-celebahq-256 configuration (DDPM time embedding, eps 1e-6, asymmetric-pad
    downsampling) computes the same function once weights are renamed."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    ours = DDIMUNet(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), resolution=32)
    _randomise(ours)
    ref = diffusers.UNet2DModel(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6, norm_num_groups=32,
        attention_head_dim=None,
    ).eval()  # fmt: skip
    theirs = ref.state_dict()
    mapped = {}
    for k, v in ours.state_dict().items():
        nk = _ddim_to_diffusers_key(k, 2)
        assert nk in theirs, (k, nk)
        mapped[nk] = v.reshape(theirs[nk].shape)  # 1×1 conv q/k/v/proj → linear
    assert set(mapped) == set(theirs)
    ref.load_state_dict(mapped, strict=True)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([3, 700])
    with torch.no_grad():
        torch.testing.assert_close(ours(x, t.float()), ref(x, t).sample, atol=1e-4, rtol=1e-4)


def test_diffusers_missing_gives_install_hint(tmp_path, monkeypatch):
    import sys

    from lit_restore.priors import DiffusersPrior

    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers → ImportError
    with pytest.raises(ImportError, match=r"pip install 'lit_restore\[diffusers\]'"):
        DiffusersPrior(str(tmp_path))


def test_flags_given_as_numbers_are_accepted():
    """YAML and the CLI turn ``attention_resolutions: "16"`` / ``channel_mult: "1"`` into numbers."""
    from lit_restore.nn.adm_unet import parse_attention_resolutions, parse_channel_mult

    assert parse_attention_resolutions(16, 64) == parse_attention_resolutions("16", 64) == {4}
    assert parse_channel_mult(1, 64) == parse_channel_mult("1", 64) == (1,)
