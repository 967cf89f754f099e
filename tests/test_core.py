"""Core protocols: per-image seeding, the operator base/SVD conventions, the VP schedule, noise,
and the shared RestorationModule steps."""

from __future__ import annotations

import math

import pytest
import torch

from lit_restore.diffusion import make_betas
from lit_restore.modules.base import PseudoInverse, RestorationModule
from lit_restore.operators.base import DenseOperator, LinearOperator, OperatorCapabilityError
from lit_restore.operators.noise import GaussianNoise, NoNoise, PoissonNoise
from lit_restore.priors.base import DiffusionPrior
from lit_restore.utils.seeding import (
    STREAM_DEGRADATION,
    STREAM_SAMPLER,
    generators_for,
    image_seed,
    randn_per_image,
)


def test_image_seed_depends_only_on_seed_index_stream():
    assert image_seed(0, 5) == image_seed(0, 5)
    assert image_seed(0, 5) != image_seed(0, 6)
    assert image_seed(0, 5) != image_seed(1, 5)
    assert image_seed(0, 5, STREAM_DEGRADATION) != image_seed(0, 5, STREAM_SAMPLER)


def test_randn_per_image_is_independent_of_batch_mates():
    batch = randn_per_image((3, 2, 4, 4), generators_for(7, [10, 11, 12]))
    alone = randn_per_image((1, 2, 4, 4), generators_for(7, [11]))
    torch.testing.assert_close(batch[1], alone[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="generators for a batch"):
        randn_per_image((2, 3), generators_for(0, [1]))


@pytest.fixture
def dense():
    torch.manual_seed(0)
    return DenseOperator(torch.randn(7, 12), (3, 2, 2))


def test_dense_operator_adjoint_and_pinv(dense):
    x = torch.randn(4, 3, 2, 2, dtype=torch.float32)
    y = torch.randn(4, 7)
    lhs = (dense.A(x) * y).sum()
    rhs = (x * dense.adjoint(y)).sum()
    assert math.isclose(lhs.item(), rhs.item(), rel_tol=1e-5)
    ax = dense.A(x)
    torch.testing.assert_close(dense.A(dense.pinv(ax)), ax, atol=1e-4, rtol=1e-4)
    # pinv equals the Moore-Penrose inverse of the explicit matrix
    ref = (y @ torch.linalg.pinv(dense.matrix).T).view(4, 3, 2, 2)
    torch.testing.assert_close(dense.pinv(y), ref, atol=1e-4, rtol=1e-4)


def test_dense_operator_svd_view_and_pinv_reg(dense):
    x = torch.randn(2, 3, 2, 2)
    s = dense.singulars()
    torch.testing.assert_close(dense.U(s * dense.Vt(x)), dense.A(x), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(dense.V(dense.Vt(x)), x, atol=1e-5, rtol=1e-5)
    y = torch.randn(2, 7)
    eta = 0.3
    m = dense.matrix.double()
    ref = (
        m.T @ torch.linalg.solve(m @ m.T + eta * torch.eye(7, dtype=torch.float64), y.double().T)
    ).T
    torch.testing.assert_close(
        dense.pinv_reg(y, eta), ref.float().view(2, 3, 2, 2), atol=1e-4, rtol=1e-4
    )


def test_operator_without_svd_raises_clear_error():
    class Scale(LinearOperator):
        def A(self, x):
            return 2 * x

        def adjoint(self, y):
            return 2 * y

    with pytest.raises(
        OperatorCapabilityError, match=r"Scale\.pinv needs an SVD view.*Scale has none"
    ):
        Scale().pinv(torch.zeros(1, 1, 2, 2))


def test_bind_sets_params_without_touching_original():
    class Masking(LinearOperator):
        def __init__(self):
            super().__init__()
            self.register_buffer("mask", torch.ones(1, 1, 2, 2))

        def param_names(self):
            return {"mask"}

        def A(self, x):
            return self.mask * x

        def adjoint(self, y):
            return self.mask * y

    op = Masking()
    masks = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]], [[[0.0, 1.0], [1.0, 0.0]]]])
    bound = op.bind({"mask": masks})
    x = torch.ones(2, 1, 2, 2)
    torch.testing.assert_close(bound.A(x), masks)
    torch.testing.assert_close(op.A(x), x)  # original untouched
    with pytest.raises(KeyError, match="unknown per-image parameter 'kernel'"):
        op.bind({"kernel": masks})


