"""The VP maths of lit_restore.diffusion: schedules, ᾱ lookup, x0↔ε, the posterior, the DDIM(η)
step, and the respacing rules (pinned for every N so that a refactor cannot move a timestep)."""

from __future__ import annotations

import hashlib
import itertools
import json
import math

import pytest
import torch

from lit_restore import diffusion
from lit_restore.diffusion import (
    leading_timesteps,
    linspace_timesteps,
    make_betas,
    quad_timesteps,
    respace,
)

T = 1000

#: sha256 of json.dumps([rule(1000, N) for N in 1..1000]) as the rules were before they moved
#: out of samplers/base.py (commit 5089e35); the respacing must not change in this refactor.
RESPACING_SHA256 = {
    "leading": "029081675574a5d4c86974705cc1f7d6ae289970828334ea51c9a7997230ace7",
    "linspace": "520a033acb2c3c42e4d964579797c138b459a38a8580893e7d23465b573bd9c3",
}


@pytest.mark.parametrize("rule", ["leading", "linspace"])
def test_respacing_unchanged_for_every_step_count(rule):
    allv = [respace(T, n, rule) for n in range(1, T + 1)]
    assert hashlib.sha256(json.dumps(allv).encode()).hexdigest() == RESPACING_SHA256[rule]


def test_leading_rule_closed_form():
    """DDIM's ``range(0, T, T // N)``: t_i = (N−1−i)·⌊T/N⌋ for i = 0 … N−1, for every N."""
    for n in range(1, T + 1):
        skip = T // n
        assert leading_timesteps(T, n) == [(n - 1 - i) * skip for i in range(n)]
    assert respace(T, 100)[:3] == [990, 980, 970] and respace(T, 100)[-1] == 0
    assert respace(T, 20) == list(range(950, -1, -50))  # DDRM seq = range(0, 1000, 50)
    assert respace(T, 10, "uniform") == respace(T, 10, "leading")


def test_linspace_rule_properties():
    """N distinct steps from T−1 down to 0 (the stride (T−1)/(N−1) ≥ 1 keeps rounded points
    apart), each within 0.5 of i·(T−1)/(N−1); N = T is the full chain DPS uses."""
    assert linspace_timesteps(T, T) == list(range(T - 1, -1, -1))
    assert linspace_timesteps(T, 1) == [T - 1]
    for n in range(2, T + 1):
        ts = linspace_timesteps(T, n)[::-1]
        assert len(ts) == n and ts[0] == 0 and ts[-1] == T - 1
        frac = (T - 1) / (n - 1)
        assert all(abs(t - i * frac) <= 0.5 for i, t in enumerate(ts))


def test_quad_rule_is_diffpir_skip_type_quad():
    """DiffPIR's ``seq = [int(s) for s in √linspace(0, T², N)]; seq[-1] −= 1`` read from the top
    (``t = T−1−seq``). Where the stride T²/(N−1) is an integer, numpy's float points are exact
    and ⌊√·⌋ is the integer square root; elsewhere the float rounding is the official rule (the
    20- and 100-step schedules are written out; the rule was checked against numpy for every N
    in 2 … 1000 when it was written: a 1e6/(N−1) stride may land just below a perfect square)."""
    for n in range(2, T + 1):
        ts = quad_timesteps(T, n)
        assert len(ts) == n and ts[0] == T - 1 and ts[-1] == 0
        assert all(a >= b for a, b in itertools.pairwise(ts))  # repeats allowed (N near T)
        if (T * T) % (n - 1) == 0:
            stride = T * T // (n - 1)
            assert ts[:-1] == [T - 1 - math.isqrt(i * stride) for i in range(n - 1)]
    assert quad_timesteps(T, 20) == [
        999, 770, 675, 602, 541, 487, 438, 393, 351, 311, 274, 239, 205, 172, 141, 111, 82, 54,
        26, 0,
    ]  # fmt: skip
    assert quad_timesteps(T, 100)[:4] == [999, 899, 857, 825] and respace(T, 1, "quad") == [999]


