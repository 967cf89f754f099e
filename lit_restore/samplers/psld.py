"""PSLD — Posterior Sampling with Latent Diffusion (Rout et al., NeurIPS 2023, arXiv 2307.00619).

Latent DPS plus a "gluing" term that asks the estimate to be a fixed point of encoding the
image that agrees with the measurement on range(Aᵀ) and with the decoded estimate on its
complement (paper Eq. 8 / Algorithm 2; LituRout/PSLD
``stable-diffusion/ldm/models/diffusion/psld.py::p_sample_ddim``, ``general_inverse`` branch):

    ẑ0      = (z_t − √(1−ᾱ_t) ε_θ(z_t, t)) / √ᾱ_t
    z'      = DDIM(η) step from (z_t, ẑ0)
    x̂       = D(ẑ0)
    L_b     = ω ‖y − A x̂‖ + γ ‖E(A⁺y + (I − A⁺A) x̂) − ẑ0‖          (per image, non-squared)
    z_{t−1} = z' − ∇_{z_t} L_b

The official code writes ``operator.transpose`` for A⁺ (its operators are masks and
normalised blurs, where the two coincide up to scale); the paper writes A⁺ (Aᵀ for orthonormal
rows). Here A⁺ is the operator's exact pseudo-inverse (``pinv``: the method needs it). Published
settings (``stable-diffusion/run/inverse_*_ldm.sh``, FFHQ LDM-VQ-4, 1000 DDIM steps, η = 0):
γ = 0.1, ω = 0.1 for inpainting and deblurring, ω = 0.9 for ×4 SR; Stable Diffusion scripts:
γ = 0.1, ω = 1 (``scripts/inverse.py`` defaults).

**Deviations.** (1) Norms per image, not over the batch (as our DPS; equal at batch 1, the
official protocol). (2) The official code passes ``A x̂`` through the measurement noiser
before the residual (a fresh noise draw inside the loss); we take the noiseless ``A x̂`` (the
paper's Eq. 8).
"""

from __future__ import annotations

from torch import Tensor

from lit_restore.samplers.base import SamplingContext
from lit_restore.samplers.latent_dps import LatentDPS


class PSLD(LatentDPS):
    """PSLD on a latent prior.

    Args:
        gamma: γ, weight of the gluing term.
        omega: ω, weight of the measurement term (DPS's step ζ).
        steps, spacing, eta, variance: the loop (official: 1000 DDIM steps, η = 0).
    """

    name = "psld"
    pixel_needs = frozenset({"pinv"})

    def __init__(
        self,
        gamma: float = 0.1,
        omega: float = 0.1,
        steps: int = 1000,
        spacing: str = "uniform",
        eta: float = 0.0,
        variance: str = "ddim",
        progress: bool = False,
    ) -> None:
        super().__init__(
            scale=omega, steps=steps, spacing=spacing, eta=eta, variance=variance, progress=progress
        )
        self.gamma = float(gamma)
        self.omega = float(omega)

    def guidance(self, ctx: SamplingContext, x0: Tensor, t: int) -> tuple[Tensor, Tensor]:
        op = ctx.operator  # A ∘ D (DecodedOperator)
        pixel, prior = op.pixel, op.prior
        image = prior.decode(x0)
        measurement = (ctx.y - pixel.A(image)).flatten(1).norm(dim=1)
        glued = pixel.pinv(ctx.y) + image - pixel.pinv(pixel.A(image))
        gluing = (prior.encode(glued) - x0).flatten(1).norm(dim=1)
        loss = self.omega * measurement + self.gamma * gluing
        return loss, loss.new_ones(loss.shape)

    def hparams(self) -> dict:
        return {**super().hparams(), "gamma": self.gamma, "omega": self.omega}
