"""Nonlinear operators (JPEG, phase retrieval, the DPS paper's nonlinear blur) for DPS and SaFaRI.

- forward against a reference: JPEG against libjpeg through PIL at stated bounds; phase retrieval
  against numpy's FFT and Parseval; the blur network against the official bkse code (parity
  fixture ``tests/data/parity/kernel_wizard.npz``, ``scripts/make_parity_fixture_kernel_wizard.py``)
  and its full published layout;
- gradients exist and are finite (also where the modulus is zero);
- capabilities: none declared, so DDRM/DDNM/DDPG/the pseudo-inverse refuse in one line and DPS /
  SaFaRI run; the per-image blur code is drawn once and shared by measurement and guidance;
- sample.py restores with each of them end to end on CPU, and refuses DDRM + JPEG in one line.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lit_restore.nn.kernel_wizard import KernelWizard
from lit_restore.operators import (
    JPEG,
    NonlinearBlur,
    OperatorCapabilityError,
    PhaseRetrieval,
    require_capabilities,
)
from lit_restore.operators.jpeg import CHROMA_TABLE, LUMA_TABLE, quantization_table
from lit_restore.priors import PowerLawGaussianPrior
from lit_restore.samplers import DAPS, DDPG, DDRM, DDS, DPS, DiffPIR, PiGDM, REDDiff, SaFaRI

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "parity" / "kernel_wizard.npz"
TINY_BLUR = dict(nf=4, front_RBs=1, back_RBs=1, kernel_dim=32, extractor_blocks=1)


def _demo_uint8(h: int = 72, w: int = 88) -> np.ndarray:
    """A real photograph crop (not a multiple of 16: the padding path runs too)."""
    path = sorted((ROOT / "data" / "demo").glob("*.png"))[0]
    return np.array(Image.open(path).convert("RGB"))[:h, :w]


def _psnr255(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2)))


# ------------------------------------------------------------------------------------- JPEG
def test_jpeg_quantization_tables_follow_the_ijg_rule():
    # quality 50 is scale 100: the Annex K tables themselves; quality 100 is scale 0: all ones
    assert torch.equal(quantization_table(LUMA_TABLE, 50), torch.tensor(LUMA_TABLE).float())
    assert torch.equal(quantization_table(CHROMA_TABLE, 50), torch.tensor(CHROMA_TABLE).float())
    assert torch.equal(quantization_table(LUMA_TABLE, 100), torch.ones(8, 8))
    # quality 10: scale 500, ⌊(16·500 + 50)/100⌋ = 80, and 99·5 = 495 clipped to 255
    q10 = quantization_table(CHROMA_TABLE, 10)
    assert q10[0, 0] == 85 and q10[7, 7] == 255
    with pytest.raises(ValueError, match="quality"):
        JPEG(quality=0)


@pytest.mark.parametrize(
    ("quality", "subsampling", "rounding", "min_db"),
    [
        (10, True, "ste", 36.0),
        (10, False, "ste", 38.0),
        (50, True, "ste", 43.0),
        (50, False, "ste", 43.0),
        (10, True, "cubic", 36.0),
    ],
)
def test_jpeg_forward_matches_libjpeg(quality, subsampling, rounding, min_db):
    """Our JPEG of an 8-bit photograph against PIL's (libjpeg) encode + decode.

    Measured on this crop (dB, ours vs PIL; PIL vs the input in brackets): q10 4:2:0 37.0
    (26.6), q10 4:4:4 39.3 (27.4), q50 4:2:0 44.6 (33.1), q50 4:4:4 46.5 (34.7), q10 4:2:0 cubic
    37.1. The bounds are those less 1 dB: libjpeg's integer DCT and its 8-bit intermediate planes
    flip a few coefficients across a rounding boundary (one quantisation step, up to 28 levels at
    q10, in a few pixels). Ours is always > 10 dB closer to libjpeg than JPEG is to its input, so a
    wrong table, colour transform or upsampling (each several dB) fails the test.
    """
    img = _demo_uint8()
    buf = io.BytesIO()
    Image.fromarray(img).save(
        buf, format="JPEG", quality=quality, subsampling=2 if subsampling else 0
    )
    ref = np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).astype(np.float64)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        y = JPEG(quality, subsampling, rounding).A(x)
    ours = (y[0].permute(1, 2, 0).numpy().astype(np.float64) + 1) * 127.5
    assert _psnr255(ours, ref) > min_db
    assert _psnr255(ours, ref) > _psnr255(ref, img) + 10


def test_jpeg_gradient_is_finite_and_informative():
    x = torch.rand(2, 3, 24, 40, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for rounding in ("ste", "cubic"):
        xi = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(JPEG(10, rounding=rounding).A(xi).pow(2).sum(), xi)
        assert torch.isfinite(g).all() and g.abs().mean() > 1e-3
    # straight-through: A itself is exact rounding, so A(A(x)) ≈ A(x) (JPEG is nearly idempotent:
    # re-encoding a decoded JPEG moves it far less than the first encoding did)
    op = JPEG(10)
    with torch.no_grad():
        once = op.A(x)
        twice = op.A(once)
    assert (twice - once).abs().mean() < 0.3 * (once - x).abs().mean()


# -------------------------------------------------------------------------- phase retrieval
def test_phase_retrieval_matches_numpy_and_parseval():
    x = torch.rand(2, 3, 32, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1
    op = PhaseRetrieval(oversample=2.0)
    y = op.A(x)
    assert y.shape == (2, 3, 32 + 2 * 8, 24 + 2 * 6)
    xp = np.pad(x.double().numpy(), ((0, 0), (0, 0), (8, 8), (6, 6)))
    ref = np.abs(
        np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(xp, axes=(-2, -1))), axes=(-2, -1))
    ) / np.sqrt(48 * 36)
    assert np.abs(y.double().numpy() - ref).max() < 1e-5 * ref.max()  # float32 FFT round-off
    # orthonormal DFT of a zero-padded image: ‖y‖ = ‖x‖
    torch.testing.assert_close(y.pow(2).sum((1, 2, 3)), x.pow(2).sum((1, 2, 3)), rtol=1e-5, atol=0)
    for h, w in ((256, 256), (32, 24), (77, 130)):
        shape = (1, 3, h, w)
        assert op.image_shape_for(op.A(torch.zeros(shape))) == shape
    assert op.pad(256) == 64  # the official ⌊2/8 · 256⌋


def test_phase_retrieval_gradient_is_finite_where_the_modulus_vanishes():
    # a constant image: every non-DC frequency of the unpadded part cancels in places; x = 0 makes
    # the whole spectrum vanish (|z| is not differentiable at 0: torch's subgradient is 0)
    op = PhaseRetrieval()
    y = op.A(torch.rand(1, 3, 16, 16) * 2 - 1)
    for x in (torch.zeros(1, 3, 16, 16), torch.full((1, 3, 16, 16), 0.5)):
        xi = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad((y - op.A(xi)).pow(2).sum().sqrt(), xi)
        assert torch.isfinite(g).all()


# --------------------------------------------------------------------------- nonlinear blur
def _fixture() -> tuple[dict, dict[str, torch.Tensor]]:
    data = np.load(FIXTURE)
    meta = json.loads(str(data["meta"]))
    arrays = {k: torch.from_numpy(data[k]).float() for k in data.files if k != "meta"}
    return meta, arrays


def test_kernel_wizard_equals_the_official_code():
    meta, arr = _fixture()
    with torch.device("meta"):
        full = KernelWizard()
    assert {k: list(v.shape) for k, v in full.state_dict().items()} == meta["gopro_layout"]
    net = KernelWizard(**TINY_BLUR).eval()
    state = {k.split("/", 1)[1]: v for k, v in arr.items() if k.startswith("state_dict/")}
    net.load_state_dict(state, strict=True)
    with torch.no_grad():
        out = net.adapt_kernel(arr["x"], arr["code"])
    # the same float32 operations in the same order: equal to round-off (measured: 0)
    torch.testing.assert_close(out, arr["blurred"], rtol=0, atol=1e-5)
    assert (arr["blurred"] - arr["x"]).abs().mean() > 1e-2  # the fixture does blur


def _tiny_blur() -> NonlinearBlur:
    _, arr = _fixture()
    op = NonlinearBlur(checkpoint=None, **TINY_BLUR)
    state = {k.split("/", 1)[1]: v for k, v in arr.items() if k.startswith("state_dict/")}
    op.net.load_state_dict(state, strict=True)
    return op


def test_nonlinear_blur_code_is_drawn_once_per_image_and_gradients_flow():
    op = _tiny_blur()
    codes = [op.sample_params(torch.Generator().manual_seed(s), (3, 128, 128)) for s in (0, 0, 1)]
    assert codes[0]["code"].shape == (32, 1, 1)
    assert torch.equal(codes[0]["code"], codes[1]["code"])  # a pure function of the generator
    params = {"code": torch.stack([codes[0]["code"], codes[2]["code"]])}
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(3)) * 2 - 1
    bound = op.bind(params)
    with torch.no_grad():
        y1, y2 = bound.A(x), op.bind(params).A(x)
    assert torch.equal(y1, y2)  # measurement and guidance see the same blur
    with torch.no_grad():  # the official formula: clip(2·G((x+1)/2, k) − 1)
        ref = (op.net.adapt_kernel((x + 1) / 2, params["code"]) * 2 - 1).clamp(-1, 1)
    torch.testing.assert_close(y1, ref, rtol=0, atol=0)
    xi = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad((y1 - bound.A(xi)).pow(2).sum(), xi)
    assert torch.isfinite(g).all()
    with pytest.raises(RuntimeError, match="bind"):
        op.A(x)
    with pytest.raises(ValueError, match="multiples of 128"):
        op.at((3, 96, 128))


def test_missing_blur_weights_say_what_to_download(tmp_path, monkeypatch):
    from lit_restore.weights import MissingWeightsError

    monkeypatch.setenv("LIT_RESTORE_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match=r"GOPRO_wVAE\.pth") as info:
        NonlinearBlur()
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- capabilities
@pytest.mark.parametrize("op", [JPEG(), PhaseRetrieval()], ids=["jpeg", "phase_retrieval"])
def test_linear_only_methods_refuse_nonlinear_operators(op):
    assert op.capabilities == frozenset()
    require_capabilities(op, frozenset(), "DPS")
    name = type(op).__name__
    for needs, method in (({"svd"}, "DDRM"), ({"pinv_reg"}, "DDPG"), ({"pinv"}, "PseudoInverse")):
        with pytest.raises(
            OperatorCapabilityError, match=f"{method} needs a linear operator, but {name}"
        ):
            require_capabilities(op, needs, method)
    prior = PowerLawGaussianPrior(channels=3)
    x = torch.zeros(1, 3, 16, 16)
    y = op.A(x)
    linear_only = (DDRM(steps=2), DDPG(steps=2), DiffPIR(steps=2), PiGDM(steps=2), DDS(steps=2),
                   REDDiff(steps=2))  # fmt: skip
    for sampler in linear_only:
        with pytest.raises(OperatorCapabilityError, match="needs a linear operator"):
            sampler.sample(prior, op, y)


@pytest.mark.parametrize("method", [DPS, SaFaRI])
@pytest.mark.parametrize("op", [JPEG(10), PhaseRetrieval()], ids=["jpeg", "phase_retrieval"])
def test_gradient_methods_restore_through_nonlinear_operators(method, op):
    """A few DPS/SaFaRI steps under an analytic prior reduce the measurement residual from the
    prior's initial guess (a sanity check that the guidance points the right way)."""
    g = torch.Generator().manual_seed(5)
    low = torch.rand(1, 3, 4, 4, generator=g) * 2 - 1
    x = torch.nn.functional.interpolate(low, size=(16, 16), mode="bicubic").clamp(-1, 1)
    y = op.A(x)
    prior = PowerLawGaussianPrior(channels=3)
    out = method(steps=20, scale=1.0).sample(
        prior, op, y, generator=[torch.Generator().manual_seed(0)]
    )
    assert out.shape == x.shape and torch.isfinite(out).all()
    free = method(steps=20, scale=0.0).sample(
        prior, op, y, generator=[torch.Generator().manual_seed(0)]
    )
    assert (op.A(out) - y).norm() < (op.A(free) - y).norm()


