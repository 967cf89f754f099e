"""Every experiment config resolves to its protocol's values and runs one batch.

Each ``configs/experiment/*.yaml`` and each run of each suite is parsed in-process by the CLI
(presets expanded, operator fragments loaded) and its *resolved* config is checked against the
published protocols: noise σ in our [0, 1] units, operators, priors by registry name, samplers by
preset (sources: :mod:`lit_restore.samplers.presets`, the configs' headers). Then the same
config, shrunk — an analytic Gaussian prior instead of the checkpoint, the demo images at 16 px,
2 sampler steps, kernels and boxes that fit 16 px — runs one test batch (train configs: one
step). The DPS / SaFaRI / protocol files and the σ_y = 0.05 run of every suite run in CI; the other
suite runs (same operators, other presets and σ_y) only parse there and run under ``-m slow``.
"""

from __future__ import annotations

import contextlib
import copy
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import lightning as L
import pytest
import torch
import yaml
from test_end_to_end import TINY_LDM  # latent protocols (PSLD, ReSample) run on it

import lit_restore.samplers
from lit_restore.cli import SampleCLI, TrainCLI
from lit_restore.presets import preset_args
from lit_restore.samplers.presets import PRESETS
from lit_restore.suite import load_suite, run_args

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "configs" / "experiment"


def _training_recipes() -> dict[str, str]:
    """``train.py fit`` recipes: a config that sets ``trainer.max_steps`` (evaluation configs
    never do)."""
    out = {}
    for path in sorted(EXP.glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text()) or {}
        if "max_steps" in (cfg.get("trainer") or {}):
            out[path.name] = "fit"
    return out


TRAIN = _training_recipes()
#: parse-only: released weights are not available offline (name → subcommand, option, registry name)
NEEDS_WEIGHTS = {
    "resshift_official_realsr_x4.yaml": ("predict", "weights", "resshift-realsr-x4-v3"),
    "sinsr_official_realsr_x4.yaml": ("predict", "weights", "sinsr-realsr-x4-v1"),
    "sinsr_realsr_x4.yaml": ("fit", "teacher", "resshift-realsr-x4-s15-v1"),
}
FRAGMENTS = {"eval_callbacks.yaml"}


def _is_suite(path: Path) -> bool:
    return "suite" in (yaml.safe_load(path.read_text()) or {})


EXPERIMENTS = sorted(
    p.name for p in EXP.glob("*.yaml") if p.name not in FRAGMENTS and not _is_suite(p)
)
SUITES = sorted(p.name for p in EXP.glob("*.yaml") if _is_suite(p))
SUITE_RUNS = [(s, r) for s in SUITES for r in load_suite(EXP / s).runs]

GAUSSIAN_PRIOR = {
    "class_path": "lit_restore.priors.PowerLawGaussianPrior",
    "init_args": {"alpha": 2.0, "std": 0.5, "f0": 0.015625, "mean": 0.0, "channels": 3},
}


def _plain(ns: Any) -> Any:
    return ns.as_dict() if hasattr(ns, "as_dict") else ns


class _Captured(Exception):
    """Raised from before_instantiate_classes to stop after parsing (parse-only checks)."""


def _cli(cli_class: type, args: list[str], tmp_path: Path | None) -> tuple[dict, SampleCLI | None]:
    """Parse ``args`` (subcommand first) in-process; return the resolved config as a dict and,
    when ``tmp_path`` is given, the CLI built from the shrunk config (nothing run yet)."""
    captured: dict[str, Any] = {}

    class Smoke(cli_class):
        def before_instantiate_classes(self) -> None:
            cfg = self.config[self.subcommand]
            captured["config"] = copy.deepcopy(_plain(cfg))
            if tmp_path is None:
                raise _Captured
            _shrink(cfg, tmp_path)

        def _run_subcommand(self, subcommand: str) -> None:  # built, not run: the test runs it
            pass

    with mock.patch.object(sys, "argv", ["sample.py"]), contextlib.chdir(ROOT):
        try:
            cli = Smoke(args=args)
        except _Captured:
            cli = None
    return captured["config"], cli


