"""Callbacks end to end on a fake datamodule: CSV, aggregates, resume, DDP, grids, HPARAMS.

LPIPS uses a randomly initialised AlexNet backbone and FID a small random feature module
(``tests/metrics_fakes.py``), so no weight file is needed; the plumbing is what is tested.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from metrics_fakes import (
    FakeData,
    ImageGridLogger,
    NoisyIdentity,
    RestoredImageWriter,
    make_metrics,
    make_trainer,
    reference,
    registered_toy_metrics,
)

from lit_restore.data.io import tensor_to_uint8
from lit_restore.utils.tables import read_rows

ROOT = Path(__file__).resolve().parents[1]
N = 10


def _tol(key: str) -> dict:
    # FID ~5e-4 here is a difference of O(1) terms; float32 features computed in other batch
    # groupings differ in the last bits, which shows up at ~1e-5 relative in FID.
    return {"rel": 1e-4} if key.endswith("fid") else {"rel": 1e-6, "abs": 1e-9}


def _run(tmp, module, data=None, expect_results=True, **cb_kw):
    metrics = make_metrics(**cb_kw)
    trainer = make_trainer(
        tmp, [metrics, RestoredImageWriter(save_reference=True), ImageGridLogger()]
    )
    res = trainer.test(module, datamodule=data or FakeData(n=N))
    return (res[0] if expect_results else None), Path(tmp) / "run" / "version_0"


def _rows(run_dir: Path) -> list[dict]:
    return read_rows(run_dir / "per_image_test.csv")[1]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("full")
    module = NoisyIdentity()
    res, run_dir = _run(tmp, module)
    return res, run_dir, module


def test_csv_rows_and_aggregate_is_mean_of_per_image(full_run):
    res, run_dir, module = full_run
    rows = _rows(run_dir)
    assert sorted(r["index"] for r in rows) == list(range(N))
    assert sorted(module.restored) == list(range(N))
    for m in ("psnr", "ssim", "lpips"):
        assert res[f"test/{m}"] == pytest.approx(np.mean([r[m] for r in rows]), rel=1e-6)
    assert res["test/nfe_per_image"] == 7.0
    assert res["test/fid"] > 0 and math.isfinite(res["test/fid"])
    # per-image PSNR equals an independent numpy computation on the 8-bit images
    for r in rows[:3]:
        i = r["index"]
        g = torch.Generator().manual_seed(i)
        hq = reference(i)
        x = (hq + (0.02 + 0.02 * (i % 5)) * torch.randn(hq.shape, generator=g)).clamp(-1, 1)
        q = lambda t: np.round(((t.numpy() + 1) / 2).clip(0, 1) * 255) / 255  # noqa: E731
        want = 10 * math.log10(1 / np.mean((q(x).astype(np.float64) - q(hq)) ** 2))
        assert r["psnr"] == pytest.approx(want, abs=1e-3)
    # a PNG per image, named after batch["name"]; the written PNG is the restoration
    names = sorted(p.stem for p in (run_dir / "restored").glob("*.png"))
    assert names == [f"img{i:03d}" for i in range(N)]
    assert (run_dir / "reference" / "img000.png").exists()
    summary = json.loads((run_dir / "summary_test.json").read_text())
    assert summary["hparams"]["method"] == "noisy-identity"
    assert summary["metrics"]["psnr"] == pytest.approx(res["test/psnr"], rel=1e-6)
    assert not list(run_dir.glob("*.part.csv"))  # merged and cleaned up


def test_grid_and_hparams_in_tensorboard(full_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from lit_restore.evaluation.figures import labelled_grid

    _, run_dir, _ = full_run
    grid = np.asarray(Image.open(run_dir / "grid_test.png"))
    # the layout of 4 fixed indices x (measurement | restored | reference) at 32 px, under the
    # run's title; every cell holds exactly the image it names
    kinds = ["measurement", "restored", "reference"]
    title = "run/version_0: noisy-identity (NoisyIdentity)"
    labels = [f"img{i:03d} (#{i})" for i in range(4)]
    blank = [[np.zeros((32, 32, 3))] * 3] * 4
    layout, cells = labelled_grid(blank, kinds, title, labels)
    assert grid.shape[:2] == (layout.size[1], layout.size[0])
    for i in range(4):
        lq = F.avg_pool2d(reference(i)[None], 2)
        want = {
            "measurement": F.interpolate(lq, size=(32, 32), mode="nearest")[0],
            "restored": None,
            "reference": reference(i),
        }
        for c, kind in enumerate(kinds):
            left, top, right, bottom = cells[i][c]
            tile = grid[top:bottom, left:right]
            if kind == "restored":  # the written PNG
                expect = np.asarray(Image.open(run_dir / "restored" / f"img{i:03d}.png"))
            else:
                expect = tensor_to_uint8((want[kind] + 1) / 2)
            assert np.array_equal(tile, expect), (i, kind)
    ev = EventAccumulator(str(run_dir), size_guidance={"images": 0, "tensors": 0}).Reload()
    assert "test/grid" in ev.Tags()["images"]
    assert "test/psnr" in ev.Tags()["scalars"]
    # TensorBoard holds the same grid as the PNG
    logged = Image.open(io.BytesIO(ev.Images("test/grid")[-1].encoded_image_string))
    assert np.array_equal(np.asarray(logged.convert("RGB")), grid)
    # the HPARAMS plugin entry carries the run's identity (method, steps, operator)
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    start = [
        v.metadata.plugin_data.content
        for f in run_dir.glob("events.out.tfevents.*")
        for e in EventFileLoader(str(f)).Load()
        for v in e.summary.value
        if v.tag == "_hparams_/session_start_info"
    ]
    assert len(start) == 1 and b"noisy-identity" in start[0] and b"AvgPool2d" in start[0]


def test_resume_restores_only_missing_and_matches(full_run, tmp_path):
    res_full, full_dir, _ = full_run
    crashing = NoisyIdentity(fail_after=2)  # batches of 3: images 0..5 done, then a crash
    with pytest.raises(RuntimeError, match="simulated"):
        _run(tmp_path, crashing)
    run_dir = tmp_path / "run" / "version_0"
    part = run_dir / "per_image_test.rank0.part.csv"
    assert len(read_rows(part)[1]) == 6
    with open(part, "a") as f:  # a torn last line from the crash is ignored
        f.write("6,img006,31.2")
    (run_dir / "restored" / "img004.png").unlink()  # its PNG is lost -> redone
    resumed = NoisyIdentity()
    res, _ = _run(tmp_path, resumed)
    assert sorted(resumed.restored) == [4, 6, 7, 8, 9]
    for k, v in res_full.items():
        if k != "test/seconds_per_image":
            assert res[k] == pytest.approx(v, **_tol(k)), k
    full_rows, rows = _rows(full_dir), _rows(run_dir)
    assert [r["index"] for r in rows] == list(range(N))
    for a, b in zip(full_rows, rows):  # identical per-image rows (timing aside; NaN memory on CPU)
        assert (a["index"], a["name"], a["nfe_per_image"]) == (
            b["index"],
            b["name"],
            b["nfe_per_image"],
        )
        for k in ("psnr", "ssim", "lpips"):
            assert a[k] == pytest.approx(b[k], rel=1e-5), k  # float32 conv: batch-size rounding
    # a third run finds everything done: restores nothing (Lightning skips the empty loop),
    # and still writes the same summary from the stored rows
    (run_dir / "summary_test.json").unlink()
    again = NoisyIdentity()
    _run(tmp_path, again, expect_results=False)
    assert again.restored == []
    summary = json.loads((run_dir / "summary_test.json").read_text())["metrics"]
    assert summary["psnr"] == pytest.approx(res_full["test/psnr"], rel=1e-6)
    assert summary["fid"] == pytest.approx(res_full["test/fid"], **_tol("fid"))


def test_resume_false_starts_over(full_run, tmp_path):
    _run(tmp_path, NoisyIdentity(), data=FakeData(n=N, subset=[0, 1, 2]))
    module = NoisyIdentity()
    _run(tmp_path, module, resume=False)
    assert sorted(module.restored) == list(range(N))


def test_subset_then_full_set_merges(full_run, tmp_path):
    res_full, _, _ = full_run
    _run(tmp_path, NoisyIdentity(), data=FakeData(n=N, subset=[1, 3, 5]))
    module = NoisyIdentity()
    res, _run_dir = _run(tmp_path, module)
    assert sorted(module.restored) == [0, 2, 4, 6, 7, 8, 9]
    assert res["test/psnr"] == pytest.approx(res_full["test/psnr"], rel=1e-6)
    assert res["test/fid"] == pytest.approx(res_full["test/fid"], **_tol("fid"))


def test_without_reference_only_cost(tmp_path):
    res, run_dir = _run(tmp_path, NoisyIdentity(), data=FakeData(n=4, with_hq=False))
    rows = _rows(run_dir)
    assert len(rows) == 4 and all(math.isnan(r["psnr"]) for r in rows)
    assert "test/psnr" not in res and res["test/nfe_per_image"] == 7.0
    assert len(list((run_dir / "restored").glob("*.png"))) == 4


def test_validate_logs_val_metrics(tmp_path):
    trainer = make_trainer(tmp_path, [make_metrics(fid=False)])
    res = trainer.validate(NoisyIdentity(), datamodule=FakeData(n=4))[0]
    assert {"val/psnr", "val/ssim", "val/lpips", "val/nfe_per_image"} <= set(res)
    assert not list((tmp_path / "run" / "version_0").glob("per_image_*.csv"))


_DDP_SCRIPT = """
import json, sys
sys.path[:0] = [{tests!r}, {root!r}]
from metrics_fakes import FakeData, NoisyIdentity, RestoredImageWriter, make_metrics, make_trainer
if __name__ == "__main__":
    out = sys.argv[1]
    trainer = make_trainer(out, [make_metrics(), RestoredImageWriter()], devices=2, strategy="ddp")
    module = NoisyIdentity()
    res = trainer.test(module, datamodule=FakeData(n={n}, batch_size=2))
    json.dump(module.restored, open(out + f"/restored_rank{{trainer.global_rank}}.json", "w"))
    if trainer.is_global_zero:
        json.dump(res[0], open(out + "/result.json", "w"))
