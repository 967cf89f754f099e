"""Parity fixture ``tests/data/parity/niqe_pyiqa.npz``: NIQE as IQA-PyTorch computes it.

IQA-PyTorch (chaofengc/IQA-PyTorch, PyPI ``pyiqa`` 0.1.16) is what super-resolution papers report
NIQE with; ``pyiqa/archs/niqe_arch.py::calculate_niqe`` (metric ``niqe``: Y of YIQ, 96-px blocks)
is run here on three small 8-bit images (two RGB, one grayscale; sizes giving 1, 2 and 2 blocks)
against a random pristine model (seeded; the published ``niqe_modelparameters.mat`` is not
redistributed), so the fixture holds only numbers we made. The package is imported from its
folder without its ``__init__`` (which would pull in every metric's dependencies)::

    pip download pyiqa==0.1.16 --no-deps -d /tmp/pyiqa && unzip /tmp/pyiqa/pyiqa-*.whl -d /tmp/pyiqa
    python scripts/make_parity_fixture_niqe.py --pyiqa /tmp/pyiqa     # the folder holding pyiqa/

(a checkout of chaofengc/IQA-PyTorch works the same way).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_parity_fixtures import OUT_DEFAULT, save

SHAPES = ((3, 128, 160), (1, 96, 112), (3, 96, 194))


def load_niqe_arch(root: Path) -> types.ModuleType:
    """``pyiqa.archs.niqe_arch`` imported from ``root/pyiqa`` with empty parent packages."""
    package = root / "pyiqa"
    for name, path in (("pyiqa", package), ("pyiqa.archs", package / "archs"),
                       ("pyiqa.utils", package / "utils")):  # fmt: skip
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        sys.modules[name] = module
    return importlib.import_module("pyiqa.archs.niqe_arch")


def images(seed: int = 0) -> list[torch.Tensor]:
    """Smoothed uniform noise, quantised to 8 bits (texture NIQE can fit), one per shape."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for c, h, w in SHAPES:
        x = torch.rand(1, c, h + 4, w + 4, generator=g, dtype=torch.float64)
        x = F.avg_pool2d(x, 5, 1)  # [1, c, h, w]
        out.append((x[0] * 255).round().to(torch.uint8))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pyiqa", type=Path, required=True, help="folder holding the pyiqa package")
    ap.add_argument("--out", type=Path, default=OUT_DEFAULT)
    args = ap.parse_args()
    niqe_arch = load_niqe_arch(args.pyiqa)
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(36, generator=g, dtype=torch.float64)
    a = torch.randn(36, 36, generator=g, dtype=torch.float64)
    cov = a @ a.T / 36 + torch.eye(36, dtype=torch.float64)
    imgs = images()
    values = [
        niqe_arch.calculate_niqe(x[None].double() / 255, 0, True, "yiq", mu, cov).reshape(())
        for x in imgs
    ]
    meta = {
        "source": "pyiqa 0.1.16 (chaofengc/IQA-PyTorch) pyiqa/archs/niqe_arch.py::calculate_niqe",
        "settings": "crop_border=0, test_y_channel=True, color_space='yiq', 96x96 blocks",
        "pristine": "random: mu ~ N(0, 1), cov = A A^T / 36 + I, A ~ N(0, 1), seed 1",
    }
    arrays = {f"image_{i}": x for i, x in enumerate(imgs)}
    save(args.out, "niqe_pyiqa", meta, mu=mu, cov=cov, niqe=torch.stack(values), **arrays)
    print("niqe:", [round(float(v), 6) for v in values])


if __name__ == "__main__":
    main()
