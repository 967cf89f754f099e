"""Cost of one guidance step of a frozen prior: forward ε(x_t, t) + backward w.r.t. x_t.

That is what DPS / SaFaRI pay per sampling step (∇_{x_t} ‖y − A x̂0(x_t)‖²); DDNM/DDRM/DDPG pay
only the forward. Random weights (the cost does not depend on them), the published ADM-256
layouts (ImageNet ``256x256_diffusion_uncond``, FFHQ ``ffhq_10m``), batch 1/4/8, float32 and a
bfloat16 torso. Memory: CUDA ``max_memory_allocated``; on CPU each row runs in a fresh process and
reports the growth of its peak RSS (``ru_maxrss``) from after the model is built to after the
steps — the activations and gradients of one step, weights excluded.

    python bench/bench_prior.py                      # full 256 px configs (GPU)
    python bench/bench_prior.py --reduced --device cpu --batches 1 4 --repeats 2
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_samplers import reduce  # one reduction rule for both benches (bench/ is on sys.path)

from lit_restore.priors import ADMPrior
from lit_restore.priors.registry import ADM_FFHQ256, ADM_IMAGENET256

CONFIGS = {"adm-imagenet256-uncond": ADM_IMAGENET256, "adm-ffhq256-dps": ADM_FFHQ256}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def bench_one(
    prior: ADMPrior, batch: int, device: torch.device, repeats: int, warmup: int
) -> tuple[float, str]:
    rss0 = rss_mb()
    size = prior.image_size
    x = torch.randn(batch, 3, size, size, device=device)
    t = torch.full((batch,), 500, device=device, dtype=torch.long)

    def step() -> None:
        xt = x.detach().requires_grad_(True)
        eps = prior.eps(xt, t)
        x0 = prior.x0_from_eps(xt, t, eps)
        (grad,) = torch.autograd.grad(x0.square().sum(), xt)
        assert torch.isfinite(grad).all()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    ms = (time.perf_counter() - start) / repeats * 1000
    if device.type == "cuda":
        mem = f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
    else:
        mem = f"RSS +{rss_mb() - rss0:.0f} MiB"
    return ms, mem


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--priors", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--reduced", action="store_true", help="small image_size/width for a CPU run")
    ap.add_argument("--image-size", type=int, default=64, help="image size with --reduced")
    ap.add_argument("--width-div", type=int, default=4, help="width divisor with --reduced")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--row", nargs=3, metavar=("PRIOR", "DTYPE", "BATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.row:
        return run_row(args, args.row[0], args.row[1], int(args.row[2]))
    device = torch.device(args.device)
    print(
        f"# device={device} torch={torch.__version__} threads={torch.get_num_threads()} reduced={args.reduced}"
    )
    print("| prior | config | params (M) | dtype | batch | ms/step | peak memory |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for name in args.priors:
        for dtype in args.dtypes:
            for b in args.batches:
                if device.type == "cpu":  # fresh process per row: a clean peak-RSS reading
                    cmd = [
                        sys.executable,
                        __file__,
                        *(argv if argv is not None else sys.argv[1:]),
                        "--row",
                        name,
                        dtype,
                        str(b),
                    ]
                    subprocess.run(cmd, check=True)
                else:
                    run_row(args, name, dtype, b)


def run_row(args: argparse.Namespace, name: str, dtype: str, batch: int) -> None:
    cfg = CONFIGS[name]
    if args.reduced:
        cfg = reduce(cfg, args.image_size, args.width_div)
    desc = f"{cfg['image_size']}px, C={cfg['num_channels']}, attn {cfg['attention_resolutions']}"
    device = torch.device(args.device)
    prior = ADMPrior(**cfg, dtype=dtype).to(device)
    n = sum(p.numel() for p in prior.parameters()) / 1e6
    ms, mem = bench_one(prior, batch, device, args.repeats, args.warmup)
    print(f"| {name} | {desc} | {n:.1f} | {dtype} | {batch} | {ms:.1f} | {mem} |", flush=True)


if __name__ == "__main__":
    main()
