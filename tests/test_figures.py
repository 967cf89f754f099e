"""Figures and logs a researcher reads, checked by their numbers rather than by eye.

* the comparison figure (``lit_restore.evaluation.compare`` → :mod:`lit_restore.evaluation.figures`):
  captions equal the CSV values, pages cover every image once, the zoom region is the same part
  of the scene in every column and is the reference's highest-variance window;
* the trade-off plot: its points are the runs' summaries, placed on the axes' own scale;
* HPARAMS: the run's resolved init args, the same in every logger (CSV, a W&B-like and an
  MLflow-like fake), with the grid through each logger's image API.

The runs are ``NoisyIdentity`` on ``FakeData`` (32-px images; tests/metrics_fakes.py).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from entry_points import run_entry
from metrics_fakes import (
    FakeData,
    ImageGridLogger,
    NoisyIdentity,
    RestoredImageWriter,
    make_metrics,
    make_trainer,
    write_alexnet_features,
)

from lit_restore.evaluation import compare, figures, tradeoff
from lit_restore.evaluation.drawing import BOX_COLOUR, font, text_width, wrap
from lit_restore.utils.tables import read_rows

N = 11  # images per run: 3 pages of 4, the last one shorter
RUNS = (("mild", 0.5), ("plain", 1.0), ("strong", 2.0))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    dirs = []
    for method, scale in RUNS:
        tmp = tmp_path_factory.mktemp(method)
        writer = RestoredImageWriter(save_measurement=True, save_reference=True)
        trainer = make_trainer(tmp, [make_metrics(fid=False), writer])
        trainer.test(NoisyIdentity(scale=scale, method=method), datamodule=FakeData(n=N))
        dirs.append(tmp / "run" / "version_0")
    return dirs


@pytest.fixture(scope="module")
def compared(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cmp")
    (out / "comparison.png").write_bytes(b"stale")  # a one-page comparison made earlier
    compare.main([*map(str, runs), "--out", str(out), "--per-page", "4"])
    return out


def _pages(runs: list[Path]) -> list:
    return compare.figure_pages(
        [compare.load_run(d) for d in runs], per_page=4, title="stage: test"
    )


def test_pages_cover_every_image_exactly_once(runs, compared):
    pages = _pages(runs)
    assert len(pages) == math.ceil(N / 4) == 3
    # the CLI wrote these pages, named by page; the stale single-page figure is gone
    paths = compare.page_paths(compared, 3)
    assert [p.name for p in paths] == [
        "comparison_p1.png",
        "comparison_p2.png",
        "comparison_p3.png",
    ]
    assert not (compared / "comparison.png").exists()
    for path, (image, _) in zip(paths, pages):
        assert np.array_equal(np.asarray(Image.open(path)), np.asarray(image))
    shown = [t.name for _, tiles in pages for t in tiles if t.column == 0]
    assert shown == [f"img{i:03d}" for i in range(N)]  # index order, each once
    assert [len({t.name for t in tiles}) for _, tiles in pages] == [4, 4, 3]
    # every image has a tile in every column: measurement | mild | plain | strong | reference
    for _, tiles in pages:
        for name in {t.name for t in tiles}:
            assert sorted(t.column for t in tiles if t.name == name) == [0, 1, 2, 3, 4]
    assert figures.paginate(list(range(9)), 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]


def test_tile_captions_are_the_csv_values(runs):
    rows = {
        k + 1: {r["name"]: r for r in read_rows(d / "per_image_test.csv")[1]}
        for k, d in enumerate(runs)
    }
    checked = 0
    for _, tiles in _pages(runs):
        for t in tiles:
            if t.column == 0:  # the measurement: its size (16 px: FakeData pools by 2)
                assert t.caption == "16x16 px"
            elif t.column == 4:  # the reference: no scores
                assert t.caption == ""
            else:
                row = rows[t.column][t.name]
                assert t.caption == figures.caption(row)
                psnr_text, ssim_text = t.caption.split(" · ")
                # printed to 0.01 dB and 0.001: the CSV value rounded, no other number
                assert psnr_text.endswith(" dB")
                assert float(psnr_text[:-3]) == round(row["psnr"], 2)
                assert float(ssim_text) == round(row["ssim"], 3)
                checked += 1
    assert checked == N * len(RUNS)
    assert figures.caption({"psnr": float("nan"), "ssim": 0.5}) == "n/a · 0.500"
    assert figures.caption({"ssim": 0.5}) == "0.500"  # a run without PSNR (no reference)
    assert figures.caption(None) == ""


def test_zoom_region_is_the_same_in_every_column(runs):
    for page, tiles in _pages(runs):
        canvas = np.asarray(page)
        for name in {t.name for t in tiles}:
            mine = [t for t in tiles if t.name == name]
            (box,) = {t.crop_on_reference for t in mine}  # chosen once per image
            reference = Image.open(runs[0] / "reference" / f"{name}.png").convert("RGB")
            assert box == figures.zoom_box(np.asarray(reference))
            for t in mine:
                if t.column == 0:  # measurement and reference: from the first run that saved them
                    folder = runs[0] / "measurement"
                elif t.column == 4:
                    folder = runs[0] / "reference"
                else:
                    folder = runs[t.column - 1] / "restored"
                img = Image.open(folder / f"{name}.png").convert("RGB")
                # the same scene region on this column's pixel grid (the measurement is 2x smaller)
                assert t.crop == figures.scale_box(box, reference.size, img.size)
                # the zoom tile is that region of this column's image, enlarged
                tw, th = t.zoom_rect[2] - t.zoom_rect[0], t.zoom_rect[3] - t.zoom_rect[1]
                want = np.asarray(img.crop(t.crop).resize((tw, th), Image.NEAREST))
                got = canvas[t.zoom_rect[1] : t.zoom_rect[3], t.zoom_rect[0] : t.zoom_rect[2]]
                assert np.array_equal(got, want)
                # and it is outlined on the image tile, in the outline colour
                x0, y0, x1, y1 = t.outline
                assert tuple(canvas[y0, x0]) == BOX_COLOUR == tuple(canvas[y1 - 1, x1 - 1])


def test_zoom_box_is_the_highest_variance_window():
    rng = np.random.default_rng(0)
    img = 0.5 + 0.01 * rng.standard_normal((64, 48, 3))
    img[20:36, 28:44] = (np.indices((16, 16)).sum(0) % 2)[..., None]  # a checkerboard: var 1/4
    box = figures.zoom_box(img)
    side = box[2] - box[0]
    assert side == box[3] - box[1] == round(48 * figures.ZOOM_FRACTION)  # 12 px
    # inside the checkerboard (windows reaching past it hold low-variance pixels)
    assert box[0] >= 28 and box[2] <= 44 and box[1] >= 20 and box[3] <= 36
    # brute force over every window of that side: none has a larger variance
    g = img.mean(-1)
    best = max(
        g[y : y + side, x : x + side].var()
        for y in range(0, 64 - side + 1)
        for x in range(0, 48 - side + 1)
    )
    assert g[box[1] : box[3], box[0] : box[2]].var() == pytest.approx(best, rel=1e-9)


def test_scale_box_maps_the_region_between_sizes():
    assert figures.scale_box((8, 8, 16, 16), (32, 32), (8, 8)) == (2, 2, 4, 4)
    assert figures.scale_box((8, 8, 16, 16), (32, 32), (128, 128)) == (32, 32, 64, 64)
    # edges off the coarse grid: the mapped box covers the region (floor/ceil), never empty
    assert figures.scale_box((5, 5, 7, 7), (32, 32), (8, 8)) == (1, 1, 2, 2)
    assert figures.scale_box((0, 0, 1, 1), (32, 32), (8, 8)) == (0, 0, 1, 1)


def test_wrap_fits_the_width_and_keeps_the_text():
    f = font()
    text = "SaFaRI on PowerLawGaussianPrior demo/safari_with_a_very_long_version_name"
    lines = wrap(text, f, 100)
    assert all(text_width(line, f) <= 100 for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    two = wrap(text, f, 100, max_lines=2)
    assert len(two) == 2 and two[-1].endswith("…")
    assert wrap("A⁺y × 2", f, 200) == ["A+y x 2"]  # glyphs the font lacks: ASCII stand-ins


def test_tradeoff_points_equal_the_summaries(runs, compared):
    pts = json.loads((compared / "tradeoff.json").read_text())
    assert [p["run"] for p in pts] == [m for m, _ in RUNS]
    for p, d in zip(pts, runs):
        summary = json.loads((d / "summary_test.json").read_text())["metrics"]
        assert p["metric"] == "lpips"  # every run has LPIPS
        for key, column in (("value", "lpips"), ("seconds_per_image",) * 2, ("nfe_per_image",) * 2):
            assert p[key] == pytest.approx(summary[column], rel=1e-12), key
    with open(compared / "tradeoff.csv") as f:
        header, *lines = f.read().splitlines()
    assert header == "run,dir,metric,value,seconds_per_image,nfe_per_image"
    for line, p in zip(lines, pts):
        assert [float(v) for v in line.split(",")[3:]] == [
            p["value"],
            p["seconds_per_image"],
            p["nfe_per_image"],
        ]


def test_tradeoff_points_sit_on_the_axes_scale():
    pts = [
        {"run": "pinv", "value": 26.0, "seconds_per_image": 0.02, "nfe_per_image": 0.0},
        {"run": "dps", "value": 18.0, "seconds_per_image": 1.0, "nfe_per_image": 1000.0},
        {"run": "safari", "value": 22.0, "seconds_per_image": 2.0, "nfe_per_image": 100.0},
    ]
    assert tradeoff.log_axis([p["nfe_per_image"] for p in pts]) == (1, 3, True)  # 0 → 10^1 slot
    assert tradeoff.log_axis([p["seconds_per_image"] for p in pts]) == (-2, 1, False)
    _, where = tradeoff.plot(pts, "psnr")
    left = tradeoff.MARGIN["left"]
    width = tradeoff.PANEL[0] - tradeoff.MARGIN["right"] - left
    # seconds: log10 position within [-2, 1]
    for p, (x, _) in zip(pts, where["seconds_per_image"]):
        want = left + (math.log10(p["seconds_per_image"]) + 2) / 3 * width
        assert abs(x - want) <= 0.5
    # NFE: 0 at the axis's left end, 100 and 1000 at their decades
    xs = [x - tradeoff.PANEL[0] for x, _ in where["nfe_per_image"]]
    assert xs[0] == left and abs(xs[1] - (left + width)) <= 0.5
    assert abs(xs[2] - (left + width / 2)) <= 0.5
    # quality: higher PSNR is higher on the page (smaller y), the same y in both panels
    ys = [y for _, y in where["seconds_per_image"]]
    assert ys == [y for _, y in where["nfe_per_image"]]
    assert ys[0] < ys[2] < ys[1]
    assert tradeoff.quality_metric([{"metrics": {"psnr": 1.0}}]) == "psnr"


# --------------------------------------------------------------------------- HPARAMS, loggers
class _Client:
    """MLflow's ``MlflowClient`` as far as ``log_image`` goes."""

    def __init__(self) -> None:
        self.images: list[tuple[str, Image.Image, str]] = []

    def log_image(self, run_id: str, image: Image.Image, artifact_file: str) -> None:
        self.images.append((run_id, image, artifact_file))


