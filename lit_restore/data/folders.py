"""Image datasets read from folders: plain, paired (LQ/HQ) and LQ-only (real-world inputs).

Items (the contract every dataset in :mod:`lit_restore.data` follows):

- :class:`ImageFolder`  → ``{"image": [3,H,W] in [0,1], "name": str}``
- :class:`PairedFolder` → ``{"image": hq, "lq": lq, "name": str}`` (both in [0,1])
- :class:`LQFolder`     → ``{"lq": [3,h,w] in [0,1], "name": str}`` (no reference)

Order is deterministic: files are sorted by their path relative to ``root`` (POSIX form), so
index ``i`` is the same image on every machine and rank. ``name`` is that relative path without
its extension (the file stem for a flat folder); output writers use it as the file name.

Files are decoded lazily in ``__getitem__``. With ``on_bad_image="skip"`` every file is decoded
once when the dataset is built; unreadable ones are dropped with a warning that gives their
count and names (never a silent hole). With ``"error"`` (default) reading an unreadable file
raises :class:`~lit_restore.data.io.BadImageError` naming it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from lit_restore.data.io import IMAGE_EXTENSIONS, BadImageError, load_image

ON_BAD_IMAGE = ("error", "skip")


def check_on_bad_image(value: str) -> str:
    if value not in ON_BAD_IMAGE:
        raise ValueError(f"on_bad_image must be one of {ON_BAD_IMAGE}, got {value!r}")
    return value


def _normalise_extensions(extensions: Sequence[str] | None) -> tuple[str, ...]:
    if extensions is None:
        return IMAGE_EXTENSIONS
    if isinstance(extensions, str):
        extensions = [extensions]
    return tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)


def list_images(
    root: str | os.PathLike,
    recursive: bool = True,
    extensions: Sequence[str] | None = None,
) -> list[Path]:
    """Image files under ``root`` with an accepted extension, sorted by relative path.

    Raises:
        FileNotFoundError: ``root`` does not exist or is not a directory.
        ValueError: no image file was found (the message names the folder and the extensions).
    """
    root = Path(root).expanduser()
    exts = _normalise_extensions(extensions)
    if not root.is_dir():
        raise FileNotFoundError(
            f"image folder {str(root)!r} does not exist or is not a directory; check the dataset "
            "root in the data config (see data/README.md for the expected layout)."
        )
    pattern = "**/*" if recursive else "*"
    files = [
        p
        for p in root.glob(pattern)
        if p.is_file() and p.suffix.lower() in exts and not p.name.startswith(".")
    ]
    if not files:
        raise ValueError(
            f"no images found in {str(root)!r} (recursive={recursive}); accepted extensions: "
            f"{', '.join(exts)}. Point the config at the folder holding the images or pass "
            "extensions=[...]."
        )
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _names(files: Sequence[Path], root: Path, strip_suffix: str = "") -> list[str]:
    names = []
    for p in files:
        name = p.relative_to(root).with_suffix("").as_posix()
        if strip_suffix and name.endswith(strip_suffix):
            name = name[: -len(strip_suffix)]
        names.append(name)
    seen: dict[str, Path] = {}
    for name, p in zip(names, files):
        if name in seen:
            raise ValueError(
                f"two files in {str(root)!r} map to the same image name {name!r}: "
                f"{seen[name].name} and {p.name}; remove one of them."
            )
        seen[name] = p
    return names


def drop_unreadable(
    n: int, check: Callable[[int], object], label: Callable[[int], str], where: str
) -> list[int]:
    """Indices ``i < n`` for which ``check(i)`` raises no :class:`BadImageError`; warns about
    the others with their count and names."""
    good, bad = [], []
    for i in range(n):
        try:
            check(i)
        except BadImageError:
            bad.append(label(i))
        else:
            good.append(i)
    if bad:
        shown = ", ".join(bad[:10]) + (f", ... ({len(bad) - 10} more)" if len(bad) > 10 else "")
        warnings.warn(
            f"on_bad_image='skip': skipped {len(bad)} unreadable image(s) of {n} in {where}: "
            f"{shown}",
            stacklevel=3,
        )
    if not good:
        raise ValueError(f"every image in {where} is unreadable ({len(bad)} files)")
    return good


class ImageFolder(Dataset):
    """All images under ``root`` (recursively by default), in sorted order.

    Args:
        root: the folder.
        recursive: also read subfolders (names then carry the relative path, e.g. ``"a/001"``).
        extensions: accepted extensions (default: png, jpg, jpeg, webp, bmp, tif, tiff).
        on_bad_image: ``"error"`` (raise on an unreadable file) or ``"skip"`` (decode all files
            up front, leave out unreadable ones with a warning).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        recursive: bool = True,
        extensions: Sequence[str] | None = None,
        on_bad_image: str = "error",
    ) -> None:
        self.root = Path(root).expanduser()
        self.on_bad_image = check_on_bad_image(on_bad_image)
        self.files = list_images(self.root, recursive, extensions)
        self.names = _names(self.files, self.root)
        if on_bad_image == "skip":
            keep = drop_unreadable(
                len(self.files),
                lambda i: load_image(self.files[i]),
                lambda i: str(self.files[i]),
                str(self.root),
            )
            self.files = [self.files[i] for i in keep]
            self.names = [self.names[i] for i in keep]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        return {"image": load_image(self.files[index]), "name": self.names[index]}

    def path(self, index: int) -> Path:
        return self.files[index]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, n={len(self)})"


