"""Published priors by name, and :func:`load_prior`.

Each :class:`PriorEntry` says which prior class builds the network (``kind``, one key of
:data:`PRIOR_CLASSES`) with which published flags; its weight file is the entry of the same name
in :data:`lit_restore.weights.WEIGHTS` (URL, file name, cache folder), resolved by
:func:`lit_restore.weights.resolve` and fetched, opt-in, by ``python -m lit_restore.weights NAME``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lit_restore.checkpoints import extract_state_dict, read_checkpoint
from lit_restore.priors.adm_prior import ADMPrior, DDIMPrior
from lit_restore.priors.base import DiffusionPrior
from lit_restore.priors.diffusers_prior import DiffusersPrior
from lit_restore.priors.latent import LDM_VQ4_FIRST_STAGE, LDM_VQ4_UNET, LDMPrior
from lit_restore.weights import resolve

#: entry kind (and ``load_prior(arch=…)``) → the prior class that builds that network family.
PRIOR_CLASSES: dict[str, type[ADMPrior] | type[DDIMPrior] | type[LDMPrior]] = {
    "adm": ADMPrior,
    "ddim": DDIMPrior,
    "ldm": LDMPrior,
}


def prior_class(kind: str) -> type[ADMPrior] | type[DDIMPrior] | type[LDMPrior]:
    """The class for ``kind``; an unknown kind is a clear error, never a silent default."""
    if kind not in PRIOR_CLASSES:
        raise ValueError(
            f"unknown prior kind/arch {kind!r}; choose one of {', '.join(sorted(PRIOR_CLASSES))}"
        )
    return PRIOR_CLASSES[kind]


@dataclass(frozen=True)
class PriorEntry:
    """A published prior: the network family and its published constructor flags. The weight
    file is ``lit_restore.weights.WEIGHTS[name]``."""

    name: str
    kind: str
    config: dict[str, Any]


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
#: configs/experiment/prior_demo_adm.yaml's network, trained here (weights shipped in ``weights/``).
#: ``image_size`` None: trained on 48-px crops and run at any size (no attention_resolutions, so
#: the layout does not depend on the size; GroupNorm takes per-image statistics).
ADM_DEMO_PD = dict(
    image_size=None, num_channels=32, num_res_blocks=1, channel_mult="1,1,2,2", attention_resolutions="",
    num_heads=1, num_head_channels=32, learn_sigma=False, use_scale_shift_norm=True, resblock_updown=False,
    class_cond=False, use_new_attention_order=False, dropout=0.0,
)  # fmt: skip
#: CompVis configs/latent-diffusion/{ffhq,celebahq,lsun_bedrooms}-ldm-vq-4.yaml (identical networks)
LDM_VQ4 = dict(
    unet=LDM_VQ4_UNET, first_stage=LDM_VQ4_FIRST_STAGE, linear_start=0.0015, linear_end=0.0195,
    timesteps=1000,
)  # fmt: skip
DDIM_CELEBAHQ256 = dict(
    image_size=256, channels=3, ch=128, ch_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=2, attn_resolutions=(16,),
    dropout=0.0, resamp_with_conv=True,
)  # fmt: skip

REGISTRY: dict[str, PriorEntry] = {
    e.name: e
    for e in (
        # guided-diffusion README (ImageNet 256 unconditional)
        PriorEntry("adm-imagenet256-uncond", "adm", ADM_IMAGENET256),
        # DPS2022/diffusion-posterior-sampling configs/model_config.yaml
        PriorEntry("adm-ffhq256-dps", "adm", ADM_FFHQ256),
        # DDRM/DDNM configs/celeba_hq.yml
        PriorEntry("ddim-celebahq256", "ddim", DDIM_CELEBAHQ256),
        # trained here: configs/experiment/prior_demo_adm.yaml on data/train (the main job's prior)
        PriorEntry("adm-demo-pd", "adm", ADM_DEMO_PD),
        # CompVis/latent-diffusion README (pretrained LDMs), configs/latent-diffusion/*-ldm-vq-4
        PriorEntry("ldm-ffhq256", "ldm", LDM_VQ4),
        PriorEntry("ldm-celebahq256", "ldm", LDM_VQ4),
        PriorEntry("ldm-lsun-bedrooms256", "ldm", LDM_VQ4),
    )
}


def get_entry(name: str) -> PriorEntry:
    if name not in REGISTRY:
        raise KeyError(f"unknown prior {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def build_prior(
    entry: PriorEntry, checkpoint: str | os.PathLike | None, **overrides: Any
) -> DiffusionPrior:
    """Instantiate the entry's class with its flags (+ overrides) and load ``checkpoint``."""
    cfg = {**entry.config, **overrides}
    return prior_class(entry.kind)(
        **cfg, checkpoint=None if checkpoint is None else str(checkpoint)
    )


def match_layout(sd: dict[str, torch.Tensor]) -> PriorEntry | None:
    """The registry entry whose network layout (names and shapes) equals state dict ``sd``
    (built on the meta device: nothing allocated)."""
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    for entry in REGISTRY.values():
        if entry.kind == "ldm":  # a LatentDiffusion container, not a bare network (load by name)
            continue
        with torch.device("meta"):
            net = prior_class(entry.kind)(**entry.config, frozen=False).net
        if {k: tuple(v.shape) for k, v in net.state_dict().items()} == shapes:
            return entry
    return None


def load_prior(name_or_path: str | os.PathLike, **overrides: Any) -> DiffusionPrior:
    """A frozen prior from a registry name, a checkpoint path or a diffusers directory.

    * registry name (``adm-imagenet256-uncond``, ``adm-ffhq256-dps``, ``ddim-celebahq256``,
      ``adm-demo-pd``, the latent ``ldm-ffhq256``, ``ldm-celebahq256``,
      ``ldm-lsun-bedrooms256``) →
      weights resolved by :func:`lit_restore.weights.resolve`; ``overrides`` change flags (e.g.
      ``dtype``).
    * a Lightning checkpoint of :class:`~lit_restore.modules.diffusion_prior.DiffusionPriorModule`
      → :meth:`ADMPrior.from_object` (flags from its hyper-parameters).
    * another weights file → ``arch="adm"|"ddim"`` plus flags in ``overrides``; without flags its
      layout is matched against the registered ones.
    * a directory → :class:`DiffusersPrior`.
    """
    text = str(name_or_path)
    arch = overrides.pop("arch", None)
    if text in REGISTRY and not Path(text).exists():
        return build_prior(REGISTRY[text], resolve(text), **overrides)
    path = resolve(text)
    if path.is_dir():
        if overrides:  # a diffusers UNet brings its own configuration
            raise ValueError(
                f"{str(path)!r} is a diffusers directory: load_prior takes no network flags for it "
                f"(got {', '.join(sorted(overrides))}); use DiffusersPrior(path, subfolder=…)"
            )
        return DiffusersPrior(str(path))
    obj = read_checkpoint(path)  # read once: published files are hundreds of MB
    source = f"checkpoint {str(path)!r}"
    if arch is not None:
        return prior_class(arch).from_object(obj, source, **overrides)
    if isinstance(obj, dict) and "hyper_parameters" in obj:
        return ADMPrior.from_object(obj, source, **overrides)
    if not overrides:
        entry = match_layout(extract_state_dict(obj, source=source))
        if entry is not None:
            return prior_class(entry.kind).from_object(obj, source, **entry.config)
    raise ValueError(
        f"cannot tell which network {str(path)!r} holds: pass arch='adm' or arch='ddim' with its "
        "flags (e.g. load_prior(path, arch='adm', image_size=256, num_channels=256, …))."
    )