def _shrink(cfg: Any, tmp_path: Path) -> None:
    """Make a protocol config run in a second on CPU (documented in the module docstring)."""
    from jsonargparse import Namespace

    model, data = cfg.model.init_args, cfg.data.init_args
    if "prior" in model and model.prior.class_path.endswith("LDMPrior"):  # a tiny random LDM
        model.prior = Namespace(
            class_path=TINY_LDM["class_path"], init_args=Namespace(**TINY_LDM["init_args"])
        )
    elif "prior" in model:
        model.prior = Namespace(
            class_path=GAUSSIAN_PRIOR["class_path"],
            init_args=Namespace(**GAUSSIAN_PRIOR["init_args"]),
        )
    if "sampler" in model and model.sampler is not None:
        model.sampler.init_args.steps = 2
        for iters in ("pixel_iters", "latent_iters"):  # ReSample's optimisers
            if iters in model.sampler.init_args:
                model.sampler.init_args[iters] = 3
    net = model.get("network")
    if isinstance(net, dict):  # ADM flags of a prior to train: a 16-px, 2-level network
        net.update(image_size=16, num_channels=32, channel_mult="1,2", attention_resolutions="8")
        net.update(num_res_blocks=1)
    # the ResShift demo network is already tiny (32 px) and sets its own crop
    crop = data.crop_size if net is not None and not isinstance(net, dict) else 16
    data.crop_size, data.resize = crop, None
    data.eval_batch_size, data.batch_size, data.num_workers = 2, 2, 0
    if data.get("test_set") is not None and data.test_set.class_path.endswith("ImageFolder"):
        data.test_set.init_args.root = str(ROOT / "data" / "demo")
    for name in ("train_set", "val_set"):
        ds = data.get(name)
        if ds is not None and "image_size" in ds.init_args:
            ds.init_args.image_size, ds.init_args.length = crop, 4
    op = data.get("operator")
    if op is not None:
        a = op.init_args
        if a.get("kernel_size", 0) > 5:  # a 61-tap kernel with reflection padding needs ≥ 31 px
            a.kernel_size = 5
        if a.get("box_size") is not None and op.class_path.endswith("Inpainting"):
            a.box_size, a.margin = 8, 2
    t = cfg.trainer
    t.default_root_dir = str(tmp_path)  # Lightning's default logger, if any, writes here
    if isinstance(t.get("logger"), Namespace):  # a configured logger: into tmp as well
        t.logger.init_args.save_dir = str(tmp_path)
    t.enable_progress_bar, t.enable_model_summary = False, False
    t.accelerator, t.devices = "cpu", 1
    t.max_steps, t.limit_val_batches = 1, 0
    for cb in t.get("callbacks") or []:  # checkpoints go to tmp, not to runs/
        if "dirpath" in (cb.get("init_args") or {}):
            cb.init_args.dirpath = str(tmp_path / "checkpoints")


def _subcommand(name: str) -> str:
    return TRAIN.get(name) or NEEDS_WEIGHTS.get(name, ("test",))[0]


def _experiment_args(name: str) -> list[str]:
    args = [_subcommand(name), "--config", f"configs/experiment/{name}"]
    if name.startswith("protocol_"):  # a base without a sampler: its DDPG σ_y = 0.05 row
        base = name.removeprefix("protocol_").removesuffix(".yaml")
        args += ["--model.init_args.sampler", _preset_spec("DDPG", f"{base}_sigma0.05")]
    return args


def _preset_spec(method: str, preset: str) -> str:
    return f"{{class_path: lit_restore.samplers.{method}, init_args: {{preset: {preset}}}}}"


def _suite_args(suite: str, run: str) -> list[str]:
    return run_args(load_suite(EXP / suite), run, "test", [])


# ---------------------------------------------------------------------------- protocol values
def _sampler_preset(cfg: dict) -> tuple[str, dict]:
    sampler = cfg["model"]["init_args"]["sampler"]
    return sampler["class_path"].rsplit(".", 1)[1], sampler["init_args"]


def _assert_is_preset(method: str, args: dict, preset: str) -> None:
    want = preset_args(getattr(lit_restore.samplers, method), preset)
    assert {k: args[k] for k in want} == want, (method, preset)


