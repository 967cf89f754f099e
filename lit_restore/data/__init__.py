"""Datasets and the LightningDataModule (see :mod:`lit_restore.data.datamodule`)."""

from lit_restore.data.datamodule import (
    ImageSizeError,
    ImageTooLargeError,
    ImageTooSmallError,
    RestorationDataModule,
    RestorationItems,
    collate,
)
from lit_restore.data.deadleaves import DeadLeaves, dead_leaves
from lit_restore.data.folders import ImageFolder, LQFolder, PairedFolder, list_images
from lit_restore.data.hf import HFImageDataset
from lit_restore.data.io import IMAGE_EXTENSIONS, BadImageError, load_image, save_png
from lit_restore.data.sharding import EpochTaggedSampler, ShardSampler

__all__ = [
    "IMAGE_EXTENSIONS",
    "BadImageError",
    "DeadLeaves",
    "EpochTaggedSampler",
    "HFImageDataset",
    "ImageFolder",
    "ImageSizeError",
    "ImageTooLargeError",
    "ImageTooSmallError",
    "LQFolder",
    "PairedFolder",
    "RestorationDataModule",
    "RestorationItems",
    "ShardSampler",
    "collate",
    "dead_leaves",
    "list_images",
    "load_image",
    "save_png",
]
