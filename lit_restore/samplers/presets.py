"""Published hyper-parameters of the zero-shot methods, as data: one table per method.

A preset is a named set of constructor arguments with its source. Configs select one by name::

    sampler:
      class_path: lit_restore.samplers.DDPG
      init_args: {preset: celebahq256_sr4_sigma0.05}

(:mod:`lit_restore.presets` expands ``preset`` when the config is read; arguments written beside
it, later ``--config`` files and flags override single values.) In Python:
``DDPG(**lit_restore.presets.preset_args(DDPG, "celebahq256_sr4_sigma0.05"))``. ``python -m
lit_restore.samplers.presets [METHOD]`` lists every preset with its values and source. This
module is data only; :mod:`lit_restore.presets` looks the names up.

Names: DDPG / IDPG / FDGR rows are ``<data>_<task>_sigma<σ_y>`` after the protocol configs
(``configs/experiment/protocol_<data>_<task>.yaml``), σ_y being the repositories' ``--sigma_y``,
which equals our ``GaussianNoise(sigma)`` (those repositories double it on [-1, 1]). DPS / SaFaRI
presets are named after the task (DPS protocol: noise 0.025 here = DPS's 0.05 on [-1, 1]).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Preset:
    """Constructor arguments of one published (or measured) setting, and where they come from."""

    args: Mapping[str, Any]
    source: str


def _table(rows: dict[str, Preset]) -> Mapping[str, Preset]:
    return MappingProxyType(
        {k: Preset(MappingProxyType(dict(v.args)), v.source) for k, v in rows.items()}
    )


# The main job (configs/experiment/demo.yaml) over the shipped demo prior adm-demo-pd: step counts
# fit its CPU time budget, scales are chosen on the TRAINING images, never on the demo.
_DEMO_ADM_TUNED = (
    "Main job over the shipped prior adm-demo-pd (SR×4 matlab, σ 0.025, 128 px): chosen on the "
    "training images with bench/demo_weights_tune.py (bench/results/demo_weights_tune.json; "
    "bench/README.md, 'Shipped demo weights')."
)

# ----------------------------------------------------------------------------------------- DPS
_DPS_REPO = (
    "DPS2022/diffusion-posterior-sampling configs/{}_config.yaml (conditioning.params.scale; "
    "the non-squared residual norm = step 'code'), configs/diffusion_config.yaml (1000 DDPM steps, "
    "timestep_respacing 1000, model_var_type learned_range = variance 'auto'). The paper's App. D.1 ζ′ = 1.0 for FFHQ SR×4 is step 'paper' "
    "(code scale 2ζ′)."
)
_DPS_1000 = {"step": "code", "steps": 1000, "spacing": "guided_diffusion", "variance": "auto"}

DPS_PRESETS = _table(
    {
        "sr4": Preset({"scale": 0.3, **_DPS_1000}, _DPS_REPO.format("super_resolution")),
        "gauss_deblur": Preset({"scale": 0.3, **_DPS_1000}, _DPS_REPO.format("gaussian_deblur")),
        "motion_deblur": Preset({"scale": 0.3, **_DPS_1000}, _DPS_REPO.format("motion_deblur")),
        "inpaint": Preset({"scale": 0.5, **_DPS_1000}, _DPS_REPO.format("inpainting")),
        "phase_retrieval": Preset({"scale": 1.0, **_DPS_1000}, _DPS_REPO.format("phase_retrieval")),
        "nonlinear_deblur": Preset(
            {"scale": 0.3, **_DPS_1000}, _DPS_REPO.format("nonlinear_deblur")
        ),
        # The step scales with 1000/steps (as in bench/tune_safari.py): 0.3 at 1000 steps = 3.0 at 100.
        "demo": Preset(
            {"scale": 3.0, "steps": 100},
            "CPU demo: the repository SR scale 0.3 per step at 1000 steps, i.e. 0.3·1000/100 = 3.0 "
            "with 100 respaced steps.",
        ),
        "demo_adm": Preset({"scale": 50.0, "steps": 40}, _DEMO_ADM_TUNED),
    }
)

# -------------------------------------------------------------------------------------- SaFaRI
# SaFaRI (arXiv 2401.17629) publishes neither code nor hyper-parameters. "generic" is the a-priori
# choice; the per-task presets were chosen by measurement with bench/tune_safari.py on an analytic
# Gaussian prior (a proxy, not the paper's ADM protocol): bench/README.md, "SaFaRI defaults (how
# they were chosen)", holds the search, the criterion and the measured PSNR / SSIM / hf_err.
_SAFARI_1000 = {"step": "code", "steps": 1000, "spacing": "guided_diffusion", "variance": "auto"}
_TUNED = "bench/tune_safari.py --tasks {} (bench/results/tune_safari_{}.json; bench/README.md)."

SAFARI_PRESETS = _table(
    {
        "generic": Preset(
            {
                "scale": 0.3, **_SAFARI_1000, "r0": 0.25, "rho_low": 1.0, "rho_high": [0.0, 1.0],
                "tau": 500, "normalize_upsampling": True,
            },
            "A-priori generic setting for any operator: DPS's SR/deblur code scale 0.3 (ψ_s is "
            "normalised by the upsampling factor so the DPS scale keeps its meaning), r0 = 0.25 of "
            "Nyquist, ρᴸ = 1, ρᴴ ramping 0 → 1 from t = T to 0, τ = 500.",
        ),
        "sr4": Preset(
            {
                "scale": 2.0, **_SAFARI_1000, "r0": 0.25, "rho_low": 1.0, "rho_high": [0.0, 1.0],
                "tau": 500, "normalize_upsampling": True,
            },
            "SR×4 (BicubicSR(4, matlab)), measured: " + _TUNED.format("sr4", "sr4")
            + " Scale 2.0 equals the DPS paper's ζ′ = 1.0.",
        ),
        "gauss_deblur": Preset(
            {
                "scale": 1.2, **_SAFARI_1000, "r0": 0.25, "rho_low": 1.0, "rho_high": 0.0,
                "tau": 500, "normalize_upsampling": True,
            },
            "Gaussian deblur (GaussianBlur(61, 3.0, pad)), also used for motion deblur (no "
            "motion-specific tuning); τ has no effect when y has the image size. Measured: "
            + _TUNED.format("gaussian_deblur", "gaussian_deblur"),
        ),
        "inpaint": Preset(
            {
                "scale": 0.5, **_SAFARI_1000, "r0": 0.5, "rho_low": 2.0, "rho_high": [0.0, 1.0],
                "tau": 500, "normalize_upsampling": True,
            },
            "Inpainting (box and random masks); τ has no effect. Measured: "
            + _TUNED.format("inpainting", "inpainting"),
        ),
        "demo": Preset(
            {"scale": 20.0, "steps": 100, "r0": 0.25, "rho_low": 1.0, "rho_high": [0.0, 1.0], "tau": 500},
            "CPU demo: the sr4 preset with 100 respaced steps (scale 2.0·1000/100 = 20.0).",
        ),
        "demo_adm": Preset(
            {"scale": 30.0, "steps": 40, "r0": 0.25, "rho_low": 1.0, "rho_high": [0.0, 1.0], "tau": 0},
            _DEMO_ADM_TUNED,
        ),
    }
)  # fmt: skip

# ---------------------------------------------------------------------------------- DDPG / IDPG
# tirer-lab/DDPG evaluation_DDPG.sh and evaluation_IDPG.sh (main.py, T_sampling 100). Rows the
# scripts run without --gamma / --eta_tilde (σ_y = 0) take placeholders: at σ_y = 0, δ_t = 0 and
# η_reg = 1e-4 whatever γ and η̃ are, so neither value is used (DDPG: main.py's defaults 8 / 0.7;
# IDPG: the class defaults 16 / 0.2).
_DDPG_SRC = "tirer-lab/DDPG evaluation_DDPG.sh, the {} line (main.py, T_sampling 100)."
_IDPG_SRC = "tirer-lab/DDPG evaluation_IDPG.sh, the {} line (main.py, T_sampling 100)."
_SCRIPT_NAMES = {
    "celebahq256": "celeba",
    "imagenet256": "imagenet",
    "sr4": "sr_bicubic",
    "gauss_deblur": "deblur_gauss",
    "motion_deblur": "motion_deblur",
}

# (data, task, σ_y): DDPG (γ, ζ, η̃, step_size_mode), IDPG (γ, η̃, step_size_mode)
_DDPG_ROWS: dict[tuple[str, str, str], tuple[tuple[float, float, float, int], tuple[float, float, int]]] = {
    ("celebahq256", "sr4", "0"): ((8.0, 0.7, 0.7, 0), (16.0, 0.2, 0)),
    ("celebahq256", "sr4", "0.01"): ((300.0, 1.0, 1.0, 0), (300.0, 0.0, 0)),
    ("celebahq256", "sr4", "0.05"): ((10.0, 0.8, 0.3, 1), (16.0, 0.2, 0)),
    ("celebahq256", "gauss_deblur", "0"): ((8.0, 1.0, 0.7, 0), (16.0, 0.2, 0)),
    ("celebahq256", "gauss_deblur", "0.01"): ((11.0, 0.6, 1.0, 0), (100.0, 7.0, 0)),
    ("celebahq256", "gauss_deblur", "0.05"): ((8.0, 0.5, 0.7, 1), (8.0, 0.6, 0)),
    ("celebahq256", "gauss_deblur", "0.1"): ((5.0, 0.6, 0.7, 1), (6.0, 0.6, 0)),
    ("celebahq256", "motion_deblur", "0.01"): ((50.0, 0.5, 6.0, 0), (90.0, 7.0, 0)),
    ("celebahq256", "motion_deblur", "0.05"): ((5.0, 0.6, 0.6, 1), (12.0, 0.9, 0)),
    ("celebahq256", "motion_deblur", "0.1"): ((5.0, 0.6, 0.6, 1), (14.0, 1.0, 0)),
    ("imagenet256", "sr4", "0"): ((8.0, 0.7, 0.7, 0), (16.0, 0.2, 0)),
    ("imagenet256", "sr4", "0.05"): ((6.0, 1.0, 0.3, 1), (30.0, 0.2, 0)),
    ("imagenet256", "gauss_deblur", "0"): ((8.0, 1.0, 0.7, 0), (16.0, 0.2, 0)),
    ("imagenet256", "gauss_deblur", "0.05"): ((10.0, 0.4, 0.7, 1), (11.0, 0.6, 0)),
    ("imagenet256", "motion_deblur", "0.05"): ((6.0, 0.6, 0.7, 1), (14.0, 0.8, 0)),
    ("imagenet256", "motion_deblur", "0.1"): ((3.0, 0.6, 0.4, 1), (11.0, 0.6, 0)),
}  # fmt: skip


def _script_line(data: str, task: str, sigma: str) -> str:
    return f"{_SCRIPT_NAMES[data]} {_SCRIPT_NAMES[task]} --sigma_y {sigma}"


DDPG_PRESETS = _table(
    {
        f"{data}_{task}_sigma{sigma}": Preset(
            {
                "steps": 100, "gamma": g, "zeta": z, "eta_tilde": e, "step_size_mode": m,
                "inject_noise": True, "scale_ls": 1.0,
            },
            _DDPG_SRC.format(_script_line(data, task, sigma)),
        )
        for (data, task, sigma), ((g, z, e, m), _) in _DDPG_ROWS.items()
    }
)  # fmt: skip

IDPG_PRESETS = _table(
    {
        f"{data}_{task}_sigma{sigma}": Preset(
            {"steps": 100, "gamma": g, "eta_tilde": e, "step_size_mode": m, "scale_ls": 1.0},
            _IDPG_SRC.format(_script_line(data, task, sigma)),
        )
        for (data, task, sigma), (_, (g, e, m)) in _DDPG_ROWS.items()
    }
)

# ------------------------------------------------------------------------------------------ FDGR
FDGR_PRESETS = _table(
    {
        "main_defaults": Preset(
            {
                "steps": 100, "mode": "G-", "lam": -0.09, "alpha": 0.5, "sigma_g": 1.5,
                "inject_noise": True, "gamma": 8.0, "zeta": 0.5, "eta_tilde": 0.7,
                "step_size_mode": 1, "scale_ls": 1.0,
            },
            "Anonymous-CodeSub/FDGR main.py argument defaults: G- (frequency-domain regulariser, "
            "λ < 0 sharpens; for LPIPS) on DDPG fidelity.",
        ),
        "celebahq256_sr4_sigma0.05": Preset(
            {
                "steps": 100, "mode": "G+", "lam": 1.3, "alpha": 0.2, "sigma_g": 0.8,
                "inject_noise": False, "gamma": 16.0, "eta_tilde": 0.2, "step_size_mode": 0,
                "scale_ls": 1.0,
            },
            "Anonymous-CodeSub/FDGR README quick start (the only published setting): CelebA SR×4, "
            "--sigma_y 0.05, G+ on IDPG-like fidelity (= IDPG's celebahq256_sr4_sigma0.05).",
        ),
    }
)  # fmt: skip

# ----------------------------------------------------------------------------------- DDRM, DDNM
DDRM_PRESETS = _table(
    {
        "main_defaults": Preset(
            {"steps": 20, "eta": 0.85, "eta_b": 1.0, "spacing": "ddrm", "mode": "official"},
            "bahjat-kawar/ddrm main.py / README: --timesteps 20 --eta 0.85 --etaB 1, "
            "seq = range(0, 1000, 1000 // N), zeroed singular values measured as in "
            "functions/denoising.py (mode 'official'). Needs an SVD operator.",
        )
    }
)

DDNM_PRESETS = _table(
    {
        "configs_default": Preset(
            {
                "steps": 100,
                "eta": 0.85,
                "travel_length": 1,
                "travel_repeat": 1,
                "lambda_noise": "official",
            },
            "wyhuai/DDNM configs (time_travel: T_sampling 100, travel_length 1, travel_repeat 1) "
            "and main.py --eta 0.85; DDNM+ noise term as functions/svd_operators.py "
            "(lambda_noise 'official'). DDNM+ (σ_y > 0) needs an SVD operator.",
        ),
        "demo_adm": Preset(
            {"steps": 10, "eta": 0.85, "travel_length": 1, "travel_repeat": 1},
            "The main job over the shipped demo prior: configs_default's η and travel with 10 steps "
            "(CPU time: 20.84 dB on the training images against 20.91 with 20 steps; on bicubic SR "
            "both DDNM+ noise terms are ours); " + _DEMO_ADM_TUNED,
        ),
    }
)

# --------------------------------------------------------------------------------------- DiffPIR
# yuanzhi-zhu/DiffPIR @ 111d26e: the per-task scripts fix (λ, ζ) through their final experiment
# loop (``lambdas = [lambda_*i for i in range(a, b)]``, ``zeta_i in [...]``), NFE by ``iter_num``,
# ``skip_type 'quad'``, ``eta 0``, ``guidance_scale 1``. The SR script sweeps λ = 2 … 12 at
# ζ = 0.25 and fixes none, so there is no SR preset (configs/experiment/README.md).
_DIFFPIR_SRC = "yuanzhi-zhu/DiffPIR {}: {}."
DIFFPIR_PRESETS = _table(
    {
        "gauss_deblur_sigma0.05": Preset(
            {"steps": 100, "lam": 7.0, "zeta": 0.3, "eta": 0.0, "spacing": "quad"},
            _DIFFPIR_SRC.format(
                "main_ddpir_deblur.py (also main_ddpir.py with configs/deblur.yaml)",
                "iter_num 100, lambda_ 1.0 x range(7, 8) = 7, zeta 0.1 x range(3, 4) = 0.3, "
                "noise_level_img 12.75/255 (= GaussianNoise(0.05)), skip_type quad; the same "
                "script and values run the motion kernel (blur_mode 'motion')",
            ),
        ),
        "inpaint_sigma0": Preset(
            {"steps": 20, "lam": 1.0, "zeta": 1.0, "eta": 0.0, "spacing": "quad"},
            _DIFFPIR_SRC.format(
                "main_ddpir_inpainting.py (also configs/inpaint.yaml)",
                "iter_num 20, lambda_ 1, zeta 1.0, noise_level_img 0, skip_type quad",
            ),
        ),
    }
)

# ------------------------------------------------------------------------------------------ ΠGDM
PIGDM_PRESETS = _table(
    {
        "reddiff_defaults": Preset(
            {"steps": 100, "eta": 0.0, "guidance_weight": 1.0},
            "NVlabs/RED-diff @ 66482f2 _configs/algo/pgdm.yaml (awd True, eta 0, "
            "grad_term_weight 1) and README (exp.num_steps 100; utils/functions.py "
            "get_timesteps: range(0, 1000, 10)). The code has no σ_y (noiseless ΠGDM).",
        ),
    }
)

# -------------------------------------------------------------------------------------- RED-diff
REDDIFF_PRESETS = _table(
    {
        "readme": Preset(
            {"steps": 100, "lr": 0.5, "grad_term_weight": 0.25, "obs_weight": 1.0,
             "weighting": "linear", "sigma_x0": 0.0},
            "NVlabs/RED-diff @ 66482f2 README run (exp.num_steps 100, algo.lr 0.5, "
            "algo.grad_term_weight λ 0.25) with _configs/algo/reddiff.yaml (obs_weight 1, "
            "denoise_term_weight linear, sigma_x0 0).",
        ),
        "config_defaults": Preset(
            {"steps": 100, "lr": 0.1, "grad_term_weight": 0.25, "obs_weight": 1.0,
             "weighting": "linear", "sigma_x0": 0.0},
            "NVlabs/RED-diff @ 66482f2 _configs/algo/reddiff.yaml as written (lr 0.1), 100 steps.",
        ),
    }
)  # fmt: skip

# ------------------------------------------------------------------------------------------- DDS
DDS_PRESETS = _table(
    {
        "main_defaults": Preset(
            {"steps": 50, "eta": 0.85, "cg_iter": 5, "gamma": 1.0},
            "HJ-harry/DDS @ 509b140 main.py defaults (--T_sampling 50 --eta 0.85 --CG_iter 5 "
            "--gamma 1.0), as run by eval_SVCT_2d.sh and eval_MRI_multi.sh (--sigma_y 0.01 "
            "selects the γ-regularised CG). The published rows are CT/MRI; on images this is the "
            "same sampler with lit_restore's operators.",
        ),
    }
)

# ------------------------------------------------------------------------------------------ PSLD
_PSLD_LDM = (
    "LituRout/PSLD stable-diffusion/run/inverse_{}_ldm.sh (--ffhq256: the CompVis FFHQ LDM-VQ-4, "
    "registry ldm-ffhq256) with scripts/inverse.py defaults --ddim_steps 1000 --ddim_eta 0; the "
    "task configs are DPS's (diffusion-posterior-sampling/configs/*_config.yaml); the sampler's "
    "LDM DDIM tables (ddim_schedule ldm), the noiser inside the loss (noisy_residual) and the "
    "operators' transpose in the gluing term (gluing_map official)."
)
_PSLD_1000 = {
    "steps": 1000, "eta": 0.0, "variance": "ddim", "spacing": "uniform", "ddim_schedule": "ldm",
    "noisy_residual": True, "gluing_map": "official",
}  # fmt: skip
PSLD_PRESETS = _table(
    {
        "ldm_random_inpaint": Preset({**_PSLD_1000, "gamma": 0.1, "omega": 0.1}, _PSLD_LDM.format("rip")),
        "ldm_box_inpaint": Preset({**_PSLD_1000, "gamma": 0.1, "omega": 0.1}, _PSLD_LDM.format("bip")),
        "ldm_gauss_deblur": Preset({**_PSLD_1000, "gamma": 0.1, "omega": 0.1}, _PSLD_LDM.format("gb")),
        "ldm_motion_deblur": Preset({**_PSLD_1000, "gamma": 0.1, "omega": 0.1}, _PSLD_LDM.format("mb")),
        "ldm_sr4": Preset({**_PSLD_1000, "gamma": 0.1, "omega": 0.9}, _PSLD_LDM.format("sr")),
        "sd_defaults": Preset(
            {**_PSLD_1000, "gamma": 0.1, "omega": 1.0},
            "LituRout/PSLD stable-diffusion/scripts/inverse.py defaults (--gamma 1e-1 --omega 1, "
            "1000 DDIM steps, η 0), the Stable Diffusion runs (run/inverse*.sh without --ffhq256).",
        ),
    }
)  # fmt: skip

# -------------------------------------------------------------------------------------- ReSample
RESAMPLE_PRESETS = _table(
    {
        "official": Preset(
            {"mode": "official", "steps": 500, "spacing": "ldm", "eta": 0.0, "gamma": 40.0,
             "every": 10, "pixel_stage": True, "pixel_iters": 2000, "pixel_lr": 1e-2,
             "latent_iters": 500, "latent_lr": 5e-3, "tol": 1e-3, "patience": 200,
             "lookahead": 5, "dps_scale": 0.5},
            "soominkwon/resample sample_condition.py (--ddim_steps 500 --ddim_eta 0; "
            "posterior_sampler runs resample_sampling on CompVis's make_ddim_timesteps grid) and "
            "ldm/models/diffusion/ddim.py (per-step PosteriorSampling with scale 0.5·ᾱ_t, "
            "inter_timesteps 5, σ² factor 40, every 10th step, pixel stage above index N//3, "
            "AdamW 1e-2 × 2000 / 5e-3 × 500, ε 1e-3, 200-iteration patience).",
        ),
        "paper": Preset(
            {"mode": "paper", "steps": 500, "spacing": "ldm", "eta": 0.0, "gamma": 40.0,
             "every": 10, "pixel_stage": True, "pixel_iters": 2000, "pixel_lr": 1e-2,
             "latent_iters": 500, "latent_lr": 5e-3, "tol": 1e-3, "patience": 200},
            "Song et al., ICLR 2024 (arXiv 2307.08123), Algorithm 1 (no per-step DPS, no "
            "look-ahead, Tweedie's ẑ0) with the official repository's grid, γ, schedule and "
            "optimiser settings (as 'official').",
        ),
    }
)  # fmt: skip

# ------------------------------------------------------------------------------------------ DAPS
# zhangbingliang2019/DAPS @ 098df6b: DAPS-1K (commands/pixel_ffhq.sh, pixel_imagenet.sh:
# annealing 200 levels × 5 ODE steps = 1000 NFE), configs/sampler/edm_daps.yaml (σ 100 → 0.1,
# ODE to 0.01, poly-7), the MCMC of configs/task/<task>.yaml: its ``pixel`` group (Langevin) and
# its ``pixel_hmc`` group (HMC) as ``<task>_hmc``. The repository has no DAPS-4K preset (only
# 1K is scripted); ``annealing_steps`` / ``ode_steps`` set other budgets. Tasks: down_sampling
# (SR×4), gaussian_blur (61 px, σ 3), motion_blur (61 px, intensity 0.5), inpainting (128×128
# box), inpainting_rand (70 %), phase_retrieval (oversample 2), nonlinear_blur, hdr — all with
# measurement noise 0.05 on [−1, 1] (= GaussianNoise(0.025) here).
_DAPS_1K = {
    "annealing_steps": 200,
    "ode_steps": 5,
    "sigma_max": 100.0,
    "sigma_min": 0.1,
    "ode_sigma_min": 0.01,
    "timestep_rule": "vp_sde",
}
_DAPS_SRC = (
    "zhangbingliang2019/DAPS @ 098df6b configs/task/{}.yaml ({}), DAPS-1K "
    "(commands/pixel_ffhq.sh: 200 annealing × 5 ODE steps), configs/sampler/edm_daps.yaml."
)
# task: (official file, pixel (steps, lr, lr_min_ratio), pixel_hmc (steps, lr, lr_min_ratio, m))
_DAPS_ROWS = {
    "sr4": ("down_sampling", (100, 1e-4, 0.01), (12, 1.04e-4, 0.012, 0.90)),
    "gauss_deblur": ("gaussian_blur", (100, 1e-4, 0.01), (82, 4.04e-5, 0.011, 0.10)),
    "motion_deblur": ("motion_blur", (100, 5e-5, 0.01), (96, 3.69e-5, 0.01, 0.11)),
    "inpaint_box": ("inpainting", (100, 5e-5, 0.01), (84, 1.15e-5, 0.014, 0.003)),
    "inpaint_random": ("inpainting_rand", (100, 1e-4, 0.01), (11, 3.56e-5, 0.015, 0.80)),
    "phase_retrieval": ("phase_retrieval", (100, 5e-5, 0.01), (62, 9.75e-6, 0.019, 0.73)),
    "nonlinear_deblur": ("nonlinear_blur", (200, 1e-5, 0.01), (85, 1.20e-5, 0.012, 0.46)),
    "hdr": ("hdr", (100, 2e-5, 0.01), (100, 2.18e-5, 0.013, 0.23)),
}  # fmt: skip
DAPS_PRESETS = _table(
    {
        **{
            task: Preset(
                {**_DAPS_1K, "mcmc_steps": n, "lr": lr, "lr_min_ratio": r, "tau": 0.01,
                 "mc_algo": "langevin"},
                _DAPS_SRC.format(f, "pixel: Langevin"),
            )
            for task, (f, (n, lr, r), _) in _DAPS_ROWS.items()
        },
        **{
            f"{task}_hmc": Preset(
                {**_DAPS_1K, "mcmc_steps": n, "lr": lr, "lr_min_ratio": r, "tau": 0.01,
                 "mc_algo": "hmc", "momentum": m},
                _DAPS_SRC.format(f, "pixel_hmc: damped HMC"),
            )
            for task, (f, _, (n, lr, r, m)) in _DAPS_ROWS.items()
        },
    }
)  # fmt: skip

# ----------------------------------------------------------------------------------- LatentDAPS
# zhangbingliang2019/DAPS @ 098df6b, the LDM FFHQ runs (commands/ldm_ffhq.sh: "DAPS 100", 50
# annealing levels × 2 ODE steps = 100 NFE; configs/sampler/latent_edm_daps.yaml: σ 10 → 0.1,
# ODE to 0.001, poly-7) with the ``ldm`` group of configs/task/<task>.yaml (HMC, τ 0.01, noise
# 0.05 on [−1, 1]). The gradient clamp of forward_operator LatentWrapper is ``grad_clip`` 1.
_LATENT_DAPS_100 = {
    "annealing_steps": 50,
    "ode_steps": 2,
    "sigma_max": 10.0,
    "sigma_min": 0.1,
    "ode_sigma_min": 0.001,
    "timestep_rule": "vp_sde",
    "tau": 0.01,
    "mc_algo": "hmc",
    "grad_clip": 1.0,
}
_LATENT_DAPS_SRC = (
    "zhangbingliang2019/DAPS @ 098df6b configs/task/{}.yaml (ldm: HMC), commands/ldm_ffhq.sh "
    "(50 annealing × 2 ODE steps), configs/sampler/latent_edm_daps.yaml; the FFHQ LDM "
    "(registry ldm-ffhq256)."
)
# task: (official file, (steps, lr, lr_min_ratio, momentum)) of the ``ldm`` group
_LATENT_DAPS_ROWS = {
    "sr4": ("down_sampling", (24, 1.35e-4, 0.023, 0.86)),
    "gauss_deblur": ("gaussian_blur", (35, 2.70e-6, 0.95, 0.95)),
    "motion_deblur": ("motion_blur", (49, 2.4e-5, 0.041, 0.45)),
    "inpaint_box": ("inpainting", (15, 9.02e-6, 0.13, 0.74)),
    "inpaint_random": ("inpainting_rand", (38, 8.40e-6, 0.013, 0.92)),
    "phase_retrieval": ("phase_retrieval", (65, 2.1e-5, 0.12, 0.41)),
    "nonlinear_deblur": ("nonlinear_blur", (80, 3.71e-6, 0.024, 0.91)),
    "hdr": ("hdr", (38, 4.52e-6, 0.015, 0.58)),
}  # fmt: skip
LATENT_DAPS_PRESETS = _table(
    {
        f"ldm_{task}": Preset(
            {**_LATENT_DAPS_100, "mcmc_steps": n, "lr": lr, "lr_min_ratio": r, "momentum": m},
            _LATENT_DAPS_SRC.format(f),
        )
        for task, (f, (n, lr, r, m)) in _LATENT_DAPS_ROWS.items()
    }
)  # fmt: skip

#: class name -> its presets. Exact class names: a subclass of a method has its own arguments.
PRESETS: Mapping[str, Mapping[str, Preset]] = MappingProxyType(
    {
        "DPS": DPS_PRESETS,
        "SaFaRI": SAFARI_PRESETS,
        "DDPG": DDPG_PRESETS,
        "IDPG": IDPG_PRESETS,
        "FDGR": FDGR_PRESETS,
        "DDRM": DDRM_PRESETS,
        "DDNM": DDNM_PRESETS,
        "DiffPIR": DIFFPIR_PRESETS,
        "PiGDM": PIGDM_PRESETS,
        "DDS": DDS_PRESETS,
        "REDDiff": REDDIFF_PRESETS,
        "PSLD": PSLD_PRESETS,
        "ReSample": RESAMPLE_PRESETS,
        "DAPS": DAPS_PRESETS,
        "LatentDAPS": LATENT_DAPS_PRESETS,
    }
)


def _class_name(cls: type | str) -> str:
    return cls if isinstance(cls, str) else cls.__name__


def presets_of(cls: type | str) -> Mapping[str, Preset]:
    """The presets of sampler class ``cls`` (a class or its name); empty when it has none."""
    return PRESETS.get(_class_name(cls), MappingProxyType({}))


def describe(methods: list[str] | None = None) -> str:
    """Human-readable listing of the presets (``python -m lit_restore.samplers.presets``)."""
    lines: list[str] = []
    for method, table in PRESETS.items():
        if methods and method.lower() not in {m.lower() for m in methods}:
            continue
        lines.append(f"{method}  (class_path: lit_restore.samplers.{method})")
        for name, preset in table.items():
            args = ", ".join(f"{k}={v}" for k, v in preset.args.items())
            lines += [f"  {name}: {args}", f"      source: {preset.source}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="List the sampler presets (published settings).")
    parser.add_argument("methods", nargs="*", help=f"any of {', '.join(PRESETS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [m for m in args.methods if m.lower() not in {k.lower() for k in PRESETS}]
    if unknown:
        print(
            f"error: unknown method {unknown}; methods with presets: {', '.join(PRESETS)}",
            file=sys.stderr,
        )
        return 2
    print(describe(args.methods))
    return 0


if __name__ == "__main__":
    sys.exit(main())