class LQFolder(ImageFolder):
    """Real-world low-quality inputs without a reference: items ``{"lq", "name"}``.

    Same arguments as :class:`ImageFolder`. The datamodule does not apply its operator to
    these items; ``y = lq``.
    """

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        return {"lq": load_image(self.files[index]), "name": self.names[index]}


class PairedFolder(Dataset):
    """Paired low-/high-quality images (e.g. RealSR), matched by file name.

    A pair is an LQ file and an HQ file with the same relative path without extension, after
    removing ``lq_suffix``/``hq_suffix`` from the stems (RealSR: ``Canon_001_LR4.png`` ↔
    ``Canon_001_HR.png`` with ``lq_suffix="_LR4"``, ``hq_suffix="_HR"``). When a suffix is given,
    only files whose stem ends with it are considered, so LQ and HQ may share one folder.
    Every file must have a partner; otherwise a ``ValueError`` lists a few unmatched names.

    The LQ image may be smaller than the HQ one by an integer factor (×4 SR pairs); the
    datamodule crops both consistently.
    """

    def __init__(
        self,
        lq_root: str | os.PathLike,
        hq_root: str | os.PathLike,
        lq_suffix: str = "",
        hq_suffix: str = "",
        recursive: bool = True,
        extensions: Sequence[str] | None = None,
        on_bad_image: str = "error",
    ) -> None:
        self.lq_root = Path(lq_root).expanduser()
        self.hq_root = Path(hq_root).expanduser()
        self.on_bad_image = check_on_bad_image(on_bad_image)
        lq = self._select(list_images(self.lq_root, recursive, extensions), lq_suffix)
        hq = self._select(list_images(self.hq_root, recursive, extensions), hq_suffix)
        lq_map = dict(zip(_names(lq, self.lq_root, lq_suffix), lq))
        hq_map = dict(zip(_names(hq, self.hq_root, hq_suffix), hq))
        only_lq = sorted(set(lq_map) - set(hq_map))
        only_hq = sorted(set(hq_map) - set(lq_map))
        if only_lq or only_hq:
            raise ValueError(
                f"PairedFolder: {len(only_lq)} LQ file(s) in {str(self.lq_root)!r} without an HQ "
                f"partner (e.g. {only_lq[:5]}) and {len(only_hq)} HQ file(s) in "
                f"{str(self.hq_root)!r} without an LQ partner (e.g. {only_hq[:5]}); pairs are "
                "matched by relative path without extension (after removing lq_suffix/hq_suffix)."
            )
        self.names = sorted(lq_map)
        self.lq_files = [lq_map[n] for n in self.names]
        self.hq_files = [hq_map[n] for n in self.names]
        if on_bad_image == "skip":
            keep = drop_unreadable(
                len(self.names),
                lambda i: (load_image(self.lq_files[i]), load_image(self.hq_files[i])),
                lambda i: self.names[i],
                f"{self.lq_root} / {self.hq_root}",
            )
            self.names = [self.names[i] for i in keep]
            self.lq_files = [self.lq_files[i] for i in keep]
            self.hq_files = [self.hq_files[i] for i in keep]

    @staticmethod
    def _select(files: list[Path], suffix: str) -> list[Path]:
        if not suffix:
            return files
        chosen = [p for p in files if p.stem.endswith(suffix)]
        if not chosen:
            raise ValueError(
                f"no file stem ends with {suffix!r} (e.g. {[p.name for p in files[:3]]}); "
                "check lq_suffix/hq_suffix."
            )
        return chosen

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        return {
            "image": load_image(self.hq_files[index]),
            "lq": load_image(self.lq_files[index]),
            "name": self.names[index],
        }

    def path(self, index: int) -> Path:
        return self.hq_files[index]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(lq_root={str(self.lq_root)!r}, "
            f"hq_root={str(self.hq_root)!r}, n={len(self)})"
        )
