"""The operator protocol: a linear degradation ``y = A x`` as an ``nn.Module``.

Every degradation in lit_restore ("physics" in deepinv's words) is a :class:`LinearOperator`.
Kernels and masks are buffers, so ``.to(device)`` and ``state_dict`` just work.

Per-image randomness (a motion kernel, an inpainting mask) is *not* drawn inside ``A``: the data
pipeline calls :meth:`LinearOperator.sample_params` once per image with a generator seeded by
``(seed, index)``, the batch carries the parameters (``batch["params"]``), and whoever applies the
operator to that batch first calls :meth:`LinearOperator.bind`. Measurement and guidance therefore
always use the same kernel/mask (the mismatch of DPS issue #7 cannot happen).

Methods (all on NCHW tensors in model space):

- ``A(x)``, ``adjoint(y)`` — exact adjoint: ``<A x, y> = <x, Aᵀ y>``.
- ``pinv(y)`` — the Moore–Penrose pseudo-inverse ``A⁺ y`` (exact where the structure allows).
- ``pinv_reg(y, eta)`` — ``Aᵀ (A Aᵀ + η I)⁻¹ y`` (DDPG's back-projection, ``A_pinv_add_eta``).
- SVD view (``has_svd``): ``A = U diag(s) Vᵀ`` with ``Vt(x)``, ``V(z)``, ``Ut(y)``, ``U(z)`` and
  ``singulars()``. The spectral vector is flat per image, shape ``[B, n]`` with ``n = numel(x)``;
  ``singulars()`` has shape ``[n]`` or ``[B, n]`` and is zero on the null space. ``Ut(y)`` returns
  the first ``numel(y)`` spectral coefficients padded with zeros to ``n``; ``U(z)`` reads the
  first ``numel(y)``. This is the DDRM/DDNM ``H_funcs`` convention
  (bahjat-kawar/ddrm ``functions/svd_replacement.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import Tensor, nn


class OperatorCapabilityError(NotImplementedError):
    """A method needs something the operator does not provide (e.g. an SVD)."""


class LinearOperator(nn.Module):
    """Base class of all degradation operators. Subclasses implement ``A`` and ``adjoint``."""

    #: True when the subclass implements the SVD view (``V``, ``Vt``, ``U``, ``Ut``, ``singulars``).
    has_svd: bool = False

    # ----------------------------------------------------------------- core
    def A(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def adjoint(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.A(x)

    def measurement_shape(self, x_shape: tuple[int, ...] | torch.Size) -> tuple[int, ...]:
        """Shape of ``A(x)`` for an ``x`` of shape ``x_shape`` (subclasses may answer analytically)."""
        with torch.no_grad():
            return tuple(self.A(torch.zeros(tuple(x_shape), device=self._device())).shape)

    # ------------------------------------------------------- pseudo-inverses
    def pinv(self, y: Tensor) -> Tensor:
        """``A⁺ y``. Default: through the SVD view, ``V diag(1/s) Uᵀ y`` with 1/0 := 0."""
        if not self.has_svd:
            raise OperatorCapabilityError(
                f"{type(self).__name__} has no pseudo-inverse; use an operator with an SVD or "
                "FFT structure, or a method that needs only A and its adjoint (DPS, SaFaRI)."
            )
        s = self.singulars()
        inv = torch.where(s > 0, 1.0 / s.clamp_min(1e-30), torch.zeros_like(s))
        return self.V(inv * self.Ut(y), like=self._x_like(y))

    def pinv_reg(self, y: Tensor, eta: float | Tensor) -> Tensor:
        """``Aᵀ (A Aᵀ + η I)⁻¹ y`` = ``V diag(s / (s² + η)) Uᵀ y`` through the SVD view."""
        if not self.has_svd:
            raise OperatorCapabilityError(
                f"{type(self).__name__} has no regularised pseudo-inverse (no SVD/FFT structure)."
            )
        s = self.singulars()
        return self.V(s / (s * s + eta) * self.Ut(y), like=self._x_like(y))

    # -------------------------------------------------------------- SVD view
    def Vt(self, x: Tensor) -> Tensor:
        raise OperatorCapabilityError(f"{type(self).__name__} has no SVD view")

    def V(self, z: Tensor, like: Tensor | tuple[int, ...] | None = None) -> Tensor:
        raise OperatorCapabilityError(f"{type(self).__name__} has no SVD view")

    def Ut(self, y: Tensor) -> Tensor:
        raise OperatorCapabilityError(f"{type(self).__name__} has no SVD view")

    def U(self, z: Tensor) -> Tensor:
        raise OperatorCapabilityError(f"{type(self).__name__} has no SVD view")

    def singulars(self) -> Tensor:
        raise OperatorCapabilityError(f"{type(self).__name__} has no SVD view")

    def _x_like(self, y: Tensor) -> tuple[int, ...] | None:
        """Shape of the image ``x`` that produced measurement ``y`` (needed by ``V``)."""
        return getattr(self, "x_shape_hint", None)

    # ------------------------------------------------------- per-image params
    def sample_params(self, generator: torch.Generator, image_shape: tuple[int, ...]) -> dict:
        """Per-image random parameters (unbatched tensors), drawn from ``generator``.

        ``image_shape`` is ``(C, H, W)``. Deterministic operators return ``{}``.
        """
        return {}

    def prepare(self, x_shape: tuple[int, ...]) -> None:
        """Record the image shape ``(C, H, W)`` before the SVD view is used.

        Samplers call this once per batch: an operator whose SVD depends on the image size
        (separable SR, masks, point-wise operators) can then answer ``singulars()``/``U``/``V``
        before ``A`` has ever been applied. Default: nothing to record.
        """

    def bind(self, params: Mapping[str, Tensor] | None) -> LinearOperator:
        """A view of this operator with batched per-image parameters (leading dim B) set.

        The returned object shares every buffer it does not override; ``self`` is unchanged.
        """
        if not params:
            return self
        bound = copy.copy(self)
        bound._buffers = dict(self._buffers)
        bound._parameters = dict(self._parameters)
        bound._modules = dict(self._modules)
        for key, value in params.items():
            if key not in self.param_names():
                raise KeyError(
                    f"{type(self).__name__} got unknown per-image parameter {key!r}; "
                    f"expected one of {sorted(self.param_names())}"
                )
            setattr(bound, key, value)
        return bound

    def param_names(self) -> set[str]:
        """Names of the per-image parameters that :meth:`sample_params` returns."""
        return set()

    # -------------------------------------------------------------- helpers
    def to_image(self, y: Tensor) -> Tensor:
        """A viewable low-quality image of the measurement (for grids and for ResShift's LQ).

        Default: ``y`` itself when it already looks like an image, else ``Aᵀ y``.
        """
        return y

    def _device(self) -> torch.device:
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    def extra_repr(self) -> str:
        return ""


class DenseOperator(LinearOperator):
    """An explicit matrix ``A ∈ R^{m×n}`` acting on flattened images (tests and tiny problems).

    Its SVD is computed exactly with ``torch.linalg.svd``; it is the reference every structured
    operator can be checked against.
    """

    has_svd = True

    def __init__(self, matrix: Tensor, x_shape: tuple[int, ...]) -> None:
        super().__init__()
        matrix = torch.as_tensor(matrix, dtype=torch.float32)
        n = 1
        for d in x_shape:
            n *= d
        if matrix.shape[1] != n:
            raise ValueError(f"matrix has {matrix.shape[1]} columns but x_shape {x_shape} has {n}")
        self.x_shape_hint = tuple(x_shape)
        u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=True)
        self.register_buffer("matrix", matrix)
        self.register_buffer("_u", u.float())
        self.register_buffer("_vh", vh.float())
        s_full = torch.zeros(n, dtype=torch.float64)
        k = min(matrix.shape)
        s_full[:k] = s[:k]
        s_full[s_full < 1e-6 * s_full.max()] = 0
        self.register_buffer("_s", s_full.float())

    @property
    def m(self) -> int:
        return self.matrix.shape[0]

    def A(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.matrix.T

    def adjoint(self, y: Tensor) -> Tensor:
        return (y.flatten(1) @ self.matrix).view(-1, *self.x_shape_hint)

    def Vt(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self._vh.T

    def V(self, z: Tensor, like=None) -> Tensor:
        return (z @ self._vh).view(-1, *self.x_shape_hint)

    def Ut(self, y: Tensor) -> Tensor:
        c = y.flatten(1) @ self._u
        out = torch.zeros(y.shape[0], self._s.numel(), dtype=y.dtype, device=y.device)
        out[:, : c.shape[1]] = c
        return out

    def U(self, z: Tensor) -> Tensor:
        return z[:, : self.m] @ self._u.T

    def singulars(self) -> Tensor:
        return self._s

    def measurement_shape(self, x_shape) -> tuple[int, ...]:
        return (x_shape[0], self.m)
