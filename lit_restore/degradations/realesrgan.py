"""Real-ESRGAN's second-order degradation (Wang et al., ICCVW 2021, arXiv 2107.10833).

The pipeline of xinntao/Real-ESRGAN ``realesrgan/models/realesrgan_model.py::feed_data`` with the
kernels and noise of XPixelGroup/BasicSR ``basicsr/data/degradations.py``, as ResShift trains
its released real-world SR models (zsyOAOA/ResShift, branch ``journal``:
``configs/realsr_swinunet_realesrgan256_journal.yaml``, kernels drawn in
``basicsr/data/realesrgan_dataset.py::RealESRGANDataset.__getitem__``, the pipeline in
``trainer.py::TrainerDifIRLPIPS.prepare_data``):

1. first stage: blur (iso/aniso/generalized/plateau Gaussian or sinc, odd sizes 3…19 padded to
   21) → random resize by a factor (``F.interpolate(scale_factor=…)``) → Gaussian or Poisson
   noise (optionally gray) → JPEG;
2. second stage, with probability ``second_order_prob``: blur (probability 0.8, sizes 3…13
   padded to 15) → resize to a factor of ``H/sf`` → noise;
3. resize to ``H/sf × W/sf`` + final sinc filter (probability 0.8, sizes 3…13 padded to 15; a
   15×15 pulse otherwise) and JPEG, in random order; 8-bit quantisation.

Kernel sizes: ``realesrgan_dataset.py`` L92-93 hard-codes ``range(3, blur_kernel_size, 2)``
(3…19 for 21, 3…13 for 15) and draws the final sinc size from the second range, padded to 15
(L222-224) — not the 7…21 of the Real-ESRGAN paper's text.

Poisson noise (``generate_poisson_noise_pt``, L609-656): the image is rounded to 8 bits, the
number of levels is ``2^⌈log₂ #unique values⌉`` of that image, gray noise is drawn on the luma
(``rgb_to_grayscale``: 0.2989 R + 0.587 G + 0.114 B, rounded likewise) and added to every
channel; the noise is ``Poisson(levels · x₈) / levels − x₈``, scaled, added to the unrounded image.

**Draws.** Which random choices are shared is the option ``draws``:

- ``"per_image"`` (default): every choice of one image comes from that image's generator (the
  datamodule's ``(seed, index, epoch)`` generator), so an image degrades identically in any
  batch, on any rank and in any rerun;
- ``"per_batch"``: the official training draws. ``trainer.py`` runs the pipeline on a whole
  batch with Python's ``random``: the resize kind/factor/mode of both stages, Gaussian-vs-Poisson
  of both stages, whether the second stage and its blur run, the order of the final step and its
  resize mode are drawn **once per batch**; the kernels (dataset), the noise level and gray flag
  (``random_add_*_noise_pt``: one ``torch.rand`` per image) and the JPEG quality are drawn per
  image. Here the shared choices come from a batch generator (the datamodule derives it from
  ``(seed, epoch, first index of the batch)``), the per-image ones from each image's generator.
  Evaluation data is degraded per image in both modes (the official test sets are made one image
  at a time, ``RealESRGANDataset.degrade_fun``).

Official training also passes the batches through a training-pair pool (``_dequeue_and_enqueue``,
``10 × batch`` pairs); that is the datamodule's ``pair_pool_size`` option
(:class:`lit_restore.data.pair_pool.TrainingPairPool`).

Remaining difference: JPEG. The official code compresses with BasicSR's ``DiffJPEG`` (a
differentiable re-implementation: float quantisation tables scaled by a continuous quality drawn
from ``U[30, 95]``); this module uses libjpeg through torchvision with an integer quality drawn
uniformly from ``{30, …, 95}``. Both produce 8×8-block DCT quantisation artifacts of the same
strength range; their outputs are not numerically equal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lit_restore.degradations.base import Degradation, Degraded

#: resize modes of the official pipeline (``random.choice(['area', 'bilinear', 'bicubic'])``)
RESIZE_MODES = ("area", "bilinear", "bicubic")
DRAWS = ("per_image", "per_batch")


# ------------------------------------------------------------------ kernels
def _u(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _bernoulli(g: torch.Generator, p: float) -> bool:
    return float(torch.rand((), generator=g)) < p


def _choice(g: torch.Generator, probs: Sequence[float]) -> int:
    return int(torch.multinomial(torch.tensor(list(probs), dtype=torch.float64), 1, generator=g))


def _pick(g: torch.Generator, values: Sequence) -> object:
    return values[int(torch.randint(len(values), (), generator=g))]


def _grid(size: int) -> Tensor:
    r = torch.arange(size, dtype=torch.float64) - size // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([xx, yy], -1)  # size, size, 2


def anisotropic_gaussian_kernel(
    size: int,
    sigma_x: float,
    sigma_y: float,
    theta: float,
    beta: float = 1.0,
    kind: str = "gaussian",
) -> Tensor:
    """Bivariate (generalized / plateau) Gaussian kernel, normalised to sum 1.

    gaussian: exp(-½ d), generalized: exp(-½ d^β), plateau: 1 / (1 + d^β),
    with d = xᵀ Σ⁻¹ x and Σ = R diag(σx², σy²) Rᵀ (basicsr ``bivariate_*``).
    """
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    cov = rot @ torch.diag(torch.tensor([sigma_x**2, sigma_y**2], dtype=torch.float64)) @ rot.T
    g = _grid(size)
    d = torch.einsum("hwi,ij,hwj->hw", g, torch.linalg.inv(cov), g)
    if kind == "gaussian":
        k = torch.exp(-0.5 * d)
    elif kind == "generalized":
        k = torch.exp(-0.5 * d.clamp_min(0) ** beta)
    elif kind == "plateau":
        k = 1 / (1 + d.clamp_min(0) ** beta)
    else:
        raise ValueError(f"kernel kind {kind!r}")
    return (k / k.sum()).float()


def _pad_kernel(k: Tensor, pad_to: int) -> Tensor:
    p = (pad_to - k.shape[-1]) // 2
    return F.pad(k, (p, p, p, p)) if p > 0 else k


def sinc_kernel(size: int, omega_c: float, pad_to: int = 0) -> Tensor:
    """2-D circular low-pass (sinc) kernel ω_c J₁(ω_c r) / (2π r), normalised to sum 1
    (basicsr ``circular_lowpass_kernel``), zero-padded to ``pad_to``."""
    from scipy.special import j1

    r = _grid(size).norm(dim=-1).numpy()
    k = np.where(
        r == 0,
        omega_c**2 / (4 * np.pi),
        omega_c * j1(omega_c * r) / (2 * np.pi * np.maximum(r, 1e-12)),
    )
    k = torch.from_numpy(k).float()
    return _pad_kernel(k / k.sum(), pad_to)


def pulse_kernel(size: int) -> Tensor:
    """The identity filter (official ``pulse_tensor``: 1 at the centre of a ``size²`` zero)."""
    k = torch.zeros(size, size)
    k[size // 2, size // 2] = 1
    return k


def odd_sizes(kernel_range: tuple[int, int]) -> list[int]:
    """The odd kernel sizes ``lo, lo+2, …, hi`` (official: ``range(3, blur_kernel_size, 2)``)."""
    lo, hi = kernel_range
    return list(range(lo, hi + 1, 2))


@dataclass
class BlurConfig:
    """One stage's blur-kernel draw (basicsr ``random_mixed_kernels`` or a sinc filter).

    ``kernel_range`` are the odd sizes drawn uniformly (official: 3…19 first stage, 3…13 second),
    zero-padded to ``pad_to`` (official ``blur_kernel_size`` 21 / ``blur_kernel_size2`` 15).
    """

    kernel_range: tuple[int, int] = (3, 19)
    pad_to: int = 21
    kernel_list: tuple[str, ...] = ("iso", "aniso", "generalized_iso", "generalized_aniso",
                                    "plateau_iso", "plateau_aniso")  # fmt: skip
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sigma: tuple[float, float] = (0.2, 3.0)
    betag: tuple[float, float] = (0.5, 4.0)
    betap: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1

    def __post_init__(self) -> None:
        lo, hi = self.kernel_range
        if lo < 1 or lo % 2 == 0 or hi % 2 == 0 or hi < lo or hi > self.pad_to:
            raise ValueError(
                f"kernel_range={self.kernel_range}: need odd 1 <= lo <= hi <= pad_to={self.pad_to}"
            )


def _shape_beta(g: torch.Generator, lo: float, hi: float) -> float:
    """β of the generalized/plateau kernels: below or above 1 with probability ½ each."""
    return _u(g, lo, 1) if _bernoulli(g, 0.5) else _u(g, 1, hi)


def random_blur_kernel(g: torch.Generator, cfg: BlurConfig) -> Tensor:
    """One blur kernel of a stage (``RealESRGANDataset.__getitem__``), ``[pad_to, pad_to]``."""
    size = int(_pick(g, odd_sizes(cfg.kernel_range)))
    if _bernoulli(g, cfg.sinc_prob):
        # the official comment: "this sinc filter setting is for kernels ranging from [7, 21]"
        omega = _u(g, math.pi / 3, math.pi) if size < 13 else _u(g, math.pi / 5, math.pi)
        return sinc_kernel(size, omega, cfg.pad_to)
    kind = cfg.kernel_list[_choice(g, cfg.kernel_prob)]
    sx = _u(g, *cfg.sigma)
    iso = kind.endswith("iso") and not kind.endswith("aniso")
    sy = sx if iso else _u(g, *cfg.sigma)
    theta = 0.0 if iso else _u(g, -math.pi, math.pi)
    beta, base = 1.0, "gaussian"
    if kind.startswith("generalized"):
        base, beta = "generalized", _shape_beta(g, *cfg.betag)
    elif kind.startswith("plateau"):
        base, beta = "plateau", _shape_beta(g, *cfg.betap)
    return _pad_kernel(anisotropic_gaussian_kernel(size, sx, sy, theta, beta, base), cfg.pad_to)


def filter2d(x: Tensor, k: Tensor) -> Tensor:
    """Per-channel 2-D filtering with reflect padding (basicsr ``filter2D``).

    ``x`` is ``[B, C, H, W]``; ``k`` one kernel ``[k, k]`` for every image or one per image
    ``[B, k, k]``."""
    b, c = x.shape[:2]
    ks = k.shape[-1]
    k = k.to(x).reshape(-1, 1, ks, ks).expand(b, 1, ks, ks) if k.dim() == 2 else k.to(x)[:, None]
    mode = "reflect" if min(x.shape[-2:]) > ks // 2 else "replicate"  # tiny crops
    x = F.pad(x, (ks // 2,) * 4, mode=mode)
    weight = k.repeat_interleave(c, 0)  # [B·C, 1, k, k]: image b's kernel on its C channels
    out = F.conv2d(x.reshape(1, b * c, *x.shape[-2:]), weight, groups=b * c)
    return out.reshape(b, c, *out.shape[-2:])


# ---------------------------------------------------------------- noise
def luma(x: Tensor) -> Tensor:
    """``[..., 3, H, W]`` → ``[..., 1, H, W]``: torchvision ``rgb_to_grayscale`` (ITU-R 601)."""
    from torchvision.transforms.functional import rgb_to_grayscale

    return rgb_to_grayscale(x, num_output_channels=1)


def poisson_noise(
    x: Tensor,
    gray: bool,
    generator: torch.Generator | None = None,
    draw: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """Unscaled Poisson noise of one image ``x`` ``[C, H, W]`` in [0, 1] (basicsr
    ``generate_poisson_noise_pt`` for one image; ``draw`` replaces ``torch.poisson``, tests).

    ``x₈ = round(255·x)/255`` (of the luma when ``gray``), ``L = 2^⌈log₂ #unique(x₈)⌉``, noise
    ``Poisson(L·x₈)/L − x₈``; gray noise is the same field on every channel."""
    src = luma(x) if gray else x
    src = torch.clamp((src * 255.0).round(), 0, 255) / 255.0
    levels = float(2 ** np.ceil(np.log2(len(torch.unique(src)))))
    rate = src * levels
    if draw is None:
        out = torch.poisson(rate.cpu(), generator=generator).to(rate)
    else:
        out = draw(rate)
    noise = out / levels - src
    return noise.expand_as(x) if gray else noise


# ---------------------------------------------------------------- pipeline
@dataclass
class StageConfig:
    blur_prob: float = 1.0
    blur: BlurConfig = field(default_factory=BlurConfig)
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)  # in /255 units
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[int, int] = (30, 95)


@dataclass
class RealESRGANConfig:
    """Defaults: ResShift's training degradation (``realsr_swinunet_realesrgan256_journal.yaml``
    and ``realesrgan_dataset.py``'s hard-coded kernel sizes)."""

    first: StageConfig = field(default_factory=StageConfig)
    second: StageConfig = field(
        default_factory=lambda: StageConfig(
            blur_prob=0.8,
            blur=BlurConfig(kernel_range=(3, 13), pad_to=15, sigma=(0.2, 1.5)),
            resize_prob=(0.3, 0.4, 0.3),
            resize_range=(0.3, 1.2),
            noise_range=(1.0, 25.0),
            poisson_scale_range=(0.05, 2.5),
        )
    )
    second_order_prob: float = 0.5
    final_sinc_prob: float = 0.8
    #: final sinc sizes (official: ``kernel_range2``) and their padding (``blur_kernel_size2``)
    final_sinc_range: tuple[int, int] = (3, 13)
    final_sinc_pad: int = 15