def _fake_loggers():
    from lightning.pytorch.loggers import MLFlowLogger
    from lightning.pytorch.loggers.logger import Logger

    class Recording(Logger):
        """A W&B-like logger: hyper-parameters, metrics and ``log_image(key, images, step)``."""

        def __init__(self) -> None:
            super().__init__()
            self.params: dict = {}
            self.metrics: dict = {}
            self.images: list = []

        @property
        def name(self) -> str:
            return "wandb-like"

        @property
        def version(self) -> str:
            return "0"

        def log_hyperparams(self, params, *args, **kwargs) -> None:
            self.params.update(params)

        def log_metrics(self, metrics, step=None) -> None:
            self.metrics.update(metrics)

        def log_image(self, key, images, step=None, **kwargs) -> None:
            self.images.append((key, images, step))

    class FakeMLflow(MLFlowLogger):
        """MLFlowLogger without mlflow: a recording client (``experiment``) and run id."""

        def __init__(self) -> None:
            Logger.__init__(self)
            self.client, self.params, self.metrics = _Client(), {}, {}

        @property
        def experiment(self):
            return self.client

        @property
        def run_id(self) -> str:
            return "run-1"

        @property
        def name(self) -> str:
            return "mlflow-like"

        @property
        def version(self) -> str:
            return "run-1"

        def log_hyperparams(self, params) -> None:
            self.params.update(params)

        def log_metrics(self, metrics, step=None) -> None:
            self.metrics.update(metrics)

        def finalize(self, status: str = "success") -> None:
            pass

    return Recording(), FakeMLflow()


