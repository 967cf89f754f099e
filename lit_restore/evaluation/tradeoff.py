"""The quality / cost trade-off of the runs in a comparison: one labelled point per run.

Two panels share the quality axis — PSNR (dB, higher is better) or LPIPS (lower is better) when
every run has it — against **seconds per image** and against **NFE per image** (network
evaluations), both on a log axis (costs span decades: A⁺y ~10 ms and 0 NFE, DPS 1000 NFE). A
cost of 0 sits at the axis's left end, labelled ``0``. The values are the runs' aggregates, the
same as the comparison table (mean of the per-image values of ``per_image_<stage>.csv``, equal
to ``summary_<stage>.json``). ``compare`` writes ``tradeoff.png`` with the numbers beside it
(``tradeoff.csv``, ``tradeoff.json``). Drawn with PIL (:mod:`lit_restore.evaluation.drawing`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw

from lit_restore.evaluation.drawing import draw_lines, font, line_height, printable, text_width

#: quality metrics the plot can show: name -> (axis label, higher is better)
QUALITY = {
    "psnr": ("PSNR (dB), higher is better", True),
    "lpips": ("LPIPS, lower is better", False),
}
#: cost axes: summary column -> axis label
COSTS = {"seconds_per_image": "seconds per image (log)", "nfe_per_image": "NFE per image (log)"}
#: point colours, one per run in order (Okabe–Ito palette, distinguishable with colour blindness)
PALETTE = [
    (0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0),
    (86, 180, 233), (0, 0, 0), (240, 228, 66),
]  # fmt: skip
PANEL = (440, 330)
MARGIN = {"left": 64, "right": 18, "top": 30, "bottom": 44}


def quality_metric(runs: Sequence[dict]) -> str:
    """``lpips`` when every run has a finite LPIPS, else ``psnr``."""

    def has(r: dict, m: str) -> bool:
        v = r["metrics"].get(m)
        return v is not None and math.isfinite(v)

    return "lpips" if runs and all(has(r, "lpips") for r in runs) else "psnr"


def points(runs: Sequence[dict], metric: str) -> list[dict]:
    """One point per run: its label, directory, ``metric`` and the two costs."""
    return [
        {
            "run": r["label"],
            "dir": str(r["dir"]),
            "metric": metric,
            "value": float(r["metrics"].get(metric, float("nan"))),
            **{c: float(r["metrics"].get(c, float("nan"))) for c in COSTS},
        }
        for r in runs
    ]


def to_csv(pts: Sequence[dict]) -> str:
    cols = ["run", "dir", "metric", "value", *COSTS]
    lines = [",".join(cols)]
    for p in pts:
        lines.append(
            ",".join(
                [f'"{p["run"]}"', f'"{p["dir"]}"', p["metric"]]
                + [repr(float(p[c])) for c in ("value", *COSTS)]
            )
        )
    return "\n".join(lines) + "\n"


def to_json(pts: Sequence[dict]) -> str:
    return json.dumps([{k: _json_number(v) for k, v in p.items()} for p in pts], indent=1) + "\n"


def _json_number(v):
    return None if isinstance(v, float) and not math.isfinite(v) else v


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round ticks (steps of 1, 2 or 5 × 10^k) covering ``[lo, hi]``."""
    if not hi > lo:
        lo, hi = lo - 1, hi + 1
    raw = (hi - lo) / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    k = 0
    while first + k * step <= hi + step * 1e-9:
        ticks.append(round(first + k * step, 12))
        k += 1
    if ticks[-1] < hi:
        ticks.append(round(first + k * step, 12))
    return ticks


def log_axis(values: Sequence[float]) -> tuple[float, float, bool]:
    """``(lo, hi, has_zero)`` in log10 units: whole decades around the positive ``values``; a
    zero value takes one more decade at the left end."""
    pos = [v for v in values if math.isfinite(v) and v > 0]
    lo = math.floor(math.log10(min(pos))) if pos else 0
    hi = math.ceil(math.log10(max(pos))) if pos else 1
    if hi <= lo:
        hi = lo + 1
    has_zero = any(math.isfinite(v) and v <= 0 for v in values)
    return (lo - 1 if has_zero else lo), hi, has_zero


