#!/usr/bin/env python
"""Train, validate or test a model: ``python train.py fit --config configs/experiment/<x>.yaml``.

Subcommands: fit, validate, test (``python train.py --help``). See README.md.
"""

import sys

from lit_restore.cli import TrainCLI, run_cli

if __name__ == "__main__":
    sys.exit(run_cli(TrainCLI))
