"""The one sampling loop every zero-shot method shares.

A method implements :meth:`Sampler.step` (one reverse transition ``x_t → x_{t_next}``) and, if it
needs them, :meth:`Sampler.init` (x_T) and :meth:`Sampler.finalize` (the returned image); it
declares what it needs from the operator in :attr:`Sampler.needs` (e.g. ``{"svd"}``). The loop
checks those needs (:func:`~lit_restore.operators.base.require_capabilities`), gives the operator
its image shape (:meth:`~lit_restore.operators.base.Operator.at`), and owns respacing, the
progress bar, the per-step callback, per-image noise and NFE counting.

**Respacing** (:mod:`lit_restore.diffusion.respacing`, rules by the name of their source).
``spacing="uniform"`` (alias ``"leading"``) is the DDIM/DDNM/DDPG rule ``range(0, T, T // N)``
truncated to N — T=1000, N=100 gives 990, 980, …, 0 — followed by ``t = −1`` with ᾱ₋₁ = 1
(DDIM ``compute_alpha``; DDNM ``get_schedule_jump``); ``"ddrm"`` the same range untruncated
(DDRM); ``"guided_diffusion"`` guided-diffusion's ``space_timesteps`` (DPS; N = T is the full
chain 999 … 0); ``"linspace"`` N steps spread evenly over [0, T−1]; ``"ldm"`` CompVis
latent-diffusion's DDIM grid ``range(0, T, T // N) + 1`` ending at ``t = 0`` (ᾱ_0, not 1; DDIM
transition only).

**Generic transition** (``variance=``):

* ``"ddim"`` — the DDIM(η) step of :mod:`lit_restore.diffusion.vp` (Song et al. 2021, Eq. 12)
  with ε̂ = (x_t − √ᾱ_t x̂0)/√(1−ᾱ_t); η = 1 is DDPM ancestral sampling with the posterior
  variance β̃ on the respaced chain (Ho et al. 2020, Eq. 7), η = 0 deterministic DDIM.
  Recomputing ε̂ from a clamped x̂0 mirrors guided-diffusion ``ddim_sample``. The methods whose
  official code takes DDIM-type steps (DDRM, DDNM, DDPG, FDGR) use it.
* ``"fixed_small"``, ``"fixed_large"``, ``"learned_range"`` — guided-diffusion's ``p_sample``
  (``μ̃ + σ z`` with that variance type, coefficient tables in float64 on the respaced chain,
  :mod:`lit_restore.diffusion.variance`); ``"auto"`` picks ``learned_range`` when the prior
  outputs variance channels (:attr:`DiffusionPrior.learned_variance`) and ``fixed_small``
  otherwise — what DPS's ``configs/diffusion_config.yaml`` does with its ADM checkpoints.
Unconditional sampling (checking a prior) is this loop without guidance: :class:`DDPM`,
:class:`DDIM` with ``operator=None, y=None, x_shape=…``.

**Per-image randomness.** ``generator`` may be one ``torch.Generator`` or a list with one per
image (:func:`lit_restore.utils.seeding.randn_per_image`): then image *b*'s result depends only on
its own generator, never on its batch mates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from lit_restore import diffusion
from lit_restore.diffusion import VARIANCE_TYPES, AncestralChain, chain_end, respace
from lit_restore.operators.base import Operator, require_capabilities
from lit_restore.priors.base import DiffusionPrior
from lit_restore.runtime import autocast
from lit_restore.utils.seeding import NoiseFn, randn_per_image

Generators = torch.Generator | Sequence[torch.Generator] | None


@dataclass
class StepInfo:
    """What the per-step ``callback`` receives (tensors are detached)."""

    i: int  #: step index in the schedule
    t: int  #: original timestep of x_t
    t_next: int  #: original timestep of the result (−1 = clean)
    x_t: Tensor
    x0: Tensor  #: the denoised estimate x̂0 used at this step (after the method's correction)
    x_next: Tensor


@dataclass
class SamplingContext:
    """Everything one run needs; handed to :meth:`Sampler.step`."""

    prior: DiffusionPrior
    operator: Operator | None
    y: Tensor | None
    sigma_y: float
    generator: Generators
    shape: tuple[int, ...]
    num_timesteps: int
    sampler: Sampler
    state: dict[str, Any] = field(default_factory=dict)
    #: a noise source that replaces the generators (``Sampler.sample(noise=...)``)
    noise: NoiseFn | None = None
    #: the respaced chain's float64 tables (variance types other than ``"ddim"``)
    chain: AncestralChain | None = None
    #: the resolved variance type of this run (``"auto"`` decided against the prior)
    variance: str = "ddim"

    def randn(self, like: Tensor | None = None) -> Tensor:
        """Standard normal noise of the image shape (or ``like``'s), one generator per image."""
        shape = tuple(like.shape) if like is not None else self.shape
        dev = like.device if like is not None else self.device
        if self.noise is not None:
            return self.noise(shape).to(dev)
        return randn_per_image(shape, self.generator, device=dev)

    @property
    def device(self) -> torch.device:
        return self.prior.alphas_cumprod.device

    def alpha_bar(self, t: int, like: Tensor) -> Tensor:
        """ᾱ_t as a broadcastable tensor (t = −1 → 1)."""
        tt = torch.full((like.shape[0],), t, device=like.device, dtype=torch.long)
        return self.prior.alpha_bar(tt, like)

    def eps(self, x: Tensor, t: int) -> Tensor:
        """The prior's ε̂(x, t); counts one network evaluation."""
        return self.eps_at(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long))

    def eps_at(self, x: Tensor, tt: Tensor) -> Tensor:
        """ε̂(x, t) with one timestep per image in ``tt`` (fractional for a continuous noise
        level, :mod:`lit_restore.diffusion.sigma`); counts one network evaluation."""
        self.sampler.nfe += 1
        dtype = self.sampler.autocast_dtype
        if dtype is not None:
            with autocast(dtype, x.device):
                return self.prior.eps(x, tt).float()
        return self.prior.eps(x, tt)

    def eps_and_variance(self, x: Tensor, t: int) -> tuple[Tensor, Tensor | None]:
        """ε̂(x, t) and the network's variance channels (``None`` without ``learn_sigma``);
        one network evaluation."""
        self.sampler.nfe += 1
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        dtype = self.sampler.autocast_dtype
        if dtype is not None:
            with autocast(dtype, x.device):
                eps, v = self.prior.eps_and_variance(x, tt)
            return eps.float(), None if v is None else v.float()
        return self.prior.eps_and_variance(x, tt)

    def x0_from_eps(self, x: Tensor, t: int, eps: Tensor) -> Tensor:
        return diffusion.x0_from_eps(x, eps, self.alpha_bar(t, x))

    def eps_from_x0(self, x: Tensor, t: int, x0: Tensor) -> Tensor:
        return diffusion.eps_from_x0(x, x0, self.alpha_bar(t, x))

    def renoise(self, x0: Tensor, t: int) -> Tensor:
        """q_sample: x0 noised to timestep ``t`` with fresh per-image noise."""
        return diffusion.q_sample(x0, self.randn(x0), self.alpha_bar(t, x0))


