"""The ADM UNet of "Diffusion Models Beat GANs" (Dhariwal & Nichol 2021), written for lit_restore.

The constructor takes the public guided-diffusion flag names (``image_size``, ``num_channels``,
``num_res_blocks``, ``channel_mult``, ``attention_resolutions`` …) and the module tree reproduces
the parameter names and shapes of the released checkpoints (``256x256_diffusion_uncond.pt``,
DPS ``ffhq_10m.pt``; manifests in ``tests/data/reference/adm_*.keys.json``), so those files
load strictly. Structure (openai/guided-diffusion ``guided_diffusion/unet.py``, read for facts):

* ``time_embed``: sinusoidal embedding of t (``[cos, sin]`` halves, max period 10⁴) → Linear →
  SiLU → Linear, width ``4·num_channels``.
* ``input_blocks``: a 3×3 conv, then per level ``num_res_blocks`` × (ResBlock [+ attention when
  the downsampling factor ``ds`` is in ``attention_resolutions``]) and, except at the last level,
  a downsampler (a ResBlock with ``down=True`` when ``resblock_updown`` else a stride-2 conv
  ``op``).
* ``middle_block``: ResBlock, attention, ResBlock.
* ``output_blocks``: mirror with ``num_res_blocks + 1`` ResBlocks per level fed the concatenated
  skip, attention, and an upsampler at the end of each level but the first.
* ``out``: GroupNorm → SiLU → 3×3 conv to ``3`` (or ``6`` with ``learn_sigma``) channels.

The ResBlock, resamplers, GroupNorm32 and time embedding are :mod:`lit_restore.nn.blocks`'
guided-diffusion family (shared with the Swin UNet); the attention block is ADM's own.
Attention uses ``torch.nn.functional.scaled_dot_product_attention``; the *legacy* channel order
(heads split before q/k/v, ``QKVAttentionLegacy``) and the *new* order (q/k/v split first,
``use_new_attention_order``) differ numerically for the same weights, so both are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as grad_checkpoint

from lit_restore.nn.blocks import (
    Downsample,
    ResBlock,
    TimestepEmbedSequential,
    Upsample,
    normalization,
    timestep_embedding,
    unet_trunk,
    zero_module,
)

DEFAULT_CHANNEL_MULT = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
    32: (1, 2, 2, 2),
}


def parse_channel_mult(channel_mult: str | Sequence[float] | None, image_size: int) -> tuple:
    """``""``/``None`` → guided-diffusion's default for the image size; ``"1,2,2"`` → (1, 2, 2)."""
    if channel_mult is None or channel_mult == "":
        if image_size not in DEFAULT_CHANNEL_MULT:
            raise ValueError(
                f"no default channel_mult for image_size {image_size}; pass channel_mult explicitly "
                f"(e.g. channel_mult: '1,2,2'); defaults exist for {sorted(DEFAULT_CHANNEL_MULT)}"
            )
        return DEFAULT_CHANNEL_MULT[image_size]
    if isinstance(channel_mult, (int, float)):  # a one-level "1" parsed as a number by YAML
        return (channel_mult,)
    if isinstance(channel_mult, str):
        return tuple(float(m) if "." in m else int(m) for m in channel_mult.split(","))
    return tuple(channel_mult)


