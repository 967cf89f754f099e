"""Every zero-shot method × every operator it supports, through the sample.py CLI: the pixel
methods on a tiny ADM, the latent methods (latent DPS / SaFaRI / DAPS, PSLD, ReSample) on a tiny
LDM in the CompVis layout, the latter also on the nonlinear operators.

The CLI runs in-process (``run_cli(SampleCLI, argv)`` is exactly what ``sample.py`` executes);
``test_cli_runs.py`` runs the scripts as subprocesses. A method that cannot use an operator must
fail with one clear error (exit 2) naming both.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from lit_restore.cli import SampleCLI, run_cli

TINY_ADM = {
    "class_path": "lit_restore.priors.ADMPrior",
    "init_args": {
        "image_size": 16,
        "num_channels": 32,
        "num_res_blocks": 1,
        "channel_mult": "1,2",
        "attention_resolutions": "8",
        "num_heads": 2,
        "num_head_channels": -1,
        "learn_sigma": True,
        "resblock_updown": True,
    },
}

OPERATORS = {
    "sr_bicubic": ("BicubicSR", {"factor": 2, "mode": "keys"}),
    "sr_matlab": ("BicubicSR", {"factor": 2, "mode": "matlab"}),
    "sr_avgpool": ("AvgPoolSR", {"factor": 2}),
    "blur_gauss_zero": ("GaussianBlur", {"kernel_size": 5, "sigma": 1.0, "boundary": "zero"}),
    "blur_gauss_circular": (
        "GaussianBlur",
        {"kernel_size": 5, "sigma": 1.0, "boundary": "circular"},
    ),
    "blur_motion_pad": ("MotionBlur", {"kernel_size": 5, "intensity": 0.5, "boundary": "pad"}),
    "blur_uniform_circular": ("UniformBlur", {"kernel_size": 3, "boundary": "circular"}),
    "inpaint_box": ("Inpainting", {"mask_type": "box", "box_size": 6, "margin": 2}),
    "inpaint_random": ("Inpainting", {"mask_type": "random"}),
    "inpaint_freeform": ("Inpainting", {"mask_type": "freeform"}),
    "denoise": ("Denoising", {}),
    "colorize": ("Colorization", {}),
}

SAMPLERS = {
    "dps": ("DPS", {"steps": 3, "scale": 0.3}),
    "safari": ("SaFaRI", {"steps": 3, "scale": 0.3, "tau": 1000}),
    "ddnm": ("DDNM", {"steps": 3}),
    "ddrm": ("DDRM", {"steps": 3}),
    "ddpg": ("DDPG", {"steps": 3}),
    "idpg": ("IDPG", {"steps": 3}),
    "fdgr": ("FDGR", {"steps": 3}),
    "diffpir": ("DiffPIR", {"steps": 3}),
    "pgdm": ("PiGDM", {"steps": 3}),
    "dds": ("DDS", {"steps": 3}),
    "reddiff": ("REDDiff", {"steps": 3}),
    "daps": ("DAPS", {"annealing_steps": 3, "ode_steps": 1, "mcmc_steps": 2}),
}

NEEDS_SVD = {"ddnm", "ddrm"}  # with noise: DDNM+ and DDRM work in the SVD basis
# an SVD, or an exact FFT / CG pinv_reg (ΠGDM: σ_y > 0 here; DDS needs only A and Aᵀ)
NEEDS_PINV_REG = {"ddpg", "idpg", "fdgr", "diffpir", "pgdm"}
WITHOUT_SVD = {"blur_gauss_circular", "blur_motion_pad", "blur_uniform_circular"}
# exact FFT pinv_reg (circular) or conjugate gradients (padded): no SVD needed by DDPG/FDGR
OWN_PINV_REG = WITHOUT_SVD


def supported(method: str, operator: str) -> bool:
    if method in NEEDS_SVD:
        return operator not in WITHOUT_SVD
    if method in NEEDS_PINV_REG:
        return operator not in WITHOUT_SVD or operator in OWN_PINV_REG
    return True


def write_config(tmp_path: Path, method: str, operator: str, **trainer) -> Path:
    """The matrix's config of ``method`` × ``operator`` on the tiny ADM."""
    return write_run_config(
        tmp_path, method, operator, TINY_ADM, SAMPLERS[method], OPERATORS[operator], **trainer
    )


def _class_path(operator_class: str) -> str:
    return operator_class if "." in operator_class else f"lit_restore.operators.{operator_class}"


