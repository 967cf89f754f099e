"""CLIP-IQA through torchmetrics — the permissively licensed path (Apache-2.0 torchmetrics, MIT
OpenAI CLIP weights on the Hugging Face Hub).

CLIP-IQA (Wang, Chan & Loy, "Exploring CLIP for Assessing the Look and Feel of Images", AAAI
2023) scores an image by its cosine similarity ``s = 100 cos(f_img, f_text)`` to an antonym prompt
pair, ``P(good) = softmax(s_good, s_bad)[0]``. torchmetrics
(``torchmetrics/functional/multimodal/clip_iqa.py``) computes it with the pair
"Good photo." / "Bad photo." on a Hugging Face ``CLIPModel``; the paper and IQA-PyTorch use
OpenAI's RN50 and other prompts (``clipiqa[pyiqa:clipiqa]``), so the two give different numbers:
the column says which one it is.

The model folder is resolved offline (:func:`lit_restore.weights.resolve`: an explicit folder, or
the registered ``clip-vit-base-patch16`` in the Hugging Face cache); torchmetrics receives it as a
loader, so it never contacts the Hub. ``transformers`` is the optional extra ``clip``.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from lit_restore.utils.extras import require
from lit_restore.weights import resolve


class _ProjectedFeatures(nn.Module):
    """A ``CLIPModel`` whose ``get_image_features`` / ``get_text_features`` return the projected
    embeddings as tensors, as torchmetrics 1.9 expects: transformers 5 returns a
    ``BaseModelOutputWithPooling`` holding them in ``pooler_output`` (4.x returned the tensor)."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    @staticmethod
    def _tensor(out: object) -> Tensor:
        return out if isinstance(out, Tensor) else out.pooler_output  # type: ignore[attr-defined]

    def get_image_features(self, *args, **kwargs) -> Tensor:
        return self._tensor(self.clip.get_image_features(*args, **kwargs))

    def get_text_features(self, *args, **kwargs) -> Tensor:
        return self._tensor(self.clip.get_text_features(*args, **kwargs))


class CLIPIQA(nn.Module):
    """Per-image CLIP-IQA of [0, 1] images: ``forward(x [N,3,H,W]) -> [N]``.

    Args:
        model: a local Hugging Face CLIP folder (``config.json``, weights, tokenizer and
            ``preprocessor_config.json``, as ``save_pretrained`` writes them); default: the
            registered ``clip-vit-base-patch16`` (openai/clip-vit-base-patch16) from the cache.
    """

    def __init__(self, model: str | os.PathLike | None = None) -> None:
        super().__init__()
        folder = resolve(model or "clip-vit-base-patch16", option="clip_model",
                         expect="clip-vit-base-patch16")  # fmt: skip
        transformers = require("transformers", "clip", "clipiqa[torchmetrics] (CLIP-IQA)")
        from torchmetrics.multimodal import CLIPImageQualityAssessment

        def load() -> tuple[nn.Module, object]:
            clip = transformers.CLIPModel.from_pretrained(str(folder), local_files_only=True)
            processor = transformers.CLIPProcessor.from_pretrained(
                str(folder), local_files_only=True
            )
            return _ProjectedFeatures(clip.eval()), processor

        # the Hugging Face processor rescales by 1/255 itself, so torchmetrics must hand it 0-255
        # values: data_range 1/255 turns our [0, 1] images into them (images / data_range)
        self.metric = CLIPImageQualityAssessment(model_name_or_path=load, data_range=1 / 255)
        self.metric.requires_grad_(False)

    def train(self, mode: bool = True) -> CLIPIQA:  # a metric never leaves eval mode
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        self.metric.reset()
        self.metric.update(x.float())
        return self.metric.compute().reshape(-1).double()
