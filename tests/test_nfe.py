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
DiffPIR    N (one x̂0 per step; the data step is a closed form)
ΠGDM       N (one ε(x_t) per step; the VJP reuses the same forward's graph)
DDS        N (one x̂0 per step; CG uses only A and Aᵀ)
RED-diff   N (one ε(x_t) per Adam step; no backpropagation through the network)
ResShift   T per tile group (T when untiled)
=========  ===========================================================================

No method evaluates the network twice for the same x_t (the hook would see it), so there is no
x̂0 to reuse.
"""

from __future__ import annotations

import pytest
import torch

from lit_restore.modules import ResShiftModule, ZeroShotRestoration
from lit_restore.nn import PixelSpace, SwinUNet
from lit_restore.operators import BicubicSR, GaussianNoise
from lit_restore.priors import ADMPrior
from lit_restore.samplers import (
    DDNM,
    DDPG,
    DDRM,
    DDS,
    DPS,
    FDGR,
    IDPG,
    DiffPIR,
    PiGDM,
    REDDiff,
    SaFaRI,
)

N = 6


def _calls(net: torch.nn.Module) -> list[int]:
    seen = [0]

    def hook(_module, args, _out) -> None:
        seen[0] += 1
        assert args[0].shape[0] == 2  # the whole batch in one call: one evaluation per image

    net.register_forward_hook(hook)
    return seen


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
    "diffpir": (lambda: DiffPIR(steps=N), N),
    "pgdm": (lambda: PiGDM(steps=N), N),
    "dds": (lambda: DDS(steps=N), N),
    "reddiff": (lambda: REDDiff(steps=N), N),
}  # fmt: skip


@pytest.mark.parametrize("sigma", [0.0, 0.05])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_zero_shot_nfe_equals_the_definition(method, sigma):
    make, expected = METHODS[method]
    prior = ADMPrior(
        image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2",
        attention_resolutions="8", num_heads=2, num_head_channels=-1, learn_sigma=True,
    )  # fmt: skip
    calls = _calls(prior.net)
    op = BicubicSR(factor=2, mode="keys")
    module = ZeroShotRestoration(prior, make(), operator=op, noise=GaussianNoise(sigma))
    y = op.A(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    out = module._evaluate({"y": y, "index": torch.tensor([0, 1]), "name": ["a", "b"]})
    assert calls[0] == expected
    assert out["nfe_per_image"] == expected and module.sampler.nfe == expected


def test_ddnm_travel_definition_is_not_vacuous():
    assert _ddnm_definition(6, 2, 3) == 6 + 2 * 2 * 2  # jumps at respaced 0 and 2
    assert _ddnm_definition(100, 1, 1) == 100


@pytest.mark.parametrize("chop, expected", [(None, 4), (8, 4 * 5)])
def test_resshift_nfe_is_steps_per_tile_group(chop, expected):
    """T network calls per pass of the chain: T = 4 untiled; tiled, 16 px in 8-px tiles with
    overlap 4 start at 0, 4, 8 on each axis: 9 tiles, 2 per forward (chop_bs) → 5 passes."""
    torch.manual_seed(0)
    net = SwinUNet(
        image_size=8, model_channels=32, channel_mult=(1,), num_res_blocks=1,
        attention_resolutions=(8,), num_head_channels=16, swin_depth=2, swin_embed_dim=32,
        window_size=4, lq_size=8, norm_groups=8,
    )  # fmt: skip
    module = ResShiftModule(
        network=net, steps=4, sf=1, lpips_weight=0.0, warmup_steps=1, chop_size=chop,
        chop_overlap=4, chop_bs=2,
    )  # fmt: skip
    assert isinstance(module.first_stage, PixelSpace)
    calls = [0]
    net.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    lq = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out = module._evaluate({"lq": lq, "index": torch.tensor([0, 1]), "name": ["a", "b"]})
    assert calls[0] == out["nfe_per_image"] == expected
