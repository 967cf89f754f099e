"""Image files in and out: one documented rule from any common file to a float RGB tensor.

Reading (:func:`load_image`) turns a png/jpg/jpeg/webp/bmp/tif(f) file into a ``[C, H, W]``
float32 tensor in [0, 1] (``C = 3`` unless ``mode="keep"`` asks otherwise), by this rule:

================  ==========================================================================
PIL mode          conversion
================  ==========================================================================
``RGB``           ``/ 255``
``L``, ``1``      grey replicated to 3 channels (``/ 255``)
``P``, ``PA``     palette expanded to RGB(A) first, then as below
``RGBA``, ``LA``  **alpha composited on white**: ``c·α + 1·(1-α)`` (transparent → white)
``I;16*``, ``I``  16-bit integer samples (16-bit greyscale PNG/TIFF) ``/ 65535``, replicated
``F``             float samples clamped to [0, 1], replicated
``CMYK``          PIL's ``CMYK → RGB`` conversion (Pillow 13: ``(255-C)(255-K)/255``)
``YCbCr``, ...    PIL's ``convert("RGB")``
================  ==========================================================================

**Orientation**: a JPEG/TIFF/WebP EXIF ``Orientation`` tag (a camera's "rotate 90°" flag) is
applied first (``PIL.ImageOps.exif_transpose``), so the tensor is the image as viewers show it;
:func:`image_size` reports that displayed size too.

A file that PIL cannot decode completely (truncated, corrupt, not an image) raises
:class:`BadImageError` naming the file; nothing is silently padded (PIL's
``LOAD_TRUNCATED_IMAGES`` is left off).

Writing (:func:`save_png`) is atomic: the PNG goes to a temp file in the target directory and
is moved into place with ``os.replace``, so a crash never leaves a torn file behind.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from lit_restore.utils.tables import atomic_write_bytes

#: File extensions (lower case, with the dot) that image folders accept by default.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class BadImageError(ValueError):
    """An image file could not be read (truncated, corrupt, unsupported). ``.path`` names it."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        super().__init__(
            f"cannot read image {self.path}: {reason}. Replace or delete the file, or set "
            "on_bad_image='skip' to leave unreadable files out (with a warning)."
        )


def _composite_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return rgb * a + (1.0 - a)


def pil_to_tensor01(img: Image.Image) -> Tensor:
    """Convert a decoded PIL image to ``[3, H, W]`` float32 in [0, 1] by the module's rule."""
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    elif mode == "PA":
        img = img.convert("RGBA")
        mode = "RGBA"

    if mode == "RGB":
        arr = np.asarray(img, dtype=np.float32) / 255.0
    elif mode in ("L", "1"):
        g = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
        arr = np.repeat(g[..., None], 3, axis=2)
    elif mode == "RGBA":
        a = np.asarray(img, dtype=np.float32) / 255.0
        arr = _composite_on_white(a[..., :3], a[..., 3])
    elif mode == "LA":
        a = np.asarray(img, dtype=np.float32) / 255.0
        arr = _composite_on_white(np.repeat(a[..., :1], 3, axis=2), a[..., 1])
    elif mode.startswith("I;16") or mode == "I":
        # 16-bit grey (PNG loads as "I" or "I;16", TIFF as "I;16"/"I;16B"): full scale is 65535.
        g = np.asarray(img).astype(np.float32)  # handles little/big-endian uint16 and int32
        g = np.clip(g / 65535.0, 0.0, 1.0)
        arr = np.repeat(g[..., None], 3, axis=2)
    elif mode == "F":
        g = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        arr = np.repeat(g[..., None], 3, axis=2)
    else:  # CMYK, YCbCr, LAB, HSV, RGBX, ...: PIL's own conversion
        arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float()


def load_image(path: str | os.PathLike) -> Tensor:
    """Read ``path`` into ``[3, H, W]`` float32 in [0, 1] (rule in the module docstring).

    Raises:
        BadImageError: the file is missing, truncated, corrupt or not an image.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()  # decode fully now: a truncated file fails here, not later
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            return pil_to_tensor01(ImageOps.exif_transpose(img))
    except FileNotFoundError as e:
        raise BadImageError(path, "file not found") from e
    except UnidentifiedImageError as e:
        raise BadImageError(path, "not a recognised image format") from e
    except (OSError, ValueError, SyntaxError) as e:
        raise BadImageError(path, f"{type(e).__name__}: {e}") from e


#: EXIF ``Orientation`` values that turn the image by 90° (transpose, 90° CW/CCW, transverse).
_QUARTER_TURNS = (5, 6, 7, 8)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(H, W)`` as :func:`load_image` returns it (EXIF orientation applied), from the file
    header alone (cheap; no decoding)."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112)  # EXIF "Orientation"
    except (OSError, ValueError, SyntaxError) as e:
        raise BadImageError(path, f"{type(e).__name__}: {e}") from e
    return (w, h) if orientation in _QUARTER_TURNS else (h, w)


def tensor_to_uint8(image01: Tensor) -> np.ndarray:
    """``[C, H, W]`` (C = 1 or 3) float in [0, 1] → ``[H, W, C]`` uint8 (rounded, clamped)."""
    if image01.dim() != 3 or image01.shape[0] not in (1, 3):
        raise ValueError(f"expected a [1|3, H, W] image tensor, got shape {tuple(image01.shape)}")
    arr = image01.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    return arr.transpose(1, 2, 0)


def save_png(image01: Tensor, path: str | os.PathLike) -> Path:
    """Atomically write a ``[C, H, W]`` tensor in [0, 1] as an 8-bit PNG at ``path``.

    The file is written to a temp file in the same directory and moved with ``os.replace``
    (atomic on POSIX and Windows), so readers never see a half-written PNG. Parent directories
    are created. Returns the path.
    """
    path = Path(path)
    arr = tensor_to_uint8(image01)
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path
