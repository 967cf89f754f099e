"""Banks of blur kernels and inpainting masks read from disk, one drawn per image.

A protocol that ships its degradations as files — a kernel bank (e.g. the Levin et al. 2009
kernels, a ``.mat`` of 8 kernels), a set of motion kernels made once with the official generator,
or a folder of inpainting masks — is run by giving the file or folder:

* :func:`load_kernel_bank` — ``.npy`` (``[k, k]`` or ``[N, k, k]``), ``.mat`` (a numeric
  2-D/3-D array, or a MATLAB cell array of 2-D kernels; ``key`` picks the variable when the file
  has several), an image (``.png`` …, the kernel as gray levels) or a folder of those; each kernel
  normalised to sum 1;
* :func:`load_mask_bank` — a mask file (:func:`~.masks.load_mask_file`: image with white =
  known, ``.npy``, ``.pt``; a ``.npy`` may hold ``[N, H, W]``) or a folder of them.

Files of a folder are taken in sorted name order. Which entry image *i* gets is
:func:`bank_choice`: uniform over the bank, drawn from the image's own generator (so a pure
function of ``(seed, index)``, as every random degradation here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .masks import load_mask_file

KERNEL_SUFFIXES = (".npy", ".mat", ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def bank_choice(size: int, generator: torch.Generator) -> int:
    """The bank entry of one image: uniform on ``0 … size−1`` from its generator."""
    return int(torch.randint(size, (1,), generator=generator))


def _files(path: Path, suffixes: tuple[str, ...], what: str) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes)
        if not files:
            raise ValueError(f"{what} folder {str(path)!r} has no {'/'.join(suffixes)} files")
        return files
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist; give a file or a folder")
    return [path]


def _mat_arrays(path: Path, key: str | None) -> list[np.ndarray]:
    from scipy.io import loadmat

    data = {k: v for k, v in loadmat(path).items() if not k.startswith("__")}
    if key is not None:
        if key not in data:
            raise ValueError(f"{str(path)!r} has no variable {key!r}; it has {sorted(data)}")
        data = {key: data[key]}
    out: list[np.ndarray] = []
    for value in data.values():
        if value.dtype == object:  # a cell array of kernels
            out += [np.asarray(v, dtype=np.float64) for v in value.ravel()]
        elif np.issubdtype(value.dtype, np.number) and value.ndim in (2, 3):
            arr = value.astype(np.float64)
            # MATLAB stacks kernels along the last axis ([k, k, N])
            out += [arr] if arr.ndim == 2 else [arr[..., i] for i in range(arr.shape[-1])]
    if not out:
        raise ValueError(f"{str(path)!r} holds no 2-D/3-D numeric array or cell array of kernels")
    return out


def _kernel_arrays(path: Path, key: str | None) -> list[np.ndarray]:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = np.load(path).astype(np.float64)
        return [arr] if arr.ndim == 2 else list(arr)
    if suffix == ".mat":
        return _mat_arrays(path, key)
    from PIL import Image

    with Image.open(path) as img:
        return [np.asarray(img.convert("L"), dtype=np.float64)]


def load_kernel_bank(path: str | Path, key: str | None = None) -> Tensor:
    """Kernels ``[N, k, k]`` (float32, each summing to 1) from a file or folder (module
    docstring). All kernels must be square, odd-sized, of one size, nonnegative, not all zero."""
    path = Path(path)
    kernels = [
        a for f in _files(path, KERNEL_SUFFIXES, "kernel bank") for a in _kernel_arrays(f, key)
    ]
    shapes = {a.shape for a in kernels}
    if len(shapes) != 1 or any(len(s) != 2 or s[0] != s[1] or s[0] % 2 == 0 for s in shapes):
        raise ValueError(
            f"kernel bank {str(path)!r}: kernels must be square, odd-sized and of one size; got "
            f"shapes {sorted(shapes)} (pad the kernels with zeros to one odd size)"
        )
    bank = torch.from_numpy(np.stack(kernels))
    if (bank < 0).any() or (bank.flatten(1).sum(1) <= 0).any():
        raise ValueError(f"kernel bank {str(path)!r}: kernels must be nonnegative and not all zero")
    return (bank / bank.flatten(1).sum(1).view(-1, 1, 1)).float()


def load_mask_bank(path: str | Path, invert: bool = False) -> Tensor:
    """Masks ``[N, 1, H, W]`` (1 = known) from a mask file, a ``.npy`` stack ``[N, H, W]`` or a
    folder of mask files (module docstring); all of one size."""
    path = Path(path)
    masks: list[Tensor] = []
    for f in _files(path, (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".npy", ".pt", ".pth"),
                    "mask bank"):  # fmt: skip
        arr = np.load(f) if f.suffix.lower() == ".npy" else None
        if arr is not None and arr.ndim == 3 and arr.shape[0] > 4:  # a stack of masks
            known = (torch.from_numpy(arr.astype(np.float64)) > 0.5).float()  # as load_mask_file
            masks += [(1 - known if invert else known)[i, None] for i in range(len(arr))]
        else:
            masks.append(load_mask_file(f, invert=invert))
    shapes = {tuple(m.shape) for m in masks}
    if len(shapes) != 1:
        raise ValueError(f"mask bank {str(path)!r}: masks of several sizes {sorted(shapes)}")
    return torch.stack(masks)
