"""The runtime options (:mod:`lit_restore.runtime`): precision, compile, channels-last.

They change how a network is evaluated, never what a method computes: bf16 reaches the network
only (ADM: its bf16 torso, otherwise autocast), compile keeps the parameter names and the
outputs, channels-last keeps the outputs to round-off, ``auto`` stays float32 off CUDA.
"""

from __future__ import annotations

import pytest
import torch

from lit_restore import runtime
from lit_restore.modules import ResShiftModule, ZeroShotRestoration
from lit_restore.nn import SwinUNet
from lit_restore.operators import BicubicSR, GaussianNoise
from lit_restore.priors import ADMPrior
from lit_restore.samplers import DDRM, DPS

U = 2.0**-24  # float32 unit round-off
TINY_ADM = dict(
    image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2",
    attention_resolutions="8", num_heads=2, num_head_channels=-1, learn_sigma=True,
    resblock_updown=True,
)  # fmt: skip


def _prior(**kw) -> ADMPrior:
    prior = ADMPrior(**TINY_ADM, **kw)
    g = torch.Generator().manual_seed(1)
    for p in prior.net.parameters():  # zero-initialised output convs otherwise: ε ≡ 0
        p.data = (torch.randn(p.shape, generator=g) * 0.05).to(p.dtype)
    return prior


def _batch() -> dict:
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    y = BicubicSR(factor=2, mode="keys").A(x)
    return {"y": y, "index": torch.tensor([0, 1]), "name": ["a", "b"], "params": {}}


def _module(prior, sampler, **kw) -> ZeroShotRestoration:
    return ZeroShotRestoration(
        prior, sampler, operator=BicubicSR(factor=2, mode="keys"), noise=GaussianNoise(0.05), **kw
    )


def test_resolve_precision(monkeypatch):
    assert runtime.resolve_precision("fp32", "cuda", "dps") is None
    assert runtime.resolve_precision("bf16", "cpu", "dps") is torch.bfloat16
    monkeypatch.setattr(runtime, "BF16_PSNR_DB", {"ddrm": 52.0, "dps": 31.0})
    bound = runtime.BF16_AUTO_BOUND_DB
    assert 31.0 < bound < 52.0
    assert runtime.resolve_precision("auto", "cuda", "ddrm") is torch.bfloat16  # above the bound
    assert runtime.resolve_precision("auto", "cuda", "dps") is None  # measured, below
    assert runtime.resolve_precision("auto", "cuda", "fdgr") is None  # not measured
    assert runtime.resolve_precision("auto", "cpu", "ddrm") is None  # CPU: always float32
    with pytest.raises(ValueError, match="precision='fp16': choose one of fp32, bf16, auto"):
        runtime.check_precision("fp16")
    with pytest.raises(ValueError, match="compile='fast'"):
        runtime.compile_mode("fast", "cpu")
    with pytest.warns(UserWarning, match="CUDA graphs"):
        assert runtime.compile_mode("reduce-overhead", "cpu") == "default"


def test_bf16_flag_is_the_adm_torso():
    """``precision="bf16"`` on an ADM prior = the guided-diffusion bf16 torso (convs bf16;
    GroupNorm, time MLP and output head float32), with no autocast on top: the result equals a
    run of the same weights built as ``ADMPrior(dtype="bfloat16")`` bit for bit, and differs
    from float32."""
    batch = _batch()
    flag = _module(_prior(), DDRM(steps=3), precision="bf16")
    x_flag = flag.restore(batch)
    assert flag.sampler.autocast_dtype is None
    assert flag.prior.net.input_blocks[1][0].in_layers[2].weight.dtype == torch.bfloat16
    assert flag.prior.net.out[2].weight.dtype == torch.float32
    built = _prior(dtype="bfloat16")
    assert built.net.input_blocks[1][0].in_layers[2].weight.dtype == torch.bfloat16
    x_built = _module(built, DDRM(steps=3), precision="fp32").restore(batch)
    assert torch.equal(x_flag, x_built)
    x_32 = _module(_prior(), DDRM(steps=3), precision="fp32").restore(batch)
    assert (x_flag - x_32).abs().max() > 1e-4  # bf16 really ran


def test_bf16_flag_autocasts_priors_without_a_torso():
    from lit_restore.priors.gaussian import GaussianPrior

    prior = GaussianPrior.power_law(alpha=2.0, std=0.3, channels=3)
    module = _module(prior, DDRM(steps=2), precision="bf16")
    module.restore(_batch())
    assert module.sampler.autocast_dtype is torch.bfloat16
    assert _module(prior, DDRM(steps=2)).precision == "auto"  # the default
    cpu_auto = _module(prior, DDRM(steps=2))
    cpu_auto.restore(_batch())
    assert cpu_auto.sampler.autocast_dtype is None  # auto on CPU = float32


