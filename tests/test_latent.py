"""Latent priors and the latent methods (latent DPS/SaFaRI, PSLD, ReSample, latent DAPS).

* Layout: the CompVis LDM container (``model.diffusion_model.*``, ``first_stage_model.*``,
  ``model_ema.*``, schedule buffers, ``scale_factor``) loads strictly into :class:`LDMPrior`;
  the published FFHQ/CelebA-HQ/LSUN network has the parameter count the LDM paper reports.
* Analytic check: a Gaussian latent prior N(m, Σ) with a *linear* decoder D(z) = M z and a
  linear A has the exact posterior z | y ~ N(μ, C) of the linear-Gaussian model y = (A M) z + n;
  the sample mean of D(z) over 512 runs must be at least 2× closer to M μ than both A⁺y and the
  decoded prior mean (the pixel samplers' criterion, ``test_samplers.py``).
* Batch-mate independence and refusals (NFE: ``test_nfe.py``; the method × operator matrix
  through sample.py: ``test_end_to_end.py``).
* Stable Diffusion: the prompt's embedding is ``StableDiffusionPipeline.encode_prompt``'s.
"""

from __future__ import annotations

import io
import math
import sys
import zipfile

import pytest
import torch
from test_end_to_end import LATENT_SAMPLERS, OPERATORS, TINY_LDM, write_run_config
from test_samplers import SIGMA_Y, _prior
from torch import nn

from lit_restore import diffusion
from lit_restore.checkpoints import CheckpointError
from lit_restore.cli import SampleCLI, run_cli
from lit_restore.operators import JPEG, AvgPoolSR, BicubicSR
from lit_restore.operators.base import DenseOperator, OperatorCapabilityError
from lit_restore.priors import LatentDiffusionPrior, LDMPrior
from lit_restore.priors.latent import LDM_VQ4_FIRST_STAGE, LDM_VQ4_UNET
from lit_restore.samplers import PSLD, LatentDAPS, LatentDPS, LatentSaFaRI, ReSample
from lit_restore.samplers.base import SamplingContext
from lit_restore.samplers.latent import DecodedOperator
from lit_restore.weights import fetch

# ------------------------------------------------------------------------- tiny published layout
TINY_UNET = TINY_LDM["init_args"]["unet"]
TINY_VQ = TINY_LDM["init_args"]["first_stage"]


def _tiny_ldm(**kw) -> LDMPrior:
    torch.manual_seed(0)
    return LDMPrior(unet=TINY_UNET, first_stage=TINY_VQ, **kw)


def _container(prior: LDMPrior, scale_factor: float = 0.5, ema_offset: float = 0.0) -> dict:
    """A ``LatentDiffusion.state_dict()`` as a released ``model.ckpt`` holds it."""
    sd: dict[str, torch.Tensor] = {}
    for k, v in prior.unet.state_dict().items():
        sd["model.diffusion_model." + k] = v.clone()
    for k, v in prior.unet.named_parameters():
        sd["model_ema." + ("diffusion_model." + k).replace(".", "")] = v.detach() + ema_offset
    sd["model_ema.decay"] = torch.tensor(0.9999)
    sd["model_ema.num_updates"] = torch.tensor(10)
    for k, v in prior.first_stage.state_dict().items():
        sd["first_stage_model." + k] = v.clone()
    betas = diffusion.make_betas("scaled_linear", 1000, beta_start=0.0015, beta_end=0.0195)
    sd["betas"] = betas.float()
    sd["alphas_cumprod"] = torch.cumprod(1 - betas, 0).float()
    sd["posterior_mean_coef1"] = torch.zeros(1000)
    sd["scale_factor"] = torch.tensor(scale_factor)
    return sd


def test_published_ldm_has_the_papers_parameter_count():
    """The LDM paper (Rombach et al., CVPR 2022, appendix hyper-parameter tables) gives 274 M
    parameters for the unconditional CelebA-HQ/FFHQ LDM-4 UNet; the configs' flags built here
    give 274.1 M."""
    with torch.device("meta"):
        prior = LDMPrior(unet=LDM_VQ4_UNET, first_stage=LDM_VQ4_FIRST_STAGE, frozen=False)
    n_unet = sum(p.numel() for p in prior.unet.parameters())
    print(f"LDM-VQ-4 UNet parameters: {n_unet / 1e6:.1f} M")
    assert abs(n_unet / 1e6 - 274) < 1.0
    # attention at latent resolutions 32, 16, 8 (factors 2, 4, 8), not at 64; 32 channels/head
    assert len(prior.unet.input_blocks[1]) == 1  # level 0 (64²): ResBlock only
    assert prior.unet.input_blocks[4][1].num_heads == 448 // 32  # level 1 (32²), 2·224 channels


