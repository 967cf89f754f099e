"""Every pretrained weight file lit_restore uses, and the one way to find or fetch it.

:data:`WEIGHTS` registers each file by name: the published priors (guided-diffusion ADM
ImageNet 256, DPS's FFHQ 256 ADM, SDEdit's CelebA-HQ DDPM UNet), the DPS paper's nonlinear blur
network (bkse GOPRO), the ResShift release files
(zsyOAOA/ResShift release v2.0, the ``_LINK`` table of ``inference_resshift.py``: the journal ×4
network and the LDM VQ-f4 autoencoder) and the metric backbones (torchvision AlexNet / VGG16 for
LPIPS, torch-fidelity's TF-compatible InceptionV3 for FID/KID, file names and URLs as torchvision
``AlexNet_Weights``/``VGG16_Weights.IMAGENET1K_V1`` and torch-fidelity
``feature_extractor_inceptionv3.py::URL_INCEPTION_V3`` give them; the no-reference metrics' files:
NIQE's pristine model and IQA-PyTorch's MUSIQ/MANIQA/CLIP-IQA+ files and OpenAI CLIP RN50, in the
caches where IQA-PyTorch itself looks, ``$TORCH_HOME/hub/pyiqa`` and ``hub/clip``), and the small demo networks
trained here and shipped with the repository under ``weights/`` (``shipped``: the prior
``adm-demo-pd`` and ResShift ``resshift-demo-sr4``, each reproduced by a recipe in
``configs/experiment/``), and the CompVis unconditional LDMs (``ldm-ffhq256``,
``ldm-celebahq256``, ``ldm-lsun-bedrooms256``: zip archives on ommer-lab.com whose ``model.ckpt``
the fetch command extracts).

:func:`resolve` finds a file, never downloading:

1. an explicit path that exists (file, or a directory for a diffusers prior);
2. for a shipped entry, its file in the repository (``weights/``; present in a clone or an
   editable install);
3. the cache: ``$LIT_RESTORE_HOME`` (default ``~/.cache/lit_restore``) in the entry's folder
   (``priors/``, ``resshift/``); metric backbones first in the torch hub cache
   (``$TORCH_HOME/hub/checkpoints``, where torchvision and torch-fidelity download to), then in
   ``$LIT_RESTORE_HOME/checkpoints/``. A registered name, or a path whose file name is a
   registered file's, is looked up there;
4. otherwise one :class:`MissingWeightsError` line naming the file, where to get it (URL or web
   page), where to put it, and the fetch command.

**Hugging Face Hub.** Anywhere a weight file is named, ``hf://OWNER/REPO/PATH/IN/REPO@REVISION``
names a file of a Hub model repository (``@REVISION``: a commit hash, branch or tag; without it
``main``; pin a commit hash for reproducible runs), and ``hf://OWNER/REPO@REVISION`` the whole
repository (a diffusers UNet directory). :func:`resolve` looks it up in the Hugging Face cache only
(``huggingface_hub`` with ``local_files_only``: ``$HF_HUB_CACHE``, default
``~/.cache/huggingface/hub``), so it works with ``HF_HUB_OFFLINE=1``; ``python -m
lit_restore.weights hf://...`` downloads it into that cache (``huggingface_hub.hf_hub_download``:
resumable, ``HF_TOKEN`` for private or gated repositories). A registry entry hosted on the Hub
names its file in ``WeightFile.hub`` and is fetched the same way. ``huggingface_hub`` comes with
``datasets`` (a dependency) and is imported only when an ``hf://`` spec is used.

Downloading is opt-in only: ``python -m lit_restore.weights NAME [NAME ...]`` (:func:`fetch`)
streams to a temporary file beside the target with a progress bar, checks the SHA-256 where one is
known (torchvision and torch-fidelity name their files after a SHA-256 prefix, e.g.
``alexnet-owt-7be5be79`` → ``7be5be79``; the prior and ResShift projects publish none, so none is
invented) and that the file reads as a checkpoint holding a state dict (which catches truncated
files and saved error pages), then moves it into place with ``os.replace``. Without network access
it prints one line naming the URL and where to put the file by hand. A shipped entry is not
downloaded: the command checks the repository's file against its recorded SHA-256 and prints its
path. Without arguments it lists every entry and whether it is present.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from lit_restore.checkpoints import CheckpointError, check_readable

#: the repository root: shipped weight files (``WeightFile.shipped``) are relative to it
REPO_ROOT = Path(__file__).resolve().parents[1]

#: IQA-PyTorch's weight files (``pyiqa/archs/arch_util.py::get_url_from_name``: the Hugging Face
#: repository chaofengc/IQA-PyTorch-Weights)
_IQA_PYTORCH_WEIGHTS = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/"

_NO_NR = (
    "To run without it, leave the no-reference metric out of `metrics` (or set perceptual: false)"
)

_NO_PERCEPTUAL = (
    "To run without perceptual metrics set `perceptual: false` (or `metrics: [psnr, ssim]` and "
    "`fid: false`)"
)


@dataclass(frozen=True)
class WeightFile:
    """One published weight file.

    Attributes:
        name: registry name (what users pass instead of a path).
        file_name: the upstream file name (kept, so a file fetched by hand just works).
        url: direct download URL, or the web page to download from when ``manual``.
        purpose: what the file is, for messages.
        source: where the URL comes from (repository and file/README).
        folder: ``"priors"``/``"resshift"``/``"operators"`` (under ``$LIT_RESTORE_HOME``) or ``"hub"`` (the torch
            hub cache, then ``$LIT_RESTORE_HOME/checkpoints``).
        sha256: full published SHA-256, if any.
        sha256_prefix: a published SHA-256 prefix (torchvision's file-name convention), if any.
        manual: the URL is a web page (Google Drive) that a script cannot fetch.
        without: how to run without this file (appended to the missing-file message).
        notes: size and other facts.
        shipped: path, relative to the repository root, of a file committed with the repository
            (trained here); it resolves before the cache and is never downloaded.
        hub: ``hf://OWNER/REPO/FILE[@REVISION]`` where the file is hosted on the Hugging Face
            Hub (:class:`HubFile`): found in the Hugging Face cache too, fetched through
            ``huggingface_hub``; ``hf://OWNER/REPO[@REVISION]``: the entry *is* that repository
            (``file_name`` is then informative), resolved to its snapshot folder in the Hugging
            Face cache only.
        archive_member: ``url`` is a zip archive and the weight file is this member of it (the
            CompVis LDM releases); :func:`fetch` extracts it to ``file_name``.
        file_format: ``"checkpoint"`` (a torch/safetensors state dict), ``"mat"`` (a MATLAB
            parameter file), ``"torchscript"`` (OpenAI CLIP's release archive) or ``"tensor"``
            (a pickled tensor): how a download is checked. The last two are read only by the
            optional IQA-PyTorch package, never by lit_restore itself.
    """

    name: str
    file_name: str
    url: str
    purpose: str
    source: str
    folder: str
    sha256: str | None = None
    sha256_prefix: str | None = None
    manual: bool = False
    without: str = ""
    notes: str = ""
    shipped: str | None = None
    hub: str | None = None
    archive_member: str | None = None
    file_format: str = "checkpoint"


#: SHA-256 of the shipped files (scripts/export_demo_weights.py prints them; the tests check them)
SHIPPED_SHA256 = {
    "adm-demo-pd": "64731e878f6efea2a7759901675a4165f5e90baba9c4404d117c2f24e3476eae",
    "resshift-demo-sr4": "a07a4ef92effa348615a19cff45840b9b85b8052bca285fbf148ae9a1a5db21f",
    "sinsr-demo-sr4": "f86031171485740f08510038ecbf6feb44d9e116532f52c8870e1377622a060e",
}

WEIGHTS: dict[str, WeightFile] = {
    w.name: w
    for w in (
        WeightFile(
            name="adm-imagenet256-uncond",
            file_name="256x256_diffusion_uncond.pt",
            url="https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt",
            purpose="prior adm-imagenet256-uncond (guided-diffusion ImageNet 256 unconditional ADM)",
            source="openai/guided-diffusion README; the ImageNet prior of DPS/DDRM/DDNM/DDPG/FDGR",
            folder="priors",
            notes="~2.2 GB (552.8 M float32 parameters); no published sha256",
        ),
        WeightFile(
            name="adm-ffhq256-dps",
            file_name="ffhq_10m.pt",
            url="https://drive.google.com/drive/folders/1jElnRoFv7b31fG0v6pTSQkelbSX3xGZh",
            purpose="prior adm-ffhq256-dps (DPS's FFHQ 256 ADM)",
            source="DPS2022/diffusion-posterior-sampling README (Google Drive folder)",
            folder="priors",
            manual=True,
            notes="~357 MB (93.6 M float32 parameters); Google Drive needs a browser or gdown; "
            "no published sha256",
        ),
        WeightFile(
            name="ddim-celebahq256",
            file_name="celeba_hq.ckpt",
            url="https://huggingface.co/gwang-kim/DiffusionCLIP-CelebA_HQ/resolve/main/celeba_hq.ckpt",
            purpose="prior ddim-celebahq256 (SDEdit's CelebA-HQ 256 DDPM UNet)",
            source="SDEdit's CelebA-HQ checkpoint; its S3 link is dead (ddrm #24), HF mirror used by "
            "DiffusionCLIP; DDNM/DDPG READMEs also give Google Drive id "
            "1wSoA5fm_d6JBZk4RZ1SzWLMgev4WqH21",
            folder="priors",
            notes="~455 MB (113.7 M float32 parameters); no published sha256",
            hub="hf://gwang-kim/DiffusionCLIP-CelebA_HQ/celeba_hq.ckpt",
        ),
        WeightFile(
            name="ldm-ffhq256",
            file_name="ldm-ffhq256.ckpt",
            url="https://ommer-lab.com/files/latent-diffusion/ffhq.zip",
            purpose="prior ldm-ffhq256 (CompVis unconditional LDM-VQ-4, FFHQ 256)",
            source="CompVis/latent-diffusion README (pretrained LDMs table); network flags from "
            "configs/latent-diffusion/ffhq-ldm-vq-4.yaml",
            folder="priors",
            archive_member="model.ckpt",
            notes="a zip holding model.ckpt (with its config.yaml); no published sha256",
        ),
        WeightFile(
            name="ldm-celebahq256",
            file_name="ldm-celebahq256.ckpt",
            url="https://ommer-lab.com/files/latent-diffusion/celeba.zip",
            purpose="prior ldm-celebahq256 (CompVis unconditional LDM-VQ-4, CelebA-HQ 256)",
            source="CompVis/latent-diffusion README (pretrained LDMs table); network flags from "
            "configs/latent-diffusion/celebahq-ldm-vq-4.yaml",
            folder="priors",
            archive_member="model.ckpt",
            notes="a zip holding model.ckpt (with its config.yaml); no published sha256",
        ),
        WeightFile(
            name="ldm-lsun-bedrooms256",
            file_name="ldm-lsun-bedrooms256.ckpt",
            url="https://ommer-lab.com/files/latent-diffusion/lsun_bedrooms.zip",
            purpose="prior ldm-lsun-bedrooms256 (CompVis unconditional LDM-VQ-4, LSUN-Bedrooms 256)",
            source="CompVis/latent-diffusion README (pretrained LDMs table); network flags from "
            "configs/latent-diffusion/lsun_bedrooms-ldm-vq-4.yaml",
            folder="priors",
            archive_member="model.ckpt",
            notes="a zip holding model.ckpt (with its config.yaml); no published sha256",
        ),
        WeightFile(
            name="resshift-realsr-x4-v3",
            file_name="resshift_realsrx4_s4_v3.pth",
            url="https://github.com/zsyOAOA/ResShift/releases/download/v2.0/resshift_realsrx4_s4_v3.pth",
            purpose="ResShift journal ×4 Swin UNet (4 steps, v3)",
            source="zsyOAOA/ResShift README and inference_resshift.py _LINK['v3'] (release v2.0)",
            folder="resshift",
            notes="no published sha256",
        ),
        WeightFile(
            name="resshift-realsr-x4-s15-v1",
            file_name="resshift_realsrx4_s15_v1.pth",
            url="https://github.com/zsyOAOA/ResShift/releases/download/v2.0/resshift_realsrx4_s15_v1.pth",
            purpose="ResShift NeurIPS ×4 Swin UNet (15 steps, v1): SinSR's teacher",
            source="wyf0912/SinSR configs/SinSR.yaml (teacher_ckpt_path) and inference.py "
            "(task realsrx4: the ResShift release v2.0 URL)",
            folder="resshift",
            notes="no published sha256",
        ),
        WeightFile(
            name="sinsr-realsr-x4-v1",
            file_name="SinSR_v1.pth",
            url="https://github.com/wyf0912/SinSR/releases/download/v1.0/SinSR_v1.pth",
            purpose="SinSR one-step ×4 Swin UNet (distilled from resshift-realsr-x4-s15-v1)",
            source="wyf0912/SinSR README (Fast testing, weights/SinSR_v1.pth) and inference.py "
            "(release v1.0 URL)",
            folder="resshift",
            notes="no published sha256; the README's SinSR_v2.pth (RealSR numbers) has no "
            "published URL",
        ),
        WeightFile(
            name="resshift-vq-f4",
            file_name="autoencoder_vq_f4.pth",
            url="https://github.com/zsyOAOA/ResShift/releases/download/v2.0/autoencoder_vq_f4.pth",
            purpose="ResShift's LDM VQ-f4 autoencoder",
            source="zsyOAOA/ResShift README and inference_resshift.py _LINK['vqgan'] (release v2.0)",
            folder="resshift",
            notes="no published sha256",
        ),
        WeightFile(
            name="bkse-gopro-wvae",
            file_name="GOPRO_wVAE.pth",
            url="https://drive.google.com/file/d/1vRoDpIsrTRYZKsOMPNbPcMtFDpCT6Foy/view",
            purpose="the DPS paper's nonlinear blur network (bkse KernelWizard, GOPRO, with VAE)",
            source="VinAIResearch/blur-kernel-space-exploring README, Model Zoo 'GOPRO wVAE' "
            "(the DPS README clones bkse and points options/generate_blur/default.yml at it)",
            folder="operators",
            manual=True,
            without="Use another operator, or NonlinearBlur(checkpoint=null) for random weights "
            "(tests only)",
            notes="Google Drive needs a browser or gdown; no published sha256",
        ),
        WeightFile(
            name="alexnet",
            file_name="alexnet-owt-7be5be79.pth",
            url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            purpose="LPIPS (net=alex) backbone: torchvision AlexNet ImageNet weights",
            source="torchvision AlexNet_Weights.IMAGENET1K_V1",
            folder="hub",
            sha256_prefix="7be5be79",
            without=_NO_PERCEPTUAL,
        ),
        WeightFile(
            name="vgg16",
            file_name="vgg16-397923af.pth",
            url="https://download.pytorch.org/models/vgg16-397923af.pth",
            purpose="LPIPS (net=vgg) backbone: torchvision VGG16 ImageNet weights",
            source="torchvision VGG16_Weights.IMAGENET1K_V1",
            folder="hub",
            sha256_prefix="397923af",
            without=_NO_PERCEPTUAL + "; ResShift training: lpips_weight: 0",
        ),
        WeightFile(
            name="inception",
            file_name="weights-inception-2015-12-05-6726825d.pth",
            url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
            "weights-inception-2015-12-05-6726825d.pth",
            purpose="FID/KID feature extractor: TF-compatible InceptionV3 (torch-fidelity)",
            source="torch-fidelity feature_extractor_inceptionv3.py URL_INCEPTION_V3",
            folder="hub",
            sha256_prefix="6726825d",
            without=_NO_PERCEPTUAL,
        ),
        WeightFile(
            name="niqe-pristine",
            file_name="niqe_modelparameters.mat",
            url=_IQA_PYTORCH_WEIGHTS + "niqe_modelparameters.mat",
            purpose="NIQE pristine model (mu_prisparam, cov_prisparam of the MATLAB NIQE release)",
            source="chaofengc/IQA-PyTorch pyiqa/archs/niqe_arch.py default_model_urls['niqe'] "
            "(LIVE niqe_release.zip modelparameters.mat)",
            folder="pyiqa",
            file_format="mat",
            without=_NO_NR,
            notes="11 KB; LIVE's release terms, so not shipped here; no published sha256",
        ),
        WeightFile(
            name="pyiqa-musiq-koniq",
            file_name="musiq_koniq_ckpt-e95806b9.pth",
            url=_IQA_PYTORCH_WEIGHTS + "musiq_koniq_ckpt-e95806b9.pth",
            purpose="MUSIQ trained on KonIQ-10k (IQA-PyTorch metric `musiq`)",
            source="chaofengc/IQA-PyTorch pyiqa/archs/musiq_arch.py default_model_urls['koniq10k']",
            folder="pyiqa",
            without=_NO_NR,
            notes="read by the optional pyiqa package; no published sha256",
        ),
        WeightFile(
            name="pyiqa-maniqa-pipal",
            file_name="MANIQA_PIPAL-ae6d356b.pth",
            url=_IQA_PYTORCH_WEIGHTS + "MANIQA_PIPAL-ae6d356b.pth",
            purpose="MANIQA trained on PIPAL (IQA-PyTorch metric `maniqa-pipal`)",
            source="chaofengc/IQA-PyTorch pyiqa/archs/maniqa_arch.py default_model_urls['pipal']",
            folder="pyiqa",
            without=_NO_NR,
            notes="read by the optional pyiqa package (holds the ViT-B/8 backbone too); no "
            "published sha256",
        ),
        WeightFile(
            name="pyiqa-clipiqa+",
            file_name="CLIP-IQA+_learned_prompts-603f3273.pth",
            url=_IQA_PYTORCH_WEIGHTS + "CLIP-IQA+_learned_prompts-603f3273.pth",
            purpose="CLIP-IQA+ learned prompts (IQA-PyTorch metric `clipiqa+`)",
            source="chaofengc/IQA-PyTorch pyiqa/archs/clipiqa_arch.py default_model_urls['clipiqa+']",
            folder="pyiqa",
            file_format="tensor",
            without=_NO_NR,
            notes="a pickled tensor, read by the optional pyiqa package; no published sha256",
        ),
        WeightFile(
            name="clip-rn50",
            file_name="RN50.pt",
            url="https://openaipublic.azureedge.net/clip/models/"
            "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
            purpose="OpenAI CLIP ResNet-50 (the backbone of IQA-PyTorch's clipiqa / clipiqa+)",
            source="openai/CLIP clip/clip.py _MODELS['RN50'] (as chaofengc/IQA-PyTorch "
            "pyiqa/archs/clip_model.py, cache $TORCH_HOME/hub/clip)",
            folder="clip",
            sha256="afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762",
            file_format="torchscript",
            without=_NO_NR,
            notes="~244 MB TorchScript archive; its URL path is its SHA-256",
        ),
        WeightFile(
            name="clip-vit-base-patch16",
            file_name="openai/clip-vit-base-patch16",
            url="https://huggingface.co/openai/clip-vit-base-patch16",
            purpose="OpenAI CLIP ViT-B/16 (Hugging Face layout) for torchmetrics' CLIP-IQA",
            source="torchmetrics multimodal/clip_iqa.py model_name_or_path choices",
            folder="hf",
            hub="hf://openai/clip-vit-base-patch16",
            without=_NO_NR,
            notes="~600 MB; the Hugging Face cache; pinned to the repository's main revision",
        ),
        WeightFile(
            name="adm-demo-pd",
            file_name="prior_demo_adm.safetensors",
            url="",
            purpose="prior adm-demo-pd (the main job's small ADM, trained here on data/train)",
            source="configs/experiment/prior_demo_adm.yaml, exported by "
            "scripts/export_demo_weights.py",
            folder="priors",
            sha256=SHIPPED_SHA256["adm-demo-pd"],
            shipped="weights/prior_demo_adm.safetensors",
            notes="5.1 MB (1.26 M float32 parameters, EMA weights)",
        ),
        WeightFile(
            name="resshift-demo-sr4",
            file_name="resshift_demo_sr4.safetensors",
            url="",
            purpose="the main job's small pixel-space ResShift ×4 (trained here on data/train)",
            source="configs/experiment/resshift_demo_sr4.yaml, exported by "
            "scripts/export_demo_weights.py",
            folder="resshift",
            sha256=SHIPPED_SHA256["resshift-demo-sr4"],
            shipped="weights/resshift_demo_sr4.safetensors",
            notes="3.1 MB (0.77 M float32 parameters, EMA weights)",
        ),
        WeightFile(
            name="sinsr-demo-sr4",
            file_name="sinsr_demo_sr4.safetensors",
            url="",
            purpose="the main job's one-step SinSR ×4, distilled here from resshift-demo-sr4",
            source="configs/experiment/sinsr_demo_sr4.yaml, exported by "
            "scripts/export_demo_weights.py",
            folder="resshift",
            sha256=SHIPPED_SHA256["sinsr-demo-sr4"],
            shipped="weights/sinsr_demo_sr4.safetensors",
            notes="3.1 MB (0.77 M float32 parameters, EMA weights)",
        ),
    )
}


class MissingWeightsError(FileNotFoundError):
    """A weight file is not available locally (nothing is downloaded implicitly)."""


class FetchError(RuntimeError):
    """An opt-in download that failed or failed its checks."""


# ------------------------------------------------------------------------------ where files live
def home() -> Path:
    """``$LIT_RESTORE_HOME`` (default ``~/.cache/lit_restore``)."""
    return Path(os.environ.get("LIT_RESTORE_HOME") or "~/.cache/lit_restore").expanduser()


def hub_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (torch's own download cache; honours ``TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def search_dirs(entry: WeightFile) -> list[Path]:
    """Folders searched for ``entry``, in order; a fetch writes into the first."""
    if entry.folder == "hub":
        return [hub_checkpoint_dir(), home() / "checkpoints"]
    if entry.folder == "pyiqa":  # IQA-PyTorch's own cache first, where pyiqa looks and fetches
        return [Path(torch.hub.get_dir()) / "pyiqa", home() / "pyiqa"]
    if entry.folder == "clip":  # where IQA-PyTorch's CLIP loader looks (and nowhere else)
        return [Path(torch.hub.get_dir()) / "clip"]
    if entry.folder == "hf":
        from huggingface_hub.constants import HF_HUB_CACHE

        return [Path(HF_HUB_CACHE)]
    return [home() / entry.folder]


def _all_dirs() -> list[Path]:
    dirs: list[Path] = []
    for entry in WEIGHTS.values():
        dirs += [d for d in search_dirs(entry) if d not in dirs]
    return dirs


def get(name: str) -> WeightFile:
    if name not in WEIGHTS:
        raise KeyError(f"unknown weight file {name!r}; registered: {', '.join(sorted(WEIGHTS))}")
    return WEIGHTS[name]


def shipped_path(entry: WeightFile) -> Path | None:
    """The repository's copy of a shipped entry, or ``None`` (not shipped, or not in this tree:
    e.g. an installed wheel, which carries no ``weights/``)."""
    if entry.shipped is None:
        return None
    path = REPO_ROOT / entry.shipped
    return path if path.is_file() else None


def find(entry: WeightFile) -> Path | None:
    """The shipped file or the cached copy of ``entry`` (our cache, then the Hugging Face cache
    for an entry on the Hub), or ``None``."""
    if entry.hub is not None and HubFile.parse(entry.hub).filename is None:
        return HubFile.parse(entry.hub).cached()  # a repository: only in the Hugging Face cache
    shipped = shipped_path(entry)
    if shipped is not None:
        return shipped
    for d in search_dirs(entry):
        if (d / entry.file_name).is_file():
            return d / entry.file_name
    if entry.hub is not None:
        return HubFile.parse(entry.hub).cached()
    return None


# ------------------------------------------------------------------------------ Hugging Face Hub
#: the scheme of a Hub file spec
HF_SCHEME = "hf://"
#: the files of a repository snapshot fetched (configs, tokenizer files, safetensors weights:
#: what transformers/diffusers load; not the duplicate .bin/.msgpack/.h5 weights)
SNAPSHOT_FILES = ["*.json", "*.txt", "*.safetensors"]


@dataclass(frozen=True)
class HubFile:
    """A file (or, ``filename=None``, the whole snapshot) of a Hugging Face Hub model repository
    at a revision: ``hf://OWNER/REPO/PATH/IN/REPO@REVISION`` (module docstring).

    Attributes:
        repo_id: ``OWNER/REPO``.
        filename: path inside the repository, or ``None`` for the repository's snapshot.
        revision: commit hash, branch or tag (``None``: ``main``).
    """

    repo_id: str
    filename: str | None
    revision: str | None = None

    @classmethod
    def parse(cls, spec: str) -> HubFile:
        """``hf://OWNER/REPO[/PATH][@REVISION]`` -> ``HubFile`` (the revision is what follows
        the last ``@``; file names with ``@`` cannot be given this way)."""
        text = str(spec)
        if not text.startswith(HF_SCHEME):
            raise ValueError(f"{spec!r} is not a Hub spec ({HF_SCHEME}OWNER/REPO/FILE@REVISION)")
        body, at, revision = text[len(HF_SCHEME) :].rpartition("@")
        if not at:
            body, revision = revision, ""
        parts = [p for p in body.split("/") if p]
        if len(parts) < 2 or (at and not revision):
            raise ValueError(
                f"{spec!r}: a Hub spec is {HF_SCHEME}OWNER/REPO/PATH/IN/REPO@REVISION (e.g. "
                f"{HF_SCHEME}gwang-kim/DiffusionCLIP-CelebA_HQ/celeba_hq.ckpt@main; pin a commit "
                "hash for reproducible runs)"
            )
        filename = "/".join(parts[2:]) or None
        return cls("/".join(parts[:2]), filename, revision or None)

    def __str__(self) -> str:
        path = f"/{self.filename}" if self.filename else ""
        rev = f"@{self.revision}" if self.revision else ""
        return f"{HF_SCHEME}{self.repo_id}{path}{rev}"

    def _download(self, **kwargs) -> Path:
        import huggingface_hub

        if self.filename is None:
            return Path(
                huggingface_hub.snapshot_download(
                    self.repo_id, revision=self.revision, allow_patterns=SNAPSHOT_FILES, **kwargs
                )
            )
        return Path(
            huggingface_hub.hf_hub_download(
                self.repo_id, self.filename, revision=self.revision, **kwargs
            )
        )

    def cached(self) -> Path | None:
        """The file (snapshot folder) in the Hugging Face cache, or ``None``; no network."""
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            path = self._download(local_files_only=True)
        except (LocalEntryNotFoundError, FileNotFoundError):
            return None
        return path if path.exists() else None

    def fetch(self, directory: Path | None = None, progress: bool = True) -> Path:
        """Download into the Hugging Face cache (or ``directory``), through ``huggingface_hub``
        (honours ``HF_HUB_OFFLINE``, ``HF_TOKEN``, ``HF_ENDPOINT``)."""
        import huggingface_hub

        kwargs: dict = {"local_dir": directory} if directory is not None else {}
        if not progress:  # huggingface_hub's own switch for its progress bars
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        try:
            return self._download(**kwargs)
        except huggingface_hub.errors.HfHubHTTPError as err:
            raise FetchError(f"{self}: the Hub refused the download ({one_line_of(err)})") from err
        except (huggingface_hub.errors.LocalEntryNotFoundError, OSError) as err:
            offline = " (HF_HUB_OFFLINE is set: unset it to download)" if hub_offline() else ""
            raise FetchError(
                f"could not download {self}{offline}: {one_line_of(err)}; on a machine with "
                f"network access run `python -m lit_restore.weights {self}` and copy its Hugging "
                f"Face cache ({hub_cache_dir()}) here, or download the file by hand and pass its "
                "path"
            ) from err


def hub_cache_dir() -> Path:
    """The Hugging Face cache ``huggingface_hub`` reads (``$HF_HUB_CACHE``, ``$HF_HOME/hub``)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def one_line_of(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 300 else text[:297] + "..."


def resolve_hub(spec: str, option: str = "") -> Path:
    """The cached file of Hub spec ``spec``; never downloads.

    Raises:
        MissingWeightsError: not in the Hugging Face cache (one line: which repo/file/revision,
            where we looked, the fetch command).
    """
    try:
        hub = HubFile.parse(spec)
    except ValueError as err:
        raise MissingWeightsError(f"{option or 'weights'}: {err}") from None
    found = hub.cached()
    if found is not None:
        return found
    what = f"file {hub.filename!r}" if hub.filename else "the snapshot"
    raise MissingWeightsError(
        f"{option or 'weights'}={spec!r}: {what} of Hub repository {hub.repo_id!r} at revision "
        f"{hub.revision or 'main'!r} is not in the Hugging Face cache ({hub_cache_dir()}; "
        "$HF_HUB_CACHE / $HF_HOME move it). Nothing is downloaded implicitly; to get it, run "
        f"`python -m lit_restore.weights {hub}` (huggingface_hub download; HF_TOKEN for gated "
        "repositories), or pass a local path"
    )


def missing_message(entry: WeightFile, given: str | None = None, option: str = "") -> str:
    """One line: what is missing, where we looked, how to get it, where to put it."""
    dirs = search_dirs(entry)
    target = dirs[0] / entry.file_name
    if given is None:
        head = f"{entry.purpose}: weight file {entry.file_name!r} not found"
    else:
        head = (
            f"{option or 'weights'}={given!r} does not exist, and {entry.file_name!r} "
            f"({entry.purpose}) is not in the cache either"
        )
    where = f" (looked in {', '.join(map(str, dirs))}; $LIT_RESTORE_HOME moves the cache)"
    if entry.shipped is not None:
        how = (
            f"restore the repository's {entry.shipped} (`git checkout -- {entry.shipped}` in a "
            f"clone), copy it to {target}, or rebuild it with {entry.source}"
        )
        return f"{head}{where}. {how[0].upper()}{how[1:]}."
    if entry.hub is not None and HubFile.parse(entry.hub).filename is None:
        how = (
            f"run `python -m lit_restore.weights {entry.name}` (downloads the Hub repository "
            f"{entry.hub} into the Hugging Face cache), or pass a local folder holding it"
        )
    elif entry.manual:
        how = (
            f"download it by hand from {entry.url} (a web page a script cannot fetch) and save "
            f"it as {target}"
        )
    elif entry.archive_member:
        how = (
            f"run `python -m lit_restore.weights {entry.name}` (downloads {entry.url} and "
            f"extracts its {entry.archive_member}), or download that zip by hand and save its "
            f"{entry.archive_member} as {target}"
        )
    else:
        how = (
            f"run `python -m lit_restore.weights {entry.name}` (downloads {entry.url}), or "
            f"download that URL by hand and save it as {target}"
        )
    alt = " Or pass the file's path" + (f" as `{option}`" if option else "") + "."
    without = f" {entry.without}." if entry.without else ""
    return f"{head}{where}. Nothing is downloaded implicitly; to get it, {how}.{alt}{without}"


def resolve(spec: str | os.PathLike, *, option: str = "", expect: str | None = None) -> Path:
    """The local file (or diffusers directory) for ``spec``; never downloads.

    Args:
        spec: a path, a registered name (:data:`WEIGHTS`), a registered file name, or a Hub
            spec ``hf://OWNER/REPO/FILE@REVISION`` (:class:`HubFile`, Hugging Face cache).
        option: the option the user set ``spec`` with (named in errors).
        expect: the registered name ``spec`` should be (a path given for it), for the error.

    Raises:
        MissingWeightsError: one line naming the file, its URL, where to put it and the fetch
            command.
    """
    text = str(spec)
    if not text.strip():
        raise MissingWeightsError(
            f"{option or 'weights'} is empty: give a path or a registered name"
        )
    if text.startswith(HF_SCHEME):
        return resolve_hub(text, option)
    path = Path(text).expanduser()
    if path.is_file() or path.is_dir():
        return path
    given: str | None = None
    entry = WEIGHTS.get(text)
    if entry is None:
        given = text
        entry = next((w for w in WEIGHTS.values() if w.file_name == path.name), None)
    if entry is not None:
        found = find(entry)
        if found is not None:
            return found
        raise MissingWeightsError(missing_message(entry, given, option))
    for d in _all_dirs():
        if path.name and (d / path.name).is_file():
            return d / path.name
    if expect is not None:
        raise MissingWeightsError(missing_message(get(expect), given, option))
    raise MissingWeightsError(
        f"{option or 'weights'} {text!r} not found: no such file or directory, no file of that "
        f"name in the caches ({', '.join(map(str, _all_dirs()))}), and not a registered name "
        f"({', '.join(sorted(WEIGHTS))}; `python -m lit_restore.weights` lists them)"
    )


# ------------------------------------------------------------------------------ opt-in download
def download(
    url: str,
    target: Path,
    *,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    progress: bool = True,
) -> Path:
    """Stream ``url`` to ``target`` through a temporary file in the same folder (``os.replace``
    at the end, so an interrupted download never leaves a file that looks complete), checking the
    SHA-256 (or its prefix) when given. Network failures raise :class:`urllib.error.URLError` /
    :class:`OSError` to the caller."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # a per-process name in the target's folder (same file system, so os.replace is atomic);
    # open() creates it with the user's umask, unlike mkstemp's 0600
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as f, urllib.request.urlopen(url) as resp:
            total = resp.headers.get("Content-Length")
            bar = tqdm(
                total=int(total) if total else None,
                unit="B",
                unit_scale=True,
                desc=target.name,
                disable=not progress,
            )
            with bar:
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        got = digest.hexdigest()
        if sha256 is not None and got != sha256.lower():
            raise FetchError(f"{url}: sha256 {got} does not match the published {sha256}")
        if sha256_prefix is not None and not got.startswith(sha256_prefix.lower()):
            raise FetchError(
                f"{url}: sha256 {got} does not start with the published prefix {sha256_prefix}"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def fetch(
    name: str,
    directory: str | os.PathLike | None = None,
    url: str | None = None,
    progress: bool = True,
) -> Path:
    """Download registered file ``name`` (or a Hub spec ``hf://...``) into ``directory``
    (default: its first cache folder; the Hugging Face cache for a file on the Hub) and verify
    it; a file already there is returned as is.

    ``url`` overrides the registered URL (a mirror, or a ``file://`` URL in tests).

    Raises:
        FetchError: a manual entry without ``url``, no network, or a failed check (one line,
            naming the URL and where to put the file by hand).
    """
    if name.startswith(HF_SCHEME):
        return _fetch_hub(name, directory, progress)
    entry = get(name)
    if entry.shipped is not None and url is None:
        return check_shipped(entry)
    if entry.hub is not None and url is None and directory is None:
        return find(entry) or _fetch_hub(entry.hub, None, progress, entry.sha256)
    folder = Path(directory).expanduser() if directory else search_dirs(entry)[0]
    target = folder / entry.file_name
    if entry.manual and url is None:
        raise FetchError(
            f"{name} is hosted on a web page that a script cannot fetch: download "
            f"{entry.file_name} from {entry.url} and save it as {target} (or pass --url with a "
            "direct mirror)"
        )
    if target.is_file():
        return target
    source = url or entry.url
    archive = target.with_name(f"{target.name}.zip") if entry.archive_member else target
    try:
        download(
            source,
            archive,
            sha256=entry.sha256,
            sha256_prefix=entry.sha256_prefix,
            progress=progress,
        )
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        reason = getattr(err, "reason", err)
        raise FetchError(
            f"could not download {name} from {source} ({reason}); without network access, "
            f"download that URL on another machine and save it as {target}"
        ) from err
    if entry.archive_member:
        try:
            _extract(archive, entry.archive_member, target)
        finally:
            archive.unlink(missing_ok=True)
    try:
        check_file(entry, target)
    except CheckpointError as err:
        target.unlink(missing_ok=True)
        raise FetchError(f"downloaded {entry.file_name} from {source} is unusable: {err}") from err
    return target


def _fetch_hub(
    spec: str,
    directory: str | os.PathLike | None,
    progress: bool,
    sha256: str | None = None,
) -> Path:
    """``HubFile.fetch`` + the checks of a download: the SHA-256 when one is known, and that a
    file reads as a checkpoint (a snapshot folder is a diffusers directory: not checked)."""
    try:
        hub = HubFile.parse(spec)
    except ValueError as err:
        raise FetchError(str(err)) from None
    path = hub.fetch(Path(directory).expanduser() if directory else None, progress)
    if path.is_dir():
        return path
    if sha256 is not None and sha256_of(path) != sha256:
        raise FetchError(f"{hub} ({path}): sha256 {sha256_of(path)} is not the recorded {sha256}")
    try:
        check_readable(path)
    except CheckpointError as err:
        raise FetchError(f"{hub} downloaded to {path} is unusable: {err}") from err
    return path


def _extract(archive: Path, member: str, target: Path) -> None:
    """Copy the zip member whose path ends with ``member`` to ``target`` (temp + ``os.replace``)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n == member or n.endswith("/" + member)]
            if len(names) != 1:
                raise FetchError(
                    f"{archive.name}: expected one {member} in the archive, found {len(names)}"
                )
            tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
            try:
                with zf.open(names[0]) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
    except zipfile.BadZipFile as err:
        raise FetchError(f"downloaded {archive.name} is not a zip archive: {err}") from err


def check_file(entry: WeightFile, path: Path) -> None:
    """Check that ``path`` reads as ``entry.file_format`` (catches truncated files and saved error
    pages); raises :class:`CheckpointError`. A TorchScript archive or a pickled tensor is not
    opened here (that would run its code): only its zip container is checked."""
    if entry.file_format == "checkpoint":
        check_readable(path)
    elif entry.file_format == "mat":
        from scipy.io import loadmat

        try:
            loadmat(str(path))
        except (ValueError, OSError) as err:
            raise CheckpointError(f"{path} is not a MATLAB .mat file: {err}") from err
    else:
        import zipfile

        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path} is not a torch archive (no zip container)")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_shipped(entry: WeightFile) -> Path:
    """The local file of shipped ``entry`` (repository or cache) after checking its SHA-256
    against the recorded one (catches a Git LFS pointer, a truncated checkout, a local edit).

    Raises:
        FetchError: absent, or a different file (one line: which file and how to restore it).
    """
    path = find(entry)
    if path is None:
        raise FetchError(missing_message(entry))
    got = sha256_of(path)
    if entry.sha256 is not None and got != entry.sha256:
        raise FetchError(
            f"{path} (shipped {entry.name}) has sha256 {got}, not the recorded {entry.sha256}: "
            f"restore it with `git checkout -- {entry.shipped}`"
        )
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m lit_restore.weights [NAME ...] [--dir DIR] [--url URL]``."""
    parser = argparse.ArgumentParser(
        prog="python -m lit_restore.weights",
        description="Download registered weight files (priors, ResShift release files, metric "
        "backbones) into the cache, so that everything runs offline afterwards; without NAME, list "
        "them. Nothing else in lit_restore downloads.",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"any of: {', '.join(sorted(WEIGHTS))}; or a Hugging Face Hub file "
        f"{HF_SCHEME}OWNER/REPO/FILE@REVISION (into the Hugging Face cache)",
    )
    parser.add_argument("--dir", default=None, help="target folder (default: the entry's cache)")
    parser.add_argument("--url", default=None, help="a mirror URL (with a single NAME)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in WEIGHTS and not n.startswith(HF_SCHEME)]
    if unknown:
        parser.error(f"unknown NAME {', '.join(unknown)}; choose from {', '.join(sorted(WEIGHTS))}")
    if args.url and len(args.names) != 1:
        parser.error("--url needs exactly one NAME")
    if not args.names:
        for entry in WEIGHTS.values():
            found = find(entry)
            shipped = " (shipped)" if found is not None and found == shipped_path(entry) else ""
            where = f"present{shipped}: {found}" if found else f"missing -> {search_dirs(entry)[0]}"
            print(f"{entry.name:24s} {entry.file_name:42s} {where}")
        return 0
    for name in args.names:
        try:
            print(fetch(name, args.dir, args.url))
        except (FetchError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
