"""The shared loop on the latents of a :class:`~lit_restore.priors.latent.LatentDiffusionPrior`.

A latent method runs :class:`~lit_restore.samplers.base.Sampler`'s loop on ``z`` with the
composed forward map ``A ∘ D`` (:class:`DecodedOperator`: decode, then the pixel operator) in
place of ``A``, and returns ``D(z_0)``. So a pixel method whose update needs only a
differentiable ``A`` (DPS, SaFaRI) becomes its latent counterpart with no change to its maths —
the fidelity is taken through the decoder, as in latent DPS (Rout et al., NeurIPS 2023, Sec. 3;
LituRout/PSLD ``stable-diffusion/ldm/models/diffusion/psld.py``, γ = 0) — and latent-only
methods (PSLD, ReSample) reach ``E``, ``D`` and the pixel operator through
:attr:`DecodedOperator.pixel` / :attr:`DecodedOperator.prior`.

What a method needs from the *pixel* operator (PSLD: ``A⁺``) is :attr:`LatentSampler.pixel_needs`,
checked before sampling; ``A ∘ D`` itself is nonlinear and declares nothing. Latents are not
clamped (``clip_denoised=False``): they have no [-1, 1] range (LDM's DDIM sampler clamps nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from lit_restore.operators.base import Operator, require_capabilities
from lit_restore.priors.base import DiffusionPrior
from lit_restore.priors.latent import LatentDiffusionPrior
from lit_restore.samplers.base import Generators, Sampler, StepInfo
from lit_restore.utils.seeding import NoiseFn


class DecodedOperator(Operator):
    """``z ↦ A(D(z))``: the pixel operator ``pixel`` (bound to its image shape) after the
    prior's decoder. :attr:`image_shape` stays the *image's* (SaFaRI's ψ_s reads it)."""

    def __init__(self, pixel: Operator, prior: LatentDiffusionPrior) -> None:
        super().__init__()
        self.pixel = pixel
        # not a sub-module: the prior belongs to the restoration module, this view is transient
        object.__setattr__(self, "prior", prior)
        self.image_shape = pixel.image_shape

    def A(self, z: Tensor) -> Tensor:
        return self.pixel.A(self.prior.decode(z))

    def at(self, x_shape) -> DecodedOperator:
        """Already bound: the loop's (latent) shape does not change the image's."""
        return self


class LatentSampler(Sampler):
    """Mix-in base of the latent methods: :meth:`sample` maps the problem to latents and back."""

    #: what the method needs from the pixel operator (``"pinv"`` …, as :attr:`Sampler.needs`)
    pixel_needs: frozenset[str] = frozenset()
    #: what it needs from ``A ∘ D``: a differentiable map only
    needs = frozenset()

    def sample(
        self,
        prior: DiffusionPrior,
        operator: Operator | None,
        y: Tensor | None,
        *,
        sigma_y: float = 0.0,
        generator: Generators = None,
        callback: Callable[[StepInfo], None] | None = None,
        x_shape: Sequence[int] | None = None,
        noise: NoiseFn | None = None,
    ) -> Tensor:
        """Restore ``y`` through the latent prior; returns the decoded image ``D(z_0)`` in model
        space. Arguments as :meth:`Sampler.sample` (``x_shape`` is the *image* shape); the
        callback's tensors are latents."""
        if not isinstance(prior, LatentDiffusionPrior):
            raise TypeError(
                f"{type(self).__name__} runs on a latent prior (LDMPrior, DiffusersLatentPrior); "
                f"got {type(prior).__name__} — use the pixel method (e.g. DPS, SaFaRI) with it"
            )
        if operator is None or y is None:
            raise ValueError(f"{type(self).__name__}.sample needs an operator and a measurement y")
        require_capabilities(operator, self.pixel_needs, type(self).__name__)
        image_shape = tuple(x_shape) if x_shape is not None else operator.image_shape_for(y)
        composed = DecodedOperator(operator.at(image_shape), prior)
        z = super().sample(
            prior,
            composed,
            y,
            sigma_y=sigma_y,
            generator=generator,
            callback=callback,
            x_shape=prior.latent_shape(image_shape),
            noise=noise,
        )
        with torch.no_grad():
            return prior.decode(z)