def parse_attention_resolutions(
    attention_resolutions: str | Sequence[int], image_size: int
) -> set[int]:
    """Resolutions (``"32,16,8"``) → downsampling factors ``image_size // res`` (guided-diffusion
    ``script_util.create_model``)."""
    if isinstance(attention_resolutions, int):  # "16" parsed as a number by YAML / the CLI
        res = [attention_resolutions]
    elif isinstance(attention_resolutions, str):
        res = [int(r) for r in attention_resolutions.split(",") if r.strip()]
    else:
        res = [int(r) for r in attention_resolutions]
    return {image_size // r for r in res}


class AttentionBlock(nn.Module):
    """Spatial self-attention: ``norm`` → 1-D conv ``qkv`` → attention → 1-D conv ``proj_out``.

    Legacy order (``QKVAttentionLegacy``): the 3C qkv channels are read as ``[head][q|k|v][ch]``;
    new order (``QKVAttention``): ``[q|k|v][head][ch]``. Scale 1/√ch either way.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int = 1,
        num_head_channels: int = -1,
        use_checkpoint: bool = False,
        use_new_attention_order: bool = False,
    ) -> None:
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        else:
            if channels % num_head_channels:
                raise ValueError(
                    f"channels {channels} not divisible by num_head_channels {num_head_channels}"
                )
            self.num_heads = channels // num_head_channels
        self.use_checkpoint = use_checkpoint
        self.new_order = use_new_attention_order
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        if self.use_checkpoint and self.training and torch.is_grad_enabled():
            return grad_checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def _forward(self, x: Tensor) -> Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))  # [B, 3C, L]
        length, heads, ch = qkv.shape[-1], self.num_heads, c // self.num_heads
        # one copy to [B, L, 3C] makes the per-head channel axis contiguous, so q/k/v reach
        # SDPA with stride 1 in their last dimension, which its fused kernels (flash /
        # memory-efficient / CPU flash) require; strided views would fall back to the math
        # kernel and store the whole L×L matrix.
        qkv = qkv.transpose(1, 2).contiguous()
        if self.new_order:
            qkv = qkv.reshape(b, length, 3, heads, ch).permute(2, 0, 3, 1, 4)
        else:
            qkv = qkv.reshape(b, length, heads, 3, ch).permute(3, 0, 2, 1, 4)
        q, k, v = qkv.unbind(0)  # each [B, heads, L, ch], last dimension contiguous
        h = F.scaled_dot_product_attention(q, k, v)  # [B, heads, L, ch]
        h = h.permute(0, 1, 3, 2).reshape(b, c, length)
        return (x + self.proj_out(h)).reshape(b, c, *spatial)


class ADMUNet(nn.Module):
    """The guided-diffusion UNet, built from its public flags.

    Args:
        image_size: training resolution (sets the default ``channel_mult`` and the attention
            factors).
        num_channels: base width (``model_channels``).
        num_res_blocks: ResBlocks per level in the encoder (decoder gets one more).
        channel_mult: ``""`` (default per image size), a string ``"1,2,2"`` or a sequence.
        attention_resolutions: resolutions (``"32,16,8"``) at which attention is applied.
        num_heads, num_head_channels, num_heads_upsample: attention heads (``num_head_channels``
            wins when ≠ -1; ``num_heads_upsample`` -1 → ``num_heads``).
        learn_sigma: output 2× channels (ε and the variance interpolation v).
        use_scale_shift_norm: FiLM conditioning on the time embedding.
        resblock_updown: down/upsample with ResBlocks instead of convs.
        use_new_attention_order: q/k/v split before heads.
        class_cond, num_classes: class-conditional (``label_emb``).
        dropout: dropout in ResBlocks.
        use_checkpoint: gradient checkpointing in training.
        use_fp16: run the torso in float16 (shorthand for ``dtype="float16"``).
        dtype: torso convolution dtype (``float32``, ``float16``, ``bfloat16``); the time
            embedding MLPs, GroupNorms and the output head stay float32.
        in_channels, out_channels: image channels (3).
    """

    def __init__(
        self,
        image_size: int = 256,
        num_channels: int = 128,
        num_res_blocks: int = 2,
        channel_mult: str | Sequence[float] | None = "",
        attention_resolutions: str | Sequence[int] = "16,8",
        num_heads: int = 4,
        num_head_channels: int = -1,
        num_heads_upsample: int = -1,
        learn_sigma: bool = False,
        use_scale_shift_norm: bool = True,
        resblock_updown: bool = False,
        use_new_attention_order: bool = False,
        class_cond: bool = False,
        num_classes: int = 1000,
        dropout: float = 0.0,
        use_checkpoint: bool = False,
        use_fp16: bool = False,
        dtype: str | torch.dtype | None = None,
        in_channels: int = 3,
        out_channels: int = 3,
        conv_resample: bool = True,
    ) -> None:
        super().__init__()
        mult = parse_channel_mult(channel_mult, image_size)
        attn_ds = parse_attention_resolutions(attention_resolutions, image_size)
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads
        self.image_size = image_size
        self.in_channels = in_channels
        self.out_channels = out_channels * (2 if learn_sigma else 1)
        self.model_channels = num_channels
        self.num_classes = num_classes if class_cond else None
        self.learn_sigma = learn_sigma
        emb_dim = num_channels * 4
        self.time_embed = nn.Sequential(
            nn.Linear(num_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        if class_cond:
            self.label_emb = nn.Embedding(num_classes, emb_dim)

        def res(ch: int, out: int, **kw) -> ResBlock:
            return ResBlock(ch, emb_dim, dropout, out, use_scale_shift_norm, use_checkpoint, **kw)

        def attn(ch: int, heads: int) -> AttentionBlock:
            return AttentionBlock(
                ch, heads, num_head_channels, use_checkpoint, use_new_attention_order
            )

        ch = input_ch = int(mult[0] * num_channels)
        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))]
        )
        skip_chans = [ch]
        ds = 1
        for level, m in enumerate(mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(m * num_channels))]
                ch = int(m * num_channels)
                if ds in attn_ds:
                    layers.append(attn(ch, num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(mult) - 1:
                down = (
                    res(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample, ch)
                )
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_chans.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(res(ch, ch), attn(ch, num_heads), res(ch, ch))
        self.output_blocks = nn.ModuleList([])
        for level, m in list(enumerate(mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_chans.pop(), int(num_channels * m))]
                ch = int(num_channels * m)
                if ds in attn_ds:
                    layers.append(attn(ch, num_heads_upsample))
                if level and i == num_res_blocks:
                    layers.append(
                        res(ch, ch, up=True) if resblock_updown else Upsample(ch, conv_resample, ch)
                    )
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(
            normalization(ch),
            nn.SiLU(),
            zero_module(nn.Conv2d(input_ch, self.out_channels, 3, padding=1)),
        )
        self.torso_dtype = torch.float32
        self.set_dtype(torch.float16 if use_fp16 and dtype is None else dtype)

    def set_dtype(self, dtype: str | torch.dtype | None) -> ADMUNet:
        """Cast the torso's convolutions (input/middle/output blocks) to ``dtype``, as
        guided-diffusion's ``convert_to_fp16`` does; GroupNorms, the time-embedding MLPs and the
        output head stay float32 (GroupNorm32 computes in float32 anyway)."""
        if dtype is None:
            dtype = torch.float32
        if isinstance(dtype, str):
            names = {
                "float32": torch.float32,
                "fp32": torch.float32,
                "float16": torch.float16,
                "fp16": torch.float16,
                "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16,
            }
            if dtype not in names:
                raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(names)}")
            dtype = names[dtype]
        self.torso_dtype = dtype
        for part in (self.input_blocks, self.middle_block, self.output_blocks):
            for mod in part.modules():
                if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
                    mod.to(dtype)
        return self

    def forward(self, x: Tensor, timesteps: Tensor, y: Tensor | None = None) -> Tensor:
        """``x`` [B,C,H,W], ``timesteps`` [B] (original indices) → [B, out_channels, H, W]."""
        if (y is not None) != (self.num_classes is not None):
            raise ValueError("pass class labels y if and only if the model is class-conditional")
        emb = self.time_embed(
            timestep_embedding(timesteps.reshape(-1).expand(x.shape[0]), self.model_channels).to(
                self.time_embed[0].weight.dtype
            )
        )
        if y is not None:
            emb = emb + self.label_emb(y)
        # dtypes from the weights, so a model cast as a whole (.to(torch.bfloat16)) also works
        h = x.to(self.input_blocks[0][0].weight.dtype)
        h = unet_trunk(h, emb, self.input_blocks, self.middle_block, self.output_blocks)
        return self.out(h.to(self.out[2].weight.dtype)).to(x.dtype)
