#!/usr/bin/env python
"""Generate the published-protocol experiment configs from the prior/sampler fragments.

One source of truth: the prior fragments (``configs/prior/*.yaml``), the sampler fragments
(``configs/sampler/*.yaml``) and the tables below (transcribed from
``shared/research/safari_dps.md`` §2 and ``shared/research/zeroshot_ddrm_ddnm_ddpg_fdgr.md``
§1–3). Writes into ``configs/experiment/`` (and the missing DDPG/IDPG sampler fragments into
``configs/sampler/``):

- ``{dps,safari}_{ffhq256,imagenet256}_{task}.yaml`` — complete LightningCLI configs of the
  DPS protocol (σ = 0.05 on [-1, 1] = ``GaussianNoise(0.025)``, 1000 DDPM steps, 1k images).
- ``protocol_{celebahq256,imagenet256}_{sr4,gauss_deblur,motion_deblur}.yaml`` — data + prior +
  operator + noise (σ_y = 0.05 by default) of the DDPG/FDGR protocol, without a sampler;
  ``suite_ddpg_protocol_<data>_<task>.yaml`` composes each with every method's sampler fragment
  and each σ_y ∈ {0, 0.05, 0.1}.

``python scripts/make_protocol_configs.py`` rewrites them; ``--check`` exits 1 if any file on
disk differs (``tests/test_protocol_configs.py`` runs it).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXP = Path("configs/experiment")
SAMPLER = Path("configs/sampler")

DPS_SIGMA = 0.025  # DPS adds σ = 0.05 on [-1, 1] (DPS issue #6) = 0.025 in our [0, 1] units

DATA_DPS = {
    "ffhq256": {
        "prior": "configs/prior/adm_ffhq256_dps.yaml",
        "root": "data/ffhq256_1k",
        "recursive": False,
        "resize": None,
        "what": "FFHQ 256, first 1k images 00000–00999 (held out of the DPS prior's 50k "
        "training subset, DPS issue #4)",
    },
    "imagenet256": {
        "prior": "configs/prior/adm_imagenet256_uncond.yaml",
        "root": "data/imagenet_val_1k",
        "recursive": True,
        "resize": 256,
        "what": "ImageNet val 1k subset (MCG/DDRM list), resized to 256 and centre-cropped",
    },
}

# task -> (operator, comment, DPS sampler fragment, SaFaRI sampler fragment)
DPS_TASKS: dict[str, tuple[dict, str, str, str]] = {
    "sr4": (
        {
            "class_path": "lit_restore.operators.BicubicSR",
            "init_args": {"factor": 4, "mode": "matlab"},
        },
        "SR×4: DPS `super_resolution` uses Shocher's MATLAB-like antialiased bicubic Resizer.",
        "dps_sr4.yaml",
        "safari_sr4.yaml",
    ),
    "box_inpaint": (
        {
            "class_path": "lit_restore.operators.Inpainting",
            "init_args": {"mask_type": "box", "box_size": 128, "margin": 16},
        },
        "Box inpainting: one 128×128 hole at a random position ≥ 16 px from the border "
        "(DPS `random_sq_bbox`, mask_len_range (128, 129)), drawn per image from (seed, index).",
        "dps_inpainting.yaml",
        "safari_inpainting.yaml",
    ),
    "random_inpaint": (
        {
            "class_path": "lit_restore.operators.Inpainting",
            "init_args": {"mask_type": "random", "drop_range": [0.3, 0.7]},
        },
        "Random inpainting: DPS CODE range — each image drops a fraction p ~ U(0.3, 0.7) of its "
        "pixels (all channels). The DPS PAPER's table used 92 % dropped pixels (recalled, "
        "unverified): for that row use `--data.init_args.operator.init_args.drop_range "
        "[0.92,0.92]`.",
        "dps_inpainting.yaml",
        "safari_inpainting.yaml",
    ),
    "gauss_deblur": (
        {
            "class_path": "lit_restore.operators.GaussianBlur",
            "init_args": {"kernel_size": 61, "sigma": 3.0, "boundary": "pad"},
        },
        "Gaussian deblur: 61×61 kernel, σ = 3.0, reflection pad + valid conv (DPS `Blurkernel`).",
        "dps_gaussian_deblur.yaml",
        "safari_gaussian_deblur.yaml",
    ),
    "motion_deblur": (
        {
            "class_path": "lit_restore.operators.MotionBlur",
            "init_args": {
                "kernel_size": 61,
                "intensity": 0.5,
                "boundary": "pad",
                "kernel_seed": None,
            },
        },
        "Motion deblur: 61×61 motionblur kernel, intensity 0.5, pad protocol. DPS's code draws "
        "ONE kernel per run; here each image gets its own kernel from (seed, index) (same "
        "distribution, lower variance over 1k images). `--data.init_args.operator.init_args."
        "kernel_seed 0` shares one kernel as DPS does. SaFaRI has no motion-specific tuning: it "
        "uses the Gaussian-deblur defaults.",
        "dps_motion_deblur.yaml",
        "safari_gaussian_deblur.yaml",
    ),
}

DATA_DDPG = {
    "celebahq256": {
        "prior": "configs/prior/ddim_celebahq256.yaml",
        "root": "data/celebahq256",
        "resize": 256,
        "what": "CelebA-HQ 256 test images (ImageFolder, DDRM/DDNM/DDPG/FDGR layout)",
        "key": "celeba",
    },
    "imagenet256": {
        "prior": "configs/prior/adm_imagenet256_uncond.yaml",
        "root": "data/imagenet_val_1k",
        "resize": 256,
        "what": "ImageNet val 1k subset (exp/imagenet_val_1k.txt), 256 centre crops",
        "key": "imagenet",
    },
}

DDPG_TASKS: dict[str, tuple[dict, str, str]] = {
    "sr4": (
        {
            "class_path": "lit_restore.operators.BicubicSR",
            "init_args": {"factor": 4, "mode": "keys"},
        },
        "SR×4 `sr_bicubic` with the SVD implementation (`--operator_imp SVD`): separable Keys "
        "cubic (a = −0.5), singular values < 3e-2 zeroed (DDPG/FDGR `SRConv`).",
        "sr4",
    ),
    "gauss_deblur": (
        {
            "class_path": "lit_restore.operators.GaussianBlur",
            "init_args": {"kernel_size": 5, "sigma": 10.0, "boundary": "circular"},
        },
        "Gaussian deblur `deblur_gauss`: a 5-tap Gaussian with σ = 10 (nearly a box; NOT DPS's "
        "61/3.0), FFT implementation (`--operator_imp FFT`, circular convolution, exact "
        "A⁺_η). DDRM/DDNM+ need an SVD: their runs switch to `boundary: zero` (DDRM "
        "`Deblurring`, zero-padded Toeplitz SVD).",
        "gauss",
    ),
    "motion_deblur": (
        {
            "class_path": "lit_restore.operators.MotionBlur",
            "init_args": {
                "kernel_size": 61,
                "intensity": 0.5,
                "boundary": "circular",
                "kernel_seed": None,
            },
        },
        "Motion deblur: 61×61 motionblur kernel, intensity 0.5, one kernel per image (DDPG seeds "
        "it with img_ind·10; ours comes from (seed, index)), FFT/circular. No SVD: DDRM/DDNM+ "
        "cannot run it.",
        "motion",
    ),
}

SIGMAS = (0.0, 0.05, 0.1)

# (data key, task key, σ_y) -> DDPG (gamma, zeta, eta_tilde, mode), IDPG (gamma, eta_tilde, mode)
# tirer-lab/DDPG evaluation_DDPG.sh / evaluation_IDPG.sh (research notes §1 table). At σ_y = 0
# γ and η̃ are unused (δ_t = 0): the placeholders 8.0 / 0.7 are the main.py defaults.
DDPG_ROWS: dict[tuple[str, str, float], tuple[tuple, tuple]] = {
    ("celeba", "sr4", 0.0): ((8.0, 0.7, 0.7, 0), (16.0, 0.2, 0)),
    ("celeba", "sr4", 0.05): ((10.0, 0.8, 0.3, 1), (16.0, 0.2, 0)),
    ("celeba", "gauss", 0.0): ((8.0, 1.0, 0.7, 0), (16.0, 0.2, 0)),
    ("celeba", "gauss", 0.05): ((8.0, 0.5, 0.7, 1), (8.0, 0.6, 0)),
    ("celeba", "gauss", 0.1): ((5.0, 0.6, 0.7, 1), (6.0, 0.6, 0)),
    ("celeba", "motion", 0.05): ((5.0, 0.6, 0.6, 1), (12.0, 0.9, 0)),
    ("celeba", "motion", 0.1): ((5.0, 0.6, 0.6, 1), (14.0, 1.0, 0)),
    ("imagenet", "sr4", 0.0): ((8.0, 0.7, 0.7, 0), (16.0, 0.2, 0)),
    ("imagenet", "sr4", 0.05): ((6.0, 1.0, 0.3, 1), (30.0, 0.2, 0)),
    ("imagenet", "gauss", 0.0): ((8.0, 1.0, 0.7, 0), (16.0, 0.2, 0)),
    ("imagenet", "gauss", 0.05): ((10.0, 0.4, 0.7, 1), (11.0, 0.6, 0)),
    ("imagenet", "motion", 0.05): ((6.0, 0.6, 0.7, 1), (14.0, 0.8, 0)),
    ("imagenet", "motion", 0.1): ((3.0, 0.6, 0.4, 1), (11.0, 0.6, 0)),
}

TASK_TITLES = {"sr4": "SR×4 bicubic", "gauss": "Gaussian deblur", "motion": "motion deblur"}


def sigma_tag(s: float) -> str:
    return "0" if s == 0 else f"{s:g}"


def load(path: str | Path) -> dict:
    return yaml.safe_load((ROOT / path).read_text())


def dump(header: str, body: dict) -> str:
    lines = []
    for ln in header.strip("\n").split("\n"):
        if ln.startswith(" ") or len(ln) <= 98:  # command lines are kept as written
            lines.append(f"# {ln}".rstrip())
        else:
            lines += [f"# {w}" for w in textwrap.wrap(ln, 98, break_on_hyphens=False)]
    return "\n".join(lines) + "\n" + yaml.safe_dump(body, sort_keys=False, width=100)


def logger(name: str, version: str) -> dict:
    return {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "runs", "name": name, "version": version},
    }


def test_data(root: str, recursive: bool, resize, operator: dict, sigma: float) -> dict:
    init = {
        "test_set": {
            "class_path": "lit_restore.data.ImageFolder",
            "init_args": {"root": root, "recursive": recursive},
        },
        "operator": operator,
        "noise": {
            "class_path": "lit_restore.operators.GaussianNoise",
            "init_args": {"sigma": sigma},
        },
        "resize": resize,
        "crop_size": 256,
        "eval_batch_size": 4,
        "seed": 0,
    }
    return {"class_path": "lit_restore.data.RestorationDataModule", "init_args": init}


def ddpg_fragment(method: str, data_key: str, task: str, sigma: float) -> tuple[str, str] | None:
    """(file name, text) of a DDPG/IDPG sampler fragment for a published row, else None."""
    row = DDPG_ROWS.get((data_key, task, sigma))
    if row is None:
        return None
    tag = sigma_tag(sigma)
    name = f"{method}_{data_key}_{task}_sigma{tag}.yaml"
    title = f"{data_key.replace('celeba', 'CelebA').replace('imagenet', 'ImageNet')} {TASK_TITLES[task]}"
    src = (
        "Source: tirer-lab/DDPG evaluation_DDPG.sh / evaluation_IDPG.sh (T=100). σ_y is the repo's\n"
        "--sigma_y, which it doubles: GaussianNoise(sigma: <same value>) here."
    )
    if method == "ddpg":
        g, z, e, m = row[0]
        note = " (γ, η̃ unused when σ_y=0)" if sigma == 0 else ""
        header = f"DDPG, {title}, σ_y={tag}{note}.\n{src}"
        args = {
            "steps": 100,
            "gamma": g,
            "zeta": z,
            "eta_tilde": e,
            "step_size_mode": m,
            "inject_noise": True,
            "scale_ls": 1.0,
        }
        cls = "lit_restore.samplers.DDPG"
    else:
        g, e, m = row[1]
        note = " (γ, η̃ unused when σ_y=0)" if sigma == 0 else ""
        header = f"IDPG (DDPG without noise injection), {title}, σ_y={tag}{note}.\n{src}"
        args = {"steps": 100, "gamma": g, "eta_tilde": e, "step_size_mode": m, "scale_ls": 1.0}
        cls = "lit_restore.samplers.IDPG"
    body = {"model": {"init_args": {"sampler": {"class_path": cls, "init_args": args}}}}
    return name, dump(header, body)


def dps_experiments() -> dict[Path, str]:
    out: dict[Path, str] = {}
    for data_name, d in DATA_DPS.items():
        prior = load(d["prior"])["model"]["init_args"]["prior"]
        for task, (operator, comment, dps_frag, safari_frag) in DPS_TASKS.items():
            for method, frag in (("dps", dps_frag), ("safari", safari_frag)):
                sampler = load(SAMPLER / frag)["model"]["init_args"]["sampler"]
                name = f"{method}_{data_name}_{task}"
                if method == "dps":
                    row = (
                        "Published row: DPS paper Table 1 (FFHQ) / Table 3 (ImageNet), FID + LPIPS."
                    )
                else:
                    row = (
                        "SaFaRI (arXiv 2401.17629) reports LPIPS/FID on FFHQ/ImageNet, but no numbers or "
                        "hyper-parameters are public: the sampler holds our measured defaults (bench/README.md)."
                    )
                header = f"""\
{name}: the DPS evaluation protocol, 1k images at 256×256.
{row}
  python sample.py test --config configs/experiment/{name}.yaml --config configs/trainer/gpu.yaml \\
      [--config configs/experiment/eval_callbacks.yaml]
