"""Tests of lit_restore.data: file conversion rules, datasets, dead leaves, datamodule, sharding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lit_restore.data import (
    BadImageError,
    DeadLeaves,
    HFImageDataset,
    ImageFolder,
    ImageSizeError,
    ImageTooLargeError,
    ImageTooSmallError,
    LQFolder,
    PairedFolder,
    RestorationDataModule,
    ShardSampler,
    collate,
    load_image,
    save_png,
)
from lit_restore.modules.base import RestorationModule
from lit_restore.operators.base import LinearOperator
from lit_restore.operators.noise import GaussianNoise


# --------------------------------------------------------------------------- helpers
class Pool2(LinearOperator):
    """2× average pooling (tiny test operator; adjoint = nearest upsampling / 4)."""

    def A(self, x):
        return F.avg_pool2d(x, 2)

    def adjoint(self, y):
        return F.interpolate(y, scale_factor=2, mode="nearest") / 4


class RandomMask(LinearOperator):
    """Per-image random pixel mask (exercises sample_params/bind/mask)."""

    def __init__(self, keep: float = 0.5) -> None:
        super().__init__()
        self.keep = keep
        self.register_buffer("mask", torch.ones(1, 1, 1, 1))

    def sample_params(self, generator, image_shape):
        _, h, w = image_shape
        return {"mask": (torch.rand(1, h, w, generator=generator) < self.keep).float()}

    def param_names(self):
        return {"mask"}

    def A(self, x):
        return x * self.mask

    def adjoint(self, y):
        return y * self.mask


def rgb_array(h=16, w=20, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_folder(root, n=5, size=(16, 20), ext="png", prefix="img"):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rgb_array(*size, seed=i)).save(root / f"{prefix}{i:02d}.{ext}")
    return root


# ------------------------------------------------------------------- conversion rules
def test_rgb_png_roundtrip_exact(tmp_path):
    arr = rgb_array()
    Image.fromarray(arr).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    assert x.shape == (3, 16, 20) and x.dtype == torch.float32
    assert torch.equal(x, torch.from_numpy(arr).permute(2, 0, 1).float() / 255)
    save_png(x, tmp_path / "sub" / "b.png")  # creates the parent, atomic replace
    assert torch.equal(load_image(tmp_path / "sub" / "b.png"), x)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["b.png"]  # no temp left behind


def test_gray_replicated(tmp_path):
    g = rgb_array()[..., 0]
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png")
    assert x.shape == (3, 16, 20)
    ref = torch.from_numpy(g).float() / 255
    for c in range(3):
        assert torch.equal(x[c], ref)


def test_rgba_and_la_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red channel 200
    rgba[..., 3] = np.array([0, 51, 204, 255], np.uint8)[None, :]  # alpha per column
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    a = torch.tensor([0, 51, 204, 255]) / 255
    expect_r = 200 / 255 * a + (1 - a)
    expect_gb = 0 * a + (1 - a)
    assert torch.allclose(x[0, 0], expect_r, atol=1e-6)
    assert torch.allclose(x[1, 0], expect_gb, atol=1e-6)
    assert torch.allclose(x[:, :, 0], torch.ones(3, 4))  # fully transparent → white
    la = np.stack([np.full((4, 4), 100, np.uint8), rgba[..., 3]], -1)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    y = load_image(tmp_path / "la.png")
    assert torch.allclose(y[2, 1], 100 / 255 * a + (1 - a), atol=1e-6)


def test_palette_expanded(tmp_path):
    arr = rgb_array(8, 8)
    img = Image.fromarray(arr).quantize(colors=16)
    assert img.mode == "P"
    img.save(tmp_path / "p.png")
    x = load_image(tmp_path / "p.png")
    ref = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).float() / 255
    assert torch.equal(x, ref)
    # palette with a transparent entry → composited on white
    img.info["transparency"] = int(np.asarray(img)[0, 0])
    img.save(tmp_path / "pt.png", transparency=int(np.asarray(img)[0, 0]))
    xt = load_image(tmp_path / "pt.png")
    assert torch.allclose(xt[:, 0, 0], torch.ones(3))


def test_16bit_png_divided_by_65535(tmp_path):
    vals = np.array([[0, 1, 32768, 65535]], dtype=np.uint16).repeat(2, 0)
    Image.fromarray(vals).save(tmp_path / "d.png")  # 16-bit greyscale PNG
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    x = load_image(tmp_path / "d.png")
    expect = torch.tensor([0, 1, 32768, 65535], dtype=torch.float32) / 65535
    assert torch.allclose(x[1, 0], expect, atol=1e-7)
    assert x[0, 0, 1] > 0  # one 16-bit step survives (an 8-bit path would lose it)


@pytest.mark.parametrize("ext", ["bmp", "tif", "tiff", "webp"])
def test_other_formats_lossless(tmp_path, ext):
    arr = rgb_array(8, 12)
    kw = {"lossless": True} if ext == "webp" else {}
    Image.fromarray(arr).save(tmp_path / f"x.{ext}", **kw)
    assert torch.equal(
        load_image(tmp_path / f"x.{ext}"), torch.from_numpy(arr).permute(2, 0, 1) / 255
    )


def test_16bit_tiff(tmp_path):
    vals = np.array([[0, 257, 65535]], dtype=np.uint16)
    Image.fromarray(vals).save(tmp_path / "d.tif")
    assert Image.open(tmp_path / "d.tif").mode.startswith("I;16")
    x = load_image(tmp_path / "d.tif")
    assert torch.allclose(x[0, 0], torch.tensor([0.0, 257 / 65535, 1.0]), atol=1e-7)


def test_cmyk_jpeg_converted(tmp_path):
    # pure cyan-free: C=0, M=255, Y=0, K=0 → magenta (255, 0, 255)
    cmyk = np.zeros((8, 8, 4), np.uint8)
    cmyk[..., 1] = 255
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "c.jpg", quality=100)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    x = load_image(tmp_path / "c.jpg")
    assert torch.allclose(x.mean((1, 2)), torch.tensor([1.0, 0.0, 1.0]), atol=0.03)


def test_truncated_file_names_it(tmp_path):
    Image.fromarray(rgb_array(32, 32)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    for name in ("t.png", "junk.jpg"):
        with pytest.raises(BadImageError, match=name) as e:
            load_image(tmp_path / name)
        assert e.value.path.endswith(name)


# ------------------------------------------------------------------------- datasets
def test_image_folder_sorted_recursive(tmp_path):
    write_folder(tmp_path / "b", 2)
    write_folder(tmp_path / "a", 2, ext="jpg")
    (tmp_path / "notes.txt").write_text("x")
    ds = ImageFolder(tmp_path)
    assert [ds[i]["name"] for i in range(len(ds))] == ["a/img00", "a/img01", "b/img00", "b/img01"]
    assert ds[0]["image"].shape == (3, 16, 20)
    with pytest.raises(ValueError, match="no images found"):
        ImageFolder(tmp_path, recursive=False)
    assert len(ImageFolder(tmp_path / "a", extensions=["jpg"])) == 2


def test_empty_and_missing_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty.*\.png.*\.tiff"):
        ImageFolder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nope"):
        ImageFolder(tmp_path / "nope")


def test_skip_mode_warns_with_count_and_names(tmp_path):
    write_folder(tmp_path, 3)
    (tmp_path / "bad1.png").write_bytes(b"garbage")
    data = (tmp_path / "img00.png").read_bytes()
    (tmp_path / "bad2.png").write_bytes(data[:40])
    with pytest.raises(BadImageError, match=r"bad1\.png"):
        ImageFolder(tmp_path)[0]  # error mode: fails on access, naming the file
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable.*bad1\.png.*bad2\.png"):
        ds = ImageFolder(tmp_path, on_bad_image="skip")
    assert [ds[i]["name"] for i in range(len(ds))] == ["img00", "img01", "img02"]


def test_paired_folder_matching(tmp_path):
    write_folder(tmp_path / "hq", 3, size=(16, 16))
    write_folder(tmp_path / "lq", 3, size=(8, 8))
    ds = PairedFolder(tmp_path / "lq", tmp_path / "hq")
    item = ds[1]
    assert item["name"] == "img01" and item["image"].shape == (3, 16, 16)
    assert item["lq"].shape == (3, 8, 8)
    assert torch.equal(item["image"], load_image(tmp_path / "hq" / "img01.png"))
    # suffix matching in one folder (RealSR layout)
    one = tmp_path / "one"
    one.mkdir()
    for i in range(2):
        Image.fromarray(rgb_array(16, 16, i)).save(one / f"Canon_{i:03d}_HR.png")
        Image.fromarray(rgb_array(8, 8, i)).save(one / f"Canon_{i:03d}_LR4.png")
    ds2 = PairedFolder(one, one, lq_suffix="_LR4", hq_suffix="_HR")
    assert [ds2[i]["name"] for i in range(2)] == ["Canon_000", "Canon_001"]
    # unmatched → clear error listing them
    Image.fromarray(rgb_array(8, 8)).save(tmp_path / "lq" / "extra.png")
    with pytest.raises(ValueError, match=r"1 LQ file.*extra"):
        PairedFolder(tmp_path / "lq", tmp_path / "hq")


def test_lq_folder_items(tmp_path):
    write_folder(tmp_path, 2)
    item = LQFolder(tmp_path)[0]
    assert set(item) == {"lq", "name"}


def test_hf_dataset_from_local_save_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    imgs = [Image.fromarray(rgb_array(8, 8, i)) for i in range(3)]
    ds = datasets.Dataset.from_dict(
        {"img": imgs, "id": ["x0", "x1", "x2"]},
        features=datasets.Features({"img": datasets.Image(), "id": datasets.Value("string")}),
    )
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "dd"))
    ds.save_to_disk(str(tmp_path / "single"))
    a = HFImageDataset(tmp_path / "dd", split="test", image_column="img", name_column="id")
    assert len(a) == 3 and a[2]["name"] == "x2"
    ref = torch.from_numpy(rgb_array(8, 8, 2)).permute(2, 0, 1).float() / 255
    assert torch.equal(a[2]["image"], ref)
    b = HFImageDataset(tmp_path / "single", image_column="img")
    assert b[1]["name"] == "00001" and torch.equal(b[0]["image"], a[0]["image"])
    with pytest.raises(ValueError, match="no column 'image'"):
        HFImageDataset(tmp_path / "single")
    with pytest.raises(ValueError, match="splits"):
        HFImageDataset(tmp_path / "dd", split="train", image_column="img")
    # an undecodable row: error names the row; skip mode warns with count and name
    Image.fromarray(rgb_array(8, 8)).save(tmp_path / "g.png")
    rows = [
        {"bytes": b"garbage", "path": None},
        {"bytes": (tmp_path / "g.png").read_bytes(), "path": None},
    ]
    bad = datasets.Dataset.from_dict(
        {"image": rows}, features=datasets.Features({"image": datasets.Image()})
    )
    bad.save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(BadImageError, match=r"bad\[test\]\[0\]"):
        HFImageDataset(tmp_path / "bad")[0]
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable.*00000"):
        skipped = HFImageDataset(tmp_path / "bad", on_bad_image="skip")
    assert len(skipped) == 1 and skipped[0]["name"] == "00001"


# ----------------------------------------------------------------------- dead leaves
def test_deadleaves_deterministic():
    d = DeadLeaves(length=10, image_size=32, seed=3)
    a, b = d[4]["image"], DeadLeaves(length=10, image_size=32, seed=3)[4]["image"]
    assert torch.equal(a, b)
    assert not torch.equal(a, d[5]["image"])
    assert not torch.equal(a, DeadLeaves(length=10, image_size=32, seed=4)[4]["image"])
    assert a.shape == (3, 32, 32) and a.min() >= 0 and a.max() <= 1
    # occlusion: piecewise-constant discs → far fewer distinct colours than pixels
    assert len(torch.unique(a.flatten(1).T, dim=0)) < 32 * 32 / 4
    with pytest.raises(IndexError):
        d[10]


def radial_power_slope(images: torch.Tensor) -> float:
    """Least-squares slope of log radially-averaged power vs log frequency, f in [2, N/4]."""
    n = images.shape[-1]
    x = images - images.mean((-2, -1), keepdim=True)
    power = (torch.fft.fft2(x).abs() ** 2).mean(0)
    f = torch.fft.fftfreq(n) * n
    radius = (f[:, None] ** 2 + f[None, :] ** 2).sqrt().round().long()
    ks = torch.arange(2, n // 4 + 1)
    prof = torch.stack([power[radius == k].mean() for k in ks])
    return float(np.polyfit(np.log(ks.numpy()), np.log(prof.numpy()), 1)[0])


def test_deadleaves_power_spectrum_slope():
    # measured: slope -1.93 at 64 px (16 grey images, f in [2, 16]); natural images ≈ -2
    d = DeadLeaves(length=16, image_size=64, seed=0)
    grey = torch.stack([d[i]["image"].mean(0) for i in range(16)])
    slope = radial_power_slope(grey)
    assert -3.2 < slope < -1.5, slope
    # white noise would be flat: the test can fail
    assert abs(radial_power_slope(torch.rand(16, 64, 64))) < 0.3


# ------------------------------------------------------------------------ datamodule
def make_dm(tmp_path, n=5, size=(24, 28), **kw):
    root = write_folder(tmp_path / "imgs", n, size=size)
    ds = ImageFolder(root)
    args = dict(test_set=ds, train_set=ds, val_set=ds, crop_size=16, batch_size=2, seed=7)
    args.update(kw)
    return RestorationDataModule(**args)


def test_datamodule_batches_keys_shapes_ranges(tmp_path):
    dm = make_dm(tmp_path, operator=Pool2(), noise=GaussianNoise(0.05))
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert set(batch) == {"hq", "y", "lq", "params", "index", "name"}
    assert batch["hq"].shape == (2, 3, 16, 16) and batch["y"].shape == (2, 3, 8, 8)
    assert batch["hq"].min() >= -1 and batch["hq"].max() <= 1
    assert batch["index"].dtype == torch.long and batch["index"].tolist() == [0, 1]
    assert batch["name"] == ["img00", "img01"] and batch["params"] == {}
    # y = A(hq) + 2·sigma·z: residual std ≈ 0.1 in model space
    resid = batch["y"] - Pool2().A(batch["hq"])
    assert 0.07 < resid.std() < 0.13
    # eval crop is the centre crop of the file, mapped to [-1, 1]
    full = load_image(tmp_path / "imgs" / "img00.png")
    assert torch.allclose(batch["hq"][0], full[:, 4:20, 6:22] * 2 - 1)
    assert dm.operator is not None and dm.noise.sigma == 0.05


def test_datamodule_params_and_mask(tmp_path):
    dm = make_dm(tmp_path, operator=RandomMask(), noise=None)
    batch = next(iter(dm.test_dataloader()))
    assert batch["params"]["mask"].shape == (2, 1, 16, 16)
    assert torch.equal(batch["mask"], batch["params"]["mask"])
    assert not torch.equal(batch["mask"][0], batch["mask"][1])  # per-image masks
    assert torch.equal(batch["y"], batch["hq"] * batch["mask"])
    bound = dm.operator.bind(batch["params"])
    assert torch.equal(bound.A(batch["hq"]), batch["y"])


def test_degradation_independent_of_batch_size_and_order(tmp_path):
    def by_index(dm, **sel):
        out = {}
        for b in dm.test_dataloader():
            for j, i in enumerate(b["index"].tolist()):
                out[i] = (b["y"][j], b["params"]["mask"][j])
        return out

    dm1 = make_dm(tmp_path, operator=RandomMask(), noise=GaussianNoise(0.1), batch_size=1)
    dm3 = make_dm(tmp_path, operator=RandomMask(), noise=GaussianNoise(0.1), batch_size=3)
    a, b = by_index(dm1), by_index(dm3)
    # a different order: skip some indices, and shard over 2 "ranks"
    dm3.exclude({0, 2})
    c = by_index(dm3)
    assert sorted(c) == [1, 3, 4]
    for i in a:
        assert torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][1], b[i][1])
    for i in c:
        assert torch.equal(a[i][0], c[i][0])
    assert not torch.equal(a[0][0], a[1][0])
    # another seed → another measurement
    dm_other = make_dm(tmp_path, operator=RandomMask(), noise=GaussianNoise(0.1), seed=8)
    assert not torch.equal(by_index(dm_other)[0][0], a[0][0])


def test_train_augmentation_per_epoch_reproducible(tmp_path):
    dm = make_dm(tmp_path, operator=Pool2(), noise=GaussianNoise(0.05))
    items = dm._items("train", dm.positions("train"), train=True)
    e0, e0b, e1 = items[(2, 0)], items[(2, 0)], items[(2, 1)]
    assert torch.equal(e0["hq"], e0b["hq"]) and torch.equal(e0["y"], e0b["y"])
    assert not torch.equal(e0["y"], e1["y"])  # new crop/flip/noise next epoch
    loader = dm.train_dataloader()
    assert loader.drop_last and len(loader) == 2  # 5 images, batch 2
    loader.sampler.set_epoch(3)
    order3 = [b["index"].tolist() for b in loader]
    loader.sampler.set_epoch(3)
    assert [b["index"].tolist() for b in loader] == order3
    flat = [i for b in order3 for i in b]
    assert (
        len(flat) == 4 and len(set(flat)) == 4
    )  # 5 images, batch 2: the last partial batch is dropped
    loader.sampler.set_epoch(4)


def test_shard_sampler_covers_every_index_once():
    for n, world in [(10, 3), (7, 4), (2, 3), (0, 2), (16, 4)]:
        shards = [list(ShardSampler(n, r, world)) for r in range(world)]
        flat = [i for s in shards for i in s]
        assert sorted(flat) == list(range(n)) and len(flat) == n
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        assert [len(ShardSampler(n, r, world)) for r in range(world)] == list(map(len, shards))
    with pytest.raises(ValueError):
        ShardSampler(5, 3, 3)


def test_datamodule_shards_under_fake_ddp(tmp_path):
    class FakeTrainer:
        def __init__(self, rank, world):
            self.global_rank, self.world_size = rank, world

    seen = []
    for rank in range(3):
        dm = make_dm(tmp_path, n=7)
        dm.trainer = FakeTrainer(rank, 3)
        seen += [i for b in dm.test_dataloader() for i in b["index"].tolist()]
    assert sorted(seen) == list(range(7))


def test_identity_and_lq_only_and_paired(tmp_path):
    dm = make_dm(tmp_path)
    b = next(iter(dm.test_dataloader()))
    assert torch.equal(b["y"], b["hq"]) and torch.equal(b["lq"], b["hq"])
    # LQ-only: no hq, operator not applied, crop in LQ pixels
    lq_root = write_folder(tmp_path / "lqonly", 2, size=(12, 12))
    dm_lq = RestorationDataModule(
        test_set=LQFolder(lq_root), operator=Pool2(), crop_size=16, lq_scale=2, batch_size=2
    )
    b = next(iter(dm_lq.test_dataloader()))
    assert "hq" not in b and b["lq"].shape == (2, 3, 8, 8) and torch.equal(b["y"], b["lq"])
    # paired ×2: aligned crops
    write_folder(tmp_path / "hq", 2, size=(24, 24))
    lq_dir = tmp_path / "lq"
    lq_dir.mkdir()
    for i in range(2):
        hq = load_image(tmp_path / "hq" / f"img{i:02d}.png")
        save_png(F.avg_pool2d(hq[None], 2)[0], lq_dir / f"img{i:02d}.png")
    dm_p = RestorationDataModule(
        train_set=PairedFolder(lq_dir, tmp_path / "hq"), crop_size=16, batch_size=2, seed=1
    )
    it = dm_p._items("train", [0, 1], train=True)[(0, 0)]
    assert it["hq"].shape == (3, 16, 16) and it["lq"].shape == (3, 8, 8)
    pooled = F.avg_pool2d(it["hq"][None], 2)[0]
    assert (pooled - it["lq"]).abs().max() < 2 / 255 * 2 + 1e-6  # same region (8-bit rounding)
    # resize keeps the exact ×2 ratio: HQ 24→20 px, LQ 12→10 px, then a 16/8 px crop
    dm_r = RestorationDataModule(
        test_set=PairedFolder(lq_dir, tmp_path / "hq"), crop_size=16, resize=20, batch_size=2
    )
    b = next(iter(dm_r.test_dataloader()))
    assert b["hq"].shape == (2, 3, 16, 16) and b["lq"].shape == (2, 3, 8, 8)
    aligned = (F.avg_pool2d(b["hq"], 2) - b["lq"]).abs().mean()
    shifted = (F.avg_pool2d(b["hq"], 2) - b["lq"].roll(1, -1)).abs().mean()
    assert aligned < 0.5 * shifted, (aligned, shifted)  # white-noise images: only aligned agrees


def test_too_small_image_error_and_skip(tmp_path):
    root = write_folder(tmp_path / "imgs", 3, size=(24, 24))
    Image.fromarray(rgb_array(10, 30)).save(root / "small.png")
    dm = RestorationDataModule(test_set=ImageFolder(root), crop_size=16, batch_size=4)
    with pytest.raises(ImageTooSmallError, match=r"small\.png.*crop_size=16.*resize"):
        list(dm.test_dataloader())
    dm_skip = RestorationDataModule(
        test_set=ImageFolder(root), crop_size=16, batch_size=4, on_bad_image="skip"
    )
    with pytest.warns(UserWarning, match=r"left out 1 of 4.*small\.png"):
        dm_skip.setup("test")
    assert [b["name"] for b in dm_skip.test_dataloader()] == [["img00", "img01", "img02"]]
    # the documented fix: resize the shorter side
    dm_resize = RestorationDataModule(test_set=ImageFolder(root), crop_size=16, resize=16)
    names = [n for b in dm_resize.test_dataloader() for n in b["name"]]
    assert "small" in names


def test_any_degradation_draws_per_seed_index_and_epoch(tmp_path):
    """The datamodule degrades with the one protocol for every model: a Real-ESRGAN training
    item is exactly ``degradation(hq, g(seed, index, epoch))``; new draws every epoch."""
    from lit_restore.degradations import RealESRGANDegradation
    from lit_restore.utils.seeding import STREAM_DEGRADATION, image_generator

    dm = make_dm(tmp_path, degradation=RealESRGANDegradation(4), crop_size=16)
    items = dm._items("train", dm.positions("train"), train=True)
    e0, e0b, e1 = items[(2, 0)], items[(2, 0)], items[(2, 1)]
    assert e0["lq"].shape == (3, 4, 4) and torch.equal(e0["lq"], e0b["lq"])
    assert not torch.equal(e0["lq"], e1["lq"])
    g = image_generator(7, 2, STREAM_DEGRADATION + 1000 * (0 + 1))
    assert torch.equal(RealESRGANDegradation(4)(e0["hq"], g).lq, e0["lq"])
    batch = next(iter(dm.test_dataloader()))  # evaluation: one fixed draw per image
    g = image_generator(7, 0, STREAM_DEGRADATION)
    assert torch.equal(RealESRGANDegradation(4)(batch["hq"][0], g).lq, batch["lq"][0])
    assert torch.equal(batch["y"], batch["lq"]) and dm.operator is None


def test_crop_the_degradation_cannot_take_is_refused_when_the_config_is_read(tmp_path):
    from lit_restore.degradations import BicubicDegradation
    from lit_restore.operators import BicubicSR

    with pytest.raises(ValueError, match=r"crop_size=30 does not fit data\.init_args\.operator"):
        make_dm(tmp_path, operator=BicubicSR(4), crop_size=30)
    with pytest.raises(ValueError, match=r"crop_size=30.*data\.init_args\.degradation.*sf=4"):
        make_dm(tmp_path, degradation=BicubicDegradation(4), crop_size=30)
    with pytest.raises(ValueError, match=r"crop_size=18 is not a multiple of.*lq_scale=4"):
        make_dm(tmp_path, crop_size=18, lq_scale=4)
    with pytest.raises(ValueError, match="configured twice"):
        make_dm(tmp_path, operator=Pool2(), degradation=BicubicDegradation(2))
    make_dm(tmp_path, operator=BicubicSR(4), crop_size=16)  # a multiple: accepted


def test_image_of_a_size_the_degradation_cannot_take_names_the_file(tmp_path):
    from lit_restore.operators import BicubicSR

    root = write_folder(tmp_path / "imgs", 2, size=(16, 16))
    Image.fromarray(rgb_array(15, 16)).save(root / "odd.png")
    dm = RestorationDataModule(
        test_set=ImageFolder(root), operator=BicubicSR(4), crop_size=None, batch_size=1
    )
    with pytest.raises(ImageSizeError, match=r"odd\.png is 15×16.*sf|odd\.png is 15×16.*factor"):
        list(dm.test_dataloader())
    skip = RestorationDataModule(
        test_set=ImageFolder(root, on_bad_image="skip"), operator=BicubicSR(4), crop_size=None,
        batch_size=1, on_bad_image="skip",
    )  # fmt: skip
    with pytest.warns(UserWarning, match=r"left out 1 of 3.*odd\.png"):
        skip.setup("test")
    assert [b["name"] for b in skip.test_dataloader()] == [["img00"], ["img01"]]


def test_too_large_image_is_refused_naming_the_limit_and_the_fixes(tmp_path):
    root = write_folder(tmp_path / "imgs", 1, size=(40, 50))
    dm = RestorationDataModule(test_set=ImageFolder(root), crop_size=None, max_pixels=1999)
    with pytest.raises(
        ImageTooLargeError, match=r"img00\.png is 40×50.*max_pixels=1999.*crop_size.*resize"
    ):
        list(dm.test_dataloader())
    for fix in (dict(crop_size=32), dict(max_pixels=2000), dict(max_pixels=None)):
        args = dict(test_set=ImageFolder(root), crop_size=None, max_pixels=1999) | fix
        assert len(list(RestorationDataModule(**args).test_dataloader())) == 1


def test_exif_orientation_is_applied(tmp_path):
    """A camera JPEG stored landscape with EXIF Orientation 6 ("rotate 90° CW to view") loads
    portrait, as viewers show it; the header size agrees."""
    from lit_restore.data.io import image_size

    arr = np.zeros((8, 16, 3), dtype=np.uint8)
    arr[:, :8] = 255  # left half white as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(tmp_path / "cam.jpg", exif=exif, quality=100)
    x = load_image(tmp_path / "cam.jpg")
    assert x.shape == (3, 16, 8) and image_size(tmp_path / "cam.jpg") == (16, 8)
    # 90° clockwise: the stored left half becomes the top half
    assert x[:, :7].mean() > 0.95 and x[:, 9:].mean() < 0.05
    Image.fromarray(arr).save(tmp_path / "plain.jpg", quality=100)
    assert load_image(tmp_path / "plain.jpg").shape == (3, 8, 16)


def test_collate_rejects_mixed_sizes():
    items = [
        {
            "hq": torch.zeros(3, 8, 8),
            "y": torch.zeros(3, 8, 8),
            "params": {},
            "index": 0,
            "name": "a",
        },
        {
            "hq": torch.zeros(3, 8, 9),
            "y": torch.zeros(3, 8, 9),
            "params": {},
            "index": 1,
            "name": "b",
        },
    ]
    with pytest.raises(ValueError, match="crop_size"):
        collate(items)
    assert math.isclose(collate(items[:1])["hq"].sum().item(), 0.0)


def test_datamodule_operator_copy_stays_on_cpu(tmp_path):
    op = RandomMask()
    dm = make_dm(tmp_path, operator=op)
    data_op = dm._data_degradation.operator
    assert dm.operator is op and data_op is not op
    assert data_op.mask.device.type == "cpu"


# ------------------------------------------------------------- configs and Lightning
def test_data_configs_parse_and_demo_loads():
    from pathlib import Path

    from jsonargparse import ArgumentParser

    files = sorted(Path("configs/data").glob("*.yaml"))
    assert len(files) >= 7
    for f in files:
        p = ArgumentParser(exit_on_error=False)
        p.add_argument("--config", action="config")
        p.add_subclass_arguments(RestorationDataModule, "data")
        cfg = p.parse_args(["--config", str(f)])
        assert cfg.data.class_path == "lit_restore.data.RestorationDataModule", f
    p = ArgumentParser(exit_on_error=False)
    p.add_argument("--config", action="config")
    p.add_subclass_arguments(RestorationDataModule, "data")
    dm = p.instantiate(p.parse_args(["--config", "configs/data/demo.yaml"])).data
    ds = dm.sets["test"]
    assert len(ds) == 8 and dm.sets["predict"] is ds
    x = ds[0]["image"]
    assert x.shape == (3, 256, 256) and x.min() >= 0 and x.max() <= 1


def test_lightning_fit_and_test_loop(tmp_path):
    import lightning as L

    from lit_restore.modules.base import RestorationModule

    class Tiny(RestorationModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))
            self.seen_train: list[tuple[int, int, float]] = []
            self.seen_test: list[int] = []

        def restore(self, batch):
            return batch["hq"] * 0 + self.w

        def training_step(self, batch, batch_idx):
            for i, x in zip(batch["index"].tolist(), batch["hq"]):
                self.seen_train.append((self.current_epoch, i, float(x.sum())))
            return (self.restore(batch) - batch["hq"]).pow(2).mean()

        def test_step(self, batch, batch_idx):
            self.seen_test += batch["index"].tolist()
            return super().test_step(batch, batch_idx)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = make_dm(tmp_path, n=4, val_set=None, batch_size=2, noise=GaussianNoise(0.1))
    model = Tiny()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        use_distributed_sampler=False,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    epochs = {e: {i: s for ee, i, s in model.seen_train if ee == e} for e in (0, 1)}
    assert sorted(epochs[0]) == sorted(epochs[1]) == [0, 1, 2, 3]
    # the epoch reaches the dataset through the sampler: crops/flips differ between epochs
    assert any(epochs[0][i] != epochs[1][i] for i in range(4))
    trainer.test(model, datamodule=dm)
    assert sorted(model.seen_test) == [0, 1, 2, 3]


class DDPProbe(RestorationModule):
    """Writes (index, checksum of y) of every test item to ``out_dir/rank<r>.txt``."""

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.w = torch.nn.Parameter(torch.zeros(()))

    def restore(self, batch):
        return batch["hq"] + 0 * self.w

    def test_step(self, batch, batch_idx):
        with open(f"{self.out_dir}/rank{self.global_rank}.txt", "a") as f:
            for i, y in zip(batch["index"].tolist(), batch["y"]):
                f.write(f"{i} {float(y.double().sum()):.8f}\n")
        return super().test_step(batch, batch_idx)


@pytest.mark.slow
def test_ddp_two_processes_score_each_image_once(tmp_path):
    """Real 2-process DDP (CPU, gloo): every image once, no padded duplicates, and the
    measurement of each image equals the single-process one."""
    import lightning as L

    n = 5  # not divisible by 2
    dm = make_dm(tmp_path, n=n, operator=RandomMask(), noise=GaussianNoise(0.1), batch_size=2)
    ref = {
        int(i): float(y.double().sum())
        for b in dm.test_dataloader()
        for i, y in zip(b["index"], b["y"])
    }
    out = tmp_path / "ranks"
    out.mkdir()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        use_distributed_sampler=False,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.test(DDPProbe(str(out)), datamodule=dm)
    rows = [
        line.split() for f in sorted(out.glob("rank*.txt")) for line in f.read_text().splitlines()
    ]
    assert len(list(out.glob("rank*.txt"))) == 2
    idx = sorted(int(r[0]) for r in rows)
    assert idx == list(range(n))
    for i, s in rows:
        assert math.isclose(float(s), ref[int(i)], rel_tol=1e-6, abs_tol=1e-4)


def test_workers_give_identical_batches(tmp_path):
    """Worker processes (CPU operator copy, epoch-tagged keys) change nothing."""
    out = []
    for workers in (0, 2):
        dm = make_dm(tmp_path, operator=RandomMask(), noise=GaussianNoise(0.1), num_workers=workers)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(1)
        out.append(
            [(b["index"], b["y"]) for b in loader]
            + [(b["index"], b["y"]) for b in dm.test_dataloader()]
        )
    for (i0, y0), (i1, y1) in zip(*out, strict=True):
        assert torch.equal(i0, i1) and torch.equal(y0, y1)


@pytest.mark.parametrize(
    "case,expect",
    [
        ("crop", r"crop_size=30 does not fit data\.init_args\.operator \(BicubicSR\)"),
        ("odd", r"odd\.png is 30×32 \(H×W\): image size 30 is not divisible by the SR factor 4"),
        ("large", r"big\.png is 48×64 \(3072 pixels\), above data\.init_args\.max_pixels=3000"),
    ],
)
def test_size_errors_through_the_cli_are_one_line(tmp_path, capsys, monkeypatch, case, expect):
    """Each size mistake, run as a user runs it, ends in exactly one ``error:`` line, exit 2."""
    import re

    from lit_restore.cli import SampleCLI, run_cli

    root = tmp_path / "imgs"
    root.mkdir()
    size = {"crop": (32, 32), "odd": (30, 32), "large": (48, 64)}[case]
    Image.fromarray(rgb_array(*size)).save(
        root / {"odd": "odd.png", "large": "big.png"}.get(case, "a.png")
    )
    crop = {"crop": 30}.get(case, "null")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "trainer: {accelerator: cpu, devices: 1, logger: false, enable_progress_bar: false,\n"
        f"          enable_checkpointing: false, callbacks: [], default_root_dir: {tmp_path}}}\n"
        "model: {class_path: lit_restore.modules.PseudoInverse}\n"
        "data:\n  class_path: lit_restore.data.RestorationDataModule\n  init_args:\n"
        f"    test_set: {{class_path: lit_restore.data.ImageFolder, init_args: {{root: {root}}}}}\n"
        "    operator: {class_path: lit_restore.operators.BicubicSR, init_args: {factor: 4}}\n"
        f"    crop_size: {crop}\n    max_pixels: 3000\n    eval_batch_size: 1\n"
    )
    monkeypatch.setattr("sys.argv", ["sample.py"])
    monkeypatch.delenv("LIT_RESTORE_DEBUG", raising=False)
    assert run_cli(SampleCLI, ["test", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert sum(line.startswith("error:") for line in err.splitlines()) == 1, err
    assert re.search(expect, err) and "Traceback" not in err, err


# ------------------------------------------------------ batch draws, resume, pair pool
def test_per_batch_degradation_in_the_training_loader(tmp_path):
    """``draws="per_batch"``: a training batch is ``degrade_batch(hq, image generators of
    (seed, index, epoch), batch generator of (seed, first index, epoch))`` — with or without
    worker processes; evaluation batches stay per image."""
    from lit_restore.data.datamodule import _EPOCH_STRIDE, STREAM_BATCH
    from lit_restore.degradations import RealESRGANDegradation
    from lit_restore.utils.seeding import STREAM_DEGRADATION, image_generator

    deg = RealESRGANDegradation(4, draws="per_batch")
    for workers in (0, 2):
        dm = make_dm(tmp_path, n=6, degradation=deg, num_workers=workers)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(1)
        for batch in loader:
            idx = batch["index"].tolist()
            gens = [image_generator(7, i, STREAM_DEGRADATION + _EPOCH_STRIDE * 2) for i in idx]
            g_batch = image_generator(7, idx[0], STREAM_BATCH + _EPOCH_STRIDE * 2)
            ref = deg.degrade_batch(batch["hq"], gens, g_batch)
            assert torch.equal(batch["lq"], ref.lq) and torch.equal(batch["y"], ref.y)
    test = next(iter(dm.test_dataloader()))
    g = image_generator(7, 0, STREAM_DEGRADATION)
    assert torch.equal(test["lq"][0], RealESRGANDegradation(4)(test["hq"][0], g).lq)


def test_resumable_loader_continues_the_epoch(tmp_path):
    """The training loader's state (epoch, batches done) makes a fresh loader yield exactly the
    rest of that epoch, then the following epochs as before; a finished epoch resumes as the
    next one."""
    dm = make_dm(tmp_path, n=12, operator=RandomMask(), noise=GaussianNoise(0.1))
    full = dm.train_dataloader()
    epochs = {}
    for e in (2, 3):
        full.sampler.set_epoch(e)
        epochs[e] = [(b["index"], b["y"]) for b in full]
    assert len(epochs[2]) == 6
    for done in (0, 4, 6):
        fresh = dm.train_dataloader()
        fresh.position = lambda done=done: (2, done)
        state = fresh.state_dict()
        assert state == {"epoch": 2, "batches_done": done, "batch_size": 2}
        again = dm.train_dataloader()
        again.load_state_dict(state)
        rest = [(b["index"], b["y"]) for b in again]
        want = epochs[2][done:] if done < 6 else epochs[3]
        assert len(rest) == len(want)
        for (i0, y0), (i1, y1) in zip(rest, want):
            assert torch.equal(i0, i1) and torch.equal(y0, y1)
        again.sampler.set_epoch(3)  # the skip was for the resumed epoch only
        assert [b["index"].tolist() for b in again] == [i.tolist() for i, _ in epochs[3]]


def _pool_batch(k: int, b: int = 2) -> dict:
    index = torch.arange(k * b, (k + 1) * b)
    return {
        "hq": index.float().view(b, 1, 1, 1).expand(b, 3, 4, 4).clone(),
        "lq": -index.float().view(b, 1, 1, 1).expand(b, 3, 2, 2).clone(),
        "params": {"kernel": index.float().view(b, 1).expand(b, 5).clone()},
        "index": index,
        "name": [f"im{i}" for i in index.tolist()],
    }


def test_training_pair_pool_mixes_batches_and_keeps_pairs_whole():
    """Real-ESRGAN's ``_dequeue_and_enqueue``: the first ``size/B`` batches pass through while
    the pool fills; afterwards each batch comes out of the shuffled pool and takes its place.
    Pairs stay whole (every entry of a dequeued sample belongs to the same index), nothing is
    lost or duplicated, and a pool restored from its state dict continues identically."""
    from lit_restore.data.pair_pool import TrainingPairPool

    pool = TrainingPairPool(6, seed=3)
    for k in range(3):  # filling: batches 0-2 (indices 0-5) pass through
        batch = _pool_batch(k)
        assert pool(batch) is batch
    seen = [pool(_pool_batch(k)) for k in range(3, 7)]
    saved = pool.state_dict()
    tail = [pool(_pool_batch(k)) for k in range(7, 12)]
    seen += tail
    for out in seen:
        i = out["index"]
        assert torch.equal(out["hq"][:, 0, 0, 0], i.float())
        assert torch.equal(out["lq"][:, 0, 0, 0], -i.float())
        assert torch.equal(out["params"]["kernel"][:, 0], i.float())
        assert out["name"] == [f"im{j}" for j in i.tolist()]
    # batches 3-11 each took 2 pairs out; with the 6 still held, every index 0-23 exactly once
    dequeued = [j for out in seen for j in out["index"].tolist()]
    assert sorted(dequeued + pool.store["index"].tolist()) == list(range(24))
    assert any(out["index"].tolist() != _pool_batch(k)["index"].tolist()
               for k, out in zip(range(3, 12), seen))  # fmt: skip
    restored = TrainingPairPool(6, seed=3)
    restored.load_state_dict(saved)
    for j, out in zip(range(7, 12), tail):
        again = restored(_pool_batch(j))
        assert torch.equal(again["index"], out["index"]) and torch.equal(again["hq"], out["hq"])
    with pytest.raises(ValueError, match="multiple of the batch size"):
        TrainingPairPool(5)(_pool_batch(0))


def test_memory_is_pinned_when_the_trainer_runs_on_cuda(tmp_path):
    """``pin_memory: null`` follows the trainer's accelerator: pinned on CUDA, not on CPU (where
    page-locked memory buys nothing); an explicit true/false wins."""
    import lightning as L
    from lightning.pytorch.accelerators import CUDAAccelerator

    class OnCUDA:  # a trainer on a CUDA accelerator, as far as the datamodule looks
        accelerator = CUDAAccelerator()
        global_rank, world_size = 0, 1

    dm = make_dm(tmp_path)
    assert dm.pin_memory is None and not dm.pin()  # no trainer yet
    dm.trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    assert not dm.test_dataloader().pin_memory and not dm.train_dataloader().pin_memory
    dm.trainer = OnCUDA()
    assert dm.test_dataloader().pin_memory and dm.train_dataloader().pin_memory
    dm = make_dm(tmp_path, pin_memory=False)
    dm.trainer = OnCUDA()
    assert not dm.test_dataloader().pin_memory and not dm.train_dataloader().pin_memory


def test_batches_go_to_cuda_without_blocking(tmp_path):
    """The datamodule's batch transfer (Lightning's) copies tensors with ``non_blocking=True`` to
    a CUDA device — asynchronous from pinned memory — and blocking to the CPU. The tensors record
    the arguments of ``.to`` instead of copying (no GPU here)."""
    calls: list[tuple[str, bool]] = []

    class Probe(torch.Tensor):
        def to(self, device, *args, **kwargs):
            calls.append((str(device), kwargs.get("non_blocking", False)))
            return self

    dm = make_dm(tmp_path)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    batch = {
        k: v.as_subclass(Probe) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
    }
    dm.transfer_batch_to_device(batch, torch.device("cuda", 0), 0)
    assert len(calls) == 4 and all(c == ("cuda:0", True) for c in calls)  # hq, y, lq, index
    calls.clear()
    dm.transfer_batch_to_device(batch, torch.device("cpu"), 0)
    assert len(calls) == 4 and all(not blocking for _, blocking in calls)
