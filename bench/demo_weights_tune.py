#!/usr/bin/env python
"""Choose the guidance scale of DPS / SaFaRI over the shipped demo prior, on the TRAINING images.

The main job's measurement model (centre 128×128 crops, ``BicubicSR(4, mode="matlab")``,
``GaussianNoise(0.025)``, per-image seeds from :mod:`lit_restore.utils.seeding`) applied to the
``*_256.png`` files of ``data/train/`` (the demo images' scale; ``data/README.md``) — never to
``data/demo/``. Each run restores every image with the same code path as ``sample.py test``
(:class:`~lit_restore.data.RestorationDataModule` → ``ZeroShotRestoration.restore``) and reports
the mean PSNR/SSIM (:mod:`lit_restore.metrics.fidelity`, images in [0, 1]) and seconds per image.
``pinv`` (A⁺y) and ``ddnm`` rows are the references the scales are judged against.
``--folder data/demo`` runs the same measurement on the demo images: for reporting a prior's
effect once its scales are chosen, never for choosing them.

    OMP_NUM_THREADS=2 python bench/demo_weights_tune.py --methods pinv ddnm \
        dps:0.5,1,2,4 safari:0.5,1,2,4 --steps 20 --out bench/results/demo_weights_tune.json

``dps:0.5,1`` sweeps DPS's per-step ``scale`` (the value the sampler runs with at ``--steps``;
the presets write it as is). Every other argument is the method's ``demo_adm`` preset
(:mod:`lit_restore.samplers.presets`, what the main job runs), changed by ``--set METHOD.KEY=VALUE``
(e.g. ``--set safari.r0=0.5 --set safari.tau=300``; values are YAML).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def datamodule(folder: Path, crop: int, sigma: float):
    from lit_restore.data import ImageFolder, RestorationDataModule
    from lit_restore.operators import BicubicSR, GaussianNoise

    dm = RestorationDataModule(
        test_set=ImageFolder(str(folder)),
        operator=BicubicSR(4, mode="matlab"),
        noise=GaussianNoise(sigma),
        crop_size=crop,
        batch_size=8,
        seed=0,
    )
    dm.setup("test")
    return dm


def build(
    method: str,
    scale: float | None,
    steps: int,
    dm,
    prior: str = "adm-demo-pd",
    extra: dict[str, Any] | None = None,
):
    from lit_restore.modules import PseudoInverse, ZeroShotRestoration
    from lit_restore.presets import preset_args
    from lit_restore.priors import load_prior
    from lit_restore.samplers import DDNM, DPS, SaFaRI

    if method == "pinv":
        return PseudoInverse(operator=dm.operator, noise=dm.noise)
    cls = {"dps": DPS, "safari": SaFaRI, "ddnm": DDNM}[method]
    args = {**preset_args(cls, "demo_adm"), "steps": steps, **(extra or {})}
    if scale is not None:
        args["scale"] = scale
    sampler = cls(**args)
    return ZeroShotRestoration(
        load_prior(prior, **({} if prior == "adm-demo-pd" else {"image_size": None})),
        sampler,
        operator=dm.operator,
        noise=dm.noise,
        seed=0,
    )


def evaluate(module, dm) -> dict[str, float]:
    from lit_restore.metrics.fidelity import psnr, ssim

    psnrs, ssims, seconds, n = [], [], 0.0, 0
    for batch in dm.test_dataloader():
        t0 = time.perf_counter()
        with torch.no_grad():
            x = module.restore(batch)
        seconds += time.perf_counter() - t0
        out, ref = (x.clamp(-1, 1) + 1) / 2, (batch["hq"] + 1) / 2
        psnrs += psnr(out, ref).tolist()
        ssims += ssim(out, ref).tolist()
        n += x.shape[0]
    return {
        "psnr": sum(psnrs) / n,
        "ssim": sum(ssims) / n,
        "seconds_per_image": seconds / n,
        "per_image_psnr": psnrs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--methods", nargs="+", default=["pinv", "ddnm", "dps:1,2,4", "safari:1,2,4"]
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--folder", type=Path, default=ROOT / "data" / "train",
        help="image folder (default data/train; data/demo only to report, never to choose)",
    )  # fmt: skip
    parser.add_argument("--pattern", default="*_256.png", help="files of --folder to use")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--sigma", type=float, default=0.025)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--prior", default="adm-demo-pd", help="registry name, or a training checkpoint (last.ckpt)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="METHOD.KEY=VALUE",
        help="override one argument of a method's demo_adm preset (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()
    extra: dict[str, dict[str, Any]] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        method, _, name = key.partition(".")
        extra.setdefault(method, {})[name] = yaml.safe_load(value)
    torch.manual_seed(0)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        files = sorted(args.folder.glob(args.pattern))
        if not files:
            raise SystemExit(
                f"error: --folder {args.folder}: no file matches --pattern {args.pattern!r}"
            )
        for f in files:
            (Path(tmp) / f.name).symlink_to(f.resolve())
        dm = datamodule(Path(tmp), args.crop, args.sigma)
        for spec in args.methods:
            method, _, scales = spec.partition(":")
            for scale in [float(s) for s in scales.split(",")] if scales else [None]:
                row = {"method": method, "scale": scale, "steps": args.steps,
                       "set": extra.get(method, {})}  # fmt: skip
                module = build(method, scale, args.steps, dm, args.prior, extra.get(method))
                row.update(evaluate(module, dm))
                results.append(row)
                print(
                    f"{method:7s} scale {scale!s:5s} steps {args.steps} {row['set'] or ''}: "
                    f"{row['psnr']:.2f} dB / "
                    f"SSIM {row['ssim']:.3f}  {row['seconds_per_image']:.2f} s/image",
                    flush=True,
                )
    if args.out is not None:
        args.out.write_text(
            json.dumps(
                {
                    "args": vars(args) | {"out": str(args.out), "folder": str(args.folder)},
                    "results": results,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
