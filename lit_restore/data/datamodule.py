"""The one LightningDataModule every method (zero-shot or trained) is run on.

Per item (:class:`RestorationItems`), with ``index`` the item's index in the *original* dataset:

1. **resize** (optional): shorter side to ``resize`` (bicubic, antialiased; LQ images of paired /
   LQ-only data to ``resize // lq_scale``).
2. **crop** to ``crop_size`` (``None``: no crop): training → random crop (``random_crop``) or
   centre crop; evaluation → centre crop. An image smaller than the crop raises
   :class:`ImageTooSmallError` naming the file (or is left out with ``on_bad_image="skip"``);
   the fix is ``resize``.
3. **hflip** with probability ½ (training only, ``hflip``).
4. to model space: ``x ↦ 2x − 1``.
5. **size checks**: an image above ``max_pixels`` raises :class:`ImageTooLargeError`, one the
   degradation cannot take (an SR factor that does not divide its sides) :class:`ImageSizeError`,
   both naming the file and the options that fix it. A ``crop_size`` the degradation cannot take
   is refused when the config is read.
6. **degrade** (datasets with a reference only) with the one degradation of every model
   (:mod:`lit_restore.degradations`): ``operator`` + ``noise`` (a
   :class:`~lit_restore.degradations.LinearDegradation`) or ``degradation`` (Real-ESRGAN,
   bicubic, ...)::

       g        = image_generator(seed, index, STREAM_DEGRADATION)        # evaluation
       degraded = degradation(hq, g)          # y, lq, mask?, params (kernel, mask, ...)

   so the measurement of image ``index`` is the same for any batch size, batch order, number of
   workers or of DDP ranks. Training draws crops/flips *and* degradations from generators of
   ``(seed, index, epoch)`` (streams offset by ``1000·epoch``): different every epoch, and
   reproducible. Paired data gives ``y = lq`` from files; LQ-only data gives ``y = lq`` and no
   ``hq``; without a degradation ``y = lq = hq``.

The degradation used here holds private CPU deep copies of ``operator``/``noise``/``degradation``
(the public ``.operator`` is handed to the model by the CLI and may move to a GPU; data workers
must stay on the CPU).

Batches (:func:`collate`) follow the protocol of :mod:`lit_restore.modules.base`:
``{hq?, y, lq, mask?, params, index, name}``.

Distributed use: the CLI sets ``trainer.use_distributed_sampler: false``; the samplers are built
here from ``trainer.world_size``/``global_rank``: training uses ``DistributedSampler(shuffle=True,
drop_last=True, seed=seed)`` (also on one process, for a reproducible shuffle), evaluation an
unpadded :class:`~lit_restore.data.sharding.ShardSampler` (every image scored exactly once).
Jobs that share nothing (a SLURM job array) split test/predict with ``shard: "i/N"``
(:class:`~lit_restore.data.sharding.Shard`: the indices ``k mod N == i``), merged afterwards by
:mod:`lit_restore.evaluation.merge`.
Resuming: :meth:`RestorationDataModule.exclude` (called by the evaluation records before the
dataloaders are built) leaves finished images out of test/predict.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.accelerators import CUDAAccelerator
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lit_restore.data.deadleaves import DeadLeaves
from lit_restore.data.folders import LQFolder, PairedFolder, check_on_bad_image
from lit_restore.data.io import BadImageError, image_size
from lit_restore.data.pair_pool import TrainingPairPool
from lit_restore.data.sharding import (
    EpochTaggedSampler,
    ResumableDataLoader,
    Shard,
    ShardSampler,
)
from lit_restore.degradations.base import Degradation
from lit_restore.degradations.linear import LinearDegradation
from lit_restore.operators.base import Operator
from lit_restore.operators.noise import NoiseModel, NoNoise
from lit_restore.utils.hparams import record_init_args
from lit_restore.utils.seeding import STREAM_DEGRADATION, image_generator

#: Stream of training crops/flips (per epoch: ``STREAM_AUGMENT + 1000·epoch``).
STREAM_AUGMENT = 100
#: Stream of the draws a training batch shares (``Degradation.batch_draws``), per epoch likewise.
STREAM_BATCH = 200
_EPOCH_STRIDE = 1000
#: Default ``max_pixels``: 2²³ ≈ 8.4 MP (e.g. 4096×2048). Measured: scoring one 4000×3000 image
#: (12 MP) without a crop needed 11.5 GB of host memory, mostly for SSIM (≈ 1 kB per pixel).
DEFAULT_MAX_PIXELS = 2**23


class ImageGeometryError(ValueError):
    """An image's size does not fit the data config. ``.path`` names the image."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(message)


