"""Degradation operators against dense reference matrices and their defining identities."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lit_restore.operators import (
    AvgPoolSR,
    BicubicSR,
    Colorization,
    Denoising,
    DenseOperator,
    GaussianBlur,
    Inpainting,
    LinearOperator,
    MotionBlur,
    OperatorCapabilityError,
    UniformBlur,
)
from lit_restore.operators.kernels import gaussian_kernel_1d, keys_kernel_1d, motion_kernel
from lit_restore.operators.separable import cubic_downsample_matrix
from lit_restore.utils.seeding import STREAM_DEGRADATION, image_generator

SHAPE = (3, 8, 8)
CG = dict(cg_iters=800, cg_tol=1e-12)

# name -> (factory, pinv is exact)
CASES = {
    "bicubic_keys_x2": (lambda: BicubicSR(2, "keys"), True),
    "bicubic_keys_x4": (lambda: BicubicSR(4, "keys"), True),
    "bicubic_matlab_x4": (lambda: BicubicSR(4, "matlab"), True),
    "bicubic_keys_x8": (lambda: BicubicSR(8, "keys", threshold=0.0), True),
    "avgpool_x2": (lambda: AvgPoolSR(2), True),
    "avgpool_x4": (lambda: AvgPoolSR(4), True),
    "gauss_pad": (lambda: GaussianBlur(5, 0.6, "pad", **CG), True),
    "gauss_circular": (lambda: GaussianBlur(5, 0.8, "circular"), True),  # min |K̂| = 7e-3
    "gauss_zero_svd": (lambda: GaussianBlur(5, 1.0, "zero"), True),
    "uniform_zero_svd": (lambda: UniformBlur(3, "zero"), True),
    "uniform_circular": (lambda: UniformBlur(3, "circular"), True),
    "motion_pad": (lambda: MotionBlur(7, 0.5, "pad", **CG), False),
    "motion_circular": (lambda: MotionBlur(7, 0.5, "circular"), True),
    "motion_zero": (lambda: MotionBlur(7, 0.5, "zero", **CG), False),
    "inpaint_box": (lambda: Inpainting("box", box_size=3, margin=1), True),
    "inpaint_random": (lambda: Inpainting("random"), True),
    "inpaint_freeform": (lambda: Inpainting("freeform"), True),
    "inpaint_mixed": (lambda: Inpainting("mixed"), True),
    "denoising": (lambda: Denoising(), True),
    "colorization": (lambda: Colorization(), True),
}


def draw(op: LinearOperator, indices, seed: int = 0, shape=SHAPE) -> dict:
    """Per-image params stacked into a batch, as the data pipeline does."""
    per = [op.sample_params(image_generator(seed, i, STREAM_DEGRADATION), shape) for i in indices]
    return {k: torch.stack([p[k] for p in per]) for k in per[0]} if per[0] else {}


def bound64(name: str, index: int = 0) -> tuple[LinearOperator, dict]:
    op = CASES[name][0]().to(torch.float64)
    params = {k: v.double() for k, v in draw(op, [index]).items()}
    return op.bind(params), params


def dense(op: LinearOperator, params: dict, shape=SHAPE) -> torch.Tensor:
    """The matrix of ``op`` (one image), built by applying it to the identity basis."""
    n = shape[0] * shape[1] * shape[2]
    basis = torch.eye(n, dtype=torch.float64).view(n, *shape)
    expanded = {k: v.expand(n, *v.shape[1:]) for k, v in params.items()}
    return op.bind(expanded).A(basis).reshape(n, -1).T.contiguous()


def randn(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def close(a, b, tol=1e-8) -> bool:
    return (a - b).abs().max().item() <= tol * max(1.0, b.abs().max().item())


#: Bound on the relative defects of :meth:`LinearOperator.adjointness_test` in float64: an inner
#: product of n ≤ 2·3·8·8 = 384 terms is exact to n·u ≈ 4e-14 relative to ‖a‖‖b‖ (Higham 2002,
#: §3.1), and A x itself to ≤ 4 products of ≤ 64-term sums (≤ 256u ≈ 3e-14): 1e-12 covers both.
ADJOINT_TOL = 1e-12
#: Bound on the relative Penrose residuals of :meth:`LinearOperator.pinv_test` in float64: each
#: identity chains ≤ 4 applications of A or A⁺, each ≤ 4 products of ≤ 64-term sums (≤ 256u),
#: and A⁺ amplifies relative error by at most κ = s_max/s_min of the kept singular values (≤ 1e3:
#: DDRM's 3e-2 threshold on both 1-D factors of the zero-padded Gaussian): 16·256·u·1e3 ≈ 1e-9.
#: Conjugate-gradient pseudo-inverses (boundary "pad") stop at a relative residual of
#: cg_tol = 1e-12 on AᵀA, which leaves an error ≤ cg_tol·κ(AᵀA) = 1e-12·83 ≈ 1e-10 (gauss_pad).
PENROSE_TOL = 1e-9


# --------------------------------------------------------------------------- identities
@pytest.mark.parametrize("name", list(CASES))
def test_matches_dense_and_is_adjoint(name):
    op, params = bound64(name)
    mat = dense(op, params)
    x = randn(2, *SHAPE)
    y = op.A(x)
    assert tuple(y.shape) == op.measurement_shape(x.shape)
    assert torch.allclose(y.flatten(1), x.flatten(1) @ mat.T, atol=1e-10)
    v = randn(*y.shape, seed=2)
    assert op.adjointness_test(x, v) <= ADJOINT_TOL
    assert torch.allclose(op.adjoint(v).flatten(1), v.flatten(1) @ mat, atol=1e-10)


@pytest.mark.parametrize("name", list(CASES))
def test_pinv_penrose(name):
    op, params = bound64(name)
    x = randn(2, *SHAPE)
    y = randn(*op.A(x).shape, seed=3)
    if not CASES[name][1]:
        # CG on the normal equations of an ill-conditioned blur: only the least-squares residual
        # is claimed to shrink, Aᵀ(A p − y) ≈ 0.
        p = op.pinv(y)
        assert op.adjoint(op.A(p) - y).norm() < 1e-3 * op.adjoint(y).norm()
        return
    residuals = op.pinv_test(x, y)
    assert max(residuals.values()) <= PENROSE_TOL, residuals
    p = op.pinv(y)
    mat = dense(op, params)
    ref = torch.linalg.pinv(mat, rtol=1e-7)
    assert close(p.flatten(1), y.flatten(1) @ ref.T, 1e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_pinv_reg_matches_dense_formula(name):
    op, params = bound64(name)
    mat = dense(op, params)
    eta = 0.05
    y = randn(*op.measurement_shape((2, *SHAPE)), seed=4)
    gram = mat @ mat.T + eta * torch.eye(mat.shape[0], dtype=torch.float64)
    ref = torch.linalg.solve(gram, y.flatten(1).T).T @ mat
    assert close(op.pinv_reg(y, eta).flatten(1), ref, 1e-8)


SVD_CASES = [n for n in CASES if CASES[n][0]().has_svd]


def test_svd_cases_cover_the_structured_operators():
    assert set(SVD_CASES) == {
        "bicubic_keys_x2", "bicubic_keys_x4", "bicubic_matlab_x4", "bicubic_keys_x8",
        "avgpool_x2", "avgpool_x4", "gauss_zero_svd", "uniform_zero_svd",
        "inpaint_box", "inpaint_random", "inpaint_freeform", "inpaint_mixed", "denoising",
        "colorization",
    }  # fmt: skip


def test_capabilities_are_declared_in_one_place():
    """Every operator here is linear with A⁺ and Aᵀ(AAᵀ+ηI)⁻¹; exactly the SVD cases declare
    "svd"."""
    for name, (factory, _) in CASES.items():
        caps = factory().capabilities
        assert caps == {"linear", "pinv", "pinv_reg"} | ({"svd"} if name in SVD_CASES else set())


@pytest.mark.parametrize("name", SVD_CASES)
def test_svd_view(name):
    op, params = bound64(name)
    x = randn(2, *SHAPE)
    op = op.at(x.shape)
    y = op.A(x)
    n, m = x[0].numel(), y[0].numel()
    z = op.Vt(x)
    s = op.singulars()
    assert z.shape == (2, n) and s.shape[-1] == n
    assert close(op.U(s * z), y.flatten(1).view_as(y), 1e-10)  # U diag(s) Vᵀ x = A x
    assert close(op.V(z), x, 1e-10)  # V Vᵀ = I
    w = randn(2, n, seed=5)
    assert close(op.Vt(op.V(w)), w, 1e-10)  # Vᵀ V = I
    c = op.Ut(y)
    assert c.shape == (2, n) and (c[:, m:] == 0).all()
    assert close(op.U(c), y, 1e-10)
    assert (s.reshape(-1, n)[:, m:] == 0).all()  # null space after the first numel(y) entries
    # the nonzero singular values are those of the dense matrix
    sv = torch.linalg.svdvals(dense(op, params))
    ours = s.reshape(-1, n)[0].double()
    assert torch.allclose(
        ours.sort(descending=True).values[: sv.numel()][sv > 0.05], sv[sv > 0.05], atol=1e-8
    )
    # the base-class SVD formulas agree with the operator's own pinv / pinv_reg
    assert close(LinearOperator.pinv(op, y), op.pinv(y), 1e-9)
    assert close(LinearOperator.pinv_reg(op, y, 0.1), op.pinv_reg(y, 0.1), 1e-9)


def test_circular_pinv_threshold():
    """|K̂| below pinv_threshold is dropped: A A⁺ A = A then fails exactly on those frequencies."""
    op = UniformBlur(3, "circular").double()  # box 3 on a 15-periodic grid: K̂ = 0 at 2π/3·k
    x = randn(1, 3, 15, 15)
    kh = op._transfer(x.shape, x)
    assert (kh.abs() < 1e-12).any()
    y = op.A(x)
    assert close(op.A(op.pinv(y)), y, 1e-10)
    coarse = UniformBlur(3, "circular", pinv_threshold=0.5).double()
    assert not close(coarse.A(coarse.pinv(y)), y, 1e-3)


def test_no_svd_raises_capability_error():
    op, _ = bound64("motion_circular")
    with pytest.raises(OperatorCapabilityError):
        op.singulars()
    with pytest.raises(OperatorCapabilityError):
        GaussianBlur(5, 1.0, "pad").Vt(randn(1, *SHAPE))


# ------------------------------------------------------------------- per-image params
@pytest.mark.parametrize(
    "name", ["motion_pad", "inpaint_box", "inpaint_random", "inpaint_freeform", "inpaint_mixed"]
)
def test_params_are_seeded_per_image(name):
    op = CASES[name][0]()
    assert op.param_names() == set(draw(op, [0]))
    a, b, c = draw(op, [7]), draw(op, [7]), draw(op, [8])
    for k in a:
        assert torch.equal(a[k], b[k])
        assert not torch.equal(a[k], c[k])
    assert not all(torch.equal(a[k], draw(op, [7], seed=1)[k]) for k in a)


@pytest.mark.parametrize(
    "name", ["motion_pad", "motion_circular", "inpaint_random", "inpaint_freeform"]
)
def test_bind_applies_each_image_its_own_params(name):
    op = CASES[name][0]().to(torch.float64)
    params = {k: v.double() for k, v in draw(op, [0, 1, 2]).items()}
    x = randn(3, *SHAPE)
    batch = op.bind(params)
    y = batch.A(x)
    for b in range(3):
        single = op.bind({k: v[b : b + 1] for k, v in params.items()})
        assert torch.allclose(y[b : b + 1], single.A(x[b : b + 1]), atol=1e-12)
        assert torch.allclose(
            batch.pinv_reg(y, 0.1)[b], single.pinv_reg(y[b : b + 1], 0.1)[0], atol=1e-8
        )
    assert not torch.allclose(y[0], y[1])
    assert op.kernel is None if hasattr(op, "kernel") else op.mask is None  # bind leaves op alone


def test_unbound_per_image_operator_raises():
    with pytest.raises(RuntimeError, match="bind"):
        MotionBlur(7).A(randn(1, *SHAPE).float())
    with pytest.raises(RuntimeError, match="bind"):
        Inpainting("random").A(randn(1, *SHAPE).float())


@pytest.mark.parametrize("name", list(CASES))
def test_float64_move(name):
    op = CASES[name][0]()
    params = draw(op, [0])
    x = randn(1, *SHAPE)
    y32 = op.bind(params).A(x.float())
    op64 = op.to(torch.float64)
    assert all(b.dtype in (torch.float64, torch.long, torch.bool) for b in op64.buffers())
    y64 = op64.bind({k: v.double() for k, v in params.items()}).A(x)
    assert y64.dtype == torch.float64
    assert torch.allclose(y64.float(), y32, atol=1e-5)


# ------------------------------------------------------------------------ kernels
@pytest.mark.parametrize("intensity", [0.0, 0.5, 1.0])
def test_motion_kernel_is_a_normalised_trajectory(intensity):
    k = motion_kernel(61, intensity, torch.Generator().manual_seed(3))
    assert k.shape == (61, 61) and (k >= 0).all()
    assert abs(k.sum().item() - 1) < 1e-12
    assert k[0].sum() == 0 and k[-1].sum() == 0  # stays inside the support
    support = (k > 0).sum().item()
    assert 10 < support < 61 * 61 / 4  # a thin path, not a blob or a dot


def test_motion_intensity_controls_irregularity():
    """A straight path (intensity 0) has a rank-1-like line support; irregular paths bend.

    Measured by the second principal axis of the kernel's mass distribution."""

    def spread(intensity):
        vals = []
        for s in range(8):
            k = motion_kernel(31, intensity, torch.Generator().manual_seed(s))
            yy, xx = torch.meshgrid(torch.arange(31.0), torch.arange(31.0), indexing="ij")
            pts = torch.stack([xx.flatten(), yy.flatten()], 1).double()
            w = k.flatten()
            mu = (w[:, None] * pts).sum(0)
            cov = ((pts - mu).T * w) @ (pts - mu)
            ev = torch.linalg.eigvalsh(cov)
            vals.append((ev[0] / ev[1]).item())
        return sum(vals) / len(vals)

    assert spread(0.0) < 0.02 < spread(1.0)


