"""No-reference metrics (NIQE, MUSIQ, MANIQA, CLIP-IQA): the registry's contract, our NIQE held to
IQA-PyTorch's numbers, and ``score`` / ``sample.py predict`` scoring a folder of real LQ images
without a reference, with one-line errors for missing weights and missing optional packages."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from lit_restore.metrics import MetricSuite, quantize
from lit_restore.metrics.niqe import NIQE, mvg_distance, niqe_features, niqe_luma
from lit_restore.metrics.registry import ALIASES, METRICS, MetricOptions, get_metric

ROOT = Path(__file__).resolve().parents[1]
PARITY = ROOT / "tests" / "data" / "parity" / "niqe_pyiqa.npz"


def _pristine_file(path: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random NIQE pristine model in the release's .mat layout (mu [1, 36], cov [36, 36])."""
    g = np.random.default_rng(seed)
    mu = g.normal(size=36)
    a = g.normal(size=(36, 36))
    cov = a @ a.T / 36 + np.eye(36)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"mu_prisparam": mu[None], "cov_prisparam": cov})
    return mu, cov


def _lq_folder(root: Path, sizes: dict[str, tuple[int, int]], seed: int = 0) -> Path:
    """8-bit smoothed-noise images (NIQE needs texture it can fit; pure noise is fine too)."""
    root.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(seed)
    for name, (h, w) in sizes.items():
        x = g.random((h + 2, w + 2, 3))
        x = (x[:-2, :-2] + x[1:-1, 1:-1] + x[2:, 2:]) / 3
        Image.fromarray((x * 255).round().astype(np.uint8)).save(root / f"{name}.png")
    return root


def _env(tmp: Path) -> dict[str, str]:
    """Caches under ``tmp`` (nothing of the user's), IQA-PyTorch's cache at $TORCH_HOME/hub/pyiqa."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TORCH_HOME": str(tmp / "torch"),
           "LIT_RESTORE_HOME": str(tmp / "home"), "HF_HOME": str(tmp / "hf"),
           "OMP_WAIT_POLICY": "PASSIVE", "PYTHONWARNINGS": "ignore"}  # fmt: skip
    env.pop("LIT_RESTORE_DEBUG", None)
    return env


def _tool(*args: str, env: dict[str, str], prelude: str = "") -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` (``prelude``: Python run first, e.g. to hide a package)."""
    code = (f"{prelude}\nimport runpy, sys\nsys.argv = {list(args)!r}\n"
            f"runpy.run_module({args[0]!r}, run_name='__main__')")  # fmt: skip
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)  # fmt: skip


def _one_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    return line


# --------------------------------------------------------------------------- registry contract
def test_no_reference_entries_name_their_implementation():
    """Every no-reference metric's name (= CSV column) says which implementation computed it,
    each short name resolves to one, and the four metrics of issue 14 are all there."""
    nr = {name: s for name, s in METRICS.items() if s.kind == "no-reference" and name != "clipped"}
    for name, spec in nr.items():
        assert not spec.needs_reference
        base, _, impl = name.partition("[")
        assert impl.endswith("]") and impl[:-1], name
        assert spec.higher_is_better == (base != "niqe"), name  # NIQE: a distance
        assert spec.weights(MetricOptions()), name  # each needs a file: perceptual=False drops it
    assert {n.partition("[")[0] for n in nr} == {"niqe", "musiq", "maniqa", "clipiqa"}
    assert set(ALIASES) == {"niqe", "musiq", "maniqa", "clipiqa"}
    for alias, name in ALIASES.items():
        assert get_metric(alias) is METRICS[name] and name.startswith(alias + "[")
    assert get_metric("niqe").name == "niqe[lit_restore]"
    with pytest.raises(ValueError, match="short names"):
        get_metric("brisque")


def test_suite_scores_only_no_reference_metrics_without_a_reference(tmp_path):
    """Without a reference the suite returns the no-reference columns and skips PSNR; an alias and
    its full name listed together are one column; ``perceptual=False`` drops the NIQE (it needs
    a weight file) and ``"auto"`` leaves out a metric whose optional package is missing."""
    pris = tmp_path / "pris.mat"
    _pristine_file(pris)
    suite = MetricSuite(["psnr", "niqe", "niqe[lit_restore]"], niqe_weights=str(pris))
    assert suite.metrics == ["psnr", "niqe[lit_restore]"]
    x = torch.rand(2, 3, 96, 100, generator=torch.Generator().manual_seed(0))
    scores = suite.per_image(x)
    assert list(scores) == ["niqe[lit_restore]"] and scores["niqe[lit_restore]"].shape == (2,)
    direct = NIQE(pris)(quantize(x.double()))  # the suite scores 8-bit images
    torch.testing.assert_close(scores["niqe[lit_restore]"], direct, rtol=0, atol=0)
    assert MetricSuite(["psnr", "niqe"], perceptual=False, niqe_weights=str(pris)).metrics == [
        "psnr"
    ]


