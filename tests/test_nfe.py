"""Network evaluations (NFE) per method and image equal each method's definition.

The count comes from a forward hook on the network itself — independent of the samplers' own
counter — and is compared with the published definition of each method (the number of
network calls per image for one restoration):

=========  ===========================================================================
DPS        N (one ε(x_t) per step; its gradient reuses the same forward's graph)
SaFaRI     N (DPS with another fidelity)
DDNM       N + (r−1)·L·#{jump points} (RePaint time travel; N without travel)
DDRM       |range(0, T, T // N)| (its runners/diffusion.py seq: N when N divides T, else more)
DDPG/IDPG  N
FDGR       N (DDPG + a regulariser of x̂0, no extra call)
DiffPIR    N − 1 (one x̂0 per step but the last: the code returns x_0 and discards that x̂0;
           the data step is a closed form. N with output="denoised")
ΠGDM       N (one ε(x_t) per step; the VJP reuses the same forward's graph)
DDS        N (one x̂0 per step; CG uses only A and Aᵀ)
RED-diff   N (one ε(x_t) per Adam step; no backpropagation through the network)
latent DPS / latent SaFaRI   N (one ε(z_t) per step; decoder/encoder calls are not
           network evaluations of the prior)
PSLD       |range(0, T, T // N)| (one ε(z_t) per step of the CompVis LDM DDIM chain its official
           sampler runs: N when N divides T, else more; 1000 for every N > T/2)
ReSample   official: n + Σ min(5, i) over its resampling indices i (one ε(z_t) per step of
           the CompVis grid, n = |range(0, T, T // N)|, plus the 5-step DDIM look-ahead before
           each resampling, fewer when i < 5); paper: n. Its data-consistency optimisations
           and the per-step DPS gradient use only E, D, A and the step's own forward graph
latent DAPS  N·K (DAPS on z; the MCMC uses only A ∘ D)
DAPS       N·K (N annealing levels × K Euler steps of the ODE; the MCMC uses only A)
ResShift   T per tile group (T when untiled)
=========  ===========================================================================

The hook also records every call's input (x_t, t): no two calls of a restoration share one, so
no method evaluates the network twice for the same x_t and there is no x̂0 to reuse (a method
that did is caught: ``test_a_repeated_evaluation_is_caught``). Every sampler class that
``lit_restore.samplers`` exports is covered, each with its default arguments and with every
published preset (``lit_restore.samplers.presets``, steps set to N).
"""

from __future__ import annotations

import hashlib
import inspect

import pytest
import torch

import lit_restore.samplers as samplers_pkg
from lit_restore.modules import ResShiftModule, ZeroShotRestoration
from lit_restore.nn import PixelSpace, SwinUNet
from lit_restore.operators import BicubicSR, GaussianNoise
from lit_restore.presets import preset_args
from lit_restore.priors import ADMPrior, LDMPrior
from lit_restore.samplers import (
    DAPS,
    DDNM,
    DDPG,
    DDRM,
    DDS,
    DPS,
    FDGR,
    IDPG,
    PSLD,
    DiffPIR,
    LatentDAPS,
    LatentDPS,
    LatentSaFaRI,
    PiGDM,
    REDDiff,
    ReSample,
    SaFaRI,
)
from lit_restore.samplers.presets import presets_of

N = 6


