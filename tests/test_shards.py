"""Job-array shards (``data.init_args.shard: i/N``) and their merge, as a user runs them.

* :class:`~lit_restore.data.sharding.Shard`: the N shards of any dataset are disjoint and cover
  every index once (with ``on_bad_image: skip`` too); bad specs are one-line errors.
* CLI (subprocesses, the README's DPS demo shrunk to 64 px and 5 steps, FID from small random
  features, batches of one image — which images share a batch changes no number, but the batch
  *size* changes the last bits of batched float kernels: measured 4e-17 in an SSIM and a relative
  2.6e-8 in the FID of random conv features between batches of 1 and 2, and a resumed or sharded
  run re-batches the images it has left): 2 shards run *at the same time into one run dir*, and 2 shards run into two dirs,
  each merged with ``python -m lit_restore.evaluation.merge``, equal one unsharded run — the
  per-image CSV (all but the measured cost columns), the summary's metrics (FID from the stored
  features included, to the last bit: the same rows and features in the same order through the
  same ``summarize``), the fingerprint and every PNG. An unsharded rerun into the merged dir
  finds every image done.
* A 2-process DDP evaluation killed part-way (SIGKILL of every rank after rank 0 restored 2
  images) and rerun with the same command resumes and then equals the one-process run.
* The merge refuses, in one line naming the shard: a missing shard, an unfinished one (part
  files of a killed run), shards made with other settings, a row outside its shard.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lit_restore.data import DeadLeaves, RestorationDataModule
from lit_restore.data.sharding import Shard
from lit_restore.evaluation.merge import MergeError, merge
from lit_restore.utils.tables import COST_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
FID_CALLBACKS = """\
trainer:
  callbacks:
    - class_path: lit_restore.evaluation.RestorationMetrics
      init_args:
        metrics: [psnr, ssim]
        fid: true
        fid_features:
          class_path: metrics_fakes.RandomFeatures
    - class_path: lit_restore.evaluation.RestoredImageWriter
      init_args:
        save_measurement: true
        save_reference: true
