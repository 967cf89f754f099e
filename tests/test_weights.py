"""lit_restore.weights: one resolver (explicit path → cache → one-line error) and one opt-in
fetcher for every weight file — priors, ResShift release files, metric backbones. Nothing here
touches the network: downloads read ``file://`` URLs or a monkeypatched URL opener."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import urllib.error
import urllib.request

import pytest
import torch

from lit_restore import weights as W
from lit_restore.priors import REGISTRY
from lit_restore.weights import FetchError, MissingWeightsError, fetch, resolve


@pytest.fixture
def homes(tmp_path, monkeypatch):
    """Empty ``$LIT_RESTORE_HOME`` and ``$TORCH_HOME``."""
    monkeypatch.setenv("LIT_RESTORE_HOME", str(tmp_path / "lr"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "lr", tmp_path / "torch" / "hub" / "checkpoints"


def _put(path, value: float = 0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"w": torch.full((2,), value)}, path)
    return path


def test_every_registered_prior_has_a_weight_file():
    assert set(REGISTRY) <= set(W.WEIGHTS)
    for name in ("resshift-realsr-x4-v3", "resshift-vq-f4", "alexnet", "vgg16", "inception"):
        assert W.WEIGHTS[name].url.startswith("https://")


def test_resolution_order(homes, tmp_path):
    lr, hub = homes
    # prior: explicit path → $LIT_RESTORE_HOME/priors (by name or by file name)
    cached = _put(lr / "priors" / "celeba_hq.ckpt")
    mine = _put(tmp_path / "elsewhere" / "celeba_hq.ckpt", 1.0)
    assert resolve(mine) == mine  # an existing path wins, whatever its name
    assert resolve("ddim-celebahq256") == cached
    assert resolve("celeba_hq.ckpt") == cached
    assert resolve(tmp_path / "gone" / "celeba_hq.ckpt") == cached  # same registered file
    # ResShift release files: $LIT_RESTORE_HOME/resshift
    vq = _put(lr / "resshift" / "autoencoder_vq_f4.pth")
    assert resolve("resshift-vq-f4") == vq == resolve("weights/autoencoder_vq_f4.pth")
    # metric backbones: torch hub cache first, then $LIT_RESTORE_HOME/checkpoints
    home_copy = _put(lr / "checkpoints" / "alexnet-owt-7be5be79.pth")
    assert resolve("alexnet") == home_copy
    hub_copy = _put(hub / "alexnet-owt-7be5be79.pth")
    assert resolve("alexnet") == hub_copy
    # an unregistered file name found in any cache folder
    other = _put(lr / "priors" / "my_prior.pt")
    assert resolve("my_prior.pt") == other
    # a directory (diffusers prior) is returned as is
    assert resolve(tmp_path) == tmp_path


def test_missing_file_is_one_line_naming_url_target_and_command(homes):
    lr, hub = homes
    with pytest.raises(MissingWeightsError) as info:
        resolve("resshift-vq-f4", option="autoencoder")
    msg = str(info.value)
    assert "\n" not in msg
    assert "autoencoder_vq_f4.pth" in msg
    assert "https://github.com/zsyOAOA/ResShift/releases/download/v2.0/autoencoder_vq_f4.pth" in msg
    assert str(lr / "resshift" / "autoencoder_vq_f4.pth") in msg
    assert "python -m lit_restore.weights resshift-vq-f4" in msg and "`autoencoder`" in msg
    # a path whose file name is registered: says the path is missing and what it should be
    with pytest.raises(MissingWeightsError, match=r"weights='w/resshift_realsrx4_s4_v3\.pth' does"):
        resolve("w/resshift_realsrx4_s4_v3.pth", option="weights")
    # a metric backbone: the hub cache is where it goes, and how to run without it
    with pytest.raises(MissingWeightsError) as info:
        resolve("vgg16")
    assert str(hub / "vgg16-397923af.pth") in str(info.value)
    assert "perceptual: false" in str(info.value)
    # a Google-Drive prior: by hand, no fetch command
    with pytest.raises(MissingWeightsError) as info:
        resolve("adm-ffhq256-dps")
    assert "drive.google.com" in str(info.value) and "by hand" in str(info.value)
    assert "python -m lit_restore.weights adm-ffhq256-dps" not in str(info.value)
    # an explicit path for an expected file names the option and the expected file
    with pytest.raises(MissingWeightsError, match=r"lpips_weights='/no/such\.pth'.*alexnet-owt"):
        resolve("/no/such.pth", option="lpips_weights", expect="alexnet")
    # nothing known at all
    with pytest.raises(
        MissingWeightsError, match=r"not found: .*not a registered name \(adm-demo-pd, adm-ffhq"
    ):
        resolve("/no/such/file.bin")
    with pytest.raises(MissingWeightsError, match="checkpoint is empty"):
        resolve("", option="checkpoint")  # not the current directory


def _serve(tmp_path, payload: bytes):
    src = tmp_path / "served.bin"
    src.write_bytes(payload)
    return src.as_uri(), hashlib.sha256(payload).hexdigest()


def _good_bytes(tmp_path) -> bytes:
    p = tmp_path / "good.pt"
    torch.save({"w": torch.arange(4.0)}, p)
    return p.read_bytes()


def test_fetch_checks_sha256_prefix_writes_atomically_and_follows_umask(
    homes, tmp_path, monkeypatch
):
    url, digest = _serve(tmp_path, _good_bytes(tmp_path))
    entry = W.WEIGHTS["alexnet"]
    monkeypatch.setitem(W.WEIGHTS, "alexnet", dataclasses.replace(entry, sha256_prefix="0" * 8))
    out = tmp_path / "dl"
    with pytest.raises(FetchError, match="does not start with the published prefix 00000000"):
        fetch("alexnet", out, url=url, progress=False)
    assert list(out.iterdir()) == []  # no partial or final file left
    monkeypatch.setitem(W.WEIGHTS, "alexnet", dataclasses.replace(entry, sha256_prefix=digest[:8]))
    old = os.umask(0o022)
    try:
        got = fetch("alexnet", out, url=url, progress=False)
    finally:
        os.umask(old)
    assert (
        got == out / entry.file_name and got.read_bytes() == (tmp_path / "served.bin").read_bytes()
    )
    assert stat.S_IMODE(got.stat().st_mode) == 0o644
    assert [p.name for p in out.iterdir()] == [entry.file_name]
    # present: returned as is, nothing downloaded
    assert fetch("alexnet", out, url="file:///nonexistent", progress=False) == got
    # default folder: the entry's first cache folder (the hub cache for metric backbones)
    hub = homes[1]
    assert fetch("alexnet", url=url, progress=False) == hub / entry.file_name


def test_fetch_rejects_an_error_page_and_full_sha256(homes, tmp_path, monkeypatch):
    """No published hash (the priors): a downloaded HTML page fails the checkpoint read and is
    removed; a full published sha256 is checked when there is one."""
    url, _ = _serve(tmp_path, b"<!DOCTYPE html><html>quota exceeded</html>")
    with pytest.raises(FetchError, match=r"unusable: checkpoint .* is not a checkpoint"):
        fetch("ddim-celebahq256", tmp_path / "dl", url=url, progress=False)
    assert not (tmp_path / "dl" / "celeba_hq.ckpt").exists()
    url, digest = _serve(tmp_path, _good_bytes(tmp_path))
    entry = W.WEIGHTS["ddim-celebahq256"]
    monkeypatch.setitem(W.WEIGHTS, entry.name, dataclasses.replace(entry, sha256="f" * 64))
    with pytest.raises(FetchError, match=r"does not match the published f{64}"):
        fetch(entry.name, tmp_path / "dl", url=url, progress=False)
    monkeypatch.setitem(W.WEIGHTS, entry.name, dataclasses.replace(entry, sha256=digest))
    assert fetch(entry.name, tmp_path / "dl", url=url, progress=False).is_file()


def test_offline_fetch_is_one_line_naming_url_and_where_to_put_it(homes, monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    lr, _ = homes
    target = lr / "resshift" / "resshift_realsrx4_s4_v3.pth"
    with pytest.raises(FetchError) as info:
        fetch("resshift-realsr-x4-v3", progress=False)
    msg = str(info.value)
    assert "\n" not in msg and "Temporary failure in name resolution" in msg
    assert W.WEIGHTS["resshift-realsr-x4-v3"].url in msg and str(target) in msg
    assert not target.parent.exists() or list(target.parent.iterdir()) == []
    # the command line: exit 2, exactly one line on stderr, nothing on stdout
    assert W.main(["vgg16", "--dir", str(lr / "x")]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not download vgg16 from https://")


def test_manual_entry_and_cli_listing(homes, capsys):
    with pytest.raises(FetchError, match=r"web page .*drive\.google\.com.*ffhq_10m\.pt"):
        fetch("adm-ffhq256-dps")
    assert W.main(["adm-ffhq256-dps"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: adm-ffhq256-dps is hosted on a web page")
    _put(homes[0] / "priors" / "celeba_hq.ckpt")
    assert W.main([]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == len(W.WEIGHTS)
    row = next(r for r in listing if r.startswith("ddim-celebahq256"))
    assert "present: " in row and "celeba_hq.ckpt" in row
    assert any(r.startswith("vgg16") and "missing -> " in r for r in listing)
    with pytest.raises(SystemExit):  # argparse: unknown name, exit 2
        W.main(["no-such-weights"])


def test_resshift_lpips_backbone_comes_from_the_resolver(homes):
    """ResShift's LPIPS-VGG loss (the ``lpips`` package) never downloads: missing VGG16 is the
    one-line error; a VGG16 file in the hub cache is copied into the backbone."""
    from torchvision.models.vgg import cfgs, make_layers

    from lit_restore.modules.resshift import ResShiftModule
    from lit_restore.nn import SwinUNet

    net = SwinUNet(image_size=8, model_channels=32, channel_mult=(1,), num_res_blocks=1,
                   attention_resolutions=(), swin_embed_dim=32, num_head_channels=32,
                   window_size=4, lq_size=8)  # fmt: skip
    module = ResShiftModule(network=net, lpips_weight=1.0)
    with pytest.raises(MissingWeightsError) as info:
        module._lpips_net()
    msg = str(info.value)
    assert "vgg16-397923af.pth" in msg and "lpips_weight: 0" in msg and "\n" not in msg
    torch.manual_seed(0)
    features = {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}
    _, hub = homes
    hub.mkdir(parents=True)
    torch.save(features, hub / "vgg16-397923af.pth")
    lp = module._lpips_net()
    assert torch.equal(lp.net.slice1[0].weight, features["features.0.weight"])
    assert torch.equal(lp.net.slice5._modules["28"].bias, features["features.28.bias"])
    assert not any(p.requires_grad for p in lp.parameters())
