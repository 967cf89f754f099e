"""ResShift schedule: published eta tables, closed forms, posterior/marginal consistency."""

import math

import pytest
import torch

from lit_restore.resshift.schedule import ResShiftSchedule, exponential_sqrt_etas


def test_t15_table_matches_research_notes():
    s = exponential_sqrt_etas(15, kappa=2.0, min_noise_level=0.04, etas_end=0.99, power=0.3)
    ref = [0.02, 0.117, 0.176, 0.234, 0.292, 0.351, 0.412, 0.476, 0.542, 0.610, 0.681, 0.754,
           0.830, 0.909, 0.99]  # fmt: skip
    assert torch.allclose(s, torch.tensor(ref, dtype=torch.float64), atol=6e-4)
    assert math.isclose(float(s[0]) ** 2, 0.0004, rel_tol=1e-9)  # paper: eta_1 = (0.04/kappa)^2


def test_t4_table_matches_research_notes():
    s = exponential_sqrt_etas(4, kappa=2.0, min_noise_level=0.2, etas_end=0.99, power=0.3)
    assert torch.allclose(
        s, torch.tensor([0.10, 0.520, 0.761, 0.99], dtype=torch.float64), atol=6e-4
    )
    # noise std kappa*sqrt(eta): 0.2, 1.04, 1.52, 1.98
    assert torch.allclose(
        2 * s, torch.tensor([0.2, 1.04, 1.52, 1.98], dtype=torch.float64), atol=5e-3
    )


def test_bad_schedule_arguments_raise():
    with pytest.raises(ValueError, match="steps"):
        ResShiftSchedule(steps=1)
    with pytest.raises(ValueError, match="etas_end"):
        ResShiftSchedule(etas_end=1.2)


@pytest.mark.parametrize("steps,level", [(4, 0.2), (15, 0.04)])
def test_posterior_closed_form_and_marginal_consistency(steps, level):
    sch = ResShiftSchedule(steps=steps, kappa=2.0, min_noise_level=level)
    k2 = sch.kappa**2
    eta, prev = sch.etas, sch.etas_prev
    # alpha_t = eta_t - eta_{t-1}, alpha_1 = eta_1
    assert torch.allclose(sch.alphas[0], eta[0]) and torch.all(sch.alphas > 0)
    assert torch.allclose(sch.posterior_variance, k2 * prev / eta * sch.alphas)
    # algebraic: integrating the posterior over q(x_t|x0) gives q(x_{t-1}|x0) for t >= 2
    # mean: c_xt (x0 + eta_t e0) + c_x0 x0 = x0 + eta_{t-1} e0  <=> c_xt + c_x0 = 1, c_xt eta_t = eta_{t-1}
    assert torch.allclose(sch.coef_xt + sch.coef_x0, torch.ones_like(eta))
    assert torch.allclose(sch.coef_xt * eta, prev)
    # variance: c_xt^2 kappa^2 eta_t + var_post = kappa^2 eta_{t-1}
    assert torch.allclose(sch.coef_xt**2 * k2 * eta + sch.posterior_variance, k2 * prev)


def test_posterior_monte_carlo_matches_marginal():
    torch.manual_seed(0)
    sch = ResShiftSchedule(steps=4, kappa=2.0, min_noise_level=0.2)
    n = 200_000
    x0 = torch.full((n, 1), 0.3)
    y = torch.full((n, 1), -0.5)
    for i in range(1, 4):  # 0-based t=i → sample x_{t-1} (0-based i-1)
        t = torch.full((n,), i, dtype=torch.long)
        xt = sch.q_sample(x0, y, t, torch.randn(n, 1))
        xprev = sch.p_step(xt, x0, t, torch.randn(n, 1))
        mean, std = sch.q_mean_std(x0[:1], y[:1], t[:1] - 1)
        assert abs(xprev.mean().item() - mean.item()) < 4 * std.item() / math.sqrt(n) + 1e-3
        assert abs(xprev.std().item() / std.item() - 1) < 0.01


def test_last_step_is_deterministic_x0_and_prior():
    sch = ResShiftSchedule(steps=4)
    xt = torch.randn(3, 2, 4, 4)
    x0 = torch.randn(3, 2, 4, 4)
    t = torch.zeros(3, dtype=torch.long)
    assert torch.allclose(sch.p_step(xt, x0, t, torch.randn_like(xt)), x0, atol=1e-6)
    y, eps = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    assert torch.allclose(sch.prior_sample(y, eps), y + 2.0 * 0.99 * eps, atol=1e-6)
    tt = torch.tensor([3])
    assert torch.allclose(sch.scale_model_input(y, tt), y / math.sqrt(4 * 0.99**2 + 1), atol=1e-6)
