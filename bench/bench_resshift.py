"""ResShift speed/memory benchmark: the official ×4 topology (118.6 M UNet + VQ-f4), random weights.

    python bench/bench_resshift.py                 # GPU: batch 1 and 16, fp32 and bf16
    python bench/bench_resshift.py --reduced       # CPU: batch 1, one timed iteration
    python bench/bench_resshift.py --reduced --infer-only --precisions fp32 --sampling posterior,one_step
                                                   # ResShift's 4-step chain beside SinSR's one step

* training throughput: one optimisation step (VQ encoding of HQ and bicubic↑LQ without grad,
  UNet forward/backward, decode + LPIPS-VGG with a random backbone, AdamW) → images/s;
* inference: the 4-step chain (bicubic↑, VQ encode, 4 UNet calls, VQ decode) for a 64×64 LQ →
  256×256 output → seconds per image;
* peak memory (:mod:`bench.measure`): CUDA ``max_memory_allocated`` above the start, CPU peak-RSS
  growth.

Precision, compile and channels-last are :class:`~lit_restore.modules.ResShiftModule`'s own flags
(``precision="bf16"``: the network, first stage and LPIPS under bf16 autocast), so the numbers are
those of the library's code path. ``tiny=True`` builds a small topology of the same kind (Swin UNet
+ VQ autoencoder with global mid-block attention) for CPU smoke runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import peak_memory, randomise, sync
from lit_restore.modules.resshift import ResShiftModule
from lit_restore.nn import SwinUNet, VQModel, freeze

#: a small network of the released kind (latent 16 px = LQ 16 px → HQ 64 px), for CPU smoke runs
TINY_UNET = dict(
    image_size=16, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
    attention_resolutions=(16,), num_head_channels=16, swin_depth=2, swin_embed_dim=32,
    window_size=4, mlp_ratio=2.0, lq_size=16, norm_groups=8,
)  # fmt: skip
TINY_VQ = dict(ch=32, ch_mult=(1, 2, 4), num_res_blocks=1, n_embed=64)


def build(
    dev: torch.device | str,
    *,
    tiny: bool = False,
    precision: str = "fp32",
    compile: bool | str = False,
    channels_last: bool = False,
    sampling: str = "posterior",
) -> ResShiftModule:
    """The ×4 model (released layouts, or :data:`TINY_UNET`/:data:`TINY_VQ`), random weights;
    ``sampling`` is the chain's mode (``"one_step"``: SinSR's one network call)."""
    torch.manual_seed(0)
    m = ResShiftModule(
        network=SwinUNet(**TINY_UNET) if tiny else SwinUNet(),
        lpips_weight=1.0, lpips_pretrained_backbone=False,
        precision=precision, compile=compile, channels_last=channels_last, sampling=sampling,
    )  # fmt: skip
    m.first_stage = freeze(randomise(VQModel(**TINY_VQ) if tiny else VQModel()))
    randomise(m.network)
    return m.to(dev)


def hq_size(m: ResShiftModule) -> int:
    return m.network.image_size * m.first_stage.downscale


def bench_train(m: ResShiftModule, dev, bs: int, iters: int, warmup: int = 1) -> dict:
    """Seconds per AdamW step at batch ``bs`` (HQ at the network's size), images/s, peak memory."""
    dev = torch.device(dev)
    opt = torch.optim.AdamW(m.network.parameters(), lr=5e-5, weight_decay=0)
    size = hq_size(m)
    g = torch.Generator().manual_seed(0)
    hq = torch.rand(bs, 3, size, size, generator=g) * 2 - 1
    lq = torch.nn.functional.avg_pool2d(hq, m.sf)  # any ×sf LQ: the cost does not depend on it
    batch = {"hq": hq.to(dev), "lq": lq.to(dev), "index": torch.arange(bs)}
    m.log = lambda *a, **k: None  # no trainer attached
    m.train()

    def step() -> None:
        loss = m.training_step(batch, 0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    peak, kind = peak_memory(step, dev)
    sync(dev)
    t = time.perf_counter()
    for _ in range(iters):
        step()
    sync(dev)
    dt = (time.perf_counter() - t) / iters
    return {"images_per_s": bs / dt, "s_per_step": dt, "peak_mib": peak, "memory_kind": kind}


@torch.no_grad()
def bench_infer(m: ResShiftModule, dev, bs: int, iters: int, warmup: int = 1) -> dict:
    """Seconds per image of the T-step chain (LQ at the network's ``lq_size`` → ×4), peak memory;
    ``output`` = the first restored image (for comparisons across settings)."""
    dev = torch.device(dev)
    m.eval()
    lq_size = m.network.lq_size
    g = torch.Generator().manual_seed(1)
    lq = torch.rand(bs, 3, lq_size, lq_size, generator=g) * 2 - 1
    batch = {"lq": lq.to(dev), "index": torch.arange(bs)}
    out: list[Tensor] = []
    for _ in range(warmup):
        m.restore(batch)
    calls = [0]  # network calls of one restoration of the batch (the NFE, counted, not assumed)
    hook = m.network.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    peak, kind = peak_memory(lambda: out.append(m.restore(batch)), dev)
    hook.remove()
    sync(dev)
    t = time.perf_counter()
    for _ in range(iters):
        m.restore(batch)
    sync(dev)
    dt = (time.perf_counter() - t) / iters
    return {
        "s_per_image": dt / bs,
        "images_per_s": bs / dt,
        "s_per_batch": dt,
        "peak_mib": peak,
        "memory_kind": kind,
        "network_calls": calls[0],
        "output": out[0][:1].float().cpu(),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reduced", action="store_true", help="CPU: batch 1, 1 timed iteration")
    ap.add_argument("--tiny", action="store_true", help="small topology (smoke runs)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16")
    ap.add_argument(
        "--sampling", default="posterior",
        help="comma-separated chain modes: posterior (ResShift), ode, one_step (SinSR)",
    )  # fmt: skip
    ap.add_argument("--infer-only", action="store_true", help="skip the training step")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    batches = [1] if args.reduced else [1, 16]
    iters = 1 if args.reduced else 10
    for sampling in args.sampling.split(","):
        for precision in args.precisions.split(","):
            m = build(dev, tiny=args.tiny, precision=precision, sampling=sampling)
            n = sum(p.numel() for p in m.network.parameters()) / 1e6
            print(f"device {dev}, UNet {n:.2f} M params, threads {torch.get_num_threads()}")
            for bs in batches:
                tr = None if args.infer_only else bench_train(m, dev, bs, iters)
                inf = bench_infer(m, dev, bs, iters)
                inf.pop("output")
                row = {"sampling": sampling, "precision": precision, "batch": bs, "train": tr,
                       "infer": inf}  # fmt: skip
                print(json.dumps(row))


if __name__ == "__main__":
    main()
