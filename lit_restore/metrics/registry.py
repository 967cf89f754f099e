"""The metric registry: every metric lit_restore can score, one entry each.

An entry (:class:`MetricSpec`) says what a metric needs and how to build it:

* ``kind``: ``"full-reference"`` (restored vs reference, per image: PSNR, SSIM, LPIPS),
  ``"no-reference"`` (the restored image alone, per image — real-world inputs without a
  reference still get these) or ``"set-level"`` (a distance between the restored set and the
  reference set, from per-image feature vectors: FID, KID);
* ``higher_is_better`` (for tables and plots);
* ``weights``: the pretrained weight files it needs (keys of the weight resolver), so that
  ``perceptual: false`` can drop every metric that needs a download;
* ``build(options) -> scorer``: per-image metrics give ``scorer(x, ref) -> [N]`` (full-reference)
  or ``scorer(x) -> [N]`` (no-reference) for images in [0, 1] of dtype ``dtype``; set-level
  metrics give ``scorer(fake, real) -> {column: value}`` on ``[N, D]`` features computed by the
  extractor named in ``features`` (one extractor, built once, serves every metric that names it).

**Implementations.** No-reference metrics disagree between implementations (ResShift issue #45:
the same images score differently in IQA-PyTorch and elsewhere), so their registry name says
which one computed the number — ``niqe[lit_restore]``, ``musiq[pyiqa:musiq]``,
``clipiqa[pyiqa:clipiqa+]``, ``clipiqa[torchmetrics:clip-vit-base-patch16]`` — and that name is
the CSV column, the summary key and the logged tag. The short names users list (``niqe``,
``musiq``, ``maniqa``, ``clipiqa``) are :data:`ALIASES` of the implementation that papers report
(IQA-PyTorch), or of our own where it reproduces it (NIQE).

A new metric is one :func:`register` call; :class:`lit_restore.metrics.scorer.MetricSuite`
(used by the evaluation callbacks and the ``score`` tool) then scores it wherever it is listed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lit_restore.metrics.divergence import clipped_fraction
from lit_restore.metrics.fid import InceptionFeatures, frechet_distance, kernel_inception_distance
from lit_restore.metrics.fidelity import psnr, ssim
from lit_restore.metrics.niqe import NIQE
from lit_restore.metrics.perceptual import LPIPS
from lit_restore.metrics.pyiqa_metrics import PYIQA_MODELS, PyiqaMetric

MetricKind = Literal["full-reference", "no-reference", "set-level"]
KINDS: tuple[str, ...] = ("full-reference", "no-reference", "set-level")


@dataclass(frozen=True)
class MetricOptions:
    """Options shared by the metric factories (the scorer's and the callback's arguments).

    Attributes:
        crop_border, y_channel: BasicSR conventions for PSNR/SSIM.
        lpips_net: backbone of the metric named ``lpips`` (``alex`` or ``vgg``).
        lpips_weights, inception_weights: explicit weight files (else the resolver's cache).
        lpips_module: an injected ``(x, ref) -> [N]`` network used for every LPIPS entry (tests).
        fid_features: an injected ``images -> [N, D]`` module used as the Inception features.
        niqe_weights: explicit NIQE pristine-model ``.mat`` file (else the cache).
        clip_model: local folder (or Hub repo id, resolved offline) of the Hugging Face CLIP
            model of ``clipiqa[torchmetrics:...]`` (else the registered one).
    """

    crop_border: int = 0
    y_channel: bool = False
    lpips_net: str = "alex"
    lpips_weights: str | os.PathLike | None = None
    inception_weights: str | os.PathLike | None = None
    lpips_module: Callable[[Tensor, Tensor], Tensor] | None = None
    fid_features: nn.Module | None = None
    niqe_weights: str | os.PathLike | None = None
    clip_model: str | os.PathLike | None = None


@dataclass(frozen=True)
class MetricSpec:
    """One registry entry (see the module docstring)."""

    name: str
    kind: MetricKind
    higher_is_better: bool
    build: Callable[[MetricOptions], Callable[..., Any]]
    weights: Callable[[MetricOptions], tuple[str, ...]] = field(default=lambda o: ())
    dtype: torch.dtype = torch.float64
    features: str | None = None
    columns: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"metric {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}"
            )
        if (self.kind == "set-level") != (self.features is not None):
            raise ValueError(f"metric {self.name!r}: set-level metrics (only) name a `features`")
        if not self.columns:
            object.__setattr__(self, "columns", (self.name,))

    @property
    def needs_reference(self) -> bool:
        return self.kind != "no-reference"


@dataclass(frozen=True)
class FeatureSpec:
    """A per-image feature extractor shared by set-level metrics: ``build(options) -> module``
    mapping [N, C, H, W] images in [0, 1] to [N, D] features."""

    name: str
    build: Callable[[MetricOptions], nn.Module]
    weights: Callable[[MetricOptions], tuple[str, ...]]


#: name -> entry. Filled by :func:`register` (below for the built-in metrics).
METRICS: dict[str, MetricSpec] = {}
#: feature-extractor name -> entry.
FEATURES: dict[str, FeatureSpec] = {}
#: short name -> registered name (the implementation papers report; see the module docstring)
ALIASES: dict[str, str] = {}


def register(spec: MetricSpec | FeatureSpec) -> MetricSpec | FeatureSpec:
    """Add a metric (or a feature extractor) to the registry; names are unique."""
    table: dict = FEATURES if isinstance(spec, FeatureSpec) else METRICS
    if spec.name in table:
        raise ValueError(f"{spec.name!r} is registered already")
    table[spec.name] = spec
    return spec


def get_metric(name: str) -> MetricSpec:
    """The entry of ``name`` (a registered name or an alias), or a ValueError listing them."""
    name = ALIASES.get(name, name)
    if name not in METRICS:
        raise ValueError(
            f"unknown metric {name!r}; choose from {sorted(METRICS)} or the short names "
            f"{sorted(ALIASES)}"
        )
    return METRICS[name]


def needs_weights(spec: MetricSpec, options: MetricOptions) -> bool:
    """Whether ``spec`` (with its feature extractor) needs a pretrained weight file."""
    files = spec.weights(options)
    if spec.features is not None:
        files = files + FEATURES[spec.features].weights(options)
    return bool(files)


# ---------------------------------------------------------------------------- built-in metrics
_LPIPS_FILES = {"alex": "alexnet", "vgg": "vgg16"}


def _lpips(net: str | None) -> MetricSpec:
    """``lpips`` follows ``options.lpips_net``; ``lpips_alex``/``lpips_vgg`` fix the backbone."""

    def backbone(o: MetricOptions) -> str:
        return net if net is not None else o.lpips_net

    def build(o: MetricOptions) -> Callable[[Tensor, Tensor], Tensor]:
        if o.lpips_module is not None:
            return o.lpips_module
        return LPIPS(backbone(o), weights=o.lpips_weights)

    return MetricSpec(
        name="lpips" if net is None else f"lpips_{net}",
        kind="full-reference",
        higher_is_better=False,
        build=build,
        weights=lambda o: (_LPIPS_FILES.get(backbone(o), backbone(o)),),
        dtype=torch.float32,
        description="LPIPS v0.1 (Zhang et al. 2018), " + (net or "`lpips_net`") + " backbone",
    )


def _inception(o: MetricOptions) -> nn.Module:
    return o.fid_features if o.fid_features is not None else InceptionFeatures(o.inception_weights)


def _fid(o: MetricOptions) -> Callable[[Tensor, Tensor], dict[str, float]]:
    return lambda fake, real: {"fid": frechet_distance(fake, real)}


def _kid(o: MetricOptions) -> Callable[[Tensor, Tensor], dict[str, float]]:
    def kid(fake: Tensor, real: Tensor) -> dict[str, float]:
        mean, std = kernel_inception_distance(fake, real)
        return {"kid": mean, "kid_std": std}

    return kid


register(
    FeatureSpec(
        "inception",
        build=_inception,
        weights=lambda o: () if o.fid_features is not None else ("inception",),
    )
)
register(
    MetricSpec(
        "psnr", "full-reference", True,
        build=lambda o: partial(psnr, crop_border=o.crop_border, y_channel=o.y_channel),
        description="PSNR in dB on [0, 1] images (data range 1)",
    )
)  # fmt: skip
register(
    MetricSpec(
        "ssim", "full-reference", True,
        build=lambda o: partial(ssim, crop_border=o.crop_border, y_channel=o.y_channel),
        description="SSIM (Wang et al. 2004), Gaussian window 11/1.5, valid region",
    )
)  # fmt: skip
register(
    MetricSpec(
        "clipped", "no-reference", False, build=lambda o: clipped_fraction,
        description="fraction of 8-bit values at 0 or 255 (divergence shows as clipping)",
    )
)  # fmt: skip
for _net in (None, "alex", "vgg"):
    register(_lpips(_net))
register(
    MetricSpec(
        "fid", "set-level", False, build=_fid, features="inception",
        description="Fréchet Inception Distance (Heusel et al. 2017)",
    )
)  # fmt: skip
register(
    MetricSpec(
        "kid", "set-level", False, build=_kid, features="inception", columns=("kid", "kid_std"),
        description="Kernel Inception Distance (Bińkowski et al. 2018): mean and std over subsets",
    )
)  # fmt: skip


# ------------------------------------------------------------------------- no-reference metrics
def _pyiqa(name: str, metric: str, higher_is_better: bool, description: str) -> MetricSpec:
    model = PYIQA_MODELS[name]
    explicit = {"niqe": lambda o: o.niqe_weights}.get(name, lambda o: None)
    return MetricSpec(
        f"{metric}[pyiqa:{name}]", "no-reference", higher_is_better,
        build=lambda o: PyiqaMetric(name, explicit(o)),
        weights=lambda o: model.weights,
        dtype=torch.float32,
        description=description + " (IQA-PyTorch, optional extra `pyiqa`)",
    )  # fmt: skip


def _clipiqa_torchmetrics(o: MetricOptions) -> nn.Module:
    from lit_restore.metrics.clipiqa import CLIPIQA

    return CLIPIQA(o.clip_model)


register(
    MetricSpec(
        "niqe[lit_restore]", "no-reference", False,
        build=lambda o: NIQE(o.niqe_weights),
        weights=lambda o: ("niqe-pristine",),
        description="NIQE (Mittal et al. 2013), ours, equal to IQA-PyTorch's `niqe`",
    )
)  # fmt: skip
register(_pyiqa("niqe", "niqe", False, "NIQE (Mittal et al. 2013)"))
register(_pyiqa("musiq", "musiq", True, "MUSIQ (Ke et al. 2021), KonIQ-10k"))
register(_pyiqa("maniqa-pipal", "maniqa", True, "MANIQA (Yang et al. 2022), PIPAL"))
register(_pyiqa("clipiqa", "clipiqa", True, "CLIP-IQA (Wang et al. 2023), RN50, 5 prompt pairs"))
register(_pyiqa("clipiqa+", "clipiqa", True, "CLIP-IQA+ (Wang et al. 2023), learned prompts"))
register(
    MetricSpec(
        "clipiqa[torchmetrics:clip-vit-base-patch16]", "no-reference", True,
        build=_clipiqa_torchmetrics,
        weights=lambda o: () if o.clip_model is not None else ("clip-vit-base-patch16",),
        dtype=torch.float32,
        description="CLIP-IQA (Wang et al. 2023), 'Good photo.'/'Bad photo.', torchmetrics on "
        "Hugging Face CLIP ViT-B/16 (optional extra `clip`: transformers)",
    )
)  # fmt: skip
ALIASES.update(
    niqe="niqe[lit_restore]",
    musiq="musiq[pyiqa:musiq]",
    maniqa="maniqa[pyiqa:maniqa-pipal]",
    clipiqa="clipiqa[pyiqa:clipiqa]",
)