def _decade_label(k: int) -> str:
    return f"{10.0**k:g}" if -3 <= k <= 4 else f"1e{k}"


def _panel(
    canvas: Image.Image,
    origin: tuple[int, int],
    pts: Sequence[dict],
    cost: str,
    metric: str,
    y_range: tuple[float, float],
) -> list[tuple[int, int] | None]:
    """One panel at ``origin``; returns each point's pixel centre (``None``: not plotted)."""
    draw = ImageDraw.Draw(canvas)
    f = font()
    lh = line_height(f)
    ox, oy = origin
    left, top = ox + MARGIN["left"], oy + MARGIN["top"]
    right, bottom = ox + PANEL[0] - MARGIN["right"], oy + PANEL[1] - MARGIN["bottom"]
    draw.rectangle((left, top, right, bottom), outline="black")
    lo, hi, has_zero = log_axis([p[cost] for p in pts])
    y_lo, y_hi = y_range

    def px(v: float) -> float:
        k = lo if v <= 0 else math.log10(v)
        return left + (k - lo) / (hi - lo) * (right - left)

    def py(v: float) -> float:
        return bottom - (v - y_lo) / (y_hi - y_lo) * (bottom - top)

    ticks = [
        (10.0**k, "0" if has_zero and k == lo else _decade_label(k)) for k in range(lo, hi + 1)
    ]
    if hi - lo <= 2:  # few decades: 2 and 5 times each as well
        first = lo + 1 if has_zero else lo
        ticks += [(m * 10.0**k, f"{m * 10.0**k:g}") for k in range(first, hi) for m in (2, 5)]
    for value, label in ticks:
        x = round(px(value))
        draw.line((x, bottom, x, bottom + 4), fill="black")
        draw.text((x - text_width(label, f) / 2, bottom + 6), label, fill="black", font=f)
    for t in nice_ticks(y_lo, y_hi):
        if y_lo - 1e-12 <= t <= y_hi + 1e-12:
            y = round(py(t))
            draw.line((left - 4, y, left, y), fill="black")
            label = f"{t:g}"
            draw.text((left - 7 - text_width(label, f), y - lh // 2), label, fill="black", font=f)
    draw_lines(draw, (left, bottom + 6 + lh), [COSTS[cost]], f, width=right - left)
    draw_lines(draw, (ox + 4, oy + 6), [QUALITY.get(metric, (metric, True))[0]], f)
    placed: list[tuple[int, int] | None] = []
    for i, p in enumerate(pts):
        v, c = p["value"], p[cost]
        if not (math.isfinite(v) and math.isfinite(c)):
            placed.append(None)
            continue
        x, y = round(px(c)), round(py(v))
        colour = PALETTE[i % len(PALETTE)]
        draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=colour, outline="black")
        label = printable(p["run"], f)
        w = text_width(label, f)
        tx = x + 7 if x + 7 + w <= right - 2 else x - 7 - w
        draw.text((tx, y - lh // 2 - 1), label, fill=colour, font=f)
        placed.append((x, y))
    return placed


def plot(pts: Sequence[dict], metric: str) -> tuple[Image.Image, dict[str, list]]:
    """Both panels side by side; returns the image and, per cost column, each point's pixel
    centre (in ``pts`` order; ``None`` where a value is missing)."""
    values = [p["value"] for p in pts if math.isfinite(p["value"])]
    if values:
        lo, hi = min(values), max(values)
        pad = 0.1 * (hi - lo) if hi > lo else 1.0
        ticks = nice_ticks(lo - pad, hi + pad)
        y_range = (ticks[0], ticks[-1])
    else:
        y_range = (0.0, 1.0)
    canvas = Image.new("RGB", (PANEL[0] * len(COSTS), PANEL[1]), "white")
    where: dict[str, list] = {}
    for k, cost in enumerate(COSTS):
        where[cost] = _panel(canvas, (k * PANEL[0], 0), pts, cost, metric, y_range)
    return canvas, where
