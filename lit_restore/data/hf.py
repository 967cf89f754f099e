"""Images from a Hugging Face ``datasets`` dataset (local ``save_to_disk`` folder or hub/script).

``path`` is tried in this order:

1. a local directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``
   (it holds ``state.json`` or ``dataset_dict.json``) → ``datasets.load_from_disk``; for a
   ``DatasetDict`` the ``split`` is picked;
2. anything else → ``datasets.load_dataset(path, split=split)`` (a hub name, a local loading
   script, or a local folder of images, which ``datasets`` reads with its ``imagefolder``
   builder). Whether this goes to the network is ``datasets``' business; set
   ``HF_DATASETS_OFFLINE=1`` to forbid it.

The image column may hold PIL images (the ``Image`` feature), ``{"bytes", "path"}`` dicts or
``H×W(×C)`` arrays; each is converted by the rule of :mod:`lit_restore.data.io`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from lit_restore.data.folders import check_on_bad_image, drop_unreadable
from lit_restore.data.io import BadImageError, pil_to_tensor01


def _is_saved_to_disk(path: Path) -> bool:
    return path.is_dir() and (
        (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()
    )


def array_to_tensor01(arr: np.ndarray) -> Tensor:
    """``H×W``, ``H×W×1|3|4`` array → ``[3, H, W]`` in [0, 1]: uint8 ``/255``, uint16 ``/65535``,
    floats clamped to [0, 1]; grey replicated, alpha composited on white (as for files)."""
    if arr.dtype == np.uint8:
        a = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        a = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        a = np.clip(arr.astype(np.float32), 0.0, 1.0)
    else:
        raise TypeError(f"unsupported array dtype {arr.dtype} (use uint8, uint16 or float)")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected an H×W(×C) image array, got shape {arr.shape}")
    if a.shape[2] in (2, 4):  # trailing alpha: composite on white
        alpha = a[..., -1:]
        a = a[..., :-1] * alpha + (1.0 - alpha)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float()


class HFImageDataset(Dataset):
    """A column of images from a Hugging Face dataset: items ``{"image", "name"}``.

    Args:
        path: a ``save_to_disk`` directory, or a name/path for ``datasets.load_dataset``.
        split: the split to use.
        image_column: the column holding the images.
        name_column: a column to use as ``name`` (cast to str); default: the zero-padded
            row index (``"00017"``).
        on_bad_image: ``"error"`` or ``"skip"`` (decode every row up front, drop bad ones with
            a warning).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split: str = "test",
        image_column: str = "image",
        name_column: str | None = None,
        on_bad_image: str = "error",
    ) -> None:
        import datasets  # heavy import: only when this dataset is used

        self.path = str(path)
        self.split = split
        self.image_column = image_column
        self.name_column = name_column
        check_on_bad_image(on_bad_image)
        local = Path(self.path).expanduser()
        if _is_saved_to_disk(local):
            ds = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise ValueError(
                        f"HF dataset {self.path!r} has splits {sorted(ds)}, not split={split!r}"
                    )
                ds = ds[split]
        else:
            ds = datasets.load_dataset(self.path, split=split)
        for col in (image_column, name_column):
            if col is not None and col not in ds.column_names:
                raise ValueError(
                    f"HF dataset {self.path!r} (split {split!r}) has no column {col!r}; its "
                    f"columns are {ds.column_names}. Set image_column/name_column."
                )
        self.ds = ds
        self.rows = list(range(len(ds)))
        if on_bad_image == "skip":
            self.rows = drop_unreadable(
                len(ds), self._load_image, lambda i: self._name(i), self.path
            )

    def _name(self, row: int) -> str:
        if self.name_column is None:
            return f"{row:05d}"
        return str(self.ds[row][self.name_column])

    def _load_image(self, row: int) -> Tensor:
        label = f"{self.path}[{self.split}][{row}]"
        try:
            value = self.ds[row][self.image_column]
        except (OSError, ValueError, SyntaxError) as e:  # decoding happens in the Image feature
            raise BadImageError(label, f"{type(e).__name__}: {e}") from e
        return self._to_tensor(value, label)

    @staticmethod
    def _to_tensor(value, label: str) -> Tensor:
        try:
            if isinstance(value, dict):  # undecoded Image feature: {"bytes": ..., "path": ...}
                src = io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"]
                with Image.open(src) as img:
                    img.load()
                    return pil_to_tensor01(img)
            if isinstance(value, Image.Image):
                value.load()
                return pil_to_tensor01(value)
            return array_to_tensor01(np.asarray(value))
        except (OSError, ValueError, SyntaxError, TypeError, KeyError) as e:
            raise BadImageError(label, f"{type(e).__name__}: {e}") from e

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        row = self.rows[index]
        return {"image": self._load_image(row), "name": self._name(row)}

    def __repr__(self) -> str:
        return f"HFImageDataset(path={self.path!r}, split={self.split!r}, n={len(self)})"