Generated by scripts/make_protocol_configs.py from configs/prior/{Path(d["prior"]).name} and
configs/sampler/{frag} (edit those, then re-run the script).
Data: {d["what"]}; Normalize(0.5, 0.5) = our [-1, 1].
{comment}
Noise: the paper's σ = 0.05 is added on [-1, 1] (DPS issue #6) = GaussianNoise(sigma: {DPS_SIGMA})
in our [0, 1] units. Sampler: 1000 DDPM ancestral steps (timestep_respacing 1000), linear betas."""
                body = {
                    "seed_everything": 0,
                    "trainer": {"logger": logger(f"{method}_{data_name}", task)},
                    "model": {
                        "class_path": "lit_restore.modules.ZeroShotRestoration",
                        "init_args": {"prior": prior, "sampler": sampler, "seed": 0},
                    },
                    "data": test_data(d["root"], d["recursive"], d["resize"], operator, DPS_SIGMA),
                }
                out[EXP / f"{name}.yaml"] = dump(header, body)
    return out


def method_runs(data_key: str, task_key: str, task: str) -> dict[str, list[str]]:
    """Suite runs: every method × σ_y for one (data, task) protocol base."""
    base = str(
        EXP / f"protocol_{'celebahq256' if data_key == 'celeba' else 'imagenet256'}_{task}.yaml"
    )
    runs: dict[str, list[str]] = {}
    for sigma in SIGMAS:
        tag = sigma_tag(sigma)
        run_tag = tag.replace(".", "p")  # suite run names: letters, digits, '_' or '-'
        flags = ["--data.init_args.noise.init_args.sigma", f"{sigma:g}"]
        for method in ("ddpg", "idpg"):
            if (data_key, task_key, sigma) in DDPG_ROWS:
                frag = str(SAMPLER / f"{method}_{data_key}_{task_key}_sigma{tag}.yaml")
                runs[f"{method}_sigma{run_tag}"] = [base, frag, *flags]
        fdgr = (
            "fdgr_gplus_celeba_sr4.yaml"
            if (data_key, task_key, sigma) == ("celeba", "sr4", 0.05)
            else "fdgr.yaml"
        )
        runs[f"fdgr_sigma{run_tag}"] = [base, str(SAMPLER / fdgr), *flags]
        svd_flags = (
            [] if task_key == "sr4" else ["--data.init_args.operator.init_args.boundary", "zero"]
        )
        if task_key != "motion":  # DDRM / DDNM+ need an SVD; motion blur has none
            runs[f"ddrm_sigma{run_tag}"] = [base, str(SAMPLER / "ddrm.yaml"), *flags, *svd_flags]
            runs[f"ddnm_sigma{run_tag}"] = [base, str(SAMPLER / "ddnm.yaml"), *flags, *svd_flags]
    return runs


def ddpg_experiments() -> dict[Path, str]:
    out: dict[Path, str] = {}
    for data_name, d in DATA_DDPG.items():
        prior = load(d["prior"])["model"]["init_args"]["prior"]
        for task, (operator, comment, task_key) in DDPG_TASKS.items():
            name = f"protocol_{data_name}_{task}"
            header = f"""\
{name}: the DDPG / FDGR evaluation protocol (also used for DDRM / DDNM), WITHOUT a sampler.
Compose with a sampler fragment and pick σ_y (default 0.05), e.g.
  python sample.py test --config configs/experiment/{name}.yaml \\
      --config configs/sampler/<method fragment>.yaml --data.init_args.noise.init_args.sigma 0.05 \\
      --trainer.logger.init_args.version <run name> --config configs/trainer/gpu.yaml