def check_protocol(name: str, cfg: dict) -> None:
    """The resolved config of experiment ``name`` holds its protocol's published values."""
    model, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    if name.startswith(("psld_", "resample_")):  # the latent methods on the FFHQ LDM-VQ-4
        method, args = _sampler_preset(cfg)
        task = name.split("_ffhq256_")[1][:-5]
        assert model["prior"]["class_path"] == "lit_restore.priors.LDMPrior"
        assert model["prior"]["init_args"]["checkpoint"] == "ldm-ffhq256"
        if method == "PSLD":  # DPS's task configs: σ 0.05 on [-1, 1]
            _assert_is_preset(method, args, f"ldm_{task}")
            assert data["noise"]["init_args"]["sigma"] == pytest.approx(0.025)
        else:  # ReSample's task configs: σ 0.01 on [-1, 1]
            assert method == "ReSample"
            _assert_is_preset(method, args, "official")
            assert data["noise"]["init_args"]["sigma"] == pytest.approx(0.005)
        return
    if name.startswith("diffpir_"):  # DiffPIR scripts: σ in [0, 1] units doubled, as ours
        method, args = _sampler_preset(cfg)
        inpaint = "inpaint" in name
        assert method == "DiffPIR"
        _assert_is_preset(method, args, "inpaint_sigma0" if inpaint else "gauss_deblur_sigma0.05")
        assert data["noise"]["init_args"]["sigma"] == pytest.approx(0.0 if inpaint else 0.05)
        assert model["prior"]["init_args"]["checkpoint"] == "adm-ffhq256-dps"  # ffhq_10m.pt
        a = data["operator"]["init_args"]
        if inpaint:
            assert a["mask_type"] == "random" and list(a["drop_range"]) == [0.5, 0.5]
        else:  # 61 taps, circular (the code's mode='wrap' for its FFT data step)
            assert (a["kernel_size"], a["boundary"]) == (61, "circular")
        return
    if name.startswith("sinsr_") and "realsr" in name:  # wyf0912/SinSR configs/SinSR.yaml
        sch = (model["steps"], model["kappa"], model["min_noise_level"], model["etas_end"])
        assert sch == (15, 2.0, 0.04, 0.99) and model["power"] == 0.3
        assert model["autoencoder"] == "resshift-vq-f4"
        if "teacher" in model and model["teacher"] is not None:  # the distillation recipe
            weights = (model["distill_weight"], model["inverse_weight"], model["gt_weight"])
            assert weights == (1.0, 1.0, 1.0) and model["lpips_weight"] == 0.0
            assert (model["lr"], model["lr_min"], model["warmup_steps"]) == (5e-5, 5e-5, 5000)
            assert data["batch_size"] == 64 and data["crop_size"] == 256
            assert cfg["trainer"]["callbacks"][0]["init_args"]["decay"] == 0.999
        return
    if not name.startswith(("dps_", "safari_", "protocol_")):
        return
    noise, op = data["noise"], data["operator"]
    assert noise["class_path"] == "lit_restore.operators.GaussianNoise"
    a = op["init_args"]
    if name.startswith(("dps_", "safari_")):
        # DPS σ = 0.05 on [-1, 1] = 0.025 in [0, 1] units; 1000-step DDPM chain with DPS's
        # space_timesteps and learned-range variance (configs/diffusion_config.yaml)
        assert noise["init_args"]["sigma"] == pytest.approx(0.025)
        method, args = _sampler_preset(cfg)
        assert method == ("DPS" if name.startswith("dps_") else "SaFaRI")
        assert args["steps"] == 1000 and args["spacing"] == "guided_diffusion"
        assert args["variance"] == "auto"
        task = name.removesuffix(".yaml").split("_", 2)[2]
        preset = {"box_inpaint": "inpaint", "random_inpaint": "inpaint"}.get(task, task)
        if method == "SaFaRI" and task == "motion_deblur":  # no motion tuning: the deblur preset
            preset = "gauss_deblur"
        _assert_is_preset(method, args, preset)
        if method == "DPS":  # the repository's scales
            assert args["scale"] == (0.5 if "inpaint" in name else 0.3)
        prior = model["prior"]["init_args"]
        assert prior["checkpoint"] == (
            "adm-ffhq256-dps" if "ffhq" in name else "adm-imagenet256-uncond"
        )
        kind = op["class_path"].rsplit(".", 1)[1]
        if task == "sr4":
            assert (kind, a["factor"], a["mode"]) == ("BicubicSR", 4, "matlab")
        elif task == "box_inpaint":
            assert (a["mask_type"], a["box_size"], a["margin"]) == ("box", 128, 16)
        elif task == "random_inpaint":
            assert a["mask_type"] == "random" and list(a["drop_range"]) == [0.3, 0.7]
        elif task == "gauss_deblur":
            assert (a["kernel_size"], a["sigma"], a["boundary"]) == (61, 3.0, "pad")
        else:  # the motionblur package's trajectory model, as DPS
            assert (a["kernel_size"], a["intensity"], a["boundary"]) == (61, 0.5, "pad")
            assert a["trajectory"] == "motionblur"
    else:  # DDPG / FDGR protocol base: no sampler, σ_y default 0.05, FFT/SVD operators
        assert noise["init_args"]["sigma"] == pytest.approx(0.05)
        if "sr4" in name:
            assert (a["factor"], a["mode"]) == (4, "keys")
        elif "gauss_deblur" in name:  # DDPG deblur_gauss: 5 taps, σ = 10, FFT
            assert (a["kernel_size"], a["sigma"], a["boundary"]) == (5, 10.0, "circular")
        else:  # DDPG's Kernel(size=(61, 61), intensity=0.5) of the motionblur package
            assert (a["kernel_size"], a["intensity"], a["boundary"]) == (61, 0.5, "circular")
            assert a["trajectory"] == "motionblur"
        prior = model["prior"]
        if "celebahq" in name:
            assert prior["class_path"] == "lit_restore.priors.DDIMPrior"
            assert prior["init_args"]["checkpoint"] == "ddim-celebahq256"
            assert prior["init_args"]["ch_mult"] == [1, 1, 2, 2, 4, 4]  # celeba_hq.yml
        else:
            assert prior["init_args"]["checkpoint"] == "adm-imagenet256-uncond"
            assert prior["init_args"]["num_channels"] == 256  # guided-diffusion ImageNet 256


