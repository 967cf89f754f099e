"""Seconds per image and peak GPU memory of every zero-shot sampler at its published step count.

Usage::

    python bench/bench_samplers.py --device cuda --batch-size 1            # ADM-256 (random weights)
    python bench/bench_samplers.py --device cpu --max-steps 5 --size 64    # smoke run on CPU
    python bench/bench_samplers.py --prior mypkg.mymodule:make_prior       # any prior factory

The prior is built by :func:`make_prior`: ``adm`` = ``lit_restore.priors.ADMPrior`` in the
ImageNet-256 unconditional layout (random weights: speed and memory do not depend on the values);
when that class is not importable it falls back to ``standin`` — the analytic
:class:`~lit_restore.priors.gaussian.GaussianPrior` wrapped by a small random conv net, so the
gradient methods still backpropagate through a network. The operator is a random-pixel inpainting
mask with an exact SVD (every method runs on it), at the prior's image size.

``--max-steps`` caps the step count (CPU smoke runs); capped rows are marked in the table, and
seconds/image are then *not* comparable with published step counts. Results are printed as a
markdown table and, with ``--out``, written as JSON.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lit_restore.operators.base import LinearOperator
from lit_restore.priors.base import DiffusionPrior
from lit_restore.priors.gaussian import GaussianPrior
from lit_restore.samplers import DDNM, DDPG, DDRM, DPS, FDGR, IDPG, SaFaRI

#: method -> (constructor, published step count)
METHODS = {
    "dps": (lambda n: DPS(steps=n, scale=0.5), 1000),
    "safari": (lambda n: SaFaRI(steps=n, scale=0.5), 1000),
    "ddrm": (lambda n: DDRM(steps=n), 20),
    "ddnm": (lambda n: DDNM(steps=n), 100),
    "ddpg": (lambda n: DDPG(steps=n), 100),
    "idpg": (lambda n: IDPG(steps=n), 100),
    "fdgr": (lambda n: FDGR(steps=n), 100),
}

#: guided-diffusion 256x256_diffusion_uncond flags (shared/research/safari_dps.md §2.3)
ADM_IMAGENET256 = dict(
    image_size=256,
    num_channels=256,
    num_res_blocks=2,
    channel_mult=(1, 1, 2, 2, 4, 4),
    attention_resolutions="32,16,8",
    num_heads=4,
    num_head_channels=64,
    learn_sigma=True,
    use_scale_shift_norm=True,
    resblock_updown=True,
    dropout=0.0,
)


class MaskOperator(LinearOperator):
    """``A x = m ⊙ x`` with an exact SVD: V = U = the permutation putting kept pixels first."""

    has_svd = True

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        flat = mask.flatten().bool()
        self.register_buffer("mask", mask.float())
        self.register_buffer(
            "perm", torch.cat([flat.nonzero().flatten(), (~flat).nonzero().flatten()])
        )
        self.register_buffer("inv", torch.argsort(self.perm))
        self.register_buffer(
            "s", torch.cat([torch.ones(int(flat.sum())), torch.zeros(int((~flat).sum()))])
        )
        self.x_shape_hint = tuple(mask.shape)

    def A(self, x: Tensor) -> Tensor:
        return x * self.mask

    def adjoint(self, y: Tensor) -> Tensor:
        return y * self.mask

    def Vt(self, x: Tensor) -> Tensor:
        return x.flatten(1)[:, self.perm]

    def V(self, z: Tensor, like=None) -> Tensor:
        return z[:, self.inv].view(-1, *self.x_shape_hint)

    Ut = Vt

    def U(self, z: Tensor) -> Tensor:
        return self.V(z)

    def singulars(self) -> Tensor:
        return self.s


class StandInPrior(DiffusionPrior):
    """GaussianPrior ε plus a small random conv net (a cost stand-in when ADM is unavailable)."""

    def __init__(self, channels: int = 3, width: int = 64) -> None:
        super().__init__(image_size=None, channels=channels)
        self.gauss = GaussianPrior.power_law(channels=channels)
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, channels, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def eps(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.gauss.eps(x_t, t) + self.net(x_t)


def make_prior(name: str, size: int) -> tuple[DiffusionPrior, str]:
    """``adm`` | ``standin`` | ``module:callable`` (called with ``image_size=size``)."""
    if ":" in name:
        mod, fn = name.split(":", 1)
        return getattr(importlib.import_module(mod), fn)(image_size=size), name
    if name == "adm":
        try:
            from lit_restore.priors import ADMPrior  # type: ignore[attr-defined]
        except ImportError:
            print("ADMPrior not importable; using the stand-in prior", file=sys.stderr)
            return make_prior("standin", size)
        try:
            return ADMPrior(**{**ADM_IMAGENET256, "image_size": size}), "adm-imagenet256 (random)"
        except TypeError as err:
            raise SystemExit(
                f"ADMPrior did not accept the guided-diffusion flags ({err}); adapt make_prior() "
                "in bench/bench_samplers.py to its constructor."
            ) from err
    if name == "standin":
        return StandInPrior(), "gaussian+conv stand-in"
    raise SystemExit(f"unknown --prior {name!r}; use adm, standin or module:callable")


def bench_one(method: str, prior: DiffusionPrior, args, device: torch.device) -> dict:
    ctor, published = METHODS[method]
    steps = min(published, args.max_steps) if args.max_steps else published
    sampler = ctor(steps)
    size, b = args.size, args.batch_size
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(1, 3, size, size, generator=g) > 0.5).float()
    op = MaskOperator(mask[0]).to(device)
    x = (torch.rand(b, 3, size, size, generator=g) * 2 - 1).to(device)
    y = op.A(x) + 0.1 * torch.randn(x.shape, generator=g).to(device)
    gens = [torch.Generator(device=device).manual_seed(i) for i in range(b)]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
        sampler.sample(prior, op, y, sigma_y=0.1, generator=gens)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = (
        torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    )
    return {
        "method": method,
        "steps": steps,
        "published_steps": published,
        "nfe": sampler.nfe,
        "seconds_per_image": seconds / b,
        "peak_memory_mb": peak,
        "capped": steps != published,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--prior", default="adm", help="adm | standin | module:callable")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument(
        "--max-steps", type=int, default=0, help="cap steps (CPU smoke runs); 0 = published"
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="network under bf16 autocast")
    p.add_argument("--out", type=Path, default=None, help="write results as JSON")
    args = p.parse_args()
    device = torch.device(args.device)
    prior, prior_name = make_prior(args.prior, args.size)
    prior = prior.to(device).freeze()
    rows = [bench_one(m, prior, args, device) for m in args.methods.split(",")]
    dev = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({os.cpu_count()} cores)"
    )
    print(
        f"\nprior: {prior_name}, {args.size}px, batch {args.batch_size}, device: {dev}, bf16: {args.bf16}\n"
    )
    print("| method | steps | NFE | s / image | peak MiB |")
    print("|---|---|---|---|---|")
    for r in rows:
        cap = f" (capped from {r['published_steps']})" if r["capped"] else ""
        print(
            f"| {r['method']} | {r['steps']}{cap} | {r['nfe']} | {r['seconds_per_image']:.3f} | {r['peak_memory_mb']:.0f} |"
        )
    if args.out:
        meta = {
            "prior": prior_name,
            "size": args.size,
            "batch_size": args.batch_size,
            "device": dev,
            "bf16": args.bf16,
        }
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