or run every method × σ_y ∈ {{0, 0.05, 0.1}}: python sample.py test --config
configs/experiment/suite_ddpg_protocol_{data_name}_{task}.yaml (table: configs/experiment/README.md).
Generated by scripts/make_protocol_configs.py from configs/prior/{Path(d["prior"]).name}.
Data: {d["what"]}.
{comment}
Noise: the repos' --sigma_y is doubled before use (std on [-1, 1]), so their 0 / 0.05 / 0.1 equal
GaussianNoise(sigma: 0 / 0.05 / 0.1) in our [0, 1] units. Samplers: 100 steps (DDRM: its own 20)."""
            body = {
                "seed_everything": 0,
                "trainer": {"logger": logger(name, "run")},
                "model": {
                    "class_path": "lit_restore.modules.ZeroShotRestoration",
                    "init_args": {"prior": prior, "seed": 0},
                },
                "data": test_data(d["root"], True, d["resize"], operator, 0.05),
            }
            out[EXP / f"{name}.yaml"] = dump(header, body)
            suite_name = f"suite_ddpg_protocol_{data_name}_{task}"
            suite_header = f"""\
{suite_name}: every zero-shot method of the DDPG/FDGR protocol on {data_name} {task},
σ_y ∈ {{0, 0.05, 0.1}}, as separate runs, then a comparison table (lit_restore.suite):
  python sample.py test --config configs/experiment/{suite_name}.yaml [--config configs/trainer/gpu.yaml]
