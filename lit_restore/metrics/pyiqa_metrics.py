"""No-reference metrics computed by IQA-PyTorch (chaofengc/IQA-PyTorch, PyPI ``pyiqa``), the
implementation behind the CLIPIQA / MUSIQ / MANIQA / NIQE numbers of ResShift, SinSR and InvSR.

``pyiqa`` is an **optional extra** (``pip install 'lit_restore[pyiqa]'``): its licence is the
PolyForm Noncommercial 1.0.0 licence, so it is never a core dependency and is imported only when
one of these metrics is built. Its networks are the published ones:

* ``musiq`` — MUSIQ (Ke et al., ICCV 2021), multi-scale ViT, KonIQ-10k head
  (``pyiqa/archs/musiq_arch.py``);
* ``maniqa-pipal`` — MANIQA (Yang et al., CVPRW 2022, NTIRE 2022 NR-IQA winner), ViT-B/8 +
  transposed attention + Swin blocks, trained on PIPAL (``pyiqa/archs/maniqa_arch.py``);
* ``clipiqa`` / ``clipiqa+`` — CLIP-IQA (Wang, Chan & Loy, AAAI 2023): the softmax over the
  cosine similarities of the image to antonym prompts, ``P(good) = e^{s_good}/(e^{s_good} +
  e^{s_bad})``, ``s = 100 cos(f_img, f_text)``, on OpenAI CLIP RN50; pyiqa averages five prompt
  pairs, ``clipiqa+`` uses the paper's learned prompts (``pyiqa/archs/clipiqa_arch.py``);
* ``niqe`` — its NIQE (:mod:`lit_restore.metrics.niqe` is our own, held to it).

Weights are resolved offline by :mod:`lit_restore.weights` (``pyiqa-musiq-koniq``,
``pyiqa-maniqa-pipal``, ``pyiqa-clipiqa+``, ``clip-rn50``, ``niqe-pristine``) in IQA-PyTorch's
own caches (``$TORCH_HOME/hub/pyiqa``, ``hub/clip``), so pyiqa finds them and downloads nothing;
files that pyiqa opens by path are passed as ``pretrained_model_path``. MANIQA's checkpoint
holds its whole network (loaded strictly), so the ImageNet ViT-B/8 that pyiqa would otherwise
download from the Hub first is built without pretrained weights. Hugging Face access is switched
off (``HF_HUB_OFFLINE``) while a metric is built: a file that is still missing is a
:class:`~lit_restore.weights.MissingWeightsError`, not a download.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lit_restore.utils.extras import require
from lit_restore.weights import resolve

_LICENCE = (
    "IQA-PyTorch is licensed PolyForm Noncommercial 1.0.0; for a permissive CLIP-IQA use "
    "clipiqa[torchmetrics:clip-vit-base-patch16], for NIQE niqe[lit_restore]."
)


@dataclass(frozen=True)
class PyiqaModel:
    """One IQA-PyTorch metric: its ``create_metric`` name, the weight files it needs (registry
    names) and the one it opens by path (``pretrained_model_path``), if any."""

    name: str
    weights: tuple[str, ...]
    by_path: str | None = None


#: the IQA-PyTorch metrics lit_restore registers (:mod:`lit_restore.metrics.registry`)
PYIQA_MODELS: dict[str, PyiqaModel] = {
    m.name: m
    for m in (
        PyiqaModel("musiq", ("pyiqa-musiq-koniq",), by_path="pyiqa-musiq-koniq"),
        PyiqaModel("maniqa-pipal", ("pyiqa-maniqa-pipal",), by_path="pyiqa-maniqa-pipal"),
        PyiqaModel("clipiqa", ("clip-rn50",)),
        PyiqaModel("clipiqa+", ("clip-rn50", "pyiqa-clipiqa+")),
        PyiqaModel("niqe", ("niqe-pristine",), by_path="niqe-pristine"),
    )
}


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """No Hugging Face Hub access while pyiqa builds a metric (restored afterwards)."""
    saved = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved


@contextlib.contextmanager
def _no_backbone_download() -> Iterator[None]:
    """``timm.create_model(..., pretrained=True)`` builds without pretrained weights: for a
    checkpoint that holds the whole network (MANIQA's), loaded strictly right after."""
    import timm

    create = timm.create_model

    def create_untrained(*args, **kwargs):
        kwargs["pretrained"] = False
        return create(*args, **kwargs)

    timm.create_model = create_untrained
    try:
        yield
    finally:
        timm.create_model = create


class PyiqaMetric(nn.Module):
    """Per-image scores of an IQA-PyTorch no-reference metric: ``forward(x [N,3,H,W] in [0, 1])
    -> [N]``.

    Args:
        name: a key of :data:`PYIQA_MODELS` (``musiq``, ``maniqa-pipal``, ``clipiqa``,
            ``clipiqa+``, ``niqe``).
        weights: explicit file for the weight pyiqa opens by path (else the cache).
    """

    def __init__(self, name: str, weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        model = PYIQA_MODELS[name]
        # every file first (a missing one is one error, before pyiqa is even imported); the one
        # pyiqa opens by path may be given explicitly instead
        explicit = model.by_path if weights else None
        paths = {w: resolve(w, expect=w) for w in model.weights if w != explicit}
        kwargs = {}
        if model.by_path is not None:
            kwargs["pretrained_model_path"] = str(
                resolve(weights, option=f"{name}_weights", expect=model.by_path)
                if weights
                else paths[model.by_path]
            )
        pyiqa = require(
            "pyiqa", "pyiqa", f"the no-reference metric {name} (IQA-PyTorch)", note=_LICENCE
        )
        guard = _no_backbone_download() if name.startswith("maniqa") else contextlib.nullcontext()
        with _offline(), guard:
            self.metric = pyiqa.create_metric(name, as_loss=False, device="cpu", **kwargs)
        self.metric.eval().requires_grad_(False)
        self.name = name

    def train(self, mode: bool = True) -> PyiqaMetric:  # a metric never leaves eval mode
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        self.metric.to(x.device)
        return self.metric(x.float()).reshape(x.shape[0], -1)[:, 0].double()
