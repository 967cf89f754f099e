"""The operator protocol: a linear degradation ``y = A x`` as an ``nn.Module``.

Every linear degradation in lit_restore ("physics" in deepinv's words) is a
:class:`LinearOperator`; :mod:`lit_restore.degradations` turns one (plus noise) into the data
pipeline's per-image degradation. Kernels and masks are buffers, so ``.to(device)`` and
``state_dict`` just work.

**Per-image parameters.** Randomness (a motion kernel, an inpainting mask) is *not* drawn inside
``A``: the data pipeline calls :meth:`LinearOperator.sample_params` once per image with a
generator seeded by ``(seed, index)``, the batch carries the parameters (``batch["params"]``),
and whoever applies the operator to that batch first calls :meth:`LinearOperator.bind`.
Measurement and guidance therefore always use the same kernel/mask (the mismatch of DPS issue #7
cannot happen).

**Explicit image shape.** ``A``, ``adjoint``, ``pinv`` and ``pinv_reg`` read every size from their
argument. The SVD view's ``V``, ``U`` and ``singulars`` act on flat spectral vectors, which do not
say which image they belong to, so they need the image shape ``(C, H, W)`` up front:
:meth:`LinearOperator.at` returns a view of the operator for that shape (the sampler loop calls
it once per batch), or the shape is fixed when the operator is built (``image_size=``). Nothing is
remembered from earlier calls; without a shape these methods raise.

Methods (all on NCHW tensors in model space):

- ``A(x)``, ``adjoint(y)`` — exact adjoint: ``<A x, y> = <x, Aᵀ y>``.
- ``pinv(y)`` — the Moore–Penrose pseudo-inverse ``A⁺ y`` (exact where the structure allows).
- ``pinv_reg(y, eta)`` — ``Aᵀ (A Aᵀ + η I)⁻¹ y`` (DDPG's back-projection, ``A_pinv_add_eta``);
  ``eta`` is a number or one value per image (``[B]``).
- SVD view: ``A = U diag(s) Vᵀ`` with ``Vt(x)``, ``V(z)``, ``Ut(y)``, ``U(z)`` and ``singulars()``.
  The spectral vector is flat per image, shape ``[B, n]`` with ``n = numel(x)``; ``singulars()``
  has shape ``[n]`` or ``[B, n]`` and is zero on the null space. ``Ut(y)`` returns the first
  ``numel(y)`` spectral coefficients padded with zeros to ``n``; ``U(z)`` reads the first
  ``numel(y)``. This is the DDRM/DDNM ``H_funcs`` convention
  (bahjat-kawar/ddrm ``functions/svd_replacement.py``).

**Capabilities.** Every :class:`LinearOperator` declares ``"linear"`` (``A`` is linear and
``adjoint`` its exact adjoint); what it offers beyond ``A``/``Aᵀ`` is declared by three flags,
``has_svd``, ``has_pinv`` and ``has_pinv_reg`` (the last two default to ``has_svd``: the base class
computes ``A⁺`` and ``Aᵀ(AAᵀ+ηI)⁻¹`` through the SVD), collected in
:attr:`LinearOperator.capabilities`. Needing an SVD or a pseudo-inverse implies needing linearity.
:func:`require_capabilities` is the one check of a method's needs against them; the sampler loop
calls it before sampling.

**Nonlinear operators.** :class:`Operator` is the protocol every degradation shares (``A``,
per-image parameters, :meth:`Operator.at`, ``to_image``); :class:`LinearOperator` adds the adjoint
and everything built on it, and declares the capability ``"linear"``. A nonlinear operator (JPEG,
the DPS paper's nonlinear blur and phase retrieval: :mod:`lit_restore.operators.jpeg`,
:mod:`~lit_restore.operators.nonlinear_blur`, :mod:`~lit_restore.operators.phase_retrieval`)
subclasses :class:`Operator`, implements a differentiable ``A`` and :meth:`Operator.image_shape_for`
(the image shape behind a measurement), and declares nothing: DPS and SaFaRI, which need only
``A`` and autograd, run with it; a method needing an SVD, a pseudo-inverse or an adjoint refuses
it in one line (:func:`require_capabilities`).

**A user's own operator.** The minimal class implements ``A`` and ``adjoint``; that is all DPS and
SaFaRI need::

    class Scale(LinearOperator):
        def A(self, x):
            return 0.5 * x

        def adjoint(self, y):
            return 0.5 * y

Check it with ``Scale().adjointness_test(torch.randn(2, 3, 8, 8, dtype=torch.float64))`` (≈ 1e-16).
For DDRM/DDNM/DDPG add an SVD: set ``has_svd = True`` and implement ``Vt``, ``V``, ``Ut``, ``U`` and
``singulars`` in the layout above (``V``/``U``/``singulars`` read ``self.image_shape``); ``pinv``
and ``pinv_reg`` then come from the base class, and :meth:`LinearOperator.pinv_test` checks the
Penrose identities. A structured ``pinv``/``pinv_reg`` without an SVD (an FFT, say) overrides the
method and sets ``has_pinv``/``has_pinv_reg = True``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

#: Every capability an operator may declare (see :attr:`LinearOperator.capabilities`).
CAPABILITIES: dict[str, str] = {
    "linear": "a linear A with its exact adjoint Aᵀ",
    "svd": "an SVD view (V, Vᵀ, U, Uᵀ, singular values)",
    "pinv": "a pseudo-inverse A⁺",
    "pinv_reg": "a regularised pseudo-inverse Aᵀ(AAᵀ+ηI)⁻¹",
}


class OperatorCapabilityError(NotImplementedError):
    """A method needs something the operator does not provide (e.g. an SVD)."""


#: Capabilities that only a linear operator can have: needing one of them means needing linearity.
_LINEAR_ONLY = frozenset({"linear", "svd", "pinv", "pinv_reg"})


def require_capabilities(
    operator: Operator | None, needs: Iterable[str] | None, method: str
) -> None:
    """The one check of what ``method`` needs from ``operator``.

    ``needs`` is ``None`` when the method takes no operator at all (unconditional sampling);
    otherwise an operator is required and must declare every capability in ``needs``
    (names from :data:`CAPABILITIES`).

    Raises:
        ValueError: an operator is needed and none was given.
        OperatorCapabilityError: the operator lacks a needed capability (the message names the
            method, the operator class, what is missing, and what to use instead).
    """
    if needs is None:
        return
    needs = frozenset(needs)
    unknown = needs - CAPABILITIES.keys()
    if unknown:
        raise ValueError(
            f"unknown operator capabilities {sorted(unknown)}; use {list(CAPABILITIES)}"
        )
    if operator is None:
        raise ValueError(
            f"{method} needs a degradation operator; set data.init_args.operator in the config "
            "(or pass operator= in Python)"
        )
    if needs & _LINEAR_ONLY and "linear" not in operator.capabilities:
        raise OperatorCapabilityError(
            f"{method} needs a linear operator, but {type(operator).__name__} is nonlinear; use a "
            "method that needs only a differentiable A (DPS, SaFaRI)"
        )
    missing = [c for c in CAPABILITIES if c in needs and c not in operator.capabilities]
    if missing:
        what = " and ".join(CAPABILITIES[c] for c in missing)
        raise OperatorCapabilityError(
            f"{method} needs {what}, but {type(operator).__name__} has none; use an operator that "
            "has it (SVD: DenseOperator, BicubicSR, AvgPoolSR, Inpainting, Denoising, "
            "Colorization, GaussianBlur/UniformBlur with boundary='zero'; pseudo-inverses also: "
            "any Blur) or a method that needs only A and Aᵀ (DPS, SaFaRI)."
        )


def per_image(value: float | Tensor, like: Tensor) -> float | Tensor:
    """``value`` ready to broadcast against the batch ``like``: a number stays a number, a
    per-image tensor ``[B]`` becomes ``[B, 1, …, 1]`` (``like.dim()`` dimensions)."""
    if isinstance(value, Tensor) and value.dim() > 0:
        return value.view(-1, *([1] * (like.dim() - 1)))
    return value


class Operator(nn.Module):
    """Base class of every degradation operator, linear or not. Subclasses implement ``A``
    (differentiable, for DPS-style guidance) and :meth:`image_shape_for`; linear ones derive from
    :class:`LinearOperator` instead."""

    #: The image shape ``(C, H, W)`` the operator is for (:meth:`at`); ``None`` = not fixed.
    image_shape: tuple[int, int, int] | None = None

    # ---------------------------------------------------------- capabilities
    @property
    def capabilities(self) -> frozenset[str]:
        """The declared capabilities (names of :data:`CAPABILITIES`); none for a nonlinear one."""
        return frozenset()

    # ----------------------------------------------------------------- core
    def A(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self.A(x)

    def image_shape_for(self, y: Tensor) -> tuple[int, ...]:
        """The batch shape ``(B, C, H, W)`` of the images behind the measurement ``y`` (what the
        sampler loop restores when not told)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not say which image shape its measurement comes from; "
            "implement image_shape_for(y) or pass x_shape= to the sampler"
        )

    def measurement_shape(self, x_shape: tuple[int, ...] | torch.Size) -> tuple[int, ...]:
        """Shape of ``A(x)`` for an ``x`` of shape ``x_shape`` (subclasses may answer analytically)."""
        with torch.no_grad():
            return tuple(self.A(torch.zeros(tuple(x_shape), device=self._device())).shape)

    # ----------------------------------------------------------- image shape
    def at(self, x_shape: tuple[int, ...] | torch.Size) -> Operator:
        """This operator for images of shape ``x_shape`` (``(C, H, W)``; a leading batch
        dimension is ignored): a view sharing every buffer, with :attr:`image_shape` set.

        Raises ``ValueError`` when the operator cannot act on such images (an SR factor that
        does not divide the size, a mask of another size, ...).
        """
        shape = tuple(int(v) for v in tuple(x_shape)[-3:])
        if len(shape) != 3:
            raise ValueError(f"at() needs an image shape (C, H, W), got {tuple(x_shape)}")
        if self.image_shape == shape:
            return self
        self.check_image_shape(shape)
        view = self._view()
        view.image_shape = shape
        return view

    def check_image_shape(self, shape: tuple[int, int, int]) -> None:
        """Raise ``ValueError`` if the operator cannot act on images ``shape`` (default: any)."""

    def _shape(self) -> tuple[int, int, int]:
        """:attr:`image_shape`, or a clear error when it was never given."""
        if self.image_shape is None:
            raise RuntimeError(
                f"{type(self).__name__}: V, U and singulars need the image shape; use "
                "operator.at(x.shape) (the sampler loop does) or build it with image_size=..."
            )
        return self.image_shape

    # ------------------------------------------------------- per-image params
    def sample_params(self, generator: torch.Generator, image_shape: tuple[int, ...]) -> dict:
        """Per-image random parameters (unbatched tensors), drawn from ``generator``.

        ``image_shape`` is ``(C, H, W)``. Deterministic operators return ``{}``.
        """
        return {}

    def bind(self, params: Mapping[str, Tensor] | None) -> Operator:
        """A view of this operator with batched per-image parameters (leading dim B) set.

        The returned object shares every buffer it does not override; ``self`` is unchanged.
        """
        if not params:
            return self
        bound = self._view()
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

    def _view(self) -> Operator:
        """A shallow copy whose buffer/parameter/module tables can be changed without touching
        ``self`` (what :meth:`bind` and :meth:`at` return)."""
        view = copy.copy(self)
        view._buffers = dict(self._buffers)
        view._parameters = dict(self._parameters)
        view._modules = dict(self._modules)
        return view

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


