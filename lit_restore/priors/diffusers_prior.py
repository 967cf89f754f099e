"""A local 🤗 diffusers ``UNet2DModel`` as a frozen ε-prior.

``path`` is a pipeline directory (``unet/`` + ``scheduler/``, e.g. ``google/ddpm-celebahq-256``
saved locally) or a bare UNet directory (``config.json`` + weights) with an optional
``scheduler_config.json`` beside it. Nothing is downloaded: ``local_files_only=True``. The betas
come from the scheduler config (:class:`diffusers.DDPMScheduler` rebuilds them from
``beta_schedule``/``beta_start``/``beta_end``/``trained_betas``); without a scheduler config
the linear 1e-4→0.02 schedule is assumed (and said so in a warning).

:class:`DiffusersLatentPrior` wraps a saved latent pipeline (UNet + VQ/KL autoencoder +
scheduler: ``LDMPipeline``, Stable Diffusion) as a
:class:`~lit_restore.priors.latent.LatentDiffusionPrior` for the latent methods.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import Tensor

from lit_restore.priors.base import DiffusionPrior
from lit_restore.priors.latent import LatentDiffusionPrior
from lit_restore.utils.extras import require


def _require_diffusers():
    return require(
        "diffusers", "diffusers", "A diffusers prior (DiffusersPrior, DiffusersLatentPrior)"
    )


class DiffusersPrior(DiffusionPrior):
    """Wrap ``UNet2DModel.from_pretrained(path, subfolder=…)``.

    Args:
        path: local directory.
        subfolder: the UNet's subfolder; ``None`` → ``"unet"`` when ``path/unet`` exists.
        frozen: eval mode and no parameter gradients.
    """

    def __init__(self, path: str, subfolder: str | None = None, frozen: bool = True) -> None:
        diffusers = _require_diffusers()
        root = Path(path).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(
                f"DiffusersPrior: {str(root)!r} is not a directory; give the local folder of a "
                "saved diffusers pipeline or UNet2DModel (save_pretrained / huggingface-cli download)."
            )
        if subfolder is None and (root / "unet").is_dir():
            subfolder = "unet"
        unet = diffusers.UNet2DModel.from_pretrained(
            str(root), subfolder=subfolder, local_files_only=True
        )
        betas = self._betas(diffusers, root, subfolder)
        size = unet.config.sample_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        super().__init__(image_size=size, channels=unet.config.in_channels, betas=betas)
        self.unet = unet
        if frozen:
            self.freeze()

    @staticmethod
    def _betas(diffusers, root: Path, subfolder: str | None) -> Tensor | None:
        unet_dir = root / subfolder if subfolder else root
        for cfg_dir, sub in ((root, "scheduler"), (unet_dir, None), (unet_dir.parent, "scheduler")):
            cfg = (
                cfg_dir / sub / "scheduler_config.json"
                if sub
                else cfg_dir / "scheduler_config.json"
            )
            if cfg.is_file():
                sched = diffusers.DDPMScheduler.from_pretrained(
                    str(cfg.parent), local_files_only=True
                )
                return sched.betas.to(torch.float64)
        warnings.warn(
            f"DiffusersPrior: no scheduler_config.json under {str(root)!r}; assuming linear betas "
            "1e-4→0.02 over 1000 steps.",
            stacklevel=3,
        )
        return None

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        self.check_input(x_t)
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(x_t.shape[0])
        out = self.unet(x_t, t).sample
        return out[:, : self.channels]


class _DiffusersUNetEps(DiffusionPrior):
    """The ε of a diffusers latent UNet (``UNet2DModel`` or ``UNet2DConditionModel`` with fixed
    ``encoder_hidden_states``), whatever its ``prediction_type``: ε is recovered from a
    v-prediction as ε = √ᾱ v + √(1−ᾱ) z_t and from an x0-prediction as
    ε = (z_t − √ᾱ x̂0)/√(1−ᾱ) (Salimans & Ho 2022, App. D; diffusers ``DDPMScheduler.step``)."""

    def __init__(self, unet, betas: Tensor | None, prediction_type: str, context: Tensor | None):
        size = unet.config.sample_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        super().__init__(image_size=size, channels=unet.config.in_channels, betas=betas)
        if prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(f"unknown diffusers prediction_type {prediction_type!r}")
        self.unet = unet
        self.prediction_type = prediction_type
        self.register_buffer("context", context, persistent=False)

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        self.check_input(x_t)
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(x_t.shape[0])
        if self.context is None:
            out = self.unet(x_t, t).sample
        else:
            ctx = self.context.to(x_t.dtype).expand(x_t.shape[0], -1, -1)
            out = self.unet(x_t, t, encoder_hidden_states=ctx).sample
        out = out[:, : self.channels]
        a = self.alpha_bar(t, x_t)
        if self.prediction_type == "v_prediction":
            return a.sqrt() * out + (1 - a).sqrt() * x_t
        if self.prediction_type == "sample":
            return (x_t - a.sqrt() * out) / (1 - a).sqrt()
        return out


class _DiffusersFirstStage(torch.nn.Module):
    """``encode``/``decode`` of a diffusers ``VQModel`` (latent before quantisation; decode
    quantises with the straight-through estimator, as ``VQModel.decode``) or ``AutoencoderKL``
    (the posterior's mean; deterministic)."""

    def __init__(self, vae) -> None:
        super().__init__()
        self.vae = vae
        self.is_vq = type(vae).__name__ == "VQModel"

    def encode(self, x: Tensor) -> Tensor:
        out = self.vae.encode(x)
        return out.latents if self.is_vq else out.latent_dist.mean

    def decode(self, z: Tensor) -> Tensor:
        return self.vae.decode(z).sample


def _read_embeddings(path: str) -> Tensor:
    from lit_restore.checkpoints import read_state_dict

    sd = read_state_dict(path)
    if len(sd) != 1:
        raise ValueError(
            f"prompt_embeds {path!r} must hold one tensor [1, tokens, dim] (the text encoder's "
            f"output for the prompt), found {len(sd)}: {sorted(sd)[:3]}"
        )
    emb = next(iter(sd.values())).float()
    return emb if emb.dim() == 3 else emb.unsqueeze(0)


def _prompt_embeddings(root: Path, prompt: str) -> Tensor:
    """The pipeline's own tokenizer and text encoder on ``prompt`` (``""``: classifier-free
    guidance's unconditional branch), as diffusers ``StableDiffusionPipeline.encode_prompt``
    computes it (``pipelines/stable_diffusion/pipeline_stable_diffusion.py``, no LoRA scale, no
    ``clip_skip``): the ids padded to ``tokenizer.model_max_length`` and truncated there, an
    attention mask only when the encoder's config sets ``use_attention_mask``, and the encoder's
    last hidden state ``[1, model_max_length, hidden_size]``. The CompVis code PSLD runs Stable
    Diffusion with computes the same (LituRout/PSLD
    ``stable-diffusion/ldm/modules/encoders/modules.py::FrozenCLIPEmbedder.forward``: padded and
    truncated to 77 tokens, ``last_hidden_state``), and its ``stable-diffusion/scripts/inverse.py``
    defaults to ``--prompt ""``.

    The tokenizer and encoder are the classes ``model_index.json`` names (what
    ``DiffusionPipeline.from_pretrained`` loads), ``CLIPTokenizer`` / ``CLIPTextModel`` without
    one. A folder that is missing, unreadable, or does not fit the encoder (a vocabulary of
    another size, ids past it, a length past its position embeddings) is refused naming it.
    """
    transformers = require(
        "transformers",
        "diffusers",
        f"DiffusersLatentPrior: {str(root)!r} holds a text-conditioned UNet; encoding its prompt",
        "Or pass prompt_embeds= (a file with the text encoder's output for the prompt).",
    )
    tok_cls, enc_cls = _text_classes(transformers, root)
    tok_dir, enc_dir = root / "tokenizer", root / "text_encoder"
    fix = (
        "save the pipeline with its tokenizer and text encoder "
        "(StableDiffusionPipeline.save_pretrained), or pass prompt_embeds= (a file with the text "
        "encoder's output for the prompt)"
    )
    for folder in (tok_dir, enc_dir):
        if not folder.is_dir():
            raise FileNotFoundError(
                f"DiffusersLatentPrior: {str(folder)!r} is missing; the text-conditioned UNet "
                f"needs it to encode prompt={prompt!r}: {fix}"
            )
    try:
        tok = tok_cls.from_pretrained(str(tok_dir), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise ValueError(
            f"DiffusersLatentPrior: cannot load the tokenizer in {str(tok_dir)!r} "
            f"({type(err).__name__}: {err}): {fix}"
        ) from err
    enc = enc_cls.from_pretrained(str(enc_dir), local_files_only=True)
    # a folder without vocab.json/merges.txt loads as a 2-token tokenizer that maps every word to
    # <|endoftext|>; another model's maps words to rows the encoder lacks or to the wrong rows
    vocabulary = enc.config.vocab_size
    if len(tok) != vocabulary:
        raise ValueError(
            f"DiffusersLatentPrior: the tokenizer in {str(tok_dir)!r} has {len(tok)} tokens but "
            f"the text encoder in {str(enc_dir)!r} has a vocabulary of {vocabulary}: the two are "
            f"not the same model's; {fix}"
        )
    length = tok.model_max_length
    positions = enc.config.max_position_embeddings
    if length > positions:  # a tokenizer_config.json without model_max_length reads as 1e30
        raise ValueError(
            f"DiffusersLatentPrior: the tokenizer in {str(tok_dir)!r} pads to {length} tokens but "
            f"the text encoder has {positions} positions; set model_max_length: {positions} in "
            f"its tokenizer_config.json, or {fix}"
        )
    inputs = tok(
        [prompt], padding="max_length", max_length=length, truncation=True, return_tensors="pt"
    )
    ids = inputs.input_ids
    if int(ids.max()) >= vocabulary:
        raise ValueError(
            f"DiffusersLatentPrior: the tokenizer in {str(tok_dir)!r} gives token id "
            f"{int(ids.max())} but the text encoder in {str(enc_dir)!r} has a vocabulary of "
            f"{vocabulary}: the two are not the same model's; {fix}"
        )
    mask = inputs.attention_mask if getattr(enc.config, "use_attention_mask", False) else None
    with torch.no_grad():
        return enc(ids, attention_mask=mask)[0].float()


def _text_classes(transformers, root: Path) -> tuple[type, type]:
    """The tokenizer and text-encoder classes ``model_index.json`` names (entries
    ``["transformers", "<class>"]``), ``CLIPTokenizer`` / ``CLIPTextModel`` without one."""
    names = {"tokenizer": "CLIPTokenizer", "text_encoder": "CLIPTextModel"}
    index = root / "model_index.json"
    if index.is_file():
        entries = json.loads(index.read_text())
        for key in names:
            entry = entries.get(key)
            if isinstance(entry, list) and len(entry) == 2 and entry[0] == "transformers":
                names[key] = entry[1]
    classes = []
    for key, name in names.items():
        cls = getattr(transformers, name, None)
        if not isinstance(cls, type):
            raise ValueError(
                f"DiffusersLatentPrior: {str(index)!r} names {key} class {name!r}, which "
                "transformers does not have; a Stable Diffusion pipeline uses CLIPTokenizer and "
                "CLIPTextModel"
            )
        classes.append(cls)
    return classes[0], classes[1]


class DiffusersLatentPrior(LatentDiffusionPrior):
    """A local diffusers latent pipeline (UNet + VQ/KL autoencoder + scheduler) as a latent prior.

    ``path`` is a saved pipeline folder: ``unet/`` (``UNet2DModel``, e.g.
    ``CompVis/ldm-celebahq-256``, or ``UNet2DConditionModel``, e.g. Stable Diffusion),
    ``vqvae/`` (``VQModel``) or ``vae/`` (``AutoencoderKL``), ``scheduler/`` (β, and the
    ``prediction_type``). ``z = scaling_factor · E(x)`` with the autoencoder config's
    ``scaling_factor`` (diffusers ``LDMPipeline`` / ``StableDiffusionPipeline`` divide by it
    before decoding). A text-conditioned UNet runs on one fixed prompt embedding: ``prompt``
    through the pipeline's own ``tokenizer/`` and ``text_encoder/``, exactly as
    ``StableDiffusionPipeline.encode_prompt`` (needs ``transformers``, in the ``diffusers``
    extra; ``""`` = the unconditional branch, what PSLD/ReSample use with Stable Diffusion), or
    ``prompt_embeds`` from a file (one tensor ``[1, tokens, cross_attention_dim]``).
    """

    def __init__(
        self, path: str, prompt: str = "", prompt_embeds: str | None = None, frozen: bool = True
    ) -> None:
        diffusers = _require_diffusers()
        root = Path(path).expanduser()
        vae_dir = next((root / d for d in ("vqvae", "vae") if (root / d).is_dir()), None)
        if not (root / "unet").is_dir() or vae_dir is None:
            raise FileNotFoundError(
                f"DiffusersLatentPrior: {str(root)!r} is not a saved latent pipeline: it needs "
                "unet/ and vqvae/ or vae/ (LDMPipeline/StableDiffusionPipeline.save_pretrained)"
            )
        unet_cfg = diffusers.UNet2DConditionModel.load_config(str(root / "unet"))
        conditional = unet_cfg.get("_class_name") == "UNet2DConditionModel"
        unet_cls = diffusers.UNet2DConditionModel if conditional else diffusers.UNet2DModel
        unet = unet_cls.from_pretrained(str(root / "unet"), local_files_only=True)
        vae_cls = diffusers.VQModel if vae_dir.name == "vqvae" else diffusers.AutoencoderKL
        vae = vae_cls.from_pretrained(str(vae_dir), local_files_only=True)
        betas = DiffusersPrior._betas(diffusers, root, "unet")
        prediction = "epsilon"
        if (root / "scheduler" / "scheduler_config.json").is_file():
            cfg = diffusers.DDPMScheduler.load_config(str(root / "scheduler"))
            prediction = cfg.get("prediction_type", "epsilon")
        context = None
        if conditional:
            context = (
                _read_embeddings(prompt_embeds)
                if prompt_embeds is not None
                else _prompt_embeddings(root, prompt)
            )
            width = unet.config.cross_attention_dim
            if context.shape[-1] != width:  # the UNet's cross-attention reads vectors of this size
                source = f"prompt_embeds {prompt_embeds!r}" if prompt_embeds else "the text encoder"
                raise ValueError(
                    f"DiffusersLatentPrior: {source} gives {context.shape[-1]}-dim token "
                    f"embeddings but the UNet in {str(root / 'unet')!r} cross-attends to "
                    f"{width}-dim ones; use the embeddings of this pipeline's own text encoder"
                )
        super().__init__(
            _DiffusersUNetEps(unet, betas, prediction, context),
            _DiffusersFirstStage(vae),
            scale_factor=vae.config.scaling_factor,
            downscale=2 ** (len(vae.config.block_out_channels) - 1),
        )
        if frozen:
            self.freeze()