@pytest.mark.parametrize("op", [JPEG(10), PhaseRetrieval()], ids=["jpeg", "phase_retrieval"])
def test_daps_restores_through_nonlinear_operators(op):
    """DAPS's Langevin steps (gradient by autograd through A) pull the result towards the
    measurement: the residual is smaller than that of the same chain without MCMC steps (x0 = the
    ODE's x̂0, an unguided prior sample), on the same noise: measured 6.05 vs 21.1 (JPEG) and
    6.64 vs 12.6 (phase retrieval); asserted below 3/4 of it."""
    g = torch.Generator().manual_seed(5)
    low = torch.rand(1, 3, 4, 4, generator=g) * 2 - 1
    x = torch.nn.functional.interpolate(low, size=(16, 16), mode="bicubic").clamp(-1, 1)
    y = op.A(x)
    prior = PowerLawGaussianPrior(channels=3)
    kw = dict(annealing_steps=10, ode_steps=2, lr=1e-4, tau=0.05)
    out = DAPS(mcmc_steps=20, **kw).sample(
        prior, op, y, generator=[torch.Generator().manual_seed(0)]
    )
    free = DAPS(mcmc_steps=0, **kw).sample(
        prior, op, y, generator=[torch.Generator().manual_seed(0)]
    )
    assert out.shape == x.shape and torch.isfinite(out).all()
    res, res0 = (op.A(out) - y).norm().item(), (op.A(free) - y).norm().item()
    print(f"{type(op).__name__}: residual {res:.3f} (no MCMC: {res0:.3f})")
    assert res < 0.75 * res0