class Sampler:
    """Base class: the shared reverse-diffusion loop.

    Args:
        steps: number of denoising steps N (network evaluations for most methods).
        spacing: a respacing rule by the name of its source — ``"uniform"``/``"leading"``
            (skip = T//N, first N), ``"ddrm"`` (untruncated), ``"guided_diffusion"``
            (``space_timesteps``), ``"linspace"``, ``"quad"`` (DiffPIR), ``"ldm"`` (CompVis
            DDIM, +1, ends at t = 0); see
            :mod:`lit_restore.diffusion.respacing`.
        eta: DDIM η of the generic transition (1 = DDPM ancestral, 0 = deterministic DDIM).
        clip_denoised: clamp x̂0 to [-1, 1] before the transition.
        progress: show a tqdm bar.
        variance: ``"ddim"`` (the DDIM(η) transition), ``"fixed_small"``, ``"fixed_large"``,
            ``"learned_range"`` or ``"auto"`` (guided-diffusion's ancestral step; module
            docstring).
    """

    #: short name used in logs / hparams
    name: str = "sampler"
    #: what the method needs from the operator beyond ``A`` and ``Aᵀ`` (``"svd"``, ``"pinv"``,
    #: ``"pinv_reg"``); ``None``: no operator at all (unconditional sampling).
    needs: frozenset[str] | None = None

    def __init__(
        self,
        steps: int = 100,
        spacing: str = "uniform",
        eta: float = 1.0,
        clip_denoised: bool = True,
        progress: bool = False,
        variance: str = "ddim",
    ) -> None:
        respace(1000, steps, spacing)  # validate early
        if variance not in ("ddim", "auto", *VARIANCE_TYPES):
            raise ValueError(
                f"unknown variance {variance!r}; choose 'ddim', 'auto' or one of {VARIANCE_TYPES}"
            )
        if chain_end(spacing) != -1 and variance != "ddim":
            # the ancestral chain's tables end at ᾱ = 1 (guided-diffusion), this grid does not
            raise ValueError(
                f"spacing {spacing!r} (CompVis DDIM grid, ends at ᾱ_0) runs with variance 'ddim'; "
                f"got variance {variance!r}"
            )
        self.variance = variance
        self.steps = int(steps)
        self.spacing = spacing
        self.eta = float(eta)
        self.clip_denoised = clip_denoised
        self.progress = progress
        self.nfe = 0
        #: set by ZeroShotRestoration(precision="bf16") for priors without a bf16 torso: network
        #: calls run under autocast (lit_restore.runtime).
        self.autocast_dtype: torch.dtype | None = None

    # ---------------------------------------------------------- schedule
    def timesteps(self, num_timesteps: int = 1000) -> list[int]:
        return respace(num_timesteps, self.steps, self.spacing)

    def schedule(self, num_timesteps: int = 1000) -> list[tuple[int, int]]:
        """Pairs ``(t, t_next)``; ``t_next > t`` means a forward jump (DDNM time travel). The last
        lands on ``t = −1`` (ᾱ = 1), or on ``t = 0`` for spacing ``"ldm"`` (CompVis DDIM)."""
        ts = self.timesteps(num_timesteps)
        return list(zip(ts, [*ts[1:], chain_end(self.spacing)]))

    # ----------------------------------------------------- method hooks
    def requirements(self, sigma_y: float) -> tuple[str, frozenset[str] | None]:
        """``(method label, needs)`` for a run at noise level ``sigma_y`` (model space); the
        loop checks them before sampling. Default: the class name and :attr:`needs`."""
        return type(self).__name__, self.needs

    def init(self, ctx: SamplingContext) -> Tensor:
        """x_T; default N(0, I)."""
        return ctx.randn()

    def step(self, ctx: SamplingContext, x: Tensor, t: int, t_next: int) -> tuple[Tensor, Tensor]:
        """One reverse transition; returns ``(x_{t_next}, x̂0)``. Default: unconditional."""
        with torch.no_grad():
            x0 = self.denoise(ctx, x, t)
            return self.transition(ctx, x, x0, t, t_next), x0

    def travel(self, ctx: SamplingContext, x: Tensor, t: int, t_next: int) -> Tensor:
        """Forward jump ``t → t_next > t``; default re-noises the last x̂0 (RePaint/DDNM)."""
        return ctx.renoise(ctx.state["x0"], t_next)

    def finalize(self, ctx: SamplingContext, x: Tensor) -> Tensor:
        return x

    # -------------------------------------------------- shared pieces
    def denoise(self, ctx: SamplingContext, x: Tensor, t: int) -> Tensor:
        """Tweedie x̂0 from the prior's ε̂ (clamped if ``clip_denoised``)."""
        return self.denoise_with_variance(ctx, x, t)[0]

    def denoise_with_variance(
        self, ctx: SamplingContext, x: Tensor, t: int
    ) -> tuple[Tensor, Tensor | None]:
        """:meth:`denoise` and the network's variance channels when the run's variance type is
        ``learned_range`` (else ``None``). With a guided-diffusion variance type x̂0 comes from
        the chain's float64 coefficients (``_predict_xstart_from_eps``)."""
        if ctx.chain is None:
            x0, v = ctx.x0_from_eps(x, t, ctx.eps(x, t)), None
        else:
            if ctx.variance == "learned_range":
                eps, v = ctx.eps_and_variance(x, t)
            else:
                eps, v = ctx.eps(x, t), None
            x0 = ctx.chain.predict_x0(x, t, eps)
        return (x0.clamp(-1, 1) if self.clip_denoised else x0), v

    def transition(
        self,
        ctx: SamplingContext,
        x: Tensor,
        x0: Tensor,
        t: int,
        t_next: int,
        eta: float | None = None,
        eps: Tensor | None = None,
        v: Tensor | None = None,
    ) -> Tensor:
        """The generic transition (module docstring): guided-diffusion's ancestral step with the
        run's variance type (``v``: the variance channels for ``learned_range``), or the DDIM(η)
        step (η = 1 is DDPM ancestral)."""
        if ctx.chain is not None and eta is None and eps is None:
            last = t_next < 0
            noise = None if last else ctx.randn(x)
            return ctx.chain.step(x0, x, t, last, noise, ctx.variance, v)
        eta = self.eta if eta is None else eta
        a = ctx.alpha_bar(t, x)
        a_next = ctx.alpha_bar(t_next, x)
        if eps is None:
            eps = diffusion.eps_from_x0(x, x0, a)
        sigma = diffusion.ddim_sigma(a, a_next, eta)
        x_next = diffusion.ddim_mean(x0, eps, a_next, sigma)
        if t_next >= 0 and eta > 0:
            x_next = x_next + sigma * ctx.randn(x)
        return x_next

    def image_shape(self, prior: DiffusionPrior, operator: Operator | None, y: Tensor | None):
        if operator is None or y is None:
            raise ValueError(
                f"{type(self).__name__}.sample needs an operator and a measurement y "
                "(or x_shape=... for an unconditional run)"
            )
        return operator.image_shape_for(y)

    # ------------------------------------------------------------- loop
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
        """Restore ``y``; returns x̂0 in model space.

        Args:
            prior: a frozen :class:`DiffusionPrior`.
            operator: the degradation operator, bound to the batch's parameters; the loop
                gives it the image shape (``operator.at``).
            y: the measurement, shaped as ``operator.A`` returns.
            sigma_y: noise std in **model space** ([-1, 1]; ``noise.model_sigma``).
            generator: one generator, or a list with one per image.
            callback: called after each step with a :class:`StepInfo`.
            x_shape: image batch shape; inferred from ``Aᵀy`` when omitted (needed when
                ``operator`` is None, i.e. unconditional sampling).
            noise: a noise source ``noise(shape)`` serving every draw in place of
                ``generator`` (:data:`~lit_restore.utils.seeding.NoiseFn`).
        """
        label, needs = self.requirements(float(sigma_y))
        require_capabilities(operator, needs, label)
        shape = tuple(x_shape) if x_shape is not None else self.image_shape(prior, operator, y)
        if operator is not None:
            operator = operator.at(shape)  # the SVD view acts on images of this shape
        ctx = SamplingContext(
            prior=prior,
            operator=operator,
            y=y,
            sigma_y=float(sigma_y),
            generator=generator,
            shape=shape,
            num_timesteps=prior.num_timesteps,
            sampler=self,
            noise=noise,
        )
        self.nfe = 0
        pairs = self.schedule(prior.num_timesteps)
        ctx.variance = self.resolve_variance(prior)
        if ctx.variance != "ddim":
            ctx.chain = AncestralChain(
                exact_alphas_cumprod(prior), self.timesteps(prior.num_timesteps)
            )
        with torch.no_grad():
            x = self.init(ctx)
        bar = tqdm(pairs, desc=type(self).__name__, disable=not self.progress, leave=False)
        for i, (t, t_next) in enumerate(bar):
            if t_next > t:
                with torch.no_grad():
                    x = self.travel(ctx, x, t, t_next)
                continue
            x_next, x0 = self.step(ctx, x, t, t_next)
            x_next, x0 = x_next.detach(), x0.detach()
            ctx.state["x0"] = x0
            if callback is not None:
                callback(StepInfo(i=i, t=t, t_next=t_next, x_t=x.detach(), x0=x0, x_next=x_next))
            x = x_next
        with torch.no_grad():
            return self.finalize(ctx, x)

    def resolve_variance(self, prior: DiffusionPrior) -> str:
        """The variance type of a run with ``prior`` (``"auto"``: ``learned_range`` when the
        prior outputs variance channels, else ``fixed_small``)."""
        if self.variance == "auto":
            return "learned_range" if prior.learned_variance else "fixed_small"
        if self.variance == "learned_range" and not prior.learned_variance:
            raise ValueError(
                f"{type(self).__name__}(variance='learned_range') needs a prior with variance "
                f"channels (an ADM with learn_sigma=True); {type(prior).__name__} has none — "
                "use variance: auto or fixed_small"
            )
        return self.variance

    def hparams(self) -> dict[str, Any]:
        return {"method": self.name, "steps": self.steps, "eta": self.eta}


def exact_alphas_cumprod(prior: DiffusionPrior) -> Tensor:
    """ᾱ in float64: the prior's exact table when it still describes its schedule."""
    exact = getattr(prior, "alphas_cumprod64", None)
    if exact is not None and exact.numel() == prior.alphas_cumprod.numel():
        return exact
    return prior.alphas_cumprod.double()


class DDPM(Sampler):
    """Unconditional ancestral sampling (η = 1): the loop with no guidance (prior checks)."""

    name = "ddpm"

    def __init__(self, steps: int = 1000, spacing: str = "linspace", **kwargs) -> None:
        super().__init__(steps=steps, spacing=spacing, eta=1.0, **kwargs)


class DDIM(Sampler):
    """Unconditional DDIM with η (Song et al. 2021)."""

    name = "ddim"

    def __init__(self, steps: int = 50, eta: float = 0.0, **kwargs) -> None:
        super().__init__(steps=steps, eta=eta, **kwargs)
