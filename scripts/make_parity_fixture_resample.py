"""Parity fixtures ``net_ldm.npz`` and ``resample_*.npz``: ReSample's loop run by the official code.

An addition to ``scripts/make_parity_fixtures.py`` (same helpers and conventions: the official
checkout is imported, never copied; numbers only are written). From the repository root::

    PYTHONPATH=<extra site dir> python scripts/make_parity_fixture_resample.py \\
        --resample /path/to/resample [--out tests/data/parity]

(soominkwon/resample at 3e332b2c867a144aeb18bab1d0fadcf3faa4964e; the extra site dir holds
``einops``, which its ``ldm`` package imports; ``pytorch_lightning`` — the base class of its
autoencoder — and ``scikit-image`` come from the lit_restore venv; its bundled
``src/taming-transformers`` provides the quantiser class; about a minute on one core.)

What runs: ``ldm/models/diffusion/ddim.py::DDIMSampler.posterior_sampler`` with
``cond_method="resample"`` (so ``resample_sampling``, ``pixel_optimization``,
``latent_optimization``, ``stochastic_resample`` and ``p_sample_ddim``, all unchanged) and
``ldm_inverse/condition_methods.py::PosteriorSampling.conditioning`` as ``measurement_cond_fn``
(the per-step latent DPS), as ``sample_condition.py`` wires them, at batch size 1. Its model is
:class:`make_parity_fixtures.TinyLDM` (``quantize=False``, scale factor 1), the attributes those
functions read:

* ``apply_model`` — :class:`make_parity_fixtures.FixtureModel` (exact Gaussian ε plus 0.1·√ᾱ_t
  times the network) around the official LDM UNet (``ldm/modules/diffusionmodules/
  openaimodel.py::UNetModel``) in the tiny layout of ``tests/test_latent.py`` (``TINY_UNET``),
  random float16-exact weights; latents 3×8×8;
* the first stage — the official ``ldm/models/autoencoder.py::VQModelInterface`` in the tiny
  layout (``TINY_VQ``, 32 wide: ch 32, ch_mult 1,1, 32 codes; images 16×16), float16-exact
  weights, decoded with ``force_not_quantize=True``: the codebook look-up is a piecewise-constant
  map whose float32/float64 ties would make a 500-iteration optimisation through it
  ill-conditioned, and the loop, not the quantiser, is under test (both sides skip it);
  ``encode_first_stage`` is ``encode`` (``h`` before quantisation, as LDM's), scale factor 1;
* the schedule — ``betas``/``alphas_cumprod``/``alphas_cumprod_prev`` of the linear 1000-step
  schedule (float64 tables cast to the run's dtype, as ``LatentDiffusion.register_schedule``).

The operator is 4× average pooling (a plain function for ``operator_fn`` and an object with
``forward`` for ``PosteriorSampling``; its noiser a stand-in named ``gaussian``). The loop's
settings are the published ones except the step count (40 DDIM steps: grid 1, 26, …, 976;
resampling at index 20 in the pixel stage and 10 in the latent stage, five look-ahead steps
each) and the latent optimiser's cap: the pixel stage runs to its published 2000 iterations
(or its ε stop), the latent stage (at index 10 and the final one) to 50 of its 500. Longer latent
optimisations are ill-conditioned in float32 — AdamW divides by the root of its second moment,
so once the gradients through the decoder are small their round-off sets the step: the official
float32 run was 4.5e-5 from its float64 run with a 300-iteration cap and 1.4e-5 with 100 (η 0.5),
over the 1e-5 tolerance — so the 200-iteration patience rule is not reached here (its
arithmetic is checked in ``tests/test_latent.py``). Written: ``out`` (the latent ``z_0``
``posterior_sampler`` returns) and ``image`` (its ``decode_first_stage``, what
``sample_condition.py`` saves).

Noise (:class:`make_parity_fixtures.PrescribedNoise`): x_T, then per resampling the
``stochastic_resample`` draw; with η > 0 also ``p_sample_ddim``'s draw on every DDIM step (main
and look-ahead). At η = 0 ``p_sample_ddim`` still draws and multiplies by σ_t = 0; the fixture
hands it zeros instead (the same numbers), so the stream holds only draws that matter.

Round-off (``float32_roundoff``, :func:`make_parity_fixtures.roundoff`): the same official run in
float64 (the UNet's attention softmax stays float32, as the official code casts it).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_parity_fixtures import (
    OUT_DEFAULT,
    FixtureModel,
    PrescribedNoise,
    TinyLDM,
    cpu_for_cuda,
    half_state,
    official,
    precision,
    randomize,
    roundoff,
    save,
)

RESAMPLE = ("soominkwon/resample", "3e332b2c867a144aeb18bab1d0fadcf3faa4964e")
#: ``tests/test_latent.py`` TINY_UNET / TINY_VQ (LDM config names) with every level 32 channels
#: wide (``channel_mult`` 1,1: two levels, f = 2, as there; 0.5 M parameters, not 1.4 M)
TINY_UNET = dict(
    image_size=8, in_channels=3, out_channels=3, model_channels=32, attention_resolutions=[2],
    num_res_blocks=1, channel_mult=[1, 1], num_head_channels=16,
)  # fmt: skip
TINY_VQ = dict(embed_dim=3, n_embed=32, ch=32, ch_mult=[1, 1], num_res_blocks=1, z_channels=3)
STEPS = 40
#: the pixel stage at its published cap; the latent stage capped at 50 (module docstring)
PIXEL_ITERS, LATENT_ITERS = 2000, 50
#: (fixture name, DDIM η, noise seed)
CASES = (("resample_sr4_avgpool", 0.0, 8100), ("resample_sr4_avgpool_eta", 0.5, 8101))


def avg_pool4(x: torch.Tensor, **kwargs) -> torch.Tensor:
    return F.avg_pool2d(x, 4)


def build_networks(repo: Path) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The official tiny LDM UNet and VQ autoencoder, random float16-exact weights."""
    openaimodel = importlib.import_module("ldm.modules.diffusionmodules.openaimodel")
    autoencoder = importlib.import_module("ldm.models.autoencoder")
    torch.manual_seed(21)
    unet = openaimodel.UNetModel(**TINY_UNET)
    randomize(unet, 21)
    v = TINY_VQ
    ddconfig = dict(
        double_z=False, z_channels=v["z_channels"], resolution=16, in_channels=3, out_ch=3,
        ch=v["ch"], ch_mult=v["ch_mult"], num_res_blocks=v["num_res_blocks"],
        attn_resolutions=[], dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(22)
    vq = autoencoder.VQModelInterface(
        embed_dim=v["embed_dim"], ddconfig=ddconfig, n_embed=v["n_embed"],
        lossconfig={"target": "torch.nn.Identity"},
    )  # fmt: skip
    randomize(vq, 22)
    return unet.eval(), vq.eval()


def save_networks(out: Path, unet: torch.nn.Module, vq: torch.nn.Module) -> None:
    """``net_ldm.npz``: both networks' weights as a ``LatentDiffusion`` state dict holds them
    (``model.diffusion_model.*``, ``first_stage_model.*``) and one forward pass of each part."""
    g = torch.Generator().manual_seed(820)
    z = torch.randn(2, 3, 8, 8, generator=g)
    x = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    t = torch.tensor([999, 17])
    with torch.no_grad():
        eps = unet(z, t)
        h = vq.encode(x)
        dec = vq.decode(z, force_not_quantize=True)
        dec_q = vq.decode(z)
    state = {
        **{"model.diffusion_model." + k: v for k, v in half_state(unet).items()},
        **{"first_stage_model." + k: v for k, v in half_state(vq).items()},
    }
    meta = {
        "source": f"{RESAMPLE[0]}@{RESAMPLE[1][:12]} ldm/modules/diffusionmodules/openaimodel.py"
        "::UNetModel, ldm/models/autoencoder.py::VQModelInterface (src/taming-transformers "
        "VectorQuantizer2)",
        "unet": TINY_UNET,
        "first_stage": TINY_VQ,
        "weights": "random, float16-exact (stored as float16): zero-initialised parameters "
        "N(0, 0.05²), others + N(0, 0.02²)",
        "outputs": "eps = UNet(z, t); h = encode(x); dec = decode(z, force_not_quantize=True); "
        "dec_quantized = decode(z)",
    }
    save(out, "net_ldm", meta, state_dict=state, z=z, x=x, t=t, eps=eps, h=h, dec=dec,
         dec_quantized=dec_q)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--resample", type=Path, required=True, help="a soominkwon/resample checkout"
    )
    parser.add_argument("--out", type=Path, default=OUT_DEFAULT)
    parser.add_argument("--pixel-iters", type=int, default=PIXEL_ITERS)
    parser.add_argument("--latent-iters", type=int, default=LATENT_ITERS)
    parser.add_argument("--only", nargs="*", help="fixture names to make")
    args = parser.parse_args()
    repo = args.resample
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(810)
    x_ref = (torch.rand(1, 3, 16, 16, generator=g) * 2 - 1) * 0.8
    y = avg_pool4(x_ref) + 0.01 * torch.randn(1, 3, 4, 4, generator=g)
    with official(repo, repo / "src" / "taming-transformers"), cpu_for_cuda():
        unet, vq = build_networks(repo)
        save_networks(args.out, unet, vq)
        eps_model = FixtureModel(unet)
        ddim = importlib.import_module("ldm.models.diffusion.ddim")
        conditioning = importlib.import_module("ldm_inverse.condition_methods")
        operator = SimpleNamespace(forward=avg_pool4)
        noiser = SimpleNamespace(__name__="gaussian")
        for name, eta, seed in CASES:
            if args.only and name not in args.only:
                continue

            def run(dtype, eta=eta, seed=seed):
                with precision(dtype, eps_model, vq), PrescribedNoise(seed) as noise:
                    model = TinyLDM(eps_model, vq, dtype=dtype, quantize=False)
                    if eta == 0:  # σ_t = 0: p_sample_ddim's draw is multiplied by zero
                        ddim.noise_like = lambda shape, device, repeat=False: torch.zeros(shape)
                    else:
                        ddim.noise_like = importlib.import_module(
                            "ldm.modules.diffusionmodules.util"
                        ).noise_like
                    cond = conditioning.get_conditioning_method("ps", model, operator, noiser)
                    sampler = ddim.DDIMSampler(model)
                    # the iteration caps (keyword defaults of the official functions)
                    cls = ddim.DDIMSampler
                    sampler.pixel_optimization = functools.partial(
                        cls.pixel_optimization, sampler, max_iters=args.pixel_iters
                    )
                    sampler.latent_optimization = functools.partial(
                        cls.latent_optimization, sampler, max_iters=args.latent_iters
                    )
                    out, _ = sampler.posterior_sampler(
                        y.to(dtype), cond.conditioning, avg_pool4, S=STEPS, batch_size=1,
                        shape=[3, 8, 8], cond_method="resample", conditioning=None, eta=eta,
                        verbose=False,
                    )  # fmt: skip
                return out.detach(), noise

            final, noise = run(torch.float32)
            kappa = roundoff(lambda d, run=run: run(d)[0], final)
            meta = {
                "source": f"{RESAMPLE[0]}@{RESAMPLE[1][:12]} ldm/models/diffusion/ddim.py::"
                "DDIMSampler.posterior_sampler (resample_sampling), "
                "ldm_inverse/condition_methods.py::PosteriorSampling",
                "network": "FixtureModel(ldm/modules/diffusionmodules/openaimodel.py::UNetModel "
                "TINY_UNET) on 3×8×8 latents; first stage ldm/models/autoencoder.py::"
                "VQModelInterface TINY_VQ, decode(force_not_quantize=True), scale factor 1",
                "unet": TINY_UNET,
                "first_stage": TINY_VQ,
                "operator": "avg_pool2d(x, 4) on 16×16 images",
                "steps": STEPS,
                "eta": eta,
                "pixel_iters": args.pixel_iters,
                "latent_iters": args.latent_iters,
                "settings": "published (gamma 40, every 10, look-ahead 5, DPS scale 0.5·ᾱ_t, "
                "AdamW 1e-2 × 2000 / 5e-3 × 500, eps 1e-3, patience 200)",
                "noise": noise.meta(),
                "float32_roundoff": kappa,
                "noise_calls": "x_T; [η > 0: one per DDIM step, main and look-ahead]; one per "
                "stochastic_resample",
            }
            print(f"  {name}: round-off {kappa:.2e}, {len(noise.shapes)} noise draws")
            image = TinyLDM(eps_model, vq, quantize=False).decode_first_stage(final)
            save(args.out, name, meta, out=final, image=image, noise_shapes=noise.shape_table(),
                 y=y, x_ref=x_ref)  # fmt: skip
    for mod in [m for m in sys.modules if m.split(".")[0] in ("scripts", "ldm_inverse", "taming")]:
        del sys.modules[mod]


if __name__ == "__main__":
    main()