class ImageTooSmallError(ImageGeometryError):
    """An image is smaller than the crop."""

    def __init__(self, path: str, size: tuple[int, int], crop: int) -> None:
        super().__init__(
            path,
            f"image {path} is {size[0]}×{size[1]} (H×W), smaller than crop_size={crop}; set "
            f"data.init_args.resize (e.g. resize: {crop}) to upscale its shorter side first, "
            "lower crop_size, or set on_bad_image: skip to leave such images out.",
        )


class ImageSizeError(ImageGeometryError):
    """The degradation cannot take an image of this size."""

    def __init__(self, path: str, size: tuple[int, int], reason: str) -> None:
        super().__init__(
            path,
            f"image {path} is {size[0]}×{size[1]} (H×W): {reason}. Set data.init_args.crop_size "
            "to a size the degradation accepts (for SR: a multiple of the factor), or resize the "
            "file; on_bad_image: skip leaves such images out.",
        )


class ImageTooLargeError(ImageGeometryError):
    """An image has more pixels than ``max_pixels``."""

    def __init__(self, path: str, size: tuple[int, int], limit: int) -> None:
        super().__init__(
            path,
            f"image {path} is {size[0]}×{size[1]} ({size[0] * size[1]} pixels), above "
            f"data.init_args.max_pixels={limit} (a 4000×3000 image needed 11.5 GB to score). Set "
            "data.init_args.crop_size (e.g. 256) or data.init_args.resize, or raise "
            "data.init_args.max_pixels (null = no limit) if the memory is there.",
        )


def _label(dataset: Dataset, index: int, name: str | None = None) -> str:
    path = getattr(dataset, "path", None)
    if callable(path):
        return str(path(index))
    return f"{type(dataset).__name__}[{index}]" + (f" ({name})" if name else "")


def resize_shorter(x: Tensor, size: int) -> Tensor:
    """Bicubic, antialiased resize of ``[C,H,W]`` in [0,1] so that min(H, W) == ``size``."""
    h, w = x.shape[-2:]
    if min(h, w) == size:
        return x
    f = size / min(h, w)
    return resize_to(x, (max(size, round(h * f)), max(size, round(w * f))))


def resize_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bicubic, antialiased resize of ``[C,H,W]`` in [0,1] to ``size`` (H, W)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    out = F.interpolate(x[None], size=size, mode="bicubic", antialias=True, align_corners=False)
    return out[0].clamp(0, 1)


def _gather_objects(obj: Any, world_size: int) -> list[Any]:
    """Every rank's ``obj`` on every rank (``torch.distributed.all_gather_object``)."""
    import torch.distributed as dist

    out: list[Any] = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def _position(key: int | tuple[int, int]) -> tuple[int, int]:
    """A sampler key → ``(position, epoch)`` (evaluation keys are bare positions, epoch 0)."""
    return (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), 0)


def _crop_origin(
    h: int, w: int, c: int, random: bool, g: torch.Generator | None
) -> tuple[int, int]:
    if random:
        top = int(torch.randint(0, h - c + 1, (1,), generator=g))
        left = int(torch.randint(0, w - c + 1, (1,), generator=g))
        return top, left
    return (h - c) // 2, (w - c) // 2


