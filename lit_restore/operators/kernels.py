"""Filter kernels: Keys cubic, Gaussian, box, and two seeded random motion-blur trajectories
(:func:`motion_kernel`, ours; :func:`motionblur_kernel`, the model of LeviBorodenko/motionblur
that DPS and DDPG draw their kernels from).

All functions return float64 tensors on the CPU unless told otherwise; operators cast them to
their buffers' dtype. Kernels are indexed so that the centre tap of an odd kernel of length ``k``
sits at ``k // 2``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def keys_cubic(x: Tensor, a: float = -0.5) -> Tensor:
    """Keys' cubic convolution kernel (Keys 1981, eq. 15), ``a = -0.5`` as MATLAB ``imresize``.

    ``W(x) = (a+2)|x|³ − (a+3)|x|² + 1`` for ``|x| ≤ 1``, ``a|x|³ − 5a|x|² + 8a|x| − 4a`` for
    ``1 < |x| < 2``, ``0`` otherwise. Used by DDRM/DDNM/DDPG ``bicubic_kernel`` and by DPS's
    ``Resizer`` (``util/resizer.py::cubic``).
    """
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (a + 2) * ax3 - (a + 3) * ax2 + 1
    far = a * ax3 - 5 * a * ax2 + 8 * a * ax - 4 * a
    return torch.where(ax <= 1, near, torch.where(ax < 2, far, torch.zeros_like(ax)))


def keys_kernel_1d(factor: int, a: float = -0.5) -> Tensor:
    """The DDRM ``SRConv`` kernel: length ``4·factor``, taps ``W((i − 2·factor + ½)/factor)``,
    normalised to sum to 1 (bahjat-kawar/ddrm ``main``/``runners/diffusion.py``, ``sr_bicubic``)."""
    i = torch.arange(4 * factor, dtype=torch.float64)
    k = keys_cubic((i - 2 * factor + 0.5) / factor, a)
    return k / k.sum()


def gaussian_kernel_1d(size: int, sigma: float, truncate: float = 4.0) -> Tensor:
    """Sampled, normalised Gaussian ``exp(−x²/2σ²)`` on ``x = −size//2 … size//2``.

    Taps farther than ``int(truncate·σ + ½)`` from the centre are zero, as in
    ``scipy.ndimage.gaussian_filter`` (default ``truncate=4``), which DPS applies to a delta to
    build its 61×61, σ=3 kernel (``guided_diffusion/measurements.py::Blurkernel``). The 2-D DPS
    kernel is the outer product of this 1-D kernel with itself.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {size}")
    if sigma <= 0:
        raise ValueError(f"Gaussian sigma must be > 0, got {sigma}")
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g[x.abs() > int(truncate * sigma + 0.5)] = 0
    return g / g.sum()


