"""ResShiftModule: pixel-space training with lightning.Trainer, loss decrease, exact resume."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from lit_restore.modules.resshift import ResShiftModule
from lit_restore.nn import SwinUNet


class FixedBatch(Dataset):
    """Four smooth 16×16 images (repeated), as protocol batches."""

    def __init__(self, n=4, repeat=1):
        g = torch.Generator().manual_seed(0)
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
        imgs = []
        for _ in range(n):
            a, b, c = (torch.rand(3, generator=g) * 2 - 1).tolist()
            imgs.append(torch.stack([a * xx, b * yy, c * xx * yy]).clamp(-1, 1))
        self.imgs, self.repeat = imgs, repeat

    def __len__(self):
        return len(self.imgs) * self.repeat

    def __getitem__(self, i):
        j = i % len(self.imgs)
        return {"hq": self.imgs[j], "index": j, "name": f"img{j}"}


def tiny_module(**kw):
    net = SwinUNet(image_size=16, model_channels=32, channel_mult=(1,), num_res_blocks=1,
                   attention_resolutions=(16,), swin_embed_dim=32, num_head_channels=16,
                   window_size=4, mlp_ratio=2.0, lq_size=16)  # fmt: skip
    cfg = dict(network=net, sf=4, lpips_weight=0.0, lr=2e-3, lr_min=1e-3, warmup_steps=2)
    cfg.update(kw)
    return ResShiftModule(**cfg)


def _trainer(tmp_path, steps, **kw):
    return L.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(tmp_path), limit_val_batches=0, **kw,
    )  # fmt: skip


def test_training_loss_decreases(tmp_path):
    torch.manual_seed(0)
    losses = []

    class Rec(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    m = tiny_module()
    dl = DataLoader(FixedBatch(repeat=40), batch_size=4)
    _trainer(tmp_path, 40, callbacks=[Rec()], enable_checkpointing=False).fit(m, dl)
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    print(f"loss first8={first:.4f} last8={last:.4f}")
    assert len(losses) == 40 and last < 0.6 * first
    # restore(): 4 network calls per image, shape of hq, in range, deterministic per index
    batch = next(iter(DataLoader(FixedBatch(), batch_size=2)))
    batch["lq"] = torch.nn.functional.avg_pool2d(batch["hq"], 4)
    m.eval()
    out = m._evaluate(batch)
    assert out["restored"].shape == batch["hq"].shape and out["nfe_per_image"] == 4
    assert torch.equal(m.restore(batch), m.restore(batch))


def test_resume_continues_step_and_optimizer(tmp_path):
    torch.manual_seed(0)
    dl = DataLoader(FixedBatch(repeat=10), batch_size=2)
    ck = L.pytorch.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ck"), save_last=True)
    _trainer(tmp_path, 3, callbacks=[ck]).fit(tiny_module(), dl)
    state = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 3
    opt_steps = state["optimizer_states"][0]["state"][0]["step"]

    seen = {}

    class Probe(L.Callback):
        def on_train_start(self, trainer, module):
            seen["step"] = trainer.global_step
            seen["opt"] = float(trainer.optimizers[0].state_dict()["state"][0]["step"])
            seen["lr"] = trainer.optimizers[0].param_groups[0]["lr"]

    m2 = tiny_module()
    t2 = _trainer(tmp_path, 5, callbacks=[Probe()], enable_checkpointing=False)
    t2.fit(m2, dl, ckpt_path=str(tmp_path / "ck" / "last.ckpt"))
    assert seen["step"] == 3 and float(seen["opt"]) == float(opt_steps) == 3.0
    assert seen["lr"] == pytest.approx(state["lr_schedulers"][0]["_last_lr"][0])
    assert t2.global_step == 5


def test_lpips_random_backbone_and_bad_options():
    m = tiny_module(lpips_weight=1.0, lpips_pretrained_backbone=False)  # no download
    batch = next(iter(DataLoader(FixedBatch(), batch_size=2)))
    loss = m.training_step(batch, 0)
    assert torch.isfinite(loss) and loss.requires_grad
    with pytest.raises(ValueError, match="degradation"):
        tiny_module(degradation="jpeg")


def test_from_official_strict_load_with_prefix(tmp_path):
    kw = dict(image_size=16, model_channels=32, channel_mult=(1,), num_res_blocks=1,
              attention_resolutions=(16,), swin_embed_dim=32, num_head_channels=16,
              window_size=4, lq_size=16)  # fmt: skip
    src = SwinUNet(**kw)
    for p in src.parameters():
        p.data.normal_()
    path = tmp_path / "resshift_like.pth"
    torch.save({"module." + k: v for k, v in src.state_dict().items()}, path)
    m = ResShiftModule.from_official(str(path), network_kwargs=kw, lpips_weight=0.0)
    for k, v in src.state_dict().items():
        assert torch.equal(m.network.state_dict()[k], v)
    bad = tmp_path / "bad.pth"
    torch.save({k: v for k, v in list(src.state_dict().items())[1:]}, bad)
    with pytest.raises(RuntimeError, match="Missing key"):
        ResShiftModule.from_official(str(bad), network_kwargs=kw)
    with pytest.raises(FileNotFoundError, match="not found"):
        ResShiftModule.from_official(str(tmp_path / "nope.pth"), network_kwargs=kw)


def test_inpainting_variant_trains_and_keeps_known_pixels():
    net = SwinUNet(image_size=16, model_channels=32, channel_mult=(1,), num_res_blocks=1,
                   attention_resolutions=(), swin_embed_dim=32, num_head_channels=32,
                   window_size=4, lq_size=16, cond_mask=True)  # fmt: skip
    m = ResShiftModule(network=net, sf=1, degradation="none", inpainting=True, lpips_weight=0.0)
    batch = next(iter(DataLoader(FixedBatch(), batch_size=2)))
    batch["lq"] = batch["hq"].clone()
    loss = m.training_step(batch, 0)  # masks drawn per (seed, epoch, index)
    assert torch.isfinite(loss)
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    batch["mask"] = mask
    out = m.restore(batch)
    assert torch.allclose(out * mask, batch["hq"] * mask)


def test_training_step_feeds_the_network_what_the_sampler_does():
    """Train/sample contract: the sampler test's Bayes-optimal predictor (it undoes the input
    scaling with the ``t`` it is given and conditions on the LQ the sampler passes) must reach
    the analytic Bayes risk Var[x0 | x_t] = s²κ²η_t / ((1-η_t)² s² + κ²η_t) on every training
    sample. Any disagreement between training and sampling about t, η_t, the scaling, or what
    the network sees as LQ makes the per-sample MSE exceed that risk."""
    import warnings

    from test_resshift_sampler import _M, _S, _Y, GaussianBayesX0

    class Recorder(GaussianBayesX0):
        def forward(self, x, t, lq=None, mask=None):
            self.t, self.out = t.clone(), super().forward(x, t, lq, mask)
            return self.out

    torch.manual_seed(0)
    for kappa, level in ((2.0, 0.2), (0.5, 0.05)):
        module = ResShiftModule(network=None, sf=1, degradation="none", lpips_weight=0.0,
                                kappa=kappa, min_noise_level=level)  # fmt: skip
        net = Recorder(module.schedule)
        module.network = net
        b, hw = 16, 32
        m, s = torch.tensor(_M).view(1, 3, 1, 1), torch.tensor(_S).view(1, 3, 1, 1)
        hq = m + s * torch.randn(b, 3, hw, hw)
        lq = torch.tensor(_Y).view(1, 3, 1, 1).expand(b, 3, hw, hw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # self.log without a Trainer
            module.training_step({"hq": hq, "lq": lq, "index": torch.arange(b)}, 0)
        eta = module.schedule.etas[net.t].float().view(-1, 1, 1, 1)
        k2 = kappa**2
        risk = (s**2 * k2 * eta / ((1 - eta) ** 2 * s**2 + k2 * eta)).mean((1, 2, 3))
        mse = (net.out - hq).pow(2).mean((1, 2, 3))
        n = 3 * hw * hw
        assert len(set(net.t.tolist())) > 1
        assert torch.all((mse / risk - 1).abs() < 6 * (2 / n) ** 0.5), (net.t, mse, risk)
