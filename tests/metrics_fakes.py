"""Tiny fakes for the callback tests (imported by tests and by the DDP subprocess script).

``FakeData`` emits protocol batches (``hq``, ``y``, ``lq``, ``index``, ``name``, ``params={}``) of
32×32 RGB images (32 px is the smallest size AlexNet-LPIPS accepts) and shards
val/test/predict itself without padding, honouring ``exclude(indices)`` like the real datamodule.
``NoisyIdentity`` restores ``hq + σ_i·n_i`` with noise seeded by the image index, so every number
is a function of the index alone (independent of batch size, ranks and resumption).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from lit_restore.evaluation import ImageGridLogger, RestorationMetrics, RestoredImageWriter
from lit_restore.metrics import LPIPS
from lit_restore.modules.base import RestorationModule

SIZE = 32


def reference(i: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 + i)
    x = torch.rand(3, SIZE // 4, SIZE // 4, generator=g)
    return (
        F.interpolate(x[None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0] * 2 - 1
    )


class _Items(Dataset):
    def __init__(self, indices: list[int], with_hq: bool = True) -> None:
        self.indices = indices
        self.with_hq = with_hq

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict:
        i = self.indices[k]
        hq = reference(i)
        lq = F.avg_pool2d(hq[None], 2)[0]
        item = {"hq": hq, "y": lq, "lq": lq, "index": i, "name": f"img{i:03d}", "params": {}}
        if not self.with_hq:
            del item["hq"]
        return item


class FakeData(L.LightningDataModule):
    def __init__(
        self,
        n: int = 10,
        batch_size: int = 3,
        subset: list[int] | None = None,
        with_hq: bool = True,
    ) -> None:
        super().__init__()
        self.with_hq = with_hq
        self.n, self.batch_size = n, batch_size
        # ``subset``: the images an interrupted run got to before it stopped (private: the data
        # are the same ``n`` images, so a rerun with the full set resumes it)
        self._subset = subset
        self.excluded: set[int] = set()
        self.operator = torch.nn.AvgPool2d(2)  # stands in for an operator (HPARAMS name only)

    def exclude(self, indices) -> None:
        self.excluded = set(indices)

    def _loader(self) -> DataLoader:
        todo = [i for i in (self._subset or range(self.n)) if i not in self.excluded]
        rank, world = (
            (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        )
        return DataLoader(_Items(todo[rank::world], self.with_hq), batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader()

    def test_dataloader(self) -> DataLoader:
        return self._loader()

    def predict_dataloader(self) -> DataLoader:
        return self._loader()


def noise_level(i: int) -> float:
    return 0.02 + 0.02 * (i % 5)


class NoisyIdentity(RestorationModule):
    """x̂ = hq + σ_i n_i with n_i seeded by the index; can crash after ``fail_after`` batches."""

    def __init__(
        self, fail_after: int | None = None, scale: float = 1.0, method: str = "noisy-identity"
    ) -> None:
        super().__init__()
        self.scale, self.method = scale, method
        # test instrumentation, not settings (private: left out of the run's fingerprint)
        self._fail_after = fail_after
        self._restored: list[int] = []
        self._batches = 0

    def restore(self, batch: dict) -> torch.Tensor:
        if self._fail_after is not None and self._batches >= self._fail_after:
            raise RuntimeError("simulated interruption")
        self._batches += 1
        out = []
        for k, i in enumerate(batch["index"].tolist()):
            g = torch.Generator().manual_seed(i)
            if "hq" in batch:
                base = batch["hq"][k]
            else:  # real-world input: upsample the measurement
                base = F.interpolate(batch["lq"][k : k + 1], scale_factor=2)[0]
            out.append(base + self.scale * noise_level(i) * torch.randn(base.shape, generator=g))
            self._restored.append(i)
        self.count_nfe(7)
        return torch.stack(out).clamp(-1, 1)

    @property
    def restored(self) -> list[int]:
        """Indices restored by this module, in order."""
        return self._restored

    def run_hparams(self) -> dict:
        return {"method": self.method, "steps": 7}


class RandomFeatures(torch.nn.Module):
    """Small random conv features standing in for Inception (tests only)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.3)
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 2).flatten(1)


def write_alexnet_features(torch_home: Path, seed: int) -> dict[str, torch.Tensor]:
    """A random torchvision AlexNet ``features.*`` state dict where LPIPS looks for the
    backbone (``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``); returns it."""
    import torchvision

    ckpt = torch_home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    feats = {
        k: v
        for k, v in torchvision.models.alexnet(weights=None).state_dict().items()
        if k.startswith("features.")
    }
    torch.save(feats, ckpt / "alexnet-owt-7be5be79.pth")
    return feats


def make_metrics(fid: bool = True, **kw) -> RestorationMetrics:
    """Metric callback with injected random networks (random AlexNet backbone, random features)."""
    torch.manual_seed(0)  # the random LPIPS backbone is then identical in every process
    lpips = LPIPS("alex", random_backbone=True)
    return RestorationMetrics(
        metrics=["psnr", "ssim", "lpips"], fid=fid, lpips_module=lpips,
        fid_features=RandomFeatures() if fid else None, **kw,
    )  # fmt: skip


@contextlib.contextmanager
def registered_toy_metrics() -> Iterator[None]:
    """Two metrics added the way a user adds one — a registry entry each — removed afterwards:
    ``brightness`` (no-reference: mean intensity) and ``mean_gap`` (set-level: distance of the
    mean features of the restored and the reference set)."""
    from lit_restore.metrics import METRICS, MetricSpec, register

    def brightness(o):
        return lambda x: x.mean(dim=(1, 2, 3))

    def mean_gap(o):
        return lambda fake, real: {"mean_gap": float((fake.mean(0) - real.mean(0)).norm())}

    register(MetricSpec("brightness", "no-reference", True, build=brightness))
    register(MetricSpec("mean_gap", "set-level", False, build=mean_gap, features="inception"))
    try:
        yield
    finally:
        del METRICS["brightness"], METRICS["mean_gap"]


def make_trainer(tmp, callbacks, **kw) -> L.Trainer:
    from lightning.pytorch.loggers import TensorBoardLogger

    return L.Trainer(
        accelerator="cpu", devices=kw.pop("devices", 1), logger=TensorBoardLogger(str(tmp), name="run", version=0),
        callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False,
        use_distributed_sampler=False, **kw,
    )  # fmt: skip


__all__ = [
    "FakeData",
    "ImageGridLogger",
    "NoisyIdentity",
    "RestoredImageWriter",
    "make_metrics",
    "make_trainer",
    "registered_toy_metrics",
    "write_alexnet_features",
]


class KillAfterImages(L.Callback):
    """Rank 0 kills its whole process group (SIGKILL: every DDP rank, at whatever point each
    is) once it has restored ``images`` test images and their records were written — a node
    dying mid-run. Tests start the run in a session of its own."""

    def __init__(self, images: int) -> None:
        super().__init__()
        self.images = images
        self.seen = 0

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        import os
        import signal

        from lit_restore.evaluation.background import BackgroundWorker

        self.seen += len(batch["index"])
        if trainer.global_rank == 0 and self.seen >= self.images:
            BackgroundWorker.of(trainer).flush()  # its rows are committed
            os.killpg(os.getpgid(0), signal.SIGKILL)
