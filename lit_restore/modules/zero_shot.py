"""Zero-shot restoration: a frozen diffusion prior steered by a guidance sampler.

``restore(batch)`` runs ``sampler.sample(prior, operator.bind(batch["params"]), batch["y"],
sigma_y=noise.model_sigma, generator=[one per image])``. The sampler noise of image ``index``
comes from ``image_seed(seed, index, STREAM_SAMPLER)``, so a result does not depend on the batch
size, its batch mates or the number of DDP ranks.

Gradient methods (DPS, SaFaRI) differentiate through the network. Lightning runs test/predict under
``torch.inference_mode()``; :meth:`ZeroShotRestoration.restore` leaves it locally
(``torch.inference_mode(False)`` + ``torch.enable_grad()``) and clones the batch tensors out of
inference mode, so no ``trainer.inference_mode=False`` is needed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lit_restore.modules.base import RestorationModule
from lit_restore.operators.base import LinearOperator
from lit_restore.operators.noise import NoiseModel
from lit_restore.priors.base import DiffusionPrior
from lit_restore.samplers.base import Sampler
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
        precision_bf16: run the network under bf16 autocast (guidance maths stays fp32).
        step_progress: a per-step progress bar of the sampler (rank 0 only) below Lightning's
            per-batch bar: a 1000-step DPS batch otherwise shows nothing for minutes.
    """

    def __init__(
        self,
        prior: DiffusionPrior,
        sampler: Sampler,
        operator: LinearOperator | None = None,
        noise: NoiseModel | None = None,
        seed: int = 0,
        precision_bf16: bool = False,
        step_progress: bool = True,
    ) -> None:
        super().__init__(operator=operator, noise=noise, seed=seed)
        if not isinstance(sampler, Sampler):
            raise TypeError(
                f"sampler must be a lit_restore.samplers.Sampler, got {type(sampler).__name__}"
            )
        self.prior = prior.freeze()
        self.sampler = sampler
        self.precision_bf16 = precision_bf16
        self.step_progress = step_progress
        sampler.autocast_dtype = torch.bfloat16 if precision_bf16 else None

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
            generators = generators_for(self.seed, batch["index"], STREAM_SAMPLER, device=y.device)
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
        return {**self.sampler.hparams(), "prior": str(prior_name), "seed": self.seed}
