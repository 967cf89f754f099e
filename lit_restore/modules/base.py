"""The LightningModule base every restoration method shares.

A method implements only :meth:`RestorationModule.restore` (``batch -> x̂`` in model space
[-1, 1]). ``test_step``/``validation_step``/``predict_step`` are shared, and they return one
:class:`RestorationOutput`-shaped dict that the metric, grid and writer callbacks consume — so
every method, zero-shot or trained, is scored and written by the same code.

Batch protocol (produced by :class:`lit_restore.data.RestorationDataModule`)::

    {
      "hq":     [B,C,H,W] reference in [-1,1]        (absent for real-world LQ-only inputs)
      "y":      measurement A(x)+n, operator-shaped  (what zero-shot samplers consume)
      "lq":     viewable low-quality image            (what trained models like ResShift consume)
      "mask":   [B,1,H,W] 1 = known pixel             (inpainting only)
      "params": dict of per-image operator parameters (bind with operator.bind(params))
      "index":  [B] long, global dataset index       (seeds, de-duplication under DDP)
      "name":   list[str], file stem                  (output file names)
    }
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from lit_restore.operators.base import Operator, require_capabilities
from lit_restore.operators.noise import NoiseModel, NoNoise
from lit_restore.utils.hparams import record_init_args, run_hparams
from lit_restore.utils.loggers import log_hparams


class RestorationModule(L.LightningModule):
    """Base class: ``restore(batch) -> x̂``; shared evaluation steps.

    Args:
        operator: the degradation operator. Leave ``None`` under the CLI: the datamodule's operator
            is attached (:meth:`attach_measurement`), so measurement and restoration can never
            disagree.
        noise: the measurement noise model (likewise attached from the datamodule).
        seed: base seed of per-image sampler noise (``image_seed(seed, index)``).
    """

    def __init__(
        self,
        operator: Operator | None = None,
        noise: NoiseModel | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.operator = operator
        self.noise = noise if noise is not None else NoNoise()
        self.seed = seed
        self._nfe = 0

    # ----------------------------------------------------------- measurement
    def attach_measurement(self, operator: Operator | None, noise: NoiseModel | None) -> None:
        """Use the datamodule's operator/noise (the CLI calls this after instantiation)."""
        if operator is not None and self.operator is not None and operator is not self.operator:
            raise ValueError(
                "the operator is configured twice (data and model); configure it once under "
                "data.init_args.operator — the model receives the same object."
            )
        if operator is not None:
            self.operator = operator
        if noise is not None:
            self.noise = noise

    def bound_operator(self, batch: dict) -> Operator:
        if self.operator is None:
            raise RuntimeError(
                f"{type(self).__name__} has no degradation operator; set data.init_args.operator "
                "in the config (or pass operator= when building the module in Python)."
            )
        return self.operator.bind(batch.get("params"))

    # --------------------------------------------------------------- method
    def restore(self, batch: dict) -> Tensor:
        """Return x̂ in [-1, 1] with the shape of the reference image."""
        raise NotImplementedError

    def count_nfe(self, n: int = 1) -> None:
        """Samplers/networks report network evaluations here (cost logging)."""
        self._nfe += n

    # ---------------------------------------------------------------- steps
    def _evaluate(self, batch: dict) -> dict[str, Any]:
        self._nfe = 0
        if torch.cuda.is_available() and self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        restored = self.restore(batch)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        n = restored.shape[0]
        bad = ~torch.isfinite(restored.flatten(1)).all(1)
        if bad.any():
            names = [batch["name"][i] for i in bad.nonzero().flatten().tolist()]
            raise FloatingPointError(
                f"{type(self).__name__} produced NaN/inf for image(s) {names}; lower the step "
                "size / guidance scale or run in fp32."
            )
        peak = (
            torch.cuda.max_memory_allocated(self.device) / 2**20
            if self.device.type == "cuda"
            else float("nan")
        )
        return {
            "restored": restored.detach().clamp(-1, 1),
            "seconds_per_image": seconds / n,
            "nfe_per_image": float(self._nfe),
            "peak_memory_mb": peak,
        }

    def test_step(self, batch: dict, batch_idx: int) -> dict[str, Any]:
        return self._evaluate(batch)

    def predict_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        return self._evaluate(batch)

    def validation_step(self, batch: dict, batch_idx: int) -> dict[str, Any]:
        return self._evaluate(batch)

    def configure_optimizers(self):  # zero-shot methods train nothing
        return None

    # ------------------------------------------------------------ reporting
    def on_fit_start(self) -> None:
        """A training run's HPARAMS (an evaluation logs them with its final metrics instead:
        :mod:`lit_restore.utils.hparams`)."""
        if self.trainer.is_global_zero:
            log_hparams(self.trainer, run_hparams(self.trainer), {})

    def run_hparams(self) -> dict[str, Any]:
        """What identifies this run in TensorBoard's HPARAMS tab (method, prior, steps, ...)."""
        return {"method": type(self).__name__}


class PseudoInverse(RestorationModule):
    """The baseline every paper reports: ``x̂ = A⁺ y`` (clamped to the image range)."""

    def __init__(self, operator: Operator | None = None, noise: NoiseModel | None = None):
        super().__init__(operator=operator, noise=noise)
        record_init_args(self)
        self._dummy = nn.Parameter(torch.zeros(()), requires_grad=False)  # device tracking only

    def restore(self, batch: dict) -> Tensor:
        operator = self.bound_operator(batch)
        require_capabilities(operator, ("pinv",), "PseudoInverse")
        return operator.pinv(batch["y"]).clamp(-1, 1)

    def run_hparams(self) -> dict[str, Any]:
        return {"method": "pinv", "steps": 0}
