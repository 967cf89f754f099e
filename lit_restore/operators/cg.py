"""Batched conjugate gradients for the symmetric positive (semi-)definite systems of operators
that have neither an SVD nor an FFT diagonalisation (reflect-padded blur)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-image inner product, shape ``[B, 1, …, 1]``."""
    return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.dim() - 1)))


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    max_iter: int = 200,
    tol: float = 1e-6,
    x_init: Tensor | None = None,
    atol: float = 0.0,
    per_image_stop: bool = False,
) -> Tensor:
    """Solve ``M u = b`` for a symmetric positive semi-definite ``M`` (one system per image).

    Starts from ``u = 0`` by default, so on a singular consistent system it converges to the
    minimum-norm solution (Krylov iterates stay in the range of ``M``); ``x_init`` starts from
    another point (DDS starts from the denoised estimate). Stops when every image's residual
    satisfies ``‖r‖ ≤ max(tol·‖b‖, atol)`` or after ``max_iter`` iterations. With
    ``per_image_stop`` an image stops changing as soon as its own residual is that small, or at
    round-off level (``‖r‖ ≤ 8 ε_mach ‖b‖``: beyond it the residual has no direction left and, on
    a singular ``M``, the step length rr/(pᵀMp) can blow up), so its result never depends on how
    long its batch mates take.
    """
    u = torch.zeros_like(b) if x_init is None else x_init.clone()
    r = b.clone() if x_init is None else b - matvec(u)
    p = r.clone()
    rr = _dot(r, r)
    stop = torch.clamp_min((tol**2) * _dot(b, b), atol**2)
    if per_image_stop:
        stop = torch.maximum(stop, (8 * torch.finfo(b.dtype).eps) ** 2 * _dot(b, b))
    tiny = torch.finfo(b.dtype).tiny
    for _ in range(max_iter):
        if bool((rr <= stop).all()):
            break
        mp = matvec(p)
        denom = _dot(p, mp)
        alpha = torch.where(denom > 0, rr / denom.clamp_min(tiny), torch.zeros_like(rr))
        if per_image_stop:
            alpha = torch.where(rr <= stop, torch.zeros_like(alpha), alpha)
        u = u + alpha * p
        r = r - alpha * mp
        rr_new = _dot(r, r)
        beta = torch.where(rr > 0, rr_new / rr.clamp_min(tiny), torch.zeros_like(rr))
        p = r + beta * p
        rr = rr_new
    return u
