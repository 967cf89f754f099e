"""Seconds per image, NFE per image and peak memory of every zero-shot sampler.

Each row runs one method (SaFaRI, DPS, DDNM+, DDRM, DDPG, IDPG, FDGR, DiffPIR, ΠGDM, DDS, RED-diff,
DAPS) on the real
:class:`lit_restore.priors.ADMPrior` built from the registry's published constructor flags
(``REGISTRY["adm-imagenet256-uncond"]`` / ``REGISTRY["adm-ffhq256-dps"]``, random weights: speed
and memory do not depend on the values) and a real operator from :mod:`lit_restore.operators`, with
Gaussian measurement noise σ = 0.05 (image units), at the method's published step count:

    ========  =====  =====================================================================
    method    steps  task (operator)
    ========  =====  =====================================================================
    dps       1000   SR×4 ``BicubicSR(4)`` (DPS paper, full 1000-step chain)
    safari    1000   SR×4 ``BicubicSR(4)`` (DPS + spatial-frequency fidelity)
    ddrm        20   SR×4 ``BicubicSR(4)`` (README ``--timesteps 20``)
    ddnm       100   SR×4 ``BicubicSR(4)``; σ_y > 0 makes it DDNM+ (SVD path)
    ddpg       100   Gaussian deblur ``GaussianBlur(61, 3.0, boundary="circular")`` (FFT pinv_reg)
    idpg       100   same as ddpg
    fdgr       100   same as ddpg (DDPG + gradient regulariser, G− default)
    diffpir    100   same as ddpg (λ 7, ζ 0.3, quad spacing: the deblur preset)
    pgdm       100   SR×4 ``BicubicSR(4)``; σ_y > 0: Aᵀ(AAᵀ+ηI)⁻¹ through the SVD, VJP through the UNet
    dds         50   same as ddpg (5 CG iterations on (I + AᵀA), only A and Aᵀ)
    reddiff    100   SR×4 ``BicubicSR(4)`` (Adam on μ; one forward per step, no backward through it)
    daps       200   SR×4 ``BicubicSR(4)``, preset ``sr4`` (DAPS-1K: a "step" is one annealing
                     level = 5 ODE network calls + 100 Langevin steps through A; NFE 1000)
    ========  =====  =====================================================================

**Step-count extrapolation.** ``--steps-override K`` runs K (respaced) steps instead of the
published count and reports ``s/image = (median step time × published steps + the loop's fixed
cost outside the steps) / batch`` and ``NFE/image = (measured NFE / K) × published steps``; such
rows say ``extrapolated`` (every step of these methods costs the same, whatever its t; the median
keeps one load spike on a shared machine from dominating). Without the override the published chain is
run and timed in full. Before the timed run one untimed 1-step run warms caches (operator SVD/FFT
transfer functions, allocator) unless ``--warmup 0``.

**Precision.** ``fp32``, or ``bf16``: ``--bf16 flag`` (default) is what
``ZeroShotRestoration(precision="bf16")`` does (:mod:`lit_restore.runtime`: ADM's bfloat16 torso —
time MLP, GroupNorm and output head float32 — guidance maths float32); ``--bf16 autocast`` runs
the float32 network under ``torch.autocast(bfloat16)``; ``--bf16 torso`` builds
``ADMPrior(dtype="bfloat16")`` directly. ``--compile`` / ``--channels-last`` are the module's
flags of the same names.

**Peak memory.** GPU: ``torch.cuda.max_memory_allocated`` over the warm-up and timed runs (weights
included). CPU: every row runs in a forked child process (the parent never runs a torch op, so no
thread pool crosses the fork); the column is the growth of the child's peak RSS over the warm-up
and timed runs — activations, gradients and sampler state; weights excluded. The window starts
after the prior, operator and measurement are built, by resetting Linux's peak mark
(``/proc/self/clear_refs`` ← 5, then ``VmHWM − VmRSS``; :func:`reset_peak_rss`), falling back to
``resource.getrusage(...).ru_maxrss``. (tracemalloc would not see torch's C++ allocations.)

``--reduced`` keeps each layout's 6-level topology and relative attention depths at
``--image-size`` px (default 64) with widths ÷ ``--width-div`` (default 4) — the same reduction as
``bench/bench_prior.py``; the 61-tap blur kernel is clipped to the largest odd size below the image
size (the FFT pinv's cost does not depend on the kernel size).

On a shared, loaded CPU set ``OMP_WAIT_POLICY=PASSIVE``: spinning OpenMP workers that lose their
core make every parallel region wait (measured here: 2 threads went from 0.7 to 8.7 s per guided
step of the reduced ImageNet layout without it).

Usage::

    python bench/bench_samplers.py                                   # full 256 px, GPU
    OMP_WAIT_POLICY=PASSIVE python bench/bench_samplers.py --reduced --device cpu \
        --steps-override 2 --threads 2                               # CPU, reduced size
    python bench/bench_samplers.py --methods dps,ddrm --batches 1 --precisions fp32 --json out.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import peak_rss, randomise, reset_peak_rss, run_forked, sync, write_json
from lit_restore.modules import ZeroShotRestoration
from lit_restore.operators import BicubicSR, GaussianBlur, GaussianNoise
from lit_restore.operators.base import LinearOperator
from lit_restore.presets import preset_args
from lit_restore.priors import ADMPrior
from lit_restore.priors.registry import REGISTRY
from lit_restore.samplers import (
    DAPS,
    DDNM,
    DDPG,
    DDRM,
    DDS,
    DPS,
    FDGR,
    IDPG,
    DiffPIR,
    PiGDM,
    REDDiff,
    SaFaRI,
    Sampler,
)

PRIORS = ("adm-imagenet256-uncond", "adm-ffhq256-dps")

#: measurement noise in image units [0, 1] (model space: 2σ)
NOISE_SIGMA = 0.05


@dataclass(frozen=True)
class Method:
    make: Callable[[int], Sampler]  #: steps -> sampler
    published_steps: int
    task: str  #: key of TASKS


METHODS: dict[str, Method] = {
    "safari": Method(lambda n: SaFaRI(steps=n, scale=0.3), 1000, "sr4"),
    "dps": Method(lambda n: DPS(steps=n, scale=0.3), 1000, "sr4"),
    "ddnm": Method(lambda n: DDNM(steps=n), 100, "sr4"),
    "ddrm": Method(lambda n: DDRM(steps=n), 20, "sr4"),
    "ddpg": Method(lambda n: DDPG(steps=n), 100, "blur-circ"),
    "idpg": Method(lambda n: IDPG(steps=n), 100, "blur-circ"),
    "fdgr": Method(lambda n: FDGR(steps=n), 100, "blur-circ"),
    "diffpir": Method(lambda n: DiffPIR(steps=n), 100, "blur-circ"),
    "pgdm": Method(lambda n: PiGDM(steps=n), 100, "sr4"),
    "dds": Method(lambda n: DDS(steps=n), 50, "blur-circ"),
    "reddiff": Method(lambda n: REDDiff(steps=n), 100, "sr4"),
    "daps": Method(
        lambda n: DAPS(**{**preset_args(DAPS, "sr4"), "annealing_steps": n}), 200, "sr4"
    ),
}


def make_operator(task: str, image_size: int) -> LinearOperator:
    """``sr4`` = ``BicubicSR(4)``; ``blur-circ`` = ``GaussianBlur(61, 3.0, "circular")``."""
    if task == "sr4":
        return BicubicSR(4)
    if task == "blur-circ":
        k = min(61, image_size - 1 if image_size % 2 == 0 else image_size - 2)
        return GaussianBlur(k, 3.0, boundary="circular")
    raise ValueError(f"unknown task {task!r}; choose 'sr4' or 'blur-circ'")


def reduce(cfg: dict, image_size: int, width_div: int) -> dict:
    """The same topology at ``image_size`` px (attention at the same relative depths, channel
    multipliers of the 256 px layout) with widths ÷ ``width_div`` (``bench_prior.py`` uses it too)."""
    out = dict(cfg)
    factor = cfg["image_size"] // image_size
    res = [int(r) // factor for r in cfg["attention_resolutions"].split(",")]
    out.update(
        image_size=image_size,
        num_channels=max(cfg["num_channels"] // width_div, 32),  # GroupNorm(32)
        channel_mult="1,1,2,2,4,4",
        attention_resolutions=",".join(str(max(r, 1)) for r in res),
        num_head_channels=max(cfg["num_head_channels"] // width_div, 8),
    )
    return out


def prior_config(name: str, args: argparse.Namespace) -> dict:
    cfg = dict(REGISTRY[name].config)
    return reduce(cfg, args.image_size, args.width_div) if args.reduced else cfg


_PRIOR_CACHE: dict[tuple, ADMPrior] = {}


def build_prior(name: str, precision: str, args: argparse.Namespace, device) -> ADMPrior:
    torso_bf16 = precision == "bf16" and args.bf16 == "torso"
    compiled = getattr(args, "compile", False), getattr(args, "channels_last", False)
    key = (name, precision, args.bf16, compiled, str(device))
    if key not in _PRIOR_CACHE:
        _PRIOR_CACHE.clear()  # one prior alive at a time (GPU memory)
        cfg = prior_config(name, args)
        prior = ADMPrior(**cfg, dtype="bfloat16" if torso_bf16 else None)
        _PRIOR_CACHE[key] = randomise(prior).to(device)
    return _PRIOR_CACHE[key]


def measurement(batch: int, size: int, op: LinearOperator, sigma: float, device) -> Tensor:
    """y = A(x) + σ n with x and n drawn per image (seed = index): image i is the same problem
    at every batch size, so outputs of runs at different batch sizes can be compared."""
    ys = []
    for i in range(batch):
        g = torch.Generator().manual_seed(i)
        x = torch.rand(1, 3, size, size, generator=g) * 2 - 1
        y = op.to("cpu").A(x)
        ys.append(y + sigma * torch.randn(y.shape, generator=g))
    op.to(device)
    return torch.cat(ys).to(device)


def run_row(prior_name: str, method: str, batch: int, precision: str, args) -> dict:
    """Time one (prior, method, batch, precision) combination in this process.

    ``args.bf16``: ``flag`` = ``ZeroShotRestoration(precision=...)`` (the library's choice:
    ADM's bf16 torso), ``autocast`` / ``torso`` = that mode explicitly. ``args.compile`` and
    ``args.channels_last`` (optional) are the module's flags. The row's ``output`` (popped
    before printing/JSON) is the restored first image, for comparisons across variants.
    """
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = METHODS[method]
    prior = build_prior(prior_name, precision, args, device)
    size = prior.image_size
    op = make_operator(spec.task, size)
    noise = GaussianNoise(NOISE_SIGMA)
    with torch.no_grad():
        y = measurement(batch, size, op, noise.model_sigma, device)
    steps = args.steps_override or spec.published_steps
    steps = min(steps, spec.published_steps)

    def sample(n: int) -> tuple[float, int, list[float], Tensor]:
        sampler = spec.make(n)
        flag = precision if args.bf16 == "flag" else "fp32"
        module = ZeroShotRestoration(
            prior, sampler, operator=op, noise=noise, precision=flag,
            compile=getattr(args, "compile", False),
            channels_last=getattr(args, "channels_last", False),
        )  # fmt: skip
        module.prepare_runtime(device)  # what restore() does on its first batch
        if precision == "bf16" and args.bf16 == "autocast":
            sampler.autocast_dtype = torch.bfloat16
        gens = [torch.Generator(device=device).manual_seed(i) for i in range(batch)]
        marks: list[float] = []

        def mark(_info) -> None:  # end of each step (synchronised: honest per-step times)
            sync(device)
            marks.append(time.perf_counter())

        sync(device)
        start = time.perf_counter()
        out = sampler.sample(prior, op, y, sigma_y=noise.model_sigma, generator=gens, callback=mark)
        sync(device)
        elapsed = time.perf_counter() - start
        if not torch.isfinite(out).all():
            raise RuntimeError(f"{method}: non-finite output")
        # step k's duration; the first also holds init (x_T draw), which is negligible
        steps_s = [b - a for a, b in zip([start, *marks[:-1]], marks)]
        return elapsed, sampler.nfe, steps_s, out[:1].detach().float().cpu()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss0, rss_method = reset_peak_rss()
    for _ in range(args.warmup):
        sample(1)
    elapsed, nfe, steps_s, output = sample(steps)
    if device.type == "cuda":
        mem = torch.cuda.max_memory_allocated(device) / 2**20
        mem_kind = "cuda_max_allocated_mib"
    else:
        mem = peak_rss(rss_method) - rss0
        mem_kind = f"cpu_peak_rss_growth_mib ({rss_method})"
    scale = spec.published_steps / steps
    if steps != spec.published_steps:
        # median step × published count + the loop's fixed cost (init, finalize): robust to
        # a load spike during one of the few timed steps on a shared machine
        fixed = max(elapsed - sum(steps_s), 0.0)
        total = statistics.median(steps_s) * spec.published_steps + fixed
    else:
        total = elapsed
    return {
        "prior": prior_name,
        "method": method,
        "task": spec.task,
        "operator": repr(op).replace("\n", " "),
        "image_size": size,
        "num_channels": prior_config(prior_name, args)["num_channels"],
        "params_m": sum(p.numel() for p in prior.parameters()) / 1e6,
        "batch": batch,
        "precision": precision if precision == "fp32" else f"bf16-{args.bf16}",
        "compile": getattr(args, "compile", False),
        "channels_last": getattr(args, "channels_last", False),
        "published_steps": spec.published_steps,
        "timed_steps": steps,
        "extrapolated": steps != spec.published_steps,
        "measured_seconds": elapsed,
        "step_seconds": steps_s,
        "seconds_per_image": total / batch,
        "nfe_per_image": nfe * scale,
        "peak_memory_mib": mem,
        "memory_kind": mem_kind,
        "output": output,
    }


def run_isolated(*row_args) -> dict:
    """:func:`run_row` in a forked child: its own peak RSS (see module docstring)."""
    return run_forked(run_row, *row_args)


def markdown(rows: list[dict]) -> str:
    lines = [
        "| prior | config | method | task | batch | precision | steps | NFE / image | s / image "
        "| peak memory (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        steps = (
            f"{r['published_steps']} (extrapolated from {r['timed_steps']})"
            if r["extrapolated"]
            else str(r["published_steps"])
        )
        mem = (
            "RSS +" if r["memory_kind"].startswith("cpu") else ""
        ) + f"{r['peak_memory_mib']:.0f}"
        cfg = f"{r['image_size']}px C={r['num_channels']} ({r['params_m']:.1f} M)"
        lines.append(
            f"| {r['prior']} | {cfg} | {r['method']} | {r['task']} | {r['batch']} | "
            f"{r['precision']} | {steps} | {r['nfe_per_image']:.0f} | "
            f"{r['seconds_per_image']:.2f} | {mem} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--priors", nargs="+", default=list(PRIORS), choices=list(PRIORS))
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument(
        "--bf16",
        choices=["flag", "autocast", "torso"],
        default="flag",
        help="bf16 = ZeroShotRestoration(precision='bf16') (flag), the network under autocast, "
        "or ADMPrior(dtype='bfloat16') (torso)",
    )
    ap.add_argument("--compile", default=False, help="ZeroShotRestoration(compile=...)")
    ap.add_argument("--channels-last", action="store_true", help="channels-last network")
    ap.add_argument("--reduced", action="store_true", help="small image size / widths (CPU)")
    ap.add_argument("--image-size", type=int, default=64, help="image size with --reduced")
    ap.add_argument("--width-div", type=int, default=4, help="width divisor with --reduced")
    ap.add_argument(
        "--steps-override",
        type=int,
        default=0,
        help="time this many steps and extrapolate to the published count (0 = run it all)",
    )
    ap.add_argument("--warmup", type=int, default=1, help="untimed 1-step runs before timing")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument(
        "--no-fork", action="store_true", help="CPU: run rows in this process (RSS not per row)"
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    unknown = [m for m in args.methods.split(",") if m not in METHODS]
    if unknown:
        ap.error(f"--methods: unknown {unknown}; choose from {','.join(METHODS)}")
    if args.steps_override < 0:
        ap.error("--steps-override must be >= 0")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    device = torch.device(args.device)
    isolated = device.type == "cpu" and not args.no_fork
    if device.type == "cuda":
        dev = torch.cuda.get_device_name(device)
    else:
        dev = f"CPU ({os.cpu_count()} cores, {args.threads or 'default'} threads)"
    print(
        f"# device: {dev}; torch {torch.__version__}; reduced={args.reduced}; "
        f"noise σ={NOISE_SIGMA}; bf16 mode: {args.bf16}; "
        f"memory: {'CUDA max_memory_allocated (weights incl.)' if device.type == 'cuda' else 'peak RSS growth per row (VmHWM after clear_refs, weights excl.)'}",
        flush=True,
    )
    rows = []
    for prior_name in args.priors:
        for method in args.methods.split(","):
            for precision in args.precisions:
                for batch in args.batches:
                    row_args = (prior_name, method, batch, precision, args)
                    row = run_isolated(*row_args) if isolated else run_row(*row_args)
                    row.pop("output")
                    rows.append(row)
                    print(markdown([row]).splitlines()[-1], flush=True)
    print()
    print(markdown(rows))
    if any(r["extrapolated"] for r in rows):
        print(
            "\nsteps 'extrapolated from K': K steps were timed and s/image, NFE/image scaled to the "
            "published step count."
        )
    if args.json:
        meta = {
            "device": dev,
            "torch": torch.__version__,
            "reduced": args.reduced,
            "noise_sigma": NOISE_SIGMA,
            "bf16_mode": args.bf16,
            "command": " ".join(
                [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
            ),
        }
        write_json(args.json, {"meta": meta, "rows": rows})
    return rows


if __name__ == "__main__":
    main()