def test_hparams_and_grid_reach_every_logger(tmp_path):
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from lit_restore.utils.hparams import run_hparams

    wandb, mlflow = _fake_loggers()
    csv_logger = CSVLogger(str(tmp_path), name="csv", version=0)
    trainer = L.Trainer(
        accelerator="cpu", logger=[csv_logger, wandb, mlflow], enable_progress_bar=False,
        callbacks=[make_metrics(fid=False), ImageGridLogger(indices=[1, 0])],
        enable_model_summary=False, use_distributed_sampler=False,
    )  # fmt: skip
    res = trainer.test(NoisyIdentity(method="noisy"), datamodule=FakeData(n=4))[0]
    want = run_hparams(trainer)
    assert want["method"] == "noisy" and want["run"] == "csv/version_0"
    assert want["data/operator/class_path"] == "torch.nn.modules.pooling.AvgPool2d"
    # every logger got the same hyper-parameters; CSV's hparams.yaml holds them
    assert wandb.params == want == mlflow.params
    stored = yaml.safe_load((tmp_path / "csv" / "version_0" / "hparams.yaml").read_text())
    assert stored == want
    # the metrics too (W&B/MLflow: log_metrics; CSV: metrics.csv)
    for lg in (wandb, mlflow):
        assert lg.metrics["test/psnr"] == pytest.approx(res["test/psnr"], rel=1e-6)
    metrics_csv = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text()
    assert "test/psnr" in metrics_csv.splitlines()[0]
    # the grid: the PNG in the run dir, through W&B's log_image and as an MLflow artifact
    grid = np.asarray(Image.open(tmp_path / "csv" / "version_0" / "grid_test.png"))
    ((key, images, step),) = wandb.images
    assert key == "test/grid" and step == 0 and np.array_equal(np.asarray(images[0]), grid)
    ((run_id, image, artifact),) = mlflow.client.images
    assert run_id == "run-1" and artifact == "test/grid_step0.png"
    assert np.array_equal(np.asarray(image), grid)


