"""The SLURM templates (``scripts/slurm/*.sbatch``) run as SLURM would run them, minus SLURM.

Each script is executed by bash with the environment SLURM gives a batch job (job id, node list,
nodes, tasks per node, array index/count) and stand-ins for ``srun`` (runs its command with
``--print_config`` appended: the full parse of the command line and its configs, no run) and
``scontrol`` (the node list). So a template whose command line no longer parses — a renamed
option, a moved config — fails here, and the values the script derives from SLURM (world size,
fixed run version, shard ``i/N``, ``--ckpt_path last``) are checked in the resolved config.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SLURM = {
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NODELIST": "node[1-2]",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_NTASKS_PER_NODE": "4",
    "SLURM_CPUS_PER_TASK": "1",
}


def _run_template(tmp_path: Path, name: str, **env: str) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "srun").write_text('#!/bin/sh\nexec "$@" --print_config\n')
    (bin_dir / "scontrol").write_text("#!/bin/sh\necho node1\necho node2\n")
    # a wrapper, not a link: a venv's interpreter finds its packages from its own path
    (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    for f in ("srun", "scontrol", "python"):
        (bin_dir / f).chmod(0o755)
    full_env = {**os.environ, **SLURM, **env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    full_env.pop("LIT_RESTORE_DEBUG", None)
    proc = subprocess.run(
        ["bash", f"scripts/slurm/{name}"], cwd=ROOT, env=full_env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return yaml.safe_load(proc.stdout)


def test_train_template_is_multi_node_ddp_resuming_from_last(tmp_path):
    config = _run_template(tmp_path, "train.sbatch")
    trainer = config["trainer"]
    # devices arrives as the string "4": Lightning reads a digit string as a device count
    assert (trainer["num_nodes"], str(trainer["devices"])) == (2, "4")
    assert trainer["strategy"] == "ddp" and trainer["accelerator"] == "gpu"
    assert config["ckpt_path"] == "last"
    callbacks = [c["class_path"] for c in trainer["callbacks"]]
    assert "lit_restore.training.TrainingCheckpoint" in callbacks  # writes last.ckpt on SIGTERM


def test_eval_template_keeps_one_run_dir_across_requeues(tmp_path):
    config = _run_template(tmp_path, "eval.sbatch")
    trainer = config["trainer"]
    assert (trainer["num_nodes"], str(trainer["devices"])) == (2, "4")
    assert trainer["logger"]["init_args"]["version"] == "slurm_4242"  # = the requeued job's
    assert config["data"]["init_args"].get("shard") is None


@pytest.mark.parametrize("task", [0, 7])
def test_array_template_runs_shard_i_of_n_into_one_run_dir(tmp_path, task):
    config = _run_template(
        tmp_path, "eval_array.sbatch", SLURM_ARRAY_JOB_ID="77", SLURM_ARRAY_TASK_ID=str(task),
        SLURM_ARRAY_TASK_COUNT="8",
    )  # fmt: skip
    assert config["data"]["init_args"]["shard"] == f"{task}/8"
    assert config["trainer"]["logger"]["init_args"]["version"] == "array_77"
    assert str(config["trainer"]["devices"]) == "1"
