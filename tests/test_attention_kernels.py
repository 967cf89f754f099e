"""The attention blocks reach SDPA's fused kernels (flash / memory-efficient / CPU flash).

``scaled_dot_product_attention`` takes a fused kernel only when q, k and v have stride 1 in their
last dimension; otherwise it silently falls back to the math kernel, which materialises the whole
L×L score matrix (for ResShift's VQ decoder at a 128×128 latent that is 1 GiB per image).
Restricting SDPA to the fused backends makes that fallback an error ("No available kernel"), so
each test below fails if a block hands SDPA a strided layout again. The numerics are pinned by
``tests/test_priors.py`` (einsum/bmm references of each published channel order); here the fused
output is compared with the math kernel's on the same inputs.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from lit_restore.nn import ADMUNet, DDIMUNet, VQModel
from lit_restore.nn.adm_unet import AttentionBlock
from lit_restore.nn.blocks import AttnBlock

FUSED = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]
U = 2.0**-24  # float32 unit round-off


def _randomise(module: torch.nn.Module, std: float = 0.2) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    for p in module.parameters():
        p.data = torch.randn(p.shape, generator=g) * std  # zero-initialised proj_out otherwise
    return module


def _fwd_bwd(module: torch.nn.Module, *inputs: torch.Tensor, backends: list) -> tuple:
    x = inputs[0].detach().requires_grad_(True)
    with sdpa_kernel(backends):
        out = module(x, *inputs[1:])
        (grad,) = torch.autograd.grad(out.float().square().sum(), x)
    return out.detach(), grad


BLOCKS = {
    "ddpm_attn": lambda: (AttnBlock(64), torch.randn(2, 64, 16, 16)),
    "adm_legacy": lambda: (AttentionBlock(128, num_heads=4), torch.randn(2, 128, 16, 16)),
    "adm_new_order": lambda: (
        AttentionBlock(128, num_head_channels=32, use_new_attention_order=True),
        torch.randn(2, 128, 16, 16),
    ),
}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_block_runs_on_a_fused_kernel_forward_and_backward(name):
    torch.manual_seed(0)
    block, x = BLOCKS[name]()
    _randomise(block)
    out_f, grad_f = _fwd_bwd(block, x, backends=FUSED)  # raises if only math would do
    out_m, grad_m = _fwd_bwd(block, x, backends=[SDPBackend.MATH])
    # Both kernels compute the same sums in float32 in a different order. A first-order bound on
    # the difference (Higham's γ_n = n·u per accumulated term, twice: one per kernel) with n the
    # longest reduction chain — the 1×1 conv over C inputs, the L-term softmax and weighted sum,
    # the output conv over C — scaled by the largest magnitude of the result.
    c, length = x.shape[1], x.shape[-2] * x.shape[-1]
    n = c + 2 * length + c
    for fused, math, what in ((out_f, out_m, "output"), (grad_f, grad_m, "input gradient")):
        bound = 2 * n * U * math.abs().max().item()
        diff = (fused - math).abs().max().item()
        assert diff <= bound, (name, what, diff, bound)


def test_bf16_torso_attention_is_fused():
    """The bf16 torso (``ADMUNet.set_dtype``) hands SDPA bf16 q/k/v; the fused path takes them."""
    net = ADMUNet(
        image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2",
        attention_resolutions="8", num_heads=2, learn_sigma=True,
    ).set_dtype("bfloat16")  # fmt: skip
    _randomise(net, 0.05).set_dtype("bfloat16")
    out, grad = _fwd_bwd(net, torch.randn(1, 3, 16, 16), torch.tensor([10]), backends=FUSED)
    assert torch.isfinite(out).all() and torch.isfinite(grad).all()


@pytest.mark.parametrize("which", ["adm", "ddim", "vq"])
def test_whole_networks_need_no_math_kernel(which):
    """Every attention layer of the three published networks that have global attention."""
    torch.manual_seed(0)
    if which == "adm":
        net = ADMUNet(
            image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2",
            attention_resolutions="16,8", num_heads=2, learn_sigma=True,
        )  # fmt: skip
        args: tuple = (torch.randn(2, 3, 16, 16), torch.tensor([5, 900]))
    elif which == "ddim":
        net = DDIMUNet(
            ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), resolution=16
        )
        args = (torch.randn(2, 3, 16, 16), torch.tensor([5.0, 900.0]))
    else:
        net = VQModel(ch=32, ch_mult=(1, 2), num_res_blocks=1, n_embed=16)
        net.forward = lambda x: net.decode(net.encode(x), quantize=False)  # type: ignore[method-assign]
        args = (torch.randn(2, 3, 16, 16),)
    _randomise(net, 0.05)
    out, grad = _fwd_bwd(net, *args, backends=FUSED)  # raises if any layer needs the math kernel
    assert torch.isfinite(out).all() and torch.isfinite(grad).all()
