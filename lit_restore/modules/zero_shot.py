"""Zero-shot restoration: a frozen diffusion prior steered by a guidance sampler.

``restore(batch)`` runs ``sampler.sample(prior, operator.bind(batch["params"]), batch["y"],
sigma_y=noise.model_sigma, generator=[one per image])``. The sampler noise of image ``index``
comes from ``image_seed(seed, index, STREAM_SAMPLER)``, so a result does not depend on the batch
size, its batch mates or the number of DDP ranks.

Gradient methods (DPS, SaFaRI) differentiate through the network. Lightning runs test/predict under
``torch.inference_mode()``; :meth:`ZeroShotRestoration.restore` leaves it locally
(``torch.inference_mode(False)`` + ``torch.enable_grad()``) and clones the batch tensors out of
inference mode, so no ``trainer.inference_mode=False`` is needed.

``precision``, ``compile`` and ``channels_last`` change how the prior's network runs, not what the
method computes (:mod:`lit_restore.runtime`); they are applied once, on the first batch, when the
device is known. ``precision`` is the one precision switch: the Trainer's ``precision`` (e.g.
``bf16-mixed``) does not reach the sampler, whose guidance maths stays float32.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lit_restore.modules.base import RestorationModule
from lit_restore.operators.base import Operator
from lit_restore.operators.noise import NoiseModel
from lit_restore.priors.base import DiffusionPrior
from lit_restore.runtime import autocast, check_precision, prepare_network, resolve_precision
from lit_restore.samplers.base import Sampler
from lit_restore.utils.hparams import record_init_args
from lit_restore.utils.seeding import STREAM_SAMPLER, generators_for


def _normal_tensors(obj: Any) -> Any:
    """Clone inference-mode tensors into normal ones (they cannot enter an autograd graph)."""
    if isinstance(obj, Tensor):
        return obj.clone() if obj.is_inference() else obj
    if isinstance(obj, dict):
        return {k: _normal_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_normal_tensors(v) for v in obj)
    return obj


class ZeroShotRestoration(RestorationModule):
    """A frozen prior + a guidance sampler as a LightningModule (nothing is trained).

    Args:
        prior: the frozen :class:`~lit_restore.priors.base.DiffusionPrior`.
        sampler: a :class:`~lit_restore.samplers.base.Sampler` (DPS, SaFaRI, DDNM, DDRM, DDPG, ...).
        operator, noise: normally attached from the datamodule by the CLI.
        seed: base seed of the per-image sampler noise.
        precision: ``fp32``, ``bf16`` (the network in bfloat16: the prior's bf16 torso where it
            has one, else autocast; guidance maths stays float32) or ``auto`` (bf16 on CUDA for
            methods whose bf16 output was measured within the bound, else float32); see
            :mod:`lit_restore.runtime`.
        compile: ``torch.compile`` the prior's network (``true``/``default``,
            ``reduce-overhead`` = + CUDA graphs, ``max-autotune``); ``false`` = eager.
        channels_last: the prior's network in the channels-last memory format.
        step_progress: a per-step progress bar of the sampler (rank 0 only) below Lightning's
            per-batch bar: a 1000-step DPS batch otherwise shows nothing for minutes.
    """

    def __init__(
        self,
        prior: DiffusionPrior,
        sampler: Sampler,
        operator: Operator | None = None,
        noise: NoiseModel | None = None,
        seed: int = 0,
        precision: str = "auto",
        compile: bool | str = False,
        channels_last: bool = False,
        step_progress: bool = True,
    ) -> None:
        super().__init__(operator=operator, noise=noise, seed=seed)
        record_init_args(self)  # HPARAMS: the resolved prior/sampler config (utils.hparams)
        if not isinstance(sampler, Sampler):
            raise TypeError(
                f"sampler must be a lit_restore.samplers.Sampler, got {type(sampler).__name__}"
            )
        self.prior = prior.freeze()
        self.sampler = sampler
        self.precision = check_precision(precision)
        self.compile, self.channels_last = compile, channels_last
        self.step_progress = step_progress
        self._runtime_device: torch.device | None = None

    def prepare_runtime(self, device: torch.device) -> None:
        """Apply ``precision``/``compile``/``channels_last`` for ``device`` (once per device)."""
        if self._runtime_device == device:
            return
        dtype = resolve_precision(self.precision, device, self.sampler.name)
        # a bf16 torso (ADM) is faster than autocasting a float32 one; other networks autocast.
        # float32 leaves the prior as configured (e.g. an explicit ADMPrior(dtype=...)).
        torso = dtype is not None and self.prior.set_torso_dtype(dtype)
        self.sampler.autocast_dtype = None if torso else dtype
        net = getattr(self.prior, "net", None)
        if isinstance(net, nn.Module):
            prepare_network(net, device, compile=self.compile, channels_last=self.channels_last)
        self._runtime_device = device

    def restore(self, batch: dict) -> Tensor:
        # the step bar follows Lightning's progress bar (off in scripts, tests and other ranks)
        trainer = self._trainer
        bar_on = trainer is not None and getattr(trainer, "progress_bar_callback", None) is not None
        self.sampler.progress = self.sampler.progress or (
            self.step_progress and bar_on and self.global_rank == 0
        )
        with torch.inference_mode(False), torch.enable_grad():
            batch = _normal_tensors(batch)
            operator = self.bound_operator(batch)
            y = batch["y"]
            self.prepare_runtime(y.device)
            generators = generators_for(self.seed, batch["index"], STREAM_SAMPLER, device=y.device)
            # float32 outside the network call whatever the Trainer's precision: the sampler
            # autocasts the network itself when `precision` says so
            with autocast(None, y.device):
                x = self.sampler.sample(
                    self.prior, operator, y, sigma_y=self.noise.model_sigma, generator=generators
                )
        self.count_nfe(self.sampler.nfe)
        if "hq" in batch and x.shape != batch["hq"].shape:
            raise RuntimeError(
                f"{type(self.sampler).__name__} returned {tuple(x.shape)} but the reference is "
                f"{tuple(batch['hq'].shape)}; check the operator's image size against the data crop."
            )
        return x.detach()

    def run_hparams(self) -> dict[str, Any]:
        prior_name = getattr(self.prior, "name", None) or type(self.prior).__name__
        return {
            **self.sampler.hparams(),
            "prior": str(prior_name),
            "seed": self.seed,
            "precision": self.precision,
        }
