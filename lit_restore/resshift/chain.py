"""The ResShift chain: T posterior steps from ``x_T = y + κ√η_T ε`` to the HQ estimate.

Follows zsyOAOA/ResShift ``sampler.py`` / ``models/gaussian_diffusion.py``
(``p_sample_loop_progressive``): the LQ is bicubic-upsampled by ``sf`` and encoded, the chain
runs ``t = T-1 … 0`` with the x0-predicting network, and the last latent is decoded and clamped.

:meth:`ResShiftChain.condition` is the one place where the LQ input becomes what the network is
conditioned on (inpainting: missing pixels set to −1; bicubic ×sf upsampling; encoding to ``z_y``;
the LQ at the network's ``lq_size``; the mask channel): training
(:class:`~lit_restore.modules.resshift.ResShiftModule`) and sampling both call it.

Sampling modes (``mode``):

* ``"posterior"`` (default): ResShift's stochastic chain, the exact posterior at every step;
* ``"ode"``: the deterministic sampling of SinSR (Wang et al., CVPR 2024; wyf0912/SinSR
  ``models/gaussian_diffusion.py::ddim_sample_loop``): the same T network calls, each step
  :meth:`~lit_restore.resshift.schedule.ResShiftSchedule.ode_step` — a map from ``x_T`` (and
  the LQ) to the output, the teacher's target in SinSR's distillation;
* ``"one_step"``: one network call at ``t = T`` on ``x_T``, its x̂0 is the output (SinSR
  ``p_sample_loop_progressive(one_step=True)``, the distilled student's inference).

``x_T`` comes from the first ``C`` channels of the noise field in every mode, so the three modes
start from the same ``x_T`` for the same seed.

Additions over the official loop:

* per-image noise: every random draw of image ``index`` comes from its own generator, and the
  noise is a *field over the whole (padded) latent image* — one ``[(T+1)·C, H, W]`` draw per
  image — so tiles read the same noise where they overlap and the result does not depend on the
  tiling or on batch mates;
* tiled inference with a smooth (raised-cosine, :mod:`lit_restore.tiling`) blending window
  instead of the official uniform average; the last tile ends flush with the border;
* ``chop_size="auto"``: tiles chosen so the cost per pixel stays flat with the image size
  (:func:`auto_chop_size`). The Swin UNet is local (windowed attention, convolutions), but the
  VQ autoencoder's mid block attends globally over the whole latent, so its cost per pixel grows
  with the number of latent pixels N: ``a + b·N``. Tiles bound N at the price of recomputing
  the overlaps; ``auto`` picks whichever of "untiled" and every admissible tile side has the
  lowest modelled cost per output pixel.

Tiling modes (``tiling``):

* ``"cosine"`` (default): reflect-pad the LQ to ``padding_offset``, tile the *padded* LQ when a
  padded side exceeds ``chop_size``, slice every tile's noise from the one field, blend tiles
  with a raised-cosine window (no seams where the tile count changes);
* ``"uniform"``: the same with the plain average;
* ``"official"``: ResShift's own (``sampler.py::ResShiftSampler.inference`` L186-205 with
  ``utils/util_image.py::ImageSpliterTh``): decide to tile on the *unpadded* LQ size, cut tiles
  from the unpadded LQ, reflect-pad each tile to ``padding_offset`` (``sample_func``), draw
  fresh noise per tile, and average the tiles uniformly. A 40×40 LQ with ``chop_size`` 16,
  overlap 8 and offset 16 is tiled at {0, 8, 16, 24} here, at {0, 8, 16, 24, 32} of the padded
  48×48 in the other modes. Use it to reproduce the released models' published numbers.

Both tile grids start at 0 every ``chop_size − chop_overlap`` and end with a tile flush with the
border; ``ImageSpliterTh.extract_starts`` (clip to ``L − chop`` and de-duplicate) gives the same
set.

Colour fixes and pasting the known pixels back (``mask_back``) are generic post-processing
(:mod:`lit_restore.postprocess`), applied by the module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_restore.nn.blocks import AttnBlock
from lit_restore.resshift.schedule import ResShiftSchedule
from lit_restore.tiling import raised_cosine_window, tile_grid, tile_starts
from lit_restore.utils.seeding import NoiseFn, randn_per_image

#: tiling modes (module docstring)
TILINGS = ("cosine", "uniform", "official")
#: sampling modes (module docstring)
MODES = ("posterior", "ode", "one_step")


def _pad_to(x: Tensor, multiple: int) -> Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


#: Latent side at which the global attention of the VQ-f4 autoencoder's mid blocks costs as much
#: as the rest of a 4-step chain, per latent pixel. Measured with the released layouts (``VQModel()``
#: and ``SwinUNet()``, fused SDPA, float32, 1 CPU thread; ``bench/bench_resshift_scaling.py``):
#: VQ encode + decode 9.1 / 10.7 / 11.7 / 13.2 ms per latent pixel at sides 32 / 64 / 96 / 128,
#: i.e. a + b·side² with a = 8.8 ms and b = 2.7e-4 ms (attention share 5 / 9 / 15 / 21 %), plus
#: 4 × 0.93 ms for the UNet calls: √((8.8 + 3.7) / 2.7e-4) ≈ 215.
ATTENTION_EQUAL_SIDE = 215


def has_global_attention(module: nn.Module) -> bool:
    """Whether ``module`` holds a spatial self-attention over the whole feature map."""
    return any(isinstance(m, AttnBlock) for m in module.modules())


def tiled_cost(
    h: int, w: int, tile: int | None, overlap: int, latent_per_lq: float, equal_side: float
) -> float:
    """Modelled cost per output pixel (in units of the attention-free cost) of restoring an h×w
    LQ image in ``tile``-sided tiles (LQ px; ``None`` = untiled), tiled as :meth:`ResShiftChain.sample`
    tiles: a tile with N latent pixels costs ``1 + N / equal_side²`` per pixel it
    computes, and overlapping pixels are computed once per tile that holds them."""
    if tile is None:
        th, tw, n = h, w, 1
    else:
        th, tw = min(tile, h), min(tile, w)
        n = len(tile_starts(h, th, tile - overlap)) * len(tile_starts(w, tw, tile - overlap))
    tokens = th * tw * latent_per_lq**2
    return n * th * tw / (h * w) * (1.0 + tokens / equal_side**2)


def auto_chop_size(
    h: int, w: int, multiple: int, overlap: int, latent_per_lq: float, stride_multiple: int = 1
) -> int | None:
    """``chop_size="auto"``: the tile side (LQ px) with the lowest :func:`tiled_cost`, or
    ``None`` when not tiling is cheapest. Candidates are the multiples of ``multiple`` (the side
    the network and first stage accept) larger than ``overlap`` whose stride ``tile − overlap``
    is a multiple of ``stride_multiple`` (tiles must align with the latent grid)."""
    best = None
    best_cost = tiled_cost(h, w, None, overlap, latent_per_lq, ATTENTION_EQUAL_SIDE)
    for tile in range(multiple, max(h, w), multiple):
        if tile <= overlap or (tile - overlap) % stride_multiple:
            continue
        cost = tiled_cost(h, w, tile, overlap, latent_per_lq, ATTENTION_EQUAL_SIDE)
        if cost < best_cost:
            best, best_cost = tile, cost
    return best


@dataclass
class Condition:
    """What the network is conditioned on for one LQ batch (see :meth:`ResShiftChain.condition`)."""

    z_y: Tensor  #: the encoded bicubic-upsampled LQ, the chain's endpoint y
    lq: Tensor  #: the LQ at the size the network's ``lq`` input expects
    mask: Tensor | None  #: the network's mask input (1 = missing, in [-1, 1]) or None


class ResShiftChain(nn.Module):
    """Run the ResShift chain on LQ images (optionally in tiles).

    Args:
        schedule: the :class:`ResShiftSchedule` the network was trained with (fixed T).
        sf: scale factor LQ→HQ (4 for ×4 SR, 1 for inpainting/restoration).
        padding_offset: LQ side multiple the input is reflect-padded to (official: ``lq_size``;
            ``None`` = the smallest multiple the network and first stage accept).
        chop_size: tile side in LQ pixels; tiling starts when an LQ side exceeds it
            (``None`` = never tile; ``"auto"`` = :func:`auto_chop_size`, which tiles only
            when the first stage attends globally and tiles are cheaper per pixel).
        chop_overlap: overlap between tiles in LQ pixels (official defaults: 64/32/16 for
            chop sizes 512/256/64).
        chop_bs: tile positions per forward (each holds the whole batch).
        progress: tqdm bar over tiles.
        tiling: ``"cosine"`` (default), ``"uniform"`` or ``"official"`` (module docstring).
        mode: ``"posterior"`` (default), ``"ode"`` or ``"one_step"`` (module docstring).
    """

    def __init__(
        self,
        schedule: ResShiftSchedule,
        sf: int = 4,
        padding_offset: int | None = None,
        chop_size: int | str | None = None,
        chop_overlap: int = 16,
        chop_bs: int = 1,
        progress: bool = False,
        tiling: str = "cosine",
        mode: str = "posterior",
    ) -> None:
        super().__init__()
        if tiling not in TILINGS:
            raise ValueError(f"tiling={tiling!r}: use one of {TILINGS}")
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: use one of {MODES}")
        self.tiling, self.mode = tiling, mode
        if chop_size == "auto":
            if chop_overlap < 0:
                raise ValueError(f"chop_overlap={chop_overlap} must be >= 0")
        elif isinstance(chop_size, str):
            raise ValueError(f"chop_size={chop_size!r}: use an int (LQ pixels), 'auto' or null")
        elif chop_size is not None and not 0 <= chop_overlap < chop_size:
            raise ValueError(f"chop_overlap={chop_overlap} must be in [0, chop_size={chop_size})")
        self.schedule = schedule
        self.sf = sf
        self.padding_offset = padding_offset
        self.chop_size, self.chop_overlap, self.chop_bs = chop_size, chop_overlap, chop_bs
        self.progress = progress

    # -------------------------------------------------------------- pieces
    def upsample(self, lq: Tensor) -> Tensor:
        """Bicubic ×``sf`` upsampling of the LQ (official: ``F.interpolate``, bicubic)."""
        return F.interpolate(lq, scale_factor=self.sf, mode="bicubic") if self.sf != 1 else lq

    @staticmethod
    def masked_lq(lq: Tensor, mask: Tensor | None) -> Tensor:
        """The inpainting network input: missing pixels (``mask`` 0) set to −1 (black)."""
        return lq if mask is None else lq * mask - (1 - mask)

    def condition(
        self, network: nn.Module, first_stage: nn.Module, lq: Tensor, mask: Tensor | None = None
    ) -> Condition:
        """Everything the network is conditioned on for the LQ batch ``lq`` (``mask``: 1 = known).

        ``z_y = E(bicubic↑(lq))``; the LQ at the network's ``lq_size``/``image_size`` × latent
        size (the LQ itself or its upsampling when one has that size, else a bicubic resize);
        the mask as the network's extra channel (1 = missing, scaled to [-1, 1], official
        convention).
        """
        lq = self.masked_lq(lq, mask)
        y_up = self.upsample(lq)
        z_y = first_stage.encode(y_up)
        ratio = getattr(network, "lq_size", 1) / getattr(network, "image_size", 1)
        want = (round(z_y.shape[-2] * ratio), round(z_y.shape[-1] * ratio))
        cond = next((c for c in (lq, y_up) if tuple(c.shape[-2:]) == want), None)
        if cond is None:
            cond = F.interpolate(lq, size=want, mode="bicubic", align_corners=False)
        mask_c = None
        if mask is not None:
            mask_c = F.interpolate(1 - mask, size=cond.shape[-2:], mode="nearest") * 2 - 1
        return Condition(z_y=z_y, lq=cond, mask=mask_c)

    def _chain(
        self,
        network: nn.Module,
        first_stage: nn.Module,
        lq: Tensor,
        noise: Tensor,
        mask: Tensor | None,
        nfe: Callable[[int], None] | None,
    ) -> Tensor:
        """One (tile of a) batch: returns the decoded image in [-1, 1] at HQ size."""
        cond = self.condition(network, first_stage, lq, mask)
        x = self.reverse(network, cond, noise, nfe)
        return first_stage.decode(x).clamp(-1, 1)

    def reverse(
        self,
        network: nn.Module,
        cond: Condition,
        noise: Tensor,
        nfe: Callable[[int], None] | None = None,
        mode: str | None = None,
    ) -> Tensor:
        """The latent output of the chain from ``x_T = z_y + κ√η_T noise[:, :C]``.

        ``noise``: ``[B, (T+1)·C, H, W]`` (``"posterior"`` reads slice ``k`` at its k-th step;
        the other modes read ``x_T``'s slice only); ``mode``: this call's sampling mode
        (default: the chain's). Differentiable (no ``no_grad`` here), so a distillation loss
        can run it on a frozen teacher or a student."""
        mode = self.mode if mode is None else mode
        sch = self.schedule
        c = cond.z_y.shape[1]
        x = sch.prior_sample(cond.z_y, noise[:, :c])
        for i in reversed(range(sch.steps)):
            t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
            x0 = network(sch.scale_model_input(x, t), t, lq=cond.lq, mask=cond.mask).to(x.dtype)
            if nfe is not None:
                nfe(1)
            if mode == "one_step":
                return x0
            if mode == "ode":
                x = sch.ode_step(x, x0, cond.z_y, t)
            else:
                k = sch.steps - i
                x = sch.p_step(x, x0, t, noise[:, k * c : (k + 1) * c])
        return x

    def _offset(self, network: nn.Module, first_stage: nn.Module) -> int:
        if self.padding_offset is not None:
            return self.padding_offset
        need = getattr(network, "size_multiple", 1) * getattr(first_stage, "downscale", 1)
        return max(1, math.ceil(need / self.sf))

    # ---------------------------------------------------------------- main
    def _chop(self, first_stage: nn.Module, h: int, w: int, off: int) -> int | None:
        """The tile side for an ``h × w`` LQ, or ``None`` when it is restored whole
        (``chop_size="auto"`` resolved by :func:`auto_chop_size`)."""
        chop = self.chop_size
        if chop == "auto":
            chop = None
            if has_global_attention(first_stage):
                ds = getattr(first_stage, "downscale", 1)
                chop = auto_chop_size(
                    h, w, off, self.chop_overlap, self.sf / ds, max(1, ds // self.sf)
                )
        assert chop is None or isinstance(chop, int)
        return None if chop is None or (h <= chop and w <= chop) else chop

    def _grid(self, h: int, w: int, chop: int) -> tuple[int, int, int, list[tuple[int, int]]]:
        """``(tile height, tile width, stride, tile origins)`` over an ``h × w`` LQ: a tile every
        ``chop − chop_overlap``, the last flush with the border (module docstring)."""
        th, tw, boxes = tile_grid(h, w, chop, self.chop_overlap)
        return th, tw, chop - self.chop_overlap, boxes

    def _noise_shape(self, first_stage: nn.Module, lq: Tensor) -> tuple[int, ...]:
        """The noise of a (padded) LQ batch: ``[(T+1)·C, H_lat, W_lat]`` per image."""
        b, ch, h, w = lq.shape
        ds = getattr(first_stage, "downscale", 1)
        c = getattr(first_stage, "latent_channels", ch)
        return (b, (self.schedule.steps + 1) * c, h * self.sf // ds, w * self.sf // ds)

    @torch.no_grad()
    def sample(
        self,
        network: nn.Module,
        first_stage: nn.Module,
        lq: Tensor,
        generators: Sequence[torch.Generator] | torch.Generator | None = None,
        mask: Tensor | None = None,
        nfe: Callable[[int], None] | None = None,
        noise: NoiseFn | None = None,
    ) -> Tensor:
        """Restore ``lq`` ([B,C,h,w] in [-1,1]) → [B,C,h·sf,w·sf] in [-1,1].

        ``mask`` ([B,1,h,w], 1 = known pixel) enables inpainting: the network sees the masked LQ
        and the mask (:meth:`condition`); pasting the known pixels back is post-processing
        (:func:`lit_restore.postprocess.paste_known`). Noise comes from ``generators`` (one per
        image), or from ``noise`` when given (e.g. noise recorded from another implementation).
        """
        h, w = lq.shape[-2:]
        if noise is None:

            def noise(shape: tuple[int, ...]) -> Tensor:
                return randn_per_image(shape, generators, device=lq.device)

        off = self._offset(network, first_stage)
        if self.tiling == "official":  # the tiling is decided on the unpadded LQ
            chop = self._chop(first_stage, h, w, off)
            if chop is not None:
                return self._official_tiled(network, first_stage, lq, mask, noise, nfe, off, chop)
        lq_p = _pad_to(lq, off)
        mask_p = _pad_to(mask, off) if mask is not None else None
        hp, wp = lq_p.shape[-2:]
        field = noise(self._noise_shape(first_stage, lq_p))
        chop = None if self.tiling == "official" else self._chop(first_stage, hp, wp, off)
        if chop is None:
            out = self._chain(network, first_stage, lq_p, field, mask_p, nfe)
        else:
            ds = getattr(first_stage, "downscale", 1)
            out = self._tiled(network, first_stage, lq_p, field, mask_p, nfe, ds, chop)
        return out[..., : h * self.sf, : w * self.sf]

    def _official_tiled(
        self,
        network: nn.Module,
        first_stage: nn.Module,
        lq: Tensor,
        mask: Tensor | None,
        noise: NoiseFn,
        nfe: Callable[[int], None] | None,
        off: int,
        chop: int,
    ) -> Tensor:
        """ResShift's tiling (module docstring): tiles of the unpadded LQ, each padded to
        ``off`` and sampled with its own noise (``chop_bs`` tiles per forward, tile-major like
        ``ImageSpliterTh``), averaged uniformly."""
        from tqdm.auto import tqdm

        b, _, h, w = lq.shape
        sf = self.sf
        th, tw, _, boxes = self._grid(h, w, chop)
        out = torch.zeros(b, lq.shape[1], h * sf, w * sf, device=lq.device)
        count = torch.zeros(1, 1, h * sf, w * sf, device=lq.device)
        for i in tqdm(range(0, len(boxes), self.chop_bs), disable=not self.progress, desc="tiles"):
            group = boxes[i : i + self.chop_bs]
            lq_t = torch.cat([_pad_to(lq[..., y : y + th, x : x + tw], off) for y, x in group])
            m_t = None
            if mask is not None:
                m_t = torch.cat([_pad_to(mask[..., y : y + th, x : x + tw], off) for y, x in group])
            shape = self._noise_shape(first_stage, lq_t[:b])
            field = torch.cat([noise(shape) for _ in group])
            res = self._chain(network, first_stage, lq_t, field, m_t, nfe)
            for j, (y, x) in enumerate(group):
                sl = (..., slice(y * sf, (y + th) * sf), slice(x * sf, (x + tw) * sf))
                out[sl] += res[j * b : (j + 1) * b, :, : th * sf, : tw * sf].float()
                count[sl] += 1
        return out / count

    def _tiled(
        self,
        network: nn.Module,
        first_stage: nn.Module,
        lq: Tensor,
        noise: Tensor,
        mask: Tensor | None,
        nfe: Callable[[int], None] | None,
        ds: int,
        chop: int,
    ) -> Tensor:
        from tqdm.auto import tqdm

        b, _, hp, wp = lq.shape
        sf = self.sf
        th, tw, stride, boxes = self._grid(hp, wp, chop)
        if sf < ds and stride % (ds // sf):
            raise ValueError(
                f"chop_size - chop_overlap = {stride} must be a multiple of {ds // sf} so tiles "
                "align with the latent grid"
            )
        out: Tensor | None = None
        acc = torch.zeros(1, 1, hp * sf, wp * sf, device=lq.device)
        win = raised_cosine_window(th * sf, tw * sf, lq.device)
        if self.tiling == "uniform":
            win = torch.ones_like(win)
        r = sf // ds if sf >= ds else None
        for i in tqdm(range(0, len(boxes), self.chop_bs), disable=not self.progress, desc="tiles"):
            group = boxes[i : i + self.chop_bs]
            lq_t = torch.cat([lq[..., y : y + th, x : x + tw] for y, x in group])
            m_t = (
                None
                if mask is None
                else torch.cat([mask[..., y : y + th, x : x + tw] for y, x in group])
            )
            if r is not None:
                nz = [noise[..., y * r : (y + th) * r, x * r : (x + tw) * r] for y, x in group]
            else:  # latent coarser than LQ pixels (sf < downscale)
                q = ds // sf
                nz = [noise[..., y // q : (y + th) // q, x // q : (x + tw) // q] for y, x in group]
            res = self._chain(network, first_stage, lq_t, torch.cat(nz), m_t, nfe)
            if out is None:
                out = torch.zeros(b, res.shape[1], hp * sf, wp * sf, device=lq.device)
            for j, (y, x) in enumerate(group):
                sl = (..., slice(y * sf, (y + th) * sf), slice(x * sf, (x + tw) * sf))
                out[sl] += res[j * b : (j + 1) * b].float() * win
                acc[sl] += win
        assert out is not None
        return out / acc