def test_gaussian_kernel_matches_dps_scipy_construction():
    ndimage = pytest.importorskip("scipy.ndimage")
    import numpy as np

    delta = np.zeros((61, 61))
    delta[30, 30] = 1
    ref = torch.from_numpy(ndimage.gaussian_filter(delta, sigma=3.0))
    op = GaussianBlur(61, 3.0)
    assert torch.allclose(op.kernel.double(), ref, atol=1e-7)


def test_keys_kernel_and_matlab_bicubic():
    for f in (2, 4, 8):
        assert abs(keys_kernel_1d(f).sum().item() - 1) < 1e-12
        mat = cubic_downsample_matrix(64, f, "matlab")
        assert torch.allclose(mat.sum(1), torch.ones(64 // f, dtype=torch.float64))
        # for even factors the DDRM (Keys, 4f taps) and MATLAB constructions coincide
        assert torch.allclose(mat, cubic_downsample_matrix(64, f, "keys"), atol=1e-12)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_matlab_bicubic_matches_torch_antialias(factor):
    """Measured (64² smooth image, float64): interior max |diff| ≤ 8e-8 (torch's float weights),
    whole image ≤ 0.0075 / 0.018 / 0.037 for ×2/×4/×8 — only the border differs (MATLAB mirrors
    the image, torch renormalises truncated weights)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    img = torch.stack([torch.sin(3 * xx + 2 * yy), torch.cos(4 * yy) * xx, xx * yy])[None].double()
    ours = BicubicSR(factor, "matlab", threshold=0.0).double().A(img)
    ref = F.interpolate(img, scale_factor=1 / factor, mode="bicubic", antialias=True)
    assert (ours - ref)[..., 2:-2, 2:-2].abs().max() < 1e-6
    assert (ours - ref).abs().max() < 0.01 * factor / 2 + 0.0


def test_avgpool_singulars_and_pinv_replicates():
    op = AvgPoolSR(4, image_size=16)
    s = op.singulars()
    m = 3 * 4 * 4
    assert torch.allclose(s[:m], torch.full((m,), 0.25)) and (s[m:] == 0).all()
    y = randn(1, 3, 4, 4).float()
    assert torch.equal(op.pinv(y), y.repeat_interleave(4, -2).repeat_interleave(4, -1))


def test_bicubic_threshold_default_keeps_every_singular_value():
    for f in (2, 4, 8):
        s = BicubicSR(f, image_size=64).singulars()
        assert (s[: 3 * (64 // f) ** 2] > 0.05).all()


def test_zero_boundary_svd_truncation_and_exact_conv():
    x = randn(1, *SHAPE)
    exact = GaussianBlur(5, 1.0, "zero", svd_threshold=0.0).double()
    k2 = torch.outer(exact.kernel_1d, exact.kernel_1d)
    ref = F.conv2d(x, k2.expand(3, 1, 5, 5), padding=2, groups=3)
    assert torch.allclose(exact.A(x), ref, atol=1e-12)
    x = randn(1, 3, 64, 64)
    truncated = GaussianBlur(5, 10.0, "zero").double().at(x.shape)  # DDRM deblur_gauss: box-like
    y = truncated.A(x)
    s = truncated.singulars()
    assert (s == 0).sum() > 0  # 1-D singular values < 3e-2 were zeroed …
    assert not torch.allclose(
        y, F.conv2d(x, truncated.kernel.expand(3, 1, 5, 5), padding=2, groups=3)
    )
    assert torch.allclose(truncated.U(s * truncated.Vt(x)), y, atol=1e-12)  # … consistently


def test_pad_mode_is_dps_reflection_conv_and_agrees_with_circular_inside():
    op = MotionBlur(7, 0.5, "pad").double()
    params = {k: v.double() for k, v in draw(op, [3]).items()}
    x = randn(1, *SHAPE)
    pad = op.bind(params).A(x)
    k = params["kernel"][0]
    ref = F.conv2d(F.pad(x, (3, 3, 3, 3), mode="reflect"), k.expand(3, 1, 7, 7), groups=3)
    assert torch.allclose(pad, ref, atol=1e-12)
    circ = MotionBlur(7, 0.5, "circular").double().bind(params).A(x)
    assert torch.allclose(pad[..., 3:-3, 3:-3], circ[..., 3:-3, 3:-3], atol=1e-12)


def test_colorization_pinv_replicates_and_to_image():
    op = Colorization()
    y = randn(2, 1, 8, 8).float()
    assert torch.allclose(op.pinv(y), y.expand(-1, 3, -1, -1), rtol=5e-4, atol=1e-6)
    assert op.to_image(y).shape == (2, 3, 8, 8)
    assert torch.allclose(op.A(op.to_image(y)), y, atol=1e-6)


# ----------------------------------------------------------------------- DPS protocol
def test_dps_box_mask_geometry():
    op = Inpainting("box", box_size=128, margin=16)
    for i in range(5):
        mask = draw(op, [i], shape=(3, 256, 256))["mask"][0, 0]
        holes = (mask == 0).nonzero()
        assert holes.shape[0] == 128 * 128
        top, left = holes.min(0).values.tolist()
        assert 16 <= top < 256 - 16 - 128 and 16 <= left < 256 - 16 - 128
        assert holes.max(0).values.tolist() == [top + 127, left + 127]


def test_dps_random_mask_drop_fraction():
    op = Inpainting("random", drop_range=(0.3, 0.7))
    fractions = [1 - draw(op, [i], shape=(3, 32, 32))["mask"].mean().item() for i in range(20)]
    assert all(0.3 - 1 / 1024 <= f <= 0.7 for f in fractions)
    assert max(fractions) - min(fractions) > 0.1  # p is redrawn per image


def test_freeform_mask_has_strokes():
    op = Inpainting("freeform")
    mask = draw(op, [0], shape=(3, 64, 64))["mask"]
    frac = 1 - mask.mean().item()
    assert 0.0 < frac < 0.9 and set(mask.unique().tolist()) <= {0.0, 1.0}


def test_resshift_mixed_masks():
    """ResShift's training masks: each kind is binary, partial, and a function of the generator."""
    from lit_restore.operators.masks import mixed_mask

    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    for kind in ("box", "irregular", "outpaint", "mixed"):
        m = mixed_mask(32, 32, g(), kind)
        assert m.shape == (1, 32, 32) and set(m.unique().tolist()) <= {0.0, 1.0}
        assert 0 < m.mean() < 1
        assert torch.equal(m, mixed_mask(32, 32, g(), kind))
    outpaint = mixed_mask(32, 32, g(), "outpaint")
    kept = (outpaint[0] == 1).nonzero()  # one axis-aligned kept band of 40–80 %
    assert 0.4**2 * 32 * 32 * 0.9 <= kept.shape[0] <= 0.8 * 32 * 32
    with pytest.raises(ValueError, match="mask kind"):
        mixed_mask(8, 8, g(), "star")


def test_mask_file(tmp_path):
    from PIL import Image

    arr = torch.ones(16, 16, dtype=torch.uint8) * 255
    arr[4:8, 4:12] = 0
    Image.fromarray(arr.numpy()).save(tmp_path / "m.png")
    op = Inpainting("file", mask_path=str(tmp_path / "m.png"))
    mask = draw(op, [0], shape=(3, 16, 16))["mask"]
    assert mask.sum().item() == 256 - 32
    assert torch.equal(op.A(torch.ones(1, 3, 16, 16)), mask.expand(1, 3, 16, 16))  # unbound
    with pytest.raises(ValueError, match="resize the mask"):
        op.sample_params(torch.Generator(), (3, 32, 32))
    with pytest.raises(ValueError, match="mask is"):
        op.A(torch.ones(1, 3, 8, 8))
    with pytest.raises(FileNotFoundError, match="mask_path"):
        Inpainting("file", mask_path=str(tmp_path / "missing.png"))


def test_bad_options_raise_clear_errors():
    with pytest.raises(ValueError, match="box_size"):
        Inpainting("box", box_size=128, margin=16).sample_params(torch.Generator(), (3, 64, 64))
    with pytest.raises(ValueError, match="boundary"):
        GaussianBlur(5, 1.0, "mirror")
    with pytest.raises(ValueError, match="mode"):
        BicubicSR(4, "lanczos")
    with pytest.raises(ValueError, match="divisible"):
        BicubicSR(4).A(torch.zeros(1, 3, 18, 18))
    with pytest.raises(ValueError, match="intensity"):
        MotionBlur(7, intensity=2.0)
    with pytest.raises(ValueError, match="kernel_size"):
        GaussianBlur(4, 1.0)


def test_gaussian_kernel_1d_truncation():
    g = gaussian_kernel_1d(61, 3.0)
    assert g[30 - 12] > 0 and g[30 - 13] == 0  # scipy truncate=4 → radius int(4·3 + 0.5) = 12


def test_dense_reference_is_consistent():
    op, params = bound64("colorization")
    mat = dense(op, params)
    ref = DenseOperator(mat, SHAPE)
    x = randn(1, *SHAPE).float()
    assert torch.allclose(ref.A(x).view(1, 1, 8, 8), op.float().A(x), atol=1e-5)


@pytest.mark.parametrize(
    "name", ["bicubic_keys_x4", "gauss_zero_svd", "colorization", "motion_pad"]
)
def test_state_dict_loads_strictly_into_a_fresh_operator(name):
    """SVD caches are derived data: a used operator's state_dict loads strictly into a new one."""
    used = CASES[name][0]()
    bound = used.bind(draw(used, [0]))
    bound.A(randn(1, *SHAPE).float())
    bound.Ut(bound.A(randn(1, *SHAPE).float())) if bound.has_svd else None
    fresh = CASES[name][0]()
    fresh.load_state_dict(used.state_dict(), strict=True)
    used.load_state_dict(CASES[name][0]().state_dict(), strict=True)


# ------------------------------------------------------------------ explicit image shapes
@pytest.mark.parametrize("name", SVD_CASES)
def test_svd_view_needs_an_explicit_shape(name):
    """Nothing is remembered from earlier calls: V/U/singulars of an operator without an image
    shape raise, whatever it was applied to before; ``at`` returns a view and leaves it alone."""
    op, params = bound64(name)
    x = randn(2, *SHAPE)
    op.Vt(x), op.A(x)  # used on images: still no shape
    for call in (op.singulars, lambda: op.V(op.at(x.shape).Vt(x)), lambda: op.U(op.Ut(op.A(x)))):
        with pytest.raises(RuntimeError, match=r"operator\.at"):
            call()
    view = op.at(x.shape)
    assert view.image_shape == SHAPE and op.image_shape is None
    assert view.at(SHAPE) is view
    if not params:  # a second shape from the same operator: its own SVD (masks fix the size)
        big = op.at((3, 16, 16))
        assert big.singulars().shape[-1] == 3 * 16 * 16 and view.singulars().shape[-1] == 3 * 8 * 8


def test_at_rejects_images_the_operator_cannot_act_on():
    with pytest.raises(ValueError, match="divisible"):
        BicubicSR(4).at((3, 18, 18))
    with pytest.raises(ValueError, match="3-channel"):
        Colorization().at((1, 8, 8))
    mask = Inpainting("random").bind({"mask": torch.ones(1, 1, 8, 8)})
    with pytest.raises(ValueError, match="mask is"):
        mask.at((3, 16, 16))
    with pytest.raises(ValueError, match="acts on images"):
        DenseOperator(torch.eye(12), (3, 2, 2)).at((3, 4, 4))


# ------------------------------------------------------------------ a user's own operator
class UserScale(LinearOperator):
    """The minimal user operator of the base-class docstring: ``A`` and ``adjoint`` only."""

    def A(self, x):
        return 0.5 * x

    def adjoint(self, y):
        return 0.5 * y


class UserDiagonal(LinearOperator):
    """A user operator with an SVD: per-channel gains ``w`` (``A x = w_c x_c``), written as the
    base-class docstring says (spectral layout: pixels with w > 0 first, then the null space)."""

    has_svd = True

    def __init__(self, gains):
        super().__init__()
        self.register_buffer("gains", torch.as_tensor(gains, dtype=torch.float64))

    def _w(self, like):
        return self.gains.to(like).view(1, -1, 1, 1)

    def A(self, x):
        return self._w(x) * x

    def adjoint(self, y):
        return self._w(y) * y

    def _order(self):
        c, h, w = self.image_shape
        s = self.gains.view(-1, 1).expand(c, h * w).reshape(-1)
        return torch.sort(-s, stable=True).indices, s

    def Vt(self, x):
        return x.flatten(1)[:, self._order()[0]]

    def V(self, z):
        perm, _ = self._order()
        out = torch.empty_like(z)
        out[:, perm] = z
        return out.view(-1, *self.image_shape)

    def Ut(self, y):
        return self.Vt(y)

    def U(self, z):
        return self.V(z)

    def singulars(self):
        perm, s = self._order()
        return s[perm]


def test_user_operators_pass_the_checks_their_methods_need():
    from lit_restore.operators import require_capabilities

    x = randn(2, *SHAPE)
    scale = UserScale()
    assert scale.capabilities == {"linear"}
    assert scale.adjointness_test(x) <= ADJOINT_TOL
    require_capabilities(scale, frozenset(), "DPS")  # A and Aᵀ are enough
    with pytest.raises(OperatorCapabilityError, match=r"DDRM needs an SVD view.*UserScale"):
        require_capabilities(scale, {"svd"}, "DDRM")
    with pytest.raises(OperatorCapabilityError, match="UserScale"):
        scale.pinv(x)
    with pytest.raises(ValueError, match="needs a degradation operator"):
        require_capabilities(None, frozenset(), "DPS")
    require_capabilities(None, None, "DDPM")  # unconditional: no operator wanted

    diag = UserDiagonal([2.0, 0.0, 0.5]).at(SHAPE)
    assert diag.capabilities == {"linear", "svd", "pinv", "pinv_reg"}
    require_capabilities(diag, {"svd", "pinv", "pinv_reg"}, "DDRM")
    assert diag.adjointness_test(x) <= ADJOINT_TOL
    assert max(diag.pinv_test(x).values()) <= PENROSE_TOL
    # the base-class A⁺ and Aᵀ(AAᵀ+ηI)⁻¹ through the user's SVD, against closed forms
    y = diag.A(x)
    w = torch.tensor([2.0, 0.0, 0.5], dtype=torch.float64).view(1, 3, 1, 1)
    assert close(diag.pinv(y), torch.where(w > 0, y / w.clamp_min(1e-30), 0 * y), 1e-14)
    eta = torch.tensor([0.1, 0.3], dtype=torch.float64)  # one η per image
    assert close(diag.pinv_reg(y, eta), w * y / (w * w + eta.view(2, 1, 1, 1)), 1e-14)


def test_per_image_eta_broadcasts_in_every_operator():
    """``pinv_reg(y, η)`` with one η per image equals applying each image's η alone."""
    eta = torch.tensor([0.05, 0.5], dtype=torch.float64)
    for name in CASES:
        op, _ = bound64(name)
        x = randn(2, *SHAPE)
        y = op.at(x.shape).A(x) if op.image_shape is None else op.A(x)
        both = op.pinv_reg(y, eta)
        for b in range(2):
            alone = op.pinv_reg(y[b : b + 1], float(eta[b]))
            assert close(both[b : b + 1], alone, 1e-9), name
