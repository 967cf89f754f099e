"""Divergence of a restoration: its values driven to the ends of the range.

A guidance step that is too large (DPS or SaFaRI with ``scale: 1e6``) makes x̂ blow up; the
final clamp to [-1, 1] then hides the blow-up as a two-valued black/white image, which scores
like a (bad) restoration. It is flagged per image from the **clipped fraction**

    c(x) = fraction of the values of the 8-bit image (as the PNG holds it) at level 0 or 255.

An image is **diverged** when ``c(x̂) > (1 + c(r)) / 2``, with ``r`` the reference (or, without
one, the viewable measurement ``lq``, whose clipping follows the same scene). Why this threshold:
a restoration that follows the content clips about where the reference clips, ``c(x̂) ≈ c(r)``;
a diverged one has every value pushed to ±1, ``c(x̂) → 1``. The midpoint of the two flags an
image once more than half of the values that the reference leaves inside the range are clipped
in the restoration (``(c(x̂) − c(r)) / (1 − c(r)) > ½``). On the analytic Gaussian prior with
SR×4 at 32 px (10 steps) the DPS/SaFaRI defaults clip 0–13 % of the values (references: 0–18 %),
``scale: 1e3`` clips 64–80 % and ``scale: 1e6`` 80–95 %: the flag separates them with a margin
on both sides (``tests/test_callbacks.py``).

The measurement residual ‖y − A x̂‖ is not used: with a prior this far from the data it is
larger at a well-behaved small step (0.6 in model units, above) than at a diverging one (0.4).
"""

from __future__ import annotations

from torch import Tensor


def clipped_fraction(x: Tensor) -> Tensor:
    """``[N]`` fraction of the values of [0, 1] images ``[N, C, H, W]`` whose 8-bit level (decided
    in float32, as :func:`lit_restore.data.io.save_png` decides it) is 0 or 255."""
    levels = (x.float().clamp(0, 1) * 255).round()
    return ((levels == 0) | (levels == 255)).flatten(1).double().mean(1)


def diverged(restored: Tensor, reference: Tensor) -> Tensor:
    """``[N]`` bool: the restoration clips more than halfway from the reference's clipped
    fraction to 1 (module docstring). Both in [0, 1]; shapes may differ (a measurement)."""
    c_x, c_r = clipped_fraction(restored), clipped_fraction(reference)
    return c_x > (1 + c_r.to(c_x.device)) / 2
