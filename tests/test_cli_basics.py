"""Entry points as a user types them: help, errors, suites."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lit_restore.suite import _as_args, find_suite, load_suite

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("script", "subcommands", "absent"),
    [
        ("train.py", ["fit", "validate", "test"], "predict"),
        ("sample.py", ["test", "predict"], "fit"),
    ],
)
def test_help_lists_subcommands(script, subcommands, absent):
    out = _run(script, "--help")
    assert out.returncode == 0, out.stderr
    for sub in subcommands:
        assert sub in out.stdout
    assert f"{{{','.join(subcommands)}}}" in out.stdout
    assert absent not in out.stdout.split("subcommands:")[0]


def test_subcommand_help_lists_model_and_data_options():
    out = _run("sample.py", "test", "--help")
    assert out.returncode == 0, out.stderr
    for option in ("--model", "--data", "--trainer.devices", "--ckpt_path"):
        assert option in out.stdout


def test_unknown_option_and_missing_config_are_one_clear_error():
    out = _run("sample.py", "test", "--no_such_option", "1")
    assert out.returncode != 0
    assert "unrecognized arguments: --no_such_option" in out.stderr
    assert "Traceback" not in out.stderr
    out = _run("sample.py", "test", "--config", "does/not/exist.yaml")
    assert out.returncode != 0
    assert "does/not/exist.yaml" in out.stderr and "Traceback" not in out.stderr


def test_suite_file_parsing(tmp_path):
    plain = tmp_path / "plain.yaml"
    plain.write_text("model: {}\n")
    assert load_suite(plain) is None
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(
        "suite:\n  base: [a.yaml]\n  runs:\n    one: [b.yaml, --x, '1']\n    two: []\n"
        "  compare: out\n"
    )
    suite = load_suite(suite_file)
    assert suite.base == ["a.yaml"] and list(suite.runs) == ["one", "two"]
    assert _as_args(suite.runs["one"]) == ["--config", "b.yaml", "--x", "1"]
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
