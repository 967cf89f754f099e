"""Parity fixture ``tests/data/parity/kernel_wizard.npz``: the DPS paper's nonlinear blur network
(bkse ``KernelWizard.adaptKernel``) run by the official code.

An addition to ``scripts/make_parity_fixtures.py`` (same helpers and conventions: the official
checkout is imported, never copied; numbers only are written). From the repository root::

    python scripts/make_parity_fixture_kernel_wizard.py --bkse /path/to/blur-kernel-space-exploring

(VinAIResearch/blur-kernel-space-exploring at f2fe73e5d4e0d32ae9b6d34207a57bef0d3255c0; the DPS
README clones it as ``bkse``). Writes the full-size layout of
``models/kernel_encoding/kernel_wizard.py::KernelWizard`` with ``options/generate_blur/
default.yml``'s options (names and shapes), and a tiny model in the same layout (``nf`` 4, one
residual block each side and in F, ``kernel_dim`` 32; random float16-exact weights, seed 41) with its
``adaptKernel`` of a 128×128 input and a kernel code from ``torch.Generator().manual_seed(42)``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_parity_fixtures import OUT_DEFAULT, half_state, official, randomize, save, source

#: options/generate_blur/default.yml (KernelWizard), the released GOPRO_wVAE.pth model
GOPRO = dict(input_nc=3, nf=64, front_RBs=10, back_RBs=20, N_frames=1, kernel_dim=512,
             use_vae=True, KernelExtractor=dict(norm="none", use_sharp=True, n_blocks=4,
             padding_type="reflect", use_dropout=False),
             Adapter=dict(norm="none", use_dropout=False))  # fmt: skip
TINY = {
    **GOPRO,
    "nf": 4,
    "front_RBs": 1,
    "back_RBs": 1,
    "kernel_dim": 32,
    "KernelExtractor": {**GOPRO["KernelExtractor"], "n_blocks": 1},
}


def fx_kernel_wizard(paths, out: Path) -> None:
    with official(paths.bkse):
        kw = importlib.import_module("models.kernel_encoding.kernel_wizard")
        with torch.device("meta"):
            full = kw.KernelWizard(GOPRO)
        layout = {k: list(v.shape) for k, v in full.state_dict().items()}
        torch.manual_seed(41)
        tiny = kw.KernelWizard(TINY).eval()
        randomize(tiny, 41)
        g = torch.Generator().manual_seed(42)
        x = torch.rand(1, 3, 128, 128, generator=g).half().float()
        code = torch.randn(1, 32, 1, 1, generator=g) * 1.2
        with torch.no_grad():
            blurred = tiny.adaptKernel(x.clone(), kernel=code)
    meta = {
        "source": source("bkse", "models/kernel_encoding/kernel_wizard.py::KernelWizard"),
        "gopro_options": GOPRO, "tiny_options": TINY, "gopro_layout": layout,
        "weights": "random, float16-exact (stored as float16)",
        "outputs": "blurred = adaptKernel(x, kernel=code), x in [0, 1]",
    }  # fmt: skip
    save(out, "kernel_wizard", meta, state_dict=half_state(tiny), x=x, code=code, blurred=blurred)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--bkse", type=Path, required=True, help="checkout of blur-kernel-space-exploring"
    )
    p.add_argument("--out", type=Path, default=OUT_DEFAULT)
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    fx_kernel_wizard(args, args.out)


if __name__ == "__main__":
    main()
