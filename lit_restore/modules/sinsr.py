"""SinSRModule: distil a trained ResShift into a one-step restorer (SinSR).

Wang et al., "SinSR: Diffusion-Based Image Super-Resolution in a Single Step", CVPR 2024
(arXiv 2311.14760); official code wyf0912/SinSR: ``trainer.py::TrainerDistillDifIR``,
``models/gaussian_diffusion.py::training_losses_distill`` and ``configs/SinSR.yaml``.

The student is the teacher's network (same layout, initialised with the teacher's weights,
``build_model``: ``self.model = copy.deepcopy(self.teacher_model)``), run at the last step
``T`` only. With ``z_y`` the encoded upsampled LQ, ``x_T = z_y + κ√η_T ε``, ``s(·) =
scale_model_input(·, T)`` and ``Φ`` the teacher's deterministic chain
(:meth:`~lit_restore.resshift.chain.ResShiftChain.reverse` with ``mode="ode"``, T calls,
no gradient), one training step minimises (per-sample means of squared errors, batch mean)::

    ẑ_teacher = Φ(x_T)                                        (the ODE map noise → output)
    L_distill = ‖f_θ(s(x_T), T) − ẑ_teacher‖²
    L_inverse = ‖f_θ(s(ẑ_teacher), 0) − x_T‖²                 (official ``learn_xT``)
    x̂_T(gt)   = sg(f_θ(s(z_0), 0)),   z_0 = E(hq)
    L_gt      = ‖f_θ(s(x̂_T(gt)), T) − z_0‖²                   (official ``finetune_use_gt``)
    loss      = w_d L_distill + w_i L_inverse + w_gt L_gt      (official weights 1, 1, 1)

The timestep input selects the direction: ``T`` maps noise to image, ``0`` image to noise
(the inverse), both with the input scaling of step ``T`` (as the official code:
``self._scale_input(z, t)`` with ``t = T`` and timestep ``t * 0``). ``L_gt`` is the
consistency-preserving loss: the student's inverse of the ground truth, sent forward again,
must give the ground truth back.

Everything else is :class:`~lit_restore.modules.resshift.ResShiftModule`'s: the network,
schedule, conditioning, tiling, colour fix and metric callbacks; :meth:`restore` runs the chain
in ``"one_step"`` mode (one network call, NFE 1) from the same per-image ``x_T`` as the
teacher's chain. Official optimiser: AdamW, lr 5e-5, linear warm-up over 5000 iterations
(``TrainerDifIR.adjust_lr``, milestones ``[5000, 500000]``: constant after the warm-up until the
halving at the last iteration), EMA 0.999; here ``lr_min = lr`` gives that constant rate
(:func:`~lit_restore.modules.resshift.official_lr_factor`).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from lit_restore.checkpoints import read_state_dict
from lit_restore.modules.resshift import ResShiftModule
from lit_restore.nn import freeze
from lit_restore.weights import resolve


def mean_sq(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample mean squared error in float32 (official ``mean_flat((a − b)²)``)."""
    return (a.float() - b.float()).pow(2).flatten(1).mean(1)


def teacher_state(spec: str) -> dict[str, Tensor]:
    """The teacher network's tensors from ``spec``: a registry name or a path to released
    weights (a bare state dict, or under ``state_dict``/``model``…, ``module.`` stripped), or to
    a ResShift training run's Lightning checkpoint (``runs/<name>/checkpoints/last.ckpt``: its
    ``network.`` sub-dict, the EMA weights when the run averaged them)."""
    sd = read_state_dict(resolve(spec, option="teacher"))
    if any(k.startswith("network.") for k in sd):
        sd = {k[len("network.") :]: v for k, v in sd.items() if k.startswith("network.")}
    return sd


