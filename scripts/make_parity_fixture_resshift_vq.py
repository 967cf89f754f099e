"""Parity fixture ``tests/data/parity/resshift_vq_face.npz``: ResShift's face autoencoder (VQ-f8
with ``num_res_blocks`` per level) run by the official code.

An addition to ``scripts/make_parity_fixtures.py`` (same helpers and conventions: the official
checkout is imported, never copied; numbers only are written). From the repository root::

    PYTHONPATH=<extra site dir> python scripts/make_parity_fixture_resshift_vq.py \\
        --resshift /path/to/ResShift [--out tests/data/parity]

(zsyOAOA/ResShift, branch ``journal`` at 3ce1d81e8402fd50083809ae288a3977f6921bdd; the extra site
dir holds ``einops``, as for the main script). Writes the full-size layout of
``ldm/models/autoencoder.py::VQModelTorch`` with ``configs/faceir_gfpgan512_lpips.yaml``'s
autoencoder parameters (names and shapes), and a tiny model in the same layout (two levels of 1
and 3 ResNet blocks; random float16-exact weights, seed 31; a codebook of 16 of its own latents
so that quantisation is not a tie) with its ``encode``, quantised ``decode`` and unquantised
``decode`` of an input from ``torch.Generator().manual_seed(32)``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_parity_fixtures import (
    OUT_DEFAULT,
    half_state,
    official,
    randomize,
    save,
    source,
    stub_modules,
)

#: ResShift's face autoencoder (configs/faceir_gfpgan512_lpips.yaml, autoencoder.params):
#: VQ-f8, 8 latent channels, num_res_blocks given per level
VQ_FACE = dict(embed_dim=8, n_embed=4096, ddconfig=dict(
    double_z=False, z_channels=8, resolution=512, in_channels=3, out_ch=3, ch=64,
    ch_mult=[1, 2, 4, 8], num_res_blocks=[1, 2, 3, 4], attn_resolutions=[], dropout=0.0))  # fmt: skip
#: the same layout at a tiny size (two levels, per-level block counts 1 and 3)
VQ_TINY = dict(embed_dim=4, n_embed=16, ddconfig=dict(
    double_z=False, z_channels=4, resolution=32, in_channels=3, out_ch=3, ch=32,
    ch_mult=[1, 1], num_res_blocks=[1, 3], attn_resolutions=[], dropout=0.0))  # fmt: skip


def fx_resshift_vq(paths, out: Path) -> None:
    """``VQModelTorch`` with ``num_res_blocks`` per level: the full-size layout and a tiny random
    model's ``encode`` / ``decode``."""
    with stub_modules(), official(paths.resshift):
        ae = importlib.import_module("ldm.models.autoencoder")
        with torch.device("meta"):
            face = ae.VQModelTorch(**VQ_FACE)
        layout = {k: list(v.shape) for k, v in face.state_dict().items()}
        torch.manual_seed(31)
        tiny = ae.VQModelTorch(**VQ_TINY).eval()
        randomize(tiny, 31)
        g = torch.Generator().manual_seed(32)
        x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
        with torch.no_grad():
            z = tiny.encode(x)
            codes = z.permute(0, 2, 3, 1).reshape(-1, 4)[torch.randperm(32, generator=g)[:16]]
            tiny.quantize.embedding.weight.copy_(codes.half().float())
            z = tiny.encode(x)
            dec = tiny.decode(z)
            dec_raw = tiny.decode(z, force_not_quantize=True)
    meta = {
        "source": source("resshift", "ldm/models/autoencoder.py::VQModelTorch, "
                         "ldm/modules/diffusionmodules/model.py::Encoder/Decoder"),
        "face_config": VQ_FACE, "tiny_config": VQ_TINY, "face_layout": layout,
        "weights": "random, float16-exact (stored as float16); codebook = 16 of the latents",
        "outputs": "z = encode(x) (before quantisation); dec = decode(z) (nearest codebook "
        "entry); dec_raw = decode(z, force_not_quantize=True)",
    }  # fmt: skip
    save(out, "resshift_vq_face", meta, state_dict=half_state(tiny), x=x, z=z, dec=dec,
         dec_raw=dec_raw)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--resshift", type=Path, required=True, help="checkout of zsyOAOA/ResShift")
    p.add_argument("--out", type=Path, default=OUT_DEFAULT)
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    fx_resshift_vq(args, args.out)


if __name__ == "__main__":
    main()
