"""RED-diff — variational diffusion sampling with the denoiser as regulariser (Mardani, Song,
Kautz & Vahdat, ICLR 2024, arXiv 2305.04391, Algorithm 1). Source: NVlabs/RED-diff
``algos/reddiff.py::REDDIFF.sample`` (``_configs/algo/reddiff.yaml``; README: 100 steps,
``lr 0.5``, ``grad_term_weight`` λ = 0.25).

A Dirac variational posterior q = δ(μ) is fitted by Adam, one step per diffusion timestep t
(from T down to 0), with the loss

    x0  = μ + σ_x0 z₀,    x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε,       ε ~ N(0, I)     (fresh per step)
    ℓ(μ) = v · ½ mean‖y − A x0‖²  +  λ w(t) · mean⟨sg(ε_θ(x_t, t) − ε), x0⟩     (paper Eq. 9)
    w(t) = √(1−ᾱ_t)/√ᾱ_t  ("linear", 1/SNR^½; also sqrt, square, log, trunc_linear,
           power2over3, const as in the code),

i.e. the score-matching regulariser enters as the stop-gradient "RED" term (ε_θ − ε)ᵀx0: **no
backpropagation through the network**, only through A. μ starts at A⁺y (``initialize``), Adam has
β = (0.9, 0.99) and no weight decay. The result is the last step's x0 = μ + σ_x0 z₀ *before* that
step's Adam update (the code returns ``x0_pred``, not ``mu``).

**Per-image losses.** The code averages both terms over the whole batch; here each image's loss is
its own mean and the batch loss their sum, so each image gets the gradient it would get alone
(equal to the official code at batch size 1; at batch B the code's gradients are 1/B of these,
which Adam normalises away up to its ε = 1e-8).

The measurement noise level does not enter the loss (the code's ``sigma_y`` only adds noise to y);
``obs_weight`` v plays the role of 1/σ_y² up to scale.

**Conditioning and parity.** Adam's first step is lr·g/(|g| + 1e-8), and some components of g
(means over all pixels of w(ε − n)·x0, where ε − n cancels) lie near that ε: there a relative
change of g is amplified ~|g-terms|/ε-fold, so float32 runs of the same algorithm differ by
~1e-3 (the official float32 output is 1.6e-3 from its own float64 run after 10 steps). Hence ᾱ_t
comes from the float64 table, rounded once to the run's dtype, and w(t) is computed in the run's
dtype as the code does. Held in float64, with the official network outputs fed back, to
NVlabs/RED-diff @ 66482f2 ``algos/reddiff.py`` (≤ 3.4e-13;
``tests/test_parity.py::test_reddiff_equals_official_in_float64``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from lit_restore import diffusion
from lit_restore.samplers.base import Sampler, SamplingContext, exact_alphas_cumprod

#: ``denoise_term_weight`` of the code: w(t) as a function of the tensor s = √(1−ᾱ_t)/√ᾱ_t,
#: evaluated in the run's dtype as the code does
WEIGHTINGS: dict[str, Callable[[Tensor], Tensor]] = {
    "linear": lambda s: s,
    "sqrt": torch.sqrt,
    "square": torch.square,
    "log": lambda s: torch.log(s + 1.0),
    "trunc_linear": lambda s: torch.clip(s, max=1.0),
    "power2over3": lambda s: torch.pow(s, 2 / 3),
    "const": lambda s: torch.pow(s, 0.0),
}


class REDDiff(Sampler):
    """RED-diff (variational sampling, Adam on μ).

    Args:
        steps: number of timesteps = Adam steps = NFE (``exp.num_steps``, 100).
        lr: Adam learning rate (README 0.5; ``reddiff.yaml`` 0.1).
        grad_term_weight: λ of the regulariser (README 0.25).
        obs_weight: v of the data term (1).
        weighting: w(t), one of :data:`WEIGHTINGS` (``denoise_term_weight``, ``"linear"``).
        sigma_x0: σ_x0, the spread of q around μ (0: a Dirac).
    """

    name = "reddiff"
    needs = frozenset({"pinv"})  # μ starts at A⁺y

    def __init__(
        self,
        steps: int = 100,
        lr: float = 0.5,
        grad_term_weight: float = 0.25,
        obs_weight: float = 1.0,
        weighting: str = "linear",
        sigma_x0: float = 0.0,
        spacing: str = "uniform",
        progress: bool = False,
    ) -> None:
        super().__init__(
            steps=steps, spacing=spacing, eta=0.0, clip_denoised=False, progress=progress
        )
        if weighting not in WEIGHTINGS:
            raise ValueError(f"RED-diff weighting must be one of {sorted(WEIGHTINGS)}")
        self.lr = float(lr)
        self.grad_term_weight = float(grad_term_weight)
        self.obs_weight = float(obs_weight)
        self.weighting = weighting
        self.sigma_x0 = float(sigma_x0)

    def init(self, ctx: SamplingContext) -> Tensor:
        mu = ctx.operator.pinv(ctx.y).view(ctx.shape).clone().requires_grad_(True)
        ctx.state["mu"] = mu
        ctx.state["adam"] = torch.optim.Adam([mu], lr=self.lr, betas=(0.9, 0.99), weight_decay=0.0)
        return mu.detach().clone()  # not a view: Adam updates μ in place

    def step(self, ctx: SamplingContext, x: Tensor, t: int, t_next: int) -> tuple[Tensor, Tensor]:
        mu, adam = ctx.state["mu"], ctx.state["adam"]
        noise_x0, noise_xt = ctx.randn(x), ctx.randn(x)
        # ᾱ_t from the float64 table, rounded once to the run's dtype (in float32 the prior's own
        # table): the Adam step amplifies a relative change δ of the gradient ~|g|/1e-8-fold
        # where |g| is near Adam's ε, so a float64 run must not see a float32-rounded ᾱ
        a = diffusion.alpha_bar(exact_alphas_cumprod(ctx.prior), t, x)
        with torch.enable_grad():
            x0 = mu + self.sigma_x0 * noise_x0
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise_xt
            with torch.no_grad():
                eps = ctx.eps(x_t.detach(), t)  # no backpropagation through the network
            a0 = a.flatten()[0]
            snr_inv = (1 - a0).sqrt() / a0.sqrt()  # in the run's dtype, as the code
            w = self.grad_term_weight * WEIGHTINGS[self.weighting](snr_inv)
            residual = ctx.y - ctx.operator.A(x0)
            loss_obs = residual.flatten(1).pow(2).mean(1) / 2
            loss_reg = ((eps - noise_xt) * x0).flatten(1).mean(1)
            loss = (w * loss_reg + self.obs_weight * loss_obs).sum()  # per-image means, summed
            adam.zero_grad()
            loss.backward()
        adam.step()
        return mu.detach().clone(), x0.detach()

    def finalize(self, ctx: SamplingContext, x: Tensor) -> Tensor:
        return ctx.state["x0"]  # the last step's x0, before its Adam update (the code's output)

    def hparams(self) -> dict:
        return {
            **super().hparams(),
            "lr": self.lr,
            "grad_term_weight": self.grad_term_weight,
            "obs_weight": self.obs_weight,
            "weighting": self.weighting,
            "sigma_x0": self.sigma_x0,
        }