def check_suite_run(suite: str, run: str, cfg: dict) -> None:
    """A DDPG-protocol suite run: its method, its σ_y, and the preset of its (data, task, σ_y);
    a Gaussian demo suite run: its method's demo preset; a main-job run: its method over the
    shipped weights (prior adm-demo-pd, ResShift resshift-demo-sr4) with its demo_adm preset."""
    if suite in ("demo.yaml", "demo_sinsr.yaml"):  # demo_sinsr: the main job's data, + SinSR
        model = cfg["model"]
        noise, op = cfg["data"]["init_args"]["noise"], cfg["data"]["init_args"]["operator"]
        assert noise["init_args"]["sigma"] == pytest.approx(0.025)
        assert op["init_args"]["factor"] == 4 and op["init_args"]["mode"] == "matlab"
        if run == "pinv":
            assert model["class_path"] == "lit_restore.modules.PseudoInverse"
        elif run == "resshift":
            assert model["class_path"] == "lit_restore.modules.resshift.ResShiftModule"
            assert model["init_args"]["weights"] == "resshift-demo-sr4"
        elif run == "sinsr":
            assert model["class_path"] == "lit_restore.modules.SinSRModule"
            assert model["init_args"]["weights"] == "sinsr-demo-sr4"
            assert model["init_args"]["sampling"] == "one_step"
        else:
            method, args = _sampler_preset(cfg)
            assert method.lower() == run
            _assert_is_preset(method, args, "demo_adm")
            assert model["init_args"]["prior"]["init_args"]["checkpoint"] == "adm-demo-pd"
        return
    method, args = _sampler_preset(cfg)
    if suite == "demo_gaussian.yaml":
        assert method.lower() == run
        _assert_is_preset(method, args, "demo")
        return
    base = suite.removeprefix("suite_ddpg_protocol_").removesuffix(".yaml")
    check_protocol(f"protocol_{base}", _with_base_sigma(cfg))
    label, _, tag = run.partition("_sigma")
    assert method.lower() == label
    sigma = tag.replace("p", ".")
    assert cfg["data"]["init_args"]["noise"]["init_args"]["sigma"] == pytest.approx(float(sigma))
    if method in ("DDPG", "IDPG"):  # the published row of exactly this (data, task, σ_y)
        _assert_is_preset(method, args, f"{base}_sigma{sigma}")
    elif method == "FDGR":
        published = base == "celebahq256_sr4" and sigma == "0.05"
        _assert_is_preset(
            method, args, "celebahq256_sr4_sigma0.05" if published else "main_defaults"
        )
    else:  # DDRM / DDNM need an SVD: the deblur runs switch to the zero-boundary blur
        assert "motion" not in base
        boundary = cfg["data"]["init_args"]["operator"]["init_args"].get("boundary")
        assert boundary == ("zero" if "gauss_deblur" in base else None)


