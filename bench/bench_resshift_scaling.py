"""ResShift's cost per pixel against the image size, untiled and with ``chop_size="auto"``.

    python -m bench.bench_resshift_scaling fit                       # released layouts, the model
    python -m bench.bench_resshift_scaling chain --tiny --sizes 64 128 256

``fit``: the released VQ-f4 autoencoder (``VQModel()``) encodes and decodes latents of side
``--sides``; the time per latent pixel is fitted as ``a + b·side²`` (its mid blocks' attention
is global: cost ∝ N per pixel; everything else is local: constant per pixel), with the share of
one mid attention printed alongside; plus one call of the released Swin UNet per latent pixel
(local: constant). ``√((a + T·unet) / b)`` is the side at which the attention costs as much as
the rest of a T-step chain — :data:`lit_restore.resshift.chain.ATTENTION_EQUAL_SIDE`.

``chain``: the whole ×4 restoration (bicubic↑, encode, T network calls, decode) at LQ sides
``--sizes``, untiled (``chop_size=None``, "before") and ``auto`` ("after"): seconds and peak
memory per output megapixel (CPU: peak-RSS growth in a forked child; CUDA:
``max_memory_allocated``), medians of ``--repeats`` interleaved runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bench_resshift
from bench.measure import (
    interleaved,
    machine,
    median,
    peak_memory,
    run_forked,
    timed,
    write_json,
)
from lit_restore.nn import SwinUNet, VQModel
from lit_restore.resshift.chain import auto_chop_size


@torch.no_grad()
def fit(sides: list[int], steps: int = 4) -> dict:
    vq = VQModel().eval()
    rows = []
    for side in sides:
        z = torch.randn(1, 3, side, side)
        x = torch.randn(1, 3, 4 * side, 4 * side)
        h = vq.decoder.mid.block_1(vq.decoder.conv_in(vq.post_quant_conv(z)))
        t = {
            "decode": timed(partial(vq.decode, z, quantize=False)),
            "encode": timed(partial(vq.encode, x)),
            "attention": timed(partial(vq.decoder.mid.attn_1, h)),
        }
        per_px = (t["decode"] + t["encode"]) / side**2 * 1e3
        rows.append({"side": side, **t, "ms_per_latent_px": per_px,
                     "attention_share": 2 * t["attention"] / (t["decode"] + t["encode"])})  # fmt: skip
        print(rows[-1], flush=True)
    # least squares of ms/px = a + b·side²
    n2 = torch.tensor([float(r["side"] ** 2) for r in rows], dtype=torch.float64)
    cost = torch.tensor([r["ms_per_latent_px"] for r in rows], dtype=torch.float64)
    design = torch.stack([torch.ones_like(n2), n2], 1)
    a, b = torch.linalg.lstsq(design, cost[:, None]).solution.flatten().tolist()
    net = SwinUNet().eval()
    z = torch.randn(1, 3, 64, 64)
    t_net = interleaved({"u": lambda: net(z, torch.tensor([1]), lq=z)}, 3)["u"]
    unet_ms = median(t_net) / 64**2 * 1e3
    equal = ((a + steps * unet_ms) / b) ** 0.5
    out = {"rows": rows, "a_ms": a, "b_ms": b, "unet_ms_per_px": unet_ms, "equal_side": equal}
    print(f"a = {a:.2f} ms, b = {b:.2e} ms, UNet {unet_ms:.2f} ms/px → equal side {equal:.0f}")
    return out


#: "before" (untiled) and "after" (the module default)
VARIANTS = {"untiled": None, "auto": "auto"}


def _restore(size: int, chop, tiny: bool):
    m = bench_resshift.build("cpu", tiny=tiny)
    m.eval()
    m.chain.chop_size = chop
    lq = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    batch = {"lq": lq, "index": torch.tensor([0])}

    def run() -> None:
        with torch.no_grad():
            m.restore(batch)

    return run


def _chain_memory(size: int, chop, tiny: bool) -> tuple[float, str]:
    run = _restore(size, chop, tiny)
    return peak_memory(run, "cpu")


def auto_tile(size: int, tiny: bool) -> int | None:
    """The tile side ``chop_size="auto"`` picks for a ``size``² LQ image (None = untiled)."""
    m = bench_resshift.build("cpu", tiny=tiny)
    s, ds = m.chain, m.first_stage.downscale
    off = s._offset(m.network, m.first_stage)
    side = -(-size // off) * off  # padded as the chain pads
    return auto_chop_size(side, side, off, s.chop_overlap, s.sf / ds, max(1, ds // s.sf))


def _chain_times(size: int, tiny: bool, repeats: int) -> dict[str, list[float]]:
    fns = {v: _restore(size, c, tiny) for v, c in VARIANTS.items()}
    return interleaved(fns, repeats)


def chain(
    sizes: list[int], tiny: bool, repeats: int, on_row: Callable[[list[dict]], None] | None = None
) -> list[dict]:
    """One row per LQ side, ascending; ``on_row(rows)`` after each (the JSON is written row by
    row, so a run stopped at a large size keeps the smaller ones). Every measurement runs in a
    forked child of a parent that runs nothing itself: a child inherits its parent's allocator
    free lists, which would hide its allocations from the peak-RSS window."""
    rows: list[dict] = []
    for size in sorted(sizes):
        mem = {v: run_forked(_chain_memory, size, c, tiny)[0] for v, c in VARIANTS.items()}
        times = run_forked(_chain_times, size, tiny, repeats)
        mpx = (4 * size) ** 2 / 1e6
        row = {
            "lq": size,
            "out_mpx": mpx,
            "s_per_image": {v: median(t) for v, t in times.items()},
            "peak_mib": mem,
            "s_per_mpx": {v: median(t) / mpx for v, t in times.items()},
            "peak_mib_per_mpx": {v: m / mpx for v, m in mem.items()},
            "auto_tile_lq_px": auto_tile(size, tiny),
            "times": times,
            "load_average_1min": os.getloadavg()[0],
        }
        rows.append(row)
        print(row, flush=True)
        if on_row is not None:
            on_row(rows)
    return rows


def markdown(rows: list[dict]) -> str:
    """The end-to-end table: s/image, s and peak MiB per output megapixel, untiled and auto."""
    lines = [
        "| LQ side (output) | auto tile (LQ px) | s/image untiled → auto "
        "| s per output Mpx untiled → auto | peak MiB untiled → auto "
        "| peak MiB per output Mpx untiled → auto |",
        "|---" * 6 + "|",
    ]
    for r in rows:
        t, m = r["s_per_image"], r["peak_mib"]
        tm, mm = r["s_per_mpx"], r["peak_mib_per_mpx"]
        tile = r["auto_tile_lq_px"] or "untiled"
        lines.append(
            f"| {r['lq']} ({4 * r['lq']}²) | {tile} | {t['untiled']:.2f} → {t['auto']:.2f} "
            f"| {tm['untiled']:.1f} → {tm['auto']:.1f} | {m['untiled']:.0f} → {m['auto']:.0f} "
            f"| {mm['untiled']:.0f} → {mm['auto']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["fit", "chain"])
    ap.add_argument("--sides", type=int, nargs="+", default=[32, 64, 96, 128])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()

    def meta() -> dict:
        return {"machine": machine(), "args": {**vars(args), "json": str(args.json)},
                "wall_s": time.perf_counter() - start,
                "load_average_1min_before_after": [load_before, os.getloadavg()[0]]}  # fmt: skip

    def save(rows: list[dict]) -> None:
        if args.json:
            write_json(args.json, {"meta": meta(), "rows": rows})

    if args.mode == "fit":
        result = fit(args.sides)
        if args.json:
            write_json(args.json, {"meta": meta(), **result})
        return result
    rows = chain(args.sizes, args.tiny, args.repeats, on_row=save)
    print(markdown(rows))
    return {"rows": rows}


if __name__ == "__main__":
    main()