def test_ldm_container_loads_strictly(tmp_path):
    src = _tiny_ldm()
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": _container(src), "global_step": 7}, path)
    loaded = LDMPrior(unet=TINY_UNET, first_stage=TINY_VQ, checkpoint=str(path))
    assert loaded.scale_factor == 0.5  # from the file, not the default 1
    z = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([10, 900])
    assert torch.equal(loaded.eps(z, t), src.eps(z, t))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.equal(loaded.encode(x), 0.5 * src.first_stage.encode(x))
    assert torch.equal(loaded.decode(z), src.first_stage.decode(z / 0.5))
    # the schedule is LDM's: ᾱ equals the container's own table
    assert torch.allclose(loaded.alphas_cumprod, _container(src)["alphas_cumprod"], rtol=0, atol=0)

    ema = tmp_path / "ema.ckpt"
    torch.save({"state_dict": _container(src, ema_offset=0.01)}, ema)
    with_ema = LDMPrior(unet=TINY_UNET, first_stage=TINY_VQ, checkpoint=str(ema), use_ema=True)
    w0 = src.unet.input_blocks[0][0].weight
    assert torch.equal(with_ema.unet.input_blocks[0][0].weight, w0 + 0.01)


@pytest.mark.parametrize("defect", ["missing", "unknown", "betas", "shape"])
def test_ldm_container_defects_are_refused(tmp_path, defect):
    sd = _container(_tiny_ldm())
    if defect == "missing":
        del sd["model.diffusion_model.out.2.weight"]
    elif defect == "unknown":
        sd["cond_stage_model.transformer.weight"] = torch.zeros(1)
    elif defect == "betas":
        sd["betas"] = diffusion.make_betas("linear", 1000).float()
    else:
        sd["first_stage_model.quant_conv.weight"] = torch.zeros(4, 3, 1, 1)
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError):
        LDMPrior(unet=TINY_UNET, first_stage=TINY_VQ, checkpoint=str(path))


def test_registered_ldm_is_fetched_from_its_zip(tmp_path):
    """``python -m lit_restore.weights ldm-ffhq256`` downloads the release zip and extracts its
    model.ckpt (a ``file://`` zip stands in for ommer-lab.com)."""
    buf = io.BytesIO()
    torch.save({"state_dict": _container(_tiny_ldm())}, buf)
    archive = tmp_path / "ffhq.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("config.yaml", "model: {}\n")
        zf.writestr("model.ckpt", buf.getvalue())
    out = fetch("ldm-ffhq256", directory=tmp_path / "cache", url=archive.as_uri(), progress=False)
    assert out.name == "ldm-ffhq256.ckpt" and out.read_bytes() == buf.getvalue()
    assert sorted(p.name for p in out.parent.iterdir()) == ["ldm-ffhq256.ckpt"]
    LDMPrior(unet=TINY_UNET, first_stage=TINY_VQ, checkpoint=str(out))


# ----------------------------------------------------------------------------- analytic check
class LinearFirstStage(nn.Module):
    """D(z) = M z on 1×4×4 latents → 1×8×8 images; E = M⁺ (so E∘D = I)."""

    def __init__(self, M: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("M", M)
        self.register_buffer("P", torch.linalg.pinv(M.double()).float())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (z.flatten(1) @ self.M.T).view(z.shape[0], 1, 8, 8)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) @ self.P.T).view(x.shape[0], 1, 4, 4)


