"""Attention blocks on SDPA's fused kernel vs the math kernel: peak memory and time.

    python -m bench.bench_attention --json bench/results/attention_cpu.json

Before this change the three global attention blocks (ADM ``AttentionBlock``; the DDPM/LDM
``AttnBlock`` of the DDIM UNet and of the VQ autoencoder's mid block) handed
``scaled_dot_product_attention`` q/k/v with a strided last dimension, which no fused kernel
accepts, so every call ran the *math* kernel: it materialises the L×L score matrix (and keeps it
for the backward). "before" here is that kernel (SDPA restricted to ``SDPBackend.MATH``) on the
same block; "after" is the default dispatch, which now takes the fused kernel (flash /
memory-efficient on CUDA, the flash kernel on CPU). Outputs of both are compared (max abs).

Each case runs in a forked child per variant for its peak memory (CPU: peak-RSS growth; CUDA:
``max_memory_allocated`` above the start) and the times are medians of ``--repeats``
interleaved runs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import interleaved, machine, median, peak_memory, run_forked, write_json
from lit_restore.nn.adm_unet import AttentionBlock
from lit_restore.nn.blocks import AttnBlock

#: name → (block factory, input shape [B, C, H, W], with backward)
CASES: dict[str, tuple[Callable[[], torch.nn.Module], tuple[int, ...], bool]] = {
    "ADM AttentionBlock, 1024 tokens, C=256 (4 heads), batch 8, fwd+bwd": (
        lambda: AttentionBlock(256, num_head_channels=64),
        (8, 256, 32, 32),
        True,
    ),
    "DDIM UNet AttnBlock, 256 tokens, C=256, batch 8, fwd+bwd": (
        lambda: AttnBlock(256),
        (8, 256, 16, 16),
        True,
    ),
    "VQ-f4 mid AttnBlock, latent 64² = 4096 tokens, C=512, batch 1, fwd": (
        lambda: AttnBlock(512),
        (1, 512, 64, 64),
        False,
    ),
    "VQ-f4 mid AttnBlock, latent 96² = 9216 tokens, C=512, batch 1, fwd": (
        lambda: AttnBlock(512),
        (1, 512, 96, 96),
        False,
    ),
}
BACKENDS = {"before (math kernel)": [SDPBackend.MATH], "after (fused)": None}


def _call(name: str, device: str, backend: list | None) -> Callable[[], torch.Tensor]:
    make, shape, backward = CASES[name]
    torch.manual_seed(0)
    block = make().to(device)
    for p in block.parameters():
        p.requires_grad_(False)
        p.data.normal_(0, 0.05)
    x = torch.randn(shape, device=device)

    def run() -> torch.Tensor:
        with sdpa_kernel(backend) if backend else contextlib.nullcontext():
            if backward:
                xi = x.clone().requires_grad_(True)
                out = block(xi)
                out.square().sum().backward()
                return out.detach()
            with torch.no_grad():
                return block(x)

    return run


def _memory(name: str, device: str, variant: str) -> tuple[float, str]:
    # no warm-up: a first call's buffers would be reused from the allocator's cache and the
    # window would not see them (each variant runs in its own fresh child)
    return peak_memory(_call(name, device, BACKENDS[variant]), device)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cases", type=int, nargs="*", default=None, help="indices into CASES")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = list(CASES)
    names = [names[i] for i in args.cases] if args.cases is not None else names

    # every memory window first, each in a child forked from a parent that has not yet run a
    # block: a child inherits its parent's allocator free lists, which would hide allocations
    def memory(name: str, variant: str) -> tuple[float, str]:
        if args.device == "cpu":
            return run_forked(_memory, name, args.device, variant)
        return _memory(name, args.device, variant)

    mem = {(name, v): memory(name, v) for name in names for v in BACKENDS}
    rows = []
    for name in names:
        fns = {v: _call(name, args.device, b) for v, b in BACKENDS.items()}
        outs = {v: fn() for v, fn in fns.items()}
        times = interleaved(fns, args.repeats, args.device)
        before, after = BACKENDS
        row = {
            "case": name,
            "peak_mib": {v: mem[name, v][0] for v in BACKENDS},
            "memory_kind": mem[name, after][1],
            "seconds": {v: median(t) for v, t in times.items()},
            "speedup": median(times[before]) / median(times[after]),
            "max_abs_diff": (outs[before] - outs[after]).abs().max().item(),
        }
        rows.append(row)
        print(row, flush=True)
    lines = [
        "| case | peak MiB before → after | s before → after | speed-up | max abs diff |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        (mb, ma), (tb, ta) = r["peak_mib"].values(), r["seconds"].values()
        lines.append(
            f"| {r['case']} | {mb:.0f} → {ma:.0f} | {tb:.3f} → {ta:.3f} | {r['speedup']:.2f}× "
            f"| {r['max_abs_diff']:.1e} |"
        )
    print("\n".join(lines))
    if args.json:
        write_json(
            args.json,
            {
                "meta": {"machine": machine(), "args": vars(args) | {"json": str(args.json)}},
                "rows": rows,
            },
        )
    return rows


if __name__ == "__main__":
    main()
