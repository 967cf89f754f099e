"""Analytic Gaussian priors: an exact MMSE denoiser, hence an exact ε-prediction.

For x0 ~ N(m, Σ) and x_t = √ᾱ x0 + √(1−ᾱ) ε, the posterior mean (Tweedie) is

    E[x0 | x_t] = m + √ᾱ Σ (ᾱ Σ + (1−ᾱ) I)⁻¹ (x_t − √ᾱ m)

and the matching ε-prediction, ε̂ = (x_t − √ᾱ x̂0)/√(1−ᾱ), simplifies to

    ε̂ = √(1−ᾱ) (ᾱ Σ + (1−ᾱ) I)⁻¹ (x_t − √ᾱ m),

which we evaluate directly (stable as ᾱ → 1). Two flavours:

- :class:`GaussianPrior` — *stationary* (circular) covariance, diagonalised by the orthonormal 2-D
  DFT, Σ = F⁻¹ diag(P) F per channel. The power spectrum P is a radial function of the continuous
  frequency |ω| (cycles/pixel), stored as a table and interpolated, so one prior serves any image
  size. Build it from a power law (:meth:`GaussianPrior.power_law`) or fit it to images
  (:meth:`GaussianPrior.fit` / :meth:`GaussianPrior.from_images`).
- :class:`DenseGaussianPrior` — any covariance Σ as an explicit matrix (tiny images, tests).

:func:`gaussian_posterior` gives the exact posterior of a linear-Gaussian inverse problem
``y = A x + σ_y n`` (the test oracle for every sampler):
``μ = m + Σ Aᵀ (A Σ Aᵀ + σ_y² I)⁺ (y − A m)``, ``C = Σ − Σ Aᵀ (A Σ Aᵀ + σ_y² I)⁺ A Σ``.
This is the same oracle deepinv's ``test_sampling.py`` uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from lit_restore.priors.base import DiffusionPrior

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def gaussian_posterior(
    mean: Tensor, cov: Tensor, A: Tensor, y: Tensor, sigma_y: float
) -> tuple[Tensor, Tensor]:
    """Exact posterior of ``x ~ N(mean, cov)``, ``y = A x + sigma_y·n`` (all flat, float64 inside).

    Args:
        mean: prior mean, shape ``[n]`` (or any shape with ``n`` elements).
        cov: prior covariance ``[n, n]``.
        A: measurement matrix ``[m, n]``.
        y: measurement ``[m]`` or a batch ``[B, m]``.
        sigma_y: noise std in the same units as ``y`` (model space); 0 = noiseless (pseudo-inverse).

    Returns:
        ``(post_mean, post_cov)`` with ``post_mean`` shaped ``[n]`` or ``[B, n]`` and ``post_cov``
        ``[n, n]`` (the covariance does not depend on ``y``).
    """
    m = mean.reshape(-1).double()
    S = cov.double()
    Ad = A.double()
    yd = y.double()
    squeeze = yd.dim() == 1
    yd = yd.reshape(1, -1) if squeeze else yd.flatten(1)
    G = Ad @ S @ Ad.T + sigma_y**2 * torch.eye(Ad.shape[0], dtype=torch.float64)
    K = S @ Ad.T @ torch.linalg.pinv(G, hermitian=True)  # Kalman gain [n, m]
    post_mean = m + (yd - m @ Ad.T) @ K.T
    post_cov = S - K @ Ad @ S
    post_cov = 0.5 * (post_cov + post_cov.T)
    return (post_mean[0] if squeeze else post_mean), post_cov


class DenseGaussianPrior(DiffusionPrior):
    """x0 ~ N(mean, cov) with an explicit covariance matrix (a few hundred pixels at most).

    The denoiser is applied in Σ's eigenbasis, Σ = Q diag(λ) Qᵀ:
    ``ε̂ = Q diag(√(1−ᾱ)/(ᾱλ + 1−ᾱ)) Qᵀ (x_t − √ᾱ m)`` — exact for every t.

    Args:
        mean: ``[C, H, W]`` tensor (or a scalar, broadcast to ``x_shape``).
        cov: ``[n, n]`` symmetric positive semi-definite, ``n = C·H·W``.
        x_shape: ``(C, H, W)``; inferred from ``mean`` when it is a 3-D tensor.
    """

    def __init__(
        self,
        mean: Tensor | float,
        cov: Tensor,
        x_shape: Sequence[int] | None = None,
        beta_schedule: str = "linear",
        num_timesteps: int = 1000,
    ) -> None:
        mean = torch.as_tensor(mean, dtype=torch.float32)
        if x_shape is None:
            if mean.dim() != 3:
                raise ValueError(
                    "DenseGaussianPrior needs x_shape=(C,H,W) when mean is not [C,H,W]"
                )
            x_shape = tuple(mean.shape)
        x_shape = tuple(int(s) for s in x_shape)
        c, h, w = x_shape
        super().__init__(
            image_size=h if h == w else None,
            channels=c,
            beta_schedule=beta_schedule,
            num_timesteps=num_timesteps,
        )
        n = c * h * w
        cov = torch.as_tensor(cov, dtype=torch.float64)
        if cov.shape != (n, n):
            raise ValueError(
                f"cov must be [{n}, {n}] for x_shape {x_shape}, got {tuple(cov.shape)}"
            )
        cov = 0.5 * (cov + cov.T)
        evals, evecs = torch.linalg.eigh(cov)
        if evals.min() < -1e-6 * evals.abs().max():
            raise ValueError("cov is not positive semi-definite")
        self.x_shape = x_shape
        self.register_buffer("mean", mean.expand(x_shape).clone())
        self.register_buffer("cov", cov.float())
        self.register_buffer("_evals", evals.clamp_min(0).float())
        self.register_buffer("_evecs", evecs.float())

    def _filter(self, x_t: Tensor, t: Tensor, gain) -> Tensor:
        a = self.alpha_bar(t, x_t).flatten(1)  # [B, 1]
        d = (x_t - a.sqrt().view(-1, 1, 1, 1) * self.mean).flatten(1)
        coef = gain(a, self._evals)  # [B, n]
        return ((d @ self._evecs) * coef) @ self._evecs.T

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        out = self._filter(x_t, t, lambda a, lam: (1 - a).sqrt() / (a * lam + 1 - a))
        return out.view_as(x_t)

    def x0(self, x_t: Tensor, t: Tensor) -> Tensor:
        out = self._filter(x_t, t, lambda a, lam: a.sqrt() * lam / (a * lam + 1 - a))
        return self.mean + out.view_as(x_t)

    def posterior(self, A: Tensor, y: Tensor, sigma_y: float) -> tuple[Tensor, Tensor]:
        """Exact posterior (mean ``[.., n]``, cov ``[n, n]``) for ``y = A x + sigma_y n``."""
        return gaussian_posterior(self.mean, self.cov, A, y, sigma_y)


def _radial_freq(h: int, w: int, device=None) -> Tensor:
    """|ω| in cycles/pixel on the (uncentred) ``fftfreq`` grid, shape [H, W]."""
    fy = torch.fft.fftfreq(h, device=device).view(-1, 1)
    fx = torch.fft.fftfreq(w, device=device).view(1, -1)
    return (fy**2 + fx**2).sqrt()


class GaussianPrior(DiffusionPrior):
    """Stationary Gaussian prior: per-channel mean and a radial power spectrum P(|ω|).

    With circular stationarity Σ = F⁻¹ diag(P) F (orthonormal DFT, per channel), so

        x̂0 = m + F⁻¹[ √ᾱ P / (ᾱ P + 1−ᾱ) · F(x_t − √ᾱ m) ],
        ε̂  =     F⁻¹[ √(1−ᾱ) / (ᾱ P + 1−ᾱ) · F(x_t − √ᾱ m) ].

    P is tabulated on radial frequencies ``freqs`` (cycles/pixel, 0 … √2/2) and linearly
    interpolated in log-power, so the same prior works at any image size.

    Args:
        mean: per-channel mean, a float or a sequence of ``channels`` floats (model space).
        freqs: ``[K]`` increasing radial frequencies, starting at 0.
        power: ``[K]`` or ``[channels, K]`` power spectral density (orthonormal-DFT units: the
            pixel variance is the mean of P over the frequency grid).
        channels: number of image channels.
    """

    def __init__(
        self,
        mean: float | Sequence[float] = 0.0,
        freqs: Tensor | Sequence[float] = (0.0, 1.0),
        power: Tensor | Sequence[float] = (0.25, 0.25),
        channels: int = 3,
        beta_schedule: str = "linear",
        num_timesteps: int = 1000,
    ) -> None:
        super().__init__(
            image_size=None,
            channels=channels,
            beta_schedule=beta_schedule,
            num_timesteps=num_timesteps,
        )
        freqs = torch.as_tensor(freqs, dtype=torch.float64).reshape(-1)
        power = torch.as_tensor(power, dtype=torch.float64)
        if power.dim() == 1:
            power = power.expand(channels, -1)
        if power.shape != (channels, freqs.numel()):
            raise ValueError(
                f"power must be [{freqs.numel()}] or [{channels}, {freqs.numel()}], got {tuple(power.shape)}"
            )
        if (power <= 0).any() or (freqs[1:] <= freqs[:-1]).any():
            raise ValueError("power must be > 0 and freqs strictly increasing")
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        if mean_t.numel() not in (1, channels):
            raise ValueError(f"mean must be a float or {channels} floats, got {mean_t.numel()}")
        self.register_buffer("mean", mean_t.expand(channels).clone().view(1, channels, 1, 1))
        self.register_buffer("freqs", freqs.float())
        self.register_buffer("log_power", power.log().float())

    # ------------------------------------------------------------ spectrum
    def spectrum(self, h: int, w: int) -> Tensor:
        """P on the ``fftfreq`` grid of an ``h×w`` image, shape [C, H, W] (float32).

        Cached per (size, device, parameter version): a sampler asks for it at every step.
        """
        key = (h, w, self.freqs.device, self.log_power._version, self.log_power.data_ptr())
        cache = self.__dict__.setdefault("_spectrum_cache", {})
        if key not in cache:
            cache.clear()
            cache[key] = self._spectrum(h, w)
        return cache[key]

    def _spectrum(self, h: int, w: int) -> Tensor:
        r = _radial_freq(h, w, device=self.freqs.device).flatten()
        f = self.freqs
        r = r.clamp(f[0], f[-1])
        idx = torch.searchsorted(f, r, right=True).clamp(1, f.numel() - 1)
        f0, f1 = f[idx - 1], f[idx]
        wgt = ((r - f0) / (f1 - f0)).clamp(0, 1)
        lp = self.log_power[:, idx - 1] * (1 - wgt) + self.log_power[:, idx] * wgt
        return lp.exp().view(self.channels, h, w)

    def covariance(self, h: int, w: int) -> Tensor:
        """The dense circulant covariance [n, n] (n = C·H·W) — for tests on tiny images."""
        n = self.channels * h * w
        eye = torch.eye(n, device=self.freqs.device).view(n, self.channels, h, w)
        P = self.spectrum(h, w)
        cols = torch.fft.ifft2(P * torch.fft.fft2(eye, norm="ortho"), norm="ortho").real
        return cols.reshape(n, n)

    def _denoise(self, x_t: Tensor, t: Tensor, x0: bool) -> Tensor:
        self.check_input(x_t)
        a = self.alpha_bar(t, x_t)
        P = self.spectrum(*x_t.shape[-2:]).to(x_t.dtype)
        d = torch.fft.fft2(x_t - a.sqrt() * self.mean, norm="ortho")
        gain = (a.sqrt() * P if x0 else (1 - a).sqrt()) / (a * P + 1 - a)
        out = torch.fft.ifft2(gain * d, norm="ortho").real
        return self.mean + out if x0 else out

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self._denoise(x_t, t, x0=False)

    def x0(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self._denoise(x_t, t, x0=True)

    def sample_prior(
        self, n: int, h: int, w: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Exact samples x0 ~ N(m, Σ) (a reference for tests)."""
        z = torch.randn(n, self.channels, h, w, generator=generator, device=self.freqs.device)
        P = self.spectrum(h, w)
        return (
            self.mean
            + torch.fft.ifft2(P.sqrt() * torch.fft.fft2(z, norm="ortho"), norm="ortho").real
        )

    # ------------------------------------------------------- constructors
    @classmethod
    def power_law(
        cls,
        alpha: float = 2.0,
        std: float = 0.5,
        f0: float = 1.0 / 64,
        mean: float | Sequence[float] = 0.0,
        channels: int = 3,
        num_points: int = 512,
        **kwargs,
    ) -> GaussianPrior:
        """P(|ω|) ∝ (|ω|² + f0²)^(−α/2) — natural images have α ≈ 2 (Field 1987).

        Normalised so that the pixel variance is ``std²`` in the continuum limit (the integral of
        P over the Nyquist square [−½, ½]² equals ``std²``); ``f0`` (cycles/pixel) keeps DC finite.
        """
        if std <= 0 or f0 <= 0:
            raise ValueError("power_law needs std > 0 and f0 > 0")
        freqs = torch.linspace(0, math.sqrt(0.5), num_points, dtype=torch.float64)
        shape = (freqs**2 + f0**2) ** (-alpha / 2)
        g = (torch.arange(1024, dtype=torch.float64) + 0.5) / 1024 - 0.5  # midpoint rule
        r2 = g.view(-1, 1) ** 2 + g.view(1, -1) ** 2
        integral = ((r2 + f0**2) ** (-alpha / 2)).mean()
        return cls(
            mean=mean, freqs=freqs, power=shape * std**2 / integral, channels=channels, **kwargs
        )

    @classmethod
    def fit(cls, images: Tensor | Sequence[Tensor], num_bins: int = 64, **kwargs) -> GaussianPrior:
        """Fit mean and radial spectrum to images in model space [-1, 1].

        Args:
            images: a ``[N, C, H, W]`` tensor, or a sequence of ``[C, H, W]`` tensors of any sizes.
            num_bins: radial bins between 0 and √2/2 cycles/pixel (empty bins are interpolated).
        """
        imgs = (
            [images[i] for i in range(images.shape[0])]
            if isinstance(images, Tensor)
            else list(images)
        )
        if not imgs:
            raise ValueError("GaussianPrior.fit got no images")
        c = imgs[0].shape[0]
        if any(im.dim() != 3 or im.shape[0] != c for im in imgs):
            raise ValueError("GaussianPrior.fit needs [C,H,W] images with the same channel count")
        total = sum(im.double().sum((1, 2)) for im in imgs)
        count = sum(im.shape[1] * im.shape[2] for im in imgs)
        mean = total / count
        edges = torch.linspace(0, math.sqrt(0.5) + 1e-9, num_bins + 1, dtype=torch.float64)
        acc = torch.zeros(c, num_bins, dtype=torch.float64)
        cnt = torch.zeros(num_bins, dtype=torch.float64)
        for im in imgs:
            d = im.double() - mean.view(c, 1, 1)
            p = torch.fft.fft2(d, norm="ortho").abs() ** 2
            r = _radial_freq(*im.shape[1:]).double().flatten()
            b = torch.bucketize(r, edges[1:-1])
            acc.index_add_(1, b, p.flatten(1))
            cnt.index_add_(0, b, torch.ones_like(r))
        keep = cnt > 0
        centres = 0.5 * (edges[:-1] + edges[1:])
        centres[0] = 0.0  # the first bin holds DC
        freqs = centres[keep]
        power = (acc[:, keep] / cnt[keep]).clamp_min(1e-8)
        return cls(mean=mean.float().tolist(), freqs=freqs, power=power, channels=c, **kwargs)

    @classmethod
    def from_images(cls, source: str | Path | Tensor | Sequence[Tensor], **kwargs) -> GaussianPrior:
        """:meth:`fit` on a tensor / list of tensors, or on every image file in a folder (RGB)."""
        if isinstance(source, (str, Path)):
            from PIL import Image

            root = Path(source)
            files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
            if not files:
                raise FileNotFoundError(f"GaussianPrior.from_images: no images under {root}")
            imgs = []
            for p in files:
                with Image.open(p) as im:
                    arr = torch.frombuffer(
                        bytearray(im.convert("RGB").tobytes()), dtype=torch.uint8
                    )
                    arr = arr.view(im.height, im.width, 3).permute(2, 0, 1).float()
                imgs.append(arr / 127.5 - 1.0)
            source = imgs
        return cls.fit(source, **kwargs)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, bins={self.freqs.numel()}"


class PowerLawGaussianPrior(GaussianPrior):
    """:meth:`GaussianPrior.power_law` as a class, so configs can name it with ``class_path``."""

    def __init__(
        self,
        alpha: float = 2.0,
        std: float = 0.5,
        f0: float = 1.0 / 64,
        mean: float | Sequence[float] = 0.0,
        channels: int = 3,
    ) -> None:
        ref = GaussianPrior.power_law(alpha=alpha, std=std, f0=f0, mean=mean, channels=channels)
        super().__init__(
            mean=mean,
            freqs=ref.freqs.double(),
            power=ref.log_power.double().exp(),
            channels=channels,
        )
        self.name = f"gaussian-powerlaw-{alpha:g}"


class FittedGaussianPrior(GaussianPrior):
    """:meth:`GaussianPrior.from_images` on a folder, as a class for configs (``source`` = folder)."""

    def __init__(self, source: str, num_bins: int = 64) -> None:
        ref = GaussianPrior.from_images(source, num_bins=num_bins)
        super().__init__(
            mean=ref.mean.flatten().tolist(),
            freqs=ref.freqs.double(),
            power=ref.log_power.double().exp(),
            channels=ref.channels,
        )
        self.name = f"gaussian-fitted:{Path(source).name}"