# -------------------------------------------------------------------------------------- CLI
def _sample(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """``sample.py test ARGS`` in-process (the CLI entry point, without a second interpreter's
    start-up): (exit status, stderr)."""
    from lit_restore.cli import SampleCLI, run_cli

    monkeypatch.setattr(sys, "argv", ["sample.py"])
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("LIT_RESTORE_DEBUG", raising=False)
    capsys.readouterr()
    code = run_cli(SampleCLI, ["test", *args])
    return code, capsys.readouterr().err


def _config(tmp_path: Path, name: str, operator: str, sampler: str, crop: int) -> Path:
    images = tmp_path / "images"  # two of the demo photographs
    images.mkdir(exist_ok=True)
    for path in sorted((ROOT / "data" / "demo").glob("*.png"))[:2]:
        (images / path.name).write_bytes(path.read_bytes())
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(
        f"""
seed_everything: 0
trainer: {{accelerator: cpu, devices: 1, enable_progress_bar: false,
  logger: {{class_path: lightning.pytorch.loggers.TensorBoardLogger,
            init_args: {{save_dir: {tmp_path}, name: {name}, version: v}}}},
  callbacks: [{{class_path: lit_restore.evaluation.RestorationMetrics,
                init_args: {{metrics: [psnr]}}}},
              {{class_path: lit_restore.evaluation.RestoredImageWriter,
                init_args: {{save_measurement: true}}}}]}}
model:
  class_path: lit_restore.modules.ZeroShotRestoration
  init_args:
    prior: {{class_path: lit_restore.priors.PowerLawGaussianPrior, init_args: {{channels: 3}}}}
    sampler: {sampler}
data:
  class_path: lit_restore.data.RestorationDataModule
  init_args:
    test_set: {{class_path: lit_restore.data.ImageFolder, init_args: {{root: {images}}}}}
    operator: {operator}
    crop_size: {crop}
    batch_size: 2
"""
    )
    return cfg


DPS_FEW = "{class_path: lit_restore.samplers.DPS, init_args: {steps: 5, scale: 1.0}}"
DAPS_FEW = (
    "{class_path: lit_restore.samplers.DAPS, init_args: {annealing_steps: 3, ode_steps: 1, "
    "mcmc_steps: 2}}"
)


@pytest.mark.parametrize("sampler", [DPS_FEW, DAPS_FEW], ids=["dps", "daps"])
@pytest.mark.parametrize(
    ("name", "operator", "crop"),
    [
        ("jpeg", "{class_path: lit_restore.operators.JPEG, init_args: {quality: 10}}", 32),
        ("phase", "{class_path: lit_restore.operators.PhaseRetrieval}", 32),
        (
            "nlblur",
            "{class_path: lit_restore.operators.NonlinearBlur, init_args: {checkpoint: null, "
            "nf: 4, front_RBs: 1, back_RBs: 1, kernel_dim: 32, extractor_blocks: 1}}",
            128,
        ),
    ],
)
def test_sample_py_restores_with_a_nonlinear_operator(
    tmp_path, monkeypatch, capsys, name, operator, crop, sampler
):
    cfg = _config(tmp_path, name, operator, sampler, crop)
    code, err = _sample(monkeypatch, capsys, "--config", str(cfg))
    assert code == 0, err[-3000:]
    run = tmp_path / name / "v"
    restored = sorted((run / "restored").glob("*.png"))
    assert len(restored) == 2
    assert Image.open(restored[0]).size == (crop, crop)
    assert len(list((run / "measurement").glob("*.png"))) == 2
    rows = (run / "per_image_test.csv").read_text().splitlines()
    assert len(rows) == 3


def test_sample_py_refuses_ddrm_with_jpeg_in_one_line(tmp_path):
    """As a user runs it (a subprocess: its stderr is exactly what the user sees)."""
    ddrm = "{class_path: lit_restore.samplers.DDRM, init_args: {steps: 2}}"
    jpeg = "{class_path: lit_restore.operators.JPEG}"
    cfg = _config(tmp_path, "refuse", jpeg, ddrm, 32)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONWARNINGS": "ignore"}
    env.pop("LIT_RESTORE_DEBUG", None)
    out = subprocess.run(
        [sys.executable, "sample.py", "test", "--config", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert len(lines) == 1 and "DDRM needs a linear operator, but JPEG is nonlinear" in lines[0]


def test_dps_protocol_fragments_and_presets_hold_the_repository_values():
    """configs/operator/dps_{phase_retrieval,nonlinear_deblur}.yaml and the DPS presets against
    DPS configs/{phase_retrieval,nonlinear_deblur}_config.yaml (oversample 2.0, scale 1.0;
    scale 0.3)."""
    import yaml

    from lit_restore.presets import preset_args

    frag = ROOT / "configs" / "operator"
    pr = yaml.safe_load((frag / "dps_phase_retrieval.yaml").read_text())
    assert pr["class_path"] == "lit_restore.operators.PhaseRetrieval"
    assert PhaseRetrieval(**pr["init_args"]).pad(256) == 64
    nl = yaml.safe_load((frag / "dps_nonlinear_deblur.yaml").read_text())
    assert nl["class_path"] == "lit_restore.operators.NonlinearBlur"
    assert nl["init_args"] == {"checkpoint": "bkse-gopro-wvae", "code_scale": 1.2}
    jp = yaml.safe_load((frag / "jpeg10.yaml").read_text())
    assert JPEG(**jp["init_args"]).quality == 10
    for preset, scale in (("phase_retrieval", 1.0), ("nonlinear_deblur", 0.3)):
        args = preset_args(DPS, preset)
        assert (args["scale"], args["steps"], args["step"]) == (scale, 1000, "code")