def uniform_kernel_1d(size: int) -> Tensor:
    """Box kernel ``1/size`` (DDRM/DDPG ``deblur_uni`` with ``size=9``)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {size}")
    return torch.full((size,), 1.0 / size, dtype=torch.float64)


def motion_kernel(
    size: int,
    intensity: float,
    generator: torch.Generator | None = None,
    oversample: int = 8,
) -> Tensor:
    """A random camera-shake kernel ``[size, size]``: a rasterised random trajectory.

    Our own generator (not LeviBorodenko/motionblur). The camera path is a chain of
    ``oversample·size`` unit steps whose heading performs a random walk:

    - heading increments ``Δθ ~ N(0, (2π·intensity)² / n_steps)`` — the total wander of the
      heading over the path has std ``2π·intensity``;
    - with probability ``0.02·intensity`` per step a sudden turn ``U(−π, π)·intensity`` (a jerk);
    - step lengths ``1 + intensity·U(−½, ½)`` (irregular speed → uneven exposure along the path).

    ``intensity = 0`` is a straight linear motion; ``intensity = 1`` a strongly curved, jerky path.
    The path is centred on its bounding box and scaled so that it spans a random fraction
    ``U(0.5, 1)`` of the usable radius ``(size−1)/2 − 1``; each point is splatted bilinearly and
    the kernel is normalised to sum to 1 (it is nonnegative by construction).

    Args:
        size: odd kernel side (DPS: 61).
        intensity: irregularity in [0, 1] (DPS: 0.5).
        generator: the per-image generator (all randomness comes from it).
        oversample: points per kernel pixel along the path.
    """
    if size < 3 or size % 2 == 0:
        raise ValueError(f"motion kernel_size must be an odd integer >= 3, got {size}")
    if not 0.0 <= intensity <= 1.0:
        raise ValueError(f"motion blur intensity must be in [0, 1], got {intensity}")
    n = oversample * size

    def rand(*shape: int) -> Tensor:
        return torch.rand(shape, generator=generator, dtype=torch.float64)

    theta0 = 2 * math.pi * rand(1)
    dtheta = torch.randn(n, generator=generator, dtype=torch.float64)
    dtheta = dtheta * (2 * math.pi * intensity / math.sqrt(n))
    jerk = (rand(n) < 0.02 * intensity).double() * (rand(n) * 2 - 1) * math.pi * intensity
    heading = theta0 + torch.cumsum(dtheta + jerk, 0)
    step = 1 + intensity * (rand(n) - 0.5)
    path = torch.cumsum(torch.stack([torch.cos(heading), torch.sin(heading)], 1) * step[:, None], 0)
    path = path - (path.max(0).values + path.min(0).values) / 2
    radius = path.norm(dim=1).max().clamp_min(1e-12)
    usable = (size - 1) / 2 - 1
    path = path * (usable * (0.5 + 0.5 * rand(1)) / radius)

    centre = (size - 1) / 2
    px, py = path[:, 0] + centre, path[:, 1] + centre
    x0, y0 = px.floor().long(), py.floor().long()
    fx, fy = px - x0, py - y0
    kernel = torch.zeros(size, size, dtype=torch.float64)
    for dx, dy, w in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        kernel.index_put_((y0 + dy, x0 + dx), w, accumulate=True)
    return kernel / kernel.sum()


def motionblur_kernel(size: int, intensity: float, rng: np.random.RandomState) -> Tensor:
    """A motion-blur kernel ``[size, size]`` from the random-trajectory model of
    LeviBorodenko/motionblur ``motionblur.py::Kernel`` (used by DPS ``measurements.py``
    ``MotionBlurOperator`` and DDPG ``guided_diffusion/diffusion.py``, size 61, intensity 0.5),
    drawn from ``rng`` in the model's order, so ``RandomState(s)`` gives the kernel that
    ``np.random.seed(s); Kernel(...)`` gives (DDPG seeds image i with 10·i).

    The model, on a canvas of twice the kernel size (side 2·size, diagonal D), intensity I:

    1. path length L = 0.75·D·(U(0,1) + U(0, I²)); step lengths β(1, 30)·(1 − I + 0.1)·D,
       drawn until they add up to L (a draw that alone exceeds L is discarded);
    2. the largest angle Θ ~ U(0, I·π) and a sign-flip probability j ~ β(2, 20); the first
       heading ~ U(−Θ, Θ), each next one triangular(0, I·Θ, Θ + 0.1) in magnitude, with the sign
       of the previous heading flipped with probability j;
    3. the path is the cumulative sum of the steps as complex increments, centred on its mean,
       rotated by U(0, π) and moved to the canvas centre;
    4. rasterised as a polyline of width int(D/150), Gaussian-blurred with radius
       int(0.01·D), resized to ``size`` with Lanczos, taken as 8-bit luma and normalised to sum 1
       (Pillow's ``ImageDraw.line``, ``GaussianBlur``, ``LANCZOS``, ``convert("L")``).

    Below size 53 the model's line width int(D/150) is 0, Pillow draws nothing and the official
    kernel is 0/0; we draw width 1 there (sizes ≥ 53, DPS's and DDPG's 61 included, are the
    model's own).
    """
    from PIL import Image, ImageDraw, ImageFilter

    if size < 3:
        raise ValueError(f"motion kernel_size must be >= 3, got {size}")
    if not 0.0 <= intensity <= 1.0:
        raise ValueError(f"motion blur intensity must be in [0, 1], got {intensity}")
    side = 2 * size
    diagonal = (2 * side**2) ** 0.5
    max_len = 0.75 * diagonal * (rng.uniform() + rng.uniform(0, intensity**2))
    steps: list[float] = []
    while sum(steps) < max_len:
        step = rng.beta(1, 30) * (1 - intensity + 0.1) * diagonal
        if step < max_len:
            steps.append(step)
    max_angle = rng.uniform(0, intensity * math.pi)
    flip = rng.beta(2, 20)
    angles = [rng.uniform(low=-max_angle, high=max_angle)]
    while len(angles) < len(steps):
        angle = rng.triangular(0, intensity * max_angle, max_angle + 0.1)
        sign = np.sign(angles[-1])
        angles.append(angle * (-sign if rng.uniform() < flip else sign))
    path = np.cumsum(np.asarray(steps) * np.exp(1j * np.asarray(angles)))
    path = path - sum(path) / len(steps)  # the mean, summed left to right as the model does
    path = path * np.exp(1j * rng.uniform(0, math.pi)) + (side + 1j * side) / 2
    canvas = Image.new("RGB", (side, side))
    width = max(int(diagonal / 150), 1)
    ImageDraw.Draw(canvas).line(xy=[(p.real, p.imag) for p in path], width=width)
    canvas = canvas.filter(ImageFilter.GaussianBlur(radius=int(diagonal * 0.01)))
    gray = canvas.resize((size, size), resample=Image.LANCZOS).convert("L")
    kernel = np.asarray(gray, dtype=np.float32)
    return torch.from_numpy(kernel / kernel.sum())
