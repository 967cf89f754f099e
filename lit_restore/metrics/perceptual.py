"""LPIPS (Zhang et al. 2018) with offline backbone weights.

The network is torchmetrics' LPIPS (``torchmetrics.functional.image.lpips._LPIPS``): the
torchvision backbone (AlexNet or VGG16 ``features``) sliced at its ReLUs, unit-normalised
features, squared differences weighted by the linear heads of the LPIPS v0.1 release (bundled
in the torchmetrics wheel) and spatially averaged:
``d(x, y) = Σ_l mean_hw ‖w_l ⊙ (f̂_l(x) − f̂_l(y))‖²``.

torchmetrics would fetch the backbone with ``weights=DEFAULT`` (a download). Here the backbone
is built with ``weights=None`` and its ``features.*`` tensors are copied from the file that
:func:`lit_restore.weights.resolve` finds, so nothing is downloaded. :func:`backbone_state` and
:func:`copy_backbone` do the same for the ``lpips`` package's network (ResShift's LPIPS-VGG
loss), whose backbone has the same ``slice<k>.<i>`` layout.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from lit_restore.checkpoints import read_state_dict
from lit_restore.weights import resolve

_BACKBONES = {"alex": "alexnet", "vgg": "vgg16"}
_MIN_SIZE = {"alex": 31, "vgg": 16}  # smaller inputs vanish in the backbones' pooling layers


def backbone_state(
    arch: str, weights: str | os.PathLike | None = None, option: str = "lpips_weights"
) -> tuple[Path, dict[str, Tensor]]:
    """The torchvision ``arch`` (``alexnet``/``vgg16``) weight file, resolved offline, and its
    tensors."""
    path = resolve(weights or arch, option=option, expect=arch)
    return path, read_state_dict(path)


def copy_backbone(backbone: nn.Module, arch: str, state: dict[str, Tensor], path: Path) -> None:
    """Copy torchvision ``features.<i>.*`` tensors into an LPIPS backbone's ``slice<k>.<i>.*``
    modules (torchmetrics' ``_LPIPS.net`` and the lpips package's ``LPIPS.net`` alike)."""
    loaded = 0
    for slice_name, block in backbone.named_children():
        for name, param in block.named_parameters():
            key = f"features.{name}"
            if key not in state or state[key].shape != param.shape:
                raise ValueError(
                    f"{path} is not a torchvision {arch} state dict "
                    f"(missing or mis-shaped {key} for LPIPS {slice_name})."
                )
            with torch.no_grad():
                param.copy_(state[key])
            loaded += 1
    if loaded == 0:
        raise ValueError(f"no backbone tensors loaded from {path}")


class LPIPS(nn.Module):
    """Per-image LPIPS of [0,1] images: ``forward(x, ref) -> [N]``.

    Args:
        net: ``"alex"`` (the papers' default) or ``"vgg"``.
        weights: explicit backbone file (``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth``);
            default: the torch hub cache (see :mod:`lit_restore.weights`).
        random_backbone: keep the randomly initialised backbone (tests only: proves the plumbing
            without any download; the numbers are then not LPIPS).
    """

    def __init__(
        self,
        net: str = "alex",
        weights: str | os.PathLike | None = None,
        random_backbone: bool = False,
    ) -> None:
        super().__init__()
        if net not in _BACKBONES:
            raise ValueError(f"lpips_net must be one of {sorted(_BACKBONES)}, got {net!r}")
        from torchmetrics.functional.image.lpips import _LPIPS

        self.net_name = net
        # resolve and read before building anything
        found = None if random_backbone else backbone_state(_BACKBONES[net], weights)
        # pnet_rand=True -> torchvision backbone with weights=None (no download);
        # pretrained=True -> the bundled LPIPS linear heads are loaded.
        self.model = _LPIPS(pretrained=True, net=net, pnet_rand=True, use_dropout=True)
        if found is not None:
            copy_backbone(self.model.net, _BACKBONES[net], found[1], found[0])
        self.model.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> LPIPS:  # a metric never leaves eval mode
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: Tensor, ref: Tensor) -> Tensor:
        if x.shape != ref.shape:
            raise ValueError(f"restored {tuple(x.shape)} and reference {tuple(ref.shape)} differ")
        if min(x.shape[-2:]) < _MIN_SIZE[self.net_name]:
            raise ValueError(
                f"LPIPS-{self.net_name} needs images of at least {_MIN_SIZE[self.net_name]} px, got "
                f"{tuple(x.shape[-2:])}; drop lpips from `metrics` for such small images."
            )
        if x.shape[1] == 1:  # grayscale: the backbone wants RGB
            x, ref = x.expand(-1, 3, -1, -1), ref.expand(-1, 3, -1, -1)
        return self.model(x.float(), ref.float(), normalize=True).flatten()
