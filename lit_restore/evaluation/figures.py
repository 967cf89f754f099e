"""Image figures a researcher reads: the paged comparison of runs and the labelled run grid.

**Comparison pages** (:func:`comparison_pages`, written by ``python -m
lit_restore.evaluation.compare``). Columns: the measurement, one per run, the reference; each
column is headed by its full name (method, classes, run ``name/version``). Per image, two rows:

* the images, each with its own scores printed under it (:func:`caption`: PSNR in dB · SSIM,
  the values of the run's ``per_image_<stage>.csv`` for that image), and the zoom box outlined;
* the zoom row: the same region of every column, enlarged (nearest neighbour: pixels stay
  pixels). The region is chosen once per image — the window of highest variance of the reference
  (:func:`zoom_box`; without a reference, of the first column that has the image) — and mapped
  to each column's own pixel grid (:func:`scale_box`; the measurement of SR×4 is 4× smaller), so
  every column shows the same part of the scene.

Images come ``per_page`` to a page (:func:`paginate`); every image appears on exactly one page.
Each page also returns its :class:`Tile` records (where each tile went, its caption and zoom
box), which is what the tests check instead of looking at the picture.

**Run grid** (:func:`labelled_grid`): one run's rows (measurement | restored | reference) under a
header naming the run and the columns (:class:`lit_restore.evaluation.ImageGridLogger`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageDraw

from lit_restore.evaluation.drawing import (
    Box,
    draw_lines,
    font,
    line_height,
    outline,
    to_pil,
    wrap,
)

T = TypeVar("T")

#: side of the zoom window as a fraction of the reference's shorter side
ZOOM_FRACTION = 0.25
#: the tile size (px) used when none is given: the image size, kept within these bounds
TILE_BOUNDS = (128, 256)
#: width of the row-label column (px)
NAME_WIDTH = 96
PAD = 4
BACKGROUND = "white"


def caption(row: Mapping[str, float] | None, metrics: Sequence[str] = ("psnr", "ssim")) -> str:
    """The scores printed under a tile: ``"21.67 dB · 0.335"`` (PSNR to 0.01 dB, SSIM to 0.001,
    LPIPS to 0.001); a metric without a value is ``n/a``, one the run did not score is left out;
    no row at all (measurement, reference): an empty caption."""
    if row is None:
        return ""
    parts = []
    for m in metrics:
        if m not in row:  # not scored at all (no reference: predict)
            continue
        v = row[m]
        if v is None or (isinstance(v, float) and math.isnan(v)):
            parts.append("n/a")
        elif m == "psnr":
            parts.append(f"{v:.2f} dB")
        else:
            parts.append(f"{v:.3f}")
    return " · ".join(parts)


def caption_legend(metrics: Sequence[str] = ("psnr", "ssim")) -> str:
    """What :func:`caption` prints, in words (``"PSNR (dB) · SSIM"``)."""
    return " · ".join("PSNR (dB)" if m == "psnr" else m.upper() for m in metrics)


def zoom_box(image: np.ndarray, fraction: float = ZOOM_FRACTION) -> Box:
    """The square window of highest variance of ``image`` ([H, W, C] or [H, W]).

    The side is ``fraction`` of the shorter image side (at least 4 px, at most the image); the
    windows are those starting on a grid of step ``max(1, side // 4)`` (plus the last position
    in each direction); the variance is that of the grey level (channel mean) over the window,
    from integral images. Ties go to the first window in raster order."""
    g = np.asarray(image, dtype=np.float64)
    if g.ndim == 3:
        g = g.mean(axis=-1)
    h, w = g.shape
    side = min(h, w, max(4, round(min(h, w) * fraction)))
    step = max(1, side // 4)
    s1 = np.pad(g.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    s2 = np.pad((g * g).cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def starts(n: int) -> list[int]:
        out = list(range(0, n - side + 1, step))
        return out if out[-1] == n - side else [*out, n - side]

    ys, xs = np.array(starts(h))[:, None], np.array(starts(w))[None, :]

    def window_sum(s: np.ndarray) -> np.ndarray:
        return s[ys + side, xs + side] - s[ys, xs + side] - s[ys + side, xs] + s[ys, xs]

    n = side * side
    var = window_sum(s2) / n - (window_sum(s1) / n) ** 2
    iy, ix = np.unravel_index(int(np.argmax(var)), var.shape)
    top, left = int(ys[iy, 0]), int(xs[0, ix])
    return (left, top, left + side, top + side)


def scale_box(box: Box, from_size: tuple[int, int], to_size: tuple[int, int]) -> Box:
    """``box`` on an image of ``from_size`` (W, H) mapped onto the same scene at ``to_size``:
    edges scaled, left/top rounded down and right/bottom up (the mapped box covers the region),
    at least one pixel wide and high."""
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    left, top = math.floor(box[0] * sx + 1e-9), math.floor(box[1] * sy + 1e-9)
    right = max(left + 1, math.ceil(box[2] * sx - 1e-9))
    bottom = max(top + 1, math.ceil(box[3] * sy - 1e-9))
    return (left, top, min(right, to_size[0]), min(bottom, to_size[1]))


def paginate(items: Sequence[T], per_page: int) -> list[list[T]]:
    """``items`` in pages of ``per_page`` (the last one shorter); every item on one page."""
    if per_page < 1:
        raise ValueError(f"per_page must be at least 1, got {per_page}")
    return [list(items[i : i + per_page]) for i in range(0, len(items), per_page)]


def default_tile(width: int) -> int:
    """The tile size for images ``width`` px wide (:data:`TILE_BOUNDS`)."""
    return int(min(max(width, TILE_BOUNDS[0]), TILE_BOUNDS[1]))


@dataclass
class Column:
    """One column of the comparison: a title, where its images are, and their scores.

    Attributes:
        title: header lines (each wrapped to the tile width).
        image: ``name -> PIL image or None`` (the column's image of that name).
        scores: ``name -> CSV row`` (only for restorations: their captions).
        kind: ``measurement``, ``restored`` or ``reference``.
    """

    title: list[str]
    image: Callable[[str], Image.Image | None]
    scores: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    kind: str = "restored"


def png_folder(folder: Path | None) -> Callable[[str], Image.Image | None]:
    """``name -> RGB image of <folder>/<name>.png`` (``None`` when absent)."""

    def read(name: str) -> Image.Image | None:
        if folder is None:
            return None
        path = folder / f"{name}.png"
        if not path.is_file():
            return None
        with Image.open(path) as img:
            return img.convert("RGB")

    return read


@dataclass(frozen=True)
class Tile:
    """Where one tile of a page went (canvas pixels) and what it shows."""

    name: str
    column: int
    image_rect: Box  # the image tile on the page
    caption: str  # the text printed under it
    zoom_rect: Box  # the enlarged region on the page
    crop: Box  # the region, in the column image's own pixels
    crop_on_reference: Box  # the same region in the reference's pixels (one per image)
    outline: Box  # the region's outline drawn on the image tile (page pixels)


def _reference_image(columns: Sequence[Column], name: str) -> Image.Image | None:
    """The image the zoom box is chosen on: the reference, else the first column having one."""
    order = sorted(range(len(columns)), key=lambda c: columns[c].kind != "reference")
    for c in order:
        img = columns[c].image(name)
        if img is not None:
            return img
    return None


def comparison_pages(
    columns: Sequence[Column],
    names: Sequence[str],
    labels: Mapping[str, str] | None = None,
    per_page: int = 8,
    tile: int | None = None,
    metrics: Sequence[str] = ("psnr", "ssim"),
    title: str = "",
) -> list[tuple[Image.Image, list[Tile]]]:
    """The comparison figure as pages (module docstring): ``(image, tiles)`` per page.

    ``labels``: the row label of each name (default the name)."""
    if not names or not columns:
        return []
    first = next((img for n in names for c in columns if (img := c.image(n)) is not None), None)
    if first is None:
        return []
    tw = tile or default_tile(first.size[0])
    th = max(1, round(tw * first.size[1] / first.size[0]))
    f = font()
    lh = line_height(f)
    titles = [[line for t in c.title for line in wrap(t, f, tw, max_lines=2)] for c in columns]
    head = PAD + max(2, max(len(t) for t in titles)) * lh + PAD
    block = th + lh + 2 + th + 3 * PAD  # image row, caption, zoom row, gaps
    pages = paginate(list(names), per_page)
    out = []
    for p, page_names in enumerate(pages):
        width = NAME_WIDTH + len(columns) * (tw + PAD) + PAD
        height = head + len(page_names) * block + lh + PAD
        canvas = Image.new("RGB", (width, height), BACKGROUND)
        draw = ImageDraw.Draw(canvas)
        corner = [f"page {p + 1}/{len(pages)}"] if len(pages) > 1 else []
        draw_lines(draw, (PAD, PAD), [*wrap(title, f, NAME_WIDTH - PAD), *corner], f)
        for c, lines in enumerate(titles):
            draw_lines(draw, (NAME_WIDTH + c * (tw + PAD), PAD), lines, f, width=tw)
        tiles: list[Tile] = []
        for r, name in enumerate(page_names):
            y = head + r * block
            label = (labels or {}).get(name, name)
            draw_lines(draw, (PAD, y + PAD), wrap(label, f, NAME_WIDTH - 2 * PAD, 6), f)
            ref = _reference_image(columns, name)
            ref_box = zoom_box(np.asarray(ref)) if ref is not None else (0, 0, 1, 1)
            for c, col in enumerate(columns):
                x = NAME_WIDTH + c * (tw + PAD)
                img = col.image(name)
                text = caption(col.scores.get(name), metrics) if col.kind == "restored" else ""
                if img is None:
                    draw_lines(draw, (x, y + th // 2), ["(missing)"], f, fill="gray", width=tw)
                    continue
                assert ref is not None
                crop = scale_box(ref_box, ref.size, img.size)
                resample = Image.NEAREST if img.size[0] <= tw else Image.BICUBIC
                canvas.paste(img.resize((tw, th), resample), (x, y))
                box_on_page = _on_tile(crop, img.size, x, y, tw, th)
                outline(draw, box_on_page)
                if col.kind == "measurement" and not text:
                    text = f"{img.size[0]}x{img.size[1]} px"
                draw_lines(draw, (x, y + th + 1), [text], f, width=tw)
                zy = y + th + lh + 2 + PAD
                canvas.paste(img.crop(crop).resize((tw, th), Image.NEAREST), (x, zy))
                tiles.append(
                    Tile(
                        name, c, (x, y, x + tw, y + th), text, (x, zy, x + tw, zy + th), crop,
                        ref_box, box_on_page,
                    )
                )  # fmt: skip
        legend = (
            f"under each restoration: {caption_legend(metrics)}; "
            "below each image row: the outlined region, enlarged"
        )
        draw_lines(draw, (PAD, height - lh - PAD // 2), wrap(legend, f, width - 2 * PAD, 1), f)
        out.append((canvas, tiles))
    return out


def _on_tile(crop: Box, size: tuple[int, int], x: int, y: int, tw: int, th: int) -> Box:
    """``crop`` (image pixels) as a rectangle on the tile drawn at ``(x, y)``."""
    left, top, right, bottom = scale_box(crop, size, (tw, th))
    return (x + left, y + top, x + right, y + bottom)


def labelled_grid(
    rows: Sequence[Sequence[np.ndarray | None]],
    column_titles: Sequence[str],
    title: str,
    row_labels: Sequence[str] = (),
) -> tuple[Image.Image, list[list[Box | None]]]:
    """One run's grid: a ``title`` line, ``column_titles``, then ``rows`` of [H, W, C] images in
    [0, 1] (all the size of the first; ``None`` leaves a cell empty), each row labelled on the
    left by ``row_labels`` when given. Returns the image and where each image went
    (``cells[row][col]``, ``None`` for an empty cell)."""
    f = font()
    lh = line_height(f)
    h, w = np.asarray(next(i for r in rows for i in r if i is not None)).shape[:2]
    ncol = max(len(r) for r in rows)
    name_w = NAME_WIDTH if row_labels else 0
    title_lines = wrap(title, f, name_w + ncol * (w + PAD) - PAD)
    col_lines = [wrap(t, f, w, max_lines=2) for t in column_titles]
    head = PAD + (len(title_lines) + max([1, *map(len, col_lines)])) * lh + PAD
    canvas = Image.new(
        "RGB", (name_w + ncol * (w + PAD) + PAD, head + len(rows) * (h + PAD)), BACKGROUND
    )
    draw = ImageDraw.Draw(canvas)
    y = draw_lines(draw, (PAD, PAD), title_lines, f)
    for c, lines in enumerate(col_lines):
        draw_lines(draw, (name_w + PAD + c * (w + PAD), y), lines, f, width=w)
    cells: list[list[Box | None]] = []
    for r, row in enumerate(rows):
        top = head + r * (h + PAD)
        if row_labels:
            draw_lines(draw, (PAD, top + PAD), wrap(row_labels[r], f, name_w - 2 * PAD, 4), f)
        cells.append([])
        for c, img in enumerate(row):
            left = name_w + PAD + c * (w + PAD)
            if img is None:
                cells[-1].append(None)
                continue
            canvas.paste(to_pil(img), (left, top))
            cells[-1].append((left, top, left + w, top + h))
    return canvas, cells
