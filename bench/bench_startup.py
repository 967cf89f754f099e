"""Start-up and suite overhead of the command-line entry points (wall and CPU seconds).

Each case is one process, timed from outside (wall clock; CPU = user + system of the child),
``--reps`` times, interleaved (case A, case B, …, then again), so a load change on a shared
machine hits every case alike; the table reports medians.

- ``pinv_cli`` — ``sample.py test --config configs/experiment/demo_pinv.yaml``: the 8 demo images
  at 256 px, x̂ = A⁺y, metrics, PNGs, grid, TensorBoard.
- ``pinv_bare`` — the same work without the CLI: this script builds the config's objects
  directly from their ``class_path`` / ``init_args`` (no LightningCLI, no jsonargparse) and calls
  ``Trainer.test``. The difference to ``pinv_cli`` is the CLI's own cost.
- ``demo_suite`` — ``sample.py test --config configs/experiment/demo_gaussian.yaml`` (SaFaRI and DPS, then
  the comparison) at ``--steps`` steps; ``demo_one`` — one of its runs (DPS) on its own.
- ``demo_suite_inline`` — the suite with its evaluation callbacks' ``background: false`` (scores,
  PNGs and CSV rows written in the loop instead of on the background writer); ``demo_suite_b2``
  and ``demo_suite_b2_inline`` — both at ``batch_size: 2`` (4 batches per run: a batch's writing
  can overlap the next one's restoration; at the demo's batch 8 each run is one batch).

``--tree DIR`` (repeatable) times another checkout too (e.g. ``git worktree add /tmp/old
<commit>``), each case run with that checkout's code (``PYTHONPATH=DIR``, cwd ``DIR``), outputs
under a temporary directory. ``--json`` writes every sample.

    python bench/bench_startup.py --reps 5 --steps 20 [--tree /tmp/old] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]


def _build(spec: Any) -> Any:
    """Instantiate a ``class_path`` / ``init_args`` tree (the bare path: no jsonargparse)."""
    if isinstance(spec, list):
        return [_build(v) for v in spec]
    if not isinstance(spec, dict):
        return spec
    if "class_path" in spec:
        module, _, name = spec["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return cls(**{k: _build(v) for k, v in (spec.get("init_args") or {}).items()})
    return {k: _build(v) for k, v in spec.items()}


def bare_pinv(save_dir: str) -> None:
    """``configs/experiment/demo_pinv.yaml`` run without the CLI (what the CLI would build)."""
    import lightning as L
    import yaml

    cfg = yaml.safe_load(Path("configs/experiment/demo_pinv.yaml").read_text())
    L.seed_everything(cfg["seed_everything"])
    trainer_cfg = dict(cfg["trainer"])
    trainer_cfg["logger"]["init_args"]["save_dir"] = save_dir
    trainer = L.Trainer(
        **_build(trainer_cfg), use_distributed_sampler=False, enable_progress_bar=False
    )
    datamodule = _build(cfg["data"])
    model = _build(cfg["model"])
    model.attach_measurement(datamodule.operator, datamodule.noise)
    trainer.test(model, datamodule=datamodule, verbose=False)


def _inline_callbacks(out: Path) -> Path:
    """A config that lists the demo's evaluation callbacks with ``background: false``."""
    import yaml

    callbacks = yaml.safe_load((HERE / "configs/experiment/demo_base.yaml").read_text())["trainer"][
        "callbacks"
    ]
    for cb in callbacks:
        cb.setdefault("init_args", {})["background"] = False
    path = out / "inline_callbacks.yaml"
    path.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    return path


def _cases(steps: int, out: Path) -> dict[str, list[str]]:
    """Each case writes under its own directory: a run directory that already holds results
    would resume (and skip the work)."""
    quiet = ["--trainer.enable_progress_bar", "false"]
    base = "base: [configs/experiment/demo_base.yaml"
    inline_base = f"{base}, {_inline_callbacks(out)}"

    def suite(case: str, inline: bool = False) -> str:
        """demo_gaussian.yaml with its comparison under this case's directory (and the callbacks
        in the loop when ``inline``)."""
        text = (HERE / "configs/experiment/demo_gaussian.yaml").read_text()
        text = text.replace("runs/demo_gaussian/comparison", str(out / case / "comparison"))
        if inline:
            assert base in text, "the suite's base list changed: update bench_startup"
            text = text.replace(base, inline_base)
        path = out / f"{case}.yaml"
        path.write_text(text)
        return str(path)

    one_run = ["--config", "configs/experiment/demo_base.yaml", "--config", "configs/sampler/dps_demo.yaml"]  # fmt: skip
    b2 = ["--data.init_args.batch_size", "2"]
    step_flag = ["--model.init_args.sampler.init_args.steps", str(steps)]

    def save(case: str) -> list[str]:
        return ["--trainer.logger.init_args.save_dir", str(out / case)]

    return {
        "pinv_cli": ["sample.py", "test", "--config", "configs/experiment/demo_pinv.yaml", *save("pinv_cli"), *quiet],
        "pinv_bare": [str(Path(__file__).resolve()), "--bare-pinv", str(out / "pinv_bare")],
        "demo_suite": ["sample.py", "test", "--config", suite("demo_suite"), *step_flag, *save("demo_suite"), *quiet],
        "demo_suite_inline": ["sample.py", "test", "--config", suite("demo_suite_inline", True), *step_flag, *save("demo_suite_inline"), *quiet],
        "demo_suite_b2": ["sample.py", "test", "--config", suite("demo_suite_b2"), *step_flag, *b2, *save("demo_suite_b2"), *quiet],
        "demo_suite_b2_inline": ["sample.py", "test", "--config", suite("demo_suite_b2_inline", True), *step_flag, *b2, *save("demo_suite_b2_inline"), *quiet],
        "demo_one": ["sample.py", "test", *one_run, *step_flag, *save("demo_one"), *quiet,
                     "--trainer.logger.init_args.version", "dps"],
    }  # fmt: skip


def _time(cmd: list[str], cwd: Path) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(cwd), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} in {cwd} failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--steps", type=int, default=20, help="sampler steps of the demo cases")
    p.add_argument("--tree", action="append", default=[], help="another checkout to time too")
    p.add_argument("--cases", nargs="*", default=None, help="subset of the cases")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--bare-pinv", metavar="SAVE_DIR", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.bare_pinv:
        bare_pinv(args.bare_pinv)
        return 0
    trees = {"this": HERE, **{Path(t).name: Path(t).resolve() for t in args.tree}}
    samples: dict[str, dict[str, list[tuple[float, float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for label, tree in trees.items():
                out = Path(tmp) / label / str(rep)
                out.mkdir(parents=True)
                for case, cmd in _cases(args.steps, out).items():
                    if args.cases and case not in args.cases:
                        continue
                    if case == "pinv_bare" and label != "this":
                        continue  # the floor is the same work whichever checkout
                    t = _time(cmd, tree)
                    samples.setdefault(label, {}).setdefault(case, []).append(t)
                    print(
                        f"rep {rep} {label:>8} {case:<10} wall {t[0]:6.2f} s  cpu {t[1]:6.2f} s",
                        flush=True,
                    )
    print("\n| checkout | case | wall s (median) | CPU s (median) |\n|---|---|---|---|")
    for label, cases in samples.items():
        for case, ts in cases.items():
            wall = statistics.median(t[0] for t in ts)
            cpu = statistics.median(t[1] for t in ts)
            print(f"| {label} | {case} | {wall:.2f} | {cpu:.2f} |")
    if args.json:
        args.json.write_text(
            json.dumps({"steps": args.steps, "reps": args.reps, "samples": samples}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
