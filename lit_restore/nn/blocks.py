"""Building blocks shared by more than one network of :mod:`lit_restore.nn`.

Two families, each kept in the layout of its source so that the published checkpoints of every
network built from it load strictly (parameter names come from the attribute names below):

* **guided-diffusion** (openai/guided-diffusion ``guided_diffusion/unet.py`` and ``nn.py``):
  :class:`ResBlock` (``in_layers``/``emb_layers``/``out_layers``/``skip_connection``),
  :class:`Upsample` (``conv``), :class:`Downsample` (``op``), :func:`normalization`
  (GroupNorm32), :func:`timestep_embedding`, :class:`TimestepEmbedSequential` and the
  skip-connected pass :func:`unet_trunk`. Used by :class:`~lit_restore.nn.ADMUNet` and by
  ResShift's :class:`~lit_restore.nn.SwinUNet` (zsyOAOA/ResShift ``models/unet.py`` builds its
  ``UNetModelSwin`` from the same guided-diffusion file, so the names coincide).
* **DDPM "simple" / LDM** (pesser/pytorch_diffusion, ermongroup/ddim ``models/diffusion.py``;
  CompVis/latent-diffusion ``ldm/modules/diffusionmodules/model.py``): :class:`ResnetBlock`
  (``norm1``/``conv1``/``temb_proj``/``norm2``/``conv2``/``nin_shortcut``), :class:`AttnBlock`
  (1×1-conv ``q``/``k``/``v``/``proj_out``), :func:`Normalize` (GroupNorm, eps 1e-6),
  :class:`DDPMDownsample` / :class:`DDPMUpsample` (``conv``) and :class:`DDPMMidBlock`
  (``block_1``/``attn_1``/``block_2``). Used by :class:`~lit_restore.nn.DDIMUNet` (with a time
  embedding) and by the VQ autoencoder's encoder/decoder (without one: LDM builds the same
  ``ResnetBlock`` with ``temb_channels=0``, which drops ``temb_proj``).

Plus two module helpers, :func:`zero_module` and :func:`freeze`.
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as grad_checkpoint

M = TypeVar("M", bound=nn.Module)


# ------------------------------------------------------------------ module helpers
def zero_module(module: M) -> M:
    """Zero every parameter (guided-diffusion ``nn.zero_module``: output convs start at 0)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def freeze(module: M) -> M:
    """Eval mode and no parameter gradients (gradients w.r.t. the inputs still flow, which DPS
    needs through a frozen prior and ResShift's LPIPS term through the frozen decoder)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


# ------------------------------------------------------------------ guided-diffusion family
def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding ``[cos(t·f_i), sin(t·f_i)]``, ``f_i = max_period^(-i/half)``
    (guided-diffusion ``nn.timestep_embedding``)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the torso dtype (as guided-diffusion does)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.group_norm(
            x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps
        ).to(x.dtype)


def normalization(channels: int) -> GroupNorm32:
    """GroupNorm32 with 32 groups (guided-diffusion ``nn.normalization``)."""
    if channels % 32:
        raise ValueError(
            f"GroupNorm32 needs a channel count divisible by 32, got {channels}; choose widths "
            "(model_channels × channel_mult, swin_embed_dim) that are multiples of 32"
        )
    return GroupNorm32(32, channels)


class TimestepBlock(nn.Module):
    """A block that takes the time embedding as a second input."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class TimestepEmbedSequential(nn.Sequential):
    """Sequential that passes the embedding to the children that take one."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class Upsample(nn.Module):
    """Nearest ×2 (+ 3×3 conv named ``conv``)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """Stride-2 3×3 conv named ``op`` (or 2×2 average pooling without parameters)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None) -> None:
        super().__init__()
        self.op = (
            nn.Conv2d(channels, out_channels or channels, 3, stride=2, padding=1)
            if use_conv
            else nn.AvgPool2d(2)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class ResBlock(TimestepBlock):
    """Residual block with time conditioning (``in_layers``/``emb_layers``/``out_layers``).

    ``h = conv(SiLU(GN(x)))``; with scale-shift norm ``h = GN(h)·(1+s)+b`` from the time embedding
    (FiLM, Dhariwal & Nichol 2021 §3), else ``h += emb``; ``out = skip(x) + conv(SiLU(h))``.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_scale_shift_norm: bool = False,
        use_checkpoint: bool = False,
        up: bool = False,
        down: bool = False,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.use_checkpoint = use_checkpoint
        self.in_layers = nn.Sequential(
            normalization(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(),
            nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels),
        )
        self.out_layers = nn.Sequential(
            normalization(out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.use_checkpoint and self.training and torch.is_grad_enabled():
            return grad_checkpoint(self._forward, x, emb, use_reentrant=False)
        return self._forward(x, emb)

    def _forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        # the embedding MLP stays float32 (guided-diffusion casts only convs to fp16)
        emb_out = self.emb_layers(emb.to(self.emb_layers[1].weight.dtype)).to(h.dtype)[
            ..., None, None
        ]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


def unet_trunk(
    h: Tensor,
    emb: Tensor,
    input_blocks: nn.ModuleList,
    middle_block: nn.Module,
    output_blocks: nn.ModuleList,
) -> Tensor:
    """The skip-connected U-Net pass of guided-diffusion ``unet.py`` (``UNetModel.forward``):
    every input block's output is concatenated to the matching output block's input."""
    skips = []
    for block in input_blocks:
        h = block(h, emb)
        skips.append(h)
    h = middle_block(h, emb)
    for block in output_blocks:
        h = block(torch.cat([h, skips.pop()], dim=1), emb)
    return h


# ------------------------------------------------------------------ DDPM / LDM family
def Normalize(channels: int) -> nn.GroupNorm:
    """GroupNorm(32, eps 1e-6, affine) of the DDPM/LDM code."""
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class DDPMUpsample(nn.Module):
    """Nearest ×2 (+ 3×3 conv named ``conv``)."""

    def __init__(self, channels: int, with_conv: bool) -> None:
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.with_conv else x


class DDPMDownsample(nn.Module):
    """Stride-2 3×3 conv named ``conv`` after an asymmetric (0, 1, 0, 1) pad (no padding in the
    conv itself), or 2×2 average pooling."""

    def __init__(self, channels: int, with_conv: bool) -> None:
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        if self.with_conv:
            return self.conv(F.pad(x, (0, 1, 0, 1)))
        return F.avg_pool2d(x, 2, 2)


class ResnetBlock(nn.Module):
    """``h = conv1(swish(norm1(x))) [+ temb_proj(swish(temb))]``, ``h = conv2(drop(swish(norm2(h))))``,
    ``out = x (or nin_shortcut(x) when the width changes) + h``.

    ``temb_channels=0`` builds no ``temb_proj`` (LDM's autoencoder blocks).
    """

    def __init__(
        self, in_channels: int, out_channels: int, temb_channels: int = 0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = Normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        if temb_channels > 0:
            self.temb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = Normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if temb is not None:
            h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1×1-conv ``q``, ``k``, ``v``, ``proj_out``;
    softmax(qᵀk / √C) over the H·W positions."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = Normalize(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        # tokens-major [B, 1, HW, C] with the channel axis contiguous: SDPA's fused kernels
        # (flash / memory-efficient / CPU flash) need stride 1 in the last dimension; a strided
        # view would fall back to the math kernel, which stores the whole HW×HW matrix.
        q, k, v = (
            conv(n).reshape(b, 1, c, h * w).transpose(-1, -2).contiguous()
            for conv in (self.q, self.k, self.v)
        )
        out = F.scaled_dot_product_attention(q, k, v)  # [B, 1, HW, C]
        return x + self.proj_out(out.transpose(-1, -2).reshape(b, c, h, w))


class DDPMMidBlock(nn.Module):
    """``block_2(attn_1(block_1(x, temb)), temb)``: the middle of the DDPM UNet and of the LDM
    encoder/decoder."""

    def __init__(self, channels: int, temb_channels: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, temb_channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, temb_channels, dropout)

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x, temb)), temb)