def test_cli_hparams_are_the_config_init_args(tmp_path):
    """A CLI run's HPARAMS (hparams.yaml, TensorBoard, the summary) are its resolved config's
    model and data init args, flattened, plus the run's identity and the metrics."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    from lit_restore.utils.hparams import flatten

    run_entry(
        "sample.py", "test", "--config", "configs/experiment/demo_pinv.yaml",
        "--data.init_args.crop_size", "32", "--trainer.logger.init_args.save_dir", tmp_path,
        "--trainer.enable_progress_bar", "false",
    )  # fmt: skip
    run = tmp_path / "demo_pinv" / "sr4"
    config = yaml.safe_load((run / "config.yaml").read_text())
    hp = yaml.safe_load((run / "hparams.yaml").read_text())
    want = {
        **flatten(config["model"], "model"),
        **flatten(config["data"], "data"),
    }
    want = {k: v if v is not None else "None" for k, v in want.items()}
    assert len(want) > 20
    assert {k: hp[k] for k in want} == want  # every init arg, with its resolved value
    assert hp["data/operator/factor"] == 4 and hp["data/noise/sigma"] == 0.01
    assert hp["data/crop_size"] == 32  # the command-line override
    assert hp["method"] == "pinv" and hp["run"] == "demo_pinv/sr4"
    summary = json.loads((run / "summary_test.json").read_text())
    assert summary["hparams"] == hp
    # TensorBoard: one HPARAMS session holding them, with the test metrics as its metrics
    content = {}
    for f in run.glob("events.out.tfevents.*"):
        for e in EventFileLoader(str(f)).Load():
            for v in e.summary.value:
                if v.tag.startswith("_hparams_/"):
                    content.setdefault(v.tag, []).append(v.metadata.plugin_data.content)
    (start,) = content["_hparams_/session_start_info"]
    (experiment,) = content["_hparams_/experiment"]
    session = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info
    assert session.hparams["data/operator/factor"].number_value == 4
    assert session.hparams["model/class_path"].string_value == "lit_restore.modules.PseudoInverse"
    tags = {
        m.name.tag
        for m in plugin_data_pb2.HParamsPluginData.FromString(experiment).experiment.metric_infos
    }
    assert {"test/psnr", "test/ssim", "test/seconds_per_image", "test/nfe_per_image"} <= tags


# --------------------------------------------------------------------------- LPIPS / FID
def test_lpips_fid_logged_when_present_else_one_warning(tmp_path, monkeypatch):
    from lit_restore.evaluation import RestorationMetrics
    from lit_restore.metrics.scorer import MetricSuite

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("LIT_RESTORE_HOME", str(tmp_path / "lr"))
    suite = MetricSuite(["psnr", "ssim", "lpips"], fid=True, perceptual="auto")
    assert suite.metrics == ["psnr", "ssim"] and suite.set_metrics == []
    message = suite.unavailable_message()
    assert "python -m lit_restore.weights alexnet inception" in message
    assert "lpips, fid not computed" in message
    with pytest.raises(FileNotFoundError):  # required: a missing file is an error
        MetricSuite(["psnr", "lpips"], perceptual=True)
    # a run warns once, with that line, and scores what it can
    trainer = make_trainer(tmp_path, [RestorationMetrics()])
    with pytest.warns(UserWarning, match=r"python -m lit_restore\.weights alexnet inception"):
        res = trainer.test(NoisyIdentity(), datamodule=FakeData(n=2))[0]
    assert "test/psnr" in res and "test/lpips" not in res
    # the AlexNet backbone present (a torchvision layout file): LPIPS is scored and logged
    write_alexnet_features(tmp_path / "torch", seed=0)
    suite = MetricSuite(["psnr", "ssim", "lpips"], fid=True, perceptual="auto")
    assert suite.metrics == ["psnr", "ssim", "lpips"]
    assert list(suite.unavailable) == ["fid"]
    trainer = make_trainer(tmp_path / "with", [RestorationMetrics()])
    res = trainer.test(NoisyIdentity(), datamodule=FakeData(n=2))[0]
    assert math.isfinite(res["test/lpips"]) and "test/fid" not in res
