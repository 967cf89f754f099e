"""The ResShift Swin UNet (``UNetModelSwin``), checkpoint-compatible with the released models.

Topology (zsyOAOA/ResShift ``models/unet.py::UNetModelSwin``, ``models/swin_transformer.py``):

* guided-diffusion UNet: sinusoidal time embedding → MLP (4·C), ResBlocks with GroupNorm32,
  SiLU and FiLM scale-shift (``h = norm(h)·(1+scale) + shift``), stride-2 conv downsampling,
  nearest + conv upsampling, skip concatenation, output GroupNorm → SiLU → conv3×3;
* a Swin ``BasicLayer`` (1×1-conv patch embed → ``swin_depth`` blocks alternating W-MSA and
  SW-MSA (shift = window/2) → 1×1-conv un-embed, no residual around the layer) after the *first*
  ResBlock of every level listed in ``attention_resolutions`` (both encoder and decoder) and in
  the middle block. Swin blocks run on NCHW with GroupNorm32 as ``norm1``/``norm2`` and a 1×1-conv
  MLP (timm ``ConvMlp``); attention has a learned relative-position bias;
* LQ conditioning: the pixel-space LQ (+ mask channel for inpainting) goes through
  ``feature_extractor`` (Identity when ``lq_size == image_size``; otherwise
  log2(lq_size/image_size) × [conv3×3 → SiLU → stride-2 conv], 16→32→64… channels) and is
  concatenated to the (scaled) ``x_t``.

The shifted-window attention mask replicates the official ``calculate_mask`` *exactly*, quirk
included: it indexes an ``(1, 1, H, W)`` tensor as if it were ``(1, H, W, 1)``, so the region
labels vary along rows only and the window tokens are read transposed. The released checkpoints
store that mask as a buffer and were trained with it; ``mask_mode="swin"`` gives the textbook
Swin mask for models trained from scratch.

The guided-diffusion parts (``ResBlock``, ``Downsample``, ``Upsample``, ``normalization``,
``timestep_embedding``, ``TimestepEmbedSequential``, the skip-connected pass) are
:mod:`lit_restore.nn.blocks`' guided-diffusion family, shared with :class:`~lit_restore.nn.ADMUNet`;
both networks follow openai/guided-diffusion ``unet.py``, so their parameter names coincide.
Released checkpoints are read by :func:`lit_restore.checkpoints.read_state_dict`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import ConvMlp, DropPath, trunc_normal_
from timm.models.swin_transformer import window_partition, window_reverse
from torch import Tensor, nn

# The guided-diffusion blocks are shared with the ADM UNet (same classes, same parameter names).
from lit_restore.nn.blocks import (
    Downsample,
    ResBlock,
    TimestepEmbedSequential,
    Upsample,
    normalization,
    timestep_embedding,
    unet_trunk,
)


# ------------------------------------------------------------------- Swin parts
def relative_position_index(ws: int) -> Tensor:
    """Index into the (2ws-1)^2 bias table for every pair of tokens of a ws×ws window."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij"))
    flat = coords.flatten(1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[..., 0] * (2 * ws - 1) + rel[..., 1]


def shifted_window_mask(h: int, w: int, ws: int, shift: int, mode: str = "resshift") -> Tensor:
    """Additive mask ``[nW, ws², ws²]`` (0 / -100) for SW-MSA on an ``h×w`` map.

    ``mode="swin"``: the Swin paper's mask (3×3 regions of the cyclically shifted map).
    ``mode="resshift"``: bit-compatible with the released ResShift models (see module doc):
    region labels 0/1/2 over rows ``[0, h-ws)``, ``[h-ws, h-shift)``, ``[h-shift, h)`` and the
    window's token grid read transposed.
    """
    bounds = lambda n: (0, n - ws, n - shift, n)  # noqa: E731
    label = torch.zeros(h, w)
    if mode == "swin":
        cnt = 0
        rb, cb = bounds(h), bounds(w)
        for i in range(3):
            for j in range(3):
                label[rb[i] : rb[i + 1], cb[j] : cb[j + 1]] = cnt
                cnt += 1
        windows = window_partition(label[None, :, :, None], (ws, ws))[..., 0]
    elif mode == "resshift":
        rb = bounds(h)
        for i in range(3):
            label[rb[i] : rb[i + 1], :] = i
        windows = window_partition(label[None, :, :, None], (ws, ws))[..., 0].transpose(1, 2)
    else:
        raise ValueError(f"mask_mode={mode!r}: use 'resshift' (released checkpoints) or 'swin'")
    flat = windows.reshape(-1, ws * ws)
    diff = flat[:, None, :] - flat[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a relative-position bias (Swin eq. 4)."""

    def __init__(self, dim: int, window_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads)
        )
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, -1).permute(2, 0, 1).to(q.dtype)[None]  # 1, heads, N, N
        if mask is not None:
            nw = mask.shape[0]
            bias = (bias + mask.to(q.dtype)[:, None]).repeat(bw // nw, 1, 1, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class SwinBlock(nn.Module):
    """Swin block on NCHW: x + W-MSA(GN(x)); x + MLP(GN(x)) (shift for odd blocks)."""

    def __init__(
        self,
        dim: int,
        resolution: int,
        num_heads: int,
        window_size: int,
        shift: int,
        mlp_ratio: float,
        drop_path: float = 0.0,
        mask_mode: str = "resshift",
    ) -> None:
        super().__init__()
        if resolution <= window_size:  # the window covers the map: no partition, no shift
            shift, window_size = 0, resolution
        self.resolution, self.window_size, self.shift, self.mask_mode = (
            resolution,
            window_size,
            shift,
            mask_mode,
        )
        self.norm1 = normalization(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = normalization(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        mask = (
            shifted_window_mask(resolution, resolution, window_size, shift, mask_mode)
            if shift > 0
            else None
        )
        self.register_buffer("attn_mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        _, c, h, w = x.shape
        ws = self.window_size
        if h % ws or w % ws:
            raise ValueError(
                f"Swin feature map {h}×{w} is not a multiple of window_size {ws}; pad the input "
                "to a multiple of window_size · 2^(levels-1) (the sampler's padding_offset)."
            )
        shortcut = x
        x = self.norm1(x)
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(2, 3))
        windows = window_partition(x.permute(0, 2, 3, 1), (ws, ws)).view(-1, ws * ws, c)
        mask = None
        if self.shift:
            if (h, w) == (self.resolution, self.resolution) and self.attn_mask is not None:
                mask = self.attn_mask
            else:
                mask = shifted_window_mask(h, w, ws, self.shift, self.mask_mode).to(x.device)
        windows = self.attn(windows, mask).view(-1, ws, ws, c)
        x = window_reverse(windows, (ws, ws), h, w).permute(0, 3, 1, 2)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(2, 3))
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class _Proj(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class SwinLayer(nn.Module):
    """Swin ``BasicLayer``: 1×1 embed ch→embed_dim, ``depth`` blocks, 1×1 un-embed back."""

    def __init__(
        self,
        channels: int,
        embed_dim: int,
        num_heads: int,
        window_size: int,
        depth: int,
        resolution: int,
        mlp_ratio: float,
        mask_mode: str = "resshift",
    ) -> None:
        super().__init__()
        self.patch_embed = _Proj(channels, embed_dim)
        self.patch_unembed = _Proj(embed_dim, channels)
        self.blocks = nn.ModuleList(
            SwinBlock(
                embed_dim,
                resolution,
                num_heads,
                window_size,
                0 if i % 2 == 0 else window_size // 2,
                mlp_ratio,
                mask_mode=mask_mode,
            )
            for i in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        for blk in self.blocks:
            x = blk(x)
        return self.patch_unembed(x)


# -------------------------------------------------------------------- the UNet
class SwinUNet(nn.Module):
    """``UNetModelSwin`` predicting x0 from ``(x_t scaled, t, lq[, mask])``.

    Args (official flag names; defaults = the released RealSR×4 v3 model):
        image_size: latent (or pixel) side the Swin masks are built for (64).
        in_channels: channels of x_t (3). The LQ channels are added to the first conv.
        model_channels, out_channels, channel_mult, num_res_blocks, attention_resolutions:
            the UNet widths/depths; ``attention_resolutions`` are feature-map sides (64,32,16,8).
        num_head_channels: Swin head width (heads = swin_embed_dim // num_head_channels).
        swin_depth, swin_embed_dim, window_size, mlp_ratio: Swin layers.
        cond_lq: concatenate the LQ image; lq_size: its side (a feature extractor downsamples it
            to ``image_size`` when larger); lq_channels: its channels (3); cond_mask: add a mask
            channel (inpainting).
        mask_mode: shifted-window mask flavour, see :func:`shifted_window_mask`.
        norm_groups: groups of every GroupNorm (official: 32). Not in the official model: with
            ``model_channels=32`` GroupNorm(32) is an instance norm, so the output block cannot
            carry an image's per-channel mean (its colour/DC) and a tiny net spends its capacity
            on recovering it; fewer groups (e.g. 8) fix that. Weights/state-dict keys unchanged.
    """

    def __init__(
        self,
        image_size: int = 64,
        in_channels: int = 3,
        model_channels: int = 160,
        out_channels: int = 3,
        channel_mult: Sequence[int] = (1, 2, 2, 4),
        num_res_blocks: int | Sequence[int] = (2, 2, 2, 2),
        attention_resolutions: Sequence[int] = (64, 32, 16, 8),
        dropout: float = 0.0,
        num_head_channels: int = 32,
        use_scale_shift_norm: bool = True,
        swin_depth: int = 2,
        swin_embed_dim: int = 192,
        window_size: int = 8,
        mlp_ratio: float = 4.0,
        cond_lq: bool = True,
        cond_mask: bool = False,
        lq_size: int = 64,
        lq_channels: int = 3,
        mask_mode: str = "resshift",
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        nrb = (
            [num_res_blocks] * len(channel_mult)
            if isinstance(num_res_blocks, int)
            else list(num_res_blocks)
        )
        if len(nrb) != len(channel_mult):
            raise ValueError("num_res_blocks must be an int or have one entry per channel_mult")
        if swin_embed_dim % num_head_channels:
            raise ValueError("swin_embed_dim must be divisible by num_head_channels")
        self.image_size, self.model_channels = image_size, model_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.cond_lq, self.cond_mask, self.lq_size = cond_lq, cond_mask, lq_size
        self.num_levels = len(channel_mult)
        self.window_size = window_size
        heads = swin_embed_dim // num_head_channels
        emb_dim = 4 * model_channels
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )

        def res(ch: int, out: int) -> ResBlock:
            return ResBlock(ch, emb_dim, dropout, out, use_scale_shift_norm)

        def swin(ch: int, side: int) -> SwinLayer:
            return SwinLayer(
                ch, swin_embed_dim, heads, window_size, swin_depth, side, mlp_ratio, mask_mode
            )

        cond_ch = 0
        if cond_lq:
            feat_in = lq_channels + (1 if cond_mask else 0)
            if lq_size == image_size:
                self.feature_extractor: nn.Module = nn.Identity()
                cond_ch = feat_in
            else:
                n_down = round(math.log2(lq_size / image_size))
                if n_down < 1 or image_size * 2**n_down != lq_size:
                    raise ValueError(f"lq_size {lq_size} must be image_size {image_size} · 2^k")
                layers: list[nn.Module] = []
                ch_f = 16
                for _ in range(n_down):
                    layers += [nn.Conv2d(feat_in, ch_f, 3, padding=1), nn.SiLU()]
                    layers.append(Downsample(ch_f, True, 2 * ch_f))
                    ch_f *= 2
                    feat_in = ch_f
                self.feature_extractor = nn.Sequential(*layers)
                cond_ch = ch_f

        ch = model_channels * channel_mult[0]
        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(nn.Conv2d(in_channels + cond_ch, ch, 3, padding=1))]
        )
        chans = [ch]
        ds = image_size
        for level, mult in enumerate(channel_mult):
            for j in range(nrb[level]):
                layers = [res(ch, model_channels * mult)]
                ch = model_channels * mult
                if ds in attention_resolutions and j == 0:
                    layers.append(swin(ch, ds))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch, True)))
                chans.append(ch)
                ds //= 2
        self.middle_block = TimestepEmbedSequential(res(ch, ch), swin(ch, ds), res(ch, ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(nrb[level] + 1):
                ich = chans.pop()
                layers = [res(ch + ich, model_channels * mult)]
                ch = model_channels * mult
                if ds in attention_resolutions and i == 0:
                    layers.append(swin(ch, ds))
                if level and i == nrb[level]:
                    layers.append(Upsample(ch, True))
                    ds *= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(
            normalization(ch),
            nn.SiLU(),
            nn.Conv2d(model_channels * channel_mult[0], out_channels, 3, padding=1),
        )
        if norm_groups != 32:
            for m in self.modules():
                if isinstance(m, nn.GroupNorm):
                    if norm_groups < 1 or m.num_channels % norm_groups:
                        raise ValueError(
                            f"norm_groups={norm_groups} must divide every normalised width "
                            f"(got {m.num_channels} channels)"
                        )
                    m.num_groups = norm_groups

    @property
    def size_multiple(self) -> int:
        """Spatial sides must be a multiple of this (downsampling × window)."""
        return 2 ** (self.num_levels - 1) * self.window_size

    def forward(
        self, x: Tensor, timesteps: Tensor, lq: Tensor | None = None, mask: Tensor | None = None
    ) -> Tensor:
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(x.dtype))
        if self.cond_lq:
            if lq is None:
                raise ValueError("this SwinUNet is LQ-conditioned (cond_lq=True): pass lq=")
            if self.cond_mask:
                if mask is None:
                    raise ValueError("this SwinUNet has cond_mask=True: pass mask=")
                lq = torch.cat([lq, mask.to(lq.dtype)], dim=1)
            x = torch.cat([x, self.feature_extractor(lq.to(x.dtype))], dim=1)
        h = unet_trunk(x, emb, self.input_blocks, self.middle_block, self.output_blocks)
        return self.out(h)


__all__ = [
    "SwinBlock",
    "SwinLayer",
    "SwinUNet",
    "WindowAttention",
    "relative_position_index",
    "shifted_window_mask",
]
