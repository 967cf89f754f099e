"""DPS — Diffusion Posterior Sampling (Chung et al., ICLR 2023, arXiv 2209.14687, Algorithm 1).

Each step runs the unconditional ancestral transition and then a gradient step on the data
fidelity of the Tweedie estimate, differentiated *through the network* w.r.t. x_t
(DPS2022/diffusion-posterior-sampling ``gaussian_diffusion.py::p_sample_loop``, ``condition_methods.py::PosteriorSampling``):

    x̂0   = clamp((x_t − √(1−ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t, −1, 1)      (clamp inside the graph)
    x'   = μ̃_t(x_t, x̂0) + σ_t z                                     (ancestral step, no guidance)
    x_{t−1} = x' − ζ_t ∇_{x_t} ‖r‖,   r = y − A x̂0                  (step="code": ζ_t = ``scale``)
    x_{t−1} = x' − ζ′/‖r‖ · ∇_{x_t} ‖r‖²                            (step="paper": ζ′ = ``scale``)

**Variance.** Official DPS runs guided-diffusion's ``p_sample`` with ``model_var_type:
learned_range`` (``configs/diffusion_config.yaml``; the ADM checkpoints have ``learn_sigma``):
σ_t² interpolates log β_t and log β̃_t with the network's variance channels
(``guided_diffusion/posterior_mean_variance.py::LearnedRangeVarianceProcessor``). The default
``variance="auto"`` does that when the prior has the channels and uses β̃_t (``fixed_small``)
otherwise; ``variance="ddim"`` with ``eta`` is the DDIM(η) transition instead. The chain is
respaced with guided-diffusion's ``space_timesteps`` (``spacing="guided_diffusion"``).

The official code uses the non-squared norm ``torch.linalg.norm`` with a constant ``scale``
(0.3 for SR/deblur, 0.5 for inpainting, repo configs); the paper writes ζ_i = ζ′/‖r‖ with the
squared norm. Since ∇‖r‖² = 2‖r‖∇‖r‖, the paper step equals the code step with scale = 2ζ′.

**Per-sample norms.** The official code takes ‖r‖ over the whole batch
(``condition_methods.py::ConditioningMethod.grad_and_value``: ``torch.linalg.norm`` of the batch's
residual), so a result depends on its batch mates (DPS issue #12). Here D is a vector of
per-image fidelities, and the gradient of Σ_b √D_b w.r.t. x_t gives each image the gradient of
its own norm (the network acts per image). At batch size 1 the two are the same computation —
the official protocol samples one image at a time (``sample_condition.py``, batch 1), so its
published numbers are this sampler's; the parity tests compare at batch 1.

**Pluggable fidelity.** D_b(x̂0) comes from a :class:`Fidelity` (squared, per image). The default
:class:`PixelFidelity` is DPS's ‖y − A x̂0‖²; SaFaRI (``safari.py``) swaps in a spatial-frequency
fidelity and is otherwise this sampler.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_restore.samplers.base import Sampler, SamplingContext


class Fidelity:
    """Per-image squared data fidelity ``D_b(x̂0)`` (shape [B]), differentiable in ``x0``."""

    def __call__(self, ctx: SamplingContext, x0: Tensor, t: int) -> Tensor:
        raise NotImplementedError


class PixelFidelity(Fidelity):
    """DPS's ``‖y − A x̂0‖²`` per image."""

    def __call__(self, ctx: SamplingContext, x0: Tensor, t: int) -> Tensor:
        r = ctx.y - ctx.operator.A(x0)
        return r.flatten(1).pow(2).sum(1)


class DPS(Sampler):
    """Diffusion Posterior Sampling.

    Args:
        scale: the step ζ (``step="code"``: multiplies ∇‖r‖) or ζ′ (``step="paper"``: multiplies
            ∇‖r‖²/‖r‖). Published code values: 0.3 SR/deblur, 0.5 inpainting, 1.0 phase retrieval.
        step: ``"code"`` (official repository) or ``"paper"`` (Algorithm 1 normalised step).
        steps: 1000 in the paper (full DDPM chain); fewer steps are allowed (respaced).
        spacing: respacing rule; ``"guided_diffusion"`` (``space_timesteps``, DPS's).
        fidelity: the data-fidelity transform (default :class:`PixelFidelity`).
        variance: ``"auto"`` (official: learned-range with a ``learn_sigma`` prior, else
            fixed-small), ``"fixed_small"``, ``"fixed_large"``, ``"learned_range"``, or
            ``"ddim"`` (the DDIM(η) transition with ``eta``).
        eta: with ``variance="ddim"``: 1 = DDPM ancestral with β̃; 0 gives DDIM (issue #13
            reports DDIM failing).
    """

    name = "dps"
    needs = frozenset()  # A and its autograd adjoint only

    def __init__(
        self,
        scale: float = 0.3,
        step: str = "code",
        steps: int = 1000,
        spacing: str = "guided_diffusion",
        eta: float = 1.0,
        fidelity: Fidelity | None = None,
        progress: bool = False,
        variance: str = "auto",
    ) -> None:
        super().__init__(
            steps=steps,
            spacing=spacing,
            eta=eta,
            clip_denoised=True,
            progress=progress,
            variance=variance,
        )
        if step not in ("code", "paper"):
            raise ValueError(f"DPS step must be 'code' or 'paper', got {step!r}")
        self.scale = float(scale)
        self.step_rule = step
        self.fidelity = fidelity if fidelity is not None else PixelFidelity()

    def step(self, ctx: SamplingContext, x: Tensor, t: int, t_next: int) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            x0, v = self.denoise_with_variance(ctx, x_in, t)  # clamp inside the graph
            loss, weight = self.guidance(ctx, x0, t)  # [B] each
            (grad,) = torch.autograd.grad(loss.sum(), x_in)
        with torch.no_grad():
            x0 = x0.detach()
            v = None if v is None else v.detach()
            x_next = self.transition(ctx, x, x0, t, t_next, v=v)
            x_next = x_next - weight.view(-1, *[1] * (x.dim() - 1)) * grad
        return x_next, x0

    def guidance(self, ctx: SamplingContext, x0: Tensor, t: int) -> tuple[Tensor, Tensor]:
        """Per-image ``(loss, step)``: the update subtracts ``step_b · ∇_{x_t} loss_b``. DPS:
        ``(‖r‖, ζ)`` with ``step="code"``, ``(‖r‖², ζ′/‖r‖)`` with ``step="paper"``; a method
        with another guidance objective on the same update overrides this (PSLD)."""
        D = self.fidelity(ctx, x0, t)  # [B]
        norm = D.clamp_min(1e-30).sqrt()
        if self.step_rule == "code":
            return norm, torch.full_like(norm, self.scale)
        return D, self.scale / norm.detach()

    def hparams(self) -> dict:
        return {
            **super().hparams(),
            "scale": self.scale,
            "step_rule": self.step_rule,
            "variance": self.variance,
        }