@dataclass
class StageDraws:
    """The choices of one stage the official code draws once per batch."""

    resize_scale: float
    resize_mode: str
    gaussian: bool  #: Gaussian (else Poisson) noise


@dataclass
class SharedDraws:
    """Everything the official training draws once per batch (module docstring)."""

    first: StageDraws
    second: StageDraws | None  #: None: the second stage is skipped
    second_blur: bool
    resize_then_jpeg: bool  #: final order: [resize + sinc] → JPEG (else JPEG → [resize + sinc])
    final_mode: str


@dataclass
class ImageDraws:
    """The per-image choices: kernels, noise levels and gray flags, JPEG qualities."""

    kernel1: Tensor
    kernel2: Tensor
    sinc: Tensor
    noise1: tuple[float, bool]  #: (σ·255 or Poisson scale, gray)
    noise2: tuple[float, bool]
    jpeg1: int
    jpeg2: int


def _resize_scale(g: torch.Generator, cfg: StageConfig) -> float:
    kind = _choice(g, cfg.resize_prob)
    if kind == 0:
        return _u(g, 1, cfg.resize_range[1])
    if kind == 1:
        return _u(g, cfg.resize_range[0], 1)
    return 1.0


def _stage_draws(g: torch.Generator, cfg: StageConfig) -> StageDraws:
    scale = _resize_scale(g, cfg)
    mode = str(_pick(g, RESIZE_MODES))
    return StageDraws(scale, mode, _bernoulli(g, cfg.gaussian_noise_prob))


