"""A local 🤗 diffusers ``UNet2DModel`` as a frozen ε-prior.

``path`` is a pipeline directory (``unet/`` + ``scheduler/``, e.g. ``google/ddpm-celebahq-256``
saved locally) or a bare UNet directory (``config.json`` + weights) with an optional
``scheduler_config.json`` beside it. Nothing is downloaded: ``local_files_only=True``. The betas
come from the scheduler config (:class:`diffusers.DDPMScheduler` rebuilds them from
``beta_schedule``/``beta_start``/``beta_end``/``trained_betas``); without a scheduler config
the linear 1e-4→0.02 schedule is assumed (and said so in a warning).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor

from lit_restore.priors.base import DiffusionPrior


def _require_diffusers():
    try:
        import diffusers
    except ImportError as err:
        raise ImportError(
            "DiffusersPrior needs the diffusers package: pip install 'lit_restore[diffusers]'"
        ) from err
    return diffusers


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