def _with_base_sigma(cfg: dict) -> dict:
    """``cfg`` with the protocol's default σ_y (0.05), to reuse :func:`check_protocol`'s checks
    of everything but the run's own σ_y and boundary override."""
    cfg = copy.deepcopy(cfg)
    cfg["data"]["init_args"]["noise"]["init_args"]["sigma"] = 0.05
    op = cfg["data"]["init_args"]["operator"]["init_args"]
    if op.get("boundary") == "zero":
        op["boundary"] = "circular"
    return cfg


# ---------------------------------------------------------------------------------- the tests
def test_every_protocol_row_has_its_file():
    tasks = ["sr4", "box_inpaint", "random_inpaint", "gauss_deblur", "motion_deblur"]
    for method in ("dps", "safari"):
        for data in ("ffhq256", "imagenet256"):
            for task in tasks:
                assert f"{method}_{data}_{task}.yaml" in EXPERIMENTS
    for data in ("celebahq256", "imagenet256"):
        for task in ("sr4", "gauss_deblur", "motion_deblur"):
            assert f"protocol_{data}_{task}.yaml" in EXPERIMENTS
            assert f"suite_ddpg_protocol_{data}_{task}.yaml" in SUITES


def test_suites_run_every_published_ddpg_row():
    """Each DDPG / IDPG preset — every line of the official ``evaluation_DDPG.sh`` /
    ``evaluation_IDPG.sh``, the CelebA σ_y = 0.01 rows included — is a run of its suite."""
    runs = {
        (s.removeprefix("suite_ddpg_protocol_").removesuffix(".yaml"), r) for s, r in SUITE_RUNS
    }
    for method in ("DDPG", "IDPG"):
        for name in PRESETS[method]:
            base, _, sigma = name.partition("_sigma")
            assert (base, f"{method.lower()}_sigma{sigma.replace('.', 'p')}") in runs, name


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_resolves_and_runs_one_batch(name, tmp_path):
    cli_class = TrainCLI if name in TRAIN else SampleCLI
    if name in NEEDS_WEIGHTS:  # parse only
        cfg, _ = _cli(cli_class, _experiment_args(name), None)
        _, option, registered = NEEDS_WEIGHTS[name]
        assert cfg["model"]["init_args"][option] == registered  # a registered name
        check_protocol(name, cfg)
        return
    if name.startswith("protocol_"):  # parse only: its suite's σ_y = 0.05 runs run a batch
        cfg, _ = _cli(cli_class, _experiment_args(name), None)
        check_protocol(name, cfg)
        _assert_is_preset("DDPG", _sampler_preset(cfg)[1], name[9:-5] + "_sigma0.05")
        return
    cfg, cli = _cli(cli_class, _experiment_args(name), tmp_path)
    check_protocol(name, cfg)
    _run_one_batch(cli, TRAIN.get(name, "test"))


