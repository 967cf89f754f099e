"""Suites: one command that runs several methods as separate runs, then compares them.

A suite file is a YAML with a single top-level ``suite`` key::

    suite:
      base: [configs/experiment/demo_base.yaml]   # configs shared by every run
      runs:                                       # run name -> its own extra configs/flags
        safari: [configs/sampler/demo_safari.yaml]
        dps:    [configs/sampler/demo_dps.yaml, --model.init_args.seed, "1"]
      compare: runs/demo/comparison               # where the comparison table + figure go

``python sample.py test --config SUITE.yaml [flags]`` runs, for every entry,
``sample.py test --config BASE... --config RUN... [flags] --trainer.logger.init_args.version NAME``
in its own process (so each run may use DDP), then ``python -m lit_restore.evaluation.compare
--allow-mismatch`` over the run directories (runs on different data, e.g. a σ_y sweep, are
labelled by data group). A run that fails does not stop the others; the command exits non-zero at the end
and says which failed. Paths in the suite are relative to the current directory.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class Suite:
    base: list[str]
    runs: dict[str, list[str]]
    compare: str | None = None
    source: Path = field(default_factory=Path)


def load_suite(path: str | Path) -> Suite | None:
    """Parse ``path`` as a suite; ``None`` when it is an ordinary config."""
    path = Path(path)
    if not path.is_file() or path.suffix not in {".yaml", ".yml"}:
        return None
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or "suite" not in data:
        return None
    if set(data) != {"suite"}:
        raise ValueError(f"{path}: a suite file holds only the 'suite' key, got {sorted(data)}")
    spec = data["suite"] or {}
    runs = spec.get("runs") or {}
    if not runs:
        raise ValueError(f"{path}: suite.runs is empty; list run names with their configs")
    bad = [name for name in runs if not str(name).replace("_", "").replace("-", "").isalnum()]
    if bad:
        raise ValueError(f"{path}: run names must be letters, digits, '-' or '_': {bad}")
    return Suite(
        base=[str(p) for p in spec.get("base") or []],
        runs={str(k): [str(a) for a in (v or [])] for k, v in runs.items()},
        compare=spec.get("compare"),
        source=path,
    )


def _as_args(items: list[str]) -> list[str]:
    """Config paths become ``--config PATH``; anything starting with ``--`` is passed as is."""
    args: list[str] = []
    expect_value = False
    for item in items:
        if expect_value:
            args.append(item)
            expect_value = False
        elif item.startswith("--"):
            args.append(item)
            expect_value = "=" not in item
        else:
            args += ["--config", item]
    return args


def find_suite(argv: list[str]) -> tuple[Suite, list[str]] | None:
    """If ``argv`` names a suite file with ``--config``/``-c``, return it and the other args."""
    for i, arg in enumerate(argv[:-1]):
        if arg in {"--config", "-c"}:
            suite = load_suite(argv[i + 1])
            if suite is not None:
                return suite, argv[:i] + argv[i + 2 :]
    return None


def run_suite(script: str, suite: Suite, argv: list[str]) -> int:
    """Run every entry of ``suite`` through ``script`` (e.g. sample.py), then compare."""
    if not argv or argv[0].startswith("-"):
        raise ValueError("put the subcommand first: python sample.py test --config SUITE.yaml")
    subcommand, flags = argv[0], argv[1:]
    run_dirs: list[str] = []
    failed: list[str] = []
    for name, extra in suite.runs.items():
        cmd = [sys.executable, script, subcommand, *_as_args(suite.base), *_as_args(extra), *flags]
        cmd += ["--trainer.logger.init_args.version", name]
        print(f"[suite] run {name}: {' '.join(cmd[1:])}", flush=True)
        result = subprocess.run(cmd, check=False)
        if result.returncode != 0:
            failed.append(name)
            continue
        run_dirs.append(_run_dir(cmd, name))
    if suite.compare and len(run_dirs) >= 1:
        cmp = [
            sys.executable,
            "-m",
            "lit_restore.evaluation.compare",
            *run_dirs,
            "--out",
            suite.compare,
            "--allow-mismatch",  # a suite may sweep the data (σ_y): runs are labelled by group
        ]
        print(f"[suite] compare: {' '.join(cmp[1:])}", flush=True)
        if subprocess.run(cmp, check=False).returncode != 0:
            failed.append("compare")
    if failed:
        print(f"[suite] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _run_dir(cmd: list[str], version: str) -> str:
    """The run directory ``save_dir/name/version`` of a run, read from its resolved config."""
    probe = [*cmd[:3], *cmd[3:], "--print_config"]
    out = subprocess.run(probe, check=True, capture_output=True, text=True).stdout
    config = yaml.safe_load(out)
    logger = (config.get("trainer") or {}).get("logger") or {}
    if isinstance(logger, list):
        logger = logger[0] if logger else {}
    init = logger.get("init_args") or {}
    save_dir = init.get("save_dir", "lightning_logs")
    name = init.get("name") or ""
    return str(Path(save_dir) / name / version)