def test_auto_leaves_out_a_metric_whose_package_is_missing(tmp_path, monkeypatch):
    """``perceptual="auto"``: a pyiqa metric with its weights present but pyiqa not installed is
    left out, and the warning names the extra to install."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "torch" / "hub" / "pyiqa").mkdir(parents=True)
    (tmp_path / "torch" / "hub" / "pyiqa" / "musiq_koniq_ckpt-e95806b9.pth").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "pyiqa", None)  # import pyiqa -> ImportError
    suite = MetricSuite(["psnr", "musiq"], perceptual="auto")
    assert suite.metrics == ["psnr"]
    message = suite.unavailable_message()
    assert "musiq[pyiqa:musiq] not computed" in message
    assert "pip install 'lit_restore[pyiqa]'" in message


# ------------------------------------------------------------------------------------- NIQE
def test_niqe_equals_iqa_pytorch():
    """Our NIQE against IQA-PyTorch's ``calculate_niqe`` (scripts/make_parity_fixture_niqe.py) on
    three 8-bit images (1 and 2 blocks, RGB and grayscale) with a random pristine model.

    Tolerance: both compute in float64, but IQA-PyTorch builds its MATLAB-bicubic half-size
    weights in float32 (relative error ≤ 2⁻²⁴ per weight; measured 1.7e-7 on [0, 1] intensities
    after the 8-tap sums), which moves the second-scale features by ~1e-7 relative; NIQE ≈ 7 then
    moves by ~1e-6 at most (measured ≤ 5e-8). The α fit is a grid argmin, which such a
    perturbation could flip by one grid step (0.001) — it does not on these images, so 1e-6 holds.
    """
    data = np.load(PARITY)
    mu, cov = torch.from_numpy(data["mu"]), torch.from_numpy(data["cov"])
    for i, expected in enumerate(data["niqe"]):
        image = torch.from_numpy(data[f"image_{i}"]).double()[None] / 255
        got = mvg_distance(niqe_features(niqe_luma(image)), mu, cov)
        assert abs(float(got) - float(expected)) < 1e-6, (i, float(got), float(expected))


def test_niqe_is_zero_against_its_own_statistics():
    """Eq. 10 with the image's own block mean and covariance as the 'pristine' model is 0, and
    is linear in a shift of the pristine mean (a Mahalanobis-type norm of the difference)."""
    g = torch.Generator().manual_seed(3)
    image = (torch.rand(1, 1, 192, 288, generator=g, dtype=torch.float64) * 255).round()
    feats = niqe_features(image)
    assert feats.shape == (6, 36)  # 2×3 blocks; 18 features at 96 px + 18 at 48 px (half size)
    mu, cov = feats.mean(0), torch.cov(feats.T)
    assert float(mvg_distance(feats, mu, cov)) < 1e-6
    small, large = mvg_distance(feats, mu + 0.01, cov), mvg_distance(feats, mu + 0.1, cov)
    assert float(small) > 0
    torch.testing.assert_close(large, 10 * small, rtol=1e-9, atol=0)


def test_niqe_refuses_images_smaller_than_one_block(tmp_path):
    pris = tmp_path / "pris.mat"
    _pristine_file(pris)
    with pytest.raises(ValueError, match="at least 96"):
        NIQE(pris)(torch.rand(1, 3, 64, 200))


def test_niqe_parameter_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.mat"
    scipy.io.savemat(str(bad), {"mu": np.zeros(3)})
    with pytest.raises(ValueError, match=r"bad\.mat is not a NIQE parameter file"):
        NIQE(bad)


# ------------------------------------------------------------------------- score on a folder
def test_score_reports_niqe_on_an_lq_folder(tmp_path):
    """``python -m lit_restore.evaluation.score --restored DIR`` (no reference): the per-image CSV
    column names the implementation, and its values equal NIQE computed in-process; the pristine
    model comes from IQA-PyTorch's cache folder ($TORCH_HOME/hub/pyiqa), as the resolver says."""
    env = _env(tmp_path)
    pris = Path(env["TORCH_HOME"]) / "hub" / "pyiqa" / "niqe_modelparameters.mat"
    _pristine_file(pris)
    lq = _lq_folder(tmp_path / "lq", {"a": (100, 120), "b": (96, 200)})
    csv_path = tmp_path / "scores.csv"
    proc = _tool("lit_restore.evaluation.score", "--restored", str(lq), "--metrics", "niqe",
                 "--csv", str(csv_path), env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "niqe[lit_restore]" in proc.stdout and "no reference" in proc.stdout
    with open(csv_path) as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    metric = NIQE(pris)
    for name in ("a", "b"):
        x = torch.from_numpy(np.array(Image.open(lq / f"{name}.png"))).permute(2, 0, 1)[None]
        expected = float(metric(x.double() / 255))
        assert abs(float(rows[name]["niqe[lit_restore]"]) - expected) < 1e-9


def test_score_errors_are_one_line(tmp_path):
    """Missing pristine model -> the fetch command; pyiqa not installed -> the extra to install
    (and its licence); a full-reference metric without --reference -> how to fix the call."""
    env = _env(tmp_path)
    lq = _lq_folder(tmp_path / "lq", {"a": (100, 100)})
    line = _one_error(_tool("lit_restore.evaluation.score", "--restored", str(lq), "--metrics",
                            "niqe", env=env))  # fmt: skip
    assert "python -m lit_restore.weights niqe-pristine" in line
    pyiqa_cache = Path(env["TORCH_HOME"]) / "hub" / "pyiqa"
    pyiqa_cache.mkdir(parents=True)
    (pyiqa_cache / "musiq_koniq_ckpt-e95806b9.pth").write_bytes(b"placeholder")
    line = _one_error(_tool("lit_restore.evaluation.score", "--restored", str(lq), "--metrics",
                            "musiq", env=env, prelude="import sys; sys.modules['pyiqa'] = None"))  # fmt: skip
    assert "pip install 'lit_restore[pyiqa]'" in line and "Noncommercial" in line
    line = _one_error(_tool("lit_restore.evaluation.score", "--restored", str(lq), "--metrics",
                            "psnr", env=env))  # fmt: skip
    assert "psnr need(s) a reference" in line
    line = _one_error(_tool("lit_restore.evaluation.score", "--restored", str(lq),
                            "--no-perceptual", env=env))  # fmt: skip
    assert "no metric left to score" in line


# ---------------------------------------------------------------------------- sample.py predict
def test_predict_on_an_lq_folder_reports_niqe(tmp_path):
    """``sample.py predict`` of the shipped demo ResShift on a folder of real LQ images (no
    reference) scores NIQE per restored image (96×128 from 24×32 LQ: one 96-px block) and
    writes it to the run's CSV and summary under the implementation-tagged name."""
    env = _env(tmp_path)
    pris = Path(env["TORCH_HOME"]) / "hub" / "pyiqa" / "niqe_modelparameters.mat"
    _pristine_file(pris)
    lq = _lq_folder(tmp_path / "lq", {"a": (24, 32), "b": (25, 30)})
    callbacks = tmp_path / "callbacks.yaml"
    callbacks.write_text(
        "trainer:\n  enable_progress_bar: false\n  logger:\n"
        "    class_path: lightning.pytorch.loggers.TensorBoardLogger\n"
        f"    init_args: {{save_dir: {tmp_path / 'runs'}, name: realsr, version: predict}}\n"
        "  callbacks:\n"
        "    - class_path: lit_restore.evaluation.RestorationMetrics\n"
        "      init_args: {metrics: [niqe], fid: false}\n"
        "    - class_path: lit_restore.evaluation.RestoredImageWriter\n"
    )
    proc = subprocess.run(
        [sys.executable, "sample.py", "predict", "--config", "configs/data/lq_folder.yaml",
         "--config", "configs/model/resshift_demo_sr4.yaml", "--config", str(callbacks),
         "--data.init_args.predict_set.init_args.root", str(lq),
         "--data.init_args.test_set.init_args.root", str(lq)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "realsr" / "predict"
    with open(run / "per_image_predict.csv") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == ["a", "b"]
    metric = NIQE(pris)
    for name in ("a", "b"):
        restored = np.array(Image.open(run / "restored" / f"{name}.png"))
        width, height = Image.open(lq / f"{name}.png").size
        assert restored.shape[:2] == (4 * height, 4 * width)
        x = torch.from_numpy(restored).permute(2, 0, 1)[None].double() / 255
        assert abs(float(rows[name]["niqe[lit_restore]"]) - float(metric(x))) < 1e-9
    summary = json.loads((run / "summary_predict.json").read_text())["metrics"]
    mean = np.mean([float(r["niqe[lit_restore]"]) for r in rows.values()])
    assert abs(summary["niqe[lit_restore]"] - mean) < 1e-9


# ------------------------------------------------------------------- IQA-PyTorch (optional extra)
def test_pyiqa_musiq_loads_a_checkpoint_strictly_and_scores_like_pyiqa(tmp_path, monkeypatch):
    """With the optional ``pyiqa`` installed: a random-weight MUSIQ in IQA-PyTorch's published
    layout (``pyiqa/archs/musiq_arch.py::MUSIQ``, KonIQ head), saved as a checkpoint, is what
    ``musiq[pyiqa:musiq]`` loads (strictly, offline) and scores with: the registry metric equals
    the network's own forward pass on the same 8-bit image."""
    pytest.importorskip("pyiqa")
    from pyiqa.archs.musiq_arch import MUSIQ

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached file is used
    torch.manual_seed(0)
    net = MUSIQ(pretrained=False).eval()
    ckpt = tmp_path / "musiq_random.pth"
    torch.save(net.state_dict(), ckpt)
    cache = tmp_path / "torch" / "hub" / "pyiqa"
    cache.mkdir(parents=True)
    (cache / "musiq_koniq_ckpt-e95806b9.pth").write_bytes(ckpt.read_bytes())
    suite = MetricSuite(["musiq"])
    assert suite.metrics == ["musiq[pyiqa:musiq]"]
    x = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    got = suite.per_image(x)["musiq[pyiqa:musiq]"]
    with torch.no_grad():
        expected = net(quantize(x)).reshape(-1).double()
    # the same network on the same float32 input: identical up to float32 round-off of the two
    # calls' op order (the metric wraps pyiqa's InferenceModel around the same module)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert got.std() > 0  # two random images, two scores: not a constant


# ------------------------------------------------------------------ torchmetrics CLIP-IQA (extra)
def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins of byte-level BPE (GPT-2/CLIP): printable Latin-1 bytes map
    to themselves, the others to code points from 256 on."""
    kept = [*range(33, 127), *range(161, 173), *range(174, 256)]
    others = [b for b in range(256) if b not in kept]
    return [chr(b) for b in kept] + [chr(256 + i) for i in range(len(others))]


def _tiny_clip(folder: Path):
    """A random CLIP in the Hugging Face layout (``CLIPModel``, ``CLIPProcessor``), 32-px images,
    a character-level byte BPE vocabulary (no merges), saved with ``save_pretrained``."""
    import json

    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    symbols = _byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols), "<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    end = vocab["<|endoftext|>"]
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32,
                         bos_token_id=vocab["<|startoftext|>"], eos_token_id=end,
                         pad_token_id=end),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, image_size=32, patch_size=8),
        projection_dim=8,
    )  # fmt: skip
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    model.save_pretrained(folder)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return model, tokenizer, images


def test_torchmetrics_clipiqa_is_the_antonym_prompt_formula(tmp_path):
    """``clipiqa[torchmetrics:...]`` on a local random CLIP equals CLIP-IQA computed here from the
    network: ``softmax(100 cos(f_img, f_good), 100 cos(f_img, f_bad))[0]`` with the prompts
    "Good photo."/"Bad photo." and the image normalised by CLIP's mean/std (32-px inputs: no
    resize, no crop). This holds the [0, 1] → 0-255 hand-over to the Hugging Face processor."""
    pytest.importorskip("transformers")
    model, tokenizer, images = _tiny_clip(tmp_path / "clip")
    suite = MetricSuite(["clipiqa[torchmetrics:clip-vit-base-patch16]"],
                        clip_model=str(tmp_path / "clip"))  # fmt: skip
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    got = suite.per_image(x)["clipiqa[torchmetrics:clip-vit-base-patch16]"]
    xq = quantize(x)
    mean = torch.tensor(images.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(images.image_std).view(1, 3, 1, 1)

    def unit(out) -> torch.Tensor:
        f = out if isinstance(out, torch.Tensor) else out.pooler_output
        return f / f.norm(dim=-1, keepdim=True)

    with torch.no_grad():
        f_img = unit(model.get_image_features(pixel_values=(xq - mean) / std))
        text = tokenizer(["Good photo.", "Bad photo."], return_tensors="pt", padding=True)
        f_txt = unit(model.get_text_features(**text))
    expected = (100 * f_img @ f_txt.T).softmax(-1)[:, 0].double()
    # float32 network, the same weights and inputs; the processor's float32 normalisation and
    # ours differ in the last bits only
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_clipiqa_without_transformers_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "clip").mkdir()
    monkeypatch.setitem(sys.modules, "transformers", None)
    from lit_restore.utils.extras import MissingExtraError

    with pytest.raises(MissingExtraError, match=r"pip install 'lit_restore\[clip\]'"):
        MetricSuite(
            ["clipiqa[torchmetrics:clip-vit-base-patch16]"], clip_model=str(tmp_path / "clip")
        )