def test_ldm_rule_is_compvis_make_ddim_timesteps():
    """CompVis ``make_ddim_timesteps("uniform")``: ``range(0, T, T // N) + 1`` (untruncated:
    more than N entries when N ∤ T), the chain ending at t = 0 (``alphas_prev[0] =
    alphacums[0]``). N whose top entry would be t = T (the official code indexes past ᾱ:
    T // N ∈ {1, 3, 9, 27, 37, 111, 333}, divisors of 999) are refused; every other N
    is the formula."""
    refused = []
    for n in range(1, T + 1):
        c = T // n
        grid = [t + 1 for t in range(0, T, c)]
        if grid[-1] > T - 1:
            refused.append(c)
            with pytest.raises(ValueError, match="spacing 'ldm'"):
                respace(T, n, "ldm")
        else:
            assert respace(T, n, "ldm") == grid[::-1]
    assert sorted(set(refused)) == [1, 3, 9, 27, 37, 111, 333]
    assert respace(T, 500, "ldm")[:2] == [999, 997] and respace(T, 500, "ldm")[-1] == 1
    assert respace(T, 40, "ldm")[:2] == [976, 951] and len(respace(T, 6, "ldm")) == 7
    assert diffusion.chain_end("ldm") == 0
    assert all(diffusion.chain_end(r) == -1 for r in diffusion.SPACINGS if r != "ldm")


def test_ldm_chain_ends_at_alpha_bar_zero():
    """A DDIM loop on the ``"ldm"`` grid takes its last step 1 → 0 (ᾱ_0, not ᾱ = 1), and the
    ancestral chain (which ends at ᾱ = 1) refuses the grid."""
    from lit_restore.samplers.base import DDIM, Sampler

    pairs = DDIM(steps=500, spacing="ldm").schedule(T)
    assert pairs[0] == (999, 997) and pairs[-1] == (1, 0) and len(pairs) == 500
    assert DDIM(steps=500).schedule(T)[-1] == (0, -1)
    with pytest.raises(ValueError, match="variance 'ddim'"):
        Sampler(steps=500, spacing="ldm", variance="fixed_small")


def test_respace_rejects_bad_requests():
    with pytest.raises(ValueError, match="spacing"):
        respace(T, 10, "bogus")
    with pytest.raises(ValueError, match=r"steps must be in \[1, 1000\]"):
        respace(T, 0)
    with pytest.raises(ValueError, match="steps must be"):
        respace(T, 1001, "linspace")


def test_schedules():
    """Linear: guided-diffusion's 1e-4 → 0.02 (ᾱ_999 ≈ 4.036e-5); cosine capped at 0.999."""
    lin = make_betas("linear", T)
    assert lin.dtype == torch.float64 and lin[0] == 1e-4 and math.isclose(lin[-1], 0.02)
    ac = diffusion.alphas_cumprod(lin)
    assert ac.dtype == torch.float32
    assert math.isclose(ac[-1].item(), 4.0358e-05, rel_tol=1e-3)
    torch.testing.assert_close(ac, torch.cumprod(1 - lin, 0).float(), rtol=0, atol=0)
    # linear betas scale with 1000/T (get_named_beta_schedule)
    assert math.isclose(make_betas("linear", 250)[-1].item(), 0.08)
    cos = make_betas("cosine", T)
    assert cos.max() <= 0.999 and cos[0] < 1e-4
    with pytest.raises(ValueError, match="unknown beta schedule"):
        make_betas("sigmoid")


def test_alpha_bar_lookup_and_clean_step():
    ac = diffusion.alphas_cumprod(make_betas("linear", T))
    like = torch.zeros(3, 2, 4, 4, dtype=torch.float64)
    a = diffusion.alpha_bar(ac, torch.tensor([0, 500, -1]), like)
    assert a.shape == (3, 1, 1, 1) and a.dtype == torch.float64
    assert a[0].item() == ac[0].item() and a[1].item() == ac[500].item() and a[2].item() == 1.0
    assert diffusion.alpha_bar(ac, 7, like[:1]).item() == ac[7].item()  # a plain int