def _layer_reductions(net: torch.nn.Module) -> int:
    """Σ of the fan-in of every conv/linear layer: a first-order bound on how many float32
    roundings accumulate along the network (each reduction of n terms adds ≤ n·u relative)."""
    total = 0
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d)):
            total += m.weight[0].numel()
        elif isinstance(m, torch.nn.Linear):
            total += m.in_features
    return total


def test_channels_last_keeps_the_output():
    prior = _prior()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([10, 700])
    with torch.no_grad():
        ref = prior.eps(x, t)
        runtime.prepare_network(prior.net, "cpu", channels_last=True)
        assert prior.net.input_blocks[0][0].weight.is_contiguous(memory_format=torch.channels_last)
        got = prior.eps(x, t)
    bound = 2 * _layer_reductions(prior.net) * U * ref.abs().max().item()
    assert (got - ref).abs().max().item() <= bound


def test_compile_flag_compiles_the_prior_and_keeps_results(monkeypatch):
    """``compile=True`` compiles the prior's network in place (parameter names unchanged) and
    DPS — gradients through the compiled network — gives the eager result. ``aot_eager``
    traces and differentiates through dynamo/AOTAutograd like inductor but without the C++
    build (minutes on this CPU; the inductor run is ``test_inductor_compile`` below)."""
    monkeypatch.setattr(runtime, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    batch = _batch()
    eager = _module(_prior(), DPS(steps=2, scale=0.3), precision="fp32")
    compiled = _module(_prior(), DPS(steps=2, scale=0.3), precision="fp32", compile=True)
    keys = list(compiled.prior.net.state_dict())
    x_c = compiled.restore(batch)
    assert compiled.prior.net._compiled_call_impl is not None
    assert list(compiled.prior.net.state_dict()) == keys
    torch.testing.assert_close(x_c, eager.restore(batch), rtol=0, atol=0)


@pytest.mark.slow
def test_inductor_compile():
    torch._dynamo.reset()
    batch = _batch()
    eager = _module(_prior(), DDRM(steps=2), precision="fp32").restore(batch)
    got = _module(_prior(), DDRM(steps=2), precision="fp32", compile=True).restore(batch)
    assert (got - eager).abs().max().item() < 1e-4


def test_resshift_flags(monkeypatch):
    """ResShift: bf16 = autocast over the chain (result float32, differs from fp32), compile and
    channels-last reach the network; the VQ code lookup stays float32 under autocast."""
    monkeypatch.setattr(runtime, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()

    def module(**kw) -> ResShiftModule:
        torch.manual_seed(0)
        net = SwinUNet(
            image_size=16, model_channels=32, channel_mult=[1, 2], num_res_blocks=1,
            attention_resolutions=[16], num_head_channels=16, swin_depth=2, swin_embed_dim=32,
            window_size=4, mlp_ratio=2.0, lq_size=16, norm_groups=8,
        )  # fmt: skip
        m = ResShiftModule(network=net, sf=4, lpips_weight=0.0, warmup_steps=1, **kw)
        for p in m.network.parameters():
            p.data = torch.randn(p.shape, generator=torch.Generator().manual_seed(4)) * 0.05
        return m

    lq = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(5)) * 2 - 1
    batch = {"lq": lq, "index": torch.tensor([0]), "name": ["a"]}
    x32 = module(precision="fp32").restore(batch)
    xbf = module(precision="bf16").restore(batch)
    assert xbf.dtype == torch.float32 and (xbf - x32).abs().max() > 1e-4
    m = module(precision="fp32", compile=True)
    torch.testing.assert_close(m.restore(batch), x32, rtol=0, atol=0)  # aot_eager: same kernels
    assert m.network._compiled_call_impl is not None
    m = module(precision="fp32", channels_last=True)
    x_cl = m.restore(batch)
    assert m.network.input_blocks[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    # the round-off bound of test_channels_last_keeps_the_output, once per chain step (T = 4)
    bound = 2 * 4 * _layer_reductions(m.network) * U * x32.abs().max().item()
    assert (x_cl - x32).abs().max().item() <= bound
    with pytest.raises(ValueError, match="precision="):
        module(precision="half")


def test_vq_codes_are_float32_under_autocast():
    from lit_restore.nn import VQModel

    vq = VQModel(ch=32, ch_mult=(1, 2), num_res_blocks=1, n_embed=64)
    z = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        codes = vq.quantize.indices(z)
    assert torch.equal(codes, vq.quantize.indices(z))


def test_trainer_autocast_does_not_reach_the_guidance_maths():
    """Under an enclosing bf16 autocast (a Trainer with ``precision: bf16-mixed``) a float32
    ``precision`` gives the float32 result: the flag is the one precision switch."""
    batch = _batch()
    x_32 = _module(_prior(), DDRM(steps=3), precision="fp32").restore(batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_outer = _module(_prior(), DDRM(steps=3), precision="fp32").restore(batch)
    assert torch.equal(x_outer, x_32)
