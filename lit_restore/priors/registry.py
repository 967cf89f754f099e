"""Named published priors and weight-file resolution.

Resolution order (``resolve_weights``): an existing path → the cache directory
``$LIT_RESTORE_HOME/priors/<file>`` (default ``~/.cache/lit_restore/priors``) → one error
saying exactly what to download, from where, and where to put it. Nothing is downloaded
implicitly; ``python -m lit_restore.priors.fetch NAME`` is the opt-in download.

Published hashes: none of the three upstream projects publishes a sha256 of its checkpoint, so
``sha256`` is ``None`` for all of them (we do not invent one); the fetcher then checks that the
file loads strictly into the network instead. ``size`` is likewise left ``None`` where no
upstream source states the exact byte count.

Shipped priors (``shipped`` set): weights trained here and committed with the repository (under
``weights/``); the name resolves to that file first, then to the cache like any other entry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_restore.priors.base import DiffusionPrior


@dataclass(frozen=True)
class PriorEntry:
    """A published checkpoint: which class builds it, with which flags, and where it lives."""

    name: str
    cls: str  # "ADMPrior" | "DDIMPrior"
    config: dict[str, Any]
    file_name: str
    url: str
    size: int | None = None
    sha256: str | None = None
    manual: bool = False  # True when the URL is a web page (Google Drive) a script cannot fetch
    source: str = ""
    notes: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    shipped: str | None = None  # path relative to the repository root of a file shipped with it


#: the repository root (shipped weights live under it; an editable install or a clone)
REPO_ROOT = Path(__file__).resolve().parents[2]


ADM_IMAGENET256 = dict(
    image_size=256, num_channels=256, num_res_blocks=2, channel_mult="", attention_resolutions="32,16,8",
    num_heads=4, num_head_channels=64, learn_sigma=True, use_scale_shift_norm=True, resblock_updown=True,
    class_cond=False, use_new_attention_order=False, dropout=0.0,
)  # fmt: skip
ADM_FFHQ256 = dict(
    image_size=256, num_channels=128, num_res_blocks=1, channel_mult="", attention_resolutions="16",
    num_heads=4, num_head_channels=64, learn_sigma=True, use_scale_shift_norm=True, resblock_updown=True,
    class_cond=False, use_new_attention_order=False, dropout=0.0,
)  # fmt: skip
#: configs/experiment/prior_demo_adm.yaml's network; image_size None: trained on 64-px crops, run at
#: any size (no attention_resolutions, so the layout does not depend on the size)
ADM_DEMO_PD = dict(
    image_size=None, num_channels=32, num_res_blocks=1, channel_mult="1,1,2,2", attention_resolutions="",
    num_heads=1, num_head_channels=32, learn_sigma=False, use_scale_shift_norm=True, resblock_updown=False,
    class_cond=False, use_new_attention_order=False, dropout=0.0,
)  # fmt: skip
DDIM_CELEBAHQ256 = dict(
    image_size=256, channels=3, ch=128, ch_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2, attn_resolutions=(16,),
    dropout=0.0, resamp_with_conv=True,
)  # fmt: skip

REGISTRY: dict[str, PriorEntry] = {
    e.name: e
    for e in (
        PriorEntry(
            name="adm-imagenet256-uncond",
            cls="ADMPrior",
            config=ADM_IMAGENET256,
            file_name="256x256_diffusion_uncond.pt",
            url="https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt",
            source="openai/guided-diffusion README (ImageNet 256 unconditional); the ImageNet prior of DPS/DDRM/DDNM/DDPG/FDGR",
            notes="~2.2 GB (552.8 M float32 parameters); no published sha256",
        ),
        PriorEntry(
            name="adm-ffhq256-dps",
            cls="ADMPrior",
            config=ADM_FFHQ256,
            file_name="ffhq_10m.pt",
            url="https://drive.google.com/drive/folders/1jElnRoFv7b31fG0v6pTSQkelbSX3xGZh",
            manual=True,
            source="DPS2022/diffusion-posterior-sampling README (Google Drive folder)",
            notes="~357 MB (93.6 M float32 parameters); Google Drive needs a browser or gdown; no published sha256",
        ),
        PriorEntry(
            name="ddim-celebahq256",
            cls="DDIMPrior",
            config=DDIM_CELEBAHQ256,
            file_name="celeba_hq.ckpt",
            url="https://huggingface.co/gwang-kim/DiffusionCLIP-CelebA_HQ/resolve/main/celeba_hq.ckpt",
            source="SDEdit's CelebA-HQ checkpoint; original S3 link is dead (ddrm #24), HF mirror used by DiffusionCLIP; "
            "DDNM/DDPG READMEs also give Google Drive id 1wSoA5fm_d6JBZk4RZ1SzWLMgev4WqH21",
            notes="~455 MB (113.7 M float32 parameters); no published sha256",
        ),
        PriorEntry(
            name="adm-demo-pd",
            cls="ADMPrior",
            config=ADM_DEMO_PD,
            file_name="prior_demo_adm.safetensors",
            url="",
            size=5074596,
            sha256="54daab32ecdcf91f97819bcdba460bb6ba855274d402512d165aab51ce147f30",
            shipped="weights/prior_demo_adm.safetensors",
            source="trained here: configs/experiment/prior_demo_adm.yaml on the public-domain / CC0 "
            "images of data/train (data/README.md)",
            notes="5.1 MB (1.26 M float32 parameters, EMA weights); the main job's learned prior",
        ),
    )
}


def cache_dir() -> Path:
    """``$LIT_RESTORE_HOME/priors`` (default ``~/.cache/lit_restore/priors``)."""
    home = os.environ.get("LIT_RESTORE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache", "lit_restore"
    )
    return Path(home) / "priors"


def get_entry(name: str) -> PriorEntry:
    if name not in REGISTRY:
        raise KeyError(f"unknown prior {name!r}; registered: {sorted(REGISTRY)}")
    return REGISTRY[name]


def missing_weights_message(entry: PriorEntry) -> str:
    target = cache_dir() / entry.file_name
    how = (
        f"download it manually from {entry.url} (a Google Drive page) and save it as {target}"
        if entry.manual
        else f"run `python -m lit_restore.priors.fetch {entry.name}`, or download {entry.url} and save it as {target}"
    )
    return (
        f"weights for prior {entry.name!r} ({entry.file_name}) not found in {cache_dir()} "
        f"(set $LIT_RESTORE_HOME to change the cache). To get them: {how}. "
        f"Alternatively pass the file's path instead of the name. Source: {entry.source}."
    )


def resolve_weights(name_or_path: str | os.PathLike) -> Path:
    """Explicit path → cache dir (by registry name or bare file name) → clear error."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file() or path.is_dir():
        return path
    if text in REGISTRY:
        entry = REGISTRY[text]
        if entry.shipped and (REPO_ROOT / entry.shipped).is_file():
            return REPO_ROOT / entry.shipped
        cached = cache_dir() / entry.file_name
        if cached.is_file():
            return cached
        raise FileNotFoundError(missing_weights_message(entry))
    cached = cache_dir() / path.name
    if path.name and cached.is_file():
        return cached
    for entry in REGISTRY.values():
        if entry.file_name == path.name:
            raise FileNotFoundError(missing_weights_message(entry))
    raise FileNotFoundError(
        f"prior weights {text!r}: no such file, not in the cache {cache_dir()}, and not a registered "
        f"name ({', '.join(sorted(REGISTRY))})"
    )


