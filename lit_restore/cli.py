"""The LightningCLI behind ``train.py`` (fit/validate/test) and ``sample.py`` (test/predict).

Configuration is LightningCLI YAML (``class_path``/``init_args``); several ``--config`` files
compose, later ones overriding earlier ones, then command-line flags override both.

The degradation is configured once, under ``data.init_args.operator`` / ``noise``; after
instantiation the datamodule's objects are handed to the model
(:meth:`RestorationModule.attach_measurement`), so measurement and guidance can never disagree.

Errors a user can cause (a missing file, an unreadable image, wrong sizes, a method given an
operator it cannot use) end in one ``error: ...`` line and exit status 2, not a traceback;
set ``LIT_RESTORE_DEBUG=1`` to see the traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from lightning.pytorch.cli import LightningCLI

from lit_restore.checkpoints import CheckpointError, check_readable
from lit_restore.utils.errors import report_user_errors, user_errors  # noqa: F401 (public name)

#: Trainer defaults for every run. We shard evaluation data ourselves (no padded duplicates
#: under DDP: DistributedSampler would repeat images and bias PSNR/FID).
_TRAINER_DEFAULTS: dict[str, Any] = {"use_distributed_sampler": False}


class LitRestoreCLI(LightningCLI):
    """LightningCLI with lit_restore's defaults and the operator hand-over."""

    #: subcommands this entry point offers (``None`` = all of Lightning's)
    allowed_subcommands: tuple[str, ...] | None = None
    description: str = "lit_restore: diffusion-based image restoration."

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        defaults = dict(_TRAINER_DEFAULTS)
        defaults.update(kwargs.pop("trainer_defaults", None) or {})
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("seed_everything_default", 0)
        parser_kwargs = kwargs.pop("parser_kwargs", None) or {}
        parser_kwargs.setdefault("description", self.description)
        super().__init__(*args, trainer_defaults=defaults, parser_kwargs=parser_kwargs, **kwargs)

    @classmethod
    def subcommands(cls) -> dict[str, set[str]]:
        everything = LightningCLI.subcommands()
        if cls.allowed_subcommands is None:
            return everything
        return {name: everything[name] for name in cls.allowed_subcommands}

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """Parse, then check a ``--ckpt_path`` file before Lightning reads it: a text, empty or
        truncated file becomes one :class:`~lit_restore.checkpoints.CheckpointError` line naming
        it (``torch.load`` alone reports ``KeyError``/``IndexError`` without the file name)."""
        super().parse_arguments(parser, args)
        sub = self.config.get("subcommand")
        ckpt_path = self.config[sub].get("ckpt_path") if sub else None
        if ckpt_path and os.path.isfile(ckpt_path):
            try:
                check_readable(ckpt_path)
            except CheckpointError as err:
                raise CheckpointError(f"--ckpt_path: {err}") from err

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        attach = getattr(self.model, "attach_measurement", None)
        if attach is not None and self.datamodule is not None:
            attach(
                getattr(self.datamodule, "operator", None), getattr(self.datamodule, "noise", None)
            )


class TrainCLI(LitRestoreCLI):
    allowed_subcommands = ("fit", "validate", "test")
    description = (
        "lit_restore training: fit / validate / test a trainable model (ResShift, a diffusion "
        "prior) on a datamodule. Example: python train.py fit --config "
        "configs/experiment/resshift_demo_pixel.yaml"
    )


class SampleCLI(LitRestoreCLI):
    allowed_subcommands = ("test", "predict")
    description = (
        "lit_restore restoration: run a zero-shot method (SaFaRI, DPS, DDNM, DDRM, DDPG, FDGR) "
        "or a trained model over a datamodule (test: with references and metrics; predict: "
        "inputs only). Example: python sample.py test --config configs/experiment/demo.yaml"
    )


def run_cli(cli_class: type[LitRestoreCLI], argv: list[str] | None = None) -> int:
    """Run a CLI; turn user errors into one clear line (exit 2) unless ``LIT_RESTORE_DEBUG``.

    A ``--config`` naming a suite file (:mod:`lit_restore.suite`) runs each of its entries as a
    separate run of the same script, then compares them.
    """
    from lit_restore.suite import find_suite, run_suite

    args = sys.argv[1:] if argv is None else argv

    def run() -> int:
        found = find_suite(args)
        if found is not None:
            return run_suite(sys.argv[0], *found)
        cli_class(args=argv)  # None: LightningCLI reads sys.argv itself
        return 0

    return report_user_errors(run)
