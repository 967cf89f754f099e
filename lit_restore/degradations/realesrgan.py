"""Real-ESRGAN's second-order degradation (Wang et al., ICCVW 2021, arXiv 2107.10833).

The pipeline of xinntao/Real-ESRGAN ``realesrgan/models/realesrgan_model.py::feed_data`` with the
kernels of XPixelGroup/BasicSR ``basicsr/data/degradations.py`` and the parameter ranges ResShift
trains with (zsyOAOA/ResShift ``configs/realsr_swinunet_realesrgan256_journal.yaml``):

1. first stage: blur (iso/aniso/generalized/plateau Gaussian or sinc) → random resize →
   Gaussian or Poisson noise (optionally gray) → JPEG;
2. second stage, with probability ``second_order_prob``: blur → resize (relative to the LQ size)
   → noise;
3. resize to ``H/sf × W/sf`` + final sinc filter and JPEG, in random order; 8-bit quantisation.

Our per-image version: every random choice for one image comes from its own generator (the
datamodule's ``(seed, index)`` generator), so an image degrades identically on any rank and in
any batch. The pipeline works on [0, 1] intensities (:meth:`RealESRGANDegradation.degrade01`);
the protocol method converts from and to model space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_restore.degradations.base import Degradation, Degraded


# ------------------------------------------------------------------ kernels
def _u(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _choice(g: torch.Generator, probs: list[float]) -> int:
    return int(torch.multinomial(torch.tensor(probs, dtype=torch.float64), 1, generator=g))


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


def sinc_kernel(size: int, omega_c: float, pad_to: int = 0) -> Tensor:
    """2-D circular low-pass (sinc) kernel ω_c J₁(ω_c r) / (2π r), normalised to sum 1."""
    from scipy.special import j1

    r = _grid(size).norm(dim=-1).numpy()
    with torch.no_grad():
        import numpy as np

        k = np.where(
            r == 0,
            omega_c**2 / (4 * np.pi),
            omega_c * j1(omega_c * r) / (2 * np.pi * np.maximum(r, 1e-12)),
        )
    k = torch.from_numpy(k).float()
    k = k / k.sum()
    if pad_to > size:
        p = (pad_to - size) // 2
        k = F.pad(k, (p, p, p, p))
    return k


@dataclass
class BlurConfig:
    kernel_range: tuple[int, int] = (7, 21)  # odd sizes
    kernel_list: tuple[str, ...] = ("iso", "aniso", "generalized_iso", "generalized_aniso",
                                    "plateau_iso", "plateau_aniso")  # fmt: skip
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sigma: tuple[float, float] = (0.2, 3.0)
    betag: tuple[float, float] = (0.5, 4.0)
    betap: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1


def _shape_beta(g: torch.Generator, lo: float, hi: float) -> float:
    """β of the generalized/plateau kernels: below or above 1 with probability ½ each."""
    return _u(g, lo, 1) if float(torch.rand((), generator=g)) < 0.5 else _u(g, 1, hi)


def random_blur_kernel(g: torch.Generator, cfg: BlurConfig, pad_to: int = 21) -> Tensor:
    """One Real-ESRGAN blur kernel (basicsr ``random_mixed_kernels`` + sinc), padded to 21."""
    sizes = list(range(cfg.kernel_range[0], cfg.kernel_range[1] + 1, 2))
    size = sizes[int(torch.randint(len(sizes), (), generator=g))]
    if float(torch.rand((), generator=g)) < cfg.sinc_prob:
        omega = _u(g, math.pi / 3, math.pi) if size < 13 else _u(g, math.pi / 5, math.pi)
        return sinc_kernel(size, omega, pad_to)
    kind = cfg.kernel_list[_choice(g, list(cfg.kernel_prob))]
    sx = _u(g, *cfg.sigma)
    iso = kind.endswith("iso") and not kind.endswith("aniso")
    sy = sx if iso else _u(g, *cfg.sigma)
    theta = 0.0 if iso else _u(g, -math.pi, math.pi)
    beta, base = 1.0, "gaussian"
    if kind.startswith("generalized"):
        base, beta = "generalized", _shape_beta(g, *cfg.betag)
    elif kind.startswith("plateau"):
        base, beta = "plateau", _shape_beta(g, *cfg.betap)
    k = anisotropic_gaussian_kernel(size, sx, sy, theta, beta, base)
    p = (pad_to - size) // 2
    return F.pad(k, (p, p, p, p))


def filter2d(x: Tensor, k: Tensor) -> Tensor:
    """Per-channel 2-D filtering with reflect padding (basicsr ``filter2D``)."""
    ks = k.shape[-1]
    c = x.shape[1]
    mode = "reflect" if min(x.shape[-2:]) > ks // 2 else "replicate"  # tiny crops
    x = F.pad(x, (ks // 2,) * 4, mode=mode)
    return F.conv2d(x, k.to(x).expand(c, 1, ks, ks), groups=c)


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
    """Defaults: ResShift's training degradation (``realsr_swinunet_realesrgan256_journal.yaml``)."""

    first: StageConfig = field(default_factory=StageConfig)
    second: StageConfig = field(
        default_factory=lambda: StageConfig(
            blur_prob=0.8,
            blur=BlurConfig(kernel_range=(7, 15), sigma=(0.2, 1.5)),
            resize_prob=(0.3, 0.4, 0.3),
            resize_range=(0.3, 1.2),
            noise_range=(1.0, 25.0),
            poisson_scale_range=(0.05, 2.5),
        )
    )
    second_order_prob: float = 0.5
    final_sinc_prob: float = 0.8


