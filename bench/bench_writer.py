"""What the background writer saves per batch: evaluation wall time with it and without.

    python -m bench.bench_writer --json bench/results/writer_cpu.json

A test run over ``--images`` dead-leaves images of ``--size`` px (SR×4 ``BicubicSR`` + noise, the
real datamodule) with the demo's evaluation callbacks (PSNR + SSIM, restored / measurement /
reference PNGs, the grid), ``--batch`` images per batch, restored by the pseudo-inverse plus a
wait of ``--device-ms`` per batch. The wait stands for the restoration on a GPU, where the loop's
thread only waits for the device while the sampler runs: the time the writer's work can hide
behind. Variants, interleaved ``--repeats`` times (medians):

* ``inline`` — every callback ``background: false`` (the work of batch k after its restoration);
* ``background`` — the default (batch k written while batch k+1 is restored);
* ``restore_only`` — no callbacks: the floor (data loading + the waits).

Without the writer the run costs restore + write per batch, with it about max(restore, write)
per batch; on a CPU that has no core to spare the worker's work is slowed by the loop's (and by
other processes), which this benchmark measures as it is.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.measure import interleaved, machine, median, write_json
from lit_restore.data import DeadLeaves, RestorationDataModule
from lit_restore.evaluation import ImageGridLogger, RestorationMetrics, RestoredImageWriter
from lit_restore.modules.base import PseudoInverse
from lit_restore.operators import BicubicSR, GaussianNoise


class WaitingPseudoInverse(PseudoInverse):
    """``A⁺y`` after a wait of ``device_s`` (the device's share of a restoration)."""

    def __init__(self, device_s: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.device_s = device_s

    def restore(self, batch: dict) -> torch.Tensor:
        time.sleep(self.device_s)
        return super().restore(batch)


def run(args, variant: str, root: Path) -> None:
    op, noise = BicubicSR(4), GaussianNoise(0.025)
    data = RestorationDataModule(
        test_set=DeadLeaves(length=args.images, image_size=args.size, seed=0),
        operator=op, noise=noise, crop_size=args.size, batch_size=args.batch,
    )  # fmt: skip
    background = variant == "background"
    callbacks = []
    if variant != "restore_only":
        callbacks = [
            RestorationMetrics(metrics=["psnr", "ssim"], print_table=False, background=background),
            RestoredImageWriter(save_measurement=True, save_reference=True, background=background),
            ImageGridLogger(background=background),
        ]
    out = Path(tempfile.mkdtemp(dir=root))
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, callbacks=callbacks, default_root_dir=out,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    model = WaitingPseudoInverse(args.device_ms / 1000)
    model.attach_measurement(data.operator, data.noise)
    trainer.test(model, datamodule=data, verbose=False)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device-ms", type=float, default=500.0, help="wait per batch")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = ("restore_only", "inline", "background")
    with tempfile.TemporaryDirectory() as tmp:
        times = interleaved(
            {v: lambda v=v: run(args, v, Path(tmp)) for v in variants}, args.repeats
        )
    med = {v: median(t) for v, t in times.items()}
    batches = -(-args.images // args.batch)
    result = {
        "meta": {"machine": machine(), "args": {**vars(args), "json": str(args.json)}},
        "seconds": times,
        "median_s": med,
        "write_s_per_batch_inline": (med["inline"] - med["restore_only"]) / batches,
        "write_s_per_batch_background": (med["background"] - med["restore_only"]) / batches,
        "speedup_background_over_inline": med["inline"] / med["background"],
    }
    for v in variants:
        print(f"{v:>12}: median {med[v]:.2f} s  ({', '.join(f'{t:.2f}' for t in times[v])})")
    print(
        f"writing adds {result['write_s_per_batch_inline']:.3f} s/batch in the loop, "
        f"{result['write_s_per_batch_background']:.3f} s/batch in the background; "
        f"background is {result['speedup_background_over_inline']:.2f}x faster than inline"
    )
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