class RestorationItems(Dataset):
    """A dataset view that turns raw items into protocol items (see the module docstring).

    Args:
        dataset: the raw dataset (items ``{"image"?, "lq"?, "name"}`` in [0, 1]).
        positions: original indices to expose (position ``p`` → ``dataset[positions[p]]``).
        train: training transforms (random crop/flip, per-epoch draws) or evaluation ones.
        Other arguments as in :class:`RestorationDataModule`.
    """

    def __init__(
        self,
        dataset: Dataset,
        positions: Sequence[int],
        train: bool,
        degradation: Degradation | None,
        crop_size: int | None,
        resize: int | None,
        random_crop: bool,
        hflip: bool,
        seed: int,
        lq_scale: int = 1,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.dataset = dataset
        self.positions = list(positions)
        self.train = train
        self.degradation = degradation
        self.max_pixels = max_pixels
        self.crop_size = crop_size
        self.resize = resize
        self.random_crop = random_crop
        self.hflip = hflip
        self.seed = seed
        self.lq_scale = lq_scale

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        pos, epoch = _position(key)
        index = self.positions[pos]
        raw = self.dataset[index]
        return self.process(raw, index, epoch)

    def __getitems__(self, keys: Sequence[int | tuple[int, int]]) -> list[dict[str, Any]]:
        """A whole batch (the DataLoader's batched fetch). Training with a degradation that
        shares draws within a batch (``degradation.batch_draws``, e.g. Real-ESRGAN's official
        ``draws="per_batch"``) degrades the batch at once: the per-image draws from each
        image's generator, the shared ones from a batch generator of ``(seed, epoch, index of
        the batch's first image)``. Otherwise item by item."""
        deg = self.degradation
        if not (self.train and deg is not None and deg.batch_draws) or not keys:
            return [self[k] for k in keys]
        items, gens = [], []
        for key in keys:
            pos, epoch = _position(key)
            index = self.positions[pos]
            items.append(self.process(self.dataset[index], index, epoch, degrade=False))
            gens.append(self._generators(index, epoch)[1])
        if any("hq" not in it or it["lq"] is not it["hq"] for it in items):  # paired/LQ data
            return items
        epoch = _position(keys[0])[1]
        g_batch = image_generator(
            self.seed, items[0]["index"], STREAM_BATCH + _EPOCH_STRIDE * (epoch + 1)
        )
        degraded = deg.degrade_batch(torch.stack([it["hq"] for it in items]), gens, g_batch)
        for b, it in enumerate(items):
            it["y"], it["lq"] = degraded.y[b], degraded.lq[b]
            it["params"] = {k: v[b] for k, v in degraded.params.items()}
            if degraded.mask is not None:
                it["mask"] = degraded.mask[b]
        return items

    # ----------------------------------------------------------------- steps
    def _generators(self, index: int, epoch: int) -> tuple[torch.Generator | None, torch.Generator]:
        if self.train:
            aug = image_generator(self.seed, index, STREAM_AUGMENT + _EPOCH_STRIDE * epoch)
            deg = image_generator(
                self.seed, index, STREAM_DEGRADATION + _EPOCH_STRIDE * (epoch + 1)
            )
            return aug, deg
        return None, image_generator(self.seed, index, STREAM_DEGRADATION)

    def check_size(self, label: str, shape: tuple[int, ...], degraded: bool) -> None:
        """Refuse an item image of ``shape`` ``(C, H, W)`` (after resize/crop) above
        ``max_pixels``, or one the degradation cannot take (``degraded``: it will be degraded)."""
        c, h, w = (int(v) for v in shape[-3:])
        if self.max_pixels is not None and h * w > self.max_pixels:
            raise ImageTooLargeError(label, (h, w), self.max_pixels)
        if degraded and self.degradation is not None:
            try:
                self.degradation.check_image_shape((c, h, w))
            except ValueError as e:
                raise ImageSizeError(label, (h, w), str(e)) from None

    def process(
        self, raw: dict, index: int, epoch: int = 0, degrade: bool = True
    ) -> dict[str, Any]:
        """Steps 1–6 of the module docstring (``degrade=False``: all but the degradation)."""
        name = str(raw.get("name", f"{index:05d}"))
        hq, lq = raw.get("image"), raw.get("lq")
        if hq is None and lq is None:
            raise KeyError(
                f"{type(self.dataset).__name__} item {index} has neither 'image' nor 'lq' "
                f"(keys: {sorted(raw)})"
            )
        g_aug, g_deg = self._generators(index, epoch)
        scale = self._scale(hq, lq, index, name)
        # 1. resize
        if self.resize is not None:
            if lq is not None:
                lq = resize_shorter(lq, self.resize // scale)
                if hq is not None:  # exactly `scale` times the LQ size, whatever the rounding
                    hq = resize_to(hq, (lq.shape[-2] * scale, lq.shape[-1] * scale))
            else:
                hq = resize_shorter(hq, self.resize)
        # 2. crop (in LQ pixels when there is an LQ image, so both crops align)
        if self.crop_size is not None:
            if self.crop_size % scale:
                raise ValueError(
                    f"data.init_args.crop_size={self.crop_size} is not a multiple of the LQ scale "
                    f"{scale} of {_label(self.dataset, index, name)}; use a multiple of {scale}"
                )
            ref = lq if lq is not None else hq
            c = self.crop_size // scale
            h, w = ref.shape[-2:]
            if h < c or w < c:
                raise ImageTooSmallError(_label(self.dataset, index, name), (h, w), c)
            top, left = _crop_origin(h, w, c, self.train and self.random_crop, g_aug)
            if lq is not None:
                lq = lq[:, top : top + c, left : left + c]
            if hq is not None:
                t, l_, cs = top * scale, left * scale, c * scale
                hq = hq[:, t : t + cs, l_ : l_ + cs]
        # 3. flip
        if self.train and self.hflip and bool(torch.rand((), generator=g_aug) < 0.5):
            hq = hq.flip(-1) if hq is not None else None
            lq = lq.flip(-1) if lq is not None else None
        # 4. model space
        item: dict[str, Any] = {"index": index, "name": name, "params": {}}
        if hq is not None:
            item["hq"] = hq.contiguous() * 2 - 1
        if lq is not None:
            item["lq"] = lq.contiguous() * 2 - 1
            item["y"] = item["lq"]
        # 5. size checks
        biggest = hq if hq is not None else lq
        self.check_size(_label(self.dataset, index, name), tuple(biggest.shape), lq is None)
        if lq is not None:
            return item
        # 6. degrade
        x = item["hq"]
        if self.degradation is None or not degrade:
            item["y"] = item["lq"] = x
            return item
        degraded = self.degradation(x, g_deg)
        item["y"], item["lq"], item["params"] = degraded.y, degraded.lq, degraded.params
        if degraded.mask is not None:
            item["mask"] = degraded.mask
        return item

    def _scale(self, hq: Tensor | None, lq: Tensor | None, index: int, name: str) -> int:
        if hq is None or lq is None:
            return self.lq_scale if hq is None else 1
        (hh, hw), (lh, lw) = hq.shape[-2:], lq.shape[-2:]
        s = hh // max(lh, 1)
        if s < 1 or hh != lh * s or hw != lw * s:
            raise ValueError(
                f"paired image {_label(self.dataset, index, name)}: HQ {hh}×{hw} is not an integer "
                f"multiple of LQ {lh}×{lw}"
            )
        return s


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack protocol items: images → ``[B,...]``, ``params`` → dict of stacked tensors (or
    ``{}``), ``index`` → long tensor, ``name`` → ``list[str]``."""
    batch: dict[str, Any] = {}
    for key in ("hq", "y", "lq", "mask"):
        present = [key in it for it in items]
        if not any(present):
            continue
        if not all(present):
            raise ValueError(f"batch mixes items with and without {key!r}")
        tensors = [it[key] for it in items]
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) > 1:
            raise ValueError(
                f"cannot batch {key!r} of different shapes {sorted(shapes)} (images "
                f"{[it['name'] for it in items]}); set crop_size, or eval_batch_size: 1"
            )
        batch[key] = torch.stack(tensors)
    keys = set(items[0]["params"])
    batch["params"] = {k: torch.stack([it["params"][k] for it in items]) for k in sorted(keys)}
    batch["index"] = torch.tensor([it["index"] for it in items], dtype=torch.long)
    batch["name"] = [it["name"] for it in items]
    return batch


class RestorationDataModule(L.LightningDataModule):
    """Datasets + crop/flip + degradation + DDP-exact sharding (module docstring has the steps).

    Args:
        train_set, val_set, test_set, predict_set: datasets (any of :mod:`lit_restore.data`, or
            anything with items ``{"image"|"lq", "name"}``). ``predict_set`` defaults to
            ``test_set``.
        operator: a degradation operator, linear or (for DPS/SaFaRI) nonlinear (``None``:
            identity, ``y = lq = hq``). The CLI hands this same object to the model.
        noise: measurement noise of ``operator`` (default
            :class:`~lit_restore.operators.noise.NoNoise`).
        degradation: a degradation that is not an operator + noise (e.g.
            :class:`~lit_restore.degradations.RealESRGANDegradation`,
            :class:`~lit_restore.degradations.BicubicDegradation`); give either this or
            ``operator``.
        crop_size: square crop side in HQ pixels (``None``: no crop).
        resize: resize the shorter side to this before cropping (``None``: never resize).
        random_crop: random crops in training (else centre crops). Evaluation always centres.
        hflip: random horizontal flips in training.
        batch_size: training batch size (per process).
        eval_batch_size: val/test/predict batch size (default ``batch_size``).
        num_workers: dataloader worker processes.
        seed: base seed of every per-image draw.
        on_bad_image: ``"error"`` or ``"skip"``: with ``"skip"`` each dataset is scanned once in
            ``setup`` and unreadable or too-small images are left out with a warning.
        pin_memory: copy batches into page-locked memory, from which the host-to-device copy is
            asynchronous (Lightning moves batches with ``non_blocking=True`` on CUDA). ``None``
            (default): when the trainer's accelerator is CUDA; a no-op on CPU.
        lq_scale: HQ/LQ size ratio of LQ-only data (crops of ``crop_size // lq_scale`` LQ
            pixels); paired data infers it from the image sizes.
        max_pixels: refuse an image with more pixels than this after resize/crop (the reference,
            or the LQ input when there is none), naming the file and the fixes; ``None``: no
            limit. Default 2²³ ≈ 8.4 MP (scoring a 12 MP image needed 11.5 GB).
        pair_pool_size: training batches pass through a training-pair pool of this many pairs
            (:class:`~lit_restore.data.pair_pool.TrainingPairPool`; Real-ESRGAN/ResShift
            official training: 10 × ``batch_size``, with the degradation's official
            ``draws: per_batch``); ``0`` (default): no pool.
        shard: ``"i/N"``: test/predict only the images whose dataset index ``k`` has
            ``k mod N == i`` (:class:`~lit_restore.data.sharding.Shard`), for job arrays; the
            N runs are merged by index with ``python -m lit_restore.evaluation.merge``.
            Training and validation always see the whole set. ``None``: no sharding.

    Training resumes exactly: the training loader's position (epoch, batches done; see
    :class:`~lit_restore.data.sharding.ResumableDataLoader`) and the pool are saved in every
    checkpoint, and everything else in a batch is drawn from ``(seed, index, epoch)``.
    """

    def __init__(
        self,
        train_set: Dataset | None = None,
        val_set: Dataset | None = None,
        test_set: Dataset | None = None,
        predict_set: Dataset | None = None,
        operator: Operator | None = None,
        noise: NoiseModel | None = None,
        crop_size: int | None = 256,
        resize: int | None = None,
        random_crop: bool = True,
        hflip: bool = True,
        batch_size: int = 4,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        on_bad_image: str = "error",
        pin_memory: bool | None = None,
        lq_scale: int = 1,
        degradation: Degradation | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        pair_pool_size: int = 0,
        shard: str | None = None,
    ) -> None:
        super().__init__()
        record_init_args(self)  # HPARAMS: dataset, crop, operator, noise, seed (utils.hparams)
        if pair_pool_size < 0 or (pair_pool_size and pair_pool_size % batch_size):
            raise ValueError(
                f"data.init_args.pair_pool_size={pair_pool_size} must be 0 or a positive multiple "
                f"of batch_size={batch_size} (official: 10 × batch_size)"
            )
        for label, v in (
            ("crop_size", crop_size),
            ("resize", resize),
            ("lq_scale", lq_scale),
            ("max_pixels", max_pixels),
        ):
            if v is not None and v < 1:
                raise ValueError(
                    f"data.init_args.{label} must be a positive integer or null, got {v}"
                )
        if operator is not None and degradation is not None:
            raise ValueError(
                "the degradation is configured twice: give data.init_args.operator (+ noise) for "
                "a linear operator, or data.init_args.degradation for another degradation, not both"
            )
        if crop_size is not None and crop_size % lq_scale:
            raise ValueError(
                f"data.init_args.crop_size={crop_size} is not a multiple of "
                f"data.init_args.lq_scale={lq_scale}; use a multiple of {lq_scale}"
            )
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise ValueError("batch_size and eval_batch_size must be >= 1")
        self.sets: dict[str, Dataset | None] = {
            "train": train_set,
            "val": val_set,
            "test": test_set,
            "predict": predict_set if predict_set is not None else test_set,
        }
        self.operator = operator
        self.noise = noise if noise is not None else NoNoise()
        self.degradation = degradation
        # private CPU copies for the data pipeline (the public ones may be moved to a GPU)
        self._data_degradation: Degradation | None = copy.deepcopy(degradation)
        if operator is not None:
            self._data_degradation = LinearDegradation(
                copy.deepcopy(operator).cpu().eval(), copy.deepcopy(self.noise).cpu()
            )
        self._check_crop(crop_size)
        self.max_pixels = max_pixels
        self.crop_size = crop_size
        self.resize = resize
        self.random_crop = random_crop
        self.hflip = hflip
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.on_bad_image = check_on_bad_image(on_bad_image)
        self.pin_memory = pin_memory
        self.lq_scale = lq_scale
        #: original indices left out of test/predict (images already done; see :meth:`exclude`)
        self.excluded: frozenset[int] = frozenset()
        self.pair_pool_size = pair_pool_size
        self._pool: TrainingPairPool | None = None
        self._pool_state: dict[str, Any] | None = None
        self._positions: dict[str, list[int]] = {}
        # the job-array shard of test/predict. Private, read through properties: the run's
        # fingerprint (public attributes) leaves it out, so the N shards of a run share one
        # fingerprint (their record files carry the shard's tag instead) and run dirs made
        # before sharding existed still resume
        self._shard = Shard.parse(shard)

    def _check_crop(self, crop_size: int | None) -> None:
        """A crop the degradation cannot take is a config error, reported before any work."""
        if crop_size is None or self._data_degradation is None:
            return
        try:  # every dataset gives RGB images (lit_restore.data.io)
            self._data_degradation.check_image_shape((3, crop_size, crop_size))
        except ValueError as e:
            option = "operator" if self.operator is not None else "degradation"
            what = type(self.operator if self.operator is not None else self.degradation).__name__
            raise ValueError(
                f"data.init_args.crop_size={crop_size} does not fit data.init_args.{option} "
                f"({what}): {e}; choose a crop_size it accepts (for SR: a multiple of the factor)"
            ) from None

    # ------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        wanted = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("predict",),
        }.get(stage or "", tuple(self.sets))
        for split in wanted:
            self.positions(split)

    @property
    def shard_spec(self) -> Shard | None:
        """The :class:`~lit_restore.data.sharding.Shard` of test/predict (``None``: all)."""
        return self._shard

    @property
    def shard(self) -> str | None:
        """``"i/N"``, or ``None`` without sharding."""
        return None if self._shard is None else str(self._shard)

    def positions(self, split: str) -> list[int]:
        """Original indices of ``split`` usable at this crop (scanned once in skip mode), of
        this job's :attr:`shard_spec` for test/predict."""
        if split not in self._positions:
            ds = self.sets[split]
            candidates = [] if ds is None else list(range(len(ds)))
            if self.shard_spec is not None and split in ("test", "predict"):
                candidates = self.shard_spec.keep(candidates)  # before the scan: scan less
            if ds is not None and self.on_bad_image == "skip":
                candidates = self._scan(ds, split, candidates)
            self._positions[split] = candidates
        return self._positions[split]

    def _scan(self, ds: Dataset, split: str, indices: list[int]) -> list[int]:
        """Keep the ``indices`` whose image decodes and is at least the crop (after ``resize``)."""
        if isinstance(ds, DeadLeaves):
            c = self.crop_size or 0
            if self.resize is None and ds.image_size < c:
                raise ImageTooSmallError(repr(ds), (ds.image_size,) * 2, c)
            return indices
        items = self._items(split, list(range(len(ds))), train=False)
        cheap = callable(getattr(ds, "path", None)) and getattr(ds, "on_bad_image", "") == "skip"
        lq_only = isinstance(ds, LQFolder)
        degraded = not isinstance(ds, (LQFolder, PairedFolder))  # these items carry their LQ
        good, bad = [], []
        for i in indices:
            try:
                if cheap and self.resize is None:  # decoded already by the dataset: header only
                    h, w = image_size(ds.path(i))
                    c = (self.crop_size or 0) // (self.lq_scale if lq_only else 1)
                    if min(h, w) < c:
                        raise ImageTooSmallError(str(ds.path(i)), (h, w), c)
                    hw = (c, c) if c else (h, w)  # image files load as RGB (data.io)
                    items.check_size(str(ds.path(i)), (3, *hw), degraded)
                else:  # decoding + geometry are what can fail; skip the degradation itself
                    items.process(ds[i], i, degrade=False)
            except (BadImageError, ImageGeometryError) as e:
                bad.append(getattr(e, "path", str(i)))
            else:
                good.append(i)
        if bad:
            shown = ", ".join(bad[:10]) + (f", ... ({len(bad) - 10} more)" if len(bad) > 10 else "")
            warnings.warn(
                f"on_bad_image='skip': left out {len(bad)} of {len(indices)} {split} image(s) that are "
                f"unreadable, smaller than crop_size={self.crop_size}, larger than "
                f"max_pixels={self.max_pixels} or of a size the degradation cannot take: {shown}",
                stacklevel=2,
            )
        if not good:
            raise ValueError(f"no usable {split} image left after skipping {len(bad)} bad ones")
        return good

    def _items(self, split: str, positions: Sequence[int], train: bool) -> RestorationItems:
        return RestorationItems(
            self.sets[split],
            positions,
            train=train,
            degradation=self._data_degradation,
            crop_size=self.crop_size,
            resize=self.resize,
            random_crop=self.random_crop,
            hflip=self.hflip,
            seed=self.seed,
            lq_scale=self.lq_scale,
            max_pixels=self.max_pixels,
        )

    def exclude(self, indices: Iterable[int]) -> None:
        """Leave these original indices out of the test/predict loaders built from now on (the
        images a resumed run has done already); replaces any earlier exclusion."""
        self.excluded = frozenset(int(i) for i in indices)

    # -------------------------------------------------------- distribution
    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def pin(self) -> bool:
        """Whether the loaders pin memory: ``pin_memory``, or (``None``) whether the trainer runs
        on CUDA — pinned pages only pay for a copy to a CUDA device."""
        if self.pin_memory is not None:
            return bool(self.pin_memory)
        trainer = getattr(self, "trainer", None)
        return isinstance(getattr(trainer, "accelerator", None), CUDAAccelerator)

    def _loader(self, dataset: Dataset, sampler, batch_size: int, drop_last: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            collate_fn=collate,
            num_workers=self.num_workers,
            pin_memory=self.pin(),
            drop_last=drop_last,
            persistent_workers=self.num_workers > 0,
        )

    # ---------------------------------------------------------- dataloaders
    def train_dataloader(self) -> DataLoader:
        if self.sets["train"] is None:
            raise ValueError("no train_set configured (data.init_args.train_set)")
        items = self._items("train", self.positions("train"), train=True)
        rank, world = self._world()
        inner = DistributedSampler(
            items, num_replicas=world, rank=rank, shuffle=True, seed=self.seed, drop_last=True
        )
        return ResumableDataLoader(
            items,
            batch_size=self.batch_size,
            sampler=EpochTaggedSampler(inner),
            collate_fn=collate,
            num_workers=self.num_workers,
            pin_memory=self.pin(),
            drop_last=len(inner) >= self.batch_size,
            persistent_workers=self.num_workers > 0,
            position=self._fit_position,
        )

    def _fit_position(self) -> tuple[int, int]:
        """``(epoch, batches whose training step ran in it)`` of the running fit, from
        Lightning's progress counters: what a checkpoint taken now has trained on. The epoch is
        the last one *started* — after ``max_steps`` stops a fit mid-epoch Lightning already
        counts that epoch as completed (``current_epoch`` is one ahead), its batches not."""
        loop = self.trainer.fit_loop
        epoch = max(0, loop.epoch_progress.current.started - 1)
        return int(epoch), int(loop.epoch_loop.batch_progress.current.processed)

    # ----------------------------------------------------------- pair pool
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Training batches pass through the training-pair pool (``pair_pool_size``)."""
        trainer = getattr(self, "trainer", None)
        if not self.pair_pool_size or trainer is None or not trainer.training:
            return batch
        if self._pool is None:
            self._pool = TrainingPairPool(self.pair_pool_size, self.seed, trainer.global_rank)
            if self._pool_state is not None:
                self._pool.load_state_dict(self._pool_state)
                self._pool_state = None
        return self._pool(batch)

    def state_dict(self) -> dict[str, Any]:
        """The pool's contents (per rank: gathered from every DDP rank) for the checkpoint."""
        if self._pool is None:
            return {}
        trainer = self.trainer
        state = self._pool.state_dict()
        if trainer.world_size > 1:  # every rank's pool; rank r restores its own
            return {"pair_pool_ranks": _gather_objects(state, trainer.world_size)}
        return {"pair_pool_ranks": [state]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        ranks = state_dict.get("pair_pool_ranks")
        if not ranks:
            return
        trainer = getattr(self, "trainer", None)
        rank = int(trainer.global_rank) if trainer is not None else 0
        if len(ranks) != (trainer.world_size if trainer is not None else 1):
            raise ValueError(
                f"the checkpoint holds the training-pair pools of {len(ranks)} processes; resume "
                "with the same number of processes (or without data.init_args.pair_pool_size)"
            )
        self._pool, self._pool_state = None, ranks[rank]

    def eval_dataloader(self, split: str) -> DataLoader | list:
        """Unpadded, sharded loader over ``split`` minus the excluded indices (test/predict)."""
        if self.sets[split] is None:
            return []
        full = self.positions(split)
        positions = full
        if split in ("test", "predict") and self.excluded:
            positions = [i for i in full if i not in self.excluded]
        rank, world = self._world()
        if world > 1 and full and len(positions) < world:
            # Lightning refuses a rank with an empty loader under DDP. Idle ranks get an image
            # that is already done; the metric/writer callbacks de-duplicate by index.
            done = [i for i in full if i not in positions] or full
            positions = positions + (done * world)[: world - len(positions)]
        items = self._items(split, positions, train=False)
        return self._loader(
            items, ShardSampler(len(items), rank, world), self.eval_batch_size, False
        )

    def val_dataloader(self) -> DataLoader | list:
        return self.eval_dataloader("val")

    def test_dataloader(self) -> DataLoader | list:
        return self.eval_dataloader("test")

    def predict_dataloader(self) -> DataLoader | list:
        return self.eval_dataloader("predict")