def _noise_draw(g: torch.Generator, cfg: StageConfig, gaussian: bool) -> tuple[float, bool]:
    level = _u(g, *(cfg.noise_range if gaussian else cfg.poisson_scale_range))
    return level, _bernoulli(g, cfg.gray_noise_prob)


def _add_noise(
    x: Tensor, gaussian: bool, draws: Sequence[tuple[float, bool]], gens: Sequence[torch.Generator]
) -> Tensor:
    """``clamp(x + noise, 0, 1)`` with image ``b``'s level, gray flag and field from ``gens[b]``
    (``random_add_gaussian_noise_pt`` / ``random_add_poisson_noise_pt`` with ``clip=True``)."""
    out = []
    c, h, w = x.shape[1:]
    for xb, (level, gray), g in zip(x, draws, gens):
        if gaussian:
            n = torch.randn((1 if gray else c, h, w), generator=g).to(xb) * (level / 255.0)
            out.append(xb + n)
        else:
            out.append(xb + level * poisson_noise(xb, gray, g))
    return torch.stack(out).clamp(0, 1)


def jpeg(x: Tensor, quality: int) -> Tensor:
    """JPEG round trip of one ``[C,H,W]`` image in [0,1] (torchvision, uint8, on CPU)."""
    from torchvision.io import decode_jpeg, encode_jpeg

    u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    out = decode_jpeg(encode_jpeg(u8, quality=int(quality)))
    return out.to(x.device, torch.float32) / 255


