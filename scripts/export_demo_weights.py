"""Export a training run of a shipped demo recipe to its ``weights/*.safetensors`` file.

    python scripts/export_demo_weights.py prior     # runs/prior_demo_adm → weights/prior_demo_adm.safetensors
    python scripts/export_demo_weights.py resshift  # runs/resshift_demo_sr4 → weights/resshift_demo_sr4.safetensors
    python scripts/export_demo_weights.py sinsr     # runs/sinsr_demo_sr4 → weights/sinsr_demo_sr4.safetensors

What is written:

* the network's **EMA** weights at the run's last step (``checkpoints/last.ckpt``, which
  :class:`lit_restore.training.TrainingCheckpoint` leaves at the final step) — Lightning's
  ``EMAWeightAveraging`` stores them as the checkpoint's ``state_dict`` (the live weights go to
  ``current_model_state``) — without the module prefix (``net.`` / ``network.``), i.e. exactly the
  keys of the bare network, so the file loads strictly into :class:`lit_restore.nn.ADMUNet` /
  :class:`lit_restore.nn.SwinUNet`;
* safetensors metadata: the recipe path, the global step, and the first training losses of the
  run (``train/loss`` at steps 0, 1, 2, …, read from the run's TensorBoard event files under
  ``lightning_logs/``, every version, so a resumed run counts), which
  ``tests/test_shipped_weights.py`` compares with a fresh few-step run of the same recipe;
* ``bench/results/<name>_loss.csv``: the training curve (mean ``train/loss`` per 50 steps).

It prints the file's SHA-256, which ``lit_restore.weights.SHIPPED_SHA256`` records. Writes go
through a temporary file and ``os.replace`` (a crash leaves the old file).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: recipe name → (config, run directory, module prefix of the network, weights file)
RECIPES = {
    "prior": (
        "configs/experiment/prior_demo_adm.yaml",
        "runs/prior_demo_adm",
        "net.",
        "weights/prior_demo_adm.safetensors",
    ),
    "resshift": (
        "configs/experiment/resshift_demo_sr4.yaml",
        "runs/resshift_demo_sr4",
        "network.",
        "weights/resshift_demo_sr4.safetensors",
    ),
    # the SinSR student: ``network.`` holds the student only (the teacher is outside the state dict)
    "sinsr": (
        "configs/experiment/sinsr_demo_sr4.yaml",
        "runs/sinsr_demo_sr4",
        "network.",
        "weights/sinsr_demo_sr4.safetensors",
    ),
}
FIRST_LOSSES = 4  # how many leading losses go into the metadata
CURVE_BIN = 50  # steps per point of the exported training curve


def read_losses(log_dir: Path) -> dict[int, float]:
    """``step → train/loss`` from every TensorBoard event file under ``log_dir`` (versions in
    order, so a step logged again by a resumed run takes its later value)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    losses: dict[int, float] = {}
    versions = sorted(
        (d for d in log_dir.glob("version_*") if d.is_dir()), key=lambda d: int(d.name[8:])
    )
    for version in versions:
        events = EventAccumulator(str(version), size_guidance={"scalars": 0}).Reload()
        if "train/loss" in events.Tags()["scalars"]:
            losses.update({e.step: e.value for e in events.Scalars("train/loss")})
    if not losses:
        raise SystemExit(f"error: no train/loss logged under {log_dir}")
    return losses


def write_curve(losses: dict[int, float], path: Path) -> None:
    """Mean loss per :data:`CURVE_BIN` steps (first and last step of each bin) as CSV."""
    steps = sorted(losses)
    rows = []
    for start in range(0, steps[-1] + 1, CURVE_BIN):
        chunk = [s for s in steps if start <= s < start + CURVE_BIN]
        if chunk:
            rows.append((chunk[0], chunk[-1], sum(losses[s] for s in chunk) / len(chunk)))
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["first_step", "last_step", "mean_train_loss"])
        w.writerows((a, b, f"{m:.6f}") for a, b, m in rows)
    os.replace(tmp, path)


def export(name: str, run_dir: Path | None = None) -> Path:
    from safetensors.torch import save_file

    from lit_restore.checkpoints import extract_state_dict, read_checkpoint

    config, default_run, prefix, out = RECIPES[name]
    run = ROOT / default_run if run_dir is None else run_dir
    ckpt = read_checkpoint(run / "checkpoints" / "last.ckpt")
    state = extract_state_dict(ckpt, prefix=prefix)  # the EMA weights (see the module docstring)
    losses = read_losses(run / "lightning_logs")
    first = [losses[s] for s in range(FIRST_LOSSES)]
    meta = {
        "recipe": config,
        "global_step": str(ckpt["global_step"]),
        "first_losses": json.dumps(first),
        "weights": "EMA (lightning EMAWeightAveraging)",
    }
    target = ROOT / out
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=meta)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # safetensors writes 0600; a shipped file follows the umask
    os.replace(tmp, target)

    curve = ROOT / "bench" / "results" / f"{Path(out).stem}_loss.csv"
    write_curve(losses, curve)
    sha = hashlib.sha256(target.read_bytes()).hexdigest()
    print(
        f"wrote {target} (step {meta['global_step']}, {len(state)} tensors, sha256 {sha}) and {curve}"
    )
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument(
        "--run", type=Path, default=None, help="run directory (default: the recipe's)"
    )
    args = parser.parse_args()
    export(args.recipe, args.run)


if __name__ == "__main__":
    main()
