"""Parity fixture ``tests/data/parity/sinsr.npz``: SinSR's deterministic sampling, one-step
sampling and distillation losses, run by the official code.

An addition to ``scripts/make_parity_fixtures.py`` (same helpers and conventions: the official
checkout is imported, never copied; numbers only are written). From the repository root::

    PYTHONPATH=<extra site dir> python scripts/make_parity_fixture_sinsr.py \\
        --sinsr /path/to/SinSR [--out tests/data/parity]

(wyf0912/SinSR at f1735490e980162435391162ddd18c0642327c5b; the extra site dir holds ``einops``, ``omegaconf`` and ``loguru``,
as for the main script). The official diffusion is ``models/script_util.py::
create_gaussian_diffusion`` with ``configs/SinSR.yaml``'s settings at T = 4 and κ√η₁ = 0.2
(pixel space: no autoencoder, ``scale_factor`` 1, ``normalize_input``, ``latent_flag``). The
networks are two :class:`ToyNet` s (a teacher and a student with other parameters), defined here
and in ``tests/test_sinsr.py``: a per-timestep 1×1 colour mix of the scaled input plus one of
the nearest-upsampled LQ, through ``tanh`` (so the official pixel-space clip of x̂0 to [-1, 1]
is a no-op and the comparison is of the loop, not of the clip). Written:

* ``ode``: ``ddim_sample_loop(..., apply_decoder=False)`` from ``x_T = y + κ√η_T ε``
  (the teacher's deterministic output);
* ``one_step``: ``ddim_sample_loop(..., one_step=True)`` with the student (its inference);
* ``distill``, ``inverse``, ``gt``: the per-sample terms ``mse``, ``mse_xT``, ``mse_gt`` of
  ``training_losses_distill`` with ``learn_xT=True, finetune_use_gt=1`` (``configs/SinSR.yaml``)
  at ``t = T − 1``, for the student against the teacher, with the given ``ε``;
* the inputs (``hq`` in [-1, 1] at 16×16, ``lq`` its 4×4 average pooling, ``eps``) and both
  networks' parameters.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_parity_fixtures import OUT_DEFAULT, official, save, stub_modules

SINSR = ("wyf0912/SinSR", "f1735490e980162435391162ddd18c0642327c5b")
SETTINGS = dict(steps=4, kappa=2.0, min_noise_level=0.04, etas_end=0.99, power=0.3, sf=4)


class ToyNet(nn.Module):
    """``x̂0 = tanh(W_t x + b_t + U nearest↑(lq))``: a per-timestep 1×1 colour mix.

    ``image_size``/``lq_size`` tell :meth:`lit_restore.resshift.ResShiftChain.condition` that the
    network takes the LQ at its own size (as the official ``model_kwargs={'lq': lq}``)."""

    def __init__(self, steps: int, seed: int, image_size: int = 16, lq_size: int = 4) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(steps, 3, 3, generator=g) * 0.4)
        self.b = nn.Parameter(torch.randn(steps, 3, generator=g) * 0.1)
        self.u = nn.Parameter(torch.randn(3, 3, generator=g) * 0.5)
        self.image_size, self.lq_size = image_size, lq_size

    def forward(self, x: Tensor, t: Tensor, lq: Tensor, mask: Tensor | None = None) -> Tensor:
        lq_up = F.interpolate(lq, size=x.shape[-2:], mode="nearest")
        mix = torch.einsum("bij,bjhw->bihw", self.w[t], x) + self.b[t][..., None, None]
        return torch.tanh(mix + torch.einsum("ij,bjhw->bihw", self.u, lq_up))


def inputs() -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(7)
    hq = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    lq = F.avg_pool2d(hq, 4)
    eps = torch.randn(2, 3, 16, 16, generator=g)
    return {"hq": hq, "lq": lq, "eps": eps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sinsr", type=Path, required=True, help="a wyf0912/SinSR checkout")
    parser.add_argument("--out", type=Path, default=OUT_DEFAULT)
    args = parser.parse_args()

    s = SETTINGS
    teacher, student = ToyNet(s["steps"], 1), ToyNet(s["steps"], 2)
    data = inputs()
    with stub_modules(), official(args.sinsr):
        su = importlib.import_module("models.script_util")
        diffusion = su.create_gaussian_diffusion(
            normalize_input=True, schedule_name="exponential", sf=s["sf"],
            min_noise_level=s["min_noise_level"], steps=s["steps"], kappa=s["kappa"],
            etas_end=s["etas_end"], schedule_kwargs={"power": s["power"]}, weighted_mse=False,
            predict_type="xstart", timestep_respacing=None, scale_factor=1.0, latent_flag=True,
        )  # fmt: skip
        kw = {"lq": data["lq"]}
        with torch.no_grad():
            ode = diffusion.ddim_sample_loop(
                data["lq"], teacher, noise=data["eps"], clip_denoised=True,
                model_kwargs=kw, apply_decoder=False, device="cpu",
            )["sample"]  # fmt: skip
            one = diffusion.ddim_sample_loop(
                data["lq"], student, noise=data["eps"], clip_denoised=True,
                model_kwargs=kw, apply_decoder=False, device="cpu", one_step=True,
            )["sample"]  # fmt: skip
        t = torch.full((2,), s["steps"] - 1, dtype=torch.long)
        terms, _, _ = diffusion.training_losses_distill(
            student, teacher, data["hq"], data["lq"], t, model_kwargs=kw, noise=data["eps"],
            learn_xT=True, finetune_use_gt=1.0,
        )  # fmt: skip
    meta = {
        "source": f"{SINSR[0]}@{SINSR[1][:12]} models/gaussian_diffusion.py "
        "(ddim_sample_loop, training_losses_distill; create_gaussian_diffusion)",
        "settings": s,
        "networks": "ToyNet seeds 1 (teacher) and 2 (student); scripts/make_parity_fixture_sinsr.py",
    }
    params = {f"teacher_{k}": v for k, v in teacher.state_dict().items()}
    params |= {f"student_{k}": v for k, v in student.state_dict().items()}
    save(
        args.out, "sinsr", meta, **data, **params, ode=ode, one_step=one,
        distill=terms["mse"], inverse=terms["mse_xT"], gt=terms["mse_gt"],
        loss=terms["loss"],
    )  # fmt: skip


if __name__ == "__main__":
    main()