def jpeg(x: Tensor, quality: int) -> Tensor:
    """JPEG round trip of one ``[C,H,W]`` image in [0,1] (torchvision, uint8, on CPU)."""
    from torchvision.io import decode_jpeg, encode_jpeg

    u8 = (x.clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    out = decode_jpeg(encode_jpeg(u8, quality=int(quality)))
    return out.to(x.device, torch.float32) / 255


def _noise(x: Tensor, g: torch.Generator, cfg: StageConfig) -> Tensor:
    gray = float(torch.rand((), generator=g)) < cfg.gray_noise_prob
    c = x.shape[1]
    if float(torch.rand((), generator=g)) < cfg.gaussian_noise_prob:
        sigma = _u(g, *cfg.noise_range) / 255
        n = torch.randn((1, 1 if gray else c, *x.shape[-2:]), generator=g).to(x)
        return x + sigma * n
    scale = _u(g, *cfg.poisson_scale_range)
    src = x.mean(1, keepdim=True) if gray else x
    vals = 256.0  # basicsr: 2^ceil(log2(#unique levels)), = 256 for 8-bit natural images
    lam = (src.clamp(0, 1) * vals).cpu()
    n = (torch.poisson(lam, generator=g) / vals - src.cpu()).to(x)
    return x + scale * n


def _resize(
    x: Tensor, g: torch.Generator, cfg: StageConfig, base: tuple[int, int] | None
) -> Tensor:
    kind = _choice(g, list(cfg.resize_prob))
    s = (
        _u(g, 1, cfg.resize_range[1])
        if kind == 0
        else (_u(g, cfg.resize_range[0], 1) if kind == 1 else 1.0)
    )
    mode = ["area", "bilinear", "bicubic"][int(torch.randint(3, (), generator=g))]
    h, w = base if base is not None else x.shape[-2:]
    size = (max(1, int(h * s)), max(1, int(w * s)))
    return (
        F.interpolate(x, size=size, mode=mode)
        if mode != "area"
        else F.interpolate(x, size=size, mode="area")
    )


def _stage(x: Tensor, g: torch.Generator, cfg: StageConfig, base) -> Tensor:
    if float(torch.rand((), generator=g)) < cfg.blur_prob:
        x = filter2d(x, random_blur_kernel(g, cfg.blur))
    x = _resize(x, g, cfg, base)
    x = _noise(x, g, cfg).clamp(0, 1)
    q = int(torch.randint(cfg.jpeg_range[0], cfg.jpeg_range[1] + 1, (), generator=g))
    return jpeg(x[0], q)[None]


class RealESRGANDegradation(Degradation):
    """Second-order Real-ESRGAN degradation ``hq [C,H,W] → lq [C,H/sf,W/sf]``; ``y = lq``.

    Args:
        sf: the final downscaling factor (image sides must be multiples of it).
        config: the stage parameters (default: ResShift's training values).
    """

    def __init__(self, sf: int = 4, config: RealESRGANConfig | None = None) -> None:
        if int(sf) != sf or sf < 1:
            raise ValueError(f"RealESRGANDegradation sf must be a positive integer, got {sf}")
        self.sf = int(sf)
        self.config = config or RealESRGANConfig()

    def check_image_shape(self, shape: tuple[int, int, int]) -> None:
        if shape[-2] % self.sf or shape[-1] % self.sf:
            raise ValueError(
                f"image size {shape[-2]}×{shape[-1]} is not divisible by the scale factor "
                f"sf={self.sf}"
            )

    def degrade(self, hq: Tensor, generator: torch.Generator) -> Degraded:
        self.check_image_shape(tuple(hq.shape))
        lq01 = self.degrade01((hq.float() + 1) / 2, generator)
        lq = lq01.to(hq.device, hq.dtype) * 2 - 1
        return Degraded(y=lq, lq=lq)

    def degrade01(self, hq: Tensor, g: torch.Generator) -> Tensor:
        """The pipeline on one ``[C, H, W]`` image in [0, 1]; returns the LQ in [0, 1]."""
        cfg = self.config
        h, w = hq.shape[-2:]
        x = _stage(hq[None].float(), g, cfg.first, None)
        if float(torch.rand((), generator=g)) < cfg.second_order_prob:
            c2 = cfg.second
            if float(torch.rand((), generator=g)) < c2.blur_prob:
                x = filter2d(x, random_blur_kernel(g, c2.blur))
            x = _resize(x, g, c2, (h // self.sf, w // self.sf))
            x = _noise(x, g, c2).clamp(0, 1)
        if float(torch.rand((), generator=g)) < cfg.final_sinc_prob:
            sizes = list(range(7, 22, 2))
            size = sizes[int(torch.randint(len(sizes), (), generator=g))]
            sinc = sinc_kernel(size, _u(g, math.pi / 3, math.pi), 21)
        else:
            sinc = torch.zeros(21, 21)
            sinc[10, 10] = 1  # pulse
        q = int(
            torch.randint(cfg.second.jpeg_range[0], cfg.second.jpeg_range[1] + 1, (), generator=g)
        )
        mode = ["area", "bilinear", "bicubic"][int(torch.randint(3, (), generator=g))]
        size = (h // self.sf, w // self.sf)
        if float(torch.rand((), generator=g)) < 0.5:  # resize + sinc, then JPEG
            x = filter2d(F.interpolate(x, size=size, mode=mode), sinc)
            x = jpeg(x[0].clamp(0, 1), q)[None]
        else:  # JPEG, then resize + sinc
            x = jpeg(x[0].clamp(0, 1), q)[None]
            x = filter2d(F.interpolate(x, size=size, mode=mode), sinc)
        return ((x.clamp(0, 1) * 255).round() / 255)[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sf={self.sf})"