"""


# ----------------------------------------------------------------------------- Shard
@pytest.mark.parametrize("n, count", [(0, 3), (1, 4), (7, 2), (8, 2), (10, 3), (5, 7)])
def test_shards_are_disjoint_and_cover_every_index_once(n, count):
    shards = [Shard(i, count).keep(range(n)) for i in range(count)]
    flat = sorted(k for s in shards for k in s)
    assert flat == list(range(n))  # complete cover, no index twice
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1  # balanced


def test_shard_spec_parsing_and_errors():
    assert Shard.parse("3/8") == Shard(3, 8) and str(Shard(3, 8)) == "3/8"
    assert Shard.parse(" 0 / 1 ") == Shard(0, 1)
    assert Shard.parse(None) is None and Shard.parse("") is None
    assert Shard(1, 4).tag == "shard1of4"
    for bad in ("2/2", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(ValueError, match=r"data\.init_args\.shard"):
            Shard.parse(bad)


def test_datamodule_shards_only_test_and_predict():
    sets = {"train_set": DeadLeaves(10, 16), "test_set": DeadLeaves(10, 16)}
    dms = [
        RestorationDataModule(**sets, crop_size=16, batch_size=2, shard=f"{i}/3") for i in range(3)
    ]
    tests = [dm.positions("test") for dm in dms]
    assert tests == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert all(dm.positions("predict") == t for dm, t in zip(dms, tests))
    assert all(dm.positions("train") == list(range(10)) for dm in dms)
    batch_indices = [int(i) for b in dms[1].test_dataloader() for i in b["index"]]
    assert batch_indices == [1, 4, 7]
    assert dms[0].shard == "0/3" and RestorationDataModule(**sets).shard is None


def test_shard_with_skipped_images_still_covers_the_usable_ones(tmp_path):
    from PIL import Image

    from lit_restore.data import ImageFolder

    for i in range(7):  # images 2 and 5 are smaller than the crop
        side = 8 if i in (2, 5) else 16
        Image.new("RGB", (side, side), (i * 30, 0, 0)).save(tmp_path / f"im{i}.png")
    usable = []
    for k in range(2):
        dm = RestorationDataModule(
            test_set=ImageFolder(tmp_path), crop_size=16, on_bad_image="skip", shard=f"{k}/2"
        )
        with pytest.warns(UserWarning, match="left out 1 of"):
            usable.append(dm.positions("test"))
    assert usable == [[0, 4, 6], [1, 3]]


# ----------------------------------------------------------------------------- CLI: merge == 1 run
def _sample(
    save_dir: Path, version: str, *flags: str, wait: bool = True, kill_after: int | None = None
):
    config = save_dir / "fid_callbacks.yaml"
    config.write_text(FID_CALLBACKS)
    if kill_after is not None:  # the same callbacks + one that kills the run
        config = save_dir / "kill_callbacks.yaml"
        config.write_text(
            FID_CALLBACKS + "    - class_path: metrics_fakes.KillAfterImages\n"
            f"      init_args:\n        images: {kill_after}\n"
        )
    args = [
        sys.executable, "sample.py", "test",
        "--config", "configs/experiment/demo_base.yaml",
        "--config", "configs/sampler/dps_demo.yaml", "--config", str(config),
        "--model.init_args.sampler.init_args.steps", "5", "--data.init_args.crop_size", "64",
        "--data.init_args.batch_size", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(save_dir),
        "--trainer.logger.init_args.version", version, *flags,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    env.pop("LIT_RESTORE_DEBUG", None)
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=kill_after is not None,  # its SIGKILL takes its process group only
    )  # fmt: skip
    if not wait:
        return proc
    return _finish(proc, -signal.SIGKILL if kill_after is not None else 0)


def _finish(proc: subprocess.Popen, expect: int = 0) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == expect, err[-3000:]
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _merge(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lit_restore.evaluation.merge", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _table(run_dir: Path) -> list[dict]:
    """The per-image CSV without the cost columns (wall time/memory are measured per job)."""
    with open(run_dir / "per_image_test.csv") as f:
        return [{k: v for k, v in r.items() if k not in COST_COLUMNS} for r in csv.DictReader(f)]


def _metrics(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "summary_test.json").read_text())["metrics"]
    return {k: v for k, v in metrics.items() if k not in COST_COLUMNS}


def _pngs(run_dir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for kind in ("restored", "measurement", "reference")
        for p in sorted((run_dir / kind).glob("*.png"))
    }


def _assert_same_run(merged: Path, full: Path) -> None:
    assert len(_table(full)) == 8
    assert _table(merged) == _table(full)
    assert "fid" in _metrics(full)
    assert _metrics(merged) == _metrics(full)
    assert (merged / "fingerprint_test.json").read_bytes() == (
        full / "fingerprint_test.json"
    ).read_bytes()
    assert _pngs(merged) == _pngs(full) and len(_pngs(full)) == 24


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """One unsharded run (``full``), two shards at once into one dir (``shared``), two shards
    into two dirs (``a``, ``b``)."""
    tmp = tmp_path_factory.mktemp("shards")
    _sample(tmp, "full")
    procs = [_sample(tmp, "shared", "--data.init_args.shard", f"{i}/2", wait=False) for i in (0, 1)]
    for p in procs:
        _finish(p)
    _sample(tmp, "a", "--data.init_args.shard", "0/2")
    _sample(tmp, "b", "--data.init_args.shard", "1/2")
    return tmp / "demo"


def test_two_shards_in_one_dir_merged_equal_one_run(runs):
    shared = runs / "shared"
    assert not (shared / "per_image_test.csv").exists()  # only the shards' records so far
    unmerged = subprocess.run(
        [sys.executable, "-m", "lit_restore.evaluation.compare", str(shared)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert unmerged.returncode == 2 and "merge them first" in unmerged.stderr
    assert len(_table_of(shared / "per_image_test.shard0of2.csv")) == 4
    done = _merge(str(shared))
    assert done.returncode == 0, done.stderr
    assert "8 images merged" in done.stdout
    _assert_same_run(shared, runs / "full")


def test_two_shards_in_two_dirs_merged_into_out_equal_one_run(runs, tmp_path):
    no_out = _merge(str(runs / "a"), str(runs / "b"))
    assert no_out.returncode == 2 and no_out.stderr.startswith("error:")
    assert "--out" in no_out.stderr
    out = tmp_path / "merged"
    done = _merge(str(runs / "a"), str(runs / "b"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    _assert_same_run(out, runs / "full")
    # the merged dir is a finished run: an unsharded rerun into it restores nothing
    save_dir = tmp_path / "rerun"
    shutil.copytree(out, save_dir / "demo" / "merged")
    rerun = _sample(save_dir, "merged")
    assert "all 8 image(s) done already" in rerun.stdout
    _assert_same_run(save_dir / "demo" / "merged", runs / "full")


def test_ddp_evaluation_killed_and_resumed_equals_one_run(runs, tmp_path):
    ddp = ["--trainer.devices", "2", "--trainer.strategy", "ddp"]
    _sample(tmp_path, "ddp", *ddp, kill_after=2)
    run_dir = tmp_path / "demo" / "ddp"
    assert not (run_dir / "per_image_test.csv").exists()  # killed before the end
    parts = sorted(run_dir.glob("per_image_test.rank*.part.csv"))
    done = sum(len(_table_of(p)) for p in parts)
    assert 2 <= done < 8, done  # rank 0's 2 images at least, not the whole set
    resumed = _sample(tmp_path, "ddp", *ddp)
    assert "resuming:" in resumed.stdout
    assert not list(run_dir.glob("per_image_test.rank*.part.csv"))  # merged
    _assert_same_run(run_dir, runs / "full")


def _table_of(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- merge refusals
def _copy_shards(runs: Path, tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(runs / "a", a)
    shutil.copytree(runs / "b", b)
    return a, b


def test_merge_refuses_a_missing_shard(runs, tmp_path):
    a, _ = _copy_shards(runs, tmp_path)
    with pytest.raises(MergeError, match=r"shard\(s\) 1/2 of 2 not found"):
        merge([a], out=tmp_path / "out")


def test_merge_refuses_an_unfinished_shard(runs, tmp_path):
    a, b = _copy_shards(runs, tmp_path)
    (b / "per_image_test.shard1of2.rank0.part.csv").write_text("index,name\n")  # a killed rerun
    with pytest.raises(MergeError, match=r"shard 1/2 in .*b is not finished.*resumes"):
        merge([a, b], out=tmp_path / "out")
    (b / "per_image_test.shard1of2.rank0.part.csv").unlink()
    (b / "per_image_test.shard1of2.csv").unlink()  # killed before its first end of epoch
    with pytest.raises(MergeError, match="not finished"):
        merge([a, b], out=tmp_path / "out")


def test_merge_refuses_shards_made_with_other_settings(runs, tmp_path):
    a, b = _copy_shards(runs, tmp_path)
    path = b / "fingerprint_test.shard1of2.json"
    data = json.loads(path.read_text())
    data["parts"]["model.sampler.scale"] = 5.0
    path.write_text(json.dumps(data))
    with pytest.raises(MergeError, match=r"other settings: model.sampler.scale 3.0 -> 5.0"):
        merge([a, b], out=tmp_path / "out")


def test_merge_refuses_a_row_outside_its_shard(runs, tmp_path):
    a, b = _copy_shards(runs, tmp_path)
    path = b / "per_image_test.shard1of2.csv"
    lines = path.read_text().splitlines()
    lines[1] = "2" + lines[1][lines[1].index(",") :]  # image 2 belongs to shard 0
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MergeError, match="holds image index 2, which belongs to shard 0/2"):
        merge([a, b], out=tmp_path / "out")
