"""Train the small pixel-space ResShift recipe on CPU and compare it with bicubic upsampling.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. python bench/resshift_demo_eval.py --minutes 8 --threads 1

(measured numbers: bench/README.md, section ResShift.)

No datamodule needed: the library's dead-leaves images (:class:`lit_restore.data.DeadLeaves`,
occluding discs with power-law radii, the classic natural-image surrogate) give 32×32 HQ images
(``--size``); LQ = MATLAB bicubic ×1/4. Training uses the real ``ResShiftModule`` under ``lightning.Trainer`` with EMA;
evaluation runs the 4-step sampler on held-out images and reports PSNR (dB, [0,1] range) of the
restoration and of MATLAB-bicubic ×4 upsampling of the same LQ, plus the training loss at the
start and end, and (diagnostic) the network's one-shot x0 prediction from the prior sample x_T.

Why the defaults (κ=2, min_noise_level 1.2, ``norm_groups=8``): with the exact E[x0|x_t] the
4-step chain does not return the posterior mean but E[x0 | x_1] along a sampled trajectory, so
its MSE exceeds the posterior-mean MSE by the chain output's own conditional variance
(closed form in ``tests/test_resshift_chain.py``). A larger final noise κ√η_1 makes that last
step average more, which moves the chain towards the PSNR-optimal mean; the journal's 0.2 aims
at perceptual quality instead. ``norm_groups=8``: see :class:`SwinUNet`.
"""

from __future__ import annotations

import argparse
import math
import time

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from lit_restore.data import DeadLeaves
from lit_restore.degradations import BicubicDegradation, imresize
from lit_restore.metrics import fidelity
from lit_restore.modules.resshift import ResShiftModule
from lit_restore.nn import SwinUNet


class DeadLeavesSet(Dataset):
    """:class:`lit_restore.data.DeadLeaves` items as ResShift training batches (``hq`` in [-1, 1]);
    disc radii from 2 px to 3/8 of the side."""

    def __init__(self, length: int, seed: int, size: int = 32) -> None:
        self.images = DeadLeaves(
            length=length, image_size=size, seed=seed, rmin=2 / size, rmax=0.375
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        item = self.images[i]
        hq = item["image"] * 2 - 1
        lq = BicubicDegradation(4)(hq, None).lq  # the recipe's data degradation
        return {"hq": hq, "lq": lq, "index": i, "name": item["name"]}


class LossLog(L.Callback):
    """Per-step training loss (the acceptance asks that it falls)."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.values.append(float(outputs["loss"]))


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of [-1, 1] images, by the library's metric on [0, 1]."""
    return fidelity.psnr((a + 1) / 2, (b + 1) / 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--max-steps", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-eval", type=int, default=32)
    ap.add_argument("--size", type=int, default=32, help="HQ side (LQ = size/4)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--kappa", type=float, default=2.0)
    ap.add_argument("--min-noise-level", type=float, default=1.2, help="κ·sqrt(eta_1)")
    ap.add_argument("--norm-groups", type=int, default=8, help="GroupNorm groups (official 32)")
    ap.add_argument("--ema-decay", type=float, default=0.99, help="0 = no EMA (raw weights)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    L.seed_everything(0)
    net = SwinUNet(image_size=args.size, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                   attention_resolutions=(32,), num_head_channels=16, swin_embed_dim=32,
                   window_size=4, mlp_ratio=2.0, lq_size=args.size,
                   norm_groups=args.norm_groups)  # fmt: skip
    module = ResShiftModule(network=net, sf=4, lpips_weight=0.0,
                            kappa=args.kappa, min_noise_level=args.min_noise_level,
                            lr=args.lr, lr_min=args.lr / 5, warmup_steps=50)  # fmt: skip
    train = DataLoader(DeadLeavesSet(100_000, 0, args.size), batch_size=args.batch)
    losses = LossLog()
    ema = [L.pytorch.callbacks.EMAWeightAveraging(decay=args.ema_decay)] if args.ema_decay else []
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=args.max_steps,
        max_time={"minutes": args.minutes}, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        callbacks=[*ema, losses],
    )  # fmt: skip
    t0 = time.time()
    trainer.fit(module, train)
    train_s = time.time() - t0
    module.eval()
    ev = DataLoader(DeadLeavesSet(args.n_eval, 12345, args.size), batch_size=args.n_eval)
    batch = next(iter(ev))
    hq, lq = batch["hq"], batch["lq"]  # LQ made as in training (BicubicDegradation)
    t0 = time.time()
    with torch.no_grad():
        out = module.restore(batch).clamp(-1, 1)
    infer_s = (time.time() - t0) / hq.shape[0]
    bic = imresize(lq, 4.0).clamp(-1, 1)
    # the wavelet colour fix takes the low frequencies from the upsampled LQ
    module.color_fix = "wavelet"
    with torch.no_grad():
        out_fix = module.restore(batch).clamp(-1, 1)
    p_fix = psnr(out_fix, hq)
    # reference: the network's one-shot x0 prediction from the prior sample x_T (≈ the posterior
    # mean E[x0 | y], the PSNR optimum); the chain's output adds its own conditional variance
    sch, net = module.schedule, module.network
    t_last = torch.full((hq.shape[0],), sch.steps - 1, dtype=torch.long)
    with torch.no_grad():
        cond = module.chain.condition(net, module.first_stage, lq)  # z_y = bicubic↑ LQ here
        x_T = sch.prior_sample(
            cond.z_y, torch.randn(hq.shape, generator=torch.Generator().manual_seed(1))
        )
        one = net(sch.scale_model_input(x_T, t_last), t_last, lq=cond.lq).clamp(-1, 1)
    p_one = psnr(one, hq)
    p_rs, p_bic = psnr(out, hq), psnr(bic, hq)
    print(f"trained {trainer.global_step} steps (batch {args.batch}) in {train_s:.0f}s on CPU")
    v, k = losses.values, max(1, min(100, len(losses.values) // 5))
    print(f"train loss (MSE): first {k} steps {sum(v[:k]) / k:.4f}, last {k} {sum(v[-k:]) / k:.4f}")
    ema_s = f"EMA decay {args.ema_decay}" if args.ema_decay else "raw (no EMA)"
    print(f"evaluated with the {ema_s} weights")
    print(f"held-out dead-leaves {args.size}x{args.size}, x4, n={hq.shape[0]}:")
    print(f"  bicubic x4   PSNR {p_bic.mean():.2f} dB")
    print(f"  ResShift-4   PSNR {p_rs.mean():.2f} dB  ({(p_rs > p_bic).float().mean() * 100:.0f}% of "
          f"images better), {infer_s * 1000:.0f} ms/image")  # fmt: skip
    print(f"  one-shot x0 from x_T (1 NFE, diagnostic)   PSNR {p_one.mean():.2f} dB")
    print(f"  ResShift-4 + wavelet colour fix   PSNR {p_fix.mean():.2f} dB  "
          f"({(p_fix > p_bic).float().mean() * 100:.0f}% of images better)")  # fmt: skip
    assert math.isfinite(float(p_rs.mean()))


if __name__ == "__main__":
    main()
