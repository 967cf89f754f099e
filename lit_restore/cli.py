"""The LightningCLI behind ``train.py`` (fit/validate/test) and ``sample.py`` (test/predict).

Configuration is LightningCLI YAML (``class_path``/``init_args``); several ``--config`` files
compose, later ones overriding earlier ones, then command-line flags override both. A class spec
may name a published setting instead of spelling it out, ``init_args: {preset: NAME}``
(:mod:`lit_restore.presets`), and a ``--config`` naming a suite file runs several runs and
compares them (:mod:`lit_restore.suite`).

The degradation is configured once, under ``data.init_args.operator`` / ``noise``; after
instantiation the datamodule's objects are handed to the model
(:meth:`RestorationModule.attach_measurement`), so measurement and guidance can never disagree.

Errors a user can cause (a misspelt option, a missing file, an unreadable image, wrong sizes, a
method given an operator it cannot use, a GPU config without a GPU) end in one ``error: ...``
line and exit status 2, not a traceback (:mod:`lit_restore.utils.errors`); set
``LIT_RESTORE_DEBUG=1`` to see the traceback. SIGTERM stops a run at once (exit status 143).
"""

from __future__ import annotations

import contextlib
import os
import sys
from argparse import ArgumentError
from typing import Any

from lightning.pytorch.cli import LightningCLI

from lit_restore.checkpoints import CheckpointError, check_readable
from lit_restore.presets import install_loader
from lit_restore.runtime import cpu_threads
from lit_restore.suite import (
    ConfigResolved,
    NeedsOwnProcess,
    find_suite,
    needs_own_process,
    run_suite,
)
from lit_restore.utils.errors import (
    ConfigError,
    debug,
    describe_parse_error,
    report,
    report_user_errors,
)
from lit_restore.weights import HF_SCHEME, resolve_hub

#: Trainer defaults for every run. We shard evaluation data ourselves (no padded duplicates
#: under DDP: DistributedSampler would repeat images and bias PSNR/FID).
_TRAINER_DEFAULTS: dict[str, Any] = {"use_distributed_sampler": False}


class LitRestoreCLI(LightningCLI):
    """LightningCLI with lit_restore's defaults, presets, one-line errors and the operator
    hand-over.

    Args (besides LightningCLI's):
        in_process_only: raise :class:`NeedsOwnProcess` instead of building a run that Lightning
            would launch as several processes (used by suites).
        resolve_only: parse and resolve the config, then raise :class:`ConfigResolved` with it
            instead of building anything (a suite learns where a child run writes).
    """

    #: subcommands this entry point offers (``None`` = all of Lightning's)
    allowed_subcommands: tuple[str, ...] | None = None
    description: str = "lit_restore: diffusion-based image restoration."

    def __init__(
        self,
        *args: Any,
        in_process_only: bool = False,
        resolve_only: bool = False,
        **kwargs: Any,
    ) -> None:
        self.in_process_only = in_process_only
        self.resolve_only = resolve_only
        defaults = dict(_TRAINER_DEFAULTS)
        defaults.update(kwargs.pop("trainer_defaults", None) or {})
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("seed_everything_default", 0)
        parser_kwargs = kwargs.pop("parser_kwargs", None) or {}
        parser_kwargs.setdefault("description", self.description)
        parser_kwargs.setdefault("parser_mode", install_loader())  # expands `preset:` names
        parser_kwargs.setdefault("exit_on_error", False)  # parse errors reach run_cli as one line
        # the run happens inside LightningCLI.__init__; the thread count set for it (``threads``,
        # entered in before_instantiate_classes) is restored when it ends, failed or not
        self._run_context = contextlib.ExitStack()
        with self._run_context:
            super().__init__(
                *args, trainer_defaults=defaults, parser_kwargs=parser_kwargs, **kwargs
            )

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument(
            "--threads",
            type=int | None,
            default=None,
            help="CPU threads of torch's intra-op pool for this run (null: torch's default, one "
            "per core); see lit_restore.runtime",
        )

    @classmethod
    def subcommands(cls) -> dict[str, set[str]]:
        everything = LightningCLI.subcommands()
        if cls.allowed_subcommands is None:
            return everything
        return {name: everything[name] for name in cls.allowed_subcommands}

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """Parse (a parse error becomes one :class:`ConfigError` line with a "did you mean"),
        resolve a ``--ckpt_path hf://OWNER/REPO/FILE@REVISION`` in the Hugging Face cache
        (:func:`lit_restore.weights.resolve_hub`; never downloading), then check a
        ``--ckpt_path`` file before Lightning reads it: a text, empty or truncated
        file becomes one :class:`~lit_restore.checkpoints.CheckpointError` line naming it
        (``torch.load`` alone reports ``KeyError``/``IndexError`` without the file name)."""
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            argv = [str(a) for a in args] if isinstance(args, (list, tuple)) else sys.argv[1:]
            raise ConfigError(describe_parse_error(str(err), self._option_strings(), argv)) from err
        sub = self.config.get("subcommand")
        ckpt_path = self.config[sub].get("ckpt_path") if sub else None
        if ckpt_path and str(ckpt_path).startswith(HF_SCHEME):  # a checkpoint on the Hub
            ckpt_path = str(resolve_hub(str(ckpt_path), option="--ckpt_path"))
            self.config[sub]["ckpt_path"] = ckpt_path
        if ckpt_path and os.path.isfile(ckpt_path):
            try:
                check_readable(ckpt_path)
            except CheckpointError as err:
                raise CheckpointError(f"--ckpt_path: {err}") from err

    def _option_strings(self) -> list[str]:
        parsers = [self.parser, *getattr(self, "_subcommand_parsers", {}).values()]
        return [s for p in parsers for s in p._option_string_actions if s.startswith("--")]

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if self.resolve_only:
            raise ConfigResolved(config)
        if self.in_process_only and needs_own_process(config.trainer):
            raise NeedsOwnProcess(config)
        try:  # cpu_threads checks the count; the user's error names the option
            self._run_context.enter_context(cpu_threads(config.get("threads")))
        except ValueError as err:
            raise ConfigError(f"--threads: {err}") from err

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
    """Run a CLI the way ``sample.py`` / ``train.py`` do; returns the exit status.

    A ``--config`` naming a suite file (:mod:`lit_restore.suite`) runs each of its entries as a
    run of the same script, then compares them.
    """
    args = sys.argv[1:] if argv is None else list(argv)

    def one_run() -> int:
        cli_class(args=argv)  # None: LightningCLI reads sys.argv itself
        return 0

    try:
        found = find_suite(args)
    except Exception as err:  # a malformed suite file
        status = None if debug() else report(err)
        if status is None:
            raise
        return status
    if found is not None:
        return report_user_errors(lambda: run_suite(cli_class, *found))
    return report_user_errors(one_run)
