"""ResShiftModule: pixel-space training with lightning.Trainer, loss decrease, exact resume,
and the datamodule's degradation as its only source of LQ images."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from lit_restore.degradations import BicubicDegradation, LinearDegradation
from lit_restore.modules.resshift import ResShiftModule
from lit_restore.nn import SwinUNet
from lit_restore.operators import Inpainting
from lit_restore.utils.seeding import generators_for


class FixedBatch(Dataset):
    """Four smooth 16×16 images (repeated), as protocol batches with a bicubic ×4 LQ."""

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
        lq = BicubicDegradation(4)(self.imgs[j], None).lq
        return {"hq": self.imgs[j], "lq": lq, "index": j, "name": f"img{j}"}


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
    with pytest.raises(ValueError, match="color_fix"):
        tiny_module(color_fix="sepia")
    batch["lq"] = batch["hq"]  # an LQ the size of the reference: the data does not shrink by sf
    with pytest.raises(ValueError, match=r"sf=4.*data degradation"):
        m.training_step(batch, 0)
    with pytest.raises(KeyError, match="lq"):
        m.restore({"hq": batch["hq"], "index": batch["index"]})


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
    m = ResShiftModule(network=net, sf=1, inpainting=True, lpips_weight=0.0)
    batch = next(iter(DataLoader(FixedBatch(), batch_size=2)))
    with pytest.raises(KeyError, match="mask"):  # masks come from the data's operator
        m.training_step({**batch, "lq": batch["hq"]}, 0)
    # what the datamodule's Inpainting(mask_type="mixed") degradation gives: y = lq = m ⊙ x
    degradation = LinearDegradation(Inpainting("mixed"))
    degraded = degradation.degrade_batch(batch["hq"], generators_for(0, [0, 1]))
    batch.update(lq=degraded.lq, mask=degraded.mask)
    assert torch.isfinite(m.training_step(batch, 0))
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    batch.update(lq=batch["hq"] * mask, mask=mask)
    out = m.restore(batch)
    assert torch.equal(out * mask, batch["hq"] * mask)


def test_training_step_feeds_the_network_what_the_sampler_does():
    """Train/sample contract: the sampler test's Bayes-optimal predictor (it undoes the input
    scaling with the ``t`` it is given and conditions on the LQ the sampler passes) must reach
    the analytic Bayes risk Var[x0 | x_t] = s²κ²η_t / ((1-η_t)² s² + κ²η_t) on every training
    sample. Any disagreement between training and sampling about t, η_t, the scaling, or what
    the network sees as LQ makes the per-sample MSE exceed that risk."""
    import warnings

    from test_resshift_chain import _M, _S, _Y, GaussianBayesX0

    class Recorder(GaussianBayesX0):
        def forward(self, x, t, lq=None, mask=None):
            self.t, self.out = t.clone(), super().forward(x, t, lq, mask)
            return self.out

    torch.manual_seed(0)
    for kappa, level in ((2.0, 0.2), (0.5, 0.05)):
        module = ResShiftModule(network=None, sf=1, lpips_weight=0.0,
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


@pytest.mark.parametrize(
    "recipe,key,class_path",
    [
        ("resshift_realsr_x4", "degradation", "lit_restore.degradations.RealESRGANDegradation"),
        ("resshift_bicubic_x4", "degradation", "lit_restore.degradations.BicubicDegradation"),
        ("resshift_inpainting", "operator", "lit_restore.operators.Inpainting"),
    ],
)
def test_recipes_configure_their_degradation_under_data(
    recipe, key, class_path, capsys, monkeypatch
):
    """A model recipe puts its published degradation in the data config, in either order of
    --config files (the data config's datasets and the recipe's degradation both survive)."""
    import yaml

    from lit_restore.cli import TrainCLI

    monkeypatch.setattr("sys.argv", ["train.py"])  # the arguments come from args= alone
    model, data = f"configs/model/{recipe}.yaml", "configs/data/div2k_train.yaml"
    for first, second in ((model, data), (data, model)):
        with pytest.raises(SystemExit) as info:
            TrainCLI(args=["fit", "--config", first, "--config", second, "--print_config"])
        assert info.value.code in (0, None)
        cfg = yaml.safe_load(capsys.readouterr().out)
        init = cfg["data"]["init_args"]
        assert init[key]["class_path"] == class_path
        assert init["train_set"]["init_args"]["root"] == "data/DIV2K/DIV2K_train_HR"
        assert "degradation" not in cfg["model"]["init_args"]
