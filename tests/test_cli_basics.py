"""Entry points as a user types them: help, one-line errors, suites (parsing, --print_config,
stopping at the first failure).

A user error ends in exactly one line on stderr that starts with ``error:`` and exit status 2, no
traceback (Lightning's own INFO lines, e.g. "Seed set to 0", may precede it); a bug keeps its
traceback. Most cases run in-process through ``run_cli`` (exactly what ``sample.py`` executes);
a few run the script as a subprocess.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from entry_points import ROOT, entry_command, entry_env, run_entry

from lit_restore.cli import SampleCLI, run_cli
from lit_restore.suite import _as_args, find_suite, load_suite

PINV = "configs/experiment/demo_pinv.yaml"
SMALL = ["--data.init_args.crop_size", "32", "--trainer.enable_progress_bar", "false"]


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


def assert_one_error(code: int, stderr: str, *needles: str) -> str:
    """Exit status 2, no traceback, exactly one ``error:`` line that contains every needle."""
    lines = error_lines(stderr)
    assert code == 2, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-2000:]
    assert len(lines) == 1, stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def cli(monkeypatch, capsys, tmp_path):
    """``cli(*args)`` → (exit status, stderr) of ``sample.py ARGS`` run in-process in the repo;
    its stdout is kept in ``cli.out``."""
    monkeypatch.setattr(sys, "argv", ["sample.py"])
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LIT_RESTORE_HOME", str(tmp_path / "home"))  # no cached weights
    monkeypatch.delenv("LIT_RESTORE_DEBUG", raising=False)

    def call(*args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = run_cli(SampleCLI, list(args))
        captured = capsys.readouterr()
        call.out = captured.out
        return code, captured.err

    return call


# ------------------------------------------------------------------------------------- help
@pytest.mark.parametrize(
    ("script", "subcommands", "absent"),
    [
        ("train.py", ["fit", "validate", "test"], "predict"),
        ("sample.py", ["test", "predict"], "fit"),
    ],
)
def test_help_lists_subcommands(script, subcommands, absent):
    out = run_entry(script, "--help", check=False)
    assert out.returncode == 0, out.stderr
    for sub in subcommands:
        assert sub in out.stdout
    assert f"{{{','.join(subcommands)}}}" in out.stdout
    assert absent not in out.stdout.split("subcommands:")[0]


def test_subcommand_help_lists_model_and_data_options():
    out = run_entry("sample.py", "test", "--help", check=False)
    assert out.returncode == 0, out.stderr
    for option in ("--model", "--data", "--trainer.devices", "--ckpt_path"):
        assert option in out.stdout


# ------------------------------------------------------------------- one-line errors (scripts)
def test_misspelt_option_is_one_line_with_did_you_mean():
    out = run_entry("sample.py", "test", "--config", PINV, "--trainer.devics", "2", check=False)
    assert_one_error(
        out.returncode, out.stderr, "--trainer.devics", "did you mean --trainer.devices"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_config_without_gpu_names_the_cpu_config():
    out = run_entry(
        "sample.py", "test", "--config", PINV, "--config", "configs/trainer/gpu.yaml", check=False
    )
    assert_one_error(
        out.returncode, out.stderr, "configs/trainer/cpu.yaml", "--trainer.accelerator cpu"
    )


def test_debug_variable_shows_the_traceback():
    out = run_entry(
        "sample.py", "test", "--config", PINV, "--data.init_args.test_set.init_args.root", "nope",
        env={"LIT_RESTORE_DEBUG": "1"}, check=False,
    )  # fmt: skip
    assert out.returncode != 0 and "Traceback" in out.stderr
    assert "image folder 'nope' does not exist" in out.stderr


# ------------------------------------------------------------------ one-line errors (in-process)
def test_misspelt_nested_option_names_the_class_and_the_closest_argument(cli):
    code, err = cli("test", "--config", PINV, "--data.init_args.crop_siz", "4")
    assert_one_error(
        code, err, "--data.init_args.crop_siz", "RestorationDataModule", "did you mean 'crop_size'"
    )


def test_unknown_sampler_lists_the_available_ones(cli):
    code, err = cli(
        "test", "--config", "configs/experiment/demo_base.yaml",
        "--model.init_args.sampler", "lit_restore.samplers.DSP",
    )  # fmt: skip
    line = assert_one_error(code, err, "--model.init_args.sampler", "'DSP'", "did you mean 'DPS'")
    for name in ("DDNM", "DDPG", "DDRM", "DPS", "FDGR", "IDPG", "SaFaRI"):
        assert name in line


def test_unknown_preset_suggests_the_closest(cli):
    code, err = cli(
        "test", "--config", "configs/experiment/demo_base.yaml",
        "--model.init_args.sampler", "{class_path: lit_restore.samplers.DDPG, init_args: {preset: celebahq256_sr4_sigma0.5}}",
    )  # fmt: skip
    assert_one_error(code, err, "unknown preset", "did you mean 'celebahq256_sr4_sigma0.05'")


def test_wrong_value_type_names_the_option(cli):
    code, err = cli("test", "--config", PINV, "--data.init_args.crop_size", "abc")
    assert_one_error(code, err, "--data.init_args.crop_size", "expected int", "abc")


def test_missing_config_file(cli):
    code, err = cli("test", "--config", "does/not/exist.yaml")
    assert_one_error(code, err, "--config", "does/not/exist.yaml")


def test_wrong_and_empty_image_folders(cli, tmp_path):
    code, err = cli("test", "--config", PINV, "--data.init_args.test_set.init_args.root", "nope")
    assert_one_error(code, err, "image folder 'nope' does not exist", "data/README.md")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = cli(
        "test", "--config", PINV, "--data.init_args.test_set.init_args.root", str(empty)
    )
    assert_one_error(code, err, "no images found", str(empty))


def test_negative_sigma_and_zero_steps(cli):
    code, err = cli("test", "--config", PINV, "--data.init_args.noise.init_args.sigma", "-0.1")
    assert_one_error(code, err, "sigma must be >= 0", "-0.1")
    code, err = cli(
        "test", "--config", "configs/experiment/demo_base.yaml",
        "--config", "configs/sampler/dps_demo.yaml", "--model.init_args.sampler.init_args.steps", "0",
    )  # fmt: skip
    assert_one_error(code, err, "steps must be in [1, 1000], got 0")


def test_missing_prior_weights_say_what_to_download(cli):
    code, err = cli(
        "test", "--config", "configs/experiment/protocol_celebahq256_sr4.yaml",
        "--model.init_args.sampler", "lit_restore.samplers.DDRM",
    )  # fmt: skip
    assert_one_error(
        code, err, "ddim-celebahq256", "celeba_hq.ckpt", "python -m lit_restore.weights"
    )


def test_a_bug_keeps_its_traceback(cli, monkeypatch, tmp_path):
    """An internal error is not dressed up as a user error: run_cli lets it propagate. (Without
    a logger the run directory is ``default_root_dir``: kept out of the repository.)"""
    from lit_restore.modules import PseudoInverse

    def broken(self, batch):
        raise RuntimeError("an internal bug")

    monkeypatch.setattr(PseudoInverse, "restore", broken)
    with pytest.raises(RuntimeError, match="an internal bug"):
        cli("test", "--config", PINV, *SMALL, "--trainer.logger", "false",
            "--trainer.default_root_dir", str(tmp_path / "run"))  # fmt: skip


def test_threads_hold_for_the_run_and_are_restored_after_it(cli, monkeypatch, tmp_path):
    """``--threads N`` sets torch's intra-op pool for the run only: the restoration sees N
    threads, and the caller's count is back afterwards — after a run that fails too (suites and
    tests share one process). 0 threads is one ``error:`` line."""
    import torch

    from lit_restore.modules import PseudoInverse

    seen: set[int] = set()
    fail = []
    original = PseudoInverse.restore

    def recording(self, batch):
        seen.add(torch.get_num_threads())
        if fail:
            raise RuntimeError("a failing run")
        return original(self, batch)

    monkeypatch.setattr(PseudoInverse, "restore", recording)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        args = (*SMALL, "--trainer.logger", "false", "--trainer.default_root_dir")
        assert cli("test", "--config", PINV, *args, str(tmp_path / "a"), "--threads", "1")[0] == 0
        assert seen == {1} and torch.get_num_threads() == 2
        fail.append(True)
        with pytest.raises(RuntimeError, match="a failing run"):
            cli("test", "--config", PINV, *args, str(tmp_path / "b"), "--threads", "1")
        assert seen == {1} and torch.get_num_threads() == 2
        code, err = cli("test", "--config", PINV, *args, str(tmp_path / "c"), "--threads", "0")
        assert_one_error(code, err, "--threads", "got 0")
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------------- suites
def test_suite_file_parsing(tmp_path):
    plain = tmp_path / "plain.yaml"
    plain.write_text("model: {}\n")
    assert load_suite(plain) is None
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(
        "suite:\n  base: [a.yaml]\n  runs:\n    one: [b.yaml, --x, '1', --y=2]\n    two: []\n"
        "  compare: out\n"
    )
    suite = load_suite(suite_file)
    assert suite.base == ["a.yaml"] and list(suite.runs) == ["one", "two"]
    assert _as_args(suite.runs["one"]) == ["--config", "b.yaml", "--x", "1", "--y=2"]
    found = find_suite(["test", "--config", str(suite_file), "--trainer.devices", "2"])
    assert found is not None and found[1] == ["test", "--trainer.devices", "2"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("suite:\n  runs: {}\n")
    with pytest.raises(ValueError, match=r"suite\.runs is empty"):
        load_suite(bad)
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text("suite:\n  runs: {a: []}\nmodel: {}\n")
    with pytest.raises(ValueError, match="only the 'suite' key"):
        load_suite(mixed)


def _write_suite(path: Path, runs: dict[str, list[str]], compare: Path) -> Path:
    suite = {"suite": {"base": [PINV], "runs": runs, "compare": str(compare)}}
    path.write_text(yaml.safe_dump(suite, sort_keys=False))  # runs in the order given
    return path


def test_suite_print_config_has_no_side_effects(cli, tmp_path):
    """Each run's resolved config, one YAML document each; nothing written, nothing compared."""
    out_dir = tmp_path / "out"
    suite = _write_suite(
        tmp_path / "suite.yaml",
        {"a": ["--data.init_args.noise.init_args.sigma=0.02"], "b": []},
        out_dir / "comparison",
    )
    code, err = cli("test", "--config", str(suite), "--print_config",
                    "--trainer.logger.init_args.save_dir", str(out_dir))  # fmt: skip
    assert code == 0, err
    out = cli.out
    docs = list(yaml.safe_load_all(out))
    assert "# suite run: a" in out and "# suite run: b" in out and len(docs) == 2
    assert [d["trainer"]["logger"]["init_args"]["version"] for d in docs] == ["a", "b"]
    sigmas = [d["data"]["init_args"]["noise"]["init_args"]["sigma"] for d in docs]
    assert sigmas == [0.02, 0.01]  # run a's flag; run b keeps demo_pinv's σ
    assert not out_dir.exists() and list(tmp_path.iterdir()) == [suite]


