"""Text and boxes on PIL images: what the comparison figure, the run grids and the trade-off plot
share.

Text uses Pillow's own default font (``ImageFont.load_default(size)``: since Pillow 10.1 a
scalable FreeType font shipped inside Pillow, Aileron Regular; Pillow built without FreeType
falls back to its fixed bitmap font). Nothing is bundled here and nothing heavier than Pillow
(no matplotlib) is needed to draw a figure.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lit_restore.utils.tables import atomic_write_bytes

#: text size of labels (px)
FONT_SIZE = 12
#: the outline colour of zoom boxes (and of nothing else, so it reads as "this region")
BOX_COLOUR = (255, 40, 40)
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

Box = tuple[int, int, int, int]  # (left, top, right, bottom), right/bottom exclusive


@functools.lru_cache(maxsize=8)
def font(size: int = FONT_SIZE) -> Font:
    """Pillow's default font at ``size`` px (module docstring)."""
    try:
        return ImageFont.load_default(size)
    except (TypeError, OSError):  # Pillow < 10.1 or without FreeType: the bitmap font
        return ImageFont.load_default()


#: ASCII stand-ins for characters the default font may lack (it covers Latin text, not maths)
_STAND_INS = {"×": "x", "–": "-", "—": "-", "⁺": "+", "²": "2", "σ": "sigma", "η": "eta", "↑": "^"}


@functools.lru_cache(maxsize=4096)
def _has_glyph(f: Font, ch: str) -> bool:
    """Whether ``f`` draws ``ch`` as itself rather than its "missing glyph" box."""
    if ch.isascii():
        return True
    return bytes(f.getmask(ch)) != bytes(f.getmask("\ue000"))  # a private-use point: the box


def printable(text: str, f: Font) -> str:
    """``text`` with characters ``f`` cannot draw replaced by ASCII stand-ins (``?`` if none)."""
    return "".join(ch if _has_glyph(f, ch) else _STAND_INS.get(ch, "?") for ch in text)


def line_height(f: Font) -> int:
    """Pixels from one text line to the next."""
    return int(f.getbbox("Ag")[3]) + 2


def text_width(text: str, f: Font) -> float:
    return float(f.getlength(text))


def wrap(text: str, f: Font, width: int, max_lines: int | None = None) -> list[str]:
    """``text`` broken into lines no wider than ``width`` px: at spaces and after ``/``, ``_``,
    ``.``, ``-`` where possible, inside a word where a word alone is too wide. Past
    ``max_lines`` the last line ends in ``…``. Characters the font lacks become stand-ins
    (:func:`printable`)."""
    text = printable(text, f)
    tokens: list[str] = []
    word = ""
    for ch in text:
        word += ch
        if ch in " /_.-":
            tokens.append(word)
            word = ""
    if word:
        tokens.append(word)
    lines: list[str] = []
    line = ""
    for tok in tokens:
        if text_width((line + tok).rstrip(), f) <= width:
            line += tok
            continue
        if line.strip():
            lines.append(line.rstrip())
        line = ""
        for ch in tok:  # a token wider than the line: break it
            if line and text_width(line + ch, f) > width:
                lines.append(line)
                line = ""
            line += ch
    if line.strip():
        lines.append(line.rstrip())
    if max_lines is not None and len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and text_width(last + "…", f) > width:
            last = last[:-1]
        lines = [*lines[: max_lines - 1], last + "…"]
    return lines


def draw_lines(
    draw: ImageDraw.ImageDraw,
    xy: tuple[int, int],
    lines: Sequence[str],
    f: Font,
    fill: str | tuple[int, int, int] = "black",
    width: int | None = None,
) -> int:
    """Draw ``lines`` from ``xy`` down (centred in ``width`` px when given); returns the y below."""
    x, y = xy
    step = line_height(f)
    for text in (printable(t, f) for t in lines):
        dx = 0 if width is None else max(0, int((width - text_width(text, f)) / 2))
        draw.text((x + dx, y), text, fill=fill, font=f)
        y += step
    return y


def outline(draw: ImageDraw.ImageDraw, box: Box, width: int = 1) -> None:
    """The outline of ``box`` (exclusive right/bottom) in :data:`BOX_COLOUR`."""
    left, top, right, bottom = box
    draw.rectangle((left, top, right - 1, bottom - 1), outline=BOX_COLOUR, width=width)


def to_pil(x: np.ndarray) -> Image.Image:
    """An [H, W, C] (or [H, W]) float image in [0, 1] as an 8-bit RGB PIL image (rounded the way
    :func:`lit_restore.data.io.save_png` rounds)."""
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return Image.fromarray((np.clip(a, 0, 1) * 255).round().astype(np.uint8), "RGB")


def write_png(path: Path, image: Image.Image) -> None:
    """``image`` as a PNG at ``path``, atomically (temp file + ``os.replace``)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
