"""SinSR: the deterministic ResShift chain, the one-step student, the distillation losses.

- the ODE step keeps the noise implied by ``(x_t, x0)``: with an oracle network (the true x0)
  the deterministic chain stays on the marginal path ``x0 + η_t e0 + κ√η_t ε`` of its own ``ε``
  and ends at x0 (float64, exact up to round-off);
- parity with the official code (``tests/data/parity/sinsr.npz``,
  ``scripts/make_parity_fixture_sinsr.py``): the deterministic chain, the one-step sampling and
  the three per-sample loss terms of ``training_losses_distill`` on identical inputs;
- the teacher is frozen and kept out of the checkpoint; the student starts as the teacher;
- a distillation fit resumed from its step-6 checkpoint repeats the uninterrupted fit bit for
  bit (as ``tests/test_training_resume.py`` for ResShift);
- released weights in the official trainer's container load strictly.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint
from test_training_resume import LossRecorder

from lit_restore.data import DeadLeaves, RestorationDataModule
from lit_restore.modules.resshift import ResShiftModule
from lit_restore.modules.sinsr import SinSRModule
from lit_restore.nn import SwinUNet
from lit_restore.operators import BicubicSR, GaussianNoise
from lit_restore.resshift import Condition, ResShiftChain, ResShiftSchedule

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "parity" / "sinsr.npz"


def _fixture_script():
    """``scripts/make_parity_fixture_sinsr.py`` (its ``ToyNet`` is the fixture's network)."""
    path = ROOT / "scripts" / "make_parity_fixture_sinsr.py"
    spec = importlib.util.spec_from_file_location("make_parity_fixture_sinsr", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_fixture() -> tuple[dict, dict[str, torch.Tensor]]:
    with np.load(FIXTURE, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays.pop("meta")))
    return meta, {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}


# ------------------------------------------------------------------ the ODE identity
class Oracle(torch.nn.Module):
    """Returns the true x0 whatever its input (records the timesteps it is called at)."""

    def __init__(self, x0: torch.Tensor) -> None:
        super().__init__()
        self.x0, self.calls = x0, []

    def forward(self, x, t, lq=None, mask=None):
        self.calls.append(int(t[0]))
        return self.x0


def test_ode_chain_follows_the_marginal_path_of_its_own_noise() -> None:
    """From the marginal x_T = x0 + η_T e0 + κ√η_T ε (e0 = y − x0), with x̂0 = x0 every ODE step
    must land on x0 + η_{t-1} e0 + κ√η_{t-1} ε (the same ε: the step keeps the implied noise),
    ending on x0 (η_0 = 0). The chain starts from the prior y + κ√η_T ε instead (η_T ≈ 1): its
    implied noise is another, kept all the way, and it still ends on x0. float64 throughout: the identity holds to ~1e-15 per step; 1e-12 leaves room for T = 15
    steps of O(4)-sized values. A posterior step (fresh noise) or a wrong coefficient would be off
    by O(η) ≫ 1e-12."""
    torch.manual_seed(0)
    for steps, mnl in ((4, 0.2), (15, 0.04), (4, 1.2)):
        sch = ResShiftSchedule(steps, 2.0, mnl).double()
        x0 = torch.randn(2, 3, 8, 8, dtype=torch.float64)
        y = torch.randn(2, 3, 8, 8, dtype=torch.float64)
        eps = torch.randn(2, 3, 8, 8, dtype=torch.float64)
        x = sch.q_sample(x0, y, torch.full((2,), steps - 1, dtype=torch.long), eps)
        for i in reversed(range(steps)):
            t = torch.full((2,), i, dtype=torch.long)
            assert torch.allclose(x, sch.q_sample(x0, y, t, eps), atol=1e-12, rtol=0)
            x = sch.ode_step(x, x0, y, t)
        assert torch.allclose(x, x0, atol=1e-12, rtol=0)
        # the chain's loop: T calls at T-1 … 0 and the same end point; one_step: one call at T-1
        oracle = Oracle(x0)
        cond = Condition(z_y=y, lq=y, mask=None)
        noise = torch.cat([eps, torch.zeros(2, 3 * steps, 8, 8, dtype=torch.float64)], 1)
        chain = ResShiftChain(sch, sf=1, mode="ode")
        assert torch.allclose(chain.reverse(oracle, cond, noise), x0, atol=1e-12, rtol=0)
        assert oracle.calls == list(reversed(range(steps)))
        oracle.calls.clear()
        assert chain.reverse(oracle, cond, noise, mode="one_step") is x0
        assert oracle.calls == [steps - 1]


def test_chain_modes_are_checked() -> None:
    with pytest.raises(ValueError, match="mode='ddim'"):
        ResShiftChain(ResShiftSchedule(), mode="ddim")


# ------------------------------------------------------------------ parity with wyf0912/SinSR
def _toy_modules(tmp_path: Path) -> tuple[SinSRModule, dict[str, torch.Tensor], dict]:
    """The fixture's student and teacher in a :class:`SinSRModule` (teacher from a file, as a
    user gives it), and the fixture's arrays."""
    meta, arr = _load_fixture()
    s = meta["settings"]
    toy = _fixture_script().ToyNet
    teacher_path, student_path = tmp_path / "teacher.pt", tmp_path / "student.pt"
    for who, path in (("teacher", teacher_path), ("student", student_path)):
        state = {k.split("_", 1)[1]: v for k, v in arr.items() if k.startswith(f"{who}_")}
        torch.save(state, path)
    module = SinSRModule(
        network=toy(s["steps"], 0), teacher=str(teacher_path), weights=str(student_path),
        steps=s["steps"], kappa=s["kappa"], min_noise_level=s["min_noise_level"],
        etas_end=s["etas_end"], power=s["power"], sf=s["sf"], chop_size=None,
    )  # fmt: skip
    return module, arr, s


def test_deterministic_chain_one_step_and_losses_equal_official(tmp_path: Path) -> None:
    """Same x_T (the fixture's ε), same networks: ours vs ``ddim_sample_loop`` (teacher, T
    steps), ``ddim_sample_loop(one_step=True)`` (student) and ``training_losses_distill``'s
    ``mse`` / ``mse_xT`` / ``mse_gt``. Bound: float32 evaluation of the same formulas; ours takes
    the step coefficients from float64 buffers, the official code computes them in float32 from
    float32 η's (relative 2⁻²⁴ ≈ 6e-8 each), and |x| ≤ |y| + κ√η_T|ε| ≲ 10, so 4 steps of a
    3-term sum stay below 4·3·10·6e-8 ≈ 7e-6 (observed ≲ 1e-6); the losses are means of squares
    of differences of O(1) numbers computed the same way."""
    module, arr, _ = _toy_modules(tmp_path)
    chain, teacher, student = module.chain, module.teacher, module.network
    lq, eps = arr["lq"], arr["eps"]
    with torch.no_grad():
        cond = chain.condition(student, module.first_stage, lq)
        assert torch.equal(cond.lq, lq)  # the toy network takes the LQ at its own size
        noise = torch.cat([eps, torch.zeros_like(eps).repeat(1, module.schedule.steps, 1, 1)], 1)
        ode = chain.reverse(teacher, cond, noise, mode="ode")
        one = chain.reverse(student, cond, noise, mode="one_step")
        terms = module.distillation_losses({"hq": arr["hq"], "lq": lq}, eps=eps)
    assert (ode - arr["ode"]).abs().max() <= 7e-6
    assert (one - arr["one_step"]).abs().max() <= 7e-6
    for name in ("distill", "inverse", "gt"):
        assert torch.allclose(terms[name], arr[name], rtol=1e-5, atol=1e-7), name
    # the terms are of different sizes (a swapped term would fail): inverse ≈ κ²η_T-scale
    assert arr["inverse"].min() > 10 * arr["distill"].max()


def test_teacher_is_frozen_and_outside_the_checkpoint(tmp_path: Path) -> None:
    """One optimiser step moves the student only; the state dict is the student's (the teacher
    is rebuilt from ``teacher`` on load); ``restore`` makes one network call."""
    module, arr, _ = _toy_modules(tmp_path)
    before = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    assert set(module.state_dict()) == {f"network.{k}" for k in before}
    loss = sum(
        t.mean()
        for t in module.distillation_losses({"hq": arr["hq"], "lq": arr["lq"]}, arr["eps"]).values()
    )
    loss.backward()
    assert all(p.grad is None for p in module.teacher.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.network.parameters())
    for k, v in module.teacher.state_dict().items():
        assert torch.equal(v, before[k])
    module.nfe_count = 0
    calls = []
    module.network.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        module.restore({"lq": arr["lq"], "hq": arr["hq"], "index": torch.arange(2)})
    assert len(calls) == 1


def test_student_starts_as_the_teacher_and_matches_the_teachers_one_step(tmp_path: Path) -> None:
    """Without ``weights`` the student is the teacher's copy, so SinSR's ``restore`` equals the
    teacher run as a ResShiftModule in ``one_step`` mode (same per-image x_T, same call)."""
    meta, arr = _load_fixture()
    s = meta["settings"]
    toy = _fixture_script().ToyNet
    state = {k.split("_", 1)[1]: v for k, v in arr.items() if k.startswith("teacher_")}
    torch.save(state, tmp_path / "teacher.pt")
    kw = dict(steps=s["steps"], kappa=s["kappa"], min_noise_level=s["min_noise_level"], sf=4,
              chop_size=None, seed=5)  # fmt: skip
    sinsr = SinSRModule(network=toy(4, 0), teacher=str(tmp_path / "teacher.pt"), **kw)
    ref = toy(4, 0)
    ref.load_state_dict(state)
    resshift = ResShiftModule(network=ref, sampling="one_step", lpips_weight=0.0, **kw)
    batch = {"lq": arr["lq"], "hq": arr["hq"], "index": torch.tensor([3, 9])}
    with torch.no_grad():
        assert torch.equal(sinsr.restore(batch), resshift.restore(batch))
        # and not the 4-step chain's output
        resshift.chain.mode = "posterior"
        assert not torch.allclose(sinsr.restore(batch), resshift.restore(batch), atol=1e-3)


def test_teacher_from_a_resshift_training_checkpoint(tmp_path: Path) -> None:
    """``teacher: runs/<resshift run>/checkpoints/last.ckpt`` (Lightning: ``network.`` keys under
    ``state_dict``) gives the same teacher as its bare weights."""
    _, arr = _load_fixture()
    state = {k.split("_", 1)[1]: v for k, v in arr.items() if k.startswith("teacher_")}
    ckpt = {"state_dict": {f"network.{k}": v for k, v in state.items()}, "global_step": 7}
    torch.save(ckpt, tmp_path / "last.ckpt")
    toy = _fixture_script().ToyNet
    module = SinSRModule(network=toy(4, 0), teacher=str(tmp_path / "last.ckpt"), steps=4, sf=4)
    for k, v in state.items():
        assert torch.equal(module.teacher.state_dict()[k], v)
        assert torch.equal(module.network.state_dict()[k], v)  # the student starts as it


def test_training_needs_a_teacher() -> None:
    module = SinSRModule(network=_fixture_script().ToyNet(4, 0), steps=4, sf=4)
    with pytest.raises(ValueError, match=r"model\.init_args\.teacher"):
        module.teacher


def test_released_container_loads_strictly(tmp_path: Path) -> None:
    """The official trainer saves ``{'iters_start', 'log_step', 'state_dict'}`` (``trainer.py::
    TrainerBase.save_ckpt``), with ``module.`` keys from DDP; a tiny Swin UNet in that container
    loads strictly into the student, every tensor unchanged, and one missing key is refused."""
    torch.manual_seed(0)
    kw = dict(image_size=16, model_channels=32, channel_mult=[1, 1], num_res_blocks=1,
              attention_resolutions=[8], num_head_channels=16, swin_depth=2, swin_embed_dim=32,
              window_size=4, mlp_ratio=2.0, lq_size=16, norm_groups=8)  # fmt: skip
    src = SwinUNet(**kw)
    state = {f"module.{k}": v for k, v in src.state_dict().items()}
    torch.save({"iters_start": 3, "log_step": {}, "state_dict": state}, tmp_path / "SinSR_v1.pth")
    module = SinSRModule(network=SwinUNet(**kw), weights=str(tmp_path / "SinSR_v1.pth"), sf=4)
    for k, v in src.state_dict().items():
        assert torch.equal(module.network.state_dict()[k], v), k
    state.pop(next(iter(state)))
    torch.save({"state_dict": state}, tmp_path / "broken.pth")
    with pytest.raises(RuntimeError, match="Missing key"):
        SinSRModule(network=SwinUNet(**kw), weights=str(tmp_path / "broken.pth"), sf=4)


# ------------------------------------------------------------------ exact resume
def _fit(root: Path, teacher: Path, max_steps: int, ckpt_path: str | None = None):
    torch.manual_seed(0)
    net = SwinUNet(image_size=16, model_channels=32, channel_mult=[1, 1], num_res_blocks=1,
                   attention_resolutions=[8], num_head_channels=16, swin_depth=2,
                   swin_embed_dim=32, window_size=4, mlp_ratio=2.0, lq_size=16,
                   norm_groups=8)  # fmt: skip
    module = SinSRModule(network=net, teacher=str(teacher), steps=4, min_noise_level=0.5, sf=4,
                         lr=1e-3, lr_min=1e-3, warmup_steps=3, seed=3)  # fmt: skip
    dm = RestorationDataModule(
        train_set=DeadLeaves(length=10, image_size=16, seed=0),
        operator=BicubicSR(4), noise=GaussianNoise(0.025),
        crop_size=16, batch_size=2, seed=5,
    )  # fmt: skip
    recorder = LossRecorder()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=max_steps, logger=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0, use_distributed_sampler=False, default_root_dir=root,
        callbacks=[recorder, EMAWeightAveraging(decay=0.9),
                   ModelCheckpoint(dirpath=root / "ckpt", filename="{step}",
                                   every_n_train_steps=6, save_top_k=-1)],
    )  # fmt: skip
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return recorder.losses, {k: v.clone() for k, v in module.state_dict().items()}


def test_resume_of_a_distillation_run_is_exact(tmp_path: Path) -> None:
    """12 steps (5 per epoch: the step-6 checkpoint is inside the second epoch) vs 6 + 6 from
    the checkpoint: equal losses and weights, bit for bit."""
    torch.manual_seed(1)
    teacher = SwinUNet(image_size=16, model_channels=32, channel_mult=[1, 1], num_res_blocks=1,
                       attention_resolutions=[8], num_head_channels=16, swin_depth=2,
                       swin_embed_dim=32, window_size=4, mlp_ratio=2.0, lq_size=16,
                       norm_groups=8)  # fmt: skip
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    losses, weights = _fit(tmp_path / "a", tmp_path / "teacher.pt", 12)
    assert sorted(losses) == list(range(1, 13)) and len(set(losses.values())) == 12
    ckpt = tmp_path / "a" / "ckpt" / "step=6.ckpt"
    resumed, resumed_weights = _fit(tmp_path / "b", tmp_path / "teacher.pt", 12, str(ckpt))
    assert sorted(resumed) == list(range(7, 13))
    assert all(resumed[s] == losses[s] for s in resumed), (resumed, losses)
    for key, value in weights.items():
        assert torch.equal(value, resumed_weights[key]), key