def test_suite_stops_at_the_first_failing_run_and_keeps_going_on_request(cli, tmp_path):
    out_dir = tmp_path / "runs"
    runs = {
        "ok1": [],
        "broken": ["--data.init_args.test_set.init_args.root=nope"],
        "ok2": ["--data.init_args.noise.init_args.sigma=0.02"],
    }
    suite = _write_suite(tmp_path / "suite.yaml", runs, tmp_path / "comparison")
    flags = [*SMALL, "--trainer.logger.init_args.save_dir", str(out_dir)]
    code, err = cli("test", "--config", str(suite), *flags)
    assert_one_error(code, err, "image folder 'nope' does not exist")
    assert "not run: ok2 (--keep-going runs them)" in cli.out
    assert (out_dir / "demo_pinv" / "ok1" / "per_image_test.csv").is_file()
    assert not (out_dir / "demo_pinv" / "ok2").exists()  # not run
    assert not (tmp_path / "comparison").exists()
    code, err = cli("test", "--config", str(suite), *flags, "--keep-going")
    assert_one_error(code, err, "image folder 'nope' does not exist")
    assert (out_dir / "demo_pinv" / "ok2" / "per_image_test.csv").is_file()
    table = (tmp_path / "comparison" / "comparison.md").read_text()
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and not ln.startswith("| run ")]
    assert len(rows) == 2 and "broken" not in table  # the two runs that finished