def _decoder_matrix() -> torch.Tensor:
    """Nearest ×2 upsampling plus a fixed random mix (full column rank, not separable)."""
    up = torch.zeros(64, 16)
    for i in range(8):
        for j in range(8):
            up[i * 8 + j, (i // 2) * 4 + j // 2] = 1.0
    return up + 0.2 * torch.randn(64, 16, generator=torch.Generator().manual_seed(3))


def _pixel_matrix(kind: str) -> torch.Tensor:
    if kind == "sr":  # 2×2 average pooling
        A = torch.zeros(16, 64)
        for i in range(8):
            for j in range(8):
                A[(i // 2) * 4 + j // 2, i * 8 + j] = 0.25
        return A
    if kind == "blur":  # circular 3-tap blur
        B = torch.zeros(8, 8)
        for i in range(8):
            for o, k in ((-1, 0.25), (0, 0.5), (1, 0.25)):
                B[i, (i + o) % 8] += k
        return torch.kron(B, B)
    keep = torch.randperm(64, generator=torch.Generator().manual_seed(0))[:24]  # 24 of 64
    return torch.eye(64)[keep.sort().values]


def _latent_problem(kind: str):
    latent = _prior()  # N(m, Σ) on 1×4×4 (test_samplers' power-law prior)
    M = _decoder_matrix()
    prior = LatentDiffusionPrior(latent, LinearFirstStage(M), downscale=2)
    A = _pixel_matrix(kind)
    # SR as the image operator AvgPoolSR (an image-shaped y: SaFaRI's ψ_s and frequency terms
    # act), the others as dense matrices (flat y)
    op = AvgPoolSR(factor=2) if kind == "sr" else DenseOperator(A, (1, 8, 8))
    g = torch.Generator().manual_seed(0)
    chol = torch.linalg.cholesky(latent.cov.double() + 1e-9 * torch.eye(16, dtype=torch.float64))
    z = latent.mean + (chol.float() @ torch.randn(16, generator=g)).view(1, 1, 4, 4)
    clean = op.A(prior.decode(z))
    y = clean + SIGMA_Y * torch.randn(clean.shape, generator=g)
    assert torch.allclose(clean.flatten(1), prior.decode(z).flatten(1) @ A.T, atol=1e-6)
    post_mean, post_cov = latent.posterior(A @ M, y.flatten(), SIGMA_Y)  # z | y, exact
    x_post = M.double() @ post_mean.double().flatten()
    x_prior = M.double() @ latent.mean.double().flatten()
    # standard error of a 512-sample mean of D(z), RMS over pixels: √(mean diag(M C Mᵀ) / 512)
    x_cov = M.double() @ post_cov.double() @ M.double().T
    sem = (x_cov.diagonal().mean() / 512).sqrt().item()
    return prior, op, y, x_post, x_prior, sem


def _rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double().flatten() - b.double().flatten()) ** 2).mean().sqrt().item()


LATENT_METHODS = {
    "latent_dps": lambda: LatentDPS(steps=100, scale=0.5),
    "latent_safari": lambda: LatentSaFaRI(steps=100, scale=0.5),
    # the matrix operators' flat y has no official "transpose" (module psld): the paper's A⁺
    "psld": lambda: PSLD(steps=100, gamma=0.1, omega=0.5, gluing_map="pinv"),
    "resample": lambda: ReSample(steps=50, every=5, pixel_iters=200, latent_iters=100, patience=50),
    "resample_paper": lambda: ReSample(
        mode="paper", steps=50, every=5, pixel_iters=200, latent_iters=100, patience=50
    ),
    # τ = √2 σ_y (the exact likelihood), no gradient clamp, a constant Langevin step 3e-4: the
    # target's Lipschitz constant is ≤ 2‖A M‖²/τ² + 1/σ_min² ≤ 2·6.46/0.02 + 100 = 746 (‖A M‖² =
    # 2.42 / 5.01 / 6.46 for sr / blur / inpaint), so lr·L ≤ 0.22 (stable); the σ → t rule that
    # is exact for this prior (as the pixel DAPS entry of test_samplers.py)
    "latent_daps": lambda: LatentDAPS(
        annealing_steps=50, ode_steps=5, mcmc_steps=50, lr=3e-4, lr_min_ratio=1.0, tau=None,
        timestep_rule="interpolate", grad_clip=None,
    ),
}  # fmt: skip


@pytest.mark.parametrize("kind", ["sr", "blur", "inpaint"])
@pytest.mark.parametrize("method", list(LATENT_METHODS))
def test_latent_sample_mean_approaches_exact_posterior_mean(method, kind):
    """Measured RMS distance of the decoded sample mean (512 runs) to M μ (σ_y = 0.1; A⁺y is
    0.295 / 1.313 / 0.515 away, the decoded prior mean 0.418 / 0.405 / 0.467):

    ============================  ======  ======  =======
    method (steps)                sr      blur    inpaint
    ============================  ======  ======  =======
    latent DPS (100, scale 0.5)   0.0513  0.0337  0.0247
    latent SaFaRI (100, 0.5)      0.0514  0.0337  0.0247
    PSLD (100 LDM DDIM, ω 0.5)    0.0548  0.0582  0.0382
    ReSample official (50, ev. 5) 0.0506  0.0739  0.0359
    ReSample paper (50, every 5)  0.0366  0.0451  0.0435
    latent DAPS (50×5, 50 Lang.)  0.0201  0.0305  0.0197
    ============================  ======  ======  =======

    (PSLD: γ 0.1, the official LDM DDIM chain and noisy residual, A⁺ in the gluing. SR is AvgPoolSR
    with an image-shaped y, so SaFaRI's ψ acts; on the flat blur/inpainting
    measurements its ψ-fidelity is DPS's ‖r‖² and the two coincide.) The 512-run mean's own
    standard error, √(mean diag(M C Mᵀ)/512), is 0.0049 / 0.0044 / 0.0047 (printed): the
    remaining distance is each method's bias (approximate guidance, few steps), and the 2× margin
    holds with a factor ≥ 2.6 to spare (PSLD SR: 0.1475 / 0.0548 = 2.69; ReSample official
    on blur: 0.0739 against 0.5·0.405 = 2.74).
    ReSample's official mode is further off than its paper mode on sr/blur: its per-step DPS and
    look-ahead use the code's ``pseudo_x0`` (√(1−ᾱ_t) squared), which is not the posterior mean.
    ReSample runs on the ``"ldm"`` grid (its default).
    """
    prior, op, y, x_post, x_prior, sem = _latent_problem(kind)
    sampler = LATENT_METHODS[method]()
    ys = y.expand(512, *y.shape[1:])
    xs = sampler.sample(prior, op, ys, sigma_y=SIGMA_Y, generator=torch.Generator().manual_seed(1))
    err = _rmse(xs.mean(0), x_post)
    err_pinv = _rmse(op.pinv(y), x_post)
    err_prior = _rmse(x_prior, x_post)
    print(
        f"{method}/{kind}: |mean - post| {err:.4f}  A⁺y {err_pinv:.4f}  prior {err_prior:.4f}  "
        f"standard error {sem:.4f}"
    )
    assert err < 0.5 * min(err_pinv, err_prior)


FAST = {
    "latent_dps": lambda: LatentDPS(steps=10),
    "latent_safari": lambda: LatentSaFaRI(steps=10),
    "psld": lambda: PSLD(steps=10),
    "latent_daps": lambda: LatentDAPS(annealing_steps=5, ode_steps=2, mcmc_steps=3, lr=1e-4),
    "resample": lambda: ReSample(
        steps=10, every=2, pixel_iters=20, latent_iters=20, patience=5, tol=1e-6
    ),
    "resample_paper": lambda: ReSample(
        mode="paper", steps=10, every=2, pixel_iters=20, latent_iters=20, patience=5, tol=1e-6
    ),
}


@pytest.mark.parametrize("method", list(FAST))
def test_latent_result_independent_of_batch_mates(method):
    prior, op, *_ = _latent_problem("sr")
    ys = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(5)) * 0.3
    gens = lambda idx: [torch.Generator().manual_seed(100 + i) for i in idx]  # noqa: E731
    batch = FAST[method]().sample(prior, op, ys, sigma_y=SIGMA_Y, generator=gens(range(4)))
    alone = FAST[method]().sample(prior, op, ys[2:3], sigma_y=SIGMA_Y, generator=gens([2]))
    diff = (batch[2] - alone[0]).abs().max().item()
    print(f"{method}: max |batch[2] − alone| = {diff:.2e}")
    assert diff < 1e-5


def test_psld_ldm_chain_is_the_official_samplers():
    """``ddim_schedule="ldm"`` (the default) walks the PSLD fork's DDIM tables: at 50 steps the
    network and ᾱ share the timesteps 981, 961, …, 1 and the last step ends at ᾱ_0; at the
    published 1000 steps the fork's index fix asks the network at t + 1 of the ᾱ index (1000 …
    1) and the last step goes from ᾱ_0 to ᾱ_0. ``"respaced"`` is the shared loop's chain. (The
    tables themselves are held to the official ones in ``test_parity.py``.)"""
    fifty = PSLD(steps=50)
    pairs = fifty.schedule(1000)
    assert pairs[0] == (981, 961) and pairs[-1] == (1, 0) and len(pairs) == 50
    assert fifty.network_timestep(981, 1000) == 981
    full = PSLD(steps=1000)
    pairs = full.schedule(1000)
    assert pairs[0] == (999, 998) and pairs[-1] == (0, 0) and len(pairs) == 1000
    assert full.network_timestep(999, 1000) == 1000 and full.network_timestep(0, 1000) == 1
    respaced = PSLD(steps=50, ddim_schedule="respaced")
    assert respaced.schedule(1000)[-1] == (0, -1) and respaced.network_timestep(980, 1000) == 980
    with pytest.raises(ValueError, match=r"steps=3: .*IndexError.*ddim_schedule='respaced'"):
        PSLD(steps=3)
    with pytest.raises(ValueError, match="respaced"):
        PSLD(steps=50, spacing="guided_diffusion")


def test_psld_official_gluing_map_is_the_official_operators_transpose():
    """``gluing_map="official"``: the DPS fork's operator classes map y back by the identity
    (blur, inpainting: image-shaped y) or nearest upsampling (SR), so the glued image is
    y + x̂ − A x̂ for a blur and ↑y + x̂ − ↑(A x̂) for SR; a flat y is refused in one line."""
    from lit_restore.operators import AvgPoolSR, GaussianBlur

    g = torch.Generator().manual_seed(3)
    image = torch.randn(2, 3, 8, 8, generator=g)
    v = torch.randn(2, 3, 8, 8, generator=g)
    assert PSLD.official_transpose(v, image) is v
    small = torch.randn(2, 3, 2, 2, generator=g)
    up = PSLD.official_transpose(small, image)
    assert torch.equal(up, small.repeat_interleave(4, -2).repeat_interleave(4, -1))
    # for average pooling the official map is the exact pseudo-inverse
    assert torch.allclose(up, AvgPoolSR(4).at((2, 3, 8, 8)).pinv(small), atol=1e-6)
    with pytest.raises(ValueError, match="gluing_map: pinv"):
        PSLD.official_transpose(torch.randn(2, 17), image)
    blur = GaussianBlur(kernel_size=3, sigma=1.0).at((2, 3, 8, 8))
    y = blur.A(v)
    glued = (
        PSLD.official_transpose(y, image) + image - PSLD.official_transpose(blur.A(image), image)
    )
    assert torch.allclose(glued, y + image - blur.A(image))
    with pytest.raises(ValueError, match="gluing_map"):
        PSLD(gluing_map="transpose")


def test_resample_stopping_rules_are_the_official_per_image():
    """``_optimise`` stops each image by the official rules (``latent_optimization``: after the
    AdamW step of iteration k, stop if loss_k < ε², or — from k = patience on — if loss_k exceeds
    loss_{k−patience}). Scripted losses with zero gradient: AdamW then only applies its decoupled
    weight decay, v ← v·(1 − lr·0.01) per step taken, so the final value tells each image's count
    of steps exactly. Image 0 rises above its value 3 iterations earlier at k = 5 (6 steps), image
    1 falls below ε² = 1e-6 at k = 2 (3 steps), image 2 runs to the cap (10 steps)."""
    from lit_restore.samplers.resample import _optimise

    script = torch.tensor(
        [
            [5.0, 4.0, 3.0, 3.5, 3.2, 3.6, 1.0, 1.0, 1.0, 1.0],  # k=5: 3.6 > loss_2 = 3.0
            [1.0, 0.5, 1e-7, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            [9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5],
        ]
    )
    calls = []

    def loss_fn(v):
        k = len(calls)
        calls.append(k)
        return script[:, k] + 0 * v.flatten(1).sum(1)

    start = torch.ones(3, 2)
    out = _optimise(start, loss_fn, lr=0.1, iters=10, tol=1e-3, patience=3)
    steps = torch.log(out[:, 0].double()) / math.log(1 - 0.1 * 0.01)
    assert torch.allclose(steps, torch.tensor([6.0, 3.0, 10.0], dtype=torch.float64), atol=1e-3)
    assert len(calls) == 10


def test_psld_gluing_term_is_the_papers():
    """With E = M⁺ and D = M (M full column rank), E(A⁺y + (I − A⁺A) M ẑ0) − ẑ0 =
    M⁺A⁺(y − A M ẑ0): the gluing norm is that preconditioned residual's."""
    prior, op, y, *_ = _latent_problem("sr")
    sampler = PSLD(gamma=1.0, omega=0.0, gluing_map="pinv")
    z0 = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(2))
    ys = y.expand(3, -1, -1, -1)
    ctx = SamplingContext(
        prior, DecodedOperator(op.at((1, 8, 8)), prior), ys, 0.1, None, (3, 1, 4, 4), 1000, sampler
    )
    loss, step = sampler.guidance(ctx, z0, 500)
    M, P = prior.first_stage.M.double(), prior.first_stage.P.double()
    A = _pixel_matrix("sr").double()
    Ap = torch.linalg.pinv(A)
    r = ys.double().flatten(1) - z0.double().flatten(1) @ (A @ M).T
    expected = (r @ (P @ Ap).T).norm(dim=1)
    assert torch.allclose(loss.double(), expected, rtol=1e-4, atol=1e-6)
    assert torch.equal(step, torch.ones(3))


def test_latent_daps_data_gradient_is_the_decoded_residuals_clamped():
    """∇_z ‖A(M z) − y‖² = 2 (A M)ᵀ (A M z − y) (the data term through the linear decoder),
    clamped elementwise to ±grad_clip as the official LatentWrapper.gradient does; far from y
    some entries exceed 1, so the clamp is exercised, and without it the gradient is exact."""
    prior, op, y, *_ = _latent_problem("inpaint")
    z0 = 3 * torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(4))
    ys = y.expand(3, -1)
    AM = (_pixel_matrix("inpaint") @ prior.first_stage.M).double()
    exact = 2 * (z0.double().flatten(1) @ AM.T - ys.double()) @ AM
    grads = {}
    for clip in (None, 1.0):
        sampler = LatentDAPS(grad_clip=clip)
        ctx = SamplingContext(
            prior, DecodedOperator(op.at((1, 8, 8)), prior), ys, 0.1, None, (3, 1, 4, 4), 1000,
            sampler,
        )  # fmt: skip
        grads[clip] = sampler.data_grad(ctx, z0).double().flatten(1)
    assert (exact.abs() > 1).any() and (exact.abs() < 1).any()
    assert torch.allclose(grads[None], exact, rtol=1e-5, atol=1e-5)
    assert torch.allclose(grads[1.0], exact.clamp(-1, 1), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- NFE and refusals
def test_latent_methods_refuse_what_they_cannot_use():
    prior = _tiny_ldm()
    y = torch.zeros(1, 3, 16, 16)
    with pytest.raises(OperatorCapabilityError, match="PSLD needs a linear operator"):
        PSLD(steps=2).sample(prior, JPEG(quality=10), y)
    # latent DPS only needs a differentiable A: JPEG (straight-through rounding) runs
    LatentDPS(steps=2).sample(prior, JPEG(quality=10), y, generator=torch.Generator())
    pixel = _prior()
    with pytest.raises(TypeError, match="runs on a latent prior"):
        LatentDPS(steps=2).sample(
            pixel, DenseOperator(torch.eye(16), (1, 4, 4)), y[:, :1, :4, :4].flatten(1)
        )
    with pytest.raises(ValueError, match="multiple of the first stage"):
        prior.latent_shape((1, 3, 15, 16))


# ------------------------------------------------------------------- diffusers latent pipelines
def _save_ldm_pipeline(root, conditional: bool) -> None:
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    blocks = dict(block_out_channels=(32, 32), layers_per_block=1, norm_num_groups=32)
    if conditional:  # Stable Diffusion layout: text-conditioned UNet, KL autoencoder, v-prediction
        unet = diffusers.UNet2DConditionModel(
            sample_size=8, in_channels=4, out_channels=4, cross_attention_dim=16,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=8, **blocks,
        )  # fmt: skip
        vae = diffusers.AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            **blocks,
        )  # fmt: skip
        vae.save_pretrained(root / "vae")
        sched = diffusers.DDIMScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
            prediction_type="v_prediction",
        )  # fmt: skip
    else:  # LDMPipeline layout (CompVis/ldm-celebahq-256): UNet2DModel + VQModel
        unet = diffusers.UNet2DModel(
            sample_size=8, in_channels=3, out_channels=3,
            down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"), **blocks,
        )  # fmt: skip
        vae = diffusers.VQModel(
            in_channels=3, out_channels=3, latent_channels=3, num_vq_embeddings=32,
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            scaling_factor=0.5, **blocks,
        )  # fmt: skip
        vae.save_pretrained(root / "vqvae")
        sched = diffusers.DDIMScheduler(
            beta_schedule="scaled_linear", beta_start=0.0015, beta_end=0.0195
        )
    unet.save_pretrained(root / "unet")
    sched.save_pretrained(root / "scheduler")


