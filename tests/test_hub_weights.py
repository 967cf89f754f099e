"""Weights from the Hugging Face Hub (``hf://OWNER/REPO/FILE@REVISION``) through the one resolver.

No network: a fake Hugging Face cache is laid out as ``huggingface_hub`` writes it
(``models--OWNER--REPO/refs/<branch or tag>`` holding the commit hash,
``snapshots/<commit>/<path in repo>`` holding the file) and ``huggingface_hub`` itself is asked
for the file with ``local_files_only`` — so the layout, revision pinning (commit, branch, tag) and
offline mode (``HF_HUB_OFFLINE=1``) are those of the real library. The shipped demo prior,
placed in that cache, loads by its Hub spec to the same weights as by its registry name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_restore import weights
from lit_restore.weights import (
    FetchError,
    HubFile,
    MissingWeightsError,
    fetch,
    resolve,
)

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
REPO = "lit-restore/demo-weights"
FILE = "prior_demo_adm.safetensors"


def lay_out(cache: Path, repo: str, files: dict[str, Path], commit: str = COMMIT,
            refs: tuple[str, ...] = ("main",)) -> Path:  # fmt: skip
    """A Hugging Face cache entry for ``repo`` at ``commit`` holding ``files`` (path in repo ->
    source file), with ``refs`` pointing at it; returns the snapshot folder."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / commit
    for name, src in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, snapshot / name)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (folder / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An offline Hugging Face cache in ``tmp_path`` (read at call time by huggingface_hub), and
    an empty lit_restore cache."""
    from huggingface_hub import constants

    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("LIT_RESTORE_HOME", str(tmp_path / "lit_restore_home"))
    return cache


def test_hub_spec_parsing():
    assert HubFile.parse(f"hf://{REPO}/{FILE}@{COMMIT}") == HubFile(REPO, FILE, COMMIT)
    assert HubFile.parse(f"hf://{REPO}/sub/dir/{FILE}") == HubFile(REPO, f"sub/dir/{FILE}", None)
    assert HubFile.parse(f"hf://{REPO}@v1.0") == HubFile(REPO, None, "v1.0")
    for spec in (f"hf://{REPO}/{FILE}@{COMMIT}", f"hf://{REPO}", f"hf://{REPO}/a/b.pt@main"):
        assert str(HubFile.parse(spec)) == spec
    for bad in ("hf://owner", "hf://owner/repo/file@", "hf://@main", "owner/repo/file"):
        with pytest.raises(ValueError):
            HubFile.parse(bad)


def test_resolve_by_commit_branch_and_tag_offline(hub_cache):
    src = ROOT / "weights" / FILE
    snapshot = lay_out(hub_cache, REPO, {FILE: src, f"ema/{FILE}": src}, refs=("main", "v1"))
    for rev in (f"@{COMMIT}", "@main", "@v1", ""):
        assert resolve(f"hf://{REPO}/{FILE}{rev}") == snapshot / FILE
    assert resolve(f"hf://{REPO}/ema/{FILE}@v1") == snapshot / "ema" / FILE
    assert resolve(f"hf://{REPO}@{COMMIT}") == snapshot  # the repository (a diffusers folder)


def test_missing_hub_file_is_one_line_naming_repo_revision_and_fetch_command(hub_cache):
    lay_out(hub_cache, REPO, {FILE: ROOT / "weights" / FILE})
    for spec, what in (
        (f"hf://{REPO}/{FILE}@{OTHER}", FILE),  # a pinned commit that is not cached
        (f"hf://{REPO}/other.safetensors", "other.safetensors"),
        (f"hf://someone/else/{FILE}@v2", FILE),
    ):
        with pytest.raises(MissingWeightsError) as info:
            resolve(spec, option="prior")
        text = str(info.value)
        assert "\n" not in text and text.startswith(f"prior={spec!r}")
        assert what in text and str(hub_cache) in text
        assert f"`python -m lit_restore.weights {spec}`" in text


def test_prior_by_hub_spec_equals_the_shipped_prior(hub_cache):
    from lit_restore.priors.registry import load_prior

    lay_out(hub_cache, REPO, {FILE: ROOT / "weights" / FILE})
    by_hub = load_prior(f"hf://{REPO}/{FILE}@{COMMIT}")
    by_name = load_prior("adm-demo-pd")
    a, b = by_hub.state_dict(), by_name.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_registry_entry_on_the_hub_is_found_in_the_hf_cache(hub_cache, tmp_path):
    entry = weights.get("ddim-celebahq256")
    hub = HubFile.parse(entry.hub)
    assert hub == HubFile("gwang-kim/DiffusionCLIP-CelebA_HQ", "celeba_hq.ckpt", None)
    with pytest.raises(
        MissingWeightsError, match=r"python -m lit_restore\.weights ddim-celebahq256"
    ):
        resolve("ddim-celebahq256")
    fake = tmp_path / "celeba_hq.ckpt"
    torch.save({"w": torch.zeros(1)}, fake)
    snapshot = lay_out(hub_cache, hub.repo_id, {hub.filename: fake})
    assert resolve("ddim-celebahq256") == snapshot / "celeba_hq.ckpt"
    assert fetch("ddim-celebahq256") == snapshot / "celeba_hq.ckpt"  # cached: no download


def test_fetch_offline_is_one_line(hub_cache):
    with pytest.raises(FetchError) as info:
        fetch(f"hf://{REPO}/{FILE}@{COMMIT}")
    text = str(info.value)
    assert "\n" not in text and "HF_HUB_OFFLINE is set" in text
    assert f"hf://{REPO}/{FILE}@{COMMIT}" in text


def test_fetch_checks_what_the_hub_gave(hub_cache, tmp_path, monkeypatch):
    """The download itself is huggingface_hub's; what it hands back is checked like any
    download: a file that is no checkpoint (an error page, a truncated file) is refused."""
    bad = tmp_path / "page.html"
    bad.write_text("<html>rate limited</html>")
    snapshot = lay_out(hub_cache, REPO, {FILE: bad})
    monkeypatch.setattr(HubFile, "_download", lambda self, **kw: snapshot / FILE)
    with pytest.raises(FetchError, match="is unusable"):
        fetch(f"hf://{REPO}/{FILE}")


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    full_env.pop("LIT_RESTORE_DEBUG", None)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=full_env,
    )  # fmt: skip


def test_fetch_command_and_ckpt_path_offline_are_one_line(tmp_path):
    env = {"HF_HUB_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    spec = f"hf://{REPO}/last.ckpt@{COMMIT}"
    fetched = _run("-m", "lit_restore.weights", spec, **env)
    assert fetched.returncode == 2
    assert fetched.stderr.strip().splitlines() == [fetched.stderr.strip()]
    assert fetched.stderr.startswith("error: could not download") and "HF_HUB_OFFLINE" in (
        fetched.stderr
    )
    sampled = _run(
        "sample.py", "test", "--config", "configs/experiment/demo_base.yaml",
        "--config", "configs/sampler/dps_demo.yaml", "--ckpt_path", spec, **env,
    )  # fmt: skip
    assert sampled.returncode == 2, sampled.stderr[-2000:]
    errors = [line for line in sampled.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"--ckpt_path={spec!r}" in errors[0]
    assert "not in the Hugging Face cache" in errors[0]


def test_registry_entry_that_is_a_hub_repository_resolves_to_its_snapshot(hub_cache, tmp_path):
    """``clip-vit-base-patch16`` is a whole Hub repository (``hub`` without a file): it resolves
    to the snapshot folder, from the Hugging Face cache only."""
    entry = weights.get("clip-vit-base-patch16")
    assert HubFile.parse(entry.hub) == HubFile("openai/clip-vit-base-patch16", None, None)
    with pytest.raises(MissingWeightsError, match=r"downloads the Hub repository hf://openai"):
        resolve("clip-vit-base-patch16")
    config = tmp_path / "config.json"
    config.write_text("{}")
    snapshot = lay_out(hub_cache, "openai/clip-vit-base-patch16", {"config.json": config})
    assert resolve("clip-vit-base-patch16") == snapshot
    assert fetch("clip-vit-base-patch16") == snapshot  # cached: no download