class SinSRModule(ResShiftModule):
    """One-step SinSR student distilled from a ResShift teacher (module docstring).

    Args:
        teacher: the teacher's weights (registry name, e.g. ``resshift-demo-sr4``, or a path,
            also a ResShift run's ``last.ckpt``: :func:`teacher_state`), loaded strictly into a
            copy of ``network``; the student starts from them unless
            ``weights`` is given. Needed for training only (``sample.py test`` of a trained
            student passes ``weights`` alone).
        distill_weight, inverse_weight, gt_weight: the weights of ``L_distill``, ``L_inverse``
            and ``L_gt`` (official: 1, 1 (``learn_xT``), 1 (``finetune_use_gt``)).
        sampling: the chain's mode for :meth:`restore` (``"one_step"``; ``"ode"`` runs the
            student as a T-step deterministic chain, for comparison only).
        kwargs: :class:`ResShiftModule` arguments (the teacher's network and schedule: ``steps``
            is the teacher's T, which fixes the student's timestep and input scaling).
    """

    def __init__(
        self,
        teacher: str | None = None,
        distill_weight: float = 1.0,
        inverse_weight: float = 1.0,
        gt_weight: float = 1.0,
        sampling: str = "one_step",
        lr: float = 5e-5,
        lr_min: float = 5e-5,
        warmup_steps: int = 5000,
        lpips_weight: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            sampling=sampling,
            lr=lr,
            lr_min=lr_min,
            warmup_steps=warmup_steps,
            lpips_weight=lpips_weight,
            **kwargs,
        )
        if lpips_weight:
            raise ValueError("SinSRModule: lpips_weight must be 0 (SinSR's losses are MSEs)")
        self.distill_weight, self.inverse_weight, self.gt_weight = (
            distill_weight,
            inverse_weight,
            gt_weight,
        )
        # the frozen teacher is kept out of state_dict, parameters and EMA (rebuilt from
        # ``teacher`` on load), like the LPIPS network
        self._teacher: list[nn.Module] = []
        if teacher is not None:
            sd = teacher_state(teacher)
            net = copy.deepcopy(self.network)
            net.load_state_dict(sd, strict=True)
            self._teacher.append(freeze(net))
            if kwargs.get("weights") is None:  # the student starts as the teacher
                self.network.load_state_dict(sd, strict=True)

    @property
    def teacher(self) -> nn.Module:
        if not self._teacher:
            raise ValueError(
                "SinSRModule needs model.init_args.teacher (the ResShift weights to distil, "
                "a registry name or a path) to train"
            )
        return self._teacher[0].to(self.device)

    # ------------------------------------------------------------ training
    def _training_loss(self, batch: dict) -> Tensor:
        terms = self.distillation_losses(batch)
        loss = (
            self.distill_weight * terms["distill"]
            + self.inverse_weight * terms["inverse"]
            + self.gt_weight * terms["gt"]
        ).mean()
        self.log("train/loss", loss, on_step=True, prog_bar=True)
        for name, value in terms.items():
            self.log(f"train/{name}", value.mean(), on_step=True)
        return loss

    def distillation_losses(self, batch: dict, eps: Tensor | None = None) -> dict[str, Tensor]:
        """The per-sample ``L_distill``, ``L_inverse`` and ``L_gt`` of one batch (module
        docstring); ``ε`` (the shape of ``z_y``) is drawn from the global RNG (seeded per step
        by ``training_step``) unless given."""
        hq = batch["hq"]
        lq, mask = self._inputs(batch)
        sch, chain, student = self.schedule, self.chain, self.network
        teacher = self.teacher
        with torch.no_grad():
            z0 = self.first_stage.encode(hq)
            cond = chain.condition(student, self.first_stage, lq, mask)
        b = hq.shape[0]
        if eps is None:
            eps = torch.randn_like(cond.z_y)
        x_T = sch.prior_sample(cond.z_y, eps)
        t_T = torch.full((b,), sch.steps - 1, device=hq.device, dtype=torch.long)
        t_0 = torch.zeros_like(t_T)

        def f(z: Tensor, t: Tensor) -> Tensor:  # the student; input scaled as at step T
            return student(sch.scale_model_input(z, t_T), t, lq=cond.lq, mask=cond.mask)

        with self._precision(hq.device, training=True):
            with torch.no_grad():
                z_teacher = chain.reverse(teacher, cond, eps, mode="ode")
            distill = mean_sq(f(x_T, t_T), z_teacher)
            inverse = mean_sq(f(z_teacher, t_0), x_T)
            with torch.no_grad():
                x_T_gt = f(z0, t_0)
            gt = mean_sq(f(x_T_gt.to(z0.dtype), t_T), z0)
        return {"distill": distill, "inverse": inverse, "gt": gt}

    def run_hparams(self) -> dict[str, Any]:
        return {
            **super().run_hparams(),
            "method": "sinsr",
            "steps": 1 if self.chain.mode == "one_step" else self.schedule.steps,
            "sampling": self.chain.mode,
            "teacher_steps": self.schedule.steps,
        }