@pytest.mark.parametrize("conditional", [False, True], ids=["ldm_pipeline", "stable_diffusion"])
def test_diffusers_latent_pipeline_is_a_latent_prior(tmp_path, conditional):
    diffusers = pytest.importorskip("diffusers")
    from safetensors.torch import save_file

    from lit_restore.priors import DiffusersLatentPrior

    _save_ldm_pipeline(tmp_path, conditional)
    kwargs = {}
    if conditional:  # no transformers here: the prompt embedding comes from a file
        emb = torch.randn(1, 5, 16, generator=torch.Generator().manual_seed(0))
        save_file({"prompt_embeds": emb}, str(tmp_path / "empty.safetensors"))
        kwargs["prompt_embeds"] = str(tmp_path / "empty.safetensors")
    prior = DiffusersLatentPrior(str(tmp_path), **kwargs)
    unet_cls = diffusers.UNet2DConditionModel if conditional else diffusers.UNet2DModel
    unet = unet_cls.from_pretrained(str(tmp_path / "unet")).eval()
    vae_dir = "vae" if conditional else "vqvae"
    vae_cls = diffusers.AutoencoderKL if conditional else diffusers.VQModel
    vae = vae_cls.from_pretrained(str(tmp_path / vae_dir)).eval()
    sched = diffusers.DDIMScheduler.from_pretrained(str(tmp_path / "scheduler"))
    # the schedule is the scheduler's
    assert torch.allclose(prior.alphas_cumprod, sched.alphas_cumprod.float(), rtol=1e-6)
    c = 4 if conditional else 3
    z = torch.randn(2, c, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([5, 700])
    with torch.no_grad():
        if conditional:  # ε from the v-prediction: ε = √ᾱ v + √(1−ᾱ) z
            v = unet(z, t, encoder_hidden_states=emb.expand(2, -1, -1)).sample
            a = sched.alphas_cumprod[t].float().view(-1, 1, 1, 1)
            want = a.sqrt() * v + (1 - a).sqrt() * z
        else:
            want = unet(z, t).sample
        assert torch.allclose(prior.eps(z, t), want, atol=1e-5)
        # decode as the pipelines do: D(z / scaling_factor)
        sf = vae.config.scaling_factor
        assert torch.allclose(prior.decode(z), vae.decode(z / sf).sample, atol=1e-5)
        x = torch.rand(1, 3, 16, 16) * 2 - 1
        enc = vae.encode(x)
        want_z = (enc.latent_dist.mean if conditional else enc.latents) * sf
        assert torch.allclose(prior.encode(x), want_z, atol=1e-5)
    op = BicubicSR(factor=2, mode="keys")
    out = LatentDPS(steps=2).sample(prior, op, op.A(x), sigma_y=0.05, generator=torch.Generator())
    assert out.shape == (1, 3, 16, 16) and torch.isfinite(out).all()


# ------------------------------------------------------- Stable Diffusion: the prompt's embedding
#: a tiny CLIP BPE vocabulary (the published ``vocab.json`` form: byte-level symbols, ``</w>``
#: ending a word, the merges' products, the two special tokens last) and its merge rules
SD_LETTERS = "abcdefghijklmnopqrstuvwxyz"
SD_MERGES = ["r e", "re d</w>", "p p", "l e</w>", "a pp", "app le</w>"]
SD_TOKENS = 8  # model_max_length = the text encoder's max_position_embeddings


def _sd_vocab() -> dict[str, int]:
    symbols = [
        *SD_LETTERS,
        *(c + "</w>" for c in SD_LETTERS),
        *(m.replace(" ", "") for m in SD_MERGES),
    ]
    return {s: i for i, s in enumerate([*symbols, "<|startoftext|>", "<|endoftext|>"])}


def _write_clip_tokenizer(folder, vocab: dict[str, int], **config) -> None:
    """``tokenizer/`` as ``StableDiffusionPipeline.save_pretrained`` lays it out."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    specials = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}  # fmt: skip
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(SD_MERGES) + "\n")
    (folder / "special_tokens_map.json").write_text(json.dumps(specials))
    tok_config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": SD_TOKENS,
                  "do_lower_case": True, **specials, **config}  # fmt: skip
    (folder / "tokenizer_config.json").write_text(
        json.dumps({k: v for k, v in tok_config.items() if v is not None})
    )


def _save_sd_pipeline(root) -> None:
    """A tiny Stable Diffusion pipeline folder: ``unet/`` (cross-attention width 16), ``vae/``,
    ``scheduler/`` (:func:`_save_ldm_pipeline`), ``text_encoder/`` (a CLIPTextModel of width 16),
    ``tokenizer/`` (:func:`_write_clip_tokenizer`) and ``model_index.json``."""
    import json

    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")
    _save_ldm_pipeline(root, conditional=True)
    vocab = _sd_vocab()
    _write_clip_tokenizer(root / "tokenizer", vocab)
    torch.manual_seed(1)
    encoder = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=SD_TOKENS, projection_dim=16,
            bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        )
    ).eval()  # fmt: skip
    encoder.save_pretrained(root / "text_encoder")
    index = {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
        "feature_extractor": [None, None], "safety_checker": [None, None],
        "requires_safety_checker": False, "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
    }  # fmt: skip
    (root / "model_index.json").write_text(json.dumps(index))


SD_PROMPTS = ["", "A red apple", "a red apple apple apple apple apple"]  # the last is truncated


def test_stable_diffusion_prompt_embedding_is_the_pipelines_encode_prompt(tmp_path):
    """The prior's fixed context for ``prompt`` is, bit for bit, what diffusers'
    ``StableDiffusionPipeline.encode_prompt`` gives on the same saved pipeline folder: the
    unconditional ``""``, a prompt the BPE merges, and one truncated at ``model_max_length``."""
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip(
        "transformers",
        reason="transformers (the [diffusers] extra) not installed: no CLIP tokenizer + encoder",
    )
    from lit_restore.priors import DiffusersLatentPrior

    _save_sd_pipeline(tmp_path)
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(str(tmp_path), local_files_only=True)
    assert isinstance(pipe.tokenizer, transformers.CLIPTokenizer)
    # the tokenizer is the one written: BPE merges "a p p l e</w>" to one token, pads with
    # <|endoftext|>, and truncates keeping the end-of-text token
    vocab = _sd_vocab()
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    ids = [pipe.tokenizer(p, padding="max_length", max_length=SD_TOKENS, truncation=True).input_ids
           for p in SD_PROMPTS]  # fmt: skip
    assert ids[0] == [bos] + [eos] * 7
    assert ids[1] == [bos, vocab["a</w>"], vocab["red</w>"], vocab["apple</w>"]] + [eos] * 4
    assert ids[2] == [bos, vocab["a</w>"], vocab["red</w>"]] + [vocab["apple</w>"]] * 4 + [eos]
    contexts = []
    for prompt in SD_PROMPTS:
        prior = DiffusersLatentPrior(str(tmp_path), prompt=prompt)
        with torch.no_grad():
            want, _ = pipe.encode_prompt(prompt, "cpu", 1, do_classifier_free_guidance=False)
        got = prior.latent.context
        assert got.shape == (1, SD_TOKENS, 16) and got.dtype == want.dtype
        assert torch.equal(got, want), (prompt, (got - want).abs().max())
        contexts.append(got)
    # the prompt reaches the embedding (a prior that ignored it would pass the equality for "")
    assert not torch.equal(contexts[0], contexts[1]) and not torch.equal(contexts[1], contexts[2])
    # and the UNet runs on it: ε from the v-prediction on encode_prompt's embedding
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([5, 700])
    with torch.no_grad():
        v = pipe.unet(z, t, encoder_hidden_states=contexts[-1].expand(2, -1, -1)).sample
        a = pipe.scheduler.alphas_cumprod[t].float().view(-1, 1, 1, 1)
        assert torch.allclose(prior.eps(z, t), a.sqrt() * v + (1 - a).sqrt() * z, atol=1e-6)


def _break_tokenizer(root, defect: str) -> None:
    folder = root / "tokenizer"
    if defect == "missing":
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    elif defect == "foreign_vocabulary":  # another model's tokenizer: ids past the encoder's table
        vocab = _sd_vocab()
        vocab = {s: i + 1000 if s.startswith("<|") else i for s, i in vocab.items()}
        _write_clip_tokenizer(folder, vocab)
    elif defect == "no_max_length":  # transformers then pads to 1e30 tokens
        _write_clip_tokenizer(folder, _sd_vocab(), model_max_length=None)
    elif defect == "no_vocab_file":
        (folder / "vocab.json").unlink()
    elif defect == "empty":  # transformers loads it as a 2-token tokenizer, without complaint
        for path in folder.iterdir():
            path.unlink()


TOKENIZER_DEFECTS = {
    "missing": "tokenizer' is missing",
    "foreign_vocabulary": "gives token id 1059 but the text encoder",
    "no_max_length": "set model_max_length: 8",
    "no_vocab_file": "cannot load the tokenizer",
    "empty": "has 2 tokens",
}


@pytest.mark.parametrize("defect", list(TOKENIZER_DEFECTS))
def test_stable_diffusion_without_its_tokenizer_is_one_error_line(
    tmp_path, capsys, monkeypatch, defect
):
    """sample.py on a pipeline whose tokenizer is missing or is not its text encoder's: exit 2,
    one ``error:`` line naming the folder and the fix (save it, or pass prompt_embeds=)."""
    pytest.importorskip("diffusers")
    pytest.importorskip(
        "transformers",
        reason="transformers (the [diffusers] extra) not installed: no CLIP tokenizer + encoder",
    )
    _save_sd_pipeline(tmp_path / "sd")
    _break_tokenizer(tmp_path / "sd", defect)
    monkeypatch.setattr("sys.argv", ["sample.py"])
    monkeypatch.delenv("LIT_RESTORE_DEBUG", raising=False)
    prior = {
        "class_path": "lit_restore.priors.DiffusersLatentPrior",
        "init_args": {"path": str(tmp_path / "sd"), "prompt": "a red apple"},
    }
    path = write_run_config(
        tmp_path, "latent_dps", defect, prior, LATENT_SAMPLERS["latent_dps"],
        OPERATORS["sr_bicubic"],
    )  # fmt: skip
    capsys.readouterr()
    code = run_cli(SampleCLI, ["test", "--config", str(path)])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    # (stderr may also hold a "--- Logging error ---" of diffusers' handler bound to an earlier
    # test's captured stream: pytest's, not the user's)
    assert code == 2 and len(lines) == 1, err[-2000:]
    assert TOKENIZER_DEFECTS[defect] in lines[0] and "prompt_embeds=" in lines[0], lines[0]
    assert str(tmp_path / "sd" / "tokenizer") in lines[0]


def test_stable_diffusion_prompt_without_transformers_names_the_extra(tmp_path, monkeypatch):
    """Without transformers a prompt cannot be encoded: the one-line user error names the extra
    and the prompt_embeds= alternative (runs where transformers is absent, as here by default)."""
    pytest.importorskip("diffusers")
    from lit_restore.priors import DiffusersLatentPrior
    from lit_restore.utils.errors import one_line
    from lit_restore.utils.extras import MissingExtraError

    _save_ldm_pipeline(tmp_path, conditional=True)
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers → ImportError
    with pytest.raises(MissingExtraError) as caught:
        DiffusersLatentPrior(str(tmp_path))
    line = one_line(caught.value)
    assert line.startswith("error: ") and "\n" not in line
    assert "pip install 'lit_restore[diffusers]'" in line and "prompt_embeds=" in line


def test_stable_diffusion_prompt_embeds_of_another_width_are_refused(tmp_path):
    """Embeddings the UNet cannot cross-attend to (8-dim for a 16-dim cross-attention) are refused
    when the prior is built, naming both widths, not deep inside the first UNet call."""
    pytest.importorskip("diffusers")
    from safetensors.torch import save_file

    from lit_restore.priors import DiffusersLatentPrior

    _save_ldm_pipeline(tmp_path, conditional=True)
    save_file({"prompt_embeds": torch.zeros(1, 5, 8)}, str(tmp_path / "narrow.safetensors"))
    with pytest.raises(ValueError, match=r"gives 8-dim token embeddings but the UNet .* 16-dim"):
        DiffusersLatentPrior(str(tmp_path), prompt_embeds=str(tmp_path / "narrow.safetensors"))
