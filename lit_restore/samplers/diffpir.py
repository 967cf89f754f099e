"""DiffPIR — Denoising Diffusion Models for Plug-and-Play Image Restoration (Zhu et al., CVPR
Workshops 2023, arXiv 2305.08995, Algorithm 1). Source: yuanzhi-zhu/DiffPIR ``main_ddpir.py``,
``main_ddpir_sisr.py``/``main_ddpir_deblur.py``/``main_ddpir_inpainting.py`` (the ``DiffPIR``,
``pred_xstart``, ``sub_1_analytic`` branch) and ``utils/utils_sisr.py::data_solution``.

Half-quadratic splitting with the diffusion model as the denoiser. Per step t → t' (σ̄_t =
√(1−ᾱ_t)/√ᾱ_t, the noise level of x_t/√ᾱ_t):

    x̂0   = clamp(Tweedie(x_t, ε_θ), −1, 1)                          (prior sub-problem, Eq. 12)
    ρ_t  = λ σ_n² / σ̄_t²                                             (Eq. 13)
    x̃0   = argmin_x ‖y − A x‖² + ρ_t ‖x − x̂0‖²                     (data sub-problem, Eq. 13)
         = x̂0 + Aᵀ(AAᵀ + ρ_t I)⁻¹ (y − A x̂0)                      (``operator.pinv_reg``)
    ε̂    = (x_t − √ᾱ_t x̃0) / √(1−ᾱ_t)                              (Eq. 14)
    x_t' = √ᾱ_t' x̃0 + √(1−ζ) (√(1−ᾱ_t'−s²) ε̂ + s z₁) + √ζ √(1−ᾱ_t') z₂     (Eq. 15)

with s = η √((1−ᾱ_t')/(1−ᾱ_t)) √β_t (β_t the single-step β of the 1000-step chain, as the code
has it; η = 0 in every published setting).

**Output** (``output=``). The schedule ends at t = 0 (ᾱ_0 = 1 − β_0, not 1), so the step before
the last already yields x_0 = √ᾱ_0 x̃0 + √(1−ᾱ_0)(…), the data-consistent x̃0 re-noised to
σ = √β_0 = 0.01. The scripts return that state: at the last iteration (``seq[i] == seq[-1]``)
they evaluate the network, skip the data step and the re-noising, and score ``x_0 = x/2 + 0.5``
— the x̂0 just computed is never used. ``output="state"`` (default) returns x_0 and spends no
network evaluation on the discarded x̂0 (NFE = steps − 1); ``output="denoised"`` returns that
x̂0 (clamped Tweedie estimate at t = 0, without the data step; NFE = steps), which is what this
class returned before it was held to the official code. The two differ by about the σ = 0.01
noise, 0.01–0.03 max abs on the parity fixtures.

The data step is the operator's ``pinv_reg`` — exact through the SVD (SR, inpainting, zero-padded
blur), the FFT (circular blur: the code's closed form ``data_solution``, which is Woodbury's
identity of the line above) or conjugate gradients (padded blur): one code path for every
operator that offers Aᵀ(AAᵀ+ηI)⁻¹.

**Units.** The official code solves the data step on [0, 1] images with σ_n the [0, 1] noise
level (``noise_level_img`` = 12.75/255 for σ = 0.05, floored at 0.001: ``sigma = max(0.001,
noise_level_img)``); on [−1, 1] both terms of the objective double, so ρ_t is unchanged. Here σ_y
is in model space, so σ_n = max(0.001, σ_y/2). (λ = 4 would be the exact Gaussian MAP weight.)

**Schedule.** ``spacing="quad"`` (the published ``skip_type``; :func:`~lit_restore.diffusion.respacing.quad_timesteps`).

**Start** (``init=``). The code starts from the measurement, not from N(0, I):
``init="measurement"`` (default) is ``main_ddpir.py``'s rule for every task,
x_T = √ᾱ_T·ỹ + √(1−ᾱ_T)·z at T = 999, with ỹ the measurement as an image
(``operator.to_image(y)``, bicubically upsampled — ``F.interpolate``, half-pixel centres, a = −0.75
as the scripts' ``cv2.resize(INTER_CUBIC)`` — when it is smaller than the image; Aᵀy when it is
not an image, e.g. a dense operator's vector). The per-task
scripts differ in details that √ᾱ_999 ≈ 0.0064 makes small: ``main_ddpir_deblur.py`` and
``main_ddpir_inpainting.py`` weight ỹ by √ᾱ_T/√ᾱ_{t_y} (t_y: the step whose σ̄ is nearest σ_y;
a factor 1.005 at σ_y = 0.1) and take the noise std √(1−ᾱ_T − ᾱ_T(1−ᾱ_{t_y})/ᾱ_{t_y}); the
inpainting scripts fill the missing pixels of ỹ with −1 (black), ``to_image`` with 0.
``init="noise"`` starts from N(0, I), the paper's Algorithm 1 (the x_T of this class before it
was held to the official code).

**Parity.** With the defaults this equals yuanzhi-zhu/DiffPIR @ 111d26e ``main_ddpir_sisr.py``
(SR×4, FFT closed form), ``main_ddpir_deblur.py`` (circular blur, FFT closed form) and
``main_ddpir_inpainting.py`` run on identical inputs and noise to ≤ 6.1e-6 max abs in float32
(``tests/test_parity.py::test_diffpir_equals_official``; the official float32 round-off is
≤ 6.5e-6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_restore.samplers.base import Sampler, SamplingContext

#: what :class:`DiffPIR` returns (module docstring, "Output")
OUTPUTS = ("state", "denoised")
#: how :class:`DiffPIR` draws x_T (module docstring, "Start")
INITS = ("measurement", "noise")


class DiffPIR(Sampler):
    """DiffPIR with the closed-form (``pinv_reg``) data step.

    Args:
        steps: number of steps (``iter_num``; NFE): 100 for SR/deblurring, 20 for inpainting.
        lam: λ of ρ_t = λ σ_n²/σ̄_t².
        zeta: ζ, the fraction of fresh noise when re-noising x̃0 (0 = DDIM-like, 1 = all fresh).
        eta: η of the DDIM part (0 in every published setting).
        spacing: ``"quad"`` (published) or any rule of :mod:`lit_restore.diffusion.respacing`.
        sigma_floor: the floor of σ_n on [0, 1] (official 0.001): keeps ρ_t > 0 when σ_y = 0.
        guidance_scale: x̂0 + s·(x̃0 − x̂0) (``guidance_scale``, 1 in every published setting).
        output: ``"state"`` (the scripts: x at t = 0) or ``"denoised"`` (one more x̂0 at t = 0);
            module docstring, "Output".
        init: ``"measurement"`` (the code: x_T = √ᾱ_T ỹ + √(1−ᾱ_T) z) or ``"noise"``
            (N(0, I), the paper's Algorithm 1); module docstring, "Start".
    """

    name = "diffpir"
    needs = frozenset({"pinv_reg"})  # the proximal data step Aᵀ(AAᵀ+ρI)⁻¹

    def __init__(
        self,
        steps: int = 100,
        lam: float = 7.0,
        zeta: float = 0.3,
        eta: float = 0.0,
        spacing: str = "quad",
        sigma_floor: float = 0.001,
        guidance_scale: float = 1.0,
        output: str = "state",
        init: str = "measurement",
        progress: bool = False,
    ) -> None:
        super().__init__(
            steps=steps, spacing=spacing, eta=eta, clip_denoised=True, progress=progress
        )
        if not 0 <= zeta <= 1:
            raise ValueError(f"DiffPIR zeta must be in [0, 1], got {zeta}")
        if lam <= 0 or sigma_floor <= 0:
            raise ValueError("DiffPIR lam and sigma_floor must be > 0 (ρ_t > 0)")
        if output not in OUTPUTS:
            raise ValueError(f"DiffPIR output must be one of {OUTPUTS}, got {output!r}")
        self.output = output
        if init not in INITS:
            raise ValueError(f"DiffPIR init must be one of {INITS}, got {init!r}")
        self.init_rule = init
        self.lam = float(lam)
        self.zeta = float(zeta)
        self.sigma_floor = float(sigma_floor)
        self.guidance_scale = float(guidance_scale)

    def rho(self, sigma_y: float, a: float) -> float:
        """ρ_t = λ σ_n² / σ̄_t² with σ_n = max(floor, σ_y/2) (module docstring, "Units")."""
        sigma_n = max(self.sigma_floor, sigma_y / 2)
        return self.lam * sigma_n**2 * a / (1 - a)

    def init(self, ctx: SamplingContext) -> Tensor:
        """x_T (module docstring, "Start")."""
        z = ctx.randn()
        if self.init_rule == "noise":
            return z
        y_img = ctx.operator.to_image(ctx.y).to(z)
        if y_img.dim() != z.dim() or y_img.shape[1] != z.shape[1]:  # not an image: Aᵀy
            y_img = ctx.operator.adjoint(ctx.y).reshape(z.shape).to(z)
        elif tuple(y_img.shape[-2:]) != tuple(z.shape[-2:]):
            y_img = F.interpolate(y_img, size=z.shape[-2:], mode="bicubic", align_corners=False)
        a_T = ctx.alpha_bar(self.timesteps(ctx.num_timesteps)[0], z)
        return a_T.sqrt() * y_img.expand_as(z) + (1 - a_T).sqrt() * z

    def step(self, ctx: SamplingContext, x: Tensor, t: int, t_next: int) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            if t_next < 0 and self.output == "state":  # x is x_0 already (the scripts' output)
                return x, x
            x0 = self.denoise(ctx, x, t)
            if t_next < 0:  # output="denoised": the denoiser output, without the data step
                return x0, x0
            op = ctx.operator
            a_t = float(ctx.prior.alphas_cumprod[t])
            prox = op.pinv_reg(ctx.y - op.A(x0), self.rho(ctx.sigma_y, a_t)).view_as(x0)
            x0 = x0 + self.guidance_scale * prox
            a, a_next = ctx.alpha_bar(t, x), ctx.alpha_bar(t_next, x)
            eps = ctx.eps_from_x0(x, t, x0)
            beta_t = 1 - a / ctx.alpha_bar(t - 1, x)  # single-step β_t (official)
            s = self.eta * ((1 - a_next) / (1 - a)).sqrt() * beta_t.sqrt()
            z1, z2 = ctx.randn(x), ctx.randn(x)
            x_next = (
                a_next.sqrt() * x0
                + (1 - self.zeta) ** 0.5 * ((1 - a_next - s**2).clamp_min(0).sqrt() * eps + s * z1)
                + self.zeta**0.5 * (1 - a_next).sqrt() * z2
            )
        return x_next, x0

    def hparams(self) -> dict:
        return {
            **super().hparams(),
            "lam": self.lam,
            "zeta": self.zeta,
            "spacing": self.spacing,
            "guidance_scale": self.guidance_scale,
            "output": self.output,
            "init": self.init_rule,
        }
