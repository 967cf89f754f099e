"""``MetricSuite``: one configuration of "how results are scored", shared by the evaluation
callbacks and the ``score`` tool.

It builds the metrics named in :mod:`lit_restore.metrics.registry` once (networks, offline
weights) and scores batches of [0, 1] images:

* ``per_image(restored, reference)`` -> ``{metric: [N] tensor}``: full-reference metrics need
  ``reference``; no-reference metrics score ``restored`` alone (``reference=None`` scores only
  those);
* ``image_features(images)`` -> per-image features of the set-level metrics (FID/KID), and
  ``set_level(fake, real)`` -> their values.

Aggregates are always the **mean of the per-image values**
(:func:`lit_restore.utils.tables.aggregate`); set-level metrics come from the features.
PSNR/SSIM honour ``crop_border``/``y_channel``; LPIPS and FID see the full RGB image (as in
ResShift's and DPS's evaluation scripts).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from lit_restore.metrics.registry import (
    FEATURES,
    MetricOptions,
    MetricSpec,
    get_metric,
    needs_weights,
)
from lit_restore.utils.extras import MissingExtraError
from lit_restore.weights import MissingWeightsError


def quantize(x: Tensor) -> Tensor:
    """Round [0,1] images to 8-bit levels (what a written PNG holds), in ``x``'s dtype.

    The level is decided in float32 (as :func:`lit_restore.data.io.save_png` decides it), so the
    quantised image equals the PNG; a float64 ``x`` then holds the level ``k/255`` exactly."""
    levels = (x.float().clamp(0, 1) * 255).round()
    return levels.to(x.dtype) / 255


class MetricSuite(nn.Module):
    """Builds the listed metrics once (offline weights) and scores batches per image.

    Args:
        metrics: registry names (:data:`lit_restore.metrics.registry.METRICS`): per-image ones
            (``psnr``, ``ssim``, ``lpips`` — backbone ``lpips_net`` —, ``lpips_alex``,
            ``lpips_vgg``, any registered no-reference metric: ``niqe``, ``musiq``, ``maniqa``,
            ``clipiqa`` or an implementation-tagged name such as ``clipiqa[pyiqa:clipiqa+]``) and
            set-level ones (``fid``, ``kid``).
        fid, kid: add the set-level ``fid`` / ``kid`` (the same as listing them).
        perceptual: ``False`` drops every metric that needs a weight file (LPIPS/FID/KID and the
            no-reference networks), so the suite runs with no weight file at all; ``"auto"`` keeps
            those whose weights (and optional package) are present and leaves out the others (:attr:`unavailable`,
            :meth:`unavailable_message`); ``True`` requires them (a missing file is an error).
        crop_border, y_channel: BasicSR conventions for PSNR/SSIM.
        quantize: round to 8 bits first, so in-run scores equal scores of the written PNGs.
        lpips_weights / inception_weights: explicit weight files (else the torch hub cache).
        lpips_module: injected ``(x, ref) -> [N]`` network (tests: random backbone).
        fid_features: injected ``images -> [N,D]`` module (tests: random features).
        niqe_weights: NIQE pristine-model ``.mat`` (else the cache: ``niqe-pristine``).
        clip_model: Hugging Face CLIP folder for ``clipiqa[torchmetrics:...]`` (else the cache).
    """

    def __init__(
        self,
        metrics: Sequence[str] = ("psnr", "ssim", "lpips"),
        fid: bool = False,
        kid: bool = False,
        perceptual: bool | str = True,
        crop_border: int = 0,
        y_channel: bool = False,
        quantize: bool = True,
        lpips_net: str = "alex",
        lpips_weights: str | os.PathLike | None = None,
        inception_weights: str | os.PathLike | None = None,
        lpips_module: Callable[[Tensor, Tensor], Tensor] | None = None,
        fid_features: nn.Module | None = None,
        niqe_weights: str | os.PathLike | None = None,
        clip_model: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        options = MetricOptions(
            crop_border=crop_border, y_channel=y_channel, lpips_net=lpips_net,
            lpips_weights=lpips_weights, inception_weights=inception_weights,
            lpips_module=lpips_module, fid_features=fid_features, niqe_weights=niqe_weights,
            clip_model=clip_model,
        )  # fmt: skip
        names = [*metrics, *(["fid"] if fid else []), *(["kid"] if kid else [])]
        if perceptual not in (True, False, "auto"):
            raise ValueError(f"perceptual must be true, false or 'auto', got {perceptual!r}")
        specs = list({s.name: s for s in map(get_metric, names)}.values())
        if perceptual is False:
            specs = [s for s in specs if not needs_weights(s, options)]
        self.options = options
        self.crop_border, self.y_channel, self.quantize = crop_border, y_channel, quantize
        #: metrics left out by ``perceptual="auto"`` -> the weight files they lack
        self.unavailable: dict[str, tuple[str, ...]] = {}
        #: metrics left out by ``perceptual="auto"`` for a missing optional package -> why
        self.missing_extras: dict[str, str] = {}
        self.scorers = nn.ModuleDict()  # network scorers, so that .to(device) moves them
        self._functions: dict[str, Callable] = {}
        for s in specs:
            try:
                scorer = s.build(options)
            except MissingWeightsError:
                if perceptual != "auto":
                    raise
                self.unavailable[s.name] = s.weights(options)
                continue
            except MissingExtraError as err:
                if perceptual != "auto":
                    raise
                self.missing_extras[s.name] = str(err)
                continue
            if isinstance(scorer, nn.Module):
                self.scorers[s.name] = scorer
            else:
                self._functions[s.name] = scorer
        self.features: nn.Module | None = None
        extractors = {s.features for s in specs if s.features is not None}
        if len(extractors) > 1:  # one feature file per image holds one extractor's features
            raise ValueError(f"set-level metrics use different features {sorted(extractors)}")
        if extractors:
            feature_spec = FEATURES[extractors.pop()]
            try:
                self.features = feature_spec.build(options)
                self.features.eval().requires_grad_(False)
            except MissingWeightsError:
                if perceptual != "auto":
                    raise
                for s in specs:
                    if s.features is not None:
                        self.unavailable[s.name] = feature_spec.weights(options)
                        self._functions.pop(s.name, None)
        specs = [
            s for s in specs if s.name not in self.unavailable and s.name not in self.missing_extras
        ]
        self.specs: dict[str, MetricSpec] = {s.name: s for s in specs}
        #: per-image metrics, in the order given (CSV columns)
        self.metrics: list[str] = [s.name for s in specs if s.kind != "set-level"]

    def unavailable_message(self) -> str | None:
        """One line naming the metrics ``perceptual="auto"`` left out and the command that
        fetches their weights (``None`` when every metric is on)."""
        parts = []
        if self.unavailable:
            files = list(dict.fromkeys(f for fs in self.unavailable.values() for f in fs))
            parts.append(
                f"{', '.join(self.unavailable)} not computed: weight file(s) {', '.join(files)} "
                f"missing; fetch them once with `python -m lit_restore.weights {' '.join(files)}`"
            )
        for name, why in self.missing_extras.items():
            parts.append(f"{name} not computed: {why.rstrip('.')}")
        if not parts:
            return None
        return "; ".join(parts) + " (or set perceptual: false to silence this)"

    @property
    def set_metrics(self) -> list[str]:
        """Columns of the set-level metrics (``fid``, ``kid``, ``kid_std``)."""
        return [c for s in self.specs.values() if s.kind == "set-level" for c in s.columns]

    def needs_reference(self, metric: str) -> bool:
        return self.specs[metric].needs_reference

    def _scorer(self, name: str) -> Callable:
        return self.scorers[name] if name in self.scorers else self._functions[name]

    def _prep(self, x: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        x = x.to(dtype).clamp(0, 1)
        return quantize(x) if self.quantize else x

    @torch.no_grad()
    def per_image(self, restored: Tensor, reference: Tensor | None = None) -> dict[str, Tensor]:
        """Per-image values (``float64 [N]``) for [N,C,H,W] images in [0,1].

        Each metric sees the images in its registry ``dtype``: PSNR/SSIM in float64 (a function
        of the two images alone, whatever the batch), the LPIPS networks in float32. Without a
        ``reference`` only the no-reference metrics are scored."""
        prepared: dict[tuple[str, torch.dtype], Tensor] = {}

        def prep(which: str, x: Tensor, dtype: torch.dtype) -> Tensor:
            if (which, dtype) not in prepared:
                prepared[which, dtype] = self._prep(x, dtype)
            return prepared[which, dtype]

        out: dict[str, Tensor] = {}
        for m in self.metrics:
            spec = self.specs[m]
            x = prep("restored", restored, spec.dtype)
            if spec.kind == "no-reference":
                value = self._scorer(m)(x)
            elif reference is None:
                continue
            else:
                value = self._scorer(m)(x, prep("reference", reference, spec.dtype))
            out[m] = value.reshape(-1).double()
        return {k: v.detach().cpu() for k, v in out.items()}

    @torch.no_grad()
    def image_features(self, images: Tensor) -> Tensor:
        """[N,D] float32 features of [0,1] images (FID/KID)."""
        if self.features is None:
            raise RuntimeError("set-level features requested but no set-level metric is on")
        return self.features(self._prep(images)).float().reshape(images.shape[0], -1).cpu()

    def set_level(self, fake: Tensor, real: Tensor) -> dict[str, float]:
        """Set-level metrics (FID/KID) between restored (fake) and reference (real) features;
        empty with fewer than 2 images."""
        out: dict[str, float] = {}
        if fake.shape[0] < 2:
            return out
        for s in self.specs.values():
            if s.kind == "set-level":
                out.update(self._functions[s.name](fake, real))
        return out
