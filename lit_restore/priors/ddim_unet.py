"""The "simple" DDPM/DDIM UNet (Ho et al. 2020, ported to PyTorch by pesser/pytorch_diffusion and
used by DDIM, SDEdit, DDRM, DDNM, DDPG and FDGR as ``models/diffusion.py::Model``), written for
lit_restore.

Its module tree reproduces the parameter names of SDEdit's ``celeba_hq.ckpt`` (manifest
``shared/reference/ddim_celebahq256.keys.json``): ``temb.dense.{0,1}``, ``conv_in``,
``down.{i}.block.{j}`` / ``down.{i}.attn.{j}`` / ``down.{i}.downsample.conv``, ``mid.block_1`` /
``mid.attn_1`` / ``mid.block_2``, ``up.{i}.block.{j}`` / ``up.{i}.attn.{j}`` /
``up.{i}.upsample.conv``, ``norm_out``, ``conv_out``. ResNet blocks use ``nin_shortcut`` (1×1)
when the width changes. Differences from the ADM UNet worth knowing (numerics): timestep
embedding ``[sin, cos]`` with frequencies ``10000^(-i/(half-1))``; GroupNorm eps 1e-6; swish;
the strided downsampling conv pads (0,1,0,1) asymmetrically and uses no padding itself;
attention is single-head with separate 1×1-conv q/k/v.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def get_timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """``[sin(t·f_i), cos(t·f_i)]`` with ``f_i = exp(-ln(10⁴)·i/(half-1))`` (DDPM ``nn.py``)."""
    half = dim // 2
    freqs = torch.exp(
        torch.arange(half, dtype=torch.float32, device=t.device) * -(math.log(10000) / (half - 1))
    )
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def Normalize(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class Upsample(nn.Module):
    def __init__(self, channels: int, with_conv: bool) -> None:
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.with_conv else x


class Downsample(nn.Module):
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
    def __init__(
        self, in_channels: int, out_channels: int, temb_channels: int, dropout: float
    ) -> None:
        super().__init__()
        self.norm1 = Normalize(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.temb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = Normalize(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1×1-conv ``q``, ``k``, ``v``, ``proj_out``."""

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
        q, k, v = (
            conv(n).reshape(b, 1, c, h * w).transpose(-1, -2) for conv in (self.q, self.k, self.v)
        )
        out = F.scaled_dot_product_attention(q, k, v)  # [B, 1, HW, C]
        return x + self.proj_out(out.transpose(-1, -2).reshape(b, c, h, w))


class DDIMUNet(nn.Module):
    """The DDPM "simple" UNet (``models/diffusion.py::Model`` of DDIM/SDEdit/DDRM).

    Args:
        in_channels, out_ch: image channels.
        ch: base width; time embedding width ``4·ch``.
        ch_mult: width multiplier per level.
        num_res_blocks: ResNet blocks per level (decoder: one more).
        attn_resolutions: spatial sizes at which attention is applied.
        dropout: dropout in ResNet blocks.
        resamp_with_conv: convolutional down/upsampling.
        resolution: training image size.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_ch: int = 3,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.0,
        resamp_with_conv: bool = True,
        resolution: int = 256,
    ) -> None:
        super().__init__()
        ch_mult = tuple(ch_mult)
        self.ch = ch
        self.temb_ch = ch * 4
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.resolution = resolution
        self.in_channels = in_channels
        self.temb = nn.Module()
        self.temb.dense = nn.ModuleList(
            [nn.Linear(ch, self.temb_ch), nn.Linear(self.temb_ch, self.temb_ch)]
        )
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        curr_res = resolution
        in_ch_mult = (1, *ch_mult)
        self.down = nn.ModuleList()
        block_in = ch
        for i_level in range(self.num_resolutions):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = ch * in_ch_mult[i_level], ch * ch_mult[i_level]
            for _ in range(num_res_blocks):
                level.block.append(ResnetBlock(block_in, block_out, self.temb_ch, dropout))
                block_in = block_out
                if curr_res in attn_resolutions:
                    level.attn.append(AttnBlock(block_in))
            if i_level != self.num_resolutions - 1:
                level.downsample = Downsample(block_in, resamp_with_conv)
                curr_res //= 2
            self.down.append(level)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, self.temb_ch, dropout)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in, self.temb_ch, dropout)
        up_levels: list[nn.Module] = []
        for i_level in reversed(range(self.num_resolutions)):
            level = nn.Module()
            level.block, level.attn = nn.ModuleList(), nn.ModuleList()
            block_out = skip_in = ch * ch_mult[i_level]
            for i_block in range(num_res_blocks + 1):
                if i_block == num_res_blocks:
                    skip_in = ch * in_ch_mult[i_level]
                level.block.append(
                    ResnetBlock(block_in + skip_in, block_out, self.temb_ch, dropout)
                )
                block_in = block_out
                if curr_res in attn_resolutions:
                    level.attn.append(AttnBlock(block_in))
            if i_level != 0:
                level.upsample = Upsample(block_in, resamp_with_conv)
                curr_res *= 2
            up_levels.insert(0, level)
        self.up = nn.ModuleList(up_levels)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, padding=1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        temb = get_timestep_embedding(t.reshape(-1).expand(x.shape[0]), self.ch)
        temb = self.temb.dense[1](F.silu(self.temb.dense[0](temb)))
        hs = [self.conv_in(x)]
        for i_level, level in enumerate(self.down):
            for i_block in range(self.num_res_blocks):
                h = level.block[i_block](hs[-1], temb)
                if len(level.attn) > 0:
                    h = level.attn[i_block](h)
                hs.append(h)
            if i_level != self.num_resolutions - 1:
                hs.append(level.downsample(hs[-1]))
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(hs[-1], temb)), temb)
        for i_level in reversed(range(self.num_resolutions)):
            level = self.up[i_level]
            for i_block in range(self.num_res_blocks + 1):
                h = level.block[i_block](torch.cat([h, hs.pop()], dim=1), temb)
                if len(level.attn) > 0:
                    h = level.attn[i_block](h)
            if i_level != 0:
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