def _per_image(run: Path) -> list[tuple[str, str, str]]:
    """(name, psnr, ssim) of each image of a finished run: the numbers, without the timings."""
    lines = (run / "per_image_test.csv").read_text().splitlines()
    header = lines[0].split(",")
    cols = [header.index(c) for c in ("name", "psnr", "ssim")]
    return [tuple(row.split(",")[c] for c in cols) for row in lines[1:]]


def test_suite_jobs_run_entries_at_once_with_the_numbers_of_a_sequential_suite(cli, tmp_path):
    """``--jobs 2``: the entry after the one this process runs goes to a child process (its
    output in ``<run>.log`` beside the run directory); every run gives the numbers the one-at-
    a-time suite gives, and the comparison lists the runs in the suite's order."""
    runs = {"a": [], "b": ["--data.init_args.noise.init_args.sigma=0.02"], "c": []}
    suite = _write_suite(tmp_path / "suite.yaml", runs, tmp_path / "cmp_jobs")
    code, err = cli("test", "--config", str(suite), *SMALL, "--jobs", "2",
                    "--trainer.logger.init_args.save_dir", str(tmp_path / "jobs"))  # fmt: skip
    assert code == 0, err
    jobs = tmp_path / "jobs" / "demo_pinv"
    assert "[suite] run b started in process" in cli.out and (jobs / "b.log").is_file()
    assert not (jobs / "a.log").exists()  # a ran in this process (its output is ours)
    one = _write_suite(tmp_path / "one.yaml", runs, tmp_path / "cmp_one")
    code, err = cli("test", "--config", str(one), *SMALL,
                    "--trainer.logger.init_args.save_dir", str(tmp_path / "one"))  # fmt: skip
    assert code == 0, err
    for name in runs:
        rows = _per_image(jobs / name)
        assert len(rows) == 8 and rows == _per_image(tmp_path / "one" / "demo_pinv" / name)
    assert _per_image(jobs / "a") != _per_image(jobs / "b")  # b's own σ reached its child
    table = (tmp_path / "cmp_jobs" / "comparison.md").read_text()
    labels = [ln.split("|")[1].strip() for ln in table.splitlines() if ln.startswith("| [")]
    # the suite's order, whatever order the runs finished in
    assert labels == ["[A] pinv (a)", "[B] pinv", "[A] pinv (c)"], table


