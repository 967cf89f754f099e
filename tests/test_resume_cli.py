"""``sample.py test`` rerun into the same run directory, as a user types it (subprocesses).

The README's demo (DPS over the analytic Gaussian prior, SR×4 + noise) shrunk to 64 px and 5
steps: an interrupted run (``--trainer.limit_test_batches 2``: 4 of the 8 images) rerun with a
changed guidance scale is refused with one line and leaves every file as it was; rerun with the
same settings it restores only the other 4 images, and the run then equals an uninterrupted one.
A full disk ends the run with one line, too. A run killed (SIGKILL) while the background writer
is half-way through an image — the restored PNG written, the measurement not — counts only the
images written whole, and its rerun equals the uninterrupted run.
"""

from __future__ import annotations

import csv
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "--config", "configs/experiment/demo_base.yaml", "--config", "configs/sampler/dps_demo.yaml",
    "--model.init_args.sampler.init_args.steps", "5", "--data.init_args.crop_size", "64",
    "--data.init_args.batch_size", "2", "--trainer.enable_progress_bar", "false",
]  # fmt: skip


def _sample(tmp: Path, version: str, *flags: str, prelude: str = "") -> subprocess.CompletedProcess:
    args = ["test", *SMALL, "--trainer.logger.init_args.save_dir", str(tmp)]
    args += ["--trainer.logger.init_args.version", version, *flags]
    code = f"{prelude}\nimport runpy, sys\nsys.argv = ['sample.py', *{args!r}]\n"
    code += "runpy.run_path('sample.py', run_name='__main__')"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("LIT_RESTORE_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=env,
    )  # fmt: skip


def _files(run_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file()
    }


def _table(run_dir: Path) -> list[dict]:
    with open(run_dir / "per_image_test.csv") as f:
        return [{k: v for k, v in r.items() if k != "seconds_per_image"} for r in csv.DictReader(f)]


def _error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def full_dir(tmp_path_factory) -> Path:
    """The uninterrupted run."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    full = _sample(tmp, "full")
    assert full.returncode == 0, full.stderr[-3000:]
    return tmp / "demo" / "full"


def _same_as_uninterrupted(run_dir: Path, full_dir: Path) -> None:
    assert _table(run_dir) == _table(full_dir)
    for kind in ("restored", "measurement", "reference"):
        pngs = {p.name: p.read_bytes() for p in (run_dir / kind).glob("*.png")}
        assert pngs == {p.name: p.read_bytes() for p in (full_dir / kind).glob("*.png")}
        assert len(pngs) == 8


def test_rerun_refuses_changes_and_resumes_to_the_uninterrupted_result(tmp_path, full_dir):
    part = _sample(tmp_path, "part", "--trainer.limit_test_batches", "2")
    assert part.returncode == 0, part.stderr[-3000:]
    run_dir = tmp_path / "demo" / "part"
    assert len(_table(run_dir)) == 4

    before = _files(run_dir)
    changed = _sample(tmp_path, "part", "--model.init_args.sampler.init_args.scale", "5.0")
    assert changed.returncode == 2
    (line,) = _error_lines(changed)
    assert "RunMismatchError" in line and "model.sampler.scale 3.0 -> 5.0" in line
    assert "--trainer.logger.init_args.version" in line and "LIT_RESTORE_OVERWRITE=1" in line
    assert _files(run_dir) == before  # config.yaml, CSV, summary, grid, PNGs: all untouched

    resumed = _sample(tmp_path, "part")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming: 4 image(s) already done" in resumed.stdout
    _same_as_uninterrupted(run_dir, full_dir)


def test_kill_during_background_writing_counts_only_whole_images(tmp_path, full_dir):
    """SIGKILL while the worker writes image 2 (first of batch 1): its restored PNG is on disk,
    its measurement PNG not, and the loop is already restoring batch 2 (the writer waits for it:
    the kill hits the overlap the background writer exists for)."""
    name = _table(full_dir)[2]["name"]
    prelude = (
        "import os, signal, time\n"
        "from pathlib import Path\n"
        "import lit_restore.evaluation.writer as W, lit_restore.modules.zero_shot as Z\n"
        "started = [0]\n"
        "restore = Z.ZeroShotRestoration.restore\n"
        "def counting(self, batch):\n"
        "    started[0] += 1\n"
        "    return restore(self, batch)\n"
        "Z.ZeroShotRestoration.restore = counting\n"
        "save = W.save_png\n"
        "def killing(image, path):\n"
        f"    if Path(path).parent.name == 'measurement' and Path(path).stem == {name!r}:\n"
        "        deadline = time.time() + 120\n"
        "        while started[0] < 3 and time.time() < deadline:\n"
        "            time.sleep(0.01)\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return save(image, path)\n"
        "W.save_png = killing"
    )
    killed = _sample(tmp_path, "killed", prelude=prelude)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run_dir = tmp_path / "demo" / "killed"
    assert (run_dir / "restored" / f"{name}.png").is_file()  # half done ...
    assert not (run_dir / "measurement" / f"{name}.png").exists()
    with open(run_dir / "per_image_test.rank0.part.csv") as f:  # ... and not counted
        assert [int(r["index"]) for r in csv.DictReader(f)] == [0, 1]

    resumed = _sample(tmp_path, "killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming: 2 image(s) already done" in resumed.stdout
    _same_as_uninterrupted(run_dir, full_dir)


def test_full_disk_ends_the_run_with_one_line(tmp_path):
    """ENOSPC on the first result file (simulated: ``os.replace`` fails as on a full disk)."""
    prelude = (
        "import errno, os\n"
        "def full(*a, **k):\n"
        "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
        "os.replace = full"
    )
    proc = _sample(tmp_path, "full", prelude=prelude)
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = _error_lines(proc)
    assert "No space left on device" in line and "--trainer.logger.init_args.save_dir" in line
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "demo" / "full").rglob("*.tmp"))