def _jpeg_batch(x: Tensor, qualities: Sequence[int]) -> Tensor:
    return torch.stack([jpeg(xb, q) for xb, q in zip(x.clamp(0, 1), qualities)])


class RealESRGANDegradation(Degradation):
    """Second-order Real-ESRGAN degradation ``hq [C,H,W] → lq [C,H/sf,W/sf]``; ``y = lq``.

    Args:
        sf: the final downscaling factor (image sides must be multiples of it).
        config: the stage parameters (default: ResShift's training values).
        draws: ``"per_image"`` (default) or ``"per_batch"`` (the official training draws; module
            docstring).
    """

    def __init__(
        self, sf: int = 4, config: RealESRGANConfig | None = None, draws: str = "per_image"
    ) -> None:
        if int(sf) != sf or sf < 1:
            raise ValueError(f"RealESRGANDegradation sf must be a positive integer, got {sf}")
        if draws not in DRAWS:
            raise ValueError(f"RealESRGANDegradation draws={draws!r}: use one of {DRAWS}")
        self.sf = int(sf)
        self.config = config or RealESRGANConfig()
        self.draws = draws

    @property
    def batch_draws(self) -> bool:
        return self.draws == "per_batch"

    def check_image_shape(self, shape: tuple[int, int, int]) -> None:
        if shape[-2] % self.sf or shape[-1] % self.sf:
            raise ValueError(
                f"image size {shape[-2]}×{shape[-1]} is not divisible by the scale factor "
                f"sf={self.sf}"
            )

    # ------------------------------------------------------------ draws
    def draw_shared(self, g: torch.Generator) -> SharedDraws:
        """The once-per-batch choices (all from ``g``)."""
        cfg = self.config
        first = _stage_draws(g, cfg.first)
        second, second_blur = None, False
        if _bernoulli(g, cfg.second_order_prob):
            second_blur = _bernoulli(g, cfg.second.blur_prob)
            second = _stage_draws(g, cfg.second)
        resize_then_jpeg = _bernoulli(g, 0.5)
        return SharedDraws(
            first, second, second_blur, resize_then_jpeg, str(_pick(g, RESIZE_MODES))
        )

    def draw_image(self, g: torch.Generator, shared: SharedDraws) -> ImageDraws:
        """The per-image choices (all from ``g``) given the shared ones."""
        cfg = self.config
        kernel1 = random_blur_kernel(g, cfg.first.blur)
        kernel2 = random_blur_kernel(g, cfg.second.blur)
        if _bernoulli(g, cfg.final_sinc_prob):
            size = int(_pick(g, odd_sizes(cfg.final_sinc_range)))
            sinc = sinc_kernel(size, _u(g, math.pi / 3, math.pi), cfg.final_sinc_pad)
        else:
            sinc = pulse_kernel(cfg.final_sinc_pad)
        noise1 = _noise_draw(g, cfg.first, shared.first.gaussian)
        second = shared.second if shared.second is not None else shared.first
        noise2 = _noise_draw(g, cfg.second, second.gaussian)
        jpeg1 = int(torch.randint(cfg.first.jpeg_range[0], cfg.first.jpeg_range[1] + 1, (),
                                  generator=g))  # fmt: skip
        jpeg2 = int(torch.randint(cfg.second.jpeg_range[0], cfg.second.jpeg_range[1] + 1, (),
                                  generator=g))  # fmt: skip
        return ImageDraws(kernel1, kernel2, sinc, noise1, noise2, jpeg1, jpeg2)

    # ---------------------------------------------------------- pipeline
    def run(
        self,
        hq: Tensor,
        shared: SharedDraws,
        images: Sequence[ImageDraws],
        gens: Sequence[torch.Generator],
    ) -> Tensor:
        """The pipeline on ``hq`` ``[B, C, H, W]`` in [0, 1] with the given draws (noise fields
        from ``gens[b]``); returns the 8-bit LQ ``[B, C, H/sf, W/sf]`` in [0, 1]."""
        h, w = hq.shape[-2:]
        sf = self.sf
        x = filter2d(hq.float(), torch.stack([d.kernel1 for d in images]))
        s1 = shared.first
        x = F.interpolate(x, scale_factor=s1.resize_scale, mode=s1.resize_mode)
        x = _add_noise(x, s1.gaussian, [d.noise1 for d in images], gens)
        x = _jpeg_batch(x, [d.jpeg1 for d in images])
        s2 = shared.second
        if s2 is not None:
            if shared.second_blur:
                x = filter2d(x, torch.stack([d.kernel2 for d in images]))
            size = (int(h / sf * s2.resize_scale), int(w / sf * s2.resize_scale))
            x = F.interpolate(x, size=size, mode=s2.resize_mode)
            x = _add_noise(x, s2.gaussian, [d.noise2 for d in images], gens)
        sinc = torch.stack([d.sinc for d in images])
        size = (h // sf, w // sf)
        if shared.resize_then_jpeg:
            x = filter2d(F.interpolate(x, size=size, mode=shared.final_mode), sinc)
            x = _jpeg_batch(x, [d.jpeg2 for d in images])
        else:
            x = _jpeg_batch(x, [d.jpeg2 for d in images])
            x = filter2d(F.interpolate(x, size=size, mode=shared.final_mode), sinc)
        return torch.clamp((x * 255.0).round(), 0, 255) / 255.0

    def degrade01(self, hq: Tensor, g: torch.Generator) -> Tensor:
        """The pipeline on one ``[C, H, W]`` image in [0, 1], every draw from ``g``; returns the
        LQ in [0, 1]."""
        shared = self.draw_shared(g)
        return self.run(hq[None], shared, [self.draw_image(g, shared)], [g])[0]

    def degrade(self, hq: Tensor, generator: torch.Generator) -> Degraded:
        self.check_image_shape(tuple(hq.shape))
        lq = self.degrade01((hq.float() + 1) / 2, generator).to(hq.device, hq.dtype) * 2 - 1
        return Degraded(y=lq, lq=lq)

    def degrade_batch(
        self,
        hq: Tensor,
        generators: Sequence[torch.Generator],
        batch_generator: torch.Generator | None = None,
    ) -> Degraded:
        """``draws="per_batch"`` with a ``batch_generator``: the shared choices from it, the
        per-image ones from ``generators``; otherwise image by image."""
        if not (self.batch_draws and batch_generator is not None):
            return super().degrade_batch(hq, generators)
        if len(generators) != hq.shape[0]:
            raise ValueError(f"{len(generators)} generators for a batch of {hq.shape[0]}")
        self.check_image_shape(tuple(hq.shape[1:]))
        shared = self.draw_shared(batch_generator)
        images = [self.draw_image(g, shared) for g in generators]
        lq = self.run((hq.float() + 1) / 2, shared, images, generators)
        lq = lq.to(hq.device, hq.dtype) * 2 - 1
        return Degraded(y=lq, lq=lq)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sf={self.sf}, draws={self.draws!r})"
