"""Latent methods (latent DPS, SaFaRI, PSLD, ReSample, DAPS): seconds per image, NFE, peak memory.

The prior is the real :class:`~lit_restore.priors.LDMPrior` in the published FFHQ/CelebA-HQ
LDM-VQ-4 layout (``REGISTRY["ldm-ffhq256"].config``: 274 M UNet + 55 M VQ-f4; random weights,
which do not change the cost) or, with ``--reduced``, the same topology at ``--image-size`` px
with widths ÷ ``--width-div``. SR×4 (``BicubicSR(4)``), Gaussian noise σ = 0.05, batch 1.

Latent DPS / SaFaRI / PSLD: ``--steps K`` timed steps (after one untimed 1-step warm-up),
extrapolated to the published 1000 (median step × 1000 + the loop's fixed cost: decoding).
ReSample (official mode): each of its 500 steps is a latent-DPS step (ε forward, backward through
UNet and decoder), every 10th step (index ≤ 2N/3) adds a 5-step forward-only DDIM look-ahead
(165 evaluations) and an optimisation with early stopping whose iteration count depends on the
data; reported as the timed step × 500 + 165 × the timed forward-only step (paper mode) plus the
measured cost of one pixel-stage and one latent-stage iteration times the official *maximum*
counts (17 pixel-stage resamplings × 2000, 16 latent-stage × 500, plus the final 500 on z_0):
an upper bound. Latent DAPS: preset ``ldm_sr4`` ("DAPS-100": 50
annealing levels × 2 ODE steps, 24 HMC steps per level, each a decoder forward + backward);
``--steps K`` timed levels after one untimed 1-level warm-up, extrapolated to the published 50
(median level × 50 + the fixed cost); NFE per image = levels × ODE steps = 100. Peak memory:
growth of peak RSS in a forked child
(CPU) or ``torch.cuda.max_memory_allocated`` (GPU), as ``bench_samplers.py``.

    OMP_WAIT_POLICY=PASSIVE python bench/bench_latent.py --reduced --device cpu --threads 2 --json bench/results/latent_cpu_reduced.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import peak_rss, randomise, reset_peak_rss, run_forked, sync, write_json
from lit_restore.operators import BicubicSR, GaussianNoise
from lit_restore.presets import preset_args
from lit_restore.priors import LDMPrior
from lit_restore.priors.registry import REGISTRY
from lit_restore.samplers import PSLD, LatentDAPS, LatentDPS, LatentSaFaRI, ReSample
from lit_restore.samplers.base import SamplingContext
from lit_restore.samplers.latent import DecodedOperator

METHODS = {
    "latent_dps": (lambda n: LatentDPS(steps=n, scale=0.9, variance="ddim", eta=0.0, spacing="uniform"), 1000),
    "latent_safari": (lambda n: LatentSaFaRI(steps=n, scale=0.9, variance="ddim", eta=0.0, spacing="uniform"), 1000),
    "psld": (lambda n: PSLD(steps=n, gamma=0.1, omega=0.9), 1000),
    "resample": (lambda n: ReSample(steps=n), 500),
    # n annealing levels of the published 50 (preset ldm_sr4: 2 ODE steps, 24 HMC steps a level)
    "latent_daps": (lambda n: LatentDAPS(**{**preset_args(LatentDAPS, "ldm_sr4"), "annealing_steps": n}), 50),
}  # fmt: skip


def resample_indices(n: int, every: int = 10) -> list[int]:
    """The (count-down) step indices at which the official schedule of n steps resamples."""
    return [i for i in range(n) if i % every == 0 and 0 < i <= n - n // 3]


def resample_counts(n: int, every: int = 10) -> tuple[int, int]:
    """(pixel-stage, latent-stage) resamplings of the official schedule for N steps."""
    idx = resample_indices(n, every)
    pixel = sum(i >= n // 3 for i in idx)
    return pixel, len(idx) - pixel


def resample_lookahead_evaluations(n: int, every: int = 10, lookahead: int = 5) -> int:
    """Network evaluations of the official look-ahead: min(5, i) before each resampling i."""
    return sum(min(lookahead, i) for i in resample_indices(n, every))


def prior_config(args: argparse.Namespace) -> dict:
    cfg = REGISTRY["ldm-ffhq256"].config
    unet, vq = dict(cfg["unet"]), dict(cfg["first_stage"])
    if args.reduced:
        f = 2 ** (len(vq["ch_mult"]) - 1)
        unet.update(
            image_size=args.image_size // f,
            # GroupNorm(32): widths stay multiples of 32
            model_channels=max(round(unet["model_channels"] / args.width_div / 32), 1) * 32,
            num_head_channels=max(unet["num_head_channels"] // args.width_div, 8),
        )
        vq.update(ch=max(vq["ch"] // args.width_div, 32))
    return {**cfg, "unet": unet, "first_stage": vq}


def run_row(method: str, args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    prior = randomise(LDMPrior(**prior_config(args))).to(device)
    size = prior.image_size * prior.downscale
    op, noise = BicubicSR(4).to(device), GaussianNoise(0.05)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, size, size, generator=g) * 2 - 1
    y = op.A(x.to(device)) + noise.model_sigma * torch.randn(
        1, 3, size // 4, size // 4, generator=g
    ).to(device)
    make, published = METHODS[method]
    steps = min(args.steps, published)

    def sample(n: int, factory=None) -> tuple[float, list[float], int]:
        sampler = (factory or make)(n)
        marks: list[float] = []

        def mark(_info) -> None:
            sync(device)
            marks.append(time.perf_counter())

        sync(device)
        start = time.perf_counter()
        out = sampler.sample(
            prior,
            op,
            y,
            sigma_y=noise.model_sigma,
            generator=torch.Generator(device=device).manual_seed(0),
            callback=mark,
        )
        sync(device)
        assert torch.isfinite(out).all()
        return (
            time.perf_counter() - start,
            [b - a for a, b in zip([start, *marks[:-1]], marks)],
            sampler.nfe,
        )

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss0, how = reset_peak_rss()
    if method == "resample":
        # the official steps alone (ε forward + the per-step latent DPS backward through UNet and
        # decoder; no resampling within the chain, one final iteration; the uniform grid, which
        # takes any step count), the look-ahead's forward-only DDIM steps (timed in paper mode),
        # then the optimisers' cost per iteration, scaled to the official maximum counts
        def timed(mode: str):
            return lambda n: ReSample(
                mode=mode, steps=n, spacing="uniform", every=10**9, latent_iters=1
            )

        sample(1, timed("official"))
        elapsed, steps_s, nfe = sample(steps, timed("official"))
        sample(1, timed("paper"))
        forward_s = sample(steps, timed("paper"))[1]
        lookahead = resample_lookahead_evaluations(published)
        sampler = ReSample(steps=published, pixel_iters=5, latent_iters=5, tol=0.0, patience=10**9)
        pixel_op = op.at(tuple(x.shape))
        ctx = SamplingContext(
            prior, DecodedOperator(pixel_op, prior), y, noise.model_sigma, None,
            prior.latent_shape(tuple(x.shape)), 1000, sampler,
        )  # fmt: skip
        z0 = torch.randn(prior.latent_shape(tuple(x.shape)), device=device)
        per_iter = {}
        for stage, fn in (
            ("pixel", sampler.pixel_consistency),
            ("latent", sampler.latent_consistency),
        ):
            sync(device)
            t0 = time.perf_counter()
            fn(ctx, z0)
            sync(device)
            per_iter[stage] = (time.perf_counter() - t0) / 5
        n_pix, n_lat = resample_counts(published)
        opt = n_pix * 2000 * per_iter["pixel"] + (n_lat + 1) * 500 * per_iter["latent"]
        lookahead_s = lookahead * statistics.median(forward_s)
        total = statistics.median(steps_s) * published + lookahead_s + opt
        nfe += lookahead * steps / published  # per image below: steps → published
        extra = {
            "pixel_iter_s": per_iter["pixel"], "latent_iter_s": per_iter["latent"],
            "resamplings": [n_pix, n_lat], "optimisation_upper_bound_s": opt,
            "lookahead_evaluations": lookahead, "lookahead_s": lookahead_s,
            "forward_step_s": forward_s,
        }  # fmt: skip
    else:
        sample(1)
        elapsed, steps_s, nfe = sample(steps)
        fixed = max(elapsed - sum(steps_s), 0.0)
        total = statistics.median(steps_s) * published + fixed
        extra = {}
    if device.type == "cuda":
        mem, kind = torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated_mib"
    else:
        mem, kind = peak_rss(how) - rss0, f"cpu_peak_rss_growth_mib ({how})"
    return {
        "method": method, "image_size": size, "reduced": args.reduced,
        "params_m": sum(p.numel() for p in prior.parameters()) / 1e6,
        "published_steps": published, "timed_steps": steps, "step_seconds": steps_s,
        "seconds_per_image": total, "nfe_per_image": nfe / steps * published,
        "peak_memory_mib": mem, "memory_kind": kind, **extra,
    }  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--steps", type=int, default=3, help="timed steps (extrapolated)")
    ap.add_argument("--reduced", action="store_true")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--width-div", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    rows = []
    for method in args.methods.split(","):
        row = run_forked(run_row, method, args) if args.device == "cpu" else run_row(method, args)
        rows.append(row)
        print(
            f"{method}: {row['seconds_per_image']:.1f} s/image  NFE {row['nfe_per_image']:.0f}  "
            f"peak +{row['peak_memory_mib']:.0f} MiB  ({row['params_m']:.1f} M params, "
            f"{row['image_size']} px)",
            flush=True,
        )
    if args.json:
        write_json(args.json, rows)
    return rows


if __name__ == "__main__":
    main()