class LinearOperator(Operator):
    """Base class of the linear operators. Subclasses implement ``A`` and ``adjoint``."""

    #: True when the subclass implements the SVD view (``V``, ``Vt``, ``U``, ``Ut``, ``singulars``).
    has_svd: bool = False

    # ---------------------------------------------------------- capabilities
    @property
    def has_pinv(self) -> bool:
        """``pinv`` is available (default: through the SVD view)."""
        return self.has_svd

    @property
    def has_pinv_reg(self) -> bool:
        """``pinv_reg`` is available (default: through the SVD view)."""
        return self.has_svd

    @property
    def capabilities(self) -> frozenset[str]:
        """``"linear"`` and whichever of ``{"svd", "pinv", "pinv_reg"}`` the operator offers."""
        flags = {"svd": self.has_svd, "pinv": self.has_pinv, "pinv_reg": self.has_pinv_reg}
        return frozenset({"linear"} | {name for name, present in flags.items() if present})

    def adjoint(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def image_shape_for(self, y: Tensor) -> tuple[int, ...]:
        """``Aᵀy`` lives in image space: its shape."""
        with torch.no_grad():
            return tuple(self.adjoint(y).shape)

    # ------------------------------------------------------- pseudo-inverses
    def pinv(self, y: Tensor) -> Tensor:
        """``A⁺ y``. Default: through the SVD view, ``V diag(1/s) Uᵀ y`` with 1/0 := 0."""
        require_capabilities(self, ("svd",), f"{type(self).__name__}.pinv")
        s = self.singulars()
        inv = torch.where(s > 0, 1.0 / s.clamp_min(1e-30), torch.zeros_like(s))
        return self.V(inv * self.Ut(y))

    def pinv_reg(self, y: Tensor, eta: float | Tensor) -> Tensor:
        """``Aᵀ (A Aᵀ + η I)⁻¹ y`` = ``V diag(s / (s² + η)) Uᵀ y`` through the SVD view."""
        require_capabilities(self, ("svd",), f"{type(self).__name__}.pinv_reg")
        s = self.singulars()
        coeffs = self.Ut(y)
        return self.V(s / (s * s + per_image(eta, coeffs)) * coeffs)

    # -------------------------------------------------------------- SVD view
    def Vt(self, x: Tensor) -> Tensor:
        raise OperatorCapabilityError(f"{type(self).__name__} has no SVD view")

    def V(self, z: Tensor) -> Tensor:
        raise OperatorCapabilityError(f"{type(self).__name__} has no SVD view")

    def Ut(self, y: Tensor) -> Tensor:
        raise OperatorCapabilityError(f"{type(self).__name__} has no SVD view")

    def U(self, z: Tensor) -> Tensor:
        raise OperatorCapabilityError(f"{type(self).__name__} has no SVD view")

    def singulars(self) -> Tensor:
        raise OperatorCapabilityError(f"{type(self).__name__} has no SVD view")

    # ----------------------------------------------------------------- checks
    def adjointness_test(
        self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> float:
        """Relative defect of ``<A x, y> = <x, Aᵀ y>``:
        ``|<A x, y> − <x, Aᵀ y>| / max(‖A x‖‖y‖, ‖x‖‖Aᵀ y‖)``.

        ``y`` defaults to standard normal noise of the measurement's shape. By Cauchy–Schwarz
        both inner products are bounded by the denominator, so an exact adjoint gives round-off
        only (≈ 1e-16 in float64); a wrong one gives O(1). Use float64 inputs to test.
        """
        with torch.no_grad():
            ax = self.A(x)
            if y is None:
                y = torch.randn(ax.shape, generator=generator, dtype=ax.dtype).to(ax.device)
            aty = self.adjoint(y)
            lhs, rhs = (ax * y).sum(), (x * aty).sum()
            scale = torch.maximum(ax.norm() * y.norm(), x.norm() * aty.norm())
            return float((lhs - rhs).abs() / scale.clamp_min(torch.finfo(ax.dtype).tiny))

    def pinv_test(
        self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> dict[str, float]:
        """Relative residuals of the four Penrose identities of ``A⁺`` (zero for the exact
        Moore–Penrose inverse, round-off otherwise):

        - ``"A A+ A"``: ``‖A A⁺ A x − A x‖ / ‖A x‖``
        - ``"A+ A A+"``: ``‖A⁺ A A⁺ y − A⁺ y‖ / ‖A⁺ y‖``
        - ``"A A+ symmetric"``: ``|<A A⁺ u, v> − <u, A A⁺ v>| / (‖u‖‖v‖)`` (``u, v`` measurements)
        - ``"A+ A symmetric"``: ``|<A⁺ A p, q> − <p, A⁺ A q>| / (‖p‖‖q‖)`` (``p, q`` images)

        ``x`` is an image batch, ``y`` a measurement batch (standard normal by default); the
        symmetry checks use ``u = y``, ``v = A x`` and ``p = x``, ``q = A⁺ y``. The projections
        ``A A⁺`` and ``A⁺ A`` have norm 1, which bounds each symmetric inner product by ``‖·‖‖·‖``.
        """

        def rel(a: Tensor, b: Tensor) -> float:
            return float((a - b).norm() / b.norm().clamp_min(torch.finfo(b.dtype).tiny))

        def sym(f, u: Tensor, v: Tensor) -> float:
            d = ((f(u) * v).sum() - (u * f(v)).sum()).abs()
            return float(d / (u.norm() * v.norm()).clamp_min(torch.finfo(u.dtype).tiny))

        with torch.no_grad():
            ax = self.A(x)
            if y is None:
                y = torch.randn(ax.shape, generator=generator, dtype=ax.dtype).to(ax.device)
            py = self.pinv(y)
            return {
                "A A+ A": rel(self.A(self.pinv(ax)), ax),
                "A+ A A+": rel(self.pinv(self.A(py)), py),
                "A A+ symmetric": sym(lambda u: self.A(self.pinv(u)), y, ax),
                "A+ A symmetric": sym(lambda p: self.pinv(self.A(p)), x, py),
            }


class DenseOperator(LinearOperator):
    """An explicit matrix ``A ∈ R^{m×n}`` acting on flattened images (tests and tiny problems).

    Its SVD is computed exactly with ``torch.linalg.svd``; it is the reference every structured
    operator can be checked against. Its image shape is fixed by ``x_shape``.
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
        self.image_shape = tuple(int(d) for d in x_shape)
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

    def check_image_shape(self, shape: tuple[int, int, int]) -> None:
        if shape != self.image_shape:
            raise ValueError(f"this DenseOperator acts on images {self.image_shape}, not {shape}")

    def A(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.matrix.T

    def adjoint(self, y: Tensor) -> Tensor:
        return (y.flatten(1) @ self.matrix).view(-1, *self.image_shape)

    def Vt(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self._vh.T

    def V(self, z: Tensor) -> Tensor:
        return (z @ self._vh).view(-1, *self.image_shape)

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