def test_suite_jobs_report_a_failing_child_once_and_reject_a_bad_count(cli, tmp_path):
    runs = {"a": [], "broken": ["--data.init_args.test_set.init_args.root=nope"], "c": []}
    suite = _write_suite(tmp_path / "suite.yaml", runs, tmp_path / "comparison")
    flags = [*SMALL, "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")]
    code, err = cli("test", "--config", str(suite), *flags, "--jobs=2")
    assert_one_error(code, err, "image folder 'nope' does not exist")  # the child's line, once
    log = tmp_path / "runs" / "demo_pinv" / "broken.log"
    assert f"[suite] run broken failed (exit 2); its output: {log}" in cli.out
    assert "image folder 'nope' does not exist" in log.read_text()
    assert not (tmp_path / "comparison").exists()  # stopped: no comparison
    code, err = cli("test", "--config", str(suite), *flags, "--jobs", "0")
    assert_one_error(code, err, "--jobs", "≥ 1")
    bad = tmp_path / "bad.yaml"
    bad.write_text("suite:\n  jobs: two\n  runs: {a: []}\n")
    with pytest.raises(ValueError, match=r"suite\.jobs must be a whole number"):
        load_suite(bad)


def test_a_signal_to_a_suite_stops_its_child_runs(tmp_path):
    """SIGTERM to ``sample.py`` running a suite with ``--jobs 2``: the suite exits 143 and its
    child run's process is gone (no orphan computing on)."""
    slow = ["--model=lit_restore.modules.ZeroShotRestoration", "--model.init_args.prior="
            "lit_restore.priors.PowerLawGaussianPrior", "--model.init_args.sampler="
            "lit_restore.samplers.DPS", "--model.init_args.sampler.init_args.steps=100000"]  # fmt: skip
    runs = {"a": slow, "b": slow}
    suite = _write_suite(tmp_path / "suite.yaml", runs, tmp_path / "comparison")
    process = subprocess.Popen(
        entry_command("sample.py", "test", "--config", suite, *SMALL, "--jobs", "2",
                      "--trainer.logger.init_args.save_dir", tmp_path / "runs"),
        cwd=ROOT, env=entry_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    child = None
    for line in process.stdout:  # the suite announces its child before running its own entry
        found = re.search(r"run b started in process (\d+)", line)
        if found:
            child = int(found.group(1))
            break
    assert child is not None, process.communicate()[0][-2000:]
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    out = process.communicate(timeout=120)[0]
    assert process.returncode == 143, out[-2000:]
    with pytest.raises(ProcessLookupError):  # reaped by the suite: no such process any more
        os.kill(child, 0)


def test_protocol_suite_without_weights_reports_once(cli, tmp_path):
    """The DDPG protocol suite on a machine without the prior: one error line, not 15."""
    code, err = cli(
        "test", "--config", "configs/experiment/suite_ddpg_protocol_celebahq256_sr4.yaml",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
    )  # fmt: skip
    assert_one_error(code, err, "ddim-celebahq256")
    assert not (tmp_path / "runs").exists()
