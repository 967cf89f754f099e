"""PSLD — Posterior Sampling with Latent Diffusion (Rout et al., NeurIPS 2023, arXiv 2307.00619).

Latent DPS plus a "gluing" term that asks the estimate to be a fixed point of encoding the
image that agrees with the measurement on range(Aᵀ) and with the decoded estimate on its
complement (paper Eq. 8 / Algorithm 2; LituRout/PSLD
``stable-diffusion/ldm/models/diffusion/psld.py::DDIMSampler.p_sample_ddim``, ``general_inverse``
branch):

    ẑ0      = (z_t − √(1−ᾱ_t) ε_θ(z_t, t)) / √ᾱ_t
    z'      = √ᾱ_{t'} ẑ0 + √(1 − ᾱ_{t'} − σ_t²) ε_θ + σ_t n          (DDIM(η); official η = 0)
    x̂       = D(ẑ0)
    L_b     = ω ‖y − (A x̂ + σ_y n')‖ + γ ‖E(A⁺y + (I − A⁺A) x̂) − ẑ0‖      (per image, non-squared)
    z_{t'}  = z' − ∇_{z_t} L_b

**The official chain** (``ddim_schedule="ldm"``, the default): the CompVis LDM DDIM tables as
the PSLD fork computes them (:func:`lit_restore.diffusion.ldm_ddim_schedule`): network timesteps
``range(0, T, T // N) + 1``, ᾱ at those timesteps (one less at N = T and every N > T/2, where the
network is then asked at t + 1: the fork's fix of the index overflow), and the last step ending
at ᾱ_0 = 1 − β_0 rather than ᾱ = 1 — the returned image is D(z) at that level. The DDIM noise n
is drawn at every step, also at η = 0 where σ_t = 0 (``noise_like``: it consumes the stream).
``ddim_schedule="respaced"`` runs the shared loop's chain instead (``spacing``, ending at ᾱ = 1,
network and ᾱ at the same timestep, no draw at η = 0).

**The measurement noise inside the loss** (``noisy_residual=True``, the default): the official
code passes A x̂ through the task's measurement noiser before the residual — a fresh draw
σ_y n' at every step (``meas_pred = noiser(meas_pred)``; ``GaussianNoise``), which the published
numbers (σ_y = 0.05) used; ``noisy_residual=False`` takes the noiseless A x̂ of the paper's
Eq. 8. At σ_y = 0 nothing is drawn (the official ``clean`` noiser).

**The gluing's A⁺** (``gluing_map``). The official code writes ``operator.transpose`` where the
paper writes A⁺, and its operator classes (the DPS fork's ``guided_diffusion/measurements.py``)
define that "transpose" per task: nearest-neighbour upsampling for ×4 SR (``F.interpolate``; the
exact pseudo-inverse of 4× average pooling, not of the bicubic ``Resizer`` the SR task measures
with) and the identity for Gaussian/motion deblurring and inpainting (whose y is the masked
image plus noise everywhere), so the official gluing image is y + x̂ − A x̂ there.
``gluing_map="official"`` (the default, what the published numbers used) maps by that rule from
the shapes: y of the image's shape → y itself; y smaller by an integer factor → nearest
upsampling (other shapes are refused). ``gluing_map="pinv"`` uses the operator's exact
pseudo-inverse A⁺ (the paper's Eq. 8; the two agree for average-pooling SR, for inpainting at
σ_y = 0, and wherever y is a flat measurement vector only ``"pinv"`` applies).

Published settings (``stable-diffusion/run/inverse_*_ldm.sh``, FFHQ LDM-VQ-4, 1000 DDIM steps,
η = 0): γ = 0.1, ω = 0.1 for inpainting and deblurring, ω = 0.9 for ×4 SR; Stable Diffusion
scripts: γ = 0.1, ω = 1 (``scripts/inverse.py`` defaults).

**Deviation.** Norms per image, not over the batch (as our DPS; equal at batch 1, the official
protocol), so that an image's result does not depend on its batch mates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_restore import diffusion
from lit_restore.samplers.base import SamplingContext
from lit_restore.samplers.latent_dps import LatentDPS

#: ``ddim_schedule`` values (module docstring)
DDIM_SCHEDULES = ("ldm", "respaced")
#: ``gluing_map`` values (module docstring)
GLUING_MAPS = ("official", "pinv")


class PSLD(LatentDPS):
    """PSLD on a latent prior.

    Args:
        gamma: γ, weight of the gluing term.
        omega: ω, weight of the measurement term (DPS's step ζ).
        steps, eta: the DDIM loop (official: 1000 steps, η = 0).
        ddim_schedule: ``"ldm"`` (official: the CompVis LDM DDIM tables of the PSLD fork) or
            ``"respaced"`` (the shared loop's chain with ``spacing`` and ``variance``).
        noisy_residual: pass A x̂ through the measurement noise (σ_y, a fresh draw per step)
            before the residual, as the official code does; ``False``: the noiseless residual.
        gluing_map: the map of measurements back to images in the gluing term: ``"official"``
            (the official operators' ``transpose``: identity for image-shaped y, nearest
            upsampling for SR) or ``"pinv"`` (the exact A⁺).
        spacing, variance: the ``"respaced"`` chain (``"ldm"`` requires the default ``uniform``).
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
        ddim_schedule: str = "ldm",
        noisy_residual: bool = True,
        gluing_map: str = "official",
        progress: bool = False,
    ) -> None:
        super().__init__(
            scale=omega, steps=steps, spacing=spacing, eta=eta, variance=variance, progress=progress
        )
        if ddim_schedule not in DDIM_SCHEDULES:
            raise ValueError(f"PSLD ddim_schedule must be one of {DDIM_SCHEDULES}")
        if ddim_schedule == "ldm":
            if spacing not in ("uniform", "leading") or variance != "ddim":
                raise ValueError(
                    "PSLD(ddim_schedule='ldm') is the LDM DDIM chain: leave spacing='uniform' "
                    "and variance='ddim', or set ddim_schedule='respaced'"
                )
            try:  # validate early, with PSLD's own way out (not the shared loop's spacing)
                diffusion.ldm_ddim_schedule(1000, self.steps)
            except ValueError as e:
                raise ValueError(
                    f"PSLD steps={self.steps}: the LDM DDIM chain cannot index its grid (the "
                    "official code raises IndexError there); choose other steps or set "
                    "ddim_schedule='respaced'"
                ) from e
        if gluing_map not in GLUING_MAPS:
            raise ValueError(f"PSLD gluing_map must be one of {GLUING_MAPS}")
        self.gluing_map = gluing_map
        self.gamma = float(gamma)
        self.omega = float(omega)
        self.ddim_schedule = ddim_schedule
        self.noisy_residual = bool(noisy_residual)

    # ---------------------------------------------------------- schedule
    def schedule(self, num_timesteps: int = 1000) -> list[tuple[int, int]]:
        """``"ldm"``: pairs of ᾱ indices (t, t') of :func:`~lit_restore.diffusion.
        ldm_ddim_schedule` (the last t' = 0: ᾱ_0); else the shared loop's."""
        if self.ddim_schedule != "ldm":
            return super().schedule(num_timesteps)
        _, alpha_t, alpha_next = diffusion.ldm_ddim_schedule(num_timesteps, self.steps)
        return list(zip(alpha_t, alpha_next))

    def timesteps(self, num_timesteps: int = 1000) -> list[int]:
        if self.ddim_schedule != "ldm":
            return super().timesteps(num_timesteps)
        return diffusion.ldm_ddim_schedule(num_timesteps, self.steps)[1]

    def network_timestep(self, t: int, num_timesteps: int) -> int:
        """The timestep the network is asked at for the step at ᾱ index ``t`` (``"ldm"``: t + 1
        where the fork shifted the ᾱ indices down by one)."""
        if self.ddim_schedule != "ldm":
            return t
        net_t, alpha_t, _ = diffusion.ldm_ddim_schedule(num_timesteps, self.steps)
        return t + (net_t[0] - alpha_t[0])

    # -------------------------------------------------------------- step
    def step(self, ctx: SamplingContext, x: Tensor, t: int, t_next: int) -> tuple[Tensor, Tensor]:
        if self.ddim_schedule != "ldm":
            return super().step(ctx, x, t, t_next)
        with torch.enable_grad():
            z = x.detach().requires_grad_(True)
            eps = ctx.eps(z, self.network_timestep(t, ctx.num_timesteps))
            a, a_next = ctx.alpha_bar(t, z), ctx.alpha_bar(t_next, z)
            z0 = (z - (1 - a).sqrt() * eps) / a.sqrt()
            sigma = diffusion.ddim_sigma(a, a_next, self.eta)
            z_next = diffusion.ddim_mean(z0, eps, a_next, sigma) + sigma * ctx.randn(z)
            loss, weight = self.guidance(ctx, z0, t)
            (grad,) = torch.autograd.grad(loss.sum(), z)
        with torch.no_grad():
            z_next = z_next.detach() - weight.view(-1, *[1] * (x.dim() - 1)) * grad
        return z_next, z0.detach()

    def guidance(self, ctx: SamplingContext, x0: Tensor, t: int) -> tuple[Tensor, Tensor]:
        op = ctx.operator  # A ∘ D (DecodedOperator)
        pixel, prior = op.pixel, op.prior
        image = prior.decode(x0)
        predicted = pixel.A(image)
        if self.noisy_residual and ctx.sigma_y > 0:
            predicted = predicted + ctx.sigma_y * ctx.randn(predicted)
        measurement = (ctx.y - predicted).flatten(1).norm(dim=1)
        if self.gluing_map == "pinv":
            glued = pixel.pinv(ctx.y) + image - pixel.pinv(pixel.A(image))
        else:
            back = self.official_transpose
            glued = back(ctx.y, image) + image - back(pixel.A(image), image)
        gluing = (prior.encode(glued) - x0).flatten(1).norm(dim=1)
        loss = self.omega * measurement + self.gamma * gluing
        return loss, loss.new_ones(loss.shape)

    @staticmethod
    def official_transpose(v: Tensor, image: Tensor) -> Tensor:
        """The official operators' "transpose" of a measurement ``v`` for images like ``image``:
        ``v`` itself when it has the image's shape (their inpainting and blur operators), nearest
        upsampling by the integer size ratio when it is smaller (their ``SuperResolution``)."""
        if v.shape == image.shape:
            return v
        same_layout = v.dim() == image.dim() == 4 and v.shape[:2] == image.shape[:2]
        (h, w), (H, W) = v.shape[-2:], image.shape[-2:]
        if same_layout and h and w and H % h == 0 and W % w == 0 and H // h == W // w:
            return F.interpolate(v, scale_factor=H // h)
        raise ValueError(
            f"PSLD(gluing_map='official') maps image-shaped measurements by the identity and "
            f"integer-downscaled ones by nearest upsampling; y of shape {tuple(v.shape)} for images "
            f"{tuple(image.shape)} is neither — set gluing_map: pinv"
        )

    def hparams(self) -> dict:
        return {
            **super().hparams(),
            "gamma": self.gamma,
            "omega": self.omega,
            "ddim_schedule": self.ddim_schedule,
            "noisy_residual": self.noisy_residual,
            "gluing_map": self.gluing_map,
        }
