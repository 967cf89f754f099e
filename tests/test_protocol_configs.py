"""The published-protocol experiment configs parse with the CLI and hold the published values.

Every ``configs/experiment/*.yaml`` (except suites and the callbacks fragment) is parsed in-process
with ``SampleCLI(args=["test", "--config", X, "--print_config"])`` and the *resolved* config is
checked against the protocol tables (shared/research/safari_dps.md §2,
zeroshot_ddrm_ddnm_ddpg_fdgr.md §1–2): noise σ, operators, priors, samplers. The generated files
must match ``scripts/make_protocol_configs.py``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "configs" / "experiment"
NOT_SAMPLE = {"eval_callbacks.yaml", "prior_deadleaves_64.yaml"}  # fragment / a train.py config


def _generator():
    spec = importlib.util.spec_from_file_location(
        "make_protocol_configs", ROOT / "scripts" / "make_protocol_configs.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def print_config(*args: str) -> dict:
    """The resolved config of ``sample.py test ARGS --print_config`` (run in-process)."""
    from lit_restore.cli import SampleCLI

    buf = io.StringIO()
    argv = mock.patch.object(sys, "argv", ["sample.py"])  # pytest's own argv is not for the CLI
    with argv, contextlib.chdir(ROOT), contextlib.redirect_stdout(buf):
        try:
            SampleCLI(args=["test", *args, "--print_config"])
        except SystemExit as err:
            assert err.code in (0, None), f"--print_config exited with {err.code}"
    return yaml.safe_load(buf.getvalue())


def _is_suite(path: Path) -> bool:
    return "suite" in (yaml.safe_load(path.read_text()) or {})


EXPERIMENTS = sorted(
    p.name for p in EXP.glob("*.yaml") if p.name not in NOT_SAMPLE and not _is_suite(p)
)
SUITES = sorted(p.name for p in EXP.glob("suite_ddpg_protocol_*.yaml") if _is_suite(p))


def test_generated_configs_are_up_to_date():
    assert _generator().main(["--check"]) == 0


def test_expected_protocol_files_exist():
    tasks = ["sr4", "box_inpaint", "random_inpaint", "gauss_deblur", "motion_deblur"]
    for method in ("dps", "safari"):
        for data in ("ffhq256", "imagenet256"):
            for task in tasks:
                assert f"{method}_{data}_{task}.yaml" in EXPERIMENTS
    for data in ("celebahq256", "imagenet256"):
        for task in ("sr4", "gauss_deblur", "motion_deblur"):
            assert f"protocol_{data}_{task}.yaml" in EXPERIMENTS
            assert f"suite_ddpg_protocol_{data}_{task}.yaml" in SUITES


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_parses(name):
    cfg = print_config("--config", f"configs/experiment/{name}")
    model, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    if not name.startswith(("dps_", "safari_", "protocol_")):
        return
    noise = data["noise"]
    assert noise["class_path"] == "lit_restore.operators.GaussianNoise"
    op = data["operator"]
    if name.startswith(("dps_", "safari_")):
        # DPS σ = 0.05 on [-1, 1] = 0.025 in [0, 1] units; 1000-step DDPM chain
        assert noise["init_args"]["sigma"] == pytest.approx(0.025)
        assert model["sampler"]["init_args"]["steps"] == 1000
        expected_sampler = "DPS" if name.startswith("dps_") else "SaFaRI"
        assert model["sampler"]["class_path"] == f"lit_restore.samplers.{expected_sampler}"
        prior = model["prior"]["init_args"]["checkpoint"]
        assert prior == ("adm-ffhq256-dps" if "ffhq" in name else "adm-imagenet256-uncond")
        a = op["init_args"]
        if "sr4" in name:
            assert (op["class_path"].rsplit(".", 1)[1], a["factor"], a["mode"]) == (
                "BicubicSR",
                4,
                "matlab",
            )
        elif "box_inpaint" in name:
            assert (a["mask_type"], a["box_size"], a["margin"]) == ("box", 128, 16)
        elif "random_inpaint" in name:
            assert a["mask_type"] == "random" and list(a["drop_range"]) == [0.3, 0.7]
        elif "gauss_deblur" in name:
            assert (a["kernel_size"], a["sigma"], a["boundary"]) == (61, 3.0, "pad")
        elif "motion_deblur" in name:
            assert (a["kernel_size"], a["intensity"], a["boundary"]) == (61, 0.5, "pad")
        if name.startswith("dps_"):  # repository scales
            scale = model["sampler"]["init_args"]["scale"]
            assert scale == (0.5 if "inpaint" in name else 0.3)
    else:  # DDPG / FDGR protocol base: no sampler, σ_y default 0.05, FFT/SVD operators
        assert noise["init_args"]["sigma"] == pytest.approx(0.05)
        a = op["init_args"]
        if "sr4" in name:
            assert (a["factor"], a["mode"]) == (4, "keys")
        elif "gauss_deblur" in name:  # DDPG deblur_gauss: 5 taps, σ = 10, FFT
            assert (a["kernel_size"], a["sigma"], a["boundary"]) == (5, 10.0, "circular")
        else:
            assert (a["kernel_size"], a["intensity"], a["boundary"]) == (61, 0.5, "circular")
        prior = model["prior"]
        if "celebahq" in name:
            assert prior["class_path"] == "lit_restore.priors.DDIMPrior"
        else:
            assert prior["init_args"]["checkpoint"] == "adm-imagenet256-uncond"


@pytest.mark.parametrize("name", SUITES)
def test_suite_entries_exist(name):
    from lit_restore.suite import load_suite

    suite = load_suite(EXP / name)
    assert suite is not None and suite.runs
    methods = {run.split("_sigma")[0] for run in suite.runs}
    assert {"fdgr"} <= methods
    for run, items in suite.runs.items():
        files = [i for i in items if i.endswith(".yaml")]
        assert files, run
        for f in files:
            assert (ROOT / f).is_file(), f"{name}: run {run} names missing {f}"
        i = items.index("--data.init_args.noise.init_args.sigma")
        assert run.endswith("sigma" + items[i + 1].replace(".", "p"))


def _composed_runs(which: str) -> list[tuple[str, list[str]]]:
    from lit_restore.suite import _as_args, load_suite

    out = []
    for name in SUITES:
        for run, items in load_suite(EXP / name).runs.items():
            if which == "all" or run.endswith("sigma0p05"):
                out.append((f"{name}:{run}", _as_args(items)))
    return out


def _check_composed(label: str, args: list[str]) -> None:
    cfg = print_config(*args)
    sampler = cfg["model"]["init_args"]["sampler"]
    method = label.split(":")[1].split("_sigma")[0]
    assert sampler["class_path"].rsplit(".", 1)[1].lower() == method
    sigma = float(args[args.index("--data.init_args.noise.init_args.sigma") + 1])
    assert cfg["data"]["init_args"]["noise"]["init_args"]["sigma"] == pytest.approx(sigma)
    if method in ("ddrm", "ddnm") and "deblur" in label:
        assert cfg["data"]["init_args"]["operator"]["init_args"]["boundary"] == "zero"


def test_suite_runs_parse_sigma005():
    """Every method of every suite at σ_y = 0.05 composes into a valid config."""
    for label, args in _composed_runs("sigma0p05"):
        _check_composed(label, args)


@pytest.mark.slow
def test_suite_runs_parse_all():
    for label, args in _composed_runs("all"):
        _check_composed(label, args)


def test_ddpg_fragments_match_published_rows():
    """Every DDPG/IDPG sampler fragment (hand-written or generated) holds the DDPG script row."""
    gen = _generator()
    for (data, task, sigma), (ddpg, idpg) in gen.DDPG_ROWS.items():
        tag = gen.sigma_tag(sigma)
        for method, row in (("ddpg", ddpg), ("idpg", idpg)):
            path = ROOT / "configs" / "sampler" / f"{method}_{data}_{task}_sigma{tag}.yaml"
            args = yaml.safe_load(path.read_text())["model"]["init_args"]["sampler"]["init_args"]
            assert args["steps"] == 100
            if method == "ddpg":
                g, z, e, m = row
                assert args["zeta"] == pytest.approx(z) and args["step_size_mode"] == m, path.name
                if sigma > 0:  # γ and η̃ are unused at σ_y = 0
                    assert (args["gamma"], args["eta_tilde"]) == pytest.approx((g, e)), path.name
            else:
                g, e, m = row
                assert args["step_size_mode"] == m, path.name
                if sigma > 0:
                    assert (args["gamma"], args["eta_tilde"]) == pytest.approx((g, e)), path.name


def test_safari_task_fragments_are_used():
    """The SaFaRI protocol configs carry the per-task measured defaults."""
    sampler_dir = ROOT / "configs" / "sampler"
    for task, frag in (
        ("sr4", "safari_sr4.yaml"),
        ("gauss_deblur", "safari_gaussian_deblur.yaml"),
        ("box_inpaint", "safari_inpainting.yaml"),
    ):
        want = yaml.safe_load((sampler_dir / frag).read_text())["model"]["init_args"]["sampler"]
        got = yaml.safe_load((EXP / f"safari_ffhq256_{task}.yaml").read_text())
        assert got["model"]["init_args"]["sampler"] == want


GAUSSIAN_PRIOR = (
    '{"class_path": "lit_restore.priors.gaussian.PowerLawGaussianPrior", '
    '"init_args": {"alpha": 2.0, "std": 0.5}}'
)


@pytest.mark.parametrize(
    "configs",
    [
        ["configs/experiment/safari_ffhq256_sr4.yaml"],
        ["configs/experiment/dps_imagenet256_box_inpaint.yaml"],
        [
            "configs/experiment/protocol_celebahq256_gauss_deblur.yaml",
            "configs/sampler/ddpg_celeba_gauss_sigma0.05.yaml",
        ],
    ],
    ids=["safari_sr4", "dps_box", "ddpg_gauss"],
)
def test_protocol_config_runs_end_to_end(configs, tmp_path):
    """The protocol config drives a real test loop (ADM/DDIM prior swapped for an analytic one,
    4 steps, 2 demo images at 64 px): the operator/noise reach the model and outputs are sane."""
    import lightning as L

    from lit_restore.cli import SampleCLI

    args = [a for c in configs for a in ("--config", c)] + [
        "--model.init_args.prior", GAUSSIAN_PRIOR,
        "--model.init_args.sampler.init_args.steps", "4",
        "--data.init_args.test_set.init_args.root", "data/demo",
        "--data.init_args.crop_size", "64",
        "--data.init_args.eval_batch_size", "2",
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger", "false",
        "--trainer.default_root_dir", str(tmp_path),
    ]  # fmt: skip
    if "box" in configs[0]:  # a 128-px box does not fit a 64-px crop
        args += ["--data.init_args.operator.init_args.box_size", "32"]
        args += ["--data.init_args.operator.init_args.margin", "4"]
    with mock.patch.object(sys, "argv", ["sample.py"]), contextlib.chdir(ROOT):
        cli = SampleCLI(args=args, run=False)
    data_cfg = yaml.safe_load((ROOT / configs[0]).read_text())["data"]["init_args"]
    assert cli.model.noise.sigma == pytest.approx(data_cfg["noise"]["init_args"]["sigma"])
    assert type(cli.model.operator).__name__ == data_cfg["operator"]["class_path"].rsplit(".")[-1]

    outputs: list[dict] = []

    class Capture(L.Callback):
        def on_test_batch_end(self, trainer, pl_module, out, batch, batch_idx, dataloader_idx=0):
            outputs.append({"out": out, "hq": batch["hq"]})

    cli.trainer.callbacks.append(Capture())
    cli.trainer.limit_test_batches = 1
    with contextlib.chdir(ROOT):
        cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    assert len(outputs) == 1
    x, hq = outputs[0]["out"]["restored"], outputs[0]["hq"]
    assert x.shape == hq.shape == (2, 3, 64, 64)
    assert torch.isfinite(x).all() and x.abs().max() <= 1.5
    assert outputs[0]["out"]["nfe_per_image"] == 4


def test_eval_callbacks_fragment_composes_with_a_protocol():
    cfg = print_config(
        "--config", "configs/experiment/dps_ffhq256_sr4.yaml",
        "--config", "configs/experiment/eval_callbacks.yaml",
    )  # fmt: skip
    paths = [c["class_path"] for c in cfg["trainer"]["callbacks"]]
    assert paths == [
        "lit_restore.evaluation.RestorationMetrics",
        "lit_restore.evaluation.RestoredImageWriter",
        "lit_restore.evaluation.ImageGridLogger",
    ]
    metrics = cfg["trainer"]["callbacks"][0]["init_args"]
    assert metrics["metrics"] == ["psnr", "ssim", "lpips"] and metrics["fid"] is True