def write_run_config(
    tmp_path: Path,
    method: str,
    operator: str,
    prior: dict,
    sampler: tuple[str, dict],
    op: tuple[str, dict],
    size: int = 16,
    **trainer,
) -> Path:
    """A sample.py config: ``prior`` (class_path/init_args), ``sampler`` and ``op`` as
    ``(class name, init_args)`` (an operator outside lit_restore.operators by its dotted path);
    the run writes under ``tmp_path/runs/method/operator``, on three ``size``-px images."""
    op_cls, op_args = op
    s_cls, s_args = sampler
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "enable_progress_bar": False,
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {
                    "save_dir": str(tmp_path / "runs"),
                    "name": method,
                    "version": operator,
                },
            },
            "callbacks": [
                {
                    "class_path": "lit_restore.evaluation.RestorationMetrics",
                    "init_args": {"metrics": ["psnr", "ssim"]},
                },
                {"class_path": "lit_restore.evaluation.RestoredImageWriter"},
            ],
            **trainer,
        },
        "model": {
            "class_path": "lit_restore.modules.ZeroShotRestoration",
            "init_args": {
                "prior": prior,
                "sampler": {"class_path": f"lit_restore.samplers.{s_cls}", "init_args": s_args},
            },
        },
        "data": {
            "class_path": "lit_restore.data.RestorationDataModule",
            "init_args": {
                "test_set": {
                    "class_path": "lit_restore.data.DeadLeaves",
                    "init_args": {"length": 3, "image_size": size},
                },
                "operator": {"class_path": _class_path(op_cls), "init_args": op_args},
                "noise": {
                    "class_path": "lit_restore.operators.GaussianNoise",
                    "init_args": {"sigma": 0.05},
                },
                "crop_size": size,
                "batch_size": 2,
            },
        },
    }
    path = tmp_path / f"{method}_{operator}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def assert_three_images_scored_and_written(run_dir: Path) -> None:
    """A finished run over the 3 test images: one CSV row with a PSNR each, 3 PNGs."""
    with open(run_dir / "per_image_test.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["index"]) for r in rows) == [0, 1, 2]
    assert all(float(r["psnr"]) > 0 for r in rows)
    assert len(list((run_dir / "restored").glob("*.png"))) == 3


# The whole matrix: 12 methods × 12 operators.
MATRIX = [pytest.param(m, o, id=f"{m}-{o}") for m in SAMPLERS for o in OPERATORS]


def test_matrix_exercises_refusals():
    assert any(not supported(m, o) for m in SAMPLERS for o in OPERATORS)


@pytest.mark.parametrize(("method", "operator"), MATRIX)
def test_method_operator_matrix(tmp_path, capsys, monkeypatch, method, operator):
    monkeypatch.setattr("sys.argv", ["sample.py"])
    config = write_config(tmp_path, method, operator)
    code = run_cli(SampleCLI, ["test", "--config", str(config)])
    run_dir = tmp_path / "runs" / method / operator
    if supported(method, operator):
        assert code == 0, capsys.readouterr().err
        assert_three_images_scored_and_written(run_dir)
    else:
        err = capsys.readouterr().err
        assert code == 2
        assert "error:" in err and "SVD" in err and OPERATORS[operator][0] in err


# ------------------------------------------------------------------ latent methods on a tiny LDM
#: :class:`lit_restore.priors.LDMPrior` in the CompVis layout, tiny: 16 px images ↔ 8² VQ latents
TINY_LDM = {
    "class_path": "lit_restore.priors.LDMPrior",
    "init_args": {
        "unet": {
            "image_size": 8, "in_channels": 3, "out_channels": 3, "model_channels": 32,
            "attention_resolutions": [2], "num_res_blocks": 1, "channel_mult": [1, 2],
            "num_head_channels": 16,
        },
        "first_stage": {
            "embed_dim": 3, "n_embed": 32, "ch": 32, "ch_mult": [1, 2], "num_res_blocks": 1,
            "z_channels": 3,
        },
    },
}  # fmt: skip

LATENT_SAMPLERS = {
    "latent_dps": ("LatentDPS", {"steps": 3, "scale": 0.3}),
    "latent_safari": ("LatentSaFaRI", {"steps": 3, "scale": 0.3, "tau": 1000}),
    "psld": ("PSLD", {"steps": 4}),  # the LDM DDIM chain refuses 3 (official IndexError)
    "psld_pinv": ("PSLD", {"steps": 4, "gluing_map": "pinv"}),  # the exact A⁺ in the gluing
    "latent_daps": ("LatentDAPS", {"annealing_steps": 3, "ode_steps": 2, "mcmc_steps": 2}),
    # official mode (per-step latent DPS, look-ahead) and the paper's Algorithm 1
    "resample": (
        "ReSample",
        {"steps": 4, "every": 1, "pixel_iters": 2, "latent_iters": 2, "patience": 1},
    ),
    "resample_paper": (
        "ReSample",
        {"mode": "paper", "steps": 4, "every": 1, "pixel_iters": 2, "latent_iters": 2,
         "patience": 1},
    ),
}  # fmt: skip

#: the DPS paper's nonlinear blur acts on sides that are multiples of 128: a tiny LDM of the same
#: layout whose five-level VQ (f = 16) maps 128 px images to the same 8² latents
TINY_LDM_128 = {
    "class_path": TINY_LDM["class_path"],
    "init_args": {
        "unet": TINY_LDM["init_args"]["unet"],
        "first_stage": {**TINY_LDM["init_args"]["first_stage"], "ch_mult": [1, 1, 1, 1, 1]},
    },
}

#: operators with a differentiable ``A`` and no declared capabilities (not linear); the blur
#: network has random weights (``checkpoint: null``)
NONLINEAR_OPERATORS = {
    "jpeg": ("JPEG", {"quality": 10}),
    "phase_retrieval": ("PhaseRetrieval", {}),
    "nonlinear_blur": (
        "NonlinearBlur",
        {"checkpoint": None, "nf": 4, "front_RBs": 1, "back_RBs": 1, "kernel_dim": 32,
         "extractor_blocks": 1},
    ),
}  # fmt: skip
#: image side and prior where the 16 px of the rest of the matrix do not fit the operator
LATENT_SIZE = {"nonlinear_blur": (128, TINY_LDM_128)}

#: PSLD's gluing term needs A⁺ (a linear operator's ``pinv``); the other latent methods
#: differentiate ``A ∘ D`` only, so they run on every operator
LATENT_NEEDS_PINV = {"psld": "PSLD", "psld_pinv": "PSLD"}
#: operators whose y PSLD's official gluing map (identity / nearest upsampling) cannot take:
#: refused in one line naming ``gluing_map: pinv``, which the ``psld_pinv`` row runs instead
PSLD_OFFICIAL_GLUING_REFUSES = {"colorize"}


def latent_supported(method: str, operator: str) -> bool:
    return not (method in LATENT_NEEDS_PINV and operator in NONLINEAR_OPERATORS)


# The whole latent matrix: 5 methods (PSLD with both gluing maps, ReSample in both modes) ×
# (12 linear + 3 nonlinear operators).
LATENT_OPERATORS = {**OPERATORS, **NONLINEAR_OPERATORS}
LATENT_MATRIX = [
    pytest.param(m, o, id=f"{m}-{o}") for m in LATENT_SAMPLERS for o in LATENT_OPERATORS
]


def test_latent_matrix_exercises_refusals():
    assert any(not latent_supported(m, o) for m in LATENT_SAMPLERS for o in LATENT_OPERATORS)


@pytest.mark.parametrize(("method", "operator"), LATENT_MATRIX)
def test_latent_method_operator_matrix(tmp_path, capsys, monkeypatch, method, operator):
    monkeypatch.setattr("sys.argv", ["sample.py"])
    size, prior = LATENT_SIZE.get(operator, (16, TINY_LDM))
    path = write_run_config(
        tmp_path, method, operator, prior, LATENT_SAMPLERS[method], LATENT_OPERATORS[operator],
        size=size,
    )  # fmt: skip
    code = run_cli(SampleCLI, ["test", "--config", str(path)])
    if method == "psld" and operator in PSLD_OFFICIAL_GLUING_REFUSES:
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert code == 2 and len(lines) == 1, err[-2000:]
        assert "gluing_map: pinv" in lines[0]
    elif latent_supported(method, operator):
        assert code == 0, capsys.readouterr().err
        assert_three_images_scored_and_written(tmp_path / "runs" / method / operator)
    else:
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert code == 2 and len(lines) == 1, err[-2000:]
        op_class = LATENT_OPERATORS[operator][0]
        assert f"{LATENT_NEEDS_PINV[method]} needs a linear operator, but {op_class}" in lines[0]