@pytest.mark.parametrize(
    ("suite", "run"),
    SUITE_RUNS,
    ids=[f"{s.removeprefix('suite_ddpg_protocol_')[:-5]}:{r}" for s, r in SUITE_RUNS],
)
def test_suite_run_resolves(suite, run, tmp_path):
    smoke = run.endswith("sigma0p05")  # one σ_y per suite runs a batch in CI; see the slow test
    cfg, cli = _cli(SampleCLI, _suite_args(suite, run), tmp_path if smoke else None)
    check_suite_run(suite, run, cfg)
    if smoke:
        _run_one_batch(cli, "test")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("suite", "run"), [(s, r) for s, r in SUITE_RUNS if not r.endswith("sigma0p05")]
)
def test_suite_run_runs_one_batch(suite, run, tmp_path):
    _, cli = _cli(SampleCLI, _suite_args(suite, run), tmp_path)
    _run_one_batch(cli, "test")


def _run_one_batch(cli: Any, stage: str) -> None:
    """One batch through the Lightning loop (train configs: one optimiser step); the restored
    images come back finite and in range (DPS-type steps clamp x̂0 to [-1, 1]; DDRM / DDPG
    outputs are not clamped and can overshoot a little: ≤ 1.5 as in the end-to-end tests)."""
    outputs: list[dict] = []

    class Capture(L.Callback):
        def on_test_batch_end(self, trainer, pl_module, out, batch, batch_idx, dataloader_idx=0):
            outputs.append({"out": out, "hq": batch["hq"]})

    trainer = cli.trainer
    with contextlib.chdir(ROOT):
        if stage == "fit":
            trainer.fit(cli.model, datamodule=cli.datamodule)
            assert trainer.global_step == 1
            return
        trainer.callbacks.append(Capture())
        trainer.limit_test_batches = 1
        trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    assert len(outputs) == 1
    x, hq = outputs[0]["out"]["restored"], outputs[0]["hq"]
    assert x.shape == hq.shape == (2, 3, 16, 16)
    assert torch.isfinite(x).all() and x.abs().max() <= 1.5
    # network evaluations per image: one per step for every method at these settings (no DDNM
    # time travel) but DiffPIR, which returns the state at t = 0 without evaluating its last step
    # (output="state", the official scripts); none for the pseudo-inverse baseline
    sampler = getattr(cli.model, "sampler", None)
    expected = 0 if sampler is None else sampler.steps - (getattr(sampler, "output", "") == "state")
    assert outputs[0]["out"]["nfe_per_image"] == expected


def test_eval_callbacks_fragment_composes_with_a_protocol():
    cfg, _ = _cli(
        SampleCLI,
        ["test", "--config", "configs/experiment/dps_ffhq256_sr4.yaml",
         "--config", "configs/experiment/eval_callbacks.yaml"],
        None,
    )  # fmt: skip
    paths = [c["class_path"].rsplit(".", 1)[1] for c in cfg["trainer"]["callbacks"]]
    assert paths == ["RestorationMetrics", "RestoredImageWriter", "ImageGridLogger"]
    metrics = cfg["trainer"]["callbacks"][0]["init_args"]
    assert metrics["metrics"] == ["psnr", "ssim", "lpips"] and metrics["fid"] is True


def test_resshift_model_fragments_compose_with_the_journal_schedule():
    """Model fragments carry no trainer keys; the journal schedule is its own trainer fragment."""
    for frag in sorted((ROOT / "configs" / "model").glob("*.yaml")):
        assert "trainer" not in yaml.safe_load(frag.read_text()), frag.name
    cfg, _ = _cli(
        TrainCLI,
        ["fit", "--config", "configs/model/resshift_realsr_x4.yaml",
         "--config", "configs/data/div2k_train.yaml",
         "--config", "configs/trainer/resshift_journal.yaml"],
        None,
    )  # fmt: skip
    t = cfg["trainer"]
    assert (t["max_steps"], t["precision"]) == (400000, "bf16-mixed")
    assert t["callbacks"][0]["init_args"]["decay"] == 0.999
    assert cfg["model"]["init_args"]["lr"] == 5e-5


def test_only_trainer_fragments_set_trainer_keys():
    for kind in ("prior", "sampler", "model", "data", "operator"):
        for frag in sorted((ROOT / "configs" / kind).glob("*.yaml")):
            assert "trainer" not in (yaml.safe_load(frag.read_text()) or {}), frag