def test_x0_eps_and_q_sample_invert_each_other():
    """x_t = √ᾱ x0 + √(1−ᾱ) ε, then both inversions recover x0 and ε (float64: to 1e-12)."""
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 3, 4, 4, generator=g).double(), torch.randn(2, 3, 4, 4, generator=g)
    eps = eps.double()
    a = torch.tensor([0.9, 0.05], dtype=torch.float64).view(2, 1, 1, 1)
    x_t = diffusion.q_sample(x0, eps, a)
    torch.testing.assert_close(diffusion.x0_from_eps(x_t, eps, a), x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(diffusion.eps_from_x0(x_t, x0, a), eps, rtol=0, atol=1e-12)


def test_posterior_is_the_exact_gaussian_conditional():
    """μ̃, β̃ (Ho et al. 2020, Eq. 7) are the mean and variance of x_{t'} given (x_t, x0) for the
    joint x_{t'} = √ᾱ' x0 + √(1−ᾱ') ε', x_t = √(ᾱ/ᾱ') x_{t'} + √(1−ᾱ/ᾱ') ε'' — checked against
    Gaussian conditioning written out (Cov, regression coefficient), in float64."""
    a_prev = torch.tensor(0.7, dtype=torch.float64)
    a = torch.tensor(0.2, dtype=torch.float64)
    alpha = a / a_prev  # the step's 1 − β
    # given x0: x_{t'} ~ N(√ᾱ' x0, 1−ᾱ'), x_t | x_{t'} ~ N(√α x_{t'}, 1−α)
    var_prev = 1 - a_prev
    cov = alpha.sqrt() * var_prev  # Cov(x_{t'}, x_t | x0)
    var_t = alpha * var_prev + (1 - alpha)  # = 1 − ᾱ
    x0 = torch.tensor([0.3, -1.0], dtype=torch.float64)
    x_t = torch.tensor([0.5, 0.1], dtype=torch.float64)
    mean = a_prev.sqrt() * x0 + cov / var_t * (x_t - a.sqrt() * x0)
    var = var_prev - cov**2 / var_t
    torch.testing.assert_close(diffusion.posterior_mean(x0, x_t, a, a_prev), mean)
    torch.testing.assert_close(diffusion.posterior_variance(a, a_prev), var)


def test_ddim_eta_one_is_ancestral_sampling():
    """At η = 1 the DDIM step with ε = ε(x_t, x0) has σ² = β̃ and mean μ̃ (Song et al. 2021,
    §4.1); at η = 0, σ = 0 and the step is deterministic."""
    g = torch.Generator().manual_seed(1)
    x0, x_t = torch.randn(2, 3, 4, 4, generator=g).double(), torch.randn(2, 3, 4, 4, generator=g)
    x_t = x_t.double()
    a = torch.tensor([0.3, 0.01], dtype=torch.float64).view(2, 1, 1, 1)
    a_prev = torch.tensor([0.6, 0.2], dtype=torch.float64).view(2, 1, 1, 1)
    eps = diffusion.eps_from_x0(x_t, x0, a)
    sigma = diffusion.ddim_sigma(a, a_prev, 1.0)
    torch.testing.assert_close(sigma**2, diffusion.posterior_variance(a, a_prev))
    torch.testing.assert_close(
        diffusion.ddim_mean(x0, eps, a_prev, sigma), diffusion.posterior_mean(x0, x_t, a, a_prev)
    )
    assert (diffusion.ddim_sigma(a, a_prev, 0.0) == 0).all()
    # the last step (ᾱ' = 1) lands exactly on x0, whatever η
    one = torch.ones_like(a)
    s = diffusion.ddim_sigma(a, one, 1.0)
    assert (s == 0).all() and torch.equal(diffusion.ddim_mean(x0, eps, one, s), x0)


# ------------------------------------------------------------------ variance types (variance.py)
def _chain(steps: int):
    from lit_restore.diffusion import AncestralChain

    ac = torch.cumprod(1 - make_betas("linear", T), 0)  # float64
    return ac, AncestralChain(ac, respace(T, steps, "guided_diffusion"))


@pytest.mark.parametrize("steps", [1000, 50])
def test_ancestral_chain_is_the_posterior_of_the_respaced_chain(steps):
    """Respaced β_k = 1 − ᾱ_{t_k}/ᾱ_{t_{k−1}}; then c1 x0 + c2 x_t is μ̃ of
    :func:`diffusion.posterior_mean` and exp(fixed_small) is β̃ of
    :func:`diffusion.posterior_variance` for every step but the first of the chain (t_0: β̃ = 0,
    the clipped log takes β̃ of t_1), all in float64 to 1e-12 relative."""
    ac, chain = _chain(steps)
    ts = chain.timesteps
    x0, xt = torch.randn(2, 1, 3, 4, 4, dtype=torch.float64)
    for k, t in enumerate(ts):
        a = ac[t].view(1, 1, 1, 1)
        a_prev = (ac[ts[k - 1]] if k else torch.tensor(1.0, dtype=torch.float64)).view(1, 1, 1, 1)
        mu = chain.posterior_mean(x0, xt, t)
        torch.testing.assert_close(
            mu, diffusion.posterior_mean(x0, xt, a, a_prev), rtol=1e-12, atol=1e-12
        )
        x0_hat = chain.predict_x0(xt, t, x0)
        torch.testing.assert_close(x0_hat, diffusion.x0_from_eps(xt, x0, a), rtol=1e-10, atol=1e-10)
        var = chain.log_variance("fixed_small", t, xt).exp()
        ref_k = k if k else 1  # the clipped first entry
        a_r = ac[ts[ref_k]]
        a_rp = ac[ts[ref_k - 1]] if ref_k else torch.tensor(1.0, dtype=torch.float64)
        if len(ts) > 1:
            torch.testing.assert_close(
                var, diffusion.posterior_variance(a_r, a_rp), rtol=1e-12, atol=0
            )


def test_fixed_large_and_learned_range_variances():
    """fixed_large: β_k of the respaced chain, with β̃_1 at k = 0 (guided-diffusion);
    learned_range: v = 1 gives log β_k, v = −1 the clipped log β̃_k, v = 0 their midpoint."""
    ac, chain = _chain(10)
    ts = chain.timesteps
    like = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    for k, t in enumerate(ts):
        beta = 1 - ac[t] / (ac[ts[k - 1]] if k else 1.0)
        small = chain.log_variance("fixed_small", t, like)
        large = chain.log_variance("fixed_large", t, like)
        torch.testing.assert_close(large, small if k == 0 else beta.log(), rtol=1e-12, atol=0)
        for v, ref in ((1.0, beta.log()), (-1.0, small), (0.0, (beta.log() + small) / 2)):
            got = chain.log_variance("learned_range", t, like, torch.full_like(like, v))
            torch.testing.assert_close(got, ref.expand_as(like), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="learn_sigma"):
        chain.log_variance("learned_range", ts[0], like)


def test_learned_range_needs_the_variance_channels():
    """A sampler asked for learned_range on a prior without variance channels says so; 'auto'
    falls back to fixed_small."""
    from lit_restore.priors import GaussianPrior
    from lit_restore.samplers import DPS

    prior = GaussianPrior()
    assert DPS(steps=10).resolve_variance(prior) == "fixed_small"
    with pytest.raises(ValueError, match="variance channels"):
        DPS(steps=10, variance="learned_range").resolve_variance(prior)
    with pytest.raises(ValueError, match="unknown variance"):
        DPS(steps=10, variance="large")


# ------------------------------------------------------------- continuous σ ↔ VP timestep
def _sigma_table() -> tuple[torch.Tensor, torch.Tensor]:
    ac = diffusion.alphas_cumprod(make_betas("linear", T))
    return ac, diffusion.sigma_from_alpha_bar(ac.double())


@pytest.mark.parametrize("rule", ["interpolate", "nearest"])
def test_timestep_for_sigma_is_exact_at_the_training_timesteps(rule):
    """σ_t of every training t maps back to t: exactly for ``nearest`` (an integer), to float64
    round-off for ``interpolate`` (the interpolation weight of a table point is 0 or 1; measured
    1.1e-13, bound 1e-9)."""
    ac, sigma = _sigma_table()
    t = diffusion.timestep_for_sigma(sigma, ac, rule)
    expected = torch.arange(T)
    if rule == "nearest":
        assert t.dtype == torch.long and torch.equal(t, expected)
    else:
        assert (t - expected.double()).abs().max() < 1e-9


def test_interpolated_timestep_round_trips_and_is_monotone():
    """t → ᾱ(t) → σ → t(σ) at fractional t returns t (float64: measured 7.9e-13, bound 1e-8);
    σ → t is strictly increasing on a dense grid, and ᾱ at an integer t (float dtype) is the
    table's own value, bit for bit (what keeps every discrete sampler unchanged)."""
    ac, _ = _sigma_table()
    g = torch.Generator().manual_seed(0)
    t = torch.rand(2000, generator=g, dtype=torch.float64) * (T - 1)
    a = diffusion.alpha_bar_at(ac, t)
    back = diffusion.timestep_for_sigma(diffusion.sigma_from_alpha_bar(a), ac, "interpolate")
    print(f"round trip: max |t − t(σ(t))| {(back - t).abs().max():.2e}")
    assert (back - t).abs().max() < 1e-8
    levels = torch.logspace(math.log10(0.0101), math.log10(150.0), 5000, dtype=torch.float64)
    for rule in ("interpolate", "vp_sde"):
        tt = diffusion.timestep_for_sigma(levels, ac, rule).double()
        assert (tt[1:] > tt[:-1]).all(), rule
    near = diffusion.timestep_for_sigma(levels, ac, "nearest")
    assert (near[1:] >= near[:-1]).all()
    ints = torch.arange(T, dtype=torch.float32)
    x = torch.zeros(T, 1)
    assert torch.equal(diffusion.alpha_bar(ac, ints, x), diffusion.alpha_bar(ac, ints.long(), x))
    # the clean image (t = −1) keeps ᾱ = 1 whatever t's dtype
    assert diffusion.alpha_bar(ac, torch.tensor([-1.0]), x[:1]).item() == 1.0


def test_vp_sde_rule_is_the_continuous_sde_not_the_discrete_chain():
    """The official DAPS rule: t = (T−1)·τ(σ) inverts σ(τ) = √(exp(½β_d τ² + β_min τ) − 1)
    (β_min 0.1, β_d 19.9), so σ(0) = 0 ↔ t = 0 and σ(1) ↔ t = 999 (float64 round trip, measured
    ~1e-12). Against the discrete linear chain it runs late: σ_t of the chain maps to
    t + 0.92 at t = 0 and t + 3.38 at t = 999 (so the network is asked at t ≈ 1002.4): the
    recorded offsets, within 0.01."""
    ac, sigma = _sigma_table()
    tau = torch.linspace(0, 1, 101, dtype=torch.float64)
    s = torch.sqrt(torch.exp(0.5 * 19.9 * tau**2 + 0.1 * tau) - 1)
    t = diffusion.timestep_for_sigma(s, ac, "vp_sde")
    assert (t - 999 * tau).abs().max() < 1e-9
    off = diffusion.timestep_for_sigma(sigma, ac, "vp_sde") - torch.arange(T)
    print(f"vp_sde offset: t=0 {off[0]:.3f}, t=999 {off[-1]:.3f}")
    assert abs(off[0].item() - 0.92) < 0.01 and abs(off[-1].item() - 3.38) < 0.01


@pytest.mark.parametrize("sigma", [0.013, 0.37, 1.0, 4.2, 80.0])
def test_denoiser_at_sigma_is_exact_for_gaussian_data(sigma):
    """D(x, σ) = x − σ ε̂(x/√(1+σ²), t(σ)) with the exact ε of a Gaussian prior, at σ between
    the training levels (``interpolate``: ᾱ(t(σ)) = 1/(1+σ²)), equals the closed-form posterior
    mean of x0 ~ N(m, C) given x = x0 + σ n: m + C(C + σ²I)⁻¹(x − m). Float32 denoiser against a
    float64 reference. Bound 1e-6·(1 + max|x|): the cancellation x − σε̂ loses float32's 6e-8 of
    |x|, the prior's float32 eigen-filter ~1e-6 relative; measured 1.5e-8 (σ = 0.013) … 3.4e-5
    (σ = 80, |x| ≈ 240)."""
    from lit_restore.priors.gaussian import DenseGaussianPrior, GaussianPrior

    cov = GaussianPrior.power_law(alpha=2.0, std=0.3, f0=0.1, channels=1).covariance(4, 4)
    mean = torch.linspace(-0.3, 0.3, 16).view(1, 4, 4)
    prior = DenseGaussianPrior(mean, cov)
    g = torch.Generator().manual_seed(1)
    x = mean + sigma * torch.randn(3, 1, 4, 4, generator=g)
    s = torch.tensor(sigma, dtype=torch.float32)
    d = diffusion.denoise_at_sigma(prior.eps, x, s, prior.alphas_cumprod, "interpolate")
    c = prior.cov.double()
    gain = c @ torch.linalg.inv(c + sigma**2 * torch.eye(16, dtype=torch.float64))
    exact = mean.double().flatten() + (x.double().flatten(1) - mean.double().flatten()) @ gain.T
    err = (d.double().flatten(1) - exact).abs().max().item()
    print(f"σ={sigma}: max |D − exact| {err:.2e}")
    assert err < 1e-6 * (1 + x.abs().max().item())
