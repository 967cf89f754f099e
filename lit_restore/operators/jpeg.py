"""JPEG compression as a differentiable (nonlinear) operator: ``y = JPEG_q(x)``.

The baseline JPEG pipeline of ITU-T T.81 as the IJG's libjpeg runs it (what PIL and torchvision
call), written in differentiable tensor operations, after Shin & Song, "JPEG-resistant adversarial
images" (NeurIPS 2017 workshop; the "DiffJPEG" also in XPixelGroup/BasicSR
``basicsr/utils/diffjpeg.py``), with libjpeg's chroma upsampling:

1. RGB → YCbCr (JFIF, full range: T.871 §7), values in [0, 255];
2. edge-replicate to whole MCUs (8 px, 16 px with subsampling), as libjpeg pads;
3. chroma 4:2:0: 2×2 means of Cb, Cr (libjpeg ``jcsample.c::h2v2_downsample``);
4. per 8×8 block: level shift −128, orthonormal 2-D DCT-II (T.81 A.3.3), quantise ``round(F/Q)``
   with the Annex K tables scaled by the IJG quality rule (``jcparam.c::jpeg_quality_scaling``:
   ``s = 5000/q`` below 50, ``200 − 2q`` above; ``Q = clip(⌊(T·s + 50)/100⌋, 1, 255)``),
   dequantise ``F̂ = Q·round(F/Q)``, inverse DCT, +128;
5. chroma upsampling by libjpeg's default "fancy" triangle filter (``jdsample.c::
   h2v2_fancy_upsample``: weights ¾, ¼ per axis, edges replicated);
6. YCbCr → RGB, crop, clip to [0, 255].

**Rounding** (step 4), the only non-differentiable step: ``"ste"`` (default) rounds exactly in the
forward pass and passes gradients straight through (Bengio et al. 2013), so ``A`` *is* JPEG and a
real JPEG file is a valid measurement; ``"cubic"`` is Shin & Song's ``round(u) + (u − round(u))³``
(BasicSR ``diff_round``), whose value differs from rounding by up to ⅛ of a quantisation step.

**Against libjpeg** (PIL, tests/test_nonlinear_operators.py): on 8-bit inputs our output stays
within a few levels of PIL's decoded file; the remaining differences are libjpeg's integer DCT
(``JDCT_ISLOW``), its integer colour conversion and subsampling, and the 8-bit rounding of every
intermediate plane, which this float pipeline does not reproduce. The test states the measured
bound.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_restore.operators.base import Operator

#: ITU-T T.81 Annex K, Table K.1 (luminance) and K.2 (chrominance), row-major.
LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
CHROMA_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
)
ROUNDINGS = ("ste", "cubic")


def quantization_table(table: tuple[tuple[int, ...], ...], quality: int) -> Tensor:
    """An Annex K table scaled to ``quality`` ∈ [1, 100] by the IJG rule (module docstring)."""
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality={quality} must be in [1, 100]")
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    t = torch.tensor(table, dtype=torch.float64)
    return torch.floor((t * scale + 50) / 100).clamp(1, 255).float()


def dct_matrix(n: int = 8) -> Tensor:
    """The orthonormal DCT-II matrix ``C`` (``F = C f Cᵀ`` per block; T.81 A.3.3 for n = 8)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    c = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    c[0] /= math.sqrt(2)
    return c.float()


def rgb_to_ycbcr(rgb: Tensor) -> Tensor:
    """JFIF full-range YCbCr of ``[B, 3, H, W]`` RGB in [0, 255] (ITU-T T.871 §7)."""
    r, g, b = rgb.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    return torch.stack([y, cb, cr], 1)


def ycbcr_to_rgb(ycc: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (T.871 §7)."""
    y, cb, cr = ycc[:, 0], ycc[:, 1] - 128, ycc[:, 2] - 128
    return torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)


def fancy_upsample2(c: Tensor) -> Tensor:
    """×2 upsampling per axis with libjpeg's triangle filter: output sample 2i is ¾·c[i] + ¼·c[i−1],
    2i+1 is ¾·c[i] + ¼·c[i+1], edges replicated (``jdsample.c::h2v2_fancy_upsample``)."""

    def along(x: Tensor, dim: int) -> Tensor:
        dim %= x.dim()
        n = x.shape[dim]
        prev = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
        nxt = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
        even, odd = 0.75 * x + 0.25 * prev, 0.75 * x + 0.25 * nxt
        return torch.stack([even, odd], dim + 1).flatten(dim, dim + 1)

    return along(along(c, -2), -1)


class JPEG(Operator):
    """JPEG compression at ``quality`` (module docstring); images in model space [-1, 1].

    Args:
        quality: IJG quality 1–100 (DPS-style JPEG restoration uses 5–20).
        subsampling: chroma 4:2:0 (libjpeg's and PIL's default) or 4:4:4 (``False``).
        rounding: ``"ste"`` (exact forward, straight-through gradient) or ``"cubic"`` (DiffJPEG).
    """

    def __init__(self, quality: int = 10, subsampling: bool = True, rounding: str = "ste") -> None:
        super().__init__()
        if rounding not in ROUNDINGS:
            raise ValueError(f"JPEG rounding={rounding!r}: use one of {ROUNDINGS}")
        self.quality = int(quality)
        self.subsampling = bool(subsampling)
        self.rounding = rounding
        self.register_buffer("q_luma", quantization_table(LUMA_TABLE, self.quality))
        self.register_buffer("q_chroma", quantization_table(CHROMA_TABLE, self.quality))
        self.register_buffer("dct", dct_matrix(8))

    def _round(self, u: Tensor) -> Tensor:
        r = torch.round(u)
        if self.rounding == "cubic":
            return r.detach() + (u - r.detach()) ** 3
        return u + (r - u).detach()

    def _codec(self, plane: Tensor, q: Tensor) -> Tensor:
        """DCT, quantise, dequantise, inverse DCT of ``[B, H, W]`` planes (H, W multiples of 8)."""
        b, h, w = plane.shape
        blocks = (plane - 128).reshape(b, h // 8, 8, w // 8, 8).transpose(2, 3)
        c = self.dct
        coef = c @ blocks @ c.T
        coef = self._round(coef / q) * q
        out = (c.T @ coef @ c).transpose(2, 3).reshape(b, h, w)
        return out + 128

    def A(self, x: Tensor) -> Tensor:
        if x.shape[1] != 3:
            raise ValueError(f"JPEG acts on RGB images, got {x.shape[1]} channels")
        h, w = x.shape[-2:]
        mcu = 16 if self.subsampling else 8
        ycc = rgb_to_ycbcr((x.clamp(-1, 1) + 1) * 127.5)
        ycc = F.pad(ycc, (0, (-w) % mcu, 0, (-h) % mcu), mode="replicate")
        y = self._codec(ycc[:, 0], self.q_luma)
        chroma = ycc[:, 1:]
        if self.subsampling:
            chroma = F.avg_pool2d(chroma, 2)
        cb = self._codec(chroma[:, 0], self.q_chroma)
        cr = self._codec(chroma[:, 1], self.q_chroma)
        chroma = torch.stack([cb, cr], 1)
        if self.subsampling:
            chroma = fancy_upsample2(chroma)
        rgb = ycbcr_to_rgb(torch.cat([y[:, None], chroma], 1))[..., :h, :w]
        return rgb.clamp(0, 255) / 127.5 - 1

    def image_shape_for(self, y: Tensor) -> tuple[int, ...]:
        return tuple(y.shape)

    def extra_repr(self) -> str:
        return f"quality={self.quality}, subsampling={self.subsampling}, rounding={self.rounding!r}"