"""


def test_ddp_two_processes_equal_one(full_run, tmp_path):
    """strategy=ddp, devices=2 on CPU, resuming a 1-process run that did images 1, 3, 5: the two
    ranks restore only the 7 missing images, each once, and the aggregates (FID included) equal
    the uninterrupted 1-process run's."""
    _run(tmp_path, NoisyIdentity(), data=FakeData(n=N, subset=[1, 3, 5]))
    res_full, _full_dir, _ = full_run
    script = tmp_path / "ddp_eval.py"
    script.write_text(_DDP_SCRIPT.format(tests=str(ROOT / "tests"), root=str(ROOT), n=N))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "result.json").read_text())
    for k, v in res_full.items():
        if k != "test/seconds_per_image":
            assert res[k] == pytest.approx(v, **_tol(k)), k
    done = [json.loads((tmp_path / f"restored_rank{r}.json").read_text()) for r in (0, 1)]
    assert all(done) and sorted(done[0] + done[1]) == [0, 2, 4, 6, 7, 8, 9]
    rows = _rows(tmp_path / "run" / "version_0")
    assert [r["index"] for r in rows] == list(range(N))
    assert len(list((tmp_path / "run" / "version_0" / "restored").glob("*.png"))) == N


def test_predict_writes_pngs_and_cost_csv(tmp_path, capsys):
    """predict (real-world inputs, no hq): PNGs + cost rows; a rerun restores nothing."""

    def predict():
        module = NoisyIdentity()
        cbs = [make_metrics(fid=False), RestoredImageWriter(save_measurement=True)]
        make_trainer(tmp_path, cbs).predict(module, datamodule=FakeData(n=5, with_hq=False))
        return module

    assert sorted(predict().restored) == list(range(5))
    run_dir = tmp_path / "run" / "version_0"
    rows = read_rows(run_dir / "per_image_predict.csv")[1]
    assert [r["name"] for r in rows] == [f"img{i:03d}" for i in range(5)]
    assert all(r["nfe_per_image"] == 7.0 and math.isnan(r["psnr"]) for r in rows)
    assert len(list((run_dir / "measurement").glob("*.png"))) == 5
    assert Image.open(run_dir / "restored" / "img000.png").size == (32, 32)
    assert "predict metrics" in capsys.readouterr().out
    assert predict().restored == []


def test_no_reference_metric_scores_real_world_inputs(tmp_path):
    """A registered no-reference metric fills its CSV column for images without a reference,
    where the full-reference ones stay NaN; its aggregate is the mean of the per-image values."""
    from lit_restore.evaluation import RestorationMetrics

    with registered_toy_metrics():
        cb = RestorationMetrics(metrics=["psnr", "brightness"], perceptual=False)
        module = NoisyIdentity()
        make_trainer(tmp_path, [cb]).predict(module, datamodule=FakeData(n=4, with_hq=False))
    rows = read_rows(tmp_path / "run" / "version_0" / "per_image_predict.csv")[1]
    assert len(rows) == 4 and all(math.isnan(r["psnr"]) for r in rows)
    assert all(0 < r["brightness"] < 1 for r in rows)
    assert cb.summary["brightness"] == pytest.approx(np.mean([r["brightness"] for r in rows]))
