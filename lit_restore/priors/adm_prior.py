"""Frozen priors around the two published UNet families: ADM (guided-diffusion) and the DDIM
"simple" UNet. Both predict ε; ADM checkpoints with ``learn_sigma`` output ``[ε, v]``:
:meth:`ADMPrior.eps` returns ε and :meth:`ADMPrior.eps_and_variance` both, for the samplers that
use the learned variance (DPS/SaFaRI with ``variance="learned_range"``, as official DPS
``configs/diffusion_config.yaml``); DDRM/DDNM/DDPG use ε only.

``checkpoint`` is a file path or a registered name (``adm-imagenet256-uncond`` …), resolved by
:func:`lit_restore.weights.resolve` (explicit path → cache dir → a clear error saying what to
download). Weights are read safely and loaded strictly (:mod:`lit_restore.checkpoints`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lit_restore.checkpoints import (
    CheckpointError,
    extract_state_dict,
    load_state_dict_strict,
    read_checkpoint,
)
from lit_restore.nn import ADMUNet, DDIMUNet
from lit_restore.priors.base import DiffusionPrior
from lit_restore.weights import resolve


def _source(path: Path) -> str:
    return f"checkpoint {str(path)!r}"


class ADMPrior(DiffusionPrior):
    """A guided-diffusion ADM UNet as a frozen ε-prior.

    The network flags are guided-diffusion's public names (see :class:`ADMUNet`); the defaults are
    the ImageNet 256 unconditional model (``256x256_diffusion_uncond.pt``). ``dtype`` casts the
    torso (``bfloat16``/``float16`` for speed); inputs and outputs stay float32.

    Args:
        checkpoint: weights file or registry name; ``None`` leaves random weights (tests, benches).
        class_label: for ``class_cond`` models, the class every call is conditioned on.
        beta_schedule, num_timesteps: the training schedule (linear 1e-4→0.02, 1000 for every
            published ADM prior used here).
        betas: explicit β (overrides ``beta_schedule``; e.g. an LDM's ``scaled_linear`` table).
        frozen: call :meth:`freeze` (eval, no parameter gradients).
    """

    def __init__(
        self,
        image_size: int | None = 256,
        num_channels: int = 256,
        num_res_blocks: int = 2,
        channel_mult: str | Sequence[float] = "",
        attention_resolutions: str | Sequence[int] = "32,16,8",
        num_heads: int = 4,
        num_head_channels: int = 64,
        num_heads_upsample: int = -1,
        learn_sigma: bool = True,
        use_scale_shift_norm: bool = True,
        resblock_updown: bool = True,
        use_new_attention_order: bool = False,
        class_cond: bool = False,
        num_classes: int = 1000,
        dropout: float = 0.0,
        use_checkpoint: bool = False,
        use_fp16: bool = False,
        dtype: str | None = None,
        channels: int = 3,
        checkpoint: str | None = None,
        class_label: int | None = None,
        beta_schedule: str = "linear",
        num_timesteps: int = 1000,
        frozen: bool = True,
        betas: Tensor | None = None,
    ) -> None:
        super().__init__(
            image_size=image_size,
            channels=channels,
            beta_schedule=beta_schedule,
            num_timesteps=num_timesteps,
            betas=betas,
        )
        self.net = ADMUNet(
            image_size=image_size,
            num_channels=num_channels,
            num_res_blocks=num_res_blocks,
            channel_mult=channel_mult,
            attention_resolutions=attention_resolutions,
            num_heads=num_heads,
            num_head_channels=num_head_channels,
            num_heads_upsample=num_heads_upsample,
            learn_sigma=learn_sigma,
            use_scale_shift_norm=use_scale_shift_norm,
            resblock_updown=resblock_updown,
            use_new_attention_order=use_new_attention_order,
            class_cond=class_cond,
            num_classes=num_classes,
            dropout=dropout,
            use_checkpoint=use_checkpoint,
            in_channels=channels,
            out_channels=channels,
        )
        if class_cond and class_label is None:
            raise ValueError(
                "class_cond=True needs class_label (the class to condition every step on)"
            )
        self.class_label = class_label
        if checkpoint is not None:
            path = resolve(checkpoint, option="checkpoint")
            obj = read_checkpoint(path)
            prefix = "net." if isinstance(obj, Mapping) and "hyper_parameters" in obj else None
            source = _source(path)
            load_state_dict_strict(self.net, extract_state_dict(obj, prefix, source=source), source)
        self.net.set_dtype(torch.float16 if use_fp16 and dtype is None else dtype)
        if frozen:
            self.freeze()

    def set_torso_dtype(self, dtype: torch.dtype) -> bool:
        """The ADM torso in ``dtype`` (:meth:`ADMUNet.set_dtype`: guided-diffusion's
        ``convert_to_fp16`` split, GroupNorm/time MLP/output head stay float32)."""
        self.net.set_dtype(dtype)
        return True

    @property
    def learned_variance(self) -> bool:  # type: ignore[override]
        return bool(self.net.learn_sigma)

    def eps_and_variance(self, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(ε̂, v)``: output channels ``0:C`` and, with ``learn_sigma``, ``C:2C``."""
        self.check_input(x_t)
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(x_t.shape[0])
        y = None
        if self.class_label is not None:
            y = torch.full((x_t.shape[0],), self.class_label, device=x_t.device, dtype=torch.long)
        out = self.net(x_t, t, y)
        c = self.channels
        v = out[:, c : 2 * c].to(x_t.dtype) if self.net.learn_sigma else None
        return out[:, :c].to(x_t.dtype), v

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.eps_and_variance(x_t, t)[0]

    @classmethod
    def from_checkpoint(cls, path: str | Path, **overrides: Any) -> ADMPrior:
        """Build from a checkpoint of :class:`~lit_restore.modules.diffusion_prior.DiffusionPriorModule`
        (its flags are in the checkpoint's ``hyper_parameters``) or from a plain state dict plus
        the network flags given as ``overrides``."""
        path = resolve(path, option="checkpoint")
        return cls.from_object(read_checkpoint(path), _source(path), **overrides)

    @classmethod
    def from_object(cls, obj: Any, source: str = "checkpoint", **overrides: Any) -> ADMPrior:
        """:meth:`from_checkpoint` for an already read checkpoint object (read big files once)."""
        flags: dict[str, Any] = {}
        lightning = isinstance(obj, Mapping) and isinstance(obj.get("hyper_parameters"), Mapping)
        if lightning:
            hp = obj["hyper_parameters"]
            flags.update(hp.get("network") or {})
            for key in ("channels", "beta_schedule", "num_timesteps"):
                if key in hp:
                    flags[key] = hp[key]
        flags.update(overrides)
        flags.pop("use_checkpoint", None)
        flags.pop("checkpoint", None)
        try:
            prior = cls(**flags)
        except TypeError as err:
            raise CheckpointError(f"bad ADM flags for {source}: {err}") from err
        sd = extract_state_dict(obj, "net." if lightning else None, source=source)
        load_state_dict_strict(prior.net, sd, source)
        prior.net.set_dtype(prior.net.torso_dtype)
        return prior


class DDIMPrior(DiffusionPrior):
    """The DDPM/DDIM "simple" UNet (SDEdit's ``celeba_hq.ckpt``) as a frozen ε-prior.

    Linear β 1e-4→0.02 over 1000 steps (DDRM/DDNM ``configs/celeba_hq.yml``). Flags keep the
    public config names (``ch``, ``ch_mult``, ``attn_resolutions`` …); defaults are CelebA-HQ 256.
    """

    def __init__(
        self,
        image_size: int = 256,
        channels: int = 3,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4, 4),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.0,
        resamp_with_conv: bool = True,
        checkpoint: str | None = None,
        beta_schedule: str = "linear",
        num_timesteps: int = 1000,
        frozen: bool = True,
    ) -> None:
        super().__init__(
            image_size=image_size,
            channels=channels,
            beta_schedule=beta_schedule,
            num_timesteps=num_timesteps,
        )
        self.net = DDIMUNet(
            in_channels=channels,
            out_ch=channels,
            ch=ch,
            ch_mult=ch_mult,
            num_res_blocks=num_res_blocks,
            attn_resolutions=attn_resolutions,
            dropout=dropout,
            resamp_with_conv=resamp_with_conv,
            resolution=image_size,
        )
        if checkpoint is not None:
            path = resolve(checkpoint, option="checkpoint")
            source = _source(path)
            sd = extract_state_dict(read_checkpoint(path), source=source)
            load_state_dict_strict(self.net, sd, source)
        if frozen:
            self.freeze()

    @classmethod
    def from_object(cls, obj: Any, source: str = "checkpoint", **flags: Any) -> DDIMPrior:
        """Build with ``flags`` and load an already read checkpoint object strictly, frozen."""
        try:
            prior = cls(**flags, frozen=False)
        except TypeError as err:
            raise CheckpointError(f"bad DDIM flags for {source}: {err}") from err
        load_state_dict_strict(prior.net, extract_state_dict(obj, source=source), source)
        return prior.freeze()

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        self.check_input(x_t)
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(x_t.shape[0])
        return self.net(x_t, t.float())