DDPG / IDPG run only where tirer-lab/DDPG publishes hyper-parameters for the (data, task, σ_y) row;
FDGR uses its main.py defaults except the published CelebA SR×4 σ_y=0.05 quick-start (G+).
Generated by scripts/make_protocol_configs.py."""
            suite = {
                "suite": {
                    "base": [],
                    "runs": method_runs(d["key"], task_key, task),
                    "compare": f"runs/{name}/comparison",
                }
            }
            out[EXP / f"{suite_name}.yaml"] = dump(suite_header, suite)
        for task_key in ("sr4", "gauss", "motion"):
            for sigma in SIGMAS:
                for method in ("ddpg", "idpg"):
                    frag = ddpg_fragment(method, d["key"], task_key, sigma)
                    if frag is not None:
                        out[SAMPLER / frag[0]] = frag[1]
    return out


def generate() -> dict[Path, str]:
    return {**dps_experiments(), **ddpg_experiments()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if a generated file differs")
    args = p.parse_args(argv)
    files = generate()
    stale = []
    for rel, text in files.items():
        path = ROOT / rel
        # Hand-written sampler fragments of the samplers helper win: only missing ones are added.
        if rel.parent == SAMPLER and path.exists():
            continue
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(rel))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check and stale:
        print("stale generated configs (run scripts/make_protocol_configs.py):", *stale, sep="\n  ")
        return 1
    if not args.check:
        print(f"wrote {len(files)} configs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
