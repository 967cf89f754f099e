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
) -> Tensor:
    """Solve ``M u = b`` for a symmetric positive semi-definite ``M`` (one system per image).

    Starts from ``u = 0``, so on a singular consistent system it converges to the minimum-norm
    solution (Krylov iterates stay in the range of ``M``). Stops when every image's residual
    satisfies ``‖r‖ ≤ tol·‖b‖`` or after ``max_iter`` iterations.
    """
    u = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = _dot(r, r)
    stop = (tol**2) * _dot(b, b)
    tiny = torch.finfo(b.dtype).tiny
    for _ in range(max_iter):
        if bool((rr <= stop).all()):
            break
        mp = matvec(p)
        denom = _dot(p, mp)
        alpha = torch.where(denom > 0, rr / denom.clamp_min(tiny), torch.zeros_like(rr))
        u = u + alpha * p
        r = r - alpha * mp
        rr_new = _dot(r, r)
        beta = torch.where(rr > 0, rr_new / rr.clamp_min(tiny), torch.zeros_like(rr))
        p = r + beta * p
        rr = rr_new
    return u