def test_linear_schedule_matches_guided_diffusion():
    # guided-diffusion linear schedule, 1000 steps: alphas_cumprod[-1] ≈ 4.036e-05
    prior = DiffusionPrior()
    assert prior.num_timesteps == 1000
    assert math.isclose(prior.alphas_cumprod[-1].item(), 4.0358e-05, rel_tol=1e-3)
    assert math.isclose(prior.betas[0].item(), 1e-4, rel_tol=1e-6)
    cos = make_betas("cosine", 1000)
    assert cos.max() <= 0.999 and cos[0] < 1e-4
    with pytest.raises(ValueError, match="unknown beta schedule"):
        make_betas("sigmoid")


def test_tweedie_roundtrip_and_clean_timestep():
    prior = DiffusionPrior()
    x0 = torch.randn(2, 3, 4, 4)
    eps = torch.randn_like(x0)
    t = torch.tensor([10, 900])
    xt = prior.q_sample(x0, t, eps)
    torch.testing.assert_close(prior.x0_from_eps(xt, t, eps), x0, atol=1e-3, rtol=1e-3)
    assert prior.alpha_bar(torch.tensor([-1]), x0).flatten().item() == 1.0


def test_prior_check_input_names_the_fix():
    prior = DiffusionPrior(image_size=256)
    with pytest.raises(ValueError, match="crop_size 256"):
        prior.check_input(torch.zeros(1, 3, 64, 64))


def test_noise_models_use_image_units():
    y = torch.zeros(1, 1, 256, 256)
    g = torch.Generator().manual_seed(0)
    n = GaussianNoise(0.05)(y, g)
    assert abs(n.std().item() - 0.1) < 0.005  # 0.05 of [0,1] == 0.1 in [-1,1]
    assert GaussianNoise(0.05).model_sigma == pytest.approx(0.1)
    assert NoNoise()(y) is y
    p = PoissonNoise(rate=100.0)(torch.zeros(1, 1, 64, 64), torch.Generator().manual_seed(0))
    assert abs(((p + 1) / 2).mean().item() - 0.5) < 0.02  # unbiased around the mid-grey input
    with pytest.raises(ValueError):
        GaussianNoise(-1)


def test_pseudo_inverse_module_and_nan_error(dense):
    module = PseudoInverse(operator=dense)
    x = torch.rand(2, 3, 2, 2) * 2 - 1
    batch = {"y": dense.A(x), "index": torch.tensor([0, 1]), "name": ["a", "b"], "params": {}}
    out = module.test_step(batch, 0)
    assert out["restored"].shape == x.shape
    torch.testing.assert_close(dense.A(out["restored"]), dense.A(x.clamp(-1, 1)), atol=0.3, rtol=0)

    class Broken(RestorationModule):
        def restore(self, batch):
            out = torch.zeros(2, 3, 2, 2)
            out[1] = float("nan")
            return out

    with pytest.raises(FloatingPointError, match=r"\['b'\]"):
        Broken().test_step(batch, 0)


def test_attach_measurement_refuses_two_operators(dense):
    module = PseudoInverse(operator=dense)
    with pytest.raises(ValueError, match="configured twice"):
        module.attach_measurement(DenseOperator(torch.randn(3, 12), (3, 2, 2)), None)
    empty = PseudoInverse()
    empty.attach_measurement(dense, GaussianNoise(0.01))
    assert empty.operator is dense and empty.noise.sigma == 0.01
