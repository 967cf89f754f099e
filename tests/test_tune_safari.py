"""Pieces of bench/tune_safari.py that the SaFaRI defaults rest on."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from lit_restore.operators import GaussianBlur

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tune():
    spec = importlib.util.spec_from_file_location("tune_safari", ROOT / "bench" / "tune_safari.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fft_pad_blur_equals_direct_convolution(tune):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 24, 20, generator=g, dtype=torch.float64)
    fast = tune.FFTPadGaussianBlur(9, 1.7, boundary="pad").double()
    direct = GaussianBlur(9, 1.7, boundary="pad").double()
    torch.testing.assert_close(fast.A(x), direct.A(x), rtol=0, atol=1e-10)
    # autograd through the FFT forward gives the operator's exact adjoint
    y = torch.randn(2, 3, 24, 20, generator=g, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((fast.A(xr) * y).sum(), xr)
    torch.testing.assert_close(grad, direct.adjoint(y), rtol=0, atol=1e-10)


def test_hf_spectrum_error_separates_smooth_and_noisy(tune):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g)
    assert tune.hf_spectrum_error(x, x) == pytest.approx(0.0, abs=1e-6)
    smooth = torch.nn.functional.avg_pool2d(x, 4, 1, padding=0)
    smooth = torch.nn.functional.interpolate(smooth, size=(64, 64), mode="bilinear")
    assert 0.8 < tune.hf_spectrum_error(smooth, x) <= 1.0  # high band almost gone
    noisy = x + 0.5 * torch.randn(x.shape, generator=g)
    assert tune.hf_spectrum_error(noisy, x) > 1.0  # amplified high band


def test_objective_enforces_spectrum_constraint(tune):
    good = {"psnr": 20.0, "ssim": 0.5, "hf_err": 0.5}
    noisy = {"psnr": 21.0, "ssim": 0.6, "hf_err": 0.9}
    assert tune.objective(good, hf_ref=0.5, slack=0.05) == pytest.approx(25.0)
    assert tune.objective(noisy, 0.5, 0.05) < tune.objective(good, 0.5, 0.05)


def test_search_smoke_runs(tune, tmp_path):
    """A tiny end-to-end search (2 images, 32 px, 5 steps) writes a consistent result."""
    out = tmp_path / "r.json"
    rc = tune.main(
        ["--tasks", "inpainting", "--images", "2", "--size", "32", "--steps", "5",
         "--fit-images", "4", "--out", str(out), "--root", str(ROOT / "data" / "demo")]
    )  # fmt: skip
    assert rc == 0
    import json

    r = json.loads(out.read_text())["results"]["inpainting"]
    best, start = r["safari_best"], r["safari_start"]
    hf_ref = r["dps_repo"]["hf_err"]
    assert tune.objective(best, hf_ref, 0.05) >= tune.objective(start, hf_ref, 0.05)
    assert any(h["config"] == {k: best[k] for k in h["config"]} for h in r["history"])
    assert r["dps_repo"]["scale"] == 0.5
