"""The "simple" DDPM/DDIM UNet (Ho et al. 2020, ported to PyTorch by pesser/pytorch_diffusion and
used by DDIM, SDEdit, DDRM, DDNM, DDPG and FDGR as ``models/diffusion.py::Model``), written for
lit_restore.

Its module tree reproduces the parameter names of SDEdit's ``celeba_hq.ckpt`` (manifest
``tests/data/reference/ddim_celebahq256.keys.json``): ``temb.dense.{0,1}``, ``conv_in``,
``down.{i}.block.{j}`` / ``down.{i}.attn.{j}`` / ``down.{i}.downsample.conv``, ``mid.block_1`` /
``mid.attn_1`` / ``mid.block_2``, ``up.{i}.block.{j}`` / ``up.{i}.attn.{j}`` /
``up.{i}.upsample.conv``, ``norm_out``, ``conv_out``. ResNet blocks use ``nin_shortcut`` (1×1)
when the width changes. Differences from the ADM UNet worth knowing (numerics): timestep
embedding ``[sin, cos]`` with frequencies ``10000^(-i/(half-1))``; GroupNorm eps 1e-6; swish;
the strided downsampling conv pads (0,1,0,1) asymmetrically and uses no padding itself;
attention is single-head with separate 1×1-conv q/k/v. The ResNet, attention and resampling
blocks are :mod:`lit_restore.nn.blocks`' DDPM/LDM family, shared with the VQ autoencoder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_restore.nn.blocks import (
    AttnBlock,
    DDPMDownsample,
    DDPMMidBlock,
    DDPMUpsample,
    Normalize,
    ResnetBlock,
)


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
                level.downsample = DDPMDownsample(block_in, resamp_with_conv)
                curr_res //= 2
            self.down.append(level)
        self.mid = DDPMMidBlock(block_in, self.temb_ch, dropout)
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
                level.upsample = DDPMUpsample(block_in, resamp_with_conv)
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
        h = self.mid(hs[-1], temb)
        for i_level in reversed(range(self.num_resolutions)):
            level = self.up[i_level]
            for i_block in range(self.num_res_blocks + 1):
                h = level.block[i_block](torch.cat([h, hs.pop()], dim=1), temb)
                if len(level.attn) > 0:
                    h = level.attn[i_block](h)
            if i_level != 0:
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))
