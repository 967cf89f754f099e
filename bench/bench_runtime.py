"""Each runtime option's output difference against float32, and its speed, per method (CPU).

    python -m bench.bench_runtime --json bench/results/runtime_cpu.json

For every zero-shot method (SaFaRI, DPS, DDNM, DDRM, DDPG, IDPG, FDGR) and for ResShift, the
same restoration is run with plain float32 and with each option of :mod:`lit_restore.runtime`
(``channels_last``, ``precision="bf16"``; ``compile`` where ``--compile`` is given) — same inputs,
same per-image noise — and the table reports the max abs difference (model space [-1, 1]) and
the PSNR (dB, [0, 1]) between the option's output and the float32 output, and the option's
speed relative to float32 (median of ``--repeats`` interleaved runs).

``batching`` (``--options``) compares the float32 restoration of the whole batch in one call with
the same images restored one at a time (batch 1; per-image noise, so the same draws): the
difference is what batching changes in the output (per-image guidance norms make each result
independent of its batch mates, so only float round-off of batched kernels remains), the
speed-up is the time of the one-at-a-time runs over the batched run.

**Why a trained prior.** With random weights a sampler's trajectory is meaningless and often
diverges (x̂0 = (x_t − √(1−ᾱ)ε)/√ᾱ with an ε of the wrong scale), so a precision difference
measured on it says nothing. The prior here is the ADM FFHQ-256 topology at ``--size`` px
(width ``--width``) trained for ``--train-steps`` steps as an ε-predictor on the library's
dead-leaves images (a minute or two): a weak but real denoiser, whose trajectories behave like
a trained prior's. The measurement: the 8 demo images (``data/demo``, centre crop, area-resized
to ``--size``), SR×4 ``BicubicSR(4)`` + Gaussian noise σ = 0.025 — the demo's task — and
``--steps`` respaced steps of each method at its default settings; speed is the ratio of medians
of ``--repeats`` interleaved runs of a ``--time-steps`` chain (every step costs the same). ResShift uses random weights
in a small topology of the released kind (its chain mixes x̂0 into x_t and stays bounded).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bench_resshift
from bench.bench_samplers import reduce
from bench.measure import difference, interleaved, machine, median, timed, write_json
from lit_restore import runtime
from lit_restore.data import DeadLeaves
from lit_restore.data.io import load_image
from lit_restore.modules import ResShiftModule, ZeroShotRestoration
from lit_restore.nn import SwinUNet
from lit_restore.operators import BicubicSR, GaussianNoise
from lit_restore.priors import ADMPrior
from lit_restore.priors.registry import REGISTRY, load_prior
from lit_restore.samplers import DDNM, DDPG, DDRM, DPS, FDGR, IDPG, SaFaRI

ROOT = Path(__file__).resolve().parents[1]
METHODS: dict[str, Callable[[int], object]] = {
    "safari": lambda n: SaFaRI(steps=n, scale=0.3),
    "dps": lambda n: DPS(steps=n, scale=0.3),
    "ddnm": lambda n: DDNM(steps=n),
    "ddrm": lambda n: DDRM(steps=n),
    "ddpg": lambda n: DDPG(steps=n),
    "idpg": lambda n: IDPG(steps=n),
    "fdgr": lambda n: FDGR(steps=n),
}
OPTIONS = {"fp32": {}, "channels_last": {"channels_last": True}, "bf16": {"precision": "bf16"}}
#: the main job's shipped prior (configs/prior/adm_demo_pd.yaml) and ResShift model
DEMO_PRIOR = "adm-demo-pd"
DEMO_RESSHIFT = ROOT / "configs" / "model" / "resshift_demo_sr4.yaml"
#: not a module option: the batch in one call against its images one at a time (float32)
BATCHING = "batching"


def prior_config(size: int, width: int) -> dict:
    return reduce(dict(REGISTRY["adm-ffhq256-dps"].config), size, 256 // width)


def trained_prior(size: int, width: int, steps: int, seed: int = 0) -> ADMPrior:
    """ADM FFHQ topology at ``size`` px trained briefly on dead leaves (ε-prediction, Adam)."""
    torch.manual_seed(seed)
    prior = ADMPrior(**prior_config(size, width), frozen=False)
    data = DeadLeaves(length=256, image_size=size, seed=seed)
    pool = torch.stack([data[i]["image"] for i in range(len(data))]) * 2 - 1
    opt = torch.optim.Adam(prior.net.parameters(), lr=5e-4)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        x0 = pool[torch.randint(len(pool), (8,), generator=g)]
        t = torch.randint(prior.num_timesteps, (8,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        loss = F.mse_loss(prior.eps(prior.q_sample(x0, t, noise), t), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"prior training step {step}: loss {loss.item():.3f}", flush=True)
    return prior.freeze()


def demo_images(size: int, count: int) -> Tensor:
    """The first ``count`` demo images: centre square, area-resized to ``size``, in [-1, 1]."""
    files = sorted((ROOT / "data" / "demo").glob("*.png"))[:count]
    imgs = []
    for f in files:
        x = load_image(f)  # [C,H,W] in [0, 1]
        s = min(x.shape[-2:])
        top, left = (x.shape[-2] - s) // 2, (x.shape[-1] - s) // 2
        x = x[:, top : top + s, left : left + s]
        imgs.append(F.interpolate(x[None], size=(size, size), mode="area")[0])
    return torch.stack(imgs) * 2 - 1


def compare(
    modules: dict, batch: dict, repeats: int, timing: dict | None = None, batching: bool = False
) -> dict:
    """Output of every module's ``restore(batch)`` against ``fp32``'s, and each option's speed
    relative to fp32: medians of ``repeats`` interleaved runs of ``timing`` (modules of a
    shorter chain — every step of these methods costs the same, so the ratio is the whole run's;
    default: ``modules`` themselves); ``batching``: also the fp32 module on the batch's images
    one at a time (module docstring).

    The very first call of every ``timing`` module is timed before anything else runs
    (``first_s``): for ``compile`` it includes building the graph (Dynamo trace, AOT autograd,
    inductor's code generation and C++ build), so ``build_s`` = first call − median call is the
    one-off cost that the per-call saving has to repay (:func:`break_even`)."""
    timing = timing or modules
    first = {name: timed(lambda m=m: m.restore(batch)) for name, m in timing.items()}
    outs = {name: m.restore(batch) for name, m in modules.items()}

    def runner(name: str) -> Callable[[], None]:
        return lambda: timing[name].restore(batch)

    runners = {n: runner(n) for n in timing}
    if batching:
        outs[BATCHING] = torch.cat([modules["fp32"].restore(b) for b in _singles(batch)])
        runners[BATCHING] = lambda: [timing["fp32"].restore(b) for b in _singles(batch)]
    times = interleaved(runners, repeats)
    base = median(times["fp32"])
    row: dict = {"fp32_s": base, "fp32_first_s": first["fp32"]}
    for name in outs:
        if name == BATCHING:  # the batched run is the faster one: its speed-up over singles
            speed = {"speedup": median(times[name]) / base}
            row[name] = {**difference(outs["fp32"], outs[name]), **speed}
        elif name != "fp32":
            t = median(times[name])
            speed = {
                "speedup": base / t,
                "s": t,
                "first_s": first[name],
                "build_s": first[name] - t,
            }
            row[name] = {**difference(outs[name], outs["fp32"]), **speed}
    return row


def break_even(build_s: float, eager_s: float, option_s: float) -> float:
    """Timed chains after which an option with a one-off cost ``build_s`` has paid for itself:
    ``build_s / (eager_s − option_s)`` (inf when the option saves nothing per chain)."""
    saving = eager_s - option_s
    return build_s / saving if saving > 0 else math.inf


def _singles(batch: dict) -> list[dict]:
    """The batch's images as batches of one (every per-image entry sliced)."""
    n = len(batch["index"])
    return [
        {k: v[i : i + 1] if isinstance(v, (Tensor, list)) else v for k, v in batch.items()}
        for i in range(n)
    ]


def make_prior(args) -> Callable[[], ADMPrior]:
    """A factory of identical frozen priors: the shipped demo prior (``--prior demo``) or the
    FFHQ topology trained here on dead leaves (:func:`trained_prior`)."""
    if args.prior == "demo":
        return lambda: load_prior(DEMO_PRIOR)  # frozen, strict load of the shipped weights
    state = trained_prior(args.size, args.width, args.train_steps).state_dict()

    def build() -> ADMPrior:
        prior = ADMPrior(**prior_config(args.size, args.width))
        prior.load_state_dict(state)
        return prior.freeze()

    return build


def zero_shot_rows(args) -> list[dict]:
    new_prior = make_prior(args)
    x = demo_images(args.size, args.images)
    op, noise = BicubicSR(4), GaussianNoise(0.025)
    y = op.A(x)
    y = y + noise.model_sigma * torch.randn(y.shape, generator=torch.Generator().manual_seed(0))
    batch = {"y": y, "index": torch.arange(len(x)), "name": [str(i) for i in range(len(x))]}
    options = {"fp32": {}, **{o: OPTIONS[o] for o in args.options if o in OPTIONS}}
    if args.compile:
        options["compile"] = {"compile": True}

    def module(make: Callable, steps: int, opts: dict) -> ZeroShotRestoration:
        kw = {"precision": "fp32", **opts}
        return ZeroShotRestoration(new_prior(), make(steps), operator=op, noise=noise, **kw)

    rows = []
    for method, make in METHODS.items():
        full = {name: module(make, args.steps, o) for name, o in options.items()}
        short = {name: module(make, args.time_steps, o) for name, o in options.items()}
        row = {
            "method": method,
            "steps": args.steps,
            "timed_steps": args.time_steps,
            "network_calls": args.time_steps,  # one ε(x_t, t) per step (tests/test_nfe.py)
            **compare(full, batch, args.repeats, short, BATCHING in args.options),
        }
        rows.append(row)
        print(row, flush=True)
    return rows


def demo_resshift(**options) -> ResShiftModule:
    """The main job's shipped ResShift ×4 (its model config, shipped weights) with ``options``."""
    init = yaml.safe_load(DEMO_RESSHIFT.read_text())["model"]["init_args"]
    network = SwinUNet(**init.pop("network")["init_args"])
    return ResShiftModule(network=network, **{**init, "precision": "fp32", **options})


def resshift_row(args) -> dict:
    """ResShift's 4-step chain with each option: the demo model on LQ 32 px (``--prior demo``)
    or the small random-weight topology of ``bench_resshift`` on LQ 16 px."""
    demo = args.prior == "demo"
    side = 32 if demo else 16
    lq = torch.rand(args.images, 3, side, side, generator=torch.Generator().manual_seed(1)) * 2 - 1
    batch = {"lq": lq, "index": torch.arange(args.images)}
    options = {"fp32": {}, **{o: OPTIONS[o] for o in args.options if o in OPTIONS}}
    if args.compile:
        options["compile"] = {"compile": True}
    if demo:
        modules = {n: demo_resshift(**o).eval() for n, o in options.items()}
        name = "resshift (demo, shipped weights)"
    else:
        modules = {n: bench_resshift.build("cpu", tiny=True, **o) for n, o in options.items()}
        name = "resshift (tiny, random weights)"
    with torch.no_grad():
        # the UNet's calls (the VQ encoder and decoder of the tiny model run once more each)
        row = {"method": name, "steps": 4, "timed_steps": 4, "network_calls": 4}
        row.update(compare(modules, batch, args.repeats, batching=BATCHING in args.options))
    print(row, flush=True)
    return row


def markdown(rows: list[dict]) -> str:
    opts = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    cols = " | ".join(f"{o}: max abs · PSNR · speed-up" for o in opts)
    lines = [f"| method | steps | fp32 s (timed chain) | {cols} |", "|---" * (3 + len(opts)) + "|"]
    for r in rows:
        cells = " | ".join(
            f"{r[o]['max_abs']:.2g} · {r[o]['psnr_db']:.1f} dB · {r[o]['speedup']:.2f}×"
            for o in opts
        )
        lines.append(f"| {r['method']} | {r['steps']} | {r['fp32_s']:.2f} | {cells} |")
    return "\n".join(lines)


def compile_markdown(rows: list[dict], images: int) -> str:
    """The compile table: speed-up, one-off build and the break-even point per method."""
    lines = [
        "| method | timed chain (network calls) | eager s | compiled s | speed-up | build s "
        "| break-even: chains (network calls) | max abs · PSNR vs eager |",
        "|---" * 8 + "|",
    ]
    for r in rows:
        c = r["compile"]
        chains = break_even(max(c["build_s"], 0.0), r["fp32_s"], c["s"])
        calls = r["network_calls"]
        even = f"{chains:.0f} ({chains * calls:.0f})" if math.isfinite(chains) else "never"
        lines.append(
            f"| {r['method']} | {r['timed_steps']} step(s) at batch {images} ({calls}) "
            f"| {r['fp32_s']:.3f} | {c['s']:.3f} | {c['speedup']:.2f}× | {c['build_s']:.0f} "
            f"| {even} | {c['max_abs']:.2g} · {c['psnr_db']:.1f} dB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--width", type=int, default=32, help="ADM base width (num_channels)")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--time-steps", type=int, default=2, help="chain length of the timed runs")
    ap.add_argument("--train-steps", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compile", action="store_true", help="also torch.compile (inductor)")
    ap.add_argument(
        "--warm-cache",
        action="store_true",
        help="with --compile: keep inductor's on-disk cache (default: a fresh one, so the "
        "measured build is a first run's)",
    )
    ap.add_argument(
        "--prior",
        choices=["dead-leaves", "demo"],
        default="dead-leaves",
        help="dead-leaves: the FFHQ topology trained here (--size/--width/--train-steps) and the "
        "tiny random ResShift; demo: the main job's shipped ADM and ResShift (use --size 128 "
        "--images 8 for the demo's sizes)",
    )
    ap.add_argument(
        "--options",
        nargs="*",
        default=[*list(OPTIONS)[1:]],
        choices=[*list(OPTIONS)[1:], BATCHING],
        help="what to compare with float32 (default: the module options)",
    )
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for m in set(METHODS) - set(args.methods.split(",")):
        METHODS.pop(m)
    if args.compile and not args.warm_cache:
        cache = tempfile.mkdtemp(prefix="inductor_cold_")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        print(f"inductor cache (cold): {cache}", flush=True)
    load_before = os.getloadavg()
    start = time.perf_counter()
    rows = [*zero_shot_rows(args), resshift_row(args)]
    meta = {
        "machine": machine(),
        "load_average_1min_before_after": [load_before[0], os.getloadavg()[0]],
        "args": {**vars(args), "json": str(args.json)},
        "wall_s": time.perf_counter() - start,
        "bf16_auto_bound_db": runtime.BF16_AUTO_BOUND_DB,
    }
    print(markdown(rows))
    if args.compile:
        print(compile_markdown(rows, args.images))
    if args.json:
        write_json(args.json, {"meta": meta, "rows": rows})
    return {"meta": meta, "rows": rows}


if __name__ == "__main__":
    main()