def build_prior(
    entry: PriorEntry, checkpoint: str | os.PathLike | None, **overrides: Any
) -> DiffusionPrior:
    """Instantiate the entry's class with its flags (+ overrides) and load ``checkpoint``."""
    from lit_restore.priors.adm_prior import ADMPrior, DDIMPrior

    cls = {"ADMPrior": ADMPrior, "DDIMPrior": DDIMPrior}[entry.cls]
    cfg = {**entry.config, **overrides}
    return cls(**cfg, checkpoint=None if checkpoint is None else str(checkpoint))


def _match_layout(sd: dict) -> PriorEntry | None:
    """The registry entry whose network layout equals state dict ``sd`` (meta-device build, no
    allocation)."""
    import torch

    from lit_restore.priors.adm_prior import ADMPrior, DDIMPrior

    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    for entry in REGISTRY.values():
        cls = ADMPrior if entry.cls == "ADMPrior" else DDIMPrior
        with torch.device("meta"):
            net = cls(**entry.config, frozen=False).net
        if {k: tuple(v.shape) for k, v in net.state_dict().items()} == shapes:
            return entry
    return None


def load_prior(name_or_path: str | os.PathLike, **overrides: Any) -> DiffusionPrior:
    """A frozen prior from a registry name, a checkpoint path or a diffusers directory.

    * registry name (``adm-imagenet256-uncond``, ``adm-ffhq256-dps``, ``ddim-celebahq256``) →
      weights resolved by :func:`resolve_weights`; ``overrides`` change flags (e.g. ``dtype``).
    * a Lightning checkpoint of :class:`~lit_restore.modules.diffusion_prior.DiffusionPriorModule`
      → :meth:`ADMPrior.from_checkpoint` (flags from its hyper-parameters).
    * another weights file → ``arch="adm"|"ddim"`` plus flags in ``overrides``; without flags its
      layout is matched against the registered ones.
    * a directory → :class:`DiffusersPrior`.
    """
    from lit_restore.priors.adm_prior import ADMPrior, DDIMPrior
    from lit_restore.priors.loading import (
        extract_state_dict,
        load_state_dict_strict,
        read_checkpoint,
    )

    text = str(name_or_path)
    if text in REGISTRY and not Path(text).exists():
        entry = REGISTRY[text]
        return build_prior(entry, resolve_weights(text), **overrides)
    path = resolve_weights(text)
    if path.is_dir():
        from lit_restore.priors.diffusers_prior import DiffusersPrior

        return DiffusersPrior(str(path), **overrides)
    arch = overrides.pop("arch", None)
    obj = read_checkpoint(path)  # read once: published files are hundreds of MB
    source = f"checkpoint {str(path)!r}"
    if arch is None:
        if isinstance(obj, dict) and "hyper_parameters" in obj:
            return ADMPrior.from_object(obj, source, **overrides)
        if not overrides:
            sd = extract_state_dict(obj)
            entry = _match_layout(sd)
            if entry is not None:
                prior = build_prior(entry, None, frozen=False)
                load_state_dict_strict(prior.net, sd, source)
                return prior.freeze()
        raise ValueError(
            f"cannot tell which network {str(path)!r} holds: pass arch='adm' or arch='ddim' with its "
            "flags (e.g. load_prior(path, arch='adm', image_size=256, num_channels=256, …))."
        )
    if arch == "adm":
        return ADMPrior.from_object(obj, source, **overrides)
    if arch == "ddim":
        prior = DDIMPrior(**overrides, frozen=False)
        load_state_dict_strict(prior.net, extract_state_dict(obj), source)
        return prior.freeze()
    raise ValueError(f"arch must be 'adm' or 'ddim', got {arch!r}")