def _calls(net: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """The inputs (digest of x_t, t) of every forward call of ``net``, in order."""
    seen: list[tuple[str, tuple[int, ...]]] = []

    def hook(_module, args, _out) -> None:
        x, t = args[0], args[1]
        assert x.shape[0] == 2  # the whole batch in one call: one evaluation per image
        digest = hashlib.sha256(x.detach().float().contiguous().numpy().tobytes()).hexdigest()
        seen.append((digest, tuple(int(v) for v in t.flatten().tolist())))

    net.register_forward_hook(hook)
    return seen


def _prior() -> ADMPrior:
    torch.manual_seed(0)
    return ADMPrior(
        image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2",
        attention_resolutions="8", num_heads=2, num_head_channels=-1, learn_sigma=True,
    )  # fmt: skip


def _latent_prior() -> LDMPrior:
    """A tiny CompVis LDM (16-px images, 8-px latents)."""
    torch.manual_seed(0)
    return LDMPrior(
        unet=dict(
            image_size=8, in_channels=3, out_channels=3, model_channels=32,
            attention_resolutions=[2], num_res_blocks=1, channel_mult=[1, 2], num_head_channels=16,
        ),
        first_stage=dict(embed_dim=3, n_embed=32, ch=32, ch_mult=[1, 2], num_res_blocks=1, z_channels=3),
    )  # fmt: skip


def _restore(sampler, sigma: float, latent: bool = False) -> tuple[list, dict, ZeroShotRestoration]:
    prior = _latent_prior() if latent else _prior()
    calls = _calls(prior.unet if latent else prior.net)
    op = BicubicSR(factor=2, mode="keys")
    module = ZeroShotRestoration(prior, sampler, operator=op, noise=GaussianNoise(sigma))
    y = op.A(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    out = module._evaluate({"y": y, "index": torch.tensor([0, 1]), "name": ["a", "b"]})
    return calls, out, module


def _check(calls: list, out: dict, module: ZeroShotRestoration, expected: int) -> None:
    assert len(calls) == expected
    assert out["nfe_per_image"] == expected and module.sampler.nfe == expected
    assert len(set(calls)) == len(calls), "the network was evaluated twice at the same (x_t, t)"


def _resample_definition(steps: int, every: int, lookahead: int) -> int:
    """ReSample on the ``"ldm"`` grid (n = |range(0, T, T // N)|): n, plus ``min(lookahead, i)``
    look-ahead evaluations at each resampling index i (``i % every == 0``, 0 < i ≤ n − n//3)."""
    n = len(range(0, 1000, 1000 // steps))
    return n + sum(min(lookahead, i) for i in range(1, n - n // 3 + 1) if i % every == 0)


def _ddnm_definition(n: int, length: int, repeat: int) -> int:
    jump_points = len(range(0, n - length, length))  # RePaint get_schedule_jump
    return n + (repeat - 1) * length * jump_points


METHODS = {
    "dps": (lambda: DPS(steps=N), N),
    "safari": (lambda: SaFaRI(steps=N), N),
    "ddnm": (lambda: DDNM(steps=N), N),
    "ddnm_travel": (lambda: DDNM(steps=N, travel_length=2, travel_repeat=3), _ddnm_definition(N, 2, 3)),
    "ddrm": (lambda: DDRM(steps=N), len(range(0, 1000, 1000 // N))),  # 7 for N = 6
    "ddpg": (lambda: DDPG(steps=N), N),
    "idpg": (lambda: IDPG(steps=N), N),
    "fdgr": (lambda: FDGR(steps=N), N),
    "diffpir": (lambda: DiffPIR(steps=N), N - 1),
    "diffpir_denoised": (lambda: DiffPIR(steps=N, output="denoised"), N),
    "pgdm": (lambda: PiGDM(steps=N), N),
    "dds": (lambda: DDS(steps=N), N),
    "reddiff": (lambda: REDDiff(steps=N), N),
    "daps": (lambda: DAPS(annealing_steps=N, ode_steps=3, mcmc_steps=2), N * 3),
}  # fmt: skip
#: the latent methods (on a latent prior)
LATENT_METHODS = {
    "latent_dps": (lambda: LatentDPS(steps=N), N),
    "latent_safari": (lambda: LatentSaFaRI(steps=N), N),
    "psld": (lambda: PSLD(steps=N), len(range(0, 1000, 1000 // N))),  # 7 for N = 6
    "resample": (
        lambda: ReSample(steps=N, every=1, pixel_iters=2, latent_iters=2, patience=1),
        _resample_definition(N, every=1, lookahead=5),  # 7 + (1 + 2 + 3 + 4 + 5) = 22 for N = 6
    ),
    "resample_paper": (
        lambda: ReSample(mode="paper", steps=N, every=1, pixel_iters=2, latent_iters=2, patience=1),
        _resample_definition(N, every=1, lookahead=0),
    ),
    "latent_daps": (lambda: LatentDAPS(annealing_steps=N, ode_steps=3, mcmc_steps=2), N * 3),
}  # fmt: skip


@pytest.mark.parametrize("sigma", [0.0, 0.05])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_zero_shot_nfe_equals_the_definition(method, sigma):
    make, expected = METHODS[method]
    _check(*_restore(make(), sigma), expected)


@pytest.mark.parametrize("sigma", [0.0, 0.05])
@pytest.mark.parametrize("method", sorted(LATENT_METHODS))
def test_latent_nfe_equals_the_definition(method, sigma):
    make, expected = LATENT_METHODS[method]
    _check(*_restore(make(), sigma, latent=True), expected)


#: every published preset of every method (steps set to N; σ_y as the preset's name says, else
#: the DPS protocol's)
PRESETS = [
    (cls, name)
    for cls in (DPS, SaFaRI, DDNM, DDRM, DDPG, IDPG, FDGR, DiffPIR, PiGDM, DDS, REDDiff, DAPS)
    for name in presets_of(cls)
]


@pytest.mark.parametrize("cls, name", PRESETS, ids=[f"{c.__name__}-{n}" for c, n in PRESETS])
def test_every_preset_evaluates_the_network_as_defined(cls, name):
    args = {**preset_args(cls, name), "annealing_steps" if cls is DAPS else "steps": N}
    sampler = cls(**args)
    if isinstance(sampler, DAPS):
        expected = N * sampler.ode_steps
    elif isinstance(sampler, DDNM):
        expected = _ddnm_definition(N, sampler.travel_length, sampler.travel_repeat)
    elif sampler.spacing == "ddrm":  # DDRM's untruncated range(0, T, T // N): 7 for N = 6
        expected = len(range(0, 1000, 1000 // N))
    elif isinstance(sampler, DiffPIR) and sampler.output == "state":  # no call for a discarded x̂0
        expected = N - 1
    else:
        expected = N
    sigma = 0.0 if name.endswith("_sigma0") else 0.05
    _check(*_restore(sampler, sigma), expected)


#: the published presets of the latent methods that have them (annealing levels set to N; the
#: MCMC step counts kept)
LATENT_PRESETS = list(presets_of(LatentDAPS))


@pytest.mark.parametrize("name", LATENT_PRESETS)
def test_every_latent_daps_preset_evaluates_the_network_as_defined(name):
    sampler = LatentDAPS(**{**preset_args(LatentDAPS, name), "annealing_steps": N})
    _check(*_restore(sampler, 0.05, latent=True), N * sampler.ode_steps)  # ode_steps 2


def test_every_exported_sampler_is_counted():
    """A new method cannot land without its NFE definition here (DDPM/DDIM: unconditional, N)."""
    exported = {
        c
        for c in vars(samplers_pkg).values()
        if inspect.isclass(c)
        and issubclass(c, samplers_pkg.Sampler)
        and c is not samplers_pkg.Sampler
    }
    counted = {type(make()) for make, _ in (*METHODS.values(), *LATENT_METHODS.values())} | {
        samplers_pkg.DDPM,
        samplers_pkg.DDIM,
    }
    assert exported == counted


@pytest.mark.parametrize("cls", [samplers_pkg.DDPM, samplers_pkg.DDIM])
def test_unconditional_samplers_evaluate_once_per_step(cls):
    prior = _prior()
    calls = _calls(prior.net)
    sampler = cls(steps=N)
    with torch.no_grad():
        sampler.sample(prior, None, None, x_shape=(2, 3, 16, 16), generator=torch.Generator())
    assert len(calls) == sampler.nfe == N and len(set(calls)) == N


def test_a_repeated_evaluation_is_caught():
    """The (x_t, t) record is not vacuous: a DPS that evaluates ε(x_t, t) a second time for its
    x̂0 (the waste the check exists for) fails it, although its output is the same."""

    class WastefulDPS(DPS):
        def step(self, ctx, x, t, t_next):
            with torch.no_grad():
                ctx.eps(x, t)  # a second, identical evaluation
            return super().step(ctx, x, t, t_next)

    calls, out, module = _restore(WastefulDPS(steps=N), 0.05)
    with pytest.raises(AssertionError, match="twice at the same"):
        _check(calls, {**out, "nfe_per_image": len(calls)}, module, len(calls))


def test_ddnm_travel_definition_is_not_vacuous():
    assert _ddnm_definition(6, 2, 3) == 6 + 2 * 2 * 2  # jumps at respaced 0 and 2
    assert _ddnm_definition(100, 1, 1) == 100


@pytest.mark.parametrize("chop, passes", [(None, 1), (8, 5)])
@pytest.mark.parametrize("sampling, per_pass", [("posterior", 4), ("ode", 4), ("one_step", 1)])
def test_resshift_nfe_is_steps_per_tile_group(chop, passes, sampling, per_pass):
    """T network calls per pass of the chain (T = 4; one in SinSR's ``one_step`` mode):
    untiled one pass; tiled, 16 px in 8-px tiles with overlap 4 start at 0, 4, 8 on each axis:
    9 tiles, 2 per forward (chop_bs) → 5 passes."""
    expected = per_pass * passes
    torch.manual_seed(0)
    net = SwinUNet(
        image_size=8, model_channels=32, channel_mult=(1,), num_res_blocks=1,
        attention_resolutions=(8,), num_head_channels=16, swin_depth=2, swin_embed_dim=32,
        window_size=4, lq_size=8, norm_groups=8,
    )  # fmt: skip
    module = ResShiftModule(
        network=net, steps=4, sf=1, lpips_weight=0.0, warmup_steps=1, chop_size=chop,
        chop_overlap=4, chop_bs=2, sampling=sampling,
    )  # fmt: skip
    assert isinstance(module.first_stage, PixelSpace)
    calls: list[tuple[str, tuple[int, ...]]] = []

    def hook(_module, args, _out) -> None:  # no batch-size check: tiles go 2 per call
        x, t = args[0], args[1]
        digest = hashlib.sha256(x.detach().float().contiguous().numpy().tobytes()).hexdigest()
        calls.append((digest, tuple(int(v) for v in t.flatten().tolist())))

    net.register_forward_hook(hook)
    lq = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out = module._evaluate({"lq": lq, "index": torch.tensor([0, 1]), "name": ["a", "b"]})
    assert len(calls) == out["nfe_per_image"] == expected
    assert len(set(calls)) == len(calls)  # no (x_t, t) evaluated twice, tiles included
