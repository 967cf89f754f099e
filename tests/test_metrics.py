"""Metric correctness: PSNR/SSIM against independent references, LPIPS/FID plumbing, weights.

No test downloads anything: LPIPS runs on a *randomly initialised* AlexNet backbone (with the
bundled LPIPS heads) and FID on a small random convolutional feature module. Those numbers are
not LPIPS/FID values; they prove the plumbing (identity -> 0, monotone in distortion, loading).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity
from torch import nn

from lit_restore.metrics import (
    LPIPS,
    MetricSuite,
    aggregate,
    frechet_distance,
    kernel_inception_distance,
    psnr,
    rgb_to_y,
    ssim,
)
from lit_restore.metrics.fid import InceptionFeatures
from lit_restore.weights import MissingWeightsError

sys.path.insert(0, str(Path(__file__).parent))
from metrics_fakes import registered_toy_metrics


def _pair(n: int = 4, size: int = 24, noise: float = 0.05, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(n, 3, size, size, generator=g)
    scale = torch.linspace(0.5, 2.0, n).view(n, 1, 1, 1)  # different error per image
    x = (ref + noise * scale * torch.randn(ref.shape, generator=g)).clamp(0, 1)
    return x, ref


def _np_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(1.0 / mse)


def _np_y(img: np.ndarray) -> np.ndarray:  # CHW RGB [0,1] -> HW, BasicSR BT.601
    return (16 + 65.481 * img[0] + 128.553 * img[1] + 24.966 * img[2]) / 255


@pytest.mark.parametrize("crop,y", [(0, False), (3, False), (0, True), (2, True)])
def test_psnr_matches_numpy(crop, y):
    x, ref = _pair()
    got = psnr(x, ref, crop_border=crop, y_channel=y)
    for i in range(x.shape[0]):
        a, b = x[i].numpy(), ref[i].numpy()
        if crop:
            a, b = a[:, crop:-crop, crop:-crop], b[:, crop:-crop, crop:-crop]
        if y:
            a, b = _np_y(a), _np_y(b)
        assert got[i].item() == pytest.approx(_np_psnr(a, b), abs=1e-4)


@pytest.mark.parametrize("crop,y", [(0, False), (4, True)])
def test_ssim_matches_skimage(crop, y):
    x, ref = _pair(size=32)
    got = ssim(x, ref, crop_border=crop, y_channel=y)
    diffs = []
    for i in range(x.shape[0]):
        a, b = x[i].double().numpy(), ref[i].double().numpy()
        if crop:
            a, b = a[:, crop:-crop, crop:-crop], b[:, crop:-crop, crop:-crop]
        kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
        if y:
            want = structural_similarity(_np_y(a), _np_y(b), **kw)
        else:
            want = structural_similarity(a, b, channel_axis=0, **kw)
        diffs.append(abs(got[i].item() - want))
    print(f"max |SSIM(torchmetrics) - SSIM(skimage)| = {max(diffs):.2e}")
    assert max(diffs) < 1e-5


def test_y_channel_formula():
    white, black = torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2)
    assert rgb_to_y(white)[0, 0, 0, 0].item() == pytest.approx(235 / 255, abs=1e-6)
    assert rgb_to_y(black)[0, 0, 0, 0].item() == pytest.approx(16 / 255, abs=1e-6)


def test_aggregate_is_mean_of_per_image_not_pooled():
    x, ref = _pair()
    per = psnr(x, ref)
    pooled = 10 * math.log10(1 / float(((x - ref) ** 2).mean()))
    agg = aggregate(per.tolist())
    assert agg == pytest.approx(float(per.mean()), rel=1e-6)
    assert abs(agg - pooled) > 0.05  # the two conventions really differ here
    assert aggregate([1.0, float("nan"), 3.0]) == 2.0


def test_lpips_random_backbone_identity_and_monotone():
    torch.manual_seed(0)
    net = LPIPS("alex", random_backbone=True)  # random AlexNet + bundled LPIPS heads
    ref = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert net(ref, ref).abs().max().item() == 0.0
    vals = [net(_pair(3, 32, s, seed=1)[0], ref).mean().item() for s in (0.02, 0.1, 0.3)]
    assert vals[0] < vals[1] < vals[2], vals


def test_lpips_loads_backbone_from_torch_home(tmp_path, monkeypatch):
    """A torchvision AlexNet ``features.*`` state dict in $TORCH_HOME/hub/checkpoints is used."""
    from metrics_fakes import write_alexnet_features

    feats = write_alexnet_features(tmp_path, seed=3)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    net = LPIPS("alex")
    assert torch.equal(net.model.net.slice1[0].weight, feats["features.0.weight"])
    assert torch.equal(net.model.net.slice5._modules["10"].bias, feats["features.10.bias"])
    # a file that is not an AlexNet state dict is rejected clearly
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a torchvision alexnet"):
        LPIPS("alex", weights=tmp_path / "bad.pth")


@pytest.mark.parametrize(
    "build,filename",
    [
        (lambda: LPIPS("alex"), "alexnet-owt-7be5be79.pth"),
        (lambda: LPIPS("vgg"), "vgg16-397923af.pth"),
        (lambda: InceptionFeatures(), "weights-inception-2015-12-05-6726825d.pth"),
        (lambda: MetricSuite(["psnr", "lpips"]), "alexnet-owt-7be5be79.pth"),
    ],
)
def test_missing_weights_clear_error(tmp_path, monkeypatch, build, filename):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("LIT_RESTORE_HOME", str(tmp_path / "lr"))
    with pytest.raises(MissingWeightsError) as err:
        build()
    msg = str(err.value)
    assert filename in msg and "https://" in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in msg
    assert "perceptual: false" in msg


def test_explicit_missing_path_names_option(tmp_path):
    with pytest.raises(MissingWeightsError, match="lpips_weights"):
        LPIPS("alex", weights=tmp_path / "nope.pth")


def test_suite_without_perceptual_needs_no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    suite = MetricSuite(["psnr", "ssim", "lpips"], fid=True, perceptual=False)
    x, ref = _pair()
    out = suite.per_image(x, ref)
    assert sorted(out) == ["psnr", "ssim"] and suite.set_metrics == []


class _RandomFeatures(nn.Module):
    """A small random conv feature extractor standing in for Inception (tests only)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()
        )

    def forward(self, x):
        return self.net(x)


