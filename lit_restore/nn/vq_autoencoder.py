"""The LDM VQ-f4 autoencoder ResShift runs in (frozen), and a pixel-space stand-in.

Layout of CompVis latent-diffusion ``ldm/modules/diffusionmodules/model.py`` (Encoder/Decoder)
and ``ldm/models/autoencoder.py::VQModel`` as rewritten in zsyOAOA/ResShift
(``ldm/models/autoencoder.py::VQModelTorch``): ``encode(x) = quant_conv(E(x))`` — the latent
*before* quantisation — and ``decode(z) = D(post_quant_conv(Q(z)))`` with ``Q`` the nearest
codebook entry and a straight-through gradient (``ldm/modules/vqvae/quantize.py``,
VectorQuantizer2): ``z_q = z + sg(e_k - z)``, so gradients of a loss on the decoded image reach
the predicted latent (ResShift's LPIPS term relies on it).

The encoder/decoder blocks are :mod:`lit_restore.nn.blocks`' DDPM/LDM family (LDM's
``ResnetBlock`` with ``temb_channels=0``, i.e. no ``temb_proj``), the same classes as the DDIM
UNet's. :class:`PixelSpace` is the identity first stage with the same ``encode``/``decode``
interface, for running ResShift directly on pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_restore.checkpoints import load_state_dict_strict, read_state_dict
from lit_restore.nn.blocks import (
    DDPMDownsample,
    DDPMMidBlock,
    DDPMUpsample,
    Normalize,
    ResnetBlock,
    freeze,
)
from lit_restore.weights import resolve


def per_level(num_res_blocks: int | Sequence[int], levels: int) -> list[int]:
    """ResNet blocks per resolution level: one count for every level, or one count per level
    (ResShift's ``Encoder``/``Decoder`` accept both; its face VQ-f8 uses ``[1, 2, 3, 4]``)."""
    if isinstance(num_res_blocks, int):
        return [num_res_blocks] * levels
    counts = [int(n) for n in num_res_blocks]
    if len(counts) != levels:
        raise ValueError(
            f"num_res_blocks={list(num_res_blocks)} needs one count per level of "
            f"ch_mult ({levels} levels)"
        )
    return counts


class Encoder(nn.Module):
    def __init__(
        self, ch: int, ch_mult: Sequence[int], num_res_blocks: int | Sequence[int],
        in_channels: int, z_channels: int, dropout: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        cin = ch
        counts = per_level(num_res_blocks, len(ch_mult))
        for i, m in enumerate(ch_mult):
            level = nn.Module()
            blocks = []
            for _ in range(counts[i]):
                blocks.append(ResnetBlock(cin, ch * m, 0, dropout))
                cin = ch * m
            level.block = nn.ModuleList(blocks)
            level.attn = nn.ModuleList()
            if i != len(ch_mult) - 1:
                level.downsample = DDPMDownsample(cin, True)
            self.down.append(level)
        self.mid = DDPMMidBlock(cin, 0, dropout)
        self.norm_out = Normalize(cin)
        self.conv_out = nn.Conv2d(cin, z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for level in self.down:
            for blk in level.block:
                h = blk(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(
        self, ch: int, ch_mult: Sequence[int], num_res_blocks: int | Sequence[int], out_ch: int,
        z_channels: int, dropout: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        cin = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, cin, 3, padding=1)
        self.mid = DDPMMidBlock(cin, 0, dropout)
        ups: list[nn.Module] = []
        counts = per_level(num_res_blocks, len(ch_mult))
        for i in reversed(range(len(ch_mult))):
            level = nn.Module()
            blocks = []
            for _ in range(counts[i] + 1):
                blocks.append(ResnetBlock(cin, ch * ch_mult[i], 0, dropout))
                cin = ch * ch_mult[i]
            level.block = nn.ModuleList(blocks)
            level.attn = nn.ModuleList()
            if i != 0:
                level.upsample = DDPMUpsample(cin, True)
            ups.insert(0, level)  # keep LDM's indexing: up[0] is the full-resolution level
        self.up = nn.ModuleList(ups)
        self.norm_out = Normalize(cin)
        self.conv_out = nn.Conv2d(cin, out_ch, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            for blk in level.block:
                h = blk(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest codebook entry with a straight-through estimator (``z + sg(e - z)``)."""

    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    def indices(self, z: Tensor) -> Tensor:
        # float32 even under bf16 autocast: near-equidistant codes would otherwise swap
        with torch.autocast(z.device.type, enabled=False):
            flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).float()
            e = self.embedding.weight.float()
            d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t() + e.pow(2).sum(1)[None]
        return d.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])

    def forward(self, z: Tensor) -> Tensor:
        zq = self.embedding(self.indices(z)).permute(0, 3, 1, 2).to(z.dtype)
        return z + (zq - z).detach()


class VQModel(nn.Module):
    """LDM VQ autoencoder; defaults = ``autoencoder_vq_f4.pth`` (embed_dim 3, 8192 codes).

    ResShift's face model (``configs/faceir_gfpgan512_lpips.yaml``, ``ffhq512_vq_f8_dim8_face.pth``)
    is ``VQModel(**VQ_F8_FACE)``: VQ-f8 with 8 latent channels, 4096 codes and
    ``num_res_blocks`` per level (``[1, 2, 3, 4]``).
    """

    def __init__(
        self,
        embed_dim: int = 3,
        n_embed: int = 8192,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 2, 4),
        num_res_blocks: int | Sequence[int] = 2,
        in_channels: int = 3,
        out_ch: int = 3,
        z_channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.encoder = Encoder(ch, ch_mult, num_res_blocks, in_channels, z_channels, dropout)
        self.decoder = Decoder(ch, ch_mult, num_res_blocks, out_ch, z_channels, dropout)
        self.quantize = VectorQuantizer(n_embed, embed_dim)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self.downscale = 2 ** (len(ch_mult) - 1)
        self.latent_channels = embed_dim

    def encode(self, x: Tensor) -> Tensor:
        """Image in [-1,1] → latent before quantisation."""
        return self.quant_conv(self.encoder(x))

    def decode(self, z: Tensor, quantize: bool = True) -> Tensor:
        """Latent → image; quantises first (straight-through) like the official ``decode``."""
        if quantize:
            z = self.quantize(z)
        return self.decoder(self.post_quant_conv(z))

    @classmethod
    def from_pretrained(cls, path: str | Path = "resshift-vq-f4", **kwargs) -> VQModel:
        """Load ``autoencoder_vq_f4.pth`` strictly (``weights_only=True``) and freeze it.

        ``path`` is a file or a name of :mod:`lit_restore.weights` (``resshift-vq-f4``); the
        ``loss.*`` tensors (the VQGAN discriminator/LPIPS kept in the release) are dropped.
        """
        file = resolve(path, option="autoencoder")
        sd = {k: v for k, v in read_state_dict(file).items() if not k.startswith("loss.")}
        model = cls(**kwargs)
        load_state_dict_strict(model, sd, f"checkpoint {str(file)!r}")
        return freeze(model)


#: ResShift's face autoencoder (``configs/faceir_gfpgan512_lpips.yaml``, ``autoencoder.params``)
VQ_F8_FACE: dict = dict(
    embed_dim=8, n_embed=4096, ch=64, ch_mult=(1, 2, 4, 8), num_res_blocks=(1, 2, 3, 4),
    z_channels=8,
)  # fmt: skip


class PixelSpace(nn.Module):
    """Identity first stage: train/sample ResShift directly on pixels (small data, tests)."""

    downscale = 1
    latent_channels = 3

    def encode(self, x: Tensor) -> Tensor:
        return x

    def decode(self, z: Tensor, quantize: bool = True) -> Tensor:
        return z
