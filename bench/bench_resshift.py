"""ResShift speed/memory benchmark: the official ×4 topology (118.6 M UNet + VQ-f4), random weights.

    python bench/bench_resshift.py                 # GPU: batch 1 and 16, fp32 and bf16
    python bench/bench_resshift.py --reduced       # CPU: batch 1, fewer repeats

* training throughput: one optimisation step (VQ encode of HQ and bicubic↑LQ without grad,
  UNet forward/backward, decode + LPIPS-VGG with a random backbone, AdamW) → images/s;
* inference: the 4-step sampler (bicubic↑, VQ encode, 4 UNet calls, VQ decode) for a 64×64 LQ →
  256×256 output → seconds per image;
* peak memory: ``torch.cuda.max_memory_allocated`` on GPU, process max RSS on CPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from lit_restore.modules.resshift import ResShiftModule
from lit_restore.nn import VQModel, freeze


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _peak_mb(dev: torch.device) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(dev: torch.device) -> ResShiftModule:
    m = ResShiftModule(lpips_weight=1.0, lpips_pretrained_backbone=False)
    m.first_stage = freeze(VQModel())  # random weights, official f4 layout
    return m.to(dev)


def bench_train(m: ResShiftModule, dev, bs: int, dtype, iters: int) -> dict:
    opt = torch.optim.AdamW(m.network.parameters(), lr=5e-5, weight_decay=0)
    hq = torch.rand(bs, 3, 256, 256, device=dev) * 2 - 1
    lq = torch.nn.functional.avg_pool2d(hq, 4)  # any ×4 LQ: the cost does not depend on it
    batch = {"hq": hq, "lq": lq, "index": torch.arange(bs)}
    m.log = lambda *a, **k: None  # no trainer attached
    m.train()

    def step() -> None:
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = m.training_step(batch, 0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(dev)
    dt = (time.perf_counter() - t) / iters
    return {"images_per_s": bs / dt, "s_per_step": dt, "peak_mb": _peak_mb(dev)}


@torch.no_grad()
def bench_infer(m: ResShiftModule, dev, bs: int, dtype, iters: int) -> dict:
    m.eval()
    batch = {"lq": torch.rand(bs, 3, 64, 64, device=dev) * 2 - 1, "index": torch.arange(bs)}
    with torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
        m.restore(batch)
        _sync(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        t = time.perf_counter()
        for _ in range(iters):
            m.restore(batch)
        _sync(dev)
    dt = (time.perf_counter() - t) / iters
    return {"s_per_image": dt / bs, "s_per_batch": dt, "peak_mb": _peak_mb(dev)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reduced", action="store_true", help="CPU: batch 1, 1 timed iteration")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    batches = [1] if args.reduced else [1, 16]
    iters = 1 if args.reduced else 10
    m = build(dev)
    n = sum(p.numel() for p in m.network.parameters()) / 1e6
    print(f"device {dev}, UNet {n:.2f} M params, threads {torch.get_num_threads()}")
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for bs in batches:
            tr = bench_train(m, dev, bs, dtype, iters)
            inf = bench_infer(m, dev, bs, dtype, iters)
            row = {"dtype": str(dtype).split(".")[-1], "batch": bs, "train": tr, "infer": inf}
            rows.append(row)
            print(json.dumps(row))


if __name__ == "__main__":
    main()