def test_fid_identity_monotone_and_matches_torchmetrics():
    from torchmetrics.image.fid import FrechetInceptionDistance

    feats = _RandomFeatures().eval()
    ref = torch.rand(40, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        f_ref = feats(ref)
        assert frechet_distance(f_ref, f_ref) == pytest.approx(0.0, abs=1e-8)
        fids = []
        for s in (0.05, 0.2, 0.5):
            x = ref + s * torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
            fids.append(frechet_distance(feats(x.clamp(0, 1)), f_ref))
    assert fids[0] < fids[1] < fids[2], fids
    tm = FrechetInceptionDistance(feature=feats, normalize=True)
    x = (ref + 0.2 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    tm.update(ref, real=True)
    tm.update(x, real=False)
    with torch.no_grad():
        ours = frechet_distance(feats(x), f_ref)
    assert ours == pytest.approx(float(tm.compute()), rel=1e-4)
    kids = [
        kernel_inception_distance(feats(x) * 0 + f_ref + d, f_ref, subsets=5)[0] for d in (0.1, 1.0)
    ]
    assert kids[0] < kids[1]


@pytest.mark.slow  # ~16 s on the shared 2-core machine (95 MB state dict, 299-px Inception forward)
def test_inception_features_load_from_torch_home(tmp_path, monkeypatch):
    """The real FID extractor builds offline from $TORCH_HOME (a *random* Inception state dict
    in torch-fidelity's layout stands in for the published file) and yields [N, 2048]."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi
    from torchmetrics.image.fid import NoTrainInceptionV3

    dummy = tmp_path / "empty.pth"
    torch.save({}, dummy)
    with monkeypatch.context() as m:  # build the architecture only, to get its state-dict layout
        m.setattr(
            tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None
        )
        torch.manual_seed(0)
        state = NoTrainInceptionV3("inception-v3-compat", ["2048"], str(dummy)).state_dict()
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save(state, ckpt / "weights-inception-2015-12-05-6726825d.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    feats = InceptionFeatures()
    assert torch.equal(feats.net.fc.weight, state["fc.weight"])
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    f = feats(x)
    assert f.shape == (2, 2048) and torch.isfinite(f).all()
    assert torch.equal(feats(x), f)  # eval mode, deterministic


def test_lpips_too_small_clear_error_and_gray_y():
    net = LPIPS("alex", random_backbone=True)
    x = torch.rand(1, 3, 31, 31)
    assert net(x, x).item() == 0.0  # 31 px is the smallest AlexNet-LPIPS input
    with pytest.raises(ValueError, match="at least 31 px"):
        net(x[..., :30, :30], x[..., :30, :30])
    g = torch.rand(2, 1, 16, 16)
    assert torch.equal(rgb_to_y(g), g)  # grayscale already is the luma


def test_ssim_equals_torchmetrics_valid_region():
    """Our banded-matrix SSIM computes the same float64 sums as torchmetrics' grouped conv2d; the
    two differ only in summation order. Each local moment is a sum of 121 products of terms in
    [0, 1], so it moves by δ ≤ 121·2⁻⁵³ ≈ 1.3e-14. On these uniform-noise images the SSIM
    denominator is ≥ 1e-2 (local means ≈ 0.5, variances ≈ 1/12) and the numerator ≤ 4, so the
    per-pixel ratio moves by ≤ δ·(1/1e-2 + 4/1e-4) ≈ 5e-10 < 1e-9."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    x, ref = _pair(size=40)
    _, full = structural_similarity_index_measure(
        x.double(), ref.double(), data_range=1.0, gaussian_kernel=True, sigma=1.5,
        reduction="none", return_full_image=True,
    )  # fmt: skip
    want = full[..., 5:-5, 5:-5].mean(dim=(1, 2, 3))
    got = ssim(x, ref)
    assert (got - want).abs().max().item() < 1e-9
    assert (ssim(x, ref.flip(-1)) - want).abs().max().item() > 1e-3  # not vacuous


# ------------------------------------------------------------------------------ registry
def test_registry_declares_what_each_metric_needs():
    from lit_restore.metrics import METRICS, MetricOptions
    from lit_restore.metrics.registry import needs_weights

    o = MetricOptions()
    table = {
        n: (s.kind, s.higher_is_better, needs_weights(s, o), s.columns) for n, s in METRICS.items()
    }
    assert table["psnr"] == ("full-reference", True, False, ("psnr",))
    assert table["ssim"] == ("full-reference", True, False, ("ssim",))
    assert table["lpips"] == ("full-reference", False, True, ("lpips",))
    assert table["fid"] == ("set-level", False, True, ("fid",))
    assert table["kid"] == ("set-level", False, True, ("kid", "kid_std"))
    assert METRICS["lpips"].weights(MetricOptions(lpips_net="vgg")) == ("vgg16",)
    with pytest.raises(ValueError, match=r"unknown metric 'psnrr'.*'psnr'"):
        MetricSuite(["psnrr"])


@pytest.fixture
def toy_metrics():
    with registered_toy_metrics():
        yield


def test_no_reference_and_set_level_metrics_are_one_entry_each(toy_metrics):
    """A no-reference metric scores an image alone (quantised to 8 bits like the others); a
    set-level one is computed from the shared features, here an injected feature module."""
    x, ref = _pair()
    feats = _RandomFeatures().eval()
    suite = MetricSuite(["psnr", "brightness", "mean_gap"], fid_features=feats)
    assert suite.metrics == ["psnr", "brightness"] and suite.set_metrics == ["mean_gap"]
    alone = suite.per_image(x)
    assert sorted(alone) == ["brightness"]
    q = (x * 255).round() / 255
    assert torch.allclose(alone["brightness"], q.double().mean(dim=(1, 2, 3)), atol=1e-12)
    both = suite.per_image(x, ref)
    assert sorted(both) == ["brightness", "psnr"]
    assert torch.equal(both["brightness"], alone["brightness"])
    f_x, f_ref = suite.image_features(x), suite.image_features(ref)
    want = float((f_x.mean(0) - f_ref.mean(0)).norm())
    assert suite.set_level(f_x, f_ref) == {"mean_gap": pytest.approx(want)}
    # perceptual=False keeps the weight-free entries only (the injected features need none)
    assert MetricSuite(["psnr", "lpips", "brightness"], perceptual=False).metrics == [
        "psnr",
        "brightness",
    ]
