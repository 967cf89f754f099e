"""One command on one GPU: every row of the performance table, twice, in about 8 minutes.

    python -m bench.run_gpu                       # or bench/run_gpu.sh; writes JSON + README table
    python -m bench.run_gpu --smoke               # CPU, reduced sizes (the test suite runs this)

Rows (goals for an H100/H200-class GPU): DPS and SaFaRI on the ADM FFHQ-256 and ImageNet-256
priors (1000 NFE, s/image at the batch used), DDRM 20 / DDNM 100 / DDPG 100 steps on FFHQ-256
(images/s), ResShift-4 ×4 → 256² inference (images/s) and ResShift training (images/s/GPU,
batch 64 at 256², LPIPS), each with its peak memory per image. Every row runs twice:

* ``official`` — float32, batch 1, no compile, contiguous layout: what the parity checks show
  computes what the official code computes (training: float32 at the row's batch 64);
* ``fast`` — ``precision="bf16"``, ``compile``, ``channels_last`` and a larger batch, through
  the library's own flags (:mod:`lit_restore.runtime`).

All networks have random weights in the published topologies (``adm-ffhq256-dps``,
``adm-imagenet256-uncond`` from the registry; ResShift's released Swin UNet + VQ-f4; LPIPS-VGG
with a random backbone): cost does not depend on the values, and nothing is downloaded.

**Time.** A zero-shot row times K respaced steps after a 1-step warm-up (compilation happens
there) and extrapolates to the published count (``bench/bench_samplers.py``: median step ×
steps + the loop's fixed cost); ResShift rows time a few whole batches after one warm-up batch.
**Budget.** Rows run in the order of the table; ``fast`` variants compile only while less than
``--compile-budget-s`` has elapsed, a variant that fails with compile is re-run without it, and
once ``--budget-s`` is spent the remaining variants are recorded as skipped — so the command
always finishes and says what it measured.
**Outputs.** Both variants restore the same first image with the same noise (per-image
generators: the result does not depend on the batch), so each row also reports the max abs
difference and PSNR between the fast and the official output — over the K-step chain that was
timed, not the full one.

Writes ``--json`` (default ``bench/results/run_gpu_<device>.json``) and replaces the table
between the ``run_gpu`` markers of ``--readme`` (default ``bench/README.md``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bench_resshift, bench_samplers
from bench.measure import difference, machine, write_json
from lit_restore import runtime

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- run_gpu:begin -->", "<!-- run_gpu:end -->"


@dataclass(frozen=True)
class Row:
    name: str
    kind: str  #: "zero_shot" | "resshift_infer" | "resshift_train"
    goal: str
    prior: str = ""
    method: str = ""
    fast_batch: int = 8
    official_batch: int = 1
    timed: int = 10  #: zero-shot: timed steps; ResShift: timed batches


ROWS = [
    Row("dps-ffhq", "zero_shot", "≤ 2.5 s/img (limit ≈ 1 s)", "adm-ffhq256-dps", "dps", 16),
    Row("safari-ffhq", "zero_shot", "≤ 2.5 s/img (limit ≈ 1 s)", "adm-ffhq256-dps", "safari", 16),
    Row("dps-imagenet", "zero_shot", "≤ 12 s/img (limit ≈ 5.6 s)", "adm-imagenet256-uncond", "dps"),
    Row("safari-imagenet", "zero_shot", "≤ 12 s/img", "adm-imagenet256-uncond", "safari"),
    Row("ddrm-ffhq", "zero_shot", "≥ 2× official img/s", "adm-ffhq256-dps", "ddrm", 32, timed=20),
    Row("ddnm-ffhq", "zero_shot", "≥ 2× official img/s", "adm-ffhq256-dps", "ddnm", 32),
    Row("ddpg-ffhq", "zero_shot", "≥ 2× official img/s", "adm-ffhq256-dps", "ddpg", 32),
    Row("resshift-infer", "resshift_infer", "≥ 250 img/s (limit ≈ 550)", fast_batch=64, timed=5),
    Row(
        "resshift-train", "resshift_train", "≥ 120 img/s/GPU", fast_batch=64, official_batch=64,
        timed=3,
    ),
]  # fmt: skip

VARIANTS = {
    "official": dict(precision="fp32", compile=False, channels_last=False),
    "fast": dict(precision="bf16", compile=True, channels_last=True),
}


def _zero_shot(row: Row, batch: int, opts: dict, args) -> dict:
    timed = 1 if args.smoke else row.timed
    ns = bench_samplers.parse_args(
        ["--device", args.device, "--steps-override", str(timed), "--warmup", "1"]
        + (["--reduced", "--image-size", "32", "--width-div", "16"] if args.smoke else [])
    )
    ns.bf16 = "flag"
    ns.compile, ns.channels_last = opts["compile"], opts["channels_last"]
    precision = "bf16" if opts["precision"] == "bf16" else "fp32"
    r = bench_samplers.run_row(row.prior, row.method, batch, precision, ns)
    return {
        "s_per_image": r["seconds_per_image"],
        "images_per_s": 1 / r["seconds_per_image"],
        "nfe_per_image": r["nfe_per_image"],
        "peak_mib": r["peak_memory_mib"],
        "memory_kind": r["memory_kind"],
        "extrapolated_from_steps": r["timed_steps"],
        "published_steps": r["published_steps"],
        "output": r["output"],
    }


def _resshift(row: Row, batch: int, opts: dict, args) -> dict:
    m = bench_resshift.build(args.device, tiny=args.smoke, **opts)
    timed = 1 if args.smoke else row.timed
    if row.kind == "resshift_infer":
        r = bench_resshift.bench_infer(m, args.device, batch, timed)
        r["nfe_per_image"] = m.schedule.steps
    else:
        r = bench_resshift.bench_train(m, args.device, batch, timed)
        r["s_per_image"] = r["s_per_step"] / batch
    return r


def run_variant(row: Row, variant: str, args, compile_allowed: bool) -> dict:
    opts = dict(VARIANTS[variant])
    batch = row.official_batch if variant == "official" else row.fast_batch
    if args.smoke:
        batch = min(batch, 2)
    notes = []
    if opts["compile"] and not compile_allowed:
        opts["compile"] = False
        notes.append("compile skipped (compile budget spent)")
    if (
        opts["compile"]
        and row.kind == "resshift_infer"
        and torch.device(args.device).type == "cuda"
    ):
        opts["compile"] = "reduce-overhead"  # static shapes, no autograd: CUDA graphs
    fn = _zero_shot if row.kind == "zero_shot" else _resshift
    start = time.perf_counter()
    try:
        result = fn(row, batch, opts, args)
    except Exception as err:
        if not opts["compile"]:
            raise
        notes.append(f"compile failed ({type(err).__name__}: {str(err)[:200]}); re-run eager")
        opts["compile"] = False
        torch._dynamo.reset()
        result = fn(row, batch, opts, args)
    result.update(
        batch=batch,
        settings=opts,
        notes=notes,
        wall_s=time.perf_counter() - start,
        peak_mib_per_image=result["peak_mib"] / batch,
    )
    return result


def run(args) -> list[dict]:
    start = time.perf_counter()
    selected = [r for r in ROWS if not args.rows or r.name in args.rows]
    results = []
    for row in selected:
        entry: dict[str, Any] = {"row": row.name, "goal": row.goal}
        for variant in ("official", "fast"):
            elapsed = time.perf_counter() - start
            if elapsed > args.budget_s:
                entry[variant] = {"skipped": f"budget of {args.budget_s:.0f} s spent"}
                continue
            try:
                res = run_variant(row, variant, args, elapsed < args.compile_budget_s)
            except Exception:
                entry[variant] = {"error": traceback.format_exc(limit=3)[-600:]}
            else:
                entry[variant] = res
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
            status = entry[variant].get("s_per_image", entry[variant])
            print(f"{row.name:16s} {variant:8s} {status}", flush=True)
        off, fast = entry.get("official", {}), entry.get("fast", {})
        if "output" in off and "output" in fast:
            entry["fast_vs_official"] = difference(fast["output"], off["output"])
        if "s_per_image" in off and "s_per_image" in fast:
            entry["speedup"] = off["s_per_image"] / fast["s_per_image"]
        for v in (off, fast):
            v.pop("output", None)
        results.append(entry)
    return results


def _cell(v: dict) -> str:
    if "skipped" in v:
        return "skipped"
    if "error" in v:
        return "error"
    per_img = v["s_per_image"]
    main = f"{per_img:.3g} s/img" if per_img >= 0.1 else f"{1 / per_img:.3g} img/s"
    return f"{main} · {v['peak_mib_per_image']:.0f} MiB/img · b{v['batch']}"


def table(results: list[dict], meta: dict) -> str:
    lines = [
        f"Measured by `python -m bench.run_gpu` on {meta['device']} ({meta['date']}; "
        f"{'CPU smoke run, reduced sizes' if meta['smoke'] else 'published topologies'}). "
        "Cells: time · peak memory per image · batch. `fast` = bf16 + compile + channels-last.",
        "",
        "| row | goal | official (fp32, b1, eager) | fast | speed-up | fast vs official "
        "(K-step chain) |",
        "|---|---|---|---|---|---|",
    ]
    for e in results:
        d = e.get("fast_vs_official")
        diff = f"{d['max_abs']:.2g} / {d['psnr_db']:.1f} dB" if d else "–"
        sp = f"{e['speedup']:.2f}×" if "speedup" in e else "–"
        lines.append(
            f"| {e['row']} | {e['goal']} | {_cell(e['official'])} | {_cell(e['fast'])} | "
            f"{sp} | {diff} |"
        )
    return "\n".join(lines)


def update_readme(path: Path, text: str) -> None:
    """Replace the block between the run_gpu markers (atomic write)."""
    old = path.read_text()
    if BEGIN not in old or END not in old:
        raise SystemExit(f"error: {path} has no {BEGIN} … {END} block to replace")
    head, rest = old.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    tmp.replace(path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--smoke", action="store_true", help="CPU-sized networks and batches")
    ap.add_argument("--rows", type=lambda s: s.split(","), default=None, help="subset, a,b,c")
    ap.add_argument("--budget-s", type=float, default=450.0)
    ap.add_argument("--compile-budget-s", type=float, default=300.0)
    ap.add_argument("--no-compile", action="store_true", help="fast variants without compile")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--readme", type=Path, default=ROOT / "bench" / "README.md")
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args(argv)
    unknown = set(args.rows or []) - {r.name for r in ROWS}
    if unknown:
        ap.error(f"--rows: unknown {sorted(unknown)}; choose from {[r.name for r in ROWS]}")
    if args.no_compile:
        args.compile_budget_s = -math.inf
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.smoke:
        # inductor's C++ build takes minutes on a small CPU; aot_eager exercises the same
        # dynamo/AOTAutograd path
        runtime.COMPILE_BACKEND = "aot_eager"
    meta = {
        "device": machine() if args.device == "cpu" else torch.cuda.get_device_name(args.device),
        "date": time.strftime("%Y-%m-%d"),
        "smoke": args.smoke,
        "torch": torch.__version__,
        "command": " ".join(
            ["python -m bench.run_gpu", *(argv if argv is not None else sys.argv[1:])]
        ),
    }
    results = run(args)
    out = {"meta": meta, "rows": results}
    tag = "cpu_smoke" if args.smoke else meta["device"].split(",")[0].replace(" ", "_")
    write_json(args.json or ROOT / "bench" / "results" / f"run_gpu_{tag}.json", out)
    text = table(results, meta)
    print(text)
    if not args.no_readme:
        update_readme(args.readme, text)
    return out


if __name__ == "__main__":
    main()
